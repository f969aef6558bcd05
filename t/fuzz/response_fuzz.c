/*
 * Fuzz target: the upstream response path.
 *
 * The input is the bytes an upstream sends: a response head (1xx interim
 * heads first, as many as it likes), then the body, then whatever follows.
 * Every head goes through fz_scan_checked in response mode and
 * h1_parse_response twice, as the answer to a GET and to a HEAD; the GET
 * reading then decodes the body (h1_body_feed, h1_body_eof at the end of the
 * input), and both readings are serialised again with h1_response_size /
 * h1_serialize_response and parsed back.
 *
 * Invariants beyond "no sanitizer report":
 *  - the parsed response has a status of 100..599 that matches its status
 *    line, version 10 or 11, fields that point into the head and nothing
 *    hop-by-hop kept; a HEAD answer, 1xx, 204 and 304 have no body;
 *    close-delimited responses are never keepalive;
 *  - the GET and HEAD readings agree on everything but framing;
 *  - h1_response_size is exact, one byte less room is -1;
 *  - the serialised head parses again with the same status, version,
 *    reason, framing, Content-Length, keepalive and kept fields;
 *  - a Content-Length body decodes to exactly min(length, bytes) bytes and
 *    EOF is a clean end only when it is complete; a close-delimited body
 *    is everything and always ends cleanly at EOF.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "fuzz_h1.h"

#define MAX_HEADER 16384
#define MAX_HEADS 6

static void check_response(const h1_response_t *rs, const char *head, size_t len, int is_head)
{
    FZ_CHECK(rs->version == 10 || rs->version == 11, "version %d", rs->version);
    FZ_CHECK(rs->status >= 100 && rs->status <= 599, "status %d", rs->status);
    int line_status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    FZ_CHECK(rs->status == line_status, "status %d, status line says %d", rs->status,
             line_status);
    FZ_CHECK(fz_points_into(rs->reason, head, len) || rs->reason.len == 0, "reason");
    fz_check_headers(&rs->headers, head, len);
    int no_body = is_head || h1_status_has_no_body(rs->status);
    if (no_body)
        FZ_CHECK(rs->framing == H1_FRAMING_NONE, "status %d (HEAD %d) has framing %d",
                 rs->status, is_head, rs->framing);
    else
        FZ_CHECK(rs->framing != H1_FRAMING_NONE, "status %d with a body has framing NONE",
                 rs->status);
    if (rs->framing == H1_FRAMING_CLOSE)
        FZ_CHECK(!rs->keepalive, "close-delimited response is keepalive");
    if (rs->framing == H1_FRAMING_CHUNKED)
        FZ_CHECK(rs->version == 11, "chunked HTTP/1.0 response");
    if (rs->framing == H1_FRAMING_LENGTH)
        FZ_CHECK(rs->has_content_length, "LENGTH without has_content_length");
    FZ_CHECK(rs->is_1xx == (rs->status >= 100 && rs->status < 200 && rs->status != 101),
             "is_1xx %d for %d", rs->is_1xx, rs->status);
    FZ_CHECK(!rs->upgrade || rs->status == 101, "upgrade on %d", rs->status);
    if (rs->status == 101)
        FZ_CHECK(!rs->keepalive, "101 is keepalive");
}

static void check_roundtrip(struct arena *a, const h1_response_t *rs, int is_head)
{
    size_t need = h1_response_size(rs->version, rs->status, rs->reason, &rs->headers,
                                   rs->framing, rs->content_length, rs->keepalive);
    char *out = malloc(need);
    FZ_CHECK(out != NULL, "malloc %zu", need);
    ssize_t w = h1_serialize_response(out, need - 1, rs->version, rs->status, rs->reason,
                                      &rs->headers, rs->framing, rs->content_length,
                                      rs->keepalive);
    FZ_CHECK(w == -1, "serialising into one byte less than %zu gave %zd", need, w);
    w = h1_serialize_response(out, need, rs->version, rs->status, rs->reason, &rs->headers,
                              rs->framing, rs->content_length, rs->keepalive);
    FZ_CHECK(w >= 0 && (size_t)w == need, "serialised %zd bytes, h1_response_size said %zu", w,
             need);
    ssize_t hl = h1_scan_head(out, need, 1 << 20, 0);
    FZ_CHECK(hl == (ssize_t)need, "serialised response head scans as %zd:\n%.*s", hl, (int)need,
             out);
    h1_parser_t p2;
    h1_response_t r2;
    h1_parser_init(&p2);
    int rc = h1_parse_response(a, &p2, out, need, is_head, &r2);
    FZ_CHECK(rc == 0, "serialised response does not parse again (%d):\n%.*s", rc, (int)need,
             out);
    FZ_CHECK(r2.status == rs->status && r2.version == rs->version, "status line changed");
    weir_str_t reason = rs->reason.len ? rs->reason
                                       : (weir_str_t){h1_reason(rs->status),
                                                      strlen(h1_reason(rs->status))};
    FZ_CHECK(fz_str_eq(r2.reason, reason), "reason '%s' came back as '%s'", fz_show(reason),
             fz_show(r2.reason));
    FZ_CHECK(r2.framing == rs->framing, "framing %d came back as %d", rs->framing, r2.framing);
    if (rs->framing == H1_FRAMING_LENGTH)
        FZ_CHECK(r2.content_length == rs->content_length, "Content-Length changed");
    FZ_CHECK(r2.keepalive == rs->keepalive, "keepalive %d came back as %d", rs->keepalive,
             r2.keepalive);
    fz_check_same_fields(&rs->headers, &r2.headers, "response round trip");
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena *a = arena_new(4096, 8u << 20);
    FZ_CHECK(a != NULL, "arena_new");
    h1_parser_t p, ph;
    h1_parser_init(&p);
    h1_parser_init(&ph);

    size_t off = 0;
    for (int m = 0; m < MAX_HEADS && off < size; m++) {
        const char *buf = (const char *)data + off;
        size_t len = size - off;
        char *copy = fz_dup(buf, len);
        ssize_t hl = fz_scan_checked(copy, len, MAX_HEADER, 0);
        free(copy);
        if (hl <= 0) {
            FZ_CHECK(hl == 0 || hl == -400 || hl == -431 || hl == -505, "scan status %zd", hl);
            break;
        }

        char *head = fz_dup(buf, (size_t)hl);
        h1_response_t rs, rh;
        h1_parser_reset(&p);
        h1_parser_reset(&ph);
        int rc = h1_parse_response(a, &p, head, (size_t)hl, 0, &rs);
        int rch = h1_parse_response(a, &ph, head, (size_t)hl, 1, &rh);
        /* HEAD only changes framing; a response refused for one reading
         * may be fine for the other only through its framing fields */
        if (rc == 0 && rch == 0) {
            FZ_CHECK(rs.status == rh.status && rs.version == rh.version &&
                         fz_str_eq(rs.reason, rh.reason) &&
                         rs.has_content_length == rh.has_content_length &&
                         (!rs.has_content_length || rs.content_length == rh.content_length),
                     "GET and HEAD readings of one head differ");
            fz_check_same_fields(&rs.headers, &rh.headers, "GET vs HEAD");
        }
        if (rch == 0) {
            check_response(&rh, head, (size_t)hl, 1);
            check_roundtrip(a, &rh, 1);
        } else {
            FZ_CHECK(rch < 0, "HEAD parse %d", rch);
        }
        if (rc < 0) {
            free(head);
            break;
        }
        FZ_CHECK(rc == 0, "parse returned %d", rc);
        check_response(&rs, head, (size_t)hl, 0);
        check_roundtrip(a, &rs, 0);
        off += (size_t)hl;
        free(head);

        if (rs.is_1xx) {
            arena_reset(a);
            continue; /* an interim answer: the next head follows directly */
        }
        if (rs.status == 101)
            break; /* the connection is a tunnel now */

        char *body = fz_dup(data + off, size - off);
        int done = 0;
        uint64_t decoded = 0;
        ssize_t used = fz_drain_body(&p, body, size - off, 3, &done, &decoded, NULL);
        free(body);
        if (used < 0) {
            FZ_CHECK(used == -400 || used == -431, "body status %zd", used);
            FZ_CHECK(h1_body_eof(&p) == 0, "EOF after a body error is a clean end");
            break;
        }
        switch (rs.framing) {
        case H1_FRAMING_NONE:
            FZ_CHECK(done && used == 0, "no-body response consumed %zd", used);
            break;
        case H1_FRAMING_LENGTH: {
            uint64_t want = rs.content_length < size - off ? rs.content_length : size - off;
            FZ_CHECK(decoded == want && (uint64_t)used == want, "Content-Length body %llu/%llu",
                     (unsigned long long)decoded, (unsigned long long)want);
            FZ_CHECK(done == (rs.content_length <= size - off), "Content-Length done %d", done);
            break;
        }
        case H1_FRAMING_CLOSE:
            FZ_CHECK(!done && (size_t)used == size - off && decoded == size - off,
                     "close-delimited body: %zd used, %llu decoded, done %d", used,
                     (unsigned long long)decoded, done);
            break;
        case H1_FRAMING_CHUNKED:
            FZ_CHECK(decoded <= (uint64_t)used, "chunked decoded more than it consumed");
            break;
        }
        if (!done) {
            /* the upstream closes here */
            int clean = h1_body_eof(&p);
            FZ_CHECK(clean == (rs.framing == H1_FRAMING_CLOSE ||
                               (rs.framing == H1_FRAMING_LENGTH && rs.content_length == 0)),
                     "EOF with framing %d: clean %d", rs.framing, clean);
            break;
        }
        FZ_CHECK(h1_body_eof(&p) == 1, "EOF after a complete body is not clean");
        off += (size_t)used;
        arena_reset(a);
    }
    arena_free(a);
    return 0;
}
