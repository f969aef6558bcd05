/*
 * Module loader: dlopen a module, check its descriptor, refuse with one
 * sentence naming the file and both versions. Also knows which standard
 * module owns which key, so the config loader can say "provided by module
 * 'X', which is not loaded".
 */
#ifndef WEIR_MODLOAD_H
#define WEIR_MODLOAD_H

#include "conf.h"

/* Opens `path` (or <cf->modules_dir>/<name>.so when path is NULL) into slot.
 * On failure records a conf error at `where` and returns -1. The loader
 * refuses: a missing file or symbol, an ABI major other than ours, a minor
 * newer than ours, a struct_size smaller than the frozen prefix, a name that
 * differs from `name`, and a name already loaded (checked by the caller
 * through conf_module_index). */
int modload_open(weir_conf_t *cf, const weir_node_t *where, const char *name, const char *path,
                 module_slot_t *slot);
void modload_close(module_slot_t *slot);

/* For a key not owned by any loaded module: the standard module that would
 * own it in this scope (a weir_scope_t bit), or NULL. */
const char *modload_known_owner(unsigned scope, const char *key);

/* Calls hook `which` of every module in order with the module as context.
 * Returns -1 if any hook failed. */
enum module_hook { HOOK_CONF_INIT, HOOK_CONF_DONE };
int modload_run_conf_hook(weir_conf_t *cf, enum module_hook which);

#endif
