/*
 llmc/args.h: the command-line flags both trainers share, as one table, so
 parsing, validation messages and the -h listing can never disagree.

 Flags follow llm.c where llm.c has them (-i -j -e -b -t -x -l -u -q -c -v -m
 -s -g -o -n -y); the quantization and schedule flags are two letters.
 Every flag takes exactly one value: `-b 8`, `-wq ternary`.
*/
#ifndef LLMC_ARGS_H
#define LLMC_ARGS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include "gpt2_config.h" // defines: parse_weight_quant, parse_act_quant, parse_backward_quant, BQ_INT8_SUPPORTED

typedef struct {
    const char *train_pattern;  // -i
    const char *val_pattern;    // -j
    const char *tokenizer_path; // -tf
    const char *init;           // -e: a model file or a descriptor such as d12
    const char *out_dir;        // -o
    int B;                      // -b
    int T;                      // -t
    int total_batch;            // -d
    int max_steps;              // -x
    float lr;                   // -l
    int warmup;                 // -u
    float final_frac;           // -q
    float wd;                   // -c
    float stage2_frac;          // -ls
    float stage2_drop;          // -ld
    float wd_stop_frac;         // -cs
    float grad_clip;            // -gc
    int val_every;              // -v
    int val_batches;            // -m
    int sample_every;           // -s
    int gen_tokens;             // -g
    float temperature;          // -st
    int top_k;                  // -tk
    int ckpt_every;             // -n
    int resume;                 // -y
    const char *weight_quant;   // -wq
    const char *act_quant;      // -aq
    int inner_norm;             // -rn
    const char *backward_quant; // -bq
    int seed;                   // -sd
    int hellaswag;              // -h 1
    // which of the quantization flags the user gave (a checkpoint's own modes win otherwise)
    int set_weight_quant, set_act_quant, set_inner_norm, set_backward_quant;
} TrainArgs;

typedef enum { ARG_INT, ARG_FLOAT, ARG_STR } ArgType;
typedef struct {
    const char *flag;
    ArgType type;
    size_t offset; // of the field in TrainArgs
    const char *help;
} ArgSpec;

#define ARG(f, t, field, h) {f, t, offsetof(TrainArgs, field), h}
static const ArgSpec ARG_SPECS[] = {
    ARG("-i", ARG_STR, train_pattern, "train token shards (glob pattern)"),
    ARG("-j", ARG_STR, val_pattern, "val token shards (glob pattern)"),
    ARG("-tf", ARG_STR, tokenizer_path, "GPT-2 tokenizer file, for decoding samples"),
    ARG("-e", ARG_STR, init, "model file to start from, or a descriptor dN for a fresh model (d12 = GPT-2 124M)"),
    ARG("-o", ARG_STR, out_dir, "output directory for main.log and checkpoints (\"\" = none)"),
    ARG("-b", ARG_INT, B, "batch size B"),
    ARG("-t", ARG_INT, T, "sequence length T"),
    ARG("-d", ARG_INT, total_batch, "tokens per optimizer step: gradients summed over micro-batches of -b x -t (0 = B*T)"),
    ARG("-x", ARG_INT, max_steps, "number of training steps"),
    ARG("-l", ARG_FLOAT, lr, "peak learning rate (first stage)"),
    ARG("-u", ARG_INT, warmup, "learning-rate warmup steps"),
    ARG("-q", ARG_FLOAT, final_frac, "final learning rate as a fraction of -l"),
    ARG("-c", ARG_FLOAT, wd, "weight decay on the matrices (first part of the run)"),
    ARG("-ls", ARG_FLOAT, stage2_frac, "second learning-rate stage starts at this fraction of the steps"),
    ARG("-ld", ARG_FLOAT, stage2_drop, "second-stage peak learning rate as a fraction of -l (1 = plain cosine)"),
    ARG("-cs", ARG_FLOAT, wd_stop_frac, "weight decay switches off at this fraction of the steps"),
    ARG("-gc", ARG_FLOAT, grad_clip, "clip the global gradient norm to this (0 = no clipping)"),
    ARG("-v", ARG_INT, val_every, "val loss and trit diagnostics every this many steps (0 = never, -j not read)"),
    ARG("-m", ARG_INT, val_batches, "number of val batches per val loss"),
    ARG("-s", ARG_INT, sample_every, "print a text sample every this many steps (0 = never)"),
    ARG("-g", ARG_INT, gen_tokens, "tokens to generate per sample"),
    ARG("-st", ARG_FLOAT, temperature, "sampling temperature (0 = argmax)"),
    ARG("-tk", ARG_INT, top_k, "sample from the top-k tokens (0 = all)"),
    ARG("-n", ARG_INT, ckpt_every, "write a checkpoint every this many steps (0 = only at the end)"),
    ARG("-y", ARG_INT, resume, "1 = resume from the newest complete checkpoint in -o"),
    ARG("-wq", ARG_STR, weight_quant, "weight quantization of the block matrices: fp | ternary | binary"),
    ARG("-aq", ARG_STR, act_quant, "activation quantization of their inputs: int8 | none"),
    ARG("-rn", ARG_INT, inner_norm, "parameter-free RMSNorm of the BitLinear input: 1 = every one, 2 = attproj and fcproj only, 0 = off"),
    ARG("-bq", ARG_STR, backward_quant, "BitLinear backward of dX: float | int8 (dY to int8 per token; CPU trainer only)"),
    ARG("-sd", ARG_INT, seed, "random seed (init of fresh models, sampling)"),
    ARG("-h", ARG_INT, hellaswag, "1 = HellaSwag acc_norm with every val loss (dev/data/hellaswag.py writes the file; -h alone: this help)"),
};
#undef ARG
#define NUM_ARG_SPECS ((int)(sizeof(ARG_SPECS) / sizeof(ARG_SPECS[0])))

static inline void train_args_defaults(TrainArgs *a) {
    memset(a, 0, sizeof(*a));
    a->train_pattern = "data/tinyshakespeare/tiny_shakespeare_train.bin";
    a->val_pattern = "data/tinyshakespeare/tiny_shakespeare_val.bin";
    a->tokenizer_path = "data/gpt2_tokenizer.bin";
    a->init = "d2";
    a->out_dir = "out";
    a->B = 8;
    a->T = 64;
    a->total_batch = 0;
    a->max_steps = 300;
    a->lr = 1.5e-3f;
    a->warmup = 30;
    a->final_frac = 0.1f;
    a->wd = 0.1f;
    a->stage2_frac = 0.5f;
    a->stage2_drop = 2.0f / 3.0f;
    a->wd_stop_frac = 0.5f;
    a->grad_clip = 1.0f;
    a->val_every = 50;
    a->val_batches = 10;
    a->sample_every = 100;
    a->gen_tokens = 64;
    a->temperature = 1.0f;
    a->top_k = 40;
    a->ckpt_every = 0;
    a->resume = 0;
    a->weight_quant = "ternary";
    a->act_quant = "int8";
    a->inner_norm = 1;
    a->backward_quant = "float";
    a->seed = 1337;
    a->hellaswag = 0; // -h 1 turns it on
}

static inline void train_args_usage(const char *prog, FILE *out) {
    TrainArgs d;
    train_args_defaults(&d);
    fprintf(out, "usage: %s [flags]   (every flag takes one value)\n\n", prog);
    for (int i = 0; i < NUM_ARG_SPECS; i++) {
        const ArgSpec *s = &ARG_SPECS[i];
        const char *p = (const char *)&d + s->offset;
        char def[256];
        if (s->type == ARG_INT) { snprintf(def, sizeof(def), "%d", *(const int *)p); }
        else if (s->type == ARG_FLOAT) { snprintf(def, sizeof(def), "%g", *(const float *)p); }
        else { snprintf(def, sizeof(def), "%s", *(const char *const *)p); }
        fprintf(out, "  %-4s %-76s (default %s)\n", s->flag, s->help, def);
    }
    fprintf(out, "\nmodes: b1.58 = -wq ternary -aq int8 -rn 1 (default); plain GPT-2 = -wq fp -aq none -rn 0\n");
}

static inline void args_error(const char *prog, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n---> HINT: %s -h lists every flag\n", prog);
    exit(EXIT_FAILURE);
}

// parse argv into a (already holding the defaults); exits with a message on
// an unknown flag, a missing value or a malformed number
static inline void train_args_parse(TrainArgs *a, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        // -h alone is the help; -h followed by a value is the HellaSwag flag (llm.c's -h 1)
        int help = strcmp(argv[i], "--help") == 0 ||
                   (strcmp(argv[i], "-h") == 0 && (i + 1 >= argc || (argv[i + 1][0] == '-' &&
                                                                      !isdigit((unsigned char)argv[i + 1][1]))));
        if (help) {
            train_args_usage(argv[0], stdout);
            exit(EXIT_SUCCESS);
        }
        const ArgSpec *s = NULL;
        for (int k = 0; k < NUM_ARG_SPECS; k++) { if (strcmp(argv[i], ARG_SPECS[k].flag) == 0) { s = &ARG_SPECS[k]; } }
        if (s == NULL) { args_error(argv[0], "unknown flag '%s'%s", argv[i], ""); }
        if (i + 1 >= argc) { args_error(argv[0], "flag %s needs a value%s", argv[i], ""); }
        const char *v = argv[++i];
        char *p = (char *)a + s->offset;
        char *end;
        errno = 0;
        if (s->type == ARG_INT) {
            long x = strtol(v, &end, 10);
            if (end == v || *end != '\0' || errno != 0 || x < -2147483647L || x > 2147483647L) {
                args_error(argv[0], "flag %s expects an integer, got '%s'", s->flag, v);
            }
            *(int *)p = (int)x;
        } else if (s->type == ARG_FLOAT) {
            float x = strtof(v, &end);
            // strtof reads "nan" and "inf" as numbers; no flag means either, and an inf -l becomes NaN in
            // the schedule (inf * 0): every float flag must be finite, then in its range (train_args_validate)
            if (end == v || *end != '\0' || errno != 0 || !isfinite(x)) {
                args_error(argv[0], "flag %s expects a finite number, got '%s'", s->flag, v);
            }
            *(float *)p = x;
        } else {
            *(const char **)p = v;
        }
        if (strcmp(s->flag, "-wq") == 0) { a->set_weight_quant = 1; }
        if (strcmp(s->flag, "-aq") == 0) { a->set_act_quant = 1; }
        if (strcmp(s->flag, "-rn") == 0) { a->set_inner_norm = 1; }
        if (strcmp(s->flag, "-bq") == 0) { a->set_backward_quant = 1; }
    }
}

// range checks that do not need the model; exits with a message naming the flag
static inline void train_args_validate(const TrainArgs *a, const char *prog) {
#define CHECK(cond, flag, what) \
    if (!(cond)) { args_error(prog, "flag %s must be %s", flag, what); }
    CHECK(a->B >= 1, "-b", "at least 1");
    CHECK(a->T >= 1, "-t", "at least 1");
    CHECK(a->total_batch >= 0, "-d", "0 or more");
    CHECK(a->max_steps >= 0, "-x", "0 or more");
    CHECK(a->lr >= 0.0f, "-l", "0 or more");
    CHECK(a->warmup >= 0, "-u", "0 or more");
    CHECK(a->final_frac >= 0.0f && a->final_frac <= 1.0f, "-q", "in [0, 1]");
    CHECK(a->wd >= 0.0f, "-c", "0 or more");
    CHECK(a->stage2_frac >= 0.0f && a->stage2_frac <= 1.0f, "-ls", "in [0, 1]");
    CHECK(a->stage2_drop > 0.0f && a->stage2_drop <= 1.0f, "-ld", "in (0, 1]");
    CHECK(a->wd_stop_frac >= 0.0f && a->wd_stop_frac <= 1.0f, "-cs", "in [0, 1]");
    CHECK(a->grad_clip >= 0.0f, "-gc", "0 or more");
    CHECK(a->val_every >= 0, "-v", "0 or more");
    CHECK(a->val_batches >= 1, "-m", "at least 1");
    CHECK(a->sample_every >= 0, "-s", "0 or more");
    CHECK(a->gen_tokens >= 1, "-g", "at least 1");
    CHECK(a->temperature >= 0.0f, "-st", "0 or more");
    CHECK(a->top_k >= 0, "-tk", "0 or more");
    CHECK(a->ckpt_every >= 0, "-n", "0 or more");
    CHECK(a->resume == 0 || a->resume == 1, "-y", "0 or 1");
    CHECK(a->inner_norm >= 0 && a->inner_norm <= 2, "-rn", "0, 1 or 2");
    CHECK(parse_weight_quant(a->weight_quant) >= 0, "-wq", "one of fp, ternary, binary");
    CHECK(parse_act_quant(a->act_quant) >= 0, "-aq", "one of int8, none");
    CHECK(parse_backward_quant(a->backward_quant) >= 0, "-bq", "one of float, int8");
    // the int8 backward multiplies by the trits (or signs): fp weights have none
    CHECK(!(parse_backward_quant(a->backward_quant) == BQ_INT8 && parse_weight_quant(a->weight_quant) == WQ_FP),
          "-bq", "float with -wq fp (int8 multiplies dY by the trits: use -wq ternary or binary)");
#if !BQ_INT8_SUPPORTED
    CHECK(parse_backward_quant(a->backward_quant) != BQ_INT8, "-bq",
          "float in the CUDA trainer: -bq int8 is CPU-only for now (train_gpt2_1bit)");
#endif
    CHECK(!(a->resume && a->out_dir[0] == '\0'), "-y", "0 when there is no output directory (-o \"\")");
    CHECK(a->hellaswag == 0 || a->hellaswag == 1, "-h", "0 or 1 (-h alone prints the help)");
    CHECK(!(a->hellaswag && a->val_every == 0), "-h", "0 when -v is 0 (HellaSwag runs with the val loss)");
#undef CHECK
    // gradient accumulation: -d tokens per optimizer step, in whole micro-batches of B*T
    long long micro = (long long)a->B * a->T;
    if (a->total_batch % micro != 0) {
        fprintf(stderr, "error: -d %d is not a multiple of -b * -t = %lld tokens\n"
                "---> HINT: pass -d %lld (or another multiple)\n", a->total_batch, micro,
                (a->total_batch / micro + 1) * micro);
        exit(EXIT_FAILURE);
    }
}

// the flags of a training run: the defaults, then argv, then the range checks (exits on an error)
static inline void train_args_read(TrainArgs *a, int argc, char **argv) {
    train_args_defaults(a);
    train_args_parse(a, argc, argv);
    train_args_validate(a, argv[0]);
}

#endif // LLMC_ARGS_H
