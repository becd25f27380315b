/* SPDX-License-Identifier: ISC */
/* The main event loop: timers, deferred calls and the worker pool. */
#ifndef OSPREY_EVENT_H
#define OSPREY_EVENT_H

#include <stdint.h>

/*
 * The core owns one libevent base on the main thread. Everything here
 * except osp_worker_submit's work function runs on the main thread.
 */
struct event_base;
struct osp_timer;

typedef void osp_timer_fn(void *arg);

/* The loop's libevent base, for modules that need libevent directly
 * (ties them to libevent 2.1's ABI). Main thread only. */
struct event_base *osp_event_base(void);

/* Milliseconds of a monotonic clock, cached per loop iteration. */
uint64_t	 osp_now_ms(void);

/* A one-shot timer; re-arm with osp_timer_add. Freed with osp_timer_free,
 * which also cancels it. */
struct osp_timer *osp_timer_new(osp_timer_fn *fn, void *arg);
void		 osp_timer_add(struct osp_timer *t, uint64_t ms);
void		 osp_timer_del(struct osp_timer *t);
void		 osp_timer_free(struct osp_timer *t);

/*
 * Runs work(arg) on a worker thread, then done(arg) on the main thread.
 * For blocking work only (store writes that fsync, big searches, DKIM over
 * huge bodies). work must not touch loop objects or pools used by the
 * main thread. The pair always runs, also at shutdown (drained before
 * exit). Main thread only.
 */
typedef void osp_work_fn(void *arg);
void		 osp_worker_submit(osp_work_fn *work, osp_work_fn *done,
		    void *arg);

/* Calls fn(arg) once, on the loop, after the current event handlers and
 * before the loop sleeps again: used to batch work (group commit, reply
 * flushing). Main thread only. */
void		 osp_event_defer(osp_timer_fn *fn, void *arg);

#endif
