/*
 * Value parsers shared by the core schema and weir_node_*: durations, sizes,
 * socket addresses, and the "did you mean" suggestion.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

/* Reads a run of decimal digits; -1 on none or on overflow. */
static int read_digits(const char **sp, uint64_t *out)
{
    const char *s = *sp;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    *sp = s;
    *out = v;
    return 0;
}

static int mul_add(uint64_t *acc, uint64_t v, uint64_t unit)
{
    if (unit && v > UINT64_MAX / unit)
        return -1;
    v *= unit;
    if (*acc > UINT64_MAX - v)
        return -1;
    *acc += v;
    return 0;
}

/* "250ms", "2s", "1m", "1h", "1d", a bare number of seconds, or a
 * concatenation from big to small units like "1m30s" (as nginx allows). */
int conf_parse_duration_ms(const char *s, uint64_t *out)
{
    uint64_t total = 0, v;
    int parts = 0;

    if (!s)
        return -1;
    while (*s == ' ')
        s++;
    if (!*s)
        return -1;
    while (*s) {
        uint64_t unit;
        if (read_digits(&s, &v) < 0)
            return -1;
        if (s[0] == 'm' && s[1] == 's') {
            unit = 1;
            s += 2;
        } else if (*s == 's') {
            unit = 1000;
            s++;
        } else if (*s == 'm') {
            unit = 60 * 1000;
            s++;
        } else if (*s == 'h') {
            unit = 3600 * 1000;
            s++;
        } else if (*s == 'd') {
            unit = 24 * 3600 * 1000;
            s++;
        } else if (*s == '\0' && parts == 0) {
            unit = 1000; /* a bare number is seconds */
        } else {
            return -1;
        }
        if (mul_add(&total, v, unit) < 0)
            return -1;
        parts++;
        while (*s == ' ')
            s++;
    }
    *out = total;
    return 0;
}

int conf_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, unit = 1;

    if (!s)
        return -1;
    if (read_digits(&s, &v) < 0)
        return -1;
    switch (*s) {
    case '\0':
        break;
    case 'k':
    case 'K':
        unit = 1024;
        s++;
        break;
    case 'm':
    case 'M':
        unit = 1024 * 1024;
        s++;
        break;
    case 'g':
    case 'G':
        unit = 1024 * 1024 * 1024;
        s++;
        break;
    default:
        return -1;
    }
    if (*s != '\0')
        return -1;
    if (unit && v > UINT64_MAX / unit)
        return -1;
    *out = v * unit;
    return 0;
}

/* The largest unit that holds the value exactly, so what is printed parses
 * back to the same value and reads as it was likely written ("30s", not
 * "30000ms"; "90s" rather than "1m30s", one unit being easier to compare). */
const char *weir_duration_text(uint64_t ms, char buf[WEIR_DURATION_LEN])
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{24ull * 3600 * 1000, "d"}, {3600 * 1000, "h"}, {60 * 1000, "m"},
                 {1000, "s"}, {1, "ms"}};
    size_t i = 0;
    if (ms == 0) {
        snprintf(buf, WEIR_DURATION_LEN, "0s");
        return buf;
    }
    while (ms % units[i].ms)
        i++;
    snprintf(buf, WEIR_DURATION_LEN, "%llu%s", (unsigned long long)(ms / units[i].ms),
             units[i].unit);
    return buf;
}

const char *conf_size_text(uint64_t bytes, char buf[WEIR_DURATION_LEN])
{
    static const char units[] = "gmk";
    uint64_t unit = 1024ull * 1024 * 1024;
    for (size_t i = 0; i < 3; i++, unit /= 1024) {
        if (bytes && bytes % unit == 0) {
            snprintf(buf, WEIR_DURATION_LEN, "%llu%c", (unsigned long long)(bytes / unit),
                     units[i]);
            return buf;
        }
    }
    snprintf(buf, WEIR_DURATION_LEN, "%llu", (unsigned long long)bytes);
    return buf;
}

static int parse_port(const char *p, unsigned *port)
{
    uint64_t v;
    if (read_digits(&p, &v) < 0 || *p != '\0' || v == 0 || v > 65535)
        return -1;
    *port = (unsigned)v;
    return 0;
}

int conf_parse_address(const char *text, sockaddr_any_t *out, char *err, size_t errlen)
{
    char host[256];
    const char *colon, *port_text;
    unsigned port;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    if (!text || !*text) {
        snprintf(err, errlen, "empty address");
        return -1;
    }

    if (strncmp(text, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
        const char *path = text + 5;
        size_t plen = strlen(path);
        if (plen == 0) {
            snprintf(err, errlen, "empty unix socket path");
            return -1;
        }
        if (plen >= sizeof(un->sun_path)) {
            snprintf(err, errlen, "unix socket path longer than %zu bytes",
                     sizeof(un->sun_path) - 1);
            return -1;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, plen + 1);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
        return 0;
    }

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
        if (!close) {
            snprintf(err, errlen, "missing ']' after the IPv6 address");
            return -1;
        }
        if (close[1] != ':') {
            snprintf(err, errlen, "missing port");
            return -1;
        }
        hlen = (size_t)(close - text - 1);
        if (hlen == 0 || hlen >= sizeof(host)) {
            snprintf(err, errlen, "bad IPv6 address");
            return -1;
        }
        memcpy(host, text + 1, hlen);
        host[hlen] = '\0';
        if (parse_port(close + 2, &port) < 0) {
            snprintf(err, errlen, "bad port '%s' (expected 1..65535)", close + 2);
            return -1;
        }
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
            snprintf(err, errlen, "bad IPv6 address '%s'", host);
            return -1;
        }
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*s6);
        return 0;
    }

    colon = strrchr(text, ':');
    if (!colon) {
        snprintf(err, errlen, "missing port");
        return -1;
    }
    if (memchr(text, ':', (size_t)(colon - text))) {
        snprintf(err, errlen, "an IPv6 address needs brackets, e.g. [::1]:8080");
        return -1;
    }
    port_text = colon + 1;
    if (parse_port(port_text, &port) < 0) {
        snprintf(err, errlen, "bad port '%s' (expected 1..65535)", port_text);
        return -1;
    }
    hlen = (size_t)(colon - text);
    if (hlen == 0 || hlen >= sizeof(host)) {
        snprintf(err, errlen, hlen ? "host name too long" : "missing host");
        return -1;
    }
    memcpy(host, text, hlen);
    host[hlen] = '\0';

    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
    if (strcmp(host, "*") == 0) {
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        s4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*s4);
        return 0;
    }

    /* A name: resolved once, now. The first answer wins, as the resolver
     * orders them by preference (RFC 6724). */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        if (res)
            freeaddrinfo(res);
        return -1;
    }
    if (res->ai_addrlen > sizeof(out->ss)) {
        freeaddrinfo(res);
        snprintf(err, errlen, "cannot resolve '%s': address too long", host);
        return -1;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    if (res->ai_family == AF_INET6)
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

/* Optimal string alignment distance (Levenshtein plus adjacent swaps, as
 * "hsot" for "host" is the commonest typo), case-insensitive. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca != cb;
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *conf_suggest(const char *word, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX, len, limit;

    if (!word)
        return NULL;
    len = strlen(word);
    limit = len / 3 > 1 ? len / 3 : 1;
    for (size_t i = 0; i < n; i++) {
        if (!candidates[i])
            continue;
        size_t dist = edit_distance(word, candidates[i]);
        if (dist <= limit && dist < best_d) {
            best = candidates[i];
            best_d = dist;
        }
    }
    return best;
}
