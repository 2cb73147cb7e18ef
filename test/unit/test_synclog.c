/*
 * test_synclog: the sync_log reader: parser, quoting, malformed lines,
 * coalescing (table-driven) and the bounded line reader.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "synclog_read.h"
#include "tap.h"

static struct synclog_rec rec;

/* Parse line; return "KIND|arg1|arg2" or "ERR" / "SKIP". */
static const char *
parse(const char *line, size_t len)
{
	static char out[3 * SYNCLOG_READ_MAX];
	char err[256];
	int r;

	r = synclog_parse(line, len, &rec, err, sizeof(err));
	if (r == -1)
		return "ERR";
	if (r == 0)
		return "SKIP";
	snprintf(out, sizeof(out), "%s|%s|%s", synclog_kind_name(rec.kind),
	    rec.arg1, rec.arg2 != NULL ? rec.arg2 : "-");
	return out;
}

#define P(s)	parse((s), strlen(s))

static void
test_parse(void)
{
	static const struct {
		const char *in, *want;
	} t[] = {
		/* Every record type. */
		{ "USER alice", "USER|alice|-" },
		{ "UNUSER alice", "UNUSER|alice|-" },
		{ "META alice", "META|alice|-" },
		{ "SIEVE alice", "SIEVE|alice|-" },
		{ "APPEND user.alice", "APPEND|user.alice|-" },
		{ "MAILBOX user.alice.Sent", "MAILBOX|user.alice.Sent|-" },
		{ "DOUBLEMAILBOX user.a.x user.b.y",
		    "DOUBLEMAILBOX|user.a.x|user.b.y" },
		{ "UNMAILBOX user.a.x", "UNMAILBOX|user.a.x|-" },
		{ "RENAME user.a.x user.a.y", "RENAME|user.a.x|user.a.y" },
		{ "QUOTA user.a", "QUOTA|user.a|-" },
		{ "ANNOTATION \"\"", "ANNOTATION||-" },
		{ "SEEN alice 4f1e-77", "SEEN|alice|4f1e-77" },
		{ "SUB alice user.bob", "SUB|alice|user.bob" },
		{ "UNSUB alice user.bob", "UNSUB|alice|user.bob" },
		/* Case, blanks, CRLF, skipped lines. */
		{ "mailbox user.a", "MAILBOX|user.a|-" },
		{ "Seen\tu \t x  ", "SEEN|u|x" },
		{ "USER u\r", "USER|u|-" },
		{ "", "SKIP" },
		{ "  \t", "SKIP" },
		{ "\r", "SKIP" },
		{ "%commit /x/log-run 1:2:3:4.5", "SKIP" },
		/* Quoting. */
		{ "MAILBOX \"user.a.My Folder\"", "MAILBOX|user.a.My Folder|-" },
		{ "MAILBOX \"user.a.q\\\"uote\"", "MAILBOX|user.a.q\"uote|-" },
		{ "MAILBOX \"user.a.b\\\\s\"", "MAILBOX|user.a.b\\s|-" },
		{ "MAILBOX \"user.a.\\{br\\}\"", "MAILBOX|user.a.{br}|-" },
		{ "MAILBOX \"user.a.(p)\"", "MAILBOX|user.a.(p)|-" },
		{ "MAILBOX \"tab\there\"", "MAILBOX|tab\there|-" },
		{ "MAILBOX user.a.\xc3\xa9t\xc3\xa9", "MAILBOX|user.a.\xc3\xa9t\xc3\xa9|-" },
		{ "MAILBOX user.alice.&AOQ-", "MAILBOX|user.alice.&AOQ-|-" },
		{ "MAILBOX example.com!user.a", "MAILBOX|example.com!user.a|-" },
		{ "SUB \"\" \"\"", "SUB||" },
		/* Malformed. */
		{ "FOO bar", "ERR" },
		{ "USER", "ERR" },
		{ "USER a b", "ERR" },
		{ "SEEN a", "ERR" },
		{ "RENAME a b c", "ERR" },
		{ "MAILBOX \"unterminated", "ERR" },
		{ "MAILBOX \"x\"y", "ERR" },
		{ "MAILBOX \"x\\", "ERR" },
		{ "MAILBOX {3}", "ERR" },
		{ "MAILBOX a\"b", "ERR" },
		{ "MAILBOX a{b", "ERR" },
		{ "MAILBOX a\\b", "ERR" },
		{ "MAILBOX a(b", "ERR" },
		{ "MAILBOX a\rb", "ERR" },
		{ " USER a", "ERR" },
		{ "USERS a", "ERR" },
		{ "DOUBLEMAILBOXX a b", "ERR" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		is_str(P(t[i].in), t[i].want, "parse '%s'", t[i].in);

	is_str(parse("USER a\0b", 8), "ERR", "NUL byte refused");
	{
		char *big = malloc(SYNCLOG_READ_MAX + 2);

		memset(big, 'x', SYNCLOG_READ_MAX + 1);
		memcpy(big, "USER ", 5);
		is_str(parse(big, SYNCLOG_READ_MAX + 1), "ERR",
		    "a line over the limit is refused");
		ok(strncmp(parse(big, SYNCLOG_READ_MAX), "USER|xx", 7) == 0,
		    "a line at the limit is accepted");
		free(big);
	}
}

/* Round trip: format(parse(x)) == x for writer-quoted lines. */
static void
test_format(void)
{
	static const char *lines[] = {
		"MAILBOX \"user.a.My Folder\"\n",
		"MAILBOX \"user.a.q\\\"u\\\\o\\{t\\}e\"\n",
		"MAILBOX \"a(b)\"\n",
		"ANNOTATION \"\"\n",
		"SEEN alice 4f1e-77\n",
		"MAILBOX user.alice.&AOQ-\n",
		"MAILBOX user.a.\xc3\xa9\n",
	};
	char err[128], out[256];
	size_t i;
	int n;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		n = synclog_parse(lines[i], strlen(lines[i]) - 1, &rec, err,
		    sizeof(err));
		is_int(n, 1, "parse %zu", i);
		n = synclog_rec_format(&rec, out, sizeof(out));
		ok(n > 0 && strcmp(out, lines[i]) == 0, "round trip %zu", i);
	}
}

static void
test_owner(void)
{
	static const char *t[][2] = {
		{ "user.alice", "alice" },
		{ "user.alice.Sent.2024", "alice" },
		{ "example.com!user.bob.x", "bob@example.com" },
		{ "DELETED.user.carol.x.5F00AA", "carol" },
		{ "shared.folder", "" },
		{ "", "" },
		{ "user", "" },
	};
	char buf[64];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		synclog_mailbox_owner(t[i][0], buf, sizeof(buf));
		is_str(buf, t[i][1], "owner of '%s'", t[i][0]);
	}
}

struct collect {
	char	buf[8192];
	size_t	len;
};

static int
collect(const char *line, size_t len, void *arg)
{
	struct collect *c = arg;

	if (c->len + len >= sizeof(c->buf))
		return -1;
	memcpy(c->buf + c->len, line, len);
	c->len += len;
	c->buf[c->len] = '\0';
	return 0;
}

/* Coalesce the lines of text; return the emitted text. */
static const char *
coalesce(const char *text)
{
	static struct collect c;
	struct synclog_set *set = synclog_set_new();
	char err[128];
	const char *p, *nl;

	memset(&c, 0, sizeof(c));
	for (p = text; *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		if (synclog_parse(p, nl - p, &rec, err, sizeof(err)) == 1)
			synclog_set_add(set, &rec, err, sizeof(err));
	}
	if (synclog_set_emit(set, collect, &c) != 0)
		strlcpy(c.buf, "EMIT FAILED", sizeof(c.buf));
	synclog_set_free(set);
	return c.buf;
}

static void
test_coalesce(void)
{
	static const struct {
		const char *name, *in, *want;
	} t[] = {
		{ "empty", "", "" },
		{ "duplicates",
		  "USER a\nUSER a\nMAILBOX user.a\nMAILBOX user.a\n",
		  "MAILBOX user.a\nUSER a\n" },
		{ "APPEND folds into MAILBOX",
		  "APPEND user.a\nMAILBOX user.a\nAPPEND user.a.x\n",
		  "MAILBOX user.a\nMAILBOX user.a.x\n" },
		{ "USER removes META, SEEN, SUB of that user only",
		  "META u\nSEEN u x\nSUB u user.v\nSEEN v y\nUSER u\n",
		  "SEEN v y\nUSER u\n" },
		{ "UNUSER removes USER, META, SEEN, SUB",
		  "USER u\nMETA u\nSEEN u x\nSUB u m\nUNUSER u\n",
		  "UNUSER u\n" },
		{ "META removes SEEN and SUB; SIEVE is META",
		  "SEEN u x\nUNSUB u m\nSIEVE u\nSUB w m\n",
		  "SUB w m\nMETA u\n" },
		{ "UNSUB is SUB",
		  "SUB u m\nUNSUB u m\nUNSUB u n\n",
		  "SUB u m\nSUB u n\n" },
		{ "mailboxes are not pruned by USER",
		  "USER a\nMAILBOX user.a.x\n",
		  "MAILBOX user.a.x\nUSER a\n" },
		{ "execution order",
		  "UNUSER z\nUSER y\nMETA x\nUNMAILBOX user.q.r\n"
		  "SUB s m\nSEEN t u\nANNOTATION \"\"\nQUOTA user.q\n"
		  "MAILBOX user.q\n",
		  "MAILBOX user.q\nQUOTA user.q\nANNOTATION \"\"\n"
		  "SEEN t u\nSUB s m\nUNMAILBOX user.q.r\nMETA x\n"
		  "USER y\nUNUSER z\n" },
		{ "groups by owner, in order of first appearance",
		  "MAILBOX user.b.1\nMAILBOX shared\nMAILBOX user.a\n"
		  "MAILBOX user.b.2\nMAILBOX other\n",
		  "MAILBOX user.b.1\nMAILBOX user.b.2\nMAILBOX shared\n"
		  "MAILBOX other\nMAILBOX user.a\n" },
		{ "RENAME stays with its group, before its MAILBOX lines",
		  "MAILBOX user.a.z\nRENAME user.a.x user.a.y\n"
		  "MAILBOX user.a.x\nMAILBOX user.a.y\n",
		  "RENAME user.a.x user.a.y\nMAILBOX user.a.z\n"
		  "MAILBOX user.a.x\nMAILBOX user.a.y\n" },
		{ "cross-user RENAME in the old name's group",
		  "MAILBOX user.b\nRENAME user.a.x user.b.x\n"
		  "MAILBOX user.a.x\nMAILBOX user.b.x\n",
		  "MAILBOX user.b\nMAILBOX user.b.x\n"
		  "RENAME user.a.x user.b.x\nMAILBOX user.a.x\n" },
		{ "DOUBLEMAILBOX in the first name's group",
		  "DOUBLEMAILBOX user.a.x user.b.y\nMAILBOX user.a\n"
		  "DOUBLEMAILBOX user.a.x user.b.y\n",
		  "DOUBLEMAILBOX user.a.x user.b.y\nMAILBOX user.a\n" },
		{ "quoting kept on output",
		  "MAILBOX \"user.a.My Folder\"\nSUB a \"x\\\"y\"\n",
		  "MAILBOX \"user.a.My Folder\"\nSUB a \"x\\\"y\"\n" },
	};
	char first[8192];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		is_str(coalesce(t[i].in), t[i].want, "coalesce: %s",
		    t[i].name);
		/* Coalescing is idempotent. */
		strlcpy(first, coalesce(t[i].in), sizeof(first));
		is_str(coalesce(first), first, "coalesce twice: %s",
		    t[i].name);
	}
}

/* The reader: pieces of overlong lines, no final LF, line numbers. */
static void
test_reader(void)
{
	struct synclog_reader *r;
	const char *line;
	char err[128];
	size_t len, longlen = 0;
	unsigned long lineno;
	int fds[2], flags, n, pieces = 0, lines = 0;
	char *big;
	/* Longer than the reader's buffer, so it must come in pieces. */
	size_t biglen = 5 * SYNCLOG_READ_MAX + 17;
	pid_t pid;

	big = malloc(biglen);
	memset(big, 'y', biglen);
	ok(pipe(fds) == 0, "pipe");
	if ((pid = fork()) == 0) {
		close(fds[0]);
		(void)!write(fds[1], "USER a\n", 7);
		(void)!write(fds[1], big, biglen);
		(void)!write(fds[1], "\nUSER b\nUSER c", 14);
		_exit(0);
	}
	close(fds[1]);
	r = synclog_reader_new(fds[0]);
	while ((n = synclog_reader_next(r, &line, &len, &flags, &lineno,
	    err, sizeof(err))) == 1) {
		if (flags & SYNCLOG_LINE_LONG) {
			ok(lineno == 2, "overlong piece is line 2");
			longlen += len;
			pieces++;
			if (!(flags & SYNCLOG_LINE_MORE))
				lines++;
			continue;
		}
		lines++;
		if (lineno == 1)
			ok(len == 6 && memcmp(line, "USER a", 6) == 0,
			    "line 1");
		if (lineno == 3)
			ok(len == 6 && memcmp(line, "USER b", 6) == 0,
			    "line 3");
		if (lineno == 4)
			ok(len == 6 && (flags & SYNCLOG_LINE_NOLF),
			    "line 4 without LF");
	}
	is_int(n, 0, "end of file");
	is_int(lines, 4, "four lines");
	is_int(longlen, biglen, "overlong line comes out whole");
	ok(pieces >= 2, "in pieces");
	synclog_reader_free(r);
	close(fds[0]);
	free(big);
}

int
main(void)
{
	test_parse();
	test_format();
	test_owner();
	test_coalesce();
	test_reader();
	return tap_done();
}
