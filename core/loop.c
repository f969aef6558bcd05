#include "loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "log.h"
#include "vg_mem.h"

struct loop *g_loop;

void loop_update_time(struct loop *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    l->now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    l->wall_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int setup_ring(struct loop *l, unsigned entries)
{
    /* Try the cheapest completion model first; older kernels reject flags. */
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
        struct io_uring_params p = {0};
        p.flags = flag_sets[i] | IORING_SETUP_SUBMIT_ALL;
        ret = io_uring_queue_init_params(entries, &l->ring, &p);
        if (ret == 0)
            return 0;
        p = (struct io_uring_params){.flags = flag_sets[i]};
        ret = io_uring_queue_init_params(entries, &l->ring, &p);
        if (ret == 0)
            return 0;
        if (ret != -EINVAL)
            return ret;
    }
    return ret;
}

static int setup_buffers(struct loop *l, unsigned nbufs, unsigned buf_size)
{
    /* liburing 2.3 has no io_uring_setup_buf_ring: map and register by hand. */
    size_t ring_bytes = (size_t)nbufs * sizeof(struct io_uring_buf);
    void *ring_mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE,
                          MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring_mem == MAP_FAILED)
        return -errno;
    l->br = ring_mem;
    io_uring_buf_ring_init(l->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)ring_mem,
        .ring_entries = nbufs,
        .bgid = l->bgid,
    };
    int ret = io_uring_register_buf_ring(&l->ring, &reg, 0);
    if (ret)
        return ret;
    /* Pages of the pool are only touched when a receive lands in them. */
    l->bufs = mmap(NULL, (size_t)nbufs * buf_size, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (l->bufs == MAP_FAILED)
        return -errno;
    /* memcheck: a buffer is the kernel's until a completion hands it over */
    WEIR_MEM_NOACCESS(l->bufs, (size_t)nbufs * buf_size);
    l->nbufs = nbufs;
    l->buf_size = buf_size;
    int mask = io_uring_buf_ring_mask(nbufs);
    for (unsigned i = 0; i < nbufs; i++)
        io_uring_buf_ring_add(l->br, loop_buf(l, i), buf_size, (unsigned short)i, mask, (int)i);
    io_uring_buf_ring_advance(l->br, (int)nbufs);
    return 0;
}

int loop_init(struct loop *l, unsigned entries, unsigned nbufs, unsigned buf_size)
{
    memset(l, 0, sizeof(*l));
    int ret = setup_ring(l, entries);
    if (ret)
        return ret;
    ret = setup_buffers(l, nbufs, buf_size);
    if (ret) {
        io_uring_queue_exit(&l->ring);
        return ret;
    }
    l->waiters = NULL;
    l->waiters_tail = &l->waiters;
    loop_update_time(l);
    g_loop = l;
    return 0;
}

void loop_exit(struct loop *l)
{
    io_uring_queue_exit(&l->ring);
    free(l->heap);
}

struct io_uring_sqe *loop_sqe(struct loop *l)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
    while (!sqe) {
        io_uring_submit(&l->ring);
        sqe = io_uring_get_sqe(&l->ring);
    }
    return sqe;
}

void loop_recv(struct loop *l, int fd, loop_op_t *op)
{
    struct io_uring_sqe *sqe = loop_sqe(l);
    io_uring_prep_recv(sqe, fd, NULL, l->buf_size, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = l->bgid;
    loop_prep_op(sqe, op);
}

void loop_buf_release(struct loop *l, unsigned bid)
{
    l->bufs_out--;
    WEIR_MEM_NOACCESS(loop_buf(l, bid), l->buf_size);
    io_uring_buf_ring_add(l->br, loop_buf(l, bid), l->buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(l->nbufs), 0);
    io_uring_buf_ring_advance(l->br, 1);
    buf_waiter_t *w = l->waiters;
    if (w) {
        l->waiters = w->next;
        if (!l->waiters)
            l->waiters_tail = &l->waiters;
        w->next = NULL;
        w->fn(w);
    }
}

void loop_wait_buffers(struct loop *l, buf_waiter_t *w)
{
    if (!l->waiters_tail)
        l->waiters_tail = &l->waiters;
    w->next = NULL;
    *l->waiters_tail = w;
    l->waiters_tail = &w->next;
}

/* ----------------------------------------------------------- deferred work */

void loop_defer(struct loop *l, loop_task_t *t)
{
    if (t->queued)
        return;
    if (!l->tasks_tail)
        l->tasks_tail = &l->tasks;
    t->queued = 1;
    t->turn = l->task_turn;
    t->next = NULL;
    *l->tasks_tail = t;
    l->tasks_tail = &t->next;
}

void loop_undefer(struct loop *l, loop_task_t *t)
{
    if (!t->queued)
        return;
    loop_task_t **pp = &l->tasks;
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = t->next;
        if (l->tasks_tail == &t->next)
            l->tasks_tail = pp;
    }
    t->queued = 0;
    t->next = NULL;
}

/* Tasks stay in the queue until they run, so loop_undefer can take out one
 * that is due later in this same run. */
static void run_tasks(struct loop *l)
{
    unsigned turn = l->task_turn++;
    while (l->tasks && l->tasks->turn == turn) {
        loop_task_t *t = l->tasks;
        l->tasks = t->next;
        if (!l->tasks)
            l->tasks_tail = &l->tasks;
        t->next = NULL;
        t->queued = 0;
        t->fn(t);
    }
}

/* ------------------------------------------------------------------ timers */

void timer_init(struct timer *t, timer_cb cb)
{
    t->deadline = 0;
    t->key = 0;
    t->heap_index = SIZE_MAX;
    t->cb = cb;
}

static void heap_swap(struct loop *l, size_t a, size_t b)
{
    struct timer *ta = l->heap[a], *tb = l->heap[b];
    l->heap[a] = tb;
    l->heap[b] = ta;
    tb->heap_index = a;
    ta->heap_index = b;
}

static void heap_up(struct loop *l, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->key <= l->heap[i]->key)
            break;
        heap_swap(l, i, parent);
        i = parent;
    }
}

static void heap_down(struct loop *l, size_t i)
{
    for (;;) {
        size_t left = 2 * i + 1, right = left + 1, min = i;
        if (left < l->heap_len && l->heap[left]->key < l->heap[min]->key)
            min = left;
        if (right < l->heap_len && l->heap[right]->key < l->heap[min]->key)
            min = right;
        if (min == i)
            return;
        heap_swap(l, i, min);
        i = min;
    }
}

static void heap_remove(struct loop *l, struct timer *t)
{
    size_t i = t->heap_index;
    l->heap_len--;
    if (i != l->heap_len) {
        l->heap[i] = l->heap[l->heap_len];
        l->heap[i]->heap_index = i;
        heap_down(l, i);
        heap_up(l, i);
    }
    t->heap_index = SIZE_MAX;
}

static int heap_push(struct loop *l, struct timer *t)
{
    if (l->heap_len == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 256;
        struct timer **h = realloc(l->heap, cap * sizeof(*h));
        if (!h)
            return -1;
        l->heap = h;
        l->heap_cap = cap;
    }
    t->key = t->deadline;
    t->heap_index = l->heap_len;
    l->heap[l->heap_len++] = t;
    heap_up(l, t->heap_index);
    return 0;
}

void timer_after(struct loop *l, struct timer *t, uint64_t delay_ms)
{
    t->deadline = l->now + delay_ms;
    if (t->deadline == 0)
        t->deadline = 1;
    if (t->heap_index == SIZE_MAX) {
        if (heap_push(l, t) < 0)
            log_error("timer heap allocation failed");
    } else if (t->deadline < t->key) {
        t->key = t->deadline;
        heap_up(l, t->heap_index);
    }
}

void timer_cancel(struct loop *l, struct timer *t)
{
    (void)l;
    t->deadline = 0;
}

void timer_detach(struct loop *l, struct timer *t)
{
    t->deadline = 0;
    if (t->heap_index != SIZE_MAX)
        heap_remove(l, t);
}

static void run_timers(struct loop *l)
{
    while (l->heap_len && l->heap[0]->key <= l->now) {
        struct timer *t = l->heap[0];
        heap_remove(l, t);
        if (t->deadline == 0)
            continue;
        if (t->deadline > l->now) { /* moved later meanwhile: re-queue */
            heap_push(l, t);
            continue;
        }
        t->deadline = 0;
        t->cb(t);
    }
}

/* ------------------------------------------------------------------- loop */

static unsigned reap(struct loop *l)
{
    struct io_uring_cqe *cqe;
    unsigned head, count = 0;
    io_uring_for_each_cqe(&l->ring, head, cqe) {
        count++;
        loop_op_t *op = io_uring_cqe_get_data(cqe);
        if (cqe->flags & IORING_CQE_F_BUFFER)
            l->bufs_out++;
        if ((cqe->flags & IORING_CQE_F_BUFFER) && cqe->res > 0)
            WEIR_MEM_DEFINED(loop_buf(l, cqe->flags >> IORING_CQE_BUFFER_SHIFT), (size_t)cqe->res);
        if (op)
            op->cb(op, cqe->res, cqe->flags);
    }
    io_uring_cq_advance(&l->ring, count);
    return count;
}

unsigned loop_turn(struct loop *l, uint64_t max_wait_ms)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts, *tsp = NULL;
    uint64_t wait = l->tasks ? 0 : max_wait_ms;
    if (l->heap_len) {
        uint64_t key = l->heap[0]->key;
        uint64_t until = key > l->now ? key - l->now : 0;
        if (until < wait)
            wait = until;
    }
    if (wait != UINT64_MAX) {
        ts.tv_sec = (long long)(wait / 1000);
        ts.tv_nsec = (long long)(wait % 1000) * 1000000;
        tsp = &ts;
    }
    int ret = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, tsp, NULL);
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        log_error("io_uring wait failed: %s", strerror(-ret));
    loop_update_time(l);
    unsigned n = reap(l);
    run_timers(l);
    run_tasks(l);
    return n;
}

void loop_once(struct loop *l)
{
    loop_turn(l, UINT64_MAX);
}

void loop_run(struct loop *l)
{
    while (!l->stop)
        loop_once(l);
}

int loop_probe(char *msg, size_t len)
{
    struct io_uring ring;
    int ret = io_uring_queue_init(4, &ring, 0);
    if (ret == 0) {
        io_uring_queue_exit(&ring);
        return 0;
    }
    if (ret == -EPERM || ret == -ENOSYS || ret == -EACCES)
        snprintf(msg, len,
                 "io_uring is not available (io_uring_setup: %s). weir needs it: allow it "
                 "with 'sysctl -w kernel.io_uring_disabled=0' (Linux 6.6+), or, in a "
                 "container, use a seccomp profile that permits io_uring_setup, "
                 "io_uring_enter and io_uring_register (e.g. docker run "
                 "--security-opt seccomp=unconfined)",
                 strerror(-ret));
    else
        snprintf(msg, len, "io_uring setup failed: %s", strerror(-ret));
    return ret;
}
