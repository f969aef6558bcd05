/*
 * Configuration loader: YAML tree -> weir_conf_t, with the core schema of
 * SPEC §4 and the directive tables of the loaded modules.
 *
 * Order of work in conf_load (each step keeps going after an error, so one
 * run reports everything it can):
 *   1. read the YAML (with includes)
 *   2. modules_dir and modules: open every module
 *   3. variable registry, core variables, modules' conf_init hooks
 *   4. every scope: top level, limits, listeners, upstreams, routes; each key
 *      goes to the core schema, else to a loaded module's directive, else is
 *      an error ("provided by module X" or "unknown key, did you mean")
 *   5. module directive defaults, then MAIN -> ROUTE inheritance
 *   6. route -> upstream, upstream -> balancer by name
 *   7. phase chains; modules' conf_done hooks; every route has an upstream
 *      or a module that answers it; balancers' init per upstream
 * Each step runs even when an earlier one found errors, so `weir -t` shows
 * every mistake of a file in one run; a step only skips what an earlier
 * error broke, and says nothing more about it (a route naming an upstream
 * whose entry was refused gets no "unknown upstream" on top). A value that
 * was refused counts as absent: its field is zeroed and then gets the
 * default or the inherited top-level value, so modules' conf_done hooks
 * (which run on a config with errors too, see module.h) see only values
 * that parsed. Only what sets the generation up rather than checks it waits
 * for an error-free config: peer health zones and balancers' init.
 */
#include "conf.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "metrics.h"
#include "metrics_core.h"
#include "modload.h"
#include "phase.h"
#include "privs.h"
#include "vars.h"
#include "weir_build.h"

#ifndef WEIR_MODULES_DIR
#define WEIR_MODULES_DIR WEIR_DEFAULT_MODULES_DIR_FALLBACK
#endif

#define ERROR_PAGE_MAX (1024 * 1024)

static const char *const scope_words[WEIR_SCOPE_COUNT] = {"top level", "listener", "upstream",
                                                          "route"};

/* A directive of a loaded module, numbered across all modules so "was set"
 * can be one byte per (scope instance, directive). */
struct dref {
    size_t module;
    const weir_directive_t *d;
};

/* One scope instance while it is read. */
struct inst {
    int sidx;           /* WEIR_SCOPE_INDEX_* */
    void **mconf;       /* per module: conf struct for this instance, or NULL */
    unsigned char *set; /* per dref: the key appeared */
    const weir_node_t *node;
};

struct loader {
    weir_conf_t *cf;
    const conf_options_t *opt;
    struct dref *dirs;
    size_t ndirs;
    struct inst main;
    struct inst *listeners, *upstreams, *routes;
    const weir_node_t **route_upstream;   /* per route: the `upstream:` node */
    const weir_node_t **upstream_balancer; /* per upstream: the `balancer:` node */
    const weir_node_t **upstream_key;      /* per upstream: its name, where errors point */
    const char **failed; /* names in modules: that did not load */
    size_t nfailed;
    /* Upstreams whose entry was refused, so routes naming them stay quiet;
     * all of them when `upstreams:` itself was. */
    const char **broken_upstreams;
    size_t nbroken_upstreams;
    int upstreams_refused;
};

/* ------------------------------------------------------------ helpers */

static size_t mod_conf_size(const weir_module_t *m, int sidx)
{
    return MODULE_HAS(m, conf_size) ? m->conf_size[sidx] : 0;
}

static const weir_directive_t *mod_directives(const weir_module_t *m)
{
    return MODULE_HAS(m, directives) ? m->directives : NULL;
}

static const weir_balancer_t *mod_balancers(const weir_module_t *m)
{
    return MODULE_HAS(m, balancers) ? m->balancers : NULL;
}

/* Scalar text of a node that must be a string. */
static const char *want_string(weir_conf_t *cf, const weir_node_t *n)
{
    if (n->type == WEIR_NODE_SCALAR)
        return n->scalar;
    weir_conf_error(cf, n, "expected a string for '%s', got %s", n->key ? n->key : "?",
                    conf_node_type_word(n));
    return NULL;
}

static int want_kind(weir_conf_t *cf, const weir_node_t *n, weir_node_type_t type)
{
    if (n->type == type)
        return 0;
    return weir_conf_error(cf, n, "expected %s for '%s', got %s",
                           type == WEIR_NODE_MAPPING ? "a mapping" : "a list",
                           n->key ? n->key : "?", conf_node_type_word(n));
}

static int name_failed(const struct loader *L, const char *module)
{
    for (size_t i = 0; i < L->nfailed; i++)
        if (strcmp(L->failed[i], module) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------- core key tables */

typedef int (*core_fn)(struct loader *L, void *obj, const weir_node_t *v);

struct core_key {
    const char *key;
    core_fn fn;
};

/* Reports an unknown key, with a suggestion among `cands`. */
static void unknown_key(weir_conf_t *cf, const weir_node_t *k, const char *word,
                        const char *const *cands, size_t n)
{
    const char *s = conf_suggest(k->scalar, cands, n);
    if (s)
        weir_conf_error(cf, k, "unknown key '%s' in %s (did you mean '%s'?)", k->scalar, word, s);
    else
        weir_conf_error(cf, k, "unknown key '%s' in %s", k->scalar, word);
}

static const struct core_key *find_core(const struct core_key *t, const char *key)
{
    for (; t && t->key; t++)
        if (strcmp(t->key, key) == 0)
            return t;
    return NULL;
}

/* A mapping whose keys are all the core's (limits, error_log, a server). */
static int read_core_map(struct loader *L, const weir_node_t *n, const char *word,
                         const struct core_key *table, void *obj)
{
    weir_conf_t *cf = L->cf;
    int rc = 0;

    if (n->type == WEIR_NODE_NULL) /* "limits:" with nothing: all defaults */
        return 0;
    if (want_kind(cf, n, WEIR_NODE_MAPPING) < 0)
        return -1;
    for (size_t i = 0; i < n->count; i++) {
        const weir_node_t *k = n->keys[i];
        const struct core_key *ck = find_core(table, k->scalar);
        if (ck) {
            if (ck->fn(L, obj, n->items[i]) < 0)
                rc = -1;
            continue;
        }
        const char *cands[32];
        size_t nc = 0;
        for (const struct core_key *t = table; t->key && nc < 32; t++)
            cands[nc++] = t->key;
        unknown_key(cf, k, word, cands, nc);
        rc = -1;
    }
    return rc;
}

/* ---------------------------------------------------------------- limits */

#define LIMIT_FN(field, reader)                                                            \
    static int limit_##field(struct loader *L, void *obj, const weir_node_t *v)            \
    {                                                                                      \
        return reader(L->cf, v, &((limits_t *)obj)->field);                                \
    }

static int node_count(weir_conf_t *cf, const weir_node_t *v, long min, uint64_t *out)
{
    long x;
    if (weir_node_int(cf, v, min, LONG_MAX, &x) < 0)
        return -1;
    *out = (uint64_t)x;
    return 0;
}

static int node_count0(weir_conf_t *cf, const weir_node_t *v, uint64_t *out)
{
    return node_count(cf, v, 0, out);
}

static int node_count1(weir_conf_t *cf, const weir_node_t *v, uint64_t *out)
{
    return node_count(cf, v, 1, out);
}

LIMIT_FN(client_header_timeout, weir_node_duration_ms)
LIMIT_FN(client_body_timeout, weir_node_duration_ms)
LIMIT_FN(keepalive_timeout, weir_node_duration_ms)
LIMIT_FN(send_timeout, weir_node_duration_ms)
LIMIT_FN(keepalive_requests, node_count0)
LIMIT_FN(max_header_size, weir_node_size)
LIMIT_FN(max_body_size, weir_node_size)
LIMIT_FN(max_connections, node_count1)
LIMIT_FN(shutdown_timeout, weir_node_duration_ms)

static const struct core_key limit_keys[] = {
    {"client_header_timeout", limit_client_header_timeout},
    {"client_body_timeout", limit_client_body_timeout},
    {"keepalive_timeout", limit_keepalive_timeout},
    {"send_timeout", limit_send_timeout},
    {"keepalive_requests", limit_keepalive_requests},
    {"max_header_size", limit_max_header_size},
    {"max_body_size", limit_max_body_size},
    {"max_connections", limit_max_connections},
    {"shutdown_timeout", limit_shutdown_timeout},
    {NULL, NULL},
};

static const limits_t default_limits = {
    .client_header_timeout = 10000,
    .client_body_timeout = 60000,
    .keepalive_timeout = 75000,
    .send_timeout = 60000,
    .keepalive_requests = 10000,
    .max_header_size = 16 * 1024,
    .max_body_size = 0,
    .max_connections = 65536,
    .shutdown_timeout = 30000,
};

/* ------------------------------------------------------ module directives */

size_t conf_field_size(const weir_directive_t *d)
{
    switch (d->type) {
    case WEIR_DIRECTIVE_BOOL:
        return sizeof(int);
    case WEIR_DIRECTIVE_INT:
        return sizeof(long);
    case WEIR_DIRECTIVE_SIZE:
    case WEIR_DIRECTIVE_DURATION:
        return sizeof(uint64_t);
    case WEIR_DIRECTIVE_STRING:
        return sizeof(char *);
    case WEIR_DIRECTIVE_TEMPLATE:
        return sizeof(weir_template_t *);
    case WEIR_DIRECTIVE_CUSTOM:
        return d->size;
    }
    return 0;
}

/* Parses v into the directive's field of conf. Values are parsed into a
 * local first and copied, so a module's struct need not be aligned for us. */
static int parse_directive(struct loader *L, const struct dref *r, int sidx, void *conf,
                           const weir_node_t *v)
{
    weir_conf_t *cf = L->cf;
    const weir_directive_t *d = r->d;
    const weir_module_t *m = cf->modules[r->module].desc;
    size_t fsize = conf_field_size(d);
    unsigned char *field;

    if (!conf || d->offset + fsize > mod_conf_size(m, sidx))
        return weir_conf_error(cf, v,
                               "module '%s' declares '%s' in %s but its conf struct there "
                               "is too small (a bug in the module)",
                               m->name, d->key, scope_words[sidx]);
    field = (unsigned char *)conf + d->offset;

    switch (d->type) {
    case WEIR_DIRECTIVE_BOOL: {
        int b;
        if (weir_node_bool(cf, v, &b) < 0)
            return -1;
        memcpy(field, &b, sizeof(b));
        return 0;
    }
    case WEIR_DIRECTIVE_INT: {
        long x, min = d->min, max = d->max;
        if (min == 0 && max == 0) { /* no range declared */
            min = LONG_MIN;
            max = LONG_MAX;
        }
        if (weir_node_int(cf, v, min, max, &x) < 0)
            return -1;
        memcpy(field, &x, sizeof(x));
        return 0;
    }
    case WEIR_DIRECTIVE_SIZE:
    case WEIR_DIRECTIVE_DURATION: {
        uint64_t x;
        int rc = d->type == WEIR_DIRECTIVE_SIZE ? weir_node_size(cf, v, &x)
                                                : weir_node_duration_ms(cf, v, &x);
        if (rc < 0)
            return -1;
        memcpy(field, &x, sizeof(x));
        return 0;
    }
    case WEIR_DIRECTIVE_STRING: {
        const char *s = NULL;
        if (v->type != WEIR_NODE_NULL) {
            if (!want_string(cf, v))
                return -1;
            s = v->scalar;
        }
        memcpy(field, &s, sizeof(s));
        return 0;
    }
    case WEIR_DIRECTIVE_TEMPLATE: {
        weir_template_t *t = NULL;
        if (v->type != WEIR_NODE_NULL) {
            const char *s = want_string(cf, v);
            if (!s)
                return -1;
            t = weir_template_compile(cf, v, s);
            if (!t)
                return -1;
        }
        memcpy(field, &t, sizeof(t));
        return 0;
    }
    case WEIR_DIRECTIVE_CUSTOM:
        if (!d->parse)
            return weir_conf_error(cf, v, "module '%s' has no parser for '%s' (a bug in the module)",
                                   m->name, d->key);
        return d->parse(cf, v, field);
    }
    return weir_conf_error(cf, v, "module '%s' gives '%s' an unknown type %d", m->name, d->key,
                           (int)d->type);
}

static void collect_directives(struct loader *L)
{
    weir_conf_t *cf = L->cf;
    size_t n = 0;

    for (size_t i = 0; i < cf->nmodules; i++)
        for (const weir_directive_t *d = mod_directives(cf->modules[i].desc); d && d->key; d++)
            n++;
    L->dirs = weir_conf_alloc(cf, (n ? n : 1) * sizeof(*L->dirs));
    if (!L->dirs)
        return;
    for (size_t i = 0; i < cf->nmodules; i++)
        for (const weir_directive_t *d = mod_directives(cf->modules[i].desc); d && d->key; d++)
            L->dirs[L->ndirs++] = (struct dref){.module = i, .d = d};
}

/* Fresh conf structs of every module for one scope instance. */
static int inst_init(struct loader *L, struct inst *in, int sidx, const weir_node_t *node)
{
    weir_conf_t *cf = L->cf;

    in->sidx = sidx;
    in->node = node;
    in->set = weir_conf_alloc(cf, L->ndirs ? L->ndirs : 1);
    in->mconf = weir_conf_alloc(cf, (cf->nmodules ? cf->nmodules : 1) * sizeof(void *));
    if (!in->set || !in->mconf)
        return -1;
    for (size_t i = 0; i < cf->nmodules; i++) {
        size_t sz = mod_conf_size(cf->modules[i].desc, sidx);
        if (sidx == WEIR_SCOPE_INDEX_MAIN) {
            in->mconf[i] = cf->modules[i].main_conf;
            continue;
        }
        if (sz && !(in->mconf[i] = weir_conf_alloc(cf, sz)))
            return -1;
    }
    return 0;
}


/* A refused value counts as absent: a parser may have left half a value in
 * the field, so it is zeroed, and apply_defaults gives it the default or the
 * inherited value like any key that is not there. */
static void forget_value(struct loader *L, struct inst *in, size_t i)
{
    const struct dref *r = &L->dirs[i];
    void *conf = in->mconf[r->module];
    size_t fs = conf_field_size(r->d);

    in->set[i] = 0;
    if (conf && r->d->offset + fs <= mod_conf_size(L->cf->modules[r->module].desc, in->sidx))
        memset((char *)conf + r->d->offset, 0, fs);
}

/* One key of a scope mapping that the core schema does not own. */
static int module_key(struct loader *L, struct inst *in, const weir_node_t *k,
                      const weir_node_t *v, const struct core_key *core)
{
    weir_conf_t *cf = L->cf;
    unsigned bit = 1u << in->sidx;
    const char *word = scope_words[in->sidx];
    const struct dref *elsewhere = NULL;

    for (size_t i = 0; i < L->ndirs; i++) {
        const struct dref *r = &L->dirs[i];
        if (strcmp(r->d->key, k->scalar) != 0)
            continue;
        if (!(r->d->scopes & bit)) {
            elsewhere = r;
            continue;
        }
        in->set[i] = 1;
        if (parse_directive(L, r, in->sidx, in->mconf[r->module], v) == 0)
            return 0;
        forget_value(L, in, i);
        return -1;
    }

    const char *owner = modload_known_owner(bit, k->scalar);
    if (owner) {
        if (name_failed(L, owner))
            return -1; /* its load failure was reported already */
        return weir_conf_error(cf, k, "'%s' is provided by module '%s', which is not loaded",
                               k->scalar, owner);
    }
    if (elsewhere) {
        char where[128] = "";
        size_t off = 0;
        for (int s = 0; s < WEIR_SCOPE_COUNT; s++) {
            if (!(elsewhere->d->scopes & (1u << s)))
                continue;
            int w = snprintf(where + off, sizeof(where) - off, "%s%s", off ? ", " : "",
                             scope_words[s]);
            if (w < 0 || (size_t)w >= sizeof(where) - off)
                break;
            off += (size_t)w;
        }
        return weir_conf_error(cf, k, "'%s' is not allowed in %s (module '%s' accepts it in: %s)",
                               k->scalar, word, cf->modules[elsewhere->module].desc->name, where);
    }

    size_t cap = 64 + L->ndirs, nc = 0;
    const char **cands = malloc(cap * sizeof(*cands));
    if (!cands)
        return weir_conf_error(cf, k, "unknown key '%s' in %s", k->scalar, word);
    for (const struct core_key *t = core; t && t->key && nc < cap; t++)
        cands[nc++] = t->key;
    for (size_t i = 0; i < L->ndirs && nc < cap; i++)
        if (L->dirs[i].d->scopes & bit)
            cands[nc++] = L->dirs[i].d->key;
    nc += modload_known_keys(bit, cands + nc, cap - nc);
    unknown_key(cf, k, word, cands, nc);
    free(cands);
    return -1;
}

/* A scope mapping: core keys first, then modules' directives. */
static int read_scope(struct loader *L, struct inst *in, const struct core_key *core, void *obj)
{
    const weir_node_t *n = in->node;
    int rc = 0;

    for (size_t i = 0; i < n->count; i++) {
        const weir_node_t *k = n->keys[i], *v = n->items[i];
        const struct core_key *ck = find_core(core, k->scalar);
        int r = ck ? (ck->fn ? ck->fn(L, obj, v) : 0) : module_key(L, in, k, v, core);
        if (r < 0)
            rc = -1;
    }
    return rc;
}

/* A synthetic scalar at the scope's position, so a bad default (a module
 * bug) still points somewhere useful. */
static const weir_node_t *default_node(struct loader *L, const struct inst *in,
                                       const weir_directive_t *d)
{
    weir_node_t *n = weir_conf_alloc(L->cf, sizeof(*n));
    const char *t = d->default_value;
    if (!n)
        return NULL;
    n->file = in->node->file;
    n->line = in->node->line;
    n->column = in->node->column;
    n->key = d->key;
    if (!*t || strcmp(t, "~") == 0 || strcasecmp(t, "null") == 0) {
        n->type = WEIR_NODE_NULL;
        n->scalar = "";
    } else {
        n->type = WEIR_NODE_SCALAR;
        n->scalar = t;
    }
    return n;
}

static void apply_defaults(struct loader *L, struct inst *in)
{
    weir_conf_t *cf = L->cf;
    unsigned bit = 1u << in->sidx;

    for (size_t i = 0; i < L->ndirs; i++) {
        const struct dref *r = &L->dirs[i];
        const weir_directive_t *d = r->d;
        void *conf = in->mconf[r->module];
        if (!(d->scopes & bit) || in->set[i])
            continue;
        if (in->sidx == WEIR_SCOPE_INDEX_ROUTE && (d->scopes & WEIR_SCOPE_MAIN)) {
            /* inherit the top-level value (set or default) */
            void *main = cf->modules[r->module].main_conf;
            const weir_module_t *m = cf->modules[r->module].desc;
            size_t fs = conf_field_size(d);
            if (main && conf && d->offset + fs <= mod_conf_size(m, WEIR_SCOPE_INDEX_MAIN) &&
                d->offset + fs <= mod_conf_size(m, WEIR_SCOPE_INDEX_ROUTE))
                memcpy((char *)conf + d->offset, (char *)main + d->offset, fs);
            continue;
        }
        if (!d->default_value)
            continue;
        const weir_node_t *n = default_node(L, in, d);
        if (n)
            parse_directive(L, r, in->sidx, conf, n);
    }
}

/* -------------------------------------------------------------- top level */

static int top_workers(struct loader *L, void *obj, const weir_node_t *v)
{
    long n;
    (void)obj;
    if (v->type == WEIR_NODE_SCALAR && strcmp(v->scalar, "auto") == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        L->cf->workers = cpus > 0 ? (unsigned)cpus : 1;
        L->cf->workers_auto = 1;
        return 0;
    }
    if (v->type == WEIR_NODE_SCALAR && v->scalar[0] >= '0' && v->scalar[0] <= '9') {
        if (weir_node_int(L->cf, v, 1, 1024, &n) < 0)
            return -1;
        L->cf->workers = (unsigned)n;
        L->cf->workers_auto = 0;
        return 0;
    }
    return weir_conf_error(L->cf, v, "invalid value '%s' for 'workers' (expected auto or 1..1024)",
                           v->type == WEIR_NODE_SCALAR ? v->scalar : conf_node_type_word(v));
}

static int top_pid_file(struct loader *L, void *obj, const weir_node_t *v)
{
    const char *s = want_string(L->cf, v);
    (void)obj;
    if (!s)
        return -1;
    L->cf->pid_file = conf_resolve_path(L->cf, s);
    return 0;
}

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error"};

const char *conf_level_name(int level)
{
    return level >= 0 && level < 5 ? level_names[level] : "info";
}

static int log_path(struct loader *L, void *obj, const weir_node_t *v)
{
    const char *s = want_string(L->cf, v);
    (void)obj;
    if (!s)
        return -1;
    L->cf->error_log = strcmp(s, "stderr") == 0 ? "stderr" : conf_resolve_path(L->cf, s);
    return 0;
}

static int log_level(struct loader *L, void *obj, const weir_node_t *v)
{
    const char *s = want_string(L->cf, v);
    (void)obj;
    if (!s)
        return -1;
    for (int i = 0; i < 5; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            L->cf->error_log_level = i;
            return 0;
        }
    }
    return weir_conf_error(L->cf, v,
                           "invalid level '%s' for 'level' (expected debug, info, notice, warn "
                           "or error)",
                           s);
}

static const struct core_key error_log_keys[] = {
    {"path", log_path},
    {"level", log_level},
    {NULL, NULL},
};

static int top_error_log(struct loader *L, void *obj, const weir_node_t *v)
{
    if (v->type == WEIR_NODE_SCALAR) /* a bare path is a convenient short form */
        return log_path(L, obj, v);
    return read_core_map(L, v, "error_log", error_log_keys, NULL);
}

static int top_error_page(struct loader *L, void *obj, const weir_node_t *v)
{
    weir_conf_t *cf = L->cf;
    const char *s, *path;
    FILE *fp = NULL;
    char *buf = NULL;
    size_t n;
    (void)obj;

    if (v->type == WEIR_NODE_NULL)
        return 0;
    if (!(s = want_string(cf, v)) || !(path = conf_resolve_path(cf, s)))
        return -1;
    fp = fopen(path, "rb");
    if (!fp)
        return weir_conf_error(cf, v, "cannot read error_page '%s': %s", s, strerror(errno));
    buf = weir_conf_alloc(cf, ERROR_PAGE_MAX + 1);
    if (!buf)
        goto fail;
    n = fread(buf, 1, ERROR_PAGE_MAX + 1, fp);
    if (ferror(fp)) {
        weir_conf_error(cf, v, "cannot read error_page '%s': %s", s, strerror(errno));
        goto fail;
    }
    if (n > ERROR_PAGE_MAX) {
        weir_conf_error(cf, v, "error_page '%s' is larger than 1 MiB", s);
        goto fail;
    }
    buf[n] = '\0';
    cf->error_page = buf;
    cf->error_page_path = path;
    fclose(fp);
    return 0;

fail:
    fclose(fp);
    return -1;
}

static int top_metrics_max_series(struct loader *L, void *obj, const weir_node_t *v)
{
    long n;
    (void)obj;
    if (weir_node_int(L->cf, v, METRICS_MAX_SERIES_MIN, METRICS_MAX_SERIES_MAX, &n) < 0)
        return -1;
    L->cf->metrics_max_series = (uint64_t)n;
    L->cf->metrics_max_series_node = v;
    return 0;
}

static int top_limits(struct loader *L, void *obj, const weir_node_t *v)
{
    (void)obj;
    return read_core_map(L, v, "limits", limit_keys, &L->cf->limits);
}

static int read_listeners(struct loader *L, const weir_node_t *v);
static int read_upstreams(struct loader *L, const weir_node_t *v);
static int read_routes(struct loader *L, const weir_node_t *v);

static int top_listeners(struct loader *L, void *obj, const weir_node_t *v)
{
    (void)obj;
    return read_listeners(L, v);
}

static int top_upstreams(struct loader *L, void *obj, const weir_node_t *v)
{
    (void)obj;
    return read_upstreams(L, v);
}

static int top_routes(struct loader *L, void *obj, const weir_node_t *v)
{
    (void)obj;
    return read_routes(L, v);
}

/* modules_dir and modules were read before the modules were opened, and
 * limits before the listeners that copy them; user and group are read
 * together (privs_conf): no-op entries (fn NULL). */
static const struct core_key top_keys[] = {
    {"workers", top_workers},
    {"pid_file", top_pid_file},
    {"error_log", top_error_log},
    {"user", NULL},
    {"group", NULL},
    {"modules_dir", NULL},
    {"modules", NULL},
    {"limits", NULL},
    {"listeners", top_listeners},
    {"upstreams", top_upstreams},
    {"routes", top_routes},
    {"error_page", top_error_page},
    {"metrics_max_series", top_metrics_max_series},
    {NULL, NULL},
};

/* -------------------------------------------------------------- listeners */

static int lis_name(struct loader *L, void *obj, const weir_node_t *v)
{
    const char *s = want_string(L->cf, v);
    if (!s)
        return -1;
    ((weir_listener_t *)obj)->name = s;
    return 0;
}

static int address_of(weir_conf_t *cf, const weir_node_t *v, const char **text,
                      sockaddr_any_t *addr)
{
    char err[256];
    const char *s = want_string(cf, v);
    if (!s)
        return -1;
    if (conf_parse_address(s, addr, err, sizeof(err)) < 0)
        return weir_conf_error(cf, v,
                               "invalid address '%s' (%s; expected host:port, [v6]:port or "
                               "unix:/path)",
                               s, err);
    *text = s;
    return 0;
}

static int lis_address(struct loader *L, void *obj, const weir_node_t *v)
{
    weir_listener_t *l = obj;
    return address_of(L->cf, v, &l->address, &l->addr);
}

static int lis_backlog(struct loader *L, void *obj, const weir_node_t *v)
{
    long n;
    if (weir_node_int(L->cf, v, 1, 1048576, &n) < 0)
        return -1;
    ((weir_listener_t *)obj)->backlog = (int)n;
    return 0;
}

static int lis_http2(struct loader *L, void *obj, const weir_node_t *v)
{
    return weir_node_bool(L->cf, v, &((weir_listener_t *)obj)->http2);
}

static int lis_limits(struct loader *L, void *obj, const weir_node_t *v)
{
    return read_core_map(L, v, "limits", limit_keys, &((weir_listener_t *)obj)->limits);
}

static const struct core_key listener_keys[] = {
    {"name", lis_name},       {"address", lis_address}, {"backlog", lis_backlog},
    {"http2", lis_http2},     {"limits", lis_limits},   {NULL, NULL},
};

static int read_listeners(struct loader *L, const weir_node_t *v)
{
    weir_conf_t *cf = L->cf;
    int rc = 0;

    if (v->type == WEIR_NODE_NULL)
        return 0;
    if (want_kind(cf, v, WEIR_NODE_SEQUENCE) < 0)
        return -1;
    cf->listeners = weir_conf_alloc(cf, (v->count ? v->count : 1) * sizeof(*cf->listeners));
    L->listeners = weir_conf_alloc(cf, (v->count ? v->count : 1) * sizeof(*L->listeners));
    if (!cf->listeners || !L->listeners)
        return weir_conf_error(cf, v, "out of memory");
    for (size_t i = 0; i < v->count; i++) {
        const weir_node_t *n = v->items[i];
        weir_listener_t *l = &cf->listeners[cf->nlisteners];
        struct inst *in = &L->listeners[cf->nlisteners];

        if (n->type != WEIR_NODE_MAPPING) {
            rc = weir_conf_error(cf, n, "each entry of 'listeners' must be a mapping, got %s",
                                 conf_node_type_word(n));
            continue;
        }
        *l = (weir_listener_t){
            .backlog = 4096, .limits = cf->limits, .node = n, .index = cf->nlisteners,
            .conf = cf};
        if (inst_init(L, in, WEIR_SCOPE_INDEX_LISTENER, n) < 0)
            return weir_conf_error(cf, n, "out of memory");
        l->mconf = in->mconf;
        cf->nlisteners++;
        if (read_scope(L, in, listener_keys, l) < 0)
            rc = -1;
        if (!weir_node_get(n, "address"))
            rc = weir_conf_error(cf, n, "missing required key 'address' in listener");
        if (!l->name)
            l->name = l->address ? l->address : "";
        for (size_t j = 0; j + 1 < cf->nlisteners; j++) {
            if (l->name[0] && strcmp(cf->listeners[j].name, l->name) == 0) {
                rc = weir_conf_error(cf, n, "duplicate listener name '%s' (first at line %u)",
                                     l->name, cf->listeners[j].node->line);
                break;
            }
        }
    }
    return rc;
}

/* -------------------------------------------------------------- upstreams */

static int srv_address(struct loader *L, void *obj, const weir_node_t *v)
{
    peer_t *p = obj;
    return address_of(L->cf, v, &p->address, &p->addr);
}

static int srv_weight(struct loader *L, void *obj, const weir_node_t *v)
{
    long n;
    if (weir_node_int(L->cf, v, 1, 1000, &n) < 0)
        return -1;
    ((peer_t *)obj)->weight = (unsigned)n;
    return 0;
}

static int srv_backup(struct loader *L, void *obj, const weir_node_t *v)
{
    return weir_node_bool(L->cf, v, &((peer_t *)obj)->backup);
}

static const struct core_key server_keys[] = {
    {"address", srv_address},
    {"weight", srv_weight},
    {"backup", srv_backup},
    {NULL, NULL},
};

static int ups_balancer(struct loader *L, void *obj, const weir_node_t *v)
{
    weir_upstream_t *u = obj;
    const char *s = want_string(L->cf, v);
    if (!s) {
        u->balancer_name = NULL; /* reported; nothing to resolve */
        return -1;
    }
    u->balancer_name = s;
    L->upstream_balancer[u->index] = v;
    return 0;
}

static int ups_servers(struct loader *L, void *obj, const weir_node_t *v)
{
    weir_conf_t *cf = L->cf;
    weir_upstream_t *u = obj;
    int rc = 0;

    if (want_kind(cf, v, WEIR_NODE_SEQUENCE) < 0)
        return -1;
    if (v->count == 0)
        return weir_conf_error(cf, v, "'servers' of upstream '%s' is empty", u->name);
    u->peers = weir_conf_alloc(cf, v->count * sizeof(*u->peers));
    if (!u->peers)
        return weir_conf_error(cf, v, "out of memory");
    for (size_t i = 0; i < v->count; i++) {
        const weir_node_t *s = v->items[i];
        peer_t *p = &u->peers[u->npeers];
        *p = (peer_t){.weight = 1};
        if (s->type == WEIR_NODE_SCALAR) {
            if (address_of(cf, s, &p->address, &p->addr) < 0) {
                rc = -1;
                continue;
            }
        } else if (s->type == WEIR_NODE_MAPPING) {
            if (read_core_map(L, s, "server", server_keys, p) < 0)
                rc = -1;
            if (!weir_node_get(s, "address")) {
                rc = weir_conf_error(cf, s, "missing required key 'address' in server");
                continue;
            }
            if (!p->address)
                continue;
        } else {
            rc = weir_conf_error(cf, s, "a server is an address or a mapping with 'address', "
                                        "not %s", conf_node_type_word(s));
            continue;
        }
        u->npeers++;
    }
    return rc;
}

#define UPS_DURATION(field)                                                                \
    static int ups_##field(struct loader *L, void *obj, const weir_node_t *v)              \
    {                                                                                      \
        return weir_node_duration_ms(L->cf, v, &((weir_upstream_t *)obj)->field);          \
    }

UPS_DURATION(connect_timeout)
UPS_DURATION(read_timeout)
UPS_DURATION(write_timeout)
UPS_DURATION(idle_timeout)
UPS_DURATION(tunnel_timeout)
UPS_DURATION(fail_timeout)

static int ups_keepalive(struct loader *L, void *obj, const weir_node_t *v)
{
    long n;
    if (weir_node_int(L->cf, v, 0, 1000000, &n) < 0)
        return -1;
    ((weir_upstream_t *)obj)->keepalive = (uint64_t)n;
    return 0;
}

static int ups_retries(struct loader *L, void *obj, const weir_node_t *v)
{
    return weir_node_int(L->cf, v, 0, 100, &((weir_upstream_t *)obj)->retries);
}

static int ups_max_fails(struct loader *L, void *obj, const weir_node_t *v)
{
    return weir_node_int(L->cf, v, 0, 1000000, &((weir_upstream_t *)obj)->max_fails);
}

static int ups_protocol(struct loader *L, void *obj, const weir_node_t *v)
{
    const char *p = v->type == WEIR_NODE_SCALAR ? v->scalar : "";
    if (strcmp(p, "http1") == 0)
        ((weir_upstream_t *)obj)->protocol = UPSTREAM_HTTP1;
    else if (strcmp(p, "h2") == 0)
        ((weir_upstream_t *)obj)->protocol = UPSTREAM_H2;
    else
        return weir_conf_error(L->cf, v, "'protocol' is http1 or h2 (HTTP/2 to the servers, "
                                         "as gRPC needs), not '%s'", p);
    return 0;
}

static const struct core_key upstream_keys[] = {
    {"balancer", ups_balancer},
    {"servers", ups_servers},
    {"keepalive", ups_keepalive},
    {"connect_timeout", ups_connect_timeout},
    {"read_timeout", ups_read_timeout},
    {"write_timeout", ups_write_timeout},
    {"idle_timeout", ups_idle_timeout},
    {"tunnel_timeout", ups_tunnel_timeout},
    {"protocol", ups_protocol},
    {"retries", ups_retries},
    {"max_fails", ups_max_fails},
    {"fail_timeout", ups_fail_timeout},
    {NULL, NULL},
};

static int read_upstreams(struct loader *L, const weir_node_t *v)
{
    weir_conf_t *cf = L->cf;
    size_t cnt = v->count ? v->count : 1;
    int rc = 0;

    if (v->type == WEIR_NODE_NULL)
        return 0;
    if (want_kind(cf, v, WEIR_NODE_MAPPING) < 0) {
        L->upstreams_refused = 1;
        return -1;
    }
    cf->upstreams = weir_conf_alloc(cf, cnt * sizeof(*cf->upstreams));
    L->upstreams = weir_conf_alloc(cf, cnt * sizeof(*L->upstreams));
    L->upstream_balancer = weir_conf_alloc(cf, cnt * sizeof(*L->upstream_balancer));
    L->upstream_key = weir_conf_alloc(cf, cnt * sizeof(*L->upstream_key));
    L->broken_upstreams = weir_conf_alloc(cf, cnt * sizeof(*L->broken_upstreams));
    if (!cf->upstreams || !L->upstreams || !L->upstream_balancer || !L->upstream_key ||
        !L->broken_upstreams)
        return weir_conf_error(cf, v, "out of memory");
    for (size_t i = 0; i < v->count; i++) {
        const weir_node_t *n = v->items[i];
        weir_upstream_t *u = &cf->upstreams[cf->nupstreams];
        struct inst *in = &L->upstreams[cf->nupstreams];

        if (n->type != WEIR_NODE_MAPPING) {
            rc = weir_conf_error(cf, n, "upstream '%s' must be a mapping, got %s",
                                 v->keys[i]->scalar, conf_node_type_word(n));
            L->broken_upstreams[L->nbroken_upstreams++] = v->keys[i]->scalar;
            continue;
        }
        *u = (weir_upstream_t){
            .name = v->keys[i]->scalar,
            .balancer_name = "roundrobin",
            .keepalive = 128,
            .connect_timeout = 3000,
            .read_timeout = 60000,
            .write_timeout = 60000,
            .idle_timeout = 60000,
            .tunnel_timeout = 3600000, /* HAProxy's timeout tunnel, 1h */
            .retries = 1,
            .max_fails = 1,
            .fail_timeout = 10000,
            .node = n,
            .index = cf->nupstreams,
            .conf = cf,
        };
        if (inst_init(L, in, WEIR_SCOPE_INDEX_UPSTREAM, n) < 0)
            return weir_conf_error(cf, n, "out of memory");
        u->mconf = in->mconf;
        L->upstream_key[u->index] = v->keys[i];
        cf->nupstreams++;
        if (read_scope(L, in, upstream_keys, u) < 0)
            rc = -1;
        if (!weir_node_get(n, "servers"))
            rc = weir_conf_error(cf, v->keys[i], "missing required key 'servers' in upstream '%s'",
                                 u->name);
    }
    return rc;
}

/* ----------------------------------------------------------------- routes */

static int rt_name(struct loader *L, void *obj, const weir_node_t *v)
{
    const char *s = want_string(L->cf, v);
    if (!s)
        return -1;
    if (!*s)
        return weir_conf_error(L->cf, v, "a route name must not be empty");
    ((weir_route_t *)obj)->name = s;
    return 0;
}

static int rt_upstream(struct loader *L, void *obj, const weir_node_t *v)
{
    weir_route_t *rt = obj;
    if (v->type == WEIR_NODE_NULL)
        return 0;
    if (!want_string(L->cf, v))
        return -1;
    L->route_upstream[rt->index] = v;
    return 0;
}

static const struct core_key route_keys[] = {
    {"name", rt_name},
    {"upstream", rt_upstream},
    {NULL, NULL},
};

static int read_routes(struct loader *L, const weir_node_t *v)
{
    weir_conf_t *cf = L->cf;
    size_t cnt = v->count ? v->count : 1;
    int rc = 0;

    if (v->type == WEIR_NODE_NULL)
        return 0;
    if (want_kind(cf, v, WEIR_NODE_SEQUENCE) < 0)
        return -1;
    cf->routes = weir_conf_alloc(cf, cnt * sizeof(*cf->routes));
    L->routes = weir_conf_alloc(cf, cnt * sizeof(*L->routes));
    L->route_upstream = weir_conf_alloc(cf, cnt * sizeof(*L->route_upstream));
    if (!cf->routes || !L->routes || !L->route_upstream)
        return weir_conf_error(cf, v, "out of memory");
    for (size_t i = 0; i < v->count; i++) {
        const weir_node_t *n = v->items[i];
        weir_route_t *rt = &cf->routes[cf->nroutes];
        struct inst *in = &L->routes[cf->nroutes];

        if (n->type != WEIR_NODE_MAPPING) {
            rc = weir_conf_error(cf, n, "each entry of 'routes' must be a mapping, got %s",
                                 conf_node_type_word(n));
            continue;
        }
        *rt = (weir_route_t){.node = n, .index = cf->nroutes, .conf = cf};
        if (inst_init(L, in, WEIR_SCOPE_INDEX_ROUTE, n) < 0)
            return weir_conf_error(cf, n, "out of memory");
        rt->mconf = in->mconf;
        cf->nroutes++;
        if (read_scope(L, in, route_keys, rt) < 0)
            rc = -1;
        if (!rt->name) {
            char buf[32];
            snprintf(buf, sizeof(buf), "route%zu", rt->index + 1);
            rt->name = weir_conf_strdup(cf, buf);
        }
        for (size_t j = 0; j < rt->index && rt->name; j++) {
            if (strcmp(cf->routes[j].name, rt->name) == 0) {
                rc = weir_conf_error(cf, n, "duplicate route name '%s' (first at line %u)",
                                     rt->name, cf->routes[j].node->line);
                break;
            }
        }
    }
    return rc;
}

/* ---------------------------------------------------------------- modules */

static int read_modules(struct loader *L, const weir_node_t *root)
{
    weir_conf_t *cf = L->cf;
    const weir_node_t *dir = weir_node_get(root, "modules_dir");
    const weir_node_t *list = weir_node_get(root, "modules");
    const char **names;
    int rc = 0;

    if (L->opt->modules_dir) {
        cf->modules_dir = weir_conf_strdup(cf, L->opt->modules_dir);
    } else if (dir) {
        const char *s = want_string(cf, dir);
        cf->modules_dir = s ? conf_resolve_path(cf, s) : WEIR_MODULES_DIR;
    } else {
        cf->modules_dir = WEIR_MODULES_DIR;
    }

    if (!list || list->type == WEIR_NODE_NULL)
        return 0;
    if (want_kind(cf, list, WEIR_NODE_SEQUENCE) < 0)
        return -1;
    cf->modules = weir_conf_alloc(cf, (list->count ? list->count : 1) * sizeof(*cf->modules));
    names = weir_conf_alloc(cf, (list->count ? list->count : 1) * sizeof(*names));
    L->failed = weir_conf_alloc(cf, (list->count ? list->count : 1) * sizeof(*L->failed));
    if (!cf->modules || !names || !L->failed)
        return weir_conf_error(cf, list, "out of memory");

    for (size_t i = 0; i < list->count; i++) {
        const weir_node_t *e = list->items[i], *nn = e;
        const char *name = NULL, *path = NULL;

        if (e->type == WEIR_NODE_MAPPING) {
            for (size_t j = 0; j < e->count; j++) {
                const char *k = e->keys[j]->scalar;
                if (strcmp(k, "name") == 0) {
                    nn = e->items[j];
                    name = want_string(cf, nn);
                } else if (strcmp(k, "path") == 0) {
                    const char *p = want_string(cf, e->items[j]);
                    path = p ? conf_resolve_path(cf, p) : NULL;
                } else {
                    static const char *const mk[] = {"name", "path"};
                    unknown_key(cf, e->keys[j], "module entry", mk, 2);
                    rc = -1;
                }
            }
            if (!name) {
                if (!weir_node_get(e, "name"))
                    weir_conf_error(cf, e, "missing required key 'name' in module entry");
                rc = -1;
                continue;
            }
        } else if (e->type == WEIR_NODE_SCALAR) {
            name = e->scalar;
        } else {
            rc = weir_conf_error(cf, e, "a module is a name or {name, path}, not %s",
                                 conf_node_type_word(e));
            continue;
        }
        names[i] = name;

        size_t j;
        for (j = 0; j < i; j++)
            if (names[j] && strcmp(names[j], name) == 0)
                break;
        if (j < i) {
            const weir_node_t *first = list->items[j];
            rc = weir_conf_error(cf, nn, "module '%s' is listed twice (first at %s:%u:%u)", name,
                                 first->file, first->line, first->column);
            continue;
        }

        module_slot_t slot = {0};
        if (modload_open(cf, nn, name, path, &slot) < 0) {
            L->failed[L->nfailed++] = name;
            rc = -1;
            continue;
        }
        slot.index = cf->nmodules;
        size_t msz = mod_conf_size(slot.desc, WEIR_SCOPE_INDEX_MAIN);
        if (msz && !slot.main_conf && !(slot.main_conf = weir_conf_alloc(cf, msz))) {
            modload_close(&slot);
            return weir_conf_error(cf, nn, "out of memory");
        }
        cf->modules[cf->nmodules++] = slot;
    }
    return rc;
}

/* -------------------------------------------------------------- resolving */

/* An upstream of that name was written but refused (reported there). */
static int upstream_refused(const struct loader *L, const char *name)
{
    if (L->upstreams_refused)
        return 1;
    for (size_t i = 0; i < L->nbroken_upstreams; i++)
        if (strcmp(L->broken_upstreams[i], name) == 0)
            return 1;
    return 0;
}

static void resolve_routes(struct loader *L)
{
    weir_conf_t *cf = L->cf;

    for (size_t i = 0; i < cf->nroutes; i++) {
        weir_route_t *rt = &cf->routes[i];
        const weir_node_t *v = L->route_upstream ? L->route_upstream[i] : NULL;
        if (!v)
            continue;
        for (size_t j = 0; j < cf->nupstreams; j++)
            if (strcmp(cf->upstreams[j].name, v->scalar) == 0)
                rt->upstream = &cf->upstreams[j];
        if (rt->upstream || upstream_refused(L, v->scalar))
            continue;

        /* the refused ones too: a typo of their name is still a typo */
        size_t nnames = cf->nupstreams + L->nbroken_upstreams;
        const char **names = malloc((nnames ? nnames : 1) * sizeof(*names));
        const char *s = NULL;
        if (names) {
            for (size_t j = 0; j < cf->nupstreams; j++)
                names[j] = cf->upstreams[j].name;
            for (size_t j = 0; j < L->nbroken_upstreams; j++)
                names[cf->nupstreams + j] = L->broken_upstreams[j];
            s = conf_suggest(v->scalar, names, nnames);
        }
        if (s)
            weir_conf_error(cf, v, "unknown upstream '%s' in route '%s' (did you mean '%s'?)",
                            v->scalar, rt->name, s);
        else
            weir_conf_error(cf, v, "unknown upstream '%s' in route '%s'", v->scalar, rt->name);
        free(names);
    }
}

/* After every conf_done: a route without an upstream is served only if a
 * module said it answers it; otherwise every request to it would end in a
 * 404 that nobody meant. */
static void check_answered_routes(weir_conf_t *cf)
{
    for (size_t i = 0; i < cf->nroutes; i++) {
        const weir_route_t *rt = &cf->routes[i];
        /* one that names an upstream got its error there, if any */
        if (!rt->upstream && !rt->answered && !weir_node_get(rt->node, "upstream"))
            weir_conf_error(cf, rt->node,
                            "route '%s' has no upstream and no module answers it: add "
                            "`upstream: NAME`, a `redirect:` (module rewrite) or `metrics: "
                            "true` (module metrics)",
                            rt->name);
    }
}

static const weir_balancer_t *find_balancer(const weir_conf_t *cf, const char *name,
                                            size_t *module)
{
    for (size_t i = 0; i < cf->nmodules; i++) {
        for (const weir_balancer_t *b = mod_balancers(cf->modules[i].desc); b && b->name; b++) {
            if (strcmp(b->name, name) == 0) {
                *module = i;
                return b;
            }
        }
    }
    return NULL;
}

static void resolve_balancers(struct loader *L)
{
    weir_conf_t *cf = L->cf;

    for (size_t i = 0; i < cf->nupstreams; i++) {
        weir_upstream_t *u = &cf->upstreams[i];
        const weir_node_t *at = L->upstream_balancer[i] ? L->upstream_balancer[i]
                                                        : L->upstream_key[i];

        if (!u->balancer_name)
            continue; /* the value was refused */
        u->balancer = find_balancer(cf, u->balancer_name, &u->balancer_module);
        if (u->balancer)
            continue;
        const char *owner = modload_known_balancer_owner(u->balancer_name);
        if (owner) {
            if (!name_failed(L, owner))
                weir_conf_error(cf, at, "balancer '%s' is provided by module '%s', which is "
                                        "not loaded",
                                u->balancer_name, owner);
            else
                cf->nerrors++; /* reported as a load failure already */
            continue;
        }

        char loaded[256] = "";
        size_t off = 0;
        for (size_t m = 0; m < cf->nmodules; m++) {
            for (const weir_balancer_t *b = mod_balancers(cf->modules[m].desc); b && b->name;
                 b++) {
                int w = snprintf(loaded + off, sizeof(loaded) - off, "%s%s", off ? ", " : "",
                                 b->name);
                if (w > 0 && (size_t)w < sizeof(loaded) - off)
                    off += (size_t)w;
            }
        }
        weir_conf_error(cf, at, "unknown balancer '%s' (loaded: %s)", u->balancer_name,
                        off ? loaded : "none");
    }
}

/* ------------------------------------------------------------------- load */

static const char *config_dir(weir_conf_t *cf, const char *file)
{
    const char *slash = strrchr(file, '/');
    char *d, *real;

    if (!slash)
        d = weir_conf_strdup(cf, ".");
    else if (slash == file)
        d = weir_conf_strdup(cf, "/");
    else {
        d = weir_conf_alloc(cf, (size_t)(slash - file) + 1);
        if (d)
            memcpy(d, file, (size_t)(slash - file));
    }
    if (!d)
        return NULL;
    /* Absolute, so paths stay right after a daemon changes directory. */
    real = realpath(d, NULL);
    if (real) {
        d = weir_conf_strdup(cf, real);
        free(real);
    }
    return d;
}

weir_conf_t *conf_load(const conf_options_t *opt)
{
    struct arena *a = arena_new(16384, 0);
    struct loader L = {.opt = opt};
    weir_conf_t *cf;
    weir_node_t *root;

    if (!a) {
        fprintf(stderr, "%s: out of memory\n", opt->file);
        return NULL;
    }
    cf = arena_alloc(a, sizeof(*cf));
    if (!cf) {
        arena_free(a);
        fprintf(stderr, "%s: out of memory\n", opt->file);
        return NULL;
    }
    cf->arena = a;
    cf->errors_tail = &cf->errors;
    cf->previous = opt->previous;
    L.cf = cf;
    cf->file = weir_conf_strdup(cf, opt->file);
    cf->dir = config_dir(cf, opt->file);
    if (!cf->file || !cf->dir)
        goto oom;

    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cf->workers = cpus > 0 ? (unsigned)cpus : 1;
    cf->workers_auto = 1;
    cf->pid_file = WEIR_PID_FILE; /* the system's, not the config's directory */
    cf->error_log = "stderr";
    cf->error_log_level = WEIR_LOG_INFO;
    cf->limits = default_limits;
    cf->metrics_max_series = METRICS_MAX_SERIES_DEFAULT;

    root = conf_yaml_read(cf, opt->file);
    if (!root)
        goto fail;
    cf->root = root;
    if (opt->pid_file_only) {
        const weir_node_t *pid = weir_node_get(root, "pid_file");
        if (pid)
            top_pid_file(&L, NULL, pid);
        if (cf->nerrors)
            goto fail;
        return cf;
    }

    read_modules(&L, root);
    collect_directives(&L);
    if (!L.dirs)
        goto oom;

    if (vars_init(cf) < 0) {
        if (!cf->nerrors)
            weir_conf_error(cf, root, "cannot create the variable registry");
        goto fail;
    }
    if (opt->register_core_vars && opt->register_core_vars(cf) < 0 && !cf->nerrors)
        weir_conf_error(cf, root, "cannot register the core variables");
    modload_run_conf_hook(cf, HOOK_CONF_INIT);

    if (inst_init(&L, &L.main, WEIR_SCOPE_INDEX_MAIN, root) < 0)
        goto oom;
    /* limits first: listeners start from the top-level values */
    const weir_node_t *limits = weir_node_get(root, "limits");
    if (limits)
        top_limits(&L, NULL, limits);
    read_scope(&L, &L.main, top_keys, cf);
    privs_conf(cf, weir_node_get(root, "user"), weir_node_get(root, "group"));
    /* said only when none is written: a refused entry was reported already */
    const weir_node_t *ln = weir_node_get(root, "listeners");
    if (!ln || ln->type == WEIR_NODE_NULL || (ln->type == WEIR_NODE_SEQUENCE && !ln->count))
        weir_conf_error(cf, ln ? ln : &(weir_node_t){.file = cf->file},
                        "no listeners configured");

    apply_defaults(&L, &L.main);
    for (size_t i = 0; i < cf->nlisteners; i++)
        apply_defaults(&L, &L.listeners[i]);
    for (size_t i = 0; i < cf->nupstreams; i++)
        apply_defaults(&L, &L.upstreams[i]);
    for (size_t i = 0; i < cf->nroutes; i++)
        apply_defaults(&L, &L.routes[i]);

    resolve_routes(&L);
    resolve_balancers(&L);
    conf_start_checks(cf, opt->pid_file);
    if (!cf->nerrors)
        peers_reserve(cf); /* reports its own error */
    if (!cf->nerrors)
        metrics_core_register(cf);

    phases_build(cf, opt->core_handlers);
    /* on a config with errors too: modules check and report what only they
     * can (templates compiled there, cross-checks), see module.h */
    int conf_done_ok = modload_run_conf_hook(cf, HOOK_CONF_DONE);
    /* A route no module said it answers is only an error when every
     * module's conf_done ran (and could say so) and every module is recent
     * enough to say so at all: one built before 1.6 may answer routes
     * silently, so for its sake the check is left out. */
    if (conf_done_ok == 0 && modload_all_at_least(cf, MODULE_MINOR_ANSWERS_ROUTES))
        check_answered_routes(cf);
    if (cf->nerrors)
        goto fail;
    for (size_t i = 0; i < cf->nupstreams; i++) {
        weir_upstream_t *u = &cf->upstreams[i];
        unsigned before = cf->nerrors;
        if (!u->balancer->init)
            continue;
        u->balancer_state = u->balancer->init(cf, u);
        if (!u->balancer_state && cf->nerrors == before)
            weir_conf_error(cf, L.upstream_balancer[i] ? L.upstream_balancer[i] : L.upstream_key[i],
                            "balancer '%s' failed to set up upstream '%s'", u->balancer_name,
                            u->name);
    }
    /* last: a load that fails before it claims no slot in the shared table */
    if (!cf->nerrors)
        metrics_bind(cf, cf->metrics_max_series,
                     cf->metrics_max_series_node ? cf->metrics_max_series_node : root);
    if (cf->nerrors)
        goto fail;
    cf->previous = NULL;
    return cf;

oom:
    weir_conf_error(cf, &(weir_node_t){.file = cf->file ? cf->file : opt->file},
                    "out of memory");
fail:
    conf_report_errors(cf, opt->report);
    conf_free(cf);
    return NULL;
}

void conf_free(weir_conf_t *cf)
{
    module_slot_t *slots;
    size_t n;

    if (!cf)
        return;
    n = cf->nmodules;
    for (size_t i = n; i-- > 0;) {
        const weir_module_t *d = cf->modules[i].desc;
        if (d && MODULE_HAS(d, conf_free) && d->conf_free)
            d->conf_free(cf);
    }
    /* The arena goes first: its cleanups may still run module code, so the
     * handles are closed after it, from a copy. */
    slots = n ? malloc(n * sizeof(*slots)) : NULL;
    if (slots)
        memcpy(slots, cf->modules, n * sizeof(*slots));
    else
        for (size_t i = n; i-- > 0;)
            modload_close(&cf->modules[i]);
    arena_free(cf->arena);
    if (slots) {
        for (size_t i = n; i-- > 0;)
            modload_close(&slots[i]);
        free(slots);
    }
}
