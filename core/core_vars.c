/*
 * The core's variables, with nginx's meanings for the same names. Getters
 * format into the request arena only when asked, so an unused variable costs
 * nothing per request.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>

#include "arena.h"
#include "request.h"
#include "vars.h"

static int out_str(weir_str_t v, weir_str_t *out)
{
    *out = v;
    return 0;
}

static int out_cstr(const char *s, weir_str_t *out)
{
    if (!s)
        return 1;
    out->data = s;
    out->len = strlen(s);
    return 0;
}

static int out_fmt(weir_request_t *r, weir_str_t *out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int out_fmt(weir_request_t *r, weir_str_t *out, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return 1;
    char *p = arena_strndup(r->arena, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
    if (!p)
        return 1;
    out->data = p;
    out->len = strlen(p);
    return 0;
}

/* Address text and port of a sockaddr. */
static int addr_text(weir_request_t *r, const struct sockaddr *s, int want_port, weir_str_t *out)
{
    if (!s || s->sa_family == AF_UNSPEC)
        return 1;
    char host[INET6_ADDRSTRLEN + 8];
    if (s->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)s;
        if (want_port)
            return out_fmt(r, out, "%u", ntohs(in->sin_port));
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    } else if (s->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)s;
        if (want_port)
            return out_fmt(r, out, "%u", ntohs(in6->sin6_port));
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    } else {
        return want_port ? 1 : out_cstr("unix:", out);
    }
    return out_fmt(r, out, "%s", host);
}

#define GETTER(name) static int name(weir_request_t *r, weir_str_t sfx, weir_str_t *out)
#define UNUSED_SFX (void)sfx

GETTER(v_remote_addr) { UNUSED_SFX; return addr_text(r, request_client_addr(r), 0, out); }
GETTER(v_remote_port) { UNUSED_SFX; return addr_text(r, request_client_addr(r), 1, out); }
GETTER(v_server_addr) { UNUSED_SFX; return addr_text(r, request_server_addr(r), 0, out); }
GETTER(v_server_port) { UNUSED_SFX; return addr_text(r, request_server_addr(r), 1, out); }
GETTER(v_scheme) { UNUSED_SFX; return out_cstr(r->tls ? "https" : "http", out); }
GETTER(v_host) { UNUSED_SFX; return out_str(r->host, out); }
GETTER(v_method) { UNUSED_SFX; return out_str(r->method, out); }
GETTER(v_request_uri) { UNUSED_SFX; return out_str(r->target, out); }
GETTER(v_uri) { UNUSED_SFX; return out_str(r->path, out); }
GETTER(v_args) { UNUSED_SFX; return r->query.len ? out_str(r->query, out) : 1; }
GETTER(v_route) { UNUSED_SFX; return r->route ? out_cstr(r->route->name, out) : 1; }
GETTER(v_upstream) { UNUSED_SFX; return r->upstream ? out_cstr(r->upstream->name, out) : 1; }
GETTER(v_upstream_addr) { UNUSED_SFX; return out_cstr(r->upstream_addr, out); }
GETTER(v_request_id) { UNUSED_SFX; return out_cstr(request_id(r), out); }

GETTER(v_protocol)
{
    UNUSED_SFX;
    return out_cstr(r->version == 10 ? "HTTP/1.0" : r->version == 20 ? "HTTP/2.0" : "HTTP/1.1",
                    out);
}

GETTER(v_request)
{
    UNUSED_SFX;
    const char *proto = r->version == 10 ? "HTTP/1.0" : r->version == 20 ? "HTTP/2.0" : "HTTP/1.1";
    size_t len = r->method.len + 1 + r->target.len + 1 + strlen(proto);
    char *p = arena_alloc_raw(r->arena, len + 1);
    if (!p)
        return 1;
    snprintf(p, len + 1, "%.*s %.*s %s", (int)r->method.len, r->method.data, (int)r->target.len,
             r->target.data, proto);
    out->data = p;
    out->len = len;
    return 0;
}

GETTER(v_status) { UNUSED_SFX; return r->status ? out_fmt(r, out, "%d", r->status) : 1; }
GETTER(v_upstream_status)
{
    UNUSED_SFX;
    return r->upstream_status ? out_fmt(r, out, "%d", r->upstream_status) : 1;
}
GETTER(v_body_bytes_sent)
{
    UNUSED_SFX;
    return out_fmt(r, out, "%llu", (unsigned long long)r->body_bytes_sent);
}
GETTER(v_request_length)
{
    UNUSED_SFX;
    return out_fmt(r, out, "%llu", (unsigned long long)r->request_length);
}
GETTER(v_connection)
{
    UNUSED_SFX;
    return out_fmt(r, out, "%llu", (unsigned long long)r->connection_id);
}
GETTER(v_connection_requests)
{
    UNUSED_SFX;
    return out_fmt(r, out, "%llu", (unsigned long long)r->connection_requests);
}

static int seconds_ms(weir_request_t *r, uint64_t us, weir_str_t *out)
{
    return out_fmt(r, out, "%llu.%03llu", (unsigned long long)(us / 1000000),
                   (unsigned long long)(us / 1000 % 1000));
}

GETTER(v_request_time) { UNUSED_SFX; return seconds_ms(r, now_us() - r->start_us, out); }
GETTER(v_upstream_connect_time)
{
    UNUSED_SFX;
    return r->connect_us ? seconds_ms(r, r->connect_us - r->start_us, out) : 1;
}
GETTER(v_upstream_header_time)
{
    UNUSED_SFX;
    return r->header_us ? seconds_ms(r, r->header_us - r->start_us, out) : 1;
}
GETTER(v_upstream_response_time)
{
    UNUSED_SFX;
    return r->response_us ? seconds_ms(r, r->response_us - r->start_us, out) : 1;
}

static int time_fmt(weir_request_t *r, const char *fmt, weir_str_t *out)
{
    time_t t = (time_t)(r->start_wall_ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[64];
    size_t n = strftime(buf, sizeof(buf), fmt, &tm);
    char *p = arena_strndup(r->arena, buf, n);
    if (!p)
        return 1;
    out->data = p;
    out->len = n;
    return 0;
}

GETTER(v_time_local) { UNUSED_SFX; return time_fmt(r, "%d/%b/%Y:%H:%M:%S %z", out); }
GETTER(v_time_iso8601) { UNUSED_SFX; return time_fmt(r, "%Y-%m-%dT%H:%M:%S%z", out); }
GETTER(v_msec)
{
    UNUSED_SFX;
    return out_fmt(r, out, "%llu.%03llu", (unsigned long long)(r->start_wall_ms / 1000),
                   (unsigned long long)(r->start_wall_ms % 1000));
}

GETTER(v_http)
{
    /* suffix arrives lowercased with '_' already mapped to '-' */
    header_entry_t *e = headers_find(&r->headers, sfx);
    return e ? out_str(e->value, out) : 1;
}

GETTER(v_sent_http)
{
    header_entry_t *e = headers_find(&r->resp_headers, sfx);
    return e ? out_str(e->value, out) : 1;
}

/* Finds name=value in a list separated by `sep` (';' for cookies, '&' args). */
static int find_pair(weir_str_t list, weir_str_t name, char sep, weir_str_t *out)
{
    if (!list.len) /* an unset query has no bytes at all: NULL + 0 is UB */
        return 1;
    const char *p = list.data, *end = list.data + list.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == sep))
            p++;
        const char *item = p;
        while (p < end && *p != sep)
            p++;
        const char *eq = memchr(item, '=', (size_t)(p - item));
        if (eq && (size_t)(eq - item) == name.len && strncasecmp(item, name.data, name.len) == 0) {
            out->data = eq + 1;
            out->len = (size_t)(p - eq - 1);
            return 0;
        }
    }
    return 1;
}

GETTER(v_cookie)
{
    for (size_t i = 0; i < r->headers.n; i++) {
        header_entry_t *e = &r->headers.v[i];
        if (e->name.len && str_case_eq(e->name, WEIR_STR("cookie")) &&
            find_pair(e->value, sfx, ';', out) == 0)
            return 0;
    }
    return 1;
}

GETTER(v_arg) { return find_pair(r->query, sfx, '&', out); }

/* The i-th X-Forwarded-For field's value, or 0 (removed slot, other name,
 * empty value). */
static int xff_at(const weir_request_t *r, size_t i, weir_str_t *value)
{
    weir_str_t name;
    return weir_headers_at(&r->headers, i, &name, value) && value->len && name.len == 15 &&
           strncasecmp(name.data, "x-forwarded-for", 15) == 0;
}

/* Every X-Forwarded-For field joined with ", " (as nginx does), then the
 * client's address. */
GETTER(v_proxy_add_x_forwarded_for)
{
    UNUSED_SFX;
    weir_str_t addr, value;
    if (v_remote_addr(r, sfx, &addr))
        return 1;
    size_t len = addr.len, n = weir_headers_count(&r->headers);
    for (size_t i = 0; i < n; i++)
        if (xff_at(r, i, &value))
            len += value.len + 2;
    if (len == addr.len)
        return out_str(addr, out);
    char *p = arena_alloc_raw(r->arena, len), *d = p;
    if (!p)
        return 1;
    for (size_t i = 0; i < n; i++) {
        if (!xff_at(r, i, &value))
            continue;
        memcpy(d, value.data, value.len);
        memcpy(d + value.len, ", ", 2);
        d += value.len + 2;
    }
    memcpy(d, addr.data, addr.len);
    out->data = p;
    out->len = len;
    return 0;
}

/* The tls module fills these in (vars_reserve); without it they are unset. */
GETTER(v_unset) { (void)r; UNUSED_SFX; (void)out; return 1; }

static const char *const tls_vars[] = {
    "ssl_protocol",       "ssl_cipher",      "ssl_server_name",        "ssl_session_reused",
    "ssl_alpn_protocol",  "ssl_client_verify", "ssl_client_s_dn",      "ssl_client_i_dn",
    "ssl_client_fingerprint", "ssl_client_serial",
};

int core_vars_register(weir_conf_t *cf)
{
    static const struct {
        const char *name;
        unsigned flags;
        weir_var_get_fn get;
    } vars[] = {
        {"remote_addr", 0, v_remote_addr},
        {"remote_port", 0, v_remote_port},
        {"server_addr", 0, v_server_addr},
        {"server_port", 0, v_server_port},
        {"scheme", 0, v_scheme},
        {"host", 0, v_host},
        {"method", 0, v_method},
        {"request_method", 0, v_method},
        {"request", 0, v_request},
        {"request_uri", 0, v_request_uri},
        {"uri", 0, v_uri},
        {"args", 0, v_args},
        {"query_string", 0, v_args},
        {"protocol", 0, v_protocol},
        {"server_protocol", 0, v_protocol},
        {"status", 0, v_status},
        {"body_bytes_sent", 0, v_body_bytes_sent},
        {"request_length", 0, v_request_length},
        {"request_time", 0, v_request_time},
        {"request_id", 0, v_request_id},
        {"time_local", 0, v_time_local},
        {"time_iso8601", 0, v_time_iso8601},
        {"msec", 0, v_msec},
        {"connection", 0, v_connection},
        {"connection_requests", 0, v_connection_requests},
        {"route", 0, v_route},
        {"upstream", 0, v_upstream},
        {"upstream_addr", 0, v_upstream_addr},
        {"upstream_status", 0, v_upstream_status},
        {"upstream_connect_time", 0, v_upstream_connect_time},
        {"upstream_header_time", 0, v_upstream_header_time},
        {"upstream_response_time", 0, v_upstream_response_time},
        {"proxy_add_x_forwarded_for", 0, v_proxy_add_x_forwarded_for},
        {"http_", WEIR_VAR_PREFIX, v_http},
        {"sent_http_", WEIR_VAR_PREFIX, v_sent_http},
        {"cookie_", WEIR_VAR_PREFIX, v_cookie},
        {"arg_", WEIR_VAR_PREFIX, v_arg},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (weir_var_register(cf, vars[i].name, vars[i].flags, vars[i].get) < 0)
            return -1;
    for (size_t i = 0; i < sizeof(tls_vars) / sizeof(tls_vars[0]); i++)
        if (vars_reserve(cf, tls_vars[i], v_unset) < 0)
            return -1;
    return 0;
}
