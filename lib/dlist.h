/*
 * dlist: the csync wire values (NIL, strings, flags, lists, kvlists and
 * file literals), parsed from and printed to a prot stream.
 *
 * The wire only has six syntactic forms; a value's type (number, date,
 * GUID, ...) comes from its key, so the accessors below convert on access
 * and fail when the text does not fit the type.
 *
 * Reading is streaming: the bytes of a file literal are handed to a sink
 * (normally a file in a staging directory) as they arrive, never held
 * whole in memory.
 */
#ifndef SYNCPIPE_DLIST_H
#define SYNCPIPE_DLIST_H

#include <stddef.h>
#include <stdint.h>

struct prot;

/* Limits on what the parser accepts.  Exceeding one is a parse error. */
#define DLIST_MAX_DEPTH		64		/* nesting of lists/kvlists */
#define DLIST_MAX_ITEMS		16000000	/* items in one value, all levels */
#define DLIST_MAX_ATOM		131072		/* atom or quoted string (Cyrus maxquoted/maxword) */
#define DLIST_MAX_LITERAL	(64u << 20)	/* ordinary {N} literal */
#define DLIST_MAX_FILE		0xffffffffu	/* file literal size (32-bit on the wire) */
#define DLIST_MAX_TOTAL		(256u << 20)	/* bytes of strings held in memory for one value */

enum dlist_kind {
	DL_NIL,
	DL_STRING,	/* atom, quoted string or literal: s/len (may hold NUL if from a literal) */
	DL_FLAG,	/* \Seen etc.: s/len, written raw */
	DL_LIST,	/* ( ... ) */
	DL_KVLIST,	/* %( key value ... ) */
	DL_FILE		/* %{part guid size} + bytes */
};

/* What only a DL_FILE node carries; allocated for those alone. */
struct dlist_file {
	char		*part;		/* partition name */
	char		 guid[41];	/* 40 lower-case hex digits */
	uint64_t	 size;
	char		*path;		/* where the bytes are (reader: the sink's path;
					   writer: the file to send), or NULL */
	int		 file_ok;	/* reader: the sink accepted and stored the bytes */
};

/*
 * One node, allocated together with its strings: s holds the value and,
 * after its terminator, the key.  It is kept small (a value of a
 * 500,000-record mailbox has millions of them): 41 bytes before s on a
 * 64-bit host, the file literal fields behind ->file, which shares its
 * place with ->tail (a file literal has no children).  A node's strings
 * cannot be replaced in place: dlist_setkey gives a node a new key.
 */
struct dlist {
	struct dlist	*next;		/* sibling */
	struct dlist	*head;		/* DL_LIST/DL_KVLIST children; else NULL */
	union {
		struct dlist	  *tail;	/* DL_LIST/DL_KVLIST: last child */
		struct dlist_file *file;	/* DL_FILE: never NULL */
	};
	char		*key;		/* NULL for list items; else inside the node */
	uint32_t	 len;		/* length of s without the terminator */
	uint32_t	 nchild;
	uint8_t		 kind;		/* enum dlist_kind */
	char		 s[];		/* DL_STRING/DL_FLAG: value, always NUL
					   terminated; other kinds: "" */
};

/*
 * Where a file literal's bytes go while parsing.  open() is called after the
 * header %{part guid size} is parsed (guid already checked to be 40 hex
 * digits and lower-cased); it returns a handle, or NULL to have the bytes
 * read and discarded (the stream stays in sync either way).  write() gets
 * the bytes in pieces as they arrive; returning -1 makes the rest be
 * discarded.  close() is called once after the last byte with ok = 1 when
 * every byte was written; it returns 0 when the file is stored (then the
 * node's file->file_ok is 1 and *pathp, if set, becomes its path) or -1.  A NULL
 * sink discards all bytes.
 */
struct dlist_sink {
	void	*(*open)(void *arg, const char *part, const char *guid,
		    uint64_t size);
	int	 (*write)(void *arg, void *h, const void *buf, size_t n);
	int	 (*close)(void *arg, void *h, int ok, char **pathp);
	void	 *arg;
};

/*
 * Parse one value from in.  With parsekey, a key (a string) and one SP
 * come first (how GET/APPLY arguments and "* NAME value" lines look).
 * Does not consume the end of line.  On success returns 0 and *out (free
 * with dlist_free).  On error returns -1, *out is NULL and err holds a
 * one-line reason; the caller should then dlist_eatline().
 */
int		 dlist_parse(struct prot *in, int parsekey,
		    const struct dlist_sink *, struct dlist **out,
		    char *err, size_t errlen);
/* The same with another bound on the items than DLIST_MAX_ITEMS (tests
 * use a small one to reach it cheaply). */
int		 dlist_parse_limit(struct prot *in, int parsekey,
		    const struct dlist_sink *, size_t maxitems,
		    struct dlist **out, char *err, size_t errlen);
/* Consume the line end: CRLF or LF.  Anything else (trailing space, junk)
 * is an error (-1). */
int		 dlist_parse_eol(struct prot *in);
/* Parse a whole "value CRLF" (or "key value CRLF") from a memory buffer:
 * a convenience for tests, plan files and fuzzing.  Trailing input after
 * the line is an error. */
int		 dlist_parse_buf(const char *buf, size_t len, int parsekey,
		    struct dlist **out, char *err, size_t errlen);
/* Skip the rest of the current line, draining any {N} literals and
 * %{...} file literals it contains, so the stream stays in sync after a
 * refused command.  Returns 0, -1 at EOF/error, or DLIST_EAT_TOOBIG when
 * the line announces a literal over DLIST_MAX_FILE bytes (no peer can
 * mean it; draining it would take the connection for good): the stream
 * is read up to that header's line end, and the caller should say so and
 * close. */
#define DLIST_EAT_TOOBIG	(-2)
int		 dlist_eatline(struct prot *in);

/*
 * Print a value.  printkey writes "key SP" first.  litplus chooses {N+}
 * (what Cyrus's client writes) or {N} (what its server writes) for
 * literals.  Strings follow Cyrus's choice of atom / quoted / literal, so
 * the bytes match Cyrus's for the same value.  A DL_FILE is written as its
 * header and the bytes of ->path (size checked; NIL if the file is
 * missing or its size differs).  Returns 0 or -1 (write error).
 */
int		 dlist_print(const struct dlist *, int printkey,
		    struct prot *out, int litplus);
/* Print into a malloc'd NUL-terminated string (files as headers only). */
char		*dlist_tostring(const struct dlist *, int printkey, int litplus,
		    size_t *lenp);
/* Write one string by the atom/quoted/literal rule. */
int		 dlist_print_astring(struct prot *out, const char *s, size_t len,
		    int litplus);

void		 dlist_free(struct dlist *);

/* Building.  Each new* function appends a child to parent (if parent is
 * not NULL and not a file literal, which has no children) and returns it;
 * key may be NULL for list items.  They never fail except on memory
 * exhaustion, which aborts (xmalloc); a string of 4 GB or more, which
 * no peer would accept (DLIST_MAX_LITERAL), counts as that too. */
struct dlist	*dlist_newlist(struct dlist *parent, const char *key);
struct dlist	*dlist_newkvlist(struct dlist *parent, const char *key);
struct dlist	*dlist_setnil(struct dlist *parent, const char *key);
struct dlist	*dlist_setatom(struct dlist *parent, const char *key, const char *s);
struct dlist	*dlist_setmap(struct dlist *parent, const char *key,
		    const char *s, size_t len);
struct dlist	*dlist_setflag(struct dlist *parent, const char *key, const char *flag);
struct dlist	*dlist_setnum32(struct dlist *parent, const char *key, uint32_t);
struct dlist	*dlist_setnum64(struct dlist *parent, const char *key, uint64_t);
struct dlist	*dlist_setdate(struct dlist *parent, const char *key, int64_t);
struct dlist	*dlist_sethex64(struct dlist *parent, const char *key, uint64_t);
struct dlist	*dlist_setguid(struct dlist *parent, const char *key, const char *guid);
struct dlist	*dlist_setfile(struct dlist *parent, const char *key,
		    const char *part, const char *guid, uint64_t size, const char *path);
/* Move child (already unlinked, e.g. freshly built) under parent (not a
 * file literal). */
void		 dlist_stitch(struct dlist *parent, struct dlist *child);
/* Give d, which must not be linked in a parent, the key key (a copy; NULL
 * for none).  The node may move: use the returned pointer, not d. */
struct dlist	*dlist_setkey(struct dlist *d, const char *key);

/* Access.  dlist_child finds a direct child by key (exact, case-sensitive).
 * The get* functions return 0 on success, -1 when the key is absent or the
 * value does not convert (see protocol doc 2.7).  A NIL value reads as ""
 * for getatom/getmap. */
struct dlist	*dlist_child(const struct dlist *, const char *key);
int		 dlist_getatom(const struct dlist *, const char *key, const char **);
int		 dlist_getmap(const struct dlist *, const char *key,
		    const char **, size_t *);
int		 dlist_getnum32(const struct dlist *, const char *key, uint32_t *);
int		 dlist_getnum64(const struct dlist *, const char *key, uint64_t *);
int		 dlist_getdate(const struct dlist *, const char *key, int64_t *);
int		 dlist_gethex64(const struct dlist *, const char *key, uint64_t *);
int		 dlist_getguid(const struct dlist *, const char *key, char guid[41]);
int		 dlist_getlist(const struct dlist *, const char *key, struct dlist **);
/* The same conversions on a value node itself. */
int		 dlist_tonum64(const struct dlist *, uint64_t *);
int		 dlist_tonum32(const struct dlist *, uint32_t *);
int		 dlist_toguid(const struct dlist *, char guid[41]);
const char	*dlist_cstring(const struct dlist *); /* "" for NIL/lists */

/* True when s is 40 hex digits; guid_normalise lower-cases into out. */
int		 guid_valid(const char *s, size_t len);
void		 guid_normalise(const char *in, char out[41]);

#endif
