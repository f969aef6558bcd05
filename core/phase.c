/*
 * Phase chains. The order inside a phase is: priority, then before/after
 * constraints, then registration order (the core first, then modules: order,
 * then each module's table order). Constraints are applied as a stable
 * topological sort: Kahn's algorithm that always takes the ready handler that
 * comes first in the priority order, so a constraint moves only the handlers
 * it has to and everything else keeps its priority position.
 */
#include "phase.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "modload.h"

/* A handler being placed. `rank` is its registration position. */
struct item {
    const weir_handler_t *h;
    size_t module;
    size_t rank;
};

/* Edges of one phase in compressed form: the successors of node i are
 * succ[soff[i]..soff[i+1]), its predecessors pred[poff[i]..poff[i+1]). */
struct graph {
    size_t n;
    size_t *soff, *succ;
    size_t *poff, *pred;
    size_t *indeg;
};

static const char *const phase_names[WEIR_PHASE_COUNT] = {
    [WEIR_PHASE_ACCEPT] = "accept",
    [WEIR_PHASE_REQUEST] = "request",
    [WEIR_PHASE_ROUTE] = "route",
    [WEIR_PHASE_REWRITE] = "rewrite",
    [WEIR_PHASE_ACCESS] = "access",
    [WEIR_PHASE_BALANCE] = "balance",
    [WEIR_PHASE_UPSTREAM_REQUEST] = "upstream_request",
    [WEIR_PHASE_UPSTREAM_RESPONSE] = "upstream_response",
    [WEIR_PHASE_RESPONSE_BODY] = "response_body",
    [WEIR_PHASE_LOG] = "log",
    [WEIR_PHASE_ERROR] = "error",
};

const char *phase_name(weir_phase_t p)
{
    if ((unsigned)p >= WEIR_PHASE_COUNT)
        return "(unknown)";
    return phase_names[p];
}

static const char *module_name(const weir_conf_t *cf, size_t module)
{
    if (module == SIZE_MAX)
        return "core";
    const weir_module_t *d = cf->modules[module].desc;
    return d && d->name ? d->name : "(unnamed)";
}

static int cmp_item(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    if (a->h->phase != b->h->phase)
        return a->h->phase < b->h->phase ? -1 : 1;
    if (a->h->priority != b->h->priority)
        return a->h->priority < b->h->priority ? -1 : 1;
    return a->rank < b->rank ? -1 : a->rank > b->rank;
}

/* A before/after entry names a handler ("mod.fn") or, without a dot, every
 * handler of a module. Names of handlers that are not loaded match nothing,
 * so a module can order itself against optional neighbours. */
static int ref_matches(const weir_conf_t *cf, const char *ref, const struct item *it)
{
    if (strcmp(ref, it->h->name) == 0)
        return 1;
    return strchr(ref, '.') == NULL && strcmp(ref, module_name(cf, it->module)) == 0;
}

/* Calls add(from, to) for every constraint among items[0..n). Run twice: once
 * to count, once to fill. */
static void for_each_edge(const weir_conf_t *cf, const struct item *items, size_t n,
                          void (*add)(struct graph *, size_t, size_t), struct graph *g)
{
    for (size_t i = 0; i < n; i++) {
        const weir_handler_t *h = items[i].h;
        for (int dir = 0; dir < 2; dir++) {
            const char *const *refs = dir == 0 ? h->before : h->after;
            for (; refs && *refs; refs++) {
                for (size_t j = 0; j < n; j++) {
                    if (j == i || !ref_matches(cf, *refs, &items[j]))
                        continue;
                    if (dir == 0)
                        add(g, i, j);
                    else
                        add(g, j, i);
                }
            }
        }
    }
}

static void count_edge(struct graph *g, size_t from, size_t to)
{
    g->soff[from + 1]++;
    g->poff[to + 1]++;
}

static void fill_edge(struct graph *g, size_t from, size_t to)
{
    /* soff/poff hold the next free slot per node while filling */
    g->succ[g->soff[from]++] = to;
    g->pred[g->poff[to]++] = from;
    g->indeg[to]++;
}

static void graph_free(struct graph *g)
{
    free(g->soff);
    free(g->succ);
    free(g->poff);
    free(g->pred);
    free(g->indeg);
}

static int graph_build(const weir_conf_t *cf, const struct item *items, size_t n, struct graph *g)
{
    memset(g, 0, sizeof(*g));
    g->n = n;
    g->soff = calloc(n + 1, sizeof(size_t));
    g->poff = calloc(n + 1, sizeof(size_t));
    g->indeg = calloc(n ? n : 1, sizeof(size_t));
    if (!g->soff || !g->poff || !g->indeg)
        goto fail;
    for_each_edge(cf, items, n, count_edge, g);
    for (size_t i = 0; i < n; i++) {
        g->soff[i + 1] += g->soff[i];
        g->poff[i + 1] += g->poff[i];
    }
    size_t m = g->soff[n];
    g->succ = calloc(m ? m : 1, sizeof(size_t));
    g->pred = calloc(m ? m : 1, sizeof(size_t));
    if (!g->succ || !g->pred)
        goto fail;
    for_each_edge(cf, items, n, fill_edge, g);
    /* filling advanced every offset to the start of the next node; shift back */
    for (size_t i = n; i > 0; i--) {
        g->soff[i] = g->soff[i - 1];
        g->poff[i] = g->poff[i - 1];
    }
    g->soff[0] = g->poff[0] = 0;
    return 0;

fail:
    graph_free(g);
    return -1;
}

/* Kahn's algorithm over items already sorted by priority and rank. The ready
 * node with the lowest index wins, which keeps the sort stable. Writes the
 * order into out[]; returns how many nodes were placed (< n on a cycle). */
static size_t topo_order(struct graph *g, size_t *out, unsigned char *done)
{
    size_t placed = 0;
    while (placed < g->n) {
        size_t pick = SIZE_MAX;
        for (size_t i = 0; i < g->n; i++) {
            if (!done[i] && g->indeg[i] == 0) {
                pick = i;
                break;
            }
        }
        if (pick == SIZE_MAX)
            break;
        done[pick] = 1;
        out[placed++] = pick;
        for (size_t e = g->soff[pick]; e < g->soff[pick + 1]; e++)
            g->indeg[g->succ[e]]--;
    }
    return placed;
}

/* After Kahn's algorithm stalls, every unplaced node has an unplaced
 * predecessor, so walking predecessors from any of them must come back to a
 * node already seen: that loop is a cycle. Reported forwards, starting at its
 * earliest handler so the message does not depend on where the walk began. */
static void report_cycle(weir_conf_t *cf, weir_phase_t phase, const struct item *items,
                         const struct graph *g, const unsigned char *done)
{
    size_t n = g->n;
    size_t *seen_at = malloc(n * sizeof(size_t));
    size_t *walk = malloc((n + 1) * sizeof(size_t));
    char *msg = NULL;
    if (!seen_at || !walk)
        goto oom;
    for (size_t i = 0; i < n; i++)
        seen_at[i] = SIZE_MAX;

    size_t cur = 0;
    while (done[cur])
        cur++;
    size_t len = 0;
    while (seen_at[cur] == SIZE_MAX) {
        seen_at[cur] = len;
        walk[len++] = cur;
        size_t next = SIZE_MAX;
        for (size_t e = g->poff[cur]; e < g->poff[cur + 1]; e++) {
            if (!done[g->pred[e]]) {
                next = g->pred[e];
                break;
            }
        }
        cur = next; /* never SIZE_MAX: see above */
    }
    /* walk[seen_at[cur]..len) is the cycle backwards */
    size_t first = seen_at[cur], clen = len - first;
    size_t min = first;
    for (size_t k = first; k < len; k++) {
        if (walk[k] < walk[min])
            min = k;
    }
    size_t size = 1;
    for (size_t k = first; k < len; k++)
        size += strlen(items[walk[k]].h->name) + 4;
    size += strlen(items[walk[min]].h->name);
    msg = malloc(size);
    if (!msg)
        goto oom;
    char *p = msg;
    /* walk[k + 1] -> walk[k] and walk[first] -> walk[len - 1] are the edges, so
     * forwards means stepping down through walk, from min round to min */
    size_t rmin = min - first;
    for (size_t s = 0; s <= clen; s++) {
        size_t k = first + (rmin + clen - s % clen) % clen;
        if (s > 0)
            p = stpcpy(p, " -> ");
        p = stpcpy(p, items[walk[k]].h->name);
    }
    weir_conf_error(cf, conf_modules_key(cf), "phase '%s': ordering cycle: %s", phase_name(phase),
                    msg);
    free(msg);
    free(seen_at);
    free(walk);
    return;

oom:
    free(seen_at);
    free(walk);
    weir_conf_error(cf, conf_modules_key(cf), "phase '%s': ordering cycle", phase_name(phase));
}

/* Appends the handlers of table `t` (owned by `module`) to items. */
static int collect(weir_conf_t *cf, const weir_handler_t *t, size_t module, struct item *items,
                   size_t *n)
{
    int rc = 0;
    for (; t && t->name; t++) {
        if ((unsigned)t->phase >= WEIR_PHASE_COUNT) {
            rc = weir_conf_error(cf, conf_modules_key(cf),
                                 "handler '%s' of module '%s' names phase %d, which does not "
                                 "exist (0 to %d)",
                                 t->name, module_name(cf, module), (int)t->phase,
                                 WEIR_PHASE_COUNT - 1);
            continue;
        }
        if (!t->fn) {
            rc = weir_conf_error(cf, conf_modules_key(cf),
                                 "handler '%s' of module '%s' has no function", t->name,
                                 module_name(cf, module));
            continue;
        }
        int dup = 0;
        for (size_t i = 0; i < *n; i++) {
            if (strcmp(items[i].h->name, t->name) == 0) {
                rc = weir_conf_error(cf, conf_modules_key(cf),
                                     "handler '%s' is registered twice (modules %s and %s)",
                                     t->name, module_name(cf, items[i].module),
                                     module_name(cf, module));
                dup = 1;
                break;
            }
        }
        if (dup)
            continue;
        items[*n] = (struct item){.h = t, .module = module, .rank = *n};
        (*n)++;
    }
    return rc;
}

static size_t table_len(const weir_handler_t *t)
{
    size_t n = 0;
    for (; t && t->name; t++)
        n++;
    return n;
}

static const weir_handler_t *module_handlers(const module_slot_t *s)
{
    if (!s->desc || !MODULE_HAS(s->desc, handlers))
        return NULL;
    return s->desc->handlers;
}

int phases_build(weir_conf_t *cf, const weir_handler_t *core_handlers)
{
    int rc = 0;
    struct item *items = NULL;
    size_t *order = NULL;
    unsigned char *done = NULL;

    size_t total = table_len(core_handlers);
    for (size_t m = 0; m < cf->nmodules; m++)
        total += table_len(module_handlers(&cf->modules[m]));

    struct phases *ph = arena_alloc(cf->arena, sizeof(*ph));
    items = calloc(total ? total : 1, sizeof(*items));
    order = calloc(total ? total : 1, sizeof(*order));
    done = calloc(total ? total : 1, 1);
    phase_entry_t *entries = arena_alloc(cf->arena, (total ? total : 1) * sizeof(*entries));
    if (!ph || !items || !order || !done || !entries) {
        rc = weir_conf_error(cf, conf_modules_key(cf), "out of memory ordering phase handlers");
        goto out;
    }

    size_t n = 0;
    if (collect(cf, core_handlers, SIZE_MAX, items, &n) < 0)
        rc = -1;
    for (size_t m = 0; m < cf->nmodules; m++) {
        if (collect(cf, module_handlers(&cf->modules[m]), m, items, &n) < 0)
            rc = -1;
    }
    qsort(items, n, sizeof(*items), cmp_item);

    size_t at = 0;
    for (int p = 0; p < WEIR_PHASE_COUNT; p++) {
        ph->start[p] = at;
        size_t lo = at, hi = at;
        while (hi < n && (int)items[hi].h->phase == p)
            hi++;
        struct graph g;
        if (graph_build(cf, items + lo, hi - lo, &g) < 0) {
            rc = weir_conf_error(cf, conf_modules_key(cf), "out of memory ordering phase handlers");
            goto out;
        }
        size_t placed = topo_order(&g, order, done + lo);
        if (placed < hi - lo) {
            report_cycle(cf, (weir_phase_t)p, items + lo, &g, done + lo);
            rc = -1;
            /* keep the priority order for the rest so the array stays whole */
            for (size_t i = 0; i < hi - lo; i++) {
                if (!done[lo + i])
                    order[placed++] = i;
            }
        }
        graph_free(&g);
        for (size_t i = 0; i < hi - lo; i++)
            entries[lo + i] = (phase_entry_t){.handler = items[lo + order[i]].h,
                                              .module = items[lo + order[i]].module};
        at = hi;
    }
    ph->start[WEIR_PHASE_COUNT] = at;
    ph->entries = entries;
    ph->count = n;
    cf->phases = ph;

out:
    free(items);
    free(order);
    free(done);
    return rc;
}

void phases_print(const weir_conf_t *cf, FILE *out)
{
    const struct phases *ph = cf->phases;
    if (!ph)
        return;
    for (int p = 0; p < WEIR_PHASE_COUNT; p++) {
        if (ph->start[p] == ph->start[p + 1])
            continue;
        fprintf(out, "%s: ", phase_name((weir_phase_t)p));
        for (size_t i = ph->start[p]; i < ph->start[p + 1]; i++)
            fprintf(out, "%s%s", i > ph->start[p] ? ", " : "", ph->entries[i].handler->name);
        fputc('\n', out);
    }
}
