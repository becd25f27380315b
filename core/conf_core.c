/* SPDX-License-Identifier: ISC */
/* Schema of the core section of osprey.yaml (struct osp_core_conf):
 * hostname, paths, privileges, log, dns, tls and listeners. */
#include "conf_int.h"

#include <stddef.h>

#define CORE(field)	offsetof(struct osp_core_conf, field)

static const char *const log_levels[] = { "err", "warn", "info", "debug",
	NULL };
static const char *const log_targets[] = { "stderr", "file", "syslog",
	NULL };
static const char *const tls_versions[] = { "1.2", "1.3", NULL };
static const char *const listener_tls[] = { "none", "implicit", "starttls",
	NULL };

static const struct osp_conf_def log_defs[] = {
	{ .key = "level", .type = OSP_CONF_ENUM,
	  .offset = CORE(log.level) - CORE(log), .values = log_levels,
	  .dflt = "info",
	  .help = "Lowest level logged: err, warn, info or debug." },
	{ .key = "target", .type = OSP_CONF_ENUM,
	  .offset = CORE(log.target) - CORE(log), .values = log_targets,
	  .dflt = "stderr",
	  .help = "Where log lines go: stderr, file (see file) or syslog." },
	{ .key = "file", .type = OSP_CONF_PATH,
	  .offset = CORE(log.file) - CORE(log),
	  .help = "Log file when target is file (relative to this file's "
	  "directory)." },
	{ .key = "debug", .type = OSP_CONF_LIST, .elem = OSP_CONF_STRING,
	  .offset = CORE(log.debug) - CORE(log),
	  .help = "Categories whose debug lines are logged (module or "
	  "subsystem names, or all)." },
	OSP_CONF_END
};

static const struct osp_conf_def dns_defs[] = {
	{ .key = "forwarders", .type = OSP_CONF_LIST, .elem = OSP_CONF_ADDR,
	  .offset = CORE(dns.forwarders) - CORE(dns),
	  .help = "Resolvers to forward queries to (IP or IP@port, port 53 "
	  "when not given); none: recursion from the root." },
	{ .key = "trust-anchors", .type = OSP_CONF_LIST,
	  .elem = OSP_CONF_STRING,
	  .offset = CORE(dns.trust_anchors) - CORE(dns),
	  .help = "Extra DNSSEC trust anchors, as DS or DNSKEY records in "
	  "zone file format." },
	{ .key = "root-anchor", .type = OSP_CONF_BOOL,
	  .offset = CORE(dns.root_anchor) - CORE(dns), .dflt = "true",
	  .help = "Validate from the DNS root key (root-anchor-file)." },
	{ .key = "root-anchor-file", .type = OSP_CONF_PATH,
	  .offset = CORE(dns.root_anchor_file) - CORE(dns),
	  .dflt = OSP_ROOT_ANCHOR,
	  .help = "File holding the DNS root trust anchor." },
	{ .key = "unbound-options", .type = OSP_CONF_LIST,
	  .elem = OSP_CONF_STRING,
	  .offset = CORE(dns.unbound_options) - CORE(dns),
	  .help = "Raw libunbound options, each a quoted \"name: value\" "
	  "string." },
	{ .key = "timeout", .type = OSP_CONF_DURATION,
	  .offset = CORE(dns.timeout) - CORE(dns), .dflt = "10s",
	  .min = 100, .max = 300000,
	  .help = "Time limit of one DNS query." },
	OSP_CONF_END
};

static const struct osp_conf_def cert_defs[] = {
	{ .key = "cert", .type = OSP_CONF_PATH,
	  .offset = offsetof(struct osp_core_cert, cert),
	  .flags = OSP_CONF_REQUIRED | OSP_CONF_NONEMPTY,
	  .help = "PEM certificate chain, leaf first." },
	{ .key = "key", .type = OSP_CONF_PATH,
	  .offset = offsetof(struct osp_core_cert, key),
	  .flags = OSP_CONF_REQUIRED | OSP_CONF_NONEMPTY,
	  .help = "PEM private key of that certificate." },
	OSP_CONF_END
};

static const struct osp_conf_def tls_defs[] = {
	{ .key = "certificates", .type = OSP_CONF_SECTIONS,
	  .offset = CORE(tls.certificates) - CORE(tls), .sub = cert_defs,
	  .elem_size = sizeof(struct osp_core_cert),
	  .help = "Server certificates; the one matching the client's SNI "
	  "is used, else the first." },
	{ .key = "min-version", .type = OSP_CONF_ENUM,
	  .offset = CORE(tls.min_version) - CORE(tls), .values = tls_versions,
	  .dflt = "1.2",
	  .help = "Oldest TLS version accepted: 1.2 or 1.3." },
	OSP_CONF_END
};

/* limit.h: three numbers each, for the IP classes IPv4 /32 /26 /21 and
 * IPv6 /64 /48 /32 (mox's defaults); the count is checked by
 * osp_limit_conf_check(). */
static const struct osp_conf_def limits_defs[] = {
	{ .key = "connection-rate", .type = OSP_CONF_LIST, .elem = OSP_CONF_INT,
	  .offset = CORE(limits.connection_rate) - CORE(limits),
	  .dflt = "[300, 900, 2700]", .min = 0, .max = 1000000000,
	  .help = "New connections per minute from one IPv4 /32, /26, /21 "
	  "(IPv6 /64, /48, /32); 0: no limit." },
	{ .key = "connections", .type = OSP_CONF_LIST, .elem = OSP_CONF_INT,
	  .offset = CORE(limits.connections) - CORE(limits),
	  .dflt = "[30, 90, 270]", .min = 0, .max = 1000000000,
	  .help = "Open connections at once per IP class; 0: no limit." },
	{ .key = "auth-failures-per-minute", .type = OSP_CONF_LIST,
	  .elem = OSP_CONF_INT,
	  .offset = CORE(limits.auth_failures_per_minute) - CORE(limits),
	  .dflt = "[10, 30, 90]", .min = 0, .max = 1000000000,
	  .help = "Failed authentications per minute per IP class (every "
	  "protocol); 0: no limit." },
	{ .key = "auth-failures-per-day", .type = OSP_CONF_LIST,
	  .elem = OSP_CONF_INT,
	  .offset = CORE(limits.auth_failures_per_day) - CORE(limits),
	  .dflt = "[50, 150, 450]", .min = 0, .max = 1000000000,
	  .help = "Failed authentications per day per IP class; 0: no "
	  "limit." },
	OSP_CONF_END
};

/* Exported for osp_config_fill_modules(): these keys of a listener entry
 * are the core's, the others belong to the protocol module. */
const struct osp_conf_def osp_core_listener_defs[] = {
	{ .key = "name", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct osp_core_listener, name),
	  .flags = OSP_CONF_REQUIRED | OSP_CONF_NONEMPTY,
	  .help = "Unique name of the listener, used in logs." },
	{ .key = "protocol", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct osp_core_listener, protocol),
	  .flags = OSP_CONF_REQUIRED | OSP_CONF_NONEMPTY,
	  .help = "Module serving it (smtp, imap, http, ...)." },
	{ .key = "address", .type = OSP_CONF_LIST, .elem = OSP_CONF_ADDR,
	  .offset = offsetof(struct osp_core_listener, address),
	  .flags = OSP_CONF_NONEMPTY, .dflt = "[\"0.0.0.0\", \"::\"]",
	  .help = "IP addresses to bind, without port (default: every IPv4 "
	  "and IPv6 address)." },
	{ .key = "port", .type = OSP_CONF_INT,
	  .offset = offsetof(struct osp_core_listener, port),
	  .flags = OSP_CONF_REQUIRED, .min = 1, .max = 65535,
	  .help = "TCP port." },
	{ .key = "tls", .type = OSP_CONF_ENUM,
	  .offset = offsetof(struct osp_core_listener, tls),
	  .values = listener_tls, .dflt = "none",
	  .help = "TLS mode: none, implicit (TLS from the first byte) or "
	  "starttls." },
	OSP_CONF_END
};

const struct osp_conf_def osp_core_conf_defs[] = {
	{ .key = "hostname", .type = OSP_CONF_STRING, .offset = CORE(hostname),
	  .flags = OSP_CONF_NONEMPTY,
	  .help = "Host name of this server (default: the system host "
	  "name)." },
	{ .key = "data-dir", .type = OSP_CONF_PATH, .offset = CORE(data_dir),
	  .flags = OSP_CONF_NONEMPTY, .dflt = "/var/lib/osprey",
	  .help = "Directory of mail, queue and state (relative to this "
	  "file's directory)." },
	{ .key = "user", .type = OSP_CONF_STRING, .offset = CORE(user),
	  .flags = OSP_CONF_NONEMPTY, .dflt = "osprey",
	  .help = "User to run as after binding listeners." },
	{ .key = "group", .type = OSP_CONF_STRING, .offset = CORE(group),
	  .flags = OSP_CONF_NONEMPTY,
	  .help = "Group to run as (default: the user's primary group)." },
	{ .key = "module-path", .type = OSP_CONF_STRING,
	  .offset = CORE(module_path), .flags = OSP_CONF_NONEMPTY,
	  .dflt = OSP_MODULE_DIR,
	  .help = "Colon-separated directories searched for modules "
	  "(OSPREY_MODULE_PATH overrides)." },
	{ .key = "modules", .type = OSP_CONF_LIST, .elem = OSP_CONF_STRING,
	  .offset = CORE(modules),
	  .help = "Modules to load; lists of included files add to it." },
	{ .key = "include", .type = OSP_CONF_LIST, .elem = OSP_CONF_STRING,
	  .offset = CORE(include),
	  .help = "Glob patterns of files merged into this one, relative to "
	  "its directory, each in lexical order." },
	{ .key = "shutdown-timeout", .type = OSP_CONF_DURATION,
	  .offset = CORE(shutdown_timeout), .dflt = "10s",
	  .help = "How long sessions may drain at shutdown before they are "
	  "closed." },
	{ .key = "workers", .type = OSP_CONF_INT, .offset = CORE(workers),
	  .dflt = "4", .min = 1, .max = 64,
	  .help = "Worker threads for disk writes and long jobs." },
	{ .key = "log", .type = OSP_CONF_SECTION, .offset = CORE(log),
	  .sub = log_defs, .help = "Logging." },
	{ .key = "dns", .type = OSP_CONF_SECTION, .offset = CORE(dns),
	  .sub = dns_defs, .help = "DNSSEC-validating resolver (libunbound)." },
	{ .key = "tls", .type = OSP_CONF_SECTION, .offset = CORE(tls),
	  .sub = tls_defs, .help = "TLS server settings." },
	{ .key = "limits", .type = OSP_CONF_SECTION, .offset = CORE(limits),
	  .sub = limits_defs,
	  .help = "Abuse limits per IP class, shared by every protocol." },
	{ .key = "listeners", .type = OSP_CONF_SECTIONS,
	  .offset = CORE(listeners), .sub = osp_core_listener_defs,
	  .elem_size = sizeof(struct osp_core_listener),
	  .flags = OSP_CONF_OPEN,
	  .help = "Sockets to listen on; other keys of an entry are those of "
	  "its protocol module." },
	OSP_CONF_END
};
