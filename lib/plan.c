/*
 * plan: reading the plan stream, syncpipe-plan(5).  See plan.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlist.h"
#include "plan.h"
#include "prot.h"

/* Longest "%(...)" source of a body reference. */
#define PLAN_SOURCE_MAX	8192

/* What a sub-command name is made of (after upper-casing). */
#define PLAN_KEYCHARS	"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"

/*
 * Read a space-terminated word of at most size - 1 bytes into buf,
 * upper-cased if upper, '?' for a byte that is not printable.  Returns 0
 * when the space was read, -1 otherwise.
 */
static int
plan_word(struct prot *in, char *buf, size_t size, int upper)
{
	size_t n;
	int c = -1;

	for (n = 0; n < size - 1; n++) {
		c = prot_getc(in);
		if (c == ' ' || c == '\n' || c == '\r' || c == -1)
			break;
		if (!isprint(c))
			c = '?';	/* never a verb or key; quotable */
		buf[n] = (char)(upper ? toupper(c) : c);
	}
	buf[n] = '\0';
	return c == ' ' ? 0 : -1;
}

/* The verbs of a plan command line. */
static int
plan_verb(const char *w)
{
	return strcmp(w, "APPLY") == 0 || strcmp(w, "GET") == 0 ||
	    strcmp(w, "RESTORE") == 0 || strcmp(w, "MASTER") == 0;
}

int
plan_next(struct prot *in, struct plan_line *l, char *buf, size_t bufsize,
    char *err, size_t errlen)
{
	char why[256];
	ssize_t n;
	int c;

	memset(l, 0, sizeof(*l));
	for (;;) {
		if ((c = prot_peek(in)) == -1) {
			if (!prot_eof(in)) {
				snprintf(err, errlen, "reading the plan: %s",
				    prot_error(in));
				return -1;
			}
			l->kind = PLAN_EOF;
			return 0;
		}
		if (c != '\n' && c != '\r')
			break;
		(void)prot_getc(in);
	}
	if (c == '#' || c == '%') {
		n = prot_readline(in, buf, bufsize);
		if (n == -2 && c == '#')
			buf[0] = '\0';	/* a long comment: still a comment */
		else if (n == -2) {
			snprintf(err, errlen, "plan: control line too long");
			return -1;
		} else if (n < 0) {
			snprintf(err, errlen, "reading the plan: %s",
			    prot_error(in));
			return -1;
		}
		l->kind = PLAN_CONTROL;
		l->text = buf;
		return 0;
	}
	if (plan_word(in, l->word, sizeof(l->word), 0) == -1 ||
	    !plan_verb(l->word)) {
		snprintf(err, errlen, "bad plan line starting '%.64s'",
		    l->word);
		return -1;
	}
	if (plan_word(in, l->key, sizeof(l->key), 1) == -1 ||
	    l->key[0] == '\0' ||
	    strspn(l->key, PLAN_KEYCHARS) != strlen(l->key)) {
		snprintf(err, errlen, "bad plan line '%.64s %.64s'", l->word,
		    l->key);
		return -1;
	}
	if (strcmp(l->word, "APPLY") == 0 && strcmp(l->key, "MESSAGE") == 0) {
		/* Bodies by reference: the line holds headers only. */
		n = prot_readline(in, buf, bufsize);
		if (n == -2) {
			snprintf(err, errlen, "plan: APPLY MESSAGE line too "
			    "long");
			return -1;
		}
		if (n < 0 || buf[0] != '(') {
			snprintf(err, errlen, "bad APPLY MESSAGE line in the "
			    "plan");
			return -1;
		}
		l->kind = PLAN_MESSAGE;
		l->text = buf + 1;
		return 0;
	}
	why[0] = '\0';
	if (dlist_parse(in, 0, NULL, &l->value, why, sizeof(why)) == -1 ||
	    dlist_parse_eol(in) == -1) {
		snprintf(err, errlen, "plan: cannot parse %.64s %.64s: %s",
		    l->word, l->key, why[0] ? why : "junk after the value");
		dlist_free(l->value);
		l->value = NULL;
		return -1;
	}
	l->value = dlist_setkey(l->value, l->key);
	l->kind = PLAN_COMMAND;
	return 0;
}

/*
 * Length of the "%(...)" source at p, quoted strings skipped and
 * parentheses balanced; 0 when p does not start one or it does not end.
 */
static size_t
plan_source_len(const char *p)
{
	size_t i;
	int depth = 0, q = 0;

	if (p[0] != '%' || p[1] != '(')
		return 0;
	for (i = 1; p[i] != '\0'; i++) {
		if (q) {
			if (p[i] == '\\' && p[i + 1] != '\0')
				i++;
			else if (p[i] == '"')
				q = 0;
			continue;
		}
		if (p[i] == '"')
			q = 1;
		else if (p[i] == '{')
			return 0;	/* no literal in a source */
		else if (p[i] == '(')
			depth++;
		else if (p[i] == ')' && --depth == 0)
			return i + 1;
	}
	return 0;
}

/*
 * A run of at most max bytes of p that are in the set ok(); the count,
 * or 0 when there is none or it is longer.
 */
static size_t
plan_span(const char *p, size_t max, int (*ok)(int))
{
	size_t n;

	for (n = 0; ok((unsigned char)p[n]); n++)
		if (n == max)
			return 0;
	return n;
}

static int
plan_partchar(int c)
{
	return isalnum(c) || c == '_' || c == '-';
}

static int
plan_hexchar(int c)
{
	return isxdigit(c);
}

static int
plan_digitchar(int c)
{
	return isdigit(c);
}

int
plan_ref_next(const char **pp, struct plan_ref *r, char *err, size_t errlen)
{
	const char *p = *pp;
	char buf[PLAN_SOURCE_MAX + 2], why[256];
	size_t n, ll;

	memset(r, 0, sizeof(*r));
	while (*p == ' ')
		p++;
	if (*p == ')') {
		*pp = p + 1;
		return 0;
	}
	/* "%{" partition SP guid SP size "}" */
	if (p[0] != '%' || p[1] != '{')
		goto bad;
	p += 2;
	if ((n = plan_span(p, sizeof(r->part) - 1, plan_partchar)) == 0 ||
	    p[n] != ' ')
		goto bad;
	memcpy(r->part, p, n);
	p += n + 1;
	if ((n = plan_span(p, 40, plan_hexchar)) != 40 || p[n] != ' ')
		goto bad;
	guid_normalise(p, r->guid);
	p += n + 1;
	if ((n = plan_span(p, 20, plan_digitchar)) == 0 || p[n] != '}')
		goto bad;
	for (; *p != '}'; p++) {
		if (r->size > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			goto bad;
		r->size = r->size * 10 + (uint64_t)(*p - '0');
	}
	p++;
	while (*p == ' ')
		p++;
	if ((ll = plan_source_len(p)) > 0) {
		if (ll > PLAN_SOURCE_MAX) {
			snprintf(err, errlen, "APPLY MESSAGE: source too long");
			return -1;
		}
		memcpy(buf, p, ll);
		memcpy(buf + ll, "\r\n", 2);
		if (dlist_parse_buf(buf, ll + 2, 0, &r->loc, why,
		    sizeof(why)) == -1) {
			snprintf(err, errlen, "APPLY MESSAGE: bad source: %s",
			    why);
			return -1;
		}
		p += ll;
	}
	*pp = p;
	return 1;
bad:
	snprintf(err, errlen, "bad APPLY MESSAGE line in the plan");
	return -1;
}
