/*
 * Peer health shared by every worker of a generation. One shared zone holds a
 * state per peer; workers update it with atomics, so a server that one worker
 * finds failing is avoided by all, and the healthcheck module's verdicts (made
 * in one process) are seen everywhere. Two sources mark a peer down and
 * either is enough: an active check (weir_peer_set_down) and passive failures
 * (max_fails connect failures within fail_timeout keep it down for
 * fail_timeout, as nginx does).
 *
 * Times are CLOCK_MONOTONIC milliseconds, which is one clock for all
 * processes of the machine.
 *
 * Across a reload the passive state is carried when the servers are the same
 * (the zone's name fingerprints the layout, see shm.c), and the active
 * verdicts are not: they live in a zone of their own generation, which the
 * checker's new generation fills in from its own carried state
 * (weir_peer_set_down at conf_done). So an old generation's checker, still
 * finishing a probe while it drains, can never leave a verdict behind in a
 * generation whose config no longer checks that server.
 */
#include <stdatomic.h>
#include <stdio.h>

#include "conf.h"
#include "log.h"
#include "loop.h"
#include "request.h"

struct peer_shared {
    _Atomic uint64_t down_until;   /* passive verdict, monotonic ms */
    _Atomic uint64_t window_start; /* start of the current fail_timeout window */
    _Atomic uint32_t fails;        /* failures in that window */
};

struct peer_verdict {
    _Atomic uint32_t checked_down; /* active verdict */
};

static uint64_t monotonic_now(void)
{
    return g_loop ? g_loop->now : now_us() / 1000;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull; /* a separator: "ab","c" != "a","bc" */
}

/* The zone is indexed by position, so its name fingerprints the layout: a
 * reload that keeps every upstream's servers carries their health on (shm.c);
 * one that changes them starts fresh. */
static void zone_name(const weir_conf_t *cf, char *buf, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t u = 0; u < cf->nupstreams; u++) {
        h = fnv1a(h, cf->upstreams[u].name);
        for (size_t i = 0; i < cf->upstreams[u].npeers; i++)
            h = fnv1a(h, cf->upstreams[u].peers[i].address);
    }
    snprintf(buf, len, "weir.peers.%016llx", (unsigned long long)h);
}

int peers_reserve(weir_conf_t *cf)
{
    size_t total = 0;
    for (size_t u = 0; u < cf->nupstreams; u++)
        total += cf->upstreams[u].npeers;
    if (total == 0)
        return 0;
    unsigned errors = cf->nerrors;
    static unsigned long loads; /* a verdict zone name no earlier load used */
    char name[64], verdicts_name[64];
    zone_name(cf, name, sizeof(name));
    snprintf(verdicts_name, sizeof(verdicts_name), "weir.verdicts.%lu", ++loads);
    struct peer_shared *zone = weir_shm_zone(cf, name, total * sizeof(*zone));
    struct peer_verdict *verdicts =
        zone ? weir_shm_zone(cf, verdicts_name, total * sizeof(*verdicts)) : NULL;
    if (!verdicts)
        return cf->nerrors > errors
                   ? -1
                   : weir_conf_error(cf, NULL, "out of memory reserving peer health");
    for (size_t u = 0; u < cf->nupstreams; u++) {
        for (size_t i = 0; i < cf->upstreams[u].npeers; i++) {
            cf->upstreams[u].peers[i].shared = zone++;
            cf->upstreams[u].peers[i].verdict = verdicts++;
        }
    }
    return 0;
}

int weir_peer_is_down(const weir_upstream_t *u, size_t i)
{
    if (i >= u->npeers || !u->peers[i].shared)
        return 0;
    struct peer_shared *ps = u->peers[i].shared;
    if (atomic_load_explicit(&u->peers[i].verdict->checked_down, memory_order_relaxed))
        return 1;
    return atomic_load_explicit(&ps->down_until, memory_order_relaxed) > monotonic_now();
}

void weir_peer_set_down(const weir_upstream_t *u, size_t i, int down)
{
    if (i < u->npeers && u->peers[i].verdict)
        atomic_store(&u->peers[i].verdict->checked_down, down ? 1u : 0u);
}

const struct sockaddr *weir_peer_sockaddr(const weir_upstream_t *u, size_t i, socklen_t *len)
{
    if (i >= u->npeers)
        return NULL;
    if (len)
        *len = u->peers[i].addr.len;
    return (const struct sockaddr *)&u->peers[i].addr.ss;
}

void peer_report(const weir_upstream_t *u, size_t i, int ok)
{
    if (i >= u->npeers || !u->peers[i].shared || u->max_fails == 0)
        return;
    struct peer_shared *ps = u->peers[i].shared;
    if (ok) {
        if (atomic_load_explicit(&ps->fails, memory_order_relaxed))
            atomic_store(&ps->fails, 0);
        return;
    }
    uint64_t now = monotonic_now();
    uint64_t start = atomic_load(&ps->window_start);
    if (now - start > u->fail_timeout &&
        atomic_compare_exchange_strong(&ps->window_start, &start, now))
        atomic_store(&ps->fails, 0);
    uint32_t fails = atomic_fetch_add(&ps->fails, 1) + 1;
    if (fails < (unsigned long)u->max_fails)
        return;
    /* Only the worker whose exchange moves the deadline logs the change. */
    uint64_t until = atomic_load(&ps->down_until);
    if (until <= now &&
        atomic_compare_exchange_strong(&ps->down_until, &until, now + u->fail_timeout)) {
        atomic_store(&ps->fails, 0);
        char d[WEIR_DURATION_LEN];
        log_warn("upstream %s: server %s marked down for %s after %u failures", u->name,
                 u->peers[i].address, weir_duration_text(u->fail_timeout, d), fails);
    }
}
