/*
 * core/reqlog.c: the context error-log lines about requests carry, field by
 * field (left out while unknown), the client address forms, the stub request
 * of the accept phase, and the request line's escaping and cut; and
 * log_escape, which conf_node.c's messages share.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "reqlog.h"

#define ID "000000000000002a00000000000000ff"

static conn_t client;
static weir_request_t req;
static peer_t peers[2];
static weir_upstream_t app;
static weir_route_t api;
static char ctx[REQLOG_CONTEXT_MAX];

static void setup(void)
{
    memset(&client, 0, sizeof(client));
    client.peer.u.in4.sin_family = AF_INET;
    client.peer.u.in4.sin_port = htons(54321);
    inet_pton(AF_INET, "127.0.0.1", &client.peer.u.in4.sin_addr);
    client.peer.len = sizeof(struct sockaddr_in);
    peers[0].address = "127.0.0.1:9001";
    peers[1].address = "127.0.0.1:9002";
    memset(&app, 0, sizeof(app));
    app.name = "app";
    app.peers = peers;
    app.npeers = 2;
    memset(&api, 0, sizeof(api));
    api.name = "api";
    memset(&req, 0, sizeof(req));
    req.conn = &client;
    req.id_bits[0] = 42;
    req.id_bits[1] = 255;
    req.peer = -1;
    req.method = WEIR_STR("GET");
    req.target = WEIR_STR("/path?q");
    req.version = 11;
}

static const char *context(const weir_request_t *r, conn_t *c)
{
    size_t n = reqlog_context(r, c, ctx, sizeof(ctx));
    ck_assert_uint_eq(n, strlen(ctx));
    return ctx;
}

START_TEST(test_every_field)
{
    req.route = &api;
    req.upstream = &app;
    req.peer = 1;
    ck_assert_str_eq(context(&req, NULL),
                     ", client: 127.0.0.1:54321, request_id: " ID ", route: api, upstream: app "
                     "(127.0.0.1:9002), request: \"GET /path?q HTTP/1.1\"");
}
END_TEST

START_TEST(test_unknown_fields_left_out)
{
    ck_assert_str_eq(context(&req, NULL), ", client: 127.0.0.1:54321, request_id: " ID
                                          ", request: \"GET /path?q HTTP/1.1\"");
    /* balancing found no server: the upstream without one */
    req.route = &api;
    req.upstream = &app;
    ck_assert_str_eq(context(&req, NULL), ", client: 127.0.0.1:54321, request_id: " ID
                                          ", route: api, upstream: app, request: "
                                          "\"GET /path?q HTTP/1.1\"");
    /* no request line at all */
    req.route = NULL;
    req.upstream = NULL;
    req.method = WEIR_STR("-");
    req.target = (weir_str_t){0};
    ck_assert_str_eq(context(&req, NULL), ", client: 127.0.0.1:54321, request_id: " ID);
}
END_TEST

START_TEST(test_versions_and_raw_line)
{
    req.version = 20;
    ck_assert_ptr_nonnull(strstr(context(&req, NULL), "request: \"GET /path?q HTTP/2.0\""));
    req.version = 10;
    ck_assert_ptr_nonnull(strstr(context(&req, NULL), "request: \"GET /path?q HTTP/1.0\""));
    /* a head that could not be parsed: its first line as it came */
    req.method = WEIR_STR("-");
    req.target = (weir_str_t){0};
    req.raw_line = WEIR_STR("GET /x HTTP/9.9");
    ck_assert_ptr_nonnull(strstr(context(&req, NULL), "request: \"GET /x HTTP/9.9\""));
}
END_TEST

START_TEST(test_client_forms)
{
    /* the connection only (no request), then the accept phase's stub */
    ck_assert_str_eq(context(NULL, &client), ", client: 127.0.0.1:54321");
    req.stub = 1;
    ck_assert_str_eq(context(&req, NULL), ", client: 127.0.0.1:54321");
    memset(&client.peer, 0, sizeof(client.peer));
    client.peer.u.in6.sin6_family = AF_INET6;
    client.peer.u.in6.sin6_port = htons(443);
    inet_pton(AF_INET6, "::1", &client.peer.u.in6.sin6_addr);
    client.peer.len = sizeof(struct sockaddr_in6);
    ck_assert_str_eq(context(NULL, &client), ", client: [::1]:443");
    client.peer.u.sa.sa_family = AF_UNIX;
    ck_assert_str_eq(context(NULL, &client), ", client: unix:");
    /* an upstream connection has no client; nothing at all */
    client.upstream = 1;
    ck_assert_str_eq(context(NULL, &client), "");
    ck_assert_str_eq(context(NULL, NULL), "");
}
END_TEST

START_TEST(test_request_line_escaped)
{
    req.target = WEIR_STR("/a\"b\\c\x01\n\x7f\xff");
    ck_assert_ptr_nonnull(strstr(context(&req, NULL),
                                 "request: \"GET /a\\\"b\\\\c\\x01\\n\\x7f\\xff HTTP/1.1\""));
}
END_TEST

START_TEST(test_long_target_cut)
{
    static char target[4000];
    memset(target, 'a', sizeof(target));
    target[0] = '/';
    req.target = (weir_str_t){target, sizeof(target)};
    const char *c = strstr(context(&req, NULL), "request: \"");
    ck_assert_ptr_nonnull(c);
    c += strlen("request: \"");
    ck_assert_uint_eq(strlen(c), REQLOG_REQUEST_MAX + 4); /* ..." */
    ck_assert_int_eq(strncmp(c, "GET /aaa", 8), 0);
    ck_assert_str_eq(c + REQLOG_REQUEST_MAX, "...\"");
}
END_TEST

START_TEST(test_cut_never_splits_an_escape)
{
    /* "GET " and 251 bytes of target end at byte 255: the \x01 after them
     * does not fit in 256 and is left out whole */
    static char target[300];
    memset(target, 'b', sizeof(target));
    target[0] = '/';
    target[251] = '\x01';
    req.target = (weir_str_t){target, sizeof(target)};
    const char *c = strstr(context(&req, NULL), "request: \"") + strlen("request: \"");
    ck_assert_uint_eq(strlen(c), 255 + 4);
    ck_assert_str_eq(c + 255, "...\"");
}
END_TEST

START_TEST(test_names_are_one_line)
{
    api.name = "a\nb";
    req.route = &api;
    ck_assert_ptr_nonnull(strstr(context(&req, NULL), ", route: a\\nb, request: "));
}
END_TEST

START_TEST(test_log_escape_plain_and_quoted)
{
    char out[64];
    size_t n;
    const char in[] = "x\"\\\t\xc3\xa9";
    ck_assert_uint_eq(log_escape(in, sizeof(in) - 1, out, sizeof(out), 0, &n), sizeof(in) - 1);
    ck_assert_str_eq(out, "x\"\\\\t\xc3\xa9"); /* UTF-8, quotes, backslashes stay */
    ck_assert_uint_eq(n, strlen(out));
    log_escape(in, sizeof(in) - 1, out, sizeof(out), LOG_ESC_QUOTED, &n);
    ck_assert_str_eq(out, "x\\\"\\\\\\t\\xc3\\xa9");
    /* room for "x" and the NUL only */
    ck_assert_uint_eq(log_escape(in, sizeof(in) - 1, out, 3, LOG_ESC_QUOTED, &n), 1);
    ck_assert_str_eq(out, "x");
}
END_TEST

static Suite *reqlog_suite(void)
{
    Suite *s = suite_create("reqlog");
    TCase *tc = tcase_create("reqlog");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_every_field);
    tcase_add_test(tc, test_unknown_fields_left_out);
    tcase_add_test(tc, test_versions_and_raw_line);
    tcase_add_test(tc, test_client_forms);
    tcase_add_test(tc, test_request_line_escaped);
    tcase_add_test(tc, test_long_target_cut);
    tcase_add_test(tc, test_cut_never_splits_an_escape);
    tcase_add_test(tc, test_names_are_one_line);
    tcase_add_test(tc, test_log_escape_plain_and_quoted);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(reqlog_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
