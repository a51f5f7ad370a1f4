/*
 llmc/train_loop.h: the bookkeeping of a training run, written once for both trainers.

 The optimizer step itself (forward, backward, gradient norm and clipping, the schedule, the
 update) stays written out in each trainer's main(), where it can be read. Around it, a run
 does the same things in both trainers, and they live here:
   train_open_model        the model: resumed (-y 1), loaded (-e FILE) or fresh (-e dN); -t checked
                           against it, its memory checked and allocated; what it is, printed
   train_open_data         the train and val loaders, HellaSwag (-h 1), the tokenizer, the resumed
                           state (AdamW moments, data position, RNG), main.log, the schedule
   train_eval_sample_save  at each step: the val loss, HellaSwag and the trit statistics (-v), a
                           sample (-s), a checkpoint (-n, and at the last step)
   train_log_step          the step's line and main.log line, the divergence check, its time
   train_close             the average step; everything freed
 A trainer's main():
   train_args_read(&args, argc, argv);
   train_open_model(&run, &model, &args);
   train_open_data(&run, &model);
   for (int step = run.start_step; step <= args.max_steps; step++) {
       train_eval_sample_save(&run, &model, step);
       if (step == args.max_steps) { break; }
       ... one optimizer step over run.accum micro-batches ...
       train_log_step(&run, step, loss, lr, norm, ms);
   }
   train_close(&run, &model);

 Include it after the trainer has defined GPT2 (with the fields config, quant, num_parameters
 and num_bitlinear_weights) and these functions, whose signatures are the same in both trainers:
   gpt2_build_random(GPT2 *, const GPT2Config *, QuantConfig, uint64_t seed)
   gpt2_build_from_checkpoint(GPT2 *, const char *path, QuantConfig, const int explicit_flags[])
   gpt2_check_memory(const GPT2 *, int B, int T)   exits with a hint when a run at (B,T) cannot fit
   gpt2_allocate_activations(GPT2 *, int B, int T)
   gpt2_print_device(const GPT2 *)                 what it runs on: CPU threads, GPU precision ...
   gpt2_validate(GPT2 *, DataLoader *, int max_batches) -> the mean val loss
   gpt2_eval_losses(void *model, inputs, targets, B, T) -> the (B,T) losses (llmc/hellaswag.h)
   print_trit_stats(GPT2 *, Logger *, int step)
   gpt2_last_logits(GPT2 *, const int *tokens, int len) -> the logits (Vp floats) at position len - 1
                                                   after a forward pass of tokens (1,len), on the host
   save_checkpoint(GPT2 *, const DataLoader *, uint64_t rng, int step, int total_batch, const char *out_dir)
   load_state(GPT2 *, DataLoader *, uint64_t *rng, int total_batch, const char *path) -> its step
   gpt2_free(GPT2 *)
*/
#ifndef LLMC_TRAIN_LOOP_H
#define LLMC_TRAIN_LOOP_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include "utils.h"       // defines: ensure_writable_dir, now_seconds
#include "gpt2_config.h" // defines: GPT2Config, QuantConfig, gpt2_config_from_descriptor, quant_config_describe
#include "checkpoint.h"  // defines: checkpoint_find_latest, NUM_MODE_FLAGS
#include "args.h"        // defines: TrainArgs
#include "dataloader.h"  // defines: DataLoader, dataloaders_open
#include "hellaswag.h"   // defines: EvalLoader, evalloader_init, evalloader_accuracy, HELLASWAG_PATH
#include "tokenizer.h"   // defines: Tokenizer, tokenizer_init
#include "logger.h"      // defines: Logger, logger_init, logger_log_train, logger_log_val, logger_log_eval
#include "schedulers.h"  // defines: Schedule, schedule_stage2_step
#include "sampler.h"     // defines: random_f32, sample_logits

// what the loop keeps from one step to the next
typedef struct {
    const TrainArgs *args;
    const char *out_dir;       // NULL with -o "": no checkpoints, no main.log
    long long tokens_per_step; // -d, or B*T without it
    int accum;                 // micro-batches of B*T per optimizer step
    int resume_step;           // the checkpoint this run resumed from, or -1
    int start_step;            // the first step this run trains (0, or resume_step)
    DataLoader train_loader, val_loader;
    EvalLoader hellaswag;      // -h 1 only
    Tokenizer tokenizer;       // for printing samples
    Logger logger;             // main.log
    Schedule sched;            // learning rate and weight decay per step
    uint64_t rng;              // the sampler's (saved in checkpoints)
    double total_ms;           // time of the steps after the first (which warms caches up)
    int timed_steps;
} TrainRun;

// ----------------------------------------------------------------------------
// the model

// The model a run trains: resumed from the newest complete checkpoint in -o (-y 1), loaded from
// -e FILE, or fresh (-e dN, GPT-2's init from -sd). Then the checks that need the model (-t,
// memory), the activations for (B,T), and what is being trained, printed.
static inline void train_open_model(TrainRun *run, GPT2 *model, const TrainArgs *args) {
    memset(run, 0, sizeof(*run));
    run->args = args;
    run->out_dir = args->out_dir[0] ? args->out_dir : NULL;
    long long micro = (long long)args->B * args->T; // -d is a multiple of it (train_args_validate)
    run->tokens_per_step = args->total_batch > 0 ? args->total_batch : micro;
    run->accum = (int)(run->tokens_per_step / micro);
    run->resume_step = -1;
    const char *out_dir = run->out_dir;
    if (out_dir != NULL) { ensure_writable_dir(out_dir, "-o"); }

    // the modes the flags ask for; a model file's own modes win over the flags not given
    QuantConfig quant = {parse_weight_quant(args->weight_quant), parse_act_quant(args->act_quant), args->inner_norm,
                         parse_backward_quant(args->backward_quant)};
    const int explicit_flags[NUM_MODE_FLAGS] = {args->set_weight_quant, args->set_act_quant, args->set_inner_norm,
                                                args->set_backward_quant};
    char path[4096];
    if (args->resume) {
        run->resume_step = checkpoint_find_latest(out_dir);
        if (run->resume_step < 0) {
            fprintf(stderr, "error: -y 1 but '%s' has no complete checkpoint (DONE_* file)\n"
                    "---> HINT: drop -y to start a new run\n", out_dir);
            exit(EXIT_FAILURE);
        }
        if (run->resume_step > args->max_steps) {
            fprintf(stderr, "error: -x %d is below step %d of the newest checkpoint in '%s'\n"
                    "---> HINT: pass -x %d or more to continue that run\n",
                    args->max_steps, run->resume_step, out_dir, run->resume_step);
            exit(EXIT_FAILURE);
        }
        snprintf(path, sizeof(path), "%s/model_%08d.bin", out_dir, run->resume_step);
        gpt2_build_from_checkpoint(model, path, quant, explicit_flags);
        printf("resuming from %s\n", path);
    } else {
        int old = out_dir != NULL ? checkpoint_find_latest(out_dir) : -1;
        if (old >= 0) {
            fprintf(stderr, "warning: -o '%s' already holds a run's checkpoints (newest: step %d); this new run "
                    "overwrites them\n---> HINT: pass -y 1 to resume that run instead, or another -o\n", out_dir, old);
        }
        GPT2Config cfg;
        if (gpt2_config_from_descriptor(&cfg, args->init)) {
            gpt2_build_random(model, &cfg, quant, (uint64_t)args->seed);
        } else if (access(args->init, F_OK) == 0) {
            gpt2_build_from_checkpoint(model, args->init, quant, explicit_flags);
        } else {
            fprintf(stderr, "error: -e '%s': no such model file, and not a descriptor such as d12\n"
                    "---> HINT: pass a model_*.bin path, or dN for a fresh model (d12 = GPT-2 124M)\n", args->init);
            exit(EXIT_FAILURE);
        }
    }
    const GPT2Config *cfg = &model->config;
    if (args->T > cfg->max_seq_len) {
        fprintf(stderr, "error: -t %d is above the model's maximum sequence length %d\n"
                "---> HINT: pass -t %d or less\n", args->T, cfg->max_seq_len, cfg->max_seq_len);
        exit(EXIT_FAILURE);
    }
    gpt2_check_memory(model, args->B, args->T);
    gpt2_allocate_activations(model, args->B, args->T); // sized for training; sampling fits in them

    char mode[256];
    quant_config_describe(&model->quant, mode, sizeof(mode));
    printf("model: L=%d NH=%d C=%d maxT=%d V=%d (Vp=%d), %zu parameters (%zu in BitLinear matrices)\n",
           cfg->num_layers, cfg->num_heads, cfg->channels, cfg->max_seq_len, cfg->vocab_size,
           cfg->padded_vocab_size, model->num_parameters, model->num_bitlinear_weights);
    printf("mode: %s\n", mode);
    printf("matmuls: %s operands, fp32 sums (-mp)\n", args->matmul_precision);
    printf("batch: %d x %d tokens per micro-step, %d micro-steps, %lld tokens per step\n", args->B, args->T,
           run->accum, run->tokens_per_step);
    gpt2_print_device(model);
}

// ----------------------------------------------------------------------------
// the data, and the rest of a resumed run's state

static inline void train_open_data(TrainRun *run, GPT2 *model) {
    const TrainArgs *args = run->args;
    int V = model->config.vocab_size;
    dataloaders_open(&run->train_loader, &run->val_loader, args->train_pattern, args->val_pattern,
                     args->val_every > 0, args->B, args->T, V); // the val shards only with -v > 0
    if (args->hellaswag) { // -h 1: HellaSwag with every val loss (llmc/hellaswag.h)
        EvalLoader *h = &run->hellaswag;
        evalloader_init(h, HELLASWAG_PATH, args->B, args->T, V);
        printf("HellaSwag: %d examples, %d batches of %d x %d\n", h->num_examples, h->num_batches, h->B, h->T);
    }
    tokenizer_init(&run->tokenizer, args->tokenizer_path);
    if (run->tokenizer.init_ok && (int)run->tokenizer.vocab_size != V) {
        fprintf(stderr, "warning: tokenizer '%s' has %u tokens but the model has V = %d\n", args->tokenizer_path,
                run->tokenizer.vocab_size, V);
    }

    run->rng = (uint64_t)args->seed * 0x2545F4914F6CDD1DULL + 7;
    run->start_step = 0;
    if (run->resume_step >= 0) { // AdamW moments, the train loader's position and the RNG
        char path[4096];
        snprintf(path, sizeof(path), "%s/state_%08d.bin", run->out_dir, run->resume_step);
        run->start_step = load_state(model, &run->train_loader, &run->rng, (int)run->tokens_per_step, path);
    }
    logger_init(&run->logger, run->out_dir, run->resume_step >= 0);
    Schedule sched = {args->lr, args->warmup, args->max_steps, args->final_frac, args->stage2_frac,
                      args->stage2_drop, args->wd, args->wd_stop_frac};
    run->sched = sched;
    printf("schedule: lr %.2e, warmup %d, stage 2 from step %d at %.2e, final %.2e; weight decay %.2f until step %d\n",
           args->lr, args->warmup, schedule_stage2_step(&sched), args->lr * args->stage2_drop,
           args->lr * args->final_frac, args->wd, (int)(args->wd_stop_frac * args->max_steps));
}

// ----------------------------------------------------------------------------
// at each step, before it trains: evaluations, a sample, a checkpoint

// generate n tokens after an EOT (B=1, the whole prefix recomputed each token, a window of at
// most max_T tokens ending at the newest) and print them as they come
static inline void train_sample(GPT2 *model, const Tokenizer *tokenizer, int n, int max_T, float temperature,
                                int top_k, uint64_t *rng) {
    int eot = tokenizer->init_ok ? tokenizer->eot_token : 50256;
    if (eot >= model->config.vocab_size) { eot = 0; }
    int *tokens = (int *)mallocCheck((size_t)(n + 1) * sizeof(int));
    int *scratch = (int *)mallocCheck((size_t)model->config.vocab_size * sizeof(int));
    tokens[0] = eot;
    printf("generating:\n---\n");
    for (int t = 1; t <= n; t++) {
        int start = t > max_T ? t - max_T : 0;
        const float *logits = gpt2_last_logits(model, tokens + start, t - start);
        int next = sample_logits(logits, model->config.vocab_size, temperature, top_k, random_f32(rng), scratch);
        tokens[t] = next;
        tokenizer_print(tokenizer, next, stdout);
        fflush(stdout);
    }
    printf("\n---\n");
    free(tokens);
    free(scratch);
}

static inline void train_eval_sample_save(TrainRun *run, GPT2 *model, int step) {
    const TrainArgs *args = run->args;
    int last = step == args->max_steps;
    if (args->val_every > 0 && (step % args->val_every == 0 || last)) {
        float val_loss = gpt2_validate(model, &run->val_loader, args->val_batches);
        printf("step %5d | val loss %.4f | val perplexity %.2f\n", step, val_loss, expf(val_loss));
        logger_log_val(&run->logger, step, val_loss);
        if (args->hellaswag) {
            float acc = evalloader_accuracy(&run->hellaswag, gpt2_eval_losses, model);
            printf("step %5d | HellaSwag acc_norm %.4f\n", step, acc);
            logger_log_eval(&run->logger, step, acc);
        }
        print_trit_stats(model, &run->logger, step);
    }
    // a resumed run's first step was sampled before its checkpoint was written: drawing
    // that sample again would move the RNG away from the uninterrupted run's
    int resumed_here = run->resume_step >= 0 && step == run->start_step;
    if (args->sample_every > 0 && !resumed_here && ((step > 0 && step % args->sample_every == 0) || last)) {
        train_sample(model, &run->tokenizer, args->gen_tokens, args->T, args->temperature, args->top_k, &run->rng);
    }
    if (run->out_dir != NULL && step > run->start_step &&
        (last || (args->ckpt_every > 0 && step % args->ckpt_every == 0))) {
        save_checkpoint(model, &run->train_loader, run->rng, step, (int)run->tokens_per_step, run->out_dir);
    }
}

// ----------------------------------------------------------------------------
// after each step: its line, main.log, and its time (ms) toward the average

static inline void train_log_step(TrainRun *run, int step, float loss, float lr, float norm, double ms) {
    if (step > run->start_step) { run->total_ms += ms; run->timed_steps++; } // the first step warms up
    if (!isfinite(loss)) {
        fprintf(stderr, "error: the loss is %f at step %d: training diverged\n"
                "---> HINT: lower the learning rate (-l)\n", loss, step);
        exit(EXIT_FAILURE);
    }
    printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %.1f ms | %.0f tok/s\n", step + 1, run->args->max_steps,
           loss, lr, norm, ms, run->tokens_per_step / (ms / 1000.0));
    logger_log_train(&run->logger, step + 1, loss, lr, norm);
}

static inline void train_close(TrainRun *run, GPT2 *model) {
    if (run->timed_steps > 0) {
        printf("average step: %.1f ms, %.0f tok/s\n", run->total_ms / run->timed_steps,
               (double)run->tokens_per_step * run->timed_steps / (run->total_ms / 1000.0));
    }
    logger_free(&run->logger);
    tokenizer_free(&run->tokenizer);
    dataloader_free(&run->train_loader);
    dataloader_free(&run->val_loader);
    if (run->args->hellaswag) { evalloader_free(&run->hellaswag); }
    gpt2_free(model);
}

#endif // LLMC_TRAIN_LOOP_H
