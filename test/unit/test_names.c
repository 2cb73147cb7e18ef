/*
 * test_names: name checks and the userid <-> mailbox mapping, with the
 * hostile names a peer could send.
 */
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "tap.h"

static void
test_mboxname_valid(void)
{
	static const char *good[] = { "user.alice", "user.john^doe.Sent",
	    "example.org!user.x.Sent", "shared.news", "INBOX",
	    "DELETED.user.x.A.5F0A1B2C", "user.a.&AOQ-bc", "user.a.with space",
	    "user.a.100%", "user.a.\"q\"", "user.a.b\\c", "user.a.^^^",
	    "user.a.x^", "a", NULL };
	static const char *bad[] = { "", ".", "..", ".user.a", "user.a.",
	    "user..a", "user.a..b", "user/a", "user.a/../../etc",
	    "user.a\n", "user.\ta", "user.a\r", "user.\x7f", "user.\x80",
	    "user.caf\xc3\xa9", "!user.x", "user.a.^", "user.a.^^",
	    "user.^^.x", "example.org!", "a!.x", NULL };
	char buf[600];
	int i;

	for (i = 0; good[i] != NULL; i++)
		ok(mboxname_valid(good[i]), "valid mailbox '%s'", good[i]);
	for (i = 0; bad[i] != NULL; i++)
		ok(!mboxname_valid(bad[i]), "invalid mailbox #%d", i);
	ok(!mboxname_valid(NULL), "NULL mailbox");

	memcpy(buf, "user.", 5);
	memset(buf + 5, 'a', 485);
	buf[490] = '\0';
	ok(mboxname_valid(buf), "490 bytes is the limit");
	buf[490] = 'a';
	buf[491] = '\0';
	ok(!mboxname_valid(buf), "491 bytes is too long");
}

static void
test_userid_valid(void)
{
	static const char *good[] = { "alice", "john.doe", "x@example.org",
	    "a-b_c+d", "...", ".a", NULL };
	static const char *bad[] = { "", ".", "..", "a b", "a/b", "../x",
	    "a\tb", "a\n", "\x7f", "caf\xc3\xa9", NULL };
	char buf[300];
	int i;

	for (i = 0; good[i] != NULL; i++)
		ok(userid_valid(good[i]), "valid userid '%s'", good[i]);
	for (i = 0; bad[i] != NULL; i++)
		ok(!userid_valid(bad[i]), "invalid userid #%d", i);
	ok(!userid_valid(NULL), "NULL userid");
	memset(buf, 'u', 255);
	buf[255] = '\0';
	ok(userid_valid(buf), "255-byte userid");
	buf[255] = 'u';
	buf[256] = '\0';
	ok(!userid_valid(buf), "256-byte userid");
}

static void
test_partition_sieve(void)
{
	static const char *pgood[] = { "default", "p1", "Spool_2", "a-b",
	    NULL };
	static const char *pbad[] = { "", ".", "..", "a/b", "a.b", "a b",
	    "p\n", "caf\xc3\xa9", NULL };
	static const char *sgood[] = { "main", "my script.sieve", "a..b",
	    "x.bc", NULL };
	static const char *sbad[] = { "", ".", "..", ".hidden", "a/b",
	    "../etc", "a\nb", "\x01", "\xff", NULL };
	char buf[300];
	int i;

	for (i = 0; pgood[i] != NULL; i++)
		ok(partition_name_valid(pgood[i]), "partition '%s'", pgood[i]);
	for (i = 0; pbad[i] != NULL; i++)
		ok(!partition_name_valid(pbad[i]), "bad partition #%d", i);
	ok(!partition_name_valid(NULL), "NULL partition");
	memset(buf, 'p', 64);
	buf[64] = '\0';
	ok(partition_name_valid(buf), "64-byte partition name");
	buf[64] = 'p';
	buf[65] = '\0';
	ok(!partition_name_valid(buf), "65-byte partition name");

	for (i = 0; sgood[i] != NULL; i++)
		ok(sievename_valid(sgood[i]), "sieve '%s'", sgood[i]);
	for (i = 0; sbad[i] != NULL; i++)
		ok(!sievename_valid(sbad[i]), "bad sieve #%d", i);
	ok(!sievename_valid(NULL), "NULL sieve name");
	memset(buf, 's', 255);
	buf[255] = '\0';
	ok(sievename_valid(buf), "255-byte sieve name");
	buf[255] = 's';
	buf[256] = '\0';
	ok(!sievename_valid(buf), "256-byte sieve name");
}

static void
test_to_userid(void)
{
	static const struct { const char *name, *uid; } t[] = {
		{ "user.john^doe.Sent", "john.doe" },
		{ "user.john^doe", "john.doe" },
		{ "user.alice", "alice" },
		{ "example.org!user.x.Sent", "x@example.org" },
		{ "example.org!user.x", "x@example.org" },
		{ "DELETED.user.x.A.5F0A1B2C", "x" },
		{ "DELETED.user.x.5F0A1B2C", "x" },
		{ "example.org!DELETED.user.x.5F0A1B2C", "x@example.org" },
		{ "shared.news", NULL },
		{ "DELETED.shared.news.5F0A1B2C", NULL },
		{ "example.org!shared", NULL },
		{ "user", NULL },
		{ "users.x", NULL },
		{ "User.x", NULL },
		{ "user..x", NULL },
		{ "user.x/../y", NULL },
		{ "!user.x", NULL },
		{ "a/b!user.x", NULL },
		{ "user.a b", NULL },
		{ "user.^^.x", NULL },
		{ "DELETED.DELETED.user.x.1", NULL },
	};
	size_t i;
	char *u;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		u = mboxname_to_userid(t[i].name);
		is_str(u, t[i].uid, "owner of '%s'", t[i].name);
		free(u);
	}
	ok(mboxname_to_userid(NULL) == NULL, "owner of NULL");
}

static void
test_user_inbox(void)
{
	static const struct { const char *uid, *name; } t[] = {
		{ "john.doe", "user.john^doe" },
		{ "alice", "user.alice" },
		{ "x@example.org", "example.org!user.x" },
		{ "j.d@example.org", "example.org!user.j^d" },
		{ "", NULL },
		{ "a b", NULL },
		{ "a/b", NULL },
		{ "..", NULL },
		{ "a^b", NULL },
		{ "a!b", NULL },
		{ "@example.org", NULL },
		{ "x@", NULL },
		{ "x@a@b", NULL },
		{ "x@a..b", NULL },
		{ "x@.org", NULL },
	};
	char *n, *u;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		n = mboxname_user_inbox(t[i].uid);
		is_str(n, t[i].name, "INBOX of '%s'", t[i].uid);
		if (n != NULL) {
			u = mboxname_to_userid(n);
			is_str(u, t[i].uid, "round trip of '%s'", t[i].uid);
			free(u);
		}
		free(n);
	}
	ok(mboxname_user_inbox(NULL) == NULL, "INBOX of NULL");
}

static void
test_isdeleted(void)
{
	ok(mboxname_isdeleted("DELETED.user.x.5F0A1B2C"), "deleted");
	ok(mboxname_isdeleted("example.org!DELETED.user.x.5F0A1B2C"),
	    "deleted with domain");
	ok(mboxname_isdeleted("DELETED.shared.news.5F0A1B2C"),
	    "deleted shared");
	ok(!mboxname_isdeleted("user.x.DELETED.y"), "DELETED inside");
	ok(!mboxname_isdeleted("DELETEDx.user.x"), "prefix without dot");
	ok(!mboxname_isdeleted("deleted.user.x.1"), "case matters");
	ok(!mboxname_isdeleted("DELETED..user"), "invalid name");
	ok(!mboxname_isdeleted("user.x"), "plain");
	ok(!mboxname_isdeleted(NULL), "NULL");
}

int
main(void)
{
	test_mboxname_valid();
	test_userid_valid();
	test_partition_sieve();
	test_to_userid();
	test_user_inbox();
	test_isdeleted();
	return tap_done();
}
