/* SPDX-License-Identifier: ISC */
/* Unit tests: the MIME parser over the fixture corpus (tests/fixtures/mime),
 * decoders, header parsers, serialization and hostile input. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "message_int.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* helpers */

static char *
load_fixture(const char *name, size_t *len_r)
{
	char path[1024];
	struct stat st;
	char *data;
	int fd;

	snprintf(path, sizeof(path), "%s/tests/fixtures/mime/%s",
	    osp_test_srcdir(), name);
	fd = open(path, O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(fstat(fd, &st) == 0);
	data = osp_malloc((size_t)st.st_size + 1);
	CU_ASSERT_FATAL(read(fd, data, (size_t)st.st_size) == st.st_size);
	data[st.st_size] = '\0';
	close(fd);
	*len_r = (size_t)st.st_size;
	return data;
}

/* Parses a fixture through a file descriptor (the store's path). */
static int
parse_fixture(const char *name, const char *prefix, struct osp_pool *pool,
    struct osp_msg_info *info)
{
	char path[1024];
	const char *error = NULL;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/tests/fixtures/mime/%s",
	    osp_test_srcdir(), name);
	fd = open(path, O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	ret = osp_msg_parse_fd(fd, prefix, prefix != NULL ? strlen(prefix) :
	    0, pool, info, &error);
	close(fd);
	return ret;
}

static bool
streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

#define CHECK_STR(got, want) do {					\
	const char *g_ = (got), *w_ = (want);				\
	if (!streq(g_, w_))						\
		fprintf(stderr, "  %s:%d: got \"%s\" want \"%s\"\n",	\
		    __FILE__, __LINE__, g_ ? g_ : "(null)",		\
		    w_ ? w_ : "(null)");				\
	CU_ASSERT(streq(g_, w_));					\
} while (0)

static unsigned
tree_depth(const struct osp_mime_part *p)
{
	const struct osp_mime_part *c;
	unsigned d = 0, cd;

	for (c = p->children; c != NULL; c = c->next)
		if ((cd = tree_depth(c)) > d)
			d = cd;
	return d + 1;
}

static unsigned
tree_count(const struct osp_mime_part *p)
{
	const struct osp_mime_part *c;
	unsigned n = 1;

	for (c = p->children; c != NULL; c = c->next)
		n += tree_count(c);
	return n;
}

/* Children lie inside their parent's body, in order; header + body are
 * contiguous. */
static void
check_nesting(const struct osp_mime_part *p, uint64_t total)
{
	const struct osp_mime_part *c;
	uint64_t prev;
	uint32_t n = 0;

	CU_ASSERT(p->header_offset + p->header_size == p->body_offset);
	CU_ASSERT(p->body_offset + p->body_size <= total);
	prev = p->body_offset;
	for (c = p->children; c != NULL; c = c->next) {
		CU_ASSERT_PTR_EQUAL(c->parent, p);
		CU_ASSERT(c->header_offset >= prev);
		CU_ASSERT(c->body_offset + c->body_size <=
		    p->body_offset + p->body_size);
		prev = c->body_offset + c->body_size;
		check_nesting(c, total);
		n++;
	}
	CU_ASSERT_EQUAL(n, p->nchildren);
}

/* ------------------------------------------------------------------ */
/* fixture table: parts by IMAP section, their type and exact body */

struct exp_part {
	const char	*section;	/* NULL ends the list */
	const char	*type, *subtype;
	const char	*body;		/* exact raw body bytes, or NULL */
	int64_t		 lines;		/* -1: not checked */
	uint32_t	 flags;		/* OSP_MIME_F_* expected set */
};

struct exp_msg {
	const char		*file;
	const char		*preview;
	const char		*base_subject;
	const char		*message_id;
	int64_t			 date;
	struct exp_part		 parts[12];
};

static const struct exp_msg fixtures[] = {
	{ "alt_related.eml",
	  "Hello Bob, Here is the caf\xc3\xa9 report, soft broken.",
	  "Quarterly report", "report-1@example.org", 1741079730, {
		{ "", "multipart", "mixed", NULL, -1, OSP_MIME_F_MULTIPART },
		{ "1", "multipart", "alternative", NULL, -1,
		  OSP_MIME_F_MULTIPART },
		{ "1.1", "text", "plain", "Hello Bob,\r\n> quoted line\r\n"
		  "Here is the caf=C3=A9 report, soft=\r\n broken.", 4, 0 },
		{ "1.2", "multipart", "related", NULL, -1,
		  OSP_MIME_F_MULTIPART },
		{ "1.2.1", "text", "html", "<html><body><p>Hello <b>Bob</b>,"
		  "</p><img src=\"cid:logo@x\"></body></html>", 1, 0 },
		{ "1.2.2", "image", "png", "iVBORw0KGgo=", 1, 0 },
		{ "2", "application", "pdf", "JVBERi0xLjQK", 1, 0 },
		{ NULL, NULL, NULL, NULL, 0, 0 } } },
	{ "nested_rfc822.eml", "See below.", "Lunch", "fw-1@example.org",
	  915253140, {
		{ "", "multipart", "mixed", NULL, -1, OSP_MIME_F_MULTIPART },
		{ "1", "text", "plain", "See below.", 1, 0 },
		{ "2", "message", "rfc822", NULL, 18, OSP_MIME_F_MESSAGE },
		{ "2.1", "text", "plain", "Noon?", 1, 0 },
		{ "2.2", "text", "html", "<p>Noon?</p>", 1, 0 },
		{ NULL, NULL, NULL, NULL, 0, 0 } } },
	{ "broken.eml", "first", "broken", NULL, 0, {
		{ "", "multipart", "mixed", NULL, -1,
		  OSP_MIME_F_MULTIPART | OSP_MIME_F_NO_END },
		{ "1", "text", "plain", "first", 1, 0 },
		{ "2", "multipart", "alternative", NULL, -1,
		  OSP_MIME_F_MULTIPART | OSP_MIME_F_NO_END },
		{ "2.1", "text", "plain", "", 0, OSP_MIME_F_NO_BODY },
		{ "2.2", "text", "html", "<b>never closed</b>", 1, 0 },
		{ "3", "text", "plain", "last, and no close delimiter\r\n", 1,
		  0 },
		{ NULL, NULL, NULL, NULL, 0, 0 } } },
	{ "rfc2231.eml", "", "", NULL, 0, {
		{ "", "application", "x-stuff", "payload\r\n", 1, 0 },
		{ NULL, NULL, NULL, NULL, 0, 0 } } },
	{ "encoded_words.eml", "Gr\xc3\xbc\xc3\x9f" "e",
	  "\xf0\x9f\x98\x80 split (ab) c d", NULL, 0, {
		{ "", "text", "plain", "Gr\xfc\xdf" "e\r\n", 1, 0 },
		{ NULL, NULL, NULL, NULL, 0, 0 } } },
	{ "8bit.eml", "H\xc3\xa9llo", "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln",
	  NULL, 0, {
		{ "", "text", "plain", "H\xc3\xa9llo\n", 1, 0 },
		{ NULL, NULL, NULL, NULL, 0, 0 } } },
};

static void
check_fixture(const struct exp_msg *m, const char *prefix)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	const struct exp_part *e;
	struct osp_mime_part *p;
	size_t len, plen = prefix != NULL ? strlen(prefix) : 0;
	char *data = load_fixture(m->file, &len);
	char *all = osp_malloc(plen + len + 1);

	memcpy(all, prefix != NULL ? prefix : "", plen);
	memcpy(all + plen, data, len);
	CU_ASSERT_EQUAL_FATAL(parse_fixture(m->file, prefix, pool, &info),
	    OSP_OK);
	CHECK_STR(info.preview, m->preview);
	CHECK_STR(info.base_subject, m->base_subject);
	CHECK_STR(info.message_id, m->message_id);
	CU_ASSERT_EQUAL(info.date, m->date);
	CU_ASSERT_EQUAL(info.root->header_offset, 0);
	CU_ASSERT_EQUAL(info.root->body_offset + info.root->body_size,
	    plen + len);
	check_nesting(info.root, plen + len);
	for (e = m->parts; e->section != NULL; e++) {
		p = osp_mime_part_find(info.root, e->section);
		if (p == NULL) {
			fprintf(stderr, "  %s: no part %s\n", m->file,
			    e->section);
			CU_FAIL("part missing");
			continue;
		}
		CHECK_STR(p->type, e->type);
		CHECK_STR(p->subtype, e->subtype);
		CU_ASSERT_EQUAL(p->flags & e->flags, e->flags);
		CU_ASSERT(p->body_offset + p->body_size <= plen + len);
		CU_ASSERT_EQUAL(p->header_offset + p->header_size,
		    p->body_offset);
		if (e->body != NULL) {
			/* the offsets are exact against the raw bytes */
			if (p->body_size != strlen(e->body) ||
			    memcmp(all + p->body_offset, e->body,
			    p->body_size) != 0)
				fprintf(stderr, "  %s part %s: body "
				    "\"%.*s\"\n", m->file, e->section,
				    (int)p->body_size, all + p->body_offset);
			CU_ASSERT_EQUAL(p->body_size, strlen(e->body));
			CU_ASSERT(memcmp(all + p->body_offset, e->body,
			    strlen(e->body)) == 0);
		}
		if (e->lines >= 0) {
			if ((int64_t)p->body_lines != e->lines)
				fprintf(stderr, "  %s part %s: lines %llu\n",
				    m->file, e->section,
				    (unsigned long long)p->body_lines);
			CU_ASSERT_EQUAL(p->body_lines, (uint64_t)e->lines);
		}
		/* a header starts at a line start and ends with one */
		if (p->header_offset > 0 && !(p->flags & OSP_MIME_F_NO_BODY))
			CU_ASSERT(all[p->header_offset - 1] == '\n');
	}
	osp_free(data);
	osp_free(all);
	osp_pool_free(pool);
}

static void
test_fixtures(void)
{
	size_t i;

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		check_fixture(&fixtures[i], NULL);
}

/* The same fixtures behind a prefix (headers added on receipt): every
 * offset shifts, the root header grows, and bodies are still exact. */
static void
test_prefix(void)
{
	static const char prefix[] = "Received: from mx.example.org\r\n"
	    "\tby osprey; Tue, 4 Mar 2025 10:15:31 +0100\r\n"
	    "Delivered-To: bob@example.com\r\n";
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info a, b;
	struct osp_mime_part *pa, *pb;
	size_t i;

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		check_fixture(&fixtures[i], prefix);
		CU_ASSERT_EQUAL(parse_fixture(fixtures[i].file, NULL, pool,
		    &a), OSP_OK);
		CU_ASSERT_EQUAL(parse_fixture(fixtures[i].file, prefix, pool,
		    &b), OSP_OK);
		CU_ASSERT_EQUAL(b.root->header_size,
		    a.root->header_size + strlen(prefix));
		pa = osp_mime_part_find(a.root, "1");
		pb = osp_mime_part_find(b.root, "1");
		if (pa != NULL && pb != NULL && pa != a.root) {
			CU_ASSERT_EQUAL(pb->header_offset,
			    pa->header_offset + strlen(prefix));
			CU_ASSERT_EQUAL(pb->body_size, pa->body_size);
		}
	}
	osp_pool_free(pool);
}

static void
cmp_crlf_lf(const struct osp_mime_part *c, const struct osp_mime_part *l)
{
	const struct osp_mime_part *cc, *lc;

	CHECK_STR(c->type, l->type);
	CHECK_STR(c->subtype, l->subtype);
	CU_ASSERT_EQUAL(c->flags, l->flags);
	CU_ASSERT_EQUAL(c->header_bare_lf, 0);
	CU_ASSERT_EQUAL(c->body_bare_lf, 0);
	/* sizes with CRLF line ends are the LF sizes plus their bare LFs */
	CU_ASSERT_EQUAL(c->header_size, l->header_size + l->header_bare_lf);
	CU_ASSERT_EQUAL(c->body_size, l->body_size + l->body_bare_lf);
	CU_ASSERT_EQUAL(c->header_lines, l->header_lines);
	CU_ASSERT_EQUAL(c->body_lines, l->body_lines);
	CU_ASSERT_EQUAL(c->nchildren, l->nchildren);
	for (cc = c->children, lc = l->children; cc != NULL && lc != NULL;
	    cc = cc->next, lc = lc->next)
		cmp_crlf_lf(cc, lc);
}

static void
test_crlf_vs_lf(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info crlf, lf;
	size_t len, i, n = 0;
	char *data = load_fixture("alt_related.eml", &len);
	char *lfdata = osp_malloc(len);

	for (i = 0; i < len; i++)
		if (!(data[i] == '\r' && i + 1 < len && data[i + 1] == '\n'))
			lfdata[n++] = data[i];
	osp_msg_parse_mem(NULL, 0, data, len, pool, &crlf);
	osp_msg_parse_mem(NULL, 0, lfdata, n, pool, &lf);
	CU_ASSERT_EQUAL(tree_count(crlf.root), 7);
	cmp_crlf_lf(crlf.root, lf.root);
	CHECK_STR(crlf.preview, lf.preview);
	osp_free(data);
	osp_free(lfdata);
	osp_pool_free(pool);
}

/* Feeding the parser one byte at a time (through a pipe) gives the same
 * tree as one read: chunk boundaries never matter. */
static void
test_chunking(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info a, b;
	size_t len, i, f;
	char *data;
	int fds[2];
	pid_t pid;
	const char *error;

	for (f = 0; f < sizeof(fixtures) / sizeof(fixtures[0]); f++) {
		data = load_fixture(fixtures[f].file, &len);
		osp_msg_parse_mem(NULL, 0, data, len, pool, &a);
		CU_ASSERT_FATAL(pipe(fds) == 0);
		pid = fork();
		CU_ASSERT_FATAL(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			for (i = 0; i < len; i++) {
				if (write(fds[1], data + i, 1) != 1)
					_exit(1);
				if (i % 97 == 0)
					usleep(100);
			}
			_exit(0);
		}
		close(fds[1]);
		CU_ASSERT_EQUAL(osp_msg_parse_fd(fds[0], NULL, 0, pool, &b,
		    &error), OSP_OK);
		close(fds[0]);
		waitpid(pid, NULL, 0);
		CU_ASSERT(osp_mime_part_equal(a.root, b.root));
		CHECK_STR(a.preview, b.preview);
		osp_free(data);
	}
	osp_pool_free(pool);
}

/* The fd is read from its current offset; read errors fail the parse. */
static void
test_parse_fd(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info a, b;
	const char *error = NULL, *path;
	size_t len;
	char *data = load_fixture("nested_rfc822.eml", &len);
	char *junk = osp_malloc(len + 100);
	int fd;

	memset(junk, 'J', 100);
	memcpy(junk + 100, data, len);
	path = osp_test_write_file(osp_test_tmpdir(), "skip.eml", "");
	fd = open(path, O_RDWR | O_TRUNC);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(write(fd, junk, len + 100) == (ssize_t)(len + 100));
	CU_ASSERT_FATAL(lseek(fd, 100, SEEK_SET) == 100);
	CU_ASSERT_EQUAL(osp_msg_parse_fd(fd, NULL, 0, pool, &a, &error),
	    OSP_OK);
	close(fd);
	osp_msg_parse_mem(NULL, 0, data, len, pool, &b);
	CU_ASSERT(osp_mime_part_equal(a.root, b.root));
	CHECK_STR(a.message_id, "fw-1@example.org");
	/* a directory cannot be read: an I/O error, with a reason */
	fd = open(osp_test_tmpdir(), O_RDONLY | O_DIRECTORY);
	CU_ASSERT_FATAL(fd >= 0);
	error = NULL;
	CU_ASSERT_EQUAL(osp_msg_parse_fd(fd, NULL, 0, pool, &a, &error),
	    -EISDIR);
	CU_ASSERT(error != NULL);
	close(fd);
	CU_ASSERT_EQUAL(osp_msg_parse_fd(-1, NULL, 0, pool, &a, &error),
	    -EBADF);
	free((void *)path);
	osp_free(junk);
	osp_free(data);
	osp_pool_free(pool);
}

static void
test_alt_related_fields(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	struct osp_mime_part *p;
	const struct osp_envelope *env;
	const struct osp_address *a;

	CU_ASSERT_EQUAL_FATAL(parse_fixture("alt_related.eml", NULL, pool,
	    &info), OSP_OK);
	CU_ASSERT_EQUAL(info.root->nchildren, 2);
	CHECK_STR(osp_mime_param_get(info.root->params,
	    info.root->nparams, "boundary"), "outer-b");
	env = info.root->envelope;
	CU_ASSERT_FATAL(env != NULL);
	CHECK_STR(env->subject, "Re: [osprey] Fwd: Quarterly report (fwd)");
	CHECK_STR(env->date, "Tue, 4 Mar 2025 10:15:30 +0100");
	CHECK_STR(env->message_id, "<report-1@example.org>");
	CHECK_STR(env->in_reply_to, "<q-0@example.com>");
	CU_ASSERT(env->sender == NULL && env->bcc == NULL);
	a = env->from;
	CU_ASSERT_FATAL(a != NULL);
	CHECK_STR(a->name, "Alice Example");
	CHECK_STR(a->localpart, "alice");
	CHECK_STR(a->domain, "example.org");
	a = env->to->next;
	CU_ASSERT_FATAL(a != NULL);
	CHECK_STR(a->name, "Carol, C.");
	a = env->cc;
	CU_ASSERT_FATAL(a != NULL);
	CU_ASSERT_EQUAL(a->kind, OSP_ADDR_GROUP_START);
	CHECK_STR(a->name, "team");
	CU_ASSERT_EQUAL(a->next->kind, OSP_ADDR_MAILBOX);
	CHECK_STR(a->next->localpart, "dave");
	CHECK_STR(a->next->next->localpart, "erin");
	CU_ASSERT_EQUAL(a->next->next->next->kind, OSP_ADDR_GROUP_END);
	CU_ASSERT(a->next->next->next->next == NULL);
	CU_ASSERT_FATAL(info.references[0] != NULL &&
	    info.references[1] != NULL);
	CHECK_STR(info.references[0], "root@example.com");
	CHECK_STR(info.references[1], "q-0@example.com");
	CU_ASSERT(info.references[2] == NULL);

	p = osp_mime_part_find(info.root, "1.1");
	CU_ASSERT_FATAL(p != NULL);
	CHECK_STR(p->encoding, "quoted-printable");
	CHECK_STR(osp_mime_part_charset(p), "utf-8");
	CU_ASSERT(p->envelope == NULL);
	p = osp_mime_part_find(info.root, "1.2");
	CHECK_STR(osp_mime_param_get(p->params, p->nparams, "type"),
	    "text/html");
	p = osp_mime_part_find(info.root, "1.2.2");
	CHECK_STR(p->id, "<logo@x>");
	CHECK_STR(p->disposition, "inline");
	CHECK_STR(p->encoding, "base64");
	p = osp_mime_part_find(info.root, "2");
	CHECK_STR(p->disposition, "attachment");
	CHECK_STR(osp_mime_param_get(p->disp_params, p->ndisp_params,
	    "filename"), "Quarterly r\xc3\xa9port.pdf");
	CHECK_STR(osp_mime_param_get(p->params, p->nparams, "name"),
	    "report.pdf");
	CHECK_STR(p->description, "The report");
	CHECK_STR(p->language, "en, de");
	CHECK_STR(p->location, "http://example.org/report.pdf");
	CHECK_STR(p->md5, "Q2hlY2sgSW50ZWdyaXR5IQ==");
	CU_ASSERT(osp_mime_part_find(info.root, "3") == NULL);
	CU_ASSERT(osp_mime_part_find(info.root, "1.2.2.1") == NULL);
	CU_ASSERT(osp_mime_part_find(info.root, "2.1") == NULL);
	CU_ASSERT(osp_mime_part_find(info.root, "2.") == NULL);
	CU_ASSERT(osp_mime_part_find(info.root, "0") == NULL);
	CU_ASSERT(osp_mime_part_find(info.root, "x") == NULL);
	osp_pool_free(pool);
}

static void
test_nested_envelope(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	struct osp_mime_part *p, *m;
	const struct osp_envelope *env;
	int64_t t;

	CU_ASSERT_EQUAL_FATAL(parse_fixture("nested_rfc822.eml", NULL, pool,
	    &info), OSP_OK);
	/* To: undisclosed-recipients:; is an empty group */
	CU_ASSERT_FATAL(info.root->envelope->to != NULL);
	CU_ASSERT_EQUAL(info.root->envelope->to->kind, OSP_ADDR_GROUP_START);
	CHECK_STR(info.root->envelope->to->name, "undisclosed-recipients");
	CU_ASSERT_EQUAL(info.root->envelope->to->next->kind,
	    OSP_ADDR_GROUP_END);
	p = osp_mime_part_find(info.root, "2");
	CU_ASSERT_FATAL(p != NULL && p->nchildren == 1);
	m = p->children;
	/* the embedded message: its header starts the rfc822 body */
	CU_ASSERT_EQUAL(m->header_offset, p->body_offset);
	CU_ASSERT_EQUAL(m->body_offset + m->body_size,
	    p->body_offset + p->body_size);
	CHECK_STR(m->type, "multipart");
	env = m->envelope;
	CU_ASSERT_FATAL(env != NULL);
	CHECK_STR(env->subject, "Lunch");
	CHECK_STR(env->message_id, "<lunch@example.com>");
	CHECK_STR(env->from->name, "Grace");
	CHECK_STR(env->sender->name, "=?utf-8?q?Gr=C3=A2ce?=");
	CHECK_STR(env->reply_to->route, "@route.example,@r2.example");
	CHECK_STR(env->reply_to->localpart, "grace");
	CHECK_STR(env->reply_to->domain, "example.com");
	CU_ASSERT_EQUAL(osp_mime_parse_date(env->date, &t), OSP_OK);
	CU_ASSERT_EQUAL(t, 1546459200);
	CU_ASSERT_PTR_EQUAL(osp_mime_part_find(info.root, "2.1"),
	    m->children);
	CU_ASSERT(osp_mime_part_find(info.root, "2.3") == NULL);
	CU_ASSERT(osp_mime_part_find(info.root, "1.1") == NULL);
	CU_ASSERT_PTR_EQUAL(osp_mime_part_find(info.root, ""), info.root);
	/* a top-level message/rfc822: 1 is its body, 1.N the inner parts;
	 * an inner single part is N.1 */
	{
		static const char msg[] = "Content-Type: message/rfc822\r\n\r\n"
		    "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
		    "\r\na\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n"
		    "Subject: in\r\n\r\nb\r\n--x--\r\n";
		struct osp_msg_info i2;

		osp_msg_parse_mem(NULL, 0, msg, sizeof(msg) - 1, pool, &i2);
		CU_ASSERT_PTR_EQUAL(osp_mime_part_find(i2.root, "1"), i2.root);
		p = osp_mime_part_find(i2.root, "1.1");
		CU_ASSERT_PTR_EQUAL(p, i2.root->children->children);
		p = osp_mime_part_find(i2.root, "1.2.1");
		CU_ASSERT_FATAL(p != NULL);
		CU_ASSERT_EQUAL(p->body_size, 1);
		CHECK_STR(p->envelope->subject, "in");
		CU_ASSERT(osp_mime_part_find(i2.root, "1.2.2") == NULL);
		CU_ASSERT(osp_mime_part_find(i2.root, "2") == NULL);
	}
	osp_pool_free(pool);
}

static void
test_rfc2231(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	struct osp_mime_part *p;

	CU_ASSERT_EQUAL_FATAL(parse_fixture("rfc2231.eml", NULL, pool,
	    &info), OSP_OK);
	p = info.root;
	/* RFC 2231 §4.1's example; extended values win over plain ones */
	CHECK_STR(osp_mime_param_get(p->params, p->nparams, "title"),
	    "This is even more ***fun*** isn't it!");
	CU_ASSERT_EQUAL(p->nparams, 1);
	CHECK_STR(p->disposition, "attachment");
	CHECK_STR(osp_mime_param_get(p->disp_params, p->ndisp_params,
	    "filename"), "Gr\xc3\xbc\xc3\x9f" "e.txt");
	CHECK_STR(osp_mime_param_get(p->disp_params, p->ndisp_params,
	    "size"), "12");
	osp_pool_free(pool);
}

static void
test_8bit_addresses(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	const struct osp_envelope *env;
	struct osp_address *a;
	const char *ascii;

	CU_ASSERT_EQUAL_FATAL(parse_fixture("8bit.eml", NULL, pool, &info),
	    OSP_OK);
	env = info.root->envelope;
	/* SMTPUTF8 (RFC 6532): UTF-8 local part and domain as written */
	CHECK_STR(env->from->name, "J\xc3\xbcrgen M\xc3\xbcller");
	CHECK_STR(env->from->localpart, "j\xc3\xbcrgen");
	CHECK_STR(env->from->domain, "b\xc3\xbc" "cher.example");
	CU_ASSERT_EQUAL(osp_idna_to_ascii(pool, env->from->domain, &ascii),
	    OSP_OK);
	CHECK_STR(ascii, "xn--bcher-kva.example");
	CHECK_STR(env->to->domain, "xn--bcher-kva.example");
	CHECK_STR(osp_idna_to_unicode(pool, env->to->domain),
	    "b\xc3\xbc" "cher.example");
	CHECK_STR(env->to->next->localpart, "odd \"quoted\" local");
	CHECK_STR(osp_addr_format(pool, env->to->next),
	    "\"odd \\\"quoted\\\" local\"@example.com");
	/* display form: A-labels decoded */
	a = osp_addr_parse(pool, "info@xn--bcher-kva.example", 26,
	    OSP_ADDR_DECODE);
	CU_ASSERT_FATAL(a != NULL);
	CHECK_STR(a->domain, "b\xc3\xbc" "cher.example");
	CU_ASSERT(osp_idna_to_ascii(pool, "a..b", &ascii) != OSP_OK);
	CU_ASSERT(osp_idna_to_ascii(pool, "xn--a\xc3\xbc.example", &ascii) !=
	    OSP_OK);
	CU_ASSERT(osp_idna_to_ascii(pool, "B\xc3\x9c" "CHER.example", &ascii) ==
	    OSP_OK);
	CHECK_STR(ascii, "xn--bcher-kva.example");
	osp_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* decoders */

static void
test_base64(void)
{
	static const struct {
		const char *in, *out;
		bool bad;
	} t[] = {
		{ "aGVsbG8gd29ybGQ=", "hello world", false },
		{ "aGVs\r\nbG8g\r\n d29y bGQ=", "hello world", false },
		{ "aGVsbG8", "hel" "lo", false },
		{ "YQ==", "a", false },
		{ "YWI=", "ab", false },
		{ "YWJj", "abc", false },
		{ "Y*W!Jj", "abc", true },
		{ "YQ==YWJj", "a", false },	/* stops at padding */
		{ "", "", false },
	};
	struct osp_buf out = { 0 }, enc = { 0 };
	struct osp_base64_dec d;
	size_t i, j;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		/* whole, then one byte at a time (streaming) */
		osp_buf_reset(&out);
		osp_base64_dec_init(&d);
		osp_base64_decode(&d, t[i].in, strlen(t[i].in), &out);
		CU_ASSERT_EQUAL(out.len, strlen(t[i].out));
		CU_ASSERT(memcmp(out.data ? out.data : "", t[i].out,
		    out.len) == 0);
		CU_ASSERT_EQUAL(d.bad, t[i].bad);
		osp_buf_reset(&out);
		osp_base64_dec_init(&d);
		for (j = 0; t[i].in[j] != '\0'; j++)
			osp_base64_decode(&d, t[i].in + j, 1, &out);
		CU_ASSERT_EQUAL(out.len, strlen(t[i].out));
		CU_ASSERT(memcmp(out.data ? out.data : "", t[i].out,
		    out.len) == 0);
	}
	/* encode / decode round trip over all lengths */
	for (i = 0; i < 40; i++) {
		unsigned char raw[40];

		for (j = 0; j < i; j++)
			raw[j] = (unsigned char)(j * 37 + i);
		osp_buf_reset(&enc);
		osp_buf_reset(&out);
		osp_base64_encode(raw, i, &enc);
		CU_ASSERT_EQUAL(enc.len, (i + 2) / 3 * 4);
		osp_base64_dec_init(&d);
		osp_base64_decode(&d, enc.data ? enc.data : "", enc.len, &out);
		CU_ASSERT_EQUAL(out.len, i);
		CU_ASSERT(i == 0 || memcmp(out.data, raw, i) == 0);
	}
	osp_buf_deinit(&out);
	osp_buf_deinit(&enc);
}

static void
test_qp(void)
{
	static const struct {
		const char *in, *out;
		bool bad;
	} t[] = {
		{ "caf=C3=A9", "caf\xc3\xa9", false },
		{ "caf=c3=a9", "caf\xc3\xa9", false },
		{ "soft=\r\nbreak", "softbreak", false },
		{ "soft=\nbreak", "softbreak", false },
		{ "soft=  \r\nbreak", "softbreak", false },
		{ "trail   \r\nx", "trail\r\nx", false },
		{ "trail \t\nx", "trail\r\nx", false },
		{ "a = b", "a = b", true },
		{ "a=  \r\nb", "ab", false },
		{ "bad=ZZ", "bad=ZZ", true },
		{ "bad=4", "bad=4", true },
		{ "end=", "end", false },
		{ "bare\rcr", "bare\rcr", false },
		{ "x=3D=\r\n", "x=", false },
	};
	struct osp_buf out = { 0 };
	struct osp_qp_dec d;
	size_t i, j;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		osp_buf_reset(&out);
		osp_qp_dec_init(&d);
		osp_qp_decode(&d, t[i].in, strlen(t[i].in), &out);
		osp_qp_dec_finish(&d, &out);
		if (out.len != strlen(t[i].out) ||
		    memcmp(out.data, t[i].out, out.len) != 0)
			fprintf(stderr, "  qp \"%s\": got \"%.*s\"\n", t[i].in,
			    (int)out.len, out.data);
		CU_ASSERT_EQUAL(out.len, strlen(t[i].out));
		CU_ASSERT(memcmp(out.data, t[i].out, out.len) == 0);
		CU_ASSERT_EQUAL(d.bad, t[i].bad);
		osp_buf_reset(&out);
		osp_qp_dec_init(&d);
		for (j = 0; t[i].in[j] != '\0'; j++)
			osp_qp_decode(&d, t[i].in + j, 1, &out);
		osp_qp_dec_finish(&d, &out);
		CU_ASSERT_EQUAL(out.len, strlen(t[i].out));
		CU_ASSERT(memcmp(out.data, t[i].out, out.len) == 0);
	}
	osp_buf_deinit(&out);
}

static void
test_charset(void)
{
	static const struct {
		const char *cs, *in, *out;
		int ret;
	} t[] = {
		{ "utf-8", "caf\xc3\xa9", "caf\xc3\xa9", OSP_OK },
		{ "UTF-8", "bad\xff!", "bad\xef\xbf\xbd!", 1 },
		{ "iso-8859-1", "caf\xe9", "caf\xc3\xa9", OSP_OK },
		{ "windows-1252", "\x80", "\xe2\x82\xac", OSP_OK },
		{ "iso-8859-15", "\xa4", "\xe2\x82\xac", OSP_OK },
		{ "koi8-r", "\xf0\xd2\xc9\xd7\xc5\xd4",
		  "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", OSP_OK },
		{ "iso-2022-jp", "\x1b$B$3$s\x1b(B", "\xe3\x81\x93\xe3\x82\x93",
		  OSP_OK },
		{ "us-ascii", "plain", "plain", OSP_OK },
		{ "us-ascii", "caf\xc3\xa9", "caf\xc3\xa9", OSP_OK },
		{ "us-ascii", "caf\xe9", "caf\xc3\xa9", 1 },
		{ NULL, "caf\xe9", "caf\xc3\xa9", 1 },
		{ "x-no-such-charset", "caf\xe9", "caf\xc3\xa9", 1 },
		{ "utf-8//TRANSLIT", "x", "x", OSP_OK },
		{ "../../etc/passwd", "x", "x", OSP_OK },
		{ "utf-8*en", "\xc3\xa9", "\xc3\xa9", OSP_OK },
		{ "utf-8", "trunc\xe2\x82", "trunc\xef\xbf\xbd\xef\xbf\xbd",
		  1 },
	};
	struct osp_buf out = { 0 };
	size_t i;
	int ret;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		osp_buf_reset(&out);
		ret = osp_charset_to_utf8(t[i].cs, t[i].in, strlen(t[i].in),
		    &out);
		if (out.len != strlen(t[i].out) ||
		    memcmp(out.data, t[i].out, out.len) != 0 || ret != t[i].ret)
			fprintf(stderr, "  charset %s: got \"%.*s\" (%d)\n",
			    t[i].cs ? t[i].cs : "NULL", (int)out.len, out.data,
			    ret);
		CU_ASSERT_EQUAL(out.len, strlen(t[i].out));
		CU_ASSERT(memcmp(out.data, t[i].out, out.len) == 0);
		if (strstr(t[i].cs ? t[i].cs : "", "/") == NULL)
			CU_ASSERT_EQUAL(ret, t[i].ret);
	}
	osp_buf_deinit(&out);
}

static void
test_encoded_words(void)
{
	static const struct {
		const char *in, *out;
	} t[] = {
		{ "=?ISO-8859-1?Q?a?=", "a" },
		{ "=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=",
		  "Keld J\xc3\xb8rn Simonsen" },
		/* RFC 2047 §8 examples: whitespace between words */
		{ "(=?ISO-8859-1?Q?a?= b)", "(a b)" },
		{ "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)" },
		{ "(=?ISO-8859-1?Q?a?=  \r\n  =?ISO-8859-1?Q?b?=)", "(ab)" },
		{ "(=?ISO-8859-1?Q?a_b?=)", "(a b)" },
		{ "(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)" },
		/* a character split across two words */
		{ "=?utf-8?B?8J+Y?= =?utf-8?B?gA==?=", "\xf0\x9f\x98\x80" },
		{ "=?utf-8?Q?=E2=82?= =?utf-8?Q?=AC?=", "\xe2\x82\xac" },
		{ "=?utf-8*en?Q?x?=", "x" },
		{ "=?x-bogus?Q?caf=E9?=", "caf\xc3\xa9" },
		{ "=?utf-8?Q?bad=FF?=", "bad\xef\xbf\xbd" },
		{ "=?utf-8?X?nope?=", "=?utf-8?X?nope?=" },
		{ "=?utf-8?Q?unterminated", "=?utf-8?Q?unterminated" },
		{ "=??Q?a?=", "=??Q?a?=" },
		{ "plain  text", "plain  text" },
		{ "caf\xe9 latin1", "caf\xc3\xa9 latin1" },
		{ "Gr\xc3\xbc\xc3\x9f" "e", "Gr\xc3\xbc\xc3\x9f" "e" },
		{ "folded\r\n text", "folded text" },
		{ "a =?utf-8?q?b?= c", "a b c" },
		{ "", "" },
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	const char *got;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		got = osp_mime_decode_header(pool, t[i].in, strlen(t[i].in));
		CHECK_STR(got, t[i].out);
	}
	osp_pool_free(pool);
}

/* name, localpart, domain (or kind markers) per address */
struct exp_addr {
	const char	*in;
	const char	*want;	/* "name|local|domain;..." ("<g:" ">" ) */
};

static void
addr_render(const struct osp_address *a, struct osp_buf *b)
{
	for (; a != NULL; a = a->next) {
		if (a->kind == OSP_ADDR_GROUP_START)
			osp_buf_printf(b, "<%s:", a->name ? a->name : "");
		else if (a->kind == OSP_ADDR_GROUP_END)
			osp_buf_puts(b, ">");
		else
			osp_buf_printf(b, "%s|%s|%s%s%s;",
			    a->name ? a->name : "-",
			    a->localpart ? a->localpart : "-",
			    a->domain ? a->domain : "-",
			    a->route ? "|" : "", a->route ? a->route : "");
	}
}

static void
test_addresses(void)
{
	static const struct exp_addr t[] = {
		{ "alice@example.org", "-|alice|example.org;" },
		{ "Alice <alice@example.org>", "Alice|alice|example.org;" },
		{ "\"Smith, John\" <js@x.org>, b@y", "Smith, John|js|x.org;"
		  "-|b|y;" },
		{ "John (the man) Smith <js@x.org>", "John Smith|js|x.org;" },
		{ "js@x.org (John Smith)", "-|js|x.org;" },
		{ "\"a b\"@x.org", "-|a b|x.org;" },
		{ "\"a\\\"b\"@x.org", "-|a\"b|x.org;" },
		{ "a . b @ x . org", "-|a.b|x.org;" },
		{ "<@r1,@r2:u@d>", "-|u|d|@r1,@r2;" },
		{ "g: a@x, B <b@y>;, c@z", "<g:-|a|x;B|b|y;>-|c|z;" },
		{ "empty:;", "<empty:>" },
		{ "open: a@x", "<open:-|a|x;>" },
		{ "u@[192.0.2.1]", "-|u|[192.0.2.1];" },
		{ "j\xc3\xbcrgen@b\xc3\xbc" "cher.de", "-|j\xc3\xbcrgen|"
		  "b\xc3\xbc" "cher.de;" },
		{ "=?utf-8?q?J=C3=BC?= <j@x>", "=?utf-8?q?J=C3=BC?=|j|x;" },
		{ "Mr. Smith <s@x>", "Mr. Smith|s|x;" },
		{ "nodomain", "-|nodomain|-;" },
		{ ",,, a@b ,,", "-|a|b;" },
		{ "<>", "" },
		{ "<a@b", "-|a|b;" },
		{ "broken <a@b> junk, c@d", "broken|a|b;-|c|d;" },
		{ "\"unterminated <a@b>", "-|unterminated <a@b>|-;" },
		{ "(unterminated comment a@b", "" },
		{ "", "" },
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_buf b = { 0 };
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		osp_buf_reset(&b);
		addr_render(osp_addr_parse(pool, t[i].in, strlen(t[i].in), 0),
		    &b);
		CHECK_STR(b.data != NULL ? b.data : "", t[i].want);
	}
	/* decoded display form */
	osp_buf_reset(&b);
	{
		static const char in[] = "=?utf-8?q?J=C3=BC?= "
		    "<j@xn--bcher-kva.example>";

		addr_render(osp_addr_parse(pool, in, sizeof(in) - 1,
		    OSP_ADDR_DECODE), &b);
	}
	CHECK_STR(b.data, "J\xc3\xbc|j|b\xc3\xbc" "cher.example;");
	osp_buf_deinit(&b);
	osp_pool_free(pool);
}

static void
test_msgids(void)
{
	static const struct {
		const char *in;
		size_t max;
		const char *want;	/* ids joined by ' ' */
	} t[] = {
		{ "<a@b>", 10, "a@b" },
		{ " <a@b> <c@d>\r\n <e@f>", 10, "a@b c@d e@f" },
		{ "<a@b>(comment <x@y>) <c@d>", 10, "a@b c@d" },
		{ "Your message of \"<q@q>\" <a@b>", 10, "a@b" },
		{ "bare@id", 10, "bare@id" },
		{ "not an id", 10, "" },
		{ "<a @ b>", 10, "a@b" },
		{ "<1> <2> <3> <4> <5>", 3, "1 4 5" },
		{ "<> <a>", 10, "a" },
		{ "<unterminated", 10, "unterminated" },
		{ "", 10, "" },
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_buf b = { 0 };
	const char **ids;
	size_t i, j, n;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ids = osp_msgid_parse(pool, t[i].in, t[i].max, &n);
		osp_buf_reset(&b);
		for (j = 0; ids[j] != NULL; j++)
			osp_buf_printf(&b, "%s%s", j ? " " : "", ids[j]);
		CU_ASSERT_EQUAL(j, n);
		CHECK_STR(b.data ? b.data : "", t[i].want);
	}
	osp_buf_deinit(&b);
	osp_pool_free(pool);
}

static void
test_base_subject(void)
{
	static const struct {
		const char *in, *out;
	} t[] = {
		{ "Hello", "Hello" },
		{ "Re: Hello", "Hello" },
		{ "RE: re: Fwd: Hello", "Hello" },
		{ "Re[2]: Hello", "Hello" },
		{ "Rex: Hello", "Rex: Hello" },
		{ "[a][b] Re: [c] Hello", "Hello" },
		{ "Re [2]: Hello", "Hello" },
		{ "[list] Re: Hello", "Hello" },
		{ "Re: [list] Hello", "Hello" },
		{ "[list]", "[list]" },
		{ "Hello (fwd)", "Hello" },
		{ "Hello (FWD) (fwd)  ", "Hello" },
		{ "[Fwd: Re: Hello]", "Hello" },
		{ "  Fw:   Hello \t  world ", "Hello world" },
		{ "=?utf-8?q?Re=3A_caf=C3=A9?=", "caf\xc3\xa9" },
		{ "Re:", "" },
		{ "", "" },
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK_STR(osp_mime_base_subject(pool, t[i].in), t[i].out);
	osp_pool_free(pool);
}

static void
test_dates(void)
{
	static const struct {
		const char *in;
		int64_t t;	/* -1: invalid */
	} t[] = {
		{ "Tue, 4 Mar 2025 10:15:30 +0100", 1741079730 },
		{ "4 Mar 2025 10:15:30 +0100", 1741079730 },
		{ "Tue, 04 Mar 2025 09:15:30 GMT", 1741079730 },
		{ "Tue, 4 Mar 2025 04:15:30 EST", 1741079730 },
		{ "Tue, 4 Mar 2025 05:15:30 EDT", 1741079730 },
		{ "Tue, 4 Mar 2025 01:15:30 PST", 1741079730 },
		{ "Tue, 4 Mar 2025 09:15:30 A", 1741079730 },
		{ "Tue, 4 Mar 2025 09:15:30", 1741079730 },
		{ "Tue, 4 Mar 2025 09:15:30 +0000 (UTC)", 1741079730 },
		{ "Tue (comment), 4 (c) Mar 2025 09 : 15 : 30 -0000",
		  1741079730 },
		{ "1 Jan 99 23:59 EST", 915253140 },
		{ "1 Jan 70 00:00:00 +0000", 0 },
		{ "1 Jan 049 00:00:00 +0000", -662688000 },
		{ "29 Feb 2024 12:00:00 +0000", 1709208000 },
		{ "Thu, 1 January 2015 00:00:00 +0000", 1420070400 },
		{ "garbage", -1 },
		{ "32 Jan 2020 00:00 +0000", -1 },
		{ "1 Foo 2020 00:00 +0000", -1 },
		{ "1 Jan 2020 25:00 +0000", -1 },
		{ "1 Jan 2020", -1 },
		{ "", -1 },
	};
	size_t i;
	int64_t v;
	int ret;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		v = 12345;
		ret = osp_mime_parse_date(t[i].in, &v);
		if (t[i].t == -1) {
			CU_ASSERT_EQUAL(ret, -EINVAL);
			continue;
		}
		if (ret != OSP_OK || v != t[i].t)
			fprintf(stderr, "  date \"%s\": %d %lld\n", t[i].in,
			    ret, (long long)v);
		CU_ASSERT_EQUAL(ret, OSP_OK);
		CU_ASSERT_EQUAL(v, t[i].t);
	}
}

static void
test_preview(void)
{
	static const struct {
		const char *msg, *preview;
	} t[] = {
		{ "Content-Type: text/plain\r\n\r\n  Hi\r\n\r\n\tthere  \r\n",
		  "Hi there" },
		{ "Content-Type: text/html; charset=utf-8\r\n\r\n<html><head>"
		  "<title>T</title><style>p{}</style></head><body><p>A&amp;B"
		  "&nbsp;&lt;&#233;&#x20AC;&bogus;</p><!-- c --><script>x()"
		  "</script>end</body></html>",
		  "A&B <\xc3\xa9\xe2\x82\xac&bogus; end" },
		{ "Content-Type: text/plain; charset=iso-8859-1\r\n"
		  "Content-Transfer-Encoding: base64\r\n\r\nY2Fm6Q==\r\n",
		  "caf\xc3\xa9" },
		{ "Content-Type: text/plain\r\n\r\n> all\r\n> quoted\r\n",
		  "> all > quoted" },
		{ "Content-Type: image/png\r\n\r\nxxx", "" },
		{ "Content-Type: multipart/alternative; boundary=b\r\n\r\n"
		  "--b\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--b\r\n"
		  "Content-Type: text/plain\r\n\r\nplain\r\n--b--\r\n",
		  "plain" },
		{ "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		  "--b\r\nContent-Type: text/plain\r\nContent-Disposition: "
		  "attachment\r\n\r\nattached\r\n--b\r\n"
		  "Content-Type: text/html\r\n\r\n<i>html</i>\r\n--b--\r\n",
		  "html" },
		{ "\r\nno header, a body", "no header, a body" },
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	struct osp_buf big = { 0 };
	size_t i, chars;
	const unsigned char *c;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		osp_msg_parse_mem(NULL, 0, t[i].msg, strlen(t[i].msg), pool,
		    &info);
		CHECK_STR(info.preview, t[i].preview);
	}
	/* at most 256 characters, counted in UTF-8 characters */
	osp_buf_puts(&big, "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	for (i = 0; i < 400; i++)
		osp_buf_puts(&big, "\xc3\xa9");
	osp_msg_parse_mem(NULL, 0, big.data, big.len, pool, &info);
	for (chars = 0, c = (const unsigned char *)info.preview; *c; c++)
		if ((*c & 0xc0) != 0x80)
			chars++;
	CU_ASSERT_EQUAL(chars, 256);
	CU_ASSERT_EQUAL(strlen(info.preview), 512);
	osp_buf_deinit(&big);
	osp_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* serialization */

static void
test_serialize(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	struct osp_mime_part *back;
	struct osp_buf b = { 0 };
	size_t f, i;
	unsigned char *copy;
	int ret;

	for (f = 0; f < sizeof(fixtures) / sizeof(fixtures[0]); f++) {
		CU_ASSERT_EQUAL_FATAL(parse_fixture(fixtures[f].file,
		    "X: y\r\n", pool, &info), OSP_OK);
		osp_buf_reset(&b);
		osp_mime_serialize(info.root, &b);
		CU_ASSERT_EQUAL(osp_mime_deserialize(pool,
		    (unsigned char *)b.data, b.len, &back), OSP_OK);
		CU_ASSERT(osp_mime_part_equal(info.root, back));
		CU_ASSERT(back->parent == NULL);
		if (back->children != NULL)
			CU_ASSERT_PTR_EQUAL(back->children->parent, back);
		/* every truncation is rejected */
		for (i = 0; i < b.len; i++) {
			copy = osp_malloc(i + 1);	/* exact, for ASan */
			memcpy(copy, b.data, i);
			back = (void *)1;
			CU_ASSERT_EQUAL(osp_mime_deserialize(pool, copy, i,
			    &back), -EINVAL);
			CU_ASSERT(back == NULL);
			osp_free(copy);
		}
		/* trailing garbage too */
		osp_buf_putc(&b, 0);
		CU_ASSERT_EQUAL(osp_mime_deserialize(pool,
		    (unsigned char *)b.data, b.len, &back), -EINVAL);
		b.len--;
		/* flipped bytes: rejected or a tree, never a crash */
		copy = osp_malloc(b.len);
		for (i = 3; i < b.len; i++) {
			memcpy(copy, b.data, b.len);
			copy[i] ^= (unsigned char)(0x80 | i);
			ret = osp_mime_deserialize(pool, copy, b.len, &back);
			CU_ASSERT(ret == OSP_OK || ret == -EINVAL);
		}
		osp_free(copy);
	}
	/* wrong magic or version */
	CU_ASSERT_EQUAL(osp_mime_deserialize(pool,
	    (const unsigned char *)"OM\x02", 3, &back), -EINVAL);
	CU_ASSERT_EQUAL(osp_mime_deserialize(pool, NULL, 0, &back), -EINVAL);
	/* a huge count does not allocate */
	{
		static const char huge[] = "OM\x01\x00\x00\x00\x00\x00\x00"
		    "\x00\x00\x00\x05text\x06plain\xff\xff\xff\xff\x0f";

		CU_ASSERT_EQUAL(osp_mime_deserialize(pool,
		    (const unsigned char *)huge, sizeof(huge) - 1, &back),
		    -EINVAL);
	}
	osp_buf_deinit(&b);
	osp_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* hostile input: each finishes quickly with bounded memory */

static long
maxrss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

#if defined(__SANITIZE_ADDRESS__)
#define RSS_CHECKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_CHECKS 0
#endif
#endif
#ifndef RSS_CHECKS
#define RSS_CHECKS 1
#endif

/* Writes a generated message to a temporary file and parses it by fd. */
typedef void gen_fn(int fd);

static void
write_all(int fd, const void *p, size_t len)
{
	CU_ASSERT_FATAL(write(fd, p, len) == (ssize_t)len);
}

static void
parse_generated(gen_fn *gen, struct osp_pool *pool, struct osp_msg_info *info,
    double *secs_r)
{
	char path[1024];
	const char *error;
	struct timespec a, b;
	int fd;

	snprintf(path, sizeof(path), "%s/gen.eml", osp_test_tmpdir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	gen(fd);
	CU_ASSERT_FATAL(lseek(fd, 0, SEEK_SET) == 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	CU_ASSERT_EQUAL(osp_msg_parse_fd(fd, NULL, 0, pool, info, &error),
	    OSP_OK);
	clock_gettime(CLOCK_MONOTONIC, &b);
	close(fd);
	unlink(path);
	*secs_r = (double)(b.tv_sec - a.tv_sec) +
	    (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static void
gen_deep_multipart(int fd)
{
	char line[128];
	int i;

	for (i = 0; i < 10000; i++) {
		snprintf(line, sizeof(line), "Content-Type: multipart/mixed; "
		    "boundary=b%d\r\n\r\n--b%d\r\n", i, i);
		write_all(fd, line, strlen(line));
	}
	write_all(fd, "\r\nleaf\r\n", 8);
	for (i = 9999; i >= 0; i--) {
		snprintf(line, sizeof(line), "--b%d--\r\n", i);
		write_all(fd, line, strlen(line));
	}
}

static void
gen_deep_rfc822(int fd)
{
	static const char h[] = "Subject: x\r\nContent-Type: message/rfc822\r\n"
	    "\r\n";
	int i;

	for (i = 0; i < 10000; i++)
		write_all(fd, h, sizeof(h) - 1);
	write_all(fd, "\r\nbody\r\n", 8);
}

static void
gen_many_parts(int fd)
{
	static const char part[] = "--b\r\nContent-Type: text/plain\r\n"
	    "\r\nx\r\n";
	struct osp_buf b = { 0 };
	int i;

	osp_buf_puts(&b, "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (i = 0; i < 100000; i++) {
		osp_buf_puts(&b, part);
		if (b.len > 60000) {
			write_all(fd, b.data, b.len);
			osp_buf_reset(&b);
		}
	}
	osp_buf_puts(&b, "--b--\r\n");
	write_all(fd, b.data, b.len);
	osp_buf_deinit(&b);
}

static void
gen_huge_header(int fd)
{
	char *chunk = osp_malloc(1 << 20);
	int i;

	memset(chunk, 'a', 1 << 20);
	write_all(fd, "Subject: ", 9);
	for (i = 0; i < 10; i++)
		write_all(fd, chunk, 1 << 20);
	write_all(fd, "\r\nTo: =?utf-8?q?", 16);
	for (i = 0; i < 10; i++)
		write_all(fd, chunk, 1 << 20);
	write_all(fd, "\r\nContent-Type: text/plain\r\n\r\nbody\r\n", 36);
	osp_free(chunk);
}

static void
gen_many_headers(int fd)
{
	/* 200,000 folded Content-Type lines and many kept fields */
	struct osp_buf b = { 0 };
	int i;

	osp_buf_puts(&b, "Content-Type: multipart/mixed; boundary=b\r\n");
	for (i = 0; i < 200000; i++) {
		osp_buf_puts(&b, " ; x=yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n"
		    "References: <a@b>\r\n");
		if (b.len > 60000) {
			write_all(fd, b.data, b.len);
			osp_buf_reset(&b);
		}
	}
	osp_buf_puts(&b, "\r\n--b\r\n\r\nx\r\n--b--\r\n");
	write_all(fd, b.data, b.len);
	osp_buf_deinit(&b);
}

static void
test_hostile_deep(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	double secs;

	parse_generated(gen_deep_multipart, pool, &info, &secs);
	CU_ASSERT(tree_depth(info.root) <= OSP_MIME_MAX_DEPTH + 1);
	CU_ASSERT(tree_depth(info.root) >= OSP_MIME_MAX_DEPTH);
	CU_ASSERT(secs < 5.0);
	parse_generated(gen_deep_rfc822, pool, &info, &secs);
	CU_ASSERT(tree_depth(info.root) <= OSP_MIME_MAX_DEPTH + 1);
	CU_ASSERT(secs < 5.0);
	osp_pool_free(pool);
}

static void
test_hostile_parts(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	struct osp_mime_part *back;
	struct osp_buf b = { 0 };
	double secs;

	parse_generated(gen_many_parts, pool, &info, &secs);
	CU_ASSERT_EQUAL(tree_count(info.root), OSP_MIME_MAX_PARTS);
	CU_ASSERT(info.root->flags & OSP_MIME_F_TRUNCATED);
	CU_ASSERT(secs < 5.0);
	/* a capped tree still round-trips */
	osp_mime_serialize(info.root, &b);
	CU_ASSERT_EQUAL(osp_mime_deserialize(pool, (unsigned char *)b.data,
	    b.len, &back), OSP_OK);
	CU_ASSERT(osp_mime_part_equal(info.root, back));
	osp_buf_deinit(&b);
	osp_pool_free(pool);
}

static void
test_hostile_headers(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	long before = maxrss_kb();
	double secs;

	parse_generated(gen_huge_header, pool, &info, &secs);
	CU_ASSERT(secs < 5.0);
	CU_ASSERT_FATAL(info.root->envelope->subject != NULL);
	CU_ASSERT(strlen(info.root->envelope->subject) <= OSP_MIME_MAX_FIELD);
	CHECK_STR(info.root->type, "text");
	CU_ASSERT_EQUAL(info.root->body_size, 6);
	if (RSS_CHECKS)
		CU_ASSERT(maxrss_kb() - before < 48 * 1024);
	parse_generated(gen_many_headers, pool, &info, &secs);
	CU_ASSERT(secs < 5.0);
	/* the header is parsed up to its cap; the rest is still header */
	CU_ASSERT(info.root->header_size > 8 * 1024 * 1024);
	if (RSS_CHECKS)
		CU_ASSERT(maxrss_kb() - before < 64 * 1024);
	osp_pool_free(pool);
}

#define NUL_MSG "Sub\0ject: nul\0in\r\nContent-Type: text/plain\0;\r\n\r\n" \
	"body\0x"

static void
test_hostile_misc(void)
{
	static const struct {
		const char *msg;
		size_t len;	/* 0: strlen */
	} t[] = {
		{ "no blank line: just header\r\nX: y", 0 },
		{ "", 0 },
		{ "\r\n", 0 },
		{ "\n\n\n", 0 },
		{ "\r\r\r\rSubject: bare CR\rContent-Type: text/plain\r\r", 0 },
		{ "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
		  0 },
		{ "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n"
		  "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n"
		  "--a--\r\n--a--", 0 },
		{ "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a--\r\n"
		  "--a\r\n", 0 },
		{ "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a", 0 },
		{ "Content-Type: message/rfc822\r\n\r\n", 0 },
		{ "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
		  "base64\r\n\r\nAAAA", 0 },
		{ NUL_MSG, sizeof(NUL_MSG) - 1 },
		{ "Content-Type: text/plain; charset=\"\\\r\n\r\n", 0 },
		{ "Content-Type: ;;;===\"\"\"; a*=''; b*0*=%; b*1=x; c*99999=y"
		  "\r\n\r\n", 0 },
		{ ": empty name\r\n \r\n\tcontinued\r\n"
		  "From: <<<@@@>>>,,;;::\r\n\r\n", 0 },
		/* an outer boundary that extends an inner one */
		{ "Content-Type: multipart/mixed; boundary=abcd\n\n--abcd\n"
		  "Content-Type: multipart/mixed; boundary=abc\n\n--abc\n\n"
		  "inner\n--abcd\n\nsecond outer\n--abcd--\n", 0 },
		/* empty bodies right before boundaries, nested */
		{ "Content-Type: multipart/mixed; boundary=a\n\n--a\n"
		  "Content-Type: message/rfc822\n\nContent-Type: multipart/"
		  "mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
		  "--a\n\n--a--\n", 0 },
		{ "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n"
		  "--a\r\n\r\n--a\r\nContent-Type: multipart/mixed; "
		  "boundary=b\r\n\r\n--b\r\n--a--", 0 },
		{ "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n"
		  "\r\nSubject: digest default\r\n\r\nx\r\n--d--\r\n", 0 },
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	struct osp_mime_part *back, *p;
	struct osp_buf b = { 0 };
	size_t i, len;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		len = t[i].len != 0 ? t[i].len : strlen(t[i].msg);
		osp_msg_parse_mem(NULL, 0, t[i].msg, len, pool, &info);
		CU_ASSERT_FATAL(info.root != NULL);
		CU_ASSERT(info.root->body_offset + info.root->body_size == len);
		check_nesting(info.root, len);
		osp_buf_reset(&b);
		osp_mime_serialize(info.root, &b);
		CU_ASSERT_EQUAL(osp_mime_deserialize(pool,
		    (unsigned char *)b.data, b.len, &back), OSP_OK);
		CU_ASSERT(osp_mime_part_equal(info.root, back));
	}
	/* the longest matching boundary wins */
	for (i = 0; strstr(t[i].msg, "boundary=abcd") == NULL; i++)
		;
	osp_msg_parse_mem(NULL, 0, t[i].msg, strlen(t[i].msg), pool, &info);
	CU_ASSERT_EQUAL(info.root->nchildren, 2);
	CU_ASSERT_EQUAL(info.root->children->nchildren, 1);
	CU_ASSERT(!(info.root->flags & OSP_MIME_F_NO_END));
	p = osp_mime_part_find(info.root, "2");
	CU_ASSERT_FATAL(p != NULL);
	CU_ASSERT_EQUAL(p->body_size, 12);
	/* multipart/digest: children default to message/rfc822 */
	i = sizeof(t) / sizeof(t[0]) - 1;
	osp_msg_parse_mem(NULL, 0, t[i].msg, strlen(t[i].msg), pool, &info);
	p = osp_mime_part_find(info.root, "1");
	CU_ASSERT_FATAL(p != NULL);
	CHECK_STR(p->type, "message");
	CHECK_STR(p->children->envelope->subject, "digest default");
	osp_buf_deinit(&b);
	osp_pool_free(pool);
}

static double
now_secs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *
repeat(const char *head, const char *unit, size_t n, const char *tail)
{
	struct osp_buf b = { 0 };
	size_t i;

	osp_buf_puts(&b, head);
	for (i = 0; i < n; i++)
		osp_buf_puts(&b, unit);
	osp_buf_puts(&b, tail);
	return b.data;
}

/* Inputs built to make a naive parser quadratic: each helper stays
 * linear (a 64 KiB value takes milliseconds, not seconds). */
static void
test_hostile_quadratic(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_msg_info info;
	struct osp_buf out = { 0 };
	char *s;
	double t0 = now_secs();
	int64_t when;

	s = repeat("", "[a]", 1300, "x");
	CHECK_STR(osp_mime_base_subject(pool, s), "x");
	osp_free(s);
	s = repeat("", "[fwd: ", 10000, "");
	(void)osp_mime_base_subject(pool, s);
	osp_free(s);
	s = repeat("", "re: ", 1000, "x");
	CHECK_STR(osp_mime_base_subject(pool, s), "x");
	osp_free(s);
	s = repeat("", "=?a?q?x", 10000, "");
	(void)osp_mime_decode_header(pool, s, strlen(s));
	osp_free(s);
	s = repeat("", "<", 128 * 1024, "");
	osp_mime_html_to_text(s, strlen(s), &out);
	osp_free(s);
	s = repeat("", "(", 64 * 1024, "");
	(void)osp_addr_parse(pool, s, strlen(s), 0);
	(void)osp_msgid_parse(pool, s, 64, NULL);
	(void)osp_mime_parse_date(s, &when);
	osp_free(s);
	s = repeat("", "a:", 32 * 1024, "");
	(void)osp_addr_parse(pool, s, strlen(s), OSP_ADDR_DECODE);
	osp_free(s);
	s = repeat("", "<a@b", 16 * 1024, "");
	(void)osp_addr_parse(pool, s, strlen(s), 0);
	(void)osp_msgid_parse(pool, s, 64, NULL);
	osp_free(s);
	/* 64 sectioned parameters in each of 2,000 parts */
	{
		struct osp_buf msg = { 0 }, ct = { 0 };
		int i, j;

		osp_buf_puts(&ct, "Content-Type: text/plain");
		for (i = 0; i < 64; i++)
			for (j = 99; j >= 0; j -= 33)
				osp_buf_printf(&ct, ";\r\n p%d*%d*=%%41", i, j);
		osp_buf_puts(&msg, "Content-Type: multipart/mixed; "
		    "boundary=b\r\n\r\n");
		for (i = 0; i < 2000; i++)
			osp_buf_printf(&msg, "--b\r\n%s\r\n\r\nx\r\n",
			    ct.data);
		osp_msg_parse_mem(NULL, 0, msg.data, msg.len, pool, &info);
		CU_ASSERT_EQUAL(info.root->nchildren, 2000);
		osp_buf_deinit(&msg);
		osp_buf_deinit(&ct);
	}
	fprintf(stderr, "  (%.2fs)", now_secs() - t0);
	CU_ASSERT(now_secs() - t0 < 5.0);
	osp_buf_deinit(&out);
	osp_pool_free(pool);
}

int
main(int argc, char **argv)
{
	static const struct osp_test tests[] = {
		OSP_TEST(test_fixtures),
		OSP_TEST(test_prefix),
		OSP_TEST(test_crlf_vs_lf),
		OSP_TEST(test_chunking),
		OSP_TEST(test_parse_fd),
		OSP_TEST(test_alt_related_fields),
		OSP_TEST(test_nested_envelope),
		OSP_TEST(test_rfc2231),
		OSP_TEST(test_8bit_addresses),
		OSP_TEST(test_base64),
		OSP_TEST(test_qp),
		OSP_TEST(test_charset),
		OSP_TEST(test_encoded_words),
		OSP_TEST(test_addresses),
		OSP_TEST(test_msgids),
		OSP_TEST(test_base_subject),
		OSP_TEST(test_dates),
		OSP_TEST(test_preview),
		OSP_TEST(test_serialize),
		OSP_TEST(test_hostile_deep),
		OSP_TEST(test_hostile_parts),
		OSP_TEST(test_hostile_headers),
		OSP_TEST(test_hostile_misc),
		OSP_TEST(test_hostile_quadratic),
		OSP_TEST_END
	};

	return osp_test_main(argc, argv, "mime", tests);
}
