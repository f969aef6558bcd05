/* cycle_a.check must run before cycle_b.check, which says the opposite. */
#include <weir/module.h>

static weir_result_t check(weir_request_t *r)
{
    (void)r;
    return WEIR_CONTINUE;
}

static const char *const before[] = {"cycle_b.check", NULL};

static const weir_handler_t handlers[] = {
    {.name = "cycle_a.check", .phase = WEIR_PHASE_ACCESS, .priority = WEIR_PRIORITY_MIDDLE,
     .before = before, .fn = check},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "cycle_a",
    .version = "0.1",
    .handlers = handlers,
};
