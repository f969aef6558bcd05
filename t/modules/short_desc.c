/* A descriptor whose struct_size stops inside the frozen prefix. */
#include <weir/module.h>

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    .abi_major = WEIR_ABI_MAJOR,
    .abi_minor = WEIR_ABI_MINOR,
    .struct_size = 8,
    .name = "short_desc",
    .version = "0.1",
};
