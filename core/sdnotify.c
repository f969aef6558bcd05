#include "sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

int sdnotify_address(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 2 || (name[0] != '/' && name[0] != '@') || n >= sizeof(sa->sun_path))
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@') {
        /* abstract: a leading NUL, and the length counts the name, no terminator */
        sa->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

int sdnotify_send(const char *msg)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name)
        return 0;
    struct sockaddr_un sa;
    socklen_t len;
    if (sdnotify_address(name, &sa, &len) < 0) {
        log_warn("NOTIFY_SOCKET=%s is not a socket path or @abstract name; systemd is not "
                 "told about this process's state",
                 name);
        return -1;
    }
    /* a socket per message: messages are rare, and no fd stays open for the
     * workers to inherit */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    size_t n = strlen(msg);
    ssize_t sent = -1;
    if (fd >= 0) {
        do
            sent = sendto(fd, msg, n, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
        while (sent < 0 && errno == EINTR);
    }
    int err = errno;
    if (fd >= 0)
        close(fd);
    if (sent != (ssize_t)n) {
        log_warn("sd_notify to %s: %s; systemd is not told about this process's state", name,
                 sent < 0 ? strerror(err) : "short write");
        return -1;
    }
    return 1;
}

int sdnotify_sendf(const char *fmt, ...)
{
    if (!getenv("NOTIFY_SOCKET"))
        return 0;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sdnotify_send(msg);
}

void sdnotify_ready(const char *status)
{
    sdnotify_sendf("READY=1\nMAINPID=%d\nSTATUS=%s", (int)getpid(), status);
}

/* systemd >= 253 wants the reload's start time with RELOADING=1, to tell
 * this reload's READY=1 from an earlier one's; older versions ignore it. */
void sdnotify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sdnotify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
                   (unsigned long long)ts.tv_sec * 1000000ull +
                       (unsigned long long)ts.tv_nsec / 1000ull);
}

void sdnotify_stopping(void)
{
    sdnotify_send("STOPPING=1\nSTATUS=stopping");
}

void sdnotify_new_main(pid_t pid)
{
    sdnotify_sendf("MAINPID=%d\nSTATUS=binary upgrade: pid %d is the master now", (int)pid,
                   (int)pid);
}
