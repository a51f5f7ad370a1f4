/*
 llmc/logger.h: the run's log file, main.log in the output directory, one
 line per event in a form dev/plot_loss.py reads:
   s:<step> trl:<train loss> lr:<lr> norm:<grad norm>
   s:<step> tel:<val loss>
   s:<step> trit:<layer>.<matrix> zero:<frac> flip:<frac> scale:<gamma>
 Opened in append mode when resuming, so one file covers the whole run.
*/
#ifndef LLMC_LOGGER_H
#define LLMC_LOGGER_H

#include <stdio.h>
#include "utils.h" // defines: fopenCheck

typedef struct {
    FILE *fp; // NULL when there is no output directory
} Logger;

static inline void logger_init(Logger *logger, const char *out_dir, int resuming) {
    logger->fp = NULL;
    if (out_dir == NULL || out_dir[0] == '\0') { return; }
    char path[4096];
    snprintf(path, sizeof(path), "%s/main.log", out_dir);
    logger->fp = fopenCheck(path, resuming ? "a" : "w");
}

static inline void logger_log_train(Logger *logger, int step, float loss, float lr, float norm) {
    if (logger->fp == NULL) { return; }
    fprintf(logger->fp, "s:%d trl:%.6f lr:%.6e norm:%.4f\n", step, loss, lr, norm);
    fflush(logger->fp);
}

static inline void logger_log_val(Logger *logger, int step, float val_loss) {
    if (logger->fp == NULL) { return; }
    fprintf(logger->fp, "s:%d tel:%.6f\n", step, val_loss);
    fflush(logger->fp);
}

static inline void logger_log_trit(Logger *logger, int step, int layer, const char *matrix, float zero,
                                   float flip, float scale) {
    if (logger->fp == NULL) { return; }
    fprintf(logger->fp, "s:%d trit:%d.%s zero:%.4f flip:%.6f scale:%.6e\n", step, layer, matrix, zero, flip, scale);
    fflush(logger->fp);
}

static inline void logger_free(Logger *logger) {
    if (logger->fp != NULL) { fclose(logger->fp); }
}

#endif // LLMC_LOGGER_H
