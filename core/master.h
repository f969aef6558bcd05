/*
 * The master process: opens the listeners, writes the pid file, starts the
 * workers, restarts one that dies (with a backoff when it dies at once), and
 * turns signals into actions: TERM/INT fast stop, QUIT graceful stop, USR1
 * reopen (forwarded to workers).
 */
#ifndef WEIR_MASTER_H
#define WEIR_MASTER_H

#include "conf.h"

typedef struct master_options {
    const char *pid_file; /* -p, overrides the config */
    int daemon;           /* -d */
} master_options_t;

/* Returns the process exit status. */
int master_run(weir_conf_t *cf, const master_options_t *opt);

#endif
