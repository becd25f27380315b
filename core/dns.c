/* SPDX-License-Identifier: ISC */
/* DNSSEC-validating stub of the core: libunbound on our libevent base, and
 * a bounds-checked parser for the wire-format answers it hands back. */
#include "core.h"

#include <sys/queue.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <unbound.h>
#include <unbound-event.h>

#define DNS_CLASS_IN		1
#define DNS_HDR_LEN		12
#define DNS_RR_MIN_LEN		11	/* root owner + type class ttl rdlen */
#define DNS_NAME_WIRE_MAX	255	/* RFC 1035 §3.1 */
/* Presentation text of a name: every octet may need "\DDD". */
#define DNS_NAME_TEXT_MAX	(DNS_NAME_WIRE_MAX * 4 + 1)
#define DNS_CNAME_HOPS_MAX	16
#define DNS_TIMEOUT_DEFAULT	10000	/* ms, when the config leaves 0 */

/*
 * One lookup. Unbound holds `q` as its callback argument until it calls
 * dns_ub_done() or the query is cancelled with ub_cancel(). The user's
 * callback always runs from our own timer, never from inside
 * ub_resolve_event() (unbound answers from cache synchronously) nor from
 * inside unbound's mesh callbacks, so a callback may freely start new
 * lookups, cancel others, or free the object that owns the query.
 */
struct osp_dns_query {
	TAILQ_ENTRY(osp_dns_query) entry;
	osp_dns_cb_fn		*cb;		/* NULL once cancelled */
	void			*arg;
	char			*name;
	uint16_t		 type;
	int			 async_id;
	struct osp_timer	*timer;		/* timeout, then delivery */
	bool			 ub_pending;	/* unbound may still call us */
	bool			 answered;	/* answer stored below */
	/* the answer, copied out of unbound's buffers */
	int			 ub_rcode;
	unsigned char		*pkt;
	size_t			 pktlen;
	int			 ub_sec;
	char			*why_bogus;
};

static struct ub_ctx	*dns_ctx;
static FILE		*dns_ub_log;	/* unbound's log, into ours */
static struct osp_buf	 dns_ub_line;
static uint64_t		 dns_timeout;
static bool		 dns_closing;
static TAILQ_HEAD(, osp_dns_query) dns_queries =
    TAILQ_HEAD_INITIALIZER(dns_queries);

static const struct {
	uint16_t	 type;
	const char	*name;
} dns_types[] = {
	{ OSP_DNS_A,	 "A" },
	{ OSP_DNS_CNAME, "CNAME" },
	{ OSP_DNS_PTR,	 "PTR" },
	{ OSP_DNS_MX,	 "MX" },
	{ OSP_DNS_TXT,	 "TXT" },
	{ OSP_DNS_AAAA,	 "AAAA" },
	{ OSP_DNS_TLSA,	 "TLSA" },
};

uint16_t
osp_dns_type_from_name(const char *name)
{
	size_t i;

	if (name == NULL)
		return 0;
	for (i = 0; i < sizeof(dns_types) / sizeof(dns_types[0]); i++)
		if (osp_str_eqi(name, dns_types[i].name))
			return dns_types[i].type;
	return 0;
}

const char *
osp_dns_type_name(uint16_t type)
{
	size_t i;

	for (i = 0; i < sizeof(dns_types) / sizeof(dns_types[0]); i++)
		if (dns_types[i].type == type)
			return dns_types[i].name;
	return NULL;
}

const char *
osp_dns_sec_name(enum osp_dns_sec sec)
{
	switch (sec) {
	case OSP_DNS_INSECURE:	return "insecure";
	case OSP_DNS_SECURE:	return "secure";
	case OSP_DNS_BOGUS:	return "bogus";
	}
	return "unknown";
}

const char *
osp_dns_rcode_name(int rcode)
{
	/* RFC 1035 §4.1.1, RFC 6895 §2.3 */
	switch (rcode) {
	case 0:		return "NOERROR";
	case 1:		return "FORMERR";
	case 2:		return "SERVFAIL";
	case 3:		return "NXDOMAIN";
	case 4:		return "NOTIMP";
	case 5:		return "REFUSED";
	case 6:		return "YXDOMAIN";
	case 7:		return "YXRRSET";
	case 8:		return "NXRRSET";
	case 9:		return "NOTAUTH";
	case 10:	return "NOTZONE";
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Wire format (RFC 1035 §4.1). Every read is checked against the packet
 * length: a hostile or truncated packet yields an error, never a read
 * past the buffer. */

static uint16_t
get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/*
 * Reads the name at *off_r into `out` (DNS_NAME_TEXT_MAX bytes) in
 * presentation form without the trailing dot ("." for the root), and
 * moves *off_r past the name as stored at that place. Compression
 * pointers (RFC 1035 §4.1.4) must point strictly before the label run
 * that holds them, so every jump goes backwards and a loop cannot be
 * built. Octets that are not plain printable characters are escaped as
 * in zone files (RFC 4343 §2.1), so names are safe to log and compare.
 */
static int
dns_name_read(const unsigned char *pkt, size_t len, size_t *off_r,
    char *out, const char **error_r)
{
	size_t off = *off_r, end = 0, limit = *off_r, o = 0, wire = 1;
	bool jumped = false;
	unsigned c, i;

	for (;;) {
		if (off >= len) {
			*error_r = "name runs past the end of the packet";
			return OSP_EDNS;
		}
		c = pkt[off];
		if ((c & 0xc0) == 0xc0) {
			size_t ptr;

			if (off + 1 >= len) {
				*error_r = "truncated compression pointer";
				return OSP_EDNS;
			}
			ptr = (size_t)(c & 0x3f) << 8 | pkt[off + 1];
			if (ptr >= limit) {
				*error_r = "compression pointer does not "
				    "point backwards";
				return OSP_EDNS;
			}
			if (!jumped)
				end = off + 2;
			jumped = true;
			limit = ptr;
			off = ptr;
			continue;
		}
		if ((c & 0xc0) != 0) {
			/* RFC 6891 §5: extended label types are obsolete */
			*error_r = "unknown label type";
			return OSP_EDNS;
		}
		off++;
		if (c == 0)
			break;
		if (c > len - off) {
			*error_r = "truncated label";
			return OSP_EDNS;
		}
		wire += c + 1;
		if (wire > DNS_NAME_WIRE_MAX) {
			*error_r = "name longer than 255 octets";
			return OSP_EDNS;
		}
		if (o > 0)
			out[o++] = '.';
		for (i = 0; i < c; i++) {
			unsigned char ch = pkt[off + i];

			if (ch <= 0x20 || ch >= 0x7f) {
				snprintf(out + o, 5, "\\%03u", ch);
				o += 4;
			} else if (strchr(".\\\"();@$", ch) != NULL) {
				out[o++] = '\\';
				out[o++] = (char)ch;
			} else
				out[o++] = (char)ch;
		}
		off += c;
	}
	if (!jumped)
		end = off;
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	*off_r = end;
	return OSP_OK;
}

/* A name that must fill the RDATA exactly (CNAME, PTR, MX exchange). */
static int
dns_rdata_name(struct osp_pool *pool, const unsigned char *pkt, size_t off,
    size_t rdend, const char **name_r, const char **error_r)
{
	char name[DNS_NAME_TEXT_MAX];
	int ret;

	/* the name may point anywhere before, but must end inside rdata */
	if ((ret = dns_name_read(pkt, rdend, &off, name, error_r)) != OSP_OK)
		return ret;
	if (off != rdend) {
		*error_r = "name does not fill the record data";
		return OSP_EDNS;
	}
	*name_r = osp_pstrdup(pool, name);
	return OSP_OK;
}

struct dns_rrinfo {
	const char	*owner;
	uint16_t	 type, class;
	uint32_t	 ttl;
	size_t		 rdoff, rdlen;
};

static int
dns_rdata_parse(struct osp_pool *pool, const unsigned char *pkt,
    const struct dns_rrinfo *ri, struct osp_dns_rr *rr, const char **error_r)
{
	const unsigned char *rd = pkt + ri->rdoff;
	size_t rdend = ri->rdoff + ri->rdlen, i, n;
	char *text;

	rr->type = ri->type;
	rr->ttl = ri->ttl;
	switch (ri->type) {
	case OSP_DNS_A:
		if (ri->rdlen != 4)
			goto bad;
		memcpy(&rr->u.a, rd, 4);
		return OSP_OK;
	case OSP_DNS_AAAA:
		if (ri->rdlen != 16)
			goto bad;
		memcpy(&rr->u.aaaa, rd, 16);
		return OSP_OK;
	case OSP_DNS_MX:
		/* RFC 1035 §3.3.9 */
		if (ri->rdlen < 3)
			goto bad;
		rr->u.mx.pref = get16(rd);
		return dns_rdata_name(pool, pkt, ri->rdoff + 2, rdend,
		    &rr->u.mx.host, error_r);
	case OSP_DNS_CNAME:
	case OSP_DNS_PTR:
		return dns_rdata_name(pool, pkt, ri->rdoff, rdend,
		    &rr->u.name, error_r);
	case OSP_DNS_TXT:
		/* RFC 1035 §3.3.14: one or more <character-string>s, which
		 * mail uses concatenated (RFC 7208 §3.3, RFC 6376 §3.6.2.2) */
		if (ri->rdlen < 1)
			goto bad;
		text = osp_palloc(pool, ri->rdlen);
		for (i = 0, n = 0; i < ri->rdlen; i += 1 + rd[i]) {
			if (rd[i] > ri->rdlen - i - 1)
				goto bad;
			memcpy(text + n, rd + i + 1, rd[i]);
			n += rd[i];
		}
		text[n] = '\0';	/* n < rdlen: at least one length octet */
		rr->u.txt.text = text;
		rr->u.txt.len = n;
		return OSP_OK;
	case OSP_DNS_TLSA:
		/* RFC 6698 §2.1 */
		if (ri->rdlen < 3)
			goto bad;
		rr->u.tlsa.usage = rd[0];
		rr->u.tlsa.selector = rd[1];
		rr->u.tlsa.mtype = rd[2];
		rr->u.tlsa.len = ri->rdlen - 3;
		rr->u.tlsa.data = osp_pmemdup(pool, rd + 3, ri->rdlen - 3);
		return OSP_OK;
	}
	*error_r = "record type not supported";
	return OSP_EDNS;
bad:
	*error_r = "malformed record data";
	return OSP_EDNS;
}

int
osp_dns_parse(struct osp_pool *pool, const unsigned char *pkt, size_t len,
    uint16_t qtype, struct osp_dns_result *res, const char **error_r)
{
	char name[DNS_NAME_TEXT_MAX];
	struct dns_rrinfo *ri;
	struct osp_dns_rr *rr;
	const char *cur;
	size_t off, i, n;
	unsigned an, flags, hops;
	int ret;

	memset(res, 0, sizeof(*res));
	if (pkt == NULL || len < DNS_HDR_LEN) {
		*error_r = "packet shorter than the DNS header";
		return OSP_EDNS;
	}
	flags = get16(pkt + 2);
	if ((flags & 0x8000) == 0) {
		*error_r = "not a response";
		return OSP_EDNS;
	}
	res->rcode = (int)(flags & 0x000f);
	res->nxdomain = res->rcode == 3;
	if (get16(pkt + 4) != 1) {
		*error_r = "question count is not 1";
		return OSP_EDNS;
	}
	an = get16(pkt + 6);

	off = DNS_HDR_LEN;
	if ((ret = dns_name_read(pkt, len, &off, name, error_r)) != OSP_OK)
		return ret;
	if (len - off < 4) {
		*error_r = "truncated question";
		return OSP_EDNS;
	}
	res->qname = osp_pstrdup(pool, name);
	res->qtype = get16(pkt + off);
	off += 4;
	if (res->qtype != qtype) {
		*error_r = "answer is for another type";
		return OSP_EDNS;
	}

	/* Bound the count by the bytes present before allocating. */
	if (an > (len - off) / DNS_RR_MIN_LEN) {
		*error_r = "answer count exceeds the packet size";
		return OSP_EDNS;
	}
	ri = osp_pcalloc(pool, an + 1, sizeof(*ri));
	for (i = 0; i < an; i++) {
		if ((ret = dns_name_read(pkt, len, &off, name,
		    error_r)) != OSP_OK)
			return ret;
		if (len - off < 10) {
			*error_r = "truncated record header";
			return OSP_EDNS;
		}
		ri[i].owner = osp_pstrdup(pool, name);
		ri[i].type = get16(pkt + off);
		ri[i].class = get16(pkt + off + 2);
		ri[i].ttl = get32(pkt + off + 4);
		/* RFC 2181 §8: a TTL with the top bit set means zero */
		if (ri[i].ttl & 0x80000000U)
			ri[i].ttl = 0;
		ri[i].rdlen = get16(pkt + off + 8);
		off += 10;
		if (ri[i].rdlen > len - off) {
			*error_r = "truncated record data";
			return OSP_EDNS;
		}
		ri[i].rdoff = off;
		off += ri[i].rdlen;
	}

	/* Follow the CNAME chain from the question (RFC 1034 §3.6.2). */
	cur = res->qname;
	for (hops = 0; qtype != OSP_DNS_CNAME; hops++) {
		for (i = 0; i < an; i++)
			if (ri[i].type == OSP_DNS_CNAME &&
			    ri[i].class == DNS_CLASS_IN &&
			    osp_str_eqi(ri[i].owner, cur))
				break;
		if (i == an)
			break;
		if (hops == DNS_CNAME_HOPS_MAX) {
			*error_r = "CNAME chain too long or looping";
			return OSP_EDNS;
		}
		if ((ret = dns_rdata_name(pool, pkt, ri[i].rdoff,
		    ri[i].rdoff + ri[i].rdlen, &cur, error_r)) != OSP_OK)
			return ret;
	}
	if (cur != res->qname)
		res->canonname = cur;

	for (i = 0, n = 0; i < an; i++)
		if (ri[i].type == qtype && ri[i].class == DNS_CLASS_IN &&
		    osp_str_eqi(ri[i].owner, cur))
			n++;
	rr = osp_pcalloc(pool, n + 1, sizeof(*rr));
	for (i = 0, n = 0; i < an; i++) {
		if (ri[i].type != qtype || ri[i].class != DNS_CLASS_IN ||
		    !osp_str_eqi(ri[i].owner, cur))
			continue;
		if ((ret = dns_rdata_parse(pool, pkt, &ri[i], &rr[n],
		    error_r)) != OSP_OK)
			return ret;
		n++;
	}
	res->n = n;
	res->rr = rr;
	return OSP_OK;
}

/* ------------------------------------------------------------------ */
/* Lookups */

static void
dns_query_free(struct osp_dns_query *q)
{
	osp_timer_free(q->timer);
	osp_free(q->name);
	osp_free(q->pkt);
	osp_free(q->why_bogus);
	osp_free(q);
}

/* Unbound is done with q: it answered, failed, or the context is being
 * deleted. Buffers are unbound's: copy what we need. */
static void
dns_ub_done(void *arg, int rcode, void *packet, int packet_len, int sec,
    char *why_bogus, int was_ratelimited)
{
	struct osp_dns_query *q = arg;

	q->ub_pending = false;
	if (dns_closing)
		return;		/* osp_dns_deinit frees q */
	if (q->cb == NULL) {
		/* cancelled, but ub_cancel could not reach it */
		TAILQ_REMOVE(&dns_queries, q, entry);
		dns_query_free(q);
		return;
	}
	q->answered = true;
	q->ub_rcode = rcode;
	q->ub_sec = sec;
	if (rcode == 0 && packet != NULL && packet_len > 0) {
		q->pktlen = (size_t)packet_len;
		q->pkt = osp_malloc(q->pktlen);
		memcpy(q->pkt, packet, q->pktlen);
	}
	if (why_bogus != NULL)
		q->why_bogus = osp_strdup(why_bogus);
	/* Deliver from the loop, outside unbound's call stack. */
	osp_timer_del(q->timer);
	osp_timer_add(q->timer, 0);
}

/* Asks unbound to forget q. True when it will not call dns_ub_done. */
static bool
dns_ub_forget(struct osp_dns_query *q)
{
	if (!q->ub_pending)
		return true;
	if (q->async_id != 0 && ub_cancel(dns_ctx, q->async_id) == UB_NOERROR) {
		q->ub_pending = false;
		return true;
	}
	return false;
}

static void
dns_deliver(struct osp_dns_query *q)
{
	struct osp_dns_result res;
	struct osp_pool *pool;
	const char *error;
	char safe[128];
	int err;

	pool = osp_pool_new(NULL);
	if (q->ub_rcode != 0 || q->pkt == NULL) {
		osp_log_debug("dns", "lookup failed name=%s type=%s rcode=%d",
		    osp_log_safe(safe, sizeof(safe), q->name, strlen(q->name)),
		    osp_dns_type_name(q->type), q->ub_rcode);
		err = OSP_EDNS;
	} else if ((err = osp_dns_parse(pool, q->pkt, q->pktlen, q->type,
	    &res, &error)) != OSP_OK) {
		osp_log_warn("dns", "unparseable answer name=%s type=%s "
		    "error=\"%s\"", osp_log_safe(safe, sizeof(safe), q->name,
		    strlen(q->name)), osp_dns_type_name(q->type), error);
	} else if (res.rcode != 0 && res.rcode != 3) {
		err = OSP_EDNS;
	} else {
		if (q->ub_sec == 2)
			res.sec = OSP_DNS_SECURE;
		else if (q->ub_sec == 1) {
			/* Bogus data is never handed out: callers that
			 * forget to look at sec cannot use it. */
			res.sec = OSP_DNS_BOGUS;
			res.why_bogus = q->why_bogus != NULL ?
			    osp_pstrdup(pool, q->why_bogus) :
			    "validation failed";
			res.n = 0;
			res.canonname = NULL;
		} else
			res.sec = OSP_DNS_INSECURE;
	}
	q->cb(q->arg, err, err == OSP_OK ? &res : NULL);
	osp_pool_free(pool);
}

static void
dns_timer(void *arg)
{
	struct osp_dns_query *q = arg;

	TAILQ_REMOVE(&dns_queries, q, entry);
	if (q->answered) {
		dns_deliver(q);
		dns_query_free(q);
		return;
	}
	/* Timeout: unbound may still be retrying; a late answer must not
	 * reach the caller. */
	osp_log_debug("dns", "lookup timed out type=%s",
	    osp_dns_type_name(q->type));
	if (dns_ub_forget(q)) {
		q->cb(q->arg, OSP_EDNS, NULL);
		dns_query_free(q);
	} else {
		osp_dns_cb_fn *cb = q->cb;

		/* keep q for unbound's callback, which frees it */
		q->cb = NULL;
		TAILQ_INSERT_TAIL(&dns_queries, q, entry);
		cb(q->arg, OSP_EDNS, NULL);
	}
}

int
osp_dns_lookup(const char *name, uint16_t type, osp_dns_cb_fn *cb,
    void *arg, struct osp_dns_query **q_r)
{
	struct osp_dns_query *q;
	int ret;

	if (q_r != NULL)
		*q_r = NULL;
	if (dns_ctx == NULL || dns_closing)
		return OSP_EDNS;
	if (name == NULL || *name == '\0' || strlen(name) > 1004 ||
	    osp_dns_type_name(type) == NULL || cb == NULL)
		return -EINVAL;
	q = osp_calloc(1, sizeof(*q));
	q->cb = cb;
	q->arg = arg;
	q->name = osp_strdup(name);
	q->type = type;
	q->timer = osp_timer_new(dns_timer, q);
	q->ub_pending = true;
	TAILQ_INSERT_TAIL(&dns_queries, q, entry);
	osp_timer_add(q->timer, dns_timeout);

	ret = ub_resolve_event(dns_ctx, name, type, DNS_CLASS_IN, q,
	    dns_ub_done, &q->async_id);
	if (ret != 0) {
		char safe[128];

		osp_log_warn("dns", "lookup not started name=%s error=\"%s\"",
		    osp_log_safe(safe, sizeof(safe), name, strlen(name)),
		    ub_strerror(ret));
		/* Unbound calls back only for attached queries, and the
		 * caller gets no callback after an error: drop q either way
		 * (its delivery timer goes with it). */
		TAILQ_REMOVE(&dns_queries, q, entry);
		dns_query_free(q);
		return ret == UB_NOMEM ? -ENOMEM : OSP_EDNS;
	}
	if (q_r != NULL)
		*q_r = q;
	return OSP_OK;
}

void
osp_dns_cancel(struct osp_dns_query *q)
{
	if (q == NULL || q->cb == NULL)
		return;
	if (dns_ub_forget(q)) {
		TAILQ_REMOVE(&dns_queries, q, entry);
		dns_query_free(q);
	} else {
		/* unbound's callback frees it */
		q->cb = NULL;
		osp_timer_del(q->timer);
	}
}

/* ------------------------------------------------------------------ */
/* Setup */

/* One line of unbound's log ("[time] libunbound[pid:tid] error: text")
 * into ours, without unbound's own prefix. */
static void
dns_ub_log_line(const char *line)
{
	const char *p = line, *q;
	char safe[512];

	if (*p == '[' && (q = strstr(p, "] ")) != NULL)
		p = q + 2;
	if (strncmp(p, "libunbound[", 11) == 0 &&
	    (q = strstr(p, "] ")) != NULL)
		p = q + 2;
	if (strncmp(p, "error:", 6) == 0 || strncmp(p, "warning:", 8) == 0)
		osp_log_warn("dns", "unbound %s",
		    osp_log_safe(safe, sizeof(safe), p, strlen(p)));
	else
		osp_log_debug("dns", "unbound %s",
		    osp_log_safe(safe, sizeof(safe), p, strlen(p)));
}

static ssize_t
dns_ub_log_write(void *cookie, const char *buf, size_t size)
{
	char *nl;

	osp_buf_append(&dns_ub_line, buf, size);
	while ((nl = memchr(dns_ub_line.data, '\n', dns_ub_line.len)) !=
	    NULL) {
		*nl = '\0';
		dns_ub_log_line(dns_ub_line.data);
		osp_buf_consume(&dns_ub_line, (size_t)(nl - dns_ub_line.data) +
		    1);
	}
	if (dns_ub_line.len > 4096) {	/* no newline: flush as is */
		dns_ub_log_line(dns_ub_line.data);
		osp_buf_reset(&dns_ub_line);
	}
	return (ssize_t)size;
}

static int
dns_set_option(const char *opt, const char **error_r)
{
	static char msg[512];
	char name[128];
	const char *colon, *val;
	size_t n;
	int ret;

	colon = strchr(opt, ':');
	if (colon == NULL || colon == opt ||
	    (n = (size_t)(colon - opt) + 1) >= sizeof(name)) {
		snprintf(msg, sizeof(msg), "dns unbound-options: \"%s\": "
		    "expected \"name: value\"", opt);
		*error_r = msg;
		return OSP_ECONFIG;
	}
	memcpy(name, opt, n);
	name[n] = '\0';
	for (val = colon + 1; *val == ' ' || *val == '\t'; val++)
		;
	/* ub_ctx_set_option takes the name with its colon */
	if ((ret = ub_ctx_set_option(dns_ctx, name, val)) != UB_NOERROR) {
		snprintf(msg, sizeof(msg), "dns unbound-options: \"%s\": %s",
		    opt, ub_strerror(ret));
		*error_r = msg;
		return OSP_ECONFIG;
	}
	return OSP_OK;
}

static int
dns_configure(const struct osp_core_conf *cc, const char **error_r)
{
	static char msg[1024];
	const char *file;
	size_t i;
	int ret;

	/* Errors only, into our log. Never resolv.conf nor /etc/hosts: a
	 * mail server must see what the DNS says, validated. */
	(void)ub_ctx_debuglevel(dns_ctx, 0);
	if (dns_ub_log == NULL) {
		static const cookie_io_functions_t fns = {
			.write = dns_ub_log_write,
		};

		dns_ub_log = fopencookie(NULL, "w", fns);
		if (dns_ub_log != NULL)
			setvbuf(dns_ub_log, NULL, _IOLBF, 0);
	}
	if (dns_ub_log != NULL)
		(void)ub_ctx_debugout(dns_ctx, dns_ub_log);

	for (i = 0; i < cc->dns.forwarders.n; i++) {
		const struct osp_conf_addr *a = &OSP_CONF_ITEM(
		    &cc->dns.forwarders, struct osp_conf_addr, i);
		char host[INET6_ADDRSTRLEN], fwd[INET6_ADDRSTRLEN + 8];
		const void *p;

		if (a->ss.ss_family == AF_INET)
			p = &((const struct sockaddr_in *)&a->ss)->sin_addr;
		else if (a->ss.ss_family == AF_INET6)
			p = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
		else
			p = NULL;
		if (p == NULL || inet_ntop(a->ss.ss_family, p, host,
		    sizeof(host)) == NULL) {
			snprintf(msg, sizeof(msg), "dns forwarders: %s: not an "
			    "IP address", a->text != NULL ? a->text : "?");
			*error_r = msg;
			return OSP_ECONFIG;
		}
		snprintf(fwd, sizeof(fwd), "%s@%u", host,
		    a->port != 0 ? a->port : 53);
		if ((ret = ub_ctx_set_fwd(dns_ctx, fwd)) != UB_NOERROR) {
			snprintf(msg, sizeof(msg), "dns forwarders: %s: %s",
			    fwd, ub_strerror(ret));
			*error_r = msg;
			return OSP_ECONFIG;
		}
	}
	for (i = 0; i < cc->dns.trust_anchors.n; i++) {
		const char *ta = OSP_CONF_ITEM(&cc->dns.trust_anchors,
		    const char *, i);

		if ((ret = ub_ctx_add_ta(dns_ctx, ta)) != UB_NOERROR) {
			snprintf(msg, sizeof(msg), "dns trust-anchors: \"%s\": "
			    "%s", ta, ub_strerror(ret));
			*error_r = msg;
			return OSP_ECONFIG;
		}
	}
	if (cc->dns.root_anchor) {
		file = cc->dns.root_anchor_file != NULL &&
		    *cc->dns.root_anchor_file != '\0' ?
		    cc->dns.root_anchor_file : OSP_ROOT_ANCHOR;
		if (access(file, R_OK) == -1) {
			snprintf(msg, sizeof(msg), "dns root-anchor-file %s: "
			    "%s (install the Debian package dns-root-data, or "
			    "set root-anchor-file)", file, strerror(errno));
			*error_r = msg;
			return OSP_ECONFIG;
		}
		/* A static anchor: the file is kept current by its package
		 * (RFC 5011 tracking would need a writable file). */
		if ((ret = ub_ctx_add_ta_file(dns_ctx, file)) != UB_NOERROR) {
			snprintf(msg, sizeof(msg), "dns root-anchor-file %s: "
			    "%s", file, ub_strerror(ret));
			*error_r = msg;
			return OSP_ECONFIG;
		}
	}
	for (i = 0; i < cc->dns.unbound_options.n; i++) {
		ret = dns_set_option(OSP_CONF_ITEM(&cc->dns.unbound_options,
		    const char *, i), error_r);
		if (ret != OSP_OK)
			return ret;
	}
	/*
	 * Unbound reads anchors and builds its modules lazily, at the first
	 * query. Finalise now so that a bad anchor or option is reported at
	 * startup (and by `config test`), not as SERVFAIL at the first
	 * lookup: removing a local zone that cannot exist is the public call
	 * that finalises without other effect.
	 */
	if ((ret = ub_ctx_zone_remove(dns_ctx, "osprey-finalize.invalid.")) !=
	    UB_NOERROR) {
		snprintf(msg, sizeof(msg), "dns: resolver setup failed: %s "
		    "(check trust-anchors and unbound-options)",
		    ub_strerror(ret));
		*error_r = msg;
		return OSP_ECONFIG;
	}
	return OSP_OK;
}

/* After ub_ctx_delete, which points unbound's log away from our stream. */
static void
dns_log_close(void)
{
	if (dns_ub_log != NULL) {
		fclose(dns_ub_log);
		dns_ub_log = NULL;
	}
	if (dns_ub_line.len > 0)
		dns_ub_log_line(dns_ub_line.data);
	osp_buf_deinit(&dns_ub_line);
}

int
osp_dns_init(const struct osp_core_conf *cc, const char **error_r)
{
	struct event_base *base;
	int ret;

	if (dns_ctx != NULL) {
		*error_r = "dns: resolver already initialised";
		return OSP_ERROR;
	}
	if ((base = osp_event_base()) == NULL) {
		*error_r = "dns: event loop not initialised";
		return OSP_ERROR;
	}
	if ((dns_ctx = ub_ctx_create_event(base)) == NULL) {
		*error_r = "dns: could not create the resolver context";
		return OSP_ERROR;
	}
	dns_timeout = cc->dns.timeout != 0 ? cc->dns.timeout :
	    DNS_TIMEOUT_DEFAULT;
	if ((ret = dns_configure(cc, error_r)) != OSP_OK) {
		ub_ctx_delete(dns_ctx);
		dns_ctx = NULL;
		dns_log_close();
		return ret;
	}
	osp_log_debug("dns", "resolver ready forwarders=%zu anchors=%zu "
	    "root-anchor=%s", cc->dns.forwarders.n, cc->dns.trust_anchors.n,
	    cc->dns.root_anchor ? "yes" : "no");
	return OSP_OK;
}

void
osp_dns_deinit(void)
{
	struct osp_dns_query *q;

	if (dns_ctx == NULL)
		return;
	/* Deleting the context fails the queries still in unbound's mesh
	 * through dns_ub_done, which ignores them while closing. */
	dns_closing = true;
	ub_ctx_delete(dns_ctx);
	dns_ctx = NULL;
	while ((q = TAILQ_FIRST(&dns_queries)) != NULL) {
		TAILQ_REMOVE(&dns_queries, q, entry);
		dns_query_free(q);
	}
	dns_closing = false;
	dns_log_close();
}
