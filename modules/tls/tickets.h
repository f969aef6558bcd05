/*
 * Session ticket keys, the same in every worker and across reloads, with no
 * process ever writing them after start-up.
 *
 * The shared zone holds one random 32-byte secret, made when the zone is
 * created (the first load; a reload gets the same zone back, so the same
 * secret). Time is cut into epochs of TICKET_EPOCH_S seconds, and the keys of
 * epoch e are HMAC-SHA256(secret, "weir ticket keys" || e || i) for i = 0..2:
 * a 16-byte key name, a 32-byte AES-256-CBC key and a 32-byte HMAC-SHA256
 * key (RFC 5077's layout, as nginx and HAProxy use). New tickets are sealed
 * with the current epoch's keys; a ticket of the previous epoch still opens
 * (and is renewed), so a ticket lives between one and two epochs and keys
 * rotate every epoch without coordination: every worker computes the same
 * keys from the same clock.
 */
#ifndef WEIR_TLS_TICKETS_H
#define WEIR_TLS_TICKETS_H

#include <stdint.h>

#define TICKET_EPOCH_S (12 * 3600)
#define TICKET_SECRET_LEN 32

typedef struct ticket_keys {
    uint64_t epoch;
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
} ticket_keys_t;

/* The keys of `epoch`. 0, or -1 if the HMAC failed. */
int ticket_keys_derive(const unsigned char secret[TICKET_SECRET_LEN], uint64_t epoch,
                       ticket_keys_t *out);
static inline uint64_t ticket_epoch(uint64_t unix_s)
{
    return unix_s / TICKET_EPOCH_S;
}

/* The worker's keys for now: current (sealing) and previous (opening only).
 * Recomputed when the epoch moves. */
typedef struct ticket_ring {
    const unsigned char *secret; /* in the shared zone */
    ticket_keys_t cur, prev;
    int ready;
} ticket_ring_t;

/* Updates the ring for unix time now_s. 0, or -1. */
int ticket_ring_at(ticket_ring_t *ring, uint64_t now_s);
/* The keys whose name is `name` (current or previous), with *renew set when
 * they are the previous epoch's; NULL if neither. */
const ticket_keys_t *ticket_ring_find(const ticket_ring_t *ring, const unsigned char name[16],
                                      int *renew);

#endif
