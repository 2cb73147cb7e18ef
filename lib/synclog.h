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

#include <stddef.h>

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

#endif
