/* SPDX-License-Identifier: ISC */
/* Private interfaces of the config subsystem (conf.c, conf_yaml.c,
 * conf_schema.c, conf_describe.c, conf_core.c): YAML node tree, schema
 * filling and the field -> mark table. */
#ifndef OSPREY_CONF_INT_H
#define OSPREY_CONF_INT_H

#include "core.h"

/*
 * Internal def flag: entries of this SECTIONS may carry keys that are not
 * in .sub; another pass fills them (listener keys of a protocol module).
 */
#define OSP_CONF_OPEN		0x80000000u

/* The core's keys of a listener entry (conf_core.c); the others are the
 * protocol module's listener_conf. */
extern const struct osp_conf_def osp_core_listener_defs[];

/* YAML nodes, with where they were written (1-based line and column). */
enum osp_conf_node_type {
	OSP_CONF_NODE_SCALAR = 1,
	OSP_CONF_NODE_SEQ,
	OSP_CONF_NODE_MAP,
};

struct osp_conf_node {
	enum osp_conf_node_type	 type;
	struct osp_conf_mark	 mark;
	const char		*text;	/* SCALAR: NUL-terminated */
	bool			 null;	/* SCALAR: "", ~, null */
	size_t			 n;	/* SEQ items, MAP pairs */
	/* SEQ items or MAP values; MAP keys (scalars) */
	struct osp_conf_node	**items;
	struct osp_conf_node	**keys;
};

/* Parses one YAML document from text (len bytes) into nodes allocated in
 * pool; `file` names it in marks and errors. Anchors and aliases are
 * refused. Returns the root (a null scalar for an empty document), or
 * NULL after adding errors. */
struct osp_conf_node *osp_conf_yaml_parse(struct osp_pool *pool,
	    const char *file, const char *text, size_t len,
	    struct osp_conf_errs *errs);
/* Reads a whole file (at most 16 MiB). Returns OSP_OK or -errno. */
int	osp_conf_read_file(const char *path, char **text_r, size_t *len_r);
/* The value of `key` in a MAP node (NULL if absent or node is not a map);
 * the key node in *key_r when not NULL. */
struct osp_conf_node *osp_conf_node_get(const struct osp_conf_node *map,
	    const char *key, struct osp_conf_node **key_r);
bool	osp_conf_node_equal(const struct osp_conf_node *a,
	    const struct osp_conf_node *b);

/* Field address -> where it was set, for osp_module_conf_error() and
 * osp_config_mark(). Lives in (and is freed with) a pool. */
struct osp_conf_marks;
struct osp_conf_marks *osp_conf_marks_new(struct osp_pool *pool);
void	osp_conf_marks_add(struct osp_conf_marks *marks, const void *addr,
	    size_t size, const struct osp_conf_mark *mark, const char *path);
/* The most specific entry containing addr; false when none. */
bool	osp_conf_marks_find(const struct osp_conf_marks *marks,
	    const void *addr, const struct osp_conf_mark **mark_r,
	    const char **path_r);

/* One schema-filling pass. */
struct osp_conf_fill {
	struct osp_pool		*pool;
	struct osp_conf_errs	*errs;
	/* Base of relative PATHs; NULL: kept relative. */
	const char		*dir;
	struct osp_conf_marks	*marks;	/* NULL: not recorded */
	/* Keys of these defs are skipped (filled by another pass); NULL. */
	const struct osp_conf_def *skip;
	bool			 open;	/* unknown keys allowed */
	bool			 noreq;	/* REQUIRED not enforced */
};

/*
 * Fills the struct `out` (zeroed by the caller) from the MAP node `map`
 * (NULL or a null scalar: defaults only) with defs. `path` is the dotted
 * key path of this struct ("" at the top), `mark` where it starts (for
 * errors about missing keys and defaults).
 */
void	osp_conf_fill_struct(struct osp_conf_fill *f,
	    const struct osp_conf_def *defs, const struct osp_conf_node *map,
	    void *out, const char *path, const struct osp_conf_mark *mark);
/* Bytes covered by the fields of defs (struct size without tail padding). */
size_t	osp_conf_defs_extent(const struct osp_conf_def *defs);
const struct osp_conf_def *osp_conf_def_find(const struct osp_conf_def *defs,
	    const char *key);
/* Typo distance between two keys (99 when too long to matter). */
size_t	osp_conf_edit_distance(const char *a, const char *b);
/* "a" + "b" -> "a.b"; "" + "b" -> "b" (pool). */
const char *osp_conf_path_join(struct osp_pool *pool, const char *path,
	    const char *key);

#endif
