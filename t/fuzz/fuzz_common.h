/*
 * Helpers shared by the libFuzzer targets in t/fuzz: a failed invariant
 * report (abort, so libFuzzer keeps the input as a crash), a reader that
 * takes option bytes off the front of an input, exact-size copies (so ASan
 * sees any read past the bytes a function was given), and the HTTP/1
 * checks the request and response targets both make.
 *
 * Everything is static inline: each target uses a different subset and
 * unused static inline functions do not warn.
 */
#ifndef WEIR_FUZZ_COMMON_H
#define WEIR_FUZZ_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/module.h"

__attribute__((noreturn, format(printf, 3, 4))) static inline void
fz_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n%s:%d: fuzz invariant failed: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

/* FZ_CHECK(cond, "printf format", args...) */
#define FZ_CHECK(cond, ...)                                                                 \
    do {                                                                                   \
        if (!(cond))                                                                       \
            fz_fail(__FILE__, __LINE__, __VA_ARGS__);                                      \
    } while (0)

/* ------------------------------------------------------------ input reader */

typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in_t;

/* Next byte, or 0 once the input is used up. */
static inline uint8_t fz_u8(fz_in_t *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in_t *in)
{
    uint16_t hi = fz_u8(in);
    return (uint16_t)(hi << 8 | fz_u8(in));
}

static inline uint64_t fz_u64(fz_in_t *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | fz_u8(in);
    return v;
}

/* Up to n bytes off the front; *got says how many. */
static inline const uint8_t *fz_take(fz_in_t *in, size_t n, size_t *got)
{
    const uint8_t *p = in->p;
    if (n > in->n)
        n = in->n;
    in->p += n;
    in->n -= n;
    *got = n;
    return p;
}

/* A malloc'ed copy of exactly n bytes (1 byte for n == 0, never read), so a
 * read past the end is an ASan report rather than a silent overread. */
static inline char *fz_dup(const void *p, size_t n)
{
    char *d = malloc(n ? n : 1);
    if (!d)
        abort();
    if (n)
        memcpy(d, p, n);
    return d;
}

/* ----------------------------------------------------------------- strings */

static inline int fz_str_eq(weir_str_t a, weir_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static inline int fz_ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive equality with a lowercase literal. */
static inline int fz_name_is(weir_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (fz_ascii_lower((unsigned char)s.data[i]) != lit[i])
            return 0;
    return 1;
}

static inline int fz_points_into(weir_str_t s, const char *base, size_t len)
{
    if (s.len == 0)
        return 1;
    return s.data >= base && s.data + s.len <= base + len;
}

/* For messages: the first bytes of s, non-printables as '.'. */
static inline const char *fz_show(weir_str_t s)
{
    static char buf[4][100];
    static int k;
    char *b = buf[k++ & 3];
    size_t n = s.len < sizeof(buf[0]) - 1 ? s.len : sizeof(buf[0]) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.data[i];
        b[i] = c >= 0x20 && c < 0x7f ? (char)c : '.';
    }
    b[n] = '\0';
    return b;
}

#endif
