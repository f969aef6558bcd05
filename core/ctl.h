/*
 * The control channel from the master to each of its workers: one
 * SOCK_SEQPACKET socketpair per worker, made at spawn.
 *
 * Its one message today is "these are your log files now". On USR1 (weir
 * -s reopen) the master reopens the error log and every log file of every
 * generation by name, and passes the new descriptors to each worker
 * (SCM_RIGHTS); the worker receives through its ring and swaps them in
 * (logfiles_adopt, log_adopt). The workers never open a log by name: with
 * `user:` they could not (a root-owned 0700 log directory), and a worker
 * the master starts later inherits the reopened files with the rest.
 */
#ifndef WEIR_CTL_H
#define WEIR_CTL_H

#include "conf.h"

/* Master, before fork: sv[0] stays in the master (non-blocking), sv[1]
 * goes to the worker. 0, or -1 with errno. */
int ctl_pair(int sv[2]);

/* Master: sends the current error log (when it is a file) and cf's log
 * files to the worker at fd. Logs a failure; never blocks. */
void ctl_send_logs(int fd, const weir_conf_t *cf);

/* Worker: receives on fd through the loop until the master goes. */
void ctl_worker_start(int fd, const weir_conf_t *cf);

#endif
