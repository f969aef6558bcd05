/*
 * Fuzz target: weir's HTTP/2 server (core/h2_server.c, h2_request.c) as a
 * client connection's input: the preface and then frames with HPACK, with
 * the upstream side answering, through the real state machines.
 *
 * What runs is what proxy_fuzz.c runs (see there for why the real ring and
 * not a loop shim): the real worker (worker_start: the io_uring loop,
 * accept, the HTTP/1 server that hands a connection starting with the
 * preface to HTTP/2 on an `http2: true` listener, the HTTP/2 server, the
 * proxy and its keepalive pool, modules router and lb_roundrobin) in this
 * process over real unix sockets, two listeners with `http2: true` (the
 * second with 40 ms timeouts, see op 17), and a unix "upstream server" that
 * the harness accepts and writes for. The
 * harness sends the preface itself on every client connection (bytes that
 * are not the preface are HTTP/1, which the proxy target covers), then
 * turns the loop (loop_turn, no wait) until nothing moves after each step.
 * What a peer cannot write at once (a full socket) is queued and written as
 * the other side reads, so flow control and the response hold are real.
 *
 * The input is a script of steps, an opcode byte (mod 19) and its
 * operands; N is one byte (1..254), or 255 then two bytes big-endian; SID
 * is one byte (a stream id 0..255); U16 two bytes big-endian:
 *   0 client sends N raw bytes          1 upstream sends N raw bytes
 *   2 client frame: TYPE FLAGS SID N payload (the length is the payload's)
 *   3 client HEADERS from fields: FLAGS SID N, the N bytes a list of
 *     (len name len value); HPACK-encoded by the harness (an nghttp2
 *     deflater without a dynamic table, so raw blocks cannot desync it).
 *     FLAGS bit 0 END_STREAM, bit 1 cut the block into CONTINUATIONs,
 *     bit 2 PRIORITY, bit 3 PADDED
 *   4 client canned request: SID KIND [U16]: KIND bits 0-2 the method (GET
 *     POST HEAD OPTIONS PUT DELETE CONNECT, and OPTIONS *), bit 3
 *     END_STREAM, bit 4 content-length U16, bit 5 two cookie crumbs, bit 6
 *     te: trailers and a Host, bit 7 cut into CONTINUATIONs
 *   5 client DATA: SID FLAGS U16: that many bytes as DATA frames of at most
 *     16384, FLAGS bit 0 END_STREAM on the last, bit 1 PADDED
 *   6 client WINDOW_UPDATE: SID and a 4-byte increment
 *   7 client RST_STREAM: SID CODE
 *   8 upstream canned response: KIND U16 (see upstream_canned)
 *   9 switch to the K-th open upstream connection, newest first: K
 *  10 upstream closes (FIN)             11 upstream resets (RST)
 *  12 client shuts its write side       13 client closes and reconnects
 *  14 client repeats its last send K+1 times: K
 *  15 client stops / starts reading (weir's sends then block)
 *  16 the worker drains (accept_drain: h1_server_drain, h2_server_drain),
 *     with a grace of G ms: G
 *  17 client closes and reconnects to the other listener: the first
 *     connection of an input goes to one whose timeouts are 1 h, the other
 *     has 40 ms timeouts (client_header, client_body, keepalive, send)
 *  18 wait 50 ms, then let the loop run (the short timers fire): only
 *     while connected to the 40 ms listener, and the first MAX_WAITS of an
 *     input only (else it just runs the loop), so few inputs are slow
 * Seeds (corpus/h2, from t/fuzz/h2_seeds.py with python3-hyperframe and
 * python3-hpack) are raw frames in op 0 steps and upstream answers in op 1.
 *
 * Invariants beyond "no sanitizer report, no leak":
 *  - what the client receives is HTTP/2 a client accepts: a SETTINGS frame
 *    first; HEADERS only on odd streams, CONTINUATION only right after,
 *    never PUSH_PROMISE; every header block decodes (one HPACK decoder for
 *    the connection); a response head is :status (200..999: no 1xx over
 *    HTTP/2 from weir) then regular fields with lowercase names, no
 *    connection-specific field, values without CR, LF, NUL or whitespace
 *    at either end, at most one content-length; a second block on a stream
 *    is trailers (END_STREAM, no pseudo-field), nothing comes after
 *    END_STREAM or RST_STREAM; DATA only after the head; 204 and 304 carry
 *    no DATA, 204 no content-length; a stream that ends cleanly carries content-length bytes of
 *    DATA (or none: HEAD), and exactly that many when the harness sent the
 *    request and it was not HEAD;
 *  - what reaches an upstream starts with a request head weir's own
 *    scanner and parser accept (but for a method llhttp does not know, which
 *    weir's HTTP/1 side answers 501 and an HTTP/2 client may send: the head
 *    is then checked with GET in its place), with one Host and at most one
 *    Cookie (crumbs are joined);
 *  - once the client and every upstream connection are closed, the worker
 *    reaches zero client connections (on the 1 h listener, without a timer
 *    firing), and every receive buffer is back in the ring.
 * H2_FUZZ_TRACE=1 prints what each peer received.
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "accept.h"
#include "arena.h"
#include "conf.h"
#include "fuzz_common.h"
#include "h1.h"
#include "h2.h"
#include "log.h"
#include "loop.h"
#include "request.h"
#include "worker.h"

#ifndef WEIR_FUZZ_MODULES_DIR
#define WEIR_FUZZ_MODULES_DIR "modules"
#endif

#define MAX_UPS 32
#define UP_KEEP 65536       /* bytes of each upstream connection kept for the check */
#define OUTQ_MAX (4u << 20) /* bytes a peer may have queued for sending */
#define SETTLE_TURNS 400
#define MAX_STREAMS 512     /* server streams tracked per connection */
#define LAST_MAX 65536      /* the last client send kept for op 14 */
#define MAX_WAITS 6         /* 50 ms waits per input (op 18) */

/* Bytes a peer has not been able to write yet. */
typedef struct outq {
    uint8_t *p;
    size_t len, off, cap;
} outq_t;

typedef struct upstream_peer {
    int fd;
    size_t len;
    int checked;
    outq_t q;
    char buf[UP_KEEP];
} upstream_peer_t;

/* What the client saw of one stream. */
typedef struct sstream {
    int32_t id;
    int heads;       /* header blocks received */
    int ended;       /* END_STREAM or RST_STREAM seen */
    int status;
    int64_t cl;      /* the response's content-length, -1 none */
    uint64_t data;   /* DATA payload received */
    int method;      /* the request's: 0 unknown, 1 HEAD, 2 another the harness sent */
    int requested;   /* the client sent a HEADERS frame on it */
} sstream_t;

/* The client's view of the server's bytes. */
typedef struct reader {
    uint8_t *buf;
    size_t len, cap;
    unsigned frames;
    nghttp2_hd_inflater *inf;
    int in_block;
    int32_t block_sid;
    uint8_t block_flags;
    uint8_t *hb;
    size_t hb_len, hb_cap;
    sstream_t st[MAX_STREAMS];
    size_t nst;
} reader_t;

/* The frames the client sent, as the server cuts them: which request
 * opened each stream. A HEADERS frame that starts one of the harness's own
 * sends is a request whose method it knows; any other makes the stream's
 * method unknown. */
typedef struct shadow {
    uint8_t hd[9];
    size_t hd_len;
    size_t skip;
    int lost; /* bytes were dropped: the server's view is not known */
} shadow_t;

static struct {
    char dir[128];
    char listen_path[160], short_path[160], upstream_path[160];
    int listen_fds[2]; /* 1 h timeouts, 40 ms timeouts */
    int which;         /* the listener the client connects to */
    int upstream_fd;
    worker_info_t info;
    weir_conf_t *cf;
    int client;
    int client_paused;
    outq_t cq;
    shadow_t sh;
    nghttp2_hd_deflater *def;
    reader_t rd;
    uint8_t last[LAST_MAX];
    size_t last_len;
    upstream_peer_t ups[MAX_UPS];
    int nups, cur;
    int trace;
} h;

/* ------------------------------------------------------------- setup */

static void unix_address(struct sockaddr_un *sa, const char *path)
{
    *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa->sun_path)) {
        fprintf(stderr, "h2_fuzz: socket path too long: %s (set TMPDIR)\n", path);
        abort();
    }
    memcpy(sa->sun_path, path, strlen(path) + 1);
}

static int unix_listener(const char *path)
{
    struct sockaddr_un sa;
    unix_address(&sa, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
        perror("h2_fuzz: listener");
        abort();
    }
    return fd;
}

static void write_config(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    /* Timeouts far away: behaviour must not depend on the clock. The header
     * limit small (431 with short inputs), the body limit above one stream
     * window (413 takes two windows; flow control is reached first). */
    fprintf(f,
            "workers: 1\n"
            "modules: [router, lb_roundrobin]\n"
            "limits:\n"
            "  client_header_timeout: 1h\n"
            "  client_body_timeout: 1h\n"
            "  keepalive_timeout: 1h\n"
            "  send_timeout: 1h\n"
            "  max_header_size: 2k\n"
            "  max_body_size: 96k\n"
            "  keepalive_requests: 8\n"
            "listeners:\n"
            "  - address: \"unix:%s\"\n"
            "    http2: true\n"
            "  - address: \"unix:%s\"\n"
            "    http2: true\n"
            "    limits:\n"
            "      client_header_timeout: 40ms\n"
            "      client_body_timeout: 40ms\n"
            "      keepalive_timeout: 40ms\n"
            "      send_timeout: 40ms\n"
            "upstreams:\n"
            "  b:\n"
            "    balancer: roundrobin\n"
            "    servers: [\"unix:%s\"]\n"
            "    keepalive: 4\n"
            "    retries: 1\n"
            "    max_fails: 0\n"
            "    connect_timeout: 1h\n"
            "    read_timeout: 1h\n"
            "    write_timeout: 1h\n"
            "    idle_timeout: 1h\n"
            "routes:\n"
            "  - {path: /, upstream: b}\n",
            h.listen_path, h.short_path, h.upstream_path);
    fclose(f);
}

static void cleanup_dir(void)
{
    unlink(h.listen_path);
    unlink(h.short_path);
    unlink(h.upstream_path);
    char conf[200];
    snprintf(conf, sizeof(conf), "%s/weir.yaml", h.dir);
    unlink(conf);
    rmdir(h.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(h.dir, sizeof(h.dir), "%s/weir-h2-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(h.dir))
        abort();
    snprintf(h.listen_path, sizeof(h.listen_path), "%s/l.sock", h.dir);
    snprintf(h.short_path, sizeof(h.short_path), "%s/s.sock", h.dir);
    snprintf(h.upstream_path, sizeof(h.upstream_path), "%s/u.sock", h.dir);
    char conf[200];
    snprintf(conf, sizeof(conf), "%s/weir.yaml", h.dir);
    write_config(conf);
    atexit(cleanup_dir);

    log_open("/dev/null", WEIR_LOG_ERROR);
    const char *mods = getenv("WEIR_FUZZ_MODULES");
    conf_options_t opt = {
        .file = conf,
        .modules_dir = mods && *mods ? mods : WEIR_FUZZ_MODULES_DIR,
        .core_handlers = core_phase_handlers,
        .register_core_vars = core_vars_register,
    };
    h.cf = conf_load(&opt);
    if (!h.cf) {
        fprintf(stderr, "h2_fuzz: the built-in config did not load\n");
        abort();
    }
    h.listen_fds[0] = unix_listener(h.listen_path);
    h.listen_fds[1] = unix_listener(h.short_path);
    h.upstream_fd = unix_listener(h.upstream_path);
    h.info = (worker_info_t){.cf = h.cf, .listen_fds = h.listen_fds, .index = 0, .count = 1};
    if (worker_start(&h.info) < 0)
        abort();
    signal(SIGPIPE, SIG_IGN);
    h.client = -1;
    h.trace = getenv("H2_FUZZ_TRACE") != NULL;
    return 0;
}

/* --------------------------------------------------------- send queues */

/* 0, or -1 when the bytes were dropped. */
static int outq_add(outq_t *q, const uint8_t *p, size_t n)
{
    if (q->len - q->off + n > OUTQ_MAX)
        return -1; /* a peer that floods beyond this loses the rest */
    if (q->off) {
        memmove(q->p, q->p + q->off, q->len - q->off);
        q->len -= q->off;
        q->off = 0;
    }
    if (q->len + n > q->cap) {
        /* doubling: few distinct sizes, so the allocator's classes do not
         * fill up one by one over a long run */
        size_t cap = q->cap ? q->cap : 4096;
        while (cap < q->len + n)
            cap *= 2;
        uint8_t *np = realloc(q->p, cap);
        if (!np)
            abort();
        q->p = np;
        q->cap = cap;
    }
    memcpy(q->p + q->len, p, n);
    q->len += n;
    return 0;
}

static void outq_free(outq_t *q)
{
    free(q->p);
    *q = (outq_t){0};
}

/* Writes what the socket takes; 1 if anything went. */
static int outq_flush(outq_t *q, int fd)
{
    int moved = 0;
    while (fd >= 0 && q->off < q->len) {
        ssize_t k = send(fd, q->p + q->off, q->len - q->off, MSG_NOSIGNAL);
        if (k <= 0) {
            if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                q->off = q->len; /* the peer is gone: drop it */
                moved = -1;
            }
            break;
        }
        q->off += (size_t)k;
        moved = 1;
    }
    if (q->off == q->len)
        q->off = q->len = 0;
    return moved;
}

/* ------------------------------------------------ the client's sends */

static sstream_t *sstream(struct reader *r, int32_t id, int create);

/* A HEADERS frame the client sent on sid; method as for sstream_t. */
static void client_headers(int32_t sid, int method)
{
    sstream_t *s = sstream(&h.rd, sid, 1);
    if (!s || s->requested)
        return; /* trailers, or a stream reused: the first one counts */
    s->requested = 1;
    s->method = h.sh.lost ? 0 : method;
}

/* The bytes of one send as frames; tag: the method of the HEADERS frame the
 * send starts with, on tag_sid, when the harness built it (0: none). */
static void shadow_feed(const uint8_t *p, size_t n, int tag, uint32_t tag_sid)
{
    shadow_t *sh = &h.sh;
    size_t off = 0;
    while (off < n) {
        if (sh->skip) {
            size_t k = n - off < sh->skip ? n - off : sh->skip;
            sh->skip -= k;
            off += k;
            continue;
        }
        int at_start = sh->hd_len == 0 && off == 0;
        while (sh->hd_len < 9 && off < n)
            sh->hd[sh->hd_len++] = p[off++];
        if (sh->hd_len < 9)
            break;
        const uint8_t *f = sh->hd;
        sh->hd_len = 0;
        sh->skip = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
        uint32_t sid = ((uint32_t)f[5] << 24 | (uint32_t)f[6] << 16 | (uint32_t)f[7] << 8 |
                        f[8]) & 0x7fffffffu;
        if (f[3] == NGHTTP2_HEADERS)
            client_headers((int32_t)sid, at_start && tag && sid == tag_sid ? tag : 0);
    }
}

/* ------------------------------------------------- the client's reader */

static int lower_token(const uint8_t *p, size_t n)
{
    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (!h1_is(c, H1_C_TCHAR) || (c >= 'A' && c <= 'Z'))
            return 0;
    }
    return 1;
}

static int is_name(const uint8_t *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static sstream_t *sstream(struct reader *r, int32_t id, int create)
{
    for (size_t i = 0; i < r->nst; i++)
        if (r->st[i].id == id)
            return &r->st[i];
    if (!create || r->nst == MAX_STREAMS)
        return NULL;
    sstream_t *s = &r->st[r->nst++];
    *s = (sstream_t){.id = id, .cl = -1};
    return s;
}

/* The stream ended cleanly (END_STREAM): the body agrees with the head. */
static void check_end(const sstream_t *s)
{
    if (s->status == 204)
        FZ_CHECK(s->cl < 0, "stream %d: 204 response with a content-length", s->id);
    if (s->status == 204 || s->status == 304)
        FZ_CHECK(s->data == 0, "stream %d: %d response with %llu bytes of DATA", s->id,
                 s->status, (unsigned long long)s->data);
    if (s->method == 1)
        FZ_CHECK(s->data == 0, "stream %d: a response to HEAD with %llu bytes of DATA", s->id,
                 (unsigned long long)s->data);
    if (s->cl < 0 || s->status == 304)
        return;
    if (s->method == 2 && s->status != 204)
        FZ_CHECK(s->data == (uint64_t)s->cl,
                 "stream %d: ended cleanly after %llu bytes of DATA, content-length %lld",
                 s->id, (unsigned long long)s->data, (long long)s->cl);
    else
        FZ_CHECK(s->data == 0 || s->data == (uint64_t)s->cl,
                 "stream %d: ended cleanly after %llu bytes of DATA, content-length %lld",
                 s->id, (unsigned long long)s->data, (long long)s->cl);
}

/* One complete header block from the server, on stream sid. */
static void check_block(reader_t *r, int32_t sid, int end_stream)
{
    sstream_t *s = sstream(r, sid, 1);
    if (s) {
        FZ_CHECK(!s->ended, "stream %d: a header block after the stream ended", sid);
        FZ_CHECK(s->heads < 2, "stream %d: a third header block", sid);
        s->heads++;
    }
    int trailers = s && s->heads == 2;
    if (trailers)
        FZ_CHECK(end_stream, "stream %d: trailers without END_STREAM", sid);
    const uint8_t *in = r->hb;
    size_t left = r->hb_len;
    int nfields = 0, ncl = 0;
    for (;;) {
        nghttp2_nv nv;
        int fl = 0;
        ssize_t k = nghttp2_hd_inflate_hd2(r->inf, &nv, &fl, in, left, 1);
        FZ_CHECK(k >= 0, "stream %d: the server's header block does not decode: %s", sid,
                 nghttp2_strerror((int)k));
        in += k;
        left -= (size_t)k;
        if (fl & NGHTTP2_HD_INFLATE_EMIT) {
            weir_str_t name = {(const char *)nv.name, nv.namelen};
            weir_str_t value = {(const char *)nv.value, nv.valuelen};
            if (h.trace)
                fprintf(stderr, "    %s: %s\n", fz_show(name), fz_show(value));
            if (nfields == 0 && !trailers) {
                FZ_CHECK(is_name(nv.name, nv.namelen, ":status"),
                         "stream %d: a response head that does not start with :status: %s",
                         sid, fz_show(name));
                int st = 0;
                FZ_CHECK(nv.valuelen == 3, "stream %d: :status %s", sid, fz_show(value));
                for (int i = 0; i < 3; i++) {
                    FZ_CHECK(nv.value[i] >= '0' && nv.value[i] <= '9', "stream %d: :status %s",
                             sid, fz_show(value));
                    st = st * 10 + (nv.value[i] - '0');
                }
                FZ_CHECK(st >= 200, "stream %d: :status %d over HTTP/2", sid, st);
                if (s)
                    s->status = st;
            } else {
                FZ_CHECK(lower_token(nv.name, nv.namelen),
                         "stream %d: field name %s is not a lowercase token", sid,
                         fz_show(name));
                static const char *const hop[] = {"connection", "keep-alive",
                                                  "proxy-connection", "transfer-encoding",
                                                  "upgrade", "te"};
                for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
                    FZ_CHECK(!is_name(nv.name, nv.namelen, hop[i]),
                             "stream %d: connection-specific field %s: %s", sid, hop[i],
                             fz_show(value));
                for (size_t i = 0; i < nv.valuelen; i++)
                    FZ_CHECK(nv.value[i] != '\r' && nv.value[i] != '\n' && nv.value[i] != 0,
                             "stream %d: CR, LF or NUL in %s: %s", sid, fz_show(name),
                             fz_show(value));
                if (nv.valuelen)
                    FZ_CHECK(nv.value[0] != ' ' && nv.value[0] != '\t' &&
                                 nv.value[nv.valuelen - 1] != ' ' &&
                                 nv.value[nv.valuelen - 1] != '\t',
                             "stream %d: whitespace at an end of %s: \"%s\"", sid,
                             fz_show(name), fz_show(value));
                if (!trailers && is_name(nv.name, nv.namelen, "content-length")) {
                    ncl++;
                    FZ_CHECK(ncl == 1, "stream %d: two content-length fields", sid);
                    uint64_t v;
                    FZ_CHECK(h1_parse_uint(value, &v) == 0, "stream %d: content-length %s",
                             sid, fz_show(value));
                    if (s)
                        s->cl = (int64_t)v;
                }
                if (trailers)
                    FZ_CHECK(is_name(nv.name, nv.namelen, "content-length") == 0,
                             "stream %d: content-length in trailers", sid);
            }
            nfields++;
        }
        if (fl & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(r->inf);
            break;
        }
        if (k == 0 && left == 0)
            break;
    }
    if (!trailers)
        FZ_CHECK(nfields > 0, "stream %d: an empty response head", sid);
    if (s && end_stream) {
        check_end(s);
        s->ended = 1;
    }
}

static void hb_add(reader_t *r, const uint8_t *p, size_t n)
{
    if (r->hb_len + n > r->hb_cap) {
        size_t cap = r->hb_cap ? r->hb_cap : 4096;
        while (cap < r->hb_len + n)
            cap *= 2;
        r->hb = realloc(r->hb, cap);
        if (!r->hb)
            abort();
        r->hb_cap = cap;
    }
    memcpy(r->hb + r->hb_len, p, n);
    r->hb_len += n;
}

/* One frame the server sent. */
static void server_frame(reader_t *r, uint8_t type, uint8_t flags, int32_t sid,
                         const uint8_t *p, size_t len)
{
    if (h.trace)
        fprintf(stderr, "  server frame: type %u flags 0x%02x stream %d length %zu\n", type,
                flags, sid, len);
    if (r->frames++ == 0)
        FZ_CHECK(type == NGHTTP2_SETTINGS && !(flags & NGHTTP2_FLAG_ACK) && sid == 0,
                 "the server's first frame is type %u flags %u stream %d, not its SETTINGS",
                 type, flags, sid);
    if (r->in_block)
        FZ_CHECK(type == NGHTTP2_CONTINUATION && sid == r->block_sid,
                 "frame type %u on stream %d in the middle of a header block on stream %d",
                 type, sid, r->block_sid);
    FZ_CHECK(type != NGHTTP2_PUSH_PROMISE, "the server pushed (stream %d)", sid);
    /* padding and priority off the front of DATA and HEADERS */
    size_t pad = 0;
    if ((type == NGHTTP2_DATA || type == NGHTTP2_HEADERS) && (flags & NGHTTP2_FLAG_PADDED)) {
        FZ_CHECK(len >= 1 && p[0] < len, "stream %d: bad padding", sid);
        pad = p[0];
        p++;
        len -= 1 + pad;
    }
    switch (type) {
    case NGHTTP2_DATA: {
        FZ_CHECK(sid > 0 && (sid & 1), "DATA on stream %d", sid);
        sstream_t *s = sstream(r, sid, 0);
        if (!s && r->nst == MAX_STREAMS)
            break; /* not followed */
        FZ_CHECK(s && s->heads == 1, "stream %d: DATA before the response head", sid);
        FZ_CHECK(!s->ended, "stream %d: DATA after the stream ended", sid);
        s->data += len;
        if (s->cl >= 0)
            FZ_CHECK(s->data <= (uint64_t)s->cl,
                     "stream %d: %llu bytes of DATA, content-length %lld", sid,
                     (unsigned long long)s->data, (long long)s->cl);
        if (flags & NGHTTP2_FLAG_END_STREAM) {
            check_end(s);
            s->ended = 1;
        }
        break;
    }
    case NGHTTP2_HEADERS:
        FZ_CHECK(sid > 0 && (sid & 1), "HEADERS on stream %d", sid);
        if (flags & NGHTTP2_FLAG_PRIORITY) {
            FZ_CHECK(len >= 5, "stream %d: short HEADERS", sid);
            p += 5;
            len -= 5;
        }
        r->hb_len = 0;
        hb_add(r, p, len);
        r->block_sid = sid;
        r->block_flags = flags;
        if (flags & NGHTTP2_FLAG_END_HEADERS)
            check_block(r, sid, flags & NGHTTP2_FLAG_END_STREAM);
        else
            r->in_block = 1;
        break;
    case NGHTTP2_CONTINUATION:
        FZ_CHECK(r->in_block, "CONTINUATION on stream %d outside a header block", sid);
        hb_add(r, p, len);
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
            r->in_block = 0;
            check_block(r, sid, r->block_flags & NGHTTP2_FLAG_END_STREAM);
        }
        break;
    case NGHTTP2_RST_STREAM: {
        FZ_CHECK(sid > 0 && len == 4, "RST_STREAM on stream %d, length %zu", sid, len);
        sstream_t *s = sstream(r, sid, 1);
        if (s)
            s->ended = 1;
        break;
    }
    default:
        break;
    }
}

static void reader_feed(reader_t *r, const uint8_t *p, size_t n)
{
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 65536;
        while (cap < r->len + n)
            cap *= 2;
        r->buf = realloc(r->buf, cap);
        if (!r->buf)
            abort();
        r->cap = cap;
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
    size_t off = 0;
    while (r->len - off >= 9) {
        const uint8_t *f = r->buf + off;
        size_t len = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
        if (r->len - off < 9 + len)
            break;
        int32_t sid = (int32_t)(((uint32_t)f[5] << 24 | (uint32_t)f[6] << 16 |
                                 (uint32_t)f[7] << 8 | f[8]) & 0x7fffffffu);
        server_frame(r, f[3], f[4], sid, f + 9, len);
        off += 9 + len;
    }
    memmove(r->buf, r->buf + off, r->len - off);
    r->len -= off;
}

/* A new connection: the buffers stay for the next one. */
static void reader_reset(reader_t *r)
{
    if (r->inf)
        nghttp2_hd_inflate_del(r->inf);
    uint8_t *buf = r->buf, *hb = r->hb;
    size_t cap = r->cap, hb_cap = r->hb_cap;
    *r = (reader_t){.buf = buf, .cap = cap, .hb = hb, .hb_cap = hb_cap};
}

/* ----------------------------------------------- the upstream side */

/* The forwarded request head must be one weir itself accepts. */
static void check_forwarded(upstream_peer_t *u)
{
    if (u->checked)
        return;
    const char *end = memmem(u->buf, u->len, "\r\n\r\n", 4);
    if (!end)
        return;
    u->checked = 1;
    size_t head_len = (size_t)(end - u->buf) + 4;
    ssize_t n = h1_scan_head(u->buf, u->len, 1 << 20, 1);
    FZ_CHECK(n == (ssize_t)head_len, "forwarded head refused by the scanner (%zd): %s", n,
             fz_show((weir_str_t){u->buf, head_len}));
    struct arena *a = arena_new(4096, 0);
    h1_parser_t p;
    h1_parser_init(&p);
    h1_request_t req;
    char *copy = fz_dup(u->buf, head_len);
    int rc = h1_parse_request(a, &p, copy, head_len, &req);
    const char *sp = memchr(copy, ' ', head_len);
    if (rc == -501 && sp && sp > copy) {
        /* A method weir's HTTP/1 side answers 501 (llhttp does not know
         * it), which an HTTP/2 client may send: h2.h asks a token only. The
         * rest of the head must still be good: parsed again with GET. */
        weir_str_t m = {copy, (size_t)(sp - copy)};
        for (size_t i = 0; i < m.len; i++)
            FZ_CHECK(h1_is((unsigned char)m.data[i], H1_C_TCHAR),
                     "forwarded method %s is not a token", fz_show(m));
        FZ_CHECK(!fz_str_eq(m, (weir_str_t){"CONNECT", 7}), "CONNECT forwarded");
        size_t len2 = 3 + head_len - m.len;
        char *copy2 = malloc(len2);
        if (!copy2)
            abort();
        memcpy(copy2, "GET", 3);
        memcpy(copy2 + 3, sp, head_len - m.len);
        free(copy);
        copy = copy2;
        head_len = len2;
        h1_parser_init(&p);
        rc = h1_parse_request(a, &p, copy, head_len, &req);
    }
    FZ_CHECK(rc == 0, "forwarded head refused by the parser (%d): %s", rc,
             fz_show((weir_str_t){copy, head_len}));
    int hosts = 0, cookies = 0;
    for (size_t i = 0; i < req.headers.n; i++) {
        hosts += fz_name_is(req.headers.v[i].name, "host");
        cookies += fz_name_is(req.headers.v[i].name, "cookie");
    }
    FZ_CHECK(hosts == 1, "forwarded head with %d Host fields: %s", hosts,
             fz_show((weir_str_t){copy, head_len}));
    FZ_CHECK(cookies <= 1, "forwarded head with %d Cookie fields (crumbs not joined)",
             cookies);
    free(copy);
    arena_free(a);
}

static int client_up(void);

/* The k-th open upstream connection (mod their number), newest first, as
 * the current one; none open: the current one stays. */
static void pick_upstream(unsigned k)
{
    int open = 0;
    for (int i = 0; i < h.nups; i++)
        open += h.ups[i].fd >= 0;
    if (!open)
        return;
    k %= (unsigned)open;
    for (int i = h.nups - 1; i >= 0; i--)
        if (h.ups[i].fd >= 0 && k-- == 0) {
            h.cur = i;
            return;
        }
}

/* Moves bytes and connections; 1 if anything moved. */
static int pump(void)
{
    int moved = 0;
    for (;;) {
        int fd = accept4(h.upstream_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        moved = 1;
        if (h.nups == MAX_UPS) {
            close(fd);
            continue;
        }
        h.ups[h.nups] = (upstream_peer_t){.fd = fd};
        h.cur = h.nups++; /* the newest is the one a new request went to */
    }
    static uint8_t sink[65536];
    for (int i = 0; i < h.nups; i++) {
        upstream_peer_t *u = &h.ups[i];
        ssize_t n = -1;
        moved |= outq_flush(&u->q, u->fd) != 0;
        while (u->fd >= 0 && (n = recv(u->fd, sink, sizeof(sink), 0)) > 0) {
            moved = 1;
            size_t keep = (size_t)n < UP_KEEP - u->len ? (size_t)n : UP_KEEP - u->len;
            memcpy(u->buf + u->len, sink, keep);
            u->len += keep;
            if (h.trace)
                fprintf(stderr, "upstream %d got %zd bytes: %s\n", i, n,
                        fz_show((weir_str_t){(const char *)sink, (size_t)n}));
        }
        check_forwarded(u);
        if (u->fd >= 0 && (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))) {
            /* weir closed it: so does the server, and the next one answers */
            if (h.trace)
                fprintf(stderr, "upstream %d closed by weir\n", i);
            close(u->fd);
            u->fd = -1;
            outq_free(&u->q);
            moved = 1;
            if (i == h.cur)
                pick_upstream(0);
        }
    }
    if (client_up()) {
        int k = outq_flush(&h.cq, h.client);
        if (k < 0)
            h.sh.lost = 1;
        moved |= k != 0;
        ssize_t n;
        while (!h.client_paused && (n = recv(h.client, sink, sizeof(sink), 0)) > 0) {
            moved = 1;
            if (h.trace)
                fprintf(stderr, "client got %zd bytes: %s\n", n,
                        fz_show((weir_str_t){(const char *)sink, (size_t)n}));
            reader_feed(&h.rd, sink, (size_t)n);
        }
    }
    return moved;
}

static void settle(void)
{
    for (int i = 0, quiet = 0; i < SETTLE_TURNS && quiet < 2; i++) {
        unsigned n = loop_turn(g_loop, 0);
        int moved = pump();
        quiet = n || moved ? 0 : quiet + 1;
    }
}

/* ------------------------------------------------------- the client */

static int client_up(void)
{
    return h.client >= 0;
}

/* Queues (and writes what the socket takes) one send; the client's frames
 * are followed in the shadow. */
static void client_queue(const uint8_t *p, size_t n, int tag, uint32_t tag_sid)
{
    if (!client_up())
        return;
    if (outq_add(&h.cq, p, n) < 0) {
        h.sh.lost = 1;
        return;
    }
    if (!h.sh.lost)
        shadow_feed(p, n, tag, tag_sid);
    if (outq_flush(&h.cq, h.client) < 0)
        h.sh.lost = 1;
}

static void client_send_tag(const uint8_t *p, size_t n, int tag, uint32_t tag_sid)
{
    client_queue(p, n, tag, tag_sid);
    if (n <= LAST_MAX) {
        memcpy(h.last, p, n);
        h.last_len = n;
    }
}

static void client_send(const uint8_t *p, size_t n)
{
    client_send_tag(p, n, 0, 0);
}

static void client_close(void)
{
    if (h.client >= 0)
        close(h.client);
    h.client = -1;
    h.client_paused = 0;
    outq_free(&h.cq);
    h.sh = (shadow_t){0};
    reader_reset(&h.rd);
    if (h.def)
        nghttp2_hd_deflate_del(h.def);
    h.def = NULL;
}

static void client_connect(void)
{
    struct sockaddr_un sa;
    unix_address(&sa, h.which ? h.short_path : h.listen_path);
    h.client = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h.client < 0 || connect(h.client, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        abort();
    if (nghttp2_hd_inflate_new(&h.rd.inf) != 0 || nghttp2_hd_deflate_new(&h.def, 0) != 0)
        abort();
    /* the preface is no frame: past the shadow */
    outq_add(&h.cq, (const uint8_t *)H2_PREFACE, H2_PREFACE_LEN);
    outq_flush(&h.cq, h.client);
    h.last_len = 0;
}

/* Scratch for building one send (the largest: a header block of 64 fields
 * of 255-byte names and values, with its frame headers). */
static uint8_t scratch[1 << 17];
static uint8_t filler[1 << 17]; /* 'r' bytes for canned response bodies */

static void put_hd(uint8_t *b, size_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    b[0] = (uint8_t)(len >> 16);
    b[1] = (uint8_t)(len >> 8);
    b[2] = (uint8_t)len;
    b[3] = type;
    b[4] = flags;
    b[5] = (uint8_t)(sid >> 24 & 0x7f);
    b[6] = (uint8_t)(sid >> 16);
    b[7] = (uint8_t)(sid >> 8);
    b[8] = (uint8_t)sid;
}

/* One frame (sends are glued, so a repeat repeats the whole of it). */
static void client_frame(uint8_t type, uint8_t flags, uint32_t sid, const uint8_t *p,
                         size_t len)
{
    uint8_t *b = scratch;
    if (9 + len > sizeof(scratch))
        abort();
    put_hd(b, len, type, flags, sid);
    if (len)
        memcpy(b + 9, p, len);
    client_send(b, 9 + len);
}

/* A header block as HEADERS (+ CONTINUATIONs when cut), in one send. */
static void client_block(uint32_t sid, const uint8_t *blk, size_t len, int end_stream, int cut,
                         int priority, int padded, int method)
{
    size_t chunk = cut ? (len / 3 + 1) : 16384;
    if (chunk > 16384)
        chunk = 16384;
    size_t cap = len + 64 + 9 * (len / chunk + 2) + 256;
    uint8_t *out = scratch, *o = out;
    if (cap > sizeof(scratch))
        return;
    size_t first = len < chunk ? len : chunk;
    size_t extra = (priority ? 5 : 0) + (padded ? 1 + 3 : 0);
    uint8_t fl = (uint8_t)((end_stream ? NGHTTP2_FLAG_END_STREAM : 0) |
                           (first == len ? NGHTTP2_FLAG_END_HEADERS : 0) |
                           (priority ? NGHTTP2_FLAG_PRIORITY : 0) |
                           (padded ? NGHTTP2_FLAG_PADDED : 0));
    put_hd(o, first + extra, NGHTTP2_HEADERS, fl, sid);
    o += 9;
    if (padded)
        *o++ = 3;
    if (priority) {
        memcpy(o, "\0\0\0\0\x0f", 5); /* depends on 0, weight 16 */
        o += 5;
    }
    memcpy(o, blk, first);
    o += first;
    if (padded) {
        memset(o, 0, 3);
        o += 3;
    }
    for (size_t off = first; off < len;) {
        size_t n = len - off < chunk ? len - off : chunk;
        put_hd(o, n, NGHTTP2_CONTINUATION, off + n == len ? NGHTTP2_FLAG_END_HEADERS : 0, sid);
        o += 9;
        memcpy(o, blk + off, n);
        o += n;
        off += n;
    }
    client_send_tag(out, (size_t)(o - out), method, sid);
}

/* The method a field list asks for, as client_headers counts it. */
static int method_of(const nghttp2_nv *nv, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is_name(nv[i].name, nv[i].namelen, ":method"))
            return is_name(nv[i].value, nv[i].valuelen, "HEAD") ? 1 : 2;
    return 0;
}

static void client_fields(uint32_t sid, const nghttp2_nv *nv, size_t n, int end_stream,
                          int cut, int priority, int padded)
{
    if (!h.def)
        return;
    static uint8_t blk[1 << 16];
    ssize_t len = nghttp2_hd_deflate_hd(h.def, blk, sizeof(blk), nv, n);
    if (len >= 0)
        client_block(sid, blk, (size_t)len, end_stream, cut, priority, padded,
                     method_of(nv, n));
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0}

static void canned_request(uint32_t sid, uint8_t kind, uint16_t cl)
{
    static const char *const methods[] = {"GET", "POST", "HEAD", "OPTIONS",
                                          "PUT", "DELETE", "CONNECT", "OPTIONS"};
    const char *m = methods[kind & 7];
    char path[32], clen[8];
    snprintf(path, sizeof(path), (kind & 7) == 7 ? "*" : "/s%u?k=%u", sid, kind);
    snprintf(clen, sizeof(clen), "%u", cl);
    nghttp2_nv nv[12];
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":method", (uint8_t *)m, 7, strlen(m), 0};
    if ((kind & 7) == 6) {
        nv[n++] = (nghttp2_nv)NV(":authority", "x:443");
    } else {
        nv[n++] = (nghttp2_nv)NV(":scheme", "http");
        nv[n++] = (nghttp2_nv)NV(":authority", "x");
        nv[n++] = (nghttp2_nv){(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0};
    }
    nv[n++] = (nghttp2_nv)NV("user-agent", "h2_fuzz");
    if (kind & 0x10)
        nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen),
                               0};
    if (kind & 0x20) {
        nv[n++] = (nghttp2_nv)NV("cookie", "a=1");
        nv[n++] = (nghttp2_nv)NV("cookie", "b=2");
    }
    if (kind & 0x40) {
        nv[n++] = (nghttp2_nv)NV("te", "trailers");
        nv[n++] = (nghttp2_nv)NV("host", "x");
    }
    client_fields(sid, nv, n, kind & 0x08, kind & 0x80, 0, 0);
}

/* op 3: (len name len value)* into fields. */
static void listed_request(uint8_t flags, uint32_t sid, const uint8_t *p, size_t len)
{
    nghttp2_nv nv[64];
    size_t n = 0;
    fz_in_t in = {p, len};
    while (in.n && n < 64) {
        size_t nl = fz_u8(&in), got;
        const uint8_t *name = fz_take(&in, nl, &got);
        nl = got;
        size_t vl = fz_u8(&in);
        const uint8_t *value = fz_take(&in, vl, &got);
        vl = got;
        nv[n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nl, vl, 0};
    }
    client_fields(sid, nv, n, flags & 1, flags & 2, flags & 4, flags & 8);
}

static void client_data(uint32_t sid, uint8_t flags, size_t total)
{
    static uint8_t body[16384 + 16];
    memset(body, 'd', sizeof(body));
    uint8_t *out = scratch, *o = out; /* total <= 65535: 5 frames */
    size_t off = 0;
    do {
        size_t n = total - off < 16000 ? total - off : 16000;
        int last = off + n == total;
        uint8_t fl = (uint8_t)((last && (flags & 1) ? NGHTTP2_FLAG_END_STREAM : 0) |
                               (flags & 2 ? NGHTTP2_FLAG_PADDED : 0));
        size_t flen = n + (flags & 2 ? 1 + 7 : 0);
        put_hd(o, flen, NGHTTP2_DATA, fl, sid);
        o += 9;
        if (flags & 2)
            *o++ = 7;
        memcpy(o, body, n);
        o += n;
        if (flags & 2) {
            memset(o, 0, 7);
            o += 7;
        }
        off += n;
    } while (off < total);
    client_send(out, (size_t)(o - out));
}

/* ------------------------------------------------------ the upstream */

static void upstream_send(const void *p, size_t n)
{
    if (!h.nups || h.ups[h.cur].fd < 0)
        return;
    upstream_peer_t *u = &h.ups[h.cur];
    outq_add(&u->q, p, n);
    outq_flush(&u->q, u->fd);
}

static void upstream_end(int reset)
{
    upstream_peer_t *u = &h.ups[h.cur];
    if (h.nups == 0 || u->fd < 0)
        return;
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(u->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else {
        outq_flush(&u->q, u->fd); /* what the socket takes; the rest is lost */
    }
    close(u->fd);
    u->fd = -1;
    outq_free(&u->q);
}

/* op 8. KIND bits 0-2: 0 200 with Content-Length, 1 chunked (with a
 * trailer), 2 204, 3 close-delimited (then FIN), 4 304 with a length, 5 100
 * Continue (nothing after), 6 a Content-Length 10 longer than the body
 * (then FIN), 7 200 with hop-by-hop fields and whitespace to strip; bit 3
 * doubles the length (past a stream window). */
static void upstream_canned(uint8_t kind, size_t len)
{
    if (kind & 8)
        len *= 2;
    char head[512];
    int n = 0;
    switch (kind & 7) {
    case 0:
        n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
        break;
    case 1:
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n"
                     "%zx\r\n",
                     len);
        break;
    case 2:
        n = snprintf(head, sizeof(head), "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n");
        len = 0;
        break;
    case 3:
        n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        break;
    case 4:
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 304 Not Modified\r\nContent-Length: %zu\r\nETag: \"e\"\r\n\r\n",
                     len);
        len = 0;
        break;
    case 5:
        n = snprintf(head, sizeof(head), "HTTP/1.1 100 Continue\r\n\r\n");
        len = 0;
        break;
    case 6:
        n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                     len + 10);
        break;
    case 7:
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: keep-alive, x-hop\r\n"
                     "X-Hop: 1\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\n"
                     "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: x-t\r\n"
                     "X-Pad:  \t v \t \r\nX-Empty:\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
                     len);
        break;
    }
    upstream_send(head, (size_t)n);
    if (len) {
        if (!filler[0])
            memset(filler, 'r', sizeof(filler));
        upstream_send(filler, len); /* len <= 2 * 65535 */
    }
    if ((kind & 7) == 1)
        upstream_send("\r\n0\r\nx-t: 1\r\n\r\n", 15);
    if ((kind & 7) == 3 || (kind & 7) == 6)
        upstream_end(0);
}

/* ---------------------------------------------------------- the script */

static size_t operand_len(fz_in_t *in)
{
    size_t n = fz_u8(in);
    if (n == 255)
        n = fz_u16(in);
    return n ? n : 1;
}

static void end_input(void)
{
    client_close();
    for (int i = 0; i < h.nups; i++) {
        if (h.ups[i].fd >= 0)
            close(h.ups[i].fd);
        h.ups[i].fd = -1;
        outq_free(&h.ups[i].q);
    }
    for (int i = 0; i < SETTLE_TURNS && worker_connections(); i++) {
        loop_turn(g_loop, 0);
        int fd;
        while ((fd = accept4(h.upstream_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
            close(fd);
    }
    settle();
    int fd;
    while ((fd = accept4(h.upstream_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(fd);
    settle();
    FZ_CHECK(worker_connections() == 0,
             "%lu client connections still open after every peer closed",
             worker_connections());
    FZ_CHECK(g_loop->bufs_out == 0, "%u receive buffers not returned to the ring",
             g_loop->bufs_out);
    h.nups = h.cur = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in_t in = {data, size};
    int waits = 0;
    h.which = 0;
    client_connect();
    settle();
    while (in.n) {
        uint8_t op = fz_u8(&in) % 19;
        size_t len, got;
        const uint8_t *p;
        switch (op) {
        case 0:
        case 1:
            len = operand_len(&in);
            p = fz_take(&in, len, &got);
            if (op == 0)
                client_send(p, got);
            else
                upstream_send(p, got);
            break;
        case 2: {
            uint8_t type = fz_u8(&in), flags = fz_u8(&in), sid = fz_u8(&in);
            len = operand_len(&in);
            p = fz_take(&in, len, &got);
            client_frame(type, flags, sid, p, got);
            break;
        }
        case 3: {
            uint8_t flags = fz_u8(&in), sid = fz_u8(&in);
            len = operand_len(&in);
            p = fz_take(&in, len, &got);
            listed_request(flags, sid, p, got);
            break;
        }
        case 4: {
            uint8_t sid = fz_u8(&in), kind = fz_u8(&in);
            uint16_t cl = (kind & 0x10) ? fz_u16(&in) : 0;
            canned_request(sid, kind, cl);
            break;
        }
        case 5: {
            uint8_t sid = fz_u8(&in), flags = fz_u8(&in);
            client_data(sid, flags, fz_u16(&in));
            break;
        }
        case 6: {
            uint8_t sid = fz_u8(&in), inc[4];
            for (int i = 0; i < 4; i++)
                inc[i] = fz_u8(&in);
            client_frame(NGHTTP2_WINDOW_UPDATE, 0, sid, inc, 4);
            break;
        }
        case 7: {
            uint8_t sid = fz_u8(&in), code[4] = {0, 0, 0, fz_u8(&in)};
            client_frame(NGHTTP2_RST_STREAM, 0, sid, code, 4);
            break;
        }
        case 8: {
            uint8_t kind = fz_u8(&in);
            upstream_canned(kind, fz_u16(&in));
            break;
        }
        case 9:
            pick_upstream(fz_u8(&in));
            break;
        case 10:
        case 11:
            upstream_end(op == 11);
            break;
        case 12:
            if (client_up())
                shutdown(h.client, SHUT_WR);
            break;
        case 13:
            client_close();
            client_connect();
            break;
        case 14: {
            unsigned k = fz_u8(&in) + 1u;
            size_t n = h.last_len;
            /* the repeats are the client's, not the harness's requests */
            for (unsigned i = 0; i < k && n; i++) {
                client_queue(h.last, n, 0, 0);
                if (i % 16 == 15)
                    settle();
            }
            break;
        }
        case 15:
            h.client_paused = !h.client_paused;
            break;
        case 16:
            accept_drain(fz_u8(&in)); /* the worker's drain, both protocols */
            break;
        case 17:
            client_close();
            h.which = !h.which;
            client_connect();
            break;
        case 18:
            if (h.which && waits++ < MAX_WAITS)
                usleep(50 * 1000);
            break;
        }
        settle();
    }
    end_input();
    return 0;
}
