/*
 * Header rules: config reading and application (semantics in header_ops.h).
 */
#include "header_ops.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ names */

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Names the core owns, and why, so the message can say it. */
static const struct reserved {
    const char *name;
    const char *why;
} reserved[] = {
    {"Connection", "a hop-by-hop header: weir removes it both ways and writes its own for each "
                   "connection (keepalive is managed per side)"},
    {"Keep-Alive", "a hop-by-hop header: weir removes it both ways and manages keepalive per "
                   "connection itself"},
    {"Proxy-Connection", "a hop-by-hop header: weir removes it both ways"},
    {"TE", "a hop-by-hop header: weir removes it both ways (it never forwards trailers)"},
    {"Trailer", "a hop-by-hop header: weir removes it both ways (it never forwards trailers)"},
    {"Upgrade", "a hop-by-hop header: protocol upgrades are negotiated per connection by the "
                "core"},
    {"Transfer-Encoding", "message framing: weir writes its own Content-Length or chunked framing "
                          "for each side from the body it actually sends"},
    {"Content-Length", "message framing: weir writes its own Content-Length or chunked framing "
                       "for each side from the body it actually sends"},
};

#define NRESERVED (sizeof(reserved) / sizeof(reserved[0]))

/* The reserved entry a name spells once '_' and '-' are ignored, for names
 * with a '_' ("Transfer_Encoding", "Connection_"): the core never forwards
 * such spellings, because some servers read '_' as '-' or trim it. */
static const struct reserved *underscore_spelling(const char *name, size_t len)
{
    char a[32], b[32];
    size_t na = 0;

    if (memchr(name, '_', len) == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '_' || name[i] == '-')
            continue;
        if (na == sizeof(a) - 1)
            return NULL;
        a[na++] = name[i];
    }
    a[na] = '\0';
    for (size_t k = 0; k < NRESERVED; k++) {
        size_t nb = 0;

        for (const char *p = reserved[k].name; *p != '\0'; p++)
            if (*p != '-')
                b[nb++] = *p;
        b[nb] = '\0';
        if (strcasecmp(a, b) == 0)
            return &reserved[k];
    }
    return NULL;
}

int header_name_check(enum header_side side, const char *name, size_t len, char *why,
                      size_t whylen)
{
    const struct reserved *rv;

    (void)side; /* both sides reserve the same names since Host became settable */
    if (len == 0) {
        snprintf(why, whylen, "empty header name");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (!is_tchar(c)) {
            if (c >= 0x20 && c < 0x7f)
                snprintf(why, whylen,
                         "'%.*s' is not a valid header name: '%c' at offset %zu is not a token "
                         "character (RFC 9110 section 5.1: letters, digits and !#$%%&'*+-.^_`|~)",
                         (int)len, name, c, i);
            else
                snprintf(why, whylen,
                         "'%.*s' is not a valid header name: byte 0x%02x at offset %zu is not a "
                         "token character (RFC 9110 section 5.1: letters, digits and "
                         "!#$%%&'*+-.^_`|~)",
                         (int)len, name, c, i);
            return -1;
        }
    }
    for (size_t k = 0; k < NRESERVED; k++) {
        if (strlen(reserved[k].name) == len && strncasecmp(reserved[k].name, name, len) == 0) {
            snprintf(why, whylen,
                     "'%.*s' is %s; header rules cannot set, add or remove it: delete this entry",
                     (int)len, name, reserved[k].why);
            return -1;
        }
    }
    rv = underscore_spelling(name, len);
    if (rv != NULL) {
        snprintf(why, whylen,
                 "'%.*s' spells %s with '_', which weir never forwards (some servers read '_' "
                 "as '-'); delete this entry",
                 (int)len, name, rv->name);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- values */

static int is_bad_value_byte(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

int header_value_text_check(const char *text, char *why, size_t whylen)
{
    size_t len = strlen(text);

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];

        if (is_bad_value_byte(c)) {
            snprintf(why, whylen,
                     "control character 0x%02x at offset %zu: a header value is one line of "
                     "visible text (CR, LF and other control characters are refused)",
                     c, i);
            return -1;
        }
    }
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '$')
            continue;
        if (text[i + 1] == '$') {
            i++; /* "$$" is a literal '$' */
            continue;
        }
        if ((text[i + 1] >= '0' && text[i + 1] <= '9') ||
            (text[i + 1] == '{' && i + 3 < len && text[i + 2] >= '0' && text[i + 2] <= '9' &&
             text[i + 3] == '}')) {
            snprintf(why, whylen,
                     "'$%c' at offset %zu refers to a regex capture, which header values do not "
                     "have; write '$$' for a literal '$'",
                     text[i + 1] == '{' ? text[i + 2] : text[i + 1], i);
            return -1;
        }
    }
    return 0;
}

int header_value_clean(weir_str_t in, weir_str_t *out)
{
    const char *s = in.data, *e = in.data + in.len;

    for (const char *p = s; p < e; p++)
        if (is_bad_value_byte((unsigned char)*p))
            return -1;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    out->data = s;
    out->len = (size_t)(e - s);
    return 0;
}

/* ---------------------------------------------------------------- parsing */

static const char *const kind_word[] = {"remove", "set", "add"};

struct parse {
    weir_conf_t *cf;
    const char *key;
    enum header_side side;
    struct header_op *ops;
    size_t n, cap;
    int rc;
};

/* The op's name from a scalar node, checked; NULL after an error. */
static const char *op_name(struct parse *p, const weir_node_t *n, enum header_op_kind kind)
{
    const char *name = weir_node_scalar(n);
    char why[512];
    char *copy;

    if (name == NULL || weir_node_type(n) != WEIR_NODE_SCALAR) {
        p->rc = weir_conf_error(p->cf, n, "%s.%s: expected a header name", p->key,
                                kind_word[kind]);
        return NULL;
    }
    if (header_name_check(p->side, name, strlen(name), why, sizeof(why)) < 0) {
        p->rc = weir_conf_error(p->cf, n, "%s.%s: %s", p->key, kind_word[kind], why);
        return NULL;
    }
    if (kind == HEADER_OP_ADD && p->side == HEADER_SIDE_REQUEST && strcasecmp(name, "Host") == 0) {
        p->rc = weir_conf_error(p->cf, n,
                                "%s.add: a request carries exactly one Host (a second one makes "
                                "servers answer 400); use set: to replace it",
                                p->key);
        return NULL;
    }
    /* a name twice under one key is a mistake (set would keep only one, and
     * remove twice means nothing); add may repeat: it makes more lines */
    if (kind != HEADER_OP_ADD) {
        for (size_t i = 0; i < p->n; i++) {
            if (p->ops[i].kind == kind && strcasecmp(p->ops[i].name.data, name) == 0) {
                p->rc = weir_conf_error(p->cf, n, "%s.%s: '%s' is listed twice (as '%s')", p->key,
                                        kind_word[kind], name, p->ops[i].name.data);
                return NULL;
            }
        }
    }
    copy = weir_conf_strdup(p->cf, name); /* nodes die after conf_done */
    if (copy == NULL)
        p->rc = weir_conf_error(p->cf, n, "%s: out of memory", p->key);
    return copy;
}

static void push(struct parse *p, enum header_op_kind kind, const char *name,
                 const weir_template_t *value)
{
    if (p->n == p->cap)
        return; /* cannot happen: cap counts every item */
    p->ops[p->n++] = (struct header_op){
        .kind = kind,
        .name = {.data = name, .len = strlen(name)},
        .value = value,
    };
}

static const weir_template_t *op_value(struct parse *p, const weir_node_t *v, const char *name,
                                       enum header_op_kind kind)
{
    const char *text = weir_node_scalar(v);
    const weir_template_t *t;
    char why[512];

    if (weir_node_type(v) == WEIR_NODE_NULL) {
        p->rc = weir_conf_error(p->cf, v,
                                "%s.%s: '%s' has no value (write a value, or list the name under "
                                "remove)",
                                p->key, kind_word[kind], name);
        return NULL;
    }
    if (weir_node_type(v) != WEIR_NODE_SCALAR || text == NULL) {
        p->rc = weir_conf_error(p->cf, v, "%s.%s: the value of '%s' must be a string%s", p->key,
                                kind_word[kind], name,
                                kind == HEADER_OP_ADD ? " or a list of strings" : "");
        return NULL;
    }
    if (header_value_text_check(text, why, sizeof(why)) < 0) {
        p->rc = weir_conf_error(p->cf, v, "%s.%s: value of '%s': %s", p->key, kind_word[kind],
                                name, why);
        return NULL;
    }
    t = weir_template_compile(p->cf, v, text); /* reports unknown variables at v */
    if (t == NULL)
        p->rc = -1;
    return t;
}

static void parse_remove(struct parse *p, const weir_node_t *n)
{
    size_t count;

    if (n == NULL || weir_node_type(n) == WEIR_NODE_NULL)
        return;
    if (weir_node_type(n) == WEIR_NODE_SCALAR) {
        const char *name = op_name(p, n, HEADER_OP_REMOVE);

        if (name != NULL)
            push(p, HEADER_OP_REMOVE, name, NULL);
        return;
    }
    if (weir_node_type(n) != WEIR_NODE_SEQUENCE) {
        p->rc = weir_conf_error(p->cf, n, "%s.remove: expected a list of header names", p->key);
        return;
    }
    count = weir_node_count(n);
    for (size_t i = 0; i < count; i++) {
        const char *name = op_name(p, weir_node_child(n, i), HEADER_OP_REMOVE);

        if (name != NULL)
            push(p, HEADER_OP_REMOVE, name, NULL);
    }
}

static void parse_values(struct parse *p, const weir_node_t *n, enum header_op_kind kind)
{
    size_t count;

    if (n == NULL || weir_node_type(n) == WEIR_NODE_NULL)
        return;
    if (weir_node_type(n) != WEIR_NODE_MAPPING) {
        p->rc = weir_conf_error(p->cf, n, "%s.%s: expected a mapping {Header-Name: value, ...}",
                                p->key, kind_word[kind]);
        return;
    }
    count = weir_node_count(n);
    for (size_t i = 0; i < count; i++) {
        const weir_node_t *v = weir_node_child(n, i);
        const char *name = op_name(p, weir_node_key(n, i), kind);

        if (name == NULL)
            continue;
        if (kind == HEADER_OP_ADD && weir_node_type(v) == WEIR_NODE_SEQUENCE) {
            size_t nv = weir_node_count(v);

            if (nv == 0)
                p->rc = weir_conf_error(p->cf, v, "%s.add: '%s' has an empty list of values",
                                        p->key, name);
            for (size_t j = 0; j < nv; j++) {
                const weir_template_t *t = op_value(p, weir_node_child(v, j), name, kind);

                if (t != NULL)
                    push(p, kind, name, t);
            }
            continue;
        }
        const weir_template_t *t = op_value(p, v, name, kind);

        if (t != NULL)
            push(p, kind, name, t);
    }
}

/* Upper bound of the ops a node can produce. */
static size_t items_in(const weir_node_t *n, int add)
{
    size_t count = 0;

    if (n == NULL)
        return 0;
    if (weir_node_type(n) == WEIR_NODE_SCALAR)
        return 1;
    if (!add)
        return weir_node_count(n);
    if (weir_node_type(n) != WEIR_NODE_MAPPING)
        return 0;
    for (size_t i = 0; i < weir_node_count(n); i++) {
        const weir_node_t *v = weir_node_child(n, i);

        count += weir_node_type(v) == WEIR_NODE_SEQUENCE ? weir_node_count(v) : 1;
    }
    return count;
}

int header_rules_parse(weir_conf_t *cf, const weir_node_t *node, const char *key,
                       enum header_side side, struct header_rules *out)
{
    struct parse p = {.cf = cf, .key = key, .side = side};
    const weir_node_t *set = NULL, *add = NULL, *remove = NULL;
    size_t count;

    memset(out, 0, sizeof(*out));
    if (weir_node_type(node) == WEIR_NODE_NULL)
        return 0; /* "request_headers:" alone: no rules (and none inherited) */
    if (weir_node_type(node) != WEIR_NODE_MAPPING)
        return weir_conf_error(cf, node, "%s: expected a mapping {set: {...}, add: {...}, "
                                         "remove: [...]}",
                               key);
    count = weir_node_count(node);
    for (size_t i = 0; i < count; i++) {
        const weir_node_t *k = weir_node_key(node, i);
        const weir_node_t *v = weir_node_child(node, i);
        const char *word = weir_node_scalar(k);

        if (word == NULL) {
            p.rc = weir_conf_error(cf, k, "%s: expected set, add or remove", key);
        } else if (strcmp(word, "set") == 0) {
            set = v;
        } else if (strcmp(word, "add") == 0) {
            add = v;
        } else if (strcmp(word, "remove") == 0) {
            remove = v;
        } else if (strcmp(word, "always") == 0 && side == HEADER_SIDE_RESPONSE) {
            if (weir_node_bool(cf, v, &out->always) < 0)
                p.rc = -1;
        } else if (strcmp(word, "always") == 0) {
            p.rc = weir_conf_error(cf, k,
                                   "%s: 'always' belongs to response_headers (it applies the "
                                   "rules to answers weir makes itself too)",
                                   key);
        } else {
            p.rc = weir_conf_error(cf, k, "%s: unknown key '%s' (expected set, add, remove%s)",
                                   key, word,
                                   side == HEADER_SIDE_RESPONSE ? " or always" : "");
        }
    }
    p.cap = items_in(remove, 0) + items_in(set, 0) + items_in(add, 1);
    if (p.cap > 0) {
        p.ops = weir_conf_alloc(cf, p.cap * sizeof(*p.ops));
        if (p.ops == NULL)
            return weir_conf_error(cf, node, "%s: out of memory", key);
    }
    /* in the order of application, whatever the order of the keys */
    parse_remove(&p, remove);
    parse_values(&p, set, HEADER_OP_SET);
    parse_values(&p, add, HEADER_OP_ADD);
    if (p.rc < 0)
        return -1;
    out->ops = p.ops;
    out->nops = p.n;
    return 0;
}

/* --------------------------------------------------------------- applying */

int header_rules_apply(weir_request_t *r, weir_headers_t *h, const struct header_rules *rules,
                       const weir_str_t *values, header_drop_fn drop, void *arg)
{
    for (size_t i = 0; i < rules->nops; i++) {
        const struct header_op *op = &rules->ops[i];
        weir_str_t v;
        int rc;

        if (op->kind == HEADER_OP_REMOVE) {
            weir_headers_remove(h, op->name);
            continue;
        }
        if (header_value_clean(values[i], &v) < 0) {
            if (op->kind == HEADER_OP_SET)
                weir_headers_remove(h, op->name);
            if (drop != NULL)
                drop(arg, op);
            continue;
        }
        if (v.len == 0) {
            if (op->kind == HEADER_OP_SET)
                weir_headers_remove(h, op->name);
            continue;
        }
        if (op->kind == HEADER_OP_SET)
            rc = weir_headers_set(r, h, op->name, v);
        else
            rc = weir_headers_add(r, h, op->name, v);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int header_rules_run(weir_request_t *r, weir_headers_t *h, const struct header_rules *rules,
                     header_drop_fn drop, void *arg)
{
    weir_str_t *values;

    if (rules->nops == 0)
        return 0;
    values = weir_request_alloc(r, rules->nops * sizeof(*values));
    if (values == NULL)
        return -1;
    /* all values first: they see the message as it arrived */
    for (size_t i = 0; i < rules->nops; i++) {
        const struct header_op *op = &rules->ops[i];

        if (op->value != NULL && weir_template_render(r, op->value, &values[i]) < 0)
            return -1;
    }
    return header_rules_apply(r, h, rules, values, drop, arg);
}
