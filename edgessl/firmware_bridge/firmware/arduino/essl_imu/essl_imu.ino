// edgessl reference firmware for an Arduino-compatible board with an MPU-6050 on I2C (SDA/SCL, address 0x68).
// Needs a 32-bit board (SAMD21/RP2040/ESP32/nRF52 …): the protocol keeps ~4 KiB of frame buffers, more
// than an AVR Uno's 2 KiB of RAM.
// Streams the 3-axis accelerometer with protocol v1 (docs/protocol.md). Copy essl_protocol.h/.c next to
// this sketch (or into a library folder) before building.
//
// The board classifies too (protocol revision 3) when built with ESSL_WITH_MODEL defined (uncomment below, or
// -DESSL_WITH_MODEL) and the files of `edgessl export-c model.essl --out DIR` (essl_model.h/.c,
// essl_stream.h/.c) copied next to the sketch: it then announces that it runs a model, and while a host has
// asked (CMD_EVENTS) it pushes every sample through essl_stream_push and sends an EVENT for each gesture,
// alongside the samples or instead of them. The model's rate is the board's rate (SET_RATE to another is refused)
// and its channels are the accelerometer's x, y, z in g. The host is told which model the board runs by the
// bundle's checksum, ESSL_MODEL_SHA256 of essl_model.h (define ESSL_BOARD_SHA256 to report another).
// The model adds its weights to flash and its arena and stream state to RAM (memory in essl_model_info.json): with
// the ~4 KiB of frame buffers, a 32 KiB SAMD21 fits the 63-sample uWave model (15 KiB), not the demo's 128-sample
// one (26 KiB); a Cortex-M0+ has no FPU, so the layers the export kept float run in software, far slower than
// docs/mcu.md's Cortex-M4 budget.
// #define ESSL_WITH_MODEL
#include <Wire.h>

extern "C" {
#include "essl_protocol.h"
#ifdef ESSL_WITH_MODEL
#include "essl_model.h"
#include "essl_stream.h"
#endif
}
#if defined(ESSL_WITH_MODEL) && !defined(ESSL_BOARD_SHA256) && defined(ESSL_MODEL_SHA256)
#define ESSL_BOARD_SHA256 ESSL_MODEL_SHA256
#endif

static const uint8_t MPU_ADDR = 0x68;
static const uint8_t PER_FRAME = 10;

static essl_device_t dev;
static uint8_t rx[2 * ESSL_MAX_FRAME];
static size_t rx_len = 0;
static uint8_t out[2 * ESSL_MAX_FRAME];
static uint8_t scratch[ESSL_MAX_FRAME];
static int16_t block[PER_FRAME * 3];
static uint8_t in_block = 0;
static uint64_t block_first_us = 0;
static uint64_t next_sample_us = 0;
static uint32_t last_micros = 0;
static uint64_t clock_high = 0;
static uint32_t cue_since_ms = 0;
static bool cue_lit = false;

#ifdef ESSL_WITH_MODEL
static essl_stream_t stream;  // the live segmentation and classification state (fixed size, no malloc)
static uint8_t model_sha256[ESSL_SHA256_SIZE];

// ESSL_BOARD_SHA256 ("<64 hex digits>") -> bytes; NULL (the host is told "unknown") without it or when malformed
static const uint8_t *model_checksum() {
#ifdef ESSL_BOARD_SHA256
  const char *hex = ESSL_BOARD_SHA256;
  if (strlen(hex) != 2 * ESSL_SHA256_SIZE) return NULL;
  for (size_t i = 0; i < ESSL_SHA256_SIZE; i++) {
    char pair[3] = {hex[2 * i], hex[2 * i + 1], 0};
    char *end = NULL;
    model_sha256[i] = (uint8_t)strtoul(pair, &end, 16);
    if (end != pair + 2) return NULL;
  }
  return model_sha256;
#else
  return NULL;
#endif
}

// One accelerometer sample through the model; an EVENT frame when a gesture ended.
static void classify(const int16_t *xyz, uint64_t t_us) {
  float x[3];
  for (int c = 0; c < 3; c++) x[c] = (float)xyz[c] / dev.info.counts_per_unit[c];  // counts -> g
  essl_event_t ev;
  if (essl_stream_push(&stream, x, (uint32_t)(t_us / 1000u), &ev) != 1) return;
  size_t n = 0;
  if (essl_device_event(&dev, ev.label < 0 ? -1 : (int16_t)ev.label, ev.reason, ev.confidence,
                        (uint64_t)ev.t_start_ms * 1000u, (uint64_t)ev.t_end_ms * 1000u, t_us, out, sizeof out,
                        &n) == ESSL_OK)
    Serial.write(out, n);
}
#endif

// micros() wraps every ~71 min; extend it to 64 bits.
static uint64_t now_us() {
  uint32_t m = micros();
  if (m < last_micros) clock_high += (1ULL << 32);
  last_micros = m;
  return clock_high | m;
}

// CMD_CUE: light the built-in LED for 0.5 s as the "perform now" prompt (the label is not shown).
static void show_cue(const uint8_t *label, size_t len, void *ctx) {
  (void)label;
  (void)len;
  (void)ctx;
  digitalWrite(LED_BUILTIN, HIGH);
  cue_since_ms = millis();
  cue_lit = true;
}

static void mpu_write(uint8_t reg, uint8_t v) {
  Wire.beginTransmission(MPU_ADDR);
  Wire.write(reg);
  Wire.write(v);
  Wire.endTransmission();
}

static void mpu_set_range(uint16_t g) {
  uint8_t code = g == 16 ? 3 : g == 8 ? 2 : g == 4 ? 1 : 0;  // ACCEL_CONFIG AFS_SEL
  mpu_write(0x1C, code << 3);
}

static bool mpu_read(int16_t *xyz) {
  Wire.beginTransmission(MPU_ADDR);
  Wire.write(0x3B);  // ACCEL_XOUT_H
  if (Wire.endTransmission(false) != 0) return false;
  if (Wire.requestFrom(MPU_ADDR, (uint8_t)6) != 6) return false;
  for (int i = 0; i < 3; i++) xyz[i] = (int16_t)((Wire.read() << 8) | Wire.read());
  return true;
}

void setup() {
  Serial.begin(115200);
  Wire.begin();
  Wire.setClock(400000);
  mpu_write(0x6B, 0x00);  // PWR_MGMT_1: wake up
  mpu_write(0x1A, 0x03);  // CONFIG: 44 Hz digital low-pass, ahead of 100 Hz sampling
  mpu_set_range(2);
  essl_device_info_t info;
  memset(&info, 0, sizeof info);
  info.device_id = 0x6050u;
  info.firmware[0] = 1;
#ifdef ESSL_WITH_MODEL
  info.firmware[1] = 1;
  info.rate_hz = ESSL_MODEL_RATE_HZ;  // the model's rate is the board's
#else
  info.rate_hz = 100.0f;
#endif
  info.range = 2;
  info.n_channels = 3;
  strcpy(info.names[0], "acc_x");
  strcpy(info.names[1], "acc_y");
  strcpy(info.names[2], "acc_z");
  for (int c = 0; c < 3; c++) {
    info.units[c] = ESSL_UNIT_G;
    info.counts_per_unit[c] = 16384.0f;  // MPU-6050 at ±2 g
  }
  essl_device_init(&dev, &info);
#ifdef ESSL_WITH_MODEL
  dev.min_rate_hz = dev.max_rate_hz = ESSL_MODEL_RATE_HZ;
  // a model of other channels than x, y, z, or labels MODEL_INFO cannot carry: no flag, samples only
  if (ESSL_MODEL_CHANNELS == 3) essl_device_set_model(&dev, model_checksum(), essl_model_labels, ESSL_MODEL_CLASSES);
  essl_stream_init(&stream);
#endif
  pinMode(LED_BUILTIN, OUTPUT);
  dev.on_cue = show_cue;
  Serial.write((uint8_t)0);  // a delimiter, so the host resynchronises after our reset
}

static void handle_input() {
  while (Serial.available() && rx_len < sizeof rx) {
    uint8_t b = Serial.read();
    if (b != 0) {
      rx[rx_len++] = b;
      continue;
    }
    essl_frame_t cmd;
    if (rx_len > 0 && essl_frame_decode(rx, rx_len, scratch, sizeof scratch, &cmd) == ESSL_OK) {
      uint16_t old_range = dev.info.range;
      int was_streaming = dev.streaming;
      size_t n = 0;
      if (essl_device_handle(&dev, &cmd, now_us(), out, sizeof out, &n) == ESSL_OK) Serial.write(out, n);
      if (dev.info.range != old_range) mpu_set_range(dev.info.range);
#ifdef ESSL_WITH_MODEL
      if (dev.streaming && !was_streaming) essl_stream_init(&stream);  // no gesture spans a pause
#else
      (void)was_streaming;
#endif
      in_block = 0;
      next_sample_us = now_us();
    }
    rx_len = 0;
  }
  if (rx_len == sizeof rx) rx_len = 0;  // garbage without delimiters
}

void loop() {
  handle_input();
  if (cue_lit && millis() - cue_since_ms >= 500) {
    digitalWrite(LED_BUILTIN, LOW);
    cue_lit = false;
  }
  if (!dev.streaming) return;
  uint64_t t = now_us();
  if (t < next_sample_us) return;
  uint64_t period_us = (uint64_t)(1e6f / dev.info.rate_hz);
  // fallen behind by more than two periods (a model run in classify() takes tens of ms on an M0/M4): start again
  // from now rather than read the sensor back to back for the missed periods, which would give samples of one
  // moment with timestamps in the same millisecond (each one restarts essl_stream's timeline); the hole is a
  // short gap that essl_stream and the host bridge (up to 0.25 s). Better still: the IMU's own FIFO, read here.
  if (t - next_sample_us > 2 * period_us) next_sample_us = t;
  next_sample_us += period_us;
  int16_t xyz[3];
  if (!mpu_read(xyz)) return;  // a failed I2C read shows up on the host as a timestamp gap
#ifdef ESSL_WITH_MODEL
  if (dev.events_mode != ESSL_EVENTS_OFF && (dev.flags & ESSL_DEVICE_FLAG_MODEL)) classify(xyz, t);
  if (dev.events_mode == ESSL_EVENTS_ONLY) return;  // events instead of samples
#endif
  if (in_block == 0) block_first_us = t;
  memcpy(block + 3 * in_block, xyz, sizeof xyz);
  if (++in_block == PER_FRAME) {
    size_t n = 0;
    if (essl_device_samples(&dev, block, PER_FRAME, block_first_us, out, sizeof out, &n) == ESSL_OK) Serial.write(out, n);
    in_block = 0;
  }
}
