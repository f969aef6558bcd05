#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"
#include "loop.h"
#include "worker.h"

typedef struct worker_slot {
    pid_t pid;
    time_t started;
    unsigned quick_deaths; /* consecutive deaths within a second of start */
    time_t respawn_at;     /* backoff: 0 = now */
} worker_slot_t;

static struct {
    weir_conf_t *cf;
    int *fds;
    worker_slot_t *slots;
    unsigned nslots;
    const char *pid_file;
} m;

static pid_t spawn(unsigned i)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork failed: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        worker_info_t info = {.cf = m.cf, .listen_fds = m.fds, .index = i, .count = m.nslots};
        _exit(worker_main(&info));
    }
    m.slots[i].pid = pid;
    m.slots[i].started = time(NULL);
    m.slots[i].respawn_at = 0;
    return pid;
}

static void signal_workers(int sig)
{
    for (unsigned i = 0; i < m.nslots; i++)
        if (m.slots[i].pid > 0)
            kill(m.slots[i].pid, sig);
}

static unsigned live_workers(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < m.nslots; i++)
        n += m.slots[i].pid > 0;
    return n;
}

static void describe_exit(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

/* Reaps children; restarts those that died unexpectedly unless stopping. */
static void reap(int stopping)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (unsigned i = 0; i < m.nslots; i++) {
            worker_slot_t *s = &m.slots[i];
            if (s->pid != pid)
                continue;
            s->pid = 0;
            if (stopping)
                break;
            char why[128];
            describe_exit(status, why, sizeof(why));
            time_t now = time(NULL);
            s->quick_deaths = now - s->started < 1 ? s->quick_deaths + 1 : 0;
            /* back off 1, 2, 4 .. 30 s when a worker keeps dying at start */
            unsigned delay = 0;
            if (s->quick_deaths > 1) {
                delay = 1u << (s->quick_deaths - 2 < 5 ? s->quick_deaths - 2 : 5);
                if (delay > 30)
                    delay = 30;
            }
            s->respawn_at = now + delay;
            log_error("worker %u (pid %d) %s; restarting%s", i, (int)pid, why,
                      delay ? " after a backoff" : "");
            break;
        }
    }
}

static void respawn_due(void)
{
    time_t now = time(NULL);
    for (unsigned i = 0; i < m.nslots; i++)
        if (m.slots[i].pid == 0 && m.slots[i].respawn_at <= now)
            spawn(i);
}

static int write_pid_file(void)
{
    if (!m.pid_file)
        return 0;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", m.pid_file);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        log_error("cannot write pid file %s: %s", m.pid_file, strerror(errno));
        return -1;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    return rename(tmp, m.pid_file);
}

/* Waits for the workers to exit, up to `ms`, then kills what is left. */
static void wait_workers(uint64_t ms)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (live_workers()) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t spent = (uint64_t)(now.tv_sec - start.tv_sec) * 1000 +
                         (uint64_t)((now.tv_nsec - start.tv_nsec) / 1000000);
        if (spent >= ms) {
            log_warn("%u workers still running after %llums; killing them", live_workers(),
                     (unsigned long long)ms);
            signal_workers(SIGKILL);
            while (live_workers() && waitpid(-1, NULL, 0) > 0)
                reap(1);
            for (unsigned i = 0; i < m.nslots; i++)
                m.slots[i].pid = 0;
            return;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000};
        sigtimedwait(&set, NULL, &ts);
        reap(1);
    }
}

static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    setsid();
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        close(fd);
    }
    return 0;
}

int master_run(weir_conf_t *cf, const master_options_t *opt)
{
    char msg[512];
    if (loop_probe(msg, sizeof(msg)) != 0) {
        fprintf(stderr, "weir: %s\n", msg);
        return 1;
    }
    m.cf = cf;
    m.pid_file = opt->pid_file ? opt->pid_file : cf->pid_file;
    if (log_open(cf->error_log, cf->error_log_level) < 0) {
        fprintf(stderr, "weir: cannot open error log %s: %s\n", cf->error_log, strerror(errno));
        return 1;
    }
    m.fds = calloc(cf->nlisteners + 1, sizeof(int));
    m.nslots = cf->workers ? cf->workers : 1;
    m.slots = calloc(m.nslots, sizeof(worker_slot_t));
    if (!m.fds || !m.slots || listen_open_all(cf, m.fds) < 0)
        return 1;
    if (opt->daemon && daemonize() < 0)
        return 1;

    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (write_pid_file() < 0)
        return 1;
    for (size_t i = 0; i < cf->nlisteners; i++)
        log_notice("listening on %s", cf->listeners[i].address);
    log_notice("weir started: %u workers", m.nslots);
    for (unsigned i = 0; i < m.nslots; i++)
        spawn(i);

    int status = 0;
    for (;;) {
        struct timespec ts = {.tv_sec = 1, .tv_nsec = 0};
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, &ts);
        if (sig == SIGCHLD || sig < 0) {
            reap(0);
            respawn_due();
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            log_notice("fast stop (signal %d)", sig);
            signal_workers(SIGTERM);
            wait_workers(5000);
            break;
        }
        if (sig == SIGQUIT) {
            log_notice("graceful stop: draining for up to %llums",
                       (unsigned long long)cf->limits.shutdown_timeout);
            signal_workers(SIGQUIT);
            wait_workers(cf->limits.shutdown_timeout + 2000);
            break;
        }
        if (sig == SIGUSR1) {
            log_open(cf->error_log, cf->error_log_level);
            signal_workers(SIGUSR1);
            continue;
        }
        if (sig == SIGHUP || sig == SIGUSR2) {
            log_warn("signal %d: reload and binary upgrade are not implemented yet; ignored", sig);
            continue;
        }
    }
    listen_close_all(cf, m.fds);
    if (m.pid_file)
        unlink(m.pid_file);
    log_notice("weir stopped");
    return status;
}
