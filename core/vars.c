/*
 * Variable registry. Registration happens at config time only and the set is
 * small (a few dozen names), so a flat array with a linear search is enough;
 * templates resolve names once at compile time and keep the getter, so the
 * request path never searches.
 */
#include "vars.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

struct vars {
    var_def_t *v;
    size_t n, cap;
};

/* Families whose suffix names a header: nginx spells $http_x_user for
 * X-User, so '_' stands for '-'. */
static const char *const header_families[] = {"http_", "sent_http_", "upstream_http_"};

int vars_init(weir_conf_t *cf)
{
    if (cf->vars)
        return 0;
    cf->vars = arena_alloc(cf->arena, sizeof(struct vars));
    return cf->vars ? 0 : -1;
}

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '_')
            return 0;
    }
    return 1;
}

static int add_var(weir_conf_t *cf, const char *name, unsigned flags, weir_var_get_fn get)
{
    if (!name || !get || !valid_name(name) || vars_init(cf) < 0)
        return -1;
    struct vars *vs = cf->vars;
    size_t len = strlen(name);
    for (size_t i = 0; i < vs->n; i++) {
        var_def_t *v = &vs->v[i];
        if (v->len != len || memcmp(v->name, name, len) != 0)
            continue;
        if (!(v->flags & VAR_RESERVED))
            return -1;
        /* the module that owns a reserved name fills it in, once */
        v->get = get;
        v->flags = flags & WEIR_VAR_PREFIX;
        return 0;
    }
    if (vs->n == vs->cap) {
        /* the old array stays in the arena; registration is rare and small */
        size_t cap = vs->cap ? vs->cap * 2 : 64;
        var_def_t *nv = arena_alloc(cf->arena, cap * sizeof(*nv));
        if (!nv)
            return -1;
        if (vs->n)
            memcpy(nv, vs->v, vs->n * sizeof(*nv));
        vs->v = nv;
        vs->cap = cap;
    }
    char *copy = arena_strndup(cf->arena, name, len);
    if (!copy)
        return -1;
    vs->v[vs->n++] = (var_def_t){
        .name = copy, .len = len, .flags = flags & (WEIR_VAR_PREFIX | VAR_RESERVED), .get = get};
    return 0;
}

int weir_var_register(weir_conf_t *cf, const char *name, unsigned flags, weir_var_get_fn get)
{
    return add_var(cf, name, flags & WEIR_VAR_PREFIX, get);
}

int vars_reserve(weir_conf_t *cf, const char *name, weir_var_get_fn unset)
{
    return add_var(cf, name, VAR_RESERVED, unset);
}

const var_def_t *vars_find(const weir_conf_t *cf, const char *name, size_t len)
{
    const struct vars *vs = cf->vars;
    const var_def_t *best = NULL;
    if (!vs)
        return NULL;
    for (size_t i = 0; i < vs->n; i++) {
        const var_def_t *v = &vs->v[i];
        if (!(v->flags & WEIR_VAR_PREFIX)) {
            if (v->len == len && memcmp(v->name, name, len) == 0)
                return v;
        } else if (v->len < len && memcmp(v->name, name, v->len) == 0) {
            /* "sent_http_" must beat a hypothetical "sent_" */
            if (!best || v->len > best->len)
                best = v;
        }
    }
    return best;
}

void vars_suffix(const var_def_t *v, const char *name, size_t len, char *dst)
{
    int dash = 0;
    for (size_t i = 0; i < sizeof(header_families) / sizeof(header_families[0]); i++) {
        if (strcmp(v->name, header_families[i]) == 0)
            dash = 1;
    }
    for (size_t i = v->len; i < len; i++) {
        char c = (char)tolower((unsigned char)name[i]);
        *dst++ = dash && c == '_' ? '-' : c;
    }
}

int vars_get(weir_request_t *r, const weir_conf_t *cf, const char *name, weir_str_t *out)
{
    size_t len = strlen(name);
    const var_def_t *v = vars_find(cf, name, len);
    if (!v)
        return -1;
    weir_str_t suffix = {.data = "", .len = 0};
    if (v->flags & WEIR_VAR_PREFIX) {
        /* request memory, not the stack: a getter may hand the suffix back */
        size_t n = len - v->len;
        char *buf = weir_request_alloc(r, n + 1);
        if (!buf)
            return 1;
        vars_suffix(v, name, len, buf);
        suffix = (weir_str_t){.data = buf, .len = n};
    }
    *out = (weir_str_t){.data = "", .len = 0};
    if (v->get(r, suffix, out) != 0) {
        *out = (weir_str_t){.data = "", .len = 0};
        return 1;
    }
    return 0;
}

const char *vars_suggest(const weir_conf_t *cf, const char *name, size_t len)
{
    const struct vars *vs = cf->vars;
    const char *best = NULL;
    if (!vs || !vs->n)
        return NULL;
    const char **cands = malloc(vs->n * sizeof(*cands));
    char *word = strndup(name, len);
    if (!cands || !word)
        goto out;
    size_t n = 0;
    for (size_t i = 0; i < vs->n; i++) {
        if (!(vs->v[i].flags & WEIR_VAR_PREFIX))
            cands[n++] = vs->v[i].name;
    }
    best = conf_suggest(word, (const char *const *)cands, n);

out:
    free(cands);
    free(word);
    return best;
}
