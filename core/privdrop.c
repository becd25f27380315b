/* SPDX-License-Identifier: ISC */
/* Dropping root after the listeners are bound. */
#include "core.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
osp_privdrop(const char *user, const char *group, const char **error_r)
{
	static char msg[256];
	struct passwd *pw;
	struct group *gr;
	gid_t gid;
	uid_t uid;

	if (geteuid() != 0)
		return OSP_OK;
	if (user == NULL || *user == '\0') {
		*error_r = "running as root needs `user:` set to drop privileges";
		return OSP_ECONFIG;
	}
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(msg, sizeof(msg), "user %s: no such user (create it: "
		    "adduser --system --group %s)", user, user);
		*error_r = msg;
		return OSP_ECONFIG;
	}
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	if (group != NULL && *group != '\0') {
		if ((gr = getgrnam(group)) == NULL) {
			snprintf(msg, sizeof(msg), "group %s: no such group",
			    group);
			*error_r = msg;
			return OSP_ECONFIG;
		}
		gid = gr->gr_gid;
	}
	if (uid == 0) {
		*error_r = "user: refusing to run as uid 0";
		return OSP_ECONFIG;
	}
	if (setgroups(1, &gid) == -1 || setresgid(gid, gid, gid) == -1 ||
	    setresuid(uid, uid, uid) == -1) {
		snprintf(msg, sizeof(msg), "dropping privileges to %s: %s",
		    user, strerror(errno));
		*error_r = msg;
		return -errno;
	}
	/* Verify: regaining root must fail now. */
	if (setuid(0) != -1 || seteuid(0) != -1 || getuid() == 0 ||
	    geteuid() == 0) {
		*error_r = "privilege drop did not stick: root could be regained";
		return OSP_ERROR;
	}
	osp_log_info("core", "privileges dropped user=%s uid=%u gid=%u", user,
	    (unsigned)uid, (unsigned)gid);
	return OSP_OK;
}
