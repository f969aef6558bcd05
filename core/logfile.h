/*
 * Worker-side duties of the log file service (weir_logfile_* in the public
 * API): reopen on SIGUSR1, write what is buffered before the worker exits.
 */
#ifndef WEIR_LOGFILE_H
#define WEIR_LOGFILE_H

#include "conf.h"

void logfiles_reopen(const weir_conf_t *cf);
void logfiles_flush_at_exit(const weir_conf_t *cf);

#endif
