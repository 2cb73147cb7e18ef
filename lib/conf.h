/*
 * conf: the imapd.conf reader, with Cyrus's grammar.
 *
 *   key: value          (key: letters, digits, '-', '_', case-folded to
 *                        lower case; value trimmed, must not be empty;
 *                        blanks before the key are allowed)
 *   # comment           (a line whose first non-blank byte is '#')
 *   continuation        (a backslash right before the newline joins the
 *                        next line verbatim, as Cyrus 3.6.1 does; a line
 *                        starting with blank space is NOT a continuation)
 *   @include: FILE      (another file, relative to the including one;
 *                        a file read twice is an error, as in Cyrus)
 *
 * A key given twice is an error.  Unknown keys are kept.  Lookups take an
 * optional prefix (a channel name or a service name): with prefix "foo",
 * "foo_sync_host" is preferred over "sync_host".
 */
#ifndef SYNCPIPE_CONF_H
#define SYNCPIPE_CONF_H

#include <stddef.h>
#include <stdint.h>

struct conf;

#define CONF_DEFAULT_PATH	"/etc/imapd.conf"
#define CONF_MAX_LINE		65536
#define CONF_MAX_INCLUDE_DEPTH	16

/* Read path.  Returns NULL with err set on any error (file, line, reason). */
struct conf	*conf_load(const char *path, char *err, size_t errlen);
/* Parse text as if it were a file named name (tests, fuzzing). */
struct conf	*conf_parse(const char *text, size_t len, const char *name,
		    char *err, size_t errlen);
/* An empty config (all defaults). */
struct conf	*conf_new(void);
void		 conf_free(struct conf *);
/* Set or replace a value (command-line overrides, tests). */
void		 conf_set(struct conf *, const char *key, const char *value);

/* prefix may be NULL.  Return the value or def when unset. */
const char	*conf_get(const struct conf *, const char *prefix,
		    const char *key, const char *def);
/*
 * Switches, exactly as Cyrus 3.6.1 reads them: case-sensitive, decided by
 * the first bytes: "1", "y...", "t...", "on..." are 1 (so yes, true, on,
 * t, y); "0", "n...", "f...", "of..." are 0.  "True", "ON", "2" are
 * errors.  Returns def when unset, or -1 (with err) for any other value.
 */
int		 conf_getswitch(const struct conf *, const char *prefix,
		    const char *key, int def, char *err, size_t errlen);
/*
 * Integers, as Cyrus reads them (strtoll base 0): optional sign, "0x"
 * hex and leading-0 octal accepted, out-of-range values saturate.
 * Returns 0 with *out set (def when unset), or -1 with err on junk.
 */
int		 conf_getint(const struct conf *, const char *prefix,
		    const char *key, int64_t def, int64_t *out,
		    char *err, size_t errlen);
/*
 * Durations: a number with optional unit suffixes d, h, m, s (combined:
 * "1h30m"; lower case only; a unit may repeat); a bare or trailing
 * number is in defunit ('s' or 'm' etc., as the option defines); an
 * optional leading '-'.  Result in seconds in *out; returns 0, or -1 with
 * err on junk or overflow.  def (may be NULL: 0) is used when unset.
 */
int		 conf_getduration(const struct conf *, const char *prefix,
		    const char *key, const char *def, char defunit,
		    int64_t *out, char *err, size_t errlen);

/* The directory of partition-<name>, or NULL if that partition is not
 * configured.  name must be a plain partition name. */
const char	*conf_partition_path(const struct conf *, const char *name);
/* configdirectory (default /var/lib/cyrus). */
const char	*conf_configdir(const struct conf *);

/* Call fn for every key/value in file order (config check, dumps). */
void		 conf_foreach(const struct conf *,
		    void (*fn)(const char *key, const char *value,
			const char *file, int line, void *), void *arg);
/* 1 if key is an option Cyrus 3.6 or syncpipe knows (partition-*,
 * <prefix>_<known> included). */
int		 conf_known_key(const char *key);

#endif
