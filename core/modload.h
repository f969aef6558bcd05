/*
 * Module loader: dlopen a module, check its descriptor, refuse with one
 * sentence naming the file and both versions. Also knows which standard
 * module owns which key, so the config loader can say "provided by module
 * 'X', which is not loaded".
 */
#ifndef WEIR_MODLOAD_H
#define WEIR_MODLOAD_H

#include <stddef.h>

#include "conf.h"

/* True if a descriptor of d->struct_size bytes includes `field`: a module
 * built against an older minor has a shorter descriptor, and the bytes past
 * its end are not ours to read. */
#define MODULE_HAS(d, field)                                                              \
    ((size_t)(d)->struct_size >= offsetof(weir_module_t, field) + sizeof((d)->field))

/* The first minor whose conf_done runs on a config with errors elsewhere. */
#define MODULE_MINOR_PARTIAL_CONF 6
/* The first minor that can say it answers a route (weir_route_set_answered). */
#define MODULE_MINOR_ANSWERS_ROUTES 6

/* Bytes every descriptor has, whatever its minor: up to conf_size. */
#define MODULE_FROZEN_SIZE offsetof(weir_module_t, conf_size)

/* Opens `path` (or <cf->modules_dir>/<name>.so when path is NULL) into slot.
 * On failure records a conf error at `where` and returns -1. The loader
 * refuses: a missing file or symbol, an ABI major other than ours, a minor
 * newer than ours, a struct_size smaller than the frozen prefix, a name that
 * differs from `name` (NULL: the file name without ".so"), and a name that
 * another slot of cf->modules[0..nmodules) already holds. The slot's desc,
 * handle and path are set; index and main_conf are the caller's. */
int modload_open(weir_conf_t *cf, const weir_node_t *where, const char *name, const char *path,
                 module_slot_t *slot);
/* dlclose()s the handle (if any) and clears the slot's handle. Hooks are not
 * called here: conf_free runs conf_free hooks before closing. */
void modload_close(module_slot_t *slot);

/* For a key not owned by any loaded module: the standard module that would
 * own it in this scope (a weir_scope_t bit), or NULL. */
const char *modload_known_owner(unsigned scope, const char *key);
/* Puts the standard modules' keys valid in `scope` into out (for "did you
 * mean" suggestions); returns how many, at most cap. */
size_t modload_known_keys(unsigned scope, const char **out, size_t cap);
/* The standard module that registers balancer `name` ("ketama" ->
 * "lb_ketama"), or NULL. */
const char *modload_known_balancer_owner(const char *name);

/* Calls hook `which` of every module in modules: order (skipping modules whose
 * descriptor is too short to have the field). Every hook runs even after one
 * failed, so one run reports all errors. conf_done runs on a config that has
 * errors too, except for a module whose conf_init failed (its own setup is
 * missing) and for a module built against an ABI older than 1.6, which was
 * promised a config without errors there. A hook that fails without
 * recording an error gets a generic one, unless the config already had
 * errors (the failure may be their consequence). Returns 0 when every
 * module's hook ran and succeeded, -1 when one failed or was left out. */
enum module_hook { HOOK_CONF_INIT, HOOK_CONF_DONE };
int modload_run_conf_hook(weir_conf_t *cf, enum module_hook which);

/* Whether every loaded module was built against at least `minor`. */
int modload_all_at_least(const weir_conf_t *cf, unsigned minor);

#endif
