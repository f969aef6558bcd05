/*
 * HTTP/1 body framing onto a connection's wire queue, for both directions
 * (the server's responses, the proxy's upstream requests).
 */
#ifndef WEIR_H1_QUEUE_H
#define WEIR_H1_QUEUE_H

#include "conn.h"
#include "h1.h"

/* Queues body slices, as chunks when chunked (their size lines copied into
 * the queue's scratch room), and the last chunk when last && chunked.
 * Returns the body bytes queued, or -1 when the queue is full (a caller's
 * bug: BODY_SLICES slices always fit). */
long h1_queue_body(wireq_t *q, const weir_str_t *s, size_t n, int last, int chunked);

#endif
