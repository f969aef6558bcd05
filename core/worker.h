/*
 * A worker process: one io_uring loop serving every listener until told to
 * stop. SIGTERM/SIGINT stop at once; SIGQUIT drains: stop accepting, close
 * idle connections, let in-flight requests finish (up to shutdown_timeout),
 * then exit. USR1 does nothing here: the master reopens the log files and
 * passes them over the control channel (ctl.h).
 */
#ifndef WEIR_WORKER_H
#define WEIR_WORKER_H

#include "conf.h"

typedef struct worker_info {
    const weir_conf_t *cf;
    const int *listen_fds;
    unsigned index, count;
    /* The master's control channel (ctl.h); 0 for none (tests, fuzz
     * targets): fd 0 is always stdin, /dev/null for a daemon. */
    int ctl_fd;
} worker_info_t;

/* Runs the worker; returns the process exit status. */
int worker_main(const worker_info_t *info);
/* worker_main in its steps, for a caller that turns the loop itself (the
 * proxy-path fuzz target): set up the loop, the protocol, the modules'
 * worker hooks and the accepts (0, or -1 after logging); then, once the loop
 * is done, the modules' exit hooks and the last log flush. */
int worker_start(const worker_info_t *info);
void worker_finish(void);
/* Client connections open in this worker. */
unsigned long worker_connections(void);

/* Connection accounting for accept pausing (max_connections). */
void worker_conn_opened(void);
void worker_conn_closed(void);

#endif
