/*
 * PROXY protocol v1 and v2 codec; see pp_wire.h for what is accepted.
 *
 * Both parsers walk the bytes received so far from the start on every call:
 * a header is at most PP_PARSE_MAX bytes and usually arrives whole, so keeping
 * no state between calls costs little and leaves nothing to get out of step.
 * Each step answers STEP_OK (go on), STEP_NEED (ran out of bytes, all valid so
 * far) or a PP_ERR_* code; a step refuses a byte as soon as it can tell
 * that no valid header starts with the bytes so far.
 */
#include "pp_wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define STEP_OK 1
#define STEP_NEED 0

/* ------------------------------------------------------------------ v1 */

struct scan {
    const char *b;
    size_t n; /* bytes that may be looked at: at most PP_V1_MAX_LINE */
    size_t i;
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The error for a byte that cannot continue a field: a separator or line end
 * in the wrong place is a syntax error (a doubled space, a missing field),
 * anything else is the field's own error. */
static int field_error(char c, int field_err)
{
    return c == ' ' || c == '\r' || c == '\n' ? PP_ERR_V1_SYNTAX : field_err;
}

static int literal(struct scan *s, const char *lit, int err)
{
    for (; *lit; lit++, s->i++) {
        if (s->i == s->n)
            return STEP_NEED;
        if (s->b[s->i] != *lit)
            return err;
    }
    return STEP_OK;
}

/* Dotted-quad IPv4, one character at a time. Leading zeros are refused (the
 * spec forbids them: "010" is 8 to an octal reader), which also caps an octet
 * at three digits. */
struct v4_scan {
    unsigned dots;   /* octets finished by a dot */
    unsigned digits; /* digits of the current octet */
    unsigned val;    /* the current octet */
    uint32_t addr;   /* the finished octets, host order */
};

static int v4_step(struct v4_scan *v, char c)
{
    if (is_digit(c)) {
        if (v->digits > 0 && v->val == 0)
            return 0;
        v->val = v->val * 10 + (unsigned)(c - '0');
        v->digits++;
        return v->val <= 255;
    }
    if (c != '.' || v->digits == 0 || v->dots == 3)
        return 0;
    v->addr = v->addr << 8 | v->val;
    v->dots++;
    v->digits = 0;
    v->val = 0;
    return 1;
}

static int v4_complete(const struct v4_scan *v)
{
    return v->dots == 3 && v->digits > 0;
}

/* IPv6 text as glibc's inet_pton reads it, one character at a time, to refuse
 * a wrong address at its first wrong character: hex groups of 1..4 digits,
 * at most one "::" standing for at least one zero group, a dotted IPv4 tail
 * for the last 32 bits, 128 bits in all. inet_pton still has the last word
 * once the text is complete; this only has to never refuse a prefix of a text
 * inet_pton accepts (t/unit/pp_wire_test.c and t/fuzz/pp_fuzz.c check that). */
struct v6_scan {
    size_t len;       /* characters seen */
    unsigned bytes;   /* bytes of the address given by finished groups */
    unsigned xdigits; /* hex digits of the current group */
    int dbl;          /* "::" seen */
    int after_colon;  /* last character was a ':' that ended a group */
    size_t tok;       /* where the current group starts */
    int in_v4;        /* in the dotted IPv4 tail, read by v4 */
    struct v4_scan v4;
};

/* Whether the address can still be completed to 16 bytes, given what is
 * fixed so far. */
static int v6_room(const struct v6_scan *v)
{
    unsigned max = v->dbl ? 14 : 16; /* "::" needs at least one zero group */

    if (v->in_v4)
        return v->dbl ? v->bytes + 4 <= 14 : v->bytes + 4 == 16;
    if (v->after_colon || v->xdigits > 0) /* a group is due or under way: 2 bytes */
        return v->bytes + 2 <= max;
    return v->bytes <= max; /* empty, or just after "::" */
}

static int hex_value(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int v6_step(struct v6_scan *v, const char *text, char c)
{
    size_t pos = v->len++;

    if (v->in_v4)
        return v4_step(&v->v4, c);
    if (pos == 1 && text[0] == ':' && c != ':') /* a leading ':' only as "::" */
        return 0;
    if (hex_value(c) >= 0) {
        if (v->xdigits == 0)
            v->tok = pos;
        if (v->xdigits == 4)
            return 0;
        v->xdigits++;
        v->after_colon = 0;
        return v6_room(v);
    }
    if (c == ':') {
        if (pos == 0) /* the first of a leading "::"; the second makes it one */
            return 1;
        if (v->xdigits == 0) { /* the second ':' of "::" */
            if (v->dbl)
                return 0;
            v->dbl = 1;
            v->after_colon = 0;
            return v6_room(v);
        }
        v->bytes += 2;
        v->xdigits = 0;
        v->after_colon = 1;
        return v6_room(v);
    }
    if (c == '.' && v->xdigits > 0) {
        /* the group was the first octet of an IPv4 tail: read it again as one
         * (which refuses a hex one) */
        v->in_v4 = 1;
        for (size_t k = v->tok; k < pos; k++)
            if (!v4_step(&v->v4, text[k]))
                return 0;
        return v4_step(&v->v4, c) && v6_room(v);
    }
    return 0;
}

/* Out of bytes in a field that started at field_start, is at least min_len
 * long and is followed by at least rest bytes: fine unless even the shortest
 * ending overruns the line. The bound only grows as bytes arrive (each rest
 * counts the later fields' shortest forms), so once too long, always. */
static int need(const struct scan *s, size_t field_start, size_t min_len, size_t rest)
{
    size_t field_end = s->n > field_start + min_len ? s->n : field_start + min_len;

    return field_end + rest > PP_V1_MAX_LINE ? PP_ERR_V1_TOO_LONG : STEP_NEED;
}

/* An address of family af up to the space after it (consumed). */
static int v1_addr(struct scan *s, int af, struct sockaddr_storage *ss, socklen_t *sslen)
{
    size_t start = s->i;
    struct v4_scan v4 = {0};
    struct v6_scan v6 = {0};
    char text[INET6_ADDRSTRLEN];

    for (;; s->i++) {
        if (s->i == s->n)
            return STEP_NEED;
        char c = s->b[s->i];
        if (c == ' ' && s->i > start)
            break;
        int ok = af == AF_INET ? v4_step(&v4, c)
                               : s->i - start < sizeof(text) - 1 && v6_step(&v6, s->b + start, c);
        if (!ok)
            return field_error(c, PP_ERR_V1_ADDR);
    }
    size_t tlen = s->i - start;
    s->i++;
    if (af == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        if (!v4_complete(&v4))
            return PP_ERR_V1_ADDR;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(v4.addr << 8 | v4.val);
        *sslen = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        memcpy(text, s->b + start, tlen);
        text[tlen] = '\0';
        if (inet_pton(AF_INET6, text, &sin6->sin6_addr) != 1)
            return PP_ERR_V1_ADDR;
        sin6->sin6_family = AF_INET6;
        *sslen = sizeof(*sin6);
    }
    return STEP_OK;
}

/* A port up to term (consumed). */
static int v1_port(struct scan *s, char term, uint16_t *port)
{
    size_t start = s->i;
    unsigned val = 0;

    for (;; s->i++) {
        if (s->i == s->n)
            return STEP_NEED;
        char c = s->b[s->i];
        if (c == term && s->i > start)
            break;
        if (!is_digit(c))
            return field_error(c, PP_ERR_V1_PORT);
        if (s->i > start && val == 0) /* "0" is a port, "05" is not */
            return PP_ERR_V1_PORT;
        val = val * 10 + (unsigned)(c - '0');
        if (val > 65535)
            return PP_ERR_V1_PORT;
    }
    s->i++;
    *port = htons((uint16_t)val);
    return STEP_OK;
}

/* After "PROXY UNKNOWN": "\r\n", or a space and anything up to "\r\n". */
static int v1_unknown_rest(struct scan *s)
{
    if (s->i == s->n)
        return need(s, s->i, 0, 2);
    if (s->b[s->i] != '\r' && s->b[s->i] != ' ')
        return PP_ERR_V1_PROTO; /* "UNKNOWNX" */
    for (; s->i < s->n; s->i++) {
        char c = s->b[s->i];
        if (c == '\n')
            return PP_ERR_V1_SYNTAX; /* a lone LF does not end the line */
        if (c != '\r')
            continue;
        if (s->i + 1 == s->n)
            return need(s, s->i, 0, 1);
        if (s->b[s->i + 1] != '\n')
            return PP_ERR_V1_SYNTAX;
        s->i += 2;
        return STEP_OK;
    }
    return need(s, s->i, 0, 2);
}

/* The address family the protocol word names (AF_UNSPEC: UNKNOWN), consumed
 * with the space after TCP4/TCP6. */
static int v1_proto(struct scan *s, int *af)
{
    static const struct {
        const char *word;
        int af;
    } protos[] = {{"TCP4 ", AF_INET}, {"TCP6 ", AF_INET6}, {"UNKNOWN", AF_UNSPEC}};
    size_t avail = s->n - s->i;
    int partial = 0;

    for (size_t k = 0; k < sizeof(protos) / sizeof(protos[0]); k++) {
        size_t wlen = strlen(protos[k].word);
        size_t cmp = avail < wlen ? avail : wlen;
        if (memcmp(s->b + s->i, protos[k].word, cmp) != 0)
            continue;
        if (cmp < wlen) {
            partial = 1;
            continue;
        }
        s->i += wlen;
        *af = protos[k].af;
        return STEP_OK;
    }
    if (partial)
        return STEP_NEED;
    return avail > 0 && s->b[s->i] == ' ' ? PP_ERR_V1_SYNTAX : PP_ERR_V1_PROTO;
}

/* Runs a step of a field at least min_len long followed by at least rest
 * bytes; errors and need() go back to the caller. */
#define V1_STEP(call, min_len, rest)                                                           \
    do {                                                                                       \
        size_t start_ = s.i;                                                                   \
        int r_ = (call);                                                                       \
        if (r_ < 0)                                                                            \
            return r_;                                                                         \
        if (r_ == STEP_NEED)                                                                   \
            return need(&s, start_, (min_len), (rest));                                        \
    } while (0)

static ssize_t parse_v1(const char *buf, size_t len, pp_result_t *out)
{
    struct scan s = {buf, len < PP_V1_MAX_LINE ? len : PP_V1_MAX_LINE, 0};
    int af = AF_UNSPEC;
    uint16_t sport = 0, dport = 0;

    V1_STEP(literal(&s, "PROXY", PP_ERR_NOT_PROXY), 0, 0);
    V1_STEP(literal(&s, " ", PP_ERR_V1_SYNTAX), 0, 0);
    V1_STEP(v1_proto(&s, &af), 0, 0);
    if (af == AF_UNSPEC) {
        V1_STEP(v1_unknown_rest(&s), 0, 0);
        memset(out, 0, sizeof(*out));
        out->local = 1;
        return (ssize_t)s.i;
    }
    /* shortest forms, for the line's length bound: an address "0.0.0.0" or
     * "::", a port "0"; each field's rest counts the separators and fields
     * after it, up to "\r\n" */
    size_t min_addr = af == AF_INET ? 7 : 2;
    pp_result_t r;
    memset(&r, 0, sizeof(r));
    V1_STEP(v1_addr(&s, af, &r.src, &r.src_len), min_addr, 1 + min_addr + 1 + 1 + 1 + 1 + 2);
    V1_STEP(v1_addr(&s, af, &r.dst, &r.dst_len), min_addr, 1 + 1 + 1 + 1 + 2);
    V1_STEP(v1_port(&s, ' ', &sport), 1, 1 + 1 + 2);
    V1_STEP(v1_port(&s, '\r', &dport), 1, 2);
    V1_STEP(literal(&s, "\n", PP_ERR_V1_SYNTAX), 1, 0);
    if (af == AF_INET) {
        ((struct sockaddr_in *)&r.src)->sin_port = sport;
        ((struct sockaddr_in *)&r.dst)->sin_port = dport;
    } else {
        ((struct sockaddr_in6 *)&r.src)->sin6_port = sport;
        ((struct sockaddr_in6 *)&r.dst)->sin6_port = dport;
    }
    *out = r;
    return (ssize_t)s.i;
}

/* ------------------------------------------------------------------ v2 */

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
#define V2_FIXED 16 /* signature, version/command, family, length */
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_TCP4 0x11
#define V2_TCP6 0x21
#define V2_TCP4_LEN 12 /* 2 * 4 + 2 * 2 */
#define V2_TCP6_LEN 36 /* 2 * 16 + 2 * 2 */

/* The address block length the family byte needs under PROXY, or an error. */
static int v2_family(unsigned char fam)
{
    if (fam == V2_TCP4)
        return V2_TCP4_LEN;
    if (fam == V2_TCP6)
        return V2_TCP6_LEN;
    /* families UNSPEC, INET, INET6, UNIX; transports UNSPEC, STREAM, DGRAM */
    if ((fam >> 4) > 3 || (fam & 0xF) > 2)
        return PP_ERR_V2_FAMILY;
    return PP_ERR_V2_UNSUPPORTED;
}

static ssize_t parse_v2(const unsigned char *b, size_t len, pp_result_t *out)
{
    if (memcmp(b, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig)) != 0)
        return PP_ERR_NOT_PROXY;
    if (len <= 12)
        return 0;
    if (b[12] >> 4 != 2)
        return PP_ERR_V2_VERSION;
    unsigned cmd = b[12] & 0xF;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return PP_ERR_V2_COMMAND;
    if (len <= 13)
        return 0;
    int alen = 0;
    if (cmd == V2_CMD_PROXY) {
        alen = v2_family(b[13]);
        if (alen < 0)
            return alen;
    }
    if (len < V2_FIXED)
        return 0;
    size_t total = V2_FIXED + ((size_t)b[14] << 8 | b[15]);
    if (total > PP_PARSE_MAX)
        return PP_ERR_V2_TOO_LONG;
    if (total < V2_FIXED + (size_t)alen)
        return PP_ERR_V2_ADDR_LEN;
    if (cmd == V2_CMD_LOCAL) {
        /* family, addresses and TLVs alike are the sender's business */
        if (len < total)
            return 0;
        memset(out, 0, sizeof(*out));
        out->local = 1;
        return (ssize_t)total;
    }
    /* TLV framing, as far as the bytes go, so a bad length is refused before
     * the rest of the header has to arrive */
    for (size_t off = V2_FIXED + (size_t)alen; off < total;) {
        if (total - off < 3)
            return PP_ERR_V2_TLV;
        if (len < off + 3)
            return 0;
        size_t vlen = (size_t)b[off + 1] << 8 | b[off + 2];
        if (vlen > total - off - 3)
            return PP_ERR_V2_TLV;
        off += 3 + vlen;
    }
    if (len < total)
        return 0;

    const unsigned char *a = b + V2_FIXED;
    memset(out, 0, sizeof(*out));
    if (b[13] == V2_TCP4) {
        struct sockaddr_in *src = (struct sockaddr_in *)&out->src;
        struct sockaddr_in *dst = (struct sockaddr_in *)&out->dst;
        src->sin_family = dst->sin_family = AF_INET;
        memcpy(&src->sin_addr, a, 4);
        memcpy(&dst->sin_addr, a + 4, 4);
        memcpy(&src->sin_port, a + 8, 2);
        memcpy(&dst->sin_port, a + 10, 2);
        out->src_len = out->dst_len = sizeof(struct sockaddr_in);
    } else {
        struct sockaddr_in6 *src = (struct sockaddr_in6 *)&out->src;
        struct sockaddr_in6 *dst = (struct sockaddr_in6 *)&out->dst;
        src->sin6_family = dst->sin6_family = AF_INET6;
        memcpy(&src->sin6_addr, a, 16);
        memcpy(&dst->sin6_addr, a + 16, 16);
        memcpy(&src->sin6_port, a + 32, 2);
        memcpy(&dst->sin6_port, a + 34, 2);
        out->src_len = out->dst_len = sizeof(struct sockaddr_in6);
    }
    return (ssize_t)total;
}

/* ------------------------------------------------------------- parsing */

ssize_t pp_parse(const char *buf, size_t len, pp_result_t *out)
{
    pp_result_t ignored;

    if (!out)
        out = &ignored;
    if (len == 0)
        return 0;
    /* the first byte tells the versions apart: 'P' or v2's CR */
    if (buf[0] == 'P')
        return parse_v1(buf, len, out);
    if (buf[0] == '\r')
        return parse_v2((const unsigned char *)buf, len, out);
    return PP_ERR_NOT_PROXY;
}

const char *pp_strerror(int err)
{
    switch (err) {
    case PP_ERR_NOT_PROXY:
        return "not a PROXY protocol header";
    case PP_ERR_V1_SYNTAX:
        return "v1: malformed line (spaces, fields or CRLF)";
    case PP_ERR_V1_PROTO:
        return "v1: protocol is not TCP4, TCP6 or UNKNOWN";
    case PP_ERR_V1_ADDR:
        return "v1: bad address";
    case PP_ERR_V1_PORT:
        return "v1: bad port";
    case PP_ERR_V1_TOO_LONG:
        return "v1: no CRLF within 107 bytes";
    case PP_ERR_V2_VERSION:
        return "v2: version is not 2";
    case PP_ERR_V2_COMMAND:
        return "v2: command is neither LOCAL nor PROXY";
    case PP_ERR_V2_FAMILY:
        return "v2: undefined address family or transport";
    case PP_ERR_V2_UNSUPPORTED:
        return "v2: only TCP over IPv4 or IPv6 is supported";
    case PP_ERR_V2_ADDR_LEN:
        return "v2: address length too short for the family";
    case PP_ERR_V2_TOO_LONG:
        return "v2: header too long";
    case PP_ERR_V2_TLV:
        return "v2: TLV runs past the header";
    default:
        return "unknown PROXY protocol error";
    }
}

/* ------------------------------------------------------------ building */

/* The IPv6 form of an INET or INET6 address (IPv4 as ::ffff:a.b.c.d), and
 * its port (network order). */
static void as_v6(const struct sockaddr *sa, struct in6_addr *addr, uint16_t *port)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        *addr = sin6->sin6_addr;
        *port = sin6->sin6_port;
        return;
    }
    const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
    memset(addr, 0, sizeof(*addr));
    addr->s6_addr[10] = addr->s6_addr[11] = 0xFF;
    memcpy(&addr->s6_addr[12], &sin->sin_addr, 4);
    *port = sin->sin_port;
}

static int is_inet(const struct sockaddr *sa)
{
    return sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
}

static size_t build_v1(const struct sockaddr *src, const struct sockaddr *dst, char *h)
{
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    const char *proto;
    unsigned sport, dport;
    int n;

    if (!is_inet(src) || !is_inet(dst)) {
        memcpy(h, "PROXY UNKNOWN\r\n", 15);
        return 15;
    }
    if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)src;
        const struct sockaddr_in *d4 = (const struct sockaddr_in *)dst;
        proto = "TCP4";
        inet_ntop(AF_INET, &s4->sin_addr, s, sizeof(s));
        inet_ntop(AF_INET, &d4->sin_addr, d, sizeof(d));
        sport = ntohs(s4->sin_port);
        dport = ntohs(d4->sin_port);
    } else {
        struct in6_addr sa, da;
        uint16_t sp, dp;
        proto = "TCP6";
        as_v6(src, &sa, &sp);
        as_v6(dst, &da, &dp);
        inet_ntop(AF_INET6, &sa, s, sizeof(s));
        inet_ntop(AF_INET6, &da, d, sizeof(d));
        sport = ntohs(sp);
        dport = ntohs(dp);
    }
    /* at most 104 bytes and a NUL, within PP_MAX_HEADER */
    n = snprintf(h, PP_MAX_HEADER, "PROXY %s %s %s %u %u\r\n", proto, s, d, sport, dport);
    return n > 0 && n < PP_MAX_HEADER ? (size_t)n : 0;
}

static size_t build_v2(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *h)
{
    size_t alen;

    memcpy(h, v2_sig, sizeof(v2_sig));
    if (!is_inet(src) || !is_inet(dst)) {
        h[12] = 0x20 | V2_CMD_LOCAL;
        h[13] = 0x00;
        alen = 0;
    } else if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)src;
        const struct sockaddr_in *d4 = (const struct sockaddr_in *)dst;
        h[12] = 0x20 | V2_CMD_PROXY;
        h[13] = V2_TCP4;
        memcpy(h + 16, &s4->sin_addr, 4);
        memcpy(h + 20, &d4->sin_addr, 4);
        memcpy(h + 24, &s4->sin_port, 2);
        memcpy(h + 26, &d4->sin_port, 2);
        alen = V2_TCP4_LEN;
    } else {
        struct in6_addr sa, da;
        uint16_t sp, dp;
        as_v6(src, &sa, &sp);
        as_v6(dst, &da, &dp);
        h[12] = 0x20 | V2_CMD_PROXY;
        h[13] = V2_TCP6;
        memcpy(h + 16, &sa, 16);
        memcpy(h + 32, &da, 16);
        memcpy(h + 48, &sp, 2);
        memcpy(h + 50, &dp, 2);
        alen = V2_TCP6_LEN;
    }
    h[14] = (unsigned char)(alen >> 8);
    h[15] = (unsigned char)alen;
    return V2_FIXED + alen;
}

ssize_t pp_build(int version, const struct sockaddr *src, const struct sockaddr *dst, char *out,
                 size_t cap)
{
    char h[PP_MAX_HEADER];
    size_t n;

    if (version == 1)
        n = build_v1(src, dst, h);
    else if (version == 2)
        n = build_v2(src, dst, (unsigned char *)h);
    else
        return -1;
    if (n == 0 || n > cap)
        return -1;
    memcpy(out, h, n);
    return (ssize_t)n;
}
