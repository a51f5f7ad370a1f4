/*
 llmc/schedulers.h: the 1-bit learning-rate and weight-decay schedules.

 Learning rate (the two-stage schedule of "The Era of 1-bit LLMs: Training
 Tips, Code and FAQ"; BitNet b1.58 2B4T section 2.2):
   warmup:  lr * (step+1) / warmup_steps
   then a cosine from peak to min_lr = lr * final_frac over the rest of the run,
   where peak is lr in the first stage and lr * stage2_drop from step
   stage2_frac * max_steps on: at the split the rate drops to a lower peak and
   keeps decaying. stage2_drop = 1 gives the plain cosine schedule.
 Weight decay: wd until step wd_stop_frac * max_steps, then 0 (decay on the
 latent weights keeps flipping trits late in training).
*/
#ifndef LLMC_SCHEDULERS_H
#define LLMC_SCHEDULERS_H

#include <math.h>

typedef struct {
    float lr;           // peak learning rate of the first stage
    int warmup_steps;
    int max_steps;
    float final_frac;   // min_lr = lr * final_frac
    float stage2_frac;  // where the second stage starts, as a fraction of max_steps
    float stage2_drop;  // second-stage peak = lr * stage2_drop
    float wd;           // weight decay of the first stage
    float wd_stop_frac; // weight decay is 0 from wd_stop_frac * max_steps on
} Schedule;

static inline int schedule_stage2_step(const Schedule *s) { return (int)(s->stage2_frac * s->max_steps); }

static inline float schedule_lr(const Schedule *s, int step) {
    if (step < s->warmup_steps) { return s->lr * (step + 1) / s->warmup_steps; }
    float min_lr = s->lr * s->final_frac;
    float peak = step >= schedule_stage2_step(s) ? s->lr * s->stage2_drop : s->lr;
    if (peak < min_lr) { peak = min_lr; }
    int span = s->max_steps - s->warmup_steps;
    float progress = span > 0 ? (float)(step - s->warmup_steps) / span : 1.0f;
    if (progress > 1.0f) { progress = 1.0f; }
    float coeff = 0.5f * (1.0f + cosf(3.14159265358979f * progress)); // 1 -> 0
    return min_lr + coeff * (peak - min_lr);
}

static inline float schedule_wd(const Schedule *s, int step) {
    return step < (int)(s->wd_stop_frac * s->max_steps) ? s->wd : 0.0f;
}

#endif // LLMC_SCHEDULERS_H
