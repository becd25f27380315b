/* SPDX-License-Identifier: ISC */
/* What the SMTP server passes to policy hooks (hook.h), and the session
 * id encryption used in Received headers. */
#ifndef OSPREY_SMTP_H
#define OSPREY_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct osp_conn;
struct osp_buf;

/*
 * Data of the hook points OSP_HOOK_SMTP_CONNECT, _MAIL, _RCPT and _DATA,
 * valid during osp_hook_run only. Fields not yet known at a point are
 * NULL/0. A hook that refuses returns a negative code and sets
 * reply_code (4xx or 5xx), reply_enhanced ("5.7.1") and reply_text
 * (static or from the hook's own storage); OSP_DECLINED lets the next
 * hook decide, OSP_OK accepts without asking further hooks.
 */
struct osp_smtp_hook_data {
	struct osp_conn		*conn;
	uint64_t		 session_id;
	const char		*listener;	/* listener name */
	bool			 submission;	/* role submission */
	const char		*helo;
	const char		*account;	/* authenticated, or NULL */
	const char		*mail_from;	/* "" for <> */
	const char		*rcpt;		/* _RCPT: this recipient */
	const char *const	*rcpts;		/* _DATA: accepted ones */
	size_t			 nrcpts;
	/* _DATA: the message file (as received, before added headers) and
	 * where a hook appends header lines (each ending in CRLF) to be
	 * prepended, e.g. Authentication-Results. */
	const char		*msg_path;
	struct osp_buf		*add_headers;
	/* A refusing hook's reply. */
	int			 reply_code;
	const char		*reply_enhanced;
	const char		*reply_text;
};

/*
 * Session ids in Received headers are encrypted so that they do not leak
 * counters or timing, but the operator can map them back to log lines
 * (`osprey cid VALUE`). The key is <data-dir>/cid.key (16 random bytes,
 * created on first start). osp_cid_encrypt writes 26 characters of
 * lower-case base32 plus a NUL into buf (27 bytes) from the 64-bit id and
 * the time; osp_cid_decrypt reverses it (-EINVAL when it does not
 * decrypt under the key). Any thread, after startup.
 */
#define OSP_CID_LEN	26
void	osp_cid_encrypt(uint64_t id, int64_t when, char buf[OSP_CID_LEN + 1]);
int	osp_cid_decrypt(const char *cid, uint64_t *id_r, int64_t *when_r);

#endif
