/*
 * HTTP/1 checks shared by the request_head and response targets: head
 * scanning as a connection sees it (resumable, over growing prefixes),
 * properties of a parsed header list, and body draining.
 */
#ifndef WEIR_FUZZ_H1_H
#define WEIR_FUZZ_H1_H

#include "fuzz_common.h"
#include "h1.h"

/* Most cut points tried per head; each costs a scan of a prefix. */
#define FZ_MAX_CUTS 24

/* Cut points where a receive boundary matters most: just after each CR
 * (between CR and LF) and just after each LF, thinned out evenly to at most
 * FZ_MAX_CUTS, plus the middle of the buffer. Increasing, each < len. */
static inline size_t fz_cut_points(const char *buf, size_t len, size_t *cuts)
{
    size_t cand = 0, n = 0, k = 0;
    for (size_t i = 0; i + 1 < len; i++)
        cand += buf[i] == '\r' || buf[i] == '\n';
    size_t step = cand / (FZ_MAX_CUTS - 1) + 1;
    for (size_t i = 0; i + 1 < len && n < FZ_MAX_CUTS - 1; i++)
        if ((buf[i] == '\r' || buf[i] == '\n') && k++ % step == 0)
            cuts[n++] = i + 1;
    if (len >= 2)
        cuts[n++] = len / 2;
    /* sort (short: insertion) and drop duplicates */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || cuts[m - 1] != cuts[i])
            cuts[m++] = cuts[i];
    return m;
}

/*
 * Scans buf[0..len) as bytes arriving on a connection: h1_scan_head_r with
 * one state over growing prefixes (each an exact-size copy), then over the
 * whole buffer. Checks that
 *  - the resumable scan of each prefix says what a fresh scan of it says;
 *  - a prefix that already has a complete head finds the same head as the
 *    whole buffer, and one refused means the whole buffer is refused too;
 *  - the last resumable call agrees exactly with one fresh scan;
 *  - a complete head is found again in exactly its own bytes, and its bytes
 *    minus the last one are "need more", not an error;
 *  - a smaller max_header_size only ever turns an answer into -431.
 * Returns the fresh scan's result for the whole buffer.
 */
static inline ssize_t fz_scan_checked(const char *buf, size_t len, size_t max_header_size,
                                      int is_request)
{
    size_t cuts[FZ_MAX_CUTS];
    size_t ncuts = fz_cut_points(buf, len, cuts);
    ssize_t whole = h1_scan_head(buf, len, max_header_size, is_request);
    h1_scan_t st;
    h1_scan_init(&st);

    /* A connection stops scanning at the first non-zero answer; only when
     * every prefix said "need more" does the last call see everything. */
    int stopped = 0;
    for (size_t i = 0; i < ncuts && !stopped; i++) {
        size_t c = cuts[i];
        char *pre = fz_dup(buf, c);
        ssize_t r = h1_scan_head_r(&st, pre, c, max_header_size, is_request);
        ssize_t fresh = h1_scan_head(pre, c, max_header_size, is_request);
        free(pre);
        FZ_CHECK(r == fresh, "prefix %zu/%zu: resumable scan %zd, fresh scan %zd", c, len, r,
                 fresh);
        if (r > 0)
            FZ_CHECK(whole == r, "prefix %zu has a head of %zd, whole buffer %zd", c, r, whole);
        if (r < 0)
            FZ_CHECK(whole < 0, "prefix %zu refused (%zd), whole buffer %zd", c, r, whole);
        stopped = r != 0;
    }
    if (!stopped) {
        ssize_t r = h1_scan_head_r(&st, buf, len, max_header_size, is_request);
        FZ_CHECK(r == whole, "resumable scan of all %zu bytes %zd, fresh scan %zd", len, r,
                 whole);
    }

    if (whole > 0) {
        size_t h = (size_t)whole;
        FZ_CHECK(h <= len && h >= 4 && memcmp(buf + h - 4, "\r\n\r\n", 4) == 0,
                 "head of %zu bytes does not end in an empty line", h);
        char *own = fz_dup(buf, h);
        ssize_t again = h1_scan_head(own, h, max_header_size, is_request);
        ssize_t shorter = h1_scan_head(own, h - 1, max_header_size, is_request);
        free(own);
        FZ_CHECK(again == whole, "head of %zu bytes rescanned alone: %zd", h, again);
        FZ_CHECK(shorter == 0, "head of %zu bytes minus its last byte: %zd, want 0", h, shorter);
    }

    if (max_header_size > 256) {
        ssize_t small = h1_scan_head(buf, len, 256, is_request);
        if (whole < 0)
            FZ_CHECK(small < 0, "refused with the limit (%zd), accepted with 256 (%zd)", whole,
                     small);
        else
            FZ_CHECK(small == whole || small == -431,
                     "max_header_size 256 gave %zd where %zu gave %zd", small, max_header_size,
                     whole);
    }
    return whole;
}

/* Names the codec must never pass on (h1.h: hop-by-hop and framing). */
static inline int fz_is_hop_name(weir_str_t n)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection", "te",
                                      "trailer", "transfer-encoding", "upgrade",
                                      "content-length"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (fz_name_is(n, hop[i]))
            return 1;
    /* underscore spellings count as the real name */
    char tmp[32];
    if (n.len >= sizeof(tmp) || !memchr(n.data, '_', n.len))
        return 0;
    for (size_t i = 0; i < n.len; i++)
        tmp[i] = n.data[i] == '_' ? '-' : n.data[i];
    weir_str_t t = {tmp, n.len};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (fz_name_is(t, hop[i]))
            return 1;
    return 0;
}

/* A parsed header list: kept names are tokens, values hold no CR, LF or
 * NUL and no surrounding whitespace, both point into the head, and nothing
 * hop-by-hop survived. */
static inline void fz_check_headers(const weir_headers_t *h, const char *head, size_t len)
{
    FZ_CHECK(h->n <= h->cap || h->cap == 0, "header list n %zu > cap %zu", h->n, h->cap);
    for (size_t i = 0; i < h->n; i++) {
        const header_entry_t *e = &h->v[i];
        if (e->name.len == 0)
            continue;
        FZ_CHECK(fz_points_into(e->name, head, len), "header %zu name outside the head", i);
        for (size_t j = 0; j < e->name.len; j++)
            FZ_CHECK(h1_is((unsigned char)e->name.data[j], H1_C_TCHAR),
                     "header %zu name '%s' is not a token", i, fz_show(e->name));
        FZ_CHECK(!fz_is_hop_name(e->name), "hop-by-hop field '%s' kept", fz_show(e->name));
        /* an absolute-form request's Host value is the target's authority,
         * which also lies in the head */
        FZ_CHECK(fz_points_into(e->value, head, len), "header %zu value outside the head", i);
        for (size_t j = 0; j < e->value.len; j++) {
            unsigned char c = (unsigned char)e->value.data[j];
            FZ_CHECK(c != '\r' && c != '\n' && c != '\0', "header '%s' value holds %#x",
                     fz_show(e->name), c);
        }
        if (e->value.len) {
            unsigned char a = (unsigned char)e->value.data[0];
            unsigned char z = (unsigned char)e->value.data[e->value.len - 1];
            FZ_CHECK(a != ' ' && a != '\t' && z != ' ' && z != '\t',
                     "header '%s' value not trimmed", fz_show(e->name));
        }
    }
}

/* The kept fields of a and b, in order, are the same, ignoring Host in both
 * (the serialiser writes its own). */
static inline void fz_check_same_fields(const weir_headers_t *a, const weir_headers_t *b,
                                        const char *what)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < a->n && (a->v[i].name.len == 0 || fz_name_is(a->v[i].name, "host")))
            i++;
        while (j < b->n && (b->v[j].name.len == 0 || fz_name_is(b->v[j].name, "host")))
            j++;
        if (i == a->n || j == b->n)
            break;
        FZ_CHECK(fz_str_eq(a->v[i].name, b->v[j].name) && fz_str_eq(a->v[i].value, b->v[j].value),
                 "%s: field %zu '%s: %s' came back as '%s: %s'", what, i, fz_show(a->v[i].name),
                 fz_show(a->v[i].value), fz_show(b->v[j].name), fz_show(b->v[j].value));
        i++;
        j++;
    }
    FZ_CHECK(i == a->n && j == b->n, "%s: field lists differ in length", what);
}

/* Feeds body bytes in[0..len) (an exact-size copy) to p until the message
 * is done, an error, or the bytes are used up, with at most `max_out`
 * slices per call. Checks what every call must do: consume no more than it
 * was given, return slices inside its input, stop early only when done or
 * when out[] is full. *decoded grows by the payload byte count; with a
 * sink, the payload is also copied to sink + *decoded (room for every byte
 * of input is enough). Returns the bytes consumed, or the negative status. */
static inline ssize_t fz_drain_body(h1_parser_t *p, const char *in, size_t len, size_t max_out,
                                    int *done, uint64_t *decoded, char *sink)
{
    weir_str_t out[8];
    size_t off = 0;
    if (max_out > 8)
        max_out = 8;
    *done = 0;
    for (int spins = 0;; spins++) {
        size_t nout = 99;
        int d = -1;
        size_t left = len - off;
        ssize_t r = h1_body_feed(p, in + off, left, out, max_out, &nout, &d);
        if (r < 0)
            return r;
        FZ_CHECK((size_t)r <= left, "body feed consumed %zd of %zu", r, left);
        FZ_CHECK(nout <= max_out, "body feed gave %zu slices, room for %zu", nout, max_out);
        FZ_CHECK(d == 0 || d == 1, "done flag %d", d);
        for (size_t k = 0; k < nout; k++) {
            FZ_CHECK(out[k].len > 0, "empty body slice");
            FZ_CHECK(out[k].data >= in + off && out[k].data + out[k].len <= in + off + (size_t)r,
                     "body slice outside the consumed bytes");
            FZ_CHECK(k == 0 || out[k].data >= out[k - 1].data + out[k - 1].len,
                     "body slices out of order");
            if (sink)
                memcpy(sink + *decoded, out[k].data, out[k].len);
            *decoded += out[k].len;
        }
        off += (size_t)r;
        if (d) {
            *done = 1;
            return (ssize_t)off;
        }
        if (off == len)
            return (ssize_t)off;
        FZ_CHECK(nout == max_out, "body feed stopped at %zu of %zu with %zu/%zu slices, not done",
                 off, len, nout, max_out);
        FZ_CHECK(spins < 1 << 20, "body feed does not progress");
    }
}

#endif
