/*
 * Session ticket keys of module tls (modules/tls/tickets.c): the keys of an
 * epoch derived from the shared secret (deterministic, different for another
 * epoch or secret, the layout of tickets.h pinned by a known answer), and a
 * worker's ring of current and previous keys as the clock crosses epochs.
 *
 * The known answer comes from Python's hmac, not from weir's C:
 *   /usr/bin/python3 -c 'import hmac,hashlib,struct
 *   for i in range(3): print(hmac.new(bytes(range(32)), b"weir ticket keys"
 *       + struct.pack(">Q", 40000) + bytes([i]), hashlib.sha256).hexdigest())'
 * (the epoch as 8 big-endian bytes). Every worker and every weir version
 * must compute the same keys, or tickets stop opening after an upgrade.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tickets.h"

static unsigned char secret_a[TICKET_SECRET_LEN], secret_b[TICKET_SECRET_LEN];

static void setup(void)
{
    for (int i = 0; i < TICKET_SECRET_LEN; i++) {
        secret_a[i] = (unsigned char)i;
        secret_b[i] = (unsigned char)(0xa5 ^ (i * 7));
    }
}

static void unhex(const char *hex, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
}

static ticket_keys_t derive(const unsigned char *secret, uint64_t epoch)
{
    ticket_keys_t k;
    memset(&k, 0x5a, sizeof(k));
    ck_assert_int_eq(ticket_keys_derive(secret, epoch, &k), 0);
    ck_assert_uint_eq(k.epoch, epoch);
    return k;
}

static int keys_equal(const ticket_keys_t *a, const ticket_keys_t *b)
{
    return a->epoch == b->epoch && memcmp(a->name, b->name, sizeof(a->name)) == 0 &&
           memcmp(a->aes, b->aes, sizeof(a->aes)) == 0 &&
           memcmp(a->hmac, b->hmac, sizeof(a->hmac)) == 0;
}

/* no key material in common: the name, AES and HMAC keys all differ */
static void assert_unrelated(const ticket_keys_t *a, const ticket_keys_t *b)
{
    ck_assert(memcmp(a->name, b->name, sizeof(a->name)) != 0);
    ck_assert(memcmp(a->aes, b->aes, sizeof(a->aes)) != 0);
    ck_assert(memcmp(a->hmac, b->hmac, sizeof(a->hmac)) != 0);
}

/* a time well inside epoch e */
static uint64_t in_epoch(uint64_t e, uint64_t offset)
{
    return e * TICKET_EPOCH_S + offset;
}

/* ------------------------------------------------------------ derivation */

START_TEST(test_known_answer)
{
    unsigned char b0[32], b1[32], b2[32];
    unhex("425946081092b4b3128a00116fff737d70231259fd35fb3c9f4c7f2661ade78f", b0, 32);
    unhex("428943d5f68efdc499a6a1e136092a7e65d9f7e5073743d6bcc07b1b84d24605", b1, 32);
    unhex("d213f84e05235163580b95c83acc2fa51ab0a780934b66dd31aaf44c58b3c404", b2, 32);
    ticket_keys_t k = derive(secret_a, 40000);
    ck_assert_mem_eq(k.name, b0, 16);
    ck_assert_mem_eq(k.aes, b1, 32);
    ck_assert_mem_eq(k.hmac, b2, 32);
}
END_TEST

START_TEST(test_deterministic)
{
    ticket_keys_t a = derive(secret_a, 12345), b = derive(secret_a, 12345);
    ck_assert(keys_equal(&a, &b));
    /* the three parts of one epoch differ from each other too */
    ck_assert(memcmp(a.name, a.aes, 16) != 0);
    ck_assert(memcmp(a.aes, a.hmac, 32) != 0);
}
END_TEST

START_TEST(test_other_epoch_other_keys)
{
    ticket_keys_t e = derive(secret_a, 12345);
    static const uint64_t others[] = {0, 1, 12344, 12346, 12345 + (1ull << 32),
                                      12345ull << 8, UINT64_MAX};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        ticket_keys_t o = derive(secret_a, others[i]);
        assert_unrelated(&e, &o);
    }
}
END_TEST

START_TEST(test_other_secret_other_keys)
{
    ticket_keys_t a = derive(secret_a, 12345), b = derive(secret_b, 12345);
    assert_unrelated(&a, &b);
    unsigned char one_bit[TICKET_SECRET_LEN];
    memcpy(one_bit, secret_a, sizeof(one_bit));
    one_bit[TICKET_SECRET_LEN - 1] ^= 1; /* the whole secret counts */
    ticket_keys_t c = derive(one_bit, 12345);
    assert_unrelated(&a, &c);
}
END_TEST

START_TEST(test_epoch_of_time)
{
    ck_assert_uint_eq(ticket_epoch(0), 0);
    ck_assert_uint_eq(ticket_epoch(TICKET_EPOCH_S - 1), 0);
    ck_assert_uint_eq(ticket_epoch(TICKET_EPOCH_S), 1);
    ck_assert_uint_eq(ticket_epoch(in_epoch(40000, TICKET_EPOCH_S - 1)), 40000);
}
END_TEST

/* ------------------------------------------------------------------ ring */

static ticket_ring_t ring_at(uint64_t now)
{
    ticket_ring_t ring = {.secret = secret_a};
    ck_assert_int_eq(ticket_ring_at(&ring, now), 0);
    ck_assert(ring.ready);
    return ring;
}

static void assert_ring(const ticket_ring_t *ring, uint64_t epoch)
{
    ticket_keys_t cur = derive(secret_a, epoch), prev = derive(secret_a, epoch - 1);
    ck_assert_msg(keys_equal(&ring->cur, &cur), "cur is not epoch %llu",
                  (unsigned long long)epoch);
    ck_assert_msg(keys_equal(&ring->prev, &prev), "prev is not epoch %llu",
                  (unsigned long long)epoch - 1);
}

START_TEST(test_ring_first)
{
    ticket_ring_t ring = ring_at(in_epoch(40000, 5));
    assert_ring(&ring, 40000);
}
END_TEST

START_TEST(test_ring_same_epoch_unchanged)
{
    ticket_ring_t ring = ring_at(in_epoch(40000, 0));
    ticket_ring_t before = ring;
    ck_assert_int_eq(ticket_ring_at(&ring, in_epoch(40000, TICKET_EPOCH_S - 1)), 0);
    ck_assert(keys_equal(&ring.cur, &before.cur));
    ck_assert(keys_equal(&ring.prev, &before.prev));
}
END_TEST

/* one epoch on: the old current keys become the previous ones */
START_TEST(test_ring_next_epoch)
{
    ticket_ring_t ring = ring_at(in_epoch(40000, TICKET_EPOCH_S - 1));
    ticket_keys_t old_cur = ring.cur;
    ck_assert_int_eq(ticket_ring_at(&ring, in_epoch(40001, 0)), 0);
    ck_assert(keys_equal(&ring.prev, &old_cur));
    assert_ring(&ring, 40001);
}
END_TEST

/* a jump of several epochs (a worker idle for a day) recomputes both */
START_TEST(test_ring_jump)
{
    ticket_ring_t ring = ring_at(in_epoch(40000, 7));
    ticket_keys_t old_cur = ring.cur;
    ck_assert_int_eq(ticket_ring_at(&ring, in_epoch(40003, 7)), 0);
    assert_ring(&ring, 40003);
    ck_assert(!keys_equal(&ring.prev, &old_cur));
    /* the clock stepping back does not keep keys of the future */
    ck_assert_int_eq(ticket_ring_at(&ring, in_epoch(39990, 7)), 0);
    assert_ring(&ring, 39990);
}
END_TEST

/* ------------------------------------------------------------------ find */

START_TEST(test_find)
{
    ticket_ring_t ring = ring_at(in_epoch(40000, 1));
    int renew = -1;
    const ticket_keys_t *k = ticket_ring_find(&ring, ring.cur.name, &renew);
    ck_assert_ptr_eq(k, &ring.cur);
    ck_assert_int_eq(renew, 0);
    renew = -1;
    k = ticket_ring_find(&ring, ring.prev.name, &renew);
    ck_assert_ptr_eq(k, &ring.prev);
    ck_assert_int_eq(renew, 1);
}
END_TEST

START_TEST(test_find_unknown)
{
    ticket_ring_t ring = ring_at(in_epoch(40000, 1));
    unsigned char name[16];
    int renew = 0;
    memset(name, 0, sizeof(name));
    ck_assert_ptr_null(ticket_ring_find(&ring, name, &renew));
    /* every byte of the name counts, for either key */
    memcpy(name, ring.cur.name, sizeof(name));
    name[15] ^= 0x80;
    ck_assert_ptr_null(ticket_ring_find(&ring, name, &renew));
    memcpy(name, ring.prev.name, sizeof(name));
    name[15] ^= 0x01;
    ck_assert_ptr_null(ticket_ring_find(&ring, name, &renew));
    /* the same epoch under another secret */
    ticket_keys_t other = derive(secret_b, 40000);
    ck_assert_ptr_null(ticket_ring_find(&ring, other.name, &renew));
}
END_TEST

/* a ticket lives at most two epochs: one sealed two epochs ago is refused */
START_TEST(test_find_two_epochs_ago)
{
    ticket_ring_t ring = ring_at(in_epoch(40000, 1));
    ticket_keys_t sealed = ring.cur;
    ck_assert_int_eq(ticket_ring_at(&ring, in_epoch(40001, 1)), 0);
    int renew = 0;
    ck_assert_ptr_eq(ticket_ring_find(&ring, sealed.name, &renew), &ring.prev);
    ck_assert_int_eq(renew, 1);
    ck_assert_int_eq(ticket_ring_at(&ring, in_epoch(40002, 1)), 0);
    ck_assert_ptr_null(ticket_ring_find(&ring, sealed.name, &renew));
}
END_TEST

START_TEST(test_find_not_ready)
{
    ticket_ring_t ring = {.secret = secret_a};
    unsigned char name[16] = {0};
    int renew = 0;
    /* a zeroed ring's names are zeros; still nothing is found */
    ck_assert_ptr_null(ticket_ring_find(&ring, name, &renew));
}
END_TEST

static Suite *tickets_suite(void)
{
    Suite *s = suite_create("tickets");
    TCase *tc = tcase_create("tickets");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_known_answer);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_other_epoch_other_keys);
    tcase_add_test(tc, test_other_secret_other_keys);
    tcase_add_test(tc, test_epoch_of_time);
    tcase_add_test(tc, test_ring_first);
    tcase_add_test(tc, test_ring_same_epoch_unchanged);
    tcase_add_test(tc, test_ring_next_epoch);
    tcase_add_test(tc, test_ring_jump);
    tcase_add_test(tc, test_find);
    tcase_add_test(tc, test_find_unknown);
    tcase_add_test(tc, test_find_two_epochs_ago);
    tcase_add_test(tc, test_find_not_ready);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tickets_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
