/*
 * Configuration generation: everything read from weir.yaml, resolved and
 * checked, plus the loaded modules and their conf structs. Built once in the
 * master (conf_load), read-only afterwards, inherited by workers through fork.
 *
 * Ownership: every pointer below lives in cf->arena and dies with conf_free(),
 * except the module handles (dlclose'd by conf_free) and the listening fds
 * (owned by the master's listener set, see listen.h).
 */
#ifndef WEIR_CONF_H
#define WEIR_CONF_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "weir/module.h"

struct arena;
struct vars;
struct phases;

#define WEIR_DEFAULT_MODULES_DIR_FALLBACK "/usr/local/lib/weir/modules"

typedef struct limits {
    uint64_t client_header_timeout; /* ms */
    uint64_t client_body_timeout;   /* ms */
    uint64_t keepalive_timeout;     /* ms */
    uint64_t send_timeout;          /* ms; nginx's send_timeout, weir addition */
    uint64_t keepalive_requests;
    uint64_t max_header_size; /* bytes */
    uint64_t max_body_size;   /* bytes, 0 = unlimited */
    uint64_t max_connections; /* per worker */
    uint64_t shutdown_timeout; /* ms */
} limits_t;

/* A parsed socket address: "host:port", "[v6]:port", "unix:/path". */
typedef struct sockaddr_any {
    struct sockaddr_storage ss;
    socklen_t len;
} sockaddr_any_t;

/* A YAML node. Scalars keep their text; mappings keep keys and values in
 * document order. */
struct weir_node {
    weir_node_type_t type;
    const char *file;
    unsigned line, column;
    /* Scalars: where the scalar ends in the file (after a closing quote) and
     * how it was written, so a message can point inside it (conf_text_pos). */
    unsigned end_line, end_column;
    int style; /* CONF_STYLE_* */
    const char *scalar;        /* SCALAR (also set, empty, for NULL nodes) */
    size_t count;              /* SEQUENCE items or MAPPING entries */
    struct weir_node **items;  /* SEQUENCE items, MAPPING values */
    struct weir_node **keys;   /* MAPPING keys (scalar nodes) */
    const char *key;           /* mapping key this node is the value of (for a
                                * sequence item: the sequence's key), or NULL;
                                * names the directive in type errors */
    const char *path;          /* set by weir_conf_path: the scalar read as a
                                * path, absolute; what weir -T prints */
};

/* How a scalar was written; CONF_STYLE_OTHER for block scalars (| and >)
 * and nodes that were not read from a file. */
enum { CONF_STYLE_OTHER, CONF_STYLE_PLAIN, CONF_STYLE_QUOTED };

/* One loaded module. */
typedef struct module_slot {
    const weir_module_t *desc;
    void *handle; /* dlopen handle, NULL for modules linked in (tests) */
    const char *path;
    void *main_conf; /* conf_size[MAIN] bytes, or NULL */
    size_t index;    /* position in modules: */
    int init_failed; /* its conf_init hook failed: conf_done is not run */
} module_slot_t;

struct weir_listener {
    const char *name;
    const char *address; /* as written */
    sockaddr_any_t addr;
    int backlog;
    int http2; /* h2c prior knowledge */
    limits_t limits;
    void **mconf; /* per module index, conf_size[LISTENER] bytes or NULL */
    const weir_node_t *node;
    size_t index;
    weir_conf_t *conf; /* owning generation, for weir_listener_conf() */
};

struct peer_shared;
struct peer_verdict;

typedef struct peer {
    const char *address; /* as written */
    sockaddr_any_t addr;
    struct peer_shared *shared;   /* passive health, carried across reloads */
    struct peer_verdict *verdict; /* active checks' verdict, this generation's */
    unsigned weight; /* 1..1000 */
    int backup;
} peer_t;

/* What an upstream's servers speak. */
enum { UPSTREAM_HTTP1, UPSTREAM_H2 };

struct weir_upstream {
    const char *name;
    const char *balancer_name;
    const weir_balancer_t *balancer;
    void *balancer_state;
    size_t balancer_module; /* module index, for hook context */
    peer_t *peers;
    size_t npeers;
    uint64_t keepalive; /* idle connections per worker */
    uint64_t connect_timeout, read_timeout, write_timeout, idle_timeout; /* ms */
    uint64_t tunnel_timeout; /* ms: idle limit of a tunnel after 101 */
    int protocol; /* UPSTREAM_HTTP1 or UPSTREAM_H2 */
    long retries;
    long max_fails;
    uint64_t fail_timeout; /* ms */
    void **mconf;
    const weir_node_t *node;
    size_t index;
    weir_conf_t *conf; /* owning generation */
};

struct weir_route {
    const char *name;
    weir_upstream_t *upstream; /* NULL: no upstream (module answers) */
    int answered;              /* a module answers it (weir_route_set_answered) */
    void **mconf;
    const weir_node_t *node;
    size_t index;
    weir_conf_t *conf; /* owning generation */
};

typedef struct conf_error {
    struct conf_error *next;
    char *msg; /* "file:line:col: text" */
    const char *file;      /* position, to keep the list in document order */
    unsigned line, column; /* 0: no position ("file: text") */
} conf_error_t;

struct weir_conf {
    struct arena *arena;
    const char *file; /* path of the main config file as given */
    const char *dir;  /* its directory */

    /* accumulated errors, sorted by position (weir_conf_error) */
    conf_error_t *errors, **errors_tail;
    unsigned nerrors;

    /* top level, core-owned keys */
    unsigned workers;        /* resolved: auto = CPU count */
    int workers_auto;        /* it was auto (weir -T prints auto, not the count) */
    const char *pid_file;    /* absolute or relative to dir, resolved */
    const char *error_log;   /* "stderr" or a resolved path */
    int error_log_level;     /* weir_log_level_t */
    const char *modules_dir; /* resolved; -M overrides */
    const char *error_page;  /* template text read from file, or NULL */
    const char *error_page_path; /* the file it was read from, resolved */
    limits_t limits;
    /* user:, group: the workers' identity (privs.h); user NULL: unchanged */
    const char *user, *group;
    uid_t uid;
    gid_t gid;

    module_slot_t *modules;
    size_t nmodules;

    weir_listener_t *listeners;
    size_t nlisteners;
    weir_upstream_t *upstreams;
    size_t nupstreams;
    weir_route_t *routes;
    size_t nroutes;

    weir_node_t *root;
    struct vars *vars;
    struct phases *phases;
    struct shm_zone *shm_zones;
    /* The running generation while a reload loads this one (NULL otherwise,
     * and after conf_load returns): zones of the same name and size are
     * carried over from it (shm.c). */
    const weir_conf_t *previous;
    struct weir_logfile *logfiles; /* opened by weir_logfile_open */
    /* Metrics (metrics.c): the registry, created on first use; the core's
     * families when enabled (metrics_core.c); the table's size. */
    struct metrics_reg *metrics;
    struct core_metrics *core_metrics;
    uint64_t metrics_max_series;
    const weir_node_t *metrics_max_series_node;
};

/* Options from the command line that the loader needs. */
typedef struct conf_options {
    const char *file;
    const char *modules_dir; /* -M, or NULL */
    /* Supplied by the binary (NULL in tests that need neither): the core's
     * own phase handlers, e.g. "core.balance" (terminated by {.name = NULL}),
     * and the registration of the core variables, called right after the
     * registry is created and before modules' conf_init hooks. */
    const weir_handler_t *core_handlers;
    int (*register_core_vars)(weir_conf_t *cf);
    /* Read the YAML and pid_file only (weir -s): signalling a running master
     * must not depend on modules, log paths or anything else being loadable. */
    int pid_file_only;
    /* A reload: the generation now serving, whose shared zones a new one may
     * carry on (NULL at start-up). */
    const weir_conf_t *previous;
    /* -p: the pid file the master will write instead of pid_file (checked
     * by conf_start_checks), or NULL. */
    const char *pid_file;
    /* Where errors go, one message at a time ("file:line:col: text");
     * NULL prints them to stderr. The master's reload sends them to the
     * error log. */
    void (*report)(const char *msg);
} conf_options_t;

/* Loads and checks a whole configuration generation. Returns NULL when it has
 * errors; they are printed to stderr before returning: all of them, from
 * every stage, sorted by position as a compiler's (each file's by line and
 * column, files in the order their first error came, errors without a
 * position last; conf_node.c). */
weir_conf_t *conf_load(const conf_options_t *opt);
void conf_free(weir_conf_t *cf);

/* Start-up needs beyond the config (conf_start.c): the error log opens
 * (created if missing), the pid file's directory is writable. Config errors
 * at the keys' positions. */
void conf_start_checks(weir_conf_t *cf, const char *pid_override);

/* Hands each error accumulated in cf to report, in order; NULL prints them
 * to stderr, one per line. */
void conf_report_errors(const weir_conf_t *cf, void (*report)(const char *msg));

/* Parse "host:port", "[v6]:port", "unix:/path", "name:port" (name resolved
 * now, at config time, with getaddrinfo). 0 or -1 with a message in err. */
int conf_parse_address(const char *text, sockaddr_any_t *out, char *err, size_t errlen);
/* Value parsers shared with weir_node_*: 0 or -1. */
int conf_parse_duration_ms(const char *s, uint64_t *out);
int conf_parse_size(const char *s, uint64_t *out);
/* A size as the config writes it, in the largest unit that holds it exactly
 * ("16k", "1m", "512"); buf of WEIR_DURATION_LEN bytes; returns buf. The
 * duration counterpart is the public weir_duration_text. */
const char *conf_size_text(uint64_t bytes, char buf[WEIR_DURATION_LEN]);
/* Bytes a module directive's value takes in its conf struct. */
size_t conf_field_size(const weir_directive_t *d);
/* "debug" .. "error" for a weir_log_level_t. */
const char *conf_level_name(int level);
/* Closest candidate by edit distance, or NULL if none is close enough. */
const char *conf_suggest(const char *word, const char *const *candidates, size_t n);

/* YAML file to node tree (conf_yaml.c). Handles `include:` at top level.
 * Returns the root or NULL after conf errors were recorded in cf. */
weir_node_t *conf_yaml_read(weir_conf_t *cf, const char *path);

/* The file position of byte `offset` of `text`, a string compiled from the
 * scalar node n (its whole text, or a piece of it copied out): exact where
 * the scalar sits on one line and its characters stand in the file as they
 * are (a plain scalar, or a quoted one without escapes), else the scalar's
 * own position. */
void conf_text_pos(const weir_node_t *n, const char *text, size_t offset, unsigned *line,
                   unsigned *column);

/* "a list", "a mapping", "nothing" or "a scalar", for type errors. */
const char *conf_node_type_word(const weir_node_t *n);
/* The `modules:` key node (errors about module loading and handler order
 * point there), or the root when there is none. */
const weir_node_t *conf_modules_key(const weir_conf_t *cf);

/* A config path made absolute against the config file's directory. */
const char *conf_resolve_path(weir_conf_t *cf, const char *p);

/* Shared peer health (peers.c): one zone for every peer of the generation,
 * reserved at load time after the upstreams are read. 0, or -1 after a
 * config error. */
int peers_reserve(weir_conf_t *cf);

/* Module index of a descriptor in cf, or -1. */
int conf_module_index(const weir_conf_t *cf, const weir_module_t *m);

#endif
