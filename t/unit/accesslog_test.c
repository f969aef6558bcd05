/*
 * Module accesslog at load time, through the real loader and the built
 * modules/accesslog.so: which files the master opens for which config
 * (defaults, per route, off, inheritance) and every config error with its
 * exact position. Lines themselves are checked end to end in
 * t/integration/test_accesslog.py; the writing service in logfile_test.c.
 */
#include <check.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "request.h"
#include "weir_build.h"

static void enter_tmpdir(void)
{
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/weir-al-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chdir(dir), 0);
}

#define HEAD                                                                                   \
    "modules: [router, lb_roundrobin, accesslog]\n"                                           \
    "error_log: {path: stderr, level: error}\n"                                               \
    "listeners: [{address: 127.0.0.1:1}]\n"                                                   \
    "upstreams: {u: {balancer: roundrobin, servers: [127.0.0.1:9]}}\n"

/* Loads weir.yaml from HEAD + rest; the loader's stderr goes to err. */
static weir_conf_t *load(const char *rest, char *err, size_t errlen)
{
    FILE *f = fopen("weir.yaml", "w");
    fputs(HEAD, f);
    fputs(rest, f);
    fclose(f);
    conf_options_t opt = {.file = "weir.yaml",
                          .pid_file = "weir.pid",
                          .modules_dir = getenv("WEIR_BUILD_MODULES"),
                          .core_handlers = core_phase_handlers,
                          .register_core_vars = core_vars_register};
    char errfile[] = "stderr-XXXXXX";
    int fd = mkstemp(errfile), saved = dup(2);
    fflush(stderr);
    dup2(fd, 2);
    weir_conf_t *cf = conf_load(&opt);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, err, errlen - 1);
    err[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(errfile);
    return cf;
}

static void load_ok(const char *rest)
{
    char err[4096];
    weir_conf_t *cf = load(rest, err, sizeof(err));
    ck_assert_msg(cf != NULL, "did not load:\n%s", err);
    conf_free(cf);
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* The default file is in the build's log directory (WEIR_LOG_DIR), never
 * next to the config. A test that may open it runs in a mount namespace of
 * its own (each test is a forked process) with a tmpfs over the log
 * directory's parent, so it writes nothing into the system's; the suite
 * runs as root, as the integration tests do. */
#define DEFAULT_LOG WEIR_LOG_DIR "/access.log"

static void private_log_dir(void)
{
    char parent[sizeof(WEIR_LOG_DIR)];
    memcpy(parent, WEIR_LOG_DIR, sizeof(parent));
    *strrchr(parent, '/') = '\0';
    ck_assert_msg(unshare(CLONE_NEWNS) == 0, "unshare: %s (run the unit suites as root)",
                  strerror(errno));
    ck_assert_int_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
    ck_assert_msg(mount("none", parent[0] ? parent : "/", "tmpfs", 0, NULL) == 0,
                  "mount tmpfs on %s: %s", parent, strerror(errno));
    ck_assert_int_eq(mkdir(WEIR_LOG_DIR, 0755), 0);
}

START_TEST(test_default_file_when_the_key_is_absent)
{
    private_log_dir();
    enter_tmpdir();
    ck_assert(!exists(DEFAULT_LOG));
    load_ok("routes: [{path: /, upstream: u}]\n");
    ck_assert(exists(DEFAULT_LOG));
    ck_assert(!exists("access.log")); /* not next to the config */
}
END_TEST

START_TEST(test_off_opens_nothing)
{
    private_log_dir();
    enter_tmpdir();
    load_ok("access_log: off\nroutes: [{path: /, upstream: u}]\n");
    ck_assert(!exists(DEFAULT_LOG));
}
END_TEST

START_TEST(test_routes_own_files_and_inheritance)
{
    private_log_dir();
    enter_tmpdir();
    load_ok("access_log: {path: top.log}\n"
            "routes:\n"
            "  - {path: /a/, upstream: u, access_log: {path: a.log}}\n"
            "  - {path: /b/, upstream: u, access_log: off}\n"
            "  - {path: /c/, upstream: u, access_log: {format: '$uri'}}\n"
            "  - {path: /, upstream: u}\n");
    ck_assert(exists("top.log"));
    ck_assert(exists("a.log"));
    ck_assert(!exists(DEFAULT_LOG)); /* the /c/ route takes top.log from the top */
}
END_TEST

START_TEST(test_route_turns_a_top_level_off_back_on)
{
    private_log_dir();
    enter_tmpdir();
    load_ok("access_log: off\n"
            "routes:\n"
            "  - {path: /a/, upstream: u, access_log: {path: only-a.log}}\n"
            "  - {path: /, upstream: u}\n");
    ck_assert(exists("only-a.log"));
    ck_assert(!exists(DEFAULT_LOG));
}
END_TEST

static const struct bad {
    const char *rest;
    const char *msg;
} bad[] = {
    {"access_log: {path: x.log, fromat: '$uri'}\n",
     "weir.yaml:5:35: access_log: unknown key 'fromat' (expected path, format, format_json, "
     "buffer or flush)\n"},
    {"access_log: {path: x.log, buffer: 0}\n",
     "weir.yaml:5:35: access_log.buffer: expected 1 to 16m bytes\n"},
    {"access_log: {path: x.log, flush: soon}\n",
     "weir.yaml:5:34: invalid duration 'soon'"},
    {"access_log: {format: '$status $nosuch'}\n",
     "weir.yaml:5:31: unknown variable '$nosuch'"},
    {"access_log: sometimes\n",
     "weir.yaml:5:13: access_log: expected a mapping {path, format, format_json, buffer, flush} "
     "or off\n"},
    {"access_log: {path: no/such/dir/x.log}\n",
     "weir.yaml:5:13: cannot open log file "},
    {"routes: [{path: /, upstream: u, access_log: {format: [a]}}]\n",
     "weir.yaml:5:54: access_log.format: expected a string with variables\n"},
};

START_TEST(test_errors_name_their_position)
{
    enter_tmpdir();
    char err[4096];
    weir_conf_t *cf = load(bad[_i].rest, err, sizeof(err));
    ck_assert_msg(cf == NULL, "loaded: %s", bad[_i].rest);
    ck_assert_msg(strstr(err, bad[_i].msg) == err, "want %s\ngot  %s", bad[_i].msg, err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("accesslog");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, test_default_file_when_the_key_is_absent);
    tcase_add_test(tc, test_off_opens_nothing);
    tcase_add_test(tc, test_routes_own_files_and_inheritance);
    tcase_add_test(tc, test_route_turns_a_top_level_off_back_on);
    tcase_add_loop_test(tc, test_errors_name_their_position, 0, sizeof(bad) / sizeof(bad[0]));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
