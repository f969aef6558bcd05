/*
 * `user:` and `group:`: the identity the workers take.
 *
 * The master keeps root: it binds, opens and reopens every log file
 * (logfile.c, ctl.c) and writes the pid file. Each worker, right after fork
 * and before its ring, its modules' worker_init or any accept, drops to the
 * configured user and group: supplementary groups cleared (setgroups(0)),
 * then setgid, then setuid, all real/effective/saved ids; it verifies the
 * result (and that it cannot regain root) and exits loudly if anything is
 * off, so no worker ever serves with more than it was given.
 *
 * The names are resolved at config time, so an unknown user or group is a
 * config error at its line:col (weir -t sees it). `group` defaults to the
 * user's primary group and needs `user`. A master that does not run as
 * root cannot change the workers' identity: it warns once at start and the
 * workers keep its own (as nginx does).
 *
 * Dumpable: after setuid the kernel marks a worker non-dumpable (the
 * fs.suid_dumpable default), which is kept: other processes of the same
 * unprivileged user (nobody is shared) cannot ptrace it or read its memory
 * or /proc files, where TLS keys live. The cost is no core dumps from
 * workers unless fs.suid_dumpable allows them.
 */
#ifndef WEIR_PRIVS_H
#define WEIR_PRIVS_H

#include "conf.h"

/* Config time: resolves the `user` and `group` nodes (either may be NULL)
 * into cf. 0, or -1 after a config error. */
int privs_conf(weir_conf_t *cf, const weir_node_t *user, const weir_node_t *group);

/* In a new worker: 0 (dropped, or nothing to do), or -1 after logging why;
 * the worker must then exit. */
int privs_drop(const weir_conf_t *cf);

/* In the master at start: the warning when user: cannot take effect. */
void privs_check_master(const weir_conf_t *cf);

#endif
