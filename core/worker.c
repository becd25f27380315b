/* SPDX-License-Identifier: ISC */
/* The worker pool: blocking work (fsync, big searches) runs on a few
 * threads; completions run on the loop thread, woken through a pipe. */
#include "core.h"
#include "io_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

struct job {
	osp_work_fn	*work;
	osp_work_fn	*done;
	void		*arg;
	struct job	*next;
};

/* A FIFO of jobs. */
struct jobq {
	struct job	*head, **tailp;
};

static struct {
	pthread_mutex_t	 lock;
	pthread_cond_t	 cond;
	struct jobq	 todo;		/* waiting for a worker */
	struct jobq	 done;		/* finished, done() not yet run */
	bool		 stop;
	pthread_t	*threads;
	unsigned	 nthreads;
	int		 wake[2];	/* workers -> loop */
	bool		 wake_sent;
	struct event	*wake_ev;
	size_t		 inflight;	/* submitted, done() not yet run */
} wp = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.wake = { -1, -1 },
};

static void
jobq_init(struct jobq *q)
{
	q->head = NULL;
	q->tailp = &q->head;
}

static void
jobq_push(struct jobq *q, struct job *j)
{
	j->next = NULL;
	*q->tailp = j;
	q->tailp = &j->next;
}

static struct job *
jobq_pop(struct jobq *q)
{
	struct job *j = q->head;

	if (j != NULL) {
		q->head = j->next;
		if (q->head == NULL)
			q->tailp = &q->head;
	}
	return j;
}

static void *
worker_main(void *arg)
{
	struct job *j;
	bool wake;
	char c = 1;

	pthread_mutex_lock(&wp.lock);
	for (;;) {
		while ((j = jobq_pop(&wp.todo)) == NULL && !wp.stop)
			pthread_cond_wait(&wp.cond, &wp.lock);
		/* On stop, finish the queue first: every pair runs. */
		if (j == NULL)
			break;
		pthread_mutex_unlock(&wp.lock);
		j->work(j->arg);
		pthread_mutex_lock(&wp.lock);
		jobq_push(&wp.done, j);
		/* One byte in the pipe per batch of completions. */
		wake = !wp.wake_sent;
		wp.wake_sent = true;
		if (wake && write(wp.wake[1], &c, 1) == -1 && errno != EAGAIN)
			osp_log_err("core", "worker wake: %s", strerror(errno));
	}
	pthread_mutex_unlock(&wp.lock);
	return NULL;
}

/* Runs the done() callbacks of finished jobs, on the loop thread. */
static void
worker_run_done(void)
{
	struct jobq q;
	struct job *j;
	char buf[64];

	pthread_mutex_lock(&wp.lock);
	q = wp.done;
	if (q.head == NULL)
		q.tailp = &q.head;
	jobq_init(&wp.done);
	wp.wake_sent = false;
	while (read(wp.wake[0], buf, sizeof(buf)) > 0)
		;
	pthread_mutex_unlock(&wp.lock);
	while ((j = jobq_pop(&q)) != NULL) {
		wp.inflight--;
		if (j->done != NULL)
			j->done(j->arg);
		osp_free(j);
	}
}

static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	worker_run_done();
}

int
osp_worker_init(unsigned n)
{
	sigset_t all, old;
	unsigned i;
	int rc;

	if (n == 0)
		n = 1;
	if (pipe2(wp.wake, O_NONBLOCK | O_CLOEXEC) == -1)
		return -errno;
	jobq_init(&wp.todo);
	jobq_init(&wp.done);
	wp.stop = false;
	wp.wake_ev = event_new(osp_event_base(), wp.wake[0],
	    EV_READ | EV_PERSIST, worker_wake_cb, NULL);
	if (wp.wake_ev == NULL || event_add(wp.wake_ev, NULL) == -1)
		return OSP_ERROR;
	wp.threads = osp_calloc(n, sizeof(*wp.threads));
	/* Workers inherit a full signal mask: signals go to the loop
	 * thread, and blocking calls on workers never see EINTR. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < n; i++) {
		rc = pthread_create(&wp.threads[i], NULL, worker_main, NULL);
		if (rc != 0) {
			osp_log_err("core", "worker thread: %s", strerror(rc));
			break;
		}
		wp.nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return wp.nthreads > 0 ? OSP_OK : OSP_ERROR;
}

void
osp_worker_submit(osp_work_fn *work, osp_work_fn *done, void *arg)
{
	struct job *j;

	j = osp_malloc(sizeof(*j));
	j->work = work;
	j->done = done;
	j->arg = arg;
	wp.inflight++;
	if (wp.nthreads == 0) {
		/* Pool already drained (shutdown): run inline so the pair
		 * still runs. */
		work(arg);
		pthread_mutex_lock(&wp.lock);
		jobq_push(&wp.done, j);
		pthread_mutex_unlock(&wp.lock);
		return;
	}
	pthread_mutex_lock(&wp.lock);
	jobq_push(&wp.todo, j);
	pthread_cond_signal(&wp.cond);
	pthread_mutex_unlock(&wp.lock);
}

size_t
osp_worker_inflight(void)
{
	return wp.inflight;
}

void
osp_worker_deinit(void)
{
	unsigned i;

	pthread_mutex_lock(&wp.lock);
	wp.stop = true;
	pthread_cond_broadcast(&wp.cond);
	pthread_mutex_unlock(&wp.lock);
	for (i = 0; i < wp.nthreads; i++)
		pthread_join(wp.threads[i], NULL);
	osp_free(wp.threads);
	wp.threads = NULL;
	wp.nthreads = 0;
	/* done() may submit more work: it now runs inline (see submit). */
	while (wp.inflight > 0)
		worker_run_done();
	if (wp.wake_ev != NULL)
		event_free(wp.wake_ev);
	wp.wake_ev = NULL;
	if (wp.wake[0] != -1) {
		close(wp.wake[0]);
		close(wp.wake[1]);
	}
	wp.wake[0] = wp.wake[1] = -1;
	wp.wake_sent = false;
}
