/* SPDX-License-Identifier: ISC */
/* Event loop, worker pool, buffered connections, TLS and listeners, over
 * real sockets with certificates made by certtool at start. */
#include "core.h"
#include "io_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static struct {
	const char	*dir;
	char		*ca, *srv_cert, *srv_key, *oth_cert, *oth_key;
	bool		 ok;
} certs;


/* A CA, a server certificate for localhost (and 127.0.0.1), and one for
 * other.test, all signed by the CA. ECDSA keys: quick to make. */
static bool
make_certs(void)
{
	const char *d;

	if (certs.ok)
		return true;
	d = certs.dir = osp_test_tmpdir();
	/* osp_test_write_file returns a heap path we do not need. */
	free(osp_test_write_file(d, "ca.tmpl",
	    "cn = \"Osprey Test CA\"\nca\ncert_signing_key\n"
	    "expiration_days = 30\n"));
	free(osp_test_write_file(d, "srv.tmpl",
	    "cn = \"localhost\"\ndns_name = \"localhost\"\n"
	    "ip_address = \"127.0.0.1\"\n"
	    "tls_www_server\nsigning_key\nexpiration_days = 30\n"));
	free(osp_test_write_file(d, "oth.tmpl",
	    "cn = \"other.test\"\ndns_name = \"other.test\"\n"
	    "tls_www_server\nsigning_key\nexpiration_days = 30\n"));
	if (osp_test_sh("cd '%s' && ("
	    "certtool -p --key-type ecdsa --outfile ca.key && "
	    "certtool -s --load-privkey ca.key --template ca.tmpl "
	    "--outfile ca.pem && "
	    "certtool -p --key-type ecdsa --outfile srv.key && "
	    "certtool -c --load-privkey srv.key --load-ca-certificate ca.pem "
	    "--load-ca-privkey ca.key --template srv.tmpl --outfile srv.pem && "
	    "certtool -p --key-type ecdsa --outfile oth.key && "
	    "certtool -c --load-privkey oth.key --load-ca-certificate ca.pem "
	    "--load-ca-privkey ca.key --template oth.tmpl --outfile oth.pem"
	    ") >certtool.log 2>&1", d) != 0) {
		fprintf(stderr, "certtool failed, see %s/certtool.log\n", d);
		return false;
	}
	certs.ca = osp_test_path(d, "ca.pem");
	certs.srv_cert = osp_test_path(d, "srv.pem");
	certs.srv_key = osp_test_path(d, "srv.key");
	certs.oth_cert = osp_test_path(d, "oth.pem");
	certs.oth_key = osp_test_path(d, "oth.key");
	certs.ok = true;
	return true;
}

static struct osp_tls_server *
server_ctx(bool both, const char *priority)
{
	const char *c[2], *k[2];
	struct osp_tls_server *srv;
	const char *error = NULL;

	CU_ASSERT_FATAL(make_certs());
	c[0] = certs.srv_cert;
	k[0] = certs.srv_key;
	c[1] = certs.oth_cert;
	k[1] = certs.oth_key;
	srv = osp_tls_server_new(c, k, both ? 2 : 1, &error);
	if (srv == NULL)
		fprintf(stderr, "tls server: %s\n", error);
	CU_ASSERT_FATAL(srv != NULL);
	if (priority != NULL)
		CU_ASSERT_FATAL(osp_tls_server_set_priority(srv, priority,
		    &error) == OSP_OK);
	return srv;
}

static bool timed_out;

static void
guard_cb(void *arg)
{
	timed_out = true;
	osp_event_exit();
}

/* Runs the loop until a handler calls osp_event_exit(), at most ms. */
static void
run_loop(uint64_t ms)
{
	struct osp_timer *g = osp_timer_new(guard_cb, NULL);

	timed_out = false;
	osp_timer_add(g, ms);
	osp_event_run();
	osp_timer_free(g);
}

/* A fresh loop; one left by a failed test is dropped first. */
static void
loop_init(void)
{
	osp_event_deinit();
	CU_ASSERT_FATAL(osp_event_init(1) == OSP_OK);
}

static void
pair(int sv[2])
{
	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sv) == 0);
}

/* Event history of one connection. */
#define MAXEV 64
struct evlog {
	int		 ev[MAXEV];
	size_t		 n;
	char		 lines[32][128];
	bool		 crlf[32];
	size_t		 nlines;
	size_t		 toolong;
	struct osp_conn	*c;
	bool		 exit_on_disc;
	int		 err;
};

static void
evlog_add(struct evlog *l, enum osp_conn_event ev)
{
	if (l->n < MAXEV)
		l->ev[l->n++] = ev;
}

static bool
evlog_has(const struct evlog *l, enum osp_conn_event ev)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (l->ev[i] == (int)ev)
			return true;
	return false;
}

static void
read_lines(struct osp_conn *c, struct evlog *l)
{
	char *line;
	size_t len;
	bool crlf, toolong;

	for (;;) {
		line = osp_conn_getline(c, &len, &crlf, &toolong);
		if (line == NULL && toolong) {
			l->toolong++;
			if (l->nlines < 32)
				snprintf(l->lines[l->nlines++], 128,
				    "<TOOLONG>");
			continue;
		}
		if (line == NULL)
			break;
		CU_ASSERT(strlen(line) == len);
		if (l->nlines < 32) {
			l->crlf[l->nlines] = crlf;
			snprintf(l->lines[l->nlines++], 128, "%s", line);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Timers, defer, clock                                                 */

static char order[128];
static uint64_t now_a1, now_a2, now_b;

static void
rec(const char *s)
{
	strncat(order, s, sizeof(order) - strlen(order) - 1);
}

static void d3(void *arg) { rec("D3 "); }
static void d1(void *arg) { rec("D1 "); osp_event_defer(d3, NULL); }
static void d2(void *arg) { rec("D2 "); }
static void z(void *arg) { rec("Z"); osp_event_exit(); }

static struct osp_timer *timer_a_t;

/* A is armed from B so that they always run in different passes. */
static void
timer_b(void *arg)
{
	rec("B ");
	now_b = osp_now_ms();
	osp_timer_add(timer_a_t, 15);
}

static void
timer_a(void *arg)
{
	struct osp_timer **zt = arg;
	struct timespec ts = { 0, 3 * 1000 * 1000 };

	rec("A ");
	now_a1 = osp_now_ms();
	osp_event_defer(d1, NULL);
	osp_event_defer(d2, NULL);
	osp_timer_add(*zt, 0);
	nanosleep(&ts, NULL);
	/* Cached for the whole pass. */
	now_a2 = osp_now_ms();
	rec("Aend ");
}

static void
test_timers_defer(void)
{
	struct osp_timer *a, *b, *zt;

	loop_init();
	order[0] = '\0';
	zt = osp_timer_new(z, NULL);
	a = timer_a_t = osp_timer_new(timer_a, &zt);
	b = osp_timer_new(timer_b, NULL);
	osp_timer_add(b, 5);
	run_loop(2000);
	CU_ASSERT(!timed_out);
	CU_ASSERT_STRING_EQUAL(order, "B A Aend D1 D2 D3 Z");
	CU_ASSERT(now_a1 == now_a2);
	CU_ASSERT(now_a1 >= now_b + 10);
	/* A deleted timer does not fire. */
	order[0] = '\0';
	osp_timer_add(b, 5);
	osp_timer_del(b);
	osp_timer_add(zt, 20);
	run_loop(2000);
	CU_ASSERT_STRING_EQUAL(order, "Z");
	osp_timer_free(a);
	osp_timer_free(b);
	osp_timer_free(zt);
	osp_event_deinit();
}

/* ------------------------------------------------------------------ */
/* Worker pool                                                          */

#define NJOBS 64
static pthread_t main_thread;
static int work_on_main, done_off_main, ndone, nwork;
static pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;

static void
job_work(void *arg)
{
	struct timespec ts = { 0, 200 * 1000 };

	if (pthread_equal(pthread_self(), main_thread))
		work_on_main++;
	nanosleep(&ts, NULL);
	pthread_mutex_lock(&wlock);
	nwork++;
	pthread_mutex_unlock(&wlock);
	*(int *)arg *= 2;
}

static void
job_done(void *arg)
{
	if (!pthread_equal(pthread_self(), main_thread))
		done_off_main++;
	CU_ASSERT(*(int *)arg % 2 == 0);
	if (++ndone == NJOBS)
		osp_event_exit();
}

static void
test_worker_pool(void)
{
	static int vals[NJOBS];
	int i;

	main_thread = pthread_self();
	work_on_main = done_off_main = ndone = nwork = 0;
	osp_event_deinit();
	CU_ASSERT_FATAL(osp_event_init(3) == OSP_OK);
	for (i = 0; i < NJOBS; i++) {
		vals[i] = i + 1;
		osp_worker_submit(job_work, job_done, &vals[i]);
	}
	run_loop(5000);
	CU_ASSERT(!timed_out);
	CU_ASSERT_EQUAL(ndone, NJOBS);
	CU_ASSERT_EQUAL(work_on_main, 0);
	CU_ASSERT_EQUAL(done_off_main, 0);
	/* Drain at deinit: pairs submitted and never waited for still run. */
	ndone = nwork = 0;
	for (i = 0; i < NJOBS; i++) {
		vals[i] = i + 1;
		osp_worker_submit(job_work, job_done, &vals[i]);
	}
	osp_event_deinit();
	CU_ASSERT_EQUAL(nwork, NJOBS);
	CU_ASSERT_EQUAL(ndone, NJOBS);
	CU_ASSERT_EQUAL(done_off_main, 0);
	for (i = 0; i < NJOBS; i++)
		CU_ASSERT_EQUAL(vals[i], 2 * (i + 1));
}

/* ------------------------------------------------------------------ */
/* Line reading                                                         */

static void
line_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct evlog *l = arg;

	evlog_add(l, ev);
	if (ev == OSP_CONN_DATAIN)
		read_lines(c, l);
	if (ev == OSP_CONN_DISCONNECTED) {
		read_lines(c, l);
		osp_conn_free(c);
		l->c = NULL;
		osp_event_exit();
	}
}

struct feeder {
	int			 fd;
	const char *const	*chunks;
	size_t			 i;
	struct osp_timer	*t;
};

/* Writes one chunk per timer tick so that reads split where we want. */
static void
feed_cb(void *arg)
{
	struct feeder *f = arg;
	const char *s = f->chunks[f->i];

	if (s == NULL) {
		close(f->fd);
		f->fd = -1;
		return;
	}
	CU_ASSERT(write(f->fd, s, strlen(s)) == (ssize_t)strlen(s));
	f->i++;
	osp_timer_add(f->t, 3);
}

static void
test_getline(void)
{
	static const char *const chunks[] = {
		"HELO a\r\nLF only\n",
		"par", "tial\r\n",
		"0123456789abcdef\r",		/* exactly maxline, CR split */
		"\nxxxxxxxxxx", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		"yyyyyyyy\r\nnext\r\n",
		"toolong-with-lf-in-one-read-xxxxxxxxxx\nlast\r\n",
		NULL,
	};
	static const char *const want[] = {
		"HELO a", "LF only", "partial", "0123456789abcdef",
		"<TOOLONG>", "next", "<TOOLONG>", "last",
	};
	struct evlog l = { 0 };
	struct feeder f;
	int sv[2];
	size_t i;

	loop_init();
	pair(sv);
	l.c = osp_conn_new(sv[0], line_cb, &l);
	osp_conn_set_maxline(l.c, 16);
	f.fd = sv[1];
	f.chunks = chunks;
	f.i = 0;
	f.t = osp_timer_new(feed_cb, &f);
	osp_timer_add(f.t, 1);
	run_loop(3000);
	CU_ASSERT(!timed_out);
	CU_ASSERT_EQUAL(l.nlines, sizeof(want) / sizeof(want[0]));
	for (i = 0; i < l.nlines && i < sizeof(want) / sizeof(want[0]); i++)
		CU_ASSERT_STRING_EQUAL(l.lines[i], want[i]);
	CU_ASSERT(l.crlf[0]);
	CU_ASSERT(!l.crlf[1]);
	CU_ASSERT(evlog_has(&l, OSP_CONN_DISCONNECTED));
	osp_timer_free(f.t);
	osp_event_deinit();
}

/* Pause: input stays buffered, no DATAIN; resume delivers it. */
static int pause_datain;

static void
pause_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	if (ev == OSP_CONN_DATAIN) {
		pause_datain++;
		osp_event_exit();
	}
}

static void
exit_cb(void *arg)
{
	osp_event_exit();
}

static void
test_pause_resume(void)
{
	struct osp_timer *t;
	struct osp_conn *c;
	const unsigned char *d;
	size_t len;
	int sv[2];

	loop_init();
	pair(sv);
	pause_datain = 0;
	c = osp_conn_new(sv[0], pause_cb, NULL);
	osp_conn_pause(c);
	CU_ASSERT(write(sv[1], "abc\r\n", 5) == 5);
	t = osp_timer_new(exit_cb, NULL);
	osp_timer_add(t, 30);
	run_loop(2000);
	CU_ASSERT_EQUAL(pause_datain, 0);
	osp_conn_resume(c);
	run_loop(2000);
	CU_ASSERT(!timed_out);
	CU_ASSERT_EQUAL(pause_datain, 1);
	d = osp_conn_data(c, &len);
	CU_ASSERT(len == 5 && memcmp(d, "abc\r\n", 5) == 0);
	osp_conn_drain(c, 3);
	d = osp_conn_data(c, &len);
	CU_ASSERT(len == 2 && memcmp(d, "\r\n", 2) == 0);
	/* Input arriving after the resume is still watched (the read event
	 * must be registered although it was made active). */
	CU_ASSERT(write(sv[1], "def", 3) == 3);
	run_loop(2000);
	CU_ASSERT(!timed_out);
	CU_ASSERT_EQUAL(pause_datain, 2);
	osp_conn_free(c);
	close(sv[1]);
	osp_timer_free(t);
	osp_event_deinit();
}

/* ------------------------------------------------------------------ */
/* Disconnect, timeouts, backpressure                                   */

static void
disc_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct evlog *l = arg;
	const unsigned char *d;
	size_t len;

	evlog_add(l, ev);
	if (ev == OSP_CONN_DISCONNECTED || ev == OSP_CONN_TIMEOUT ||
	    ev == OSP_CONN_ERROR) {
		/* Pending input is still readable. */
		d = osp_conn_data(c, &len);
		if (len == 3 && memcmp(d, "abc", 3) == 0)
			l->nlines = 1;
		l->err = osp_conn_error(c);
		osp_conn_free(c);	/* inside the callback */
		osp_event_exit();
	}
}

static void
test_peer_close(void)
{
	struct evlog l = { 0 };
	int sv[2];

	loop_init();
	pair(sv);
	osp_conn_new(sv[0], disc_cb, &l);
	CU_ASSERT(write(sv[1], "abc", 3) == 3);
	close(sv[1]);
	run_loop(2000);
	CU_ASSERT(!timed_out);
	CU_ASSERT(evlog_has(&l, OSP_CONN_DISCONNECTED));
	CU_ASSERT_EQUAL(l.nlines, 1);
	CU_ASSERT_EQUAL(l.ev[l.n - 1], OSP_CONN_DISCONNECTED);
	osp_event_deinit();
}

static void
test_read_timeout(void)
{
	struct evlog l = { 0 };
	struct osp_conn *c;
	uint64_t t0;
	int sv[2];

	loop_init();
	pair(sv);
	c = osp_conn_new(sv[0], disc_cb, &l);
	osp_conn_set_timeouts(c, 60, 0);
	t0 = osp_now_ms();
	run_loop(2000);
	CU_ASSERT(!timed_out);
	CU_ASSERT(evlog_has(&l, OSP_CONN_TIMEOUT));
	CU_ASSERT_EQUAL(l.err, -ETIMEDOUT);
	CU_ASSERT(osp_now_ms() - t0 >= 55);
	close(sv[1]);
	osp_event_deinit();
}

#define BIG (4 * 1024 * 1024)
static struct {
	int		 fd;
	size_t		 got;
	bool		 bad;
	int		 lowat;
	size_t		 pending_at_lowat;
	struct osp_timer *t;
} slow;

static void
slow_read(void *arg)
{
	unsigned char buf[65536];
	ssize_t n;
	size_t i;

	n = read(slow.fd, buf, sizeof(buf));
	for (i = 0; n > 0 && i < (size_t)n; i++)
		if (buf[i] != (unsigned char)((slow.got + i) % 251))
			slow.bad = true;
	if (n > 0)
		slow.got += (size_t)n;
	if (slow.got == BIG && slow.lowat > 0)
		osp_event_exit();
	else
		osp_timer_add(slow.t, 1);
}

static void
lowat_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	if (ev == OSP_CONN_LOWAT) {
		slow.lowat++;
		slow.pending_at_lowat = osp_conn_pending(c);
		if (slow.got == BIG)
			osp_event_exit();
	}
}

static void
test_lowat(void)
{
	unsigned char *big;
	struct osp_conn *c;
	int sv[2];
	size_t i;

	loop_init();
	pair(sv);
	memset(&slow, 0, sizeof(slow));
	slow.fd = sv[1];
	c = osp_conn_new(sv[0], lowat_cb, NULL);
	osp_conn_set_lowat(c, 128 * 1024);
	osp_conn_set_timeouts(c, 0, 5000);
	big = malloc(BIG);
	for (i = 0; i < BIG; i++)
		big[i] = (unsigned char)(i % 251);
	osp_conn_write(c, big, BIG);
	free(big);
	CU_ASSERT(osp_conn_pending(c) == BIG);
	slow.t = osp_timer_new(slow_read, NULL);
	osp_timer_add(slow.t, 1);
	run_loop(8000);
	CU_ASSERT(!timed_out);
	CU_ASSERT_EQUAL(slow.got, BIG);
	CU_ASSERT(!slow.bad);
	CU_ASSERT_EQUAL(slow.lowat, 1);
	CU_ASSERT(slow.pending_at_lowat <= 128 * 1024);
	CU_ASSERT_EQUAL(osp_conn_pending(c), 0);
	osp_conn_free(c);
	osp_timer_free(slow.t);
	close(sv[1]);
	osp_event_deinit();
}

/* Writing then freeing inside the callback: the deferred flush must not
 * touch freed memory (ASan checks). */
static void
free_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	int *n = arg;

	if (ev != OSP_CONN_DATAIN)
		return;
	osp_conn_printf(c, "bye\r\n");
	osp_conn_free(c);
	osp_conn_free(NULL);
	(*n)++;
}

static void
test_free_in_callback(void)
{
	struct osp_timer *t;
	int sv[2], n = 0;

	loop_init();
	pair(sv);
	osp_conn_new(sv[0], free_cb, &n);
	CU_ASSERT(write(sv[1], "x\r\n", 3) == 3);
	t = osp_timer_new(exit_cb, NULL);
	osp_timer_add(t, 30);
	run_loop(2000);
	CU_ASSERT_EQUAL(n, 1);
	osp_timer_free(t);
	close(sv[1]);
	osp_event_deinit();
}

static void
refused_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	int *err = arg;

	*err = ev == OSP_CONN_ERROR ? osp_conn_error(c) : -1;
	osp_conn_free(c);
	osp_event_exit();
}

static uint16_t free_port(void);

static void
test_connect_refused(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct osp_conn *c;
	int err = 0, rerr = 0;

	loop_init();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(free_port());
	c = osp_conn_connect((struct sockaddr *)&sin, sizeof(sin), NULL, 0,
	    2000, refused_cb, &rerr, &err);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT_STRING_EQUAL(osp_conn_peer_str(c), "127.0.0.1");
	run_loop(3000);
	CU_ASSERT(!timed_out);
	CU_ASSERT_EQUAL(rerr, -ECONNREFUSED);
	osp_event_deinit();
}

/* ------------------------------------------------------------------ */
/* TLS                                                                  */

struct tls_side {
	struct osp_conn	*c;
	bool		 ready, failed, got;
	char		 line[128];
	struct tls_side	*peer;
	unsigned char	 exp[64], uniq[64];
	int		 exp_len, uniq_len;
	const char	*version;
	bool		 verified;
	const char	*sni;
	size_t		 certlen;
	bool		 server;
	char		 err[256];
	int		 done;
};

static int tls_finished;

static void
tls_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct tls_side *s = arg;
	char *line;

	switch (ev) {
	case OSP_CONN_TLSREADY:
		s->ready = true;
		s->version = osp_conn_tls_version(c);
		s->verified = osp_conn_tls_verified(c);
		s->sni = osp_conn_tls_sni(c);
		(void)osp_conn_tls_peer_cert(c, &s->certlen);
		s->exp_len = osp_conn_tls_channel_binding(c, "tls-exporter",
		    s->exp, sizeof(s->exp));
		s->uniq_len = osp_conn_tls_channel_binding(c, "tls-unique",
		    s->uniq, sizeof(s->uniq));
		if (!s->server)
			osp_conn_printf(c, "ping\r\n");
		break;
	case OSP_CONN_DATAIN:
		while ((line = osp_conn_getline(c, NULL, NULL, NULL)) !=
		    NULL) {
			snprintf(s->line, sizeof(s->line), "%s", line);
			s->got = true;
			if (s->server)
				osp_conn_printf(c, "pong\r\n");
			else if (++tls_finished >= 1)
				osp_event_exit();
		}
		break;
	case OSP_CONN_LOWAT:
	case OSP_CONN_CONNECTED:
		break;
	default:
		s->failed = true;
		snprintf(s->err, sizeof(s->err), "ev %d %s: %s", (int)ev,
		    s->server ? "server" : "client", osp_conn_error_str(c));
		if (++tls_finished >= 1)
			osp_event_exit();
		break;
	}
}

/* Handshake over a socketpair, both ends ours. */
static void
tls_pair(struct osp_tls_server *srv, const char *sni, bool verify,
    struct tls_side *ss, struct tls_side *cs)
{
	struct osp_tls_client_params p = { 0 };
	int sv[2];

	memset(ss, 0, sizeof(*ss));
	memset(cs, 0, sizeof(*cs));
	ss->server = true;
	tls_finished = 0;
	pair(sv);
	ss->c = osp_conn_new(sv[0], tls_cb, ss);
	cs->c = osp_conn_new(sv[1], tls_cb, cs);
	p.server_name = sni;
	p.verify = verify;
	p.cafile = certs.ca;
	CU_ASSERT_FATAL(osp_conn_starttls_server(ss->c, srv) == OSP_OK);
	CU_ASSERT_FATAL(osp_conn_starttls_client(cs->c, &p) == OSP_OK);
	CU_ASSERT(osp_conn_starttls_client(cs->c, &p) == -EALREADY);
	run_loop(5000);
	CU_ASSERT(!timed_out);
}

static void
test_tls_handshake(void)
{
	struct osp_tls_server *srv;
	struct tls_side ss, cs;

	loop_init();
	srv = server_ctx(false, NULL);
	tls_pair(srv, "localhost", true, &ss, &cs);
	CU_ASSERT(ss.ready && cs.ready);
	if (cs.failed)
		fprintf(stderr, "%s\n", cs.err);
	if (ss.failed)
		fprintf(stderr, "%s\n", ss.err);
	CU_ASSERT(!ss.failed && !cs.failed);
	CU_ASSERT_STRING_EQUAL(cs.line, "pong");
	CU_ASSERT_STRING_EQUAL(ss.line, "ping");
	CU_ASSERT(cs.verified);
	CU_ASSERT(cs.certlen > 100);
	CU_ASSERT(ss.certlen == 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cs.version);
	CU_ASSERT(strcmp(cs.version, "TLS1.3") == 0 ||
	    strcmp(cs.version, "TLS1.2") == 0);
	CU_ASSERT_PTR_NOT_NULL(osp_conn_tls_cipher(cs.c));
	CU_ASSERT_STRING_EQUAL(ss.sni != NULL ? ss.sni : "", "localhost");
	/* RFC 9266: 32 bytes, the same on both ends. */
	CU_ASSERT_EQUAL(cs.exp_len, 32);
	CU_ASSERT(ss.exp_len == cs.exp_len &&
	    memcmp(ss.exp, cs.exp, 32) == 0);
	if (strcmp(cs.version, "TLS1.3") == 0)
		CU_ASSERT_EQUAL(cs.uniq_len, -ENOTSUP);
	CU_ASSERT(osp_conn_tls_channel_binding(cs.c, "tls-bogus", cs.exp,
	    sizeof(cs.exp)) == -ENOTSUP);
	osp_conn_free(ss.c);
	osp_conn_free(cs.c);

	/* TLS 1.2 forced by the server: tls-unique works too. */
	osp_tls_server_free(srv);
	srv = server_ctx(false, "NORMAL:-VERS-ALL:+VERS-TLS1.2");
	tls_pair(srv, "localhost", true, &ss, &cs);
	CU_ASSERT(ss.ready && cs.ready && !cs.failed);
	CU_ASSERT_STRING_EQUAL(cs.version != NULL ? cs.version : "",
	    "TLS1.2");
	CU_ASSERT(cs.uniq_len > 0 && cs.uniq_len == ss.uniq_len &&
	    memcmp(cs.uniq, ss.uniq, (size_t)cs.uniq_len) == 0);
	CU_ASSERT(cs.exp_len == 32 && ss.exp_len == 32 &&
	    memcmp(cs.exp, ss.exp, 32) == 0);
	osp_conn_free(ss.c);
	osp_conn_free(cs.c);
	osp_tls_server_free(srv);
	osp_event_deinit();
}

static void
test_tls_sni(void)
{
	struct osp_tls_server *srv;
	struct tls_side ss, cs;

	CU_ASSERT(osp_tls_name_match("*.example.com", "a.example.com"));
	CU_ASSERT(osp_tls_name_match("Mail.Example.COM", "mail.example.com"));
	CU_ASSERT(!osp_tls_name_match("*.example.com", "a.b.example.com"));
	CU_ASSERT(!osp_tls_name_match("*.example.com", "example.com"));
	CU_ASSERT(!osp_tls_name_match("*.com", "example.com"));
	CU_ASSERT(!osp_tls_name_match("a.example.com", "b.example.com"));

	loop_init();
	srv = server_ctx(true, NULL);
	CU_ASSERT_STRING_EQUAL(osp_tls_server_cert_name(srv, 0), "localhost");
	CU_ASSERT_STRING_EQUAL(osp_tls_server_cert_name(srv, 1),
	    "other.test");
	/* The second certificate, chosen by SNI; verified for its name. */
	tls_pair(srv, "other.test", true, &ss, &cs);
	CU_ASSERT(cs.ready && !cs.failed && cs.verified);
	CU_ASSERT_STRING_EQUAL(ss.sni != NULL ? ss.sni : "", "other.test");
	CU_ASSERT_STRING_EQUAL(cs.line, "pong");
	osp_conn_free(ss.c);
	osp_conn_free(cs.c);
	/* No match: the first certificate, which fails verification for
	 * the requested name: ERROR. */
	tls_pair(srv, "nomatch.test", true, &ss, &cs);
	CU_ASSERT(cs.failed);
	CU_ASSERT(strstr(cs.err, "verif") != NULL);
	osp_conn_free(ss.c);
	osp_conn_free(cs.c);
	/* Same without verify: the handshake succeeds, unverified. */
	tls_pair(srv, "nomatch.test", false, &ss, &cs);
	CU_ASSERT(cs.ready && !cs.failed && !cs.verified);
	osp_conn_free(ss.c);
	osp_conn_free(cs.c);
	osp_tls_server_free(srv);
	osp_event_deinit();
}

/* STARTTLS: plaintext pipelined after the command is discarded. */
static struct {
	struct osp_tls_server	*srv;
	bool			 srv_ready, cli_ready;
	char			 after[8][64];
	size_t			 nafter;
	bool			 injected;
	struct osp_conn		*sc, *cc;
} st;

static void
st_server_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	char *line;

	if (ev == OSP_CONN_TLSREADY) {
		st.srv_ready = true;
		return;
	}
	if (ev == OSP_CONN_LOWAT)
		return;
	if (ev != OSP_CONN_DATAIN) {
		osp_event_exit();
		return;
	}
	while ((line = osp_conn_getline(c, NULL, NULL, NULL)) != NULL) {
		if (!st.srv_ready && strcmp(line, "STARTTLS") == 0) {
			osp_conn_printf(c, "220 go ahead\r\n");
			CU_ASSERT(osp_conn_starttls_server(c, st.srv) ==
			    OSP_OK);
			continue;
		}
		if (strcmp(line, "INJECT") == 0)
			st.injected = true;
		if (st.srv_ready && st.nafter < 8) {
			snprintf(st.after[st.nafter++], 64, "%s", line);
			if (strcmp(line, "HELLO") == 0)
				osp_event_exit();
		}
	}
}

static void
st_client_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct osp_tls_client_params p = { 0 };
	char *line;

	if (ev == OSP_CONN_TLSREADY) {
		st.cli_ready = true;
		osp_conn_printf(c, "HELLO\r\n");
		return;
	}
	if (ev == OSP_CONN_LOWAT)
		return;
	if (ev != OSP_CONN_DATAIN) {
		osp_event_exit();
		return;
	}
	while ((line = osp_conn_getline(c, NULL, NULL, NULL)) != NULL) {
		if (strncmp(line, "220", 3) == 0) {
			p.server_name = "localhost";
			p.verify = true;
			p.cafile = certs.ca;
			CU_ASSERT(osp_conn_starttls_client(c, &p) == OSP_OK);
		}
	}
}

static void
test_starttls_injection(void)
{
	int sv[2];

	loop_init();
	memset(&st, 0, sizeof(st));
	st.srv = server_ctx(false, NULL);
	pair(sv);
	st.sc = osp_conn_new(sv[0], st_server_cb, NULL);
	st.cc = osp_conn_new(sv[1], st_client_cb, NULL);
	/* One write: the server reads both lines at once. */
	osp_conn_write(st.cc, "STARTTLS\r\nINJECT\r\n", 18);
	run_loop(5000);
	CU_ASSERT(!timed_out);
	CU_ASSERT(st.srv_ready && st.cli_ready);
	CU_ASSERT(!st.injected);
	CU_ASSERT_EQUAL(st.nafter, 1);
	CU_ASSERT_STRING_EQUAL(st.after[0], "HELLO");
	CU_ASSERT(osp_conn_is_tls(st.sc));
	osp_conn_free(st.sc);
	osp_conn_free(st.cc);
	osp_tls_server_free(st.srv);
	osp_event_deinit();
}

static void
test_tls_garbage(void)
{
	static const char junk[] = "GET / HTTP/1.0\r\nHost: x\r\n\r\n"
	    "\x16\x03\x01\xff\xff garbage garbage garbage";
	struct osp_tls_server *srv;
	struct evlog l = { 0 };
	struct osp_conn *c;
	int sv[2];

	loop_init();
	srv = server_ctx(false, NULL);
	pair(sv);
	c = osp_conn_new(sv[0], disc_cb, &l);
	CU_ASSERT(osp_conn_starttls_server(c, srv) == OSP_OK);
	CU_ASSERT(write(sv[1], junk, sizeof(junk) - 1) ==
	    (ssize_t)sizeof(junk) - 1);
	run_loop(3000);
	CU_ASSERT(!timed_out);
	CU_ASSERT(evlog_has(&l, OSP_CONN_ERROR));
	CU_ASSERT_EQUAL(l.err, OSP_ETLS);
	close(sv[1]);
	osp_tls_server_free(srv);
	osp_event_deinit();
}

static void
test_tls_handshake_timeout(void)
{
	struct osp_tls_server *srv;
	struct evlog l = { 0 };
	struct osp_conn *c;
	int sv[2];

	loop_init();
	srv = server_ctx(false, NULL);
	pair(sv);
	c = osp_conn_new(sv[0], disc_cb, &l);
	osp_conn_set_handshake_timeout(c, 50);
	CU_ASSERT(osp_conn_starttls_server(c, srv) == OSP_OK);
	run_loop(3000);
	CU_ASSERT(!timed_out);
	CU_ASSERT(evlog_has(&l, OSP_CONN_TIMEOUT));
	close(sv[1]);
	osp_tls_server_free(srv);
	osp_event_deinit();
}

/* ------------------------------------------------------------------ */
/* Listeners                                                            */

static struct osp_module test_mod = { .abi = OSP_MODULE_ABI,
    .name = "testproto" };
static struct osp_module_ctx test_ctx = { .mod = &test_mod, .index = 0 };

static struct {
	int			 accepted;
	bool			 was_tls;
	char			 li_name[32];
	size_t			 active_during;
	bool			 client_got, server_disc;
	struct osp_conn		*cli;
	int			 slot;
} ls;

static void
ls_server_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	if (ev == OSP_CONN_DISCONNECTED || ev == OSP_CONN_ERROR ||
	    ev == OSP_CONN_TIMEOUT) {
		ls.server_disc = true;
		CU_ASSERT(osp_conn_get_ctx(c, &test_ctx) == &ls.slot);
		osp_conn_free(c);
		osp_event_exit();
	}
}

static void
ls_accept(struct osp_conn *c, const struct osp_listener_info *li, void *arg)
{
	ls.accepted++;
	ls.was_tls = osp_conn_is_tls(c);
	snprintf(ls.li_name, sizeof(ls.li_name), "%s", li->name);
	ls.active_during = osp_listeners_active();
	osp_conn_set_ctx(c, &test_ctx, &ls.slot);
	osp_conn_set_callback(c, ls_server_cb, NULL);
	osp_conn_printf(c, "hello %s\r\n", li->name);
}

static void
ls_client_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct osp_tls_client_params p = { 0 };
	char *line;

	switch (ev) {
	case OSP_CONN_CONNECTED:
		p.server_name = "127.0.0.1";
		p.verify = true;
		p.cafile = certs.ca;
		CU_ASSERT(osp_conn_starttls_client(c, &p) == OSP_OK);
		break;
	case OSP_CONN_TLSREADY:
		CU_ASSERT(osp_conn_tls_verified(c));
		break;
	case OSP_CONN_DATAIN:
		line = osp_conn_getline(c, NULL, NULL, NULL);
		if (line != NULL && strcmp(line, "hello test") == 0) {
			ls.client_got = true;
			/* Closing makes the server see DISCONNECTED. */
			osp_conn_close(c);
			ls.cli = NULL;
		}
		break;
	default:
		fprintf(stderr, "client: %s\n", osp_conn_error_str(c));
		osp_conn_free(c);
		ls.cli = NULL;
		osp_event_exit();
		break;
	}
}

/* A port free right now on 127.0.0.1. */
static uint16_t
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static struct osp_config *
listener_gen(const char *name, const char *proto, uint16_t port, int tls,
    struct osp_tls_server *srv)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_config *gen = osp_pcalloc(pool, 1, sizeof(*gen));
	struct osp_core_listener *l = osp_pcalloc(pool, 1, sizeof(*l));
	struct osp_conf_addr *a = osp_pcalloc(pool, 1, sizeof(*a));
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

	gen->refs = 1;
	gen->pool = pool;
	gen->file = "test.yaml";
	gen->tls = srv;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->len = sizeof(*sin);
	a->text = "127.0.0.1";
	l->name = name;
	l->protocol = proto;
	l->port = port;
	l->tls = tls;
	l->address.n = 1;
	l->address.items = a;
	gen->core.listeners.n = 1;
	gen->core.listeners.items = l;
	return gen;
}

static void
test_listener(void)
{
	struct osp_tls_server *srv;
	struct osp_config *gen, *bad;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	const char *error = NULL;
	char want[128];
	uint16_t port;
	int err;

	loop_init();
	memset(&ls, 0, sizeof(ls));
	srv = server_ctx(false, NULL);
	/* Registration happens only inside init(): refused, then opened. */
	CU_ASSERT(osp_listener_add(&test_ctx, ls_accept, NULL) == -EPERM);
	osp_module_set_registering(&test_ctx);
	CU_ASSERT(osp_listener_add(&test_ctx, ls_accept, NULL) == OSP_OK);
	CU_ASSERT(osp_listener_add(&test_ctx, ls_accept, NULL) == -EEXIST);
	osp_module_set_registering(NULL);

	/* A protocol nobody serves. */
	bad = listener_gen("x", "nosuchproto", 0, OSP_LISTENER_TLS_NONE, NULL);
	CU_ASSERT(osp_listeners_bind(bad, &error) != OSP_OK);
	CU_ASSERT(error != NULL && strstr(error, "listener x:") != NULL &&
	    strstr(error, "nosuchproto") != NULL);
	osp_config_unref(bad);

	port = free_port();
	gen = listener_gen("test", "testproto", port,
	    OSP_LISTENER_TLS_IMPLICIT, srv);
	CU_ASSERT_FATAL(osp_listeners_bind(gen, &error) == OSP_OK);
	/* The same port again: the error names listener and address. */
	bad = listener_gen("dup", "testproto", port, OSP_LISTENER_TLS_NONE,
	    NULL);
	CU_ASSERT(osp_listeners_bind(bad, &error) != OSP_OK);
	snprintf(want, sizeof(want), "listener dup: bind 127.0.0.1:%u: "
	    "Address already in use", port);
	CU_ASSERT_STRING_EQUAL(error, want);
	osp_config_unref(bad);

	osp_listeners_start();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	ls.cli = osp_conn_connect((struct sockaddr *)&sin, sizeof(sin), NULL,
	    0, 2000, ls_client_cb, NULL, &err);
	CU_ASSERT_FATAL(ls.cli != NULL);
	run_loop(5000);
	CU_ASSERT(!timed_out);
	CU_ASSERT_EQUAL(ls.accepted, 1);
	CU_ASSERT(ls.was_tls);
	CU_ASSERT_STRING_EQUAL(ls.li_name, "test");
	CU_ASSERT_EQUAL(ls.active_during, 1);
	CU_ASSERT(ls.client_got);
	CU_ASSERT(ls.server_disc);
	CU_ASSERT_EQUAL(osp_listeners_active(), 0);
	osp_listeners_stop();
	osp_listeners_close_all();
	osp_listener_remove_module(&test_ctx);
	osp_config_unref(gen);
	osp_tls_server_free(srv);
	osp_event_deinit();
}

static void
test_tls_config_errors(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	struct osp_core_cert *cc;
	char *file, *yaml, *want;

	CU_ASSERT_FATAL(make_certs());
	/* A real parsed file, so the error carries the entry's position. */
	if (asprintf(&yaml, "tls:\n  certificates:\n"
	    "    - cert: %s\n      key: %s\n"
	    "    - cert: /nonexistent/cert.pem\n      key: %s\n",
	    certs.srv_cert, certs.srv_key, certs.oth_key) < 0)
		abort();
	file = osp_test_write_file(osp_test_tmpdir(), "tls.yaml", yaml);
	free(yaml);
	gen = osp_config_parse(file, &errs);
	CU_ASSERT_FATAL(gen != NULL && errs.n == 0);
	CU_ASSERT(osp_tls_config_load(gen, &errs) == OSP_ECONFIG);
	CU_ASSERT_EQUAL(errs.n, 1);
	if (asprintf(&want, "%s:5:7: tls.certificates[1].cert: ", file) < 0)
		abort();
	if (errs.text.data != NULL && strncmp(errs.text.data, want,
	    strlen(want)) != 0)
		fprintf(stderr, "got: %s\nwant prefix: %s\n", errs.text.data,
		    want);
	CU_ASSERT(errs.text.data != NULL &&
	    strncmp(errs.text.data, want, strlen(want)) == 0 &&
	    strstr(errs.text.data, "/nonexistent/cert.pem") != NULL);
	free(want);
	CU_ASSERT_PTR_NULL(gen->tls);
	osp_conf_errs_deinit(&errs);
	/* Key of another certificate. */
	memset(&errs, 0, sizeof(errs));
	cc = &OSP_CONF_ITEM(&gen->core.tls.certificates, struct osp_core_cert, 1);
	cc->cert = certs.srv_cert;
	CU_ASSERT(osp_tls_config_load(gen, &errs) == OSP_ECONFIG);
	CU_ASSERT(errs.text.data != NULL &&
	    strstr(errs.text.data, "does not match") != NULL);
	osp_conf_errs_deinit(&errs);
	/* Valid, TLS 1.3 only: freed with the generation. */
	memset(&errs, 0, sizeof(errs));
	cc->cert = certs.oth_cert;
	gen->core.tls.min_version = OSP_TLS_1_3;
	CU_ASSERT(osp_tls_config_load(gen, &errs) == OSP_OK);
	CU_ASSERT_EQUAL(errs.n, 0);
	CU_ASSERT_PTR_NOT_NULL(gen->tls);
	osp_conf_errs_deinit(&errs);
	osp_config_unref(gen);
	free(file);
}

/* ------------------------------------------------------------------ */
/* Lingering close                                                      */

struct linger_client {
	int		 fd;
	char		 reply[64];
	ssize_t		 got;
	ssize_t		 sent2;		/* second write, after our close */
	int		 err;
};

/* The client writes before reading (as a pipelining or impatient
 * client), keeps writing after the server closed, then reads. */
static void *
linger_client_main(void *arg)
{
	struct linger_client *lc = arg;
	static char junk[128 * 1024];
	size_t off = 0;
	ssize_t n;

	memset(junk, 'x', sizeof(junk));
	(void)send(lc->fd, junk, sizeof(junk), MSG_NOSIGNAL);
	usleep(300 * 1000);
	lc->sent2 = send(lc->fd, junk, sizeof(junk), MSG_NOSIGNAL);
	usleep(100 * 1000);
	while (off < sizeof(lc->reply) - 1) {
		n = recv(lc->fd, lc->reply + off, sizeof(lc->reply) - 1 - off,
		    0);
		if (n <= 0) {
			lc->err = n < 0 ? errno : 0;
			break;
		}
		off += (size_t)n;
	}
	lc->got = (ssize_t)off;
	close(lc->fd);
	return NULL;
}

static void
linger_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	if (ev == OSP_CONN_DATAIN) {
		osp_conn_printf(c, "421 4.7.0 bye\r\n");
		osp_conn_close(c);
	} else if (ev != OSP_CONN_LOWAT)
		osp_conn_free(c);
}

/* Without a lingering close, the client's data arriving after our close
 * is answered with a RST (its write fails with EPIPE/ECONNRESET), and
 * stacks other than Linux then drop the 421 it has not read yet. With
 * it, the client's writes are read and discarded, it reads the whole
 * reply and then a clean end of stream. */
static void
test_linger_close(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct linger_client lc = { 0 };
	pthread_t th;
	int lfd, sfd;

	loop_init();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(lfd >= 0 && bind(lfd, (struct sockaddr *)&sin,
	    sizeof(sin)) == 0 && listen(lfd, 1) == 0 &&
	    getsockname(lfd, (struct sockaddr *)&sin, &len) == 0);
	lc.fd = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(connect(lc.fd, (struct sockaddr *)&sin,
	    sizeof(sin)) == 0);
	sfd = accept(lfd, NULL, NULL);
	CU_ASSERT_FATAL(sfd >= 0);
	close(lfd);
	CU_ASSERT_FATAL(pthread_create(&th, NULL, linger_client_main,
	    &lc) == 0);
	osp_conn_new(sfd, linger_cb, NULL);
	run_loop(1500);
	pthread_join(th, NULL);
	CU_ASSERT_EQUAL(lc.err, 0);
	CU_ASSERT_EQUAL(lc.sent2, 128 * 1024);
	lc.reply[lc.got > 0 ? lc.got : 0] = '\0';
	CU_ASSERT_STRING_EQUAL(lc.reply, "421 4.7.0 bye\r\n");
	osp_event_deinit();
}

static const struct osp_test tests[] = {
	OSP_TEST(test_timers_defer),
	OSP_TEST(test_worker_pool),
	OSP_TEST(test_getline),
	OSP_TEST(test_pause_resume),
	OSP_TEST(test_peer_close),
	OSP_TEST(test_read_timeout),
	OSP_TEST(test_lowat),
	OSP_TEST(test_free_in_callback),
	OSP_TEST(test_linger_close),
	OSP_TEST(test_connect_refused),
	OSP_TEST(test_tls_handshake),
	OSP_TEST(test_tls_sni),
	OSP_TEST(test_starttls_injection),
	OSP_TEST(test_tls_garbage),
	OSP_TEST(test_tls_handshake_timeout),
	OSP_TEST(test_listener),
	OSP_TEST(test_tls_config_errors),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	int rc;

	osp_log_set_level(OSP_LOG_WARN);
	rc = osp_test_main(argc, argv, "io", tests);
	osp_tls_global_deinit();
	return rc;
}
