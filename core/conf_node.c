/*
 * The config side of the module API: node accessors, typed readers, error
 * accumulation, generation memory, and the walk over routes and upstreams.
 */
#include "conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "log.h"

/* ------------------------------------------------------------------ nodes */

weir_node_type_t weir_node_type(const weir_node_t *n)
{
    return n ? n->type : WEIR_NODE_NULL;
}

const char *weir_node_scalar(const weir_node_t *n)
{
    return n && n->type == WEIR_NODE_SCALAR ? n->scalar : NULL;
}

const char *weir_node_file(const weir_node_t *n)
{
    return n ? n->file : NULL;
}

unsigned weir_node_line(const weir_node_t *n)
{
    return n ? n->line : 0;
}

unsigned weir_node_column(const weir_node_t *n)
{
    return n ? n->column : 0;
}

size_t weir_node_count(const weir_node_t *n)
{
    if (!n || (n->type != WEIR_NODE_SEQUENCE && n->type != WEIR_NODE_MAPPING))
        return 0;
    return n->count;
}

const weir_node_t *weir_node_child(const weir_node_t *n, size_t i)
{
    if (i >= weir_node_count(n))
        return NULL;
    return n->items[i];
}

const weir_node_t *weir_node_key(const weir_node_t *n, size_t i)
{
    if (!n || n->type != WEIR_NODE_MAPPING || i >= n->count)
        return NULL;
    return n->keys[i];
}

const weir_node_t *weir_node_get(const weir_node_t *n, const char *key)
{
    if (!n || n->type != WEIR_NODE_MAPPING || !key)
        return NULL;
    for (size_t i = 0; i < n->count; i++)
        if (strcmp(n->keys[i]->scalar, key) == 0)
            return n->items[i];
    return NULL;
}

const char *conf_node_type_word(const weir_node_t *n)
{
    switch (weir_node_type(n)) {
    case WEIR_NODE_SEQUENCE:
        return "a list";
    case WEIR_NODE_MAPPING:
        return "a mapping";
    case WEIR_NODE_NULL:
        return "nothing";
    default:
        return "a scalar";
    }
}

/* " for 'key'" when the node knows the key it is the value of. */
static void for_key(const weir_node_t *n, char *buf, size_t len)
{
    if (n && n->key)
        snprintf(buf, len, " for '%s'", n->key);
    else
        buf[0] = '\0';
}

/* A typed reader needs a scalar; anything else is reported with what the
 * reader wanted, so the user sees one precise message. */
static const char *want_scalar(weir_conf_t *cf, const weir_node_t *n, const char *what,
                               const char *expected)
{
    char fk[128];
    if (weir_node_type(n) == WEIR_NODE_SCALAR)
        return n->scalar;
    for_key(n, fk, sizeof(fk));
    weir_conf_error(cf, n, "expected %s%s, got %s (%s)", what, fk, conf_node_type_word(n), expected);
    return NULL;
}

int weir_node_bool(weir_conf_t *cf, const weir_node_t *n, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    const char *s = want_scalar(cf, n, "a boolean", "true or false");
    char fk[128];

    if (!s)
        return -1;
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    for_key(n, fk, sizeof(fk));
    return weir_conf_error(cf, n, "invalid boolean '%s'%s (expected true or false)", s, fk);
}

int weir_node_int(weir_conf_t *cf, const weir_node_t *n, long min, long max, long *out)
{
    const char *s = want_scalar(cf, n, "an integer", "a whole number");
    char fk[128], *end;
    long v;

    if (!s)
        return -1;
    for_key(n, fk, sizeof(fk));
    errno = 0;
    v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || s[0] == ' ')
        return weir_conf_error(cf, n, "invalid integer '%s'%s (expected a whole number)", s, fk);
    if (errno == ERANGE || v < min || v > max)
        return weir_conf_error(cf, n, "value %s%s is out of range (expected %ld..%ld)", s, fk,
                               min, max);
    *out = v;
    return 0;
}

int weir_node_duration_ms(weir_conf_t *cf, const weir_node_t *n, uint64_t *out)
{
    static const char expected[] = "expected a number with ms, s, m, h or d, e.g. 250ms, 2s";
    const char *s = want_scalar(cf, n, "a duration", expected);
    char fk[128];

    if (!s)
        return -1;
    if (conf_parse_duration_ms(s, out) == 0)
        return 0;
    for_key(n, fk, sizeof(fk));
    return weir_conf_error(cf, n, "invalid duration '%s'%s (%s)", s, fk, expected);
}

int weir_node_size(weir_conf_t *cf, const weir_node_t *n, uint64_t *out)
{
    static const char expected[] = "expected a number of bytes with optional k, m or g, "
                                   "e.g. 512, 16k, 1m";
    const char *s = want_scalar(cf, n, "a size", expected);
    char fk[128];

    if (!s)
        return -1;
    if (conf_parse_size(s, out) == 0)
        return 0;
    for_key(n, fk, sizeof(fk));
    return weir_conf_error(cf, n, "invalid size '%s'%s (%s)", s, fk, expected);
}

/* ------------------------------------------------------------- positions */

/* Characters in s[0..len): libyaml counts columns in characters, not bytes. */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

/* Where `text` starts inside `scalar`: text points into it, or is a copy of a
 * piece found there exactly once (a rewrite's replacement). -1: unknown. */
static int text_base(const char *scalar, const char *text, size_t *base)
{
    size_t slen = strlen(scalar);
    uintptr_t s = (uintptr_t)scalar, t = (uintptr_t)text;
    if (t >= s && t <= s + slen) {
        *base = (size_t)(t - s);
        return 0;
    }
    const char *hit = *text ? strstr(scalar, text) : NULL;
    if (!hit || strstr(hit + 1, text))
        return -1;
    *base = (size_t)(hit - scalar);
    return 0;
}

void conf_text_pos(const weir_node_t *n, const char *text, size_t offset, unsigned *line,
                   unsigned *column)
{
    size_t base, slen, quotes;

    *line = n ? n->line : 0;
    *column = n ? n->column : 0;
    if (!n || !text || n->type != WEIR_NODE_SCALAR || n->style == CONF_STYLE_OTHER ||
        n->end_line != n->line || text_base(n->scalar, text, &base) < 0)
        return;
    slen = strlen(n->scalar);
    if (base + offset > slen)
        return;
    /* a quoted scalar whose width in the file is its text plus the quotes has
     * no escapes, so its characters map one to one */
    quotes = n->style == CONF_STYLE_QUOTED ? 2 : 0;
    if (n->end_column < n->column ||
        n->end_column - n->column != utf8_chars(n->scalar, slen) + quotes)
        return;
    *column = n->column + (unsigned)(quotes / 2 + utf8_chars(n->scalar, base + offset));
}

/* ----------------------------------------------------------------- errors */

/* A message is one line, but it may quote a value that holds control
 * characters (a block scalar ends with a newline): they are written as
 * escapes, "\n", "\t", "\r" or "\xHH", so the line stays a line and the
 * user sees what the value really holds. Every message goes through here,
 * the modules' included. Backslashes stay as they are: regexes are full of
 * them. */
static void escape_controls(const char *in, char *out, size_t cap)
{
    log_escape(in, strlen(in), out, cap, 0, NULL);
}

static int pos_after(const conf_error_t *e, unsigned line, unsigned column)
{
    return e->line > line || (e->line == line && e->column > column);
}

int weir_conf_error(weir_conf_t *cf, const weir_node_t *n, const char *fmt, ...)
{
    va_list ap;
    char raw[1024], text[2048];
    const char *file = n && n->file ? n->file : cf->file;
    unsigned line = n ? n->line : 0, column = n ? n->column : 0;
    conf_error_t *e, **at;
    int len;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    escape_controls(raw, text, sizeof(text));

    cf->nerrors++;
    e = arena_alloc(cf->arena, sizeof(*e));
    if (!e)
        return -1;
    if (line)
        len = snprintf(NULL, 0, "%s:%u:%u: %s", file ? file : "?", line, column, text);
    else
        len = snprintf(NULL, 0, "%s: %s", file ? file : "?", text);
    e->msg = arena_alloc_raw(cf->arena, (size_t)len + 1);
    if (!e->msg)
        return -1;
    if (line)
        snprintf(e->msg, (size_t)len + 1, "%s:%u:%u: %s", file ? file : "?", line, column, text);
    else
        snprintf(e->msg, (size_t)len + 1, "%s: %s", file ? file : "?", text);
    e->file = file;
    e->line = line;
    e->column = column;

    /* Stages run in a fixed order (structure, cross-checks, modules'
     * conf_done), but users read errors top to bottom, as a compiler's:
     * the errors of one file are kept sorted by line and column (equal
     * positions in the order found), files in the order their first error
     * came, and errors without a position after all the others. */
    if (!cf->errors_tail)
        cf->errors_tail = &cf->errors;
    at = &cf->errors;
    if (line) {
        while (*at) {
            conf_error_t *o = *at;
            if (o->line == 0 ||
                (o->file && file && strcmp(o->file, file) == 0 && pos_after(o, line, column)))
                break;
            at = &o->next;
        }
    } else {
        at = cf->errors_tail;
    }
    e->next = *at;
    *at = e;
    if (!e->next)
        cf->errors_tail = &e->next;
    return -1;
}

void conf_report_errors(const weir_conf_t *cf, void (*report)(const char *msg))
{
    for (const conf_error_t *e = cf->errors; e; e = e->next) {
        if (report)
            report(e->msg);
        else
            fprintf(stderr, "%s\n", e->msg);
    }
}

/* ----------------------------------------------------------------- memory */

void *weir_conf_alloc(weir_conf_t *cf, size_t size)
{
    return arena_alloc(cf->arena, size ? size : 1);
}

char *weir_conf_strdup(weir_conf_t *cf, const char *s)
{
    return s ? arena_strdup(cf->arena, s) : NULL;
}

const char *weir_conf_dir(const weir_conf_t *cf)
{
    return cf->dir;
}

const char *conf_resolve_path(weir_conf_t *cf, const char *p)
{
    if (p[0] == '/')
        return weir_conf_strdup(cf, p);
    size_t dl = strlen(cf->dir), pl = strlen(p);
    char *out = weir_conf_alloc(cf, dl + 1 + pl + 1);
    if (!out)
        return NULL;
    memcpy(out, cf->dir, dl);
    out[dl] = '/';
    memcpy(out + dl + 1, p, pl + 1);
    return out;
}

const char *weir_conf_path(weir_conf_t *cf, const weir_node_t *n)
{
    char fk[128];
    const char *s = weir_node_scalar(n), *p;

    if (!s || !*s) {
        for_key(n, fk, sizeof(fk));
        weir_conf_error(cf, n, "expected a file path%s, got %s", fk,
                        s ? "an empty string" : conf_node_type_word(n));
        return NULL;
    }
    if (!(p = conf_resolve_path(cf, s))) {
        weir_conf_error(cf, n, "out of memory");
        return NULL;
    }
    /* The node is the generation's, in its arena; modules hold it const
     * only so they cannot change what they read. */
    ((weir_node_t *)n)->path = p;
    return p;
}

int weir_conf_cleanup(weir_conf_t *cf, void (*fn)(void *arg), void *arg)
{
    return arena_cleanup(cf->arena, fn, arg);
}

/* ---------------------------------------------------------- module confs */

int conf_module_index(const weir_conf_t *cf, const weir_module_t *m)
{
    if (!cf || !m)
        return -1;
    for (size_t i = 0; i < cf->nmodules; i++)
        if (cf->modules[i].desc == m)
            return (int)i;
    return -1;
}

void *weir_main_conf(const weir_conf_t *cf, const weir_module_t *m)
{
    int i = conf_module_index(cf, m);
    return i < 0 ? NULL : cf->modules[i].main_conf;
}

static void *instance_conf(const weir_conf_t *cf, void **mconf, const weir_module_t *m)
{
    int i = conf_module_index(cf, m);
    return i < 0 || !mconf ? NULL : mconf[i];
}

void *weir_listener_conf(const weir_listener_t *l, const weir_module_t *m)
{
    return l ? instance_conf(l->conf, l->mconf, m) : NULL;
}

void *weir_upstream_conf(const weir_upstream_t *u, const weir_module_t *m)
{
    return u ? instance_conf(u->conf, u->mconf, m) : NULL;
}

void *weir_route_conf(const weir_route_t *rt, const weir_module_t *m)
{
    return rt ? instance_conf(rt->conf, rt->mconf, m) : NULL;
}

/* ------------------------------------------------------------------- walk */

size_t weir_conf_route_count(const weir_conf_t *cf)
{
    return cf->nroutes;
}

weir_route_t *weir_conf_route(const weir_conf_t *cf, size_t i)
{
    return i < cf->nroutes ? &cf->routes[i] : NULL;
}

size_t weir_conf_upstream_count(const weir_conf_t *cf)
{
    return cf->nupstreams;
}

weir_upstream_t *weir_conf_upstream(const weir_conf_t *cf, size_t i)
{
    return i < cf->nupstreams ? &cf->upstreams[i] : NULL;
}

size_t weir_conf_listener_count(const weir_conf_t *cf)
{
    return cf->nlisteners;
}

weir_listener_t *weir_conf_listener(const weir_conf_t *cf, size_t i)
{
    return i < cf->nlisteners ? &cf->listeners[i] : NULL;
}

const char *weir_listener_name(const weir_listener_t *l)
{
    return l->name ? l->name : l->address;
}

const weir_node_t *weir_listener_node(const weir_listener_t *l)
{
    return l->node;
}

const weir_node_t *weir_route_node(const weir_route_t *rt)
{
    return rt->node;
}

const weir_node_t *weir_upstream_node(const weir_upstream_t *u)
{
    return u->node;
}

const char *weir_route_name(const weir_route_t *rt)
{
    return rt->name;
}

size_t weir_route_index(const weir_route_t *rt)
{
    return rt->index;
}

weir_upstream_t *weir_route_upstream(const weir_route_t *rt)
{
    return rt->upstream;
}

void weir_route_set_answered(weir_route_t *rt)
{
    rt->answered = 1;
}

const char *weir_upstream_name(const weir_upstream_t *u)
{
    return u->name;
}

const char *weir_upstream_protocol(const weir_upstream_t *u)
{
    return u->protocol == UPSTREAM_H2 ? "h2" : "http/1.1";
}

const weir_node_t *conf_modules_key(const weir_conf_t *cf)
{
    const weir_node_t *root = cf->root;
    if (!root || root->type != WEIR_NODE_MAPPING)
        return root;
    for (size_t i = 0; i < root->count; i++) {
        if (root->keys[i] && root->keys[i]->scalar && strcmp(root->keys[i]->scalar, "modules") == 0)
            return root->keys[i];
    }
    return root;
}
