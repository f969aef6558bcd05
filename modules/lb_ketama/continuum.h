/*
 * libketama's continuum (RJ/ketama, libketama/ketama.c), as pure C with no
 * weir API, so the unit test links it alone.
 *
 * Building, for servers 0..n-1 with weights w[i] and W = the sum of w[]:
 *
 *     pct = (float)w[i] / (float)W
 *     ks  = floorf(pct * 40.0 * (float)n)      (the product is a double, as in C)
 *
 * digests k = 0..ks-1 of server i are MD5("<address>-<k>"); each gives four
 * points, point h = d[3+4h]<<24 | d[2+4h]<<16 | d[1+4h]<<8 | d[4h]. So equal
 * weights give every server 160 points, and a weight's share of the ring is
 * floor()ed to whole digests exactly as libketama does it (a server may get
 * 0 points when its weight is below W / (40 n)). The points are sorted
 * ascending; two servers that land on the same point (about one chance in
 * ten thousand for a few hundred points) are ordered by server index, where
 * libketama's qsort leaves the order unspecified.
 *
 * A key hashes to the first four bytes of MD5(key), read the same
 * little-endian way (ketama_hashi), and belongs to the first point >= hash,
 * wrapping to point 0 past the last (ketama_get_server).
 *
 * Memory: the caller allocates ketama_size(ketama_npoints(...)) bytes; build
 * fills them; lookups only read them and never allocate. MD5 comes from
 * OpenSSL 3 libcrypto (EVP); the digest method and one context are fetched
 * on first use and kept for the process (workers inherit them by fork).
 * Not thread-safe; weir workers are single-threaded.
 */
#ifndef WEIR_LB_KETAMA_CONTINUUM_H
#define WEIR_LB_KETAMA_CONTINUUM_H

#include <stddef.h>
#include <stdint.h>

/* libketama: 40 digests of 4 points per server at average weight. */
#define KETAMA_DIGESTS_PER_SERVER 40
#define KETAMA_POINTS_PER_DIGEST 4

struct ketama_point {
    uint32_t point;
    uint32_t server; /* index into the arrays given to ketama_build */
};

struct ketama_continuum {
    size_t nservers; /* servers given to ketama_build */
    size_t nring;    /* of those, the servers with at least one point */
    size_t npoints;
    struct ketama_point points[]; /* npoints, ascending */
};

/* libketama's ks: how many digests (of 4 points each) a server of `weight`
 * gets among `nservers` servers whose weights sum to `total`. 0 when weight
 * or total is 0. */
unsigned ketama_digests(unsigned weight, unsigned long total, size_t nservers);

/* Points of the whole continuum for n servers with these weights. */
size_t ketama_npoints(const unsigned *weights, size_t n);

/* Bytes for a continuum of npoints points. */
size_t ketama_size(size_t npoints);

/* Fills c (of ketama_size(ketama_npoints(weights, n)) bytes) for servers
 * whose addresses (NUL-terminated, hashed as written) and weights are given.
 * Returns 0, or -1 when MD5 is unavailable (libcrypto error). */
int ketama_build(struct ketama_continuum *c, const char *const *addrs, const unsigned *weights,
                 size_t n);

/* MD5(data) into md (16 bytes). 0, or -1 on a libcrypto error. */
int ketama_md5(const void *data, size_t len, unsigned char md[16]);

/* Frees the digest method and context kept for the process (they are
 * fetched again on next use). For a module about to be unloaded. */
void ketama_md5_release(void);

/* ketama_hashi: the key's position on the ring. 0, or -1 on a libcrypto
 * error. */
int ketama_hash(const void *key, size_t len, uint32_t *out);

/* Index of the first point >= hash, 0 past the last point (or when the
 * continuum is empty). A binary search. */
size_t ketama_find(const struct ketama_continuum *c, uint32_t hash);

/* The server that owns hash: the server of point ketama_find(c, hash), or,
 * when usable(ctx, server) refuses it, the server of the next point (walking
 * on, wrapping) that usable() accepts. So a refused server's keys spread to
 * the servers that follow its points, and no other key moves. usable may be
 * NULL (every server is usable); it is asked at most once per server for the
 * first KETAMA_SEEN_MAX servers. Returns -1 when no server on the ring is
 * usable, or the ring is empty. */
#define KETAMA_SEEN_MAX 1024
int ketama_lookup(const struct ketama_continuum *c, uint32_t hash,
                  int (*usable)(void *ctx, size_t server), void *ctx);

#endif
