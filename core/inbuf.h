/*
 * A connection's own input bytes: a head being assembled, and what followed
 * it; data[off..len) is unread. Grows by doubling from `initial`; freed
 * while the connection is idle, so an idle connection holds none.
 */
#ifndef WEIR_INBUF_H
#define WEIR_INBUF_H

#include <stddef.h>

typedef struct inbuf {
    char *data;
    size_t len, cap, off;
} inbuf_t;

/* 0, or -1 when memory is short (nothing appended). */
int inbuf_append(inbuf_t *b, const char *p, size_t n, size_t initial);
void inbuf_free(inbuf_t *b);
/* Drops the read part: the unread bytes move to the front (or the buffer is
 * freed when none is left). */
void inbuf_compact(inbuf_t *b);

#endif
