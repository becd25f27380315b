/* SPDX-License-Identifier: ISC */
/* Per-account sending history (sendlog.h): <data-dir>/sendlog.db, for the
 * daily limits on outgoing messages and first-time recipients. */
#include "core.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

/*
 * Two tables. `messages` has one row per accepted outgoing message, kept
 * 24 hours (pruned as rows are written) for the message count.
 * `recipients` has one row per (account, recipient) ever sent to: a
 * recipient is first-time when it has no row, and the first-time count
 * of the last 24 hours is the rows whose first_sent is in that window.
 * Those rows are kept: the point is to remember who was written to
 * before (as mox, which counts recipients not seen in earlier messages).
 *
 * Recipients are stored with ASCII letters lower-cased: the domain is
 * case-insensitive (RFC 5321 §2.4) and, although a local part may be
 * case-sensitive, treating Bob@ and bob@ as one recipient only makes the
 * limit stricter. Non-ASCII (SMTPUTF8) is compared as given (callers
 * pass canonical addresses).
 */

#define SENDLOG_DAY	86400

enum {
	ST_COUNT_MSGS = 0,
	ST_COUNT_FIRST,
	ST_ADD_MSG,
	ST_ADD_RCPT,
	ST_PRUNE,
	ST_N
};

static const char *const sendlog_sql[ST_N] = {
	[ST_COUNT_MSGS] = "SELECT count(*) FROM messages "
	    "WHERE account = ? AND time > ?",
	[ST_COUNT_FIRST] = "SELECT count(*) FROM recipients "
	    "WHERE account = ? AND first_sent > ?",
	[ST_ADD_MSG] = "INSERT INTO messages (account, time, nrcpts) "
	    "VALUES (?, ?, ?)",
	[ST_ADD_RCPT] = "INSERT INTO recipients "
	    "(account, rcpt, first_sent, last_sent) VALUES (?, ?, ?, ?) "
	    "ON CONFLICT (account, rcpt) DO UPDATE SET "
	    "last_sent = max(last_sent, excluded.last_sent)",
	[ST_PRUNE] = "DELETE FROM messages WHERE time <= ?",
};

static const char sendlog_schema[] =
	"CREATE TABLE IF NOT EXISTS messages ("
	" id INTEGER PRIMARY KEY,"
	" account TEXT NOT NULL,"
	" time INTEGER NOT NULL,"
	" nrcpts INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS messages_account_time"
	" ON messages (account, time);"
	"CREATE INDEX IF NOT EXISTS messages_time ON messages (time);"
	"CREATE TABLE IF NOT EXISTS recipients ("
	" account TEXT NOT NULL,"
	" rcpt TEXT NOT NULL,"
	" first_sent INTEGER NOT NULL,"
	" last_sent INTEGER NOT NULL,"
	" PRIMARY KEY (account, rcpt)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS recipients_first"
	" ON recipients (account, first_sent);"
	"PRAGMA user_version = 1;";

struct osp_sendlog {
	pthread_mutex_t	 lock;
	sqlite3		*db;
	sqlite3_stmt	*st[ST_N];
};

static struct osp_sendlog *sendlog_current;

int
osp_sendlog_open(const char *data_dir, struct osp_sendlog **log_r,
    const char **error_r)
{
	struct osp_sendlog *log;
	int rc, i;

	*log_r = NULL;
	log = osp_calloc(1, sizeof(*log));
	pthread_mutex_init(&log->lock, NULL);
	rc = osp_sqlite_open_private(data_dir, "sendlog.db", NULL, &log->db,
	    error_r);
	if (rc != OSP_OK) {
		osp_sendlog_close(log);
		return rc;
	}
	if (sqlite3_exec(log->db, sendlog_schema, NULL, NULL, NULL) !=
	    SQLITE_OK)
		goto fail;
	for (i = 0; i < ST_N; i++)
		if (sqlite3_prepare_v3(log->db, sendlog_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &log->st[i], NULL) != SQLITE_OK)
			goto fail;
	*log_r = log;
	return OSP_OK;
fail:
	*error_r = "cannot open sendlog.db";
	osp_log_err("sendlog", "open sendlog.db: %s", log->db != NULL ?
	    sqlite3_errmsg(log->db) : "out of memory");
	osp_sendlog_close(log);
	return OSP_ERROR;
}

void
osp_sendlog_close(struct osp_sendlog *log)
{
	int i;

	if (log == NULL)
		return;
	for (i = 0; i < ST_N; i++)
		sqlite3_finalize(log->st[i]);
	sqlite3_close_v2(log->db);
	pthread_mutex_destroy(&log->lock);
	osp_free(log);
}

struct osp_sendlog *
osp_sendlog_current(void)
{
	return sendlog_current;
}

void
osp_sendlog_set_current(struct osp_sendlog *log)
{
	sendlog_current = log;
}

/* Runs a reset statement whose one result column is an integer. */
static int
sendlog_count(sqlite3_stmt *st, int64_t *n_r)
{
	int rc = sqlite3_step(st);

	*n_r = 0;
	if (rc == SQLITE_ROW) {
		*n_r = sqlite3_column_int64(st, 0);
		rc = OSP_OK;
	} else if (rc == SQLITE_DONE)
		rc = OSP_OK;
	else
		rc = OSP_ERROR;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static int
sendlog_exec(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? OSP_OK : OSP_ERROR;
}

static char *
sendlog_lower(const char *s)
{
	char *l = osp_strdup(s), *p;

	for (p = l; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return l;
}

int
osp_sendlog_check_add(struct osp_sendlog *log, const char *account,
    const char *const *rcpts, size_t n, int64_t now, int64_t max_messages,
    int64_t max_first_time, enum osp_sendlog_limit *limit_r,
    const char **error_r)
{
	sqlite3_stmt **st = log->st;
	int64_t since = now - SENDLOG_DAY, count;
	char *r;
	size_t i;
	int rc;

	*limit_r = OSP_SENDLOG_OK;
	pthread_mutex_lock(&log->lock);
	/* IMMEDIATE: the check and the write are one decision, even with
	 * another process (osprey CLI) on the file. */
	if (sqlite3_exec(log->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		rc = OSP_ERROR;
		goto out;
	}
	rc = OSP_OK;
	if (max_messages > 0) {
		sqlite3_bind_text(st[ST_COUNT_MSGS], 1, account, -1,
		    SQLITE_STATIC);
		sqlite3_bind_int64(st[ST_COUNT_MSGS], 2, since);
		if ((rc = sendlog_count(st[ST_COUNT_MSGS], &count)) != OSP_OK)
			goto rollback;
		if (count >= max_messages) {
			*limit_r = OSP_SENDLOG_MESSAGES;
			goto rollback;
		}
	}
	/* The recipients first: a new row has first_sent = now, so the
	 * count below includes this message's first-time recipients (each
	 * once, however often it is listed). Over the limit, the rollback
	 * undoes them. */
	for (i = 0; i < n && rc == OSP_OK; i++) {
		r = sendlog_lower(rcpts[i]);
		sqlite3_bind_text(st[ST_ADD_RCPT], 1, account, -1,
		    SQLITE_STATIC);
		sqlite3_bind_text(st[ST_ADD_RCPT], 2, r, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st[ST_ADD_RCPT], 3, now);
		sqlite3_bind_int64(st[ST_ADD_RCPT], 4, now);
		rc = sendlog_exec(st[ST_ADD_RCPT]);
		osp_free(r);
	}
	if (rc != OSP_OK)
		goto rollback;
	if (max_first_time > 0) {
		sqlite3_bind_text(st[ST_COUNT_FIRST], 1, account, -1,
		    SQLITE_STATIC);
		sqlite3_bind_int64(st[ST_COUNT_FIRST], 2, since);
		if ((rc = sendlog_count(st[ST_COUNT_FIRST], &count)) != OSP_OK)
			goto rollback;
		if (count > max_first_time) {
			*limit_r = OSP_SENDLOG_FIRST_TIME;
			goto rollback;
		}
	}
	sqlite3_bind_text(st[ST_ADD_MSG], 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st[ST_ADD_MSG], 2, now);
	sqlite3_bind_int64(st[ST_ADD_MSG], 3, (int64_t)n);
	sqlite3_bind_int64(st[ST_PRUNE], 1, since);
	if ((rc = sendlog_exec(st[ST_ADD_MSG])) != OSP_OK ||
	    (rc = sendlog_exec(st[ST_PRUNE])) != OSP_OK)
		goto rollback;
	if (sqlite3_exec(log->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		rc = OSP_ERROR;
		goto rollback;
	}
	pthread_mutex_unlock(&log->lock);
	return OSP_OK;
rollback:
	/* Logged before ROLLBACK replaces the error message. */
	if (rc != OSP_OK)
		osp_log_err("sendlog", "sendlog.db: %s",
		    sqlite3_errmsg(log->db));
	sqlite3_exec(log->db, "ROLLBACK", NULL, NULL, NULL);
	goto done;
out:
	osp_log_err("sendlog", "sendlog.db: %s", sqlite3_errmsg(log->db));
done:
	if (rc != OSP_OK) {
		*error_r = "sendlog.db write failed";
		*limit_r = OSP_SENDLOG_OK;
	}
	pthread_mutex_unlock(&log->lock);
	return rc;
}
