/* SPDX-License-Identifier: ISC */
/* HTTP server module: descriptor, config schema and lifecycle. The
 * protocol is not implemented yet: listeners read the request head and
 * answer 503. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <osprey/osprey.h>

struct http_conf {
	uint64_t	 max_header_size;
	uint64_t	 max_body_size;
	uint64_t	 header_timeout;
	uint64_t	 keepalive_timeout;
	int64_t		 max_keepalive_requests;
	bool		 gzip;
};

/* Which of the built-in web handlers a listener serves (mox-style: the
 * admin pages usually only on loopback, the rest on the public one). */
struct http_listener_conf {
	bool		 account;
	bool		 admin;
	bool		 webmail;
	bool		 autoconfig;
	bool		 mta_sts;
	bool		 acme_http_01;
	bool		 metrics;
	bool		 webserver;
	bool		 forwarded;
};

#define F(field) offsetof(struct http_conf, field)
static const struct osp_conf_def http_conf_defs[] = {
	{ .key = "max-header-size", .type = OSP_CONF_SIZE,
	  .offset = F(max_header_size), .dflt = "64k",
	  .help = "largest request line plus headers; larger get 431",
	  .min = 4096, .max = 16777216 },
	{ .key = "max-body-size", .type = OSP_CONF_SIZE,
	  .offset = F(max_body_size), .dflt = "50M",
	  .help = "largest request body (uploads, API calls); larger get 413",
	  .min = 1024, .max = 4294967296LL },
	{ .key = "header-timeout", .type = OSP_CONF_DURATION,
	  .offset = F(header_timeout), .dflt = "30s",
	  .help = "time allowed to send a complete request head (slow "
	  "clients are cut off)", .min = 1000, .max = 600000 },
	{ .key = "keepalive-timeout", .type = OSP_CONF_DURATION,
	  .offset = F(keepalive_timeout), .dflt = "75s",
	  .help = "idle time a kept-alive connection may wait for its next "
	  "request (0: close after each response)", .max = 3600000 },
	{ .key = "max-keepalive-requests", .type = OSP_CONF_INT,
	  .offset = F(max_keepalive_requests), .dflt = "1000",
	  .help = "requests served on one connection before it is closed",
	  .min = 1, .max = 1000000 },
	{ .key = "gzip", .type = OSP_CONF_BOOL, .offset = F(gzip),
	  .dflt = "true",
	  .help = "compress text responses for clients that accept gzip" },
	OSP_CONF_END
};
#undef F

#define L(field) offsetof(struct http_listener_conf, field)
static const struct osp_conf_def http_listener_defs[] = {
	{ .key = "account", .type = OSP_CONF_BOOL, .offset = L(account),
	  .dflt = "true", .help = "serve the account pages (/account)" },
	{ .key = "admin", .type = OSP_CONF_BOOL, .offset = L(admin),
	  .dflt = "false",
	  .help = "serve the admin pages (/admin); keep them on loopback" },
	{ .key = "webmail", .type = OSP_CONF_BOOL, .offset = L(webmail),
	  .dflt = "true", .help = "serve the webmail module's routes" },
	{ .key = "autoconfig", .type = OSP_CONF_BOOL, .offset = L(autoconfig),
	  .dflt = "true",
	  .help = "serve client autoconfig and autodiscover documents" },
	{ .key = "mta-sts", .type = OSP_CONF_BOOL, .offset = L(mta_sts),
	  .dflt = "true",
	  .help = "serve the MTA-STS policy (RFC 8461 3.2) for mta-sts.* "
	  "hosts" },
	{ .key = "acme-http-01", .type = OSP_CONF_BOOL,
	  .offset = L(acme_http_01), .dflt = "true",
	  .help = "answer ACME http-01 challenges (RFC 8555 8.3); port 80" },
	{ .key = "metrics", .type = OSP_CONF_BOOL, .offset = L(metrics),
	  .dflt = "false",
	  .help = "serve Prometheus metrics (/metrics); keep them on "
	  "loopback" },
	{ .key = "webserver", .type = OSP_CONF_BOOL, .offset = L(webserver),
	  .dflt = "false",
	  .help = "serve the static, redirect and reverse-proxy handlers of "
	  "domains.yaml" },
	{ .key = "forwarded", .type = OSP_CONF_BOOL, .offset = L(forwarded),
	  .dflt = "false",
	  .help = "trust X-Forwarded-For/-Proto: only behind a reverse "
	  "proxy" },
	OSP_CONF_END
};
#undef L

/* Lines of a request head read before answering regardless. */
#define HTTP_REFUSE_MAX_LINES	100

struct http_refusal {
	bool		 head;		/* HEAD request: no body */
	unsigned	 lines;
};

static const char http_refusal_body[] =
    "503 Service Unavailable: HTTP is not implemented yet in this "
    "server.\n";

static void
http_refuse_answer(struct osp_conn *c, const struct http_refusal *r)
{
	/* RFC 9110 §15.6.4: 503, the server cannot handle the request;
	 * Connection: close (RFC 9112 §9.6) because we close next. */
	osp_conn_printf(c, "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n"
	    "Connection: close\r\n\r\n%s", sizeof(http_refusal_body) - 1,
	    r->head ? "" : http_refusal_body);
	osp_conn_close(c);
}

/*
 * The request head is read before the answer: closing a socket with
 * unread input makes the kernel send a RST, which can destroy the
 * response before the client reads it.
 */
static void
http_refuse_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct http_refusal *r = arg;
	bool toolong;
	size_t len;
	char *line;

	switch (ev) {
	case OSP_CONN_DATAIN:
		for (;;) {
			toolong = false;
			line = osp_conn_getline(c, &len, NULL, &toolong);
			if (line == NULL && !toolong)
				return;
			if (line == NULL ||
			    ++r->lines > HTTP_REFUSE_MAX_LINES) {
				http_refuse_answer(c, r);
				return;
			}
			if (r->lines == 1)
				r->head = strncmp(line, "HEAD ", 5) == 0;
			else if (len == 0) {
				/* RFC 9112 §2.1: the empty line ends the
				 * head. */
				http_refuse_answer(c, r);
				return;
			}
		}
	case OSP_CONN_DISCONNECTED:
	case OSP_CONN_TIMEOUT:
	case OSP_CONN_ERROR:
		osp_conn_free(c);
		return;
	default:
		return;
	}
}

static void
http_accept(struct osp_conn *c, const struct osp_listener_info *li,
    void *arg)
{
	struct http_refusal *r;

	r = osp_pcalloc(osp_conn_pool(c), 1, sizeof(*r));
	osp_log_info("http", OSP_ID_FMT " refused address=%s listener=%s "
	    "reason=not-implemented", OSP_ID_ARG(osp_conn_id(c)),
	    osp_conn_peer_str(c), li->name);
	osp_conn_set_maxline(c, 8192);
	osp_conn_set_timeouts(c, 10000, 10000);
	osp_conn_set_callback(c, http_refuse_cb, r);
}

static int
http_init(struct osp_module_ctx *ctx)
{
	int rc;

	osp_log_warn("http", "protocol not implemented yet: listeners with "
	    "protocol http answer every request with 503; no web pages, "
	    "autoconfig, MTA-STS policy or ACME http-01 are served");
	rc = osp_listener_add(ctx, http_accept, ctx);
	if (rc != OSP_OK)
		osp_log_err("http", "cannot register the listener handler: "
		    "%s", osp_strerror(rc));
	return rc;
}

const struct osp_module osp_module = {
	.abi = OSP_MODULE_ABI,
	.name = "http",
	.version = PACKAGE_VERSION,
	.conf = http_conf_defs,
	.conf_size = sizeof(struct http_conf),
	.listener_conf = http_listener_defs,
	.listener_conf_size = sizeof(struct http_listener_conf),
	.init = http_init,
};
