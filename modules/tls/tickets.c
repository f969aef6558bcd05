/* Session ticket keys derived from a shared secret (see tickets.h). */
#include "tickets.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

static int block(const unsigned char *secret, uint64_t epoch, unsigned char i,
                 unsigned char out[32])
{
    unsigned char msg[16 + 8 + 1];
    memcpy(msg, "weir ticket keys", 16);
    for (int b = 0; b < 8; b++)
        msg[16 + b] = (unsigned char)(epoch >> (56 - 8 * b));
    msg[24] = i;
    unsigned len = 32;
    return HMAC(EVP_sha256(), secret, TICKET_SECRET_LEN, msg, sizeof(msg), out, &len) ? 0 : -1;
}

int ticket_keys_derive(const unsigned char secret[TICKET_SECRET_LEN], uint64_t epoch,
                       ticket_keys_t *out)
{
    unsigned char name[32];
    if (block(secret, epoch, 0, name) < 0 || block(secret, epoch, 1, out->aes) < 0 ||
        block(secret, epoch, 2, out->hmac) < 0)
        return -1;
    memcpy(out->name, name, sizeof(out->name));
    out->epoch = epoch;
    return 0;
}

int ticket_ring_at(ticket_ring_t *ring, uint64_t now_s)
{
    uint64_t e = ticket_epoch(now_s);
    if (ring->ready && ring->cur.epoch == e)
        return 0;
    if (ring->ready && ring->cur.epoch + 1 == e) {
        ring->prev = ring->cur;
    } else if (e == 0 || ticket_keys_derive(ring->secret, e - 1, &ring->prev) < 0) {
        ring->ready = 0;
        return -1;
    }
    if (ticket_keys_derive(ring->secret, e, &ring->cur) < 0) {
        ring->ready = 0;
        return -1;
    }
    ring->ready = 1;
    return 0;
}

const ticket_keys_t *ticket_ring_find(const ticket_ring_t *ring, const unsigned char name[16],
                                      int *renew)
{
    if (!ring->ready)
        return NULL;
    if (memcmp(name, ring->cur.name, 16) == 0) {
        *renew = 0;
        return &ring->cur;
    }
    if (memcmp(name, ring->prev.name, 16) == 0) {
        *renew = 1;
        return &ring->prev;
    }
    return NULL;
}
