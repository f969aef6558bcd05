/*
 * Pure logic of module healthcheck; the contracts are in probe.h.
 */
#include "probe.h"

#include <stdio.h>
#include <string.h>

/* ----------------------------------------------------------- expect_status */

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Reads 1..4 digits (longer runs are reported as out of range, not as junk:
 * "2000" is a number, just not a status). -1 if p holds no digit. */
static int read_code(const char **pp, long *out)
{
    const char *p = *pp;
    long v = 0;
    int n = 0;

    while (*p >= '0' && *p <= '9') {
        if (v < 100000)
            v = v * 10 + (*p - '0');
        p++;
        n++;
    }
    if (n == 0)
        return -1;
    *out = v;
    *pp = p;
    return 0;
}

int hc_status_item_parse(const char *text, int *lo, int *hi, char *why, size_t whylen)
{
    const char *p = skip_spaces(text);
    long a, b;

    if (read_code(&p, &a) < 0)
        goto syntax;
    p = skip_spaces(p);
    b = a;
    if (*p == '-') {
        p = skip_spaces(p + 1);
        if (read_code(&p, &b) < 0)
            goto syntax;
        p = skip_spaces(p);
    }
    if (*p != '\0')
        goto syntax;
    if (a < HC_STATUS_MIN || a > HC_STATUS_MAX || b < HC_STATUS_MIN || b > HC_STATUS_MAX) {
        snprintf(why, whylen, "status codes lie within %d-%d", HC_STATUS_MIN, HC_STATUS_MAX);
        return -1;
    }
    if (a > b) {
        snprintf(why, whylen, "the range is reversed; write %ld-%ld", b, a);
        return -1;
    }
    *lo = (int)a;
    *hi = (int)b;
    return 0;
syntax:
    snprintf(why, whylen, "expected a status code such as 200 or a range such as 200-399");
    return -1;
}

void hc_status_set_add(struct hc_status_set *s, int lo, int hi)
{
    for (int c = lo; c <= hi; c++) {
        unsigned bit = (unsigned)(c - HC_STATUS_MIN);
        s->bits[bit / 64] |= (uint64_t)1 << (bit % 64);
    }
}

int hc_status_set_has(const struct hc_status_set *s, int code)
{
    if (code < HC_STATUS_MIN || code > HC_STATUS_MAX)
        return 0;
    unsigned bit = (unsigned)(code - HC_STATUS_MIN);
    return (s->bits[bit / 64] >> (bit % 64)) & 1;
}

int hc_status_set_empty(const struct hc_status_set *s)
{
    for (size_t i = 0; i < sizeof(s->bits) / sizeof(s->bits[0]); i++)
        if (s->bits[i])
            return 0;
    return 1;
}

/* ------------------------------------------------------- response scanner */

/* True if the n bytes at p could still begin "HTTP/1.x ": lets a server that
 * answers something else entirely (an SSH banner, TLS) fail at once instead
 * of after the timeout. */
static int could_be_status_line(const char *p, size_t n)
{
    static const char want[] = "HTTP/1.";

    for (size_t i = 0; i < n && i < 9; i++) {
        if (i < 7 && p[i] != want[i])
            return 0;
        if (i == 7 && p[i] != '0' && p[i] != '1')
            return 0;
        if (i == 8 && p[i] != ' ')
            return 0;
    }
    return 1;
}

/* The status of one complete line (without its line end), or -1. */
static int status_of_line(const char *p, size_t n)
{
    if (n < 12 || !could_be_status_line(p, 9))
        return -1;
    int code = 0;
    for (size_t i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        code = code * 10 + (p[i] - '0');
    }
    if (n > 12 && p[12] != ' ')
        return -1;
    if (code < HC_STATUS_MIN || code > HC_STATUS_MAX)
        return -1;
    return code;
}

enum hc_scan hc_scan_status(const char *buf, size_t len, int *status)
{
    size_t pos = 0;

    for (;;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (nl == NULL)
            return could_be_status_line(buf + pos, len - pos) ? HC_SCAN_MORE : HC_SCAN_INVALID;
        size_t n = (size_t)(nl - (buf + pos));
        if (n > 0 && buf[pos + n - 1] == '\r')
            n--;
        int code = status_of_line(buf + pos, n);
        if (code < 0)
            return HC_SCAN_INVALID;
        pos = (size_t)(nl - buf) + 1;
        if (code >= 200 || code == 101) {
            *status = code;
            return HC_SCAN_STATUS;
        }
        /* interim 1xx: skip its header lines up to the empty line */
        for (;;) {
            nl = memchr(buf + pos, '\n', len - pos);
            if (nl == NULL)
                return HC_SCAN_MORE;
            size_t line = (size_t)(nl - (buf + pos));
            int empty = line == 0 || (line == 1 && buf[pos] == '\r');
            pos = (size_t)(nl - buf) + 1;
            if (empty)
                break;
        }
    }
}

/* -------------------------------------------------------- rise/fall state */

enum hc_change hc_state_record(struct hc_state *s, int ok, unsigned rise, unsigned fall)
{
    if (!s->down) {
        if (ok) {
            s->fails = 0;
            return HC_SAME;
        }
        if (++s->fails < fall)
            return HC_SAME;
        *s = (struct hc_state){.down = 1};
        return HC_WENT_DOWN;
    }
    if (!ok) {
        s->passes = 0;
        return HC_SAME;
    }
    if (++s->passes < rise)
        return HC_SAME;
    *s = (struct hc_state){.down = 0};
    return HC_WENT_UP;
}

/* ----------------------------------------------------------- did you mean */

#define SUGGEST_MAX 32

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[SUGGEST_MAX + 1];

    if (la > SUGGEST_MAX || lb > SUGGEST_MAX)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *hc_suggest(const char *s, const char *const *words, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3;

    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(s, words[i]);
        if (d < best_d && d < strlen(s)) {
            best = words[i];
            best_d = d;
        }
    }
    return best;
}
