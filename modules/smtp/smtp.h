/* SPDX-License-Identifier: ISC */
/* SMTP module internals: configuration, command and parameter parsing
 * (smtp_parse.c), the message reader for DATA and BDAT (smtp_data.c) and
 * the session (smtp_session.c, smtp_auth.c, smtp_deliver.c). */
#ifndef SMTP_H
#define SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <osprey/osprey.h>

/* ---- configuration (module.c) ---------------------------------------- */

struct smtp_conf {
	const char	*hostname;
	const char	*greeting;
	uint64_t	 max_message_size;
	int64_t		 max_recipients;
	int64_t		 max_errors;
	uint64_t	 command_timeout;
	uint64_t	 data_timeout;
	bool		 require_tls_for_auth;
	uint64_t	 auth_failure_delay;	/* ms per failed AUTH */
	uint64_t	 unknown_recipient_delay; /* ms per unknown RCPT */
	/* localserve: every recipient, local or not, goes to this account's
	 * Inbox, and localparts simulate failures (mox localserve). */
	const char	*localserve_account;
};

enum smtp_role {
	SMTP_ROLE_DELIVERY = 0,
	SMTP_ROLE_SUBMISSION,
};

struct smtp_listener_conf {
	int		 role;		/* enum smtp_role */
};

/* ---- command parsing (smtp_parse.c) ---------------------------------- */

/*
 * Every parse function takes the argument text after the verb (the
 * command line without CRLF, NUL-terminated; it may contain UTF-8 only
 * when SMTPUTF8 applies) and returns OSP_OK, or a negative error with
 * *reply_r set to a complete static reply line without CRLF, e.g.
 * "501 5.1.7 Syntax error in sender address". Strings out are from pool.
 */
enum smtp_verb {
	SMTP_CMD_UNKNOWN = 0,
	SMTP_CMD_HELO,
	SMTP_CMD_EHLO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_BDAT,
	SMTP_CMD_RSET,
	SMTP_CMD_NOOP,
	SMTP_CMD_QUIT,
	SMTP_CMD_VRFY,
	SMTP_CMD_EXPN,
	SMTP_CMD_HELP,
	SMTP_CMD_STARTTLS,
	SMTP_CMD_AUTH,
};

/* Extensions the session announced: parameters of an extension that was
 * not announced are refused (RFC 5321 §4.1.1.11: 555). */
#define SMTP_EXT_SIZE		0x0001
#define SMTP_EXT_8BITMIME	0x0002
#define SMTP_EXT_SMTPUTF8	0x0004
#define SMTP_EXT_DSN		0x0008
#define SMTP_EXT_REQUIRETLS	0x0010
#define SMTP_EXT_CHUNKING	0x0020
#define SMTP_EXT_BINARYMIME	0x0040
#define SMTP_EXT_AUTH		0x0080

/*
 * Splits a command line into its verb (case-insensitive; "MAIL FROM:" and
 * "RCPT TO:" are recognised with their keyword, and *args_r then points
 * after the colon, optional spaces skipped as many clients send them) and
 * the rest. Unknown verbs give SMTP_CMD_UNKNOWN with *args_r = line.
 * "MAIL"/"RCPT" without " FROM:"/" TO:" give the verb with *args_r = "",
 * which smtp_parse_mail/rcpt refuse with a 501 syntax reply.
 */
enum smtp_verb smtp_parse_verb(const char *line, const char **args_r);

/*
 * A reverse or forward path (RFC 5321 §4.1.2), source routes dropped.
 * Strict on the brackets (no "MAIL FROM:a@b"), lenient on dots in the
 * Dot-string ("a..b", "a."; kept, and quoted in `address`); localparts
 * are not limited to 64 octets (VERP/SRS senders exceed it; §4.5.3.1
 * asks for no limits where possible) but the whole path is to 256 octets
 * (§4.5.3.1.3). "RCPT TO:<Postmaster>" (§4.1.1.3, any case) gives
 * localpart and address "postmaster" with domain "": the session
 * resolves it to its primary domain.
 */
struct smtp_path {
	const char	*localpart;	/* unquoted, UTF-8; "" for <> */
	const char	*domain;	/* as sent: name or [literal]; "" */
	/* localpart@domain with the domain canonical (lower-case A-label,
	 * address literals kept), quoted when the localpart needs it; ""
	 * for the null path. For lookups and headers. */
	const char	*address;
	bool		 null;		/* <> */
	bool		 utf8;		/* needs SMTPUTF8 */
};

enum smtp_body { SMTP_BODY_7BIT = 0, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

#define SMTP_NOTIFY_NEVER	0x01
#define SMTP_NOTIFY_SUCCESS	0x02
#define SMTP_NOTIFY_FAILURE	0x04
#define SMTP_NOTIFY_DELAY	0x08

/* MAIL FROM parameters (RFC 1870 SIZE, 6152 BODY, 3030 BINARYMIME, 6531
 * SMTPUTF8, 8689 REQUIRETLS, 3461 RET/ENVID, 4954 AUTH). */
struct smtp_mail_params {
	bool		 has_size;
	uint64_t	 size;
	enum smtp_body	 body;
	bool		 smtputf8;
	bool		 requiretls;
	enum smtp_ret	 ret;
	const char	*envid;		/* xtext-decoded, NULL if absent */
	const char	*auth;		/* AUTH= mailbox decoded, "<>", NULL */
};

/* RCPT TO parameters (RFC 3461 NOTIFY/ORCPT, RFC 6533 utf-8-addr). */
struct smtp_rcpt_params {
	uint32_t	 notify;	/* SMTP_NOTIFY_*, 0 when absent */
	const char	*orcpt_type;	/* "rfc822" or "utf-8", NULL */
	const char	*orcpt;		/* decoded address, NULL */
};

/*
 * Replies of the parse functions: 501 5.5.4 for command syntax and
 * malformed or duplicate parameters, 555 5.5.4 for unknown parameters
 * and parameters of extensions not in `ext`, 501 5.1.7 (MAIL) / 5.1.3
 * (RCPT) for bad addresses, 553 5.6.7 for a non-ASCII address without
 * SMTPUTF8 (RFC 6531 §3.7.4.1), 501 5.6.7 for malformed UTF-8 under
 * SMTPUTF8. Lines with NUL must be refused by the caller (the parsers
 * see C strings).
 *
 * HELO/EHLO: one host name (letters, digits, "-", "_", a trailing dot
 * allowed; unqualified names accepted) or a valid [IPv4]/[IPv6:]
 * literal; trailing spaces tolerated, any other trailing text refused.
 * *name_r is the name as sent (safe for a Received header).
 */
int	smtp_parse_helo(struct osp_pool *pool, const char *args, bool ehlo,
	    const char **name_r, const char **reply_r);
/* `ext`: SMTP_EXT_* announced. */
int	smtp_parse_mail(struct osp_pool *pool, const char *args, uint32_t ext,
	    struct smtp_path *path_r, struct smtp_mail_params *params_r,
	    const char **reply_r);
/* `smtputf8`: the transaction's MAIL had SMTPUTF8 (UTF-8 allowed). */
int	smtp_parse_rcpt(struct osp_pool *pool, const char *args, uint32_t ext,
	    bool smtputf8, struct smtp_path *path_r,
	    struct smtp_rcpt_params *params_r, const char **reply_r);
/* "BDAT <size> [LAST]" (RFC 3030 §2). */
int	smtp_parse_bdat(const char *args, uint64_t *size_r, bool *last_r,
	    const char **reply_r);
/* "AUTH <mech> [initial-response]" (RFC 4954 §4): mech and the raw
 * base64 response ("=" for empty), NULL when absent. */
int	smtp_parse_auth(struct osp_pool *pool, const char *args,
	    const char **mech_r, const char **initial_r, const char **reply_r);
/* xtext (RFC 3461 §4) decoding, NULL on malformed input. */
char	*smtp_xtext_decode(struct osp_pool *pool, const char *s);

/* ---- message reader (smtp_data.c) ------------------------------------ */

/*
 * Reads a message from the connection's input into a file, for DATA
 * (dot-stuffed, ends at CRLF.CRLF) and for BDAT chunks (exact sizes).
 *
 * SMTP smuggling defence (RFC 5321 §2.3.8, §4.1.1.4): only CRLF.CRLF ends
 * DATA. A bare LF or bare CR anywhere in the message (DATA, or BDAT unless
 * BODY=BINARYMIME) makes the message fail after it ends, with a reply that
 * says so; the end is still found correctly so the session stays in sync.
 * "\n.\n", "\r.\n", "\n.\r\n" never end DATA.
 *
 * Output is buffered and written to fd (a temp file in the store's tmpdir)
 * in large writes; the file receives the message with dot-stuffing
 * removed and no terminating dot line.
 */
struct smtp_data {
	int		 fd;
	uint64_t	 max_size;	/* larger: fail with 552 at the end */
	uint64_t	 size;		/* message bytes so far (unstuffed) */
	bool		 dot;		/* DATA: dot-stuffing and terminator */
	bool		 binary;	/* BINARYMIME: no line-end check */
	bool		 done;		/* DATA terminator consumed */
	bool		 bare_lf;	/* seen a bare LF */
	bool		 bare_cr;	/* seen a bare CR */
	bool		 too_big;
	bool		 has_8bit;	/* a byte >= 0x80 was seen */
	bool		 has_nul;
	int		 werr;		/* first write error (-errno) */
	int		 state;		/* reader state (smtp_data.c) */
	unsigned char	*buf;		/* write buffer */
	size_t		 buflen, bufsize;
};

/* max_size 0: no limit. fd < 0: bytes are read and counted but not
 * written (e.g. to skip a refused BDAT chunk). */
void	smtp_data_init(struct smtp_data *d, int fd, uint64_t max_size,
	    bool dot, bool binary);
/*
 * Consumes input. DATA: consumes up to and including the terminator and
 * sets d->done; bytes after it (pipelined commands) are not consumed.
 * BDAT: consumes min(len, limit) bytes of the chunk. Returns the number of
 * bytes consumed.
 */
size_t	smtp_data_feed(struct smtp_data *d, const unsigned char *p,
	    size_t len, uint64_t limit);
/* Flushes to the file and gives the verdict on the whole message:
 * OSP_OK, or an error with *reply_r ("552 5.3.4 ...", "550 5.6.0 bare
 * LF ...", "451 4.3.0 write error"), in that order of precedence
 * (OSP_ETOOBIG, OSP_EPERM, OSP_ETEMP; OSP_ERROR with a 451 when a DATA
 * message has not ended). A BDAT message ending in CR counts as a bare
 * CR. Frees the buffer. has_8bit and has_nul are only recorded: 8-bit
 * data without BODY=8BITMIME is common and accepted. */
int	smtp_data_finish(struct smtp_data *d, const char **reply_r);
/* Frees the buffer without a verdict (session ends mid-message). */
void	smtp_data_abort(struct smtp_data *d);

/* ---- session (smtp_session.c, smtp_auth.c, smtp_deliver.c) ---------- */

/*
 * One connection, OpenSMTPD style: a state, one handler per command from a
 * table, replies buffered on the connection (PIPELINING) and at most one
 * asynchronous operation at a time (SASL step, delivery, sending-limit
 * check, delayed reply). While one runs, no input is processed, so that
 * pipelined commands are answered in order.
 */
enum smtp_state {
	SMTP_S_INIT = 0,	/* before HELO/EHLO (also after STARTTLS) */
	SMTP_S_HELO,		/* greeted, no transaction */
	SMTP_S_MAIL,		/* MAIL accepted, no recipient yet */
	SMTP_S_RCPT,		/* at least one recipient */
	SMTP_S_DATA,		/* reading a DATA message */
	SMTP_S_BDAT,		/* reading a BDAT chunk */
	SMTP_S_AUTH,		/* waiting for an AUTH response line */
	SMTP_S_QUIT,		/* closing: nothing more is read */
};

enum smtp_busy {
	SMTP_BUSY_NONE = 0,
	SMTP_BUSY_SASL,		/* a SASL step on the worker pool */
	SMTP_BUSY_TLS,		/* STARTTLS handshake */
	SMTP_BUSY_DELAY,	/* a reply held back by a timer */
	SMTP_BUSY_SENDLOG,	/* daily limits checked on a worker */
	SMTP_BUSY_DELIVER,	/* store deliveries in flight */
	SMTP_BUSY_HOLD,		/* localserve "timeout": never answered */
};

/* One accepted recipient and where its mail goes. */
struct smtp_rcpt {
	struct smtp_path	 path;
	struct smtp_rcpt_params	 params;
	struct osp_rcpt		*targets;	/* (account, mailbox) */
	size_t			 ntargets;
};

/* One mail transaction (MAIL to the end of DATA/BDAT, or RSET). */
struct smtp_txn {
	struct osp_pool		*pool;		/* freed at the end */
	struct osp_accounts	*accounts;	/* snapshot, referenced */
	struct smtp_path	 from;
	struct smtp_mail_params	 params;
	struct smtp_rcpt	*rcpts;
	size_t			 nrcpts, rcptsize;
	/* message file in the store's tmpdir, -1 / NULL until DATA/BDAT */
	int			 fd;
	char			*path;
	struct smtp_data	 data;
	bool			 data_open;	/* smtp_data_init done */
	bool			 bdat;		/* BDAT used (no DATA now) */
};

struct smtp_session {
	struct smtp_session	*prev, *next;	/* smtp_mod.sessions */
	int			 refs;		/* heap; see smtp_session_ref */
	struct osp_conn		*c;
	struct osp_pool		*pool;		/* the connection's */
	uint64_t		 id;
	struct osp_config	*gen;		/* referenced */
	const struct smtp_conf	*conf;
	const struct osp_listener_info *li;
	bool			 submission;
	const char		*hostname;	/* greeting / EHLO / Received */
	struct osp_limit_conn	*limit;

	enum smtp_state		 state;
	enum smtp_busy		 busy;
	bool			 ehlo;		/* EHLO (not HELO) was used */
	char			 helo[256];	/* as sent, "" before */
	uint32_t		 ext;		/* SMTP_EXT_* announced */
	bool			 tls;
	int64_t			 nerrors;
	bool			 closing;	/* close once output is out */
	bool			 eof;		/* the peer closed its side */
	bool			 freed;

	/* AUTH (smtp_auth.c) */
	const char		*account;	/* authenticated account */
	const char		*auth_mech;
	struct osp_sasl		*sasl;
	bool			 auth_final;	/* 334 with server final data
						 * sent, waiting for "" */
	unsigned		 auth_failures;
	bool			 slow;		/* slow mode: 1 byte/s out */

	/* the transaction, NULL between transactions */
	struct smtp_txn		*txn;
	/* BDAT chunk being read: bytes left, LAST, and for a refused BDAT
	 * the reply sent once its chunk has been read and dropped */
	uint64_t		 bdat_left;
	bool			 bdat_last;
	const char		*bdat_reply;
	bool			 in_process;	/* smtp_process() runs */
	/* deliveries or the sendlog check in flight (smtp_deliver.c);
	 * detached (its session pointer cleared) when the session goes */
	void			*job;

	/* timers */
	struct osp_timer	*idle_timer;	/* command/data timeout */
	struct osp_timer	*delay_timer;	/* delayed replies */
	struct osp_timer	*slow_timer;	/* slow-mode writer */
	char			*delayed;	/* reply held (heap) */
	bool			 delayed_close;
	struct osp_buf		 slowbuf;	/* slow-mode pending output */
};

/* The session struct is on the heap: the connection's pool cleanup drops
 * the connection's reference (s->freed then tells the session is gone),
 * and every entry point (I/O event, timer, completion) holds a reference
 * while it runs, since closing may free the connection synchronously. */
void	smtp_session_ref(struct smtp_session *s);
void	smtp_session_unref(struct smtp_session *s);

/* smtp_session.c: replies. `line` has no CRLF. A 4xx/5xx counts as a
 * protocol error when `error`; max-errors closes the session. */
void	smtp_reply(struct smtp_session *s, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	smtp_reply_error(struct smtp_session *s, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* Holds `line` back for ms, then sends it and resumes reading. */
void	smtp_reply_delayed(struct smtp_session *s, uint64_t ms,
	    const char *line, bool close_after);
/* Sends 421-type final lines and closes once written. */
void	smtp_close(struct smtp_session *s);
/* Marks the asynchronous operation over and processes pending input. */
void	smtp_session_resume(struct smtp_session *s);
void	smtp_session_set_busy(struct smtp_session *s, enum smtp_busy b);
/* Ends the transaction: temp file removed, pool freed. */
void	smtp_txn_free(struct smtp_session *s);
/* Counts a refused command for metrics (`reason` names why). */
void	smtp_count_reject(struct smtp_session *s, const char *reason);

/* smtp_auth.c */
void	smtp_auth_cmd(struct smtp_session *s, const char *args);
void	smtp_auth_line(struct smtp_session *s, const char *line, size_t len);
void	smtp_auth_free(struct smtp_session *s);

/* smtp_deliver.c: the message is complete and accepted by the reader:
 * checks, hooks, deliveries, then the final reply. */
void	smtp_deliver_start(struct smtp_session *s);
/* Detaches an in-flight job from a session being freed. */
void	smtp_deliver_detach(struct smtp_session *s);
/* Releases the accounts the module keeps open for deliveries (fini). */
void	smtp_deliver_fini(void);
/* Sends a localserve failure (or holds the session for "timeout"); false
 * when fail is NULL. */
bool	smtp_localserve_apply(struct smtp_session *s, const char *fail);
/* localserve: the simulated failure a localpart asks for, or NULL:
 * "451 ...", "550 ...", "hold" for timeout. `prefix` "" for DATA,
 * "mailfrom" or "rcptto" for those commands. */
const char *smtp_localserve_failure(struct osp_pool *pool,
	    const char *localpart, const char *prefix);


/* Module-wide state, set in init()/start(). */
struct smtp_module {
	struct osp_module_ctx	*ctx;
	struct osp_metric	*m_connections;	/* label: listener */
	struct osp_metric	*m_rejected;	/* label: reason */
	struct osp_metric	*m_delivered;	/* label: role */
	struct osp_metric	*m_auth_failures; /* label: mechanism */
	struct osp_metric	*m_auth_success;  /* label: mechanism */
	struct osp_metric	*m_sessions;	/* gauge: open sessions */
	struct smtp_session	*sessions;	/* open sessions */
	bool			 draining;	/* stop(): no new transaction */
};

extern struct smtp_module smtp_mod;

/* The accept handler registered with osp_listener_add. */
void	smtp_session_accept(struct osp_conn *c,
	    const struct osp_listener_info *li, void *arg);
/* Stop accepting new transactions (SIGTERM drain). */
void	smtp_session_stop_all(void);

#endif
