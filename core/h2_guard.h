/*
 * Token buckets for the HTTP/2 protections weir keeps itself (h2_server.c
 * says which frames count where): a bucket holds `burst` tokens, refills at
 * `per_sec`, and a connection that needs a token when none is left is cut.
 * Pure, so the unit suite drives it with its own clock.
 */
#ifndef WEIR_H2_GUARD_H
#define WEIR_H2_GUARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct h2_bucket {
    uint64_t tokens_ms; /* what is left, in ms of refill */
    uint64_t at;        /* when it was last refilled (ms); 0: full, never used */
} h2_bucket_t;

/* Takes one token at time now_ms: 0, or -1 when the bucket is empty. */
int h2_bucket_take(h2_bucket_t *b, uint64_t now_ms, unsigned burst, unsigned per_sec);

#endif

/*
 * REFUSED_STREAM beyond max_concurrent_streams. nghttp2 1.52 refuses a
 * stream beyond the limit with REFUSED_STREAM only while weir's SETTINGS
 * are not yet acknowledged; once the client's SETTINGS ACK is in, it ends
 * the whole connection (GOAWAY PROTOCOL_ERROR), taking every stream in
 * flight with it, where RFC 9113 §5.1.2 asks for a stream error. weir keeps
 * its SETTINGS unacknowledged as far as nghttp2 knows: this filter takes
 * SETTINGS ACK frames out of the client's input. weir sends one SETTINGS
 * frame only, and its values equal nghttp2's defaults but for the stream
 * limit (the window stays 65535, header list sizes are weir's own check),
 * so nothing else changes.
 */
typedef struct h2_ackfilter {
    size_t preface_left; /* client magic still to pass */
    uint64_t frame_left; /* payload bytes of the current frame */
    unsigned char hd[9]; /* a frame header split across reads */
    size_t hd_len;
} h2_ackfilter_t;

void h2_ackfilter_init(h2_ackfilter_t *f);
/* Passes in[0..n) on to out() in runs, without SETTINGS ACK frames; out()
 * returns 0 or -1 (stop: the return value is then -1). */
int h2_ackfilter_feed(h2_ackfilter_t *f, const unsigned char *in, size_t n,
                      int (*out)(void *arg, const unsigned char *p, size_t len), void *arg);
