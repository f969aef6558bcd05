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
/* As log_vmsg, with `ctx` (NULL for none) after the message: the request
 * context reqlog.c writes. The message is cut short before the context is,
 * so a long message cannot push the client and request off the line. */
void log_vmsg_ctx(const char *who, weir_log_level_t level, const char *ctx, const char *fmt,
                  va_list ap);

/* Copies s[0..n) to out (cap bytes, NUL-terminated) with control characters
 * written as "\n", "\t", "\r" or "\xHH", so a message stays one line.
 * LOG_ESC_QUOTED also writes a double quote and a backslash as \" and \\,
 * and bytes from 0x80 as "\xHH" (a quoted string in a log line, whose bytes need not be
 * UTF-8). An escape that does not fit is left out with all after it.
 * Returns the bytes of s copied; *outlen (if not NULL) gets the length
 * written. */
#define LOG_ESC_QUOTED 1u
size_t log_escape(const char *s, size_t n, char *out, size_t cap, unsigned flags,
                  size_t *outlen);

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
