/* SPDX-License-Identifier: ISC */
/* The store's front end: shared accounts, the locked dispatch of every
 * public call to the backend, per-account job ordering on the worker
 * pool, group commit of deliveries and the change broadcast. */
#include "core.h"
#include "store_int.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Waiting changes per subscriber when it passes limit 0. */
#define STORE_SUB_LIMIT_DEFAULT	4096

/* One osp_store_run() request; the head of acc->jobs is the one on the
 * worker pool when acc->job_running. Holds a reference on the account. */
struct store_job {
	struct store_job	*next;
	struct osp_account	*acc;
	osp_store_fn		*fn;
	void			(*done)(void *arg);
	void			*arg;
};

/* One osp_store_deliver() request, with its own copy of the message
 * description (the caller's memory may go away before the commit). */
struct store_delivery {
	struct store_delivery	*next;
	char			*mailbox;
	char			*path, *prefix, **keywords;
	char			*remote_ip, *mail_from_domain;
	struct osp_store_new_msg msg;		/* points into the above */
	osp_store_deliver_fn	*done;
	void			*arg;
	/* results, written by the worker */
	int			 err;
	uint32_t		 uid;
	char			*error;
};

/* The deliveries of one group commit: one job, one transaction. */
struct store_batch {
	struct store_delivery	*list, **tail;
	size_t			 n;
};

struct store_sub {
	struct store_sub	*next;		/* in acc->subs */
	struct osp_account	*acc;		/* referenced */
	size_t			 limit, n;
	/* waiting, in commit order; cur: returned last by sub_next */
	struct store_change_node *head, **tail, *cur;
	void			(*notify)(void *arg);
	void			*arg;
	bool			 overflowed;	/* only OVERFLOW waits */
	bool			 notify_pending;
};

/* The public handle; acc->subs links the inner struct. */
struct osp_store_sub {
	struct store_sub	 s;
};

static struct osp_store	*store_current;
static uint64_t		 store_stat_batches, store_stat_messages;

/* Error text of the calls without a pool (store and account open,
 * remove): valid until the thread's next such call. */
static _Thread_local char store_errbuf[512];

static const char *
store_errf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(store_errbuf, sizeof(store_errbuf), fmt, ap);
	va_end(ap);
	return store_errbuf;
}

static char *
store_join(const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
	char *p;

	p = osp_malloc(la + lb + lc + 1);
	memcpy(p, a, la);
	memcpy(p + la, b, lb);
	memcpy(p + la + lb, c, lc + 1);
	return p;
}

static int
store_mkdir(const char *path, const char **error_r)
{
	struct stat st;
	int rc;

	if (mkdir(path, 0750) == 0)
		return OSP_OK;
	if (errno != EEXIST) {
		rc = -errno;
		*error_r = store_errf("mkdir %s: %s", path, strerror(errno));
		return rc;
	}
	if (stat(path, &st) == -1) {
		rc = -errno;
		*error_r = store_errf("%s: %s", path, strerror(errno));
		return rc;
	}
	if (!S_ISDIR(st.st_mode)) {
		*error_r = store_errf("%s: not a directory", path);
		return -ENOTDIR;
	}
	return OSP_OK;
}

static void
store_changes_free(struct store_change_node *n)
{
	struct store_change_node *next;

	for (; n != NULL; n = next) {
		next = n->next;
		osp_free((char *)n->c.name);
		osp_free((char *)n->c.new_name);
		osp_free(n);
	}
}

/* ---- store ----------------------------------------------------------- */

int
osp_store_open(const char *data_dir, struct osp_store **store_r,
    const char **error_r)
{
	struct osp_store *store;
	char *accounts, *tmp;
	int rc;

	*store_r = NULL;
	if ((rc = store_mkdir(data_dir, error_r)) != OSP_OK)
		return rc;
	accounts = store_join(data_dir, "/", "accounts");
	tmp = store_join(data_dir, "/", "tmp");
	if ((rc = store_mkdir(accounts, error_r)) != OSP_OK ||
	    (rc = store_mkdir(tmp, error_r)) != OSP_OK) {
		osp_free(accounts);
		osp_free(tmp);
		return rc;
	}
	osp_free(accounts);
	store = osp_calloc(1, sizeof(*store));
	store->data_dir = osp_strdup(data_dir);
	store->tmp_dir = tmp;
	store->ops = &store_sqlite_ops;
	pthread_mutex_init(&store->lock, NULL);
	*store_r = store;
	return OSP_OK;
}

void
osp_store_close(struct osp_store *store)
{
	struct osp_account *acc;

	if (store == NULL)
		return;
	if (store->accounts != NULL) {
		/* Our bug: someone still holds an account. Leak rather than
		 * free memory that is in use. */
		for (acc = store->accounts; acc != NULL; acc = acc->next)
			osp_log_err("store", "close: account %s still open "
			    "(refs=%d)", acc->name, acc->refs);
		return;
	}
	if (store_current == store)
		store_current = NULL;
	pthread_mutex_destroy(&store->lock);
	osp_free(store->data_dir);
	osp_free(store->tmp_dir);
	osp_free(store);
}

struct osp_store *
osp_store_current(void)
{
	return store_current;
}

void
osp_store_set_current(struct osp_store *store)
{
	store_current = store;
}

const char *
osp_store_tmpdir(const struct osp_store *store)
{
	return store->tmp_dir;
}

void
osp_store_stats(uint64_t *batches_r, uint64_t *messages_r)
{
	*batches_r = store_stat_batches;
	*messages_r = store_stat_messages;
}

/* ---- accounts -------------------------------------------------------- */

/* Non-ASCII code points that are no part of a name: C1 controls, the
 * invisible and spacing ones (no-break and other spaces, zero-width and
 * bidi controls, soft hyphen, BOM, variation selectors, tags), private
 * use and noncharacters. They would make look-alike or unprintable
 * directory and log names. */
static bool
store_name_cp_ok(uint32_t cp)
{
	return !(cp < 0xa1 || cp == 0xad ||
	    (cp >= 0x2000 && cp <= 0x206f) || cp == 0x3000 ||
	    (cp >= 0xe000 && cp <= 0xf8ff) || (cp >= 0xfdd0 && cp <= 0xfdef) ||
	    (cp >= 0xfe00 && cp <= 0xfe0f) || cp == 0xfeff ||
	    (cp & 0xfffe) == 0xfffe || (cp >= 0xfff0 && cp <= 0xfffd) ||
	    (cp >= 0xe0000 && cp <= 0xe007f) || cp >= 0xf0000);
}

/* An account name becomes a directory name: lower-case ASCII letters,
 * digits, '.', '_', '-' and non-ASCII UTF-8 (names of domains.yaml);
 * never '/', never a leading '.' (so neither "." nor ".."). */
static bool
store_account_name_valid(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;
	uint32_t cp;
	size_t n;

	if (*p == '\0' || *p == '.' || strlen(name) > 255)
		return false;
	while (*p != '\0') {
		if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '.' || *p == '_' || *p == '-') {
			p++;
			continue;
		}
		/* Other ASCII is refused; non-ASCII must be well formed. */
		if (*p < 0x80 ||
		    (n = osp_utf8_decode(p, SIZE_MAX, &cp)) == 0 ||
		    !store_name_cp_ok(cp))
			return false;
		p += n;
	}
	return true;
}

static struct osp_account *
store_account_find(struct osp_store *store, const char *name)
{
	struct osp_account *acc;

	for (acc = store->accounts; acc != NULL; acc = acc->next)
		if (strcmp(acc->name, name) == 0)
			return acc;
	return NULL;
}

static void
store_account_free(struct osp_account *acc)
{
	store_changes_free(acc->pending);
	store_changes_free(acc->committed);
	pthread_mutex_destroy(&acc->lock);
	osp_free(acc->name);
	osp_free(acc->dir);
	osp_free(acc);
}

static bool
store_check_enabled(void)
{
	const char *v = getenv("OSPREY_STORE_CHECK");

	return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

/*
 * Opening a new account holds store->lock throughout, so two openers of
 * one name never race to create it and a closing account is gone from
 * the list before anyone can open it again. Opening is rare (the struct
 * is shared while referenced), so the serialization costs little.
 */
int
osp_account_open(struct osp_store *store, const char *name, bool create,
    struct osp_account **acc_r, const char **error_r)
{
	struct osp_account *acc;
	struct stat st;
	int rc;

	*acc_r = NULL;
	if (!store_account_name_valid(name)) {
		*error_r = "invalid account name";
		return -EINVAL;
	}
	pthread_mutex_lock(&store->lock);
	if ((acc = store_account_find(store, name)) != NULL) {
		acc->refs++;
		pthread_mutex_unlock(&store->lock);
		*acc_r = acc;
		return OSP_OK;
	}
	acc = osp_calloc(1, sizeof(*acc));
	acc->store = store;
	acc->name = osp_strdup(name);
	acc->dir = store_join(store->data_dir, "/accounts/", name);
	if (!create && stat(acc->dir, &st) == -1) {
		rc = -errno;
		*error_r = errno == ENOENT ? "no such account" :
		    store_errf("%s: %s", acc->dir, strerror(errno));
		pthread_mutex_unlock(&store->lock);
		osp_free(acc->name);
		osp_free(acc->dir);
		osp_free(acc);
		return rc;
	}
	pthread_mutex_init(&acc->lock, NULL);
	acc->pending_tail = &acc->pending;
	acc->committed_tail = &acc->committed;
	acc->jobs_tail = &acc->jobs;
	acc->deliveries_tail = &acc->deliveries;
	pthread_mutex_lock(&acc->lock);
	rc = store->ops->account_open(acc, create, error_r);
	/* Nobody can be subscribed to a struct that did not exist. */
	store_changes_free(acc->pending);
	acc->pending = NULL;
	acc->pending_tail = &acc->pending;
	pthread_mutex_unlock(&acc->lock);
	if (rc != OSP_OK) {
		pthread_mutex_unlock(&store->lock);
		store_account_free(acc);
		return rc;
	}
	acc->refs = 1;
	acc->next = store->accounts;
	store->accounts = acc;
	pthread_mutex_unlock(&store->lock);
	*acc_r = acc;
	return OSP_OK;
}

struct osp_account *
osp_account_ref(struct osp_account *acc)
{
	pthread_mutex_lock(&acc->store->lock);
	acc->refs++;
	pthread_mutex_unlock(&acc->store->lock);
	return acc;
}

void
osp_account_unref(struct osp_account *acc)
{
	struct osp_store *store;
	struct osp_account **pp;
	const char *error = NULL;
	bool check;
	int rc;

	if (acc == NULL)
		return;
	store = acc->store;
	pthread_mutex_lock(&store->lock);
	if (acc->refs <= 0) {
		pthread_mutex_unlock(&store->lock);
		osp_log_err("store", "account %s: unref without a reference",
		    acc->name);
		abort();
	}
	if (--acc->refs > 0) {
		pthread_mutex_unlock(&store->lock);
		return;
	}
	for (pp = &store->accounts; *pp != acc; pp = &(*pp)->next)
		;
	*pp = acc->next;
	check = store_check_enabled();
	pthread_mutex_lock(&acc->lock);
	rc = store->ops->account_close(acc, check, &error);
	pthread_mutex_unlock(&acc->lock);
	pthread_mutex_unlock(&store->lock);
	if (rc != OSP_OK) {
		if (check) {
			/* Under tests: fail loudly, the state on disk is
			 * not what the counters say. */
			fprintf(stderr, "osprey: store consistency check "
			    "failed for account %s: %s\n", acc->name,
			    error != NULL ? error : osp_strerror(rc));
			abort();
		}
		osp_log_err("store", "account %s: close: %s", acc->name,
		    error != NULL ? error : osp_strerror(rc));
	}
	store_account_free(acc);
}

const char *
osp_account_name(const struct osp_account *acc)
{
	return acc->name;
}

static int
store_rm_entry(const char *path, const struct stat *st, int type,
    struct FTW *ftw)
{
	if (type == FTW_DP)
		return rmdir(path) == -1 ? -1 : 0;
	return unlink(path) == -1 ? -1 : 0;
}

int
osp_account_remove(struct osp_store *store, const char *name,
    const char **error_r)
{
	struct stat st;
	char *dir;
	int rc = OSP_OK;

	if (!store_account_name_valid(name)) {
		*error_r = "invalid account name";
		return -EINVAL;
	}
	dir = store_join(store->data_dir, "/accounts/", name);
	/* Under store->lock: nobody opens it while the tree goes away. */
	pthread_mutex_lock(&store->lock);
	if (store_account_find(store, name) != NULL) {
		*error_r = "account is open";
		rc = -EBUSY;
	} else if (lstat(dir, &st) == -1) {
		rc = -errno;
		*error_r = errno == ENOENT ? "no such account" :
		    store_errf("%s: %s", dir, strerror(errno));
	} else if (nftw(dir, store_rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
		rc = errno != 0 ? -errno : OSP_ERROR;
		*error_r = store_errf("removing %s: %s", dir,
		    osp_strerror(rc));
	}
	pthread_mutex_unlock(&store->lock);
	osp_free(dir);
	return rc;
}

/* ---- the public calls: lock, backend op, commit changes -------------- */

static void
store_op_begin(struct osp_account *acc)
{
	pthread_mutex_lock(&acc->lock);
}

/* Changes recorded by the op become visible (committed, waiting for
 * dispatch) only when it succeeded; a failed op rolled back. */
static int
store_op_end(struct osp_account *acc, int rc)
{
	if (rc == OSP_OK && acc->pending != NULL) {
		*acc->committed_tail = acc->pending;
		acc->committed_tail = acc->pending_tail;
	} else
		store_changes_free(acc->pending);
	acc->pending = NULL;
	acc->pending_tail = &acc->pending;
	pthread_mutex_unlock(&acc->lock);
	return rc;
}

/* Calls one backend op with the account locked; evaluates to its code.
 * The comma operator orders the lock before the call. */
#define STORE_OP(acc, call)						\
	store_op_end((acc), (store_op_begin(acc), (acc)->store->ops->call))

void
store_change_add(struct osp_account *acc, enum osp_change_kind kind,
    int64_t mailbox_id, uint32_t uid, uint64_t modseq, uint32_t flags,
    const char *name, const char *new_name)
{
	struct store_change_node *n;

	/* Nobody listens: drop it (bounded memory for imports and the CLI).
	 * A subscriber reads its starting state through the account's job
	 * FIFO after subscribing, so it cannot miss what is dropped here. */
	if (__atomic_load_n(&acc->subs, __ATOMIC_ACQUIRE) == NULL)
		return;
	n = osp_calloc(1, sizeof(*n));
	n->c.kind = kind;
	n->c.mailbox_id = mailbox_id;
	n->c.uid = uid;
	n->c.modseq = modseq;
	n->c.flags = flags;
	n->c.name = name != NULL ? osp_strdup(name) : NULL;
	n->c.new_name = new_name != NULL ? osp_strdup(new_name) : NULL;
	*acc->pending_tail = n;
	acc->pending_tail = &n->next;
}

int
osp_mailbox_list(struct osp_account *acc, struct osp_pool *pool,
    struct osp_mailbox **list_r, size_t *n_r, const char **error_r)
{
	return STORE_OP(acc, mailbox_list(acc, pool, list_r, n_r, error_r));
}

int
osp_mailbox_get(struct osp_account *acc, const char *name,
    struct osp_pool *pool, struct osp_mailbox *mb_r, const char **error_r)
{
	if (name == NULL) {
		*error_r = "no mailbox name";
		return -EINVAL;
	}
	return STORE_OP(acc, mailbox_get(acc, name, 0, pool, mb_r, error_r));
}

int
osp_mailbox_get_id(struct osp_account *acc, int64_t id,
    struct osp_pool *pool, struct osp_mailbox *mb_r, const char **error_r)
{
	return STORE_OP(acc, mailbox_get(acc, NULL, id, pool, mb_r,
	    error_r));
}

int
osp_mailbox_create(struct osp_account *acc, const char *name,
    uint32_t special_use, int64_t *id_r, const char **error_r)
{
	return STORE_OP(acc, mailbox_create(acc, name, special_use, id_r,
	    error_r));
}

int
osp_mailbox_rename(struct osp_account *acc, const char *from,
    const char *to, const char **error_r)
{
	return STORE_OP(acc, mailbox_rename(acc, from, to, error_r));
}

int
osp_mailbox_delete(struct osp_account *acc, const char *name,
    const char **error_r)
{
	return STORE_OP(acc, mailbox_delete(acc, name, error_r));
}

int
osp_mailbox_set_special_use(struct osp_account *acc, int64_t id,
    uint32_t special_use, const char **error_r)
{
	return STORE_OP(acc, mailbox_set_special_use(acc, id, special_use,
	    error_r));
}

int
osp_mailbox_subscribe(struct osp_account *acc, const char *name,
    bool subscribe, const char **error_r)
{
	return STORE_OP(acc, mailbox_subscribe(acc, name, subscribe,
	    error_r));
}

int
osp_mailbox_subscriptions(struct osp_account *acc, struct osp_pool *pool,
    const char ***names_r, size_t *n_r, const char **error_r)
{
	return STORE_OP(acc, mailbox_subscriptions(acc, pool, names_r, n_r,
	    error_r));
}

int
osp_message_append(struct osp_account *acc, int64_t mailbox_id,
    const struct osp_store_new_msg *m, uint32_t *uid_r, int64_t *id_r,
    const char **error_r)
{
	struct store_append_req req = { .mailbox_id = mailbox_id, .msg = m };
	int rc;

	rc = STORE_OP(acc, message_append(acc, &req, 1, error_r));
	if (rc == OSP_OK) {
		if (uid_r != NULL)
			*uid_r = req.uid;
		if (id_r != NULL)
			*id_r = req.id;
	}
	return rc;
}

int
osp_message_append_batch(struct osp_account *acc, int64_t mailbox_id,
    const struct osp_store_new_msg *msgs, size_t n, uint32_t *uids_r,
    const char **error_r)
{
	struct store_append_req *reqs;
	size_t i;
	int rc;

	if (n == 0)
		return OSP_OK;
	reqs = osp_calloc(n, sizeof(*reqs));
	for (i = 0; i < n; i++) {
		reqs[i].mailbox_id = mailbox_id;
		reqs[i].msg = &msgs[i];
	}
	rc = STORE_OP(acc, message_append(acc, reqs, n, error_r));
	if (rc == OSP_OK && uids_r != NULL)
		for (i = 0; i < n; i++)
			uids_r[i] = reqs[i].uid;
	osp_free(reqs);
	return rc;
}

int
osp_message_list(struct osp_account *acc, int64_t mailbox_id,
    const struct osp_uidset *uids, uint32_t with, struct osp_pool *pool,
    struct osp_message **list_r, size_t *n_r, const char **error_r)
{
	return STORE_OP(acc, message_list(acc, mailbox_id, uids, with, pool,
	    list_r, n_r, error_r));
}

int
osp_message_open(struct osp_account *acc, int64_t message_id, int *fd_r,
    const char **error_r)
{
	return STORE_OP(acc, message_open(acc, message_id, fd_r, error_r));
}

int
osp_message_store_flags(struct osp_account *acc, int64_t mailbox_id,
    const struct osp_uidset *uids, enum osp_store_mode mode, uint32_t flags,
    const char *const *keywords, uint64_t unchangedsince,
    struct osp_pool *pool, struct osp_uidset *failed_r, const char **error_r)
{
	return STORE_OP(acc, message_store_flags(acc, mailbox_id, uids, mode,
	    flags, keywords, unchangedsince, pool, failed_r, error_r));
}

int
osp_message_copy(struct osp_account *acc, int64_t src_mailbox,
    const struct osp_uidset *uids, int64_t dst_mailbox,
    struct osp_pool *pool, uint32_t **src_uids_r, uint32_t **dst_uids_r,
    size_t *n_r, const char **error_r)
{
	return STORE_OP(acc, message_copy(acc, src_mailbox, uids, dst_mailbox,
	    false, pool, src_uids_r, dst_uids_r, n_r, error_r));
}

int
osp_message_move(struct osp_account *acc, int64_t src_mailbox,
    const struct osp_uidset *uids, int64_t dst_mailbox,
    struct osp_pool *pool, uint32_t **src_uids_r, uint32_t **dst_uids_r,
    size_t *n_r, const char **error_r)
{
	return STORE_OP(acc, message_copy(acc, src_mailbox, uids, dst_mailbox,
	    true, pool, src_uids_r, dst_uids_r, n_r, error_r));
}

int
osp_message_expunge(struct osp_account *acc, int64_t mailbox_id,
    const struct osp_uidset *uids, bool only_deleted, struct osp_pool *pool,
    uint32_t **uids_r, size_t *n_r, const char **error_r)
{
	return STORE_OP(acc, message_expunge(acc, mailbox_id, uids,
	    only_deleted, pool, uids_r, n_r, error_r));
}

int
osp_account_modseq(struct osp_account *acc, uint64_t *modseq_r,
    const char **error_r)
{
	return STORE_OP(acc, account_modseq(acc, modseq_r, error_r));
}

int
osp_message_changes(struct osp_account *acc, int64_t mailbox_id,
    uint64_t since, struct osp_pool *pool, struct osp_message **list_r,
    size_t *n_r, const char **error_r)
{
	return STORE_OP(acc, message_changes(acc, mailbox_id, since, pool,
	    list_r, n_r, error_r));
}

int
osp_account_size(struct osp_account *acc, uint64_t *size_r,
    const char **error_r)
{
	return STORE_OP(acc, account_size(acc, size_r, error_r));
}

/* ---- per-account job FIFO on the worker pool -------------------------- */

static void	store_job_start(struct osp_account *acc);

static void
store_job_work(void *arg)
{
	struct store_job *j = arg;

	if (j->fn != NULL)
		j->fn(j->acc, j->arg);
}

/* Main thread: the job's completion, then the changes it committed, then
 * the account's next job. job_running stays set until then, so jobs
 * queued from done() or from a notify wait their turn. */
static void
store_job_done(void *arg)
{
	struct store_job *j = arg;
	struct osp_account *acc = j->acc;

	acc->jobs = j->next;
	if (acc->jobs == NULL)
		acc->jobs_tail = &acc->jobs;
	if (j->done != NULL)
		j->done(j->arg);
	osp_store_dispatch(acc);
	acc->job_running = false;
	if (acc->jobs != NULL)
		store_job_start(acc);
	osp_free(j);
	osp_account_unref(acc);
}

static void
store_job_start(struct osp_account *acc)
{
	acc->job_running = true;
	osp_worker_submit(store_job_work, store_job_done, acc->jobs);
}

void
osp_store_run(struct osp_account *acc, osp_store_fn *fn,
    void (*done)(void *arg), void *arg)
{
	struct store_job *j;

	j = osp_calloc(1, sizeof(*j));
	j->acc = osp_account_ref(acc);
	j->fn = fn;
	j->done = done;
	j->arg = arg;
	*acc->jobs_tail = j;
	acc->jobs_tail = &j->next;
	if (!acc->job_running)
		store_job_start(acc);
}

/* ---- group commit ----------------------------------------------------- */

static void
store_delivery_free(struct store_delivery *d)
{
	size_t i;

	osp_free(d->mailbox);
	osp_free(d->path);
	osp_free(d->prefix);
	if (d->keywords != NULL) {
		for (i = 0; d->keywords[i] != NULL; i++)
			osp_free(d->keywords[i]);
		osp_free(d->keywords);
	}
	osp_free(d->remote_ip);
	osp_free(d->mail_from_domain);
	osp_free(d->error);
	osp_free(d);
}

static char *
store_strdup0(const char *s)
{
	return s != NULL ? osp_strdup(s) : NULL;
}

static void
store_delivery_copy(struct store_delivery *d, const struct osp_store_new_msg *m)
{
	size_t i, n;

	d->msg = *m;
	d->msg.path = d->path = store_strdup0(m->path);
	if (m->prefix != NULL) {
		d->prefix = osp_malloc(m->prefix_len + 1);
		memcpy(d->prefix, m->prefix, m->prefix_len);
		d->prefix[m->prefix_len] = '\0';
	} else
		d->msg.prefix_len = 0;
	d->msg.prefix = d->prefix;
	if (m->keywords != NULL) {
		for (n = 0; m->keywords[n] != NULL; n++)
			;
		d->keywords = osp_calloc(n + 1, sizeof(*d->keywords));
		for (i = 0; i < n; i++)
			d->keywords[i] = osp_strdup(m->keywords[i]);
	}
	d->msg.keywords = (const char *const *)d->keywords;
	d->msg.remote_ip = d->remote_ip = store_strdup0(m->remote_ip);
	d->msg.mail_from_domain = d->mail_from_domain =
	    store_strdup0(m->mail_from_domain);
}

static void
store_delivery_fail(struct store_delivery *d, int rc, const char *error)
{
	d->err = rc;
	osp_free(d->error);
	d->error = osp_strdup(error != NULL ? error : osp_strerror(rc));
}

/* A mailbox name of a batch resolved to its id. */
struct store_resolved {
	const char	*name;
	int64_t		 id;
	int		 rc;
	const char	*error;
};

/* Resolves a delivery's mailbox; an unknown one means Inbox (as mox does
 * for rules naming a mailbox that was since removed). */
static int
store_batch_resolve(struct osp_account *acc, struct osp_pool *pool,
    const char *name, int64_t *id_r, const char **error_r)
{
	struct osp_mailbox mb;
	char safe[128];
	int rc;

	rc = STORE_OP(acc, mailbox_get(acc, name, 0, pool, &mb, error_r));
	if (rc == -ENOENT && !osp_str_eqi(name, "Inbox")) {
		osp_log_info("store", "account %s: no mailbox %s, delivering "
		    "to Inbox", acc->name,
		    osp_log_safe(safe, sizeof(safe), name, strlen(name)));
		rc = STORE_OP(acc, mailbox_get(acc, "Inbox", 0, pool, &mb,
		    error_r));
	}
	if (rc == OSP_OK)
		*id_r = mb.id;
	return rc;
}

/* Worker: the whole batch in one transaction; if that fails, each message
 * alone, so one bad message cannot fail the others. */
static void
store_batch_work(struct osp_account *acc, void *arg)
{
	struct store_batch *b = arg;
	struct store_append_req *reqs;
	struct store_delivery **ds, *d;
	struct store_resolved *res;
	struct osp_pool *pool;
	const char *error = NULL;
	size_t i, k = 0, nres = 0;
	int rc;

	pool = osp_pool_new(NULL);
	reqs = osp_calloc(b->n, sizeof(*reqs));
	ds = osp_calloc(b->n, sizeof(*ds));
	res = osp_calloc(b->n, sizeof(*res));
	for (d = b->list; d != NULL; d = d->next) {
		for (i = 0; i < nres; i++)
			if (strcmp(res[i].name, d->mailbox) == 0)
				break;
		if (i == nres) {
			res[i].name = d->mailbox;
			res[i].rc = store_batch_resolve(acc, pool, d->mailbox,
			    &res[i].id, &res[i].error);
			nres++;
		}
		if (res[i].rc != OSP_OK) {
			store_delivery_fail(d, res[i].rc, res[i].error);
			continue;
		}
		reqs[k].mailbox_id = res[i].id;
		reqs[k].msg = &d->msg;
		ds[k++] = d;
	}
	if (k > 0) {
		rc = STORE_OP(acc, message_append(acc, reqs, k, &error));
		if (rc != OSP_OK && k > 1) {
			osp_log_warn("store", "account %s: group commit of %zu "
			    "messages failed (%s), committing one by one",
			    acc->name, k, error != NULL ? error :
			    osp_strerror(rc));
			for (i = 0; i < k; i++) {
				error = NULL;
				rc = STORE_OP(acc, message_append(acc, &reqs[i],
				    1, &error));
				if (rc != OSP_OK)
					store_delivery_fail(ds[i], rc, error);
			}
		} else if (rc != OSP_OK)
			store_delivery_fail(ds[0], rc, error);
		for (i = 0; i < k; i++)
			if (ds[i]->err == OSP_OK)
				ds[i]->uid = reqs[i].uid;
	}
	osp_free(res);
	osp_free(ds);
	osp_free(reqs);
	osp_pool_free(pool);
}

/* Main thread: every request's completion, in request order. */
static void
store_batch_done(void *arg)
{
	struct store_batch *b = arg;
	struct store_delivery *d;

	store_stat_batches++;
	store_stat_messages += b->n;
	while ((d = b->list) != NULL) {
		b->list = d->next;
		if (d->done != NULL)
			d->done(d->arg, d->err, d->err == OSP_OK ? d->uid : 0,
			    d->err == OSP_OK ? NULL : d->error);
		store_delivery_free(d);
	}
	osp_free(b);
}

/* Deferred once per loop iteration per account with deliveries: turns the
 * queue into one job. While a commit is on the worker pool, deliveries
 * join the batch queued behind it, so a slow fsync makes the next batch
 * bigger rather than the queue longer. */
static void
store_deliver_flush(void *arg)
{
	struct osp_account *acc = arg;
	struct store_job *j, *last = NULL;
	struct store_batch *b;
	struct store_delivery *d;
	size_t n = 0;

	acc->delivery_scheduled = false;
	if (acc->deliveries == NULL) {
		osp_account_unref(acc);
		return;
	}
	for (d = acc->deliveries; d != NULL; d = d->next)
		n++;
	for (j = acc->jobs; j != NULL; j = j->next)
		last = j;
	if (last != NULL && last->fn == store_batch_work &&
	    !(last == acc->jobs && acc->job_running)) {
		b = last->arg;
		*b->tail = acc->deliveries;
		b->tail = acc->deliveries_tail;
		b->n += n;
	} else {
		b = osp_calloc(1, sizeof(*b));
		b->list = acc->deliveries;
		b->tail = acc->deliveries_tail;
		b->n = n;
		osp_store_run(acc, store_batch_work, store_batch_done, b);
	}
	acc->deliveries = NULL;
	acc->deliveries_tail = &acc->deliveries;
	osp_account_unref(acc);
}

void
osp_store_deliver(struct osp_account *acc, const char *mailbox,
    const struct osp_store_new_msg *m, osp_store_deliver_fn *done,
    void *arg)
{
	struct store_delivery *d;

	d = osp_calloc(1, sizeof(*d));
	d->mailbox = osp_strdup(mailbox != NULL ? mailbox : "Inbox");
	store_delivery_copy(d, m);
	d->done = done;
	d->arg = arg;
	*acc->deliveries_tail = d;
	acc->deliveries_tail = &d->next;
	if (!acc->delivery_scheduled) {
		acc->delivery_scheduled = true;
		osp_event_defer(store_deliver_flush, osp_account_ref(acc));
	}
}

/* ---- change broadcast ------------------------------------------------- */

static void
store_sub_append(struct store_sub *s, struct store_change_node *n)
{
	n->next = NULL;
	*s->tail = n;
	s->tail = &n->next;
	s->n++;
	s->notify_pending = true;
}

static void
store_sub_push(struct store_sub *s, const struct osp_change *c)
{
	struct store_change_node *n;

	/* After an overflow the subscriber resyncs from the database, which
	 * includes everything committed since: queue nothing more. */
	if (s->overflowed)
		return;
	n = osp_calloc(1, sizeof(*n));
	if (s->n >= s->limit) {
		store_changes_free(s->head);
		s->head = NULL;
		s->tail = &s->head;
		s->n = 0;
		s->overflowed = true;
		n->c.kind = OSP_CHANGE_OVERFLOW;
		n->c.modseq = c->modseq;
	} else {
		n->c = *c;
		n->c.name = store_strdup0(c->name);
		n->c.new_name = store_strdup0(c->new_name);
	}
	store_sub_append(s, n);
}

void
osp_store_dispatch(struct osp_account *acc)
{
	struct store_change_node *list, *n;
	struct store_sub *s;

	pthread_mutex_lock(&acc->lock);
	list = acc->committed;
	acc->committed = NULL;
	acc->committed_tail = &acc->committed;
	pthread_mutex_unlock(&acc->lock);
	if (list == NULL)
		return;
	for (s = acc->subs; s != NULL; s = s->next)
		for (n = list; n != NULL; n = n->next)
			store_sub_push(s, &n->c);
	store_changes_free(list);
	/*
	 * A notify may unsubscribe itself or others, subscribe, dispatch or
	 * drop its account reference: hold one, and look for the next
	 * subscriber to notify from the head each time instead of keeping a
	 * pointer that notify could free.
	 */
	osp_account_ref(acc);
	for (;;) {
		for (s = acc->subs; s != NULL && !s->notify_pending;
		    s = s->next)
			;
		if (s == NULL)
			break;
		s->notify_pending = false;
		s->notify(s->arg);
	}
	osp_account_unref(acc);
}

struct osp_store_sub *
osp_store_subscribe(struct osp_account *acc, size_t limit,
    void (*notify)(void *arg), void *arg)
{
	struct osp_store_sub *sub;
	struct store_sub *s, **pp;

	sub = osp_calloc(1, sizeof(*sub));
	s = &sub->s;
	s->acc = osp_account_ref(acc);
	s->limit = limit != 0 ? limit : STORE_SUB_LIMIT_DEFAULT;
	s->tail = &s->head;
	s->notify = notify;
	s->arg = arg;
	/* Appended: subscribers are notified in subscription order. Workers
	 * only test acc->subs for NULL (store_change_add), atomically. */
	for (pp = &acc->subs; *pp != NULL; pp = &(*pp)->next)
		;
	if (pp == &acc->subs)
		__atomic_store_n(&acc->subs, s, __ATOMIC_RELEASE);
	else
		*pp = s;
	return sub;
}

const struct osp_change *
osp_store_sub_next(struct osp_store_sub *sub)
{
	struct store_sub *s = &sub->s;
	struct store_change_node *n;

	store_changes_free(s->cur);
	s->cur = NULL;
	if ((n = s->head) == NULL)
		return NULL;
	s->head = n->next;
	if (s->head == NULL)
		s->tail = &s->head;
	s->n--;
	if (n->c.kind == OSP_CHANGE_OVERFLOW)
		s->overflowed = false;
	n->next = NULL;
	s->cur = n;
	return &n->c;
}

void
osp_store_unsubscribe(struct osp_store_sub *sub)
{
	struct store_sub *s, **pp;
	struct osp_account *acc;

	if (sub == NULL)
		return;
	s = &sub->s;
	acc = s->acc;
	for (pp = &acc->subs; *pp != s; pp = &(*pp)->next)
		;
	if (pp == &acc->subs)
		__atomic_store_n(&acc->subs, s->next, __ATOMIC_RELEASE);
	else
		*pp = s->next;
	store_changes_free(s->head);
	store_changes_free(s->cur);
	osp_free(sub);
	osp_account_unref(acc);
}
