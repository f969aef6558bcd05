/*
 * An HTTP/2 stream's request head, checked field by field (the rules are in
 * h2.h). Pure: no session, no I/O, so the unit suite drives every rule.
 */
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "h1.h"
#include "h2.h"

enum {
    PS_METHOD = 1u << 0,
    PS_SCHEME = 1u << 1,
    PS_AUTHORITY = 1u << 2,
    PS_PATH = 1u << 3,
};

/* RFC 9113 §4.3.1: each field counts its name, its value and 32 bytes. */
#define FIELD_OVERHEAD 32

void h2_head_init(h2_head_t *h)
{
    memset(h, 0, sizeof(*h));
    headers_init(&h->fields);
    h->content_length = -1;
}

static int lit_eq(weir_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.data, lit, n) == 0;
}

static int fail(h2_head_t *h, int error)
{
    if (!h->error)
        h->error = error;
    return h->error;
}

static int name_ok(weir_str_t n)
{
    if (!n.len)
        return 0;
    for (size_t i = 0; i < n.len; i++) {
        unsigned char c = (unsigned char)n.data[i];
        if (!h1_is(c, H1_C_TCHAR) || (c >= 'A' && c <= 'Z'))
            return 0;
    }
    return 1;
}

/* No CR, LF or NUL (nor any other control byte but HTAB), and no
 * whitespace at either end. */
static int value_ok(weir_str_t v)
{
    for (size_t i = 0; i < v.len; i++)
        if (!h1_is((unsigned char)v.data[i], H1_C_VALUE))
            return 0;
    if (v.len && (v.data[0] == ' ' || v.data[0] == '\t' || v.data[v.len - 1] == ' ' ||
                  v.data[v.len - 1] == '\t'))
        return 0;
    return 1;
}

int h2_connection_specific(weir_str_t n)
{
    static const weir_str_t names[] = {WEIR_STR("connection"), WEIR_STR("keep-alive"),
                                       WEIR_STR("proxy-connection"),
                                       WEIR_STR("transfer-encoding"), WEIR_STR("upgrade")};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (str_case_eq(n, names[i]))
            return 1;
    return 0;
}

static int pseudo_field(h2_head_t *h, weir_str_t name, weir_str_t value)
{
    static const struct {
        const char *name;
        unsigned bit;
        size_t off;
    } known[] = {
        {":method", PS_METHOD, offsetof(h2_head_t, method)},
        {":scheme", PS_SCHEME, offsetof(h2_head_t, scheme)},
        {":authority", PS_AUTHORITY, offsetof(h2_head_t, authority)},
        {":path", PS_PATH, offsetof(h2_head_t, path)},
    };
    if (h->regular_seen)
        return fail(h, H2_MALFORMED); /* pseudo-fields come first */
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (!lit_eq(name, known[i].name))
            continue;
        if (h->pseudo_seen & known[i].bit)
            return fail(h, H2_MALFORMED);
        h->pseudo_seen |= known[i].bit;
        *(weir_str_t *)((char *)h + known[i].off) = value;
        return 0;
    }
    return fail(h, H2_MALFORMED); /* :status, :protocol, anything else */
}

static int content_length_field(h2_head_t *h, weir_str_t value)
{
    uint64_t v;
    if (h1_parse_uint(value, &v) < 0 || v > INT64_MAX)
        return fail(h, H2_MALFORMED);
    if (h->content_length >= 0 && (uint64_t)h->content_length != v)
        return fail(h, H2_MALFORMED);
    h->content_length = (int64_t)v;
    return 0;
}

/* Cookie crumbs (RFC 9113 §8.2.3) are joined in order; the joined value is
 * rebuilt in the arena each time, which is fine for the few a client sends. */
static int cookie_field(struct arena *a, h2_head_t *h, weir_str_t value)
{
    if (!h->cookies) {
        h->cookie = value;
        h->cookies = 1;
        return 0;
    }
    size_t len = h->cookie.len + 2 + value.len;
    char *p = arena_alloc_raw(a, len);
    if (!p)
        return fail(h, -500);
    memcpy(p, h->cookie.data, h->cookie.len);
    memcpy(p + h->cookie.len, "; ", 2);
    memcpy(p + h->cookie.len + 2, value.data, value.len);
    h->cookie = (weir_str_t){p, len};
    return 0;
}

static int regular_field(struct arena *a, h2_head_t *h, weir_str_t name, weir_str_t value)
{
    h->regular_seen = 1;
    if (!name_ok(name) || h2_connection_specific(name))
        return fail(h, H2_MALFORMED);
    if (lit_eq(name, "te")) {
        if (!lit_eq(value, "trailers"))
            return fail(h, H2_MALFORMED);
        h->te_trailers = 1; /* hop-by-hop: only an HTTP/2 upstream gets it */
        return 0;
    }
    if (lit_eq(name, "content-length"))
        return content_length_field(h, value);
    if (lit_eq(name, "cookie"))
        return cookie_field(a, h, value);
    if (lit_eq(name, "host")) {
        if (h->host.data)
            return fail(h, H2_MALFORMED);
        h->host = value;
        return 0;
    }
    if (headers_push(a, &h->fields, name, value) < 0)
        return fail(h, -500);
    return 0;
}

int h2_head_field(struct arena *a, h2_head_t *h, weir_str_t name, weir_str_t value,
                  size_t max_list_size)
{
    if (h->error)
        return h->error;
    h->list_size += name.len + value.len + FIELD_OVERHEAD;
    if (max_list_size && h->list_size > max_list_size)
        return fail(h, -431);
    if (!value_ok(value))
        return fail(h, H2_MALFORMED);
    char *v = arena_strndup(a, value.data, value.len);
    if (!v)
        return fail(h, -500);
    value.data = v;
    if (name.len && name.data[0] == ':')
        return pseudo_field(h, name, value);
    char *n = arena_strndup(a, name.data, name.len);
    if (!n)
        return fail(h, -500);
    name.data = n;
    return regular_field(a, h, name, value);
}

static int path_ok(weir_str_t path, weir_str_t method)
{
    if (!path.len)
        return 0;
    for (size_t i = 0; i < path.len; i++)
        if (!h1_is((unsigned char)path.data[i], H1_C_TARGET))
            return 0;
    if (path.data[0] == '/')
        return 1;
    return path.len == 1 && path.data[0] == '*' && lit_eq(method, "OPTIONS");
}

int h2_head_finish(struct arena *a, h2_head_t *h)
{
    if (h->error)
        return h->error;
    if (!(h->pseudo_seen & PS_METHOD) || !h->method.len)
        return fail(h, H2_MALFORMED);
    if (lit_eq(h->method, "CONNECT")) /* a reverse proxy tunnels no hosts */
        return fail(h, (h->pseudo_seen & (PS_SCHEME | PS_PATH)) ? H2_MALFORMED : -501);
    for (size_t i = 0; i < h->method.len; i++)
        if (!h1_is((unsigned char)h->method.data[i], H1_C_TCHAR))
            return fail(h, H2_MALFORMED);
    if (!(h->pseudo_seen & PS_SCHEME) || !(h->pseudo_seen & PS_PATH))
        return fail(h, H2_MALFORMED);
    if (!path_ok(h->path, h->method))
        return fail(h, H2_MALFORMED);
    if (!lit_eq(h->scheme, "http") && !lit_eq(h->scheme, "https"))
        return fail(h, -400);
    if (!h1_method_known(h->method))
        return fail(h, -501);
    if (h->pseudo_seen & PS_AUTHORITY) {
        if (h->host.data && (h->host.len != h->authority.len ||
                             strncasecmp(h->host.data, h->authority.data, h->host.len) != 0))
            return fail(h, H2_MALFORMED);
    } else if (h->host.data) {
        h->authority = h->host;
    } else {
        return fail(h, -400);
    }
    weir_str_t host;
    if (h1_parse_authority(h->authority, &host) < 0)
        return fail(h, -400);
    if (h->cookies && headers_push(a, &h->fields, WEIR_STR("cookie"), h->cookie) < 0)
        return fail(h, -500);
    return 0;
}
