/*
 * weir -T: the effective configuration, as YAML that `weir -t` accepts.
 *
 * -T loads the config exactly as -t does (every check; on an error the
 * errors go to stderr, exit 1, nothing on stdout); then this file prints the
 * loaded generation, not the file: includes merged, every key of every scope
 * with its value, defaults written out. Where the values come from:
 *
 *  - Core keys: from weir_conf_t, which the core parsed itself and knows
 *    exactly, in the order of the README's tables (top level, limits,
 *    listeners[], upstreams.<name>, routes[]). `workers: auto` stays auto
 *    (the count it gave here follows as a comment), since the same file on
 *    another machine means auto there. A key whose default is "none" and
 *    that cannot be written as a value (`user`, `group` without user, a
 *    route without an upstream) is a comment line: `user: ~` would be an
 *    error, and `upstream: ~` is not what an absent key means.
 *  - Module keys, after the core's in each scope, by module load order and
 *    then the module's directive table: a typed directive (BOOL, INT, SIZE,
 *    DURATION, STRING) from the module's conf struct at its offset for that
 *    scope instance; a TEMPLATE as the text it was compiled from; a CUSTOM
 *    one, whose parsed value only its module understands, as the YAML the
 *    user wrote, re-serialized from the node tree (a route that does not set
 *    a key it inherits shows the top-level subtree, which is what it gets),
 *    else its default_value, else the comment `# key: module default`.
 *  - Names: a listener's effective name (its address when unnamed), a
 *    route's (route<N>): distinct in any config the loader accepted, so
 *    writing them out cannot make a duplicate.
 *  - Paths: absolute, resolved as the loader resolved them (against the
 *    config file's directory; -M and -p against the current one), so the
 *    printed config means the same from any directory: pid_file, error_log,
 *    modules_dir, module paths, error_page. -M and -p are folded in, since
 *    they are part of what this command line would run. Inside a CUSTOM
 *    key only the module knows which scalars are paths: one it read through
 *    weir_conf_path (1.7; tls's certificates and CAs, access_log's path) is
 *    printed as the absolute path it gave; any other is printed as written.
 *
 * The output is block-style YAML, two spaces per level, one key a line; the
 * same generation always prints the same text, so -T of -T's output is the
 * output again (a fixed point the tests check).
 */
#include "conf_dump.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "modload.h"
#include "vars.h"

/* ------------------------------------------------------------ scalars */

/* One code point of UTF-8 at s: its length, or 0 for invalid (overlong,
 * surrogate, past U+10FFFF, truncated). */
static size_t utf8_next(const unsigned char *s, uint32_t *cp)
{
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n;
    uint32_t c = s[0];

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, c &= 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, c &= 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, c &= 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

/* A code point a YAML stream holds as it is inside quotes: printable for
 * libyaml's reader, and neither a line break it would fold (NEL, LS, PS)
 * nor the BOM it may skip. */
static int raw_ok(uint32_t c)
{
    if (c == 0x85 || c == 0x2028 || c == 0x2029 || c == 0xfeff)
        return 0;
    return (c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xd7ff) ||
           (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
}

/* Plain is kept for what reads unambiguously: printable ASCII, not a null
 * word (the loader makes those NULL), not starting with an indicator, no
 * ": " or " #", no flow characters (so it is safe in any context), no
 * space at either end. */
static int plain_ok(const char *s)
{
    size_t n = strlen(s);

    if (!n || strchr("-?:,[]{}#&*!|>'\"%@` ", s[0]) || s[n - 1] == ' ' || s[n - 1] == ':')
        return 0;
    if (strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0)
        return 0;
    /* what other YAML readers take for a merge key or a value tag */
    if (strcmp(s, "<<") == 0 || strcmp(s, "=") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || strchr(",[]{}", c))
            return 0;
        if ((c == ':' && s[i + 1] == ' ') || (c == '#' && s[i - 1] == ' '))
            return 0;
    }
    return 1;
}

static int single_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t c;
        size_t n = utf8_next(p, &c);
        if (!n || !raw_ok(c))
            return 0;
        p += n;
    }
    return 1;
}

static void put_escape(FILE *out, uint32_t c)
{
    static const char named[] = {[7] = 'a', [8] = 'b', [9] = 't', [10] = 'n', [11] = 'v',
                                 [12] = 'f', [13] = 'r', [27] = 'e'};
    if (c < sizeof(named) && named[c])
        fprintf(out, "\\%c", named[c]);
    else if (c <= 0xff)
        fprintf(out, "\\x%02X", (unsigned)c);
    else if (c <= 0xffff)
        fprintf(out, "\\u%04X", (unsigned)c);
    else
        fprintf(out, "\\U%08X", (unsigned)c);
}

static void put_double(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', out);
    while (*p) {
        uint32_t c;
        size_t n = utf8_next(p, &c);
        if (!n) {
            put_escape(out, *p++);
            continue;
        }
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", (char)c);
        else if (raw_ok(c))
            fwrite(p, 1, n, out);
        else
            put_escape(out, c);
        p += n;
    }
    fputc('"', out);
}

void conf_dump_scalar(FILE *out, const char *s)
{
    if (plain_ok(s)) {
        fputs(s, out);
        return;
    }
    if (!single_ok(s)) {
        put_double(out, s);
        return;
    }
    fputc('\'', out);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', out);
        fputc(*s, out);
    }
    fputc('\'', out);
}

/* -------------------------------------------------------------- writer */

static void indent(FILE *out, int ind)
{
    fprintf(out, "%*s", ind, "");
}

/* "key:" at ind; the value follows on the same line or below. */
static void key(FILE *out, int ind, const char *k)
{
    indent(out, ind);
    conf_dump_scalar(out, k);
    fputc(':', out);
}

/* A scalar value after "key:" or "-"; NULL is YAML's null. */
static void scalar_value(FILE *out, const char *v)
{
    fputc(' ', out);
    if (v)
        conf_dump_scalar(out, v);
    else
        fputc('~', out);
    fputc('\n', out);
}

static void kv(FILE *out, int ind, const char *k, const char *v)
{
    key(out, ind, k);
    scalar_value(out, v);
}

static void kv_bool(FILE *out, int ind, const char *k, int v)
{
    kv(out, ind, k, v ? "true" : "false");
}

static void kv_num(FILE *out, int ind, const char *k, long long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", v);
    kv(out, ind, k, buf);
}

static void kv_ms(FILE *out, int ind, const char *k, uint64_t ms)
{
    char buf[WEIR_DURATION_LEN];
    kv(out, ind, k, weir_duration_text(ms, buf));
}

static void kv_size(FILE *out, int ind, const char *k, uint64_t bytes)
{
    char buf[WEIR_DURATION_LEN];
    kv(out, ind, k, conf_size_text(bytes, buf));
}

static void node_value(FILE *out, const weir_node_t *n, int ind);

/* Entries of a mapping at ind; the first one's indentation may already be
 * written (after "- "). */
static void map_entries(FILE *out, const weir_node_t *n, int ind, int inline_first)
{
    for (size_t i = 0; i < n->count; i++) {
        key(out, i == 0 && inline_first ? 0 : ind, n->keys[i]->scalar);
        node_value(out, n->items[i], ind + 2);
    }
}

/* What follows a "-" of a sequence item whose dash sits at ind - 2. */
static void item_value(FILE *out, const weir_node_t *n, int ind)
{
    if (n->type == WEIR_NODE_MAPPING && n->count) {
        fputc(' ', out);
        map_entries(out, n, ind, 1);
    } else if (n->type == WEIR_NODE_SEQUENCE && n->count) {
        for (size_t i = 0; i < n->count; i++) {
            if (i)
                indent(out, ind);
            fputs(" -", out);
            item_value(out, n->items[i], ind + 2);
        }
    } else {
        node_value(out, n, ind);
    }
}

/* A node written by the user, after "key:", its children at ind. */
static void node_value(FILE *out, const weir_node_t *n, int ind)
{
    switch (n->type) {
    case WEIR_NODE_SCALAR:
        scalar_value(out, n->path ? n->path : n->scalar);
        return;
    case WEIR_NODE_MAPPING:
        if (!n->count) {
            fputs(" {}\n", out);
            return;
        }
        fputc('\n', out);
        map_entries(out, n, ind, 0);
        return;
    case WEIR_NODE_SEQUENCE:
        if (!n->count) {
            fputs(" []\n", out);
            return;
        }
        fputc('\n', out);
        for (size_t i = 0; i < n->count; i++) {
            indent(out, ind);
            fputc('-', out);
            item_value(out, n->items[i], ind + 2);
        }
        return;
    case WEIR_NODE_NULL:
        break;
    }
    scalar_value(out, NULL);
}

/* ---------------------------------------------------------- module keys */

/* The value of a CUSTOM directive that is not written in its scope. */
static void custom_absent(FILE *out, int ind, const weir_directive_t *d)
{
    const char *t = d->default_value;
    if (!t) {
        indent(out, ind);
        fprintf(out, "# %s: module default\n", d->key);
        return;
    }
    /* as the loader reads a default: "", "~" and null are null */
    kv(out, ind, d->key, !*t || strcmp(t, "~") == 0 || strcasecmp(t, "null") == 0 ? NULL : t);
}

static void custom_value(FILE *out, const weir_conf_t *cf, int ind, int sidx,
                         const weir_directive_t *d, const weir_node_t *scope)
{
    const weir_node_t *n = weir_node_get(scope, d->key);
    if (!n && sidx == WEIR_SCOPE_INDEX_ROUTE && (d->scopes & WEIR_SCOPE_MAIN))
        n = weir_node_get(cf->root, d->key); /* what the route inherits */
    if (!n) {
        custom_absent(out, ind, d);
        return;
    }
    key(out, ind, d->key);
    node_value(out, n, ind + 2);
}

/* A typed directive, read from the module's conf struct. */
static void typed_value(FILE *out, int ind, const weir_directive_t *d, const unsigned char *f)
{
    union {
        int b;
        long l;
        uint64_t u;
        const char *s;
        const weir_template_t *t;
    } v;
    memcpy(&v, f, conf_field_size(d));
    switch (d->type) {
    case WEIR_DIRECTIVE_BOOL:
        kv_bool(out, ind, d->key, v.b);
        return;
    case WEIR_DIRECTIVE_INT:
        kv_num(out, ind, d->key, v.l);
        return;
    case WEIR_DIRECTIVE_SIZE:
        kv_size(out, ind, d->key, v.u);
        return;
    case WEIR_DIRECTIVE_DURATION:
        kv_ms(out, ind, d->key, v.u);
        return;
    case WEIR_DIRECTIVE_STRING:
        kv(out, ind, d->key, v.s);
        return;
    case WEIR_DIRECTIVE_TEMPLATE:
        kv(out, ind, d->key, v.t ? template_source(v.t) : NULL);
        return;
    case WEIR_DIRECTIVE_CUSTOM:
        break;
    }
}

/* Every module key of one scope instance: mconf holds the instance's conf
 * structs (NULL at the top level, where they are the modules' main confs),
 * scope its YAML mapping. */
static void module_keys(FILE *out, const weir_conf_t *cf, int ind, int sidx, void **mconf,
                        const weir_node_t *scope)
{
    for (size_t m = 0; m < cf->nmodules; m++) {
        const weir_module_t *desc = cf->modules[m].desc;
        const weir_directive_t *d = MODULE_HAS(desc, directives) ? desc->directives : NULL;
        const unsigned char *conf = mconf ? mconf[m] : cf->modules[m].main_conf;
        size_t size = MODULE_HAS(desc, conf_size) ? desc->conf_size[sidx] : 0;

        for (; d && d->key; d++) {
            if (!(d->scopes & (1u << sidx)))
                continue;
            if (d->type == WEIR_DIRECTIVE_CUSTOM)
                custom_value(out, cf, ind, sidx, d, scope);
            else if (conf && d->offset + conf_field_size(d) <= size)
                typed_value(out, ind, d, conf + d->offset);
            else /* the loader refused such a module at its first key */
                fprintf(out, "%*s# %s: not readable\n", ind, "", d->key);
        }
    }
}

/* ------------------------------------------------------------ core keys */

static void dump_limits(FILE *out, int ind, const limits_t *l)
{
    key(out, ind, "limits");
    fputc('\n', out);
    ind += 2;
    kv_ms(out, ind, "client_header_timeout", l->client_header_timeout);
    kv_ms(out, ind, "client_body_timeout", l->client_body_timeout);
    kv_ms(out, ind, "send_timeout", l->send_timeout);
    kv_ms(out, ind, "keepalive_timeout", l->keepalive_timeout);
    kv_num(out, ind, "keepalive_requests", (long long)l->keepalive_requests);
    kv_size(out, ind, "max_header_size", l->max_header_size);
    kv_size(out, ind, "max_body_size", l->max_body_size);
    kv_num(out, ind, "max_connections", (long long)l->max_connections);
    kv_ms(out, ind, "shutdown_timeout", l->shutdown_timeout);
}

static void dump_listeners(FILE *out, const weir_conf_t *cf)
{
    key(out, 0, "listeners");
    fputs(cf->nlisteners ? "\n" : " []\n", out);
    for (size_t i = 0; i < cf->nlisteners; i++) {
        const weir_listener_t *l = &cf->listeners[i];
        fputs("  -", out);
        kv(out, 1, "name", l->name);
        kv(out, 4, "address", l->address);
        kv_num(out, 4, "backlog", l->backlog);
        kv_bool(out, 4, "http2", l->http2);
        dump_limits(out, 4, &l->limits);
        module_keys(out, cf, 4, WEIR_SCOPE_INDEX_LISTENER, l->mconf, l->node);
    }
}

static void dump_servers(FILE *out, const weir_upstream_t *u)
{
    key(out, 4, "servers");
    fputc('\n', out);
    for (size_t i = 0; i < u->npeers; i++) {
        fputs("      -", out);
        kv(out, 1, "address", u->peers[i].address);
        kv_num(out, 8, "weight", u->peers[i].weight);
        kv_bool(out, 8, "backup", u->peers[i].backup);
    }
}

static void dump_upstreams(FILE *out, const weir_conf_t *cf)
{
    key(out, 0, "upstreams");
    fputs(cf->nupstreams ? "\n" : " {}\n", out);
    for (size_t i = 0; i < cf->nupstreams; i++) {
        const weir_upstream_t *u = &cf->upstreams[i];
        key(out, 2, u->name);
        fputc('\n', out);
        kv(out, 4, "balancer", u->balancer_name);
        dump_servers(out, u);
        kv_num(out, 4, "keepalive", (long long)u->keepalive);
        kv_ms(out, 4, "connect_timeout", u->connect_timeout);
        kv_ms(out, 4, "read_timeout", u->read_timeout);
        kv_ms(out, 4, "write_timeout", u->write_timeout);
        kv_ms(out, 4, "idle_timeout", u->idle_timeout);
        kv_ms(out, 4, "tunnel_timeout", u->tunnel_timeout);
        kv(out, 4, "protocol", u->protocol == UPSTREAM_H2 ? "h2" : "http1");
        kv_num(out, 4, "retries", u->retries);
        kv_num(out, 4, "max_fails", u->max_fails);
        kv_ms(out, 4, "fail_timeout", u->fail_timeout);
        module_keys(out, cf, 4, WEIR_SCOPE_INDEX_UPSTREAM, u->mconf, u->node);
    }
}

static void dump_routes(FILE *out, const weir_conf_t *cf)
{
    key(out, 0, "routes");
    fputs(cf->nroutes ? "\n" : " []\n", out);
    for (size_t i = 0; i < cf->nroutes; i++) {
        const weir_route_t *rt = &cf->routes[i];
        fputs("  -", out);
        kv(out, 1, "name", rt->name);
        if (rt->upstream)
            kv(out, 4, "upstream", rt->upstream->name);
        else
            fputs("    # upstream: none (a module answers the route)\n", out);
        module_keys(out, cf, 4, WEIR_SCOPE_INDEX_ROUTE, rt->mconf, rt->node);
    }
}

/* A path absolute against the current directory (-M, -p): the real path
 * when it exists, so "../build/modules" prints without the "..". */
static void kv_abs(FILE *out, const char *k, const char *path)
{
    char cwd[PATH_MAX], buf[2 * PATH_MAX], *real = NULL;
    if (path[0] != '/' && (real = realpath(path, NULL)))
        path = real;
    else if (path[0] != '/' && getcwd(cwd, sizeof(cwd))) {
        snprintf(buf, sizeof(buf), "%s/%s", cwd, path);
        path = buf;
    }
    kv(out, 0, k, path);
    free(real);
}

/* A module found in modules_dir under its name is printed by name, so the
 * output keeps meaning "the module of that directory"; one given a path of
 * its own keeps it (absolute already). */
static void dump_modules(FILE *out, const weir_conf_t *cf)
{
    key(out, 0, "modules");
    fputs(cf->nmodules ? "\n" : " []\n", out);
    for (size_t i = 0; i < cf->nmodules; i++) {
        const module_slot_t *s = &cf->modules[i];
        const char *name = s->desc->name;
        size_t dl = strlen(cf->modules_dir), nl = strlen(name);
        int in_dir = s->path && strncmp(s->path, cf->modules_dir, dl) == 0 &&
                     s->path[dl] == '/' && strncmp(s->path + dl + 1, name, nl) == 0 &&
                     strcmp(s->path + dl + 1 + nl, ".so") == 0;
        if (in_dir || !s->path) {
            fputs("  -", out);
            scalar_value(out, name);
            continue;
        }
        fputs("  -", out);
        kv(out, 1, "name", name);
        kv(out, 4, "path", s->path);
    }
}

void conf_dump(const weir_conf_t *cf, const char *pid_override, FILE *out)
{
    /* no file name: the output of -T on this output is this output */
    fputs("# weir -T: the effective configuration\n"
          "# (includes merged, defaults written out, paths absolute)\n", out);
    if (cf->workers_auto)
        fprintf(out, "workers: auto # %u here\n", cf->workers);
    else
        kv_num(out, 0, "workers", cf->workers);
    if (cf->user)
        kv(out, 0, "user", cf->user);
    else
        fputs("# user: none (the workers keep the master's identity)\n", out);
    if (cf->group)
        kv(out, 0, "group", cf->group);
    else if (cf->user)
        fputs("# group: the user's primary group\n", out);
    kv_abs(out, "pid_file", pid_override ? pid_override : cf->pid_file);
    key(out, 0, "error_log");
    fputc('\n', out);
    kv(out, 2, "path", cf->error_log);
    kv(out, 2, "level", conf_level_name(cf->error_log_level));
    kv_abs(out, "modules_dir", cf->modules_dir);
    dump_modules(out, cf);
    dump_limits(out, 0, &cf->limits);
    dump_listeners(out, cf);
    dump_upstreams(out, cf);
    dump_routes(out, cf);
    kv(out, 0, "error_page", cf->error_page_path);
    kv_num(out, 0, "metrics_max_series", (long long)cf->metrics_max_series);
    module_keys(out, cf, 0, WEIR_SCOPE_INDEX_MAIN, NULL, cf->root);
}
