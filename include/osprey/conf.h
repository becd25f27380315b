/* SPDX-License-Identifier: ISC */
/* Declarative configuration schemas (nginx directive tables, Knot
 * module schemas): a table of rows fills a typed struct by offsetof. */
#ifndef OSPREY_CONF_H
#define OSPREY_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * A module declares `const struct osp_conf_def defs[]` (terminated by
 * OSP_CONF_END) and a struct of `conf_size` bytes. The core parses the
 * module's top-level YAML section (key = module name) into a zeroed
 * struct, applying defaults first. Keys are lower-case-hyphenated;
 * the C field has the same name with underscores.
 *
 * C types by osp_conf_type:
 *   BOOL      bool
 *   INT       int64_t          (min/max checked)
 *   SIZE      uint64_t bytes   ("50M", "1G", "512k", "4096"; min/max)
 *   DURATION  uint64_t ms      ("30s", "5m", "1h", "2d", "250ms"; min/max)
 *   STRING    const char *     (NULL when unset and no default)
 *   PATH      const char *     (relative paths resolved against the
 *                               directory of the main config file)
 *   ENUM      int              (index into .values)
 *   ADDR      struct osp_conf_addr  ("127.0.0.1", "::1", "IP@port",
 *                               "[::1]:25", "127.0.0.1:53"; port 0 if none)
 *   LIST      struct osp_conf_list  of .elem items (scalar types above)
 *   SECTION   nested struct at .offset, keys in .sub
 *   SECTIONS  struct osp_conf_list of structs of .elem_size, keys in .sub
 *   MAP       struct osp_conf_list of struct osp_conf_map_item whose value
 *             struct (.elem_size, keys in .sub) is keyed by free-form names
 *
 * Every value (strings, lists) lives in the config generation's pool:
 * valid until the generation is released, never to be freed by modules.
 * Errors are reported as `file:line:col: key.path: message`.
 */
enum osp_conf_type {
	OSP_CONF_BOOL = 1,
	OSP_CONF_INT,
	OSP_CONF_SIZE,
	OSP_CONF_DURATION,
	OSP_CONF_STRING,
	OSP_CONF_PATH,
	OSP_CONF_ENUM,
	OSP_CONF_ADDR,
	OSP_CONF_LIST,
	OSP_CONF_SECTION,
	OSP_CONF_SECTIONS,
	OSP_CONF_MAP,
};

#define OSP_CONF_REQUIRED	0x01	/* missing key is an error */
#define OSP_CONF_NONEMPTY	0x02	/* empty string/list is an error */

struct osp_conf_def {
	const char		 *key;
	enum osp_conf_type	  type;
	size_t			  offset;	/* of the field in the struct */
	uint32_t		  flags;
	const char		 *dflt;		/* default, as YAML scalar text */
	const char		 *help;		/* one line for config describe */
	int64_t			  min, max;	/* 0,0 = unbounded */
	const char *const	 *values;	/* ENUM names, NULL-terminated */
	enum osp_conf_type	  elem;		/* LIST element type */
	const struct osp_conf_def *sub;		/* SECTION / SECTIONS / MAP */
	size_t			  elem_size;	/* SECTIONS / MAP value struct */
};
#define OSP_CONF_END { .key = NULL }

struct osp_conf_addr {
	struct sockaddr_storage	 ss;	/* family AF_INET or AF_INET6 */
	socklen_t		 len;
	uint16_t		 port;	/* host order; 0 when not given */
	const char		*text;	/* as written */
};

struct osp_conf_list {
	size_t	 n;
	void	*items;		/* array of n elements of the element type */
};

struct osp_conf_map_item {
	const char	*name;
	void		*value;	/* struct of the def's elem_size */
};

/* Typed access to list items: OSP_CONF_ITEM(&c->names, const char *, i). */
#define OSP_CONF_ITEM(list, type, i) (((type *)(list)->items)[(i)])

/* Where a value was written, for errors raised by a module's check(). */
struct osp_conf_mark {
	const char	*file;
	unsigned	 line, col;
};

#endif

/*
 * Config generations. Each successful load or reload makes a new
 * generation; sessions that must see one consistent config for their
 * whole life take a reference when they start. Main thread only.
 */
struct osp_config;
struct osp_module_ctx;

/* The current generation (borrowed: valid until the next reload unless a
 * reference is taken). */
struct osp_config	*osp_config_current(void);
struct osp_config	*osp_config_ref(struct osp_config *gen);
void			 osp_config_unref(struct osp_config *gen);
/* The module's conf struct in that generation (NULL if it has none). */
const void		*osp_config_module(const struct osp_config *gen,
			    const struct osp_module_ctx *m);
/* Core settings modules commonly need. */
const char		*osp_config_hostname(const struct osp_config *gen);
const char		*osp_config_data_dir(const struct osp_config *gen);
