#include "status.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define POLL_MS 20
/* how long -s waits for a master that is starting to write its status */
#define STATUS_START_WAIT_MS 3000

static void status_path(char *buf, size_t len, const char *pid_file)
{
    snprintf(buf, len, "%s.status", pid_file);
}

/* Field 22 of /proc/PID/stat (after the parenthesised command name, which
 * may hold spaces), or 0. */
static unsigned long long start_time(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long v = 0;
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p)
        v = strtoull(p + 1, NULL, 10);
    return v;
}

void status_write(const char *pid_file, unsigned attempt, unsigned generation, int ok,
                  const char *errors)
{
    char path[PATH_MAX + 16], tmp[PATH_MAX + 32];
    status_path(path, sizeof(path), pid_file);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f,
                      "weir-status 1\npid %ld\nstart %llu\nattempt %u\ngeneration %u\n"
                      "result %s\n--\n%s",
                      (long)getpid(), start_time(getpid()), attempt, generation,
                      ok ? "ok" : "refused", errors ? errors : "") < 0 ||
        fclose(f) != 0 || rename(tmp, path) < 0) {
        log_warn("cannot write the status file %s (weir -s reload cannot confirm reloads): %s",
                 path, strerror(errno));
        unlink(tmp);
    }
}

static int status_read(const char *pid_file, status_t *st);

void status_remove(const char *pid_file)
{
    char path[PATH_MAX + 16];
    status_t st;
    status_path(path, sizeof(path), pid_file);
    if (status_read(pid_file, &st) == 0 && st.pid == (long)getpid())
        unlink(path);
}

/* 0, or -1 when the file is missing or not a status file. */
static int status_read(const char *pid_file, status_t *st)
{
    char path[PATH_MAX + 16], line[256];
    status_path(path, sizeof(path), pid_file);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    memset(st, 0, sizeof(*st));
    int version = 0, fields = 0;
    char result[16] = "";
    while (fgets(line, sizeof(line), f) && strcmp(line, "--\n") != 0) {
        fields += sscanf(line, "weir-status %d", &version) == 1;
        fields += sscanf(line, "pid %ld", &st->pid) == 1;
        fields += sscanf(line, "start %llu", &st->start) == 1;
        fields += sscanf(line, "attempt %u", &st->attempt) == 1;
        fields += sscanf(line, "generation %u", &st->generation) == 1;
        fields += sscanf(line, "result %15s", result) == 1;
    }
    size_t n = fread(st->errors, 1, sizeof(st->errors) - 1, f);
    st->errors[n] = '\0';
    fclose(f);
    st->ok = strcmp(result, "ok") == 0;
    return version == 1 && fields == 6 ? 0 : -1;
}

static long read_pid(const char *pid_file)
{
    FILE *f = fopen(pid_file, "r");
    long pid = 0;
    if (!f) {
        fprintf(stderr, "weir: no running master: cannot read the pid file %s: %s\n", pid_file,
                strerror(errno));
        return 0;
    }
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "weir: no running master: the pid file %s holds no pid\n", pid_file);
        pid = 0;
    }
    fclose(f);
    return pid;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* The master named by the pid file, checked against its status file; 0
 * after saying why there is none. */
static long find_master(const char *pid_file, status_t *st)
{
    long pid = read_pid(pid_file);
    if (!pid)
        return 0;
    if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
        fprintf(stderr,
                "weir: no running master: the pid file %s names pid %ld, which is not running "
                "(a stale pid file)\n",
                pid_file, pid);
        return 0;
    }
    /* a master still starting has written its pid file but not yet its
     * status (it does once its workers are forked): give it a moment */
    int ours = 0;
    for (long waited = 0; !ours && waited <= STATUS_START_WAIT_MS; waited += POLL_MS) {
        ours = status_read(pid_file, st) == 0 && st->pid == pid && st->start == start_time(pid);
        if (!ours && waited < STATUS_START_WAIT_MS)
            sleep_ms(POLL_MS);
    }
    if (!ours) {
        fprintf(stderr,
                "weir: no running master: pid %ld (from %s) is not the weir master that wrote "
                "it (%s.status does not name it); no signal sent\n",
                pid, pid_file, pid_file);
        return 0;
    }
    return pid;
}


static int wait_reload(const char *pid_file, long pid, unsigned attempt)
{
    status_t st;
    for (long waited = 0; waited < STATUS_RELOAD_WAIT_MS; waited += POLL_MS) {
        sleep_ms(POLL_MS);
        if (status_read(pid_file, &st) == 0 && st.pid == pid && st.attempt > attempt) {
            if (st.ok)
                return 0;
            fputs(st.errors, stderr);
            return 1;
        }
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            fprintf(stderr, "weir: the master (pid %ld) exited during the reload\n", pid);
            return 1;
        }
    }
    char d[WEIR_DURATION_LEN];
    fprintf(stderr,
            "weir: the master (pid %ld) did not answer the reload within %s; it may still be "
            "loading: see its error log\n",
            pid, weir_duration_text(STATUS_RELOAD_WAIT_MS, d));
    return 1;
}

int status_signal_master(const char *pid_file, const char *name, int sig)
{
    status_t st;
    long pid = find_master(pid_file, &st);
    if (!pid)
        return 1;
    if (kill((pid_t)pid, sig) < 0) {
        fprintf(stderr, "weir: kill(%ld, %s): %s\n", pid, name, strerror(errno));
        return 1;
    }
    return sig == SIGHUP ? wait_reload(pid_file, pid, st.attempt) : 0;
}
