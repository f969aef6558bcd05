/*
 * Fuzz target: templates (core/template.c): weir_template_compile against
 * the core's variables (plus a few of the harness's own), and every way of
 * rendering: weir_template_render, _render_captures, _render_flags with no
 * flag, WEIR_RENDER_LOG, WEIR_RENDER_JSON and both.
 *
 * Input: the template text up to the first NUL byte; after it, NUL-separated
 * values for the request the template is rendered against, in this order:
 * path, query (empty: no '?' at all), host, method, X-Forwarded-For, Cookie,
 * User-Agent, X-Test (request headers), X-Resp (response header), then the
 * capture subject.
 * Missing values get defaults; values may hold any byte (the JSON escaping
 * of variable values is part of what is tested).
 *
 * Invariants beyond "no sanitizer report":
 *  - compile succeeds exactly when an independent reading of the template
 *    grammar ("$$", "$0".."$9", "$name", "${name}", every name known to
 *    vars_find) says it is valid;
 *  - each rendering equals what that reading renders from vars_get values,
 *    with unset variables as "" ("-" for WEIR_RENDER_LOG) and values (not
 *    literal text) JSON-escaped for WEIR_RENDER_JSON;
 *  - allocated results are NUL-terminated; weir_template_is_literal holds
 *    exactly for templates without references;
 *  - a JSON rendering of a template whose literal text is plain printable
 *    ASCII is valid JSON string content.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "conf.h"
#include "fuzz_common.h"
#include "conn.h"
#include "request.h"
#include "vars.h"

static weir_conf_t base;        /* the variable registry; templates use a copy */
static weir_route_t route = {.name = "fuzzroute"};
static weir_upstream_t upstream = {.name = "fuzzup"};
/* the connection requests come from: only its addresses are read */
static conn_t fuzz_conn;

/* Harness variables: one always unset, one prefix family echoing its
 * suffix, one empty. */
static int get_unset(weir_request_t *r, weir_str_t sfx, weir_str_t *out)
{
    (void)r, (void)sfx, (void)out;
    return 1;
}

static int get_echo(weir_request_t *r, weir_str_t sfx, weir_str_t *out)
{
    (void)r;
    *out = sfx;
    return 0;
}

static int get_empty(weir_request_t *r, weir_str_t sfx, weir_str_t *out)
{
    (void)r, (void)sfx;
    *out = (weir_str_t){NULL, 0};
    return 0;
}

static void free_base(void)
{
    arena_free(base.arena);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    base.arena = arena_new(16384, 0);
    base.errors_tail = &base.errors;
    base.file = "template";
    if (!base.arena || vars_init(&base) < 0 || core_vars_register(&base) < 0 ||
        weir_var_register(&base, "fz_unset", 0, get_unset) < 0 ||
        weir_var_register(&base, "fz_", WEIR_VAR_PREFIX, get_echo) < 0 ||
        weir_var_register(&base, "fz_empty", 0, get_empty) < 0)
        abort();
    atexit(free_base);

    struct sockaddr_in *c = &fuzz_conn.peer.u.in4;
    c->sin_family = AF_INET;
    c->sin_port = htons(40000);
    c->sin_addr.s_addr = htonl(0x7f000001);
    fuzz_conn.peer.len = sizeof(*c);
    struct sockaddr_in6 *s = &fuzz_conn.local.u.in6;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(8080);
    s->sin6_addr.s6_addr[15] = 1;
    fuzz_conn.local.len = sizeof(*s);
    return 0;
}

/* ------------------------------------------------------ reference renderer */

struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        FZ_CHECK(b->p != NULL, "realloc");
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
}

/* Code point length of a well-formed UTF-8 sequence at s (2..4), or 0:
 * decode, then refuse overlong forms, surrogates and > U+10FFFF. */
static size_t utf8_ok(const unsigned char *s, size_t left)
{
    size_t n;
    uint32_t cp;
    if ((s[0] & 0xe0) == 0xc0)
        n = 2, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        n = 3, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static void json_put(struct sbuf *b, weir_str_t v)
{
    const unsigned char *s = (const unsigned char *)v.data;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = s[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        if (esc) {
            sb_put(b, esc, 2);
            continue;
        }
        if (c >= 0x20 && c < 0x7f) {
            sb_put(b, (const char *)&s[i], 1);
            continue;
        }
        size_t n = c >= 0x80 ? utf8_ok(s + i, v.len - i) : 0;
        if (n) {
            sb_put(b, (const char *)&s[i], n);
            i += n - 1;
            continue;
        }
        char u[7];
        static const char hex[] = "0123456789abcdef";
        memcpy(u, "\\u00", 4);
        u[4] = hex[c >> 4];
        u[5] = hex[c & 15];
        sb_put(b, u, 6);
    }
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

enum ref_mode { REF_PLAIN, REF_CAPTURES, REF_LOG, REF_JSON };

struct caps {
    weir_str_t subject;
    const size_t *ov;
    size_t ncap;
};

/* Renders text the way the documentation reads. Returns 0, or -1 when the
 * template is invalid; *refs counts variable and capture references. */
static int ref_render(weir_request_t *r, const char *text, enum ref_mode mode,
                      const struct caps *caps, struct sbuf *out, size_t *refs)
{
    size_t len = strlen(text), i = 0;
    *refs = 0;
    out->n = 0;
    while (i < len) {
        if (text[i] != '$') {
            sb_put(out, text + i, 1);
            i++;
            continue;
        }
        const char *name;
        size_t nlen;
        char nx = text[i + 1];
        if (nx == '$') {
            sb_put(out, "$", 1);
            i += 2;
            continue;
        }
        if (nx == '{') {
            name = text + i + 2;
            const char *close = strchr(name, '}');
            if (!close)
                return -1;
            nlen = (size_t)(close - name);
            if (nlen == 0)
                return -1;
            for (size_t k = 0; k < nlen; k++)
                if (!name_char(name[k]))
                    return -1;
            i += nlen + 3;
        } else if (nx >= '0' && nx <= '9') {
            name = text + i + 1;
            nlen = 1;
            i += 2;
        } else if (name_char(nx)) {
            name = text + i + 1;
            nlen = 0;
            while (name_char(name[nlen]))
                nlen++;
            i += 1 + nlen;
        } else {
            return -1;
        }
        (*refs)++;
        if (nlen == 1 && name[0] >= '0' && name[0] <= '9') {
            /* a capture: only render_captures has a subject */
            unsigned g = (unsigned)(name[0] - '0');
            weir_str_t v = {"", 0};
            if (mode == REF_CAPTURES && g < caps->ncap) {
                size_t a = caps->ov[2 * g], b = caps->ov[2 * g + 1];
                if (a != SIZE_MAX && b != SIZE_MAX && a <= b && b <= caps->subject.len)
                    v = (weir_str_t){caps->subject.data + a, b - a};
            }
            if (mode == REF_JSON)
                json_put(out, v);
            else
                sb_put(out, v.data, v.len);
            continue;
        }
        char *nm = malloc(nlen + 1);
        FZ_CHECK(nm != NULL, "malloc");
        memcpy(nm, name, nlen);
        nm[nlen] = '\0';
        weir_str_t v;
        int rc = vars_get(r, r->cf, nm, &v);
        free(nm);
        if (rc < 0)
            return -1;
        if (rc == 1)
            v = mode == REF_LOG ? WEIR_STR("-") : (weir_str_t){"", 0};
        if (mode == REF_JSON)
            json_put(out, v);
        else
            sb_put(out, v.data ? v.data : "", v.len);
    }
    return 0;
}

/* JSON string content: no raw control bytes or quotes, escapes well formed. */
static void check_json(weir_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        FZ_CHECK(c >= 0x20 && c != 0x7f && c != '"', "raw byte %#x in JSON output", c);
        if (c != '\\')
            continue;
        FZ_CHECK(i + 1 < s.len, "trailing backslash in JSON output");
        char e = s.data[++i];
        if (e == 'u') {
            FZ_CHECK(i + 4 < s.len, "short \\u escape");
            i += 4;
        } else {
            FZ_CHECK(strchr("\"\\/bfnrt", e) != NULL && e != '\0', "bad escape \\%c", e);
        }
    }
}

/* ------------------------------------------------------------------ input */

#define NVALUES 10

static weir_request_t *make_request(weir_str_t *vals)
{
    weir_request_t *r = request_new(&base);
    FZ_CHECK(r != NULL, "request_new");
    /* deterministic: no random id, a fixed clock */
    r->id_bits[0] = 0x0123456789abcdefull;
    r->id_bits[1] = 0xfedcba9876543210ull;
    r->start_wall_ms = 1700000000123ull;
    r->conn = &fuzz_conn;
    r->path = vals[0];
    /* an empty query value stands for a request without '?' */
    r->query = vals[1].len ? vals[1] : (weir_str_t){NULL, 0};
    r->host = vals[2];
    r->method = vals[3];
    r->target = vals[0];
    r->version = 11;
    r->status = 200;
    r->upstream_status = 502;
    r->route = &route;
    r->upstream = &upstream;
    r->upstream_addr = "127.0.0.1:9001";
    r->body_bytes_sent = 1234;
    r->request_length = 99;
    r->connection_id = 7;
    r->connection_requests = 3;
    static const char *const names[] = {"X-Forwarded-For", "Cookie", "User-Agent", "X-Test"};
    for (size_t i = 0; i < 4; i++)
        if (headers_push(r->arena, &r->headers,
                         (weir_str_t){names[i], strlen(names[i])}, vals[4 + i]) < 0)
            abort();
    /* a second X-Forwarded-For for $proxy_add_x_forwarded_for */
    if (headers_push(r->arena, &r->headers, WEIR_STR("x-forwarded-for"), WEIR_STR("10.0.0.9")) <
            0 ||
        headers_push(r->arena, &r->resp_headers, WEIR_STR("X-Resp"), vals[8]) < 0)
        abort();
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *end = (const char *)data + size;
    const char *nul = size ? memchr(data, '\0', size) : NULL;
    size_t tlen = nul ? (size_t)(nul - (const char *)data) : size;
    char *text = malloc(tlen + 1);
    FZ_CHECK(text != NULL, "malloc");
    memcpy(text, data, tlen);
    text[tlen] = '\0';

    static const char *const defaults[NVALUES] = {
        "/a/b", "x=1&y=%20", "example.com", "GET", "192.0.2.1", "a=1; sid=\"q\"",
        "curl/8 \xc3\xa9\x01", "t\tv", "r\"v", "/users/42/posts",
    };
    weir_str_t vals[NVALUES];
    const char *p = nul ? nul + 1 : end;
    for (size_t i = 0; i < NVALUES; i++) {
        if (p < end) {
            const char *e = memchr(p, '\0', (size_t)(end - p));
            e = e ? e : end;
            vals[i] = (weir_str_t){p, (size_t)(e - p)};
            p = e < end ? e + 1 : end;
        } else {
            vals[i] = (weir_str_t){defaults[i], strlen(defaults[i])};
        }
    }
    /* copies, so a read past a value is an ASan report */
    char *copies[NVALUES];
    for (size_t i = 0; i < NVALUES; i++) {
        copies[i] = fz_dup(vals[i].data, vals[i].len);
        vals[i].data = copies[i];
    }

    /* A generation of its own per input (the registry is shared). */
    weir_conf_t cf = base;
    cf.arena = arena_new(4096, 16u << 20);
    FZ_CHECK(cf.arena != NULL, "arena_new");
    cf.errors = NULL;
    cf.errors_tail = &cf.errors;
    cf.nerrors = 0;

    weir_template_t *t = weir_template_compile(&cf, NULL, text);
    weir_request_t *r = make_request(vals);
    r->cf = &cf;

    /* captures: groups from the subject at offsets taken from its bytes,
     * some unset, some out of range */
    weir_str_t subject = vals[9];
    size_t ov[20];
    for (size_t g = 0; g < 10; g++) {
        size_t a = subject.len ? (size_t)(unsigned char)subject.data[g % subject.len] : 0;
        size_t b = a + g;
        ov[2 * g] = g == 3 ? SIZE_MAX : a % (subject.len + 2);
        ov[2 * g + 1] = g == 3 ? SIZE_MAX : b % (subject.len + 3);
    }
    struct caps caps = {subject, ov, 1 + (size_t)(subject.len % 10)};

    struct sbuf want = {0};
    size_t refs;
    int ref_ok = ref_render(r, text, REF_PLAIN, &caps, &want, &refs) == 0;
    FZ_CHECK((t != NULL) == ref_ok, "compile %s '%s', the reference %s it",
             t ? "accepted" : "refused", fz_show((weir_str_t){text, tlen}),
             ref_ok ? "accepts" : "refuses");
    if (!t) {
        FZ_CHECK(cf.nerrors > 0 && cf.errors != NULL, "compile failed without an error");
    } else {
        FZ_CHECK(cf.nerrors == 0, "compile succeeded with %u errors", cf.nerrors);
        FZ_CHECK(weir_template_is_literal(t) == (refs == 0), "is_literal %d with %zu refs",
                 weir_template_is_literal(t), refs);
        FZ_CHECK(strcmp(template_source(t), text) == 0, "template_source differs");
        /* $request_time reads the clock at each rendering */
        int timed = strstr(text, "request_time") != NULL;

        static const struct {
            enum ref_mode mode;
            int api;           /* 0 render, 1 captures, 2 flags */
            unsigned flags;
        } ways[] = {
            {REF_PLAIN, 0, 0},
            {REF_CAPTURES, 1, 0},
            {REF_PLAIN, 2, 0},
            {REF_LOG, 2, WEIR_RENDER_LOG},
            {REF_JSON, 2, WEIR_RENDER_JSON},
            {REF_JSON, 2, WEIR_RENDER_LOG | WEIR_RENDER_JSON},
        };
        for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
            weir_str_t got = {NULL, 99};
            int rc;
            if (ways[w].api == 0)
                rc = weir_template_render(r, t, &got);
            else if (ways[w].api == 1)
                rc = weir_template_render_captures(r, t, subject, ov, caps.ncap, &got);
            else
                rc = weir_template_render_flags(r, t, ways[w].flags, &got);
            FZ_CHECK(rc == 0, "render way %zu failed", w);
            FZ_CHECK(got.data != NULL || got.len == 0, "render way %zu: NULL data", w);
            if (refs && got.len)
                FZ_CHECK(got.data[got.len] == '\0', "render way %zu not NUL-terminated", w);
            int ok = ref_render(r, text, ways[w].mode, &caps, &want, &refs);
            FZ_CHECK(ok == 0, "reference failed on an accepted template");
            if (!timed)
                FZ_CHECK(got.len == want.n && (!want.n || memcmp(got.data, want.p, want.n) == 0),
                         "render way %zu of '%s': got '%s' (%zu), want '%s' (%zu)", w,
                         fz_show((weir_str_t){text, tlen}), fz_show(got), got.len,
                         fz_show((weir_str_t){want.p, want.n}), want.n);
            if (ways[w].mode == REF_JSON) {
                int plain = 1;
                for (size_t k = 0; k < tlen; k++) {
                    unsigned char c = (unsigned char)text[k];
                    plain &= c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
                }
                if (plain)
                    check_json(got);
            }
        }
    }

    free(want.p);
    request_free(r);
    arena_free(cf.arena);
    for (size_t i = 0; i < NVALUES; i++)
        free(copies[i]);
    free(text);
    return 0;
}
