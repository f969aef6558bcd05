/* Server name matching (see sni.h). */
#include "sni.h"

#include <stdlib.h>
#include <string.h>

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
}

static size_t strip_dot(const char *s, size_t len)
{
    return len && s[len - 1] == '.' ? len - 1 : len;
}

int sni_name_valid(const char *name, size_t len)
{
    len = strip_dot(name, len);
    if (len == 0 || len > 253)
        return 0;
    if (len >= 2 && name[0] == '*' && name[1] == '.') {
        name += 2;
        len -= 2;
        /* "*.com" would stand for a whole top-level domain */
        if (!memchr(name, '.', len))
            return 0;
    }
    if (len == 0 || name[0] == '.' || name[len - 1] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = lower(name[i]);
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
                 (ch == '.' && name[i - 1] != '.');
        if (!ok)
            return 0;
    }
    return 1;
}

static int equal_nocase(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower(a[i]) != lower(b[i]))
            return 0;
    return 1;
}

int sni_match(const char *pattern, size_t plen, const char *host, size_t hlen)
{
    hlen = strip_dot(host, hlen);
    if (plen >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* "*.x.y": host is one label, then ".x.y" */
        const char *dot = memchr(host, '.', hlen);
        if (!dot || dot == host)
            return 0;
        size_t rest = hlen - (size_t)(dot - host);
        return rest == plen - 1 && equal_nocase(dot, pattern + 1, rest);
    }
    return plen == hlen && equal_nocase(pattern, host, hlen);
}

int sni_add(sni_index_t *ix, const char *name, size_t len, void *value)
{
    if (!sni_name_valid(name, len))
        return -1;
    len = strip_dot(name, len);
    if (ix->n == ix->cap) {
        size_t cap = ix->cap ? ix->cap * 2 : 8;
        sni_entry_t *v = realloc(ix->v, cap * sizeof(*v));
        if (!v)
            return -1;
        ix->v = v;
        ix->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    for (size_t i = 0; i < len; i++)
        copy[i] = lower(name[i]);
    copy[len] = '\0';
    ix->v[ix->n++] = (sni_entry_t){
        .name = copy, .len = len, .wildcard = copy[0] == '*', .value = value};
    if (!ix->dflt)
        ix->dflt = value;
    return 0;
}

void *sni_lookup(const sni_index_t *ix, const char *host)
{
    if (!host)
        return ix->dflt;
    size_t hlen = strlen(host);
    void *wild = NULL;
    for (size_t i = 0; i < ix->n; i++) {
        const sni_entry_t *e = &ix->v[i];
        if (!sni_match(e->name, e->len, host, hlen))
            continue;
        if (!e->wildcard)
            return e->value;
        if (!wild)
            wild = e->value;
    }
    return wild ? wild : ix->dflt;
}

void sni_free(sni_index_t *ix)
{
    for (size_t i = 0; i < ix->n; i++)
        free(ix->v[i].name);
    free(ix->v);
    ix->v = NULL;
    ix->n = ix->cap = 0;
    ix->dflt = NULL;
}
