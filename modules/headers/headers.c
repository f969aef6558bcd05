/*
 * Module headers: set, add and remove headers of the request sent upstream
 * and of the response sent downstream.
 *
 * Keys, at the top level and per route:
 *
 *   request_headers:  {set: {Name: value}, add: {Name: value or [values]},
 *                      remove: [Name, ...]}
 *   response_headers: {set: ..., add: ..., remove: ..., always: false}
 *
 * Inheritance: a route without the key gets the top-level value; a route
 * that has the key replaces the top-level value as a whole (nothing is
 * merged, as with nginx's proxy_set_header), so `request_headers: {}` on a
 * route turns the top-level rules off there.
 *
 * Values are variable templates ("$host", "$remote_addr", "$route",
 * "$http_x_foo", "$proxy_add_x_forwarded_for", ...); an unknown variable is a
 * config error at file:line:col. The rules and their order of application
 * (render every value first, then remove, then set, then add) are described
 * in header_ops.h. Examples:
 *
 *   request_headers:
 *     set: {X-Forwarded-For: "$proxy_add_x_forwarded_for", X-Real-IP: "$remote_addr"}
 *     remove: [X-Debug]
 *   response_headers:
 *     add: {Cache-Control: "no-store"}
 *
 * Decisions:
 *  - Where: request rules run in the upstream_request phase on
 *    weir_request_headers(r), after routing, rewriting and balancing, so
 *    "$route" and "$upstream" are known. Response rules run in the
 *    upstream_response phase on weir_response_headers(r), for every status
 *    the upstream sends (unlike nginx's add_header, which skips most error
 *    statuses without `always`).
 *  - Answers weir makes itself (404 without a route, 502/503/504, redirects
 *    and other module answers, 400s) get the response rules only with
 *    `always: true`; they run in the error phase then, with the top-level
 *    rules when no route was chosen. Without `always` an error page never
 *    carries headers meant for the application's responses.
 *  - Hop-by-hop and framing names (Connection, Keep-Alive, Proxy-Connection,
 *    TE, Trailer, Transfer-Encoding, Upgrade, Content-Length and their
 *    spellings with '_') stay under the core's control on both sides: naming
 *    one is a config error that says why. The core strips them from what it
 *    forwards (including every header a client's Connection names) whatever
 *    the rules say.
 *  - Host may be set in request rules: the core sends a Host field a module
 *    replaced instead of the client's (ABI 1.1). Removing Host leaves the
 *    client's, since HTTP/1.1 needs one.
 *  - A rendered value with CR, LF, NUL or another control character is
 *    dropped and logged (warn, the rule's name only, never the value): the
 *    request goes on. `set` still removes the header it would replace, so a
 *    client cannot keep its own X-Forwarded-For by making ours invalid.
 *  - An empty rendered value means "no header" (set removes, add skips), so
 *    "$http_x_foo" with no X-Foo sends no empty X-Foo.
 */
#include <stddef.h>

#include "weir/module.h"

#include "header_ops.h"

WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

/* One struct for the top level and for routes: the core inherits a key a
 * route does not set by copying the field at the same offset. */
struct headers_conf {
    struct header_rules request;
    struct header_rules response;
};

/* Top-level rules of the generation this process serves, for answers made
 * before a route was chosen. The handler gets only the request, so conf_done
 * and worker_init record it (as module router does). */
static const struct headers_conf *active;

/* A non-NULL per-request context: response rules already ran on this
 * response, so the error phase must not add its lines a second time. */
static char applied_mark;

static int parse_request_headers(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    return header_rules_parse(cf, node, "request_headers", HEADER_SIDE_REQUEST, field);
}

static int parse_response_headers(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    return header_rules_parse(cf, node, "response_headers", HEADER_SIDE_RESPONSE, field);
}

static int headers_conf_done(weir_conf_t *cf)
{
    active = weir_main_conf(cf, &weir_module);
    return 0;
}

static int headers_worker_init(const weir_conf_t *cf)
{
    active = weir_main_conf(cf, &weir_module);
    return 0;
}

static void headers_conf_free(weir_conf_t *cf)
{
    if (active == weir_main_conf(cf, &weir_module))
        active = NULL;
}

static const struct headers_conf *conf_of(const weir_request_t *r)
{
    weir_route_t *rt = weir_request_route(r);
    const struct headers_conf *c = rt != NULL ? weir_route_conf(rt, &weir_module) : NULL;

    return c != NULL ? c : active;
}

/* arg: the request, so the line names it */
static void log_drop_request(void *arg, const struct header_op *op)
{
    weir_request_log(arg, &weir_module, WEIR_LOG_WARN,
                     "request_headers.%s: '%s' not sent: its value held CR, LF or another "
                     "control character",
                     op->kind == HEADER_OP_SET ? "set" : "add", op->name.data);
}

static void log_drop_response(void *arg, const struct header_op *op)
{
    weir_request_log(arg, &weir_module, WEIR_LOG_WARN,
                     "response_headers.%s: '%s' not sent: its value held CR, LF or another "
                     "control character",
                     op->kind == HEADER_OP_SET ? "set" : "add", op->name.data);
}

static weir_result_t headers_request(weir_request_t *r)
{
    const struct headers_conf *c = conf_of(r);

    if (c == NULL || c->request.nops == 0)
        return WEIR_CONTINUE;
    if (header_rules_run(r, weir_request_headers(r), &c->request, log_drop_request, r) < 0) {
        weir_request_log(r, &weir_module, WEIR_LOG_ERROR, "request_headers: out of request memory");
        return WEIR_ERROR;
    }
    return WEIR_CONTINUE;
}

static weir_result_t headers_response(weir_request_t *r)
{
    const struct headers_conf *c = conf_of(r);

    if (c == NULL || c->response.nops == 0)
        return WEIR_CONTINUE;
    weir_request_set_ctx(r, &weir_module, &applied_mark);
    if (header_rules_run(r, weir_response_headers(r), &c->response, log_drop_response, r) <
        0) {
        weir_request_log(r, &weir_module, WEIR_LOG_ERROR,
                         "response_headers: out of request memory");
        return WEIR_ERROR;
    }
    return WEIR_CONTINUE;
}

/* Error phase: weir's own answer. The result is ignored by the core. */
static weir_result_t headers_answer(weir_request_t *r)
{
    const struct headers_conf *c = conf_of(r);

    if (c == NULL || !c->response.always || c->response.nops == 0 ||
        weir_request_ctx(r, &weir_module) != NULL)
        return WEIR_CONTINUE;
    weir_request_set_ctx(r, &weir_module, &applied_mark);
    if (header_rules_run(r, weir_response_headers(r), &c->response, log_drop_response, r) <
        0)
        weir_request_log(r, &weir_module, WEIR_LOG_ERROR,
                         "response_headers: out of request memory");
    return WEIR_CONTINUE;
}

static const weir_directive_t headers_directives[] = {
    {
        .key = "request_headers",
        .scopes = WEIR_SCOPE_MAIN | WEIR_SCOPE_ROUTE,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(struct headers_conf, request),
        .size = sizeof(struct header_rules),
        .parse = parse_request_headers,
        .help = "{set: {Name: value}, add: {Name: value}, remove: [Name]} for the request sent "
                "upstream",
    },
    {
        .key = "response_headers",
        .scopes = WEIR_SCOPE_MAIN | WEIR_SCOPE_ROUTE,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(struct headers_conf, response),
        .size = sizeof(struct header_rules),
        .parse = parse_response_headers,
        .help = "{set: {Name: value}, add: {Name: value}, remove: [Name], always: false} for "
                "the response sent downstream",
    },
    {.key = NULL},
};

static const weir_handler_t headers_handlers[] = {
    {
        .name = "headers.request",
        .phase = WEIR_PHASE_UPSTREAM_REQUEST,
        .priority = WEIR_PRIORITY_MIDDLE,
        .fn = headers_request,
    },
    {
        .name = "headers.response",
        .phase = WEIR_PHASE_UPSTREAM_RESPONSE,
        .priority = WEIR_PRIORITY_MIDDLE,
        .fn = headers_response,
    },
    {
        .name = "headers.answer",
        .phase = WEIR_PHASE_ERROR,
        .priority = WEIR_PRIORITY_LATE,
        .fn = headers_answer,
    },
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "headers",
    .version = "1.0.0",
    .conf_size =
        {
            [WEIR_SCOPE_INDEX_MAIN] = sizeof(struct headers_conf),
            [WEIR_SCOPE_INDEX_ROUTE] = sizeof(struct headers_conf),
        },
    .directives = headers_directives,
    .handlers = headers_handlers,
    .conf_done = headers_conf_done,
    .worker_init = headers_worker_init,
    .conf_free = headers_conf_free,
};
