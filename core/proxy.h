/*
 * The upstream side of an exchange: a request whose phases are done is
 * forwarded to a peer of its upstream over a pooled or new connection, its
 * body pumped up and the response pumped down, both at once (full duplex),
 * through the request's downstream interface only (downstream.h). Retries,
 * passive failure marking and the keepalive pool live here too.
 */
#ifndef WEIR_PROXY_H
#define WEIR_PROXY_H

#include "request.h"

int proxy_init(const weir_conf_t *cf);
/* The request phases are done: forward r. */
void proxy_start(weir_request_t *r);
/* weir answers r itself (weir_respond, an error): the upstream side lets go
 * of r, then the answer goes down (errpage). The phase runner's
 * request_on_answer. */
void proxy_answer(weir_request_t *r);
/* The downstream is gone or failed: drop the upstream side of r. */
void proxy_cancel(weir_request_t *r);

#endif
