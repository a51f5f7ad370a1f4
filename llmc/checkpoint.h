/*
 llmc/checkpoint.h: the model and training-state file formats.

 Model file (model_XXXXXXXX.bin), llm.c's format extended in unused header slots:
   int32 header[256]
     [0] 20240326 magic        [1] 3 version (fp32 parameters)
     [2] maxT  [3] V  [4] L  [5] NH  [6] C  [7] Vp
     [16] 20261123 QUANT_MAGIC: the quantization fields below are present
     [17] quant fields version: 1, or 2 when slot 23 is there
     [18] weight quant (0 fp, 1 ternary, 2 binary)   [19] act quant (0 none, 1 int8)
     [20] inner RMSNorm (0 off, 1 on)
     [21] 20261128 CRC_MAGIC: slot 22 holds a checksum
     [22] CRC-32 (zlib's) of the parameter bytes, everything after the header
     [23] version 2 only: backward of dX (-bq: 0 float, 1 int8). A float-backward model is
          written as version 1, byte for byte as before this slot existed; an int8 one as
          version 2, which a build from before refuses instead of training on in float.
          A version 1 file loads as -bq float.
   float32 params[num_parameters]   the latent weights, layout of llmc/gpt2_config.h
 A file from llm.c has zeros in [16..22]: it loads as it is, in the mode the
 flags ask for, without a checksum to check. A file of ours reloads in the mode it
 was trained in (our files from before the checksum have zeros in [21..22]).

 Training state file (state_XXXXXXXX.bin), ours, next to its model file:
   int32 header[256]
     [0] 20261125 STATE_MAGIC  [1] 1 version
     [2] num_parameters (low 31 bits are enough up to 2^31 parameters)
     [3] step (the number of optimizer steps done)
     [4] B  [5] T
     [6] rng state low 32 bits  [7] rng state high 32 bits
     [8] train loader: shard index  [9] train loader: token position in the shard
     [10] tokens per optimizer step (-d; B*T without gradient accumulation; 0 in older files)
     [11] 20261128 CRC_MAGIC (0 in older files: no checksum)  [12] CRC-32 of m and v
   float32 m[num_parameters], v[num_parameters]   AdamW moments
 A DONE_XXXXXXXX file is written after both files are complete; resuming picks
 the newest step that has one. Every file is written to a .tmp name and renamed.

 Loading checks, before anything trains on a file: the header (magic, version, config,
 modes), the exact size, the checksum when the file has one, and that every value is
 finite (and every v >= 0). A NaN weight would otherwise train to a NaN loss, and the
 error would blame the learning rate; a flipped bit would train on silently.
*/
#ifndef LLMC_CHECKPOINT_H
#define LLMC_CHECKPOINT_H

#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include "utils.h"       // defines: fopenCheck, freadCheck, fwriteCheck, rename_check, crc32_update, first_non_finite
#include "gpt2_config.h" // defines: GPT2Config, QuantConfig

#define MODEL_MAGIC 20240326
#define MODEL_VERSION_FP32 3
#define QUANT_MAGIC 20261123
#define QUANT_VERSION 2    // the newest we read and write: adds slot 23
#define QUANT_VERSION_V1 1 // without slot 23 (-bq float): still written for float-backward models
#define MODEL_BQ_SLOT 23   // model file: [23] backward quant, in version 2
#define STATE_MAGIC 20261125
#define STATE_VERSION 1
#define CRC_MAGIC 20261128 // in a header slot: the next slot holds the CRC-32 of the payload
#define HEADER_INTS 256
#define MODEL_CRC_SLOT 21  // model file: [21] CRC_MAGIC, [22] the CRC (slots llm.c leaves 0)
#define STATE_CRC_SLOT 11  // state file: [11] CRC_MAGIC, [12] the CRC

// ----------------------------------------------------------------------------
// checkpoint file names: model_XXXXXXXX.bin, state_XXXXXXXX.bin, DONE_XXXXXXXX

// the step in the name of a checkpoint file "<dir>/<prefix>XXXXXXXX.bin", or -1
static inline int checkpoint_step_of(const char *path, const char *prefix) {
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    size_t np = strlen(prefix);
    int step;
    char tail[8];
    if (strncmp(base, prefix, np) != 0 || strlen(base) != np + 12 ||
        sscanf(base + np, "%8d%7s", &step, tail) != 2 || strcmp(tail, ".bin") != 0) {
        return -1;
    }
    return step;
}

// "<dir of path>/DONE_XXXXXXXX" into buf
static inline void checkpoint_done_path(char *buf, size_t n, const char *path, int step) {
    const char *slash = strrchr(path, '/');
    int dir_len = slash != NULL ? (int)(slash - path) : 1;
    snprintf(buf, n, "%.*s/DONE_%08d", dir_len, slash != NULL ? path : ".", step);
}

// A checkpoint file that does not exist although its DONE marker says the checkpoint is
// complete (deleted or lost since): say which, and how to resume from the one before.
// Returns when the file exists or is not such a checkpoint file (fopenCheck reports the rest).
static inline void checkpoint_file_exists_check(const char *path, const char *prefix) {
    if (access(path, F_OK) == 0) { return; }
    int step = checkpoint_step_of(path, prefix);
    if (step < 0) { return; }
    char done[4096 + 16];
    checkpoint_done_path(done, sizeof(done), path, step);
    if (access(done, F_OK) != 0) { return; }
    fprintf(stderr, "error: '%s' is missing, but '%s' marks checkpoint %d as complete\n"
            "---> HINT: restore the file, or delete '%s' to resume from the checkpoint before it\n",
            path, done, step, done);
    exit(EXIT_FAILURE);
}

// the newest step with a DONE marker in out_dir, or -1
static inline int checkpoint_find_latest(const char *out_dir) {
    DIR *dir = opendir(out_dir);
    if (dir == NULL) { return -1; }
    int best = -1;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        int step;
        char tail;
        if (sscanf(e->d_name, "DONE_%8d%c", &step, &tail) == 1 && strlen(e->d_name) == 13 && step > best) {
            best = step;
        }
    }
    closedir(dir);
    return best;
}

// ----------------------------------------------------------------------------
// model file

// Reads a model file's header. Exits with a one-line message naming the file
// and the fix when the file is not a model file of a version we read.
// has_quant is set to 1 when the file carries our quantization fields, has_crc
// to 1 when it carries a checksum (then *crc is it).
static inline void model_header_read(FILE *fp, const char *path, GPT2Config *config, QuantConfig *quant,
                                     int *has_quant, int *has_crc, uint32_t *crc) {
    int header[HEADER_INTS];
    long size = file_size(fp, path);
    if (size < (long)sizeof(header)) {
        fprintf(stderr, "error: '%s' is too short to be a model file (%ld bytes)\n", path, size);
        exit(EXIT_FAILURE);
    }
    freadCheck(header, sizeof(int), HEADER_INTS, fp, path);
    if (header[0] != MODEL_MAGIC) {
        fprintf(stderr, "error: '%s' is not a GPT-2 model file (bad magic %d, want %d)\n"
                "---> HINT: pass a model_*.bin written by this trainer or llm.c, or a descriptor such as -e d12\n",
                path, header[0], MODEL_MAGIC);
        exit(EXIT_FAILURE);
    }
    if (header[1] != MODEL_VERSION_FP32) {
        fprintf(stderr, "error: '%s' has model version %d; this trainer reads version %d (fp32 parameters)\n"
                "---> HINT: llm.c's bf16 checkpoints (version 5) are not supported; export fp32 (version 3)\n",
                path, header[1], MODEL_VERSION_FP32);
        exit(EXIT_FAILURE);
    }
    config->max_seq_len = header[2];
    config->vocab_size = header[3];
    config->num_layers = header[4];
    config->num_heads = header[5];
    config->channels = header[6];
    config->padded_vocab_size = header[7];
    const char *bad = gpt2_config_check(config);
    if (bad != NULL) {
        fprintf(stderr, "error: '%s' has an invalid config: %s\n", path, bad);
        exit(EXIT_FAILURE);
    }
    *has_quant = 0;
    if (header[16] == QUANT_MAGIC) {
        if (header[17] != QUANT_VERSION_V1 && header[17] != QUANT_VERSION) {
            fprintf(stderr, "error: '%s' has quantization fields version %d; this trainer reads %d and %d\n",
                    path, header[17], QUANT_VERSION_V1, QUANT_VERSION);
            exit(EXIT_FAILURE);
        }
        int bq = header[17] == QUANT_VERSION ? header[MODEL_BQ_SLOT] : BQ_FLOAT;
        // (-bq int8 multiplies by the trits: a fp model has none)
        if (header[18] < 0 || header[18] > 2 || header[19] < 0 || header[19] > 1 || header[20] < 0 ||
            header[20] > 2 || bq < 0 || bq > 1 || (bq == BQ_INT8 && header[18] == WQ_FP)) {
            fprintf(stderr, "error: '%s' has unknown quantization modes (%d, %d, %d, backward %d)\n",
                    path, header[18], header[19], header[20], bq);
            exit(EXIT_FAILURE);
        }
        quant->weight_quant = header[18];
        quant->act_quant = header[19];
        quant->inner_norm = header[20];
        quant->backward_quant = bq;
        *has_quant = 1;
    } else if (header[16] != 0) {
        fprintf(stderr, "error: '%s' has an unknown value %d in header slot 16\n", path, header[16]);
        exit(EXIT_FAILURE);
    }
    *has_crc = header[MODEL_CRC_SLOT] == CRC_MAGIC;
    *crc = (uint32_t)header[MODEL_CRC_SLOT + 1];
    if (!*has_crc && header[MODEL_CRC_SLOT] != 0) {
        fprintf(stderr, "error: '%s' has an unknown value %d in header slot %d\n", path, header[MODEL_CRC_SLOT],
                MODEL_CRC_SLOT);
        exit(EXIT_FAILURE);
    }
    // the size must match exactly: a truncated or padded file is not trusted
    size_t sizes[NUM_PARAMETER_TENSORS];
    fill_in_parameter_sizes(sizes, config);
    size_t n = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { n += sizes[i]; }
    long want = (long)sizeof(header) + (long)(n * sizeof(float));
    if (size != want) {
        fprintf(stderr, "error: '%s' is %ld bytes but its header implies %ld: the file is truncated or corrupt\n",
                path, size, want);
        exit(EXIT_FAILURE);
    }
}

static inline void model_header_fill(int *header, const GPT2Config *config, const QuantConfig *quant, uint32_t crc) {
    memset(header, 0, HEADER_INTS * sizeof(int));
    header[0] = MODEL_MAGIC;
    header[1] = MODEL_VERSION_FP32;
    header[2] = config->max_seq_len;
    header[3] = config->vocab_size;
    header[4] = config->num_layers;
    header[5] = config->num_heads;
    header[6] = config->channels;
    header[7] = config->padded_vocab_size;
    header[16] = QUANT_MAGIC;
    header[17] = quant->backward_quant == BQ_FLOAT ? QUANT_VERSION_V1 : QUANT_VERSION;
    header[18] = quant->weight_quant;
    header[19] = quant->act_quant;
    header[20] = quant->inner_norm;
    if (quant->backward_quant != BQ_FLOAT) { header[MODEL_BQ_SLOT] = quant->backward_quant; }
    header[MODEL_CRC_SLOT] = CRC_MAGIC;
    header[MODEL_CRC_SLOT + 1] = (int)crc;
}

// ----------------------------------------------------------------------------
// checking a payload of floats

// Exits with a message naming the file, the tensor (and layer) and the value when x[0..n) has
// a NaN or inf. what names the values (e.g. "weight"); sizes (NUM_PARAMETER_TENSORS
// entries) splits it into the parameter tensors of llmc/gpt2_config.h, base is the index of
// x[0] in that layout, L the number of layers.
static inline void params_finite_check(const float *x, size_t n, size_t base, const size_t *sizes, int L,
                                       const char *path, const char *what) {
    size_t j = first_non_finite(x, n);
    if (j == n) { return; }
    size_t at = base + j, start = 0;
    int i = 0;
    while (i < NUM_PARAMETER_TENSORS - 1 && at >= start + sizes[i]) { start += sizes[i++]; }
    char where[64] = "";
    if (i >= 2 && i <= 13) { snprintf(where, sizeof(where), ", layer %d", (int)((at - start) / (sizes[i] / L))); }
    fprintf(stderr, "error: '%s' has a non-finite %s (%g) in tensor %s%s (element %zu of %zu): it cannot be "
            "trained or run\n---> HINT: the file is corrupt or was saved from a diverged run: use an earlier "
            "checkpoint (resuming, delete this one's DONE_ marker)\n", path, what, x[j], PARAMETER_NAMES[i], where,
            at - start, sizes[i]);
    exit(EXIT_FAILURE);
}

static inline void checksum_mismatch_error(const char *path, uint32_t have, uint32_t want) {
    fprintf(stderr, "error: '%s' fails its checksum (CRC-32 of the payload 0x%08x, the header says 0x%08x): the "
            "file is corrupt\n---> HINT: use another copy, or an earlier checkpoint (resuming, delete this one's "
            "DONE_ marker)\n", path, have, want);
    exit(EXIT_FAILURE);
}

// Check the parameters of a model file, fp positioned at them, before anyone trusts them: the
// CRC-32 when the file has one, and that every value is finite. Reads them once in chunks
// (no second buffer of the model's size) and seeks back, so the caller then reads them as usual
// (a second read, from the page cache: about 0.5 s for GPT-2 124M's 500 MB, most of it the CRC).
static inline void model_payload_check(FILE *fp, const char *path, const GPT2Config *config, int has_crc,
                                       uint32_t want_crc) {
    long start = ftell(fp);
    size_t sizes[NUM_PARAMETER_TENSORS], total = 0;
    fill_in_parameter_sizes(sizes, config);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { total += sizes[i]; }
    const size_t chunk = (size_t)1 << 20;
    float *buf = (float *)mallocCheck(chunk * sizeof(float));
    uint32_t crc = 0;
    int bad = 0; // the first non-finite value is reported after the checksum: corruption explains it
    size_t bad_at = 0;
    float bad_value = 0.0f;
    for (size_t done = 0; done < total;) {
        size_t n = total - done < chunk ? total - done : chunk;
        freadCheck(buf, sizeof(float), n, fp, path);
        if (has_crc) { crc = crc32_update(crc, buf, n * sizeof(float)); }
        if (!bad) {
            size_t j = first_non_finite(buf, n);
            if (j < n) { bad = 1; bad_at = done + j; bad_value = buf[j]; }
        }
        done += n;
    }
    free(buf);
    if (has_crc && crc != want_crc) { checksum_mismatch_error(path, crc, want_crc); }
    if (bad) { params_finite_check(&bad_value, 1, bad_at, sizes, config->num_layers, path, "weight"); }
    fseekCheck(fp, start, SEEK_SET, path);
}

// ----------------------------------------------------------------------------
// writing files safely: path.tmp, then rename

typedef struct {
    FILE *fp;
    char path[4096];
    char tmp[4096 + 8];
} SafeFile;

static inline void safe_open(SafeFile *f, const char *path) {
    snprintf(f->path, sizeof(f->path), "%s", path);
    snprintf(f->tmp, sizeof(f->tmp), "%s.tmp", path);
    f->fp = fopenCheck(f->tmp, "wb");
}

static inline void safe_close(SafeFile *f) {
    fflush(f->fp);
    fcloseCheck(f->fp, f->tmp);
    rename_check(f->tmp, f->path);
}

// ----------------------------------------------------------------------------
// loading a model file: the modes of the file and of the flags

// Open a model file (ours or llm.c's), read its header and check its parameters
// (model_payload_check); returns the file positioned at the parameters. `quant` holds the modes the flags ask for: an
// llm.c file loads in them; a file of ours loads in its own modes, and a flag
// that asks for another mode (explicit_flags[i] == 1 for -wq, -aq, -rn, -bq) is an
// error naming the flag. explicit_flags (NUM_MODE_FLAGS entries) may be NULL.
#define NUM_MODE_FLAGS 4
static inline FILE *model_file_open_modes(const char *path, QuantConfig quant, const int explicit_flags[NUM_MODE_FLAGS],
                                          GPT2Config *config, QuantConfig *quant_out) {
    if (is_directory(path)) { // e.g. -e out: the run's directory instead of one of its checkpoints
        int step = checkpoint_find_latest(path);
        if (step >= 0) {
            fprintf(stderr, "error: '%s' is a directory, not a model file\n"
                    "---> HINT: pass one of its checkpoints, e.g. the newest: %s/model_%08d.bin\n", path, path, step);
        } else {
            fprintf(stderr, "error: '%s' is a directory, not a model file\n"
                    "---> HINT: pass a model_XXXXXXXX.bin file (train_gpt2_1bit -o writes them)\n", path);
        }
        exit(EXIT_FAILURE);
    }
    checkpoint_file_exists_check(path, "model_");
    FILE *fp = fopenCheck(path, "rb");
    QuantConfig fq = quant;
    int has_quant, has_crc;
    uint32_t crc;
    model_header_read(fp, path, config, &fq, &has_quant, &has_crc, &crc);
    model_payload_check(fp, path, config, has_crc, crc);
    if (has_quant) {
        const int want[NUM_MODE_FLAGS] = {quant.weight_quant, quant.act_quant, quant.inner_norm, quant.backward_quant};
        const int have[NUM_MODE_FLAGS] = {fq.weight_quant, fq.act_quant, fq.inner_norm, fq.backward_quant};
        const char *flags[NUM_MODE_FLAGS] = {"-wq", "-aq", "-rn", "-bq"};
        for (int i = 0; i < NUM_MODE_FLAGS; i++) {
            if (explicit_flags != NULL && explicit_flags[i] && want[i] != have[i]) {
                char mode[256];
                quant_config_describe(&fq, mode, sizeof(mode));
                fprintf(stderr, "error: %s disagrees with '%s', which was trained with %s%s\n"
                        "---> HINT: drop %s to continue in the checkpoint's mode\n", flags[i], path, mode,
                        fq.backward_quant == BQ_FLOAT ? ", backward dX float" : "", flags[i]);
                exit(EXIT_FAILURE);
            }
        }
        quant = fq;
    }
    *quant_out = quant;
    return fp;
}

// the same for callers that know the first three mode flags only (-wq, -aq, -rn): -bq counts as not given
static inline FILE *model_file_open(const char *path, QuantConfig quant, const int explicit_flags[3],
                                    GPT2Config *config, QuantConfig *quant_out) {
    int flags4[NUM_MODE_FLAGS] = {0, 0, 0, 0};
    for (int i = 0; explicit_flags != NULL && i < 3; i++) { flags4[i] = explicit_flags[i]; }
    return model_file_open_modes(path, quant, explicit_flags != NULL ? flags4 : NULL, config, quant_out);
}

// ----------------------------------------------------------------------------
// checkpoints: model_XXXXXXXX.bin + state_XXXXXXXX.bin + DONE_XXXXXXXX
// Both trainers write them from host copies of their buffers.

static inline void model_file_write(const char *path, const GPT2Config *config, const QuantConfig *quant,
                                    const float *params, size_t num_parameters) {
    int header[HEADER_INTS];
    model_header_fill(header, config, quant, crc32_update(0, params, num_parameters * sizeof(float)));
    SafeFile f;
    safe_open(&f, path);
    fwriteCheck(header, sizeof(int), HEADER_INTS, f.fp, f.tmp);
    fwriteCheck(params, sizeof(float), num_parameters, f.fp, f.tmp);
    safe_close(&f);
}

// what a state file holds besides the AdamW moments
typedef struct {
    int step;        // optimizer steps done
    int B, T;        // the batch shape of the run
    uint64_t rng;    // the sampling RNG
    int shard_index; // the train loader's position
    size_t pos;
    int total_batch; // tokens per optimizer step
} TrainState;

static inline void checkpoint_write(const char *out_dir, const GPT2Config *config, const QuantConfig *quant,
                                    const float *params, const float *m, const float *v, size_t num_parameters,
                                    const TrainState *st) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/model_%08d.bin", out_dir, st->step);
    model_file_write(path, config, quant, params, num_parameters);
    int header[HEADER_INTS] = {0};
    header[0] = STATE_MAGIC;
    header[1] = STATE_VERSION;
    header[2] = (int)num_parameters;
    header[3] = st->step;
    header[4] = st->B;
    header[5] = st->T;
    header[6] = (int)(uint32_t)(st->rng & 0xffffffffu);
    header[7] = (int)(uint32_t)(st->rng >> 32);
    header[8] = st->shard_index;
    header[9] = (int)st->pos;
    header[10] = st->total_batch;
    header[STATE_CRC_SLOT] = CRC_MAGIC;
    header[STATE_CRC_SLOT + 1] = (int)crc32_update(crc32_update(0, m, num_parameters * sizeof(float)), v,
                                                   num_parameters * sizeof(float));
    snprintf(path, sizeof(path), "%s/state_%08d.bin", out_dir, st->step);
    SafeFile f;
    safe_open(&f, path);
    fwriteCheck(header, sizeof(int), HEADER_INTS, f.fp, f.tmp);
    fwriteCheck(m, sizeof(float), num_parameters, f.fp, f.tmp);
    fwriteCheck(v, sizeof(float), num_parameters, f.fp, f.tmp);
    safe_close(&f);
    // the marker goes last: its presence says both files above are complete
    snprintf(path, sizeof(path), "%s/DONE_%08d", out_dir, st->step);
    SafeFile done;
    safe_open(&done, path);
    safe_close(&done);
    printf("wrote checkpoint %s/model_%08d.bin and state_%08d.bin\n", out_dir, st->step, st->step);
}

// Read a state file for a model of num_parameters trained with batch shape
// (B, T) and total_batch tokens per step: m and v (num_parameters floats each)
// and st. Exits with a message naming the file and the fix when it does not fit.
static inline void checkpoint_read_state(const char *path, size_t num_parameters, int B, int T, int total_batch,
                                         float *m, float *v, TrainState *st) {
    checkpoint_file_exists_check(path, "state_");
    FILE *fp = fopenCheck(path, "rb");
    int header[HEADER_INTS];
    long size = file_size(fp, path);
    if (size < (long)sizeof(header)) {
        fprintf(stderr, "error: '%s' is too short to be a state file\n", path);
        exit(EXIT_FAILURE);
    }
    freadCheck(header, sizeof(int), HEADER_INTS, fp, path);
    if (header[0] != STATE_MAGIC || header[1] != STATE_VERSION) {
        fprintf(stderr, "error: '%s' is not a version-%d state file (magic %d, version %d)\n",
                path, STATE_VERSION, header[0], header[1]);
        exit(EXIT_FAILURE);
    }
    if ((size_t)(unsigned)header[2] != num_parameters) {
        fprintf(stderr, "error: '%s' is for a model of %d parameters, but its model file has %zu\n",
                path, header[2], num_parameters);
        exit(EXIT_FAILURE);
    }
    if (size != (long)(sizeof(header) + 2 * num_parameters * sizeof(float))) {
        fprintf(stderr, "error: '%s' is %ld bytes, not the %zu its header implies: truncated or corrupt\n"
                "---> HINT: delete this checkpoint's DONE_%08d to resume from an earlier one\n",
                path, size, sizeof(header) + 2 * num_parameters * sizeof(float), header[3]);
        exit(EXIT_FAILURE);
    }
    if (header[4] != B || header[5] != T) {
        fprintf(stderr, "error: '%s' was saved with -b %d -t %d; resuming needs the same\n"
                "---> HINT: pass -b %d -t %d\n", path, header[4], header[5], header[4], header[5]);
        exit(EXIT_FAILURE);
    }
    if (header[10] != 0 && header[10] != total_batch) {
        fprintf(stderr, "error: '%s' was saved with %d tokens per step (-d); resuming needs the same\n"
                "---> HINT: pass -d %d\n", path, header[10], header[10]);
        exit(EXIT_FAILURE);
    }
    if (header[STATE_CRC_SLOT] != 0 && header[STATE_CRC_SLOT] != CRC_MAGIC) {
        fprintf(stderr, "error: '%s' has an unknown value %d in header slot %d\n", path, header[STATE_CRC_SLOT],
                STATE_CRC_SLOT);
        exit(EXIT_FAILURE);
    }
    freadCheck(m, sizeof(float), num_parameters, fp, path);
    freadCheck(v, sizeof(float), num_parameters, fp, path);
    fclose(fp);
    if (header[STATE_CRC_SLOT] == CRC_MAGIC) {
        uint32_t want = (uint32_t)header[STATE_CRC_SLOT + 1];
        size_t bytes = num_parameters * sizeof(float);
        uint32_t crc = crc32_update(crc32_update(0, m, bytes), v, bytes);
        if (crc != want) { checksum_mismatch_error(path, crc, want); }
    }
    // the moments of a healthy run are finite, and v (a mean of squares) is never negative:
    // sqrt(v) of a negative v would turn the first update into NaN
    for (int k = 0; k < 2; k++) {
        const float *x = k == 0 ? m : v;
        size_t j = first_non_finite(x, num_parameters);
        if (k == 1) { // or a negative v before it
            for (size_t i = 0; i < j; i++) { if (v[i] < 0.0f) { j = i; break; } }
        }
        if (j < num_parameters) {
            fprintf(stderr, "error: '%s' has an invalid AdamW moment %s[%zu] = %g: the state cannot be resumed from\n"
                    "---> HINT: the file is corrupt or was saved from a diverged run: delete this checkpoint's "
                    "DONE_%08d to resume from the one before\n", path, k == 0 ? "m" : "v", j, x[j], header[3]);
            exit(EXIT_FAILURE);
        }
    }
    st->step = header[3];
    st->B = header[4];
    st->T = header[5];
    st->rng = (uint64_t)(uint32_t)header[6] | ((uint64_t)(uint32_t)header[7] << 32);
    st->shard_index = header[8];
    st->pos = (size_t)(unsigned)header[9];
    st->total_batch = header[10] != 0 ? header[10] : B * T;
}

#endif // LLMC_CHECKPOINT_H
