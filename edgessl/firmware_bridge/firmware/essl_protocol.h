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
#define ESSL_DOC_REVISION 3u /* docs/protocol.md revision this code implements (the wire version stays 1) */
#define ESSL_HEADER_SIZE 13u
#define ESSL_CRC_SIZE 4u
#define ESSL_MAX_FRAME 1024u /* decoded bytes */
#define ESSL_MAX_CHANNELS 16u
#define ESSL_MAX_NAME 31u
#define ESSL_MAX_CUE 32u /* bytes of a CMD_CUE label */
#define ESSL_MAX_LABEL 31u /* bytes of a MODEL_INFO class label */
#define ESSL_SHA256_SIZE 32u
#define ESSL_EVENT_PAYLOAD_SIZE 23u
/* DEVICE_INFO header count bits (revision 3) */
#define ESSL_DEVICE_FLAG_MODEL 0x01u /* the device runs an exported model and answers CMD_EVENTS */
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
    ESSL_MSG_MODEL_INFO = 0x03, /* revision 3 */
    ESSL_MSG_EVENT = 0x04,      /* revision 3 */
    ESSL_MSG_CMD_START = 0x10,
    ESSL_MSG_CMD_STOP = 0x11,
    ESSL_MSG_CMD_SET_RATE = 0x12,
    ESSL_MSG_CMD_SET_RANGE = 0x13,
    ESSL_MSG_CMD_IDENTIFY = 0x14,
    ESSL_MSG_CMD_CUE = 0x15,
    ESSL_MSG_CMD_EVENTS = 0x16, /* revision 3 */
    ESSL_MSG_ACK = 0x20
} essl_msg_t;

typedef enum { ESSL_ACK_OK = 0, ESSL_ACK_BAD_ARGUMENT = 1, ESSL_ACK_UNSUPPORTED = 2, ESSL_ACK_BUSY = 3 } essl_ack_t;

/* CMD_EVENTS modes: what a board running a model sends while streaming */
typedef enum { ESSL_EVENTS_OFF = 0, ESSL_EVENTS_ALONGSIDE = 1, ESSL_EVENTS_ONLY = 2 } essl_events_mode_t;

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
    /* revision 3, set by essl_device_set_model(); without a model CMD_EVENTS is answered UNSUPPORTED */
    uint8_t flags;                   /* DEVICE_INFO header count: ESSL_DEVICE_FLAG_* */
    uint8_t events_mode;             /* essl_events_mode_t; OFF after init, so an old host sees a plain IMU */
    const uint8_t *model_sha256;     /* 32 bytes, or NULL: unknown (sent as zeros) */
    const char *const *model_labels; /* model_classes NUL-terminated labels, each <= ESSL_MAX_LABEL bytes */
    uint8_t model_classes;
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
/* EVENT payload: label i16 (-1 unknown), reason u8, confidence f32, t_start_us u64, t_end_us u64 */
essl_err_t essl_event_payload(int16_t label, uint8_t reason, float confidence, uint64_t t_start_us, uint64_t t_end_us,
                              uint8_t *out, size_t cap, size_t *out_len);
/* MODEL_INFO payload: sha256[32] (NULL: zeros), mode u8, classes u8, then per class len u8 + label bytes */
essl_err_t essl_model_info_payload(const uint8_t *sha256, uint8_t mode, const char *const *labels, uint8_t classes,
                                   uint8_t *out, size_t cap, size_t *out_len);
essl_err_t essl_ack_payload(uint8_t acked_type, uint16_t acked_seq, essl_ack_t status, uint8_t *out, size_t cap,
                            size_t *out_len);

void essl_device_init(essl_device_t *dev, const essl_device_info_t *info);
/* Handle one host command; writes the reply frames (DEVICE_INFO for IDENTIFY, then an ACK) into out. */
essl_err_t essl_device_handle(essl_device_t *dev, const essl_frame_t *cmd, uint64_t now_us, uint8_t *out, size_t cap,
                              size_t *out_len);
/* Declare that the device runs a model (revision 3): sets ESSL_DEVICE_FLAG_MODEL so DEVICE_INFO says so and
 * CMD_EVENTS is answered with MODEL_INFO. The pointers are kept, not copied (use static data). */
essl_err_t essl_device_set_model(essl_device_t *dev, const uint8_t *sha256, const char *const *labels, uint8_t classes);
/* Build one EVENT wire frame (timestamp now_us: when the board decided) */
essl_err_t essl_device_event(essl_device_t *dev, int16_t label, uint8_t reason, float confidence, uint64_t t_start_us,
                             uint64_t t_end_us, uint64_t now_us, uint8_t *out, size_t cap, size_t *out_len);
/* Build one SAMPLES wire frame from n x channels int16 counts (sample-major) taken at first_us. */
essl_err_t essl_device_samples(essl_device_t *dev, const int16_t *samples, uint8_t n, uint64_t first_us, uint8_t *out,
                               size_t cap, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
