/* SPDX-License-Identifier: ISC */
/* Test helper: delivers small messages through osp_store_deliver (group
 * commit on the event loop) with N outstanding, printing "uid U" for each
 * delivery the store reported durable. The crash test kills it with
 * SIGKILL and checks every printed uid survived. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dl {
	struct osp_store	*store;
	struct osp_account	*acc;
	const char		*mailbox;
	unsigned long		 started, done, count;
	unsigned		 outstanding;
};

struct dl_one {
	struct dl	*dl;
	char		*path;
};

static void	dl_start(struct dl *dl);

static void
dl_done(void *arg, int err, uint32_t uid, const char *error)
{
	struct dl_one *one = arg;
	struct dl *dl = one->dl;
	char line[64];
	int n;

	unlink(one->path);
	free(one->path);
	free(one);
	if (err != OSP_OK) {
		fprintf(stderr, "deliver_loop: %s\n", error != NULL ? error :
		    osp_strerror(err));
		exit(1);
	}
	/* write(2), not stdio: a line is out before the next SIGKILL. */
	n = snprintf(line, sizeof(line), "uid %u\n", uid);
	if (write(STDOUT_FILENO, line, (size_t)n) != n)
		exit(1);
	dl->done++;
	dl->outstanding--;
	if (dl->count == 0 || dl->started < dl->count)
		dl_start(dl);
	else if (dl->outstanding == 0)
		osp_event_exit();
}

static void
dl_start(struct dl *dl)
{
	struct osp_store_new_msg m;
	struct dl_one *one;
	char text[512];
	int fd, n;

	one = osp_calloc(1, sizeof(*one));
	one->dl = dl;
	if (asprintf(&one->path, "%s/dl-%ld-%lu", osp_store_tmpdir(dl->store),
	    (long)getpid(), dl->started) == -1)
		exit(1);
	n = snprintf(text, sizeof(text), "From: loop@example.org\r\n"
	    "To: test@example.org\r\nSubject: delivery %lu\r\n"
	    "Message-ID: <%ld.%lu@example.org>\r\n\r\nbody %lu\r\n",
	    dl->started, (long)getpid(), dl->started, dl->started);
	fd = open(one->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1 || write(fd, text, (size_t)n) != n || close(fd) == -1) {
		fprintf(stderr, "deliver_loop: %s: %s\n", one->path,
		    strerror(errno));
		exit(1);
	}
	memset(&m, 0, sizeof(m));
	m.path = one->path;
	dl->started++;
	dl->outstanding++;
	osp_store_deliver(dl->acc, dl->mailbox, &m, dl_done, one);
}

int
main(int argc, char **argv)
{
	struct dl dl = { 0 };
	const char *error;
	unsigned i, conc;

	if (argc != 6) {
		fprintf(stderr, "usage: deliver_loop DATADIR ACCOUNT MAILBOX "
		    "CONCURRENCY COUNT(0: forever)\n");
		return 2;
	}
	dl.mailbox = argv[3];
	conc = (unsigned)atoi(argv[4]);
	dl.count = strtoul(argv[5], NULL, 10);
	if (osp_event_init(2) != OSP_OK ||
	    osp_store_open(argv[1], &dl.store, &error) != OSP_OK ||
	    osp_account_open(dl.store, argv[2], true, &dl.acc,
	    &error) != OSP_OK) {
		fprintf(stderr, "deliver_loop: setup failed\n");
		return 1;
	}
	for (i = 0; i < conc && (dl.count == 0 || i < dl.count); i++)
		dl_start(&dl);
	osp_event_run();
	osp_account_unref(dl.acc);
	osp_store_close(dl.store);
	osp_event_deinit();
	return 0;
}
