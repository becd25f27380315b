/* SPDX-License-Identifier: ISC */
/* `osprey import` and `osprey export`: mbox (mboxrd) and Maildir with flags
 * and keywords, streamed message by message and committed in batches. */
#include "core.h"
#include "cli_tools.h"

#include <osprey/accounts.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/*
 * Message files in the store are in the form SMTP receives them: lines end
 * in CRLF (RFC 5322 §2.1, RFC 5321 §2.3.8), which IMAP serves as they are.
 * mbox and Maildir files conventionally use LF: import turns bare LF into
 * CRLF, export turns CRLF back into LF, so an LF file round-trips byte for
 * byte.
 */

#define IMPORT_BATCH		500	/* messages per transaction */
#define IMPORT_MAX_KEYWORDS	64	/* per message */
#define IMPORT_MAX_HDRVAL	8192	/* collected Status/X-Keywords */
#define EXPORT_CHUNK		2000	/* uids listed at a time */

enum imp_hdr {
	HDR_NONE = 0,
	HDR_SKIP,		/* X-UID, X-IMAP, X-IMAPbase: dropped */
	HDR_STATUS,
	HDR_XSTATUS,
	HDR_XKEYWORDS,
};

/* The message being written to a temporary file. */
struct imp_msg {
	FILE		*out;
	char		*path;
	bool		 in_header;
	enum imp_hdr	 hdr;		/* header being collected */
	struct osp_buf	 hdrval;
	uint32_t	 flags;
	char		*keywords[IMPORT_MAX_KEYWORDS + 1];
	size_t		 nkeywords;
	int64_t		 received;
	uint64_t	 bytes;
	char		*where;		/* "FILE line N" or path */
};

struct imp {
	struct osp_store	*store;
	struct osp_account	*acc;
	int64_t			 mailbox_id;
	const char		*mailbox;
	size_t			 batch_max;
	unsigned long		 seq;		/* temp file names */
	/* the current batch: messages written, not yet committed */
	struct imp_msg		*batch;
	size_t			 nbatch;
	uint64_t		 imported;
	bool			 warned_keyword;
};

/* ---- temporary message files --------------------------------------- */

static int
imp_msg_start(struct imp *im, const char *where, bool mbox_headers)
{
	struct imp_msg *m = &im->batch[im->nbatch];
	int fd;

	memset(m, 0, sizeof(*m));
	osp_buf_init(&m->hdrval);
	m->in_header = mbox_headers;
	m->where = osp_strdup(where);
	if (asprintf(&m->path, "%s/import-%ld-%lu", osp_store_tmpdir(im->store),
	    (long)getpid(), im->seq++) == -1)
		osp_fatal("import", "out of memory");
	fd = open(m->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1 || (m->out = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "osprey: import: %s: %s\n", m->path,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		free(m->path);
		free(m->where);
		osp_buf_deinit(&m->hdrval);
		return -1;
	}
	return 0;
}

static void
imp_msg_free(struct imp_msg *m, bool unlink_file)
{
	size_t i;

	if (m->out != NULL)
		fclose(m->out);
	if (unlink_file && m->path != NULL)
		unlink(m->path);
	free(m->path);
	free(m->where);
	for (i = 0; i < m->nkeywords; i++)
		free(m->keywords[i]);
	osp_buf_deinit(&m->hdrval);
	memset(m, 0, sizeof(*m));
}

static void
imp_add_keyword(struct imp *im, struct imp_msg *m, const char *kw,
    size_t len)
{
	char *k;
	size_t i;

	if (len == 0)
		return;
	k = osp_strndup(kw, len);
	if (!cli_tools_keyword_valid(k) ||
	    m->nkeywords == IMPORT_MAX_KEYWORDS) {
		if (!im->warned_keyword)
			fprintf(stderr, "osprey: import: %s: keyword \"%s\" "
			    "skipped (invalid or too many)\n", m->where, k);
		im->warned_keyword = true;
		free(k);
		return;
	}
	for (i = 0; i < m->nkeywords; i++)
		if (strcasecmp(m->keywords[i], k) == 0) {
			free(k);
			return;
		}
	m->keywords[m->nkeywords++] = k;
}

/* Status: R = \Seen (O = old, not \Recent: nothing to keep);
 * X-Status: A \Answered, F \Flagged, T \Draft, D \Deleted; X-Keywords:
 * comma or space separated (Dovecot writes spaces, mutt commas). */
static void
imp_hdr_finish(struct imp *im, struct imp_msg *m)
{
	const char *p = m->hdrval.data != NULL ? m->hdrval.data : "";
	const char *s;

	switch (m->hdr) {
	case HDR_STATUS:
		if (strchr(p, 'R') != NULL)
			m->flags |= OSP_FLAG_SEEN;
		break;
	case HDR_XSTATUS:
		for (; *p != '\0'; p++)
			switch (*p) {
			case 'A': m->flags |= OSP_FLAG_ANSWERED; break;
			case 'F': m->flags |= OSP_FLAG_FLAGGED; break;
			case 'T': m->flags |= OSP_FLAG_DRAFT; break;
			case 'D': m->flags |= OSP_FLAG_DELETED; break;
			}
		break;
	case HDR_XKEYWORDS:
		while (*p != '\0') {
			while (*p == ',' || isspace((unsigned char)*p))
				p++;
			for (s = p; *p != '\0' && *p != ',' &&
			    !isspace((unsigned char)*p); p++)
				;
			imp_add_keyword(im, m, s, (size_t)(p - s));
		}
		break;
	default:
		break;
	}
	m->hdr = HDR_NONE;
	osp_buf_reset(&m->hdrval);
}

static enum imp_hdr
imp_hdr_kind(const char *line, size_t len)
{
	static const struct { const char *name; enum imp_hdr kind; } tab[] = {
		{ "status", HDR_STATUS }, { "x-status", HDR_XSTATUS },
		{ "x-keywords", HDR_XKEYWORDS }, { "x-uid", HDR_SKIP },
		{ "x-imap", HDR_SKIP }, { "x-imapbase", HDR_SKIP },
	};
	const char *colon = memchr(line, ':', len);
	size_t i, n;

	if (colon == NULL)
		return HDR_NONE;
	n = (size_t)(colon - line);
	while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
		n--;
	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strlen(tab[i].name) == n &&
		    strncasecmp(line, tab[i].name, n) == 0)
			return tab[i].kind;
	return HDR_NONE;
}

/* Writes one line (with its LF or CRLF, or none at EOF) as CRLF. */
static void
imp_put_line(struct imp_msg *m, const char *line, size_t len)
{
	bool nl = len > 0 && line[len - 1] == '\n';

	if (nl) {
		len--;
		if (len > 0 && line[len - 1] == '\r')
			len--;
	}
	fwrite(line, 1, len, m->out);
	if (nl)
		fputs("\r\n", m->out);
	m->bytes += len + (nl ? 2 : 0);
}

/* One line of an mbox message (From_ line excluded, >From unescaped). */
static void
imp_mbox_line(struct imp *im, struct imp_msg *m, const char *line,
    size_t len)
{
	const char *v;

	if (m->in_header) {
		if (len > 0 && (line[0] == ' ' || line[0] == '\t') &&
		    m->hdr != HDR_NONE) {
			/* continuation of a header we keep out */
			if (m->hdrval.len + len < IMPORT_MAX_HDRVAL)
				osp_buf_append(&m->hdrval, line, len);
			return;
		}
		if (m->hdr != HDR_NONE)
			imp_hdr_finish(im, m);
		if (len == 0 || line[0] == '\n' ||
		    (line[0] == '\r' && len > 1 && line[1] == '\n'))
			m->in_header = false;
		else if ((m->hdr = imp_hdr_kind(line, len)) != HDR_NONE) {
			v = (const char *)memchr(line, ':', len) + 1;
			osp_buf_append(&m->hdrval, v, len - (size_t)(v - line));
			return;
		}
	}
	imp_put_line(m, line, len);
}

/* ---- batches --------------------------------------------------------- */

/* Commits the written messages of the batch; on a store error, retries
 * them one by one so that the failing message is named and those before
 * it are kept. */
static int
imp_flush(struct imp *im)
{
	struct osp_store_new_msg *nm;
	const char *error;
	size_t i, done = 0;
	int ret = 0, r;

	if (im->nbatch == 0)
		return 0;
	nm = osp_calloc(im->nbatch, sizeof(*nm));
	for (i = 0; i < im->nbatch; i++) {
		nm[i].path = im->batch[i].path;
		nm[i].flags = im->batch[i].flags;
		nm[i].keywords = im->batch[i].nkeywords > 0 ?
		    (const char *const *)im->batch[i].keywords : NULL;
		nm[i].received = im->batch[i].received;
	}
	r = osp_message_append_batch(im->acc, im->mailbox_id, nm, im->nbatch,
	    NULL, &error);
	if (r == OSP_OK)
		done = im->nbatch;
	else {
		for (i = 0; i < im->nbatch; i++) {
			r = osp_message_append(im->acc, im->mailbox_id, &nm[i],
			    NULL, NULL, &error);
			if (r != OSP_OK) {
				fprintf(stderr, "osprey: import: %s: %s\n",
				    im->batch[i].where, error != NULL ? error :
				    osp_strerror(r));
				ret = -1;
				break;
			}
			done++;
		}
	}
	free(nm);
	for (i = 0; i < im->nbatch; i++)
		imp_msg_free(&im->batch[i], true);
	im->nbatch = 0;
	im->imported += done;
	printf("imported %llu messages\n", (unsigned long long)im->imported);
	fflush(stdout);
	return ret;
}

/* Closes the current message's file and adds it to the batch. */
static int
imp_msg_end(struct imp *im)
{
	struct imp_msg *m = &im->batch[im->nbatch];
	int r;

	if (m->hdr != HDR_NONE)
		imp_hdr_finish(im, m);
	m->keywords[m->nkeywords] = NULL;
	r = fclose(m->out);
	m->out = NULL;
	if (r != 0) {
		fprintf(stderr, "osprey: import: %s: writing %s: %s\n",
		    m->where, m->path, strerror(errno));
		imp_msg_free(m, true);
		return -1;
	}
	im->nbatch++;
	if (im->nbatch == im->batch_max)
		return imp_flush(im);
	return 0;
}

static void
imp_msg_abort(struct imp *im)
{
	imp_msg_free(&im->batch[im->nbatch], true);
}

/* ---- mbox ------------------------------------------------------------ */

static bool
is_from_line(const char *line, size_t len)
{
	return len >= 5 && memcmp(line, "From ", 5) == 0;
}

/* asctime(3)-style date after the sender on a From_ line, as UTC. */
static int64_t
from_line_date(const char *line)
{
	const char *p = line + 5;
	struct tm tm;

	while (*p == ' ')
		p++;
	while (*p != ' ' && *p != '\0' && *p != '\n')
		p++;
	while (*p == ' ')
		p++;
	memset(&tm, 0, sizeof(tm));
	if (strptime(p, "%a %b %d %H:%M:%S %Y", &tm) == NULL)
		return 0;
	return (int64_t)timegm(&tm);
}

static int
imp_mbox(struct imp *im, const char *path)
{
	FILE *f;
	char *line = NULL, where[512];
	size_t cap = 0, len, skip;
	ssize_t n;
	unsigned long lineno = 0, start = 0;
	bool in_msg = false, prev_blank = true, pending_blank = false;
	struct imp_msg *m = NULL;
	int ret = 0;

	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "osprey: import: %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) != -1) {
		len = (size_t)n;
		lineno++;
		if (memchr(line, '\0', len) != NULL) {
			fprintf(stderr, "osprey: import: %s line %lu: NUL byte "
			    "in the message starting at line %lu\n", path,
			    lineno, start);
			ret = -1;
			break;
		}
		/* RFC 4155 §2: a message starts at a "From " line at the
		 * start of the file or after a blank line (the blank line
		 * is the separator, not part of the message). */
		if (is_from_line(line, len) && prev_blank) {
			if (in_msg) {
				if (m->bytes == 0) {
					fprintf(stderr, "osprey: import: %s "
					    "line %lu: empty message\n", path,
					    start);
					ret = -1;
					break;
				}
				if ((ret = imp_msg_end(im)) != 0) {
					in_msg = false;
					break;
				}
			}
			start = lineno;
			snprintf(where, sizeof(where), "%s line %lu", path,
			    start);
			if ((ret = imp_msg_start(im, where, true)) != 0)
				break;
			m = &im->batch[im->nbatch];
			m->received = from_line_date(line);
			in_msg = true;
			pending_blank = false;
			prev_blank = false;
			continue;
		}
		if (!in_msg) {
			if (len == 1 && line[0] == '\n')
				continue;
			fprintf(stderr, "osprey: import: %s line %lu: not an "
			    "mbox file (no \"From \" line before the first "
			    "message)\n", path, lineno);
			ret = -1;
			break;
		}
		/* A blank line is held back: it is the separator when a
		 * From_ line follows. */
		if (pending_blank)
			imp_mbox_line(im, m, "\n", 1);
		pending_blank = false;
		prev_blank = (len == 1 && line[0] == '\n') ||
		    (len == 2 && line[0] == '\r' && line[1] == '\n');
		if (prev_blank && !m->in_header) {
			pending_blank = true;
			continue;
		}
		/* mboxrd: ">From ", ">>From " ... lose one '>'. */
		for (skip = 0; skip < len && line[skip] == '>'; skip++)
			;
		if (skip > 0 && is_from_line(line + skip, len - skip))
			imp_mbox_line(im, m, line + 1, len - 1);
		else
			imp_mbox_line(im, m, line, len);
	}
	if (ret == 0 && ferror(f)) {
		fprintf(stderr, "osprey: import: %s line %lu: %s\n", path,
		    lineno, strerror(errno));
		ret = -1;
	}
	if (ret == 0 && in_msg) {
		if (m->bytes == 0) {
			fprintf(stderr, "osprey: import: %s line %lu: empty "
			    "message\n", path, start);
			ret = -1;
		} else {
			in_msg = false;
			ret = imp_msg_end(im);
		}
	}
	if (ret != 0 && in_msg)
		imp_msg_abort(im);
	free(line);
	fclose(f);
	return ret;
}

/* ---- Maildir ---------------------------------------------------------- */

struct md_entry {
	char		*path;
	unsigned long long time;	/* leading number of the name */
	const char	*name;
};

static int
md_cmp(const void *a, const void *b)
{
	const struct md_entry *x = a, *y = b;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int
md_list(const char *dir, struct md_entry **ents, size_t *n, size_t *cap)
{
	DIR *d;
	struct dirent *de;
	struct stat st;
	struct md_entry *e;
	char *p;

	if ((d = opendir(dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "osprey: import: %s: %s\n", dir,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&p, "%s/%s", dir, de->d_name) == -1)
			osp_fatal("import", "out of memory");
		if (stat(p, &st) == -1 || !S_ISREG(st.st_mode)) {
			free(p);
			continue;
		}
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 256;
			*ents = osp_reallocarray(*ents, *cap, sizeof(**ents));
		}
		e = &(*ents)[(*n)++];
		e->path = p;
		e->name = p + strlen(dir) + 1;
		e->time = strtoull(e->name, NULL, 10);
	}
	closedir(d);
	return 0;
}

/* dovecot-keywords: "N name" lines, N 0..25 for letters a..z. */
static void
md_read_keywords(const char *maildir, char *letters[26])
{
	char *path, *line = NULL, *end;
	size_t cap = 0;
	ssize_t n;
	long idx;
	FILE *f;

	if (asprintf(&path, "%s/dovecot-keywords", maildir) == -1)
		osp_fatal("import", "out of memory");
	f = fopen(path, "r");
	free(path);
	if (f == NULL)
		return;
	while ((n = getline(&line, &cap, f)) > 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		idx = strtol(line, &end, 10);
		if (end == line || *end != ' ' || idx < 0 || idx >= 26)
			continue;
		free(letters[idx]);
		letters[idx] = osp_strdup(end + 1);
	}
	free(line);
	fclose(f);
}

static int
imp_maildir_one(struct imp *im, const struct md_entry *e, char *letters[26])
{
	struct imp_msg *m;
	struct stat st;
	const char *info;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	int ret = 0;

	if ((f = fopen(e->path, "r")) == NULL || fstat(fileno(f), &st) == -1) {
		fprintf(stderr, "osprey: import: %s: %s\n", e->path,
		    strerror(errno));
		if (f != NULL)
			fclose(f);
		return -1;
	}
	if (imp_msg_start(im, e->path, false) != 0) {
		fclose(f);
		return -1;
	}
	m = &im->batch[im->nbatch];
	m->received = (int64_t)st.st_mtime;
	/* Maildir info (https://cr.yp.to/proto/maildir.html): ":2," then
	 * flags in ASCII order; lowercase letters are Dovecot keywords. */
	if ((info = strstr(e->name, ":2,")) != NULL)
		for (info += 3; *info != '\0'; info++)
			switch (*info) {
			case 'S': m->flags |= OSP_FLAG_SEEN; break;
			case 'R': m->flags |= OSP_FLAG_ANSWERED; break;
			case 'F': m->flags |= OSP_FLAG_FLAGGED; break;
			case 'T': m->flags |= OSP_FLAG_DELETED; break;
			case 'D': m->flags |= OSP_FLAG_DRAFT; break;
			default:
				if (*info >= 'a' && *info <= 'z' &&
				    letters[*info - 'a'] != NULL)
					imp_add_keyword(im, m,
					    letters[*info - 'a'],
					    strlen(letters[*info - 'a']));
				break;
			}
	while ((n = getline(&line, &cap, f)) != -1) {
		if (memchr(line, '\0', (size_t)n) != NULL) {
			fprintf(stderr, "osprey: import: %s: NUL byte in "
			    "message\n", e->path);
			ret = -1;
			break;
		}
		imp_put_line(m, line, (size_t)n);
	}
	if (ret == 0 && ferror(f)) {
		fprintf(stderr, "osprey: import: %s: %s\n", e->path,
		    strerror(errno));
		ret = -1;
	}
	if (ret == 0 && m->bytes == 0) {
		fprintf(stderr, "osprey: import: %s: empty message\n",
		    e->path);
		ret = -1;
	}
	free(line);
	fclose(f);
	if (ret != 0) {
		imp_msg_abort(im);
		return ret;
	}
	return imp_msg_end(im);
}

static int
imp_maildir(struct imp *im, const char *path)
{
	struct md_entry *ents = NULL;
	size_t n = 0, cap = 0, i;
	char *letters[26] = { NULL }, *cur, *new;
	struct stat st;
	int ret = 0;

	if (asprintf(&cur, "%s/cur", path) == -1 ||
	    asprintf(&new, "%s/new", path) == -1)
		osp_fatal("import", "out of memory");
	if (stat(cur, &st) == -1 && stat(new, &st) == -1) {
		fprintf(stderr, "osprey: import: %s: not a maildir (no cur/ "
		    "or new/)\n", path);
		ret = -1;
	}
	md_read_keywords(path, letters);
	if (ret == 0 && (md_list(cur, &ents, &n, &cap) != 0 ||
	    md_list(new, &ents, &n, &cap) != 0))
		ret = -1;
	if (ret == 0)
		qsort(ents, n, sizeof(*ents), md_cmp);
	for (i = 0; ret == 0 && i < n; i++)
		ret = imp_maildir_one(im, &ents[i], letters);
	for (i = 0; i < n; i++)
		free(ents[i].path);
	for (i = 0; i < 26; i++)
		free(letters[i]);
	free(ents);
	free(cur);
	free(new);
	return ret;
}

/* ---- account and mailbox ------------------------------------------------ */

/* An account named in domains.yaml (beside the config), so that a typo
 * does not create a stray account. Without a domains.yaml, any name. */
static bool
tools_account_configured(struct osp_cli *cli, const char *cmd,
    const char *account)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_accounts *a;
	struct osp_pool *pool = osp_pool_new(NULL);
	const char *path = osp_accounts_path(pool, cli->config_file);
	bool ok = true;
	int r;

	r = osp_accounts_load(path, &a, &errs);
	if (r == OSP_OK) {
		if (osp_accounts_account(a, account) == NULL) {
			fprintf(stderr, "osprey: %s: account %s is not in %s\n",
			    cmd, account, path);
			ok = false;
		}
		osp_accounts_unref(a);
	} else if (r != -ENOENT) {
		fprintf(stderr, "%s\nosprey: %s: %s not usable\n",
		    errs.text.data != NULL ? errs.text.data : "", cmd, path);
		ok = false;
	}
	osp_conf_errs_deinit(&errs);
	osp_pool_free(pool);
	return ok;
}

static int
tools_open_account(struct osp_cli *cli, const char *cmd, const char *account,
    bool create, struct osp_store **store_r, struct osp_account **acc_r)
{
	const char *error;
	char *data_dir;
	int r;

	if ((data_dir = cli_tools_data_dir(cli)) == NULL)
		return -1;
	if (create && !tools_account_configured(cli, cmd, account)) {
		free(data_dir);
		return -1;
	}
	r = osp_store_open(data_dir, store_r, &error);
	if (r != OSP_OK) {
		fprintf(stderr, "osprey: %s: store %s: %s\n", cmd, data_dir,
		    error != NULL ? error : osp_strerror(r));
		free(data_dir);
		return -1;
	}
	free(data_dir);
	r = osp_account_open(*store_r, account, create, acc_r, &error);
	if (r != OSP_OK) {
		fprintf(stderr, "osprey: %s: account %s: %s\n", cmd, account,
		    r == -ENOENT ? "no such account" : error != NULL ? error :
		    osp_strerror(r));
		osp_store_close(*store_r);
		return -1;
	}
	return 0;
}

int
osp_cli_import(struct osp_cli *cli, int argc, char **argv)
{
	struct imp im;
	struct osp_mailbox mb;
	struct osp_pool *pool;
	const char *error, *env;
	bool mbox;
	size_t i;
	int r, ret;

	if (argc != 5 || (strcmp(argv[1], "mbox") != 0 &&
	    strcmp(argv[1], "maildir") != 0))
		return osp_cli_cmd_usage("import");
	mbox = strcmp(argv[1], "mbox") == 0;
	memset(&im, 0, sizeof(im));
	im.mailbox = argv[3];
	im.batch_max = IMPORT_BATCH;
	/* Tests commit smaller batches. */
	if ((env = getenv("OSPREY_IMPORT_BATCH")) != NULL && atoi(env) > 0)
		im.batch_max = (size_t)atoi(env);
	if (tools_open_account(cli, "import", argv[2], true, &im.store,
	    &im.acc) != 0)
		return 1;
	pool = osp_pool_new(NULL);
	r = osp_mailbox_get(im.acc, im.mailbox, pool, &mb, &error);
	if (r == -ENOENT) {
		r = osp_mailbox_create(im.acc, im.mailbox, 0, &im.mailbox_id,
		    &error);
		if (r == OSP_OK)
			printf("created mailbox %s\n", im.mailbox);
	} else if (r == OSP_OK)
		im.mailbox_id = mb.id;
	if (r != OSP_OK) {
		fprintf(stderr, "osprey: import: mailbox %s: %s\n", im.mailbox,
		    error != NULL ? error : osp_strerror(r));
		ret = 1;
		goto out;
	}
	im.batch = osp_calloc(im.batch_max, sizeof(*im.batch));
	r = mbox ? imp_mbox(&im, argv[4]) : imp_maildir(&im, argv[4]);
	/* What was read before a failure is committed: an import can be
	 * resumed from the message named in the error. */
	if (imp_flush(&im) != 0)
		r = -1;
	if (r != 0)
		fprintf(stderr, "osprey: import: stopped; %llu messages were "
		    "imported into %s\n", (unsigned long long)im.imported,
		    im.mailbox);
	ret = r == 0 ? 0 : 1;
	for (i = 0; i < im.nbatch; i++)
		imp_msg_free(&im.batch[i], true);
	free(im.batch);
out:
	osp_pool_free(pool);
	osp_account_unref(im.acc);
	osp_store_close(im.store);
	return ret;
}

/* ---- export ------------------------------------------------------------ */

struct exp_out {
	FILE		*out;
	bool		 mbox;		/* From_ escaping, Status */
	bool		 in_header;
	bool		 at_bol;	/* last byte written was '\n' */
	const struct osp_message *msg;
};

static void
exp_status_headers(struct exp_out *eo)
{
	const struct osp_message *m = eo->msg;
	size_t i;

	fprintf(eo->out, "Status: %sO\n",
	    (m->flags & OSP_FLAG_SEEN) ? "R" : "");
	if (m->flags & (OSP_FLAG_ANSWERED | OSP_FLAG_FLAGGED | OSP_FLAG_DRAFT |
	    OSP_FLAG_DELETED))
		fprintf(eo->out, "X-Status: %s%s%s%s\n",
		    (m->flags & OSP_FLAG_ANSWERED) ? "A" : "",
		    (m->flags & OSP_FLAG_FLAGGED) ? "F" : "",
		    (m->flags & OSP_FLAG_DRAFT) ? "T" : "",
		    (m->flags & OSP_FLAG_DELETED) ? "D" : "");
	if (m->keywords != NULL && m->keywords[0] != NULL) {
		fputs("X-Keywords:", eo->out);
		for (i = 0; m->keywords[i] != NULL; i++)
			fprintf(eo->out, " %s", m->keywords[i]);
		fputc('\n', eo->out);
	}
}

/* One line of prefix or file: CRLF -> LF, header end, mboxrd escaping. */
static void
exp_line(struct exp_out *eo, const char *line, size_t len)
{
	bool nl = len > 0 && line[len - 1] == '\n';
	size_t skip;

	if (nl) {
		len--;
		if (len > 0 && line[len - 1] == '\r')
			len--;
	}
	if (eo->mbox && eo->in_header && len == 0 && nl) {
		exp_status_headers(eo);
		eo->in_header = false;
	}
	if (eo->mbox) {
		for (skip = 0; skip < len && line[skip] == '>'; skip++)
			;
		if (is_from_line(line + skip, len - skip))
			fputc('>', eo->out);
	}
	fwrite(line, 1, len, eo->out);
	if (nl)
		fputc('\n', eo->out);
	eo->at_bol = nl || (len == 0 && eo->at_bol);
}

static int
exp_lines(struct exp_out *eo, FILE *in)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int ret;

	while ((n = getline(&line, &cap, in)) != -1)
		exp_line(eo, line, (size_t)n);
	ret = ferror(in) ? -1 : 0;
	free(line);
	return ret;
}

/* Writes prefix + file of one message. */
static int
exp_message(struct osp_account *acc, struct exp_out *eo,
    const struct osp_message *m, const char *what)
{
	const char *error;
	FILE *in;
	int fd, r;

	eo->msg = m;
	eo->in_header = true;
	eo->at_bol = true;
	if (m->prefix_len > 0) {
		if ((in = fmemopen((void *)(uintptr_t)m->prefix, m->prefix_len,
		    "r")) == NULL)
			osp_fatal("export", "fmemopen: %s", strerror(errno));
		exp_lines(eo, in);
		fclose(in);
	}
	r = osp_message_open(acc, m->id, &fd, &error);
	if (r != OSP_OK) {
		fprintf(stderr, "osprey: export: %s uid %u: %s\n", what, m->uid,
		    error != NULL ? error : osp_strerror(r));
		return -1;
	}
	if ((in = fdopen(fd, "r")) == NULL)
		osp_fatal("export", "fdopen: %s", strerror(errno));
	r = exp_lines(eo, in);
	fclose(in);
	if (r != 0) {
		fprintf(stderr, "osprey: export: %s uid %u: read: %s\n", what,
		    m->uid, strerror(errno));
		return -1;
	}
	if (eo->mbox && eo->in_header) {
		/* a message without body: the headers end here */
		if (!eo->at_bol)
			fputc('\n', eo->out);
		exp_status_headers(eo);
		eo->at_bol = true;
	}
	if (!eo->at_bol)
		fputc('\n', eo->out);
	return 0;
}

static FILE *
exp_create(const char *path)
{
	int fd;
	FILE *f;

	/* O_EXCL: export never overwrites. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1 || (f = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "osprey: export: %s: %s\n", path,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return NULL;
	}
	return f;
}

static int
exp_close(FILE *f, const char *path)
{
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		fprintf(stderr, "osprey: export: %s: %s\n", path,
		    strerror(errno));
		fclose(f);
		return -1;
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "osprey: export: %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

struct exp_mailbox {
	struct osp_account	*acc;
	const struct osp_mailbox *mb;
	const char		*dir;		/* maildir: its dir */
	FILE			*mbox;		/* mbox: the file */
	char			*letters[26];	/* maildir keywords */
	uint64_t		 n;
};

static char
exp_letter(struct exp_mailbox *em, const char *kw)
{
	int i;

	for (i = 0; i < 26; i++) {
		if (em->letters[i] == NULL) {
			em->letters[i] = osp_strdup(kw);
			return (char)('a' + i);
		}
		if (strcmp(em->letters[i], kw) == 0)
			return (char)('a' + i);
	}
	return '\0';
}

static int
exp_maildir_msg(struct exp_mailbox *em, const struct osp_message *m)
{
	struct exp_out eo = { 0 };
	struct timeval tv[2];
	char info[64], name[128], *path;
	char kl[27];
	size_t i, nk = 0;
	char c;
	int r;

	/* info flags in ASCII order: D F R S T, then keyword letters */
	snprintf(info, sizeof(info), "%s%s%s%s%s",
	    (m->flags & OSP_FLAG_DRAFT) ? "D" : "",
	    (m->flags & OSP_FLAG_FLAGGED) ? "F" : "",
	    (m->flags & OSP_FLAG_ANSWERED) ? "R" : "",
	    (m->flags & OSP_FLAG_SEEN) ? "S" : "",
	    (m->flags & OSP_FLAG_DELETED) ? "T" : "");
	for (i = 0; m->keywords != NULL && m->keywords[i] != NULL; i++) {
		if ((c = exp_letter(em, m->keywords[i])) == '\0') {
			fprintf(stderr, "osprey: export: %s uid %u: more than "
			    "26 keywords in the mailbox: %s not exported\n",
			    em->mb->name, m->uid, m->keywords[i]);
			continue;
		}
		if (memchr(kl, c, nk) == NULL)
			kl[nk++] = c;
	}
	/* letters sorted */
	for (i = 1; i < nk; i++) {
		size_t j = i;

		while (j > 0 && kl[j - 1] > kl[j]) {
			c = kl[j];
			kl[j] = kl[j - 1];
			kl[j - 1] = c;
			j--;
		}
	}
	kl[nk] = '\0';
	snprintf(name, sizeof(name), "%lld.M%010uP%lld.osprey:2,%s%s",
	    (long long)m->received, m->uid, (long long)m->id, info, kl);
	if (asprintf(&path, "%s/cur/%s", em->dir, name) == -1)
		osp_fatal("export", "out of memory");
	if ((eo.out = exp_create(path)) == NULL) {
		free(path);
		return -1;
	}
	r = exp_message(em->acc, &eo, m, em->mb->name);
	if (exp_close(eo.out, path) != 0)
		r = -1;
	/* Maildir readers take the internal date from the mtime. */
	tv[0].tv_sec = tv[1].tv_sec = (time_t)m->received;
	tv[0].tv_usec = tv[1].tv_usec = 0;
	if (r == 0 && utimes(path, tv) == -1)
		fprintf(stderr, "osprey: export: %s: utimes: %s\n", path,
		    strerror(errno));
	free(path);
	return r;
}

static int
exp_mbox_msg(struct exp_mailbox *em, const struct osp_message *m)
{
	struct exp_out eo = { 0 };
	char date[64];
	time_t t = (time_t)m->received;
	struct tm tm;
	int r;

	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	fprintf(em->mbox, "From MAILER-DAEMON %s\n", date);
	eo.out = em->mbox;
	eo.mbox = true;
	r = exp_message(em->acc, &eo, m, em->mb->name);
	/* RFC 4155 §2: a blank line separates messages. */
	fputc('\n', em->mbox);
	return r;
}

static int
exp_mailbox(struct osp_account *acc, const struct osp_mailbox *mb,
    const char *destdir, bool mbox)
{
	struct exp_mailbox em;
	struct osp_pool *pool;
	struct osp_message *list;
	struct osp_uid_range range;
	struct osp_uidset set;
	const char *error;
	char *path = NULL, *sub;
	size_t n, i;
	uint32_t first;
	int r, ret = 0;
	FILE *f;

	if (!cli_tools_safe_name(mb->name)) {
		fprintf(stderr, "osprey: export: mailbox %s: name not usable "
		    "as a path, skipped\n", mb->name);
		return -1;
	}
	memset(&em, 0, sizeof(em));
	em.acc = acc;
	em.mb = mb;
	if (mbox) {
		if (asprintf(&path, "%s/%s.mbox", destdir, mb->name) == -1)
			osp_fatal("export", "out of memory");
		sub = osp_strdup(path);
		*strrchr(sub, '/') = '\0';
		r = cli_tools_mkdirs(sub, 0700);
		free(sub);
		if (r != OSP_OK || (em.mbox = exp_create(path)) == NULL) {
			if (r != OSP_OK)
				fprintf(stderr, "osprey: export: %s: %s\n",
				    path, osp_strerror(r));
			free(path);
			return -1;
		}
	} else {
		if (asprintf(&path, "%s/%s", destdir, mb->name) == -1)
			osp_fatal("export", "out of memory");
		em.dir = path;
		for (i = 0; i < 3 && ret == 0; i++) {
			static const char *const sd[] = { "cur", "new", "tmp" };

			if (asprintf(&sub, "%s/%s", path, sd[i]) == -1)
				osp_fatal("export", "out of memory");
			if ((r = cli_tools_mkdirs(sub, 0700)) != OSP_OK) {
				fprintf(stderr, "osprey: export: %s: %s\n",
				    sub, osp_strerror(r));
				ret = -1;
			}
			free(sub);
		}
	}
	/* Listed a chunk of uids at a time: memory stays bounded however
	 * large the mailbox. */
	for (first = 1; ret == 0 && first < mb->uidnext;
	    first = range.last + 1) {
		range.first = first;
		range.last = mb->uidnext - 1 - first < EXPORT_CHUNK ?
		    mb->uidnext - 1 : first + EXPORT_CHUNK - 1;
		set.r = &range;
		set.n = 1;
		pool = osp_pool_new(NULL);
		r = osp_message_list(acc, mb->id, &set, OSP_MSG_WITH_PREFIX |
		    OSP_MSG_WITH_KEYWORDS, pool, &list, &n, &error);
		if (r != OSP_OK) {
			fprintf(stderr, "osprey: export: %s: %s\n", mb->name,
			    error != NULL ? error : osp_strerror(r));
			ret = -1;
		}
		for (i = 0; ret == 0 && i < n; i++) {
			ret = mbox ? exp_mbox_msg(&em, &list[i]) :
			    exp_maildir_msg(&em, &list[i]);
			em.n++;
		}
		osp_pool_free(pool);
		if (range.last == UINT32_MAX)
			break;
	}
	if (mbox && exp_close(em.mbox, path) != 0)
		ret = -1;
	if (!mbox && em.letters[0] != NULL) {
		if (asprintf(&sub, "%s/dovecot-keywords", em.dir) == -1)
			osp_fatal("export", "out of memory");
		if ((f = exp_create(sub)) == NULL)
			ret = -1;
		else {
			for (i = 0; i < 26 && em.letters[i] != NULL; i++)
				fprintf(f, "%zu %s\n", i, em.letters[i]);
			if (exp_close(f, sub) != 0)
				ret = -1;
		}
		free(sub);
	}
	for (i = 0; i < 26; i++)
		free(em.letters[i]);
	if (ret == 0)
		printf("exported %s: %llu messages\n", mb->name,
		    (unsigned long long)em.n);
	free(path);
	return ret;
}

int
osp_cli_export(struct osp_cli *cli, int argc, char **argv)
{
	struct osp_store *store;
	struct osp_account *acc;
	struct osp_mailbox *list, one;
	struct osp_pool *pool;
	const char *error;
	size_t n, i;
	bool mbox;
	int r, ret = 0;

	if ((argc != 4 && argc != 5) || (strcmp(argv[1], "mbox") != 0 &&
	    strcmp(argv[1], "maildir") != 0))
		return osp_cli_cmd_usage("export");
	mbox = strcmp(argv[1], "mbox") == 0;
	if (tools_open_account(cli, "export", argv[2], false, &store,
	    &acc) != 0)
		return 1;
	pool = osp_pool_new(NULL);
	if (argc == 5) {
		r = osp_mailbox_get(acc, argv[4], pool, &one, &error);
		list = &one;
		n = 1;
	} else
		r = osp_mailbox_list(acc, pool, &list, &n, &error);
	if (r != OSP_OK) {
		fprintf(stderr, "osprey: export: %s: %s\n",
		    argc == 5 ? argv[4] : argv[2],
		    r == -ENOENT ? "no such mailbox" : error != NULL ? error :
		    osp_strerror(r));
		ret = 1;
	} else if ((r = cli_tools_mkdirs(argv[3], 0700)) != OSP_OK) {
		fprintf(stderr, "osprey: export: %s: %s\n", argv[3],
		    osp_strerror(r));
		ret = 1;
	}
	for (i = 0; ret == 0 && i < n; i++)
		if (exp_mailbox(acc, &list[i], argv[3], mbox) != 0)
			ret = 1;
	osp_pool_free(pool);
	osp_account_unref(acc);
	osp_store_close(store);
	return ret;
}
