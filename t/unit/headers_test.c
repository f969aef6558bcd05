/*
 * Module headers, its pure part (modules/headers/header_ops.c): name and value
 * checks, reading rule sets from real YAML nodes (positions and messages of
 * every refusal), and applying rules to the core's real header lists, with
 * templates rendered by the core's template code.
 *
 * Each test runs in a forked child with a fresh config, request arena and
 * temp directory, so messages name "weir.yaml" as a user would see them.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "conf.h"
#include "request.h"
#include "vars.h"

#include "headers/header_ops.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------- harness */

static weir_conf_t *cf;
static struct weir_request req;
static weir_request_t *const R = &req;
static char tmpdir[256];

static int set_out(weir_str_t *out, const char *s)
{
    *out = (weir_str_t){.data = s, .len = strlen(s)};
    return 0;
}

#define GETTER(fn, value)                                                                       \
    static int fn(weir_request_t *r, weir_str_t suffix, weir_str_t *out)                        \
    {                                                                                           \
        (void)r;                                                                                \
        (void)suffix;                                                                           \
        return set_out(out, value);                                                             \
    }

GETTER(get_host, "example.com")
GETTER(get_remote_addr, "192.0.2.7")
GETTER(get_crlf, "evil\r\nX-Injected: 1")
GETTER(get_ctl, "a\x01z")
GETTER(get_spaced, " \tpadded value\t ")

static int get_unset(weir_request_t *r, weir_str_t suffix, weir_str_t *out)
{
    (void)r;
    (void)suffix;
    (void)out;
    return 1;
}

/* $http_<name> from the request's own header list, so tests see which state
 * of the list a value was rendered from. The suffix comes lowercased with
 * '_' turned into '-'. */
static int get_http(weir_request_t *r, weir_str_t suffix, weir_str_t *out)
{
    return weir_headers_get(weir_request_headers(r), suffix, out) ? 0 : 1;
}

static void setup(void)
{
    static const struct {
        const char *name;
        unsigned flags;
        weir_var_get_fn get;
    } defs[] = {
        {"host", 0, get_host},     {"remote_addr", 0, get_remote_addr},
        {"crlf", 0, get_crlf},     {"ctl", 0, get_ctl},
        {"spaced", 0, get_spaced}, {"unset_var", 0, get_unset},
        {"http_", WEIR_VAR_PREFIX, get_http},
    };

    snprintf(tmpdir, sizeof(tmpdir), "%s/weir-headers-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    ck_assert_int_eq(chdir(tmpdir), 0);
    cf = calloc(1, sizeof(*cf));
    ck_assert_ptr_nonnull(cf);
    cf->arena = arena_new(4096, 0);
    cf->file = "weir.yaml";
    cf->errors_tail = &cf->errors;
    ck_assert_int_eq(vars_init(cf), 0);
    for (size_t i = 0; i < N(defs); i++)
        ck_assert_int_eq(weir_var_register(cf, defs[i].name, defs[i].flags, defs[i].get), 0);
    memset(&req, 0, sizeof(req));
    req.arena = arena_new(4096, 0);
    req.cf = cf;
}

static void teardown(void)
{
    arena_free(req.arena);
    arena_free(cf->arena);
    free(cf);
    unlink("weir.yaml");
    rmdir(tmpdir);
}

/* Reads YAML text and parses its key `h` as a rule set for `side`. */
static int parse_yaml(const char *yaml, enum header_side side, struct header_rules *out)
{
    FILE *fp = fopen("weir.yaml", "w");
    const weir_node_t *root, *h;

    ck_assert_ptr_nonnull(fp);
    fputs(yaml, fp);
    fclose(fp);
    root = conf_yaml_read(cf, "weir.yaml");
    ck_assert_msg(root != NULL, "YAML: %s", cf->errors ? cf->errors->msg : "?");
    h = weir_node_get(root, "h");
    ck_assert_ptr_nonnull(h);
    return header_rules_parse(cf, h, "h", side, out);
}

static const char *first_error(void)
{
    return cf->errors ? cf->errors->msg : "(no error)";
}

/* The live entries of a list as "Name: value|Name: value". */
static const char *dump(const weir_headers_t *h)
{
    static char buf[2048];
    size_t len = 0;
    weir_str_t n, v;

    buf[0] = '\0';
    for (size_t i = 0; i < weir_headers_count(h); i++) {
        if (!weir_headers_at(h, i, &n, &v))
            continue;
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%.*s: %.*s", len ? "|" : "",
                                (int)n.len, n.data, (int)v.len, v.data);
        ck_assert_uint_lt(len, sizeof(buf));
    }
    return buf;
}

static void fill(weir_headers_t *h, const char *const *pairs)
{
    for (size_t i = 0; pairs[i] != NULL; i += 2)
        ck_assert_int_eq(weir_headers_add(R, h, (weir_str_t){pairs[i], strlen(pairs[i])},
                                          (weir_str_t){pairs[i + 1], strlen(pairs[i + 1])}),
                         0);
}

struct drops {
    int n;
    char names[256];
};

static void count_drop(void *arg, const struct header_op *op)
{
    struct drops *d = arg;
    size_t len = strlen(d->names);

    d->n++;
    snprintf(d->names + len, sizeof(d->names) - len, "%s%s", len ? "," : "", op->name.data);
}

/* ----------------------------------------------------------------- names */

static const struct ncase {
    const char *name;
    int side_mask; /* 1: refused on requests, 2: refused on responses */
    const char *why;  /* substring of the reason, or NULL */
} name_cases[] = {
    {"X-Foo", 0, NULL},
    {"x_custom_header", 0, NULL},
    {"!#$%&'*+-.^_`|~09azAZ", 0, NULL},
    {"Cache-Control", 0, NULL},
    {"Expect", 0, NULL},
    {"Hosts", 0, NULL},
    {"Connections", 0, NULL},
    {"Content-Type", 0, NULL},
    {"", 3, "empty header name"},
    {"X Foo", 3, "' ' at offset 1 is not a token character"},
    {"X:Foo", 3, "':' at offset 1"},
    {"X\"", 3, "'\"' at offset 1"},
    {"(x)", 3, "'(' at offset 0"},
    {"X-\xc3\xa9", 3, "byte 0xc3 at offset 2"},
    {"X\x01", 3, "byte 0x01 at offset 1"},
    {"Connection", 3, "'Connection' is a hop-by-hop header"},
    {"connection", 3, "hop-by-hop"},
    {"Keep-Alive", 3, "hop-by-hop"},
    {"Proxy-Connection", 3, "hop-by-hop"},
    {"TE", 3, "hop-by-hop"},
    {"te", 3, "hop-by-hop"},
    {"Trailer", 3, "hop-by-hop"},
    {"Upgrade", 3, "hop-by-hop"},
    {"UPGRADE", 3, "hop-by-hop"},
    {"Transfer-Encoding", 3, "message framing"},
    {"Content-Length", 3, "message framing"},
    {"content-length", 3, "delete this entry"},
    {"Transfer_Encoding", 3, "spells Transfer-Encoding with '_'"},
    {"Connection_", 3, "spells Connection with '_'"},
    {"_keep_alive", 3, "spells Keep-Alive with '_'"},
    {"content_length", 3, "spells Content-Length with '_'"},
    {"T_E", 3, "spells TE with '_'"},
    {"X_Transfer_Encoding", 0, NULL},
    {"Host", 0, NULL},
    {"HOST", 0, NULL},
};

START_TEST(test_names)
{
    for (size_t i = 0; i < N(name_cases); i++) {
        const struct ncase *c = &name_cases[i];

        for (int side = 0; side < 2; side++) {
            char why[512] = "";
            int want = (c->side_mask & (1 << side)) ? -1 : 0;
            int got = header_name_check((enum header_side)side, c->name, strlen(c->name), why,
                                        sizeof(why));

            ck_assert_msg(got == want, "'%s' side %d: got %d (%s), want %d", c->name, side, got,
                          why, want);
            if (want < 0 && c->why != NULL)
                ck_assert_msg(strstr(why, c->why) != NULL, "'%s': reason '%s' lacks '%s'",
                              c->name, why, c->why);
        }
    }
}
END_TEST

/* A reason never overflows the caller's buffer, however long the name. */
START_TEST(test_name_reason_truncated)
{
    char name[600], why[64];

    memset(name, 'a', sizeof(name));
    name[10] = ' ';
    memset(why, 'Z', sizeof(why));
    ck_assert_int_eq(header_name_check(HEADER_SIDE_REQUEST, name, sizeof(name), why, 32), -1);
    ck_assert_uint_eq(strlen(why), 31);
    ck_assert_int_eq(why[40], 'Z');
}
END_TEST

/* ---------------------------------------------------------------- values */

static const struct vcase {
    const char *text;
    int ok;
    const char *why;
} value_cases[] = {
    {"plain", 1, NULL},
    {"$host", 1, NULL},
    {"${host}:8080", 1, NULL},
    {"costs $$1", 1, NULL},
    {"$$${host}", 1, NULL},
    {"tab\there", 1, NULL},
    {"caf\xc3\xa9", 1, NULL},
    {"", 1, NULL},
    {"a\r\nX-Evil: 1", 0, "control character 0x0d at offset 1"},
    {"line\n", 0, "0x0a at offset 4"},
    {"del\x7f", 0, "0x7f"},
    {"bell\x07", 0, "0x07"},
    {"$1", 0, "'$1' at offset 0 refers to a regex capture"},
    {"x ${2}", 0, "'$2' at offset 2"},
    {"$$$3", 0, "'$3' at offset 2"},
};

START_TEST(test_value_text)
{
    for (size_t i = 0; i < N(value_cases); i++) {
        const struct vcase *c = &value_cases[i];
        char why[512] = "";
        int got = header_value_text_check(c->text, why, sizeof(why));

        ck_assert_msg(got == (c->ok ? 0 : -1), "case %zu: got %d (%s)", i, got, why);
        if (!c->ok)
            ck_assert_msg(strstr(why, c->why) != NULL, "case %zu: '%s' lacks '%s'", i, why,
                          c->why);
    }
}
END_TEST

static const struct ccase {
    const char *in;
    size_t len; /* 0: strlen */
    const char *want; /* NULL: refused */
} clean_cases[] = {
    {"v", 0, "v"},
    {"  v  ", 0, "v"},
    {"\t a b \t", 0, "a b"},
    {"   ", 0, ""},
    {"", 0, ""},
    {"a\tb", 0, "a\tb"},
    {"\xff\x80", 0, "\xff\x80"},
    {"a\rb", 0, NULL},
    {"a\nb", 0, NULL},
    {"a\0b", 3, NULL},
    {"a\x1f", 0, NULL},
    {"\x7f", 0, NULL},
};

START_TEST(test_value_clean)
{
    for (size_t i = 0; i < N(clean_cases); i++) {
        const struct ccase *c = &clean_cases[i];
        weir_str_t in = {c->in, c->len ? c->len : strlen(c->in)}, out = {NULL, 0};
        int got = header_value_clean(in, &out);

        if (c->want == NULL) {
            ck_assert_msg(got == -1, "case %zu accepted", i);
            continue;
        }
        ck_assert_msg(got == 0, "case %zu refused", i);
        ck_assert_msg(out.len == strlen(c->want) && memcmp(out.data, c->want, out.len) == 0,
                      "case %zu: got '%.*s' want '%s'", i, (int)out.len, out.data, c->want);
    }
}
END_TEST

/* --------------------------------------------------------------- parsing */

START_TEST(test_parse_order_and_shapes)
{
    struct header_rules rules;
    static const struct {
        enum header_op_kind kind;
        const char *name;
        int literal;
    } want[] = {
        {HEADER_OP_REMOVE, "X-Gone", 0},   {HEADER_OP_REMOVE, "Server", 0},
        {HEADER_OP_SET, "X-Host", 0},      {HEADER_OP_SET, "X-Num", 1},
        {HEADER_OP_ADD, "X-Multi", 1},     {HEADER_OP_ADD, "X-Multi", 0},
        {HEADER_OP_ADD, "x-multi", 1},     {HEADER_OP_ADD, "X-One", 1},
    };

    /* keys in reverse order: application order does not follow them */
    ck_assert_int_eq(parse_yaml("h:\n"
                                "  always: true\n"
                                "  add:\n"
                                "    X-Multi: [one, \"$host\"]\n"
                                "    x-multi: three\n"
                                "    X-One: \"\"\n"
                                "  set:\n"
                                "    X-Host: \"$host\"\n"
                                "    X-Num: 5\n"
                                "  remove: [X-Gone, Server]\n",
                                HEADER_SIDE_RESPONSE, &rules),
                     0);
    ck_assert_msg(cf->nerrors == 0, "%s", first_error());
    ck_assert_int_eq(rules.always, 1);
    ck_assert_uint_eq(rules.nops, N(want));
    for (size_t i = 0; i < N(want); i++) {
        const struct header_op *op = &rules.ops[i];

        ck_assert_msg(op->kind == want[i].kind && strcmp(op->name.data, want[i].name) == 0 &&
                          op->name.len == strlen(want[i].name),
                      "op %zu: %d %s", i, op->kind, op->name.data);
        if (op->kind == HEADER_OP_REMOVE)
            ck_assert_ptr_null(op->value);
        else
            ck_assert_int_eq(weir_template_is_literal(op->value), want[i].literal);
    }

    /* a lone scalar under remove, no `always` on the request side */
    ck_assert_int_eq(parse_yaml("h: {remove: X-A, set: {Host2: h}}\n", HEADER_SIDE_REQUEST,
                                &rules),
                     0);
    ck_assert_uint_eq(rules.nops, 2);
    ck_assert_int_eq(rules.always, 0);

    /* null and empty mappings: no rules at all (a route uses them to turn the
     * top-level rules off) */
    ck_assert_int_eq(parse_yaml("h:\n", HEADER_SIDE_REQUEST, &rules), 0);
    ck_assert_uint_eq(rules.nops, 0);
    ck_assert_int_eq(parse_yaml("h: {}\n", HEADER_SIDE_RESPONSE, &rules), 0);
    ck_assert_uint_eq(rules.nops, 0);
    ck_assert_int_eq(parse_yaml("h: {set: {}, add: ~, remove: []}\n", HEADER_SIDE_RESPONSE,
                                &rules),
                     0);
    ck_assert_uint_eq(rules.nops, 0);
    ck_assert_uint_eq(cf->nerrors, 0);

    /* Host is fine in response rules */
    ck_assert_int_eq(parse_yaml("h: {set: {Host: x}}\n", HEADER_SIDE_RESPONSE, &rules), 0);
}
END_TEST

static const struct ecase {
    const char *yaml;
    enum header_side side;
    const char *want; /* the whole first message, from "weir.yaml:" */
} parse_errors[] = {
    {"h:\n  set:\n    Connection: close\n", HEADER_SIDE_REQUEST,
     "weir.yaml:3:5: h.set: 'Connection' is a hop-by-hop header: weir removes it both ways and "
     "writes its own for each connection (keepalive is managed per side); header rules cannot "
     "set, add or remove it: delete this entry"},
    {"h:\n  remove: [X-A, Transfer-Encoding]\n", HEADER_SIDE_RESPONSE,
     "weir.yaml:2:17: h.remove: 'Transfer-Encoding' is message framing: weir writes its own "
     "Content-Length or chunked framing for each side from the body it actually sends; header "
     "rules cannot set, add or remove it: delete this entry"},
    {"h:\n  add:\n    Keep_Alive: x\n", HEADER_SIDE_RESPONSE,
     "weir.yaml:3:5: h.add: 'Keep_Alive' spells Keep-Alive with '_', which weir never forwards "
     "(some servers read '_' as '-'); delete this entry"},
    {"h:\n  set:\n    X-A: \"$hots\"\n", HEADER_SIDE_REQUEST,
     "weir.yaml:3:11: unknown variable '$hots' in '$hots' (did you mean '$host'?)"},
    {"h:\n  add:\n    X-A: [ok, \"$http_x_a $nosuchvariable\"]\n", HEADER_SIDE_RESPONSE,
     "weir.yaml:3:26: unknown variable '$nosuchvariable' in '$http_x_a $nosuchvariable'"},
    {"h:\n  set:\n    X-A: \"a\\r\\nX-B: 1\"\n", HEADER_SIDE_REQUEST,
     "weir.yaml:3:10: h.set: value of 'X-A': control character 0x0d at offset 1: a header value "
     "is one line of visible text (CR, LF and other control characters are refused)"},
    {"h:\n  set:\n    X-A: \"$1\"\n", HEADER_SIDE_REQUEST,
     "weir.yaml:3:10: h.set: value of 'X-A': '$1' at offset 0 refers to a regex capture, which "
     "header values do not have; write '$$' for a literal '$'"},
    {"h:\n  set:\n    \"X A\": v\n", HEADER_SIDE_REQUEST,
     "weir.yaml:3:5: h.set: 'X A' is not a valid header name: ' ' at offset 1 is not a token "
     "character (RFC 9110 section 5.1: letters, digits and !#$%&'*+-.^_`|~)"},
    {"h:\n  set:\n    X-A: 1\n    x-a: 2\n", HEADER_SIDE_REQUEST,
     "weir.yaml:4:5: h.set: 'x-a' is listed twice (as 'X-A')"},
    {"h:\n  remove: [X-A, x-a]\n", HEADER_SIDE_REQUEST,
     "weir.yaml:2:17: h.remove: 'x-a' is listed twice (as 'X-A')"},
    {"h:\n  set:\n    X-A:\n", HEADER_SIDE_REQUEST,
     "weir.yaml:3:9: h.set: 'X-A' has no value (write a value, or list the name under remove)"},
    {"h:\n  set:\n    X-A: [a, b]\n", HEADER_SIDE_REQUEST,
     "weir.yaml:3:10: h.set: the value of 'X-A' must be a string"},
    {"h:\n  add:\n    X-A: {a: b}\n", HEADER_SIDE_REQUEST,
     "weir.yaml:3:10: h.add: the value of 'X-A' must be a string or a list of strings"},
    {"h:\n  add:\n    X-A: []\n", HEADER_SIDE_REQUEST,
     "weir.yaml:3:10: h.add: 'X-A' has an empty list of values"},
    {"h:\n  sett: {X-A: b}\n", HEADER_SIDE_REQUEST,
     "weir.yaml:2:3: h: unknown key 'sett' (expected set, add, remove)"},
    {"h:\n  sett: {X-A: b}\n", HEADER_SIDE_RESPONSE,
     "weir.yaml:2:3: h: unknown key 'sett' (expected set, add, remove or always)"},
    {"h:\n  always: true\n", HEADER_SIDE_REQUEST,
     "weir.yaml:2:3: h: 'always' belongs to response_headers (it applies the rules to answers "
     "weir makes itself too)"},
    {"h: [set]\n", HEADER_SIDE_REQUEST,
     "weir.yaml:1:4: h: expected a mapping {set: {...}, add: {...}, remove: [...]}"},
    {"h:\n  set: [X-A]\n", HEADER_SIDE_REQUEST,
     "weir.yaml:2:8: h.set: expected a mapping {Header-Name: value, ...}"},
    {"h:\n  remove: {X-A: 1}\n", HEADER_SIDE_REQUEST,
     "weir.yaml:2:11: h.remove: expected a list of header names"},
    {"h:\n  remove: [[X-A]]\n", HEADER_SIDE_REQUEST,
     "weir.yaml:2:12: h.remove: expected a header name"},
};

START_TEST(test_parse_errors)
{
    const struct ecase *c = &parse_errors[_i];
    struct header_rules rules;

    ck_assert_int_eq(parse_yaml(c->yaml, c->side, &rules), -1);
    ck_assert_uint_ge(cf->nerrors, 1);
    ck_assert_msg(strcmp(first_error(), c->want) == 0, "case %d:\n got: %s\nwant: %s", _i,
                  first_error(), c->want);
}
END_TEST

/* One run reports every problem, not just the first. */
START_TEST(test_parse_errors_accumulate)
{
    struct header_rules rules;
    const conf_error_t *e;
    static const char *const want[] = {
        "weir.yaml:3:5: h.set: 'Connection'",
        "weir.yaml:4:11: unknown variable '$nope'",
        "weir.yaml:6:12: h.remove: 'Content-Length'",
        "weir.yaml:7:3: h: unknown key 'bogus'",
    };
    size_t i = 0;

    ck_assert_int_eq(parse_yaml("h:\n"
                                "  set:\n"
                                "    Connection: close\n"
                                "    X-A: \"$nope\"\n"
                                "    X-Ok: fine\n"
                                "  remove: [Content-Length, X-B]\n"
                                "  bogus: 1\n",
                                HEADER_SIDE_REQUEST, &rules),
                     -1);
    ck_assert_uint_eq(rules.nops, 0); /* nothing half-built is handed out */
    for (e = cf->errors; e != NULL; e = e->next, i++) {
        ck_assert_uint_lt(i, N(want));
        ck_assert_msg(strncmp(e->msg, want[i], strlen(want[i])) == 0, "error %zu: %s", i, e->msg);
    }
    ck_assert_uint_eq(i, N(want));
}
END_TEST

/* -------------------------------------------------------------- applying */

static struct header_op op(enum header_op_kind kind, const char *name)
{
    return (struct header_op){.kind = kind, .name = {name, strlen(name)}};
}

START_TEST(test_apply_order)
{
    weir_headers_t *h = weir_request_headers(R);
    static const char *const start[] = {
        "Host", "a.test", "X-Keep", "1", "X-Dup", "one", "x-dup", "two", "X-Gone", "g",
        "X-Add", "first", "x-gone", "G", NULL,
    };
    /* removes, then sets, then adds, as header_rules_parse orders them */
    struct header_op ops[] = {
        op(HEADER_OP_REMOVE, "X-Gone"), op(HEADER_OP_REMOVE, "X-Absent"),
        op(HEADER_OP_SET, "X-Dup"),     op(HEADER_OP_SET, "X-New"),
        op(HEADER_OP_SET, "X-Keep"),    op(HEADER_OP_ADD, "X-Add"),
        op(HEADER_OP_ADD, "X-Add"),     op(HEADER_OP_ADD, "X-Dup"),
    };
    weir_str_t values[] = {
        {0}, {0}, WEIR_STR("only"), WEIR_STR("  new  "), WEIR_STR("kept"), WEIR_STR("second"),
        WEIR_STR("third"), WEIR_STR("again"),
    };
    struct header_rules rules = {.ops = ops, .nops = N(ops)};
    struct drops d = {0};

    fill(h, start);
    ck_assert_int_eq(header_rules_apply(R, h, &rules, values, count_drop, &d), 0);
    /* set replaces every line of the name by one at the end; add appends
     * after whatever is there; names compare without case */
    ck_assert_str_eq(dump(h), "Host: a.test|X-Add: first|X-Dup: only|X-New: new|X-Keep: kept|"
                              "X-Add: second|X-Add: third|X-Dup: again");
    ck_assert_int_eq(d.n, 0);
}
END_TEST

START_TEST(test_apply_empty_and_invalid)
{
    weir_headers_t *h = weir_request_headers(R);
    static const char *const start[] = {
        "X-Empty-Set", "client", "X-Bad-Set", "client", "X-Bad-Add", "client",
        "X-Ctl", "client", NULL,
    };
    struct header_op ops[] = {
        op(HEADER_OP_SET, "X-Empty-Set"), op(HEADER_OP_SET, "X-Bad-Set"),
        op(HEADER_OP_SET, "X-Ctl"),       op(HEADER_OP_ADD, "X-Empty-Add"),
        op(HEADER_OP_ADD, "X-Bad-Add"),   op(HEADER_OP_ADD, "X-Fine"),
    };
    weir_str_t values[] = {
        WEIR_STR(" \t "), WEIR_STR("a\r\nX-Injected: 1"), {"a\0b", 3}, WEIR_STR(""),
        WEIR_STR("x\ny"), WEIR_STR("ok"),
    };
    struct header_rules rules = {.ops = ops, .nops = N(ops)};
    struct drops d = {0};

    fill(h, start);
    ck_assert_int_eq(header_rules_apply(R, h, &rules, values, count_drop, &d), 0);
    /* an empty value sends no header (set removes the client's); a bad one is
     * dropped and reported, and set still removes the client's line, so an
     * invalid rendering can never leave the client's value in place */
    ck_assert_str_eq(dump(h), "X-Bad-Add: client|X-Fine: ok");
    ck_assert_int_eq(d.n, 3);
    ck_assert_str_eq(d.names, "X-Bad-Set,X-Ctl,X-Bad-Add");
    /* no callback is fine too */
    ck_assert_int_eq(header_rules_apply(R, h, &rules, values, NULL, NULL), 0);
}
END_TEST

/* Values render against the message as it arrived, before any op runs. */
START_TEST(test_run_renders_first)
{
    weir_headers_t *h = weir_request_headers(R);
    static const char *const start[] = {
        "X-Orig", "from-client", "X-Forwarded-For", "203.0.113.9", "X-Swap-A", "a",
        "X-Swap-B", "b", NULL,
    };
    struct header_rules rules;
    struct drops d = {0};

    fill(h, start);
    ck_assert_int_eq(parse_yaml("h:\n"
                                "  remove: [X-Orig]\n"
                                "  set:\n"
                                "    X-Copy: \"$http_x_orig\"\n"
                                "    X-Forwarded-For: \"$http_x_forwarded_for, $remote_addr\"\n"
                                "    X-Swap-A: \"$http_x_swap_b\"\n"
                                "    X-Swap-B: \"$http_x_swap_a\"\n"
                                "    X-Unset: \"$unset_var\"\n"
                                "    X-Spaced: \"$spaced\"\n"
                                "    X-Bad: \"$crlf\"\n"
                                "  add:\n"
                                "    X-Seen: \"$http_x_copy|$http_x_orig\"\n"
                                "    X-Ctl: [\"$ctl\", \"host=${host}\"]\n",
                                HEADER_SIDE_REQUEST, &rules),
                     0);
    ck_assert_int_eq(header_rules_run(R, h, &rules, count_drop, &d), 0);
    ck_assert_str_eq(dump(h), "X-Copy: from-client|X-Forwarded-For: 203.0.113.9, 192.0.2.7|"
                              "X-Swap-A: b|X-Swap-B: a|X-Spaced: padded value|"
                              "X-Seen: |from-client|X-Ctl: host=example.com");
    ck_assert_str_eq(d.names, "X-Bad,X-Ctl");
}
END_TEST

START_TEST(test_run_nothing)
{
    weir_headers_t *h = weir_request_headers(R);
    static const char *const start[] = {"A", "1", NULL};
    struct header_rules none = {0};

    fill(h, start);
    ck_assert_int_eq(header_rules_run(R, h, &none, NULL, NULL), 0);
    ck_assert_str_eq(dump(h), "A: 1");
}
END_TEST

/* Out of request memory is -1, never a crash. */
START_TEST(test_run_out_of_memory)
{
    weir_headers_t *h = weir_request_headers(R);
    struct header_rules rules;
    int rc = 0;

    ck_assert_int_eq(parse_yaml("h: {add: {X-A: \"$host $host $host\", X-B: \"$host\"}}\n",
                                HEADER_SIDE_REQUEST, &rules),
                     0);
    arena_free(req.arena);
    req.arena = arena_new(256, 512);
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = header_rules_run(R, h, &rules, NULL, NULL);
    ck_assert_int_eq(rc, -1);
}
END_TEST

static Suite *headers_suite(void)
{
    Suite *s = suite_create("headers");
    TCase *tc = tcase_create("header_ops");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_name_reason_truncated);
    tcase_add_test(tc, test_value_text);
    tcase_add_test(tc, test_value_clean);
    tcase_add_test(tc, test_parse_order_and_shapes);
    tcase_add_loop_test(tc, test_parse_errors, 0, (int)N(parse_errors));
    tcase_add_test(tc, test_parse_errors_accumulate);
    tcase_add_test(tc, test_apply_order);
    tcase_add_test(tc, test_apply_empty_and_invalid);
    tcase_add_test(tc, test_run_renders_first);
    tcase_add_test(tc, test_run_nothing);
    tcase_add_test(tc, test_run_out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(headers_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
