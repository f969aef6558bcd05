/*
 * Route table of the router module: host + path + method matching, in plain C
 * with PCRE2 and libc only, so the unit test uses it without the weir core.
 *
 * Matching semantics
 * ------------------
 * A request (host, path, method) is matched against host tiers, in order:
 *
 *   1. routes listing the request host exactly ("api.example.com");
 *   2. routes listing a wildcard "*.SUFFIX" that covers the host, one tier per
 *      suffix, the longest suffix first: "*.b.example.com" before
 *      "*.example.com". "*.example.com" matches "a.example.com" and
 *      "a.b.example.com" but not "example.com" (list both to get both);
 *   3. routes without a host.
 *
 * A tier is what an nginx server block is: the host picks it first, then the
 * path picks a route inside it, by nginx's location order:
 *
 *   a. an exact path ("=/login", equal bytes) wins;
 *   b. otherwise the longest matching prefix ("/v1/", or "^~/v1/") is
 *      remembered; a route without a path is the prefix "/". A prefix is a
 *      byte prefix: "/v1" also matches "/v10" (write "/v1/" to mean the
 *      directory);
 *   c. if that prefix is a "^~" one, it wins;
 *   d. otherwise the regexes ("~re" case-sensitive, "~*re" caseless) are tried
 *      in config order, searched anywhere in the path unless anchored (as
 *      nginx), and the first that matches wins;
 *   e. otherwise the remembered prefix wins.
 *
 * So a regex beats a catch-all "/" of its own tier, and "^~" protects a
 * prefix from the regexes.
 *
 * The next tier is tried only when a tier yields no route at all, so a route
 * with a matching host beats every route without one, at every step: a
 * hostless exact path, longer prefix or regex never takes a request from a
 * tier that has an answer for it. That is nginx's choice of the server block
 * before the location, with one difference: a host tier with no route for a
 * path falls back to the next tier (nginx would answer 404 inside the server
 * block), because weir has one flat list and the hostless routes are its
 * default server.
 *
 * A route whose method list does not hold the request method does not match
 * at all: steps a-e see only routes that take the method (so the remembered
 * prefix is the longest prefix that takes it), and a tier with none falls
 * through as above. Methods compare case-sensitively, as HTTP says (the
 * module uppercases the config); HEAD is not implied by GET. Among equal
 * candidates (the same path in two routes with different methods) config
 * order wins, where config order is the order of route_table_add() calls.
 * If no tier yields a route, the result is -1; route_table_allowed() then
 * tells a 405 (some method would match) from a 404. An empty request host
 * skips tiers 1 and 2. Hosts compare as bytes: the caller passes the request
 * host lowercased and without port, and patterns are lowercased here.
 *
 * Cost
 * ----
 * Hosts: one hash lookup for the exact tier, then one hash lookup per dot in
 * the host for the wildcard tiers (only when wildcards exist). Paths: exact
 * and prefix paths of one tier share a compressed radix tree (a node per
 * branch point, children sorted by first byte and found by binary search);
 * one walk down the tree along the request path finds the exact match and
 * the deepest matching prefix, and each prefix node links to the nearest
 * shorter prefix above it. So the cost grows with the path length, not with
 * the number of routes. Regexes are tried one by one (JIT-compiled) on
 * every request that no exact path or "^~" prefix decides, so a table
 * should prefer prefixes, and "^~" on the prefixes regexes need not see.
 * Sameness (route_table_duplicate) is one hash lookup per route.
 *
 * Memory is malloc'ed; the table is built once, then only read, except for a
 * PCRE2 match block used as scratch by route_table_match (so one table must
 * not be matched from two threads at once; weir workers are single-threaded
 * processes).
 */
#ifndef WEIR_ROUTER_ROUTE_TABLE_H
#define WEIR_ROUTER_ROUTE_TABLE_H

#include <stddef.h>

struct route_table;

enum route_path_kind {
    ROUTE_PATH_PREFIX = 0, /* "/v1/", or "^~/v1/" with route_spec.stop */
    ROUTE_PATH_EXACT,      /* "=/exact" (text without the "=") */
    ROUTE_PATH_REGEX,      /* "~re" or "~*re" (text without the "~" / "~*") */
};

/* One route as route_table_add() reads it. Every pointer is only read during
 * the call; the table keeps copies. */
struct route_spec {
    int index; /* what route_table_match() returns for this route, >= 0 */

    /* Host patterns, exact or "*.suffix", any case; NULL/0 for "any host". */
    const char *const *hosts;
    size_t nhosts;

    enum route_path_kind path_kind;
    const char *path; /* NULL: no path, the prefix "/" */
    size_t path_len;
    int caseless; /* REGEX only: "~*" */
    int stop;     /* PREFIX only: "^~", the longest prefix skips the regexes */

    /* Method tokens as they must appear in the request; NULL/0 for all. */
    const char *const *methods;
    size_t nmethods;
};

struct route_table *route_table_new(void);

/* Adds a route. Returns 0, or -1 with a message in err (which names the bad
 * value: invalid host, path or regex with the PCRE2 message and offset, or
 * out of memory); a failed add leaves the table as it was, usable. Must be
 * called before route_table_build(). */
int route_table_add(struct route_table *t, const struct route_spec *spec, char *err,
                    size_t errlen);

/* The index of a route added before whose path (kind and text; "^~" or not
 * is the same prefix, as in nginx), hosts (as a set, any case) and methods
 * (as a set; none is its own set, not a superset) equal spec's, or -1. Such
 * a route would never be chosen: the earlier one always wins. Methods lists
 * that overlap but differ are not the same. Call it before adding spec. */
int route_table_duplicate(const struct route_table *t, const struct route_spec *spec);

/* Freezes the table and builds the lookup structures. 0, or -1 with a
 * message (out of memory). No adds afterwards. */
int route_table_build(struct route_table *t, char *err, size_t errlen);

/* The index of the matching route, or -1 (see the semantics above). Only
 * after a successful route_table_build(). */
int route_table_match(struct route_table *t, const char *host, size_t hostlen, const char *path,
                      size_t pathlen, const char *method, size_t methodlen);

/* For a request route_table_match() found no route for: how many methods
 * would have found one for the same host and path (0: none, answer 404),
 * and their names in out, "GET, POST" (the methods routes name, in a fixed
 * order), as far as outlen allows. Costs a match per method named in the
 * table, so it is for misses only. */
size_t route_table_allowed(struct route_table *t, const char *host, size_t hostlen,
                           const char *path, size_t pathlen, char *out, size_t outlen);

/* NULL is fine. */
void route_table_free(struct route_table *t);

/* Number of routes added. */
size_t route_table_count(const struct route_table *t);

/* Checks a host pattern: an exact host name (letters, digits, '-', '_',
 * non-empty dot-separated labels), an IPv6 literal in brackets, or "*." and
 * a host name. Case is ignored. 0, or -1 with the reason in err. */
int route_host_check(const char *host, size_t len, char *err, size_t errlen);

/* Checks a path of the given kind the way route_table_add() will (prefix and
 * exact start with '/', regex compiles). 0, or -1 with the reason in err. */
int route_path_check(enum route_path_kind kind, const char *path, size_t len, int caseless,
                     char *err, size_t errlen);

/* Checks an HTTP method token (RFC 9110 tchar). 0, or -1 with a reason. */
int route_method_check(const char *method, size_t len, char *err, size_t errlen);

#endif
