/* SPDX-License-Identifier: ISC */
/* The store's front end (core/store.c): accounts and references, the
 * per-account job FIFO, group commit, change broadcast, the consistency
 * check at close; against a fake backend and against the SQLite one. */
#include "core.h"
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testutil.h"

/* ---- a fake backend: two mailboxes, uids, changes, a corrupt flag ---- */

struct fake_acc {
	uint32_t	 uidnext[3];	/* by mailbox: Inbox 1, Other 2 */
	int64_t		 nextid;
	uint64_t	 modseq;
	bool		 corrupt;
};

static int	fake_opens, fake_closes;
static size_t	fake_append_calls;

static int
fake_account_open(struct osp_account *acc, bool create, const char **error_r)
{
	struct fake_acc *f;

	f = osp_calloc(1, sizeof(*f));
	f->uidnext[1] = f->uidnext[2] = 1;
	acc->backend = f;
	__atomic_add_fetch(&fake_opens, 1, __ATOMIC_SEQ_CST);
	return OSP_OK;
}

static int
fake_account_close(struct osp_account *acc, bool check, const char **error_r)
{
	struct fake_acc *f = acc->backend;
	int rc = OSP_OK;

	if (check && f->corrupt) {
		*error_r = "mailbox Inbox: total 3, counted 2";
		rc = OSP_ERROR;
	}
	osp_free(f);
	__atomic_add_fetch(&fake_closes, 1, __ATOMIC_SEQ_CST);
	return rc;
}

static int
fake_mailbox_get(struct osp_account *acc, const char *name, int64_t id,
    struct osp_pool *pool, struct osp_mailbox *mb, const char **error_r)
{
	static const char *names[] = { NULL, "Inbox", "Other" };
	struct fake_acc *f = acc->backend;

	if (name != NULL) {
		if (osp_str_eqi(name, "Inbox"))
			id = 1;
		else if (strcmp(name, "Other") == 0)
			id = 2;
		else
			id = 0;
	}
	if (id < 1 || id > 2) {
		*error_r = "no such mailbox";
		return -ENOENT;
	}
	memset(mb, 0, sizeof(*mb));
	mb->id = id;
	mb->name = names[id];
	mb->uidnext = f->uidnext[id];
	return OSP_OK;
}

static int
fake_mailbox_create(struct osp_account *acc, const char *name,
    uint32_t special_use, int64_t *id_r, const char **error_r)
{
	struct fake_acc *f = acc->backend;

	store_change_add(acc, OSP_CHANGE_MAILBOX_ADD, 3, 0, ++f->modseq, 0,
	    name, NULL);
	if (id_r != NULL)
		*id_r = 3;
	return OSP_OK;
}

/* All or nothing; changes are recorded before the failure on purpose:
 * store.c must drop them. Checks the request's copies are intact. */
static int
fake_message_append(struct osp_account *acc, struct store_append_req *reqs,
    size_t n, const char **error_r)
{
	struct fake_acc *f = acc->backend;
	uint32_t uidnext[3];
	uint64_t modseq = f->modseq;
	const struct osp_store_new_msg *m;
	size_t i, k;

	memcpy(uidnext, f->uidnext, sizeof(uidnext));
	for (i = 0; i < n; i++) {
		m = reqs[i].msg;
		if (reqs[i].mailbox_id < 1 || reqs[i].mailbox_id > 2) {
			*error_r = "bad mailbox";
			return -EINVAL;
		}
		if (m->prefix != NULL && strlen(m->prefix) != m->prefix_len) {
			*error_r = "prefix";
			return -EINVAL;
		}
		for (k = 0; m->keywords != NULL && m->keywords[k] != NULL; k++)
			if (m->keywords[k][0] == '\0') {
				*error_r = "keyword";
				return -EINVAL;
			}
		reqs[i].uid = uidnext[reqs[i].mailbox_id]++;
		reqs[i].id = f->nextid + 1 + (int64_t)i;
		store_change_add(acc, OSP_CHANGE_ADD, reqs[i].mailbox_id,
		    reqs[i].uid, ++modseq, m->flags, NULL, NULL);
		if (access(m->path, R_OK) == -1) {
			*error_r = "message file missing";
			return -ENOENT;
		}
	}
	memcpy(f->uidnext, uidnext, sizeof(uidnext));
	f->nextid += (int64_t)n;
	f->modseq = modseq;
	fake_append_calls++;
	return OSP_OK;
}

static int
fake_message_store_flags(struct osp_account *acc, int64_t mailbox_id,
    const struct osp_uidset *uids, enum osp_store_mode mode, uint32_t flags,
    const char *const *keywords, uint64_t unchangedsince,
    struct osp_pool *pool, struct osp_uidset *failed_r, const char **error_r)
{
	struct fake_acc *f = acc->backend;
	uint32_t uid;
	size_t i;

	for (i = 0; i < uids->n; i++)
		for (uid = uids->r[i].first; uid <= uids->r[i].last; uid++)
			store_change_add(acc, OSP_CHANGE_FLAGS, mailbox_id, uid,
			    ++f->modseq, flags, NULL, NULL);
	if (failed_r != NULL) {
		failed_r->r = NULL;
		failed_r->n = 0;
	}
	return OSP_OK;
}

static const struct store_ops fake_ops = {
	.name = "fake",
	.account_open = fake_account_open,
	.account_close = fake_account_close,
	.mailbox_get = fake_mailbox_get,
	.mailbox_create = fake_mailbox_create,
	.message_append = fake_message_append,
	.message_store_flags = fake_message_store_flags,
};

/* ---- helpers ---------------------------------------------------------- */

static bool timed_out;

static void
guard_cb(void *arg)
{
	timed_out = true;
	osp_event_exit();
}

/* Runs the loop until a handler calls osp_event_exit() or ms passed;
 * true when it timed out. */
static bool
run_for(uint64_t ms)
{
	struct osp_timer *g = osp_timer_new(guard_cb, NULL);

	timed_out = false;
	osp_timer_add(g, ms);
	osp_event_run();
	osp_timer_free(g);
	return timed_out;
}

static void
run_loop(uint64_t ms)
{
	CU_ASSERT(!run_for(ms));
}

static void
loop_init(void)
{
	osp_event_deinit();
	CU_ASSERT_FATAL(osp_event_init(2) == OSP_OK);
}

/* A fresh data dir per call; ops NULL keeps the SQLite backend. */
static struct osp_store *
store_new(const struct store_ops *ops)
{
	static int n;
	struct osp_store *store = NULL;
	const char *error = NULL;
	char dir[512];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/data%d", osp_test_tmpdir(), ++n);
	if (osp_store_open(dir, &store, &error) != OSP_OK)
		fprintf(stderr, "store open: %s\n", error);
	CU_ASSERT_FATAL(store != NULL);
	snprintf(dir, sizeof(dir), "%s/data%d/accounts", osp_test_tmpdir(), n);
	CU_ASSERT(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (st.st_mode & 07777) == 0750);
	CU_ASSERT(stat(osp_store_tmpdir(store), &st) == 0 &&
	    S_ISDIR(st.st_mode));
	if (ops != NULL)
		store->ops = ops;
	return store;
}

static struct osp_account *
acc_open(struct osp_store *store, const char *name)
{
	struct osp_account *acc = NULL;
	const char *error = NULL;
	int rc;

	rc = osp_account_open(store, name, true, &acc, &error);
	if (rc != OSP_OK)
		fprintf(stderr, "account open %s: %s\n", name, error);
	CU_ASSERT_FATAL(rc == OSP_OK && acc != NULL);
	return acc;
}

/* A message file in the store's tmp dir (as SMTP would write it). */
static char *
msg_file(struct osp_store *store, const char *name)
{
	char path[512];
	int fd;
	static const char text[] = "From: a@example.org\r\n"
	    "To: b@example.org\r\nSubject: test\r\n\r\nHello.\r\n";

	snprintf(path, sizeof(path), "%s/%s", osp_store_tmpdir(store), name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	CU_ASSERT_FATAL(fd != -1);
	CU_ASSERT(write(fd, text, sizeof(text) - 1) ==
	    (ssize_t)sizeof(text) - 1);
	close(fd);
	return osp_strdup(path);
}

/* ---- accounts --------------------------------------------------------- */

static void
test_account_names(void)
{
	static const char *bad[] = { "", ".", "..", ".hidden", "a/b", "/",
	    "Upper", "sp ace", "tab\t", "\xff", "\xc0\xaf", "a\xc2",
	    "\xed\xa0\x80", "\xc2\x85", "a\xc2\xa0" "b", "x\xe2\x80\xae",
	    "\xef\xbb\xbf" "bom", "\xf4\x90\x80\x80", "\xe0\x80\xaf", NULL };
	static const char *good[] = { "mjl", "a.b-c_d9", "a..b",
	    "j\xc3\xbcrgen", "\xe5\xb1\xb1\xe7\x94\xb0", "\xf0\xa0\x80\x80",
	    NULL };
	struct osp_store *store = store_new(&fake_ops);
	struct osp_account *acc;
	const char *error;
	char longname[300];
	size_t i;

	for (i = 0; bad[i] != NULL; i++) {
		acc = NULL;
		error = NULL;
		CU_ASSERT(osp_account_open(store, bad[i], true, &acc,
		    &error) == -EINVAL);
		CU_ASSERT(acc == NULL && error != NULL);
	}
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CU_ASSERT(osp_account_open(store, longname, true, &acc, &error) ==
	    -EINVAL);
	for (i = 0; good[i] != NULL; i++) {
		acc = acc_open(store, good[i]);
		CU_ASSERT_STRING_EQUAL(osp_account_name(acc), good[i]);
		osp_account_unref(acc);
	}
	/* Without create, a missing account is -ENOENT. */
	acc = NULL;
	CU_ASSERT(osp_account_open(store, "nobody", false, &acc, &error) ==
	    -ENOENT);
	CU_ASSERT(acc == NULL);
	osp_store_close(store);
}

static void
test_account_refs(void)
{
	struct osp_store *store = store_new(&fake_ops);
	struct osp_account *a, *b, *c;
	int opens = fake_opens, closes = fake_closes;

	a = acc_open(store, "alice");
	b = acc_open(store, "alice");
	c = acc_open(store, "bob");
	CU_ASSERT(a == b);
	CU_ASSERT(a != c);
	CU_ASSERT(fake_opens == opens + 2);
	CU_ASSERT(osp_account_ref(a) == a);
	osp_account_unref(a);
	osp_account_unref(b);
	CU_ASSERT(fake_closes == closes);
	osp_account_unref(a);
	CU_ASSERT(fake_closes == closes + 1);
	/* Opened again after the last close: a new backend open. */
	a = acc_open(store, "alice");
	CU_ASSERT(fake_opens == opens + 3);
	osp_account_unref(a);
	osp_account_unref(c);
	CU_ASSERT(fake_closes == closes + 3);
	osp_store_close(store);
}

static void
test_account_remove(void)
{
	struct osp_store *store = store_new(&fake_ops);
	struct osp_account *acc;
	const char *error = NULL;
	char path[600];
	struct stat st;

	acc = acc_open(store, "carol");
	/* The fake backend makes no files: lay out a tree by hand. */
	snprintf(path, sizeof(path), "%s/accounts/carol", store->data_dir);
	CU_ASSERT(mkdir(path, 0750) == 0);
	snprintf(path, sizeof(path), "%s/accounts/carol/msg", store->data_dir);
	CU_ASSERT(mkdir(path, 0750) == 0);
	free(osp_test_write_file(path, "1", "x"));
	snprintf(path, sizeof(path), "%s/accounts/carol", store->data_dir);
	free(osp_test_write_file(path, "index.db", "x"));
	CU_ASSERT(osp_account_remove(store, "carol", &error) == -EBUSY);
	CU_ASSERT(stat(path, &st) == 0);
	osp_account_unref(acc);
	CU_ASSERT(osp_account_remove(store, "carol", &error) == OSP_OK);
	CU_ASSERT(stat(path, &st) == -1 && errno == ENOENT);
	CU_ASSERT(osp_account_remove(store, "carol", &error) == -ENOENT);
	CU_ASSERT(osp_account_remove(store, "../x", &error) == -EINVAL);
	osp_store_close(store);
}

/* OSPREY_STORE_CHECK: a failed check at the last unref aborts (the test
 * must fail loudly); without it the failure is only logged. */
static void
test_check_aborts(void)
{
	struct osp_store *store = store_new(&fake_ops);
	struct osp_account *acc;
	char errfile[512], buf[512];
	int status, fd;
	ssize_t len;
	pid_t pid;

	unsetenv("OSPREY_STORE_CHECK");
	acc = acc_open(store, "dave");
	((struct fake_acc *)acc->backend)->corrupt = true;
	osp_account_unref(acc);		/* no check: logged, no abort */

	snprintf(errfile, sizeof(errfile), "%s/check.err", osp_test_tmpdir());
	fflush(NULL);
	pid = fork();
	CU_ASSERT_FATAL(pid != -1);
	if (pid == 0) {
		fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 2);
		signal(SIGABRT, SIG_DFL);
		setenv("OSPREY_STORE_CHECK", "1", 1);
		acc = acc_open(store, "dave");
		((struct fake_acc *)acc->backend)->corrupt = true;
		osp_account_unref(acc);
		_exit(0);
	}
	CU_ASSERT(waitpid(pid, &status, 0) == pid);
	CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	fd = open(errfile, O_RDONLY);
	CU_ASSERT_FATAL(fd != -1);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[len > 0 ? len : 0] = '\0';
	CU_ASSERT(strstr(buf, "consistency check failed for account dave: "
	    "mailbox Inbox: total 3, counted 2") != NULL);

	/* A clean account passes the check. */
	setenv("OSPREY_STORE_CHECK", "1", 1);
	acc = acc_open(store, "dave");
	osp_account_unref(acc);
	osp_store_close(store);
}

/* A job that waits until the test opens the gate. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void
gate_fn(struct osp_account *acc, void *arg)
{
	pthread_mutex_lock(&gate_lock);
	while (!gate_open)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);
}

static void
gate_set(bool open)
{
	pthread_mutex_lock(&gate_lock);
	gate_open = open;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

/* ---- the job FIFO ------------------------------------------------------ */

#define NJOBS 24

static struct {
	int	 order[NJOBS], norder;
	int	 done_order[NJOBS], ndone;
	int	 running;
	bool	 overlap;
	bool	 b_done, b_before_a;
	int	 pending;
} jt;

static void
job_fn(struct osp_account *acc, void *arg)
{
	int i = (int)(intptr_t)arg;

	if (__atomic_add_fetch(&jt.running, 1, __ATOMIC_SEQ_CST) != 1)
		jt.overlap = true;
	/* Uneven work tempts a second worker to overtake. */
	if (i % 3 == 0)
		usleep(3000);
	jt.order[jt.norder++] = i;
	__atomic_sub_fetch(&jt.running, 1, __ATOMIC_SEQ_CST);
}

static void
job_done(void *arg)
{
	jt.done_order[jt.ndone++] = (int)(intptr_t)arg;
	if (--jt.pending == 0)
		osp_event_exit();
}

static void
slow_done(void *arg)
{
	jt.b_before_a = jt.b_done;
	if (--jt.pending == 0)
		osp_event_exit();
}

/* b's job can only complete while a's waits at the gate if accounts do
 * not wait for each other; it opens the gate. */
static void
b_done(void *arg)
{
	jt.b_done = true;
	gate_set(true);
	if (--jt.pending == 0)
		osp_event_exit();
}

static void
test_job_order(void)
{
	struct osp_store *store = store_new(&fake_ops);
	struct osp_account *a, *b;
	int i;

	loop_init();
	memset(&jt, 0, sizeof(jt));
	a = acc_open(store, "alice");
	b = acc_open(store, "bob");
	jt.pending = NJOBS;
	for (i = 0; i < NJOBS; i++)
		osp_store_run(a, job_fn, job_done, (void *)(intptr_t)i);
	run_loop(10000);
	CU_ASSERT(!jt.overlap);
	CU_ASSERT(jt.norder == NJOBS && jt.ndone == NJOBS);
	for (i = 0; i < NJOBS; i++) {
		CU_ASSERT(jt.order[i] == i);
		CU_ASSERT(jt.done_order[i] == i);
	}
	/* Other accounts are not held up by a slow one. */
	jt.pending = 2;
	gate_set(false);
	osp_store_run(a, gate_fn, slow_done, NULL);
	osp_store_run(b, NULL, b_done, NULL);
	run_loop(10000);
	gate_set(true);		/* never leave a worker stuck */
	CU_ASSERT(jt.b_before_a);
	osp_account_unref(a);
	osp_account_unref(b);
	/* The jobs' references are gone: the store closes cleanly. */
	CU_ASSERT(store->accounts == NULL);
	osp_store_close(store);
	osp_event_deinit();
}

/* ---- group commit ------------------------------------------------------- */

#define NDELIV 50

static struct {
	int	 ndone, nok, pending;
	int	 err[NDELIV];
	uint32_t uid[NDELIV];
	char	 error[NDELIV][128];
} dt;

static void
deliver_done(void *arg, int err, uint32_t uid, const char *error)
{
	int i = (int)(intptr_t)arg;

	dt.ndone++;
	dt.err[i] = err;
	dt.uid[i] = uid;
	if (err == OSP_OK)
		dt.nok++;
	else
		snprintf(dt.error[i], sizeof(dt.error[i]), "%s",
		    error != NULL ? error : "(null)");
	if (--dt.pending == 0)
		osp_event_exit();
}

static void
deliver_reset(int pending)
{
	memset(&dt, 0, sizeof(dt));
	dt.pending = pending;
}

/* Requests deliveries base..base+n-1 in this loop iteration; index bad
 * names a missing file. The request's strings are freed right away:
 * store.c must have copied them. */
static void
deliver_more(struct osp_account *acc, const char *mailbox, const char *path,
    int base, int n, int bad)
{
	struct osp_store_new_msg m;
	char *p, *prefix, *kw[3];
	int i;

	for (i = base; i < base + n; i++) {
		memset(&m, 0, sizeof(m));
		p = i == bad ? osp_strdup("/nonexistent/msg") :
		    osp_strdup(path);
		prefix = osp_strdup("Received: from x\r\n");
		kw[0] = osp_strdup("$Junk");
		kw[1] = osp_strdup("label");
		kw[2] = NULL;
		m.path = p;
		m.prefix = prefix;
		m.prefix_len = strlen(prefix);
		m.keywords = (const char *const *)kw;
		m.flags = OSP_FLAG_SEEN;
		osp_store_deliver(acc, mailbox, &m, deliver_done,
		    (void *)(intptr_t)i);
		memset(p, 'x', strlen(p));
		osp_free(p);
		osp_free(prefix);
		osp_free(kw[0]);
		osp_free(kw[1]);
	}
}

static void
deliver_n(struct osp_account *acc, const char *mailbox, const char *path,
    int n, int bad)
{
	deliver_reset(n);
	deliver_more(acc, mailbox, path, 0, n, bad);
}

static void
check_group_commit(const struct store_ops *ops)
{
	struct osp_store *store = store_new(ops);
	struct osp_account *acc;
	uint64_t b0, m0, b1, m1;
	uint32_t last;
	char *path;
	int i;

	loop_init();
	acc = acc_open(store, "erin");
	path = msg_file(store, "m1");
	osp_store_stats(&b0, &m0);
	deliver_n(acc, "Inbox", path, NDELIV, -1);
	run_loop(20000);
	osp_store_stats(&b1, &m1);
	CU_ASSERT(b1 - b0 == 1);
	CU_ASSERT(m1 - m0 == NDELIV);
	CU_ASSERT(dt.ndone == NDELIV && dt.nok == NDELIV);
	for (i = 0; i < NDELIV; i++) {
		CU_ASSERT(dt.err[i] == OSP_OK);
		if (i > 0)
			CU_ASSERT(dt.uid[i] > dt.uid[i - 1]);
	}
	CU_ASSERT(dt.uid[0] >= 1);

	/* One bad message: the others still commit. */
	deliver_n(acc, "INBOX", path, 7, 3);
	run_loop(20000);
	CU_ASSERT(dt.ndone == 7 && dt.nok == 6);
	CU_ASSERT(dt.err[3] != OSP_OK && dt.uid[3] == 0 &&
	    dt.error[3][0] != '\0');
	last = NDELIV;
	for (i = 0; i < 7; i++)
		if (i != 3) {
			CU_ASSERT(dt.err[i] == OSP_OK);
			CU_ASSERT(dt.uid[i] > last);
			last = dt.uid[i];
		}
	CU_ASSERT(dt.uid[0] == NDELIV + 1);

	/* An unknown mailbox means Inbox. */
	deliver_n(acc, "No such mailbox", path, 1, -1);
	run_loop(20000);
	CU_ASSERT(dt.nok == 1 && dt.uid[0] == NDELIV + 7);

	/* What the backend stored came from store.c's copies. */
	if (ops == NULL) {
		struct osp_pool *pool = osp_pool_new(NULL);
		struct osp_message *list;
		struct osp_mailbox mb;
		const char *error = NULL;
		size_t n;

		CU_ASSERT_FATAL(osp_mailbox_get(acc, "Inbox", pool, &mb,
		    &error) == OSP_OK);
		CU_ASSERT_FATAL(osp_message_list(acc, mb.id, NULL,
		    OSP_MSG_WITH_PREFIX | OSP_MSG_WITH_KEYWORDS, pool, &list,
		    &n, &error) == OSP_OK);
		CU_ASSERT_FATAL(n == NDELIV + 7);
		CU_ASSERT(list[0].uid == 1 && list[n - 1].uid == NDELIV + 7);
		CU_ASSERT(list[0].prefix_len == 18 && list[0].prefix != NULL &&
		    memcmp(list[0].prefix, "Received: from x\r\n", 18) == 0);
		CU_ASSERT(list[0].flags == OSP_FLAG_SEEN);
		CU_ASSERT_FATAL(list[0].keywords != NULL);
		CU_ASSERT(list[0].keywords[0] != NULL &&
		    list[0].keywords[1] != NULL &&
		    list[0].keywords[2] == NULL);
		osp_pool_free(pool);
	}

	osp_free(path);
	osp_account_unref(acc);
	osp_store_close(store);
	osp_event_deinit();
}

static void
test_group_commit_fake(void)
{
	check_group_commit(&fake_ops);
}

/* Deliveries that arrive while the account's FIFO is busy join the batch
 * queued behind it: two loop iterations of requests, one commit. */
static void
test_group_commit_join(void)
{
	struct osp_store *store = store_new(&fake_ops);
	struct osp_account *acc;
	uint64_t b0, m0, b1, m1;
	size_t calls;
	char *path;
	int i;

	loop_init();
	acc = acc_open(store, "frank");
	path = msg_file(store, "m1");
	osp_store_stats(&b0, &m0);
	calls = fake_append_calls;
	gate_set(false);
	osp_store_run(acc, gate_fn, NULL, NULL);
	deliver_reset(7);
	deliver_more(acc, "Inbox", path, 0, 3, -1);
	CU_ASSERT(run_for(50));		/* flushed: a batch waits */
	deliver_more(acc, "Other", path, 3, 4, -1);
	CU_ASSERT(run_for(50));		/* flushed: joined that batch */
	CU_ASSERT(dt.ndone == 0);
	gate_set(true);
	run_loop(20000);
	osp_store_stats(&b1, &m1);
	CU_ASSERT(b1 - b0 == 1);
	CU_ASSERT(m1 - m0 == 7);
	CU_ASSERT(fake_append_calls - calls == 1);
	CU_ASSERT(dt.nok == 7);
	for (i = 0; i < 7; i++)
		CU_ASSERT(dt.uid[i] == (uint32_t)(i < 3 ? i + 1 : i - 2));
	osp_free(path);
	osp_account_unref(acc);
	osp_store_close(store);
	osp_event_deinit();
}

/* ---- change broadcast --------------------------------------------------- */

struct subrec {
	struct osp_store_sub	*sub;
	int			 notified;
	enum osp_change_kind	 kinds[64];
	uint32_t		 uids[64];
	uint64_t		 modseqs[64];
	char			 names[64][32];
	int			 n;
	/* for the unsubscribe test */
	struct subrec		*kill;
	bool			 done_seen;
};

static bool sub_job_done;

static void
sub_drain(struct subrec *r)
{
	const struct osp_change *c;

	while ((c = osp_store_sub_next(r->sub)) != NULL) {
		if (r->n < 64) {
			r->kinds[r->n] = c->kind;
			r->uids[r->n] = c->uid;
			r->modseqs[r->n] = c->modseq;
			snprintf(r->names[r->n], sizeof(r->names[0]), "%s",
			    c->name != NULL ? c->name : "");
		}
		r->n++;
	}
}

static void
sub_notify(void *arg)
{
	struct subrec *r = arg;

	r->notified++;
	r->done_seen = sub_job_done;
	sub_drain(r);
}

static void
sub_fn(struct osp_account *acc, void *arg)
{
	const char *path = arg;
	struct osp_store_new_msg m = { .path = path };
	struct osp_uid_range range = { 1, 1 };
	struct osp_uidset set = { &range, 1 };
	const char *error = NULL;
	uint32_t uid = 0;

	CU_ASSERT(osp_mailbox_create(acc, "Projects", 0, NULL, &error) ==
	    OSP_OK);
	CU_ASSERT(osp_message_append(acc, 1, &m, &uid, NULL, &error) ==
	    OSP_OK);
	range.first = range.last = uid;
	CU_ASSERT(osp_message_store_flags(acc, 1, &set, OSP_STORE_ADD,
	    OSP_FLAG_FLAGGED, NULL, 0, NULL, NULL, &error) == OSP_OK);
	/* A failing op commits nothing: its changes never show. */
	m.path = "/nonexistent";
	CU_ASSERT(osp_message_append(acc, 1, &m, &uid, NULL, &error) ==
	    -ENOENT);
}

static void
sub_done(void *arg)
{
	sub_job_done = true;
	osp_event_exit();
}

static void
test_broadcast(void)
{
	struct osp_store *store = store_new(&fake_ops);
	struct osp_account *acc;
	struct subrec r1, r2;
	struct osp_store_new_msg m = { 0 };
	const char *error = NULL;
	char *path;
	int i;

	loop_init();
	acc = acc_open(store, "gina");
	path = msg_file(store, "m1");
	/* Committed with nobody listening: dropped. */
	m.path = path;
	CU_ASSERT(osp_message_append(acc, 1, &m, NULL, NULL, &error) ==
	    OSP_OK);
	memset(&r1, 0, sizeof(r1));
	memset(&r2, 0, sizeof(r2));
	r1.sub = osp_store_subscribe(acc, 100, sub_notify, &r1);
	r2.sub = osp_store_subscribe(acc, 100, sub_notify, &r2);
	osp_store_dispatch(acc);
	CU_ASSERT(r1.notified == 0 && r2.notified == 0);

	sub_job_done = false;
	osp_store_run(acc, sub_fn, sub_done, path);
	run_loop(10000);
	for (i = 0; i < 2; i++) {
		struct subrec *r = i == 0 ? &r1 : &r2;

		CU_ASSERT(r->notified == 1);
		/* notify comes after the job's done() */
		CU_ASSERT(r->done_seen);
		CU_ASSERT_FATAL(r->n == 3);
		CU_ASSERT(r->kinds[0] == OSP_CHANGE_MAILBOX_ADD);
		CU_ASSERT_STRING_EQUAL(r->names[0], "Projects");
		CU_ASSERT(r->kinds[1] == OSP_CHANGE_ADD && r->uids[1] == 2);
		CU_ASSERT(r->kinds[2] == OSP_CHANGE_FLAGS && r->uids[2] == 2);
		CU_ASSERT(r->modseqs[0] < r->modseqs[1] &&
		    r->modseqs[1] < r->modseqs[2]);
	}

	/* Direct calls reach subscribers at osp_store_dispatch(). */
	CU_ASSERT(osp_message_append(acc, 2, &m, NULL, NULL, &error) ==
	    OSP_OK);
	CU_ASSERT(r1.n == 3);
	osp_store_dispatch(acc);
	CU_ASSERT(r1.n == 4 && r1.kinds[3] == OSP_CHANGE_ADD &&
	    r2.n == 4 && r1.notified == 2);

	osp_store_unsubscribe(r1.sub);
	osp_store_unsubscribe(r2.sub);
	osp_free(path);
	osp_account_unref(acc);
	CU_ASSERT(store->accounts == NULL);
	osp_store_close(store);
	osp_event_deinit();
}

static void
count_notify(void *arg)
{
	struct subrec *r = arg;

	r->notified++;
}

static void
test_overflow(void)
{
	struct osp_store *store = store_new(&fake_ops);
	struct osp_account *acc;
	struct subrec small, big;
	const struct osp_change *c;
	char *path;

	loop_init();
	acc = acc_open(store, "hank");
	path = msg_file(store, "m1");
	memset(&small, 0, sizeof(small));
	memset(&big, 0, sizeof(big));
	small.sub = osp_store_subscribe(acc, 3, count_notify, &small);
	big.sub = osp_store_subscribe(acc, 100, count_notify, &big);
	/* 10 changes in one commit: over the limit of 3. */
	deliver_n(acc, "Inbox", path, 10, -1);
	run_loop(10000);
	CU_ASSERT(small.notified == 1 && big.notified == 1);
	c = osp_store_sub_next(small.sub);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(c->kind == OSP_CHANGE_OVERFLOW);
	CU_ASSERT(osp_store_sub_next(small.sub) == NULL);
	sub_drain(&big);
	CU_ASSERT(big.n == 10);

	/* Three more: within the limit again, queued normally. */
	deliver_n(acc, "Inbox", path, 3, -1);
	run_loop(10000);
	small.n = 0;
	sub_drain(&small);
	CU_ASSERT(small.n == 3 && small.kinds[0] == OSP_CHANGE_ADD &&
	    small.uids[0] == 11 && small.uids[2] == 13);

	/* Not read after an overflow: later changes do not pile up behind
	 * the OVERFLOW entry (the resync covers them). */
	deliver_n(acc, "Inbox", path, 5, -1);
	run_loop(10000);
	deliver_n(acc, "Inbox", path, 2, -1);
	run_loop(10000);
	small.n = 0;
	sub_drain(&small);
	CU_ASSERT(small.n == 1 && small.kinds[0] == OSP_CHANGE_OVERFLOW);

	osp_store_unsubscribe(small.sub);
	osp_store_unsubscribe(big.sub);
	osp_free(path);
	osp_account_unref(acc);
	osp_store_close(store);
	osp_event_deinit();
}

static struct osp_account *kill_acc;

static void
kill_notify(void *arg)
{
	struct subrec *r = arg;

	r->notified++;
	/* Unsubscribes itself and a later subscriber, and drops the last
	 * account reference the test holds. */
	osp_store_unsubscribe(r->kill->sub);
	r->kill->sub = NULL;
	osp_store_unsubscribe(r->sub);
	r->sub = NULL;
	if (kill_acc != NULL) {
		osp_account_unref(kill_acc);
		kill_acc = NULL;
	}
}

static void
test_unsubscribe_in_notify(void)
{
	struct osp_store *store = store_new(&fake_ops);
	struct osp_account *acc;
	struct subrec a, b, c;
	int closes;
	char *path;

	loop_init();
	acc = acc_open(store, "ivan");
	path = msg_file(store, "m1");
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	a.sub = osp_store_subscribe(acc, 100, kill_notify, &a);
	a.kill = &b;
	b.sub = osp_store_subscribe(acc, 100, count_notify, &b);
	c.sub = osp_store_subscribe(acc, 100, count_notify, &c);
	kill_acc = acc;
	closes = fake_closes;
	deliver_n(acc, "Inbox", path, 2, -1);
	run_loop(10000);
	CU_ASSERT(a.notified == 1 && b.notified == 0 && c.notified == 1);
	CU_ASSERT(a.sub == NULL && b.sub == NULL);
	CU_ASSERT(fake_closes == closes);	/* c holds a reference */
	osp_store_unsubscribe(c.sub);
	CU_ASSERT(fake_closes == closes + 1);
	CU_ASSERT(store->accounts == NULL);
	osp_free(path);
	osp_store_close(store);
	osp_event_deinit();
}

/* ---- the same against the SQLite backend -------------------------------- */

static bool
have_sqlite(void)
{
	if (store_sqlite_ops.account_open == NULL) {
		CU_FAIL("store_sqlite_ops has no account_open");
		return false;
	}
	return true;
}

static void
test_sqlite_group_commit(void)
{
	if (have_sqlite())
		check_group_commit(NULL);
}

static void
test_sqlite_accounts(void)
{
	struct osp_store *store;
	struct osp_account *acc = NULL, *acc2 = NULL;
	struct osp_mailbox mb;
	struct osp_pool *pool;
	const char *error = NULL;

	if (!have_sqlite())
		return;
	store = store_new(NULL);
	pool = osp_pool_new(NULL);
	CU_ASSERT(osp_account_open(store, "kate", false, &acc, &error) ==
	    -ENOENT);
	acc = acc_open(store, "kate");
	CU_ASSERT(osp_mailbox_get(acc, "INBOX", pool, &mb, &error) == OSP_OK);
	CU_ASSERT_STRING_EQUAL(mb.name, "Inbox");
	CU_ASSERT(osp_mailbox_get_id(acc, mb.id, pool, &mb, &error) ==
	    OSP_OK);
	CU_ASSERT(osp_mailbox_get(acc, "Nope", pool, &mb, &error) == -ENOENT);
	osp_account_unref(acc);
	CU_ASSERT(osp_account_open(store, "kate", false, &acc2, &error) ==
	    OSP_OK);
	CU_ASSERT(osp_account_remove(store, "kate", &error) == -EBUSY);
	osp_account_unref(acc2);
	CU_ASSERT(osp_account_remove(store, "kate", &error) == OSP_OK);
	acc = NULL;
	CU_ASSERT(osp_account_open(store, "kate", false, &acc, &error) ==
	    -ENOENT);
	osp_pool_free(pool);
	osp_store_close(store);
}

static void
sqlite_sub_fn(struct osp_account *acc, void *arg)
{
	const char *path = arg;
	struct osp_store_new_msg m = { .path = path };
	struct osp_uid_range range = { 1, 1 };
	struct osp_uidset set = { &range, 1 };
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_mailbox mb;
	const char *error = NULL;
	uint32_t *uids, uid = 0;
	size_t n;

	CU_ASSERT(osp_mailbox_create(acc, "Projects", 0, NULL, &error) ==
	    OSP_OK);
	CU_ASSERT_FATAL(osp_mailbox_get(acc, "Inbox", pool, &mb, &error) ==
	    OSP_OK);
	CU_ASSERT(osp_message_append(acc, mb.id, &m, &uid, NULL, &error) ==
	    OSP_OK);
	range.first = range.last = uid;
	CU_ASSERT(osp_message_store_flags(acc, mb.id, &set, OSP_STORE_ADD,
	    OSP_FLAG_DELETED, NULL, 0, pool, NULL, &error) == OSP_OK);
	CU_ASSERT(osp_message_expunge(acc, mb.id, NULL, true, pool, &uids, &n,
	    &error) == OSP_OK);
	CU_ASSERT(n == 1);
	/* A failing op commits nothing, so it broadcasts nothing. */
	CU_ASSERT(osp_mailbox_create(acc, "Projects", 0, NULL, &error) ==
	    -EEXIST);
	osp_pool_free(pool);
}

/* Kinds of r without the counts changes, as a string "A M F R". */
static void
kinds_str(const struct subrec *r, char *buf, size_t size)
{
	static const char letter[] = "?AEFmrnCSsO";
	size_t len = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < r->n && i < 64 && len + 2 < size; i++) {
		if (r->kinds[i] == OSP_CHANGE_MAILBOX_COUNTS)
			continue;
		buf[len++] = letter[r->kinds[i]];
		buf[len] = '\0';
	}
}

static void
test_sqlite_broadcast(void)
{
	struct osp_store *store;
	struct osp_account *acc;
	struct subrec r1, r2;
	char *path, k1[80], k2[80];
	int i;

	if (!have_sqlite())
		return;
	store = store_new(NULL);
	loop_init();
	acc = acc_open(store, "lena");
	path = msg_file(store, "m1");
	memset(&r1, 0, sizeof(r1));
	memset(&r2, 0, sizeof(r2));
	r1.sub = osp_store_subscribe(acc, 1000, sub_notify, &r1);
	r2.sub = osp_store_subscribe(acc, 1000, sub_notify, &r2);
	sub_job_done = false;
	osp_store_run(acc, sqlite_sub_fn, sub_done, path);
	run_loop(20000);
	kinds_str(&r1, k1, sizeof(k1));
	kinds_str(&r2, k2, sizeof(k2));
	/* mailbox add, message add, flags, remove (expunge) */
	CU_ASSERT_STRING_EQUAL(k1, "mAFE");
	CU_ASSERT_STRING_EQUAL(k2, "mAFE");
	CU_ASSERT(r1.notified == 1 && r1.done_seen);
	for (i = 1; i < r1.n && i < 64; i++)
		CU_ASSERT(r1.modseqs[i] >= r1.modseqs[i - 1]);
	/* Group-committed deliveries too. */
	r1.n = 0;
	deliver_n(acc, "Projects", path, 3, -1);
	run_loop(20000);
	kinds_str(&r1, k1, sizeof(k1));
	CU_ASSERT_STRING_EQUAL(k1, "AAA");
	CU_ASSERT(dt.nok == 3 && r1.uids[0] != 0);
	osp_store_unsubscribe(r1.sub);
	osp_store_unsubscribe(r2.sub);
	osp_free(path);
	osp_account_unref(acc);
	osp_store_close(store);
	osp_event_deinit();
}

/* A count corrupted behind the store's back is caught at close under
 * OSPREY_STORE_CHECK, loudly (abort). */
static void
test_sqlite_check(void)
{
	struct osp_store *store;
	struct osp_account *acc;
	struct osp_store_new_msg m = { 0 };
	struct osp_mailbox mb;
	struct osp_pool *pool;
	const char *error = NULL;
	char dbpath[600], errfile[512], buf[1024];
	sqlite3 *db;
	ssize_t len;
	int status, fd;
	pid_t pid;

	if (!have_sqlite())
		return;
	store = store_new(NULL);
	pool = osp_pool_new(NULL);
	setenv("OSPREY_STORE_CHECK", "1", 1);
	acc = acc_open(store, "mike");
	m.path = msg_file(store, "m1");
	CU_ASSERT_FATAL(osp_mailbox_get(acc, "Inbox", pool, &mb, &error) ==
	    OSP_OK);
	CU_ASSERT(osp_message_append(acc, mb.id, &m, NULL, NULL, &error) ==
	    OSP_OK);
	osp_account_unref(acc);		/* consistent: passes */
	unsetenv("OSPREY_STORE_CHECK");

	snprintf(dbpath, sizeof(dbpath), "%s/accounts/mike/index.db",
	    store->data_dir);
	CU_ASSERT_FATAL(sqlite3_open(dbpath, &db) == SQLITE_OK);
	CU_ASSERT(sqlite3_exec(db, "UPDATE mailboxes SET total = total + 1 "
	    "WHERE name = 'Inbox'", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);

	snprintf(errfile, sizeof(errfile), "%s/check2.err", osp_test_tmpdir());
	fflush(NULL);
	pid = fork();
	CU_ASSERT_FATAL(pid != -1);
	if (pid == 0) {
		fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 2);
		signal(SIGABRT, SIG_DFL);
		setenv("OSPREY_STORE_CHECK", "1", 1);
		acc = acc_open(store, "mike");
		osp_account_unref(acc);
		_exit(0);
	}
	CU_ASSERT(waitpid(pid, &status, 0) == pid);
	CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	fd = open(errfile, O_RDONLY);
	CU_ASSERT_FATAL(fd != -1);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[len > 0 ? len : 0] = '\0';
	CU_ASSERT(strstr(buf, "consistency check failed for account mike") !=
	    NULL && strstr(buf, "total") != NULL);
	/* Without the check, the same close only logs. */
	acc = acc_open(store, "mike");
	osp_account_unref(acc);
	setenv("OSPREY_STORE_CHECK", "1", 1);
	osp_free((char *)m.path);
	osp_pool_free(pool);
	osp_store_close(store);
}

/* Deliveries to three accounts over several loop iterations, while each
 * account's FIFO also runs other jobs: every delivery completes once,
 * uids per account are 1..N without gaps, and each subscriber sees its
 * account's additions in uid order. */
#define MA_ACCOUNTS	3
#define MA_ROUNDS	6
#define MA_PER_ROUND	8

static struct {
	struct osp_account	*acc[MA_ACCOUNTS];
	struct subrec		 sub[MA_ACCOUNTS];
	bool			 seen[MA_ACCOUNTS][MA_ROUNDS * MA_PER_ROUND + 1];
	int			 bad, pending, round;
	const char		*path;
	struct osp_timer	*timer;
} ma;

static void
ma_done(void *arg, int err, uint32_t uid, const char *error)
{
	int a = (int)(intptr_t)arg;

	if (err != OSP_OK || uid == 0 || uid > MA_ROUNDS * MA_PER_ROUND ||
	    ma.seen[a][uid])
		ma.bad++;
	else
		ma.seen[a][uid] = true;
	if (--ma.pending == 0)
		osp_event_exit();
}

static void
ma_notify(void *arg)
{
	struct subrec *r = arg;
	const struct osp_change *c;

	while ((c = osp_store_sub_next(r->sub)) != NULL) {
		if (c->kind != OSP_CHANGE_ADD)
			continue;
		if (c->uid != (uint32_t)r->n + 1)
			ma.bad++;
		r->n++;
	}
}

static void
ma_round(void *arg)
{
	struct osp_store_new_msg m = { .path = ma.path };
	int a, i;

	for (a = 0; a < MA_ACCOUNTS; a++) {
		for (i = 0; i < MA_PER_ROUND; i++)
			osp_store_deliver(ma.acc[a], "Inbox", &m, ma_done,
			    (void *)(intptr_t)a);
		/* Interleave other work in the account's FIFO. */
		osp_store_run(ma.acc[a], NULL, NULL, NULL);
	}
	if (++ma.round < MA_ROUNDS)
		osp_timer_add(ma.timer, 1);
}

static void
test_sqlite_many_accounts(void)
{
	struct osp_store *store;
	char name[16];
	uint32_t uid;
	int a;

	if (!have_sqlite())
		return;
	store = store_new(NULL);
	loop_init();
	memset(&ma, 0, sizeof(ma));
	ma.path = msg_file(store, "m1");
	for (a = 0; a < MA_ACCOUNTS; a++) {
		snprintf(name, sizeof(name), "ma%d", a);
		ma.acc[a] = acc_open(store, name);
		ma.sub[a].sub = osp_store_subscribe(ma.acc[a], 1000, ma_notify,
		    &ma.sub[a]);
	}
	ma.pending = MA_ACCOUNTS * MA_ROUNDS * MA_PER_ROUND;
	ma.timer = osp_timer_new(ma_round, NULL);
	osp_timer_add(ma.timer, 0);
	run_loop(60000);
	CU_ASSERT(ma.pending == 0 && ma.bad == 0);
	for (a = 0; a < MA_ACCOUNTS; a++) {
		for (uid = 1; uid <= MA_ROUNDS * MA_PER_ROUND; uid++)
			CU_ASSERT(ma.seen[a][uid]);
		CU_ASSERT(ma.sub[a].n == MA_ROUNDS * MA_PER_ROUND);
		osp_store_unsubscribe(ma.sub[a].sub);
		osp_account_unref(ma.acc[a]);
	}
	osp_timer_free(ma.timer);
	osp_free((char *)ma.path);
	CU_ASSERT(store->accounts == NULL);
	osp_store_close(store);
	osp_event_deinit();
}

static const struct osp_test tests[] = {
	OSP_TEST(test_account_names),
	OSP_TEST(test_account_refs),
	OSP_TEST(test_account_remove),
	OSP_TEST(test_check_aborts),
	OSP_TEST(test_job_order),
	OSP_TEST(test_group_commit_fake),
	OSP_TEST(test_group_commit_join),
	OSP_TEST(test_broadcast),
	OSP_TEST(test_overflow),
	OSP_TEST(test_unsubscribe_in_notify),
	OSP_TEST(test_sqlite_accounts),
	OSP_TEST(test_sqlite_group_commit),
	OSP_TEST(test_sqlite_broadcast),
	OSP_TEST(test_sqlite_check),
	OSP_TEST(test_sqlite_many_accounts),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	osp_log_set_level(OSP_LOG_ERR);
	/* Every account closed by these tests is checked (counts, uidnext,
	 * sizes); the check tests switch it off where they say so. */
	setenv("OSPREY_STORE_CHECK", "1", 1);
	return osp_test_main(argc, argv, "store_core", tests);
}
