/*
 * synclog_commit: removing a claimed sync_log file once everything
 * planned from it has been applied (syncpipe-actions(5), "%commit"), and
 * the helpers it shares with synclog-tail(1).
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "conf.h"
#include "synclog.h"

int
synclog_abspath(const char *path, char *buf, size_t size)
{
	char dir[PATH_MAX], real[PATH_MAX];
	const char *slash = strrchr(path, '/'), *base;

	if (slash == NULL) {
		strlcpy(dir, ".", sizeof(dir));
		base = path;
	} else if (slash == path) {
		strlcpy(dir, "/", sizeof(dir));
		base = slash + 1;
	} else {
		if ((size_t)(slash - path) >= sizeof(dir)) {
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(dir, path, slash - path);
		dir[slash - path] = '\0';
		base = slash + 1;
	}
	if (*base == '\0' || strcmp(base, ".") == 0 ||
	    strcmp(base, "..") == 0) {
		errno = EINVAL;
		return -1;
	}
	if (realpath(dir, real) == NULL)
		return -1;
	if (snprintf(buf, size, "%s%s%s", real,
	    strcmp(real, "/") == 0 ? "" : "/", base) >= (int)size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

void
synclog_file_id(dev_t dev, ino_t ino, off_t size,
    const struct timespec *mtime, char *buf, size_t bufsize)
{
	snprintf(buf, bufsize, "%ju:%ju:%jd:%jd.%09ld", (uintmax_t)dev,
	    (uintmax_t)ino, (intmax_t)size, (intmax_t)mtime->tv_sec,
	    (long)mtime->tv_nsec);
}

int
synclog_foreach_channel(const struct conf *conf,
    int (*fn)(const struct conf *, const char *, void *), void *arg,
    char *err, size_t errlen)
{
	const char *list, *p, *q;
	char name[256];
	int r, rc = 0;

	list = conf_get(conf, NULL, "sync_log_channels", NULL);
	if (list == NULL || *list == '\0')
		return fn(conf, "", arg);
	for (p = list; *p != '\0'; p = q) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		for (q = p; *q != '\0' && *q != ' ' && *q != '\t'; q++)
			;
		if ((size_t)(q - p) >= sizeof(name)) {
			snprintf(err, errlen, "sync_log_channels: name too long");
			return -1;
		}
		memcpy(name, p, q - p);
		name[q - p] = '\0';
		/* The two-byte token "" is the default channel. */
		if (strcmp(name, "\"\"") == 0)
			name[0] = '\0';
		if ((r = fn(conf, name, arg)) != 0 && rc == 0)
			rc = r;
	}
	return rc;
}

static void
errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Is c->path the claimed file ({log}-run) of this channel? */
struct commit_match {
	const char	*path;
	int		 allowed;
	char		*err;
	size_t		 errlen;
};

static int
commit_match(const struct conf *conf, const char *channel, void *arg)
{
	struct commit_match *c = arg;
	char log[PATH_MAX], run[PATH_MAX], abs[PATH_MAX];

	if (synclog_path(conf, channel, log, sizeof(log), c->err,
	    c->errlen) == -1)
		return -1;
	if (snprintf(run, sizeof(run), "%s-run", log) >= (int)sizeof(run)) {
		errf(c->err, c->errlen, "%s-run: name too long", log);
		return -1;
	}
	if (synclog_abspath(run, abs, sizeof(abs)) == 0 &&
	    strcmp(abs, c->path) == 0)
		c->allowed = 1;
	return 0;
}

static int
fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int fd, r, e;

	if (strlcpy(dir, path, sizeof(dir)) >= sizeof(dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((slash = strrchr(dir, '/')) == NULL)
		strlcpy(dir, ".", sizeof(dir));
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = fsync(fd);
	e = errno;
	close(fd);
	errno = e;
	return r;
}

enum synclog_commit
synclog_commit(const struct conf *conf, const char *channel,
    const char *file, const char *path, const char *id, char *err,
    size_t errlen)
{
	struct commit_match c = { NULL, 0, err, errlen };
	char abs[PATH_MAX], fabs[PATH_MAX], idbuf[128];
	struct stat st;

	if (synclog_abspath(path, abs, sizeof(abs)) == -1) {
		if (errno == ENOENT)
			return SYNCLOG_COMMIT_OK;	/* its directory is gone */
		errf(err, errlen, "%s: %s", path, strerror(errno));
		return SYNCLOG_COMMIT_FAIL;
	}
	c.path = abs;
	if (file != NULL) {
		if (synclog_abspath(file, fabs, sizeof(fabs)) == 0 &&
		    strcmp(fabs, abs) == 0)
			c.allowed = 1;
	} else if (conf != NULL) {
		/* The channel given, and every channel writers write. */
		if (channel != NULL && commit_match(conf, channel, &c) == -1)
			return SYNCLOG_COMMIT_CONFIG;
		if (synclog_foreach_channel(conf, commit_match, &c, err,
		    errlen) != 0)
			return SYNCLOG_COMMIT_CONFIG;
	}
	if (!c.allowed) {
		errf(err, errlen, "%s: not a claimed log file of a configured "
		    "channel", abs);
		return SYNCLOG_COMMIT_FAIL;
	}
	if (lstat(abs, &st) == -1) {
		if (errno == ENOENT)
			return SYNCLOG_COMMIT_OK;	/* already committed */
		errf(err, errlen, "%s: %s", abs, strerror(errno));
		return SYNCLOG_COMMIT_TEMP;
	}
	if (!S_ISREG(st.st_mode)) {
		errf(err, errlen, "%s: not a regular file", abs);
		return SYNCLOG_COMMIT_FAIL;
	}
	if (id != NULL) {
		synclog_file_id(st.st_dev, st.st_ino, st.st_size, &st.st_mtim,
		    idbuf, sizeof(idbuf));
		if (strcmp(idbuf, id) != 0) {
			errf(err, errlen, "%s: is %s, not %s: not committing a "
			    "file claimed later", abs, idbuf, id);
			return SYNCLOG_COMMIT_FAIL;
		}
	}
	if (unlink(abs) == -1) {
		if (errno == ENOENT)
			return SYNCLOG_COMMIT_OK;
		errf(err, errlen, "unlink %s: %s", abs, strerror(errno));
		return SYNCLOG_COMMIT_TEMP;
	}
	if (fsync_parent(abs) == -1) {
		errf(err, errlen, "fsync directory of %s: %s", abs,
		    strerror(errno));
		return SYNCLOG_COMMIT_TEMP;
	}
	return SYNCLOG_COMMIT_OK;
}
