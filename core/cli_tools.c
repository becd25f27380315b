/* SPDX-License-Identifier: ISC */
/* Helpers shared by the data tools, and `osprey gentestdata`: a data dir
 * with accounts, mailboxes and messages for upgrade tests. */
#include "core.h"
#include "cli_tools.h"

#include <osprey/accounts.h>

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *
cli_tools_data_dir(struct osp_cli *cli)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	char *dir = NULL;

	/* The core section is enough: modules are not loaded, so their
	 * sections are not checked here (config test does that). */
	gen = osp_config_parse(cli->config_file, &errs);
	if (errs.n > 0 || gen == NULL) {
		if (errs.n > 0)
			fprintf(stderr, "%s\n", errs.text.data);
		fprintf(stderr, "osprey: %s: configuration not usable\n",
		    cli->config_file);
	} else if (gen->core.data_dir == NULL || *gen->core.data_dir == '\0')
		fprintf(stderr, "osprey: %s: no data-dir\n", cli->config_file);
	else
		dir = osp_strdup(gen->core.data_dir);
	osp_conf_errs_deinit(&errs);
	if (gen != NULL)
		osp_config_unref(gen);
	return dir;
}

int
cli_tools_mkdirs(const char *path, mode_t mode)
{
	char *p = osp_strdup(path), *s;
	struct stat st;
	int ret = OSP_OK;

	for (s = p + 1; ret == OSP_OK; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		if (*s == '/' && s[-1] == '/')
			continue;
		{
			char c = *s;

			*s = '\0';
			if (mkdir(p, mode) == -1 && errno != EEXIST)
				ret = -errno;
			else if (stat(p, &st) == -1)
				ret = -errno;
			else if (!S_ISDIR(st.st_mode))
				ret = -ENOTDIR;
			*s = c;
			if (c == '\0')
				break;
		}
	}
	free(p);
	return ret;
}

bool
cli_tools_dir_unused(const char *path)
{
	DIR *d;
	struct dirent *de;
	bool empty = true;

	if ((d = opendir(path)) == NULL)
		return errno == ENOENT;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0) {
			empty = false;
			break;
		}
	closedir(d);
	return empty;
}

char *
cli_tools_msg_path(const char *accdir, int64_t id)
{
	char *p;

	if (asprintf(&p, "%s/msg/%lld/%lld", accdir,
	    (long long)(id / CLI_TOOLS_FILES_PER_DIR), (long long)id) == -1)
		osp_fatal("cli", "out of memory");
	return p;
}

bool
cli_tools_safe_name(const char *name)
{
	const char *p = name, *e;
	size_t n;

	for (;;) {
		e = strchr(p, '/');
		n = e != NULL ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (e == NULL)
			return true;
		p = e + 1;
	}
}

bool
cli_tools_keyword_valid(const char *kw)
{
	const unsigned char *p = (const unsigned char *)kw;

	/* RFC 9051 §9: flag-keyword = atom; atom-specials excluded. */
	if (*p == '\0' || *p == '\\')
		return false;
	for (; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f ||
		    strchr("(){%*\"\\]", *p) != NULL)
			return false;
	return true;
}

/* ---- gentestdata --------------------------------------------------------- */

struct gen_msg {
	const char	*mailbox;
	uint32_t	 flags;
	const char	*keywords[4];
	int64_t		 received;
	const char	*prefix;
	const char	*text;		/* LF here; written as CRLF */
};

/* A small PNG (1x1 transparent pixel), base64, for the attachment. */
#define GEN_PNG_B64 \
	"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhf" \
	"DwAC\n" \
	"hwGA60e6kgAAAABJRU5ErkJggg==\n"

static const struct gen_msg gen_msgs_alice[] = {
	{ "Inbox", OSP_FLAG_SEEN, { NULL }, 1735725600,
	  "Received: from mail.example.net (mail.example.net [192.0.2.10])\n"
	  "\tby mail.example.org with ESMTPS; Wed, 1 Jan 2025 10:00:00 "
	  "+0000\n",
	  "From: Bob <bob@example.net>\nTo: Alice <alice@example.org>\n"
	  "Subject: Hello\nDate: Wed, 1 Jan 2025 10:00:00 +0000\n"
	  "Message-ID: <hello-1@example.net>\n\nHi Alice,\n\nhow are you?\n"
	  "\n-- \nBob\n" },
	{ "Inbox", OSP_FLAG_SEEN | OSP_FLAG_ANSWERED, { "$Forwarded",
	  "project-x", NULL }, 1735729200, NULL,
	  "From: Bob <bob@example.net>\nTo: Alice <alice@example.org>\n"
	  "Subject: Re: Hello\nDate: Wed, 1 Jan 2025 11:00:00 +0000\n"
	  "Message-ID: <hello-2@example.net>\n"
	  "In-Reply-To: <hello-1@example.net>\n"
	  "References: <hello-1@example.net>\n\nAnd the report.\n" },
	{ "Inbox", OSP_FLAG_FLAGGED, { "$Important", NULL }, 1735815600, NULL,
	  "From: =?UTF-8?Q?Ren=C3=A9e?= <renee@example.net>\n"
	  "To: alice@example.org\n"
	  "Subject: =?UTF-8?B?UmFwcG9ydCBmaW5hbmNpZXIg4oCUIMOpdMOp?=\n"
	  "Date: Thu, 2 Jan 2025 11:00:00 +0000\n"
	  "Message-ID: <report@example.net>\nMIME-Version: 1.0\n"
	  "Content-Type: multipart/mixed; boundary=\"b1\"\n\n"
	  "This is a multipart message.\n\n--b1\n"
	  "Content-Type: text/plain; charset=utf-8\n"
	  "Content-Transfer-Encoding: quoted-printable\n\n"
	  "Voil=C3=A0 le rapport.\n\n--b1\n"
	  "Content-Type: image/png; name=\"pixel.png\"\n"
	  "Content-Disposition: attachment; filename=\"pixel.png\"\n"
	  "Content-Transfer-Encoding: base64\n\n" GEN_PNG_B64 "\n--b1--\n" },
	{ "Inbox", 0, { NULL }, 1735902000, NULL,
	  "From: Newsletter <news@lists.example.com>\n"
	  "To: alice@example.org\nSubject: Weekly news\n"
	  "Date: Fri, 3 Jan 2025 11:00:00 +0000\n"
	  "Message-ID: <news-1@lists.example.com>\nMIME-Version: 1.0\n"
	  "Content-Type: multipart/alternative; boundary=\"alt\"\n\n"
	  "--alt\nContent-Type: text/plain; charset=us-ascii\n\n"
	  "News in plain text.\n--alt\n"
	  "Content-Type: text/html; charset=us-ascii\n\n"
	  "<p>News in <b>HTML</b>.</p>\n--alt--\n" },
	{ "Inbox", OSP_FLAG_SEEN | OSP_FLAG_DELETED, { NULL }, 1735988400,
	  NULL,
	  "From: spam@example.com\nTo: alice@example.org\nSubject: Win\n"
	  "Date: Sat, 4 Jan 2025 11:00:00 +0000\n\nDeleted, not expunged.\n" },
	{ "Lists/Osprey", 0, { "$Label1", NULL }, 1736074800, NULL,
	  "From: dev@lists.example.com\nTo: dev@lists.example.com\n"
	  "Subject: [osprey] store design\nList-Id: <dev.lists.example.com>\n"
	  "Date: Sun, 5 Jan 2025 11:00:00 +0000\n"
	  "Message-ID: <design@lists.example.com>\n\nSee DESIGN.md.\n" },
	{ "Drafts", OSP_FLAG_DRAFT | OSP_FLAG_SEEN, { NULL }, 1736161200, NULL,
	  "From: Alice <alice@example.org>\nTo: bob@example.net\n"
	  "Subject: Unfinished\n\nDear Bob,\n" },
	{ "Sent", OSP_FLAG_SEEN, { "$MDNSent", NULL }, 1736247600, NULL,
	  "From: Alice <alice@example.org>\nTo: bob@example.net\n"
	  "Subject: Re: Hello\nDate: Tue, 7 Jan 2025 11:00:00 +0000\n"
	  "Message-ID: <sent-1@example.org>\n"
	  "In-Reply-To: <hello-2@example.net>\n\nThanks!\n" },
	{ "Archive/2024", OSP_FLAG_SEEN, { NULL }, 1704106800, NULL,
	  "From: bob@example.net\nTo: alice@example.org\n"
	  "Subject: Old times\nDate: Mon, 1 Jan 2024 11:00:00 +0000\n\n"
	  "From the archive (a body line starting with From).\n" },
	{ "Caf\xc3\xa9 \xe2\x98\x95", 0, { NULL }, 1736334000, NULL,
	  "From: =?UTF-8?Q?Caf=C3=A9?= <cafe@example.com>\n"
	  "To: alice@example.org\nSubject: =?UTF-8?Q?Men=C3=BC?=\n"
	  "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
	  "Content-Transfer-Encoding: 8bit\n\nCaf\xc3\xa9 cr\xc3\xa8me "
	  "\xe2\x98\x95\n" },
};

static const struct gen_msg gen_msgs_bob[] = {
	{ "Inbox", 0, { NULL }, 1735725600, NULL,
	  "From: Alice <alice@example.org>\nTo: bob@example.net\n"
	  "Subject: Lunch?\nDate: Wed, 1 Jan 2025 10:00:00 +0000\n\n"
	  "Tomorrow at noon?\n" },
	{ "Junk", OSP_FLAG_SEEN, { "$Junk", NULL }, 1735729200, NULL,
	  "From: prize@example.com\nTo: bob@example.net\nSubject: Prize\n\n"
	  "Click.\n" },
};

static const struct gen_msg gen_msgs_heidi[] = {
	{ "Inbox", 0, { NULL }, 1735725600,
	  "Received: from a.example by mail.xn--bcher-kva.example;\n"
	  "\tWed, 1 Jan 2025 "
	  "10:00:00 +0000\n",
	  "From: alice@example.org\n"
	  "To: =?UTF-8?B?4pi6?= <info@xn--bcher-kva.example>\n"
	  "Subject: Smile\nDate: Wed, 1 Jan 2025 10:00:00 +0000\n\n:-)\n" },
	{ "Inbox", OSP_FLAG_SEEN, { NULL }, 1735729200, NULL,
	  "From: \xe2\x98\xba@b\xc3\xbc" "cher.example\n"
	  "To: info@b\xc3\xbc" "cher.example\nSubject: SMTPUTF8\n"
	  "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
	  "An internationalized address.\n" },
};

static char *
gen_lf_to_crlf(const char *s)
{
	struct osp_buf b;

	osp_buf_init(&b);
	for (; *s != '\0'; s++) {
		if (*s == '\n')
			osp_buf_putc(&b, '\r');
		osp_buf_putc(&b, *s);
	}
	osp_buf_putc(&b, '\0');
	return b.data;
}

static int
gen_write_tmp(struct osp_store *store, const char *text, char **path_r)
{
	static unsigned long seq;
	char *data = gen_lf_to_crlf(text);
	size_t len = strlen(data);
	int fd;

	if (asprintf(path_r, "%s/gentestdata-%ld-%lu",
	    osp_store_tmpdir(store), (long)getpid(), seq++) == -1)
		osp_fatal("gentestdata", "out of memory");
	fd = open(*path_r, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1 || write(fd, data, len) != (ssize_t)len ||
	    close(fd) == -1) {
		fprintf(stderr, "osprey: gentestdata: %s: %s\n", *path_r,
		    strerror(errno));
		free(data);
		return -1;
	}
	free(data);
	return 0;
}

static int
gen_account(struct osp_store *store, const char *name,
    const struct gen_msg *msgs, size_t n, const char *const *mailboxes)
{
	struct osp_account *acc;
	struct osp_store_new_msg nm;
	struct osp_mailbox mb;
	struct osp_pool *pool = osp_pool_new(NULL);
	const char *error = NULL;
	char *path, *prefix;
	size_t i;
	int r;

	r = osp_account_open(store, name, true, &acc, &error);
	if (r != OSP_OK)
		goto fail;
	for (i = 0; mailboxes[i] != NULL; i++) {
		r = osp_mailbox_create(acc, mailboxes[i], 0, &mb.id, &error);
		if (r != OSP_OK && r != -EEXIST)
			goto fail_acc;
		if ((r = osp_mailbox_subscribe(acc, mailboxes[i], true,
		    &error)) != OSP_OK)
			goto fail_acc;
	}
	for (i = 0; i < n; i++) {
		r = osp_mailbox_get(acc, msgs[i].mailbox, pool, &mb, &error);
		if (r == -ENOENT)
			r = osp_mailbox_create(acc, msgs[i].mailbox, 0, &mb.id,
			    &error);
		if (r != OSP_OK)
			goto fail_acc;
		if (gen_write_tmp(store, msgs[i].text, &path) != 0) {
			osp_account_unref(acc);
			osp_pool_free(pool);
			return -1;
		}
		memset(&nm, 0, sizeof(nm));
		nm.path = path;
		prefix = msgs[i].prefix != NULL ?
		    gen_lf_to_crlf(msgs[i].prefix) : NULL;
		nm.prefix = prefix;
		nm.prefix_len = prefix != NULL ? strlen(prefix) : 0;
		nm.flags = msgs[i].flags;
		nm.keywords = msgs[i].keywords[0] != NULL ?
		    msgs[i].keywords : NULL;
		nm.received = msgs[i].received;
		nm.remote_ip = "192.0.2.10";
		nm.mail_from_domain = "example.net";
		r = osp_message_append(acc, mb.id, &nm, NULL, NULL, &error);
		unlink(path);
		free(path);
		free(prefix);
		if (r != OSP_OK)
			goto fail_acc;
	}
	printf("account %s: %zu messages\n", name, n);
	osp_account_unref(acc);
	osp_pool_free(pool);
	return 0;
fail_acc:
	osp_account_unref(acc);
fail:
	fprintf(stderr, "osprey: gentestdata: account %s: %s\n", name,
	    error != NULL ? error : osp_strerror(r));
	osp_pool_free(pool);
	return -1;
}

/* Changes that leave tombstones: a copy, a move and an expunge, so that
 * upgrade tests see every kind of row. */
static int
gen_changes(struct osp_store *store)
{
	struct osp_account *acc;
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_mailbox inbox, archive, trash;
	struct osp_uid_range r1 = { 1, 1 }, r2 = { 2, 2 };
	struct osp_uidset s1 = { &r1, 1 }, s2 = { &r2, 1 };
	const char *error = NULL;
	uint32_t *src, *dst, *exp;
	size_t n;
	int r;

	if ((r = osp_account_open(store, "alice", false, &acc,
	    &error)) != OSP_OK)
		goto out;
	if ((r = osp_mailbox_get(acc, "Inbox", pool, &inbox,
	    &error)) != OSP_OK ||
	    (r = osp_mailbox_get(acc, "Archive", pool, &archive,
	    &error)) != OSP_OK ||
	    (r = osp_mailbox_get(acc, "Trash", pool, &trash,
	    &error)) != OSP_OK)
		goto out_acc;
	/* copy Inbox uid 1 to Archive, move Inbox uid 2 to Trash, expunge
	 * it there */
	if ((r = osp_message_copy(acc, inbox.id, &s1, archive.id, pool, &src,
	    &dst, &n, &error)) != OSP_OK)
		goto out_acc;
	if ((r = osp_message_move(acc, inbox.id, &s2, trash.id, pool, &src,
	    &dst, &n, &error)) != OSP_OK)
		goto out_acc;
	r = osp_message_expunge(acc, trash.id, NULL, false, pool, &exp, &n,
	    &error);
out_acc:
	osp_account_unref(acc);
out:
	if (r != OSP_OK)
		fprintf(stderr, "osprey: gentestdata: alice: %s\n",
		    error != NULL ? error : osp_strerror(r));
	osp_pool_free(pool);
	return r == OSP_OK ? 0 : -1;
}

/* domains.yaml in the accounts' format (accounts.h), beside osprey.yaml:
 * a config that points at this data dir, for `osprey -c DIR/osprey.yaml`. */
static int
gen_config(const char *dir)
{
	static const char config[] =
	    "# Written by osprey gentestdata: the data dir is this directory.\n"
	    "hostname: mail.example.org\n"
	    "data-dir: .\n";
	/* One domain written as a U-label: the accounts loader keeps the
	 * A-label (xn--bcher-kva.example) as the canonical form. */
	static const char domains[] =
	    "# Written by osprey gentestdata.\n"
	    "domains:\n"
	    "  example.org:\n"
	    "    description: Alice's domain\n"
	    "    localpart-catchall-separator: \"+\"\n"
	    "    postmaster-account: alice\n"
	    "  example.net: {}\n"
	    "  \"b\xc3\xbc" "cher.example\":\n"
	    "    catchall-account: heidi\n"
	    "postmaster-account: alice\n"
	    "accounts:\n"
	    "  alice:\n"
	    "    domain: example.org\n"
	    "    full-name: Alice Example\n"
	    "    destinations:\n"
	    "      alice: {}\n"
	    "      lists@example.org: {mailbox: Lists}\n"
	    "  bob:\n"
	    "    domain: example.net\n"
	    "    destinations:\n"
	    "      bob: {}\n"
	    "  heidi:\n"
	    "    domain: \"b\xc3\xbc" "cher.example\"\n"
	    "    destinations:\n"
	    "      info: {}\n"
	    "aliases:\n"
	    "  team@example.org:\n"
	    "    members: [alice@example.org, bob@example.net]\n";
	const struct { const char *name, *text; } files[] = {
		{ "osprey.yaml", config }, { "domains.yaml", domains },
	};
	struct osp_conf_errs errs = { 0 };
	struct osp_accounts *acc;
	char *path;
	FILE *f;
	size_t i;
	int ret = 0;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (asprintf(&path, "%s/%s", dir, files[i].name) == -1)
			osp_fatal("gentestdata", "out of memory");
		if ((f = fopen(path, "wx")) == NULL ||
		    fputs(files[i].text, f) == EOF || fclose(f) != 0) {
			fprintf(stderr, "osprey: gentestdata: %s: %s\n", path,
			    strerror(errno));
			free(path);
			return -1;
		}
		free(path);
	}
	/* What we wrote must load: the accounts module is its judge. */
	if (asprintf(&path, "%s/domains.yaml", dir) == -1)
		osp_fatal("gentestdata", "out of memory");
	if (osp_accounts_load(path, &acc, &errs) != OSP_OK) {
		fprintf(stderr, "%s\nosprey: gentestdata: %s does not load\n",
		    errs.text.data != NULL ? errs.text.data : "", path);
		ret = -1;
	} else
		osp_accounts_unref(acc);
	osp_conf_errs_deinit(&errs);
	free(path);
	return ret;
}

int
osp_cli_gentestdata(struct osp_cli *cli, int argc, char **argv)
{
	static const char *const alice_mb[] = { "Lists", "Lists/Osprey",
	    "Archive/2024", "Caf\xc3\xa9 \xe2\x98\x95", "Inbox", "Archive",
	    NULL };
	static const char *const bob_mb[] = { "Inbox", "Projects/Osprey/Notes",
	    NULL };
	static const char *const heidi_mb[] = { "Inbox", NULL };
	struct osp_store *store;
	const char *error;
	int r, ret = 0;

	(void)cli;
	if (argc != 2)
		return osp_cli_cmd_usage("gentestdata");
	if (!cli_tools_dir_unused(argv[1])) {
		fprintf(stderr, "osprey: gentestdata: %s exists and is not "
		    "empty\n", argv[1]);
		return 1;
	}
	if ((r = cli_tools_mkdirs(argv[1], 0750)) != OSP_OK) {
		fprintf(stderr, "osprey: gentestdata: %s: %s\n", argv[1],
		    osp_strerror(r));
		return 1;
	}
	if ((r = osp_store_open(argv[1], &store, &error)) != OSP_OK) {
		fprintf(stderr, "osprey: gentestdata: %s: %s\n", argv[1],
		    error != NULL ? error : osp_strerror(r));
		return 1;
	}
	if (gen_account(store, "alice", gen_msgs_alice,
	    sizeof(gen_msgs_alice) / sizeof(gen_msgs_alice[0]),
	    alice_mb) != 0 ||
	    gen_account(store, "bob", gen_msgs_bob,
	    sizeof(gen_msgs_bob) / sizeof(gen_msgs_bob[0]), bob_mb) != 0 ||
	    gen_account(store, "heidi", gen_msgs_heidi,
	    sizeof(gen_msgs_heidi) / sizeof(gen_msgs_heidi[0]),
	    heidi_mb) != 0 || gen_changes(store) != 0 ||
	    gen_config(argv[1]) != 0)
		ret = 1;
	osp_store_close(store);
	if (ret == 0)
		printf("test data written to %s\n", argv[1]);
	return ret;
}

/* `osprey cid VALUE...`: the session id and time of Received ids. */
int
osp_cli_cid(struct osp_cli *cli, int argc, char **argv)
{
	const char *error;
	char *dir, tbuf[64];
	uint64_t id;
	int64_t when;
	struct tm tm;
	time_t t;
	int i, rc = 0;

	if (argc < 2)
		return osp_cli_cmd_usage("cid");
	if ((dir = cli_tools_data_dir(cli)) == NULL)
		return 1;
	if (osp_cid_init(dir, false, &error) != OSP_OK) {
		fprintf(stderr, "osprey: %s/%s\n", dir, error);
		free(dir);
		return 1;
	}
	free(dir);
	for (i = 1; i < argc; i++) {
		if (osp_cid_decrypt(argv[i], &id, &when) != OSP_OK) {
			fprintf(stderr, "osprey: %s: not a session id of this "
			    "installation\n", argv[i]);
			rc = 1;
			continue;
		}
		t = (time_t)when;
		gmtime_r(&t, &tm);
		strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%s id=" OSP_ID_FMT " time=%s\n", argv[i],
		    OSP_ID_ARG(id), tbuf);
	}
	return rc;
}
