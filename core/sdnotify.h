/*
 * systemd's readiness protocol (sd_notify(3)), spoken by the master without
 * libsystemd: each message is one datagram of "KEY=VALUE" lines sent to the
 * AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the
 * abstract namespace). Without $NOTIFY_SOCKET every call does nothing, so
 * weir outside systemd (or under Type=simple/forking) is unchanged.
 *
 * What the master says, and when (README, "Building and installing"):
 *
 *   READY=1, MAINPID    the first generation is serving: every listening
 *                       socket is bound and listening (a connection made
 *                       from now on is queued by the kernel, never refused)
 *                       and every worker has been forked
 *   RELOADING=1, MONOTONIC_USEC   a reload begins (HUP)
 *   READY=1             the reload ended: the new generation started, or
 *                       the config was refused and the old one serves on
 *   STOPPING=1          a graceful or fast stop begins
 *   MAINPID=<new>       a graceful stop during a binary upgrade: the new
 *                       master becomes the service's main process
 *   STATUS=...          a line for `systemctl status` with each of them
 *
 * Sending is a blocking sendto(2) on a datagram socket, fine in the master
 * (never in a worker). A socket that is missing or refuses the message is
 * logged as a warning and weir goes on: systemd then times the start out,
 * which says more than a weir that refuses to run.
 */
#ifndef WEIR_SDNOTIFY_H
#define WEIR_SDNOTIFY_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "weir/module.h"

/* The address for a $NOTIFY_SOCKET value: "/path" or "@abstract". Returns
 * 0, or -1 for an empty, relative, too long or otherwise unsupported name
 * (systemd's "vsock:" form, for one). */
int sdnotify_address(const char *name, struct sockaddr_un *sa, socklen_t *len);

/* Sends msg as one datagram. Returns 1 when sent, 0 when $NOTIFY_SOCKET is
 * unset, -1 after logging a warning. */
int sdnotify_send(const char *msg);
int sdnotify_sendf(const char *fmt, ...) WEIR_PRINTF(1, 2);

/* The master's messages (above); status is a short line for STATUS=. */
void sdnotify_ready(const char *status);
void sdnotify_reloading(void);
void sdnotify_stopping(void);
void sdnotify_new_main(pid_t pid);

#endif
