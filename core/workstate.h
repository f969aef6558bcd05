/*
 * The part of a worker's state the layers below it read: whether it drains,
 * and how many descriptors are left for upstream sockets. worker.c writes
 * it; the HTTP/1 server and the proxy read it, so they never call up into
 * the worker (no circle of files).
 */
#ifndef WEIR_WORKSTATE_H
#define WEIR_WORKSTATE_H

/* Descriptors for client and upstream connections together, and the client
 * connections open now. */
void workstate_set_fd_room(unsigned long room);
void workstate_set_conns(unsigned long conns);
void workstate_set_draining(void);
/* Descriptors left for upstream connections: the proxy closes an idle
 * pooled connection before opening one beyond it. */
unsigned long workstate_upstream_fd_room(void);
/* weir_worker_draining() (the public API) is defined here too. */

#endif
