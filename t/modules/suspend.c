/*
 * Test module for the handler contract: a handler that suspends and is
 * resumed from a module timer, one that answers directly, per-request module
 * context, a shared memory zone counted by every worker, a main-scope
 * directive, and a response header set in the upstream_response phase.
 *
 *   suspend_ms: 50        delay of the access-phase pause (0 = no pause)
 *
 * Paths: /deny -> 403 from the module; /nocontent -> 204 from the module (with
 * a body given, which must not be sent); anything else is paused, proxied, and
 * answered with "X-Suspended: <ms>", "X-Client: <client IPv4>" and
 * "X-Count: <requests seen by all workers>".
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <weir/module.h>

WEIR_MODULE_EXPORT const weir_module_t weir_module;

typedef struct suspend_conf {
    uint64_t delay_ms;
} suspend_conf_t;

typedef struct pause_ctx {
    weir_request_t *r;
    weir_timer_t *timer;
    uint64_t started;
} pause_ctx_t;

static _Atomic unsigned long *counter;
static uint64_t delay_ms = 50;

static void resume_later(void *arg)
{
    pause_ctx_t *p = arg;
    weir_timer_free(p->timer);
    p->timer = NULL;
    weir_request_resume(p->r, WEIR_CONTINUE);
}

static weir_result_t pause_handler(weir_request_t *r)
{
    weir_str_t path = weir_request_path(r);
    if (path.len == 5 && memcmp(path.data, "/deny", 5) == 0) {
        weir_respond(r, 403, WEIR_STR("denied by suspend\n"));
        return WEIR_RESPOND;
    }
    if (path.len == 10 && memcmp(path.data, "/nocontent", 10) == 0) {
        /* the body must not go out with a 204, nor a Content-Length */
        weir_respond(r, 204, WEIR_STR("not sent\n"));
        return WEIR_RESPOND;
    }
    pause_ctx_t *p = weir_request_alloc(r, sizeof(*p));
    if (!p)
        return WEIR_ERROR;
    p->r = r;
    p->started = weir_monotonic_ms();
    p->timer = weir_timer_new(resume_later, p);
    if (!p->timer)
        return WEIR_ERROR;
    weir_request_set_ctx(r, &weir_module, p);
    weir_timer_start(p->timer, delay_ms);
    return WEIR_SUSPEND;
}

static weir_result_t tag_response(weir_request_t *r)
{
    pause_ctx_t *p = weir_request_ctx(r, &weir_module);
    char buf[32];
    if (p) {
        int n = snprintf(buf, sizeof(buf), "%llu",
                         (unsigned long long)(weir_monotonic_ms() - p->started));
        weir_headers_set(r, weir_response_headers(r), WEIR_STR("X-Suspended"),
                         (weir_str_t){buf, (size_t)n});
    }
    /* the client address, looked up on demand by the core */
    const struct sockaddr *sa = weir_request_client_addr(r);
    char ip[INET6_ADDRSTRLEN] = "none";
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    weir_headers_set(r, weir_response_headers(r), WEIR_STR("X-Client"),
                     (weir_str_t){ip, strlen(ip)});
    unsigned long count = atomic_fetch_add(counter, 1) + 1;
    int n = snprintf(buf, sizeof(buf), "%lu", count);
    weir_headers_set(r, weir_response_headers(r), WEIR_STR("X-Count"),
                     (weir_str_t){buf, (size_t)n});
    return WEIR_CONTINUE;
}

static int conf_done(weir_conf_t *cf)
{
    const suspend_conf_t *sc = weir_main_conf(cf, &weir_module);
    delay_ms = sc->delay_ms;
    counter = weir_shm_zone(cf, "suspend.counter", sizeof(*counter));
    return counter ? 0 : -1;
}

static const weir_directive_t directives[] = {
    {.key = "suspend_ms", .scopes = WEIR_SCOPE_MAIN, .type = WEIR_DIRECTIVE_DURATION,
     .offset = offsetof(suspend_conf_t, delay_ms), .default_value = "50ms",
     .help = "pause of the access phase"},
    {.key = NULL},
};

static const weir_handler_t handlers[] = {
    {.name = "suspend.pause", .phase = WEIR_PHASE_ACCESS, .priority = WEIR_PRIORITY_MIDDLE,
     .fn = pause_handler},
    {.name = "suspend.tag", .phase = WEIR_PHASE_UPSTREAM_RESPONSE,
     .priority = WEIR_PRIORITY_MIDDLE, .fn = tag_response},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "suspend",
    .version = "1.0",
    .conf_size = {[WEIR_SCOPE_INDEX_MAIN] = sizeof(suspend_conf_t)},
    .directives = directives,
    .handlers = handlers,
    .conf_done = conf_done,
};
