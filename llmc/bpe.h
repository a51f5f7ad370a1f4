/*
 llmc/bpe.h: GPT-2 BPE encoding, text -> token ids, for prompts. The inverse of llmc/tokenizer.h,
 built from the same tokenizer file. It gives the same tokens as tiktoken's
 get_encoding("gpt2").encode_ordinary(text) and prepro_tinyshakespeare.encode(text).

 Usage:
   Tokenizer tokenizer;
   tokenizer_init(&tokenizer, "data/gpt2_tokenizer.bin");
   BPEEncoder enc;
   bpe_init(&enc, &tokenizer);                  // enc borrows the tokenizer's token table
   int ids[256];
   int n = bpe_encode(&enc, text, strlen(text), ids, 256);   // -1 (and a message) if 256 is too few
   bpe_free(&enc);
   tokenizer_free(&tokenizer);
 Text never has more tokens than bytes, so max_out = len is always enough.

 How it works: the two steps of GPT-2 (and tiktoken)
 1. Pre-tokenization splits the text into pieces with the GPT-2 regex
        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    and BPE never merges across pieces. There is no regex library here: bpe_piece_end scans the
    text as prepro_tinyshakespeare.pretokenize does, over UTF-8 decoded code points, each classed
    as letter \p{L}, number \p{N}, whitespace \s (Unicode White_Space, not C's isspace) or other,
    with the tables of llmc/unicode_tables.h.
 2. Byte-level BPE on each piece: start with one part per byte, then repeatedly merge the adjacent
    pair whose concatenation is the token with the lowest id (the leftmost pair on a tie), until no
    adjacent pair is a token. GPT-2 made token 256 + m with merge number m, so a token's id is its
    merge rank: a hash table from byte string to id is all that BPE needs, no merges list.

 Semantics to know:
  - Special tokens are not recognised: "<|endoftext|>" in the text is encoded as plain text, like
    tiktoken's encode_ordinary. Put the EOT id (tokenizer.eot_token) in yourself where you want it.
  - Invalid UTF-8: each byte that does not start a valid UTF-8 sequence (a stray continuation byte,
    a truncated sequence, an overlong form, an encoded surrogate, anything above U+10FFFF) is one
    character of class "other", as punctuation is; it is still encoded, by its byte's token, so
    decoding gives back the exact bytes. tiktoken only takes valid strings; in Python this is what
    pre-tokenizing bytes.decode("utf-8", "surrogateescape") gives (tests/make_bpe_cases.py).
  - Characters are classed by the Unicode version of llmc/unicode_tables.h (Python's unicodedata);
    tiktoken's Rust regex may know a newer one. Only characters assigned in between can differ.
  - Cost: the merge loop is O(n^2) in a piece's length n (a linear scan per merge, as in tiktoken's
    byte_pair_merge): fine for text, slow for a piece that is a megabyte of one repeated character.
*/
#ifndef LLMC_BPE_H
#define LLMC_BPE_H

#include <assert.h>
#include <stdint.h>
#include <limits.h>
#include "utils.h"          // defines: mallocCheck
#include "tokenizer.h"      // defines: Tokenizer
#include "unicode_tables.h" // defines: unicode_is_letter, unicode_is_number, unicode_is_white_space

typedef struct {
    const Tokenizer *tokenizer; // token id -> bytes; borrowed, must outlive the encoder
    int *token_lengths;         // token id -> number of bytes (the table's strings are NUL-terminated)
    int *slots;                 // open-addressing hash table of token ids, -1 = empty slot
    uint32_t num_slots;         // a power of two, at least twice the number of tokens
    int max_token_length;       // no token is longer, so longer byte strings skip the lookup
} BPEEncoder;

// ----------------------------------------------------------------------------
// hash table: token bytes -> token id

// FNV-1a: simple, and good enough for ~50k short keys
static inline uint32_t bpe_hash(const unsigned char *bytes, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) { h = (h ^ bytes[i]) * 16777619u; }
    return h;
}

// the token id whose bytes are bytes[0..len), or -1 if there is none
static inline int bpe_lookup(const BPEEncoder *enc, const unsigned char *bytes, size_t len) {
    if (len == 0 || len > (size_t)enc->max_token_length) { return -1; }
    uint32_t mask = enc->num_slots - 1;
    // linear probing: walk from the home slot until the key or an empty slot; the table is at most
    // half full, so an empty slot always comes, and soon
    for (uint32_t slot = bpe_hash(bytes, len) & mask;; slot = (slot + 1) & mask) {
        int id = enc->slots[slot];
        if (id < 0) { return -1; }
        if ((size_t)enc->token_lengths[id] == len &&
            memcmp(enc->tokenizer->token_table[id], bytes, len) == 0) { return id; }
    }
}

static inline void bpe_init(BPEEncoder *enc, const Tokenizer *tokenizer) {
    if (!tokenizer->init_ok) {
        fprintf(stderr, "error: bpe_init needs a loaded tokenizer file to encode text\n"
                "---> HINT: run python3 prepro_tinyshakespeare.py to write it\n");
        exit(EXIT_FAILURE);
    }
    int vocab_size = (int)tokenizer->vocab_size;
    enc->tokenizer = tokenizer;
    enc->token_lengths = (int *)mallocCheck(vocab_size * sizeof(int));
    enc->max_token_length = 0;
    enc->num_slots = 1;
    while (enc->num_slots < 2 * tokenizer->vocab_size) { enc->num_slots *= 2; }
    enc->slots = (int *)mallocCheck(enc->num_slots * sizeof(int));
    for (uint32_t s = 0; s < enc->num_slots; s++) { enc->slots[s] = -1; }

    for (int id = 0; id < vocab_size; id++) {
        const char *bytes = tokenizer->token_table[id];
        // The file stores each length but tokenizer.h keeps NUL-terminated strings. Lengths are
        // >= 1, so an empty string is a token whose first byte is 0: in GPT-2 only id 188, the
        // single byte 0x00. A NUL later in a token would shorten it and show up as a duplicate.
        int len = (int)strlen(bytes);
        if (len == 0) { len = 1; }
        enc->token_lengths[id] = len;
        // EOT is a special token, never the result of a merge: leave it out so "<|endoftext|>" in
        // the text is encoded as the plain text it is (encode_ordinary)
        if (id == tokenizer->eot_token) { continue; }
        if (len > enc->max_token_length) { enc->max_token_length = len; }
        int other = bpe_lookup(enc, (const unsigned char *)bytes, len);
        if (other >= 0) {
            fprintf(stderr, "error: tokens %d and %d have the same bytes: not a BPE vocabulary "
                    "(or a token holds a NUL byte after its first)\n", other, id);
            exit(EXIT_FAILURE);
        }
        uint32_t mask = enc->num_slots - 1;
        uint32_t slot = bpe_hash((const unsigned char *)bytes, len) & mask;
        while (enc->slots[slot] >= 0) { slot = (slot + 1) & mask; }
        enc->slots[slot] = id;
    }
    // byte-level BPE starts from single bytes, so all 256 must be tokens
    for (int b = 0; b < 256; b++) {
        unsigned char byte = (unsigned char)b;
        if (bpe_lookup(enc, &byte, 1) < 0) {
            fprintf(stderr, "error: the tokenizer has no token for the byte 0x%02X: not a byte-level BPE\n"
                    "---> HINT: rerun python3 prepro_tinyshakespeare.py to write GPT-2's tokenizer file\n", b);
            exit(EXIT_FAILURE);
        }
    }
}

static inline void bpe_free(BPEEncoder *enc) {
    free(enc->token_lengths);
    free(enc->slots);
}

// ----------------------------------------------------------------------------
// UTF-8 and character classes

enum { BPE_LETTER, BPE_NUMBER, BPE_SPACE, BPE_OTHER };

#define BPE_INVALID_UTF8 0xFFFFFFFFu // the "code point" of a byte that starts no valid sequence

// decodes the character at s[i] (i < len) into *cp; returns its length in bytes. A byte that does
// not start a complete, shortest-form sequence of a scalar value is one invalid character of 1 byte
static inline int utf8_decode(const unsigned char *s, size_t len, size_t i, uint32_t *cp) {
    unsigned char b = s[i];
    int n;
    uint32_t c, min;
    if (b < 0x80) { *cp = b; return 1; }
    else if ((b & 0xE0) == 0xC0) { n = 2; c = b & 0x1F; min = 0x80; }    // 110xxxxx 10xxxxxx
    else if ((b & 0xF0) == 0xE0) { n = 3; c = b & 0x0F; min = 0x800; }   // 1110xxxx + 2
    else if ((b & 0xF8) == 0xF0) { n = 4; c = b & 0x07; min = 0x10000; } // 11110xxx + 3
    else { *cp = BPE_INVALID_UTF8; return 1; }                           // 10xxxxxx, 11111xxx
    if (i + n > len) { *cp = BPE_INVALID_UTF8; return 1; }
    for (int k = 1; k < n; k++) {
        if ((s[i + k] & 0xC0) != 0x80) { *cp = BPE_INVALID_UTF8; return 1; }
        c = (c << 6) | (s[i + k] & 0x3F);
    }
    // overlong forms (e.g. C0 80 for NUL) and UTF-16 surrogates are not UTF-8 (RFC 3629)
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) { *cp = BPE_INVALID_UTF8; return 1; }
    *cp = c;
    return n;
}

// the class of the character at s[i] (as prepro_tinyshakespeare.char_class); returns its length
static inline int bpe_char_at(const unsigned char *s, size_t len, size_t i, int *klass) {
    uint32_t cp;
    int n = utf8_decode(s, len, i, &cp);
    if (cp == BPE_INVALID_UTF8) { *klass = BPE_OTHER; }
    else if (unicode_is_white_space(cp)) { *klass = BPE_SPACE; }
    else if (unicode_is_letter(cp)) { *klass = BPE_LETTER; }
    else if (unicode_is_number(cp)) { *klass = BPE_NUMBER; }
    else { *klass = BPE_OTHER; }
    return n;
}

// ----------------------------------------------------------------------------
// pre-tokenization: the GPT-2 regex, written out

// the end of the piece that starts at s[i] (i < len). The regex's alternatives are tried in order,
// as the regex engine does; see prepro_tinyshakespeare.pretokenize for the same scanner in Python.
static inline size_t bpe_piece_end(const unsigned char *s, size_t len, size_t i) {
    // 's 't 're 've 'm 'll 'd, lowercase only ("'S" is "'" then "S"). They are ASCII, and an ASCII
    // byte is always a whole character in UTF-8, so comparing bytes is comparing characters.
    if (s[i] == '\'') {
        if (i + 3 <= len && ((s[i + 1] == 'r' && s[i + 2] == 'e') || (s[i + 1] == 'v' && s[i + 2] == 'e') ||
                             (s[i + 1] == 'l' && s[i + 2] == 'l'))) { return i + 3; }
        if (i + 2 <= len && (s[i + 1] == 's' || s[i + 1] == 't' || s[i + 1] == 'm' || s[i + 1] == 'd')) {
            return i + 2;
        }
    }
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional single space (U+0020 only), then the
    // longest run of one class. A space followed by a non-space therefore always starts such a piece.
    int klass, next_klass;
    size_t j = i;
    if (s[i] == ' ' && i + 1 < len) {
        bpe_char_at(s, len, i + 1, &next_klass);
        if (next_klass != BPE_SPACE) { j = i + 1; }
    }
    j += bpe_char_at(s, len, j, &klass);
    if (klass != BPE_SPACE) {
        while (j < len) {
            int n = bpe_char_at(s, len, j, &next_klass);
            if (next_klass != klass) { break; }
            j += n;
        }
        return j;
    }
    // a whitespace run s[i..end), its last character at s[last..end)
    size_t last = i, end = j;
    while (end < len) {
        int n = bpe_char_at(s, len, end, &next_klass);
        if (next_klass != BPE_SPACE) { break; }
        last = end;
        end += n;
    }
    // '\s+(?!\S)' takes the whole run at the end of the text, else all but its last character (which
    // then leads the next piece, as the space of " world"). For a single character before a
    // non-space that match is empty and fails, and '\s+' takes the one character.
    if (end < len && last > i) { return last; }
    return end;
}

// ----------------------------------------------------------------------------
// BPE on one piece

#define BPE_NO_RANK INT_MAX // the "rank" of a pair that is not a token: never merged

// part k of a piece is bytes [parts[k].start, parts[k + 1].start); rank is the token id of part k
// joined with part k + 1. This is tiktoken's byte_pair_merge (src/lib.rs).
typedef struct {
    size_t start;
    int rank;
} BPEPart;

// the rank of joining parts k and k + 1 of a piece with num_parts parts (parts[num_parts] is the end)
static inline int bpe_pair_rank(const BPEEncoder *enc, const unsigned char *piece, const BPEPart *parts,
                                size_t num_parts, size_t k) {
    if (k + 2 > num_parts) { return BPE_NO_RANK; }
    int id = bpe_lookup(enc, piece + parts[k].start, parts[k + 2].start - parts[k].start);
    return id >= 0 ? id : BPE_NO_RANK;
}

// appends id to out; 0 if out already holds max_out tokens
static inline int bpe_emit(int *out, int *num_out, int max_out, int id) {
    if (*num_out >= max_out) { return 0; }
    out[(*num_out)++] = id;
    return 1;
}

// encodes the bytes piece[0..n) (n >= 1) of one piece, with parts as scratch (n + 1 entries), and
// appends its ids to out; 0 if out is full
static inline int bpe_encode_piece(const BPEEncoder *enc, const unsigned char *piece, size_t n,
                                   BPEPart *parts, int *out, int *num_out, int max_out) {
    // a piece that is a token is that token. tiktoken checks this before merging, and so do we: in
    // general BPE need not arrive at the whole piece; for GPT-2 merging the bytes of each of its
    // tokens does give that token, so here it is only a fast path (whole words are mostly tokens)
    int whole = bpe_lookup(enc, piece, n);
    if (whole >= 0) { return bpe_emit(out, num_out, max_out, whole); }

    // one part per byte, plus the end marker parts[n]
    size_t num_parts = n;
    for (size_t k = 0; k <= n; k++) { parts[k].start = k; }
    for (size_t k = 0; k <= n; k++) { parts[k].rank = bpe_pair_rank(enc, piece, parts, num_parts, k); }
    while (num_parts > 1) {
        // the pair with the lowest rank; the strict < makes the leftmost one win a tie, which
        // happens when the same pair occurs twice, e.g. "aa" in "aaa" -> "aa" "a", not "a" "aa"
        int best = BPE_NO_RANK;
        size_t best_k = 0;
        for (size_t k = 0; k + 1 < num_parts; k++) {
            if (parts[k].rank < best) { best = parts[k].rank; best_k = k; }
        }
        if (best == BPE_NO_RANK) { break; }
        // merge parts best_k and best_k + 1 by dropping the boundary between them
        memmove(&parts[best_k + 1], &parts[best_k + 2], (num_parts - best_k - 1) * sizeof(BPEPart));
        num_parts--;
        // the merged part has new pairs with both its neighbours; no other pair changed
        parts[best_k].rank = bpe_pair_rank(enc, piece, parts, num_parts, best_k);
        if (best_k > 0) { parts[best_k - 1].rank = bpe_pair_rank(enc, piece, parts, num_parts, best_k - 1); }
    }
    for (size_t k = 0; k < num_parts; k++) {
        // every part is a token: single bytes are (checked in bpe_init), and merges make tokens
        int id = bpe_lookup(enc, piece + parts[k].start, parts[k + 1].start - parts[k].start);
        assert(id >= 0);
        if (!bpe_emit(out, num_out, max_out, id)) { return 0; }
    }
    return 1;
}

// ----------------------------------------------------------------------------
// encode

// GPT-2 token ids of text[0..len) (UTF-8; any bytes are accepted, see the top of this file) into
// out[0..max_out); returns how many, or -1 with a message if max_out is too small
static inline int bpe_encode(const BPEEncoder *enc, const char *text, size_t len, int *out, int max_out) {
    const unsigned char *s = (const unsigned char *)text;
    BPEPart *parts = NULL; // scratch for the merges, grown to the longest piece so far
    size_t capacity = 0;
    int num_out = 0;
    size_t i = 0;
    while (i < len) {
        size_t end = bpe_piece_end(s, len, i);
        size_t n = end - i;
        if (n + 1 > capacity) {
            free(parts);
            capacity = n + 1 > 256 ? n + 1 : 256;
            parts = (BPEPart *)mallocCheck(capacity * sizeof(BPEPart));
        }
        if (!bpe_encode_piece(enc, s + i, n, parts, out, &num_out, max_out)) {
            fprintf(stderr, "error: bpe_encode: the text (%zu bytes) has more than max_out = %d tokens\n"
                    "---> HINT: pass a bigger out buffer; max_out = len is always enough\n", len, max_out);
            free(parts);
            return -1;
        }
        i = end;
    }
    free(parts);
    return num_out;
}

#endif // LLMC_BPE_H
