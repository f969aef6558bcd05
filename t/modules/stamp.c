/* Test module for reloads, built twice (stamp_v1.so, stamp_v2.so; STAMP is
 * the version) and installed by tests as stamp.so:
 *  - every proxied response gets X-Stamp: <STAMP> (which build is loaded)
 *    and X-Hits: <n>, n counted in the shared zone "stamp.hits", so a reload
 *    that carries the zone goes on counting;
 *  - `stamp_fail_file: PATH`: worker_init fails while PATH exists (a worker
 *    that dies at start, for the master's restart backoff). */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

#include <weir/module.h>

#ifndef STAMP
#define STAMP "v0"
#endif

WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

struct stamp_conf {
    const char *fail_file;
};

static _Atomic uint64_t *hits;

static int stamp_conf_done(weir_conf_t *cf)
{
    hits = weir_shm_zone(cf, "stamp.hits", sizeof(*hits));
    return hits ? 0 : -1;
}

static int stamp_worker_init(const weir_conf_t *cf)
{
    const struct stamp_conf *c = weir_main_conf(cf, &weir_module);
    if (c->fail_file && access(c->fail_file, F_OK) == 0) {
        weir_log(&weir_module, WEIR_LOG_ERROR, "%s exists: failing worker_init", c->fail_file);
        return -1;
    }
    return 0;
}

static weir_result_t stamp_response(weir_request_t *r)
{
    char n[24];
    int len = snprintf(n, sizeof(n), "%llu", (unsigned long long)atomic_fetch_add(hits, 1) + 1);
    weir_headers_t *h = weir_response_headers(r);
    weir_headers_set(r, h, WEIR_STR("X-Stamp"), WEIR_STR(STAMP));
    weir_headers_set(r, h, WEIR_STR("X-Hits"), (weir_str_t){.data = n, .len = (size_t)len});
    return WEIR_CONTINUE;
}

static const weir_handler_t stamp_handlers[] = {
    {.name = "stamp.response", .phase = WEIR_PHASE_UPSTREAM_RESPONSE, .fn = stamp_response},
    {.name = NULL},
};

static const weir_directive_t stamp_directives[] = {
    {.key = "stamp_fail_file", .scopes = WEIR_SCOPE_MAIN, .type = WEIR_DIRECTIVE_STRING,
     .offset = offsetof(struct stamp_conf, fail_file), .help = "a path"},
    {.key = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "stamp",
    .version = STAMP,
    .conf_size = {[WEIR_SCOPE_INDEX_MAIN] = sizeof(struct stamp_conf)},
    .directives = stamp_directives,
    .handlers = stamp_handlers,
    .conf_done = stamp_conf_done,
    .worker_init = stamp_worker_init,
};
