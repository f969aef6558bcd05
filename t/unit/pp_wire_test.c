/*
 * The PROXY protocol codec of module proxy_protocol
 * (modules/proxy_protocol/pp_wire.c): v1 and v2 headers it accepts and what
 * it reads from them, every split point of each (a prefix asks for more, the
 * bytes after the header are not touched), refusals and the byte at which each
 * is decided, the IPv6 text grammar against inet_pton, and pp_build output
 * read back by pp_parse.
 *
 * Every buffer handed to pp_parse is a malloc'ed copy of exactly the bytes
 * meant, so under ASan a read past them is a report.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "proxy_protocol/pp_wire.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
/* a string literal and its length, NULs included */
#define B(lit) lit, sizeof(lit) - 1

#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* For the loops that check millions of things: each ck_assert records its
 * position with a write(2), which would be most of the test's time. */
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond))                                                                           \
            ck_abort_msg(__VA_ARGS__);                                                         \
    } while (0)

/* ------------------------------------------------------------- helpers */

/* pp_parse over an exact-size copy of buf[0..len). */
static ssize_t parse(const void *buf, size_t len, pp_result_t *out)
{
    char *copy = malloc(len ? len : 1);
    ssize_t r;

    CHECK(copy != NULL, "malloc");
    if (len)
        memcpy(copy, buf, len);
    r = pp_parse(copy, len, out);
    free(copy);
    return r;
}

static ssize_t parse_str(const char *s, pp_result_t *out)
{
    return parse(s, strlen(s), out);
}

static struct sockaddr_storage sa4(const char *ip, unsigned port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage sa6(const char *ip, unsigned port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return ss;
}

/* got (of length len) is the address want: family, address, port. */
static void assert_addr(const struct sockaddr_storage *got, socklen_t len,
                        const struct sockaddr_storage *want)
{
    char gs[INET6_ADDRSTRLEN] = "", ws[INET6_ADDRSTRLEN] = "";
    int same;

    if (want->ss_family == AF_INET) {
        const struct sockaddr_in *g = (const void *)got, *w = (const void *)want;
        same = got->ss_family == AF_INET && len == sizeof(*g) &&
               g->sin_addr.s_addr == w->sin_addr.s_addr && g->sin_port == w->sin_port;
        inet_ntop(AF_INET, &g->sin_addr, gs, sizeof(gs));
        inet_ntop(AF_INET, &w->sin_addr, ws, sizeof(ws));
    } else {
        const struct sockaddr_in6 *g = (const void *)got, *w = (const void *)want;
        same = got->ss_family == AF_INET6 && len == sizeof(*g) &&
               memcmp(&g->sin6_addr, &w->sin6_addr, 16) == 0 && g->sin6_port == w->sin6_port;
        inet_ntop(AF_INET6, &g->sin6_addr, gs, sizeof(gs));
        inet_ntop(AF_INET6, &w->sin6_addr, ws, sizeof(ws));
    }
    CHECK(same, "got family %d %s port %u (len %u), want family %d %s port %u", got->ss_family,
          gs, ntohs(((const struct sockaddr_in *)got)->sin_port), (unsigned)len, want->ss_family,
          ws, ntohs(((const struct sockaddr_in *)want)->sin_port));
}

static void assert_local(const pp_result_t *r)
{
    ck_assert_int_eq(r->local, 1);
    ck_assert_uint_eq(r->src_len, 0);
    ck_assert_uint_eq(r->dst_len, 0);
}

/* Writes a v2 header: signature, ver_cmd, fam, a length field of len_field
 * and body[0..blen) after it. Returns its length. */
static size_t v2_raw(unsigned char *out, unsigned ver_cmd, unsigned fam, size_t len_field,
                     const void *body, size_t blen)
{
    memcpy(out, SIG, 12);
    out[12] = (unsigned char)ver_cmd;
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(len_field >> 8);
    out[15] = (unsigned char)len_field;
    if (blen)
        memcpy(out + 16, body, blen);
    return 16 + blen;
}

static size_t v2(unsigned char *out, unsigned ver_cmd, unsigned fam, const void *body, size_t blen)
{
    return v2_raw(out, ver_cmd, fam, blen, body, blen);
}

/* 127.0.0.1:56324 -> 10.0.0.1:443 */
static const unsigned char addr4[12] = {127, 0, 0, 1, 10, 0, 0, 1, 0xDC, 0x04, 0x01, 0xBB};
/* [2001:db8::1]:1 -> [2001:db8::2]:65535 */
static const unsigned char addr6[36] = {
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
    0x00, 0x01, 0xFF, 0xFF};
/* ALPN "h2", AUTHORITY "example.com", NOOP empty, CRC32C (not checked: TLVs
 * are skipped), a custom type */
static const unsigned char tlvs[] = {
    0x01, 0x00, 0x02, 'h', '2',
    0x02, 0x00, 0x0B, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm',
    0x04, 0x00, 0x00,
    0x03, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF,
    0xE0, 0x00, 0x01, 0x7F};

/* ------------------------------------------------------ valid headers */

struct sample {
    const char *name;
    unsigned char b[PP_PARSE_MAX];
    size_t len;
    int local;
    int family; /* when !local */
    const char *src, *dst;
    unsigned sport, dport;
};

static struct sample samples[32];
static size_t nsamples;

static struct sample *add_v1(const char *name, const char *line, int family, const char *src,
                             const char *dst, unsigned sport, unsigned dport)
{
    struct sample *s = &samples[nsamples++];

    ck_assert_uint_le(nsamples, N(samples));
    s->name = name;
    s->len = strlen(line);
    memcpy(s->b, line, s->len);
    s->local = family == AF_UNSPEC;
    s->family = family;
    s->src = src;
    s->dst = dst;
    s->sport = sport;
    s->dport = dport;
    return s;
}

static struct sample *add_v2(const char *name, int family, const char *src, const char *dst,
                             unsigned sport, unsigned dport)
{
    struct sample *s = &samples[nsamples++];

    ck_assert_uint_le(nsamples, N(samples));
    s->name = name;
    s->local = family == AF_UNSPEC;
    s->family = family;
    s->src = src;
    s->dst = dst;
    s->sport = sport;
    s->dport = dport;
    return s; /* the caller writes b and len */
}

static void make_samples(void)
{
    unsigned char body[PP_PARSE_MAX];
    struct sample *s;
    size_t n;

    nsamples = 0;
    add_v1("v1 tcp4", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", AF_INET,
           "192.168.0.1", "192.168.0.11", 56324, 443);
    add_v1("v1 tcp4 extremes", "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", AF_INET,
           "0.0.0.0", "255.255.255.255", 0, 65535);
    add_v1("v1 tcp4 longest", "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
           AF_INET, "255.255.255.255", "255.255.255.255", 65535, 65535);
    add_v1("v1 tcp4 zeros", "PROXY TCP4 10.0.100.0 1.20.0.3 0 8080\r\n", AF_INET, "10.0.100.0",
           "1.20.0.3", 0, 8080);
    add_v1("v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n", AF_INET6, "2001:db8::1",
           "2001:db8::2", 4000, 80);
    add_v1("v1 tcp6 longest",
           "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
           AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535);
    add_v1("v1 tcp6 unspecified and mapped", "PROXY TCP6 :: ::ffff:192.0.2.1 0 1\r\n", AF_INET6,
           "::", "::ffff:192.0.2.1", 0, 1);
    add_v1("v1 tcp6 upper case, zero groups",
           "PROXY TCP6 FE80:0000:0000:0000:0202:B3FF:FE1E:8329 ::1 1 2\r\n", AF_INET6,
           "fe80::202:b3ff:fe1e:8329", "::1", 1, 2);
    /* 107 bytes exactly: dotted tails make the longest IPv6 texts */
    add_v1("v1 tcp6 at the length limit",
           "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
           "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.25 1 2\r\n",
           AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
           "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.25", 1, 2);
    add_v1("v1 unknown", "PROXY UNKNOWN\r\n", AF_UNSPEC, NULL, NULL, 0, 0);
    add_v1("v1 unknown, worst case",
           "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
           AF_UNSPEC, NULL, NULL, 0, 0);
    add_v1("v1 unknown, anything", "PROXY UNKNOWN  what\tever \x01\xff \r\n", AF_UNSPEC, NULL,
           NULL, 0, 0);

    s = add_v2("v2 inet", AF_INET, "127.0.0.1", "10.0.0.1", 56324, 443);
    s->len = v2(s->b, 0x21, 0x11, addr4, sizeof(addr4));
    s = add_v2("v2 inet6", AF_INET6, "2001:db8::1", "2001:db8::2", 1, 65535);
    s->len = v2(s->b, 0x21, 0x21, addr6, sizeof(addr6));
    s = add_v2("v2 local", AF_UNSPEC, NULL, NULL, 0, 0);
    s->len = v2(s->b, 0x20, 0x00, NULL, 0);
    s = add_v2("v2 local with inet addresses", AF_UNSPEC, NULL, NULL, 0, 0);
    s->len = v2(s->b, 0x20, 0x11, addr4, sizeof(addr4));
    s = add_v2("v2 local, short inet block", AF_UNSPEC, NULL, NULL, 0, 0);
    s->len = v2(s->b, 0x20, 0x11, addr4, 7);
    s = add_v2("v2 local, undefined family", AF_UNSPEC, NULL, NULL, 0, 0);
    s->len = v2(s->b, 0x20, 0xFF, B("\x01\x02"));
    s = add_v2("v2 local, udp6 and junk", AF_UNSPEC, NULL, NULL, 0, 0);
    s->len = v2(s->b, 0x20, 0x22, B("\xff\xff\xff\xff\xff"));

    s = add_v2("v2 inet with tlvs", AF_INET, "127.0.0.1", "10.0.0.1", 56324, 443);
    memcpy(body, addr4, sizeof(addr4));
    memcpy(body + sizeof(addr4), tlvs, sizeof(tlvs));
    s->len = v2(s->b, 0x21, 0x11, body, sizeof(addr4) + sizeof(tlvs));
    s = add_v2("v2 inet6 with tlvs", AF_INET6, "2001:db8::1", "2001:db8::2", 1, 65535);
    memcpy(body, addr6, sizeof(addr6));
    memcpy(body + sizeof(addr6), tlvs, sizeof(tlvs));
    s->len = v2(s->b, 0x21, 0x21, body, sizeof(addr6) + sizeof(tlvs));
    /* PP_PARSE_MAX bytes in all: one NOOP TLV fills the rest */
    s = add_v2("v2 inet, longest", AF_INET, "127.0.0.1", "10.0.0.1", 56324, 443);
    n = PP_PARSE_MAX - 16 - sizeof(addr4) - 3;
    memcpy(body, addr4, sizeof(addr4));
    body[12] = 0x04;
    body[13] = (unsigned char)(n >> 8);
    body[14] = (unsigned char)n;
    memset(body + 15, 'x', n);
    s->len = v2(s->b, 0x21, 0x11, body, PP_PARSE_MAX - 16);
    ck_assert_uint_eq(s->len, PP_PARSE_MAX);
}

static void check_sample_result(const struct sample *s, const pp_result_t *r)
{
    struct sockaddr_storage src, dst;

    if (s->local) {
        assert_local(r);
        return;
    }
    ck_assert_int_eq(r->local, 0);
    src = s->family == AF_INET ? sa4(s->src, s->sport) : sa6(s->src, s->sport);
    dst = s->family == AF_INET ? sa4(s->dst, s->dport) : sa6(s->dst, s->dport);
    assert_addr(&r->src, r->src_len, &src);
    assert_addr(&r->dst, r->dst_len, &dst);
}

/* Each sample whole, and followed by the client's first bytes. */
START_TEST(test_valid_headers)
{
    static const char after[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    static unsigned char buf[PP_PARSE_MAX + sizeof(after)];

    make_samples();
    for (size_t i = 0; i < nsamples; i++) {
        const struct sample *s = &samples[i];
        pp_result_t r;

        memset(&r, 0xA5, sizeof(r));
        ck_assert_msg(parse(s->b, s->len, &r) == (ssize_t)s->len, "%s: %zd", s->name,
                      parse(s->b, s->len, NULL));
        check_sample_result(s, &r);

        memcpy(buf, s->b, s->len);
        memcpy(buf + s->len, after, sizeof(after) - 1);
        memset(&r, 0, sizeof(r));
        ck_assert_msg(parse(buf, s->len + sizeof(after) - 1, &r) == (ssize_t)s->len, "%s + data",
                      s->name);
        check_sample_result(s, &r);
        /* out may be NULL */
        ck_assert_int_eq(parse(s->b, s->len, NULL), (ssize_t)s->len);
    }
}
END_TEST

/* A header split anywhere asks for more, and *out is left alone meanwhile. */
START_TEST(test_every_prefix_needs_more)
{
    make_samples();
    for (size_t i = 0; i < nsamples; i++) {
        const struct sample *s = &samples[i];

        for (size_t k = 0; k < s->len; k++) {
            pp_result_t r;
            memset(&r, 0x5A, sizeof(r));
            ssize_t got = parse(s->b, k, &r);
            CHECK(got == 0, "%s: prefix of %zu bytes gave %zd (%s)", s->name, k, got,
                  pp_strerror((int)got));
            CHECK(r.local == 0x5A5A5A5A, "%s: result written on a prefix", s->name);
        }
    }
    ck_assert_int_eq(pp_parse(NULL, 0, NULL), 0);
}
END_TEST

START_TEST(test_v1_details)
{
    pp_result_t r;

    /* the line ends at the first CRLF; what follows is the client's */
    ck_assert_int_eq(parse_str("PROXY UNKNOWN\r\n\r\n", &r), 15);
    ck_assert_int_eq(parse_str("PROXY UNKNOWN x\r\nPROXY TCP4 junk", &r), 17);
    assert_local(&r);
    /* a dotted tail and a zero group spelled out */
    ck_assert_int_eq(parse_str("PROXY TCP6 ::1.2.3.4 0:0::1 1 2\r\n", &r), 33);
    struct sockaddr_storage src = sa6("::102:304", 1), dst = sa6("::1", 2);
    assert_addr(&r.src, r.src_len, &src);
    assert_addr(&r.dst, r.dst_len, &dst);
}
END_TEST

/* ------------------------------------------------------------ refusals */

static const struct refusal {
    const char *name;
    const char *b;
    size_t len;
    int err;
    size_t at; /* shortest prefix refused: shorter ones ask for more */
} refusals[] = {
    /* not a PROXY header */
    {"http request", B("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), PP_ERR_NOT_PROXY, 1},
    {"tls hello", B("\x16\x03\x01\x02\x00\x01"), PP_ERR_NOT_PROXY, 1},
    {"lower case", B("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_NOT_PROXY, 1},
    {"PRXY", B("PRXY TCP4"), PP_ERR_NOT_PROXY, 3},
    {"v2 signature, 5th byte", B("\r\n\r\nGET / HTTP/1.1"), PP_ERR_NOT_PROXY, 5},
    {"v2 signature, 11th byte", B("\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c"), PP_ERR_NOT_PROXY, 11},
    {"v2 signature, last byte", B("\r\n\r\n\0\r\nQUIT\r\x21\x11\x00\x0c"), PP_ERR_NOT_PROXY, 12},
    {"v1 and v2 mixed", B("\r\nPROXY TCP4"), PP_ERR_NOT_PROXY, 3},

    /* v1 spacing and framing */
    {"no space after PROXY", B("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_SYNTAX, 6},
    {"double space after PROXY", B("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_SYNTAX, 7},
    {"double space before src", B("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_SYNTAX, 12},
    {"double space before dst", B("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), PP_ERR_V1_SYNTAX, 20},
    {"double space before sport", B("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n"), PP_ERR_V1_SYNTAX, 28},
    {"double space before dport", B("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n"), PP_ERR_V1_SYNTAX, 30},
    {"tab", B("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_PROTO, 11},
    {"space before CRLF", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), PP_ERR_V1_SYNTAX, 31},
    {"LF alone", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), PP_ERR_V1_SYNTAX, 31},
    {"CR alone", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), PP_ERR_V1_SYNTAX, 32},
    {"CR CR", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), PP_ERR_V1_SYNTAX, 32},
    {"no dport", B("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), PP_ERR_V1_SYNTAX, 29},
    {"no ports", B("PROXY TCP4 1.2.3.4 5.6.7.8\r\n"), PP_ERR_V1_SYNTAX, 27},
    {"unknown, LF alone", B("PROXY UNKNOWN 1.2.3.4\n"), PP_ERR_V1_SYNTAX, 22},
    {"unknown, CR alone", B("PROXY UNKNOWN\rX\r\n"), PP_ERR_V1_SYNTAX, 15},

    /* v1 protocol word */
    {"TCP5", B("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_PROTO, 10},
    {"UDP4", B("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_PROTO, 8},
    {"tcp4", B("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_PROTO, 7},
    {"UNKNOWNX", B("PROXY UNKNOWNX\r\n"), PP_ERR_V1_PROTO, 14},

    /* v1 addresses */
    {"octet 256", B("PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n"), PP_ERR_V1_ADDR, 14},
    {"octet 300", B("PROXY TCP4 1.2.3.300 5.6.7.8 1 2\r\n"), PP_ERR_V1_ADDR, 20},
    {"leading zero", B("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_ADDR, 13},
    {"zero zero", B("PROXY TCP4 1.2.3.4 5.6.00.8 1 2\r\n"), PP_ERR_V1_ADDR, 25},
    {"three octets", B("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), PP_ERR_V1_ADDR, 17},
    {"five octets", B("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"), PP_ERR_V1_ADDR, 19},
    {"empty octet", B("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_ADDR, 14},
    {"letter in ipv4", B("PROXY TCP4 1.2.3.x 5.6.7.8 1 2\r\n"), PP_ERR_V1_ADDR, 18},
    {"ipv6 in TCP4", B("PROXY TCP4 ::1 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 12},
    {"ipv4 in TCP6", B("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 13},
    {":::", B("PROXY TCP6 ::: ::1 1 2\r\n"), PP_ERR_V1_ADDR, 14},
    {"two ::", B("PROXY TCP6 1::2::3 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 17},
    {"single leading colon", B("PROXY TCP6 :1::2 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 13},
    {"five hex digits", B("PROXY TCP6 12345:: ::1 1 2\r\n"), PP_ERR_V1_ADDR, 16},
    {"nine groups", B("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 27},
    {":: for no group", B("PROXY TCP6 1:2:3:4:5:6:7::8 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 27},
    {"seven groups", B("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 25},
    {"trailing colon", B("PROXY TCP6 1::2: ::1 1 2\r\n"), PP_ERR_V1_ADDR, 17},
    {"zone", B("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 19},
    {"not hex", B("PROXY TCP6 g::1 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 12},
    {"ipv4 tail too early", B("PROXY TCP6 1::2:3:4:5:6:1.2.3.4 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 26},
    {"ipv4 tail, leading zero", B("PROXY TCP6 ::ffff:1.2.3.04 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 26},
    {"ipv4 tail, hex", B("PROXY TCP6 ::ffff:1a.2.3.4 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 21},
    {"ipv4 tail then group", B("PROXY TCP6 ::1.2.3.4:5 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 21},
    {"short ipv4 tail", B("PROXY TCP6 ::1.2.3 ::1 1 2\r\n"), PP_ERR_V1_ADDR, 19},

    /* v1 ports */
    {"port 65536", B("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), PP_ERR_V1_PORT, 32},
    {"dport 65536", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), PP_ERR_V1_PORT, 34},
    {"port 99999", B("PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n"), PP_ERR_V1_PORT, 32},
    {"six digits", B("PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n"), PP_ERR_V1_PORT, 33},
    {"leading zero port", B("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), PP_ERR_V1_PORT, 29},
    {"port 00", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n"), PP_ERR_V1_PORT, 31},
    {"signed port", B("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), PP_ERR_V1_PORT, 28},
    {"negative port", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n"), PP_ERR_V1_PORT, 30},
    {"hex port", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n"), PP_ERR_V1_PORT, 31},

    /* v1 length: 107 bytes at most, decided as soon as no ending fits */
    {"unknown, no CRLF in 107 bytes",
     B("PROXY UNKNOWN 0123456789012345678901234567890123456789012345678901234567890123456789"
       "01234567890123456789012345678901234567890123456789\r\n"),
     PP_ERR_V1_TOO_LONG, 106},
    {"tcp6, no room for the ports",
     B("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
       "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 1 2\r\n"),
     PP_ERR_V1_TOO_LONG, 102},

    /* v2 */
    {"v2 version 1", B(SIG "\x11\x11\x00\x0c"), PP_ERR_V2_VERSION, 13},
    {"v2 version 3", B(SIG "\x31\x11\x00\x0c"), PP_ERR_V2_VERSION, 13},
    {"v2 version 0", B(SIG "\x01\x11\x00\x0c"), PP_ERR_V2_VERSION, 13},
    {"v2 command 2", B(SIG "\x22\x11\x00\x0c"), PP_ERR_V2_COMMAND, 13},
    {"v2 command 15", B(SIG "\x2f\x11\x00\x0c"), PP_ERR_V2_COMMAND, 13},
    {"v2 udp4", B(SIG "\x21\x12\x00\x0c"), PP_ERR_V2_UNSUPPORTED, 14},
    {"v2 udp6", B(SIG "\x21\x22\x00\x24"), PP_ERR_V2_UNSUPPORTED, 14},
    {"v2 unix stream", B(SIG "\x21\x31\x00\xd8"), PP_ERR_V2_UNSUPPORTED, 14},
    {"v2 unix dgram", B(SIG "\x21\x32\x00\xd8"), PP_ERR_V2_UNSUPPORTED, 14},
    {"v2 proxy unspec", B(SIG "\x21\x00\x00\x00"), PP_ERR_V2_UNSUPPORTED, 14},
    {"v2 inet, transport unspec", B(SIG "\x21\x10\x00\x0c"), PP_ERR_V2_UNSUPPORTED, 14},
    {"v2 family 4", B(SIG "\x21\x41\x00\x0c"), PP_ERR_V2_FAMILY, 14},
    {"v2 transport 3", B(SIG "\x21\x13\x00\x0c"), PP_ERR_V2_FAMILY, 14},
    {"v2 family 0xff", B(SIG "\x21\xff\x00\x0c"), PP_ERR_V2_FAMILY, 14},
    {"v2 inet, 11 address bytes",
     B(SIG "\x21\x11\x00\x0b" "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b"),
     PP_ERR_V2_ADDR_LEN, 16},
    {"v2 inet, no address", B(SIG "\x21\x11\x00\x00"), PP_ERR_V2_ADDR_LEN, 16},
    {"v2 inet6, inet's 12 bytes",
     B(SIG "\x21\x21\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"),
     PP_ERR_V2_ADDR_LEN, 16},
    {"v2 inet6, 35 bytes", B(SIG "\x21\x21\x00\x23"), PP_ERR_V2_ADDR_LEN, 16},
    {"v2 one byte too long", B(SIG "\x21\x11\x0f\xf1"), PP_ERR_V2_TOO_LONG, 16},
    {"v2 longest length", B(SIG "\x21\x11\xff\xff"), PP_ERR_V2_TOO_LONG, 16},
    {"v2 local too long", B(SIG "\x20\x00\x10\x00"), PP_ERR_V2_TOO_LONG, 16},
    {"v2 two bytes after the addresses",
     B(SIG "\x21\x11\x00\x0e" "\x7f\x00\x00\x01\x0a\x00\x00\x01\xdc\x04\x01\xbb" "\x04\x00"),
     PP_ERR_V2_TLV, 16},
    {"v2 tlv past the end",
     B(SIG "\x21\x11\x00\x0f" "\x7f\x00\x00\x01\x0a\x00\x00\x01\xdc\x04\x01\xbb" "\x04\x00\x01"),
     PP_ERR_V2_TLV, 31},
    {"v2 second tlv past the end",
     B(SIG "\x21\x11\x00\x13" "\x7f\x00\x00\x01\x0a\x00\x00\x01\xdc\x04\x01\xbb"
           "\x04\x00\x01" "x" "\x01\x00\x05" "h2"),
     PP_ERR_V2_TLV, 35},
};

START_TEST(test_refusals)
{
    for (size_t i = 0; i < N(refusals); i++) {
        const struct refusal *c = &refusals[i];

        ck_assert_msg(c->at >= 1 && c->at <= c->len, "%s: bad case", c->name);
        for (size_t k = 0; k < c->len; k++) {
            ssize_t got = parse(c->b, k + 1, NULL);
            ssize_t want = k + 1 < c->at ? 0 : c->err;
            CHECK(got == want, "%s: %zu bytes gave %zd (%s), want %zd (%s)", c->name, k + 1, got,
                  pp_strerror((int)got), want, pp_strerror((int)want));
        }
        /* the result is not touched on a refusal */
        pp_result_t r;
        memset(&r, 0x77, sizeof(r));
        ck_assert_int_eq(parse(c->b, c->len, &r), c->err);
        ck_assert_int_eq(r.local, 0x77777777);
    }
}
END_TEST

/* -------------------------------------------------------- IPv6 grammar */

/* xorshift64*: the same sequence on every run */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint32_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Du) >> 32);
}

/* "PROXY TCP6 <text> ::1 1 2\r\n" (and with text as the destination) is
 * accepted exactly when inet_pton takes text, and when it is, every prefix
 * asks for more: the incremental grammar never refuses what inet_pton
 * accepts. text has no space, CR or LF. */
static int check_v6_text(const char *text)
{
    unsigned char a[16];
    int valid = inet_pton(AF_INET6, text, a) == 1;
    char line[160];

    for (int side = 0; side < 2; side++) {
        int n = side == 0 ? snprintf(line, sizeof(line), "PROXY TCP6 %s ::1 1 2\r\n", text)
                          : snprintf(line, sizeof(line), "PROXY TCP6 ::1 %s 1 2\r\n", text);
        CHECK(n < (int)sizeof(line), "line too long");
        ssize_t got = parse(line, (size_t)n, NULL);
        if (!valid) {
            CHECK(got == PP_ERR_V1_ADDR || (text[0] == '\0' && got == PP_ERR_V1_SYNTAX),
                  "'%s' (inet_pton refuses it) gave %zd", text, got);
            continue;
        }
        CHECK(got == n, "'%s' (inet_pton takes it) gave %zd (%s)", text, got,
              pp_strerror((int)got));
        for (int k = 0; k < n; k++)
            CHECK(parse(line, (size_t)k, NULL) == 0, "'%s': prefix %d refused", text, k);
    }
    return valid;
}

START_TEST(test_v6_grammar_handpicked)
{
    static const char *const texts[] = {
        "::", "::1", "1::", "1::2", "::ffff:1.2.3.4", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4",
        "1:2:3:4:5::1.2.3.4", "1::1.2.3.4", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
        "0000:0000:0000:0000:0000:0000:0000:0000", "ABCD:ef01::", "::0.0.0.0", "::255.255.255.255",
        "1:2:3:4:5:6:7::8", "1:2:3:4:5:6::1.2.3.4", ":::", "1::2::3", ":1::", "1::2:", "12345::",
        "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "::1.2.3", "::1.2.3.4.5", "::1.2.3.256", "::01.2.3.4",
        "::1..3.4", "1.2.3.4", "::1.2.3.4:1", "::ffff:1a.2.3.4", ":", "1:", "1:2:3:4:5:6:7:8:",
        "::1:2:3:4:5:6:7:8", "::.1.2.3", "::1.2.3.",
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        "",
    };
    int valid = 0;

    for (size_t i = 0; i < N(texts); i++)
        valid += check_v6_text(texts[i]);
    ck_assert_int_eq(valid, 17);
}
END_TEST

/* Every text up to 7 characters over a small alphabet, then long random
 * ones: inet_ntop forms, and those forms with a character changed, added or
 * dropped (where the 128-bit limits are). */
START_TEST(test_v6_grammar_generated)
{
    static const char alpha[] = "01f:.";
    char text[64];
    int valid = 0;

    for (size_t len = 1; len <= 7; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++)
            total *= sizeof(alpha) - 1;
        for (size_t code = 0; code < total; code++) {
            size_t c = code;
            for (size_t i = 0; i < len; i++, c /= sizeof(alpha) - 1)
                text[i] = alpha[c % (sizeof(alpha) - 1)];
            text[len] = '\0';
            valid += check_v6_text(text);
        }
    }
    ck_assert_int_gt(valid, 100);

    static const char edit[] = "0123456789abcdefABCDEF:.";
    for (int round = 0; round < 20000; round++) {
        struct in6_addr a;
        for (int g = 0; g < 8; g++) {
            /* mostly zero groups, so "::" and dotted tails show up */
            uint32_t v = rnd() % 4 == 0 ? rnd() & 0xFFFF : 0;
            if (g == 5 && rnd() % 4 == 0)
                v = 0xFFFF;
            a.s6_addr[2 * g] = (uint8_t)(v >> 8);
            a.s6_addr[2 * g + 1] = (uint8_t)v;
        }
        CHECK(inet_ntop(AF_INET6, &a, text, sizeof(text)) != NULL, "inet_ntop");
        CHECK(check_v6_text(text) == 1, "inet_ntop's '%s' refused", text);
        size_t len = strlen(text), at = rnd() % (len + 1);
        switch (rnd() % 3) {
        case 0:
            if (at < len)
                text[at] = edit[rnd() % (sizeof(edit) - 1)];
            break;
        case 1:
            if (len + 1 < sizeof(text)) {
                memmove(text + at + 1, text + at, len - at + 1);
                text[at] = edit[rnd() % (sizeof(edit) - 1)];
            }
            break;
        default:
            if (at < len)
                memmove(text + at, text + at + 1, len - at);
            break;
        }
        check_v6_text(text);
    }
}
END_TEST

/* ------------------------------------------------------------- building */

static void expect_text(ssize_t n, const char *out, const char *want)
{
    ck_assert_int_eq(n, (ssize_t)strlen(want));
    ck_assert_mem_eq(out, want, strlen(want));
}

START_TEST(test_build_exact)
{
    char out[PP_MAX_HEADER];
    struct sockaddr_storage s4 = sa4("192.168.0.1", 56324), d4 = sa4("192.168.0.11", 443);
    struct sockaddr_storage s6 = sa6("2001:db8::1", 1), d6 = sa6("::1", 65535);
    const struct sockaddr *S4 = (void *)&s4, *D4 = (void *)&d4;
    const struct sockaddr *S6 = (void *)&s6, *D6 = (void *)&d6;
    unsigned char want[64];
    size_t wlen;
    ssize_t n;

    expect_text(pp_build(1, S4, D4, out, sizeof(out)), out,
                "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    expect_text(pp_build(1, S6, D6, out, sizeof(out)), out,
                "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
    /* one IPv4 side: IPv6 with the IPv4 side mapped, as HAProxy does */
    expect_text(pp_build(1, S4, D6, out, sizeof(out)), out,
                "PROXY TCP6 ::ffff:192.168.0.1 ::1 56324 65535\r\n");

    n = pp_build(2, S4, D4, out, sizeof(out));
    wlen = v2(want, 0x21, 0x11,
              (const unsigned char[]){192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB},
              12);
    ck_assert_int_eq(n, (ssize_t)wlen);
    ck_assert_mem_eq(out, want, wlen);
    n = pp_build(2, S6, D4, out, sizeof(out));
    ck_assert_int_eq(n, 52);
    ck_assert_mem_eq(out, SIG "\x21\x21\x00\x24", 16);
    ck_assert_mem_eq(out + 16, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
    ck_assert_mem_eq(out + 32, "\0\0\0\0\0\0\0\0\0\0\xff\xff\xc0\xa8\x00\x0b", 16);
    ck_assert_mem_eq(out + 48, "\x00\x01\x01\xbb", 4);

    /* other families, or none: UNKNOWN and LOCAL */
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/run/weir.sock"};
    const struct sockaddr *U = (void *)&un;
    const struct {
        const struct sockaddr *src, *dst;
    } others[] = {{U, U}, {S4, U}, {U, D6}, {NULL, D4}, {S4, NULL}, {NULL, NULL}};
    for (size_t i = 0; i < N(others); i++) {
        expect_text(pp_build(1, others[i].src, others[i].dst, out, sizeof(out)), out,
                    "PROXY UNKNOWN\r\n");
        n = pp_build(2, others[i].src, others[i].dst, out, sizeof(out));
        ck_assert_int_eq(n, 16);
        ck_assert_mem_eq(out, SIG "\x20\x00\x00\x00", 16);
    }

    /* exactly the room needed, no NUL; one byte less is refused untouched */
    memset(out, '#', sizeof(out));
    ck_assert_int_eq(pp_build(1, S4, D4, out, 47), 47);
    ck_assert_int_eq(out[47], '#');
    ck_assert_int_eq(pp_build(1, S4, D4, out, 46), -1);
    ck_assert_int_eq(pp_build(2, S6, D6, out, 52), 52);
    memset(out, '#', sizeof(out));
    ck_assert_int_eq(pp_build(2, S6, D6, out, 51), -1);
    ck_assert_int_eq(pp_build(2, U, U, out, 15), -1);
    ck_assert_int_eq(out[0], '#');
    ck_assert_int_eq(pp_build(0, S4, D4, out, sizeof(out)), -1);
    ck_assert_int_eq(pp_build(3, S4, D4, out, sizeof(out)), -1);
}
END_TEST

static struct sockaddr_storage random_addr(int family)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = rnd() % 8 == 0 ? (rnd() % 2 ? 0 : 0xFFFFFFFFu) : rnd();
        sin->sin_port = (uint16_t)(rnd() % 8 == 0 ? (rnd() % 2 ? 0 : 0xFFFF) : rnd());
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        for (int i = 0; i < 16; i += 2) {
            uint32_t v = rnd() % 3 == 0 ? 0 : rnd();
            sin6->sin6_addr.s6_addr[i] = (uint8_t)(v >> 8);
            sin6->sin6_addr.s6_addr[i + 1] = (uint8_t)v;
        }
        if (rnd() % 8 == 0) { /* an IPv4-mapped address, as a dual-stack socket gives */
            memset(sin6->sin6_addr.s6_addr, 0, 10);
            sin6->sin6_addr.s6_addr[10] = sin6->sin6_addr.s6_addr[11] = 0xFF;
        }
        sin6->sin6_port = (uint16_t)rnd();
    }
    return ss;
}

/* What pp_parse gives back for a built side: the address itself, or its
 * mapped IPv6 form when the other side made the header IPv6. */
static struct sockaddr_storage expected_side(const struct sockaddr_storage *a, int as_v6)
{
    struct sockaddr_storage e;
    const struct sockaddr_in *sin = (const void *)a;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&e;

    if (!as_v6 || a->ss_family == AF_INET6)
        return *a;
    memset(&e, 0, sizeof(e));
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = sin->sin_port;
    sin6->sin6_addr.s6_addr[10] = sin6->sin6_addr.s6_addr[11] = 0xFF;
    memcpy(&sin6->sin6_addr.s6_addr[12], &sin->sin_addr, 4);
    return e;
}

START_TEST(test_roundtrip)
{
    static const int fams[][2] = {
        {AF_INET, AF_INET}, {AF_INET6, AF_INET6}, {AF_INET, AF_INET6}, {AF_INET6, AF_INET}};
    char out[PP_MAX_HEADER];

    for (int round = 0; round < 2000; round++) {
        for (size_t f = 0; f < N(fams); f++) {
            struct sockaddr_storage src = random_addr(fams[f][0]), dst = random_addr(fams[f][1]);
            int v6 = fams[f][0] == AF_INET6 || fams[f][1] == AF_INET6;
            struct sockaddr_storage esrc = expected_side(&src, v6), edst = expected_side(&dst, v6);

            for (int version = 1; version <= 2; version++) {
                pp_result_t r;
                ssize_t n = pp_build(version, (void *)&src, (void *)&dst, out, sizeof(out));
                CHECK(n > 0 && n <= (version == 1 ? 104 : 52), "v%d: built %zd bytes", version, n);
                memset(&r, 0, sizeof(r));
                ssize_t got = parse(out, (size_t)n, &r);
                CHECK(got == n && !r.local, "v%d: '%.*s' read back as %zd (%s)", version,
                      (int)n, out, got, pp_strerror((int)got));
                assert_addr(&r.src, r.src_len, &esrc);
                assert_addr(&r.dst, r.dst_len, &edst);
                if (round < 50)
                    for (ssize_t k = 0; k < n; k++)
                        CHECK(parse(out, (size_t)k, NULL) == 0, "v%d: prefix %zd", version, k);
            }
        }
    }

    /* UNKNOWN and LOCAL read back as local */
    for (int version = 1; version <= 2; version++) {
        pp_result_t r;
        ssize_t n = pp_build(version, NULL, NULL, out, sizeof(out));
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(parse(out, (size_t)n, &r), n);
        assert_local(&r);
    }
}
END_TEST

START_TEST(test_strerror)
{
    static const int codes[] = {
        PP_ERR_NOT_PROXY,   PP_ERR_V1_SYNTAX,  PP_ERR_V1_PROTO,      PP_ERR_V1_ADDR,
        PP_ERR_V1_PORT,     PP_ERR_V1_TOO_LONG, PP_ERR_V2_VERSION,   PP_ERR_V2_COMMAND,
        PP_ERR_V2_FAMILY,   PP_ERR_V2_UNSUPPORTED, PP_ERR_V2_ADDR_LEN, PP_ERR_V2_TOO_LONG,
        PP_ERR_V2_TLV,
    };
    const char *unknown = pp_strerror(-1000);

    ck_assert_str_eq(pp_strerror(0), unknown);
    for (size_t i = 0; i < N(codes); i++) {
        ck_assert_int_lt(codes[i], 0);
        ck_assert_str_ne(pp_strerror(codes[i]), unknown);
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(pp_strerror(codes[i]), pp_strerror(codes[j]));
    }
}
END_TEST

static Suite *pp_wire_suite(void)
{
    Suite *s = suite_create("pp_wire");
    TCase *tc = tcase_create("pp_wire");

    tcase_add_test(tc, test_valid_headers);
    tcase_add_test(tc, test_every_prefix_needs_more);
    tcase_add_test(tc, test_v1_details);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_v6_grammar_handpicked);
    tcase_add_test(tc, test_v6_grammar_generated);
    tcase_add_test(tc, test_build_exact);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_strerror);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pp_wire_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
