/*
 * Smooth weighted round robin, as nginx balances upstream servers.
 *
 * Each pick, every usable peer's `current` grows by its weight; the peer with
 * the highest `current` wins (the first in config order on a tie) and loses
 * the total weight of the usable peers. Over any run of picks where the set
 * of usable peers does not change, each peer gets picks in proportion to its
 * weight, and the picks are spread out rather than bunched: weights {5,1,1}
 * give a a b a c a a, then repeat.
 *
 * Backup peers form a second, independent rotation used only when no primary
 * is usable. Peers that are not usable (down, or already tried by this
 * request) neither gain nor lose `current`, so the others keep their
 * proportion while one is out.
 *
 * Pure C, no allocation: the caller provides swrr_size(n) bytes (weir: the
 * config arena, so each worker gets its own copy through fork). Not
 * thread-safe; weir workers are single-threaded.
 */
#ifndef WEIR_LB_SWRR_H
#define WEIR_LB_SWRR_H

#include <stddef.h>

struct swrr_peer {
    long weight;  /* >= 1 */
    long current; /* the running score; bounded by the total weight */
    int backup;
};

struct swrr {
    size_t n;
    struct swrr_peer peer[];
};

/* Bytes for a state with n peers. */
size_t swrr_size(size_t n);

/* Sets up s (of swrr_size(n) bytes) with n peers. weights may be NULL (all 1);
 * a weight of 0 counts as 1. backup may be NULL (no backups); else nonzero
 * marks a backup peer. */
void swrr_init(struct swrr *s, size_t n, const unsigned *weights, const int *backup);

/* Index of the next peer among those usable(ctx, i) accepts (called at most
 * once per peer per rotation tried; NULL: every peer is usable), or -1 when
 * no peer is usable. Primaries
 * first; backups only when no primary is usable. */
int swrr_pick(struct swrr *s, int (*usable)(void *ctx, size_t i), void *ctx);

#endif
