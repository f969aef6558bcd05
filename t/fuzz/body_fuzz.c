/*
 * Fuzz target: the body decoder (core/h1_body.c), Content-Length, chunked
 * and close-delimited, fed the way receives cut a body.
 *
 * Input layout (t/fuzz/corpus/body has examples):
 *   byte 0   bits 0-1 framing: 0 none, 1 Content-Length, 2 chunked, 3 close
 *            bit  2   Content-Length as 8 bytes (else 2 bytes)
 *            bits 3-5 number of cut points, 0..7
 *            bits 6-7 slices per call: 1, 2, 3 or 8
 *   then     the Content-Length (big-endian), only for framing 1
 *   then     one 2-byte cut offset per cut point (modulo the body length)
 *   the rest is the body as received, possibly with the next message after it.
 *
 * The body is decoded twice: in one piece with room for 8 slices per call,
 * and cut at the chosen points into separately allocated pieces with the
 * chosen number of slices per call. Invariants beyond "no sanitizer
 * report":
 *  - both decodings give the same payload bytes, the same number of bytes
 *    consumed, the same done flag and the same error;
 *  - no call consumes more than it was given or returns a slice outside
 *    what it consumed; a call stops short only when the message is done or
 *    its slice array is full (fz_drain_body);
 *  - once done, a call consumes nothing and says done; once failed, every
 *    call returns the same error;
 *  - Content-Length gives exactly min(length, bytes) bytes; close gives
 *    everything; a chunked body the decoder accepted decodes to the same
 *    bytes with a plain independent reading of its chunks;
 *  - h1_body_eof is a clean end exactly when the message is complete or
 *    close-delimited.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_h1.h"

struct result {
    ssize_t status; /* bytes consumed, or the error */
    int done;
    uint64_t decoded;
    char *bytes;
};

/* Feeds body[0..len) in pieces cut at cuts[0..ncuts) (increasing). */
static void decode(h1_framing_t framing, uint64_t cl, const char *body, size_t len,
                   const size_t *cuts, size_t ncuts, size_t max_out, struct result *res)
{
    h1_parser_t p;
    h1_parser_init(&p);
    h1_body_start(&p, framing, cl);
    res->bytes = malloc(len ? len : 1);
    FZ_CHECK(res->bytes != NULL, "malloc");
    res->decoded = 0;
    res->done = 0;
    res->status = 0;

    size_t start = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        char *piece = fz_dup(body + start, end - start);
        int done = 0;
        ssize_t r = fz_drain_body(&p, piece, end - start, max_out, &done, &res->decoded,
                                  res->bytes);
        free(piece);
        if (r < 0) {
            res->status = r;
            /* an error sticks */
            weir_str_t out[1];
            size_t nout;
            int d;
            ssize_t again = h1_body_feed(&p, "0\r\n\r\n", 5, out, 1, &nout, &d);
            FZ_CHECK(again == r, "after error %zd a feed returned %zd", r, again);
            FZ_CHECK(h1_body_eof(&p) == 0, "EOF after an error is a clean end");
            return;
        }
        res->status += r;
        if (done) {
            res->done = 1;
            weir_str_t out[1];
            size_t nout = 7;
            int d = 0;
            ssize_t again = h1_body_feed(&p, "xyz", 3, out, 1, &nout, &d);
            FZ_CHECK(again == 0 && d == 1 && nout == 0, "feed after done: %zd, done %d, %zu",
                     again, d, nout);
            FZ_CHECK(h1_body_eof(&p) == 1, "EOF after done is not clean");
            return;
        }
        start = end;
    }
    int clean = h1_body_eof(&p);
    FZ_CHECK(clean == (framing == H1_FRAMING_CLOSE), "EOF of an incomplete body (framing %d): %d",
             framing, clean);
}

/* Plain reading of a chunked body the decoder accepted: hex size, anything
 * up to CRLF (extensions were validated by the decoder), data, CRLF; after
 * the last chunk, lines up to an empty one. Returns the bytes the body
 * took, or 0 if it does not read as one. */
static size_t reread_chunked(const char *b, size_t len, char *out, uint64_t *outlen)
{
    size_t i = 0;
    *outlen = 0;
    for (;;) {
        uint64_t size = 0;
        size_t digits = 0;
        for (; i < len; i++, digits++) {
            char c = b[i];
            int v = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (v < 0)
                break;
            if (size > (UINT64_MAX >> 4))
                return 0;
            size = size * 16 + (uint64_t)v;
        }
        if (!digits)
            return 0;
        while (i + 1 < len && !(b[i] == '\r' && b[i + 1] == '\n'))
            i++;
        if (i + 1 >= len)
            return 0;
        i += 2;
        if (size == 0)
            break;
        if (size > len - i || len - i - size < 2)
            return 0;
        memcpy(out + *outlen, b + i, size);
        *outlen += size;
        i += size;
        if (b[i] != '\r' || b[i + 1] != '\n')
            return 0;
        i += 2;
    }
    for (;;) {
        size_t s = i;
        while (i + 1 < len && !(b[i] == '\r' && b[i + 1] == '\n'))
            i++;
        if (i + 1 >= len)
            return 0;
        i += 2;
        if (i - s == 2)
            return i;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in_t in = {data, size};
    uint8_t mode = fz_u8(&in);
    static const h1_framing_t framings[] = {H1_FRAMING_NONE, H1_FRAMING_LENGTH,
                                            H1_FRAMING_CHUNKED, H1_FRAMING_CLOSE};
    static const size_t slices[] = {1, 2, 3, 8};
    h1_framing_t framing = framings[mode & 3];
    uint64_t cl = 0;
    if (framing == H1_FRAMING_LENGTH)
        cl = (mode & 4) ? fz_u64(&in) & INT64_MAX : fz_u16(&in);
    size_t ncuts = (mode >> 3) & 7;
    size_t max_out = slices[mode >> 6];
    uint16_t raw[7];
    for (size_t i = 0; i < ncuts; i++)
        raw[i] = fz_u16(&in);
    size_t len;
    const char *body = (const char *)fz_take(&in, in.n, &len);

    /* cut points: increasing, inside the body, no empty pieces */
    size_t cuts[7], n = 0;
    for (size_t i = 0; i < ncuts && len > 1; i++) {
        size_t c = raw[i] % len;
        if (c == 0)
            continue;
        size_t j = n;
        while (j > 0 && cuts[j - 1] > c) {
            cuts[j] = cuts[j - 1];
            j--;
        }
        if (j > 0 && cuts[j - 1] == c) {
            memmove(&cuts[j], &cuts[j + 1], (n - j) * sizeof(cuts[0]));
            continue;
        }
        cuts[j] = c;
        n++;
    }

    struct result whole, split;
    decode(framing, cl, body, len, NULL, 0, 8, &whole);
    decode(framing, cl, body, len, cuts, n, max_out, &split);

    FZ_CHECK(whole.status == split.status, "one piece: %zd, %zu cuts/%zu slices: %zd",
             whole.status, n, max_out, split.status);
    if (whole.status >= 0) {
        FZ_CHECK(whole.done == split.done, "done %d vs %d", whole.done, split.done);
        FZ_CHECK(whole.decoded == split.decoded &&
                     memcmp(whole.bytes, split.bytes, (size_t)whole.decoded) == 0,
                 "payload differs with %zu cuts (%llu vs %llu bytes)", n,
                 (unsigned long long)whole.decoded, (unsigned long long)split.decoded);
        FZ_CHECK((uint64_t)whole.status <= len, "consumed %zd of %zu", whole.status, len);
        switch (framing) {
        case H1_FRAMING_NONE:
            FZ_CHECK(whole.done && whole.status == 0, "no body: %zd", whole.status);
            break;
        case H1_FRAMING_LENGTH: {
            uint64_t want = cl < len ? cl : len;
            FZ_CHECK(whole.decoded == want && (uint64_t)whole.status == want &&
                         memcmp(whole.bytes, body, (size_t)want) == 0,
                     "Content-Length %llu over %zu bytes decoded %llu", (unsigned long long)cl,
                     len, (unsigned long long)whole.decoded);
            FZ_CHECK(whole.done == (cl <= len), "Content-Length done %d", whole.done);
            break;
        }
        case H1_FRAMING_CLOSE:
            FZ_CHECK(!whole.done && whole.decoded == len && (size_t)whole.status == len &&
                         memcmp(whole.bytes, body, len) == 0,
                     "close-delimited body changed");
            break;
        case H1_FRAMING_CHUNKED:
            FZ_CHECK(whole.decoded <= (uint64_t)whole.status, "decoded more than consumed");
            if (whole.done) {
                char *again = malloc(len ? len : 1);
                uint64_t alen;
                FZ_CHECK(again != NULL, "malloc");
                size_t took = reread_chunked(body, (size_t)whole.status, again, &alen);
                FZ_CHECK(took == (size_t)whole.status,
                         "accepted chunked body of %zd bytes rereads as %zu", whole.status, took);
                FZ_CHECK(alen == whole.decoded && memcmp(again, whole.bytes, alen) == 0,
                         "chunked payload differs from a plain reading");
                free(again);
            }
            break;
        }
    }
    free(whole.bytes);
    free(split.bytes);
    return 0;
}
