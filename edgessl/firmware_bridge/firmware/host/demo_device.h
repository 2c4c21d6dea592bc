/* The identity of the host-built virtual device (and the values the tests expect from it). */
#ifndef ESSL_DEMO_DEVICE_H
#define ESSL_DEMO_DEVICE_H
#include <string.h>

#include "../essl_protocol.h"

static inline void essl_demo_info(essl_device_info_t *info) {
    memset(info, 0, sizeof *info);
    info->device_id = 0xE5510001u;
    info->firmware[0] = 1; info->firmware[1] = 0; info->firmware[2] = 0;
    info->rate_hz = 100.0f;
    info->range = 2;
    info->n_channels = 3;
    strcpy(info->names[0], "acc_x"); strcpy(info->names[1], "acc_y"); strcpy(info->names[2], "acc_z");
    for (int c = 0; c < 3; c++) { info->units[c] = ESSL_UNIT_G; info->counts_per_unit[c] = 16384.0f; }
}

/* Deterministic test pattern: sample i, channel c. */
static inline int16_t essl_demo_sample(uint32_t i, unsigned c) {
    return (int16_t)((int32_t)((i * 37u + c * 1000u) % 4096u) - 2048);
}
#endif
