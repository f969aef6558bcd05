/*
 * Module rewrite: changes the request path (and query) sent upstream, or
 * answers with a redirect. One handler, "rewrite.apply", in the rewrite phase
 * (after the router picked the route, before access and balance).
 *
 * Keys
 * ----
 *   rewrite: "REGEX REPLACEMENT"          route or top level
 *   rewrite: ["REGEX REPLACEMENT", ...]   the first rule whose regex matches applies
 *   redirect: {status: 302, location: TEMPLATE}    route only
 *
 * rewrite
 *   REGEX is PCRE2 (no flags; write (?i) for caseless), compiled once at load
 *   with JIT where available, and searched in the request path: no query,
 *   dot segments already resolved, still percent-encoded, as the router saw
 *   it. The rule's syntax (blanks, "\ ") is in rewrite_rule.h.
 *   REPLACEMENT is a template: variables ("$host", "${http_x_user}"), "$$"
 *   for '$', and "$0".."$9" for the match and its groups. The first literal
 *   '?' ends the new path; what follows is the new query:
 *     "/b/$1"         the path becomes "/b/..."; the query is kept as it came;
 *     "/b?x=$1"       the query is replaced by "x=..." (nginx would append the
 *                     old query after it; write "/b?x=$1&$args" for that);
 *     "/b?"           the query is dropped (as nginx's trailing '?'): "/b" goes
 *                     upstream, with no '?' (an empty query unsets it, ABI 1.1).
 *   Variables in both parts see the request before the rule: "$uri" is the
 *   old path. The rendered path must start with '/' (a literal first byte
 *   other than '/' is refused at load; a variable that renders otherwise
 *   fails the request with 500 and a logged reason). Bytes a request line
 *   cannot carry (CTL, space, non-ASCII, '#', and '?' in the path) are
 *   percent-encoded; '%' is kept, since paths stay percent-encoded.
 *   One pass, no loop: after a rule applies nothing is matched again and the
 *   route is not chosen again (nginx's "break"), so the route picked for the
 *   original path serves the rewritten one.
 *   A list may be empty ("rewrite: []") to switch off the top-level rules in
 *   one route. A route that sets rewrite: replaces the top-level list; the
 *   two are not merged.
 *   Load errors name file:line:col of the rule: a regex that does not compile
 *   (PCRE2's message and offset in the regex), a missing replacement, extra
 *   words, "$N" beyond the regex's groups, unknown variables.
 *
 * redirect
 *   Answers the request from weir: status 301, 302 (default), 307 or 308, an
 *   empty body, and a Location header rendered from `location` (variables
 *   only; captures are a load error there). A route with a redirect needs no
 *   upstream: conf_done marks it answered (weir_route_set_answered, ABI
 *   1.6), and the core refuses a route with neither.
 *   When a route has both keys, the rewrite runs first and the redirect then
 *   always answers, so "$uri" and "$args" in the location are the rewritten
 *   ones while "$request_uri" stays the target as received.
 *
 * Memory: rules live in config memory; each compiled regex and its match
 * block are malloc'ed by PCRE2 at load, listed in the top-level conf and
 * freed by conf_free. Per request only the request arena is used (rendering,
 * escaping, and the core's copies of the new path and query).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "weir/module.h"

#include "rewrite_rule.h"

WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

struct rewrite_rule {
    struct rewrite_regex rx;
    const weir_template_t *path;  /* the replacement up to its first '?' */
    const weir_template_t *query; /* after that '?' (maybe empty); NULL: keep the query */
    const char *source;           /* the rule text, for logs */
};

struct rewrite_rules {
    struct rewrite_rule *v; /* conf memory */
    size_t n;
};

struct rewrite_redirect {
    int status; /* 0: no redirect */
    const weir_template_t *location;
};

/* Every regex compiled for this generation, whoever uses it: inherited rule
 * lists share their rules, so a walk over the routes would free twice. */
struct rewrite_owned {
    struct rewrite_regex *rx;
    struct rewrite_owned *next;
};

/* One type for the top level and routes, so that `rewrite` sits at the same
 * offset in both (the core copies it into routes that do not set it). */
struct rewrite_conf {
    struct rewrite_rules rules;
    struct rewrite_redirect redirect;
    struct rewrite_owned *owned; /* top-level instance only */
};

/* ---------------------------------------------------------------- parsing */

static char *conf_strndup(weir_conf_t *cf, const char *s, size_t len)
{
    char *c = weir_conf_alloc(cf, len + 1);

    if (c != NULL)
        memcpy(c, s, len);
    return c;
}

/* Hands rx to the generation's list; on failure frees it at once. */
static int own_regex(weir_conf_t *cf, const weir_node_t *node, struct rewrite_regex *rx)
{
    struct rewrite_conf *top = weir_main_conf(cf, &weir_module);
    struct rewrite_owned *o = top != NULL ? weir_conf_alloc(cf, sizeof(*o)) : NULL;

    if (o == NULL) {
        rewrite_regex_free(rx);
        return weir_conf_error(cf, node, "rewrite: out of memory");
    }
    o->rx = rx;
    o->next = top->owned;
    top->owned = o;
    return 0;
}

static const weir_template_t *compile_part(weir_conf_t *cf, const weir_node_t *node,
                                           const char *s, size_t len)
{
    char *text = conf_strndup(cf, s, len);

    if (text == NULL) {
        weir_conf_error(cf, node, "rewrite: out of memory");
        return NULL;
    }
    return weir_template_compile(cf, node, text);
}

static int parse_rule(weir_conf_t *cf, const weir_node_t *node, struct rewrite_rule *rule)
{
    const char *text = weir_node_scalar(node);
    struct rewrite_text t;
    size_t qat, plen;
    int has_query, maxcap;
    char why[512];

    if (weir_node_type(node) != WEIR_NODE_SCALAR || text == NULL)
        return weir_conf_error(cf, node, "rewrite: expected a string \"REGEX REPLACEMENT\"");
    if (rewrite_rule_split(text, &t, why, sizeof(why)) < 0)
        return weir_conf_error(cf, node, "rewrite \"%s\": %s", text, why);
    if (rewrite_regex_compile(&rule->rx, t.regex, t.regex_len, why, sizeof(why)) < 0)
        return weir_conf_error(cf, node, "rewrite \"%s\": %s", text, why);
    if (own_regex(cf, node, &rule->rx) < 0)
        return -1;
    maxcap = rewrite_max_capture(t.repl, t.repl_len);
    if (maxcap > (int)rule->rx.ngroups)
        return weir_conf_error(cf, node,
                               "rewrite \"%s\": the replacement refers to $%d but the regex has "
                               "%u capture group%s",
                               text, maxcap, rule->rx.ngroups, rule->rx.ngroups == 1 ? "" : "s");
    has_query = rewrite_query_at(t.repl, t.repl_len, &qat);
    plen = has_query ? qat : t.repl_len;
    /* a first byte that is literal text can be checked now; "$$" is literal */
    if (plen == 0 || t.repl[0] != '/') {
        if (plen == 0 || t.repl[0] != '$' || (plen > 1 && t.repl[1] == '$'))
            return weir_conf_error(cf, node,
                                   "rewrite \"%s\": the replacement must start with '/' (or with "
                                   "a variable or capture that renders one)",
                                   text);
    }
    rule->path = compile_part(cf, node, t.repl, plen);
    if (rule->path == NULL)
        return -1;
    if (has_query) {
        rule->query = compile_part(cf, node, t.repl + qat + 1, t.repl_len - qat - 1);
        if (rule->query == NULL)
            return -1;
    }
    rule->source = weir_conf_strdup(cf, text);
    if (rule->source == NULL)
        return weir_conf_error(cf, node, "rewrite: out of memory");
    return 0;
}

static int parse_rewrite(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    struct rewrite_rules *rules = field;
    size_t n = 0;
    int rc = 0;

    switch (weir_node_type(node)) {
    case WEIR_NODE_SCALAR:
        n = 1;
        break;
    case WEIR_NODE_SEQUENCE:
        n = weir_node_count(node);
        break;
    case WEIR_NODE_NULL:
        break;
    default:
        return weir_conf_error(cf, node,
                               "rewrite: expected \"REGEX REPLACEMENT\" or a list of them");
    }
    rules->v = NULL;
    rules->n = 0;
    if (n == 0)
        return 0; /* an explicit "no rules": hides the top-level ones */
    rules->v = weir_conf_alloc(cf, n * sizeof(*rules->v));
    if (rules->v == NULL)
        return weir_conf_error(cf, node, "rewrite: out of memory");
    /* go on after a bad rule, so one run reports every bad rule */
    for (size_t i = 0; i < n; i++) {
        const weir_node_t *item =
            weir_node_type(node) == WEIR_NODE_SCALAR ? node : weir_node_child(node, i);

        /* each rule keeps its own slot: the regex list points into it */
        if (parse_rule(cf, item, &rules->v[i]) < 0)
            rc = -1;
    }
    rules->n = rc == 0 ? n : 0;
    return rc;
}

static int parse_redirect(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    struct rewrite_redirect *rd = field;
    const weir_template_t *location = NULL;
    long status = 302;
    int rc = 0;

    if (weir_node_type(node) != WEIR_NODE_MAPPING)
        return weir_conf_error(cf, node,
                               "redirect: expected a mapping {status: 301|302|307|308, "
                               "location: TEMPLATE}");
    for (size_t i = 0; i < weir_node_count(node); i++) {
        const weir_node_t *k = weir_node_key(node, i), *v = weir_node_child(node, i);
        const char *key = weir_node_scalar(k);

        if (key != NULL && strcmp(key, "status") == 0) {
            if (weir_node_int(cf, v, 100, 999, &status) < 0) {
                rc = -1;
            } else if (!rewrite_redirect_status_ok(status)) {
                rc = weir_conf_error(cf, v,
                                     "redirect: status %ld is not a redirect status (301, 302, "
                                     "307 or 308)",
                                     status);
            }
        } else if (key != NULL && strcmp(key, "location") == 0) {
            const char *text = weir_node_scalar(v);

            if (weir_node_type(v) != WEIR_NODE_SCALAR || text == NULL || text[0] == '\0') {
                rc = weir_conf_error(cf, v, "redirect: location: expected a non-empty string");
                continue;
            }
            if (rewrite_max_capture(text, strlen(text)) >= 0) {
                rc = weir_conf_error(cf, v,
                                     "redirect: location \"%s\" refers to a capture group; "
                                     "captures exist only in rewrite replacements (a rewrite "
                                     "on the same route runs first: use $uri)",
                                     text);
                continue;
            }
            location = weir_template_compile(cf, v, text);
            if (location == NULL)
                rc = -1;
        } else {
            rc = weir_conf_error(cf, k, "redirect: unknown key '%s' (expected status, location)",
                                 key != NULL ? key : "?");
        }
    }
    if (rc == 0 && location == NULL)
        rc = weir_conf_error(cf, node, "redirect: missing location");
    if (rc < 0)
        return -1;
    rd->status = (int)status;
    rd->location = location;
    return 0;
}

/* -------------------------------------------------------------- lifecycle */

static void rewrite_conf_free(weir_conf_t *cf)
{
    struct rewrite_conf *top = weir_main_conf(cf, &weir_module);

    if (top == NULL)
        return;
    for (struct rewrite_owned *o = top->owned; o != NULL; o = o->next)
        rewrite_regex_free(o->rx);
    top->owned = NULL;
}

/* ---------------------------------------------------------------- handler */

/* Percent-encodes what a request line cannot carry; copies only if needed. */
static int escape(weir_request_t *r, weir_str_t *s, int query)
{
    size_t n = rewrite_escape_len(s->data, s->len, query);
    char *p;

    if (n == s->len)
        return 0;
    p = weir_request_alloc(r, n + 1);
    if (p == NULL)
        return -1;
    rewrite_escape(p, s->data, s->len, query);
    s->data = p;
    s->len = n;
    return 0;
}

static weir_result_t oom(const weir_request_t *r, const weir_route_t *rt)
{
    weir_request_log(r, &weir_module, WEIR_LOG_ERROR, "route %s: out of request memory",
                     weir_route_name(rt));
    return WEIR_ERROR;
}

static weir_result_t apply_rules(weir_request_t *r, const weir_route_t *rt,
                                 const struct rewrite_rules *rules)
{
    weir_str_t subject = weir_request_path(r);
    char why[256];

    for (size_t i = 0; i < rules->n; i++) {
        struct rewrite_rule *rule = &rules->v[i];
        const size_t *ov;
        size_t npairs;
        weir_str_t path, query = {.data = "", .len = 0};
        int m = rewrite_regex_match(&rule->rx, subject.data, subject.len, &ov, &npairs, why,
                                    sizeof(why));

        if (m == 0)
            continue;
        if (m < 0) {
            weir_request_log(r, &weir_module, WEIR_LOG_ERROR,
                             "route %s: rewrite \"%s\": matching failed: %s",
                             weir_route_name(rt), rule->source, why);
            return WEIR_ERROR;
        }
        /* both parts first, so their variables see the request before the rule */
        if (weir_template_render_captures(r, rule->path, subject, ov, npairs, &path) < 0)
            return oom(r, rt);
        if (rule->query != NULL &&
            weir_template_render_captures(r, rule->query, subject, ov, npairs, &query) < 0)
            return oom(r, rt);
        if (path.len == 0 || path.data[0] != '/') {
            weir_request_log(r, &weir_module, WEIR_LOG_ERROR,
                             "route %s: rewrite \"%s\" turned \"%.*s\" into \"%.*s\", which "
                             "does not start with '/'; answering 500",
                             weir_route_name(rt), rule->source, (int)subject.len, subject.data,
                             (int)path.len, path.data);
            return WEIR_ERROR;
        }
        if (escape(r, &path, 0) < 0 || weir_request_set_path(r, path) < 0)
            return oom(r, rt);
        if (rewrite_query_replace(rule->query != NULL, query.len,
                                  weir_request_query(r).data != NULL)) {
            if (escape(r, &query, 1) < 0 || weir_request_set_query(r, query) < 0)
                return oom(r, rt);
        }
        return WEIR_CONTINUE; /* first match only; no second pass, no re-routing */
    }
    return WEIR_CONTINUE;
}

static weir_result_t redirect(weir_request_t *r, const weir_route_t *rt,
                              const struct rewrite_redirect *rd)
{
    weir_str_t location;

    if (weir_template_render(r, rd->location, &location) < 0 ||
        weir_headers_set(r, weir_response_headers(r), WEIR_STR("Location"), location) < 0 ||
        weir_respond(r, rd->status, (weir_str_t){.data = "", .len = 0}) < 0)
        return oom(r, rt);
    return WEIR_RESPOND;
}

static weir_result_t rewrite_apply(weir_request_t *r)
{
    const weir_route_t *rt = weir_request_route(r);
    const struct rewrite_conf *c = rt != NULL ? weir_route_conf(rt, &weir_module) : NULL;

    if (c == NULL)
        return WEIR_CONTINUE; /* no route: the core answers 404 later */
    if (c->rules.n > 0) {
        weir_result_t res = apply_rules(r, rt, &c->rules);

        if (res != WEIR_CONTINUE)
            return res;
    }
    if (c->redirect.status != 0)
        return redirect(r, rt, &c->redirect);
    return WEIR_CONTINUE;
}

/* -------------------------------------------------------------- lifecycle */

static int rewrite_conf_done(weir_conf_t *cf)
{
    for (size_t i = 0; i < weir_conf_route_count(cf); i++) {
        weir_route_t *rt = weir_conf_route(cf, i);
        const struct rewrite_conf *c = weir_route_conf(rt, &weir_module);

        if (c != NULL && c->redirect.status != 0)
            weir_route_set_answered(rt);
    }
    return 0;
}

/* ------------------------------------------------------------- descriptor */

static const weir_directive_t rewrite_directives[] = {
    {
        .key = "rewrite",
        .scopes = WEIR_SCOPE_MAIN | WEIR_SCOPE_ROUTE,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(struct rewrite_conf, rules),
        .size = sizeof(struct rewrite_rules),
        .parse = parse_rewrite,
        .help = "\"REGEX REPLACEMENT\" or a list of them; the first match applies",
    },
    {
        .key = "redirect",
        .scopes = WEIR_SCOPE_ROUTE,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(struct rewrite_conf, redirect),
        .size = sizeof(struct rewrite_redirect),
        .parse = parse_redirect,
        .help = "{status: 301|302|307|308, location: TEMPLATE}: answer with a redirect",
    },
    {.key = NULL},
};

static const weir_handler_t rewrite_handlers[] = {
    {
        .name = "rewrite.apply",
        .phase = WEIR_PHASE_REWRITE,
        .priority = WEIR_PRIORITY_MIDDLE,
        .fn = rewrite_apply,
    },
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "rewrite",
    .version = "1.0.0",
    .conf_size =
        {
            [WEIR_SCOPE_INDEX_MAIN] = sizeof(struct rewrite_conf),
            [WEIR_SCOPE_INDEX_ROUTE] = sizeof(struct rewrite_conf),
        },
    .directives = rewrite_directives,
    .handlers = rewrite_handlers,
    .conf_done = rewrite_conf_done,
    .conf_free = rewrite_conf_free,
};
