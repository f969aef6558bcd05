/*
 * HTTP/1.x codec: strict head scanning, head parsing, body decoding and
 * serialisation for the proxy's client and upstream connections (SPEC §6,
 * RFC 9112). Internal to the core; never included by a module.
 *
 * Life of a message on a connection, as the proxy drives it:
 *
 *   1. h1_scan_head() (or h1_scan_head_r()) on the bytes received so far
 *      until it returns the head length (> 0) or an error (< 0).
 *   2. h1_parse_request() / h1_parse_response() on exactly that head. The
 *      head bytes must stay alive and unchanged as long as the result is used:
 *      method, target, header names and values point into them.
 *   3. h1_body_feed() on the bytes after the head, and on every later receive,
 *      until *done; bytes it did not consume belong to the next message.
 *      For a close-delimited response, h1_body_eof() at EOF.
 *   4. h1_parser_reset(), then back to 1 with the leftover bytes.
 *
 * Errors are negative HTTP status codes (-400, -414, -431, -501, -505). For
 * requests the proxy answers with that status and closes; for responses any
 * negative value means "invalid upstream response" (the proxy sends 502 and
 * does not pool the connection) and the exact value is only diagnostic.
 *
 * Strictness decisions (why: every one of these is a known smuggling vector
 * or a place where Debian's llhttp 8.1 is more lenient than RFC 9112):
 *  - Line ends are CRLF only: a bare LF, or a CR not followed by LF anywhere in
 *    the head (including "\r\n\rX", which llhttp 8.1 reads as the end of the
 *    head), is 400.
 *  - Field names are 1*tchar followed directly by ':'; values may hold HTAB,
 *    SP, VCHAR and obs-text (0x80-0xff) only. obs-fold is 400.
 *  - Up to 16 empty lines (CRLF) before the request line are skipped as RFC
 *    9112 §2.2 recommends (old clients send one after a POST body).
 *  - Versions: "HTTP/1.0" and "HTTP/1.1" only. Any other well-formed
 *    "HTTP/d.d" (2.0, 1.2, 0.9, 3.0) is 505; anything else is 400.
 *  - Request line: longer than H1_MAX_START_LINE bytes (without CRLF) is 414,
 *    detected before the line ends. The request-target is VCHAR only
 *    (no obs-text) and a '#' in it is 400.
 *  - max_header_size limits the header section: everything after the start
 *    line up to and including the final CRLF (so the whole head is at most
 *    H1_MAX_START_LINE + 2 + max_header_size bytes). Over it: 431, detected
 *    as bytes arrive.
 *  - Content-Length: 1*DIGIT (leading zeros allowed) up to 2^63-1; any
 *    repeated Content-Length field line is 400, even with an identical value,
 *    and so is a comma list ("5, 5") — llhttp 8.1 rejects identical
 *    duplicates as well, so accepting them would only hide a disagreement.
 *  - Transfer-Encoding (requests): with Content-Length, in HTTP/1.0, not a
 *    valid token list, with parameters, "chunked" twice, or a final coding
 *    other than chunked: 400. A list ending in chunked with other codings
 *    before it ("gzip, chunked", "foo, chunked"): 501, weir decodes none.
 *    Responses: only exactly "chunked" is accepted (we could not forward
 *    another coding after dropping the header).
 *  - Host: required in HTTP/1.1, never repeated, value uri-host [":" port]
 *    with uri-host a reg-name (RFC 3986 chars and %HH), an IPv4 address or a
 *    bracketed IPv6 literal; an empty Host or empty port is 400.
 *  - Methods: CONNECT is 501 (weir is not a forward proxy); a well-formed
 *    method llhttp does not know is 501.
 *  - Request targets: origin-form, absolute-form with scheme http or https
 *    (no userinfo; the Host then comes from the target), and "*" for OPTIONS.
 *  - Connection naming Content-Length, Transfer-Encoding or Host: 400.
 *  - Hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection, TE,
 *    Trailer, Transfer-Encoding, Upgrade, every field named in Connection),
 *    Content-Length, and underscore spellings of these ("Transfer_Encoding")
 *    are removed from the parsed header list (slots with name.len == 0).
 *  - Bodies are decoded by weir's own strict chunked decoder rather than
 *    llhttp 8.1, which accepts whitespace after the chunk size, bare LF and
 *    Content-Length in trailers, and cannot stop in on_body when the caller's
 *    slice array is full. llhttp still parses every head, as a second opinion:
 *    it must accept it and see exactly the method, target and field lines
 *    weir saw, or the message is 400.
 */
#ifndef WEIR_H1_H
#define WEIR_H1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <llhttp.h>

#include "headers.h"
#include "weir/module.h"

struct arena;

/* Longest request line or status line accepted, without its CRLF. A longer
 * request line is 414. */
#define H1_MAX_START_LINE 8192
/* Longest trailer section accepted in a chunked body (bytes after the last
 * chunk's size line); over it is 431. */
#define H1_MAX_TRAILERS 16384
/* Longest chunk-size line (size and extensions, without CRLF); over it 400. */
#define H1_MAX_CHUNK_LINE 4096

/* Constant pieces of chunked output the proxy writes itself. */
#define H1_CRLF "\r\n"
#define H1_LAST_CHUNK "0\r\n\r\n"

typedef enum h1_framing {
    H1_FRAMING_NONE = 0, /* no body (or the body is not sent: HEAD, 204, 304, 1xx) */
    H1_FRAMING_LENGTH,   /* content_length bytes */
    H1_FRAMING_CHUNKED,  /* chunked */
    H1_FRAMING_CLOSE,    /* responses only: the body runs until the upstream closes */
} h1_framing_t;

/* ------------------------------------------------------------ head scanning */

/* Resumable scan state: zero it (or h1_scan_init) before the first call on a
 * new message; it remembers how far the buffer has been validated. */
typedef struct h1_scan {
    size_t next;       /* start of the first line not yet validated */
    size_t start_end;  /* offset just past the start line, 0 until it is seen */
} h1_scan_t;

static inline void h1_scan_init(h1_scan_t *s)
{
    s->next = s->start_end = 0;
}

/* Finds and validates a complete message head at the start of buf[0..len).
 * is_request selects request-line (1) or status-line (0) rules.
 * Returns the head length (start line, field lines and the final empty line,
 * so buf[ret] is the first body byte) when a complete valid head is present;
 * 0 when more bytes are needed and nothing invalid was seen so far; or a
 * negative status: -400 malformed, -414 request line too long, -431 header
 * section over max_header_size, -505 unsupported HTTP version.
 * Stateless: call it again on the whole accumulated buffer after each
 * receive. Work is one memchr per line plus a table lookup per byte. */
ssize_t h1_scan_head(const char *buf, size_t len, size_t max_header_size, int is_request);

/* As h1_scan_head, but lines already validated by an earlier call with the
 * same state are not looked at again. buf must hold the same bytes as before
 * (it may have been moved or grown). Reset the state for each new message. */
ssize_t h1_scan_head_r(h1_scan_t *st, const char *buf, size_t len, size_t max_header_size,
                       int is_request);

/* ----------------------------------------------------------------- parsing */

/* Per-connection parser: one for the client side (requests), one for each
 * upstream connection (responses). Embed it anywhere; h1_parser_init once,
 * then parse/feed/reset per message. Fields are private to the codec. */
typedef struct h1_parser {
    llhttp_t ll;
    /* llhttp cross-check of the head */
    const header_entry_t *xv; /* fields weir found, in order */
    size_t xn, xi;
    const char *span, *span_end; /* current llhttp span being delivered */
    weir_str_t xmethod, xtarget, xreason;
    int xbad;
    int xheaders_done;
    /* body decoder */
    h1_framing_t framing;
    int done;
    int cstate;          /* chunked decoder state */
    uint64_t remaining;  /* LENGTH: bytes left; CHUNKED: bytes left in chunk */
    size_t line_bytes;   /* bytes of the current chunk-size line */
    size_t trailer_bytes;
    size_t tname_len;    /* current trailer name length */
    char tname[20];      /* its first bytes, lowercased, '_' as '-' */
} h1_parser_t;

typedef struct h1_request {
    weir_str_t method;  /* into head */
    weir_str_t target;  /* raw request-target, into head */
    weir_str_t path;    /* path part (absolute-form: of the target; "/" if empty) */
    weir_str_t query;   /* after '?', without it; data == NULL when no '?' */
    int version;        /* 10 or 11 */
    /* Field lines in order, names and values into head (values without
     * surrounding whitespace). Removed fields keep their slot with
     * name.len == 0. Host stays in the list; for absolute-form its value is
     * replaced by the authority of the target. */
    weir_headers_t headers;
    weir_str_t host;      /* lowercased, no port, in the arena; "" for HTTP/1.0 without Host */
    weir_str_t authority; /* host[:port] as received (target authority or Host value) */
    int absolute_form;
    h1_framing_t framing; /* NONE, LENGTH or CHUNKED */
    uint64_t content_length; /* LENGTH only */
    int keepalive;        /* the client connection may carry another request */
    int expect_continue;  /* HTTP/1.1 with "Expect: 100-continue" */
    int upgrade;          /* Upgrade field present and Connection lists "upgrade" */
    weir_str_t upgrade_value; /* the Upgrade field value when upgrade, into head */
} h1_request_t;

typedef struct h1_response {
    int status;
    weir_str_t reason;    /* into head, may be empty */
    int version;          /* 10 or 11 */
    weir_headers_t headers; /* as for requests: hop-by-hop, CL and TE removed */
    h1_framing_t framing;
    uint64_t content_length; /* valid when has_content_length */
    int has_content_length;  /* also set for HEAD/304 responses with framing NONE,
                              * so the proxy may echo the length */
    int keepalive;        /* the upstream connection may be reused after this response */
    int is_1xx;           /* 100-199 except 101: not final, parse the next head */
    int upgrade;          /* 101 with an Upgrade field */
    weir_str_t upgrade_value;
} h1_response_t;

/* Zeroes the parser. Call once before first use. */
void h1_parser_init(h1_parser_t *p);

/* Prepares p for the next message on the same connection once h1_body_feed
 * reported done (or after an error, before closing). */
void h1_parser_reset(h1_parser_t *p);

/* 1 when llhttp knows the request method (HTTP/1 answers any other 501). */
int h1_method_known(weir_str_t method);

/* Parses a request head that h1_scan_head(..., is_request = 1) accepted;
 * len is the value it returned. Fills *out (headers and host allocated in
 * the arena, everything else pointing into head, which the caller keeps
 * alive and unchanged for the request's lifetime) and sets up p to decode
 * the body. Returns 0, or a negative status (-400, -501; -500 when the arena
 * is exhausted). On error *out is unspecified. */
int h1_parse_request(struct arena *a, h1_parser_t *p, const char *head, size_t len,
                     h1_request_t *out);

/* Parses a response head that h1_scan_head(..., is_request = 0) accepted.
 * request_method_is_head: the request was HEAD (no body follows).
 * Same ownership as h1_parse_request. Returns 0 or a negative value (invalid
 * response: 502 for the client, close the upstream connection). For a 1xx
 * response (is_1xx), no body follows: h1_parser_reset and scan the next
 * head. */
int h1_parse_response(struct arena *a, h1_parser_t *p, const char *head, size_t len,
                      int request_method_is_head, h1_response_t *out);

/* ------------------------------------------------------------ body decoding */

/* Decodes body bytes in[0..len) of the current message, zero-copy: fills
 * out[0..max_out) with payload slices pointing into in (chunk sizes,
 * extensions, CRLFs and trailers removed; trailers are validated and
 * dropped) and sets *nout to their number. max_out must be >= 1.
 * Returns the number of bytes of in consumed, or a negative status (-400
 * malformed chunked framing or trailer, -431 trailers over H1_MAX_TRAILERS).
 * Consumes less than len when the message ended (*done = 1; the rest is the
 * next pipelined message) or when out[] is full (*done = 0; call again with
 * in + consumed). Slices stay valid as long as in does. Once done, further
 * calls return 0 with *done = 1. Framing NONE is done at once. */
ssize_t h1_body_feed(h1_parser_t *p, const char *in, size_t len, weir_str_t *out, size_t max_out,
                     size_t *nout, int *done);

/* Call when the peer closed the connection. Returns 1 when that is a legal
 * end of the current message (close-delimited response, or the message was
 * already complete or has no body; the message is then done), 0 when the
 * message was cut short (Content-Length or chunked incomplete: abort the
 * other side rather than pretend the message completed). */
int h1_body_eof(h1_parser_t *p);

/* ----------------------------------------------------------- serialisation */

/* Exact size of what h1_serialize_request writes with the same arguments. */
size_t h1_request_size(weir_str_t method, weir_str_t path, weir_str_t query, weir_str_t host,
                       const weir_headers_t *h, h1_framing_t framing, uint64_t content_length);

/* Writes an HTTP/1.1 request head into buf:
 *   METHOD SP path ["?" query] SP "HTTP/1.1" CRLF "Host: " host CRLF
 *   the fields of h in order (removed slots, Host, Content-Length and
 *   Transfer-Encoding skipped) "Content-Length: N" (LENGTH) or
 *   "Transfer-Encoding: chunked" (CHUNKED) CRLF
 * path "" is written as "/"; '?' is written when query.data != NULL. h may be
 * NULL. Returns the bytes written (no NUL), -1 when cap is too small, -2 when
 * a field name is not a token or a value (or method, path, query, host)
 * holds CR, LF or NUL (a module bug that would allow request splitting). */
ssize_t h1_serialize_request(char *buf, size_t cap, weir_str_t method, weir_str_t path,
                             weir_str_t query, weir_str_t host, const weir_headers_t *h,
                             h1_framing_t framing, uint64_t content_length);

/* Exact size of what h1_serialize_response writes with the same arguments. */
size_t h1_response_size(int version, int status, weir_str_t reason, const weir_headers_t *h,
                        h1_framing_t framing, uint64_t content_length, int keepalive);

/* Writes a response head: "HTTP/1.x SP status SP reason CRLF" (version 10 or
 * 11; reason.len == 0 uses h1_reason(status)), the fields of h (removed
 * slots, Content-Length and Transfer-Encoding skipped), "Connection: close"
 * when !keepalive or "Connection: keep-alive" for HTTP/1.0 keepalive,
 * "Content-Length: N" (LENGTH) or "Transfer-Encoding: chunked" (CHUNKED;
 * callers must not use it for HTTP/1.0), CRLF. NONE and CLOSE write no
 * framing field. Returns as h1_serialize_request. */
ssize_t h1_serialize_response(char *buf, size_t cap, int version, int status, weir_str_t reason,
                              const weir_headers_t *h, h1_framing_t framing,
                              uint64_t content_length, int keepalive);

/* Writes the chunk-size line for a chunk of n > 0 bytes ("<hex>\r\n", no
 * NUL) and returns its length (at most 18). The chunk is followed by H1_CRLF
 * and the body by H1_LAST_CHUNK. */
size_t h1_chunk_header(char buf[20], size_t n);
/* v in decimal at d (at most 20 bytes, no NUL); returns the end. */
char *h1_put_u64(char *d, uint64_t v);

/* Reason phrase for a status code, static; a generic phrase per class for
 * codes without one. */
const char *h1_reason(int status);

/* 1xx, 204 and 304 responses never have content (RFC 9110 §6.4.1). */
static inline int h1_status_has_no_body(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* ------------------------------------------- shared by the codec's own files */

#define H1_C_TCHAR 0x01  /* token character */
#define H1_C_VALUE 0x02  /* field-value byte: HTAB, SP, VCHAR, obs-text */
#define H1_C_TARGET 0x04 /* request-target byte: VCHAR except '#' */
#define H1_C_HEX 0x08
#define H1_C_REGNAME 0x10 /* reg-name byte except '%' */
#define H1_C_QDTEXT 0x20  /* quoted-string text byte */

extern const uint8_t h1_ctype[256];

static inline int h1_is(unsigned char c, uint8_t cls)
{
    return (h1_ctype[c] & cls) != 0;
}

/* Parses 1*DIGIT into *v (<= INT64_MAX). 0 or -1. */
int h1_parse_uint(weir_str_t s, uint64_t *v);
/* uri-host [":" port] (a Host value, an HTTP/2 :authority): *host gets the
 * uri-host part. 0 or -400. */
int h1_parse_authority(weir_str_t v, weir_str_t *host);
/* Sets up the body decoder after a head was parsed (h1_parse_*). */
void h1_body_start(h1_parser_t *p, h1_framing_t framing, uint64_t content_length);
/* Case-insensitive name comparison treating '_' like '-': 0 no match, 1 the
 * exact name, 2 an underscore spelling of it. lit is lowercase. */
int h1_name_match(weir_str_t name, const char *lit, size_t litlen);

#endif
