/* Claims ABI 2.0: the loader must refuse it and name both versions. */
#include <weir/module.h>

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    .abi_major = WEIR_ABI_MAJOR + 1,
    .abi_minor = 0,
    .struct_size = sizeof(weir_module_t),
    .name = "bad_abi",
    .version = "0.1",
};
