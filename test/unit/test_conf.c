/*
 * test_conf: the imapd.conf reader against the behaviour of the real
 * Cyrus 3.6.1 (cyr_info -C FILE conf / conf-all), recorded below.
 */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "tap.h"

static struct conf *
parse(const char *text, char *err, size_t errlen)
{
	return conf_parse(text, strlen(text), "t.conf", err, errlen);
}

/* Parse text, return the value of key (copied to a static buffer). */
static const char *
val(const char *text, const char *key)
{
	static char buf[256];
	struct conf *c;
	char err[256];
	const char *v;

	if ((c = parse(text, err, sizeof(err))) == NULL)
		return NULL;
	v = conf_get(c, NULL, key, NULL);
	if (v != NULL)
		snprintf(buf, sizeof(buf), "%s", v);
	conf_free(c);
	return v ? buf : NULL;
}

/* 1 if text fails to parse and the message contains want. */
static int
fails(const char *text, const char *want)
{
	struct conf *c;
	char err[512] = "";

	if ((c = parse(text, err, sizeof(err))) != NULL) {
		conf_free(c);
		printf("# parsed, but should not: %s\n", text);
		return 0;
	}
	if (strstr(err, want) == NULL) {
		printf("# error '%s' lacks '%s'\n", err, want);
		return 0;
	}
	return 1;
}

static void
test_grammar(void)
{
	/* Everything here was checked against cyr_info -C FILE conf. */
	is_str(val("sync_host: h1\n", "sync_host"), "h1", "plain key");
	is_str(val("sync_host:h1\n", "sync_host"), "h1",
	    "no blank after colon");
	is_str(val("servername:    spaced value \t\r\n", "servername"),
	    "spaced value", "value trimmed both ends (CR too)");
	is_str(val("  sync_host: h1\n", "sync_host"), "h1",
	    "indented key is a plain key");
	is_str(val("Sync_Host: h1\n", "sync_host"), "h1",
	    "keys are case-folded");
	is_str(val("sync_host: h1\n", "SYNC_HOST"), "h1",
	    "lookup ignores case");
	is_str(val("sync_host: a # b\n", "sync_host"), "a # b",
	    "no trailing comments");
	is_str(val("# c\n   # indented comment\n\n  \nx: 1", "x"), "1",
	    "comments, blank lines, missing final newline");
	is_str(val("sync_host: h\tx\t\n", "sync_host"), "h\tx",
	    "inner tab kept");
	is_str(val("sync_host: a\\b\n", "sync_host"), "a\\b",
	    "inner backslash kept");
	is_str(val("partition-Foo: /x\n", "partition-foo"), "/x",
	    "partition key folded");
	is_str(val("-: x\n", "-"), "x", "key '-' is a key, as in Cyrus");

	/* Continuation: backslash-newline joins verbatim. */
	is_str(val("sync_host: h1 \\\n  continued\n", "sync_host"),
	    "h1   continued", "continuation keeps the blanks");
	is_str(val("sync_host: h1\\\nfoo\\\nbar\n", "sync_host"), "h1foobar",
	    "two continuations");
	is_str(val("sync_host: h1\\\n# comment\n", "sync_host"),
	    "h1# comment", "continued line is not a comment");
	is_str(val("# c \\\nsync_host: h2\nx: 1\n", "sync_host"), NULL,
	    "a comment swallows its continuation");
	is_str(val("sync_host: \\\nh2\n", "sync_host"), "h2",
	    "value starting on the continued line");
	is_str(val("sync_host: h1\\", "sync_host"), "h1\\",
	    "backslash at end of file stays");
	is_str(val("a: 1\nsync_host: h1\\\n", "sync_host"), NULL,
	    "backslash-newline at end of file drops the line (as Cyrus)");
	is_str(val("a: 1\nsync_host: h1\\\n", "a"), "1",
	    "... and keeps the rest");
	ok(fails("sync_host: h1\\ \n  continued\n", "t.conf:2:"),
	    "backslash-blank is no continuation");
	ok(fails("sync_host: h1\\\r\nfoo\n", "t.conf:2:"),
	    "backslash-CR is no continuation");
	ok(fails("sync_host: h1\n   continued\n", "t.conf:2: invalid option"),
	    "indented line is not a continuation (Cyrus 3.6.1)");
	ok(fails("sync_host: a\\\nb\nnocolon\n", "t.conf:3:"),
	    "physical line numbers after a continuation");

	/* Errors. */
	ok(fails("x: 1\nnocolon\n", "t.conf:2: invalid option name"),
	    "line without a colon");
	ok(fails("sync_host :h1\n", "t.conf:1: invalid option name"),
	    "blank before colon");
	ok(fails("foo.bar: x\n", "t.conf:1: invalid option name"),
	    "dot in key");
	ok(fails("x: 1\nsync_host:   \n", "t.conf:2: empty option value"),
	    "empty value");
	ok(fails(":x\n", "t.conf:1: empty option name"), "empty key");
	ok(fails("a: 1\nb: 2\nSync_Host: h1\nsync_host: h2\n",
	    "t.conf:4: option 'sync_host' given twice (first at t.conf:3)"),
	    "duplicate key reports both places");
	ok(fails("@foo: x\n", "t.conf:1: invalid directive"),
	    "unknown directive");
	ok(fails("@include:\n", "t.conf:1: empty option value"),
	    "empty include");
	{
		static const char nul[] = "a: b\0c\n";
		char err[256] = "";
		struct conf *c;

		c = conf_parse(nul, sizeof(nul) - 1, "t.conf", err,
		    sizeof(err));
		ok(c == NULL && strstr(err, "t.conf:1: NUL") != NULL,
		    "NUL byte is an error: %s", err);
		conf_free(c);
	}
	{
		char *big, err[256] = "";
		size_t n = CONF_MAX_LINE + 10;
		struct conf *c;

		big = malloc(n + 8);
		memcpy(big, "k: ", 3);
		memset(big + 3, 'a', n);
		c = conf_parse(big, n + 3, "t.conf", err, sizeof(err));
		ok(c == NULL && strstr(err, "longer than") != NULL,
		    "overlong line is an error: %s", err);
		conf_free(c);
		free(big);
	}
}

static int
sw(const char *value, int def)
{
	char text[128], err[256] = "";
	struct conf *c;
	int r;

	snprintf(text, sizeof(text), "allowplaintext: %s\n", value);
	if ((c = parse(text, err, sizeof(err))) == NULL)
		return -2;
	r = conf_getswitch(c, NULL, "allowplaintext", def, err, sizeof(err));
	if (r == -1 && strstr(err, "t.conf:1:") == NULL)
		r = -3;
	conf_free(c);
	return r;
}

static void
test_switch(void)
{
	/*
	 * Cyrus 3.6.1 (cyr_info -C FILE conf, allowplaintext and sync_log)
	 * accepted as on: 1 yes on t true y 10 tru truee yolo onx "1 0"
	 * "y es"; as off: 0 no off f false n 01 0x1 of offx nah fals n!;
	 * and refused (non-switch value): YES No ON Off T F True FALSE Y N 2
	 * -1 enabled oui o ox oN oF "o n".  Switches are case-sensitive and
	 * decided by their first one or two bytes.
	 */
	static const char *on[] = { "1", "yes", "on", "t", "true", "y",
	    "10", "tru", "truee", "yolo", "onx", "1 0", "y es", NULL };
	static const char *off[] = { "0", "no", "off", "f", "false", "n",
	    "01", "0x1", "of", "offx", "nah", "fals", "n!", NULL };
	static const char *bad[] = { "YES", "No", "ON", "Off", "T", "F",
	    "True", "FALSE", "Y", "N", "2", "-1", "enabled", "oui", "o",
	    "ox", "oN", "oF", "o n", NULL };
	struct conf *c;
	char err[64];
	int i;

	for (i = 0; on[i] != NULL; i++)
		is_int(sw(on[i], 0), 1, "switch '%s' is on", on[i]);
	for (i = 0; off[i] != NULL; i++)
		is_int(sw(off[i], 1), 0, "switch '%s' is off", off[i]);
	for (i = 0; bad[i] != NULL; i++)
		is_int(sw(bad[i], 0), -1, "switch '%s' is refused", bad[i]);
	c = conf_new();
	is_int(conf_getswitch(c, NULL, "allowplaintext", 1, err, sizeof(err)),
	    1, "unset switch gives default 1");
	is_int(conf_getswitch(c, NULL, "allowplaintext", 0, err, sizeof(err)),
	    0, "unset switch gives default 0");
	conf_free(c);
}

static int
dur(const char *value, char unit, int64_t *out)
{
	char text[128], err[256] = "";
	struct conf *c;
	int r;

	snprintf(text, sizeof(text), "sync_timeout: %s\n", value);
	if ((c = parse(text, err, sizeof(err))) == NULL)
		return -2;
	*out = -12345;
	r = conf_getduration(c, NULL, "sync_timeout", "30m", unit, out, err,
	    sizeof(err));
	conf_free(c);
	return r;
}

static void
test_duration(void)
{
	/*
	 * Cyrus 3.6.1 accepted: 30 1h30m 20m 90s 1d 1h 1m30 -5 -1h -1h30m 0
	 * 0s 1h1h 1s1m 00010 99999999999999 and "-"; it refused (unparsable
	 * duration): 1x 1.5h h "5 m" 5M 2H 1m-30s +5 "1h 30m" 1w -- 1dh.
	 */
	static const struct { const char *v; char unit; int64_t want; } g[] = {
		{ "30", 's', 30 }, { "30", 'm', 1800 }, { "1h30m", 's', 5400 },
		{ "20m", 's', 1200 }, { "90s", 'm', 90 }, { "1d", 's', 86400 },
		{ "1h", 's', 3600 }, { "1m30", 's', 90 }, { "1m30", 'm', 1860 },
		{ "-5", 's', -5 }, { "-1h", 's', -3600 },
		{ "-1h30m", 's', -5400 }, { "0", 's', 0 }, { "0s", 'm', 0 },
		{ "1h1h", 's', 7200 }, { "1s1m", 's', 61 },
		{ "00010", 's', 10 }, { "-", 's', 0 },
		{ "99999999999999", 's', 99999999999999LL },
	};
	static const char *bad[] = { "1x", "1.5h", "h", "5 m", "5M", "2H",
	    "1m-30s", "+5", "1h 30m", "1w", "--", "1dh",
	    "9999999999999999999", "999999999999999999d", NULL };
	struct conf *c;
	char err[256];
	int64_t v;
	size_t i;

	for (i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		int r = dur(g[i].v, g[i].unit, &v);

		ok(r == 0 && v == g[i].want, "duration '%s' (unit %c) = %lld",
		    g[i].v, g[i].unit, (long long)g[i].want);
		if (r != 0 || v != g[i].want)
			printf("#   got r=%d v=%lld\n", r, (long long)v);
	}
	for (i = 0; bad[i] != NULL; i++)
		is_int(dur(bad[i], 's', &v), -1, "duration '%s' refused",
		    bad[i]);
	c = conf_new();
	ok(conf_getduration(c, NULL, "sync_timeout", "30m", 's', &v, err,
	    sizeof(err)) == 0 && v == 1800, "unset duration: default 30m");
	ok(conf_getduration(c, NULL, "sync_repeat_interval", "1", 's', &v,
	    err, sizeof(err)) == 0 && v == 1, "default in default unit");
	ok(conf_getduration(c, NULL, "x", "junk", 's', &v, err,
	    sizeof(err)) == -1, "bad default is reported");
	conf_set(c, "failedloginpause", "2x");
	ok(conf_getduration(c, NULL, "failedloginpause", "3s", 's', &v, err,
	    sizeof(err)) == -1 && strstr(err, "failedloginpause") != NULL,
	    "error names the key: %s", err);
	conf_free(c);
}

static void
test_int(void)
{
	/*
	 * Cyrus 3.6.1 (maxmessagesize): 5 +5 -5 accepted, 0x10 = 16,
	 * 010 = 8, 99999999999999999999 saturates to INT64_MAX; 5k, abc,
	 * "5 6" are non-integer values.
	 */
	static const struct { const char *v; int64_t want; } g[] = {
		{ "5", 5 }, { "+5", 5 }, { "-5", -5 }, { "0x10", 16 },
		{ "010", 8 }, { "2147483648", 2147483648LL },
		{ "99999999999999999999", INT64_MAX },
	};
	static const char *bad[] = { "5k", "abc", "5 6", "0x", NULL };
	char text[128], err[256];
	struct conf *c;
	int64_t v;
	size_t i;

	for (i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		snprintf(text, sizeof(text), "maxmessagesize: %s\n", g[i].v);
		c = parse(text, err, sizeof(err));
		ok(c != NULL && conf_getint(c, NULL, "maxmessagesize", 0, &v,
		    err, sizeof(err)) == 0 && v == g[i].want,
		    "int '%s' = %lld", g[i].v, (long long)g[i].want);
		conf_free(c);
	}
	for (i = 0; bad[i] != NULL; i++) {
		snprintf(text, sizeof(text), "maxmessagesize: %s\n", bad[i]);
		c = parse(text, err, sizeof(err));
		ok(c != NULL && conf_getint(c, NULL, "maxmessagesize", 0, &v,
		    err, sizeof(err)) == -1 && strstr(err, "t.conf:1:"),
		    "int '%s' refused", bad[i]);
		conf_free(c);
	}
	c = conf_new();
	ok(conf_getint(c, NULL, "maxmessagesize", 42, &v, err,
	    sizeof(err)) == 0 && v == 42, "unset int gives default");
	conf_free(c);
}

static void
test_lookup(void)
{
	struct conf *c;
	char err[256];

	c = parse("sync_host: plain\nrepl_sync_host: chan\n"
	    "syncserver_tls_server_cert: /s.pem\ntls_server_cert: /g.pem\n"
	    "partition-default: /var/spool/cyrus\n"
	    "partition-other: /srv/other\n", err, sizeof(err));
	ok(c != NULL, "parse lookup config");
	is_str(conf_get(c, "repl", "sync_host", NULL), "chan",
	    "prefixed key preferred");
	is_str(conf_get(c, "REPL", "sync_host", NULL), "chan",
	    "prefix is case-insensitive");
	is_str(conf_get(c, "other", "sync_host", NULL), "plain",
	    "fallback to plain key");
	is_str(conf_get(c, NULL, "sync_host", NULL), "plain", "no prefix");
	is_str(conf_get(c, "", "sync_host", NULL), "plain", "empty prefix");
	is_str(conf_get(c, "repl", "sync_port", "csync"), "csync",
	    "default when unset");
	is_str(conf_get(c, "syncserver", "tls_server_cert", NULL), "/s.pem",
	    "service prefix");
	is_str(conf_partition_path(c, "default"), "/var/spool/cyrus",
	    "partition path");
	is_str(conf_partition_path(c, "other"), "/srv/other",
	    "second partition");
	is_str(conf_partition_path(c, "missing"), NULL, "unknown partition");
	is_str(conf_partition_path(c, "../default"), NULL,
	    "hostile partition name");
	is_str(conf_partition_path(c, ""), NULL, "empty partition name");
	is_str(conf_configdir(c), "/var/lib/cyrus", "configdir default");
	conf_set(c, "configdirectory", "/tmp/x");
	is_str(conf_configdir(c), "/tmp/x", "conf_set adds");
	conf_set(c, "Sync_Host", "over");
	is_str(conf_get(c, NULL, "sync_host", NULL), "over",
	    "conf_set replaces");
	conf_free(c);
	conf_free(NULL);
	is_str(conf_get(NULL, NULL, "x", "d"), "d", "NULL conf: default");
}

struct order {
	char	buf[512];
};

static void
collect(const char *key, const char *value, const char *file, int line,
    void *arg)
{
	struct order *o = arg;
	char item[128];

	snprintf(item, sizeof(item), "%s=%s@%s:%d;", key, value,
	    file ? strrchr(file, '/') ? strrchr(file, '/') + 1 : file : "-",
	    line);
	strlcat(o->buf, item, sizeof(o->buf));
}

static void
writefile(const char *dir, const char *name, const char *text)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL)
		return;
	fputs(text, f);
	fclose(f);
}

static void
test_include(void)
{
	char dir[] = "/tmp/test_conf.XXXXXX", path[1024], err[512];
	struct order o = { "" };
	struct conf *c;

	if (mkdtemp(dir) == NULL) {
		ok(0, "mkdtemp");
		return;
	}
	snprintf(path, sizeof(path), "%s/sub", dir);
	mkdir(path, 0700);
	writefile(dir, "main.conf", "a: 1\n@include: sub/inc.conf\nd: 4\n");
	writefile(dir, "sub/inc.conf", "b: 2\n@Include:   inc2.conf  \n");
	writefile(dir, "sub/inc2.conf", "c: 3\n");
	writefile(dir, "loop.conf", "a: 1\n@include: loop2.conf\n");
	writefile(dir, "loop2.conf", "b: 1\n@include: loop.conf\n");
	writefile(dir, "twice.conf", "@include: sub/inc2.conf\n"
	    "@include: ./sub/inc2.conf\n");
	writefile(dir, "dup.conf", "c: 9\n@include: sub/inc2.conf\n");
	writefile(dir, "missing.conf", "a: 1\n@include: nope.conf\n");
	writefile(dir, "deep.conf", "@include: deep.conf\n");
	writefile(dir, "fifo.conf", "@include: /dev/null\n");

	snprintf(path, sizeof(path), "%s/main.conf", dir);
	c = conf_load(path, err, sizeof(err));
	ok(c != NULL, "include chain loads: %s", c ? "" : err);
	conf_foreach(c, collect, &o);
	is_str(o.buf, "a=1@main.conf:1;b=2@inc.conf:1;c=3@inc2.conf:1;"
	    "d=4@main.conf:3;", "foreach in file order, includes inline, "
	    "relative to the including file");
	conf_free(c);

	snprintf(path, sizeof(path), "%s/loop.conf", dir);
	ok(conf_load(path, err, sizeof(err)) == NULL &&
	    strstr(err, "loop2.conf:2: @include:") &&
	    strstr(err, "included twice"), "include loop: %s", err);
	snprintf(path, sizeof(path), "%s/deep.conf", dir);
	ok(conf_load(path, err, sizeof(err)) == NULL &&
	    strstr(err, "included twice"), "self include: %s", err);
	snprintf(path, sizeof(path), "%s/twice.conf", dir);
	ok(conf_load(path, err, sizeof(err)) == NULL &&
	    strstr(err, "twice.conf:2:") && strstr(err, "included twice"),
	    "same file twice by two spellings: %s", err);
	snprintf(path, sizeof(path), "%s/dup.conf", dir);
	ok(conf_load(path, err, sizeof(err)) == NULL &&
	    strstr(err, "inc2.conf:1: option 'c' given twice (first at ") &&
	    strstr(err, "dup.conf:1)"), "duplicate across files: %s", err);
	snprintf(path, sizeof(path), "%s/missing.conf", dir);
	ok(conf_load(path, err, sizeof(err)) == NULL &&
	    strstr(err, "missing.conf:2: @include:") &&
	    strstr(err, "nope.conf"), "missing include: %s", err);
	snprintf(path, sizeof(path), "%s/fifo.conf", dir);
	ok(conf_load(path, err, sizeof(err)) == NULL &&
	    strstr(err, "not a regular file"), "device include: %s", err);
	snprintf(path, sizeof(path), "%s/absent.conf", dir);
	ok(conf_load(path, err, sizeof(err)) == NULL &&
	    strstr(err, "absent.conf"), "missing file: %s", err);

	/* Depth bound without a loop: a chain of distinct files. */
	{
		char name[64], text[128];
		int i;

		for (i = 0; i <= CONF_MAX_INCLUDE_DEPTH + 1; i++) {
			snprintf(name, sizeof(name), "d%d.conf", i);
			snprintf(text, sizeof(text), "k%d: v\n@include: "
			    "d%d.conf\n", i, i + 1);
			writefile(dir, name, text);
		}
		snprintf(path, sizeof(path), "%s/d0.conf", dir);
		ok(conf_load(path, err, sizeof(err)) == NULL &&
		    strstr(err, "nested too deeply"), "depth bound: %s", err);
		snprintf(path, sizeof(path), "%s/d%d.conf", dir,
		    CONF_MAX_INCLUDE_DEPTH + 2);
		writefile(dir, strrchr(path, '/') + 1, "end: 1\n");
		snprintf(path, sizeof(path), "%s/d3.conf", dir);
		c = conf_load(path, err, sizeof(err));
		ok(c != NULL && conf_get(c, NULL, "end", NULL) != NULL,
		    "shorter chain loads: %s", c ? "" : err);
		conf_free(c);
	}

	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	if (system(path) != 0)
		printf("# cleanup of %s failed\n", dir);
}

static void
test_known(void)
{
	static const char *known[] = { "configdirectory", "partition-default",
	    "admins", "allowplaintext", "sasl_pwcheck_method",
	    "sasl_mech_list", "tls_server_cert", "tls_server_key",
	    "tls_client_ca_file", "sync_host", "sync_port", "sync_authname",
	    "sync_password", "sync_realm", "sync_timeout",
	    "sync_repeat_interval", "sync_shutdown_file", "sync_log",
	    "sync_log_channels", "sync_log_chain", "maxmessagesize",
	    "servername", "failedloginpause", "virtdomains", "defaultdomain",
	    "deletedprefix", "sieve_folder", "repl_sync_host",
	    "syncserver_tls_server_cert", "my_chan_sync_port",
	    "mail1_mechs", "mail1_client_cert", "SYNC_HOST", NULL };
	static const char *unknown[] = { "sync_compress", "sync_log_file",
	    "nosuchoption", "partition-", "partition-a/b", "sasl_", "_",
	    "mechs", "x_", "_sync_host", "", NULL };
	int i;

	for (i = 0; known[i] != NULL; i++)
		ok(conf_known_key(known[i]), "known: %s", known[i]);
	for (i = 0; unknown[i] != NULL; i++)
		ok(!conf_known_key(unknown[i]), "unknown: '%s'", unknown[i]);
}

int
main(void)
{
	test_grammar();
	test_switch();
	test_duration();
	test_int();
	test_lookup();
	test_include();
	test_known();
	return tap_done();
}
