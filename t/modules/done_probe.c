/* Which modules' conf_done runs on a config with errors (ABI 1.6), built
 * twice: done_old claims ABI minor 5, whose modules were promised conf_done
 * only on an error-free config; init_fails fails its conf_init, so its
 * conf_done must never run. Each conf_done says that it ran, as an error
 * without a position, so t/unit/conf_test.c sees it. */
#include <weir/module.h>

#ifndef DONE_MINOR
#define DONE_MINOR WEIR_ABI_MINOR
#endif

static int conf_init(weir_conf_t *cf)
{
#ifdef DONE_INIT_FAILS
    return weir_conf_error(cf, NULL, DONE_NAME ": conf_init failed");
#else
    (void)cf;
    return 0;
#endif
}

static int conf_done(weir_conf_t *cf)
{
    return weir_conf_error(cf, NULL, DONE_NAME ": conf_done ran");
}

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    .abi_major = WEIR_ABI_MAJOR,
    .abi_minor = DONE_MINOR,
    .struct_size = sizeof(weir_module_t),
    .name = DONE_NAME,
    .version = "1.0",
    .conf_init = conf_init,
    .conf_done = conf_done,
};
