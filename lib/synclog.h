/*
 * synclog: the writing side of Cyrus's sync_log (protocol doc section 7),
 * so that syncpipe tools feed rolling replication exactly as Cyrus's own
 * mail-store processes do.
 *
 * A log is {configdirectory}/sync/log (default channel) or
 * {configdirectory}/sync/<channel>/log.  Writers append whole events
 * under an exclusive fcntl lock and fsync before unlocking; a reader
 * renames the file away to consume it.
 */
#ifndef SYNCPIPE_SYNCLOG_H
#define SYNCPIPE_SYNCLOG_H

#include <sys/types.h>
#include <stddef.h>
#include <time.h>

struct conf;

#define SYNCLOG_MAX_LINE	8192

/*
 * Format one event line "TYPE arg1 [arg2]\n" into buf, quoting arguments
 * as Cyrus's writer does.  arg2 may be NULL.  Returns the line's length,
 * or -1 if an argument holds CR or LF (or a NUL-free type is missing) or
 * the line does not fit in size bytes.
 */
int	 synclog_format(char *buf, size_t size, const char *type,
	    const char *arg1, const char *arg2);

/*
 * Path of a channel's log: channel NULL or "" is the default channel.
 * Returns 0, or -1 (with err) for a bad channel name or a short buffer.
 */
int	 synclog_path(const struct conf *, const char *channel, char *buf,
	    size_t size, char *err, size_t errlen);

/*
 * Append text (one or more complete lines) to one channel's log with the
 * writer protocol.  Creates missing directories.  Returns 0 or -1 with
 * err set.  Does not look at sync_log.
 */
int	 synclog_append_channel(const struct conf *, const char *channel,
	    const char *text, size_t len, char *err, size_t errlen);

/*
 * Append text to every channel of sync_log_channels (the default channel
 * when unset; the token "" names it), if sync_log is on; nothing
 * otherwise.  Returns 0, or -1 with err set (all channels are still
 * attempted).
 */
int	 synclog_append(const struct conf *, const char *text, size_t len,
	    char *err, size_t errlen);

/* 1 if sync_log is on, 0 if off, -1 for a bad value (err set). */
int	 synclog_enabled(const struct conf *, char *err, size_t errlen);

/*
 * Call fn for each channel of sync_log_channels ("" for the default
 * channel; unset or empty: the default channel alone).  Returns 0, the
 * first non-zero value fn returned (all channels are still visited), or
 * -1 with err set for a name too long.
 */
int	 synclog_foreach_channel(const struct conf *,
	    int (*fn)(const struct conf *, const char *channel, void *),
	    void *arg, char *err, size_t errlen);

/*
 * path made absolute through its directory, which must exist (the last
 * component need not).  Returns 0, or -1 with errno set.
 */
int	 synclog_abspath(const char *path, char *buf, size_t size);

/*
 * The identity of a claimed log file as "%commit" lines carry it
 * (syncpipe-actions(5)): "dev:ino:size:mtime_s.mtime_ns".
 */
void	 synclog_file_id(dev_t, ino_t, off_t, const struct timespec *mtime,
	    char *buf, size_t size);

enum synclog_commit {
	SYNCLOG_COMMIT_OK,	/* removed, or already gone */
	SYNCLOG_COMMIT_FAIL,	/* not a claimed file, or claimed again */
	SYNCLOG_COMMIT_TEMP,	/* could not remove it, or not durably */
	SYNCLOG_COMMIT_CONFIG	/* the configuration names no such log */
};

/*
 * Commit the claimed log file path: remove it and fsync its directory.
 * Only a file that is "{log}-run" of channel or of a channel of
 * sync_log_channels may be removed, or, with file non-NULL, only that
 * file (synclog-tail -f).  With id non-NULL, only while the file is
 * still the one claimed (synclog_file_id).  err is set unless OK.
 */
enum synclog_commit synclog_commit(const struct conf *, const char *channel,
	    const char *file, const char *path, const char *id, char *err,
	    size_t errlen);

#endif
