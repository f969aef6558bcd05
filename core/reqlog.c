/* The context of error-log lines about requests and connections (reqlog.h). */
#include "reqlog.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "conn.h"

/* Names come from the config; bounded so the context has a known size. */
#define NAME_MAX_BYTES 128

typedef struct ctxbuf {
    char *p;
    size_t cap, len; /* cap counts the NUL */
} ctxbuf_t;

static void put(ctxbuf_t *b, const char *s, size_t n)
{
    if (b->len + 1 >= b->cap)
        return;
    if (n > b->cap - 1 - b->len)
        n = b->cap - 1 - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put_cstr(ctxbuf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

/* A name, one line whatever it holds. */
static void put_name(ctxbuf_t *b, const char *s)
{
    char out[NAME_MAX_BYTES + 1];
    size_t n;
    log_escape(s, strlen(s), out, sizeof(out), 0, &n);
    put(b, out, n);
}

static void put_client(ctxbuf_t *b, conn_t *c)
{
    if (!c || c->upstream)
        return;
    const struct sockaddr *sa = conn_peer(c);
    char host[INET6_ADDRSTRLEN];
    char text[INET6_ADDRSTRLEN + 16];
    int n;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        n = snprintf(text, sizeof(text), "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        n = snprintf(text, sizeof(text), "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        n = snprintf(text, sizeof(text), "unix:");
    } else {
        return; /* the address could not be looked up */
    }
    put_cstr(b, ", client: ");
    put(b, text, n > 0 ? (size_t)n : 0);
}

static const char *protocol(int version)
{
    return version == 10 ? "HTTP/1.0" : version == 20 ? "HTTP/2.0" : "HTTP/1.1";
}

/* $request, or the raw first line of a head that could not be parsed,
 * escaped and cut to REQLOG_REQUEST_MAX bytes. */
static void put_request(ctxbuf_t *b, const weir_request_t *r)
{
    weir_str_t parts[5];
    size_t np = 0;
    if (r->method.len && r->target.len) {
        const char *proto = protocol(r->version);
        parts[np++] = r->method;
        parts[np++] = WEIR_STR(" ");
        parts[np++] = r->target;
        parts[np++] = WEIR_STR(" ");
        parts[np++] = (weir_str_t){proto, strlen(proto)};
    } else if (r->raw_line.len) {
        parts[np++] = r->raw_line;
    } else {
        return;
    }
    char q[REQLOG_REQUEST_MAX + 1];
    size_t ql = 0;
    int cut = 0;
    for (size_t i = 0; i < np && !cut; i++) {
        size_t w;
        size_t used =
            log_escape(parts[i].data, parts[i].len, q + ql, sizeof(q) - ql, LOG_ESC_QUOTED, &w);
        ql += w;
        cut = used < parts[i].len;
    }
    put_cstr(b, ", request: \"");
    put(b, q, ql);
    put_cstr(b, cut ? "...\"" : "\"");
}

size_t reqlog_context(const weir_request_t *r, conn_t *c, char *buf, size_t cap)
{
    ctxbuf_t b = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
    if (!r) {
        put_client(&b, c);
        return b.len;
    }
    put_client(&b, r->conn);
    if (r->stub)
        return b.len;
    char id[33];
    request_id_text(r, id);
    put_cstr(&b, ", request_id: ");
    put_cstr(&b, id);
    if (r->route) {
        put_cstr(&b, ", route: ");
        put_name(&b, r->route->name);
    }
    if (r->upstream) {
        put_cstr(&b, ", upstream: ");
        put_name(&b, r->upstream->name);
        if (r->peer >= 0 && (size_t)r->peer < r->upstream->npeers) {
            put_cstr(&b, " (");
            put_name(&b, r->upstream->peers[r->peer].address);
            put_cstr(&b, ")");
        }
    }
    put_request(&b, r);
    return b.len;
}

void reqlog_v(const char *who, const weir_request_t *r, conn_t *c, weir_log_level_t level,
              const char *fmt, va_list ap)
{
    if (!log_level_enabled(level))
        return;
    char ctx[REQLOG_CONTEXT_MAX];
    reqlog_context(r, c, ctx, sizeof(ctx));
    log_vmsg_ctx(who, level, ctx, fmt, ap);
}

void reqlog(const weir_request_t *r, conn_t *c, weir_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reqlog_v(NULL, r, c, level, fmt, ap);
    va_end(ap);
}

void weir_request_log(const weir_request_t *r, const weir_module_t *m, weir_log_level_t level,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reqlog_v(m ? m->name : NULL, r, NULL, level, fmt, ap);
    va_end(ap);
}

void weir_connection_log(weir_connection_t *c, const weir_module_t *m, weir_log_level_t level,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reqlog_v(m ? m->name : NULL, NULL, c, level, fmt, ap);
    va_end(ap);
}
