/*
 * libketama continuum of module lb_ketama (modules/lb_ketama/continuum.c).
 *
 * Where the expected values come from (none from weir's C):
 *   - MD5 test vectors of RFC 1321;
 *   - libketama's own check (RJ/ketama libketama/test.sh): ketama_test over
 *     ketama.servers, one line per key "0".."999999", has MD5
 *     5672b131391f5aa2b280936aec1eea74;
 *   - tools/ketama_reference.py, a Python (hashlib) reference written from
 *     libketama's algorithm, whose `selftest` command reproduces that MD5.
 *     Every table below names the command that printed it, as
 *         /usr/bin/python3 tools/ketama_reference.py <command>
 *     run from the source root; the tables are its output pasted verbatim.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "lb_ketama/continuum.h"

#define MAXS 16

struct srvset {
    size_t n;
    const char *addr[MAXS];
    unsigned weight[MAXS];
};

/* The weighted set of most tables: "SET" below stands for
 *   10.0.0.1:8001=3 10.0.0.2:8002=1 backend.internal:9000=2 unix:/run/weir/app.sock=1 */
static const struct srvset SET = {
    .n = 4,
    .addr = {"10.0.0.1:8001", "10.0.0.2:8002", "backend.internal:9000", "unix:/run/weir/app.sock"},
    .weight = {3, 1, 2, 1},
};

/* libketama's ketama.servers; "<ketama.servers>" below stands for
 *   10.0.1.1:11211=600 10.0.1.2:11211=300 10.0.1.3:11211=200 10.0.1.4:11211=350
 *   10.0.1.5:11211=1000 10.0.1.6:11211=800 10.0.1.7:11211=950 10.0.1.8:11211=100 */
static const struct srvset LIBKETAMA = {
    .n = 8,
    .addr = {"10.0.1.1:11211", "10.0.1.2:11211", "10.0.1.3:11211", "10.0.1.4:11211",
             "10.0.1.5:11211", "10.0.1.6:11211", "10.0.1.7:11211", "10.0.1.8:11211"},
    .weight = {600, 300, 200, 350, 1000, 800, 950, 100},
};

static struct ketama_continuum *build(const struct srvset *s)
{
    size_t np = ketama_npoints(s->weight, s->n);
    struct ketama_continuum *c = malloc(ketama_size(np));

    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(ketama_build(c, s->addr, s->weight, s->n), 0);
    ck_assert_uint_eq(c->npoints, np);
    ck_assert_uint_eq(c->nservers, s->n);
    return c;
}

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static uint32_t hash_of(const char *key)
{
    uint32_t h = 0;

    ck_assert_int_eq(ketama_hash(key, strlen(key), &h), 0);
    return h;
}

/* What weir_peer_usable() answers in the module: not down, not tried; and
 * how often the continuum asked. */
struct peers {
    int down[MAXS];
    int asked[MAXS];
};

static int usable(void *ctx, size_t i)
{
    struct peers *p = ctx;

    ck_assert_uint_lt(i, MAXS);
    p->asked[i]++;
    return !p->down[i];
}

static int lookup_key(const struct ketama_continuum *c, const char *key, struct peers *p)
{
    return ketama_lookup(c, hash_of(key), p ? usable : NULL, p);
}

START_TEST(test_md5_vectors)
{
    /* RFC 1321 appendix A.5 */
    static const struct {
        const char *in, *md5;
    } v[] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        unsigned char d[16];
        char h[33];

        ck_assert_int_eq(ketama_md5(v[i].in, strlen(v[i].in), d), 0);
        hex(d, 16, h);
        ck_assert_str_eq(h, v[i].md5);
    }
    /* ketama_hashi reads the first 4 digest bytes little-endian */
    ck_assert_uint_eq(hash_of(""), 0xd98c1dd4u);
    ck_assert_uint_eq(hash_of("abc"), 0x98500190u);
}
END_TEST

/* libketama's test.sh, byte for byte: an empty ketama_error() line, then
 * "hash point server" for the keys "0".."999999". */
START_TEST(test_libketama_golden)
{
    struct ketama_continuum *c = build(&LIBKETAMA);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char d[16];
    unsigned int dlen = 0;
    char line[96], h[33];

    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(EVP_DigestInit_ex(ctx, EVP_md5(), NULL), 1);
    EVP_DigestUpdate(ctx, "\n", 1);
    for (unsigned i = 0; i < 1000000; i++) {
        char key[16];
        int klen = snprintf(key, sizeof(key), "%u", i);
        uint32_t kh = 0;

        ck_assert_int_eq(ketama_hash(key, (size_t)klen, &kh), 0);
        const struct ketama_point *m = &c->points[ketama_find(c, kh)];
        int len = snprintf(line, sizeof(line), "%u %u %s\n", kh, m->point,
                           LIBKETAMA.addr[m->server]);
        EVP_DigestUpdate(ctx, line, (size_t)len);
    }
    ck_assert_int_eq(EVP_DigestFinal_ex(ctx, d, &dlen), 1);
    EVP_MD_CTX_free(ctx);
    hex(d, 16, h);
    ck_assert_str_eq(h, "5672b131391f5aa2b280936aec1eea74");
    free(c);
}
END_TEST

/* ks = floorf(pct * 40.0 * (float)n) with C's float and double steps: equal
 * thirds give 40 (exact double arithmetic would give 39), 21 of 40 among 3
 * gives 62 (the rational value is exactly 63). */
START_TEST(test_digests_per_server)
{
    static const struct {
        size_t n;
        unsigned w[8];
        unsigned ks[8];
    } v[] = {
        /* ketama_reference.py points --ks --first 0 --last 1 a=21 b=10 c=9 */
        {3, {21, 10, 9}, {62, 30, 27}},
        /* ketama_reference.py points --ks --first 0 --last 1 a b c */
        {3, {1, 1, 1}, {40, 40, 40}},
        /* ketama_reference.py points --ks --first 0 --last 1 a=25 b=5 c=5 d=5 e=4 f=4 */
        {6, {25, 5, 5, 5, 4, 4}, {124, 25, 25, 25, 20, 20}},
        /* ketama_reference.py points --ks --first 0 --last 1 a=1000 b=1 */
        {2, {1000, 1}, {79, 0}},
        /* ketama_reference.py points --ks --first 0 --last 1 SET */
        {4, {3, 1, 2, 1}, {68, 22, 45, 22}},
        /* ketama_reference.py points --ks --first 0 --last 1 <ketama.servers> */
        {8, {600, 300, 200, 350, 1000, 800, 950, 100}, {44, 22, 14, 26, 74, 59, 70, 7}},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        unsigned long total = 0;
        size_t points = 0;

        for (size_t s = 0; s < v[i].n; s++)
            total += v[i].w[s];
        for (size_t s = 0; s < v[i].n; s++) {
            ck_assert_uint_eq(ketama_digests(v[i].w[s], total, v[i].n), v[i].ks[s]);
            points += 4 * v[i].ks[s];
        }
        ck_assert_uint_eq(ketama_npoints(v[i].w, v[i].n), points);
    }
    ck_assert_uint_eq(ketama_digests(0, 10, 3), 0);
    ck_assert_uint_eq(ketama_digests(5, 0, 3), 0);
    ck_assert_uint_eq(ketama_digests(5, 5, 1), 40);
}
END_TEST

/* ketama_reference.py points --first 24 --last 4 --digest --ks --c SET */
static const size_t SET_NPOINTS = 628;
/* MD5 of all "point server\n" lines, point in decimal */
static const char SET_POINTS_MD5[] = "223078474a6e64bbbbb30f25deecd03d";
static const struct {
    size_t index;
    uint32_t point;
    uint32_t server;
} SET_POINTS[] = {
    {0, 0x002702fc, 0},
    {1, 0x00853248, 1},
    {2, 0x027cefcc, 3},
    {3, 0x033427de, 0},
    {4, 0x034c444d, 3},
    {5, 0x04dd5d8f, 0},
    {6, 0x07d052f5, 3},
    {7, 0x084cfebd, 2},
    {8, 0x08c1c592, 0},
    {9, 0x08e37d08, 2},
    {10, 0x0960ae29, 0},
    {11, 0x09fb6e1d, 1},
    {12, 0x0a00ca4f, 0},
    {13, 0x0a18dfa0, 1},
    {14, 0x0ac1d8b8, 2},
    {15, 0x0afd5bc5, 0},
    {16, 0x0c104079, 0},
    {17, 0x0c1d5322, 2},
    {18, 0x0c6417c9, 2},
    {19, 0x0d1baa18, 0},
    {20, 0x0d4372e0, 2},
    {21, 0x0d44f665, 1},
    {22, 0x0d6c42d5, 3},
    {23, 0x0d8d3426, 3},
    {624, 0xfe104e0b, 2},
    {625, 0xfe4f2144, 2},
    {626, 0xff8d7e40, 2},
    {627, 0xfffd54ee, 1},
};

START_TEST(test_points_table)
{
    struct ketama_continuum *c = build(&SET);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char d[16];
    unsigned int dlen = 0;
    char line[48], h[33];
    size_t per_server[4] = {0};

    ck_assert_uint_eq(c->npoints, SET_NPOINTS);
    ck_assert_uint_eq(c->nring, 4);
    for (size_t i = 0; i < sizeof(SET_POINTS) / sizeof(SET_POINTS[0]); i++) {
        ck_assert_uint_eq(c->points[SET_POINTS[i].index].point, SET_POINTS[i].point);
        ck_assert_uint_eq(c->points[SET_POINTS[i].index].server, SET_POINTS[i].server);
    }
    /* every point, through the digest of the whole list */
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(EVP_DigestInit_ex(ctx, EVP_md5(), NULL), 1);
    for (size_t i = 0; i < c->npoints; i++) {
        int len = snprintf(line, sizeof(line), "%u %u\n", c->points[i].point, c->points[i].server);
        EVP_DigestUpdate(ctx, line, (size_t)len);
        if (i > 0)
            ck_assert_uint_le(c->points[i - 1].point, c->points[i].point);
        per_server[c->points[i].server]++;
    }
    ck_assert_int_eq(EVP_DigestFinal_ex(ctx, d, &dlen), 1);
    EVP_MD_CTX_free(ctx);
    hex(d, 16, h);
    ck_assert_str_eq(h, SET_POINTS_MD5);
    /* weights 3:1:2:1 of 7 among 4 servers: 4 * floor(w / 7 * 160) points */
    ck_assert_uint_eq(per_server[0], 4 * 68);
    ck_assert_uint_eq(per_server[1], 4 * 22);
    ck_assert_uint_eq(per_server[2], 4 * 45);
    ck_assert_uint_eq(per_server[3], 4 * 22);
    free(c);
}
END_TEST

struct keyrow {
    const char *key;
    uint32_t hash;
    int server;
};

/* ketama_reference.py keys --count 200 --c SET */
static const struct keyrow KEYS_ALL_UP[] = {
    {"/key/0", 0x38bc7933, 2},
    {"/key/1", 0x4e58ae0b, 0},
    {"/key/2", 0xb8ee9099, 2},
    {"/key/3", 0x247d951a, 1},
    {"/key/4", 0x2f253a0e, 2},
    {"/key/5", 0x86051c03, 0},
    {"/key/6", 0x093fc139, 0},
    {"/key/7", 0xc9722c20, 0},
    {"/key/8", 0x2aa597a2, 0},
    {"/key/9", 0x72faaf81, 3},
    {"/key/10", 0x4e97e557, 0},
    {"/key/11", 0xc41bcb04, 2},
    {"/key/12", 0x33ba4819, 2},
    {"/key/13", 0xca58676d, 0},
    {"/key/14", 0x8abb2d0e, 1},
    {"/key/15", 0xf840cd99, 0},
    {"/key/16", 0x40b4d539, 0},
    {"/key/17", 0x1caa810f, 0},
    {"/key/18", 0x4d07f723, 0},
    {"/key/19", 0x275dd3e5, 0},
    {"/key/20", 0x9edf1983, 1},
    {"/key/21", 0xc3f7dbf9, 2},
    {"/key/22", 0x66bd2870, 0},
    {"/key/23", 0x4d24ab31, 0},
    {"/key/24", 0x9bdec113, 1},
    {"/key/25", 0xb9ec9082, 1},
    {"/key/26", 0x55094125, 0},
    {"/key/27", 0xa028c97d, 3},
    {"/key/28", 0x3347f4f7, 2},
    {"/key/29", 0x2cd36c97, 0},
    {"/key/30", 0x92aefc05, 2},
    {"/key/31", 0xeca71d6f, 2},
    {"/key/32", 0xcb744a75, 0},
    {"/key/33", 0xafe0ddd8, 0},
    {"/key/34", 0xf0c329cf, 1},
    {"/key/35", 0x8644b410, 0},
    {"/key/36", 0x51e65672, 3},
    {"/key/37", 0x02fc89cc, 0},
    {"/key/38", 0x3646b7f9, 3},
    {"/key/39", 0x84d7a6d7, 2},
    {"/key/40", 0xb2863b84, 0},
    {"/key/41", 0x042767ad, 0},
    {"/key/42", 0xb3f1cbbc, 3},
    {"/key/43", 0xf020671e, 1},
    {"/key/44", 0x002465d6, 0},
    {"/key/45", 0x5e6b03da, 2},
    {"/key/46", 0x2a8d8795, 0},
    {"/key/47", 0x2f7f2853, 1},
    {"/key/48", 0xe4f57694, 0},
    {"/key/49", 0x9961e820, 0},
    {"/key/50", 0x89ca6621, 2},
    {"/key/51", 0x10a6781e, 3},
    {"/key/52", 0x6f32f43e, 0},
    {"/key/53", 0x70644718, 3},
    {"/key/54", 0x4618cd04, 0},
    {"/key/55", 0x212af227, 0},
    {"/key/56", 0xf8e1db25, 3},
    {"/key/57", 0x75ef37b2, 0},
    {"/key/58", 0xf4530d3f, 3},
    {"/key/59", 0xa7e84507, 1},
    {"/key/60", 0x25ceef67, 0},
    {"/key/61", 0xe0121bf7, 0},
    {"/key/62", 0xf9d7c5ee, 0},
    {"/key/63", 0xe59ccaef, 2},
    {"/key/64", 0x4a8d265b, 0},
    {"/key/65", 0xb680ec4b, 2},
    {"/key/66", 0xa5a219c0, 2},
    {"/key/67", 0x1fc53136, 0},
    {"/key/68", 0xf20e5c45, 0},
    {"/key/69", 0xbf00ea05, 2},
    {"/key/70", 0xc1327a2c, 1},
    {"/key/71", 0x08909b3b, 0},
    {"/key/72", 0x65bc023f, 0},
    {"/key/73", 0xd590eba2, 0},
    {"/key/74", 0x540b1f68, 3},
    {"/key/75", 0xa3d25a5d, 0},
    {"/key/76", 0x8b3efbbb, 2},
    {"/key/77", 0xaa91ad4a, 0},
    {"/key/78", 0x61269e96, 2},
    {"/key/79", 0x7febee84, 0},
    {"/key/80", 0x85e065c2, 2},
    {"/key/81", 0x9378f60b, 2},
    {"/key/82", 0x629c29cb, 0},
    {"/key/83", 0x347593c6, 2},
    {"/key/84", 0xec48cdc3, 2},
    {"/key/85", 0x59d259a3, 2},
    {"/key/86", 0xfac28a7b, 2},
    {"/key/87", 0x3b9b9fe3, 2},
    {"/key/88", 0xae137ce1, 0},
    {"/key/89", 0xd2ccf71f, 0},
    {"/key/90", 0xd52fbaf3, 0},
    {"/key/91", 0x07fc56ec, 2},
    {"/key/92", 0xf56c49ec, 2},
    {"/key/93", 0xb656a511, 2},
    {"/key/94", 0x695a8470, 2},
    {"/key/95", 0x71e93faf, 3},
    {"/key/96", 0x6441483f, 0},
    {"/key/97", 0xa0b1b9ea, 2},
    {"/key/98", 0xf568a355, 2},
    {"/key/99", 0xfa793211, 2},
    {"/key/100", 0x997bb602, 0},
    {"/key/101", 0xcf61b09f, 0},
    {"/key/102", 0xfee41c56, 2},
    {"/key/103", 0x4f2a2bc0, 0},
    {"/key/104", 0x76534cb8, 1},
    {"/key/105", 0xab082fca, 0},
    {"/key/106", 0x2593930c, 1},
    {"/key/107", 0xb48bd44a, 3},
    {"/key/108", 0xcc05c6c5, 0},
    {"/key/109", 0x357d744b, 2},
    {"/key/110", 0x1e7c8dcd, 0},
    {"/key/111", 0x2413077d, 0},
    {"/key/112", 0xf0c440ce, 1},
    {"/key/113", 0x18906e84, 0},
    {"/key/114", 0x2b12b52b, 0},
    {"/key/115", 0x20368cbe, 0},
    {"/key/116", 0x3a3b02ea, 2},
    {"/key/117", 0x520a0232, 1},
    {"/key/118", 0x8a48eb52, 1},
    {"/key/119", 0xcbd85f37, 0},
    {"/key/120", 0xb682d4e2, 2},
    {"/key/121", 0x49c2383e, 2},
    {"/key/122", 0x0678f6e9, 3},
    {"/key/123", 0x6b417d8b, 3},
    {"/key/124", 0xcf96d0d6, 0},
    {"/key/125", 0x1da461d4, 2},
    {"/key/126", 0xfd571b9e, 2},
    {"/key/127", 0x7e75641f, 0},
    {"/key/128", 0x1b08eb23, 0},
    {"/key/129", 0x4a2995f1, 2},
    {"/key/130", 0x0fd86ee1, 3},
    {"/key/131", 0xbf963e99, 2},
    {"/key/132", 0xeebfe2d2, 0},
    {"/key/133", 0x6bfa1b93, 0},
    {"/key/134", 0x25e86f9e, 1},
    {"/key/135", 0xa35043a6, 0},
    {"/key/136", 0x8cb773d9, 3},
    {"/key/137", 0x6b70c249, 3},
    {"/key/138", 0x200ca426, 0},
    {"/key/139", 0x32fc9ae7, 2},
    {"/key/140", 0xb186883a, 2},
    {"/key/141", 0xec49e131, 2},
    {"/key/142", 0x49244e6a, 0},
    {"/key/143", 0xc164859e, 3},
    {"/key/144", 0x19acb795, 0},
    {"/key/145", 0x51f4baed, 3},
    {"/key/146", 0x94124db3, 2},
    {"/key/147", 0x93588adc, 2},
    {"/key/148", 0x166dee07, 1},
    {"/key/149", 0xfa556a07, 0},
    {"/key/150", 0xec2071e0, 2},
    {"/key/151", 0xe1fcc5e1, 2},
    {"/key/152", 0xd1816399, 0},
    {"/key/153", 0xc54250f1, 0},
    {"/key/154", 0xce015ccc, 0},
    {"/key/155", 0xc4287f54, 2},
    {"/key/156", 0x7b733403, 2},
    {"/key/157", 0x1c7c1f19, 0},
    {"/key/158", 0xd92374c3, 0},
    {"/key/159", 0x92a131b9, 2},
    {"/key/160", 0x8c62eeb5, 0},
    {"/key/161", 0xcc07ccaf, 0},
    {"/key/162", 0x2c274b61, 0},
    {"/key/163", 0x4b1bb54b, 2},
    {"/key/164", 0xadd4e986, 0},
    {"/key/165", 0x25fd08b1, 1},
    {"/key/166", 0x509c9e27, 2},
    {"/key/167", 0x673909d7, 0},
    {"/key/168", 0x376204b5, 0},
    {"/key/169", 0xc8d69f30, 0},
    {"/key/170", 0x0800584a, 2},
    {"/key/171", 0x54fb8d4c, 0},
    {"/key/172", 0x680f7ef5, 2},
    {"/key/173", 0x8492fd38, 2},
    {"/key/174", 0xc917bb8b, 0},
    {"/key/175", 0xc3174c89, 3},
    {"/key/176", 0x0eea428e, 0},
    {"/key/177", 0x82cae796, 0},
    {"/key/178", 0xfbff5b3d, 1},
    {"/key/179", 0xf06e0f66, 1},
    {"/key/180", 0x85b1e8f1, 2},
    {"/key/181", 0x5eb14059, 0},
    {"/key/182", 0x3d5b480a, 1},
    {"/key/183", 0x00d7a596, 3},
    {"/key/184", 0x1109e8cc, 1},
    {"/key/185", 0x3c09d011, 2},
    {"/key/186", 0xcfb2e354, 0},
    {"/key/187", 0x084e172e, 0},
    {"/key/188", 0x7dd42711, 0},
    {"/key/189", 0xa74ee03f, 2},
    {"/key/190", 0x91e60ea9, 0},
    {"/key/191", 0xd5f62aeb, 0},
    {"/key/192", 0xaaf035d5, 0},
    {"/key/193", 0x86edfaef, 1},
    {"/key/194", 0x14693130, 2},
    {"/key/195", 0xcc3a3e75, 0},
    {"/key/196", 0x86ef99d1, 1},
    {"/key/197", 0xc17b96d3, 3},
    {"/key/198", 0x2bd0d355, 0},
    {"/key/199", 0x0b5c81d7, 0},
};

/* ketama_reference.py keys --count 200 --down 2 --c SET */
static const struct keyrow KEYS_DOWN_2[] = {
    {"/key/0", 0x38bc7933, 1},
    {"/key/1", 0x4e58ae0b, 0},
    {"/key/2", 0xb8ee9099, 1},
    {"/key/3", 0x247d951a, 1},
    {"/key/4", 0x2f253a0e, 1},
    {"/key/5", 0x86051c03, 0},
    {"/key/6", 0x093fc139, 0},
    {"/key/7", 0xc9722c20, 0},
    {"/key/8", 0x2aa597a2, 0},
    {"/key/9", 0x72faaf81, 3},
    {"/key/10", 0x4e97e557, 0},
    {"/key/11", 0xc41bcb04, 1},
    {"/key/12", 0x33ba4819, 0},
    {"/key/13", 0xca58676d, 0},
    {"/key/14", 0x8abb2d0e, 1},
    {"/key/15", 0xf840cd99, 0},
    {"/key/16", 0x40b4d539, 0},
    {"/key/17", 0x1caa810f, 0},
    {"/key/18", 0x4d07f723, 0},
    {"/key/19", 0x275dd3e5, 0},
    {"/key/20", 0x9edf1983, 1},
    {"/key/21", 0xc3f7dbf9, 1},
    {"/key/22", 0x66bd2870, 0},
    {"/key/23", 0x4d24ab31, 0},
    {"/key/24", 0x9bdec113, 1},
    {"/key/25", 0xb9ec9082, 1},
    {"/key/26", 0x55094125, 0},
    {"/key/27", 0xa028c97d, 3},
    {"/key/28", 0x3347f4f7, 0},
    {"/key/29", 0x2cd36c97, 0},
    {"/key/30", 0x92aefc05, 0},
    {"/key/31", 0xeca71d6f, 3},
    {"/key/32", 0xcb744a75, 0},
    {"/key/33", 0xafe0ddd8, 0},
    {"/key/34", 0xf0c329cf, 1},
    {"/key/35", 0x8644b410, 0},
    {"/key/36", 0x51e65672, 3},
    {"/key/37", 0x02fc89cc, 0},
    {"/key/38", 0x3646b7f9, 3},
    {"/key/39", 0x84d7a6d7, 0},
    {"/key/40", 0xb2863b84, 0},
    {"/key/41", 0x042767ad, 0},
    {"/key/42", 0xb3f1cbbc, 3},
    {"/key/43", 0xf020671e, 1},
    {"/key/44", 0x002465d6, 0},
    {"/key/45", 0x5e6b03da, 0},
    {"/key/46", 0x2a8d8795, 0},
    {"/key/47", 0x2f7f2853, 1},
    {"/key/48", 0xe4f57694, 0},
    {"/key/49", 0x9961e820, 0},
    {"/key/50", 0x89ca6621, 0},
    {"/key/51", 0x10a6781e, 3},
    {"/key/52", 0x6f32f43e, 0},
    {"/key/53", 0x70644718, 3},
    {"/key/54", 0x4618cd04, 0},
    {"/key/55", 0x212af227, 0},
    {"/key/56", 0xf8e1db25, 3},
    {"/key/57", 0x75ef37b2, 0},
    {"/key/58", 0xf4530d3f, 3},
    {"/key/59", 0xa7e84507, 1},
    {"/key/60", 0x25ceef67, 0},
    {"/key/61", 0xe0121bf7, 0},
    {"/key/62", 0xf9d7c5ee, 0},
    {"/key/63", 0xe59ccaef, 1},
    {"/key/64", 0x4a8d265b, 0},
    {"/key/65", 0xb680ec4b, 3},
    {"/key/66", 0xa5a219c0, 0},
    {"/key/67", 0x1fc53136, 0},
    {"/key/68", 0xf20e5c45, 0},
    {"/key/69", 0xbf00ea05, 3},
    {"/key/70", 0xc1327a2c, 1},
    {"/key/71", 0x08909b3b, 0},
    {"/key/72", 0x65bc023f, 0},
    {"/key/73", 0xd590eba2, 0},
    {"/key/74", 0x540b1f68, 3},
    {"/key/75", 0xa3d25a5d, 0},
    {"/key/76", 0x8b3efbbb, 0},
    {"/key/77", 0xaa91ad4a, 0},
    {"/key/78", 0x61269e96, 3},
    {"/key/79", 0x7febee84, 0},
    {"/key/80", 0x85e065c2, 0},
    {"/key/81", 0x9378f60b, 0},
    {"/key/82", 0x629c29cb, 0},
    {"/key/83", 0x347593c6, 0},
    {"/key/84", 0xec48cdc3, 3},
    {"/key/85", 0x59d259a3, 0},
    {"/key/86", 0xfac28a7b, 0},
    {"/key/87", 0x3b9b9fe3, 1},
    {"/key/88", 0xae137ce1, 0},
    {"/key/89", 0xd2ccf71f, 0},
    {"/key/90", 0xd52fbaf3, 0},
    {"/key/91", 0x07fc56ec, 0},
    {"/key/92", 0xf56c49ec, 0},
    {"/key/93", 0xb656a511, 3},
    {"/key/94", 0x695a8470, 1},
    {"/key/95", 0x71e93faf, 3},
    {"/key/96", 0x6441483f, 0},
    {"/key/97", 0xa0b1b9ea, 0},
    {"/key/98", 0xf568a355, 0},
    {"/key/99", 0xfa793211, 0},
    {"/key/100", 0x997bb602, 0},
    {"/key/101", 0xcf61b09f, 0},
    {"/key/102", 0xfee41c56, 1},
    {"/key/103", 0x4f2a2bc0, 0},
    {"/key/104", 0x76534cb8, 1},
    {"/key/105", 0xab082fca, 0},
    {"/key/106", 0x2593930c, 1},
    {"/key/107", 0xb48bd44a, 3},
    {"/key/108", 0xcc05c6c5, 0},
    {"/key/109", 0x357d744b, 0},
    {"/key/110", 0x1e7c8dcd, 0},
    {"/key/111", 0x2413077d, 0},
    {"/key/112", 0xf0c440ce, 1},
    {"/key/113", 0x18906e84, 0},
    {"/key/114", 0x2b12b52b, 0},
    {"/key/115", 0x20368cbe, 0},
    {"/key/116", 0x3a3b02ea, 3},
    {"/key/117", 0x520a0232, 1},
    {"/key/118", 0x8a48eb52, 1},
    {"/key/119", 0xcbd85f37, 0},
    {"/key/120", 0xb682d4e2, 3},
    {"/key/121", 0x49c2383e, 0},
    {"/key/122", 0x0678f6e9, 3},
    {"/key/123", 0x6b417d8b, 3},
    {"/key/124", 0xcf96d0d6, 0},
    {"/key/125", 0x1da461d4, 3},
    {"/key/126", 0xfd571b9e, 1},
    {"/key/127", 0x7e75641f, 0},
    {"/key/128", 0x1b08eb23, 0},
    {"/key/129", 0x4a2995f1, 0},
    {"/key/130", 0x0fd86ee1, 3},
    {"/key/131", 0xbf963e99, 3},
    {"/key/132", 0xeebfe2d2, 0},
    {"/key/133", 0x6bfa1b93, 0},
    {"/key/134", 0x25e86f9e, 1},
    {"/key/135", 0xa35043a6, 0},
    {"/key/136", 0x8cb773d9, 3},
    {"/key/137", 0x6b70c249, 3},
    {"/key/138", 0x200ca426, 0},
    {"/key/139", 0x32fc9ae7, 0},
    {"/key/140", 0xb186883a, 0},
    {"/key/141", 0xec49e131, 3},
    {"/key/142", 0x49244e6a, 0},
    {"/key/143", 0xc164859e, 3},
    {"/key/144", 0x19acb795, 0},
    {"/key/145", 0x51f4baed, 3},
    {"/key/146", 0x94124db3, 1},
    {"/key/147", 0x93588adc, 0},
    {"/key/148", 0x166dee07, 1},
    {"/key/149", 0xfa556a07, 0},
    {"/key/150", 0xec2071e0, 3},
    {"/key/151", 0xe1fcc5e1, 0},
    {"/key/152", 0xd1816399, 0},
    {"/key/153", 0xc54250f1, 0},
    {"/key/154", 0xce015ccc, 0},
    {"/key/155", 0xc4287f54, 1},
    {"/key/156", 0x7b733403, 0},
    {"/key/157", 0x1c7c1f19, 0},
    {"/key/158", 0xd92374c3, 0},
    {"/key/159", 0x92a131b9, 0},
    {"/key/160", 0x8c62eeb5, 0},
    {"/key/161", 0xcc07ccaf, 0},
    {"/key/162", 0x2c274b61, 0},
    {"/key/163", 0x4b1bb54b, 1},
    {"/key/164", 0xadd4e986, 0},
    {"/key/165", 0x25fd08b1, 1},
    {"/key/166", 0x509c9e27, 0},
    {"/key/167", 0x673909d7, 0},
    {"/key/168", 0x376204b5, 0},
    {"/key/169", 0xc8d69f30, 0},
    {"/key/170", 0x0800584a, 0},
    {"/key/171", 0x54fb8d4c, 0},
    {"/key/172", 0x680f7ef5, 0},
    {"/key/173", 0x8492fd38, 0},
    {"/key/174", 0xc917bb8b, 0},
    {"/key/175", 0xc3174c89, 3},
    {"/key/176", 0x0eea428e, 0},
    {"/key/177", 0x82cae796, 0},
    {"/key/178", 0xfbff5b3d, 1},
    {"/key/179", 0xf06e0f66, 1},
    {"/key/180", 0x85b1e8f1, 0},
    {"/key/181", 0x5eb14059, 0},
    {"/key/182", 0x3d5b480a, 1},
    {"/key/183", 0x00d7a596, 3},
    {"/key/184", 0x1109e8cc, 1},
    {"/key/185", 0x3c09d011, 1},
    {"/key/186", 0xcfb2e354, 0},
    {"/key/187", 0x084e172e, 0},
    {"/key/188", 0x7dd42711, 0},
    {"/key/189", 0xa74ee03f, 0},
    {"/key/190", 0x91e60ea9, 0},
    {"/key/191", 0xd5f62aeb, 0},
    {"/key/192", 0xaaf035d5, 0},
    {"/key/193", 0x86edfaef, 1},
    {"/key/194", 0x14693130, 1},
    {"/key/195", 0xcc3a3e75, 0},
    {"/key/196", 0x86ef99d1, 1},
    {"/key/197", 0xc17b96d3, 3},
    {"/key/198", 0x2bd0d355, 0},
    {"/key/199", 0x0b5c81d7, 0},
};

/* ketama_reference.py keys --count 200 --down 0,3 --c SET */
static const struct keyrow KEYS_DOWN_0_3[] = {
    {"/key/0", 0x38bc7933, 2},
    {"/key/1", 0x4e58ae0b, 2},
    {"/key/2", 0xb8ee9099, 2},
    {"/key/3", 0x247d951a, 1},
    {"/key/4", 0x2f253a0e, 2},
    {"/key/5", 0x86051c03, 1},
    {"/key/6", 0x093fc139, 1},
    {"/key/7", 0xc9722c20, 2},
    {"/key/8", 0x2aa597a2, 2},
    {"/key/9", 0x72faaf81, 2},
    {"/key/10", 0x4e97e557, 2},
    {"/key/11", 0xc41bcb04, 2},
    {"/key/12", 0x33ba4819, 2},
    {"/key/13", 0xca58676d, 1},
    {"/key/14", 0x8abb2d0e, 1},
    {"/key/15", 0xf840cd99, 2},
    {"/key/16", 0x40b4d539, 2},
    {"/key/17", 0x1caa810f, 1},
    {"/key/18", 0x4d07f723, 1},
    {"/key/19", 0x275dd3e5, 2},
    {"/key/20", 0x9edf1983, 1},
    {"/key/21", 0xc3f7dbf9, 2},
    {"/key/22", 0x66bd2870, 2},
    {"/key/23", 0x4d24ab31, 1},
    {"/key/24", 0x9bdec113, 1},
    {"/key/25", 0xb9ec9082, 1},
    {"/key/26", 0x55094125, 2},
    {"/key/27", 0xa028c97d, 2},
    {"/key/28", 0x3347f4f7, 2},
    {"/key/29", 0x2cd36c97, 2},
    {"/key/30", 0x92aefc05, 2},
    {"/key/31", 0xeca71d6f, 2},
    {"/key/32", 0xcb744a75, 1},
    {"/key/33", 0xafe0ddd8, 1},
    {"/key/34", 0xf0c329cf, 1},
    {"/key/35", 0x8644b410, 1},
    {"/key/36", 0x51e65672, 1},
    {"/key/37", 0x02fc89cc, 2},
    {"/key/38", 0x3646b7f9, 2},
    {"/key/39", 0x84d7a6d7, 2},
    {"/key/40", 0xb2863b84, 1},
    {"/key/41", 0x042767ad, 2},
    {"/key/42", 0xb3f1cbbc, 1},
    {"/key/43", 0xf020671e, 1},
    {"/key/44", 0x002465d6, 1},
    {"/key/45", 0x5e6b03da, 2},
    {"/key/46", 0x2a8d8795, 2},
    {"/key/47", 0x2f7f2853, 1},
    {"/key/48", 0xe4f57694, 1},
    {"/key/49", 0x9961e820, 2},
    {"/key/50", 0x89ca6621, 2},
    {"/key/51", 0x10a6781e, 1},
    {"/key/52", 0x6f32f43e, 2},
    {"/key/53", 0x70644718, 2},
    {"/key/54", 0x4618cd04, 2},
    {"/key/55", 0x212af227, 2},
    {"/key/56", 0xf8e1db25, 2},
    {"/key/57", 0x75ef37b2, 1},
    {"/key/58", 0xf4530d3f, 1},
    {"/key/59", 0xa7e84507, 1},
    {"/key/60", 0x25ceef67, 1},
    {"/key/61", 0xe0121bf7, 1},
    {"/key/62", 0xf9d7c5ee, 2},
    {"/key/63", 0xe59ccaef, 2},
    {"/key/64", 0x4a8d265b, 2},
    {"/key/65", 0xb680ec4b, 2},
    {"/key/66", 0xa5a219c0, 2},
    {"/key/67", 0x1fc53136, 1},
    {"/key/68", 0xf20e5c45, 1},
    {"/key/69", 0xbf00ea05, 2},
    {"/key/70", 0xc1327a2c, 1},
    {"/key/71", 0x08909b3b, 2},
    {"/key/72", 0x65bc023f, 2},
    {"/key/73", 0xd590eba2, 2},
    {"/key/74", 0x540b1f68, 2},
    {"/key/75", 0xa3d25a5d, 2},
    {"/key/76", 0x8b3efbbb, 2},
    {"/key/77", 0xaa91ad4a, 2},
    {"/key/78", 0x61269e96, 2},
    {"/key/79", 0x7febee84, 1},
    {"/key/80", 0x85e065c2, 2},
    {"/key/81", 0x9378f60b, 2},
    {"/key/82", 0x629c29cb, 2},
    {"/key/83", 0x347593c6, 2},
    {"/key/84", 0xec48cdc3, 2},
    {"/key/85", 0x59d259a3, 2},
    {"/key/86", 0xfac28a7b, 2},
    {"/key/87", 0x3b9b9fe3, 2},
    {"/key/88", 0xae137ce1, 1},
    {"/key/89", 0xd2ccf71f, 2},
    {"/key/90", 0xd52fbaf3, 2},
    {"/key/91", 0x07fc56ec, 2},
    {"/key/92", 0xf56c49ec, 2},
    {"/key/93", 0xb656a511, 2},
    {"/key/94", 0x695a8470, 2},
    {"/key/95", 0x71e93faf, 1},
    {"/key/96", 0x6441483f, 1},
    {"/key/97", 0xa0b1b9ea, 2},
    {"/key/98", 0xf568a355, 2},
    {"/key/99", 0xfa793211, 2},
    {"/key/100", 0x997bb602, 2},
    {"/key/101", 0xcf61b09f, 1},
    {"/key/102", 0xfee41c56, 2},
    {"/key/103", 0x4f2a2bc0, 2},
    {"/key/104", 0x76534cb8, 1},
    {"/key/105", 0xab082fca, 2},
    {"/key/106", 0x2593930c, 1},
    {"/key/107", 0xb48bd44a, 1},
    {"/key/108", 0xcc05c6c5, 1},
    {"/key/109", 0x357d744b, 2},
    {"/key/110", 0x1e7c8dcd, 1},
    {"/key/111", 0x2413077d, 1},
    {"/key/112", 0xf0c440ce, 1},
    {"/key/113", 0x18906e84, 1},
    {"/key/114", 0x2b12b52b, 1},
    {"/key/115", 0x20368cbe, 1},
    {"/key/116", 0x3a3b02ea, 2},
    {"/key/117", 0x520a0232, 1},
    {"/key/118", 0x8a48eb52, 1},
    {"/key/119", 0xcbd85f37, 1},
    {"/key/120", 0xb682d4e2, 2},
    {"/key/121", 0x49c2383e, 2},
    {"/key/122", 0x0678f6e9, 2},
    {"/key/123", 0x6b417d8b, 2},
    {"/key/124", 0xcf96d0d6, 1},
    {"/key/125", 0x1da461d4, 2},
    {"/key/126", 0xfd571b9e, 2},
    {"/key/127", 0x7e75641f, 1},
    {"/key/128", 0x1b08eb23, 2},
    {"/key/129", 0x4a2995f1, 2},
    {"/key/130", 0x0fd86ee1, 1},
    {"/key/131", 0xbf963e99, 2},
    {"/key/132", 0xeebfe2d2, 1},
    {"/key/133", 0x6bfa1b93, 2},
    {"/key/134", 0x25e86f9e, 1},
    {"/key/135", 0xa35043a6, 2},
    {"/key/136", 0x8cb773d9, 2},
    {"/key/137", 0x6b70c249, 2},
    {"/key/138", 0x200ca426, 1},
    {"/key/139", 0x32fc9ae7, 2},
    {"/key/140", 0xb186883a, 2},
    {"/key/141", 0xec49e131, 2},
    {"/key/142", 0x49244e6a, 2},
    {"/key/143", 0xc164859e, 2},
    {"/key/144", 0x19acb795, 1},
    {"/key/145", 0x51f4baed, 1},
    {"/key/146", 0x94124db3, 2},
    {"/key/147", 0x93588adc, 2},
    {"/key/148", 0x166dee07, 1},
    {"/key/149", 0xfa556a07, 2},
    {"/key/150", 0xec2071e0, 2},
    {"/key/151", 0xe1fcc5e1, 2},
    {"/key/152", 0xd1816399, 2},
    {"/key/153", 0xc54250f1, 1},
    {"/key/154", 0xce015ccc, 1},
    {"/key/155", 0xc4287f54, 2},
    {"/key/156", 0x7b733403, 2},
    {"/key/157", 0x1c7c1f19, 1},
    {"/key/158", 0xd92374c3, 1},
    {"/key/159", 0x92a131b9, 2},
    {"/key/160", 0x8c62eeb5, 2},
    {"/key/161", 0xcc07ccaf, 1},
    {"/key/162", 0x2c274b61, 1},
    {"/key/163", 0x4b1bb54b, 2},
    {"/key/164", 0xadd4e986, 1},
    {"/key/165", 0x25fd08b1, 1},
    {"/key/166", 0x509c9e27, 2},
    {"/key/167", 0x673909d7, 2},
    {"/key/168", 0x376204b5, 2},
    {"/key/169", 0xc8d69f30, 2},
    {"/key/170", 0x0800584a, 2},
    {"/key/171", 0x54fb8d4c, 2},
    {"/key/172", 0x680f7ef5, 2},
    {"/key/173", 0x8492fd38, 2},
    {"/key/174", 0xc917bb8b, 2},
    {"/key/175", 0xc3174c89, 2},
    {"/key/176", 0x0eea428e, 2},
    {"/key/177", 0x82cae796, 2},
    {"/key/178", 0xfbff5b3d, 1},
    {"/key/179", 0xf06e0f66, 1},
    {"/key/180", 0x85b1e8f1, 2},
    {"/key/181", 0x5eb14059, 2},
    {"/key/182", 0x3d5b480a, 1},
    {"/key/183", 0x00d7a596, 2},
    {"/key/184", 0x1109e8cc, 1},
    {"/key/185", 0x3c09d011, 2},
    {"/key/186", 0xcfb2e354, 1},
    {"/key/187", 0x084e172e, 2},
    {"/key/188", 0x7dd42711, 1},
    {"/key/189", 0xa74ee03f, 2},
    {"/key/190", 0x91e60ea9, 2},
    {"/key/191", 0xd5f62aeb, 2},
    {"/key/192", 0xaaf035d5, 2},
    {"/key/193", 0x86edfaef, 1},
    {"/key/194", 0x14693130, 2},
    {"/key/195", 0xcc3a3e75, 1},
    {"/key/196", 0x86ef99d1, 1},
    {"/key/197", 0xc17b96d3, 2},
    {"/key/198", 0x2bd0d355, 1},
    {"/key/199", 0x0b5c81d7, 2},
};

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))

START_TEST(test_keys_all_up)
{
    struct ketama_continuum *c = build(&SET);

    ck_assert_uint_eq(NROWS(KEYS_ALL_UP), 200);
    for (size_t i = 0; i < NROWS(KEYS_ALL_UP); i++) {
        const struct keyrow *k = &KEYS_ALL_UP[i];
        struct peers p = {0};

        ck_assert_uint_eq(hash_of(k->key), k->hash);
        ck_assert_int_eq(lookup_key(c, k->key, NULL), k->server);
        /* all usable: one question, about the owner */
        ck_assert_int_eq(lookup_key(c, k->key, &p), k->server);
        for (int s = 0; s < 4; s++)
            ck_assert_int_eq(p.asked[s], s == k->server);
    }
    free(c);
}
END_TEST

/* The server of the first point after `from` (wrapping) that is not down:
 * the definition, by a linear scan. */
static int next_up(const struct ketama_continuum *c, size_t from, const struct peers *p)
{
    for (size_t step = 0; step < c->npoints; step++) {
        uint32_t s = c->points[(from + step) % c->npoints].server;
        if (!p->down[s])
            return (int)s;
    }
    return -1;
}

static void check_down(const struct keyrow *rows, size_t nrows, const int *down, size_t ndown)
{
    struct ketama_continuum *c = build(&SET);
    struct peers p = {0};
    size_t moved = 0;

    for (size_t d = 0; d < ndown; d++)
        p.down[down[d]] = 1;
    ck_assert_uint_eq(nrows, NROWS(KEYS_ALL_UP));
    for (size_t i = 0; i < nrows; i++) {
        const struct keyrow *k = &rows[i], *up = &KEYS_ALL_UP[i];
        struct peers q = p;

        memset(q.asked, 0, sizeof(q.asked));
        ck_assert_str_eq(k->key, up->key);
        int got = lookup_key(c, k->key, &q);
        /* the reference's answer */
        ck_assert_int_eq(got, k->server);
        /* only the keys of the down servers move ... */
        if (!p.down[up->server]) {
            ck_assert_int_eq(got, up->server);
        } else {
            /* ... to the server of the next point that is up */
            moved++;
            ck_assert_int_eq(got, next_up(c, ketama_find(c, k->hash), &p));
        }
        /* each server asked at most once */
        for (int s = 0; s < 4; s++)
            ck_assert_int_le(q.asked[s], 1);
    }
    ck_assert_uint_gt(moved, 0);
    free(c);
}

START_TEST(test_down_server_moves_only_its_keys)
{
    static const int down2[] = {2};
    static const int down03[] = {0, 3};

    check_down(KEYS_DOWN_2, NROWS(KEYS_DOWN_2), down2, 1);
    check_down(KEYS_DOWN_0_3, NROWS(KEYS_DOWN_0_3), down03, 2);
}
END_TEST

/* libketama's ketama_get_server search, transcribed as an oracle: a bisection
 * that answers the point whose predecessor is below the hash, or point 0 when
 * it runs off either end. */
static size_t libketama_search(const struct ketama_continuum *c, uint32_t h)
{
    long lo = 0, hi = (long)c->npoints;

    for (;;) {
        long mid = (lo + hi) / 2;
        if (mid == (long)c->npoints)
            return 0;
        uint32_t v = c->points[mid].point, v1 = mid == 0 ? 0 : c->points[mid - 1].point;
        if (h <= v && h > v1)
            return (size_t)mid;
        if (v < h)
            lo = mid + 1;
        else
            hi = mid - 1;
        if (lo > hi)
            return 0;
    }
}

START_TEST(test_find_and_wrap)
{
    struct ketama_continuum *c = build(&SET);
    size_t last = c->npoints - 1;

    /* exact points, between points, the ends */
    for (size_t i = 0; i < c->npoints; i++) {
        uint32_t pt = c->points[i].point;
        ck_assert_uint_eq(ketama_find(c, pt), i);
        if (pt > 0 && (i == 0 || c->points[i - 1].point < pt - 1))
            ck_assert_uint_eq(ketama_find(c, pt - 1), i);
        ck_assert_uint_eq(ketama_find(c, pt + 1), i == last ? 0 : i + 1);
    }
    ck_assert_uint_eq(ketama_find(c, 0), 0);
    ck_assert_uint_lt(c->points[last].point, UINT32_MAX);
    ck_assert_uint_eq(ketama_find(c, UINT32_MAX), 0); /* past the last point: wrap */
    ck_assert_int_eq(ketama_lookup(c, UINT32_MAX, NULL, NULL), (int)c->points[0].server);

    /* the same answers as libketama's own search, over a spread of hashes */
    uint32_t h = 0x9e3779b9u;
    for (int i = 0; i < 100000; i++) {
        h = h * 1664525u + 1013904223u;
        ck_assert_uint_eq(ketama_find(c, h), libketama_search(c, h));
    }
    for (size_t i = 0; i < c->npoints; i++) {
        uint32_t pt = c->points[i].point;
        ck_assert_uint_eq(ketama_find(c, pt), libketama_search(c, pt));
        ck_assert_uint_eq(ketama_find(c, pt + 1), libketama_search(c, pt + 1));
    }

    /* the walk past a down server wraps too: the last point's server down */
    struct peers p = {0};
    uint32_t owner = c->points[last].server;
    p.down[owner] = 1;
    size_t j = 0;
    while (c->points[j].server == owner)
        j++;
    ck_assert_int_eq(ketama_lookup(c, c->points[last].point, usable, &p),
                     (int)c->points[j].server);
    free(c);
}
END_TEST

START_TEST(test_all_down_and_empty)
{
    struct ketama_continuum *c = build(&SET);
    struct peers p = {.down = {1, 1, 1, 1}};

    ck_assert_int_eq(lookup_key(c, "/anything", &p), -1);
    for (int s = 0; s < 4; s++)
        ck_assert_int_eq(p.asked[s], 1); /* each asked once, then the walk stops */
    free(c);

    static const struct srvset none = {.n = 0};
    c = build(&none);
    ck_assert_uint_eq(c->npoints, 0);
    ck_assert_uint_eq(ketama_find(c, 42), 0);
    ck_assert_int_eq(lookup_key(c, "/x", NULL), -1);
    memset(&p, 0, sizeof(p));
    ck_assert_int_eq(lookup_key(c, "/x", &p), -1);
    free(c);
}
END_TEST

/* Retries of one request: each try excludes the servers tried so far, in the
 * order the ring gives them, until none is left. */
START_TEST(test_tried_sequence)
{
    struct ketama_continuum *c = build(&SET);

    for (size_t i = 0; i < 50; i++) {
        const struct keyrow *k = &KEYS_ALL_UP[i];
        struct peers p = {0};
        size_t at = ketama_find(c, k->hash);

        for (int tries = 0; tries < 4; tries++) {
            int want = next_up(c, at, &p);
            int got = lookup_key(c, k->key, &p);
            ck_assert_int_ge(got, 0);
            ck_assert_int_eq(got, want);
            if (tries == 0)
                ck_assert_int_eq(got, k->server);
            p.down[got] = 1;
        }
        ck_assert_int_eq(lookup_key(c, k->key, &p), -1);
    }
    free(c);
}
END_TEST

START_TEST(test_weights_share)
{
    struct ketama_continuum *c = build(&SET);
    unsigned count[4] = {0};
    const unsigned n = 100000;

    for (unsigned i = 0; i < n; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%u", i);
        int s = lookup_key(c, key, NULL);
        ck_assert(s >= 0 && s < 4);
        count[s]++;
    }
    /* weights 3:1:2:1; consistent hashing is close, not exact */
    for (int s = 0; s < 4; s++) {
        double share = (double)count[s] / n, want = SET.weight[s] / 7.0;
        ck_assert_msg(share > want - 0.04 && share < want + 0.04,
                      "server %d: %f of keys, weight %f", s, share, want);
    }
    ck_assert_uint_gt(count[0], count[2]);
    ck_assert_uint_gt(count[2], count[1]);
    ck_assert_uint_gt(count[2], count[3]);
    free(c);

    /* a weight too small for a digest: no point, no key (libketama) */
    static const struct srvset lopsided = {.n = 2, .addr = {"a:1", "b:1"}, .weight = {1000, 1}};
    struct peers p = {0};
    c = build(&lopsided);
    ck_assert_uint_eq(c->npoints, 4 * 79);
    ck_assert_uint_eq(c->nring, 1);
    ck_assert_int_eq(lookup_key(c, "/k", NULL), 0);
    p.down[0] = 1;
    ck_assert_int_eq(lookup_key(c, "/k", &p), -1);
    ck_assert_int_eq(p.asked[1], 0);
    free(c);
}
END_TEST

/* Adding a server moves keys only onto the new server (consistent hashing). */
START_TEST(test_adding_server_moves_keys_only_to_it)
{
    static const struct srvset three = {
        .n = 3, .addr = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}, .weight = {1, 1, 1}};
    static const struct srvset four = {
        .n = 4,
        .addr = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"},
        .weight = {1, 1, 1, 1}};
    struct ketama_continuum *c3 = build(&three), *c4 = build(&four);
    unsigned moved = 0;

    ck_assert_uint_eq(c3->npoints, 3 * 160);
    ck_assert_uint_eq(c4->npoints, 4 * 160);
    for (unsigned i = 0; i < 20000; i++) {
        char key[16];
        snprintf(key, sizeof(key), "/u/%u", i);
        int a = lookup_key(c3, key, NULL), b = lookup_key(c4, key, NULL);
        if (a != b) {
            ck_assert_int_eq(b, 3);
            moved++;
        }
    }
    ck_assert_uint_gt(moved, 20000 / 8);
    ck_assert_uint_lt(moved, 20000 / 3);
    free(c3);
    free(c4);
}
END_TEST

static Suite *ketama_suite(void)
{
    Suite *s = suite_create("ketama");
    TCase *tc = tcase_create("continuum");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_md5_vectors);
    tcase_add_test(tc, test_libketama_golden);
    tcase_add_test(tc, test_digests_per_server);
    tcase_add_test(tc, test_points_table);
    tcase_add_test(tc, test_keys_all_up);
    tcase_add_test(tc, test_down_server_moves_only_its_keys);
    tcase_add_test(tc, test_find_and_wrap);
    tcase_add_test(tc, test_all_down_and_empty);
    tcase_add_test(tc, test_tried_sequence);
    tcase_add_test(tc, test_weights_share);
    tcase_add_test(tc, test_adding_server_moves_keys_only_to_it);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ketama_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    ketama_md5_release();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
