/* SPDX-License-Identifier: ISC */
/* Schema filling (nginx directive tables): YAML nodes -> typed structs by
 * osp_conf_def rows, value syntaxes, defaults, and the field -> mark table. */
#include "conf_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Field -> mark table                                                   */

struct mark_ent {
	const char		*addr;
	size_t			 size;
	struct osp_conf_mark	 mark;
	const char		*path;
};

struct osp_conf_marks {
	struct mark_ent		*v;
	size_t			 n, size;
};

static void
marks_free(void *arg)
{
	struct osp_conf_marks *m = arg;

	osp_free(m->v);
}

struct osp_conf_marks *
osp_conf_marks_new(struct osp_pool *pool)
{
	struct osp_conf_marks *m = osp_pcalloc(pool, 1, sizeof(*m));

	osp_pool_cleanup_add(pool, marks_free, m);
	return m;
}

void
osp_conf_marks_add(struct osp_conf_marks *m, const void *addr, size_t size,
    const struct osp_conf_mark *mark, const char *path)
{
	if (m == NULL || mark == NULL || size == 0)
		return;
	if (m->n == m->size) {
		m->size = m->size == 0 ? 64 : m->size * 2;
		m->v = osp_reallocarray(m->v, m->size, sizeof(*m->v));
	}
	m->v[m->n].addr = addr;
	m->v[m->n].size = size;
	m->v[m->n].mark = *mark;
	m->v[m->n].path = path;
	m->n++;
}

bool
osp_conf_marks_find(const struct osp_conf_marks *m, const void *addr,
    const struct osp_conf_mark **mark_r, const char **path_r)
{
	const struct mark_ent *best = NULL;
	const char *p = addr;
	size_t i;

	if (m == NULL)
		return false;
	/* Errors are rare: a linear scan for the narrowest enclosing range
	 * (a field inside its section inside the module's struct). */
	for (i = 0; i < m->n; i++) {
		const struct mark_ent *e = &m->v[i];

		if (p < e->addr || p >= e->addr + e->size)
			continue;
		if (best == NULL || e->size <= best->size)
			best = e;
	}
	if (best == NULL)
		return false;
	*mark_r = &best->mark;
	*path_r = best->path;
	return true;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                               */

const char *
osp_conf_path_join(struct osp_pool *pool, const char *path, const char *key)
{
	if (path == NULL || *path == '\0')
		return osp_pstrdup(pool, key);
	return osp_psprintf(pool, "%s.%s", path, key);
}

const struct osp_conf_def *
osp_conf_def_find(const struct osp_conf_def *defs, const char *key)
{
	for (; defs != NULL && defs->key != NULL; defs++)
		if (strcmp(defs->key, key) == 0)
			return defs;
	return NULL;
}

static size_t
type_size(enum osp_conf_type type)
{
	switch (type) {
	case OSP_CONF_BOOL:	return sizeof(bool);
	case OSP_CONF_INT:	return sizeof(int64_t);
	case OSP_CONF_SIZE:
	case OSP_CONF_DURATION:	return sizeof(uint64_t);
	case OSP_CONF_STRING:
	case OSP_CONF_PATH:	return sizeof(const char *);
	case OSP_CONF_ENUM:	return sizeof(int);
	case OSP_CONF_ADDR:	return sizeof(struct osp_conf_addr);
	case OSP_CONF_LIST:
	case OSP_CONF_SECTIONS:
	case OSP_CONF_MAP:	return sizeof(struct osp_conf_list);
	case OSP_CONF_SECTION:	break;
	}
	return 0;
}

size_t
osp_conf_defs_extent(const struct osp_conf_def *d)
{
	size_t end, max = 0;

	for (; d != NULL && d->key != NULL; d++) {
		end = d->offset + (d->type == OSP_CONF_SECTION ?
		    osp_conf_defs_extent(d->sub) : type_size(d->type));
		if (end > max)
			max = end;
	}
	return max;
}

static const char *
type_name(const struct osp_conf_def *d, enum osp_conf_type type)
{
	switch (type) {
	case OSP_CONF_BOOL:	return "a boolean";
	case OSP_CONF_INT:	return "an integer";
	case OSP_CONF_SIZE:	return "a size";
	case OSP_CONF_DURATION:	return "a duration";
	case OSP_CONF_STRING:	return "a string";
	case OSP_CONF_PATH:	return "a path";
	case OSP_CONF_ENUM:	return "a name";
	case OSP_CONF_ADDR:	return "an address";
	case OSP_CONF_LIST:	return "a list";
	case OSP_CONF_SECTION:	return "a mapping";
	case OSP_CONF_SECTIONS:	return "a list of mappings";
	case OSP_CONF_MAP:	return "a mapping";
	}
	return "a value";
}

/* Optimal string alignment distance, for "did you mean" (short keys). */
size_t
osp_conf_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t d[33][33];

	if (la > 32 || lb > 32)
		return 99;
	for (i = 0; i <= la; i++)
		d[i][0] = i;
	for (j = 0; j <= lb; j++)
		d[0][j] = j;
	for (i = 1; i <= la; i++) {
		for (j = 1; j <= lb; j++) {
			size_t c = a[i - 1] == b[j - 1] ? 0 : 1, v;

			v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + c < v)
				v = d[i - 1][j - 1] + c;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

/* The closest key of defs, when close enough to be a likely typo. */
static const char *
suggest(const struct osp_conf_def *defs, const char *key)
{
	const char *best = NULL;
	size_t dist, bestd = 3;

	for (; defs != NULL && defs->key != NULL; defs++) {
		dist = osp_conf_edit_distance(key, defs->key);
		if (dist < bestd && dist < strlen(defs->key)) {
			bestd = dist;
			best = defs->key;
		}
	}
	return best;
}

/* ------------------------------------------------------------------ */
/* Value syntaxes                                                        */

static int
parse_bool(const char *s)
{
	static const char *const yes[] = { "true", "yes", "on", NULL };
	static const char *const no[] = { "false", "no", "off", NULL };
	size_t i;

	for (i = 0; yes[i] != NULL; i++)
		if (osp_str_eqi(s, yes[i]))
			return 1;
	for (i = 0; no[i] != NULL; i++)
		if (osp_str_eqi(s, no[i]))
			return 0;
	return -1;
}

static bool
parse_int(const char *s, int64_t *v_r)
{
	char *end;
	long long v;

	if (*s == '\0' || (*s != '-' && *s != '+' && (*s < '0' || *s > '9')))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*v_r = v;
	return true;
}

/* Leading decimal digits of *s, advancing it; false on none/overflow. */
static bool
parse_digits(const char **s, uint64_t *v_r)
{
	const char *p = *s;
	uint64_t v = 0;

	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*s = p;
	*v_r = v;
	return true;
}

/* "4096", "512k", "50M", "1G", "2T" (also "50MB", "50MiB"): binary
 * multiples, K = 1024. */
static bool
parse_size(const char *s, uint64_t *v_r)
{
	uint64_t v, mul = 1;

	if (!parse_digits(&s, &v))
		return false;
	switch (*s) {
	case 'k': case 'K': mul = 1ULL << 10; s++; break;
	case 'm': case 'M': mul = 1ULL << 20; s++; break;
	case 'g': case 'G': mul = 1ULL << 30; s++; break;
	case 't': case 'T': mul = 1ULL << 40; s++; break;
	}
	if (mul > 1 && *s == 'i')
		s++;
	if (*s == 'B' || (mul > 1 && *s == 'b'))
		s++;
	if (*s != '\0' || (v != 0 && mul > UINT64_MAX / v))
		return false;
	*v_r = v * mul;
	return true;
}

/* "250ms", "30s", "5m", "1h", "2d", "1w", also "1h30m"; a plain number is
 * seconds. Result in milliseconds. */
static bool
parse_duration(const char *s, uint64_t *v_r)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 }, { "w", 604800000 },
	};
	uint64_t v, total = 0;
	size_t i, ulen;
	bool first = true;

	while (*s != '\0') {
		if (!parse_digits(&s, &v))
			return false;
		if (*s == '\0' && first) {
			/* A plain number: seconds. */
			if (v > UINT64_MAX / 1000)
				return false;
			*v_r = v * 1000;
			return true;
		}
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			ulen = strlen(units[i].unit);
			if (strncmp(s, units[i].unit, ulen) == 0 &&
			    (s[ulen] == '\0' || (s[ulen] >= '0' &&
			    s[ulen] <= '9')))
				break;
		}
		if (i == sizeof(units) / sizeof(units[0]))
			return false;
		s += ulen;
		if (v > (UINT64_MAX - total) / units[i].ms)
			return false;
		total += v * units[i].ms;
		first = false;
	}
	if (first)
		return false;
	*v_r = total;
	return true;
}

/* "192.0.2.1", "2001:db8::1", "IP@port", "192.0.2.1:25", "[2001:db8::1]:25"
 * (the '@' form is unbound's). Port 0 when not given. */
static bool
parse_addr(struct osp_pool *pool, const char *s, struct osp_conf_addr *a)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *hs = s, *he, *port = NULL, *p;
	bool bracket = false;
	size_t colons = 0;
	uint64_t pv;

	for (p = s; *p != '\0'; p++)
		if (*p == ':')
			colons++;
	if (*s == '[') {
		bracket = true;
		hs = s + 1;
		if ((he = strchr(hs, ']')) == NULL)
			return false;
		if (he[1] == ':' || he[1] == '@')
			port = he + 2;
		else if (he[1] != '\0')
			return false;
	} else if ((p = strrchr(s, '@')) != NULL) {
		he = p;
		port = p + 1;
	} else if (colons == 1) {
		he = strchr(s, ':');
		port = he + 1;
	} else
		he = s + strlen(s);
	if ((size_t)(he - hs) >= sizeof(host) || he == hs)
		return false;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';

	memset(a, 0, sizeof(*a));
	if (port != NULL) {
		if (osp_str_to_u64(port, 65535, &pv) != OSP_OK || pv == 0)
			return false;
		a->port = (uint16_t)pv;
	}
	if (!bracket && inet_pton(AF_INET, host,
	    &((struct sockaddr_in *)&a->ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(a->port);
		a->len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host,
	    &((struct sockaddr_in6 *)&a->ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(a->port);
		a->len = sizeof(*sin6);
	} else
		return false;
	a->text = osp_pstrdup(pool, s);
	return true;
}

static const char *
fmt_size(char *buf, size_t size, uint64_t v)
{
	static const char suffix[] = "KMGT";
	int i = -1;

	while (i < 3 && v != 0 && v % 1024 == 0) {
		v /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, size, "%" PRIu64, v);
	else
		snprintf(buf, size, "%" PRIu64 "%c", v, suffix[i]);
	return buf;
}

static const char *
fmt_duration(char *buf, size_t size, uint64_t ms)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "d", 86400000 }, { "h", 3600000 }, { "m", 60000 },
		{ "s", 1000 },
	};
	size_t i;

	for (i = 0; ms != 0 && i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms % units[i].ms == 0) {
			snprintf(buf, size, "%" PRIu64 "%s", ms / units[i].ms,
			    units[i].unit);
			return buf;
		}
	}
	snprintf(buf, size, "%" PRIu64 "ms", ms);
	return buf;
}

/*
 * Bounds: min = max = 0 means none; max < min (typically max = 0) means
 * a lower bound only. Returns false and reports when v is outside.
 */
static bool
check_range(struct osp_conf_fill *f, const struct osp_conf_def *d,
    enum osp_conf_type type, const struct osp_conf_node *v, const char *path,
    int64_t sv, uint64_t uv, bool is_signed)
{
	char lo[32], hi[32];
	bool below, above, upper = d->max >= d->min;

	if (d->min == 0 && d->max == 0)
		return true;
	if (is_signed) {
		below = sv < d->min;
		above = upper && sv > d->max;
	} else {
		below = d->min > 0 && uv < (uint64_t)d->min;
		above = upper && (d->max < 0 || uv > (uint64_t)d->max);
	}
	if (!below && !above)
		return true;
	if (type == OSP_CONF_SIZE) {
		fmt_size(lo, sizeof(lo), (uint64_t)d->min);
		fmt_size(hi, sizeof(hi), (uint64_t)d->max);
	} else if (type == OSP_CONF_DURATION) {
		fmt_duration(lo, sizeof(lo), (uint64_t)d->min);
		fmt_duration(hi, sizeof(hi), (uint64_t)d->max);
	} else {
		snprintf(lo, sizeof(lo), "%" PRId64, d->min);
		snprintf(hi, sizeof(hi), "%" PRId64, d->max);
	}
	if (upper)
		osp_conf_errs_add(f->errs, &v->mark, path,
		    "%s is out of range (%s..%s)", v->text, lo, hi);
	else
		osp_conf_errs_add(f->errs, &v->mark, path,
		    "%s is below the minimum %s", v->text, lo);
	return false;
}

static void
enum_error(struct osp_conf_fill *f, const struct osp_conf_def *d,
    const struct osp_conf_node *v, const char *path)
{
	struct osp_buf b = { 0 };
	size_t i;

	for (i = 0; d->values != NULL && d->values[i] != NULL; i++)
		osp_buf_printf(&b, "%s%s", i > 0 ? ", " : "", d->values[i]);
	osp_conf_errs_add(f->errs, &v->mark, path,
	    "bad value \"%s\" (expected one of: %s)", v->text,
	    b.data != NULL ? b.data : "");
	osp_buf_deinit(&b);
}

/* One scalar of `type` from node v into dst. */
static bool
set_scalar(struct osp_conf_fill *f, const struct osp_conf_def *d,
    enum osp_conf_type type, const struct osp_conf_node *v, void *dst,
    const char *path)
{
	const char *s = v->text;
	int64_t iv;
	uint64_t uv;
	int b;
	size_t i;

	if (v->type != OSP_CONF_NODE_SCALAR) {
		if (type == OSP_CONF_ENUM)
			enum_error(f, d, &(struct osp_conf_node){
			    .mark = v->mark, .text = v->type ==
			    OSP_CONF_NODE_MAP ? "{...}" : "[...]" }, path);
		else
			osp_conf_errs_add(f->errs, &v->mark, path,
			    "expected %s, got a %s", type_name(d, type),
			    v->type == OSP_CONF_NODE_MAP ? "mapping" : "list");
		return false;
	}
	switch (type) {
	case OSP_CONF_BOOL:
		if ((b = parse_bool(s)) < 0) {
			osp_conf_errs_add(f->errs, &v->mark, path,
			    "expected a boolean (true/false, yes/no, on/off), "
			    "got \"%s\"", s);
			return false;
		}
		*(bool *)dst = b == 1;
		return true;
	case OSP_CONF_INT:
		if (!parse_int(s, &iv)) {
			osp_conf_errs_add(f->errs, &v->mark, path,
			    "expected an integer, got \"%s\"", s);
			return false;
		}
		if (!check_range(f, d, type, v, path, iv, 0, true))
			return false;
		*(int64_t *)dst = iv;
		return true;
	case OSP_CONF_SIZE:
		if (!parse_size(s, &uv)) {
			osp_conf_errs_add(f->errs, &v->mark, path,
			    "bad size \"%s\" (expected a number with an "
			    "optional k, M, G or T suffix)", s);
			return false;
		}
		if (!check_range(f, d, type, v, path, 0, uv, false))
			return false;
		*(uint64_t *)dst = uv;
		return true;
	case OSP_CONF_DURATION:
		if (!parse_duration(s, &uv)) {
			osp_conf_errs_add(f->errs, &v->mark, path,
			    "bad duration \"%s\" (expected a number with a "
			    "unit: ms, s, m, h, d)", s);
			return false;
		}
		if (!check_range(f, d, type, v, path, 0, uv, false))
			return false;
		*(uint64_t *)dst = uv;
		return true;
	case OSP_CONF_STRING:
	case OSP_CONF_PATH:
		if ((d->flags & OSP_CONF_NONEMPTY) && *s == '\0') {
			osp_conf_errs_add(f->errs, &v->mark, path,
			    "must not be empty");
			return false;
		}
		if (type == OSP_CONF_PATH && *s != '/' && *s != '\0' &&
		    f->dir != NULL)
			*(const char **)dst = osp_psprintf(f->pool, "%s/%s",
			    f->dir, s);
		else
			*(const char **)dst = osp_pstrdup(f->pool, s);
		return true;
	case OSP_CONF_ENUM:
		for (i = 0; d->values != NULL && d->values[i] != NULL; i++) {
			if (strcmp(d->values[i], s) == 0) {
				*(int *)dst = (int)i;
				return true;
			}
		}
		enum_error(f, d, v, path);
		return false;
	case OSP_CONF_ADDR:
		if (!parse_addr(f->pool, s, dst)) {
			osp_conf_errs_add(f->errs, &v->mark, path,
			    "bad address \"%s\" (expected IP, IP@port, "
			    "IP:port or [IPv6]:port)", s);
			return false;
		}
		return true;
	default:
		break;
	}
	osp_conf_errs_add(f->errs, &v->mark, path,
	    "schema error: type %d is not a scalar type", (int)type);
	return false;
}

/* ------------------------------------------------------------------ */
/* Collections                                                           */

static void
fill_list(struct osp_conf_fill *f, const struct osp_conf_def *d,
    const struct osp_conf_node *v, struct osp_conf_list *list,
    const char *path, bool record)
{
	const struct osp_conf_node *const *items;
	const struct osp_conf_node *one[1];
	size_t n, i, esize = type_size(d->elem);
	const char *ipath;
	char *out;

	if (esize == 0 || d->elem == OSP_CONF_LIST || d->elem >
	    OSP_CONF_ADDR) {
		osp_conf_errs_add(f->errs, &v->mark, path,
		    "schema error: bad list element type %d", (int)d->elem);
		return;
	}
	if (v->type == OSP_CONF_NODE_SEQ) {
		items = (const struct osp_conf_node *const *)v->items;
		n = v->n;
	} else if (v->type == OSP_CONF_NODE_SCALAR) {
		/* A single value where a list is expected: one item. */
		one[0] = v;
		items = one;
		n = 1;
	} else {
		osp_conf_errs_add(f->errs, &v->mark, path,
		    "expected a list, got a mapping");
		return;
	}
	if ((d->flags & OSP_CONF_NONEMPTY) && n == 0) {
		osp_conf_errs_add(f->errs, &v->mark, path,
		    "must not be empty");
		return;
	}
	out = n > 0 ? osp_pcalloc(f->pool, n, esize) : NULL;
	for (i = 0; i < n; i++) {
		ipath = osp_psprintf(f->pool, "%s[%zu]", path, i);
		if (items[i]->type == OSP_CONF_NODE_SCALAR &&
		    items[i]->null) {
			osp_conf_errs_add(f->errs, &items[i]->mark, ipath,
			    "empty list item");
			continue;
		}
		set_scalar(f, d, d->elem, items[i], out + i * esize, ipath);
		if (record)
			osp_conf_marks_add(f->marks, out + i * esize, esize,
			    &items[i]->mark, ipath);
	}
	list->n = n;
	list->items = out;
}

static void
fill_sections(struct osp_conf_fill *f, const struct osp_conf_def *d,
    const struct osp_conf_node *v, struct osp_conf_list *list,
    const char *path)
{
	struct osp_conf_fill inner = *f;
	size_t i;
	char *out;
	const char *ipath;

	if (v->type != OSP_CONF_NODE_SEQ) {
		osp_conf_errs_add(f->errs, &v->mark, path,
		    "expected a list of mappings, got a %s",
		    v->type == OSP_CONF_NODE_MAP ? "mapping" : "scalar");
		return;
	}
	if ((d->flags & OSP_CONF_NONEMPTY) && v->n == 0) {
		osp_conf_errs_add(f->errs, &v->mark, path,
		    "must not be empty");
		return;
	}
	inner.open = (d->flags & OSP_CONF_OPEN) != 0;
	inner.skip = NULL;
	out = v->n > 0 ? osp_pcalloc(f->pool, v->n, d->elem_size) : NULL;
	for (i = 0; i < v->n; i++) {
		ipath = osp_psprintf(f->pool, "%s[%zu]", path, i);
		/* Slots stay aligned with the YAML items, even bad ones: the
		 * listener pass walks both in step. */
		osp_conf_fill_struct(&inner, d->sub, v->items[i],
		    out + i * d->elem_size, ipath, &v->items[i]->mark);
		osp_conf_marks_add(f->marks, out + i * d->elem_size,
		    d->elem_size, &v->items[i]->mark, ipath);
	}
	list->n = v->n;
	list->items = out;
}

static void
fill_map(struct osp_conf_fill *f, const struct osp_conf_def *d,
    const struct osp_conf_node *v, struct osp_conf_list *list,
    const char *path)
{
	struct osp_conf_fill inner = *f;
	struct osp_conf_map_item *items;
	const char *ipath;
	size_t i;

	if (v->type != OSP_CONF_NODE_MAP) {
		osp_conf_errs_add(f->errs, &v->mark, path,
		    "expected a mapping, got a %s",
		    v->type == OSP_CONF_NODE_SEQ ? "list" : "scalar");
		return;
	}
	if ((d->flags & OSP_CONF_NONEMPTY) && v->n == 0) {
		osp_conf_errs_add(f->errs, &v->mark, path,
		    "must not be empty");
		return;
	}
	inner.open = false;
	inner.skip = NULL;
	items = v->n > 0 ? osp_pcalloc(f->pool, v->n, sizeof(*items)) : NULL;
	for (i = 0; i < v->n; i++) {
		ipath = osp_conf_path_join(f->pool, path, v->keys[i]->text);
		items[i].name = osp_pstrdup(f->pool, v->keys[i]->text);
		items[i].value = osp_pcalloc(f->pool, 1,
		    d->elem_size > 0 ? d->elem_size : 1);
		osp_conf_marks_add(f->marks, items[i].value, d->elem_size,
		    &v->keys[i]->mark, ipath);
		osp_conf_fill_struct(&inner, d->sub, v->items[i],
		    items[i].value, ipath, &v->keys[i]->mark);
	}
	list->n = v->n;
	list->items = items;
}

/* The default of d (YAML scalar text; "[a, b]" for lists). */
static void
set_default(struct osp_conf_fill *f, const struct osp_conf_def *d,
    void *field, const char *path, const struct osp_conf_mark *mark)
{
	struct osp_conf_node *v, node = { .type = OSP_CONF_NODE_SCALAR };
	unsigned before = f->errs->n;

	node.mark = *mark;
	node.text = d->dflt;
	if (d->type == OSP_CONF_LIST) {
		if (d->dflt[0] == '[') {
			v = osp_conf_yaml_parse(f->pool, "<default>", d->dflt,
			    strlen(d->dflt), f->errs);
			if (v == NULL)
				return;
			v->mark = *mark;
		} else
			v = &node;
		fill_list(f, d, v, field, path, false);
	} else if (d->type == OSP_CONF_SECTIONS || d->type == OSP_CONF_MAP)
		return;
	else
		set_scalar(f, d, d->type, &node, field, path);
	if (f->errs->n > before)
		osp_conf_errs_add(f->errs, mark, path,
		    "schema error: bad default \"%s\"", d->dflt);
}

void
osp_conf_fill_struct(struct osp_conf_fill *f, const struct osp_conf_def *defs,
    const struct osp_conf_node *map, void *out, const char *path,
    const struct osp_conf_mark *mark)
{
	struct osp_conf_fill inner = *f;
	const struct osp_conf_def *d;
	struct osp_conf_node *v, *k;
	const char *kpath, *hint;
	char *field;
	size_t i;

	inner.open = false;
	inner.skip = NULL;
	if (map != NULL && map->type == OSP_CONF_NODE_SCALAR && map->null)
		map = NULL;
	if (map != NULL && map->type != OSP_CONF_NODE_MAP) {
		osp_conf_errs_add(f->errs, &map->mark, path,
		    "expected a mapping, got a %s",
		    map->type == OSP_CONF_NODE_SEQ ? "list" : "scalar");
		map = NULL;
	}
	for (d = defs; d != NULL && d->key != NULL; d++) {
		k = NULL;
		v = osp_conf_node_get(map, d->key, &k);
		if (v != NULL && v->type == OSP_CONF_NODE_SCALAR && v->null)
			v = NULL;	/* `key:` alone: as if absent */
		kpath = osp_conf_path_join(f->pool, path, d->key);
		field = (char *)out + d->offset;
		switch (d->type) {
		case OSP_CONF_SECTION:
			osp_conf_fill_struct(&inner, d->sub, v, field, kpath,
			    k != NULL ? &k->mark : mark);
			if (k != NULL)
				osp_conf_marks_add(f->marks, field,
				    osp_conf_defs_extent(d->sub), &k->mark,
				    kpath);
			continue;
		case OSP_CONF_LIST:
			if (v != NULL)
				fill_list(f, d, v, (void *)field, kpath, true);
			break;
		case OSP_CONF_SECTIONS:
			if (v != NULL)
				fill_sections(f, d, v, (void *)field, kpath);
			break;
		case OSP_CONF_MAP:
			if (v != NULL)
				fill_map(f, d, v, (void *)field, kpath);
			break;
		default:
			if (v != NULL)
				set_scalar(f, d, d->type, v, field, kpath);
			break;
		}
		if (v != NULL) {
			osp_conf_marks_add(f->marks, field, type_size(d->type),
			    &k->mark, kpath);
		} else if (d->dflt != NULL) {
			set_default(f, d, field, kpath, mark);
		} else if ((d->flags & OSP_CONF_REQUIRED) && !f->noreq) {
			if (k != NULL)
				osp_conf_errs_add(f->errs, &k->mark, kpath,
				    "missing value");
			else
				osp_conf_errs_add(f->errs, mark, kpath,
				    "missing required key");
		}
	}
	if (map == NULL || f->open)
		return;
	for (i = 0; i < map->n; i++) {
		const char *key = map->keys[i]->text;

		if (osp_conf_def_find(defs, key) != NULL ||
		    osp_conf_def_find(f->skip, key) != NULL)
			continue;
		kpath = osp_conf_path_join(f->pool, path, key);
		if ((hint = suggest(defs, key)) != NULL)
			osp_conf_errs_add(f->errs, &map->keys[i]->mark, kpath,
			    "unknown key (did you mean \"%s\"?)", hint);
		else
			osp_conf_errs_add(f->errs, &map->keys[i]->mark, kpath,
			    "unknown key");
	}
}

/* ------------------------------------------------------------------ */
/* Entry points for schemas outside a generation                         */

int
osp_conf_apply_defaults(const struct osp_conf_def *defs, void *out,
    struct osp_pool *pool, struct osp_conf_errs *errs)
{
	struct osp_conf_fill f = { .pool = pool, .errs = errs, .noreq = true };
	struct osp_conf_mark mark = { "<defaults>", 0, 0 };
	unsigned before = errs->n;

	osp_conf_fill_struct(&f, defs, NULL, out, "", &mark);
	return errs->n > before ? OSP_ECONFIG : OSP_OK;
}

int
osp_conf_parse_string(const char *name, const char *yaml,
    const struct osp_conf_def *defs, void *out, struct osp_pool *pool,
    struct osp_conf_errs *errs)
{
	struct osp_conf_fill f = { .pool = pool, .errs = errs };
	struct osp_conf_node *root;
	unsigned before = errs->n;

	name = osp_pstrdup(pool, name);
	root = osp_conf_yaml_parse(pool, name, yaml, strlen(yaml), errs);
	if (root == NULL)
		return OSP_ECONFIG;
	osp_conf_fill_struct(&f, defs, root, out, "", &root->mark);
	return errs->n > before ? OSP_ECONFIG : OSP_OK;
}
