/* The master's listening sockets across generations: shared by address,
 * closed with the last generation holding them, rolled back on a failed
 * acquire, and handed over to a new binary through the environment. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "conf.h"
#include "listen.h"

/* A port nothing listens on now (bound, read, released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static weir_conf_t *conf_with(int n, const int *ports)
{
    weir_conf_t *cf = calloc(1, sizeof(*cf));
    ck_assert_ptr_nonnull(cf);
    cf->listeners = calloc((size_t)n, sizeof(weir_listener_t));
    cf->nlisteners = (size_t)n;
    for (int i = 0; i < n; i++) {
        char text[64], err[128];
        snprintf(text, sizeof(text), "127.0.0.1:%d", ports[i]);
        weir_listener_t *l = &cf->listeners[i];
        l->address = strdup(text);
        l->name = l->address;
        l->backlog = 16;
        ck_assert_int_eq(conf_parse_address(text, &l->addr, err, sizeof(err)), 0);
    }
    return cf;
}

static void conf_del(weir_conf_t *cf)
{
    for (size_t i = 0; i < cf->nlisteners; i++)
        free((char *)cf->listeners[i].address);
    free(cf->listeners);
    free(cf);
}

static int is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

START_TEST(test_shared_by_address_closed_with_last_holder)
{
    int pa = free_port(), pb = free_port();
    weir_conf_t *g1 = conf_with(1, (int[]){pa});
    weir_conf_t *g2 = conf_with(2, (int[]){pb, pa});
    int f1[1], f2[2];
    ck_assert_int_eq(listen_acquire(g1, f1), 0);
    ck_assert_int_eq(listen_acquire(g2, f2), 0);
    ck_assert_int_eq(f2[1], f1[0]); /* same address: the same socket */
    ck_assert_int_ne(f2[0], f1[0]);
    listen_release(g1, f1);
    ck_assert(is_open(f1[0])); /* g2 still holds it */
    listen_release(g2, f2);
    ck_assert(!is_open(f2[0]));
    ck_assert(!is_open(f2[1]));
    conf_del(g1);
    conf_del(g2);
}
END_TEST

START_TEST(test_failed_acquire_rolls_back)
{
    int pa = free_port();
    int taken = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    ck_assert_int_eq(bind(taken, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(taken, 1), 0);
    ck_assert_int_eq(getsockname(taken, (struct sockaddr *)&sa, &len), 0);
    weir_conf_t *g = conf_with(2, (int[]){pa, ntohs(sa.sin_port)});
    int f[2] = {-1, -1};
    ck_assert_int_eq(listen_acquire(g, f), -1);
    /* the first address was opened, then closed again: free to bind */
    weir_conf_t *again = conf_with(1, (int[]){pa});
    int fa[1];
    ck_assert_int_eq(listen_acquire(again, fa), 0);
    listen_release(again, fa);
    close(taken);
    conf_del(g);
    conf_del(again);
}
END_TEST

START_TEST(test_handover_through_environment)
{
    int pa = free_port(), pb = free_port();
    weir_conf_t *g = conf_with(2, (int[]){pa, pb});
    int f[2];
    ck_assert_int_eq(listen_acquire(g, f), 0);
    char env[256];
    ck_assert_int_eq(listen_export(env, sizeof(env)), 0);
    ck_assert_int_eq(fcntl(f[0], F_GETFD) & FD_CLOEXEC, 0); /* inheritable now */
    /* what the new binary sees: the same descriptors, named in the variable */
    char want[64];
    snprintf(want, sizeof(want), "%d;%d", f[1], f[0]);
    ck_assert_str_eq(env, want);
    ck_assert_int_eq(listen_export(env, 3), -1);
    listen_release(g, f);
    conf_del(g);
}
END_TEST

START_TEST(test_inherited_sockets_are_taken_not_rebound)
{
    int pa = free_port(), pb = free_port();
    /* the old master's sockets, as a new binary finds them after exec */
    weir_conf_t *old = conf_with(2, (int[]){pa, pb});
    int of[2];
    ck_assert_int_eq(listen_acquire(old, of), 0);
    char env[64];
    snprintf(env, sizeof(env), "%d;%d", of[0], of[1]);
    setenv(LISTEN_INHERIT_ENV, env, 1);
    ck_assert_int_eq(listen_inherit(), 2);
    ck_assert_ptr_null(getenv(LISTEN_INHERIT_ENV));
    ck_assert(fcntl(of[0], F_GETFD) & FD_CLOEXEC);
    /* the new config keeps pb only: it gets that very socket, no bind */
    weir_conf_t *cf = conf_with(1, (int[]){pb});
    int f[1];
    ck_assert_int_eq(listen_acquire(cf, f), 0);
    ck_assert_int_eq(f[0], of[1]);
    listen_close_unclaimed(); /* pa: nobody took it */
    ck_assert(!is_open(of[0]));
    ck_assert(is_open(of[1]));
    conf_del(old);
    conf_del(cf);
}
END_TEST

START_TEST(test_malformed_inherit_value)
{
    setenv(LISTEN_INHERIT_ENV, "7;x", 1);
    ck_assert_int_eq(listen_inherit(), -1);
    setenv(LISTEN_INHERIT_ENV, "1", 1); /* stdout is no socket to take */
    ck_assert_int_eq(listen_inherit(), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("listen");
    TCase *tc = tcase_create("registry");
    tcase_add_test(tc, test_shared_by_address_closed_with_last_holder);
    tcase_add_test(tc, test_failed_acquire_rolls_back);
    tcase_add_test(tc, test_handover_through_environment);
    tcase_add_test(tc, test_inherited_sockets_are_taken_not_rebound);
    tcase_add_test(tc, test_malformed_inherit_value);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
