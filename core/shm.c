/*
 * Shared memory zones: anonymous shared mappings made by the master at
 * config time, so every worker forked afterwards sees the same pages.
 *
 * A reload carries state: a zone the new generation asks for with the name
 * and size of one the running generation holds is that same mapping, so
 * health verdicts and counters go on across the reload, and old and new
 * workers see one state while the old ones drain. A mapping is unmapped when
 * the last generation holding it is freed. Zones do not survive a binary
 * upgrade (the new master maps its own).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "conf.h"

/* One mapping, shared by the generations that hold it. */
struct shm_map {
    void *addr;
    size_t size;
    unsigned refs;
};

struct shm_zone {
    struct shm_zone *next;
    const char *name;
    struct shm_map *map;
    int created; /* by this generation, not carried over */
};

static void release_map(void *arg)
{
    struct shm_map *m = arg;
    if (--m->refs)
        return;
    munmap(m->addr, m->size);
    free(m);
}

static struct shm_zone *find_zone(const weir_conf_t *cf, const char *name)
{
    for (struct shm_zone *z = cf ? cf->shm_zones : NULL; z; z = z->next)
        if (strcmp(z->name, name) == 0)
            return z;
    return NULL;
}

/* The running generation's mapping of that name and size, or a new one. */
static struct shm_map *map_for(const weir_conf_t *cf, const char *name, size_t size,
                              int *carried)
{
    struct shm_zone *old = find_zone(cf->previous, name);
    if (old && old->map->size == size) {
        old->map->refs++;
        *carried = 1;
        return old->map;
    }
    struct shm_map *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m->addr == MAP_FAILED) {
        free(m);
        return NULL;
    }
    m->size = size;
    m->refs = 1;
    return m;
}

void *weir_shm_zone(weir_conf_t *cf, const char *name, size_t size)
{
    struct shm_zone *z = find_zone(cf, name);
    if (z) {
        if (z->map->size != size) {
            weir_conf_error(cf, cf->root, "shared zone '%s' requested with sizes %zu and %zu",
                            name, z->map->size, size);
            return NULL;
        }
        return z->map->addr;
    }
    z = weir_conf_alloc(cf, sizeof(*z));
    const char *copy = weir_conf_strdup(cf, name);
    int carried = 0;
    struct shm_map *m = z && copy ? map_for(cf, name, size, &carried) : NULL;
    if (!m) {
        weir_conf_error(cf, cf->root, "cannot map shared zone '%s' of %zu bytes", name, size);
        return NULL;
    }
    if (arena_cleanup(cf->arena, release_map, m) < 0) {
        release_map(m);
        weir_conf_error(cf, cf->root, "out of memory for shared zone '%s'", name);
        return NULL;
    }
    z->name = copy;
    z->map = m;
    z->created = !carried;
    z->next = cf->shm_zones;
    cf->shm_zones = z;
    return m->addr;
}

int weir_shm_zone_created(const weir_conf_t *cf, const void *zone)
{
    for (struct shm_zone *z = cf ? cf->shm_zones : NULL; z; z = z->next)
        if (z->map->addr == zone)
            return z->created;
    return 0;
}
