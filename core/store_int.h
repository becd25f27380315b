/* SPDX-License-Identifier: ISC */
/* Inside the store: the account object, the backend ops interface and
 * change recording (store.c dispatches; store_sqlite.c is the backend). */
#ifndef OSPREY_STORE_INT_H
#define OSPREY_STORE_INT_H

#include "core.h"	/* first: config.h sets _GNU_SOURCE */

#include <pthread.h>

#include <osprey/store.h>

struct store_change_node {
	struct store_change_node *next;
	struct osp_change	  c;	/* name/new_name heap copies */
};

struct store_sub;		/* store.c */
struct store_job;		/* store.c */
struct store_delivery;		/* store.c */

struct osp_store {
	char			*data_dir;
	char			*tmp_dir;
	const struct store_ops	*ops;
	pthread_mutex_t		 lock;		/* accounts list */
	struct osp_account	*accounts;	/* open accounts */
};

struct osp_account {
	struct osp_account	*next;		/* in store->accounts */
	struct osp_store	*store;
	char			*name;
	char			*dir;		/* data_dir/accounts/<name> */
	int			 refs;		/* under store->lock */
	/* Serializes every backend call on this account. store.c takes it
	 * around each op; the backend never takes it. */
	pthread_mutex_t		 lock;
	void			*backend;	/* the backend's per-account state */
	/* Changes recorded by the running op (under lock); moved to
	 * `committed` when the op returns OSP_OK, dropped otherwise. */
	struct store_change_node *pending, **pending_tail;
	/* Committed, waiting for main-thread dispatch (under lock). */
	struct store_change_node *committed, **committed_tail;
	/* Main thread only: subscribers, ordered job queue, deliveries. */
	struct store_sub	*subs;
	struct store_job	*jobs, **jobs_tail;
	bool			 job_running;
	struct store_delivery	*deliveries, **deliveries_tail;
	bool			 delivery_scheduled;
};

/* One message of a grouped delivery: all of a batch commit together. */
struct store_append_req {
	int64_t				 mailbox_id;
	const struct osp_store_new_msg	*msg;
	uint32_t			 uid;	/* out */
	int64_t				 id;	/* out */
};

/*
 * The backend interface. Every op runs with acc->lock held by store.c,
 * on whatever thread called the public function; it commits its own
 * transaction and records each change it made with store_change_add()
 * (after the point where it can no longer fail, or anywhere: on error the
 * pending changes are dropped). Semantics are those of the public
 * functions of the same names in include/osprey/store.h.
 */
struct store_ops {
	const char *name;
	int	(*account_open)(struct osp_account *acc, bool create,
		    const char **error_r);
	/* Closes; with check, verifies counts/uidnext/sizes first and
	 * returns OSP_ERROR with the mismatch in *error_r. */
	int	(*account_close)(struct osp_account *acc, bool check,
		    const char **error_r);
	int	(*mailbox_list)(struct osp_account *, struct osp_pool *,
		    struct osp_mailbox **, size_t *, const char **);
	int	(*mailbox_get)(struct osp_account *, const char *name,
		    int64_t id, struct osp_pool *, struct osp_mailbox *,
		    const char **);		/* by name, or id when !name */
	int	(*mailbox_create)(struct osp_account *, const char *, uint32_t,
		    int64_t *, const char **);
	int	(*mailbox_rename)(struct osp_account *, const char *,
		    const char *, const char **);
	int	(*mailbox_delete)(struct osp_account *, const char *,
		    const char **);
	int	(*mailbox_set_special_use)(struct osp_account *, int64_t,
		    uint32_t, const char **);
	int	(*mailbox_subscribe)(struct osp_account *, const char *, bool,
		    const char **);
	int	(*mailbox_subscriptions)(struct osp_account *,
		    struct osp_pool *, const char ***, size_t *, const char **);
	/* Appends n messages in one transaction, all or nothing. */
	int	(*message_append)(struct osp_account *,
		    struct store_append_req *reqs, size_t n, const char **);
	int	(*message_list)(struct osp_account *, int64_t,
		    const struct osp_uidset *, uint32_t, struct osp_pool *,
		    struct osp_message **, size_t *, const char **);
	int	(*message_open)(struct osp_account *, int64_t, int *,
		    const char **);
	int	(*message_store_flags)(struct osp_account *, int64_t,
		    const struct osp_uidset *, enum osp_store_mode, uint32_t,
		    const char *const *, uint64_t, struct osp_pool *,
		    struct osp_uidset *, const char **);
	int	(*message_copy)(struct osp_account *, int64_t,
		    const struct osp_uidset *, int64_t, bool move,
		    struct osp_pool *, uint32_t **, uint32_t **, size_t *,
		    const char **);
	int	(*message_expunge)(struct osp_account *, int64_t,
		    const struct osp_uidset *, bool, struct osp_pool *,
		    uint32_t **, size_t *, const char **);
	int	(*account_modseq)(struct osp_account *, uint64_t *,
		    const char **);
	int	(*message_changes)(struct osp_account *, int64_t, uint64_t,
		    struct osp_pool *, struct osp_message **, size_t *,
		    const char **);
	int	(*account_size)(struct osp_account *, uint64_t *,
		    const char **);
};

extern const struct store_ops store_sqlite_ops;

/* Records a change made by the running op (acc->lock held). Copies the
 * strings. */
void	store_change_add(struct osp_account *acc, enum osp_change_kind kind,
	    int64_t mailbox_id, uint32_t uid, uint64_t modseq, uint32_t flags,
	    const char *name, const char *new_name);

#endif
