/*
 * Bump allocator in chunks, with large allocations kept apart and a cleanup
 * list. Used for config generations (one arena per generation) and requests
 * (one arena per request, reset between keepalive requests).
 *
 * Allocation returns zeroed, 16-byte aligned memory, or NULL when the arena's
 * cap is reached or malloc fails; callers fail one request, never the process.
 */
#ifndef WEIR_ARENA_H
#define WEIR_ARENA_H

#include <stddef.h>

struct arena;

/* chunk: bytes per chunk; cap: total bytes the arena may hold (0 = no cap). */
struct arena *arena_new(size_t chunk, size_t cap);
void *arena_alloc(struct arena *a, size_t size);
/* Like arena_alloc without zeroing, for buffers about to be overwritten. */
void *arena_alloc_raw(struct arena *a, size_t size);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
/* A copy of s[0..n) with ASCII letters lowercased, NUL-terminated. */
char *arena_strndup_lower(struct arena *a, const char *s, size_t n);
int arena_cleanup(struct arena *a, void (*fn)(void *), void *arg);
/* Runs cleanups, frees everything but the first chunk, keeps the arena. */
void arena_reset(struct arena *a);
/* Runs cleanups and frees the arena. NULL is fine. */
void arena_free(struct arena *a);
size_t arena_used(const struct arena *a);

#endif
