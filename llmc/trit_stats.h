/*
 llmc/trit_stats.h: the trit diagnostics both trainers print with the val loss.
 Per BitLinear matrix: the fraction of zero trits (near a third is typical for
 b1.58), the fraction that flipped since the last report, and the scale.

 The trits of all BitLinear matrices live in one int8 buffer, kind by kind
 (qkv, attproj, fc, fcproj), each kind (L, OC, IC): bitlinear_trit_offsets.
*/
#ifndef LLMC_TRIT_STATS_H
#define LLMC_TRIT_STATS_H

#include <stdio.h>
#include <stdint.h>
#include <math.h>
#include "gpt2_config.h" // defines: GPT2Config, bitlinear_shape, bitlinear_scale_index, BITLINEAR_TENSOR, BITLINEAR_NAMES
#include "logger.h"      // defines: Logger, logger_log_trit
#include "utils.h"       // defines: mallocCheck

typedef struct {
    float zero_frac;
    float flip_frac; // -1 at the first report of this process (no previous trits to compare with)
    float scale;
} TritStats;

// where each kind of BitLinear matrix starts in the trit buffer; returns the total count
static inline size_t bitlinear_trit_offsets(size_t offset[NUM_BITLINEAR], const GPT2Config *cfg) {
    size_t total = 0;
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(cfg, k, &OC, &IC);
        offset[k] = total;
        total += (size_t)cfg->num_layers * OC * IC;
    }
    return total;
}

// stats has L*4 entries, [bitlinear_scale_index(l, k)]; scales (L*4) the per-tensor scales;
// trits_prev is the buffer of the last report (ignored when have_prev is 0)
static inline void trit_stats_compute(TritStats *stats, const GPT2Config *cfg, const int8_t *trits,
                                      const int8_t *trits_prev, int have_prev, const float *scales) {
    size_t offset[NUM_BITLINEAR];
    bitlinear_trit_offsets(offset, cfg);
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(cfg, k, &OC, &IC);
        size_t n = (size_t)OC * IC;
        for (int l = 0; l < cfg->num_layers; l++) {
            const int8_t *tr = trits + offset[k] + l * n, *prev = trits_prev + offset[k] + l * n;
            size_t zeros = 0, flips = 0;
            for (size_t i = 0; i < n; i++) {
                zeros += tr[i] == 0;
                flips += have_prev && tr[i] != prev[i];
            }
            TritStats *s = &stats[bitlinear_scale_index(l, k)];
            s->zero_frac = (float)zeros / n;
            s->flip_frac = have_prev ? (float)flips / n : -1.0f;
            s->scale = scales[bitlinear_scale_index(l, k)];
        }
    }
}

// one line per layer on stdout, one line per matrix in main.log.
// The first report of a fresh run has no flip (stdout "-", main.log -1: there was no earlier
// report). The first report after a resume has none either, but the run had an earlier report:
// its trits are not in the checkpoint, so the flip since then is unknown (stdout "?", main.log
// nan), not a number that would read as a measurement. (When the resumed step's own report was
// kept in main.log, see llmc/logger.h, that true line stands and this one is not logged.)
static inline void trit_stats_print(const TritStats *stats, int L, Logger *logger, int step) {
    printf("trits  layer  %-30s %-30s %-30s %-30s\n", "qkv zero/flip/scale", "attproj", "fc", "fcproj");
    int resumed = logger->resume_step >= 0;
    for (int l = 0; l < L; l++) {
        printf("       %5d ", l);
        for (int k = 0; k < NUM_BITLINEAR; k++) {
            const TritStats *s = &stats[bitlinear_scale_index(l, k)];
            char flip[32];
            if (s->flip_frac < 0) { snprintf(flip, sizeof(flip), resumed ? "?" : "-"); }
            else { snprintf(flip, sizeof(flip), "%.4f%%", 100.0f * s->flip_frac); }
            char cell[64];
            snprintf(cell, sizeof(cell), "%.3f/%s/%.2e", s->zero_frac, flip, s->scale);
            printf(" %-30s", cell);
            float logged_flip = s->flip_frac < 0 && resumed ? NAN : s->flip_frac;
            logger_log_trit(logger, step, l, BITLINEAR_NAMES[k], s->zero_frac, logged_flip, s->scale);
        }
        printf("\n");
    }
    if (resumed && stats[0].flip_frac < 0) {
        printf("       (flip: unknown at the first report after a resume: the checkpoint does not hold the "
               "trits of the report before it)\n");
    }
}

#endif // LLMC_TRIT_STATS_H
