/*
 * The status file: how the master answers `weir -s`.
 *
 * A signal carries no answer, so the master writes <pid_file>.status at
 * start and after every reload it was asked for (HUP), atomically (a
 * temporary file renamed over it):
 *
 *   weir-status 1
 *   pid 1234
 *   start 5678           the master's start time (/proc/PID/stat field 22)
 *   attempt 3            reloads asked for since start (0 at start)
 *   generation 2         the generation serving
 *   result ok            or refused
 *   --
 *   weir.yaml:14:5: unknown key ...     every error the last reload logged
 *   reload failed: ... generation 2 keeps serving
 *
 * `weir -s` reads the pid file, then this file: a pid that is not running
 * is a stale pid file, and a running pid whose start time differs from the
 * status file's is some other process (a pid reused after a crash), so no
 * signal is sent to it. `weir -s reload` notes the attempt, sends HUP and
 * waits (up to STATUS_RELOAD_WAIT_MS) for a higher attempt: the new
 * generation's workers were started (exit 0), or the reload was refused
 * (the errors on stderr, exit 1). The file is removed with the pid file.
 * A master that only serves beside a new binary (after USR2, until the new
 * one exits) leaves the file to the new master.
 */
#ifndef WEIR_STATUS_H
#define WEIR_STATUS_H

#include <stddef.h>
#include <sys/types.h>

#define STATUS_RELOAD_WAIT_MS 30000

typedef struct status {
    long pid;
    unsigned long long start;
    unsigned attempt, generation;
    int ok;
    char errors[16384];
} status_t;

/* Master side. Failures are logged; a master without its status file still
 * serves (only `weir -s` cannot confirm anything). */
void status_write(const char *pid_file, unsigned attempt, unsigned generation, int ok,
                  const char *errors);
/* Removes the file if this process wrote it. */
void status_remove(const char *pid_file);

/* `weir -s NAME` against the master named by pid_file; messages on stderr.
 * Returns the exit status: 0, or 1 (no master, not ours, a refused or
 * unconfirmed reload). */
int status_signal_master(const char *pid_file, const char *name, int sig);

#endif
