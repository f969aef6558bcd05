/* Mimics a module built against an older minor whose descriptor ended before
 * the lifecycle hooks: the hooks set here lie past struct_size and must never
 * be called. */
#include <stddef.h>

#include <weir/module.h>

static int conf_init(weir_conf_t *cf)
{
    return weir_conf_error(cf, NULL, "old_minor: conf_init must not run");
}

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    .abi_major = WEIR_ABI_MAJOR,
    .abi_minor = 0,
    .struct_size = offsetof(weir_module_t, conf_init),
    .name = "old_minor",
    .version = "0.1",
    .conf_init = conf_init,
};
