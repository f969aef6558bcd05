/*
 * The metrics registry behind weir_metric_* (module.h, 1.6).
 *
 * Two halves:
 *  - per generation (conf arena): the families and their series, in
 *    registration order, with the label values of each series;
 *  - shared (one zone of the core, "weir.metrics.<capacity>"): a table of
 *    `metrics_max_series` slots, each one 64-bit value with the identity
 *    of the series it holds. A series takes one slot per value it needs (a
 *    counter or gauge one; a histogram one per bucket, +Inf included, and
 *    one for the sum, the count being the sum of the buckets).
 *
 * metrics_bind, the last step of a load, finds or claims the slot of every
 * value by its identity: "<name>#<fingerprint of kind, label names and
 * buckets>" then each label value as "<length>:<bytes>", then the bucket
 * index for a histogram. Only the master binds (config time), so the table
 * needs no lock; workers only add to the values through the pointers bound
 * here. The zone keeps its name and size across a reload (shm.c), so a
 * series with the same identity in the next generation is the same value;
 * one the new configuration no longer registers keeps its slot (its value
 * would come back if the series did) but is not rendered. A slot is never
 * freed: the table is remade (every value from zero) when
 * metrics_max_series changes, or at a restart or binary upgrade.
 *
 * A binding that does not fit is refused before any slot is claimed, so a
 * reload that fails here has changed nothing; a reload that fails later
 * only leaves zero-valued slots behind.
 *
 * Values are plain relaxed atomics, one per slot, each slot 256 bytes (no
 * two values share a cache line). Per-worker shards were considered and
 * measured unnecessary (README, Benchmarks: metrics).
 */
#ifndef WEIR_METRICS_H
#define WEIR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "weir/module.h"

#define METRICS_MAX_SERIES_DEFAULT 4096
#define METRICS_MAX_SERIES_MIN 64
#define METRICS_MAX_SERIES_MAX 65536
/* Bytes of a series' identity, label values included. */
#define METRICS_ID_MAX 232
#define METRICS_BUCKETS_MAX 30

/* A series whose value is computed at render time (a peer's health, a
 * constant), in the scraping worker. */
typedef int64_t (*metrics_value_fn)(const void *arg);

/* The registry of one generation (cf->metrics), created on first use. */
struct metrics_reg;

/* Like weir_metric_series, for a series whose value fn(arg) gives at render
 * time; a family is either all stored or all computed. */
int metrics_series_fn(weir_conf_t *cf, weir_metric_t *m, const char *const *label_values,
                      metrics_value_fn fn, const void *arg);

/* Whether this generation stores metrics (weir_metrics_enable was called). */
int metrics_enabled(const weir_conf_t *cf);

/* Binds every registered series to its slot in the shared table, after all
 * conf_done hooks. A no-op unless enabled. 0, or -1 after a config error
 * (the table is full: it names metrics_max_series at `key`, or the root). */
int metrics_bind(weir_conf_t *cf, size_t max_series, const weir_node_t *key);

/* The master's own writes (core families, metrics_core.c). */
void metrics_gauge_set(weir_metric_t *m, int series, int64_t value);

#endif
