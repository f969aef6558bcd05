/*
 * Header rules of module headers: reading `request_headers` /
 * `response_headers` from the config, and applying them to a header list.
 * Only include/weir/module.h is used, so the unit test drives this file with
 * the core's real config nodes, templates and header lists.
 *
 * A rule set is
 *
 *     {set: {Name: value, ...}, add: {Name: value or [values], ...},
 *      remove: [Name, ...], always: false}
 *
 * Names must be HTTP tokens (RFC 9110 §5.1). Hop-by-hop and framing names
 * (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
 * Upgrade, Content-Length, and their spellings with '_') belong to the core
 * and are refused (see header_name_check).
 * Values are templates; captures ($1..$9) do not exist here and literal
 * control characters are refused at load.
 *
 * Applying, per request: every value is rendered first, against the message
 * as it arrived (so "$http_x_foo" or "$proxy_add_x_forwarded_for" see the
 * incoming value even when a rule removes or replaces that header); then
 * every `remove`, then every `set`, then every `add`, each group in config
 * order. A rendered value is trimmed of surrounding blanks; an empty result
 * means "no header" (set removes the header, add adds nothing), as nginx's
 * proxy_set_header does. A rendered value holding CR, LF, NUL or another
 * control character (HTAB aside) is dropped: set still removes the old
 * header, so a client can never keep its own value by making ours invalid,
 * and the caller is told (to log it).
 */
#ifndef WEIR_HEADERS_HEADER_OPS_H
#define WEIR_HEADERS_HEADER_OPS_H

#include <stddef.h>

#include "weir/module.h"

/* Which message the rules are for: a few names differ (Host, `always`). */
enum header_side {
    HEADER_SIDE_REQUEST = 0,
    HEADER_SIDE_RESPONSE = 1,
};

/* Ops are kept sorted by kind, which is the order they are applied in. */
enum header_op_kind {
    HEADER_OP_REMOVE = 0,
    HEADER_OP_SET = 1,
    HEADER_OP_ADD = 2,
};

struct header_op {
    enum header_op_kind kind;
    weir_str_t name;              /* as written, NUL-terminated, conf lifetime */
    const weir_template_t *value; /* NULL for remove */
};

/* One parsed `request_headers` or `response_headers` value. All zero is an
 * empty rule set (nothing to do). */
struct header_rules {
    struct header_op *ops; /* conf arena: removes, then sets, then adds */
    size_t nops;
    int always; /* response rules only: also on answers weir makes itself */
};

/* 0 if `name` (len bytes) may be named by a rule on `side`; else -1 with a
 * one-line reason in why (NUL-terminated, truncated to whylen) that says
 * what to do instead. */
int header_name_check(enum header_side side, const char *name, size_t len, char *why,
                      size_t whylen);

/* 0 if the template text of a value is acceptable: no control characters
 * other than HTAB, no "$1".."$9" or "${1}" capture references. Else -1 with
 * a reason in why. */
int header_value_text_check(const char *text, char *why, size_t whylen);

/* A rendered value trimmed of leading and trailing SP/HTAB into *out (which
 * points into `in`). -1 if it holds CR, LF, NUL or another control character
 * (HTAB aside) or DEL, which no header value may carry. */
int header_value_clean(weir_str_t in, weir_str_t *out);

/* Reads a rule set from `node` (a mapping, or null for "no rules") into
 * *out, for the directive named `key` (used in messages). Every problem is
 * reported with weir_conf_error at its own node, and reading goes on so one
 * run shows them all. 0, or -1 after at least one error. */
int header_rules_parse(weir_conf_t *cf, const weir_node_t *node, const char *key,
                       enum header_side side, struct header_rules *out);

/* Told about each value dropped for holding forbidden bytes; op names the
 * rule. The value itself is not passed on: it may be attacker-controlled. */
typedef void (*header_drop_fn)(void *arg, const struct header_op *op);

/* Applies the rules to h with values[i] the rendered value of ops[i]
 * (ignored for removes), in the order described at the top. 0, or -1 when
 * the request's memory is exhausted (h may be partly changed). */
int header_rules_apply(weir_request_t *r, weir_headers_t *h, const struct header_rules *rules,
                       const weir_str_t *values, header_drop_fn drop, void *arg);

/* Renders every value for r, then applies the rules to h. 0, or -1 when the
 * request's memory is exhausted. */
int header_rules_run(weir_request_t *r, weir_headers_t *h, const struct header_rules *rules,
                     header_drop_fn drop, void *arg);

#endif
