/*
 * Templates. Compiling resolves every variable to its getter (and a prefix
 * family's suffix) once and merges adjacent literal text, so rendering is a
 * walk over segments: evaluate the variables, add up the exact size, make one
 * request allocation, copy. A template without variables renders without
 * allocating at all.
 */
#include "vars.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"

enum seg_type { SEG_LIT, SEG_VAR, SEG_CAP };

struct seg {
    enum seg_type type;
    weir_str_t text; /* LIT: the bytes; VAR: the suffix for a prefix family */
    weir_var_get_fn get;
    unsigned cap; /* CAP: group number 0..9 */
};

struct weir_template {
    const char *source;
    struct seg *segs;
    size_t nsegs;
    size_t lit_len; /* bytes of literal text, the floor of every render */
    size_t ndyn;    /* VAR and CAP segments */
};

/* Values are gathered on the stack up to this many per template; a longer
 * template takes one more allocation for its value array. */
#define STACK_VALUES 48

static int ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

struct compile {
    weir_conf_t *cf;
    const weir_node_t *node;
    const char *text;
    weir_template_t *t;
    char *lit;             /* literal bytes of the whole template, conf arena */
    size_t lit_pos, lit_start;
    int failed;            /* an error was reported; compiling goes on to find the rest */
};

/* Reports a mistake at byte `at` of the text: at its own column where the
 * scalar's layout allows (conf_text_pos), else at the scalar. */
static void compile_error(struct compile *c, size_t at, const char *fmt, ...) WEIR_PRINTF(3, 4);
static void compile_error(struct compile *c, size_t at, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    weir_node_t pos = {.type = WEIR_NODE_SCALAR};

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->failed = 1;
    if (!c->node) {
        weir_conf_error(c->cf, NULL, "%s", msg);
        return;
    }
    pos.file = c->node->file;
    conf_text_pos(c->node, c->text, at, &pos.line, &pos.column);
    weir_conf_error(c->cf, &pos, "%s", msg);
}

static void flush_literal(struct compile *c)
{
    if (c->lit_pos == c->lit_start)
        return;
    c->t->segs[c->t->nsegs++] = (struct seg){
        .type = SEG_LIT,
        .text = {.data = c->lit + c->lit_start, .len = c->lit_pos - c->lit_start}};
    c->lit_start = c->lit_pos;
}

static void add_capture(struct compile *c, unsigned n)
{
    flush_literal(c);
    c->t->segs[c->t->nsegs++] = (struct seg){.type = SEG_CAP, .cap = n};
    c->t->ndyn++;
}

/* The variable `name` (len bytes) written at byte `at` of the text. */
static void add_variable(struct compile *c, size_t at, const char *name, size_t len)
{
    const var_def_t *v = vars_find(c->cf, name, len);
    if (!v) {
        const char *hint = vars_suggest(c->cf, name, len);
        if (hint)
            compile_error(c, at, "unknown variable '$%.*s' in '%s' (did you mean '$%s'?)",
                          (int)len, name, c->text, hint);
        else
            compile_error(c, at, "unknown variable '$%.*s' in '%s'", (int)len, name, c->text);
        return;
    }
    weir_str_t suffix = {.data = "", .len = 0};
    if (v->flags & WEIR_VAR_PREFIX) {
        /* computed once here so the getter gets it ready-made per request */
        char *s = arena_alloc(c->cf->arena, len - v->len + 1);
        if (!s) {
            compile_error(c, at, "out of memory compiling '%s'", c->text);
            return;
        }
        vars_suffix(v, name, len, s);
        suffix = (weir_str_t){.data = s, .len = len - v->len};
    }
    flush_literal(c);
    c->t->segs[c->t->nsegs++] = (struct seg){.type = SEG_VAR, .text = suffix, .get = v->get};
    c->t->ndyn++;
}

/* "${name}" at byte i; returns the byte after it. */
static size_t braced_reference(struct compile *c, size_t i, size_t len)
{
    const char *name = c->text + i + 2;
    const char *end = strchr(name, '}');
    if (!end) {
        compile_error(c, i, "unterminated '${' in '%s'", c->text);
        return len; /* the rest is all inside the braces */
    }
    size_t nlen = (size_t)(end - name);
    for (size_t k = 0; k < nlen; k++) {
        if (!ident_char(name[k])) {
            compile_error(c, i,
                          "'${%.*s}' in '%s' is not a variable name (letters, digits and '_')",
                          (int)nlen, name, c->text);
            return i + nlen + 3;
        }
    }
    if (nlen == 0)
        compile_error(c, i, "empty '${}' in '%s'", c->text);
    else if (nlen == 1 && name[0] >= '0' && name[0] <= '9')
        add_capture(c, (unsigned)(name[0] - '0'));
    else
        add_variable(c, i, name, nlen);
    return i + nlen + 3;
}

/* Every mistake of the text is reported, each at its own position, before
 * the template is refused: one `weir -t` shows them all. */
weir_template_t *weir_template_compile(weir_conf_t *cf, const weir_node_t *node, const char *text)
{
    if (!text && node && node->type == WEIR_NODE_SCALAR)
        text = node->scalar;
    if (!text) {
        weir_conf_error(cf, node, "expected a text value");
        return NULL;
    }
    size_t len = strlen(text), ndollar = 0;
    for (size_t i = 0; i < len; i++)
        ndollar += text[i] == '$';

    struct compile c = {.cf = cf, .node = node, .text = text};
    c.t = arena_alloc(cf->arena, sizeof(*c.t));
    /* each '$' ends at most one literal and starts one reference */
    if (c.t)
        c.t->segs = arena_alloc(cf->arena, (2 * ndollar + 1) * sizeof(struct seg));
    c.lit = arena_alloc_raw(cf->arena, len + 1);
    if (!c.t || !c.t->segs || !c.lit || !(c.t->source = arena_strndup(cf->arena, text, len))) {
        weir_conf_error(cf, node, "out of memory compiling '%s'", text);
        return NULL;
    }

    size_t i = 0;
    while (i < len) {
        if (text[i] != '$') {
            c.lit[c.lit_pos++] = text[i++];
            continue;
        }
        char n = i + 1 < len ? text[i + 1] : '\0';
        if (n == '$') {
            c.lit[c.lit_pos++] = '$';
            i += 2;
        } else if (n >= '0' && n <= '9') {
            add_capture(&c, (unsigned)(n - '0'));
            i += 2;
        } else if (n == '{') {
            i = braced_reference(&c, i, len);
        } else if (ident_char(n)) {
            /* like nginx, the name is the whole run of name characters;
             * "${host}name" separates a name from text that follows */
            size_t j = i + 1;
            while (j < len && ident_char(text[j]))
                j++;
            add_variable(&c, i, text + i + 1, j - i - 1);
            i = j;
        } else {
            compile_error(&c, i,
                          "'$' at offset %zu of '%s' is not followed by a variable name; write "
                          "'$$' for a literal '$'",
                          i, text);
            i++;
        }
    }
    if (c.failed)
        return NULL;
    flush_literal(&c);
    c.t->lit_len = c.lit_pos;
    return c.t;
}

int weir_template_is_literal(const weir_template_t *t)
{
    return t->ndyn == 0;
}

const char *template_source(const weir_template_t *t)
{
    return t->source;
}

/* Length of the well-formed UTF-8 sequence (2 to 4 bytes, no overlongs, no
 * surrogates, at most U+10FFFF) starting at s, or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (n == 0 || n > left || c > 0xf4)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

/* JSON string escaping of a value: quote, backslash, control bytes and DEL
 * are escaped; well-formed UTF-8 passes through; any other byte is escaped
 * as \u00XX (read as Latin-1), so a line is always valid JSON in UTF-8.
 * Returns the escaped length; writes to p unless p is NULL. */
static size_t json_escape(char *p, weir_str_t s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *d = (const unsigned char *)s.data;
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = d[i];
        char esc = 0;
        switch (ch) {
        case '"': esc = '"'; break;
        case '\\': esc = '\\'; break;
        case '\b': esc = 'b'; break;
        case '\f': esc = 'f'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        case '\t': esc = 't'; break;
        default: break;
        }
        size_t seq = ch >= 0x80 ? utf8_sequence(d + i, s.len - i) : 0;
        if (esc) {
            if (p) {
                p[n] = '\\';
                p[n + 1] = esc;
            }
            n += 2;
        } else if (seq) {
            if (p)
                memcpy(p + n, d + i, seq);
            n += seq;
            i += seq - 1;
        } else if (ch < 0x20 || ch >= 0x7f) {
            if (p) {
                memcpy(p + n, "\\u00", 4);
                p[n + 4] = hex[ch >> 4];
                p[n + 5] = hex[ch & 15];
            }
            n += 6;
        } else {
            if (p)
                p[n] = (char)ch;
            n++;
        }
    }
    return n;
}

static size_t json_len(weir_str_t s)
{
    return json_escape(NULL, s);
}

static char *json_copy(char *p, weir_str_t s)
{
    return p + json_escape(p, s);
}

static int render(weir_request_t *r, const weir_template_t *t, const weir_str_t *subject,
                  const size_t *ovector, size_t ncap, const char *unset_text, int escape_json,
                  weir_str_t *out)
{
    static const weir_str_t empty = {.data = "", .len = 0};
    weir_str_t stack[STACK_VALUES];
    weir_str_t *vals = stack;

    if (t->ndyn == 0) {
        /* the literal lives as long as the config: nothing to copy */
        *out = t->nsegs ? t->segs[0].text : empty;
        return 0;
    }
    if (t->ndyn > STACK_VALUES) {
        vals = weir_request_alloc(r, t->ndyn * sizeof(*vals));
        if (!vals)
            return -1;
    }
    weir_str_t unset = unset_text ? (weir_str_t){.data = unset_text, .len = strlen(unset_text)}
                                  : empty;

    size_t total = t->lit_len, k = 0;
    for (size_t i = 0; i < t->nsegs; i++) {
        const struct seg *s = &t->segs[i];
        weir_str_t v = empty;
        if (s->type == SEG_LIT)
            continue;
        if (s->type == SEG_VAR) {
            if (s->get(r, s->text, &v) != 0)
                v = unset;
            else if (!v.data)
                v = empty;
        } else if (subject && s->cap < ncap) {
            size_t a = ovector[2 * s->cap], b = ovector[2 * s->cap + 1];
            /* an unset group is SIZE_MAX; anything outside the subject is too */
            if (a != SIZE_MAX && b != SIZE_MAX && a <= b && b <= subject->len)
                v = (weir_str_t){.data = subject->data + a, .len = b - a};
        }
        vals[k++] = v;
        total += escape_json ? json_len(v) : v.len;
    }
    if (total == 0) {
        *out = empty;
        return 0;
    }

    /* +1 keeps the result NUL-terminated for callers that hand it to libc */
    char *buf = weir_request_alloc(r, total + 1);
    if (!buf)
        return -1;
    char *p = buf;
    k = 0;
    for (size_t i = 0; i < t->nsegs; i++) {
        const struct seg *s = &t->segs[i];
        if (s->type == SEG_LIT) {
            memcpy(p, s->text.data, s->text.len);
            p += s->text.len;
        } else if (escape_json) {
            p = json_copy(p, vals[k++]);
        } else {
            memcpy(p, vals[k].data, vals[k].len);
            p += vals[k++].len;
        }
    }
    *p = '\0';
    *out = (weir_str_t){.data = buf, .len = total};
    return 0;
}

int weir_template_render(weir_request_t *r, const weir_template_t *t, weir_str_t *out)
{
    return render(r, t, NULL, NULL, 0, NULL, 0, out);
}

int weir_template_render_captures(weir_request_t *r, const weir_template_t *t, weir_str_t subject,
                                  const size_t *ovector, size_t ncap, weir_str_t *out)
{
    return render(r, t, &subject, ovector, ncap, NULL, 0, out);
}

int weir_template_render_flags(weir_request_t *r, const weir_template_t *t, unsigned flags,
                               weir_str_t *out)
{
    int json = (flags & WEIR_RENDER_JSON) != 0;
    const char *unset = json ? NULL : (flags & WEIR_RENDER_LOG) ? "-" : NULL;
    return render(r, t, NULL, NULL, 0, unset, json, out);
}

int template_render_ex(weir_request_t *r, const weir_template_t *t, const char *unset_text,
                       int escape_json, weir_str_t *out)
{
    return render(r, t, NULL, NULL, 0, unset_text, escape_json, out);
}
