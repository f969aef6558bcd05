/* Flow-controlled stream buffers (flowbuf.h). */
#include "flowbuf.h"

#include <stdlib.h>
#include <string.h>

#include "arena.h"

#define FLOWBUF_INITIAL 4096

size_t flowbuf_pending(const flowbuf_t *b)
{
    return b->hold ? b->len : b->len - b->taken;
}

static size_t grown(size_t cap, size_t need)
{
    cap = cap ? cap : FLOWBUF_INITIAL;
    while (cap < need)
        cap *= 2;
    return cap;
}

int flowbuf_append(flowbuf_t *b, const void *p, size_t n)
{
    if (b->cap - b->len < n) {
        if (b->taken && !b->hold) {
            /* the taken bytes stay put until released: the rest moves */
            size_t pending = b->len - b->taken;
            size_t cap = grown(0, pending + n);
            char *d = malloc(cap);
            if (!d)
                return -1;
            memcpy(d, b->data + b->taken, pending);
            b->hold = b->data;
            b->data = d;
            b->len = pending;
            b->cap = cap;
        } else {
            /* nothing taken lives in data (or it lives in hold) */
            size_t cap = grown(b->cap, b->len + n);
            char *d = realloc(b->data, cap);
            if (!d)
                return -1;
            b->data = d;
            b->cap = cap;
        }
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

size_t flowbuf_take(flowbuf_t *b, weir_str_t *out)
{
    if (b->taken) {
        *out = (weir_str_t){NULL, 0};
        return 0;
    }
    *out = (weir_str_t){b->data, b->len};
    b->taken = b->len;
    return b->len;
}

size_t flowbuf_release(flowbuf_t *b)
{
    size_t n = b->taken;
    if (b->hold) {
        free(b->hold);
        b->hold = NULL;
    } else if (n) {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    b->taken = 0;
    return n;
}

size_t flowbuf_drop(flowbuf_t *b)
{
    size_t n = flowbuf_pending(b);
    b->len -= n;
    return n;
}

static void hand_over(char *p, struct arena *a)
{
    if (p && (!a || arena_cleanup(a, free, p) < 0))
        free(p);
}

void flowbuf_free(flowbuf_t *b, struct arena *a)
{
    hand_over(b->data, b->taken && !b->hold ? a : NULL);
    hand_over(b->hold, a);
    *b = (flowbuf_t){0};
}
