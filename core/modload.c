/*
 * Module loader. Every refusal is one sentence that names the file and, where
 * versions are involved, both of them: an operator reading it should know
 * which file to rebuild or which weir to upgrade without opening the source.
 */
#include "modload.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"

/* The module name a path implies: its basename without ".so". */
static const char *name_from_path(weir_conf_t *cf, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".so") == 0)
        n -= 3;
    return arena_strndup(cf->arena, base, n);
}

static const char *version_of(const weir_module_t *d)
{
    return d->version ? d->version : "(no version)";
}

/*
 * Loaded libraries, by file identity. A reload must pick up a module file
 * that was replaced on disk, but glibc's dlopen() hands back the already
 * loaded object for a path it has seen, even when the path now names a new
 * file. So a module is opened by descriptor and loaded through
 * /proc/self/fd/N: glibc then matches loaded objects by device and inode
 * only, which is exactly "the same file". The descriptor stays open while
 * the library is loaded, so that name cannot be reused for another file
 * while glibc remembers it.
 *
 * A file overwritten in place (same inode, cp over it) cannot be loaded
 * anew -- glibc would return the mapped copy, whose pages the overwrite has
 * already changed under the running workers -- so it is refused with the fix.
 */
struct library {
    struct library *next;
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    off_t size;
    int fd;
    void *handle;
    unsigned refs;
};

static struct library *libraries;

static void *library_open(weir_conf_t *cf, const weir_node_t *where, const char *name,
                          const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        weir_conf_error(cf, where, "cannot load module '%s' from %s: %s", name, path,
                        strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    for (struct library *l = libraries; l; l = l->next) {
        if (l->dev != st.st_dev || l->ino != st.st_ino)
            continue;
        close(fd);
        if (l->size != st.st_size || l->mtime.tv_sec != st.st_mtim.tv_sec ||
            l->mtime.tv_nsec != st.st_mtim.tv_nsec) {
            weir_conf_error(cf, where,
                            "cannot load module '%s': %s was modified in place while loaded; "
                            "replace a module file with a rename (install(1) or mv), never by "
                            "writing over it",
                            name, path);
            return NULL;
        }
        l->refs++;
        return l->handle;
    }
    struct library *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        weir_conf_error(cf, where, "out of memory loading module %s", path);
        return NULL;
    }
    char byfd[64];
    snprintf(byfd, sizeof(byfd), "/proc/self/fd/%d", fd);
    /* Without /proc the path itself still loads; only a replaced file is
     * then not picked up. */
    const char *target = access(byfd, R_OK) == 0 ? byfd : path;
    /* RTLD_NOW: an unresolved weir_* symbol (a module built for a newer core)
     * fails here at load, not in a worker in the middle of a request.
     * RTLD_LOCAL: modules cannot see or clash with each other's symbols. */
    dlerror();
    l->handle = dlopen(target, RTLD_NOW | RTLD_LOCAL);
    if (!l->handle) {
        const char *why = dlerror();
        size_t tlen = strlen(target);
        /* glibc prefixes the name it was given; name the real file instead */
        if (why && strncmp(why, target, tlen) == 0 && strncmp(why + tlen, ": ", 2) == 0)
            why += tlen + 2;
        weir_conf_error(cf, where, "cannot load module '%s' from %s: %s", name, path,
                        why ? why : "unknown error");
        close(fd);
        free(l);
        return NULL;
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    l->mtime = st.st_mtim;
    l->size = st.st_size;
    l->fd = fd;
    l->refs = 1;
    l->next = libraries;
    libraries = l;
    return l->handle;
}

static void library_close(void *handle)
{
    for (struct library **pp = &libraries; *pp; pp = &(*pp)->next) {
        struct library *l = *pp;
        if (l->handle != handle)
            continue;
        if (--l->refs)
            return;
        *pp = l->next;
        dlclose(l->handle);
        char byfd[64];
        snprintf(byfd, sizeof(byfd), "/proc/self/fd/%d", l->fd);
        /* A library glibc keeps (RTLD_NODELETE, unique symbols) still answers
         * to /proc/self/fd/N: keep N open so no other file ever gets it. */
        if (!dlopen(byfd, RTLD_NOW | RTLD_NOLOAD))
            close(l->fd);
        free(l);
        return;
    }
}

int modload_open(weir_conf_t *cf, const weir_node_t *where, const char *name, const char *path,
                 module_slot_t *slot)
{
    char buf[PATH_MAX];
    void *handle = NULL;

    if (!path) {
        const char *dir = cf->modules_dir ? cf->modules_dir : WEIR_DEFAULT_MODULES_DIR_FALLBACK;
        int n = snprintf(buf, sizeof(buf), "%s/%s.so", dir, name);
        if (n < 0 || (size_t)n >= sizeof(buf))
            return weir_conf_error(cf, where, "cannot load module '%s': path %s/%s.so is too long",
                                   name, dir, name);
        path = buf;
    }
    if (!name) {
        name = name_from_path(cf, path);
        if (!name)
            return weir_conf_error(cf, where, "out of memory loading module %s", path);
    }

    handle = library_open(cf, where, name, path);
    if (!handle)
        return -1;

    dlerror();
    const weir_module_t *d = dlsym(handle, WEIR_MODULE_SYMBOL);
    if (!d) {
        weir_conf_error(cf, where,
                        "cannot load module '%s' from %s: it does not export '%s', so it is "
                        "not a weir module",
                        name, path, WEIR_MODULE_SYMBOL);
        goto fail;
    }

    /* Only the frozen fields are read until the versions are known good. */
    if (d->abi_major != WEIR_ABI_MAJOR) {
        weir_conf_error(cf, where,
                        "module %s was built for weir module ABI %u.%u, this weir provides "
                        "%d.%d; rebuild it against this weir's headers",
                        path, (unsigned)d->abi_major, (unsigned)d->abi_minor, WEIR_ABI_MAJOR,
                        WEIR_ABI_MINOR);
        goto fail;
    }
    if (d->abi_minor > WEIR_ABI_MINOR) {
        weir_conf_error(cf, where,
                        "module %s was built for weir module ABI %u.%u, newer than this weir's "
                        "%d.%d; upgrade weir or rebuild the module",
                        path, (unsigned)d->abi_major, (unsigned)d->abi_minor, WEIR_ABI_MAJOR,
                        WEIR_ABI_MINOR);
        goto fail;
    }
    if (d->struct_size < MODULE_FROZEN_SIZE) {
        weir_conf_error(cf, where,
                        "module %s (ABI %u.%u) has a descriptor of %u bytes, shorter than the "
                        "%zu bytes every ABI %d.x descriptor starts with (this weir provides "
                        "%d.%d); rebuild it against this weir's headers",
                        path, (unsigned)d->abi_major, (unsigned)d->abi_minor,
                        (unsigned)d->struct_size,
                        (size_t)MODULE_FROZEN_SIZE, WEIR_ABI_MAJOR, WEIR_ABI_MAJOR,
                        WEIR_ABI_MINOR);
        goto fail;
    }
    if (!d->name || strcmp(d->name, name) != 0) {
        weir_conf_error(cf, where,
                        "module %s (version %s) calls itself '%s', not '%s'; a module's name "
                        "must equal its file name without .so",
                        path, version_of(d), d->name ? d->name : "(null)", name);
        goto fail;
    }
    for (size_t i = 0; i < cf->nmodules; i++) {
        const module_slot_t *o = &cf->modules[i];
        if (o == slot || !o->desc || strcmp(o->desc->name, d->name) != 0)
            continue;
        weir_conf_error(cf, where,
                        "module %s ('%s' version %s) clashes with module '%s' version %s, "
                        "already loaded from %s",
                        path, d->name, version_of(d), o->desc->name, version_of(o->desc),
                        o->path ? o->path : "(linked in)");
        goto fail;
    }

    slot->path = arena_strdup(cf->arena, path);
    if (!slot->path) {
        weir_conf_error(cf, where, "out of memory loading module %s", path);
        goto fail;
    }
    slot->desc = d;
    slot->handle = handle;
    return 0;

fail:
    library_close(handle);
    return -1;
}

void modload_close(module_slot_t *slot)
{
    if (slot->handle)
        library_close(slot->handle);
    slot->handle = NULL;
}

/* Keys of the standard modules, so that a config written for a module that is
 * not listed in modules: gets "provided by module 'X', which is not loaded"
 * instead of a bare "unknown key". */
static const struct known_key {
    unsigned scope;
    const char *key;
    const char *module;
} known_keys[] = {
    {WEIR_SCOPE_ROUTE, "host", "router"},
    {WEIR_SCOPE_ROUTE, "path", "router"},
    {WEIR_SCOPE_ROUTE, "methods", "router"},
    {WEIR_SCOPE_ROUTE | WEIR_SCOPE_MAIN, "rewrite", "rewrite"},
    {WEIR_SCOPE_ROUTE, "redirect", "rewrite"},
    {WEIR_SCOPE_ROUTE | WEIR_SCOPE_MAIN, "request_headers", "headers"},
    {WEIR_SCOPE_ROUTE | WEIR_SCOPE_MAIN, "response_headers", "headers"},
    {WEIR_SCOPE_ROUTE | WEIR_SCOPE_MAIN, "access_log", "accesslog"},
    {WEIR_SCOPE_UPSTREAM, "hash_key", "lb_ketama"},
    {WEIR_SCOPE_UPSTREAM, "health_check", "healthcheck"},
    {WEIR_SCOPE_UPSTREAM, "tls", "tls"},
    {WEIR_SCOPE_LISTENER, "tls", "tls"},
};

const char *modload_known_owner(unsigned scope, const char *key)
{
    if (!key)
        return NULL;
    for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]); i++) {
        if ((known_keys[i].scope & scope) && strcmp(known_keys[i].key, key) == 0)
            return known_keys[i].module;
    }
    return NULL;
}

size_t modload_known_keys(unsigned scope, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]) && n < cap; i++)
        if (known_keys[i].scope & scope)
            out[n++] = known_keys[i].key;
    return n;
}

const char *modload_known_balancer_owner(const char *name)
{
    static const struct {
        const char *balancer, *module;
    } known_balancers[] = {{"roundrobin", "lb_roundrobin"}, {"ketama", "lb_ketama"}};
    for (size_t i = 0; i < sizeof(known_balancers) / sizeof(known_balancers[0]); i++)
        if (strcmp(known_balancers[i].balancer, name) == 0)
            return known_balancers[i].module;
    return NULL;
}

int modload_run_conf_hook(weir_conf_t *cf, enum module_hook which)
{
    int rc = 0;
    for (size_t i = 0; i < cf->nmodules; i++) {
        const weir_module_t *d = cf->modules[i].desc;
        int (*hook)(weir_conf_t *) = NULL;
        const char *what = NULL;
        if (!d)
            continue;
        switch (which) {
        case HOOK_CONF_INIT:
            hook = MODULE_HAS(d, conf_init) ? d->conf_init : NULL;
            what = "conf_init";
            break;
        case HOOK_CONF_DONE:
            hook = MODULE_HAS(d, conf_done) ? d->conf_done : NULL;
            what = "conf_done";
            if (hook && (cf->modules[i].init_failed ||
                         (cf->nerrors && d->abi_minor < MODULE_MINOR_PARTIAL_CONF))) {
                hook = NULL;
                rc = -1;
            }
            break;
        }
        if (!hook)
            continue;
        unsigned before = cf->nerrors;
        if (hook(cf) != 0) {
            rc = -1;
            if (which == HOOK_CONF_INIT)
                cf->modules[i].init_failed = 1;
            /* a failure the operator cannot see would be worse than a vague
             * one; after other errors it may be one of their consequences */
            if (cf->nerrors == before && before == 0)
                weir_conf_error(cf, conf_modules_key(cf),
                                "module '%s' failed in %s without saying why", d->name, what);
        }
    }
    return rc;
}

int modload_all_at_least(const weir_conf_t *cf, unsigned minor)
{
    for (size_t i = 0; i < cf->nmodules; i++)
        if (cf->modules[i].desc && cf->modules[i].desc->abi_minor < minor)
            return 0;
    return 1;
}
