/*
 * Route table: see route_table.h for the matching rules and their cost.
 *
 * Layout: routes are added into host groups (one per exact host, one per
 * wildcard suffix, one for "no host"). Each group collects its exact and
 * prefix paths as entries and its regex routes as a list. route_table_build
 * sorts each group's entries and turns them into a compressed radix tree
 * stored in one flat node array shared by all groups; per-node route lists
 * live in one flat candidate array that carries each route's method mask, so
 * the common hit never reads the route itself. Strings (hosts, paths) live in one pool and
 * are referred to by offset, so growing the pool never invalidates them.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "route_table.h"

#include <pcre2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NO_NODE (-1)
#define NO_ROUTE UINT32_MAX

/* Methods most routes name get a bit each, so the per-candidate check is one
 * AND; anything else is compared as a string. */
static const struct {
    const char *name;
    size_t len;
} known_methods[] = {
    {"GET", 3},     {"HEAD", 4},    {"POST", 4},  {"PUT", 3},   {"DELETE", 6},
    {"CONNECT", 7}, {"OPTIONS", 7}, {"TRACE", 5}, {"PATCH", 5},
};
#define NKNOWN (sizeof(known_methods) / sizeof(known_methods[0]))

struct rt_route {
    int index;
    int any_method;
    uint32_t method_mask;
    char **extra; /* methods without a bit, NUL-terminated copies */
    size_t nextra;
    pcre2_code *re; /* REGEX routes only */
    int stop;       /* "^~": a prefix that, as the longest, skips the regexes */
};

/* An exact or prefix path of a group, before the tree is built. */
struct rt_entry {
    uint32_t off, len; /* in pool */
    uint32_t route;    /* index into routes[], i.e. config order */
    int exact;
};

struct rt_group {
    struct rt_entry *entries;
    size_t nentries, centries;
    uint32_t *regex; /* route indexes in config order */
    size_t nregex, cregex;
    uint32_t last_route; /* to ignore a host listed twice in one route */
    int32_t root;        /* tree root in nodes[], or NO_NODE */
};

struct rt_node {
    uint32_t label, label_len; /* bytes in pool this node consumes */
    uint32_t child, nchild;    /* children nodes[child .. child + nchild) */
    int32_t up;                /* nearest ancestor holding prefix routes */
    uint32_t prefix, nprefix;  /* lists[prefix ..] for routes with this prefix */
    uint32_t exact, nexact;    /* lists[exact ..] for routes with this exact path */
};

/* A route in a tree node's list, with what the common case needs copied in,
 * so a hit reads the list and not the route. */
struct rt_cand {
    int32_t index;    /* rt_route.index */
    uint32_t route;   /* into routes[] */
    uint32_t methods; /* rt_route.method_mask, or CAND_ANY; CAND_EXTRA: see route */
    int stop;         /* rt_route.stop */
};

#define CAND_ANY 0xffffffffu
#define CAND_EXTRA 0x80000000u

/* Open-addressing string -> group map; keys live in the pool. */
struct rt_slot {
    uint32_t hash, off, len;
    int32_t group; /* -1: empty slot */
};

struct rt_map {
    struct rt_slot *slots;
    size_t cap, n; /* cap is 0 or a power of two */
};

struct route_table {
    char *pool;
    size_t pool_len, pool_cap;

    struct rt_route *routes;
    size_t nroutes, croutes;

    struct rt_group *groups; /* groups[0] is "no host" */
    size_t ngroups, cgroups;

    struct rt_map exact_hosts;
    struct rt_map wild_hosts; /* key ".example.com" for "*.example.com" */
    struct rt_map same;       /* route_key() -> the first route with it */

    struct rt_node *nodes;
    size_t nnodes, cnodes;
    /* keys[i]: first label byte of nodes[i]. Apart from the nodes so that a
     * child search reads one or two cache lines of bytes, not whole nodes. */
    unsigned char *keys;
    size_t ckeys;
    struct rt_cand *lists;
    size_t nlists, clists;

    /* Methods named by some route (known bits; extra names, deduplicated,
     * pointing into the routes), for route_table_allowed. */
    uint32_t named_mask;
    const char **named_extra;
    size_t nnamed_extra;

    pcre2_match_data *md;
    int built;
    int broken; /* an allocation failed midway; only free() is safe */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Grows *arr so it holds at least need elements of size sz. */
static int grow(void *arr, size_t *cap, size_t need, size_t sz)
{
    void **p = arr;
    size_t ncap;
    void *n;

    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap : 8;
    while (ncap < need)
        ncap *= 2;
    n = realloc(*p, ncap * sz);
    if (n == NULL)
        return -1;
    *p = n;
    *cap = ncap;
    return 0;
}

static uint32_t hash_bytes(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a: short keys, no need for more */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* ------------------------------------------------------------ string pool */

/* Appends bytes (lowercased if asked) and returns their offset, or -1. */
static int64_t pool_add(struct route_table *t, const char *s, size_t len, int lower)
{
    size_t off = t->pool_len;

    if (len > UINT32_MAX || off + len > UINT32_MAX)
        return -1;
    if (grow(&t->pool, &t->pool_cap, off + len + 1, 1) < 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        t->pool[off + i] = (lower && c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    t->pool[off + len] = '\0';
    t->pool_len = off + len + 1;
    return (int64_t)off;
}

/* -------------------------------------------------------------- host maps */

static struct rt_slot *map_find(const struct route_table *t, const struct rt_map *m,
                                const char *key, size_t len, uint32_t h)
{
    size_t mask = m->cap - 1;

    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct rt_slot *s = &m->slots[i];
        if (s->group < 0)
            return s;
        if (s->hash == h && s->len == len && memcmp(t->pool + s->off, key, len) == 0)
            return s;
    }
}

static int32_t map_get(const struct route_table *t, const struct rt_map *m, const char *key,
                       size_t len)
{
    if (m->n == 0)
        return -1;
    return map_find(t, m, key, len, hash_bytes(key, len))->group;
}

static int map_resize(const struct route_table *t, struct rt_map *m, size_t ncap)
{
    struct rt_map nm = {.cap = ncap, .n = m->n};

    nm.slots = malloc(ncap * sizeof(*nm.slots));
    if (nm.slots == NULL)
        return -1;
    for (size_t i = 0; i < ncap; i++)
        nm.slots[i].group = -1;
    for (size_t i = 0; i < m->cap; i++) {
        struct rt_slot *s = &m->slots[i];
        if (s->group >= 0)
            *map_find(t, &nm, t->pool + s->off, s->len, s->hash) = *s;
    }
    free(m->slots);
    *m = nm;
    return 0;
}

/* ------------------------------------------------------------------ groups */

static int32_t group_new(struct route_table *t)
{
    struct rt_group *g;

    if (t->ngroups >= INT32_MAX || grow(&t->groups, &t->cgroups, t->ngroups + 1,
                                        sizeof(*t->groups)) < 0)
        return -1;
    g = &t->groups[t->ngroups];
    memset(g, 0, sizeof(*g));
    g->last_route = NO_ROUTE;
    g->root = NO_NODE;
    return (int32_t)t->ngroups++;
}

/* The slot of key in m: an existing one, or a new one holding a copy of the
 * key whose group the caller sets at once (*fresh = 1). NULL on OOM. */
static struct rt_slot *map_claim(struct route_table *t, struct rt_map *m, const char *key,
                                 size_t len, int *fresh)
{
    uint32_t h = hash_bytes(key, len);
    struct rt_slot *s;
    int64_t off;

    *fresh = 0;
    if ((m->n + 1) * 4 > m->cap * 3 && map_resize(t, m, m->cap ? m->cap * 2 : 16) < 0)
        return NULL;
    s = map_find(t, m, key, len, h);
    if (s->group >= 0)
        return s;
    off = pool_add(t, key, len, 0);
    if (off < 0)
        return NULL;
    /* s is still the free slot: pool_add does not touch the map */
    *s = (struct rt_slot){.hash = h, .off = (uint32_t)off, .len = (uint32_t)len, .group = -1};
    m->n++;
    *fresh = 1;
    return s;
}

/* The group for a host key (lowercase), created on first use; -1 on OOM. */
static int32_t group_for(struct route_table *t, struct rt_map *m, const char *key, size_t len)
{
    int fresh;
    struct rt_slot *s = map_claim(t, m, key, len, &fresh);

    if (s == NULL)
        return -1;
    if (fresh)
        s->group = group_new(t); /* -1 on OOM: the table is broken anyway */
    return s->group;
}

static int group_add_route(struct route_table *t, int32_t gi, uint32_t route,
                           enum route_path_kind kind, uint32_t off, uint32_t len)
{
    struct rt_group *g = &t->groups[gi];

    if (g->last_route == route)
        return 0;
    g->last_route = route;
    if (kind == ROUTE_PATH_REGEX) {
        if (grow(&g->regex, &g->cregex, g->nregex + 1, sizeof(*g->regex)) < 0)
            return -1;
        g->regex[g->nregex++] = route;
        return 0;
    }
    if (grow(&g->entries, &g->centries, g->nentries + 1, sizeof(*g->entries)) < 0)
        return -1;
    g->entries[g->nentries++] = (struct rt_entry){
        .off = off, .len = len, .route = route, .exact = kind == ROUTE_PATH_EXACT};
    return 0;
}

/* ---------------------------------------------------------------- checking */

static int is_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

static int check_name(const char *s, size_t len, char *err, size_t errlen)
{
    size_t label = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                goto empty_label;
            label = 0;
        } else if (is_name_char(c)) {
            label++;
        } else if (c == '*') {
            set_err(err, errlen,
                    "a wildcard is only allowed as a leading \"*.\", as \"*.example.com\"");
            return -1;
        } else if (c == ':') {
            set_err(err, errlen, "a host pattern has no port");
            return -1;
        } else {
            set_err(err, errlen, "invalid character '%c' in a host name",
                    c >= 0x20 && c < 0x7f ? c : '?');
            return -1;
        }
    }
    if (label == 0)
        goto empty_label;
    return 0;

empty_label:
    set_err(err, errlen, "empty label in a host name (leading, trailing or double dot)");
    return -1;
}

int route_host_check(const char *host, size_t len, char *err, size_t errlen)
{
    if (len == 0) {
        set_err(err, errlen, "empty host");
        return -1;
    }
    if (host[0] == '[') {
        if (len < 3 || host[len - 1] != ']')
            goto bad_v6;
        for (size_t i = 1; i + 1 < len; i++) {
            unsigned char c = (unsigned char)host[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.'))
                goto bad_v6;
        }
        return 0;
    }
    if (host[0] == '*') {
        if (len < 3 || host[1] != '.') {
            set_err(err, errlen,
                    "a wildcard is only allowed as a leading \"*.\", as \"*.example.com\"");
            return -1;
        }
        return check_name(host + 2, len - 2, err, errlen);
    }
    return check_name(host, len, err, errlen);

bad_v6:
    set_err(err, errlen, "invalid IPv6 literal (expected \"[hex:digits::]\")");
    return -1;
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int route_method_check(const char *method, size_t len, char *err, size_t errlen)
{
    if (len == 0) {
        set_err(err, errlen, "empty method");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)method[i])) {
            set_err(err, errlen, "invalid character in a method token");
            return -1;
        }
    }
    return 0;
}

static pcre2_code *regex_compile(const char *pat, size_t len, int caseless, char *err,
                                 size_t errlen)
{
    PCRE2_UCHAR msg[256];
    PCRE2_SIZE eoff;
    pcre2_code *re;
    int ec;

    /* No PCRE2_UTF: request paths are bytes and need not be valid UTF-8. */
    re = pcre2_compile((PCRE2_SPTR)pat, len, caseless ? PCRE2_CASELESS : 0, &ec, &eoff, NULL);
    if (re == NULL) {
        if (pcre2_get_error_message(ec, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", ec);
        set_err(err, errlen, "invalid regex: %s at offset %zu", (char *)msg, (size_t)eoff);
    }
    return re;
}

int route_path_check(enum route_path_kind kind, const char *path, size_t len, int caseless,
                     char *err, size_t errlen)
{
    pcre2_code *re;

    switch (kind) {
    case ROUTE_PATH_PREFIX:
    case ROUTE_PATH_EXACT:
        if (len == 0) {
            set_err(err, errlen, "empty path");
            return -1;
        }
        if (path[0] != '/') {
            set_err(err, errlen,
                    "a path starts with '/' or \"^~/\" (prefix), \"=/\" (exact), \"~\" or "
                    "\"~*\" (regex)");
            return -1;
        }
        if (memchr(path, '\0', len) != NULL) {
            set_err(err, errlen, "NUL byte in a path");
            return -1;
        }
        return 0;
    case ROUTE_PATH_REGEX:
        if (len == 0) {
            set_err(err, errlen, "empty regex");
            return -1;
        }
        re = regex_compile(path, len, caseless, err, errlen);
        if (re == NULL)
            return -1;
        pcre2_code_free(re);
        return 0;
    }
    set_err(err, errlen, "unknown path kind");
    return -1;
}

/* ------------------------------------------------------------ sameness */

static int cmp_caseless(const void *a, const void *b)
{
    return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_bytes(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends the items of v as a set: sorted, each once, lowercased if asked,
 * each followed by a NUL (no item holds one). */
static char *put_set(char *out, const char *const *v, size_t n, int caseless,
                     const char **sorted)
{
    if (n == 0)
        return out; /* v may be NULL */
    memcpy(sorted, v, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), caseless ? cmp_caseless : cmp_bytes);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (caseless ? strcasecmp : strcmp)(sorted[i - 1], sorted[i]) == 0)
            continue;
        for (const char *c = sorted[i]; *c != '\0'; c++)
            *out++ = caseless && *c >= 'A' && *c <= 'Z' ? (char)(*c - 'A' + 'a') : *c;
        *out++ = '\0';
    }
    return out;
}

/* What makes two routes the same: path kind and text ("^~" or not, which
 * nginx also calls one location), the hosts and the methods as sets. A
 * malloc'ed key of *len bytes, or NULL when out of memory. */
static char *route_key(const struct route_spec *spec, size_t *len)
{
    const char *path = spec->path ? spec->path : "/";
    size_t path_len = spec->path ? spec->path_len : 1, size = path_len + 4;
    enum route_path_kind kind = spec->path ? spec->path_kind : ROUTE_PATH_PREFIX;
    size_t nsort = spec->nhosts > spec->nmethods ? spec->nhosts : spec->nmethods;
    const char **sorted = malloc((nsort ? nsort : 1) * sizeof(*sorted));
    char *key, *p;

    for (size_t i = 0; i < spec->nhosts; i++)
        size += strlen(spec->hosts[i]) + 1;
    for (size_t i = 0; i < spec->nmethods; i++)
        size += strlen(spec->methods[i]) + 1;
    key = malloc(size);
    if (key == NULL || sorted == NULL) {
        free(key);
        free(sorted);
        return NULL;
    }
    p = key;
    *p++ = kind == ROUTE_PATH_REGEX ? (spec->caseless ? 'R' : 'r')
                                    : (kind == ROUTE_PATH_EXACT ? 'e' : 'p');
    memcpy(p, path, path_len);
    p += path_len;
    *p++ = '\0';
    p = put_set(p, spec->hosts, spec->nhosts, 1, sorted);
    *p++ = '\1'; /* ends the hosts: no host holds this byte */
    p = put_set(p, spec->methods, spec->nmethods, 0, sorted);
    free(sorted);
    *len = (size_t)(p - key);
    return key;
}

int route_table_duplicate(const struct route_table *t, const struct route_spec *spec)
{
    size_t len;
    char *key = route_key(spec, &len);
    int32_t route;

    if (key == NULL)
        return -1; /* the add that follows fails the same way, with a message */
    route = map_get(t, &t->same, key, len);
    free(key);
    return route >= 0 ? t->routes[route].index : -1;
}

/* Remembers spec's key for route (a position in routes[]), unless an earlier
 * route has it. 0, or -1 when out of memory. */
static int same_add(struct route_table *t, const struct route_spec *spec, uint32_t route)
{
    size_t len;
    char *key = route_key(spec, &len);
    struct rt_slot *s;
    int fresh;

    if (key == NULL)
        return -1;
    s = map_claim(t, &t->same, key, len, &fresh);
    free(key);
    if (s == NULL)
        return -1;
    if (fresh)
        s->group = (int32_t)route;
    return 0;
}

/* -------------------------------------------------------------------- add */

struct route_table *route_table_new(void)
{
    struct route_table *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    if (group_new(t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

size_t route_table_count(const struct route_table *t)
{
    return t->nroutes;
}

static int method_bit(const char *m, size_t len)
{
    for (size_t i = 0; i < NKNOWN; i++) {
        if (known_methods[i].len == len && memcmp(known_methods[i].name, m, len) == 0)
            return (int)i;
    }
    return -1;
}

static void route_clear(struct rt_route *r)
{
    for (size_t i = 0; i < r->nextra; i++)
        free(r->extra[i]);
    free(r->extra);
    pcre2_code_free(r->re);
}

/* Fills *r from spec's methods; nothing to undo but route_clear on failure. */
static int route_methods(struct rt_route *r, const struct route_spec *spec, char *err,
                         size_t errlen)
{
    r->any_method = spec->nmethods == 0;
    for (size_t i = 0; i < spec->nmethods; i++) {
        const char *m = spec->methods[i];
        size_t len = strlen(m);
        int bit;

        char why[128];

        if (route_method_check(m, len, why, sizeof(why)) < 0) {
            set_err(err, errlen, "method \"%s\": %s", m, why);
            return -1;
        }
        bit = method_bit(m, len);
        if (bit >= 0) {
            r->method_mask |= 1u << bit;
            continue;
        }
        char **extra = realloc(r->extra, (r->nextra + 1) * sizeof(*r->extra));
        if (extra == NULL)
            goto oom;
        r->extra = extra;
        if ((extra[r->nextra] = strdup(m)) == NULL)
            goto oom;
        r->nextra++;
    }
    return 0;

oom:
    set_err(err, errlen, "out of memory");
    return -1;
}

/* The config prefix that selects a path kind, for messages. */
static const char *path_marker(enum route_path_kind kind, int caseless)
{
    if (kind == ROUTE_PATH_EXACT)
        return "=";
    if (kind == ROUTE_PATH_REGEX)
        return caseless ? "~*" : "~";
    return "";
}

int route_table_add(struct route_table *t, const struct route_spec *spec, char *err,
                    size_t errlen)
{
    struct rt_route r = {.index = spec->index};
    /* "^~" only means something on a prefix */
    int stop = spec->stop && (spec->path == NULL || spec->path_kind == ROUTE_PATH_PREFIX);
    const char *path = spec->path ? spec->path : "/";
    size_t path_len = spec->path ? spec->path_len : 1;
    enum route_path_kind kind = spec->path ? spec->path_kind : ROUTE_PATH_PREFIX;
    uint32_t route = (uint32_t)t->nroutes;
    int64_t path_off = 0;
    char why[384];

    if (t->built || t->broken) {
        set_err(err, errlen, "route table is %s", t->built ? "already built" : "broken");
        return -1;
    }
    if (spec->index < 0) {
        set_err(err, errlen, "negative route index");
        return -1;
    }
    /* Check everything before touching the table, so a bad route leaves it as
     * it was. */
    for (size_t i = 0; i < spec->nhosts; i++) {
        if (route_host_check(spec->hosts[i], strlen(spec->hosts[i]), why, sizeof(why)) < 0) {
            set_err(err, errlen, "host \"%s\": %s", spec->hosts[i], why);
            return -1;
        }
    }
    if (kind == ROUTE_PATH_REGEX) {
        if (path_len == 0) {
            snprintf(why, sizeof(why), "empty regex");
            goto bad_path;
        }
        r.re = regex_compile(path, path_len, spec->caseless, why, sizeof(why));
        if (r.re == NULL)
            goto bad_path;
        /* JIT is an optimisation: where it is unavailable the interpreter runs. */
        (void)pcre2_jit_compile(r.re, PCRE2_JIT_COMPLETE);
    } else if (route_path_check(kind, path, path_len, 0, why, sizeof(why)) < 0) {
        goto bad_path;
    }
    if (route_methods(&r, spec, err, errlen) < 0)
        goto fail;
    if (grow(&t->routes, &t->croutes, t->nroutes + 1, sizeof(*t->routes)) < 0)
        goto oom;

    /* From here a failure is out of memory and leaves the table broken. */
    if (kind != ROUTE_PATH_REGEX && (path_off = pool_add(t, path, path_len, 0)) < 0)
        goto broken;
    r.stop = stop;
    t->routes[t->nroutes++] = r;
    if (same_add(t, spec, route) < 0)
        goto broken_added;
    if (spec->nhosts == 0) {
        if (group_add_route(t, 0, route, kind, (uint32_t)path_off, (uint32_t)path_len) < 0)
            goto broken_added;
        return 0;
    }
    for (size_t i = 0; i < spec->nhosts; i++) {
        const char *h = spec->hosts[i];
        size_t hlen = strlen(h);
        int wild = h[0] == '*';
        char low[256];
        char *key = hlen < sizeof(low) ? low : malloc(hlen + 1);
        int32_t g;

        if (key == NULL)
            goto broken_added;
        for (size_t k = 0; k < hlen; k++)
            key[k] = (h[k] >= 'A' && h[k] <= 'Z') ? (char)(h[k] - 'A' + 'a') : h[k];
        /* "*.example.com" is stored as ".example.com", the form looked up */
        g = group_for(t, wild ? &t->wild_hosts : &t->exact_hosts, key + wild, hlen - wild);
        if (key != low)
            free(key);
        if (g < 0 ||
            group_add_route(t, g, route, kind, (uint32_t)path_off, (uint32_t)path_len) < 0)
            goto broken_added;
    }
    return 0;

bad_path:
    /* the text as written in config, so the message names the value */
    set_err(err, errlen, "path \"%s%.*s\": %s", path_marker(kind, spec->caseless),
            (int)(path_len > 200 ? 200 : path_len), path, why);
    return -1;
oom:
    set_err(err, errlen, "out of memory");
fail:
    route_clear(&r);
    return -1;
broken:
    route_clear(&r);
broken_added:
    t->broken = 1;
    set_err(err, errlen, "out of memory");
    return -1;
}

/* ------------------------------------------------------------------ build */

static int entry_cmp(const void *a, const void *b, void *pool)
{
    const struct rt_entry *x = a, *y = b;
    const char *sort_pool = pool;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(sort_pool + x->off, sort_pool + y->off, n);

    if (c != 0)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    /* same path: config order, so equal candidates keep it */
    return x->route < y->route ? -1 : x->route > y->route;
}

/* A distinct path of a group, with the slices of lists[] for its routes. */
struct rt_unique {
    uint32_t off, len;
    uint32_t prefix, nprefix, exact, nexact;
};

struct rt_work {
    uint32_t node, lo, hi, depth;
    int32_t up;
};

static int list_push(struct route_table *t, uint32_t route)
{
    const struct rt_route *r = &t->routes[route];

    if (t->nlists >= UINT32_MAX ||
        grow(&t->lists, &t->clists, t->nlists + 1, sizeof(*t->lists)) < 0)
        return -1;
    t->lists[t->nlists++] = (struct rt_cand){
        .index = r->index,
        .route = route,
        .methods = r->any_method ? CAND_ANY : r->method_mask | (r->nextra ? CAND_EXTRA : 0),
        .stop = r->stop,
    };
    return 0;
}

static int64_t node_new(struct route_table *t)
{
    if (t->nnodes >= INT32_MAX ||
        grow(&t->nodes, &t->cnodes, t->nnodes + 1, sizeof(*t->nodes)) < 0 ||
        grow(&t->keys, &t->ckeys, t->nnodes + 1, sizeof(*t->keys)) < 0)
        return -1;
    memset(&t->nodes[t->nnodes], 0, sizeof(*t->nodes));
    return (int64_t)t->nnodes++;
}

/* Sorted, deduplicated paths of a group; route lists go to t->lists. */
static struct rt_unique *group_uniques(struct route_table *t, struct rt_group *g, size_t *nout)
{
    struct rt_unique *u = malloc(g->nentries * sizeof(*u));
    size_t n = 0;

    if (u == NULL)
        return NULL;
    qsort_r(g->entries, g->nentries, sizeof(*g->entries), entry_cmp, t->pool);
    for (size_t i = 0; i < g->nentries;) {
        size_t j = i;
        struct rt_unique *v = &u[n++];

        while (j < g->nentries && g->entries[j].len == g->entries[i].len &&
               memcmp(t->pool + g->entries[j].off, t->pool + g->entries[i].off,
                      g->entries[i].len) == 0)
            j++;
        *v = (struct rt_unique){.off = g->entries[i].off, .len = g->entries[i].len};
        v->exact = (uint32_t)t->nlists;
        for (size_t k = i; k < j; k++) {
            if (g->entries[k].exact && list_push(t, g->entries[k].route) < 0)
                goto fail;
        }
        v->nexact = (uint32_t)t->nlists - v->exact;
        v->prefix = (uint32_t)t->nlists;
        for (size_t k = i; k < j; k++) {
            if (!g->entries[k].exact && list_push(t, g->entries[k].route) < 0)
                goto fail;
        }
        v->nprefix = (uint32_t)t->nlists - v->prefix;
        i = j;
    }
    *nout = n;
    return u;

fail:
    free(u);
    return NULL;
}

/* Builds a group's radix tree breadth first, so that the children of a node
 * are allocated next to each other and can be binary-searched. Each work item
 * is a node covering the sorted paths u[lo, hi), which all share their first
 * `depth` bytes; the node's label is what they share beyond that. */
static int group_tree(struct route_table *t, struct rt_group *g)
{
    struct rt_unique *u;
    struct rt_work *q = NULL;
    size_t nu, nq = 0, cq = 0, head = 0;
    int64_t root;
    int rc = -1;

    if (g->nentries == 0)
        return 0;
    u = group_uniques(t, g, &nu);
    if (u == NULL)
        return -1;
    root = node_new(t);
    if (root < 0 || grow(&q, &cq, 1, sizeof(*q)) < 0)
        goto out;
    g->root = (int32_t)root;
    q[nq++] = (struct rt_work){.node = (uint32_t)root, .lo = 0, .hi = (uint32_t)nu,
                               .depth = 0, .up = NO_NODE};
    while (head < nq) {
        struct rt_work w = q[head++];
        const struct rt_unique *a = &u[w.lo], *b = &u[w.hi - 1];
        uint32_t end = w.depth, lim = a->len < b->len ? a->len : b->len;
        uint32_t lo = w.lo, first_child = (uint32_t)t->nnodes, nchild = 0;
        int32_t child_up = w.up;
        struct rt_node *n;

        /* sorted, so what the first and last share, all share */
        while (end < lim && t->pool[a->off + end] == t->pool[b->off + end])
            end++;
        n = &t->nodes[w.node];
        n->label = a->off + w.depth;
        n->label_len = end - w.depth;
        t->keys[w.node] = (unsigned char)t->pool[n->label];
        n->up = w.up;
        if (a->len == end) { /* sorted, so a path ending here comes first */
            n->prefix = a->prefix;
            n->nprefix = a->nprefix;
            n->exact = a->exact;
            n->nexact = a->nexact;
            if (a->nprefix)
                child_up = (int32_t)w.node;
            lo++;
        }
        for (uint32_t i = lo; i < w.hi;) {
            unsigned char c = (unsigned char)t->pool[u[i].off + end];
            uint32_t j = i;
            int64_t child;

            while (j < w.hi && (unsigned char)t->pool[u[j].off + end] == c)
                j++;
            child = node_new(t);
            if (child < 0 || grow(&q, &cq, nq + 1, sizeof(*q)) < 0)
                goto out;
            q[nq++] = (struct rt_work){.node = (uint32_t)child, .lo = i, .hi = j,
                                       .depth = end, .up = child_up};
            nchild++;
            i = j;
        }
        n = &t->nodes[w.node]; /* node_new may have moved the array */
        n->child = first_child;
        n->nchild = nchild;
    }
    rc = 0;
out:
    free(q);
    free(u);
    return rc;
}

/* The methods routes name, each once, for route_table_allowed. */
static int named_methods(struct route_table *t)
{
    for (size_t i = 0; i < t->nroutes; i++) {
        const struct rt_route *r = &t->routes[i];
        t->named_mask |= r->method_mask;
        for (size_t k = 0; k < r->nextra; k++) {
            size_t j = 0;
            while (j < t->nnamed_extra && strcmp(t->named_extra[j], r->extra[k]) != 0)
                j++;
            if (j < t->nnamed_extra)
                continue;
            const char **v = realloc(t->named_extra, (j + 1) * sizeof(*v));
            if (v == NULL)
                return -1;
            t->named_extra = v;
            v[t->nnamed_extra++] = r->extra[k];
        }
    }
    return 0;
}

int route_table_build(struct route_table *t, char *err, size_t errlen)
{
    if (t->broken || t->built) {
        set_err(err, errlen, "route table is %s", t->built ? "already built" : "broken");
        return -1;
    }
    if (named_methods(t) < 0)
        goto oom;
    for (size_t i = 0; i < t->ngroups; i++) {
        struct rt_group *g = &t->groups[i];
        if (group_tree(t, g) < 0)
            goto oom;
        /* the entries are in the tree now */
        free(g->entries);
        g->entries = NULL;
        g->centries = 0;
    }
    t->md = pcre2_match_data_create(1, NULL);
    if (t->md == NULL)
        goto oom;
    t->built = 1;
    return 0;

oom:
    t->broken = 1;
    set_err(err, errlen, "out of memory");
    return -1;
}

/* ------------------------------------------------------------------ match */

/* A method bit for "any method", for route_table_allowed: every route
 * accepts it. */
#define BIT_ANY (-2)

static int route_accepts(const struct rt_route *r, int bit, const char *m, size_t len)
{
    if (r->any_method || bit == BIT_ANY)
        return 1;
    if (bit >= 0)
        return (r->method_mask >> bit) & 1;
    for (size_t i = 0; i < r->nextra; i++) {
        if (strlen(r->extra[i]) == len && memcmp(r->extra[i], m, len) == 0)
            return 1;
    }
    return 0;
}

static int32_t find_child(const struct route_table *t, const struct rt_node *n, unsigned char c)
{
    const unsigned char *keys = t->keys + n->child;
    uint32_t lo = 0, hi = n->nchild;

    /* keys are sorted; a short scan beats the branches of a binary search */
    if (hi <= 8) {
        for (uint32_t i = 0; i < hi; i++) {
            if (keys[i] == c)
                return (int32_t)(n->child + i);
        }
        return NO_NODE;
    }
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (keys[mid] == c)
            return (int32_t)(n->child + mid);
        if (keys[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NO_NODE;
}

/* Labels are mostly a few bytes; a loop avoids a memcmp call for those. */
static int label_eq(const char *a, const char *b, size_t len)
{
    if (len > 16)
        return memcmp(a, b, len) == 0;
    for (size_t i = 0; i < len; i++) {
        if (a[i] != b[i])
            return 0;
    }
    return 1;
}

/* First accepting route of lists[off, off + n), or NULL. */
static const struct rt_cand *list_match(const struct route_table *t, uint32_t off, uint32_t n,
                                        int bit, const char *m, size_t mlen)
{
    for (uint32_t i = 0; i < n; i++) {
        const struct rt_cand *c = &t->lists[off + i];
        if (c->methods == CAND_ANY || bit == BIT_ANY || (bit >= 0 && ((c->methods >> bit) & 1)))
            return c;
        if (bit < 0 && (c->methods & CAND_EXTRA) &&
            route_accepts(&t->routes[c->route], bit, m, mlen))
            return c;
    }
    return NULL;
}

/* nginx's location order inside one host tier (see route_table.h). */
static int group_match(struct route_table *t, const struct rt_group *g, const char *path,
                       size_t pathlen, int bit, const char *m, size_t mlen)
{
    int32_t ni = g->root, deepest = NO_NODE, exact = NO_NODE;
    size_t pos = 0, skip = 0; /* the root's label is compared in full */
    const struct rt_cand *c, *prefix = NULL;

    while (ni != NO_NODE) {
        const struct rt_node *n = &t->nodes[ni];
        /* a child was found by its first byte: compare the rest */
        if (pathlen - pos < n->label_len ||
            !label_eq(path + pos + skip, t->pool + n->label + skip, n->label_len - skip))
            break;
        pos += n->label_len;
        skip = 1;
        if (n->nprefix)
            deepest = ni;
        if (pos == pathlen) {
            if (n->nexact)
                exact = ni;
            break;
        }
        ni = find_child(t, n, (unsigned char)path[pos]);
    }
    if (exact != NO_NODE &&
        (c = list_match(t, t->nodes[exact].exact, t->nodes[exact].nexact, bit, m, mlen)) != NULL)
        return c->index;
    /* the longest prefix that takes the method is remembered */
    for (ni = deepest; ni != NO_NODE && prefix == NULL; ni = t->nodes[ni].up)
        prefix = list_match(t, t->nodes[ni].prefix, t->nodes[ni].nprefix, bit, m, mlen);
    if (prefix != NULL && prefix->stop)
        return prefix->index;
    for (size_t i = 0; i < g->nregex; i++) {
        const struct rt_route *r = &t->routes[g->regex[i]];
        if (!route_accepts(r, bit, m, mlen))
            continue;
        /* rc 0 means "matched, ovector too small": still a match */
        if (pcre2_match(r->re, (PCRE2_SPTR)path, pathlen, 0, 0, t->md, NULL) >= 0)
            return r->index;
    }
    return prefix != NULL ? prefix->index : -1;
}

static int table_match(struct route_table *t, const char *host, size_t hostlen, const char *path,
                       size_t pathlen, int bit, const char *method, size_t methodlen)
{
    int idx;
    int32_t g;

    if (hostlen > 0) {
        g = map_get(t, &t->exact_hosts, host, hostlen);
        if (g >= 0 &&
            (idx = group_match(t, &t->groups[g], path, pathlen, bit, method, methodlen)) >= 0)
            return idx;
        if (t->wild_hosts.n > 0) {
            /* leftmost dot first: the longest suffix is the most specific */
            for (size_t i = 0; i < hostlen; i++) {
                if (host[i] != '.')
                    continue;
                g = map_get(t, &t->wild_hosts, host + i, hostlen - i);
                if (g >= 0 && (idx = group_match(t, &t->groups[g], path, pathlen, bit, method,
                                                 methodlen)) >= 0)
                    return idx;
            }
        }
    }
    return group_match(t, &t->groups[0], path, pathlen, bit, method, methodlen);
}

int route_table_match(struct route_table *t, const char *host, size_t hostlen, const char *path,
                      size_t pathlen, const char *method, size_t methodlen)
{
    if (!t->built)
        return -1;
    return table_match(t, host, hostlen, path, pathlen, method_bit(method, methodlen), method,
                       methodlen);
}

/* Appends ", name" (or "name" first) if it fits; 0, or -1 when full. */
static int allow_put(char *out, size_t outlen, size_t *pos, const char *name, size_t len)
{
    size_t sep = *pos ? 2 : 0;

    if (*pos + sep + len + 1 > outlen)
        return -1;
    memcpy(out + *pos, ", ", sep);
    memcpy(out + *pos + sep, name, len);
    *pos += sep + len;
    out[*pos] = '\0';
    return 0;
}

size_t route_table_allowed(struct route_table *t, const char *host, size_t hostlen,
                           const char *path, size_t pathlen, char *out, size_t outlen)
{
    size_t pos = 0, n = 0;

    if (outlen > 0)
        out[0] = '\0';
    if (!t->built || table_match(t, host, hostlen, path, pathlen, BIT_ANY, "", 0) < 0)
        return 0;
    /* only named methods can be missing: a route taking any method would
     * have matched */
    for (size_t i = 0; i < NKNOWN; i++) {
        const char *name = known_methods[i].name;
        size_t len = known_methods[i].len;
        if (((t->named_mask >> i) & 1) &&
            table_match(t, host, hostlen, path, pathlen, (int)i, name, len) >= 0) {
            n++;
            if (allow_put(out, outlen, &pos, name, len) < 0)
                return n;
        }
    }
    for (size_t i = 0; i < t->nnamed_extra; i++) {
        const char *name = t->named_extra[i];
        size_t len = strlen(name);
        if (table_match(t, host, hostlen, path, pathlen, -1, name, len) >= 0) {
            n++;
            if (allow_put(out, outlen, &pos, name, len) < 0)
                return n;
        }
    }
    return n;
}

/* ------------------------------------------------------------------- free */

void route_table_free(struct route_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nroutes; i++)
        route_clear(&t->routes[i]);
    for (size_t i = 0; i < t->ngroups; i++) {
        free(t->groups[i].entries);
        free(t->groups[i].regex);
    }
    pcre2_match_data_free(t->md);
    free(t->routes);
    free(t->groups);
    free(t->exact_hosts.slots);
    free(t->wild_hosts.slots);
    free(t->same.slots);
    free(t->named_extra);
    free(t->nodes);
    free(t->keys);
    free(t->lists);
    free(t->pool);
    free(t);
}
