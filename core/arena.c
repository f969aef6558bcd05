#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A chunk header precedes its data; big allocations get a chunk of their own
 * so that one large header does not waste a whole small chunk. */
struct chunk {
    struct chunk *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char data[];
};

struct cleanup {
    struct cleanup *next;
    void (*fn)(void *);
    void *arg;
};

struct arena {
    struct chunk *head;  /* current chunk for small allocations */
    struct chunk *large; /* dedicated chunks */
    struct cleanup *cleanups;
    size_t chunk_size;
    size_t cap;
    size_t total;
};

static struct chunk *chunk_new(size_t size)
{
    struct chunk *c = malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

struct arena *arena_new(size_t chunk, size_t cap)
{
    struct arena *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->chunk_size = chunk < 256 ? 256 : chunk;
    a->cap = cap;
    a->head = chunk_new(a->chunk_size);
    if (!a->head) {
        free(a);
        return NULL;
    }
    a->total = a->chunk_size;
    return a;
}

void *arena_alloc_raw(struct arena *a, size_t size)
{
    size_t need = (size + 15) & ~(size_t)15;
    if (need < size)
        return NULL;
    struct chunk *c = a->head;
    if (c->size - c->used >= need) {
        void *p = c->data + c->used;
        c->used += need;
        return p;
    }
    size_t csize = need > a->chunk_size / 4 ? need : a->chunk_size;
    if (a->cap && a->total + csize > a->cap)
        return NULL;
    struct chunk *n = chunk_new(csize);
    if (!n)
        return NULL;
    a->total += csize;
    n->used = need;
    if (csize == need && need != a->chunk_size) {
        n->next = a->large;
        a->large = n;
    } else {
        /* the old head keeps its tail unused; it is small by construction */
        n->next = a->head;
        a->head = n;
    }
    return n->data;
}

void *arena_alloc(struct arena *a, size_t size)
{
    void *p = arena_alloc_raw(a, size);
    if (p)
        memset(p, 0, size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc_raw(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

int arena_cleanup(struct arena *a, void (*fn)(void *), void *arg)
{
    struct cleanup *c = arena_alloc_raw(a, sizeof(*c));
    if (!c)
        return -1;
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

static void run_cleanups(struct arena *a)
{
    while (a->cleanups) {
        struct cleanup *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->arg);
    }
}

static void free_list(struct chunk *c)
{
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
}

void arena_reset(struct arena *a)
{
    run_cleanups(a);
    free_list(a->large);
    a->large = NULL;
    /* keep the oldest chunk (the tail of the list), free the rest */
    struct chunk *c = a->head;
    while (c->next) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    c->used = 0;
    a->head = c;
    a->total = c->size;
}

void arena_free(struct arena *a)
{
    if (!a)
        return;
    run_cleanups(a);
    free_list(a->large);
    free_list(a->head);
    free(a);
}

size_t arena_used(const struct arena *a)
{
    return a->total;
}

char *arena_strndup_lower(struct arena *a, const char *s, size_t n)
{
    char *d = arena_alloc_raw(a, n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] | 0x20) : s[i];
    d[n] = '\0';
    return d;
}
