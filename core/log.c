/* SPDX-License-Identifier: ISC */
/* Logging to stderr, a file or syslog; debug categories; session ids. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>

/*
 * Settings are an immutable snapshot swapped atomically, so worker threads
 * can log while the main thread reconfigures (SIGHUP). Old snapshots are
 * kept until exit: they are tiny and reloads are rare.
 */
struct log_settings {
	enum osp_log_level	 level;
	int			 target;	/* enum osp_log_target */
	int			 fd;		/* stderr or the log file */
	bool			 debug_all;
	size_t			 ndebug;
	char			**debug;	/* categories */
	struct log_settings	*prev;		/* for freeing at exit */
};

static struct log_settings default_settings = {
	.level = OSP_LOG_INFO, .target = OSP_LOGT_STDERR, .fd = STDERR_FILENO,
};
static _Atomic(struct log_settings *) settings = &default_settings;
static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
/* The log file keeps one descriptor number for the process's life: a
 * reload (or log rotation) dup2()s the new file onto it, so threads
 * writing meanwhile never see a closed or reused descriptor. */
static int log_file_fd = -1;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

static void
settings_install(struct log_settings *s)
{
	pthread_mutex_lock(&config_lock);
	s->prev = atomic_load(&settings);
	atomic_store(&settings, s);
	pthread_mutex_unlock(&config_lock);
}

void
osp_log_set_level(enum osp_log_level level)
{
	struct log_settings *cur = atomic_load(&settings);
	struct log_settings *s = osp_malloc(sizeof(*s));

	*s = *cur;
	s->level = level;
	settings_install(s);
}

int
osp_log_configure(const struct osp_core_conf *cc, const char **error_r)
{
	struct log_settings *s = osp_calloc(1, sizeof(*s));
	size_t i;

	s->level = (enum osp_log_level)cc->log.level;
	s->target = cc->log.target;
	s->fd = STDERR_FILENO;
	if (s->target == OSP_LOGT_FILE) {
		static char msg[512];
		int fd, e;

		if (cc->log.file == NULL) {
			*error_r = "log: target file needs log.file";
			free(s);
			return OSP_ECONFIG;
		}
		fd = open(cc->log.file,
		    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd != -1 && log_file_fd != -1 &&
		    dup3(fd, log_file_fd, O_CLOEXEC) == -1) {
			e = errno;
			close(fd);
			fd = -1;
			errno = e;
		} else if (fd != -1 && log_file_fd != -1) {
			close(fd);
			fd = log_file_fd;
		}
		if (fd == -1) {
			e = errno;
			snprintf(msg, sizeof(msg), "log: open %s: %s",
			    cc->log.file, strerror(e));
			*error_r = msg;
			free(s);
			return -e;
		}
		log_file_fd = s->fd = fd;
	} else if (s->target == OSP_LOGT_SYSLOG)
		openlog("osprey", LOG_PID | LOG_NDELAY, LOG_MAIL);
	s->debug = osp_calloc(cc->log.debug.n + 1, sizeof(char *));
	for (i = 0; i < cc->log.debug.n; i++) {
		const char *cat = OSP_CONF_ITEM(&cc->log.debug, const char *, i);

		if (strcmp(cat, "all") == 0)
			s->debug_all = true;
		s->debug[s->ndebug++] = osp_strdup(cat);
	}
	/* Asking for debug categories implies the debug level for them. */
	settings_install(s);
	return OSP_OK;
}

bool
osp_log_debug_enabled(const char *category)
{
	struct log_settings *s = atomic_load(&settings);
	size_t i;

	if (s->level >= OSP_LOG_DEBUG || s->debug_all)
		return true;
	for (i = 0; i < s->ndebug; i++)
		if (strcmp(s->debug[i], category) == 0)
			return true;
	return false;
}

static void
log_write(struct log_settings *s, enum osp_log_level level,
    const char *category, const char *fmt, va_list ap)
{
	char line[8192];
	struct timespec ts;
	struct tm tm;
	size_t off = 0;
	int n;

	if (s->target != OSP_LOGT_SYSLOG) {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		off = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line + off, sizeof(line) - off, ".%03ldZ %s ",
		    ts.tv_nsec / 1000000, level_names[level]);
		if (n > 0)
			off += (size_t)n;
	}
	n = snprintf(line + off, sizeof(line) - off, "%s ", category);
	if (n > 0 && (size_t)n < sizeof(line) - off)
		off += (size_t)n;
	n = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
	if (n < 0)
		n = 0;
	off += (size_t)n;
	if (off > sizeof(line) - 5) {
		/* Truncated: say so rather than cut silently. */
		off = sizeof(line) - 5;
		memcpy(line + off, "...", 3);
		off += 3;
	}
	if (s->target == OSP_LOGT_SYSLOG) {
		line[off] = '\0';
		syslog(syslog_prio[level], "%s", line);
		return;
	}
	line[off++] = '\n';
	/* One write(2) per line keeps lines whole across threads. */
	(void)!write(s->fd, line, off);
}

void
osp_log(enum osp_log_level level, const char *category, const char *fmt, ...)
{
	struct log_settings *s = atomic_load(&settings);
	va_list ap;

	if (level > s->level && !(level == OSP_LOG_DEBUG &&
	    osp_log_debug_enabled(category)))
		return;
	va_start(ap, fmt);
	log_write(s, level, category, fmt, ap);
	va_end(ap);
}

void
osp_fatal(const char *category, const char *fmt, ...)
{
	struct log_settings *s = atomic_load(&settings);
	va_list ap;

	va_start(ap, fmt);
	log_write(s, OSP_LOG_ERR, category, fmt, ap);
	va_end(ap);
	exit(1);
}

const char *
osp_log_safe(char *buf, size_t size, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	bool quote = false;
	size_t i, o = 0, limit;

	if (size < 8) {
		if (size > 0)
			buf[0] = '\0';
		return buf;
	}
	for (i = 0; i < len; i++)
		if (s[i] == ' ' || s[i] == '=')
			quote = true;
	/* Room for quotes, "..." and the NUL. */
	limit = size - 6;
	if (quote)
		buf[o++] = '"';
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[4];
		size_t n;

		if (c < 0x20 || c >= 0x7f) {
			tmp[0] = '\\'; tmp[1] = 'x';
			tmp[2] = hex[c >> 4]; tmp[3] = hex[c & 15];
			n = 4;
		} else if (c == '"' || c == '\\') {
			tmp[0] = '\\'; tmp[1] = (char)c;
			n = 2;
		} else {
			tmp[0] = (char)c;
			n = 1;
		}
		if (o + n > limit) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(buf + o, tmp, n);
		o += n;
	}
	if (quote)
		buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

uint64_t
osp_id_new(void)
{
	uint64_t id = 0;

	/* GNUTLS_RND_NONCE: unpredictable, cheap, thread-safe. */
	while (id == 0)
		if (gnutls_rnd(GNUTLS_RND_NONCE, &id, sizeof(id)) != 0)
			osp_fatal("core", "gnutls_rnd failed");
	return id;
}
