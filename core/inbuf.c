#include "inbuf.h"

#include <stdlib.h>
#include <string.h>

int inbuf_append(inbuf_t *b, const char *p, size_t n, size_t initial)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : initial;
        while (cap < b->len + n)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data)
            return -1;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void inbuf_free(inbuf_t *b)
{
    free(b->data);
    *b = (inbuf_t){0};
}

void inbuf_compact(inbuf_t *b)
{
    size_t rest = b->len - b->off;
    if (!rest) {
        inbuf_free(b);
        return;
    }
    if (b->off)
        memmove(b->data, b->data + b->off, rest);
    b->len = rest;
    b->off = 0;
}
