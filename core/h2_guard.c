/* Token buckets (h2_guard.h). */
#include "h2_guard.h"

int h2_bucket_take(h2_bucket_t *b, uint64_t now_ms, unsigned burst, unsigned per_sec)
{
    const uint64_t cost = 1000 / per_sec, full = (uint64_t)burst * cost;
    if (!b->at) {
        b->tokens_ms = full;
    } else if (now_ms > b->at) {
        b->tokens_ms += now_ms - b->at;
        if (b->tokens_ms > full)
            b->tokens_ms = full;
    }
    b->at = now_ms ? now_ms : 1;
    if (b->tokens_ms < cost)
        return -1;
    b->tokens_ms -= cost;
    return 0;
}

#define FRAME_HEADER 9
#define SETTINGS_TYPE 4
#define ACK_FLAG 1
#define PREFACE_LEN 24

void h2_ackfilter_init(h2_ackfilter_t *f)
{
    *f = (h2_ackfilter_t){.preface_left = PREFACE_LEN};
}

static int is_settings_ack(const unsigned char *hd)
{
    return hd[0] == 0 && hd[1] == 0 && hd[2] == 0 && hd[3] == SETTINGS_TYPE &&
           (hd[4] & ACK_FLAG);
}

static uint64_t payload_len(const unsigned char *hd)
{
    return (uint64_t)hd[0] << 16 | (uint64_t)hd[1] << 8 | hd[2];
}

int h2_ackfilter_feed(h2_ackfilter_t *f, const unsigned char *in, size_t n,
                      int (*out)(void *arg, const unsigned char *p, size_t len), void *arg)
{
    const unsigned char *p = in, *end = in + n, *run = in;
    if (f->hd_len) { /* a header began in the last read */
        size_t k = FRAME_HEADER - f->hd_len;
        if (k > n)
            k = n;
        for (size_t i = 0; i < k; i++)
            f->hd[f->hd_len++] = p[i];
        p += k;
        run = p;
        if (f->hd_len < FRAME_HEADER)
            return 0;
        f->hd_len = 0;
        if (!is_settings_ack(f->hd)) {
            if (out(arg, f->hd, FRAME_HEADER) < 0)
                return -1;
            f->frame_left = payload_len(f->hd);
        }
    }
    while (p < end) {
        size_t avail = (size_t)(end - p);
        if (f->preface_left || f->frame_left) {
            uint64_t want = f->preface_left ? f->preface_left : f->frame_left;
            size_t k = want < avail ? (size_t)want : avail;
            p += k;
            if (f->preface_left)
                f->preface_left -= k;
            else
                f->frame_left -= k;
            continue;
        }
        if (avail < FRAME_HEADER) { /* held back until the rest comes */
            if (p > run && out(arg, run, (size_t)(p - run)) < 0)
                return -1;
            for (size_t i = 0; i < avail; i++)
                f->hd[i] = p[i];
            f->hd_len = avail;
            return 0;
        }
        if (is_settings_ack(p)) {
            if (p > run && out(arg, run, (size_t)(p - run)) < 0)
                return -1;
            p += FRAME_HEADER;
            run = p;
            continue;
        }
        f->frame_left = payload_len(p);
        p += FRAME_HEADER;
    }
    if (p > run && out(arg, run, (size_t)(p - run)) < 0)
        return -1;
    return 0;
}
