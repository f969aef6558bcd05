/*
 * Test module for the config loader (t/unit/conf_test.c): one directive of
 * every type, in every scope, with defaults and MAIN -> ROUTE inheritance.
 * It also provides a "roundrobin" balancer, standing in for lb_roundrobin so
 * that configs with upstreams load without the real module. A route with
 * `probe_answer: true` is one the probe says it answers (ABI 1.6), so it
 * needs no upstream.
 *
 * conf_test.c repeats the struct layouts below; keep them in step.
 */
#include <stdint.h>
#include <stdio.h>

#include "weir/module.h"

/* one struct for top level and route, as inheritance requires */
struct probe_conf {
    int flag;             /* probe_flag: BOOL, main+route, default on */
    long level;           /* probe_level: INT 1..10, main+route, default 3 */
    const char *label;    /* probe_label: STRING, route, default "none" */
    long items;           /* probe_items: CUSTOM (list length), main+route */
    weir_template_t *tpl; /* probe_tpl: TEMPLATE, route, no default */
    uint64_t window;      /* probe_window: DURATION, main, default 1m */
    int done;             /* set by conf_done */
    int balancers;        /* upstreams initialised by the balancer */
    int answer;           /* probe_answer: BOOL, route: conf_done marks it answered */
    int report;           /* probe_report: BOOL, main: conf_done reports what it saw */
};

struct probe_listener {
    uint64_t buf; /* probe_buf: SIZE, listener, default 4k */
};

struct probe_upstream {
    uint64_t timeout; /* probe_timeout: DURATION, upstream, default 5s */
    long tries;       /* probe_tries: INT 0..5, upstream, no default */
};

#define MR (WEIR_SCOPE_MAIN | WEIR_SCOPE_ROUTE)

static int parse_items(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    if (weir_node_type(node) != WEIR_NODE_SEQUENCE)
        return weir_conf_error(cf, node, "expected a list for 'probe_items'");
    *(long *)field = (long)weir_node_count(node);
    return 0;
}

static const weir_directive_t probe_directives[] = {
    {.key = "probe_flag", .scopes = MR, .type = WEIR_DIRECTIVE_BOOL,
     .offset = offsetof(struct probe_conf, flag), .default_value = "on"},
    {.key = "probe_level", .scopes = MR, .type = WEIR_DIRECTIVE_INT,
     .offset = offsetof(struct probe_conf, level), .min = 1, .max = 10, .default_value = "3"},
    {.key = "probe_label", .scopes = WEIR_SCOPE_ROUTE, .type = WEIR_DIRECTIVE_STRING,
     .offset = offsetof(struct probe_conf, label), .default_value = "none"},
    {.key = "probe_items", .scopes = MR, .type = WEIR_DIRECTIVE_CUSTOM,
     .offset = offsetof(struct probe_conf, items), .size = sizeof(long), .parse = parse_items},
    {.key = "probe_tpl", .scopes = WEIR_SCOPE_ROUTE, .type = WEIR_DIRECTIVE_TEMPLATE,
     .offset = offsetof(struct probe_conf, tpl)},
    {.key = "probe_answer", .scopes = WEIR_SCOPE_ROUTE, .type = WEIR_DIRECTIVE_BOOL,
     .offset = offsetof(struct probe_conf, answer)},
    {.key = "probe_window", .scopes = WEIR_SCOPE_MAIN, .type = WEIR_DIRECTIVE_DURATION,
     .offset = offsetof(struct probe_conf, window), .default_value = "1m"},
    {.key = "probe_report", .scopes = WEIR_SCOPE_MAIN, .type = WEIR_DIRECTIVE_BOOL,
     .offset = offsetof(struct probe_conf, report)},
    {.key = "probe_buf", .scopes = WEIR_SCOPE_LISTENER, .type = WEIR_DIRECTIVE_SIZE,
     .offset = offsetof(struct probe_listener, buf), .default_value = "4k"},
    {.key = "probe_timeout", .scopes = WEIR_SCOPE_UPSTREAM, .type = WEIR_DIRECTIVE_DURATION,
     .offset = offsetof(struct probe_upstream, timeout), .default_value = "5s"},
    {.key = "probe_tries", .scopes = WEIR_SCOPE_UPSTREAM, .type = WEIR_DIRECTIVE_INT,
     .offset = offsetof(struct probe_upstream, tries), .min = 0, .max = 5},
    {.key = NULL},
};

extern const weir_module_t weir_module;

static void *probe_init(weir_conf_t *cf, weir_upstream_t *u)
{
    struct probe_conf *mc = weir_main_conf(cf, &weir_module);
    mc->balancers++;
    return u; /* any non-NULL state */
}

static int probe_pick(weir_request_t *r, weir_upstream_t *u, void *state)
{
    (void)r;
    (void)u;
    (void)state;
    return 0;
}

static const weir_balancer_t probe_balancers[] = {
    {.name = "roundrobin", .init = probe_init, .pick = probe_pick},
    {.name = "probe", .init = probe_init, .pick = probe_pick},
    {.name = NULL},
};

/* With probe_report, conf_done tells what it sees as an error without a
 * position (so it comes last): the tests learn that it ran on a config with
 * errors and which values a refused key left. */
static int probe_conf_done(weir_conf_t *cf)
{
    struct probe_conf *mc = weir_main_conf(cf, &weir_module);
    char levels[128] = "";
    size_t off = 0;
    mc->done = 1;
    for (size_t i = 0; i < weir_conf_route_count(cf); i++) {
        weir_route_t *rt = weir_conf_route(cf, i);
        struct probe_conf *rc = weir_route_conf(rt, &weir_module);
        if (!rc)
            continue;
        rc->done = 1;
        if (rc->answer)
            weir_route_set_answered(rt);
        int n = snprintf(levels + off, sizeof(levels) - off, " %ld", rc->level);
        if (n > 0 && (size_t)n < sizeof(levels) - off)
            off += (size_t)n;
    }
    if (mc->report)
        return weir_conf_error(cf, NULL, "conf_probe saw level %ld, window %llu, routes:%s",
                               mc->level, (unsigned long long)mc->window, levels);
    return 0;
}

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "conf_probe",
    .version = "1.0",
    .conf_size = {
        [WEIR_SCOPE_INDEX_MAIN] = sizeof(struct probe_conf),
        [WEIR_SCOPE_INDEX_LISTENER] = sizeof(struct probe_listener),
        [WEIR_SCOPE_INDEX_UPSTREAM] = sizeof(struct probe_upstream),
        [WEIR_SCOPE_INDEX_ROUTE] = sizeof(struct probe_conf),
    },
    .directives = probe_directives,
    .balancers = probe_balancers,
    .conf_done = probe_conf_done,
};
