/* SPDX-License-Identifier: ISC */
/* YAML text -> node tree with file:line:col for every node (libyaml's
 * event parser), refusing anchors/aliases and duplicate keys. */
#include "conf_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#define CONF_MAX_FILE	(16u * 1024 * 1024)
#define CONF_MAX_DEPTH	64

/* A collection under construction. */
struct yframe {
	struct osp_conf_node	*node;
	struct osp_conf_node	**items, **keys;
	size_t			 n, size;
	struct osp_conf_node	*key;	/* MAP: key, value pending */
	bool			 drop;	/* MAP: that key is a dup */
	/* MAP: open-addressing index of keys (slot = key index + 1), so
	 * duplicate detection stays linear for maps with thousands of keys
	 * (domains.yaml accounts). */
	size_t			*htab, hsize;
};

struct yparse {
	struct osp_pool		*pool;
	const char		*file;
	struct osp_conf_errs	*errs;
	struct yframe		 stack[CONF_MAX_DEPTH];
	int			 depth;
	struct osp_conf_node	*root;
	bool			 failed;
};

int
osp_conf_read_file(const char *path, char **text_r, size_t *len_r)
{
	struct stat st;
	char *text = NULL;
	size_t len = 0, size = 0;
	ssize_t r;
	int fd, err;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -errno;
	if (fstat(fd, &st) == -1 || S_ISDIR(st.st_mode)) {
		err = S_ISDIR(st.st_mode) ? EISDIR : errno;
		close(fd);
		return -err;
	}
	for (;;) {
		if (len + 1 >= size) {
			if (size >= CONF_MAX_FILE) {
				osp_free(text);
				close(fd);
				return -EFBIG;
			}
			size = size == 0 ? 4096 : size * 2;
			text = osp_realloc(text, size);
		}
		r = read(fd, text + len, size - len - 1);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			err = errno;
			osp_free(text);
			close(fd);
			return -err;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	text[len] = '\0';
	*text_r = text;
	*len_r = len;
	return OSP_OK;
}

static struct osp_conf_mark
ymark(const struct yparse *y, const yaml_mark_t *m)
{
	struct osp_conf_mark mark = { y->file, (unsigned)m->line + 1,
	    (unsigned)m->column + 1 };

	return mark;
}

/* The key path of the value being built at the top of the stack. */
static const char *
ypath(struct yparse *y)
{
	const char *path = "";
	int i;

	for (i = 0; i < y->depth; i++) {
		struct yframe *fr = &y->stack[i];

		if (fr->node->type == OSP_CONF_NODE_SEQ)
			path = osp_psprintf(y->pool, "%s[%zu]", path, fr->n);
		else if (fr->key != NULL)
			path = osp_conf_path_join(y->pool, path,
			    fr->key->text);
	}
	return path;
}

static size_t
key_hash(const char *s)
{
	size_t h = 2166136261u;	/* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static void
frame_index_key(struct yframe *fr, size_t idx)
{
	size_t i = key_hash(fr->keys[idx]->text) & (fr->hsize - 1);

	while (fr->htab[i] != 0)
		i = (i + 1) & (fr->hsize - 1);
	fr->htab[i] = idx + 1;
}

/* Index in fr->keys of a key with this text, or -1. */
static ssize_t
frame_find_key(const struct yframe *fr, const char *text)
{
	size_t i;

	if (fr->hsize == 0)
		return -1;
	for (i = key_hash(text) & (fr->hsize - 1); fr->htab[i] != 0;
	    i = (i + 1) & (fr->hsize - 1))
		if (strcmp(fr->keys[fr->htab[i] - 1]->text, text) == 0)
			return (ssize_t)fr->htab[i] - 1;
	return -1;
}

static void
frame_push(struct yframe *fr, struct osp_conf_node *key,
    struct osp_conf_node *item)
{
	size_t i;

	if (fr->n == fr->size) {
		fr->size = fr->size == 0 ? 8 : fr->size * 2;
		fr->items = osp_reallocarray(fr->items, fr->size,
		    sizeof(*fr->items));
		if (fr->node->type == OSP_CONF_NODE_MAP)
			fr->keys = osp_reallocarray(fr->keys, fr->size,
			    sizeof(*fr->keys));
	}
	if (key != NULL) {
		fr->keys[fr->n] = key;
		if (2 * (fr->n + 1) > fr->hsize) {
			/* Grow at half load and re-index. */
			fr->hsize = fr->hsize == 0 ? 16 : fr->hsize * 2;
			osp_free(fr->htab);
			fr->htab = osp_calloc(fr->hsize, sizeof(*fr->htab));
			for (i = 0; i < fr->n; i++)
				frame_index_key(fr, i);
		}
		frame_index_key(fr, fr->n);
	}
	fr->items[fr->n++] = item;
}

/* A finished node: becomes the root, a sequence item, a key or a value. */
static void
yadd(struct yparse *y, struct osp_conf_node *node)
{
	struct yframe *fr;
	const char *path;
	ssize_t dup;
	size_t i;

	if (y->depth == 0) {
		y->root = node;
		return;
	}
	fr = &y->stack[y->depth - 1];
	if (fr->node->type == OSP_CONF_NODE_SEQ) {
		frame_push(fr, NULL, node);
		return;
	}
	if (fr->key != NULL) {
		if (!fr->drop)
			frame_push(fr, fr->key, node);
		fr->key = NULL;
		fr->drop = false;
		return;
	}
	/* A key. Only scalar keys name options. */
	if (node->type != OSP_CONF_NODE_SCALAR) {
		node->type = OSP_CONF_NODE_SCALAR;
		node->text = "?";
		fr->key = node;
		fr->drop = true;
		osp_conf_errs_add(y->errs, &node->mark, ypath(y),
		    "mapping keys must be plain strings");
		return;
	}
	fr->key = node;
	if ((dup = frame_find_key(fr, node->text)) >= 0) {
		i = (size_t)dup;
		path = ypath(y);
		osp_conf_errs_add(y->errs, &node->mark, path,
		    "duplicate key (first at line %u, column %u)",
		    fr->keys[i]->mark.line, fr->keys[i]->mark.col);
		fr->drop = true;
	}
}

static struct osp_conf_node *
ynode(struct yparse *y, enum osp_conf_node_type type, const yaml_mark_t *m)
{
	struct osp_conf_node *node = osp_pcalloc(y->pool, 1, sizeof(*node));

	node->type = type;
	node->mark = ymark(y, m);
	return node;
}

static void
yscalar(struct yparse *y, const yaml_event_t *ev)
{
	struct osp_conf_node *node;
	const char *v = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;

	node = ynode(y, OSP_CONF_NODE_SCALAR, &ev->start_mark);
	if (memchr(v, '\0', len) != NULL) {
		osp_conf_errs_add(y->errs, &node->mark, ypath(y),
		    "NUL character in value");
		len = strlen(v);
	}
	node->text = osp_pstrndup(y->pool, v, len);
	/* YAML 1.2 core schema nulls; quoted scalars are always strings. */
	node->null = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (len == 0 || strcmp(node->text, "~") == 0 ||
	    strcmp(node->text, "null") == 0 ||
	    strcmp(node->text, "Null") == 0 ||
	    strcmp(node->text, "NULL") == 0);
	yadd(y, node);
}

static void
ystart(struct yparse *y, enum osp_conf_node_type type, const yaml_mark_t *m)
{
	struct yframe *fr;

	if (y->depth == CONF_MAX_DEPTH) {
		struct osp_conf_mark mark = ymark(y, m);

		osp_conf_errs_add(y->errs, &mark, NULL,
		    "nesting deeper than %d levels", CONF_MAX_DEPTH);
		y->failed = true;
		return;
	}
	fr = &y->stack[y->depth++];
	memset(fr, 0, sizeof(*fr));
	fr->node = ynode(y, type, m);
}

static void
yend(struct yparse *y)
{
	struct yframe *fr = &y->stack[--y->depth];
	struct osp_conf_node *node = fr->node;

	node->n = fr->n;
	if (fr->n > 0) {
		node->items = osp_pmemdup(y->pool, fr->items,
		    fr->n * sizeof(*fr->items));
		if (fr->keys != NULL)
			node->keys = osp_pmemdup(y->pool, fr->keys,
			    fr->n * sizeof(*fr->keys));
	}
	osp_free(fr->items);
	osp_free(fr->keys);
	osp_free(fr->htab);
	yadd(y, node);
}

/* Line and column of a byte offset, for reader (encoding) errors that
 * libyaml reports without a mark. */
static struct osp_conf_mark
offset_mark(const char *file, const char *text, size_t len, size_t off)
{
	struct osp_conf_mark m = { file, 1, 1 };
	size_t i;

	for (i = 0; i < off && i < len; i++) {
		if (text[i] == '\n') {
			m.line++;
			m.col = 1;
		} else if (((unsigned char)text[i] & 0xc0) != 0x80)
			m.col++;
	}
	return m;
}

static void
ysyntax(struct yparse *y, const yaml_parser_t *p, const char *text,
    size_t len)
{
	struct osp_conf_mark m;
	const char *problem = p->problem != NULL ? p->problem : "syntax error";

	if (p->error == YAML_READER_ERROR) {
		m = offset_mark(y->file, text, len, p->problem_offset);
		osp_conf_errs_add(y->errs, &m, NULL, "YAML error: %s", problem);
		return;
	}
	m = ymark(y, &p->problem_mark);
	if (p->context != NULL)
		osp_conf_errs_add(y->errs, &m, NULL,
		    "YAML syntax error: %s (%s at line %zu, column %zu)",
		    problem, p->context, p->context_mark.line + 1,
		    p->context_mark.column + 1);
	else
		osp_conf_errs_add(y->errs, &m, NULL, "YAML syntax error: %s",
		    problem);
}

static bool
yanchor(struct yparse *y, const yaml_event_t *ev, const yaml_char_t *anchor)
{
	struct osp_conf_mark m;

	if (anchor == NULL)
		return true;
	m = ymark(y, &ev->start_mark);
	osp_conf_errs_add(y->errs, &m, ypath(y),
	    "YAML anchors (&%s) are not supported", (const char *)anchor);
	return false;
}

struct osp_conf_node *
osp_conf_yaml_parse(struct osp_pool *pool, const char *file, const char *text,
    size_t len, struct osp_conf_errs *errs)
{
	struct yparse y = { .pool = pool, .file = file, .errs = errs };
	yaml_parser_t p;
	yaml_event_t ev;
	struct osp_conf_mark m;
	unsigned ndocs = 0, nerrs = errs->n;
	bool done = false;

	if (!yaml_parser_initialize(&p))
		osp_fatal("conf", "yaml_parser_initialize: out of memory");
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	while (!done && !y.failed) {
		if (!yaml_parser_parse(&p, &ev)) {
			ysyntax(&y, &p, text, len);
			y.failed = true;
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++ndocs > 1) {
				m = ymark(&y, &ev.start_mark);
				osp_conf_errs_add(errs, &m, NULL,
				    "only one YAML document per file");
				y.failed = true;
			}
			break;
		case YAML_ALIAS_EVENT:
			/* Refused rather than expanded: aliases make one
			 * value appear at several key paths, which the
			 * field -> mark table cannot represent. */
			m = ymark(&y, &ev.start_mark);
			osp_conf_errs_add(errs, &m, ypath(&y),
			    "YAML aliases (*%s) are not supported",
			    (const char *)ev.data.alias.anchor);
			{
				struct osp_conf_node *n = ynode(&y,
				    OSP_CONF_NODE_SCALAR, &ev.start_mark);

				n->text = "";
				n->null = true;
				yadd(&y, n);
			}
			break;
		case YAML_SCALAR_EVENT:
			yanchor(&y, &ev, ev.data.scalar.anchor);
			yscalar(&y, &ev);
			break;
		case YAML_SEQUENCE_START_EVENT:
			yanchor(&y, &ev, ev.data.sequence_start.anchor);
			ystart(&y, OSP_CONF_NODE_SEQ, &ev.start_mark);
			break;
		case YAML_MAPPING_START_EVENT:
			yanchor(&y, &ev, ev.data.mapping_start.anchor);
			ystart(&y, OSP_CONF_NODE_MAP, &ev.start_mark);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			yend(&y);
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	while (y.depth > 0) {
		y.depth--;
		osp_free(y.stack[y.depth].items);
		osp_free(y.stack[y.depth].keys);
		osp_free(y.stack[y.depth].htab);
	}
	if (y.failed || errs->n > nerrs)
		return NULL;
	if (y.root == NULL) {
		/* An empty file (or only comments): an empty document. */
		y.root = osp_pcalloc(pool, 1, sizeof(*y.root));
		y.root->type = OSP_CONF_NODE_SCALAR;
		y.root->mark.file = file;
		y.root->mark.line = y.root->mark.col = 1;
		y.root->text = "";
		y.root->null = true;
	}
	return y.root;
}

struct osp_conf_node *
osp_conf_node_get(const struct osp_conf_node *map, const char *key,
    struct osp_conf_node **key_r)
{
	size_t i;

	if (map == NULL || map->type != OSP_CONF_NODE_MAP)
		return NULL;
	for (i = 0; i < map->n; i++) {
		if (strcmp(map->keys[i]->text, key) == 0) {
			if (key_r != NULL)
				*key_r = map->keys[i];
			return map->items[i];
		}
	}
	return NULL;
}

bool
osp_conf_node_equal(const struct osp_conf_node *a,
    const struct osp_conf_node *b)
{
	size_t i;

	if (a == NULL || b == NULL)
		return a == b;
	if (a->type != b->type || a->n != b->n)
		return false;
	if (a->type == OSP_CONF_NODE_SCALAR)
		return a->null == b->null && strcmp(a->text, b->text) == 0;
	for (i = 0; i < a->n; i++) {
		if (a->keys != NULL &&
		    strcmp(a->keys[i]->text, b->keys[i]->text) != 0)
			return false;
		if (!osp_conf_node_equal(a->items[i], b->items[i]))
			return false;
	}
	return true;
}
