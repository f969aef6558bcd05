/* Built "against" ABI 1.5: it might call functions this weir lacks, so the
 * loader must refuse it. */
#include <weir/module.h>

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    .abi_major = WEIR_ABI_MAJOR,
    .abi_minor = WEIR_ABI_MINOR + 5,
    .struct_size = sizeof(weir_module_t),
    .name = "newer_minor",
    .version = "0.1",
};
