#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "conn.h"
#include "log.h"
#include "reqlog.h"
#include "loop.h"
#include "metrics_core.h"
#include "phase.h"

/* Request arenas are recycled: a keepalive connection's requests reuse one
 * arena's first chunk instead of going through malloc each time. */
#define REQUEST_ARENA_CHUNK 8192
#define REQUEST_ARENA_CAP (4u << 20)
#define ARENA_CACHE_MAX 256

static struct arena *arena_cache[ARENA_CACHE_MAX];
static size_t arena_cache_len;

void (*request_on_answer)(weir_request_t *r);

static uint64_t rng_state;

/* xorshift64*, seeded per worker on first use (after fork, so workers differ):
 * request ids need uniqueness, not secrecy. */
static uint64_t rng_next(void)
{
    if (!rng_state) {
        if (getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state))
            rng_state = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
        rng_state |= 1;
    }
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

void request_id_text(const weir_request_t *r, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)r->id_bits[0],
             (unsigned long long)r->id_bits[1]);
}

const char *request_id(weir_request_t *r)
{
    if (!r->request_id[0])
        request_id_text(r, r->request_id);
    return r->request_id;
}

const struct sockaddr *request_client_addr(const weir_request_t *r)
{
    return r->conn ? conn_peer(r->conn) : NULL;
}

const struct sockaddr *request_server_addr(const weir_request_t *r)
{
    return r->conn ? conn_local(r->conn) : NULL;
}

uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

weir_request_t *request_new(const weir_conf_t *cf)
{
    struct arena *a = arena_cache_len ? arena_cache[--arena_cache_len]
                                      : arena_new(REQUEST_ARENA_CHUNK, REQUEST_ARENA_CAP);
    if (!a)
        return NULL;
    weir_request_t *r = arena_alloc(a, sizeof(*r));
    void **ctx = arena_alloc(a, (cf->nmodules + 1) * sizeof(void *));
    if (!r || !ctx) {
        arena_free(a);
        return NULL;
    }
    r->arena = a;
    r->refs = 1;
    r->cf = cf;
    r->ctx = ctx;
    r->peer = -1;
    headers_init(&r->headers);
    headers_init(&r->resp_headers);
    r->start_us = now_us();
    r->id_bits[0] = rng_next();
    r->id_bits[1] = rng_next();
    r->start_wall_ms = g_loop ? g_loop->wall_ms : 0;
    return r;
}

void request_ref(weir_request_t *r)
{
    r->refs++;
}

void request_free(weir_request_t *r)
{
    if (--r->refs)
        return;
    struct arena *a = r->arena;
    if (arena_cache_len < ARENA_CACHE_MAX) {
        arena_reset(a);
        arena_cache[arena_cache_len++] = a;
    } else {
        arena_free(a);
    }
}

/* ------------------------------------------------------------ phase runner */

static void run_from_cursor(weir_request_t *r);

void request_run_phases(weir_request_t *r, weir_phase_t first, weir_phase_t last,
                        request_next_fn next)
{
    const struct phases *ph = r->cf->phases;
    r->cursor = ph->start[first];
    r->cursor_end = ph->start[last + 1];
    r->next = next;
    run_from_cursor(r);
}

static size_t phase_end_of(const struct phases *ph, size_t cursor)
{
    weir_phase_t p = ph->entries[cursor].handler->phase;
    return ph->start[p + 1];
}

/* Applies one handler result; returns 1 to keep running, 0 to stop. */
static int apply_result(weir_request_t *r, weir_result_t res)
{
    const struct phases *ph = r->cf->phases;
    switch (res) {
    case WEIR_CONTINUE:
        r->cursor++;
        return 1;
    case WEIR_DONE:
        r->cursor = phase_end_of(ph, r->cursor);
        return 1;
    case WEIR_RESPOND:
        if (!r->responded)
            weir_respond(r, 500, (weir_str_t){0});
        request_on_answer(r);
        return 0;
    case WEIR_SUSPEND:
        r->suspended = 1;
        return 0;
    case WEIR_ERROR:
    default: {
        const phase_entry_t *e = &ph->entries[r->cursor];
        reqlog(r, NULL, WEIR_LOG_ERROR, "handler %s failed; answering 500", e->handler->name);
        r->responded = 0;
        weir_respond(r, 500, (weir_str_t){0});
        request_on_answer(r);
        return 0;
    }
    }
}

static void run_from_cursor(weir_request_t *r)
{
    const struct phases *ph = r->cf->phases;
    while (r->cursor < r->cursor_end) {
        weir_result_t res = ph->entries[r->cursor].handler->fn(r);
        if (!apply_result(r, res))
            return;
    }
    r->next(r);
}

void weir_request_resume(weir_request_t *r, weir_result_t result)
{
    if (!r->suspended || result == WEIR_SUSPEND) {
        reqlog(r, NULL, WEIR_LOG_ERROR,
               "weir_request_resume called on a request that is not suspended");
        return;
    }
    r->suspended = 0;
    if (apply_result(r, result))
        run_from_cursor(r);
}

void request_run_log(weir_request_t *r)
{
    const struct phases *ph = r->cf->phases;
    metrics_request_done(r);
    for (size_t i = ph->start[WEIR_PHASE_LOG]; i < ph->start[WEIR_PHASE_LOG + 1]; i++)
        ph->entries[i].handler->fn(r);
}

/* ------------------------------------------------------------- balancing */

int weir_peer_usable(weir_request_t *r, const weir_upstream_t *u, size_t i)
{
    if (i >= u->npeers)
        return 0;
    if (r && r->tried && r->upstream == u && r->tried[i])
        return 0;
    return !weir_peer_is_down(u, i);
}

int request_pick_peer(weir_request_t *r)
{
    weir_upstream_t *u = r->upstream;
    if (!r->tried) {
        r->tried = arena_alloc(r->arena, u->npeers);
        if (!r->tried)
            return -1;
    }
    int i = u->balancer->pick(r, u, u->balancer_state);
    if (i < 0 || (size_t)i >= u->npeers)
        return -1;
    r->tried[i] = 1;
    r->tries++;
    r->peer = i;
    r->upstream_addr = u->peers[i].address;
    return i;
}

static weir_result_t core_balance(weir_request_t *r)
{
    if (!r->route)
        return weir_respond(r, 404, (weir_str_t){0}), WEIR_RESPOND;
    r->upstream = r->route->upstream;
    if (!r->upstream)
        return weir_respond(r, 404, (weir_str_t){0}), WEIR_RESPOND;
    if (r->peer >= 0) /* a module picked already */
        return WEIR_CONTINUE;
    if (request_pick_peer(r) < 0) {
        reqlog(r, NULL, WEIR_LOG_ERROR, "upstream %s: no server is up", r->upstream->name);
        weir_respond(r, 503, (weir_str_t){0});
        return WEIR_RESPOND;
    }
    return WEIR_CONTINUE;
}

const weir_handler_t core_phase_handlers[] = {
    {.name = "core.balance", .phase = WEIR_PHASE_BALANCE, .priority = WEIR_PRIORITY_MIDDLE,
     .fn = core_balance},
    {.name = NULL},
};

/* -------------------------------------------------------------- accessors */

weir_str_t weir_request_method(const weir_request_t *r) { return r->method; }
weir_str_t weir_request_target(const weir_request_t *r) { return r->target; }
weir_str_t weir_request_path(const weir_request_t *r) { return r->path; }
weir_str_t weir_request_query(const weir_request_t *r) { return r->query; }
weir_str_t weir_request_host(const weir_request_t *r) { return r->host; }
int weir_request_version(const weir_request_t *r) { return r->version; }
weir_headers_t *weir_request_headers(weir_request_t *r) { return &r->headers; }
weir_headers_t *weir_response_headers(weir_request_t *r) { return &r->resp_headers; }
weir_route_t *weir_request_route(const weir_request_t *r) { return r->route; }
const weir_conf_t *weir_request_conf(const weir_request_t *r) { return r->cf; }
void weir_request_set_route(weir_request_t *r, weir_route_t *rt) { r->route = rt; }
weir_upstream_t *weir_request_upstream(const weir_request_t *r) { return r->upstream; }
int weir_request_peer(const weir_request_t *r) { return r->peer; }
int weir_response_status(const weir_request_t *r) { return r->status; }
uint64_t weir_response_body_bytes(const weir_request_t *r) { return r->body_bytes_sent; }

uint64_t weir_request_elapsed_us(const weir_request_t *r)
{
    uint64_t now = now_us();
    return now > r->start_us ? now - r->start_us : 0;
}

const struct sockaddr *weir_request_client_addr(const weir_request_t *r)
{
    return request_client_addr(r);
}

const struct sockaddr *weir_request_server_addr(const weir_request_t *r)
{
    return request_server_addr(r);
}

weir_connection_t *weir_request_connection(const weir_request_t *r)
{
    return r->conn;
}

int weir_request_set_pool_key(weir_request_t *r, weir_str_t key)
{
    char *p = key.len ? arena_strndup(r->arena, key.data, key.len) : NULL;
    if (key.len && !p)
        return -1;
    r->pool_key = (weir_str_t){p, key.len};
    return 0;
}

static int copy_str(weir_request_t *r, weir_str_t in, weir_str_t *out)
{
    char *p = arena_strndup(r->arena, in.data ? in.data : "", in.len);
    if (!p)
        return -1;
    out->data = p;
    out->len = in.len;
    return 0;
}

int weir_request_set_path(weir_request_t *r, weir_str_t path)
{
    return copy_str(r, path, &r->path);
}

int weir_request_set_query(weir_request_t *r, weir_str_t query)
{
    if (query.len == 0) {
        r->query = (weir_str_t){0}; /* no '?' goes upstream */
        return 0;
    }
    return copy_str(r, query, &r->query);
}

int weir_respond(weir_request_t *r, int status, weir_str_t body)
{
    r->status = status;
    r->responded = 1;
    r->respond_body = (weir_str_t){0};
    if (body.len)
        return copy_str(r, body, &r->respond_body);
    return 0;
}

void *weir_request_alloc(weir_request_t *r, size_t size)
{
    return arena_alloc(r->arena, size);
}

int weir_request_cleanup(weir_request_t *r, void (*fn)(void *arg), void *arg)
{
    return arena_cleanup(r->arena, fn, arg);
}

void *weir_request_ctx(const weir_request_t *r, const weir_module_t *m)
{
    int i = conf_module_index(r->cf, m);
    return i < 0 ? NULL : r->ctx[i];
}

void weir_request_set_ctx(weir_request_t *r, const weir_module_t *m, void *ctx)
{
    int i = conf_module_index(r->cf, m);
    if (i >= 0)
        r->ctx[i] = ctx;
}

size_t weir_headers_count(const weir_headers_t *h) { return h->n; }

int weir_headers_at(const weir_headers_t *h, size_t i, weir_str_t *name, weir_str_t *value)
{
    if (i >= h->n || h->v[i].name.len == 0)
        return 0;
    *name = h->v[i].name;
    *value = h->v[i].value;
    return 1;
}

int weir_headers_get(const weir_headers_t *h, weir_str_t name, weir_str_t *value)
{
    header_entry_t *e = headers_find(h, name);
    if (!e)
        return 0;
    *value = e->value;
    return 1;
}

int weir_headers_add(weir_request_t *r, weir_headers_t *h, weir_str_t name, weir_str_t value)
{
    return headers_add_copy(r->arena, h, name, value);
}

int weir_headers_set(weir_request_t *r, weir_headers_t *h, weir_str_t name, weir_str_t value)
{
    return headers_set_copy(r->arena, h, name, value);
}

size_t weir_headers_remove(weir_headers_t *h, weir_str_t name)
{
    return headers_del(h, name);
}

size_t weir_upstream_peer_count(const weir_upstream_t *u) { return u->npeers; }
const char *weir_peer_address(const weir_upstream_t *u, size_t i) { return u->peers[i].address; }
unsigned weir_peer_weight(const weir_upstream_t *u, size_t i) { return u->peers[i].weight; }
int weir_peer_is_backup(const weir_upstream_t *u, size_t i) { return u->peers[i].backup; }

/* ------------------------------------------------------- path normalising */

/* 1 for ".", 2 for "..", in any mix of literal and %2e spellings, else 0. */
static int dot_segment(const char *s, size_t n)
{
    int dots = 0;
    size_t i = 0;
    while (i < n) {
        if (s[i] == '.') {
            i++;
        } else if (n - i >= 3 && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] | 0x20) == 'e') {
            i += 3;
        } else {
            return 0;
        }
        if (++dots > 2)
            return 0;
    }
    return dots;
}

static int may_have_dot_segment(weir_str_t p)
{
    for (size_t i = 0; i + 1 < p.len; i++)
        if (p.data[i] == '/' && (p.data[i + 1] == '.' || p.data[i + 1] == '%'))
            return 1;
    return 0;
}

int request_normalize_path(weir_request_t *r)
{
    weir_str_t p = r->path;
    if (p.len == 0 || p.data[0] != '/' || !may_have_dot_segment(p))
        return 0;
    char *out = arena_alloc_raw(r->arena, p.len + 2);
    if (!out)
        return -500;
    size_t o = 0;
    const char *s = p.data, *end = p.data + p.len;
    while (s < end) {
        const char *seg = s + 1;
        const char *e = memchr(seg, '/', (size_t)(end - seg));
        if (!e)
            e = end;
        int dots = dot_segment(seg, (size_t)(e - seg));
        if (dots == 2) {
            if (o == 0)
                return -400; /* ".." above the root */
            while (o > 0 && out[o - 1] != '/')
                o--;
            o--; /* drop the '/' that started the removed segment */
        } else if (dots == 0) {
            out[o++] = '/';
            memcpy(out + o, seg, (size_t)(e - seg));
            o += (size_t)(e - seg);
        }
        if (dots && e == end)
            out[o++] = '/'; /* "/a/." and "/a/b/.." name a directory */
        s = e;
    }
    if (o == 0)
        out[o++] = '/';
    r->path.data = out;
    r->path.len = o;
    return 0;
}
