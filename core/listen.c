#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

typedef struct lsock {
    struct lsock *next;
    sockaddr_any_t addr;
    int fd;
    unsigned refs; /* generations holding it; 0 = inherited, unclaimed */
} lsock_t;

static lsock_t *socks;

static int same_address(const sockaddr_any_t *a, const sockaddr_any_t *b)
{
    const struct sockaddr *sa = (const void *)&a->ss, *sb = (const void *)&b->ss;
    if (sa->sa_family != sb->sa_family)
        return 0;
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *x = (const void *)sa, *y = (const void *)sb;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *x = (const void *)sa, *y = (const void *)sb;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    case AF_UNIX: {
        /* the path, or the abstract name with its length */
        size_t off = offsetof(struct sockaddr_un, sun_path);
        const struct sockaddr_un *x = (const void *)sa, *y = (const void *)sb;
        if (x->sun_path[0] || y->sun_path[0])
            return strncmp(x->sun_path, y->sun_path, sizeof(x->sun_path)) == 0;
        return a->len == b->len && memcmp(x->sun_path, y->sun_path, a->len - off) == 0;
    }
    default:
        return 0;
    }
}

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

static lsock_t *find(const sockaddr_any_t *addr)
{
    for (lsock_t *s = socks; s; s = s->next)
        if (same_address(&s->addr, addr))
            return s;
    return NULL;
}

static void drop(lsock_t *s)
{
    for (lsock_t **pp = &socks; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            close(s->fd);
            free(s);
            return;
        }
    }
}

static lsock_t *hold(const weir_listener_t *l)
{
    lsock_t *s = find(&l->addr);
    if (s) {
        /* the backlog may have changed; listen() on a listening socket only
         * resizes its queue */
        listen(s->fd, l->backlog);
        s->refs++;
        return s;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fd = open_one(l);
    if (s->fd < 0) {
        int e = errno;
        free(s);
        errno = e;
        return NULL;
    }
    s->addr = l->addr;
    s->refs = 1;
    s->next = socks;
    socks = s;
    return s;
}

static void unhold(int fd)
{
    for (lsock_t *s = socks; s; s = s->next) {
        if (s->fd == fd) {
            if (--s->refs == 0)
                drop(s);
            return;
        }
    }
}

int listen_acquire(const weir_conf_t *cf, int *fds)
{
    for (size_t i = 0; i < cf->nlisteners; i++) {
        lsock_t *s = hold(&cf->listeners[i]);
        if (s) {
            fds[i] = s->fd;
            continue;
        }
        log_error("cannot listen on %s (listener %s): %s", cf->listeners[i].address,
                  cf->listeners[i].name, errno ? strerror(errno) : "out of memory");
        while (i-- > 0)
            unhold(fds[i]);
        return -1;
    }
    return 0;
}

void listen_release(const weir_conf_t *cf, const int *fds)
{
    for (size_t i = 0; i < cf->nlisteners; i++)
        unhold(fds[i]);
}

int listen_inherit(void)
{
    const char *v = getenv(LISTEN_INHERIT_ENV);
    if (!v)
        return 0;
    char *copy = strdup(v);
    unsetenv(LISTEN_INHERIT_ENV);
    if (!copy)
        return -1;
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ";", &save); tok;
         tok = strtok_r(NULL, ";", &save)) {
        char *end;
        long fd = strtol(tok, &end, 10);
        if (*end != '\0' || fd <= 2 || fd > 65535) {
            log_error("%s: '%s' is not a socket descriptor; ignoring the inherited sockets",
                      LISTEN_INHERIT_ENV, tok);
            free(copy);
            listen_close_unclaimed();
            return -1;
        }
        lsock_t *s = calloc(1, sizeof(*s));
        if (!s)
            break;
        s->fd = (int)fd;
        s->addr.len = sizeof(s->addr.ss);
        if (getsockname(s->fd, (struct sockaddr *)&s->addr.ss, &s->addr.len) < 0) {
            log_warn("inherited descriptor %ld: %s; ignored", fd, strerror(errno));
            free(s);
            continue;
        }
        fcntl(s->fd, F_SETFD, FD_CLOEXEC);
        s->next = socks;
        socks = s;
        n++;
    }
    free(copy);
    return n;
}

void listen_close_unclaimed(void)
{
    lsock_t *next;
    for (lsock_t *s = socks; s; s = next) {
        next = s->next;
        if (s->refs == 0)
            drop(s);
    }
}

void listen_close_others(const int *keep, size_t nkeep)
{
    for (lsock_t *s = socks; s; s = s->next) {
        size_t i = 0;
        while (i < nkeep && keep[i] != s->fd)
            i++;
        if (i == nkeep)
            close(s->fd);
    }
}

int listen_export(char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (lsock_t *s = socks; s; s = s->next) {
        int n = snprintf(buf + off, len - off, "%s%d", off ? ";" : "", s->fd);
        if (n < 0 || (size_t)n >= len - off)
            return -1;
        off += (size_t)n;
        fcntl(s->fd, F_SETFD, 0);
    }
    return 0;
}
