/*
 * Pure parts of module rewrite: see rewrite_rule.h for the rule syntax.
 */
#include "rewrite_rule.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* ------------------------------------------------------------- rule text */

int rewrite_rule_split(const char *text, struct rewrite_text *out, char *err, size_t errlen)
{
    size_t len = strlen(text), i = 0, end;

    memset(out, 0, sizeof(*out));
    while (len > 0 && is_blank(text[len - 1]))
        len--;
    while (i < len && is_blank(text[i]))
        i++;
    if (i == len) {
        set_err(err, errlen, "empty rule; write \"REGEX REPLACEMENT\"");
        return -1;
    }
    /* the regex ends at the first blank not escaped by an odd run of '\' */
    out->regex = text + i;
    for (size_t bs = 0; i < len; i++) {
        if (is_blank(text[i]) && bs % 2 == 0)
            break;
        bs = text[i] == '\\' ? bs + 1 : 0;
    }
    out->regex_len = (size_t)(text + i - out->regex);
    while (i < len && is_blank(text[i]))
        i++;
    if (i == len) {
        set_err(err, errlen, "missing replacement after the regex; write \"REGEX REPLACEMENT\"");
        return -1;
    }
    out->repl = text + i;
    for (end = i; end < len && !is_blank(text[end]); end++)
        ;
    out->repl_len = end - i;
    while (end < len && is_blank(text[end]))
        end++;
    if (end < len) {
        set_err(err, errlen,
                "unexpected \"%s\" after the replacement; a rule is \"REGEX REPLACEMENT\" "
                "(a replacement has no blanks; for a redirect use the redirect: key)",
                text + end);
        return -1;
    }
    return 0;
}

/* Walks the template syntax of weir_template_compile(): calls back for each
 * capture reference and stops at the first literal '?' when asked. Returns
 * the offset of that '?' or len. */
static size_t scan_repl(const char *s, size_t len, int stop_at_query, int *maxcap)
{
    size_t i = 0;

    while (i < len) {
        if (s[i] == '?' && stop_at_query)
            return i;
        if (s[i] != '$' || i + 1 >= len) {
            i++;
            continue;
        }
        char n = s[i + 1];
        if (n >= '0' && n <= '9') {
            if (n - '0' > *maxcap)
                *maxcap = n - '0';
            i += 2;
        } else if (n == '{') {
            const char *close = memchr(s + i + 2, '}', len - i - 2);
            size_t nlen;

            if (close == NULL)
                return len; /* weir_template_compile() reports it */
            nlen = (size_t)(close - (s + i + 2));
            if (nlen == 1 && s[i + 2] >= '0' && s[i + 2] <= '9' && s[i + 2] - '0' > *maxcap)
                *maxcap = s[i + 2] - '0';
            i += nlen + 3;
        } else {
            i += 2; /* "$$", or the first character of a name */
        }
    }
    return len;
}

int rewrite_max_capture(const char *repl, size_t len)
{
    int maxcap = -1;

    scan_repl(repl, len, 0, &maxcap);
    return maxcap;
}

int rewrite_query_at(const char *repl, size_t len, size_t *at)
{
    int unused = -1;
    size_t q = scan_repl(repl, len, 1, &unused);

    if (q == len)
        return 0;
    *at = q;
    return 1;
}

/* ------------------------------------------------------------------ regex */

int rewrite_regex_compile(struct rewrite_regex *rx, const char *pat, size_t len, char *err,
                          size_t errlen)
{
    PCRE2_UCHAR msg[256];
    PCRE2_SIZE eoff;
    int ec;

    memset(rx, 0, sizeof(*rx));
    if (len == 0) {
        set_err(err, errlen, "empty regex");
        return -1;
    }
    /* No PCRE2_UTF: request paths are bytes and need not be valid UTF-8. */
    rx->re = pcre2_compile((PCRE2_SPTR)pat, len, 0, &ec, &eoff, NULL);
    if (rx->re == NULL) {
        if (pcre2_get_error_message(ec, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", ec);
        set_err(err, errlen, "invalid regex: %s at offset %zu", (char *)msg, (size_t)eoff);
        return -1;
    }
    if (pcre2_pattern_info(rx->re, PCRE2_INFO_CAPTURECOUNT, &rx->ngroups) != 0)
        rx->ngroups = 0;
    /* JIT is an optimisation: where it is unavailable the interpreter runs. */
    rx->jit = pcre2_jit_compile(rx->re, PCRE2_JIT_COMPLETE) == 0;
    rx->md = pcre2_match_data_create_from_pattern(rx->re, NULL);
    if (rx->md == NULL) {
        rewrite_regex_free(rx);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int rewrite_regex_match(struct rewrite_regex *rx, const char *subject, size_t len,
                        const size_t **ovector, size_t *npairs, char *err, size_t errlen)
{
    PCRE2_UCHAR msg[256];
    /* pcre2_match() takes the JIT path by itself when the code has one */
    int rc = pcre2_match(rx->re, (PCRE2_SPTR)(subject ? subject : ""), len, 0, 0, rx->md, NULL);

    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0) {
        if (pcre2_get_error_message(rc, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", rc);
        set_err(err, errlen, "%s", (char *)msg);
        return -1;
    }
    /* rc == 0 means the block was too small, which a block made from the
     * pattern never is; read all of it then */
    *npairs = rc > 0 ? (size_t)rc : pcre2_get_ovector_count(rx->md);
    *ovector = pcre2_get_ovector_pointer(rx->md);
    return 1;
}

void rewrite_regex_free(struct rewrite_regex *rx)
{
    pcre2_match_data_free(rx->md);
    pcre2_code_free(rx->re);
    memset(rx, 0, sizeof(*rx));
}

/* --------------------------------------------------------------- escaping */

static int must_escape(unsigned char c, int query)
{
    return c <= ' ' || c >= 0x7f || c == '#' || (c == '?' && !query);
}

size_t rewrite_escape_len(const char *s, size_t len, int query)
{
    size_t n = len;

    for (size_t i = 0; i < len; i++)
        if (must_escape((unsigned char)s[i], query))
            n += 2;
    return n;
}

void rewrite_escape(char *dst, const char *s, size_t len, int query)
{
    static const char hex[] = "0123456789ABCDEF";

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (must_escape(c, query)) {
            *dst++ = '%';
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 15];
        } else {
            *dst++ = (char)c;
        }
    }
}

/* ------------------------------------------------------------------ misc */

int rewrite_query_replace(int rule_sets_query, size_t new_len, int request_had_query)
{
    if (!rule_sets_query)
        return 0;
    return new_len > 0 || request_had_query;
}

int rewrite_redirect_status_ok(long status)
{
    return status == 301 || status == 302 || status == 307 || status == 308;
}
