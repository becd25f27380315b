/* SPDX-License-Identifier: ISC */
/* Unit tests: the message store through its public API (store.h) on the
 * SQLite backend: every operation, its modseq and count effects, and a
 * SIGKILL durability test. OSPREY_STORE_CHECK=1 checks counts at close. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <osprey/store.h>

#include "testutil.h"

static const char msg_a[] =
    "From: Alice <alice@example.org>\r\n"
    "To: Bob <bob@example.org>\r\n"
    "Subject: Hello there\r\n"
    "Message-ID: <a1@example.org>\r\n"
    "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    "\r\n"
    "First message body, plain text.\r\n";
static const char msg_reply[] =
    "From: Bob <bob@example.org>\r\n"
    "To: Alice <alice@example.org>\r\n"
    "Subject: Re: Hello there\r\n"
    "Message-ID: <b1@example.org>\r\n"
    "In-Reply-To: <a1@example.org>\r\n"
    "References: <a1@example.org>\r\n"
    "\r\n"
    "A reply.\r\n";
static const char msg_other[] =
    "From: Carol <carol@example.org>\r\n"
    "Subject: Unrelated\r\n"
    "Message-ID: <c1@example.org>\r\n"
    "\r\n"
    "Something else.\r\n";
static const char prefix_text[] = "Received: from test by test\r\n";

struct fx {
	char			 dir[4096];
	struct osp_store	*store;
	struct osp_account	*acc;
	struct osp_pool		*pool;
	int			 nfiles;
};

static void
fx_open_account(struct fx *f)
{
	const char *err = NULL;

	CU_ASSERT_FATAL(osp_account_open(f->store, "alice", true, &f->acc,
	    &err) == OSP_OK);
}

static void
fx_init(struct fx *f)
{
	static int n;
	const char *err = NULL;

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "%s/data%d", osp_test_tmpdir(), ++n);
	CU_ASSERT_FATAL(mkdir(f->dir, 0700) == 0);
	CU_ASSERT_FATAL(osp_store_open(f->dir, &f->store, &err) == OSP_OK);
	fx_open_account(f);
	f->pool = osp_pool_new(NULL);
}

static void
fx_reopen(struct fx *f)
{
	osp_account_unref(f->acc);	/* runs the consistency check */
	f->acc = NULL;
	fx_open_account(f);
}

static void
fx_deinit(struct fx *f)
{
	osp_account_unref(f->acc);
	osp_store_close(f->store);
	osp_pool_free(f->pool);
}

/* Writes a message file into the store's tmp dir. */
static char *
fx_file(struct fx *f, const char *text)
{
	char name[32];

	snprintf(name, sizeof(name), "m%d.eml", ++f->nfiles);
	return osp_test_write_file(osp_store_tmpdir(f->store), name, text);
}

static int64_t
fx_mbox(struct fx *f, const char *name, struct osp_mailbox *mb_r)
{
	struct osp_mailbox mb;
	const char *err = NULL;

	if (mb_r == NULL)
		mb_r = &mb;
	CU_ASSERT_FATAL(osp_mailbox_get(f->acc, name, f->pool, mb_r, &err) ==
	    OSP_OK);
	return mb_r->id;
}

static uint32_t
fx_append(struct fx *f, int64_t mbid, const char *text, uint32_t flags,
    const char *const *kw, bool prefix, int64_t *id_r)
{
	struct osp_store_new_msg m = { 0 };
	const char *err = NULL;
	char *path = fx_file(f, text);
	uint32_t uid = 0;
	int rc;

	m.path = path;
	m.flags = flags;
	m.keywords = kw;
	if (prefix) {
		m.prefix = prefix_text;
		m.prefix_len = strlen(prefix_text);
	}
	rc = osp_message_append(f->acc, mbid, &m, &uid, id_r, &err);
	if (rc != OSP_OK)
		fprintf(stderr, "append: %s\n", err);
	CU_ASSERT_FATAL(rc == OSP_OK);
	unlink(path);
	free(path);
	return uid;
}

static uint64_t
fx_modseq(struct fx *f)
{
	const char *err = NULL;
	uint64_t m = 0;

	CU_ASSERT(osp_account_modseq(f->acc, &m, &err) == OSP_OK);
	return m;
}

/* The mailbox's counts must equal what its messages say. */
static void
fx_check_counts(struct fx *f, int64_t mbid)
{
	struct osp_mailbox mb;
	struct osp_message *v;
	const char *err = NULL;
	uint32_t unread = 0, deleted = 0;
	uint64_t size = 0;
	size_t n, i;

	CU_ASSERT_FATAL(osp_mailbox_get_id(f->acc, mbid, f->pool, &mb, &err) ==
	    OSP_OK);
	CU_ASSERT_FATAL(osp_message_list(f->acc, mbid, NULL, 0, f->pool, &v,
	    &n, &err) == OSP_OK);
	for (i = 0; i < n; i++) {
		unread += !(v[i].flags & OSP_FLAG_SEEN);
		deleted += !!(v[i].flags & OSP_FLAG_DELETED);
		size += v[i].size;
		CU_ASSERT(v[i].uid < mb.uidnext);
	}
	CU_ASSERT_EQUAL(mb.total, n);
	CU_ASSERT_EQUAL(mb.unread, unread);
	CU_ASSERT_EQUAL(mb.unseen, unread);
	CU_ASSERT_EQUAL(mb.deleted, deleted);
	CU_ASSERT_EQUAL(mb.size, size);
}

static struct osp_message *
fx_get(struct fx *f, int64_t mbid, uint32_t uid, uint32_t with)
{
	struct osp_uid_range r = { uid, uid };
	struct osp_uidset set = { &r, 1 };
	struct osp_message *v = NULL;
	const char *err = NULL;
	size_t n = 0;

	CU_ASSERT_FATAL(osp_message_list(f->acc, mbid, &set, with, f->pool,
	    &v, &n, &err) == OSP_OK);
	return n == 1 ? &v[0] : NULL;
}

static bool
has_kw(const struct osp_message *m, const char *k)
{
	size_t i;

	for (i = 0; m->keywords != NULL && m->keywords[i] != NULL; i++)
		if (strcmp(m->keywords[i], k) == 0)
			return true;
	return false;
}

/* ---- tests ----------------------------------------------------------- */

static void
test_defaults(void)
{
	static const char *names[] = { "Archive", "Drafts", "Inbox", "Junk",
	    "Sent", "Trash" };
	static const uint32_t uses[] = { OSP_USE_ARCHIVE, OSP_USE_DRAFTS, 0,
	    OSP_USE_JUNK, OSP_USE_SENT, OSP_USE_TRASH };
	struct osp_account *none = NULL;
	struct osp_mailbox *v, mb;
	const char **subs;
	const char *err = NULL;
	struct fx f;
	size_t n, i;

	fx_init(&f);
	CU_ASSERT(osp_mailbox_list(f.acc, f.pool, &v, &n, &err) == OSP_OK);
	CU_ASSERT_FATAL(n == 6);
	for (i = 0; i < n; i++) {
		CU_ASSERT_STRING_EQUAL(v[i].name, names[i]);
		CU_ASSERT_EQUAL(v[i].special_use, uses[i]);
		CU_ASSERT(v[i].subscribed);
		CU_ASSERT(v[i].uidvalidity != 0);
		CU_ASSERT_EQUAL(v[i].uidnext, 1);
		CU_ASSERT_EQUAL(v[i].total, 0);
		if (i > 0)
			CU_ASSERT(v[i].id != v[i - 1].id);
	}
	CU_ASSERT(osp_mailbox_subscriptions(f.acc, f.pool, &subs, &n,
	    &err) == OSP_OK);
	CU_ASSERT_EQUAL(n, 6);
	/* INBOX in any case. */
	CU_ASSERT(osp_mailbox_get(f.acc, "INBOX", f.pool, &mb, &err) == OSP_OK);
	CU_ASSERT_STRING_EQUAL(mb.name, "Inbox");
	CU_ASSERT(osp_mailbox_get(f.acc, "inBox", f.pool, &mb, &err) == OSP_OK);
	CU_ASSERT(osp_mailbox_get(f.acc, "sent", f.pool, &mb, &err) ==
	    -ENOENT);
	CU_ASSERT(osp_account_open(f.store, "nobody", false, &none, &err) ==
	    -ENOENT);
	CU_ASSERT(none == NULL);
	fx_deinit(&f);
}

static void
test_schema_version(void)
{
	char path[4200];
	sqlite3 *db;
	sqlite3_stmt *st;
	struct fx f;
	int i;

	fx_init(&f);
	fx_append(&f, fx_mbox(&f, "Inbox", NULL), msg_a, 0, NULL, false,
	    NULL);
	/* Re-opening runs the migrations again: nothing to do, nothing
	 * lost, no duplicate default mailboxes. */
	for (i = 0; i < 3; i++)
		fx_reopen(&f);
	{
		struct osp_mailbox *v;
		const char *err = NULL;
		size_t n;

		CU_ASSERT(osp_mailbox_list(f.acc, f.pool, &v, &n, &err) ==
		    OSP_OK);
		CU_ASSERT_EQUAL(n, 6);
		CU_ASSERT_EQUAL(v[2].total, 1);
	}
	osp_account_unref(f.acc);
	f.acc = NULL;
	snprintf(path, sizeof(path), "%s/accounts/alice/index.db", f.dir);
	CU_ASSERT_FATAL(sqlite3_open(path, &db) == SQLITE_OK);
	CU_ASSERT(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st,
	    NULL) == SQLITE_OK);
	CU_ASSERT(sqlite3_step(st) == SQLITE_ROW);
	CU_ASSERT_EQUAL(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	CU_ASSERT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st,
	    NULL) == SQLITE_OK);
	CU_ASSERT(sqlite3_step(st) == SQLITE_ROW);
	CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 0),
	    "wal");
	sqlite3_finalize(st);
	/* A database from a newer program is refused, not mangled. */
	CU_ASSERT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL,
	    NULL) == SQLITE_OK);
	sqlite3_close(db);
	{
		const char *err = NULL;

		CU_ASSERT(osp_account_open(f.store, "alice", false, &f.acc,
		    &err) != OSP_OK);
		CU_ASSERT(f.acc == NULL);
	}
	osp_store_close(f.store);
	osp_pool_free(f.pool);
}

static void
test_append(void)
{
	static const char *kw[] = { "$Junk", "work", NULL };
	struct osp_mailbox mb, mb2;
	struct osp_message *m;
	char path[4200], buf[512];
	const char *err = NULL;
	uint64_t before, after, asize = 0;
	struct stat sb;
	int64_t inbox, id = 0, id2 = 0;
	uint32_t uid;
	ssize_t r;
	int fd = -1;
	struct fx f;

	fx_init(&f);
	inbox = fx_mbox(&f, "Inbox", &mb);
	before = fx_modseq(&f);
	uid = fx_append(&f, inbox, msg_a, OSP_FLAG_FLAGGED, kw, true, &id);
	CU_ASSERT_EQUAL(uid, 1);
	after = fx_modseq(&f);
	CU_ASSERT(after > before);
	fx_mbox(&f, "Inbox", &mb2);
	CU_ASSERT_EQUAL(mb2.uidnext, 2);
	CU_ASSERT_EQUAL(mb2.total, 1);
	CU_ASSERT_EQUAL(mb2.unread, 1);
	CU_ASSERT_EQUAL(mb2.size, strlen(msg_a) + strlen(prefix_text));
	CU_ASSERT_EQUAL(mb2.modseq, after);
	CU_ASSERT_EQUAL(mb2.uidvalidity, mb.uidvalidity);

	/* The file under msg/<id/8192>/<id>, without the prefix. */
	snprintf(path, sizeof(path), "%s/accounts/alice/msg/%lld/%lld",
	    f.dir, (long long)(id / 8192), (long long)id);
	CU_ASSERT(stat(path, &sb) == 0);
	CU_ASSERT_EQUAL(sb.st_size, (off_t)strlen(msg_a));

	m = fx_get(&f, inbox, uid, OSP_MSG_WITH_PREFIX |
	    OSP_MSG_WITH_STRUCTURE | OSP_MSG_WITH_PREVIEW |
	    OSP_MSG_WITH_KEYWORDS);
	CU_ASSERT_FATAL(m != NULL);
	CU_ASSERT_EQUAL(m->id, id);
	CU_ASSERT_EQUAL(m->mailbox_id, inbox);
	CU_ASSERT_EQUAL(m->flags, OSP_FLAG_FLAGGED);
	CU_ASSERT_EQUAL(m->modseq, after);
	CU_ASSERT_EQUAL(m->createseq, after);
	CU_ASSERT_EQUAL(m->size, strlen(msg_a) + strlen(prefix_text));
	CU_ASSERT_EQUAL(m->prefix_len, strlen(prefix_text));
	CU_ASSERT(memcmp(m->prefix, prefix_text, m->prefix_len) == 0);
	CU_ASSERT(m->structure != NULL && m->structure_len > 0);
	CU_ASSERT(m->preview != NULL &&
	    strstr(m->preview, "First message body") != NULL);
	CU_ASSERT(has_kw(m, "work") && has_kw(m, "$Junk"));
	CU_ASSERT(m->received > 0 && m->savedate > 0);
	CU_ASSERT(!m->expunged);
	CU_ASSERT_EQUAL(m->thread_id, id);

	/* Reading it back. */
	CU_ASSERT(osp_message_open(f.acc, id, &fd, &err) == OSP_OK);
	r = read(fd, buf, sizeof(buf));
	CU_ASSERT_EQUAL(r, (ssize_t)strlen(msg_a));
	CU_ASSERT(r > 0 && memcmp(buf, msg_a, (size_t)r) == 0);
	close(fd);
	CU_ASSERT(osp_message_open(f.acc, 999999, &fd, &err) == -ENOENT);

	/* A reply joins the thread; an unrelated message does not. */
	uid = fx_append(&f, inbox, msg_reply, OSP_FLAG_SEEN, NULL, false,
	    &id2);
	CU_ASSERT_EQUAL(uid, 2);
	m = fx_get(&f, inbox, uid, 0);
	CU_ASSERT_FATAL(m != NULL);
	CU_ASSERT_EQUAL(m->thread_id, id);
	uid = fx_append(&f, inbox, msg_other, 0, NULL, false, &id2);
	m = fx_get(&f, inbox, uid, 0);
	CU_ASSERT_FATAL(m != NULL);
	CU_ASSERT_EQUAL(m->thread_id, id2);

	fx_mbox(&f, "Inbox", &mb2);
	CU_ASSERT_EQUAL(mb2.total, 3);
	CU_ASSERT_EQUAL(mb2.unread, 2);
	CU_ASSERT(osp_account_size(f.acc, &asize, &err) == OSP_OK);
	CU_ASSERT_EQUAL(asize, mb2.size);
	fx_check_counts(&f, inbox);

	/* Bad input is refused and leaves nothing behind. */
	{
		static const char *bad[] = { "has space", NULL };
		struct osp_store_new_msg nm = { 0 };
		char *p = fx_file(&f, msg_a);

		nm.path = p;
		nm.keywords = bad;
		before = fx_modseq(&f);
		CU_ASSERT(osp_message_append(f.acc, inbox, &nm, &uid, NULL,
		    &err) == -EINVAL);
		nm.keywords = NULL;
		CU_ASSERT(osp_message_append(f.acc, 424242, &nm, &uid, NULL,
		    &err) == -ENOENT);
		nm.path = "/nonexistent/file";
		CU_ASSERT(osp_message_append(f.acc, inbox, &nm, &uid, NULL,
		    &err) == -ENOENT);
		CU_ASSERT_EQUAL(fx_modseq(&f), before);
		unlink(p);
		free(p);
	}
	fx_mbox(&f, "Inbox", &mb2);
	CU_ASSERT_EQUAL(mb2.uidnext, 4);
	fx_deinit(&f);
}

static void
test_append_batch(void)
{
	struct osp_store_new_msg m[3];
	uint32_t uids[3];
	const char *err = NULL;
	char *paths[3];
	int64_t inbox;
	uint64_t before;
	struct osp_mailbox mb;
	struct fx f;
	int i;

	fx_init(&f);
	inbox = fx_mbox(&f, "Inbox", NULL);
	memset(m, 0, sizeof(m));
	for (i = 0; i < 3; i++) {
		paths[i] = fx_file(&f, i == 1 ? msg_reply : msg_a);
		m[i].path = paths[i];
	}
	before = fx_modseq(&f);
	CU_ASSERT(osp_message_append_batch(f.acc, inbox, m, 3, uids, &err) ==
	    OSP_OK);
	CU_ASSERT(uids[0] == 1 && uids[1] == 2 && uids[2] == 3);
	/* One transaction, one modseq. */
	CU_ASSERT_EQUAL(fx_modseq(&f), before + 1);
	/* All or nothing: a missing file fails the whole batch. */
	m[2].path = "/nonexistent";
	CU_ASSERT(osp_message_append_batch(f.acc, inbox, m, 3, uids, &err) !=
	    OSP_OK);
	fx_mbox(&f, "Inbox", &mb);
	CU_ASSERT_EQUAL(mb.total, 3);
	CU_ASSERT_EQUAL(mb.uidnext, 4);
	fx_check_counts(&f, inbox);
	for (i = 0; i < 3; i++) {
		unlink(paths[i]);
		free(paths[i]);
	}
	fx_reopen(&f);
	fx_deinit(&f);
}

static void
test_list_uidset(void)
{
	struct osp_uid_range r[2] = { { 2, 3 }, { 5, UINT32_MAX } };
	struct osp_uidset set = { r, 2 };
	struct osp_message *v;
	const char *err = NULL;
	int64_t inbox;
	size_t n;
	struct fx f;
	int i;

	fx_init(&f);
	inbox = fx_mbox(&f, "Inbox", NULL);
	for (i = 0; i < 6; i++)
		fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	CU_ASSERT(osp_message_list(f.acc, inbox, &set, 0, f.pool, &v, &n,
	    &err) == OSP_OK);
	CU_ASSERT_FATAL(n == 4);
	CU_ASSERT(v[0].uid == 2 && v[1].uid == 3 && v[2].uid == 5 &&
	    v[3].uid == 6);
	CU_ASSERT(v[0].keywords == NULL && v[0].preview == NULL &&
	    v[0].structure == NULL);
	r[0].first = 4;
	r[0].last = 1;
	CU_ASSERT(osp_message_list(f.acc, inbox, &set, 0, f.pool, &v, &n,
	    &err) == -EINVAL);
	CU_ASSERT(osp_message_list(f.acc, 987654, NULL, 0, f.pool, &v, &n,
	    &err) == -ENOENT);
	fx_deinit(&f);
}

static void
test_flags(void)
{
	static const char *kw1[] = { "work", "Later", NULL };
	static const char *kw2[] = { "later", "urgent", NULL };
	static const char *bad[] = { "\\Seen", NULL };
	struct osp_uid_range r1 = { 1, 1 }, r12 = { 1, 2 }, rall = { 1, 3 };
	struct osp_uidset s1 = { &r1, 1 }, s12 = { &r12, 1 },
	    sall = { &rall, 1 }, failed;
	struct osp_message *m;
	struct osp_mailbox mb;
	const char *err = NULL;
	uint64_t m0, m1, m2, seq_uid3;
	int64_t inbox;
	struct fx f;

	fx_init(&f);
	inbox = fx_mbox(&f, "Inbox", NULL);
	fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	seq_uid3 = fx_get(&f, inbox, 3, 0)->modseq;

	/* add \Seen to 1-2: unread 3 -> 1; uid 3 keeps its modseq. */
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &s12, OSP_STORE_ADD,
	    OSP_FLAG_SEEN, NULL, 0, f.pool, &failed, &err) == OSP_OK);
	CU_ASSERT_EQUAL(failed.n, 0);
	m1 = fx_modseq(&f);
	fx_mbox(&f, "Inbox", &mb);
	CU_ASSERT_EQUAL(mb.unread, 1);
	CU_ASSERT_EQUAL(mb.modseq, m1);
	CU_ASSERT_EQUAL(fx_get(&f, inbox, 1, 0)->modseq, m1);
	CU_ASSERT_EQUAL(fx_get(&f, inbox, 2, 0)->modseq, m1);
	CU_ASSERT_EQUAL(fx_get(&f, inbox, 3, 0)->modseq, seq_uid3);

	/* Adding what is there changes nothing: no modseq bump. */
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &s12, OSP_STORE_ADD,
	    OSP_FLAG_SEEN, NULL, 0, f.pool, &failed, &err) == OSP_OK);
	CU_ASSERT_EQUAL(fx_modseq(&f), m1);

	/* keywords: add, case-insensitive dedup, remove, set. */
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &s1, OSP_STORE_ADD,
	    OSP_FLAG_DELETED, kw1, 0, f.pool, &failed, &err) == OSP_OK);
	fx_mbox(&f, "Inbox", &mb);
	CU_ASSERT_EQUAL(mb.deleted, 1);
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &s1, OSP_STORE_ADD,
	    0, kw2, 0, f.pool, &failed, &err) == OSP_OK);
	m = fx_get(&f, inbox, 1, OSP_MSG_WITH_KEYWORDS);
	CU_ASSERT_FATAL(m != NULL && m->keywords != NULL);
	CU_ASSERT(has_kw(m, "work") && has_kw(m, "Later") &&
	    has_kw(m, "urgent"));
	CU_ASSERT(m->keywords[3] == NULL);
	CU_ASSERT_EQUAL(m->flags, OSP_FLAG_SEEN | OSP_FLAG_DELETED);
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &s1,
	    OSP_STORE_REMOVE, OSP_FLAG_DELETED, kw2, 0, f.pool, &failed,
	    &err) == OSP_OK);
	m = fx_get(&f, inbox, 1, OSP_MSG_WITH_KEYWORDS);
	CU_ASSERT(has_kw(m, "work") && !has_kw(m, "Later") &&
	    !has_kw(m, "urgent"));
	CU_ASSERT_EQUAL(m->flags, OSP_FLAG_SEEN);
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &s1, OSP_STORE_SET,
	    OSP_FLAG_ANSWERED, NULL, 0, f.pool, &failed, &err) == OSP_OK);
	m = fx_get(&f, inbox, 1, OSP_MSG_WITH_KEYWORDS);
	CU_ASSERT(m->keywords == NULL);
	CU_ASSERT_EQUAL(m->flags, OSP_FLAG_ANSWERED);
	fx_mbox(&f, "Inbox", &mb);
	CU_ASSERT_EQUAL(mb.unread, 2);
	CU_ASSERT_EQUAL(mb.deleted, 0);
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &s1, OSP_STORE_ADD,
	    0, bad, 0, f.pool, &failed, &err) == -EINVAL);

	/* UNCHANGEDSINCE (RFC 7162 §3.1.3): uid 1 changed after m1, so it
	 * fails; uids 2 and 3 are changed. */
	m0 = fx_get(&f, inbox, 1, 0)->modseq;
	CU_ASSERT(m0 > m1);
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &sall, OSP_STORE_ADD,
	    OSP_FLAG_FLAGGED, NULL, m1, f.pool, &failed, &err) == OSP_OK);
	CU_ASSERT_FATAL(failed.n == 1);
	CU_ASSERT(failed.r[0].first == 1 && failed.r[0].last == 1);
	m2 = fx_modseq(&f);
	CU_ASSERT(!(fx_get(&f, inbox, 1, 0)->flags & OSP_FLAG_FLAGGED));
	CU_ASSERT_EQUAL(fx_get(&f, inbox, 1, 0)->modseq, m0);
	CU_ASSERT(fx_get(&f, inbox, 2, 0)->flags & OSP_FLAG_FLAGGED);
	CU_ASSERT_EQUAL(fx_get(&f, inbox, 2, 0)->modseq, m2);
	CU_ASSERT_EQUAL(fx_get(&f, inbox, 3, 0)->modseq, m2);
	/* Everything unchanged since m2: nothing fails. */
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &sall,
	    OSP_STORE_REMOVE, OSP_FLAG_FLAGGED, NULL, m2, f.pool, &failed,
	    &err) == OSP_OK);
	CU_ASSERT_EQUAL(failed.n, 0);
	fx_check_counts(&f, inbox);
	fx_reopen(&f);
	fx_deinit(&f);
}

static void
test_copy_move(void)
{
	struct osp_uid_range r = { 1, 2 };
	struct osp_uidset set = { &r, 1 };
	struct osp_message *v, *m;
	struct osp_mailbox arch, in;
	uint32_t *su, *du;
	const char *err = NULL;
	char p1[4200], p2[4200];
	struct stat s1, s2;
	int64_t inbox, archive, id1 = 0;
	uint64_t before, after;
	size_t n, i;
	struct fx f;

	fx_init(&f);
	inbox = fx_mbox(&f, "Inbox", NULL);
	archive = fx_mbox(&f, "Archive", NULL);
	fx_append(&f, inbox, msg_a, OSP_FLAG_SEEN, NULL, true, &id1);
	fx_append(&f, inbox, msg_reply, 0, NULL, false, NULL);
	fx_append(&f, inbox, msg_other, OSP_FLAG_DELETED, NULL, false, NULL);

	/* copy: new uids, new ids, same inode. */
	CU_ASSERT(osp_message_copy(f.acc, inbox, &set, archive, f.pool, &su,
	    &du, &n, &err) == OSP_OK);
	CU_ASSERT_FATAL(n == 2);
	CU_ASSERT(su[0] == 1 && su[1] == 2 && du[0] == 1 && du[1] == 2);
	m = fx_get(&f, archive, 1, OSP_MSG_WITH_PREFIX |
	    OSP_MSG_WITH_STRUCTURE);
	CU_ASSERT_FATAL(m != NULL);
	CU_ASSERT(m->id != id1);
	CU_ASSERT_EQUAL(m->flags, OSP_FLAG_SEEN);
	CU_ASSERT_EQUAL(m->prefix_len, strlen(prefix_text));
	CU_ASSERT(m->structure_len > 0);
	snprintf(p1, sizeof(p1), "%s/accounts/alice/msg/0/%lld", f.dir,
	    (long long)id1);
	snprintf(p2, sizeof(p2), "%s/accounts/alice/msg/0/%lld", f.dir,
	    (long long)m->id);
	CU_ASSERT(stat(p1, &s1) == 0 && stat(p2, &s2) == 0);
	CU_ASSERT(s1.st_ino == s2.st_ino && s1.st_nlink >= 2);
	fx_mbox(&f, "Archive", &arch);
	CU_ASSERT(arch.total == 2 && arch.unread == 1 && arch.uidnext == 3);
	fx_mbox(&f, "Inbox", &in);
	CU_ASSERT_EQUAL(in.total, 3);
	fx_check_counts(&f, archive);

	/* move 1-2 of Inbox: rows go to Archive (uids 3, 4), tombstones at
	 * Inbox 1-2 show in changes since. */
	before = fx_modseq(&f);
	CU_ASSERT(osp_message_move(f.acc, inbox, &set, archive, f.pool, &su,
	    &du, &n, &err) == OSP_OK);
	CU_ASSERT_FATAL(n == 2);
	CU_ASSERT(du[0] == 3 && du[1] == 4);
	after = fx_modseq(&f);
	CU_ASSERT_EQUAL(after, before + 1);
	m = fx_get(&f, archive, 3, 0);
	CU_ASSERT_FATAL(m != NULL);
	CU_ASSERT_EQUAL(m->id, id1);		/* the file stays */
	CU_ASSERT_EQUAL(m->modseq, after);
	CU_ASSERT_EQUAL(m->createseq, after);
	CU_ASSERT(stat(p1, &s1) == 0);
	CU_ASSERT(fx_get(&f, inbox, 1, 0) == NULL);
	fx_mbox(&f, "Inbox", &in);
	fx_mbox(&f, "Archive", &arch);
	CU_ASSERT(in.total == 1 && in.deleted == 1 && in.unread == 1);
	CU_ASSERT(arch.total == 4 && arch.unread == 2);
	CU_ASSERT_EQUAL(in.modseq, after);
	CU_ASSERT(osp_message_changes(f.acc, inbox, before, f.pool, &v, &n,
	    &err) == OSP_OK);
	CU_ASSERT_FATAL(n == 2);
	for (i = 0; i < n; i++) {
		CU_ASSERT(v[i].expunged);
		CU_ASSERT_EQUAL(v[i].uid, i + 1);
		CU_ASSERT_EQUAL(v[i].modseq, after);
	}
	CU_ASSERT(osp_message_changes(f.acc, archive, before, f.pool, &v, &n,
	    &err) == OSP_OK);
	CU_ASSERT(n == 2 && !v[0].expunged && v[0].uid == 3);
	/* Moving nothing is fine and changes nothing. */
	CU_ASSERT(osp_message_move(f.acc, inbox, &set, archive, f.pool, &su,
	    &du, &n, &err) == OSP_OK);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(fx_modseq(&f), after);
	CU_ASSERT(osp_message_copy(f.acc, inbox, NULL, 55555, f.pool, &su,
	    &du, &n, &err) == -ENOENT);
	fx_check_counts(&f, inbox);
	fx_check_counts(&f, archive);
	fx_reopen(&f);
	fx_deinit(&f);
}

static void
test_expunge(void)
{
	struct osp_uid_range r = { 2, 3 };
	struct osp_uidset set = { &r, 1 };
	struct osp_message *v;
	struct osp_mailbox mb;
	const char *err = NULL;
	uint32_t *uids;
	uint64_t before, after;
	int64_t inbox, id2 = 0;
	size_t n;
	int fd;
	struct fx f;

	fx_init(&f);
	inbox = fx_mbox(&f, "Inbox", NULL);
	fx_append(&f, inbox, msg_a, OSP_FLAG_DELETED, NULL, false, NULL);
	fx_append(&f, inbox, msg_a, OSP_FLAG_DELETED | OSP_FLAG_SEEN, NULL,
	    false, &id2);
	fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	before = fx_modseq(&f);

	/* Only \Deleted messages in 2-3: just uid 2. */
	CU_ASSERT(osp_message_expunge(f.acc, inbox, &set, true, f.pool, &uids,
	    &n, &err) == OSP_OK);
	CU_ASSERT_FATAL(n == 1);
	CU_ASSERT_EQUAL(uids[0], 2);
	after = fx_modseq(&f);
	CU_ASSERT_EQUAL(after, before + 1);
	fx_mbox(&f, "Inbox", &mb);
	CU_ASSERT(mb.total == 3 && mb.deleted == 1 && mb.unread == 3);
	CU_ASSERT_EQUAL(mb.modseq, after);
	CU_ASSERT(osp_message_changes(f.acc, inbox, before, f.pool, &v, &n,
	    &err) == OSP_OK);
	CU_ASSERT_FATAL(n == 1);
	CU_ASSERT(v[0].uid == 2 && v[0].expunged && v[0].modseq == after);
	/* The file stays until the cleanup pass (sessions may fetch it). */
	CU_ASSERT(osp_message_open(f.acc, id2, &fd, &err) == OSP_OK);
	close(fd);

	/* All \Deleted: uid 1. Then everything in 3-4 regardless. */
	CU_ASSERT(osp_message_expunge(f.acc, inbox, NULL, true, f.pool, &uids,
	    &n, &err) == OSP_OK);
	CU_ASSERT(n == 1 && uids[0] == 1);
	r.first = 3;
	r.last = 4;
	CU_ASSERT(osp_message_expunge(f.acc, inbox, &set, false, f.pool,
	    &uids, &n, &err) == OSP_OK);
	CU_ASSERT(n == 2 && uids[0] == 3 && uids[1] == 4);
	fx_mbox(&f, "Inbox", &mb);
	CU_ASSERT(mb.total == 0 && mb.size == 0 && mb.unread == 0);
	/* Nothing to expunge: no modseq bump. */
	after = fx_modseq(&f);
	CU_ASSERT(osp_message_expunge(f.acc, inbox, NULL, false, f.pool,
	    &uids, &n, &err) == OSP_OK);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(fx_modseq(&f), after);
	/* uids are never reused. */
	CU_ASSERT_EQUAL(fx_append(&f, inbox, msg_a, 0, NULL, false, NULL), 5);
	CU_ASSERT(osp_message_changes(f.acc, inbox, 0, f.pool, &v, &n,
	    &err) == OSP_OK);
	CU_ASSERT_EQUAL(n, 5);
	fx_check_counts(&f, inbox);
	fx_reopen(&f);
	fx_deinit(&f);
}

static void
test_mailboxes(void)
{
	struct osp_mailbox mb, mb2, *v;
	const char **subs;
	const char *err = NULL;
	int64_t id = 0, id2 = 0, inbox, newbox;
	uint32_t uidv;
	uint64_t before;
	size_t n, i;
	struct fx f;

	fx_init(&f);
	/* Parents are created. */
	CU_ASSERT(osp_mailbox_create(f.acc, "Lists/osprey/dev", 0, &id,
	    &err) == OSP_OK);
	CU_ASSERT(osp_mailbox_get(f.acc, "Lists", f.pool, &mb, &err) ==
	    OSP_OK);
	CU_ASSERT(osp_mailbox_get(f.acc, "Lists/osprey", f.pool, &mb, &err) ==
	    OSP_OK);
	CU_ASSERT(osp_mailbox_get(f.acc, "Lists/osprey/dev", f.pool, &mb,
	    &err) == OSP_OK);
	CU_ASSERT_EQUAL(mb.id, id);
	CU_ASSERT(osp_mailbox_create(f.acc, "Lists/osprey/dev", 0, &id2,
	    &err) == -EEXIST);
	CU_ASSERT(osp_mailbox_create(f.acc, "INBOX", 0, &id2, &err) ==
	    -EEXIST);
	CU_ASSERT(osp_mailbox_create(f.acc, "inbox/sub", 0, &id2, &err) ==
	    OSP_OK);
	CU_ASSERT(osp_mailbox_get_id(f.acc, id2, f.pool, &mb, &err) ==
	    OSP_OK);
	CU_ASSERT_STRING_EQUAL(mb.name, "Inbox/sub");
	{
		static const char *bad[] = { "", "/a", "a/", "a//b", "a\tb",
		    "a\x7f", "\xff\xfe" };
		char longname[300];

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			CU_ASSERT(osp_mailbox_create(f.acc, bad[i], 0, &id2,
			    &err) == -EINVAL);
		memset(longname, 'x', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		CU_ASSERT(osp_mailbox_create(f.acc, longname, 0, &id2,
		    &err) == -EINVAL);
		CU_ASSERT(osp_mailbox_create(f.acc, "Böse Post", 0, &id2,
		    &err) == OSP_OK);
	}

	/* Rename with children: ids and uidvalidity stay. */
	fx_mbox(&f, "Lists/osprey", &mb);
	fx_append(&f, mb.id, msg_a, 0, NULL, false, NULL);
	CU_ASSERT(osp_mailbox_subscribe(f.acc, "Lists/osprey/dev", true,
	    &err) == OSP_OK);
	before = fx_modseq(&f);
	CU_ASSERT(osp_mailbox_rename(f.acc, "Lists", "Old/Lists", &err) ==
	    OSP_OK);
	CU_ASSERT(fx_modseq(&f) > before);
	CU_ASSERT(osp_mailbox_get(f.acc, "Lists", f.pool, &mb2, &err) ==
	    -ENOENT);
	CU_ASSERT(osp_mailbox_get(f.acc, "Old", f.pool, &mb2, &err) ==
	    OSP_OK);
	fx_mbox(&f, "Old/Lists/osprey", &mb2);
	CU_ASSERT(mb2.id == mb.id && mb2.uidvalidity == mb.uidvalidity &&
	    mb2.total == 1);
	fx_mbox(&f, "Old/Lists/osprey/dev", &mb2);
	CU_ASSERT_EQUAL(mb2.id, id);
	CU_ASSERT(mb2.subscribed);
	CU_ASSERT(osp_mailbox_rename(f.acc, "Old", "Old/Lists/x", &err) ==
	    -EINVAL);
	CU_ASSERT(osp_mailbox_rename(f.acc, "Old", "Sent", &err) == -EEXIST);
	CU_ASSERT(osp_mailbox_rename(f.acc, "Nope", "Nope2", &err) ==
	    -ENOENT);

	/* Renaming Inbox moves its messages and leaves it (and its
	 * children) in place, empty. */
	inbox = fx_mbox(&f, "Inbox", NULL);
	fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	fx_append(&f, inbox, msg_a, OSP_FLAG_SEEN, NULL, false, NULL);
	CU_ASSERT(osp_mailbox_rename(f.acc, "INBOX", "Old Inbox", &err) ==
	    OSP_OK);
	fx_mbox(&f, "Inbox", &mb);
	CU_ASSERT(mb.id == inbox && mb.total == 0 && mb.uidnext == 3);
	newbox = fx_mbox(&f, "Old Inbox", &mb2);
	CU_ASSERT(mb2.total == 2 && mb2.unread == 1);
	CU_ASSERT(osp_mailbox_get(f.acc, "Inbox/sub", f.pool, &mb2, &err) ==
	    OSP_OK);
	fx_check_counts(&f, inbox);
	fx_check_counts(&f, newbox);

	/* Delete: Inbox refused; children stay; messages become
	 * tombstones; a recreated mailbox gets a new uidvalidity. */
	CU_ASSERT(osp_mailbox_delete(f.acc, "inbox", &err) == -EPERM);
	fx_mbox(&f, "Old/Lists/osprey", &mb);
	uidv = mb.uidvalidity;
	CU_ASSERT(osp_mailbox_delete(f.acc, "Old/Lists/osprey", &err) ==
	    OSP_OK);
	CU_ASSERT(osp_mailbox_get(f.acc, "Old/Lists/osprey", f.pool, &mb2,
	    &err) == -ENOENT);
	CU_ASSERT(osp_mailbox_get(f.acc, "Old/Lists/osprey/dev", f.pool, &mb2,
	    &err) == OSP_OK);
	CU_ASSERT(osp_mailbox_delete(f.acc, "Old/Lists/osprey", &err) ==
	    -ENOENT);
	CU_ASSERT(osp_mailbox_create(f.acc, "Old/Lists/osprey", 0, &id2,
	    &err) == OSP_OK);
	fx_mbox(&f, "Old/Lists/osprey", &mb2);
	CU_ASSERT(mb2.id != mb.id && mb2.uidvalidity != uidv &&
	    mb2.uidnext == 1 && mb2.total == 0);

	/* Special-use and subscriptions. */
	CU_ASSERT(osp_mailbox_set_special_use(f.acc, id2, OSP_USE_ARCHIVE,
	    &err) == OSP_OK);
	fx_mbox(&f, "Old/Lists/osprey", &mb2);
	CU_ASSERT_EQUAL(mb2.special_use, OSP_USE_ARCHIVE);
	CU_ASSERT(osp_mailbox_set_special_use(f.acc, id2, OSP_USE_ALL,
	    &err) == -EINVAL);
	CU_ASSERT(osp_mailbox_subscribe(f.acc, "Does/Not/Exist", true,
	    &err) == OSP_OK);
	CU_ASSERT(osp_mailbox_subscribe(f.acc, "Junk", false, &err) ==
	    OSP_OK);
	CU_ASSERT(osp_mailbox_subscriptions(f.acc, f.pool, &subs, &n,
	    &err) == OSP_OK);
	{
		bool dne = false, junk = false;

		for (i = 0; i < n; i++) {
			dne |= strcmp(subs[i], "Does/Not/Exist") == 0;
			junk |= strcmp(subs[i], "Junk") == 0;
		}
		CU_ASSERT(dne && !junk);
	}
	fx_mbox(&f, "Junk", &mb);
	CU_ASSERT(!mb.subscribed);
	CU_ASSERT(osp_mailbox_list(f.acc, f.pool, &v, &n, &err) == OSP_OK);
	for (i = 1; i < n; i++)
		CU_ASSERT(strcmp(v[i - 1].name, v[i].name) < 0);
	fx_reopen(&f);
	fx_mbox(&f, "Old/Lists/osprey", &mb2);
	CU_ASSERT_EQUAL(mb2.special_use, OSP_USE_ARCHIVE);
	fx_deinit(&f);
}

static void
test_reopen(void)
{
	struct osp_mailbox mb, mb2;
	struct osp_message *m;
	uint64_t seq;
	int64_t inbox;
	struct fx f;
	struct osp_store *st2;
	const char *err = NULL;

	fx_init(&f);
	inbox = fx_mbox(&f, "Inbox", NULL);
	fx_append(&f, inbox, msg_a, OSP_FLAG_SEEN, NULL, true, NULL);
	fx_append(&f, inbox, msg_reply, 0, NULL, false, NULL);
	fx_mbox(&f, "Inbox", &mb);
	seq = fx_modseq(&f);
	/* Close everything, open a new store on the same dir. */
	osp_account_unref(f.acc);
	osp_store_close(f.store);
	CU_ASSERT_FATAL(osp_store_open(f.dir, &st2, &err) == OSP_OK);
	f.store = st2;
	fx_open_account(&f);
	CU_ASSERT_EQUAL(fx_modseq(&f), seq);
	fx_mbox(&f, "Inbox", &mb2);
	CU_ASSERT(mb2.uidvalidity == mb.uidvalidity &&
	    mb2.uidnext == mb.uidnext && mb2.total == 2 &&
	    mb2.size == mb.size && mb2.unread == 1);
	m = fx_get(&f, inbox, 1, OSP_MSG_WITH_PREFIX);
	CU_ASSERT_FATAL(m != NULL);
	CU_ASSERT_EQUAL(m->prefix_len, strlen(prefix_text));
	CU_ASSERT_EQUAL(fx_append(&f, inbox, msg_a, 0, NULL, false, NULL), 3);
	fx_deinit(&f);
}

/* Runs SQL on the account's database while it is closed. */
static void
fx_sql(struct fx *f, const char *sql)
{
	char path[4200];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/accounts/alice/index.db", f->dir);
	CU_ASSERT_FATAL(sqlite3_open(path, &db) == SQLITE_OK);
	CU_ASSERT(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
}

/* A message file on another file system is copied, not linked. */
static void
test_append_exdev(void)
{
	struct osp_store_new_msg m = { 0 };
	struct osp_message *v;
	const char *err = NULL;
	char path[4200], buf[512];
	struct stat a, b;
	int64_t inbox, id = 0;
	uint32_t uid = 0;
	ssize_t r;
	size_t n;
	int fd;
	struct fx f;

	fx_init(&f);
	snprintf(path, sizeof(path), "/dev/shm/osprey-test-%d.eml",
	    (int)getpid());
	if (stat("/dev/shm", &a) == -1 || stat(f.dir, &b) == -1 ||
	    a.st_dev == b.st_dev ||
	    (fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1) {
		fx_deinit(&f);
		return;		/* no second file system here */
	}
	CU_ASSERT(write(fd, msg_a, strlen(msg_a)) == (ssize_t)strlen(msg_a));
	close(fd);
	inbox = fx_mbox(&f, "Inbox", NULL);
	m.path = path;
	CU_ASSERT(osp_message_append(f.acc, inbox, &m, &uid, &id, &err) ==
	    OSP_OK);
	unlink(path);
	CU_ASSERT(osp_message_open(f.acc, id, &fd, &err) == OSP_OK);
	r = read(fd, buf, sizeof(buf));
	CU_ASSERT(r == (ssize_t)strlen(msg_a) &&
	    memcmp(buf, msg_a, (size_t)r) == 0);
	close(fd);
	CU_ASSERT(osp_message_list(f.acc, inbox, NULL, 0, f.pool, &v, &n,
	    &err) == OSP_OK);
	CU_ASSERT(n == 1 && v[0].size == strlen(msg_a));
	fx_deinit(&f);
}

/* Message ids past 8192 go to the next directory, created on demand. */
static void
test_msgdir(void)
{
	char path[4200];
	struct stat sb;
	int64_t inbox, id1 = 0, id2 = 0;
	struct fx f;

	fx_init(&f);
	osp_account_unref(f.acc);
	fx_sql(&f, "UPDATE state SET next_msg_id = 8191");
	fx_open_account(&f);
	inbox = fx_mbox(&f, "Inbox", NULL);
	fx_append(&f, inbox, msg_a, 0, NULL, false, &id1);
	fx_append(&f, inbox, msg_a, 0, NULL, false, &id2);
	CU_ASSERT(id1 == 8191 && id2 == 8192);
	snprintf(path, sizeof(path), "%s/accounts/alice/msg/0/8191", f.dir);
	CU_ASSERT(stat(path, &sb) == 0);
	snprintf(path, sizeof(path), "%s/accounts/alice/msg/1/8192", f.dir);
	CU_ASSERT(stat(path, &sb) == 0);
	fx_deinit(&f);
}

/* The check at close notices every kind of drift: a child closes the
 * tampered account and must abort(). */
static void
test_check_detects(void)
{
	static const char *corrupt[] = {
		"UPDATE mailboxes SET total = total + 1 WHERE name = 'Inbox'",
		"UPDATE mailboxes SET unread = 0 WHERE name = 'Inbox'",
		"UPDATE mailboxes SET deleted = 5 WHERE name = 'Inbox'",
		"UPDATE mailboxes SET size = size - 1 WHERE name = 'Inbox'",
		"UPDATE mailboxes SET uidnext = 2 WHERE name = 'Inbox'",
		"UPDATE messages SET flags = 1 WHERE uid = 1",
		"UPDATE state SET modseq = 1",
	};
	const char *err = NULL;
	int64_t inbox;
	size_t i;
	struct fx f;

	fx_init(&f);
	inbox = fx_mbox(&f, "Inbox", NULL);
	fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	osp_account_unref(f.acc);
	f.acc = NULL;
	for (i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
		int status;
		pid_t pid;

		fx_sql(&f, "DROP TABLE IF EXISTS backup; CREATE TABLE backup "
		    "AS SELECT * FROM mailboxes; CREATE TABLE backup_m AS "
		    "SELECT * FROM messages; CREATE TABLE backup_s AS "
		    "SELECT * FROM state");
		fx_sql(&f, corrupt[i]);
		fflush(stderr);
		pid = fork();
		CU_ASSERT_FATAL(pid != -1);
		if (pid == 0) {
			struct osp_account *acc;

			/* Quiet: the abort message is expected. */
			if (freopen("/dev/null", "w", stderr) == NULL)
				_exit(5);
			if (osp_account_open(f.store, "alice", false, &acc,
			    &err) != OSP_OK)
				_exit(2);
			osp_account_unref(acc);
			_exit(0);
		}
		CU_ASSERT(waitpid(pid, &status, 0) == pid);
		CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
		fx_sql(&f, "DELETE FROM messages; INSERT INTO messages "
		    "SELECT * FROM backup_m; DELETE FROM mailboxes; INSERT INTO "
		    "mailboxes SELECT * FROM backup; DELETE FROM state; "
		    "INSERT INTO state SELECT * FROM backup_s; DROP TABLE "
		    "backup; DROP TABLE backup_m; DROP TABLE backup_s");
	}
	/* Restored: the check passes again. */
	fx_open_account(&f);
	fx_check_counts(&f, inbox);
	fx_deinit(&f);
}

static int notified;

static void
on_change(void *arg)
{
	(void)arg;
	notified++;
}

/* Collects waiting changes as "KIND:mailbox:uid" text. */
static void
take_changes(struct osp_store_sub *sub, struct fx *f, char *out,
    size_t size, uint64_t *last_modseq)
{
	static const char *kinds[] = { "?", "add", "remove", "flags",
	    "mbadd", "mbremove", "mbrename", "counts", "use", "sub",
	    "overflow" };
	const struct osp_change *c;
	size_t len = 0;

	osp_store_dispatch(f->acc);
	out[0] = '\0';
	while ((c = osp_store_sub_next(sub)) != NULL && len < size) {
		CU_ASSERT(c->modseq >= *last_modseq);	/* commit order */
		*last_modseq = c->modseq;
		len += (size_t)snprintf(out + len, size - len, "%s%s",
		    len > 0 ? " " : "", kinds[c->kind]);
		if (c->kind == OSP_CHANGE_ADD || c->kind == OSP_CHANGE_REMOVE ||
		    c->kind == OSP_CHANGE_FLAGS)
			len += (size_t)snprintf(out + len, size - len, ":%u",
			    c->uid);
		if (c->kind == OSP_CHANGE_MAILBOX_RENAME)
			len += (size_t)snprintf(out + len, size - len,
			    ":%s>%s", c->name, c->new_name);
		if (len >= size)
			len = size - 1;
	}
}

static void
test_changes(void)
{
	struct osp_uid_range r = { 1, 1 };
	struct osp_uidset set = { &r, 1 }, failed;
	struct osp_store_sub *sub;
	const char *err = NULL;
	uint32_t *su, *du, *uids;
	uint64_t last = 0;
	int64_t inbox, trash, id;
	char text[512];
	size_t n;
	struct fx f;

	fx_init(&f);
	inbox = fx_mbox(&f, "Inbox", NULL);
	trash = fx_mbox(&f, "Trash", NULL);
	notified = 0;
	sub = osp_store_subscribe(f.acc, 100, on_change, NULL);
	fx_append(&f, inbox, msg_a, 0, NULL, false, NULL);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "add:1 counts");
	CU_ASSERT_EQUAL(notified, 1);
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &set, OSP_STORE_ADD,
	    OSP_FLAG_SEEN, NULL, 0, f.pool, &failed, &err) == OSP_OK);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "flags:1 counts");
	CU_ASSERT(osp_message_store_flags(f.acc, inbox, &set, OSP_STORE_ADD,
	    OSP_FLAG_FLAGGED, NULL, 0, f.pool, &failed, &err) == OSP_OK);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "flags:1");
	CU_ASSERT(osp_message_copy(f.acc, inbox, &set, trash, f.pool, &su,
	    &du, &n, &err) == OSP_OK);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "add:1 counts");
	CU_ASSERT(osp_message_move(f.acc, inbox, &set, trash, f.pool, &su,
	    &du, &n, &err) == OSP_OK);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "remove:1 add:2 counts counts");
	r.first = r.last = 2;
	CU_ASSERT(osp_message_expunge(f.acc, trash, &set, false, f.pool,
	    &uids, &n, &err) == OSP_OK);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "remove:2 counts");
	CU_ASSERT(osp_mailbox_create(f.acc, "A/B", 0, &id, &err) == OSP_OK);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "mbadd mbadd");
	CU_ASSERT(osp_mailbox_rename(f.acc, "A", "C", &err) == OSP_OK);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "mbrename:A>C mbrename:A/B>C/B");
	CU_ASSERT(osp_mailbox_set_special_use(f.acc, id, OSP_USE_JUNK,
	    &err) == OSP_OK);
	CU_ASSERT(osp_mailbox_subscribe(f.acc, "C", true, &err) == OSP_OK);
	CU_ASSERT(osp_mailbox_subscribe(f.acc, "C", true, &err) == OSP_OK);
	CU_ASSERT(osp_mailbox_delete(f.acc, "C", &err) == OSP_OK);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "use sub mbremove");
	CU_ASSERT(osp_mailbox_create(f.acc, "D", 0, &id, &err) == OSP_OK);
	fx_append(&f, id, msg_a, 0, NULL, false, NULL);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "mbadd add:1 counts");
	CU_ASSERT(osp_mailbox_delete(f.acc, "D", &err) == OSP_OK);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "remove:1 mbremove");
	/* A failed op publishes nothing. */
	CU_ASSERT(osp_mailbox_create(f.acc, "Trash", 0, &id, &err) ==
	    -EEXIST);
	take_changes(sub, &f, text, sizeof(text), &last);
	CU_ASSERT_STRING_EQUAL(text, "");
	osp_store_unsubscribe(sub);
	fx_deinit(&f);
}

/*
 * Durability: a child appends in a loop and reports each uid after the
 * append returned; it is SIGKILLed at a random moment. Every reported
 * uid must be there after reopening, and the consistency check (run by
 * the unref under OSPREY_STORE_CHECK) must pass.
 */
static void
test_kill9(void)
{
	struct fx f;
	size_t total = 0;
	int round;

	fx_init(&f);
	osp_account_unref(f.acc);
	f.acc = NULL;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	alarm(120);	/* a stuck child fails the run instead of hanging */
	for (round = 0; round < 10; round++) {
		uint32_t reported[4096], got;
		size_t nrep = 0, i;
		struct osp_message *v;
		const char *err = NULL;
		struct timespec ts;
		int pfd[2], status;
		int64_t inbox;
		pid_t pid;
		size_t n;

		CU_ASSERT_FATAL(pipe(pfd) == 0);
		pid = fork();
		CU_ASSERT_FATAL(pid != -1);
		if (pid == 0) {
			struct osp_account *acc;
			struct osp_mailbox mb;
			struct osp_pool *pool = osp_pool_new(NULL);
			struct osp_store_new_msg m = { 0 };
			char name[64], *path;
			uint32_t uid;

			close(pfd[0]);
			if (osp_account_open(f.store, "alice", false, &acc,
			    &err) != OSP_OK ||
			    osp_mailbox_get(acc, "Inbox", pool, &mb, &err) !=
			    OSP_OK)
				_exit(2);
			snprintf(name, sizeof(name), "kill%d.eml", round);
			path = osp_test_write_file(osp_store_tmpdir(f.store),
			    name, msg_a);
			m.path = path;
			for (;;) {
				m.flags = (uint32_t)rand() & OSP_FLAG_SEEN;
				if (osp_message_append(acc, mb.id, &m, &uid,
				    NULL, &err) != OSP_OK)
					_exit(3);
				if (write(pfd[1], &uid, sizeof(uid)) !=
				    sizeof(uid))
					_exit(4);
			}
		}
		close(pfd[1]);
		/* Wait for a first commit (a slow disk or a sanitizer build
		 * must not make the test vacuous), then kill at a random
		 * point of the stream of appends. */
		if (read(pfd[0], &got, sizeof(got)) == sizeof(got))
			reported[nrep++] = got;
		ts.tv_sec = 0;
		ts.tv_nsec = (rand() % 50) * 1000000L;
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		while (read(pfd[0], &got, sizeof(got)) == sizeof(got))
			if (nrep < sizeof(reported) / sizeof(reported[0]))
				reported[nrep++] = got;
		close(pfd[0]);
		total += nrep;
		CU_ASSERT(waitpid(pid, &status, 0) == pid);
		CU_ASSERT(WIFSIGNALED(status) &&
		    WTERMSIG(status) == SIGKILL);
		CU_ASSERT(nrep > 0);

		fx_open_account(&f);
		inbox = fx_mbox(&f, "Inbox", NULL);
		CU_ASSERT(osp_message_list(f.acc, inbox, NULL, 0, f.pool, &v,
		    &n, &err) == OSP_OK);
		for (i = 0; i < nrep; i++) {
			size_t j;
			bool found = false;

			for (j = 0; j < n && !found; j++)
				found = v[j].uid == reported[i];
			CU_ASSERT(found);
		}
		fx_check_counts(&f, inbox);
		osp_account_unref(f.acc);	/* consistency check */
		f.acc = NULL;
	}
	alarm(0);
	CU_ASSERT(total >= 10);
	fx_open_account(&f);
	fx_deinit(&f);
}

static const struct osp_test tests[] = {
	OSP_TEST(test_defaults),
	OSP_TEST(test_schema_version),
	OSP_TEST(test_append),
	OSP_TEST(test_append_batch),
	OSP_TEST(test_append_exdev),
	OSP_TEST(test_list_uidset),
	OSP_TEST(test_flags),
	OSP_TEST(test_copy_move),
	OSP_TEST(test_expunge),
	OSP_TEST(test_mailboxes),
	OSP_TEST(test_reopen),
	OSP_TEST(test_changes),
	OSP_TEST(test_msgdir),
	OSP_TEST(test_check_detects),
	OSP_TEST(test_kill9),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	/* Counts, uidnext and sizes are recomputed at every close. */
	setenv("OSPREY_STORE_CHECK", "1", 1);
	return osp_test_main(argc, argv, "store", tests);
}
