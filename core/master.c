#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "listen.h"
#include "log.h"
#include "logfile.h"
#include "privs.h"
#include "loop.h"
#include "metrics_core.h"
#include "sdnotify.h"
#include "status.h"
#include "worker.h"

/* A worker that dies this soon after its start counts as a quick death;
 * repeated quick deaths back off 1, 2, 4 .. 30 s before the next start. */
#define QUICK_DEATH_MS 1000
#define BACKOFF_MAX_MS 30000
/* After shutdown_timeout a draining worker closes what it has and exits;
 * the master kills one still there this much later. */
#define KILL_GRACE_MS 2000
#define FAST_STOP_MS 5000

typedef struct worker_slot {
    pid_t pid;
    int ctl_fd;            /* the master's end of the control channel, or -1 */
    uint64_t started;      /* monotonic ms */
    unsigned quick_deaths; /* consecutive deaths soon after start */
    uint64_t respawn_at;   /* monotonic ms; 0 = now */
} worker_slot_t;

/* A configuration and the workers serving it. The newest is current; older
 * ones drain and are freed when their last worker has gone. */
typedef struct generation {
    struct generation *next; /* older */
    unsigned id;
    weir_conf_t *cf;
    int *fds; /* per cf->listeners */
    worker_slot_t *slots;
    unsigned nslots;
    int draining;
    uint64_t kill_at; /* monotonic ms, while draining */
} generation_t;

static struct {
    generation_t *gens; /* newest first */
    unsigned last_id;
    const conf_options_t *copt;
    const master_options_t *opt;
    char pid_file[PATH_MAX]; /* "" for none; a copy: generations come and go */
    int stopping;
    pid_t upgrade_pid; /* the new binary's master, while it runs */
    char oldbin[PATH_MAX + 8];
    unsigned reloads; /* HUPs taken, for the status file */
} m;

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- workers */

static void close_ctl(worker_slot_t *s)
{
    if (s->ctl_fd >= 0)
        close(s->ctl_fd);
    s->ctl_fd = -1;
}

/* In a new worker: the master's ends of the other workers' channels. */
static void close_other_ctls(void)
{
    for (generation_t *o = m.gens; o; o = o->next)
        for (unsigned j = 0; j < o->nslots; j++)
            close_ctl(&o->slots[j]);
}

static void spawn(generation_t *g, unsigned i)
{
    int sv[2] = {-1, -1};
    fflush(NULL); /* the worker ends through exit(): nothing buffered goes twice */
    pid_t pid = ctl_pair(sv) < 0 ? -1 : fork();
    if (pid < 0) {
        log_error("cannot start a worker: %s; retrying in a second", strerror(errno));
        if (sv[0] >= 0) {
            close(sv[0]);
            close(sv[1]);
        }
        g->slots[i].respawn_at = monotonic_ms() + 1000;
        return;
    }
    if (pid == 0) {
        close(sv[0]);
        close_other_ctls();
        listen_close_others(g->fds, g->cf->nlisteners);
        if (privs_drop(g->cf) < 0)
            exit(1);
        worker_info_t info = {.cf = g->cf, .listen_fds = g->fds, .index = i, .count = g->nslots,
                              .ctl_fd = sv[1]};
        /* exit(), not _exit(): LeakSanitizer checks a worker's heap as it ends */
        exit(worker_main(&info));
    }
    close(sv[1]);
    g->slots[i].ctl_fd = sv[0];
    g->slots[i].pid = pid;
    g->slots[i].started = monotonic_ms();
    g->slots[i].respawn_at = 0;
}

static void signal_generation(const generation_t *g, int sig)
{
    for (unsigned i = 0; i < g->nslots; i++)
        if (g->slots[i].pid > 0)
            kill(g->slots[i].pid, sig);
}

static unsigned live_workers(const generation_t *g)
{
    unsigned n = 0;
    for (unsigned i = 0; i < g->nslots; i++)
        n += g->slots[i].pid > 0;
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

/* A worker of the current generation died: restart it, backing off when it
 * keeps dying at start. */
static void schedule_restart(generation_t *g, unsigned i, pid_t pid, int status)
{
    worker_slot_t *s = &g->slots[i];
    char why[128];
    describe_exit(status, why, sizeof(why));
    uint64_t now = monotonic_ms();
    s->quick_deaths = now - s->started < QUICK_DEATH_MS ? s->quick_deaths + 1 : 0;
    uint64_t delay = 0;
    if (s->quick_deaths > 1) {
        unsigned shift = s->quick_deaths - 2 < 5 ? s->quick_deaths - 2 : 5;
        delay = 1000u << shift;
        if (delay > BACKOFF_MAX_MS)
            delay = BACKOFF_MAX_MS;
    }
    s->respawn_at = now + delay;
    char d[WEIR_DURATION_LEN];
    if (delay)
        log_error("worker %u (pid %d) %s; restarting in %s (it died %u times in a row "
                  "within a second of starting)",
                  i, (int)pid, why, weir_duration_text(delay, d), s->quick_deaths);
    else
        log_error("worker %u (pid %d) %s; restarting", i, (int)pid, why);
}

static void upgrade_exited(int status);

static void child_exited(pid_t pid, int status)
{
    if (pid == m.upgrade_pid) {
        upgrade_exited(status);
        return;
    }
    for (generation_t *g = m.gens; g; g = g->next) {
        for (unsigned i = 0; i < g->nslots; i++) {
            if (g->slots[i].pid != pid)
                continue;
            g->slots[i].pid = 0;
            close_ctl(&g->slots[i]);
            if (!g->draining && !m.stopping) {
                schedule_restart(g, i, pid, status);
                metrics_worker_restart(g->cf);
            } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                char why[128];
                describe_exit(status, why, sizeof(why));
                log_warn("worker %u (pid %d) of generation %u %s while stopping", i, (int)pid,
                         g->id, why);
            }
            return;
        }
    }
}

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        child_exited(pid, status);
}

static void respawn_due(void)
{
    generation_t *g = m.gens;
    if (!g || g->draining || m.stopping)
        return;
    uint64_t now = monotonic_ms();
    for (unsigned i = 0; i < g->nslots; i++)
        if (g->slots[i].pid == 0 && g->slots[i].respawn_at <= now)
            spawn(g, i);
}

/* ------------------------------------------------------------ generations */

/* Everything of g but its configuration, which stays the caller's. */
static void generation_abandon(generation_t *g)
{
    for (unsigned i = 0; g->slots && i < g->nslots; i++)
        close_ctl(&g->slots[i]);
    if (g->fds && g->cf)
        listen_release(g->cf, g->fds);
    free(g->fds);
    free(g->slots);
    free(g);
}

static void generation_free(generation_t *g)
{
    weir_conf_t *cf = g->cf;
    generation_abandon(g);
    conf_free(cf);
}

/* A generation for cf, its sockets acquired, no workers yet; NULL after
 * logging why (cf is then the caller's). */
static generation_t *generation_new(weir_conf_t *cf)
{
    generation_t *g = calloc(1, sizeof(*g));
    int *fds = calloc(cf->nlisteners + 1, sizeof(int));
    unsigned n = cf->workers ? cf->workers : 1;
    worker_slot_t *slots = calloc(n, sizeof(worker_slot_t));
    if (!g || !fds || !slots || listen_acquire(cf, fds) < 0) {
        if (!g || !fds || !slots)
            log_error("out of memory starting a generation");
        free(g);
        free(fds);
        free(slots);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++)
        slots[i].ctl_fd = -1;
    g->id = ++m.last_id;
    g->cf = cf;
    g->fds = fds;
    g->slots = slots;
    g->nslots = n;
    return g;
}

static void generation_start(generation_t *g)
{
    g->next = m.gens;
    m.gens = g;
    metrics_generation(g->cf, g->id);
    for (unsigned i = 0; i < g->nslots; i++)
        spawn(g, i);
}

static void generation_drain(generation_t *g, int sig)
{
    if (!g->draining) {
        g->draining = 1;
        g->kill_at = monotonic_ms() + (sig == SIGTERM ? FAST_STOP_MS
                                                      : g->cf->limits.shutdown_timeout +
                                                            KILL_GRACE_MS);
    }
    signal_generation(g, sig);
}

/* Frees drained generations and kills workers past their deadline. */
static void tend_generations(void)
{
    uint64_t now = monotonic_ms();
    for (generation_t **pp = &m.gens; *pp;) {
        generation_t *g = *pp;
        unsigned live = live_workers(g);
        if (g->draining && live && now >= g->kill_at) {
            log_warn("generation %u: %u workers still running past their deadline; killing "
                     "them",
                     g->id, live);
            signal_generation(g, SIGKILL);
        }
        if (g->draining && live == 0) {
            log_notice("generation %u: all workers have exited", g->id);
            *pp = g->next;
            generation_free(g);
            continue;
        }
        pp = &g->next;
    }
}

/* READY=1 for systemd, with what serves now; prefix says why (a refused
 * reload). */
static void notify_serving(const char *prefix)
{
    char status[160];
    snprintf(status, sizeof(status), "%sgeneration %u serving with %u workers", prefix,
             m.gens->id, m.gens->nslots);
    sdnotify_ready(status);
}

/* --------------------------------------------------------------- pid file */

static int write_pid_file(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 ||
        rename(tmp, path) < 0) {
        log_error("cannot write pid file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Removes path if it names this process (after a binary upgrade the pid
 * file belongs to the new master). */
static void remove_own_pid_file(const char *path)
{
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (!f)
        return;
    if (fscanf(f, "%ld", &pid) == 1 && pid == (long)getpid())
        unlink(path);
    fclose(f);
}

/* ------------------------------------------------------------ status file */

static void publish_status(int ok, const char *errors)
{
    if (m.pid_file[0] && !m.upgrade_pid)
        status_write(m.pid_file, m.reloads, m.gens ? m.gens->id : 0, ok, errors);
}

static void reload(void);

/* HUP: a reload whose outcome `weir -s reload` waits for (status.h). */
static void reload_reported(void)
{
    unsigned before = m.gens->id;
    m.reloads++;
    log_capture_begin();
    if (m.stopping) {
        log_error("reload refused: the master is stopping");
    } else {
        sdnotify_reloading();
        reload();
        notify_serving(m.gens->id == before ? "reload failed (see the log); " : "");
    }
    publish_status(m.gens->id != before, log_capture_end());
}

/* ----------------------------------------------------------------- reload */

static void report_to_log(const char *msg)
{
    log_error("%s", msg);
}

/* Master-level settings of a new generation: error log and pid file. */
static int apply_master_settings(const weir_conf_t *old, const weir_conf_t *cf)
{
    if (strcmp(old->error_log, cf->error_log) != 0 || old->error_log_level != cf->error_log_level) {
        if (log_open(cf->error_log, cf->error_log_level) < 0) {
            log_error("reload: cannot open error log %s: %s", cf->error_log, strerror(errno));
            return -1;
        }
    }
    if (!m.opt->pid_file && strcmp(m.pid_file, cf->pid_file) != 0 && !m.upgrade_pid) {
        if (write_pid_file(cf->pid_file) < 0)
            return -1;
        remove_own_pid_file(m.pid_file);
        status_remove(m.pid_file);
        snprintf(m.pid_file, sizeof(m.pid_file), "%s", cf->pid_file);
    }
    return 0;
}

static void reload(void)
{
    generation_t *cur = m.gens;
    log_notice("reload: reading %s", m.copt->file);
    conf_options_t o = *m.copt;
    o.previous = cur->cf;
    o.report = report_to_log;
    weir_conf_t *cf = conf_load(&o);
    if (!cf) {
        log_error("reload failed: %s has errors (above); generation %u keeps serving",
                  m.copt->file, cur->id);
        metrics_reload(cur->cf, 0);
        return;
    }
    generation_t *g = generation_new(cf);
    if (!g || apply_master_settings(cur->cf, cf) < 0) {
        if (g)
            generation_free(g);
        else
            conf_free(cf);
        log_error("reload failed; generation %u keeps serving", cur->id);
        metrics_reload(cur->cf, 0);
        return;
    }
    generation_start(g);
    metrics_reload(g->cf, 1);
    generation_drain(cur, SIGQUIT);
    for (size_t i = 0; i < cf->nlisteners; i++)
        log_info("generation %u listening on %s", g->id, cf->listeners[i].address);
    char d[WEIR_DURATION_LEN];
    log_notice("reload: generation %u started with %u workers; generation %u drains for up to "
               "%s",
               g->id, g->nslots, cur->id, weir_duration_text(cur->cf->limits.shutdown_timeout, d));
}

/* --------------------------------------------------------- binary upgrade */

static void upgrade(void)
{
    if (m.upgrade_pid) {
        log_warn("binary upgrade: the new master (pid %d) is still running; ignored",
                 (int)m.upgrade_pid);
        return;
    }
    if (m.pid_file[0]) {
        snprintf(m.oldbin, sizeof(m.oldbin), "%s.oldbin", m.pid_file);
        if (rename(m.pid_file, m.oldbin) < 0) {
            log_error("binary upgrade: cannot rename %s to %s: %s; not upgrading", m.pid_file,
                      m.oldbin, strerror(errno));
            return;
        }
    }
    char fds[4096];
    pid_t pid = fork();
    if (pid == 0) {
        if (listen_export(fds, sizeof(fds)) < 0 || setenv(LISTEN_INHERIT_ENV, fds, 1) < 0)
            _exit(126);
        execvp(m.opt->argv[0], m.opt->argv);
        log_error("binary upgrade: cannot execute %s: %s", m.opt->argv[0], strerror(errno));
        _exit(127);
    }
    if (pid < 0) {
        log_error("binary upgrade: fork failed: %s", strerror(errno));
        if (m.pid_file[0])
            rename(m.oldbin, m.pid_file);
        return;
    }
    m.upgrade_pid = pid;
    log_notice("binary upgrade: started %s as pid %d; this master keeps serving until told to "
               "quit",
               m.opt->argv[0], (int)pid);
}

/* The new master is gone: this one is the master again. */
static void upgrade_exited(int status)
{
    char why[128];
    describe_exit(status, why, sizeof(why));
    log_error("binary upgrade: the new master (pid %d) %s; this master (pid %d) goes on "
              "serving",
              (int)m.upgrade_pid, why, (int)getpid());
    m.upgrade_pid = 0;
    if (m.pid_file[0] && !m.stopping && rename(m.oldbin, m.pid_file) < 0)
        write_pid_file(m.pid_file);
    if (!m.stopping)
        publish_status(1, "");
}

/* ------------------------------------------------------------------- main */

/* -d. The parent stays until the daemon has started (pid file written) or
 * failed, and exits 0 or with the daemon's status: `weir -d` with a port in
 * use or an unwritable pid file fails where it was run, its reason on the
 * terminal. The daemon says "started" through a pipe (detach_stdio). */
static int daemon_pipe = -1;

static int daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid > 0) {
        char c;
        ssize_t n;
        int status = 0;
        close(p[1]);
        do
            n = read(p[0], &c, 1);
        while (n < 0 && errno == EINTR);
        if (n == 1)
            _exit(0);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        _exit(WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1);
    }
    close(p[0]);
    daemon_pipe = p[1];
    setsid();
    return 0;
}

/* Start-up succeeded: a daemon lets go of the terminal (stdin, stdout and
 * stderr become /dev/null) before its workers inherit them, and releases
 * the waiting parent. */
static void detach_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    if (write(daemon_pipe, "1", 1) < 0)
        log_warn("-d: cannot tell the starting process that weir runs: %s", strerror(errno));
    close(daemon_pipe);
    daemon_pipe = -1;
}

static void stop_all(int sig)
{
    m.stopping = 1;
    /* during a binary upgrade the service goes on in the new master */
    if (m.upgrade_pid)
        sdnotify_new_main(m.upgrade_pid);
    else
        sdnotify_stopping();
    for (generation_t *g = m.gens; g; g = g->next)
        generation_drain(g, sig);
}

/* The master opens every file anew, since the workers may not be allowed
 * to (user:), and passes the descriptors to them (ctl.h). */
static void reopen_logs(void)
{
    const weir_conf_t *cf = m.gens->cf;
    if (log_open(cf->error_log, cf->error_log_level) < 0)
        log_error("reopen: cannot open error log %s: %s", cf->error_log, strerror(errno));
    for (generation_t *g = m.gens; g; g = g->next) {
        logfiles_reopen(g->cf);
        for (unsigned i = 0; i < g->nslots; i++)
            if (g->slots[i].pid > 0 && g->slots[i].ctl_fd >= 0)
                ctl_send_logs(g->slots[i].ctl_fd, g->cf);
    }
}

static void handle_signal(int sig)
{
    char d[WEIR_DURATION_LEN];
    switch (sig) {
    case SIGTERM:
    case SIGINT:
        log_notice("fast stop (signal %d)", sig);
        stop_all(SIGTERM);
        break;
    case SIGQUIT:
        if (m.stopping)
            break;
        log_notice("graceful stop: draining for up to %s",
                   weir_duration_text(m.gens->cf->limits.shutdown_timeout, d));
        stop_all(SIGQUIT);
        break;
    case SIGHUP:
        reload_reported();
        break;
    case SIGUSR1:
        reopen_logs();
        break;
    case SIGUSR2:
        if (!m.stopping)
            upgrade();
        break;
    default:
        break;
    }
}

/* Every descriptor the hard limit grants is for serving: the workers fit
 * their connection count to the soft limit (worker.c, fit_fd_limit),
 * and a soft limit of 1024 would cap a worker near 500 connections. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int start(weir_conf_t *cf)
{
    raise_fd_limit();
    log_echo_errors(1);
    if (log_open(cf->error_log, cf->error_log_level) < 0) {
        fprintf(stderr, "weir: cannot open error log %s: %s\n", cf->error_log, strerror(errno));
        return -1;
    }
    privs_check_master(cf);
    int inherited = listen_inherit();
    generation_t *g = generation_new(cf);
    listen_close_unclaimed();
    if (!g)
        return -1;
    if (inherited > 0)
        log_notice("binary upgrade: took over %d listening sockets", inherited);
    /* a new binary started by an upgrade stays in its parent's session */
    if (m.opt->daemon && inherited <= 0 && daemonize() < 0) {
        log_error("-d: cannot start the daemon: %s", strerror(errno));
        generation_abandon(g);
        return -1;
    }
    if (m.pid_file[0] && write_pid_file(m.pid_file) < 0) {
        generation_abandon(g);
        return -1;
    }
    for (size_t i = 0; i < cf->nlisteners; i++)
        log_notice("listening on %s", cf->listeners[i].address);
    log_notice("weir started: %u workers", g->nslots);
    log_echo_errors(0);
    if (daemon_pipe >= 0)
        detach_stdio();
    generation_start(g);
    /* Serving: the sockets listen, so the kernel queues what arrives until
     * a worker accepts it. A master started by a binary upgrade is not the
     * service's main process yet: the old one hands that over as it quits. */
    if (inherited <= 0)
        notify_serving("");
    publish_status(1, "");
    return 0;
}

int master_run(weir_conf_t *cf, const conf_options_t *copt, const master_options_t *opt)
{
    char msg[512];
    if (loop_probe(msg, sizeof(msg)) != 0) {
        fprintf(stderr, "weir: %s\n", msg);
        conf_free(cf);
        return 1;
    }
    m.copt = copt;
    m.opt = opt;
    const char *pid_file = opt->pid_file ? opt->pid_file : cf->pid_file;
    if (pid_file && strlen(pid_file) >= sizeof(m.pid_file)) {
        fprintf(stderr, "weir: pid file path %s is too long\n", pid_file);
        conf_free(cf);
        return 1;
    }
    snprintf(m.pid_file, sizeof(m.pid_file), "%s", pid_file ? pid_file : "");

    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (start(cf) < 0) { /* no generation was started: cf is still ours */
        conf_free(cf);
        return 1;
    }
    while (m.gens) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig > 0 && sig != SIGCHLD)
            handle_signal(sig);
        reap();
        respawn_due();
        tend_generations();
    }
    if (m.pid_file[0]) {
        status_remove(m.pid_file);
        remove_own_pid_file(m.pid_file);
        if (m.oldbin[0])
            remove_own_pid_file(m.oldbin);
    }
    listen_close_unclaimed();
    log_notice("weir stopped");
    return 0;
}
