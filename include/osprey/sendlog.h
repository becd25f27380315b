/* SPDX-License-Identifier: ISC */
/* Per-account sending history for the daily limits on outgoing messages
 * and first-time recipients (<data-dir>/sendlog.db). */
#ifndef OSPREY_SENDLOG_H
#define OSPREY_SENDLOG_H

#include <stddef.h>
#include <stdint.h>

struct osp_sendlog;

/* Every function is BLOCKING (SQLite, synchronous=FULL): call them on the
 * worker pool. A handle is thread-safe (serialized internally).
 * *error_r is static text. */
int	osp_sendlog_open(const char *data_dir, struct osp_sendlog **log_r,
	    const char **error_r);
void	osp_sendlog_close(struct osp_sendlog *log);
/* The server's handle (opened at startup after the privilege drop), or
 * NULL outside `serve`. Main thread (pass it to the worker). */
struct osp_sendlog *osp_sendlog_current(void);

enum osp_sendlog_limit {
	OSP_SENDLOG_OK = 0,
	OSP_SENDLOG_MESSAGES,		/* max-outgoing-per-day reached */
	OSP_SENDLOG_FIRST_TIME,		/* max-first-time-recipients-per-day */
};

/*
 * Checks one message from `account` to rcpts (canonical addresses,
 * compared case-insensitively) against the limits over the last 24 hours
 * ending at `now` (unix seconds): max_messages messages, and
 * max_first_time recipients never sent to before by this account (0 or
 * negative: no limit). Within limits, records the message and its
 * recipients in one transaction and sets *limit_r = OSP_SENDLOG_OK;
 * over a limit, records nothing and tells which. OSP_OK either way, or a
 * negative error for a database failure. Entries older than 24 hours are
 * pruned as the log is written; the first-time history is kept per
 * (account, recipient).
 */
int	osp_sendlog_check_add(struct osp_sendlog *log, const char *account,
	    const char *const *rcpts, size_t n, int64_t now,
	    int64_t max_messages, int64_t max_first_time,
	    enum osp_sendlog_limit *limit_r, const char **error_r);

#endif
