/*
 * Server names: which certificate a ClientHello's server name selects.
 *
 * Names come from the certificates (SAN dNSName entries; the subject CN only
 * when there is no SAN dNSName, as RFC 6125 and browsers do). A name is an
 * exact host or a wildcard "*.example.com", which stands for exactly one
 * leftmost label: it matches "a.example.com", never "example.com" nor
 * "a.b.example.com". Matching ignores case and one trailing dot.
 *
 * Lookup: an exact name wins over a wildcard, then the earlier certificate
 * in the config wins; a name nothing matches, or no name at all, gets the
 * default (the first certificate). The index is a flat array searched
 * linearly: a listener has a handful of certificates, and the search is per
 * handshake, not per request.
 */
#ifndef WEIR_TLS_SNI_H
#define WEIR_TLS_SNI_H

#include <stddef.h>

typedef struct sni_entry {
    char *name; /* lowercased, no trailing dot; "*.x.y" for a wildcard */
    size_t len;
    int wildcard;
    void *value;
} sni_entry_t;

typedef struct sni_index {
    sni_entry_t *v;
    size_t n, cap;
    void *dflt;
} sni_index_t;

/* Whether a certificate name can be matched: a DNS name of letters, digits,
 * '-', '_' and dots, or "*." followed by one of two labels or more (not
 * "*.com"); at most 253 bytes in all. */
int sni_name_valid(const char *name, size_t len);
/* Whether pattern (an entry's name, lowercased) matches host (any case). */
int sni_match(const char *pattern, size_t plen, const char *host, size_t hlen);

/* Adds name -> value (the name is copied, lowercased). 0, or -1 (memory,
 * or an invalid name). The first value added becomes the default. */
int sni_add(sni_index_t *ix, const char *name, size_t len, void *value);
/* The value for host (NULL host: the default). */
void *sni_lookup(const sni_index_t *ix, const char *host);
void sni_free(sni_index_t *ix);

#endif
