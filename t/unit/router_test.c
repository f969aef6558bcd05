/*
 * Route table of module router: host tiers, path specificity, methods,
 * config checks, the radix tree against a brute-force reference, and the
 * lookup cost at 10,000 routes (printed, not asserted).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/route_table.h"

#define MAXH 4
#define MAXM 4

struct rdef {
    const char *hosts[MAXH]; /* NULL-terminated */
    const char *path;        /* with the config marker: "=/x", "^~/x", "~re", "~*re"; NULL: none */
    const char *methods[MAXM];
};

struct mcase {
    const char *host, *path, *method;
    int want;
};

static size_t count_of(const char *const *v, size_t max)
{
    size_t n = 0;

    while (n < max && v[n] != NULL)
        n++;
    return n;
}

/* Fills spec from a config-style definition, as the module does. */
static void spec_from(const struct rdef *d, int index, struct route_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->index = index;
    spec->hosts = d->hosts;
    spec->nhosts = count_of(d->hosts, MAXH);
    spec->methods = d->methods;
    spec->nmethods = count_of(d->methods, MAXM);
    if (d->path == NULL)
        return;
    spec->path = d->path;
    spec->path_kind = ROUTE_PATH_PREFIX;
    if (d->path[0] == '=') {
        spec->path_kind = ROUTE_PATH_EXACT;
        spec->path++;
    } else if (d->path[0] == '^' && d->path[1] == '~') {
        spec->stop = 1;
        spec->path += 2;
    } else if (d->path[0] == '~') {
        spec->path_kind = ROUTE_PATH_REGEX;
        spec->caseless = d->path[1] == '*';
        spec->path += 1 + spec->caseless;
    }
    spec->path_len = strlen(spec->path);
}

static struct route_table *build(const struct rdef *defs, size_t n)
{
    struct route_table *t = route_table_new();
    char err[256];

    ck_assert_ptr_nonnull(t);
    for (size_t i = 0; i < n; i++) {
        struct route_spec spec;
        spec_from(&defs[i], (int)i, &spec);
        ck_assert_msg(route_table_add(t, &spec, err, sizeof(err)) == 0, "route %zu: %s", i, err);
    }
    ck_assert_msg(route_table_build(t, err, sizeof(err)) == 0, "build: %s", err);
    return t;
}

static void run_cases(struct route_table *t, const struct mcase *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int got = route_table_match(t, c[i].host, strlen(c[i].host), c[i].path,
                                    strlen(c[i].path), c[i].method, strlen(c[i].method));
        ck_assert_msg(got == c[i].want, "case %zu: %s %s%s -> %d, want %d", i, c[i].method,
                      c[i].host, c[i].path, got, c[i].want);
    }
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------- semantics */

static const struct rdef tiers_routes[] = {
    /* 0 */ {{"api.example.com"}, "/v1/", {NULL}},
    /* 1 */ {{"api.example.com"}, "=/v1/health", {NULL}},
    /* 2 */ {{"*.example.com"}, "/", {NULL}},
    /* 3 */ {{"*.b.example.com"}, "/", {NULL}},
    /* 4 */ {{NULL}, "/static/", {NULL}},
    /* 5 */ {{NULL}, "~*\\.png$", {NULL}},
    /* 6 */ {{NULL}, NULL, {NULL}},
    /* 7 */ {{"api.example.com"}, "/v1/admin/", {"POST"}},
    /* 8 */ {{"api.example.com"}, "/v1/", {NULL}},
    /* 9 */ {{NULL}, "/static/", {"GET"}},
    /* 10 */ {{"API.example.com"}, "~^/img/.*\\.png$", {NULL}},
    /* 11 */ {{"Multi.Example.ORG", "*.multi.example.org", "multi.example.org"}, "/m/", {NULL}},
};

static const struct mcase tiers_cases[] = {
    {"api.example.com", "/v1/users", "GET", 0},
    {"api.example.com", "/v1/", "GET", 0},
    {"api.example.com", "/v1/health", "GET", 1},
    {"api.example.com", "/v1/health/x", "GET", 0},
    {"api.example.com", "/v1/admin/x", "POST", 7},
    {"api.example.com", "/v1/admin/x", "GET", 0},
    {"api.example.com", "/img/a.png", "GET", 10},
    {"api.example.com", "/img/a.PNG", "GET", 2},
    {"api.example.com", "/other", "GET", 2},
    {"a.example.com", "/x", "GET", 2},
    {"a.b.example.com", "/x", "GET", 3},
    {"x.a.b.example.com", "/v1/", "GET", 3},
    {"b.example.com", "/x", "GET", 2},
    {"example.com", "/static/a", "GET", 4},
    /* nginx's order: a regex beats every prefix that is not "^~", even the
     * implicit "/" of route 6 and the longer "/static/" of route 4 */
    {"example.com", "/foo.PNG", "GET", 5},
    {"example.com", "/static/a.png", "GET", 5},
    {"example.com", "/x", "GET", 6},
    {"other.org", "/static/y", "HEAD", 4},
    {"multi.example.org", "/m/1", "GET", 11},
    {"a.multi.example.org", "/m/1", "GET", 11},
    {"multi.example.org", "/x", "GET", 6},
    {"", "/x", "GET", 6},
    {"", "", "GET", -1},
    {"", "*", "OPTIONS", -1},
};

START_TEST(test_tiers)
{
    struct route_table *t = build(tiers_routes, N(tiers_routes));

    ck_assert_uint_eq(route_table_count(t), N(tiers_routes));
    run_cases(t, tiers_cases, N(tiers_cases));
    route_table_free(t);
}
END_TEST

/* Regexes: config order, searched anywhere unless anchored, "~*" caseless,
 * tried after the longest prefix is remembered, and winning over it. */
static const struct rdef regex_routes[] = {
    /* 0 */ {{NULL}, "~*\\.png$", {NULL}},
    /* 1 */ {{NULL}, "~^/img/", {NULL}},
    /* 2 */ {{NULL}, "~^/img/.*\\.jpg$", {NULL}},
    /* 3 */ {{NULL}, "/static/", {NULL}},
    /* 4 */ {{NULL}, "~/(a|b)+/$", {"GET"}},
    /* 5 */ {{NULL}, "~/(a|b)+/$", {"POST"}},
};

static const struct mcase regex_cases[] = {
    {"h", "/x/y.PNG", "GET", 0},
    {"h", "/img/y.png", "GET", 0},
    {"h", "/img/y.jpg", "GET", 1},
    {"h", "/static/y.png", "GET", 0},
    {"h", "/static/y.gif", "GET", 3},
    {"h", "/x/abba/", "GET", 4},
    {"h", "/x/abba/", "POST", 5},
    {"h", "/x/abba/", "PUT", -1},
    {"h", "/x/abc/", "GET", -1},
    {"h", "/IMG/y.jpg", "GET", -1},
};

START_TEST(test_regex)
{
    struct route_table *t = build(regex_routes, N(regex_routes));

    run_cases(t, regex_cases, N(regex_cases));
    route_table_free(t);
}
END_TEST

static const struct rdef method_routes[] = {
    /* 0 */ {{NULL}, "=/exact", {"GET"}},
    /* 1 */ {{NULL}, "/a/", {"POST"}},
    /* 2 */ {{NULL}, "/a/b/", {"PUT"}},
    /* 3 */ {{NULL}, "~^/a/", {"DELETE"}},
    /* 4 */ {{NULL}, "/a/b/c", {"PATCH", "PURGE"}},
    /* 5 */ {{NULL}, "=/exact", {"POST"}},
    /* 6 */ {{NULL}, "/exact", {"PUT"}},
};

static const struct mcase method_cases[] = {
    {"h", "/exact", "GET", 0},
    {"h", "/exact", "POST", 5},
    {"h", "/exact", "PUT", 6},
    {"h", "/exact", "HEAD", -1},
    {"h", "/a/b/c/d", "PUT", 2},
    {"h", "/a/b/c/d", "PATCH", 4},
    {"h", "/a/b/cd", "PURGE", 4},
    {"h", "/a/b/c/d", "POST", 1},
    {"h", "/a/b/c/d", "DELETE", 3},
    {"h", "/a/b/c/d", "GET", -1},
    {"h", "/a/b/c/d", "put", -1},
    {"h", "/a", "POST", -1},
    {"h", "/a/", "POST", 1},
};

START_TEST(test_methods)
{
    struct route_table *t = build(method_routes, N(method_routes));

    run_cases(t, method_cases, N(method_cases));
    route_table_free(t);
}
END_TEST

/* A method mismatch in the exact-host tier falls through to later tiers. */
static const struct rdef fallthrough_routes[] = {
    /* 0 */ {{"a.com"}, "/", {"POST"}},
    /* 1 */ {{"*.a.com"}, "/", {"PUT"}},
    /* 2 */ {{"*.com"}, "/x", {NULL}},
    /* 3 */ {{NULL}, "/", {NULL}},
};

static const struct mcase fallthrough_cases[] = {
    {"a.com", "/x", "POST", 0},
    {"a.com", "/x", "GET", 2},
    {"a.com", "/y", "GET", 3},
    {"w.a.com", "/y", "PUT", 1},
    {"w.a.com", "/x", "GET", 2},
    {"w.a.com", "/y", "GET", 3},
    {"com", "/x", "GET", 3},
};

START_TEST(test_fallthrough)
{
    struct route_table *t = build(fallthrough_routes, N(fallthrough_routes));

    run_cases(t, fallthrough_cases, N(fallthrough_cases));
    route_table_free(t);
}
END_TEST

/* Nothing but host-bound routes: an unknown host gets no route. */
START_TEST(test_no_default)
{
    static const struct rdef routes[] = {{{"a.com"}, "/", {NULL}}};
    static const struct mcase cases[] = {
        {"a.com", "/", "GET", 0},
        {"b.com", "/", "GET", -1},
        {"", "/", "GET", -1},
    };
    struct route_table *t = build(routes, N(routes));

    run_cases(t, cases, N(cases));
    route_table_free(t);

    t = route_table_new();
    ck_assert_int_eq(route_table_build(t, NULL, 0), 0);
    ck_assert_int_eq(route_table_match(t, "a", 1, "/", 1, "GET", 3), -1);
    route_table_free(t);
}
END_TEST

/* nginx's location order in one tier, step by step. */
static const struct rdef order_routes[] = {
    /* 0 */ {{NULL}, "/", {NULL}},
    /* 1 */ {{NULL}, "=/exact", {NULL}},
    /* 2 */ {{NULL}, "/exact", {NULL}},
    /* 3 */ {{NULL}, "^~/static/", {NULL}},
    /* 4 */ {{NULL}, "/app/", {NULL}},
    /* 5 */ {{NULL}, "/app/deep/", {NULL}},
    /* 6 */ {{NULL}, "~\\.php$", {NULL}},
    /* 7 */ {{NULL}, "~*\\.(gif|jpg)$", {NULL}},
    /* 8 */ {{NULL}, "~^/app/.*\\.php$", {NULL}},
    /* 9 */ {{NULL}, "~^/exact", {NULL}},
    /* 10 */ {{NULL}, "^~/static/keep/", {NULL}},
    /* 11 */ {{NULL}, "/static/keep/inner/", {NULL}},
};

static const struct mcase order_cases[] = {
    /* a. exact wins over the prefix "/exact" and the regex "^/exact" */
    {"h", "/exact", "GET", 1},
    /* a regex beats the prefix that also matches */
    {"h", "/exactly", "GET", 9},
    /* b/e. the catch-all when no regex matches */
    {"h", "/", "GET", 0},
    {"h", "/other", "GET", 0},
    /* d. a regex beats the catch-all "/" */
    {"h", "/index.php", "GET", 6},
    /* "~*" is caseless, "~" is not: the first regex in config order wins */
    {"h", "/a.JPG", "GET", 7},
    {"h", "/a.PHP", "GET", 0},
    /* config order among regexes: 6 before the more specific 8 */
    {"h", "/app/x.php", "GET", 6},
    /* e. the longest prefix is remembered when no regex matches */
    {"h", "/app/deep/x", "GET", 5},
    {"h", "/app/x", "GET", 4},
    /* c. "^~" as the longest prefix skips the regexes */
    {"h", "/static/x.php", "GET", 3},
    {"h", "/static/a.jpg", "GET", 3},
    {"h", "/static/keep/a.jpg", "GET", 10},
    /* "^~" only counts as the longest prefix: a longer plain prefix under it
     * is remembered instead, and the regexes run */
    {"h", "/static/keep/inner/a.jpg", "GET", 7},
    {"h", "/static/keep/inner/a", "GET", 11},
};

START_TEST(test_nginx_order)
{
    struct route_table *t = build(order_routes, N(order_routes));

    run_cases(t, order_cases, N(order_cases));
    route_table_free(t);
}
END_TEST

/* A route with a matching host beats one without at every step: the host
 * tier decides whenever it has any route for the request. */
static const struct rdef host_step_routes[] = {
    /* 0 */ {{NULL}, "=/e", {NULL}},
    /* 1 */ {{"h.test"}, "=/e", {NULL}},
    /* 2 */ {{NULL}, "/p/long/", {NULL}},
    /* 3 */ {{"h.test"}, "/p/", {NULL}},
    /* 4 */ {{NULL}, "~\\.x$", {NULL}},
    /* 5 */ {{"h.test"}, "~\\.x$", {NULL}},
    /* 6 */ {{NULL}, "^~/s/", {NULL}},
    /* 7 */ {{"h.test"}, "/s/", {NULL}},
    /* 8 */ {{NULL}, "/", {NULL}},
    /* 9 */ {{"*.test"}, "~^/w", {NULL}},
    /* 10 */ {{NULL}, "=/only-hostless", {NULL}},
    /* 11 */ {{"h.test"}, "=/r", {NULL}},
    /* 12 */ {{NULL}, "~^/r", {NULL}},
};

static const struct mcase host_step_cases[] = {
    /* exact: the host's exact path beats the hostless one */
    {"h.test", "/e", "GET", 1},
    {"o.org", "/e", "GET", 0},
    /* prefix: the host's shorter prefix beats a longer hostless one */
    {"h.test", "/p/long/y", "GET", 3},
    {"o.org", "/p/long/y", "GET", 2},
    /* regex: the host's regex beats the hostless one */
    {"h.test", "/a.x", "GET", 5},
    {"o.org", "/a.x", "GET", 4},
    /* a hostless regex does not take a request from a host prefix */
    {"h.test", "/p/a.x", "GET", 5},
    {"h.test", "/s/a.x", "GET", 5},
    /* a hostless "^~" does not stop the host's regexes either */
    {"o.org", "/s/a.x", "GET", 6},
    /* the wildcard tier comes after the exact one, before hostless */
    {"h.test", "/w", "GET", 9},
    {"a.test", "/w", "GET", 9},
    {"a.test", "/a.x", "GET", 4},
    /* a host tier with nothing for the path falls back to the hostless one */
    {"h.test", "/only-hostless", "GET", 10},
    {"h.test", "/zzz", "GET", 8},
    /* the host's exact path beats a hostless regex */
    {"h.test", "/r", "GET", 11},
    {"o.org", "/r", "GET", 12},
};

START_TEST(test_host_steps)
{
    struct route_table *t = build(host_step_routes, N(host_step_routes));

    run_cases(t, host_step_cases, N(host_step_cases));
    route_table_free(t);
}
END_TEST

/* Methods in nginx's order: a route that excludes the method does not
 * match, so the remembered prefix is the longest one that takes it, and a
 * "^~" that does not take it stops nothing. */
static const struct rdef method_order_routes[] = {
    /* 0 */ {{NULL}, "/", {NULL}},
    /* 1 */ {{NULL}, "^~/a/", {"POST"}},
    /* 2 */ {{NULL}, "/a/b/", {"GET"}},
    /* 3 */ {{NULL}, "~\\.x$", {"GET", "POST"}},
    /* 4 */ {{NULL}, "=/a/b/c.x", {"PUT"}},
};

static const struct mcase method_order_cases[] = {
    {"h", "/a/b/c.x", "GET", 3},  /* remembered /a/b/, the regex wins */
    {"h", "/a/b/c.x", "POST", 1}, /* remembered ^~/a/: no regex */
    {"h", "/a/b/c.x", "PUT", 4},
    {"h", "/a/c.x", "GET", 3},    /* ^~/a/ does not take GET: "/" is remembered */
    {"h", "/a/c", "GET", 0},
    {"h", "/a/c", "DELETE", 0},
};

START_TEST(test_method_order)
{
    struct route_table *t = build(method_order_routes, N(method_order_routes));

    run_cases(t, method_order_cases, N(method_order_cases));
    route_table_free(t);
}
END_TEST

/* Sameness: hosts and methods as sets, "/" and no path, "/a" and "^~/a". */
START_TEST(test_duplicates)
{
    static const struct rdef first[] = {
        /* 0 */ {{"A.com", "b.com"}, "/a", {"GET", "POST"}},
        /* 1 */ {{NULL}, NULL, {NULL}},
        /* 2 */ {{NULL}, "~^/r", {NULL}},
        /* 3 */ {{NULL}, "=/e", {NULL}},
    };
    static const struct {
        struct rdef d;
        int want;
    } c[] = {
        {{{"b.com", "a.com"}, "/a", {"POST", "GET"}}, 0},
        {{{"b.com", "a.com", "A.COM"}, "^~/a", {"GET", "POST", "GET"}}, 0},
        {{{NULL}, "/", {NULL}}, 1},
        {{{NULL}, "~^/r", {NULL}}, 2},
        {{{NULL}, "=/e", {NULL}}, 3},
        /* overlapping but different methods: not the same */
        {{{"a.com", "b.com"}, "/a", {"GET"}}, -1},
        {{{"a.com", "b.com"}, "/a", {NULL}}, -1},
        {{{"a.com"}, "/a", {"GET", "POST"}}, -1},
        {{{NULL}, "/", {"GET"}}, -1},
        {{{NULL}, "~*^/r", {NULL}}, -1},
        {{{NULL}, "=/", {NULL}}, -1},
        {{{NULL}, "/e", {NULL}}, -1},
        {{{NULL}, "~/e", {NULL}}, -1},
        {{{"*.a.com"}, "/a", {"GET", "POST"}}, -1},
    };
    struct route_table *t = route_table_new();
    struct route_spec spec;
    char err[256];

    for (size_t i = 0; i < N(first); i++) {
        spec_from(&first[i], (int)i + 10, &spec);
        ck_assert_int_eq(route_table_duplicate(t, &spec), -1);
        ck_assert_int_eq(route_table_add(t, &spec, err, sizeof(err)), 0);
    }
    for (size_t i = 0; i < N(c); i++) {
        spec_from(&c[i].d, 99, &spec);
        int got = route_table_duplicate(t, &spec);
        ck_assert_msg(got == (c[i].want < 0 ? -1 : c[i].want + 10), "case %zu: %d", i, got);
    }
    route_table_free(t);
}
END_TEST

/* After a miss: which methods the host and path have routes for. */
START_TEST(test_allowed)
{
    static const struct rdef routes[] = {
        /* 0 */ {{NULL}, "/m", {"GET", "HEAD"}},
        /* 1 */ {{NULL}, "/m/post", {"POST", "PURGE"}},
        /* 2 */ {{"h.test"}, "=/m", {"PUT"}},
        /* 3 */ {{NULL}, "~\\.del$", {"DELETE"}},
    };
    static const struct {
        const char *host, *path, *allow;
        size_t n;
    } c[] = {
        {"o.org", "/m", "GET, HEAD", 2},
        {"o.org", "/m/post/x", "GET, HEAD, POST, PURGE", 4},
        {"h.test", "/m", "GET, HEAD, PUT", 3},
        {"o.org", "/m/a.del", "GET, HEAD, DELETE", 3},
        {"o.org", "/a.del", "DELETE", 1},
        {"o.org", "/nothing", "", 0},
    };
    struct route_table *t = build(routes, N(routes));
    char allow[64], tiny[8];

    for (size_t i = 0; i < N(c); i++) {
        size_t n = route_table_allowed(t, c[i].host, strlen(c[i].host), c[i].path,
                                       strlen(c[i].path), allow, sizeof(allow));
        ck_assert_msg(n == c[i].n && strcmp(allow, c[i].allow) == 0, "case %zu: %zu \"%s\"", i,
                      n, allow);
    }
    /* a short buffer holds what fits, whole names only */
    ck_assert_uint_ge(route_table_allowed(t, "o.org", 5, "/m/post/x", 9, tiny, sizeof(tiny)), 1);
    ck_assert_str_eq(tiny, "GET");
    route_table_free(t);
}
END_TEST

/* ---------------------------------------------------------------- checks */

START_TEST(test_host_check)
{
    static const struct {
        const char *host;
        int ok;
    } c[] = {
        {"api.example.com", 1}, {"API.Example.COM", 1}, {"localhost", 1},
        {"127.0.0.1", 1},       {"my_host-1.lan", 1},   {"*.example.com", 1},
        {"*.com", 1},           {"[::1]", 1},           {"[2001:db8::1]", 1},
        {"", 0},                {"*", 0},               {"*.", 0},
        {"*example.com", 0},    {"a.*.com", 0},         {".example.com", 0},
        {"example.com.", 0},    {"a..b", 0},            {"a b", 0},
        {"a.com:80", 0},        {"[::1", 0},            {"[]", 0},
        {"[zz::1]", 0},         {"**.a.com", 0},        {"*.*.a.com", 0},
    };
    char err[128];

    for (size_t i = 0; i < N(c); i++) {
        int rc = route_host_check(c[i].host, strlen(c[i].host), err, sizeof(err));
        ck_assert_msg((rc == 0) == c[i].ok, "host \"%s\": rc %d (%s)", c[i].host, rc,
                      rc ? err : "ok");
    }
}
END_TEST

START_TEST(test_path_check)
{
    char err[256];

    ck_assert_int_eq(route_path_check(ROUTE_PATH_PREFIX, "/a", 2, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(route_path_check(ROUTE_PATH_PREFIX, "", 0, 0, err, sizeof(err)), -1);
    ck_assert_int_eq(route_path_check(ROUTE_PATH_PREFIX, "a/", 2, 0, err, sizeof(err)), -1);
    ck_assert_int_eq(route_path_check(ROUTE_PATH_EXACT, "", 0, 0, err, sizeof(err)), -1);
    ck_assert_int_eq(route_path_check(ROUTE_PATH_EXACT, "/x", 2, 0, err, sizeof(err)), 0);
    ck_assert_int_eq(route_path_check(ROUTE_PATH_REGEX, "", 0, 0, err, sizeof(err)), -1);
    ck_assert_int_eq(route_path_check(ROUTE_PATH_REGEX, "^/a(b", 5, 0, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "missing closing parenthesis") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "at offset 5") != NULL, "%s", err);
    ck_assert_int_eq(route_path_check(ROUTE_PATH_REGEX, "^/a(b)", 6, 1, err, sizeof(err)), 0);
    ck_assert_int_eq(route_method_check("GET", 3, err, sizeof(err)), 0);
    ck_assert_int_eq(route_method_check("M-SEARCH", 8, err, sizeof(err)), 0);
    ck_assert_int_eq(route_method_check("", 0, err, sizeof(err)), -1);
    ck_assert_int_eq(route_method_check("GE T", 4, err, sizeof(err)), -1);
}
END_TEST

/* A bad route is refused with a message naming it and leaves the table
 * usable. */
START_TEST(test_add_errors)
{
    static const struct rdef bad[] = {
        {{"ok.com", "bad..host"}, "/", {NULL}},
        {{NULL}, "~[unclosed", {NULL}},
        {{NULL}, "relative", {NULL}},
        {{NULL}, "/", {"GE T"}},
    };
    static const char *const want[] = {"bad..host", "offset", "starts with '/'", "method"};
    static const struct rdef good = {{"ok.com"}, "/", {NULL}};
    struct route_table *t = route_table_new();
    struct route_spec spec;
    char err[256];

    for (size_t i = 0; i < N(bad); i++) {
        spec_from(&bad[i], 0, &spec);
        ck_assert_int_eq(route_table_add(t, &spec, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, want[i]) != NULL, "bad %zu: \"%s\"", i, err);
    }
    ck_assert_uint_eq(route_table_count(t), 0);
    spec_from(&good, 7, &spec);
    ck_assert_int_eq(route_table_add(t, &spec, err, sizeof(err)), 0);
    ck_assert_int_eq(route_table_build(t, err, sizeof(err)), 0);
    ck_assert_int_eq(route_table_match(t, "ok.com", 6, "/x", 2, "GET", 3), 7);
    ck_assert_int_eq(route_table_match(t, "bad..host", 9, "/x", 2, "GET", 3), -1);
    /* frozen after build */
    ck_assert_int_eq(route_table_add(t, &spec, err, sizeof(err)), -1);
    route_table_free(t);
}
END_TEST

/* ------------------------------------------- radix tree vs brute force */

static unsigned rng_state = 12345;

static unsigned rnd(unsigned n)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 16) % n;
}

static void rand_path(char *buf, size_t maxlen)
{
    static const char alpha[] = "/ab";
    size_t len = 1 + rnd((unsigned)maxlen);

    buf[0] = '/';
    for (size_t i = 1; i < len; i++)
        buf[i] = alpha[rnd(3)];
    buf[len] = '\0';
}

/* The regexes the reference below evaluates by hand. */
static const char *const ref_regex[] = {"b$", "^/a/", "ab"};

static int ref_regex_match(int i, const char *q, size_t qlen)
{
    switch (i) {
    case 0:
        return qlen > 0 && q[qlen - 1] == 'b';
    case 1:
        return strncmp(q, "/a/", 3) == 0;
    default:
        return strstr(q, "ab") != NULL;
    }
}

START_TEST(test_tree_vs_reference)
{
    enum { NR = 1500, NQ = 20000, MAXLEN = 12, NRE = N(ref_regex) };
    static char paths[NR][MAXLEN + 2];
    static int exact[NR], stop[NR];
    struct route_table *t = route_table_new();
    char err[256], q[MAXLEN + 8];

    for (int i = 0; i < NR; i++) {
        struct route_spec spec = {.index = i, .path = paths[i]};
        rand_path(paths[i], MAXLEN);
        exact[i] = rnd(4) == 0;
        stop[i] = !exact[i] && rnd(3) == 0;
        spec.path_kind = exact[i] ? ROUTE_PATH_EXACT : ROUTE_PATH_PREFIX;
        spec.path_len = strlen(paths[i]);
        spec.stop = stop[i];
        ck_assert_int_eq(route_table_add(t, &spec, err, sizeof(err)), 0);
    }
    for (int i = 0; i < (int)NRE; i++) {
        struct route_spec spec = {.index = NR + i, .path = ref_regex[i],
                                  .path_kind = ROUTE_PATH_REGEX,
                                  .path_len = strlen(ref_regex[i])};
        ck_assert_int_eq(route_table_add(t, &spec, err, sizeof(err)), 0);
    }
    ck_assert_int_eq(route_table_build(t, err, sizeof(err)), 0);
    for (int k = 0; k < NQ; k++) {
        size_t qlen;
        int want = -1, prefix = -1, best_len = -1, got;

        rand_path(q, MAXLEN + 4);
        qlen = strlen(q);
        for (int i = 0; i < NR && want < 0; i++) {
            if (exact[i] && strcmp(paths[i], q) == 0)
                want = i;
        }
        /* longest prefix; strictly longer, so config order wins ties */
        for (int i = 0; i < NR; i++) {
            int len = (int)strlen(paths[i]);
            if (!exact[i] && len > best_len && (size_t)len <= qlen &&
                memcmp(paths[i], q, (size_t)len) == 0) {
                best_len = len;
                prefix = i;
            }
        }
        if (want < 0 && prefix >= 0 && stop[prefix])
            want = prefix;
        for (int i = 0; i < (int)NRE && want < 0; i++) {
            if (ref_regex_match(i, q, qlen))
                want = NR + i;
        }
        if (want < 0)
            want = prefix;
        got = route_table_match(t, "", 0, q, qlen, "GET", 3);
        ck_assert_msg(got == want, "query %s: got %d want %d", q, got, want);
    }
    route_table_free(t);
}
END_TEST

/* ------------------------------------------------------------------ cost */

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

START_TEST(test_10k_routes)
{
    enum { NR = 10000, NQ = 100000 };
    struct route_table *t = route_table_new();
    static char paths[NR][64];
    static char queries[NQ][96];
    static size_t qlen[NQ];
    static int want[NQ];
    char err[256];
    long hits = 0;
    double t0, t1;

    /* a realistic mix: services with versions and resources, some hosts */
    for (int i = 0; i < NR; i++) {
        static const char *const hosts[] = {"api.example.com", "*.example.com"};
        struct route_spec spec = {.index = i, .path = paths[i]};
        snprintf(paths[i], sizeof(paths[i]), "/api/v%d/service-%d/resource%d/", i % 3, i / 3,
                 i % 7);
        spec.path_len = strlen(paths[i]);
        if (i % 10 == 0) {
            spec.hosts = hosts;
            spec.nhosts = 2;
        }
        ck_assert_int_eq(route_table_add(t, &spec, err, sizeof(err)), 0);
    }
    ck_assert_int_eq(route_table_build(t, err, sizeof(err)), 0);
    for (int k = 0; k < NQ; k++) {
        int i = (int)rnd(NR);
        snprintf(queries[k], sizeof(queries[k]), "%sitems/%d?", paths[i], k);
        qlen[k] = strlen(queries[k]) - 1;
        want[k] = i;
    }

    /* an unknown host: the host-bound tenth of the routes do not match */
    t0 = now_ns();
    for (int k = 0; k < NQ; k++)
        hits += route_table_match(t, "www.example.org", 15, queries[k], qlen[k], "GET", 3) ==
                (want[k] % 10 == 0 ? -1 : want[k]);
    t1 = now_ns();
    ck_assert_int_eq(hits, NQ);
    printf("router: %d prefix routes, %d lookups: %.1f ns/lookup (no host tier)\n", NR, NQ,
           (t1 - t0) / NQ);

    /* the same through the exact-host and wildcard tiers (which miss for most
     * paths and fall through to the default tier) */
    hits = 0;
    t0 = now_ns();
    for (int k = 0; k < NQ; k++)
        hits += route_table_match(t, "x.api.example.com", 17, queries[k], qlen[k], "GET", 3) ==
                want[k];
    t1 = now_ns();
    ck_assert_int_eq(hits, NQ);
    printf("router: %d prefix routes, %d lookups: %.1f ns/lookup (via wildcard tiers)\n", NR,
           NQ, (t1 - t0) / NQ);
    fflush(stdout);
    route_table_free(t);
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("route_table");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tiers);
    tcase_add_test(tc, test_regex);
    tcase_add_test(tc, test_methods);
    tcase_add_test(tc, test_fallthrough);
    tcase_add_test(tc, test_no_default);
    tcase_add_test(tc, test_nginx_order);
    tcase_add_test(tc, test_host_steps);
    tcase_add_test(tc, test_method_order);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_allowed);
    tcase_add_test(tc, test_host_check);
    tcase_add_test(tc, test_path_check);
    tcase_add_test(tc, test_add_errors);
    tcase_add_test(tc, test_tree_vs_reference);
    tcase_add_test(tc, test_10k_routes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(router_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
