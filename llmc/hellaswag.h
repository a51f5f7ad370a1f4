/*
 llmc/hellaswag.h: multiple-choice evals (HellaSwag) in llm.c's eval file format, batched for a
 trainer's forward pass and scored the way llm.c scores them (acc_norm).

 File (dev/data/hellaswag.py writes it; llm.c's dev/data/data_common.py write_evalfile too):
   int32 header[256]: [0] 20240522 magic, [1] 1 version, [2] number of examples,
                      [3] the longest example in bytes
   then per example a run of uint16:
     65535 (start of example), the run's size in bytes, the example's index,
     label, number of completions, context length, context tokens,
     and for each completion: its length, its tokens
 The whole file (3.6 MB for HellaSwag's 10,042 val examples) is read and checked once, at init:
 every error names the file (and the example) and the fix.

 Batches: each completion is one row, the context followed by the completion; whole examples are
 packed into a (B,T) batch. A row of n = context + completion tokens needs n - 1 positions: inputs
 are its tokens 0..n-2, targets the same shifted by one, and mask = 1 at the targets that are
 completion tokens (the last context position predicts the first completion token). The rest of a
 row, and rows no example fills, are token 0 with mask 0.
 The batch holds at most the trainer's B*T tokens, so it fits the activations the trainer has, but
 its rows are only as long as the longest example needs (rounded up to 64, at most T): HellaSwag's
 contexts and endings are a sentence or three, far shorter than T = 1024, so a pass moves several
 times fewer tokens through the model than llm.c's (B,T) batches. Rows are independent under causal
 attention (and the int8 activation scales are per token), so the scores do not depend on the shape.

 Score (llm.c's evalloader_stat_losses): for each completion, the mean of the per-position losses
 over its mask; the completion with the lowest mean is the prediction (the first one on a tie), and
 acc_norm is the fraction of examples whose prediction is the label.

 Use, with the trainer's forward pass behind a function that returns the (B,T) per-position losses:
   EvalLoader hs;
   evalloader_init(&hs, HELLASWAG_PATH, B, T, V);                      // B, T: the trainer's
   float acc_norm = evalloader_accuracy(&hs, forward_losses, &model);  // the whole file
   evalloader_free(&hs);
 or batch by batch:
   evalloader_reset(&hs);
   while (evalloader_next_batch(&hs) > 0) {
       ... forward hs.inputs, hs.targets (hs.B x hs.T) -> losses ...
       correct += evalloader_stat_losses(&hs, losses, preds, NULL); // preds[i]: hs.batch_index[i]'s
   }
*/
#ifndef LLMC_HELLASWAG_H
#define LLMC_HELLASWAG_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <stdarg.h>
#include "utils.h" // defines: freadCheck, mallocCheck, file_size

#define HELLASWAG_PATH "data/hellaswag/hellaswag_val.bin" // what -h 1 reads: dev/data/hellaswag.py writes it
#define EVAL_MAGIC 20240522
#define EVAL_VERSION 1
#define EVAL_START_EXAMPLE 65535
#define EVAL_ROW_ALIGN 64        // eval rows are a multiple of this long (or T)
#define EVAL_MAX_COMPLETIONS 64  // a sanity bound; HellaSwag has 4

typedef struct {
    const char *path;
    int num_examples;
    uint16_t *data;        // the file after its header: every example's run
    size_t *offsets;       // (num_examples) where each run starts in data
    int B, T;              // the eval batch shape (B*T <= the trainer's B*T, T <= its T)
    int num_batches;       // batches per pass over the file
    int *inputs;           // (B,T)
    int *targets;          // (B,T)
    uint8_t *mask;         // (B,T) 1 where the target is a completion token
    // the current batch: example slot i is example batch_index[i], rows batch_row[i] .. + batch_nc[i] - 1
    int batch_examples;
    int *batch_index, *batch_label, *batch_row, *batch_nc; // (B) each
    int next_example;      // the first example of the next batch
} EvalLoader;

// the forward pass a trainer lends the eval: losses (B*T floats, row-major) for inputs and targets (B,T)
typedef const float *(*EvalForwardFn)(void *model, const int *inputs, const int *targets, int B, int T);

// ----------------------------------------------------------------------------
// reading and checking the file

__attribute__((format(printf, 4, 5)))
static inline void evalloader_fail_(const EvalLoader *l, int example, const char *hint, const char *fmt, ...) {
    fprintf(stderr, "error: eval file '%s': ", l->path);
    if (example >= 0) { fprintf(stderr, "example %d: ", example); }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n---> HINT: %s\n", hint);
    exit(EXIT_FAILURE);
}
#define EVAL_REMAKE "the file is damaged or not an eval file: remake it with python dev/data/hellaswag.py"

// the fields of example e's run at data[off...] (words = the run's size in uint16s)
typedef struct { int words, index, label, nc, ctx_len; const uint16_t *ctx, *comps; } EvalExample;

static inline EvalExample evalloader_example_(const EvalLoader *l, int e) {
    const uint16_t *r = l->data + l->offsets[e];
    EvalExample x = {r[1] / 2, r[2], r[3], r[4], r[5], r + 6, r + 6 + r[5]};
    return x;
}

// Checks every example of the file against the format and the model: tokens below V, each row
// (context + completion - 1 positions) at most T. Sets offsets and returns the longest row.
static inline int evalloader_check_(EvalLoader *l, size_t words, int T, int V) {
    const char *vocab_hint = "the file was made with another tokenizer than the model's (GPT-2's, V = 50257)";
    size_t off = 0;
    int longest = 0;
    for (int e = 0; e < l->num_examples; e++) {
        // the run's fixed fields: start, size in bytes, index, label, nc, context length
        if (words - off < 6) { evalloader_fail_(l, e, EVAL_REMAKE, "the file ends inside it"); }
        const uint16_t *r = l->data + off;
        size_t run = r[1] / 2;
        if (r[0] != EVAL_START_EXAMPLE) { evalloader_fail_(l, e, EVAL_REMAKE, "no start-of-example mark (%d)", r[0]); }
        if (r[1] % 2 != 0 || run < 6 || run > words - off) {
            evalloader_fail_(l, e, EVAL_REMAKE, "size %d bytes does not fit the %zu bytes left", r[1],
                             2 * (words - off));
        }
        if (r[2] != e) { evalloader_fail_(l, e, EVAL_REMAKE, "it holds index %d", r[2]); }
        int label = r[3], nc = r[4], ctx_len = r[5];
        if (nc < 1 || nc > EVAL_MAX_COMPLETIONS) {
            evalloader_fail_(l, e, EVAL_REMAKE, "%d completions (expected 1..%d)", nc, EVAL_MAX_COMPLETIONS);
        }
        if (label >= nc) { evalloader_fail_(l, e, EVAL_REMAKE, "label %d for %d completions", label, nc); }
        if (ctx_len < 1) { evalloader_fail_(l, e, EVAL_REMAKE, "empty context"); }
        if (6 + (size_t)ctx_len > run) { evalloader_fail_(l, e, EVAL_REMAKE, "the context overruns the run"); }
        for (int i = 0; i < ctx_len; i++) {
            if (r[6 + i] >= V) {
                evalloader_fail_(l, e, vocab_hint, "token %d is outside the model's vocab (V = %d)", r[6 + i], V);
            }
        }
        // the completions: a length, then that many tokens, each
        size_t pos = 6 + (size_t)ctx_len;
        for (int c = 0; c < nc; c++) {
            if (pos >= run) { evalloader_fail_(l, e, EVAL_REMAKE, "completion %d overruns the run", c); }
            int len = r[pos];
            if (len < 1) { evalloader_fail_(l, e, EVAL_REMAKE, "completion %d is empty", c); }
            if (pos + 1 + (size_t)len > run) {
                evalloader_fail_(l, e, EVAL_REMAKE, "completion %d overruns the run", c);
            }
            for (int i = 0; i < len; i++) {
                int tok = r[pos + 1 + i];
                if (tok >= V) {
                    evalloader_fail_(l, e, vocab_hint, "token %d is outside the model's vocab (V = %d)", tok, V);
                }
            }
            int row = ctx_len + len - 1; // positions the row needs: its last token is only a target
            if (row > T) {
                evalloader_fail_(l, e, "pass a larger -t",
                                 "context + completion %d need %d positions, more than -t %d", c, row, T);
            }
            if (row > longest) { longest = row; }
            pos += 1 + (size_t)len;
        }
        if (pos != run) {
            evalloader_fail_(l, e, EVAL_REMAKE, "its size says %zu uint16s but its fields take %zu", run, pos);
        }
        l->offsets[e] = off;
        off += run;
    }
    if (off != words) {
        evalloader_fail_(l, -1, EVAL_REMAKE, "%zu bytes follow the last of the %d examples the header names",
                         2 * (words - off), l->num_examples);
    }
    return longest;
}

// ----------------------------------------------------------------------------
// the loader

static inline void evalloader_reset(EvalLoader *loader) { loader->next_example = 0; }

// fills inputs, targets, mask with the next examples that fit; returns how many (0 after the last)
static inline int evalloader_next_batch(EvalLoader *loader) {
    int B = loader->B, T = loader->T;
    memset(loader->inputs, 0, (size_t)B * T * sizeof(int));
    memset(loader->targets, 0, (size_t)B * T * sizeof(int));
    memset(loader->mask, 0, (size_t)B * T);
    int rows = 0, n = 0;
    while (loader->next_example < loader->num_examples) {
        EvalExample x = evalloader_example_(loader, loader->next_example);
        if (rows + x.nc > B) { break; } // the next example goes into the next batch, whole
        loader->batch_index[n] = loader->next_example;
        loader->batch_label[n] = x.label;
        loader->batch_row[n] = rows;
        loader->batch_nc[n] = x.nc;
        const uint16_t *comps = x.comps;
        for (int c = 0; c < x.nc; c++, rows++) {
            int len = *comps++;
            int *inp = loader->inputs + (size_t)rows * T, *tgt = loader->targets + (size_t)rows * T;
            uint8_t *mask = loader->mask + (size_t)rows * T;
            // the row's tokens are ctx[0..ctx_len) then comps[0..len); position t predicts token t+1
            int n_tok = x.ctx_len + len;
            for (int t = 0; t < n_tok - 1; t++) {
                inp[t] = t < x.ctx_len ? x.ctx[t] : comps[t - x.ctx_len];
                tgt[t] = t + 1 < x.ctx_len ? x.ctx[t + 1] : comps[t + 1 - x.ctx_len];
                mask[t] = t >= x.ctx_len - 1; // the target is a completion token
            }
            comps += len;
        }
        loader->next_example++;
        n++;
    }
    loader->batch_examples = n;
    return n;
}

// Scores the current batch from its per-position losses (B*T, row-major, from the forward pass on
// inputs/targets): per example the completion with the lowest mean loss over its mask. Writes that
// prediction to pred[i] for slot i (if pred), each row's mean loss to row_loss[row] (if row_loss;
// 0 for empty rows), and returns how many predictions equal the label.
static inline int evalloader_stat_losses(const EvalLoader *loader, const float *losses, int *pred, float *row_loss) {
    int T = loader->T, correct = 0;
    if (row_loss != NULL) { memset(row_loss, 0, (size_t)loader->B * sizeof(float)); }
    for (int i = 0; i < loader->batch_examples; i++) {
        int best = -1;
        float best_loss = 0.0f;
        for (int c = 0; c < loader->batch_nc[i]; c++) {
            int row = loader->batch_row[i] + c;
            const float *lrow = losses + (size_t)row * T;
            const uint8_t *mrow = loader->mask + (size_t)row * T;
            double sum = 0.0;
            int count = 0;
            for (int t = 0; t < T; t++) {
                if (mrow[t]) { sum += lrow[t]; count++; }
            }
            float mean = (float)(sum / count); // count >= 1: every completion has a token (checked at init)
            if (row_loss != NULL) { row_loss[row] = mean; }
            if (best < 0 || mean < best_loss) { best = c; best_loss = mean; } // strict: the first of equals wins
        }
        if (pred != NULL) { pred[i] = best; }
        correct += best == loader->batch_label[i];
    }
    return correct;
}

// acc_norm over the whole file, with the trainer's forward pass
static inline float evalloader_accuracy(EvalLoader *loader, EvalForwardFn forward, void *model) {
    evalloader_reset(loader);
    long correct = 0;
    while (evalloader_next_batch(loader) > 0) {
        const float *losses = forward(model, loader->inputs, loader->targets, loader->B, loader->T);
        correct += evalloader_stat_losses(loader, losses, NULL, NULL);
    }
    return (float)correct / loader->num_examples;
}

// Opens and checks path for a model of vocab V whose activations hold B x T tokens, and picks
// the eval batch: rows as long as the longest example needs (a multiple of 64, at most T), as many
// rows as B*T tokens allow.
static inline void evalloader_init(EvalLoader *loader, const char *path, int B, int T, int V) {
    memset(loader, 0, sizeof(*loader));
    loader->path = path;
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        fprintf(stderr, "error: cannot open the eval file '%s'\n"
                "---> HINT: run python dev/data/hellaswag.py to make it (or pass -h 0)\n", path);
        exit(EXIT_FAILURE);
    }
    long size = file_size(fp, path);
    int header[256];
    if (size < (long)sizeof(header)) {
        evalloader_fail_(loader, -1, EVAL_REMAKE, "%ld bytes is too short for its header", size);
    }
    freadCheck(header, sizeof(int), 256, fp, path);
    if (header[0] != EVAL_MAGIC) {
        evalloader_fail_(loader, -1, "eval files come from python dev/data/hellaswag.py (a token shard is not one)",
                         "bad magic %d (an eval file has %d)", header[0], EVAL_MAGIC);
    }
    if (header[1] != EVAL_VERSION) {
        evalloader_fail_(loader, -1, EVAL_REMAKE, "version %d; this reader takes version %d", header[1], EVAL_VERSION);
    }
    if (header[2] < 1) { evalloader_fail_(loader, -1, EVAL_REMAKE, "the header says %d examples", header[2]); }
    if ((size - (long)sizeof(header)) % 2 != 0) {
        evalloader_fail_(loader, -1, EVAL_REMAKE, "odd size %ld bytes", size);
    }
    loader->num_examples = header[2];
    size_t words = (size_t)(size - (long)sizeof(header)) / 2;
    if ((size_t)loader->num_examples > words / 6) { // a run has at least 6 uint16s
        evalloader_fail_(loader, -1, EVAL_REMAKE, "the header says %d examples, more than its %ld bytes can hold",
                         header[2], size);
    }
    loader->data = (uint16_t *)mallocCheck(words * sizeof(uint16_t));
    freadCheck(loader->data, sizeof(uint16_t), words, fp, path);
    fclose(fp);
    loader->offsets = (size_t *)mallocCheck((size_t)loader->num_examples * sizeof(size_t));
    int longest = evalloader_check_(loader, words, T, V);

    // the batch shape: T_eval = the longest row rounded up to 64 (at most T), B_eval rows in B*T tokens
    int Te = (longest + EVAL_ROW_ALIGN - 1) / EVAL_ROW_ALIGN * EVAL_ROW_ALIGN;
    if (Te > T) { Te = T; }
    int Be = (int)(((long)B * T) / Te);
    int max_nc = 0;
    for (int e = 0; e < loader->num_examples; e++) {
        int nc = evalloader_example_(loader, e).nc;
        if (nc > max_nc) { max_nc = nc; }
    }
    if (Be < max_nc) {
        fprintf(stderr, "error: eval file '%s': an example has %d completions, one row each, but -b %d -t %d "
                "holds %d rows of %d\n---> HINT: raise -b (or pass -h 0)\n", path, max_nc, B, T, Be, Te);
        exit(EXIT_FAILURE);
    }
    loader->B = Be;
    loader->T = Te;
    loader->inputs = (int *)mallocCheck((size_t)Be * Te * sizeof(int));
    loader->targets = (int *)mallocCheck((size_t)Be * Te * sizeof(int));
    loader->mask = (uint8_t *)mallocCheck((size_t)Be * Te);
    loader->batch_index = (int *)mallocCheck((size_t)Be * sizeof(int));
    loader->batch_label = (int *)mallocCheck((size_t)Be * sizeof(int));
    loader->batch_row = (int *)mallocCheck((size_t)Be * sizeof(int));
    loader->batch_nc = (int *)mallocCheck((size_t)Be * sizeof(int));
    // batches per pass: the packing of evalloader_next_batch, counted
    evalloader_reset(loader);
    int rows = 0;
    loader->num_batches = 1;
    for (int e = 0; e < loader->num_examples; e++) {
        int nc = evalloader_example_(loader, e).nc;
        if (rows + nc > Be) { loader->num_batches++; rows = 0; }
        rows += nc;
    }
}

static inline void evalloader_free(EvalLoader *loader) {
    free(loader->data);
    free(loader->offsets);
    free(loader->inputs);
    free(loader->targets);
    free(loader->mask);
    free(loader->batch_index);
    free(loader->batch_label);
    free(loader->batch_row);
    free(loader->batch_nc);
    memset(loader, 0, sizeof(*loader));
}

#endif // LLMC_HELLASWAG_H
