/*
 * The PROXY protocol on the wire (HAProxy's doc/proxy-protocol.txt, versions
 * 1 and 2): parsing the header a trusted proxy puts in front of a connection,
 * and building one for a connection weir opens upstream.
 *
 * Pure functions: no I/O, no allocation, no weir core. The module feeds
 * pp_parse the bytes received so far, as often as more arrive, and acts on
 * the answer; the bytes after the header are the client's own and are not
 * looked at.
 *
 * What pp_parse accepts, and nothing else:
 *  - v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", the same with TCP6,
 *    and "PROXY UNKNOWN" followed by "\r\n" or by a space, anything but CR
 *    and LF, then "\r\n" (the spec tells receivers to ignore that part). Exactly
 *    one space between fields; IPv4 as four decimal numbers 0..255 with no
 *    leading zeros ("0" itself is fine, "01" is not), since a leading zero
 *    reads as octal to some parsers; IPv6 as inet_pton() reads it (hex groups,
 *    "::", a dotted IPv4 tail; no zone "%eth0"); ports decimal 0..65535, no
 *    sign, no leading zeros. The whole line, CRLF included, is at most 107
 *    bytes (the spec's worst case).
 *  - v2: the 12-byte signature, version 2, command LOCAL (the addresses and
 *    whatever follows are skipped, even with a family byte v2 does not
 *    define: the spec says to ignore it) or PROXY with TCP over IPv4 (0x11)
 *    or IPv6 (0x21). The address length must hold the family's addresses and
 *    ports; bytes past them must be well-formed TLVs (type, 16-bit length,
 *    value; all of them skipped, none interpreted, a CRC32C one included); the
 *    whole header is at most PP_PARSE_MAX bytes.
 *  - v2 PROXY with UDP, AF_UNIX or UNSPEC is refused (PP_ERR_V2_UNSUPPORTED)
 *    rather than read as LOCAL: weir proxies TCP, and a sender that relays
 *    something else is misconfigured. A v2 UNSPEC with LOCAL is fine.
 *
 * Partial input: a proper prefix of a valid header gives 0, and a byte that
 * rules a valid header out gives an error as soon as it is seen, so a sender
 * of garbage is refused on its first bad byte rather than at a timeout. Two
 * bounded exceptions: an IPv6 text is checked by inet_pton() once its
 * terminating space is there (before that, only a grammar that already
 * refuses most wrong texts), and a v1 line that cannot end within 107 bytes
 * may be refused a few bytes before, at most at byte 107.
 */
#ifndef WEIR_PROXY_PROTOCOL_PP_WIRE_H
#define WEIR_PROXY_PROTOCOL_PP_WIRE_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The longest v1 line, CRLF included: "PROXY UNKNOWN" and two full IPv6
 * addresses and ports. */
#define PP_V1_MAX_LINE 107
/* The longest header pp_parse accepts (a v2 one, with TLVs): room for what
 * senders put there (ALPN, authority, TLS details, even a client certificate)
 * while bounding what a caller holds before pp_parse decides. A caller with
 * PP_PARSE_MAX bytes always gets an answer other than 0. */
#define PP_PARSE_MAX 4096
/* Enough for any header pp_build writes (v1 lines stop at 104 bytes, v2 at
 * 52): the spec's 108-byte buffer. */
#define PP_MAX_HEADER 108

typedef struct pp_result {
    /* v2 LOCAL or v1 UNKNOWN: keep the connection's own addresses; src and
     * dst are then zeroed, their lengths 0. */
    int local;
    /* when !local: AF_INET or AF_INET6 (both the same), ports in network
     * order, lengths sizeof(struct sockaddr_in) or sizeof(struct sockaddr_in6) */
    struct sockaddr_storage src, dst;
    socklen_t src_len, dst_len;
} pp_result_t;

enum pp_err {
    PP_ERR_NOT_PROXY = -1,      /* neither "PROXY" nor the v2 signature */
    PP_ERR_V1_SYNTAX = -2,      /* v1: a space, field or CRLF missing or extra */
    PP_ERR_V1_PROTO = -3,       /* v1: not TCP4, TCP6 or UNKNOWN */
    PP_ERR_V1_ADDR = -4,        /* v1: not an address of the announced family */
    PP_ERR_V1_PORT = -5,        /* v1: not a port 0..65535 without leading zeros */
    PP_ERR_V1_TOO_LONG = -6,    /* v1: no CRLF within PP_V1_MAX_LINE bytes */
    PP_ERR_V2_VERSION = -7,     /* v2: version nibble is not 2 */
    PP_ERR_V2_COMMAND = -8,     /* v2: command is neither LOCAL nor PROXY */
    PP_ERR_V2_FAMILY = -9,      /* v2: family or transport v2 does not define */
    PP_ERR_V2_UNSUPPORTED = -10, /* v2 PROXY: UDP, AF_UNIX or UNSPEC */
    PP_ERR_V2_ADDR_LEN = -11,   /* v2: length too short for the family's addresses */
    PP_ERR_V2_TOO_LONG = -12,   /* v2: header longer than PP_PARSE_MAX */
    PP_ERR_V2_TLV = -13,        /* v2: a TLV runs past the header's end */
};

/* Parses a PROXY header at the start of buf[0..len). Returns the header's
 * length (> 0) when it is complete and valid, 0 when more bytes are needed
 * (what is there is a valid start), or a negative PP_ERR_* when the bytes
 * cannot start a valid header. *out is filled only on success; out may be
 * NULL (only the length is wanted). buf may be NULL when len is 0. */
ssize_t pp_parse(const char *buf, size_t len, pp_result_t *out);

/* Short text for a PP_ERR_* code, for logs ("v1: bad port"). */
const char *pp_strerror(int err);

/* Builds a version 1 or 2 header for src -> dst into out[0..cap), without a
 * NUL. Both AF_INET: TCP4 / v2 0x11; AF_INET6 on one side or both: TCP6 /
 * v2 0x21, an IPv4 side written as ::ffff:a.b.c.d (as HAProxy does); any
 * other family, or NULL: "PROXY UNKNOWN\r\n" / v2 LOCAL with no address.
 * src and dst must be as long as their family's sockaddr. Returns the length,
 * or -1 if version is not 1 or 2 or cap is too small (PP_MAX_HEADER is
 * enough). */
ssize_t pp_build(int version, const struct sockaddr *src, const struct sockaddr *dst, char *out,
                 size_t cap);

#endif
