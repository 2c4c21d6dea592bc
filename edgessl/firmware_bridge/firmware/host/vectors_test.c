/* Host test: checks the C implementation against the shared test vectors (test_vectors.txt).
 *
 *   good lines: name type seq timestamp_us count payload_hex|- wire_hex
 *   bad lines:  !name wire_hex expected_error_code
 * Exit status 0 when every vector passes; one line per failure on stderr.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../essl_protocol.h"

static size_t unhex(const char *s, uint8_t *out, size_t cap) {
    size_t n = strlen(s) / 2;
    if (strcmp(s, "-") == 0) return 0;
    if (n > cap) return (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return (size_t)-1;
        out[i] = (uint8_t)v;
    }
    return n;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "test_vectors.txt";
    FILE *fp = fopen(path, "r");
    if (!fp) { perror(path); return 2; }
    static char line[8192];
    static uint8_t payload[ESSL_MAX_FRAME], wire[2 * ESSL_MAX_FRAME], enc[2 * ESSL_MAX_FRAME], scratch[2 * ESSL_MAX_FRAME];
    int failures = 0, checked = 0;
    while (fgets(line, sizeof line, fp)) {
        char name[128], plhex[4096], wirehex[4096];
        unsigned type, seq, count;
        unsigned long long ts;
        int code;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (line[0] == '!') {
            if (sscanf(line + 1, "%127s %4095s %d", name, wirehex, &code) != 3) { fprintf(stderr, "bad line: %s", line); return 2; }
            size_t wn = unhex(wirehex, wire, sizeof wire);
            essl_frame_t f;
            /* the delimiter is not part of what essl_frame_decode sees */
            if (wn > 0 && wire[wn - 1] == 0) wn--;
            essl_err_t e = essl_frame_decode(wire, wn, scratch, sizeof scratch, &f);
            checked++;
            if ((int)e != code) { fprintf(stderr, "%s: decode returned %d, expected %d\n", name, (int)e, code); failures++; }
            continue;
        }
        if (sscanf(line, "%127s %u %u %llu %u %4095s %4095s", name, &type, &seq, &ts, &count, plhex, wirehex) != 7) {
            fprintf(stderr, "bad line: %s", line);
            return 2;
        }
        size_t pn = unhex(plhex, payload, sizeof payload), wn = unhex(wirehex, wire, sizeof wire);
        essl_frame_t f = {ESSL_VERSION, (uint8_t)type, (uint16_t)seq, (uint64_t)ts, (uint8_t)count, payload, pn};
        size_t en = 0;
        essl_err_t e = essl_frame_encode(&f, scratch, sizeof scratch, enc, sizeof enc, &en);
        checked++;
        if (e != ESSL_OK || en != wn || memcmp(enc, wire, wn) != 0) {
            fprintf(stderr, "%s: encode differs (err %d, %zu vs %zu bytes)\n", name, (int)e, en, wn);
            failures++;
            continue;
        }
        essl_frame_t d;
        e = essl_frame_decode(wire, wn - 1, scratch, sizeof scratch, &d);
        if (e != ESSL_OK || d.type != type || d.seq != seq || d.timestamp_us != ts || d.count != count ||
            d.payload_len != pn || memcmp(d.payload, payload, pn) != 0) {
            fprintf(stderr, "%s: decode differs (err %d)\n", name, (int)e);
            failures++;
        }
    }
    fclose(fp);
    printf("%d vectors checked, %d failures\n", checked, failures);
    return failures ? 1 : 0;
}
