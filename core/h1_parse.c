/*
 * Head parsing. The head was fully validated by h1_scan_head, so splitting it
 * into lines and fields here is simple pointer work; the semantic rules
 * (framing, Host, Connection) are weir's own so the statuses are exactly the
 * documented ones. llhttp then parses the same bytes and must see the same
 * method, target, version and field lines: a disagreement means one of the
 * two parsers would desynchronise from the other, and the message is refused.
 */
#include "h1.h"

#include <string.h>
#include <strings.h>

#include "arena.h"

enum field_kind {
    FK_OTHER = 0,
    FK_HOST,
    FK_CL,
    FK_TE,
    FK_CONNECTION,
    FK_UPGRADE,
    FK_EXPECT,
    FK_HOP, /* other hop-by-hop fields: removed, nothing to record */
};
#define KIND_REMOVED 0x80



/* What the field lines say about framing and the connection. */
struct fields {
    header_entry_t *host;
    size_t n_host;
    weir_str_t cl;
    size_t n_cl;
    size_t n_te_lines;
    size_t n_te_codings;
    int te_last_chunked;
    int te_chunked_count;
    int te_malformed;
    int has_connection;
    int conn_close, conn_keepalive, conn_upgrade, conn_bad, conn_other;
    weir_str_t upgrade;
    size_t n_upgrade;
    int expect_continue;
    uint8_t *kind; /* per field: enum field_kind | KIND_REMOVED */
};

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static weir_str_t trim(const char *s, const char *e)
{
    while (s < e && is_ows(*s))
        s++;
    while (e > s && is_ows(e[-1]))
        e--;
    return (weir_str_t){s, (size_t)(e - s)};
}

/* Kind of a field by name; *removed is set for names that are never
 * forwarded (hop-by-hop, Content-Length, and underscore spellings of those,
 * which only count as removed, not as the real field). */
/* True for a name with '_' whose letters, ignoring '_' and '-', spell a
 * framing or hop-by-hop name ("Connection_", "_Transfer-Encoding"): such
 * spellings are never forwarded, since some servers fold '_' into '-' or
 * trim it. */
static int underscore_hop_spelling(weir_str_t n)
{
    static const char *const squashed[] = {"te", "trailer", "upgrade", "connection",
                                           "keepalive", "contentlength", "proxyconnection",
                                           "transferencoding"};
    char buf[32];
    size_t k = 0;
    if (!memchr(n.data, '_', n.len))
        return 0;
    for (size_t i = 0; i < n.len; i++) {
        char c = n.data[i];
        if (c == '_' || c == '-')
            continue;
        if (k == sizeof(buf) - 1)
            return 0;
        buf[k++] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
    }
    buf[k] = '\0';
    for (size_t i = 0; i < sizeof(squashed) / sizeof(squashed[0]); i++)
        if (strcmp(buf, squashed[i]) == 0)
            return 1;
    return 0;
}

static enum field_kind classify(weir_str_t n, int *removed)
{
    int m;
    *removed = 0;
    if (underscore_hop_spelling(n)) {
        *removed = 1;
        return FK_OTHER;
    }
#define MATCH(lit, kind, rm)                                                                   \
    do {                                                                                       \
        m = h1_name_match(n, lit, sizeof(lit) - 1);                                            \
        if (m == 1) {                                                                          \
            *removed = rm;                                                                     \
            return kind;                                                                       \
        }                                                                                      \
        if (m == 2) {                                                                          \
            *removed = 1;                                                                      \
            return FK_OTHER;                                                                   \
        }                                                                                      \
    } while (0)
    switch (n.len) {
    case 2:
        MATCH("te", FK_HOP, 1);
        break;
    case 4:
        MATCH("host", FK_HOST, 0);
        break;
    case 6:
        MATCH("expect", FK_EXPECT, 0);
        break;
    case 7:
        MATCH("trailer", FK_HOP, 1);
        MATCH("upgrade", FK_UPGRADE, 1);
        break;
    case 10:
        MATCH("connection", FK_CONNECTION, 1);
        MATCH("keep-alive", FK_HOP, 1);
        break;
    case 14:
        MATCH("content-length", FK_CL, 1);
        break;
    case 16:
        MATCH("proxy-connection", FK_HOP, 1);
        break;
    case 17:
        MATCH("transfer-encoding", FK_TE, 1);
        break;
    }
#undef MATCH
    return FK_OTHER;
}

static int token_eq(weir_str_t t, const char *lit)
{
    size_t n = strlen(lit);
    return t.len == n && strncasecmp(t.data, lit, n) == 0;
}

/* Walks a comma-separated list, skipping empty elements: the next element,
 * trimmed, in *el; 0 at the end. */
static int list_next(const char **pp, const char *end, weir_str_t *el)
{
    const char *p = *pp;
    for (;;) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        if (p == end)
            return 0;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        *el = trim(s, p);
        *pp = p;
        return 1;
    }
}

static int all_tchar(weir_str_t t)
{
    if (t.len == 0)
        return 0;
    for (size_t i = 0; i < t.len; i++)
        if (!h1_is((unsigned char)t.data[i], H1_C_TCHAR))
            return 0;
    return 1;
}

/* One Transfer-Encoding line: transfer-coding = token *( OWS ";" OWS param ). */
static void te_line(struct fields *f, weir_str_t v)
{
    const char *p = v.data, *end = v.data + v.len;
    weir_str_t el;
    size_t before = f->n_te_codings;
    f->n_te_lines++;
    while (list_next(&p, end, &el)) {
        size_t i = 0;
        while (i < el.len && h1_is((unsigned char)el.data[i], H1_C_TCHAR))
            i++;
        weir_str_t name = {el.data, i};
        int params = 0;
        if (i < el.len) {
            while (i < el.len && is_ows(el.data[i]))
                i++;
            if (i == el.len || el.data[i] != ';')
                f->te_malformed = 1;
            params = 1;
        }
        if (name.len == 0)
            f->te_malformed = 1;
        f->n_te_codings++;
        f->te_last_chunked = token_eq(name, "chunked");
        if (f->te_last_chunked) {
            f->te_chunked_count++;
            if (params)
                f->te_malformed = 1; /* chunked takes no parameters */
        }
    }
    if (f->n_te_codings == before)
        f->te_malformed = 1; /* empty value */
}

static void connection_line(struct fields *f, weir_str_t v)
{
    const char *p = v.data, *end = v.data + v.len;
    weir_str_t el;
    f->has_connection = 1;
    while (list_next(&p, end, &el)) {
        if (!all_tchar(el)) {
            f->conn_bad = 1;
        } else if (token_eq(el, "close")) {
            f->conn_close = 1;
        } else if (token_eq(el, "keep-alive")) {
            f->conn_keepalive = 1;
        } else if (token_eq(el, "upgrade")) {
            f->conn_upgrade = 1;
        } else if (token_eq(el, "content-length") || token_eq(el, "transfer-encoding") ||
                   token_eq(el, "host")) {
            /* A client asking us to drop the framing or Host while
             * forwarding is an attack, not a request. */
            f->conn_bad = 1;
        } else {
            f->conn_other = 1;
        }
    }
}

/* Splits the field lines after the start line into h (allocated exactly) and
 * records what they say in f. Nothing is removed yet: llhttp's cross-check
 * needs the raw names, see apply_removals. */
static int split_fields(struct arena *a, const char *s, const char *end, weir_headers_t *h,
                        struct fields *f)
{
    size_t n = 0;
    for (const char *q = s; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++)
        n++;
    n = n ? n - 1 : 0; /* the final empty line */
    memset(f, 0, sizeof(*f));
    headers_init(h);
    if (n) {
        h->v = arena_alloc_raw(a, n * sizeof(*h->v));
        f->kind = arena_alloc_raw(a, n);
        if (!h->v || !f->kind)
            return -500;
        h->cap = n;
    }
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *cr = nl - 1;
        if (cr == s)
            break;
        const char *colon = memchr(s, ':', (size_t)(cr - s));
        header_entry_t *e = &h->v[h->n];
        e->name = (weir_str_t){s, (size_t)(colon - s)};
        e->value = trim(colon + 1, cr);
        int removed;
        enum field_kind k = classify(e->name, &removed);
        f->kind[h->n++] = (uint8_t)(k | (removed ? KIND_REMOVED : 0));
        switch (k) {
        case FK_HOST:
            f->host = e;
            f->n_host++;
            break;
        case FK_CL:
            f->cl = e->value;
            f->n_cl++;
            break;
        case FK_TE:
            te_line(f, e->value);
            break;
        case FK_CONNECTION:
            connection_line(f, e->value);
            break;
        case FK_UPGRADE:
            if (!f->n_upgrade++)
                f->upgrade = e->value;
            break;
        case FK_EXPECT:
            if (token_eq(e->value, "100-continue"))
                f->expect_continue = 1;
            break;
        default:
            break;
        }
        s = nl + 1;
    }
    return 0;
}

/* Marks never-forwarded fields as removed (name.len = 0), including every
 * field named in a Connection header. */
static void apply_removals(weir_headers_t *h, const struct fields *f)
{
    for (size_t i = 0; i < h->n; i++) {
        if (!(f->kind[i] & KIND_REMOVED) && f->conn_other) {
            for (size_t j = 0; j < h->n; j++) {
                if ((f->kind[j] & ~KIND_REMOVED) == FK_CONNECTION &&
                    str_list_has_token(h->v[j].value, h->v[i].name)) {
                    h->v[i].name.len = 0;
                    break;
                }
            }
        }
    }
    for (size_t i = 0; i < h->n; i++)
        if (f->kind[i] & KIND_REMOVED)
            h->v[i].name.len = 0;
}

/* uri-host [ ":" port ]: *host gets the uri-host part. 0 or -400. */
int h1_parse_authority(weir_str_t v, weir_str_t *host)
{
    const char *p = v.data, *end = v.data + v.len;
    if (p == end)
        return -400;
    if (*p == '[') {
        const char *s = ++p;
        while (p < end && (h1_is((unsigned char)*p, H1_C_HEX) || *p == ':' || *p == '.'))
            p++;
        if (p == end || *p != ']' || p - s < 2)
            return -400;
        p++;
    } else {
        while (p < end && *p != ':') {
            if (*p == '%') {
                if (end - p < 3 || !h1_is((unsigned char)p[1], H1_C_HEX) ||
                    !h1_is((unsigned char)p[2], H1_C_HEX))
                    return -400;
                p += 3;
            } else if (h1_is((unsigned char)*p, H1_C_REGNAME)) {
                p++;
            } else {
                return -400;
            }
        }
        if (p == v.data)
            return -400;
    }
    host->data = v.data;
    host->len = (size_t)(p - v.data);
    if (p == end)
        return 0;
    if (*p != ':')
        return -400;
    uint64_t port;
    weir_str_t ps = {p + 1, (size_t)(end - p - 1)};
    if (ps.len > 5 || h1_parse_uint(ps, &port) < 0 || port > 65535)
        return -400;
    return 0;
}

static int lower_copy(struct arena *a, weir_str_t s, weir_str_t *out)
{
    char *d = arena_strndup_lower(a, s.data, s.len);
    if (!d)
        return -500;
    *out = (weir_str_t){d, s.len};
    return 0;
}

static void split_path(const char *s, const char *end, h1_request_t *out)
{
    const char *q = memchr(s, '?', (size_t)(end - s));
    if (s == end || *s != '/')
        out->path = WEIR_STR("/");
    else
        out->path = (weir_str_t){s, (size_t)((q ? q : end) - s)};
    out->query = q ? (weir_str_t){q + 1, (size_t)(end - q - 1)} : (weir_str_t){NULL, 0};
}

static int parse_target(h1_request_t *out)
{
    const char *t = out->target.data, *end = t + out->target.len;
    if (*t == '/') {
        split_path(t, end, out);
        return 0;
    }
    if (out->target.len == 1 && *t == '*') {
        if (!token_eq(out->method, "OPTIONS"))
            return -400;
        out->path = out->target;
        out->query = (weir_str_t){NULL, 0};
        return 0;
    }
    size_t skip;
    if (out->target.len > 7 && strncasecmp(t, "http://", 7) == 0)
        skip = 7;
    else if (out->target.len > 8 && strncasecmp(t, "https://", 8) == 0)
        skip = 8;
    else
        return -400;
    const char *s = t + skip, *p = s;
    while (p < end && *p != '/' && *p != '?')
        p++;
    out->authority = (weir_str_t){s, (size_t)(p - s)};
    out->absolute_form = 1;
    /* Userinfo is deprecated and only ever used to confuse. */
    if (memchr(s, '@', (size_t)(p - s)))
        return -400;
    split_path(p, end, out);
    return 0;
}

/* ----------------------------------------------------------- llhttp check */

static h1_parser_t *P(llhttp_t *ll)
{
    return ll->data;
}

static int on_span(llhttp_t *ll, const char *at, size_t len)
{
    h1_parser_t *p = P(ll);
    if (!p->span) {
        p->span = at;
        p->span_end = at + len;
    } else if (at == p->span_end) {
        p->span_end += len;
    } else {
        p->xbad = 1;
    }
    return 0;
}

/* Compares llhttp's current span with what weir found, then clears it. */
static void check_span(h1_parser_t *p, weir_str_t want, int trim_ows)
{
    weir_str_t got = {p->span, p->span ? (size_t)(p->span_end - p->span) : 0};
    if (trim_ows && got.data)
        got = trim(got.data, got.data + got.len);
    if (got.len != want.len || (got.len && got.data != want.data))
        p->xbad = 1;
    p->span = p->span_end = NULL;
}

static int on_method_complete(llhttp_t *ll)
{
    check_span(P(ll), P(ll)->xmethod, 0);
    return 0;
}

static int on_url_complete(llhttp_t *ll)
{
    check_span(P(ll), P(ll)->xtarget, 0);
    return 0;
}

static int on_status_complete(llhttp_t *ll)
{
    check_span(P(ll), P(ll)->xreason, 0);
    return 0;
}

static int on_version_complete(llhttp_t *ll)
{
    P(ll)->span = P(ll)->span_end = NULL;
    return 0;
}

static int on_field_complete(llhttp_t *ll)
{
    h1_parser_t *p = P(ll);
    if (p->xi >= p->xn) {
        p->xbad = 1;
        p->span = p->span_end = NULL;
        return 0;
    }
    check_span(p, p->xv[p->xi].name, 0);
    return 0;
}

static int on_value_complete(llhttp_t *ll)
{
    h1_parser_t *p = P(ll);
    if (p->xi >= p->xn) {
        p->xbad = 1;
        p->span = p->span_end = NULL;
        return 0;
    }
    check_span(p, p->xv[p->xi].value, 1);
    p->xi++;
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    P(ll)->xheaders_done = 1;
    /* Stop here: the body is decoded by h1_body_feed, not llhttp. */
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_url = on_span,
    .on_status = on_span,
    .on_method = on_span,
    .on_version = on_span,
    .on_header_field = on_span,
    .on_header_value = on_span,
    .on_headers_complete = on_headers_complete,
    .on_url_complete = on_url_complete,
    .on_status_complete = on_status_complete,
    .on_method_complete = on_method_complete,
    .on_version_complete = on_version_complete,
    .on_header_field_complete = on_field_complete,
    .on_header_value_complete = on_value_complete,
};

/* Runs llhttp over the head; 0 when it agrees with weir's reading. */
static int llhttp_agrees(h1_parser_t *p, llhttp_type_t type, const char *head, size_t len,
                         const weir_headers_t *h, int version)
{
    llhttp_init(&p->ll, type, &settings);
    p->ll.data = p;
    p->xv = h->v;
    p->xn = h->n;
    p->xi = 0;
    p->span = p->span_end = NULL;
    p->xbad = 0;
    p->xheaders_done = 0;
    llhttp_errno_t err = llhttp_execute(&p->ll, head, len);
    if (err == HPE_INVALID_METHOD)
        return -501;
    if (err != HPE_PAUSED || !p->xheaders_done || p->xbad || p->xi != p->xn)
        return -400;
    if (llhttp_get_error_pos(&p->ll) != head + len)
        return -400;
    if (p->ll.http_major != 1 || p->ll.http_minor != version % 10)
        return -400;
    return 0;
}

/* Whether an HTTP/1 request with this method would get past llhttp: HTTP/2
 * requests are held to the same list so that a method answers the same on
 * both (501 for one llhttp does not know). The common ones skip llhttp. */
int h1_method_known(weir_str_t m)
{
    static const char *const common[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
        if (m.len == strlen(common[i]) && memcmp(m.data, common[i], m.len) == 0)
            return 1; /* case matters: llhttp refuses "get" */
    char line[48];
    static const char tail[] = " / HTTP/1.1\r\n\r\n";
    if (m.len == 0 || m.len + sizeof(tail) > sizeof(line))
        return 0;
    memcpy(line, m.data, m.len);
    memcpy(line + m.len, tail, sizeof(tail) - 1);
    static const llhttp_settings_t none;
    llhttp_t ll;
    llhttp_init(&ll, HTTP_REQUEST, &none);
    return llhttp_execute(&ll, line, m.len + sizeof(tail) - 1) == HPE_OK;
}

/* ------------------------------------------------------------- requests */

/* Start of the first line that is not empty (leading CRLFs). */
static const char *skip_empty_lines(const char *s)
{
    while (s[0] == '\r' && s[1] == '\n')
        s += 2;
    return s;
}

int h1_parse_request(struct arena *a, h1_parser_t *p, const char *head, size_t len,
                     h1_request_t *out)
{
    struct fields f;
    const char *end = head + len;
    const char *line = skip_empty_lines(head);
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol || len < 4 || memcmp(end - 4, "\r\n\r\n", 4) != 0)
        return -400;
    eol--; /* the CR */

    memset(out, 0, sizeof(*out));
    const char *sp1 = memchr(line, ' ', (size_t)(eol - line));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp2 || eol - sp2 != 9)
        return -400;
    out->method = (weir_str_t){line, (size_t)(sp1 - line)};
    out->target = (weir_str_t){sp1 + 1, (size_t)(sp2 - sp1 - 1)};
    if (sp2[6] != '1' || (sp2[8] != '0' && sp2[8] != '1'))
        return -505;
    out->version = sp2[8] == '1' ? 11 : 10;

    /* weir is a reverse proxy: tunnelling arbitrary hosts is not offered. */
    if (token_eq(out->method, "CONNECT"))
        return -501;
    int r = parse_target(out);
    if (r < 0)
        return r;

    r = split_fields(a, eol + 2, end, &out->headers, &f);
    if (r < 0)
        return r;

    /* Host */
    if (f.n_host > 1 || (f.n_host == 0 && out->version == 11))
        return -400;
    weir_str_t host = {"", 0};
    if (f.n_host) {
        r = h1_parse_authority(f.host->value, &host);
        if (r < 0)
            return r;
        if (!out->absolute_form)
            out->authority = f.host->value;
    }
    if (out->absolute_form) {
        r = h1_parse_authority(out->authority, &host);
        if (r < 0)
            return r;
    } else if (!f.n_host) {
        out->authority = (weir_str_t){"", 0};
    }
    r = lower_copy(a, host, &out->host);
    if (r < 0)
        return r;

    /* Framing */
    if (f.conn_bad)
        return -400;
    if (f.n_cl > 1)
        return -400;
    if (f.n_te_lines) {
        if (out->version == 10 || f.n_cl || f.te_malformed || !f.te_last_chunked ||
            f.te_chunked_count > 1)
            return -400;
        if (f.n_te_codings > 1)
            return -501; /* a coding before chunked that weir does not decode */
        out->framing = H1_FRAMING_CHUNKED;
    } else if (f.n_cl) {
        if (h1_parse_uint(f.cl, &out->content_length) < 0)
            return -400;
        out->framing = H1_FRAMING_LENGTH;
    }

    if (out->version == 11)
        out->keepalive = !f.conn_close;
    else
        out->keepalive = f.conn_keepalive && !f.conn_close;
    out->expect_continue = out->version == 11 && f.expect_continue;
    if (out->version == 11 && f.n_upgrade && f.conn_upgrade) {
        out->upgrade = 1;
        out->upgrade_value = f.upgrade;
    }

    p->xmethod = out->method;
    p->xtarget = out->target;
    p->xreason = (weir_str_t){NULL, 0};
    r = llhttp_agrees(p, HTTP_REQUEST, head, len, &out->headers, out->version);
    if (r < 0)
        return r;
    /* The target's authority wins over Host (RFC 9112 §3.2.2); keep the list
     * consistent with what will be forwarded. */
    if (out->absolute_form && f.host)
        f.host->value = out->authority;
    apply_removals(&out->headers, &f);
    h1_body_start(p, out->framing, out->content_length);
    return 0;
}

/* ------------------------------------------------------------ responses */

int h1_parse_response(struct arena *a, h1_parser_t *p, const char *head, size_t len,
                      int request_method_is_head, h1_response_t *out)
{
    struct fields f;
    const char *end = head + len;
    const char *eol = memchr(head, '\n', len);
    if (!eol || len < 4 || memcmp(end - 4, "\r\n\r\n", 4) != 0 || eol - head < 13)
        return -400;
    eol--;

    memset(out, 0, sizeof(*out));
    if (memcmp(head, "HTTP/1.", 7) != 0 || (head[7] != '0' && head[7] != '1'))
        return -505;
    out->version = head[7] == '1' ? 11 : 10;
    out->status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    if (eol - head > 13)
        out->reason = (weir_str_t){head + 13, (size_t)(eol - head - 13)};
    else
        out->reason = (weir_str_t){head + 12, 0};
    int st = out->status;
    out->is_1xx = st >= 100 && st < 200 && st != 101;

    int r = split_fields(a, eol + 2, end, &out->headers, &f);
    if (r < 0)
        return r;
    if (f.conn_bad || f.n_cl > 1)
        return -502;
    if (f.n_cl) {
        if (h1_parse_uint(f.cl, &out->content_length) < 0)
            return -502;
        out->has_content_length = 1;
    }
    if (f.n_te_lines) {
        /* Only a plain "chunked": any other coding would have to be passed
         * on with its Transfer-Encoding, which weir never forwards. */
        if (out->version == 10 || f.n_cl || f.te_malformed || f.n_te_lines > 1 ||
            f.n_te_codings != 1 || !f.te_last_chunked)
            return -502;
    }

    int no_body = request_method_is_head || h1_status_has_no_body(st);
    if (no_body) {
        if (f.n_te_lines && ((st >= 100 && st < 200) || st == 204))
            return -502;
        out->framing = H1_FRAMING_NONE;
    } else if (f.n_te_lines) {
        out->framing = H1_FRAMING_CHUNKED;
    } else if (f.n_cl) {
        out->framing = H1_FRAMING_LENGTH;
    } else {
        out->framing = H1_FRAMING_CLOSE;
    }

    if (out->version == 11)
        out->keepalive = !f.conn_close;
    else
        out->keepalive = f.conn_keepalive && !f.conn_close;
    if (out->framing == H1_FRAMING_CLOSE || st == 101)
        out->keepalive = 0;
    if (st == 101 && f.n_upgrade) {
        out->upgrade = 1;
        out->upgrade_value = f.upgrade;
    }

    p->xmethod = (weir_str_t){NULL, 0};
    p->xtarget = (weir_str_t){NULL, 0};
    p->xreason = out->reason;
    r = llhttp_agrees(p, HTTP_RESPONSE, head, len, &out->headers, out->version);
    if (r < 0)
        return -502;
    apply_removals(&out->headers, &f);
    h1_body_start(p, out->framing, out->content_length);
    return 0;
}
