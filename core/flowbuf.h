/*
 * A flow-controlled byte buffer for HTTP/2 stream data (h2_server.c's
 * request bodies, h2_client.c's response bodies): bytes are appended as DATA
 * arrives, handed on in one piece (take), and given back as window once the
 * other side is done with them (release). What was taken stays where it is
 * until released, because a send may still read it; a buffer that must grow
 * meanwhile moves the untaken bytes to a new one and keeps the old one until
 * the release. The window the peer was given bounds len, so the buffer never
 * grows past it.
 */
#ifndef WEIR_FLOWBUF_H
#define WEIR_FLOWBUF_H

#include <stddef.h>

#include "weir/module.h"

struct arena;

typedef struct flowbuf {
    char *data, *hold; /* hold: an old buffer the taken bytes are still in */
    size_t len, cap;
    size_t taken;      /* bytes handed on and not yet released */
} flowbuf_t;

/* 0, or -1 when memory is short (nothing appended). */
int flowbuf_append(flowbuf_t *b, const void *p, size_t n);
/* Bytes waiting to be taken. */
size_t flowbuf_pending(const flowbuf_t *b);
/* Hands on every waiting byte as *out (valid until the release); 0 while a
 * take is not released yet. Returns the bytes taken. */
size_t flowbuf_take(flowbuf_t *b, weir_str_t *out);
/* The taken bytes are done with; returns how many (to give back as window). */
size_t flowbuf_release(flowbuf_t *b);
/* Drops the waiting bytes (nothing taken is touched); returns how many. */
size_t flowbuf_drop(flowbuf_t *b);
/* Frees the memory, or, when it may still be read by a send that serves the
 * request, hands it to the request's arena (freed with it). */
void flowbuf_free(flowbuf_t *b, struct arena *a);

#endif
