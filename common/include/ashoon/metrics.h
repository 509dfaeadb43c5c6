/*
 * ashoon/metrics.h - counters, gauges, histograms in Prometheus text format.
 *
 * A metric is found or created by (name, labels); labels is NULL or a
 * pre-rendered label set such as `route="api",code="200"` (build it with
 * ash_metrics_labels so values are escaped). Pointers returned stay valid
 * until the registry is freed, so hot paths look them up once. Updates are
 * atomic and lock-free: any thread. Lookup/creation and rendering take the
 * registry's mutex: any thread.
 */
#ifndef ASHOON_METRICS_H
#define ASHOON_METRICS_H

#include <ashoon/err.h>

#include <stddef.h>
#include <stdint.h>

typedef struct ash_metrics   ash_metrics;
typedef struct ash_counter   ash_counter;
typedef struct ash_gauge     ash_gauge;
typedef struct ash_histogram ash_histogram;

ash_metrics *ash_metrics_new(void);
void         ash_metrics_free(ash_metrics *reg); /* NULL is fine */

/* help is only used the first time a name is seen. Asking for an existing
 * name with a different kind is a programming error (asserts). */
ash_counter *ash_metrics_counter(
    ash_metrics *reg, const char *name, const char *help, const char *labels);
ash_gauge *ash_metrics_gauge(
    ash_metrics *reg, const char *name, const char *help, const char *labels);
/* bounds: ascending upper bounds (seconds, say); copied. NULL/0 gives the
 * default latency buckets 0.001 .. 10. */
ash_histogram *ash_metrics_histogram(ash_metrics *reg, const char *name,
    const char *help, const char *labels, const double *bounds, size_t n);

void ash_counter_add(ash_counter *c, uint64_t v);
void ash_gauge_set(ash_gauge *g, int64_t v);
void ash_gauge_add(ash_gauge *g, int64_t v);
void ash_histogram_observe(ash_histogram *h, double v);

/* Renders label pairs k1, v1, k2, v2, ... (NULL-terminated) into buf as
 * `k1="v1",k2="v2"` with \, " and newline escaped. Returns buf. If cap is
 * too small, a value is cut before an escape and a pair that does not fit
 * is dropped, so buf always holds a well-formed label set. */
char *ash_metrics_labels(char *buf, size_t cap, ...);

/* Prometheus text exposition format 0.0.4 (# HELP, # TYPE, samples; for
 * histograms _bucket{le=...}, _sum, _count). Free with free(). */
char *ash_metrics_render(ash_metrics *reg);

#endif
