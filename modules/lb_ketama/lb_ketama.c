/*
 * Module lb_ketama: the "ketama" balancer, consistent hashing compatible with
 * libketama (the continuum is described in continuum.h).
 *
 *     upstreams:
 *       cache:
 *         balancer: ketama
 *         hash_key: "$http_x_user"     # default "$request_uri"
 *         servers:
 *           - {address: 10.0.0.1:11211, weight: 2}
 *           - 10.0.0.2:11211
 *           - {address: 10.0.0.9:11211, backup: true}
 *
 * Keys:
 *   balancer: ketama   selects this balancer for the upstream.
 *   hash_key           (upstream scope) a variable template rendered per
 *                      request; its bytes are the key. Default $request_uri
 *                      (the target as received, path and query). An unset
 *                      variable renders as "", so e.g. requests without
 *                      X-User all hash the empty key and go to one server.
 *
 * Choices:
 *   - The ring is built from the primary servers exactly as libketama builds
 *     it from a server list: address as written in the config (so
 *     "localhost:80" and "127.0.0.1:80" are different rings), weight as
 *     libketama's "memory". A given server set maps every key to the server
 *     libketama would pick.
 *   - A server that is not usable (down, or already tried by this request)
 *     hands the key to the next point on the ring whose server is usable:
 *     only the keys of unusable servers move, and each lands where it would
 *     if that server were removed point by point. A retry of one request
 *     goes the same way, skipping the servers it already tried.
 *   - Backup servers are not on the primary ring (adding one moves no key).
 *     They form a second ring, built the same way over the backups alone,
 *     used only when no primary on the ring is usable; so backups share the
 *     keys consistently too.
 *   - With very uneven weights libketama gives a server 0 points (weight
 *     below total / (40 * servers)); that server then gets no keys. This is
 *     kept for compatibility and logged as a warning at load.
 *   - hash_key on an upstream whose balancer is not ketama is ignored, with a
 *     warning at load (none when it says the default, as `weir -T` prints).
 *
 * Memory and cost: both rings are built once per configuration generation
 * in balancer init (config arena), read-only afterwards. A pick renders the
 * template into the request arena, takes one MD5 of the key, does a binary
 * search, and walks on only past unusable servers (each asked once).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "weir/module.h"

#include "continuum.h"

#define HASH_KEY_DEFAULT "$request_uri"

struct ketama_upstream_conf {
    weir_template_t *hash_key;
};

/* One ring: the continuum, whose server i is peer peer[i] of the upstream. */
struct ketama_ring {
    struct ketama_continuum *cont;
    uint32_t *peer;
};

struct ketama_state {
    const struct ketama_upstream_conf *conf;
    struct ketama_ring primary;
    struct ketama_ring backup;
};

extern const weir_module_t weir_module;

struct usable_ctx {
    weir_request_t *r;
    const weir_upstream_t *u;
    const uint32_t *peer;
};

static int ring_usable(void *ctx, size_t server)
{
    struct usable_ctx *c = ctx;

    return weir_peer_usable(c->r, c->u, c->peer[server]);
}

/* Builds the ring of the peers whose backup flag equals `backup`. */
static int ring_build(weir_conf_t *cf, weir_upstream_t *u, int backup, struct ketama_ring *ring)
{
    size_t npeers = weir_upstream_peer_count(u), n = 0;

    for (size_t i = 0; i < npeers; i++)
        n += !weir_peer_is_backup(u, i) == !backup;

    /* scratch for ketama_build stays in the arena: a few bytes per server */
    const char **addrs = weir_conf_alloc(cf, (n ? n : 1) * sizeof(*addrs));
    unsigned *weights = weir_conf_alloc(cf, (n ? n : 1) * sizeof(*weights));

    ring->peer = weir_conf_alloc(cf, (n ? n : 1) * sizeof(*ring->peer));
    if (addrs == NULL || weights == NULL || ring->peer == NULL)
        goto oom;
    n = 0;
    for (size_t i = 0; i < npeers; i++) {
        if (!weir_peer_is_backup(u, i) != !backup)
            continue;
        addrs[n] = weir_peer_address(u, i);
        weights[n] = weir_peer_weight(u, i);
        ring->peer[n] = (uint32_t)i;
        n++;
    }
    ring->cont = weir_conf_alloc(cf, ketama_size(ketama_npoints(weights, n)));
    if (ring->cont == NULL)
        goto oom;
    if (ketama_build(ring->cont, addrs, weights, n) < 0) {
        weir_conf_error(cf, weir_upstream_node(u),
                        "upstream \"%s\": balancer ketama needs MD5 from libcrypto, which "
                        "failed (a FIPS-only OpenSSL configuration?)",
                        weir_upstream_name(u));
        return -1;
    }
    unsigned long total = 0;
    for (size_t s = 0; s < n; s++)
        total += weights[s];
    for (size_t s = 0; s < n; s++)
        if (ketama_digests(weights[s], total, n) == 0)
            weir_log(&weir_module, WEIR_LOG_WARN,
                     "upstream \"%s\": %sserver %s (weight %u of %lu) gets no point on the "
                     "ketama ring and so no keys",
                     weir_upstream_name(u), backup ? "backup " : "", addrs[s], weights[s],
                     total);
    return 0;

oom:
    weir_conf_error(cf, weir_upstream_node(u), "upstream \"%s\": out of memory",
                    weir_upstream_name(u));
    return -1;
}

static void *ketama_init(weir_conf_t *cf, weir_upstream_t *u)
{
    struct ketama_state *st = weir_conf_alloc(cf, sizeof(*st));

    if (st == NULL) {
        weir_conf_error(cf, weir_upstream_node(u), "upstream \"%s\": out of memory",
                        weir_upstream_name(u));
        return NULL;
    }
    st->conf = weir_upstream_conf(u, &weir_module);
    if (st->conf == NULL || st->conf->hash_key == NULL) {
        weir_conf_error(cf, weir_upstream_node(u), "upstream \"%s\": no hash_key for ketama",
                        weir_upstream_name(u));
        return NULL;
    }
    if (ring_build(cf, u, 0, &st->primary) < 0 || ring_build(cf, u, 1, &st->backup) < 0)
        return NULL;
    return st;
}

static int ketama_pick(weir_request_t *r, weir_upstream_t *u, void *state)
{
    struct ketama_state *st = state;
    weir_str_t key;
    uint32_t hash;

    if (weir_template_render(r, st->conf->hash_key, &key) < 0) {
        weir_request_log(r, &weir_module, WEIR_LOG_ERROR,
                         "upstream \"%s\": cannot render hash_key", weir_upstream_name(u));
        return -1;
    }
    if (ketama_hash(key.data, key.len, &hash) < 0) {
        weir_request_log(r, &weir_module, WEIR_LOG_ERROR, "upstream \"%s\": MD5 failed",
                         weir_upstream_name(u));
        return -1;
    }

    struct usable_ctx c = {.r = r, .u = u, .peer = st->primary.peer};
    int s = ketama_lookup(st->primary.cont, hash, ring_usable, &c);

    if (s >= 0)
        return (int)st->primary.peer[s];
    c.peer = st->backup.peer;
    s = ketama_lookup(st->backup.cont, hash, ring_usable, &c);
    return s >= 0 ? (int)st->backup.peer[s] : -1;
}

/* hash_key means nothing to another balancer: say so rather than ignore it
 * silently. The upstream nodes are only readable here, in conf_done. One
 * that says the default is left alone: `weir -T` writes it into every
 * upstream, and it asks for nothing another balancer fails to do. */
static int ketama_conf_done(weir_conf_t *cf)
{
    for (size_t i = 0; i < weir_conf_upstream_count(cf); i++) {
        weir_upstream_t *u = weir_conf_upstream(cf, i);
        const weir_node_t *node = weir_upstream_node(u);
        const weir_node_t *key = node ? weir_node_get(node, "hash_key") : NULL;
        const weir_node_t *bal = node ? weir_node_get(node, "balancer") : NULL;
        const char *name = bal ? weir_node_scalar(bal) : NULL;

        const char *text = key ? weir_node_scalar(key) : NULL;

        if (text && strcmp(text, HASH_KEY_DEFAULT) == 0)
            continue;
        if (key != NULL && (name == NULL || strcmp(name, "ketama") != 0))
            weir_log(&weir_module, WEIR_LOG_WARN,
                     "%s:%u: upstream \"%s\": hash_key is ignored: its balancer is \"%s\", "
                     "not \"ketama\"",
                     weir_node_file(key), weir_node_line(key), weir_upstream_name(u),
                     name ? name : "roundrobin");
    }
    return 0;
}

static void ketama_conf_free(weir_conf_t *cf)
{
    (void)cf;
    /* the module may be unloaded after this; the next user fetches again */
    ketama_md5_release();
}

static const weir_directive_t ketama_directives[] = {
    {.key = "hash_key",
     .scopes = WEIR_SCOPE_UPSTREAM,
     .type = WEIR_DIRECTIVE_TEMPLATE,
     .offset = offsetof(struct ketama_upstream_conf, hash_key),
     .default_value = HASH_KEY_DEFAULT,
     .help = "the key the ketama balancer hashes, a variable template (default $request_uri)"},
    {.key = NULL},
};

static const weir_balancer_t ketama_balancers[] = {
    {.name = "ketama", .init = ketama_init, .pick = ketama_pick},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "lb_ketama",
    .version = "1.0.0",
    .conf_size = {[WEIR_SCOPE_INDEX_UPSTREAM] = sizeof(struct ketama_upstream_conf)},
    .directives = ketama_directives,
    .balancers = ketama_balancers,
    .conf_done = ketama_conf_done,
    .conf_free = ketama_conf_free,
};
