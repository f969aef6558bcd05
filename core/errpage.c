#include "errpage.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "downstream.h"
#include "h1.h"
#include "phase.h"

static const char *const error_page_fmt =
    "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n"
    "<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";

/* Renders the error_page template ({{status}}, {{reason}}, {{request_id}}). */
static weir_str_t render_error_page(weir_request_t *r, const char *reason)
{
    const char *tpl = r->cf->error_page;
    if (!tpl) {
        size_t cap = strlen(error_page_fmt) + 2 * strlen(reason) + 16;
        char *p = arena_alloc_raw(r->arena, cap);
        if (!p)
            return (weir_str_t){0};
        int n = snprintf(p, cap, error_page_fmt, r->status, reason, r->status, reason);
        return (weir_str_t){p, n > 0 ? (size_t)n : 0};
    }
    size_t cap = strlen(tpl) * 2 + 128;
    char *out = arena_alloc_raw(r->arena, cap);
    size_t len = 0;
    if (!out)
        return (weir_str_t){0};
    for (const char *p = tpl; *p && len + 64 < cap;) {
        char num[16];
        const char *sub = NULL;
        size_t skip = 0;
        if (strncmp(p, "{{status}}", 10) == 0) {
            snprintf(num, sizeof(num), "%d", r->status);
            sub = num;
            skip = 10;
        } else if (strncmp(p, "{{reason}}", 10) == 0) {
            sub = reason;
            skip = 10;
        } else if (strncmp(p, "{{request_id}}", 14) == 0) {
            sub = request_id(r);
            skip = 14;
        }
        if (sub) {
            size_t sl = strlen(sub);
            if (len + sl >= cap)
                break;
            memcpy(out + len, sub, sl);
            len += sl;
            p += skip;
        } else {
            out[len++] = *p++;
        }
    }
    return (weir_str_t){out, len};
}

static void answer_sent(weir_request_t *r)
{
    r->ds->finish(r);
}

/* A gRPC call (HTTP/2, content-type application/grpc...) that weir answers
 * itself gets what a gRPC client understands instead of a page: a
 * trailers-only response, :status 200 with grpc-status and grpc-message,
 * as Envoy does. The codes follow gRPC's HTTP-to-gRPC status mapping
 * (doc/http-grpc-status-mapping.md): 502, 503, 504 and 429 are UNAVAILABLE
 * (14), so the client may retry. The access log shows the 200, the error
 * log the reason. */
static int is_grpc(const weir_request_t *r)
{
    header_entry_t *ct = headers_find(&r->headers, WEIR_STR("content-type"));
    return r->version == 20 && ct && ct->value.len >= 16 &&
           strncasecmp(ct->value.data, "application/grpc", 16) == 0;
}

static int grpc_code(int status)
{
    switch (status) {
    case 400: return 13; /* INTERNAL */
    case 401: return 16; /* UNAUTHENTICATED */
    case 403: return 7;  /* PERMISSION_DENIED */
    case 404: return 12; /* UNIMPLEMENTED */
    case 429: case 502: case 503: case 504: return 14; /* UNAVAILABLE */
    default: return 2;   /* UNKNOWN */
    }
}

static void grpc_answer(weir_request_t *r)
{
    char *code = arena_alloc_raw(r->arena, 4);
    char *msg = arena_alloc_raw(r->arena, 64);
    if (!code || !msg) {
        r->ds->abort(r);
        return;
    }
    snprintf(code, 4, "%d", grpc_code(r->status));
    snprintf(msg, 64, "weir: %d %s", r->status, h1_reason(r->status));
    headers_init(&r->resp_headers);
    headers_push(r->arena, &r->resp_headers, WEIR_STR("content-type"),
                 WEIR_STR("application/grpc"));
    headers_push(r->arena, &r->resp_headers, WEIR_STR("grpc-status"),
                 (weir_str_t){code, strlen(code)});
    headers_push(r->arena, &r->resp_headers, WEIR_STR("grpc-message"),
                 (weir_str_t){msg, strlen(msg)});
    r->status = 200;
    response_start_t rs = {.body = BODY_NONE, .advertised = -1};
    if (r->ds->start_response(r, &rs) < 0) {
        r->ds->abort(r);
        return;
    }
    r->ds->send_body(r, NULL, 0, 1, answer_sent);
}

void errpage_send(weir_request_t *r)
{
    const downstream_t *ds = r->ds;
    if (ds->head_sent(r)) { /* too late for an answer: the response has started */
        ds->abort(r);
        return;
    }
    if (r->resp_from_upstream) {
        /* weir answers in place of the upstream's response: none of its
         * fields go down with weir's own status */
        headers_init(&r->resp_headers);
        r->resp_from_upstream = 0;
    }
    if (r->status >= 400 && !r->respond_body.len && is_grpc(r)) {
        grpc_answer(r);
        return;
    }
    const char *reason = h1_reason(r->status);
    /* the error phase may set headers or a body */
    const struct phases *ph = r->cf->phases;
    for (size_t i = ph->start[WEIR_PHASE_ERROR]; i < ph->start[WEIR_PHASE_ERROR + 1]; i++)
        ph->entries[i].handler->fn(r);
    weir_str_t body = r->respond_body;
    if (!body.len && r->status >= 400)
        body = render_error_page(r, reason);
    if (body.len && r->status >= 400 && !headers_find(&r->resp_headers, WEIR_STR("content-type")))
        headers_push(r->arena, &r->resp_headers, WEIR_STR("Content-Type"), WEIR_STR("text/html"));
    int is_head = r->method.len == 4 && memcmp(r->method.data, "HEAD", 4) == 0;
    response_start_t rs = {.body = BODY_LENGTH, .length = body.len, .advertised = -1};
    /* a 204 or 304 of weir's own (a module's answer) carries no body and,
     * having none to measure, no Content-Length */
    if (h1_status_has_no_body(r->status)) {
        rs.body = BODY_NONE;
        body = (weir_str_t){0};
    } else if (is_head) {
        rs.body = BODY_NONE;
        rs.advertised = (int64_t)body.len;
        body = (weir_str_t){0};
    }
    if (ds->start_response(r, &rs) < 0) {
        ds->abort(r);
        return;
    }
    ds->send_body(r, &body, body.len ? 1 : 0, 1, answer_sent);
}
