/* Variables and templates: parsing, rendering, captures, errors, JSON. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "conf.h"
#include "vars.h"

/* The core's request code is not linked here: requests are a fake handle and
 * request memory comes from a test arena. */
static struct arena *req_arena;
static size_t req_allocs;

void *weir_request_alloc(weir_request_t *r, size_t size)
{
    (void)r;
    req_allocs++;
    return arena_alloc(req_arena, size);
}

static weir_request_t *const R = (weir_request_t *)&req_arena;

static int set(weir_str_t *out, const char *s)
{
    *out = (weir_str_t){.data = s, .len = strlen(s)};
    return 0;
}

#define GETTER(fn, value)                                                                       \
    static int fn(weir_request_t *r, weir_str_t suffix, weir_str_t *out)                        \
    {                                                                                           \
        (void)r;                                                                                \
        (void)suffix;                                                                           \
        return set(out, value);                                                                 \
    }

GETTER(get_host, "example.com")
GETTER(get_uri, "/a/b")
GETTER(get_status, "200")
GETTER(get_request, "GET / HTTP/1.1")
GETTER(get_request_time, "0.005")
GETTER(get_quote, "say \"hi\"\n\\ \x01 caf\xc3\xa9")
/* Latin-1 e-acute, a lone continuation byte, an overlong '/', a surrogate,
 * DEL, then well-formed 3- and 4-byte sequences. */
GETTER(get_bytes, "\xe9|\x80|\xc0\xaf|\xed\xa0\x80|\x7f|\xe2\x82\xac|\xf0\x9f\x98\x80")

static int get_unset(weir_request_t *r, weir_str_t suffix, weir_str_t *out)
{
    (void)r;
    (void)suffix;
    out->data = NULL;
    return 1;
}

/* $http_<name>: a tiny header table keyed by the converted suffix. */
static int get_http(weir_request_t *r, weir_str_t suffix, weir_str_t *out)
{
    static const char *const hdrs[][2] = {{"x-user", "alice"}, {"user-agent", "curl/8"}};
    (void)r;
    for (size_t i = 0; i < 2; i++) {
        if (strlen(hdrs[i][0]) == suffix.len && memcmp(hdrs[i][0], suffix.data, suffix.len) == 0)
            return set(out, hdrs[i][1]);
    }
    return 1;
}

/* $cookie_<name>, $arg_<name>: echo the suffix so the tests see it */
static int get_echo(weir_request_t *r, weir_str_t suffix, weir_str_t *out)
{
    (void)r;
    *out = suffix;
    return 0;
}

static struct weir_node node = {
    .type = WEIR_NODE_SCALAR, .file = "weir.yaml", .line = 3, .column = 12, .scalar = ""};

static weir_conf_t *cf;

static void setup(void)
{
    cf = calloc(1, sizeof(*cf));
    ck_assert_ptr_nonnull(cf);
    cf->arena = arena_new(4096, 0);
    cf->file = "weir.yaml";
    cf->errors_tail = &cf->errors;
    req_arena = arena_new(4096, 0);
    ck_assert_int_eq(vars_init(cf), 0);
    static const struct {
        const char *name;
        unsigned flags;
        weir_var_get_fn get;
    } defs[] = {
        {"host", 0, get_host},
        {"uri", 0, get_uri},
        {"status", 0, get_status},
        {"request", 0, get_request},
        {"request_time", 0, get_request_time},
        {"quote", 0, get_quote},
        {"bytes", 0, get_bytes},
        {"unset_var", 0, get_unset},
        {"http_", WEIR_VAR_PREFIX, get_http},
        {"sent_http_", WEIR_VAR_PREFIX, get_echo},
        {"cookie_", WEIR_VAR_PREFIX, get_echo},
        {"arg_", WEIR_VAR_PREFIX, get_echo},
    };
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
        ck_assert_int_eq(weir_var_register(cf, defs[i].name, defs[i].flags, defs[i].get), 0);
}

static void teardown(void)
{
    arena_free(cf->arena);
    free(cf);
    arena_free(req_arena);
}

static weir_template_t *compile(const char *text)
{
    weir_template_t *t = weir_template_compile(cf, &node, text);
    ck_assert_msg(t != NULL, "'%s': %s", text, cf->errors ? cf->errors->msg : "no error");
    return t;
}

static void assert_str(weir_str_t got, const char *want)
{
    ck_assert_msg(got.len == strlen(want) && memcmp(got.data, want, got.len) == 0,
                  "got '%.*s', want '%s'", (int)got.len, got.data, want);
}

static const struct rcase {
    const char *text;
    const char *want;
    int literal;
} renders[] = {
    {"plain text", "plain text", 1},
    {"", "", 1},
    {"$$", "$", 1},
    {"a$$b$$", "a$b$", 1},
    {"100$$ off", "100$ off", 1},
    {"$host", "example.com", 0},
    {"${host}y", "example.comy", 0},
    {"${host}${uri}", "example.com/a/b", 0},
    {"$host:$status", "example.com:200", 0},
    {"$request $request_time", "GET / HTTP/1.1 0.005", 0},
    {"[$unset_var]", "[]", 0},
    {"$unset_var", "", 0},
    {"$$host", "$host", 1},
    {"$$$host", "$example.com", 0},
    {"$http_x_user", "alice", 0},
    {"$http_User_Agent!", "curl/8!", 0},
    {"[$http_x_missing]", "[]", 0},
    {"$sent_http_Content_Type", "content-type", 0},
    {"$cookie_SID_x", "sid_x", 0},
    {"$arg_foo_Bar", "foo_bar", 0},
    {"$host-$uri.$status/", "example.com-/a/b.200/", 0},
    {"x$1y", "xy", 0},
};

START_TEST(test_render)
{
    const struct rcase *c = &renders[_i];
    weir_template_t *t = compile(c->text);
    ck_assert_int_eq(weir_template_is_literal(t), c->literal);
    ck_assert_str_eq(template_source(t), c->text);
    weir_str_t out;
    size_t before = req_allocs;
    ck_assert_int_eq(weir_template_render(R, t, &out), 0);
    assert_str(out, c->want);
    /* literal text needs no allocation; anything else at most one */
    ck_assert_uint_le(req_allocs - before, c->literal ? 0 : 1);
}
END_TEST

static const struct ecase {
    const char *text;
    const char *msg;
} errors[] = {
    {"$foo", "weir.yaml:3:12: unknown variable '$foo' in '$foo'"},
    {"$hots", "weir.yaml:3:12: unknown variable '$hots' in '$hots' (did you mean '$host'?)"},
    {"a $stauts b",
     "weir.yaml:3:12: unknown variable '$stauts' in 'a $stauts b' (did you mean '$status'?)"},
    {"${hostx}", "weir.yaml:3:12: unknown variable '$hostx' in '${hostx}' (did you mean "
                 "'$host'?)"},
    {"$hostname", "weir.yaml:3:12: unknown variable '$hostname' in '$hostname'"},
    {"$http_", "weir.yaml:3:12: unknown variable '$http_' in '$http_'"},
    {"${host", "weir.yaml:3:12: unterminated '${' in '${host'"},
    {"x${}", "weir.yaml:3:12: empty '${}' in 'x${}'"},
    {"${a-b}", "weir.yaml:3:12: '${a-b}' in '${a-b}' is not a variable name (letters, digits "
               "and '_')"},
    {"cost: 5$", "weir.yaml:3:12: '$' at offset 7 of 'cost: 5$' is not followed by a variable "
                 "name; write '$$' for a literal '$'"},
    {"$ x", "weir.yaml:3:12: '$' at offset 0 of '$ x' is not followed by a variable name; write "
            "'$$' for a literal '$'"},
};

START_TEST(test_error)
{
    const struct ecase *c = &errors[_i];
    ck_assert_ptr_null(weir_template_compile(cf, &node, c->text));
    ck_assert_uint_eq(cf->nerrors, 1);
    ck_assert_str_eq(cf->errors->msg, c->msg);
}
END_TEST

/* Every mistake of a text is reported, not only the first. */
START_TEST(test_errors_all_reported)
{
    static const char *const want[] = {
        "weir.yaml:3:12: unknown variable '$foo' in '$foo ${a-b} $ $bar'",
        "weir.yaml:3:12: '${a-b}' in '$foo ${a-b} $ $bar' is not a variable name (letters, "
        "digits and '_')",
        "weir.yaml:3:12: '$' at offset 12 of '$foo ${a-b} $ $bar' is not followed by a variable "
        "name; write '$$' for a literal '$'",
        "weir.yaml:3:12: unknown variable '$bar' in '$foo ${a-b} $ $bar'",
    };
    size_t i = 0;
    ck_assert_ptr_null(weir_template_compile(cf, &node, "$foo ${a-b} $ $bar"));
    for (const conf_error_t *e = cf->errors; e; e = e->next, i++) {
        ck_assert_uint_lt(i, sizeof(want) / sizeof(want[0]));
        ck_assert_str_eq(e->msg, want[i]);
    }
    ck_assert_uint_eq(i, sizeof(want) / sizeof(want[0]));
}
END_TEST

/* Where a scalar sits on one line as written, a variable is reported at
 * its own column; otherwise at the scalar. */
static const struct poscase {
    int style;
    const char *scalar;
    unsigned width;     /* end_column - column: the scalar's width in the file */
    size_t piece;       /* compile scalar + piece (a pointer into it) */
    int copy;           /* compile a copy of that piece instead */
    unsigned column[2]; /* of the two unknown variables */
} positions[] = {
    {CONF_STYLE_PLAIN, "$aa x $bb", 9, 0, 0, {12, 18}},
    {CONF_STYLE_QUOTED, "$aa x $bb", 11, 0, 0, {13, 19}},
    /* a quoted scalar with escapes is wider than its text: no column inside */
    {CONF_STYLE_QUOTED, "$aa\t$bb", 10, 0, 0, {12, 12}},
    /* block scalars and nodes not read from a file */
    {CONF_STYLE_OTHER, "$aa x $bb", 9, 0, 0, {12, 12}},
    /* columns count characters: "\xc3\xa9" is one */
    {CONF_STYLE_PLAIN, "\xc3\xa9 $aa $bb", 9, 0, 0, {14, 18}},
    /* a piece of the scalar, by pointer and as a copy found once in it */
    {CONF_STYLE_PLAIN, "^/(.*) /$aa/$bb", 15, 7, 0, {20, 24}},
    {CONF_STYLE_PLAIN, "^/(.*) /$aa/$bb", 15, 7, 1, {20, 24}},
    /* a copy found twice cannot be placed */
    {CONF_STYLE_PLAIN, "$aa$bb $aa$bb", 13, 7, 1, {12, 12}},
};

START_TEST(test_error_columns)
{
    const struct poscase *c = &positions[_i];
    struct weir_node n = node;
    n.scalar = c->scalar;
    n.style = c->style;
    n.end_line = n.line;
    n.end_column = n.column + c->width;
    const char *text = c->scalar + c->piece;
    char copy[64];
    if (c->copy) {
        snprintf(copy, sizeof(copy), "%s", text);
        text = copy;
    }
    ck_assert_ptr_null(weir_template_compile(cf, &n, text));
    ck_assert_uint_eq(cf->nerrors, 2);
    ck_assert_uint_eq(cf->errors->line, 3);
    ck_assert_uint_eq(cf->errors->column, c->column[0]);
    ck_assert_ptr_nonnull(strstr(cf->errors->msg, "'$aa'"));
    ck_assert_uint_eq(cf->errors->next->column, c->column[1]);
    ck_assert_ptr_nonnull(strstr(cf->errors->next->msg, "'$bb'"));

    /* spread over two lines: the scalar's position */
    cf->errors = NULL;
    cf->errors_tail = &cf->errors;
    cf->nerrors = 0;
    n.end_line = n.line + 1;
    ck_assert_ptr_null(weir_template_compile(cf, &n, text));
    ck_assert_uint_eq(cf->errors->column, 12);
    ck_assert_uint_eq(cf->errors->next->column, 12);
}
END_TEST

START_TEST(test_captures)
{
    /* "^/(v1)/([a-z]+)/(x)?(.*)$" against "/v1/abc/def": group 3 unset */
    const char *subj = "/v1/abc/def";
    const size_t ov[] = {0, 11, 1, 3, 4, 7, SIZE_MAX, SIZE_MAX, 8, 11};
    static const struct {
        const char *text, *want;
    } cs[] = {
        {"/$2/$4", "/abc/def"},
        {"${2}x$1", "abcxv1"},
        {"[$3]", "[]"},
        {"$0", "/v1/abc/def"},
        {"$9$5", ""},
        {"$host$2", "example.comabc"},
        {"$$1", "$1"},
    };
    for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
        weir_template_t *t = compile(cs[i].text);
        weir_str_t out;
        ck_assert_int_eq(weir_template_render_captures(R, t, (weir_str_t){subj, strlen(subj)}, ov,
                                                       5, &out),
                         0);
        assert_str(out, cs[i].want);
    }
    /* without captures a reference renders empty */
    weir_str_t out;
    ck_assert_int_eq(weir_template_render(R, compile("<$1>"), &out), 0);
    assert_str(out, "<>");
    /* offsets beyond the subject are treated as unset */
    const size_t bad[] = {0, 99, 50, 60};
    ck_assert_int_eq(weir_template_render_captures(R, compile("<$0$1>"), (weir_str_t){subj, 3},
                                                   bad, 2, &out),
                     0);
    assert_str(out, "<>");
}
END_TEST

START_TEST(test_render_ex)
{
    weir_template_t *t = compile("{\"q\":\"$quote\",\"u\":\"$unset_var\",\"h\":\"$host\"}");
    weir_str_t out;
    ck_assert_int_eq(template_render_ex(R, t, "-", 1, &out), 0);
    assert_str(out, "{\"q\":\"say \\\"hi\\\"\\n\\\\ \\u0001 caf\xc3\xa9\",\"u\":\"-\","
                    "\"h\":\"example.com\"}");
}
END_TEST

/* JSON lines stay valid UTF-8: bytes that are not well-formed UTF-8 are
 * escaped one by one, well-formed sequences pass. */
START_TEST(test_render_json_bytes)
{
    weir_str_t out;
    ck_assert_int_eq(weir_template_render_flags(R, compile("$bytes"), WEIR_RENDER_JSON, &out), 0);
    assert_str(out, "\\u00e9|\\u0080|\\u00c0\\u00af|\\u00ed\\u00a0\\u0080|\\u007f|"
                    "\xe2\x82\xac|\xf0\x9f\x98\x80");
}
END_TEST

/* The public flags: "-" for unset in logs; "" for unset in JSON. */
START_TEST(test_render_flags)
{
    weir_template_t *t = compile("$host $unset_var");
    weir_str_t out;
    ck_assert_int_eq(weir_template_render_flags(R, t, WEIR_RENDER_LOG, &out), 0);
    assert_str(out, "example.com -");
    ck_assert_int_eq(weir_template_render_flags(R, t, WEIR_RENDER_JSON, &out), 0);
    assert_str(out, "example.com ");
    ck_assert_int_eq(weir_template_render_flags(R, t, 0, &out), 0);
    assert_str(out, "example.com ");
}
END_TEST

START_TEST(test_render_ex_unset)
{
    weir_template_t *t = compile("$host $unset_var \"$http_x_nope\" $status");
    weir_str_t out;
    ck_assert_int_eq(template_render_ex(R, t, "-", 0, &out), 0);
    assert_str(out, "example.com - \"-\" 200");
    ck_assert_int_eq(template_render_ex(R, t, NULL, 0, &out), 0);
    assert_str(out, "example.com  \"\" 200");
    /* literal segments are never escaped */
    ck_assert_int_eq(template_render_ex(R, compile("\"\\$status\n"), "-", 1, &out), 0);
    assert_str(out, "\"\\200\n");
}
END_TEST

START_TEST(test_many_variables)
{
    char text[1024] = "";
    char want[2048] = "";
    for (int i = 0; i < 60; i++) {
        strcat(text, "$status,");
        strcat(want, "200,");
    }
    weir_str_t out;
    ck_assert_int_eq(weir_template_render(R, compile(text), &out), 0);
    assert_str(out, want);
}
END_TEST

START_TEST(test_register)
{
    static int (*const g)(weir_request_t *, weir_str_t, weir_str_t *) = get_host;
    ck_assert_int_eq(weir_var_register(cf, "host", 0, g), -1);
    ck_assert_int_eq(weir_var_register(cf, "http_", 0, g), -1);
    ck_assert_int_eq(weir_var_register(cf, "a-b", 0, g), -1);
    ck_assert_int_eq(weir_var_register(cf, "$x", 0, g), -1);
    ck_assert_int_eq(weir_var_register(cf, "", 0, g), -1);
    ck_assert_int_eq(weir_var_register(cf, "fine", 0, NULL), -1);
    ck_assert_int_eq(weir_var_register(cf, "new_var", 0, g), 0);
    /* enough registrations to grow the table */
    char name[32];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "v%d", i);
        ck_assert_int_eq(weir_var_register(cf, name, 0, g), 0);
    }
    weir_str_t out;
    ck_assert_int_eq(vars_get(R, cf, "v199", &out), 0);
    assert_str(out, "example.com");
    ck_assert_int_eq(vars_get(R, cf, "host", &out), 0);
    assert_str(out, "example.com");
}
END_TEST

static const struct gcase {
    const char *name;
    int rc;
    const char *want;
} gets[] = {
    {"host", 0, "example.com"},
    {"request", 0, "GET / HTTP/1.1"},
    {"request_time", 0, "0.005"},
    {"unset_var", 1, ""},
    {"nope", -1, NULL},
    {"hostx", -1, NULL},
    {"http_", -1, NULL},
    {"http_x_user", 0, "alice"},
    {"http_X_USER", 0, "alice"},
    {"http_x_nope", 1, ""},
    {"cookie_Session_ID", 0, "session_id"},
    {"sent_http_x_a", 0, "x-a"},
};

START_TEST(test_vars_get)
{
    const struct gcase *c = &gets[_i];
    weir_str_t out = {0};
    ck_assert_int_eq(vars_get(R, cf, c->name, &out), c->rc);
    if (c->want)
        assert_str(out, c->want);
}
END_TEST

START_TEST(test_template_from_node)
{
    struct weir_node n = node;
    n.scalar = "$host!";
    weir_template_t *t = weir_template_compile(cf, &n, NULL);
    ck_assert_ptr_nonnull(t);
    weir_str_t out;
    ck_assert_int_eq(weir_template_render(R, t, &out), 0);
    assert_str(out, "example.com!");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vars");
    TCase *tc = tcase_create("templates");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_render, 0, (int)(sizeof(renders) / sizeof(renders[0])));
    tcase_add_loop_test(tc, test_error, 0, (int)(sizeof(errors) / sizeof(errors[0])));
    tcase_add_test(tc, test_errors_all_reported);
    tcase_add_loop_test(tc, test_error_columns, 0, (int)(sizeof(positions) / sizeof(positions[0])));
    tcase_add_test(tc, test_captures);
    tcase_add_test(tc, test_render_ex);
    tcase_add_test(tc, test_render_json_bytes);
    tcase_add_test(tc, test_render_flags);
    tcase_add_test(tc, test_render_ex_unset);
    tcase_add_test(tc, test_many_variables);
    tcase_add_test(tc, test_register);
    tcase_add_loop_test(tc, test_vars_get, 0, (int)(sizeof(gets) / sizeof(gets[0])));
    tcase_add_test(tc, test_template_from_node);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
