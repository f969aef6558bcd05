/* Shared server session cache (see session_cache.h). */
#include "session_cache.h"

#include <string.h>

static scache_slot_t *slot_for(scache_t *sc, const unsigned char *id, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a: session IDs are random already */
    for (size_t i = 0; i < len; i++)
        h = (h ^ id[i]) * 16777619u;
    return &sc->slots[h % SCACHE_SLOTS];
}

static int try_lock(scache_slot_t *s)
{
    return __atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE) == 0;
}

static void unlock(scache_slot_t *s)
{
    __atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
}

static int same_id(const scache_slot_t *s, const unsigned char *id, size_t len)
{
    return s->len && s->id_len == len && memcmp(s->id, id, len) == 0;
}

int scache_put(scache_t *sc, const unsigned char *id, size_t id_len, const unsigned char *der,
               size_t len, uint64_t expires)
{
    if (!sc || id_len == 0 || id_len > SCACHE_ID_MAX || len == 0 || len > SCACHE_DATA)
        return -1;
    scache_slot_t *s = slot_for(sc, id, id_len);
    if (!try_lock(s))
        return -1;
    memcpy(s->id, id, id_len);
    s->id_len = (unsigned char)id_len;
    memcpy(s->data, der, len);
    s->len = (uint32_t)len;
    s->expires = expires;
    unlock(s);
    return 0;
}

size_t scache_get(scache_t *sc, const unsigned char *id, size_t id_len, uint64_t now,
                  unsigned char *buf, size_t cap)
{
    if (!sc || id_len == 0 || id_len > SCACHE_ID_MAX)
        return 0;
    scache_slot_t *s = slot_for(sc, id, id_len);
    if (!try_lock(s))
        return 0;
    size_t n = 0;
    if (same_id(s, id, id_len)) {
        if (s->expires <= now)
            s->len = 0;
        else if (s->len <= cap)
            memcpy(buf, s->data, n = s->len);
    }
    unlock(s);
    return n;
}

void scache_remove(scache_t *sc, const unsigned char *id, size_t id_len)
{
    if (!sc || id_len == 0 || id_len > SCACHE_ID_MAX)
        return;
    scache_slot_t *s = slot_for(sc, id, id_len);
    if (!try_lock(s))
        return;
    if (same_id(s, id, id_len))
        s->len = 0;
    unlock(s);
}
