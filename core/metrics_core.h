/*
 * The core's own metric families (metrics_core.c), registered when a module
 * enabled metrics (weir_metrics_enable) and updated where the core sees
 * the event: connections (conn.c, the HTTP servers), upstream exchanges and
 * connect failures (proxy.c, h2_client.c, the log phase of request.c), the
 * master's generations, reloads and worker restarts (master.c). Every
 * function is a no-op for a generation without metrics.
 */
#ifndef WEIR_METRICS_CORE_H
#define WEIR_METRICS_CORE_H

#include "weir/module.h"

struct core_metrics; /* cf->core_metrics */

/* At load, after the upstreams and listeners are read and before modules'
 * conf_done hooks (so the core's families come first). 0, or -1 after a
 * config error. */
int metrics_core_register(weir_conf_t *cf);

/* Client connections: accepted (active), between requests (idle, or back to
 * active), freed. */
void metrics_conn_opened(weir_connection_t *c);
void metrics_conn_idle(weir_connection_t *c, int idle);
void metrics_conn_closed(weir_connection_t *c);

/* A request that ends (its log phase): the upstream's answer, if any. */
void metrics_request_done(const weir_request_t *r);

enum metrics_connect_result { MCONNECT_REFUSED = 0, MCONNECT_TIMEOUT, MCONNECT_ERROR, MCONNECT_N };
/* A connection attempt to peer i failed. */
void metrics_connect_failed(const weir_upstream_t *u, size_t peer, enum metrics_connect_result why);

/* The master's: a generation started (its id), a reload's outcome (counted
 * in the generation that serves after it), a worker restarted. */
void metrics_generation(const weir_conf_t *cf, unsigned id);
void metrics_reload(const weir_conf_t *cf, int ok);
void metrics_worker_restart(const weir_conf_t *cf);

#endif
