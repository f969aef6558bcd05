/*
 * Metrics registry, shared table and exposition (metrics.h has the design).
 */
#include "metrics.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "conf.h"

#define ZONE_MAGIC 0x77656972u /* "weir" */

struct slot {
    _Atomic uint64_t value;
    uint64_t hash;
    uint32_t len; /* of id; 0: free */
    uint32_t unused;
    char id[METRICS_ID_MAX];
};

struct zone {
    uint64_t magic;
    uint64_t capacity;
    uint64_t used;
    uint64_t unused[5]; /* the slots start on a cache line */
    struct slot slots[];
};

struct weir_metric {
    struct weir_metric *next;
    const char *name, *help;
    weir_metric_kind_t kind;
    const char **labels;
    size_t nlabels;
    uint64_t *bounds_us; /* finite bucket bounds, in millionths */
    double *bounds;
    size_t nbuckets;   /* finite ones */
    size_t ncells;     /* values per series */
    uint32_t fp;       /* kind, label names and buckets, in the identity */
    const char **values; /* nseries * nlabels */
    size_t nseries, cap;
    metrics_value_fn *fns; /* computed families: per series */
    const void **args;
    _Atomic uint64_t **cells; /* nseries * ncells, bound; NULL: updates do nothing */
};

struct metrics_reg {
    weir_metric_t *first, **tail;
    int enabled;
};

static const double default_buckets[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

/* ------------------------------------------------------------ names */

static int name_ok(const char *s, int colon)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        int alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                    (colon && *p == ':');
        if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
            return 0;
    }
    return 1;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

#define FNV_START 0xcbf29ce484222325ull

/* ------------------------------------------------------------ registry */

static struct metrics_reg *reg_of(weir_conf_t *cf)
{
    if (!cf->metrics) {
        cf->metrics = weir_conf_alloc(cf, sizeof(*cf->metrics));
        if (cf->metrics)
            cf->metrics->tail = &cf->metrics->first;
    }
    return cf->metrics;
}

int weir_metrics_enable(weir_conf_t *cf)
{
    struct metrics_reg *reg = reg_of(cf);
    if (!reg)
        return weir_conf_error(cf, NULL, "out of memory enabling metrics");
    reg->enabled = 1;
    return 0;
}

int metrics_enabled(const weir_conf_t *cf)
{
    return cf->metrics && cf->metrics->enabled;
}

static int set_buckets(weir_conf_t *cf, weir_metric_t *m, const double *buckets)
{
    size_t n = 0;
    if (!buckets) {
        buckets = default_buckets;
        n = sizeof(default_buckets) / sizeof(default_buckets[0]);
    } else {
        while (n <= METRICS_BUCKETS_MAX && !isinf(buckets[n])) {
            if (isnan(buckets[n]) || (n && buckets[n] <= buckets[n - 1]) || buckets[n] < 0)
                return weir_conf_error(cf, NULL,
                                       "metric %s: bucket bounds must be ascending, not negative, "
                                       "and end with INFINITY",
                                       m->name);
            n++;
        }
        if (n > METRICS_BUCKETS_MAX)
            return weir_conf_error(cf, NULL, "metric %s: more than %d buckets", m->name,
                                   METRICS_BUCKETS_MAX);
    }
    m->bounds = weir_conf_alloc(cf, (n + 1) * sizeof(double));
    m->bounds_us = weir_conf_alloc(cf, (n + 1) * sizeof(uint64_t));
    if (!m->bounds || !m->bounds_us)
        return weir_conf_error(cf, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        m->bounds[i] = buckets[i];
        m->bounds_us[i] = (uint64_t)(buckets[i] * 1e6 + 0.5); /* no libm */
    }
    m->nbuckets = n;
    m->ncells = n + 2; /* the finite buckets, +Inf, the sum */
    return 0;
}

static int set_labels(weir_conf_t *cf, weir_metric_t *m, const char *const *names)
{
    while (names && names[m->nlabels])
        m->nlabels++;
    m->labels = weir_conf_alloc(cf, (m->nlabels + 1) * sizeof(char *));
    if (!m->labels)
        return weir_conf_error(cf, NULL, "out of memory");
    for (size_t i = 0; i < m->nlabels; i++) {
        if (!name_ok(names[i], 0) || (m->kind == WEIR_METRIC_HISTOGRAM && !strcmp(names[i], "le")))
            return weir_conf_error(cf, NULL, "metric %s: label name '%s' is not valid", m->name,
                                   names[i]);
        if (!(m->labels[i] = weir_conf_strdup(cf, names[i])))
            return weir_conf_error(cf, NULL, "out of memory");
    }
    return 0;
}

static uint32_t fingerprint(const weir_metric_t *m)
{
    uint64_t h = fnv1a(FNV_START, &m->kind, sizeof(m->kind));
    for (size_t i = 0; i < m->nlabels; i++)
        h = fnv1a(h, m->labels[i], strlen(m->labels[i]) + 1);
    h = fnv1a(h, m->bounds_us, m->nbuckets * sizeof(uint64_t));
    return (uint32_t)(h ^ (h >> 32));
}

weir_metric_t *weir_metric_new(weir_conf_t *cf, const char *name, weir_metric_kind_t kind,
                               const char *help, const char *const *label_names,
                               const double *buckets)
{
    struct metrics_reg *reg = reg_of(cf);
    weir_metric_t *m = reg ? weir_conf_alloc(cf, sizeof(*m)) : NULL;
    if (!m) {
        weir_conf_error(cf, NULL, "out of memory registering metric %s", name ? name : "");
        return NULL;
    }
    if (!name_ok(name, 1) || kind < WEIR_METRIC_COUNTER || kind > WEIR_METRIC_HISTOGRAM ||
        (kind == WEIR_METRIC_COUNTER && !ends_with(name, "_total"))) {
        weir_conf_error(cf, NULL, "metric name '%s' is not valid for its kind%s", name ? name : "",
                        kind == WEIR_METRIC_COUNTER ? " (a counter's ends in _total)" : "");
        return NULL;
    }
    for (weir_metric_t *o = reg->first; o; o = o->next) {
        if (strcmp(o->name, name) == 0) {
            weir_conf_error(cf, NULL, "metric %s is registered twice", name);
            return NULL;
        }
    }
    m->name = weir_conf_strdup(cf, name);
    m->help = weir_conf_strdup(cf, help ? help : "");
    m->kind = kind;
    m->ncells = 1;
    if (!m->name || !m->help) {
        weir_conf_error(cf, NULL, "out of memory");
        return NULL;
    }
    if (set_labels(cf, m, label_names) < 0 ||
        (kind == WEIR_METRIC_HISTOGRAM && set_buckets(cf, m, buckets) < 0))
        return NULL;
    m->fp = fingerprint(m);
    *reg->tail = m;
    reg->tail = &m->next;
    return m;
}

static int find_series(const weir_metric_t *m, const char *const *values)
{
    for (size_t s = 0; s < m->nseries; s++) {
        size_t i = 0;
        while (i < m->nlabels && strcmp(m->values[s * m->nlabels + i], values[i]) == 0)
            i++;
        if (i == m->nlabels)
            return (int)s;
    }
    return -1;
}

/* Room for one more series (the arrays double, in the conf arena). */
static int grow(weir_conf_t *cf, weir_metric_t *m, int computed)
{
    if (m->nseries < m->cap)
        return 0;
    size_t cap = m->cap ? m->cap * 2 : 8;
    const char **values = weir_conf_alloc(cf, cap * (m->nlabels ? m->nlabels : 1) * sizeof(char *));
    metrics_value_fn *fns = computed ? weir_conf_alloc(cf, cap * sizeof(*fns)) : NULL;
    const void **args = computed ? weir_conf_alloc(cf, cap * sizeof(*args)) : NULL;
    if (!values || (computed && (!fns || !args)))
        return -1;
    if (m->nseries) {
        memcpy(values, m->values, m->nseries * m->nlabels * sizeof(char *));
        if (computed) {
            memcpy(fns, m->fns, m->nseries * sizeof(*fns));
            memcpy(args, m->args, m->nseries * sizeof(*args));
        }
    }
    m->values = values;
    m->fns = fns;
    m->args = args;
    m->cap = cap;
    return 0;
}

static int add_series(weir_conf_t *cf, weir_metric_t *m, const char *const *values,
                      metrics_value_fn fn, const void *arg)
{
    if (!m)
        return -1;
    if (m->nseries && (fn != NULL) != (m->fns != NULL))
        return weir_conf_error(cf, NULL, "metric %s: its series are all stored or all computed",
                               m->name);
    for (size_t i = 0; i < m->nlabels; i++)
        if (!values || !values[i])
            return weir_conf_error(cf, NULL, "metric %s: a series needs %zu label values",
                                   m->name, m->nlabels);
    int s = find_series(m, values);
    if (s >= 0)
        return s;
    if (grow(cf, m, fn != NULL) < 0)
        return weir_conf_error(cf, NULL, "out of memory registering a series of %s", m->name);
    for (size_t i = 0; i < m->nlabels; i++) {
        const char *v = weir_conf_strdup(cf, values[i]);
        if (!v)
            return weir_conf_error(cf, NULL, "out of memory registering a series of %s", m->name);
        m->values[m->nseries * m->nlabels + i] = v;
    }
    if (fn) {
        m->fns[m->nseries] = fn;
        m->args[m->nseries] = arg;
    }
    return (int)m->nseries++;
}

int weir_metric_series(weir_conf_t *cf, weir_metric_t *m, const char *const *label_values)
{
    return add_series(cf, m, label_values, NULL, NULL);
}

int metrics_series_fn(weir_conf_t *cf, weir_metric_t *m, const char *const *label_values,
                      metrics_value_fn fn, const void *arg)
{
    return add_series(cf, m, label_values, fn, arg);
}

/* ------------------------------------------------------------ binding */

/* The identity of value `cell` of series s; its length, or 0 if it does not
 * fit METRICS_ID_MAX. */
static size_t identity(const weir_metric_t *m, size_t s, size_t cell, char *buf)
{
    char *p = buf, *end = buf + METRICS_ID_MAX;
    int n = snprintf(p, (size_t)(end - p), "%s#%08x", m->name, m->fp);
    if (n < 0 || n >= end - p)
        return 0;
    p += n;
    for (size_t i = 0; i < m->nlabels; i++) {
        const char *v = m->values[s * m->nlabels + i];
        size_t len = strlen(v);
        n = snprintf(p, (size_t)(end - p), "|%zu:", len);
        if (n < 0 || n >= end - p || (size_t)(end - p - n) < len)
            return 0;
        p += n;
        memcpy(p, v, len);
        p += len;
    }
    if (m->kind == WEIR_METRIC_HISTOGRAM) {
        n = snprintf(p, (size_t)(end - p), "|%zu", cell);
        if (n < 0 || n >= end - p)
            return 0;
        p += n;
    }
    return (size_t)(p - buf);
}

/* The slot holding this identity, or the free slot where it would go. */
static struct slot *probe(struct zone *z, const char *id, size_t len, uint64_t hash)
{
    size_t cap = z->capacity, i = hash % cap;
    for (size_t n = 0; n < cap; n++, i = (i + 1) % cap) {
        struct slot *sl = &z->slots[i];
        if (sl->len == 0 || (sl->hash == hash && sl->len == len && !memcmp(sl->id, id, len)))
            return sl;
    }
    return NULL;
}

/* Walks every stored value of the generation: count (claim == 0) the ones
 * without a slot, or claim and bind them. -1 on an identity too long. */
static long bind_pass(weir_conf_t *cf, struct zone *z, int claim)
{
    long missing = 0;
    char id[METRICS_ID_MAX];
    for (weir_metric_t *m = cf->metrics->first; m; m = m->next) {
        if (m->fns)
            continue;
        for (size_t s = 0; s < m->nseries; s++) {
            for (size_t c = 0; c < m->ncells; c++) {
                size_t len = identity(m, s, c, id);
                if (!len) {
                    weir_conf_error(cf, NULL,
                                    "metric %s: the label values of a series are longer than "
                                    "%d bytes in all; shorten the names they come from",
                                    m->name, METRICS_ID_MAX - 40);
                    return -1;
                }
                uint64_t h = fnv1a(FNV_START, id, len);
                struct slot *sl = probe(z, id, len, h);
                if (sl && sl->len) {
                    if (claim)
                        m->cells[s * m->ncells + c] = &sl->value;
                    continue;
                }
                missing++;
                if (!claim)
                    continue;
                sl->hash = h;
                memcpy(sl->id, id, len);
                sl->len = (uint32_t)len;
                z->used++;
                m->cells[s * m->ncells + c] = &sl->value;
            }
        }
    }
    return missing;
}

static struct zone *table(weir_conf_t *cf, size_t capacity)
{
    char name[48];
    snprintf(name, sizeof(name), "weir.metrics.%zu", capacity);
    struct zone *z = weir_shm_zone(cf, name, sizeof(*z) + capacity * sizeof(struct slot));
    if (z && weir_shm_zone_created(cf, z)) {
        z->magic = ZONE_MAGIC;
        z->capacity = capacity;
    }
    return z;
}

int metrics_bind(weir_conf_t *cf, size_t max_series, const weir_node_t *key)
{
    if (!metrics_enabled(cf))
        return 0;
    struct zone *z = table(cf, max_series);
    if (!z)
        return -1;
    long missing = bind_pass(cf, z, 0);
    if (missing < 0)
        return -1;
    if (z->used + (uint64_t)missing > z->capacity) {
        return weir_conf_error(cf, key,
                               "metrics: this configuration needs %llu more series and the "
                               "table holds %llu of %llu already; raise metrics_max_series",
                               (unsigned long long)missing, (unsigned long long)z->used,
                               (unsigned long long)z->capacity);
    }
    for (weir_metric_t *m = cf->metrics->first; m; m = m->next) {
        if (m->fns || !m->nseries)
            continue;
        m->cells = weir_conf_alloc(cf, m->nseries * m->ncells * sizeof(*m->cells));
        if (!m->cells)
            return weir_conf_error(cf, NULL, "out of memory binding metrics");
    }
    return bind_pass(cf, z, 1) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ updates */

static _Atomic uint64_t *cell(const weir_metric_t *m, int series, size_t c)
{
    if (!m || !m->cells || series < 0 || (size_t)series >= m->nseries)
        return NULL;
    return m->cells[(size_t)series * m->ncells + c];
}

void weir_metric_add(weir_metric_t *m, int series, uint64_t n)
{
    _Atomic uint64_t *v = cell(m, series, 0);
    if (v)
        atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

void weir_metric_gauge_add(weir_metric_t *m, int series, int64_t delta)
{
    _Atomic uint64_t *v = cell(m, series, 0);
    if (v) /* two's complement: a negative delta wraps down */
        atomic_fetch_add_explicit(v, (uint64_t)delta, memory_order_relaxed);
}

void metrics_gauge_set(weir_metric_t *m, int series, int64_t value)
{
    _Atomic uint64_t *v = cell(m, series, 0);
    if (v)
        atomic_store_explicit(v, (uint64_t)value, memory_order_relaxed);
}

void weir_metric_observe(weir_metric_t *m, int series, uint64_t micros)
{
    if (!cell(m, series, 0) || m->kind != WEIR_METRIC_HISTOGRAM)
        return;
    size_t b = 0;
    while (b < m->nbuckets && micros > m->bounds_us[b])
        b++;
    atomic_fetch_add_explicit(cell(m, series, b), 1, memory_order_relaxed);
    atomic_fetch_add_explicit(cell(m, series, m->nbuckets + 1), micros, memory_order_relaxed);
}

/* ------------------------------------------------------------ exposition */

struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len < o->cap)
        memcpy(o->buf + o->len, s, n <= o->cap - o->len ? n : o->cap - o->len);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, ...) WEIR_PRINTF(2, 3);
static void putf(struct out *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* HELP text escapes backslash and newline; a label value also the double
 * quote (text format 0.0.4). */
static void put_escaped(struct out *o, const char *s, int quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            puts_(o, "\\\\");
        else if (*p == '\n')
            puts_(o, "\\n");
        else if (quote && *p == '"')
            puts_(o, "\\\"");
        else
            put(o, p, 1);
    }
}

/* name{a="x",b="y"[,le="..."]} (no braces when there is nothing inside). */
static void put_series(struct out *o, const weir_metric_t *m, const char *suffix, size_t s,
                       const char *le)
{
    puts_(o, m->name);
    puts_(o, suffix);
    if (!m->nlabels && !le)
        return;
    put(o, "{", 1);
    for (size_t i = 0; i < m->nlabels; i++) {
        if (i)
            put(o, ",", 1);
        puts_(o, m->labels[i]);
        put(o, "=\"", 2);
        put_escaped(o, m->values[s * m->nlabels + i], 1);
        put(o, "\"", 1);
    }
    if (le) {
        puts_(o, m->nlabels ? ",le=\"" : "le=\"");
        puts_(o, le);
        put(o, "\"", 1);
    }
    put(o, "}", 1);
}

static uint64_t load(const weir_metric_t *m, size_t s, size_t c)
{
    return atomic_load_explicit(m->cells[s * m->ncells + c], memory_order_relaxed);
}

static void put_histogram(struct out *o, const weir_metric_t *m, size_t s)
{
    uint64_t total = 0;
    char le[32];
    for (size_t b = 0; b <= m->nbuckets; b++) {
        total += load(m, s, b);
        if (b < m->nbuckets)
            snprintf(le, sizeof(le), "%.15g", m->bounds[b]);
        put_series(o, m, "_bucket", s, b < m->nbuckets ? le : "+Inf");
        putf(o, " %llu\n", (unsigned long long)total);
    }
    uint64_t sum = load(m, s, m->nbuckets + 1);
    put_series(o, m, "_sum", s, NULL);
    putf(o, " %llu.%06llu\n", (unsigned long long)(sum / 1000000),
         (unsigned long long)(sum % 1000000));
    put_series(o, m, "_count", s, NULL);
    putf(o, " %llu\n", (unsigned long long)total);
}

static void put_value(struct out *o, const weir_metric_t *m, size_t s)
{
    put_series(o, m, "", s, NULL);
    if (m->fns)
        putf(o, " %lld\n", (long long)m->fns[s](m->args[s]));
    else if (m->kind == WEIR_METRIC_GAUGE)
        putf(o, " %lld\n", (long long)(int64_t)load(m, s, 0));
    else
        putf(o, " %llu\n", (unsigned long long)load(m, s, 0));
}

static const char *const kind_words[] = {
    [WEIR_METRIC_COUNTER] = "counter",
    [WEIR_METRIC_GAUGE] = "gauge",
    [WEIR_METRIC_HISTOGRAM] = "histogram",
};

size_t weir_metrics_render(const weir_conf_t *cf, char *buf, size_t cap)
{
    struct out o = {.buf = buf, .cap = cap};
    if (!metrics_enabled(cf))
        return 0;
    for (const weir_metric_t *m = cf->metrics->first; m; m = m->next) {
        if (!m->cells && !m->fns && m->nseries)
            continue; /* not bound: a load that failed */
        puts_(&o, "# HELP ");
        puts_(&o, m->name);
        put(&o, " ", 1);
        put_escaped(&o, m->help, 0);
        puts_(&o, "\n# TYPE ");
        puts_(&o, m->name);
        put(&o, " ", 1);
        puts_(&o, kind_words[m->kind]);
        put(&o, "\n", 1);
        for (size_t s = 0; s < m->nseries; s++) {
            if (m->kind == WEIR_METRIC_HISTOGRAM && !m->fns)
                put_histogram(&o, m, s);
            else
                put_value(&o, m, s);
        }
    }
    return o.len;
}
