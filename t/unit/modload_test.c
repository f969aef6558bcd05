/* Module loader: every refusal message, exactly, and a good module's hooks. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "conf.h"
#include "modload.h"
#include "vars.h"

static struct weir_node where = {
    .type = WEIR_NODE_SCALAR, .file = "weir.yaml", .line = 3, .column = 5, .scalar = "x"};

static const char *mods_dir(void)
{
    const char *d = getenv("WEIR_TEST_MODULES");
    return d ? d : "t/modules";
}

static weir_conf_t *conf_new(void)
{
    weir_conf_t *cf = calloc(1, sizeof(*cf));
    ck_assert_ptr_nonnull(cf);
    cf->arena = arena_new(4096, 0);
    ck_assert_ptr_nonnull(cf->arena);
    cf->file = "weir.yaml";
    cf->errors_tail = &cf->errors;
    cf->modules_dir = mods_dir();
    cf->modules = arena_alloc(cf->arena, 4 * sizeof(module_slot_t));
    ck_assert_ptr_nonnull(cf->modules);
    return cf;
}

static void conf_del(weir_conf_t *cf)
{
    for (size_t i = 0; i < cf->nmodules; i++)
        modload_close(&cf->modules[i]);
    arena_free(cf->arena);
    free(cf);
}

/* Expected text with every "@" replaced by the modules directory and the
 * ABI placeholders ("{A}", "{N}") by version numbers. */
static char *expand(const char *pattern)
{
    static char buf[2048];
    char *p = buf;
    for (; *pattern; pattern++) {
        if (*pattern == '@')
            p = stpcpy(p, mods_dir());
        else if (strncmp(pattern, "{A}", 3) == 0 || strncmp(pattern, "{N}", 3) == 0) {
            int minor = WEIR_ABI_MINOR + (pattern[1] == 'N' ? 5 : 0);
            p += sprintf(p, "%d.%d", WEIR_ABI_MAJOR, minor);
            pattern += 2;
        } else
            *p++ = *pattern;
    }
    *p = '\0';
    return buf;
}

static const weir_module_t router_desc = {
    WEIR_MODULE_HEADER,
    .name = "router",
    .version = "1.0",
};

/* In expected messages, "{A}" is the ABI this weir provides and "{N}" the
 * one newer_minor.c claims (minor + 5). */
#define ABI "{A}"
#define NEWER_MINOR_PLUS_5 "{N}"

static const struct refusal {
    const char *name; /* as listed in modules: */
    const char *path; /* NULL: <modules_dir>/<name>.so, '@' = modules dir */
    int preload_router;
    const char *msg;  /* exact; '@' = modules dir */
} refusals[] = {
    {"no_symbol", NULL, 0,
     "weir.yaml:3:5: cannot load module 'no_symbol' from @/no_symbol.so: it does not export "
     "'weir_module', so it is not a weir module"},
    {"bad_abi", NULL, 0,
     "weir.yaml:3:5: module @/bad_abi.so was built for weir module ABI 2.0, this weir provides "
     ABI "; rebuild it against this weir's headers"},
    {NULL, "@/bad_abi.so", 0,
     "weir.yaml:3:5: module @/bad_abi.so was built for weir module ABI 2.0, this weir provides "
     ABI "; rebuild it against this weir's headers"},
    {"newer_minor", NULL, 0,
     "weir.yaml:3:5: module @/newer_minor.so was built for weir module ABI " NEWER_MINOR_PLUS_5
     ", newer than this weir's " ABI "; upgrade weir or rebuild the module"},
    {"short_desc", NULL, 0,
     "weir.yaml:3:5: module @/short_desc.so (ABI " ABI ") has a descriptor of 8 bytes, shorter "
     "than the 24 bytes every ABI 1.x descriptor starts with (this weir provides " ABI "); rebuild it "
     "against this weir's headers"},
    {"dup_router", NULL, 0,
     "weir.yaml:3:5: module @/dup_router.so (version 9.9) calls itself 'router', not "
     "'dup_router'; a module's name must equal its file name without .so"},
    {"router", "@/dup_router.so", 1,
     "weir.yaml:3:5: module @/dup_router.so ('router' version 9.9) clashes with module 'router' "
     "version 1.0, already loaded from /opt/weir/router.so"},
};

START_TEST(test_refusal)
{
    const struct refusal *c = &refusals[_i];
    weir_conf_t *cf = conf_new();
    char path[1024];
    if (c->preload_router) {
        cf->modules[0] = (module_slot_t){.desc = &router_desc, .path = "/opt/weir/router.so"};
        cf->nmodules = 1;
    }
    if (c->path)
        snprintf(path, sizeof(path), "%s", expand(c->path));
    module_slot_t *slot = &cf->modules[cf->nmodules];
    ck_assert_int_eq(modload_open(cf, &where, c->name, c->path ? path : NULL, slot), -1);
    ck_assert_uint_eq(cf->nerrors, 1);
    ck_assert_ptr_null(slot->desc);
    ck_assert_ptr_null(slot->handle);
    ck_assert_str_eq(cf->errors->msg, expand(c->msg));
    conf_del(cf);
}
END_TEST

START_TEST(test_missing_file)
{
    weir_conf_t *cf = conf_new();
    ck_assert_int_eq(modload_open(cf, &where, "nope", NULL, &cf->modules[0]), -1);
    ck_assert_uint_eq(cf->nerrors, 1);
    const char *want = expand("weir.yaml:3:5: cannot load module 'nope' from @/nope.so: ");
    ck_assert_msg(strncmp(cf->errors->msg, want, strlen(want)) == 0, "got %s", cf->errors->msg);
    ck_assert_msg(strstr(cf->errors->msg, "No such file") != NULL, "got %s", cf->errors->msg);
    conf_del(cf);
}
END_TEST

START_TEST(test_good_module)
{
    weir_conf_t *cf = conf_new();
    ck_assert_int_eq(vars_init(cf), 0);
    ck_assert_int_eq(modload_open(cf, &where, "good", NULL, &cf->modules[0]), 0);
    cf->nmodules = 1;
    ck_assert_uint_eq(cf->nerrors, 0);
    ck_assert_ptr_nonnull(cf->modules[0].handle);
    ck_assert_str_eq(cf->modules[0].desc->name, "good");
    ck_assert_str_eq(cf->modules[0].desc->version, "1.2.3");
    ck_assert_str_eq(cf->modules[0].path, expand("@/good.so"));

    /* conf_init registers $good_var through the exported API */
    ck_assert_int_eq(modload_run_conf_hook(cf, HOOK_CONF_INIT), 0);
    weir_str_t v;
    ck_assert_int_eq(vars_get(NULL, cf, "good_var", &v), 0);
    ck_assert_int_eq((int)v.len, 4);
    ck_assert_int_eq(memcmp(v.data, "good", 4), 0);

    /* conf_done fails silently: the loader supplies a message */
    ck_assert_int_eq(modload_run_conf_hook(cf, HOOK_CONF_DONE), -1);
    ck_assert_uint_eq(cf->nerrors, 1);
    ck_assert_str_eq(cf->errors->msg,
                     "weir.yaml: module 'good' failed in conf_done without saying why");

    modload_close(&cf->modules[0]);
    ck_assert_ptr_null(cf->modules[0].handle);
    cf->nmodules = 0;
    conf_del(cf);
}
END_TEST

START_TEST(test_hook_past_struct_size)
{
    weir_conf_t *cf = conf_new();
    ck_assert_int_eq(modload_open(cf, &where, "old_minor", NULL, &cf->modules[0]), 0);
    cf->nmodules = 1;
    ck_assert_int_eq(modload_run_conf_hook(cf, HOOK_CONF_INIT), 0);
    ck_assert_uint_eq(cf->nerrors, 0);
    conf_del(cf);
}
END_TEST

START_TEST(test_hook_error_at_modules_key)
{
    weir_conf_t *cf = conf_new();
    static struct weir_node key = {
        .type = WEIR_NODE_SCALAR, .file = "weir.yaml", .line = 7, .column = 1, .scalar = "modules"};
    static struct weir_node val = {.type = WEIR_NODE_SEQUENCE, .file = "weir.yaml", .line = 8};
    static struct weir_node *keys[] = {&key}, *vals[] = {&val};
    static struct weir_node root = {.type = WEIR_NODE_MAPPING, .file = "weir.yaml", .line = 1,
                                    .column = 1, .count = 1, .keys = keys, .items = vals};
    cf->root = &root;
    ck_assert_int_eq(modload_open(cf, &where, "good", NULL, &cf->modules[0]), 0);
    cf->nmodules = 1;
    ck_assert_int_eq(modload_run_conf_hook(cf, HOOK_CONF_DONE), -1);
    ck_assert_str_eq(cf->errors->msg,
                     "weir.yaml:7:1: module 'good' failed in conf_done without saying why");
    conf_del(cf);
}
END_TEST

/* Copies file src into path by writing aside and renaming over, as install(1)
 * and package managers do: path gets a new inode. */
static void install_file(const char *src, const char *path)
{
    char tmp[4096], buf[65536];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *in = fopen(src, "rb"), *out = fopen(tmp, "wb");
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
}

/* A reload loads a module file replaced on disk anew, shares one that did
 * not change, and refuses one written over in place. */
START_TEST(test_replaced_file_loads_anew)
{
    char dir[] = "/tmp/weir-modload-XXXXXX", path[4096], v1[4096], v2[4096];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/stamp.so", dir);
    snprintf(v1, sizeof(v1), "%s/stamp_v1.so", mods_dir());
    snprintf(v2, sizeof(v2), "%s/stamp_v2.so", mods_dir());
    install_file(v1, path);

    weir_conf_t *a = conf_new(), *b = conf_new(), *c = conf_new();
    ck_assert_int_eq(modload_open(a, &where, "stamp", path, &a->modules[0]), 0);
    a->nmodules = 1;
    ck_assert_str_eq(a->modules[0].desc->version, "v1");
    /* the same file: the same loaded copy */
    ck_assert_int_eq(modload_open(b, &where, "stamp", path, &b->modules[0]), 0);
    b->nmodules = 1;
    ck_assert_ptr_eq(b->modules[0].handle, a->modules[0].handle);

    /* replaced by a rename: the new build, while the old one stays usable */
    install_file(v2, path);
    ck_assert_int_eq(modload_open(c, &where, "stamp", path, &c->modules[0]), 0);
    c->nmodules = 1;
    ck_assert_str_eq(c->modules[0].desc->version, "v2");
    ck_assert_ptr_ne(c->modules[0].handle, a->modules[0].handle);
    ck_assert_str_eq(a->modules[0].desc->version, "v1");
    conf_del(a);
    ck_assert_str_eq(b->modules[0].desc->version, "v1");
    conf_del(b);

    /* written over in place (same inode, new mtime): refused, with the fix */
    struct timespec later[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 1000000000}};
    ck_assert_int_eq(utimensat(AT_FDCWD, path, later, 0), 0);
    weir_conf_t *d = conf_new();
    ck_assert_int_eq(modload_open(d, &where, "stamp", path, &d->modules[0]), -1);
    char want[8192];
    snprintf(want, sizeof(want),
             "weir.yaml:3:5: cannot load module 'stamp': %s was modified in place while "
             "loaded; replace a module file with a rename (install(1) or mv), never by "
             "writing over it",
             path);
    ck_assert_str_eq(d->errors->msg, want);
    conf_del(d);
    conf_del(c);
    unlink(path);
    rmdir(dir);
}
END_TEST

static const struct owner {
    unsigned scope;
    const char *key;
    const char *module; /* NULL: none */
} owners[] = {
    {WEIR_SCOPE_ROUTE, "host", "router"},
    {WEIR_SCOPE_ROUTE, "path", "router"},
    {WEIR_SCOPE_ROUTE, "methods", "router"},
    {WEIR_SCOPE_ROUTE, "rewrite", "rewrite"},
    {WEIR_SCOPE_ROUTE, "redirect", "rewrite"},
    {WEIR_SCOPE_ROUTE, "request_headers", "headers"},
    {WEIR_SCOPE_ROUTE, "response_headers", "headers"},
    {WEIR_SCOPE_ROUTE, "access_log", "accesslog"},
    {WEIR_SCOPE_MAIN, "access_log", "accesslog"},
    {WEIR_SCOPE_UPSTREAM, "hash_key", "lb_ketama"},
    {WEIR_SCOPE_UPSTREAM, "health_check", "healthcheck"},
    {WEIR_SCOPE_UPSTREAM, "tls", "tls"},
    {WEIR_SCOPE_LISTENER, "tls", "tls"},
    {WEIR_SCOPE_MAIN, "tls", NULL},
    {WEIR_SCOPE_MAIN, "host", NULL},
    {WEIR_SCOPE_UPSTREAM, "rewrite", NULL},
    {WEIR_SCOPE_ROUTE, "rewite", NULL},
    {WEIR_SCOPE_LISTENER, "health_check", NULL},
};

START_TEST(test_known_owner)
{
    const struct owner *c = &owners[_i];
    const char *got = modload_known_owner(c->scope, c->key);
    if (c->module)
        ck_assert_str_eq(got ? got : "(null)", c->module);
    else
        ck_assert_msg(got == NULL, "%s: got %s", c->key, got);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("modload");
    TCase *tc = tcase_create("load");
    tcase_add_loop_test(tc, test_refusal, 0, (int)(sizeof(refusals) / sizeof(refusals[0])));
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_good_module);
    tcase_add_test(tc, test_hook_past_struct_size);
    tcase_add_test(tc, test_hook_error_at_modules_key);
    tcase_add_test(tc, test_replaced_file_loads_anew);
    tcase_add_loop_test(tc, test_known_owner, 0, (int)(sizeof(owners) / sizeof(owners[0])));
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
