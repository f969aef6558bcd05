#include "h1_queue.h"

long h1_queue_body(wireq_t *q, const weir_str_t *s, size_t n, int last, int chunked)
{
    long bytes = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!s[i].len)
            continue;
        if (chunked) {
            char line[20];
            rc |= wq_copy(q, line, h1_chunk_header(line, s[i].len));
        }
        rc |= wq_add(q, s[i].data, s[i].len);
        if (chunked)
            rc |= wq_add(q, H1_CRLF, 2);
        bytes += (long)s[i].len;
    }
    if (last && chunked)
        rc |= wq_add(q, H1_LAST_CHUNK, 5);
    return rc ? -1 : bytes;
}
