/* SPDX-License-Identifier: ISC */
/* `osprey localserve`: a complete local instance for development and for
 * trying clients, on loopback ports 1000+standard (as mox localserve). */
#include "core.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

/*
 * Written once into the localserve directory, so users can read and edit
 * it; paths are relative to that directory. The modules say at startup
 * what they cannot do yet.
 */
static const char localserve_yaml[] =
"# osprey localserve: a local instance for development and testing.\n"
"# Written on first run; edit freely. `osprey -c THIS config describe`\n"
"# lists every option.\n"
"hostname: localhost\n"
"data-dir: data\n"
"workers: 2\n"
"shutdown-timeout: 5s\n"
"log:\n"
"  level: info\n"
"modules: [smtp, imap, http]\n"
"smtp:\n"
"  # every recipient, local or not, goes to this account; localparts\n"
"  # temperror, permerror, timeout (and mailfrom*/rcptto* prefixes)\n"
"  # simulate failures\n"
"  localserve-account: osprey\n"
"  require-tls-for-auth: false\n"
"tls:\n"
"  certificates:\n"
"    - cert: localhost.crt\n"
"      key: localhost.key\n"
"listeners:\n"
"  - name: smtp\n"
"    protocol: smtp\n"
"    address: [127.0.0.1, \"::1\"]\n"
"    port: 1025\n"
"    tls: starttls\n"
"    role: delivery\n"
"  - name: submission\n"
"    protocol: smtp\n"
"    address: [127.0.0.1, \"::1\"]\n"
"    port: 1587\n"
"    tls: starttls\n"
"    role: submission\n"
"  - name: submissions\n"
"    protocol: smtp\n"
"    address: [127.0.0.1, \"::1\"]\n"
"    port: 1465\n"
"    tls: implicit\n"
"    role: submission\n"
"  - name: imap\n"
"    protocol: imap\n"
"    address: [127.0.0.1, \"::1\"]\n"
"    port: 1143\n"
"    tls: starttls\n"
"  - name: imaps\n"
"    protocol: imap\n"
"    address: [127.0.0.1, \"::1\"]\n"
"    port: 1993\n"
"    tls: implicit\n"
"  - name: http\n"
"    protocol: http\n"
"    address: [127.0.0.1, \"::1\"]\n"
"    port: 1080\n"
"    tls: none\n"
"  - name: https\n"
"    protocol: http\n"
"    address: [127.0.0.1, \"::1\"]\n"
"    port: 1443\n"
"    tls: implicit\n";

/* The account every message lands in. */
#define LOCALSERVE_ACCOUNT	"osprey"
#define LOCALSERVE_ADDRESS	"osprey@localhost"
#define LOCALSERVE_PASSWORD	"ospreyosprey"

static const char localserve_domains_yaml[] =
"# osprey localserve: domains and accounts (reloaded on change).\n"
"domains:\n"
"  localhost:\n"
"    description: localserve\n"
"    localpart-catchall-separator: \"+\"\n"
"    catchall-account: " LOCALSERVE_ACCOUNT "\n"
"postmaster-account: " LOCALSERVE_ACCOUNT "\n"
"accounts:\n"
"  " LOCALSERVE_ACCOUNT ":\n"
"    domain: localhost\n"
"    full-name: Osprey Localserve\n"
"    destinations:\n"
"      " LOCALSERVE_ADDRESS ": {}\n";

static int
write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[4200];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd == -1)
		return -errno;
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) == -1) {
		int e = errno;

		close(fd);
		unlink(tmp);
		return -e;
	}
	close(fd);
	if (rename(tmp, path) == -1)
		return -errno;
	return OSP_OK;
}

/* A self-signed ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1,
 * valid ten years. */
static int
make_certificate(const char *crtpath, const char *keypath,
    const char **error_r)
{
	static const unsigned char ip4[4] = { 127, 0, 0, 1 };
	static const unsigned char ip6[16] = { [15] = 1 };
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t pem = { NULL, 0 };
	unsigned char serial[16];
	time_t now = time(NULL);
	int ret;

	if ((ret = gnutls_x509_privkey_init(&key)) < 0 ||
	    (ret = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
	    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0)) < 0 ||
	    (ret = gnutls_x509_crt_init(&crt)) < 0 ||
	    (ret = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
	    (ret = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial))) < 0)
		goto fail;
	serial[0] &= 0x7f;	/* positive (RFC 5280 §4.1.2.2) */
	if ((ret = gnutls_x509_crt_set_serial(crt, serial,
	    sizeof(serial))) < 0 ||
	    (ret = gnutls_x509_crt_set_activation_time(crt, now - 3600)) < 0 ||
	    (ret = gnutls_x509_crt_set_expiration_time(crt,
	    now + 10L * 365 * 86400)) < 0 ||
	    (ret = gnutls_x509_crt_set_dn_by_oid(crt,
	    GNUTLS_OID_X520_COMMON_NAME, 0, "localhost", 9)) < 0 ||
	    (ret = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME,
	    "localhost", 9, GNUTLS_FSAN_APPEND)) < 0 ||
	    (ret = gnutls_x509_crt_set_subject_alt_name(crt,
	    GNUTLS_SAN_IPADDRESS, ip4, sizeof(ip4), GNUTLS_FSAN_APPEND)) < 0 ||
	    (ret = gnutls_x509_crt_set_subject_alt_name(crt,
	    GNUTLS_SAN_IPADDRESS, ip6, sizeof(ip6), GNUTLS_FSAN_APPEND)) < 0 ||
	    (ret = gnutls_x509_crt_set_key(crt, key)) < 0 ||
	    (ret = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
	    (ret = gnutls_x509_crt_set_key_usage(crt,
	    GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
	    (ret = gnutls_x509_crt_set_key_purpose_oid(crt,
	    GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
	    (ret = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256,
	    0)) < 0)
		goto fail;
	if ((ret = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM,
	    &pem)) < 0)
		goto fail;
	ret = write_file(keypath, pem.data, pem.size, 0600);
	gnutls_free(pem.data);
	pem.data = NULL;
	if (ret != OSP_OK) {
		*error_r = strerror(-ret);
		goto out;
	}
	if ((ret = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM,
	    &pem)) < 0)
		goto fail;
	ret = write_file(crtpath, pem.data, pem.size, 0644);
	gnutls_free(pem.data);
	if (ret != OSP_OK)
		*error_r = strerror(-ret);
	goto out;
fail:
	*error_r = gnutls_strerror(ret);
	ret = OSP_ETLS;
out:
	if (crt != NULL)
		gnutls_x509_crt_deinit(crt);
	if (key != NULL)
		gnutls_x509_privkey_deinit(key);
	return ret;
}

/* Gives the account its well-known password once (auth.db in the data
 * directory); a password changed later by the user is kept. */
static int
ensure_password(const char *dir, const char **error_r)
{
	char data[4200];
	struct osp_auth *auth = NULL;
	bool has = false;
	int ret;

	snprintf(data, sizeof(data), "%s/data", dir);
	if (mkdir(data, 0750) == -1 && errno != EEXIST) {
		*error_r = strerror(errno);
		return -errno;
	}
	if ((ret = osp_auth_open(data, &auth, error_r)) != OSP_OK)
		return ret;
	ret = osp_auth_has_password(auth, LOCALSERVE_ACCOUNT, &has, error_r);
	if (ret == OSP_OK && !has)
		ret = osp_auth_set_password(auth, LOCALSERVE_ACCOUNT,
		    LOCALSERVE_PASSWORD, strlen(LOCALSERVE_PASSWORD), error_r);
	osp_auth_close(auth);
	return ret;
}

static const char *
default_dir(void)
{
	static char path[4096];
	const char *base = getenv("XDG_CONFIG_HOME"), *home;

	if (base != NULL && *base == '/') {
		snprintf(path, sizeof(path), "%s/osprey-localserve", base);
		return path;
	}
	home = getenv("HOME");
	if (home == NULL || *home == '\0')
		return NULL;
	snprintf(path, sizeof(path), "%s/.config/osprey-localserve", home);
	return path;
}

static int
mkdirs(const char *path)
{
	char buf[4096], *p;

	if (osp_strlcpy(buf, path, sizeof(buf)) >= sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) == -1 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0750) == -1 && errno != EEXIST)
		return -errno;
	return OSP_OK;
}

int
osp_cli_localserve(struct osp_cli *cli, int argc, char **argv)
{
	char cfg[4200], crt[4200], key[4200], dom[4200];
	const char *dir = NULL, *error;
	int i, ret;

	for (i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "-dir") == 0 ||
		    strcmp(argv[i], "--dir") == 0) && i + 1 < argc)
			dir = argv[++i];
		else
			return osp_cli_cmd_usage("localserve");
	}
	if (dir == NULL && (dir = default_dir()) == NULL) {
		fprintf(stderr, "osprey: localserve: no HOME: use -dir DIR\n");
		return 1;
	}
	if ((ret = mkdirs(dir)) != OSP_OK) {
		fprintf(stderr, "osprey: localserve: %s: %s\n", dir,
		    osp_strerror(ret));
		return 1;
	}
	snprintf(cfg, sizeof(cfg), "%s/osprey.yaml", dir);
	snprintf(crt, sizeof(crt), "%s/localhost.crt", dir);
	snprintf(key, sizeof(key), "%s/localhost.key", dir);
	snprintf(dom, sizeof(dom), "%s/domains.yaml", dir);
	if (access(crt, F_OK) == -1 || access(key, F_OK) == -1) {
		if (make_certificate(crt, key, &error) != OSP_OK) {
			fprintf(stderr, "osprey: localserve: certificate: %s\n",
			    error);
			return 1;
		}
		printf("localserve: created a self-signed certificate for "
		    "localhost: %s\n", crt);
	}
	if (access(cfg, F_OK) == -1) {
		if ((ret = write_file(cfg, localserve_yaml,
		    sizeof(localserve_yaml) - 1, 0644)) != OSP_OK) {
			fprintf(stderr, "osprey: localserve: %s: %s\n", cfg,
			    osp_strerror(ret));
			return 1;
		}
		printf("localserve: wrote %s\n", cfg);
	}
	if (access(dom, F_OK) == -1) {
		if ((ret = write_file(dom, localserve_domains_yaml,
		    sizeof(localserve_domains_yaml) - 1, 0644)) != OSP_OK) {
			fprintf(stderr, "osprey: localserve: %s: %s\n", dom,
			    osp_strerror(ret));
			return 1;
		}
		printf("localserve: wrote %s\n", dom);
	}
	if (ensure_password(dir, &error) != OSP_OK) {
		fprintf(stderr, "osprey: localserve: %s/data/auth.db: %s\n",
		    dir, error);
		return 1;
	}
	printf("localserve: directory %s\n"
	    "localserve: SMTP 1025, submission 1587 (STARTTLS), submissions "
	    "1465,\n"
	    "localserve: IMAP 1143, IMAPS 1993, HTTP 1080, HTTPS 1443 on "
	    "127.0.0.1 and ::1\n"
	    "localserve: account " LOCALSERVE_ADDRESS " password "
	    LOCALSERVE_PASSWORD " (login without TLS allowed);\n"
	    "localserve: every recipient address is delivered to it\n", dir);
	fflush(stdout);
	(void)cli;
	return osp_serve_run(cfg, true);
}
