/*
 * weir's own answers: weir_respond() from a module, and the errors of the
 * core (4xx for bad requests, 502/503/504 for failing upstreams). The error
 * phase runs here, the error_page template is rendered here, and the answer
 * goes down through the request's downstream interface, so every protocol
 * renders the same answers.
 */
#ifndef WEIR_ERRPAGE_H
#define WEIR_ERRPAGE_H

#include "request.h"

/* Sends the answer for r->status (after weir_respond); the exchange then
 * finishes through the downstream interface. When the response has already
 * started, the exchange is aborted instead. The upstream side must be
 * detached first (proxy_answer does both). */
void errpage_send(weir_request_t *r);

#endif
