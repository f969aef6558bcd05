#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "logfile.h"
#include "loop.h"

/* Descriptors per message (SCM_MAX_FD is 253); more go in further messages. */
#define CTL_MAX_FDS 64
#define CTL_ERROR_LOG UINT32_MAX /* index of the error log; others index cf->logfiles */

typedef struct ctl_msg {
    uint32_t n;
    uint32_t index[CTL_MAX_FDS];
} ctl_msg_t;

int ctl_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    int fl = fcntl(sv[0], F_GETFL);
    if (fl < 0 || fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) < 0) {
        close(sv[0]);
        close(sv[1]);
        sv[0] = sv[1] = -1;
        return -1;
    }
    return 0;
}

static int send_batch(int fd, const ctl_msg_t *msg, const int *fds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
        struct cmsghdr align;
    } ctrl;
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = sizeof(*msg)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (msg->n) {
        memset(&ctrl, 0, sizeof(ctrl));
        mh.msg_control = ctrl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * msg->n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * msg->n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * msg->n);
    }
    return sendmsg(fd, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

void ctl_send_logs(int fd, const weir_conf_t *cf)
{
    ctl_msg_t msg = {0};
    int fds[CTL_MAX_FDS];
    int lfd = log_current_fd();
    if (lfd > 2) {
        msg.index[msg.n] = CTL_ERROR_LOG;
        fds[msg.n++] = lfd;
    }
    for (size_t i = 0, n = logfiles_count(cf); i <= n; i++) {
        int f = i < n ? logfiles_fd(cf, i) : -1;
        if (f >= 0) {
            msg.index[msg.n] = (uint32_t)i;
            fds[msg.n++] = f;
        }
        if ((msg.n == CTL_MAX_FDS || i == n) && msg.n) {
            if (send_batch(fd, &msg, fds) < 0) {
                log_error("reopen: cannot pass the log files to a worker: %s", strerror(errno));
                return;
            }
            msg.n = 0;
        }
    }
}

/* ------------------------------------------------------------ worker side */

static struct {
    loop_op_t op;
    int fd;
    const weir_conf_t *cf;
    ctl_msg_t msg;
    struct iovec iov;
    struct msghdr mh;
    union {
        char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
        struct cmsghdr align;
    } ctrl;
} w = {.fd = -1};

static void arm(void)
{
    w.iov = (struct iovec){.iov_base = &w.msg, .iov_len = sizeof(w.msg)};
    w.mh = (struct msghdr){.msg_iov = &w.iov, .msg_iovlen = 1, .msg_control = w.ctrl.buf,
                           .msg_controllen = sizeof(w.ctrl.buf)};
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_recvmsg(sqe, w.fd, &w.mh, MSG_CMSG_CLOEXEC);
    loop_prep_op(sqe, &w.op);
}

static void adopt(const int *fds, size_t nfds)
{
    size_t n = w.msg.n < nfds ? w.msg.n : nfds;
    for (size_t i = 0; i < n; i++) {
        if (w.msg.index[i] == CTL_ERROR_LOG)
            log_adopt(fds[i]);
        else if (logfiles_adopt(w.cf, w.msg.index[i], fds[i]) < 0)
            close(fds[i]);
    }
    for (size_t i = n; i < nfds; i++)
        close(fds[i]);
}

static void on_message(loop_op_t *op, int res, unsigned flags)
{
    (void)op;
    (void)flags;
    if (res == 0 || (res < 0 && res != -EINTR && res != -EAGAIN)) {
        if (res < 0)
            log_error("control channel from the master: %s", strerror(-res));
        close(w.fd); /* the master is gone (or the channel broke): nothing more comes */
        w.fd = -1;
        return;
    }
    if (res > 0) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&w.mh); c; c = CMSG_NXTHDR(&w.mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            int fds[CTL_MAX_FDS];
            size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            if (nfds > CTL_MAX_FDS)
                nfds = CTL_MAX_FDS;
            memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
            if ((size_t)res < sizeof(w.msg.n))
                w.msg.n = 0; /* no body: close what came */
            adopt(fds, nfds);
        }
        if (w.mh.msg_flags & MSG_CTRUNC)
            log_error("control channel from the master: descriptors lost (truncated)");
    }
    arm();
}

void ctl_worker_start(int fd, const weir_conf_t *cf)
{
    w.fd = fd;
    w.cf = cf;
    w.op.cb = on_message;
    arm();
}
