/*
 * A worker process: one io_uring loop serving every listener until told to
 * stop. SIGTERM/SIGINT stop at once; SIGQUIT drains: stop accepting, close
 * idle connections, let in-flight requests finish (up to shutdown_timeout),
 * then exit.
 */
#ifndef WEIR_WORKER_H
#define WEIR_WORKER_H

#include "conf.h"

typedef struct worker_info {
    const weir_conf_t *cf;
    const int *listen_fds;
    unsigned index, count;
} worker_info_t;

/* Runs the worker; returns the process exit status. */
int worker_main(const worker_info_t *info);

/* Connection accounting for accept pausing (max_connections). */
void worker_conn_opened(void);
void worker_conn_closed(void);
/* Descriptors left for upstream connections by the fd limit: the proxy
 * closes an idle pooled connection before opening one beyond it. */
unsigned long worker_upstream_fd_room(void);

#endif
