/*
 * test_dlist: the dlist codec against the wire rules of the protocol
 * document, section 2: byte-exact printing, parsing, typed accessors,
 * malformed input, file literals and line recovery.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dlist.h"
#include "prot.h"
#include "tap.h"

#define G1 "306f3706516e79913e70b4c9ef5549d464561446"

/* Print d into a malloc'd string (file bytes included). */
static char *
pr(const struct dlist *d, int printkey, int litplus, size_t *lenp)
{
	struct prot *m;
	const char *s;
	char *res;
	size_t len;

	m = prot_new_membuf();
	if (dlist_print(d, printkey, m, litplus) < 0) {
		prot_free(m);
		return strdup("<print failed>");
	}
	s = prot_membuf(m, &len);
	res = malloc(len + 1);
	memcpy(res, s, len + 1);
	if (lenp != NULL)
		*lenp = len;
	prot_free(m);
	return res;
}

/* The astring rule on one string. */
static char *
astr(const char *s, size_t len, int litplus)
{
	struct prot *m;
	char *res;

	m = prot_new_membuf();
	dlist_print_astring(m, s, len, litplus);
	res = strdup(prot_membuf(m, NULL));
	prot_free(m);
	return res;
}

static void
is_astr(const char *s, size_t len, int litplus, const char *want,
    const char *name)
{
	char *got;

	got = astr(s, len, litplus);
	is_str(got, want, "astring: %s", name);
	free(got);
}

/* in, made fit for a one-line test name (CR, LF, TAB shown escaped). */
static const char *
esc(const char *in)
{
	static char out[80];
	size_t o = 0;

	for (; *in != '\0' && o + 3 < sizeof(out); in++) {
		if (*in == '\r' || *in == '\n' || *in == '\t') {
			out[o++] = '\\';
			out[o++] = *in == '\r' ? 'r' : *in == '\n' ? 'n' : 't';
		} else
			out[o++] = *in;
	}
	out[o] = '\0';
	return out;
}

/* Parse then print; compare with want (NULL: same as input). */
static void
roundtrip(const char *in, int parsekey, int litplus, const char *want)
{
	struct dlist *d;
	char err[256], *line, *got;
	size_t len;
	int r;

	len = strlen(in);
	line = malloc(len + 3);
	memcpy(line, in, len);
	memcpy(line + len, "\r\n", 3);
	r = dlist_parse_buf(line, len + 2, parsekey, &d, err, sizeof(err));
	ok(r == 0, "parse %s", esc(in));
	if (r != 0) {
		printf("#   error: %s\n", err);
		free(line);
		return;
	}
	got = pr(d, parsekey, litplus, NULL);
	is_str(got, want != NULL ? want : in, "reprint %s", esc(in));
	free(got);
	free(line);
	dlist_free(d);
}

/* in must fail to parse with a message containing msg. */
static void
bad(const char *in, size_t len, int parsekey, const char *msg,
    const char *name)
{
	struct dlist *d = (struct dlist *)1;
	char err[256];
	int r;

	err[0] = 'X';
	err[1] = '\0';
	r = dlist_parse_buf(in, len, parsekey, &d, err, sizeof(err));
	ok(r == -1 && d == NULL && strstr(err, msg) != NULL &&
	    strchr(err, '\n') == NULL, "error: %s", name);
	if (r != -1 || strstr(err, msg) == NULL)
		printf("#   r=%d err='%s', want '%s'\n", r, err, msg);
	if (r == 0)
		dlist_free(d);
}

static void
test_write_strings(void)
{
	char big[1100], nul[3] = { 'a', '\0', 'b' };
	char *want;

	is_astr("abc", 3, 1, "abc", "atom");
	is_astr("user.alice.Sent", 15, 1, "user.alice.Sent", "dotted atom");
	is_astr("1:5,7", 5, 1, "1:5,7", "comma and colon stay atom");
	is_astr("/comment", 8, 1, "/comment", "slash atom");
	is_astr("$Label1", 7, 1, "$Label1", "dollar atom");
	is_astr(NULL, 0, 1, "NIL", "NULL is NIL");
	is_astr("", 0, 1, "\"\"", "empty is quoted");
	is_astr("NIL", 3, 1, "\"NIL\"", "the string NIL is quoted");
	is_astr("nil", 3, 1, "nil", "lower-case nil is an atom");
	is_astr("NILS", 4, 1, "NILS", "NILS is an atom");
	is_astr("a b", 3, 1, "\"a b\"", "space -> quoted");
	is_astr("u\tlrs\t", 6, 1, "\"u\tlrs\t\"", "TAB -> quoted");
	is_astr("a*", 2, 1, "\"a*\"", "* -> quoted");
	is_astr("a{b", 3, 1, "\"a{b\"", "{ -> quoted");
	is_astr("(x)", 3, 1, "\"(x)\"", "parens -> quoted");
	is_astr("\x1f", 1, 1, "\x1f", "0x1F slips through as atom");
	is_astr("\x1e", 1, 1, "\"\x1e\"", "0x1E -> quoted");
	is_astr("\x7f", 1, 1, "\"\x7f\"", "DEL -> quoted");
	is_astr("50%", 3, 1, "{3+}\r\n50%", "% -> literal");
	is_astr("a\"b", 3, 1, "{3+}\r\na\"b", "quote -> literal");
	is_astr("a\\b", 3, 1, "{3+}\r\na\\b", "backslash -> literal");
	is_astr("a\r\nb", 4, 1, "{4+}\r\na\r\nb", "CRLF -> literal");
	is_astr("caf\xc3\xa9", 5, 1, "{5+}\r\ncaf\xc3\xa9", "8-bit -> literal");
	is_astr("caf\xc3\xa9", 5, 0, "{5}\r\ncaf\xc3\xa9",
	    "litplus 0 -> {N}");

	memset(big, 'a', sizeof(big));
	big[1023] = '\0';
	is_astr(big, 1023, 1, big, "1023 bytes -> atom");
	big[1023] = 'a';
	want = malloc(2000);
	memcpy(want, "{1024+}\r\n", 9);
	memset(want + 9, 'a', 1024);
	want[9 + 1024] = '\0';
	is_astr(big, 1024, 1, want, "1024 bytes -> literal");
	big[0] = ' ';
	want[9] = ' ';
	is_astr(big, 1024, 1, want, "1024 bytes with space -> literal");
	snprintf(want, 2000, "\"%.1023s\"", big);
	is_astr(big, 1023, 1, want, "1023 bytes with space -> quoted");
	free(want);

	{
		struct prot *m = prot_new_membuf();
		const char *s;
		size_t len;

		dlist_print_astring(m, nul, 3, 0);
		s = prot_membuf(m, &len);
		ok(len == 8 && memcmp(s, "{3}\r\na\0b", 8) == 0,
		    "NUL -> literal, bytes intact");
		prot_free(m);
	}
}

static void
test_write_values(void)
{
	struct dlist *kl, *l, *d;
	char *s;

	kl = dlist_newkvlist(NULL, "MAILBOX");
	dlist_setatom(kl, "UNIQUEID", "abc");
	dlist_setnum32(kl, "LAST_UID", 4294967295u);
	dlist_setnum64(kl, "HIGHESTMODSEQ", UINT64_MAX);
	dlist_setdate(kl, "RECENTTIME", -1);
	dlist_setdate(kl, "LAST_APPENDDATE", 1795460141);
	dlist_sethex64(kl, "CID", 0xdeadbeefULL);
	dlist_setguid(kl, "GUID", "306F3706516E79913E70B4C9EF5549D464561446");
	dlist_setatom(kl, "ACL", "tuser\tlrswipkxtecdan\t");
	dlist_setatom(kl, "PARTITION", NULL);
	dlist_setnil(kl, "X");
	l = dlist_newlist(kl, "FLAGS");
	dlist_setflag(l, NULL, "\\Seen");
	dlist_setflag(l, NULL, "$Label1");
	dlist_newlist(kl, "EMPTY");
	dlist_newkvlist(kl, "EMPTYKV");
	dlist_setmap(kl, "VALUE", "hello\r\nworld", 12);
	s = pr(kl, 1, 1, NULL);
	is_str(s, "MAILBOX %(UNIQUEID abc LAST_UID 4294967295 "
	    "HIGHESTMODSEQ 18446744073709551615 "
	    "RECENTTIME 18446744073709551615 LAST_APPENDDATE 1795460141 "
	    "CID 00000000deadbeef GUID " G1 " "
	    "ACL \"tuser\tlrswipkxtecdan\t\" PARTITION NIL X NIL "
	    "FLAGS (\\Seen $Label1) EMPTY () EMPTYKV %() "
	    "VALUE {12+}\r\nhello\r\nworld)", "kvlist printed byte-exact");
	free(s);
	s = pr(kl, 0, 0, NULL);
	ok(strncmp(s, "%(UNIQUEID abc ", 15) == 0 &&
	    strstr(s, "VALUE {12}\r\nhello") != NULL,
	    "printkey 0 omits the key; litplus 0 writes {N}");
	free(s);
	s = dlist_tostring(kl, 1, 1, NULL);
	ok(s != NULL && strncmp(s, "MAILBOX %(", 10) == 0, "tostring");
	free(s);

	/* Accessors on the built tree. */
	{
		uint32_t u32;
		uint64_t u64;
		int64_t i64;
		const char *a;
		char g[41];
		struct dlist *x;

		ok(dlist_getnum32(kl, "LAST_UID", &u32) == 0 &&
		    u32 == 4294967295u, "getnum32");
		ok(dlist_getnum64(kl, "HIGHESTMODSEQ", &u64) == 0 &&
		    u64 == UINT64_MAX, "getnum64 max");
		ok(dlist_getdate(kl, "RECENTTIME", &i64) == 0 && i64 == -1,
		    "getdate negative round trip");
		ok(dlist_gethex64(kl, "CID", &u64) == 0 &&
		    u64 == 0xdeadbeefULL, "gethex64");
		ok(dlist_getguid(kl, "GUID", g) == 0 && strcmp(g, G1) == 0,
		    "getguid");
		ok(dlist_getatom(kl, "PARTITION", &a) == 0 && *a == '\0',
		    "NIL reads as empty atom");
		ok(dlist_getatom(kl, "NOPE", &a) == -1, "absent key");
		ok(dlist_getatom(kl, "uniqueid", &a) == -1,
		    "keys are case-sensitive");
		ok(dlist_getlist(kl, "FLAGS", &x) == 0 && x->kind == DL_LIST &&
		    x->nchild == 2, "getlist");
		ok(dlist_getnum64(kl, "UNIQUEID", &u64) == -1,
		    "num64 of a non-number fails");
	}
	dlist_free(kl);

	d = dlist_setatom(NULL, NULL, "NIL");
	s = pr(d, 0, 1, NULL);
	is_str(s, "\"NIL\"", "string NIL node printed quoted");
	free(s);
	dlist_free(d);
}

static void
test_write_file(void)
{
	char path[] = "/tmp/test_dlist.XXXXXX";
	struct dlist *l, *f;
	char *s;
	size_t len;
	int fd;

	fd = mkstemp(path);
	ok(fd >= 0 && write(fd, "hello", 5) == 5, "temp file");
	close(fd);
	l = dlist_newlist(NULL, "MESSAGE");
	f = dlist_setfile(l, NULL, "default", G1, 5, path);
	s = pr(l, 1, 1, &len);
	is_str(s, "MESSAGE (%{default " G1 " 5}\r\nhello)",
	    "file literal with bytes");
	free(s);
	s = dlist_tostring(l, 1, 1, NULL);
	is_str(s, "MESSAGE (%{default " G1 " 5})", "tostring: header only");
	free(s);
	f->file->size = 6;
	s = pr(l, 1, 1, NULL);
	is_str(s, "MESSAGE (NIL)", "size mismatch -> NIL");
	free(s);
	unlink(path);
	f->file->size = 5;
	s = pr(l, 1, 1, NULL);
	is_str(s, "MESSAGE (NIL)", "missing file -> NIL");
	free(s);
	dlist_free(l);
}

static void
test_parse(void)
{
	struct dlist *d, *c;
	char err[256];
	uint64_t u64;
	uint32_t u32;
	const char *a;
	size_t len;
	char g[41];

	roundtrip("USER alice", 1, 1, NULL);
	roundtrip("MAILBOXES (user.alice user.alice.Sent "
	    "\"user.alice.My Folder\")", 1, 1, NULL);
	roundtrip("ANNOTATION %(MBOXNAME user.alice ENTRY /comment "
	    "USERID \"\" VALUE {12+}\r\nhello\r\nworld)", 1, 1, NULL);
	roundtrip("SEEN %(UNIQUEID 5b0e9a3c LASTREAD 1676290100 SEENUIDS 1:2)",
	    1, 1, NULL);
	roundtrip("ENABLED ()", 1, 0, NULL);
	roundtrip("FORCE %()", 1, 0, NULL);
	roundtrip("X (\\Seen \\Expunged $Label1)", 1, 1, NULL);
	/* Liberal input, canonical output.  Blanks only: a line end
	 * outside a literal ends the value (see the bad() cases). */
	roundtrip("X (a  b\t\tc)", 1, 1, "X (a b c)");
	roundtrip("X %(  A 1\t B \"q\" )", 1, 1, "X %(A 1 B q)");
	roundtrip("X {3}\r\nabc", 1, 1, "X abc");
	roundtrip("X {3+}\nabc", 1, 1, "X abc");
	roundtrip("\"X\" \"a\\\"b\"", 1, 1, "X {3+}\r\na\"b");
	roundtrip("X \"\\NIL\"", 1, 1, "X \"NIL\"");
	roundtrip("X a%*{\\", 1, 1, "X {5+}\r\na%*{\\");
	roundtrip("X (a(b)c)", 1, 1, "X (a (b) c)");
	roundtrip("NIL", 0, 1, NULL);
	roundtrip("\"NIL\"", 0, 1, NULL);

	ok(dlist_parse_buf("X NIL\r\n", 7, 1, &d, err, sizeof(err)) == 0 &&
	    d->kind == DL_NIL && strcmp(d->key, "X") == 0, "NIL atom is NIL");
	dlist_free(d);
	ok(dlist_parse_buf("X \"NIL\"\r\n", 9, 1, &d, err, sizeof(err)) == 0 &&
	    d->kind == DL_STRING && strcmp(d->s, "NIL") == 0,
	    "quoted NIL is a string");
	dlist_free(d);
	ok(dlist_parse_buf("X \\Seen\r\n", 9, 1, &d, err, sizeof(err)) == 0 &&
	    d->kind == DL_FLAG && strcmp(d->s, "\\Seen") == 0,
	    "flag kind");
	dlist_free(d);
	ok(dlist_parse_buf("X {3}\r\na\0b\r\n", 12, 1, &d, err,
	    sizeof(err)) == 0 && d->kind == DL_STRING && d->len == 3 &&
	    memcmp(d->s, "a\0b", 4) == 0, "NUL inside a literal value kept");
	dlist_free(d);

	{
		static const char typed[] =
		    "K %(N 18446744073709551615 O 18446744073709551616 "
		    "P 4294967296 Q +1 R 12a S \"\" H1 1 H16 ffffffffffffffff "
		    "H17 10000000000000000 HX xyz G " G1 " G39 "
		    "306f3706516e79913e70b4c9ef5549d46456144 M {3}\r\na\0b "
		    "GU 306F3706516E79913E70B4C9EF5549D464561446)\r\n";

		ok(dlist_parse_buf(typed, sizeof(typed) - 1, 1, &d, err,
		    sizeof(err)) == 0, "typed kvlist parses");
	}
	if (d != NULL) {
		ok(dlist_getnum64(d, "N", &u64) == 0 && u64 == UINT64_MAX,
		    "num64 2^64-1");
		ok(dlist_getnum64(d, "O", &u64) == -1, "num64 overflow fails");
		ok(dlist_getnum32(d, "P", &u32) == 0 && u32 == 0,
		    "num32 truncates");
		ok(dlist_getnum64(d, "Q", &u64) == -1, "num64 '+1' fails");
		ok(dlist_getnum64(d, "R", &u64) == -1, "num64 '12a' fails");
		ok(dlist_getnum64(d, "S", &u64) == -1, "num64 empty fails");
		ok(dlist_gethex64(d, "H1", &u64) == 0 && u64 == 1, "hex64 1");
		ok(dlist_gethex64(d, "H16", &u64) == 0 && u64 == UINT64_MAX,
		    "hex64 16 digits");
		ok(dlist_gethex64(d, "H17", &u64) == -1, "hex64 17 digits");
		ok(dlist_gethex64(d, "HX", &u64) == -1, "hex64 non-hex");
		ok(dlist_getguid(d, "G", g) == 0, "guid");
		ok(dlist_getguid(d, "G39", g) == -1, "guid 39 digits fails");
		ok(dlist_getguid(d, "GU", g) == 0 && strcmp(g, G1) == 0,
		    "guid upper case normalised");
		ok(dlist_getatom(d, "M", &a) == -1, "getatom fails on NUL");
		ok(dlist_getmap(d, "M", &a, &len) == 0 && len == 3,
		    "getmap allows NUL");
		c = dlist_child(d, "S");
		ok(c != NULL && c->kind == DL_STRING && c->len == 0,
		    "empty quoted string");
		dlist_free(d);
	} else
		printf("#   error: %s\n", err);
}

/* The strings live inside the node: the key right after the value. */
static int
inside(const struct dlist *d)
{
	if (d->s[d->len] != '\0')
		return 0;
	return d->key == NULL || d->key == d->s + d->len + 1;
}

/*
 * Nodes hold their strings: keys and values of every length and kind,
 * the parse buffers reused from one value to the next and a big string
 * becoming its node, and a new key given to a built node.
 */
static void
test_nodes(void)
{
	static const char nested[] = "LONGKEYLONGKEY %(K1 v1 LONGERKEY2 "
	    "%(K3 ( a b ) K4 NIL) K5 \\Seen)\r\n";
	static const char tail[] = " v C {3}\r\nx\0y D \"q\")\r\n";
	struct dlist *d, *c, *l, *f;
	char err[256], *buf, *s;
	const char *a;
	size_t big = 200000, i, n, len;
	int good;

	roundtrip("X %(A %(BBBBBBBBBBBBBBBBBBBB x CCC (y zzzzzzzzzzzzzzzzzzzzz "
	    "\\Seen NIL \"\")) DDDD \\Flagged E NIL F {3+}\r\na\"b G ())",
	    1, 1, NULL);
	ok(dlist_parse_buf(nested, sizeof(nested) - 1, 1, &d, err,
	    sizeof(err)) == 0, "nested kvlists parse: %s", err);
	if (d != NULL) {
		c = dlist_child(d, "LONGERKEY2");
		ok(inside(d) && strcmp(d->key, "LONGKEYLONGKEY") == 0 &&
		    d->len == 0 && d->s[0] == '\0', "kvlist node: key inside");
		ok(c != NULL && c->kind == DL_KVLIST && c->nchild == 2 &&
		    inside(c), "inner kvlist and its key");
		ok(dlist_getatom(d, "K1", &a) == 0 && strcmp(a, "v1") == 0 &&
		    inside(dlist_child(d, "K1")), "string node: value, key");
		c = dlist_child(c, "K4");
		ok(c != NULL && c->kind == DL_NIL && strcmp(c->key, "K4") == 0 &&
		    inside(c) && strcmp(dlist_cstring(c), "") == 0,
		    "NIL node: key, empty string");
		c = dlist_child(d, "K5");
		ok(c != NULL && c->kind == DL_FLAG &&
		    strcmp(c->s, "\\Seen") == 0 && inside(c), "flag node");
		dlist_free(d);
	}

	/* A value and a key longer than the reused buffers, then short
	 * ones again: every string must come out as it went in. */
	n = 0;
	buf = malloc(2 * big + 200);
	n += (size_t)sprintf(buf + n, "X %%(A {%zu}\r\n", big);
	for (i = 0; i < big; i++)
		buf[n++] = (char)('a' + i % 26);
	n += (size_t)sprintf(buf + n, " B short {%zu+}\r\n", big);
	for (i = 0; i < big; i++)
		buf[n++] = (char)('A' + i % 26);
	memcpy(buf + n, tail, sizeof(tail) - 1);
	n += sizeof(tail) - 1;
	ok(dlist_parse_buf(buf, n, 1, &d, err, sizeof(err)) == 0,
	    "big value and big key parse: %s", err);
	if (d != NULL) {
		c = dlist_child(d, "A");
		good = c != NULL && c->len == big && inside(c);
		for (i = 0; good && i < big; i++)
			good = c->s[i] == (char)('a' + i % 26);
		ok(good, "big value kept byte for byte");
		ok(dlist_getatom(d, "B", &a) == 0 && strcmp(a, "short") == 0,
		    "short value after a big one");
		c = d->head->next->next;
		good = c != NULL && c->key != NULL &&
		    strlen(c->key) == big && inside(c) &&
		    strcmp(c->s, "v") == 0;
		for (i = 0; good && i < big; i++)
			good = c->key[i] == (char)('A' + i % 26);
		ok(good, "big key kept byte for byte");
		ok(dlist_getmap(d, "C", &a, &len) == 0 && len == 3 &&
		    memcmp(a, "x\0y", 4) == 0, "literal with NUL after them");
		ok(dlist_getatom(d, "D", &a) == 0 && strcmp(a, "q") == 0 &&
		    d->nchild == 5, "last value");
		s = pr(d, 1, 1, &len);
		ok(len == n - 2 && memcmp(s, buf, 11) == 0,
		    "big value reprinted at its length");
		free(s);
		dlist_free(d);
	}
	free(buf);

	/* Built nodes. */
	l = dlist_newkvlist(NULL, NULL);
	ok(l->key == NULL && inside(l), "built kvlist without key");
	c = dlist_setflag(l, "F", NULL);
	ok(c->kind == DL_FLAG && c->len == 0 && inside(c), "NULL flag is \"\"");
	c = dlist_setmap(l, "M", "a\0b", 3);
	ok(c->len == 3 && memcmp(c->s, "a\0b", 4) == 0 && inside(c) &&
	    strcmp(c->key, "M") == 0, "setmap keeps NUL, key after it");
	f = dlist_setfile(l, "FILE", "default", G1, 5, "/nonexistent");
	c = dlist_newlist(f, "NOT");
	ok(f->file != NULL && f->head == NULL && f->nchild == 0 &&
	    c->next == NULL && strcmp(f->file->part, "default") == 0,
	    "a file literal takes no child");
	dlist_free(c);
	l = dlist_setkey(l, "APPLY-THIS-LONGER-KEY");
	ok(strcmp(l->key, "APPLY-THIS-LONGER-KEY") == 0 && inside(l) &&
	    l->nchild == 3, "setkey: longer key, children kept");
	l = dlist_setkey(l, l->key + 6);
	ok(strcmp(l->key, "THIS-LONGER-KEY") == 0 && inside(l),
	    "setkey: part of its own key");
	s = dlist_tostring(l, 1, 1, NULL);
	is_str(s, "THIS-LONGER-KEY %(F  M {3+}\r\na\0b FILE "
	    "%{default " G1 " 5})", "setkey: prints with the new key");
	free(s);
	l = dlist_setkey(l, NULL);
	ok(l->key == NULL, "setkey: no key");
	dlist_free(l);
	d = dlist_setatom(NULL, "K", "value");
	d = dlist_setkey(d, "KEY");
	ok(strcmp(d->key, "KEY") == 0 && strcmp(d->s, "value") == 0 &&
	    inside(d), "setkey on a string");
	dlist_free(d);
	d = dlist_setfile(NULL, NULL, "p", G1, 1, "/x");
	d = dlist_setkey(d, "MESSAGE");
	ok(strcmp(d->key, "MESSAGE") == 0 && d->file->size == 1 &&
	    strcmp(d->file->path, "/x") == 0, "setkey on a file literal");
	dlist_free(d);
}

static void
test_malformed(void)
{
	char *deep;
	size_t i, n = 10000;

	bad("X {10+}\r\nabc", 12, 1, "truncated literal", "truncated literal");
	bad("X {99999999999}\r\n", 17, 1,
	    "literal length 99999999999 exceeds limit", "{99999999999}");
	bad("X {999999999999999999999999}\r\n", 30, 1, "exceeds limit",
	    "{2^80} literal length");
	bad("X {-5}\r\nabcde\r\n", 15, 1, "negative literal length", "{-5}");
	bad("X {}\r\n", 6, 1, "bad literal length", "{}");
	bad("X {5}abcde\r\n", 12, 1, "literal without CRLF",
	    "literal without CRLF");
	bad("X {5} \r\nabcde\r\n", 15, 1, "literal without CRLF",
	    "literal with space before CRLF");
	bad("X \"abc\r\n", 8, 1, "unterminated quoted string",
	    "quoted with CRLF");
	bad("X \"abc", 6, 1, "unterminated quoted string", "quoted at EOF");
	bad("X a\0b\r\n", 7, 1, "NUL byte in atom", "NUL in atom");
	bad("X \"a\0b\"\r\n", 9, 1, "NUL byte in quoted", "NUL in quoted");
	bad("X %(K\0Y 1)\r\n", 12, 1, "NUL byte", "NUL in key");
	bad("X %({3}\r\na\0b 1)\r\n", 18, 1, "NUL byte", "NUL in literal key");
	bad("X %a\r\n", 6, 1, "'%' not followed by '(' or '{'", "% junk");
	bad("X % (\r\n", 7, 1, "'%' not followed", "% space");
	bad("X (a b", 6, 1, "unterminated list", "unterminated list");
	bad("X (a b\r\n", 8, 1, "line end inside a list",
	    "line end in a list");
	bad("X (a  b\r\n\tc)\r\n", 14, 1, "line end inside a list",
	    "a list does not run on into the next line");
	bad("X %(A 1 B)\r\n", 12, 1, "missing value for key B",
	    "kvlist key without value");
	bad("X %(A 1", 7, 1, "unterminated kvlist", "unterminated kvlist");
	bad("X %(  A 1\r\n B \"q\" )\r\n", 21, 1,
	    "line end inside a kvlist", "line end in a kvlist");
	bad("X )\r\n", 5, 1, "unexpected ')'", "stray paren");
	bad("X\r\n", 3, 1, "missing value after key X", "key without value");
	bad("X a \r\n", 6, 1, "unexpected data after value",
	    "trailing space before CRLF");
	bad("X a\r\nmore", 9, 1, "unexpected data after line end",
	    "data after line");
	bad("X a", 3, 1, "missing line end", "no line end");
	bad("X %{default 306f 5}\r\nhello\r\n", 28, 1,
	    "bad GUID in file literal", "bad GUID in file literal");
	bad("X %{default " G1 " 4294967296}\r\n", 68, 1,
	    "file literal size 4294967296 exceeds limit", "file size 2^32");
	bad("X %{default " G1 " 5}\r\nhel", 61, 1, "truncated file literal",
	    "truncated file literal");
	bad("X %{default " G1 " 5}hello", 63, 1,
	    "file literal without CRLF", "file literal without CRLF");
	bad("", 0, 1, "unexpected end of input", "empty input");

	deep = malloc(n + 10);
	memcpy(deep, "X ", 2);
	for (i = 0; i < n; i++)
		deep[2 + i] = '(';
	memcpy(deep + 2 + n, "\r\n", 2);
	bad(deep, n + 4, 1, "nesting deeper than 64", "10000-deep lists");
	for (i = 0; i < n; i += 2) {
		deep[2 + i] = '%';
		deep[3 + i] = '(';
	}
	bad(deep, n + 4, 1, "nesting deeper than 64", "10000-deep kvlists");
	free(deep);

	/* Size limits. */
	{
		/* The item bound through dlist_parse_limit: DLIST_MAX_ITEMS
		 * itself (16 M) is too big to reach in a unit test. */
		size_t big = DLIST_MAX_ATOM + 1, nitems = 1000;
		struct dlist *d;
		struct prot *p;
		char *buf, err[128];

		buf = malloc(big + 16);
		memcpy(buf, "X ", 2);
		memset(buf + 2, 'a', big);
		memcpy(buf + 2 + big, "\r\n", 2);
		bad(buf, big + 4, 1, "atom longer than 131072 bytes",
		    "atom over DLIST_MAX_ATOM");
		buf[2] = '"';
		memset(buf + 3, 'a', big);
		memcpy(buf + 3 + big, "\"\r\n", 3);
		bad(buf, big + 6, 1, "quoted string longer than 131072",
		    "quoted over DLIST_MAX_ATOM");
		bad("X {67108865}\r\n", 15, 1,
		    "literal length 67108865 exceeds limit",
		    "literal one over DLIST_MAX_LITERAL");
		/* "X (a a ... a)": the list and its items, 1000 in all. */
		buf[2] = '(';
		for (i = 0; i < nitems - 1; i++)
			memcpy(buf + 3 + 2 * i, "a ", 2);
		memcpy(buf + 3 + 2 * (nitems - 1) - 1, ")\r\n", 3);
		p = prot_new_mem(buf, 3 + 2 * (nitems - 1) + 2);
		ok(dlist_parse_limit(p, 1, NULL, nitems, &d, err,
		    sizeof(err)) == 0 && d->nchild == nitems - 1,
		    "items up to the bound are accepted");
		dlist_free(d);
		prot_free(p);
		p = prot_new_mem(buf, 3 + 2 * (nitems - 1) + 2);
		ok(dlist_parse_limit(p, 1, NULL, nitems - 1, &d, err,
		    sizeof(err)) == -1 && d == NULL &&
		    strcmp(err, "more than 999 items") == 0,
		    "one item over the bound: %s", err);
		prot_free(p);
		free(buf);
	}

	/* 64 levels are allowed, 65 are not. */
	{
		char buf[300];
		struct dlist *d;
		char err[128];

		memcpy(buf, "X ", 2);
		memset(buf + 2, '(', 64);
		memset(buf + 66, ')', 64);
		memcpy(buf + 130, "\r\n", 2);
		ok(dlist_parse_buf(buf, 132, 1, &d, err, sizeof(err)) == 0,
		    "64 nested lists parse");
		dlist_free(d);
		memset(buf + 2, '(', 65);
		memset(buf + 67, ')', 65);
		memcpy(buf + 132, "\r\n", 2);
		bad(buf, 134, 1, "nesting deeper than 64", "65 nested lists");
	}
}

struct memsink {
	char	 *buf;
	size_t	 len, cap;
	int	 opens, writes, closes, lastok;
	size_t	 maxpiece;
	char	 part[64], guid[41];
	int	 refuse, failwrite;
};

static void *
ms_open(void *arg, const char *part, const char *guid, uint64_t size)
{
	struct memsink *m = arg;

	m->opens++;
	if (m->refuse)
		return NULL;
	snprintf(m->part, sizeof(m->part), "%s", part);
	snprintf(m->guid, sizeof(m->guid), "%s", guid);
	m->cap = (size_t)size + 1;
	m->buf = realloc(m->buf, m->cap);
	m->len = 0;
	return m;
}

static int
ms_write(void *arg, void *h, const void *buf, size_t n)
{
	struct memsink *m = arg;

	m->writes++;
	if (n > m->maxpiece)
		m->maxpiece = n;
	if (m->failwrite || m->len + n > m->cap)
		return -1;
	memcpy(m->buf + m->len, buf, n);
	m->len += n;
	return 0;
}

static int
ms_close(void *arg, void *h, int okk, char **pathp)
{
	struct memsink *m = arg;

	m->closes++;
	m->lastok = okk;
	if (!okk)
		return -1;
	if (pathp != NULL)
		*pathp = strdup("/staging/file");
	return 0;
}

static void
test_file_sink(void)
{
	struct memsink ms;
	struct dlist_sink sink = { ms_open, ms_write, ms_close, &ms };
	struct dlist *d = NULL, *f;
	struct prot *p;
	char err[256], hdr[128], *body, line[64];
	size_t size = 100000, i, hl, off;
	int fds[2], r;
	pid_t pid;

	memset(&ms, 0, sizeof(ms));
	body = malloc(size);
	for (i = 0; i < size; i++)
		body[i] = (char)(i * 7 + i / 251);
	hl = (size_t)snprintf(hdr, sizeof(hdr),
	    "MESSAGE (%%{default %s %zu}\r\n",
	    "306F3706516E79913E70B4C9EF5549D464561446", size);

	/* Through a pipe written in 7-byte pieces: many short reads. */
	ok(pipe(fds) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		for (off = 0; off < hl; off += 7)
			(void)!write(fds[1], hdr + off,
			    hl - off < 7 ? hl - off : 7);
		for (off = 0; off < size; off += 7)
			(void)!write(fds[1], body + off,
			    size - off < 7 ? size - off : 7);
		(void)!write(fds[1], ")\r\nNEXT\r\n", 9);
		_exit(0);
	}
	close(fds[1]);
	p = prot_new(fds[0], -1);
	prot_settimeout(p, 10);
	r = dlist_parse(p, 1, &sink, &d, err, sizeof(err));
	ok(r == 0 && dlist_parse_eol(p) == 0, "file literal parsed");
	if (r != 0)
		printf("#   error: %s\n", err);
	f = d != NULL ? d->head : NULL;
	ok(f != NULL && f->kind == DL_FILE && f->file->size == size &&
	    strcmp(f->file->guid, G1) == 0 &&
	    strcmp(f->file->part, "default") == 0,
	    "file node fields (guid lower-cased)");
	ok(ms.opens == 1 && ms.closes == 1 && ms.lastok == 1,
	    "sink opened and closed once");
	ok(strcmp(ms.guid, G1) == 0 && strcmp(ms.part, "default") == 0,
	    "sink got part and normalised guid");
	ok(ms.len == size && memcmp(ms.buf, body, size) == 0,
	    "all %zu bytes arrived intact", size);
	ok(ms.writes > 1 && ms.maxpiece <= 65536,
	    "bytes came in pieces (%d writes, max %zu)", ms.writes,
	    ms.maxpiece);
	ok(f != NULL && f->file->file_ok == 1 && f->file->path != NULL &&
	    strcmp(f->file->path, "/staging/file") == 0, "sink path recorded");
	ok(prot_readline(p, line, sizeof(line)) == 4 &&
	    strcmp(line, "NEXT") == 0, "stream in sync after the file");
	dlist_free(d);
	prot_free(p);
	close(fds[0]);
	waitpid(pid, NULL, 0);

	/* Refused and failing sinks: bytes still consumed. */
	{
		char *buf;
		size_t bl;

		bl = hl + size + 9;
		buf = malloc(bl);
		memcpy(buf, hdr, hl);
		memcpy(buf + hl, body, size);
		memcpy(buf + hl + size, ")\r\nNEXT\r\n", 9);

		ms.refuse = 1;
		p = prot_new_mem(buf, bl);
		r = dlist_parse(p, 1, &sink, &d, err, sizeof(err));
		ok(r == 0 && d->head->file->file_ok == 0 &&
		    d->head->file->path == NULL &&
		    dlist_parse_eol(p) == 0 &&
		    prot_readline(p, line, sizeof(line)) == 4,
		    "refusing sink: bytes dropped, stream in sync");
		dlist_free(d);
		prot_free(p);

		ms.refuse = 0;
		ms.failwrite = 1;
		ms.closes = 0;
		p = prot_new_mem(buf, bl);
		r = dlist_parse(p, 1, &sink, &d, err, sizeof(err));
		ok(r == 0 && d->head->file->file_ok == 0 && ms.closes == 1 &&
		    ms.lastok == 0 && dlist_parse_eol(p) == 0 &&
		    prot_readline(p, line, sizeof(line)) == 4,
		    "failing sink: close(ok=0), stream in sync");
		dlist_free(d);
		prot_free(p);

		p = prot_new_mem(buf, bl);
		r = dlist_parse(p, 1, NULL, &d, err, sizeof(err));
		ok(r == 0 && d->head->file->file_ok == 0 &&
		    dlist_parse_eol(p) == 0 &&
		    prot_readline(p, line, sizeof(line)) == 4,
		    "NULL sink: stream in sync");
		dlist_free(d);
		prot_free(p);
		free(buf);
	}
	free(ms.buf);
	free(body);
}

static void
test_eatline(void)
{
	static const char in[] =
	    "APPLY X %(A {5+}\r\nab\ncd B ) %{default nothex 12}\r\n"
	    "\n\n\nmore\r\n... C {3}\r\n)\r\n) junk\r\n"
	    "NEXT one\r\n"
	    "APPLY Y {bogus} {4}\r\n\r\n\r\n tail\r\n"
	    "LAST\n";
	struct prot *p;
	struct dlist *d;
	char line[64], err[256];

	p = prot_new_mem(in, sizeof(in) - 1);
	ok(prot_readline(p, line, 7) == -2, "readline overflow on long line");
	/* Restart: parse fails in the middle of the line, then recover. */
	prot_free(p);
	p = prot_new_mem(in, sizeof(in) - 1);
	prot_read_full(p, line, 6);
	ok(dlist_parse(p, 1, NULL, &d, err, sizeof(err)) == -1 &&
	    strcmp(err, "missing value for key B") == 0,
	    "bad line fails to parse (%s)", err);
	ok(dlist_eatline(p) == 0, "eatline");
	ok(prot_readline(p, line, sizeof(line)) == 8 &&
	    strcmp(line, "NEXT one") == 0,
	    "eatline drained the literal and file literal");
	ok(dlist_eatline(p) == 0 && prot_readline(p, line, sizeof(line)) == 4 &&
	    strcmp(line, "LAST") == 0, "eatline skips {N} with CRLFs inside");
	ok(dlist_eatline(p) == -1, "eatline at EOF");
	prot_free(p);

	/* A huge announced literal is drained, not allocated. */
	{
		static const char h[] = "X {99999999}\r\nabc";

		p = prot_new_mem(h, sizeof(h) - 1);
		ok(dlist_eatline(p) == -1, "eatline: huge literal hits EOF");
		prot_free(p);
	}
}

int
main(void)
{
	test_write_strings();
	test_write_values();
	test_write_file();
	test_parse();
	test_nodes();
	test_malformed();
	test_file_sink();
	test_eatline();
	return tap_done();
}
