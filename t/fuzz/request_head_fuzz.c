/*
 * Fuzz target: the request head path of a client connection.
 *
 * The input is the bytes a client sends (one or more pipelined requests, so
 * seeds are plain HTTP). For each message: h1_scan_head_r as the bytes
 * arrive (fz_scan_checked), h1_parse_request on an exact-size copy of the
 * head, request_normalize_path on the path, then h1_request_size /
 * h1_serialize_request of what was accepted, and the body decoder over the
 * bytes after the head; what it leaves is the next request.
 *
 * Invariants beyond "no sanitizer report":
 *  - the parsed request points into its head, has a version of 10 or 11, a
 *    lowercase host, a framing of NONE, LENGTH or CHUNKED, and no
 *    hop-by-hop field left in its list;
 *  - h1_request_size is the exact length h1_serialize_request writes, and
 *    one byte less room is refused with -1, never overrun;
 *  - the serialised head scans as one complete head and parses again, with
 *    the same method, path, query, host, framing, Content-Length and kept
 *    fields;
 *  - the normalised path starts with '/', never grows by more than one
 *    byte, and normalising it again changes nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "fuzz_h1.h"
#include "request.h"

#define MAX_HEADER 16384
#define MAX_MESSAGES 4

static int is_lower_host(weir_str_t h)
{
    for (size_t i = 0; i < h.len; i++)
        if (h.data[i] >= 'A' && h.data[i] <= 'Z')
            return 0;
    return 1;
}

static void check_normalize(struct arena *a, weir_str_t path)
{
    weir_request_t r;
    memset(&r, 0, sizeof(r));
    r.arena = a;
    r.path = path;
    int rc = request_normalize_path(&r);
    if (rc < 0) {
        FZ_CHECK(rc == -400 || rc == -500, "normalize: %d", rc);
        return;
    }
    FZ_CHECK(rc == 0, "normalize: %d", rc);
    if (path.len == 0 || path.data[0] != '/') {
        FZ_CHECK(fz_str_eq(r.path, path), "a path without '/' was changed");
        return;
    }
    weir_str_t once = r.path;
    FZ_CHECK(once.len >= 1 && once.data[0] == '/', "normalised path '%s' does not start with /",
             fz_show(once));
    FZ_CHECK(once.len <= path.len + 1, "normalised path grew from %zu to %zu", path.len,
             once.len);
    /* "/." and "/.." segments are gone, whatever the spelling */
    rc = request_normalize_path(&r);
    FZ_CHECK(rc == 0 && fz_str_eq(r.path, once), "normalising '%s' twice: %d, '%s'",
             fz_show(once), rc, fz_show(r.path));
}

/* Serialises the accepted request as the proxy would send it upstream and
 * parses that again. */
static void check_roundtrip(struct arena *a, const h1_request_t *rq)
{
    /* HTTP/1.0 without Host: the proxy names the upstream instead */
    weir_str_t host = rq->authority.len ? rq->authority : WEIR_STR("upstream.test");
    size_t need = h1_request_size(rq->method, rq->path, rq->query, host, &rq->headers,
                                  rq->framing, rq->content_length);
    char *out = malloc(need);
    FZ_CHECK(out != NULL, "malloc %zu", need);
    ssize_t w = h1_serialize_request(out, need - 1, rq->method, rq->path, rq->query, host,
                                     &rq->headers, rq->framing, rq->content_length);
    FZ_CHECK(w == -1, "serialising into %zu bytes (one short) gave %zd, want -1", need - 1, w);
    w = h1_serialize_request(out, need, rq->method, rq->path, rq->query, host, &rq->headers,
                             rq->framing, rq->content_length);
    FZ_CHECK(w >= 0 && (size_t)w == need, "serialised %zd bytes, h1_request_size said %zu", w,
             need);

    ssize_t hl = h1_scan_head(out, need, 1 << 20, 1);
    FZ_CHECK(hl == (ssize_t)need, "serialised head of %zu bytes scans as %zd:\n%.*s", need, hl,
             (int)need, out);
    h1_parser_t p2;
    h1_request_t r2;
    h1_parser_init(&p2);
    int rc = h1_parse_request(a, &p2, out, need, &r2);
    FZ_CHECK(rc == 0, "serialised head does not parse again (%d):\n%.*s", rc, (int)need, out);
    FZ_CHECK(fz_str_eq(r2.method, rq->method), "method changed");
    FZ_CHECK(fz_str_eq(r2.path, rq->path), "path '%s' came back as '%s'", fz_show(rq->path),
             fz_show(r2.path));
    FZ_CHECK((r2.query.data == NULL) == (rq->query.data == NULL) && fz_str_eq(r2.query, rq->query),
             "query changed");
    FZ_CHECK(r2.version == 11, "serialised version %d", r2.version);
    if (rq->authority.len)
        FZ_CHECK(fz_str_eq(r2.host, rq->host), "host '%s' came back as '%s'", fz_show(rq->host),
                 fz_show(r2.host));
    FZ_CHECK(fz_str_eq(r2.authority, host), "Host sent '%s', read back '%s'", fz_show(host),
             fz_show(r2.authority));
    FZ_CHECK(r2.framing == rq->framing, "framing %d came back as %d", rq->framing, r2.framing);
    if (rq->framing == H1_FRAMING_LENGTH)
        FZ_CHECK(r2.content_length == rq->content_length, "Content-Length changed");
    FZ_CHECK(r2.keepalive, "a forwarded request is not keepalive");
    FZ_CHECK(!r2.absolute_form && !r2.upgrade, "forwarded request is absolute-form/upgrade");
    fz_check_same_fields(&rq->headers, &r2.headers, "request round trip");
    free(out);
}

static void check_request(const h1_request_t *rq, const char *head, size_t len)
{
    FZ_CHECK(rq->version == 10 || rq->version == 11, "version %d", rq->version);
    FZ_CHECK(rq->method.len > 0 && fz_points_into(rq->method, head, len), "method");
    FZ_CHECK(rq->target.len > 0 && fz_points_into(rq->target, head, len), "target");
    FZ_CHECK(!fz_name_is(rq->method, "connect"), "CONNECT accepted");
    FZ_CHECK(rq->path.len > 0 && (rq->path.data[0] == '/' || fz_str_eq(rq->path, WEIR_STR("*"))),
             "path '%s'", fz_show(rq->path));
    FZ_CHECK(rq->query.data == NULL || fz_points_into(rq->query, head, len), "query");
    FZ_CHECK(is_lower_host(rq->host), "host '%s' not lowercase", fz_show(rq->host));
    FZ_CHECK(rq->version == 10 || rq->host.len > 0, "HTTP/1.1 without a host");
    FZ_CHECK(rq->framing == H1_FRAMING_NONE || rq->framing == H1_FRAMING_LENGTH ||
                 rq->framing == H1_FRAMING_CHUNKED,
             "request framing %d", rq->framing);
    FZ_CHECK(rq->framing != H1_FRAMING_CHUNKED || rq->version == 11, "chunked HTTP/1.0");
    FZ_CHECK(rq->content_length <= INT64_MAX, "Content-Length past 2^63-1");
    FZ_CHECK(!rq->upgrade || rq->upgrade_value.data != NULL, "upgrade without a value");
    fz_check_headers(&rq->headers, head, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena *a = arena_new(4096, 8u << 20);
    FZ_CHECK(a != NULL, "arena_new");
    h1_parser_t p;
    h1_parser_init(&p);

    size_t off = 0;
    for (int m = 0; m < MAX_MESSAGES && off < size; m++) {
        const char *buf = (const char *)data + off;
        size_t len = size - off;
        char *copy = fz_dup(buf, len);
        ssize_t hl = fz_scan_checked(copy, len, MAX_HEADER, 1);
        free(copy);
        if (hl <= 0) {
            FZ_CHECK(hl == 0 || hl == -400 || hl == -414 || hl == -431 || hl == -505,
                     "scan status %zd", hl);
            break;
        }

        char *head = fz_dup(buf, (size_t)hl);
        h1_request_t rq;
        h1_parser_reset(&p);
        int rc = h1_parse_request(a, &p, head, (size_t)hl, &rq);
        if (rc < 0) {
            FZ_CHECK(rc == -400 || rc == -501 || rc == -505, "parse status %d", rc);
            free(head);
            break;
        }
        FZ_CHECK(rc == 0, "parse returned %d", rc);
        check_request(&rq, head, (size_t)hl);
        check_normalize(a, rq.path);
        check_roundtrip(a, &rq);

        /* the body, then whatever follows it is the next request */
        off += (size_t)hl;
        char *body = fz_dup(data + off, size - off);
        int done = 0;
        uint64_t decoded = 0;
        ssize_t used = fz_drain_body(&p, body, size - off, 4, &done, &decoded, NULL);
        free(body);
        free(head);
        if (used < 0) {
            FZ_CHECK(used == -400 || used == -431, "body status %zd", used);
            break;
        }
        if (rq.framing == H1_FRAMING_NONE)
            FZ_CHECK(done && used == 0, "a request without a body consumed %zd", used);
        if (rq.framing == H1_FRAMING_LENGTH)
            FZ_CHECK(decoded == (uint64_t)used &&
                         (done ? decoded == rq.content_length : decoded < rq.content_length),
                     "Content-Length body: %llu of %llu, done %d", (unsigned long long)decoded,
                     (unsigned long long)rq.content_length, done);
        if (!done)
            break;
        off += (size_t)used;
        arena_reset(a);
    }
    arena_free(a);
    return 0;
}
