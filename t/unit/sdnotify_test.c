/* $NOTIFY_SOCKET names (path, abstract, refused forms) and one message sent
 * to a socket bound here, as systemd's would be. */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"

START_TEST(test_path_and_abstract_addresses)
{
    struct sockaddr_un sa;
    socklen_t len;
    ck_assert_int_eq(sdnotify_address("/run/systemd/notify", &sa, &len), 0);
    ck_assert_str_eq(sa.sun_path, "/run/systemd/notify");
    ck_assert_uint_eq(len, offsetof(struct sockaddr_un, sun_path) +
                               strlen("/run/systemd/notify") + 1);
    ck_assert_int_eq(sdnotify_address("@weir/notify", &sa, &len), 0);
    ck_assert_int_eq(sa.sun_path[0], '\0');
    ck_assert_int_eq(memcmp(sa.sun_path + 1, "weir/notify", 11), 0);
    /* no terminator: the abstract name is exactly its bytes */
    ck_assert_uint_eq(len, offsetof(struct sockaddr_un, sun_path) + 12);
}
END_TEST

START_TEST(test_refused_names)
{
    struct sockaddr_un sa;
    socklen_t len;
    char big[sizeof(sa.sun_path) + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    big[sizeof(big) - 1] = '\0';
    const char *bad[] = {"", "/", "@", "relative.sock", "vsock:2:99", big};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(sdnotify_address(bad[i], &sa, &len) == -1, "accepted '%.20s'", bad[i]);
    ck_assert_int_eq(sdnotify_address(NULL, &sa, &len), -1);
}
END_TEST

static int bound_socket(const char *env, struct sockaddr_un *sa)
{
    socklen_t len;
    ck_assert_int_eq(sdnotify_address(env, sa, &len), 0);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)sa, len), 0);
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", env, 1), 0);
    return fd;
}

static void expect_message(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_str_eq(buf, want);
}

START_TEST(test_sends_one_datagram)
{
    char path[] = "/tmp/weir-sdnotify-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(path));
    char env[sizeof(path) + 16];
    snprintf(env, sizeof(env), "%s/notify", path);
    struct sockaddr_un sa;
    int fd = bound_socket(env, &sa);
    ck_assert_int_eq(sdnotify_send("READY=1\nSTATUS=x"), 1);
    expect_message(fd, "READY=1\nSTATUS=x");
    char want[64];
    snprintf(want, sizeof(want), "READY=1\nMAINPID=%d\nSTATUS=up", (int)getpid());
    sdnotify_ready("up");
    expect_message(fd, want);
    close(fd);
    unlink(env);
    rmdir(path);
    /* gone: -1 (and a warning), never a crash or a signal */
    ck_assert_int_eq(sdnotify_send("READY=1"), -1);
}
END_TEST

START_TEST(test_abstract_socket)
{
    char env[64];
    snprintf(env, sizeof(env), "@weir-sdnotify-test-%d", (int)getpid());
    struct sockaddr_un sa;
    int fd = bound_socket(env, &sa);
    sdnotify_stopping();
    expect_message(fd, "STOPPING=1\nSTATUS=stopping");
    close(fd);
}
END_TEST

START_TEST(test_unset_sends_nothing)
{
    unsetenv("NOTIFY_SOCKET");
    ck_assert_int_eq(sdnotify_send("READY=1"), 0);
    ck_assert_int_eq(sdnotify_sendf("READY=%d", 1), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sdnotify");
    TCase *tc = tcase_create("protocol");
    tcase_add_test(tc, test_path_and_abstract_addresses);
    tcase_add_test(tc, test_refused_names);
    tcase_add_test(tc, test_sends_one_datagram);
    tcase_add_test(tc, test_abstract_socket);
    tcase_add_test(tc, test_unset_sends_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
