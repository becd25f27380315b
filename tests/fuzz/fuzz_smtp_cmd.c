/* SPDX-License-Identifier: ISC */
/* libFuzzer target: the SMTP command parser (every line comes from the
 * network). The first byte picks the announced extensions; the rest is
 * one command line. Checks invariants: every refusal is a well-formed
 * reply with an enhanced status code, and an accepted address re-parses
 * to itself. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* "4xx X.Y.Z text" or "5xx X.Y.Z text", class digits equal, no CR/LF. */
static void
check_reply(const char *r)
{
	const char *p;
	int n;

	if (r == NULL || strlen(r) < 12 || (r[0] != '4' && r[0] != '5') ||
	    r[3] != ' ' || r[4] != r[0] || r[5] != '.' ||
	    strpbrk(r, "\r\n") != NULL)
		abort();
	p = r + 6;
	for (n = 0; *p >= '0' && *p <= '9'; p++, n++)
		;
	if (n < 1 || n > 3 || *p++ != '.')
		abort();
	for (n = 0; *p >= '0' && *p <= '9'; p++, n++)
		;
	if (n < 1 || n > 3 || *p != ' ')
		abort();
}

static bool
is_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static void
check_path(struct osp_pool *pool, const struct smtp_path *p, uint32_t ext,
    bool smtputf8)
{
	struct smtp_path again;
	struct smtp_rcpt_params rp;
	const char *reply, *line;

	if (p->localpart == NULL || p->domain == NULL || p->address == NULL)
		abort();
	if (p->null) {
		if (*p->address != '\0')
			abort();
		return;
	}
	if (!p->utf8 && !is_ascii(p->address))
		abort();
	if (p->utf8 && !smtputf8)
		abort();
	/* The canonical address, given back as a forward path, parses to
	 * itself (when it still fits the 256-octet limit). */
	if (strlen(p->address) + 2 > 256)
		return;
	line = osp_psprintf(pool, "<%s>", p->address);
	if (smtp_parse_rcpt(pool, line, ext, smtputf8, &again, &rp,
	    &reply) != OSP_OK || strcmp(again.address, p->address) != 0 ||
	    strcmp(again.localpart, p->localpart) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct osp_pool *pool;
	struct smtp_path path;
	struct smtp_mail_params mp;
	struct smtp_rcpt_params rp;
	const char *args, *reply, *name, *mech, *ir, *inputs[2];
	uint32_t ext;
	uint64_t bsize;
	bool smtputf8, last;
	char *line;
	int i;

	if (size < 1 || size > 4096)
		return 0;
	ext = data[0];
	smtputf8 = (data[0] & SMTP_EXT_SMTPUTF8) != 0;
	/* The session hands over NUL-terminated lines (it refuses NULs). */
	line = strndup((const char *)data + 1, size - 1);
	if (line == NULL)
		abort();
	pool = osp_pool_new(NULL);

	(void)smtp_parse_verb(line, &args);
	if (args == NULL || (args != line && *args != '\0' &&
	    (args < line || args > line + strlen(line))))
		abort();
	inputs[0] = args;
	inputs[1] = line;
	for (i = 0; i < 2; i++) {
		const char *s = inputs[i];

		reply = NULL;
		if (smtp_parse_mail(pool, s, ext, &path, &mp, &reply) ==
		    OSP_OK) {
			check_path(pool, &path, ext, mp.smtputf8);
			if (mp.smtputf8 && !(ext & SMTP_EXT_SMTPUTF8))
				abort();
			if (mp.envid != NULL && strlen(mp.envid) > 100)
				abort();
		} else
			check_reply(reply);
		reply = NULL;
		if (smtp_parse_rcpt(pool, s, ext, smtputf8, &path, &rp,
		    &reply) == OSP_OK) {
			check_path(pool, &path, ext, smtputf8);
			if (path.null)
				abort();
			if ((rp.notify & SMTP_NOTIFY_NEVER) &&
			    rp.notify != SMTP_NOTIFY_NEVER)
				abort();
			if ((rp.orcpt == NULL) != (rp.orcpt_type == NULL))
				abort();
		} else
			check_reply(reply);
		reply = NULL;
		if (smtp_parse_helo(pool, s, i == 0, &name, &reply) ==
		    OSP_OK) {
			if (name == NULL || *name == '\0' ||
			    strpbrk(name, " \r\n") != NULL || !is_ascii(name))
				abort();
		} else
			check_reply(reply);
		reply = NULL;
		if (smtp_parse_bdat(s, &bsize, &last, &reply) != OSP_OK)
			check_reply(reply);
		reply = NULL;
		if (smtp_parse_auth(pool, s, &mech, &ir, &reply) == OSP_OK) {
			if (mech == NULL || strlen(mech) > 20)
				abort();
		} else
			check_reply(reply);
		(void)smtp_xtext_decode(pool, s);
	}
	osp_pool_free(pool);
	free(line);
	return 0;
}
