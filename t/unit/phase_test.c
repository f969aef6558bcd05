/* Phase chains: priorities, before/after, modules: ties, refusals, cycles. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "conf.h"
#include "modload.h"
#include "phase.h"

static weir_result_t nop(weir_request_t *r)
{
    (void)r;
    return WEIR_CONTINUE;
}

#define H(n, ph, prio, ...) {.name = (n), .phase = (ph), .priority = (prio), .fn = nop, __VA_ARGS__}
#define END {.name = NULL}
#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The "modules:" key sits at 2:1 in the fake config. */
static struct weir_node modules_key = {
    .type = WEIR_NODE_SCALAR, .file = "weir.yaml", .line = 2, .column = 1, .scalar = "modules"};
static struct weir_node modules_val = {.type = WEIR_NODE_SEQUENCE, .file = "weir.yaml", .line = 3};
static struct weir_node *root_keys[] = {&modules_key}, *root_vals[] = {&modules_val};
static struct weir_node root = {.type = WEIR_NODE_MAPPING, .file = "weir.yaml", .line = 1,
                                .column = 1, .count = 1, .keys = root_keys, .items = root_vals};

#define MAXMODS 4

/* One case: up to four modules (in modules: order) with their handler
 * tables, core handlers, and the printed chains or the one error expected. */
struct pcase {
    const char *what;
    const weir_handler_t *core;
    const char *names[MAXMODS];
    const weir_handler_t *tables[MAXMODS];
    const char *chains; /* phases_print output; NULL when an error is expected */
    const char *error;
};

static const struct pcase cases[] = {
    {"priority bands",
     NULL,
     {"m1", "m2"},
     {(const weir_handler_t[]){H("m1.late", WEIR_PHASE_ACCESS, WEIR_PRIORITY_LATE),
                               H("m1.first", WEIR_PHASE_ACCESS, WEIR_PRIORITY_FIRST),
                               H("m1.req", WEIR_PHASE_REQUEST, 0), END},
      (const weir_handler_t[]){H("m2.mid", WEIR_PHASE_ACCESS, WEIR_PRIORITY_MIDDLE),
                               H("m2.log", WEIR_PHASE_LOG, WEIR_PRIORITY_LAST), END}},
     "request: m1.req\naccess: m1.first, m2.mid, m1.late\nlog: m2.log\n", NULL},
    {"ties follow modules: order, core first",
     (const weir_handler_t[]){H("core.balance", WEIR_PHASE_BALANCE, 500), END},
     {"zz", "aa"},
     {(const weir_handler_t[]){H("zz.pick", WEIR_PHASE_BALANCE, 500),
                               H("zz.two", WEIR_PHASE_BALANCE, 500), END},
      (const weir_handler_t[]){H("aa.pick", WEIR_PHASE_BALANCE, 500), END}},
     "balance: core.balance, zz.pick, zz.two, aa.pick\n", NULL},
    {"core sorts by its priority",
     (const weir_handler_t[]){H("core.late", WEIR_PHASE_ROUTE, 700), END},
     {"m1"},
     {(const weir_handler_t[]){H("m1.early", WEIR_PHASE_ROUTE, 300), END}},
     "route: m1.early, core.late\n", NULL},
    {"after moves only what it must",
     NULL,
     {"m1", "m2", "m3"},
     {(const weir_handler_t[]){H("m1.a", WEIR_PHASE_ACCESS, 500, .after = LIST("m2.b")), END},
      (const weir_handler_t[]){H("m2.b", WEIR_PHASE_ACCESS, 500), END},
      (const weir_handler_t[]){H("m3.c", WEIR_PHASE_ACCESS, 500), END}},
     "access: m2.b, m1.a, m3.c\n", NULL},
    {"before overrides priority",
     NULL,
     {"m1", "m2"},
     {(const weir_handler_t[]){H("m1.x", WEIR_PHASE_REWRITE, 900, .before = LIST("m2.y")),
                               END},
      (const weir_handler_t[]){H("m2.y", WEIR_PHASE_REWRITE, 100),
                               H("m2.z", WEIR_PHASE_REWRITE, 500), END}},
     "rewrite: m2.z, m1.x, m2.y\n", NULL},
    {"a bare module name means all its handlers",
     NULL,
     {"m1", "m2"},
     {(const weir_handler_t[]){H("m1.x", WEIR_PHASE_LOG, 500, .after = LIST("m2")), END},
      (const weir_handler_t[]){H("m2.y", WEIR_PHASE_LOG, 600), H("m2.z", WEIR_PHASE_LOG, 700),
                               END}},
     "log: m2.y, m2.z, m1.x\n", NULL},
    {"names not loaded are ignored",
     NULL,
     {"m1", "m2"},
     {(const weir_handler_t[]){H("m1.x", WEIR_PHASE_ACCESS, 500,
                                 .before = LIST("ghost.h", "ghost"), .after = LIST("nope.z")),
                               END},
      (const weir_handler_t[]){H("m2.y", WEIR_PHASE_ACCESS, 400), END}},
     "access: m2.y, m1.x\n", NULL},
    {"a handler in another phase is no constraint",
     NULL,
     {"m1", "m2"},
     {(const weir_handler_t[]){H("m1.x", WEIR_PHASE_ACCESS, 500, .before = LIST("m2.y")), END},
      (const weir_handler_t[]){H("m2.y", WEIR_PHASE_REQUEST, 500),
                               H("m2.w", WEIR_PHASE_ACCESS, 100), END}},
     "request: m2.y\naccess: m2.w, m1.x\n", NULL},
    {"duplicate name",
     NULL,
     {"m1", "m2"},
     {(const weir_handler_t[]){H("dup.h", WEIR_PHASE_ACCESS, 500), END},
      (const weir_handler_t[]){H("dup.h", WEIR_PHASE_LOG, 500), END}},
     NULL, "weir.yaml:2:1: handler 'dup.h' is registered twice (modules m1 and m2)"},
    {"duplicate of a core handler",
     (const weir_handler_t[]){H("core.balance", WEIR_PHASE_BALANCE, 500), END},
     {"m1"},
     {(const weir_handler_t[]){H("core.balance", WEIR_PHASE_BALANCE, 500), END}},
     NULL, "weir.yaml:2:1: handler 'core.balance' is registered twice (modules core and m1)"},
    {"phase out of range",
     NULL,
     {"m1"},
     {(const weir_handler_t[]){H("m1.bad", (weir_phase_t)42, 500), END}},
     NULL, "weir.yaml:2:1: handler 'm1.bad' of module 'm1' names phase 42, which does not "
           "exist (0 to 10)"},
    {"two-handler cycle",
     NULL,
     {"m1", "m2"},
     {(const weir_handler_t[]){H("m1.a", WEIR_PHASE_ACCESS, 500, .before = LIST("m2.b")), END},
      (const weir_handler_t[]){H("m2.b", WEIR_PHASE_ACCESS, 500, .before = LIST("m1.a")), END}},
     NULL, "weir.yaml:2:1: phase 'access': ordering cycle: m1.a -> m2.b -> m1.a"},
    {"three-handler cycle found from a handler outside it",
     NULL,
     {"m1", "m2", "m3", "m4"},
     {(const weir_handler_t[]){H("m1.d", WEIR_PHASE_UPSTREAM_REQUEST, 100,
                                 .after = LIST("m4.c")), END},
      (const weir_handler_t[]){H("m2.a", WEIR_PHASE_UPSTREAM_REQUEST, 500,
                                 .before = LIST("m3.b")), END},
      (const weir_handler_t[]){H("m3.b", WEIR_PHASE_UPSTREAM_REQUEST, 500,
                                 .before = LIST("m4")), END},
      (const weir_handler_t[]){H("m4.c", WEIR_PHASE_UPSTREAM_REQUEST, 500,
                                 .before = LIST("m2.a")), END}},
     NULL, "weir.yaml:2:1: phase 'upstream_request': ordering cycle: m2.a -> m3.b -> m4.c -> "
           "m2.a"},
};

static weir_module_t descs[MAXMODS];

static weir_conf_t *conf_new(void)
{
    weir_conf_t *cf = calloc(1, sizeof(*cf));
    ck_assert_ptr_nonnull(cf);
    cf->arena = arena_new(4096, 0);
    ck_assert_ptr_nonnull(cf->arena);
    cf->file = "weir.yaml";
    cf->errors_tail = &cf->errors;
    cf->root = &root;
    cf->modules = arena_alloc(cf->arena, MAXMODS * sizeof(module_slot_t));
    ck_assert_ptr_nonnull(cf->modules);
    return cf;
}

static char *chains(const weir_conf_t *cf)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    phases_print(cf, f);
    fclose(f);
    return buf;
}

START_TEST(test_order)
{
    const struct pcase *c = &cases[_i];
    weir_conf_t *cf = conf_new();
    for (size_t i = 0; i < MAXMODS && c->names[i]; i++) {
        descs[i] = (weir_module_t){WEIR_MODULE_HEADER, .name = c->names[i], .version = "1",
                                   .handlers = c->tables[i]};
        cf->modules[i] = (module_slot_t){.desc = &descs[i], .index = i};
        cf->nmodules++;
    }
    int rc = phases_build(cf, c->core);
    if (c->error) {
        ck_assert_int_eq(rc, -1);
        ck_assert_msg(cf->nerrors == 1, "%s: %u errors", c->what, cf->nerrors);
        ck_assert_str_eq(cf->errors->msg, c->error);
    } else {
        ck_assert_msg(rc == 0, "%s: %s", c->what, cf->errors ? cf->errors->msg : "");
        char *got = chains(cf);
        ck_assert_str_eq(got, c->chains);
        free(got);
    }
    arena_free(cf->arena);
    free(cf);
}
END_TEST

START_TEST(test_layout)
{
    static const weir_handler_t core[] = {H("core.balance", WEIR_PHASE_BALANCE, 500),
                                          H("core.error", WEIR_PHASE_ERROR, 900), END};
    static const weir_handler_t t1[] = {H("m1.log", WEIR_PHASE_LOG, 500),
                                        H("m1.acc", WEIR_PHASE_ACCEPT, 500),
                                        H("m1.req", WEIR_PHASE_REQUEST, 500), END};
    weir_conf_t *cf = conf_new();
    descs[0] = (weir_module_t){WEIR_MODULE_HEADER, .name = "m1", .handlers = t1};
    cf->modules[0] = (module_slot_t){.desc = &descs[0]};
    cf->nmodules = 1;
    ck_assert_int_eq(phases_build(cf, core), 0);
    const struct phases *ph = cf->phases;
    ck_assert_ptr_nonnull(ph);
    ck_assert_uint_eq(ph->count, 5);
    static const size_t want_start[WEIR_PHASE_COUNT + 1] = {0, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 5};
    for (int p = 0; p <= WEIR_PHASE_COUNT; p++)
        ck_assert_uint_eq(ph->start[p], want_start[p]);
    ck_assert_str_eq(ph->entries[0].handler->name, "m1.acc");
    ck_assert_uint_eq(ph->entries[0].module, 0);
    ck_assert_str_eq(ph->entries[2].handler->name, "core.balance");
    ck_assert_uint_eq(ph->entries[2].module, SIZE_MAX);
    ck_assert_str_eq(ph->entries[4].handler->name, "core.error");
    arena_free(cf->arena);
    free(cf);
}
END_TEST

START_TEST(test_empty)
{
    weir_conf_t *cf = conf_new();
    ck_assert_int_eq(phases_build(cf, NULL), 0);
    ck_assert_uint_eq(cf->phases->count, 0);
    char *got = chains(cf);
    ck_assert_str_eq(got, "");
    free(got);
    arena_free(cf->arena);
    free(cf);
}
END_TEST

static const struct pname {
    weir_phase_t p;
    const char *name;
} pnames[] = {
    {WEIR_PHASE_ACCEPT, "accept"},
    {WEIR_PHASE_REQUEST, "request"},
    {WEIR_PHASE_ROUTE, "route"},
    {WEIR_PHASE_REWRITE, "rewrite"},
    {WEIR_PHASE_ACCESS, "access"},
    {WEIR_PHASE_BALANCE, "balance"},
    {WEIR_PHASE_UPSTREAM_REQUEST, "upstream_request"},
    {WEIR_PHASE_UPSTREAM_RESPONSE, "upstream_response"},
    {WEIR_PHASE_RESPONSE_BODY, "response_body"},
    {WEIR_PHASE_LOG, "log"},
    {WEIR_PHASE_ERROR, "error"},
};

START_TEST(test_phase_name)
{
    ck_assert_str_eq(phase_name(pnames[_i].p), pnames[_i].name);
}
END_TEST

/* The real cycle_a.so and cycle_b.so, loaded as weir would. */
START_TEST(test_cycle_modules)
{
    const char *dir = getenv("WEIR_TEST_MODULES");
    weir_conf_t *cf = conf_new();
    cf->modules_dir = dir ? dir : "t/modules";
    ck_assert_int_eq(modload_open(cf, &modules_val, "cycle_a", NULL, &cf->modules[0]), 0);
    ck_assert_int_eq(modload_open(cf, &modules_val, "cycle_b", NULL, &cf->modules[1]), 0);
    cf->nmodules = 2;
    ck_assert_int_eq(phases_build(cf, NULL), -1);
    ck_assert_uint_eq(cf->nerrors, 1);
    ck_assert_str_eq(cf->errors->msg, "weir.yaml:2:1: phase 'access': ordering cycle: "
                                      "cycle_a.check -> cycle_b.check -> cycle_a.check");
    /* the chains stay printable for weir -t */
    char *got = chains(cf);
    ck_assert_str_eq(got, "access: cycle_a.check, cycle_b.check\n");
    free(got);
    modload_close(&cf->modules[0]);
    modload_close(&cf->modules[1]);
    arena_free(cf->arena);
    free(cf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("phase");
    TCase *tc = tcase_create("order");
    tcase_add_loop_test(tc, test_order, 0, (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_add_test(tc, test_layout);
    tcase_add_test(tc, test_empty);
    tcase_add_loop_test(tc, test_phase_name, 0, (int)(sizeof(pnames) / sizeof(pnames[0])));
    tcase_add_test(tc, test_cycle_modules);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
