/*
 llmc/utils.h: checked wrappers around the C library calls the trainers use.

 Every wrapper reports the failing call, the file name where it has one, the
 source file and line, and exits non-zero. A user's mistake (a missing file, a
 short read) therefore never turns into a segfault or silent garbage.
*/
#ifndef LLMC_UTILS_H
#define LLMC_UTILS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <math.h>

// ----------------------------------------------------------------------------
// files

// 1 when path names a directory (fopen opens one for reading, and only the first fread fails)
static inline int is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static inline FILE *fopen_check(const char *path, const char *mode, const char *file, int line) {
    if (mode[0] == 'r' && is_directory(path)) {
        fprintf(stderr, "error: '%s' is a directory, not a file  [%s:%d]\n"
                "---> HINT: pass the path of a file\n", path, file, line);
        exit(EXIT_FAILURE);
    }
    FILE *fp = fopen(path, mode);
    if (fp == NULL) {
        fprintf(stderr, "error: cannot open '%s' (mode %s): %s  [%s:%d]\n",
                path, mode, strerror(errno), file, line);
        exit(EXIT_FAILURE);
    }
    return fp;
}
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)

// what = the file's name, so a short read says which file is truncated
static inline void fread_check(void *ptr, size_t size, size_t nmemb, FILE *stream, const char *what,
                               const char *file, int line) {
    size_t got = fread(ptr, size, nmemb, stream);
    if (got != nmemb) {
        fprintf(stderr, "error: '%s' is truncated or unreadable (wanted %zu items of %zu bytes, got %zu)"
                "  [%s:%d]\n", what, nmemb, size, got, file, line);
        exit(EXIT_FAILURE);
    }
}
#define freadCheck(ptr, size, nmemb, stream, what) fread_check(ptr, size, nmemb, stream, what, __FILE__, __LINE__)

static inline void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *stream, const char *what,
                                const char *file, int line) {
    if (fwrite(ptr, size, nmemb, stream) != nmemb) {
        fprintf(stderr, "error: cannot write '%s' (disk full?)  [%s:%d]\n", what, file, line);
        exit(EXIT_FAILURE);
    }
}
#define fwriteCheck(ptr, size, nmemb, stream, what) fwrite_check(ptr, size, nmemb, stream, what, __FILE__, __LINE__)

static inline void fclose_check(FILE *fp, const char *what, const char *file, int line) {
    if (fclose(fp) != 0) {
        fprintf(stderr, "error: cannot close '%s': %s  [%s:%d]\n", what, strerror(errno), file, line);
        exit(EXIT_FAILURE);
    }
}
#define fcloseCheck(fp, what) fclose_check(fp, what, __FILE__, __LINE__)

static inline void fseek_check(FILE *fp, long off, int whence, const char *what, const char *file, int line) {
    if (fseek(fp, off, whence) != 0) {
        fprintf(stderr, "error: cannot seek in '%s'  [%s:%d]\n", what, file, line);
        exit(EXIT_FAILURE);
    }
}
#define fseekCheck(fp, off, whence, what) fseek_check(fp, off, whence, what, __FILE__, __LINE__)

// size of an open file in bytes (restores the position)
static inline long file_size(FILE *fp, const char *what) {
    long here = ftell(fp);
    fseekCheck(fp, 0, SEEK_END, what);
    long size = ftell(fp);
    fseekCheck(fp, here, SEEK_SET, what);
    return size;
}

// ----------------------------------------------------------------------------
// checksums and finite values: what the loaders check before trusting a file's payload

// CRC-32 (IEEE 802.3: reflected polynomial 0xEDB88320, initial and final xor 0xFFFFFFFF), the
// checksum of zlib, gzip and Python's zlib.crc32, so a test can compute it in one line.
// "Slicing by 8": table s gives the CRC of a byte followed by s zero bytes, so 8 bytes take
// 8 look-ups and no dependency chain between them (1.1 GB/s on the 2-core dev VM).
typedef struct { uint32_t t[8][256]; } Crc32Tables;
static inline const Crc32Tables *crc32_tables(void) {
    static Crc32Tables tab;
    static int ready = 0;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) { c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1; }
            tab.t[0][i] = c;
        }
        for (int s = 1; s < 8; s++) {
            for (int i = 0; i < 256; i++) { tab.t[s][i] = (tab.t[s - 1][i] >> 8) ^ tab.t[0][tab.t[s - 1][i] & 0xffu]; }
        }
        ready = 1;
    }
    return &tab;
}

// the CRC-32 of (the bytes crc was computed over) followed by buf[0..n); crc32_update(0, b, n)
// is zlib.crc32(b). The 8-byte steps read little-endian words: the file formats are little-endian.
static inline uint32_t crc32_update(uint32_t crc, const void *buf, size_t n) {
    const uint32_t (*t)[256] = crc32_tables()->t;
    const uint8_t *p = (const uint8_t *)buf;
    crc = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = t[7][lo & 0xffu] ^ t[6][(lo >> 8) & 0xffu] ^ t[5][(lo >> 16) & 0xffu] ^ t[4][lo >> 24] ^
              t[3][hi & 0xffu] ^ t[2][(hi >> 8) & 0xffu] ^ t[1][(hi >> 16) & 0xffu] ^ t[0][hi >> 24];
    }
    for (; n > 0; p++, n--) { crc = t[0][(crc ^ *p) & 0xffu] ^ (crc >> 8); }
    return ~crc;
}

// index of the first NaN or inf in x[0..n), or n when all are finite. The first pass has no
// branch, so it vectorizes (|x| <= FLT_MAX is false for NaN and inf alike).
static inline size_t first_non_finite(const float *x, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) { bad |= !(fabsf(x[i]) <= 3.402823466e38f); }
    if (!bad) { return n; }
    for (size_t i = 0; i < n; i++) { if (!(fabsf(x[i]) <= 3.402823466e38f)) { return i; } }
    return n;
}

// ----------------------------------------------------------------------------
// memory

// The memory the system can still give without swapping (Linux: MemAvailable in /proc/meminfo),
// 0 where unknown. malloc alone cannot tell: Linux overcommits, so a too-big run gets its
// memory "allocated" and is then killed by the kernel when it first touches it.
static inline size_t memory_available_bytes(void) {
    FILE *fp = fopen("/proc/meminfo", "r");
    if (fp == NULL) { return 0; }
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) { break; }
    }
    fclose(fp);
    return (size_t)kib * 1024;
}

static inline void *malloc_check(size_t size, const char *file, int line) {
    void *ptr = malloc(size);
    if (ptr == NULL && size > 0) {
        fprintf(stderr, "error: out of memory allocating %.1f MiB  [%s:%d]\n"
                "---> HINT: lower the batch size (-b) or sequence length (-t), or pick a smaller model (-e)\n",
                size / (1024.0 * 1024.0), file, line);
        exit(EXIT_FAILURE);
    }
    return ptr;
}
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

static inline void *calloc_check(size_t nmemb, size_t size, const char *file, int line) {
    void *ptr = calloc(nmemb, size);
    if (ptr == NULL && nmemb * size > 0) {
        fprintf(stderr, "error: out of memory allocating %.1f MiB  [%s:%d]\n"
                "---> HINT: lower the batch size (-b) or sequence length (-t), or pick a smaller model (-e)\n",
                nmemb * size / (1024.0 * 1024.0), file, line);
        exit(EXIT_FAILURE);
    }
    return ptr;
}
#define callocCheck(nmemb, size) calloc_check(nmemb, size, __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// directories

// make sure dir exists and is writable, creating it if needed; exit with a hint otherwise
static inline void ensure_writable_dir(const char *dir, const char *flag) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0755) != 0) {
            fprintf(stderr, "error: %s '%s': cannot create directory: %s\n"
                    "---> HINT: pick a directory you can write to\n", flag, dir, strerror(errno));
            exit(EXIT_FAILURE);
        }
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "error: %s '%s' exists and is not a directory\n", flag, dir);
        exit(EXIT_FAILURE);
    }
    // probe by creating a file: access() lies for root on read-only mounts
    char probe[4096];
    snprintf(probe, sizeof(probe), "%s/.write_probe", dir);
    FILE *fp = fopen(probe, "wb");
    if (fp == NULL) {
        fprintf(stderr, "error: %s '%s' is not writable: %s\n"
                "---> HINT: pick a directory you can write to\n", flag, dir, strerror(errno));
        exit(EXIT_FAILURE);
    }
    fclose(fp);
    remove(probe);
}

// atomically replace `path` by `tmp_path` (both in one directory): a killed run
// leaves either the old file or the new one, never half of one
static inline void rename_check(const char *tmp_path, const char *path) {
    if (rename(tmp_path, path) != 0) {
        fprintf(stderr, "error: cannot rename '%s' to '%s': %s\n", tmp_path, path, strerror(errno));
        exit(EXIT_FAILURE);
    }
}

// ----------------------------------------------------------------------------
// timing, for progress lines and benchmarks

// seconds on a monotonic clock
static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// median of n values (sorts them in place)
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif // LLMC_UTILS_H
