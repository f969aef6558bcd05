/* cycle_b.check must run before cycle_a.check, which says the opposite. */
#include <weir/module.h>

static weir_result_t check(weir_request_t *r)
{
    (void)r;
    return WEIR_CONTINUE;
}

static const char *const before[] = {"cycle_a.check", NULL};

static const weir_handler_t handlers[] = {
    {.name = "cycle_b.check", .phase = WEIR_PHASE_ACCESS, .priority = WEIR_PRIORITY_MIDDLE,
     .before = before, .fn = check},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "cycle_b",
    .version = "0.1",
    .handlers = handlers,
};
