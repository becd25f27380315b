/* SPDX-License-Identifier: ISC */
/* `osprey backup` (consistent copy of a live data dir: SQLite online
 * backup, then hard links to the message files the copies reference) and
 * `osprey verifydata` (checks a data dir's databases against its files). */
#include "core.h"
#include "cli_tools.h"

#include <osprey/accounts.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * The on-disk format these tools read directly, as core/store_sqlite.c
 * writes it. verifydata inspects the format itself rather than going
 * through the store API, so that it sees what is on disk.
 */
/* Message files: one per id; several rows may share an id (a move leaves
 * a tombstone with the same id). Live: some row with that id is not
 * expunged. */
#define SQL_MESSAGE_FILES \
	"SELECT id, min(expunged) FROM messages GROUP BY id ORDER BY id"
#define SQL_STATE \
	"SELECT modseq, next_msg_id FROM state WHERE id = 1"
#define SQL_MAILBOXES \
	"SELECT id, name, uidvalidity, uidnext, total, unread, unseen, " \
	"deleted, size, modseq, removed FROM mailboxes ORDER BY id"
#define SQL_MESSAGES \
	"SELECT m.id, m.mailbox_id, m.uid, m.size, " \
	"coalesce(length(CAST(m.prefix AS BLOB)), 0), m.expunged, " \
	"coalesce(b.name, '?'), m.modseq FROM messages m " \
	"LEFT JOIN mailboxes b ON b.id = m.mailbox_id ORDER BY m.rowid"
#define SQL_MAILBOX_MAX \
	"SELECT max(uid), max(modseq) FROM messages WHERE mailbox_id = ?"
#define SQL_MAILBOX_COUNTS \
	"SELECT count(*), coalesce(sum((flags & 1) = 0), 0), " \
	"coalesce(sum((flags & 8) != 0), 0), coalesce(sum(size), 0) " \
	"FROM messages WHERE mailbox_id = ? AND expunged = 0"
#define SQL_ID_EXISTS \
	"SELECT 1 FROM messages WHERE id = ?"

#define BUSY_TIMEOUT_MS		30000

static bool
has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static char *
path_join(const char *a, const char *b)
{
	char *p;

	if (asprintf(&p, "%s/%s", a, b) == -1)
		osp_fatal("cli", "out of memory");
	return p;
}

static int
fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	if (fd == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

/* ---- backup ---------------------------------------------------------- */

struct bk {
	unsigned	dbs, linked, copied, files;
	int		errors;
};

/* Online backup of one database (https://sqlite.org/backup.html): a
 * consistent snapshot also while another process writes (WAL readers do
 * not block writers). */
static int
bk_db(const char *src, const char *dst)
{
	sqlite3 *s = NULL, *d = NULL;
	sqlite3_backup *b;
	const char *failed = src;
	int rc;

	/* Read-only: a backup run as root must not create -wal/-shm files
	 * the server's user could not open. */
	rc = sqlite3_open_v2(src, &s, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(s, BUSY_TIMEOUT_MS);
		failed = dst;
		rc = sqlite3_open_v2(dst, &d, SQLITE_OPEN_READWRITE |
		    SQLITE_OPEN_CREATE, NULL);
	}
	if (rc != SQLITE_OK) {
		fprintf(stderr, "osprey: backup: %s: %s\n", failed,
		    sqlite3_errstr(rc));
		sqlite3_close(s);
		sqlite3_close(d);
		return -1;
	}
	if ((b = sqlite3_backup_init(d, "main", s, "main")) == NULL) {
		fprintf(stderr, "osprey: backup: %s: %s\n", src,
		    sqlite3_errmsg(d));
		sqlite3_close(s);
		sqlite3_close(d);
		return -1;
	}
	/* All pages in one step: one read transaction on the source. */
	while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY ||
	    rc == SQLITE_LOCKED)
		sqlite3_sleep(50);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "osprey: backup: %s: %s\n", src,
		    sqlite3_errstr(rc));
		sqlite3_close(s);
		sqlite3_close(d);
		return -1;
	}
	sqlite3_close(s);
	if (sqlite3_close(d) != SQLITE_OK || fsync_path(dst) != 0) {
		fprintf(stderr, "osprey: backup: %s: %s\n", dst,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
bk_copy_file(const char *src, const char *dst, mode_t mode)
{
	char buf[65536];
	ssize_t n;
	int in, out, ret = 0;

	if ((in = open(src, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
	if (out == -1) {
		close(in);
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			ret = -1;
			break;
		}
	if (n < 0 || fsync(out) != 0)
		ret = -1;
	close(in);
	if (close(out) != 0)
		ret = -1;
	return ret;
}

/* Hard link (files are immutable), or a copy across file systems. */
static int
bk_link(struct bk *bk, const char *src, const char *dst)
{
	struct stat st;

	if (link(src, dst) == 0) {
		bk->linked++;
		return 0;
	}
	if (errno != EXDEV && errno != EPERM && errno != EMLINK)
		return -1;
	if (stat(src, &st) == -1 || bk_copy_file(src, dst, st.st_mode) != 0)
		return -1;
	bk->copied++;
	return 0;
}

/* Links the message files the copied index.db references. A live row
 * whose file is gone was expunged and erased after the snapshot: the
 * caller takes a new snapshot. */
static int
bk_account_files(struct bk *bk, const char *srcacc, const char *dstacc,
    const char *dstdb, bool *retry_r)
{
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	char *src, *dst, *dir;
	int64_t id, lastdir = -1;
	int rc, ret = 0;

	*retry_r = false;
	rc = sqlite3_open_v2(dstdb, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, SQL_MESSAGE_FILES, -1, &st,
		    NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "osprey: backup: %s: %s\n", dstdb,
		    sqlite3_errmsg(db));
		sqlite3_close(db);
		return -1;
	}
	while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		src = cli_tools_msg_path(srcacc, id);
		dst = cli_tools_msg_path(dstacc, id);
		if (id / CLI_TOOLS_FILES_PER_DIR != lastdir) {
			dir = osp_strdup(dst);
			*strrchr(dir, '/') = '\0';
			if (cli_tools_mkdirs(dir, 0750) != OSP_OK) {
				fprintf(stderr, "osprey: backup: %s: %s\n",
				    dir, strerror(errno));
				ret = -1;
			}
			free(dir);
			lastdir = id / CLI_TOOLS_FILES_PER_DIR;
		}
		if (ret == 0 && bk_link(bk, src, dst) != 0) {
			if (errno == ENOENT && sqlite3_column_int(st, 1) != 0)
				;	/* tombstone whose file was erased */
			else if (errno == ENOENT)
				*retry_r = true;
			else {
				fprintf(stderr, "osprey: backup: %s: %s\n",
				    src, strerror(errno));
				ret = -1;
			}
		}
		bk->files++;
		free(src);
		free(dst);
		if (*retry_r)
			break;
	}
	if (ret == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE) {
		fprintf(stderr, "osprey: backup: %s: %s\n", dstdb,
		    sqlite3_errmsg(db));
		ret = -1;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ret;
}

static int	bk_tree(struct bk *, const char *, const char *, int);

static int
bk_rm_entry(const char *path, const struct stat *st, int type,
    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Removes our own partial copy (only ever inside DESTDIR). */
static int
bk_rmtree(const char *path)
{
	return nftw(path, bk_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* An account: its database, then the files it references, then the rest
 * of the directory. */
static int
bk_account(struct bk *bk, const char *src, const char *dst)
{
	char *sdb = path_join(src, "index.db"), *ddb = path_join(dst,
	    "index.db"), *dmsg = path_join(dst, "msg");
	struct stat st;
	bool retry = false;
	int attempt, ret = 0;

	if (stat(sdb, &st) == 0) {
		for (attempt = 0; attempt < 5; attempt++) {
			if (attempt > 0) {
				/* start over from a fresh snapshot */
				unlink(ddb);
				bk_rmtree(dmsg);
			}
			if ((ret = bk_db(sdb, ddb)) != 0)
				break;
			bk->dbs++;
			ret = bk_account_files(bk, src, dst, ddb, &retry);
			if (ret != 0 || !retry)
				break;
		}
		if (ret == 0 && retry) {
			fprintf(stderr, "osprey: backup: %s: message files "
			    "keep disappearing; giving up\n", src);
			ret = -1;
		}
	}
	if (ret == 0)
		ret = bk_tree(bk, src, dst, 2);
	free(sdb);
	free(ddb);
	free(dmsg);
	return ret;
}

/* depth: 0 data dir, 1 accounts/, 2 an account dir (index.db and msg/
 * done by bk_account), more: below. */
static int
bk_tree(struct bk *bk, const char *src, const char *dst, int depth)
{
	DIR *d;
	struct dirent *de;
	struct stat st;
	char *s, *t;
	int ret = 0;

	if ((d = opendir(src)) == NULL) {
		fprintf(stderr, "osprey: backup: %s: %s\n", src,
		    strerror(errno));
		return -1;
	}
	while (ret == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		s = path_join(src, de->d_name);
		t = path_join(dst, de->d_name);
		if (lstat(s, &st) == -1) {
			if (errno != ENOENT) {
				fprintf(stderr, "osprey: backup: %s: %s\n", s,
				    strerror(errno));
				ret = -1;
			}
		} else if (S_ISDIR(st.st_mode)) {
			if (depth == 2 && strcmp(de->d_name, "msg") == 0)
				;	/* linked by bk_account */
			else if (mkdir(t, st.st_mode & 07777) == -1 &&
			    errno != EEXIST) {
				fprintf(stderr, "osprey: backup: %s: %s\n", t,
				    strerror(errno));
				ret = -1;
			} else if (depth == 0 && strcmp(de->d_name, "tmp") == 0)
				;	/* transient files: not copied */
			else if (depth == 1)
				ret = bk_account(bk, s, t);
			else
				ret = bk_tree(bk, s, t, depth == 0 &&
				    strcmp(de->d_name, "accounts") == 0 ? 1 :
				    depth + 3);
		} else if (!S_ISREG(st.st_mode))
			;	/* sockets (ctl), fifos, symlinks */
		else if (has_suffix(de->d_name, "-wal") ||
		    has_suffix(de->d_name, "-shm") ||
		    has_suffix(de->d_name, "-journal"))
			;	/* part of a database copied by bk_db */
		else if (depth == 2 && strcmp(de->d_name, "index.db") == 0)
			;	/* copied by bk_account */
		else if (has_suffix(de->d_name, ".db")) {
			if ((ret = bk_db(s, t)) == 0)
				bk->dbs++;
		} else if (bk_copy_file(s, t, st.st_mode) != 0) {
			fprintf(stderr, "osprey: backup: %s: %s\n", s,
			    strerror(errno));
			ret = -1;
		} else
			bk->copied++;
		free(s);
		free(t);
	}
	closedir(d);
	if (ret == 0)
		fsync_path(dst);
	return ret;
}

/* The configuration and domains.yaml (usually outside the data dir) go
 * to DESTDIR/config/, so that a backup restores a whole installation. */
static int
bk_config(struct bk *bk, struct osp_cli *cli, const char *real_data,
    const char *destdir)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	const char *files[2];
	char real[PATH_MAX], *dir, *dst, *base;
	struct stat st;
	size_t i, n = strlen(real_data);
	int ret = 0;

	files[0] = cli->config_file;
	files[1] = osp_accounts_path(pool, cli->config_file);
	dir = path_join(destdir, "config");
	for (i = 0; i < 2 && ret == 0; i++) {
		if (realpath(files[i], real) == NULL || stat(real, &st) == -1)
			continue;	/* no domains.yaml yet */
		if (strncmp(real, real_data, n) == 0 && real[n] == '/')
			continue;	/* inside the data dir: copied */
		if (mkdir(dir, 0750) == -1 && errno != EEXIST) {
			fprintf(stderr, "osprey: backup: %s: %s\n", dir,
			    strerror(errno));
			ret = -1;
			break;
		}
		base = strrchr(real, '/') + 1;
		dst = path_join(dir, base);
		if (bk_copy_file(real, dst, st.st_mode) != 0) {
			fprintf(stderr, "osprey: backup: %s: %s\n", real,
			    strerror(errno));
			ret = -1;
		} else
			bk->copied++;
		free(dst);
	}
	free(dir);
	osp_pool_free(pool);
	return ret;
}

int
osp_cli_backup(struct osp_cli *cli, int argc, char **argv)
{
	struct bk bk = { 0 };
	char *data_dir, real_data[PATH_MAX], real_dst[PATH_MAX];
	int r, ret;

	if (argc != 2)
		return osp_cli_cmd_usage("backup");
	if ((data_dir = cli_tools_data_dir(cli)) == NULL)
		return 1;
	if (!cli_tools_dir_unused(argv[1])) {
		fprintf(stderr, "osprey: backup: %s exists and is not empty; "
		    "a backup never overwrites\n", argv[1]);
		free(data_dir);
		return 1;
	}
	if ((r = cli_tools_mkdirs(argv[1], 0750)) != OSP_OK) {
		fprintf(stderr, "osprey: backup: %s: %s\n", argv[1],
		    osp_strerror(r));
		free(data_dir);
		return 1;
	}
	if (realpath(data_dir, real_data) == NULL ||
	    realpath(argv[1], real_dst) == NULL) {
		fprintf(stderr, "osprey: backup: %s: %s\n", data_dir,
		    strerror(errno));
		free(data_dir);
		return 1;
	}
	if (strncmp(real_dst, real_data, strlen(real_data)) == 0 &&
	    (real_dst[strlen(real_data)] == '/' ||
	    real_dst[strlen(real_data)] == '\0')) {
		fprintf(stderr, "osprey: backup: %s is inside the data "
		    "directory %s\n", argv[1], data_dir);
		rmdir(argv[1]);
		free(data_dir);
		return 1;
	}
	ret = bk_tree(&bk, data_dir, argv[1], 0) == 0 ? 0 : 1;
	if (ret == 0 && bk_config(&bk, cli, real_data, argv[1]) != 0)
		ret = 1;
	if (ret == 0) {
		printf("backup of %s in %s: %u databases, %u message files "
		    "(%u hard-linked), %u other files copied\n", data_dir,
		    argv[1], bk.dbs, bk.files, bk.linked, bk.copied);
	} else
		fprintf(stderr, "osprey: backup: failed; %s is incomplete\n",
		    argv[1]);
	free(data_dir);
	return ret;
}

/* ---- verifydata ------------------------------------------------------ */

struct vd {
	unsigned	problems;
	unsigned	accounts, mailboxes, dbs;
	unsigned long	messages, files, leftovers;
};

static void
vd_problem(struct vd *vd, const char *account, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
vd_problem(struct vd *vd, const char *account, const char *fmt, ...)
{
	va_list ap;

	if (account != NULL)
		printf("account %s: ", account);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	vd->problems++;
}

static sqlite3 *
vd_open(struct vd *vd, const char *account, const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st;
	const char *res;
	int rc, n = 0;

	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		vd_problem(vd, account, "%s: cannot open: %s", path,
		    sqlite3_errstr(rc));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	vd->dbs++;
	/* https://sqlite.org/pragma.html#pragma_integrity_check: "ok" or
	 * one row per problem. */
	rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		vd_problem(vd, account, "%s: %s", path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n++ < 20) {
		res = (const char *)sqlite3_column_text(st, 0);
		if (res == NULL || strcmp(res, "ok") != 0)
			vd_problem(vd, account, "%s: integrity: %s", path,
			    res != NULL ? res : "?");
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		vd_problem(vd, account, "%s: integrity check: %s", path,
		    sqlite3_errmsg(db));
		sqlite3_finalize(st);
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_finalize(st);
	return db;
}

static sqlite3_stmt *
vd_prepare(struct vd *vd, const char *account, sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		vd_problem(vd, account, "database not in the expected "
		    "format: %s", sqlite3_errmsg(db));
		return NULL;
	}
	return st;
}

/* The account-wide counters (state row). */
struct vd_state {
	int64_t		modseq, next_msg_id;
};

static void
vd_mailboxes(struct vd *vd, const char *account, sqlite3 *db,
    const struct vd_state *vs)
{
	sqlite3_stmt *st, *mx, *cnt;
	const char *name;
	int64_t id, c[11], maxuid, maxmodseq, real[4];
	int i;

	if ((st = vd_prepare(vd, account, db, SQL_MAILBOXES)) == NULL)
		return;
	mx = vd_prepare(vd, account, db, SQL_MAILBOX_MAX);
	cnt = vd_prepare(vd, account, db, SQL_MAILBOX_COUNTS);
	while (mx != NULL && cnt != NULL && sqlite3_step(st) == SQLITE_ROW) {
		/* id name uidvalidity uidnext total unread unseen deleted
		 * size modseq removed */
		for (i = 0; i < 11; i++)
			c[i] = sqlite3_column_int64(st, i);
		id = c[0];
		name = (const char *)sqlite3_column_text(st, 1);
		if (name == NULL)
			name = "?";
		if (c[10] == 0)
			vd->mailboxes++;
		if (c[2] <= 0 || c[2] > UINT32_MAX)
			vd_problem(vd, account, "mailbox %s: uidvalidity %lld "
			    "invalid", name, (long long)c[2]);
		if (c[3] <= 0 || c[3] > (int64_t)UINT32_MAX + 1)
			vd_problem(vd, account, "mailbox %s: uidnext %lld "
			    "invalid", name, (long long)c[3]);
		if (c[9] > vs->modseq)
			vd_problem(vd, account, "mailbox %s: modseq %lld above "
			    "the account's %lld", name, (long long)c[9],
			    (long long)vs->modseq);
		sqlite3_bind_int64(mx, 1, id);
		if (sqlite3_step(mx) == SQLITE_ROW &&
		    sqlite3_column_type(mx, 0) != SQLITE_NULL) {
			maxuid = sqlite3_column_int64(mx, 0);
			maxmodseq = sqlite3_column_int64(mx, 1);
			if (maxuid >= c[3])
				vd_problem(vd, account, "mailbox %s: uid %lld "
				    "not below uidnext %lld", name,
				    (long long)maxuid, (long long)c[3]);
			if (maxmodseq > c[9])
				vd_problem(vd, account, "mailbox %s: a message "
				    "has modseq %lld, above the mailbox's %lld",
				    name, (long long)maxmodseq,
				    (long long)c[9]);
		}
		sqlite3_reset(mx);
		sqlite3_bind_int64(cnt, 1, id);
		if (sqlite3_step(cnt) == SQLITE_ROW) {
			for (i = 0; i < 4; i++)
				real[i] = sqlite3_column_int64(cnt, i);
#define VD_COUNT(what, stored, r) \
	if ((stored) != (r)) \
		vd_problem(vd, account, "mailbox %s: " what " count %lld, " \
		    "messages say %lld", name, (long long)(stored), \
		    (long long)(r))
			VD_COUNT("total", c[4], real[0]);
			VD_COUNT("unread", c[5], real[1]);
			VD_COUNT("unseen", c[6], real[1]);
			VD_COUNT("deleted", c[7], real[2]);
			VD_COUNT("size", c[8], real[3]);
#undef VD_COUNT
		}
		sqlite3_reset(cnt);
	}
	sqlite3_finalize(mx);
	sqlite3_finalize(cnt);
	sqlite3_finalize(st);
}

static void
vd_messages(struct vd *vd, const char *account, const char *accdir,
    sqlite3 *db, const struct vd_state *vs)
{
	sqlite3_stmt *st;
	struct stat sb;
	const char *mbname;
	char *path;
	int64_t id, size, prefix_len, modseq;
	bool expunged;
	uint32_t uid;

	if ((st = vd_prepare(vd, account, db, SQL_MESSAGES)) == NULL)
		return;
	while (sqlite3_step(st) == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		uid = (uint32_t)sqlite3_column_int64(st, 2);
		size = sqlite3_column_int64(st, 3);
		prefix_len = sqlite3_column_int64(st, 4);
		expunged = sqlite3_column_int(st, 5) != 0;
		mbname = (const char *)sqlite3_column_text(st, 6);
		if (mbname == NULL)
			mbname = "?";
		modseq = sqlite3_column_int64(st, 7);
		if (id <= 0 || id >= vs->next_msg_id)
			vd_problem(vd, account, "message %lld (%s uid %u): id "
			    "not below the next id %lld", (long long)id,
			    mbname, uid, (long long)vs->next_msg_id);
		if (modseq > vs->modseq)
			vd_problem(vd, account, "message %lld (%s uid %u): "
			    "modseq %lld above the account's %lld",
			    (long long)id, mbname, uid, (long long)modseq,
			    (long long)vs->modseq);
		/* Tombstones may keep their file until every session has
		 * seen the expunge: both are fine. */
		if (expunged)
			continue;
		vd->messages++;
		path = cli_tools_msg_path(accdir, id);
		if (stat(path, &sb) == -1)
			vd_problem(vd, account, "message %lld (%s uid %u): "
			    "file missing", (long long)id, mbname, uid);
		else if (!S_ISREG(sb.st_mode))
			vd_problem(vd, account, "message %lld (%s uid %u): "
			    "%s is not a regular file", (long long)id, mbname,
			    uid, path);
		else if (size - prefix_len != (int64_t)sb.st_size)
			vd_problem(vd, account, "message %lld (%s uid %u): "
			    "file size %lld, expected %lld (size %lld - "
			    "prefix %lld)", (long long)id, mbname, uid,
			    (long long)sb.st_size,
			    (long long)(size - prefix_len), (long long)size,
			    (long long)prefix_len);
		free(path);
	}
	sqlite3_finalize(st);
}

/* Every file under msg/ belongs to a row: msg/<id / 8192>/<id>. Files at
 * ids not yet handed out (>= next_msg_id) are what a transaction that died
 * before COMMIT left behind: the store reuses those ids, so they are not
 * problems. */
static void
vd_stray(struct vd *vd, const char *account, const char *accdir,
    sqlite3 *db, const struct vd_state *vs)
{
	sqlite3_stmt *st;
	DIR *top, *sub;
	struct dirent *de, *fe;
	char *msgdir = path_join(accdir, "msg"), *subdir, *end;
	long long dirno, id;

	if ((st = vd_prepare(vd, account, db, SQL_ID_EXISTS)) == NULL) {
		free(msgdir);
		return;
	}
	if ((top = opendir(msgdir)) == NULL) {
		if (errno != ENOENT)
			vd_problem(vd, account, "%s: %s", msgdir,
			    strerror(errno));
		free(msgdir);
		sqlite3_finalize(st);
		return;
	}
	while ((de = readdir(top)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		subdir = path_join(msgdir, de->d_name);
		dirno = strtoll(de->d_name, &end, 10);
		if (*end != '\0' || dirno < 0 ||
		    (sub = opendir(subdir)) == NULL) {
			vd_problem(vd, account, "stray file %s", subdir);
			free(subdir);
			continue;
		}
		while ((fe = readdir(sub)) != NULL) {
			if (strcmp(fe->d_name, ".") == 0 ||
			    strcmp(fe->d_name, "..") == 0)
				continue;
			id = strtoll(fe->d_name, &end, 10);
			if (*end != '\0' || id <= 0 ||
			    id / CLI_TOOLS_FILES_PER_DIR != dirno) {
				vd_problem(vd, account, "stray file %s/%s",
				    subdir, fe->d_name);
				continue;
			}
			if (id >= vs->next_msg_id) {
				vd->leftovers++;
				continue;
			}
			vd->files++;
			sqlite3_bind_int64(st, 1, id);
			if (sqlite3_step(st) != SQLITE_ROW)
				vd_problem(vd, account, "stray file %s/%s: no "
				    "message %lld in the database", subdir,
				    fe->d_name, id);
			sqlite3_reset(st);
		}
		closedir(sub);
		free(subdir);
	}
	closedir(top);
	sqlite3_finalize(st);
	free(msgdir);
}

static int
vd_state(struct vd *vd, const char *account, sqlite3 *db,
    struct vd_state *vs)
{
	sqlite3_stmt *st;
	int ret = -1;

	if ((st = vd_prepare(vd, account, db, SQL_STATE)) == NULL)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW) {
		vs->modseq = sqlite3_column_int64(st, 0);
		vs->next_msg_id = sqlite3_column_int64(st, 1);
		ret = 0;
	} else
		vd_problem(vd, account, "no state row: %s",
		    sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return ret;
}

static void
vd_account(struct vd *vd, const char *accdir, const char *name)
{
	char *dbpath = path_join(accdir, "index.db");
	struct vd_state vs;
	sqlite3 *db;
	struct stat st;

	vd->accounts++;
	if (stat(dbpath, &st) == -1) {
		vd_problem(vd, name, "%s: %s", dbpath, strerror(errno));
		free(dbpath);
		return;
	}
	if ((db = vd_open(vd, name, dbpath)) != NULL) {
		/* One read transaction: a consistent view while the server
		 * writes. */
		sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
		if (vd_state(vd, name, db, &vs) == 0) {
			vd_mailboxes(vd, name, db, &vs);
			vd_messages(vd, name, accdir, db, &vs);
			vd_stray(vd, name, accdir, db, &vs);
		}
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(db);
	}
	free(dbpath);
}

/* Other databases anywhere in the data dir (auth.db, queue/queue.db...):
 * they open and pass the integrity check. */
static void
vd_other_dbs(struct vd *vd, const char *dir, int depth)
{
	DIR *d;
	struct dirent *de;
	struct stat st;
	char *p;
	sqlite3 *db;

	if (depth > 8 || (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (depth == 0 && (strcmp(de->d_name, "accounts") == 0 ||
		    strcmp(de->d_name, "tmp") == 0))
			continue;
		p = path_join(dir, de->d_name);
		if (lstat(p, &st) == -1)
			;	/* gone meanwhile */
		else if (S_ISDIR(st.st_mode))
			vd_other_dbs(vd, p, depth + 1);
		else if (S_ISREG(st.st_mode) && has_suffix(de->d_name, ".db") &&
		    (db = vd_open(vd, NULL, p)) != NULL)
			sqlite3_close(db);
		free(p);
	}
	closedir(d);
}

int
osp_cli_verifydata(struct osp_cli *cli, int argc, char **argv)
{
	struct vd vd = { 0 };
	DIR *d;
	struct dirent *de;
	struct stat st;
	char *accounts, *accdir;

	(void)cli;
	if (argc != 2)
		return osp_cli_cmd_usage("verifydata");
	if (stat(argv[1], &st) == -1) {
		fprintf(stderr, "osprey: verifydata: %s: %s\n", argv[1],
		    strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "osprey: verifydata: %s: not a directory\n",
		    argv[1]);
		return 1;
	}
	accounts = path_join(argv[1], "accounts");
	if ((d = opendir(accounts)) == NULL) {
		if (errno != ENOENT)
			vd_problem(&vd, NULL, "%s: %s", accounts,
			    strerror(errno));
	} else {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			accdir = path_join(accounts, de->d_name);
			if (stat(accdir, &st) == 0 && S_ISDIR(st.st_mode))
				vd_account(&vd, accdir, de->d_name);
			else
				vd_problem(&vd, NULL, "stray file %s", accdir);
			free(accdir);
		}
		closedir(d);
	}
	free(accounts);
	vd_other_dbs(&vd, argv[1], 0);
	if (vd.problems > 0) {
		printf("verifydata %s: %u problem%s\n", argv[1], vd.problems,
		    vd.problems == 1 ? "" : "s");
		return 1;
	}
	printf("verifydata %s: ok: %u accounts, %u mailboxes, %lu messages, "
	    "%lu files, %u databases", argv[1], vd.accounts, vd.mailboxes,
	    vd.messages, vd.files, vd.dbs);
	if (vd.leftovers > 0)
		printf(" (%lu files of uncommitted deliveries, reused by the "
		    "store)", vd.leftovers);
	putchar('\n');
	return 0;
}
