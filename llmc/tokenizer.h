/*
 llmc/tokenizer.h: GPT-2 token ids back to text, from llm.c's tokenizer file.

 File format (written by prepro_tinyshakespeare.py, same as llm.c's):
   uint32 header[256]: [0] 20240328 magic, [1] 2 version, [2] vocab size, [3] EOT id
   then for each token id: uint8 length, then that many raw bytes
 A token's bytes can be part of a multi-byte UTF-8 character, so printing the
 tokens one after another is what reassembles text.
*/
#ifndef LLMC_TOKENIZER_H
#define LLMC_TOKENIZER_H

#include <stdint.h>
#include <ctype.h>
#include "utils.h" // defines: fopenCheck, freadCheck, mallocCheck, is_directory

#define TOKENIZER_MAGIC 20240328
#define TOKENIZER_VERSION 2

typedef struct {
    uint32_t vocab_size;
    char **token_table; // token id -> NUL-terminated bytes
    int eot_token;
    int init_ok;
} Tokenizer;

// Loads the tokenizer; when the file is missing, prints a hint and leaves
// init_ok = 0 (training works without it, samples are then printed as ids).
// A file that exists but is wrong is an error.
static inline void tokenizer_init(Tokenizer *tokenizer, const char *path) {
    memset(tokenizer, 0, sizeof(*tokenizer));
    if (is_directory(path)) {
        fprintf(stderr, "error: tokenizer '%s' is a directory, not a file\n"
                "---> HINT: pass the tokenizer file, e.g. -tf data/gpt2_tokenizer.bin\n", path);
        exit(EXIT_FAILURE);
    }
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        fprintf(stderr, "warning: tokenizer '%s' not found: samples will be printed as token ids\n"
                "---> HINT: run python3 prepro_tinyshakespeare.py to write it\n", path);
        return;
    }
    uint32_t header[256];
    long size = file_size(fp, path);
    if (size < (long)sizeof(header)) {
        fprintf(stderr, "error: '%s' is too short to be a tokenizer file\n", path);
        exit(EXIT_FAILURE);
    }
    freadCheck(header, sizeof(uint32_t), 256, fp, path);
    if (header[0] != TOKENIZER_MAGIC || header[1] != TOKENIZER_VERSION) {
        fprintf(stderr, "error: '%s' is not a version-%d tokenizer file (magic %u, version %u)\n"
                "---> HINT: rerun python3 prepro_tinyshakespeare.py to write it again\n",
                path, TOKENIZER_VERSION, header[0], header[1]);
        exit(EXIT_FAILURE);
    }
    tokenizer->vocab_size = header[2];
    tokenizer->eot_token = (int)header[3];
    tokenizer->token_table = (char **)callocCheck(tokenizer->vocab_size, sizeof(char *));
    for (uint32_t i = 0; i < tokenizer->vocab_size; i++) {
        unsigned char length;
        freadCheck(&length, sizeof(unsigned char), 1, fp, path);
        if (length == 0) {
            fprintf(stderr, "error: '%s' has an empty token %u: corrupt file\n", path, i);
            exit(EXIT_FAILURE);
        }
        char *token_bytes = (char *)mallocCheck(length + 1);
        freadCheck(token_bytes, sizeof(char), length, fp, path);
        token_bytes[length] = '\0';
        tokenizer->token_table[i] = token_bytes;
    }
    fclose(fp);
    tokenizer->init_ok = 1;
}

// the bytes of one token; NULL for an id outside the vocab
static inline const char *tokenizer_decode(const Tokenizer *tokenizer, uint32_t token_id) {
    if (!tokenizer->init_ok || token_id >= tokenizer->vocab_size) { return NULL; }
    return tokenizer->token_table[token_id];
}

// print a token, dropping lone control bytes that would garble a terminal
static inline void tokenizer_print(const Tokenizer *tokenizer, uint32_t token_id, FILE *out) {
    const char *piece = tokenizer_decode(tokenizer, token_id);
    if (piece == NULL) { fprintf(out, "<%u>", token_id); return; }
    if (piece[1] == '\0') {
        unsigned char b = (unsigned char)piece[0];
        if (!(isprint(b) || isspace(b) || b >= 0x80)) { return; }
    }
    fputs(piece, out);
}

static inline void tokenizer_free(Tokenizer *tokenizer) {
    if (tokenizer->init_ok) {
        for (uint32_t i = 0; i < tokenizer->vocab_size; i++) { free(tokenizer->token_table[i]); }
        free(tokenizer->token_table);
    }
}

#endif // LLMC_TOKENIZER_H
