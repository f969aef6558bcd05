/*
 * Append-only log files (weir_logfile_*), for the access log and any module
 * that writes records.
 *
 * The master opens each path once per generation at config time, so a path
 * that cannot be opened is a config error with a position, and every worker
 * inherits the descriptor. A worker appends records to a buffer; a full
 * buffer (or one older than flush_ms) joins a queue that is written through
 * the ring, one writev at a time taking every queued buffer, in order. A
 * record is never split across buffers, and the file is O_APPEND, so lines
 * of different workers never interleave. The queue is bounded (QUEUE_BUFFERS
 * buffers, at least QUEUE_MIN_BYTES): a write can take milliseconds (the
 * kernel may hand a buffered write to a worker thread), and that much must
 * be absorbed, but when the disk stalls, records are dropped and counted
 * instead of blocking the loop or growing memory.
 *
 * SIGUSR1 makes the master reopen each file by name and pass the new
 * descriptors to the workers (ctl.c): a worker running as `user:` may not be
 * allowed to open the file, and one started later inherits the new file.
 * A worker swaps the descriptor in and closes the old one once no write is
 * using it. Records buffered before the reopen go to whichever file is open
 * when they are written. At worker exit the loop keeps turning (up to
 * EXIT_FLUSH_MS) until the queue is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "arena.h"
#include "conf.h"
#include "log.h"
#include "logfile.h"
#include "loop.h"

#define QUEUE_BUFFERS 8
#define QUEUE_MIN_BYTES (1024 * 1024)
#define MAX_IOV 64
#define EXIT_FLUSH_MS 2000
#define OPEN_FLAGS (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC)

typedef struct lf_buf {
    struct lf_buf *next;
    size_t len, cap, off;
    char data[];
} lf_buf_t;

struct weir_logfile {
    struct weir_logfile *next;
    const char *path; /* resolved; NULL for stdout/stderr */
    const char *name; /* as written, for messages */
    int fd;
    size_t buffer;
    uint64_t flush_ms;

    /* worker side (each worker has its own copy of the generation) */
    loop_op_t write_op;
    struct timer flush_timer;
    lf_buf_t *cur;          /* being filled */
    lf_buf_t *head, *tail;  /* full; head is the one being written */
    size_t queued;          /* bytes held in cur and the queue */
    unsigned writing;       /* buffers in the writev in flight, from head */
    struct iovec iov[MAX_IOV];
    int old_fd;             /* to close after the write in flight, or -1 */
    unsigned long dropped;
    uint64_t last_complaint;
};

static weir_logfile_t *from_op(loop_op_t *op, size_t offset)
{
    return (weir_logfile_t *)((char *)op - offset);
}

static void close_fd_async(int fd)
{
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_close(sqe, fd);
    loop_prep_op(sqe, NULL);
}

/* At most one complaint per second per file, so a failing disk cannot flood
 * the error log. */
static int may_complain(weir_logfile_t *f)
{
    if (f->last_complaint && g_loop->now - f->last_complaint < 1000)
        return 0;
    f->last_complaint = g_loop->now;
    return 1;
}

static void kick(weir_logfile_t *f)
{
    if (f->writing || !f->head)
        return;
    unsigned n = 0;
    for (lf_buf_t *b = f->head; b && n < MAX_IOV; b = b->next, n++)
        f->iov[n] = (struct iovec){.iov_base = b->data + b->off, .iov_len = b->len - b->off};
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_writev(sqe, f->fd, f->iov, n, (uint64_t)-1);
    loop_prep_op(sqe, &f->write_op);
    f->writing = n;

}

static void enqueue_current(weir_logfile_t *f)
{
    lf_buf_t *b = f->cur;
    if (!b || b->len == 0)
        return;
    f->cur = NULL;
    timer_cancel(g_loop, &f->flush_timer);
    if (f->tail)
        f->tail->next = b;
    else
        f->head = b;
    f->tail = b;
    kick(f);
}

static void pop_head(weir_logfile_t *f)
{
    lf_buf_t *b = f->head;
    f->head = b->next;
    if (!f->head)
        f->tail = NULL;
    f->queued -= b->cap;
    free(b);
}

static void on_written(loop_op_t *op, int res, unsigned flags)
{
    (void)flags;
    weir_logfile_t *f = from_op(op, offsetof(weir_logfile_t, write_op));
    unsigned batch = f->writing;
    f->writing = 0;
    if (res == -EINTR || res == -EAGAIN) {
        kick(f);
        return;
    }
    if (res <= 0) {
        if (may_complain(f))
            log_error("log file %s: write failed: %s; %u buffers lost", f->name,
                      res ? strerror(-res) : "nothing written", batch);
        while (batch-- && f->head)
            pop_head(f);
    }
    for (size_t done = res > 0 ? (size_t)res : 0; done && f->head;) {
        lf_buf_t *b = f->head;
        size_t take = b->len - b->off < done ? b->len - b->off : done;
        b->off += take;
        done -= take;
        if (b->off == b->len)
            pop_head(f);
    }
    if (f->old_fd >= 0) {
        close_fd_async(f->old_fd);
        f->old_fd = -1;
    }
    kick(f);
}

static void on_flush_timer(struct timer *t)
{
    weir_logfile_t *f = (weir_logfile_t *)((char *)t - offsetof(weir_logfile_t, flush_timer));
    enqueue_current(f);
}

static void close_master_fd(void *arg)
{
    weir_logfile_t *f = arg;
    if (f->path && f->fd >= 0)
        close(f->fd);
}

weir_logfile_t *weir_logfile_open(weir_conf_t *cf, const weir_node_t *node, const char *path,
                                  size_t buffer, uint64_t flush_ms)
{
    int std = strcmp(path, "stdout") == 0 ? 1 : strcmp(path, "stderr") == 0 ? 2 : 0;
    const char *resolved = std ? NULL : conf_resolve_path(cf, path);
    if (!std && !resolved)
        return NULL;
    for (weir_logfile_t *f = cf->logfiles; f; f = f->next) {
        int same = std ? (!f->path && f->fd == std) : (f->path && strcmp(f->path, resolved) == 0);
        if (same)
            return f;
    }
    weir_logfile_t *f = weir_conf_alloc(cf, sizeof(*f));
    if (!f)
        return NULL;
    f->name = std ? (std == 1 ? "stdout" : "stderr") : resolved;
    f->path = resolved;
    f->buffer = buffer ? buffer : 1;
    f->flush_ms = flush_ms;
    f->old_fd = -1;
    f->fd = std ? std : open(resolved, OPEN_FLAGS, 0644);
    if (f->fd < 0) {
        weir_conf_error(cf, node, "cannot open log file %s: %s", resolved, strerror(errno));
        return NULL;
    }
    f->write_op.cb = on_written;
    timer_init(&f->flush_timer, on_flush_timer);
    weir_conf_cleanup(cf, close_master_fd, f);
    f->next = cf->logfiles;
    cf->logfiles = f;
    return f;
}

int weir_logfile_write(weir_logfile_t *f, const void *data, size_t len)
{
    if (!g_loop || len == 0)
        return len == 0 ? 0 : -1;
    if (f->cur && f->cur->cap - f->cur->len < len)
        enqueue_current(f);
    if (!f->cur) {
        size_t cap = len > f->buffer ? len : f->buffer;
        size_t bound = QUEUE_BUFFERS * f->buffer;
        if (bound < QUEUE_MIN_BYTES)
            bound = QUEUE_MIN_BYTES;
        lf_buf_t *b = f->queued + cap <= bound + len ? malloc(sizeof(*b) + cap) : NULL;
        if (!b) {
            f->dropped++;
            if (may_complain(f))
                log_error("log file %s: writes are falling behind; %lu records dropped so far",
                          f->name, f->dropped);
            return -1;
        }
        b->next = NULL;
        b->len = b->off = 0;
        b->cap = cap;
        f->cur = b;
        f->queued += cap;
        if (f->flush_ms)
            timer_after(g_loop, &f->flush_timer, f->flush_ms);
    }
    memcpy(f->cur->data + f->cur->len, data, len);
    f->cur->len += len;
    if (f->flush_ms == 0 || f->cur->len == f->cur->cap)
        enqueue_current(f);
    return 0;
}

void logfiles_reopen(weir_conf_t *cf)
{
    for (weir_logfile_t *f = cf->logfiles; f; f = f->next) {
        if (!f->path)
            continue;
        int fd = open(f->path, OPEN_FLAGS, 0644);
        if (fd < 0) {
            log_error("reopen: cannot open log file %s: %s; still writing to the old file",
                      f->name, strerror(errno));
            continue;
        }
        close(f->fd);
        f->fd = fd;
    }
}

static weir_logfile_t *nth(const weir_conf_t *cf, size_t i)
{
    weir_logfile_t *f = cf->logfiles;
    while (f && i--)
        f = f->next;
    return f;
}

size_t logfiles_count(const weir_conf_t *cf)
{
    size_t n = 0;
    for (weir_logfile_t *f = cf->logfiles; f; f = f->next)
        n++;
    return n;
}

int logfiles_fd(const weir_conf_t *cf, size_t i)
{
    weir_logfile_t *f = nth(cf, i);
    return f && f->path ? f->fd : -1;
}

int logfiles_adopt(const weir_conf_t *cf, size_t i, int fd)
{
    weir_logfile_t *f = nth(cf, i);
    if (!f || !f->path)
        return -1;
    int old = f->fd;
    f->fd = fd;
    if (f->writing) {
        if (f->old_fd >= 0) /* a second reopen before the write ended */
            close_fd_async(old);
        else
            f->old_fd = old; /* the write in flight still uses it */
    } else {
        close_fd_async(old);
    }
    return 0;
}

static int busy(const weir_conf_t *cf)
{
    for (weir_logfile_t *f = cf->logfiles; f; f = f->next)
        if (f->head || f->writing)
            return 1;
    return 0;
}

void logfiles_flush_at_exit(const weir_conf_t *cf)
{
    if (!g_loop)
        return;
    for (weir_logfile_t *f = cf->logfiles; f; f = f->next)
        enqueue_current(f);
    uint64_t end = g_loop->now + EXIT_FLUSH_MS;
    while (busy(cf) && g_loop->now < end)
        loop_once(g_loop);
    for (weir_logfile_t *f = cf->logfiles; f; f = f->next)
        timer_detach(g_loop, &f->flush_timer);
}
