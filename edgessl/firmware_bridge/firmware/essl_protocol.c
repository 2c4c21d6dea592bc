/* edgessl wire protocol v1 (docs/protocol.md revision 3): portable C99 reference implementation. */
#include "essl_protocol.h"

#include <string.h>

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static void put_f32(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u); /* IEEE-754 binary32 on every supported target */
    put_u32(p, u);
}

/* CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320), nibble table: 64 bytes of flash. */
uint32_t essl_crc32(const uint8_t *data, size_t len) {
    static const uint32_t t[16] = {0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
                                   0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
                                   0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
    uint32_t crc = 0xFFFFFFFFu;
    if (data == NULL) return 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ t[crc & 0x0F];
        crc = (crc >> 4) ^ t[crc & 0x0F];
    }
    return crc ^ 0xFFFFFFFFu;
}

essl_err_t essl_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len) {
    if ((in == NULL && n > 0) || out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    size_t o = 0, code_at = 0;
    uint8_t code = 1;
    if (cap < 1) return ESSL_ERR_BUFFER;
    code_at = o++;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            if (o >= cap) return ESSL_ERR_BUFFER;
            code_at = o++;
            code = 1;
        } else {
            if (o >= cap) return ESSL_ERR_BUFFER;
            out[o++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                if (o >= cap) return ESSL_ERR_BUFFER;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    *out_len = o;
    return ESSL_OK;
}

essl_err_t essl_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len) {
    if ((in == NULL && n > 0) || out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i];
        if (code == 0 || i + code > n) return ESSL_ERR_COBS;
        for (size_t k = i + 1; k < i + code; k++) {
            if (in[k] == 0) return ESSL_ERR_COBS;
            if (o >= cap) return ESSL_ERR_BUFFER;
            out[o++] = in[k];
        }
        i += code;
        if (code != 0xFF && i < n) {
            if (o >= cap) return ESSL_ERR_BUFFER;
            out[o++] = 0;
        }
    }
    *out_len = o;
    return ESSL_OK;
}

static int known_type(uint8_t t) {
    return (t >= ESSL_MSG_DEVICE_INFO && t <= ESSL_MSG_EVENT) || (t >= ESSL_MSG_CMD_START && t <= ESSL_MSG_CMD_EVENTS) ||
           t == ESSL_MSG_ACK;
}

essl_err_t essl_frame_encode(const essl_frame_t *f, uint8_t *scratch, size_t scratch_cap, uint8_t *out, size_t cap,
                             size_t *out_len) {
    if (f == NULL || scratch == NULL || out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    if (f->payload_len > 0 && f->payload == NULL) return ESSL_ERR_NULL;
    size_t n = ESSL_HEADER_SIZE + f->payload_len + ESSL_CRC_SIZE;
    if (n > ESSL_MAX_FRAME) return ESSL_ERR_ARG;
    if (scratch_cap < n) return ESSL_ERR_BUFFER;
    scratch[0] = f->version;
    scratch[1] = f->type;
    put_u16(scratch + 2, f->seq);
    put_u64(scratch + 4, f->timestamp_us);
    scratch[12] = f->count;
    if (f->payload_len) memcpy(scratch + ESSL_HEADER_SIZE, f->payload, f->payload_len);
    put_u32(scratch + n - ESSL_CRC_SIZE, essl_crc32(scratch, n - ESSL_CRC_SIZE));
    size_t enc = 0;
    essl_err_t e = essl_cobs_encode(scratch, n, out, cap, &enc);
    if (e != ESSL_OK) return e;
    if (enc >= cap) return ESSL_ERR_BUFFER;
    out[enc++] = 0;
    *out_len = enc;
    return ESSL_OK;
}

essl_err_t essl_frame_decode(const uint8_t *wire, size_t n, uint8_t *scratch, size_t scratch_cap, essl_frame_t *f) {
    if (wire == NULL || scratch == NULL || f == NULL) return ESSL_ERR_NULL;
    size_t m = 0;
    essl_err_t e = essl_cobs_decode(wire, n, scratch, scratch_cap, &m);
    if (e != ESSL_OK) return e;
    if (m < ESSL_HEADER_SIZE + ESSL_CRC_SIZE) return ESSL_ERR_SHORT;
    if (essl_crc32(scratch, m - ESSL_CRC_SIZE) != get_u32(scratch + m - ESSL_CRC_SIZE)) return ESSL_ERR_CRC;
    if (scratch[0] != ESSL_VERSION) return ESSL_ERR_VERSION;
    if (!known_type(scratch[1])) return ESSL_ERR_TYPE;
    f->version = scratch[0];
    f->type = scratch[1];
    f->seq = get_u16(scratch + 2);
    f->timestamp_us = get_u64(scratch + 4);
    f->count = scratch[12];
    f->payload = scratch + ESSL_HEADER_SIZE;
    f->payload_len = m - ESSL_HEADER_SIZE - ESSL_CRC_SIZE;
    if (f->type == ESSL_MSG_SAMPLES &&
        (f->payload_len < 1 || f->payload[0] == 0 || f->payload_len != 1u + 2u * f->count * f->payload[0]))
        return ESSL_ERR_PAYLOAD;
    return ESSL_OK;
}

essl_err_t essl_samples_payload(const int16_t *samples, uint8_t n, uint8_t channels, uint8_t *out, size_t cap,
                                size_t *out_len) {
    if (samples == NULL || out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    if (n == 0 || channels == 0) return ESSL_ERR_ARG;
    size_t len = 1u + 2u * (size_t)n * channels;
    if (cap < len) return ESSL_ERR_BUFFER;
    out[0] = channels;
    for (size_t i = 0; i < (size_t)n * channels; i++) put_u16(out + 1 + 2 * i, (uint16_t)samples[i]);
    *out_len = len;
    return ESSL_OK;
}

essl_err_t essl_device_info_payload(const essl_device_info_t *info, uint8_t *out, size_t cap, size_t *out_len) {
    if (info == NULL || out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    if (info->n_channels == 0 || info->n_channels > ESSL_MAX_CHANNELS || !(info->rate_hz > 0)) return ESSL_ERR_ARG;
    size_t o = 14;
    if (cap < o) return ESSL_ERR_BUFFER;
    put_u32(out, info->device_id);
    out[4] = info->firmware[0];
    out[5] = info->firmware[1];
    out[6] = info->firmware[2];
    put_f32(out + 7, info->rate_hz);
    put_u16(out + 11, info->range);
    out[13] = info->n_channels;
    for (uint8_t c = 0; c < info->n_channels; c++) {
        size_t ln = strlen(info->names[c]);
        if (ln > ESSL_MAX_NAME) return ESSL_ERR_ARG;
        if (cap < o + 1 + ln + 5) return ESSL_ERR_BUFFER;
        out[o++] = (uint8_t)ln;
        memcpy(out + o, info->names[c], ln);
        o += ln;
        out[o++] = info->units[c];
        put_f32(out + o, info->counts_per_unit[c]);
        o += 4;
    }
    *out_len = o;
    return ESSL_OK;
}

essl_err_t essl_event_payload(int16_t label, uint8_t reason, float confidence, uint64_t t_start_us, uint64_t t_end_us,
                              uint8_t *out, size_t cap, size_t *out_len) {
    if (out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    if (label < -1 || reason > 3 || !(confidence >= 0.0f && confidence <= 1.0f) || t_end_us < t_start_us)
        return ESSL_ERR_ARG;
    if (cap < ESSL_EVENT_PAYLOAD_SIZE) return ESSL_ERR_BUFFER;
    put_u16(out, (uint16_t)label);
    out[2] = reason;
    put_f32(out + 3, confidence);
    put_u64(out + 7, t_start_us);
    put_u64(out + 15, t_end_us);
    *out_len = ESSL_EVENT_PAYLOAD_SIZE;
    return ESSL_OK;
}

essl_err_t essl_model_info_payload(const uint8_t *sha256, uint8_t mode, const char *const *labels, uint8_t classes,
                                   uint8_t *out, size_t cap, size_t *out_len) {
    if (out == NULL || out_len == NULL || (labels == NULL && classes > 0)) return ESSL_ERR_NULL;
    size_t o = ESSL_SHA256_SIZE + 2u;
    if (cap < o) return ESSL_ERR_BUFFER;
    for (size_t i = 0; i < ESSL_SHA256_SIZE; i++) out[i] = sha256 != NULL ? sha256[i] : 0u;
    out[ESSL_SHA256_SIZE] = mode;
    out[ESSL_SHA256_SIZE + 1u] = classes;
    for (uint8_t k = 0; k < classes; k++) {
        if (labels[k] == NULL) return ESSL_ERR_NULL;
        size_t ln = strlen(labels[k]);
        if (ln > ESSL_MAX_LABEL) return ESSL_ERR_ARG;
        if (cap < o + 1u + ln) return ESSL_ERR_BUFFER;
        out[o++] = (uint8_t)ln;
        memcpy(out + o, labels[k], ln);
        o += ln;
    }
    *out_len = o;
    return ESSL_OK;
}

essl_err_t essl_ack_payload(uint8_t acked_type, uint16_t acked_seq, essl_ack_t status, uint8_t *out, size_t cap,
                            size_t *out_len) {
    if (out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    if (cap < 4) return ESSL_ERR_BUFFER;
    out[0] = acked_type;
    put_u16(out + 1, acked_seq);
    out[3] = (uint8_t)status;
    *out_len = 4;
    return ESSL_OK;
}

void essl_device_init(essl_device_t *dev, const essl_device_info_t *info) {
    if (dev == NULL || info == NULL) return;
    memset(dev, 0, sizeof *dev);
    dev->info = *info;
    dev->min_rate_hz = 1.0f;
    dev->max_rate_hz = 1000.0f;
}

static essl_err_t emit(essl_device_t *dev, uint8_t type, uint64_t now_us, uint8_t count, const uint8_t *payload,
                       size_t plen, uint8_t *out, size_t cap, size_t *used) {
    uint8_t scratch[ESSL_MAX_FRAME];
    essl_frame_t f = {ESSL_VERSION, type, dev->seq++, now_us, count, payload, plen};
    size_t n = 0;
    essl_err_t e = essl_frame_encode(&f, scratch, sizeof scratch, out + *used, cap - *used, &n);
    if (e == ESSL_OK) *used += n;
    return e;
}

essl_err_t essl_device_handle(essl_device_t *dev, const essl_frame_t *cmd, uint64_t now_us, uint8_t *out, size_t cap,
                              size_t *out_len) {
    if (dev == NULL || cmd == NULL || out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    size_t used = 0;
    essl_ack_t status = ESSL_ACK_OK;
    uint8_t buf[ESSL_MAX_FRAME];
    size_t n = 0;
    essl_err_t e;
    switch (cmd->type) {
    case ESSL_MSG_CMD_START: dev->streaming = 1; break;
    case ESSL_MSG_CMD_STOP: dev->streaming = 0; break;
    case ESSL_MSG_CMD_SET_RATE:
        if (cmd->payload_len != 4) { status = ESSL_ACK_BAD_ARGUMENT; break; }
        {
            uint32_t u = get_u32(cmd->payload);
            float hz;
            memcpy(&hz, &u, sizeof hz);
            if (!(hz >= dev->min_rate_hz && hz <= dev->max_rate_hz)) status = ESSL_ACK_BAD_ARGUMENT;
            else dev->info.rate_hz = hz;
        }
        break;
    case ESSL_MSG_CMD_SET_RANGE:
        if (cmd->payload_len != 2) { status = ESSL_ACK_BAD_ARGUMENT; break; }
        {
            uint16_t r = get_u16(cmd->payload);
            if (r != 2 && r != 4 && r != 8 && r != 16) status = ESSL_ACK_BAD_ARGUMENT;
            else {
                /* a 16-bit accelerometer: full scale ±r g maps to ±32768 counts */
                for (uint8_t c = 0; c < dev->info.n_channels; c++)
                    if (dev->info.units[c] == ESSL_UNIT_G) dev->info.counts_per_unit[c] = 32768.0f / (float)r;
                dev->info.range = r;
            }
        }
        break;
    case ESSL_MSG_CMD_IDENTIFY:
        /* every session starts with IDENTIFY: back to samples only, so a host that predates CMD_EVENTS never
           sees an EVENT frame that an earlier session asked for (a new host asks again right after) */
        dev->events_mode = ESSL_EVENTS_OFF;
        e = essl_device_info_payload(&dev->info, buf, sizeof buf, &n);
        if (e != ESSL_OK) return e;
        e = emit(dev, ESSL_MSG_DEVICE_INFO, now_us, dev->flags, buf, n, out, cap, &used);
        if (e != ESSL_OK) return e;
        break;
    case ESSL_MSG_CMD_CUE:
        if (dev->on_cue == NULL) status = ESSL_ACK_UNSUPPORTED;
        else if (cmd->payload_len < 1 || cmd->payload_len > ESSL_MAX_CUE) status = ESSL_ACK_BAD_ARGUMENT;
        else dev->on_cue(cmd->payload, cmd->payload_len, dev->cue_ctx);
        break;
    case ESSL_MSG_CMD_EVENTS:
        if (!(dev->flags & ESSL_DEVICE_FLAG_MODEL)) status = ESSL_ACK_UNSUPPORTED;
        else if (cmd->payload_len != 1 || cmd->payload[0] > ESSL_EVENTS_ONLY) status = ESSL_ACK_BAD_ARGUMENT;
        else {
            /* the mode changes first, so MODEL_INFO reports the one now in force */
            dev->events_mode = cmd->payload[0];
            e = essl_model_info_payload(dev->model_sha256, dev->events_mode, dev->model_labels, dev->model_classes,
                                        buf, sizeof buf, &n);
            if (e != ESSL_OK) return e;
            e = emit(dev, ESSL_MSG_MODEL_INFO, now_us, 0, buf, n, out, cap, &used);
            if (e != ESSL_OK) return e;
        }
        break;
    default: status = ESSL_ACK_UNSUPPORTED; break;
    }
    e = essl_ack_payload(cmd->type, cmd->seq, status, buf, sizeof buf, &n);
    if (e != ESSL_OK) return e;
    e = emit(dev, ESSL_MSG_ACK, now_us, 0, buf, n, out, cap, &used);
    if (e != ESSL_OK) return e;
    *out_len = used;
    return ESSL_OK;
}

essl_err_t essl_device_samples(essl_device_t *dev, const int16_t *samples, uint8_t n, uint64_t first_us, uint8_t *out,
                               size_t cap, size_t *out_len) {
    if (dev == NULL || samples == NULL || out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    uint8_t buf[ESSL_MAX_FRAME];
    size_t plen = 0, used = 0;
    if ((size_t)1 + 2u * (size_t)n * dev->info.n_channels > sizeof buf - ESSL_HEADER_SIZE - ESSL_CRC_SIZE)
        return ESSL_ERR_ARG;
    essl_err_t e = essl_samples_payload(samples, n, dev->info.n_channels, buf, sizeof buf, &plen);
    if (e != ESSL_OK) return e;
    e = emit(dev, ESSL_MSG_SAMPLES, first_us, n, buf, plen, out, cap, &used);
    if (e == ESSL_OK) *out_len = used;
    return e;
}

essl_err_t essl_device_set_model(essl_device_t *dev, const uint8_t *sha256, const char *const *labels, uint8_t classes) {
    if (dev == NULL || labels == NULL) return ESSL_ERR_NULL;
    if (classes == 0) return ESSL_ERR_ARG;
    /* refuse here what MODEL_INFO could not carry, instead of failing at the host's CMD_EVENTS */
    uint8_t probe[ESSL_MAX_FRAME - ESSL_HEADER_SIZE - ESSL_CRC_SIZE];
    size_t n = 0;
    essl_err_t e = essl_model_info_payload(sha256, ESSL_EVENTS_OFF, labels, classes, probe, sizeof probe, &n);
    if (e != ESSL_OK) return e;
    dev->model_sha256 = sha256;
    dev->model_labels = labels;
    dev->model_classes = classes;
    dev->flags |= ESSL_DEVICE_FLAG_MODEL;
    dev->events_mode = ESSL_EVENTS_OFF;
    return ESSL_OK;
}

essl_err_t essl_device_event(essl_device_t *dev, int16_t label, uint8_t reason, float confidence, uint64_t t_start_us,
                             uint64_t t_end_us, uint64_t now_us, uint8_t *out, size_t cap, size_t *out_len) {
    if (dev == NULL || out == NULL || out_len == NULL) return ESSL_ERR_NULL;
    uint8_t buf[ESSL_EVENT_PAYLOAD_SIZE];
    size_t plen = 0, used = 0;
    if (label >= (int16_t)dev->model_classes) return ESSL_ERR_ARG;
    essl_err_t e = essl_event_payload(label, reason, confidence, t_start_us, t_end_us, buf, sizeof buf, &plen);
    if (e != ESSL_OK) return e;
    e = emit(dev, ESSL_MSG_EVENT, now_us, 0, buf, plen, out, cap, &used);
    if (e == ESSL_OK) *out_len = used;
    return e;
}
