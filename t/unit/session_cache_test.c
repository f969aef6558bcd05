/*
 * The shared server session cache of module tls
 * (modules/tls/session_cache.c): put, get and remove by session ID, expiry,
 * what is refused (too big, bad IDs), a slot another worker holds (its lock
 * set by hand here) counting as a miss and never being unlocked by the
 * loser, and a newer session evicting an older one whose ID lands in the
 * same slot.
 *
 * The cache is a plain calloc'ed scache_t (in weir it is a shared zone).
 * Colliding IDs are found through the cache itself (put one, see whether an
 * earlier one is gone), so the test does not depend on the hash function.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/session_cache.h"

#define NOW 1700000000ull

static scache_t *sc;

static void setup(void)
{
    sc = calloc(1, sizeof(*sc));
    ck_assert_ptr_nonnull(sc);
}

static void teardown(void)
{
    free(sc);
    sc = NULL;
}

/* a 32-byte session ID made from n */
static void make_id(unsigned char id[SCACHE_ID_MAX], unsigned n)
{
    for (int i = 0; i < SCACHE_ID_MAX; i++)
        id[i] = (unsigned char)((n * 2654435761u) >> (i % 4 * 8)) ^ (unsigned char)i;
}

/* a DER-like payload of len bytes tagged with n */
static unsigned char *payload(unsigned n, size_t len)
{
    unsigned char *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(n + i * 31);
    return p;
}

static void put_ok(const unsigned char *id, size_t id_len, unsigned tag, size_t len,
                   uint64_t expires)
{
    unsigned char *der = payload(tag, len);
    ck_assert_int_eq(scache_put(sc, id, id_len, der, len, expires), 0);
    free(der);
}

/* get id at now: 1 if it returns exactly the payload (tag, len) */
static int holds(const unsigned char *id, size_t id_len, unsigned tag, size_t len, uint64_t now)
{
    unsigned char buf[SCACHE_DATA];
    unsigned char *want = payload(tag, len);
    size_t n = scache_get(sc, id, id_len, now, buf, sizeof(buf));
    int ok = n == len && memcmp(buf, want, len) == 0;
    free(want);
    return ok;
}

static size_t get_len(const unsigned char *id, size_t id_len, uint64_t now)
{
    unsigned char buf[SCACHE_DATA];
    return scache_get(sc, id, id_len, now, buf, sizeof(buf));
}

/* the one slot in use (the cache holds a single session) */
static scache_slot_t *only_used_slot(void)
{
    scache_slot_t *found = NULL;
    for (size_t i = 0; i < SCACHE_SLOTS; i++) {
        if (sc->slots[i].len) {
            ck_assert_ptr_null(found);
            found = &sc->slots[i];
        }
    }
    ck_assert_ptr_nonnull(found);
    return found;
}

/* Two IDs whose sessions share a slot: each put evicts an earlier ID or
 * not; the first that does gives the pair. */
static void colliding_ids(unsigned char a[SCACHE_ID_MAX], unsigned char b[SCACHE_ID_MAX])
{
    enum { TRIES = 2 * SCACHE_SLOTS };
    for (unsigned k = 0; k < TRIES; k++) {
        make_id(b, k);
        put_ok(b, SCACHE_ID_MAX, k, 8, NOW + 100);
        for (unsigned j = 0; j < k; j++) {
            make_id(a, j);
            if (get_len(a, SCACHE_ID_MAX, NOW) == 0) {
                memset(sc, 0, sizeof(*sc)); /* start the test from an empty cache */
                return;
            }
        }
    }
    ck_abort_msg("no two of %d IDs share a slot", TRIES);
}

/* ------------------------------------------------------------------ basics */

START_TEST(test_put_get)
{
    unsigned char id[SCACHE_ID_MAX];
    make_id(id, 1);
    put_ok(id, 32, 7, 300, NOW + 60);
    ck_assert(holds(id, 32, 7, 300, NOW));
    ck_assert(holds(id, 32, 7, 300, NOW)); /* a get does not consume */
    /* an ID that is a prefix of it, or differs in one byte, is another session */
    ck_assert_uint_eq(get_len(id, 31, NOW), 0);
    id[31] ^= 1;
    ck_assert_uint_eq(get_len(id, 32, NOW), 0);
}
END_TEST

START_TEST(test_short_ids)
{
    /* TLS 1.2 IDs are 1..32 bytes */
    static const unsigned char one[1] = {0x42};
    unsigned char id16[16];
    memset(id16, 0xee, sizeof(id16));
    put_ok(one, 1, 1, 10, NOW + 60);
    put_ok(id16, 16, 2, 20, NOW + 60);
    ck_assert(holds(one, 1, 1, 10, NOW));
    ck_assert(holds(id16, 16, 2, 20, NOW));
}
END_TEST

START_TEST(test_put_replaces_same_id)
{
    unsigned char id[SCACHE_ID_MAX];
    make_id(id, 2);
    put_ok(id, 32, 1, 500, NOW + 60);
    put_ok(id, 32, 2, 100, NOW + 120); /* shorter: no bytes of the old one remain */
    ck_assert(holds(id, 32, 2, 100, NOW + 90));
}
END_TEST

START_TEST(test_remove)
{
    unsigned char id[SCACHE_ID_MAX], other[SCACHE_ID_MAX];
    make_id(id, 3);
    make_id(other, 4);
    put_ok(id, 32, 3, 50, NOW + 60);
    put_ok(other, 32, 4, 50, NOW + 60);
    scache_remove(sc, id, 32);
    ck_assert_uint_eq(get_len(id, 32, NOW), 0);
    ck_assert(holds(other, 32, 4, 50, NOW));
    scache_remove(sc, id, 32); /* removing what is not there is harmless */
    ck_assert(holds(other, 32, 4, 50, NOW));
}
END_TEST

/* ------------------------------------------------------------------ expiry */

START_TEST(test_expiry)
{
    unsigned char id[SCACHE_ID_MAX];
    make_id(id, 5);
    put_ok(id, 32, 5, 64, NOW + 10);
    ck_assert(holds(id, 32, 5, 64, NOW + 9));
    ck_assert_uint_eq(get_len(id, 32, NOW + 10), 0); /* `expires` is the first second it is gone */
    ck_assert_uint_eq(get_len(id, 32, NOW + 1000), 0);
    /* a fresh put under the same ID works again */
    put_ok(id, 32, 6, 64, NOW + 2000);
    ck_assert(holds(id, 32, 6, 64, NOW + 1000));
}
END_TEST

/* --------------------------------------------------------------- refusals */

START_TEST(test_too_big)
{
    unsigned char id[SCACHE_ID_MAX];
    make_id(id, 6);
    put_ok(id, 32, 1, SCACHE_DATA, NOW + 60); /* exactly a slot's worth fits */
    ck_assert(holds(id, 32, 1, SCACHE_DATA, NOW));

    unsigned char *big = payload(2, SCACHE_DATA + 1);
    unsigned char id2[SCACHE_ID_MAX];
    make_id(id2, 7);
    ck_assert_int_eq(scache_put(sc, id2, 32, big, SCACHE_DATA + 1, NOW + 60), -1);
    ck_assert_uint_eq(get_len(id2, 32, NOW), 0);
    /* too big for a slot the old session holds: the old one stays */
    ck_assert_int_eq(scache_put(sc, id, 32, big, SCACHE_DATA + 1, NOW + 60), -1);
    ck_assert(holds(id, 32, 1, SCACHE_DATA, NOW));
    free(big);
}
END_TEST

START_TEST(test_bad_arguments)
{
    unsigned char id[SCACHE_ID_MAX + 1], der[4] = {1, 2, 3, 4}, buf[16];
    memset(id, 9, sizeof(id));
    ck_assert_int_eq(scache_put(sc, id, 0, der, 4, NOW + 60), -1);
    ck_assert_int_eq(scache_put(sc, id, SCACHE_ID_MAX + 1, der, 4, NOW + 60), -1);
    ck_assert_int_eq(scache_put(sc, id, 8, der, 0, NOW + 60), -1);
    ck_assert_int_eq(scache_put(NULL, id, 8, der, 4, NOW + 60), -1);
    ck_assert_uint_eq(scache_get(sc, id, 0, NOW, buf, sizeof(buf)), 0);
    ck_assert_uint_eq(scache_get(sc, id, SCACHE_ID_MAX + 1, NOW, buf, sizeof(buf)), 0);
    ck_assert_uint_eq(scache_get(NULL, id, 8, NOW, buf, sizeof(buf)), 0);
    scache_remove(NULL, id, 8);
    scache_remove(sc, id, 0);
    scache_remove(sc, id, SCACHE_ID_MAX + 1);
}
END_TEST

/* a session larger than the caller's buffer is a miss, and the buffer is
 * not written past (or at all) */
START_TEST(test_buffer_too_small)
{
    unsigned char id[SCACHE_ID_MAX], buf[100];
    make_id(id, 8);
    put_ok(id, 32, 8, 101, NOW + 60);
    memset(buf, 0xcc, sizeof(buf));
    ck_assert_uint_eq(scache_get(sc, id, 32, NOW, buf, sizeof(buf)), 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        ck_assert_uint_eq(buf[i], 0xcc);
    ck_assert(holds(id, 32, 8, 101, NOW)); /* still there for a caller with room */
}
END_TEST

/* ------------------------------------------------------------- busy slot */

START_TEST(test_busy_slot)
{
    unsigned char id[SCACHE_ID_MAX];
    make_id(id, 9);
    put_ok(id, 32, 9, 40, NOW + 60);
    scache_slot_t *s = only_used_slot();
    ck_assert_uint_eq(s->lock, 0); /* every operation lets go of its lock */

    s->lock = 1; /* another worker is writing it */
    ck_assert_uint_eq(get_len(id, 32, NOW), 0);
    unsigned char *der = payload(10, 40);
    ck_assert_int_eq(scache_put(sc, id, 32, der, 40, NOW + 60), -1);
    free(der);
    scache_remove(sc, id, 32);
    ck_assert_uint_eq(s->lock, 1); /* nobody released a lock it did not take */
    /* an expired session in a busy slot is left alone too */
    ck_assert_uint_eq(get_len(id, 32, NOW + 3600), 0);
    ck_assert_uint_ne(s->len, 0);

    s->lock = 0; /* the writer is done: the session is intact */
    ck_assert(holds(id, 32, 9, 40, NOW));
}
END_TEST

/* ------------------------------------------------------------- collisions */

START_TEST(test_colliding_id_overwrites)
{
    unsigned char a[SCACHE_ID_MAX], b[SCACHE_ID_MAX];
    colliding_ids(a, b);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);

    put_ok(a, 32, 1, 30, NOW + 60);
    put_ok(b, 32, 2, 40, NOW + 60); /* the newer evicts the older */
    ck_assert_uint_eq(get_len(a, 32, NOW), 0);
    ck_assert(holds(b, 32, 2, 40, NOW));

    /* removing the evicted ID does not remove the session now in its slot */
    scache_remove(sc, a, 32);
    ck_assert(holds(b, 32, 2, 40, NOW));

    put_ok(a, 32, 3, 50, NOW + 60);
    ck_assert_uint_eq(get_len(b, 32, NOW), 0);
    ck_assert(holds(a, 32, 3, 50, NOW));
}
END_TEST

static Suite *session_cache_suite(void)
{
    Suite *s = suite_create("session_cache");
    TCase *tc = tcase_create("session_cache");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_put_get);
    tcase_add_test(tc, test_short_ids);
    tcase_add_test(tc, test_put_replaces_same_id);
    tcase_add_test(tc, test_remove);
    tcase_add_test(tc, test_expiry);
    tcase_add_test(tc, test_too_big);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_buffer_too_small);
    tcase_add_test(tc, test_busy_slot);
    tcase_add_test(tc, test_colliding_id_overwrites);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(session_cache_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
