/*
 * Shared memory zones: anonymous shared mappings made by the master at
 * config time, so every worker forked afterwards sees the same pages.
 */
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "conf.h"

struct shm_zone {
    struct shm_zone *next;
    const char *name;
    size_t size;
    void *addr;
};

static void unmap_zone(void *arg)
{
    struct shm_zone *z = arg;
    munmap(z->addr, z->size);
}

void *weir_shm_zone(weir_conf_t *cf, const char *name, size_t size)
{
    for (struct shm_zone *z = cf->shm_zones; z; z = z->next) {
        if (strcmp(z->name, name) == 0) {
            if (z->size != size) {
                weir_conf_error(cf, cf->root, "shared zone '%s' requested with sizes %zu and %zu",
                                name, z->size, size);
                return NULL;
            }
            return z->addr;
        }
    }
    struct shm_zone *z = weir_conf_alloc(cf, sizeof(*z));
    if (!z)
        return NULL;
    z->addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (z->addr == MAP_FAILED) {
        weir_conf_error(cf, cf->root, "cannot map shared zone '%s' of %zu bytes", name, size);
        return NULL;
    }
    z->name = weir_conf_strdup(cf, name);
    z->size = size;
    z->next = cf->shm_zones;
    cf->shm_zones = z;
    arena_cleanup(cf->arena, unmap_zone, z);
    return z->addr;
}
