/*
 * Error log. Lines are "2026/11/21 20:02:11 [warn] 1234 module: message".
 * Writes go straight to the fd with write(2): the error log is rare by design
 * (errors, state changes), and a pipe or regular file write of one short
 * line does not block in practice; the access log (module accesslog) is the
 * high-volume log and goes through the event loop.
 */
#ifndef WEIR_LOG_H
#define WEIR_LOG_H

#include <stdarg.h>

#include "weir/module.h"

/* fd 2 and level info until configured. Returns -1 if path cannot be opened;
 * the log in use is then kept. */
int log_open(const char *path, int level);
void log_set_level(int level);
/* The error log's descriptor (2 for stderr), for the master to pass on. */
int log_current_fd(void);
/* A worker takes the descriptor of the reopened error log (ctl.c); the old
 * one is closed. */
void log_adopt(int fd);
void log_msg(weir_log_level_t level, const char *fmt, ...) WEIR_PRINTF(2, 3);
void log_vmsg(const char *who, weir_log_level_t level, const char *fmt, va_list ap);

#define log_debug(...) log_msg(WEIR_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(WEIR_LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(WEIR_LOG_NOTICE, __VA_ARGS__)
#define log_warn(...) log_msg(WEIR_LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(WEIR_LOG_ERROR, __VA_ARGS__)

int log_level_enabled(weir_log_level_t level);

/* While on, errors also go to stderr when the log is a file: start-up
 * failures (a port in use, a pid file that cannot be written) reach whoever
 * ran weir, even with error_log in a file and before -d detaches. */
void log_echo_errors(int on);

/* Collects the text of every error logged from log_capture_begin on (one
 * line each, without the time and level prefix) until log_capture_end,
 * which returns it ("" for none; valid until the next begin). The master
 * hands a reload's errors to `weir -s reload` this way. */
void log_capture_begin(void);
const char *log_capture_end(void);

#endif
