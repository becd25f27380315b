/* SPDX-License-Identifier: ISC */
/* Metrics registry (metrics.h): counter and gauge families with at most
 * one label, written in the Prometheus text exposition format 0.0.4. */
#include "core.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/*
 * Families are kept sorted by name, and each family's series sorted by
 * label value (bytewise), so that the exposition is sorted without a
 * sort at write time and a lookup is a binary search. A family holds at
 * most METRICS_MAX_SERIES series: label values beyond that (a module
 * labelling by something remote clients choose, by mistake) all add to
 * the series "other", so memory stays bounded.
 *
 * Locks: `reg.lock` guards the family array; each family has its own lock
 * for its series. Adds take only the family lock.
 */
#define METRICS_MAX_SERIES	1000
#define METRICS_OTHER		"other"

struct metric_series {
	char		*label;		/* NULL in a family without label */
	int64_t		 value;
};

struct osp_metric {
	char			*name;
	char			*help;
	char			*label;		/* label name or NULL */
	enum osp_metric_type	 type;
	pthread_mutex_t		 lock;
	struct metric_series	*series;	/* sorted by label */
	size_t			 n, size;
};

static struct {
	pthread_mutex_t		 lock;
	struct osp_metric	**fam;		/* sorted by name */
	size_t			 n, size;
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Prometheus metric names are [a-zA-Z_:][a-zA-Z0-9_:]*; metrics.h
 * narrows them to lower case without colons (colons are for recording
 * rules). */
static bool
metric_name_ok(const char *s)
{
	size_t i;

	if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' ||
		    (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

/* Label names: [a-zA-Z_][a-zA-Z0-9_]*, "__" prefix reserved. */
static bool
metric_label_ok(const char *s)
{
	size_t i;

	if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9') ||
	    strncmp(s, "__", 2) == 0)
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_' ||
		    (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

/* Index of the family `name`, or where it would be inserted. */
static size_t
family_pos(const char *name, bool *found_r)
{
	size_t lo = 0, hi = reg.n, mid;
	int c;

	*found_r = false;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = strcmp(reg.fam[mid]->name, name)) == 0) {
			*found_r = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct osp_metric *
osp_metric_new(const char *name, const char *help, enum osp_metric_type type,
    const char *label)
{
	struct osp_metric *m;
	bool found;
	size_t pos;

	if (!metric_name_ok(name) || (label != NULL &&
	    !metric_label_ok(label)) || (type != OSP_METRIC_COUNTER &&
	    type != OSP_METRIC_GAUGE)) {
		osp_log_err("metrics", "bad metric \"%s\" (label \"%s\"): "
		    "names are [a-z_][a-z0-9_]*", name != NULL ? name : "",
		    label != NULL ? label : "");
		return NULL;
	}
	pthread_mutex_lock(&reg.lock);
	pos = family_pos(name, &found);
	if (found) {
		m = reg.fam[pos];
		if (m->type != type || (m->label == NULL) != (label == NULL) ||
		    (label != NULL && strcmp(m->label, label) != 0)) {
			osp_log_err("metrics", "metric %s registered again "
			    "with another type or label", name);
			m = NULL;
		}
		pthread_mutex_unlock(&reg.lock);
		return m;
	}
	m = osp_calloc(1, sizeof(*m));
	m->name = osp_strdup(name);
	m->help = osp_strdup(help != NULL ? help : "");
	m->label = label != NULL ? osp_strdup(label) : NULL;
	m->type = type;
	pthread_mutex_init(&m->lock, NULL);
	if (label == NULL) {
		/* The one series exists from the start: an unlabelled
		 * counter reads 0 before anything happened. */
		m->series = osp_calloc(1, sizeof(*m->series));
		m->n = m->size = 1;
	}
	if (reg.n == reg.size) {
		reg.size = reg.size == 0 ? 32 : reg.size * 2;
		reg.fam = osp_reallocarray(reg.fam, reg.size,
		    sizeof(*reg.fam));
	}
	memmove(reg.fam + pos + 1, reg.fam + pos,
	    (reg.n - pos) * sizeof(*reg.fam));
	reg.fam[pos] = m;
	reg.n++;
	pthread_mutex_unlock(&reg.lock);
	return m;
}

/* Index of the series `label`, or where it would be inserted (caller
 * holds m->lock; labelled families only). */
static size_t
series_pos(const struct osp_metric *m, const char *label, bool *found_r)
{
	size_t lo = 0, hi = m->n, mid;
	int c;

	*found_r = false;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = strcmp(m->series[mid].label, label)) == 0) {
			*found_r = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The series for label_value, created when missing (caller holds the
 * lock). Past the bound, the series "other". */
static struct metric_series *
series_get(struct osp_metric *m, const char *label_value)
{
	struct metric_series *s;
	bool found;
	size_t pos;

	if (m->label == NULL)
		return &m->series[0];
	if (label_value == NULL)
		label_value = "";
	pos = series_pos(m, label_value, &found);
	if (found)
		return &m->series[pos];
	if (m->n >= METRICS_MAX_SERIES && strcmp(label_value,
	    METRICS_OTHER) != 0) {
		pos = series_pos(m, METRICS_OTHER, &found);
		if (found)
			return &m->series[pos];
		label_value = METRICS_OTHER;
	}
	if (m->n == m->size) {
		m->size = m->size == 0 ? 8 : m->size * 2;
		m->series = osp_reallocarray(m->series, m->size,
		    sizeof(*m->series));
	}
	memmove(m->series + pos + 1, m->series + pos,
	    (m->n - pos) * sizeof(*m->series));
	s = &m->series[pos];
	s->label = osp_strdup(label_value);
	s->value = 0;
	m->n++;
	return s;
}

void
osp_metric_add(struct osp_metric *m, const char *label_value, int64_t delta)
{
	struct metric_series *s;

	/* A counter only goes up (Prometheus treats a decrease as a
	 * restart); NULL: a family whose registration failed. */
	if (m == NULL || (m->type == OSP_METRIC_COUNTER && delta < 0))
		return;
	pthread_mutex_lock(&m->lock);
	s = series_get(m, label_value);
	s->value += delta;
	pthread_mutex_unlock(&m->lock);
}

void
osp_metric_set(struct osp_metric *m, const char *label_value, int64_t value)
{
	if (m == NULL || m->type != OSP_METRIC_GAUGE)
		return;
	pthread_mutex_lock(&m->lock);
	series_get(m, label_value)->value = value;
	pthread_mutex_unlock(&m->lock);
}

int64_t
osp_metric_get(struct osp_metric *m, const char *label_value)
{
	int64_t v = 0;
	bool found;
	size_t pos;

	if (m == NULL)
		return 0;
	pthread_mutex_lock(&m->lock);
	if (m->label == NULL)
		v = m->series[0].value;
	else {
		pos = series_pos(m, label_value != NULL ? label_value : "",
		    &found);
		if (found)
			v = m->series[pos].value;
	}
	pthread_mutex_unlock(&m->lock);
	return v;
}

/* HELP text: backslash and line feed escaped. Label values: also the
 * double quote (exposition format 0.0.4, "Comments, help text, and type
 * information" and "Escaping"). */
static void
metric_escape(struct osp_buf *b, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			osp_buf_puts(b, "\\\\");
		else if (*s == '\n')
			osp_buf_puts(b, "\\n");
		else if (*s == '"' && quote)
			osp_buf_puts(b, "\\\"");
		else
			osp_buf_putc(b, *s);
	}
}

void
osp_metrics_write(struct osp_buf *b)
{
	struct osp_metric *m;
	size_t i, j;

	pthread_mutex_lock(&reg.lock);
	for (i = 0; i < reg.n; i++) {
		m = reg.fam[i];
		osp_buf_printf(b, "# HELP %s ", m->name);
		metric_escape(b, m->help, false);
		osp_buf_printf(b, "\n# TYPE %s %s\n", m->name,
		    m->type == OSP_METRIC_COUNTER ? "counter" : "gauge");
		pthread_mutex_lock(&m->lock);
		for (j = 0; j < m->n; j++) {
			if (m->label == NULL) {
				osp_buf_printf(b, "%s %" PRId64 "\n", m->name,
				    m->series[j].value);
				continue;
			}
			osp_buf_printf(b, "%s{%s=\"", m->name, m->label);
			metric_escape(b, m->series[j].label, true);
			osp_buf_printf(b, "\"} %" PRId64 "\n",
			    m->series[j].value);
		}
		pthread_mutex_unlock(&m->lock);
	}
	pthread_mutex_unlock(&reg.lock);
}

void
osp_metrics_free_all(void)
{
	struct osp_metric *m;
	size_t i, j;

	pthread_mutex_lock(&reg.lock);
	for (i = 0; i < reg.n; i++) {
		m = reg.fam[i];
		for (j = 0; j < m->n; j++)
			osp_free(m->series[j].label);
		osp_free(m->series);
		pthread_mutex_destroy(&m->lock);
		osp_free(m->name);
		osp_free(m->help);
		osp_free(m->label);
		osp_free(m);
	}
	osp_free(reg.fam);
	reg.fam = NULL;
	reg.n = reg.size = 0;
	pthread_mutex_unlock(&reg.lock);
}
