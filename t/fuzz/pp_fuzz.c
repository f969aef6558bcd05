/*
 * Fuzz target: the PROXY protocol codec of module proxy_protocol
 * (modules/proxy_protocol/pp_wire.c), as t/unit/pp_wire_test.c uses it.
 *
 * The input is the bytes a client sent (t/fuzz/corpus/pp has v1 lines and v2
 * headers), parsed whole and cut at split points. Short inputs made only of
 * address or port characters are also read as one field of a v1 line, against
 * libc. Invariants beyond "no sanitizer report":
 *  - a result is a header length no longer than the input, PP_V1_MAX_LINE
 *    (v1) or PP_PARSE_MAX; with that many bytes pp_parse never asks for more;
 *  - every prefix agrees: shorter than the header asks for more, longer gives
 *    the same header; before an error a prefix asks for more or fails, and once
 *    a prefix fails every longer one does; *out is written only on success;
 *  - an accepted address pair built again with pp_build (v1 and v2) reads back
 *    as the same addresses, and a TCP4 line or a v2 header builds back to the
 *    input's own bytes (apart from v2's length and TLVs);
 *  - as a v1 field, an IPv6 text is accepted exactly when inet_pton takes it,
 *    and then every prefix of the line asks for more (the incremental grammar
 *    never refuses a good address early); the same for IPv4 text, and a port
 *    is accepted exactly when it is 0..65535 without leading zeros.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "proxy_protocol/pp_wire.h"

static ssize_t parse_copy(const uint8_t *data, size_t n, pp_result_t *out)
{
    char *copy = fz_dup(data, n);
    ssize_t r = pp_parse(copy, n, out);
    free(copy);
    return r;
}

static int same_addr(const struct sockaddr_storage *a, socklen_t alen,
                     const struct sockaddr_storage *b, socklen_t blen)
{
    if (a->ss_family != b->ss_family || alen != blen)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_addr.s_addr == y->sin_addr.s_addr && x->sin_port == y->sin_port;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 && x->sin6_port == y->sin6_port;
}

static void check_result_shape(const pp_result_t *r)
{
    if (r->local) {
        FZ_CHECK(r->src_len == 0 && r->dst_len == 0, "local with addresses");
        return;
    }
    int fam = r->src.ss_family;
    socklen_t want = fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    FZ_CHECK(fam == AF_INET || fam == AF_INET6, "family %d", fam);
    FZ_CHECK(r->dst.ss_family == fam, "families %d and %d", fam, r->dst.ss_family);
    FZ_CHECK(r->src_len == want && r->dst_len == want, "lengths %u %u for family %d",
             (unsigned)r->src_len, (unsigned)r->dst_len, fam);
}

/* pp_build of what was read, read back; and the input's own bytes where
 * the encoding is canonical. */
static void check_rebuild(const uint8_t *data, ssize_t len, const pp_result_t *r)
{
    char out[PP_MAX_HEADER];

    for (int version = 1; version <= 2; version++) {
        pp_result_t back;
        ssize_t n = pp_build(version, (const void *)&r->src, (const void *)&r->dst, out,
                             sizeof(out));
        FZ_CHECK(n > 0, "pp_build v%d failed", version);
        ssize_t got = parse_copy((const uint8_t *)out, (size_t)n, &back);
        FZ_CHECK(got == n, "v%d: built '%s' reads back as %zd", version,
                 fz_show((weir_str_t){out, (size_t)n}), got);
        FZ_CHECK(!back.local && same_addr(&back.src, back.src_len, &r->src, r->src_len) &&
                     same_addr(&back.dst, back.dst_len, &r->dst, r->dst_len),
                 "v%d: addresses changed through pp_build", version);
        if (version == 1 && len >= 11 && memcmp(data, "PROXY TCP4 ", 11) == 0)
            FZ_CHECK(n == len && memcmp(out, data, (size_t)n) == 0,
                     "TCP4 line '%s' builds as '%s'", fz_show((weir_str_t){(const char *)data,
                                                                          (size_t)len}),
                     fz_show((weir_str_t){out, (size_t)n}));
        if (version == 2 && data[0] == '\r') {
            size_t alen = r->src.ss_family == AF_INET ? 12 : 36;
            FZ_CHECK(memcmp(out, data, 14) == 0 && memcmp(out + 16, data + 16, alen) == 0,
                     "v2 header builds differently");
        }
    }
}

/* Prefixes: every one up to 300 bytes, then a stride, and around the end
 * of the header. */
static void check_prefixes(const uint8_t *data, size_t size, ssize_t whole)
{
    int failed = 0;

    for (size_t k = 0; k < size; k += k < 300 ? 1 : 97) {
        pp_result_t r;
        memset(&r, 0xA5, sizeof(r));
        ssize_t p = parse_copy(data, k, &r);
        if (whole > 0)
            FZ_CHECK(p == ((ssize_t)k < whole ? 0 : whole), "prefix %zu gives %zd, whole %zd", k,
                     p, whole);
        else if (whole == 0)
            FZ_CHECK(p == 0, "prefix %zu gives %zd, whole input 0", k, p);
        else
            FZ_CHECK(p <= 0 && (!failed || p < 0), "prefix %zu gives %zd after a failure", k, p);
        failed |= p < 0;
        if (p <= 0)
            FZ_CHECK(r.local == (int)0xA5A5A5A5, "prefix %zu: result written on %zd", k, p);
    }
    if (whole > 0) {
        FZ_CHECK(parse_copy(data, (size_t)whole - 1, NULL) == 0, "header minus one byte");
        FZ_CHECK(parse_copy(data, (size_t)whole, NULL) == whole, "header alone");
    }
}

static int only(const uint8_t *s, size_t n, const char *set)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || !strchr(set, s[i]))
            return 0;
    return 1;
}

static int port_ok(const uint8_t *s, size_t n)
{
    unsigned long v = 0;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned long)(s[i] - '0');
    return v <= 65535;
}

/* One v1 line with text in the field the format string puts it. */
static void check_field(const char *fmt, const uint8_t *s, size_t n, int want_ok)
{
    char line[160];
    int len = snprintf(line, sizeof(line), fmt, (int)n, (const char *)s);

    FZ_CHECK(len > 0 && len < (int)sizeof(line), "line");
    ssize_t got = parse_copy((const uint8_t *)line, (size_t)len, NULL);
    FZ_CHECK((got == len) == want_ok, "'%s': pp_parse %zd, libc says %s",
             fz_show((weir_str_t){line, (size_t)len}), got, want_ok ? "valid" : "invalid");
    if (want_ok)
        for (int k = 0; k < len; k++)
            FZ_CHECK(parse_copy((const uint8_t *)line, (size_t)k, NULL) == 0,
                     "'%s': prefix %d refused", fz_show((weir_str_t){line, (size_t)len}), k);
}

static void check_fields(const uint8_t *data, size_t size)
{
    char text[64];
    unsigned char bin[16];

    if (size == 0 || size > 45)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    if (only(data, size, "0123456789abcdefABCDEF:.")) {
        int ok = inet_pton(AF_INET6, text, bin) == 1;
        check_field("PROXY TCP6 %.*s ::1 1 2\r\n", data, size, ok);
        check_field("PROXY TCP6 ::1 %.*s 1 2\r\n", data, size, ok);
    }
    if (only(data, size, "0123456789.")) {
        int ok = inet_pton(AF_INET, text, bin) == 1;
        check_field("PROXY TCP4 %.*s 1.1.1.1 1 2\r\n", data, size, ok);
        check_field("PROXY TCP4 1.1.1.1 %.*s 1 2\r\n", data, size, ok);
    }
    if (only(data, size, "0123456789")) {
        check_field("PROXY TCP4 1.1.1.1 1.1.1.1 %.*s 2\r\n", data, size, port_ok(data, size));
        check_field("PROXY TCP4 1.1.1.1 1.1.1.1 1 %.*s\r\n", data, size, port_ok(data, size));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pp_result_t r;

    memset(&r, 0xA5, sizeof(r));
    ssize_t whole = parse_copy(data, size, &r);
    FZ_CHECK(whole <= (ssize_t)size, "header of %zd bytes in %zu", whole, size);
    if (size > 0) {
        size_t max = data[0] == 'P' ? PP_V1_MAX_LINE : PP_PARSE_MAX;
        FZ_CHECK(whole <= (ssize_t)max, "header of %zd bytes", whole);
        FZ_CHECK(whole != 0 || size < max, "%zu bytes and still undecided", size);
    }
    if (whole < 0)
        FZ_CHECK(pp_strerror((int)whole)[0] != '\0', "empty error text");
    if (whole > 0) {
        check_result_shape(&r);
        if (!r.local)
            check_rebuild(data, whole, &r);
    } else {
        FZ_CHECK(r.local == (int)0xA5A5A5A5, "result written on %zd", whole);
    }
    check_prefixes(data, size, whole);
    check_fields(data, size);
    return 0;
}
