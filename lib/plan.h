/*
 * plan: reading the plan stream (syncpipe-plan(5)) the way sync-send
 * does: one line at a time, a control or comment line whole, a command
 * as its verb, its sub-command and a dlist value, and the body
 * references of an APPLY MESSAGE line one by one.
 *
 * Errors: functions return -1 and leave a message in err.  Library code
 * never prints and never exits.
 */
#ifndef SYNCPIPE_PLAN_H
#define SYNCPIPE_PLAN_H

#include <stddef.h>
#include <stdint.h>

struct dlist;
struct prot;

/* Longest control, comment or APPLY MESSAGE line (LF excluded). */
#define PLAN_LINE_MAX	131071

enum plan_kind {
	PLAN_EOF,	/* no more input */
	PLAN_CONTROL,	/* a "%..." or "#..." line, in text */
	PLAN_MESSAGE,	/* "APPLY MESSAGE (": text is what follows the '(' */
	PLAN_COMMAND	/* verb key value: word, key and value */
};

struct plan_line {
	enum plan_kind	 kind;
	char		 word[64];	/* APPLY, GET, RESTORE, MASTER */
	char		 key[64];	/* the sub-command, upper-cased */
	struct dlist	*value;		/* PLAN_COMMAND; the caller frees it */
	char		*text;		/* PLAN_CONTROL, PLAN_MESSAGE */
};

/*
 * Read the next line of the plan from in into l; text points into buf
 * (at least PLAN_LINE_MAX + 1 bytes).  Empty lines are skipped.
 * Returns 0, or -1 with err set for a line that is not in the grammar
 * (the stream is then out of step: stop reading).
 */
int	 plan_next(struct prot *in, struct plan_line *l, char *buf,
	    size_t bufsize, char *err, size_t errlen);

/* One body reference "%{partition guid size}" [SP "%(" source ")"]. */
struct plan_ref {
	char		 part[128];
	char		 guid[41];	/* lower case */
	uint64_t	 size;
	struct dlist	*loc;		/* the source, or NULL; caller frees */
};

/*
 * The next body reference of an APPLY MESSAGE line, from *pp (the text
 * of a PLAN_MESSAGE line), which is advanced past it.  Returns 1 with r
 * filled, 0 at the closing ')', -1 with err set.
 */
int	 plan_ref_next(const char **pp, struct plan_ref *r, char *err,
	    size_t errlen);

#endif
