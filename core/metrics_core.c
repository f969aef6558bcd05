/*
 * The core's metric families (metrics_core.h).
 *
 * Decisions:
 *  - Series are registered for every listener, upstream server, status
 *    class and result up front, so a scrape shows zeros rather than nothing
 *    and the hot paths only index arrays.
 *  - Status codes are counted by class, "1xx" .. "5xx"; an upstream's
 *    exchange counts once, at the end of the request, with the status the
 *    server sent (a retried connect failure counts as a connect failure of
 *    its server, not as an exchange). Its duration is $upstream_response_time:
 *    from the start of the request to the end of the upstream's response.
 *  - weir_connections{state}: a client connection is "active" from its
 *    accept until its first request ends, and again while a request runs;
 *    "idle" between requests (HTTP/1 keepalive, an HTTP/2 connection with
 *    no open stream after its first). A connection is counted by the
 *    generation that accepted it, so old workers draining after a reload
 *    still count theirs. A worker that crashes leaves its connections in the
 *    gauge (they are not its to undo any more); README, metrics.
 *  - weir_upstream_server_up and weir_build_info are computed at render
 *    time (weir_peer_is_down; a constant 1), they store nothing.
 *  - The master writes only its own families: config generation, reloads,
 *    worker restarts.
 */
#include "metrics_core.h"

#include <string.h>

#include "conf.h"
#include "conn.h"
#include "metrics.h"
#include "request.h"
#include "weir_build.h"

#define ABI_TEXT_(a, b) #a "." #b
#define ABI_TEXT(a, b) ABI_TEXT_(a, b)

struct peer_series {
    int requests[5]; /* per status class */
    int failures[MCONNECT_N];
};

struct peer_up {
    const weir_upstream_t *u;
    size_t i;
};

struct core_metrics {
    weir_metric_t *conns, *accepted, *up_requests, *up_duration, *failures;
    weir_metric_t *generation, *reloads, *restarts;
    int *conn_series;     /* per listener: active, idle */
    int *accepted_series; /* per listener */
    struct peer_series **peers; /* per upstream, per peer */
    int *duration_series;       /* per upstream */
    int reload_series[2];       /* failed, ok */
};

static const char *const class_words[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
static const char *const result_words[MCONNECT_N] = {"refused", "timeout", "error"};

static int64_t constant_one(const void *arg)
{
    (void)arg;
    return 1;
}

static int64_t peer_up(const void *arg)
{
    const struct peer_up *p = arg;
    return !weir_peer_is_down(p->u, p->i);
}

static weir_metric_t *family(weir_conf_t *cf, const char *name, weir_metric_kind_t kind,
                             const char *help, const char *const *labels)
{
    return weir_metric_new(cf, name, kind, help, labels, NULL);
}

static int register_process(weir_conf_t *cf, struct core_metrics *cm)
{
    weir_metric_t *build = family(cf, "weir_build_info", WEIR_METRIC_GAUGE,
                                  "weir's version and module ABI, as labels",
                                  (const char *const[]){"version", "abi", NULL});
    cm->generation = family(cf, "weir_config_generation", WEIR_METRIC_GAUGE,
                            "number of the configuration generation now serving", NULL);
    cm->reloads = family(cf, "weir_config_reloads_total", WEIR_METRIC_COUNTER,
                         "configuration reloads, by result",
                         (const char *const[]){"result", NULL});
    cm->restarts = family(cf, "weir_worker_restarts_total", WEIR_METRIC_COUNTER,
                          "workers the master restarted after they died", NULL);
    if (metrics_series_fn(cf, build,
                          (const char *const[]){WEIR_VERSION,
                                                ABI_TEXT(WEIR_ABI_MAJOR, WEIR_ABI_MINOR)},
                          constant_one, NULL) < 0 ||
        weir_metric_series(cf, cm->generation, NULL) < 0 ||
        weir_metric_series(cf, cm->restarts, NULL) < 0)
        return -1;
    cm->reload_series[1] = weir_metric_series(cf, cm->reloads, (const char *const[]){"ok"});
    cm->reload_series[0] = weir_metric_series(cf, cm->reloads, (const char *const[]){"failed"});
    return cm->reload_series[0] < 0 || cm->reload_series[1] < 0 ? -1 : 0;
}

static int register_listeners(weir_conf_t *cf, struct core_metrics *cm)
{
    cm->conns = family(cf, "weir_connections", WEIR_METRIC_GAUGE,
                       "open client connections, by listener and state",
                       (const char *const[]){"listener", "state", NULL});
    cm->accepted = family(cf, "weir_connections_accepted_total", WEIR_METRIC_COUNTER,
                          "client connections accepted, by listener",
                          (const char *const[]){"listener", NULL});
    cm->conn_series = weir_conf_alloc(cf, (cf->nlisteners + 1) * 2 * sizeof(int));
    cm->accepted_series = weir_conf_alloc(cf, (cf->nlisteners + 1) * sizeof(int));
    if (!cm->conns || !cm->accepted || !cm->conn_series || !cm->accepted_series)
        return -1;
    for (size_t l = 0; l < cf->nlisteners; l++) {
        const char *name = weir_listener_name(&cf->listeners[l]);
        cm->conn_series[2 * l] =
            weir_metric_series(cf, cm->conns, (const char *const[]){name, "active"});
        cm->conn_series[2 * l + 1] =
            weir_metric_series(cf, cm->conns, (const char *const[]){name, "idle"});
        cm->accepted_series[l] = weir_metric_series(cf, cm->accepted, (const char *const[]){name});
        if (cm->conn_series[2 * l] < 0 || cm->conn_series[2 * l + 1] < 0 ||
            cm->accepted_series[l] < 0)
            return -1;
    }
    return 0;
}

static int register_peer(weir_conf_t *cf, struct core_metrics *cm, weir_metric_t *up,
                         const weir_upstream_t *u, size_t i, struct peer_series *ps)
{
    const char *addr = u->peers[i].address;
    for (int k = 0; k < 5; k++) {
        ps->requests[k] = weir_metric_series(cf, cm->up_requests,
                                             (const char *const[]){u->name, addr, class_words[k]});
        if (ps->requests[k] < 0)
            return -1;
    }
    for (int k = 0; k < MCONNECT_N; k++) {
        ps->failures[k] = weir_metric_series(
            cf, cm->failures, (const char *const[]){u->name, addr, result_words[k]});
        if (ps->failures[k] < 0)
            return -1;
    }
    struct peer_up *pu = weir_conf_alloc(cf, sizeof(*pu));
    if (!pu)
        return -1;
    *pu = (struct peer_up){.u = u, .i = i};
    return metrics_series_fn(cf, up, (const char *const[]){u->name, addr}, peer_up, pu);
}

static int register_upstreams(weir_conf_t *cf, struct core_metrics *cm)
{
    cm->up_requests = family(cf, "weir_upstream_requests_total", WEIR_METRIC_COUNTER,
                             "responses from upstream servers, by status class",
                             (const char *const[]){"upstream", "server", "code", NULL});
    cm->up_duration = family(cf, "weir_upstream_response_duration_seconds",
                             WEIR_METRIC_HISTOGRAM,
                             "from the start of the request to the end of the upstream's "
                             "response",
                             (const char *const[]){"upstream", NULL});
    weir_metric_t *up = family(cf, "weir_upstream_server_up", WEIR_METRIC_GAUGE,
                               "1 while a server is up (not held down by health checks or "
                               "failures), else 0",
                               (const char *const[]){"upstream", "server", NULL});
    cm->failures = family(cf, "weir_upstream_connect_failures_total", WEIR_METRIC_COUNTER,
                          "failed connection attempts to upstream servers, by result",
                          (const char *const[]){"upstream", "server", "result", NULL});
    cm->peers = weir_conf_alloc(cf, (cf->nupstreams + 1) * sizeof(*cm->peers));
    cm->duration_series = weir_conf_alloc(cf, (cf->nupstreams + 1) * sizeof(int));
    if (!cm->up_requests || !cm->up_duration || !up || !cm->failures || !cm->peers ||
        !cm->duration_series)
        return -1;
    for (size_t k = 0; k < cf->nupstreams; k++) {
        const weir_upstream_t *u = &cf->upstreams[k];
        cm->duration_series[k] =
            weir_metric_series(cf, cm->up_duration, (const char *const[]){u->name});
        cm->peers[k] = weir_conf_alloc(cf, (u->npeers + 1) * sizeof(struct peer_series));
        if (cm->duration_series[k] < 0 || !cm->peers[k])
            return -1;
        for (size_t i = 0; i < u->npeers; i++)
            if (register_peer(cf, cm, up, u, i, &cm->peers[k][i]) < 0)
                return -1;
    }
    return 0;
}

int metrics_core_register(weir_conf_t *cf)
{
    if (!metrics_enabled(cf))
        return 0;
    unsigned errors = cf->nerrors;
    struct core_metrics *cm = weir_conf_alloc(cf, sizeof(*cm));
    if (!cm || register_process(cf, cm) < 0 || register_listeners(cf, cm) < 0 ||
        register_upstreams(cf, cm) < 0)
        return cf->nerrors > errors ? -1
                                    : weir_conf_error(cf, NULL, "out of memory for metrics");
    cf->core_metrics = cm;
    return 0;
}

/* ------------------------------------------------------------ workers */

enum { CONN_UNCOUNTED = 0, CONN_ACTIVE, CONN_IDLE };

static const struct core_metrics *of_listener(const weir_listener_t *l)
{
    return l && l->conf ? l->conf->core_metrics : NULL;
}

void metrics_conn_opened(conn_t *c)
{
    const struct core_metrics *cm = of_listener(c->listener);
    if (!cm)
        return;
    size_t l = c->listener->index;
    weir_metric_add(cm->accepted, cm->accepted_series[l], 1);
    weir_metric_gauge_add(cm->conns, cm->conn_series[2 * l], 1);
    c->mstate = CONN_ACTIVE;
}

void metrics_conn_idle(conn_t *c, int idle)
{
    const struct core_metrics *cm = of_listener(c->listener);
    unsigned want = idle ? CONN_IDLE : CONN_ACTIVE;
    if (!cm || c->mstate == CONN_UNCOUNTED || c->mstate == want)
        return;
    size_t l = c->listener->index;
    weir_metric_gauge_add(cm->conns, cm->conn_series[2 * l + (c->mstate == CONN_IDLE)], -1);
    weir_metric_gauge_add(cm->conns, cm->conn_series[2 * l + idle], 1);
    c->mstate = (unsigned char)want;
}

void metrics_conn_closed(conn_t *c)
{
    const struct core_metrics *cm = of_listener(c->listener);
    if (!cm || c->mstate == CONN_UNCOUNTED)
        return;
    size_t l = c->listener->index;
    weir_metric_gauge_add(cm->conns, cm->conn_series[2 * l + (c->mstate == CONN_IDLE)], -1);
    c->mstate = CONN_UNCOUNTED;
}

void metrics_request_done(const weir_request_t *r)
{
    const struct core_metrics *cm = r->cf->core_metrics;
    const weir_upstream_t *u = r->upstream;
    if (!cm || !u || r->peer < 0 || r->upstream_status < 100 || r->upstream_status > 599)
        return;
    const struct peer_series *ps = &cm->peers[u->index][r->peer];
    weir_metric_add(cm->up_requests, ps->requests[r->upstream_status / 100 - 1], 1);
    uint64_t end = r->response_us ? r->response_us : now_us();
    weir_metric_observe(cm->up_duration, cm->duration_series[u->index],
                        end > r->start_us ? end - r->start_us : 0);
}

void metrics_connect_failed(const weir_upstream_t *u, size_t peer, enum metrics_connect_result why)
{
    const struct core_metrics *cm = u->conf ? u->conf->core_metrics : NULL;
    if (!cm || peer >= u->npeers)
        return;
    weir_metric_add(cm->failures, cm->peers[u->index][peer].failures[why], 1);
}

/* ------------------------------------------------------------ master */

void metrics_generation(const weir_conf_t *cf, unsigned id)
{
    if (cf->core_metrics)
        metrics_gauge_set(cf->core_metrics->generation, 0, id);
}

void metrics_reload(const weir_conf_t *cf, int ok)
{
    if (cf->core_metrics)
        weir_metric_add(cf->core_metrics->reloads, cf->core_metrics->reload_series[!!ok], 1);
}

void metrics_worker_restart(const weir_conf_t *cf)
{
    if (cf->core_metrics)
        weir_metric_add(cf->core_metrics->restarts, 0, 1);
}
