/*
 * The log file service (core/logfile.c) on a real io_uring loop: records are
 * written whole and in order, when a buffer fills or the flush interval
 * passes; a record larger than the buffer goes out whole; reopen follows a
 * rename; what is buffered is written at exit; a path that cannot be opened
 * is a config error at the node; and when writes fall behind (here: many
 * records without a loop turn), records are dropped, counted, and writing
 * resumes afterwards.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "conf.h"
#include "logfile.h"
#include "loop.h"

static struct loop L;
static char dir[256];
static weir_conf_t *cf;

/* A ticking timer, so that a loop turn never waits for ever when nothing
 * else is pending. */
static struct timer tick;
static void on_tick(struct timer *t)
{
    timer_after(&L, t, 5);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "%s/weir-logfile-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(loop_init(&L, 64, 4, 4096), 0);
    timer_init(&tick, on_tick);
    timer_after(&L, &tick, 5);
    cf = calloc(1, sizeof(*cf));
    cf->arena = arena_new(4096, 0);
    cf->file = "weir.yaml";
    cf->dir = dir;
    cf->errors_tail = &cf->errors;
}

static char *slurp(const char *name)
{
    static char buf[1 << 22];
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Turns the loop until the file holds `want` bytes, or 2 s of loop time. */
static void turn_until_size(const char *name, size_t want)
{
    uint64_t end = L.now + 2000;
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    while (L.now < end) {
        if (stat(path, &st) == 0 && (size_t)st.st_size >= want)
            return;
        loop_once(&L);
    }
}

static void write_str(weir_logfile_t *f, const char *s)
{
    ck_assert_int_eq(weir_logfile_write(f, s, strlen(s)), 0);
}

START_TEST(test_flush_interval_and_order)
{
    weir_logfile_t *f = weir_logfile_open(cf, NULL, "a.log", 4096, 30);
    ck_assert_ptr_nonnull(f);
    write_str(f, "one\n");
    write_str(f, "two\n");
    write_str(f, "three\n");
    /* buffered: nothing is written before the loop turns and the interval passes */
    ck_assert_str_eq(slurp("a.log"), "");
    turn_until_size("a.log", 14);
    ck_assert_str_eq(slurp("a.log"), "one\ntwo\nthree\n");
}
END_TEST

START_TEST(test_full_buffers_go_without_the_timer)
{
    /* an hour's flush: only full buffers are written */
    weir_logfile_t *f = weir_logfile_open(cf, NULL, "b.log", 16, 3600 * 1000);
    char want[4096] = "";
    for (int i = 0; i < 20; i++) {
        char rec[32];
        snprintf(rec, sizeof(rec), "rec-%02d-xxxx\n", i); /* 12 bytes: one per buffer */
        write_str(f, rec);
        strcat(want, rec);
    }
    /* the 20th record sits in a buffer that is not full yet */
    turn_until_size("b.log", 19 * 12);
    for (int i = 0; i < 10; i++)
        loop_once(&L);
    size_t n = strlen(slurp("b.log"));
    ck_assert_uint_eq(n, 19 * 12);
    ck_assert_int_eq(strncmp(slurp("b.log"), want, n), 0);
    logfiles_flush_at_exit(cf);
    ck_assert_str_eq(slurp("b.log"), want);
}
END_TEST

START_TEST(test_record_larger_than_buffer)
{
    weir_logfile_t *f = weir_logfile_open(cf, NULL, "c.log", 8, 10);
    char big[1000];
    memset(big, 'z', sizeof(big) - 2);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\0';
    write_str(f, "small\n");
    write_str(f, big);
    write_str(f, "after\n");
    turn_until_size("c.log", 6 + 999 + 6);
    char want[1100];
    snprintf(want, sizeof(want), "small\n%safter\n", big);
    ck_assert_str_eq(slurp("c.log"), want);
}
END_TEST

START_TEST(test_reopen_follows_a_rename)
{
    weir_logfile_t *f = weir_logfile_open(cf, NULL, "d.log", 4096, 10);
    write_str(f, "before\n");
    turn_until_size("d.log", 7);
    char from[512], to[512];
    snprintf(from, sizeof(from), "%s/d.log", dir);
    snprintf(to, sizeof(to), "%s/d.log.1", dir);
    ck_assert_int_eq(rename(from, to), 0);
    write_str(f, "renamed\n"); /* still the old descriptor */
    turn_until_size("d.log.1", 15);
    /* what a worker gets from the master after a reopen (ctl.c) */
    ck_assert_uint_eq(logfiles_count(cf), 1);
    int fd = open(from, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(logfiles_adopt(cf, 0, fd), 0);
    ck_assert_int_eq(logfiles_fd(cf, 0), fd);
    ck_assert_int_eq(logfiles_adopt(cf, 1, fd), -1);
    for (int i = 0; i < 5; i++)
        loop_once(&L);
    write_str(f, "after\n");
    turn_until_size("d.log", 6);
    ck_assert_str_eq(slurp("d.log"), "after\n");
    ck_assert_str_eq(slurp("d.log.1"), "before\nrenamed\n");
}
END_TEST

START_TEST(test_same_path_shares_one_file)
{
    weir_logfile_t *a = weir_logfile_open(cf, NULL, "e.log", 4096, 10);
    weir_logfile_t *b = weir_logfile_open(cf, NULL, "./e.log", 4096, 10);
    weir_logfile_t *c = weir_logfile_open(cf, NULL, "e.log", 64, 99);
    ck_assert_ptr_eq(a, c);
    ck_assert_ptr_ne(a, b); /* spelled differently: a file of its own, still O_APPEND */
    ck_assert_ptr_eq(weir_logfile_open(cf, NULL, "stderr", 1, 1),
                     weir_logfile_open(cf, NULL, "stderr", 2, 2));
}
END_TEST

START_TEST(test_unopenable_path_is_a_config_error)
{
    weir_node_t node = {.file = "weir.yaml", .line = 7, .column = 11};
    ck_assert_ptr_null(weir_logfile_open(cf, &node, "no/such/dir/x.log", 4096, 10));
    ck_assert_uint_eq(cf->nerrors, 1);
    char want[600];
    snprintf(want, sizeof(want),
             "weir.yaml:7:11: cannot open log file %s/no/such/dir/x.log: No such file or directory",
             dir);
    ck_assert_str_eq(cf->errors->msg, want);
}
END_TEST

START_TEST(test_falling_behind_drops_and_recovers)
{
    /* 4 KiB buffers; the queue holds at least 1 MiB. Records written with no
     * loop turn in between are exactly what a stalled disk looks like. */
    weir_logfile_t *f = weir_logfile_open(cf, NULL, "g.log", 4096, 10);
    char rec[1024];
    memset(rec, 'r', sizeof(rec) - 1);
    rec[sizeof(rec) - 1] = '\n';
    int kept = 0, dropped = 0;
    for (int i = 0; i < 2048; i++) {
        if (weir_logfile_write(f, rec, sizeof(rec)) == 0)
            kept++;
        else
            dropped++;
    }
    ck_assert_int_gt(dropped, 0);
    ck_assert_int_ge(kept, 1024); /* at least the 1 MiB bound was taken */
    turn_until_size("g.log", (size_t)kept * sizeof(rec));
    ck_assert_uint_eq(strlen(slurp("g.log")), (size_t)kept * sizeof(rec));
    /* writing resumes once the queue is written */
    ck_assert_int_eq(weir_logfile_write(f, rec, sizeof(rec)), 0);
    turn_until_size("g.log", (size_t)(kept + 1) * sizeof(rec));
    ck_assert_uint_eq(strlen(slurp("g.log")), (size_t)(kept + 1) * sizeof(rec));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("logfile");
    TCase *tc = tcase_create("logfile");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_flush_interval_and_order);
    tcase_add_test(tc, test_full_buffers_go_without_the_timer);
    tcase_add_test(tc, test_record_larger_than_buffer);
    tcase_add_test(tc, test_reopen_follows_a_rename);
    tcase_add_test(tc, test_same_path_shares_one_file);
    tcase_add_test(tc, test_unopenable_path_is_a_config_error);
    tcase_add_test(tc, test_falling_behind_drops_and_recovers);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
