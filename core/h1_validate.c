/*
 * Head scanning: finds the end of a message head and validates every byte of
 * it before llhttp sees it, because llhttp 8.1 accepts bare LF, bare CR
 * ("\r\n\rX" ends its head early), obs-fold and odd field names.
 */
#include "h1.h"

#include <string.h>

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_TCHAR(c)                                                                            \
    (IS_DIGIT(c) || IS_ALPHA(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||     \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||      \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define IS_VALUE(c) ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f))
#define IS_TARGET(c) ((c) > 0x20 && (c) < 0x7f && (c) != '#')
#define IS_HEX(c) (IS_DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define IS_REGNAME(c)                                                                          \
    (IS_DIGIT(c) || IS_ALPHA(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' ||     \
     (c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||      \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define IS_QDTEXT(c)                                                                           \
    ((c) == '\t' || (c) == ' ' || (c) == 0x21 || ((c) >= 0x23 && (c) <= 0x5b) ||               \
     ((c) >= 0x5d && (c) <= 0x7e) || (c) >= 0x80)

#define CLS(c)                                                                                 \
    (uint8_t)((IS_TCHAR(c) ? H1_C_TCHAR : 0) | (IS_VALUE(c) ? H1_C_VALUE : 0) |                \
              (IS_TARGET(c) ? H1_C_TARGET : 0) | (IS_HEX(c) ? H1_C_HEX : 0) |                  \
              (IS_REGNAME(c) ? H1_C_REGNAME : 0) | (IS_QDTEXT(c) ? H1_C_QDTEXT : 0))
#define R4(b) CLS(b), CLS((b) + 1), CLS((b) + 2), CLS((b) + 3)
#define R16(b) R4(b), R4((b) + 4), R4((b) + 8), R4((b) + 12)
#define R64(b) R16(b), R16((b) + 16), R16((b) + 32), R16((b) + 48)

/* Built at compile time so the hot loops are a load and a test per byte. */
const uint8_t h1_ctype[256] = {R64(0), R64(64), R64(128), R64(192)};

/* Empty lines tolerated before a request line (RFC 9112 §2.2). */
#define MAX_LEADING_CRLF 16

int h1_parse_uint(weir_str_t s, uint64_t *v)
{
    uint64_t n = 0;
    if (s.len == 0)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if (!IS_DIGIT(c))
            return -1;
        if (n > (UINT64_C(0x7fffffffffffffff) - (c - '0')) / 10)
            return -1;
        n = n * 10 + (c - '0');
    }
    *v = n;
    return 0;
}

int h1_name_match(weir_str_t name, const char *lit, size_t litlen)
{
    int under = 0;
    if (name.len != litlen)
        return 0;
    for (size_t i = 0; i < litlen; i++) {
        unsigned char c = (unsigned char)name.data[i];
        if (c == '_') {
            if (lit[i] != '-')
                return 0;
            under = 1;
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            c |= 0x20;
        if (c != (unsigned char)lit[i])
            return 0;
    }
    return under ? 2 : 1;
}

/* "HTTP/d.d": 0 for 1.0/1.1, -505 for another well-formed version, -400 if
 * it is not a version at all. */
static int check_version(const char *v, size_t n)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !IS_DIGIT(v[5]) || v[6] != '.' ||
        !IS_DIGIT(v[7]))
        return -400;
    if (v[5] == '1' && (v[7] == '0' || v[7] == '1'))
        return 0;
    return -505;
}

static int check_request_line(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && h1_is((unsigned char)p[i], H1_C_TCHAR))
        i++;
    if (i == 0 || i == n || p[i] != ' ')
        return -400;
    size_t t = ++i;
    while (i < n && h1_is((unsigned char)p[i], H1_C_TARGET))
        i++;
    /* Anything but a single SP after the target (a '#', a CTL, obs-text, a
     * second space) makes the line invalid. */
    if (i == t || i == n || p[i] != ' ')
        return -400;
    i++;
    return check_version(p + i, n - i);
}

static int check_status_line(const char *p, size_t n)
{
    if (n < 12)
        return n >= 8 && check_version(p, 8) == -505 ? -505 : -400;
    int v = check_version(p, 8);
    if (v < 0)
        return v;
    if (p[8] != ' ' || !IS_DIGIT(p[9]) || !IS_DIGIT(p[10]) || !IS_DIGIT(p[11]))
        return -400;
    if (p[9] < '1' || p[9] > '5')
        return -400;
    /* The SP before an empty reason is often missing; accepting that is
     * harmless since the reason is never interpreted. */
    if (n == 12)
        return 0;
    if (p[12] != ' ')
        return -400;
    for (size_t i = 13; i < n; i++)
        if (!h1_is((unsigned char)p[i], H1_C_VALUE))
            return -400;
    return 0;
}

static int check_field_line(const char *p, size_t n)
{
    size_t i = 0;
    /* A leading SP/HTAB is obs-fold; an empty name, whitespace before the
     * colon or any non-token byte all end the name loop early. */
    while (i < n && h1_is((unsigned char)p[i], H1_C_TCHAR))
        i++;
    if (i == 0 || i == n || p[i] != ':')
        return -400;
    for (i++; i < n; i++)
        if (!h1_is((unsigned char)p[i], H1_C_VALUE))
            return -400;
    return 0;
}

ssize_t h1_scan_head_r(h1_scan_t *st, const char *buf, size_t len, size_t max_header_size,
                       int is_request)
{
    if (st->next > len)
        return -400; /* the buffer shrank: the state belongs to other bytes */
    for (;;) {
        size_t ls = st->next;
        const char *nl = ls < len ? memchr(buf + ls, '\n', len - ls) : NULL;
        if (!nl) {
            /* Incomplete line: apply the limits now so a peer cannot make us
             * wait for (and buffer) an endless line, and refuse a CR that is
             * not followed by LF as soon as its next byte is here. */
            size_t part = len - ls;
            if (part && buf[len - 1] == '\r')
                part--;
            if (part && memchr(buf + ls, '\r', part))
                return -400;
            if (!st->start_end) {
                if (part > H1_MAX_START_LINE)
                    return is_request ? -414 : -400;
            } else if (len - st->start_end > max_header_size) {
                return -431;
            }
            return 0;
        }
        size_t le = (size_t)(nl - buf);
        if (le == ls || buf[le - 1] != '\r')
            return -400; /* bare LF */
        size_t n = le - 1 - ls;
        const char *line = buf + ls;
        if (!st->start_end) {
            if (n == 0) {
                if (!is_request || le + 1 > 2 * MAX_LEADING_CRLF)
                    return -400;
                st->next = le + 1;
                continue;
            }
            if (n > H1_MAX_START_LINE)
                return is_request ? -414 : -400;
            int r = is_request ? check_request_line(line, n) : check_status_line(line, n);
            if (r < 0)
                return r;
            st->start_end = st->next = le + 1;
            continue;
        }
        if (le + 1 - st->start_end > max_header_size)
            return -431;
        if (n == 0)
            return (ssize_t)(le + 1);
        if (check_field_line(line, n) < 0)
            return -400;
        st->next = le + 1;
    }
}

ssize_t h1_scan_head(const char *buf, size_t len, size_t max_header_size, int is_request)
{
    h1_scan_t st = {0, 0};
    return h1_scan_head_r(&st, buf, len, max_header_size, is_request);
}
