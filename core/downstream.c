/*
 * The orphan downstream (downstream.h): where a request goes when its client
 * left while a handler held it suspended. When the handler resumes it,
 * nothing goes anywhere and the request is freed.
 */
#include "downstream.h"

static int orphan_start(weir_request_t *r, const response_start_t *rs)
{
    (void)r, (void)rs;
    return -1;
}

static void orphan_end(weir_request_t *r)
{
    r->ds = NULL;
    request_free(r);
}

static int orphan_head_sent(const weir_request_t *r)
{
    (void)r;
    return 0;
}

const downstream_t downstream_orphan = {
    .start_response = orphan_start,
    .finish = orphan_end,
    .abort = orphan_end,
    .head_sent = orphan_head_sent,
};

void downstream_orphan_request(weir_request_t *r)
{
    r->ds = &downstream_orphan;
    r->conn = NULL;
}
