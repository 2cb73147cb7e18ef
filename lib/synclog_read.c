/*
 * synclog_read: sync_log parser, coalescer and bounded line reader (see
 * synclog_read.h and sync_log(5)).
 */
#include <sys/types.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "synclog.h"
#include "synclog_read.h"

static const struct {
	const char	*name;
	int		 nargs;
} synclog_kinds[SYNCLOG_NKINDS] = {
	[SYNCLOG_USER] =		{ "USER", 1 },
	[SYNCLOG_UNUSER] =		{ "UNUSER", 1 },
	[SYNCLOG_META] =		{ "META", 1 },
	[SYNCLOG_SIEVE] =		{ "SIEVE", 1 },
	[SYNCLOG_APPEND] =		{ "APPEND", 1 },
	[SYNCLOG_MAILBOX] =		{ "MAILBOX", 1 },
	[SYNCLOG_DOUBLEMAILBOX] =	{ "DOUBLEMAILBOX", 2 },
	[SYNCLOG_UNMAILBOX] =		{ "UNMAILBOX", 1 },
	[SYNCLOG_RENAME] =		{ "RENAME", 2 },
	[SYNCLOG_QUOTA] =		{ "QUOTA", 1 },
	[SYNCLOG_ANNOTATION] =		{ "ANNOTATION", 1 },
	[SYNCLOG_SEEN] =		{ "SEEN", 2 },
	[SYNCLOG_SUB] =			{ "SUB", 2 },
	[SYNCLOG_UNSUB] =		{ "UNSUB", 2 },
};

/*
 * Type name of a kind; see synclog_read.h.
 */
const char *
synclog_kind_name(enum synclog_kind k)
{
	if ((unsigned)k >= SYNCLOG_NKINDS)
		return NULL;
	return synclog_kinds[k].name;
}

/*
 * Argument count of a kind; see synclog_read.h.
 */
int
synclog_kind_nargs(enum synclog_kind k)
{
	if ((unsigned)k >= SYNCLOG_NKINDS)
		return 0;
	return synclog_kinds[k].nargs;
}

static int
synclog_isblank(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Read one astring at line[*pos] into out (NUL-terminated), advancing
 * *pos and *o.  Bare atoms stop at blank space and may not hold the
 * characters the writer would have quoted; quoted strings take a
 * backslash as an escape for the next byte.  Literals are refused: Cyrus
 * never writes them.
 */
static int
synclog_astring(const char *line, size_t len, size_t *pos, char *out,
    size_t *o, char *err, size_t errlen)
{
	size_t p = *pos;
	char c;

	if (p >= len || synclog_isblank(line[p])) {
		snprintf(err, errlen, "missing argument");
		return -1;
	}
	if (line[p] == '"') {
		for (p++;; p++) {
			if (p >= len) {
				snprintf(err, errlen, "unterminated quoted "
				    "string");
				return -1;
			}
			c = line[p];
			if (c == '"')
				break;
			if (c == '\\') {
				if (++p >= len) {
					snprintf(err, errlen, "backslash at "
					    "end of line");
					return -1;
				}
				c = line[p];
			}
			if (c == '\r') {
				snprintf(err, errlen, "CR inside argument");
				return -1;
			}
			out[(*o)++] = c;
		}
		p++;
		if (p < len && !synclog_isblank(line[p])) {
			snprintf(err, errlen, "garbage after quoted string");
			return -1;
		}
	} else {
		if (line[p] == '{') {
			snprintf(err, errlen, "literal not allowed");
			return -1;
		}
		for (; p < len && !synclog_isblank(line[p]); p++) {
			c = line[p];
			if (strchr("()\\\"{}\r", c) != NULL) {
				snprintf(err, errlen, "unquoted '%s' in "
				    "argument", c == '\r' ? "\\r" :
				    (char[2]){ c, '\0' });
				return -1;
			}
			out[(*o)++] = c;
		}
	}
	out[(*o)++] = '\0';
	*pos = p;
	return 0;
}

/*
 * Parse one log line; see synclog_read.h.
 */
int
synclog_parse(const char *line, size_t len, struct synclog_rec *rec,
    char *err, size_t errlen)
{
	char type[16];
	size_t p, o, tl;
	int k, n, nargs;
	const char *args[2];

	if (len > SYNCLOG_READ_MAX) {
		snprintf(err, errlen, "line longer than %d bytes",
		    SYNCLOG_READ_MAX);
		return -1;
	}
	if (memchr(line, '\0', len) != NULL) {
		snprintf(err, errlen, "NUL byte in line");
		return -1;
	}
	if (len > 0 && line[len - 1] == '\r')
		len--;
	for (p = 0; p < len && synclog_isblank(line[p]); p++)
		;
	if (p == len)
		return 0;
	if (line[0] == '%')
		return 0;
	if (p != 0) {
		snprintf(err, errlen, "blank space before type");
		return -1;
	}

	for (tl = 0; tl < len && !synclog_isblank(line[tl]); tl++)
		;
	k = SYNCLOG_NKINDS;
	if (tl < sizeof(type)) {
		for (p = 0; p < tl; p++) {
			type[p] = line[p];
			if (type[p] >= 'a' && type[p] <= 'z')
				type[p] -= 'a' - 'A';
		}
		type[tl] = '\0';
		for (k = 0; k < SYNCLOG_NKINDS; k++)
			if (strcmp(type, synclog_kinds[k].name) == 0)
				break;
	}
	if (k == SYNCLOG_NKINDS) {
		snprintf(err, errlen, "unknown type '%.*s'",
		    (int)(tl < 32 ? tl : 32), line);
		return -1;
	}
	nargs = synclog_kinds[k].nargs;

	p = tl;
	o = 0;
	for (n = 0; ; n++) {
		while (p < len && synclog_isblank(line[p]))
			p++;
		if (p == len)
			break;
		if (n == nargs) {
			snprintf(err, errlen, "%s takes %d argument%s",
			    synclog_kinds[k].name, nargs, nargs > 1 ? "s" : "");
			return -1;
		}
		args[n] = rec->buf + o;
		if (synclog_astring(line, len, &p, rec->buf, &o, err,
		    errlen) == -1)
			return -1;
	}
	if (n != nargs) {
		snprintf(err, errlen, "%s takes %d argument%s",
		    synclog_kinds[k].name, nargs, nargs > 1 ? "s" : "");
		return -1;
	}
	rec->kind = k;
	rec->arg1 = args[0];
	rec->arg2 = nargs == 2 ? args[1] : NULL;
	return 1;
}

/*
 * Format a record as a log line; see synclog_read.h.
 */
int
synclog_rec_format(const struct synclog_rec *rec, char *buf, size_t size)
{
	const char *name = synclog_kind_name(rec->kind);

	if (name == NULL)
		return -1;
	return synclog_format(buf, size, name, rec->arg1, rec->arg2);
}

/*
 * Owner of a mailbox; see synclog_read.h.  Only the grouping of
 * mailboxes into batches depends on it, never what is synced.
 */
void
synclog_mailbox_owner(const char *mbox, char *buf, size_t size)
{
	const char *bang, *name, *u, *end;
	size_t dl = 0, ul;

	if (size == 0)
		return;
	buf[0] = '\0';
	name = mbox;
	if ((bang = strchr(mbox, '!')) != NULL) {
		dl = bang - mbox;
		name = bang + 1;
	}
	if (strncmp(name, "DELETED.", 8) == 0)
		name += 8;
	if (strncmp(name, "user.", 5) != 0)
		return;
	u = name + 5;
	end = strchr(u, '.');
	ul = end != NULL ? (size_t)(end - u) : strlen(u);
	if (dl > 0)
		snprintf(buf, size, "%.*s@%.*s", (int)ul, u, (int)dl, mbox);
	else
		snprintf(buf, size, "%.*s", (int)ul, u);
}

/*
 * The coalescing set.  Every distinct record is one item; a hash table
 * over (kind, arg1, arg2) finds duplicates.  Mailbox owners are items of
 * the pseudo-kind SYNCLOG_GROUP so that the same table numbers the
 * per-user groups in order of first appearance.
 */
#define SYNCLOG_GROUP	SYNCLOG_NKINDS

struct synclog_item {
	int		 kind;
	size_t		 group;		/* mailbox kinds: group number */
	size_t		 seq;		/* first appearance */
	char		*arg1;
	char		*arg2;
};

struct synclog_set {
	struct synclog_item	*items;
	size_t			 nitems, itemsz;
	size_t			*table;		/* item index + 1, 0 = free */
	size_t			 tablesz;
	size_t			 ngroups;
	size_t			 added;
};

static uint64_t
synclog_hash(int kind, const char *a1, const char *a2)
{
	uint64_t h = 1469598103934665603ULL;
	const unsigned char *s;

	h = (h ^ (unsigned)kind) * 1099511628211ULL;
	for (s = (const unsigned char *)a1; *s != '\0'; s++)
		h = (h ^ *s) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	if (a2 != NULL)
		for (s = (const unsigned char *)a2; *s != '\0'; s++)
			h = (h ^ *s) * 1099511628211ULL;
	return h;
}

static int
synclog_item_eq(const struct synclog_item *it, int kind, const char *a1,
    const char *a2)
{
	if (it->kind != kind || strcmp(it->arg1, a1) != 0)
		return 0;
	if (it->arg2 == NULL || a2 == NULL)
		return it->arg2 == a2;
	return strcmp(it->arg2, a2) == 0;
}

/* Slot of (kind, a1, a2) in the table: the match, or the free slot. */
static size_t
synclog_slot(const struct synclog_set *set, int kind, const char *a1,
    const char *a2)
{
	size_t i, mask = set->tablesz - 1;

	i = synclog_hash(kind, a1, a2) & mask;
	while (set->table[i] != 0 &&
	    !synclog_item_eq(&set->items[set->table[i] - 1], kind, a1, a2))
		i = (i + 1) & mask;
	return i;
}

static const struct synclog_item *
synclog_find(const struct synclog_set *set, int kind, const char *a1,
    const char *a2)
{
	size_t i = synclog_slot(set, kind, a1, a2);

	return set->table[i] ? &set->items[set->table[i] - 1] : NULL;
}

static int
synclog_grow(struct synclog_set *set)
{
	size_t *nt, nsz, i, j, mask;
	const struct synclog_item *it;

	nsz = set->tablesz * 2;
	if ((nt = calloc(nsz, sizeof(*nt))) == NULL)
		return -1;
	mask = nsz - 1;
	for (i = 0; i < set->nitems; i++) {
		it = &set->items[i];
		j = synclog_hash(it->kind, it->arg1, it->arg2) & mask;
		while (nt[j] != 0)
			j = (j + 1) & mask;
		nt[j] = i + 1;
	}
	free(set->table);
	set->table = nt;
	set->tablesz = nsz;
	return 0;
}

/*
 * Insert (kind, a1, a2) unless present.  Returns the item index, or -1
 * when out of memory.
 */
static long
synclog_insert(struct synclog_set *set, int kind, const char *a1,
    const char *a2, size_t group)
{
	struct synclog_item *it, *ni;
	size_t i, nsz;

	i = synclog_slot(set, kind, a1, a2);
	if (set->table[i] != 0)
		return (long)(set->table[i] - 1);
	if ((set->nitems + 1) * 2 > set->tablesz) {
		if (synclog_grow(set) == -1)
			return -1;
		i = synclog_slot(set, kind, a1, a2);
	}
	if (set->nitems == set->itemsz) {
		nsz = set->itemsz ? set->itemsz * 2 : 64;
		ni = reallocarray(set->items, nsz, sizeof(*ni));
		if (ni == NULL)
			return -1;
		set->items = ni;
		set->itemsz = nsz;
	}
	it = &set->items[set->nitems];
	it->kind = kind;
	it->group = group;
	it->seq = set->nitems;
	it->arg1 = strdup(a1);
	it->arg2 = a2 != NULL ? strdup(a2) : NULL;
	if (it->arg1 == NULL || (a2 != NULL && it->arg2 == NULL)) {
		free(it->arg1);
		free(it->arg2);
		return -1;
	}
	set->table[i] = ++set->nitems;
	return (long)(set->nitems - 1);
}

/*
 * A new, empty set; NULL when out of memory.
 */
struct synclog_set *
synclog_set_new(void)
{
	struct synclog_set *set;

	if ((set = calloc(1, sizeof(*set))) == NULL)
		return NULL;
	set->tablesz = 128;
	if ((set->table = calloc(set->tablesz, sizeof(*set->table))) ==
	    NULL) {
		free(set);
		return NULL;
	}
	return set;
}

/*
 * Free a set and everything it holds.  NULL is ignored.
 */
void
synclog_set_free(struct synclog_set *set)
{
	size_t i;

	if (set == NULL)
		return;
	for (i = 0; i < set->nitems; i++) {
		free(set->items[i].arg1);
		free(set->items[i].arg2);
	}
	free(set->items);
	free(set->table);
	free(set);
}

/*
 * Add a record; see synclog_read.h.  APPEND is kept as MAILBOX, SIEVE as
 * META and UNSUB as SUB: Cyrus puts each pair in one set and acts on the
 * current state, not on the spelling.
 */
int
synclog_set_add(struct synclog_set *set, const struct synclog_rec *rec,
    char *err, size_t errlen)
{
	char owner[SYNCLOG_READ_MAX + 2];
	int kind = rec->kind;
	size_t group = 0;
	long g;

	switch (kind) {
	case SYNCLOG_APPEND:
		kind = SYNCLOG_MAILBOX;
		break;
	case SYNCLOG_SIEVE:
		kind = SYNCLOG_META;
		break;
	case SYNCLOG_UNSUB:
		kind = SYNCLOG_SUB;
		break;
	}
	if ((unsigned)kind >= SYNCLOG_NKINDS || rec->arg1 == NULL ||
	    (synclog_kinds[kind].nargs == 2) != (rec->arg2 != NULL)) {
		snprintf(err, errlen, "invalid record");
		return -1;
	}
	if (kind == SYNCLOG_MAILBOX || kind == SYNCLOG_DOUBLEMAILBOX ||
	    kind == SYNCLOG_RENAME) {
		synclog_mailbox_owner(rec->arg1, owner, sizeof(owner));
		if ((g = synclog_insert(set, SYNCLOG_GROUP, owner, NULL,
		    set->ngroups)) == -1)
			goto nomem;
		if ((size_t)g == set->nitems - 1 &&
		    set->items[g].group == set->ngroups)
			set->ngroups++;
		group = set->items[g].group;
	}
	if (synclog_insert(set, kind, rec->arg1, rec->arg2, group) == -1)
		goto nomem;
	set->added++;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/*
 * Records added; see synclog_read.h.
 */
size_t
synclog_set_added(const struct synclog_set *set)
{
	return set->added;
}

/* Execution order: mailbox groups (renames first), then the rest. */
static int
synclog_rank(int kind)
{
	switch (kind) {
	case SYNCLOG_RENAME:		return 0;
	case SYNCLOG_DOUBLEMAILBOX:	return 1;
	case SYNCLOG_MAILBOX:		return 2;
	case SYNCLOG_QUOTA:		return 3;
	case SYNCLOG_ANNOTATION:	return 4;
	case SYNCLOG_SEEN:		return 5;
	case SYNCLOG_SUB:		return 6;
	case SYNCLOG_UNMAILBOX:		return 7;
	case SYNCLOG_META:		return 8;
	case SYNCLOG_USER:		return 9;
	case SYNCLOG_UNUSER:		return 10;
	default:			return 11;
	}
}

static int
synclog_cmp(const void *a, const void *b)
{
	const struct synclog_item *x = *(struct synclog_item *const *)a;
	const struct synclog_item *y = *(struct synclog_item *const *)b;
	int rx = synclog_rank(x->kind), ry = synclog_rank(y->kind);
	int mx = rx <= 2, my = ry <= 2;

	/* All mailbox groups come first, each group whole. */
	if (mx != my)
		return mx ? -1 : 1;
	if (mx && x->group != y->group)
		return x->group < y->group ? -1 : 1;
	if (rx != ry)
		return rx < ry ? -1 : 1;
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return 0;
}

/* 1 if a later, broader record makes it redundant (Cyrus 3.6 rules). */
static int
synclog_redundant(const struct synclog_set *set,
    const struct synclog_item *it)
{
	const char *u = it->arg1;

	switch (it->kind) {
	case SYNCLOG_SEEN:
	case SYNCLOG_SUB:
		return synclog_find(set, SYNCLOG_USER, u, NULL) != NULL ||
		    synclog_find(set, SYNCLOG_UNUSER, u, NULL) != NULL ||
		    synclog_find(set, SYNCLOG_META, u, NULL) != NULL;
	case SYNCLOG_META:
		return synclog_find(set, SYNCLOG_USER, u, NULL) != NULL ||
		    synclog_find(set, SYNCLOG_UNUSER, u, NULL) != NULL;
	case SYNCLOG_USER:
		return synclog_find(set, SYNCLOG_UNUSER, u, NULL) != NULL;
	default:
		return 0;
	}
}

/*
 * Emit the coalesced records; see synclog_read.h.
 */
int
synclog_set_emit(const struct synclog_set *set,
    int (*fn)(const char *line, size_t len, void *), void *arg)
{
	struct synclog_item **order;
	char line[2 * SYNCLOG_READ_MAX + 64];
	size_t i, n = 0;
	int len, r = 0;

	if (set->nitems == 0)
		return 0;
	if ((order = reallocarray(NULL, set->nitems, sizeof(*order))) ==
	    NULL)
		return -1;
	for (i = 0; i < set->nitems; i++) {
		if (set->items[i].kind == SYNCLOG_GROUP ||
		    synclog_redundant(set, &set->items[i]))
			continue;
		order[n++] = &set->items[i];
	}
	qsort(order, n, sizeof(*order), synclog_cmp);
	for (i = 0; i < n && r == 0; i++) {
		len = synclog_format(line, sizeof(line),
		    synclog_kinds[order[i]->kind].name, order[i]->arg1,
		    order[i]->arg2);
		if (len < 0) {
			r = -1;
			break;
		}
		r = fn(line, (size_t)len, arg);
	}
	free(order);
	return r;
}

/*
 * The bounded line reader.
 */
#define SYNCLOG_RBUF	(4 * SYNCLOG_READ_MAX)

struct synclog_reader {
	int		 fd;
	int		 eof;
	int		 inlong;	/* inside an overlong line */
	unsigned long	 lineno;
	size_t		 start, end;
	char		 buf[SYNCLOG_RBUF];
};

/*
 * A reader over fd; see synclog_read.h.
 */
struct synclog_reader *
synclog_reader_new(int fd)
{
	struct synclog_reader *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->fd = fd;
	return r;
}

/*
 * Free a reader; NULL is ignored.
 */
void
synclog_reader_free(struct synclog_reader *r)
{
	free(r);
}

static int
synclog_fill(struct synclog_reader *r, char *err, size_t errlen)
{
	ssize_t n;

	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	for (;;) {
		n = read(r->fd, r->buf + r->end, sizeof(r->buf) - r->end);
		if (n == -1 && errno == EINTR)
			continue;
		break;
	}
	if (n == -1) {
		snprintf(err, errlen, "read: %s", strerror(errno));
		return -1;
	}
	if (n == 0)
		r->eof = 1;
	r->end += (size_t)n;
	return 0;
}

/*
 * Next line or piece; see synclog_read.h.
 */
int
synclog_reader_next(struct synclog_reader *r, const char **line,
    size_t *len, int *flags, unsigned long *lineno, char *err,
    size_t errlen)
{
	char *lf;
	size_t avail;

	for (;;) {
		avail = r->end - r->start;
		lf = memchr(r->buf + r->start, '\n', avail);
		if (lf != NULL || r->eof || avail > SYNCLOG_READ_MAX)
			break;
		if (synclog_fill(r, err, errlen) == -1)
			return -1;
	}
	if (lf == NULL && avail == 0) {
		if (!r->inlong)
			return 0;
		/* EOF right after a piece of an overlong line. */
		r->inlong = 0;
		*lineno = r->lineno;
		*line = r->buf + r->start;
		*len = 0;
		*flags = SYNCLOG_LINE_LONG | SYNCLOG_LINE_NOLF;
		return 1;
	}
	if (!r->inlong)
		r->lineno++;
	*lineno = r->lineno;
	*line = r->buf + r->start;
	*flags = r->inlong ? SYNCLOG_LINE_LONG : 0;
	if (lf != NULL) {
		*len = (size_t)(lf - *line);
		r->start += *len + 1;
		if (*len > SYNCLOG_READ_MAX)
			*flags |= SYNCLOG_LINE_LONG;
		r->inlong = 0;
	} else if (r->eof) {
		*len = avail;
		r->start = r->end;
		*flags |= SYNCLOG_LINE_NOLF;
		if (avail > SYNCLOG_READ_MAX)
			*flags |= SYNCLOG_LINE_LONG;
		r->inlong = 0;
	} else {
		/* Longer than the limit and no LF yet. */
		*len = avail;
		r->start = r->end;
		*flags |= SYNCLOG_LINE_LONG | SYNCLOG_LINE_MORE;
		r->inlong = 1;
	}
	return 1;
}

int
synclog_action_next(struct synclog_reader *r, struct synclog_action *a,
    char *err, size_t errlen)
{
	const char *line;
	size_t len;
	int flags, rc;

	for (;;) {
		rc = synclog_reader_next(r, &line, &len, &flags, &a->lineno,
		    err, errlen);
		if (rc != 1)
			return rc;
		if (flags & SYNCLOG_LINE_LONG) {
			if (flags & SYNCLOG_LINE_MORE)
				continue;	/* reported at its last piece */
			a->kind = SYNCLOG_ACTION_LONG;
			snprintf(a->why, sizeof(a->why), "line too long");
			return 1;
		}
		if (len > 0 && line[0] == '%') {
			if (line[len - 1] == '\r')
				len--;
			if (memchr(line, '\0', len) != NULL ||
			    memchr(line, '\r', len) != NULL) {
				a->kind = SYNCLOG_ACTION_BAD;
				snprintf(a->why, sizeof(a->why),
				    "NUL or CR in a control line");
				return 1;
			}
			memcpy(a->ctl, line, len);
			a->ctl[len] = '\0';
			if (strncmp(a->ctl, "%syncpipe-actions ", 18) == 0) {
				if (strcmp(a->ctl + 18, "1") != 0) {
					snprintf(err, errlen, "action stream "
					    "version %.32s not supported",
					    a->ctl + 18);
					return -1;
				}
				continue;
			}
			a->kind = SYNCLOG_ACTION_CONTROL;
			return 1;
		}
		rc = synclog_parse(line, len, &a->rec, a->why, sizeof(a->why));
		if (rc == -1) {
			a->kind = SYNCLOG_ACTION_BAD;
			return 1;
		}
		if (rc == 1) {
			a->kind = SYNCLOG_ACTION_RECORD;
			return 1;
		}
	}
}
