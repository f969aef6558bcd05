/*
 * YAML to node tree, with libyaml's event parser. The event API (rather than
 * libyaml's document loader) gives the start mark of every node, so each
 * node carries the file, line and column an error message points at.
 *
 * Plain scalars "", "~" and "null" (any case) become WEIR_NODE_NULL; quoted
 * ones stay strings. Anchors and aliases work (an alias shares the node).
 * A duplicate key in a mapping is an error. A top-level `include:` (a path
 * or a list of paths, relative to the including file) merges the included
 * files' top-level keys into the root, as if written there.
 */
#include "conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "arena.h"

#define MAX_DEPTH 64        /* nesting of sequences and mappings */
#define MAX_INCLUDE_DEPTH 8 /* include of include of ...; also stops cycles */

struct anchor {
    struct anchor *next;
    char *name;
    weir_node_t *node;
};

struct yreader {
    weir_conf_t *cf;
    yaml_parser_t parser;
    const char *file;
    struct anchor *anchors; /* malloc'd, freed when the file is done */
};

/* Growable pointer vector in malloc memory; copied into the arena once the
 * size is known, so the arena does not keep every intermediate array. */
struct vec {
    weir_node_t **v;
    size_t n, cap;
};

static int vec_push(struct vec *vec, weir_node_t *p)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 8;
        weir_node_t **v = realloc(vec->v, cap * sizeof(*v));
        if (!v)
            return -1;
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = p;
    return 0;
}

static weir_node_t **vec_to_arena(weir_conf_t *cf, const struct vec *vec)
{
    weir_node_t **a = weir_conf_alloc(cf, (vec->n ? vec->n : 1) * sizeof(*a));
    if (a && vec->n)
        memcpy(a, vec->v, vec->n * sizeof(*a));
    return a;
}

static weir_node_t *new_node(struct yreader *r, weir_node_type_t type, yaml_mark_t mark)
{
    weir_node_t *n = weir_conf_alloc(r->cf, sizeof(*n));
    if (!n)
        return NULL;
    n->type = type;
    n->file = r->file;
    n->line = (unsigned)mark.line + 1;
    n->column = (unsigned)mark.column + 1;
    n->scalar = "";
    return n;
}

/* Error at a libyaml mark, without a node to hang it on. */
static void mark_error(struct yreader *r, yaml_mark_t mark, const char *what, const char *text)
{
    weir_node_t at = {.file = r->file,
                      .line = (unsigned)mark.line + 1,
                      .column = (unsigned)mark.column + 1};
    weir_conf_error(r->cf, &at, "%s%s", what, text);
}

static int next_event(struct yreader *r, yaml_event_t *ev)
{
    if (yaml_parser_parse(&r->parser, ev))
        return 0;
    mark_error(r, r->parser.problem_mark, "YAML syntax error: ",
               r->parser.problem ? r->parser.problem : "unknown problem");
    return -1;
}

static void out_of_memory(struct yreader *r, yaml_mark_t mark)
{
    mark_error(r, mark, "out of memory", "");
}

static void add_anchor(struct yreader *r, const yaml_char_t *name, weir_node_t *n)
{
    struct anchor *a;
    if (!name)
        return;
    a = malloc(sizeof(*a));
    if (!a)
        return;
    a->name = strdup((const char *)name);
    if (!a->name) {
        free(a);
        return;
    }
    a->node = n;
    a->next = r->anchors;
    r->anchors = a;
}

static int is_null_word(const char *s, size_t len)
{
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && strncasecmp(s, "null", 4) == 0);
}

static void set_key(weir_node_t *value, const char *key)
{
    /* An aliased node keeps the key it was first seen under. */
    if (!value->key)
        value->key = key;
    if (value->type == WEIR_NODE_SEQUENCE)
        for (size_t i = 0; i < value->count; i++)
            if (!value->items[i]->key)
                value->items[i]->key = key;
}

static weir_node_t *parse_node(struct yreader *r, yaml_event_t *ev, int depth);

static weir_node_t *parse_sequence(struct yreader *r, yaml_event_t *start, int depth)
{
    struct vec items = {0};
    weir_node_t *n = new_node(r, WEIR_NODE_SEQUENCE, start->start_mark);
    yaml_event_t ev;

    if (!n)
        goto oom;
    for (;;) {
        if (next_event(r, &ev) < 0)
            goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        weir_node_t *child = parse_node(r, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!child)
            goto fail;
        if (vec_push(&items, child) < 0)
            goto oom;
    }
    n->count = items.n;
    n->items = vec_to_arena(r->cf, &items);
    free(items.v);
    if (!n->items)
        goto oom_nofree;
    add_anchor(r, start->data.sequence_start.anchor, n);
    return n;

oom:
    out_of_memory(r, start->start_mark);
fail:
    free(items.v);
    return NULL;
oom_nofree:
    out_of_memory(r, start->start_mark);
    return NULL;
}

static weir_node_t *parse_mapping(struct yreader *r, yaml_event_t *start, int depth)
{
    struct vec keys = {0}, values = {0};
    weir_node_t *n = new_node(r, WEIR_NODE_MAPPING, start->start_mark);
    yaml_event_t ev;

    if (!n)
        goto oom;
    for (;;) {
        weir_node_t *key, *value;
        int keep = 1;

        if (next_event(r, &ev) < 0)
            goto fail;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        key = parse_node(r, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!key)
            goto fail;
        if (next_event(r, &ev) < 0)
            goto fail;
        value = parse_node(r, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!value)
            goto fail;

        if (key->type != WEIR_NODE_SCALAR) {
            /* Not fatal: report and drop the entry, then read on. */
            weir_conf_error(r->cf, key, "a mapping key must be a plain string, not %s",
                            key->type == WEIR_NODE_NULL ? "null" : "a list or mapping");
            keep = 0;
        }
        for (size_t i = 0; keep && i < keys.n; i++) {
            if (strcmp(keys.v[i]->scalar, key->scalar) == 0) {
                weir_conf_error(r->cf, key, "duplicate key '%s' (first at line %u, column %u)",
                                key->scalar, keys.v[i]->line, keys.v[i]->column);
                keep = 0;
            }
        }
        if (!keep)
            continue;
        set_key(value, key->scalar);
        if (vec_push(&keys, key) < 0 || vec_push(&values, value) < 0)
            goto oom;
    }
    n->count = keys.n;
    n->keys = vec_to_arena(r->cf, &keys);
    n->items = vec_to_arena(r->cf, &values);
    free(keys.v);
    free(values.v);
    if (!n->keys || !n->items) {
        out_of_memory(r, start->start_mark);
        return NULL;
    }
    add_anchor(r, start->data.mapping_start.anchor, n);
    return n;

oom:
    out_of_memory(r, start->start_mark);
fail:
    free(keys.v);
    free(values.v);
    return NULL;
}

static weir_node_t *parse_node(struct yreader *r, yaml_event_t *ev, int depth)
{
    weir_node_t *n;

    if (depth > MAX_DEPTH) {
        mark_error(r, ev->start_mark, "nesting deeper than the limit of 64 levels", "");
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        const char *text = (const char *)ev->data.scalar.value;
        size_t len = ev->data.scalar.length;
        int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n = new_node(r, plain && is_null_word(text, len) ? WEIR_NODE_NULL : WEIR_NODE_SCALAR,
                     ev->start_mark);
        if (!n)
            goto oom;
        n->end_line = (unsigned)ev->end_mark.line + 1;
        n->end_column = (unsigned)ev->end_mark.column + 1;
        n->style = plain ? CONF_STYLE_PLAIN
                   : ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                           ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE
                       ? CONF_STYLE_QUOTED
                       : CONF_STYLE_OTHER;
        if (n->type == WEIR_NODE_SCALAR) {
            char *s = arena_strndup(r->cf->arena, text, len);
            if (!s)
                goto oom;
            n->scalar = s;
        }
        add_anchor(r, ev->data.scalar.anchor, n);
        return n;
    }
    case YAML_SEQUENCE_START_EVENT:
        return parse_sequence(r, ev, depth);
    case YAML_MAPPING_START_EVENT:
        return parse_mapping(r, ev, depth);
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (struct anchor *a = r->anchors; a; a = a->next)
            if (strcmp(a->name, name) == 0)
                return a->node;
        mark_error(r, ev->start_mark, "unknown alias *", name);
        return NULL;
    }
    default:
        mark_error(r, ev->start_mark, "unexpected YAML structure", "");
        return NULL;
    }
oom:
    out_of_memory(r, ev->start_mark);
    return NULL;
}

/* Reads one document. An empty file is an empty mapping. */
static weir_node_t *read_document(struct yreader *r)
{
    yaml_event_t ev;
    weir_node_t *root = NULL;

    if (next_event(r, &ev) < 0) /* stream start */
        return NULL;
    yaml_event_delete(&ev);
    if (next_event(r, &ev) < 0)
        return NULL;
    if (ev.type == YAML_STREAM_END_EVENT) {
        root = new_node(r, WEIR_NODE_MAPPING, ev.start_mark);
        yaml_event_delete(&ev);
        return root;
    }
    yaml_event_delete(&ev); /* document start */
    if (next_event(r, &ev) < 0)
        return NULL;
    root = parse_node(r, &ev, 0);
    yaml_event_delete(&ev);
    if (!root)
        return NULL;
    if (next_event(r, &ev) < 0) /* document end */
        return NULL;
    yaml_event_delete(&ev);
    if (next_event(r, &ev) < 0)
        return NULL;
    if (ev.type != YAML_STREAM_END_EVENT) {
        mark_error(r, ev.start_mark, "only one YAML document is allowed per file", "");
        yaml_event_delete(&ev);
        return NULL;
    }
    yaml_event_delete(&ev);
    if (root->type == WEIR_NODE_NULL) {
        root->type = WEIR_NODE_MAPPING;
    } else if (root->type != WEIR_NODE_MAPPING) {
        weir_conf_error(r->cf, root, "the top level must be a mapping of keys, not %s",
                        root->type == WEIR_NODE_SEQUENCE ? "a list" : "a scalar");
        return NULL;
    }
    return root;
}

/* Path of `inc` relative to the directory of `file`, as a user would write
 * it (so messages about the included file name it recognisably). */
static char *relative_to(weir_conf_t *cf, const char *file, const char *inc)
{
    const char *slash = strrchr(file, '/');
    size_t dlen;
    char *p;

    if (inc[0] == '/' || !slash)
        return weir_conf_strdup(cf, inc);
    dlen = (size_t)(slash - file);
    p = weir_conf_alloc(cf, dlen + 1 + strlen(inc) + 1);
    if (!p)
        return NULL;
    memcpy(p, file, dlen);
    p[dlen] = '/';
    strcpy(p + dlen + 1, inc);
    return p;
}

static weir_node_t *read_file(weir_conf_t *cf, const char *path, const weir_node_t *from,
                              int depth);

/* Merges the files named by root's `include:` into root and drops the key. */
static int do_includes(weir_conf_t *cf, weir_node_t *root, const char *file, int depth)
{
    size_t at = SIZE_MAX;
    const weir_node_t *inc;
    struct vec keys = {0}, values = {0};
    int rc = 0;

    for (size_t i = 0; i < root->count; i++)
        if (strcmp(root->keys[i]->scalar, "include") == 0)
            at = i;
    if (at == SIZE_MAX)
        return 0;
    inc = root->items[at];

    /* root minus `include`, then the included entries */
    for (size_t i = 0; i < root->count; i++) {
        if (i == at)
            continue;
        if (vec_push(&keys, root->keys[i]) < 0 || vec_push(&values, root->items[i]) < 0)
            goto oom;
    }

    size_t nfiles = inc->type == WEIR_NODE_SEQUENCE ? inc->count : 1;
    for (size_t f = 0; f < nfiles; f++) {
        const weir_node_t *name = inc->type == WEIR_NODE_SEQUENCE ? inc->items[f] : inc;
        if (name->type != WEIR_NODE_SCALAR || !name->scalar[0]) {
            weir_conf_error(cf, name, "'include' expects a file path or a list of paths");
            rc = -1;
            continue;
        }
        if (depth >= MAX_INCLUDE_DEPTH) {
            weir_conf_error(cf, name, "include nested more than %d deep (an include cycle?)",
                            MAX_INCLUDE_DEPTH);
            rc = -1;
            continue;
        }
        char *path = relative_to(cf, file, name->scalar);
        if (!path)
            goto oom;
        weir_node_t *sub = read_file(cf, path, name, depth + 1);
        if (!sub) {
            rc = -1;
            continue;
        }
        for (size_t i = 0; i < sub->count; i++) {
            weir_node_t *k = sub->keys[i];
            size_t j;
            for (j = 0; j < keys.n; j++)
                if (strcmp(keys.v[j]->scalar, k->scalar) == 0)
                    break;
            if (j < keys.n) {
                weir_conf_error(cf, k, "duplicate key '%s' (also at %s:%u:%u)", k->scalar,
                                keys.v[j]->file, keys.v[j]->line, keys.v[j]->column);
                continue;
            }
            if (vec_push(&keys, k) < 0 || vec_push(&values, sub->items[i]) < 0)
                goto oom;
        }
    }

    root->count = keys.n;
    root->keys = vec_to_arena(cf, &keys);
    root->items = vec_to_arena(cf, &values);
    free(keys.v);
    free(values.v);
    if (!root->keys || !root->items)
        return weir_conf_error(cf, root, "out of memory");
    return rc;

oom:
    free(keys.v);
    free(values.v);
    return weir_conf_error(cf, root, "out of memory");
}

static weir_node_t *read_file(weir_conf_t *cf, const char *path, const weir_node_t *from,
                              int depth)
{
    struct yreader r = {.cf = cf};
    weir_node_t *root = NULL;
    FILE *fp;

    r.file = weir_conf_strdup(cf, path);
    if (!r.file)
        return NULL;
    fp = fopen(path, "rb");
    if (!fp) {
        int err = errno;
        if (from)
            weir_conf_error(cf, from, "cannot open include '%s': %s", path, strerror(err));
        else
            weir_conf_error(cf, &(weir_node_t){.file = r.file}, "cannot open: %s",
                            strerror(err));
        return NULL;
    }
    if (!yaml_parser_initialize(&r.parser)) {
        fclose(fp);
        weir_conf_error(cf, &(weir_node_t){.file = r.file}, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_file(&r.parser, fp);
    root = read_document(&r);
    yaml_parser_delete(&r.parser);
    fclose(fp);
    while (r.anchors) {
        struct anchor *a = r.anchors;
        r.anchors = a->next;
        free(a->name);
        free(a);
    }
    /* A failed include is reported; the rest of the tree is still read so
     * that one run shows every error. */
    if (root)
        do_includes(cf, root, r.file, depth);
    return root;
}

weir_node_t *conf_yaml_read(weir_conf_t *cf, const char *path)
{
    return read_file(cf, path, NULL, 0);
}
