#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static int log_level = WEIR_LOG_INFO;
static int echo_errors;
/* A reload's errors, for the status file; bounded, the log keeps them all. */
#define CAPTURE_MAX 16384
static struct {
    int on;
    size_t len;
    char text[CAPTURE_MAX];
} capture;

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error"};

int log_open(const char *path, int level)
{
    int fd = 2;
    if (path && strcmp(path, "stderr") != 0) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
    }
    if (log_fd > 2)
        close(log_fd);
    log_fd = fd;
    log_level = level;
    return 0;
}

int log_current_fd(void)
{
    return log_fd;
}

void log_adopt(int fd)
{
    /* the old error log is a local file: its close does not wait on I/O */
    if (log_fd > 2)
        close(log_fd);
    log_fd = fd;
}

void log_set_level(int level)
{
    log_level = level;
}

void log_echo_errors(int on)
{
    echo_errors = on;
}

void log_capture_begin(void)
{
    capture.on = 1;
    capture.len = 0;
    capture.text[0] = '\0';
}

const char *log_capture_end(void)
{
    capture.on = 0;
    return capture.text;
}

static void capture_line(const char *msg, size_t len)
{
    if (capture.len + len + 2 > CAPTURE_MAX)
        return;
    memcpy(capture.text + capture.len, msg, len);
    capture.len += len;
    capture.text[capture.len++] = '\n';
    capture.text[capture.len] = '\0';
}

int log_level_enabled(weir_log_level_t level)
{
    return (int)level >= log_level;
}

size_t log_escape(const char *s, size_t n, char *out, size_t cap, unsigned flags,
                  size_t *outlen)
{
    static const char hex[] = "0123456789abcdef";
    int quoted = (flags & LOG_ESC_QUOTED) != 0;
    size_t i = 0, o = 0;

    for (; cap && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[4];
        size_t k = 0;
        if (c < 0x20 || c == 0x7f || (quoted && c >= 0x80)) {
            esc[k++] = '\\';
            if (c == '\n' || c == '\t' || c == '\r') {
                esc[k++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
            } else {
                esc[k++] = 'x';
                esc[k++] = hex[c >> 4];
                esc[k++] = hex[c & 15];
            }
        } else if (quoted && (c == '"' || c == '\\')) {
            esc[k++] = '\\';
            esc[k++] = (char)c;
        } else {
            esc[k++] = (char)c;
        }
        if (o + k >= cap)
            break;
        memcpy(out + o, esc, k);
        o += k;
    }
    if (cap)
        out[o] = '\0';
    if (outlen)
        *outlen = o;
    return i;
}

void log_vmsg_ctx(const char *who, weir_log_level_t level, const char *ctx, const char *fmt,
                  va_list ap)
{
    if ((int)level < log_level)
        return;
    int saved = errno;
    char line[2048];
    size_t ctx_len = ctx ? strlen(ctx) : 0;
    if (ctx_len > sizeof(line) / 2)
        ctx_len = sizeof(line) / 2;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    size_t n = strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S", &tm);
    int k = snprintf(line + n, sizeof(line) - n, " [%s] %d %s: ", level_names[level],
                     (int)getpid(), who ? who : "weir");
    if (k > 0 && (size_t)k < sizeof(line) - n)
        n += (size_t)k;
    size_t text = n;
    /* room for the context and the newline stays free */
    size_t room = sizeof(line) - n - ctx_len - 1;
    k = vsnprintf(line + n, room, fmt, ap);
    if (k > 0)
        n += (size_t)k < room ? (size_t)k : room - 1;
    if (ctx_len)
        memcpy(line + n, ctx, ctx_len);
    n += ctx_len;
    if (capture.on && level >= WEIR_LOG_ERROR)
        capture_line(line + text, n - text);
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, n);
    if (echo_errors && level >= WEIR_LOG_ERROR && log_fd != 2)
        w = write(2, line, n);
    (void)w;
    errno = saved;
}

void log_vmsg(const char *who, weir_log_level_t level, const char *fmt, va_list ap)
{
    log_vmsg_ctx(who, level, NULL, fmt, ap);
}

void log_msg(weir_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(NULL, level, fmt, ap);
    va_end(ap);
}

void weir_log(const weir_module_t *m, weir_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(m ? m->name : NULL, level, fmt, ap);
    va_end(ap);
}
