/*
 * Test module for weir_request_log and weir_connection_log (1.6): it logs,
 * at notice, through the API with the request's or the connection's context,
 *
 *   "probe: accept"            every client connection, in the accept phase
 *                              (the stub request: client only)
 *   "probe: before routing"    a request with X-Probe, in the request phase
 *   "probe: upstream request"  the same request, once a server was picked
 *   "probe: connection"        the same request, through weir_connection_log
 */
#include <string.h>

#include <weir/module.h>

WEIR_MODULE_EXPORT const weir_module_t weir_module;

static int probed(weir_request_t *r)
{
    weir_str_t v;
    return weir_headers_get(weir_request_headers(r), WEIR_STR("x-probe"), &v);
}

static weir_result_t on_accept(weir_request_t *r)
{
    weir_request_log(r, &weir_module, WEIR_LOG_NOTICE, "probe: accept");
    return WEIR_CONTINUE;
}

static weir_result_t on_request(weir_request_t *r)
{
    if (probed(r))
        weir_request_log(r, &weir_module, WEIR_LOG_NOTICE, "probe: before routing");
    return WEIR_CONTINUE;
}

static weir_result_t on_upstream_request(weir_request_t *r)
{
    if (!probed(r))
        return WEIR_CONTINUE;
    weir_request_log(r, &weir_module, WEIR_LOG_NOTICE, "probe: upstream request");
    weir_connection_log(weir_request_connection(r), &weir_module, WEIR_LOG_NOTICE,
                        "probe: connection");
    return WEIR_CONTINUE;
}

static const weir_handler_t handlers[] = {
    {.name = "reqlog_probe.accept", .phase = WEIR_PHASE_ACCEPT,
     .priority = WEIR_PRIORITY_MIDDLE, .fn = on_accept},
    {.name = "reqlog_probe.request", .phase = WEIR_PHASE_REQUEST,
     .priority = WEIR_PRIORITY_MIDDLE, .fn = on_request},
    {.name = "reqlog_probe.upstream_request", .phase = WEIR_PHASE_UPSTREAM_REQUEST,
     .priority = WEIR_PRIORITY_MIDDLE, .fn = on_upstream_request},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "reqlog_probe",
    .version = "1.0",
    .handlers = handlers,
};
