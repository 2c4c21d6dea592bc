/* Host tool for cross-checking C and Python on arbitrary inputs.
 *
 *   essl_tool encode TYPE SEQ TS COUNT PAYLOAD_HEX|-   -> wire hex on stdout
 *   essl_tool decode WIRE_HEX                          -> "type seq ts count payload_hex" or "error N"
 *   essl_tool samples N C v1 v2 ...                    -> SAMPLES payload hex
 *   essl_tool info                                     -> DEVICE_INFO payload hex of the demo device
 *   essl_tool crc HEX                                  -> crc32 as 8 hex digits
 *   essl_tool event LABEL REASON CONF T0_US T1_US     -> EVENT payload hex (or "error N")
 *   essl_tool modelinfo SHA_HEX MODE LABEL...          -> MODEL_INFO payload hex (or "error N")
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../essl_protocol.h"
#include "demo_device.h"

static size_t unhex(const char *s, uint8_t *out, size_t cap) {
    if (strcmp(s, "-") == 0) return 0;
    size_t n = strlen(s) / 2;
    if (n > cap) exit(2);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) exit(2);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void hex(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
    if (n == 0) printf("-");
    printf("\n");
}

int main(int argc, char **argv) {
    static uint8_t a[4 * ESSL_MAX_FRAME], b[4 * ESSL_MAX_FRAME], s[4 * ESSL_MAX_FRAME];
    size_t n = 0;
    if (argc >= 7 && strcmp(argv[1], "encode") == 0) {
        size_t pn = unhex(argv[6], a, sizeof a);
        essl_frame_t f = {ESSL_VERSION, (uint8_t)atoi(argv[2]), (uint16_t)atoi(argv[3]), strtoull(argv[4], NULL, 10),
                          (uint8_t)atoi(argv[5]), a, pn};
        essl_err_t e = essl_frame_encode(&f, s, sizeof s, b, sizeof b, &n);
        if (e != ESSL_OK) { printf("error %d\n", (int)e); return 1; }
        hex(b, n);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "decode") == 0) {
        size_t wn = unhex(argv[2], a, sizeof a);
        if (wn > 0 && a[wn - 1] == 0) wn--;
        essl_frame_t f;
        essl_err_t e = essl_frame_decode(a, wn, s, sizeof s, &f);
        if (e != ESSL_OK) { printf("error %d\n", (int)e); return 0; }
        printf("%u %u %llu %u ", f.type, f.seq, (unsigned long long)f.timestamp_us, f.count);
        hex(f.payload, f.payload_len);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "samples") == 0) {
        int cnt = atoi(argv[2]), ch = atoi(argv[3]);
        static int16_t v[4096];
        if (cnt * ch > 4096 || argc != 4 + cnt * ch) return 2;
        for (int i = 0; i < cnt * ch; i++) v[i] = (int16_t)atoi(argv[4 + i]);
        essl_err_t e = essl_samples_payload(v, (uint8_t)cnt, (uint8_t)ch, b, sizeof b, &n);
        if (e != ESSL_OK) { printf("error %d\n", (int)e); return 1; }
        hex(b, n);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "info") == 0) {
        essl_device_info_t info;
        essl_demo_info(&info);
        if (essl_device_info_payload(&info, b, sizeof b, &n) != ESSL_OK) return 1;
        hex(b, n);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "crc") == 0) {
        size_t pn = unhex(argv[2], a, sizeof a);
        printf("%08x\n", essl_crc32(a, pn));
        return 0;
    }
    if (argc >= 7 && strcmp(argv[1], "event") == 0) {
        essl_err_t e = essl_event_payload((int16_t)atoi(argv[2]), (uint8_t)atoi(argv[3]), strtof(argv[4], NULL),
                                          strtoull(argv[5], NULL, 10), strtoull(argv[6], NULL, 10), b, sizeof b, &n);
        if (e != ESSL_OK) { printf("error %d\n", (int)e); return 0; }
        hex(b, n);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "modelinfo") == 0) {
        uint8_t sha[ESSL_SHA256_SIZE];
        if (unhex(argv[2], sha, sizeof sha) != ESSL_SHA256_SIZE) return 2;
        essl_err_t e = essl_model_info_payload(sha, (uint8_t)atoi(argv[3]), (const char *const *)(argv + 4),
                                               (uint8_t)(argc - 4), b, sizeof b, &n);
        if (e != ESSL_OK) { printf("error %d\n", (int)e); return 0; }
        hex(b, n);
        return 0;
    }
    fprintf(stderr, "usage: essl_tool encode|decode|samples|info|crc|event|modelinfo ...\n");
    return 2;
}
