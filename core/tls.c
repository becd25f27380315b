/* SPDX-License-Identifier: ISC */
/* TLS contexts with GnuTLS: server certificates selected by SNI, client
 * sessions with system or file trust, and the config generation's
 * server context. The record I/O itself lives in conn.c. */
#include "core.h"
#include "io_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <gnutls/x509.h>

#define TLS_MAXCHAIN	16

/*
 * TLS >= 1.2 only (RFC 8996 deprecates 1.0 and 1.1). The server's order
 * of preference wins. Debian's system-wide GnuTLS policy still applies
 * on top of NORMAL.
 */
#define TLS_PRIO_12	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define TLS_PRIO_13	"NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define TLS_SERVER_SUFFIX ":%SERVER_PRECEDENCE"

struct osp_tls_cert {
	gnutls_pcert_st	 pcert[TLS_MAXCHAIN];
	unsigned	 npcert;
	gnutls_privkey_t key;
	char		**names;	/* SAN DNS names, else the CN */
	size_t		 nnames;
};

static struct {
	bool				 inited;
	gnutls_priority_t		 client_prio;
	/* shared client credentials with the system trust store, loaded on
	 * first use */
	gnutls_certificate_credentials_t sys_cred;
	bool				 sys_loaded;
} tls;

static char tls_msg[1024];

int
osp_tls_global_init(void)
{
	int r;

	if (tls.inited)
		return OSP_OK;
	r = gnutls_global_init();
	if (r < 0) {
		osp_log_err("tls", "gnutls init: %s", gnutls_strerror(r));
		return OSP_ETLS;
	}
	r = gnutls_priority_init(&tls.client_prio, TLS_PRIO_12, NULL);
	if (r < 0) {
		osp_log_err("tls", "priority: %s", gnutls_strerror(r));
		gnutls_global_deinit();
		return OSP_ETLS;
	}
	tls.inited = true;
	return OSP_OK;
}

void
osp_tls_global_deinit(void)
{
	if (!tls.inited)
		return;
	if (tls.sys_cred != NULL)
		gnutls_certificate_free_credentials(tls.sys_cred);
	gnutls_priority_deinit(tls.client_prio);
	gnutls_global_deinit();
	memset(&tls, 0, sizeof(tls));
}

/* Reads a whole file; errno-based messages name the file. */
static int
tls_read_file(const char *path, gnutls_datum_t *d, const char **error_r)
{
	FILE *f;
	long len = 0;
	size_t n;

	d->data = NULL;
	d->size = 0;
	f = fopen(path, "r");
	if (f == NULL)
		goto fail;
	if (fseek(f, 0, SEEK_END) == -1 || (len = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) == -1)
		goto fail_close;
	if (len > 16 * 1024 * 1024) {
		errno = EFBIG;
		goto fail_close;
	}
	d->data = osp_malloc((size_t)len + 1);
	n = fread(d->data, 1, (size_t)len, f);
	if (ferror(f))
		goto fail_close;
	fclose(f);
	d->data[n] = '\0';
	d->size = (unsigned)n;
	return OSP_OK;
fail_close:
	fclose(f);
fail:
	snprintf(tls_msg, sizeof(tls_msg), "%s: %s", path, strerror(errno));
	*error_r = tls_msg;
	if (d->data != NULL) {
		osp_memzero(d->data, (size_t)len);
		osp_free(d->data);
		d->data = NULL;
	}
	return -errno;
}

static void
tls_datum_wipe(gnutls_datum_t *d)
{
	if (d->data != NULL) {
		osp_memzero(d->data, d->size);
		osp_free(d->data);
	}
	d->data = NULL;
	d->size = 0;
}

/* DNS names a certificate answers for: SAN dNSNames, else the subject
 * CN (RFC 6125 §6.4.4: the CN only when there is no SAN of DNS type). */
static void
tls_cert_names(struct osp_tls_cert *tc)
{
	gnutls_x509_crt_t crt;
	char name[256];
	size_t len;
	unsigned i;
	int r;

	if (gnutls_x509_crt_init(&crt) < 0)
		return;
	if (gnutls_x509_crt_import(crt, &tc->pcert[0].cert,
	    GNUTLS_X509_FMT_DER) < 0)
		goto out;
	for (i = 0;; i++) {
		len = sizeof(name);
		r = gnutls_x509_crt_get_subject_alt_name(crt, i, name, &len,
		    NULL);
		if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (r != GNUTLS_SAN_DNSNAME || len == 0 || len >= sizeof(name))
			continue;
		tc->names = osp_reallocarray(tc->names, tc->nnames + 1,
		    sizeof(*tc->names));
		tc->names[tc->nnames++] = osp_strndup(name, len);
	}
	if (tc->nnames == 0) {
		len = sizeof(name);
		if (gnutls_x509_crt_get_dn_by_oid(crt,
		    GNUTLS_OID_X520_COMMON_NAME, 0, 0, name, &len) == 0) {
			tc->names = osp_malloc(sizeof(*tc->names));
			tc->names[tc->nnames++] = osp_strndup(name, len);
		}
	}
out:
	gnutls_x509_crt_deinit(crt);
}

static void
tls_cert_clear(struct osp_tls_cert *tc)
{
	unsigned i;
	size_t j;

	for (i = 0; i < tc->npcert; i++)
		gnutls_pcert_deinit(&tc->pcert[i]);
	if (tc->key != NULL)
		gnutls_privkey_deinit(tc->key);
	for (j = 0; j < tc->nnames; j++)
		osp_free(tc->names[j]);
	osp_free(tc->names);
	memset(tc, 0, sizeof(*tc));
}

/* Whether the key belongs to the leaf certificate (same key id). */
static bool
tls_key_matches(struct osp_tls_cert *tc)
{
	unsigned char id1[64], id2[64];
	size_t len1 = sizeof(id1), len2 = sizeof(id2);
	gnutls_pubkey_t pub;
	bool ok = false;

	if (gnutls_pubkey_init(&pub) < 0)
		return false;
	if (gnutls_pubkey_import_privkey(pub, tc->key, 0, 0) == 0 &&
	    gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, id1,
	    &len1) == 0 &&
	    gnutls_pubkey_get_key_id(tc->pcert[0].pubkey,
	    GNUTLS_KEYID_USE_SHA256, id2, &len2) == 0)
		ok = len1 == len2 && memcmp(id1, id2, len1) == 0;
	gnutls_pubkey_deinit(pub);
	return ok;
}

int
osp_tls_server_add(struct osp_tls_server *srv, const char *certfile,
    const char *keyfile, const char **error_r)
{
	struct osp_tls_cert tc;
	gnutls_datum_t d;
	int r;

	memset(&tc, 0, sizeof(tc));
	if (certfile == NULL || keyfile == NULL) {
		*error_r = "a certificate needs both cert and key files";
		return -EINVAL;
	}
	if ((r = tls_read_file(certfile, &d, error_r)) != OSP_OK)
		return r;
	tc.npcert = TLS_MAXCHAIN;
	r = gnutls_pcert_list_import_x509_raw(tc.pcert, &tc.npcert, &d,
	    GNUTLS_X509_FMT_PEM, GNUTLS_X509_CRT_LIST_SORT);
	tls_datum_wipe(&d);
	if (r < 0) {
		tc.npcert = 0;
		snprintf(tls_msg, sizeof(tls_msg), "%s: %s", certfile,
		    r == GNUTLS_E_SHORT_MEMORY_BUFFER ?
		    "certificate chain too long" : gnutls_strerror(r));
		*error_r = tls_msg;
		return OSP_ETLS;
	}
	if ((r = tls_read_file(keyfile, &d, error_r)) != OSP_OK)
		goto fail;
	r = gnutls_privkey_init(&tc.key);
	if (r == 0)
		r = gnutls_privkey_import_x509_raw(tc.key, &d,
		    GNUTLS_X509_FMT_PEM, NULL, 0);
	tls_datum_wipe(&d);
	if (r < 0) {
		snprintf(tls_msg, sizeof(tls_msg), "%s: %s", keyfile,
		    gnutls_strerror(r));
		*error_r = tls_msg;
		r = OSP_ETLS;
		goto fail;
	}
	if (!tls_key_matches(&tc)) {
		snprintf(tls_msg, sizeof(tls_msg), "%s: key does not match "
		    "certificate %s", keyfile, certfile);
		*error_r = tls_msg;
		r = OSP_ETLS;
		goto fail;
	}
	tls_cert_names(&tc);
	srv->certs = osp_reallocarray(srv->certs, srv->ncerts + 1,
	    sizeof(*srv->certs));
	srv->certs[srv->ncerts++] = tc;
	return OSP_OK;
fail:
	tls_cert_clear(&tc);
	return r;
}

/* RFC 6125 §6.4.3: a wildcard only as the whole left-most label, and it
 * matches exactly one label. Names compare case-insensitively. */
bool
osp_tls_name_match(const char *pattern, const char *host)
{
	const char *dot;

	if (pattern[0] == '*' && pattern[1] == '.') {
		dot = strchr(host, '.');
		if (dot == NULL || dot == host)
			return false;
		/* "*.example.com" must not match "example.com" nor, via a
		 * one-label rest, a bare TLD. */
		if (strchr(pattern + 2, '.') == NULL)
			return false;
		return osp_str_eqi(pattern + 1, dot);
	}
	return osp_str_eqi(pattern, host);
}

/* GnuTLS asks which certificate to present once the ClientHello (with
 * its server_name extension, RFC 6066 §3) has been read. */
static int
tls_retrieve(gnutls_session_t s, const gnutls_datum_t *req_ca_rdn,
    int nreqs, const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
    gnutls_pcert_st **pcert, unsigned int *pcert_length,
    gnutls_privkey_t *key)
{
	struct osp_tls_server *srv = gnutls_session_get_ptr(s);
	struct osp_tls_cert *tc;
	char name[256];
	size_t len = sizeof(name), i, j;
	unsigned type;

	if (srv == NULL || srv->ncerts == 0)
		return -1;
	tc = &srv->certs[0];
	if (gnutls_server_name_get(s, name, &len, &type, 0) == 0 &&
	    type == GNUTLS_NAME_DNS && len > 0 && len < sizeof(name) &&
	    strlen(name) == len) {
		for (i = 0; i < srv->ncerts; i++)
			for (j = 0; j < srv->certs[i].nnames; j++)
				if (osp_tls_name_match(srv->certs[i].names[j],
				    name)) {
					tc = &srv->certs[i];
					goto found;
				}
	}
found:
	*pcert = tc->pcert;
	*pcert_length = tc->npcert;
	*key = tc->key;
	return 0;
}

int
osp_tls_server_set_priority(struct osp_tls_server *srv,
    const char *priority, const char **error_r)
{
	gnutls_priority_t p;
	const char *errpos;
	int r;

	r = gnutls_priority_init(&p, priority, &errpos);
	if (r < 0) {
		snprintf(tls_msg, sizeof(tls_msg), "TLS priority \"%s\": %s",
		    priority, gnutls_strerror(r));
		*error_r = tls_msg;
		return OSP_ETLS;
	}
	if (srv->prio != NULL)
		gnutls_priority_deinit(srv->prio);
	srv->prio = p;
	return OSP_OK;
}

static struct osp_tls_server *
tls_server_alloc(const char **error_r)
{
	struct osp_tls_server *srv;
	int r;

	if (osp_tls_global_init() != OSP_OK) {
		*error_r = "TLS library initialisation failed";
		return NULL;
	}
	srv = osp_calloc(1, sizeof(*srv));
	srv->refs = 1;
	r = gnutls_certificate_allocate_credentials(&srv->cred);
	if (r < 0) {
		osp_free(srv);
		*error_r = gnutls_strerror(r);
		return NULL;
	}
	gnutls_certificate_set_retrieve_function2(srv->cred, tls_retrieve);
	if (osp_tls_server_set_priority(srv, TLS_PRIO_12 TLS_SERVER_SUFFIX,
	    error_r) != OSP_OK) {
		osp_tls_server_free(srv);
		return NULL;
	}
	return srv;
}

struct osp_tls_server *
osp_tls_server_new(const char *const *certfiles, const char *const *keyfiles,
    size_t n, const char **error_r)
{
	struct osp_tls_server *srv;
	size_t i;

	if (n == 0) {
		*error_r = "no certificate";
		return NULL;
	}
	if ((srv = tls_server_alloc(error_r)) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if (osp_tls_server_add(srv, certfiles[i], keyfiles[i],
		    error_r) != OSP_OK) {
			osp_tls_server_free(srv);
			return NULL;
		}
	return srv;
}

void
osp_tls_server_ref(struct osp_tls_server *srv)
{
	srv->refs++;
}

/* Drops a reference: sessions in progress keep the context alive past
 * the generation that made it. */
void
osp_tls_server_free(struct osp_tls_server *srv)
{
	size_t i;

	if (srv == NULL || --srv->refs > 0)
		return;
	for (i = 0; i < srv->ncerts; i++)
		tls_cert_clear(&srv->certs[i]);
	osp_free(srv->certs);
	if (srv->prio != NULL)
		gnutls_priority_deinit(srv->prio);
	if (srv->cred != NULL)
		gnutls_certificate_free_credentials(srv->cred);
	osp_free(srv);
}

const char *
osp_tls_server_cert_name(const struct osp_tls_server *srv, size_t i)
{
	if (i >= srv->ncerts || srv->certs[i].nnames == 0)
		return NULL;
	return srv->certs[i].names[0];
}

struct osp_tls_server *
osp_tls_server_current(void)
{
	struct osp_config *gen = osp_config_current();

	return gen != NULL ? gen->tls : NULL;
}

static void
tls_server_cleanup(void *arg)
{
	osp_tls_server_free(arg);
}

int
osp_tls_config_load(struct osp_config *gen, struct osp_conf_errs *errs)
{
	const struct osp_conf_list *l = &gen->core.tls.certificates;
	struct osp_tls_server *srv;
	struct osp_conf_mark fallback = { gen->file, 0, 0 };
	const struct osp_conf_mark *m;
	const struct osp_core_cert *cc;
	const char *error, *path;
	unsigned nerr = 0;
	size_t i;

	gen->tls = NULL;
	if (l->n == 0)
		return OSP_OK;
	if ((srv = tls_server_alloc(&error)) == NULL) {
		osp_conf_errs_add(errs, &fallback, "tls", "%s", error);
		return OSP_ECONFIG;
	}
	if (gen->core.tls.min_version == OSP_TLS_1_3 &&
	    osp_tls_server_set_priority(srv, TLS_PRIO_13 TLS_SERVER_SUFFIX,
	    &error) != OSP_OK) {
		osp_conf_errs_add(errs, &fallback, "tls.min-version", "%s",
		    error);
		nerr++;
	}
	for (i = 0; i < l->n; i++) {
		cc = &OSP_CONF_ITEM(l, struct osp_core_cert, i);
		if (osp_tls_server_add(srv, cc->cert, cc->key, &error) ==
		    OSP_OK)
			continue;
		/* Point at the entry's cert: key (file:line:col). */
		path = "tls.certificates";
		m = osp_config_mark(gen, &cc->cert, &path);
		osp_conf_errs_add(errs, m != NULL ? m : &fallback, path, "%s",
		    error);
		nerr++;
	}
	if (nerr > 0) {
		osp_tls_server_free(srv);
		return OSP_ECONFIG;
	}
	gen->tls = srv;
	osp_pool_cleanup_add(gen->pool, tls_server_cleanup, srv);
	return OSP_OK;
}

/* Sessions. */

int
osp_tls_session_server(struct osp_tls_server *srv, gnutls_session_t *s_r,
    const char **error_r)
{
	gnutls_session_t s;
	int r;

	r = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK);
	if (r < 0) {
		*error_r = gnutls_strerror(r);
		return OSP_ETLS;
	}
	if ((r = gnutls_priority_set(s, srv->prio)) < 0 ||
	    (r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE,
	    srv->cred)) < 0) {
		gnutls_deinit(s);
		*error_r = gnutls_strerror(r);
		return OSP_ETLS;
	}
	/* Ask for (never require) a client certificate, for SASL EXTERNAL
	 * (RFC 4422 appendix A). It is not verified against any CA: a
	 * certificate is matched by its key, registered to an account in
	 * auth.db, so self-signed ones are the normal case. GnuTLS still
	 * checks the client's CertificateVerify signature, proving it holds
	 * the key. Clients without one send an empty Certificate message. */
	gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST);
	/* conn.c enforces its own handshake deadline. */
	gnutls_handshake_set_timeout(s, 0);
	osp_tls_server_ref(srv);
	gnutls_session_set_ptr(s, srv);
	*s_r = s;
	return OSP_OK;
}

struct osp_tls_server *
osp_tls_session_srv(gnutls_session_t s)
{
	return gnutls_session_get_ptr(s);
}

/* Whether s is an IP address literal: those never go into SNI
 * (RFC 6066 §3). */
static bool
tls_is_ip_literal(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1;
}

int
osp_tls_session_client(const struct osp_tls_client_params *p,
    gnutls_session_t *s_r, gnutls_certificate_credentials_t *cred_r,
    const char **error_r)
{
	gnutls_certificate_credentials_t cred = NULL, use;
	gnutls_session_t s;
	int r;

	*cred_r = NULL;
	if (osp_tls_global_init() != OSP_OK) {
		*error_r = "TLS library initialisation failed";
		return OSP_ETLS;
	}
	if (p->cafile != NULL || p->certfile != NULL) {
		r = gnutls_certificate_allocate_credentials(&cred);
		if (r < 0)
			goto gnutls_fail;
		if (p->cafile != NULL)
			r = gnutls_certificate_set_x509_trust_file(cred,
			    p->cafile, GNUTLS_X509_FMT_PEM);
		else
			r = gnutls_certificate_set_x509_system_trust(cred);
		if (r < 0 || (r == 0 && p->cafile != NULL)) {
			snprintf(tls_msg, sizeof(tls_msg), "%s: %s",
			    p->cafile != NULL ? p->cafile : "system trust",
			    r == 0 ? "no CA certificate found" :
			    gnutls_strerror(r));
			*error_r = tls_msg;
			gnutls_certificate_free_credentials(cred);
			return OSP_ETLS;
		}
		if (p->certfile != NULL) {
			r = gnutls_certificate_set_x509_key_file2(cred,
			    p->certfile, p->keyfile != NULL ? p->keyfile :
			    p->certfile, GNUTLS_X509_FMT_PEM, NULL, 0);
			if (r < 0) {
				snprintf(tls_msg, sizeof(tls_msg), "%s: %s",
				    p->certfile, gnutls_strerror(r));
				*error_r = tls_msg;
				gnutls_certificate_free_credentials(cred);
				return OSP_ETLS;
			}
		}
		use = cred;
	} else {
		if (!tls.sys_loaded) {
			r = gnutls_certificate_allocate_credentials(
			    &tls.sys_cred);
			if (r < 0)
				goto gnutls_fail;
			r = gnutls_certificate_set_x509_system_trust(
			    tls.sys_cred);
			if (r < 0)
				osp_log_warn("tls", "system trust store: %s",
				    gnutls_strerror(r));
			tls.sys_loaded = true;
		}
		use = tls.sys_cred;
	}
	r = gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
	if (r < 0)
		goto gnutls_fail;
	if ((r = gnutls_priority_set(s, tls.client_prio)) < 0 ||
	    (r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, use)) < 0 ||
	    (p->server_name != NULL && *p->server_name != '\0' &&
	    !tls_is_ip_literal(p->server_name) &&
	    (r = gnutls_server_name_set(s, GNUTLS_NAME_DNS, p->server_name,
	    strlen(p->server_name))) < 0)) {
		gnutls_deinit(s);
		goto gnutls_fail;
	}
	gnutls_handshake_set_timeout(s, 0);
	gnutls_session_set_ptr(s, NULL);
	*s_r = s;
	*cred_r = cred;
	return OSP_OK;
gnutls_fail:
	if (cred != NULL)
		gnutls_certificate_free_credentials(cred);
	*error_r = gnutls_strerror(r);
	return OSP_ETLS;
}

void
osp_tls_session_free(gnutls_session_t s, gnutls_certificate_credentials_t cred)
{
	struct osp_tls_server *srv;

	if (s == NULL)
		return;
	srv = gnutls_session_get_ptr(s);
	gnutls_deinit(s);
	if (cred != NULL)
		gnutls_certificate_free_credentials(cred);
	osp_tls_server_free(srv);
}
