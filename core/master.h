/*
 * The master process: holds the listening sockets, writes the pid file,
 * starts a generation of workers per configuration, restarts a worker that
 * dies (with a backoff when it dies at once), and turns signals into actions:
 *
 *   HUP   reload: load and check the config in full; on any error log it and
 *         change nothing. Otherwise start the new generation's workers on the
 *         same sockets (new addresses opened, removed ones closed once the
 *         old workers have left) and tell the old ones to drain (QUIT).
 *   QUIT  graceful stop: every generation drains, up to shutdown_timeout.
 *   TERM, INT  fast stop.
 *   USR1  reopen the error log here and the log files in every worker.
 *   USR2  binary upgrade: rename the pid file to <pid_file>.oldbin and exec
 *         argv[0] with the sockets inherited ($WEIR_LISTEN_FDS). This master
 *         keeps serving until told to quit; if the new one exits, the pid
 *         file is put back and nothing else changes.
 */
#ifndef WEIR_MASTER_H
#define WEIR_MASTER_H

#include "conf.h"

typedef struct master_options {
    const char *pid_file; /* -p, overrides the config */
    int daemon;           /* -d */
    char **argv;          /* the command line, for a binary upgrade */
} master_options_t;

/* Takes cf (the first generation). copt is kept to reload with. Returns the
 * process exit status. */
int master_run(weir_conf_t *cf, const conf_options_t *copt, const master_options_t *opt);

#endif
