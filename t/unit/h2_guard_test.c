/*
 * core/h2_guard.c: the token buckets that cut misbehaving HTTP/2 clients,
 * and the filter that keeps weir's SETTINGS unacknowledged for nghttp2 (so
 * a stream beyond the limit is refused, not the connection ended): SETTINGS
 * ACK frames leave the input, everything else passes byte for byte however
 * the input is cut into reads.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "h2_guard.h"

START_TEST(test_bucket_burst_then_empty)
{
    h2_bucket_t b = {0};
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(h2_bucket_take(&b, 1000, 100, 10), 0);
    ck_assert_int_eq(h2_bucket_take(&b, 1000, 100, 10), -1);
}
END_TEST

START_TEST(test_bucket_refills_at_the_rate)
{
    h2_bucket_t b = {0};
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(h2_bucket_take(&b, 5000, 10, 10), 0);
    ck_assert_int_eq(h2_bucket_take(&b, 5000, 10, 10), -1);
    /* 10/s: one token per 100 ms; a refused take loses no refill time */
    ck_assert_int_eq(h2_bucket_take(&b, 5099, 10, 10), -1);
    ck_assert_int_eq(h2_bucket_take(&b, 5100, 10, 10), 0);
    ck_assert_int_eq(h2_bucket_take(&b, 5100, 10, 10), -1);
    ck_assert_int_eq(h2_bucket_take(&b, 5300, 10, 10), 0);
    ck_assert_int_eq(h2_bucket_take(&b, 5300, 10, 10), 0);
    ck_assert_int_eq(h2_bucket_take(&b, 5300, 10, 10), -1);
    /* never more than the burst, however long it rested */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(h2_bucket_take(&b, 900000, 10, 10), 0);
    ck_assert_int_eq(h2_bucket_take(&b, 900000, 10, 10), -1);
}
END_TEST

START_TEST(test_bucket_clock_at_zero)
{
    h2_bucket_t b = {0};
    ck_assert_int_eq(h2_bucket_take(&b, 0, 2, 1), 0);
    ck_assert_int_eq(h2_bucket_take(&b, 0, 2, 1), 0);
    ck_assert_int_eq(h2_bucket_take(&b, 0, 2, 1), -1);
}
END_TEST

/* ------------------------------------------------------------ ackfilter */

static unsigned char got[1 << 16];
static size_t got_len, got_calls;

static int collect(void *arg, const unsigned char *p, size_t n)
{
    (void)arg;
    ck_assert_uint_le(got_len + n, sizeof(got));
    memcpy(got + got_len, p, n);
    got_len += n;
    got_calls++;
    return 0;
}

static int refuse(void *arg, const unsigned char *p, size_t n)
{
    (void)arg, (void)p, (void)n;
    return -1;
}

static const char magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static size_t frame(unsigned char *d, unsigned type, unsigned flags, unsigned stream,
                    const char *payload, size_t len)
{
    d[0] = (unsigned char)(len >> 16);
    d[1] = (unsigned char)(len >> 8);
    d[2] = (unsigned char)len;
    d[3] = (unsigned char)type;
    d[4] = (unsigned char)flags;
    d[5] = (unsigned char)(stream >> 24);
    d[6] = (unsigned char)(stream >> 16);
    d[7] = (unsigned char)(stream >> 8);
    d[8] = (unsigned char)stream;
    memcpy(d + 9, payload, len);
    return 9 + len;
}

/* A client's input with SETTINGS ACKs in it, and what must come out. */
static unsigned char in[4096], want[4096];
static size_t in_len, want_len;

static void add(int keep, unsigned type, unsigned flags, unsigned stream, const char *p,
                size_t len)
{
    size_t n = frame(in + in_len, type, flags, stream, p, len);
    if (keep) {
        memcpy(want + want_len, in + in_len, n);
        want_len += n;
    }
    in_len += n;
}

static void build(void)
{
    in_len = want_len = 0;
    memcpy(in, magic, 24);
    memcpy(want, magic, 24);
    in_len = want_len = 24;
    add(1, 4, 0, 0, "\x00\x03\x00\x00\x00\x64", 6); /* SETTINGS */
    add(0, 4, 1, 0, "", 0);                         /* SETTINGS ACK: dropped */
    /* a HEADERS whose payload holds the bytes of a SETTINGS ACK frame */
    add(1, 1, 5, 1, "\x00\x00\x00\x04\x01\x00\x00\x00\x00", 9);
    add(1, 6, 0, 0, "12345678", 8);                 /* PING */
    add(0, 4, 1, 0, "", 0);
    add(1, 6, 1, 0, "abcdefgh", 8);                 /* PING ACK: kept */
    add(1, 0, 1, 1, "x", 1);                        /* DATA */
    got_len = got_calls = 0;
}

START_TEST(test_ackfilter_whole)
{
    h2_ackfilter_t f;
    h2_ackfilter_init(&f);
    build();
    ck_assert_int_eq(h2_ackfilter_feed(&f, in, in_len, collect, NULL), 0);
    ck_assert_uint_eq(got_len, want_len);
    ck_assert(memcmp(got, want, want_len) == 0);
    ck_assert_uint_eq(got_calls, 3); /* runs, not a call per frame */
}
END_TEST

/* Every way to cut the input in two, and one byte at a time. */
START_TEST(test_ackfilter_split_anywhere)
{
    build();
    for (size_t cut = 0; cut <= in_len; cut++) {
        h2_ackfilter_t f;
        h2_ackfilter_init(&f);
        got_len = 0;
        ck_assert_int_eq(h2_ackfilter_feed(&f, in, cut, collect, NULL), 0);
        ck_assert_int_eq(h2_ackfilter_feed(&f, in + cut, in_len - cut, collect, NULL), 0);
        ck_assert_uint_eq(got_len, want_len);
        ck_assert_msg(memcmp(got, want, want_len) == 0, "cut at %zu", cut);
    }
    h2_ackfilter_t f;
    h2_ackfilter_init(&f);
    got_len = 0;
    for (size_t i = 0; i < in_len; i++)
        ck_assert_int_eq(h2_ackfilter_feed(&f, in + i, 1, collect, NULL), 0);
    ck_assert_uint_eq(got_len, want_len);
    ck_assert(memcmp(got, want, want_len) == 0);
}
END_TEST

START_TEST(test_ackfilter_stops_when_out_fails)
{
    h2_ackfilter_t f;
    h2_ackfilter_init(&f);
    build();
    ck_assert_int_eq(h2_ackfilter_feed(&f, in, in_len, refuse, NULL), -1);
}
END_TEST

/* An ACK flag on a SETTINGS with a payload is not an ACK frame weir drops:
 * nghttp2 must see it (and call it the FRAME_SIZE_ERROR it is). */
START_TEST(test_ackfilter_keeps_malformed_ack)
{
    h2_ackfilter_t f;
    h2_ackfilter_init(&f);
    in_len = want_len = 0;
    memcpy(in, magic, 24);
    memcpy(want, magic, 24);
    in_len = want_len = 24;
    add(1, 4, 1, 0, "\x00\x03\x00\x00\x00\x64", 6);
    got_len = 0;
    ck_assert_int_eq(h2_ackfilter_feed(&f, in, in_len, collect, NULL), 0);
    ck_assert_uint_eq(got_len, want_len);
}
END_TEST

static Suite *h2_guard_suite(void)
{
    Suite *s = suite_create("h2_guard");
    TCase *tc = tcase_create("h2_guard");
    tcase_add_test(tc, test_bucket_burst_then_empty);
    tcase_add_test(tc, test_bucket_refills_at_the_rate);
    tcase_add_test(tc, test_bucket_clock_at_zero);
    tcase_add_test(tc, test_ackfilter_whole);
    tcase_add_test(tc, test_ackfilter_split_anywhere);
    tcase_add_test(tc, test_ackfilter_stops_when_out_fails);
    tcase_add_test(tc, test_ackfilter_keeps_malformed_ack);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(h2_guard_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
