/*
 * sync-store: the administrator's tool for a syncpipe store.  Every
 * changing verb runs in one store transaction with sync logging on, so a
 * store changed with it replicates like one changed by a mail server.
 */
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "conf.h"
#include "store.h"
#include "sync-store.h"

/* Options a verb may take. */
#define O_PARTITION	0x01
#define O_SPECIALUSE	0x02
#define O_FLAGS		0x04
#define O_DATE		0x08
#define O_USER		0x10
#define O_GRACE		0x20
#define O_MAILDIR	0x40

static const struct optdef {
	const char	*name;
	unsigned	 bit;
	size_t		 off;
} optdefs[] = {
	{ "--partition", O_PARTITION, offsetof(struct ss, partition) },
	{ "--specialuse", O_SPECIALUSE, offsetof(struct ss, specialuse) },
	{ "--flags", O_FLAGS, offsetof(struct ss, flags) },
	{ "--date", O_DATE, offsetof(struct ss, date) },
	{ "--user", O_USER, offsetof(struct ss, user) },
	{ "--grace", O_GRACE, offsetof(struct ss, grace) },
	{ "--maildir", O_MAILDIR, offsetof(struct ss, maildir) },
};

static const struct verbdef {
	const char	*name;
	int		(*fn)(struct ss *);
	int		 minargs, maxargs;
	unsigned	 opts;
	const char	*synopsis;
} verbs[] = {
	{ "create", verb_create, 1, 1, O_PARTITION | O_SPECIALUSE,
	    "create mailbox [--partition name] [--specialuse use]" },
	{ "deliver", verb_deliver, 1, SS_MAXARGS, O_FLAGS | O_DATE,
	    "deliver mailbox [--flags flag,...] [--date epoch] [file ...]" },
	{ "flag", verb_flag, 3, SS_MAXARGS, 0,
	    "flag | unflag mailbox uidset flag ..." },
	{ "unflag", verb_unflag, 3, SS_MAXARGS, 0,
	    "flag | unflag mailbox uidset flag ..." },
	{ "expunge", verb_expunge, 2, 2, 0, "expunge mailbox uidset" },
	{ "rename", verb_rename, 2, 2, O_PARTITION,
	    "rename oldname newname [--partition name]" },
	{ "delete", verb_delete, 1, 1, 0, "delete mailbox" },
	{ "seen", verb_seen, 3, 3, 0, "seen user mailbox seenuids" },
	{ "sub", verb_sub, 2, 2, 0, "sub | unsub user mailbox" },
	{ "unsub", verb_unsub, 2, 2, 0, "sub | unsub user mailbox" },
	{ "quota", verb_quota, 2, 3, 0,
	    "quota root storage-kb [messages] | none" },
	{ "annotate", verb_annotate, 2, 3, O_USER,
	    "annotate mailbox entry [--user user] [value]" },
	{ "sieve", verb_sieve, 2, 3, 0,
	    "sieve put | activate | delete user name | deactivate user" },
	{ "acl", verb_acl, 3, 3, 0, "acl mailbox identifier rights" },
	{ "deluser", verb_deluser, 1, 1, 0, "deluser user" },
	{ "list", verb_list, 0, 1, 0, "list [user]" },
	{ "show", verb_show, 1, 1, 0, "show mailbox" },
	{ "dump", verb_dump, 0, 1, 0, "dump [user]" },
	{ "verify", verb_verify, 0, 0, 0, "verify" },
	{ "checkconf", NULL, 0, 0, 0, "checkconf" },
	{ "gc", verb_gc, 0, 0, O_GRACE, "gc [--grace seconds]" },
	{ "export", verb_export, 0, 1, O_MAILDIR,
	    "export --maildir dir [user]" },
};

#define NVERBS	(sizeof(verbs) / sizeof(verbs[0]))

/*
 * checkconf: the keys of the configuration (includes followed) that
 * neither Cyrus 3.6 nor syncpipe knows, a line each with file and line.
 * Exit 0 when there is none, 1 otherwise.  The store is not opened.
 */
static void
checkconf_key(const char *key, const char *value, const char *file,
    int line, void *arg)
{
	int *unknown = arg;

	(void)value;
	if (conf_known_key(key))
		return;
	printf("%s:%d: unknown key %s\n", file, line, key);
	(*unknown)++;
}

static int
checkconf(struct ss *ss)
{
	int unknown = 0;

	conf_foreach(ss->conf, checkconf_key, &unknown);
	if (fflush(stdout) != 0 || ferror(stdout))
		return SS_FAIL;
	return unknown > 0 ? SS_FAIL : SS_OK;
}

static void
usage(void)
{
	static const char *seen[NVERBS];
	size_t i, j, n = 0;
	const char *pfx = "usage:";

	/* One line per distinct synopsis, as in the manual. */
	for (i = 0; i < NVERBS; i++) {
		for (j = 0; j < n; j++)
			if (strcmp(seen[j], verbs[i].synopsis) == 0)
				break;
		if (j < n)
			continue;
		seen[n++] = verbs[i].synopsis;
		fprintf(stderr, "%s sync-store [-C config] %s\n", pfx,
		    verbs[i].synopsis);
		pfx = "      ";
	}
}

static void
verb_usage(const struct verbdef *v)
{
	fprintf(stderr, "usage: sync-store [-C config] %s\n", v->synopsis);
}

/*
 * Verb arguments: positionals with "--name value" or "--name=value"
 * options anywhere among them; "--" ends the options so that a value may
 * start with a dash.
 */
static int
parse_verb_args(struct ss *ss, const struct verbdef *v, int argc,
    char **argv)
{
	int i, nomore = 0;
	size_t k, len;
	const char *a, *val;

	for (i = 0; i < argc; i++) {
		a = argv[i];
		if (nomore || strncmp(a, "--", 2) != 0) {
			if (ss->nargs >= v->maxargs)
				return -1;
			ss->args[ss->nargs++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			nomore = 1;
			continue;
		}
		for (k = 0; k < sizeof(optdefs) / sizeof(optdefs[0]); k++) {
			len = strlen(optdefs[k].name);
			if (strncmp(a, optdefs[k].name, len) == 0 &&
			    (a[len] == '\0' || a[len] == '='))
				break;
		}
		if (k == sizeof(optdefs) / sizeof(optdefs[0]) ||
		    (v->opts & optdefs[k].bit) == 0)
			return -1;
		len = strlen(optdefs[k].name);
		if (a[len] == '=')
			val = a + len + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return -1;
		*(const char **)((char *)ss + optdefs[k].off) = val;
	}
	if (ss->nargs < v->minargs)
		return -1;
	return 0;
}

int
main(int argc, char *argv[])
{
	struct ss ss;
	const struct verbdef *v = NULL;
	char err[512];
	size_t i;
	int ch, rc;

	memset(&ss, 0, sizeof(ss));
	/*
	 * Keep freed memory instead of handing it back at once: SQLite
	 * frees a statement's scratch memory on every reset, and a heap
	 * trimmed and regrown per message costs a TLB flush on every CPU
	 * each time.
	 */
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	while ((ch = getopt(argc, argv, "+C:")) != -1) {
		switch (ch) {
		case 'C':
			ss.confpath = optarg;
			break;
		default:
			usage();
			return SS_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage();
		return SS_USAGE;
	}
	for (i = 0; i < NVERBS; i++)
		if (strcmp(argv[0], verbs[i].name) == 0)
			v = &verbs[i];
	if (v == NULL) {
		usage();
		return SS_USAGE;
	}
	ss.verb = v->name;
	if (parse_verb_args(&ss, v, argc - 1, argv + 1) == -1) {
		verb_usage(v);
		return SS_USAGE;
	}
	if (v->fn == verb_export && ss.maildir == NULL) {
		verb_usage(v);
		return SS_USAGE;
	}

	if (ss.confpath == NULL)
		ss.confpath = getenv("SYNCPIPE_CONF");
	if (ss.confpath == NULL || *ss.confpath == '\0')
		ss.confpath = CONF_DEFAULT_PATH;
	if ((ss.conf = conf_load(ss.confpath, err, sizeof(err))) == NULL) {
		fprintf(stderr, "sync-store: %s: %s\n", ss.confpath, err);
		return SS_CONFIG;
	}
	if (v->fn == NULL) {
		rc = checkconf(&ss);
		conf_free(ss.conf);
		return rc;
	}
	if ((ss.store = store_open(ss.conf, err, sizeof(err))) == NULL) {
		ss_err(&ss, "open store", "%s", err);
		rc = (strstr(err, "locked") != NULL ||
		    strstr(err, "busy") != NULL) ? SS_TEMPFAIL : SS_FAIL;
		conf_free(ss.conf);
		return rc;
	}

	rc = v->fn(&ss);

	store_close(ss.store);
	conf_free(ss.conf);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "sync-store: %s: stdout: %s\n", ss.verb,
		    strerror(errno));
		rc = SS_FAIL;
	}
	switch (rc) {
	case SS_OK:
	case SS_FAIL:
	case SS_USAGE:
	case SS_TEMPFAIL:
	case SS_CONFIG:
		return rc;
	default:
		return SS_FAIL;
	}
}

/* The synopsis line of the running verb, for errors found by the verb. */
int
ss_usage(const struct ss *ss)
{
	size_t i;

	for (i = 0; i < NVERBS; i++)
		if (strcmp(verbs[i].name, ss->verb) == 0)
			verb_usage(&verbs[i]);
	return SS_USAGE;
}

/* "sync-store: <verb>: <what>: <why>" on stderr. */
void
ss_err(const struct ss *ss, const char *what, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "sync-store: %s: %s: ", ss->verb, what);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * Report a store error; a busy database is a temporary failure that the
 * caller may retry.
 */
int
ss_storefail(const struct ss *ss, const char *what)
{
	const char *e = store_error(ss->store);

	if (e == NULL)
		e = "store error";
	ss_err(ss, what, "%s", e);
	if (strstr(e, "locked") != NULL || strstr(e, "busy") != NULL)
		return SS_TEMPFAIL;
	return SS_FAIL;
}

int
ss_begin(struct ss *ss)
{
	store_set_synclog(ss->store, 1);
	if (store_begin(ss->store) != 0)
		return ss_storefail(ss, "begin");
	return SS_OK;
}

int
ss_commit(struct ss *ss, const char *what)
{
	if (store_commit(ss->store) != 0) {
		int rc = ss_storefail(ss, what);

		store_rollback(ss->store);
		return rc;
	}
	return SS_OK;
}

void
ss_rollback(struct ss *ss)
{
	store_rollback(ss->store);
}

static int
parse_seqnum(const char **sp, int allowstar, uint32_t *out)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (*s == '*') {
		if (!allowstar)
			return -1;
		*out = UINT32_MAX;
		*sp = s + 1;
		return 0;
	}
	if (!isdigit((unsigned char)*s) || *s == '0')
		return -1;
	while (isdigit((unsigned char)*s)) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v >= UINT32_MAX)
			return -1;
		s++;
	}
	*out = (uint32_t)v;
	*sp = s;
	return 0;
}

/*
 * An IMAP sequence set of UIDs: "1", "1:5", "1,3,7:9", "4:*".  Ranges may
 * be given backwards.  Returns 0 or -1 for any other spelling.
 */
int
ss_uidset_parse(const char *s, int allowstar, struct uidset *set)
{
	struct uidrange *r;
	uint32_t a, b, t;

	set->r = NULL;
	set->n = 0;
	if (*s == '\0')
		return -1;
	for (;;) {
		if (parse_seqnum(&s, allowstar, &a) == -1)
			goto bad;
		b = a;
		if (*s == ':') {
			s++;
			if (parse_seqnum(&s, allowstar, &b) == -1)
				goto bad;
		}
		if (a > b) {
			t = a;
			a = b;
			b = t;
		}
		r = reallocarray(set->r, set->n + 1, sizeof(*r));
		if (r == NULL)
			goto bad;
		set->r = r;
		set->r[set->n].lo = a;
		set->r[set->n].hi = b;
		set->n++;
		if (*s == '\0')
			return 0;
		if (*s++ != ',')
			goto bad;
	}
bad:
	ss_uidset_free(set);
	return -1;
}

/* '*' stands for last, the mailbox's highest UID. */
int
ss_uidset_has(const struct uidset *set, uint32_t uid, uint32_t last)
{
	size_t i;
	uint32_t lo, hi, t;

	for (i = 0; i < set->n; i++) {
		lo = set->r[i].lo == UINT32_MAX ? last : set->r[i].lo;
		hi = set->r[i].hi == UINT32_MAX ? last : set->r[i].hi;
		if (lo > hi) {
			t = lo;
			lo = hi;
			hi = t;
		}
		if (uid >= lo && uid <= hi)
			return 1;
	}
	return 0;
}

void
ss_uidset_free(struct uidset *set)
{
	free(set->r);
	set->r = NULL;
	set->n = 0;
}

int
ss_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

int
ss_parse_i64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (*s != '-' && !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

void
ss_sha1_hex(const void *buf, size_t len, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	EVP_Digest(buf, len, md, &mdlen, EVP_sha1(), NULL);
	for (i = 0; i < mdlen && i < 20; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[40] = '\0';
}

/* Read fd to its end, refusing more than max bytes. */
int
ss_read_fd(int fd, size_t max, char **bufp, size_t *lenp)
{
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	ssize_t n;

	for (;;) {
		if (len == cap) {
			if (cap >= max + 1) {
				free(buf);
				errno = EFBIG;
				return -1;
			}
			cap = cap == 0 ? 65536 : cap * 2;
			if (cap > max + 1)
				cap = max + 1;
			if ((nb = realloc(buf, cap + 1)) == NULL) {
				free(buf);
				return -1;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			free(buf);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max) {
		free(buf);
		errno = EFBIG;
		return -1;
	}
	if (buf == NULL && (buf = malloc(1)) == NULL)
		return -1;
	buf[len] = '\0';
	*bufp = buf;
	*lenp = len;
	return 0;
}

/*
 * The dump's string form: bare when every byte is a printable ASCII
 * character other than '"' and '\', else quoted with C-like escapes, so
 * that every value is one token and any byte string survives.
 */
void
ss_put_string(FILE *fp, const char *s, size_t len)
{
	size_t i;
	unsigned char c;
	/* NIL stands for an absent string, so the string NIL is quoted. */
	int bare = len > 0 && !(len == 3 && memcmp(s, "NIL", 3) == 0);

	for (i = 0; i < len && bare; i++) {
		c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
			bare = 0;
	}
	if (bare) {
		fwrite(s, 1, len, fp);
		return;
	}
	fputc('"', fp);
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c == '\t')
			fputs("\\t", fp);
		else if (c == '\n')
			fputs("\\n", fp);
		else if (c == '\r')
			fputs("\\r", fp);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(fp, "\\x%02x", c);
		else
			fputc(c, fp);
	}
	fputc('"', fp);
}

static int
kwcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Flags in the protocol's order (system flags, then keywords); with
 * sorted the keywords are sorted bytewise so that two stores with
 * different keyword tables print the same.
 */
void
ss_flags_string(unsigned sf, const char *keywords, int sorted, char *buf,
    size_t size)
{
	static const struct {
		unsigned	 bit;
		const char	*name;
	} sys[] = {
		{ SF_DELETED, "\\Deleted" }, { SF_ANSWERED, "\\Answered" },
		{ SF_FLAGGED, "\\Flagged" }, { SF_DRAFT, "\\Draft" },
		{ SF_EXPUNGED, "\\Expunged" }, { SF_SEEN, "\\Seen" },
	};
	char *copy = NULL, *p, *tok, **kw = NULL, **nkw;
	size_t i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
		if ((sf & sys[i].bit) == 0)
			continue;
		if (buf[0] != '\0')
			strlcat(buf, " ", size);
		strlcat(buf, sys[i].name, size);
	}
	if (keywords == NULL || *keywords == '\0' ||
	    (copy = strdup(keywords)) == NULL)
		return;
	for (p = copy; (tok = strsep(&p, " ")) != NULL;) {
		if (*tok == '\0')
			continue;
		if ((nkw = reallocarray(kw, n + 1, sizeof(*kw))) == NULL)
			break;
		kw = nkw;
		kw[n++] = tok;
	}
	if (sorted && n > 1)
		qsort(kw, n, sizeof(*kw), kwcmp);
	for (i = 0; i < n; i++) {
		if (buf[0] != '\0')
			strlcat(buf, " ", size);
		strlcat(buf, kw[i], size);
	}
	free(kw);
	free(copy);
}

/* The store's SQLite file, for the checks the store API does not offer. */
char *
ss_sql_path(const struct ss *ss)
{
	char *p;

	if (asprintf(&p, "%s/syncpipe.db", conf_configdir(ss->conf)) == -1)
		return NULL;
	return p;
}

/*
 * Run a query on the store's database through a read-only connection of
 * our own, calling cb for each row (a non-zero return stops).  For the
 * questions the store API does not answer: orphan rows, every quota
 * root, every user with per-user state.
 */
int
ss_sql_each(const struct ss *ss, const char *sql,
    int (*cb)(sqlite3_stmt *, void *), void *arg)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char *path;
	int rc;

	if ((path = ss_sql_path(ss)) == NULL)
		return SS_FAIL;
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 10000);
		rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	}
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = cb(st, arg) == 0 ? SQLITE_OK : SQLITE_ABORT;
	if (rc != SQLITE_DONE) {
		ss_err(ss, path, "%s", rc == SQLITE_ABORT ? "out of memory" :
		    db != NULL ? sqlite3_errmsg(db) : "cannot open");
		rc = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ?
		    SS_TEMPFAIL : SS_FAIL;
	} else
		rc = SS_OK;
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(path);
	return rc;
}

struct partwalk {
	const struct ss	*ss;
	void		(*fn)(const char *, const char *, void *);
	void		*arg;
};

static void
partition_key(const char *key, const char *value, const char *file,
    int line, void *arg)
{
	struct partwalk *pw = arg;
	const char *name, *dir;

	(void)value;
	(void)file;
	(void)line;
	if (strncmp(key, "partition-", 10) != 0)
		return;
	name = key + 10;
	dir = conf_partition_path(pw->ss->conf, name);
	if (dir != NULL && *dir != '\0')
		pw->fn(name, dir, pw->arg);
}

/* Call fn for every configured partition (name, directory). */
void
ss_partitions(const struct ss *ss,
    void (*fn)(const char *, const char *, void *), void *arg)
{
	struct partwalk pw = { ss, fn, arg };

	conf_foreach(ss->conf, partition_key, &pw);
}

/* A path built with snprintf; -1 (ENAMETOOLONG) rather than a cut one. */
int
ss_pathf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}
