/* A file named dup_router.so whose descriptor says "router": refused when
 * listed as dup_router, and refused as a clash when listed as router next to
 * the real one. */
#include <weir/module.h>

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "router",
    .version = "9.9",
};
