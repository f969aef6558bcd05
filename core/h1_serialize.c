/*
 * Serialisation of heads weir sends. Nothing the peer sent is copied through
 * verbatim: the start line, kept fields and framing are written anew, so
 * whatever the client's framing was, the upstream sees exactly one.
 */
#include "h1.h"

#include <string.h>

/* Fields never copied from a list because the serialiser writes its own. */
static int skipped(weir_str_t name, int skip_host)
{
    switch (name.len) {
    case 0:
        return 1; /* removed slot */
    case 4:
        return skip_host && h1_name_match(name, "host", 4) == 1;
    case 14:
        return h1_name_match(name, "content-length", 14) != 0;
    case 17:
        return h1_name_match(name, "transfer-encoding", 17) != 0;
    }
    return 0;
}

static int has_crlf_nul(weir_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        char c = s.data[i];
        if (c == '\r' || c == '\n' || c == '\0')
            return 1;
    }
    return 0;
}

static int bad_fields(const weir_headers_t *h, int skip_host)
{
    if (!h)
        return 0;
    for (size_t i = 0; i < h->n; i++) {
        const header_entry_t *e = &h->v[i];
        if (skipped(e->name, skip_host))
            continue;
        for (size_t j = 0; j < e->name.len; j++)
            if (!h1_is((unsigned char)e->name.data[j], H1_C_TCHAR))
                return 1;
        if (has_crlf_nul(e->value))
            return 1;
    }
    return 0;
}

static size_t fields_size(const weir_headers_t *h, int skip_host)
{
    size_t n = 0;
    if (!h)
        return 0;
    for (size_t i = 0; i < h->n; i++)
        if (!skipped(h->v[i].name, skip_host))
            n += h->v[i].name.len + 2 + h->v[i].value.len + 2;
    return n;
}

static size_t udigits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static size_t framing_size(h1_framing_t framing, uint64_t content_length)
{
    if (framing == H1_FRAMING_LENGTH)
        return sizeof("Content-Length: \r\n") - 1 + udigits(content_length);
    if (framing == H1_FRAMING_CHUNKED)
        return sizeof("Transfer-Encoding: chunked\r\n") - 1;
    return 0;
}

static char *put(char *d, const char *s, size_t n)
{
    memcpy(d, s, n);
    return d + n;
}

#define PUTLIT(d, lit) put(d, lit, sizeof(lit) - 1)

static char *put_fields(char *d, const weir_headers_t *h, int skip_host)
{
    if (!h)
        return d;
    for (size_t i = 0; i < h->n; i++) {
        const header_entry_t *e = &h->v[i];
        if (skipped(e->name, skip_host))
            continue;
        d = put(d, e->name.data, e->name.len);
        d = PUTLIT(d, ": ");
        d = put(d, e->value.data, e->value.len);
        d = PUTLIT(d, "\r\n");
    }
    return d;
}

char *h1_put_u64(char *d, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *d++ = tmp[--n];
    return d;
}

static char *put_framing(char *d, h1_framing_t framing, uint64_t content_length)
{
    if (framing == H1_FRAMING_LENGTH) {
        d = PUTLIT(d, "Content-Length: ");
        d = h1_put_u64(d, content_length);
        d = PUTLIT(d, "\r\n");
    } else if (framing == H1_FRAMING_CHUNKED) {
        d = PUTLIT(d, "Transfer-Encoding: chunked\r\n");
    }
    return d;
}

size_t h1_request_size(weir_str_t method, weir_str_t path, weir_str_t query, weir_str_t host,
                       const weir_headers_t *h, h1_framing_t framing, uint64_t content_length)
{
    size_t n = method.len + 1 + (path.len ? path.len : 1) + (query.data ? 1 + query.len : 0) +
               sizeof(" HTTP/1.1\r\nHost: \r\n") - 1 + host.len;
    return n + fields_size(h, 1) + framing_size(framing, content_length) + 2;
}

ssize_t h1_serialize_request(char *buf, size_t cap, weir_str_t method, weir_str_t path,
                             weir_str_t query, weir_str_t host, const weir_headers_t *h,
                             h1_framing_t framing, uint64_t content_length)
{
    if (method.len == 0 || has_crlf_nul(method) || has_crlf_nul(path) || has_crlf_nul(query) ||
        has_crlf_nul(host) || bad_fields(h, 1))
        return -2;
    for (size_t i = 0; i < method.len; i++)
        if (!h1_is((unsigned char)method.data[i], H1_C_TCHAR))
            return -2;
    size_t need = h1_request_size(method, path, query, host, h, framing, content_length);
    if (need > cap)
        return -1;
    char *d = buf;
    d = put(d, method.data, method.len);
    *d++ = ' ';
    d = path.len ? put(d, path.data, path.len) : PUTLIT(d, "/");
    if (query.data) {
        *d++ = '?';
        d = put(d, query.data, query.len);
    }
    d = PUTLIT(d, " HTTP/1.1\r\nHost: ");
    d = put(d, host.data, host.len);
    d = PUTLIT(d, "\r\n");
    d = put_fields(d, h, 1);
    d = put_framing(d, framing, content_length);
    d = PUTLIT(d, "\r\n");
    return (ssize_t)(d - buf);
}

static const char *connection_field(int version, int keepalive)
{
    if (!keepalive)
        return "Connection: close\r\n";
    if (version == 10)
        return "Connection: keep-alive\r\n";
    return "";
}

size_t h1_response_size(int version, int status, weir_str_t reason, const weir_headers_t *h,
                        h1_framing_t framing, uint64_t content_length, int keepalive)
{
    size_t rlen = reason.len ? reason.len : strlen(h1_reason(status));
    return sizeof("HTTP/1.1 200 \r\n") - 1 + rlen + fields_size(h, 0) +
           strlen(connection_field(version, keepalive)) + framing_size(framing, content_length) +
           2;
}

ssize_t h1_serialize_response(char *buf, size_t cap, int version, int status, weir_str_t reason,
                              const weir_headers_t *h, h1_framing_t framing,
                              uint64_t content_length, int keepalive)
{
    if (status < 100 || status > 999 || (version != 10 && version != 11) ||
        has_crlf_nul(reason) || bad_fields(h, 0))
        return -2;
    size_t need = h1_response_size(version, status, reason, h, framing, content_length, keepalive);
    if (need > cap)
        return -1;
    if (!reason.len)
        reason = (weir_str_t){h1_reason(status), strlen(h1_reason(status))};
    char *d = buf;
    d = PUTLIT(d, "HTTP/1.");
    *d++ = version == 10 ? '0' : '1';
    *d++ = ' ';
    *d++ = (char)('0' + status / 100);
    *d++ = (char)('0' + status / 10 % 10);
    *d++ = (char)('0' + status % 10);
    *d++ = ' ';
    d = put(d, reason.data, reason.len);
    d = PUTLIT(d, "\r\n");
    d = put_fields(d, h, 0);
    const char *conn = connection_field(version, keepalive);
    d = put(d, conn, strlen(conn));
    d = put_framing(d, framing, content_length);
    d = PUTLIT(d, "\r\n");
    return (ssize_t)(d - buf);
}

size_t h1_chunk_header(char buf[20], size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t k = 0;
    do {
        tmp[k++] = hex[n & 15];
        n >>= 4;
    } while (n);
    size_t len = 0;
    while (k)
        buf[len++] = tmp[--k];
    buf[len++] = '\r';
    buf[len++] = '\n';
    return len;
}

const char *h1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 208: return "Already Reported";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 511: return "Network Authentication Required";
    }
    switch (status / 100) {
    case 1: return "Informational";
    case 2: return "Success";
    case 3: return "Redirection";
    case 4: return "Client Error";
    case 5: return "Server Error";
    }
    return "Unknown";
}
