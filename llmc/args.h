/*
 llmc/args.h: command-line flags as a table, so parsing, validation messages and the -h listing
 can never disagree. Two parts:
   - the machinery, for any struct of int, float and string fields: a table of ArgSpec (flag,
     type, the field's offset, help) describes the struct; args_parse fills it from argv and
     prints -h from the table and the struct's defaults; ARG_CHECK states a range check
   - the trainers' flags: TrainArgs, its table ARG_SPECS, train_args_defaults / _validate / _read
 run_gpt2_1bit.c has a table of its own (RunArgs) on the same machinery.

 The trainers' flags follow llm.c where llm.c has them (-i -j -e -b -t -x -l -u -q -c -v -m
 -s -g -o -n -y); the quantization and schedule flags are two letters.
 Every flag takes exactly one value: `-b 8`, `-wq ternary`.
*/
#ifndef LLMC_ARGS_H
#define LLMC_ARGS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include "utils.h"       // defines: mallocCheck
#include "gpt2_config.h" // defines: parse_weight_quant, parse_act_quant, parse_backward_quant

// ----------------------------------------------------------------------------
// the machinery: a table of flags over any struct

typedef enum { ARG_INT, ARG_FLOAT, ARG_STR } ArgType;
typedef struct {
    const char *flag;
    ArgType type;
    size_t offset; // of the field in the struct (an int, a float or a const char *)
    const char *help;
} ArgSpec;
// an entry of struct S's table: ARG_OF(S, "-b", ARG_INT, B, "batch size B")
#define ARG_OF(S, f, t, field, h) {f, t, offsetof(S, field), h}

typedef struct {
    const ArgSpec *specs;
    int num_specs;
    size_t size;       // of the struct
    const char *usage; // what -h prints after "usage: PROG "
    const char *notes; // and after the list of flags (NULL: nothing)
} ArgTable;

static inline void args_error(const char *prog, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n---> HINT: %s -h lists every flag\n", prog);
    exit(EXIT_FAILURE);
}

// in a validate function with `prog` in scope: unless cond, exit with "flag F must be WHAT"
#define ARG_CHECK(cond, flag, what) \
    if (!(cond)) { args_error(prog, "flag %s must be %s", flag, what); }

// -h: every flag of the table with its help and its value in defaults (a struct the table describes)
static inline void args_usage(const ArgTable *t, const void *defaults, const char *prog, FILE *out) {
    int width = 4; // the flag column: the longest flag
    for (int i = 0; i < t->num_specs; i++) {
        int n = (int)strlen(t->specs[i].flag);
        width = n > width ? n : width;
    }
    fprintf(out, "usage: %s %s\n\n", prog, t->usage);
    for (int i = 0; i < t->num_specs; i++) {
        const ArgSpec *s = &t->specs[i];
        const char *p = (const char *)defaults + s->offset;
        char def[256];
        if (s->type == ARG_INT) { snprintf(def, sizeof(def), "%d", *(const int *)p); }
        else if (s->type == ARG_FLOAT) { snprintf(def, sizeof(def), "%g", *(const float *)p); }
        else { snprintf(def, sizeof(def), "%s", *(const char *const *)p ? *(const char *const *)p : "none"); }
        fprintf(out, "  %-*s %-76s (default %s)\n", width, s->flag, s->help, def);
    }
    if (t->notes != NULL) { fprintf(out, "\n%s\n", t->notes); }
}

// Parse argv into base, a struct the table describes, which holds its defaults when called;
// given (num_specs entries, or NULL) gets 1 for each flag argv gives. Exits with a message naming
// the flag on an unknown flag, a missing value or a malformed number, and after printing the help
// on --help or -h. A table may use -h as a flag of its own (the trainers' -h 1): then -h followed
// by a value is that flag, and -h alone the help.
static inline void args_parse(const ArgTable *t, void *base, int argc, char **argv, int *given) {
    void *defaults = mallocCheck(t->size); // for -h: the values before any flag was read
    memcpy(defaults, base, t->size);
    int own_h = 0;
    for (int k = 0; k < t->num_specs; k++) { own_h |= strcmp(t->specs[k].flag, "-h") == 0; }
    for (int i = 1; i < argc; i++) {
        int value_follows = i + 1 < argc && (argv[i + 1][0] != '-' || isdigit((unsigned char)argv[i + 1][1]));
        if (strcmp(argv[i], "--help") == 0 || (strcmp(argv[i], "-h") == 0 && !(own_h && value_follows))) {
            args_usage(t, defaults, argv[0], stdout);
            exit(EXIT_SUCCESS);
        }
        const ArgSpec *s = NULL;
        for (int k = 0; k < t->num_specs; k++) { if (strcmp(argv[i], t->specs[k].flag) == 0) { s = &t->specs[k]; } }
        if (s == NULL) { args_error(argv[0], "unknown flag '%s'%s", argv[i], ""); }
        if (i + 1 >= argc) { args_error(argv[0], "flag %s needs a value%s", argv[i], ""); }
        const char *v = argv[++i];
        char *p = (char *)base + s->offset;
        char *end;
        errno = 0;
        if (s->type == ARG_INT) {
            long x = strtol(v, &end, 10);
            if (end == v || *end != '\0') { args_error(argv[0], "flag %s expects an integer, got '%s'", s->flag, v); }
            // strtol's long is wider than int: no silent cast
            if (errno != 0 || x < -2147483647L || x > 2147483647L) {
                args_error(argv[0], "flag %s expects an integer that fits an int, got '%s'", s->flag, v);
            }
            *(int *)p = (int)x;
        } else if (s->type == ARG_FLOAT) {
            float x = strtof(v, &end);
            // strtof reads "nan" and "inf" as numbers; no flag means either, and an inf -l becomes NaN in
            // the schedule (inf * 0): every float flag must be finite, then in its range (the validate checks)
            if (end == v || *end != '\0' || errno != 0 || !isfinite(x)) {
                args_error(argv[0], "flag %s expects a finite number, got '%s'", s->flag, v);
            }
            *(float *)p = x;
        } else {
            *(const char **)p = v;
        }
        if (given != NULL) { given[s - t->specs] = 1; }
    }
    free(defaults);
}

// ----------------------------------------------------------------------------
// the trainers' flags

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
    const char *matmul_precision; // -mp
    int seed;                   // -sd
    int hellaswag;              // -h 1
    // which of the quantization flags the user gave (a checkpoint's own modes win otherwise)
    int set_weight_quant, set_act_quant, set_inner_norm, set_backward_quant;
    int set_matmul_precision; // (the CUDA trainer's precision is its build's: -mp must agree when given)
} TrainArgs;

#define ARG(f, t, field, h) ARG_OF(TrainArgs, f, t, field, h)
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
    ARG("-bq", ARG_STR, backward_quant, "BitLinear backward of dX: float | int8 (dY to int8 per token, times the trits)"),
    ARG("-mp", ARG_STR, matmul_precision, "the float matmuls' operands: fp32 | bf16 (rounded, exact products summed in fp32; "
        "CUDA: its build's, bf16 unless make PRECISION=FP32)"),
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
    a->inner_norm = 0; // our recipe: no inner norm (dev/recipe_study.md); -rn 1 is b1.58 as published
    a->backward_quant = "float";
    a->matmul_precision = "fp32";
    a->seed = 1337;
    a->hellaswag = 0; // -h 1 turns it on
}

// the table of the trainers' flags, for args_parse (struct TrainArgs; its defaults from train_args_defaults)
static const ArgTable TRAIN_ARGS = {ARG_SPECS, NUM_ARG_SPECS, sizeof(TrainArgs), "[flags]   (every flag takes one value)",
    "modes: ternary = -wq ternary -aq int8 -rn 0 (default: the recipe of dev/recipe_study.md); BitNet b1.58 as published\n"
    "= -wq ternary -aq int8 -rn 1; plain GPT-2 = -wq fp -aq none -rn 0"};

// parse argv into a (already holding the defaults); exits with a message on an unknown flag, a
// missing value, a malformed number, and with the help on -h alone
static inline void train_args_parse(TrainArgs *a, int argc, char **argv) {
    int given[NUM_ARG_SPECS] = {0};
    args_parse(&TRAIN_ARGS, a, argc, argv, given);
    // the quantization flags given: they must agree with a checkpoint's modes (llmc/checkpoint.h)
    for (int k = 0; k < NUM_ARG_SPECS; k++) {
        if (!given[k]) { continue; }
        const ArgSpec *s = &ARG_SPECS[k];
        if (strcmp(s->flag, "-wq") == 0) { a->set_weight_quant = 1; }
        if (strcmp(s->flag, "-aq") == 0) { a->set_act_quant = 1; }
        if (strcmp(s->flag, "-rn") == 0) { a->set_inner_norm = 1; }
        if (strcmp(s->flag, "-bq") == 0) { a->set_backward_quant = 1; }
        if (strcmp(s->flag, "-mp") == 0) { a->set_matmul_precision = 1; }
    }
}

// range checks that do not need the model; exits with a message naming the flag
static inline void train_args_validate(const TrainArgs *a, const char *prog) {
#define CHECK ARG_CHECK
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
    CHECK(strcmp(a->matmul_precision, "fp32") == 0 || strcmp(a->matmul_precision, "bf16") == 0, "-mp", "fp32 or bf16");
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
