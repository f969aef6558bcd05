/*
 * Fuzz target: the router's route table (modules/router/route_table.c),
 * built and matched directly, as t/unit/router_test.c uses it, against a
 * brute-force reading of the rules in route_table.h.
 *
 * The input is text, one command per line (t/fuzz/corpus/router has
 * examples); the path is the rest of the line so it may hold spaces:
 *
 *   R <hosts> <methods> <path>    add a route; hosts and methods are comma
 *                                 lists or "-" for none; path "-" is none,
 *                                 "=/x" exact, "^~/x" prefix that stops the
 *                                 regexes, "~re" regex, "~*re" caseless
 *   M <host> <method> <path>      match (host "-" is the empty host)
 *
 * Routes are numbered by their R line; an R line the table refuses leaves
 * a gap. Invariants beyond "no sanitizer report":
 *  - route_table_add accepts a route exactly when route_host_check,
 *    route_path_check and route_method_check accept all of its parts;
 *  - matching before route_table_build finds nothing;
 *  - every match gives the route the brute-force reference gives: host
 *    tiers (exact, wildcards longest suffix first, no host), and in a tier
 *    nginx's order: the exact path; else the longest prefix, which wins if
 *    it is "^~"; else the first regex in order; else that prefix; each
 *    route skipped when its methods do not hold the request method;
 *  - route_table_duplicate names the first earlier route with the same
 *    path, host set and method set (brute force), or none.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "router/route_table.h"

#define MAX_ROUTES 48
#define MAX_MATCHES 64
#define MAX_LIST 8
#define MAX_REGEX 64
#define MAX_PATH 512

struct ref_route {
    int index;
    char *hosts[MAX_LIST]; /* lowercased, NUL-terminated copies */
    size_t host_len[MAX_LIST];
    size_t nhosts;
    enum route_path_kind kind;
    int caseless, stop;
    const char *path; /* into the input; NULL: no path ("/" prefix) */
    size_t path_len;
    pcre2_code *re;
    pcre2_match_data *md;
    const char *methods[MAX_LIST];
    size_t method_len[MAX_LIST];
    size_t nmethods;
};

struct field {
    const char *p;
    size_t n;
};

static int field_is_none(struct field f)
{
    return f.n == 1 && f.p[0] == '-';
}

/* Next space-separated field of line[*pos..end); empty at the end. */
static struct field next_field(const char *line, size_t end, size_t *pos)
{
    size_t s = *pos;
    while (*pos < end && line[*pos] != ' ')
        (*pos)++;
    struct field f = {line + s, *pos - s};
    if (*pos < end)
        (*pos)++;
    return f;
}

/* Splits a comma list into items (pointers into f). */
static size_t split_list(struct field f, struct field *items)
{
    size_t n = 0, s = 0;
    if (field_is_none(f))
        return 0;
    for (size_t i = 0; i <= f.n && n < MAX_LIST; i++) {
        if (i == f.n || f.p[i] == ',') {
            items[n].p = f.p + s;
            items[n].n = i - s;
            n++;
            s = i + 1;
        }
    }
    return n;
}

static char *cstr_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    FZ_CHECK(d != NULL, "malloc");
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *lower_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    FZ_CHECK(d != NULL, "malloc");
    for (size_t i = 0; i < n; i++)
        d[i] = (char)fz_ascii_lower((unsigned char)s[i]);
    d[n] = '\0';
    return d;
}

static void ref_free(struct ref_route *r)
{
    for (size_t i = 0; i < r->nhosts; i++)
        free(r->hosts[i]);
    pcre2_match_data_free(r->md);
    pcre2_code_free(r->re);
    for (size_t i = 0; i < r->nmethods; i++)
        free((char *)r->methods[i]);
}

static int ref_method_ok(const struct ref_route *r, const char *m, size_t mlen)
{
    if (r->nmethods == 0)
        return 1;
    for (size_t i = 0; i < r->nmethods; i++)
        if (r->method_len[i] == mlen && memcmp(r->methods[i], m, mlen) == 0)
            return 1;
    return 0;
}

/* The tier of a route for a host: 0 exact, 1 + (length of host) - (length
 * of the wildcard suffix) for "*.suffix" (smaller = longer suffix = more
 * specific), SIZE_MAX for none; "no host" routes are handled apart. */
static size_t ref_tier(const struct ref_route *r, const char *host, size_t hlen)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < r->nhosts; i++) {
        const char *h = r->hosts[i];
        size_t n = r->host_len[i];
        if (n >= 2 && h[0] == '*' && h[1] == '.') {
            /* "*.s" covers a host ending in ".s". The label before may be
             * empty: ".s" itself is covered, as the table does it (a dot at
             * any position starts a suffix); only "s" is not. */
            size_t sl = n - 1; /* ".s" */
            if (hlen >= sl && memcmp(host + hlen - sl, h + 1, sl) == 0) {
                size_t tier = 1 + hlen - sl;
                if (tier < best)
                    best = tier;
            }
        } else if (n == hlen && memcmp(h, host, hlen) == 0) {
            best = 0;
        }
    }
    return best;
}

/* Best route of one tier: exact path, longest prefix if "^~", first regex,
 * that prefix. */
static int ref_tier_match(struct ref_route *routes, size_t n, const int *in_tier,
                          const char *path, size_t plen, const char *m, size_t mlen)
{
    for (size_t i = 0; i < n; i++)
        if (in_tier[i] && routes[i].kind == ROUTE_PATH_EXACT && routes[i].path_len == plen &&
            memcmp(routes[i].path, path, plen) == 0 && ref_method_ok(&routes[i], m, mlen))
            return routes[i].index;
    int best = -1, best_stop = 0;
    size_t best_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_tier[i] || routes[i].kind != ROUTE_PATH_PREFIX)
            continue;
        const char *pp = routes[i].path ? routes[i].path : "/";
        size_t pl = routes[i].path ? routes[i].path_len : 1;
        if (pl > plen || memcmp(pp, path, pl) != 0 || !ref_method_ok(&routes[i], m, mlen))
            continue;
        if (best < 0 || pl > best_len) {
            best = routes[i].index;
            best_len = pl;
            best_stop = routes[i].stop;
        }
    }
    if (best >= 0 && best_stop)
        return best;
    for (size_t i = 0; i < n; i++) {
        if (!in_tier[i] || routes[i].kind != ROUTE_PATH_REGEX || !ref_method_ok(&routes[i], m, mlen))
            continue;
        if (pcre2_match(routes[i].re, (PCRE2_SPTR)path, plen, 0, 0, routes[i].md, NULL) >= 0)
            return routes[i].index;
    }
    return best;
}

/* Items of a as a set equal items of b (case folded for hosts, which are
 * stored lowercased already). */
static int ref_same_set(const char *const *a, const size_t *alen, size_t na,
                        const char *const *b, const size_t *blen, size_t nb)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < na; i++) {
            size_t j = 0;
            while (j < nb && !(alen[i] == blen[j] && memcmp(a[i], b[j], alen[i]) == 0))
                j++;
            if (j == nb)
                return 0;
        }
        const char *const *t = a;
        const size_t *tl = alen;
        size_t tn = na;
        a = b, alen = blen, na = nb;
        b = t, blen = tl, nb = tn;
    }
    return 1;
}

static int ref_duplicate(const struct ref_route *routes, size_t n, const struct ref_route *r)
{
    for (size_t i = 0; i < n; i++) {
        const struct ref_route *o = &routes[i];
        const char *op = o->path ? o->path : "/", *rp = r->path ? r->path : "/";
        size_t ol = o->path ? o->path_len : 1, rl = r->path ? r->path_len : 1;
        if (o->kind != r->kind || (o->kind == ROUTE_PATH_REGEX && o->caseless != r->caseless) ||
            ol != rl || memcmp(op, rp, ol) != 0)
            continue;
        if (ref_same_set((const char *const *)o->hosts, o->host_len, o->nhosts,
                         (const char *const *)r->hosts, r->host_len, r->nhosts) &&
            ref_same_set(o->methods, o->method_len, o->nmethods, r->methods, r->method_len,
                         r->nmethods))
            return o->index;
    }
    return -1;
}

static int ref_match(struct ref_route *routes, size_t n, const char *host, size_t hlen,
                     const char *path, size_t plen, const char *m, size_t mlen)
{
    int in_tier[MAX_ROUTES];
    size_t tier[MAX_ROUTES];
    if (hlen > 0) {
        for (size_t i = 0; i < n; i++)
            tier[i] = ref_tier(&routes[i], host, hlen);
        /* tiers in order: 0 (exact), then wildcard tiers by suffix length */
        for (;;) {
            size_t t = SIZE_MAX;
            for (size_t i = 0; i < n; i++)
                if (tier[i] < t)
                    t = tier[i];
            if (t == SIZE_MAX)
                break;
            for (size_t i = 0; i < n; i++)
                in_tier[i] = tier[i] == t;
            int idx = ref_tier_match(routes, n, in_tier, path, plen, m, mlen);
            if (idx >= 0)
                return idx;
            for (size_t i = 0; i < n; i++)
                if (tier[i] == t)
                    tier[i] = SIZE_MAX; /* this tier is done */
        }
    }
    for (size_t i = 0; i < n; i++)
        in_tier[i] = routes[i].nhosts == 0;
    return ref_tier_match(routes, n, in_tier, path, plen, m, mlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct route_table *t = route_table_new();
    FZ_CHECK(t != NULL, "route_table_new");
    struct ref_route routes[MAX_ROUTES];
    size_t nroutes = 0, nr_lines = 0;
    struct {
        const char *host, *method, *path;
        size_t hlen, mlen, plen;
    } matches[MAX_MATCHES];
    size_t nmatches = 0;
    char err[512];

    for (size_t ls = 0; ls < size;) {
        const char *nl = memchr(text + ls, '\n', size - ls);
        size_t le = nl ? (size_t)(nl - text) : size;
        size_t pos = ls;
        struct field kind = next_field(text, le, &pos);
        struct field f1 = next_field(text, le, &pos);
        struct field f2 = next_field(text, le, &pos);
        struct field path = {text + pos, le - pos};
        ls = le + 1;

        if (kind.n == 1 && kind.p[0] == 'M' && nmatches < MAX_MATCHES && path.n <= MAX_PATH) {
            matches[nmatches].host = f1.p;
            matches[nmatches].hlen = field_is_none(f1) ? 0 : f1.n;
            matches[nmatches].method = f2.p;
            matches[nmatches].mlen = f2.n;
            matches[nmatches].path = path.p;
            matches[nmatches].plen = path.n;
            nmatches++;
            continue;
        }
        if (kind.n != 1 || kind.p[0] != 'R' || nr_lines >= MAX_ROUTES)
            continue;
        int index = (int)nr_lines++;

        struct field hosts[MAX_LIST], methods[MAX_LIST];
        size_t nh = split_list(f1, hosts), nm = split_list(f2, methods);
        struct route_spec spec;
        memset(&spec, 0, sizeof(spec));
        spec.index = index;
        if (!field_is_none(path)) {
            spec.path = path.p;
            spec.path_len = path.n;
            if (path.n && path.p[0] == '=') {
                spec.path_kind = ROUTE_PATH_EXACT;
                spec.path++;
                spec.path_len--;
            } else if (path.n > 1 && path.p[0] == '^' && path.p[1] == '~') {
                spec.stop = 1;
                spec.path += 2;
                spec.path_len -= 2;
            } else if (path.n && path.p[0] == '~') {
                spec.path_kind = ROUTE_PATH_REGEX;
                spec.caseless = path.n > 1 && path.p[1] == '*';
                spec.path += 1 + spec.caseless;
                spec.path_len -= 1 + (size_t)spec.caseless;
                if (spec.path_len > MAX_REGEX)
                    continue; /* keep matching fast */
            }
        }
        /* the table reads C strings for hosts and methods */
        char *hcopy[MAX_LIST], *mcopy[MAX_LIST];
        for (size_t i = 0; i < nh; i++)
            hcopy[i] = cstr_dup(hosts[i].p, hosts[i].n);
        for (size_t i = 0; i < nm; i++)
            mcopy[i] = cstr_dup(methods[i].p, methods[i].n);
        spec.hosts = (const char *const *)hcopy;
        spec.nhosts = nh;
        spec.methods = (const char *const *)mcopy;
        spec.nmethods = nm;

        int checks_ok = 1;
        for (size_t i = 0; i < nh; i++)
            checks_ok &= route_host_check(hcopy[i], strlen(hcopy[i]), err, sizeof(err)) == 0;
        for (size_t i = 0; i < nm; i++)
            checks_ok &= route_method_check(mcopy[i], strlen(mcopy[i]), err, sizeof(err)) == 0;
        if (spec.path)
            checks_ok &= route_path_check(spec.path_kind, spec.path, spec.path_len,
                                          spec.caseless, err, sizeof(err)) == 0;
        err[0] = '\0';
        int dup = route_table_duplicate(t, &spec);
        int added = route_table_add(t, &spec, err, sizeof(err)) == 0;
        FZ_CHECK(added == checks_ok, "route %d: add %s but the checks %s (%s)", index,
                 added ? "accepted" : "refused", checks_ok ? "pass" : "fail", err);
        if (!added)
            FZ_CHECK(err[0] != '\0', "route %d refused without a message", index);
        if (!added) {
            for (size_t i = 0; i < nh; i++)
                free(hcopy[i]);
            for (size_t i = 0; i < nm; i++)
                free(mcopy[i]);
            continue;
        }
        struct ref_route *r = &routes[nroutes++];
        memset(r, 0, sizeof(*r));
        r->index = index;
        /* as the table reads them: up to a NUL */
        for (size_t i = 0; i < nh; i++) {
            r->host_len[r->nhosts] = strlen(hcopy[i]);
            r->hosts[r->nhosts++] = lower_dup(hcopy[i], strlen(hcopy[i]));
            free(hcopy[i]);
        }
        for (size_t i = 0; i < nm; i++) {
            r->method_len[r->nmethods] = strlen(mcopy[i]);
            r->methods[r->nmethods++] = mcopy[i];
        }
        r->kind = spec.path ? spec.path_kind : ROUTE_PATH_PREFIX;
        r->caseless = spec.caseless;
        r->stop = spec.stop;
        r->path = spec.path;
        r->path_len = spec.path_len;
        FZ_CHECK(dup == ref_duplicate(routes, nroutes - 1, r),
                 "route %d: the table calls it the same as %d, the reference as %d", index, dup,
                 ref_duplicate(routes, nroutes - 1, r));
        if (r->kind == ROUTE_PATH_REGEX) {
            int ec;
            PCRE2_SIZE eo;
            r->re = pcre2_compile((PCRE2_SPTR)spec.path, spec.path_len,
                                  spec.caseless ? PCRE2_CASELESS : 0, &ec, &eo, NULL);
            FZ_CHECK(r->re != NULL, "route %d: the table took a regex PCRE2 refuses", index);
            (void)pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE);
            r->md = pcre2_match_data_create_from_pattern(r->re, NULL);
            FZ_CHECK(r->md != NULL, "match data");
        }
    }

    FZ_CHECK(route_table_count(t) == nroutes, "table counts %zu routes, %zu were added",
             route_table_count(t), nroutes);
    FZ_CHECK(route_table_match(t, "", 0, "/", 1, "GET", 3) == -1, "a match before build");
    int built = route_table_build(t, err, sizeof(err)) == 0;
    FZ_CHECK(built, "route_table_build: %s", err);

    for (size_t i = 0; i < nmatches; i++) {
        char *host = lower_dup(matches[i].host, matches[i].hlen);
        char *path = fz_dup(matches[i].path, matches[i].plen);
        char *method = fz_dup(matches[i].method, matches[i].mlen);
        int got = route_table_match(t, host, matches[i].hlen, path, matches[i].plen, method,
                                    matches[i].mlen);
        int want = ref_match(routes, nroutes, host, matches[i].hlen, path, matches[i].plen,
                             method, matches[i].mlen);
        FZ_CHECK(got == want, "match %zu (host '%s' method '%s' path '%s'): table %d, reference %d",
                 i, fz_show((weir_str_t){host, matches[i].hlen}),
                 fz_show((weir_str_t){method, matches[i].mlen}),
                 fz_show((weir_str_t){path, matches[i].plen}), got, want);
        free(host);
        free(path);
        free(method);
    }

    route_table_free(t);
    for (size_t i = 0; i < nroutes; i++)
        ref_free(&routes[i]);
    return 0;
}
