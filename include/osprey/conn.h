/* SPDX-License-Identifier: ISC */
/* Buffered connections with TLS: one callback per connection receiving
 * I/O events, as OpenSMTPD's ioev. */
#ifndef OSPREY_CONN_H
#define OSPREY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <osprey/tls.h>

struct osp_conn;
struct osp_pool;
struct osp_module_ctx;

/*
 * Events delivered to the connection's callback, on the main thread:
 *   CONNECTED     outgoing connect finished
 *   TLSREADY      TLS handshake done (implicit TLS or STARTTLS)
 *   DATAIN        new bytes are readable (osp_conn_getline/data)
 *   LOWAT         the output buffer drained below the low-water mark
 *   DISCONNECTED  the peer closed (EOF or TLS close_notify); pending input
 *                 may still be read in the handler
 *   TIMEOUT       no input for the read timeout / output stalled for the
 *                 write timeout / connect or handshake took too long
 *   ERROR         I/O or TLS error; osp_conn_error() tells which
 * After DISCONNECTED, TIMEOUT and ERROR the connection delivers no more
 * events; the owner frees it (osp_conn_free) in or after the callback.
 * Freeing inside the callback is allowed.
 */
enum osp_conn_event {
	OSP_CONN_CONNECTED = 1,
	OSP_CONN_TLSREADY,
	OSP_CONN_DATAIN,
	OSP_CONN_LOWAT,
	OSP_CONN_DISCONNECTED,
	OSP_CONN_TIMEOUT,
	OSP_CONN_ERROR,
};

typedef void osp_conn_cb_fn(struct osp_conn *c, enum osp_conn_event ev,
    void *arg);

/* Wraps a connected, accepted socket (made non-blocking). Owns fd.
 * Reading starts at once. Main thread. */
struct osp_conn	*osp_conn_new(int fd, osp_conn_cb_fn *cb, void *arg);
/* Starts a non-blocking connect to `sa`; CONNECTED or ERROR/TIMEOUT follow.
 * `bind_sa` may be NULL. Returns NULL with *err_r = -errno on immediate
 * failure. */
struct osp_conn	*osp_conn_connect(const struct sockaddr *sa, socklen_t salen,
		    const struct sockaddr *bind_sa, socklen_t bind_salen,
		    uint64_t timeout_ms, osp_conn_cb_fn *cb, void *arg,
		    int *err_r);
/* Closes at once: cancels events, frees the pool, closes the fd. Pending
 * output is dropped. NULL is a no-op. */
void		 osp_conn_free(struct osp_conn *c);
/* Stops reading, flushes pending output (and sends TLS close_notify), then
 * frees the connection; no further events reach the callback. The flush
 * has a deadline (the write timeout, else 30 s). */
void		 osp_conn_close(struct osp_conn *c);

void		 osp_conn_set_callback(struct osp_conn *c, osp_conn_cb_fn *cb,
		    void *arg);
/* Pool freed with the connection: session state lives here. */
struct osp_pool	*osp_conn_pool(struct osp_conn *c);
/* Random 64-bit id for log lines (OSP_ID_FMT). */
uint64_t	 osp_conn_id(const struct osp_conn *c);
const struct sockaddr *osp_conn_peer(const struct osp_conn *c,
		    socklen_t *len_r);
const struct sockaddr *osp_conn_local(const struct osp_conn *c,
		    socklen_t *len_r);
/* "192.0.2.7" or "2001:db8::1", valid for the connection's life. */
const char	*osp_conn_peer_str(const struct osp_conn *c);
/* Last error of an ERROR event: OSP_ETLS, -errno, ...; and its text. */
int		 osp_conn_error(const struct osp_conn *c);
const char	*osp_conn_error_str(const struct osp_conn *c);

/* Timeouts in ms, 0 = none. The read timeout restarts on every input
 * and runs while reading and no output is pending (not while paused);
 * the write timeout applies while output is pending and not moving. */
void		 osp_conn_set_timeouts(struct osp_conn *c, uint64_t read_ms,
		    uint64_t write_ms);
/* Largest accepted line (without CRLF) for osp_conn_getline(). Default
 * 4096. */
void		 osp_conn_set_maxline(struct osp_conn *c, size_t max);
/* LOWAT fires when pending output falls to <= lowat after being above.
 * Default 0: whenever written output has fully drained. */
void		 osp_conn_set_lowat(struct osp_conn *c, size_t lowat);
/* Flow control: stop/restart reading from the socket (input stays
 * buffered). Also used for backpressure when output piles up. After
 * resume, DATAIN follows when input is buffered; a peer close seen while
 * paused is reported (DISCONNECTED) after resume. */
void		 osp_conn_pause(struct osp_conn *c);
void		 osp_conn_resume(struct osp_conn *c);

/*
 * Input. osp_conn_getline returns the next complete line without its line
 * ending (LF or CRLF; *crlf_r tells whether the ending was CRLF, may be
 * NULL), NUL-terminated, valid until the next input call; NULL when no
 * complete line is buffered. A line longer than maxline returns NULL
 * with *toolong_r set; the rest of that line is discarded up to its LF.
 */
char		*osp_conn_getline(struct osp_conn *c, size_t *len_r,
		    bool *crlf_r, bool *toolong_r);
/* Raw buffered input, for DATA/BDAT/literals: the bytes and their count. */
const unsigned char *osp_conn_data(struct osp_conn *c, size_t *len_r);
void		 osp_conn_drain(struct osp_conn *c, size_t n);
/* Discards all buffered input (STARTTLS: no plaintext injection). */
void		 osp_conn_discard_input(struct osp_conn *c);

/* Output is buffered and written when the socket allows (a write is
 * attempted before the loop sleeps, so pipelined replies coalesce). */
void		 osp_conn_write(struct osp_conn *c, const void *p, size_t len);
void		 osp_conn_printf(struct osp_conn *c, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));
size_t		 osp_conn_pending(const struct osp_conn *c);

/*
 * TLS. Server side: starts the handshake on the existing stream after
 * discarding buffered input (and any output already flushed first);
 * TLSREADY follows. Client side likewise, with params (copied).
 * Return OSP_OK or a negative error (already in TLS: -EALREADY).
 */
int		 osp_conn_starttls_server(struct osp_conn *c,
		    struct osp_tls_server *srv);
int		 osp_conn_starttls_client(struct osp_conn *c,
		    const struct osp_tls_client_params *params);
bool		 osp_conn_is_tls(const struct osp_conn *c);
/* Strings valid for the connection's life; NULL when not in TLS. */
const char	*osp_conn_tls_version(const struct osp_conn *c);
const char	*osp_conn_tls_cipher(const struct osp_conn *c);
const char	*osp_conn_tls_sni(const struct osp_conn *c);
/* Channel binding data (RFC 9266 tls-exporter, RFC 5929 tls-unique),
 * written into buf; returns its length or a negative error (-ENOTSUP when
 * the type is not available for the negotiated version). */
int		 osp_conn_tls_channel_binding(struct osp_conn *c,
		    const char *type, unsigned char *buf, size_t size);
/* Peer certificate (DER) if one was presented, else NULL. */
const unsigned char *osp_conn_tls_peer_cert(struct osp_conn *c,
		    size_t *len_r);
/* Whether the server's certificate verified against params (client). */
bool		 osp_conn_tls_verified(const struct osp_conn *c);

/* Per-module state slot (nginx's ctx index). */
void		*osp_conn_get_ctx(const struct osp_conn *c,
		    const struct osp_module_ctx *m);
void		 osp_conn_set_ctx(struct osp_conn *c,
		    const struct osp_module_ctx *m, void *data);

#endif
