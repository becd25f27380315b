/* SPDX-License-Identifier: ISC */
/* Store benchmark: durable deliveries per second through osp_store_deliver
 * (group commit) with N outstanding deliveries over M accounts, and the
 * disk's fsync rate in the same directory. Driven by bench/store/run.sh. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct sb {
	struct osp_store	 *store;
	struct osp_account	**accs;
	unsigned		  naccs;
	const char		 *msgfile;
	unsigned long		  started, done, count;
	unsigned		  outstanding;
	unsigned long		  batches;	/* completion groups */
	bool			  in_batch;
};

struct sb_one {
	struct sb	*sb;
	char		*path;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void	sb_start(struct sb *sb);

/* One group commit completes its deliveries in one loop callback: a
 * deferred call marks the end of the group. */
static void
sb_batch_end(void *arg)
{
	struct sb *sb = arg;

	sb->in_batch = false;
}

static void
sb_done(void *arg, int err, uint32_t uid, const char *error)
{
	struct sb_one *one = arg;
	struct sb *sb = one->sb;

	(void)uid;
	unlink(one->path);
	free(one->path);
	free(one);
	if (err != OSP_OK) {
		fprintf(stderr, "store_bench: %s\n", error != NULL ? error :
		    osp_strerror(err));
		exit(1);
	}
	if (!sb->in_batch) {
		sb->in_batch = true;
		sb->batches++;
		osp_event_defer(sb_batch_end, sb);
	}
	sb->done++;
	sb->outstanding--;
	if (sb->started < sb->count)
		sb_start(sb);
	else if (sb->outstanding == 0)
		osp_event_exit();
}

/* The message file is written (not fsynced: the store does that) as a
 * delivery would receive it, then handed to the store. */
static void
sb_start(struct sb *sb)
{
	struct osp_store_new_msg m;
	struct sb_one *one;
	char buf[65536];
	ssize_t n;
	int in, out;

	one = osp_calloc(1, sizeof(*one));
	one->sb = sb;
	if (asprintf(&one->path, "%s/bench-%lu", osp_store_tmpdir(sb->store),
	    sb->started) == -1)
		exit(1);
	in = open(sb->msgfile, O_RDONLY | O_CLOEXEC);
	out = open(one->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (in == -1 || out == -1) {
		fprintf(stderr, "store_bench: %s\n", strerror(errno));
		exit(1);
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			exit(1);
	close(in);
	close(out);
	memset(&m, 0, sizeof(m));
	m.path = one->path;
	sb->outstanding++;
	osp_store_deliver(sb->accs[sb->started % sb->naccs], "Inbox", &m,
	    sb_done, one);
	sb->started++;
}

/* write(4 KiB) + fsync in a loop for `secs`: the disk's limit. */
static double
fsync_rate(const char *dir, double secs)
{
	char *path, buf[4096];
	double t0, t;
	unsigned long n = 0;
	int fd;

	memset(buf, 'x', sizeof(buf));
	if (asprintf(&path, "%s/fsync-test", dir) == -1)
		exit(1);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1) {
		perror(path);
		exit(1);
	}
	t0 = now_s();
	do {
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) ||
		    fsync(fd) != 0) {
			perror("fsync");
			exit(1);
		}
		n++;
	} while ((t = now_s()) - t0 < secs);
	close(fd);
	unlink(path);
	free(path);
	return (double)n / (t - t0);
}

int
main(int argc, char **argv)
{
	struct sb sb = { 0 };
	const char *error;
	char name[32];
	unsigned i, conc;
	double t0, t;

	if (argc == 3 && strcmp(argv[1], "fsync") == 0) {
		printf("fsync/s %.0f\n", fsync_rate(argv[2], 2.0));
		return 0;
	}
	if (argc != 6) {
		fprintf(stderr, "usage: store_bench DATADIR ACCOUNTS "
		    "CONCURRENCY COUNT MSGFILE\n"
		    "       store_bench fsync DIR\n");
		return 2;
	}
	sb.naccs = (unsigned)atoi(argv[2]);
	conc = (unsigned)atoi(argv[3]);
	sb.count = strtoul(argv[4], NULL, 10);
	sb.msgfile = argv[5];
	if (sb.naccs == 0 || conc == 0 || sb.count == 0)
		return 2;
	if (osp_event_init(2) != OSP_OK ||
	    osp_store_open(argv[1], &sb.store, &error) != OSP_OK) {
		fprintf(stderr, "store_bench: setup failed\n");
		return 1;
	}
	sb.accs = osp_calloc(sb.naccs, sizeof(*sb.accs));
	for (i = 0; i < sb.naccs; i++) {
		snprintf(name, sizeof(name), "bench%u", i);
		if (osp_account_open(sb.store, name, true, &sb.accs[i],
		    &error) != OSP_OK) {
			fprintf(stderr, "store_bench: account %s: %s\n", name,
			    error != NULL ? error : "?");
			return 1;
		}
	}
	t0 = now_s();
	for (i = 0; i < conc && i < sb.count; i++)
		sb_start(&sb);
	osp_event_run();
	t = now_s() - t0;
	printf("msgs %lu seconds %.3f msgs/s %.1f batches %lu\n", sb.done, t,
	    (double)sb.done / t, sb.batches);
	for (i = 0; i < sb.naccs; i++)
		osp_account_unref(sb.accs[i]);
	free(sb.accs);
	osp_store_close(sb.store);
	osp_event_deinit();
	return 0;
}
