/*
 * The log file service's duties beyond the public API (weir_logfile_*):
 * reopen in the master and hand the new descriptors to the workers (ctl.c),
 * write what is buffered before a worker exits.
 */
#ifndef WEIR_LOGFILE_H
#define WEIR_LOGFILE_H

#include "conf.h"

/* Master: opens every log file of cf anew by name (log rotation); a file
 * that cannot be opened keeps its old descriptor, after an error line. */
void logfiles_reopen(weir_conf_t *cf);
/* The files of cf by position (the same in master and workers, which have
 * the generation from the same fork): how many, and the descriptor of
 * file i, or -1 for stdout/stderr, which are never reopened. */
size_t logfiles_count(const weir_conf_t *cf);
int logfiles_fd(const weir_conf_t *cf, size_t i);
/* Worker: file i writes to fd from now on; the old descriptor is closed
 * once no write uses it. 0, or -1 (no such file: fd is the caller's). */
int logfiles_adopt(const weir_conf_t *cf, size_t i, int fd);
void logfiles_flush_at_exit(const weir_conf_t *cf);

#endif
