/*
 * The worker's event loop: one io_uring per worker process, one batched
 * submit per turn, a min-heap of timers, and a provided-buffer ring that
 * receives land in (so an idle connection holds no receive buffer).
 *
 * Every submission carries a pointer to a loop_op_t embedded in its owner as
 * user_data; the completion calls op->cb. An owner must not be freed while
 * one of its ops is in flight; user_data 0 marks fire-and-forget ops (close).
 */
#ifndef WEIR_LOOP_H
#define WEIR_LOOP_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>

typedef struct loop_op loop_op_t;
typedef void (*loop_cb)(loop_op_t *op, int res, unsigned flags);
struct loop_op {
    loop_cb cb;
};

struct timer;
typedef void (*timer_cb)(struct timer *t);
/* A timer's deadline may be moved later without touching the heap (the heap
 * entry re-queues itself when it fires early), so per-I/O deadline updates
 * cost one store. */
struct timer {
    uint64_t deadline; /* monotonic ms; 0 = not armed */
    uint64_t key;      /* deadline the heap is ordered by */
    size_t heap_index; /* SIZE_MAX when not in the heap */
    timer_cb cb;
};

/* A receive that failed with ENOBUFS waits here (FIFO) until a buffer is
 * released; fn runs once, from loop_buf_release. */
typedef struct buf_waiter {
    struct buf_waiter *next;
    void (*fn)(struct buf_waiter *w);
} buf_waiter_t;

/* Work that has no completion of its own (plaintext a transport already
 * holds, a close whose sends are done): run after the turn's completions,
 * before the loop waits again, in the order queued. A task queued while the
 * queue runs waits for the next turn, so a busy connection cannot starve the
 * others. */
typedef struct loop_task {
    struct loop_task *next;
    void (*fn)(struct loop_task *t);
    int queued;
    unsigned turn; /* the turn it was queued in */
} loop_task_t;

struct loop {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned nbufs;
    unsigned buf_size;
    unsigned short bgid;
    unsigned bufs_out; /* buffers handed to the application */
    uint64_t now;      /* monotonic ms, this turn */
    uint64_t wall_ms;  /* wall clock ms, this turn */
    struct timer **heap;
    size_t heap_len, heap_cap;
    int stop;
    buf_waiter_t *waiters, **waiters_tail;
    loop_task_t *tasks, **tasks_tail;
    unsigned task_turn;
};

extern struct loop *g_loop;

/* Creates the ring (SINGLE_ISSUER + DEFER_TASKRUN when available, else
 * COOP_TASKRUN, else plain) and the buffer ring. Returns 0 or -errno. */
int loop_init(struct loop *l, unsigned entries, unsigned nbufs, unsigned buf_size);
void loop_exit(struct loop *l);

/* A free SQE; submits pending ones if the SQ is full. Never NULL. */
struct io_uring_sqe *loop_sqe(struct loop *l);
static inline void loop_prep_op(struct io_uring_sqe *sqe, loop_op_t *op)
{
    io_uring_sqe_set_data(sqe, op);
}

/* Runs until l->stop is set. */
void loop_run(struct loop *l);
/* One turn: submit, wait for a completion or the next timer, dispatch. */
void loop_once(struct loop *l);
/* One turn that waits at most max_wait_ms (0: only what is ready now);
 * returns the number of completions dispatched. */
unsigned loop_turn(struct loop *l, uint64_t max_wait_ms);
void loop_update_time(struct loop *l);

/* Provided buffers. */
static inline char *loop_buf(struct loop *l, unsigned bid)
{
    return l->bufs + (size_t)bid * l->buf_size;
}
void loop_buf_release(struct loop *l, unsigned bid);
/* Queue a recv into the buffer group on fd. */
void loop_recv(struct loop *l, int fd, loop_op_t *op);
void loop_wait_buffers(struct loop *l, buf_waiter_t *w);

/* Queues t (once: a queued task is not queued again) for this turn's end. */
void loop_defer(struct loop *l, loop_task_t *t);
/* Takes t out of the queue, if it is in; required before freeing its owner. */
void loop_undefer(struct loop *l, loop_task_t *t);

void timer_init(struct timer *t, timer_cb cb);
/* Arm or move the timer to fire at now + delay_ms. */
void timer_after(struct loop *l, struct timer *t, uint64_t delay_ms);
/* Disarms the timer. Cheap: the heap entry stays and is dropped when it
 * comes up, so cancel-then-rearm on every I/O costs no heap work. */
void timer_cancel(struct loop *l, struct timer *t);
/* Takes the timer out of the heap; required before freeing its owner. */
void timer_detach(struct loop *l, struct timer *t);

/* Probe whether io_uring can be used at all; 0 or -errno with a message
 * suitable for the user in msg. */
int loop_probe(char *msg, size_t len);

#endif
