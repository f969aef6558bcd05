#include "headers.h"

#include <string.h>
#include <strings.h>

#include "arena.h"

void headers_init(weir_headers_t *h)
{
    h->v = NULL;
    h->n = h->cap = 0;
}

int str_case_eq(weir_str_t a, weir_str_t b)
{
    return a.len == b.len && strncasecmp(a.data, b.data, a.len) == 0;
}

int str_list_has_token(weir_str_t list, weir_str_t token)
{
    const char *p = list.data, *end = list.data + list.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (str_case_eq((weir_str_t){s, (size_t)(e - s)}, token))
            return 1;
    }
    return 0;
}

static int grow(struct arena *a, weir_headers_t *h)
{
    size_t cap = h->cap ? h->cap * 2 : 16;
    header_entry_t *v = arena_alloc_raw(a, cap * sizeof(*v));
    if (!v)
        return -1;
    if (h->n)
        memcpy(v, h->v, h->n * sizeof(*v));
    h->v = v;
    h->cap = cap;
    return 0;
}

int headers_push(struct arena *a, weir_headers_t *h, weir_str_t name, weir_str_t value)
{
    if (h->n == h->cap && grow(a, h) < 0)
        return -1;
    h->v[h->n].name = name;
    h->v[h->n].value = value;
    h->n++;
    return 0;
}

int headers_add_copy(struct arena *a, weir_headers_t *h, weir_str_t name, weir_str_t value)
{
    char *n = arena_strndup(a, name.data, name.len);
    char *v = arena_strndup(a, value.data, value.len);
    if (!n || !v)
        return -1;
    return headers_push(a, h, (weir_str_t){n, name.len}, (weir_str_t){v, value.len});
}

int headers_set_copy(struct arena *a, weir_headers_t *h, weir_str_t name, weir_str_t value)
{
    headers_del(h, name);
    return headers_add_copy(a, h, name, value);
}

header_entry_t *headers_find(const weir_headers_t *h, weir_str_t name)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->v[i].name.len && str_case_eq(h->v[i].name, name))
            return &h->v[i];
    return NULL;
}

size_t headers_del(weir_headers_t *h, weir_str_t name)
{
    size_t removed = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->v[i].name.len && str_case_eq(h->v[i].name, name)) {
            h->v[i].name.len = 0;
            removed++;
        }
    }
    return removed;
}
