#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "accept.h"
#include "conn.h"
#include "ctl.h"
#include "proxy.h"
#include "log.h"
#include "logfile.h"
#include "loop.h"
#include "request.h"
#include "workstate.h"

#define RING_ENTRIES 4096
/* The buffer ring is FIFO, so a long transfer cycles through (and touches)
 * every buffer: the pool size is the worker's fixed receive memory, 2 MiB.
 * Buffers are held only between a receive and the send that forwards it, so
 * this serves 64 connections streaming in both directions at once; beyond
 * that, receives wait for a buffer (loop_wait_buffers) instead of failing. */
#define RECV_BUFFERS 128
#define RECV_BUFFER_SIZE 16384

/* How long a draining worker keeps idle keepalive connections open for the
 * request their client may be sending (see h1_server_drain); at most
 * shutdown_timeout. */
#define DRAIN_IDLE_GRACE_MS 1000
/* How often a worker looks for connections left waiting (see accept_watch). */
#define ACCEPT_WATCH_MS 100
/* Descriptors kept free beyond two per client connection (its own and its
 * upstream's) and one health probe per server: log file reopens, module
 * connections, the close of a connection still in flight. */
#define FD_RESERVE 32
/* After an EMFILE/ENFILE from accept, how long before trying again. */
#define ACCEPT_RETRY_MS 100

typedef struct acceptor {
    loop_op_t op;
    int fd;
    const weir_listener_t *listener;
    int armed;
    int rearm;        /* cancelled to be armed anew (the watch, or single-shot near
                         the limit) when the cancel completes */
    int suspect;      /* the last watch tick saw a connection waiting */
    int multishot;    /* the armed accept is multishot */
    unsigned accepted; /* connections since the last watch tick */
} acceptor_t;

static struct {
    const worker_info_t *info;
    struct loop loop;
    acceptor_t *acceptors;
    size_t nacceptors;
    unsigned long conns;
    unsigned long max_conns; /* max_connections, lowered to what the fd limit allows */
    unsigned long fd_room;   /* descriptors for client and upstream connections */
    unsigned long accept_burst; /* connections one multishot accept may take at once */
    int draining;
    int paused; /* accept paused by max_connections or fd exhaustion */
    uint64_t episode_start; /* first pause of this episode (loop ms), 0 if none */
    uint64_t resumed_at;    /* last resume (loop ms) */
    unsigned long episode_pauses;
    struct timer drain_timer, resume_timer, watch_timer;
    loop_op_t sig_op;
    int sig_fd;
    struct signalfd_siginfo siginfo;
} w;

/*
 * A multishot accept takes every connection queued on the socket before its
 * cancel can land, up to the listen backlog, so it is used only while that
 * many more connections fit under max_conns. Nearer the limit each accept
 * takes one connection, and the count never passes the limit.
 */
static int multishot_fits(void)
{
    return w.max_conns > w.conns && w.max_conns - w.conns > w.accept_burst;
}

static void arm_accept(acceptor_t *a)
{
    if (a->armed || w.draining)
        return;
    struct io_uring_sqe *sqe = loop_sqe(&w.loop);
    a->multishot = multishot_fits();
    if (a->multishot)
        io_uring_prep_multishot_accept(sqe, a->fd, NULL, NULL, SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, a->fd, NULL, NULL, SOCK_CLOEXEC);
    loop_prep_op(sqe, &a->op);
    a->armed = 1;
}

static void cancel_accept(acceptor_t *a)
{
    struct io_uring_sqe *sqe = loop_sqe(&w.loop);
    io_uring_prep_cancel(sqe, &a->op, 0);
    loop_prep_op(sqe, NULL);
}

static void cancel_accepts(void)
{
    for (size_t i = 0; i < w.nacceptors; i++)
        if (w.acceptors[i].armed)
            cancel_accept(&w.acceptors[i]);
}

/* An episode of accept pauses lasts from the first refusal (the connection
 * limit, or EMFILE) until accept has run for PAUSE_EPISODE_END_MS without
 * pausing again: one log line when it starts and one when it ends, however
 * often accept stops and resumes in between (at the limit, every close
 * lets one connection in and pauses again). */
#define PAUSE_EPISODE_END_MS 1000

static void pause_accepts(const char *why, const char *detail)
{
    if (w.paused)
        return;
    w.paused = 1;
    cancel_accepts();
    w.episode_pauses++;
    if (!w.episode_start) {
        w.episode_start = w.loop.now;
        log_warn("accept paused: %s%s (%lu connections open)", why, detail, w.conns);
    }
}

static void episode_check(void)
{
    if (!w.episode_start || w.paused || w.loop.now - w.resumed_at < PAUSE_EPISODE_END_MS)
        return;
    char d[WEIR_DURATION_LEN];
    log_info("accept runs again: %lu pauses in %s (%lu connections open)", w.episode_pauses,
             weir_duration_text(w.resumed_at - w.episode_start, d), w.conns);
    w.episode_start = 0;
    w.episode_pauses = 0;
}

static void resume_accepts(struct timer *t)
{
    (void)t;
    w.paused = 0;
    w.resumed_at = w.loop.now;
    for (size_t i = 0; i < w.nacceptors; i++)
        arm_accept(&w.acceptors[i]);
}

/* A draining worker exits when its last connection is gone and every
 * accept has ended: a connection the kernel handed over while the cancel was
 * on its way is served too, never dropped with the process. */
static void maybe_stop(void)
{
    if (!w.draining || w.conns)
        return;
    for (size_t i = 0; i < w.nacceptors; i++)
        if (w.acceptors[i].armed)
            return;
    w.loop.stop = 1;
}

/*
 * A lost wakeup, and its cure. Workers of every generation wait on the same
 * listening socket, and the kernel wakes one exclusive waiter per incoming
 * connection. When the waiter it picks is an accept being cancelled (an old
 * generation that starts to drain, a worker that exits or pauses), the
 * wakeup is spent and nobody accepts: the connection stays queued until the
 * next one arrives, and a burst of reconnects after a reload could wait for
 * good. So every ACCEPT_WATCH_MS a worker that accepted nothing on a
 * listener asks (poll, timeout 0) whether a connection is waiting there.
 *
 * A waiting connection alone proves nothing: the ring's accept may already
 * have been woken for it, its completion queued as task work that runs at
 * the next ring entry (DEFER_TASKRUN). Re-arming then would cancel a healthy
 * accept, spend the wakeup in turn and log a false alarm. So a tick only
 * marks the listener suspect; if the next tick, after the loop has entered
 * the ring many times, still finds a connection waiting and none accepted,
 * the wakeup was lost and the accept is re-armed (arming tries an accept at
 * once). It is a safety net, logged at debug.
 */
static void accept_watch(struct timer *t)
{
    episode_check();
    for (size_t i = 0; i < w.nacceptors && !w.draining && !w.paused; i++) {
        acceptor_t *a = &w.acceptors[i];
        int waiting = 0;
        if (!a->accepted && a->armed && !a->rearm) {
            struct pollfd pfd = {.fd = a->fd, .events = POLLIN};
            waiting = poll(&pfd, 1, 0) == 1;
        }
        if (waiting && a->suspect) {
            log_debug("accept on %s: a connection is waiting unseen; re-arming",
                      a->listener->address);
            cancel_accept(a);
            a->rearm = 1;
            waiting = 0;
        }
        a->suspect = waiting;
        a->accepted = 0;
    }
    if (!w.draining)
        timer_after(&w.loop, t, ACCEPT_WATCH_MS);
}

static void on_accept(loop_op_t *op, int res, unsigned flags)
{
    acceptor_t *a = (acceptor_t *)op;
    if (!(flags & IORING_CQE_F_MORE)) {
        a->armed = 0;
        a->rearm = 0;
    }
    if (res >= 0) {
        a->accepted++;
        if (accept_connection(res, a->listener, w.info->cf) == 0)
            worker_conn_opened();
    } else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
        /* out of descriptors or memory: stop accepting for a moment, as nginx
         * does; the connections already accepted go on being served */
        if (!w.paused) {
            char why[160];
            snprintf(why, sizeof(why), "accept on %s: %s", a->listener->address, strerror(-res));
            pause_accepts(why, "");
            timer_after(&w.loop, &w.resume_timer, ACCEPT_RETRY_MS);
        }
        maybe_stop();
        return;
    } else if (res != -ECANCELED && res != -EINTR && res != -ECONNABORTED) {
        log_error("accept on %s: %s", a->listener->address, strerror(-res));
    }
    if (!a->armed && !w.paused && !w.draining)
        arm_accept(a);
    maybe_stop();
}

void worker_conn_opened(void)
{
    w.conns++;
    workstate_set_conns(w.conns);
    if (w.conns >= w.max_conns && !w.paused) {
        pause_accepts("max_connections reached",
                      w.max_conns < w.info->cf->limits.max_connections
                          ? ", as lowered to fit the fd limit"
                          : "");
        return;
    }
    if (multishot_fits())
        return;
    /* near the limit: multishot accepts make way for single ones (re-armed
     * when the cancel completes) */
    for (size_t i = 0; i < w.nacceptors; i++) {
        acceptor_t *a = &w.acceptors[i];
        if (a->armed && a->multishot && !a->rearm) {
            cancel_accept(a);
            a->rearm = 1;
        }
    }
}


void worker_conn_closed(void)
{
    w.conns--;
    workstate_set_conns(w.conns);
    if (w.paused && w.conns < w.max_conns && !w.resume_timer.deadline)
        resume_accepts(NULL);
    maybe_stop();
}

static unsigned long fds_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 64; /* no /proc: a generous guess */
    unsigned long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/*
 * Descriptors this worker has for client and upstream connections, and how
 * many clients it may hold so that each can still open its upstream
 * connection: at the fd limit accept pauses while every accepted connection
 * goes on being served, where running into EMFILE would turn them into 502s
 * (socket() failing) or leave connections queued. Each client may need two
 * descriptors; idle pooled upstream connections use the rest and give way
 * under pressure (proxy.c). What is open at start, one health probe per
 * server and FD_RESERVE come off first.
 */
static void fit_fd_limit(const weir_conf_t *cf)
{
    w.max_conns = cf->limits.max_connections;
    w.fd_room = (unsigned long)-1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    unsigned long fixed = fds_open() + FD_RESERVE;
    for (size_t i = 0; i < cf->nupstreams; i++)
        fixed += cf->upstreams[i].npeers;
    w.fd_room = rl.rlim_cur > fixed + 2 ? rl.rlim_cur - fixed : 2;
    workstate_set_fd_room(w.fd_room);
    if (w.fd_room / 2 >= w.max_conns)
        return;
    w.max_conns = w.fd_room / 2;
    log_notice("worker %u: the fd limit (%llu) allows %lu client connections with their "
               "upstream sockets, fewer than max_connections (%llu); raise the limit "
               "(ulimit -n, LimitNOFILE=) to serve more",
               w.info->index, (unsigned long long)rl.rlim_cur, w.max_conns,
               (unsigned long long)cf->limits.max_connections);
}


static void drain_deadline(struct timer *t)
{
    (void)t;
    log_notice("shutdown_timeout reached with %lu connections open; closing them", w.conns);
    w.loop.stop = 1;
}

static void start_drain(void)
{
    if (w.draining)
        return;
    w.draining = 1;
    workstate_set_draining();
    cancel_accepts();
    uint64_t grace = w.info->cf->limits.shutdown_timeout;
    accept_drain(grace < DRAIN_IDLE_GRACE_MS ? grace : DRAIN_IDLE_GRACE_MS);
    timer_after(&w.loop, &w.drain_timer, w.info->cf->limits.shutdown_timeout);
    maybe_stop();
}

static void arm_signals(void);

static void on_signal(loop_op_t *op, int res, unsigned flags)
{
    (void)op;
    (void)flags;
    if (res == (int)sizeof(w.siginfo)) {
        switch (w.siginfo.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            w.loop.stop = 1;
            return;
        case SIGQUIT:
            start_drain();
            break;
        default:
            break;
        }
    }
    arm_signals();
}

static void arm_signals(void)
{
    struct io_uring_sqe *sqe = loop_sqe(&w.loop);
    io_uring_prep_read(sqe, w.sig_fd, &w.siginfo, sizeof(w.siginfo), 0);
    loop_prep_op(sqe, &w.sig_op);
}

static int setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_SETMASK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    w.sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (w.sig_fd < 0)
        return -1;
    w.sig_op.cb = on_signal;
    arm_signals();
    return 0;
}

static int run_worker_hooks(const weir_conf_t *cf, int init)
{
    for (size_t i = 0; i < cf->nmodules; i++) {
        const weir_module_t *m = cf->modules[i].desc;
        if (init && m->worker_init && m->worker_init(cf) < 0) {
            log_error("module %s: worker_init failed", m->name);
            return -1;
        }
        if (!init && m->worker_exit)
            m->worker_exit(cf);
    }
    return 0;
}

int worker_start(const worker_info_t *info)
{
    const weir_conf_t *cf = info->cf;
    w.info = info;
    int ret = loop_init(&w.loop, RING_ENTRIES, RECV_BUFFERS, RECV_BUFFER_SIZE);
    if (ret) {
        log_error("worker %u: io_uring setup failed: %s", info->index, strerror(-ret));
        return -1;
    }
    timer_init(&w.drain_timer, drain_deadline);
    timer_init(&w.resume_timer, resume_accepts);
    timer_init(&w.watch_timer, accept_watch);
    if (setup_signals() < 0 || proxy_init(cf) < 0)
        return -1;
    if (info->ctl_fd > 0)
        ctl_worker_start(info->ctl_fd, cf);
    conn_on_client_closed = worker_conn_closed;
    if (run_worker_hooks(cf, 1) < 0)
        return -1;
    fit_fd_limit(cf);
    w.nacceptors = cf->nlisteners;
    for (size_t i = 0; i < cf->nlisteners; i++)
        w.accept_burst += (unsigned long)cf->listeners[i].backlog;
    w.acceptors = calloc(w.nacceptors + 1, sizeof(acceptor_t));
    if (!w.acceptors)
        return -1;
    for (size_t i = 0; i < w.nacceptors; i++) {
        w.acceptors[i].op.cb = on_accept;
        w.acceptors[i].fd = info->listen_fds[i];
        w.acceptors[i].listener = &cf->listeners[i];
        arm_accept(&w.acceptors[i]);
    }
    timer_after(&w.loop, &w.watch_timer, ACCEPT_WATCH_MS);
    return 0;
}

void worker_finish(void)
{
    run_worker_hooks(w.info->cf, 0);
    logfiles_flush_at_exit(w.info->cf);
}

int worker_main(const worker_info_t *info)
{
    if (worker_start(info) < 0)
        return 1;
    loop_run(&w.loop);
    worker_finish();
    return 0;
}

unsigned long worker_connections(void)
{
    return w.conns;
}

/* -------------------------------------------------- module services (API) */

struct weir_timer {
    struct timer t;
    void (*fn)(void *arg);
    void *arg;
};

static void module_timer_fired(struct timer *t)
{
    struct weir_timer *mt = (struct weir_timer *)t;
    mt->fn(mt->arg);
}

weir_timer_t *weir_timer_new(void (*fn)(void *arg), void *arg)
{
    struct weir_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    timer_init(&t->t, module_timer_fired);
    t->fn = fn;
    t->arg = arg;
    return t;
}

void weir_timer_start(weir_timer_t *t, uint64_t delay_ms)
{
    timer_cancel(g_loop, &t->t);
    timer_after(g_loop, &t->t, delay_ms);
}

void weir_timer_stop(weir_timer_t *t)
{
    timer_cancel(g_loop, &t->t);
}

void weir_timer_free(weir_timer_t *t)
{
    if (!t)
        return;
    timer_detach(g_loop, &t->t);
    free(t);
}

uint64_t weir_now_ms(void)
{
    return g_loop ? g_loop->wall_ms : 0;
}

uint64_t weir_monotonic_ms(void)
{
    return g_loop ? g_loop->now : 0;
}

int weir_worker_is_primary(void)
{
    return w.info && w.info->index == 0;
}

unsigned weir_worker_index(void)
{
    return w.info ? w.info->index : 0;
}

unsigned weir_worker_count(void)
{
    return w.info ? w.info->count : 0;
}
