/*
 * synclog_read: the reading side of Cyrus's sync_log (protocol doc
 * section 7): parsing log lines, coalescing them the way Cyrus 3.6's
 * rolling sync_client does, and reading a claimed file line by line with
 * a bound on the line length.  See sync_log(5) and synclog-tail(1).
 */
#ifndef SYNCPIPE_SYNCLOG_READ_H
#define SYNCPIPE_SYNCLOG_READ_H

#include <stddef.h>

/* Record kinds, in the order of the type names of sync_log(5). */
enum synclog_kind {
	SYNCLOG_USER,
	SYNCLOG_UNUSER,
	SYNCLOG_META,
	SYNCLOG_SIEVE,
	SYNCLOG_APPEND,
	SYNCLOG_MAILBOX,
	SYNCLOG_DOUBLEMAILBOX,
	SYNCLOG_UNMAILBOX,
	SYNCLOG_RENAME,
	SYNCLOG_QUOTA,
	SYNCLOG_ANNOTATION,
	SYNCLOG_SEEN,
	SYNCLOG_SUB,
	SYNCLOG_UNSUB,
	SYNCLOG_NKINDS
};

/* Longest line accepted by the reader, LF excluded. */
#define SYNCLOG_READ_MAX	8192

/*
 * One parsed record.  arg1 and arg2 point into rec->buf (NUL-terminated,
 * unquoted); arg2 is NULL for one-argument kinds.  Arguments may hold
 * any byte but NUL, CR and LF.
 */
struct synclog_rec {
	enum synclog_kind	 kind;
	const char		*arg1;
	const char		*arg2;
	char			 buf[SYNCLOG_READ_MAX + 2];
};

/* Upper-case type name of a kind ("MAILBOX"), or NULL if out of range. */
const char	*synclog_kind_name(enum synclog_kind);
/* Number of arguments a kind takes (1 or 2). */
int		 synclog_kind_nargs(enum synclog_kind);

/*
 * Parse one line of len bytes (the LF removed; a trailing CR is
 * tolerated).  Returns 1 with rec filled, 0 for a line that carries no
 * record (blank, or a control line starting with '%'), or -1 with err
 * set for a malformed line: unknown type, wrong argument count, bad
 * quoting, a NUL byte, or longer than SYNCLOG_READ_MAX.
 */
int		 synclog_parse(const char *line, size_t len,
		    struct synclog_rec *rec, char *err, size_t errlen);

/*
 * Write rec as one log line "TYPE arg1 [arg2]\n" with the writer's
 * quoting into buf.  Returns the length, or -1 if it does not fit.
 */
int		 synclog_rec_format(const struct synclog_rec *rec, char *buf,
		    size_t size);

/*
 * Owner of an internal mailbox name: the userid for "user.u[.…]" and
 * "domain!user.u[.…]" (as "u@domain"), and for the same names under the
 * default DELETED. prefix; "" for shared mailboxes.  Writes into buf.
 */
void		 synclog_mailbox_owner(const char *mbox, char *buf,
		    size_t size);

/*
 * A coalescing set: records are added in log order and emitted, with
 * duplicates and redundant records removed, in the order Cyrus executes
 * them (sync_log(5), section COALESCING).  Memory is owned by the set.
 */
struct synclog_set;

struct synclog_set	*synclog_set_new(void);
void			 synclog_set_free(struct synclog_set *);
/* Add one record.  Returns 0, or -1 with err set when out of memory. */
int			 synclog_set_add(struct synclog_set *,
			    const struct synclog_rec *, char *err,
			    size_t errlen);
/* Records added so far (before coalescing). */
size_t			 synclog_set_added(const struct synclog_set *);
/*
 * Call fn once per coalesced record, in execution order, with the
 * formatted line (LF-terminated).  Stops at and returns the first
 * non-zero value fn returns; 0 otherwise.  The set is unchanged and may
 * be emitted again.
 */
int			 synclog_set_emit(const struct synclog_set *,
			    int (*fn)(const char *line, size_t len, void *),
			    void *arg);

/*
 * A bounded line reader over a file descriptor.  Lines longer than
 * SYNCLOG_READ_MAX come out in pieces flagged SYNCLOG_LINE_LONG, the
 * last piece without SYNCLOG_LINE_MORE, so that a caller can copy an
 * overlong line verbatim without holding it.
 */
#define SYNCLOG_LINE_LONG	0x01	/* piece of an overlong line */
#define SYNCLOG_LINE_MORE	0x02	/* more pieces of it follow */
#define SYNCLOG_LINE_NOLF	0x04	/* last line of the file, no LF */

struct synclog_reader;

/* fd is not closed by the reader.  NULL when out of memory. */
struct synclog_reader	*synclog_reader_new(int fd);
void			 synclog_reader_free(struct synclog_reader *);
/*
 * Next line (LF removed) or piece.  Returns 1 with *line, *len and
 * *flags set (valid until the next call), 0 at end of file, -1 with err
 * set on a read error.  *lineno is the number of the line the piece
 * belongs to, counting from 1.
 */
int			 synclog_reader_next(struct synclog_reader *,
			    const char **line, size_t *len, int *flags,
			    unsigned long *lineno, char *err, size_t errlen);

/*
 * One line of an action stream (syncpipe-actions(5)) as synclog_action_next
 * reads it: a record, a control line (starting with '%'), or a line that
 * is dropped with why set: an overlong one, or a malformed one.
 */
enum synclog_action_kind {
	SYNCLOG_ACTION_RECORD,
	SYNCLOG_ACTION_CONTROL,
	SYNCLOG_ACTION_LONG,
	SYNCLOG_ACTION_BAD
};

struct synclog_action {
	enum synclog_action_kind kind;
	unsigned long		 lineno;
	struct synclog_rec	 rec;		/* RECORD */
	char			 ctl[SYNCLOG_READ_MAX + 1]; /* CONTROL */
	char			 why[256];	/* LONG, BAD */
};

/*
 * The next line of an action stream from r.  Blank lines, the header
 * and other lines without a record or control are skipped.  Returns 1
 * with a filled, 0 at the end, -1 with err set on a read error or a
 * header of another version than 1 (the stream cannot be read on).
 */
int			 synclog_action_next(struct synclog_reader *r,
			    struct synclog_action *a, char *err,
			    size_t errlen);

#endif
