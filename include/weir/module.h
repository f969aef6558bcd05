/*
 * weir module API: the one header a module includes.
 *
 * A module is a shared object that exports exactly one symbol, the descriptor
 * `weir_module` (use WEIR_MODULE_EXPORT), built with
 *
 *     cc -shared -fPIC $(pkg-config --cflags weir-module) mymod.c -o mymod.so
 *
 * and enabled by listing its name under `modules:` in weir.yaml.
 *
 * Rules of the contract:
 *  - Everything the core owns is reached through opaque handles and accessor
 *    functions; the only structs a module fills in are the descriptor, its
 *    directive table, its handler table and its balancer table.
 *  - A module never touches the event loop directly. The core owns every I/O
 *    submission and offers timers and resume instead.
 *  - Config-time memory (weir_conf_alloc) lives as long as its configuration
 *    generation. Request memory (weir_request_alloc) lives until the request's
 *    log phase has run.
 *  - Workers are single-threaded processes; no API here is thread-safe and
 *    none needs to be.
 *
 * Versioning: WEIR_ABI_MAJOR changes when anything here changes incompatibly;
 * the loader refuses a module whose major differs. WEIR_ABI_MINOR grows when
 * functions or trailing descriptor fields are added; the loader refuses a
 * module built against a newer minor than the core (it may call functions the
 * core lacks). Changelog:
 *   1.0  first version.
 *   1.1  peer health shared by all workers (weir_peer_set_down,
 *        weir_peer_is_down, weir_peer_sockaddr); outbound connections on the
 *        worker's loop (weir_conn_*); append-only log files written through the
 *        loop and reopened on SIGUSR1 (weir_logfile_*); rendering flags for logs
 *        (weir_template_render_flags); weir_request_conf; weir_conf_cleanup;
 *        weir_conf_error accepts a NULL node (message without a position).
 *   1.2  reloads: weir_worker_draining; a shared zone keeping its name and
 *        size across a reload is the same memory (weir_shm_zone); active
 *        verdicts (weir_peer_set_down) may be set at conf_done and belong to
 *        their generation.
 *   1.3  connections: weir_connection_t, seen in the accept phase
 *        (weir_request_connection on the stub request) and from every request;
 *        its id, listener, addresses (weir_connection_set_addresses), context
 *        and cleanup; transports (weir_transport_t,
 *        weir_connection_set_transport); listener iteration
 *        (weir_conf_listener_count, weir_conf_listener, weir_listener_name,
 *        weir_listener_node); the upstream_connect hook (a trailing descriptor
 *        field) with weir_connection_write for a preamble and
 *        weir_request_set_pool_key; weir_shm_zone_created.
 *   1.4  TLS: weir_connection_set_secure / is_secure ($scheme), the ALPN
 *        result (weir_connection_set_protocol, weir_protocol_supported),
 *        weir_connection_set_handshake_timeout; the reserved $ssl_* variable
 *        names a module fills in; a second transport waits for the first to
 *        detach; a transport's write() may take 0 bytes
 *        when full, and the core offers a send's pieces back to back before
 *        output() (records gather small pieces).
 *   1.5  HTTP/2: weir_upstream_protocol (a TLS module offers "h2" to a
 *        `protocol: h2` upstream); weir_protocol_supported knows "h2", so
 *        a listener's ALPN offers it; HTTP/2 streams are requests with
 *        weir_request_version() 20.
 *   1.6  weir_route_set_answered: a module that answers a route itself
 *        (a redirect) says so at conf_done; a route with neither an
 *        upstream nor such a module is a config error.
 *        conf_done runs on a config with errors elsewhere, so one `weir -t`
 *        reports every mistake (see conf_done below); a module built for an
 *        older minor keeps the old promise (conf_done only on an error-free
 *        config). weir_template_compile reports every mistake of a text, each
 *        at its own column where the scalar allows. Control characters in a
 *        weir_conf_error message are written as escapes ("\n").
 *        metrics: families and series registered at config time
 *        (weir_metric_new, weir_metric_series), updated lock-free from
 *        workers (weir_metric_add, weir_metric_gauge_add,
 *        weir_metric_observe), kept in a core zone that carries across
 *        reloads; exposition by the module that enables them
 *        (weir_metrics_enable, weir_metrics_render); request timing and
 *        size for a log handler (weir_request_elapsed_us,
 *        weir_response_body_bytes).
 *        weir_duration_text (durations in messages print as the config
 *        writes them: "30s").
 *   1.7  weir_conf_path: a path read from a node, made absolute against
 *        the config's directory, which `weir -T` prints in its place;
 *        weir_request_log and weir_connection_log: weir_log with the
 *        context of a request (client, request id, route, upstream,
 *        request line) or of a client connection (client), as the core's
 *        own lines about requests have it.
 */
#ifndef WEIR_MODULE_H
#define WEIR_MODULE_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEIR_ABI_MAJOR 1
#define WEIR_ABI_MINOR 7

/* Marks the descriptor as the one symbol a module exports. */
#define WEIR_MODULE_EXPORT __attribute__((visibility("default")))

#if defined(__GNUC__)
#define WEIR_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define WEIR_PRINTF(fmt, args)
#endif

/* ---------------------------------------------------------------- strings */

/* A byte string that is not NUL-terminated unless said otherwise. The bytes
 * are owned by whoever handed out the weir_str_t; the lifetime is given at
 * each function that returns one. */
typedef struct weir_str {
    const char *data;
    size_t len;
} weir_str_t;

#define WEIR_STR(lit) ((weir_str_t){.data = (lit), .len = sizeof(lit) - 1})

/* ---------------------------------------------------------------- handles */

typedef struct weir_conf weir_conf_t;         /* one configuration generation */
typedef struct weir_node weir_node_t;         /* a YAML node, with its position */
typedef struct weir_listener weir_listener_t; /* an entry of listeners: */
typedef struct weir_upstream weir_upstream_t; /* an entry of upstreams: */
typedef struct weir_route weir_route_t;       /* an entry of routes: */
typedef struct weir_request weir_request_t;   /* one HTTP request/response exchange */
typedef struct weir_headers weir_headers_t;   /* an ordered header list */
typedef struct weir_template weir_template_t; /* a compiled "$var text" template */
typedef struct weir_timer weir_timer_t;       /* a one-shot timer in a worker */
typedef struct weir_module weir_module_t;
typedef struct weir_connection weir_connection_t; /* a client or upstream connection (1.3) */

/* ------------------------------------------------------------ config nodes */

typedef enum weir_node_type {
    WEIR_NODE_SCALAR = 1,
    WEIR_NODE_SEQUENCE,
    WEIR_NODE_MAPPING,
    WEIR_NODE_NULL, /* "~", "null" or an empty value */
} weir_node_type_t;

/* Nodes belong to the configuration generation and stay valid until the
 * module's conf_done hook returns; copy what must outlive it. */
weir_node_type_t weir_node_type(const weir_node_t *n);
/* Scalar text, NUL-terminated; NULL for anything but a scalar. */
const char *weir_node_scalar(const weir_node_t *n);
/* Position for messages: file path, 1-based line and column. */
const char *weir_node_file(const weir_node_t *n);
unsigned weir_node_line(const weir_node_t *n);
unsigned weir_node_column(const weir_node_t *n);
/* Children of a sequence or mapping (0 for scalars). For a mapping, entry i
 * has key weir_node_key(n, i) (a scalar node) and value weir_node_child(n, i). */
size_t weir_node_count(const weir_node_t *n);
const weir_node_t *weir_node_child(const weir_node_t *n, size_t i);
const weir_node_t *weir_node_key(const weir_node_t *n, size_t i);
/* Value of a mapping's key, or NULL. */
const weir_node_t *weir_node_get(const weir_node_t *n, const char *key);

/* Typed readers: 0 on success, -1 after reporting a positioned config error
 * (so a caller just returns -1). Durations accept "250ms", "2s", "1m", "1h",
 * "1d" or a bare number of seconds, result in milliseconds. Sizes accept
 * "512", "16k", "1m", "1g", result in bytes. */
int weir_node_bool(weir_conf_t *cf, const weir_node_t *n, int *out);
int weir_node_int(weir_conf_t *cf, const weir_node_t *n, long min, long max, long *out);
int weir_node_duration_ms(weir_conf_t *cf, const weir_node_t *n, uint64_t *out);
int weir_node_size(weir_conf_t *cf, const weir_node_t *n, uint64_t *out);

/* Reports a config error at the node's position ("file:line:col: msg"), or
 * naming only the config file when node is NULL (1.1). Errors accumulate;
 * loading fails after every stage ran (conf_done included, 1.6), so one run
 * shows them all, printed sorted by position. (1.6) A message is one line:
 * control characters in it (a quoted block scalar's newline) are written as
 * escapes, "\n", "\t", "\r", "\xHH". Always returns -1. */
int weir_conf_error(weir_conf_t *cf, const weir_node_t *n, const char *fmt, ...)
    WEIR_PRINTF(3, 4);

/* Allocation that lives as long as the configuration generation. Zeroed.
 * NULL only when memory is exhausted. */
void *weir_conf_alloc(weir_conf_t *cf, size_t size);
char *weir_conf_strdup(weir_conf_t *cf, const char *s);
/* Directory of the main config file, for resolving relative paths. */
const char *weir_conf_dir(const weir_conf_t *cf);
/* (1.7) The scalar n read as a file path: its text when absolute, else
 * joined to weir_conf_dir; conf lifetime. NULL after weir_conf_error when n
 * is not a non-empty string. Read every path of a module's keys through
 * here: `weir -T` then prints the node as this absolute path, so its output
 * names the same file from any directory (it cannot tell a path from other
 * text by itself). */
const char *weir_conf_path(weir_conf_t *cf, const weir_node_t *n);
/* (1.1) Runs fn(arg) when the generation is freed, in every process that
 * holds it (master and workers), latest registered first: the place to free
 * what a library allocated for the config (compiled regexes, SSL_CTX). */
int weir_conf_cleanup(weir_conf_t *cf, void (*fn)(void *arg), void *arg);

/* -------------------------------------------------------------- directives */

typedef enum weir_scope {
    WEIR_SCOPE_MAIN = 1 << 0,     /* top level of weir.yaml */
    WEIR_SCOPE_LISTENER = 1 << 1, /* an entry of listeners: */
    WEIR_SCOPE_UPSTREAM = 1 << 2, /* an entry of upstreams: */
    WEIR_SCOPE_ROUTE = 1 << 3,    /* an entry of routes: */
} weir_scope_t;

#define WEIR_SCOPE_INDEX_MAIN 0
#define WEIR_SCOPE_INDEX_LISTENER 1
#define WEIR_SCOPE_INDEX_UPSTREAM 2
#define WEIR_SCOPE_INDEX_ROUTE 3
#define WEIR_SCOPE_COUNT 4

typedef enum weir_directive_type {
    WEIR_DIRECTIVE_BOOL = 1, /* int */
    WEIR_DIRECTIVE_INT,      /* long, range min..max */
    WEIR_DIRECTIVE_SIZE,     /* uint64_t bytes */
    WEIR_DIRECTIVE_DURATION, /* uint64_t milliseconds */
    WEIR_DIRECTIVE_STRING,   /* const char *, NUL-terminated, conf lifetime */
    WEIR_DIRECTIVE_TEMPLATE, /* weir_template_t *, variables resolved at load */
    WEIR_DIRECTIVE_CUSTOM,   /* parse() decides; size bytes at offset */
} weir_directive_type_t;

/* Parser for WEIR_DIRECTIVE_CUSTOM: read node into field (which points at
 * offset inside the scope's conf struct). Return 0, or -1 after
 * weir_conf_error. */
typedef int (*weir_directive_parse_fn)(weir_conf_t *cf, const weir_node_t *node,
                                       void *field);

/* One YAML key a module owns. The core finds the key in every scope listed in
 * `scopes`, rejects it elsewhere, and stores the parsed value at `offset` in
 * the module's conf struct for that scope instance (conf_size[] in the
 * descriptor). A key allowed in both WEIR_SCOPE_MAIN and WEIR_SCOPE_ROUTE is
 * inherited: a route that does not set it gets the top-level value, so the
 * main and route conf structs must place the field at the same offset (using
 * one struct type for both is simplest). `default_value` is parsed like YAML
 * text when the key is absent (NULL: field stays zeroed). */
typedef struct weir_directive {
    const char *key;
    unsigned scopes; /* bitwise OR of weir_scope_t */
    weir_directive_type_t type;
    size_t offset;
    size_t size; /* CUSTOM only: bytes to copy when inheriting */
    long min, max; /* INT only */
    const char *default_value;
    weir_directive_parse_fn parse; /* CUSTOM only */
    const char *help;              /* one line, shown in error messages */
} weir_directive_t;

/* Conf struct of the module `m` for a scope instance. Modules pass their own
 * descriptor (&weir_module). NULL if the module has no conf for that scope. */
void *weir_main_conf(const weir_conf_t *cf, const weir_module_t *m);
void *weir_listener_conf(const weir_listener_t *l, const weir_module_t *m);
void *weir_upstream_conf(const weir_upstream_t *u, const weir_module_t *m);
void *weir_route_conf(const weir_route_t *rt, const weir_module_t *m);

/* Walk the configuration (valid in conf_done and at run time). */
size_t weir_conf_route_count(const weir_conf_t *cf);
weir_route_t *weir_conf_route(const weir_conf_t *cf, size_t i);
size_t weir_conf_upstream_count(const weir_conf_t *cf);
weir_upstream_t *weir_conf_upstream(const weir_conf_t *cf, size_t i);
/* The YAML node of the route / upstream entry, for a module that reads keys of
 * its own in conf_done. Only valid until conf_done returns. */
const weir_node_t *weir_route_node(const weir_route_t *rt);
const weir_node_t *weir_upstream_node(const weir_upstream_t *u);

/* (1.3) Listeners, in config order, e.g. to read listener-scope config at
 * conf_done; the node is only valid until conf_done returns. */
size_t weir_conf_listener_count(const weir_conf_t *cf);
weir_listener_t *weir_conf_listener(const weir_conf_t *cf, size_t i);
const char *weir_listener_name(const weir_listener_t *l); /* the name, or its address */
const weir_node_t *weir_listener_node(const weir_listener_t *l);

/* "route<N>" unless named; conf lifetime, NUL-terminated. */
const char *weir_route_name(const weir_route_t *rt);
size_t weir_route_index(const weir_route_t *rt);
/* The upstream that serves this route, or NULL (the route only answers from
 * a module, e.g. a redirect). */
weir_upstream_t *weir_route_upstream(const weir_route_t *rt);
/* (1.6) Says that this module answers requests of the route itself (with
 * weir_respond), so the route needs no upstream. Call it from conf_done for
 * each such route. After every module's conf_done, a route that has no
 * upstream and was not marked is a config error at its node: requests to it
 * could only end in a 404. Marking a route that has an upstream is
 * harmless. */
void weir_route_set_answered(weir_route_t *rt);
const char *weir_upstream_name(const weir_upstream_t *u);
/* What the upstream's servers speak, as an ALPN name: "http/1.1", or "h2"
 * for `protocol: h2` (1.5). */
const char *weir_upstream_protocol(const weir_upstream_t *u);

/* ----------------------------------------------------------------- phases */

typedef enum weir_phase {
    WEIR_PHASE_ACCEPT = 0,        /* new client connection; r is a stub without a request */
    WEIR_PHASE_REQUEST,           /* request head parsed, before routing */
    WEIR_PHASE_ROUTE,             /* pick the route (module router) */
    WEIR_PHASE_REWRITE,           /* change the path, or redirect */
    WEIR_PHASE_ACCESS,            /* allow, deny, limit */
    WEIR_PHASE_BALANCE,           /* the core picks the peer here (middle band) */
    WEIR_PHASE_UPSTREAM_REQUEST,  /* adjust the request sent upstream */
    WEIR_PHASE_UPSTREAM_RESPONSE, /* adjust response headers before they go down */
    WEIR_PHASE_RESPONSE_BODY,     /* reserved for streaming body filters (ABI 1.1) */
    WEIR_PHASE_LOG,               /* the response is done; results are ignored */
    WEIR_PHASE_ERROR,             /* build an error response; may set headers/body */
    WEIR_PHASE_COUNT
} weir_phase_t;

/* What a handler returns. */
typedef enum weir_result {
    WEIR_CONTINUE = 0, /* run the next handler of this phase */
    WEIR_DONE,         /* this phase is done: skip to the next phase */
    WEIR_RESPOND,      /* weir_respond() was called: answer now, skip the rest */
    WEIR_ERROR,        /* fail the request with 500 (after logging why) */
    WEIR_SUSPEND,      /* the handler will call weir_request_resume() later */
} weir_result_t;

typedef weir_result_t (*weir_handler_fn)(weir_request_t *r);

/* Priority bands; any int works, lower runs first. */
#define WEIR_PRIORITY_FIRST 100
#define WEIR_PRIORITY_EARLY 300
#define WEIR_PRIORITY_MIDDLE 500
#define WEIR_PRIORITY_LATE 700
#define WEIR_PRIORITY_LAST 900

/* Handlers of a phase run sorted by priority, then by the before/after lists
 * (names of other handlers, "module.handler"; a name that is not loaded is
 * ignored), then by the order of `modules:`. A cycle is a config error that
 * names it. `weir -t -v` prints the resolved chains. */
typedef struct weir_handler {
    const char *name; /* "module.handler", unique */
    weir_phase_t phase;
    int priority;
    const char *const *before; /* NULL-terminated, or NULL */
    const char *const *after;  /* NULL-terminated, or NULL */
    weir_handler_fn fn;
} weir_handler_t;

/* Called by a suspended handler (from a timer or other completion) to let the
 * request go on as if the handler had returned `result` (never WEIR_SUSPEND).
 * Must be called exactly once per WEIR_SUSPEND. */
void weir_request_resume(weir_request_t *r, weir_result_t result);

/* -------------------------------------------------------------- balancers */

/* A load-balancing algorithm; an upstream names one with `balancer:`. */
typedef struct weir_balancer {
    const char *name; /* the value of `balancer:`, e.g. "roundrobin" */
    /* Config time, once per upstream that uses it. Return state for pick(),
     * or NULL after weir_conf_error. The state is copied into each worker by
     * fork, so a balancer may keep per-worker mutable state in it. */
    void *(*init)(weir_conf_t *cf, weir_upstream_t *u);
    /* Pick a peer index among those weir_peer_usable() accepts, or -1 when
     * none is (the core answers 503). */
    int (*pick)(weir_request_t *r, weir_upstream_t *u, void *state);
} weir_balancer_t;

size_t weir_upstream_peer_count(const weir_upstream_t *u);
/* The address as written in the config ("127.0.0.1:9001"). */
const char *weir_peer_address(const weir_upstream_t *u, size_t i);
unsigned weir_peer_weight(const weir_upstream_t *u, size_t i);
int weir_peer_is_backup(const weir_upstream_t *u, size_t i);
/* True if peer i is up (not marked down by passive failures or health checks)
 * and was not already tried by this request. Backups are usable too: a
 * balancer picks them only when no primary is usable. */
int weir_peer_usable(weir_request_t *r, const weir_upstream_t *u, size_t i);

/* (1.1) Peer health lives in shared memory, one state per peer for all
 * workers of the generation. A peer is down while an active check marked it
 * down (weir_peer_set_down) or while passive failures (max_fails within
 * fail_timeout) keep it down; either source is enough. (1.2) Active verdicts
 * belong to the generation and start "up" in a new one; a checker sets them
 * in conf_done from its carried state, so the new workers start with them.
 * Passive state is carried across a reload that keeps the same servers. */
void weir_peer_set_down(const weir_upstream_t *u, size_t i, int down);
int weir_peer_is_down(const weir_upstream_t *u, size_t i);
/* The peer's resolved address, for outbound connections. */
const struct sockaddr *weir_peer_sockaddr(const weir_upstream_t *u, size_t i, socklen_t *len);

/* ---------------------------------------------------------------- headers */

/* Names compare case-insensitively; order is kept. Removing a header does not
 * move the others. Values set here are copied into the request arena. */
size_t weir_headers_count(const weir_headers_t *h);
/* Header i, or 0 if i is past the end or the slot was removed. */
int weir_headers_at(const weir_headers_t *h, size_t i, weir_str_t *name, weir_str_t *value);
/* First value of `name`, or 0. */
int weir_headers_get(const weir_headers_t *h, weir_str_t name, weir_str_t *value);
int weir_headers_add(weir_request_t *r, weir_headers_t *h, weir_str_t name, weir_str_t value);
/* Replaces every `name` header by one with `value`. */
int weir_headers_set(weir_request_t *r, weir_headers_t *h, weir_str_t name, weir_str_t value);
/* Removes every `name` header; returns how many were removed. */
size_t weir_headers_remove(weir_headers_t *h, weir_str_t name);

/* ---------------------------------------------------------------- request */

/* Every weir_str_t below stays valid until the request's log phase ends. */
weir_str_t weir_request_method(const weir_request_t *r);
weir_str_t weir_request_target(const weir_request_t *r); /* as received */
weir_str_t weir_request_path(const weir_request_t *r);   /* no query; maybe rewritten */
weir_str_t weir_request_query(const weir_request_t *r);  /* after '?', may be empty */
weir_str_t weir_request_host(const weir_request_t *r);   /* lowercased, no port */
int weir_request_version(const weir_request_t *r);       /* 10, 11 or 20 */
weir_headers_t *weir_request_headers(weir_request_t *r);
weir_headers_t *weir_response_headers(weir_request_t *r);
const struct sockaddr *weir_request_client_addr(const weir_request_t *r);
const struct sockaddr *weir_request_server_addr(const weir_request_t *r);

/* Change the path (and query) sent upstream; copied into the arena. An empty
 * query removes it: no '?' is sent (1.1). */
int weir_request_set_path(weir_request_t *r, weir_str_t path);
int weir_request_set_query(weir_request_t *r, weir_str_t query);

weir_route_t *weir_request_route(const weir_request_t *r);
void weir_request_set_route(weir_request_t *r, weir_route_t *rt);
weir_upstream_t *weir_request_upstream(const weir_request_t *r);
/* Index of the chosen peer in its upstream, or -1 before the balance phase. */
int weir_request_peer(const weir_request_t *r);

/* (1.1) The configuration generation the request runs under. */
const weir_conf_t *weir_request_conf(const weir_request_t *r);

/* Response status: 0 before a response exists. */
int weir_response_status(const weir_request_t *r);

/* Prepare an answer from weir itself; return WEIR_RESPOND afterwards. body
 * may be empty for the core's small default page; it is copied. Headers for
 * the answer go to weir_response_headers(r) (e.g. Location). */
int weir_respond(weir_request_t *r, int status, weir_str_t body);

/* Per-request arena: zeroed memory freed after the log phase. NULL when the
 * request's memory cap is reached: fail the request with WEIR_ERROR. */
void *weir_request_alloc(weir_request_t *r, size_t size);
/* Runs fn(arg) when the request's memory is released. */
int weir_request_cleanup(weir_request_t *r, void (*fn)(void *arg), void *arg);
/* One pointer per module per request; NULL until set. */
void *weir_request_ctx(const weir_request_t *r, const weir_module_t *m);
void weir_request_set_ctx(weir_request_t *r, const weir_module_t *m, void *ctx);

/* ------------------------------------------------------ connections (1.3) */

/* The client connection a request (or the accept phase's stub request)
 * arrived on. It outlives every request on it. */
weir_connection_t *weir_request_connection(const weir_request_t *r);
/* 1, 2, ... per worker, as $connection. */
uint64_t weir_connection_id(const weir_connection_t *c);
/* The listener of a client connection; NULL for an upstream connection. */
const weir_listener_t *weir_connection_listener(const weir_connection_t *c);
/* The client's and the server's address as requests will see them ($remote_addr,
 * $server_addr): the socket's, unless a module set others. */
const struct sockaddr *weir_connection_client_addr(weir_connection_t *c);
const struct sockaddr *weir_connection_server_addr(weir_connection_t *c);
/* Replaces the addresses (a PROXY header, a trusted forwarder); either may be
 * NULL to keep the socket's. AF_INET and AF_INET6 only: 0, or -1. */
int weir_connection_set_addresses(weir_connection_t *c, const struct sockaddr *client,
                                  const struct sockaddr *server);
/* One pointer per module per connection; NULL until set. The cleanup runs
 * when the connection is freed (latest first). 0, or -1 out of memory. */
void *weir_connection_ctx(const weir_connection_t *c, const weir_module_t *m);
int weir_connection_set_ctx(weir_connection_t *c, const weir_module_t *m, void *ctx);
int weir_connection_cleanup(weir_connection_t *c, void (*fn)(void *arg), void *arg);

/*
 * A transport stands between the socket and the protocol: TLS, a PROXY
 * header reader. It never does I/O. The core receives into its own buffers
 * and hands the bytes to input(), takes plaintext from read(), gives the
 * protocol's bytes to write() and sends what output() yields, all through
 * the worker's ring; it calls output() after every other call, so bytes the
 * transport makes on its own (handshake records, alerts) go out in order
 * with the protocol's. State is the transport's own; free() ends it.
 *
 * On a client connection a transport is attached in the accept phase; its
 * handshake runs before the protocol reads a byte, limited by
 * client_header_timeout or weir_connection_set_handshake_timeout (1.4). On an upstream connection it is attached in the
 * upstream_connect hook and its handshake runs before the request is sent,
 * limited by connect_timeout.
 */
#define WEIR_TRANSPORT_DONE 0    /* handshake: finished */
#define WEIR_TRANSPORT_DETACH 1  /* handshake: finished, and the transport steps aside */
#define WEIR_TRANSPORT_AGAIN (-1) /* needs more input */
#define WEIR_TRANSPORT_EOF (-2)   /* read: the peer ended the stream cleanly */
#define WEIR_TRANSPORT_ERROR (-3) /* fatal: the connection is closed */

typedef struct weir_transport {
    const char *name;
    /* Takes every received byte (buffering what it cannot use yet): 0 or
     * WEIR_TRANSPORT_ERROR. */
    int (*input)(void *state, const char *data, size_t len);
    /* Advances the handshake on what input() gave. DETACH: done, and from
     * here bytes would pass unchanged, so the core takes what read() still
     * holds, frees the transport and goes on without one. NULL: none. */
    int (*handshake)(weir_connection_t *c, void *state);
    /* Plaintext for the protocol: bytes written to buf (> 0), or AGAIN,
     * EOF, ERROR. */
    long (*read)(void *state, char *buf, size_t cap);
    /* Plaintext from the protocol: bytes taken (maybe fewer than len, 0
     * only when the transport is full), or ERROR. The core offers the
     * pieces of a send back to back and calls output() when the transport
     * took less than offered and when the pieces are all taken (1.4: before,
     * after each piece), so a transport may gather small pieces into one
     * record; bytes it holds must come out of output(). */
    long (*write)(void *state, const char *data, size_t len);
    /* Copies up to cap wire bytes waiting to be sent into buf; returns how
     * many (0: none). */
    size_t (*output)(void *state, char *buf, size_t cap);
    /* Begins a clean close (a close_notify) whose bytes come from output().
     * May be NULL. */
    void (*shutdown)(void *state);
    /* Frees state, once: when the connection is freed or the transport
     * detached. May be NULL. */
    void (*free)(void *state);
} weir_transport_t;

/* Attaches a transport (in the accept phase, or in upstream_connect): 0, or
 * -1. (1.4) A second one waits for the first to step aside (DETACH), then
 * takes the bytes it left and runs its own handshake: a PROXY header
 * reader, then TLS. A third, or a second behind one without a handshake,
 * is refused. */
int weir_connection_set_transport(weir_connection_t *c, const weir_transport_t *t, void *state);
/* (1.4) What a transport learnt, for the core. A secure connection (TLS)
 * gives its requests $scheme "https". */
void weir_connection_set_secure(weir_connection_t *c);
int weir_connection_is_secure(const weir_connection_t *c);
/* The application protocol the handshake chose (ALPN), "http/1.1" or, once
 * the core speaks HTTP/2, "h2": the core serves the connection with it.
 * 0, or -1 for a protocol the core does not speak. */
int weir_connection_set_protocol(weir_connection_t *c, weir_str_t alpn);
/* Whether the core speaks an ALPN protocol, for config checks and
 * defaults. */
int weir_protocol_supported(weir_str_t alpn);
/* The limit of a client connection's transport handshake, set in the
 * accept phase (default client_header_timeout); 0 keeps the default. */
void weir_connection_set_handshake_timeout(weir_connection_t *c, uint64_t ms);

/* Bytes to send first on a new upstream connection, before the request and
 * before any transport sees a byte (a PROXY header); copied. Only in
 * upstream_connect. 0, or -1. */
int weir_connection_write(weir_connection_t *c, const void *data, size_t len);
/* The pool key of the upstream connection this request will use: pooled
 * connections are reused only by requests with the same key (and upstream
 * and peer). Set it in the upstream_request phase when upstream_connect
 * makes connections that differ by request (client addresses in a PROXY
 * header, TLS settings). Copied; empty (the default) is a key too. */
int weir_request_set_pool_key(weir_request_t *r, weir_str_t key);

/* -------------------------------------------------------------- variables */

/* A variable getter writes the value into *out (pointing into request memory,
 * the arena, or static storage) and returns 0, or returns 1 when the value is
 * unset (rendered as "-" in logs, "" elsewhere). For a prefix variable
 * (registered as "http_" with WEIR_VAR_PREFIX) `suffix` is the rest of the
 * name, lowercased, else empty. */
typedef int (*weir_var_get_fn)(weir_request_t *r, weir_str_t suffix, weir_str_t *out);

#define WEIR_VAR_PREFIX 1u

/* Register a variable at config time (in the module's conf_init hook, before
 * any template is compiled). 0, or -1 if the name is taken. (1.4) The core
 * reserves the $ssl_* names of the tls module (ssl_protocol, ssl_cipher,
 * ssl_server_name, ssl_session_reused, ssl_alpn_protocol, ssl_client_verify,
 * ssl_client_s_dn, ssl_client_i_dn, ssl_client_fingerprint,
 * ssl_client_serial): unset until a module registers one, which then
 * replaces the core's, once. */
int weir_var_register(weir_conf_t *cf, const char *name, unsigned flags, weir_var_get_fn get);

/* Compile text with "$name" and "${name}" references; unknown variables are a
 * config error at the node. (1.6) Every mistake of the text is reported,
 * each at its own column when text is the node's scalar (or a piece of it)
 * written on one line as it reads, else at the node. "$$" is a literal '$'. For rewrite, "$1".."$9"
 * refer to capture groups (see weir_template_render_captures). */
weir_template_t *weir_template_compile(weir_conf_t *cf, const weir_node_t *node, const char *text);
/* Render into the request arena. 0, or -1 when out of memory. */
int weir_template_render(weir_request_t *r, const weir_template_t *t, weir_str_t *out);
/* As render, with $1..$9 taken from subject[ovector[2i]..ovector[2i+1]] (PCRE2
 * style offsets; ncap pairs, unset groups are SIZE_MAX). */
int weir_template_render_captures(weir_request_t *r, const weir_template_t *t, weir_str_t subject,
                                  const size_t *ovector, size_t ncap, weir_str_t *out);
/* True if the template is plain text without variables. */
int weir_template_is_literal(const weir_template_t *t);

/* (1.1) Rendering for log lines. WEIR_RENDER_LOG: an unset variable renders
 * as "-" (as nginx logs it). WEIR_RENDER_JSON: the values of variables (not
 * the template's own text) are escaped for the inside of a JSON string, and
 * unset ones render as "". Capture references render as "". */
#define WEIR_RENDER_LOG 1u
#define WEIR_RENDER_JSON 2u
int weir_template_render_flags(weir_request_t *r, const weir_template_t *t, unsigned flags,
                               weir_str_t *out);

/* ------------------------------------------------------------------ timers */

/* Worker-side one-shot timers on the worker's event loop. Create in
 * worker_init (or later), start and stop freely; the callback runs on the
 * loop. A timer belongs to the worker and is freed by weir_timer_free. */
weir_timer_t *weir_timer_new(void (*fn)(void *arg), void *arg);
void weir_timer_start(weir_timer_t *t, uint64_t delay_ms);
void weir_timer_stop(weir_timer_t *t);
void weir_timer_free(weir_timer_t *t);
/* Cached wall-clock and monotonic time of this loop turn, in ms. */
uint64_t weir_now_ms(void);
uint64_t weir_monotonic_ms(void);

/* ------------------------------------------------- outbound connections (1.1) */

/* A TCP or unix stream connection a module opens from a worker (health checks,
 * auth calls), driven by the worker's loop. One operation at a time per
 * connection. Each completion calls fn(c, res, arg) once: res >= 0 on success
 * (0 for connect; bytes for send, which sends everything; bytes for recv,
 * 0 at end of stream), or -errno (-ETIMEDOUT when timeout_ms, 0 = none,
 * passed first). */
typedef struct weir_conn weir_conn_t;
typedef void (*weir_conn_fn)(weir_conn_t *c, long res, void *arg);

/* Starts a connect; NULL (with errno set) if no socket could be made. */
weir_conn_t *weir_conn_connect(const struct sockaddr *sa, socklen_t len, uint64_t timeout_ms,
                               weir_conn_fn fn, void *arg);
/* 0, or -1 if an operation is already pending (or memory ran out). `data`
 * must stay valid until the callback or weir_conn_close; a receive writes
 * into `buf` only just before its callback, never after a close. */
int weir_conn_send(weir_conn_t *c, const void *data, size_t len, uint64_t timeout_ms,
                   weir_conn_fn fn, void *arg);
int weir_conn_recv(weir_conn_t *c, void *buf, size_t len, uint64_t timeout_ms, weir_conn_fn fn,
                   void *arg);
/* Closes the connection; a pending operation is cancelled and its callback is
 * not called. Allowed from inside a callback. */
void weir_conn_close(weir_conn_t *c);

/* ---------------------------------------------------- log files (1.1) */

/* An append-only file for log records. Opened by the master at config time
 * (so a bad path is a config error at `node`) and shared by every user of the
 * same path in the generation; "stdout" and "stderr" name those streams; a
 * relative path is relative to the config file's directory. Each worker
 * appends whole records into a buffer of `buffer` bytes that is written
 * through the loop (never blocking it) when full or `flush_ms` after its
 * first record; each write(2) holds whole records, and the file is opened
 * O_APPEND, so workers never interleave inside a line. SIGUSR1 (weir -s
 * reopen) reopens the file by name, for log rotation. If writes fall behind
 * by more than 8 buffers (a stalled disk), records are dropped and counted
 * in the error log rather than blocking or growing without bound. */
typedef struct weir_logfile weir_logfile_t;
weir_logfile_t *weir_logfile_open(weir_conf_t *cf, const weir_node_t *node, const char *path,
                                  size_t buffer, uint64_t flush_ms);
/* Appends one record (include its newline). 0, or -1 if it was dropped. */
int weir_logfile_write(weir_logfile_t *f, const void *data, size_t len);

/* ----------------------------------------------------------- shared memory */

/* A zone of `size` bytes shared by every worker of the generation, zeroed at
 * creation. Reserve at config time (conf_done); the pointer is valid in all
 * workers. Concurrent writers must use atomics. NULL after weir_conf_error.
 * (1.2) On a reload, a zone requested with the name and size of one the
 * running generation holds is that same memory, contents kept, shared with
 * the old workers while they drain: state (counters, health) carries on.
 * So conf_done must not reset a zone it gets, and a zone indexed by config
 * positions should have the layout in its name (a fingerprint), so a changed
 * layout starts fresh. A failed reload must not have changed anything
 * either: write to a zone only from workers. */
void *weir_shm_zone(weir_conf_t *cf, const char *name, size_t size);
/* (1.3) Whether `zone` (from weir_shm_zone) was created by this
 * configuration load (1) or carried over from the running generation (0):
 * initialise a new zone once, at conf_done, and a carried one never. */
int weir_shm_zone_created(const weir_conf_t *cf, const void *zone);

/* True in exactly one worker of the generation: the process in which
 * background tasks (health checks, periodic flushes) run. */
int weir_worker_is_primary(void);
/* 0-based worker index and count. */
unsigned weir_worker_index(void);
unsigned weir_worker_count(void);
/* (1.2) True once this worker was told to stop (reload or graceful stop):
 * it accepts nothing more and finishes what it has. Background tasks stop
 * starting new work, since the next generation's primary took over. */
int weir_worker_draining(void);

/* ------------------------------------------------------------ metrics (1.6) */

/*
 * Counters, gauges and histograms, summed over every worker, exposed by the
 * module that enables them (module metrics, in the Prometheus text format).
 *
 * A family (a metric name with its label names) and its series (one value
 * per combination of label values) are registered at config time, in
 * conf_done: label values are known then (route, upstream, server and
 * listener names, status classes). Updates in workers are a few relaxed
 * atomic adds on shared memory, with no allocation, lock or system call, so
 * they may run per request.
 *
 * The values live in a zone of the core, in one table keyed by (family,
 * label values): a series of the next configuration with the same identity
 * is the same value, so counts go on across a reload even when routes are
 * added or removed. The exposition shows the series the configuration of the
 * answering worker registered, in registration order (the core's families,
 * then the modules' in the order of `modules:`). The table holds
 * `metrics_max_series` values (top-level key, default 4096; a histogram
 * series takes one per bucket plus one); loading a configuration that needs
 * more is a config error naming that key.
 *
 * Without a module that enables metrics, registration still succeeds and
 * updates do nothing, so a module may always register its families.
 */
typedef struct weir_metric weir_metric_t;

typedef enum weir_metric_kind {
    WEIR_METRIC_COUNTER = 1, /* only grows; the name must end in "_total" */
    WEIR_METRIC_GAUGE,       /* goes up and down */
    WEIR_METRIC_HISTOGRAM,   /* observations counted in fixed buckets */
} weir_metric_kind_t;

/* Registers a family: name [a-zA-Z_:][a-zA-Z0-9_:]*, a one-line help, label
 * names (NULL-terminated array, or NULL for none; [a-zA-Z_][a-zA-Z0-9_]*,
 * never "le"). For a histogram, `buckets` are the upper bounds in the
 * family's unit (seconds for durations), ascending, terminated by INFINITY
 * (the +Inf bucket every histogram has), or NULL for Prometheus' defaults
 * .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10; at most 30. NULL after
 * weir_conf_error (a bad or duplicate name). Conf lifetime. */
weir_metric_t *weir_metric_new(weir_conf_t *cf, const char *name, weir_metric_kind_t kind,
                               const char *help, const char *const *label_names,
                               const double *buckets);
/* The series of `m` with these label values (as many as the family has
 * label names; copied): its index, the same one again for the same values,
 * or -1 after weir_conf_error. */
int weir_metric_series(weir_conf_t *cf, weir_metric_t *m, const char *const *label_values);

/* Updates from any process of the generation (workers; hooks that run at
 * config time must not update). A NULL family or a negative series is
 * ignored, so a module can pass what registration gave it. */
void weir_metric_add(weir_metric_t *m, int series, uint64_t n);            /* counter */
void weir_metric_gauge_add(weir_metric_t *m, int series, int64_t delta);   /* gauge */
/* histogram: one observation, in millionths of the family's unit
 * (microseconds for a duration in seconds). */
void weir_metric_observe(weir_metric_t *m, int series, uint64_t micros);

/* Called by the module that exposes metrics, in conf_init: this
 * configuration stores its series (and the core registers its own
 * families). 0, or -1 after weir_conf_error. */
int weir_metrics_enable(weir_conf_t *cf);
/* Writes the exposition text of the configuration (text format 0.0.4) into
 * buf, at most cap bytes; returns the length of the whole text, which may
 * be more than cap (then call again with a larger buffer). Values keep
 * changing, so a second call may need a little more than the first said. */
size_t weir_metrics_render(const weir_conf_t *cf, char *buf, size_t cap);

/* The request's age, from the first byte of its head to now, in
 * microseconds (as $request_time), and the response body bytes sent so far
 * (as $body_bytes_sent): what a log handler measures. */
uint64_t weir_request_elapsed_us(const weir_request_t *r);
uint64_t weir_response_body_bytes(const weir_request_t *r);

/* ----------------------------------------------------------------- logging */

typedef enum weir_log_level {
    WEIR_LOG_DEBUG = 0,
    WEIR_LOG_INFO,
    WEIR_LOG_NOTICE,
    WEIR_LOG_WARN,
    WEIR_LOG_ERROR,
} weir_log_level_t;

/* Writes "time [level] pid module: message" to the error log when level is
 * at or above error_log.level. `m` may be NULL for the core. */
void weir_log(const weir_module_t *m, weir_log_level_t level, const char *fmt, ...)
    WEIR_PRINTF(3, 4);

/* (1.7) As weir_log, for a line about request r: the request's context
 * follows the message, as on the core's own lines about requests,
 *
 *   ..., client: 127.0.0.1:54321, request_id: <32 hex>, route: NAME,
 *   upstream: NAME (127.0.0.1:9001), request: "GET /path?q HTTP/1.1"
 *
 * with what is not known yet left out (no route before the route phase, no
 * upstream before balancing; the accept phase's stub request has the client
 * only). The request line is escaped and cut (README, "Error log"). Cheap
 * when the level is filtered out; never allocates. r may be NULL (then it is
 * weir_log). */
void weir_request_log(const weir_request_t *r, const weir_module_t *m, weir_log_level_t level,
                      const char *fmt, ...) WEIR_PRINTF(4, 5);
/* (1.6) The same for a line about a client connection outside any request
 * (a handshake that failed): ", client: ADDR" follows the message. For an
 * upstream connection nothing follows. */
void weir_connection_log(weir_connection_t *c, const weir_module_t *m, weir_log_level_t level,
                         const char *fmt, ...) WEIR_PRINTF(4, 5);

/* (1.6) A duration for a message, written as the config writes it, in the
 * largest unit that holds it exactly: "30s", "1m", "250ms", "0s" (never
 * "30000ms"). buf has WEIR_DURATION_LEN bytes; returns buf. */
#define WEIR_DURATION_LEN 24
const char *weir_duration_text(uint64_t ms, char buf[WEIR_DURATION_LEN]);

/* -------------------------------------------------------------- descriptor */

/* The descriptor; fields after `reserved` may be added in later minors, so
 * the core reads only up to struct_size. */
struct weir_module {
    /* frozen: */
    uint16_t abi_major; /* WEIR_ABI_MAJOR */
    uint16_t abi_minor; /* WEIR_ABI_MINOR */
    uint32_t struct_size; /* sizeof(weir_module_t) */
    const char *name;     /* must equal the file name without ".so" */
    const char *version;  /* the module's own version, for messages */

    /* Bytes of this module's conf struct per scope instance (index by
     * WEIR_SCOPE_INDEX_*), 0 for none. Zeroed, then defaults applied. */
    size_t conf_size[WEIR_SCOPE_COUNT];
    const weir_directive_t *directives; /* terminated by {.key = NULL} */
    const weir_handler_t *handlers;     /* terminated by {.name = NULL} */
    const weir_balancer_t *balancers;   /* terminated by {.name = NULL} */

    /* Lifecycle hooks, each optional; 0 on success, -1 after an error. */
    /* Before the config is read: register variables. */
    int (*conf_init)(weir_conf_t *cf);
    /* After every scope was read and defaults applied: compile, index,
     * cross-check. The conf is read-only from here on. (1.6) It runs even
     * when errors were found elsewhere (another module's keys, the core's
     * cross-checks), so it can report its own in the same run; the load
     * fails afterwards. It must then cope with a partial config, which is
     * well defined: a key whose value was refused is as if absent (its field
     * zeroed, then the default or the inherited value, so a custom parser
     * may leave half a value behind); a route's upstream may be NULL (an
     * unknown name, reported); an upstream may have no servers; a listener
     * may lack its address; peer health is not reserved (weir_peer_set_down
     * does nothing). It is not run when this module's conf_init failed. A
     * -1 without an error message is reported generically only on a config
     * that had no other errors. It must not report what is only a
     * consequence of an error elsewhere. */
    int (*conf_done)(weir_conf_t *cf);
    /* In each worker after fork, before accepting. */
    int (*worker_init)(const weir_conf_t *cf);
    /* In each worker before it exits. */
    void (*worker_exit)(const weir_conf_t *cf);
    /* When the generation is freed (master and workers). */
    void (*conf_free)(weir_conf_t *cf);

    void *reserved[8];

    /* (1.3) A new upstream connection for r is being made (before connect:
     * retries make another): attach a transport, write a preamble. 0, or -1
     * to fail this attempt (the request gets 502). */
    int (*upstream_connect)(weir_request_t *r, weir_connection_t *c);
};

/* In the module: WEIR_MODULE_EXPORT const weir_module_t weir_module = {...}; */
#define WEIR_MODULE_SYMBOL "weir_module"

#define WEIR_MODULE_HEADER                                                             \
    .abi_major = WEIR_ABI_MAJOR, .abi_minor = WEIR_ABI_MINOR,                           \
    .struct_size = sizeof(weir_module_t)

#ifdef __cplusplus
}
#endif
#endif /* WEIR_MODULE_H */
