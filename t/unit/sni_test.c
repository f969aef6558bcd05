/*
 * Server names of module tls (modules/tls/sni.c): which certificate names
 * are accepted (sni_name_valid), how a pattern matches a ClientHello's name
 * (sni_match: case, one trailing dot, a wildcard standing for exactly one
 * leftmost label), and which value a lookup gives (exact over wildcard
 * whatever the order, the earlier among equals, the default for no name or
 * an unknown one).
 *
 * Every string handed over is a malloc'ed copy of exactly the bytes meant
 * (no NUL after them where a length is passed), so under ASan a read past
 * the length is a report.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/sni.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* an exact-size copy of s, without its NUL */
static char *dup_exact(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    memcpy(p, s, len);
    return p;
}

static int valid(const char *name)
{
    size_t len = strlen(name);
    char *p = dup_exact(name, len);
    int v = sni_name_valid(p, len);
    free(p);
    return v;
}

static int match(const char *pattern, const char *host)
{
    size_t plen = strlen(pattern), hlen = strlen(host);
    char *pp = dup_exact(pattern, plen), *hp = dup_exact(host, hlen);
    int m = sni_match(pp, plen, hp, hlen);
    free(pp);
    free(hp);
    return m;
}

static void add_ok(sni_index_t *ix, const char *name, void *value)
{
    size_t len = strlen(name);
    char *p = dup_exact(name, len);
    ck_assert_msg(sni_add(ix, p, len, value) == 0, "sni_add(%s)", name);
    free(p); /* the index keeps its own copy */
}

/* a name of n bytes: labels of 9 letters and a dot, then letters */
static char *long_name(const char *prefix, size_t n)
{
    size_t pl = strlen(prefix);
    char *s = malloc(pl + n + 1);
    ck_assert_ptr_nonnull(s);
    memcpy(s, prefix, pl);
    for (size_t i = 0; i < n; i++)
        s[pl + i] = (i % 10 == 9 && i + 1 < n) ? '.' : (char)('a' + i % 26);
    s[pl + n] = '\0';
    return s;
}

/* -------------------------------------------------------- sni_name_valid */

START_TEST(test_name_valid)
{
    static const char *const good[] = {
        "example.com", "a.example.com", "EXAMPLE.Com", "localhost", "example.com.",
        "*.example.com", "*.EXAMPLE.com.", "*.co.uk", "a-b_c.d9.example", "0.example", "x",
    };
    static const char *const bad[] = {
        "",              /* empty */
        ".",             /* only the root */
        "*",             /* a wildcard alone */
        "*.",            /* a wildcard of the root */
        "*.com",         /* a wildcard of a whole top-level domain */
        "a.*.com",       /* a wildcard not leftmost */
        "*.*.example.com", /* two wildcards */
        "*a.example.com", /* a partial-label wildcard */
        "a*.example.com",
        "**.example.com",
        ".example.com",  /* an empty first label */
        "*..example.com",
        "a..example.com", /* an empty label inside */
        "example..com",
        "a b.example.com", "a/b.example.com", "a:443", "exa\xc3\xa9mple.com", "a\tb",
    };
    for (size_t i = 0; i < N(good); i++)
        ck_assert_msg(valid(good[i]), "'%s' should be valid", good[i]);
    for (size_t i = 0; i < N(bad); i++)
        ck_assert_msg(!valid(bad[i]), "'%s' should be invalid", bad[i]);
    /* a NUL inside the given length is no name */
    ck_assert(!sni_name_valid("a\0b.com", 7));
}
END_TEST

/* Only one trailing dot is the root: a second one is an empty label, as
 * "a..b" is (which is refused). */
START_TEST(test_name_two_trailing_dots)
{
    ck_assert_msg(!valid("example.com.."), "'example.com..' should be invalid");
    ck_assert_msg(!valid("*.example.com.."), "'*.example.com..' should be invalid");
    sni_index_t ix = {0};
    int v;
    ck_assert_int_eq(sni_add(&ix, "example.com..", 13, &v), -1);
    sni_free(&ix);
}
END_TEST

START_TEST(test_name_length)
{
    char *s253 = long_name("", 253), *s254 = long_name("", 254);
    char *dot = malloc(256);
    ck_assert_ptr_nonnull(dot);
    strcpy(dot, s253);
    strcat(dot, "."); /* 253 bytes and the trailing dot that does not count */
    char *w253 = long_name("*.", 251);
    ck_assert(valid(s253));
    ck_assert(!valid(s254));
    ck_assert(valid(dot));
    ck_assert(valid(w253));
    free(s253);
    free(s254);
    free(dot);
    free(w253);
}
END_TEST

/* -------------------------------------------------------------- sni_match */

struct mcase {
    const char *pattern, *host;
    int want;
};

START_TEST(test_match)
{
    static const struct mcase cases[] = {
        /* exact */
        {"example.com", "example.com", 1},
        {"example.com", "EXAMPLE.COM", 1},
        {"example.com", "Example.Com.", 1}, /* one trailing dot ignored */
        {"example.com", "example.com..", 0},
        {"example.com", "example.co", 0},
        {"example.com", "example.comm", 0},
        {"example.com", "xexample.com", 0},
        {"example.com", "a.example.com", 0},
        {"example.com", "", 0},
        {"example.com", ".", 0},
        /* a wildcard: exactly one leftmost label */
        {"*.example.com", "a.example.com", 1},
        {"*.example.com", "A.EXAMPLE.COM", 1},
        {"*.example.com", "www-1.Example.com.", 1},
        {"*.example.com", "example.com", 0},
        {"*.example.com", "a.b.example.com", 0},
        {"*.example.com", ".example.com", 0},
        {"*.example.com", "a.example.com..", 0},
        {"*.example.com", "aexample.com", 0},
        {"*.example.com", "a.example.co", 0},
        {"*.example.com", "a.example.com.evil", 0},
        {"*.example.com", "a.xexample.com", 0},
        {"*.example.com", "a.", 0},
        {"*.example.com", "", 0},
        {"*.example.com", "com", 0},
    };
    for (size_t i = 0; i < N(cases); i++)
        ck_assert_msg(match(cases[i].pattern, cases[i].host) == cases[i].want,
                      "sni_match(%s, %s) != %d", cases[i].pattern, cases[i].host,
                      cases[i].want);
}
END_TEST

/* only the given lengths are read: bytes after them do not count */
START_TEST(test_match_lengths)
{
    ck_assert(sni_match("example.com", 11, "example.comXYZ", 11));
    ck_assert(sni_match("*.example.com", 13, "a.example.com.x", 14)); /* "a.example.com." */
    ck_assert(!sni_match("example.com", 11, "example.com", 10));
    ck_assert(!sni_match("example.com", 10, "example.com", 11));
}
END_TEST

/* ----------------------------------------------------- sni_add and lookup */

static int v_wild, v_exact, v_other, v_later;

START_TEST(test_add_stores_lowercase_without_dot)
{
    sni_index_t ix = {0};
    add_ok(&ix, "WWW.Example.COM.", &v_exact);
    add_ok(&ix, "*.Example.com", &v_wild);
    ck_assert_uint_eq(ix.n, 2);
    ck_assert_str_eq(ix.v[0].name, "www.example.com");
    ck_assert_uint_eq(ix.v[0].len, 15);
    ck_assert_int_eq(ix.v[0].wildcard, 0);
    ck_assert_str_eq(ix.v[1].name, "*.example.com");
    ck_assert_int_ne(ix.v[1].wildcard, 0);
    ck_assert_ptr_eq(ix.dflt, &v_exact);
    sni_free(&ix);
}
END_TEST

START_TEST(test_add_invalid)
{
    sni_index_t ix = {0};
    ck_assert_int_eq(sni_add(&ix, "a.*.com", 7, &v_wild), -1);
    ck_assert_int_eq(sni_add(&ix, "*", 1, &v_wild), -1);
    ck_assert_uint_eq(ix.n, 0);
    ck_assert_ptr_null(ix.dflt); /* a refused name does not become the default */
    add_ok(&ix, "ok.test", &v_other);
    ck_assert_ptr_eq(ix.dflt, &v_other);
    ck_assert_ptr_eq(sni_lookup(&ix, "nothing.test"), &v_other);
    sni_free(&ix);
}
END_TEST

/* many names: the index grows past its first allocation */
START_TEST(test_add_many)
{
    sni_index_t ix = {0};
    static int vals[100];
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "h%d.test", i);
        add_ok(&ix, name, &vals[i]);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "H%d.TEST.", i);
        ck_assert_ptr_eq(sni_lookup(&ix, name), &vals[i]);
    }
    ck_assert_ptr_eq(ix.dflt, &vals[0]);
    sni_free(&ix);
}
END_TEST

static void check_precedence(sni_index_t *ix, void *dflt)
{
    ck_assert_ptr_eq(sni_lookup(ix, "a.example.com"), &v_exact);
    ck_assert_ptr_eq(sni_lookup(ix, "A.Example.COM."), &v_exact);
    ck_assert_ptr_eq(sni_lookup(ix, "b.example.com"), &v_wild);
    ck_assert_ptr_eq(sni_lookup(ix, "example.com"), dflt);
    ck_assert_ptr_eq(sni_lookup(ix, "x.a.example.com"), dflt);
    ck_assert_ptr_eq(sni_lookup(ix, "other.test"), &v_other);
    ck_assert_ptr_eq(sni_lookup(ix, "unknown.test"), dflt);
    ck_assert_ptr_eq(sni_lookup(ix, ""), dflt);
    ck_assert_ptr_eq(sni_lookup(ix, NULL), dflt);
}

/* exact beats wildcard whichever came first; the default is the first added */
START_TEST(test_lookup_wildcard_first)
{
    sni_index_t ix = {0};
    add_ok(&ix, "*.example.com", &v_wild);
    add_ok(&ix, "a.example.com", &v_exact);
    add_ok(&ix, "other.test", &v_other);
    check_precedence(&ix, &v_wild);
    sni_free(&ix);
}
END_TEST

START_TEST(test_lookup_exact_first)
{
    sni_index_t ix = {0};
    add_ok(&ix, "other.test", &v_other);
    add_ok(&ix, "a.example.com", &v_exact);
    add_ok(&ix, "*.example.com", &v_wild);
    check_precedence(&ix, &v_other);
    sni_free(&ix);
}
END_TEST

START_TEST(test_lookup_earlier_wins)
{
    sni_index_t ix = {0};
    add_ok(&ix, "default.test", &v_other);
    add_ok(&ix, "*.example.com", &v_wild);
    add_ok(&ix, "a.example.com", &v_exact);
    add_ok(&ix, "*.EXAMPLE.com", &v_later);
    add_ok(&ix, "A.example.com.", &v_later);
    ck_assert_ptr_eq(sni_lookup(&ix, "a.example.com"), &v_exact);
    ck_assert_ptr_eq(sni_lookup(&ix, "b.example.com"), &v_wild);
    sni_free(&ix);
}
END_TEST

START_TEST(test_lookup_empty_index)
{
    sni_index_t ix = {0};
    ck_assert_ptr_null(sni_lookup(&ix, NULL));
    ck_assert_ptr_null(sni_lookup(&ix, "a.test"));
}
END_TEST

/* ---------------------------------------------------------------- sni_free */

START_TEST(test_free_and_reuse)
{
    sni_index_t ix = {0};
    add_ok(&ix, "a.test", &v_exact);
    add_ok(&ix, "*.b.test", &v_wild);
    sni_free(&ix);
    ck_assert_ptr_null(ix.v);
    ck_assert_uint_eq(ix.n, 0);
    ck_assert_uint_eq(ix.cap, 0);
    ck_assert_ptr_null(ix.dflt);
    ck_assert_ptr_null(sni_lookup(&ix, "a.test"));
    sni_free(&ix); /* twice is harmless */
    add_ok(&ix, "c.test", &v_other); /* and the index is usable again */
    ck_assert_ptr_eq(sni_lookup(&ix, "a.test"), &v_other);
    ck_assert_ptr_eq(sni_lookup(&ix, "c.test"), &v_other);
    sni_free(&ix);
    sni_index_t empty = {0};
    sni_free(&empty);
}
END_TEST

static Suite *sni_suite(void)
{
    Suite *s = suite_create("sni");
    TCase *tc = tcase_create("sni");

    tcase_add_test(tc, test_name_valid);
    tcase_add_test(tc, test_name_two_trailing_dots);
    tcase_add_test(tc, test_name_length);
    tcase_add_test(tc, test_match);
    tcase_add_test(tc, test_match_lengths);
    tcase_add_test(tc, test_add_stores_lowercase_without_dot);
    tcase_add_test(tc, test_add_invalid);
    tcase_add_test(tc, test_add_many);
    tcase_add_test(tc, test_lookup_wildcard_first);
    tcase_add_test(tc, test_lookup_exact_first);
    tcase_add_test(tc, test_lookup_earlier_wins);
    tcase_add_test(tc, test_lookup_empty_index);
    tcase_add_test(tc, test_free_and_reuse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sni_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
