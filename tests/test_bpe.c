/*
 tests/test_bpe.c: llmc/bpe.h, the C GPT-2 BPE encoder, token for token against
 prepro_tinyshakespeare.encode (which tests/test_prepro.py checks against tiktoken):
   - the hash table maps every token's bytes back to its id, and leaves EOT out
   - the UTF-8 decoder and character classes, for every code point, against Python's char_class
   - the whole TinyShakespeare text, hard strings, invalid UTF-8 and random strings
     (the cases file written by tests/make_bpe_cases.py)
   - decode(encode(x)) == x byte for byte, and max_out too small gives -1 and writes nothing past it
 and prints the encoder's speed on the longest case (informational, not a check).
 Prints one PASS/FAIL line per check; exits 1 on any failure.

 Run: bash tests/test_bpe.sh   (writes the tokenizer file and cases into a temp dir, builds, runs)
 By hand:
   python3 prepro_tinyshakespeare.py --out-dir /tmp/d
   python3 tests/make_bpe_cases.py --out /tmp/d/bpe_cases.bin
   gcc -O2 -std=gnu11 -Wall -Wextra tests/test_bpe.c -lm -o tests/test_bpe
   ./tests/test_bpe /tmp/d/gpt2_tokenizer.bin /tmp/d/bpe_cases.bin
*/
#include <stdarg.h>
#include <time.h>
#include "../llmc/tokenizer.h"
#include "../llmc/bpe.h"

static int num_passed = 0, num_failed = 0;

// one line per check; details (printf-style) only on failure
static void check(int ok, const char *name, const char *details_fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(int ok, const char *name, const char *details_fmt, ...) {
    if (ok) {
        printf("PASS: %s\n", name);
        num_passed++;
    } else {
        printf("FAIL: %s: ", name);
        va_list ap;
        va_start(ap, details_fmt);
        vprintf(details_fmt, ap);
        va_end(ap);
        printf("\n");
        num_failed++;
    }
    fflush(stdout);
}

// ----------------------------------------------------------------------------
// the cases file (format: see tests/make_bpe_cases.py)

#define CASES_MAGIC "BPECASES"
#define CASES_VERSION 1
#define NUM_CODE_POINTS 0x110000

typedef struct {
    char name[256];
    const char *text; // points into the file's buffer; not NUL-terminated
    uint32_t text_len;
    int *tokens;      // expected
    uint32_t num_tokens;
} Case;

typedef struct {
    unsigned char *buffer;          // the whole file
    char unicode_version[17];       // of the Python that wrote it
    const unsigned char *classes;   // [NUM_CODE_POINTS]: 0 letter, 1 number, 2 whitespace, 3 other
    Case *cases;
    uint32_t num_cases;
} Cases;

// a cursor over the file's bytes that stops at the end instead of reading past it
typedef struct { const unsigned char *p, *end; const char *path; } Reader;

static const unsigned char *take(Reader *r, size_t n) {
    if ((size_t)(r->end - r->p) < n) {
        fprintf(stderr, "error: '%s' is truncated\n---> HINT: rerun python3 tests/make_bpe_cases.py\n", r->path);
        exit(EXIT_FAILURE);
    }
    const unsigned char *at = r->p;
    r->p += n;
    return at;
}

static uint32_t take_u32(Reader *r) {
    const unsigned char *b = take(r, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void cases_load(Cases *c, const char *path) {
    FILE *fp = fopenCheck(path, "rb");
    long size = file_size(fp, path);
    c->buffer = (unsigned char *)mallocCheck(size);
    freadCheck(c->buffer, 1, size, fp, path);
    fclose(fp);
    Reader r = {c->buffer, c->buffer + size, path};
    if (memcmp(take(&r, 8), CASES_MAGIC, 8) != 0 || take_u32(&r) != CASES_VERSION) {
        fprintf(stderr, "error: '%s' is not a version-%d BPE cases file\n"
                "---> HINT: write it with python3 tests/make_bpe_cases.py --out %s\n", path, CASES_VERSION, path);
        exit(EXIT_FAILURE);
    }
    c->num_cases = take_u32(&r);
    memcpy(c->unicode_version, take(&r, 16), 16);
    c->unicode_version[16] = '\0';
    c->classes = take(&r, NUM_CODE_POINTS);
    c->cases = (Case *)mallocCheck(c->num_cases * sizeof(Case));
    for (uint32_t i = 0; i < c->num_cases; i++) {
        Case *k = &c->cases[i];
        uint32_t name_len = take_u32(&r);
        const unsigned char *name = take(&r, name_len);
        snprintf(k->name, sizeof(k->name), "%.*s", (int)name_len, (const char *)name);
        k->text_len = take_u32(&r);
        k->text = (const char *)take(&r, k->text_len);
        k->num_tokens = take_u32(&r);
        const unsigned char *toks = take(&r, 4 * (size_t)k->num_tokens);
        k->tokens = (int *)mallocCheck(k->num_tokens * sizeof(int) + 1); // +1: never malloc(0)
        for (uint32_t t = 0; t < k->num_tokens; t++) {
            const unsigned char *b = toks + 4 * t;
            k->tokens[t] = (int)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
        }
    }
}

static void cases_free(Cases *c) {
    for (uint32_t i = 0; i < c->num_cases; i++) { free(c->cases[i].tokens); }
    free(c->cases);
    free(c->buffer);
}

// ----------------------------------------------------------------------------
// helpers for failure messages

// the first max_chars bytes of s with non-printable bytes escaped, into a static buffer
static const char *escaped(const char *s, size_t len, size_t max_chars) {
    static char buf[512];
    size_t o = 0;
    for (size_t i = 0; i < len && i < max_chars && o + 8 < sizeof(buf); i++) {
        unsigned char b = (unsigned char)s[i];
        if (b >= 0x20 && b < 0x7F && b != '\\' && b != '"') { buf[o++] = (char)b; }
        else { o += snprintf(buf + o, sizeof(buf) - o, "\\x%02x", b); }
    }
    if (len > max_chars && o + 4 < sizeof(buf)) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o] = '\0';
    return buf;
}

// "first difference at token i: expected 123 vs got 456" for two token lists
static void describe_diff(char *out, size_t size, const int *want, int num_want, const int *got, int num_got) {
    int i = 0;
    while (i < num_want && i < num_got && want[i] == got[i]) { i++; }
    int w = i < num_want ? want[i] : -1, g = i < num_got ? got[i] : -1;
    snprintf(out, size, "%d tokens expected, %d got; first difference at token %d: expected %d vs got %d",
             num_want, num_got, i, w, g);
}


// UTF-8 encoding of any code point up to 0x10FFFF (surrogates included, which makes them invalid)
static int utf8_encode(uint32_t cp, unsigned char *out) {
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { out[0] = 0xC0 | (cp >> 6); out[1] = 0x80 | (cp & 0x3F); return 2; }
    if (cp < 0x10000) {
        out[0] = 0xE0 | (cp >> 12); out[1] = 0x80 | ((cp >> 6) & 0x3F); out[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    out[0] = 0xF0 | (cp >> 18); out[1] = 0x80 | ((cp >> 12) & 0x3F);
    out[2] = 0x80 | ((cp >> 6) & 0x3F); out[3] = 0x80 | (cp & 0x3F);
    return 4;
}

// ----------------------------------------------------------------------------
// tests

static void test_hash_table(const BPEEncoder *enc, const Tokenizer *tok) {
    int wrong = -1;
    for (int id = 0; id < (int)tok->vocab_size && wrong < 0; id++) {
        if (id == tok->eot_token) { continue; }
        if (bpe_lookup(enc, (const unsigned char *)tok->token_table[id], enc->token_lengths[id]) != id) { wrong = id; }
    }
    check(wrong < 0, "hash table maps the bytes of each of the 50,256 mergeable tokens back to its id",
          "token %d maps to %d", wrong, wrong < 0 ? 0 :
          bpe_lookup(enc, (const unsigned char *)tok->token_table[wrong], enc->token_lengths[wrong]));
    const char *eot = tok->token_table[tok->eot_token];
    check(bpe_lookup(enc, (const unsigned char *)eot, strlen(eot)) < 0, "hash table leaves out EOT \"<|endoftext|>\"",
          "found as %d", bpe_lookup(enc, (const unsigned char *)eot, strlen(eot)));
    unsigned char nul = 0;
    check(bpe_lookup(enc, &nul, 1) == 188 && enc->token_lengths[188] == 1, "the byte 0x00 is token 188, of length 1",
          "lookup gives %d, length %d", bpe_lookup(enc, &nul, 1), enc->token_lengths[188]);
}

static void test_utf8_and_classes(const Cases *c) {
    // every code point, encoded as UTF-8: decoded back to itself and classed as Python classes it
    // (surrogates U+D800..U+DFFF cannot be encoded: their bytes must decode as invalid, "other")
    uint32_t bad_decode = 0, num_bad_decode = 0, bad_class = 0, num_bad_class = 0;
    int bad_class_c = 0;
    for (uint32_t cp = 0; cp < NUM_CODE_POINTS; cp++) {
        unsigned char buf[4];
        int n = utf8_encode(cp, buf);
        uint32_t got;
        int used = utf8_decode(buf, n, 0, &got);
        int is_surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        int decode_ok = is_surrogate ? (got == BPE_INVALID_UTF8 && used == 1) : (got == cp && used == n);
        if (!decode_ok && num_bad_decode++ == 0) { bad_decode = cp; }
        int klass;
        bpe_char_at(buf, n, 0, &klass);
        if (klass != c->classes[cp] && num_bad_class++ == 0) { bad_class = cp; bad_class_c = klass; }
    }
    check(num_bad_decode == 0, "utf8_decode(UTF-8 of cp) == cp for all 1,114,112 code points, surrogates invalid",
          "%u wrong, first U+%04X", num_bad_decode, bad_decode);
    char name[256];
    snprintf(name, sizeof(name), "character classes (letter/number/whitespace/other) == Python's for all code points "
             "(llmc/unicode_tables.h: Unicode %s)", UNICODE_TABLES_VERSION);
    if (strcmp(c->unicode_version, UNICODE_TABLES_VERSION) == 0) {
        check(num_bad_class == 0, name, "%u differ, first U+%04X: C %d vs Python %d", num_bad_class, bad_class,
              bad_class_c, c->classes[bad_class]);
    } else {
        // a different Unicode is not a bug in the encoder: say what differs, count no check
        printf("INFO: the cases come from Unicode %s, llmc/unicode_tables.h is Unicode %s: %u code points are "
               "classed differently (first U+%04X); to follow this Python, run python3 dev/gen_unicode_tables.py\n",
               c->unicode_version, UNICODE_TABLES_VERSION, num_bad_class, bad_class);
    }

    // invalid sequences: each is invalid at its first byte, which is consumed alone
    struct { const char *bytes; int len; const char *what; } invalid[] = {
        {"\x80", 1, "lone continuation byte"}, {"\xbf", 1, "lone continuation byte 0xBF"},
        {"\xc0\x80", 2, "overlong 2-byte NUL"}, {"\xc1\xbf", 2, "overlong 2-byte"},
        {"\xe0\x80\x80", 3, "overlong 3-byte"}, {"\xe0\x9f\xbf", 3, "overlong 3-byte U+07FF"},
        {"\xf0\x80\x80\x80", 4, "overlong 4-byte"}, {"\xf0\x8f\xbf\xbf", 4, "overlong 4-byte U+FFFF"},
        {"\xed\xa0\x80", 3, "surrogate U+D800"}, {"\xed\xbf\xbf", 3, "surrogate U+DFFF"},
        {"\xf4\x90\x80\x80", 4, "U+110000"}, {"\xf7\xbf\xbf\xbf", 4, "U+1FFFFF"},
        {"\xf8\x88\x80\x80\x80", 5, "5-byte form"}, {"\xfe", 1, "0xFE"}, {"\xff", 1, "0xFF"},
        {"\xe2\x82", 2, "truncated 3-byte"}, {"\xf0\x9f\x98", 3, "truncated 4-byte"},
        {"\xe2\x28\xa1", 3, "bad continuation"}, {"\xc3", 1, "truncated 2-byte at the end"},
    };
    int num_invalid = (int)(sizeof(invalid) / sizeof(invalid[0])), wrong = -1;
    for (int i = 0; i < num_invalid && wrong < 0; i++) {
        uint32_t cp;
        int used = utf8_decode((const unsigned char *)invalid[i].bytes, invalid[i].len, 0, &cp);
        int klass;
        bpe_char_at((const unsigned char *)invalid[i].bytes, invalid[i].len, 0, &klass);
        if (cp != BPE_INVALID_UTF8 || used != 1 || klass != BPE_OTHER) { wrong = i; }
    }
    check(wrong < 0, "invalid UTF-8 (overlong, surrogate, > U+10FFFF, truncated, stray bytes) is one \"other\" byte",
          "%s: not rejected", wrong >= 0 ? invalid[wrong].what : "");
}

// encodes every case; cases named "<group> #<k>" are reported as one check per group
static void test_cases(const BPEEncoder *enc, const Cases *c) {
    int *out = NULL;
    size_t out_cap = 0;
    uint32_t i = 0;
    while (i < c->num_cases) {
        // the group: this case and the following ones with the same name before " #"
        const char *hash = strstr(c->cases[i].name, " #");
        size_t prefix = hash ? (size_t)(hash - c->cases[i].name) : strlen(c->cases[i].name);
        uint32_t j = i + 1;
        while (hash && j < c->num_cases && strncmp(c->cases[j].name, c->cases[i].name, prefix) == 0 &&
               strncmp(c->cases[j].name + prefix, " #", 2) == 0) { j++; }
        int num_wrong = 0;
        uint32_t num_tokens = 0;
        char details[2048] = "";
        for (uint32_t k = i; k < j; k++) {
            const Case *cs = &c->cases[k];
            // text never has more tokens than bytes: len is enough, +1 so that it is never 0
            if (cs->text_len + 1 > out_cap) {
                free(out);
                out_cap = cs->text_len + 1;
                out = (int *)mallocCheck(out_cap * sizeof(int));
            }
            int n = bpe_encode(enc, cs->text, cs->text_len, out, (int)out_cap);
            num_tokens += cs->num_tokens;
            int ok = n == (int)cs->num_tokens && memcmp(out, cs->tokens, n * sizeof(int)) == 0;
            if (!ok && num_wrong++ == 0) {
                char diff[256];
                describe_diff(diff, sizeof(diff), cs->tokens, cs->num_tokens, out, n);
                snprintf(details, sizeof(details), "%s%s%s; text \"%s\"", hash ? cs->name : "", hash ? ": " : "",
                         diff, escaped(cs->text, cs->text_len, 80));
            }
        }
        char name[512];
        if (hash) {
            snprintf(name, sizeof(name), "encode == Python: %.*s (%u cases, %u tokens)", (int)prefix,
                     c->cases[i].name, j - i, num_tokens);
            check(num_wrong == 0, name, "%d of %u cases differ, first %s", num_wrong, j - i, details);
        } else {
            snprintf(name, sizeof(name), "encode == Python: %s (%u bytes, %u tokens)", c->cases[i].name,
                     c->cases[i].text_len, num_tokens);
            check(num_wrong == 0, name, "%s", details);
        }
        i = j;
    }
    free(out);
}

// the tokens' bytes concatenate to the text, for every case (invalid UTF-8 and NUL bytes included)
static void test_round_trip(const BPEEncoder *enc, const Cases *c) {
    int wrong = -1;
    for (uint32_t k = 0; k < c->num_cases && wrong < 0; k++) {
        const Case *cs = &c->cases[k];
        int *out = (int *)mallocCheck((cs->text_len + 1) * sizeof(int));
        int n = bpe_encode(enc, cs->text, cs->text_len, out, (int)cs->text_len + 1);
        size_t pos = 0;
        int ok = n >= 0;
        for (int t = 0; ok && t < n; t++) {
            size_t len = enc->token_lengths[out[t]];
            ok = pos + len <= cs->text_len && memcmp(enc->tokenizer->token_table[out[t]], cs->text + pos, len) == 0;
            pos += len;
        }
        if (!ok || pos != cs->text_len) { wrong = (int)k; }
        free(out);
    }
    char name[128];
    snprintf(name, sizeof(name), "decode(encode(x)) == x byte for byte, all %u cases", c->num_cases);
    check(wrong < 0, name, "case \"%s\" differs", wrong >= 0 ? c->cases[wrong].name : "");
}

// a case's text with max_out one short: -1, and nothing written past out[max_out - 1]
static void test_max_out(const BPEEncoder *enc, const Cases *c) {
    const Case *cs = NULL;
    for (uint32_t k = 0; k < c->num_cases; k++) {
        if (c->cases[k].num_tokens >= 10 && c->cases[k].num_tokens < 1000) { cs = &c->cases[k]; break; }
    }
    if (cs == NULL) { check(0, "max_out too small", "no case with 10..999 tokens"); return; }
    int max_out = (int)cs->num_tokens - 1;
    int *out = (int *)mallocCheck((cs->num_tokens + 8) * sizeof(int));
    for (uint32_t t = 0; t < cs->num_tokens + 8; t++) { out[t] = -7; }
    printf("(an error message about max_out is expected next)\n");
    fflush(stdout);
    int n = bpe_encode(enc, cs->text, cs->text_len, out, max_out);
    fflush(stderr);
    int untouched = 1;
    for (uint32_t t = max_out; t < cs->num_tokens + 8; t++) { untouched &= out[t] == -7; }
    check(n == -1 && untouched, "max_out one too small: returns -1 and writes nothing past max_out",
          "returned %d, wrote past the end: %s", n, untouched ? "no" : "yes");
    n = bpe_encode(enc, cs->text, cs->text_len, out, (int)cs->num_tokens);
    check(n == (int)cs->num_tokens, "max_out exactly the number of tokens: succeeds", "returned %d", n);
    n = bpe_encode(enc, "", 0, out, 0);
    check(n == 0, "empty text with max_out = 0: 0 tokens", "returned %d", n);
    free(out);
}

// informational: tokens/s on the longest case, best of several runs
static void time_encoder(const BPEEncoder *enc, const Cases *c) {
    const Case *cs = &c->cases[0];
    for (uint32_t k = 1; k < c->num_cases; k++) {
        if (c->cases[k].text_len > cs->text_len) { cs = &c->cases[k]; }
    }
    int *out = (int *)mallocCheck((cs->text_len + 1) * sizeof(int));
    double best = 1e30, total = 0;
    int n = 0, runs = 0;
    while (runs < 3 || (total < 1.0 && runs < 50)) {
        double t0 = now_seconds();
        n = bpe_encode(enc, cs->text, cs->text_len, out, (int)cs->text_len + 1);
        double dt = now_seconds() - t0;
        if (dt < best) { best = dt; }
        total += dt;
        runs++;
    }
    printf("INFO: encoder speed on \"%s\": %u bytes -> %d tokens in %.1f ms (best of %d): "
           "%.2f M tokens/s, %.1f MB/s\n", cs->name, cs->text_len, n, best * 1e3, runs,
           n / best / 1e6, cs->text_len / best / 1e6);
    free(out);
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s TOKENIZER_FILE CASES_FILE\n"
                "---> HINT: bash tests/test_bpe.sh writes both and runs this\n", argv[0]);
        return EXIT_FAILURE;
    }
    Tokenizer tok;
    tokenizer_init(&tok, argv[1]);
    if (!tok.init_ok) { return EXIT_FAILURE; } // tokenizer_init printed why
    Cases cases;
    cases_load(&cases, argv[2]);

    double t0 = now_seconds();
    BPEEncoder enc;
    bpe_init(&enc, &tok);
    printf("INFO: bpe_init: %u tokens, %u hash slots, longest token %d bytes, %.1f ms\n",
           tok.vocab_size, enc.num_slots, enc.max_token_length, (now_seconds() - t0) * 1e3);

    test_hash_table(&enc, &tok);
    test_utf8_and_classes(&cases);
    test_cases(&enc, &cases);
    test_round_trip(&enc, &cases);
    test_max_out(&enc, &cases);
    time_encoder(&enc, &cases);

    bpe_free(&enc);
    cases_free(&cases);
    tokenizer_free(&tok);
    printf("(test_bpe: %d checks passed, %d checks failed)\n", num_passed, num_failed);
    return num_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
