/*
 * Module lb_roundrobin: the "roundrobin" balancer, smooth weighted round
 * robin over an upstream's servers (see swrr.h), skipping servers that are
 * down or already tried by the request, with backups only when no primary is
 * usable.
 *
 * The state is allocated from the config arena at load time in the master;
 * every worker inherits its own copy through fork, so each worker rotates
 * independently (as nginx workers do without a shared zone).
 */
#include <stddef.h>

#include "weir/module.h"

#include "swrr.h"

struct rr_ctx {
    weir_request_t *r;
    const weir_upstream_t *u;
};

static int rr_usable(void *ctx, size_t i)
{
    struct rr_ctx *c = ctx;

    return weir_peer_usable(c->r, c->u, i);
}

static void *rr_init(weir_conf_t *cf, weir_upstream_t *u)
{
    size_t n = weir_upstream_peer_count(u);
    struct swrr *s = weir_conf_alloc(cf, swrr_size(n));
    /* scratch for swrr_init; it stays in the arena, a few bytes per server */
    unsigned *weights = weir_conf_alloc(cf, (n ? n : 1) * sizeof(*weights));
    int *backup = weir_conf_alloc(cf, (n ? n : 1) * sizeof(*backup));

    if (s == NULL || weights == NULL || backup == NULL) {
        weir_conf_error(cf, weir_upstream_node(u), "upstream \"%s\": out of memory",
                        weir_upstream_name(u));
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        weights[i] = weir_peer_weight(u, i);
        backup[i] = weir_peer_is_backup(u, i);
    }
    swrr_init(s, n, weights, backup);
    return s;
}

static int rr_pick(weir_request_t *r, weir_upstream_t *u, void *state)
{
    struct rr_ctx c = {.r = r, .u = u};

    return swrr_pick(state, rr_usable, &c);
}

static const weir_balancer_t rr_balancers[] = {
    {.name = "roundrobin", .init = rr_init, .pick = rr_pick},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "lb_roundrobin",
    .version = "1.0.0",
    .balancers = rr_balancers,
};
