/*
 * Module accesslog: one line per request, from a format with variables.
 *
 *   access_log:                  # top level, and per route
 *     path: access.log           # relative to the config file; "stdout"; "stderr";
 *                                # default WEIR_LOG_DIR/access.log
 *     format: '$remote_addr - [$time_local] "$request" $status ...'
 *     format_json: false         # escape variable values for JSON strings
 *     buffer: 64k                # per worker, written when full ...
 *     flush: 1s                  # ... or this long after its first line
 *   access_log: off              # no log (top level or for one route)
 *
 * Decisions:
 *  - With the module loaded and no `access_log:` key, requests are logged to
 *    access.log in the log directory of the build (WEIR_LOG_DIR, e.g.
 *    /var/log/weir), with the default format (SPEC §4 shows that format).
 *    `off` turns it off. A relative path written in the config is relative
 *    to the config file.
 *  - A route that sets `access_log:` as a mapping takes every field it does
 *    not name from the top-level access_log (so `{path: api.log}` keeps the
 *    top-level format); a route without the key logs like the top level.
 *  - Unset variables render as "-" in plain formats and as "" with
 *    format_json (as nginx's escape=json does).
 *  - Writing, buffering, reopening on SIGUSR1 / `weir -s reopen` and the
 *    bound on memory when the disk stalls are the core's log file service
 *    (weir_logfile_*, ABI 1.1): nothing here blocks the loop. A line is one
 *    record: it is never split between two writes.
 *  - Logged in the log phase, so every request that got a response is logged,
 *    answers weir made itself (4xx, 5xx, redirects) included.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "weir/module.h"

#ifndef WEIR_LOG_DIR
#define WEIR_LOG_DIR "/var/log/weir"
#endif
#define DEFAULT_PATH WEIR_LOG_DIR "/access.log"
#define DEFAULT_FORMAT                                                                         \
    "$remote_addr - [$time_local] \"$request\" $status $body_bytes_sent $request_time "      \
    "\"$upstream_addr\""
#define DEFAULT_BUFFER (64 * 1024)
#define DEFAULT_FLUSH_MS 1000
#define MAX_BUFFER (16 * 1024 * 1024)

extern WEIR_MODULE_EXPORT const weir_module_t weir_module;

/* Which fields a mapping named, so a route can take the rest from the top. */
enum {
    HAS_PATH = 1 << 0,
    HAS_FORMAT = 1 << 1,
    HAS_JSON = 1 << 2,
    HAS_BUFFER = 1 << 3,
    HAS_FLUSH = 1 << 4,
};

/* One struct for the top level and routes (directive inheritance copies it). */
typedef struct al_conf {
    const weir_node_t *node; /* the access_log value; NULL: key absent */
    int off;
    unsigned has;
    const char *path;
    const weir_node_t *format_node;
    const char *format;
    int json;
    uint64_t buffer;
    uint64_t flush_ms;
    /* set in conf_done */
    weir_template_t *line; /* format + "\n" */
    weir_logfile_t *file;
} al_conf_t;

static int parse_field(weir_conf_t *cf, al_conf_t *c, const char *key, const weir_node_t *v)
{
    if (strcmp(key, "path") == 0) {
        if (!(c->path = weir_node_scalar(v)) || !*c->path)
            return weir_conf_error(cf, v, "access_log.path: expected a file name, \"stdout\" "
                                          "or \"stderr\"");
        c->has |= HAS_PATH;
        if (strcmp(c->path, "off") == 0)
            c->off = 1;
        else if (strcmp(c->path, "stdout") != 0 && strcmp(c->path, "stderr") != 0)
            c->path = weir_conf_path(cf, v); /* absolute, as `weir -T` prints it */
        return c->path ? 0 : -1;
    }
    if (strcmp(key, "format") == 0) {
        if (!(c->format = weir_node_scalar(v)))
            return weir_conf_error(cf, v, "access_log.format: expected a string with variables");
        c->format_node = v;
        c->has |= HAS_FORMAT;
        return 0;
    }
    if (strcmp(key, "format_json") == 0) {
        c->has |= HAS_JSON;
        return weir_node_bool(cf, v, &c->json);
    }
    if (strcmp(key, "buffer") == 0) {
        c->has |= HAS_BUFFER;
        if (weir_node_size(cf, v, &c->buffer) < 0)
            return -1;
        if (c->buffer < 1 || c->buffer > MAX_BUFFER)
            return weir_conf_error(cf, v, "access_log.buffer: expected 1 to 16m bytes");
        return 0;
    }
    if (strcmp(key, "flush") == 0) {
        c->has |= HAS_FLUSH;
        return weir_node_duration_ms(cf, v, &c->flush_ms);
    }
    return weir_conf_error(cf, v, "access_log: unknown key '%s' (expected path, format, "
                                  "format_json, buffer or flush)", key);
}

static int parse_access_log(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    al_conf_t *c = field;
    memset(c, 0, sizeof(*c));
    c->node = node;
    const char *s = weir_node_scalar(node);
    if (s && strcmp(s, "off") == 0) {
        c->off = 1;
        return 0;
    }
    if (weir_node_type(node) != WEIR_NODE_MAPPING)
        return weir_conf_error(cf, node, "access_log: expected a mapping {path, format, "
                                         "format_json, buffer, flush} or off");
    int rc = 0;
    for (size_t i = 0; i < weir_node_count(node); i++) {
        const char *key = weir_node_scalar(weir_node_key(node, i));
        if (parse_field(cf, c, key ? key : "", weir_node_child(node, i)) < 0)
            rc = -1;
    }
    return rc;
}

static void take_unset_from(al_conf_t *c, const al_conf_t *top)
{
    if (!(c->has & HAS_PATH)) {
        c->path = top->path;
        c->off = c->off || top->off;
    }
    if (!(c->has & HAS_FORMAT)) {
        c->format = top->format;
        c->format_node = top->format_node;
    }
    if (!(c->has & HAS_JSON))
        c->json = top->json;
    if (!(c->has & HAS_BUFFER))
        c->buffer = top->buffer;
    if (!(c->has & HAS_FLUSH))
        c->flush_ms = top->flush_ms;
}

static int finish(weir_conf_t *cf, al_conf_t *c)
{
    if (c->off)
        return 0;
    /* errors in the format point at the format (each variable at its own
     * column), or at access_log when the format is the default one; the
     * format is checked as written, so messages quote it without the newline
     * the line template adds */
    const weir_node_t *at = c->format_node ? c->format_node : c->node;
    if (!weir_template_compile(cf, at, c->format))
        return -1;
    size_t n = strlen(c->format);
    char *text = weir_conf_alloc(cf, n + 2);
    if (!text)
        return weir_conf_error(cf, c->node, "access_log: out of memory");
    memcpy(text, c->format, n);
    text[n] = '\n';
    if (!(c->line = weir_template_compile(cf, at, text)))
        return -1;
    c->file = weir_logfile_open(cf, (c->has & HAS_PATH) ? c->node : at, c->path,
                                (size_t)c->buffer, c->flush_ms);
    return c->file ? 0 : -1;
}

static int accesslog_conf_done(weir_conf_t *cf)
{
    al_conf_t *top = weir_main_conf(cf, &weir_module);
    const weir_node_t *top_node = top->node;
    al_conf_t defaults = {.path = DEFAULT_PATH,
                          .format = DEFAULT_FORMAT,
                          .buffer = DEFAULT_BUFFER,
                          .flush_ms = DEFAULT_FLUSH_MS};
    take_unset_from(top, &defaults);
    /* the routes are checked even when the top level failed: one run shows
     * every mistake */
    int rc = finish(cf, top);
    for (size_t i = 0; i < weir_conf_route_count(cf); i++) {
        al_conf_t *c = weir_route_conf(weir_conf_route(cf, i), &weir_module);
        if (!c->node || c->node == top_node) {
            *c = *top; /* inherited: the same file and format */
            continue;
        }
        take_unset_from(c, top);
        if (finish(cf, c) < 0)
            rc = -1;
    }
    return rc;
}

static weir_result_t accesslog_log(weir_request_t *r)
{
    weir_route_t *rt = weir_request_route(r);
    const al_conf_t *c = rt ? weir_route_conf(rt, &weir_module)
                            : weir_main_conf(weir_request_conf(r), &weir_module);
    if (!c || c->off || !c->file)
        return WEIR_CONTINUE;
    weir_str_t line;
    if (weir_template_render_flags(r, c->line, c->json ? WEIR_RENDER_JSON : WEIR_RENDER_LOG,
                                   &line) < 0) {
        weir_request_log(r, &weir_module, WEIR_LOG_WARN,
                         "out of request memory; access log line lost");
        return WEIR_CONTINUE;
    }
    weir_logfile_write(c->file, line.data, line.len);
    return WEIR_CONTINUE;
}

static const weir_directive_t accesslog_directives[] = {
    {.key = "access_log",
     .scopes = WEIR_SCOPE_MAIN | WEIR_SCOPE_ROUTE,
     .type = WEIR_DIRECTIVE_CUSTOM,
     .offset = 0,
     .size = sizeof(al_conf_t),
     .parse = parse_access_log,
     .help = "{path, format, format_json, buffer, flush} or off"},
    {.key = NULL},
};

static const weir_handler_t accesslog_handlers[] = {
    {.name = "accesslog.log", .phase = WEIR_PHASE_LOG, .priority = WEIR_PRIORITY_MIDDLE,
     .fn = accesslog_log},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "accesslog",
    .version = "1.0.0",
    .conf_size = {[WEIR_SCOPE_INDEX_MAIN] = sizeof(al_conf_t),
                  [WEIR_SCOPE_INDEX_ROUTE] = sizeof(al_conf_t)},
    .directives = accesslog_directives,
    .handlers = accesslog_handlers,
    .conf_done = accesslog_conf_done,
};
