/*
 llmc/dataloader.h: reads llm.c's token shards and serves (B,T) batches.

 Shard format (llm.c's dev/data scripts write it):
   int32 header[256]: [0] 20240520 magic, [1] 1 version, [2] number of tokens
   uint16 tokens[number of tokens]
 A pattern such as "data/fineweb_train_*.bin" names several shards (glob order).
 Each shard is read whole and every token is checked against the vocab size
 once, so the model never trains on an id it has no embedding for.

 Batches walk the shards in order: inputs are tokens[pos, pos+B*T), targets the
 same window shifted by one; pos advances by B*T and moves to the next shard
 (wrapping around) when fewer than B*T+1 tokens are left. The state is
 (shard index, position): enough to resume exactly.
*/
#ifndef LLMC_DATALOADER_H
#define LLMC_DATALOADER_H

#include <glob.h>
#include <stdint.h>
#include "utils.h" // defines: fopenCheck, freadCheck, mallocCheck, is_directory

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1

typedef struct {
    int B, T;
    int vocab_size;
    glob_t glob_result;  // the shard paths
    int shard_index;     // which shard is loaded
    size_t pos;          // token position of the next batch in that shard
    uint16_t *tokens;    // the whole current shard
    size_t num_tokens;
    int *inputs;         // (B, T)
    int *targets;        // (B, T)
    const char *flag;    // the command-line flag the pattern came from, for messages
} DataLoader;

// read and validate one shard into loader->tokens
static inline void dataloader_load_shard(DataLoader *loader, int shard_index) {
    const char *path = loader->glob_result.gl_pathv[shard_index];
    FILE *fp = fopenCheck(path, "rb");
    long size = file_size(fp, path);
    int header[256];
    if (size < (long)sizeof(header)) {
        fprintf(stderr, "error: %s '%s' is too short to be a token shard (%ld bytes)\n", loader->flag, path, size);
        exit(EXIT_FAILURE);
    }
    freadCheck(header, sizeof(int), 256, fp, path);
    if (header[0] != SHARD_MAGIC) {
        fprintf(stderr, "error: %s '%s' is not a token shard (bad magic %d, want %d)\n"
                "---> HINT: token shards come from prepro_tinyshakespeare.py or llm.c's dev/data scripts\n",
                loader->flag, path, header[0], SHARD_MAGIC);
        exit(EXIT_FAILURE);
    }
    if (header[1] != SHARD_VERSION) {
        fprintf(stderr, "error: %s '%s' has shard version %d; this trainer reads version %d (uint16 tokens)\n",
                loader->flag, path, header[1], SHARD_VERSION);
        exit(EXIT_FAILURE);
    }
    size_t ntok = (size_t)(unsigned)header[2];
    if (size != (long)(sizeof(header) + ntok * sizeof(uint16_t))) {
        fprintf(stderr, "error: %s '%s' is %ld bytes but its header says %zu tokens: truncated or corrupt\n",
                loader->flag, path, size, ntok);
        exit(EXIT_FAILURE);
    }
    size_t need = (size_t)loader->B * loader->T + 1;
    if (ntok < need) {
        fprintf(stderr, "error: %s '%s' has %zu tokens, fewer than one batch needs (B*T+1 = %zu)\n"
                "---> HINT: lower -b or -t\n", loader->flag, path, ntok, need);
        exit(EXIT_FAILURE);
    }
    free(loader->tokens);
    loader->tokens = (uint16_t *)mallocCheck(ntok * sizeof(uint16_t));
    freadCheck(loader->tokens, sizeof(uint16_t), ntok, fp, path);
    fclose(fp);
    for (size_t i = 0; i < ntok; i++) {
        if (loader->tokens[i] >= loader->vocab_size) {
            fprintf(stderr, "error: %s '%s' has token id %d at position %zu, outside the model's vocab (V = %d)\n"
                    "---> HINT: the shard was made with another tokenizer than the model's\n",
                    loader->flag, path, loader->tokens[i], i, loader->vocab_size);
            exit(EXIT_FAILURE);
        }
    }
    loader->num_tokens = ntok;
    loader->shard_index = shard_index;
}

static inline void dataloader_init(DataLoader *loader, const char *pattern, const char *flag, int B, int T,
                                   int vocab_size) {
    memset(loader, 0, sizeof(*loader));
    loader->B = B;
    loader->T = T;
    loader->vocab_size = vocab_size;
    loader->flag = flag;
    int rc = glob(pattern, 0, NULL, &loader->glob_result);
    if (rc != 0 || loader->glob_result.gl_pathc == 0) {
        fprintf(stderr, "error: %s '%s' matches no file\n"
                "---> HINT: run python3 prepro_tinyshakespeare.py first (or make data)\n", flag, pattern);
        exit(EXIT_FAILURE);
    }
    // a directory would open, then fail at its first read as "truncated or unreadable"
    for (size_t i = 0; i < loader->glob_result.gl_pathc; i++) {
        const char *path = loader->glob_result.gl_pathv[i];
        if (is_directory(path)) {
            fprintf(stderr, "error: %s '%s' matches '%s', a directory, not a token shard\n"
                    "---> HINT: give a pattern that matches the shard files only, e.g. '%s/*_train.bin'\n",
                    flag, pattern, path, path);
            exit(EXIT_FAILURE);
        }
    }
    loader->inputs = (int *)mallocCheck((size_t)B * T * sizeof(int));
    loader->targets = (int *)mallocCheck((size_t)B * T * sizeof(int));
    dataloader_load_shard(loader, 0);
    loader->pos = 0;
}

// back to the first batch of the first shard
static inline void dataloader_reset(DataLoader *loader) {
    if (loader->shard_index != 0) { dataloader_load_shard(loader, 0); }
    loader->pos = 0;
}

// jump to a saved (shard, position), e.g. when resuming
static inline void dataloader_resume(DataLoader *loader, int shard_index, size_t pos) {
    if (shard_index < 0 || shard_index >= (int)loader->glob_result.gl_pathc) {
        fprintf(stderr, "error: the saved state points at shard %d but %s matches %zu shards\n"
                "---> HINT: resume with the same -i pattern the run started with\n",
                shard_index, loader->flag, loader->glob_result.gl_pathc);
        exit(EXIT_FAILURE);
    }
    if (shard_index != loader->shard_index) { dataloader_load_shard(loader, shard_index); }
    if (pos + (size_t)loader->B * loader->T + 1 > loader->num_tokens) { pos = 0; }
    loader->pos = pos;
}

// fill inputs/targets with the next batch and advance
static inline void dataloader_next_batch(DataLoader *loader) {
    size_t BT = (size_t)loader->B * loader->T;
    if (loader->pos + BT + 1 > loader->num_tokens) {
        int next = (loader->shard_index + 1) % (int)loader->glob_result.gl_pathc;
        if (next != loader->shard_index) { dataloader_load_shard(loader, next); }
        loader->pos = 0;
    }
    const uint16_t *buf = loader->tokens + loader->pos;
    for (size_t i = 0; i < BT; i++) {
        loader->inputs[i] = buf[i];
        loader->targets[i] = buf[i + 1];
    }
    loader->pos += BT;
}

// number of whole batches in the current shard (for a val loader: the cap on -m)
static inline int dataloader_num_batches(const DataLoader *loader) {
    return (int)((loader->num_tokens - 1) / ((size_t)loader->B * loader->T));
}

// also safe on a zeroed DataLoader (one that was never initialised)
static inline void dataloader_free(DataLoader *loader) {
    free(loader->tokens);
    free(loader->inputs);
    free(loader->targets);
    globfree(&loader->glob_result);
}

// A trainer's two loaders, and the line that describes them. The val shards are opened only when
// there are val losses to compute (with_val): a run with -v 0, such as a benchmark, may use a
// batch bigger than the whole val set (tiny Shakespeare's holds 32768 tokens). Unopened, val is
// zeroed, and dataloader_free is a no-op on it.
static inline void dataloaders_open(DataLoader *train, DataLoader *val, const char *train_pattern,
                                    const char *val_pattern, int with_val, int B, int T, int vocab_size) {
    dataloader_init(train, train_pattern, "-i", B, T, vocab_size);
    memset(val, 0, sizeof(*val));
    if (with_val) { dataloader_init(val, val_pattern, "-j", B, T, vocab_size); }
    printf("train: %s (%zu tokens in shard 0), val: ", train_pattern, train->num_tokens);
    if (with_val) { printf("%s (%d batches of %d x %d)\n", val_pattern, dataloader_num_batches(val), B, T); }
    else { printf("none (-v 0)\n"); }
}

#endif // LLMC_DATALOADER_H
