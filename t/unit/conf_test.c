/*
 * Config loader: value parsers, the core schema and its defaults, every error
 * form with its exact message, includes, and module directives through the
 * test module t/modules/conf_probe.so (found via WEIR_TEST_MODULES).
 *
 * Each config test runs in its own forked child, in a fresh temp directory
 * that it chdir()s into, so messages name "weir.yaml" exactly as a user who
 * runs `weir -t -c weir.yaml` would see them.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "arena.h"
#include "conf.h"
#include "conf_dump.h"
#include "weir_build.h"
#include "vars.h"
#include "weir_build.h"

/* Layouts of t/modules/conf_probe.c. */
struct probe_conf {
    int flag;
    long level;
    const char *label;
    long items;
    weir_template_t *tpl;
    uint64_t window;
    int done;
    int balancers;
    int answer;
    int report;
};

struct probe_listener {
    uint64_t buf;
};

struct probe_upstream {
    uint64_t timeout;
    long tries;
};

/* ------------------------------------------------------------- harness */

static char tmpdir[256];

static void enter_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "%s/weir-conf-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    ck_assert_int_eq(chdir(tmpdir), 0);
}

static void write_file(const char *name, const char *text)
{
    FILE *fp = fopen(name, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
}

static int get_host(weir_request_t *r, weir_str_t suffix, weir_str_t *out)
{
    (void)r;
    (void)suffix;
    *out = WEIR_STR("example");
    return 0;
}

/* The tests do not need the binary's variables; one is enough to compile
 * templates against. */
static int test_vars(weir_conf_t *cf)
{
    return weir_var_register(cf, "host", 0, get_host);
}

static const char *test_modules(void)
{
    const char *mods = getenv("WEIR_TEST_MODULES");
    return mods ? mods : "t/modules";
}

/* Loads weir.yaml (written from `yaml`) with stderr captured into errbuf,
 * with modules_dir as -M would give it (NULL: none). */
static weir_conf_t *load_dir(const char *yaml, const char *modules_dir, char *errbuf,
                             size_t errlen)
{
    conf_options_t opt = {
        .file = "weir.yaml",
        .modules_dir = modules_dir,
        .register_core_vars = test_vars,
        .pid_file = "weir.pid", /* as -p: the test's directory, not the system's run dir */
    };
    char errfile[] = "stderr-XXXXXX";
    int fd, saved;
    weir_conf_t *cf;
    ssize_t n;

    if (yaml)
        write_file("weir.yaml", yaml);
    fd = mkstemp(errfile);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    cf = conf_load(&opt);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    n = read(fd, errbuf, errlen - 1);
    errbuf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(errfile);
    return cf;
}

static weir_conf_t *load(const char *yaml, char *errbuf, size_t errlen)
{
    return load_dir(yaml, test_modules(), errbuf, errlen);
}

static weir_conf_t *load_ok(const char *yaml)
{
    char err[8192];
    weir_conf_t *cf = load(yaml, err, sizeof(err));
    ck_assert_msg(cf != NULL, "config failed to load:\n%s", err);
    ck_assert_str_eq(err, "");
    return cf;
}

static void expect_errors(const char *yaml, const char *expected)
{
    char err[8192];
    weir_conf_t *cf = load(yaml, err, sizeof(err));
    ck_assert_msg(cf == NULL, "config loaded but should fail with:\n%s", expected);
    ck_assert_str_eq(err, expected);
}

static const weir_module_t *probe_desc(const weir_conf_t *cf)
{
    for (size_t i = 0; i < cf->nmodules; i++)
        if (strcmp(cf->modules[i].desc->name, "conf_probe") == 0)
            return cf->modules[i].desc;
    ck_abort_msg("conf_probe not loaded");
    return NULL;
}

#define LISTENER "listeners: [{address: 127.0.0.1:8080}]\n"
#define PROBE "modules: [conf_probe]\n"

/* --------------------------------------------------------------- values */

static const struct {
    const char *text;
    int ok;
    uint64_t ms;
} durations[] = {
    {"250ms", 1, 250},   {"2s", 1, 2000},      {"1m", 1, 60000},   {"1h", 1, 3600000},
    {"1d", 1, 86400000}, {"5", 1, 5000},       {"0", 1, 0},        {"1m30s", 1, 90000},
    {"0ms", 1, 0},       {"", 0, 0},           {"fast", 0, 0},     {"-1s", 0, 0},
    {"1x", 0, 0},        {"ms", 0, 0},         {"1.5s", 0, 0},     {"2 s", 0, 0},
    {"1s5", 0, 0},       {"99999999999999999999s", 0, 0},
};

START_TEST(test_durations)
{
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        uint64_t v = 12345;
        int rc = conf_parse_duration_ms(durations[i].text, &v);
        ck_assert_msg((rc == 0) == durations[i].ok, "'%s': rc %d", durations[i].text, rc);
        if (durations[i].ok)
            ck_assert_msg(v == durations[i].ms, "'%s' -> %llu", durations[i].text,
                          (unsigned long long)v);
    }
}
END_TEST

/* Printed values are the largest exact unit and parse back to themselves. */
static const struct {
    uint64_t v;
    const char *text;
} printed_durations[] = {
    {0, "0s"},          {250, "250ms"},   {1500, "1500ms"},     {30000, "30s"},
    {90000, "90s"},     {60000, "1m"},    {3600000, "1h"},      {86400000, "1d"},
    {UINT64_MAX, "18446744073709551615ms"},
}, printed_sizes[] = {
    {0, "0"}, {512, "512"}, {16384, "16k"}, {1048576, "1m"}, {1536, "1536"},
    {1073741824, "1g"}, {3u << 30, "3g"},
};

START_TEST(test_printed_values)
{
    char buf[WEIR_DURATION_LEN];
    for (size_t i = 0; i < sizeof(printed_durations) / sizeof(printed_durations[0]); i++) {
        uint64_t back = 1;
        ck_assert_str_eq(weir_duration_text(printed_durations[i].v, buf),
                         printed_durations[i].text);
        ck_assert_int_eq(conf_parse_duration_ms(buf, &back), 0);
        ck_assert(back == printed_durations[i].v);
    }
    for (size_t i = 0; i < sizeof(printed_sizes) / sizeof(printed_sizes[0]); i++) {
        uint64_t back = 1;
        ck_assert_str_eq(conf_size_text(printed_sizes[i].v, buf), printed_sizes[i].text);
        ck_assert_int_eq(conf_parse_size(buf, &back), 0);
        ck_assert(back == printed_sizes[i].v);
    }
}
END_TEST

static const struct {
    const char *text;
    int ok;
    uint64_t bytes;
} sizes[] = {
    {"512", 1, 512},         {"16k", 1, 16384},  {"16K", 1, 16384}, {"1m", 1, 1048576},
    {"1g", 1, 1073741824},   {"0", 1, 0},        {"", 0, 0},        {"k", 0, 0},
    {"1t", 0, 0},            {"-1", 0, 0},       {"1kb", 0, 0},     {"1.5m", 0, 0},
    {"99999999999999999g", 0, 0},
};

START_TEST(test_sizes)
{
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t v = 12345;
        int rc = conf_parse_size(sizes[i].text, &v);
        ck_assert_msg((rc == 0) == sizes[i].ok, "'%s': rc %d", sizes[i].text, rc);
        if (sizes[i].ok)
            ck_assert_msg(v == sizes[i].bytes, "'%s' -> %llu", sizes[i].text,
                          (unsigned long long)v);
    }
}
END_TEST

static const struct {
    const char *text;
    int family; /* 0: must fail */
    unsigned port;
    const char *err; /* substring of the reason, for failures */
} addresses[] = {
    {"127.0.0.1:8080", AF_INET, 8080, NULL},
    {"0.0.0.0:80", AF_INET, 80, NULL},
    {"*:8080", AF_INET, 8080, NULL},
    {"[::1]:443", AF_INET6, 443, NULL},
    {"[::]:8080", AF_INET6, 8080, NULL},
    {"unix:/run/weir.sock", AF_UNIX, 0, NULL},
    {"localhost:9000", -1, 9000, NULL}, /* v4 or v6, whatever the resolver says */
    {"127.0.0.1", 0, 0, "missing port"},
    {"127.0.0.1:0", 0, 0, "bad port"},
    {"127.0.0.1:65536", 0, 0, "bad port"},
    {"127.0.0.1:http", 0, 0, "bad port"},
    {"::1:80", 0, 0, "brackets"},
    {"[::1]80", 0, 0, "missing port"},
    {"[::1:80", 0, 0, "missing ']'"},
    {"[zz]:80", 0, 0, "bad IPv6"},
    {"unix:", 0, 0, "empty unix"},
    {":80", 0, 0, "missing host"},
    {"", 0, 0, "empty"},
    {"no-such-host.invalid:80", 0, 0, "cannot resolve"},
};

START_TEST(test_addresses)
{
    for (size_t i = 0; i < sizeof(addresses) / sizeof(addresses[0]); i++) {
        sockaddr_any_t sa;
        char err[256] = "";
        int rc = conf_parse_address(addresses[i].text, &sa, err, sizeof(err));
        if (!addresses[i].family) {
            ck_assert_msg(rc == -1, "'%s' parsed", addresses[i].text);
            ck_assert_msg(strstr(err, addresses[i].err), "'%s': '%s'", addresses[i].text, err);
            continue;
        }
        ck_assert_msg(rc == 0, "'%s': %s", addresses[i].text, err);
        int fam = sa.ss.ss_family;
        if (addresses[i].family > 0)
            ck_assert_int_eq(fam, addresses[i].family);
        if (fam == AF_INET) {
            ck_assert_int_eq(ntohs(((struct sockaddr_in *)&sa.ss)->sin_port),
                             addresses[i].port);
            ck_assert_int_eq(sa.len, sizeof(struct sockaddr_in));
        } else if (fam == AF_INET6) {
            ck_assert_int_eq(ntohs(((struct sockaddr_in6 *)&sa.ss)->sin6_port),
                             addresses[i].port);
            ck_assert_int_eq(sa.len, sizeof(struct sockaddr_in6));
        } else {
            ck_assert_int_eq(fam, AF_UNIX);
            ck_assert_str_eq(((struct sockaddr_un *)&sa.ss)->sun_path, "/run/weir.sock");
        }
    }
}
END_TEST

START_TEST(test_suggest)
{
    static const char *const keys[] = {"name", "upstream", "host", "path", "rewrite",
                                       "request_headers"};
    static const struct {
        const char *word, *want;
    } cases[] = {
        {"rewite", "rewrite"}, {"hsot", "host"},       {"upstram", "upstream"},
        {"nmae", "name"},      {"Path", "path"},       {"request_header", "request_headers"},
        {"xyz", NULL},         {"methods", NULL},      {"pathname", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = conf_suggest(cases[i].word, keys, 6);
        if (cases[i].want)
            ck_assert_msg(got && strcmp(got, cases[i].want) == 0, "%s -> %s", cases[i].word,
                          got ? got : "(none)");
        else
            ck_assert_msg(!got, "%s -> %s", cases[i].word, got);
    }
}
END_TEST

/* ----------------------------------------------------------- core schema */

START_TEST(test_minimal_defaults)
{
    enter_tmpdir();
    weir_conf_t *cf = load_ok(LISTENER);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert_uint_eq(cf->workers, (unsigned)(cpus > 0 ? cpus : 1));
    /* the system's run directory, not the config's (the build's rundir) */
    ck_assert_str_eq(cf->pid_file, WEIR_PID_FILE);
    ck_assert_str_eq(cf->error_log, "stderr");
    ck_assert_int_eq(cf->error_log_level, WEIR_LOG_INFO);
    ck_assert_str_eq(cf->modules_dir, getenv("WEIR_TEST_MODULES"));
    ck_assert_ptr_null(cf->error_page);
    ck_assert_uint_eq(cf->limits.client_header_timeout, 10000);
    ck_assert_uint_eq(cf->limits.client_body_timeout, 60000);
    ck_assert_uint_eq(cf->limits.keepalive_timeout, 75000);
    ck_assert_uint_eq(cf->limits.send_timeout, 60000);
    ck_assert_uint_eq(cf->limits.keepalive_requests, 10000);
    ck_assert_uint_eq(cf->limits.max_header_size, 16384);
    ck_assert_uint_eq(cf->limits.max_body_size, 0);
    ck_assert_uint_eq(cf->limits.max_connections, 65536);
    ck_assert_uint_eq(cf->limits.shutdown_timeout, 30000);
    ck_assert_uint_eq(cf->nlisteners, 1);
    ck_assert_str_eq(cf->listeners[0].address, "127.0.0.1:8080");
    ck_assert_str_eq(cf->listeners[0].name, "127.0.0.1:8080");
    ck_assert_int_eq(cf->listeners[0].backlog, 4096);
    ck_assert_int_eq(cf->listeners[0].http2, 0);
    ck_assert_int_eq(cf->listeners[0].addr.ss.ss_family, AF_INET);
    ck_assert_uint_eq(cf->listeners[0].limits.keepalive_timeout, 75000);
    ck_assert_ptr_eq(cf->listeners[0].conf, cf);
    ck_assert_uint_eq(cf->nmodules, 0);
    ck_assert_uint_eq(cf->nupstreams, 0);
    ck_assert_uint_eq(cf->nroutes, 0);
    ck_assert_uint_eq(cf->nerrors, 0);
    conf_free(cf);
}
END_TEST

static const char full_yaml[] =
    "workers: 3\n"
    "pid_file: run/weir.pid\n"
    "error_log: {path: logs/error.log, level: warn}\n"
    "modules:\n"
    "  - conf_probe\n"
    "limits:\n"
    "  client_header_timeout: 5s\n"
    "  keepalive_timeout: 1m\n"
    "  send_timeout: 250ms\n"
    "  keepalive_requests: 100\n"
    "  max_header_size: 8k\n"
    "  max_body_size: 1m\n"
    "  max_connections: 1000\n"
    "listeners:\n"
    "  - name: main\n"
    "    address: 0.0.0.0:8080\n"
    "    backlog: 128\n"
    "    limits: {keepalive_timeout: 5s}\n"
    "  - address: '[::1]:8443'\n"
    "    http2: true\n"
    "  - address: unix:/tmp/weir-test.sock\n"
    "upstreams:\n"
    "  api:\n"
    "    servers:\n"
    "      - address: 127.0.0.1:9001\n"
    "        weight: 5\n"
    "      - 127.0.0.1:9002\n"
    "      - {address: '[::1]:9003', backup: yes}\n"
    "  web:\n"
    "    balancer: probe\n"
    "    servers: [localhost:9100]\n"
    "    keepalive: 0\n"
    "    connect_timeout: 500ms\n"
    "    read_timeout: 30s\n"
    "    write_timeout: 31s\n"
    "    idle_timeout: 2m\n"
    "    retries: 3\n"
    "    max_fails: 0\n"
    "    fail_timeout: 1h\n"
    "routes:\n"
    "  - name: api\n"
    "    upstream: api\n"
    "  - upstream: web\n"
    "  - name: nothing\n"
    "    probe_answer: true\n"
    "error_page: error.html\n";

START_TEST(test_full_config)
{
    enter_tmpdir();
    write_file("error.html", "<h1>{{status}} {{reason}}</h1>\n");
    /* the loader opens the error log and checks the pid file's directory */
    ck_assert_int_eq(mkdir("run", 0755), 0);
    ck_assert_int_eq(mkdir("logs", 0755), 0);
    weir_conf_t *cf = load_ok(full_yaml);
    const char *dir = weir_conf_dir(cf);
    char want[512];

    ck_assert_uint_eq(cf->workers, 3);
    snprintf(want, sizeof(want), "%s/run/weir.pid", dir);
    ck_assert_str_eq(cf->pid_file, want);
    snprintf(want, sizeof(want), "%s/logs/error.log", dir);
    ck_assert_str_eq(cf->error_log, want);
    ck_assert_int_eq(cf->error_log_level, WEIR_LOG_WARN);
    ck_assert_str_eq(cf->error_page, "<h1>{{status}} {{reason}}</h1>\n");

    ck_assert_uint_eq(cf->limits.client_header_timeout, 5000);
    ck_assert_uint_eq(cf->limits.client_body_timeout, 60000); /* default kept */
    ck_assert_uint_eq(cf->limits.keepalive_timeout, 60000);
    ck_assert_uint_eq(cf->limits.send_timeout, 250);
    ck_assert_uint_eq(cf->limits.keepalive_requests, 100);
    ck_assert_uint_eq(cf->limits.max_header_size, 8192);
    ck_assert_uint_eq(cf->limits.max_body_size, 1048576);
    ck_assert_uint_eq(cf->limits.max_connections, 1000);

    ck_assert_uint_eq(cf->nlisteners, 3);
    weir_listener_t *l = &cf->listeners[0];
    ck_assert_str_eq(l->name, "main");
    ck_assert_int_eq(l->backlog, 128);
    ck_assert_uint_eq(l->limits.keepalive_timeout, 5000);   /* overridden */
    ck_assert_uint_eq(l->limits.client_header_timeout, 5000); /* from top level */
    ck_assert_uint_eq(l->limits.max_connections, 1000);
    ck_assert_uint_eq(l->index, 0);
    ck_assert_uint_eq(l->node->line, 15);
    l = &cf->listeners[1];
    ck_assert_int_eq(l->http2, 1);
    ck_assert_int_eq(l->addr.ss.ss_family, AF_INET6);
    ck_assert_uint_eq(l->limits.keepalive_timeout, 60000);
    ck_assert_int_eq(cf->listeners[2].addr.ss.ss_family, AF_UNIX);

    ck_assert_uint_eq(weir_conf_upstream_count(cf), 2);
    weir_upstream_t *u = weir_conf_upstream(cf, 0);
    ck_assert_str_eq(weir_upstream_name(u), "api");
    ck_assert_str_eq(u->balancer_name, "roundrobin");
    ck_assert_ptr_nonnull(u->balancer);
    ck_assert_ptr_nonnull(u->balancer_state);
    ck_assert_uint_eq(u->npeers, 3);
    ck_assert_str_eq(u->peers[0].address, "127.0.0.1:9001");
    ck_assert_uint_eq(u->peers[0].weight, 5);
    ck_assert_int_eq(u->peers[0].backup, 0);
    ck_assert_str_eq(u->peers[1].address, "127.0.0.1:9002");
    ck_assert_uint_eq(u->peers[1].weight, 1);
    ck_assert_int_eq(u->peers[2].backup, 1);
    ck_assert_int_eq(u->peers[2].addr.ss.ss_family, AF_INET6);
    ck_assert_uint_eq(u->keepalive, 128);
    ck_assert_uint_eq(u->connect_timeout, 3000);
    ck_assert_uint_eq(u->read_timeout, 60000);
    ck_assert_uint_eq(u->write_timeout, 60000);
    ck_assert_uint_eq(u->idle_timeout, 60000);
    ck_assert_int_eq(u->retries, 1);
    ck_assert_int_eq(u->max_fails, 1);
    ck_assert_uint_eq(u->fail_timeout, 10000);
    ck_assert_ptr_eq(weir_upstream_node(u), u->node);
    u = weir_conf_upstream(cf, 1);
    ck_assert_str_eq(u->balancer_name, "probe");
    ck_assert_str_eq(u->balancer->name, "probe");
    ck_assert_uint_eq(u->keepalive, 0);
    ck_assert_uint_eq(u->connect_timeout, 500);
    ck_assert_uint_eq(u->read_timeout, 30000);
    ck_assert_uint_eq(u->write_timeout, 31000);
    ck_assert_uint_eq(u->idle_timeout, 120000);
    ck_assert_int_eq(u->retries, 3);
    ck_assert_int_eq(u->max_fails, 0);
    ck_assert_uint_eq(u->fail_timeout, 3600000);
    ck_assert_uint_eq(u->index, 1);
    ck_assert_ptr_null(weir_conf_upstream(cf, 2));

    ck_assert_uint_eq(weir_conf_route_count(cf), 3);
    weir_route_t *rt = weir_conf_route(cf, 0);
    ck_assert_str_eq(weir_route_name(rt), "api");
    ck_assert_ptr_eq(weir_route_upstream(rt), weir_conf_upstream(cf, 0));
    rt = weir_conf_route(cf, 1);
    ck_assert_str_eq(weir_route_name(rt), "route2");
    ck_assert_uint_eq(weir_route_index(rt), 1);
    ck_assert_ptr_eq(weir_route_upstream(rt), weir_conf_upstream(cf, 1));
    ck_assert_uint_eq(weir_node_line(weir_route_node(rt)), 43);
    ck_assert_uint_eq(weir_node_column(weir_route_node(rt)), 5);
    ck_assert_ptr_null(weir_route_upstream(weir_conf_route(cf, 2)));

    /* the probe's balancer was initialised once per upstream */
    struct probe_conf *mc = weir_main_conf(cf, probe_desc(cf));
    ck_assert_int_eq(mc->balancers, 2);
    conf_free(cf);
}
END_TEST

START_TEST(test_node_api)
{
    enter_tmpdir();
    weir_conf_t *cf = load_ok(LISTENER "upstreams: {}\n"
                                       "routes: []\n");
    const weir_node_t *root = cf->root;
    ck_assert_int_eq(weir_node_type(root), WEIR_NODE_MAPPING);
    ck_assert_uint_eq(weir_node_count(root), 3);
    ck_assert_str_eq(weir_node_scalar(weir_node_key(root, 0)), "listeners");
    ck_assert_str_eq(weir_node_file(root), "weir.yaml");
    const weir_node_t *ls = weir_node_get(root, "listeners");
    ck_assert_int_eq(weir_node_type(ls), WEIR_NODE_SEQUENCE);
    const weir_node_t *addr = weir_node_get(weir_node_child(ls, 0), "address");
    ck_assert_str_eq(weir_node_scalar(addr), "127.0.0.1:8080");
    ck_assert_uint_eq(weir_node_line(addr), 1);
    ck_assert_uint_eq(weir_node_column(addr), 23);
    ck_assert_ptr_null(weir_node_get(root, "nope"));
    ck_assert_ptr_null(weir_node_child(root, 5));
    ck_assert_ptr_null(weir_node_scalar(ls));
    ck_assert_ptr_null(weir_node_key(ls, 0));

    char *s = weir_conf_strdup(cf, "abc");
    ck_assert_str_eq(s, "abc");
    long *z = weir_conf_alloc(cf, 64);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(z[i], 0);

    /* typed readers on synthetic nodes */
    weir_node_t n = {.type = WEIR_NODE_SCALAR, .file = "x.yaml", .line = 3, .column = 7,
                     .scalar = "yes", .key = "k"};
    int b = 0;
    long v = 0;
    uint64_t u = 0;
    ck_assert_int_eq(weir_node_bool(cf, &n, &b), 0);
    ck_assert_int_eq(b, 1);
    n.scalar = "Off";
    ck_assert_int_eq(weir_node_bool(cf, &n, &b), 0);
    ck_assert_int_eq(b, 0);
    n.scalar = "42";
    ck_assert_int_eq(weir_node_int(cf, &n, 0, 100, &v), 0);
    ck_assert_int_eq(v, 42);
    n.scalar = "2m";
    ck_assert_int_eq(weir_node_duration_ms(cf, &n, &u), 0);
    ck_assert_uint_eq(u, 120000);
    ck_assert_int_eq(weir_node_size(cf, &n, &u), 0);
    ck_assert_uint_eq(u, 2097152);
    ck_assert_uint_eq(cf->nerrors, 0);
    ck_assert_int_eq(weir_node_int(cf, &n, 0, 100, &v), -1);
    ck_assert_int_eq(weir_conf_error(cf, &n, "custom %d", 7), -1);
    ck_assert_uint_eq(cf->nerrors, 2);
    ck_assert_str_eq(cf->errors->msg, "x.yaml:3:7: invalid integer '2m' for 'k' "
                                      "(expected a whole number)");
    ck_assert_str_eq(cf->errors->next->msg, "x.yaml:3:7: custom 7");
    conf_free(cf);
}
END_TEST

/* ---------------------------------------------------------- error forms */

/* A config and exactly what loading it prints. */
struct error_case {
    const char *name;
    const char *yaml;
    const char *errors;
};

static const struct error_case error_cases[] = {
    {"unknown key with did-you-mean",
     LISTENER
     "routes:\n"
     "  - name: api\n"
     "    rewite: \"^/v1/(.*)$ /$1\"\n",
     /* the misspelt key answers nothing either: both in one run */
     "weir.yaml:3:5: route 'api' has no upstream and no module answers it: add `upstream: "
     "NAME`, a `redirect:` (module rewrite) or `metrics: true` (module metrics)\n"
     "weir.yaml:4:5: unknown key 'rewite' in route (did you mean 'rewrite'?)\n"},
    {"unknown key without suggestion",
     LISTENER "frobnicate: 1\n",
     "weir.yaml:2:1: unknown key 'frobnicate' in top level\n"},
    {"unknown top-level key near a core key",
     LISTENER "worker: 4\n",
     "weir.yaml:2:1: unknown key 'worker' in top level (did you mean 'workers'?)\n"},
    {"unknown key in limits",
     LISTENER "limits: {keepalive_timout: 5s}\n",
     "weir.yaml:2:10: unknown key 'keepalive_timout' in limits (did you mean "
     "'keepalive_timeout'?)\n"},
    {"unknown key in upstream",
     LISTENER PROBE
     "upstreams:\n"
     "  api:\n"
     "    servers: [127.0.0.1:1]\n"
     "    conect_timeout: 1s\n",
     "weir.yaml:6:5: unknown key 'conect_timeout' in upstream (did you mean "
     "'connect_timeout'?)\n"},
    {"unknown key in a listener suggests a module key",
     PROBE "listeners: [{address: 127.0.0.1:8080, probe_bf: 1k}]\n",
     "weir.yaml:2:39: unknown key 'probe_bf' in listener (did you mean 'probe_buf'?)\n"},
    {"key of a module that is not loaded",
     LISTENER PROBE
     "upstreams:\n"
     "  api:\n"
     "    servers: [127.0.0.1:1]\n"
     "    health_check: {path: /}\n",
     "weir.yaml:6:5: 'health_check' is provided by module 'healthcheck', which is not "
     "loaded\n"},
    {"module key in the wrong scope",
     LISTENER PROBE "probe_label: x\n",
     "weir.yaml:3:1: 'probe_label' is not allowed in top level (module 'conf_probe' accepts "
     "it in: route)\n"},
    {"invalid duration",
     LISTENER PROBE
     "upstreams:\n"
     "  api: {servers: [127.0.0.1:1], connect_timeout: fast}\n",
     "weir.yaml:4:50: invalid duration 'fast' for 'connect_timeout' (expected a number with "
     "ms, s, m, h or d, e.g. 250ms, 2s)\n"},
    {"invalid size",
     LISTENER "limits:\n  max_header_size: lots\n",
     "weir.yaml:3:20: invalid size 'lots' for 'max_header_size' (expected a number of bytes "
     "with optional k, m or g, e.g. 512, 16k, 1m)\n"},
    {"invalid boolean",
     "listeners: [{address: 127.0.0.1:8080, http2: maybe}]\n",
     "weir.yaml:1:46: invalid boolean 'maybe' for 'http2' (expected true or false)\n"},
    {"invalid integer",
     LISTENER "limits: {keepalive_requests: many}\n",
     "weir.yaml:2:30: invalid integer 'many' for 'keepalive_requests' (expected a whole "
     "number)\n"},
    {"mapping where a scalar belongs",
     LISTENER "limits: {send_timeout: {a: 1}}\n",
     "weir.yaml:2:24: expected a duration for 'send_timeout', got a mapping (expected a "
     "number with ms, s, m, h or d, e.g. 250ms, 2s)\n"},
    {"list where a mapping belongs",
     LISTENER "limits: [1, 2]\n",
     "weir.yaml:2:9: expected a mapping for 'limits', got a list\n"},
    {"out-of-range weight",
     LISTENER PROBE
     "upstreams:\n"
     "  api:\n"
     "    servers:\n"
     "      - {address: 127.0.0.1:1, weight: 5000}\n",
     "weir.yaml:6:40: value 5000 for 'weight' is out of range (expected 1..1000)\n"},
    {"out-of-range module int",
     LISTENER PROBE "probe_level: 11\n",
     "weir.yaml:3:14: value 11 for 'probe_level' is out of range (expected 1..10)\n"},
    {"bad workers",
     LISTENER "workers: lots\n",
     "weir.yaml:2:10: invalid value 'lots' for 'workers' (expected auto or 1..1024)\n"},
    {"bad log level",
     LISTENER "error_log: {level: loud}\n",
     "weir.yaml:2:20: invalid level 'loud' for 'level' (expected debug, info, notice, warn "
     "or error)\n"},
    {"duplicate key",
     LISTENER "workers: 2\nworkers: 3\n",
     "weir.yaml:3:1: duplicate key 'workers' (first at line 2, column 1)\n"},
    {"missing listener address",
     "listeners:\n  - name: main\n",
     "weir.yaml:2:5: missing required key 'address' in listener\n"},
    {"missing servers",
     LISTENER PROBE "upstreams:\n  api: {keepalive: 4}\n",
     "weir.yaml:4:3: missing required key 'servers' in upstream 'api'\n"},
    {"empty servers",
     LISTENER PROBE "upstreams:\n  api: {servers: []}\n",
     "weir.yaml:4:18: 'servers' of upstream 'api' is empty\n"},
    {"no listeners",
     "workers: 1\n",
     "weir.yaml: no listeners configured\n"},
    {"bad listener address",
     "listeners: [{address: 127.0.0.1}]\n",
     "weir.yaml:1:23: invalid address '127.0.0.1' (missing port; expected host:port, "
     "[v6]:port or unix:/path)\n"},
    {"unknown upstream in route",
     LISTENER PROBE
     "upstreams:\n"
     "  api: {servers: [127.0.0.1:1]}\n"
     "routes:\n"
     "  - upstream: apii\n",
     "weir.yaml:6:15: unknown upstream 'apii' in route 'route1' (did you mean 'api'?)\n"},
    {"balancer module not loaded",
     LISTENER
     "upstreams:\n"
     "  api: {servers: [127.0.0.1:1], balancer: ketama}\n",
     "weir.yaml:3:43: balancer 'ketama' is provided by module 'lb_ketama', which is not "
     "loaded\n"},
    {"default balancer not loaded",
     LISTENER
     "upstreams:\n"
     "  api: {servers: [127.0.0.1:1]}\n",
     "weir.yaml:3:3: balancer 'roundrobin' is provided by module 'lb_roundrobin', which is "
     "not loaded\n"},
    {"unknown balancer",
     LISTENER PROBE
     "upstreams:\n"
     "  api: {servers: [127.0.0.1:1], balancer: magic}\n",
     "weir.yaml:4:43: unknown balancer 'magic' (loaded: roundrobin, probe)\n"},
    {"YAML syntax error",
     LISTENER "routes: [\n  - a: b\n",
     "weir.yaml:3:3: YAML syntax error: did not find expected node content\n"},
    {"top level not a mapping",
     "- a\n- b\n",
     "weir.yaml:1:1: the top level must be a mapping of keys, not a list\n"},
    {"duplicate module",
     LISTENER "modules:\n  - conf_probe\n  - conf_probe\n",
     "weir.yaml:4:5: module 'conf_probe' is listed twice (first at weir.yaml:3:5)\n"},
    {"custom parser error",
     LISTENER PROBE "probe_items: 3\n",
     "weir.yaml:3:14: expected a list for 'probe_items'\n"},
    {"duplicate route name",
     LISTENER PROBE "routes:\n  - name: a\n    probe_answer: true\n  - name: a\n"
     "    probe_answer: true\n",
     "weir.yaml:6:5: duplicate route name 'a' (first at line 4)\n"},
    {"multiple errors in one run, in document order",
     "workers: 0\n"
     "limits:\n"
     "  max_body_size: huge\n"
     "listeners:\n"
     "  - address: 127.0.0.1:8080\n"
     "    bakclog: 10\n"
     "upstreams:\n"
     "  api:\n"
     "    servers: [127.0.0.1:1]\n"
     "    retries: -1\n"
     "routes:\n"
     "  - path: /\n"
     "    upstream: nope\n",
     "weir.yaml:1:10: value 0 for 'workers' is out of range (expected 1..1024)\n"
     "weir.yaml:3:18: invalid size 'huge' for 'max_body_size' (expected a number of bytes "
     "with optional k, m or g, e.g. 512, 16k, 1m)\n"
     "weir.yaml:6:5: unknown key 'bakclog' in listener (did you mean 'backlog'?)\n"
     "weir.yaml:8:3: balancer 'roundrobin' is provided by module 'lb_roundrobin', which is "
     "not loaded\n"
     "weir.yaml:10:14: value -1 for 'retries' is out of range (expected 0..100)\n"
     "weir.yaml:12:5: 'path' is provided by module 'router', which is not loaded\n"
     "weir.yaml:13:15: unknown upstream 'nope' in route 'route1'\n"},
};

/* One run reports every mistake, each at its own position, in file order,
 * and nothing that is only a consequence of another one. */
static const struct error_case one_run_cases[] = {
    {"every unknown variable of a template, each at its column (double quotes)",
     LISTENER PROBE
     "routes:\n"
     "  - probe_tpl: \"$nosuch and ${other} for $host\"\n"
     "    probe_answer: true\n",
     "weir.yaml:4:17: unknown variable '$nosuch' in '$nosuch and ${other} for $host'\n"
     "weir.yaml:4:29: unknown variable '$other' in '$nosuch and ${other} for $host'\n"},
    {"a plain scalar: columns from its first character",
     LISTENER PROBE
     "routes:\n"
     "  - probe_tpl: x $a $hots\n"
     "    probe_answer: true\n",
     "weir.yaml:4:18: unknown variable '$a' in 'x $a $hots'\n"
     "weir.yaml:4:21: unknown variable '$hots' in 'x $a $hots' (did you mean '$host'?)\n"},
    {"single quotes with a doubled quote: the scalar's position",
     LISTENER PROBE
     "routes:\n"
     "  - probe_tpl: 'it''s $a'\n"
     "    probe_answer: true\n",
     "weir.yaml:4:16: unknown variable '$a' in 'it's $a'\n"},
    {"a block scalar: the scalar's position, and the newline quoted as an escape",
     LISTENER PROBE
     "routes:\n"
     "  - probe_tpl: |\n"
     "      $a\n"
     "      $b\n"
     "    probe_answer: true\n",
     "weir.yaml:4:16: unknown variable '$a' in '$a\\n$b\\n'\n"
     "weir.yaml:4:16: unknown variable '$b' in '$a\\n$b\\n'\n"},
    {"template syntax errors do not stop the rest",
     LISTENER PROBE
     "routes:\n"
     "  - probe_tpl: \"$ ${x-y} ${} $zz\"\n"
     "    probe_answer: true\n",
     "weir.yaml:4:17: '$' at offset 0 of '$ ${x-y} ${} $zz' is not followed by a variable "
     "name; write '$$' for a literal '$'\n"
     "weir.yaml:4:19: '${x-y}' in '$ ${x-y} ${} $zz' is not a variable name (letters, "
     "digits and '_')\n"
     "weir.yaml:4:26: empty '${}' in '$ ${x-y} ${} $zz'\n"
     "weir.yaml:4:30: unknown variable '$zz' in '$ ${x-y} ${} $zz'\n"},
    {"a block scalar's value is quoted with its newline escaped",
     LISTENER
     "limits:\n"
     "  send_timeout: |\n"
     "    5s\n",
     "weir.yaml:3:17: invalid duration '5s\\n' for 'send_timeout' (expected a number with ms, "
     "s, m, h or d, e.g. 250ms, 2s)\n"},
    {"a route naming a refused upstream: no unknown upstream on top",
     LISTENER PROBE
     "upstreams:\n"
     "  api: [127.0.0.1:1]\n"
     "routes:\n"
     "  - upstream: api\n"
     "  - upstream: apj\n",
     "weir.yaml:4:8: upstream 'api' must be a mapping, got a list\n"
     "weir.yaml:7:15: unknown upstream 'apj' in route 'route2' (did you mean 'api'?)\n"},
    {"upstreams refused as a whole: routes say nothing",
     LISTENER PROBE
     "upstreams: [api]\n"
     "routes:\n"
     "  - upstream: api\n",
     "weir.yaml:3:12: expected a mapping for 'upstreams', got a list\n"},
    {"a refused balancer value is not resolved again",
     LISTENER
     "upstreams:\n"
     "  api: {servers: [127.0.0.1:1], balancer: [a]}\n",
     "weir.yaml:3:43: expected a string for 'balancer', got a list\n"},
    {"listeners refused: no 'no listeners configured'",
     "listeners: {address: 127.0.0.1:8080}\n",
     "weir.yaml:1:12: expected a list for 'listeners', got a mapping\n"},
    {"a listener entry refused: no 'no listeners configured'",
     "listeners: [127.0.0.1:8080]\n",
     "weir.yaml:1:13: each entry of 'listeners' must be a mapping, got a scalar\n"},
    {"conf_done runs on a config with errors and sees defaults for refused values",
     LISTENER PROBE
     "probe_report: on\n"
     "probe_level: 11\n"
     "probe_window: soon\n"
     "routes:\n"
     "  - probe_level: 0\n"
     "  - probe_level: 7\n"
     "  - {}\n",
     "weir.yaml:4:14: value 11 for 'probe_level' is out of range (expected 1..10)\n"
     "weir.yaml:5:15: invalid duration 'soon' for 'probe_window' (expected a number with ms, "
     "s, m, h or d, e.g. 250ms, 2s)\n"
     "weir.yaml:7:18: value 0 for 'probe_level' is out of range (expected 1..10)\n"
     "weir.yaml: conf_probe saw level 3, window 60000, routes: 3 7 3\n"},
    {"a module of an older minor: conf_done on an error-free config",
     LISTENER "modules: [done_old]\n",
     "weir.yaml: done_old: conf_done ran\n"},
    {"a module of an older minor: no conf_done on a config with errors",
     LISTENER "modules: [done_old]\nworker: 1\n",
     "weir.yaml:3:1: unknown key 'worker' in top level (did you mean 'workers'?)\n"},
    {"no conf_done for a module whose conf_init failed",
     LISTENER "modules: [init_fails]\n",
     "weir.yaml: init_fails: conf_init failed\n"},
};

/* Every case runs, so one run shows every mismatch. */
static int failing_cases(const struct error_case *cases, size_t n)
{
    int bad = 0;

    enter_tmpdir();
    for (size_t i = 0; i < n; i++) {
        char err[8192];
        weir_conf_t *cf = load(cases[i].yaml, err, sizeof(err));
        if (cf == NULL && strcmp(err, cases[i].errors) == 0)
            continue;
        fprintf(stderr, "%s:\n got: %s want: %s\n", cases[i].name, cf ? "(loaded)\n" : err,
                cases[i].errors);
        bad++;
    }
    return bad;
}

START_TEST(test_one_run_reports_all)
{
    ck_assert_int_eq(failing_cases(one_run_cases, sizeof(one_run_cases) / sizeof(one_run_cases[0])),
                     0);
}
END_TEST

/* A message is one line whatever the value it quotes holds. */
START_TEST(test_message_escapes)
{
    weir_conf_t c = {.file = "weir.yaml"};
    struct weir_node at = {.type = WEIR_NODE_SCALAR, .file = "weir.yaml", .line = 2, .column = 7};
    c.arena = arena_new(4096, 0);
    ck_assert_ptr_nonnull(c.arena);
    c.errors_tail = &c.errors;
    ck_assert_int_eq(weir_conf_error(&c, &at, "bad '%s'", "a\tb\r\nc\x01\x7f\\d\xc3\xa9"), -1);
    ck_assert_str_eq(c.errors->msg, "weir.yaml:2:7: bad 'a\\tb\\r\\nc\\x01\\x7f\\d\xc3\xa9'");
    arena_free(c.arena);
}
END_TEST

/* Errors read like a compiler's whatever order the stages found them in. */
START_TEST(test_error_order)
{
    weir_conf_t c = {.file = "weir.yaml"};
    struct weir_node at[] = {
        {.file = "inc.yaml", .line = 4, .column = 3},
        {.file = "weir.yaml", .line = 9, .column = 5},
        {.file = "weir.yaml", .line = 2, .column = 7},
        {.file = "weir.yaml", .line = 9, .column = 1},
        {.file = "inc.yaml", .line = 1, .column = 1},
        {.file = "weir.yaml", .line = 9, .column = 5},
    };
    static const char *const want[] = {
        "inc.yaml:1:1: e4", "inc.yaml:4:3: e0", "weir.yaml:2:7: e2", "weir.yaml:9:1: e3",
        "weir.yaml:9:5: e1", "weir.yaml:9:5: e5", "weir.yaml: first without a position",
        "weir.yaml: second without a position",
    };
    size_t i = 0;
    c.arena = arena_new(4096, 0);
    ck_assert_ptr_nonnull(c.arena);
    c.errors_tail = &c.errors;
    weir_conf_error(&c, NULL, "first without a position");
    for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
        weir_conf_error(&c, &at[k], "e%zu", k);
        if (k == 2)
            weir_conf_error(&c, NULL, "second without a position");
    }
    for (const conf_error_t *e = c.errors; e; e = e->next, i++) {
        ck_assert_uint_lt(i, sizeof(want) / sizeof(want[0]));
        ck_assert_str_eq(e->msg, want[i]);
    }
    ck_assert_uint_eq(i, sizeof(want) / sizeof(want[0]));
    arena_free(c.arena);
}
END_TEST

START_TEST(test_error_forms)
{
    ck_assert_int_eq(failing_cases(error_cases, sizeof(error_cases) / sizeof(error_cases[0])), 0);
}
END_TEST

START_TEST(test_unreadable_file)
{
    enter_tmpdir();
    unlink("weir.yaml");
    expect_errors(NULL, "weir.yaml: cannot open: No such file or directory\n");
}
END_TEST

START_TEST(test_error_page_missing)
{
    enter_tmpdir();
    expect_errors(LISTENER "error_page: nope.html\n",
                  "weir.yaml:2:13: cannot read error_page 'nope.html': No such file or "
                  "directory\n");
}
END_TEST

START_TEST(test_include)
{
    enter_tmpdir();
    ck_assert_int_eq(mkdir("conf.d", 0755), 0);
    write_file("conf.d/listen.yaml", LISTENER "include: more.yaml\n");
    write_file("conf.d/more.yaml", "workers: 2\n");
    write_file("conf.d/limits.yaml", "limits: {max_body_size: 2k}\n");
    weir_conf_t *cf = load_ok("include: [conf.d/listen.yaml, conf.d/limits.yaml]\n");
    ck_assert_uint_eq(cf->nlisteners, 1);
    ck_assert_str_eq(cf->listeners[0].node->file, "conf.d/listen.yaml");
    ck_assert_uint_eq(cf->workers, 2);
    ck_assert_uint_eq(cf->limits.max_body_size, 2048);
    ck_assert_ptr_null(weir_node_get(cf->root, "include"));
    conf_free(cf);

    /* a key in both files, an unknown key in the included one, a missing file */
    write_file("conf.d/dup.yaml", "workers: 4\nwokers: 1\n");
    expect_errors(LISTENER "workers: 2\ninclude: [conf.d/dup.yaml, missing.yaml]\n",
                  "conf.d/dup.yaml:1:1: duplicate key 'workers' (also at weir.yaml:2:1)\n"
                  "weir.yaml:3:28: cannot open include 'missing.yaml': No such file or "
                  "directory\n"
                  "conf.d/dup.yaml:2:1: unknown key 'wokers' in top level (did you mean "
                  "'workers'?)\n");

    /* a file including itself stops at the nesting limit */
    write_file("loop.yaml", "include: loop.yaml\n");
    char err[8192];
    ck_assert_ptr_null(load(LISTENER "include: loop.yaml\n", err, sizeof(err)));
    ck_assert_msg(strstr(err, "include nested more than 8 deep"), "%s", err);
}
END_TEST

/* ---------------------------------------------------- module directives */

START_TEST(test_module_defaults)
{
    enter_tmpdir();
    weir_conf_t *cf = load_ok(PROBE LISTENER
                              "upstreams: {api: {servers: [127.0.0.1:1]}}\n"
                              "routes: [{upstream: api}]\n");
    const weir_module_t *m = probe_desc(cf);
    ck_assert_int_eq(conf_module_index(cf, m), 0);
    ck_assert_int_eq(conf_module_index(cf, NULL), -1);

    struct probe_conf *mc = weir_main_conf(cf, m);
    ck_assert_int_eq(mc->flag, 1);
    ck_assert_int_eq(mc->level, 3);
    ck_assert_uint_eq(mc->window, 60000);
    ck_assert_int_eq(mc->items, 0);
    ck_assert_ptr_null(mc->label); /* route-only directive */
    ck_assert_int_eq(mc->done, 1);

    struct probe_listener *lc = weir_listener_conf(&cf->listeners[0], m);
    ck_assert_uint_eq(lc->buf, 4096);
    struct probe_upstream *uc = weir_upstream_conf(weir_conf_upstream(cf, 0), m);
    ck_assert_uint_eq(uc->timeout, 5000);
    ck_assert_int_eq(uc->tries, 0);

    struct probe_conf *rc = weir_route_conf(weir_conf_route(cf, 0), m);
    ck_assert_int_eq(rc->flag, 1);
    ck_assert_int_eq(rc->level, 3);
    ck_assert_str_eq(rc->label, "none");
    ck_assert_ptr_null(rc->tpl);
    ck_assert_uint_eq(rc->window, 0); /* main-only: not copied */
    ck_assert_int_eq(rc->done, 1);
    conf_free(cf);
}
END_TEST

START_TEST(test_module_scopes_and_inheritance)
{
    enter_tmpdir();
    weir_conf_t *cf = load_ok(PROBE
                              "probe_flag: false\n"
                              "probe_level: 7\n"
                              "probe_items: [a, b, c]\n"
                              "probe_window: 250ms\n"
                              "listeners:\n"
                              "  - {address: 127.0.0.1:8080, probe_buf: 1m}\n"
                              "  - {address: 127.0.0.1:8081}\n"
                              "upstreams:\n"
                              "  api: {servers: [127.0.0.1:1], probe_timeout: 2s, "
                              "probe_tries: 5}\n"
                              "routes:\n"
                              "  - name: a\n"
                              "    upstream: api\n"
                              "  - name: b\n"
                              "    upstream: api\n"
                              "    probe_flag: on\n"
                              "    probe_level: 1\n"
                              "    probe_items: [x]\n"
                              "    probe_label: hello\n"
                              "    probe_tpl: \"x-$host\"\n");
    const weir_module_t *m = probe_desc(cf);
    struct probe_conf *mc = weir_main_conf(cf, m);
    ck_assert_int_eq(mc->flag, 0);
    ck_assert_int_eq(mc->level, 7);
    ck_assert_int_eq(mc->items, 3);
    ck_assert_uint_eq(mc->window, 250);

    ck_assert_uint_eq(((struct probe_listener *)weir_listener_conf(&cf->listeners[0], m))->buf,
                      1048576);
    ck_assert_uint_eq(((struct probe_listener *)weir_listener_conf(&cf->listeners[1], m))->buf,
                      4096);
    struct probe_upstream *uc = weir_upstream_conf(weir_conf_upstream(cf, 0), m);
    ck_assert_uint_eq(uc->timeout, 2000);
    ck_assert_int_eq(uc->tries, 5);

    /* route a inherits every MAIN|ROUTE directive from the top level */
    struct probe_conf *a = weir_route_conf(weir_conf_route(cf, 0), m);
    ck_assert_int_eq(a->flag, 0);
    ck_assert_int_eq(a->level, 7);
    ck_assert_int_eq(a->items, 3);
    ck_assert_str_eq(a->label, "none");
    ck_assert_ptr_null(a->tpl);
    /* route b sets its own */
    struct probe_conf *b = weir_route_conf(weir_conf_route(cf, 1), m);
    ck_assert_int_eq(b->flag, 1);
    ck_assert_int_eq(b->level, 1);
    ck_assert_int_eq(b->items, 1);
    ck_assert_str_eq(b->label, "hello");
    ck_assert_ptr_nonnull(b->tpl);
    ck_assert_int_eq(weir_template_is_literal(b->tpl), 0);
    conf_free(cf);
}
END_TEST

START_TEST(test_module_errors)
{
    enter_tmpdir();
    expect_errors(PROBE LISTENER
                  "probe_flag: sometimes\n"
                  "routes:\n"
                  "  - probe_level: 0\n"
                  "    probe_lable: x\n"
                  "    probe_answer: true\n",
                  "weir.yaml:3:13: invalid boolean 'sometimes' for 'probe_flag' (expected true "
                  "or false)\n"
                  "weir.yaml:5:18: value 0 for 'probe_level' is out of range (expected 1..10)\n"
                  "weir.yaml:6:5: unknown key 'probe_lable' in route (did you mean "
                  "'probe_label'?)\n");

    /* a TEMPLATE directive goes through weir_template_compile, which knows the
     * variables; its message is template.c's, so only its position is ours */
    char err[8192];
    ck_assert_ptr_null(load(PROBE LISTENER "routes:\n  - probe_tpl: \"x $nosuchvar\"\n", err,
                            sizeof(err)));
    ck_assert_msg(strncmp(err, "weir.yaml:4:", 12) == 0 && strstr(err, "nosuchvar"), "%s", err);
}
END_TEST

/* After every conf_done: a route with neither an upstream nor a module that
 * answers it (ABI 1.6) is refused at its node; one the probe answers loads. */
START_TEST(test_route_answered)
{
    enter_tmpdir();
    expect_errors(PROBE LISTENER
                  "routes:\n"
                  "  - name: lost\n"
                  "    probe_level: 2\n"
                  "  - probe_answer: true\n",
                  "weir.yaml:4:5: route 'lost' has no upstream and no module answers it: add "
                  "`upstream: NAME`, a `redirect:` (module rewrite) or `metrics: true` "
                  "(module metrics)\n");
    weir_conf_t *cf = load_ok(PROBE LISTENER "routes:\n  - probe_answer: true\n");
    ck_assert_ptr_null(weir_route_upstream(weir_conf_route(cf, 0)));
    conf_free(cf);
}
END_TEST

START_TEST(test_module_missing)
{
    enter_tmpdir();
    char err[8192];
    ck_assert_ptr_null(load(LISTENER "modules: [no_such_module]\n", err, sizeof(err)));
    ck_assert_msg(strncmp(err, "weir.yaml:2:11: ", 16) == 0, "%s", err);
    ck_assert_msg(strstr(err, "no_such_module"), "%s", err);
    /* a key of a standard module that failed to load is not reported twice */
    ck_assert_ptr_null(load(LISTENER "modules: [router]\nroutes: [{path: /}]\n", err,
                            sizeof(err)));
    ck_assert_msg(!strstr(err, "'path'"), "%s", err);
}
END_TEST

START_TEST(test_modules_dir)
{
    char err[8192];
    weir_conf_t *cf;

    enter_tmpdir();
    /* compiled-in default without -M or modules_dir */
    cf = load_dir(LISTENER, NULL, err, sizeof(err));
    ck_assert_msg(cf != NULL, "%s", err);
    ck_assert_str_eq(cf->modules_dir, WEIR_MODULES_DIR);
    conf_free(cf);

    /* modules_dir relative to the config's directory */
    ck_assert_int_eq(symlink(test_modules(), "mods"), 0);
    cf = load_dir(LISTENER "modules_dir: mods\nmodules: [conf_probe]\n", NULL, err, sizeof(err));
    ck_assert_msg(cf != NULL, "%s", err);
    ck_assert_uint_eq(cf->nmodules, 1);
    ck_assert_str_eq(cf->modules[0].desc->name, "conf_probe");
    conf_free(cf);

    /* -M wins over modules_dir */
    cf = load_dir(LISTENER "modules_dir: /nonexistent\nmodules: [conf_probe]\n", test_modules(),
                  err, sizeof(err));
    ck_assert_msg(cf != NULL, "%s", err);
    ck_assert_str_eq(cf->modules_dir, test_modules());
    conf_free(cf);

    /* {name, path}, path relative to the config's directory */
    cf = load_dir(LISTENER "modules:\n  - {name: conf_probe, path: mods/conf_probe.so}\n",
                  "/nonexistent", err, sizeof(err));
    ck_assert_msg(cf != NULL, "%s", err);
    ck_assert_uint_eq(cf->nmodules, 1);
    conf_free(cf);

    expect_errors(LISTENER "modules:\n  - {nmae: conf_probe}\n",
                  "weir.yaml:3:5: missing required key 'name' in module entry\n"
                  "weir.yaml:3:6: unknown key 'nmae' in module entry (did you mean 'name'?)\n");
}
END_TEST


/* ------------------------------------------------------------ weir -T */

/* A fresh generation with an arena, for reading YAML alone. */
static weir_conf_t *bare_conf(void)
{
    weir_conf_t *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    c->arena = arena_new(4096, 0);
    ck_assert_ptr_nonnull(c->arena);
    c->file = "weir.yaml";
    c->dir = ".";
    c->errors_tail = &c->errors;
    return c;
}

static void print_scalar(FILE *fp, const void *s)
{
    conf_dump_scalar(fp, s);
}

static void print_conf(FILE *fp, const void *cf)
{
    conf_dump(cf, NULL, fp);
}

/* What print writes, as a malloc'd string. */
static char *printed(void (*print)(FILE *, const void *), const void *arg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(fp);
    print(fp, arg);
    fclose(fp);
    return text;
}

static char *quoted(const char *s)
{
    return printed(print_scalar, s);
}

/* Reads s back through the loader as a value, a key and a list item. */
static void check_roundtrip(const char *s, const char *expect)
{
    char *q = quoted(s), yaml[512];
    weir_conf_t *c = bare_conf();
    snprintf(yaml, sizeof(yaml), "vk: %s\n%s: k\nlk:\n  - %s\n  - {m: %s}\n", q, q, q, q);
    write_file("weir.yaml", yaml);
    const weir_node_t *root = conf_yaml_read(c, "weir.yaml");
    ck_assert_msg(root != NULL, "%s does not load: %s", yaml,
                  c->errors ? c->errors->msg : "?");
    const weir_node_t *v = weir_node_get(root, "vk"), *l = weir_node_get(root, "lk");
    ck_assert_msg(weir_node_count(root) == 3, "%s read as %zu keys", yaml, weir_node_count(root));
    ck_assert_msg(weir_node_type(v) == WEIR_NODE_SCALAR && strcmp(v->scalar, expect) == 0,
                  "value %s read back as type %d", q, (int)weir_node_type(v));
    ck_assert_msg(strcmp(root->keys[1]->scalar, expect) == 0, "key %s read back wrong", q);
    ck_assert_str_eq(weir_node_scalar(weir_node_child(l, 0)), expect);
    ck_assert_str_eq(weir_node_scalar(weir_node_get(weir_node_child(l, 1), "m")), expect);
    arena_free(c->arena);
    free(c);
    free(q);
}

/* The shortest valid UTF-8 sequence that holds byte b (b alone below 0x80),
 * or "" for the bytes UTF-8 never holds (0xc0, 0xc1, 0xf5..0xff). */
static void utf8_with(unsigned b, char *out)
{
    unsigned char *o = (unsigned char *)out;
    size_t n = 0;
    if (b < 0x80)
        o[n++] = (unsigned char)b;
    else if (b <= 0xbf)
        o[n++] = 0xc2, o[n++] = (unsigned char)b;
    else if (b >= 0xc2 && b <= 0xdf)
        o[n++] = (unsigned char)b, o[n++] = 0x80;
    else if (b >= 0xe0 && b <= 0xef)
        o[n++] = (unsigned char)b, o[n++] = b == 0xe0 ? 0xa0 : 0x80, o[n++] = 0x80;
    else if (b >= 0xf0 && b <= 0xf4)
        o[n++] = (unsigned char)b, o[n++] = b == 0xf0 ? 0x90 : 0x80, o[n++] = 0x80,
        o[n++] = 0x80;
    o[n] = 0;
}

START_TEST(test_dump_scalar_bytes)
{
    enter_tmpdir();
    for (unsigned b = 1; b < 256; b++) {
        char c[8], s[32];
        utf8_with(b, c);
        if (!*c) {
            /* not UTF-8: no YAML can hold it; still valid YAML, read as
             * U+00HH (see conf_dump.h) */
            char in[4] = {'a', (char)b, 'b', 0}, want[8];
            snprintf(want, sizeof(want), "a%c%cb", 0xc0 | (b >> 6), 0x80 | (b & 0x3f));
            check_roundtrip(in, want);
            continue;
        }
        check_roundtrip(c, c);
        snprintf(s, sizeof(s), "a%sb", c);
        check_roundtrip(s, s);
        snprintf(s, sizeof(s), " %s%s ", c, c);
        check_roundtrip(s, s);
    }
}
END_TEST

static const char *const tricky[] = {
    "", " ", "~", "null", "NULL", "Null", "true", "no", "123", "0x1f", "- a", "-", "--", "---",
    "...", "a: b", "a:", ":a", "a #b", "a#b", "#a", "'", "\"", "\\", "''", "'a'", "\"a\"",
    "[a]", "{a}", "a,b", "a]", "*x", "&x", "!x", "|", ">", "%x", "@x", "`x", "?x", "? x",
    "<<", "=", "=/healthz", "~^/img/.*\\.png$", "^~/static/", "$host ${x}", "a\nb", "a\n",
    "\n", "\t", "a\tb", "\r\n", "\x7f", "\xc3\xa9t\xc3\xa9", "\xe2\x80\xa8", "\xe2\x80\xa9",
    "\xc2\x85", "\xef\xbb\xbf", "\xef\xbf\xbe", "\xef\xbf\xbf", "\xf0\x9f\x98\x80", "  lead",
    "trail  ", "it's: #here", "a\\nb", "\\x41", "%2F", "*.example.com",
};

START_TEST(test_dump_scalar_forms)
{
    enter_tmpdir();
    for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++)
        check_roundtrip(tricky[i], tricky[i]);
    /* what can be plain stays plain, readable */
    const char *plain[] = {"10s", "127.0.0.1:8080", "/v1/", "$remote_addr - $status",
                           "unix:/run/w.sock", "~^/a$"};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        char *q = quoted(plain[i]);
        ck_assert_str_eq(q, plain[i]);
        free(q);
    }
    char *q = quoted("'tis");
    ck_assert_str_eq(q, "'''tis'");
    free(q);
    q = quoted("a\nb\"");
    ck_assert_str_eq(q, "\"a\\nb\\\"\"");
    free(q);
}
END_TEST

static char *dump_of(const weir_conf_t *cf)
{
    return printed(print_conf, cf);
}

/* The printed config loads, and prints the same text; frees text. */
static void expect_fixed_point(char *text)
{
    weir_conf_t *cf = load_ok(text);
    char *again = dump_of(cf);
    conf_free(cf);
    ck_assert_str_eq(again, text);
    free(text);
    free(again);
}

static void expect_in(const char *text, const char *part)
{
    ck_assert_msg(strstr(text, part) != NULL, "missing:\n%s\nin:\n%s", part, text);
}

START_TEST(test_dump_fixed_point)
{
    enter_tmpdir();
    mkdir("sub", 0755);
    write_file("sub/error.html", "<h1>{{status}}</h1>\n");
    weir_conf_t *cf = load_ok(PROBE
                              "pid_file: run/w.pid\n"
                              "error_page: sub/error.html\n"
                              "limits: {max_body_size: 2k}\n"
                              "probe_flag: false\n"
                              "probe_items: [a, 'b c', {d: ~}]\n"
                              "listeners:\n"
                              "  - {address: 127.0.0.1:8080, probe_buf: 1m, limits: "
                              "{keepalive_timeout: 5s}}\n"
                              "  - {name: second, address: 127.0.0.1:8081, http2: true}\n"
                              "upstreams:\n"
                              "  api: {servers: [127.0.0.1:1, {address: 127.0.0.1:2, weight: "
                              "5, backup: true}], probe_tries: 5, retries: 0}\n"
                              "routes:\n"
                              "  - upstream: api\n"
                              "  - name: b\n"
                              "    upstream: api\n"
                              "    probe_items: []\n"
                              "    probe_label: \"'tis\"\n"
                              "    probe_tpl: \"x-$host\"\n");
    char *one = dump_of(cf), cwd[512];
    conf_free(cf);
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    char want[1024];
    snprintf(want, sizeof(want), "pid_file: %s/run/w.pid\n", cwd);
    expect_in(one, want);
    snprintf(want, sizeof(want), "error_page: %s/sub/error.html\n", cwd);
    expect_in(one, want);
    expect_in(one, "workers: auto # ");
    expect_in(one, "# user: none");
    expect_in(one, "error_log:\n  path: stderr\n  level: info\n");
    expect_in(one, "modules:\n  - conf_probe\n");
    expect_in(one, "limits:\n  client_header_timeout: 10s\n  client_body_timeout: 1m\n"
                   "  send_timeout: 1m\n  keepalive_timeout: 75s\n  keepalive_requests: 10000\n"
                   "  max_header_size: 16k\n  max_body_size: 2k\n  max_connections: 65536\n"
                   "  shutdown_timeout: 30s\n");
    expect_in(one, "  - name: 127.0.0.1:8080\n    address: 127.0.0.1:8080\n    backlog: 4096\n"
                   "    http2: false\n    limits:\n      client_header_timeout: 10s\n");
    expect_in(one, "      keepalive_timeout: 5s\n");
    expect_in(one, "      max_body_size: 2k\n"); /* from the top level */
    expect_in(one, "    probe_buf: 1m\n");
    expect_in(one, "  - name: second\n    address: 127.0.0.1:8081\n    backlog: 4096\n"
                   "    http2: true\n");
    expect_in(one, "    probe_buf: 4k\n");
    expect_in(one, "upstreams:\n  api:\n    balancer: roundrobin\n    servers:\n"
                   "      - address: 127.0.0.1:1\n        weight: 1\n        backup: false\n"
                   "      - address: 127.0.0.1:2\n        weight: 5\n        backup: true\n"
                   "    keepalive: 128\n    connect_timeout: 3s\n");
    expect_in(one, "    retries: 0\n");
    expect_in(one, "    probe_timeout: 5s\n    probe_tries: 5\n");
    /* route1 inherits the top level's custom subtree and typed values */
    expect_in(one, "  - name: route1\n    upstream: api\n    probe_flag: false\n"
                   "    probe_level: 3\n    probe_label: none\n    probe_items:\n      - a\n"
                   "      - b c\n      - d: ~\n    probe_tpl: ~\n    probe_answer: false\n");
    expect_in(one, "    probe_label: '''tis'\n    probe_items: []\n    probe_tpl: x-$host\n");
    expect_in(one, "error_page: ");
    expect_in(one, "metrics_max_series: 4096\nprobe_flag: false\nprobe_level: 3\n"
                   "probe_items:\n  - a\n");
    expect_in(one, "probe_window: 1m\nprobe_report: false\n");

    expect_fixed_point(one);
}
END_TEST

START_TEST(test_dump_custom_absent)
{
    enter_tmpdir();
    weir_conf_t *cf = load_ok(PROBE LISTENER "routes: [{probe_answer: true, name: r}]\n");
    char *text = dump_of(cf);
    conf_free(cf);
    /* no default_value, not written: a comment, at the top level and in the
     * route that would inherit it; no upstream: a comment too */
    expect_in(text, "\n# probe_items: module default\n");
    expect_in(text, "  - name: r\n    # upstream: none (a module answers the route)\n");
    expect_in(text, "    # probe_items: module default\n");
    expect_in(text, "upstreams: {}\nroutes:\n");
    expect_fixed_point(text);
}
END_TEST

static Suite *conf_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *tc = tcase_create("values");
    tcase_add_test(tc, test_durations);
    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_printed_values);
    tcase_add_test(tc, test_addresses);
    tcase_add_test(tc, test_suggest);
    suite_add_tcase(s, tc);

    tc = tcase_create("schema");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_minimal_defaults);
    tcase_add_test(tc, test_full_config);
    tcase_add_test(tc, test_node_api);
    tcase_add_test(tc, test_error_forms);
    tcase_add_test(tc, test_one_run_reports_all);
    tcase_add_test(tc, test_message_escapes);
    tcase_add_test(tc, test_error_order);
    tcase_add_test(tc, test_unreadable_file);
    tcase_add_test(tc, test_error_page_missing);
    tcase_add_test(tc, test_include);
    suite_add_tcase(s, tc);

    tc = tcase_create("modules");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_module_defaults);
    tcase_add_test(tc, test_module_scopes_and_inheritance);
    tcase_add_test(tc, test_module_errors);
    tcase_add_test(tc, test_route_answered);
    tcase_add_test(tc, test_module_missing);
    tcase_add_test(tc, test_modules_dir);
    suite_add_tcase(s, tc);

    tc = tcase_create("dump");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_dump_scalar_bytes);
    tcase_add_test(tc, test_dump_scalar_forms);
    tcase_add_test(tc, test_dump_fixed_point);
    tcase_add_test(tc, test_dump_custom_absent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(conf_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
