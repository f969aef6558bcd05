/*
 * Ordered header list with case-insensitive lookup. Entries point at bytes
 * owned by someone else (a receive buffer copy or the request arena); a
 * removed entry keeps its slot with name.len == 0, so indexes and the order
 * of the others never change and nothing is copied on removal.
 */
#ifndef WEIR_HEADERS_H
#define WEIR_HEADERS_H

#include <stddef.h>

#include "weir/module.h"

struct arena;

typedef struct header_entry {
    weir_str_t name;
    weir_str_t value;
} header_entry_t;

struct weir_headers {
    header_entry_t *v;
    size_t n;   /* slots used, removed ones included */
    size_t cap;
};

void headers_init(weir_headers_t *h);
/* Appends without copying name/value bytes. 0 or -1 (arena exhausted). */
int headers_push(struct arena *a, weir_headers_t *h, weir_str_t name, weir_str_t value);
/* Appends copies of name/value into the arena. */
int headers_add_copy(struct arena *a, weir_headers_t *h, weir_str_t name, weir_str_t value);
int headers_set_copy(struct arena *a, weir_headers_t *h, weir_str_t name, weir_str_t value);
header_entry_t *headers_find(const weir_headers_t *h, weir_str_t name);
size_t headers_del(weir_headers_t *h, weir_str_t name);

int str_case_eq(weir_str_t a, weir_str_t b);
/* True if the comma-separated list `list` contains `token` (case-insensitive,
 * optional whitespace around items). */
int str_list_has_token(weir_str_t list, weir_str_t token);

#endif
