/*
 * Listening sockets, opened by the master and inherited by every worker.
 * Workers accept from the same socket (one accept queue, no SO_REUSEPORT),
 * so a socket can outlive generations of workers without losing queued
 * connections.
 *
 * The master keeps one set of sockets for all generations. A generation
 * acquires a socket per listener: one already open on that address is
 * shared (never closed and re-bound, so nothing queued is lost), a new
 * address is opened. A socket is closed when the last generation using it
 * has been released, that is after its old workers have left. A binary
 * upgrade hands the whole set to the new master through the environment.
 */
#ifndef WEIR_LISTEN_H
#define WEIR_LISTEN_H

#include <stddef.h>

#include "conf.h"

/* The environment variable a binary upgrade passes the sockets in:
 * "fd;fd;..." */
#define LISTEN_INHERIT_ENV "WEIR_LISTEN_FDS"

/* fds[i] for cf->listeners[i]. Returns 0, or -1 after logging which address
 * failed and why; then nothing was acquired. */
int listen_acquire(const weir_conf_t *cf, int *fds);
/* Drops the generation's hold; sockets no generation holds are closed. */
void listen_release(const weir_conf_t *cf, const int *fds);

/* Adopts the sockets named in $WEIR_LISTEN_FDS (and unsets it), so the
 * first generation takes them instead of binding. Returns how many, or -1
 * after logging a malformed value. */
int listen_inherit(void);
/* Closes inherited sockets that no generation took. */
void listen_close_unclaimed(void);

/* In a forked worker: closes every socket but the generation's own, so a
 * socket the master closes is really closed. */
void listen_close_others(const int *keep, size_t nkeep);
/* In the child about to exec the new binary: makes every socket inheritable
 * and writes "fd;fd;..." into buf. -1 if buf is too small. */
int listen_export(char *buf, size_t len);

#endif
