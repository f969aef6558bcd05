/* The metrics registry and its exposition: names, escaping, histograms, the
 * shared table (same identity, same slot across a reload; a full table is a
 * config error that claims nothing). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "conf.h"
#include "metrics.h"

static weir_conf_t *conf_plain(const weir_conf_t *previous)
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

static weir_conf_t *conf_new(const weir_conf_t *previous)
{
    weir_conf_t *cf = conf_plain(previous);
    ck_assert_int_eq(weir_metrics_enable(cf), 0);
    return cf;
}

/* A family with one label. */
static weir_metric_t *family1(weir_conf_t *cf, const char *name, weir_metric_kind_t kind,
                              const char *help, const char *label)
{
    return weir_metric_new(cf, name, kind, help, (const char *const[]){label, NULL}, NULL);
}

static void conf_del(weir_conf_t *cf)
{
    arena_free(cf->arena);
    free(cf);
}

static char *render(const weir_conf_t *cf)
{
    size_t n = weir_metrics_render(cf, NULL, 0);
    char *buf = calloc(1, n + 1);
    ck_assert_uint_eq(weir_metrics_render(cf, buf, n), n);
    return buf;
}

static void bind_all(weir_conf_t *cf, size_t cap)
{
    ck_assert_int_eq(metrics_bind(cf, cap, NULL), 0);
    cf->previous = NULL; /* as conf_load leaves it */
}

START_TEST(test_counter_escaping)
{
    weir_conf_t *cf = conf_new(NULL);
    weir_metric_t *m = weir_metric_new(cf, "t_requests_total", WEIR_METRIC_COUNTER,
                                       "help with \\ and\nnewline",
                                       (const char *const[]){"route", "code", NULL}, NULL);
    ck_assert_ptr_nonnull(m);
    int a = weir_metric_series(cf, m, (const char *const[]){"a\"b\\c\nd", "2xx"});
    int b = weir_metric_series(cf, m, (const char *const[]){"plain", "5xx"});
    ck_assert_int_eq(a, 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(weir_metric_series(cf, m, (const char *const[]){"plain", "5xx"}), 1);
    bind_all(cf, 64);
    weir_metric_add(m, a, 3);
    weir_metric_add(m, b, 1);
    weir_metric_add(m, 7, 1);  /* no such series: ignored */
    weir_metric_add(m, -1, 1); /* ditto */
    char *text = render(cf);
    ck_assert_str_eq(text, "# HELP t_requests_total help with \\\\ and\\nnewline\n"
                           "# TYPE t_requests_total counter\n"
                           "t_requests_total{route=\"a\\\"b\\\\c\\nd\",code=\"2xx\"} 3\n"
                           "t_requests_total{route=\"plain\",code=\"5xx\"} 1\n");
    free(text);
    conf_del(cf);
}
END_TEST

START_TEST(test_histogram_and_gauge)
{
    weir_conf_t *cf = conf_new(NULL);
    const double buckets[] = {0.1, 1, INFINITY};
    weir_metric_t *h = weir_metric_new(cf, "t_seconds", WEIR_METRIC_HISTOGRAM, "h", NULL, buckets);
    weir_metric_t *g = family1(cf, "t_open", WEIR_METRIC_GAUGE, "g", "l");
    ck_assert_int_eq(weir_metric_series(cf, h, NULL), 0);
    ck_assert_int_eq(weir_metric_series(cf, g, (const char *const[]){"x"}), 0);
    bind_all(cf, 64);
    weir_metric_observe(h, 0, 50000);   /* 0.05 */
    weir_metric_observe(h, 0, 100000);  /* 0.1: le is "less or equal" */
    weir_metric_observe(h, 0, 500000);  /* 0.5 */
    weir_metric_observe(h, 0, 2000000); /* 2: only +Inf */
    weir_metric_gauge_add(g, 0, 2);
    weir_metric_gauge_add(g, 0, -5);
    char *text = render(cf);
    ck_assert_str_eq(text, "# HELP t_seconds h\n"
                           "# TYPE t_seconds histogram\n"
                           "t_seconds_bucket{le=\"0.1\"} 2\n"
                           "t_seconds_bucket{le=\"1\"} 3\n"
                           "t_seconds_bucket{le=\"+Inf\"} 4\n"
                           "t_seconds_sum 2.650000\n"
                           "t_seconds_count 4\n"
                           "# HELP t_open g\n"
                           "# TYPE t_open gauge\n"
                           "t_open{l=\"x\"} -3\n");
    free(text);
    conf_del(cf);
}
END_TEST

START_TEST(test_default_buckets)
{
    weir_conf_t *cf = conf_new(NULL);
    weir_metric_t *h = weir_metric_new(cf, "t_seconds", WEIR_METRIC_HISTOGRAM, "h", NULL, NULL);
    ck_assert_int_eq(weir_metric_series(cf, h, NULL), 0);
    bind_all(cf, 64);
    char *text = render(cf);
    const char *want[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                          "1",     "2.5",  "5",     "10",   "+Inf"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char line[64];
        snprintf(line, sizeof(line), "t_seconds_bucket{le=\"%s\"} 0\n", want[i]);
        ck_assert_msg(strstr(text, line), "missing %s in\n%s", line, text);
    }
    free(text);
    conf_del(cf);
}
END_TEST

/* Gen 1 counts; gen 2 (a reload) registers one series again, drops one and
 * adds one: the kept one carries its count, the dropped one is not shown. */
START_TEST(test_same_identity_same_slot_across_reload)
{
    weir_conf_t *old = conf_new(NULL);
    weir_metric_t *m = family1(old, "t_total", WEIR_METRIC_COUNTER, "c", "route");
    int kept = weir_metric_series(old, m, (const char *const[]){"kept"});
    int gone = weir_metric_series(old, m, (const char *const[]){"gone"});
    bind_all(old, 64);
    weir_metric_add(m, kept, 5);
    weir_metric_add(m, gone, 2);

    weir_conf_t *cf = conf_new(old);
    weir_metric_t *m2 = family1(cf, "t_total", WEIR_METRIC_COUNTER, "c", "route");
    int fresh = weir_metric_series(cf, m2, (const char *const[]){"new"});
    int kept2 = weir_metric_series(cf, m2, (const char *const[]){"kept"});
    bind_all(cf, 64);
    weir_metric_add(m2, kept2, 1);
    weir_metric_add(m2, fresh, 1);
    weir_metric_add(m, kept, 1); /* an old worker, draining, counts on too */
    char *text = render(cf);
    ck_assert_str_eq(text, "# HELP t_total c\n# TYPE t_total counter\n"
                           "t_total{route=\"new\"} 1\n"
                           "t_total{route=\"kept\"} 7\n");
    free(text);

    /* a different size is a different table: everything from zero */
    weir_conf_t *big = conf_new(cf);
    weir_metric_t *m3 = family1(big, "t_total", WEIR_METRIC_COUNTER, "c", "route");
    weir_metric_series(big, m3, (const char *const[]){"kept"});
    bind_all(big, 128);
    text = render(big);
    ck_assert_ptr_nonnull(strstr(text, "t_total{route=\"kept\"} 0\n"));
    free(text);
    conf_del(big);
    conf_del(cf);
    conf_del(old);
}
END_TEST

/* A kind or label change is another identity: no value carries into it. */
START_TEST(test_changed_family_starts_fresh)
{
    weir_conf_t *old = conf_new(NULL);
    weir_metric_t *m = family1(old, "t_x", WEIR_METRIC_GAUGE, "g", "a");
    weir_metric_series(old, m, (const char *const[]){"v"});
    bind_all(old, 64);
    weir_metric_gauge_add(m, 0, 9);
    weir_conf_t *cf = conf_new(old);
    weir_metric_t *m2 = family1(cf, "t_x", WEIR_METRIC_GAUGE, "g", "b");
    weir_metric_series(cf, m2, (const char *const[]){"v"});
    bind_all(cf, 64);
    char *text = render(cf);
    ck_assert_ptr_nonnull(strstr(text, "t_x{b=\"v\"} 0\n"));
    free(text);
    conf_del(cf);
    conf_del(old);
}
END_TEST

START_TEST(test_table_full_claims_nothing)
{
    weir_conf_t *old = conf_new(NULL);
    weir_metric_t *m = family1(old, "t_total", WEIR_METRIC_COUNTER, "c", "i");
    char name[16];
    for (int i = 0; i < 60; i++) {
        snprintf(name, sizeof(name), "%d", i);
        ck_assert_int_eq(weir_metric_series(old, m, (const char *const[]){name}), i);
    }
    bind_all(old, 64);
    weir_metric_add(m, 0, 4);

    /* 10 more than the 4 free: refused, naming the key */
    weir_conf_t *cf = conf_new(old);
    weir_metric_t *m2 = family1(cf, "t_total", WEIR_METRIC_COUNTER, "c", "i");
    for (int i = 0; i < 70; i++) {
        snprintf(name, sizeof(name), "%d", i);
        weir_metric_series(cf, m2, (const char *const[]){name});
    }
    ck_assert_int_eq(metrics_bind(cf, 64, NULL), -1);
    ck_assert_ptr_nonnull(cf->errors);
    ck_assert_ptr_nonnull(strstr(cf->errors->msg, "raise metrics_max_series"));
    ck_assert_ptr_nonnull(strstr(cf->errors->msg, "needs 10 more series"));
    cf->previous = NULL;
    conf_del(cf);

    /* nothing was claimed: 4 new series still fit, and counts went on */
    cf = conf_new(old);
    m2 = family1(cf, "t_total", WEIR_METRIC_COUNTER, "c", "i");
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof(name), "%d", i);
        weir_metric_series(cf, m2, (const char *const[]){name});
    }
    bind_all(cf, 64);
    char *text = render(cf);
    ck_assert_ptr_nonnull(strstr(text, "t_total{i=\"0\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(text, "t_total{i=\"63\"} 0\n"));
    free(text);
    conf_del(cf);
    conf_del(old);
}
END_TEST

START_TEST(test_disabled_costs_nothing)
{
    weir_conf_t *cf = conf_plain(NULL);
    weir_metric_t *m = weir_metric_new(cf, "t_total", WEIR_METRIC_COUNTER, "c", NULL, NULL);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(weir_metric_series(cf, m, NULL), 0);
    ck_assert_int_eq(metrics_bind(cf, 64, NULL), 0);
    weir_metric_add(m, 0, 1); /* not bound: a no-op, no crash */
    weir_metric_add(NULL, 0, 1);
    ck_assert_uint_eq(weir_metrics_render(cf, NULL, 0), 0);
    conf_del(cf);
}
END_TEST

START_TEST(test_bad_names)
{
    weir_conf_t *cf = conf_new(NULL);
    ck_assert_ptr_null(weir_metric_new(cf, "t_requests", WEIR_METRIC_COUNTER, "", NULL, NULL));
    ck_assert_ptr_null(weir_metric_new(cf, "9lives", WEIR_METRIC_GAUGE, "", NULL, NULL));
    ck_assert_ptr_null(weir_metric_new(cf, "t_h", WEIR_METRIC_HISTOGRAM, "",
                                       (const char *const[]){"le", NULL}, NULL));
    ck_assert_ptr_null(weir_metric_new(cf, "t_g", WEIR_METRIC_GAUGE, "",
                                       (const char *const[]){"a-b", NULL}, NULL));
    const double down[] = {1, 0.5, INFINITY};
    ck_assert_ptr_null(weir_metric_new(cf, "t_d", WEIR_METRIC_HISTOGRAM, "", NULL, down));
    ck_assert_ptr_nonnull(weir_metric_new(cf, "t_ok", WEIR_METRIC_GAUGE, "", NULL, NULL));
    ck_assert_ptr_null(weir_metric_new(cf, "t_ok", WEIR_METRIC_GAUGE, "", NULL, NULL));
    ck_assert_uint_eq(cf->nerrors, 6);
    conf_del(cf);
}
END_TEST

static int64_t seven(const void *arg)
{
    (void)arg;
    return 7;
}

START_TEST(test_computed_series)
{
    weir_conf_t *cf = conf_new(NULL);
    weir_metric_t *m = family1(cf, "t_up", WEIR_METRIC_GAUGE, "u", "s");
    ck_assert_int_eq(metrics_series_fn(cf, m, (const char *const[]){"a"}, seven, NULL), 0);
    ck_assert_int_eq(weir_metric_series(cf, m, (const char *const[]){"b"}), -1); /* mixed */
    bind_all(cf, 64);
    char *text = render(cf);
    ck_assert_str_eq(text, "# HELP t_up u\n# TYPE t_up gauge\nt_up{s=\"a\"} 7\n");
    free(text);
    conf_del(cf);
}
END_TEST

/* The render is snprintf-like: a short buffer gets a prefix, the whole
 * length is returned. */
START_TEST(test_short_buffer)
{
    weir_conf_t *cf = conf_new(NULL);
    weir_metric_t *m = weir_metric_new(cf, "t_total", WEIR_METRIC_COUNTER, "c", NULL, NULL);
    weir_metric_series(cf, m, NULL);
    bind_all(cf, 64);
    char buf[10];
    memset(buf, 'x', sizeof(buf));
    size_t n = weir_metrics_render(cf, buf, 5);
    ck_assert_uint_eq(n, strlen("# HELP t_total c\n# TYPE t_total counter\nt_total 0\n"));
    ck_assert_int_eq(memcmp(buf, "# HELx", 6), 0);
    conf_del(cf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_counter_escaping);
    tcase_add_test(tc, test_histogram_and_gauge);
    tcase_add_test(tc, test_default_buckets);
    tcase_add_test(tc, test_same_identity_same_slot_across_reload);
    tcase_add_test(tc, test_changed_family_starts_fresh);
    tcase_add_test(tc, test_table_full_claims_nothing);
    tcase_add_test(tc, test_disabled_costs_nothing);
    tcase_add_test(tc, test_bad_names);
    tcase_add_test(tc, test_computed_series);
    tcase_add_test(tc, test_short_buffer);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
