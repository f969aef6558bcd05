/*
 * Module metrics: a Prometheus endpoint, and the per-route HTTP families.
 *
 *     metrics_max_series: 4096     # core, top level: the shared table's size
 *     routes:
 *       - host: ops.internal
 *         path: =/metrics
 *         metrics: true            # this route answers with the exposition
 *
 * A route with `metrics: true` answers GET and HEAD itself with 200,
 * `Content-Type: text/plain; version=0.0.4; charset=utf-8` and the text
 * format 0.0.4 of every family the configuration registered (the core's and
 * every module's, weir_metrics_render), summed over all workers; other
 * methods get 405 with Allow. It never reaches an upstream: a metrics route
 * with `upstream` is a config error. The router still decides who reaches
 * it (host, path, methods), like any route.
 *
 * Families of this module, filled by its log handler for every request that
 * got a response (weir's own 4xx/5xx included):
 *   weir_http_requests_total{route, code}   code = "1xx" .. "5xx"
 *   weir_http_request_duration_seconds{route}   histogram, Prometheus'
 *       default buckets, from the request's first byte to its log phase
 *   weir_http_response_bytes_total{route}   response body bytes
 * A request that never got a route (no route matched, or the head was
 * malformed and answered 400 before routing) counts with route="".
 * A scrape is counted after it is answered, so it does not see itself.
 *
 * Decisions:
 *  - The module enables metrics in conf_init (weir_metrics_enable), so the
 *    core registers its own families and every module's registrations are
 *    stored; without this module loaded nothing is stored and updates cost
 *    one branch.
 *  - The body is rendered into a malloc'd buffer sized by a first pass, then
 *    copied by weir_respond into the request's memory (capped at 4 MiB):
 *    with the default table of 4096 values the text stays far below
 *    (README, metrics, for the bound); a text that does not fit answers 500
 *    and says why in the error log.
 *  - The answering handler runs in the rewrite phase, first, right after
 *    routing: nothing (rewrites, access modules) runs before it, and a
 *    request it answers skips the rest of the chain.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/module.h"

WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

#define NCLASSES 5

/* The series of one route (or of requests with no route). */
struct mx_series {
    int requests[NCLASSES];
    int duration;
    int bytes;
};

struct mx_main {
    weir_metric_t *requests, *duration, *bytes;
    struct mx_series none;
};

struct mx_route {
    int metrics; /* the key */
    struct mx_series s;
};

static const char *const class_words[NCLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
static const char content_type[] = "text/plain; version=0.0.4; charset=utf-8";

/* ------------------------------------------------------------ config */

static int mx_conf_init(weir_conf_t *cf)
{
    return weir_metrics_enable(cf);
}

static int series_of(weir_conf_t *cf, const struct mx_main *mc, const char *route,
                     struct mx_series *s)
{
    for (int k = 0; k < NCLASSES; k++) {
        s->requests[k] =
            weir_metric_series(cf, mc->requests, (const char *const[]){route, class_words[k]});
        if (s->requests[k] < 0)
            return -1;
    }
    s->duration = weir_metric_series(cf, mc->duration, (const char *const[]){route});
    s->bytes = weir_metric_series(cf, mc->bytes, (const char *const[]){route});
    return s->duration < 0 || s->bytes < 0 ? -1 : 0;
}

static int check_route(weir_conf_t *cf, weir_route_t *rt)
{
    const struct mx_route *rc = weir_route_conf(rt, &weir_module);
    if (!rc || !rc->metrics)
        return 0;
    weir_route_set_answered(rt);
    if (weir_route_upstream(rt))
        return weir_conf_error(cf, weir_node_get(weir_route_node(rt), "metrics"),
                               "route '%s' answers with metrics and never reaches an upstream; "
                               "remove its upstream key (or metrics: true)",
                               weir_route_name(rt));
    return 0;
}

static int mx_conf_done(weir_conf_t *cf)
{
    struct mx_main *mc = weir_main_conf(cf, &weir_module);
    mc->requests = weir_metric_new(cf, "weir_http_requests_total", WEIR_METRIC_COUNTER,
                                   "requests answered, by route and status class",
                                   (const char *const[]){"route", "code", NULL}, NULL);
    mc->duration = weir_metric_new(cf, "weir_http_request_duration_seconds", WEIR_METRIC_HISTOGRAM,
                                   "from the first byte of the request to the end of its "
                                   "response, by route",
                                   (const char *const[]){"route", NULL}, NULL);
    mc->bytes = weir_metric_new(cf, "weir_http_response_bytes_total", WEIR_METRIC_COUNTER,
                                "response body bytes sent, by route",
                                (const char *const[]){"route", NULL}, NULL);
    if (!mc->requests || !mc->duration || !mc->bytes || series_of(cf, mc, "", &mc->none) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < weir_conf_route_count(cf); i++) {
        weir_route_t *rt = weir_conf_route(cf, i);
        struct mx_route *c = weir_route_conf(rt, &weir_module);
        if (check_route(cf, rt) < 0 || series_of(cf, mc, weir_route_name(rt), &c->s) < 0)
            rc = -1;
    }
    return rc;
}

/* ------------------------------------------------------------ requests */

static weir_result_t answer(weir_request_t *r)
{
    weir_str_t m = weir_request_method(r);
    if (!(m.len == 3 && !memcmp(m.data, "GET", 3)) && !(m.len == 4 && !memcmp(m.data, "HEAD", 4))) {
        if (weir_headers_set(r, weir_response_headers(r), WEIR_STR("Allow"), WEIR_STR("GET, HEAD")) <
                0 ||
            weir_respond(r, 405, (weir_str_t){0}) < 0)
            return WEIR_ERROR;
        return WEIR_RESPOND;
    }
    const weir_conf_t *cf = weir_request_conf(r);
    size_t need = weir_metrics_render(cf, NULL, 0), cap = need + need / 8 + 4096, len;
    char *buf = malloc(cap);
    if (buf && (len = weir_metrics_render(cf, buf, cap)) > cap) {
        free(buf); /* grew by more than the slack since the first pass */
        cap = len * 2;
        buf = malloc(cap);
        len = buf ? weir_metrics_render(cf, buf, cap) : 0;
    }
    if (!buf || len > cap) {
        free(buf);
        weir_request_log(r, &weir_module, WEIR_LOG_ERROR, "out of memory rendering metrics");
        return WEIR_ERROR;
    }
    int rc = weir_headers_set(r, weir_response_headers(r), WEIR_STR("Content-Type"),
                              WEIR_STR(content_type));
    if (rc == 0)
        rc = weir_respond(r, 200, (weir_str_t){buf, len});
    free(buf);
    if (rc < 0) {
        weir_request_log(r, &weir_module, WEIR_LOG_ERROR,
                         "the metrics text (%zu bytes) does not fit in the request's memory; "
                         "lower metrics_max_series or shorten names",
                         len);
        return WEIR_ERROR;
    }
    return WEIR_RESPOND;
}

static weir_result_t mx_answer(weir_request_t *r)
{
    weir_route_t *rt = weir_request_route(r);
    const struct mx_route *c = rt ? weir_route_conf(rt, &weir_module) : NULL;
    return c && c->metrics ? answer(r) : WEIR_CONTINUE;
}

static weir_result_t mx_log(weir_request_t *r)
{
    const struct mx_main *mc = weir_main_conf(weir_request_conf(r), &weir_module);
    weir_route_t *rt = weir_request_route(r);
    const struct mx_route *c = rt ? weir_route_conf(rt, &weir_module) : NULL;
    const struct mx_series *s = c ? &c->s : &mc->none;
    int status = weir_response_status(r);
    if (status >= 100 && status <= 599)
        weir_metric_add(mc->requests, s->requests[status / 100 - 1], 1);
    weir_metric_observe(mc->duration, s->duration, weir_request_elapsed_us(r));
    weir_metric_add(mc->bytes, s->bytes, weir_response_body_bytes(r));
    return WEIR_CONTINUE;
}

static const weir_directive_t mx_directives[] = {
    {.key = "metrics",
     .scopes = WEIR_SCOPE_ROUTE,
     .type = WEIR_DIRECTIVE_BOOL,
     .offset = offsetof(struct mx_route, metrics),
     .help = "true: the route answers with the Prometheus metrics text"},
    {.key = NULL},
};

static const weir_handler_t mx_handlers[] = {
    {.name = "metrics.answer", .phase = WEIR_PHASE_REWRITE, .priority = WEIR_PRIORITY_FIRST,
     .fn = mx_answer},
    {.name = "metrics.log", .phase = WEIR_PHASE_LOG, .priority = WEIR_PRIORITY_MIDDLE,
     .fn = mx_log},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "metrics",
    .version = "1.0.0",
    .conf_size = {[WEIR_SCOPE_INDEX_MAIN] = sizeof(struct mx_main),
                  [WEIR_SCOPE_INDEX_ROUTE] = sizeof(struct mx_route)},
    .directives = mx_directives,
    .handlers = mx_handlers,
    .conf_init = mx_conf_init,
    .conf_done = mx_conf_done,
};
