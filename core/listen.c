#include "listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static int open_one(const weir_listener_t *l)
{
    const struct sockaddr *sa = (const struct sockaddr *)&l->addr.ss;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (sa->sa_family == AF_UNIX) {
        /* a stale socket file from a previous run would make bind fail */
        const struct sockaddr_un *un = (const void *)sa;
        struct stat st;
        if (un->sun_path[0] && stat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(un->sun_path);
    } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (sa->sa_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        /* accept only once the request bytes are there: fewer wakeups */
        int secs = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs));
    }
    if (bind(fd, sa, l->addr.len) < 0 || listen(fd, l->backlog) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int listen_open_all(const weir_conf_t *cf, int *fds)
{
    for (size_t i = 0; i < cf->nlisteners; i++)
        fds[i] = -1;
    for (size_t i = 0; i < cf->nlisteners; i++) {
        fds[i] = open_one(&cf->listeners[i]);
        if (fds[i] < 0) {
            log_error("cannot listen on %s (listener %s): %s", cf->listeners[i].address,
                      cf->listeners[i].name, strerror(errno));
            listen_close_all(cf, fds);
            return -1;
        }
    }
    return 0;
}

void listen_close_all(const weir_conf_t *cf, int *fds)
{
    for (size_t i = 0; i < cf->nlisteners; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}
