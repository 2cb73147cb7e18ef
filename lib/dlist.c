/*
 * dlist: the csync value codec.  See dlist.h for the contract and the
 * protocol document (section 2) for the wire rules followed here.
 *
 * The reader is liberal (any blanks between items, {N} or {N+},
 * quoted strings with escapes) but bounded: nesting, item count, string
 * sizes and literal lengths are all checked before anything is allocated
 * or recursed into.  A value never runs past its line: a line end inside
 * a list, outside a literal, ends it with an error, so every command line
 * gets one reply.  The writer is exact: the same value always comes
 * out as the bytes Cyrus would write.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dlist.h"
#include "prot.h"

#define DLIST_CHUNK	16384	/* file literal bytes moved per step */
#define DLIST_WMAX	1024	/* atoms and quoted strings are shorter */
#define DLIST_KEEP	65536	/* a parse buffer up to this size is reused */
#define DLIST_HDR_SCAN	1024	/* bytes of a file header skipped when eating one */
#define DLIST_HDR	offsetof(struct dlist, s)

/* What a node records must fit its fields. */
_Static_assert(DLIST_MAX_ATOM <= UINT32_MAX &&
    DLIST_MAX_LITERAL <= UINT32_MAX && DLIST_MAX_TOTAL <= UINT32_MAX,
    "a parsed string's length fits struct dlist's len");
_Static_assert(DLIST_MAX_ITEMS <= UINT32_MAX,
    "a parsed list's item count fits struct dlist's nchild");
_Static_assert(DL_FILE <= UINT8_MAX, "a kind fits struct dlist's kind");

struct dlist_sbuf {
	char	*s;
	size_t	 len, cap;
};

struct dlist_pctx {
	struct prot			*in;
	const struct dlist_sink		*sink;
	size_t				 items;
	size_t				 maxitems;
	size_t				 total;
	char				*err;
	size_t				 errlen;
	int				 failed;
	struct dlist_sbuf		 kb;	/* key of the value being read */
	struct dlist_sbuf		 vb;	/* string value being read */
};

/* Memory exhaustion is not recoverable for the callers of this module. */
static void *
dlist_xmalloc(size_t n)
{
	void *p;

	if ((p = calloc(1, n == 0 ? 1 : n)) == NULL)
		abort();
	return p;
}

static char *
dlist_xstrdup(const char *s)
{
	char *d;

	if ((d = strdup(s)) == NULL)
		abort();
	return d;
}

static char *
dlist_xmemdup(const char *s, size_t len)
{
	char *d;

	d = dlist_xmalloc(len + 1);
	if (len > 0)
		memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

static void
dlist_fail(struct dlist_pctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Record the first error only: later ones are consequences. */
static void
dlist_fail(struct dlist_pctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return;
	c->failed = 1;
	if (c->err == NULL || c->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
}

/* Up to 64 bytes of a key for a message, non-printables as '?'. */
static const char *
dlist_showkey(const char *key, char *buf, size_t size)
{
	size_t i;

	for (i = 0; key != NULL && key[i] != '\0' && i < 64 && i + 1 < size;
	    i++)
		buf[i] = key[i] >= 0x20 && key[i] < 0x7f ? key[i] : '?';
	buf[i] = '\0';
	return buf;
}

/* A read that returned -1: tell EOF from a stream error. */
static void
dlist_fail_eof(struct dlist_pctx *c, const char *what)
{
	if (prot_eof(c->in))
		dlist_fail(c, "unexpected end of input in %s", what);
	else
		dlist_fail(c, "read error in %s: %s", what,
		    prot_error(c->in));
}

static int
dlist_isspace(int ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' ||
	    ch == '\v' || ch == '\f';
}

static int
dlist_sbuf_add(struct dlist_pctx *c, struct dlist_sbuf *b, const void *p,
    size_t n)
{
	char *ns;
	size_t cap;

	if (b->len + n + 1 > b->cap) {
		/* The first piece is usually the whole string (atoms and
		 * quoted strings are read in pieces of 256): fit it. */
		cap = b->cap ? b->cap : (n + 1 > 16 ? n + 1 : 16);
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((ns = realloc(b->s, cap)) == NULL)
			abort();
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

/* Account for n more bytes held in memory for this value. */
static int
dlist_charge(struct dlist_pctx *c, size_t n)
{
	if (n > DLIST_MAX_TOTAL - c->total) {
		dlist_fail(c, "value larger than %u bytes", DLIST_MAX_TOTAL);
		return -1;
	}
	c->total += n;
	return 0;
}

/*
 * The rest of an atom whose first byte (already read) is first.  Atoms
 * end before whitespace, parentheses, a double quote or EOF.
 */
static int
dlist_rd_atom(struct dlist_pctx *c, int first, struct dlist_sbuf *b)
{
	char tmp[256];
	size_t n = 0;
	int ch = first;

	for (;;) {
		if (ch == '\0') {
			dlist_fail(c, "NUL byte in atom");
			return -1;
		}
		tmp[n++] = (char)ch;
		if (n == sizeof(tmp)) {
			if (b->len + n > DLIST_MAX_ATOM)
				goto toolong;
			dlist_sbuf_add(c, b, tmp, n);
			n = 0;
		}
		ch = prot_getc(c->in);
		if (ch < 0) {
			if (!prot_eof(c->in)) {
				dlist_fail_eof(c, "atom");
				return -1;
			}
			break;
		}
		if (dlist_isspace(ch) || ch == '(' || ch == ')' || ch == '"') {
			prot_ungetc(c->in, ch);
			break;
		}
	}
	if (b->len + n > DLIST_MAX_ATOM)
		goto toolong;
	dlist_sbuf_add(c, b, tmp, n);
	return dlist_charge(c, b->len);
toolong:
	dlist_fail(c, "atom longer than %d bytes", DLIST_MAX_ATOM);
	return -1;
}

/* A quoted string, the opening quote already read. */
static int
dlist_rd_quoted(struct dlist_pctx *c, struct dlist_sbuf *b)
{
	char tmp[256];
	size_t n = 0;
	int ch;

	for (;;) {
		ch = prot_getc(c->in);
		if (ch == '"')
			break;
		if (ch == '\\')
			ch = prot_getc(c->in);
		else if (ch == '\r' || ch == '\n') {
			dlist_fail(c, "unterminated quoted string");
			return -1;
		}
		if (ch < 0) {
			if (prot_eof(c->in))
				dlist_fail(c, "unterminated quoted string");
			else
				dlist_fail_eof(c, "quoted string");
			return -1;
		}
		if (ch == '\0') {
			dlist_fail(c, "NUL byte in quoted string");
			return -1;
		}
		if (b->len + n >= DLIST_MAX_ATOM) {
			dlist_fail(c, "quoted string longer than %d bytes",
			    DLIST_MAX_ATOM);
			return -1;
		}
		tmp[n++] = (char)ch;
		if (n == sizeof(tmp)) {
			dlist_sbuf_add(c, b, tmp, n);
			n = 0;
		}
	}
	dlist_sbuf_add(c, b, tmp, n);
	return dlist_charge(c, b->len);
}

/*
 * An unsigned decimal number whose first digit is ch; stops at the first
 * non-digit, which is pushed back.  Values over max are an error, with
 * the digits in the message.
 */
static int
dlist_rd_number(struct dlist_pctx *c, int ch, uint64_t max,
    const char *what, uint64_t *out)
{
	char digits[24];
	size_t nd = 0;
	uint64_t v = 0;
	int big = 0;

	if (ch < '0' || ch > '9') {
		if (ch < 0 && !prot_eof(c->in))
			dlist_fail_eof(c, what);
		else
			dlist_fail(c, "bad %s", what);
		return -1;
	}
	while (ch >= '0' && ch <= '9') {
		if (nd < sizeof(digits) - 1)
			digits[nd++] = (char)ch;
		if (!big && v > (max - (uint64_t)(ch - '0')) / 10)
			big = 1;
		if (!big)
			v = v * 10 + (uint64_t)(ch - '0');
		ch = prot_getc(c->in);
	}
	if (ch >= 0)
		prot_ungetc(c->in, ch);
	digits[nd] = '\0';
	if (big) {
		dlist_fail(c, "%s %s%s exceeds limit", what, digits,
		    nd == sizeof(digits) - 1 ? "..." : "");
		return -1;
	}
	*out = v;
	return 0;
}

/* After "{N}" or "%{...}": optional CR, then LF. */
static int
dlist_rd_crlf(struct dlist_pctx *c, const char *what)
{
	int ch;

	ch = prot_getc(c->in);
	if (ch == '\r')
		ch = prot_getc(c->in);
	if (ch != '\n') {
		if (ch < 0 && !prot_eof(c->in))
			dlist_fail_eof(c, what);
		else
			dlist_fail(c, "%s without CRLF", what);
		if (ch >= 0)
			prot_ungetc(c->in, ch);
		return -1;
	}
	return 0;
}

/*
 * A literal, the '{' already read.  The bytes are read in pieces so a
 * large announced length costs memory only as the data arrives.
 */
static int
dlist_rd_literal(struct dlist_pctx *c, struct dlist_sbuf *b, int allownul)
{
	char tmp[DLIST_CHUNK];
	uint64_t n;
	size_t k;
	ssize_t r;
	int ch;

	ch = prot_getc(c->in);
	if (ch == '-') {
		dlist_fail(c, "negative literal length");
		return -1;
	}
	if (dlist_rd_number(c, ch, UINT64_MAX / 2, "literal length", &n) < 0)
		return -1;
	if (n > DLIST_MAX_LITERAL) {
		dlist_fail(c, "literal length %" PRIu64 " exceeds limit", n);
		return -1;
	}
	ch = prot_getc(c->in);
	if (ch == '+')
		ch = prot_getc(c->in);
	if (ch != '}') {
		if (ch < 0 && !prot_eof(c->in))
			dlist_fail_eof(c, "literal");
		else
			dlist_fail(c, "bad literal header");
		return -1;
	}
	if (dlist_rd_crlf(c, "literal") < 0)
		return -1;
	if (dlist_charge(c, (size_t)n) < 0)
		return -1;
	dlist_sbuf_add(c, b, "", 0);
	while (n > 0) {
		k = n > sizeof(tmp) ? sizeof(tmp) : (size_t)n;
		r = prot_read(c->in, tmp, k);
		if (r <= 0) {
			if (r == 0 || prot_eof(c->in))
				dlist_fail(c, "truncated literal");
			else
				dlist_fail_eof(c, "literal");
			return -1;
		}
		if (!allownul && memchr(tmp, '\0', (size_t)r) != NULL) {
			dlist_fail(c, "NUL byte in literal key");
			return -1;
		}
		dlist_sbuf_add(c, b, tmp, (size_t)r);
		n -= (uint64_t)r;
	}
	return 0;
}

/*
 * A string in any of its three forms (keys and file literal headers).
 * NIL is not special here: a key "NIL" is the string NIL.
 */
static int
dlist_rd_string(struct dlist_pctx *c, struct dlist_sbuf *b, const char *what)
{
	int ch;

	ch = prot_getc(c->in);
	if (ch == '"')
		return dlist_rd_quoted(c, b);
	if (ch == '{')
		return dlist_rd_literal(c, b, 0);
	if (ch < 0 || dlist_isspace(ch) || ch == '(' || ch == ')') {
		if (ch < 0 && !prot_eof(c->in))
			dlist_fail_eof(c, what);
		else if (ch < 0)
			dlist_fail(c, "unexpected end of input in %s", what);
		else
			dlist_fail(c, "missing %s", what);
		if (ch >= 0)
			prot_ungetc(c->in, ch);
		return -1;
	}
	return dlist_rd_atom(c, ch, b);
}

/*
 * Skip blanks between items; returns the next byte or -1.  A line end is
 * not a blank: outside a literal it ends the command line, so it is an
 * error here, pushed back for dlist_eatline() to end the line with.
 */
static int
dlist_skipws(struct dlist_pctx *c, const char *what)
{
	int ch;

	do
		ch = prot_getc(c->in);
	while (ch >= 0 && ch != '\r' && ch != '\n' && dlist_isspace(ch));
	if (ch == '\r' || ch == '\n') {
		dlist_fail(c, "line end inside %s", what);
		prot_ungetc(c->in, ch);
		return -2;
	}
	return ch;
}

/*
 * The size of a node holding a value of len bytes and, with haskey, a
 * key of klen bytes; never less than the struct itself.
 */
static size_t
dlist_nodesize(size_t len, int haskey, size_t klen)
{
	size_t n;

	/* Nothing the parser keeps is this long: see the assertions. */
	if (len > UINT32_MAX || klen > UINT32_MAX)
		abort();
	n = DLIST_HDR + len + 1 + (haskey ? klen + 1 : 0);
	return n < sizeof(struct dlist) ? sizeof(struct dlist) : n;
}

/*
 * Fill in the header of node d, whose len bytes of value are already in
 * place at d->s; copy the key (klen bytes, NULL for none) after the
 * value.  The key must not lie inside d.
 */
static struct dlist *
dlist_init(struct dlist *d, enum dlist_kind kind, size_t len,
    const char *key, size_t klen)
{
	d->next = NULL;
	d->head = NULL;
	d->tail = NULL;
	d->key = NULL;
	d->len = (uint32_t)len;
	d->nchild = 0;
	d->kind = (uint8_t)kind;
	d->s[len] = '\0';
	if (key != NULL) {
		d->key = d->s + len + 1;
		if (klen > 0)
			memcpy(d->key, key, klen);
		d->key[klen] = '\0';
	}
	if (kind == DL_FILE)
		d->file = dlist_xmalloc(sizeof(*d->file));
	return d;
}

/* A new node, its value s (len bytes) and key copied into it. */
static struct dlist *
dlist_alloc(enum dlist_kind kind, const char *key, size_t klen,
    const char *s, size_t len)
{
	struct dlist *d;

	if ((d = malloc(dlist_nodesize(len, key != NULL, klen))) == NULL)
		abort();
	if (len > 0)
		memcpy(d->s, s, len);
	return dlist_init(d, kind, len, key, klen);
}

/*
 * The node of a value just read, counted against the item bound: its
 * key is in c->kb when haskey, its string (DL_STRING and DL_FLAG) in
 * c->vb.  Both buffers are emptied for the next value.  A big string
 * buffer becomes the node itself, so its bytes are never held twice.
 */
static struct dlist *
dlist_node(struct dlist_pctx *c, enum dlist_kind kind, int haskey)
{
	struct dlist_sbuf *v = &c->vb;
	const char *key = NULL;
	struct dlist *d;
	size_t klen = 0, len;
	char *p;

	if (c->items >= c->maxitems) {
		dlist_fail(c, "more than %zu items", c->maxitems);
		return NULL;
	}
	c->items++;
	if (haskey) {
		key = c->kb.s != NULL ? c->kb.s : "";
		klen = c->kb.len;
	}
	if (kind != DL_STRING && kind != DL_FLAG)
		d = dlist_alloc(kind, key, klen, NULL, 0);
	else if (v->cap <= DLIST_KEEP)
		d = dlist_alloc(kind, key, klen, v->s, v->len);
	else {
		len = v->len;
		if ((p = realloc(v->s, dlist_nodesize(len, haskey, klen))) ==
		    NULL)
			abort();
		memmove(p + DLIST_HDR, p, len);
		memset(v, 0, sizeof(*v));
		d = dlist_init((struct dlist *)(void *)p, kind, len, key,
		    klen);
	}
	v->len = 0;
	if (haskey) {
		c->kb.len = 0;
		if (c->kb.cap > DLIST_KEEP) {
			free(c->kb.s);
			memset(&c->kb, 0, sizeof(c->kb));
		}
	}
	return d;
}

static void
dlist_append(struct dlist *parent, struct dlist *child)
{
	/* A file literal has no children: its file is where tail is. */
	if (parent->kind == DL_FILE)
		return;
	if (parent->tail != NULL)
		parent->tail->next = child;
	else
		parent->head = child;
	parent->tail = child;
	parent->nchild++;
}

/* The bytes of a file literal, to the sink or nowhere. */
static int
dlist_rd_filebytes(struct dlist_pctx *c, struct dlist *d)
{
	const struct dlist_sink *s = c->sink;
	char buf[DLIST_CHUNK];
	struct dlist_file *f = d->file;
	uint64_t n = f->size;
	void *h = NULL;
	int wok = 1;
	ssize_t r;
	size_t k;

	if (s != NULL && s->open != NULL)
		h = s->open(s->arg, f->part, f->guid, f->size);
	while (n > 0) {
		k = n > sizeof(buf) ? sizeof(buf) : (size_t)n;
		r = prot_read(c->in, buf, k);
		if (r <= 0) {
			if (r == 0 || prot_eof(c->in))
				dlist_fail(c, "truncated file literal");
			else
				dlist_fail_eof(c, "file literal");
			if (h != NULL && s->close != NULL)
				(void)s->close(s->arg, h, 0, NULL);
			return -1;
		}
		if (h != NULL && wok && s->write != NULL &&
		    s->write(s->arg, h, buf, (size_t)r) < 0)
			wok = 0;
		n -= (uint64_t)r;
	}
	if (h != NULL) {
		if (s->close == NULL)
			f->file_ok = wok;
		else if (s->close(s->arg, h, wok, &f->path) == 0 && wok)
			f->file_ok = 1;
	}
	return 0;
}

/* "%{part guid size}" CRLF and the bytes; "%{" already read. */
static int
dlist_rd_file(struct dlist_pctx *c, struct dlist *d)
{
	struct dlist_sbuf b = { NULL, 0, 0 };
	uint64_t size;
	int ch;

	if (dlist_rd_string(c, &b, "partition in file literal") < 0)
		goto fail;
	d->file->part = b.s;
	memset(&b, 0, sizeof(b));
	ch = prot_getc(c->in);
	if (ch != ' ') {
		dlist_fail(c, "bad file literal header");
		goto fail;
	}
	if (dlist_rd_string(c, &b, "GUID in file literal") < 0)
		goto fail;
	if (!guid_valid(b.s, b.len)) {
		dlist_fail(c, "bad GUID in file literal");
		goto fail;
	}
	guid_normalise(b.s, d->file->guid);
	free(b.s);
	b.s = NULL;
	ch = prot_getc(c->in);
	if (ch != ' ') {
		dlist_fail(c, "bad file literal header");
		goto fail;
	}
	ch = prot_getc(c->in);
	if (dlist_rd_number(c, ch, DLIST_MAX_FILE, "file literal size",
	    &size) < 0)
		goto fail;
	d->file->size = size;
	ch = prot_getc(c->in);
	if (ch != '}') {
		dlist_fail(c, "bad file literal header");
		goto fail;
	}
	if (dlist_rd_crlf(c, "file literal") < 0)
		goto fail;
	return dlist_rd_filebytes(c, d);
fail:
	free(b.s);
	return -1;
}

/*
 * One value; with haskey, the string in c->kb becomes its key.  depth is
 * the nesting level of the value itself and is checked before
 * descending.
 */
static int
dlist_rd_value(struct dlist_pctx *c, int haskey, int depth,
    struct dlist **out)
{
	struct dlist *d = NULL, *child;
	char kb[80];
	int ch;

	*out = NULL;
	c->vb.len = 0;
	ch = prot_getc(c->in);
	switch (ch) {
	case -1:
		if (!prot_eof(c->in))
			dlist_fail_eof(c, "value");
		else
			dlist_fail(c, "unexpected end of input: missing value");
		return -1;
	case ')':
		dlist_fail(c, "unexpected ')'");
		return -1;
	case '(':
		if (depth >= DLIST_MAX_DEPTH) {
			dlist_fail(c, "nesting deeper than %d",
			    DLIST_MAX_DEPTH);
			return -1;
		}
		if ((d = dlist_node(c, DL_LIST, haskey)) == NULL)
			return -1;
		for (;;) {
			ch = dlist_skipws(c, "a list");
			if (ch == ')')
				break;
			if (ch < 0) {
				if (prot_eof(c->in))
					dlist_fail(c, "unterminated list");
				else
					dlist_fail_eof(c, "list");
				goto fail;
			}
			prot_ungetc(c->in, ch);
			if (dlist_rd_value(c, 0, depth + 1, &child) < 0)
				goto fail;
			dlist_append(d, child);
		}
		break;
	case '%':
		ch = prot_getc(c->in);
		if (ch == '{') {
			if ((d = dlist_node(c, DL_FILE, haskey)) == NULL)
				return -1;
			if (dlist_rd_file(c, d) < 0)
				goto fail;
			break;
		}
		if (ch != '(') {
			dlist_fail(c, "'%%' not followed by '(' or '{'");
			if (ch >= 0)
				prot_ungetc(c->in, ch);
			return -1;
		}
		if (depth >= DLIST_MAX_DEPTH) {
			dlist_fail(c, "nesting deeper than %d",
			    DLIST_MAX_DEPTH);
			return -1;
		}
		if ((d = dlist_node(c, DL_KVLIST, haskey)) == NULL)
			return -1;
		for (;;) {
			ch = dlist_skipws(c, "a kvlist");
			if (ch == ')')
				break;
			if (ch < 0) {
				if (prot_eof(c->in))
					dlist_fail(c, "unterminated kvlist");
				else
					dlist_fail_eof(c, "kvlist");
				goto fail;
			}
			prot_ungetc(c->in, ch);
			c->kb.len = 0;
			if (dlist_rd_string(c, &c->kb, "key") < 0)
				goto fail;
			ch = dlist_skipws(c, "a kvlist");
			if (ch == ')' || ch < 0) {
				dlist_fail(c, "missing value for key %s",
				    dlist_showkey(c->kb.s, kb, sizeof(kb)));
				goto fail;
			}
			prot_ungetc(c->in, ch);
			if (dlist_rd_value(c, 1, depth + 1, &child) < 0)
				goto fail;
			dlist_append(d, child);
		}
		break;
	case '"':
		if (dlist_rd_quoted(c, &c->vb) < 0)
			return -1;
		goto string;
	case '{':
		if (dlist_rd_literal(c, &c->vb, 1) < 0)
			return -1;
		goto string;
	default:
		if (dlist_isspace(ch)) {
			dlist_fail(c, "missing value");
			prot_ungetc(c->in, ch);
			return -1;
		}
		if (dlist_rd_atom(c, ch, &c->vb) < 0)
			return -1;
		if (ch == '\\') {
			if ((d = dlist_node(c, DL_FLAG, haskey)) == NULL)
				return -1;
			break;
		}
		if (c->vb.len == 3 && memcmp(c->vb.s, "NIL", 3) == 0) {
			if ((d = dlist_node(c, DL_NIL, haskey)) == NULL)
				return -1;
			break;
		}
	string:
		if ((d = dlist_node(c, DL_STRING, haskey)) == NULL)
			return -1;
		break;
	}
	*out = d;
	return 0;
fail:
	dlist_free(d);
	return -1;
}

/*
 * Parse one value (after "key SP" when parsekey) from in; the line end is
 * left in the stream.  File literal bytes go to sink.  On error returns
 * -1 with a one-line reason in err.
 */
int
dlist_parse(struct prot *in, int parsekey, const struct dlist_sink *sink,
    struct dlist **out, char *err, size_t errlen)
{
	return dlist_parse_limit(in, parsekey, sink, DLIST_MAX_ITEMS, out,
	    err, errlen);
}

/* dlist_parse with maxitems for DLIST_MAX_ITEMS. */
int
dlist_parse_limit(struct prot *in, int parsekey,
    const struct dlist_sink *sink, size_t maxitems, struct dlist **out,
    char *err, size_t errlen)
{
	struct dlist_pctx c;
	char kb[80];
	int ch, r = -1;

	memset(&c, 0, sizeof(c));
	c.in = in;
	c.sink = sink;
	c.maxitems = maxitems;
	c.err = err;
	c.errlen = errlen;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	*out = NULL;
	if (parsekey) {
		if (dlist_rd_string(&c, &c.kb, "key") < 0)
			goto done;
		/* One SP by the grammar; more blanks are tolerated, but a
		 * line end is not: the value would come from the next line. */
		ch = prot_getc(in);
		while (ch == ' ' || ch == '\t')
			ch = prot_getc(in);
		if (ch < 0 || ch == '\r' || ch == '\n') {
			dlist_fail(&c, "missing value after key %s",
			    dlist_showkey(c.kb.s, kb, sizeof(kb)));
			if (ch >= 0)
				prot_ungetc(in, ch);
			goto done;
		}
		prot_ungetc(in, ch);
	}
	r = dlist_rd_value(&c, parsekey, 0, out);
done:
	free(c.kb.s);
	free(c.vb.s);
	return r;
}

/* The line end after a value: CRLF or LF, nothing else. */
int
dlist_parse_eol(struct prot *in)
{
	int ch;

	ch = prot_getc(in);
	if (ch == '\r') {
		ch = prot_getc(in);
		if (ch == '\n')
			return 0;
	} else if (ch == '\n')
		return 0;
	if (ch >= 0)
		prot_ungetc(in, ch);
	return -1;
}

/*
 * A whole line "value CRLF" (or "key value CRLF") held in memory; file
 * literal bytes are discarded.  Anything after the line end is an error.
 */
int
dlist_parse_buf(const char *buf, size_t len, int parsekey,
    struct dlist **out, char *err, size_t errlen)
{
	struct prot *p;
	int r;

	*out = NULL;
	if ((p = prot_new_mem(buf, len)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r = dlist_parse(p, parsekey, NULL, out, err, errlen);
	if (r == 0 && dlist_parse_eol(p) < 0) {
		snprintf(err, errlen, "%s", prot_eof(p) ?
		    "missing line end" : "unexpected data after value");
		r = -1;
	} else if (r == 0 && prot_getc(p) >= 0) {
		snprintf(err, errlen, "unexpected data after line end");
		r = -1;
	}
	if (r < 0) {
		dlist_free(*out);
		*out = NULL;
	}
	prot_free(p);
	return r;
}

/* Read and drop n bytes; 0 or -1. */
static int
dlist_drain(struct prot *in, uint64_t n)
{
	char buf[DLIST_CHUNK];
	ssize_t r;

	while (n > 0) {
		r = prot_read(in, buf, n > sizeof(buf) ? sizeof(buf) :
		    (size_t)n);
		if (r <= 0)
			return -1;
		n -= (uint64_t)r;
	}
	return 0;
}

/*
 * After "{" (literal) or "%{" (file literal, file = 1): read a header up
 * to "}" and its CRLF or LF and set *size.  Returns 1 for a header, 0
 * when the bytes are no header (the byte that showed it is pushed back,
 * so a line end still ends the line), -1 at EOF, DLIST_EAT_TOOBIG for a
 * whole header whose size is over DLIST_MAX_FILE.  The scan is bounded.
 */
static int
dlist_eat_header(struct prot *in, int file, uint64_t *size)
{
	uint64_t v = 0;
	size_t scanned = 0;
	int ch, digits = 0, plus = 0, big = 0;

	for (;;) {
		ch = prot_getc(in);
		if (ch < 0)
			return -1;
		if (ch == '}')
			break;
		if (ch >= '0' && ch <= '9' && !plus) {
			if (v > (UINT64_MAX - 9) / 10)
				big = 1;
			v = v * 10 + (uint64_t)(ch - '0');
			digits++;
		} else if (!file && ch == '+' && digits > 0 && !plus) {
			plus = 1;
		} else if (file && ch != '\r' && ch != '\n' && ch != '{' &&
		    ++scanned < DLIST_HDR_SCAN) {
			/* Only the last word of a file header is the size. */
			v = 0;
			digits = 0;
			big = 0;
		} else {
			prot_ungetc(in, ch);
			return 0;
		}
	}
	if (digits == 0)
		return 0;
	ch = prot_getc(in);
	if (ch == '\r')
		ch = prot_getc(in);
	if (ch != '\n') {
		if (ch < 0)
			return -1;
		prot_ungetc(in, ch);
		return 0;
	}
	if (big || v > DLIST_MAX_FILE)
		return DLIST_EAT_TOOBIG;
	*size = v;
	return 1;
}

/*
 * Consume the rest of the line, including the bytes of any literal or
 * file literal it announces, so the next command starts clean.  A size
 * over DLIST_MAX_FILE (more than any peer can send in one literal) is
 * not drained: see dlist.h.
 */
int
dlist_eatline(struct prot *in)
{
	uint64_t n;
	int ch, r;

	for (;;) {
		ch = prot_getc(in);
		if (ch < 0)
			return -1;
		if (ch == '\n')
			return 0;
		if (ch == '{' || (ch == '%' && prot_peek(in) == '{')) {
			if (ch == '%')
				(void)prot_getc(in);
			r = dlist_eat_header(in, ch == '%', &n);
			if (r < 0)
				return r;
			if (r > 0 && dlist_drain(in, n) < 0)
				return -1;
		}
	}
}

/* True when the bytes may go out bare (section 2.2 rule 3). */
static int
dlist_isatom(const char *s, size_t len)
{
	size_t i;
	unsigned char ch;

	if (len == 0 || len >= DLIST_WMAX)
		return 0;
	if (len == 3 && memcmp(s, "NIL", 3) == 0)
		return 0;
	for (i = 0; i < len; i++) {
		ch = (unsigned char)s[i];
		if (ch < 0x1f || ch >= 0x7f)
			return 0;
		switch (ch) {
		case ' ': case '{': case '(': case ')': case '"':
		case '%': case '*': case '\\':
			return 0;
		}
	}
	return 1;
}

/* True when the bytes may go out between double quotes (rule 4). */
static int
dlist_isquotable(const char *s, size_t len)
{
	size_t i;
	unsigned char ch;

	if (len >= DLIST_WMAX)
		return 0;
	for (i = 0; i < len; i++) {
		ch = (unsigned char)s[i];
		if (ch >= 0x80 || ch == '\0' || ch == '\r' || ch == '\n' ||
		    ch == '"' || ch == '%' || ch == '\\')
			return 0;
	}
	return 1;
}

/*
 * One string by the astring rule: NIL for NULL, "" for empty, then atom,
 * quoted or literal ({N+} with litplus).  Returns 0 or -1.
 */
int
dlist_print_astring(struct prot *out, const char *s, size_t len, int litplus)
{
	int r = 0;

	if (s == NULL)
		return prot_write(out, "NIL", 3);
	if (len == 0)
		return prot_write(out, "\"\"", 2);
	if (dlist_isatom(s, len))
		return prot_write(out, s, len);
	if (dlist_isquotable(s, len)) {
		r |= prot_write(out, "\"", 1);
		r |= prot_write(out, s, len);
		r |= prot_write(out, "\"", 1);
		return r ? -1 : 0;
	}
	r |= prot_printf(out, "{%zu%s}\r\n", len, litplus ? "+" : "");
	r |= prot_write(out, s, len);
	return r ? -1 : 0;
}

/*
 * A file literal: header, then the file's bytes when withbytes.  A file
 * that is missing or not of the announced size goes out as NIL, so the
 * peer gets no wrong bytes under a right GUID.
 */
static int
dlist_print_file(const struct dlist *d, struct prot *out, int litplus,
    int withbytes)
{
	const struct dlist_file *f = d->file;
	char buf[DLIST_CHUNK];
	struct stat st;
	uint64_t left;
	ssize_t n;
	int fd = -1, r = 0;

	if (withbytes) {
		if (f->path == NULL ||
		    (fd = open(f->path, O_RDONLY | O_CLOEXEC)) < 0)
			return prot_write(out, "NIL", 3);
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
		    (uint64_t)st.st_size != f->size) {
			close(fd);
			return prot_write(out, "NIL", 3);
		}
	}
	r |= prot_write(out, "%{", 2);
	r |= dlist_print_astring(out, f->part != NULL ? f->part : "",
	    f->part != NULL ? strlen(f->part) : 0, litplus);
	r |= prot_printf(out, " %s %" PRIu64 "}", f->guid, f->size);
	if (!withbytes)
		return r ? -1 : 0;
	r |= prot_write(out, "\r\n", 2);
	left = f->size;
	while (r == 0 && left > 0) {
		n = read(fd, buf, left > sizeof(buf) ? sizeof(buf) :
		    (size_t)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* The header is out: nothing can repair the stream. */
			r = -1;
			break;
		}
		r |= prot_write(out, buf, (size_t)n);
		left -= (uint64_t)n;
	}
	close(fd);
	return r ? -1 : 0;
}

static int
dlist_print1(const struct dlist *d, int printkey, struct prot *out,
    int litplus, int withbytes)
{
	const struct dlist *ch;
	int r = 0;

	if (printkey) {
		r |= dlist_print_astring(out, d->key, d->key != NULL ?
		    strlen(d->key) : 0, litplus);
		r |= prot_write(out, " ", 1);
	}
	switch (d->kind) {
	case DL_NIL:
		r |= prot_write(out, "NIL", 3);
		break;
	case DL_STRING:
		r |= dlist_print_astring(out, d->s, d->len, litplus);
		break;
	case DL_FLAG:
		r |= prot_write(out, d->s, d->len);
		break;
	case DL_LIST:
	case DL_KVLIST:
		r |= prot_write(out, d->kind == DL_LIST ? "(" : "%(",
		    d->kind == DL_LIST ? 1 : 2);
		for (ch = d->head; ch != NULL; ch = ch->next) {
			if (ch != d->head)
				r |= prot_write(out, " ", 1);
			r |= dlist_print1(ch, d->kind == DL_KVLIST, out,
			    litplus, withbytes);
		}
		r |= prot_write(out, ")", 1);
		break;
	case DL_FILE:
		r |= dlist_print_file(d, out, litplus, withbytes);
		break;
	}
	return r ? -1 : 0;
}

/*
 * Print d (with "key SP" first when printkey) as Cyrus would; literals
 * are {N+} with litplus, else {N}.  Returns 0, or -1 on a write error or
 * a file that could not be read after its header was sent.
 */
int
dlist_print(const struct dlist *d, int printkey, struct prot *out,
    int litplus)
{
	if (d == NULL)
		return prot_write(out, "NIL", 3);
	return dlist_print1(d, printkey && d->key != NULL, out, litplus, 1);
}

/*
 * d as a malloc'd NUL-terminated string (free it); file literals appear
 * as their "%{part guid size}" header only, without line end or bytes.
 * *lenp (if not NULL) gets the length.  NULL on memory exhaustion.
 */
char *
dlist_tostring(const struct dlist *d, int printkey, int litplus,
    size_t *lenp)
{
	struct prot *m;
	const char *s;
	char *res = NULL;
	size_t len;
	int r;

	if ((m = prot_new_membuf()) == NULL)
		return NULL;
	if (d == NULL)
		r = prot_write(m, "NIL", 3);
	else
		r = dlist_print1(d, printkey && d->key != NULL, m, litplus,
		    0);
	if (r == 0) {
		s = prot_membuf(m, &len);
		res = dlist_xmemdup(s, len);
		if (lenp != NULL)
			*lenp = len;
	}
	prot_free(m);
	return res;
}

/* Free d and everything under it; d must not be linked in a parent. */
void
dlist_free(struct dlist *d)
{
	struct dlist *ch, *next;

	if (d == NULL)
		return;
	for (ch = d->head; ch != NULL; ch = next) {
		next = ch->next;
		dlist_free(ch);
	}
	if (d->kind == DL_FILE) {
		free(d->file->part);
		free(d->file->path);
		free(d->file);
	}
	free(d);
}

/* A node with value s (len bytes, copied), appended to parent. */
static struct dlist *
dlist_new(struct dlist *parent, const char *key, enum dlist_kind kind,
    const char *s, size_t len)
{
	struct dlist *d;

	d = dlist_alloc(kind, key, key != NULL ? strlen(key) : 0, s, len);
	if (parent != NULL)
		dlist_append(parent, d);
	return d;
}

/* An empty list "( )" under parent. */
struct dlist *
dlist_newlist(struct dlist *parent, const char *key)
{
	return dlist_new(parent, key, DL_LIST, NULL, 0);
}

/* An empty kvlist "%( )" under parent. */
struct dlist *
dlist_newkvlist(struct dlist *parent, const char *key)
{
	return dlist_new(parent, key, DL_KVLIST, NULL, 0);
}

/* A NIL value. */
struct dlist *
dlist_setnil(struct dlist *parent, const char *key)
{
	return dlist_new(parent, key, DL_NIL, NULL, 0);
}

/* A string value (s copied); NULL s gives NIL. */
struct dlist *
dlist_setatom(struct dlist *parent, const char *key, const char *s)
{
	if (s == NULL)
		return dlist_setnil(parent, key);
	return dlist_setmap(parent, key, s, strlen(s));
}

/* A byte string value (may hold NUL; copied); NULL s gives NIL. */
struct dlist *
dlist_setmap(struct dlist *parent, const char *key, const char *s,
    size_t len)
{
	if (s == NULL)
		return dlist_setnil(parent, key);
	return dlist_new(parent, key, DL_STRING, s, len);
}

/* A flag such as \Seen or $Label1, written raw. */
struct dlist *
dlist_setflag(struct dlist *parent, const char *key, const char *flag)
{
	if (flag == NULL)
		flag = "";
	return dlist_new(parent, key, DL_FLAG, flag, strlen(flag));
}

static struct dlist *
dlist_setu64(struct dlist *parent, const char *key, uint64_t v, int hex)
{
	static const char dig[] = "0123456789abcdef";
	char buf[32];
	size_t n = sizeof(buf), i;

	/* By hand: snprintf is most of the cost of building a record. */
	if (hex) {
		for (i = 0; i < 16; i++, v >>= 4)
			buf[--n] = dig[v & 0x0f];
	} else {
		do {
			buf[--n] = dig[v % 10];
			v /= 10;
		} while (v != 0);
	}
	return dlist_setmap(parent, key, buf + n, sizeof(buf) - n);
}

/* Numbers travel as unsigned decimal strings. */
struct dlist *
dlist_setnum32(struct dlist *parent, const char *key, uint32_t v)
{
	return dlist_setu64(parent, key, v, 0);
}

struct dlist *
dlist_setnum64(struct dlist *parent, const char *key, uint64_t v)
{
	return dlist_setu64(parent, key, v, 0);
}

/* A time_t; a negative one travels as its two's-complement value. */
struct dlist *
dlist_setdate(struct dlist *parent, const char *key, int64_t v)
{
	return dlist_setu64(parent, key, (uint64_t)v, 0);
}

/* 16 lower-case hex digits, zero padded. */
struct dlist *
dlist_sethex64(struct dlist *parent, const char *key, uint64_t v)
{
	return dlist_setu64(parent, key, v, 1);
}

/* A GUID, lower-cased; an invalid guid is stored as given. */
struct dlist *
dlist_setguid(struct dlist *parent, const char *key, const char *guid)
{
	char g[41];

	if (guid != NULL && guid_valid(guid, strlen(guid))) {
		guid_normalise(guid, g);
		return dlist_setatom(parent, key, g);
	}
	return dlist_setatom(parent, key, guid);
}

/* A file literal whose bytes will be read from path when printed. */
struct dlist *
dlist_setfile(struct dlist *parent, const char *key, const char *part,
    const char *guid, uint64_t size, const char *path)
{
	struct dlist *d;

	d = dlist_new(parent, key, DL_FILE, NULL, 0);
	d->file->part = dlist_xstrdup(part != NULL ? part : "");
	if (guid != NULL && guid_valid(guid, strlen(guid)))
		guid_normalise(guid, d->file->guid);
	else if (guid != NULL)
		strlcpy(d->file->guid, guid, sizeof(d->file->guid));
	d->file->size = size;
	if (path != NULL)
		d->file->path = dlist_xstrdup(path);
	return d;
}

/* Append child (not linked anywhere) to parent's children. */
void
dlist_stitch(struct dlist *parent, struct dlist *child)
{
	child->next = NULL;
	dlist_append(parent, child);
}

/*
 * A node's strings live inside it: a new key means a bigger (or smaller)
 * node.  d has no parent, so nothing points to it but the caller; its
 * children and file move with it.
 */
struct dlist *
dlist_setkey(struct dlist *d, const char *key)
{
	struct dlist *nd;
	char *k = NULL;
	size_t klen = 0;

	if (key != NULL) {
		/* key may be d's own: copy it before d moves. */
		k = dlist_xstrdup(key);
		klen = strlen(k);
	}
	if ((nd = realloc(d, dlist_nodesize(d->len, k != NULL, klen))) ==
	    NULL)
		abort();
	nd->key = NULL;
	if (k != NULL) {
		nd->key = nd->s + nd->len + 1;
		memcpy(nd->key, k, klen + 1);
		free(k);
	}
	return nd;
}

/* The direct child with exactly this key, or NULL. */
struct dlist *
dlist_child(const struct dlist *d, const char *key)
{
	struct dlist *ch;

	if (d == NULL || key == NULL)
		return NULL;
	for (ch = d->head; ch != NULL; ch = ch->next)
		if (ch->key != NULL && strcmp(ch->key, key) == 0)
			return ch;
	return NULL;
}

/* A string without NUL; NIL reads as "". */
int
dlist_getatom(const struct dlist *d, const char *key, const char **vp)
{
	const struct dlist *ch;

	if ((ch = dlist_child(d, key)) == NULL)
		return -1;
	if (ch->kind == DL_NIL) {
		*vp = "";
		return 0;
	}
	if (ch->kind != DL_STRING && ch->kind != DL_FLAG)
		return -1;
	if (memchr(ch->s, '\0', ch->len) != NULL)
		return -1;
	*vp = ch->s;
	return 0;
}

/* Any byte string; NIL reads as "" (length 0). */
int
dlist_getmap(const struct dlist *d, const char *key, const char **vp,
    size_t *lenp)
{
	const struct dlist *ch;

	if ((ch = dlist_child(d, key)) == NULL)
		return -1;
	if (ch->kind == DL_NIL) {
		*vp = "";
		*lenp = 0;
		return 0;
	}
	if (ch->kind != DL_STRING && ch->kind != DL_FLAG)
		return -1;
	*vp = ch->s;
	*lenp = ch->len;
	return 0;
}

int
dlist_getnum32(const struct dlist *d, const char *key, uint32_t *vp)
{
	return dlist_tonum32(dlist_child(d, key), vp);
}

int
dlist_getnum64(const struct dlist *d, const char *key, uint64_t *vp)
{
	return dlist_tonum64(dlist_child(d, key), vp);
}

/* A date is a num64 reinterpreted as a signed time_t. */
int
dlist_getdate(const struct dlist *d, const char *key, int64_t *vp)
{
	uint64_t v;

	if (dlist_tonum64(dlist_child(d, key), &v) < 0)
		return -1;
	*vp = (int64_t)v;
	return 0;
}

/* 1 to 16 hex digits. */
int
dlist_gethex64(const struct dlist *d, const char *key, uint64_t *vp)
{
	const struct dlist *ch;
	uint64_t v = 0;
	size_t i;
	int x;

	ch = dlist_child(d, key);
	if (ch == NULL || ch->kind != DL_STRING || ch->len < 1 ||
	    ch->len > 16)
		return -1;
	for (i = 0; i < ch->len; i++) {
		x = (unsigned char)ch->s[i];
		if (x >= '0' && x <= '9')
			x -= '0';
		else if (x >= 'a' && x <= 'f')
			x -= 'a' - 10;
		else if (x >= 'A' && x <= 'F')
			x -= 'A' - 10;
		else
			return -1;
		v = v << 4 | (uint64_t)x;
	}
	*vp = v;
	return 0;
}

int
dlist_getguid(const struct dlist *d, const char *key, char guid[41])
{
	return dlist_toguid(dlist_child(d, key), guid);
}

/* Any value under key: the caller checks its kind. */
int
dlist_getlist(const struct dlist *d, const char *key, struct dlist **vp)
{
	struct dlist *ch;

	if ((ch = dlist_child(d, key)) == NULL)
		return -1;
	*vp = ch;
	return 0;
}

/* Whole token of decimal digits, at most 2^64-1. */
int
dlist_tonum64(const struct dlist *d, uint64_t *vp)
{
	uint64_t v = 0;
	size_t i;
	unsigned int x;

	if (d == NULL || d->kind != DL_STRING || d->len == 0)
		return -1;
	for (i = 0; i < d->len; i++) {
		x = (unsigned char)d->s[i];
		if (x < '0' || x > '9')
			return -1;
		x -= '0';
		if (v > (UINT64_MAX - x) / 10)
			return -1;
		v = v * 10 + x;
	}
	*vp = v;
	return 0;
}

/* As num64, truncated to 32 bits the way Cyrus does. */
int
dlist_tonum32(const struct dlist *d, uint32_t *vp)
{
	uint64_t v;

	if (dlist_tonum64(d, &v) < 0)
		return -1;
	*vp = (uint32_t)v;
	return 0;
}

/* 40 hex digits (a file literal's GUID also counts), lower-cased. */
int
dlist_toguid(const struct dlist *d, char guid[41])
{
	if (d == NULL)
		return -1;
	if (d->kind == DL_FILE) {
		if (!guid_valid(d->file->guid, strlen(d->file->guid)))
			return -1;
		memcpy(guid, d->file->guid, 41);
		return 0;
	}
	if (d->kind != DL_STRING || !guid_valid(d->s, d->len))
		return -1;
	guid_normalise(d->s, guid);
	return 0;
}

/* The string of a string or flag node; "" for anything else. */
const char *
dlist_cstring(const struct dlist *d)
{
	if (d == NULL || (d->kind != DL_STRING && d->kind != DL_FLAG))
		return "";
	return d->s;
}

/* True when s[0..len) is exactly 40 hex digits. */
int
guid_valid(const char *s, size_t len)
{
	size_t i;

	if (s == NULL || len != 40)
		return 0;
	for (i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

/* Lower-case the 40 hex digits of in into out (NUL terminated). */
void
guid_normalise(const char *in, char out[41])
{
	size_t i;

	for (i = 0; i < 40; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[40] = '\0';
}
