/*
 * Pure logic of module healthcheck (modules/healthcheck/probe.h):
 * expect_status items and sets, the status-line scanner (whole and byte by
 * byte, 1xx skipped), the rise/fall state machine, "did you mean".
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "healthcheck/probe.h"

/* ----------------------------------------------------------- expect_status */

static const struct {
    const char *text;
    int ok, lo, hi;
} item_cases[] = {
    {"200", 1, 200, 200},
    {"200-399", 1, 200, 399},
    {" 200 - 399 ", 1, 200, 399},
    {"100", 1, 100, 100},
    {"599", 1, 599, 599},
    {"100-599", 1, 100, 599},
    {"404-404", 1, 404, 404},
    {"", 0, 0, 0},
    {"abc", 0, 0, 0},
    {"2xx", 0, 0, 0},
    {"99", 0, 0, 0},
    {"600", 0, 0, 0},
    {"2000", 0, 0, 0},
    {"99999999999999999999", 0, 0, 0},
    {"399-200", 0, 0, 0},
    {"200-", 0, 0, 0},
    {"-200", 0, 0, 0},
    {"200-399-400", 0, 0, 0},
    {"2 00", 0, 0, 0},
    {"200x", 0, 0, 0},
    {"200,204", 0, 0, 0}, /* the module splits lists on ',' before this */
};

START_TEST(test_status_item_parse)
{
    for (size_t k = 0; k < sizeof(item_cases) / sizeof(item_cases[0]); k++) {
        int lo = -1, hi = -1;
        char why[128] = "";
        int rc = hc_status_item_parse(item_cases[k].text, &lo, &hi, why, sizeof(why));

        ck_assert_msg((rc == 0) == item_cases[k].ok, "'%s': rc %d", item_cases[k].text, rc);
        if (item_cases[k].ok) {
            ck_assert_int_eq(lo, item_cases[k].lo);
            ck_assert_int_eq(hi, item_cases[k].hi);
        } else {
            ck_assert_msg(why[0] != '\0', "'%s': no reason given", item_cases[k].text);
        }
    }
}
END_TEST

START_TEST(test_status_item_messages_name_the_fix)
{
    int lo, hi;
    char why[128];

    ck_assert_int_eq(hc_status_item_parse("399-200", &lo, &hi, why, sizeof(why)), -1);
    ck_assert_ptr_nonnull(strstr(why, "200-399"));
    ck_assert_int_eq(hc_status_item_parse("700", &lo, &hi, why, sizeof(why)), -1);
    ck_assert_ptr_nonnull(strstr(why, "100-599"));
}
END_TEST

START_TEST(test_status_set)
{
    struct hc_status_set s;

    memset(&s, 0, sizeof(s));
    ck_assert(hc_status_set_empty(&s));
    ck_assert(!hc_status_set_has(&s, 200));
    hc_status_set_add(&s, 200, 399);
    ck_assert(!hc_status_set_empty(&s));
    static const struct {
        int code, in;
    } cases[] = {{199, 0}, {200, 1}, {263, 1}, {264, 1}, {327, 1}, {328, 1}, {399, 1},
                 {400, 0}, {404, 0}, {99, 0},  {0, 0},   {-1, 0},  {600, 0}, {1000, 0}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
        ck_assert_msg(hc_status_set_has(&s, cases[k].code) == cases[k].in, "code %d",
                      cases[k].code);
    hc_status_set_add(&s, 404, 404);
    hc_status_set_add(&s, 599, 599);
    hc_status_set_add(&s, 100, 100);
    ck_assert(hc_status_set_has(&s, 404));
    ck_assert(!hc_status_set_has(&s, 403));
    ck_assert(!hc_status_set_has(&s, 405));
    ck_assert(hc_status_set_has(&s, 599));
    ck_assert(hc_status_set_has(&s, 100));
    ck_assert(!hc_status_set_has(&s, 101));
}
END_TEST

/* ------------------------------------------------------- response scanner */

static const struct {
    const char *in;
    enum hc_scan want;
    int status;
} scan_cases[] = {
    {"HTTP/1.1 200 OK\r\n", HC_SCAN_STATUS, 200},
    {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", HC_SCAN_STATUS, 200},
    {"HTTP/1.0 503 Service Unavailable\r\n", HC_SCAN_STATUS, 503},
    {"HTTP/1.1 204\r\n", HC_SCAN_STATUS, 204},
    {"HTTP/1.1 200 OK\n", HC_SCAN_STATUS, 200},
    {"HTTP/1.1 404 \r\n", HC_SCAN_STATUS, 404},
    {"HTTP/1.1 101 Switching Protocols\r\n", HC_SCAN_STATUS, 101},
    {"", HC_SCAN_MORE, 0},
    {"HTT", HC_SCAN_MORE, 0},
    {"HTTP/1.1 2", HC_SCAN_MORE, 0},
    {"HTTP/1.1 200 OK", HC_SCAN_MORE, 0},
    {"HTTP/1.1 200 OK\r", HC_SCAN_MORE, 0},
    {"SSH", HC_SCAN_INVALID, 0},
    {"SSH-2.0-OpenSSH_9.2\r\n", HC_SCAN_INVALID, 0},
    {"\x16\x03\x01", HC_SCAN_INVALID, 0},
    {"http/1.1 200 OK\r\n", HC_SCAN_INVALID, 0},
    {"HTTP/2 200\r\n", HC_SCAN_INVALID, 0},
    {"HTTP/1.2 200 OK\r\n", HC_SCAN_INVALID, 0},
    {"HTTP/1.1  200 OK\r\n", HC_SCAN_INVALID, 0},
    {"HTTP/1.1 20\r\n", HC_SCAN_INVALID, 0},
    {"HTTP/1.1 2000 OK\r\n", HC_SCAN_INVALID, 0},
    {"HTTP/1.1 20x OK\r\n", HC_SCAN_INVALID, 0},
    {"HTTP/1.1 099 Low\r\n", HC_SCAN_INVALID, 0},
    {"HTTP/1.1 600 High\r\n", HC_SCAN_INVALID, 0},
    {"\r\nHTTP/1.1 200 OK\r\n", HC_SCAN_INVALID, 0},
    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", HC_SCAN_STATUS, 200},
    {"HTTP/1.1 100 Continue\n\nHTTP/1.1 500 Oops\n", HC_SCAN_STATUS, 500},
    {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 404 Not Found\r\n",
     HC_SCAN_STATUS, 404},
    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 P\r\n\r\nHTTP/1.1 302 Found\r\n",
     HC_SCAN_STATUS, 302},
    {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n", HC_SCAN_MORE, 0},
    {"HTTP/1.1 100 Continue\r\n\r\n", HC_SCAN_MORE, 0},
    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", HC_SCAN_MORE, 0},
    {"HTTP/1.1 100 Continue\r\n\r\nGARBAGE\r\n", HC_SCAN_INVALID, 0},
};

START_TEST(test_scan_table)
{
    for (size_t k = 0; k < sizeof(scan_cases) / sizeof(scan_cases[0]); k++) {
        int status = -1;
        enum hc_scan got = hc_scan_status(scan_cases[k].in, strlen(scan_cases[k].in), &status);

        ck_assert_msg(got == scan_cases[k].want, "case %zu '%s': got %d want %d", k,
                      scan_cases[k].in, (int)got, (int)scan_cases[k].want);
        if (got == HC_SCAN_STATUS)
            ck_assert_int_eq(status, scan_cases[k].status);
    }
}
END_TEST

/* What the module does: bytes arrive a few at a time, the scan is repeated
 * over everything received so far. */
START_TEST(test_scan_byte_by_byte)
{
    static const char *const answers[] = {
        "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.0 418 Teapot\r\n",
    };
    static const int want[] = {200, 418};
    static const size_t want_at[] = {17, 65};

    for (size_t a = 0; a < 2; a++) {
        const char *s = answers[a];
        size_t n = strlen(s), done_at = 0;
        int status = -1;

        for (size_t len = 0; len <= n; len++) {
            enum hc_scan got = hc_scan_status(s, len, &status);
            ck_assert_int_ne(got, HC_SCAN_INVALID);
            if (got == HC_SCAN_STATUS && done_at == 0)
                done_at = len;
        }
        ck_assert_int_eq(status, want[a]);
        /* the verdict comes with the final status line's LF, not before */
        ck_assert_uint_eq(done_at, want_at[a]);
    }
}
END_TEST

/* -------------------------------------------------------- rise/fall state */

/* results: 't' passed, 'f' failed; want: one letter per result, '.' no
 * change, 'D' went down, 'U' came up. */
static const struct {
    unsigned rise, fall;
    const char *results, *want;
} state_cases[] = {
    {2, 3, "tttt", "...."},
    {2, 3, "fff", "..D"},
    {2, 3, "fftfff", ".....D"},
    {2, 3, "ffftt", "..D.U"},
    {2, 3, "ffftftt", "..D...U"},
    {2, 3, "ffffffff", "..D....."},
    {2, 3, "ffftttff", "..D.U..."},
    {2, 3, "ffftttfff", "..D.U...D"},
    {1, 1, "ftft", "DUDU"},
    {1, 1, "ffttff", "D.U.D."},
    {3, 1, "fttft", "D...."},
    {3, 1, "ftttf", "D..UD"},
    {5, 2, "fftttttt", ".D....U."},
};

START_TEST(test_state_machine)
{
    for (size_t k = 0; k < sizeof(state_cases) / sizeof(state_cases[0]); k++) {
        struct hc_state s;
        char got[32] = {0};
        size_t n = strlen(state_cases[k].results);

        memset(&s, 0, sizeof(s)); /* zeroed = up, as a fresh shared zone */
        ck_assert_uint_lt(n, sizeof(got));
        for (size_t i = 0; i < n; i++) {
            enum hc_change c =
                hc_state_record(&s, state_cases[k].results[i] == 't', state_cases[k].rise,
                                state_cases[k].fall);
            got[i] = c == HC_WENT_DOWN ? 'D' : c == HC_WENT_UP ? 'U' : '.';
        }
        ck_assert_msg(strcmp(got, state_cases[k].want) == 0,
                      "rise %u fall %u results %s: got %s want %s", state_cases[k].rise,
                      state_cases[k].fall, state_cases[k].results, got, state_cases[k].want);
    }
}
END_TEST

START_TEST(test_state_verdict_flag)
{
    struct hc_state s;

    memset(&s, 0, sizeof(s));
    ck_assert_uint_eq(s.down, 0);
    hc_state_record(&s, 0, 2, 2);
    ck_assert_uint_eq(s.down, 0);
    ck_assert_int_eq(hc_state_record(&s, 0, 2, 2), HC_WENT_DOWN);
    ck_assert_uint_eq(s.down, 1);
    /* a state copied from shared memory resumes where it was */
    struct hc_state copy = s;
    ck_assert_int_eq(hc_state_record(&copy, 1, 2, 2), HC_SAME);
    ck_assert_int_eq(hc_state_record(&copy, 1, 2, 2), HC_WENT_UP);
    ck_assert_uint_eq(copy.down, 0);
}
END_TEST

/* ----------------------------------------------------------- did you mean */

START_TEST(test_suggest)
{
    static const char *const keys[] = {"type", "path", "host", "interval", "timeout",
                                       "rise", "fall", "expect_status"};
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"tpye", "type"},       {"intervall", "interval"}, {"timout", "timeout"},
        {"rsie", "rise"},       {"expect_stauts", "expect_status"},
        {"falls", "fall"},      {"paht", "path"},
        {"expect", NULL},       {"xyz", NULL},  {"ty", NULL},
        {"completely_unrelated_and_longer_than_thirty_two_chars", NULL},
    };

    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const char *got = hc_suggest(cases[k].in, keys, sizeof(keys) / sizeof(keys[0]));
        if (cases[k].want == NULL)
            ck_assert_msg(got == NULL, "'%s' -> '%s'", cases[k].in, got);
        else
            ck_assert_msg(got != NULL && strcmp(got, cases[k].want) == 0, "'%s' -> '%s'",
                          cases[k].in, got ? got : "(null)");
    }
}
END_TEST

static Suite *healthcheck_suite(void)
{
    Suite *s = suite_create("healthcheck");
    TCase *tc = tcase_create("probe");

    tcase_add_test(tc, test_status_item_parse);
    tcase_add_test(tc, test_status_item_messages_name_the_fix);
    tcase_add_test(tc, test_status_set);
    tcase_add_test(tc, test_scan_table);
    tcase_add_test(tc, test_scan_byte_by_byte);
    tcase_add_test(tc, test_state_machine);
    tcase_add_test(tc, test_state_verdict_flag);
    tcase_add_test(tc, test_suggest);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(healthcheck_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
