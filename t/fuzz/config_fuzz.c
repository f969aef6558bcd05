/*
 * Fuzz target: the config loader (core/conf*.c) with the standard modules
 * (router, lb_roundrobin, lb_ketama, healthcheck, headers, rewrite,
 * accesslog) loaded from the fuzz build's modules dir, through conf_load as
 * the master calls it.
 *
 * The input is the text of weir.yaml. It is written to a scratch directory
 * (made at start-up under $TMPDIR or /tmp, removed at exit) next to two
 * fixed files a config may name, inc.yaml (for `include:`) and page.html
 * (for `error_page:`), and loaded with -M <modules dir> and the binary's
 * core handlers and variables. conf_load binds nothing (listeners are
 * opened by the master afterwards); it does open files (includes, the
 * error page, log files, module files), map shared zones and resolve host
 * names, so while it runs the harness confines it:
 *  - open/fopen of anything but a file directly in the scratch directory or
 *    one of the standard module files is refused with EACCES (a config may
 *    name /dev/zero, a FIFO, or a log file anywhere, and the fuzzer runs as
 *    root on CI); files a load created are removed after each input;
 *  - dlopen gives the module handles opened once at start-up, never loads
 *    anything else, and dlclose of them does nothing: libFuzzer keeps
 *    pointers into an instrumented library's counters, so a module must
 *    never be unmapped while the fuzzer runs;
 *  - getaddrinfo takes numeric hosts only ("localhost" is 127.0.0.1), so a
 *    run is offline and deterministic.
 *
 * Invariants beyond "no sanitizer report, no leak":
 *  - a refused config reports at least one error, an accepted one none, and
 *    every message names a file of the config;
 *  - no descriptor outlives the loads of one input;
 *  - an accepted config is sane (listeners, upstreams with peers and a
 *    balancer, routes pointing at its upstreams, phase chains built) and
 *    loads again as a reload of itself (shared zones carried), after which
 *    the first generation is freed and the second serves;
 *  - canned requests run through the phases of the serving generation
 *    (REQUEST to UPSTREAM_REQUEST, then UPSTREAM_RESPONSE or ERROR, then LOG)
 *    end in exactly one of "answered" and "go upstream"; an answer has a
 *    valid status; a request going upstream has a chosen peer and a path
 *    starting with '/'; and the request and response heads the proxy would
 *    write serialise (no module produced a value with CR, LF or NUL).
 *
 * WEIR_FUZZ_VERBOSE=1 prints each load's messages (to triage seeds).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "conf.h"
#include "fuzz_common.h"
#include "h1.h"
#include "log.h"
#include "phase.h"
#include "conn.h"
#include "request.h"

#ifndef WEIR_FUZZ_MODULES_DIR
#define WEIR_FUZZ_MODULES_DIR "modules"
#endif

static const char *const module_names[] = {"router",  "lb_roundrobin", "lb_ketama",
                                           "healthcheck", "headers", "rewrite",
                                           "accesslog"};
#define NMODULES (sizeof(module_names) / sizeof(module_names[0]))

static struct {
    dev_t dev;
    ino_t ino;
    void *handle;
} mods[NMODULES];

static char scratch[256];     /* the scratch directory, absolute */
static char config_path[300]; /* scratch/weir.yaml */
static const char *modules_dir;
static int confined; /* while conf_load (and request phases) run */
static int verbose;  /* WEIR_FUZZ_VERBOSE=1: print what each load says */

static const char *const fixed_files[] = {"weir.yaml", "inc.yaml", "page.html"};

/* ------------------------------------------------------------ confinement */

static int (*real_open)(const char *, int, ...);
static FILE *(*real_fopen)(const char *, const char *);
static void *(*real_dlopen)(const char *, int);
static int (*real_dlclose)(void *);
static int (*real_getaddrinfo)(const char *, const char *, const struct addrinfo *,
                               struct addrinfo **);

static void resolve_real(void)
{
    if (real_open)
        return;
    real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    real_fopen = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen");
    real_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    real_dlclose = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
    real_getaddrinfo = (int (*)(const char *, const char *, const struct addrinfo *,
                                struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
    if (!real_open || !real_fopen || !real_dlopen || !real_dlclose || !real_getaddrinfo)
        abort();
}

/* Index of the standard module `path` names (by file identity), or -1. */
static int module_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    for (size_t i = 0; i < NMODULES; i++)
        if (mods[i].handle && mods[i].dev == st.st_dev && mods[i].ino == st.st_ino)
            return (int)i;
    return -1;
}

/* A file directly in the scratch directory: "<scratch>/<name>", no more
 * slashes, not "." or "..". */
static int in_scratch(const char *path)
{
    size_t n = strlen(scratch);
    if (strncmp(path, scratch, n) != 0 || path[n] != '/')
        return 0;
    const char *name = path + n + 1;
    return *name && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int allowed(const char *path)
{
    return path && (in_scratch(path) || module_of(path) >= 0);
}

/* These definitions take the place of libc's (and ASan's weak interceptors)
 * for every caller in the process; outside a load they pass straight
 * through. */
int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    resolve_real();
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (confined && !allowed(path)) {
        errno = EACCES;
        return -1;
    }
    return real_open(path, flags, mode);
}

FILE *fopen(const char *path, const char *how)
{
    resolve_real();
    if (confined && !allowed(path)) {
        errno = EACCES;
        return NULL;
    }
    return real_fopen(path, how);
}

void *dlopen(const char *path, int flags)
{
    resolve_real();
    int m = path ? module_of(path) : -1;
    if (m < 0)
        return confined ? NULL : real_dlopen(path, flags);
    /* NOLOAD asks whether it is still loaded after dlclose (conf_free):
     * say no, so the loader closes the descriptor it kept for it */
    return (flags & RTLD_NOLOAD) ? NULL : mods[m].handle;
}

int dlclose(void *handle)
{
    resolve_real();
    for (size_t i = 0; i < NMODULES; i++)
        if (handle == mods[i].handle)
            return 0;
    return real_dlclose(handle);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    resolve_real();
    if (!confined)
        return real_getaddrinfo(node, service, hints, res);
    struct addrinfo h;
    memset(&h, 0, sizeof(h));
    if (hints)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    if (node && strcasecmp(node, "localhost") == 0)
        node = "127.0.0.1";
    return real_getaddrinfo(node, service, &h, res);
}

/* ------------------------------------------------------------- scratch */

static void write_file(const char *name, const char *text, size_t len)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", scratch, name);
    int fd = real_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    while (len) {
        ssize_t w = write(fd, text, len);
        if (w <= 0)
            abort();
        text += w;
        len -= (size_t)w;
    }
    close(fd);
}

/* Removes what a load created (log files); keep_fixed keeps the three
 * files of the harness. */
static void clean_scratch(int keep_fixed)
{
    DIR *d = opendir(scratch);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int fixed = 0;
        for (size_t i = 0; i < sizeof(fixed_files) / sizeof(fixed_files[0]); i++)
            fixed |= strcmp(e->d_name, fixed_files[i]) == 0;
        if (fixed && keep_fixed)
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

static void remove_scratch(void)
{
    clean_scratch(0);
    rmdir(scratch);
}

/* For a failure report: what each descriptor is. */
static void print_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[300], target[512];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
    }
    closedir(d);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Shared mappings (shm zones) in this process. */
static int count_shared_maps(void)
{
    FILE *f = real_fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        char *sp = strchr(line, ' ');
        if (sp && sp[1] && sp[2] && sp[3] && sp[4] == 's')
            n++;
        /* lines longer than the buffer: skip their tails */
        while (!strchr(line, '\n') && fgets(line, sizeof(line), f))
            ;
    }
    fclose(f);
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    resolve_real();
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof(scratch), "%s/weir-fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
        perror("config fuzz: mkdtemp");
        abort();
    }
    char *real = realpath(scratch, NULL); /* conf_load resolves against the real path */
    if (!real || strlen(real) >= sizeof(scratch))
        abort();
    strcpy(scratch, real);
    free(real);
    atexit(remove_scratch);
    snprintf(config_path, sizeof(config_path), "%s/weir.yaml", scratch);
    static const char inc[] = "upstreams:\n  inc:\n    balancer: roundrobin\n"
                              "    servers: [127.0.0.1:9100, {address: 127.0.0.1:9101, weight: 3}]\n";
    static const char page[] = "<h1>{{status}} {{reason}}</h1><p>{{request_id}}</p>\n";
    write_file("weir.yaml", "", 0);
    write_file("inc.yaml", inc, sizeof(inc) - 1);
    write_file("page.html", page, sizeof(page) - 1);

    modules_dir = getenv("WEIR_FUZZ_MODULES");
    if (!modules_dir || !*modules_dir)
        modules_dir = WEIR_FUZZ_MODULES_DIR;
    for (size_t i = 0; i < NMODULES; i++) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s.so", modules_dir, module_names[i]);
        if (stat(path, &st) < 0) {
            fprintf(stderr, "config fuzz: %s: %s (set WEIR_FUZZ_MODULES)\n", path,
                    strerror(errno));
            abort();
        }
        /* RTLD_NODELETE as well: never unmapped, whatever happens */
        mods[i].handle = real_dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!mods[i].handle) {
            fprintf(stderr, "config fuzz: %s\n", dlerror());
            abort();
        }
        mods[i].dev = st.st_dev;
        mods[i].ino = st.st_ino;
    }
    const char *v = getenv("WEIR_FUZZ_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
    /* the error log would only be noise (and slow) */
    log_set_level(WEIR_LOG_ERROR + 1);
    return 0;
}

/* --------------------------------------------------------------- reports */

static unsigned nreports;

static void report(const char *msg)
{
    size_t n = strlen(scratch);
    nreports++;
    if (verbose)
        fprintf(stderr, "config: %s\n", msg ? msg : "(null)");
    FZ_CHECK(msg && strncmp(msg, scratch, n) == 0 && msg[n] == '/',
             "error message does not name a config file: %s", msg ? msg : "(null)");
    FZ_CHECK(strlen(msg) > n + 2, "empty error message");
}

static weir_conf_t *load(const weir_conf_t *previous)
{
    conf_options_t opt = {
        .file = config_path,
        .modules_dir = modules_dir,
        .core_handlers = core_phase_handlers,
        .register_core_vars = core_vars_register,
        .previous = previous,
        .report = report,
    };
    nreports = 0;
    confined = 1;
    weir_conf_t *cf = conf_load(&opt);
    confined = 0;
    if (verbose && cf)
        fprintf(stderr, "config: accepted%s\n", previous ? " (reload)" : "");
    if (cf)
        FZ_CHECK(nreports == 0, "accepted with %u errors reported", nreports);
    else
        FZ_CHECK(nreports > 0, "refused without an error message");
    return cf;
}

static void check_conf(const weir_conf_t *cf)
{
    FZ_CHECK(cf->nlisteners > 0, "accepted without listeners");
    FZ_CHECK(cf->workers >= 1 && cf->workers <= 1024, "workers %u", cf->workers);
    FZ_CHECK(cf->phases != NULL && cf->vars != NULL, "no phases or variables");
    for (size_t i = 0; i < cf->nlisteners; i++)
        FZ_CHECK(cf->listeners[i].addr.len > 0 && cf->listeners[i].address, "listener %zu", i);
    for (size_t i = 0; i < cf->nupstreams; i++) {
        const weir_upstream_t *u = &cf->upstreams[i];
        FZ_CHECK(u->name && u->npeers > 0 && u->balancer, "upstream %zu", i);
        for (size_t k = 0; k < u->npeers; k++)
            FZ_CHECK(u->peers[k].weight >= 1 && u->peers[k].weight <= 1000 &&
                         u->peers[k].addr.len > 0,
                     "upstream %s peer %zu", u->name, k);
    }
    for (size_t i = 0; i < cf->nroutes; i++) {
        const weir_route_t *rt = &cf->routes[i];
        FZ_CHECK(rt->name != NULL, "route %zu has no name", i);
        FZ_CHECK(!rt->upstream || (rt->upstream >= cf->upstreams &&
                                   rt->upstream < cf->upstreams + cf->nupstreams),
                 "route %zu points outside the upstreams", i);
    }
    const struct phases *ph = cf->phases;
    for (size_t p = 0; p < WEIR_PHASE_COUNT; p++)
        FZ_CHECK(ph->start[p] <= ph->start[p + 1] && ph->start[p + 1] <= ph->count,
                 "phase %zu range", p);
}

/* ------------------------------------------------------------- requests */

/* Header values hold what a client may legally send and a module must
 * still handle: HTAB, spaces, obs-text, characters a rewrite has to escape. */
static const char *const canned[] = {
    ("GET /v1/users/42?a=1&b=2 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: fz/1\r\n"
     "X-Forwarded-For: 10.1.1.1\r\nCookie: sid=abc; u=1\r\nX-User: al ice?&#%\xc3\xa9/..\r\n"
     "X-Test: t\tv \xff\r\n\r\n"),
    ("POST /static/img/a.PNG HTTP/1.1\r\nHost: www.Example.com:8080\r\nContent-Length: 3\r\n"
     "Connection: keep-alive, x-drop\r\nX-Drop: 1\r\n\r\n"),
    ("HEAD /old/page/../index.html HTTP/1.0\r\n\r\n"),
    ("DELETE http://b.example.org/a/%2e/b?x HTTP/1.1\r\nHost: ignored\r\nX-Debug: on\r\n\r\n"),
};

static int answered, upstream_next, response_next;
/* the connection requests come from: only its addresses are read */
static conn_t fuzz_conn;

static void on_answer(weir_request_t *r)
{
    (void)r;
    answered++;
}

static void on_upstream(weir_request_t *r)
{
    (void)r;
    upstream_next++;
}

static void on_response(weir_request_t *r)
{
    (void)r;
    response_next++;
}

/* The head the proxy would send upstream for r serialises. */
static void check_upstream_head(weir_request_t *r)
{
    weir_str_t host = r->host_header;
    header_entry_t *e = headers_find(&r->headers, WEIR_STR("host"));
    if (e && e->value.data != r->host_header.data && e->value.len)
        host = e->value; /* a module's Host, as the proxy sends it */
    if (!host.len)
        host = WEIR_STR("upstream.test");
    size_t need = h1_request_size(r->method, r->path, r->query, host, &r->headers,
                                  H1_FRAMING_NONE, 0);
    char *out = malloc(need);
    FZ_CHECK(out != NULL, "malloc");
    ssize_t n = h1_serialize_request(out, need, r->method, r->path, r->query, host, &r->headers,
                                     H1_FRAMING_NONE, 0);
    FZ_CHECK(n == (ssize_t)need, "upstream request does not serialise (%zd): path '%s', host '%s'",
             n, fz_show(r->path), fz_show(host));
    free(out);
}

/* The response head that goes to the client for r serialises. */
static void check_response_head(weir_request_t *r)
{
    size_t need = h1_response_size(11, r->status, (weir_str_t){0}, &r->resp_headers,
                                   H1_FRAMING_LENGTH, 0, 1);
    char *out = malloc(need);
    FZ_CHECK(out != NULL, "malloc");
    ssize_t n = h1_serialize_response(out, need, 11, r->status, (weir_str_t){0}, &r->resp_headers,
                                      H1_FRAMING_LENGTH, 0, 1);
    FZ_CHECK(n == (ssize_t)need, "response head (status %d) does not serialise: %zd", r->status,
             n);
    free(out);
}

static void run_requests(const weir_conf_t *cf)
{
    request_on_answer = on_answer;
    for (size_t i = 0; i < sizeof(canned) / sizeof(canned[0]); i++) {
        weir_request_t *r = request_new(cf);
        FZ_CHECK(r != NULL, "request_new");
        size_t len = strlen(canned[i]);
        char *head = arena_strndup(r->arena, canned[i], len);
        h1_parser_t p;
        h1_request_t q;
        h1_parser_init(&p);
        FZ_CHECK(head && h1_parse_request(r->arena, &p, head, len, &q) == 0, "canned %zu", i);
        r->method = q.method;
        r->target = q.target;
        r->path = q.path;
        r->query = q.query;
        r->host = q.host;
        r->host_header = q.authority;
        r->version = q.version;
        r->headers = q.headers;
        r->keepalive = q.keepalive;
        r->has_body = q.framing != H1_FRAMING_NONE;
        r->request_length = len;
        r->listener = &cf->listeners[i % cf->nlisteners];
        r->conn = &fuzz_conn;
        r->id_bits[0] = 0x1122334455667788ull + i;
        r->id_bits[1] = 0x99aabbccddeeff00ull;
        r->start_wall_ms = 1700000000000ull + i;
        r->connection_id = i;
        r->connection_requests = 1;
        FZ_CHECK(request_normalize_path(r) == 0, "canned %zu path", i);

        answered = upstream_next = response_next = 0;
        confined = 1;
        request_run_phases(r, WEIR_PHASE_REQUEST, WEIR_PHASE_UPSTREAM_REQUEST, on_upstream);
        confined = 0;
        FZ_CHECK(answered + upstream_next == 1 && !r->suspended,
                 "request %zu: %d answers, %d continuations, suspended %d", i, answered,
                 upstream_next, r->suspended);
        if (upstream_next) {
            FZ_CHECK(r->upstream && r->peer >= 0 && (size_t)r->peer < r->upstream->npeers,
                     "request %zu goes upstream without a peer", i);
            FZ_CHECK(r->path.len > 0 && r->path.data[0] == '/', "request %zu path '%s'", i,
                     fz_show(r->path));
            check_upstream_head(r);
            r->status = r->upstream_status = 200;
            headers_push(r->arena, &r->resp_headers, WEIR_STR("X-Powered-By"), WEIR_STR("php"));
            headers_push(r->arena, &r->resp_headers, WEIR_STR("Server"), WEIR_STR("up"));
            r->body_bytes_sent = 3;
            confined = 1;
            request_run_phases(r, WEIR_PHASE_UPSTREAM_RESPONSE, WEIR_PHASE_UPSTREAM_RESPONSE,
                               on_response);
            confined = 0;
            /* an answer here replaces the upstream's */
            FZ_CHECK(response_next + answered == 1, "request %zu: response phase ended %d+%d",
                     i, response_next, answered);
            check_response_head(r);
        } else {
            FZ_CHECK(r->status >= 100 && r->status <= 599, "request %zu answered %d", i,
                     r->status);
            const struct phases *ph = cf->phases;
            confined = 1;
            for (size_t k = ph->start[WEIR_PHASE_ERROR]; k < ph->start[WEIR_PHASE_ERROR + 1]; k++)
                ph->entries[k].handler->fn(r);
            confined = 0;
            check_response_head(r);
        }
        confined = 1;
        request_run_log(r);
        confined = 0;
        request_free(r);
    }
}

/* ------------------------------------------------------------------ input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init_sa;
    if (!init_sa) {
        struct sockaddr_in *c = &fuzz_conn.peer.u.in4;
        c->sin_family = AF_INET;
        c->sin_port = htons(51000);
        c->sin_addr.s_addr = htonl(0xc0000201);
        fuzz_conn.peer.len = sizeof(*c);
        struct sockaddr_in *s = &fuzz_conn.local.u.in4;
        s->sin_family = AF_INET;
        s->sin_port = htons(8080);
        s->sin_addr.s_addr = htonl(0x7f000001);
        fuzz_conn.local.len = sizeof(*s);
        init_sa = 1;
    }
    write_file("weir.yaml", (const char *)data, size);
    int fds = count_fds();
    int maps = count_shared_maps();

    weir_conf_t *cf = load(NULL);
    if (cf) {
        check_conf(cf);
        /* a reload of the same text must work, carrying the shared zones */
        weir_conf_t *cf2 = load(cf);
        FZ_CHECK(cf2 != NULL, "an accepted config does not load again as a reload of itself");
        check_conf(cf2);
        conf_free(cf);
        run_requests(cf2);
        conf_free(cf2);
    }
    int maps_after = count_shared_maps();
    FZ_CHECK(maps_after == maps, "shared mappings: %d before the load, %d after", maps,
             maps_after);
    clean_scratch(1);
    int after = count_fds();
    if (after != fds)
        print_fds();
    FZ_CHECK(after == fds, "descriptors: %d before the load, %d after", fds, after);
    return 0;
}
