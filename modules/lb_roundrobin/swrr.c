/*
 * Smooth weighted round robin; the algorithm is described in swrr.h.
 */
#include "swrr.h"

size_t swrr_size(size_t n)
{
    return sizeof(struct swrr) + n * sizeof(struct swrr_peer);
}

void swrr_init(struct swrr *s, size_t n, const unsigned *weights, const int *backup)
{
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        unsigned w = weights ? weights[i] : 1;

        /* a zero weight would never gain score; treat it as the minimum */
        s->peer[i] = (struct swrr_peer){
            .weight = w ? (long)w : 1, .current = 0, .backup = backup ? backup[i] != 0 : 0};
    }
}

/* One smooth WRR step over the peers whose backup flag equals `backup`. */
static int pick_tier(struct swrr *s, int backup, int (*usable)(void *ctx, size_t i), void *ctx)
{
    struct swrr_peer *best = NULL;
    int best_i = -1;
    long total = 0;

    for (size_t i = 0; i < s->n; i++) {
        struct swrr_peer *p = &s->peer[i];

        if (p->backup != backup || (usable != NULL && !usable(ctx, i)))
            continue;
        p->current += p->weight;
        total += p->weight;
        /* strictly greater: ties go to the first peer in config order */
        if (best == NULL || p->current > best->current) {
            best = p;
            best_i = (int)i;
        }
    }
    if (best != NULL)
        best->current -= total;
    return best_i;
}

int swrr_pick(struct swrr *s, int (*usable)(void *ctx, size_t i), void *ctx)
{
    int i = pick_tier(s, 0, usable, ctx);

    return i >= 0 ? i : pick_tier(s, 1, usable, ctx);
}
