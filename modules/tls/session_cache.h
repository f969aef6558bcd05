/*
 * The server session cache shared by every worker: TLS 1.2 session IDs (and
 * TLS 1.3 stateful tickets when session_tickets is off) resume on any worker
 * and across a reload that keeps the zone.
 *
 * A direct-mapped table in a shared zone: the session ID's hash picks one
 * slot, a newer session evicts an older one there, a session too big for a
 * slot (long client certificate chains) is not cached. Each slot has its own
 * lock that is only ever tried, never waited for: a slot another worker is
 * writing counts as a miss, so the event loop never blocks and a worker that
 * dies mid-write costs one slot, not the cache.
 */
#ifndef WEIR_TLS_SESSION_CACHE_H
#define WEIR_TLS_SESSION_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define SCACHE_SLOTS 4096
#define SCACHE_DATA 1024
#define SCACHE_ID_MAX 32

typedef struct scache_slot {
    uint32_t lock; /* 0 free, 1 held; __atomic builtins */
    uint32_t len;  /* 0: empty */
    uint64_t expires; /* unix seconds */
    unsigned char id_len;
    unsigned char id[SCACHE_ID_MAX];
    unsigned char data[SCACHE_DATA];
} scache_slot_t;

typedef struct scache {
    scache_slot_t slots[SCACHE_SLOTS];
} scache_t;

/* Stores a serialized session under id. 0, or -1 (too big, or busy). */
int scache_put(scache_t *sc, const unsigned char *id, size_t id_len, const unsigned char *der,
               size_t len, uint64_t expires);
/* Copies the session stored under id into buf (cap bytes); its length, or 0
 * (none, expired, busy). */
size_t scache_get(scache_t *sc, const unsigned char *id, size_t id_len, uint64_t now,
                  unsigned char *buf, size_t cap);
void scache_remove(scache_t *sc, const unsigned char *id, size_t id_len);

#endif
