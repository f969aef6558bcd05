/*
 * The upstream side of an exchange whose upstream says `protocol: h2`
 * (gRPC and other HTTP/2 servers): h2_client.c. The proxy hands such a
 * request over once its phases are done; the response goes down through
 * the request's downstream interface, trailers included.
 */
#ifndef WEIR_H2_CLIENT_H
#define WEIR_H2_CLIENT_H

#include "request.h"

int h2_client_init(const weir_conf_t *cf);
/* Forwards r to r->peer of r->upstream over the worker's HTTP/2 connection
 * to that server (opened when there is none). */
void h2_client_start(weir_request_t *r);
/* The downstream is gone or weir answers itself: the stream is reset. */
void h2_client_cancel(weir_request_t *r);

#endif
