/* SPDX-License-Identifier: ISC */
/* Opening the global SQLite databases of the data directory (auth.db,
 * sendlog.db, later queue.db) the same way: private, durable, shared by
 * threads. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

int
osp_sqlite_open_private(const char *data_dir, const char *name,
    const char *pragmas, struct sqlite3 **db_r, const char **error_r)
{
	sqlite3 *db = NULL;
	char *path;
	int fd, rc;

	*db_r = NULL;
	path = osp_malloc(strlen(data_dir) + strlen(name) + 2);
	strcpy(path, data_dir);
	strcat(path, "/");
	strcat(path, name);
	/* Created 0600 before SQLite sees it: the -wal and -shm files take
	 * the database's mode. */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		osp_free(path);
		*error_r = "cannot create the database file";
		return rc;
	}
	close(fd);
	/* FULLMUTEX: a handle is used from worker threads in turn. */
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_FULLMUTEX, NULL);
	osp_free(path);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 10000);
		rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL;"
		    "PRAGMA synchronous=FULL;", NULL, NULL, NULL);
	}
	if (rc == SQLITE_OK && pragmas != NULL)
		rc = sqlite3_exec(db, pragmas, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		osp_log_err("core", "open %s: %s", name, db != NULL ?
		    sqlite3_errmsg(db) : "out of memory");
		sqlite3_close_v2(db);
		*error_r = "cannot open the database";
		return OSP_ERROR;
	}
	*db_r = db;
	return OSP_OK;
}
