/* SPDX-License-Identifier: ISC */
/* The message store: accounts, mailboxes, messages, changes. One API for
 * SMTP delivery, IMAP, webmail, the queue and the CLI (Dovecot's
 * lib-storage). SQLite + files is the embedded backend. */
#ifndef OSPREY_STORE_H
#define OSPREY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct osp_pool;

/*
 * Layout under the data dir: accounts/<name>/index.db (SQLite, WAL,
 * synchronous=FULL) and accounts/<name>/msg/<id / 8192>/<id>: immutable
 * message files. Headers added on receipt (Received, Authentication-
 * Results, ...) are kept in the database as the message's `prefix`; the
 * message as a client sees it is prefix + file.
 *
 * Threads. Every function here that touches the database or files is
 * BLOCKING and thread-safe (operations on one account are serialized by
 * the account). Inside the server, call them on the worker pool through
 * osp_store_run() or use osp_store_deliver() (group commit); the CLI calls
 * them directly. Change notifications (osp_store_subscribe) are delivered
 * on the main thread, in commit order, after the completion callback of
 * the osp_store_run()/osp_store_deliver() that committed them; changes
 * committed by direct calls are delivered at the next osp_store_run()
 * completion or osp_store_dispatch().
 *
 * Durability: a function that returns OSP_OK for a change has committed it
 * (message files and their directory fsynced before the transaction that
 * references them; the transaction committed with synchronous=FULL).
 * Errors: negative codes (error.h) and *error_r, static or from the pool the
 * caller passes (NULL pool: static text only).
 */

struct osp_store;	/* one data dir */
struct osp_account;	/* one open account, reference counted */

/* ---- store and accounts -------------------------------------------- */

/* Opens the store in data_dir (creates accounts/ and tmp/ if missing). */
int	osp_store_open(const char *data_dir, struct osp_store **store_r,
	    const char **error_r);
/* Closes; every account must be unreferenced. */
void	osp_store_close(struct osp_store *store);
/* The server's store (set by the core at startup), or NULL. Main thread. */
struct osp_store *osp_store_current(void);
/* Directory for temporary message files on the same file system as the
 * accounts (so deliveries can link(2) them in): "<data_dir>/tmp". */
const char *osp_store_tmpdir(const struct osp_store *store);

/* Opens an account (its name is the account name of domains.yaml, not an
 * address). create: make the account's directory and database with the
 * default mailboxes (Inbox, Sent, Archive, Trash, Drafts, Junk) if
 * missing; otherwise -ENOENT when it does not exist. Schema migrations run
 * here. Reference counted: the same struct for every opener. */
int	osp_account_open(struct osp_store *store, const char *name,
	    bool create, struct osp_account **acc_r, const char **error_r);
struct osp_account *osp_account_ref(struct osp_account *acc);
/* Drops a reference; the last one closes the database. Under tests
 * (env OSPREY_STORE_CHECK=1) the close recomputes counts, uidnext and
 * sizes and abort()s with a message on any mismatch. */
void	osp_account_unref(struct osp_account *acc);
const char *osp_account_name(const struct osp_account *acc);
/* Removes an account's directory (must not be open). */
int	osp_account_remove(struct osp_store *store, const char *name,
	    const char **error_r);

/* ---- mailboxes ------------------------------------------------------ */

#define OSP_MBOX_SEP '/'	/* hierarchy separator */

enum osp_special_use {
	OSP_USE_NONE = 0,
	OSP_USE_SENT = 0x01,
	OSP_USE_ARCHIVE = 0x02,
	OSP_USE_TRASH = 0x04,
	OSP_USE_DRAFTS = 0x08,
	OSP_USE_JUNK = 0x10,
	OSP_USE_ALL = 0x20,	/* RFC 6154 \All: never set by us */
	OSP_USE_FLAGGED = 0x40,	/* \Flagged: never set by us */
};

struct osp_mailbox {
	int64_t		 id;		/* stable; never reused */
	const char	*name;		/* UTF-8, '/'-separated; "Inbox" */
	uint32_t	 special_use;	/* OSP_USE_* bits */
	uint32_t	 uidvalidity;
	uint32_t	 uidnext;
	uint64_t	 modseq;	/* last change to the mailbox or a
					 * message in it */
	bool		 subscribed;
	/* counts kept on every change */
	uint32_t	 total, unread /* !\Seen */, unseen /* recent-style:
			   !\Seen and not yet reported; = unread for now */,
			 deleted /* \Deleted */;
	uint64_t	 size;		/* sum of message sizes */
};

/* Lists mailboxes (not deleted), sorted by name; array from pool. */
int	osp_mailbox_list(struct osp_account *acc, struct osp_pool *pool,
	    struct osp_mailbox **list_r, size_t *n_r, const char **error_r);
/* By name ("INBOX" matches "Inbox" case-insensitively, other names are
 * exact) or by id. -ENOENT when missing. */
int	osp_mailbox_get(struct osp_account *acc, const char *name,
	    struct osp_pool *pool, struct osp_mailbox *mb_r,
	    const char **error_r);
int	osp_mailbox_get_id(struct osp_account *acc, int64_t id,
	    struct osp_pool *pool, struct osp_mailbox *mb_r,
	    const char **error_r);
/* Creates name (and missing parents). -EEXIST when it exists. Invalid names
 * (empty, leading/trailing/double '/', control characters, > 255 bytes,
 * an "Inbox" child is fine) give -EINVAL. */
int	osp_mailbox_create(struct osp_account *acc, const char *name,
	    uint32_t special_use, int64_t *id_r, const char **error_r);
/* Renames a mailbox and its children (RFC 9051 §6.3.6); renaming Inbox
 * moves its messages to the new mailbox and leaves Inbox empty. */
int	osp_mailbox_rename(struct osp_account *acc, const char *from,
	    const char *to, const char **error_r);
/* Deletes a mailbox and expunges its messages (tombstones stay). Inbox
 * cannot be deleted (-EPERM); a mailbox with children keeps them. */
int	osp_mailbox_delete(struct osp_account *acc, const char *name,
	    const char **error_r);
int	osp_mailbox_set_special_use(struct osp_account *acc, int64_t id,
	    uint32_t special_use, const char **error_r);
/* Subscriptions may name mailboxes that do not exist (RFC 9051 §6.3.7). */
int	osp_mailbox_subscribe(struct osp_account *acc, const char *name,
	    bool subscribe, const char **error_r);
int	osp_mailbox_subscriptions(struct osp_account *acc,
	    struct osp_pool *pool, const char ***names_r, size_t *n_r,
	    const char **error_r);

/* ---- messages ------------------------------------------------------- */

/* System flags; keywords are separate strings. */
#define OSP_FLAG_SEEN		0x01
#define OSP_FLAG_ANSWERED	0x02
#define OSP_FLAG_FLAGGED	0x04
#define OSP_FLAG_DELETED	0x08
#define OSP_FLAG_DRAFT		0x10

struct osp_message {
	int64_t		 id;		/* account-wide; names the file */
	int64_t		 mailbox_id;
	uint32_t	 uid;
	uint64_t	 modseq;	/* last change */
	uint64_t	 createseq;	/* modseq when added to the mailbox */
	uint32_t	 flags;		/* OSP_FLAG_* */
	const char	**keywords;	/* NULL-terminated, may be NULL */
	uint64_t	 size;		/* prefix + file */
	int64_t		 received;	/* internal date, unix seconds */
	int64_t		 savedate;	/* when added to this mailbox */
	const char	*prefix;	/* headers added on receipt, may be "" */
	size_t		 prefix_len;
	const char	*preview;	/* <= 256 characters, may be NULL */
	/* Parsed MIME structure (message.h serialization), may be NULL. */
	const unsigned char *structure;
	size_t		 structure_len;
	/* Thread id (root message's id) for threading; 0 when unknown. */
	int64_t		 thread_id;
	bool		 expunged;	/* tombstone (changes queries only) */
};

/* What to store: the message as received is the file at `path` (in
 * osp_store_tmpdir or on the same file system). The store links it into
 * every destination; the caller removes `path` afterwards. */
struct osp_store_new_msg {
	const char	*path;
	const char	*prefix;	/* may be NULL */
	size_t		 prefix_len;
	uint32_t	 flags;
	const char *const *keywords;	/* NULL-terminated or NULL */
	int64_t		 received;	/* 0: now */
	/* Optional reputation data for junk filtering (later issues). */
	const char	*remote_ip;
	const char	*mail_from_domain;
};

/* Appends one message to a mailbox by id (IMAP APPEND, import, SMTP
 * delivery through osp_store_deliver). Parses the MIME structure, preview
 * and thread keys. *uid_r and *id_r (may be NULL) get the new uid/id. */
int	osp_message_append(struct osp_account *acc, int64_t mailbox_id,
	    const struct osp_store_new_msg *m, uint32_t *uid_r,
	    int64_t *id_r, const char **error_r);
/* Appends many messages in one transaction (import, MULTIAPPEND): all or
 * nothing. uids_r (may be NULL) has n slots. */
int	osp_message_append_batch(struct osp_account *acc, int64_t mailbox_id,
	    const struct osp_store_new_msg *msgs, size_t n, uint32_t *uids_r,
	    const char **error_r);

/* A uid set: sorted, non-overlapping closed ranges. */
struct osp_uid_range { uint32_t first, last; };
struct osp_uidset {
	const struct osp_uid_range *r;
	size_t		 n;
};

/* Lists messages of a mailbox whose uid is in `uids` (NULL: all), sorted by
 * uid, not expunged; array and strings from pool. `with` selects the
 * heavier fields: OSP_MSG_WITH_* bits. */
#define OSP_MSG_WITH_PREFIX	0x01
#define OSP_MSG_WITH_STRUCTURE	0x02
#define OSP_MSG_WITH_PREVIEW	0x04
#define OSP_MSG_WITH_KEYWORDS	0x08
int	osp_message_list(struct osp_account *acc, int64_t mailbox_id,
	    const struct osp_uidset *uids, uint32_t with, struct osp_pool *pool,
	    struct osp_message **list_r, size_t *n_r, const char **error_r);
/* Opens the message file read-only; the caller closes the fd. The file
 * holds the message without its prefix. */
int	osp_message_open(struct osp_account *acc, int64_t message_id,
	    int *fd_r, const char **error_r);

/* Flags and keywords. mode: set (replace), add, remove. unchangedsince:
 * 0 for none; else messages whose modseq is greater are not changed and
 * their uids are returned in *failed_r (RFC 7162 §3.1.3). */
enum osp_store_mode { OSP_STORE_SET, OSP_STORE_ADD, OSP_STORE_REMOVE };
int	osp_message_store_flags(struct osp_account *acc, int64_t mailbox_id,
	    const struct osp_uidset *uids, enum osp_store_mode mode,
	    uint32_t flags, const char *const *keywords,
	    uint64_t unchangedsince, struct osp_pool *pool,
	    struct osp_uidset *failed_r, const char **error_r);
/* Copies messages (files hard-linked) and moves them (files kept; the
 * source uids become tombstones). src uids -> new uids in dst, as
 * parallel arrays from pool (for COPYUID, RFC 4315). */
int	osp_message_copy(struct osp_account *acc, int64_t src_mailbox,
	    const struct osp_uidset *uids, int64_t dst_mailbox,
	    struct osp_pool *pool, uint32_t **src_uids_r,
	    uint32_t **dst_uids_r, size_t *n_r, const char **error_r);
int	osp_message_move(struct osp_account *acc, int64_t src_mailbox,
	    const struct osp_uidset *uids, int64_t dst_mailbox,
	    struct osp_pool *pool, uint32_t **src_uids_r,
	    uint32_t **dst_uids_r, size_t *n_r, const char **error_r);
/* Expunges messages in uids (NULL: all) that have \Deleted (or all of
 * uids when only_deleted is false); tombstones stay with their modseq.
 * Expunged uids from pool. */
int	osp_message_expunge(struct osp_account *acc, int64_t mailbox_id,
	    const struct osp_uidset *uids, bool only_deleted,
	    struct osp_pool *pool, uint32_t **uids_r, size_t *n_r,
	    const char **error_r);

/* ---- changes since a modseq (CONDSTORE/QRESYNC, webmail sync) -------- */

/* The account's highest modseq. */
int	osp_account_modseq(struct osp_account *acc, uint64_t *modseq_r,
	    const char **error_r);
/* Messages of a mailbox changed after `since` (expunged ones included as
 * tombstones with expunged = true), sorted by uid. */
int	osp_message_changes(struct osp_account *acc, int64_t mailbox_id,
	    uint64_t since, struct osp_pool *pool, struct osp_message **list_r,
	    size_t *n_r, const char **error_r);
/* Total size of all messages of the account (quota). */
int	osp_account_size(struct osp_account *acc, uint64_t *size_r,
	    const char **error_r);

/* ---- running store work from the event loop ------------------------- */

/* Runs fn(acc, arg) on the worker pool (ordered with the account's other
 * work), then done(arg) on the main thread, then broadcasts the changes fn
 * committed. Main thread. */
typedef void osp_store_fn(struct osp_account *acc, void *arg);
void	osp_store_run(struct osp_account *acc, osp_store_fn *fn,
	    void (*done)(void *arg), void *arg);

/* Delivery with group commit: deliveries requested during one loop
 * iteration are committed together (one transaction per account, one
 * fsync per directory). done(arg, err, uid) runs on the main thread once
 * the message is durable (err OSP_OK) or failed. Main thread. */
typedef void osp_store_deliver_fn(void *arg, int err, uint32_t uid,
    const char *error);
void	osp_store_deliver(struct osp_account *acc, const char *mailbox,
	    const struct osp_store_new_msg *m, osp_store_deliver_fn *done,
	    void *arg);

/* ---- change broadcast ----------------------------------------------- */

enum osp_change_kind {
	OSP_CHANGE_ADD = 1,		/* message added: mailbox, uid */
	OSP_CHANGE_REMOVE,		/* message expunged: mailbox, uid */
	OSP_CHANGE_FLAGS,		/* flags/keywords: mailbox, uid */
	OSP_CHANGE_MAILBOX_ADD,		/* mailbox created (name) */
	OSP_CHANGE_MAILBOX_REMOVE,	/* mailbox deleted (name) */
	OSP_CHANGE_MAILBOX_RENAME,	/* name -> new_name */
	OSP_CHANGE_MAILBOX_COUNTS,	/* counts of mailbox changed */
	OSP_CHANGE_SPECIAL_USE,		/* mailbox; flags: new OSP_USE_* */
	OSP_CHANGE_SUBSCRIPTION,	/* name; flags: 1 subscribed, 0 not */
	OSP_CHANGE_OVERFLOW,		/* queue overflowed: resync */
};

struct osp_change {
	enum osp_change_kind	 kind;
	int64_t			 mailbox_id;
	uint32_t		 uid;
	uint64_t		 modseq;
	uint32_t		 flags;		/* FLAGS: new flags */
	const char		*name;		/* mailbox changes */
	const char		*new_name;
};

struct osp_store_sub;
/* Subscribes to an account's changes. notify(arg) runs on the main thread
 * when changes are waiting; the subscriber takes them with
 * osp_store_sub_next() at its own pace (IMAP applies them only where
 * RFC 9051 allows). More than `limit` waiting changes are dropped and
 * replaced by one OSP_CHANGE_OVERFLOW. Main thread. */
struct osp_store_sub *osp_store_subscribe(struct osp_account *acc,
	    size_t limit, void (*notify)(void *arg), void *arg);
/* Next waiting change (valid until the next call), or NULL. */
const struct osp_change *osp_store_sub_next(struct osp_store_sub *sub);
void	osp_store_unsubscribe(struct osp_store_sub *sub);
/* Delivers changes committed by direct calls to subscribers. Main thread. */
void	osp_store_dispatch(struct osp_account *acc);

#endif
