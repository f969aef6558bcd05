/*
 * Pure parts of module rewrite: rule splitting, capture references, the query
 * split, regex compile/match (JIT and interpreter), escaping, the query
 * decision and the redirect statuses.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewrite/rewrite_rule.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------- splitting */

struct split_case {
    const char *text;
    const char *regex, *repl; /* NULL regex: an error whose text holds `err` */
    const char *err;
};

static const struct split_case split_cases[] = {
    {"^/v1/(.*)$ /$1", "^/v1/(.*)$", "/$1", NULL},
    {"  ^/a   /b  ", "^/a", "/b", NULL},
    {"^/a\t/b", "^/a", "/b", NULL},
    {"^/a\\ b /c", "^/a\\ b", "/c", NULL},      /* "\ " stays in the regex */
    {"^/a\\\\ /c", "^/a\\\\", "/c", NULL},      /* "\\ " ends it */
    {"^/a\\\\\\ b /c", "^/a\\\\\\ b", "/c", NULL}, /* "\\\ " does not */
    {"^/x /y?q=$1", "^/x", "/y?q=$1", NULL},
    {"", NULL, NULL, "empty rule"},
    {"   ", NULL, NULL, "empty rule"},
    {"^/a", NULL, NULL, "missing replacement"},
    {"^/a   ", NULL, NULL, "missing replacement"},
    {"^/a\\ ", NULL, NULL, "missing replacement"},
    {"^/a /b permanent", NULL, NULL, "unexpected \"permanent\""},
    {"^/a /b c d", NULL, NULL, "unexpected \"c d\""},
};

START_TEST(test_split)
{
    for (size_t i = 0; i < N(split_cases); i++) {
        const struct split_case *c = &split_cases[i];
        struct rewrite_text t;
        char err[256] = "";
        int rc = rewrite_rule_split(c->text, &t, err, sizeof(err));

        if (c->regex == NULL) {
            ck_assert_msg(rc == -1, "case %zu \"%s\": accepted", i, c->text);
            ck_assert_msg(strstr(err, c->err) != NULL, "case %zu: error \"%s\" lacks \"%s\"", i,
                          err, c->err);
            continue;
        }
        ck_assert_msg(rc == 0, "case %zu \"%s\": %s", i, c->text, err);
        ck_assert_msg(t.regex_len == strlen(c->regex) &&
                          memcmp(t.regex, c->regex, t.regex_len) == 0,
                      "case %zu: regex \"%.*s\", want \"%s\"", i, (int)t.regex_len, t.regex,
                      c->regex);
        ck_assert_msg(t.repl_len == strlen(c->repl) && memcmp(t.repl, c->repl, t.repl_len) == 0,
                      "case %zu: replacement \"%.*s\", want \"%s\"", i, (int)t.repl_len, t.repl,
                      c->repl);
    }
}
END_TEST

/* ------------------------------------------------- captures and the query */

struct repl_case {
    const char *repl;
    int maxcap;
    long query_at; /* -1: none */
};

static const struct repl_case repl_cases[] = {
    {"/plain", -1, -1},
    {"/$1", 1, -1},
    {"/$1/$3/$2", 3, -1},
    {"/$0", 0, -1},
    {"/$10", 1, -1},            /* group 1, then "0" */
    {"/${9}x", 9, -1},
    {"/${host}$2", 2, -1},
    {"/$$3", -1, -1},           /* a literal "$3" */
    {"/$$$3", 3, -1},           /* "$" then group 3 */
    {"/$host", -1, -1},
    {"/a?b=$1", 1, 2},
    {"/a?", -1, 2},
    {"?x", -1, 0},
    {"/$uri?x=$2?y", 2, 5},     /* the first '?' splits */
    {"/${args}?$1", 1, 8},
    {"/$$?q", -1, 3},           /* "$$" does not hide the '?' */
    {"/${unterminated", -1, -1},
    {"/trailing$", -1, -1},
};

START_TEST(test_replacement_scan)
{
    for (size_t i = 0; i < N(repl_cases); i++) {
        const struct repl_case *c = &repl_cases[i];
        size_t len = strlen(c->repl), at = 12345;
        int has = rewrite_query_at(c->repl, len, &at);

        ck_assert_msg(rewrite_max_capture(c->repl, len) == c->maxcap, "case %zu \"%s\": max %d",
                      i, c->repl, rewrite_max_capture(c->repl, len));
        if (c->query_at < 0) {
            ck_assert_msg(has == 0, "case %zu \"%s\": query at %zu", i, c->repl, at);
        } else {
            ck_assert_msg(has == 1 && at == (size_t)c->query_at,
                          "case %zu \"%s\": has %d at %zu, want %ld", i, c->repl, has, at,
                          c->query_at);
        }
    }
}
END_TEST

/* ------------------------------------------------------------------ regex */

START_TEST(test_regex_compile)
{
    struct rewrite_regex rx;
    char err[256] = "";
    uint32_t jit_available = 0;

    ck_assert_int_eq(rewrite_regex_compile(&rx, "^/v1/(a)(b)?(?:c)(d)", 20, err, sizeof(err)), 0);
    ck_assert_uint_eq(rx.ngroups, 3);
    ck_assert_ptr_nonnull(rx.md);
    /* JIT when the library has it; the interpreter otherwise (still matches) */
    if (pcre2_config(PCRE2_CONFIG_JIT, &jit_available) == 0 && jit_available)
        ck_assert_int_eq(rx.jit, 1);
    rewrite_regex_free(&rx);
    ck_assert_ptr_null(rx.re);
    ck_assert_ptr_null(rx.md);

    ck_assert_int_eq(rewrite_regex_compile(&rx, "^/(a", 4, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "invalid regex: missing closing parenthesis") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "at offset 4") != NULL, "%s", err);
    ck_assert_ptr_null(rx.re);
    ck_assert_ptr_null(rx.md);

    ck_assert_int_eq(rewrite_regex_compile(&rx, "a**", 3, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "at offset 2") != NULL, "%s", err);

    ck_assert_int_eq(rewrite_regex_compile(&rx, "", 0, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "empty regex");

    /* only len bytes are the pattern */
    ck_assert_int_eq(rewrite_regex_compile(&rx, "^/x(", 3, err, sizeof(err)), 0);
    ck_assert_uint_eq(rx.ngroups, 0);
    rewrite_regex_free(&rx);
    rewrite_regex_free(&rx); /* a freed regex frees again harmlessly */
}
END_TEST

struct match_case {
    const char *regex, *subject;
    int want; /* 1 match, 0 none */
    const char *groups[4]; /* $0..$3, "<unset>" for an unset group */
};

static const struct match_case match_cases[] = {
    {"^/v1/(.*)$", "/v1/users/7", 1, {"/v1/users/7", "users/7"}},
    {"^/v1/(.*)$", "/v2/users", 0, {NULL}},
    {"users/([0-9]+)", "/api/users/42/x", 1, {"users/42", "42"}}, /* unanchored search */
    {"^/(a)?(b)(c)?$", "/b", 1, {"/b", "<unset>", "b", "<unset>"}},
    {"^/(a)|^/(b)", "/a", 1, {"/a", "a"}},
    {"^/caf\\xe9/(.)$", "/caf\xe9/\xff", 1, {"/caf\xe9/\xff", "\xff"}}, /* bytes, not UTF-8 */
    {"(?i)^/ABC", "/abc", 1, {"/abc"}},
    {"^/ABC", "/abc", 0, {NULL}},
};

START_TEST(test_regex_match)
{
    for (size_t i = 0; i < N(match_cases); i++) {
        const struct match_case *c = &match_cases[i];
        struct rewrite_regex rx;
        const size_t *ov = NULL;
        size_t np = 0, slen = strlen(c->subject);
        char err[256] = "";
        int m;

        ck_assert_msg(rewrite_regex_compile(&rx, c->regex, strlen(c->regex), err, sizeof(err)) ==
                          0,
                      "case %zu: %s", i, err);
        m = rewrite_regex_match(&rx, c->subject, slen, &ov, &np, err, sizeof(err));
        ck_assert_msg(m == c->want, "case %zu /%s/ on \"%s\": %d", i, c->regex, c->subject, m);
        for (size_t g = 0; m == 1 && g < N(c->groups) && c->groups[g] != NULL; g++) {
            if (strcmp(c->groups[g], "<unset>") == 0) {
                /* past npairs, or SIZE_MAX inside: the template renders "" */
                ck_assert_msg(g >= np || ov[2 * g] == SIZE_MAX, "case %zu: group %zu set", i, g);
                continue;
            }
            ck_assert_msg(g < np, "case %zu: group %zu beyond %zu pairs", i, g, np);
            ck_assert_msg(ov[2 * g + 1] - ov[2 * g] == strlen(c->groups[g]) &&
                              memcmp(c->subject + ov[2 * g], c->groups[g],
                                     strlen(c->groups[g])) == 0,
                          "case %zu: group %zu is \"%.*s\", want \"%s\"", i, g,
                          (int)(ov[2 * g + 1] - ov[2 * g]), c->subject + ov[2 * g],
                          c->groups[g]);
        }
        rewrite_regex_free(&rx);
    }
}
END_TEST

START_TEST(test_regex_match_error)
{
    /* nested quantifiers on a long non-matching subject hit PCRE2's match
     * limit (JIT or not): an error with a message, not a silent no-match */
    struct rewrite_regex rx;
    const char *re = "^/(\\w+\\s?)*$";
    char subject[64], err[256] = "";
    const size_t *ov;
    size_t np;

    memset(subject, 'a', sizeof(subject));
    subject[0] = '/';
    subject[sizeof(subject) - 1] = '!';
    ck_assert_int_eq(rewrite_regex_compile(&rx, re, strlen(re), err, sizeof(err)), 0);
    ck_assert_int_eq(rewrite_regex_match(&rx, subject, sizeof(subject), &ov, &np, err,
                                         sizeof(err)),
                     -1);
    ck_assert_msg(strstr(err, "limit") != NULL, "%s", err);
    rewrite_regex_free(&rx);
}
END_TEST

/* --------------------------------------------------------------- escaping */

struct esc_case {
    const char *in;
    int query;
    const char *out;
};

static const struct esc_case esc_cases[] = {
    {"/plain/path", 0, "/plain/path"},
    {"/a b", 0, "/a%20b"},
    {"/a?b", 0, "/a%3Fb"},
    {"a?b", 1, "a?b"},
    {"/a#b", 0, "/a%23b"},
    {"x=#", 1, "x=%23"},
    {"/%41%2F", 0, "/%41%2F"},   /* escapes are kept, not doubled */
    {"/\x01\x7f\xff", 0, "/%01%7F%FF"},
    {"/\t\r\n", 1, "/%09%0D%0A"},
    {"/!~'()*+,;=:@&$", 0, "/!~'()*+,;=:@&$"},
    {"", 0, ""},
};

START_TEST(test_escape)
{
    for (size_t i = 0; i < N(esc_cases); i++) {
        const struct esc_case *c = &esc_cases[i];
        size_t len = strlen(c->in), n = rewrite_escape_len(c->in, len, c->query);
        char buf[64];

        ck_assert_msg(n == strlen(c->out), "case %zu: length %zu, want %zu", i, n,
                      strlen(c->out));
        memset(buf, 'Z', sizeof(buf));
        rewrite_escape(buf, c->in, len, c->query);
        ck_assert_msg(memcmp(buf, c->out, n) == 0, "case %zu: \"%.*s\", want \"%s\"", i, (int)n,
                      buf, c->out);
        ck_assert_msg(buf[n] == 'Z', "case %zu: wrote past the escaped length", i);
    }
}
END_TEST

/* --------------------------------------------------- query and redirects */

START_TEST(test_query_replace)
{
    static const struct {
        int sets, had;
        size_t len;
        int want;
    } cases[] = {
        {0, 0, 0, 0}, {0, 1, 0, 0}, {0, 1, 5, 0}, /* no '?' in the rule: keep */
        {1, 1, 3, 1}, {1, 0, 3, 1},               /* "?x=1": replace or add */
        {1, 1, 0, 1},                             /* "?" on "/a?q": drop the query */
        {1, 0, 0, 0},                             /* "?" on "/a": nothing to drop */
    };

    for (size_t i = 0; i < N(cases); i++)
        ck_assert_msg(rewrite_query_replace(cases[i].sets, cases[i].len, cases[i].had) ==
                          cases[i].want,
                      "case %zu", i);
}
END_TEST

START_TEST(test_redirect_status)
{
    static const long ok[] = {301, 302, 307, 308};
    static const long bad[] = {0, 200, 300, 303, 304, 305, 306, 309, 404, -301};

    for (size_t i = 0; i < N(ok); i++)
        ck_assert_msg(rewrite_redirect_status_ok(ok[i]), "%ld refused", ok[i]);
    for (size_t i = 0; i < N(bad); i++)
        ck_assert_msg(!rewrite_redirect_status_ok(bad[i]), "%ld accepted", bad[i]);
}
END_TEST

static Suite *rewrite_suite(void)
{
    Suite *s = suite_create("rewrite");
    TCase *tc = tcase_create("rewrite_rule");

    tcase_add_test(tc, test_split);
    tcase_add_test(tc, test_replacement_scan);
    tcase_add_test(tc, test_regex_compile);
    tcase_add_test(tc, test_regex_match);
    tcase_add_test(tc, test_regex_match_error);
    tcase_add_test(tc, test_escape);
    tcase_add_test(tc, test_query_replace);
    tcase_add_test(tc, test_redirect_status);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(rewrite_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
