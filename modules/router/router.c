/*
 * Module router: picks the route of a request by host, path and method.
 *
 * Route keys (all optional):
 *   host:    "api.example.com", "*.example.com", or a list of them
 *   path:    "/prefix/", "=/exact", "^~/prefix/" (no regexes after it),
 *            "~regex", "~*caseless-regex"
 *   methods: [GET, POST]
 *
 * The keys are parsed and checked per route as they are read, so each error
 * points at its own YAML node; conf_done then builds one route_table for the
 * whole generation. The matching rules (nginx's location order inside host
 * tiers, and why hosts are tiers) are written at the top of route_table.h.
 *
 * Config errors besides bad values: a route with the host, path and methods
 * of an earlier one, which could never be chosen (the error is at the
 * second and names the first's position). Hosts and methods compare as
 * sets; "/a" and "^~/a" are one prefix (nginx: "duplicate location");
 * methods lists that overlap but differ are allowed (the first route takes
 * the methods both name).
 *
 * No route matching answers 404, or 405 with an Allow header when routes for
 * the host and path exist but none takes the method (a 404 would tell the
 * client the resource does not exist).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "weir/module.h"

#include "route_table.h"

WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

struct router_hosts {
    const char **v; /* lowercased, conf lifetime */
    size_t n;
};

struct router_path {
    int set;
    enum route_path_kind kind;
    int caseless; /* "~*" */
    int stop;     /* "^~" */
    const char *text; /* without the "=", "^~", "~" or "~*" marker */
    size_t len;
};

struct router_methods {
    const char **v; /* uppercased, conf lifetime */
    size_t n;
};

struct router_route_conf {
    struct router_hosts hosts;
    struct router_path path;
    struct router_methods methods;
};

struct router_main_conf {
    struct route_table *table; /* malloc'ed; freed by the conf_free hook */
    weir_route_t **routes;     /* route index -> route */
    size_t nroutes;
};

/* The generation this process serves. The handler only gets the request, and
 * the API has no request -> configuration accessor, so worker_init records
 * the generation each worker runs (conf_done too, for a core that serves
 * from the process that loaded the config). */
static const struct router_main_conf *active;

/* ---------------------------------------------------------------- parsing */

/* The scalar items of a scalar-or-list node: *items is the node itself or its
 * children. -1 after an error for anything else. */
static int scalar_items(weir_conf_t *cf, const weir_node_t *node, const char *key,
                        size_t *count)
{
    switch (weir_node_type(node)) {
    case WEIR_NODE_SCALAR:
        *count = 1;
        return 0;
    case WEIR_NODE_SEQUENCE:
        *count = weir_node_count(node);
        if (*count == 0)
            return weir_conf_error(cf, node, "%s: empty list", key);
        return 0;
    case WEIR_NODE_NULL:
        return weir_conf_error(cf, node, "%s: empty value", key);
    default:
        return weir_conf_error(cf, node, "%s: expected a string or a list of strings", key);
    }
}

static const weir_node_t *item_at(const weir_node_t *node, size_t i)
{
    return weir_node_type(node) == WEIR_NODE_SCALAR ? node : weir_node_child(node, i);
}

/* A conf-lifetime copy of s with ASCII case folded up or down. */
static const char *fold_copy(weir_conf_t *cf, const char *s, int upper)
{
    char *c = weir_conf_strdup(cf, s);

    for (char *p = c; p != NULL && *p != '\0'; p++) {
        if (upper && *p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
        else if (!upper && *p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    return c;
}

/* Shared by host and methods: check each item, store folded copies. */
static int parse_list(weir_conf_t *cf, const weir_node_t *node, const char *key, int upper,
                      int (*check)(const char *, size_t, char *, size_t), const char ***out,
                      size_t *nout)
{
    const char **v;
    size_t n;
    int rc = 0;

    if (scalar_items(cf, node, key, &n) < 0)
        return -1;
    v = weir_conf_alloc(cf, n * sizeof(*v));
    if (v == NULL)
        return weir_conf_error(cf, node, "%s: out of memory", key);
    /* go on after a bad item, so one run reports every bad item */
    for (size_t i = 0; i < n; i++) {
        const weir_node_t *item = item_at(node, i);
        const char *text = weir_node_scalar(item);
        char why[256];

        if (text == NULL) {
            rc = weir_conf_error(cf, item, "%s: expected a string", key);
            continue;
        }
        if (check(text, strlen(text), why, sizeof(why)) < 0) {
            rc = weir_conf_error(cf, item, "%s \"%s\": %s", key, text, why);
            continue;
        }
        v[i] = fold_copy(cf, text, upper);
        if (v[i] == NULL)
            return weir_conf_error(cf, item, "%s: out of memory", key);
    }
    if (rc < 0)
        return -1;
    *out = v;
    *nout = n;
    return 0;
}

static int parse_host(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    struct router_hosts *h = field;

    return parse_list(cf, node, "host", 0, route_host_check, &h->v, &h->n);
}

static int parse_methods(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    struct router_methods *m = field;

    return parse_list(cf, node, "methods", 1, route_method_check, &m->v, &m->n);
}

static int parse_path(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    struct router_path *p = field;
    const char *text = weir_node_scalar(node);
    char why[512];

    if (weir_node_type(node) != WEIR_NODE_SCALAR || text == NULL)
        return weir_conf_error(cf, node, "path: expected a string (\"/prefix\", \"=/exact\", "
                                         "\"^~/prefix\", \"~regex\" or \"~*regex\")");
    p->kind = ROUTE_PATH_PREFIX;
    p->caseless = 0;
    p->stop = 0;
    p->text = text;
    if (text[0] == '^' && text[1] == '~') {
        p->stop = 1;
        p->text = text + 2;
    } else if (text[0] == '=') {
        p->kind = ROUTE_PATH_EXACT;
        p->text = text + 1;
    } else if (text[0] == '~') {
        p->kind = ROUTE_PATH_REGEX;
        p->caseless = text[1] == '*';
        p->text = text + 1 + p->caseless;
    }
    p->len = strlen(p->text);
    /* compiles a regex once here, so its error points at this node; the table
     * compiles it again (with JIT) in conf_done */
    if (route_path_check(p->kind, p->text, p->len, p->caseless, why, sizeof(why)) < 0)
        return weir_conf_error(cf, node, "path \"%s\": %s", text, why);
    p->text = weir_conf_strdup(cf, p->text); /* nodes die after conf_done */
    if (p->text == NULL)
        return weir_conf_error(cf, node, "path: out of memory");
    p->set = 1;
    return 0;
}

/* -------------------------------------------------------------- lifecycle */

/* The table's view of a route: the router's keys, none when it set none. */
static struct route_spec route_spec_of(const weir_route_t *rt, size_t i)
{
    const struct router_route_conf *rconf = weir_route_conf(rt, &weir_module);
    struct route_spec spec = {.index = (int)i};

    if (rconf == NULL)
        return spec;
    spec.hosts = rconf->hosts.v;
    spec.nhosts = rconf->hosts.n;
    spec.methods = rconf->methods.v;
    spec.nmethods = rconf->methods.n;
    if (rconf->path.set) {
        spec.path_kind = rconf->path.kind;
        spec.path = rconf->path.text;
        spec.path_len = rconf->path.len;
        spec.caseless = rconf->path.caseless;
        spec.stop = rconf->path.stop;
    }
    return spec;
}

/* A second route with the host, path and methods of an earlier one could
 * never be chosen: an error at the second, naming the first. */
static int duplicate_error(weir_conf_t *cf, weir_route_t *rt, const weir_route_t *first)
{
    const weir_node_t *at = weir_route_node(first);

    return weir_conf_error(cf, weir_route_node(rt),
                           "route '%s' has the same host, path and methods as route '%s' "
                           "(%s:%u:%u), which always wins: remove one, or change its host, "
                           "path or methods (methods lists that overlap but differ are "
                           "allowed: the first route takes the methods both name)",
                           weir_route_name(rt), weir_route_name(first), weir_node_file(at),
                           weir_node_line(at), weir_node_column(at));
}

static int router_conf_done(weir_conf_t *cf)
{
    struct router_main_conf *mc = weir_main_conf(cf, &weir_module);
    size_t n = weir_conf_route_count(cf);
    struct route_table *t;
    char err[512];
    int rc = 0;

    if (mc == NULL)
        return -1;
    t = route_table_new();
    mc->routes = weir_conf_alloc(cf, (n ? n : 1) * sizeof(*mc->routes));
    if (t == NULL || mc->routes == NULL) {
        route_table_free(t);
        return -1; /* the core records a generic error */
    }
    for (size_t i = 0; i < n; i++) {
        weir_route_t *rt = weir_conf_route(cf, i);
        struct route_spec spec = route_spec_of(rt, i);
        int dup = route_table_duplicate(t, &spec);

        mc->routes[i] = rt;
        if (dup >= 0)
            rc = duplicate_error(cf, rt, mc->routes[dup]);
        if (route_table_add(t, &spec, err, sizeof(err)) < 0)
            rc = weir_conf_error(cf, weir_route_node(rt), "route \"%s\": %s",
                                 weir_route_name(rt), err);
    }
    if (rc == 0 && route_table_build(t, err, sizeof(err)) < 0)
        rc = -1;
    if (rc < 0) {
        route_table_free(t);
        return -1;
    }
    mc->table = t;
    mc->nroutes = n;
    active = mc;
    return 0;
}

static int router_worker_init(const weir_conf_t *cf)
{
    active = weir_main_conf(cf, &weir_module);
    return active != NULL && active->table != NULL ? 0 : -1;
}

static void router_conf_free(weir_conf_t *cf)
{
    struct router_main_conf *mc = weir_main_conf(cf, &weir_module);

    if (mc == NULL)
        return;
    if (active == mc)
        active = NULL;
    route_table_free(mc->table);
    mc->table = NULL;
}

/* ---------------------------------------------------------------- handler */

/* No route took the request: 405 with Allow when routes for its host and
 * path exist for other methods (RFC 9110 15.5.6), else 404. */
static weir_result_t router_miss(weir_request_t *r, const struct router_main_conf *mc,
                                 weir_str_t host, weir_str_t path)
{
    char allow[512];
    size_t n = route_table_allowed(mc->table, host.data, host.len, path.data, path.len, allow,
                                   sizeof(allow));
    weir_str_t value = {.data = allow, .len = strlen(allow)};

    if (n > 0 && weir_headers_set(r, weir_response_headers(r), WEIR_STR("Allow"), value) < 0)
        return WEIR_ERROR;
    if (weir_respond(r, n > 0 ? 405 : 404, (weir_str_t){.data = "", .len = 0}) < 0)
        return WEIR_ERROR;
    return WEIR_RESPOND;
}

static weir_result_t router_match(weir_request_t *r)
{
    const struct router_main_conf *mc = active;
    weir_str_t host = weir_request_host(r);
    weir_str_t path = weir_request_path(r);
    weir_str_t method = weir_request_method(r);
    int idx;

    if (mc == NULL || mc->table == NULL) {
        weir_request_log(r, &weir_module, WEIR_LOG_ERROR, "no route table in this process");
        return WEIR_ERROR;
    }
    if (host.data == NULL)
        host = WEIR_STR("");
    if (path.data == NULL)
        path = WEIR_STR("");
    if (method.data == NULL)
        method = WEIR_STR("");
    idx = route_table_match(mc->table, host.data, host.len, path.data, path.len, method.data,
                            method.len);
    if (idx < 0 || (size_t)idx >= mc->nroutes)
        return router_miss(r, mc, host, path);
    weir_request_set_route(r, mc->routes[idx]);
    return WEIR_DONE;
}

/* ------------------------------------------------------------- descriptor */

static const weir_directive_t router_directives[] = {
    {
        .key = "host",
        .scopes = WEIR_SCOPE_ROUTE,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(struct router_route_conf, hosts),
        .size = sizeof(struct router_hosts),
        .parse = parse_host,
        .help = "host name, \"*.suffix\" wildcard, or a list of them",
    },
    {
        .key = "path",
        .scopes = WEIR_SCOPE_ROUTE,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(struct router_route_conf, path),
        .size = sizeof(struct router_path),
        .parse = parse_path,
        .help = "\"/prefix\", \"=/exact\", \"^~/prefix\" (no regex after it), \"~regex\" or "
                "\"~*caseless-regex\"",
    },
    {
        .key = "methods",
        .scopes = WEIR_SCOPE_ROUTE,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(struct router_route_conf, methods),
        .size = sizeof(struct router_methods),
        .parse = parse_methods,
        .help = "list of HTTP methods the route accepts, e.g. [GET, POST]",
    },
    {.key = NULL},
};

static const weir_handler_t router_handlers[] = {
    {
        .name = "router.match",
        .phase = WEIR_PHASE_ROUTE,
        .priority = WEIR_PRIORITY_MIDDLE,
        .fn = router_match,
    },
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "router",
    .version = "1.0.0",
    .conf_size =
        {
            [WEIR_SCOPE_INDEX_MAIN] = sizeof(struct router_main_conf),
            [WEIR_SCOPE_INDEX_ROUTE] = sizeof(struct router_route_conf),
        },
    .directives = router_directives,
    .handlers = router_handlers,
    .conf_done = router_conf_done,
    .worker_init = router_worker_init,
    .conf_free = router_conf_free,
};
