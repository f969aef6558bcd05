#include "accept.h"

#include "conn.h"
#include "downstream.h"
#include "h1_server.h"
#include "h2.h"
#include "log.h"
#include "reqlog.h"
#include "phase.h"
#include "request.h"

/* Until a protocol takes it, the connection has no one to report to but
 * this: a timeout or a failed handshake closes it. */
static void pending_release(conn_t *c)
{
    (void)c;
}

static void pending_timeout(conn_t *c, int which)
{
    (void)which;
    conn_close(c, 0);
}

static void pending_read(conn_t *c, long n, const char *data)
{
    (void)n, (void)data;
    conn_read_done(c);
    conn_close(c, 0);
}

static const conn_handler_t pending_handler = {
    .read = pending_read,
    .timeout = pending_timeout,
    .release = pending_release,
};

/* The protocol of a connection whose handshake is done: HTTP/2 when ALPN
 * chose h2; else HTTP/1, whose server hands the connection to HTTP/2 when
 * an `http2: true` listener's client starts with the preface (h2c with
 * prior knowledge). */
static void select_protocol(conn_t *c)
{
    if (c->alpn == CONN_ALPN_H2)
        h2_server_start(c, NULL, 0);
    else
        h1_server_start(c);
}

static void handshake_done(conn_t *c, int ok)
{
    if (!ok) {
        reqlog(NULL, c, WEIR_LOG_DEBUG, "client %llu: transport handshake failed; closed",
               (unsigned long long)c->id);
        conn_close(c, 0);
        return;
    }
    select_protocol(c);
}

static void start_handshake(conn_t *c)
{
    uint64_t ms = c->handshake_ms ? c->handshake_ms : c->listener->limits.client_header_timeout;
    conn_handshake(c, ms, handshake_done);
}

/* The accept chain runs on a stub request (no head, no response): a
 * handler that answers (WEIR_RESPOND, WEIR_ERROR) refuses the connection,
 * which is closed without a byte sent. */
static int stub_start(weir_request_t *r, const response_start_t *rs)
{
    (void)r, (void)rs;
    return -1;
}

static int stub_head_sent(const weir_request_t *r)
{
    (void)r;
    return 0;
}

static void stub_refuse(weir_request_t *r)
{
    conn_t *c = r->conn;
    reqlog(r, NULL, WEIR_LOG_DEBUG, "client %llu: refused in the accept phase (%d)",
           (unsigned long long)c->id, r->status);
    request_free(r);
    conn_close(c, 0);
}

static const downstream_t stub_downstream = {
    .start_response = stub_start,
    .abort = stub_refuse,
    .finish = stub_refuse,
    .head_sent = stub_head_sent,
};

static void accept_chain_done(weir_request_t *r)
{
    conn_t *c = r->conn;
    request_free(r);
    start_handshake(c);
}

int accept_connection(int fd, const weir_listener_t *l, const weir_conf_t *cf)
{
    conn_t *c = conn_accepted(fd, l, cf);
    if (!c)
        return -1;
    conn_set_handler(c, &pending_handler, NULL);
    const struct phases *ph = cf->phases;
    if (ph->start[WEIR_PHASE_ACCEPT] == ph->start[WEIR_PHASE_ACCEPT + 1]) {
        start_handshake(c);
        return 0;
    }
    weir_request_t *r = request_new(cf);
    if (!r) {
        conn_close(c, 0);
        return 0;
    }
    r->conn = c;
    r->listener = l;
    r->connection_id = c->id;
    r->ds = &stub_downstream;
    r->stub = 1;
    request_run_phases(r, WEIR_PHASE_ACCEPT, WEIR_PHASE_ACCEPT, accept_chain_done);
    return 0;
}

void accept_drain(uint64_t idle_grace_ms)
{
    h1_server_drain(idle_grace_ms);
    h2_server_drain(idle_grace_ms);
}
