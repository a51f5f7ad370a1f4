/*
 tests/test_hellaswag.c: llmc/hellaswag.h, the multiple-choice eval (HellaSwag) both trainers run with -h 1.
   - a small eval file in llm.c's format, written here (random tokens < 250: tests/ref/model.bin has V = 250)
   - the batches: every row is context + completion shifted by one, the mask on the completion's
     targets, whole examples packed in order, padding zero; for several trainer shapes
   - the score with a fake forward (loss = the target token), exact: mean over the mask, first of
     equals wins, acc_norm
   - the score with the real CPU forward pass (b1.58 and fp) against each completion's loss computed
     directly, one forward pass per completion (B = 1, its own length)
   - bad files: missing, a token shard, wrong version, truncated, trailing bytes, a wrong index, a
     label past the completions, a token outside the vocab, an example longer than -t, a batch too
     small: each exits non-zero with an error line naming the file and a HINT line
 Prints one PASS/FAIL line per check; exits 1 on any failure.
 Build and run: make tests/test_hellaswag && ./tests/test_hellaswag
 With a file argument it only loads that file for GPT-2 (V = 50257, B = 64, T = 1024) and prints
 each example's tokens (tests/test_data_scripts.py reads them back to check dev/data/hellaswag.py):
   ./tests/test_hellaswag data/hellaswag/hellaswag_val.bin
*/
#define TESTING
#include "../train_gpt2_1bit.c"
#include "../llmc/hellaswag.h"
#include <sys/wait.h>

static int num_passed = 0, num_failed = 0;
static void check(int ok, const char *name) {
    if (ok) { printf("PASS: %s\n", name); num_passed++; }
    else { printf("FAIL: %s\n", name); num_failed++; }
    fflush(stdout);
}

// the per-completion mean losses do not depend on the batch shape: every position's arithmetic is
// the same (measured: bit-identical here); the margin is for a build that blocks its matmuls by shape
// differently, which may reorder float sums (~1e-6 at these sizes)
#define LOSS_TOL 1e-4f

// ----------------------------------------------------------------------------
// examples and the writer (llm.c's write_evalfile, restated from its format)

#define NC 4
typedef struct {
    int label, nc, ctx_len;
    int ctx[32];
    int len[NC];
    int compl[NC][32];
} Example;

// every file goes in a fresh temp dir, so parallel runs do not meet
static char tmp_dir[64] = "/tmp/test_hellaswag_XXXXXX";
static char eval_path[128], tie_path[128], bad_path[128], err_path[128];

static uint64_t rng = 1234;
static int rand_int(int lo, int hi) { return lo + (int)(random_u32(&rng) % (uint32_t)(hi - lo + 1)); } // [lo, hi]

static void make_examples(Example *ex, int n, int max_ctx, int max_len, int V) {
    for (int e = 0; e < n; e++) {
        Example *x = &ex[e];
        x->nc = NC;
        x->label = rand_int(0, NC - 1);
        x->ctx_len = rand_int(1, max_ctx);
        for (int i = 0; i < x->ctx_len; i++) { x->ctx[i] = rand_int(0, V - 1); }
        for (int c = 0; c < NC; c++) {
            x->len[c] = rand_int(1, max_len);
            for (int i = 0; i < x->len[c]; i++) { x->compl[c][i] = rand_int(0, V - 1); }
        }
    }
}

// the file as uint16 words after the header; returns the number of words
static size_t encode_examples(uint16_t *w, const Example *ex, int n, int *longest_bytes) {
    size_t k = 0;
    *longest_bytes = 0;
    for (int e = 0; e < n; e++) {
        size_t start = k;
        w[k++] = 65535;
        w[k++] = 0; // size in bytes, below
        w[k++] = (uint16_t)e;
        w[k++] = (uint16_t)ex[e].label;
        w[k++] = (uint16_t)ex[e].nc;
        w[k++] = (uint16_t)ex[e].ctx_len;
        for (int i = 0; i < ex[e].ctx_len; i++) { w[k++] = (uint16_t)ex[e].ctx[i]; }
        for (int c = 0; c < ex[e].nc; c++) {
            w[k++] = (uint16_t)ex[e].len[c];
            for (int i = 0; i < ex[e].len[c]; i++) { w[k++] = (uint16_t)ex[e].compl[c][i]; }
        }
        w[start + 1] = (uint16_t)(2 * (k - start));
        if (2 * (int)(k - start) > *longest_bytes) { *longest_bytes = 2 * (int)(k - start); }
    }
    return k;
}

static void write_file(const char *path, const int *header, const uint16_t *w, size_t nwords) {
    FILE *fp = fopenCheck(path, "wb");
    fwriteCheck(header, sizeof(int), 256, fp, path);
    fwriteCheck(w, sizeof(uint16_t), nwords, fp, path);
    fcloseCheck(fp, path);
}

static void write_eval_file(const char *path, const Example *ex, int n) {
    static uint16_t w[1 << 16];
    int header[256] = {0}, longest;
    size_t k = encode_examples(w, ex, n, &longest);
    header[0] = EVAL_MAGIC;
    header[1] = EVAL_VERSION;
    header[2] = n;
    header[3] = longest;
    write_file(path, header, w, k);
}

// ----------------------------------------------------------------------------
// forward passes lent to the eval

static const float *cpu_forward_losses(void *m, const int *inputs, const int *targets, int B, int T) {
    GPT2 *model = (GPT2 *)m;
    gpt2_forward(model, inputs, targets, B, T);
    return model->acts.losses;
}

static float fake_losses[1 << 16];
// loss at a position = its target token: a completion's mean is the mean of its tokens, exactly
static const float *fake_forward_losses(void *m, const int *inputs, const int *targets, int B, int T) {
    (void)m;
    (void)inputs;
    for (int i = 0; i < B * T; i++) { fake_losses[i] = (float)targets[i]; }
    return fake_losses;
}

// the first completion with the lowest mean (llm.c: strict <)
static int argmin_first(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) { if (x[i] < x[best]) { best = i; } }
    return best;
}

// ----------------------------------------------------------------------------
// the batches hold exactly the examples, in order, laid out as the header says

static void test_batches(const char *path, const Example *ex, int n, int B, int T) {
    EvalLoader hs;
    evalloader_init(&hs, path, B, T, 250);
    int ok_layout = 1, ok_order = 1, batches = 0, seen = 0;
    int longest = 0;
    for (int e = 0; e < n; e++) {
        for (int c = 0; c < NC; c++) {
            if (ex[e].ctx_len + ex[e].len[c] - 1 > longest) { longest = ex[e].ctx_len + ex[e].len[c] - 1; }
        }
    }
    int want_T = (longest + 63) / 64 * 64 < T ? (longest + 63) / 64 * 64 : T;
    int ok_shape = hs.T == want_T && hs.B == B * T / want_T && hs.B * hs.T <= B * T;
    evalloader_reset(&hs);
    while (evalloader_next_batch(&hs) > 0) {
        batches++;
        int rows_used = 0;
        for (int i = 0; i < hs.batch_examples; i++) {
            const Example *x = &ex[hs.batch_index[i]];
            ok_order &= hs.batch_index[i] == seen++ && hs.batch_label[i] == x->label && hs.batch_nc[i] == NC;
            ok_order &= hs.batch_row[i] == rows_used;
            for (int c = 0; c < NC; c++, rows_used++) {
                int row = hs.batch_row[i] + c;
                int tok[64], ntok = 0;
                for (int k = 0; k < x->ctx_len; k++) { tok[ntok++] = x->ctx[k]; }
                for (int k = 0; k < x->len[c]; k++) { tok[ntok++] = x->compl[c][k]; }
                for (int t = 0; t < hs.T; t++) {
                    int in = hs.inputs[row * hs.T + t], tg = hs.targets[row * hs.T + t], m = hs.mask[row * hs.T + t];
                    if (t < ntok - 1) { ok_layout &= in == tok[t] && tg == tok[t + 1] && m == (t >= x->ctx_len - 1); }
                    else { ok_layout &= in == 0 && tg == 0 && m == 0; }
                }
            }
        }
        // rows no example fills are padding
        for (int r = rows_used; r < hs.B; r++) {
            for (int t = 0; t < hs.T; t++) {
                int i = r * hs.T + t;
                ok_layout &= hs.inputs[i] == 0 && hs.targets[i] == 0 && hs.mask[i] == 0;
            }
        }
        // the next example would not have fit
        if (seen < n) { ok_order &= rows_used + NC > hs.B; }
    }
    char name[256];
    snprintf(name, sizeof(name), "trainer B=%d T=%d: eval batch %d x %d (rows the longest example needs, in B*T "
             "tokens)", B, T, hs.B, hs.T);
    check(ok_shape, name);
    snprintf(name, sizeof(name), "trainer B=%d T=%d: every example once, in order, whole, %d to a batch (%d batches "
             "= num_batches)", B, T, hs.B / NC, batches);
    check(ok_order && seen == n && batches == hs.num_batches, name);
    snprintf(name, sizeof(name), "trainer B=%d T=%d: inputs = context + completion, targets shifted by one, mask on "
             "the completion's targets, padding 0", B, T);
    check(ok_layout, name);
    evalloader_free(&hs);
}

// ----------------------------------------------------------------------------
// the score with a fake forward: exact

static void test_fake_scores(const char *path, const Example *ex, int n) {
    EvalLoader hs;
    evalloader_init(&hs, path, 12, 32, 250); // 12 rows: 3 examples a batch
    int ok_mean = 1, ok_pred = 1, correct = 0;
    int pred[64];
    float row_loss[64];
    evalloader_reset(&hs);
    while (evalloader_next_batch(&hs) > 0) {
        const float *losses = fake_forward_losses(NULL, hs.inputs, hs.targets, hs.B, hs.T);
        int c_batch = evalloader_stat_losses(&hs, losses, pred, row_loss);
        int c_want = 0;
        for (int i = 0; i < hs.batch_examples; i++) {
            const Example *x = &ex[hs.batch_index[i]];
            float mean[NC];
            for (int c = 0; c < NC; c++) {
                double s = 0.0;
                for (int k = 0; k < x->len[c]; k++) { s += x->compl[c][k]; }
                mean[c] = (float)(s / x->len[c]);
                ok_mean &= row_loss[hs.batch_row[i] + c] == mean[c];
            }
            ok_pred &= pred[i] == argmin_first(mean, NC);
            c_want += pred[i] == x->label;
        }
        ok_pred &= c_batch == c_want;
        correct += c_want;
    }
    check(ok_mean, "fake forward (loss = target token): each row's score is the mean over its completion, exactly");
    check(ok_pred, "fake forward: the prediction is the lowest mean; the count of correct ones is returned");
    float acc = evalloader_accuracy(&hs, fake_forward_losses, NULL);
    check(acc == (float)correct / n, "evalloader_accuracy = correct / examples over the whole file");
    evalloader_free(&hs);

    // ties: equal means go to the first completion (llm.c's strict <)
    Example tie = ex[0];
    tie.label = 2;
    for (int c = 0; c < NC; c++) { tie.len[c] = 2; tie.compl[c][0] = 10; tie.compl[c][1] = 20; }
    tie.compl[1][0] = 20; tie.compl[1][1] = 10; // same mean, other tokens
    tie.compl[3][0] = 1; tie.compl[3][1] = 29;  // same mean again
    write_eval_file(tie_path, &tie, 1);
    evalloader_init(&hs, tie_path, 4, 32, 250);
    evalloader_next_batch(&hs);
    evalloader_stat_losses(&hs, fake_forward_losses(NULL, hs.inputs, hs.targets, hs.B, hs.T), pred, NULL);
    check(pred[0] == 0, "a tie between equal mean losses goes to the first completion (llm.c)");
    evalloader_free(&hs);
    remove(tie_path);
}

// ----------------------------------------------------------------------------
// the score with the model's forward pass, against each completion's loss computed on its own

static void test_model_scores(const char *path, const Example *ex, int n, QuantConfig quant, const char *mode,
                              int B, int T) {
    GPT2 model;
    gpt2_build_from_checkpoint(&model, "tests/ref/model.bin", quant, NULL);
    gpt2_allocate_activations(&model, B, T); // the trainer's shape; the eval's batch fits in it
    // reference: one forward pass per completion, B = 1, T = its own length - 1
    float *ref = (float *)mallocCheck((size_t)n * NC * sizeof(float));
    int ref_correct = 0, *ref_pred = (int *)mallocCheck((size_t)n * sizeof(int));
    for (int e = 0; e < n; e++) {
        const Example *x = &ex[e];
        for (int c = 0; c < NC; c++) {
            int tok[64], ntok = 0;
            for (int k = 0; k < x->ctx_len; k++) { tok[ntok++] = x->ctx[k]; }
            for (int k = 0; k < x->len[c]; k++) { tok[ntok++] = x->compl[c][k]; }
            gpt2_forward(&model, tok, tok + 1, 1, ntok - 1);
            double s = 0.0;
            for (int t = x->ctx_len - 1; t < ntok - 1; t++) { s += model.acts.losses[t]; }
            ref[e * NC + c] = (float)(s / x->len[c]);
        }
        ref_pred[e] = argmin_first(ref + e * NC, NC);
        ref_correct += ref_pred[e] == x->label;
    }
    EvalLoader hs;
    evalloader_init(&hs, path, B, T, model.config.vocab_size);
    float max_diff = 0.0f;
    int ok_pred = 1, pred[64], correct = 0;
    float row_loss[64];
    evalloader_reset(&hs);
    while (evalloader_next_batch(&hs) > 0) {
        const float *losses = cpu_forward_losses(&model, hs.inputs, hs.targets, hs.B, hs.T);
        correct += evalloader_stat_losses(&hs, losses, pred, row_loss);
        for (int i = 0; i < hs.batch_examples; i++) {
            int e = hs.batch_index[i];
            for (int c = 0; c < NC; c++) {
                float d = fabsf(row_loss[hs.batch_row[i] + c] - ref[e * NC + c]);
                if (d > max_diff) { max_diff = d; }
            }
            // a different prediction is only acceptable where the two best references are closer than the tolerance
            float gap = fabsf(ref[e * NC + pred[i]] - ref[e * NC + ref_pred[e]]);
            if (pred[i] != ref_pred[e] && gap > LOSS_TOL) { ok_pred = 0; }
        }
    }
    char name[256];
    snprintf(name, sizeof(name), "%s model, batch %dx%d: completion mean losses = their own forward passes "
             "(max diff %.2e, tol %.0e)", mode, hs.B, hs.T, max_diff, LOSS_TOL);
    check(max_diff <= LOSS_TOL, name);
    snprintf(name, sizeof(name), "%s model: predicted completions = argmin of the direct losses (%d/%d correct, "
             "direct %d/%d)", mode, correct, n, ref_correct, n);
    check(ok_pred && correct == ref_correct, name);
    float acc = evalloader_accuracy(&hs, cpu_forward_losses, &model);
    snprintf(name, sizeof(name), "%s model: evalloader_accuracy = %.4f = direct acc_norm", mode, acc);
    check(acc == (float)ref_correct / n, name);
    evalloader_free(&hs);
    free(ref);
    free(ref_pred);
    gpt2_free(&model);
}

// ----------------------------------------------------------------------------
// bad files: each is an error line naming the file, then a HINT line, and a non-zero exit

static void expect_error(const char *name, const char *path, int B, int T, int V, const char *needle) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (freopen(err_path, "w", stderr) == NULL) { _exit(99); }
        EvalLoader hs;
        evalloader_init(&hs, path, B, T, V);
        _exit(0); // no error: the parent reports it
    }
    int status = 0;
    waitpid(pid, &status, 0);
    char err[4096] = {0};
    FILE *fp = fopen(err_path, "r");
    size_t got = fp ? fread(err, 1, sizeof(err) - 1, fp) : 0;
    if (fp) { fclose(fp); }
    err[got] = '\0';
    int lines = 0;
    for (char *p = err; *p; p++) { lines += *p == '\n'; }
    char *nl = strchr(err, '\n');
    int ok = WIFEXITED(status) && WEXITSTATUS(status) != 0 && strncmp(err, "error: ", 7) == 0 &&
             nl != NULL && strstr(err, path) != NULL && strstr(err, path) < nl && strstr(nl, "---> HINT: ") == nl + 1 &&
             lines == 2 && (needle == NULL || strstr(err, needle) != NULL);
    char full[512];
    snprintf(full, sizeof(full), "bad input: %s -> exit 1, an error line naming the file, a HINT line", name);
    check(ok, full);
    if (!ok) { printf("  (exit status %d, stderr: %s)\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1, err); }
    remove(err_path);
}

static void test_bad_files(const Example *ex, int n) {
    static uint16_t w[1 << 16];
    int header[256] = {0}, longest;
    size_t k = encode_examples(w, ex, n, &longest);
    header[0] = EVAL_MAGIC; header[1] = EVAL_VERSION; header[2] = n; header[3] = longest;
    const char *p = bad_path;

    expect_error("a missing file", "/tmp/no_such_dir/hellaswag_val.bin", 8, 32, 250, "dev/data/hellaswag.py");
    int shard[256] = {SHARD_MAGIC, SHARD_VERSION, (int)k}; // the same words as a token shard
    write_file(p, shard, w, k);
    expect_error("a token shard, not an eval file", p, 8, 32, 250, "bad magic");
    int h2[256];
    memcpy(h2, header, sizeof(h2));
    h2[1] = 2;
    write_file(p, h2, w, k);
    expect_error("another version", p, 8, 32, 250, "version 2");
    write_file(p, header, w, k - 3);
    expect_error("a truncated file", p, 8, 32, 250, NULL);
    w[k] = 7;
    write_file(p, header, w, k + 1);
    expect_error("bytes after the last example", p, 8, 32, 250, "follow the last");
    memcpy(h2, header, sizeof(h2));
    h2[2] = n + 1;
    write_file(p, h2, w, k);
    expect_error("the header names more examples than there are", p, 8, 32, 250, NULL);
    // example 1's index, then label
    size_t off1 = w[1] / 2;
    w[off1 + 2] = 5;
    write_file(p, header, w, k);
    expect_error("an example with the wrong index", p, 8, 32, 250, "example 1");
    w[off1 + 2] = 1;
    w[off1 + 3] = 4;
    write_file(p, header, w, k);
    expect_error("a label past the completions", p, 8, 32, 250, "label 4");
    w[off1 + 3] = (uint16_t)ex[1].label;
    w[off1 + 6] = 250; // example 1's first context token
    write_file(p, header, w, k);
    expect_error("a token outside the model's vocab", p, 8, 32, 250, "outside the model's vocab");
    w[off1 + 6] = (uint16_t)ex[1].ctx[0];
    write_file(p, header, w, k);
    expect_error("an example longer than -t", p, 64, 8, 250, "larger -t");
    expect_error("a batch of fewer rows than completions", p, 3, 32, 250, "raise -b");
    remove(p);
}

// ----------------------------------------------------------------------------
// dump mode: one file, GPT-2's shape; each example as "example I label L ctx T... | c0 T... | c1 ..."

static int dump(const char *path) {
    EvalLoader hs;
    evalloader_init(&hs, path, 64, 1024, 50257);
    printf("examples %d batch %d %d batches %d\n", hs.num_examples, hs.B, hs.T, hs.num_batches);
    for (int e = 0; e < hs.num_examples; e++) {
        EvalExample x = evalloader_example_(&hs, e);
        printf("example %d label %d ctx", x.index, x.label);
        for (int i = 0; i < x.ctx_len; i++) { printf(" %d", x.ctx[i]); }
        const uint16_t *c = x.comps;
        for (int k = 0; k < x.nc; k++) {
            printf(" |");
            int len = *c++;
            for (int i = 0; i < len; i++) { printf(" %d", c[i]); }
            c += len;
        }
        printf("\n");
    }
    evalloader_free(&hs);
    return 0;
}

int main(int argc, char **argv) {
    (void)gpt2_training_bytes; // the trainer's main() uses it; this program does not
    if (argc == 2) { return dump(argv[1]); }
    const int n = 13; // not a multiple of the examples a batch holds: the last batch is partial
    Example ex[13];
    make_examples(ex, n, 12, 10, 250); // rows up to 12 + 10 - 1 = 21 positions (maxT of the model is 32)
    if (mkdtemp(tmp_dir) == NULL) { printf("FAIL: cannot make a temp dir\n"); return 1; }
    snprintf(eval_path, sizeof(eval_path), "%s/eval.bin", tmp_dir);
    snprintf(tie_path, sizeof(tie_path), "%s/tie.bin", tmp_dir);
    snprintf(bad_path, sizeof(bad_path), "%s/bad.bin", tmp_dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr.txt", tmp_dir);
    const char *path = eval_path;
    write_eval_file(path, ex, n);

    test_batches(path, ex, n, 8, 32);   // 8 rows of 32: 2 examples a batch
    test_batches(path, ex, n, 6, 32);   // 6 rows: 1 example and 2 padding rows
    test_batches(path, ex, n, 16, 32);  // 4 examples a batch
    test_batches(path, ex, n, 64, 24);  // rows cut to T = 24 < 64
    test_batches(path, ex, n, 4, 128);  // rows of 64 < T: 8 rows in the 4 x 128 tokens
    test_fake_scores(path, ex, n);
    test_model_scores(path, ex, n, quant_config_b158(), "b1.58", 8, 32);
    test_model_scores(path, ex, n, quant_config_fp(), "fp", 16, 32);
    test_bad_files(ex, n);
    remove(path);
    rmdir(tmp_dir);
    printf("(test_hellaswag: %d checks passed, %d checks failed)\n", num_passed, num_failed);
    return num_failed == 0 ? 0 : 1;
}
