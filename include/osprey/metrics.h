/* SPDX-License-Identifier: ISC */
/* Metrics registry: counters and gauges that the http module serves in
 * the Prometheus text format. */
#ifndef OSPREY_METRICS_H
#define OSPREY_METRICS_H

#include <stdint.h>

struct osp_buf;

enum osp_metric_type {
	OSP_METRIC_COUNTER = 1,
	OSP_METRIC_GAUGE,
};

struct osp_metric;

/*
 * Registers a metric family, or returns the existing one of that name
 * (same type and label required, else NULL and an error is logged).
 * name: Prometheus syntax [a-z_][a-z0-9_]*, conventionally "osprey_"
 * prefixed and "_total" suffixed for counters; label: one label name
 * (e.g. "listener") or NULL for none. Strings are copied. Families live
 * until exit, so a module may keep the pointer across reloads; register
 * in init() or start(). Main thread.
 */
struct osp_metric *osp_metric_new(const char *name, const char *help,
	    enum osp_metric_type type, const char *label);

/* Adds delta to the series with this label value (NULL when the family
 * has no label; values are copied, escaped on output). Any thread.
 * A family keeps at most 1000 series: further label values all add to
 * the series "other". A counter ignores negative deltas; m NULL (a
 * failed registration) is a no-op here and below. */
void	osp_metric_add(struct osp_metric *m, const char *label_value,
	    int64_t delta);
/* Sets a gauge's series (a counter is left alone). Any thread. */
void	osp_metric_set(struct osp_metric *m, const char *label_value,
	    int64_t value);
/* A series' value (0 when it does not exist). Any thread. */
int64_t	osp_metric_get(struct osp_metric *m, const char *label_value);

/* Appends every family with its series, sorted by name, in the
 * Prometheus text exposition format 0.0.4. Any thread. */
void	osp_metrics_write(struct osp_buf *b);

#endif
