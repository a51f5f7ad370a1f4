/*
 llmc/logger.h: the run's log file, main.log in the output directory, one
 line per event in a form dev/plot_loss.py reads:
   s:<step> trl:<train loss> lr:<lr> norm:<grad norm>
   s:<step> tel:<val loss>
   s:<step> trit:<layer>.<matrix> zero:<frac> flip:<frac> scale:<gamma>
 flip is -1 at the first report of a run (nothing to compare with), and nan at
 the first report after a resume when it is unknown (llmc/trit_stats.h).

 Resuming (-y 1) keeps one true record: the file is cut at the step of the
 checkpoint the run resumes from (the newest complete one in the directory).
 Everything the interrupted run logged up to that step was written before the
 checkpoint was, so it stays; what it logged after (steps the resumed run does
 again, and a half-written last line) goes. The resumed run appends from there
 and does not log again the val and trit lines of that step that were kept.
*/
#ifndef LLMC_LOGGER_H
#define LLMC_LOGGER_H

#include <stdio.h>
#include <string.h>
#include "utils.h"      // defines: fopenCheck, freadCheck, mallocCheck, file_size
#include "checkpoint.h" // defines: checkpoint_find_latest, SafeFile, safe_open, safe_close

typedef struct {
    FILE *fp;        // NULL when there is no output directory
    int resume_step; // the step this run resumed at, -1 for a fresh run
    int kept_val;    // main.log kept the interrupted run's val line of resume_step
    int kept_trit;   // and its trit lines of resume_step
    int kept_eval;   // and its HellaSwag line
} Logger;

// Cut path (a main.log) after the lines of step `step`; sets the kept_* flags
static inline void logger_cut(Logger *logger, const char *path, int step) {
    FILE *in = fopen(path, "rb");
    if (in == NULL) { return; } // no log yet: nothing to cut
    long size = file_size(in, path);
    char *text = (char *)mallocCheck((size_t)size + 1);
    freadCheck(text, 1, (size_t)size, in, path);
    fclose(in);
    text[size] = '\0';
    SafeFile out;
    safe_open(&out, path);
    int kept = 0, dropped = 0;
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl == NULL) { dropped++; break; } // a last line without its newline: the run died writing it
        *nl = '\0';
        int s;
        if (sscanf(line, "s:%d", &s) == 1 && s <= step) {
            fprintf(out.fp, "%s\n", line);
            kept++;
            if (s == step && strstr(line, " tel:") != NULL) { logger->kept_val = 1; }
            if (s == step && strstr(line, " trit:") != NULL) { logger->kept_trit = 1; }
            if (s == step && strstr(line, " eval:") != NULL) { logger->kept_eval = 1; }
        } else {
            dropped++;
        }
        line = nl + 1;
    }
    safe_close(&out);
    free(text);
    printf("%s: cut at step %d, the resumed checkpoint: %d lines kept, %d dropped\n", path, step, kept, dropped);
}

// resuming: 1 when the run resumes from the newest complete checkpoint in out_dir
static inline void logger_init(Logger *logger, const char *out_dir, int resuming) {
    memset(logger, 0, sizeof(*logger));
    logger->resume_step = -1;
    if (out_dir == NULL || out_dir[0] == '\0') { return; }
    char path[4096];
    snprintf(path, sizeof(path), "%s/main.log", out_dir);
    if (resuming) {
        logger->resume_step = checkpoint_find_latest(out_dir);
        logger_cut(logger, path, logger->resume_step);
    }
    logger->fp = fopenCheck(path, resuming ? "a" : "w");
}

static inline void logger_log_train(Logger *logger, int step, float loss, float lr, float norm) {
    if (logger->fp == NULL) { return; }
    fprintf(logger->fp, "s:%d trl:%.6f lr:%.6e norm:%.4f\n", step, loss, lr, norm);
    fflush(logger->fp);
}

static inline void logger_log_val(Logger *logger, int step, float val_loss) {
    if (logger->fp == NULL || (step == logger->resume_step && logger->kept_val)) { return; }
    fprintf(logger->fp, "s:%d tel:%.6f\n", step, val_loss);
    fflush(logger->fp);
}

// HellaSwag acc_norm, in llm.c's key (dev/plot_loss.py reads it)
static inline void logger_log_eval(Logger *logger, int step, float acc) {
    if (logger->fp == NULL || (step == logger->resume_step && logger->kept_eval)) { return; }
    fprintf(logger->fp, "s:%d eval:%.4f\n", step, acc);
    fflush(logger->fp);
}

// flip: a fraction, -1 at a run's first report, NaN when unknown (written "nan")
static inline void logger_log_trit(Logger *logger, int step, int layer, const char *matrix, float zero,
                                   float flip, float scale) {
    if (logger->fp == NULL || (step == logger->resume_step && logger->kept_trit)) { return; }
    if (flip != flip) {
        fprintf(logger->fp, "s:%d trit:%d.%s zero:%.4f flip:nan scale:%.6e\n", step, layer, matrix, zero, scale);
    } else {
        fprintf(logger->fp, "s:%d trit:%d.%s zero:%.4f flip:%.6f scale:%.6e\n", step, layer, matrix, zero, flip,
                scale);
    }
    fflush(logger->fp);
}

static inline void logger_free(Logger *logger) {
    if (logger->fp != NULL) { fclose(logger->fp); }
}

#endif // LLMC_LOGGER_H
