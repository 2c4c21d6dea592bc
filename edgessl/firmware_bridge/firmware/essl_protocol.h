/* edgessl wire protocol v1: portable C99 reference implementation (see docs/protocol.md).
 *
 * No malloc, no globals: every function works on caller-owned buffers and returns an essl_err_t.
 * Multi-byte fields are little-endian and written byte by byte, so the code is endian-independent.
 */
#ifndef ESSL_PROTOCOL_H
#define ESSL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ESSL_VERSION 1u
#define ESSL_HEADER_SIZE 13u
#define ESSL_CRC_SIZE 4u
#define ESSL_MAX_FRAME 1024u /* decoded bytes */
#define ESSL_MAX_CHANNELS 16u
#define ESSL_MAX_NAME 31u
#define ESSL_MAX_CUE 32u /* bytes of a CMD_CUE label */
/* worst-case encoded size of a decoded message of n bytes, including the 0x00 delimiter */
#define ESSL_COBS_MAX(n) ((n) + (n) / 254u + 2u)

typedef enum {
    ESSL_OK = 0,
    ESSL_ERR_NULL = -1,          /* a required pointer was NULL */
    ESSL_ERR_BUFFER = -2,        /* the output buffer is too small */
    ESSL_ERR_COBS = -3,          /* malformed COBS encoding */
    ESSL_ERR_CRC = -4,           /* CRC mismatch */
    ESSL_ERR_VERSION = -5,       /* unsupported protocol version */
    ESSL_ERR_SHORT = -6,         /* frame shorter than header + CRC */
    ESSL_ERR_TYPE = -7,          /* unknown message type */
    ESSL_ERR_PAYLOAD = -8,       /* payload inconsistent with its type */
    ESSL_ERR_ARG = -9            /* an argument is out of range */
} essl_err_t;

typedef enum {
    ESSL_MSG_DEVICE_INFO = 0x01,
    ESSL_MSG_SAMPLES = 0x02,
    ESSL_MSG_CMD_START = 0x10,
    ESSL_MSG_CMD_STOP = 0x11,
    ESSL_MSG_CMD_SET_RATE = 0x12,
    ESSL_MSG_CMD_SET_RANGE = 0x13,
    ESSL_MSG_CMD_IDENTIFY = 0x14,
    ESSL_MSG_CMD_CUE = 0x15,
    ESSL_MSG_ACK = 0x20
} essl_msg_t;

typedef enum { ESSL_ACK_OK = 0, ESSL_ACK_BAD_ARGUMENT = 1, ESSL_ACK_UNSUPPORTED = 2, ESSL_ACK_BUSY = 3 } essl_ack_t;

typedef enum { ESSL_UNIT_G = 0, ESSL_UNIT_RAD_S = 1, ESSL_UNIT_DEG_S = 2, ESSL_UNIT_OTHER = 3 } essl_unit_t;

typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint64_t timestamp_us;
    uint8_t count;
    const uint8_t *payload; /* not owned */
    size_t payload_len;
} essl_frame_t;

typedef struct {
    uint32_t device_id;
    uint8_t firmware[3];
    float rate_hz;
    uint16_t range;
    uint8_t n_channels;
    char names[ESSL_MAX_CHANNELS][ESSL_MAX_NAME + 1];
    uint8_t units[ESSL_MAX_CHANNELS];
    float counts_per_unit[ESSL_MAX_CHANNELS];
} essl_device_info_t;

/* Shows a CMD_CUE prompt (an LED, a display): label is UTF-8, 1..ESSL_MAX_CUE bytes, not NUL-terminated. */
typedef void (*essl_cue_fn)(const uint8_t *label, size_t len, void *ctx);

typedef struct {
    essl_device_info_t info;
    int streaming;
    uint16_t seq;
    float min_rate_hz, max_rate_hz;
    essl_cue_fn on_cue; /* NULL (after essl_device_init): CMD_CUE is answered UNSUPPORTED */
    void *cue_ctx;      /* passed to on_cue */
} essl_device_t;

uint32_t essl_crc32(const uint8_t *data, size_t len);

essl_err_t essl_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);
essl_err_t essl_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);

/* Frame -> wire bytes (COBS + trailing 0x00). scratch holds the un-encoded message. */
essl_err_t essl_frame_encode(const essl_frame_t *f, uint8_t *scratch, size_t scratch_cap, uint8_t *out, size_t cap,
                             size_t *out_len);
/* Wire bytes without the delimiter -> frame; f->payload points into scratch. */
essl_err_t essl_frame_decode(const uint8_t *wire, size_t n, uint8_t *scratch, size_t scratch_cap, essl_frame_t *f);

essl_err_t essl_samples_payload(const int16_t *samples, uint8_t n, uint8_t channels, uint8_t *out, size_t cap,
                                size_t *out_len);
essl_err_t essl_device_info_payload(const essl_device_info_t *info, uint8_t *out, size_t cap, size_t *out_len);
essl_err_t essl_ack_payload(uint8_t acked_type, uint16_t acked_seq, essl_ack_t status, uint8_t *out, size_t cap,
                            size_t *out_len);

void essl_device_init(essl_device_t *dev, const essl_device_info_t *info);
/* Handle one host command; writes the reply frames (DEVICE_INFO for IDENTIFY, then an ACK) into out. */
essl_err_t essl_device_handle(essl_device_t *dev, const essl_frame_t *cmd, uint64_t now_us, uint8_t *out, size_t cap,
                              size_t *out_len);
/* Build one SAMPLES wire frame from n x channels int16 counts (sample-major) taken at first_us. */
essl_err_t essl_device_samples(essl_device_t *dev, const int16_t *samples, uint8_t n, uint64_t first_us, uint8_t *out,
                               size_t cap, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
