/* SPDX-License-Identifier: ISC */
/* A small SMTP AUTH client on GnuTLS for integration tests: every SASL
 * mechanism Osprey offers, including SCRAM-PLUS with tls-exporter (RFC
 * 9266) and tls-unique (RFC 5929), which Python cannot do. */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

static const char usage[] =
	"usage: smtp_auth_client --host HOST --port PORT [--starttls|--tls]\n"
	"       [--tls12] --mech MECH [--user USER] [--pass PASS]\n"
	"       [--cert CERT.pem --key KEY.pem] [--no-ir] [--expect-fail]\n"
	"Connects, EHLO, STARTTLS if asked, AUTH MECH, QUIT. Prints the\n"
	"final AUTH reply; exit 0 on 235 (with --expect-fail: on a failure\n"
	"reply), 1 otherwise, 2 on usage or connection errors.\n"
	"MECH: PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1[-PLUS] SCRAM-SHA-256[-PLUS]\n"
	"EXTERNAL (--user is then the authorization identity, may be empty).\n"
	"--no-ir: no initial response; answer the empty 334 instead.\n";

static struct {
	const char		*host, *port, *mech, *user, *pass;
	const char		*cert, *key;
	bool			 starttls, tls, tls12, expect_fail, no_ir;
	bool			 quitting;	/* EOF is fine now */
	int			 fd;
	gnutls_session_t	 ses;
	gnutls_certificate_credentials_t cred;
	char			 in[65536];
	size_t			 inlen;
} cl = { .fd = -1, .user = "", .pass = "" };

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "smtp_auth_client: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

/* snprintf that refuses to truncate. */
static void __attribute__((format(printf, 3, 4)))
xsnprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		die("message too long");
}

/* ---- transport ------------------------------------------------------- */

static void
net_write(const void *p, size_t len)
{
	const char *s = p;
	ssize_t n;

	while (len > 0) {
		if (cl.ses != NULL)
			n = gnutls_record_send(cl.ses, s, len);
		else
			n = write(cl.fd, s, len);
		if (n < 0 && (n == GNUTLS_E_AGAIN ||
		    n == GNUTLS_E_INTERRUPTED ||
		    (cl.ses == NULL && errno == EINTR)))
			continue;
		if (n <= 0)
			die("write failed");
		s += n;
		len -= (size_t)n;
	}
}

static void
send_line(const char *line)
{
	fprintf(stderr, "C: %s\n", strncmp(line, "AUTH", 4) == 0 ||
	    strncmp(line, "EHLO", 4) == 0 || strncmp(line, "STARTTLS", 8) ==
	    0 || strncmp(line, "QUIT", 4) == 0 ? line : "<sasl response>");
	net_write(line, strlen(line));
	net_write("\r\n", 2);
}

/* One line without CRLF into buf; the reply code's line. */
static void
read_line(char *buf, size_t size)
{
	char *nl;
	ssize_t n;
	size_t len;

	while ((nl = memchr(cl.in, '\n', cl.inlen)) == NULL) {
		if (cl.inlen == sizeof(cl.in))
			die("line too long");
		if (cl.ses != NULL)
			n = gnutls_record_recv(cl.ses, cl.in + cl.inlen,
			    sizeof(cl.in) - cl.inlen);
		else
			n = read(cl.fd, cl.in + cl.inlen,
			    sizeof(cl.in) - cl.inlen);
		if (n < 0 && (n == GNUTLS_E_AGAIN ||
		    n == GNUTLS_E_INTERRUPTED ||
		    (cl.ses == NULL && errno == EINTR)))
			continue;
		if (n <= 0 && cl.quitting) {
			snprintf(buf, size, "221 (connection closed)");
			return;
		}
		if (n <= 0)
			die("connection closed or timed out while reading");
		cl.inlen += (size_t)n;
	}
	len = (size_t)(nl - cl.in);
	if (len > 0 && cl.in[len - 1] == '\r')
		len--;
	if (len >= size)
		die("reply line too long");
	memcpy(buf, cl.in, len);
	buf[len] = '\0';
	cl.inlen -= (size_t)(nl + 1 - cl.in);
	memmove(cl.in, nl + 1, cl.inlen);
}

/* A whole reply (RFC 5321 §4.2: "ddd-" continues, "ddd " ends); the
 * code, the last line in last (size bytes); every line to stderr. */
static int
read_reply(char *last, size_t size)
{
	char line[4096];

	for (;;) {
		read_line(line, sizeof(line));
		fprintf(stderr, "S: %s\n", line);
		if (strlen(line) < 3 || line[0] < '1' || line[0] > '5')
			die("bad reply line: %s", line);
		if (line[3] != '-') {
			snprintf(last, size, "%s", line);
			return atoi(line);
		}
	}
}

static void
tls_start(void)
{
	int r;

	if ((r = gnutls_certificate_allocate_credentials(&cl.cred)) < 0)
		die("gnutls: %s", gnutls_strerror(r));
	if (cl.cert != NULL && (r = gnutls_certificate_set_x509_key_file(
	    cl.cred, cl.cert, cl.key, GNUTLS_X509_FMT_PEM)) < 0)
		die("%s: %s", cl.cert, gnutls_strerror(r));
	if ((r = gnutls_init(&cl.ses, GNUTLS_CLIENT)) < 0 ||
	    (r = gnutls_priority_set_direct(cl.ses, cl.tls12 ?
	    "NORMAL:-VERS-ALL:+VERS-TLS1.2" : "NORMAL", NULL)) < 0 ||
	    (r = gnutls_credentials_set(cl.ses, GNUTLS_CRD_CERTIFICATE,
	    cl.cred)) < 0)
		die("gnutls: %s", gnutls_strerror(r));
	/* Test servers use self-signed certificates: no verification. */
	gnutls_transport_set_int(cl.ses, cl.fd);
	gnutls_handshake_set_timeout(cl.ses, 10000);
	do
		r = gnutls_handshake(cl.ses);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0)
		die("TLS handshake: %s", gnutls_strerror(r));
	fprintf(stderr, "TLS: %s\n", gnutls_protocol_get_name(
	    gnutls_protocol_get_version(cl.ses)));
}

static void
net_connect(void)
{
	struct addrinfo hints, *res, *ai;
	struct timeval tv = { 10, 0 };
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(cl.host, cl.port, &hints, &res)) != 0)
		die("%s: %s", cl.host, gai_strerror(r));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		cl.fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (cl.fd < 0)
			continue;
		if (connect(cl.fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(cl.fd);
		cl.fd = -1;
	}
	freeaddrinfo(res);
	if (cl.fd < 0)
		die("cannot connect to %s port %s", cl.host, cl.port);
	(void)setsockopt(cl.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(cl.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* ---- encodings ------------------------------------------------------- */

static char *
b64enc(const void *p, size_t len)
{
	gnutls_datum_t in = { (unsigned char *)(uintptr_t)p, (unsigned)len };
	gnutls_datum_t out;
	char *s;

	if (len == 0)
		return strdup("");
	if (gnutls_base64_encode2(&in, &out) < 0)
		die("base64 encode");
	s = malloc(out.size + 1);
	memcpy(s, out.data, out.size);
	s[out.size] = '\0';
	gnutls_free(out.data);
	return s;
}

/* Decodes into a NUL-terminated heap buffer; *len_r its length. */
static char *
b64dec(const char *s, size_t *len_r)
{
	gnutls_datum_t in = { (unsigned char *)(uintptr_t)s,
	    (unsigned)strlen(s) };
	gnutls_datum_t out;
	char *p;

	if (*s == '\0') {
		*len_r = 0;
		return strdup("");
	}
	if (gnutls_base64_decode2(&in, &out) < 0)
		die("server sent bad base64: %s", s);
	p = malloc(out.size + 1);
	memcpy(p, out.data, out.size);
	p[out.size] = '\0';
	*len_r = out.size;
	gnutls_free(out.data);
	return p;
}

/* RFC 5802 §5.1 saslname: ',' as "=2C", '=' as "=3D". */
static char *
saslname(const char *s)
{
	char *o = malloc(strlen(s) * 3 + 1), *p = o;

	for (; *s != '\0'; s++) {
		if (*s == ',')
			p += sprintf(p, "=2C");
		else if (*s == '=')
			p += sprintf(p, "=3D");
		else
			*p++ = *s;
	}
	*p = '\0';
	return o;
}

/* ---- mechanisms ------------------------------------------------------ */

/* Sends a SASL response (base64 of len bytes; an empty one as an empty
 * line) and reads the reply. */
static int
respond(const void *p, size_t len, char *last, size_t size)
{
	char *e = b64enc(p, len);

	send_line(e);
	free(e);
	return read_reply(last, size);
}

/* AUTH MECH with an initial response (p, len; "=" when empty, RFC 4954
 * §4) or, with --no-ir, without one and the response to the empty
 * challenge. */
static int
auth_start(const void *p, size_t len, char *last, size_t size)
{
	char cmd[8192], *e;
	int code;

	if (cl.no_ir) {
		snprintf(cmd, sizeof(cmd), "AUTH %s", cl.mech);
		send_line(cmd);
		code = read_reply(last, size);
		if (code != 334)
			return code;
		if (strcmp(last, "334 ") != 0 && strcmp(last, "334") != 0)
			die("expected an empty challenge, got: %s", last);
		return respond(p, len, last, size);
	}
	e = b64enc(p, len);
	snprintf(cmd, sizeof(cmd), "AUTH %s %s", cl.mech, *e != '\0' ? e :
	    "=");
	free(e);
	send_line(cmd);
	return read_reply(last, size);
}

static int
auth_plain(char *last, size_t size)
{
	char msg[4096];
	int n;

	n = snprintf(msg, sizeof(msg), "%c%s%c%s", 0, cl.user, 0, cl.pass);
	return auth_start(msg, (size_t)n, last, size);
}

static int
auth_login(char *last, size_t size)
{
	char cmd[64];
	int code;

	snprintf(cmd, sizeof(cmd), "AUTH LOGIN");
	send_line(cmd);
	if ((code = read_reply(last, size)) != 334)
		return code;
	if ((code = respond(cl.user, strlen(cl.user), last, size)) != 334)
		return code;
	return respond(cl.pass, strlen(cl.pass), last, size);
}

static int
auth_cram_md5(char *last, size_t size)
{
	unsigned char mac[16];
	char msg[4096], *chal;
	size_t clen, i;
	int code, n;

	send_line("AUTH CRAM-MD5");
	if ((code = read_reply(last, size)) != 334)
		return code;
	chal = b64dec(last + 4, &clen);
	if (gnutls_hmac_fast(GNUTLS_MAC_MD5, cl.pass, strlen(cl.pass), chal,
	    clen, mac) < 0)
		die("HMAC-MD5 failed");
	free(chal);
	n = snprintf(msg, sizeof(msg), "%s ", cl.user);
	for (i = 0; i < 16; i++)
		n += snprintf(msg + n, sizeof(msg) - (size_t)n, "%02x", mac[i]);
	return respond(msg, (size_t)n, last, size);
}

static int
auth_external(char *last, size_t size)
{
	return auth_start(cl.user, strlen(cl.user), last, size);
}

static int
auth_scram(char *last, size_t size)
{
	bool sha1 = strncmp(cl.mech, "SCRAM-SHA-1", 11) == 0 &&
	    (cl.mech[11] == '\0' || cl.mech[11] == '-');
	bool plus = strstr(cl.mech, "-PLUS") != NULL;
	gnutls_mac_algorithm_t mac = sha1 ? GNUTLS_MAC_SHA1 : GNUTLS_MAC_SHA256;
	gnutls_digest_algorithm_t dig = sha1 ? GNUTLS_DIG_SHA1 :
	    GNUTLS_DIG_SHA256;
	size_t klen = sha1 ? 20 : 32, slen, sfmlen, vlen, i;
	unsigned char salted[32], ckey[32], skey[32], stored[32], csig[32];
	unsigned char proof[32], ssig[32], rnd[18], cbind[256];
	char gs2[64], cfb[4096], first[4096], wo[8192], fin[8192], am[16384];
	char *nonce, *user, *sfm, *salt64, *salt, *cb64, *p64, *v, *want;
	const char *cbtype = NULL, *r, *s, *it;
	gnutls_datum_t pw, sd, cbd = { NULL, 0 };
	size_t cbind_len;
	unsigned iter;
	int code;

	if (plus) {
		/* RFC 9266: tls-exporter for TLS 1.3; RFC 5929 tls-unique
		 * under TLS 1.2. */
		if (cl.ses == NULL)
			die("%s needs TLS", cl.mech);
		if (gnutls_protocol_get_version(cl.ses) == GNUTLS_TLS1_2) {
			cbtype = "tls-unique";
			code = gnutls_session_channel_binding(cl.ses,
			    GNUTLS_CB_TLS_UNIQUE, &cbd);
		} else {
			cbtype = "tls-exporter";
			code = gnutls_session_channel_binding(cl.ses,
			    GNUTLS_CB_TLS_EXPORTER, &cbd);
		}
		if (code < 0)
			die("channel binding %s: %s", cbtype,
			    gnutls_strerror(code));
		xsnprintf(gs2, sizeof(gs2), "p=%s,,", cbtype);
	} else
		/* "y" would claim we support binding that the server
		 * lacks; tests of that pass --mech with a "y" via
		 * SMTP_AUTH_GS2. */
		xsnprintf(gs2, sizeof(gs2), "%s", getenv("SMTP_AUTH_GS2") !=
		    NULL ? getenv("SMTP_AUTH_GS2") : "n,,");
	if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof(rnd)) < 0)
		die("random");
	nonce = b64enc(rnd, sizeof(rnd));
	user = saslname(cl.user);
	xsnprintf(cfb, sizeof(cfb), "n=%s,r=%s", user, nonce);
	xsnprintf(first, sizeof(first), "%s%s", gs2, cfb);
	if ((code = auth_start(first, strlen(first), last, size)) != 334) {
		gnutls_free(cbd.data);
		free(nonce);
		free(user);
		return code;
	}
	sfm = b64dec(last + 4, &sfmlen);
	/* r=<our nonce + server's>,s=<salt>,i=<iterations> */
	if (strncmp(sfm, "r=", 2) != 0 || strncmp(sfm + 2, nonce,
	    strlen(nonce)) != 0 || (s = strstr(sfm, ",s=")) == NULL ||
	    (it = strstr(sfm, ",i=")) == NULL || it < s)
		die("bad server-first-message: %s", sfm);
	r = sfm;
	salt64 = strndup(s + 3, (size_t)(it - s - 3));
	salt = b64dec(salt64, &slen);
	iter = (unsigned)strtoul(it + 3, NULL, 10);
	if (iter == 0 || iter > 1000000)
		die("bad iteration count");
	/* SaltedPassword := Hi(Normalize(password), salt, i). */
	if (gnutls_utf8_password_normalize((const unsigned char *)cl.pass,
	    (unsigned)strlen(cl.pass), &pw, GNUTLS_UTF8_IGNORE_ERRS) < 0)
		die("password normalization");
	sd.data = (unsigned char *)salt;
	sd.size = (unsigned)slen;
	if (gnutls_pbkdf2(mac, &pw, &sd, iter, salted, klen) < 0)
		die("pbkdf2");
	gnutls_free(pw.data);
	gnutls_hmac_fast(mac, salted, klen, "Client Key", 10, ckey);
	gnutls_hmac_fast(mac, salted, klen, "Server Key", 10, skey);
	gnutls_hash_fast(dig, ckey, klen, stored);
	/* c= base64(gs2-header [cbind-data]). */
	cbind_len = strlen(gs2);
	memcpy(cbind, gs2, cbind_len);
	if (cbd.size > 0) {
		if (cbd.size > sizeof(cbind) - cbind_len)
			die("channel binding too long");
		memcpy(cbind + cbind_len, cbd.data, cbd.size);
		cbind_len += cbd.size;
	}
	cb64 = b64enc(cbind, cbind_len);
	if (getenv("SMTP_AUTH_BAD_CB") != NULL && cbd.size > 0) {
		/* Tests: a binding from "another" TLS session. */
		cbind[cbind_len - 1] ^= 1;
		free(cb64);
		cb64 = b64enc(cbind, cbind_len);
	}
	xsnprintf(wo, sizeof(wo), "c=%s,%.*s", cb64, (int)(s - r), r);
	xsnprintf(am, sizeof(am), "%s,%s,%s", cfb, sfm, wo);
	gnutls_hmac_fast(mac, stored, klen, am, strlen(am), csig);
	for (i = 0; i < klen; i++)
		proof[i] = ckey[i] ^ csig[i];
	gnutls_hmac_fast(mac, skey, klen, am, strlen(am), ssig);
	p64 = b64enc(proof, klen);
	xsnprintf(fin, sizeof(fin), "%s,p=%s", wo, p64);
	code = respond(fin, strlen(fin), last, size);
	if (code == 334) {
		/* server-final-message "v=" ServerSignature (RFC 5802 §3):
		 * proves the server knew the keys too. */
		v = b64dec(last + 4, &vlen);
		want = b64enc(ssig, klen);
		if (strncmp(v, "v=", 2) != 0 || strcmp(v + 2, want) != 0) {
			fprintf(stderr, "smtp_auth_client: server signature "
			    "mismatch: %s\n", v);
			send_line("*");
			(void)read_reply(last, size);
			xsnprintf(last, size, "bad server signature");
			code = 0;
		} else {
			fprintf(stderr, "server signature verified\n");
			code = respond("", 0, last, size);
		}
		free(v);
		free(want);
	} else if (code == 235) {
		fprintf(stderr, "smtp_auth_client: 235 without the server "
		    "signature\n");
		xsnprintf(last, size, "235 without server signature");
		code = 0;
	}
	gnutls_free(cbd.data);
	free(nonce);
	free(user);
	free(sfm);
	free(salt64);
	free(salt);
	free(cb64);
	free(p64);
	return code;
}

int
main(int argc, char **argv)
{
	char last[4096];
	int i, code;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **val = NULL;

		if (strcmp(a, "--host") == 0)
			val = &cl.host;
		else if (strcmp(a, "--port") == 0)
			val = &cl.port;
		else if (strcmp(a, "--mech") == 0)
			val = &cl.mech;
		else if (strcmp(a, "--user") == 0)
			val = &cl.user;
		else if (strcmp(a, "--pass") == 0)
			val = &cl.pass;
		else if (strcmp(a, "--cert") == 0)
			val = &cl.cert;
		else if (strcmp(a, "--key") == 0)
			val = &cl.key;
		else if (strcmp(a, "--starttls") == 0)
			cl.starttls = true;
		else if (strcmp(a, "--tls") == 0)
			cl.tls = true;
		else if (strcmp(a, "--tls12") == 0)
			cl.tls12 = true;
		else if (strcmp(a, "--no-ir") == 0)
			cl.no_ir = true;
		else if (strcmp(a, "--expect-fail") == 0)
			cl.expect_fail = true;
		else {
			fputs(usage, stderr);
			return 2;
		}
		if (val != NULL) {
			if (++i == argc) {
				fputs(usage, stderr);
				return 2;
			}
			*val = argv[i];
		}
	}
	if (cl.host == NULL || cl.port == NULL || cl.mech == NULL ||
	    (cl.starttls && cl.tls) || (cl.cert == NULL) != (cl.key == NULL)) {
		fputs(usage, stderr);
		return 2;
	}
	if (gnutls_global_init() < 0)
		die("gnutls_global_init");
	net_connect();
	if (cl.tls)
		tls_start();
	if (read_reply(last, sizeof(last)) != 220)
		die("greeting: %s", last);
	send_line("EHLO client.test");
	if (read_reply(last, sizeof(last)) != 250)
		die("EHLO: %s", last);
	if (cl.starttls) {
		send_line("STARTTLS");
		if (read_reply(last, sizeof(last)) != 220)
			die("STARTTLS: %s", last);
		if (cl.inlen != 0)
			die("data after the STARTTLS reply (injection?)");
		tls_start();
		send_line("EHLO client.test");
		if (read_reply(last, sizeof(last)) != 250)
			die("EHLO: %s", last);
	}
	if (strcmp(cl.mech, "PLAIN") == 0)
		code = auth_plain(last, sizeof(last));
	else if (strcmp(cl.mech, "LOGIN") == 0)
		code = auth_login(last, sizeof(last));
	else if (strcmp(cl.mech, "CRAM-MD5") == 0)
		code = auth_cram_md5(last, sizeof(last));
	else if (strcmp(cl.mech, "EXTERNAL") == 0)
		code = auth_external(last, sizeof(last));
	else if (strncmp(cl.mech, "SCRAM-SHA-", 10) == 0)
		code = auth_scram(last, sizeof(last));
	else
		die("unknown mechanism %s", cl.mech);
	printf("%s\n", last);
	cl.quitting = true;
	send_line("QUIT");
	(void)read_reply(last, sizeof(last));
	if (cl.ses != NULL) {
		(void)gnutls_bye(cl.ses, GNUTLS_SHUT_WR);
		gnutls_deinit(cl.ses);
		gnutls_certificate_free_credentials(cl.cred);
	}
	close(cl.fd);
	gnutls_global_deinit();
	if (cl.expect_fail)
		return code != 235 && code != 0 ? 0 : 1;
	return code == 235 ? 0 : 1;
}
