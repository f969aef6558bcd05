/*
 * Smooth weighted round robin of module lb_roundrobin: exact sequences,
 * proportions, down and already-tried peers, backups.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "lb_roundrobin/swrr.h"

#define MAXP 8

/* What weir_peer_usable() answers in the module: not down, not tried. */
struct peers {
    int down[MAXP];
    int tried[MAXP];
};

static int usable(void *ctx, size_t i)
{
    struct peers *p = ctx;

    return !p->down[i] && !p->tried[i];
}

static struct swrr *make(size_t n, const unsigned *w, const int *backup)
{
    struct swrr *s = malloc(swrr_size(n));

    ck_assert_ptr_nonnull(s);
    swrr_init(s, n, w, backup);
    return s;
}

/* Picks len times and compares with want, one letter per peer ('a' = 0). */
static void expect_seq(struct swrr *s, struct peers *p, const char *want)
{
    size_t len = strlen(want);
    char got[64] = {0};

    ck_assert_uint_lt(len, sizeof(got));
    for (size_t i = 0; i < len; i++) {
        int k = swrr_pick(s, usable, p);
        got[i] = k < 0 ? '-' : (char)('a' + k);
    }
    ck_assert_str_eq(got, want);
}

START_TEST(test_5_1_1_sequence)
{
    static const unsigned w[] = {5, 1, 1};
    struct swrr *s = make(3, w, NULL);
    struct peers p = {0};

    for (int round = 0; round < 5; round++)
        expect_seq(s, &p, "aabacaa");
    free(s);
}
END_TEST

START_TEST(test_3_1_proportion)
{
    static const unsigned w[] = {3, 1};
    struct swrr *s = make(2, w, NULL);
    struct peers p = {0};
    int count[2] = {0};

    for (int i = 0; i < 400; i++) {
        int k = swrr_pick(s, usable, &p);
        ck_assert(k == 0 || k == 1);
        count[k]++;
    }
    ck_assert_int_eq(count[0], 300);
    ck_assert_int_eq(count[1], 100);
    free(s);
}
END_TEST

START_TEST(test_equal_weights)
{
    static const unsigned w[] = {1, 1, 1};
    struct swrr *s = make(3, w, NULL);
    struct peers p = {0};

    expect_seq(s, &p, "abcabcabcabc");
    free(s);
    /* NULL weights mean all 1, NULL usable means all usable */
    s = make(3, NULL, NULL);
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(swrr_pick(s, NULL, NULL), i % 3);
    free(s);
}
END_TEST

START_TEST(test_down_peer_skipped)
{
    static const unsigned w[] = {5, 1, 1};
    struct swrr *s = make(3, w, NULL);
    struct peers p = {0};
    int count[3] = {0};

    expect_seq(s, &p, "aabacaa"); /* back at the start of a cycle */
    p.down[2] = 1;
    for (int i = 0; i < 600; i++)
        count[swrr_pick(s, usable, &p)]++;
    /* the others keep their 5:1 */
    ck_assert_int_eq(count[0], 500);
    ck_assert_int_eq(count[1], 100);
    ck_assert_int_eq(count[2], 0);
    free(s);

    /* a down peer in the middle of equal weights */
    s = make(3, NULL, NULL);
    memset(&p, 0, sizeof(p));
    p.down[1] = 1;
    expect_seq(s, &p, "acacac");
    p.down[1] = 0;
    p.down[0] = 1;
    expect_seq(s, &p, "bcbc");
    free(s);
}
END_TEST

START_TEST(test_backups)
{
    static const unsigned w[] = {1, 1, 2, 1};
    static const int backup[] = {0, 0, 1, 1};
    struct swrr *s = make(4, w, backup);
    struct peers p = {0};

    /* primaries up: backups never used */
    expect_seq(s, &p, "abababab");
    /* one primary down: the other takes everything */
    p.down[0] = 1;
    expect_seq(s, &p, "bbbb");
    /* all primaries down: the backups rotate 2:1 among themselves */
    p.down[1] = 1;
    expect_seq(s, &p, "cdccdccdc");
    /* a backup down too */
    p.down[2] = 1;
    expect_seq(s, &p, "ddd");
    /* everything down */
    p.down[3] = 1;
    expect_seq(s, &p, "---");
    /* a primary back: backups unused again */
    p.down[1] = 0;
    expect_seq(s, &p, "bbb");
    free(s);
}
END_TEST

START_TEST(test_all_down)
{
    static const unsigned w[] = {2, 3};
    struct swrr *s = make(2, w, NULL);
    struct peers p = {.down = {1, 1}};

    ck_assert_int_eq(swrr_pick(s, usable, &p), -1);
    ck_assert_int_eq(swrr_pick(s, usable, &p), -1);
    free(s);
    s = make(0, NULL, NULL);
    ck_assert_int_eq(swrr_pick(s, usable, &p), -1);
    free(s);
}
END_TEST

/* A retry within one request: each pick excludes the peers tried so far. */
START_TEST(test_tried_peer_skipped)
{
    static const unsigned w[] = {5, 1, 1};
    struct swrr *s = make(3, w, NULL);
    struct peers p = {0};
    int k;

    k = swrr_pick(s, usable, &p);
    ck_assert_int_eq(k, 0);
    p.tried[k] = 1;
    k = swrr_pick(s, usable, &p);
    ck_assert_int_eq(k, 1);
    p.tried[k] = 1;
    k = swrr_pick(s, usable, &p);
    ck_assert_int_eq(k, 2);
    p.tried[k] = 1;
    ck_assert_int_eq(swrr_pick(s, usable, &p), -1);

    /* the next request sees every peer again; the rotation stays fair: over
     * many requests of one pick each, 5:1:1 still holds */
    memset(&p, 0, sizeof(p));
    int count[3] = {0};
    for (int i = 0; i < 700; i++)
        count[swrr_pick(s, usable, &p)]++;
    ck_assert_int_eq(count[0], 500);
    ck_assert_int_eq(count[1], 100);
    ck_assert_int_eq(count[2], 100);
    free(s);
}
END_TEST

START_TEST(test_zero_weight_is_one)
{
    static const unsigned w[] = {0, 1};
    struct swrr *s = make(2, w, NULL);
    struct peers p = {0};

    expect_seq(s, &p, "abab");
    free(s);
}
END_TEST

static Suite *roundrobin_suite(void)
{
    Suite *s = suite_create("roundrobin");
    TCase *tc = tcase_create("swrr");

    tcase_add_test(tc, test_5_1_1_sequence);
    tcase_add_test(tc, test_3_1_proportion);
    tcase_add_test(tc, test_equal_weights);
    tcase_add_test(tc, test_down_peer_skipped);
    tcase_add_test(tc, test_backups);
    tcase_add_test(tc, test_all_down);
    tcase_add_test(tc, test_tried_peer_skipped);
    tcase_add_test(tc, test_zero_weight_is_one);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(roundrobin_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
