/* SPDX-License-Identifier: ISC */
/* `osprey config describe`: every option of the core and of the loaded
 * modules as commented YAML that parses back to the defaults. */
#include "conf_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Shape of the output:
 *   # Help text.            help lines start with a capital letter
 *   key: default            options with a default
 *   # key:                  options without one (uncomment to set)
 *   # list:                 SECTIONS and MAP: a commented example entry
 *   #   - key: ...
 * Removing "# " before a "key:" or "- key:" line gives valid YAML.
 */

static bool
plain_safe(const char *s)
{
	const char *p;

	if (*s == '\0' || strchr("-?:,[]{}#&*!|>'\"%@`~ ", *s) != NULL)
		return false;
	for (p = s; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr("._/+-@", *p) == NULL)
			return false;
	return true;
}

static void
put_scalar(FILE *out, const char *s)
{
	if (plain_safe(s)) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void
put_help(FILE *out, const char *pfx, const struct osp_conf_def *d)
{
	const char *h = d->help;

	if (h == NULL || *h == '\0')
		h = "(no description)";
	/* A capital first letter keeps help lines apart from "# key:"
	 * lines. */
	fprintf(out, "%s# %c%s%s\n", pfx, toupper((unsigned char)h[0]), h + 1,
	    (d->flags & OSP_CONF_REQUIRED) ? " Required." : "");
}

static void	emit_defs(FILE *out, const struct osp_conf_def *defs,
		    const char *first, const char *pfx, bool commented);

/* Listener entries that a protocol module extends with its own keys. */
static void
emit_listener_extras(FILE *out, const char *pfx)
{
	size_t i;

	for (i = 0; i < osp_nmodules; i++) {
		const struct osp_module *m = osp_modules[i]->mod;
		char *f, *s;

		if (m->listener_conf == NULL || m->listener_conf[0].key == NULL)
			continue;
		if (asprintf(&f, "%s  - ", pfx) < 0 ||
		    asprintf(&s, "%s    ", pfx) < 0)
			osp_fatal("conf", "out of memory");
		fprintf(out, "%s  # Extra keys of listeners with protocol: "
		    "%s.\n", pfx, m->name);
		fprintf(out, "%sprotocol: %s\n", f, m->name);
		emit_defs(out, m->listener_conf, s, s, true);
		free(f);
		free(s);
	}
}

static void
emit_collection(FILE *out, const struct osp_conf_def *d, const char *pfx,
    bool commented)
{
	char *cp, *first, *sub;

	/* The whole entry is an example: commented out unless it already
	 * is. */
	if (asprintf(&cp, commented ? "%s" : "%s# ", pfx) < 0)
		osp_fatal("conf", "out of memory");
	fprintf(out, "%s%s:\n", cp, d->key);
	if (d->type == OSP_CONF_SECTIONS) {
		if (asprintf(&first, "%s  - ", cp) < 0 ||
		    asprintf(&sub, "%s    ", cp) < 0)
			osp_fatal("conf", "out of memory");
		emit_defs(out, d->sub, first, sub, true);
		if (d->sub == osp_core_listener_defs)
			emit_listener_extras(out, cp);
	} else {
		if (asprintf(&first, "%s  name:", cp) < 0 ||
		    asprintf(&sub, "%s    ", cp) < 0)
			osp_fatal("conf", "out of memory");
		fprintf(out, "%s\n", first);
		emit_defs(out, d->sub, sub, sub, true);
	}
	free(first);
	free(sub);
	free(cp);
}

static void
emit_list(FILE *out, const struct osp_conf_def *d, const char *lead,
    bool commented)
{
	if (d->dflt != NULL && d->dflt[0] == '[')
		fprintf(out, "%s%s: %s\n", lead, d->key, d->dflt);
	else if (d->dflt != NULL) {
		fprintf(out, "%s%s: [", lead, d->key);
		put_scalar(out, d->dflt);
		fputs("]\n", out);
	} else if ((d->flags & OSP_CONF_REQUIRED) && !commented)
		fprintf(out, "%s# %s:\n", lead, d->key);
	else
		fprintf(out, "%s%s: []\n", lead, d->key);
}

static void
emit_modules(FILE *out, const char *lead)
{
	size_t i;

	fprintf(out, "%smodules: [", lead);
	for (i = 0; i < osp_nmodules; i++) {
		fputs(i > 0 ? ", " : "", out);
		put_scalar(out, osp_modules[i]->mod->name);
	}
	fputs("]\n", out);
}

/*
 * One struct's options. `first` prefixes the first option line (the "- "
 * of a sequence entry), `pfx` every other line; `commented` when the
 * prefix already comments the lines out.
 */
static void
emit_defs(FILE *out, const struct osp_conf_def *defs, const char *first,
    const char *pfx, bool commented)
{
	const struct osp_conf_def *d;
	const char *lead;
	char *sub;
	bool firstline = true;

	for (d = defs; d != NULL && d->key != NULL; d++) {
		if (*pfx == '\0' && d != defs)
			fputc('\n', out);	/* top level: one block each */
		put_help(out, pfx, d);
		lead = firstline ? first : pfx;
		firstline = false;
		switch (d->type) {
		case OSP_CONF_SECTION:
			fprintf(out, "%s%s:\n", lead, d->key);
			if (asprintf(&sub, "%s  ", pfx) < 0)
				osp_fatal("conf", "out of memory");
			emit_defs(out, d->sub, sub, sub, commented);
			free(sub);
			break;
		case OSP_CONF_SECTIONS:
		case OSP_CONF_MAP:
			if (lead != pfx && !commented) {
				/* Never the first key of an entry in
				 * practice; keep the YAML valid anyway. */
				fprintf(out, "%s%s: []\n", lead, d->key);
				break;
			}
			emit_collection(out, d, pfx, commented);
			break;
		case OSP_CONF_LIST:
			if (defs == osp_core_conf_defs && osp_nmodules > 0 &&
			    strcmp(d->key, "modules") == 0) {
				/* The modules described below, so that this
				 * output loads as it is. */
				emit_modules(out, lead);
				break;
			}
			emit_list(out, d, lead, commented);
			break;
		default:
			if (d->dflt != NULL) {
				fprintf(out, "%s%s: ", lead, d->key);
				put_scalar(out, d->dflt);
				fputc('\n', out);
			} else if (commented)
				fprintf(out, "%s%s:\n", lead, d->key);
			else
				fprintf(out, "%s# %s:\n", lead, d->key);
			break;
		}
	}
}

void
osp_config_describe(FILE *out)
{
	size_t i;

	fputs("# Osprey configuration: every option with its default.\n"
	    "# \"key: value\" lines are defaults; remove \"# \" before a "
	    "\"key:\" line to set it.\n"
	    "# Sizes: 4096, 512k, 50M, 1G. Durations: 250ms, 30s, 5m, 1h, 2d "
	    "(a plain number is seconds).\n\n", out);
	emit_defs(out, osp_core_conf_defs, "", "", false);
	for (i = 0; i < osp_nmodules; i++) {
		const struct osp_module *m = osp_modules[i]->mod;

		fprintf(out, "\n# Module %s %s.\n", m->name,
		    m->version != NULL ? m->version : "");
		if (m->conf == NULL || m->conf[0].key == NULL) {
			fprintf(out, "# (no options)\n");
			continue;
		}
		fprintf(out, "%s:\n", m->name);
		emit_defs(out, m->conf, "  ", "  ", false);
	}
}
