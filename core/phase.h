/*
 * Phase chains: every handler of every loaded module (and the core's own),
 * resolved into one flat array ordered by phase, then priority, then
 * before/after constraints, then modules: order. A request keeps a cursor
 * into this array, so a handler can suspend and the request resumes right
 * after it.
 */
#ifndef WEIR_PHASE_H
#define WEIR_PHASE_H

#include <stdio.h>

#include "conf.h"

typedef struct phase_entry {
    const weir_handler_t *handler;
    size_t module; /* index into cf->modules, SIZE_MAX for the core */
} phase_entry_t;

struct phases {
    phase_entry_t *entries;
    size_t count;
    /* entries of phase p are [start[p], start[p + 1]) */
    size_t start[WEIR_PHASE_COUNT + 1];
};

/* Builds cf->phases from the loaded modules plus `core_handlers` (terminated
 * by {.name = NULL}). A cycle in before/after, or two handlers with one
 * name, is a config error naming the handlers involved. 0 or -1. */
int phases_build(weir_conf_t *cf, const weir_handler_t *core_handlers);

/* "request: a.x, b.y" one line per phase, for weir -t -v. */
void phases_print(const weir_conf_t *cf, FILE *out);

const char *phase_name(weir_phase_t p);

#endif
