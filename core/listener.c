/* SPDX-License-Identifier: ISC */
/* Listening sockets from the config: bound as root, accepted on the loop,
 * implicit TLS done here, then handed to the protocol module's handler. */
#include "core.h"
#include "io_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#define LST_BACKLOG		511
#define LST_ACCEPT_BATCH	256	/* per wakeup, for fairness */
#define LST_EMFILE_PAUSE	1000	/* ms without accepting */
#define LST_HS_TIMEOUT		30000	/* implicit TLS handshake, ms */

struct lst_handler {
	const struct osp_module_ctx	*ctx;
	const char			*name;
	osp_listener_accept_fn		*fn;
	void				*arg;
	struct lst_handler		*next;
};

/* One bound socket (a listener entry has one per address). Accepted
 * connections hold a reference: their osp_listener_info stays valid. */
struct lst_sock {
	int			 refs;
	int			 fd;
	struct event		 ev;
	bool			 ev_on;
	struct osp_listener_info info;
	char			 addr[INET6_ADDRSTRLEN + 8];
	struct osp_config	*gen;
	struct lst_sock		*next;
};

/* An accepted connection still open (lives in the conn's pool). */
struct lst_active {
	struct osp_conn		*c;
	struct lst_sock		*ls;
	struct lst_active	*prev, *next;
};

static struct {
	struct lst_handler	*handlers;
	struct lst_sock		*socks;
	struct lst_active	*active;
	size_t			 nactive;
	bool			 started;
	struct event		*resume_ev;	/* after EMFILE */
} lst;

static struct lst_handler *
lst_handler_find(const char *name)
{
	struct lst_handler *h;

	for (h = lst.handlers; h != NULL; h = h->next)
		if (strcmp(h->name, name) == 0)
			return h;
	return NULL;
}

int
osp_listener_add(struct osp_module_ctx *ctx, osp_listener_accept_fn *fn,
    void *arg)
{
	struct lst_handler *h, **hp;
	int rc;

	if (ctx == NULL || ctx->mod == NULL || ctx->mod->name == NULL ||
	    fn == NULL)
		return -EINVAL;
	if ((rc = osp_module_may_register(ctx, "listener")) != OSP_OK)
		return rc;
	if (lst_handler_find(ctx->mod->name) != NULL)
		return -EEXIST;
	h = osp_calloc(1, sizeof(*h));
	h->ctx = ctx;
	h->name = ctx->mod->name;
	h->fn = fn;
	h->arg = arg;
	for (hp = &lst.handlers; *hp != NULL; hp = &(*hp)->next)
		;
	*hp = h;
	return OSP_OK;
}

void
osp_listener_remove_module(const struct osp_module_ctx *ctx)
{
	struct lst_handler *h, **hp;

	for (hp = &lst.handlers; (h = *hp) != NULL;) {
		if (h->ctx == ctx) {
			*hp = h->next;
			osp_free(h);
		} else
			hp = &h->next;
	}
}

static void
lst_sock_unref(struct lst_sock *ls)
{
	if (--ls->refs > 0)
		return;
	if (ls->ev_on)
		event_del(&ls->ev);
	if (ls->fd != -1)
		close(ls->fd);
	if (ls->gen != NULL)
		osp_config_unref(ls->gen);
	osp_free(ls);
}

/* "127.0.0.1:25", "[::1]:587" */
static void
lst_format_addr(const struct sockaddr_storage *ss, uint16_t port, char *buf,
    size_t size)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)ss)->sin6_addr, host,
		    sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, port);
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
		    host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, port);
	}
}

static int
lst_bind_one(struct osp_config *gen, const struct osp_core_listener *l,
    const struct osp_conf_addr *a, struct lst_sock **ls_r,
    const char **error_r)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct lst_sock *ls;
	char text[INET6_ADDRSTRLEN + 8];
	uint16_t port;
	int fd, one = 1, err;
	const char *what;

	ss = a->ss;
	port = a->port != 0 ? a->port : (uint16_t)l->port;
	if (ss.ss_family == AF_INET6) {
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		sslen = sizeof(struct sockaddr_in6);
	} else if (ss.ss_family == AF_INET) {
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		sslen = sizeof(struct sockaddr_in);
	} else {
		*error_r = osp_psprintf(gen->pool, "listener %s: address %s: "
		    "not an IP address", l->name, a->text != NULL ? a->text :
		    "?");
		return -EAFNOSUPPORT;
	}
	lst_format_addr(&ss, port, text, sizeof(text));
	what = "socket";
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		goto fail;
	what = "setsockopt";
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		goto fail;
	/* One socket per address family: "::" must not also take the
	 * IPv4 port that a separate 0.0.0.0 entry binds. */
	if (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto fail;
	what = "bind";
	if (bind(fd, (struct sockaddr *)&ss, sslen) == -1)
		goto fail;
	what = "listen";
	if (listen(fd, LST_BACKLOG) == -1)
		goto fail;
	if (port == 0 && getsockname(fd, (struct sockaddr *)&ss,
	    &sslen) == 0) {
		port = ntohs(ss.ss_family == AF_INET6 ?
		    ((struct sockaddr_in6 *)&ss)->sin6_port :
		    ((struct sockaddr_in *)&ss)->sin_port);
		lst_format_addr(&ss, port, text, sizeof(text));
	}
	ls = osp_calloc(1, sizeof(*ls));
	ls->refs = 1;
	ls->fd = fd;
	ls->info.name = l->name;
	ls->info.protocol = l->protocol;
	ls->info.tls = (enum osp_listener_tls)l->tls;
	ls->info.port = port;
	ls->info.conf = l->module_conf;
	osp_strlcpy(ls->addr, text, sizeof(ls->addr));
	ls->gen = osp_config_ref(gen);
	*ls_r = ls;
	return OSP_OK;
fail:
	err = errno;
	if (fd != -1)
		close(fd);
	*error_r = osp_psprintf(gen->pool, "listener %s: %s %s: %s", l->name,
	    what, text, strerror(err));
	return -err;
}

int
osp_listeners_bind(struct osp_config *gen, const char **error_r)
{
	const struct osp_conf_list *ll = &gen->core.listeners;
	const struct osp_core_listener *l;
	struct lst_sock *first = NULL, **tailp = &first, *ls = NULL;
	size_t i, j;
	int r = OSP_OK;

	for (i = 0; i < ll->n && r == OSP_OK; i++) {
		l = &OSP_CONF_ITEM(ll, struct osp_core_listener, i);
		if (lst_handler_find(l->protocol) == NULL) {
			*error_r = osp_psprintf(gen->pool, "listener %s: no "
			    "loaded module serves protocol %s", l->name,
			    l->protocol);
			r = OSP_ECONFIG;
			break;
		}
		if (l->tls != OSP_LISTENER_TLS_NONE && gen->tls == NULL) {
			*error_r = osp_psprintf(gen->pool, "listener %s: tls "
			    "needs a certificate (tls: certificates:)",
			    l->name);
			r = OSP_ECONFIG;
			break;
		}
		if (l->address.n == 0) {
			*error_r = osp_psprintf(gen->pool, "listener %s: no "
			    "address", l->name);
			r = OSP_ECONFIG;
			break;
		}
		for (j = 0; j < l->address.n; j++) {
			r = lst_bind_one(gen, l, &OSP_CONF_ITEM(&l->address,
			    struct osp_conf_addr, j), &ls, error_r);
			if (r != OSP_OK)
				break;
			*tailp = ls;
			tailp = &ls->next;
		}
	}
	if (r != OSP_OK) {
		/* All or nothing. */
		while ((ls = first) != NULL) {
			first = ls->next;
			lst_sock_unref(ls);
		}
		return r;
	}
	*tailp = lst.socks;
	lst.socks = first;
	return OSP_OK;
}

static void
lst_active_cleanup(void *arg)
{
	struct lst_active *a = arg;

	if (a->prev != NULL)
		a->prev->next = a->next;
	else
		lst.active = a->next;
	if (a->next != NULL)
		a->next->prev = a->prev;
	lst.nactive--;
	lst_sock_unref(a->ls);
}

static void
lst_handoff(struct lst_active *a)
{
	struct lst_handler *h = lst_handler_find(a->ls->info.protocol);

	osp_conn_set_callback(a->c, NULL, NULL);
	if (h == NULL) {
		/* The module went away (unloaded) meanwhile. */
		osp_conn_free(a->c);
		return;
	}
	h->fn(a->c, &a->ls->info, h->arg);
}

static void
lst_handshake_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct lst_active *a = arg;
	char sni[128];
	const char *s;

	switch (ev) {
	case OSP_CONN_TLSREADY:
		if (osp_log_debug_enabled("listener")) {
			s = osp_conn_tls_sni(c);
			osp_log(OSP_LOG_DEBUG, "listener", OSP_ID_FMT " tls "
			    "listener=%s version=%s sni=%s", OSP_ID_ARG(
			    osp_conn_id(c)), a->ls->info.name,
			    osp_conn_tls_version(c), s == NULL ? "-" :
			    osp_log_safe(sni, sizeof(sni), s, strlen(s)));
		}
		lst_handoff(a);
		break;
	case OSP_CONN_DATAIN:
	case OSP_CONN_LOWAT:
	case OSP_CONN_CONNECTED:
		break;
	default:
		osp_log_info("listener", OSP_ID_FMT " tls-failed listener=%s "
		    "address=%s error=\"%s\"", OSP_ID_ARG(osp_conn_id(c)),
		    a->ls->info.name, osp_conn_peer_str(c),
		    osp_conn_error_str(c));
		osp_conn_free(c);
		break;
	}
}

static void
lst_accepted(struct lst_sock *ls, int fd)
{
	struct osp_tls_server *srv;
	struct lst_active *a;
	struct osp_conn *c;
	int r;

	c = osp_conn_new(fd, NULL, NULL);
	a = osp_pcalloc(osp_conn_pool(c), 1, sizeof(*a));
	a->c = c;
	a->ls = ls;
	ls->refs++;
	a->next = lst.active;
	if (a->next != NULL)
		a->next->prev = a;
	lst.active = a;
	lst.nactive++;
	osp_pool_cleanup_add(osp_conn_pool(c), lst_active_cleanup, a);
	osp_log_debug("listener", OSP_ID_FMT " accepted listener=%s "
	    "address=%s local=%s", OSP_ID_ARG(osp_conn_id(c)), ls->info.name,
	    osp_conn_peer_str(c), ls->addr);
	if (ls->info.tls != OSP_LISTENER_TLS_IMPLICIT) {
		lst_handoff(a);
		return;
	}
	/* Implicit TLS (RFC 8314 §3.3): handshake first, with a deadline
	 * so that idle or slow peers cannot hold the slot. */
	srv = osp_tls_server_current();
	if (srv == NULL)
		srv = ls->gen->tls;
	osp_conn_set_callback(c, lst_handshake_cb, a);
	osp_conn_set_handshake_timeout(c, LST_HS_TIMEOUT);
	r = osp_conn_starttls_server(c, srv);
	if (r != OSP_OK) {
		osp_log_err("listener", "listener %s: TLS: %s", ls->info.name,
		    osp_strerror(r));
		osp_conn_free(c);
	}
}

static void lst_accept_cb(evutil_socket_t, short, void *);

static void
lst_enable(bool on)
{
	struct lst_sock *ls;

	for (ls = lst.socks; ls != NULL; ls = ls->next) {
		if (ls->fd == -1 || ls->ev_on == on)
			continue;
		if (on) {
			event_assign(&ls->ev, osp_event_base(), ls->fd,
			    EV_READ | EV_PERSIST, lst_accept_cb, ls);
			event_add(&ls->ev, NULL);
		} else
			event_del(&ls->ev);
		ls->ev_on = on;
	}
}

static void
lst_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	if (lst.started)
		lst_enable(true);
}

static void
lst_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lst_sock *ls = arg;
	struct timeval tv = { LST_EMFILE_PAUSE / 1000,
	    (LST_EMFILE_PAUSE % 1000) * 1000 };
	int n, cfd;

	for (n = 0; n < LST_ACCEPT_BATCH; n++) {
		cfd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd != -1) {
			lst_accepted(ls, cfd);
			continue;
		}
		switch (errno) {
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EAGAIN:
#if EAGAIN != EWOULDBLOCK
		case EWOULDBLOCK:
#endif
			return;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			/* The pending connection stays queued and the
			 * socket stays readable: stop looking for a while
			 * instead of spinning. */
			osp_log_warn("listener", "accept listener=%s: %s: "
			    "pausing %ums", ls->info.name, strerror(errno),
			    LST_EMFILE_PAUSE);
			lst_enable(false);
			if (lst.resume_ev == NULL)
				lst.resume_ev = evtimer_new(osp_event_base(),
				    lst_resume_cb, NULL);
			evtimer_add(lst.resume_ev, &tv);
			return;
		default:
			osp_log_err("listener", "accept listener=%s: %s",
			    ls->info.name, strerror(errno));
			return;
		}
	}
}

void
osp_listeners_start(void)
{
	struct lst_sock *ls;

	lst.started = true;
	lst_enable(true);
	for (ls = lst.socks; ls != NULL; ls = ls->next)
		osp_log_info("listener", "listening listener=%s protocol=%s "
		    "address=%s tls=%s", ls->info.name, ls->info.protocol,
		    ls->addr, ls->info.tls == OSP_LISTENER_TLS_IMPLICIT ?
		    "implicit" : ls->info.tls == OSP_LISTENER_TLS_STARTTLS ?
		    "starttls" : "none");
}

void
osp_listeners_stop(void)
{
	struct lst_sock *ls;

	lst.started = false;
	if (lst.resume_ev != NULL) {
		event_free(lst.resume_ev);
		lst.resume_ev = NULL;
	}
	while ((ls = lst.socks) != NULL) {
		lst.socks = ls->next;
		if (ls->ev_on)
			event_del(&ls->ev);
		ls->ev_on = false;
		close(ls->fd);
		ls->fd = -1;
		lst_sock_unref(ls);
	}
}

size_t
osp_listeners_active(void)
{
	return lst.nactive;
}

void
osp_listeners_close_all(void)
{
	struct lst_active *a;

	/* Each free runs the pool cleanup that unlinks the entry. */
	while ((a = lst.active) != NULL)
		osp_conn_free(a->c);
}
