/* A host build of the reference firmware acting as a virtual IMU on a pseudo-terminal.
 *
 *   virtual_device [--rate HZ] [--per-frame N] [--seconds S] [--cue 0|1]
 *
 * Prints the slave device path on the first line of stdout, then serves the protocol on the master side:
 * it answers IDENTIFY / START / STOP / SET_RATE / SET_RANGE / CUE with the library's essl_device_handle() and,
 * while streaming, sends SAMPLES frames of the deterministic pattern essl_demo_sample() in real time.
 * A cue is "shown" as a line "cue LABEL" on stderr; with --cue 0 the device has no prompt (UNSUPPORTED).
 */
#define _XOPEN_SOURCE 600
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../essl_protocol.h"
#include "demo_device.h"

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static void show_cue(const uint8_t *label, size_t len, void *ctx) {
    (void)ctx;
    fprintf(stderr, "cue %.*s\n", (int)len, (const char *)label);
    fflush(stderr);
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EINTR || errno == EAGAIN) continue; return -1; }
        p += w; n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    double rate = 100.0, seconds = 60.0;
    int per_frame = 10, cue = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--per-frame")) per_frame = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--cue")) cue = atoi(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (per_frame < 1 || per_frame > 100 || !(rate > 0)) { fprintf(stderr, "bad --per-frame or --rate\n"); return 2; }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) { perror("pty"); return 1; }
    const char *slave_name = ptsname(master);
    int slave = open(slave_name, O_RDWR | O_NOCTTY); /* held open so the pty survives host reconnects */
    struct termios tio;
    if (slave < 0 || tcgetattr(slave, &tio)) { perror("slave"); return 1; }
    cfmakeraw(&tio);
    tcsetattr(slave, TCSANOW, &tio);
    printf("%s\n", slave_name);
    fflush(stdout);

    essl_device_info_t info;
    essl_demo_info(&info);
    info.rate_hz = (float)rate;
    essl_device_t dev;
    essl_device_init(&dev, &info);
    if (cue) dev.on_cue = show_cue;

    static uint8_t rx[4 * ESSL_MAX_FRAME], out[4 * ESSL_MAX_FRAME], scratch[2 * ESSL_MAX_FRAME];
    size_t rx_len = 0;
    uint64_t t0 = now_us(), next_us = t0;
    uint32_t sample_index = 0;
    int16_t block[100 * ESSL_MAX_CHANNELS];
    while (!stop_flag && (double)(now_us() - t0) < seconds * 1e6) {
        uint64_t now = now_us();
        int timeout_ms = 20;
        if (dev.streaming) timeout_ms = next_us > now ? (int)((next_us - now) / 1000u) : 0;
        struct pollfd p = {master, POLLIN, 0};
        int r = poll(&p, 1, timeout_ms);
        if (r > 0 && (p.revents & POLLIN)) {
            ssize_t n = read(master, rx + rx_len, sizeof rx - rx_len);
            if (n > 0) rx_len += (size_t)n;
            size_t start = 0;
            for (size_t i = 0; i < rx_len; i++) {
                if (rx[i] != 0) continue;
                essl_frame_t cmd;
                if (i > start && essl_frame_decode(rx + start, i - start, scratch, sizeof scratch, &cmd) == ESSL_OK) {
                    size_t olen = 0;
                    int was_streaming = dev.streaming;
                    if (essl_device_handle(&dev, &cmd, now_us() - t0, out, sizeof out, &olen) == ESSL_OK)
                        write_all(master, out, olen);
                    if (dev.streaming && !was_streaming) next_us = now_us();
                }
                start = i + 1;
            }
            memmove(rx, rx + start, rx_len - start);
            rx_len -= start;
            if (rx_len == sizeof rx) rx_len = 0; /* garbage without delimiters: drop it */
        }
        now = now_us();
        if (dev.streaming && now >= next_us) {
            uint8_t ch = dev.info.n_channels;
            for (int i = 0; i < per_frame; i++)
                for (uint8_t c = 0; c < ch; c++) block[i * ch + c] = essl_demo_sample(sample_index + (uint32_t)i, c);
            uint64_t first_us = (uint64_t)((double)sample_index * 1e6 / dev.info.rate_hz);
            size_t olen = 0;
            if (essl_device_samples(&dev, block, (uint8_t)per_frame, first_us, out, sizeof out, &olen) == ESSL_OK)
                write_all(master, out, olen);
            sample_index += (uint32_t)per_frame;
            next_us += (uint64_t)(per_frame * 1e6 / dev.info.rate_hz);
        }
    }
    close(slave);
    close(master);
    return 0;
}
