/*
 * synclog: sync_log writer (see synclog.h).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "synclog.h"

/* Cyrus gives up after this many races with a renaming reader. */
#define SYNCLOG_RETRIES	64

static int
synclog_needs_quote(const char *s)
{
	if (*s == '\0')
		return 1;
	return strpbrk(s, " \t()\\\"{}") != NULL;
}

static int
synclog_put_arg(char *buf, size_t size, size_t *off, const char *s)
{
	int quote = synclog_needs_quote(s);

	if (strpbrk(s, "\r\n") != NULL)
		return -1;
	if (*off + 1 >= size)
		return -1;
	buf[(*off)++] = ' ';
	if (quote) {
		if (*off + 1 >= size)
			return -1;
		buf[(*off)++] = '"';
	}
	for (; *s != '\0'; s++) {
		if (quote && strchr("\\\"{}", *s) != NULL) {
			if (*off + 1 >= size)
				return -1;
			buf[(*off)++] = '\\';
		}
		if (*off + 1 >= size)
			return -1;
		buf[(*off)++] = *s;
	}
	if (quote) {
		if (*off + 1 >= size)
			return -1;
		buf[(*off)++] = '"';
	}
	return 0;
}

/*
 * Format one event line; see synclog.h.
 */
int
synclog_format(char *buf, size_t size, const char *type, const char *arg1,
    const char *arg2)
{
	size_t off, tl;

	if (type == NULL || *type == '\0' || arg1 == NULL || size == 0)
		return -1;
	if (strpbrk(type, " \t\r\n") != NULL)
		return -1;
	tl = strlen(type);
	if (tl + 1 >= size)
		return -1;
	memcpy(buf, type, tl);
	off = tl;
	if (synclog_put_arg(buf, size, &off, arg1) == -1)
		return -1;
	if (arg2 != NULL && synclog_put_arg(buf, size, &off, arg2) == -1)
		return -1;
	if (off + 2 > size)
		return -1;
	buf[off++] = '\n';
	buf[off] = '\0';
	return (int)off;
}

static int
synclog_channel_valid(const char *c)
{
	size_t n;

	if (c[0] == '.' || strlen(c) > 64)
		return 0;
	for (n = 0; c[n] != '\0'; n++)
		if (strchr("abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.", c[n]) == NULL)
			return 0;
	return n > 0;
}

/*
 * Log path of a channel; see synclog.h.
 */
int
synclog_path(const struct conf *conf, const char *channel, char *buf,
    size_t size, char *err, size_t errlen)
{
	const char *dir = conf_configdir(conf);
	int n;

	if (channel == NULL || *channel == '\0')
		n = snprintf(buf, size, "%s/sync/log", dir);
	else {
		if (!synclog_channel_valid(channel)) {
			snprintf(err, errlen, "bad sync_log channel name '%s'",
			    channel);
			return -1;
		}
		n = snprintf(buf, size, "%s/sync/%s/log", dir, channel);
	}
	if (n < 0 || (size_t)n >= size) {
		snprintf(err, errlen, "sync log path too long");
		return -1;
	}
	return 0;
}

/* mkdir -p of the directories above path. */
static int
synclog_mkparents(const char *path)
{
	char tmp[4096];
	char *p;

	if (strlcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp))
		return -1;
	p = strrchr(tmp, '/');
	if (p == NULL)
		return 0;
	*p = '\0';
	for (p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0750) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, 0750) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

static int
synclog_lock(int fd, short type)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	while (fcntl(fd, F_SETLKW, &fl) == -1)
		if (errno != EINTR)
			return -1;
	return 0;
}

static int
synclog_write_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Append to one channel with Cyrus's writer protocol; see synclog.h.
 */
int
synclog_append_channel(const struct conf *conf, const char *channel,
    const char *text, size_t len, char *err, size_t errlen)
{
	char path[4096];
	struct stat fst, pst;
	int fd = -1, tries;

	if (synclog_path(conf, channel, path, sizeof(path), err, errlen) == -1)
		return -1;
	if (len == 0)
		return 0;
	for (tries = 0; tries < SYNCLOG_RETRIES; tries++) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
		    0640);
		if (fd == -1 && errno == ENOENT) {
			if (synclog_mkparents(path) == -1) {
				snprintf(err, errlen, "%s: mkdir: %s", path,
				    strerror(errno));
				return -1;
			}
			fd = open(path, O_WRONLY | O_APPEND | O_CREAT |
			    O_CLOEXEC, 0640);
		}
		if (fd == -1) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return -1;
		}
		if (synclog_lock(fd, F_WRLCK) == -1) {
			snprintf(err, errlen, "%s: lock: %s", path,
			    strerror(errno));
			close(fd);
			return -1;
		}
		/*
		 * The reader renames the log away and then waits for our
		 * lock; if it did so while we waited, our fd is the old
		 * file and the write must go to a fresh one.
		 */
		if (fstat(fd, &fst) == 0 && stat(path, &pst) == 0 &&
		    fst.st_ino == pst.st_ino && fst.st_dev == pst.st_dev)
			break;
		synclog_lock(fd, F_UNLCK);
		close(fd);
		fd = -1;
	}
	if (fd == -1) {
		snprintf(err, errlen, "%s: file keeps being renamed", path);
		return -1;
	}
	if (synclog_write_all(fd, text, len) == -1 || fsync(fd) == -1) {
		snprintf(err, errlen, "%s: write: %s", path, strerror(errno));
		/* No torn line for the next writer to glue its own onto. */
		(void)ftruncate(fd, fst.st_size);
		synclog_lock(fd, F_UNLCK);
		close(fd);
		return -1;
	}
	synclog_lock(fd, F_UNLCK);
	if (close(fd) == -1) {
		snprintf(err, errlen, "%s: close: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * sync_log switch; see synclog.h.
 */
int
synclog_enabled(const struct conf *conf, char *err, size_t errlen)
{
	return conf_getswitch(conf, NULL, "sync_log", 0, err, errlen);
}

/*
 * Append to every configured channel; see synclog.h.
 */
int
synclog_append(const struct conf *conf, const char *text, size_t len,
    char *err, size_t errlen)
{
	const char *channels, *p;
	char name[128];
	size_t n;
	int on, rc = 0;

	on = synclog_enabled(conf, err, errlen);
	if (on <= 0)
		return on;
	channels = conf_get(conf, NULL, "sync_log_channels", NULL);
	if (channels == NULL)
		return synclog_append_channel(conf, NULL, text, len, err,
		    errlen);
	for (p = channels; *p != '\0'; p += n) {
		while (*p == ' ' || *p == '\t')
			p++;
		n = strcspn(p, " \t");
		if (n == 0)
			break;
		if (n >= sizeof(name)) {
			snprintf(err, errlen,
			    "sync_log_channels: name too long");
			rc = -1;
			continue;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		/* The two-byte token "" is the default channel. */
		if (strcmp(name, "\"\"") == 0)
			name[0] = '\0';
		if (synclog_append_channel(conf, name, text, len, err,
		    errlen) == -1)
			rc = -1;
	}
	return rc;
}
