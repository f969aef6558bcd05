/*
 * Listening sockets, opened by the master and inherited by every worker.
 * Workers accept from the same socket (one accept queue, no SO_REUSEPORT),
 * so a socket can outlive generations of workers without losing queued
 * connections.
 */
#ifndef WEIR_LISTEN_H
#define WEIR_LISTEN_H

#include "conf.h"

/* Opens one socket per listener of cf; fds[i] for cf->listeners[i].
 * Returns 0 or -1 after logging which address failed and why. */
int listen_open_all(const weir_conf_t *cf, int *fds);
void listen_close_all(const weir_conf_t *cf, int *fds);

#endif
