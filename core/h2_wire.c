/* Frames from an nghttp2 session onto a connection (h2_wire.h). */
#include "h2_wire.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reqlog.h"

static int room(h2_wire_t *w, size_t n)
{
    if (w->len + n <= w->cap)
        return 0;
    /* a round holds H2_WIRE_MAX plus the frame that crosses it */
    size_t cap = w->len + n > H2_WIRE_MAX + 16393 ? w->len + n : H2_WIRE_MAX + 16393;
    char *p = realloc(w->out, cap);
    if (!p)
        return -1;
    w->out = p;
    w->cap = cap;
    return 0;
}

int h2_wire_flush(h2_wire_t *w, nghttp2_session *ng, conn_t *c, uint64_t timeout_ms)
{
    if (w->sending)
        return 0;
    while (w->len < H2_WIRE_MAX) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(ng, &p);
        if (n < 0) {
            reqlog(NULL, c, WEIR_LOG_ERROR,
                   "connection %llu: HTTP/2 output failed: %s", (unsigned long long)c->id,
                   nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0)
            break;
        if (room(w, (size_t)n) < 0)
            return -1;
        memcpy(w->out + w->len, p, (size_t)n);
        w->len += (size_t)n;
    }
    if (!w->len)
        return 0;
    wireq_t *q = conn_wq(c);
    if (!q || wq_add(q, w->out, w->len) < 0)
        return -1;
    w->sending = 1;
    conn_timer(c, CONN_TIMER_WRITE, timeout_ms);
    conn_send(c);
    return 1;
}

void h2_wire_sent(h2_wire_t *w, conn_t *c)
{
    conn_timer(c, CONN_TIMER_WRITE, 0);
    w->sending = 0;
    w->len = 0;
}

void h2_wire_free(h2_wire_t *w)
{
    free(w->out);
    *w = (h2_wire_t){0};
}
