/*
 * Variable registry and templates ("$remote_addr - $status"). The core
 * registers the built-in variables (conf_options.register_core_vars); modules
 * add theirs in conf_init. Templates compile to segments once at config time;
 * rendering walks the segments, calls getters and copies once.
 */
#ifndef WEIR_VARS_H
#define WEIR_VARS_H

#include "conf.h"

/* One registered variable. For a prefix family (WEIR_VAR_PREFIX) `name` is
 * the prefix, e.g. "http_". */
typedef struct var_def {
    const char *name; /* without '$', conf lifetime */
    size_t len;
    unsigned flags;
    weir_var_get_fn get;
} var_def_t;

/* A name the core reserves for a module (the tls module's $ssl_*): the
 * getter `unset` serves it until that module registers the name with
 * weir_var_register, which then replaces it, so a config that logs
 * $ssl_protocol loads with or without the module. 0 or -1. */
#define VAR_RESERVED 0x100u
int vars_reserve(weir_conf_t *cf, const char *name, weir_var_get_fn unset);

/* Creates an empty registry in cf->vars (conf arena) if there is none yet.
 * The caller registers the core variables next. 0 or -1 (out of memory). */
int vars_init(weir_conf_t *cf);

/* The variable that `name` (len bytes, without '$') refers to: the exact name,
 * else the longest prefix family the name starts with and extends. NULL if
 * none. The pointer is valid until the next registration. */
const var_def_t *vars_find(const weir_conf_t *cf, const char *name, size_t len);

/* The suffix a prefix family's getter receives for `name` (the whole name):
 * the rest after the prefix, lowercased; for the header families "http_",
 * "sent_http_" and "upstream_http_" also '_' -> '-' ($http_x_user reads
 * X-User, as in nginx). Writes len - v->len bytes to dst. */
void vars_suffix(const var_def_t *v, const char *name, size_t len, char *dst);

/* The registered exact name closest to `name` (len bytes), for "did you
 * mean"; NULL if none is close. */
const char *vars_suggest(const weir_conf_t *cf, const char *name, size_t len);

/* Evaluates one variable by name (without '$') for r; for tests and the
 * access log. 0 set, 1 unset, -1 unknown. */
int vars_get(weir_request_t *r, const weir_conf_t *cf, const char *name, weir_str_t *out);

/* weir_template_render with the knobs the access log needs: an unset variable
 * renders as `unset_text` (NULL: ""), and with escape_json the values of
 * variables (not the literal text) are escaped for a JSON string. Capture
 * references render as "". 0, or -1 when out of request memory. */
int template_render_ex(weir_request_t *r, const weir_template_t *t, const char *unset_text,
                       int escape_json, weir_str_t *out);

/* The text the template was compiled from (conf lifetime). */
const char *template_source(const weir_template_t *t);

#endif
