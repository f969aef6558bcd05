/* Shared zones across a reload: the same name and size is the same memory,
 * anything else is fresh, and memory lives as long as a generation holds it. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "conf.h"

static weir_conf_t *conf_new(const weir_conf_t *previous)
{
    weir_conf_t *cf = calloc(1, sizeof(*cf));
    ck_assert_ptr_nonnull(cf);
    cf->arena = arena_new(4096, 0);
    ck_assert_ptr_nonnull(cf->arena);
    cf->file = "weir.yaml";
    cf->errors_tail = &cf->errors;
    cf->previous = previous;
    return cf;
}

static void conf_del(weir_conf_t *cf)
{
    arena_free(cf->arena); /* runs the zones' cleanups */
    free(cf);
}

START_TEST(test_zone_zeroed_and_shared_within_generation)
{
    weir_conf_t *cf = conf_new(NULL);
    char *z = weir_shm_zone(cf, "a", 64);
    ck_assert_ptr_nonnull(z);
    for (int i = 0; i < 64; i++)
        ck_assert_int_eq(z[i], 0);
    ck_assert_ptr_eq(weir_shm_zone(cf, "a", 64), z);
    ck_assert_ptr_null(weir_shm_zone(cf, "a", 128));
    ck_assert_str_eq(cf->errors->msg, "weir.yaml: shared zone 'a' requested with sizes 64 and 128");
    conf_del(cf);
}
END_TEST

START_TEST(test_reload_carries_same_name_and_size)
{
    weir_conf_t *old = conf_new(NULL);
    char *a = weir_shm_zone(old, "a", 64), *b = weir_shm_zone(old, "b", 64);
    strcpy(a, "state of a");
    strcpy(b, "state of b");

    weir_conf_t *cf = conf_new(old);
    char *a2 = weir_shm_zone(cf, "a", 64);  /* same name, same size: carried */
    char *b2 = weir_shm_zone(cf, "b", 128); /* resized: fresh */
    char *c2 = weir_shm_zone(cf, "c", 64);  /* new: fresh */
    ck_assert_ptr_eq(a2, a);
    ck_assert_str_eq(a2, "state of a");
    ck_assert_ptr_ne(b2, b);
    ck_assert_int_eq(b2[0], 0);
    ck_assert_int_eq(c2[0], 0);
    cf->previous = NULL;

    /* the old generation goes; the carried memory stays with the new one */
    conf_del(old);
    ck_assert_str_eq(a2, "state of a");
    strcpy(a2, "still writable");
    ck_assert_str_eq(a2, "still writable");
    conf_del(cf);
}
END_TEST

START_TEST(test_failed_reload_leaves_running_zone)
{
    weir_conf_t *old = conf_new(NULL);
    char *a = weir_shm_zone(old, "a", 64);
    strcpy(a, "running");
    weir_conf_t *bad = conf_new(old);
    ck_assert_ptr_eq(weir_shm_zone(bad, "a", 64), a);
    conf_del(bad); /* the reload failed: freeing it must not unmap */
    ck_assert_str_eq(a, "running");
    conf_del(old);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shm");
    TCase *tc = tcase_create("zones");
    tcase_add_test(tc, test_zone_zeroed_and_shared_within_generation);
    tcase_add_test(tc, test_reload_carries_same_name_and_size);
    tcase_add_test(tc, test_failed_reload_leaves_running_zone);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
