/*
 * What every upstream protocol shares (proxy.c speaks HTTP/1 to its servers,
 * h2_client.c HTTP/2): the modules' connect hooks, the retry rule, the Host
 * an upstream is sent.
 */
#ifndef WEIR_UPSTREAM_H
#define WEIR_UPSTREAM_H

#include "conn.h"
#include "request.h"

/* Modules' upstream_connect hooks (API 1.3), in modules: order. 0 or -1
 * (logged: a module refused the connection). */
int upstream_connect_hooks(weir_request_t *r, conn_t *c);
/* Whether a failure before any response byte may be retried on another
 * server: the body is all kept, the method is idempotent, tries are left. */
int upstream_may_retry(const weir_request_t *r);
/* The Host sent upstream (sets r->host_header): the client's, unless a
 * module replaced the Host field. */
void upstream_set_host(weir_request_t *r);

#endif
