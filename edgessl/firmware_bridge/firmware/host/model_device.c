/* A host build of the reference firmware running an exported model: the board `edgessl simulate --board-model`
 * plays. Links essl_model.c / essl_stream.c as `edgessl export-c` writes them (`make model_device MODEL_DIR=..`).
 *
 *   model_device --channels acc_x,acc_y,acc_z [--units 0,0,0] [--counts-per-unit 4096] [--range 8]
 *                [--rate HZ] [--device-id N] [--per-frame N]
 *
 * stdin carries frames as on the wire (COBS + 0x00):
 *   - host commands (CMD_*), answered on stdout exactly as the firmware answers them (essl_device_handle);
 *   - SAMPLES frames, which are this board's *sensor*: int16 counts taken at the frame's timestamp (the simulated
 *     person's motion). While streaming the board sends them on as its own SAMPLES frames (not in events-only
 *     mode) and, with events on (CMD_EVENTS), pushes every sample through essl_stream_push and sends an EVENT
 *     frame for each gesture it decides.
 * stdout: the board's wire bytes. stderr: "cue LABEL" for each CMD_CUE (the prompt), and errors.
 * Exits 0 at the end of stdin, 2 on bad arguments (one line on stderr).
 *
 * The bundle checksum MODEL_INFO reports is compiled in: ESSL_MODEL_SHA256 of the generated essl_model.h (a
 * header of an older export has none: -DESSL_BOARD_SHA256=\"<64 hex digits>\"); without either, zeros ("unknown").
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../essl_protocol.h"
#include "essl_model.h"
#include "essl_stream.h"
#if !defined(ESSL_BOARD_SHA256) && defined(ESSL_MODEL_SHA256)
#define ESSL_BOARD_SHA256 ESSL_MODEL_SHA256 /* the generated header's: the bundle's checksum */
#endif

#define RX_CAP (4u * ESSL_MAX_FRAME)

static essl_device_t dev;
static essl_stream_t stream;
static uint8_t sha256[ESSL_SHA256_SIZE];
static int have_sha = 0;

static int write_all(const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void show_cue(const uint8_t *label, size_t len, void *ctx) {
    (void)ctx;
    fprintf(stderr, "cue %.*s\n", (int)len, (const char *)label);
    fflush(stderr);
}

static int parse_sha(const char *hex) {
    if (strlen(hex) != 2u * ESSL_SHA256_SIZE) return -1;
    for (size_t i = 0; i < ESSL_SHA256_SIZE; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        sha256[i] = (uint8_t)v;
    }
    return 0;
}

/* split "a,b,c" into at most max items of at most len-1 bytes; returns the count or -1 */
static int split(const char *s, char out[][ESSL_MAX_NAME + 1], int max) {
    int n = 0;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t ln = e ? (size_t)(e - s) : strlen(s);
        if (n == max || ln == 0 || ln > ESSL_MAX_NAME) return -1;
        memcpy(out[n], s, ln);
        out[n][ln] = '\0';
        n++;
        s += ln + (e != NULL);
    }
    return n;
}

/* The sensor delivered counts [n x C] starting at first_us: stream them on and classify them. */
static void on_sensor(const essl_frame_t *f) {
    static uint8_t out[2 * ESSL_MAX_FRAME];
    size_t olen = 0;
    const uint8_t ch = dev.info.n_channels;
    if (!dev.streaming || f->count == 0 || f->payload[0] != ch) return;
    int16_t counts[255 * ESSL_MAX_CHANNELS];
    for (size_t i = 0; i < (size_t)f->count * ch; i++)
        counts[i] = (int16_t)(uint16_t)(f->payload[1 + 2 * i] | (f->payload[2 + 2 * i] << 8));
    if (dev.events_mode != ESSL_EVENTS_ONLY &&
        essl_device_samples(&dev, counts, f->count, f->timestamp_us, out, sizeof out, &olen) == ESSL_OK)
        write_all(out, olen);
    if (dev.events_mode == ESSL_EVENTS_OFF) return; /* the model runs only for a host that listens */
    for (uint8_t i = 0; i < f->count; i++) {
        float x[ESSL_MAX_CHANNELS];
        for (uint8_t c = 0; c < ch; c++) x[c] = (float)counts[i * ch + c] / dev.info.counts_per_unit[c];
        uint64_t t_us = f->timestamp_us + (uint64_t)llround((double)i * 1e6 / (double)dev.info.rate_hz);
        essl_event_t ev;
        if (essl_stream_push(&stream, x, (uint32_t)(t_us / 1000u), &ev)) {
            int16_t label = ev.label < 0 ? -1 : (int16_t)ev.label;
            float conf = ev.confidence < 0.0f ? 0.0f : ev.confidence > 1.0f ? 1.0f : ev.confidence;
            uint64_t t0 = (uint64_t)ev.t_start_ms * 1000u, t1 = (uint64_t)ev.t_end_ms * 1000u;
            if (t1 < t0) t1 = t0;
            if (essl_device_event(&dev, label, ev.reason, conf, t0, t1, t_us, out, sizeof out, &olen) == ESSL_OK)
                write_all(out, olen);
            else
                fprintf(stderr, "event not sent: label %d reason %u\n", (int)ev.label, (unsigned)ev.reason);
        }
    }
}

int main(int argc, char **argv) {
    essl_device_info_t info;
    memset(&info, 0, sizeof info);
    info.device_id = 0x5151A7EDu;
    info.firmware[0] = 1;
    info.firmware[1] = 1;
    info.rate_hz = ESSL_MODEL_RATE_HZ;
    info.range = 8;
    float cpu = 4096.0f;
    char units[ESSL_MAX_CHANNELS][ESSL_MAX_NAME + 1];
    int n_units = -1, n_names = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--channels")) n_names = split(v, info.names, (int)ESSL_MAX_CHANNELS);
        else if (!strcmp(k, "--units")) n_units = split(v, units, (int)ESSL_MAX_CHANNELS);
        else if (!strcmp(k, "--counts-per-unit")) cpu = strtof(v, NULL);
        else if (!strcmp(k, "--range")) info.range = (uint16_t)atoi(v);
        else if (!strcmp(k, "--device-id")) info.device_id = (uint32_t)strtoul(v, NULL, 0);
        else if (!strcmp(k, "--rate")) {
            float hz = strtof(v, NULL);
            if (fabsf(hz - ESSL_MODEL_RATE_HZ) > 1e-3f * ESSL_MODEL_RATE_HZ) {
                fprintf(stderr, "--rate %g: the model was exported for %g Hz; a board running it samples at that rate\n",
                        (double)hz, (double)ESSL_MODEL_RATE_HZ);
                return 2;
            }
        } else {
            fprintf(stderr, "unknown option %s\n", k);
            return 2;
        }
    }
    if (n_names != ESSL_MODEL_CHANNELS) {
        fprintf(stderr, "--channels: the model takes %d channels; expected that many comma-separated names\n",
                ESSL_MODEL_CHANNELS);
        return 2;
    }
    if (!(cpu > 0.0f) || (n_units >= 0 && n_units != n_names)) {
        fprintf(stderr, "--counts-per-unit must be > 0 and --units one code per channel\n");
        return 2;
    }
    info.n_channels = (uint8_t)n_names;
    for (int c = 0; c < n_names; c++) {
        info.units[c] = n_units < 0 ? (uint8_t)ESSL_UNIT_G : (uint8_t)atoi(units[c]);
        info.counts_per_unit[c] = cpu;
    }
#ifdef ESSL_BOARD_SHA256
    if (parse_sha(ESSL_BOARD_SHA256) != 0) {
        fprintf(stderr, "ESSL_BOARD_SHA256 must be 64 hex digits\n");
        return 2;
    }
    have_sha = 1;
#endif
    essl_device_init(&dev, &info);
    dev.min_rate_hz = dev.max_rate_hz = ESSL_MODEL_RATE_HZ; /* the model fixes the rate */
    dev.on_cue = show_cue;
    if (essl_device_set_model(&dev, have_sha ? sha256 : NULL, essl_model_labels, (uint8_t)ESSL_MODEL_CLASSES) !=
        ESSL_OK) {
        fprintf(stderr, "the model's labels do not fit MODEL_INFO (at most %u bytes each)\n", ESSL_MAX_LABEL);
        return 2;
    }
    essl_stream_init(&stream);

    static uint8_t rx[RX_CAP], out[4 * ESSL_MAX_FRAME], scratch[2 * ESSL_MAX_FRAME];
    size_t rx_len = 0;
    uint64_t last_us = 0; /* device clock: the latest sensor time */
    for (;;) {
        ssize_t n = read(STDIN_FILENO, rx + rx_len, RX_CAP - rx_len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        rx_len += (size_t)n;
        size_t start = 0;
        for (size_t i = 0; i < rx_len; i++) {
            if (rx[i] != 0) continue;
            essl_frame_t f;
            if (i > start && essl_frame_decode(rx + start, i - start, scratch, sizeof scratch, &f) == ESSL_OK) {
                if (f.type == ESSL_MSG_SAMPLES) {
                    last_us = f.timestamp_us;
                    on_sensor(&f);
                } else {
                    size_t olen = 0;
                    int was_streaming = dev.streaming;
                    if (essl_device_handle(&dev, &f, last_us, out, sizeof out, &olen) == ESSL_OK) write_all(out, olen);
                    if (dev.streaming && !was_streaming) essl_stream_init(&stream); /* no gesture spans a pause */
                }
            }
            start = i + 1;
        }
        memmove(rx, rx + start, rx_len - start);
        rx_len -= start;
        if (rx_len == RX_CAP) rx_len = 0; /* garbage without delimiters: drop it */
    }
    return 0;
}
