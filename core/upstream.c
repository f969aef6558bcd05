/* What the upstream protocols share (upstream.h). */
#include "upstream.h"

#include <stddef.h>
#include <string.h>

#include "log.h"
#include "reqlog.h"

/* Modules' upstream_connect hooks (1.3), in modules: order. */
int upstream_connect_hooks(weir_request_t *r, conn_t *c)
{
    const weir_conf_t *cf = r->cf;
    for (size_t i = 0; i < cf->nmodules; i++) {
        const weir_module_t *m = cf->modules[i].desc;
        if (m->struct_size < offsetof(weir_module_t, upstream_connect) + sizeof(void *) ||
            !m->upstream_connect)
            continue;
        if (m->upstream_connect(r, c) < 0) {
            reqlog(r, NULL, WEIR_LOG_ERROR, "module %s: upstream_connect failed", m->name);
            return -1;
        }
    }
    return 0;
}

static int is_idempotent(weir_str_t m)
{
    static const char *const safe[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (m.len == strlen(safe[i]) && memcmp(m.data, safe[i], m.len) == 0)
            return 1;
    return 0;
}

int upstream_may_retry(const weir_request_t *r)
{
    return r->body.retained && is_idempotent(r->method) &&
           (long)r->tries <= r->upstream->retries;
}

/* The Host sent upstream: the client's (from the target for absolute-form),
 * unless a module replaced the Host field (SPEC §6: "passed through unless a
 * header rule changes it"). The parser points the client's Host field at
 * host_header's bytes, so a field with other bytes is a module's. A module
 * that removes it leaves the client's. */
static weir_str_t upstream_host(const weir_request_t *r)
{
    header_entry_t *e = headers_find(&r->headers, WEIR_STR("host"));
    if (e && e->value.data != r->host_header.data && e->value.len)
        return e->value;
    if (!r->host_header.len) /* HTTP/1.0 without Host: name the upstream, as
                                nginx's $proxy_host does; HTTP/1.1 needs one */
        return (weir_str_t){r->upstream->name, strlen(r->upstream->name)};
    return r->host_header;
}

void upstream_set_host(weir_request_t *r)
{
    r->host_header = upstream_host(r);
}
