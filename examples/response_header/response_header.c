/*
 * response_header: an example third-party weir module, built out of tree.
 *
 *     cc -shared -fPIC $(pkg-config --cflags weir-module) response_header.c -o response_header.so
 *
 * It adds one header to every proxied response. The header's value is a
 * template, so it can name the server that answered:
 *
 *     modules:
 *       - router
 *       - lb_roundrobin
 *       - {name: response_header, path: /path/to/response_header.so}
 *     example_header: {name: X-Example, value: "served by $upstream_addr for $host"}
 *     routes:
 *       - {path: /api/, upstream: api,
 *          example_header: {name: X-Example, value: "api route, $upstream_addr"}}
 *       - {path: /quiet/, upstream: api, example_header: null}   # no header here
 *       - {path: /, upstream: web}                               # inherits the top level
 *
 * What it shows of the API (include/weir/module.h):
 *  - one conf struct type for the top level and for routes, so the core can
 *    copy the top-level value into every route that does not set the key
 *    (MAIN -> ROUTE inheritance needs the field at the same offset in both);
 *  - a directive table with a CUSTOM parser that reads a YAML mapping and
 *    reports mistakes with weir_conf_error, which prefixes file:line:col;
 *  - a template compiled at config time and rendered per request into the
 *    request arena;
 *  - a handler in the upstream_response phase that sets the header;
 *  - weir_log with the module's own name, and a conf_done hook.
 *
 * Every function is static: the only symbol this .so exports is the
 * descriptor `weir_module`, which the loader looks up with dlsym.
 */
#include <string.h>

#include <weir/module.h>

/* The descriptor is defined at the bottom; handlers pass its address to the
 * core to find this module's conf structs. */
WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

/* ---------------------------------------------------------------- config */

/* The parsed value of `example_header`. name == NULL means "no header"
 * (the key is absent everywhere, or a route said `example_header: null`). */
typedef struct rh_header {
    const char *name;       /* header name, NUL-terminated, conf lifetime */
    size_t name_len;
    weir_template_t *value; /* compiled "$var text", conf lifetime */
} rh_header_t;

/* Used for both WEIR_SCOPE_INDEX_MAIN and WEIR_SCOPE_INDEX_ROUTE. The core
 * zeroes it, runs the parser for a key that is set, and for a route that
 * does not set it copies the top-level bytes (directive .size) over. */
typedef struct rh_conf {
    rh_header_t header;
} rh_conf_t;

/* RFC 9110 token characters, the only ones a header name may hold. */
static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const weir_node_t *want_scalar(weir_conf_t *cf, const weir_node_t *n, const char *what)
{
    if (weir_node_type(n) != WEIR_NODE_SCALAR) {
        weir_conf_error(cf, n, "example_header: '%s' must be a string", what);
        return NULL;
    }
    return n;
}

/* CUSTOM parser for `example_header`. `node` carries its position, so every
 * weir_conf_error below comes out as "weir.yaml:12:21: example_header: ...".
 * Errors accumulate: report each problem and return -1; the core goes on
 * reading the rest of the file and fails the load at the end. */
static int parse_example_header(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    rh_header_t *h = field;
    const weir_node_t *name = NULL, *value = NULL;
    int rc = 0;

    if (weir_node_type(node) == WEIR_NODE_NULL) {
        /* explicitly off: a route can switch off the inherited header */
        *h = (rh_header_t){0};
        return 0;
    }
    if (weir_node_type(node) != WEIR_NODE_MAPPING)
        return weir_conf_error(cf, node,
                               "example_header: expected a mapping {name: X-Header, "
                               "value: \"text with $variables\"} or null");

    for (size_t i = 0; i < weir_node_count(node); i++) {
        const weir_node_t *k = weir_node_key(node, i);
        const char *key = weir_node_scalar(k);

        if (key && strcmp(key, "name") == 0)
            name = weir_node_child(node, i);
        else if (key && strcmp(key, "value") == 0)
            value = weir_node_child(node, i);
        else
            rc = weir_conf_error(cf, k, "example_header: unknown key '%s' (expected name or value)",
                                 key ? key : "?");
    }
    if (!name)
        rc = weir_conf_error(cf, node, "example_header: missing 'name'");
    if (!value)
        rc = weir_conf_error(cf, node, "example_header: missing 'value'");
    if (rc < 0)
        return -1;

    if (!want_scalar(cf, name, "name") || !want_scalar(cf, value, "value"))
        return -1;
    const char *s = weir_node_scalar(name);
    if (*s == '\0')
        return weir_conf_error(cf, name, "example_header: empty header name");
    for (const char *p = s; *p; p++)
        if (!is_tchar((unsigned char)*p))
            return weir_conf_error(cf, name,
                                   "example_header: invalid character '%c' in header name '%s'",
                                   *p, s);

    /* Node text lives only until conf_done returns: keep a copy. The
     * template compiler reports unknown variables at the value's position. */
    h->name = weir_conf_strdup(cf, s);
    if (!h->name)
        return weir_conf_error(cf, name, "example_header: out of memory");
    h->name_len = strlen(h->name);
    h->value = weir_template_compile(cf, value, weir_node_scalar(value));
    return h->value ? 0 : -1;
}

static const weir_directive_t rh_directives[] = {
    {.key = "example_header",
     .scopes = WEIR_SCOPE_MAIN | WEIR_SCOPE_ROUTE, /* routes inherit the top level */
     .type = WEIR_DIRECTIVE_CUSTOM,
     .offset = offsetof(rh_conf_t, header),
     .size = sizeof(rh_header_t), /* bytes the core copies when a route inherits */
     .parse = parse_example_header,
     .help = "{name: X-Header, value: \"template\"}: a header added to proxied responses"},
    {.key = NULL},
};

/* After the whole file was read: the conf is complete and read-only. */
static int rh_conf_done(weir_conf_t *cf)
{
    size_t on = 0, n = weir_conf_route_count(cf);

    for (size_t i = 0; i < n; i++) {
        const rh_conf_t *rc = weir_route_conf(weir_conf_route(cf, i), &weir_module);
        if (rc && rc->header.name)
            on++;
    }
    weir_log(&weir_module, WEIR_LOG_INFO, "adding a response header on %zu of %zu routes", on, n);
    return 0;
}

/* ---------------------------------------------------------------- request */

/* upstream_response: the upstream's head is in, nothing was sent to the
 * client yet, so response headers can still change. */
static weir_result_t rh_set_header(weir_request_t *r)
{
    weir_route_t *rt = weir_request_route(r);
    const rh_conf_t *rc = rt ? weir_route_conf(rt, &weir_module) : NULL;
    weir_str_t value;

    if (!rc || !rc->header.name)
        return WEIR_CONTINUE;

    /* Rendered into the request arena: valid until the log phase ends, no
     * free needed. -1 means the request's memory cap was reached. */
    if (weir_template_render(r, rc->header.value, &value) < 0) {
        weir_log(&weir_module, WEIR_LOG_ERROR, "out of request memory rendering %s",
                 rc->header.name);
        return WEIR_ERROR;
    }
    /* A variable such as $http_x_foo carries client bytes; never let one
     * split the header. */
    for (size_t i = 0; i < value.len; i++) {
        if (value.data[i] == '\r' || value.data[i] == '\n' || value.data[i] == '\0') {
            weir_log(&weir_module, WEIR_LOG_WARN, "not setting %s: the value has a CR, LF or NUL",
                     rc->header.name);
            return WEIR_CONTINUE;
        }
    }
    weir_str_t name = {.data = rc->header.name, .len = rc->header.name_len};
    if (weir_headers_set(r, weir_response_headers(r), name, value) < 0)
        return WEIR_ERROR;
    return WEIR_CONTINUE;
}

static const weir_handler_t rh_handlers[] = {
    /* late, so other modules' header rules have run; a before/after list could
     * name them instead ("module.handler"; unknown names are ignored) */
    {.name = "response_header.set",
     .phase = WEIR_PHASE_UPSTREAM_RESPONSE,
     .priority = WEIR_PRIORITY_LATE,
     .fn = rh_set_header},
    {.name = NULL},
};

/* -------------------------------------------------------------- descriptor */

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER, /* ABI major/minor this was compiled against, struct size */
    .name = "response_header", /* must equal the file name without .so */
    .version = "1.0.0",
    .conf_size = {
        [WEIR_SCOPE_INDEX_MAIN] = sizeof(rh_conf_t),
        [WEIR_SCOPE_INDEX_ROUTE] = sizeof(rh_conf_t),
    },
    .directives = rh_directives,
    .handlers = rh_handlers,
    .conf_done = rh_conf_done,
};
