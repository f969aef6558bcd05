/* A shared object without the descriptor symbol. */
#include <weir/module.h>

WEIR_MODULE_EXPORT int not_a_weir_module = 1;
