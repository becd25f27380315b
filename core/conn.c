/* SPDX-License-Identifier: ISC */
/* Buffered, non-blocking connections with optional TLS (GnuTLS on the
 * socket) delivering one callback per event, as OpenSMTPD's ioev. */
#include "core.h"
#include "io_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#define CONN_READ_CHUNK		16384
/* Input buffered beyond maxline before reading stops (backpressure on a
 * peer that sends faster than the owner consumes). */
#define CONN_INBUF_SLACK	(64 * 1024)
#define CONN_MAXLINE		4096
#define CONN_HS_TIMEOUT		30000	/* TLS handshake deadline, ms */
#define CONN_CLOSE_TIMEOUT	30000	/* flush-on-close deadline, ms */
#define CONN_SHRINK		(64 * 1024)
#define CONN_TLS_CHUNK		16384	/* one TLS record's payload */
#define CONN_LINGER_MS		2000	/* lingering close, see conn_linger */
#define CONN_LINGER_MAX		1024	/* sockets lingering at once */

enum conn_state {
	CS_CONNECTING,
	CS_OPEN,
	CS_TLS_FLUSH,		/* plaintext still to send before the
				 * handshake starts */
	CS_HANDSHAKE,
};

struct osp_conn {
	int			 fd;
	int			 refs;
	uint64_t		 id;
	struct osp_pool		*pool;
	osp_conn_cb_fn		*cb;
	void			*cbarg;
	enum conn_state		 state;

	struct event		 rev, wev;
	struct event		 rtmo, wtmo;	/* read / write timeout */
	struct event		 xtmo;		/* connect, handshake, close */
	bool			 rev_on, wev_on;

	bool			 freed;		/* resources released */
	bool			 dead;		/* terminal event delivered */
	bool			 failed;	/* ... and it was an error */
	bool			 closing;	/* osp_conn_close(): flushing */
	bool			 paused;
	bool			 eof;
	bool			 in_capped;	/* input buffer full */
	bool			 discarding;	/* rest of a too-long line */
	bool			 flush_deferred;
	bool			 lowat_armed;
	bool			 datain_kick;	/* DATAIN owed after resume */

	struct osp_buf		 in;
	size_t			 in_off;
	struct osp_buf		 out;
	size_t			 out_off;
	size_t			 plain_left;	/* CS_TLS_FLUSH: plain bytes */
	struct osp_buf		 line;
	size_t			 maxline, lowat;
	uint64_t		 read_ms, write_ms, hs_ms;

	int			 error;
	const char		*errstr;

	struct sockaddr_storage	 peer, local;
	socklen_t		 peerlen, locallen;
	char			 peer_str[INET6_ADDRSTRLEN];

	/* TLS */
	gnutls_session_t	 tls;
	gnutls_certificate_credentials_t tls_cred;	/* client, owned */
	bool			 tls_server;
	bool			 tls_ready;
	bool			 hs_want_write;
	bool			 rd_needs_write;	/* recv waits on send */
	bool			 wr_needs_read;		/* send waits on recv */
	bool			 send_again;		/* record_send AGAIN */
	size_t			 send_again_len;
	bool			 bye_pending, bye_want_write;
	bool			 verify_required, verified;
	const char		*verify_name;
	const char		*tls_version, *tls_cipher, *tls_sni;
	unsigned char		*peer_cert;
	size_t			 peer_cert_len;

	void			**ctx;
	size_t			 nctx;
};

/* A socket we closed first, read and discarded until the peer closes. */
struct conn_linger {
	int			 fd;
	uint64_t		 deadline;
	struct event		 ev;
	struct conn_linger	*prev, *next;
};

static struct conn_linger	*lingering;
static size_t			 nlingering;

static void conn_update(struct osp_conn *);
static bool conn_flush(struct osp_conn *);
static void conn_handshake(struct osp_conn *);

static size_t
conn_pending(const struct osp_conn *c)
{
	return c->out.len - c->out_off;
}

static size_t
conn_inlen(const struct osp_conn *c)
{
	return c->in.len - c->in_off;
}

static struct timeval
ms_tv(uint64_t ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	return tv;
}

static void
conn_ref(struct osp_conn *c)
{
	c->refs++;
}

/* Returns whether the connection is still usable. */
static bool
conn_unref(struct osp_conn *c)
{
	if (--c->refs == 0 && c->freed) {
		osp_free(c);
		return false;
	}
	return !c->freed;
}

/* Delivers an event to the owner. Returns false when the connection was
 * freed meanwhile (the caller must not touch it any more). */
static bool
conn_emit(struct osp_conn *c, enum osp_conn_event ev)
{
	if (c->freed)
		return false;
	if (c->dead)
		return true;
	if (ev == OSP_CONN_DISCONNECTED || ev == OSP_CONN_TIMEOUT ||
	    ev == OSP_CONN_ERROR) {
		c->dead = true;
		c->failed = ev != OSP_CONN_DISCONNECTED;
		conn_update(c);
	}
	if (c->closing || c->cb == NULL)
		return true;
	conn_ref(c);
	c->cb(c, ev, c->cbarg);
	return conn_unref(c);
}

/* A failure: ERROR or TIMEOUT, or a silent free while closing. */
static bool
conn_fail(struct osp_conn *c, enum osp_conn_event ev, int err,
    const char *msg)
{
	c->error = err;
	c->errstr = msg != NULL ? osp_pstrdup(c->pool, msg) : NULL;
	if (c->closing) {
		osp_conn_free(c);
		return false;
	}
	return conn_emit(c, ev);
}

static void
conn_in_consume(struct osp_conn *c, size_t n)
{
	c->in_off += n;
	if (c->in_off >= c->in.len) {
		c->in_off = 0;
		c->in.len = 0;
		if (c->in.size > CONN_SHRINK) {
			osp_memzero(c->in.data, c->in.size);
			osp_buf_deinit(&c->in);
		} else if (c->in.data != NULL)
			c->in.data[0] = '\0';
	}
	if (c->in_capped && conn_inlen(c) < c->maxline + CONN_INBUF_SLACK) {
		c->in_capped = false;
		conn_update(c);
	}
}

static void
conn_out_consume(struct osp_conn *c, size_t n)
{
	c->out_off += n;
	if (c->out_off >= c->out.len) {
		c->out_off = 0;
		c->out.len = 0;
		if (c->out.size > CONN_SHRINK)
			osp_buf_deinit(&c->out);
	}
}

static bool
conn_want_input(const struct osp_conn *c)
{
	return c->state == CS_OPEN && !c->dead && !c->closing && !c->paused &&
	    !c->eof && !c->in_capped;
}

/* Arms exactly the events and timers the state needs. */
static void
conn_update(struct osp_conn *c)
{
	bool rd = false, wr = false, rt = false, wt = false, input;
	size_t pend;
	struct timeval tv;

	if (c->freed)
		return;
	pend = conn_pending(c);
	input = conn_want_input(c);
	if (c->dead && !c->closing)
		;
	else switch (c->state) {
	case CS_CONNECTING:
		wr = true;
		break;
	case CS_TLS_FLUSH:
		wr = true;
		wt = c->write_ms > 0;
		break;
	case CS_HANDSHAKE:
		wr = c->hs_want_write;
		rd = !wr;
		break;
	case CS_OPEN:
		if (c->closing) {
			wr = pend > 0 || (c->bye_pending && c->bye_want_write);
			rd = c->bye_pending && !c->bye_want_write;
			wt = pend > 0 && c->write_ms > 0;
			break;
		}
		rd = input;
		wr = pend > 0;
		if (wr && c->wr_needs_read)
			rd = true;
		if (rd && c->rd_needs_write)
			wr = true;
		rt = input && pend == 0 && c->read_ms > 0;
		wt = pend > 0 && c->write_ms > 0;
		break;
	}
	if (rd != c->rev_on) {
		if (rd)
			event_add(&c->rev, NULL);
		else
			event_del(&c->rev);
		c->rev_on = rd;
	}
	if (wr != c->wev_on) {
		if (wr)
			event_add(&c->wev, NULL);
		else
			event_del(&c->wev);
		c->wev_on = wr;
	}
	if (!rt)
		evtimer_del(&c->rtmo);
	else if (!evtimer_pending(&c->rtmo, NULL)) {
		tv = ms_tv(c->read_ms);
		evtimer_add(&c->rtmo, &tv);
	}
	if (!wt)
		evtimer_del(&c->wtmo);
	else if (!evtimer_pending(&c->wtmo, NULL)) {
		tv = ms_tv(c->write_ms);
		evtimer_add(&c->wtmo, &tv);
	}
	/* Records GnuTLS already decrypted do not make the socket readable:
	 * run the read handler now. */
	if (input && c->tls_ready && gnutls_record_check_pending(c->tls) > 0)
		event_active(&c->rev, EV_READ, 1);
}

/* Reads what the socket (or GnuTLS) has, then reports it. */
static void
conn_read(struct osp_conn *c)
{
	size_t cap = c->maxline + CONN_INBUF_SLACK, total = 0, room;
	const char *errstr = NULL;
	bool kick = c->datain_kick && !c->paused;
	ssize_t n;
	int err = 0;

	c->datain_kick = false;
	c->rd_needs_write = false;
	if (c->in_off > 0 && c->in.len > c->in_off) {
		memmove(c->in.data, c->in.data + c->in_off, conn_inlen(c));
		c->in.len -= c->in_off;
		c->in_off = 0;
		c->in.data[c->in.len] = '\0';
	}
	while (conn_want_input(c)) {
		if (conn_inlen(c) >= cap) {
			c->in_capped = true;
			break;
		}
		osp_buf_reserve(&c->in, CONN_READ_CHUNK);
		room = c->in.size - c->in.len - 1;
		if (c->tls != NULL) {
			n = gnutls_record_recv(c->tls, c->in.data + c->in.len,
			    room);
			if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) {
				/* close_notify, or EOF without it: many
				 * clients just close; the data they sent is
				 * authenticated record by record. */
				c->eof = true;
				break;
			}
			if (n == GNUTLS_E_AGAIN) {
				c->rd_needs_write =
				    gnutls_record_get_direction(c->tls) == 1;
				break;
			}
			if (n == GNUTLS_E_REHANDSHAKE) {
				/* RFC 5746: refuse renegotiation. */
				(void)gnutls_alert_send(c->tls,
				    GNUTLS_AL_WARNING,
				    GNUTLS_A_NO_RENEGOTIATION);
				continue;
			}
			if (n < 0 && !gnutls_error_is_fatal((int)n))
				continue;
			if (n < 0) {
				err = OSP_ETLS;
				errstr = gnutls_strerror((int)n);
				break;
			}
		} else {
			n = recv(c->fd, c->in.data + c->in.len, room, 0);
			if (n == 0) {
				c->eof = true;
				break;
			}
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK) {
					err = -errno;
					errstr = strerror(errno);
				}
				break;
			}
		}
		c->in.len += (size_t)n;
		c->in.data[c->in.len] = '\0';
		total += (size_t)n;
		/* A short plain read drained the socket. */
		if (c->tls == NULL && (size_t)n < room)
			break;
	}
	if (total > 0 || (kick && conn_inlen(c) > 0)) {
		evtimer_del(&c->rtmo);
		if (!conn_emit(c, OSP_CONN_DATAIN))
			return;
	}
	if (err != 0) {
		conn_fail(c, OSP_CONN_ERROR, err, errstr);
		return;
	}
	if (c->eof && !c->paused)
		conn_emit(c, OSP_CONN_DISCONNECTED);
}

/* Sends plaintext bytes straight to the socket. Returns bytes sent, 0 on
 * EAGAIN, or -errno. */
static ssize_t
conn_send_plain(struct osp_conn *c, size_t len)
{
	ssize_t n;

	do {
		n = send(c->fd, c->out.data + c->out_off, len, MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	return n;
}

static void
linger_free(struct conn_linger *l)
{
	event_del(&l->ev);
	close(l->fd);
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		lingering = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	nlingering--;
	osp_free(l);
}

static void
linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_linger *l = arg;
	char buf[4096];
	ssize_t n;
	int i;

	if ((what & EV_READ) && osp_now_ms() < l->deadline) {
		for (i = 0; i < 16; i++) {
			n = recv(fd, buf, sizeof(buf), 0);
			if (n > 0)
				continue;
			if (n == -1 && (errno == EAGAIN ||
			    errno == EWOULDBLOCK || errno == EINTR))
				return;
			break;	/* EOF or error: done */
		}
		if (i == 16)
			return;	/* more later, within the deadline */
	}
	linger_free(l);
}

/*
 * Lingering close (as nginx's lingering_close): when we close a socket
 * whose peer may still send (pipelined commands after our 421, a client
 * that writes before reading), closing at once would make the kernel
 * answer the peer's data with a RST, and a RST makes the peer's kernel
 * drop our last reply if the peer has not read it yet. So after our FIN
 * (shutdown(SHUT_WR)) the socket is kept and its input discarded until
 * the peer's FIN or CONN_LINGER_MS. Bounded by CONN_LINGER_MAX; beyond
 * that, sockets close at once. Takes over fd.
 */
static void
conn_linger(int fd)
{
	struct conn_linger *l;
	struct timeval tv = ms_tv(CONN_LINGER_MS);

	if (nlingering >= CONN_LINGER_MAX) {
		close(fd);
		return;
	}
	l = osp_calloc(1, sizeof(*l));
	l->fd = fd;
	l->deadline = osp_now_ms() + CONN_LINGER_MS;
	event_assign(&l->ev, osp_event_base(), fd, EV_READ | EV_PERSIST,
	    linger_cb, l);
	event_add(&l->ev, &tv);
	l->next = lingering;
	if (lingering != NULL)
		lingering->prev = l;
	lingering = l;
	nlingering++;
}

void
osp_conn_linger_closeall(void)
{
	while (lingering != NULL)
		linger_free(lingering);
}

static bool
conn_finish_close(struct osp_conn *c)
{
	int r;

	if (c->tls_ready && !c->dead) {
		/* close_notify (RFC 8446 §6.1); we do not wait for the
		 * peer's. */
		r = gnutls_bye(c->tls, GNUTLS_SHUT_WR);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			c->bye_pending = true;
			c->bye_want_write =
			    gnutls_record_get_direction(c->tls) == 1;
			return true;
		}
	}
	(void)shutdown(c->fd, SHUT_WR);
	/* The peer has not closed its side: it may still be sending. */
	if (!c->eof && !c->dead) {
		conn_linger(c->fd);
		c->fd = -1;
	}
	osp_conn_free(c);
	return false;
}

/* Writes pending output. Returns false when the connection is gone or
 * dead. */
static bool
conn_flush(struct osp_conn *c)
{
	const char *errstr = NULL;
	bool progress = false;
	size_t len;
	ssize_t n;
	int err = 0;

	c->wr_needs_read = false;
	if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE)
		return true;
	if (c->dead && !c->closing)
		return false;
	while (conn_pending(c) > 0) {
		if (c->state == CS_TLS_FLUSH) {
			if (c->plain_left == 0)
				break;
			n = conn_send_plain(c, c->plain_left);
			if (n > 0)
				c->plain_left -= (size_t)n;
		} else if (c->tls_ready) {
			len = conn_pending(c);
			if (len > CONN_TLS_CHUNK)
				len = CONN_TLS_CHUNK;
			/* After GNUTLS_E_AGAIN the same call must be
			 * repeated; GnuTLS holds the encrypted record. */
			if (c->send_again)
				len = c->send_again_len;
			n = gnutls_record_send(c->tls,
			    c->out.data + c->out_off, len);
			c->send_again = false;
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
				c->send_again = true;
				c->send_again_len = len;
				c->wr_needs_read =
				    gnutls_record_get_direction(c->tls) == 0;
				n = 0;
			} else if (n < 0) {
				err = OSP_ETLS;
				errstr = gnutls_strerror((int)n);
				break;
			}
		} else
			n = conn_send_plain(c, conn_pending(c));
		if (n < 0) {
			err = (int)n;
			errstr = strerror((int)-n);
			break;
		}
		if (n == 0)
			break;
		conn_out_consume(c, (size_t)n);
		progress = true;
	}
	if (err != 0) {
		(void)conn_fail(c, OSP_CONN_ERROR, err, errstr);
		return false;
	}
	if (progress)
		evtimer_del(&c->wtmo);
	if (c->state == CS_TLS_FLUSH) {
		if (c->plain_left > 0)
			return true;
		c->state = CS_HANDSHAKE;
		conn_handshake(c);
		return !c->freed && !c->dead;
	}
	if (c->closing) {
		if (conn_pending(c) == 0)
			return conn_finish_close(c);
		return true;
	}
	if (c->lowat_armed && conn_pending(c) <= c->lowat) {
		c->lowat_armed = false;
		if (!conn_emit(c, OSP_CONN_LOWAT))
			return false;
	}
	return !c->dead;
}

static void
conn_deferred_flush(void *arg)
{
	struct osp_conn *c = arg;

	c->flush_deferred = false;
	if (!c->freed && c->state == CS_OPEN && conn_flush(c))
		conn_update(c);
	else if (!c->freed)
		conn_update(c);
	conn_unref(c);
}

/* Output goes out once, before the loop sleeps: replies to pipelined
 * commands coalesce into one write. */
static void
conn_schedule_flush(struct osp_conn *c)
{
	if (c->flush_deferred || c->freed)
		return;
	c->flush_deferred = true;
	conn_ref(c);
	osp_event_defer(conn_deferred_flush, c);
}

static void
conn_tls_info(struct osp_conn *c)
{
	const gnutls_datum_t *certs;
	unsigned ncerts = 0, status = 0;
	gnutls_datum_t out;
	char name[256];
	size_t len = sizeof(name);
	unsigned type;
	int r;

	c->tls_version = gnutls_protocol_get_name(
	    gnutls_protocol_get_version(c->tls));
	c->tls_cipher = gnutls_ciphersuite_get(c->tls);
	if (c->tls_server && gnutls_server_name_get(c->tls, name, &len,
	    &type, 0) == 0 && type == GNUTLS_NAME_DNS)
		c->tls_sni = osp_pstrndup(c->pool, name, len);
	certs = gnutls_certificate_get_peers(c->tls, &ncerts);
	if (certs != NULL && ncerts > 0) {
		c->peer_cert = osp_pmemdup(c->pool, certs[0].data,
		    certs[0].size);
		c->peer_cert_len = certs[0].size;
	}
	if (c->tls_server)
		return;
	r = gnutls_certificate_verify_peers3(c->tls, c->verify_name, &status);
	if (r == 0 && status == 0 && ncerts > 0) {
		c->verified = true;
		return;
	}
	if (r < 0)
		c->errstr = osp_psprintf(c->pool, "certificate verification: "
		    "%s", gnutls_strerror(r));
	else if (gnutls_certificate_verification_status_print(status,
	    GNUTLS_CRT_X509, &out, 0) == 0) {
		c->errstr = osp_psprintf(c->pool, "certificate verification: "
		    "%s", (const char *)out.data);
		gnutls_free(out.data);
	} else
		c->errstr = "certificate verification failed";
	c->error = OSP_ETLS;
}

static void
conn_handshake(struct osp_conn *c)
{
	const char *msg;
	int r;

	for (;;) {
		r = gnutls_handshake(c->tls);
		if (r == 0)
			break;
		if (r == GNUTLS_E_AGAIN) {
			c->hs_want_write =
			    gnutls_record_get_direction(c->tls) == 1;
			return;
		}
		if (gnutls_error_is_fatal(r)) {
			if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
				msg = osp_psprintf(c->pool, "TLS handshake: "
				    "%s: %s", gnutls_strerror(r),
				    gnutls_alert_get_name(
				    gnutls_alert_get(c->tls)));
			else
				msg = osp_psprintf(c->pool, "TLS handshake: "
				    "%s", gnutls_strerror(r));
			(void)gnutls_alert_send_appropriate(c->tls, r);
			conn_fail(c, OSP_CONN_ERROR, OSP_ETLS, msg);
			return;
		}
		/* GNUTLS_E_INTERRUPTED, warning alerts: go on. */
	}
	evtimer_del(&c->xtmo);
	c->state = CS_OPEN;
	c->tls_ready = true;
	conn_tls_info(c);
	if (!c->verified && c->verify_required) {
		conn_fail(c, OSP_CONN_ERROR, OSP_ETLS, c->errstr);
		return;
	}
	if (!c->verified && !c->tls_server) {
		/* Not an error unless asked for: keep the text for
		 * osp_conn_error_str but no error code. */
		c->error = 0;
	}
	if (!conn_emit(c, OSP_CONN_TLSREADY))
		return;
	/* Output written during the handshake; records that arrived with
	 * the Finished message are picked up by conn_update(). */
	if (conn_pending(c) > 0)
		(void)conn_flush(c);
}

static void
conn_connected(struct osp_conn *c)
{
	int err = 0, one = 1;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		conn_fail(c, OSP_CONN_ERROR, -err, strerror(err));
		return;
	}
	evtimer_del(&c->xtmo);
	c->state = CS_OPEN;
	c->locallen = sizeof(c->local);
	(void)getsockname(c->fd, (struct sockaddr *)&c->local, &c->locallen);
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!conn_emit(c, OSP_CONN_CONNECTED))
		return;
	if (c->tls != NULL && !c->dead) {
		/* TLS was asked for before the connect finished: nothing
		 * goes out in plaintext. */
		struct timeval tv = ms_tv(c->hs_ms);

		c->state = CS_HANDSHAKE;
		c->hs_want_write = true;
		if (c->hs_ms > 0)
			evtimer_add(&c->xtmo, &tv);
	}
}

static void
conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct osp_conn *c = arg;

	conn_ref(c);
	switch (c->state) {
	case CS_CONNECTING:
		if (what & EV_WRITE)
			conn_connected(c);
		break;
	case CS_TLS_FLUSH:
		if (what & EV_WRITE)
			(void)conn_flush(c);
		break;
	case CS_HANDSHAKE:
		conn_handshake(c);
		break;
	case CS_OPEN:
		if (c->closing) {
			(void)conn_flush(c);
			break;
		}
		if (((what & EV_WRITE) || c->wr_needs_read) &&
		    conn_pending(c) > 0 && !conn_flush(c))
			break;
		if ((what & EV_READ) || c->rd_needs_write)
			conn_read(c);
		break;
	}
	if (!c->freed)
		conn_update(c);
	conn_unref(c);
}

static void
conn_rtmo_cb(evutil_socket_t fd, short what, void *arg)
{
	struct osp_conn *c = arg;

	conn_fail(c, OSP_CONN_TIMEOUT, -ETIMEDOUT, "read timeout");
}

static void
conn_wtmo_cb(evutil_socket_t fd, short what, void *arg)
{
	struct osp_conn *c = arg;

	conn_fail(c, OSP_CONN_TIMEOUT, -ETIMEDOUT, "write timeout");
}

static void
conn_xtmo_cb(evutil_socket_t fd, short what, void *arg)
{
	struct osp_conn *c = arg;

	if (c->closing)
		osp_conn_free(c);
	else if (c->state == CS_CONNECTING)
		conn_fail(c, OSP_CONN_TIMEOUT, -ETIMEDOUT, "connect timeout");
	else
		conn_fail(c, OSP_CONN_TIMEOUT, -ETIMEDOUT,
		    "TLS handshake timeout");
}

static void
conn_peer_str(struct osp_conn *c)
{
	const struct sockaddr_in *sin = (const void *)&c->peer;
	const struct sockaddr_in6 *sin6 = (const void *)&c->peer;

	if (c->peer.ss_family == AF_INET)
		inet_ntop(AF_INET, &sin->sin_addr, c->peer_str,
		    sizeof(c->peer_str));
	else if (c->peer.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &sin6->sin6_addr, c->peer_str,
		    sizeof(c->peer_str));
	else if (c->peer.ss_family == AF_UNIX)
		osp_strlcpy(c->peer_str, "unix", sizeof(c->peer_str));
	else
		osp_strlcpy(c->peer_str, "unknown", sizeof(c->peer_str));
}

static struct osp_conn *
conn_alloc(int fd, osp_conn_cb_fn *cb, void *arg)
{
	struct event_base *base = osp_event_base();
	struct osp_conn *c;

	c = osp_calloc(1, sizeof(*c));
	c->fd = fd;
	c->id = osp_id_new();
	c->pool = osp_pool_new(NULL);
	c->cb = cb;
	c->cbarg = arg;
	c->maxline = CONN_MAXLINE;
	c->hs_ms = CONN_HS_TIMEOUT;
	event_assign(&c->rev, base, fd, EV_READ | EV_PERSIST, conn_io_cb, c);
	event_assign(&c->wev, base, fd, EV_WRITE | EV_PERSIST, conn_io_cb, c);
	evtimer_assign(&c->rtmo, base, conn_rtmo_cb, c);
	evtimer_assign(&c->wtmo, base, conn_wtmo_cb, c);
	evtimer_assign(&c->xtmo, base, conn_xtmo_cb, c);
	return c;
}

struct osp_conn *
osp_conn_new(int fd, osp_conn_cb_fn *cb, void *arg)
{
	struct osp_conn *c;
	int fl, one = 1;

	fl = fcntl(fd, F_GETFL);
	if (fl != -1 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	c = conn_alloc(fd, cb, arg);
	c->state = CS_OPEN;
	c->peerlen = sizeof(c->peer);
	if (getpeername(fd, (struct sockaddr *)&c->peer, &c->peerlen) == -1)
		c->peerlen = 0;
	c->locallen = sizeof(c->local);
	if (getsockname(fd, (struct sockaddr *)&c->local, &c->locallen) == -1)
		c->locallen = 0;
	conn_peer_str(c);
	if (c->local.ss_family == AF_INET || c->local.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	conn_update(c);
	return c;
}

struct osp_conn *
osp_conn_connect(const struct sockaddr *sa, socklen_t salen,
    const struct sockaddr *bind_sa, socklen_t bind_salen,
    uint64_t timeout_ms, osp_conn_cb_fn *cb, void *arg, int *err_r)
{
	struct osp_conn *c;
	struct timeval tv;
	int fd;

	if (salen > sizeof(struct sockaddr_storage)) {
		*err_r = -EINVAL;
		return NULL;
	}
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		*err_r = -errno;
		return NULL;
	}
	if ((bind_sa != NULL && bind(fd, bind_sa, bind_salen) == -1) ||
	    (connect(fd, sa, salen) == -1 && errno != EINPROGRESS)) {
		*err_r = -errno;
		close(fd);
		return NULL;
	}
	c = conn_alloc(fd, cb, arg);
	c->state = CS_CONNECTING;
	memcpy(&c->peer, sa, salen);
	c->peerlen = salen;
	conn_peer_str(c);
	if (timeout_ms > 0) {
		tv = ms_tv(timeout_ms);
		evtimer_add(&c->xtmo, &tv);
	}
	conn_update(c);
	*err_r = OSP_OK;
	return c;
}

void
osp_conn_free(struct osp_conn *c)
{
	if (c == NULL || c->freed)
		return;
	c->freed = true;
	c->dead = true;
	conn_ref(c);
	event_del(&c->rev);
	event_del(&c->wev);
	evtimer_del(&c->rtmo);
	evtimer_del(&c->wtmo);
	evtimer_del(&c->xtmo);
	/* Cleanups (session state, the listener's bookkeeping) run while
	 * the struct is still readable. */
	osp_pool_free(c->pool);
	c->pool = NULL;
	osp_tls_session_free(c->tls, c->tls_cred);
	c->tls = NULL;
	c->tls_cred = NULL;
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	/* Input may hold AUTH payloads. */
	if (c->in.data != NULL)
		osp_memzero(c->in.data, c->in.size);
	if (c->line.data != NULL)
		osp_memzero(c->line.data, c->line.size);
	osp_buf_deinit(&c->in);
	osp_buf_deinit(&c->out);
	osp_buf_deinit(&c->line);
	conn_unref(c);
}

void
osp_conn_close(struct osp_conn *c)
{
	struct timeval tv;

	if (c == NULL || c->freed || c->closing)
		return;
	if (c->failed || c->state != CS_OPEN) {
		osp_conn_free(c);
		return;
	}
	c->closing = true;
	tv = ms_tv(c->write_ms > 0 ? c->write_ms : CONN_CLOSE_TIMEOUT);
	evtimer_add(&c->xtmo, &tv);
	if (conn_pending(c) == 0) {
		if (conn_finish_close(c))
			conn_update(c);
		return;
	}
	conn_schedule_flush(c);
	conn_update(c);
}

void
osp_conn_set_callback(struct osp_conn *c, osp_conn_cb_fn *cb, void *arg)
{
	c->cb = cb;
	c->cbarg = arg;
}

struct osp_pool *
osp_conn_pool(struct osp_conn *c)
{
	return c->pool;
}

uint64_t
osp_conn_id(const struct osp_conn *c)
{
	return c->id;
}

const struct sockaddr *
osp_conn_peer(const struct osp_conn *c, socklen_t *len_r)
{
	if (len_r != NULL)
		*len_r = c->peerlen;
	return (const struct sockaddr *)&c->peer;
}

const struct sockaddr *
osp_conn_local(const struct osp_conn *c, socklen_t *len_r)
{
	if (len_r != NULL)
		*len_r = c->locallen;
	return (const struct sockaddr *)&c->local;
}

const char *
osp_conn_peer_str(const struct osp_conn *c)
{
	return c->peer_str;
}

int
osp_conn_error(const struct osp_conn *c)
{
	return c->error;
}

const char *
osp_conn_error_str(const struct osp_conn *c)
{
	if (c->errstr != NULL)
		return c->errstr;
	return c->error != 0 ? osp_strerror(c->error) : "no error";
}

void
osp_conn_set_timeouts(struct osp_conn *c, uint64_t read_ms, uint64_t write_ms)
{
	c->read_ms = read_ms;
	c->write_ms = write_ms;
	evtimer_del(&c->rtmo);
	evtimer_del(&c->wtmo);
	conn_update(c);
}

void
osp_conn_set_handshake_timeout(struct osp_conn *c, uint64_t ms)
{
	c->hs_ms = ms;
}

void
osp_conn_set_maxline(struct osp_conn *c, size_t max)
{
	c->maxline = max > 0 ? max : CONN_MAXLINE;
}

void
osp_conn_set_lowat(struct osp_conn *c, size_t lowat)
{
	c->lowat = lowat;
	c->lowat_armed = conn_pending(c) > lowat;
}

void
osp_conn_pause(struct osp_conn *c)
{
	if (c->paused)
		return;
	c->paused = true;
	conn_update(c);
}

void
osp_conn_resume(struct osp_conn *c)
{
	if (!c->paused)
		return;
	c->paused = false;
	/* Register the read event first: libevent does not insert an event
	 * into the I/O map while it is active, so an event_add after
	 * event_active would leave the socket unwatched. */
	conn_update(c);
	/* Input buffered while paused (or a pending EOF) is reported
	 * without waiting for the socket. */
	if (c->state == CS_OPEN && !c->dead &&
	    (conn_inlen(c) > 0 || c->eof)) {
		c->datain_kick = true;
		event_active(&c->rev, EV_READ, 1);
	}
}

char *
osp_conn_getline(struct osp_conn *c, size_t *len_r, bool *crlf_r,
    bool *toolong_r)
{
	char *data, *lf;
	size_t avail, n, linelen;
	bool crlf;

	if (toolong_r != NULL)
		*toolong_r = false;
	if (crlf_r != NULL)
		*crlf_r = false;
	if (len_r != NULL)
		*len_r = 0;
	avail = conn_inlen(c);
	data = c->in.data + c->in_off;
	if (avail == 0)
		return NULL;
	if (c->discarding) {
		lf = memchr(data, '\n', avail);
		if (lf == NULL) {
			conn_in_consume(c, avail);
			return NULL;
		}
		c->discarding = false;
		conn_in_consume(c, (size_t)(lf - data) + 1);
		avail = conn_inlen(c);
		data = c->in.data + c->in_off;
		if (avail == 0)
			return NULL;
	}
	lf = memchr(data, '\n', avail);
	if (lf == NULL) {
		/* Too long already, even if a CR LF came next: discard now
		 * rather than buffer without bound. */
		if (avail > c->maxline + 1 ||
		    (avail == c->maxline + 1 && data[avail - 1] != '\r')) {
			conn_in_consume(c, avail);
			c->discarding = true;
			if (toolong_r != NULL)
				*toolong_r = true;
		}
		return NULL;
	}
	n = (size_t)(lf - data);
	crlf = n > 0 && data[n - 1] == '\r';
	linelen = crlf ? n - 1 : n;
	if (linelen > c->maxline) {
		conn_in_consume(c, n + 1);
		if (toolong_r != NULL)
			*toolong_r = true;
		return NULL;
	}
	osp_buf_reset(&c->line);
	osp_buf_append(&c->line, data, linelen);
	conn_in_consume(c, n + 1);
	if (len_r != NULL)
		*len_r = linelen;
	if (crlf_r != NULL)
		*crlf_r = crlf;
	return c->line.data;
}

const unsigned char *
osp_conn_data(struct osp_conn *c, size_t *len_r)
{
	*len_r = conn_inlen(c);
	return (const unsigned char *)c->in.data + c->in_off;
}

void
osp_conn_drain(struct osp_conn *c, size_t n)
{
	if (n > conn_inlen(c))
		n = conn_inlen(c);
	conn_in_consume(c, n);
}

void
osp_conn_discard_input(struct osp_conn *c)
{
	c->discarding = false;
	conn_in_consume(c, conn_inlen(c));
}

static void
conn_out_compact(struct osp_conn *c)
{
	if (c->out_off > CONN_SHRINK && c->out_off > c->out.len / 2 &&
	    !c->send_again) {
		memmove(c->out.data, c->out.data + c->out_off, conn_pending(c));
		c->out.len -= c->out_off;
		c->out_off = 0;
	}
}

static void
conn_wrote(struct osp_conn *c)
{
	if (conn_pending(c) > c->lowat)
		c->lowat_armed = true;
	if (c->state == CS_OPEN)
		conn_schedule_flush(c);
}

void
osp_conn_write(struct osp_conn *c, const void *p, size_t len)
{
	if (c->freed || len == 0)
		return;
	conn_out_compact(c);
	osp_buf_append(&c->out, p, len);
	conn_wrote(c);
}

void
osp_conn_printf(struct osp_conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->freed)
		return;
	conn_out_compact(c);
	va_start(ap, fmt);
	osp_buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
	conn_wrote(c);
}

size_t
osp_conn_pending(const struct osp_conn *c)
{
	return conn_pending(c);
}

/* GnuTLS transport on the socket itself. */

static ssize_t
conn_tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct osp_conn *c = p;
	ssize_t n;

	do {
		n = recv(c->fd, buf, len, 0);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		gnutls_transport_set_errno(c->tls, errno);
	return n;
}

static ssize_t
conn_tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt)
{
	struct osp_conn *c = p;
	struct msghdr msg;
	ssize_t n;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = (struct iovec *)(uintptr_t)iov;
	msg.msg_iovlen = (size_t)iovcnt;
	do {
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		gnutls_transport_set_errno(c->tls, errno);
	return n;
}

/* Never blocks: with GNUTLS_NONBLOCK GnuTLS should not wait, but if it
 * asks, answer from the socket's current state. */
static int
conn_tls_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
	struct osp_conn *c = p;
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

	return poll(&pfd, 1, 0);
}

static int
conn_tls_start(struct osp_conn *c, gnutls_session_t s,
    gnutls_certificate_credentials_t cred, bool server)
{
	struct timeval tv;

	c->tls = s;
	c->tls_cred = cred;
	c->tls_server = server;
	gnutls_transport_set_ptr(s, c);
	gnutls_transport_set_pull_function(s, conn_tls_pull);
	gnutls_transport_set_vec_push_function(s, conn_tls_push);
	gnutls_transport_set_pull_timeout_function(s, conn_tls_pull_timeout);
	/* RFC 3207 §6, RFC 2595 §3.1 (CVE-2011-0411): nothing received
	 * before the handshake may be taken as protected input. */
	osp_conn_discard_input(c);
	c->eof = false;
	if (c->state == CS_CONNECTING)
		return OSP_OK;	/* begins once connected */
	evtimer_del(&c->rtmo);
	/* Output written before this call (the "220 Ready to start TLS"
	 * reply) goes out in plaintext first. */
	c->plain_left = conn_pending(c);
	c->state = c->plain_left > 0 ? CS_TLS_FLUSH : CS_HANDSHAKE;
	c->hs_want_write = !server;
	if (c->hs_ms > 0) {
		tv = ms_tv(c->hs_ms);
		evtimer_add(&c->xtmo, &tv);
	}
	conn_update(c);
	return OSP_OK;
}

int
osp_conn_starttls_server(struct osp_conn *c, struct osp_tls_server *srv)
{
	gnutls_session_t s;
	const char *error;
	int r;

	if (c->freed || c->dead || c->closing)
		return -ENOTCONN;
	if (c->tls != NULL)
		return -EALREADY;
	if (srv == NULL)
		return -EINVAL;
	r = osp_tls_session_server(srv, &s, &error);
	if (r != OSP_OK) {
		c->errstr = osp_pstrdup(c->pool, error);
		return r;
	}
	return conn_tls_start(c, s, NULL, true);
}

int
osp_conn_starttls_client(struct osp_conn *c,
    const struct osp_tls_client_params *params)
{
	gnutls_certificate_credentials_t cred;
	gnutls_session_t s;
	const char *error;
	int r;

	if (c->freed || c->dead || c->closing)
		return -ENOTCONN;
	if (c->tls != NULL)
		return -EALREADY;
	r = osp_tls_session_client(params, &s, &cred, &error);
	if (r != OSP_OK) {
		c->errstr = osp_pstrdup(c->pool, error);
		return r;
	}
	c->verify_required = params->verify;
	if (params->server_name != NULL && *params->server_name != '\0')
		c->verify_name = osp_pstrdup(c->pool, params->server_name);
	return conn_tls_start(c, s, cred, false);
}

bool
osp_conn_is_tls(const struct osp_conn *c)
{
	return c->tls_ready;
}

const char *
osp_conn_tls_version(const struct osp_conn *c)
{
	return c->tls_ready ? c->tls_version : NULL;
}

const char *
osp_conn_tls_cipher(const struct osp_conn *c)
{
	return c->tls_ready ? c->tls_cipher : NULL;
}

const char *
osp_conn_tls_sni(const struct osp_conn *c)
{
	return c->tls_ready ? c->tls_sni : NULL;
}

int
osp_conn_tls_channel_binding(struct osp_conn *c, const char *type,
    unsigned char *buf, size_t size)
{
	gnutls_channel_binding_t cbt;
	gnutls_protocol_t ver;
	gnutls_datum_t d;
	int r;

	if (!c->tls_ready || c->freed)
		return -ENOTCONN;
	ver = gnutls_protocol_get_version(c->tls);
	if (strcmp(type, "tls-unique") == 0) {
		/* RFC 5929 §3; undefined for TLS 1.3 (RFC 8446 §C.5). */
		if (ver != GNUTLS_TLS1_2)
			return -ENOTSUP;
		cbt = GNUTLS_CB_TLS_UNIQUE;
	} else if (strcmp(type, "tls-exporter") == 0) {
		/* RFC 9266 §3: with TLS 1.2 only under the extended master
		 * secret (RFC 7627). */
		if (ver == GNUTLS_TLS1_2 &&
		    !gnutls_session_ext_master_secret_status(c->tls))
			return -ENOTSUP;
#if GNUTLS_VERSION_NUMBER >= 0x030702
		cbt = GNUTLS_CB_TLS_EXPORTER;
#else
		if (size < 32)
			return -ENOBUFS;
		r = gnutls_prf_rfc5705(c->tls, 24, "EXPORTER-Channel-Binding",
		    0, "", 32, (char *)buf);
		return r < 0 ? OSP_ETLS : 32;
#endif
	} else
		return -ENOTSUP;
	r = gnutls_session_channel_binding(c->tls, cbt, &d);
	if (r < 0)
		return r == GNUTLS_E_UNIMPLEMENTED_FEATURE ||
		    r == GNUTLS_E_INVALID_REQUEST ? -ENOTSUP : OSP_ETLS;
	if (d.size > size) {
		gnutls_free(d.data);
		return -ENOBUFS;
	}
	memcpy(buf, d.data, d.size);
	r = (int)d.size;
	gnutls_free(d.data);
	return r;
}

const unsigned char *
osp_conn_tls_peer_cert(struct osp_conn *c, size_t *len_r)
{
	*len_r = c->peer_cert_len;
	return c->peer_cert;
}

bool
osp_conn_tls_verified(const struct osp_conn *c)
{
	return c->verified;
}

/* Per-module slots, indexed like osp_modules[] (nginx's ctx index). */
void *
osp_conn_get_ctx(const struct osp_conn *c, const struct osp_module_ctx *m)
{
	return m->index < c->nctx ? c->ctx[m->index] : NULL;
}

void
osp_conn_set_ctx(struct osp_conn *c, const struct osp_module_ctx *m,
    void *data)
{
	void **n;
	size_t size;

	if (m->index >= c->nctx) {
		size = m->index + 1;
		if (size < osp_nmodules)
			size = osp_nmodules;
		n = osp_pcalloc(c->pool, size, sizeof(*n));
		if (c->nctx > 0)
			memcpy(n, c->ctx, c->nctx * sizeof(*n));
		c->ctx = n;
		c->nctx = size;
	}
	c->ctx[m->index] = data;
}
