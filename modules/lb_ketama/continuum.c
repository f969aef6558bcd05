/*
 * libketama's continuum; the algorithm and its choices are in continuum.h.
 */
#include "continuum.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* Fetched once: an implicit fetch (EVP_md5()) would look the method up on
 * every digest, and EVP_Digest() would allocate a context every time. */
static EVP_MD *md5_method;
static EVP_MD_CTX *md5_ctx;

static EVP_MD_CTX *md5_begin(void)
{
    if (md5_method == NULL && (md5_method = EVP_MD_fetch(NULL, "MD5", NULL)) == NULL)
        return NULL;
    if (md5_ctx == NULL && (md5_ctx = EVP_MD_CTX_new()) == NULL)
        return NULL;
    if (!EVP_DigestInit_ex2(md5_ctx, md5_method, NULL))
        return NULL;
    return md5_ctx;
}

static int md5_end(EVP_MD_CTX *ctx, unsigned char md[16])
{
    unsigned int len = 0;

    if (!EVP_DigestFinal_ex(ctx, md, &len) || len != 16)
        return -1;
    return 0;
}

void ketama_md5_release(void)
{
    EVP_MD_CTX_free(md5_ctx);
    md5_ctx = NULL;
    EVP_MD_free(md5_method);
    md5_method = NULL;
}

int ketama_md5(const void *data, size_t len, unsigned char md[16])
{
    EVP_MD_CTX *ctx = md5_begin();

    if (ctx == NULL || !EVP_DigestUpdate(ctx, data, len))
        return -1;
    return md5_end(ctx, md);
}

/* The h-th little-endian word of a digest, as libketama reads it. */
static uint32_t digest_word(const unsigned char *d, unsigned h)
{
    return (uint32_t)d[3 + h * 4] << 24 | (uint32_t)d[2 + h * 4] << 16 |
           (uint32_t)d[1 + h * 4] << 8 | (uint32_t)d[h * 4];
}

int ketama_hash(const void *key, size_t len, uint32_t *out)
{
    unsigned char d[16];

    if (ketama_md5(key, len, d) < 0)
        return -1;
    *out = digest_word(d, 0);
    return 0;
}

unsigned ketama_digests(unsigned weight, unsigned long total, size_t nservers)
{
    if (weight == 0 || total == 0 || nservers == 0)
        return 0;
    /* libketama's floorf(pct * 40.0 * (float)n) with its conversions spelled
     * out: a float quotient, a double product (40.0 is a double), rounded to
     * float for floorf. The value is >= 0, so truncating is floorf (and the
     * module needs no libm). */
    float pct = (float)weight / (float)total;
    float ks = (float)((double)pct * 40.0 * (double)(float)nservers);

    return (unsigned)ks;
}

static unsigned long total_weight(const unsigned *weights, size_t n)
{
    unsigned long total = 0;

    for (size_t i = 0; i < n; i++)
        total += weights[i];
    return total;
}

size_t ketama_npoints(const unsigned *weights, size_t n)
{
    unsigned long total = total_weight(weights, n);
    size_t points = 0;

    for (size_t i = 0; i < n; i++)
        points += (size_t)ketama_digests(weights[i], total, n) * KETAMA_POINTS_PER_DIGEST;
    return points;
}

size_t ketama_size(size_t npoints)
{
    return sizeof(struct ketama_continuum) + npoints * sizeof(struct ketama_point);
}

static int point_cmp(const void *a, const void *b)
{
    const struct ketama_point *x = a, *y = b;

    if (x->point != y->point)
        return x->point < y->point ? -1 : 1;
    /* a tie libketama leaves to qsort; fixed here so every build agrees */
    return x->server < y->server ? -1 : x->server > y->server;
}

int ketama_build(struct ketama_continuum *c, const char *const *addrs, const unsigned *weights,
                 size_t n)
{
    unsigned long total = total_weight(weights, n);
    size_t cont = 0;

    c->nservers = n;
    c->nring = 0;
    c->npoints = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned ks = ketama_digests(weights[i], total, n);
        size_t alen = strlen(addrs[i]);

        if (ks > 0)
            c->nring++;

        for (unsigned k = 0; k < ks; k++) {
            char suffix[16];
            int slen = snprintf(suffix, sizeof(suffix), "-%u", k);
            unsigned char d[16];
            EVP_MD_CTX *ctx = md5_begin();

            /* MD5("<address>-<k>") without copying the address */
            if (ctx == NULL || !EVP_DigestUpdate(ctx, addrs[i], alen) ||
                !EVP_DigestUpdate(ctx, suffix, (size_t)slen) || md5_end(ctx, d) < 0)
                return -1;
            for (unsigned h = 0; h < KETAMA_POINTS_PER_DIGEST; h++)
                c->points[cont++] = (struct ketama_point){.point = digest_word(d, h),
                                                          .server = (uint32_t)i};
        }
    }
    qsort(c->points, cont, sizeof(c->points[0]), point_cmp);
    c->npoints = cont;
    return 0;
}

size_t ketama_find(const struct ketama_continuum *c, uint32_t hash)
{
    size_t lo = 0, hi = c->npoints;

    /* first point >= hash: invariant points[<lo] < hash <= points[>=hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (c->points[mid].point < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == c->npoints ? 0 : lo;
}

int ketama_lookup(const struct ketama_continuum *c, uint32_t hash,
                  int (*usable)(void *ctx, size_t server), void *ctx)
{
    if (c->npoints == 0)
        return -1;
    size_t start = ketama_find(c, hash);
    uint32_t s = c->points[start].server;

    if (usable == NULL || usable(ctx, s))
        return (int)s;

    /* Walk on. Servers already refused are remembered so each is asked once
     * and the walk stops when every server was refused; beyond
     * KETAMA_SEEN_MAX servers the walk just asks again. */
    uint64_t seen[KETAMA_SEEN_MAX / 64] = {0};
    size_t refused = 0;

    if (s < KETAMA_SEEN_MAX) {
        seen[s / 64] |= UINT64_C(1) << (s % 64);
        refused++;
    }
    for (size_t step = 1; step < c->npoints && refused < c->nring; step++) {
        size_t idx = start + step;

        if (idx >= c->npoints)
            idx -= c->npoints;
        s = c->points[idx].server;
        if (s < KETAMA_SEEN_MAX) {
            uint64_t bit = UINT64_C(1) << (s % 64);

            if (seen[s / 64] & bit)
                continue;
            seen[s / 64] |= bit;
            refused++;
        }
        if (usable(ctx, s))
            return (int)s;
    }
    return -1;
}
