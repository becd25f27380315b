/* SPDX-License-Identifier: ISC */
/* Logging: levels, per-module debug categories, key=value lines. */
#ifndef OSPREY_LOG_H
#define OSPREY_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Line shape (OpenSMTPD): `<category> <16-hex id> <event> key=value ...`,
 * e.g. `smtp 3f2a9c01d2e4b7a0 connected address=192.0.2.7`. The category
 * is the module or core subsystem name. Values that come from the network
 * pass through osp_log_safe() first. Passwords, AUTH payloads and
 * cookies are never logged.
 *
 * Any thread may log; lines are written whole (one write(2) per line).
 */
enum osp_log_level {
	OSP_LOG_ERR = 0,
	OSP_LOG_WARN,
	OSP_LOG_INFO,
	OSP_LOG_DEBUG,
};

void	osp_log(enum osp_log_level level, const char *category,
	    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* True when debug lines of `category` are enabled (config `log: debug:
 * [smtp, dns]` or `all`). Cheap; call before building costly debug text. */
bool	osp_log_debug_enabled(const char *category);

#define osp_log_err(cat, ...)	osp_log(OSP_LOG_ERR, (cat), __VA_ARGS__)
#define osp_log_warn(cat, ...)	osp_log(OSP_LOG_WARN, (cat), __VA_ARGS__)
#define osp_log_info(cat, ...)	osp_log(OSP_LOG_INFO, (cat), __VA_ARGS__)
#define osp_log_debug(cat, ...) do {					\
	if (osp_log_debug_enabled(cat))					\
		osp_log(OSP_LOG_DEBUG, (cat), __VA_ARGS__);		\
} while (0)

/* Makes untrusted text safe for a log value: control and non-ASCII bytes
 * become \xNN, spaces, '"' and '\\' are escaped, and the result is quoted
 * when it holds spaces; truncated with "..." to fit. Returns buf. */
const char *osp_log_safe(char *buf, size_t size, const char *s, size_t len);

/* A new random 64-bit session id, printed as 16 hex digits with
 * OSP_ID_FMT. Any thread. */
uint64_t osp_id_new(void);
#define OSP_ID_FMT "%016llx"
#define OSP_ID_ARG(id) ((unsigned long long)(id))

/* Logs a fatal error and exits(1). Only at startup, never for remote
 * input. */
void	osp_fatal(const char *category, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3), noreturn));

#endif
