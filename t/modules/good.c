/* A well-formed module: registers a variable in conf_init and fails nothing.
 * conf_done fails without a message so the loader's generic error shows. */
#include <weir/module.h>

static int get_good(weir_request_t *r, weir_str_t suffix, weir_str_t *out)
{
    (void)r;
    (void)suffix;
    *out = WEIR_STR("good");
    return 0;
}

static int conf_init(weir_conf_t *cf)
{
    return weir_var_register(cf, "good_var", 0, get_good);
}

static int conf_done(weir_conf_t *cf)
{
    (void)cf;
    return -1;
}

static weir_result_t hello(weir_request_t *r)
{
    (void)r;
    return WEIR_CONTINUE;
}

static const weir_handler_t handlers[] = {
    {.name = "good.hello", .phase = WEIR_PHASE_REQUEST, .priority = WEIR_PRIORITY_EARLY,
     .fn = hello},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "good",
    .version = "1.2.3",
    .handlers = handlers,
    .conf_init = conf_init,
    .conf_done = conf_done,
};
