/*
 * Body decoding: Content-Length counting, close-delimited pass-through and a
 * strict, streaming, zero-copy chunked decoder (RFC 9112 §7.1). It is weir's
 * own rather than llhttp 8.1's because that one accepts whitespace after the
 * chunk size, bare LF and Content-Length in trailers, and cannot stop in the
 * middle of a body when the caller's slice array is full. The decoder keeps
 * only a state number and counters, so input may be split at any byte.
 */
#include "h1.h"

#include <string.h>

enum chunk_state {
    CS_SIZE0 = 0,    /* first hex digit of a chunk size */
    CS_SIZE,         /* more hex digits */
    CS_BWS,          /* whitespace that must be followed by ';' */
    CS_EXT_PRE_NAME, /* after ';' */
    CS_EXT_NAME,
    CS_EXT_POST_NAME, /* whitespace after a name: '=' or ';' must follow */
    CS_EXT_PRE_VAL,   /* after '=' */
    CS_EXT_VAL,       /* token value */
    CS_EXT_QVAL,      /* quoted-string value */
    CS_EXT_QPAIR,     /* after a backslash in it */
    CS_EXT_AFTER_Q,   /* after the closing quote */
    CS_SIZE_LF,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TR_START, /* start of a trailer line, or the final CRLF */
    CS_TR_NAME,
    CS_TR_VALUE,
    CS_TR_LF,
    CS_END_LF,
    CS_ERROR,
};

void h1_parser_init(h1_parser_t *p)
{
    memset(p, 0, sizeof(*p));
}

void h1_body_start(h1_parser_t *p, h1_framing_t framing, uint64_t content_length)
{
    p->framing = framing;
    p->remaining = framing == H1_FRAMING_LENGTH ? content_length : 0;
    p->done = 0;
    p->cstate = CS_SIZE0;
    p->line_bytes = 0;
    p->trailer_bytes = 0;
    p->tname_len = 0;
}

void h1_parser_reset(h1_parser_t *p)
{
    h1_body_start(p, H1_FRAMING_NONE, 0);
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Trailers are dropped, but ones that would change framing or routing if a
 * later hop merged them are refused outright. */
static int forbidden_trailer(const h1_parser_t *p)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "host"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (p->tname_len == strlen(names[i]) && memcmp(p->tname, names[i], p->tname_len) == 0)
            return 1;
    return 0;
}

static ssize_t fail(h1_parser_t *p, int status)
{
    p->cstate = CS_ERROR;
    p->remaining = (uint64_t)-status;
    return status;
}

static ssize_t feed_chunked(h1_parser_t *p, const char *in, size_t len, weir_str_t *out,
                            size_t max_out, size_t *nout, int *done)
{
    size_t i = 0, k = 0;
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        int st = p->cstate;
        if (st == CS_DATA) {
            if (k == max_out)
                break;
            size_t n = len - i;
            if (n > p->remaining)
                n = (size_t)p->remaining;
            out[k++] = (weir_str_t){in + i, n};
            i += n;
            p->remaining -= n;
            if (!p->remaining)
                p->cstate = CS_DATA_CR;
            continue;
        }
        if (st <= CS_SIZE_LF && ++p->line_bytes > H1_MAX_CHUNK_LINE + 2)
            return fail(p, -400);
        if (st >= CS_TR_START && st <= CS_END_LF && ++p->trailer_bytes > H1_MAX_TRAILERS)
            return fail(p, -431);
        switch (st) {
        case CS_SIZE0:
        case CS_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                /* Refuse sizes past 2^63-1 instead of wrapping. */
                if (p->remaining >> 59)
                    return fail(p, -400);
                p->remaining = (p->remaining << 4) | (uint64_t)v;
                p->cstate = CS_SIZE;
            } else if (st == CS_SIZE0) {
                return fail(p, -400);
            } else if (is_ws(c)) {
                p->cstate = CS_BWS;
            } else if (c == ';') {
                p->cstate = CS_EXT_PRE_NAME;
            } else if (c == '\r') {
                p->cstate = CS_SIZE_LF;
            } else {
                return fail(p, -400);
            }
            break;
        }
        case CS_BWS:
            if (c == ';')
                p->cstate = CS_EXT_PRE_NAME;
            else if (!is_ws(c))
                return fail(p, -400);
            break;
        case CS_EXT_PRE_NAME:
            if (h1_is(c, H1_C_TCHAR))
                p->cstate = CS_EXT_NAME;
            else if (!is_ws(c))
                return fail(p, -400);
            break;
        case CS_EXT_NAME:
            if (h1_is(c, H1_C_TCHAR))
                break;
            if (is_ws(c))
                p->cstate = CS_EXT_POST_NAME;
            else if (c == '=')
                p->cstate = CS_EXT_PRE_VAL;
            else if (c == ';')
                p->cstate = CS_EXT_PRE_NAME;
            else if (c == '\r')
                p->cstate = CS_SIZE_LF;
            else
                return fail(p, -400);
            break;
        case CS_EXT_POST_NAME:
            if (c == '=')
                p->cstate = CS_EXT_PRE_VAL;
            else if (c == ';')
                p->cstate = CS_EXT_PRE_NAME;
            else if (!is_ws(c))
                return fail(p, -400);
            break;
        case CS_EXT_PRE_VAL:
            if (h1_is(c, H1_C_TCHAR))
                p->cstate = CS_EXT_VAL;
            else if (c == '"')
                p->cstate = CS_EXT_QVAL;
            else if (!is_ws(c))
                return fail(p, -400);
            break;
        case CS_EXT_VAL:
        case CS_EXT_AFTER_Q:
            if (st == CS_EXT_VAL && h1_is(c, H1_C_TCHAR))
                break;
            if (is_ws(c))
                p->cstate = CS_BWS;
            else if (c == ';')
                p->cstate = CS_EXT_PRE_NAME;
            else if (c == '\r')
                p->cstate = CS_SIZE_LF;
            else
                return fail(p, -400);
            break;
        case CS_EXT_QVAL:
            if (c == '\\')
                p->cstate = CS_EXT_QPAIR;
            else if (c == '"')
                p->cstate = CS_EXT_AFTER_Q;
            else if (!h1_is(c, H1_C_QDTEXT))
                return fail(p, -400);
            break;
        case CS_EXT_QPAIR:
            if (!h1_is(c, H1_C_VALUE))
                return fail(p, -400);
            p->cstate = CS_EXT_QVAL;
            break;
        case CS_SIZE_LF:
            if (c != '\n')
                return fail(p, -400);
            p->line_bytes = 0;
            p->cstate = p->remaining ? CS_DATA : CS_TR_START;
            break;
        case CS_DATA_CR:
            if (c != '\r')
                return fail(p, -400);
            p->cstate = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (c != '\n')
                return fail(p, -400);
            p->cstate = CS_SIZE0;
            break;
        case CS_TR_START:
            if (c == '\r') {
                p->cstate = CS_END_LF;
                break;
            }
            /* SP/HTAB here would be obs-fold, ':' an empty name. */
            if (!h1_is(c, H1_C_TCHAR))
                return fail(p, -400);
            p->tname_len = 0;
            p->cstate = CS_TR_NAME;
            /* fall through */
        case CS_TR_NAME:
            if (c == ':') {
                if (forbidden_trailer(p))
                    return fail(p, -400);
                p->cstate = CS_TR_VALUE;
            } else if (h1_is(c, H1_C_TCHAR)) {
                if (p->tname_len < sizeof(p->tname)) {
                    char l = (char)(c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? (c | 0x20) : c);
                    p->tname[p->tname_len] = l;
                }
                p->tname_len++;
            } else {
                return fail(p, -400);
            }
            break;
        case CS_TR_VALUE:
            if (c == '\r')
                p->cstate = CS_TR_LF;
            else if (!h1_is(c, H1_C_VALUE))
                return fail(p, -400);
            break;
        case CS_TR_LF:
            if (c != '\n')
                return fail(p, -400);
            p->cstate = CS_TR_START;
            break;
        case CS_END_LF:
            if (c != '\n')
                return fail(p, -400);
            i++;
            p->done = 1;
            *nout = k;
            *done = 1;
            return (ssize_t)i;
        default:
            return (ssize_t) - (int)p->remaining;
        }
        i++;
    }
    *nout = k;
    return (ssize_t)i;
}

ssize_t h1_body_feed(h1_parser_t *p, const char *in, size_t len, weir_str_t *out, size_t max_out,
                     size_t *nout, int *done)
{
    *nout = 0;
    *done = 0;
    if (p->cstate == CS_ERROR)
        return -(ssize_t)p->remaining;
    if (p->done) {
        *done = 1;
        return 0;
    }
    switch (p->framing) {
    case H1_FRAMING_NONE:
        p->done = *done = 1;
        return 0;
    case H1_FRAMING_LENGTH: {
        size_t n = 0;
        if (p->remaining && len && max_out) {
            n = len < p->remaining ? len : (size_t)p->remaining;
            out[0] = (weir_str_t){in, n};
            *nout = 1;
            p->remaining -= n;
        }
        if (!p->remaining)
            p->done = *done = 1;
        return (ssize_t)n;
    }
    case H1_FRAMING_CLOSE:
        if (!len || !max_out)
            return 0;
        out[0] = (weir_str_t){in, len};
        *nout = 1;
        return (ssize_t)len;
    case H1_FRAMING_CHUNKED:
        if (!max_out)
            return 0;
        return feed_chunked(p, in, len, out, max_out, nout, done);
    }
    return -400;
}

int h1_body_eof(h1_parser_t *p)
{
    if (p->cstate == CS_ERROR)
        return 0;
    if (p->done || p->framing == H1_FRAMING_NONE || p->framing == H1_FRAMING_CLOSE ||
        (p->framing == H1_FRAMING_LENGTH && p->remaining == 0)) {
        p->done = 1;
        return 1;
    }
    return 0;
}
