/* SPDX-License-Identifier: ISC */
/* The embedded store backend: one SQLite database per account (index.db,
 * WAL, synchronous=FULL) and immutable message files msg/<id/8192>/<id>. */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <osprey/buf.h>
#include <osprey/error.h>
#include <osprey/message.h>
#include <osprey/pool.h>
#include <osprey/str.h>

/*
 * Layout of index.db (schema version 1):
 *
 *   state        one row: the account-wide modseq counter, the next message
 *                file id and the last uidvalidity handed out.
 *   mailboxes    id (never reused: AUTOINCREMENT), name (unique among live
 *                mailboxes), special_use, uidvalidity, uidnext, modseq,
 *                createseq, the counts, and `removed`: a deleted mailbox
 *                stays as a tombstone with the modseq of its deletion.
 *   subscriptions names (may name mailboxes that do not exist).
 *   messages     one row per (mailbox, uid), including expunged tombstones
 *                (expunged = 1, modseq of the expunge). `id` names the
 *                file; a move turns the row into the destination's row and
 *                leaves a light tombstone row with the same id at the old
 *                (mailbox, uid), so several rows can share an id. Keywords
 *                are one text column: sorted case-insensitively, unique,
 *                separated by one space (keywords are IMAP atoms and cannot
 *                contain spaces).
 *   threads      Message-ID -> thread id, filled at append from the
 *                message's own id and its References/In-Reply-To ids, so a
 *                reply (or a parent arriving after its reply) joins.
 *
 * Files of expunged messages are NOT deleted here: DESIGN §5 erases them
 * only after every session has seen the expunge (a session may still FETCH
 * a message it was not told about). A later cleanup pass removes files
 * whose id has no live row (SELECT id FROM messages GROUP BY id HAVING
 * max(expunged = 0) = 0) once no session predates the expunge's modseq.
 *
 * Error text: backend errors are formatted into a thread-local buffer that
 * stays valid until the next store call on the same thread.
 */

#define SQ_FILES_PER_DIR	8192
#define SQ_NAME_MAX		255
#define SQ_KEYWORD_MAX		255
#define SQ_PREFIX_MAX		(16 * 1024 * 1024)
#define SQ_USE_SETTABLE		(OSP_USE_SENT | OSP_USE_ARCHIVE | \
	OSP_USE_TRASH | OSP_USE_DRAFTS | OSP_USE_JUNK)
#define SQ_FLAGS_ALL		(OSP_FLAG_SEEN | OSP_FLAG_ANSWERED | \
	OSP_FLAG_FLAGGED | OSP_FLAG_DELETED | OSP_FLAG_DRAFT)

/* Schema migrations: entry i upgrades user_version i to i + 1, each in its
 * own transaction on open. A new version is one more string here. */
static const char *const sq_migrations[] = {
	/* v1: initial schema */
	"CREATE TABLE state ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  modseq INTEGER NOT NULL,"
	"  next_msg_id INTEGER NOT NULL,"
	"  uidvalidity INTEGER NOT NULL);"
	"INSERT INTO state VALUES (1, 1, 1, 0);"
	"CREATE TABLE mailboxes ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL,"
	"  special_use INTEGER NOT NULL DEFAULT 0,"
	"  uidvalidity INTEGER NOT NULL,"
	"  uidnext INTEGER NOT NULL DEFAULT 1,"
	"  modseq INTEGER NOT NULL,"
	"  createseq INTEGER NOT NULL,"
	"  total INTEGER NOT NULL DEFAULT 0,"
	"  unread INTEGER NOT NULL DEFAULT 0,"
	"  unseen INTEGER NOT NULL DEFAULT 0,"
	"  deleted INTEGER NOT NULL DEFAULT 0,"
	"  size INTEGER NOT NULL DEFAULT 0,"
	"  removed INTEGER NOT NULL DEFAULT 0);"
	"CREATE UNIQUE INDEX mailboxes_name ON mailboxes(name)"
	"  WHERE removed = 0;"
	"CREATE TABLE subscriptions (name TEXT PRIMARY KEY) WITHOUT ROWID;"
	"CREATE TABLE messages ("
	"  rowid INTEGER PRIMARY KEY,"
	"  id INTEGER NOT NULL,"
	"  mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),"
	"  uid INTEGER NOT NULL,"
	"  modseq INTEGER NOT NULL,"
	"  createseq INTEGER NOT NULL,"
	"  flags INTEGER NOT NULL DEFAULT 0,"
	"  keywords TEXT,"
	"  size INTEGER NOT NULL,"
	"  received INTEGER NOT NULL,"
	"  savedate INTEGER NOT NULL,"
	"  prefix BLOB,"
	"  structure BLOB,"
	"  preview TEXT,"
	"  message_id TEXT,"
	"  thread_id INTEGER NOT NULL DEFAULT 0,"
	"  base_subject TEXT,"
	"  remote_ip TEXT,"
	"  mail_from_domain TEXT,"
	"  expunged INTEGER NOT NULL DEFAULT 0,"
	"  UNIQUE (mailbox_id, uid));"
	"CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);"
	"CREATE INDEX messages_id ON messages(id);"
	"CREATE INDEX messages_thread ON messages(thread_id);"
	"CREATE TABLE threads ("
	"  message_id TEXT PRIMARY KEY,"
	"  thread_id INTEGER NOT NULL) WITHOUT ROWID;",
};
#define SQ_SCHEMA_VERSION \
	((int)(sizeof(sq_migrations) / sizeof(sq_migrations[0])))

#define SQ_MB_COLS \
	"m.id, m.name, m.special_use, m.uidvalidity, m.uidnext, m.modseq, " \
	"m.total, m.unread, m.unseen, m.deleted, m.size, " \
	"EXISTS (SELECT 1 FROM subscriptions s WHERE s.name = m.name) "
#define SQ_MSG_COLS \
	"id, uid, modseq, createseq, flags, keywords, size, received, " \
	"savedate, thread_id, expunged, prefix, structure, preview, " \
	"mailbox_id "

enum sq_st {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
	ST_STATE_GET, ST_STATE_MODSEQ, ST_STATE_NEXTID, ST_STATE_UIDV,
	ST_MB_BY_NAME, ST_MB_BY_ID, ST_MB_LIST, ST_MB_INSERT, ST_MB_DELTA,
	ST_MB_UIDNEXT, ST_MB_RENAME, ST_MB_CHILDREN, ST_MB_REMOVE,
	ST_MB_SPECIAL, ST_MB_COUNT_ALL,
	ST_SUB_ADD, ST_SUB_DEL, ST_SUB_LIST, ST_SUB_EXISTS,
	ST_MSG_INSERT, ST_MSG_RANGE, ST_MSG_LIST, ST_MSG_CHANGES,
	ST_MSG_SETFLAGS, ST_MSG_EXPUNGE, ST_MSG_MOVE, ST_MSG_TOMB,
	ST_MSG_COPY, ST_MSG_EXISTS_ID,
	ST_THREAD_GET, ST_THREAD_PUT, ST_SIZE,
	ST_COUNT
};

static const char *const sq_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_STATE_GET] = "SELECT modseq, next_msg_id, uidvalidity FROM state "
	    "WHERE id = 1",
	[ST_STATE_MODSEQ] = "UPDATE state SET modseq = ?1 WHERE id = 1",
	[ST_STATE_NEXTID] = "UPDATE state SET next_msg_id = ?1 WHERE id = 1",
	[ST_STATE_UIDV] = "UPDATE state SET uidvalidity = ?1 WHERE id = 1",
	[ST_MB_BY_NAME] = "SELECT " SQ_MB_COLS "FROM mailboxes m "
	    "WHERE m.name = ?1 AND m.removed = 0",
	[ST_MB_BY_ID] = "SELECT " SQ_MB_COLS "FROM mailboxes m "
	    "WHERE m.id = ?1 AND m.removed = 0",
	[ST_MB_LIST] = "SELECT " SQ_MB_COLS "FROM mailboxes m "
	    "WHERE m.removed = 0 ORDER BY m.name",
	[ST_MB_INSERT] = "INSERT INTO mailboxes (name, special_use, "
	    "uidvalidity, uidnext, modseq, createseq) "
	    "VALUES (?1, ?2, ?3, 1, ?4, ?4)",
	[ST_MB_DELTA] = "UPDATE mailboxes SET total = total + ?1, "
	    "unread = unread + ?2, unseen = unseen + ?2, "
	    "deleted = deleted + ?3, size = size + ?4, modseq = ?5 "
	    "WHERE id = ?6",
	[ST_MB_UIDNEXT] = "UPDATE mailboxes SET uidnext = ?1, modseq = ?2 "
	    "WHERE id = ?3",
	[ST_MB_RENAME] = "UPDATE mailboxes SET name = ?1, modseq = ?2 "
	    "WHERE id = ?3",
	/* Children of ?1: names between "?1/" and "?10" ('0' follows '/'). */
	[ST_MB_CHILDREN] = "SELECT id, name FROM mailboxes WHERE removed = 0 "
	    "AND name > ?1 || '/' AND name < ?1 || '0' ORDER BY name",
	[ST_MB_REMOVE] = "UPDATE mailboxes SET removed = 1, modseq = ?1, "
	    "total = 0, unread = 0, unseen = 0, deleted = 0, size = 0 "
	    "WHERE id = ?2",
	[ST_MB_SPECIAL] = "UPDATE mailboxes SET special_use = ?1, "
	    "modseq = ?2 WHERE id = ?3",
	[ST_MB_COUNT_ALL] = "SELECT count(*) FROM mailboxes",
	[ST_SUB_ADD] = "INSERT OR IGNORE INTO subscriptions (name) "
	    "VALUES (?1)",
	[ST_SUB_DEL] = "DELETE FROM subscriptions WHERE name = ?1",
	[ST_SUB_LIST] = "SELECT name FROM subscriptions ORDER BY name",
	[ST_SUB_EXISTS] = "SELECT 1 FROM subscriptions WHERE name = ?1",
	[ST_MSG_INSERT] = "INSERT INTO messages (id, mailbox_id, uid, modseq, "
	    "createseq, flags, keywords, size, received, savedate, prefix, "
	    "structure, preview, message_id, thread_id, base_subject, "
	    "remote_ip, mail_from_domain) VALUES (?1, ?2, ?3, ?4, ?4, ?5, "
	    "?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
	[ST_MSG_RANGE] = "SELECT rowid, id, uid, modseq, flags, keywords, "
	    "size FROM messages WHERE mailbox_id = ?1 AND expunged = 0 AND "
	    "uid BETWEEN ?2 AND ?3 ORDER BY uid",
	[ST_MSG_LIST] = "SELECT " SQ_MSG_COLS "FROM messages "
	    "WHERE mailbox_id = ?1 AND expunged = 0 AND uid BETWEEN ?2 AND ?3 "
	    "ORDER BY uid",
	[ST_MSG_CHANGES] = "SELECT " SQ_MSG_COLS "FROM messages "
	    "WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid",
	[ST_MSG_SETFLAGS] = "UPDATE messages SET flags = ?1, keywords = ?2, "
	    "modseq = ?3 WHERE rowid = ?4",
	[ST_MSG_EXPUNGE] = "UPDATE messages SET expunged = 1, modseq = ?1 "
	    "WHERE rowid = ?2",
	[ST_MSG_MOVE] = "UPDATE messages SET mailbox_id = ?1, uid = ?2, "
	    "modseq = ?3, createseq = ?3, savedate = ?4 WHERE rowid = ?5",
	[ST_MSG_TOMB] = "INSERT INTO messages (id, mailbox_id, uid, modseq, "
	    "createseq, flags, size, received, savedate, expunged) "
	    "VALUES (?1, ?2, ?3, ?4, ?4, 0, 0, 0, 0, 1)",
	[ST_MSG_COPY] = "INSERT INTO messages (id, mailbox_id, uid, modseq, "
	    "createseq, flags, keywords, size, received, savedate, prefix, "
	    "structure, preview, message_id, thread_id, base_subject, "
	    "remote_ip, mail_from_domain) SELECT ?1, ?2, ?3, ?4, ?4, flags, "
	    "keywords, size, received, ?5, prefix, structure, preview, "
	    "message_id, thread_id, base_subject, remote_ip, "
	    "mail_from_domain FROM messages WHERE rowid = ?6",
	[ST_MSG_EXISTS_ID] = "SELECT 1 FROM messages WHERE id = ?1 LIMIT 1",
	[ST_THREAD_GET] = "SELECT thread_id FROM threads WHERE "
	    "message_id = ?1",
	[ST_THREAD_PUT] = "INSERT OR IGNORE INTO threads (message_id, "
	    "thread_id) VALUES (?1, ?2)",
	[ST_SIZE] = "SELECT coalesce(sum(size), 0) FROM mailboxes "
	    "WHERE removed = 0",
};

/* The per-account backend state (acc->backend). */
struct sq_acct {
	sqlite3		*db;
	sqlite3_stmt	*st[ST_COUNT];	/* prepared on first use */
	char		*dir;
};

/* One write transaction: the modseq it assigns, the files it linked (to
 * remove on rollback), the directories to fsync before COMMIT and the
 * mailboxes whose counts changed. */
struct sq_tx {
	struct osp_account	*acc;
	struct sq_acct		*b;
	uint64_t		 modseq;	/* 0 until the first change */
	char			**files;
	size_t			 nfiles;
	int64_t			*dirs;
	size_t			 ndirs;
	bool			 msgdir_changed;
	/* Group commit: one syncfs(2) before COMMIT makes every file and
	 * directory of the batch durable at once, instead of one fsync per
	 * message file and per directory (see sq_tx_commit). */
	bool			 batch_sync;
	int64_t			*mbs;
	size_t			 nmbs;
};

/* A mailbox as the backend needs it internally. */
struct sq_mb {
	int64_t		 id;
	uint32_t	 uidnext;
	uint32_t	 special_use;
};

/* A message row selected for a change. */
struct sq_row {
	int64_t		 rowid;
	int64_t		 id;
	uint32_t	 uid;
	uint64_t	 modseq;
	uint32_t	 flags;
	char		*keywords;	/* heap, may be NULL */
	int64_t		 size;
};

static __thread char sq_errbuf[512];

static int
sq_fail(const char **error_r, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
sq_fail(const char **error_r, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sq_errbuf, sizeof(sq_errbuf), fmt, ap);
	va_end(ap);
	if (error_r != NULL)
		*error_r = sq_errbuf;
	return code;
}

/* Maps the database's last error to a code with text. */
static int
sq_dberr(struct sq_acct *b, const char **error_r, const char *what)
{
	int rc = sqlite3_errcode(b->db), code;

	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		code = OSP_ETEMP;
		break;
	case SQLITE_FULL:
		code = -ENOSPC;
		break;
	case SQLITE_NOMEM:
		code = -ENOMEM;
		break;
	case SQLITE_CONSTRAINT:
		code = -EEXIST;
		break;
	default:
		code = OSP_ERROR;
		break;
	}
	return sq_fail(error_r, code, "index.db: %s: %s", what,
	    sqlite3_errmsg(b->db));
}

/* The cached statement, reset and unbound, ready to bind. */
static sqlite3_stmt *
sq_st(struct sq_acct *b, enum sq_st which)
{
	sqlite3_stmt *st = b->st[which];

	if (st == NULL) {
		if (sqlite3_prepare_v3(b->db, sq_sql[which], -1,
		    SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
			return NULL;
		b->st[which] = st;
	} else {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
	return st;
}

/* Runs a statement that returns no rows; binds int64 arguments. */
static int
sq_exec(struct sq_acct *b, enum sq_st which, const char **error_r, int n,
    ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int i, rc;

	if ((st = sq_st(b, which)) == NULL)
		return sq_dberr(b, error_r, "prepare");
	va_start(ap, n);
	for (i = 1; i <= n; i++)
		sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
	va_end(ap);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return sq_dberr(b, error_r, sq_sql[which]);
	return OSP_OK;
}

static const char *
sq_col_text(sqlite3_stmt *st, int col, struct osp_pool *pool)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	if (t == NULL || pool == NULL)
		return NULL;
	return osp_pstrdup(pool, (const char *)t);
}

/* ---- names, keywords, files ----------------------------------------- */

static bool
sq_utf8_valid(const unsigned char *s)
{
	size_t n;

	for (; *s != '\0'; s += n)
		if ((n = osp_utf8_decode(s, SIZE_MAX, NULL)) == 0)
			return false;
	return true;
}

/*
 * Checks a mailbox name (store.h rules) and copies it to out (SQ_NAME_MAX
 * + 1 bytes) with a first component spelled like INBOX in any case written
 * "Inbox" (RFC 9051 §5.1: INBOX is case-insensitive, also as a parent).
 */
static int
sq_name_norm(const char *name, char *out, const char **error_r)
{
	size_t len = strlen(name), i;

	if (len == 0 || len > SQ_NAME_MAX)
		return sq_fail(error_r, -EINVAL, "mailbox name empty or longer "
		    "than %d bytes", SQ_NAME_MAX);
	if (name[0] == OSP_MBOX_SEP || name[len - 1] == OSP_MBOX_SEP)
		return sq_fail(error_r, -EINVAL, "mailbox name starts or ends "
		    "with '/'");
	for (i = 0; i < len; i++) {
		unsigned char c = name[i];

		if (c < 0x20 || c == 0x7f)
			return sq_fail(error_r, -EINVAL, "mailbox name has a "
			    "control character");
		if (c == OSP_MBOX_SEP && name[i + 1] == OSP_MBOX_SEP)
			return sq_fail(error_r, -EINVAL, "mailbox name has an "
			    "empty component");
	}
	if (!sq_utf8_valid((const unsigned char *)name))
		return sq_fail(error_r, -EINVAL, "mailbox name is not UTF-8");
	memcpy(out, name, len + 1);
	if (strncasecmp(out, "inbox", 5) == 0 &&
	    (out[5] == '\0' || out[5] == OSP_MBOX_SEP))
		memcpy(out, "Inbox", 5);
	return OSP_OK;
}

/* IMAP keywords are atoms (RFC 9051 §9: flag-keyword = atom) and must not
 * look like system flags. */
static bool
sq_keyword_valid(const char *k)
{
	size_t len = strlen(k);

	if (len == 0 || len > SQ_KEYWORD_MAX || k[0] == '\\')
		return false;
	for (; *k != '\0'; k++) {
		unsigned char c = *k;

		if (c <= 0x20 || c == 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

static int
sq_kw_cmp(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Applies mode with kw (NULL-terminated or NULL) to the stored keyword
 * text `old` (may be NULL) and writes the normalized result to out
 * (empty when none): sorted, unique case-insensitively, space-separated.
 */
static int
sq_kw_apply(const char *old, enum osp_store_mode mode,
    const char *const *kw, struct osp_buf *out, const char **error_r)
{
	const char **v = NULL;
	char *copy = NULL, *p, *tok;
	size_t n = 0, cap = 0, i, j;
	int ret = OSP_OK;

	osp_buf_reset(out);
	if (mode != OSP_STORE_SET && old != NULL) {
		copy = osp_strdup(old);
		for (tok = strtok_r(copy, " ", &p); tok != NULL;
		    tok = strtok_r(NULL, " ", &p)) {
			if (n == cap) {
				cap = cap ? cap * 2 : 8;
				v = osp_reallocarray(v, cap, sizeof(*v));
			}
			v[n++] = tok;
		}
	}
	for (i = 0; kw != NULL && kw[i] != NULL; i++) {
		if (!sq_keyword_valid(kw[i])) {
			ret = sq_fail(error_r, -EINVAL, "invalid keyword");
			goto out;
		}
		if (mode == OSP_STORE_REMOVE) {
			for (j = 0; j < n; j++)
				if (strcasecmp(v[j], kw[i]) == 0)
					v[j--] = v[--n];
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			v = osp_reallocarray(v, cap, sizeof(*v));
		}
		v[n++] = kw[i];
	}
	if (n > 0)
		qsort(v, n, sizeof(*v), sq_kw_cmp);
	for (i = 0; i < n; i++) {
		if (i > 0 && strcasecmp(v[i - 1], v[i]) == 0)
			continue;
		if (out->len > 0)
			osp_buf_putc(out, ' ');
		osp_buf_puts(out, v[i]);
	}
out:
	osp_free(v);
	osp_free(copy);
	return ret;
}

/* Splits stored keywords into a NULL-terminated array from pool. */
static const char **
sq_kw_split(const char *text, struct osp_pool *pool)
{
	const char **v;
	char *copy, *p, *tok;
	size_t n = 1, i = 0;
	const char *s;

	if (text == NULL || *text == '\0' || pool == NULL)
		return NULL;
	for (s = text; *s != '\0'; s++)
		if (*s == ' ')
			n++;
	v = osp_pcalloc(pool, n + 1, sizeof(*v));
	copy = osp_pstrdup(pool, text);
	for (tok = strtok_r(copy, " ", &p); tok != NULL && i < n;
	    tok = strtok_r(NULL, " ", &p))
		v[i++] = tok;
	return v;
}

static void
sq_msg_dir(const struct sq_acct *b, int64_t dir, char *buf, size_t size)
{
	snprintf(buf, size, "%s/msg/%" PRId64, b->dir, dir);
}

static void
sq_msg_path(const struct sq_acct *b, int64_t id, char *buf, size_t size)
{
	snprintf(buf, size, "%s/msg/%" PRId64 "/%" PRId64, b->dir,
	    id / SQ_FILES_PER_DIR, id);
}

static int
sq_fsync_path(const char *path, const char **error_r)
{
	int fd;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return sq_fail(error_r, -errno, "open %s: %s", path,
		    strerror(errno));
	if (fsync(fd) == -1) {
		int e = errno;

		close(fd);
		return sq_fail(error_r, -e, "fsync %s: %s", path, strerror(e));
	}
	close(fd);
	return OSP_OK;
}

/* Copies src_fd (from offset 0) into a new file at dst and fsyncs it. */
static int
sq_copy_file(int src_fd, const char *dst, const char **error_r)
{
	char buf[65536];
	ssize_t r;
	int fd, e;

	if ((fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) ==
	    -1)
		return sq_fail(error_r, -errno, "create %s: %s", dst,
		    strerror(errno));
	if (lseek(src_fd, 0, SEEK_SET) == -1)
		goto fail;
	while ((r = read(src_fd, buf, sizeof(buf))) != 0) {
		char *p = buf;

		if (r == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		while (r > 0) {
			ssize_t w = write(fd, p, (size_t)r);

			if (w == -1) {
				if (errno == EINTR)
					continue;
				goto fail;
			}
			p += w;
			r -= w;
		}
	}
	if (fsync(fd) == -1)
		goto fail;
	close(fd);
	return OSP_OK;
fail:
	e = errno;
	close(fd);
	unlink(dst);
	return sq_fail(error_r, -e, "copy to %s: %s", dst, strerror(e));
}

/* ---- transactions ------------------------------------------------------ */

static int
sq_tx_begin(struct osp_account *acc, struct sq_tx *tx, const char **error_r)
{
	memset(tx, 0, sizeof(*tx));
	tx->acc = acc;
	tx->b = acc->backend;
	return sq_exec(tx->b, ST_BEGIN, error_r, 0);
}

static void
sq_tx_free(struct sq_tx *tx)
{
	size_t i;

	for (i = 0; i < tx->nfiles; i++)
		osp_free(tx->files[i]);
	osp_free(tx->files);
	osp_free(tx->dirs);
	osp_free(tx->mbs);
	tx->files = NULL;
	tx->dirs = tx->mbs = NULL;
}

/* Rolls back and removes the files this transaction linked: no committed
 * row references them. Returns ret. */
static int
sq_tx_rollback(struct sq_tx *tx, int ret)
{
	size_t i;

	sq_exec(tx->b, ST_ROLLBACK, NULL, 0);
	for (i = 0; i < tx->nfiles; i++)
		unlink(tx->files[i]);
	sq_tx_free(tx);
	return ret;
}

/* The modseq of this transaction: the account counter + 1, taken once. */
static int
sq_tx_modseq(struct sq_tx *tx, uint64_t *modseq_r, const char **error_r)
{
	sqlite3_stmt *st;
	int ret;

	if (tx->modseq == 0) {
		if ((st = sq_st(tx->b, ST_STATE_GET)) == NULL)
			return sq_dberr(tx->b, error_r, "prepare");
		if (sqlite3_step(st) != SQLITE_ROW)
			return sq_dberr(tx->b, error_r, "state");
		tx->modseq = (uint64_t)sqlite3_column_int64(st, 0) + 1;
		sqlite3_reset(st);
		if ((ret = sq_exec(tx->b, ST_STATE_MODSEQ, error_r, 1,
		    (int64_t)tx->modseq)) != OSP_OK) {
			tx->modseq = 0;
			return ret;
		}
	}
	*modseq_r = tx->modseq;
	return OSP_OK;
}

/* Adds to a mailbox's counts and stamps it with the transaction's modseq;
 * the mailbox gets one OSP_CHANGE_MAILBOX_COUNTS at commit. */
static int
sq_tx_counts(struct sq_tx *tx, int64_t mbid, int64_t dtotal, int64_t dunread,
    int64_t ddeleted, int64_t dsize, const char **error_r)
{
	uint64_t modseq;
	size_t i;
	int ret;

	if ((ret = sq_tx_modseq(tx, &modseq, error_r)) != OSP_OK)
		return ret;
	if ((ret = sq_exec(tx->b, ST_MB_DELTA, error_r, 6, dtotal, dunread,
	    ddeleted, dsize, (int64_t)modseq, mbid)) != OSP_OK)
		return ret;
	for (i = 0; i < tx->nmbs; i++)
		if (tx->mbs[i] == mbid)
			return OSP_OK;
	tx->mbs = osp_reallocarray(tx->mbs, tx->nmbs + 1, sizeof(*tx->mbs));
	tx->mbs[tx->nmbs++] = mbid;
	return OSP_OK;
}

/* Count deltas of a message going from flags a to flags b. */
static int64_t
sq_unread(uint32_t f)
{
	return (f & OSP_FLAG_SEEN) ? 0 : 1;
}

static int64_t
sq_deleted(uint32_t f)
{
	return (f & OSP_FLAG_DELETED) ? 1 : 0;
}

/*
 * Puts message file `id` in place as a new name of src (link(2); a copy
 * when the file systems differ or links are refused), remembering it for
 * rollback and its directory for the fsync before commit. src_fd (or -1)
 * serves the copy fallback.
 */
static int
sq_tx_place(struct sq_tx *tx, const char *src, int src_fd, int64_t id,
    const char **error_r)
{
	char dir[PATH_MAX], dst[PATH_MAX];
	int64_t d = id / SQ_FILES_PER_DIR;
	size_t i;
	int ret, fd;

	sq_msg_dir(tx->b, d, dir, sizeof(dir));
	if (mkdir(dir, 0700) == 0)
		tx->msgdir_changed = true;
	else if (errno != EEXIST)
		return sq_fail(error_r, -errno, "mkdir %s: %s", dir,
		    strerror(errno));
	sq_msg_path(tx->b, id, dst, sizeof(dst));
	if (link(src, dst) == -1) {
		if (errno == EEXIST) {
			/* Ids come from the committed counter, so a file at a
			 * not-yet-committed id is a leftover of a transaction
			 * that died before COMMIT: nothing references it. */
			unlink(dst);
			if (link(src, dst) == 0)
				goto linked;
		}
		if (errno != EXDEV && errno != EMLINK && errno != EPERM)
			return sq_fail(error_r, -errno, "link %s: %s", dst,
			    strerror(errno));
		fd = src_fd;
		if (fd == -1 && (fd = open(src, O_RDONLY | O_CLOEXEC)) == -1)
			return sq_fail(error_r, -errno, "open %s: %s", src,
			    strerror(errno));
		ret = sq_copy_file(fd, dst, error_r);
		if (fd != src_fd)
			close(fd);
		if (ret != OSP_OK)
			return ret;
	}
linked:
	tx->files = osp_reallocarray(tx->files, tx->nfiles + 1,
	    sizeof(*tx->files));
	tx->files[tx->nfiles++] = osp_strdup(dst);
	for (i = 0; i < tx->ndirs; i++)
		if (tx->dirs[i] == d)
			return OSP_OK;
	tx->dirs = osp_reallocarray(tx->dirs, tx->ndirs + 1,
	    sizeof(*tx->dirs));
	tx->dirs[tx->ndirs++] = d;
	return OSP_OK;
}

/* Makes the linked files' names durable, then commits (DESIGN §5: files
 * and directories are fsynced before the transaction referencing them
 * commits). On failure everything is rolled back. */
static int
sq_tx_commit(struct sq_tx *tx, const char **error_r)
{
	char path[PATH_MAX];
	size_t i;
	int fd, ret;

	if (tx->batch_sync && tx->nfiles > 0) {
		/* Linked files are on the account's file system (link(2)
		 * needs it; the copy fallback writes there too), so one
		 * syncfs covers their data and the directories naming them. */
		fd = open(tx->b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd == -1 || syncfs(fd) == -1) {
			ret = sq_fail(error_r, -errno, "syncfs %s: %s",
			    tx->b->dir, strerror(errno));
			if (fd != -1)
				close(fd);
			return sq_tx_rollback(tx, ret);
		}
		close(fd);
	}
	for (i = 0; !tx->batch_sync && i < tx->ndirs; i++) {
		sq_msg_dir(tx->b, tx->dirs[i], path, sizeof(path));
		if ((ret = sq_fsync_path(path, error_r)) != OSP_OK)
			return sq_tx_rollback(tx, ret);
	}
	if (tx->msgdir_changed && !tx->batch_sync) {
		snprintf(path, sizeof(path), "%s/msg", tx->b->dir);
		if ((ret = sq_fsync_path(path, error_r)) != OSP_OK)
			return sq_tx_rollback(tx, ret);
	}
	for (i = 0; i < tx->nmbs; i++)
		store_change_add(tx->acc, OSP_CHANGE_MAILBOX_COUNTS,
		    tx->mbs[i], 0, tx->modseq, 0, NULL, NULL);
	if ((ret = sq_exec(tx->b, ST_COMMIT, error_r, 0)) != OSP_OK)
		return sq_tx_rollback(tx, ret);
	sq_tx_free(tx);
	return OSP_OK;
}

/* Ends a transaction: commit when ret is OSP_OK, else roll back. */
static int
sq_tx_end(struct sq_tx *tx, int ret, const char **error_r)
{
	if (ret != OSP_OK)
		return sq_tx_rollback(tx, ret);
	return sq_tx_commit(tx, error_r);
}

/* ---- mailboxes --------------------------------------------------------- */

static void
sq_mb_fill(sqlite3_stmt *st, struct osp_pool *pool, struct osp_mailbox *mb)
{
	memset(mb, 0, sizeof(*mb));
	mb->id = sqlite3_column_int64(st, 0);
	mb->name = sq_col_text(st, 1, pool);
	mb->special_use = (uint32_t)sqlite3_column_int64(st, 2);
	mb->uidvalidity = (uint32_t)sqlite3_column_int64(st, 3);
	mb->uidnext = (uint32_t)sqlite3_column_int64(st, 4);
	mb->modseq = (uint64_t)sqlite3_column_int64(st, 5);
	mb->total = (uint32_t)sqlite3_column_int64(st, 6);
	mb->unread = (uint32_t)sqlite3_column_int64(st, 7);
	mb->unseen = (uint32_t)sqlite3_column_int64(st, 8);
	mb->deleted = (uint32_t)sqlite3_column_int64(st, 9);
	mb->size = (uint64_t)sqlite3_column_int64(st, 10);
	mb->subscribed = sqlite3_column_int(st, 11) != 0;
}

/* Looks a live mailbox up by (normalized) name, or by id when !name. */
static int
sq_mb_find(struct sq_acct *b, const char *name, int64_t id,
    struct osp_pool *pool, struct osp_mailbox *mb, const char **error_r)
{
	sqlite3_stmt *st;
	int rc;

	if ((st = sq_st(b, name != NULL ? ST_MB_BY_NAME : ST_MB_BY_ID)) ==
	    NULL)
		return sq_dberr(b, error_r, "prepare");
	if (name != NULL)
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		sq_mb_fill(st, pool, mb);
		sqlite3_reset(st);
		return OSP_OK;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_dberr(b, error_r, "mailbox lookup");
	return sq_fail(error_r, -ENOENT, "no such mailbox");
}

/* A new uidvalidity: the time, but always above the previous one handed
 * out in this account (RFC 9051 §2.3.1.1: a recreated mailbox of the same
 * name must get a different value), never 0. */
static int
sq_uidvalidity(struct sq_acct *b, uint32_t *uidv_r, const char **error_r)
{
	sqlite3_stmt *st;
	uint32_t last, v;

	if ((st = sq_st(b, ST_STATE_GET)) == NULL)
		return sq_dberr(b, error_r, "prepare");
	if (sqlite3_step(st) != SQLITE_ROW)
		return sq_dberr(b, error_r, "state");
	last = (uint32_t)sqlite3_column_int64(st, 2);
	sqlite3_reset(st);
	v = (uint32_t)time(NULL);
	if (v <= last)
		v = last + 1;
	if (v == 0)
		v = 1;
	*uidv_r = v;
	return sq_exec(b, ST_STATE_UIDV, error_r, 1, (int64_t)v);
}

/* Inserts a mailbox (name normalized, known not to exist). */
static int
sq_mb_insert(struct sq_tx *tx, const char *name, uint32_t special_use,
    int64_t *id_r, const char **error_r)
{
	sqlite3_stmt *st;
	uint64_t modseq;
	uint32_t uidv = 0;
	int ret;

	if ((ret = sq_tx_modseq(tx, &modseq, error_r)) != OSP_OK ||
	    (ret = sq_uidvalidity(tx->b, &uidv, error_r)) != OSP_OK)
		return ret;
	if ((st = sq_st(tx->b, ST_MB_INSERT)) == NULL)
		return sq_dberr(tx->b, error_r, "prepare");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, special_use);
	sqlite3_bind_int64(st, 3, uidv);
	sqlite3_bind_int64(st, 4, (int64_t)modseq);
	if (sqlite3_step(st) != SQLITE_DONE) {
		ret = sq_dberr(tx->b, error_r, "create mailbox");
		sqlite3_reset(st);
		return ret;
	}
	sqlite3_reset(st);
	*id_r = sqlite3_last_insert_rowid(tx->b->db);
	store_change_add(tx->acc, OSP_CHANGE_MAILBOX_ADD, *id_r, 0, modseq, 0,
	    name, NULL);
	return OSP_OK;
}

/* Creates the missing parents of name (normalized). */
static int
sq_mb_parents(struct sq_tx *tx, const char *name, const char **error_r)
{
	char parent[SQ_NAME_MAX + 1];
	struct osp_mailbox mb;
	const char *p;
	int64_t id;
	int ret;

	for (p = strchr(name, OSP_MBOX_SEP); p != NULL;
	    p = strchr(p + 1, OSP_MBOX_SEP)) {
		memcpy(parent, name, (size_t)(p - name));
		parent[p - name] = '\0';
		ret = sq_mb_find(tx->b, parent, 0, NULL, &mb, error_r);
		if (ret == -ENOENT)
			ret = sq_mb_insert(tx, parent, 0, &id, error_r);
		if (ret != OSP_OK)
			return ret;
	}
	return OSP_OK;
}

static int
sq_mailbox_list(struct osp_account *acc, struct osp_pool *pool,
    struct osp_mailbox **list_r, size_t *n_r, const char **error_r)
{
	struct sq_acct *b = acc->backend;
	struct osp_mailbox *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st;
	int rc;

	if ((st = sq_st(b, ST_MB_LIST)) == NULL)
		return sq_dberr(b, error_r, "prepare");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = osp_reallocarray(v, cap, sizeof(*v));
		}
		sq_mb_fill(st, pool, &v[n++]);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		osp_free(v);
		return sq_dberr(b, error_r, "list mailboxes");
	}
	*list_r = n > 0 ? osp_pmemdup(pool, v, n * sizeof(*v)) : NULL;
	*n_r = n;
	osp_free(v);
	return OSP_OK;
}

static int
sq_mailbox_get(struct osp_account *acc, const char *name, int64_t id,
    struct osp_pool *pool, struct osp_mailbox *mb_r, const char **error_r)
{
	char norm[SQ_NAME_MAX + 1];
	int ret;

	if (name != NULL) {
		if ((ret = sq_name_norm(name, norm, error_r)) != OSP_OK)
			return ret == -EINVAL ? sq_fail(error_r, -ENOENT,
			    "no such mailbox") : ret;
		/* store.h: "INBOX" matches case-insensitively; other names
		 * are exact (children of INBOX were normalized above). */
		name = norm;
	}
	return sq_mb_find(acc->backend, name, id, pool, mb_r, error_r);
}

static int
sq_mailbox_create(struct osp_account *acc, const char *name,
    uint32_t special_use, int64_t *id_r, const char **error_r)
{
	char norm[SQ_NAME_MAX + 1];
	struct osp_mailbox mb;
	struct sq_tx tx;
	int64_t id = 0;
	int ret;

	if ((ret = sq_name_norm(name, norm, error_r)) != OSP_OK)
		return ret;
	if ((special_use & ~SQ_USE_SETTABLE) != 0)
		return sq_fail(error_r, -EINVAL, "special-use not settable");
	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	ret = sq_mb_find(tx.b, norm, 0, NULL, &mb, error_r);
	if (ret == OSP_OK)
		ret = sq_fail(error_r, -EEXIST, "mailbox exists");
	else if (ret == -ENOENT) {
		ret = sq_mb_parents(&tx, norm, error_r);
		if (ret == OSP_OK)
			ret = sq_mb_insert(&tx, norm, special_use, &id,
			    error_r);
	}
	if ((ret = sq_tx_end(&tx, ret, error_r)) == OSP_OK && id_r != NULL)
		*id_r = id;
	return ret;
}

static int
sq_sub_rename(struct sq_tx *tx, const char *from, const char *to,
    const char **error_r)
{
	sqlite3_stmt *st;
	uint64_t modseq;
	int rc, ret;

	if ((st = sq_st(tx->b, ST_SUB_EXISTS)) == NULL)
		return sq_dberr(tx->b, error_r, "prepare");
	sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? OSP_OK :
		    sq_dberr(tx->b, error_r, "subscriptions");
	if ((ret = sq_tx_modseq(tx, &modseq, error_r)) != OSP_OK)
		return ret;
	if ((st = sq_st(tx->b, ST_SUB_DEL)) == NULL)
		return sq_dberr(tx->b, error_r, "prepare");
	sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_dberr(tx->b, error_r, "unsubscribe");
	if ((st = sq_st(tx->b, ST_SUB_ADD)) == NULL)
		return sq_dberr(tx->b, error_r, "prepare");
	sqlite3_bind_text(st, 1, to, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_dberr(tx->b, error_r, "subscribe");
	store_change_add(tx->acc, OSP_CHANGE_SUBSCRIPTION, 0, 0, modseq, 0,
	    from, NULL);
	store_change_add(tx->acc, OSP_CHANGE_SUBSCRIPTION, 0, 0, modseq, 1,
	    to, NULL);
	return OSP_OK;
}

static int sq_copy_rows(struct sq_tx *, int64_t, const struct osp_uidset *,
    int64_t, bool, struct osp_pool *, uint32_t **, uint32_t **, size_t *,
    const char **);

static int
sq_rename_tx(struct sq_tx *tx, const char *from, const char *to,
    const char **error_r)
{
	struct osp_mailbox src, mb;
	struct { int64_t id; char *name; } *kids = NULL;
	char newname[SQ_NAME_MAX + 2];
	size_t nkids = 0, i, fromlen = strlen(from);
	sqlite3_stmt *st;
	uint64_t modseq;
	int64_t id;
	size_t n;
	int ret, rc;

	if ((ret = sq_mb_find(tx->b, from, 0, NULL, &src, error_r)) != OSP_OK)
		return ret;
	ret = sq_mb_find(tx->b, to, 0, NULL, &mb, error_r);
	if (ret == OSP_OK)
		return sq_fail(error_r, -EEXIST, "mailbox exists");
	if (ret != -ENOENT)
		return ret;
	if (strncmp(to, from, fromlen) == 0 && to[fromlen] == OSP_MBOX_SEP)
		return sq_fail(error_r, -EINVAL, "cannot rename a mailbox "
		    "into itself");
	if ((ret = sq_mb_parents(tx, to, error_r)) != OSP_OK)
		return ret;

	if (strcmp(from, "Inbox") == 0) {
		/* RFC 9051 §6.3.6: renaming INBOX moves its messages to a
		 * new mailbox and leaves INBOX (and its children) in place. */
		if ((ret = sq_mb_insert(tx, to, 0, &id, error_r)) != OSP_OK)
			return ret;
		return sq_copy_rows(tx, src.id, NULL, id, true, NULL, NULL,
		    NULL, &n, error_r);
	}

	if ((ret = sq_tx_modseq(tx, &modseq, error_r)) != OSP_OK)
		return ret;
	if ((st = sq_st(tx->b, ST_MB_CHILDREN)) == NULL)
		return sq_dberr(tx->b, error_r, "prepare");
	sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		kids = osp_reallocarray(kids, nkids + 1, sizeof(*kids));
		kids[nkids].id = sqlite3_column_int64(st, 0);
		kids[nkids++].name = osp_strdup(
		    (const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		ret = sq_dberr(tx->b, error_r, "children");
		goto out;
	}
	for (i = 0; i <= nkids; i++) {
		/* The mailbox first, then its children in name order. */
		const char *old = i > 0 ? kids[i - 1].name : from;
		int64_t mbid = i > 0 ? kids[i - 1].id : src.id;

		if (snprintf(newname, sizeof(newname), "%s%s", to,
		    old + fromlen) > SQ_NAME_MAX) {
			ret = sq_fail(error_r, -EINVAL, "mailbox name too "
			    "long after rename");
			goto out;
		}
		if ((st = sq_st(tx->b, ST_MB_RENAME)) == NULL) {
			ret = sq_dberr(tx->b, error_r, "prepare");
			goto out;
		}
		sqlite3_bind_text(st, 1, newname, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)modseq);
		sqlite3_bind_int64(st, 3, mbid);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			ret = sq_dberr(tx->b, error_r, "rename");
			goto out;
		}
		store_change_add(tx->acc, OSP_CHANGE_MAILBOX_RENAME, mbid, 0,
		    modseq, 0, old, newname);
		/* Subscriptions follow the mailbox (as Dovecot does), so
		 * clients do not lose a subscribed folder on rename. */
		if ((ret = sq_sub_rename(tx, old, newname, error_r)) !=
		    OSP_OK)
			goto out;
	}
	ret = OSP_OK;
out:
	for (i = 0; i < nkids; i++)
		osp_free(kids[i].name);
	osp_free(kids);
	return ret;
}

static int
sq_mailbox_rename(struct osp_account *acc, const char *from, const char *to,
    const char **error_r)
{
	char nfrom[SQ_NAME_MAX + 1], nto[SQ_NAME_MAX + 1];
	struct sq_tx tx;
	int ret;

	if ((ret = sq_name_norm(from, nfrom, error_r)) != OSP_OK)
		return ret == -EINVAL ? sq_fail(error_r, -ENOENT,
		    "no such mailbox") : ret;
	if ((ret = sq_name_norm(to, nto, error_r)) != OSP_OK)
		return ret;
	if (strcmp(nfrom, nto) == 0)
		return sq_fail(error_r, -EEXIST, "mailbox exists");
	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	return sq_tx_end(&tx, sq_rename_tx(&tx, nfrom, nto, error_r),
	    error_r);
}

/* Collects the live rows of a mailbox with uids in set (NULL: all). */
static int
sq_rows(struct sq_acct *b, int64_t mbid, const struct osp_uidset *set,
    struct sq_row **rows_r, size_t *n_r, const char **error_r)
{
	static const struct osp_uid_range all = { 1, UINT32_MAX };
	struct sq_row *v = NULL;
	size_t n = 0, i;
	sqlite3_stmt *st;
	const struct osp_uid_range *r = set != NULL ? set->r : &all;
	size_t nr = set != NULL ? set->n : 1;
	int rc = SQLITE_DONE;

	for (i = 0; i < nr; i++) {
		if (r[i].first > r[i].last) {
			osp_free(v);
			return sq_fail(error_r, -EINVAL, "bad uid range");
		}
		if ((st = sq_st(b, ST_MSG_RANGE)) == NULL) {
			osp_free(v);
			return sq_dberr(b, error_r, "prepare");
		}
		sqlite3_bind_int64(st, 1, mbid);
		sqlite3_bind_int64(st, 2, r[i].first);
		sqlite3_bind_int64(st, 3, r[i].last);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			const unsigned char *kw;

			v = osp_reallocarray(v, n + 1, sizeof(*v));
			v[n].rowid = sqlite3_column_int64(st, 0);
			v[n].id = sqlite3_column_int64(st, 1);
			v[n].uid = (uint32_t)sqlite3_column_int64(st, 2);
			v[n].modseq = (uint64_t)sqlite3_column_int64(st, 3);
			v[n].flags = (uint32_t)sqlite3_column_int64(st, 4);
			kw = sqlite3_column_text(st, 5);
			v[n].keywords = kw != NULL ?
			    osp_strdup((const char *)kw) : NULL;
			v[n].size = sqlite3_column_int64(st, 6);
			n++;
		}
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			break;
	}
	*rows_r = v;
	*n_r = n;
	if (rc != SQLITE_DONE)
		return sq_dberr(b, error_r, "select messages");
	return OSP_OK;
}

static void
sq_rows_free(struct sq_row *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		osp_free(v[i].keywords);
	osp_free(v);
}

/* Expunges rows: tombstones with the transaction's modseq. */
static int
sq_expunge_rows(struct sq_tx *tx, int64_t mbid, const struct sq_row *v,
    size_t n, const char **error_r)
{
	int64_t dtotal = 0, dunread = 0, ddel = 0, dsize = 0;
	uint64_t modseq;
	size_t i;
	int ret;

	if (n == 0)
		return OSP_OK;
	if ((ret = sq_tx_modseq(tx, &modseq, error_r)) != OSP_OK)
		return ret;
	for (i = 0; i < n; i++) {
		if ((ret = sq_exec(tx->b, ST_MSG_EXPUNGE, error_r, 2,
		    (int64_t)modseq, v[i].rowid)) != OSP_OK)
			return ret;
		dtotal--;
		dunread -= sq_unread(v[i].flags);
		ddel -= sq_deleted(v[i].flags);
		dsize -= v[i].size;
		store_change_add(tx->acc, OSP_CHANGE_REMOVE, mbid, v[i].uid,
		    modseq, 0, NULL, NULL);
	}
	return sq_tx_counts(tx, mbid, dtotal, dunread, ddel, dsize, error_r);
}

static int
sq_mailbox_delete(struct osp_account *acc, const char *name,
    const char **error_r)
{
	char norm[SQ_NAME_MAX + 1];
	struct osp_mailbox mb;
	struct sq_row *v = NULL;
	struct sq_tx tx;
	uint64_t modseq;
	size_t n = 0, i;
	int ret;

	if ((ret = sq_name_norm(name, norm, error_r)) != OSP_OK)
		return ret == -EINVAL ? sq_fail(error_r, -ENOENT,
		    "no such mailbox") : ret;
	if (strcmp(norm, "Inbox") == 0)
		return sq_fail(error_r, -EPERM, "Inbox cannot be deleted");
	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	if ((ret = sq_mb_find(tx.b, norm, 0, NULL, &mb, error_r)) != OSP_OK)
		goto out;
	if ((ret = sq_rows(tx.b, mb.id, NULL, &v, &n, error_r)) != OSP_OK ||
	    (ret = sq_expunge_rows(&tx, mb.id, v, n, error_r)) != OSP_OK ||
	    (ret = sq_tx_modseq(&tx, &modseq, error_r)) != OSP_OK ||
	    (ret = sq_exec(tx.b, ST_MB_REMOVE, error_r, 2, (int64_t)modseq,
	    mb.id)) != OSP_OK)
		goto out;
	store_change_add(acc, OSP_CHANGE_MAILBOX_REMOVE, mb.id, 0, modseq, 0,
	    norm, NULL);
	/* No counts change for a mailbox that is gone. */
	for (i = 0; i < tx.nmbs; i++)
		if (tx.mbs[i] == mb.id)
			tx.mbs[i] = tx.mbs[--tx.nmbs];
out:
	sq_rows_free(v, n);
	return sq_tx_end(&tx, ret, error_r);
}

static int
sq_mailbox_set_special_use(struct osp_account *acc, int64_t id,
    uint32_t special_use, const char **error_r)
{
	struct osp_mailbox mb;
	struct sq_tx tx;
	uint64_t modseq;
	int ret;

	if ((special_use & ~SQ_USE_SETTABLE) != 0)
		return sq_fail(error_r, -EINVAL, "special-use not settable");
	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	if ((ret = sq_mb_find(tx.b, NULL, id, NULL, &mb, error_r)) != OSP_OK)
		return sq_tx_end(&tx, ret, error_r);
	if (mb.special_use == special_use)
		return sq_tx_end(&tx, OSP_OK, error_r);
	if ((ret = sq_tx_modseq(&tx, &modseq, error_r)) == OSP_OK &&
	    (ret = sq_exec(tx.b, ST_MB_SPECIAL, error_r, 3,
	    (int64_t)special_use, (int64_t)modseq, id)) == OSP_OK)
		store_change_add(acc, OSP_CHANGE_SPECIAL_USE, id, 0, modseq,
		    special_use, NULL, NULL);
	return sq_tx_end(&tx, ret, error_r);
}

static int
sq_mailbox_subscribe(struct osp_account *acc, const char *name,
    bool subscribe, const char **error_r)
{
	char norm[SQ_NAME_MAX + 1];
	sqlite3_stmt *st;
	struct sq_tx tx;
	uint64_t modseq;
	int ret, rc;

	if ((ret = sq_name_norm(name, norm, error_r)) != OSP_OK)
		return ret;
	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	if ((st = sq_st(tx.b, subscribe ? ST_SUB_ADD : ST_SUB_DEL)) == NULL)
		return sq_tx_end(&tx, sq_dberr(tx.b, error_r, "prepare"),
		    error_r);
	sqlite3_bind_text(st, 1, norm, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_tx_end(&tx, sq_dberr(tx.b, error_r, "subscribe"),
		    error_r);
	if (sqlite3_changes(tx.b->db) > 0) {
		if ((ret = sq_tx_modseq(&tx, &modseq, error_r)) != OSP_OK)
			return sq_tx_end(&tx, ret, error_r);
		store_change_add(acc, OSP_CHANGE_SUBSCRIPTION, 0, 0, modseq,
		    subscribe ? 1 : 0, norm, NULL);
	}
	return sq_tx_end(&tx, OSP_OK, error_r);
}

static int
sq_mailbox_subscriptions(struct osp_account *acc, struct osp_pool *pool,
    const char ***names_r, size_t *n_r, const char **error_r)
{
	struct sq_acct *b = acc->backend;
	const char **v = NULL;
	size_t n = 0;
	sqlite3_stmt *st;
	int rc;

	if ((st = sq_st(b, ST_SUB_LIST)) == NULL)
		return sq_dberr(b, error_r, "prepare");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = osp_reallocarray(v, n + 1, sizeof(*v));
		v[n++] = sq_col_text(st, 0, pool);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		osp_free(v);
		return sq_dberr(b, error_r, "subscriptions");
	}
	*names_r = n > 0 ? osp_pmemdup(pool, v, n * sizeof(*v)) : NULL;
	*n_r = n;
	osp_free(v);
	return OSP_OK;
}

/* ---- messages ---------------------------------------------------------- */

static int
sq_next_id(struct sq_acct *b, int64_t *id_r, const char **error_r)
{
	sqlite3_stmt *st;
	int64_t id;

	if ((st = sq_st(b, ST_STATE_GET)) == NULL)
		return sq_dberr(b, error_r, "prepare");
	if (sqlite3_step(st) != SQLITE_ROW)
		return sq_dberr(b, error_r, "state");
	id = sqlite3_column_int64(st, 1);
	sqlite3_reset(st);
	*id_r = id;
	return sq_exec(b, ST_STATE_NEXTID, error_r, 1, id + 1);
}

/* Takes the next uid of a mailbox (uidnext strictly increases). */
static int
sq_next_uid(struct sq_tx *tx, int64_t mbid, uint32_t *uid_r,
    const char **error_r)
{
	struct osp_mailbox mb;
	uint64_t modseq;
	int ret;

	if ((ret = sq_mb_find(tx->b, NULL, mbid, NULL, &mb, error_r)) !=
	    OSP_OK)
		return ret;
	if (mb.uidnext == UINT32_MAX)
		return sq_fail(error_r, -EOVERFLOW, "mailbox out of uids");
	if ((ret = sq_tx_modseq(tx, &modseq, error_r)) != OSP_OK)
		return ret;
	*uid_r = mb.uidnext;
	return sq_exec(tx->b, ST_MB_UIDNEXT, error_r, 3,
	    (int64_t)mb.uidnext + 1, (int64_t)modseq, mbid);
}

/* Thread id for a message: the thread of the first of its references
 * (oldest first) or of its own Message-ID already known (a reply that
 * arrived first), else a new thread named by the message's id. */
static int
sq_thread(struct sq_acct *b, const struct osp_msg_info *info, int64_t id,
    int64_t *thread_r, const char **error_r)
{
	const char *const *refs = info->references;
	size_t nrefs = 0, i;
	sqlite3_stmt *st;
	int64_t thread = 0;
	int rc;

	while (refs != NULL && refs[nrefs] != NULL)
		nrefs++;
	/* Keys in order: references oldest first, then the own id. */
	for (i = 0; i <= nrefs && thread == 0; i++) {
		const char *key = i < nrefs ? refs[i] : info->message_id;

		if (key == NULL)
			continue;
		if ((st = sq_st(b, ST_THREAD_GET)) == NULL)
			return sq_dberr(b, error_r, "prepare");
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		if ((rc = sqlite3_step(st)) == SQLITE_ROW)
			thread = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return sq_dberr(b, error_r, "threads");
	}
	if (thread == 0)
		thread = id;
	for (i = 0; i <= nrefs; i++) {
		const char *key = i < nrefs ? refs[i] : info->message_id;

		if (key == NULL)
			continue;
		if ((st = sq_st(b, ST_THREAD_PUT)) == NULL)
			return sq_dberr(b, error_r, "prepare");
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, thread);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return sq_dberr(b, error_r, "threads");
	}
	*thread_r = thread;
	return OSP_OK;
}

/* Appends one message inside tx. */
static int
sq_append_one(struct sq_tx *tx, struct store_append_req *req,
    struct osp_buf *kw, struct osp_buf *blob, const char **error_r)
{
	const struct osp_store_new_msg *m = req->msg;
	struct osp_pool *pool = NULL;
	struct osp_msg_info info;
	sqlite3_stmt *st;
	struct stat sb;
	uint64_t modseq;
	int64_t id, thread = 0, size;
	uint32_t uid, flags;
	time_t now = time(NULL);
	int fd = -1, ret;

	if (m == NULL || m->path == NULL)
		return sq_fail(error_r, -EINVAL, "no message file");
	if (m->prefix != NULL && m->prefix_len > SQ_PREFIX_MAX)
		return sq_fail(error_r, -EINVAL, "prefix too long");
	flags = m->flags & SQ_FLAGS_ALL;
	if ((ret = sq_kw_apply(NULL, OSP_STORE_SET, m->keywords, kw,
	    error_r)) != OSP_OK)
		return ret;
	if ((fd = open(m->path, O_RDONLY | O_CLOEXEC)) == -1)
		return sq_fail(error_r, -errno, "open %s: %s", m->path,
		    strerror(errno));
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
		ret = sq_fail(error_r, -EINVAL, "%s: not a regular file",
		    m->path);
		goto out;
	}
	/* The message's bytes must be on disk before any row names them
	 * (a batch syncs the whole file system once, before COMMIT). */
	if (!tx->batch_sync && fsync(fd) == -1) {
		ret = sq_fail(error_r, -errno, "fsync %s: %s", m->path,
		    strerror(errno));
		goto out;
	}
	size = (int64_t)sb.st_size + (int64_t)(m->prefix != NULL ?
	    m->prefix_len : 0);

	pool = osp_pool_new(NULL);
	if (lseek(fd, 0, SEEK_SET) == -1 ||
	    (ret = osp_msg_parse_fd(fd, m->prefix, m->prefix != NULL ?
	    m->prefix_len : 0, pool, &info, error_r)) != OSP_OK) {
		if (ret == OSP_OK)
			ret = sq_fail(error_r, -errno, "seek: %s",
			    strerror(errno));
		goto out;
	}
	osp_buf_reset(blob);
	osp_mime_serialize(info.root, blob);

	if ((ret = sq_next_id(tx->b, &id, error_r)) != OSP_OK ||
	    (ret = sq_next_uid(tx, req->mailbox_id, &uid, error_r)) !=
	    OSP_OK ||
	    (ret = sq_tx_modseq(tx, &modseq, error_r)) != OSP_OK ||
	    (ret = sq_thread(tx->b, &info, id, &thread, error_r)) != OSP_OK ||
	    (ret = sq_tx_place(tx, m->path, fd, id, error_r)) != OSP_OK)
		goto out;

	if ((st = sq_st(tx->b, ST_MSG_INSERT)) == NULL) {
		ret = sq_dberr(tx->b, error_r, "prepare");
		goto out;
	}
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, req->mailbox_id);
	sqlite3_bind_int64(st, 3, uid);
	sqlite3_bind_int64(st, 4, (int64_t)modseq);
	sqlite3_bind_int64(st, 5, flags);
	if (kw->len > 0)
		sqlite3_bind_text(st, 6, kw->data, (int)kw->len,
		    SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, size);
	sqlite3_bind_int64(st, 8, m->received != 0 ? m->received :
	    (int64_t)now);
	sqlite3_bind_int64(st, 9, (int64_t)now);
	sqlite3_bind_blob(st, 10, m->prefix != NULL ? m->prefix : "",
	    m->prefix != NULL ? (int)m->prefix_len : 0, SQLITE_STATIC);
	sqlite3_bind_blob(st, 11, blob->data != NULL ? blob->data : "",
	    (int)blob->len, SQLITE_STATIC);
	if (info.preview != NULL)
		sqlite3_bind_text(st, 12, info.preview, -1, SQLITE_STATIC);
	if (info.message_id != NULL)
		sqlite3_bind_text(st, 13, info.message_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 14, thread);
	if (info.base_subject != NULL)
		sqlite3_bind_text(st, 15, info.base_subject, -1,
		    SQLITE_STATIC);
	if (m->remote_ip != NULL)
		sqlite3_bind_text(st, 16, m->remote_ip, -1, SQLITE_STATIC);
	if (m->mail_from_domain != NULL)
		sqlite3_bind_text(st, 17, m->mail_from_domain, -1,
		    SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		ret = sq_dberr(tx->b, error_r, "insert message");
		sqlite3_reset(st);
		goto out;
	}
	sqlite3_reset(st);
	if ((ret = sq_tx_counts(tx, req->mailbox_id, 1, sq_unread(flags),
	    sq_deleted(flags), size, error_r)) != OSP_OK)
		goto out;
	store_change_add(tx->acc, OSP_CHANGE_ADD, req->mailbox_id, uid,
	    modseq, flags, NULL, NULL);
	req->uid = uid;
	req->id = id;
out:
	if (fd != -1)
		close(fd);
	osp_pool_free(pool);
	return ret;
}

static int
sq_message_append(struct osp_account *acc, struct store_append_req *reqs,
    size_t n, const char **error_r)
{
	struct osp_buf kw = { 0 }, blob = { 0 };
	struct sq_tx tx;
	size_t i;
	int ret;

	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	/* From three messages on, one syncfs is cheaper than their fsyncs
	 * (each file, each directory). */
	tx.batch_sync = n >= 3;
	for (i = 0; i < n && ret == OSP_OK; i++)
		ret = sq_append_one(&tx, &reqs[i], &kw, &blob, error_r);
	osp_buf_deinit(&kw);
	osp_buf_deinit(&blob);
	return sq_tx_end(&tx, ret, error_r);
}

static void
sq_msg_fill(sqlite3_stmt *st, uint32_t with, struct osp_pool *pool,
    struct osp_message *m)
{
	const void *p;
	int len;

	memset(m, 0, sizeof(*m));
	m->id = sqlite3_column_int64(st, 0);
	m->uid = (uint32_t)sqlite3_column_int64(st, 1);
	m->modseq = (uint64_t)sqlite3_column_int64(st, 2);
	m->createseq = (uint64_t)sqlite3_column_int64(st, 3);
	m->flags = (uint32_t)sqlite3_column_int64(st, 4);
	if (with & OSP_MSG_WITH_KEYWORDS)
		m->keywords = sq_kw_split(
		    (const char *)sqlite3_column_text(st, 5), pool);
	m->size = (uint64_t)sqlite3_column_int64(st, 6);
	m->received = sqlite3_column_int64(st, 7);
	m->savedate = sqlite3_column_int64(st, 8);
	m->thread_id = sqlite3_column_int64(st, 9);
	m->expunged = sqlite3_column_int(st, 10) != 0;
	m->mailbox_id = sqlite3_column_int64(st, 14);
	m->prefix = "";
	if (with & OSP_MSG_WITH_PREFIX) {
		p = sqlite3_column_blob(st, 11);
		len = sqlite3_column_bytes(st, 11);
		if (p != NULL && len > 0) {
			char *s = osp_palloc(pool, (size_t)len + 1);

			memcpy(s, p, (size_t)len);
			s[len] = '\0';
			m->prefix = s;
			m->prefix_len = (size_t)len;
		}
	}
	if (with & OSP_MSG_WITH_STRUCTURE) {
		p = sqlite3_column_blob(st, 12);
		len = sqlite3_column_bytes(st, 12);
		if (p != NULL && len > 0) {
			m->structure = osp_pmemdup(pool, p, (size_t)len);
			m->structure_len = (size_t)len;
		}
	}
	if (with & OSP_MSG_WITH_PREVIEW)
		m->preview = sq_col_text(st, 13, pool);
}

/* Runs a message query (ST_MSG_LIST per range, or ST_MSG_CHANGES). */
static int
sq_msg_query(struct sq_acct *b, enum sq_st which, int64_t mbid,
    const struct osp_uidset *set, uint64_t since, uint32_t with,
    struct osp_pool *pool, struct osp_message **list_r, size_t *n_r,
    const char **error_r)
{
	static const struct osp_uid_range all = { 1, UINT32_MAX };
	const struct osp_uid_range *r = set != NULL ? set->r : &all;
	size_t nr = set != NULL ? set->n : 1, i, n = 0, cap = 0;
	struct osp_message *v = NULL;
	sqlite3_stmt *st;
	int rc = SQLITE_DONE;

	if (which == ST_MSG_CHANGES)
		nr = 1;
	for (i = 0; i < nr; i++) {
		if (which == ST_MSG_LIST && r[i].first > r[i].last) {
			osp_free(v);
			return sq_fail(error_r, -EINVAL, "bad uid range");
		}
		if ((st = sq_st(b, which)) == NULL) {
			osp_free(v);
			return sq_dberr(b, error_r, "prepare");
		}
		sqlite3_bind_int64(st, 1, mbid);
		if (which == ST_MSG_CHANGES)
			sqlite3_bind_int64(st, 2, (int64_t)since);
		else {
			sqlite3_bind_int64(st, 2, r[i].first);
			sqlite3_bind_int64(st, 3, r[i].last);
		}
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				v = osp_reallocarray(v, cap, sizeof(*v));
			}
			sq_msg_fill(st, with, pool, &v[n++]);
		}
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			break;
	}
	if (rc != SQLITE_DONE) {
		osp_free(v);
		return sq_dberr(b, error_r, "list messages");
	}
	*list_r = n > 0 ? osp_pmemdup(pool, v, n * sizeof(*v)) : NULL;
	*n_r = n;
	osp_free(v);
	return OSP_OK;
}

static int
sq_message_list(struct osp_account *acc, int64_t mbid,
    const struct osp_uidset *uids, uint32_t with, struct osp_pool *pool,
    struct osp_message **list_r, size_t *n_r, const char **error_r)
{
	struct osp_mailbox mb;
	int ret;

	if ((ret = sq_mb_find(acc->backend, NULL, mbid, NULL, &mb,
	    error_r)) != OSP_OK)
		return ret;
	return sq_msg_query(acc->backend, ST_MSG_LIST, mbid, uids, 0, with,
	    pool, list_r, n_r, error_r);
}

static int
sq_message_open(struct osp_account *acc, int64_t id, int *fd_r,
    const char **error_r)
{
	struct sq_acct *b = acc->backend;
	char path[PATH_MAX];
	sqlite3_stmt *st;
	int rc, fd;

	/* Expunged messages stay readable until the cleanup pass: a session
	 * that has not seen the expunge may still fetch them. */
	if ((st = sq_st(b, ST_MSG_EXISTS_ID)) == NULL)
		return sq_dberr(b, error_r, "prepare");
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return sq_fail(error_r, -ENOENT, "no such message");
	if (rc != SQLITE_ROW)
		return sq_dberr(b, error_r, "message lookup");
	sq_msg_path(b, id, path, sizeof(path));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return sq_fail(error_r, -errno, "open %s: %s", path,
		    strerror(errno));
	*fd_r = fd;
	return OSP_OK;
}

/* Sorted uids -> a uid set from pool. */
static void
sq_uidset_build(const uint32_t *uids, size_t n, struct osp_pool *pool,
    struct osp_uidset *set)
{
	struct osp_uid_range *r;
	size_t i, nr = 0;

	set->r = NULL;
	set->n = 0;
	if (n == 0 || pool == NULL)
		return;
	r = osp_pcalloc(pool, n, sizeof(*r));
	for (i = 0; i < n; i++) {
		if (nr > 0 && r[nr - 1].last + 1 == uids[i])
			r[nr - 1].last = uids[i];
		else {
			r[nr].first = r[nr].last = uids[i];
			nr++;
		}
	}
	set->r = r;
	set->n = nr;
}

static int
sq_message_store_flags(struct osp_account *acc, int64_t mbid,
    const struct osp_uidset *uids, enum osp_store_mode mode, uint32_t flags,
    const char *const *keywords, uint64_t unchangedsince,
    struct osp_pool *pool, struct osp_uidset *failed_r, const char **error_r)
{
	struct osp_buf kw = { 0 };
	struct sq_row *v = NULL;
	struct osp_mailbox mb;
	struct sq_tx tx;
	uint32_t *failed = NULL, nf;
	int64_t dunread = 0, ddel = 0;
	uint64_t modseq;
	size_t n = 0, nfailed = 0, i;
	sqlite3_stmt *st;
	int ret, rc;

	if (failed_r != NULL) {
		failed_r->r = NULL;
		failed_r->n = 0;
	}
	flags &= SQ_FLAGS_ALL;
	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	if ((ret = sq_mb_find(tx.b, NULL, mbid, NULL, &mb, error_r)) !=
	    OSP_OK ||
	    (ret = sq_rows(tx.b, mbid, uids, &v, &n, error_r)) != OSP_OK)
		goto out;
	for (i = 0; i < n; i++) {
		/* RFC 7162 §3.1.3: a message changed after UNCHANGEDSINCE is
		 * left alone and reported. */
		if (unchangedsince != 0 && v[i].modseq > unchangedsince) {
			failed = osp_reallocarray(failed, nfailed + 1,
			    sizeof(*failed));
			failed[nfailed++] = v[i].uid;
			continue;
		}
		switch (mode) {
		case OSP_STORE_SET:
			nf = flags;
			break;
		case OSP_STORE_ADD:
			nf = v[i].flags | flags;
			break;
		default:
			nf = v[i].flags & ~flags;
			break;
		}
		/* ADD/REMOVE without keywords leave them alone; SET
		 * replaces them (none given: none left). */
		if (mode != OSP_STORE_SET &&
		    (keywords == NULL || keywords[0] == NULL)) {
			osp_buf_reset(&kw);
			if (v[i].keywords != NULL)
				osp_buf_puts(&kw, v[i].keywords);
		} else if ((ret = sq_kw_apply(v[i].keywords, mode, keywords,
		    &kw, error_r)) != OSP_OK)
			goto out;
		if (nf == v[i].flags && strcmp(kw.len > 0 ? kw.data : "",
		    v[i].keywords != NULL ? v[i].keywords : "") == 0)
			continue;	/* unchanged rows keep their modseq */
		if ((ret = sq_tx_modseq(&tx, &modseq, error_r)) != OSP_OK)
			goto out;
		if ((st = sq_st(tx.b, ST_MSG_SETFLAGS)) == NULL) {
			ret = sq_dberr(tx.b, error_r, "prepare");
			goto out;
		}
		sqlite3_bind_int64(st, 1, nf);
		if (kw.len > 0)
			sqlite3_bind_text(st, 2, kw.data, (int)kw.len,
			    SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (int64_t)modseq);
		sqlite3_bind_int64(st, 4, v[i].rowid);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			ret = sq_dberr(tx.b, error_r, "store flags");
			goto out;
		}
		dunread += sq_unread(nf) - sq_unread(v[i].flags);
		ddel += sq_deleted(nf) - sq_deleted(v[i].flags);
		store_change_add(acc, OSP_CHANGE_FLAGS, mbid, v[i].uid, modseq,
		    nf, NULL, NULL);
	}
	if (tx.modseq != 0 && (dunread != 0 || ddel != 0))
		ret = sq_tx_counts(&tx, mbid, 0, dunread, ddel, 0, error_r);
	else if (tx.modseq != 0)
		/* The mailbox's modseq follows its messages' changes. */
		ret = sq_exec(tx.b, ST_MB_DELTA, error_r, 6, (int64_t)0,
		    (int64_t)0, (int64_t)0, (int64_t)0, (int64_t)tx.modseq,
		    mbid);
out:
	ret = sq_tx_end(&tx, ret, error_r);
	if (ret == OSP_OK && failed_r != NULL)
		sq_uidset_build(failed, nfailed, pool, failed_r);
	osp_free(failed);
	sq_rows_free(v, n);
	osp_buf_deinit(&kw);
	return ret;
}

/* Copies (new ids, hard-linked files) or moves (same rows, tombstones left
 * at the source) rows of src in set (NULL: all) to dst, inside tx. */
static int
sq_copy_rows(struct sq_tx *tx, int64_t src, const struct osp_uidset *set,
    int64_t dst, bool move, struct osp_pool *pool, uint32_t **src_uids_r,
    uint32_t **dst_uids_r, size_t *n_r, const char **error_r)
{
	char path[PATH_MAX];
	struct osp_mailbox mb;
	struct sq_row *v = NULL;
	uint32_t *su = NULL, *du = NULL, uid;
	int64_t dtotal = 0, dunread = 0, ddel = 0, dsize = 0, id;
	uint64_t modseq;
	time_t now = time(NULL);
	size_t n = 0, i;
	int ret;

	*n_r = 0;
	if ((ret = sq_mb_find(tx->b, NULL, src, NULL, &mb, error_r)) !=
	    OSP_OK ||
	    (ret = sq_mb_find(tx->b, NULL, dst, NULL, &mb, error_r)) !=
	    OSP_OK ||
	    (ret = sq_rows(tx->b, src, set, &v, &n, error_r)) != OSP_OK)
		goto out;
	if (n == 0)
		goto out;
	if ((ret = sq_tx_modseq(tx, &modseq, error_r)) != OSP_OK)
		goto out;
	if (pool != NULL) {
		su = osp_pcalloc(pool, n, sizeof(*su));
		du = osp_pcalloc(pool, n, sizeof(*du));
	}
	for (i = 0; i < n; i++) {
		if ((ret = sq_next_uid(tx, dst, &uid, error_r)) != OSP_OK)
			goto out;
		if (move) {
			/* The row becomes dst's; a light tombstone keeps
			 * the old (mailbox, uid) for QRESYNC (RFC 7162
			 * §3.2.10). */
			if ((ret = sq_exec(tx->b, ST_MSG_MOVE, error_r, 5, dst,
			    (int64_t)uid, (int64_t)modseq, (int64_t)now,
			    v[i].rowid)) != OSP_OK ||
			    (ret = sq_exec(tx->b, ST_MSG_TOMB, error_r, 4,
			    v[i].id, src, (int64_t)v[i].uid,
			    (int64_t)modseq)) != OSP_OK)
				goto out;
			store_change_add(tx->acc, OSP_CHANGE_REMOVE, src,
			    v[i].uid, modseq, 0, NULL, NULL);
		} else {
			if ((ret = sq_next_id(tx->b, &id, error_r)) != OSP_OK)
				goto out;
			sq_msg_path(tx->b, v[i].id, path, sizeof(path));
			if ((ret = sq_tx_place(tx, path, -1, id, error_r)) !=
			    OSP_OK ||
			    (ret = sq_exec(tx->b, ST_MSG_COPY, error_r, 6, id,
			    dst, (int64_t)uid, (int64_t)modseq, (int64_t)now,
			    v[i].rowid)) != OSP_OK)
				goto out;
		}
		store_change_add(tx->acc, OSP_CHANGE_ADD, dst, uid, modseq,
		    v[i].flags, NULL, NULL);
		dtotal++;
		dunread += sq_unread(v[i].flags);
		ddel += sq_deleted(v[i].flags);
		dsize += v[i].size;
		if (pool != NULL) {
			su[i] = v[i].uid;
			du[i] = uid;
		}
	}
	if ((ret = sq_tx_counts(tx, dst, dtotal, dunread, ddel, dsize,
	    error_r)) != OSP_OK)
		goto out;
	if (move && (ret = sq_tx_counts(tx, src, -dtotal, -dunread, -ddel,
	    -dsize, error_r)) != OSP_OK)
		goto out;
	*n_r = n;
	if (src_uids_r != NULL)
		*src_uids_r = su;
	if (dst_uids_r != NULL)
		*dst_uids_r = du;
out:
	sq_rows_free(v, n);
	return ret;
}

static int
sq_message_copy(struct osp_account *acc, int64_t src,
    const struct osp_uidset *uids, int64_t dst, bool move,
    struct osp_pool *pool, uint32_t **src_uids_r, uint32_t **dst_uids_r,
    size_t *n_r, const char **error_r)
{
	struct sq_tx tx;
	size_t n = 0;
	int ret;

	if (src_uids_r != NULL)
		*src_uids_r = NULL;
	if (dst_uids_r != NULL)
		*dst_uids_r = NULL;
	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	ret = sq_copy_rows(&tx, src, uids, dst, move, pool, src_uids_r,
	    dst_uids_r, &n, error_r);
	if ((ret = sq_tx_end(&tx, ret, error_r)) != OSP_OK) {
		if (src_uids_r != NULL)
			*src_uids_r = NULL;
		if (dst_uids_r != NULL)
			*dst_uids_r = NULL;
		n = 0;
	}
	if (n_r != NULL)
		*n_r = n;
	return ret;
}

static int
sq_message_expunge(struct osp_account *acc, int64_t mbid,
    const struct osp_uidset *uids, bool only_deleted, struct osp_pool *pool,
    uint32_t **uids_r, size_t *n_r, const char **error_r)
{
	struct osp_mailbox mb;
	struct sq_row *v = NULL;
	struct sq_tx tx;
	uint32_t *out = NULL;
	size_t n = 0, i, k = 0;
	int ret;

	if (uids_r != NULL)
		*uids_r = NULL;
	if (n_r != NULL)
		*n_r = 0;
	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	if ((ret = sq_mb_find(tx.b, NULL, mbid, NULL, &mb, error_r)) !=
	    OSP_OK ||
	    (ret = sq_rows(tx.b, mbid, uids, &v, &n, error_r)) != OSP_OK)
		goto out;
	for (i = 0; i < n; i++)
		if (!only_deleted || (v[i].flags & OSP_FLAG_DELETED))
			v[k++] = v[i];
		else
			osp_free(v[i].keywords);
	n = k;
	ret = sq_expunge_rows(&tx, mbid, v, n, error_r);
out:
	if ((ret = sq_tx_end(&tx, ret, error_r)) == OSP_OK) {
		if (pool != NULL && n > 0) {
			out = osp_pcalloc(pool, n, sizeof(*out));
			for (i = 0; i < n; i++)
				out[i] = v[i].uid;
		}
		if (uids_r != NULL)
			*uids_r = out;
		if (n_r != NULL)
			*n_r = out != NULL ? n : 0;
	}
	sq_rows_free(v, n);
	return ret;
}

/* ---- account-wide ------------------------------------------------------ */

/* First column of the single row a cached statement returns. */
static int
sq_scalar(struct sq_acct *b, enum sq_st stmt, const char *what, uint64_t *v_r,
    const char **error_r)
{
	sqlite3_stmt *st;

	if ((st = sq_st(b, stmt)) == NULL)
		return sq_dberr(b, error_r, "prepare");
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		return sq_dberr(b, error_r, what);
	}
	*v_r = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return OSP_OK;
}

static int
sq_account_modseq(struct osp_account *acc, uint64_t *modseq_r,
    const char **error_r)
{
	return sq_scalar(acc->backend, ST_STATE_GET, "state", modseq_r,
	    error_r);
}

static int
sq_message_changes(struct osp_account *acc, int64_t mbid, uint64_t since,
    struct osp_pool *pool, struct osp_message **list_r, size_t *n_r,
    const char **error_r)
{
	return sq_msg_query(acc->backend, ST_MSG_CHANGES, mbid, NULL, since,
	    OSP_MSG_WITH_KEYWORDS, pool, list_r, n_r, error_r);
}

static int
sq_account_size(struct osp_account *acc, uint64_t *size_r,
    const char **error_r)
{
	return sq_scalar(acc->backend, ST_SIZE, "size", size_r, error_r);
}

/* ---- open, migrations, check, close ------------------------------------ */

static int
sq_user_version(struct sq_acct *b, int *v_r, const char **error_r)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(b->db, "PRAGMA user_version", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_dberr(b, error_r, "user_version");
	rc = sqlite3_step(st);
	*v_r = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (*v_r < 0)
		return sq_dberr(b, error_r, "user_version");
	return OSP_OK;
}

/* Brings the schema to SQ_SCHEMA_VERSION, one transaction per step, so a
 * crash mid-way resumes at the last completed version. */
static int
sq_migrate(struct sq_acct *b, const char **error_r)
{
	char sql[64];
	int v = 0, ret;

	if ((ret = sq_user_version(b, &v, error_r)) != OSP_OK)
		return ret;
	if (v > SQ_SCHEMA_VERSION)
		return sq_fail(error_r, OSP_ERROR, "index.db: schema version "
		    "%d is newer than this program's %d", v,
		    SQ_SCHEMA_VERSION);
	for (; v < SQ_SCHEMA_VERSION; v++) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if (sqlite3_exec(b->db, "BEGIN IMMEDIATE", NULL, NULL,
		    NULL) != SQLITE_OK)
			return sq_dberr(b, error_r, "migration");
		if (sqlite3_exec(b->db, sq_migrations[v], NULL, NULL, NULL) !=
		    SQLITE_OK ||
		    sqlite3_exec(b->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
			ret = sq_fail(error_r, OSP_ERROR, "index.db: migration "
			    "to version %d: %s", v + 1, sqlite3_errmsg(b->db));
			sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
			return ret;
		}
		if (sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL) !=
		    SQLITE_OK)
			return sq_dberr(b, error_r, "migration commit");
	}
	return OSP_OK;
}

/* A new account's mailboxes, all subscribed. */
static int
sq_defaults(struct osp_account *acc, const char **error_r)
{
	static const struct {
		const char	*name;
		uint32_t	 use;
	} defs[] = {
		{ "Inbox", 0 },
		{ "Sent", OSP_USE_SENT },
		{ "Archive", OSP_USE_ARCHIVE },
		{ "Trash", OSP_USE_TRASH },
		{ "Drafts", OSP_USE_DRAFTS },
		{ "Junk", OSP_USE_JUNK },
	};
	struct sq_acct *b = acc->backend;
	sqlite3_stmt *st;
	struct sq_tx tx;
	int64_t id, count;
	size_t i;
	int ret = OSP_OK, rc;

	if ((ret = sq_tx_begin(acc, &tx, error_r)) != OSP_OK)
		return ret;
	if ((st = sq_st(b, ST_MB_COUNT_ALL)) == NULL)
		return sq_tx_end(&tx, sq_dberr(b, error_r, "prepare"), error_r);
	rc = sqlite3_step(st);
	count = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return sq_tx_end(&tx, sq_dberr(b, error_r, "count"), error_r);
	for (i = 0; count == 0 && i < sizeof(defs) / sizeof(defs[0]); i++) {
		if ((ret = sq_mb_insert(&tx, defs[i].name, defs[i].use, &id,
		    error_r)) != OSP_OK)
			break;
		if ((st = sq_st(b, ST_SUB_ADD)) == NULL) {
			ret = sq_dberr(b, error_r, "prepare");
			break;
		}
		sqlite3_bind_text(st, 1, defs[i].name, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			ret = sq_dberr(b, error_r, "subscribe");
			break;
		}
	}
	return sq_tx_end(&tx, ret, error_r);
}

static void
sq_free(struct sq_acct *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(b->st[i]);
	if (b->db != NULL)
		sqlite3_close(b->db);
	osp_free(b->dir);
	osp_free(b);
}

/* mkdir + fsync of the parent, so a new directory survives a crash. */
static int
sq_mkdir_durable(const char *path, const char **error_r)
{
	char parent[PATH_MAX], *slash;

	if (mkdir(path, 0700) == -1) {
		if (errno == EEXIST)
			return OSP_OK;
		return sq_fail(error_r, -errno, "mkdir %s: %s", path,
		    strerror(errno));
	}
	osp_strlcpy(parent, path, sizeof(parent));
	if ((slash = strrchr(parent, '/')) != NULL && slash != parent)
		*slash = '\0';
	return sq_fsync_path(parent, error_r);
}

static int
sq_account_open(struct osp_account *acc, bool create, const char **error_r)
{
	struct sq_acct *b;
	char path[PATH_MAX];
	struct stat sb;
	int ret, flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

	snprintf(path, sizeof(path), "%s/index.db", acc->dir);
	if (stat(path, &sb) == -1) {
		if (errno != ENOENT)
			return sq_fail(error_r, -errno, "%s: %s", path,
			    strerror(errno));
		if (!create)
			return sq_fail(error_r, -ENOENT, "no such account");
		if ((ret = sq_mkdir_durable(acc->dir, error_r)) != OSP_OK)
			return ret;
		flags |= SQLITE_OPEN_CREATE;
	}
	b = osp_calloc(1, sizeof(*b));
	b->dir = osp_strdup(acc->dir);
	if (sqlite3_open_v2(path, &b->db, flags, NULL) != SQLITE_OK) {
		ret = sq_fail(error_r, OSP_ERROR, "%s: %s", path,
		    b->db != NULL ? sqlite3_errmsg(b->db) : "cannot open");
		sq_free(b);
		return ret;
	}
	sqlite3_busy_timeout(b->db, 10000);
	sqlite3_extended_result_codes(b->db, 0);
	if (sqlite3_exec(b->db, "PRAGMA journal_mode = WAL; "
	    "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
	    NULL, NULL, NULL) != SQLITE_OK) {
		ret = sq_dberr(b, error_r, "pragma");
		sq_free(b);
		return ret;
	}
	acc->backend = b;
	snprintf(path, sizeof(path), "%s/msg", acc->dir);
	if ((ret = sq_migrate(b, error_r)) != OSP_OK ||
	    (ret = sq_mkdir_durable(path, error_r)) != OSP_OK ||
	    (ret = sq_defaults(acc, error_r)) != OSP_OK) {
		acc->backend = NULL;
		sq_free(b);
		return ret;
	}
	/* A new index.db's directory entry must survive a crash too
	 * (SQLite syncs the directory for its WAL, not for the database). */
	if ((flags & SQLITE_OPEN_CREATE) &&
	    (ret = sq_fsync_path(acc->dir, error_r)) != OSP_OK) {
		acc->backend = NULL;
		sq_free(b);
		return ret;
	}
	/* The default mailboxes are not news to anybody: nobody can have
	 * subscribed to an account that was just created. */
	return OSP_OK;
}

/*
 * Recomputes every mailbox's counts, uidnext and size from the message
 * rows and compares with the stored values (the consistency check run at
 * close under tests), and the account counters against the rows.
 */
static int
sq_check(struct sq_acct *b, const char **error_r)
{
	static const char sql[] =
	    "SELECT m.id, m.name, m.total, m.unread, m.unseen, m.deleted, "
	    "m.size, m.uidnext, m.modseq, "
	    "(SELECT count(*) FROM messages x WHERE x.mailbox_id = m.id "
	    "  AND x.expunged = 0), "
	    "(SELECT count(*) FROM messages x WHERE x.mailbox_id = m.id "
	    "  AND x.expunged = 0 AND (x.flags & 1) = 0), "
	    "(SELECT count(*) FROM messages x WHERE x.mailbox_id = m.id "
	    "  AND x.expunged = 0 AND (x.flags & 8) != 0), "
	    "(SELECT coalesce(sum(size), 0) FROM messages x "
	    "  WHERE x.mailbox_id = m.id AND x.expunged = 0), "
	    "(SELECT coalesce(max(uid), 0) FROM messages x "
	    "  WHERE x.mailbox_id = m.id), "
	    "(SELECT coalesce(max(modseq), 0) FROM messages x "
	    "  WHERE x.mailbox_id = m.id), "
	    "(SELECT modseq FROM state), "
	    "(SELECT next_msg_id FROM state), "
	    "(SELECT coalesce(max(id), 0) FROM messages) "
	    "FROM mailboxes m ORDER BY m.id";
	sqlite3_stmt *st;
	int rc, ret = OSP_OK;

	if (sqlite3_prepare_v2(b->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_dberr(b, error_r, "check");
	while (ret == OSP_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 1);
		int64_t c[18];
		int i;

		for (i = 0; i < 18; i++)
			c[i] = sqlite3_column_int64(st, i);
#define SQ_CHECK(cond, what, stored, real)				\
		if (ret == OSP_OK && !(cond))				\
			ret = sq_fail(error_r, OSP_ERROR, "store check: " \
			    "mailbox %s (id %" PRId64 "): %s is %" PRId64 \
			    ", rows say %" PRId64, name, c[0], what,	\
			    stored, real)
		SQ_CHECK(c[2] == c[9], "total", c[2], c[9]);
		SQ_CHECK(c[3] == c[10], "unread", c[3], c[10]);
		SQ_CHECK(c[4] == c[10], "unseen", c[4], c[10]);
		SQ_CHECK(c[5] == c[11], "deleted", c[5], c[11]);
		SQ_CHECK(c[6] == c[12], "size", c[6], c[12]);
		SQ_CHECK(c[7] > c[13], "uidnext (must exceed max uid)", c[7],
		    c[13]);
		SQ_CHECK(c[8] >= c[14], "modseq (vs max message modseq)",
		    c[8], c[14]);
		SQ_CHECK(c[15] >= c[8], "modseq (vs account modseq)", c[8],
		    c[15]);
		SQ_CHECK(c[16] > c[17], "next message id (vs max id)", c[16],
		    c[17]);
#undef SQ_CHECK
	}
	sqlite3_finalize(st);
	if (ret == OSP_OK && rc != SQLITE_DONE)
		ret = sq_dberr(b, error_r, "check");
	return ret;
}

static int
sq_account_close(struct osp_account *acc, bool check, const char **error_r)
{
	struct sq_acct *b = acc->backend;
	int ret = OSP_OK;

	if (b == NULL)
		return OSP_OK;
	if (check)
		ret = sq_check(b, error_r);
	acc->backend = NULL;
	sq_free(b);
	return ret;
}

const struct store_ops store_sqlite_ops = {
	.name = "sqlite",
	.account_open = sq_account_open,
	.account_close = sq_account_close,
	.mailbox_list = sq_mailbox_list,
	.mailbox_get = sq_mailbox_get,
	.mailbox_create = sq_mailbox_create,
	.mailbox_rename = sq_mailbox_rename,
	.mailbox_delete = sq_mailbox_delete,
	.mailbox_set_special_use = sq_mailbox_set_special_use,
	.mailbox_subscribe = sq_mailbox_subscribe,
	.mailbox_subscriptions = sq_mailbox_subscriptions,
	.message_append = sq_message_append,
	.message_list = sq_message_list,
	.message_open = sq_message_open,
	.message_store_flags = sq_message_store_flags,
	.message_copy = sq_message_copy,
	.message_expunge = sq_message_expunge,
	.account_modseq = sq_account_modseq,
	.message_changes = sq_message_changes,
	.account_size = sq_account_size,
};
