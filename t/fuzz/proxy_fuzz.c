/*
 * Fuzz target: the whole proxy path. Arbitrary client bytes and arbitrary
 * upstream bytes, interleaved, through the real request and response state
 * machines.
 *
 * What runs: the real worker (worker_start: the io_uring loop with its
 * provided buffers and timers, accept, the HTTP/1 server, the proxy and its
 * keepalive pool) with the real config loader and the modules router and
 * lb_roundrobin and proxy_protocol, in this process, over real sockets: two
 * unix listeners the worker accepts from (the second reads a PROXY header
 * first), and a unix "upstream server" that the harness accepts and writes
 * for; weir sends that server a PROXY v1 line on every new connection. The harness turns the loop itself (loop_turn with
 * no wait) until nothing moves after each step.
 *
 * Why real sockets and the real ring, not a loop shim: the defects this
 * target exists for live where the state machines meet the ring: a
 * completion arriving after a close, a buffer released under a pending
 * send, an answer built after the upstream side let go of its buffer (the
 * heap-use-after-free of issue 9, found by a black-box run in its first 66
 * cases). A shim would have to model those orderings; the ring shows them.
 * The price is speed (each step is a few syscalls) and a little
 * nondeterminism, which settle() keeps small by running the loop to rest.
 *
 * The input is a script of steps, each an opcode byte and its operand:
 *   0 client sends N bytes      1 upstream sends N bytes (to the current
 *   2 let the loop run             upstream connection, if any)
 *   3 client shuts its write side   4 upstream closes (FIN)
 *   5 upstream resets (RST)      6 switch to the newest upstream connection
 *   7 client closes and reconnects, to the other listener (the first
 *     connection of an input goes to the plain one)
 * N is one byte (1..254), or 255 then two bytes big-endian.
 *
 * The seeds (corpus/proxy) reach the paths of the connection layer too: an
 * Upgrade answered by a 101 and then bytes both ways and half-closes (a
 * tunnel), an upstream that answers 413 while the body is still coming (full
 * duplex, stop_body, lingering close), and PROXY headers good and bad.
 *
 * Both listeners are `http2: true` (h2c with prior knowledge): a client
 * whose first bytes are the HTTP/2 preface is handed to the HTTP/2 server
 * (h2_server.c) with them, on the plain listener and after a PROXY header
 * alike; any other first bytes stay HTTP/1 exactly as before. The h2c-*
 * seeds (from t/fuzz/h2_seeds.py) are HTTP/2 requests through the same
 * proxy; t/fuzz/h2_fuzz.c is the target for HTTP/2 itself.
 *
 * Invariants beyond "no sanitizer report, no leak":
 *  - what weir sends an upstream starts with a request head that weir's own
 *    strict scanner and parser accept (a malformed request is never
 *    forwarded, and the re-serialisation is well-formed);
 *  - once the client and every upstream connection are closed, the worker
 *    reaches zero client connections without any timer firing (every state
 *    notices a peer's close), and every receive buffer is back in the ring.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "arena.h"
#include "conf.h"
#include "fuzz_common.h"
#include "h1.h"
#include "log.h"
#include "proxy_protocol/pp_wire.h"
#include "loop.h"
#include "request.h"
#include "worker.h"

#ifndef WEIR_FUZZ_MODULES_DIR
#define WEIR_FUZZ_MODULES_DIR "modules"
#endif

#define MAX_UPS 16
#define UP_KEEP 65536 /* bytes of each upstream connection kept for the check */
#define SETTLE_TURNS 200

typedef struct upstream_peer {
    int fd;
    size_t len;
    int checked;
    char buf[UP_KEEP];
} upstream_peer_t;

static struct {
    char dir[128];
    char listen_path[160], pp_listen_path[160], upstream_path[160];
    int listen_fds[2]; /* the worker accepts here: plain, PROXY header first */
    int which;         /* the listener the client connects to */
    int upstream_fd; /* the harness accepts weir's upstream connections here */
    worker_info_t info;
    weir_conf_t *cf;
    int client;
    upstream_peer_t ups[MAX_UPS];
    int nups, cur;
    int trace; /* $PROXY_FUZZ_TRACE: say what the client and upstreams get */
} h;

static void unix_address(struct sockaddr_un *sa, const char *path)
{
    *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa->sun_path)) {
        fprintf(stderr, "proxy_fuzz: socket path too long: %s (set TMPDIR)\n", path);
        abort();
    }
    memcpy(sa->sun_path, path, strlen(path) + 1);
}

static int unix_listener(const char *path)
{
    struct sockaddr_un sa;
    unix_address(&sa, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
        perror("proxy_fuzz: listener");
        abort();
    }
    return fd;
}

static void write_config(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    /* Timeouts far away: behaviour must not depend on the clock. Limits
     * small: the 431, 413 and 414 paths are reachable with short inputs. */
    fprintf(f,
            "workers: 1\n"
            "modules: [router, lb_roundrobin, proxy_protocol]\n"
            "limits:\n"
            "  client_header_timeout: 1h\n"
            "  client_body_timeout: 1h\n"
            "  keepalive_timeout: 1h\n"
            "  send_timeout: 1h\n"
            "  max_header_size: 2k\n"
            "  max_body_size: 4k\n"
            "  keepalive_requests: 8\n"
            "listeners:\n"
            "  - address: \"unix:%s\"\n"
            "    http2: true\n"
            "  - address: \"unix:%s\"\n"
            "    proxy_protocol: true\n"
            "    http2: true\n"
            "upstreams:\n"
            "  b:\n"
            "    balancer: roundrobin\n"
            "    servers: [\"unix:%s\"]\n"
            "    send_proxy_protocol: v1\n"
            "    tunnel_timeout: 1h\n"
            "    keepalive: 4\n"
            "    retries: 1\n"
            "    max_fails: 0\n"
            "    connect_timeout: 1h\n"
            "    read_timeout: 1h\n"
            "    write_timeout: 1h\n"
            "    idle_timeout: 1h\n"
            "routes:\n"
            "  - {path: /, upstream: b}\n",
            h.listen_path, h.pp_listen_path, h.upstream_path);
    fclose(f);
}

static void cleanup_dir(void)
{
    unlink(h.listen_path);
    unlink(h.pp_listen_path);
    unlink(h.upstream_path);
    char conf[200];
    snprintf(conf, sizeof(conf), "%s/weir.yaml", h.dir);
    unlink(conf);
    rmdir(h.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(h.dir, sizeof(h.dir), "%s/weir-proxy-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(h.dir))
        abort();
    snprintf(h.listen_path, sizeof(h.listen_path), "%s/l.sock", h.dir);
    snprintf(h.pp_listen_path, sizeof(h.pp_listen_path), "%s/p.sock", h.dir);
    snprintf(h.upstream_path, sizeof(h.upstream_path), "%s/u.sock", h.dir);
    char conf[200];
    snprintf(conf, sizeof(conf), "%s/weir.yaml", h.dir);
    write_config(conf);
    atexit(cleanup_dir);

    /* the worker's own log lines would drown libFuzzer's */
    log_open("/dev/null", WEIR_LOG_ERROR);
    const char *mods = getenv("WEIR_FUZZ_MODULES");
    conf_options_t opt = {
        .file = conf,
        .modules_dir = mods && *mods ? mods : WEIR_FUZZ_MODULES_DIR,
        .core_handlers = core_phase_handlers,
        .register_core_vars = core_vars_register,
    };
    h.cf = conf_load(&opt);
    if (!h.cf) {
        fprintf(stderr, "proxy_fuzz: the built-in config did not load\n");
        abort();
    }
    h.listen_fds[0] = unix_listener(h.listen_path);
    h.listen_fds[1] = unix_listener(h.pp_listen_path);
    h.upstream_fd = unix_listener(h.upstream_path);
    h.info = (worker_info_t){.cf = h.cf, .listen_fds = h.listen_fds, .index = 0, .count = 1};
    if (worker_start(&h.info) < 0)
        abort();
    signal(SIGPIPE, SIG_IGN);
    h.client = -1;
    h.trace = getenv("PROXY_FUZZ_TRACE") != NULL;
    return 0;
}

/* ----------------------------------------------------------- the peers */

/* Every upstream connection starts with the PROXY v1 line weir sends. */
static size_t proxy_line(const upstream_peer_t *u)
{
    const char *eol = memmem(u->buf, u->len, "\r\n", 2);
    if (!eol)
        return 0;
    size_t n = (size_t)(eol - u->buf) + 2;
    FZ_CHECK(pp_parse(u->buf, n, NULL) == (ssize_t)n, "upstream connection without a valid "
             "PROXY line first: %s", fz_show((weir_str_t){u->buf, n}));
    return n;
}

/* The forwarded request head must be one weir itself accepts. */
static void check_forwarded(upstream_peer_t *u)
{
    if (u->checked)
        return;
    size_t skip = proxy_line(u);
    if (!skip)
        return;
    const char *start = u->buf + skip;
    const char *end = memmem(start, u->len - skip, "\r\n\r\n", 4);
    if (!end)
        return;
    u->checked = 1;
    size_t head_len = (size_t)(end - start) + 4;
    ssize_t n = h1_scan_head(start, u->len - skip, 1 << 20, 1);
    FZ_CHECK(n == (ssize_t)head_len, "forwarded head refused by the scanner (%zd): %s", n,
             fz_show((weir_str_t){start, head_len}));
    struct arena *a = arena_new(4096, 0);
    h1_parser_t p;
    h1_parser_init(&p);
    h1_request_t req;
    char *copy = fz_dup(start, head_len);
    int rc = h1_parse_request(a, &p, copy, head_len, &req);
    FZ_CHECK(rc == 0, "forwarded head refused by the parser (%d): %s", rc,
             fz_show((weir_str_t){copy, head_len}));
    free(copy);
    arena_free(a);
}

/* Moves bytes and connections; 1 if anything moved. */
static int pump(void)
{
    int moved = 0;
    for (;;) {
        int fd = accept4(h.upstream_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        moved = 1;
        if (h.nups == MAX_UPS) {
            close(fd);
            continue;
        }
        h.ups[h.nups] = (upstream_peer_t){.fd = fd};
        if (h.nups == 0 || h.ups[h.cur].fd < 0)
            h.cur = h.nups;
        h.nups++;
    }
    char sink[16384];
    for (int i = 0; i < h.nups; i++) {
        upstream_peer_t *u = &h.ups[i];
        ssize_t n;
        while (u->fd >= 0 && (n = recv(u->fd, sink, sizeof(sink), 0)) > 0) {
            moved = 1;
            size_t keep = (size_t)n < UP_KEEP - u->len ? (size_t)n : UP_KEEP - u->len;
            memcpy(u->buf + u->len, sink, keep);
            u->len += keep;
            if (h.trace)
                fprintf(stderr, "upstream %d got %zd bytes: %s\n", i, n,
                        fz_show((weir_str_t){sink, (size_t)n}));
        }
        check_forwarded(u);
    }
    if (h.client >= 0) {
        ssize_t n;
        while ((n = recv(h.client, sink, sizeof(sink), 0)) > 0) {
            moved = 1;
            if (h.trace)
                fprintf(stderr, "client got %zd bytes: %s\n", n,
                        fz_show((weir_str_t){sink, (size_t)n}));
        }
    }
    return moved;
}

/* Runs the loop until a turn dispatches nothing and nothing moved, twice. */
static void settle(void)
{
    for (int i = 0, quiet = 0; i < SETTLE_TURNS && quiet < 2; i++) {
        unsigned n = loop_turn(g_loop, 0);
        int moved = pump();
        quiet = n || moved ? 0 : quiet + 1;
    }
}

static void client_connect(void)
{
    struct sockaddr_un sa;
    unix_address(&sa, h.which ? h.pp_listen_path : h.listen_path);
    h.client = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h.client < 0 || connect(h.client, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        abort();
}

static void upstream_end(int reset)
{
    upstream_peer_t *u = &h.ups[h.cur];
    if (h.nups == 0 || u->fd < 0)
        return;
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(u->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(u->fd);
    u->fd = -1;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (fd >= 0 && n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return; /* full or gone: the rest is lost, as on a real network */
        p += k;
        n -= (size_t)k;
    }
}

static size_t operand_len(fz_in_t *in)
{
    size_t n = fz_u8(in);
    if (n == 255)
        n = fz_u16(in);
    return n ? n : 1;
}

static void end_input(void)
{
    if (h.client >= 0)
        close(h.client);
    h.client = -1;
    for (int i = 0; i < h.nups; i++)
        if (h.ups[i].fd >= 0)
            close(h.ups[i].fd);
    /* weir's pooled connections and late connects are closed as they come */
    for (int i = 0; i < SETTLE_TURNS && worker_connections(); i++) {
        loop_turn(g_loop, 0);
        int fd;
        while ((fd = accept4(h.upstream_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
            close(fd);
    }
    settle();
    int fd;
    while ((fd = accept4(h.upstream_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(fd);
    settle();
    FZ_CHECK(worker_connections() == 0,
             "%lu client connections still open after every peer closed",
             worker_connections());
    FZ_CHECK(g_loop->bufs_out == 0, "%u receive buffers not returned to the ring",
             g_loop->bufs_out);
    h.nups = h.cur = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in_t in = {data, size};
    h.which = 0;
    client_connect();
    settle();
    while (in.n) {
        uint8_t op = fz_u8(&in) & 7;
        size_t len, got;
        const uint8_t *p;
        switch (op) {
        case 0:
        case 1:
            len = operand_len(&in);
            p = fz_take(&in, len, &got);
            send_all(op == 0 ? h.client : (h.nups ? h.ups[h.cur].fd : -1), p, got);
            break;
        case 2:
            break;
        case 3:
            if (h.client >= 0)
                shutdown(h.client, SHUT_WR);
            break;
        case 4:
        case 5:
            upstream_end(op == 5);
            break;
        case 6:
            if (h.nups)
                h.cur = h.nups - 1;
            break;
        case 7:
            if (h.client >= 0)
                close(h.client);
            h.which = !h.which;
            client_connect();
            break;
        }
        settle();
    }
    end_input();
    return 0;
}
