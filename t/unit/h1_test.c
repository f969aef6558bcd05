/* HTTP/1.x codec: head scanning and parsing (table-driven), chunked and
 * length bodies, responses, serialisation, and the smuggling corpus. */
#include <check.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "h1.h"

#define MAX_HDR 8192

static struct arena *A;

static void setup(void)
{
    A = arena_new(4096, 4u << 20);
}

static void teardown(void)
{
    arena_free(A);
    A = NULL;
}

static int str_is(weir_str_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.data, want, s.len) == 0;
}

static const header_entry_t *find_kept(const weir_headers_t *h, const char *name)
{
    return headers_find(h, (weir_str_t){name, strlen(name)});
}

static size_t kept_count(const weir_headers_t *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        n += h->v[i].name.len != 0;
    return n;
}

/* Scan, then parse. Returns the scan error, 1 for "incomplete", or the
 * parse result. */
static int scan_parse(const char *raw, size_t len, h1_parser_t *p, h1_request_t *rq,
                      size_t *headlen)
{
    ssize_t n = h1_scan_head(raw, len, MAX_HDR, 1);
    if (n < 0)
        return (int)n;
    if (n == 0)
        return 1;
    if (headlen)
        *headlen = (size_t)n;
    h1_parser_init(p);
    return h1_parse_request(A, p, raw, (size_t)n, rq);
}

/* ------------------------------------------------------------ request table */

enum { UNCHK = 0, YES = 1, NO = 2 };
enum { FR_NONE = 1, FR_LEN, FR_CHUNKED };
static const char NOQ[] = "<no query>";
#define KEPT(n) ((n) + 1)

struct req_case {
    const char *name;
    const char *raw;
    size_t len;
    int expect; /* 0 valid, else the negative status */
    const char *method, *path, *query, *host, *authority;
    int version, framing;
    uint64_t cl;
    int keepalive, expect_continue, upgrade;
    int kept;        /* KEPT(n): kept fields; 0 unchecked */
    const char *has; /* a kept field ... */
    const char *has_val; /* ... with this value (NULL: any) */
    const char *gone;    /* a field that must not be kept */
};

#define REQ(nm, s, ...) {.name = nm, .raw = s, .len = sizeof(s) - 1, __VA_ARGS__}
#define BAD(nm, s, st) {.name = nm, .raw = s, .len = sizeof(s) - 1, .expect = st}
#define UA "User-Agent: t\r\n"
#define PH "POST / HTTP/1.1\r\nHost: a\r\n"
#define GH "GET / HTTP/1.1\r\nHost: a\r\n"

static const struct req_case req_cases[] = {
    /* valid */
    REQ("simple", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", .method = "GET", .path = "/",
        .query = NOQ, .host = "example.com", .version = 11, .framing = FR_NONE,
        .keepalive = YES, .expect_continue = NO, .upgrade = NO, .kept = KEPT(1)),
    REQ("query and port", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
        .path = "/a/b", .query = "x=1&y=2", .host = "example.com",
        .authority = "Example.COM:8080"),
    REQ("empty query", "GET /a? HTTP/1.1\r\nHost: a\r\n\r\n", .path = "/a", .query = ""),
    REQ("post length", "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
        .method = "POST", .framing = FR_LEN, .cl = 5, .kept = KEPT(1), .gone = "Content-Length"),
    REQ("length zero", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        .framing = FR_LEN, .cl = 0),
    REQ("length leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
        .framing = FR_LEN, .cl = 7),
    REQ("length max", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n",
        .framing = FR_LEN, .cl = 9223372036854775807ull),
    REQ("chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        .framing = FR_CHUNKED, .kept = KEPT(1), .gone = "Transfer-Encoding"),
    REQ("chunked upper", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
        .framing = FR_CHUNKED),
    REQ("chunked list empties", PH "Transfer-Encoding: , chunked\r\n\r\n",
        .framing = FR_CHUNKED),
    REQ("http/1.0 no host", "GET / HTTP/1.0\r\n\r\n", .version = 10, .host = "",
        .keepalive = NO),
    REQ("http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        .version = 10, .keepalive = YES, .kept = KEPT(0)),
    REQ("http/1.0 expect ignored", "POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
        .expect_continue = NO),
    REQ("connection close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        .keepalive = NO, .kept = KEPT(1), .gone = "Connection"),
    REQ("keep-alive and close", GH "Connection: keep-alive, close\r\n\r\n",
        .keepalive = NO),
    REQ("expect continue",
        "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
        .expect_continue = YES, .framing = FR_LEN, .cl = 3, .has = "Expect"),
    REQ("websocket upgrade",
        "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        .upgrade = YES, .kept = KEPT(1), .gone = "Upgrade"),
    REQ("upgrade without connection", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
        .upgrade = NO, .kept = KEPT(1)),
    REQ("absolute-form", "GET http://Example.com:81/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
        .host = "example.com", .path = "/p", .query = "q=1", .authority = "Example.com:81",
        .has = "Host", .has_val = "Example.com:81"),
    REQ("absolute-form no path", "GET http://a.b HTTP/1.1\r\nHost: a.b\r\n\r\n", .path = "/",
        .query = NOQ, .host = "a.b"),
    REQ("absolute-form query only", "GET HTTPS://a.b?x HTTP/1.1\r\nHost: a.b\r\n\r\n",
        .path = "/", .query = "x"),
    REQ("ipv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", .host = "[::1]"),
    REQ("ipv4 host", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", .host = "127.0.0.1"),
    REQ("pct host", "GET / HTTP/1.1\r\nHost: a%2Db.c\r\n\r\n", .host = "a%2db.c"),
    REQ("options star", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", .path = "*"),
    REQ("leading crlf", "\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n", .path = "/x"),
    REQ("empty value", "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", .has = "X-Empty",
        .has_val = ""),
    REQ("ows trimmed", "GET / HTTP/1.1\r\nHost: a\r\nX-A: \t v  w \t\r\n\r\n", .has = "X-A",
        .has_val = "v  w"),
    REQ("obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\n\r\n", .has = "X-A"),
    REQ("underscore te dropped",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        .framing = FR_LEN, .cl = 5, .kept = KEPT(1), .gone = "Transfer_Encoding"),
    REQ("underscore cl dropped", "GET / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n",
        .framing = FR_NONE, .kept = KEPT(1)),
    REQ("hop-by-hop removed",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, keep-alive\r\nX-Foo: 1\r\nX-Bar: 2\r\n"
        "Keep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: X-T\r\n\r\n",
        .kept = KEPT(2), .gone = "X-Foo", .has = "X-Bar", .has_val = "2"),
    REQ("custom method rejected by llhttp", "FROB / HTTP/1.1\r\nHost: a\r\n\r\n", .expect = -501),
    REQ("connect", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", .expect = -501),

    /* line endings and bytes */
    BAD("CRLF CR X ends head early in llhttp", "GET / HTTP/1.1\r\nHost: a\r\n\rX: y\r\n\r\n", -400),
    BAD("CRLF CR X partial", "GET / HTTP/1.1\r\nHost: a\r\n\rX", -400),
    BAD("bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n", -400),
    BAD("bare LF final", "GET / HTTP/1.1\r\nHost: a\r\n\n", -400),
    BAD("bare LF in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nc\r\n\r\n", -400),
    BAD("bare CR line end", "GET / HTTP/1.1\rHost: a\r\n\r\n", -400),
    BAD("CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", -400),
    BAD("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n", -400),
    BAD("CTL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01\r\n\r\n", -400),
    BAD("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\r\n\r\n", -400),
    BAD("obs-fold SP", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", -400),
    BAD("obs-fold HTAB", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", -400),
    BAD("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", -400),
    BAD("tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n", -400),
    BAD("empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", -400),
    BAD("name with space", "GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", -400),
    BAD("name with CTL", "GET / HTTP/1.1\r\nHost: a\r\nX\x01A: b\r\n\r\n", -400),
    BAD("name with separator (", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", -400),
    BAD("name with separator /", "GET / HTTP/1.1\r\nHost: a\r\nX/A: b\r\n\r\n", -400),
    BAD("name with separator @", "GET / HTTP/1.1\r\nHost: a\r\nX@A: b\r\n\r\n", -400),
    BAD("name with non-ascii", "GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n", -400),
    BAD("line without colon", "GET / HTTP/1.1\r\nHost: a\r\nXA\r\n\r\n", -400),
    BAD("leading space line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", -400),

    /* framing */
    BAD("CL and TE", PH "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", -400),
    BAD("TE and CL", PH "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -400),
    BAD("duplicate CL equal", PH "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", -400),
    BAD("duplicate CL differing", PH "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", -400),
    BAD("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", -400),
    BAD("CL letters", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", -400),
    BAD("CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", -400),
    BAD("CL plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", -400),
    BAD("CL suffix", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5a\r\n\r\n", -400),
    BAD("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", -400),
    BAD("CL overflow", PH "Content-Length: 9223372036854775808\r\n\r\n", -400),
    BAD("CL huge", PH "Content-Length: 99999999999999999999999\r\n\r\n", -400),
    BAD("TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400),
    BAD("TE gzip, chunked", PH "Transfer-Encoding: gzip, chunked\r\n\r\n", -501),
    BAD("TE gzip then chunked lines",
        PH "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", -501),
    BAD("TE chunked, gzip", PH "Transfer-Encoding: chunked, gzip\r\n\r\n", -400),
    BAD("TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", -400),
    BAD("TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -400),
    BAD("TE chunked twice", PH "Transfer-Encoding: chunked, chunked\r\n\r\n", -400),
    BAD("TE chunked params", PH "Transfer-Encoding: chunked;q=1\r\n\r\n", -400),
    BAD("TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", -400),
    BAD("TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", -400),
    BAD("TE nested", PH "Transfer-Encoding: cow chunked bar\r\n\r\n", -400),
    BAD("TE space before colon", PH "Transfer-Encoding : chunked\r\n\r\n", -400),
    BAD("Connection names CL", GH "Connection: content-length\r\n\r\n", -400),
    BAD("Connection names TE", GH "Connection: close, Transfer-Encoding\r\n\r\n", -400),
    BAD("Connection names Host", "GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n", -400),
    BAD("Connection not a token", "GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n", -400),

    /* Host and target */
    BAD("missing Host", "GET / HTTP/1.1\r\n" UA "\r\n", -400),
    BAD("duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", -400),
    BAD("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", -400),
    BAD("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", -400),
    BAD("Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", -400),
    BAD("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", -400),
    BAD("Host bad port", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", -400),
    BAD("Host empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", -400),
    BAD("Host port letters", "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", -400),
    BAD("Host open ipv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", -400),
    BAD("Host bad pct", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", -400),
    BAD("HTTP/1.0 invalid Host", "GET / HTTP/1.0\r\nHost: a b\r\n\r\n", -400),
    BAD("fragment in target", "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("absolute-form userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("absolute-form bad host", "GET http://a b/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("absolute-form empty host", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("absolute-form ftp", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("star with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("non-ascii target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", -400),

    /* request line and version */
    BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", -505),
    BAD("h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", -505),
    BAD("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", -505),
    BAD("HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", -505),
    BAD("HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", -505),
    BAD("HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", -400),
    BAD("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("short version", "GET / HTTP/1\r\nHost: a\r\n\r\n", -400),
    BAD("no version", "GET /\r\nHost: a\r\n\r\n", -400),
    BAD("double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", -400),
    BAD("tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("method separator", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
};

#define N_REQ (sizeof(req_cases) / sizeof(req_cases[0]))

START_TEST(test_request_table)
{
    const struct req_case *c = &req_cases[_i];
    h1_parser_t p;
    h1_request_t rq;
    int r = scan_parse(c->raw, c->len, &p, &rq, NULL);
    ck_assert_msg(r == c->expect, "%s: got %d, want %d", c->name, r, c->expect);
    if (c->expect)
        return;
    if (c->method)
        ck_assert_msg(str_is(rq.method, c->method), "%s: method", c->name);
    if (c->path)
        ck_assert_msg(str_is(rq.path, c->path), "%s: path %.*s", c->name, (int)rq.path.len,
                      rq.path.data);
    if (c->query == NOQ)
        ck_assert_msg(rq.query.data == NULL, "%s: query present", c->name);
    else if (c->query)
        ck_assert_msg(rq.query.data && str_is(rq.query, c->query), "%s: query", c->name);
    if (c->host)
        ck_assert_msg(str_is(rq.host, c->host), "%s: host %.*s", c->name, (int)rq.host.len,
                      rq.host.data);
    if (c->authority)
        ck_assert_msg(str_is(rq.authority, c->authority), "%s: authority", c->name);
    if (c->version)
        ck_assert_int_eq(rq.version, c->version);
    if (c->framing)
        ck_assert_msg((int)rq.framing == c->framing - 1, "%s: framing %d", c->name, rq.framing);
    if (c->framing == FR_LEN)
        ck_assert_uint_eq(rq.content_length, c->cl);
    if (c->keepalive)
        ck_assert_msg(rq.keepalive == (c->keepalive == YES), "%s: keepalive", c->name);
    if (c->expect_continue)
        ck_assert_msg(rq.expect_continue == (c->expect_continue == YES), "%s: expect", c->name);
    if (c->upgrade)
        ck_assert_msg(rq.upgrade == (c->upgrade == YES), "%s: upgrade", c->name);
    if (c->kept)
        ck_assert_msg(kept_count(&rq.headers) == (size_t)(c->kept - 1), "%s: kept %zu",
                      c->name, kept_count(&rq.headers));
    if (c->has) {
        const header_entry_t *e = find_kept(&rq.headers, c->has);
        ck_assert_msg(e != NULL, "%s: %s missing", c->name, c->has);
        if (c->has_val)
            ck_assert_msg(str_is(e->value, c->has_val), "%s: value '%.*s'", c->name,
                          (int)e->value.len, e->value.data);
    }
    if (c->gone)
        ck_assert_msg(find_kept(&rq.headers, c->gone) == NULL, "%s: %s kept", c->name, c->gone);
}
END_TEST

/* Every valid head is incomplete at every shorter prefix, and the resumable
 * scan agrees with the stateless one byte by byte. */
START_TEST(test_scan_incremental)
{
    for (size_t k = 0; k < N_REQ; k++) {
        const struct req_case *c = &req_cases[k];
        if (c->expect)
            continue;
        ssize_t full = h1_scan_head(c->raw, c->len, MAX_HDR, 1);
        ck_assert_int_eq(full, (ssize_t)c->len);
        h1_scan_t st;
        h1_scan_init(&st);
        for (size_t n = 0; n < c->len; n++) {
            ck_assert_msg(h1_scan_head(c->raw, n, MAX_HDR, 1) == 0, "%s at %zu", c->name, n);
            ck_assert_msg(h1_scan_head_r(&st, c->raw, n, MAX_HDR, 1) == 0, "%s r at %zu",
                          c->name, n);
        }
        ck_assert_int_eq(h1_scan_head_r(&st, c->raw, c->len, MAX_HDR, 1), (ssize_t)c->len);
    }
}
END_TEST

/* Invalid heads fed byte by byte are refused with the same status. */
START_TEST(test_scan_incremental_bad)
{
    for (size_t k = 0; k < N_REQ; k++) {
        const struct req_case *c = &req_cases[k];
        ssize_t full = h1_scan_head(c->raw, c->len, MAX_HDR, 1);
        if (full >= 0)
            continue;
        h1_scan_t st;
        h1_scan_init(&st);
        ssize_t r = 0;
        for (size_t n = 0; n <= c->len && r == 0; n++)
            r = h1_scan_head_r(&st, c->raw, n, MAX_HDR, 1);
        ck_assert_msg(r == full, "%s: %zd vs %zd", c->name, r, full);
    }
}
END_TEST

START_TEST(test_scan_limits)
{
    size_t big = H1_MAX_START_LINE + 100;
    char *b = malloc(big + MAX_HDR * 2);
    ck_assert_ptr_nonnull(b);
    /* Request line at the limit is fine. */
    size_t pre = strlen("GET /"), post = strlen(" HTTP/1.1");
    memcpy(b, "GET /", pre);
    memset(b + pre, 'a', H1_MAX_START_LINE - pre - post);
    memcpy(b + H1_MAX_START_LINE - post, " HTTP/1.1\r\nHost: a\r\n\r\n", post + 13);
    ck_assert_int_eq(h1_scan_head(b, H1_MAX_START_LINE + 13, MAX_HDR, 1), H1_MAX_START_LINE + 13);
    /* One more byte: 414, complete or not. */
    memcpy(b, "GET /", pre);
    memset(b + pre, 'a', H1_MAX_START_LINE + 1 - pre - post);
    memcpy(b + H1_MAX_START_LINE + 1 - post, " HTTP/1.1\r\nHost: a\r\n\r\n", post + 13);
    ck_assert_int_eq(h1_scan_head(b, H1_MAX_START_LINE + 14, MAX_HDR, 1), -414);
    ck_assert_int_eq(h1_scan_head(b, H1_MAX_START_LINE + 1, MAX_HDR, 1), -414);
    ck_assert_int_eq(h1_scan_head(b, H1_MAX_START_LINE, MAX_HDR, 1), 0);
    /* Header section over max_header_size: 431 as soon as it is exceeded. */
    size_t n = 0;
    n += (size_t)sprintf(b, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    size_t start_end = strlen("GET / HTTP/1.1\r\n");
    memset(b + n, 'v', MAX_HDR);
    ck_assert_int_eq(h1_scan_head(b, start_end + MAX_HDR, MAX_HDR, 1), 0);
    ck_assert_int_eq(h1_scan_head(b, start_end + MAX_HDR + 1, MAX_HDR, 1), -431);
    n += MAX_HDR;
    memcpy(b + n, "\r\n\r\n", 4);
    ck_assert_int_eq(h1_scan_head(b, n + 4, MAX_HDR, 1), -431);
    /* Exactly max_header_size is accepted. */
    size_t hs = n + 4 - start_end;
    ck_assert_int_eq(h1_scan_head(b, n + 4, hs, 1), (ssize_t)(n + 4));
    ck_assert_int_eq(h1_scan_head(b, n + 4, hs - 1, 1), -431);
    /* Many leading empty lines are refused. */
    char crlfs[80];
    for (int i = 0; i < 40; i++)
        memcpy(crlfs + 2 * i, "\r\n", 2);
    ck_assert_int_eq(h1_scan_head(crlfs, sizeof(crlfs), MAX_HDR, 1), -400);
    free(b);
}
END_TEST

/* ------------------------------------------------------------------ bodies */

static const char post_chunked[] = PH "Transfer-Encoding: chunked\r\n\r\n";

/* Decodes body in pieces of `step` bytes with at most max_out slices per
 * call; appends the payload to out. Returns consumed bytes, or the error. */
static ssize_t decode(h1_parser_t *p, const char *body, size_t len, size_t step, size_t max_out,
                      char *out, size_t *outlen, int *done)
{
    size_t off = 0, have = 0;
    weir_str_t sl[8];
    *outlen = 0;
    *done = 0;
    /* The caller's window grows by step bytes per receive, like a socket. */
    while (!*done) {
        size_t avail = have + step;
        if (avail > len - off)
            avail = len - off;
        size_t nout;
        ssize_t r = h1_body_feed(p, body + off, avail, sl, max_out, &nout, done);
        if (r < 0)
            return r;
        for (size_t i = 0; i < nout; i++) {
            memcpy(out + *outlen, sl[i].data, sl[i].len);
            *outlen += sl[i].len;
        }
        off += (size_t)r;
        have = avail - (size_t)r;
        if (!*done && off == len && r == 0)
            break;
    }
    return (ssize_t)off;
}

static void start_chunked(h1_parser_t *p)
{
    h1_request_t rq;
    ck_assert_int_eq(scan_parse(post_chunked, sizeof(post_chunked) - 1, p, &rq, NULL), 0);
    ck_assert_int_eq(rq.framing, H1_FRAMING_CHUNKED);
}

START_TEST(test_chunked_pieces)
{
    static const char body[] =
        "5\r\nhello\r\n6;name=val;flag\r\n world\r\n1 ; q = \"a\\\"b\"\r\n!\r\n"
        "0\r\nX-Trailer: yes\r\nX-Other:\r\n\r\nNEXT";
    size_t blen = sizeof(body) - 1 - 4;
    char out[64];
    size_t outlen;
    int done;
    size_t steps[] = {1, 2, 3, 7, sizeof(body)};
    size_t outs[] = {1, 2, 8};
    for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        for (size_t o = 0; o < sizeof(outs) / sizeof(outs[0]); o++) {
            h1_parser_t p;
            start_chunked(&p);
            ssize_t r = decode(&p, body, sizeof(body) - 1, steps[s], outs[o], out, &outlen, &done);
            ck_assert_msg(r == (ssize_t)blen, "step %zu out %zu: %zd", steps[s], outs[o], r);
            ck_assert_int_eq(done, 1);
            ck_assert_uint_eq(outlen, 12);
            ck_assert(memcmp(out, "hello world!", 12) == 0);
            ck_assert(h1_body_eof(&p) == 1);
        }
    }
}
END_TEST

struct body_case {
    const char *name;
    const char *body;
    int expect; /* 0: decodes completely */
};

static const struct body_case chunk_cases[] = {
    {"plain", "5\r\nhello\r\n0\r\n\r\n", 0},
    {"upper hex", "A\r\n0123456789\r\n0\r\n\r\n", 0},
    {"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", 0},
    {"ext token", "5;a=b\r\nhello\r\n0;last\r\n\r\n", 0},
    {"ext bws", "5 ;a = b\r\nhello\r\n0\r\n\r\n", 0},
    {"ext quoted", "5;a=\"x y;z\"\r\nhello\r\n0\r\n\r\n", 0},
    {"ext many", "5;a;b=c;d=\"e\"\r\nhello\r\n0\r\n\r\n", 0},
    {"trailers", "5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: two words\r\n\r\n", 0},
    {"size 0x5", "0x5\r\nhello\r\n0\r\n\r\n", -400},
    {"size -1", "-1\r\nx\r\n0\r\n\r\n", -400},
    {"size overflow", "ffffffffffffffffff\r\nx\r\n0\r\n\r\n", -400},
    {"size 2^64-1", "ffffffffffffffff\r\nx\r\n0\r\n\r\n", -400},
    {"size leading space", " 5\r\nhello\r\n0\r\n\r\n", -400},
    {"size trailing space", "5 \r\nhello\r\n0\r\n\r\n", -400},
    {"size trailing tab", "5\t\r\nhello\r\n0\r\n\r\n", -400},
    {"size empty", "\r\nhello\r\n0\r\n\r\n", -400},
    {"size not hex", "g\r\nhello\r\n0\r\n\r\n", -400},
    {"size plus", "+5\r\nhello\r\n0\r\n\r\n", -400},
    {"size bare LF", "5\nhello\r\n0\r\n\r\n", -400},
    {"size bare CR", "5\rhello\r\n0\r\n\r\n", -400},
    {"data too long", "5\r\nhelloX\r\n0\r\n\r\n", -400},
    {"data bare LF", "5\r\nhello\n0\r\n\r\n", -400},
    {"ext empty", "5;\r\nhello\r\n0\r\n\r\n", -400},
    {"ext no name", "5;=b\r\nhello\r\n0\r\n\r\n", -400},
    {"ext no value", "5;a=\r\nhello\r\n0\r\n\r\n", -400},
    {"ext space in name", "5;a b\r\nhello\r\n0\r\n\r\n", -400},
    {"ext space in value", "5;a=b c\r\nhello\r\n0\r\n\r\n", -400},
    {"ext CTL", "5;a=\x01\r\nhello\r\n0\r\n\r\n", -400},
    {"ext unterminated quote", "5;a=\"x\r\nhello\r\n0\r\n\r\n", -400},
    {"ext bare LF", "5;a\nhello\r\n0\r\n\r\n", -400},
    {"ext trailing ws", "5;a \r\nhello\r\n0\r\n\r\n", -400},
    {"trailer CL", "5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n", -400},
    {"trailer TE", "5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
    {"trailer Host", "5\r\nhello\r\n0\r\nhost: evil\r\n\r\n", -400},
    {"trailer CL underscore", "5\r\nhello\r\n0\r\ncontent_length: 5\r\n\r\n", -400},
    {"trailer obs-fold", "5\r\nhello\r\n0\r\nX-A: 1\r\n 2\r\n\r\n", -400},
    {"trailer space before colon", "5\r\nhello\r\n0\r\nX-A : 1\r\n\r\n", -400},
    {"trailer empty name", "5\r\nhello\r\n0\r\n: 1\r\n\r\n", -400},
    {"trailer CTL", "5\r\nhello\r\n0\r\nX-A: \x01\r\n\r\n", -400},
    {"trailer bare LF", "5\r\nhello\r\n0\r\nX-A: 1\n\r\n", -400},
    {"trailer no colon", "5\r\nhello\r\n0\r\nX-A\r\n\r\n", -400},
    {"final bare LF", "5\r\nhello\r\n0\r\n\n", -400},
    {"final CR X", "5\r\nhello\r\n0\r\n\rX", -400},
};

START_TEST(test_chunk_table)
{
    const struct body_case *c = &chunk_cases[_i];
    size_t len = strlen(c->body);
    char out[64];
    size_t outlen;
    int done;
    size_t steps[] = {1, len};
    for (size_t s = 0; s < 2; s++) {
        h1_parser_t p;
        start_chunked(&p);
        ssize_t r = decode(&p, c->body, len, steps[s], 4, out, &outlen, &done);
        if (c->expect) {
            ck_assert_msg(r == c->expect, "%s step %zu: %zd", c->name, steps[s], r);
            /* The error sticks. */
            size_t nout;
            weir_str_t sl[2];
            ck_assert_int_eq(h1_body_feed(&p, "0\r\n\r\n", 5, sl, 2, &nout, &done), c->expect);
            ck_assert_int_eq(h1_body_eof(&p), 0);
        } else {
            ck_assert_msg(r == (ssize_t)len && done, "%s step %zu: %zd", c->name, steps[s], r);
        }
    }
}
END_TEST

START_TEST(test_trailer_limit)
{
    size_t n = H1_MAX_TRAILERS + 64;
    char *b = malloc(n + 16);
    size_t k = (size_t)sprintf(b, "0\r\nX-A: ");
    memset(b + k, 'a', n - k);
    h1_parser_t p;
    start_chunked(&p);
    weir_str_t sl[2];
    size_t nout;
    int done;
    ck_assert_int_eq(h1_body_feed(&p, b, n, sl, 2, &nout, &done), -431);
    free(b);
}
END_TEST

/* Pipelining: the body ends exactly where the next request starts. */
START_TEST(test_pipelined)
{
    static const char wire[] = "POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                               "POST /two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "3\r\nabc\r\n0\r\n\r\n"
                               "GET /three HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t len = sizeof(wire) - 1, off = 0;
    const char *paths[] = {"/one", "/two", "/three"};
    const char *bodies[] = {"hello", "abc", ""};
    h1_parser_t p;
    h1_parser_init(&p);
    for (int i = 0; i < 3; i++) {
        h1_request_t rq;
        ssize_t n = h1_scan_head(wire + off, len - off, MAX_HDR, 1);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(h1_parse_request(A, &p, wire + off, (size_t)n, &rq), 0);
        ck_assert(str_is(rq.path, paths[i]));
        off += (size_t)n;
        char out[16];
        size_t outlen;
        int done;
        ssize_t r = decode(&p, wire + off, len - off, len, 4, out, &outlen, &done);
        ck_assert_int_ge(r, 0);
        ck_assert_int_eq(done, 1);
        ck_assert_uint_eq(outlen, strlen(bodies[i]));
        ck_assert(memcmp(out, bodies[i], outlen) == 0);
        off += (size_t)r;
        h1_parser_reset(&p);
    }
    ck_assert_uint_eq(off, len);
}
END_TEST

START_TEST(test_length_body)
{
    static const char head[] = "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n";
    h1_parser_t p;
    h1_request_t rq;
    ck_assert_int_eq(scan_parse(head, sizeof(head) - 1, &p, &rq, NULL), 0);
    weir_str_t sl[1];
    size_t nout;
    int done;
    ck_assert_int_eq(h1_body_feed(&p, "0123", 4, sl, 1, &nout, &done), 4);
    ck_assert(nout == 1 && !done && sl[0].len == 4);
    ck_assert_int_eq(h1_body_eof(&p), 0); /* cut short */
    ck_assert_int_eq(h1_body_feed(&p, "456789GET", 9, sl, 1, &nout, &done), 6);
    ck_assert(nout == 1 && done && sl[0].len == 6);
    ck_assert_int_eq(h1_body_feed(&p, "GET", 3, sl, 1, &nout, &done), 0);
    ck_assert(done && nout == 0);
    ck_assert_int_eq(h1_body_eof(&p), 1);
    /* No body at all. */
    static const char get[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    ck_assert_int_eq(scan_parse(get, sizeof(get) - 1, &p, &rq, NULL), 0);
    ck_assert_int_eq(h1_body_feed(&p, "GET", 3, sl, 1, &nout, &done), 0);
    ck_assert(done && nout == 0);
}
END_TEST

/* --------------------------------------------------------------- responses */

struct resp_case {
    const char *name;
    const char *raw;
    size_t len;
    int head_req;
    int ok;
    int status, framing; /* FR_* or 4 for CLOSE */
    uint64_t cl;
    int keepalive, is_1xx, upgrade, has_cl;
};

#define FR_CLOSE 4
#define RESP(nm, s, ...) {.name = nm, .raw = s, .len = sizeof(s) - 1, .ok = 1, __VA_ARGS__}
#define RBAD(nm, s) {.name = nm, .raw = s, .len = sizeof(s) - 1, .ok = 0}

static const struct resp_case resp_cases[] = {
    RESP("200 length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", .status = 200,
         .framing = FR_LEN, .cl = 10, .keepalive = YES, .is_1xx = NO, .has_cl = YES),
    RESP("200 chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
         .framing = FR_CHUNKED, .keepalive = YES),
    RESP("200 close-delimited", "HTTP/1.1 200 OK\r\nX-A: b\r\n\r\n", .framing = FR_CLOSE,
         .keepalive = NO),
    RESP("HEAD with length", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", .head_req = 1,
         .framing = FR_NONE, .keepalive = YES, .has_cl = YES, .cl = 99),
    RESP("HEAD with chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
         .head_req = 1, .framing = FR_NONE, .keepalive = YES),
    RESP("HEAD without framing", "HTTP/1.1 200 OK\r\n\r\n", .head_req = 1, .framing = FR_NONE,
         .keepalive = YES),
    RESP("204", "HTTP/1.1 204 No Content\r\n\r\n", .status = 204, .framing = FR_NONE,
         .keepalive = YES),
    RESP("204 with CL 0", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
         .framing = FR_NONE),
    RESP("304 with length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
         .framing = FR_NONE, .has_cl = YES, .cl = 50),
    RESP("100 continue", "HTTP/1.1 100 Continue\r\n\r\n", .status = 100, .is_1xx = YES,
         .framing = FR_NONE),
    RESP("103 early hints", "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n",
         .status = 103, .is_1xx = YES, .framing = FR_NONE),
    RESP("101 upgrade",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
         .status = 101, .is_1xx = NO, .upgrade = YES, .framing = FR_NONE, .keepalive = NO),
    RESP("1.0 length", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", .framing = FR_LEN,
         .keepalive = NO),
    RESP("1.0 keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
         .keepalive = YES),
    RESP("connection close", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
         .keepalive = NO),
    RESP("no reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", .status = 200),
    RESP("empty reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", .status = 404),
    RESP("599", "HTTP/1.1 599 Custom\r\nContent-Length: 0\r\n\r\n", .status = 599),
    RBAD("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    RBAD("duplicate CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
    RBAD("invalid CL", "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n"),
    RBAD("TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    RBAD("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    RBAD("TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    RBAD("TE in 204", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
    RBAD("obs-fold", "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n"),
    RBAD("bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    RBAD("CR LF CR X", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\rX: y\r\n\r\n"),
    RBAD("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
    RBAD("NUL in value", "HTTP/1.1 200 OK\r\nX-A: \0\r\n\r\n"),
    RBAD("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n"),
    RBAD("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n"),
    RBAD("short status", "HTTP/1.1 20 OK\r\n\r\n"),
    RBAD("status 600", "HTTP/1.1 600 OK\r\n\r\n"),
    RBAD("status 099", "HTTP/1.1 099 OK\r\n\r\n"),
    RBAD("status letters", "HTTP/1.1 2x0 OK\r\n\r\n"),
    RBAD("no space", "HTTP/1.1 200OK\r\n\r\n"),
    RBAD("Connection names CL", "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\n\r\n"),
    RBAD("garbage", "ICY 200 OK\r\n\r\n"),
};

#define N_RESP (sizeof(resp_cases) / sizeof(resp_cases[0]))

START_TEST(test_response_table)
{
    const struct resp_case *c = &resp_cases[_i];
    ssize_t n = h1_scan_head(c->raw, c->len, MAX_HDR, 0);
    int r = (int)n;
    h1_response_t rs;
    h1_parser_t p;
    h1_parser_init(&p);
    if (n > 0) {
        ck_assert_int_eq(n, (ssize_t)c->len);
        r = h1_parse_response(A, &p, c->raw, (size_t)n, c->head_req, &rs);
    }
    if (!c->ok) {
        ck_assert_msg(r < 0, "%s: accepted", c->name);
        return;
    }
    ck_assert_msg(r == 0, "%s: %d", c->name, r);
    if (c->status)
        ck_assert_int_eq(rs.status, c->status);
    if (c->framing)
        ck_assert_msg((int)rs.framing == c->framing - 1, "%s: framing %d", c->name, rs.framing);
    if (c->cl)
        ck_assert_uint_eq(rs.content_length, c->cl);
    if (c->keepalive)
        ck_assert_msg(rs.keepalive == (c->keepalive == YES), "%s: keepalive", c->name);
    if (c->is_1xx)
        ck_assert_int_eq(rs.is_1xx, c->is_1xx == YES);
    if (c->upgrade)
        ck_assert_int_eq(rs.upgrade, c->upgrade == YES);
    if (c->has_cl)
        ck_assert_int_eq(rs.has_content_length, c->has_cl == YES);
    ck_assert(find_kept(&rs.headers, "Content-Length") == NULL);
    ck_assert(find_kept(&rs.headers, "Transfer-Encoding") == NULL);
    ck_assert(find_kept(&rs.headers, "Connection") == NULL);
}
END_TEST

START_TEST(test_response_bodies)
{
    static const char close_head[] = "HTTP/1.1 200 OK\r\n\r\n";
    h1_parser_t p;
    h1_response_t rs;
    h1_parser_init(&p);
    ck_assert_int_eq(h1_parse_response(A, &p, close_head, sizeof(close_head) - 1, 0, &rs), 0);
    weir_str_t sl[2];
    size_t nout;
    int done;
    ck_assert_int_eq(h1_body_feed(&p, "abc", 3, sl, 2, &nout, &done), 3);
    ck_assert(nout == 1 && !done);
    ck_assert_int_eq(h1_body_eof(&p), 1);
    ck_assert_int_eq(h1_body_feed(&p, "x", 1, sl, 2, &nout, &done), 0);
    ck_assert(done);

    /* A chunked response cut short is not a legal end. */
    static const char ch_head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    h1_parser_reset(&p);
    ck_assert_int_eq(h1_parse_response(A, &p, ch_head, sizeof(ch_head) - 1, 0, &rs), 0);
    ck_assert_int_eq(h1_body_feed(&p, "3\r\nab", 5, sl, 2, &nout, &done), 5);
    ck_assert_int_eq(h1_body_eof(&p), 0);

    /* Bytes beyond Content-Length are not part of the body. */
    static const char cl_head[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
    h1_parser_reset(&p);
    ck_assert_int_eq(h1_parse_response(A, &p, cl_head, sizeof(cl_head) - 1, 0, &rs), 0);
    ck_assert_int_eq(h1_body_feed(&p, "abEXTRA", 7, sl, 2, &nout, &done), 2);
    ck_assert(done);

    /* 1xx then the final response on the same bytes. */
    static const char two[] = "HTTP/1.1 100 Continue\r\n\r\n"
                              "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    ssize_t n = h1_scan_head(two, sizeof(two) - 1, MAX_HDR, 0);
    ck_assert_int_eq(n, 25);
    h1_parser_reset(&p);
    ck_assert_int_eq(h1_parse_response(A, &p, two, (size_t)n, 0, &rs), 0);
    ck_assert(rs.is_1xx);
    ssize_t m = h1_scan_head(two + n, sizeof(two) - 1 - (size_t)n, MAX_HDR, 0);
    ck_assert_int_gt(m, 0);
    h1_parser_reset(&p);
    ck_assert_int_eq(h1_parse_response(A, &p, two + n, (size_t)m, 0, &rs), 0);
    ck_assert(!rs.is_1xx && rs.status == 200 && rs.framing == H1_FRAMING_LENGTH);
}
END_TEST

/* ------------------------------------------------------------ serialisation */

static weir_str_t S(const char *s)
{
    return (weir_str_t){s, strlen(s)};
}

START_TEST(test_serialize_request)
{
    weir_headers_t h;
    headers_init(&h);
    headers_push(A, &h, S("Host"), S("ignored"));
    headers_push(A, &h, S("Accept"), S("*/*"));
    headers_push(A, &h, S("X-Removed"), S("gone"));
    h.v[2].name.len = 0;
    headers_push(A, &h, S("content-length"), S("999"));
    headers_push(A, &h, S("Transfer-Encoding"), S("gzip"));
    headers_push(A, &h, S("X-B"), S(""));
    char buf[512];
    static const char want[] = "POST /p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
                               "Accept: */*\r\nX-B: \r\nContent-Length: 12\r\n\r\n";
    size_t sz = h1_request_size(S("POST"), S("/p"), S("q=1"), S("example.com:8080"), &h,
                                H1_FRAMING_LENGTH, 12);
    ck_assert_uint_eq(sz, sizeof(want) - 1);
    ssize_t n = h1_serialize_request(buf, sizeof(buf), S("POST"), S("/p"), S("q=1"),
                                     S("example.com:8080"), &h, H1_FRAMING_LENGTH, 12);
    ck_assert_int_eq(n, (ssize_t)sizeof(want) - 1);
    ck_assert(memcmp(buf, want, (size_t)n) == 0);
    ck_assert_int_eq(h1_serialize_request(buf, sz - 1, S("POST"), S("/p"), S("q=1"),
                                          S("example.com:8080"), &h, H1_FRAMING_LENGTH, 12),
                     -1);

    static const char want2[] = "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    n = h1_serialize_request(buf, sizeof(buf), S("GET"), (weir_str_t){NULL, 0},
                             (weir_str_t){NULL, 0}, S("a"), NULL, H1_FRAMING_CHUNKED, 0);
    ck_assert_int_eq(n, (ssize_t)sizeof(want2) - 1);
    ck_assert(memcmp(buf, want2, (size_t)n) == 0);

    static const char want3[] = "GET /x? HTTP/1.1\r\nHost: a\r\n\r\n";
    n = h1_serialize_request(buf, sizeof(buf), S("GET"), S("/x"), S(""), S("a"), NULL,
                             H1_FRAMING_NONE, 0);
    ck_assert_int_eq(n, (ssize_t)sizeof(want3) - 1);
    ck_assert(memcmp(buf, want3, (size_t)n) == 0);

    /* Splitting attempts from a module are refused. */
    weir_headers_t bad;
    headers_init(&bad);
    headers_push(A, &bad, S("X-A"), S("a\r\nX-Injected: 1"));
    ck_assert_int_eq(h1_serialize_request(buf, sizeof(buf), S("GET"), S("/"),
                                          (weir_str_t){NULL, 0}, S("a"), &bad, H1_FRAMING_NONE,
                                          0),
                     -2);
    ck_assert_int_eq(h1_serialize_request(buf, sizeof(buf), S("GET"), S("/\r\n"),
                                          (weir_str_t){NULL, 0}, S("a"), NULL, H1_FRAMING_NONE,
                                          0),
                     -2);
}
END_TEST

START_TEST(test_serialize_response)
{
    weir_headers_t h;
    headers_init(&h);
    headers_push(A, &h, S("Content-Type"), S("text/plain"));
    headers_push(A, &h, S("Content-Length"), S("1"));
    char buf[512];
    static const char w1[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 0\r\n\r\n";
    ssize_t n = h1_serialize_response(buf, sizeof(buf), 11, 200, (weir_str_t){NULL, 0}, &h,
                                      H1_FRAMING_LENGTH, 0, 1);
    ck_assert_int_eq(n, (ssize_t)sizeof(w1) - 1);
    ck_assert(memcmp(buf, w1, (size_t)n) == 0);
    ck_assert_uint_eq(h1_response_size(11, 200, (weir_str_t){NULL, 0}, &h, H1_FRAMING_LENGTH, 0, 1),
                      sizeof(w1) - 1);

    static const char w2[] = "HTTP/1.0 404 Gone Fishing\r\nContent-Type: text/plain\r\n"
                             "Connection: keep-alive\r\nContent-Length: 123\r\n\r\n";
    n = h1_serialize_response(buf, sizeof(buf), 10, 404, S("Gone Fishing"), &h,
                              H1_FRAMING_LENGTH, 123, 1);
    ck_assert_int_eq(n, (ssize_t)sizeof(w2) - 1);
    ck_assert(memcmp(buf, w2, (size_t)n) == 0);

    static const char w3[] = "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n";
    n = h1_serialize_response(buf, sizeof(buf), 11, 502, (weir_str_t){NULL, 0}, NULL,
                              H1_FRAMING_CHUNKED, 0, 0);
    ck_assert_int_eq(n, (ssize_t)sizeof(w3) - 1);
    ck_assert(memcmp(buf, w3, (size_t)n) == 0);
    ck_assert_uint_eq(h1_response_size(11, 502, (weir_str_t){NULL, 0}, NULL, H1_FRAMING_CHUNKED,
                                       0, 0),
                      sizeof(w3) - 1);
    ck_assert_int_eq(h1_serialize_response(buf, sizeof(w3) - 2, 11, 502, (weir_str_t){NULL, 0},
                                           NULL, H1_FRAMING_CHUNKED, 0, 0),
                     -1);

    static const char w4[] = "HTTP/1.1 204 No Content\r\n\r\n";
    n = h1_serialize_response(buf, sizeof(buf), 11, 204, (weir_str_t){NULL, 0}, NULL,
                              H1_FRAMING_NONE, 0, 1);
    ck_assert_int_eq(n, (ssize_t)sizeof(w4) - 1);
    ck_assert(memcmp(buf, w4, (size_t)n) == 0);
}
END_TEST

START_TEST(test_chunk_header_reason)
{
    char b[20];
    ck_assert_uint_eq(h1_chunk_header(b, 1), 3);
    ck_assert(memcmp(b, "1\r\n", 3) == 0);
    ck_assert_uint_eq(h1_chunk_header(b, 255), 4);
    ck_assert(memcmp(b, "ff\r\n", 4) == 0);
    ck_assert_uint_eq(h1_chunk_header(b, 0x10000), 7);
    ck_assert(memcmp(b, "10000\r\n", 7) == 0);
    ck_assert_uint_eq(h1_chunk_header(b, SIZE_MAX), 18);
    ck_assert(memcmp(b, "ffffffffffffffff\r\n", 18) == 0);
    ck_assert_str_eq(h1_reason(200), "OK");
    ck_assert_str_eq(h1_reason(404), "Not Found");
    ck_assert_str_eq(h1_reason(431), "Request Header Fields Too Large");
    ck_assert_str_eq(h1_reason(299), "Success");
    ck_assert_str_eq(h1_reason(42), "Unknown");
    ck_assert_str_eq(H1_LAST_CHUNK, "0\r\n\r\n");
}
END_TEST

/* Parse then re-serialise: only the proxy's own framing goes out. */
START_TEST(test_roundtrip)
{
    static const char raw[] = "POST http://Up.Example:81/a?b HTTP/1.1\r\nHost: x\r\n"
                              "Connection: X-Hop\r\nX-Hop: 1\r\nTransfer_Encoding: chunked\r\n"
                              "Content-Length: 3\r\nX-Keep: k\r\n\r\n";
    h1_parser_t p;
    h1_request_t rq;
    ck_assert_int_eq(scan_parse(raw, sizeof(raw) - 1, &p, &rq, NULL), 0);
    char buf[512];
    ssize_t n = h1_serialize_request(buf, sizeof(buf), rq.method, rq.path, rq.query,
                                     rq.authority, &rq.headers, rq.framing, rq.content_length);
    static const char want[] = "POST /a?b HTTP/1.1\r\nHost: Up.Example:81\r\nX-Keep: k\r\n"
                               "Content-Length: 3\r\n\r\n";
    ck_assert_int_eq(n, (ssize_t)sizeof(want) - 1);
    ck_assert(memcmp(buf, want, (size_t)n) == 0);
}
END_TEST

/* ------------------------------------------------------------------ corpus */

static int unhex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes the corpus escapes (\r \n \t \\ \xNN) in place; returns length. */
static size_t unescape(char *s)
{
    char *d = s, *p = s;
    while (*p) {
        if (*p != '\\') {
            *d++ = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case 'r': *d++ = '\r'; p++; break;
        case 'n': *d++ = '\n'; p++; break;
        case 't': *d++ = '\t'; p++; break;
        case '\\': *d++ = '\\'; p++; break;
        case 'x':
            if (unhex(p[1]) >= 0 && unhex(p[2]) >= 0) {
                *d++ = (char)(unhex(p[1]) * 16 + unhex(p[2]));
                p += 3;
                break;
            }
            /* fall through */
        default:
            ck_abort_msg("unknown escape \\%c", *p);
        }
    }
    return (size_t)(d - s);
}

/* True if a name, with everything but letters and digits dropped, spells
 * transfer-encoding in any case. */
static int te_spelling(weir_str_t name)
{
    char norm[256];
    size_t k = 0;
    for (size_t i = 0; i < name.len && k < sizeof(norm) - 1; i++)
        if (isalnum((unsigned char)name.data[i]))
            norm[k++] = (char)tolower((unsigned char)name.data[i]);
    norm[k] = '\0';
    return strstr(norm, "transferencoding") != NULL;
}

static FILE *open_corpus(void)
{
    char path[4096];
    const char *dir = getenv("WEIR_CORPUS_DIR");
    if (dir) {
        snprintf(path, sizeof(path), "%s/h1_smuggler_mutations.tsv", dir);
        return fopen(path, "r");
    }
    const char *root = getenv("WEIR_SOURCE_ROOT");
    snprintf(path, sizeof(path), "%s/../shared/corpus/h1_smuggler_mutations.tsv",
             root ? root : ".");
    return fopen(path, "r");
}

START_TEST(test_smuggler_corpus)
{
    FILE *f = open_corpus();
    if (!f) {
        printf("h1 corpus: h1_smuggler_mutations.tsv not found, skipped\n");
        return;
    }
    size_t lines = 0, rejected = 0, accepted = 0;
    size_t by_status[600] = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) {
        if (line[got - 1] == '\n')
            line[--got] = '\0';
        char *tab = strchr(line, '\t');
        ck_assert_msg(tab != NULL, "line %zu has no tab", lines + 1);
        *tab = '\0';
        const char *name = line;
        char *req = tab + 1;
        size_t len = unescape(req);
        lines++;
        arena_reset(A);
        h1_parser_t p;
        h1_request_t rq;
        size_t headlen = 0;
        int r = scan_parse(req, len, &p, &rq, &headlen);
        ck_assert_msg(r != 1, "%s: head never completes", name);
        if (r < 0) {
            rejected++;
            by_status[-r]++;
            continue;
        }
        accepted++;
        ck_assert_msg(rq.framing != H1_FRAMING_CHUNKED, "%s: accepted as chunked", name);
        for (size_t i = 0; i < rq.headers.n; i++)
            ck_assert_msg(!te_spelling(rq.headers.v[i].name), "%s: forwards %.*s", name,
                          (int)rq.headers.v[i].name.len, rq.headers.v[i].name.data);
        /* What would go upstream carries no Transfer-Encoding either. */
        char out[8192];
        ssize_t n = h1_serialize_request(out, sizeof(out), rq.method, rq.path, rq.query,
                                         rq.authority, &rq.headers, rq.framing,
                                         rq.content_length);
        ck_assert_int_gt(n, 0);
        const char *e;
        for (const char *l = out; (e = memmem(l, (size_t)(out + n - l), "\r\n", 2)); l = e + 2) {
            const char *colon = memchr(l, ':', (size_t)(e - l));
            if (colon)
                ck_assert_msg(!te_spelling((weir_str_t){l, (size_t)(colon - l)}),
                              "%s: serialised TE", name);
        }
        ck_assert_msg(rq.framing == H1_FRAMING_LENGTH && rq.content_length == 5,
                      "%s: framing %d", name, rq.framing);
    }
    free(line);
    fclose(f);
    ck_assert_uint_eq(lines, 1703);
    printf("h1 corpus: %zu mutations, %zu rejected (400: %zu, 501: %zu, other: %zu), "
           "%zu accepted without Transfer-Encoding (Content-Length framing)\n",
           lines, rejected, by_status[400], by_status[501],
           rejected - by_status[400] - by_status[501], accepted);
    fflush(stdout);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("h1");
    TCase *tc = tcase_create("request");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_request_table, 0, (int)N_REQ);
    tcase_add_test(tc, test_scan_incremental);
    tcase_add_test(tc, test_scan_incremental_bad);
    tcase_add_test(tc, test_scan_limits);
    suite_add_tcase(s, tc);

    tc = tcase_create("body");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_chunked_pieces);
    tcase_add_loop_test(tc, test_chunk_table, 0,
                        (int)(sizeof(chunk_cases) / sizeof(chunk_cases[0])));
    tcase_add_test(tc, test_trailer_limit);
    tcase_add_test(tc, test_pipelined);
    tcase_add_test(tc, test_length_body);
    suite_add_tcase(s, tc);

    tc = tcase_create("response");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_response_table, 0, (int)N_RESP);
    tcase_add_test(tc, test_response_bodies);
    suite_add_tcase(s, tc);

    tc = tcase_create("serialize");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_serialize_request);
    tcase_add_test(tc, test_serialize_response);
    tcase_add_test(tc, test_chunk_header_reason);
    tcase_add_test(tc, test_roundtrip);
    suite_add_tcase(s, tc);

    tc = tcase_create("corpus");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_smuggler_corpus);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
