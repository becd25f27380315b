/* SPDX-License-Identifier: ISC */
/* The main event loop: one libevent base on the main thread, timers,
 * signals, a cached monotonic clock and deferred ("before sleep") calls. */
#include "core.h"
#include "io_int.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>

struct osp_timer {
	struct event	 ev;
	osp_timer_fn	*fn;
	void		*arg;
};

struct defer_item {
	osp_timer_fn	*fn;
	void		*arg;
};

struct sig_item {
	struct event	*ev;
	osp_signal_fn	*fn;
	void		*arg;
	struct sig_item	*next;
};

static struct {
	struct event_base	*base;
	bool			 running;
	/* osp_now_ms() cache, valid for one pass of the loop */
	uint64_t		 now;
	bool			 now_valid;
	struct event		*now_ev;
	/* osp_event_defer() batch */
	struct defer_item	*defer;
	size_t			 ndefer, defer_size;
	struct event		*defer_ev;
	bool			 defer_active;
	struct sig_item		*sigs;
} ev;

static uint64_t
clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Why deferred calls are an event made active with event_active() rather
 * than a lower-priority event: libevent 2.1 runs the active queue of one
 * priority in FIFO order and picks up events activated meanwhile in the
 * same pass; it only polls again when that queue is empty. So an event
 * activated now runs after every handler already due in this pass and
 * before the loop sleeps (Redis's beforeSleep), and unlike a low-priority
 * event it cannot be starved by a steady stream of new I/O. Calls
 * deferred from inside a deferred call form the next batch, run in the
 * same pass.
 */
static void
defer_run(evutil_socket_t fd, short what, void *arg)
{
	struct defer_item *items;
	size_t i, n;

	items = ev.defer;
	n = ev.ndefer;
	ev.defer = NULL;
	ev.ndefer = ev.defer_size = 0;
	ev.defer_active = false;
	for (i = 0; i < n; i++)
		items[i].fn(items[i].arg);
	osp_free(items);
}

void
osp_event_defer(osp_timer_fn *fn, void *arg)
{
	if (ev.ndefer == ev.defer_size) {
		ev.defer_size = ev.defer_size == 0 ? 16 : ev.defer_size * 2;
		ev.defer = osp_reallocarray(ev.defer, ev.defer_size,
		    sizeof(*ev.defer));
	}
	ev.defer[ev.ndefer].fn = fn;
	ev.defer[ev.ndefer].arg = arg;
	ev.ndefer++;
	if (!ev.defer_active) {
		ev.defer_active = true;
		event_active(ev.defer_ev, 0, 0);
	}
}

/* Runs at the end of the pass in which the clock was read (same FIFO
 * argument as above): the next pass reads the clock afresh. */
static void
now_invalidate(evutil_socket_t fd, short what, void *arg)
{
	ev.now_valid = false;
}

uint64_t
osp_now_ms(void)
{
	if (!ev.running || ev.now_ev == NULL)
		return clock_ms();
	if (!ev.now_valid) {
		ev.now = clock_ms();
		ev.now_valid = true;
		event_active(ev.now_ev, 0, 0);
	}
	return ev.now;
}

struct event_base *
osp_event_base(void)
{
	return ev.base;
}

int
osp_event_init(unsigned workers)
{
	int rc;

	if (ev.base != NULL)
		return -EALREADY;
	/* Writes to a closed peer must return EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	ev.base = event_base_new();
	if (ev.base == NULL)
		return OSP_ERROR;
	ev.defer_ev = event_new(ev.base, -1, 0, defer_run, NULL);
	ev.now_ev = event_new(ev.base, -1, 0, now_invalidate, NULL);
	if (ev.defer_ev == NULL || ev.now_ev == NULL) {
		osp_event_deinit();
		return OSP_ERROR;
	}
	rc = osp_worker_init(workers);
	if (rc != OSP_OK) {
		osp_event_deinit();
		return rc;
	}
	return OSP_OK;
}

int
osp_event_run(void)
{
	int rc;

	if (ev.base == NULL)
		return -EINVAL;
	ev.running = true;
	ev.now_valid = false;
	rc = event_base_loop(ev.base, EVLOOP_NO_EXIT_ON_EMPTY);
	ev.running = false;
	ev.now_valid = false;
	return rc == -1 ? OSP_ERROR : OSP_OK;
}

void
osp_event_exit(void)
{
	/* loopexit, not loopbreak: handlers already due in this pass (and
	 * deferred calls, such as reply flushing) still run. */
	if (ev.base != NULL)
		event_base_loopexit(ev.base, NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct sig_item *s = arg;

	s->fn((int)sig, s->arg);
}

void
osp_event_signal(int sig, osp_signal_fn *fn, void *arg)
{
	struct sig_item *s;

	for (s = ev.sigs; s != NULL; s = s->next)
		if (event_get_signal(s->ev) == sig)
			break;
	if (s != NULL) {
		s->fn = fn;
		s->arg = arg;
		return;
	}
	s = osp_calloc(1, sizeof(*s));
	s->fn = fn;
	s->arg = arg;
	s->ev = evsignal_new(ev.base, sig, signal_cb, s);
	if (s->ev == NULL || evsignal_add(s->ev, NULL) == -1)
		osp_fatal("core", "cannot handle signal %d", sig);
	s->next = ev.sigs;
	ev.sigs = s;
}

void
osp_event_deinit(void)
{
	struct sig_item *s;

	if (ev.base == NULL)
		return;
	/* Every submitted work/done pair runs, then anything deferred (which
	 * may release connections). */
	osp_worker_deinit();
	while (ev.ndefer > 0)
		defer_run(-1, 0, NULL);
	osp_conn_linger_closeall();
	while ((s = ev.sigs) != NULL) {
		ev.sigs = s->next;
		event_free(s->ev);
		osp_free(s);
	}
	if (ev.defer_ev != NULL)
		event_free(ev.defer_ev);
	if (ev.now_ev != NULL)
		event_free(ev.now_ev);
	osp_free(ev.defer);
	event_base_free(ev.base);
	memset(&ev, 0, sizeof(ev));
}

/* Timers. */

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct osp_timer *t = arg;

	t->fn(t->arg);
}

struct osp_timer *
osp_timer_new(osp_timer_fn *fn, void *arg)
{
	struct osp_timer *t;

	t = osp_calloc(1, sizeof(*t));
	t->fn = fn;
	t->arg = arg;
	evtimer_assign(&t->ev, ev.base, timer_cb, t);
	return t;
}

void
osp_timer_add(struct osp_timer *t, uint64_t ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(&t->ev, &tv);
}

void
osp_timer_del(struct osp_timer *t)
{
	evtimer_del(&t->ev);
}

void
osp_timer_free(struct osp_timer *t)
{
	if (t == NULL)
		return;
	evtimer_del(&t->ev);
	osp_free(t);
}
