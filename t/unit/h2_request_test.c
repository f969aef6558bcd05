/* HTTP/2 request heads (core/h2_request.c): h2_head_init, h2_head_field and
 * h2_head_finish against each rule in the comment at the top of core/h2.h,
 * every rule from both sides (a head it accepts, heads it refuses). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "h2.h"

static struct arena *A;

static void setup(void)
{
    A = arena_new(4096, 4u << 20);
}

static void teardown(void)
{
    arena_free(A);
    A = NULL;
}

/* A field; literals keep their length, so embedded NULs count. */
typedef struct field {
    const char *n;
    size_t nl;
    const char *v;
    size_t vl;
} field_t;

#define F(name, value) {(name), sizeof(name) - 1, (value), sizeof(value) - 1}
#define END {NULL, 0, NULL, 0}
/* A head: the fields given, in order. */
#define HEAD(...) ((const field_t[]){__VA_ARGS__, END})

/* The four pseudo-fields of a plain GET. */
#define P_METHOD F(":method", "GET")
#define P_SCHEME F(":scheme", "https")
#define P_AUTH F(":authority", "example.com")
#define P_PATH F(":path", "/")
#define STD P_METHOD, P_SCHEME, P_AUTH, P_PATH

static h2_head_t H;

static int str_is(weir_str_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.data, want, s.len) == 0;
}

static int add_to(h2_head_t *h, const field_t *f, size_t max)
{
    return h2_head_field(A, h, (weir_str_t){f->n, f->nl}, (weir_str_t){f->v, f->vl}, max);
}

/* Feeds a whole head into a fresh H with a header-list limit (0: none);
 * returns h2_head_finish's answer. */
static int run_max(const field_t *fs, size_t max)
{
    h2_head_init(&H);
    for (const field_t *f = fs; f->n; f++)
        add_to(&H, f, max);
    return h2_head_finish(A, &H);
}

static int run(const field_t *fs)
{
    return run_max(fs, 0);
}

/* The RFC 9113 §4.3.1 size of a head: name + value + 32 per field. */
static size_t list_size(const field_t *fs)
{
    size_t n = 0;
    for (const field_t *f = fs; f->n; f++)
        n += f->nl + f->vl + 32;
    return n;
}

/* The regular fields H kept under a name, and the value of the first. */
static size_t count_field(const char *name, weir_str_t *first)
{
    size_t n = 0;
    for (size_t i = 0; i < H.fields.n; i++) {
        if (!str_is(H.fields.v[i].name, name))
            continue;
        if (!n && first)
            *first = H.fields.v[i].value;
        n++;
    }
    return n;
}

static int has_value(const char *name, const char *value)
{
    weir_str_t v = {0};
    return count_field(name, &v) == 1 && str_is(v, value);
}

/* ---------------------------------------------------------- a plain head */

START_TEST(test_init)
{
    memset(&H, 0x5a, sizeof(H));
    h2_head_init(&H);
    ck_assert_int_eq(H.error, 0);
    ck_assert_int_eq((int)H.content_length, -1);
    ck_assert_uint_eq(H.fields.n, 0);
    ck_assert_uint_eq(H.list_size, 0);
    ck_assert_uint_eq(H.pseudo_seen, 0);
    ck_assert_ptr_null(H.method.data);
    ck_assert_ptr_null(H.host.data);
    ck_assert_uint_eq(H.cookies, 0);
    ck_assert_uint_eq(H.regular_seen, 0);
    ck_assert_uint_eq(H.te_trailers, 0);
}
END_TEST

/* Values are copied into the arena: the caller's buffers may change. */
START_TEST(test_plain_head_copied)
{
    char m[] = "POST", s[] = "http", au[] = "Example.COM:8443", p[] = "/up?x=1", n[] = "x-a",
         v[] = "va";
    h2_head_init(&H);
    weir_str_t nv[][2] = {
        {WEIR_STR(":method"), {m, 4}},     {WEIR_STR(":scheme"), {s, 4}},
        {WEIR_STR(":authority"), {au, 16}}, {WEIR_STR(":path"), {p, 7}},
        {{n, 3}, {v, 2}},
    };
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(h2_head_field(A, &H, nv[i][0], nv[i][1], 0), 0);
    ck_assert_int_eq(h2_head_finish(A, &H), 0);
    memset(m, 'z', 4), memset(s, 'z', 4), memset(au, 'z', 16), memset(p, 'z', 7);
    memset(n, 'z', 3), memset(v, 'z', 2);
    ck_assert(str_is(H.method, "POST"));
    ck_assert(str_is(H.scheme, "http"));
    ck_assert(str_is(H.authority, "Example.COM:8443"));
    ck_assert(str_is(H.path, "/up?x=1"));
    ck_assert_uint_eq(H.fields.n, 1);
    ck_assert(str_is(H.fields.v[0].name, "x-a"));
    ck_assert(str_is(H.fields.v[0].value, "va"));
    ck_assert_int_eq((int)H.content_length, -1);
    ck_assert_int_eq(H.error, 0);
}
END_TEST

/* ------------------------------------------ names: lowercase tchar only */

START_TEST(test_names_lowercase)
{
    ck_assert_int_eq(run(HEAD(STD, F("x-custom-1", "a"), F("accept", "*/*"))), 0);
    ck_assert(has_value("x-custom-1", "a"));
    ck_assert(has_value("accept", "*/*"));
    /* every tchar but the uppercase letters */
    ck_assert_int_eq(run(HEAD(STD, F("!#$%&'*+-.^_`|~0az9", "v"))), 0);
    ck_assert(has_value("!#$%&'*+-.^_`|~0az9", "v"));

    ck_assert_int_eq(run(HEAD(STD, F("X-Custom", "a"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("accepT", "*/*"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("Content-Length", "0"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("Cookie", "a=1"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("Host", "example.com"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("TE", "trailers"))), H2_MALFORMED);
    /* not tchar */
    ck_assert_int_eq(run(HEAD(STD, F("", "a"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("x y", "a"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("x:y", "a"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("x\0y", "a"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("x\r\ny", "a"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("x(y)", "a"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("x\x7f", "a"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("x\xc3\xa9", "a"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("x-a ", "a"))), H2_MALFORMED);
}
END_TEST

/* --------------------------------------- values: no CR, LF, NUL (or CTL) */

START_TEST(test_values_no_cr_lf_nul)
{
    ck_assert_int_eq(run(HEAD(STD, F("x-a", "a\tb"), F("x-b", "caf\xc3\xa9 \x80\xff"),
                              F("x-c", "!\"#~"))),
                     0);
    ck_assert(has_value("x-a", "a\tb"));
    ck_assert(has_value("x-b", "caf\xc3\xa9 \x80\xff"));
    ck_assert(has_value("x-c", "!\"#~"));

    static const field_t bad[] = {
        F("x-a", "a\rb"), F("x-a", "a\nb"), F("x-a", "a\0b"), F("x-a", "\ra"),
        F("x-a", "a\n"),  F("x-a", "\0"),   F("x-a", "a\r\n"), F("x-a", "a\r\nx-b: c"),
        /* other control bytes (h2_request.c: none but HTAB) */
        F("x-a", "a\x01" "b"), F("x-a", "a\x1f" "b"), F("x-a", "a\x7f" "b"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        field_t fs[] = {STD, bad[i], END};
        ck_assert_msg(run(fs) == H2_MALFORMED, "value %zu accepted", i);
        ck_assert_uint_eq(count_field("x-a", NULL), 0);
    }
    /* in a pseudo-field too */
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_AUTH, F(":path", "/a\r\nb"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, F(":authority", "a\0b"), P_PATH)),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "GET\n"), P_SCHEME, P_AUTH, P_PATH)), H2_MALFORMED);
}
END_TEST

START_TEST(test_values_whitespace_ends)
{
    ck_assert_int_eq(run(HEAD(STD, F("x-a", "a b"), F("x-b", "a \t b"), F("x-e", ""),
                              F("x-o", "x"))),
                     0);
    ck_assert(has_value("x-a", "a b"));
    ck_assert(has_value("x-b", "a \t b"));
    ck_assert(has_value("x-e", ""));
    ck_assert(has_value("x-o", "x"));

    static const field_t bad[] = {
        F("x-a", " a"), F("x-a", "a "),  F("x-a", "\ta"), F("x-a", "a\t"),
        F("x-a", " "),  F("x-a", "\t"), F("x-a", "  a  "), F("x-a", " \ta"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        field_t fs[] = {STD, bad[i], END};
        ck_assert_msg(run(fs) == H2_MALFORMED, "value %zu accepted", i);
    }
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, F(":authority", " example.com"), P_PATH)),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_AUTH, F(":path", "/ "))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("content-length", "5 "))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("host", "example.com\t"))), H2_MALFORMED);
}
END_TEST

/* ------------------------------------------------ connection-specific */

START_TEST(test_connection_specific)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade"};
    static const char *const values[] = {"close", "timeout=5", "keep-alive", "chunked", "h2c"};
    for (size_t i = 0; i < 5; i++) {
        field_t fs[] = {STD, {names[i], strlen(names[i]), values[i], strlen(values[i])}, END};
        ck_assert_msg(run(fs) == H2_MALFORMED, "%s accepted", names[i]);
        /* whatever the value */
        field_t fs2[] = {STD, {names[i], strlen(names[i]), "", 0}, END};
        ck_assert_msg(run(fs2) == H2_MALFORMED, "empty %s accepted", names[i]);
    }
    /* names that only look alike are ordinary fields */
    ck_assert_int_eq(run(HEAD(STD, F("upgrade-insecure-requests", "1"),
                              F("x-connection", "close"), F("keep-alive-x", "1"),
                              F("proxy-authorization", "Basic eA=="),
                              F("transfer-encodings", "x"), F("connectio", "x"))),
                     0);
    ck_assert(has_value("upgrade-insecure-requests", "1"));
    ck_assert(has_value("x-connection", "close"));
    ck_assert(has_value("keep-alive-x", "1"));
    ck_assert(has_value("proxy-authorization", "Basic eA=="));
    ck_assert(has_value("transfer-encodings", "x"));
    ck_assert(has_value("connectio", "x"));
}
END_TEST

START_TEST(test_te_trailers_only)
{
    ck_assert_int_eq(run(HEAD(STD, F("x-a", "1"))), 0);
    ck_assert_uint_eq(H.te_trailers, 0);
    ck_assert_int_eq(run(HEAD(STD, F("te", "trailers"), F("x-a", "1"))), 0);
    /* hop-by-hop: not among the fields, only remembered (for an HTTP/2
     * upstream) */
    ck_assert_uint_eq(count_field("te", NULL), 0);
    ck_assert_uint_eq(H.te_trailers, 1);
    ck_assert(has_value("x-a", "1"));

    ck_assert_int_eq(run(HEAD(STD, F("te", "gzip"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("te", "trailers, gzip"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("te", "gzip, trailers"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("te", "trailers;q=1"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("te", "trailer"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("te", ""))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("te", "trailers"), F("te", "chunked"))), H2_MALFORMED);
}
END_TEST

/* ------------------------------------------------------- pseudo-fields */

START_TEST(test_pseudo_before_regular)
{
    /* any order among themselves, all before the first regular field */
    ck_assert_int_eq(run(HEAD(P_PATH, P_AUTH, P_SCHEME, P_METHOD, F("x-a", "1"))), 0);
    ck_assert(str_is(H.method, "GET"));
    ck_assert(str_is(H.path, "/"));

    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_AUTH, F("x-a", "1"), P_PATH)),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F("x-a", "1"), STD)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH, F("host", "example.com"), P_AUTH)),
                     H2_MALFORMED);
    /* a refused regular field still ends the pseudo-fields */
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_AUTH, F("te", "trailers"), P_PATH)),
                     H2_MALFORMED);
    /* ... and so does a pseudo-field after cookies */
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH, F("cookie", "a=1"), P_AUTH)),
                     H2_MALFORMED);
}
END_TEST

START_TEST(test_pseudo_once)
{
    ck_assert_int_eq(run(HEAD(STD)), 0);
    ck_assert_int_eq(run(HEAD(STD, P_METHOD)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F(":method", "POST"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, P_SCHEME)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F(":scheme", "http"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, P_AUTH)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F(":authority", "other.example"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, P_PATH)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F(":path", "/other"))), H2_MALFORMED);
}
END_TEST

START_TEST(test_pseudo_known_only)
{
    ck_assert_int_eq(run(HEAD(STD)), 0);
    static const field_t bad[] = {
        F(":status", "200"), F(":protocol", "websocket"), F(":foo", "x"), F(":", "x"),
        F("::method", "GET"), F(":Method", "GET"), F(":METHOD", "GET"), F(":path ", "/"),
        F(":method\0", "GET"), F(":authorit", "example.com"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        field_t fs[] = {STD, bad[i], END};
        ck_assert_msg(run(fs) == H2_MALFORMED, "pseudo-field %zu accepted", i);
        /* first too */
        field_t fs2[] = {bad[i], STD, END};
        ck_assert_msg(run(fs2) == H2_MALFORMED, "pseudo-field %zu accepted first", i);
    }
    /* :status in place of :method: a response head is no request */
    ck_assert_int_eq(run(HEAD(F(":status", "200"), P_SCHEME, P_AUTH, P_PATH)), H2_MALFORMED);
}
END_TEST

START_TEST(test_pseudo_required)
{
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH, F("host", "example.com"))), 0);
    ck_assert_int_eq(run(HEAD(F(":method", "PATCH"), P_SCHEME, P_AUTH, P_PATH)), 0);
    ck_assert_int_eq(run(HEAD(F(":method", "PURGE"), P_SCHEME, P_AUTH, P_PATH)), 0);
    ck_assert_int_eq(run(HEAD(F(":method", "PROPFIND"), P_SCHEME, P_AUTH, P_PATH)), 0);
    ck_assert_int_eq(run(HEAD(F(":method", "MKCALENDAR"), P_SCHEME, P_AUTH, P_PATH)), 0);
    /* a token llhttp does not know is 501, as on HTTP/1; methods are case-sensitive */
    static const char *const unknown[] = {"X-CUSTOM.1~", "EEAD", "get", "Get", "GETT",
                                          "UPDATEREDIRECTREFUPDATEREDIRECTREFUPDATEREDIRECTREF"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        field_t fs[] = {{":method", 7, unknown[i], strlen(unknown[i])}, P_SCHEME, P_AUTH,
                        P_PATH, END};
        ck_assert_msg(run(fs) == -501, ":method %s not 501", unknown[i]);
    }

    ck_assert_int_eq(run(HEAD(P_SCHEME, P_AUTH, P_PATH)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_AUTH, P_PATH)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_AUTH)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(P_AUTH)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F("x-a", "1"))), H2_MALFORMED);
    h2_head_init(&H);
    ck_assert_int_eq(h2_head_finish(A, &H), H2_MALFORMED);
    /* a :method must be a token */
    ck_assert_int_eq(run(HEAD(F(":method", ""), P_SCHEME, P_AUTH, P_PATH)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "GE T"), P_SCHEME, P_AUTH, P_PATH)), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "GET/"), P_SCHEME, P_AUTH, P_PATH)), H2_MALFORMED);
    /* CONNECT has neither :scheme nor :path, and weir answers it 501 */
    ck_assert_int_eq(run(HEAD(F(":method", "CONNECT"), F(":authority", "example.com:443"))),
                     -501);
    ck_assert_int_eq(run(HEAD(F(":method", "CONNECT"), F(":authority", "example.com:443"),
                              P_SCHEME, P_PATH)),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "CONNECT"), F(":authority", "example.com:443"),
                              P_PATH)),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "CONNECT"), F(":authority", "example.com:443"),
                              P_SCHEME)),
                     H2_MALFORMED);
}
END_TEST

START_TEST(test_path_forms)
{
    static const char *const good[] = {"/", "/a/b", "/a?b=c&d", "//x", "/%41%zz", "/?",
                                       "/a;p=1/b", "/~user/!$&'()*+,;=:@"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        field_t fs[] = {P_METHOD, P_SCHEME, P_AUTH, {":path", 5, good[i], strlen(good[i])}, END};
        ck_assert_msg(run(fs) == 0, ":path %s refused", good[i]);
        ck_assert(str_is(H.path, good[i]));
    }
    ck_assert_int_eq(run(HEAD(F(":method", "OPTIONS"), P_SCHEME, P_AUTH, F(":path", "*"))), 0);
    ck_assert(str_is(H.path, "*"));

    static const char *const bad[] = {"",   "a/b",  "http://example.com/", "?x", "*", "/a#b",
                                      "/a b", "/\x80", "/\x7f", "\\a", "//x#"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        field_t fs[] = {P_METHOD, P_SCHEME, P_AUTH, {":path", 5, bad[i], strlen(bad[i])}, END};
        ck_assert_msg(run(fs) == H2_MALFORMED, ":path %s accepted", bad[i]);
    }
    /* "*" is for OPTIONS only, and only alone */
    ck_assert_int_eq(run(HEAD(F(":method", "GET"), P_SCHEME, P_AUTH, F(":path", "*"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "POST"), P_SCHEME, P_AUTH, F(":path", "*"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "options"), P_SCHEME, P_AUTH, F(":path", "*"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "OPTIONS"), P_SCHEME, P_AUTH, F(":path", "**"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "OPTIONS"), P_SCHEME, P_AUTH, F(":path", "*/"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "OPTIONS"), P_SCHEME, P_AUTH, F(":path", "*?a"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "OPTIONS"), P_SCHEME, P_AUTH, F(":path", ""))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(F(":method", "OPTIONS"), P_SCHEME, P_AUTH, F(":path", "/"))), 0);
}
END_TEST

START_TEST(test_scheme)
{
    ck_assert_int_eq(run(HEAD(P_METHOD, F(":scheme", "http"), P_AUTH, P_PATH)), 0);
    ck_assert(str_is(H.scheme, "http"));
    ck_assert_int_eq(run(HEAD(P_METHOD, F(":scheme", "https"), P_AUTH, P_PATH)), 0);
    ck_assert(str_is(H.scheme, "https"));

    static const char *const bad[] = {"ftp", "", "httpx", "http:", "htt", "ws", "https\t1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        field_t fs[] = {P_METHOD, {":scheme", 7, bad[i], strlen(bad[i])}, P_AUTH, P_PATH, END};
        int rc = run(fs);
        ck_assert_msg(rc == -400, ":scheme \"%s\": %d, not -400", bad[i], rc);
    }
}
END_TEST

/* --------------------------------------------------- Host and :authority */

START_TEST(test_host_and_authority)
{
    /* :authority alone */
    ck_assert_int_eq(run(HEAD(STD)), 0);
    ck_assert(str_is(H.authority, "example.com"));
    ck_assert_uint_eq(count_field("host", NULL), 0);
    /* both, agreeing (host names are case-insensitive); Host is not kept */
    ck_assert_int_eq(run(HEAD(STD, F("host", "example.com"))), 0);
    ck_assert(str_is(H.authority, "example.com"));
    ck_assert_uint_eq(count_field("host", NULL), 0);
    ck_assert_int_eq(run(HEAD(STD, F("host", "EXAMPLE.com"))), 0);
    ck_assert(str_is(H.authority, "example.com"));
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, F(":authority", "a.example:8080"), P_PATH,
                              F("host", "a.example:8080"))),
                     0);
    ck_assert(str_is(H.authority, "a.example:8080"));
    /* Host alone becomes the authority */
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH, F("x-a", "1"), F("host", "h.example"))),
                     0);
    ck_assert(str_is(H.authority, "h.example"));
    ck_assert_uint_eq(count_field("host", NULL), 0);
    ck_assert(has_value("x-a", "1"));
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH, F("host", "[::1]:80"))), 0);
    ck_assert(str_is(H.authority, "[::1]:80"));

    /* disagreeing: malformed */
    ck_assert_int_eq(run(HEAD(STD, F("host", "other.example"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("host", "example.com:80"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("host", "example.co"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("host", "example.comm"))), H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("host", ""))), H2_MALFORMED);
    /* two Host fields */
    ck_assert_int_eq(run(HEAD(STD, F("host", "example.com"), F("host", "example.com"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH, F("host", "a"), F("host", "b"))),
                     H2_MALFORMED);

    /* neither: 400 */
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH)), -400);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH, F("x-host", "example.com"))), -400);
    /* an authority that is not one: 400 */
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, F(":authority", ""), P_PATH)), -400);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, F(":authority", "a b"), P_PATH)), -400);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, F(":authority", "a:99999"), P_PATH)), -400);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH, F("host", "a/b"))), -400);
    ck_assert_int_eq(run(HEAD(P_METHOD, P_SCHEME, P_PATH, F("host", ""))), -400);
}
END_TEST

/* ------------------------------------------------------- content-length */

START_TEST(test_content_length)
{
    ck_assert_int_eq(run(HEAD(STD)), 0);
    ck_assert_int_eq((int)H.content_length, -1);
    ck_assert_int_eq(run(HEAD(STD, F("content-length", "0"))), 0);
    ck_assert_int_eq((int)H.content_length, 0);
    ck_assert_int_eq(run(HEAD(STD, F("content-length", "42"))), 0);
    ck_assert_int_eq((int)H.content_length, 42);
    ck_assert_int_eq(run(HEAD(STD, F("content-length", "9223372036854775807"))), 0);
    ck_assert(H.content_length == INT64_MAX);
    /* the length is the head's, not a field passed on as such */
    ck_assert_uint_eq(count_field("content-length", NULL), 0);

    static const char *const bad[] = {"", "abc", "-1", "+1", "1.0", "0x10", "1,1", "1, 1",
                                      "1 1", "12a", "\xd9\xa1", "9223372036854775808",
                                      "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        field_t fs[] = {STD, {"content-length", 14, bad[i], strlen(bad[i])}, END};
        ck_assert_msg(run(fs) == H2_MALFORMED, "content-length \"%s\" accepted", bad[i]);
    }
}
END_TEST

START_TEST(test_content_length_twice)
{
    ck_assert_int_eq(run(HEAD(STD, F("content-length", "5"), F("content-length", "5"))), 0);
    ck_assert_int_eq((int)H.content_length, 5);
    ck_assert_int_eq(run(HEAD(STD, F("content-length", "0"), F("x-a", "1"),
                              F("content-length", "0"))),
                     0);
    ck_assert_int_eq((int)H.content_length, 0);

    ck_assert_int_eq(run(HEAD(STD, F("content-length", "5"), F("content-length", "6"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("content-length", "0"), F("content-length", "1"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("content-length", "5"), F("content-length", "5"),
                              F("content-length", "50"))),
                     H2_MALFORMED);
    ck_assert_int_eq(run(HEAD(STD, F("content-length", "5"), F("content-length", "x"))),
                     H2_MALFORMED);
}
END_TEST

/* -------------------------------------------------------------- cookies */

START_TEST(test_cookie_join)
{
    ck_assert_int_eq(run(HEAD(STD, F("x-a", "1"))), 0);
    ck_assert_uint_eq(count_field("cookie", NULL), 0);

    ck_assert_int_eq(run(HEAD(STD, F("cookie", "a=1"))), 0);
    ck_assert(has_value("cookie", "a=1"));

    ck_assert_int_eq(run(HEAD(STD, F("cookie", "a=1"), F("x-a", "1"), F("cookie", "b=2"),
                              F("x-b", "2"), F("cookie", "c=3"))),
                     0);
    ck_assert(has_value("cookie", "a=1; b=2; c=3"));
    ck_assert_uint_eq(H.fields.n, 3);
    /* the other fields keep their order */
    ck_assert(str_is(H.fields.v[0].name, "x-a"));
    ck_assert(str_is(H.fields.v[1].name, "x-b"));

    /* joined in the order they came, whatever their content */
    ck_assert_int_eq(run(HEAD(STD, F("cookie", "z=9"), F("cookie", "a=1"))), 0);
    ck_assert(has_value("cookie", "z=9; a=1"));
    ck_assert_int_eq(run(HEAD(STD, F("cookie", "s=x; t=y"), F("cookie", "u=z"))), 0);
    ck_assert(has_value("cookie", "s=x; t=y; u=z"));

    /* many crumbs */
    h2_head_init(&H);
    field_t std[] = {STD, END};
    for (const field_t *f = std; f->n; f++)
        ck_assert_int_eq(add_to(&H, f, 0), 0);
    char want[4096] = "", crumb[16];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(crumb, sizeof(crumb), "k%d=v%d", i, i);
        ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("cookie"), (weir_str_t){crumb, (size_t)n},
                                       0),
                         0);
        if (i)
            strcat(want, "; ");
        strcat(want, crumb);
    }
    ck_assert_int_eq(h2_head_finish(A, &H), 0);
    ck_assert(has_value("cookie", want));
}
END_TEST

/* ----------------------------------------------------- header-list size */

START_TEST(test_list_size_limit)
{
    const field_t *head = HEAD(STD, F("x-a", "0123456789"), F("cookie", "a=1"));
    size_t size = list_size(head);
    ck_assert_uint_eq(size, 7 + 3 + 32 + 7 + 5 + 32 + 10 + 11 + 32 + 5 + 1 + 32 + 3 + 10 + 32 +
                                6 + 3 + 32);

    ck_assert_int_eq(run_max(head, size), 0); /* "at most": the limit itself is fine */
    ck_assert_uint_eq(H.list_size, size);
    ck_assert_int_eq(run_max(head, size + 1), 0);
    ck_assert_int_eq(run_max(head, size - 1), -431);
    ck_assert_int_eq(run_max(head, 1), -431);
    /* 0: no limit */
    static char big[100000];
    memset(big, 'v', sizeof(big));
    field_t fs[] = {STD, {"x-big", 5, big, sizeof(big)}, END};
    ck_assert_int_eq(run_max(fs, 0), 0);
    ck_assert_uint_eq(H.list_size, list_size(fs));
    ck_assert_int_eq(run_max(fs, list_size(fs) - 1), -431);
    /* the pseudo-fields count too */
    ck_assert_int_eq(run_max(HEAD(STD), list_size(HEAD(STD)) - 1), -431);
    ck_assert_int_eq(run_max(HEAD(STD), list_size(HEAD(STD))), 0);
    /* a field over the limit is 431 whatever it holds */
    ck_assert_int_eq(run_max(HEAD(STD, F("connection", "close")), list_size(HEAD(STD))), -431);
}
END_TEST

/* --------------------------------------- the first error, and then none */

START_TEST(test_fields_after_error_ignored)
{
    field_t std[] = {STD, END};

    /* a malformed field: later ones change nothing */
    h2_head_init(&H);
    ck_assert_int_eq(add_to(&H, &std[0], 0), 0);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("connection"), WEIR_STR("close"), 0),
                     H2_MALFORMED);
    ck_assert_int_eq(H.error, H2_MALFORMED);
    size_t size = H.list_size;
    unsigned seen = H.pseudo_seen;
    for (const field_t *f = std + 1; f->n; f++)
        ck_assert_int_eq(add_to(&H, f, 0), H2_MALFORMED);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("x-a"), WEIR_STR("1"), 0), H2_MALFORMED);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("cookie"), WEIR_STR("a=1"), 0), H2_MALFORMED);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("content-length"), WEIR_STR("3"), 0),
                     H2_MALFORMED);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("host"), WEIR_STR("example.com"), 0),
                     H2_MALFORMED);
    /* not even the size limit is looked at any more */
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("x-b"), WEIR_STR("2"), 1), H2_MALFORMED);
    ck_assert_uint_eq(H.list_size, size);
    ck_assert_uint_eq(H.pseudo_seen, seen);
    ck_assert_uint_eq(H.fields.n, 0);
    ck_assert_uint_eq(H.cookies, 0);
    ck_assert_ptr_null(H.host.data);
    ck_assert_ptr_null(H.path.data);
    ck_assert_int_eq((int)H.content_length, -1);
    ck_assert_int_eq(h2_head_finish(A, &H), H2_MALFORMED);
    ck_assert_int_eq(h2_head_finish(A, &H), H2_MALFORMED);

    /* 431 first: a later malformed field does not replace it */
    h2_head_init(&H);
    for (const field_t *f = std; f->n; f++)
        ck_assert_int_eq(add_to(&H, f, 200), 0);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("x-a"), WEIR_STR("0123456789012345678901234567890123456789"), 200),
                     -431);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("Bad"), WEIR_STR("x"), 200), -431);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR(":method"), WEIR_STR("POST"), 200), -431);
    ck_assert(str_is(H.method, "GET"));
    ck_assert_uint_eq(H.fields.n, 0);
    ck_assert_int_eq(h2_head_finish(A, &H), -431);

    /* malformed first: a later oversize field does not replace it */
    h2_head_init(&H);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR(":status"), WEIR_STR("200"), 100),
                     H2_MALFORMED);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("x-a"), WEIR_STR("0123456789012345678901234567890123456789012345678901234567890123456789"), 100),
                     H2_MALFORMED);
    ck_assert_int_eq(h2_head_finish(A, &H), H2_MALFORMED);

    /* a head that is fine and then gets one bad field is refused at the end */
    h2_head_init(&H);
    for (const field_t *f = std; f->n; f++)
        ck_assert_int_eq(add_to(&H, f, 0), 0);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("x-a"), WEIR_STR("1"), 0), 0);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("x-b"), WEIR_STR(" 2"), 0), H2_MALFORMED);
    ck_assert_int_eq(h2_head_field(A, &H, WEIR_STR("x-c"), WEIR_STR("3"), 0), H2_MALFORMED);
    ck_assert_uint_eq(H.fields.n, 1);
    ck_assert_int_eq(h2_head_finish(A, &H), H2_MALFORMED);
}
END_TEST

/* The arena refuses: the field fails (500), it does not crash or keep a
 * half-made head. */
START_TEST(test_arena_exhausted)
{
    struct arena *small = arena_new(256, 256);
    h2_head_init(&H);
    int rc = 0;
    static char big[1024];
    memset(big, 'v', sizeof(big));
    rc = h2_head_field(small, &H, WEIR_STR("x-a"), (weir_str_t){big, sizeof(big)}, 0);
    ck_assert_int_eq(rc, -500);
    ck_assert_int_eq(h2_head_finish(small, &H), -500);
    arena_free(small);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("h2_request");
    TCase *tc = tcase_create("head");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_init);
    tcase_add_test(tc, test_plain_head_copied);
    tcase_add_test(tc, test_arena_exhausted);
    suite_add_tcase(s, tc);

    tc = tcase_create("fields");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_names_lowercase);
    tcase_add_test(tc, test_values_no_cr_lf_nul);
    tcase_add_test(tc, test_values_whitespace_ends);
    tcase_add_test(tc, test_connection_specific);
    tcase_add_test(tc, test_te_trailers_only);
    suite_add_tcase(s, tc);

    tc = tcase_create("pseudo");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_pseudo_before_regular);
    tcase_add_test(tc, test_pseudo_once);
    tcase_add_test(tc, test_pseudo_known_only);
    tcase_add_test(tc, test_pseudo_required);
    tcase_add_test(tc, test_path_forms);
    tcase_add_test(tc, test_scheme);
    suite_add_tcase(s, tc);

    tc = tcase_create("host");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_host_and_authority);
    suite_add_tcase(s, tc);

    tc = tcase_create("length_cookies_size");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_content_length);
    tcase_add_test(tc, test_content_length_twice);
    tcase_add_test(tc, test_cookie_join);
    tcase_add_test(tc, test_list_size_limit);
    tcase_add_test(tc, test_fields_after_error_ignored);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
