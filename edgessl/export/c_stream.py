"""The runtime's ``segment`` input mode as C (``essl_stream.c/.h``), so a board emits gestures, not logits.

One call per sample, no malloc, state in a caller-owned ``essl_stream_t``. It does what
:class:`edgessl.edge_runtime.runtime.GestureRuntime` does with ``DecisionConfig(report_unknown=True)``:

* timestamps onto the model's rate grid by linear interpolation (:class:`~edgessl.edge_runtime.stream.StreamWindower`):
  a gap up to ``max_fill`` (the runtime's 0.25 s) is bridged, a longer one restarts the segmentation, a
  timestamp up to ``JITTER_PERIODS`` sample periods before the one before is jitter (taken as at its time), one
  further back starts a new timeline (and clears the suppression);
* :class:`edgessl.segmenter.MotionSegmenter` with the bundle's ``SegmentParams`` (every sample count is
  computed here with the same Python expressions, so C and Python agree on them);
* the segment stretched to the model's length as :func:`edgessl.preprocess.resample_to_length` does;
* the model, the softmax confidence and the out-of-distribution score (1 - max cosine of the embedding to
  the bundle's normalised class prototypes), the bundle's two gates, and the segment-mode suppression.

Sliding-window bundles are refused (naming the mode): their smoothing and hits are not written in C yet.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from edgessl.edge_runtime.bundle import Bundle
from edgessl.export.c_text import CExportError, c_array, c_float
from edgessl.preprocess import JITTER_PERIODS, MAX_FILL_S
from edgessl.segmenter import SegmentParams, motion_rows, profile
from edgessl.units import g_channels, sensor_triads


def segment_constants(params: SegmentParams, rate: float) -> dict[str, Any]:
    """Every sample count of :class:`~edgessl.segmenter.MotionSegmenter`, by its own expressions."""
    p = params
    return {
        "ENERGY_WINDOW": max(2, int(round(p.energy_window_s * rate))),
        "BACK": int(round(p.onset_lag_s * rate)) + int(p.preroll_s * rate),
        "HANGOVER": int(p.hangover_s * rate),
        "MAX_LEN": int(p.max_duration_s * rate),
        "RELEASE_LAG": int(round(p.release_lag_s * rate)),
        "PREROLL": int(p.preroll_s * rate),
        "MIN_LEN": max(1, math.ceil(p.min_duration_s * rate)),  # the smallest L with min_duration_s * rate <= L
        "THRESHOLD": float(p.threshold_g),
    }


def stream_sources(b: Bundle, source: str, mounting: np.ndarray | None = None, cut: str | None = None
                   ) -> tuple[str, str, dict[str, Any]]:  # fmt: skip
    """``essl_stream.h``, ``essl_stream.c`` and the facts for ``essl_model_info.json``.

    ``mounting`` (``[3, 3]``, a user state's: board axes -> the training data's) turns each stretched segment's
    accelerometer and gyroscope triads before the model, as ``GestureRuntime`` does with the state; ``cut``
    is the state's segmentation profile (:func:`edgessl.segmenter.profile`).

    Raises:
        CExportError: a sliding-window bundle, or a segment length the stretch cannot handle.
    """
    m = b.manifest
    if m["input_mode"] != "segment":
        raise CExportError(f"{b.path}: input mode {m['input_mode']!r} is not supported by the C stream (only "
                           "'segment': motion-energy gestures stretched to the window); export the bundle with "
                           "--input-mode segment")  # fmt: skip
    rate = float(b.rate_hz or 100.0)
    k = segment_constants(profile(b.segmentation or SegmentParams(), cut), rate)
    if k["MIN_LEN"] < 2:
        raise CExportError(f"{b.path}: min_duration_s gives segments of {k['MIN_LEN']} sample; the stretch needs >= 2")
    cap = max(k["MAX_LEN"], k["ENERGY_WINDOW"]) + 1
    period = Fraction(1000.0 / rate).limit_denominator(1000)  # ms per model sample
    gap_ms = 1.5 * 1000.0 / rate + MAX_FILL_S * 1000.0
    jitter_ms = int(JITTER_PERIODS * 1000.0 / rate)  # (whole ms: the timestamps' unit)
    p = b.adaptation()
    proto = p["prototypes"].astype(np.float32)
    proto = proto / np.maximum(np.linalg.norm(proto, axis=1, keepdims=True), 1e-12)  # as the runtime does
    conf = float(m.get("confidence_threshold", 0.5))
    ood = m.get("ood_threshold")
    has_ood = ood is not None
    rough = m.get("roughness_threshold")
    has_rough = rough is not None
    g = g_channels(b.units)  # the accelerometer's: the first 2 s are checked to be in g, as the runtime does
    g_check = (f"#define ESSL_STREAM_G_SAMPLES {max(50, int(2 * rate))} /* checked over the first so many samples */\n"
               f"#define ESSL_STREAM_G_AXES {g[0]}, {g[1]}, {g[2]} /* the accelerometer's channels in g */"
               if len(g) == 3 else "/* no accelerometer in g: no units check */")  # fmt: skip
    # the channels the cut's energy is measured on, as the runtime's (the accelerometer's beside a gyroscope)
    motion = motion_rows(list(b.units)) or list(range(len(b.channels)))
    mount_src, triads = "", sensor_triads(b.units)
    if mounting is not None:
        if not triads:
            raise CExportError(f"{b.path}: the state turns the board's axes, and this bundle has no accelerometer or "
                               f"gyroscope triad to turn (units {list(b.units)})")  # fmt: skip
        mount_src = f"""
/* the user's board mounting (edgessl enroll --calibrate; GestureRuntime applies the state's the same way): each
   stretched segment's triads turned from the board's axes into the training data's, before the model */
{c_array("float", "essl_mount_rotation", np.asarray(mounting, np.float32))}{c_array("int32_t", "essl_mount_triads", np.array(triads))}
static void essl_mount(float *w)
{{
    int32_t k, i, j, t;
    for (k = 0; k < {len(triads)}; ++k) {{
        float *x[3];
        for (i = 0; i < 3; ++i) x[i] = &w[essl_mount_triads[3 * k + i] * ESSL_MODEL_LENGTH];
        for (t = 0; t < ESSL_MODEL_LENGTH; ++t) {{
            float v[3], y;
            for (i = 0; i < 3; ++i) v[i] = x[i][t];
            for (i = 0; i < 3; ++i) {{
                y = 0.0f;
                for (j = 0; j < 3; ++j) y += essl_mount_rotation[3 * i + j] * v[j];
                x[i][t] = y;
            }}
        }}
    }}
}}
"""
    state_bytes_estimate = 4 * (cap * len(b.channels) + len(b.channels) * b.window + 2 * len(b.labels)
                                + proto.shape[1] + len(b.channels)) + 96  # fmt: skip
    header = f"""/* {source}
 * Live gesture events from a sample stream: motion-energy segmentation, stretch to the model's length,
 * classification and the bundle's noise, confidence and out-of-distribution gates, as edgessl's runtime does in
 * segment mode. Generated by edgessl export-c; do not edit. See docs/mcu.md. */
#ifndef ESSL_STREAM_H
#define ESSL_STREAM_H

#include <stdint.h>

#include "essl_model.h"

#ifdef __cplusplus
extern "C" {{
#endif

/* the bundle's segmentation in model samples at ESSL_MODEL_RATE_HZ (edgessl.segmenter.SegmentParams) */
#define ESSL_STREAM_ENERGY_WINDOW {k["ENERGY_WINDOW"]}
#define ESSL_STREAM_BACK          {k["BACK"]} /* onset lag + preroll */
#define ESSL_STREAM_HANGOVER      {k["HANGOVER"]}
#define ESSL_STREAM_MAX_LEN       {k["MAX_LEN"]}
#define ESSL_STREAM_RELEASE_LAG   {k["RELEASE_LAG"]}
#define ESSL_STREAM_PREROLL       {k["PREROLL"]}
#define ESSL_STREAM_MIN_LEN       {k["MIN_LEN"]}
#define ESSL_STREAM_THRESHOLD     {c_float(k["THRESHOLD"])} /* energy, in the bundle's units */
#define ESSL_STREAM_MOTION_CHANNELS {len(motion)} /* the channels the energy is measured on: */
#define ESSL_STREAM_MOTION_ROWS   {", ".join(str(i) for i in motion)}
#define ESSL_STREAM_CAPACITY      {cap} /* samples kept: the longest segment the segmenter reports */
{g_check}
/* the model's sample period is ESSL_STREAM_PERIOD_NUM / ESSL_STREAM_PERIOD_DEN milliseconds */
#define ESSL_STREAM_PERIOD_NUM    {period.numerator}u
#define ESSL_STREAM_PERIOD_DEN    {period.denominator}u
/* a longer hole in the timestamps restarts the segmentation; a shorter one is bridged (runtime: 0.25 s) */
#define ESSL_STREAM_GAP_MS        {c_float(gap_ms)}
/* a timestamp up to this many ms before the one before it (or equal) is a clock's jitter: taken as at that
   time; one further back starts a new timeline (the runtime's JITTER_PERIODS sample periods) */
#define ESSL_STREAM_JITTER_MS     {jitter_ms}
/* the bundle's calibrated gates; to override, pass -D on the line that compiles essl_stream.c (e.g.
   -DESSL_STREAM_CONFIDENCE=0.6f): a #define in your own file before including this does not reach them */
#ifndef ESSL_STREAM_CONFIDENCE
#define ESSL_STREAM_CONFIDENCE    {c_float(conf)}
#endif
#ifndef ESSL_STREAM_OOD_THRESHOLD
#define ESSL_STREAM_OOD_THRESHOLD {c_float(float(ood) if ood is not None else 1.0)}
#endif
#define ESSL_STREAM_HAS_OOD       {int(has_ood)}
/* the noise gate: a segment rougher than this (mean squared step over variance, pooled over the channels;
   white noise scores 2) is noise or vibration, not a movement */
#ifndef ESSL_STREAM_ROUGHNESS_THRESHOLD
#define ESSL_STREAM_ROUGHNESS_THRESHOLD {c_float(float(rough) if rough is not None else 4.0)}
#endif
#define ESSL_STREAM_HAS_ROUGHNESS {int(has_rough)}
/* 1: the segments are turned by the user's board mounting (export-c --state) before the model */
#define ESSL_STREAM_MOUNTED       {int(mounting is not None)}

typedef enum {{
    ESSL_REASON_OK = 0,
    ESSL_REASON_LOW_CONFIDENCE = 1,
    ESSL_REASON_OUT_OF_DISTRIBUTION = 2,
    ESSL_REASON_NOISE = 3 /* checked first: the segment is noise or vibration, not a movement */
}} essl_reason_t;

typedef enum {{
    ESSL_STREAM_NONE = 0,          /* no gesture ended with this sample */
    ESSL_STREAM_EVENT = 1,         /* *ev holds a gesture */
    ESSL_STREAM_ERR_NULL = -1,     /* s, sample or ev is NULL */
    ESSL_STREAM_ERR_NONFINITE = -2 /* the sample holds NaN or inf: rejected (counted), the stream goes on */
}} essl_stream_result_t;

typedef struct {{
    int32_t label;        /* class index into essl_model_labels, -1 = unknown */
    float confidence;     /* softmax probability of the best class */
    float ood_score;      /* 1 - max cosine similarity of the embedding to the class prototypes */
    float roughness;      /* of the stretched segment (0 when the bundle has no noise gate) */
    uint32_t t_start_ms;  /* times of the segment's first and last sample, on the caller's clock */
    uint32_t t_end_ms;
    uint8_t reason;       /* essl_reason_t: why it is unknown */
}} essl_event_t;

typedef struct {{
    uint32_t samples;         /* samples pushed */
    uint32_t rejected;        /* samples refused (NaN or inf) */
    uint32_t segments;        /* gestures cut and classified */
    uint32_t events;          /* events returned (unknown ones included) */
    uint32_t unknown_noise;
    uint32_t unknown_low_confidence;
    uint32_t unknown_out_of_distribution;
    uint32_t suppressed;      /* segments starting before the previous event ended: not reported */
    uint32_t dropped_events;  /* a second event within one push (a bridged gap): the later one is lost */
    uint32_t window_resets;   /* gaps longer than ESSL_STREAM_GAP_MS */
    uint32_t too_short;       /* movements under the segmenter's minimum duration: not classified */
    uint32_t too_long;        /* movements of its maximum duration or longer: not classified */
    uint32_t cut_off;         /* movements under way when the stream started or restarted: not classified */
    uint32_t timeline_resets; /* timestamps more than ESSL_STREAM_JITTER_MS before the one before */
    uint32_t not_in_g;        /* 1: over the first ESSL_STREAM_G_SAMPLES the accelerometer's magnitude averaged
                                 over 4 (gravity alone is 1 g): m/s2 or mg, every movement then looks like shaking */
    uint32_t jittered;        /* timestamps up to ESSL_STREAM_JITTER_MS before the one before (or equal): jitter */
}} essl_stream_stats_t;

/* Caller-owned state (no malloc): declare one statically; its size is fixed by the model. */
typedef struct {{
    float buf[ESSL_STREAM_CAPACITY][ESSL_MODEL_CHANNELS]; /* samples on the model's grid, a ring */
    float window[ESSL_MODEL_CHANNELS * ESSL_MODEL_LENGTH];  /* the stretched segment */
    float logits[ESSL_MODEL_CLASSES];
    float embedding[ESSL_MODEL_EMBED_DIM];
    float last_x[ESSL_MODEL_CHANNELS];  /* the last raw sample, to interpolate from */
    uint32_t last_t;
    uint32_t base_t;                    /* time of grid sample 0 */
    uint32_t n;                         /* grid samples since the last restart */
    uint32_t active_start;
    int32_t quiet;
    int32_t active;                     /* a gesture is in progress */
    int32_t resting;                    /* a movement too long to be a gesture goes on: nothing is cut until it rests */
    int32_t settling;                   /* since a (re)start: nothing is cut until the signal has been still */
    int32_t moved;                      /* a movement was under way while settling: its start was not seen */
    int32_t has_last;
    int32_t has_suppress;
    uint32_t suppress_until;            /* no event for a segment starting before this time */
    int32_t has_pending;
    essl_event_t pending;
    float energy;                       /* of the newest sample */
    float g_sum;                        /* the units check: sum of the accelerometer's magnitudes so far */
    uint32_t g_n;
    essl_stream_stats_t stats;
}} essl_stream_t;

void essl_stream_init(essl_stream_t *s);

/* One sample (ESSL_MODEL_CHANNELS floats in the bundle's units) taken at t_ms (milliseconds, any origin,
   increasing; wraps after 49 days are fine). Returns ESSL_STREAM_EVENT (1) and fills *ev when a gesture
   ended, ESSL_STREAM_NONE (0) otherwise, or a negative essl_stream_result_t. Runs the model (about
   ESSL_MODEL_MACS multiply-adds) in the call that ends a gesture. */
int essl_stream_push(essl_stream_t *s, const float *sample, uint32_t t_ms, essl_event_t *ev);

#ifdef __cplusplus
}}
#endif

#endif /* ESSL_STREAM_H */
"""
    body = f"""/* {source}
 * Generated by edgessl export-c; do not edit. Mirrors edgessl.segmenter.MotionSegmenter,
 * edgessl.preprocess.resample_to_length and GestureRuntime's segment-mode decision (docs/mcu.md). */
#include "essl_stream.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* the bundle's class prototypes, unit length (the runtime normalises them the same way) */
{c_array("float", "essl_prototypes", proto)}
static void essl_restart(essl_stream_t *s)
{{
    s->n = 0;
    s->active = 0;
    s->resting = 0;
    s->settling = 1;
    s->moved = 0;
    s->quiet = 0;
    s->has_last = 0;
    s->energy = 0.0f;
}}

void essl_stream_init(essl_stream_t *s)
{{
    if (s == NULL) return;
    memset(s, 0, sizeof *s);
    essl_restart(s);
}}

/* time of grid sample k, rounded to the millisecond */
static uint32_t essl_grid_ms(const essl_stream_t *s, uint32_t k)
{{
    uint64_t num = (uint64_t)k * ESSL_STREAM_PERIOD_NUM;
    uint32_t q = (uint32_t)(num / ESSL_STREAM_PERIOD_DEN), r = (uint32_t)(num % ESSL_STREAM_PERIOD_DEN);
    return s->base_t + q + (2u * r >= ESSL_STREAM_PERIOD_DEN ? 1u : 0u);
}}

/* moving standard deviation over the trailing energy window, summed over the motion channels (segmenter.py) */
static const int32_t essl_motion_rows[ESSL_STREAM_MOTION_CHANNELS] = {{ESSL_STREAM_MOTION_ROWS}};

static float essl_energy(const essl_stream_t *s)
{{
    uint32_t cnt = s->n < ESSL_STREAM_ENERGY_WINDOW ? s->n : ESSL_STREAM_ENERGY_WINDOW;
    float var = 0.0f;
    int32_t c, k;
    uint32_t i;
    if (cnt < 2) return 0.0f;
    for (k = 0; k < ESSL_STREAM_MOTION_CHANNELS; ++k) {{
        float mean = 0.0f, sq = 0.0f;
        c = essl_motion_rows[k];
        for (i = s->n - cnt; i < s->n; ++i) mean += s->buf[i % ESSL_STREAM_CAPACITY][c];
        mean /= (float)cnt;
        for (i = s->n - cnt; i < s->n; ++i) {{
            float d = s->buf[i % ESSL_STREAM_CAPACITY][c] - mean;
            sq += d * d;
        }}
        var += sq / (float)cnt;
    }}
    return sqrtf(var);
}}

/* samples [start, end) stretched to ESSL_MODEL_LENGTH by linear interpolation, endpoints to endpoints */
static void essl_stretch(essl_stream_t *s, uint32_t start, uint32_t end)
{{
    uint32_t len = end - start, j;
    int32_t c;
    for (j = 0; j < ESSL_MODEL_LENGTH; ++j) {{
        uint32_t num = j * (len - 1u), i0 = num / (ESSL_MODEL_LENGTH - 1u);
        float frac = (float)(num % (ESSL_MODEL_LENGTH - 1u)) / (float)(ESSL_MODEL_LENGTH - 1u);
        const float *a, *b;
        if (i0 > len - 2u) {{
            i0 = len - 2u;
            frac = 1.0f;
        }}
        a = s->buf[(start + i0) % ESSL_STREAM_CAPACITY];
        b = s->buf[(start + i0 + 1u) % ESSL_STREAM_CAPACITY];
        for (c = 0; c < ESSL_MODEL_CHANNELS; ++c) {{
            s->window[c * ESSL_MODEL_LENGTH + (int32_t)j] = a[c] * (1.0f - frac) + b[c] * frac;
        }}
    }}
}}

/* edgessl.preprocess.roughness of the stretched segment: the mean squared step between samples over the
   variance, both summed over the channels (0 for a constant segment) */
static float essl_roughness(const essl_stream_t *s)
{{
    float steps = 0.0f, var = 0.0f;
    int32_t c, j;
    for (c = 0; c < ESSL_MODEL_CHANNELS; ++c) {{
        const float *w = &s->window[c * ESSL_MODEL_LENGTH];
        float mean = 0.0f, sq = 0.0f, st = 0.0f;
        for (j = 0; j < ESSL_MODEL_LENGTH; ++j) mean += w[j];
        mean /= (float)ESSL_MODEL_LENGTH;
        for (j = 0; j < ESSL_MODEL_LENGTH; ++j) sq += (w[j] - mean) * (w[j] - mean);
        for (j = 1; j < ESSL_MODEL_LENGTH; ++j) st += (w[j] - w[j - 1]) * (w[j] - w[j - 1]);
        var += sq / (float)ESSL_MODEL_LENGTH;
        steps += st / (float)(ESSL_MODEL_LENGTH - 1);
    }}
    return var > 1e-20f ? steps / var : 0.0f;
}}

{mount_src}
/* classify the segment and apply the gates and the suppression; 1 when it is an event */
static int essl_decide(essl_stream_t *s, uint32_t start, uint32_t end, essl_event_t *ev)
{{
    int32_t k, best = 0, d;
    float mx, sum = 0.0f, norm = 0.0f, sim = -2.0f, conf, ood, rough = 0.0f;
    uint32_t t0 = essl_grid_ms(s, start), t1 = essl_grid_ms(s, end - 1u);
    essl_stretch(s, start, end);
    s->stats.segments++;
#if ESSL_STREAM_MOUNTED
    essl_mount(s->window);
#endif
    if (ESSL_STREAM_HAS_ROUGHNESS) rough = essl_roughness(s); /* before the model: it may work in place */
    if (essl_model_run(s->window, s->logits, s->embedding) != ESSL_MODEL_OK) return 0;
    mx = s->logits[0];
    for (k = 1; k < ESSL_MODEL_CLASSES; ++k) {{
        if (s->logits[k] > mx) {{
            mx = s->logits[k];
            best = k;
        }}
    }}
    for (k = 0; k < ESSL_MODEL_CLASSES; ++k) sum += expf(s->logits[k] - mx);
    conf = 1.0f / sum;
    for (d = 0; d < ESSL_MODEL_EMBED_DIM; ++d) norm += s->embedding[d] * s->embedding[d];
    for (k = 0; k < ESSL_MODEL_CLASSES; ++k) {{
        float dot = 0.0f;
        for (d = 0; d < ESSL_MODEL_EMBED_DIM; ++d) dot += essl_prototypes[k * ESSL_MODEL_EMBED_DIM + d] * s->embedding[d];
        if (dot > sim) sim = dot;
    }}
    norm = sqrtf(norm);
    ood = 1.0f - sim / (norm > 1e-12f ? norm : 1e-12f);
    if (s->has_suppress && (int32_t)(t0 - s->suppress_until) < 0) {{
        s->stats.suppressed++;
        return 0;
    }}
    ev->label = best;
    ev->reason = ESSL_REASON_OK;
    if (ESSL_STREAM_HAS_ROUGHNESS && rough > ESSL_STREAM_ROUGHNESS_THRESHOLD) {{
        ev->label = -1;
        ev->reason = ESSL_REASON_NOISE;
        s->stats.unknown_noise++;
    }} else if (conf < ESSL_STREAM_CONFIDENCE) {{
        ev->label = -1;
        ev->reason = ESSL_REASON_LOW_CONFIDENCE;
        s->stats.unknown_low_confidence++;
    }} else if (ESSL_STREAM_HAS_OOD && ood > ESSL_STREAM_OOD_THRESHOLD) {{
        ev->label = -1;
        ev->reason = ESSL_REASON_OUT_OF_DISTRIBUTION;
        s->stats.unknown_out_of_distribution++;
    }}
    ev->confidence = conf;
    ev->ood_score = ood;
    ev->roughness = rough;
    ev->t_start_ms = t0;
    ev->t_end_ms = t1;
    s->has_suppress = 1;
    s->suppress_until = t1;
    return 1;
}}

/* one sample on the model's grid: the segmenter of edgessl/segmenter.py, sample by sample */
static int essl_grid_sample(essl_stream_t *s, const float *x, essl_event_t *ev)
{{
    uint32_t n, length;
    int32_t c;
    for (c = 0; c < ESSL_MODEL_CHANNELS; ++c) s->buf[s->n % ESSL_STREAM_CAPACITY][c] = x[c];
    s->n++;
    n = s->n;
    s->energy = essl_energy(s);
    if (!s->active) {{
        if (s->resting || s->settling) {{ /* the rest of a movement too long to be a gesture, or of one whose
                                            start the stream did not see, is no gesture either */
            s->quiet = s->energy <= ESSL_STREAM_THRESHOLD ? s->quiet + 1 : 0;
            if (s->settling && s->quiet == 0) s->moved = 1;
            if (s->quiet >= ESSL_STREAM_HANGOVER) {{
                if (s->settling && s->moved) s->stats.cut_off++;
                s->resting = 0;
                s->settling = 0;
                s->moved = 0;
                s->quiet = 0;
            }}
            return 0;
        }}
        if (s->energy > ESSL_STREAM_THRESHOLD) {{
            s->active_start = n > ESSL_STREAM_BACK ? n - ESSL_STREAM_BACK : 0u;
            s->active = 1;
            s->quiet = 0;
        }}
        return 0;
    }}
    s->quiet = s->energy <= ESSL_STREAM_THRESHOLD ? s->quiet + 1 : 0;
    length = n - s->active_start;
    if (s->quiet >= ESSL_STREAM_HANGOVER || length >= ESSL_STREAM_MAX_LEN) {{
        uint32_t end = n;
        int emitted = 0;
        if (s->quiet) {{
            int64_t e = (int64_t)n - s->quiet - ESSL_STREAM_RELEASE_LAG + ESSL_STREAM_PREROLL;
            end = e < (int64_t)n ? (uint32_t)(e > 0 ? e : 0) : n;
        }}
        if (length >= ESSL_STREAM_MAX_LEN) {{
            s->stats.too_long++; /* shaking or continuous motion: no gesture is that long */
            s->resting = s->quiet < ESSL_STREAM_HANGOVER; /* still moving: wait for rest */
        }} else if (end < s->active_start + ESSL_STREAM_MIN_LEN) {{
            s->stats.too_short++; /* a bump or a flick */
        }} else {{
            emitted = essl_decide(s, s->active_start, end, ev);
        }}
        s->active = 0;
        s->quiet = 0;
        return emitted;
    }}
    return 0;
}}

static void essl_emit(essl_stream_t *s, const float *x)
{{
    essl_event_t e;
    if (essl_grid_sample(s, x, &e)) {{
        if (s->has_pending) {{
            s->stats.dropped_events++;
        }} else {{
            s->pending = e;
            s->has_pending = 1;
        }}
    }}
}}

int essl_stream_push(essl_stream_t *s, const float *sample, uint32_t t_ms, essl_event_t *ev)
{{
    int32_t c;
    if (s == NULL || sample == NULL || ev == NULL) return ESSL_STREAM_ERR_NULL;
    for (c = 0; c < ESSL_MODEL_CHANNELS; ++c) {{
        if (!(sample[c] - sample[c] == 0.0f)) {{
            s->stats.rejected++;
            return ESSL_STREAM_ERR_NONFINITE;
        }}
    }}
    s->stats.samples++;
#ifdef ESSL_STREAM_G_AXES
    if (s->g_n < ESSL_STREAM_G_SAMPLES) {{
        static const int32_t axes[3] = {{ESSL_STREAM_G_AXES}};
        float m2 = 0.0f;
        for (c = 0; c < 3; ++c) m2 += sample[axes[c]] * sample[axes[c]];
        s->g_sum += sqrtf(m2);
        if (++s->g_n == ESSL_STREAM_G_SAMPLES && s->g_sum > 4.0f * (float)ESSL_STREAM_G_SAMPLES) s->stats.not_in_g = 1;
    }}
#endif
    if (s->has_last) {{
        int32_t dt = (int32_t)(t_ms - s->last_t);
        if (dt <= 0 && -dt <= ESSL_STREAM_JITTER_MS) {{ /* a clock's jitter: this sample at the last one's time */
            s->stats.jittered++;
            t_ms = s->last_t;
        }} else if (dt <= 0) {{ /* a new timeline: the clock restarted or jumped back */
            s->stats.timeline_resets++;
            s->has_suppress = 0;
            essl_restart(s);
        }} else if ((float)dt > ESSL_STREAM_GAP_MS) {{ /* too long to bridge: start the segmentation afresh */
            s->stats.window_resets++;
            essl_restart(s);
        }}
    }}
    if (!s->has_last) {{
        s->base_t = t_ms;
        essl_emit(s, sample);
    }} else {{
        /* every grid time in (last_t, t_ms], interpolated between the last sample and this one */
        for (;;) {{
            uint64_t num = (uint64_t)s->n * ESSL_STREAM_PERIOD_NUM;
            uint32_t q = (uint32_t)(num / ESSL_STREAM_PERIOD_DEN), r = (uint32_t)(num % ESSL_STREAM_PERIOD_DEN);
            uint32_t rel = t_ms - s->base_t;
            if (q > rel || (q == rel && r != 0u)) break;
            if (q == rel) {{
                essl_emit(s, sample);
            }} else {{
                float x[ESSL_MODEL_CHANNELS];
                float at = (float)(int32_t)(s->base_t + q - s->last_t) + (float)r / (float)ESSL_STREAM_PERIOD_DEN;
                float frac = at / (float)(int32_t)(t_ms - s->last_t);
                for (c = 0; c < ESSL_MODEL_CHANNELS; ++c) x[c] = s->last_x[c] + (sample[c] - s->last_x[c]) * frac;
                essl_emit(s, x);
            }}
        }}
    }}
    for (c = 0; c < ESSL_MODEL_CHANNELS; ++c) s->last_x[c] = sample[c];
    s->last_t = t_ms;
    s->has_last = 1;
    if (s->has_pending) {{
        *ev = s->pending;
        s->has_pending = 0;
        s->stats.events++;
        return ESSL_STREAM_EVENT;
    }}
    return ESSL_STREAM_NONE;
}}
"""
    info = {"mode": "segment", "segmentation": k, "capacity_samples": cap, "period_ms": float(period),
            "gap_ms": gap_ms, "confidence_threshold": conf, "ood_threshold": ood,
            "roughness_threshold": rough, "segmentation_profile": cut or "default",
            "mounting": None if mounting is None else {"rotation": np.round(np.asarray(mounting, float), 6).tolist(),
                                                       "triads": triads},
            "state_bytes_estimate": state_bytes_estimate}  # fmt: skip
    return header, body, info
