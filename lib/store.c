/*
 * store: syncpipe's mail store (see store.h).
 *
 * One SQLite database holds all metadata; bodies are files named by
 * their GUID.  The sync CRCs of each mailbox are kept current on every
 * record write so that a comparison with a peer never needs a scan.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* syncfs */
#endif

#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "conf.h"
#include "names.h"
#include "store.h"
#include "synccrc.h"
#include "synclog.h"

#define STORE_DBNAME		"syncpipe.db"
#define STORE_SCHEMA_VERSION	1
#define STORE_BUSY_MS		10000
#define STORE_WAL_RETRY_MS	10	/* between tries of the WAL switch */

/* Limits on what may enter the store. */
#define STORE_MAX_VALUE		(16u * 1024 * 1024)	/* annotation, sieve */
#define STORE_MAX_STRING	(1u * 1024 * 1024)	/* ACL, keywords */
#define STORE_MAX_ID		1024			/* uniqueid, entry */

static const char *store_schema =
	"CREATE TABLE mailboxes ("
	" id INTEGER PRIMARY KEY,"
	" uniqueid TEXT NOT NULL UNIQUE,"
	" name TEXT NOT NULL UNIQUE,"
	" mbtype TEXT NOT NULL DEFAULT '',"
	" partition TEXT,"
	" acl TEXT,"
	" options TEXT NOT NULL DEFAULT '',"
	" quotaroot TEXT,"
	" uidvalidity INTEGER NOT NULL DEFAULT 0,"
	" last_uid INTEGER NOT NULL DEFAULT 0,"
	" recentuid INTEGER NOT NULL DEFAULT 0,"
	" highestmodseq INTEGER NOT NULL DEFAULT 0,"
	" createdmodseq INTEGER NOT NULL DEFAULT 0,"
	" foldermodseq INTEGER NOT NULL DEFAULT 0,"
	" xconvmodseq INTEGER NOT NULL DEFAULT 0,"
	" raclmodseq INTEGER NOT NULL DEFAULT 0,"
	" recenttime INTEGER NOT NULL DEFAULT 0,"
	" last_appenddate INTEGER NOT NULL DEFAULT 0,"
	" pop3_last_login INTEGER NOT NULL DEFAULT 0,"
	" pop3_show_after INTEGER NOT NULL DEFAULT 0,"
	" sync_crc INTEGER NOT NULL DEFAULT 0,"
	" sync_crc_annot INTEGER NOT NULL DEFAULT 12345678);"
	"CREATE TABLE records ("
	" mbid INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
	" uid INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL,"
	" last_updated INTEGER NOT NULL,"
	" internaldate INTEGER NOT NULL,"
	" size INTEGER NOT NULL,"
	" guid TEXT NOT NULL,"
	" sysflags INTEGER NOT NULL,"
	" keywords TEXT NOT NULL DEFAULT '',"
	" cid INTEGER NOT NULL DEFAULT 0,"
	" savedate INTEGER NOT NULL DEFAULT 0,"
	" createdmodseq INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (mbid, uid)) WITHOUT ROWID;"
	"CREATE INDEX records_modseq ON records(mbid, modseq);"
	"CREATE INDEX records_guid ON records(guid);"
	"CREATE TABLE record_annots ("
	" mbid INTEGER NOT NULL,"
	" uid INTEGER NOT NULL,"
	" entry TEXT NOT NULL,"
	" userid TEXT NOT NULL,"
	" modseq INTEGER NOT NULL,"
	" value BLOB NOT NULL,"
	" PRIMARY KEY (mbid, uid, entry, userid),"
	" FOREIGN KEY (mbid, uid) REFERENCES records(mbid, uid)"
	"  ON DELETE CASCADE) WITHOUT ROWID;"
	"CREATE TABLE mbannots ("
	" mbid INTEGER NOT NULL,"
	" entry TEXT NOT NULL,"
	" userid TEXT NOT NULL,"
	" modseq INTEGER NOT NULL,"
	" value BLOB NOT NULL,"
	" PRIMARY KEY (mbid, entry, userid)) WITHOUT ROWID;"
	"CREATE TABLE seen ("
	" userid TEXT NOT NULL,"
	" uniqueid TEXT NOT NULL,"
	" lastread INTEGER NOT NULL,"
	" lastuid INTEGER NOT NULL,"
	" lastchange INTEGER NOT NULL,"
	" seenuids TEXT NOT NULL,"
	" PRIMARY KEY (userid, uniqueid)) WITHOUT ROWID;"
	"CREATE TABLE subs ("
	" userid TEXT NOT NULL,"
	" mboxname TEXT NOT NULL,"
	" PRIMARY KEY (userid, mboxname)) WITHOUT ROWID;"
	"CREATE TABLE quotas ("
	" root TEXT PRIMARY KEY,"
	" storage INTEGER NOT NULL,"
	" message INTEGER NOT NULL,"
	" annotstorage INTEGER NOT NULL,"
	" numfolders INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL);"
	"CREATE TABLE sieve ("
	" userid TEXT NOT NULL,"
	" name TEXT NOT NULL,"
	" content BLOB NOT NULL,"
	" last_update INTEGER NOT NULL,"
	" guid TEXT NOT NULL,"
	" active INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (userid, name)) WITHOUT ROWID;"
	"CREATE TABLE tombstones ("
	" name TEXT PRIMARY KEY,"
	" uniqueid TEXT NOT NULL,"
	" modseq INTEGER NOT NULL,"
	" deleted_at INTEGER NOT NULL);"
	"CREATE TABLE modseq ("
	" userid TEXT PRIMARY KEY,"
	" value INTEGER NOT NULL);";

#define MB_COLS "id, uniqueid, name, mbtype, partition, acl, options, " \
	"quotaroot, uidvalidity, last_uid, recentuid, highestmodseq, " \
	"createdmodseq, foldermodseq, xconvmodseq, raclmodseq, recenttime, " \
	"last_appenddate, pop3_last_login, pop3_show_after, sync_crc, " \
	"sync_crc_annot"
#define REC_COLS "uid, modseq, last_updated, internaldate, size, guid, " \
	"sysflags, keywords, cid, savedate, createdmodseq"

/*
 * Cyrus's mailbox name order: the hierarchy separator sorts before every
 * other byte, so user.a.b.d comes before user.a.b-c.  Only for ORDER BY:
 * the columns keep the binary collation, which the prefix ranges use.
 */
#define STORE_COLL	"mboxname"

static int
store_mboxname_cmp(void *arg, int na, const void *va, int nb, const void *vb)
{
	const unsigned char *a = va, *b = vb;
	int i, ca, cb;

	(void)arg;
	for (i = 0; i < na && i < nb; i++) {
		ca = a[i] == '.' ? 0 : a[i] + 1;
		cb = b[i] == '.' ? 0 : b[i] + 1;
		if (ca != cb)
			return ca - cb;
	}
	return na - nb;
}

/* Cached statements: prepared on first use, kept for the handle's life. */
enum {
	Q_MB_BY_NAME, Q_MB_BY_UNIQUEID, Q_MB_BY_ID, Q_MB_INSERT, Q_MB_UPDATE,
	Q_MB_DELETE, Q_MB_SET_CRC, Q_MB_RENAME, Q_MB_HEAD,
	Q_REC_GET, Q_REC_UPSERT, Q_REC_ANNOT_LIST, Q_REC_ANNOT_DEL,
	Q_REC_ANNOT_INS, Q_REC_DEL_MB,
	Q_MBA_DEL_ALL, Q_MBA_DEL_ONE, Q_MBA_UPSERT, Q_MBA_LIST,
	Q_TOMB_GET, Q_TOMB_PUT, Q_TOMB_DEL,
	Q_MODSEQ_NEXT, Q_MODSEQ_BUMP,
	Q_SEEN_PUT, Q_SUB_ADD, Q_SUB_DEL,
	Q_QUOTA_GET, Q_QUOTA_PUT, Q_QUOTA_DEL,
	Q_SIEVE_PUT, Q_SIEVE_GET, Q_SIEVE_DEL, Q_SIEVE_ACT, Q_SIEVE_EXISTS,
	Q__COUNT
};

static const char *store_sql[Q__COUNT] = {
	[Q_MB_BY_NAME] = "SELECT " MB_COLS " FROM mailboxes WHERE name = ?1",
	[Q_MB_BY_UNIQUEID] =
	    "SELECT " MB_COLS " FROM mailboxes WHERE uniqueid = ?1",
	[Q_MB_BY_ID] = "SELECT " MB_COLS " FROM mailboxes WHERE id = ?1",
	[Q_MB_INSERT] = "INSERT INTO mailboxes (uniqueid, name, mbtype, "
	    "partition, acl, options, quotaroot, uidvalidity, last_uid, "
	    "recentuid, highestmodseq, createdmodseq, foldermodseq, "
	    "xconvmodseq, raclmodseq, recenttime, last_appenddate, "
	    "pop3_last_login, pop3_show_after, sync_crc, sync_crc_annot) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
	    "?14, ?15, ?16, ?17, ?18, ?19, 0, ?20)",
	[Q_MB_UPDATE] = "UPDATE mailboxes SET uniqueid = ?1, name = ?2, "
	    "mbtype = ?3, partition = ?4, acl = ?5, options = ?6, "
	    "quotaroot = ?7, uidvalidity = ?8, last_uid = ?9, recentuid = ?10, "
	    "highestmodseq = ?11, createdmodseq = ?12, foldermodseq = ?13, "
	    "xconvmodseq = ?14, raclmodseq = ?15, recenttime = ?16, "
	    "last_appenddate = ?17, pop3_last_login = ?18, "
	    "pop3_show_after = ?19 WHERE id = ?20",
	[Q_MB_DELETE] = "DELETE FROM mailboxes WHERE id = ?1",
	[Q_MB_SET_CRC] = "UPDATE mailboxes SET sync_crc = ?1, "
	    "sync_crc_annot = ?2 WHERE id = ?3",
	[Q_MB_RENAME] = "UPDATE mailboxes SET name = ?1, partition = ?2 "
	    "WHERE id = ?3",
	[Q_MB_HEAD] = "SELECT name, partition, sync_crc, sync_crc_annot "
	    "FROM mailboxes WHERE id = ?1",
	[Q_REC_GET] = "SELECT " REC_COLS " FROM records "
	    "WHERE mbid = ?1 AND uid = ?2",
	[Q_REC_UPSERT] = "INSERT INTO records (mbid, " REC_COLS ") VALUES "
	    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
	    "ON CONFLICT (mbid, uid) DO UPDATE SET modseq = excluded.modseq, "
	    "last_updated = excluded.last_updated, "
	    "internaldate = excluded.internaldate, size = excluded.size, "
	    "guid = excluded.guid, sysflags = excluded.sysflags, "
	    "keywords = excluded.keywords, cid = excluded.cid, "
	    "savedate = excluded.savedate, "
	    "createdmodseq = excluded.createdmodseq",
	[Q_REC_ANNOT_LIST] = "SELECT entry, userid, modseq, value "
	    "FROM record_annots WHERE mbid = ?1 AND uid = ?2 "
	    "ORDER BY entry, userid",
	[Q_REC_ANNOT_DEL] = "DELETE FROM record_annots "
	    "WHERE mbid = ?1 AND uid = ?2",
	[Q_REC_ANNOT_INS] = "INSERT OR REPLACE INTO record_annots "
	    "(mbid, uid, entry, userid, modseq, value) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_REC_DEL_MB] = "DELETE FROM records WHERE mbid = ?1",
	[Q_MBA_DEL_ALL] = "DELETE FROM mbannots WHERE mbid = ?1",
	[Q_MBA_DEL_ONE] = "DELETE FROM mbannots "
	    "WHERE mbid = ?1 AND entry = ?2 AND userid = ?3",
	[Q_MBA_UPSERT] = "INSERT OR REPLACE INTO mbannots "
	    "(mbid, entry, userid, modseq, value) VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_MBA_LIST] = "SELECT entry, userid, modseq, value "
	    "FROM mbannots WHERE mbid = ?1 ORDER BY entry, userid",
	[Q_TOMB_GET] = "SELECT name, uniqueid, modseq, deleted_at "
	    "FROM tombstones WHERE name = ?1",
	[Q_TOMB_PUT] = "INSERT OR REPLACE INTO tombstones "
	    "(name, uniqueid, modseq, deleted_at) VALUES (?1, ?2, ?3, ?4)",
	[Q_TOMB_DEL] = "DELETE FROM tombstones WHERE name = ?1",
	[Q_MODSEQ_NEXT] = "INSERT INTO modseq (userid, value) VALUES (?1, 1) "
	    "ON CONFLICT (userid) DO UPDATE SET value = value + 1 "
	    "RETURNING value",
	[Q_MODSEQ_BUMP] = "INSERT INTO modseq (userid, value) VALUES (?1, ?2) "
	    "ON CONFLICT (userid) DO UPDATE SET "
	    "value = max(value, excluded.value)",
	[Q_SEEN_PUT] = "INSERT OR REPLACE INTO seen (userid, uniqueid, "
	    "lastread, lastuid, lastchange, seenuids) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_SUB_ADD] = "INSERT OR IGNORE INTO subs (userid, mboxname) "
	    "VALUES (?1, ?2)",
	[Q_SUB_DEL] = "DELETE FROM subs WHERE userid = ?1 AND mboxname = ?2",
	[Q_QUOTA_GET] = "SELECT root, storage, message, annotstorage, "
	    "numfolders, modseq FROM quotas WHERE root = ?1",
	[Q_QUOTA_PUT] = "INSERT OR REPLACE INTO quotas (root, storage, "
	    "message, annotstorage, numfolders, modseq) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_QUOTA_DEL] = "DELETE FROM quotas WHERE root = ?1",
	[Q_SIEVE_PUT] = "INSERT INTO sieve (userid, name, content, "
	    "last_update, guid) VALUES (?1, ?2, ?3, ?4, ?5) "
	    "ON CONFLICT (userid, name) DO UPDATE SET "
	    "content = excluded.content, last_update = excluded.last_update, "
	    "guid = excluded.guid",
	[Q_SIEVE_GET] = "SELECT content FROM sieve "
	    "WHERE userid = ?1 AND name = ?2",
	[Q_SIEVE_DEL] = "DELETE FROM sieve WHERE userid = ?1 AND name = ?2",
	[Q_SIEVE_ACT] = "UPDATE sieve SET active = (name IS ?2) "
	    "WHERE userid = ?1",
	[Q_SIEVE_EXISTS] = "SELECT 1 FROM sieve "
	    "WHERE userid = ?1 AND name = ?2",
};

/* The sync_log lines of the open transaction, without duplicates. */
struct store_log {
	char		**lines;
	size_t		  n, cap;
	uint32_t	 *hash;		/* open addressing: index + 1 */
	size_t		  hcap;
};

struct store {
	sqlite3			*db;
	const struct conf	*conf;
	sqlite3_stmt		*stmt[Q__COUNT];
	int			 intxn;
	int			 synclog;
	struct store_log	 log;
	/* The last partition looked up, and its directory (conf's string). */
	char			 partname[128];
	const char		*partdir;
	/* Fan-out directories of partdir known to exist (bit ab*256+cd). */
	unsigned char		 fanout[65536 / 8];
	mode_t			 umask;
	char			 err[1024];
};

static void
store_seterr(struct store *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
store_seterr(struct store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

static int
store_dberr(struct store *s, const char *what)
{
	store_seterr(s, "%s: %s", what, sqlite3_errmsg(s->db));
	return -1;
}

static int
store_nomem(struct store *s)
{
	store_seterr(s, "out of memory");
	return -1;
}

/* A cached statement, reset and with its bindings cleared. */
static sqlite3_stmt *
store_q(struct store *s, int q)
{
	sqlite3_stmt *st = s->stmt[q];

	if (st == NULL) {
		if (sqlite3_prepare_v3(s->db, store_sql[q], -1,
		    SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
			store_dberr(s, "prepare");
			return NULL;
		}
		s->stmt[q] = st;
	} else {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
	return st;
}

/* Run a statement that returns no rows; -1 with the error set. */
static int
store_step_done(struct store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		store_dberr(s, what);
		sqlite3_reset(st);
		return -1;
	}
	sqlite3_reset(st);
	return 0;
}

static void
store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static int
store_col_dup(struct store *s, sqlite3_stmt *st, int i, char **out)
{
	const unsigned char *t;
	int n;

	*out = NULL;
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		return 0;
	t = sqlite3_column_text(st, i);
	n = sqlite3_column_bytes(st, i);
	if (t == NULL)
		t = (const unsigned char *)"";
	if ((*out = malloc((size_t)n + 1)) == NULL)
		return store_nomem(s);
	memcpy(*out, t, (size_t)n);
	(*out)[n] = '\0';
	return 0;
}

static int
store_col_blob(struct store *s, sqlite3_stmt *st, int i, char **out,
    size_t *len)
{
	const void *b = sqlite3_column_blob(st, i);
	int n = sqlite3_column_bytes(st, i);

	if ((*out = malloc((size_t)n + 1)) == NULL)
		return store_nomem(s);
	if (n > 0)
		memcpy(*out, b, (size_t)n);
	(*out)[n] = '\0';
	*len = (size_t)n;
	return 0;
}

static int
store_need_txn(struct store *s)
{
	if (!s->intxn) {
		store_seterr(s, "store changed outside a transaction");
		return -1;
	}
	return 0;
}

static int
store_exec(struct store *s, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		store_seterr(s, "%s: %s", sql, msg ? msg : "error");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* A one-off statement, for walks whose callbacks may use the store (and
 * with it any cached statement); text parameters ?1.. are bound from
 * the NULL-terminated list that follows sql. */
static sqlite3_stmt *
store_prepare(struct store *s, const char *sql, ...)
{
	sqlite3_stmt *st;
	const char *v;
	va_list ap;
	int i = 1;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		store_dberr(s, "prepare");
		return NULL;
	}
	va_start(ap, sql);
	while ((v = va_arg(ap, const char *)) != NULL)
		sqlite3_bind_text(st, i++, v, -1, SQLITE_TRANSIENT);
	va_end(ap);
	return st;
}

typedef int	(*store_row_fn)(struct store *, sqlite3_stmt *, void *);

/* Hand each row of st to fn, then finalize st.  0 at the end, fn's
 * non-zero return (which stops the walk), or -1 on a database error. */
static int
store_rows(struct store *s, sqlite3_stmt *st, const char *what,
    store_row_fn fn, void *arg)
{
	int rc;

	if (st == NULL)
		return -1;
	for (;;) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE) {
			rc = 0;
			break;
		}
		if (rc != SQLITE_ROW) {
			rc = store_dberr(s, what);
			break;
		}
		if ((rc = fn(s, st, arg)) != 0)
			break;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Step a cached lookup: 0 with its row current (the caller resets),
 * STORE_NOTFOUND or -1, both with the statement reset. */
static int
store_row1(struct store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 0;
	if (rc != SQLITE_DONE)
		store_dberr(s, what);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_NOTFOUND : -1;
}

/* Bind (entry, userid, modseq, value) of an annotation at ?i..?i+3. */
static void
store_bind_annot(sqlite3_stmt *st, int i, const struct store_annot *a)
{
	store_bind_text(st, i, a->entry);
	store_bind_text(st, i + 1, a->userid);
	sqlite3_bind_int64(st, i + 2, (sqlite3_int64)a->modseq);
	sqlite3_bind_blob(st, i + 3, a->value, (int)a->valuelen,
	    SQLITE_STATIC);
}

/* A text column copied into a fixed buffer ("" for NULL). */
static void
store_col_copy(sqlite3_stmt *st, int i, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	strlcpy(buf, t != NULL ? (const char *)t : "", size);
}

/* ------------------------------------------------------------------- log */

static uint32_t
store_log_hash(const char *p)
{
	uint32_t h = 2166136261u;

	for (; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h;
}

static int
store_log_rehash(struct store_log *l, size_t ncap)
{
	uint32_t *nh;
	size_t i, j;

	if ((nh = calloc(ncap, sizeof(*nh))) == NULL)
		return -1;
	for (i = 0; i < l->n; i++) {
		j = store_log_hash(l->lines[i]) & (ncap - 1);
		while (nh[j] != 0)
			j = (j + 1) & (ncap - 1);
		nh[j] = (uint32_t)(i + 1);
	}
	free(l->hash);
	l->hash = nh;
	l->hcap = ncap;
	return 0;
}

static void
store_log_reset(struct store_log *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->lines[i]);
	free(l->lines);
	free(l->hash);
	memset(l, 0, sizeof(*l));
}

/* Remember one event for the commit (once). */
static int
store_log_add(struct store *s, const char *type, const char *a1,
    const char *a2)
{
	struct store_log *l = &s->log;
	char line[SYNCLOG_MAX_LINE];
	size_t j;
	int n;

	if (!s->synclog)
		return 0;
	n = synclog_format(line, sizeof(line), type, a1, a2);
	if (n < 0) {
		store_seterr(s, "cannot log %s event for this name", type);
		return -1;
	}
	if (l->hcap == 0 || (l->n + 1) * 2 > l->hcap)
		if (store_log_rehash(l, l->hcap ? l->hcap * 2 : 64) == -1)
			return store_nomem(s);
	j = store_log_hash(line) & (l->hcap - 1);
	while (l->hash[j] != 0) {
		if (strcmp(l->lines[l->hash[j] - 1], line) == 0)
			return 0;
		j = (j + 1) & (l->hcap - 1);
	}
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 32;
		char **nl = reallocarray(l->lines, ncap, sizeof(*nl));

		if (nl == NULL)
			return store_nomem(s);
		l->lines = nl;
		l->cap = ncap;
	}
	if ((l->lines[l->n] = strdup(line)) == NULL)
		return store_nomem(s);
	l->hash[j] = (uint32_t)(++l->n);
	return 0;
}

static int
store_log_mailbox(struct store *s, const char *name)
{
	return store_log_add(s, "MAILBOX", name, NULL);
}

static int
store_log_flush(struct store *s)
{
	struct store_log *l = &s->log;
	char err[512];
	char *text, *p;
	size_t i, total = 0;
	int rc;

	if (l->n == 0)
		return 0;
	for (i = 0; i < l->n; i++)
		total += strlen(l->lines[i]);
	if ((text = malloc(total + 1)) == NULL)
		return store_nomem(s);
	for (p = text, i = 0; i < l->n; i++) {
		size_t n = strlen(l->lines[i]);

		memcpy(p, l->lines[i], n);
		p += n;
	}
	*p = '\0';
	rc = synclog_append(s->conf, text, total, err, sizeof(err));
	free(text);
	if (rc == -1)
		store_seterr(s, "committed, but the sync log was not "
		    "written: %s", err);
	return rc;
}

/* ------------------------------------------------------------------ open */

/*
 * Put the database in WAL mode.  Two openers of a new database can
 * both hold a shared lock while each wants the exclusive one the
 * switch needs; SQLite then answers one of them SQLITE_BUSY at once,
 * without its busy handler, so the wait is done here.
 */
static int
store_wal(struct store *s)
{
	int waited;

	for (waited = 0;; waited += STORE_WAL_RETRY_MS) {
		if (sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL,
		    NULL, NULL) == SQLITE_OK)
			return 0;
		if ((sqlite3_errcode(s->db) & 0xff) != SQLITE_BUSY ||
		    waited >= STORE_BUSY_MS)
			return store_dberr(s, "PRAGMA journal_mode = WAL");
		sqlite3_sleep(STORE_WAL_RETRY_MS);
	}
}

/*
 * Open or create the store of conf; NULL with err set on failure.
 */
struct store *
store_open(const struct conf *conf, char *err, size_t errlen)
{
	struct store *s;
	char path[4096];
	sqlite3_stmt *st;
	int ver, n;

	n = snprintf(path, sizeof(path), "%s/%s", conf_configdir(conf),
	    STORE_DBNAME);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(err, errlen, "configdirectory too long");
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->conf = conf;
	/* Bodies are made 0640 whatever the umask (see store_ingest_open). */
	s->umask = umask(022);
	umask(s->umask);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
		    s->db ? sqlite3_errmsg(s->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
	if (sqlite3_create_collation(s->db, STORE_COLL, SQLITE_UTF8, NULL,
	    store_mboxname_cmp) != SQLITE_OK) {
		store_dberr(s, "collation");
		goto failmsg;
	}
	/*
	 * FULL rather than NORMAL: with WAL, NORMAL may lose the last
	 * commits on power loss, and a replica that acknowledged an APPLY
	 * must still have it afterwards.
	 */
	if (store_wal(s) == -1 ||
	    store_exec(s, "PRAGMA synchronous = FULL") == -1 ||
	    store_exec(s, "PRAGMA foreign_keys = ON") == -1)
		goto failmsg;
	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st,
	    NULL) != SQLITE_OK) {
		store_dberr(s, "user_version");
		goto failmsg;
	}
	ver = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (ver == 0) {
		/* Created under the write lock so two openers cannot race. */
		if (store_exec(s, "BEGIN IMMEDIATE") == -1)
			goto failmsg;
		if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st,
		    NULL) != SQLITE_OK) {
			store_dberr(s, "user_version");
			store_exec(s, "ROLLBACK");
			goto failmsg;
		}
		ver = sqlite3_step(st) == SQLITE_ROW ?
		    sqlite3_column_int(st, 0) : -1;
		sqlite3_finalize(st);
		if (ver == 0) {
			char sql[64];

			snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
			    STORE_SCHEMA_VERSION);
			if (store_exec(s, store_schema) == -1 ||
			    store_exec(s, sql) == -1) {
				store_exec(s, "ROLLBACK");
				goto failmsg;
			}
			ver = STORE_SCHEMA_VERSION;
		}
		if (store_exec(s, "COMMIT") == -1)
			goto failmsg;
	}
	if (ver != STORE_SCHEMA_VERSION) {
		snprintf(err, errlen, "%s: schema version %d, expected %d",
		    path, ver, STORE_SCHEMA_VERSION);
		goto fail;
	}
	return s;
failmsg:
	snprintf(err, errlen, "%s: %s", path, s->err);
fail:
	store_close(s);
	return NULL;
}

/*
 * Close the store, rolling back an open transaction.
 */
void
store_close(struct store *s)
{
	int i;

	if (s == NULL)
		return;
	if (s->intxn)
		store_rollback(s);
	for (i = 0; i < Q__COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	if (s->db != NULL)
		sqlite3_close(s->db);
	store_log_reset(&s->log);
	free(s);
}

/*
 * The reason for the last -1 return.
 */
const char *
store_error(const struct store *s)
{
	return s->err;
}

/*
 * The configuration the store was opened with.
 */
const struct conf *
store_conf(const struct store *s)
{
	return s->conf;
}

/*
 * Start a write transaction (taking the database's write lock now, not
 * at the first write).  Nesting is an error.
 */
int
store_begin(struct store *s)
{
	if (s->intxn) {
		store_seterr(s, "transaction already open");
		return -1;
	}
	if (store_exec(s, "BEGIN IMMEDIATE") == -1)
		return -1;
	s->intxn = 1;
	store_log_reset(&s->log);
	return 0;
}

/*
 * Commit, then append the transaction's sync_log events.  A -1 after the
 * database commit says so in the message.
 */
int
store_commit(struct store *s)
{
	int rc;

	if (!s->intxn) {
		store_seterr(s, "no transaction open");
		return -1;
	}
	if (store_exec(s, "COMMIT") == -1) {
		/* SQLite may have rolled back already (SQLITE_FULL): keep
		 * the COMMIT's error, not the ROLLBACK's. */
		if (!sqlite3_get_autocommit(s->db))
			(void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->intxn = 0;
		store_log_reset(&s->log);
		return -1;
	}
	s->intxn = 0;
	/* After the commit: a reader acting on a line must see the change. */
	rc = store_log_flush(s);
	store_log_reset(&s->log);
	return rc;
}

/*
 * Roll back the open transaction and forget its sync_log events.
 */
int
store_rollback(struct store *s)
{
	int rc;

	if (!s->intxn) {
		store_seterr(s, "no transaction open");
		return -1;
	}
	rc = store_exec(s, "ROLLBACK");
	s->intxn = 0;
	store_log_reset(&s->log);
	return rc;
}

/*
 * Switch sync_log writing for changes made through this handle.
 */
void
store_set_synclog(struct store *s, int on)
{
	s->synclog = on;
}

/* ---------------------------------------------------------------- modseq */

static int
store_check_userkey(struct store *s, const char *userid)
{
	if (userid == NULL || (*userid != '\0' && !userid_valid(userid))) {
		store_seterr(s, "bad userid");
		return -1;
	}
	return 0;
}

/*
 * Increment and return the user's modseq counter ("" = shared).
 */
int
store_next_modseq(struct store *s, const char *userid, uint64_t *out)
{
	sqlite3_stmt *st;
	int rc;

	if (store_check_userkey(s, userid) == -1 || store_need_txn(s) == -1)
		return -1;
	if ((st = store_q(s, Q_MODSEQ_NEXT)) == NULL)
		return -1;
	store_bind_text(st, 1, userid);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		store_dberr(s, "next modseq");
		sqlite3_reset(st);
		return -1;
	}
	*out = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

/*
 * Raise the user's modseq counter to at least v.
 */
int
store_bump_modseq(struct store *s, const char *userid, uint64_t v)
{
	sqlite3_stmt *st;

	if (store_check_userkey(s, userid) == -1 || store_need_txn(s) == -1)
		return -1;
	if ((st = store_q(s, Q_MODSEQ_BUMP)) == NULL)
		return -1;
	store_bind_text(st, 1, userid);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)v);
	return store_step_done(s, st, "bump modseq");
}

/* The counter key of a mailbox's owner: its userid or "" (malloc'd). */
static char *
store_owner(const char *name)
{
	char *u = mboxname_to_userid(name);

	return u != NULL ? u : strdup("");
}

/* ------------------------------------------------------------- mailboxes */

static int
store_mb_from_row(struct store *s, sqlite3_stmt *st, struct store_mailbox *mb)
{
	memset(mb, 0, sizeof(*mb));
	mb->id = sqlite3_column_int64(st, 0);
	if (store_col_dup(s, st, 1, &mb->uniqueid) == -1 ||
	    store_col_dup(s, st, 2, &mb->name) == -1 ||
	    store_col_dup(s, st, 3, &mb->mbtype) == -1 ||
	    store_col_dup(s, st, 4, &mb->partition) == -1 ||
	    store_col_dup(s, st, 5, &mb->acl) == -1 ||
	    store_col_dup(s, st, 6, &mb->options) == -1 ||
	    store_col_dup(s, st, 7, &mb->quotaroot) == -1) {
		store_mailbox_clear(mb);
		return -1;
	}
	mb->uidvalidity = (uint32_t)sqlite3_column_int64(st, 8);
	mb->last_uid = (uint32_t)sqlite3_column_int64(st, 9);
	mb->recentuid = (uint32_t)sqlite3_column_int64(st, 10);
	mb->highestmodseq = (uint64_t)sqlite3_column_int64(st, 11);
	mb->createdmodseq = (uint64_t)sqlite3_column_int64(st, 12);
	mb->foldermodseq = (uint64_t)sqlite3_column_int64(st, 13);
	mb->xconvmodseq = (uint64_t)sqlite3_column_int64(st, 14);
	mb->raclmodseq = (uint64_t)sqlite3_column_int64(st, 15);
	mb->recenttime = sqlite3_column_int64(st, 16);
	mb->last_appenddate = sqlite3_column_int64(st, 17);
	mb->pop3_last_login = sqlite3_column_int64(st, 18);
	mb->pop3_show_after = sqlite3_column_int64(st, 19);
	mb->sync_crc = (uint32_t)sqlite3_column_int64(st, 20);
	mb->sync_crc_annot = (uint32_t)sqlite3_column_int64(st, 21);
	return 0;
}

static int
store_mb_get_q(struct store *s, int q, const char *key, int64_t id,
    struct store_mailbox *mb)
{
	sqlite3_stmt *st;
	int rc;

	memset(mb, 0, sizeof(*mb));
	if ((st = store_q(s, q)) == NULL)
		return -1;
	if (key != NULL)
		store_bind_text(st, 1, key);
	else
		sqlite3_bind_int64(st, 1, id);
	if ((rc = store_row1(s, st, "mailbox lookup")) != 0)
		return rc;
	rc = store_mb_from_row(s, st, mb);
	sqlite3_reset(st);
	return rc;
}

/*
 * Look a mailbox up by internal name.  0, STORE_NOTFOUND or -1; free the
 * result with store_mailbox_clear().
 */
int
store_mailbox_get(struct store *s, const char *name, struct store_mailbox *mb)
{
	if (name == NULL) {
		memset(mb, 0, sizeof(*mb));
		store_seterr(s, "no mailbox name");
		return -1;
	}
	return store_mb_get_q(s, Q_MB_BY_NAME, name, 0, mb);
}

/*
 * Look a mailbox up by uniqueid.  0, STORE_NOTFOUND or -1.
 */
int
store_mailbox_get_uniqueid(struct store *s, const char *uniqueid,
    struct store_mailbox *mb)
{
	if (uniqueid == NULL) {
		memset(mb, 0, sizeof(*mb));
		store_seterr(s, "no uniqueid");
		return -1;
	}
	return store_mb_get_q(s, Q_MB_BY_UNIQUEID, uniqueid, 0, mb);
}

static int
store_mb_get_id(struct store *s, int64_t id, struct store_mailbox *mb)
{
	int rc = store_mb_get_q(s, Q_MB_BY_ID, NULL, id, mb);

	if (rc == STORE_NOTFOUND)
		store_seterr(s, "no mailbox with id %" PRId64, id);
	return rc;
}

/* A printable token without '/' (uniqueids, type letters, entries). */
static int
store_token_valid(const char *t, size_t max, int allow_empty)
{
	size_t n;

	if (t == NULL)
		return 0;
	for (n = 0; t[n] != '\0'; n++)
		if ((unsigned char)t[n] < 0x20 || (unsigned char)t[n] >= 0x7f)
			return 0;
	return (allow_empty || n > 0) && n <= max;
}

static int
store_mb_check(struct store *s, const struct store_mailbox *mb)
{
	if (mb->name == NULL || !mboxname_valid(mb->name)) {
		store_seterr(s, "bad mailbox name");
		return -1;
	}
	if (!store_token_valid(mb->uniqueid, STORE_MAX_ID, 0) ||
	    strchr(mb->uniqueid, '/') != NULL) {
		store_seterr(s, "%s: bad uniqueid", mb->name);
		return -1;
	}
	if (mb->mbtype != NULL && !store_token_valid(mb->mbtype, 32, 1)) {
		store_seterr(s, "%s: bad mailbox type", mb->name);
		return -1;
	}
	if (mb->partition != NULL && !partition_name_valid(mb->partition)) {
		store_seterr(s, "%s: bad partition name", mb->name);
		return -1;
	}
	if (mb->options != NULL && !store_token_valid(mb->options, 64, 1)) {
		store_seterr(s, "%s: bad options", mb->name);
		return -1;
	}
	if (mb->acl != NULL && strlen(mb->acl) > STORE_MAX_STRING) {
		store_seterr(s, "%s: ACL too long", mb->name);
		return -1;
	}
	if (mb->quotaroot != NULL && !mboxname_valid(mb->quotaroot)) {
		store_seterr(s, "%s: bad quota root", mb->name);
		return -1;
	}
	return 0;
}

/* Bind ?1..?19 in the column order shared by insert and update. */
static void
store_mb_bind(sqlite3_stmt *st, const struct store_mailbox *mb)
{
	store_bind_text(st, 1, mb->uniqueid);
	store_bind_text(st, 2, mb->name);
	store_bind_text(st, 3, mb->mbtype ? mb->mbtype : "");
	store_bind_text(st, 4, mb->partition);
	store_bind_text(st, 5, mb->acl);
	store_bind_text(st, 6, mb->options ? mb->options : "");
	store_bind_text(st, 7, mb->quotaroot);
	sqlite3_bind_int64(st, 8, mb->uidvalidity);
	sqlite3_bind_int64(st, 9, mb->last_uid);
	sqlite3_bind_int64(st, 10, mb->recentuid);
	sqlite3_bind_int64(st, 11, (sqlite3_int64)mb->highestmodseq);
	sqlite3_bind_int64(st, 12, (sqlite3_int64)mb->createdmodseq);
	sqlite3_bind_int64(st, 13, (sqlite3_int64)mb->foldermodseq);
	sqlite3_bind_int64(st, 14, (sqlite3_int64)mb->xconvmodseq);
	sqlite3_bind_int64(st, 15, (sqlite3_int64)mb->raclmodseq);
	sqlite3_bind_int64(st, 16, mb->recenttime);
	sqlite3_bind_int64(st, 17, mb->last_appenddate);
	sqlite3_bind_int64(st, 18, mb->pop3_last_login);
	sqlite3_bind_int64(st, 19, mb->pop3_show_after);
}

static int
store_tomb_del(struct store *s, const char *name)
{
	sqlite3_stmt *st;

	if ((st = store_q(s, Q_TOMB_DEL)) == NULL)
		return -1;
	store_bind_text(st, 1, name);
	return store_step_done(s, st, "delete tombstone");
}

/* STORE_EXISTS if name or uniqueid belongs to a mailbox other than id. */
static int
store_mb_taken(struct store *s, const char *name, const char *uniqueid,
    int64_t id)
{
	struct store_mailbox o;
	int rc;

	if (name != NULL) {
		rc = store_mailbox_get(s, name, &o);
		if (rc == -1)
			return -1;
		if (rc == 0) {
			rc = o.id != id;
			store_mailbox_clear(&o);
			if (rc) {
				store_seterr(s, "%s: mailbox exists", name);
				return STORE_EXISTS;
			}
		}
	}
	if (uniqueid != NULL) {
		rc = store_mailbox_get_uniqueid(s, uniqueid, &o);
		if (rc == -1)
			return -1;
		if (rc == 0) {
			rc = o.id != id;
			store_mailbox_clear(&o);
			if (rc) {
				store_seterr(s, "uniqueid %s is in use",
				    uniqueid);
				return STORE_EXISTS;
			}
		}
	}
	return 0;
}

/*
 * Create a mailbox with empty-mailbox CRCs; sets mb->id.  STORE_EXISTS
 * if the name or uniqueid is taken.  A tombstone of the name goes.
 */
int
store_mailbox_create(struct store *s, struct store_mailbox *mb)
{
	sqlite3_stmt *st;
	int rc;

	if (store_need_txn(s) == -1 || store_mb_check(s, mb) == -1)
		return -1;
	if ((rc = store_mb_taken(s, mb->name, mb->uniqueid, -1)) != 0)
		return rc;
	if ((st = store_q(s, Q_MB_INSERT)) == NULL)
		return -1;
	store_mb_bind(st, mb);
	sqlite3_bind_int64(st, 20, SYNCCRC_ANNOT_INIT);
	if (store_step_done(s, st, "create mailbox") == -1)
		return -1;
	mb->id = sqlite3_last_insert_rowid(s->db);
	mb->sync_crc = 0;
	mb->sync_crc_annot = SYNCCRC_ANNOT_INIT;
	if (store_tomb_del(s, mb->name) == -1)
		return -1;
	return store_log_mailbox(s, mb->name);
}

/*
 * Write every field of mb (found by mb->id) except the CRCs.  A changed
 * name is logged as a rename.
 */
int
store_mailbox_update(struct store *s, const struct store_mailbox *mb)
{
	struct store_mailbox old;
	sqlite3_stmt *st;
	int rc;

	if (store_need_txn(s) == -1 || store_mb_check(s, mb) == -1)
		return -1;
	if ((rc = store_mb_get_id(s, mb->id, &old)) != 0)
		return rc == STORE_NOTFOUND ? -1 : rc;
	if ((rc = store_mb_taken(s, mb->name, mb->uniqueid, mb->id)) != 0)
		goto out;
	rc = -1;
	if ((st = store_q(s, Q_MB_UPDATE)) == NULL)
		goto out;
	store_mb_bind(st, mb);
	sqlite3_bind_int64(st, 20, mb->id);
	if (store_step_done(s, st, "update mailbox") == -1)
		goto out;
	if (strcmp(old.name, mb->name) != 0) {
		if (store_tomb_del(s, mb->name) == -1 ||
		    store_log_add(s, "RENAME", old.name, mb->name) == -1 ||
		    store_log_mailbox(s, old.name) == -1)
			goto out;
	}
	rc = store_log_mailbox(s, mb->name);
out:
	store_mailbox_clear(&old);
	return rc;
}

static int
store_mb_remove(struct store *s, int64_t id)
{
	sqlite3_stmt *st;

	/* Records go by cascade, their annotations with them. */
	if ((st = store_q(s, Q_MBA_DEL_ALL)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	if (store_step_done(s, st, "delete annotations") == -1)
		return -1;
	if ((st = store_q(s, Q_MB_DELETE)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	return store_step_done(s, st, "delete mailbox");
}

/*
 * Remove a mailbox and everything it holds (bodies stay for gc).  With
 * tombstone, remember its name and uniqueid at a fresh modseq.
 */
int
store_mailbox_delete(struct store *s, int64_t id, int tombstone)
{
	struct store_mailbox mb;
	char *owner = NULL;
	uint64_t modseq;
	sqlite3_stmt *st;
	int rc;

	if (store_need_txn(s) == -1)
		return -1;
	if ((rc = store_mb_get_id(s, id, &mb)) != 0)
		return rc == STORE_NOTFOUND ? -1 : rc;
	rc = -1;
	if (store_mb_remove(s, id) == -1)
		goto out;
	if (tombstone) {
		if ((owner = store_owner(mb.name)) == NULL) {
			store_nomem(s);
			goto out;
		}
		/* Later than anything the mailbox ever showed. */
		if (store_bump_modseq(s, owner, mb.highestmodseq) == -1 ||
		    store_next_modseq(s, owner, &modseq) == -1)
			goto out;
		if ((st = store_q(s, Q_TOMB_PUT)) == NULL)
			goto out;
		store_bind_text(st, 1, mb.name);
		store_bind_text(st, 2, mb.uniqueid);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)modseq);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
		if (store_step_done(s, st, "tombstone") == -1)
			goto out;
	}
	/*
	 * As Cyrus logs a real deletion: UNMAILBOX, then MAILBOX for the
	 * name as the deleted mailbox is let go.
	 */
	if (store_log_add(s, "UNMAILBOX", mb.name, NULL) == -1 ||
	    store_log_mailbox(s, mb.name) == -1)
		goto out;
	rc = 0;
out:
	free(owner);
	store_mailbox_clear(&mb);
	return rc;
}

struct store_bodymove {
	struct store		*s;
	struct store_ingest	*ig;
	const char		*from, *to;
};

/* Copy one body from a partition into an ingest batch for another. */
static int
store_body_copy(struct store *s, struct store_ingest *ig, const char *from,
    const char *to, const char *guid)
{
	char path[4096], buf[65536];
	struct stat sb;
	ssize_t n = 0;
	void *h;
	int fd, ok = 1;

	if (store_body_path(s, from, guid, path, sizeof(path)) == -1)
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &sb) == -1) {
		store_seterr(s, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	if ((h = store_ingest_open(ig, to, guid, (uint64_t)sb.st_size)) ==
	    NULL) {
		close(fd);
		return -1;
	}
	while (ok && (n = read(fd, buf, sizeof(buf))) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			store_seterr(s, "%s: %s", path, strerror(errno));
			ok = 0;
		} else if (store_ingest_write(ig, h, buf, (size_t)n) == -1)
			ok = 0;
	}
	close(fd);
	if (!ok) {
		store_ingest_close(ig, h, 0);
		return -1;
	}
	return store_ingest_close(ig, h, 1);
}

static int
store_bodymove_cb(const struct store_record *r, void *arg)
{
	struct store_bodymove *bm = arg;
	struct store *s = bm->s;
	int e;

	if ((r->sysflags & SF_EXPUNGED) != 0 ||
	    store_ingest_has(bm->ig, bm->to, r->guid))
		return 0;
	if ((e = store_body_exists(s, bm->to, r->guid)) != 0)
		return e == 1 ? 0 : -1;
	return store_body_copy(s, bm->ig, bm->from, bm->to, r->guid);
}

/*
 * Make every live record's body of mailbox id present in partition to,
 * durably, before the metadata says the mailbox lives there.  Bodies
 * are named by content, so a copy left behind by a later failure is
 * harmless (gc takes it).
 */
static int
store_move_bodies(struct store *s, int64_t id, const char *from,
    const char *to)
{
	struct store_bodymove bm;
	int rc;

	if ((bm.ig = store_ingest_begin(s)) == NULL)
		return -1;
	bm.s = s;
	bm.from = from;
	bm.to = to;
	rc = store_record_foreach(s, id, 0, store_bodymove_cb, &bm);
	if (rc == 0)
		rc = store_ingest_commit(bm.ig);
	store_ingest_free(bm.ig);
	return rc == 0 ? 0 : -1;
}

/*
 * Rename a mailbox and/or move it to newpartition (NULL: unchanged),
 * bodies included.  STORE_EXISTS if newname is taken by another mailbox.
 */
int
store_mailbox_rename(struct store *s, int64_t id, const char *newname,
    const char *newpartition)
{
	struct store_mailbox mb;
	sqlite3_stmt *st;
	int rc;

	if (store_need_txn(s) == -1)
		return -1;
	if (newname == NULL || !mboxname_valid(newname)) {
		store_seterr(s, "bad mailbox name");
		return -1;
	}
	if (newpartition != NULL && !partition_name_valid(newpartition)) {
		store_seterr(s, "bad partition name");
		return -1;
	}
	if ((rc = store_mb_get_id(s, id, &mb)) != 0)
		return rc == STORE_NOTFOUND ? -1 : rc;
	if ((rc = store_mb_taken(s, newname, NULL, id)) != 0)
		goto out;
	rc = -1;
	if (newpartition != NULL && mb.partition != NULL &&
	    strcmp(newpartition, mb.partition) != 0 &&
	    store_move_bodies(s, id, mb.partition, newpartition) == -1)
		goto out;
	if ((st = store_q(s, Q_MB_RENAME)) == NULL)
		goto out;
	store_bind_text(st, 1, newname);
	store_bind_text(st, 2, newpartition ? newpartition : mb.partition);
	sqlite3_bind_int64(st, 3, id);
	if (store_step_done(s, st, "rename mailbox") == -1)
		goto out;
	if (store_tomb_del(s, newname) == -1)
		goto out;
	if (strcmp(mb.name, newname) != 0 &&
	    store_log_add(s, "RENAME", mb.name, newname) == -1)
		goto out;
	if (store_log_mailbox(s, mb.name) == -1)
		goto out;
	rc = store_log_mailbox(s, newname);
out:
	store_mailbox_clear(&mb);
	return rc;
}

/*
 * Free the strings of a mailbox filled by a get and zero it.
 */
void
store_mailbox_clear(struct store_mailbox *mb)
{
	if (mb == NULL)
		return;
	free(mb->uniqueid);
	free(mb->name);
	free(mb->mbtype);
	free(mb->partition);
	free(mb->acl);
	free(mb->options);
	free(mb->quotaroot);
	memset(mb, 0, sizeof(*mb));
}

struct store_mbwalk {
	store_mailbox_cb	 cb;
	void			*arg;
};

static int
store_mb_row(struct store *s, sqlite3_stmt *st, void *arg)
{
	struct store_mbwalk *w = arg;
	struct store_mailbox mb;
	int rc;

	if (store_mb_from_row(s, st, &mb) == -1)
		return -1;
	rc = w->cb(&mb, w->arg);
	store_mailbox_clear(&mb);
	return rc;
}

/* Walk the mailbox rows of a fresh statement. */
static int
store_mb_walk(struct store *s, sqlite3_stmt *st, store_mailbox_cb cb,
    void *arg)
{
	struct store_mbwalk w = { cb, arg };

	return store_rows(s, st, "mailbox list", store_mb_row, &w);
}

/* "p" with its last byte raised by one: the end of the range of names
 * that start with p (names are 7-bit, so no overflow). */
static int
store_range_end(char *buf, size_t size, const char *p)
{
	size_t n = strlcpy(buf, p, size);

	if (n == 0 || n >= size)
		return -1;
	buf[n - 1] = (char)(buf[n - 1] + 1);
	return 0;
}

/*
 * A user's mailboxes, their delayed-delete copies included, in name
 * order; see store.h.
 */
int
store_mailbox_foreach_user(struct store *s, const char *userid,
    store_mailbox_cb cb, void *arg)
{
	char sub[MAX_MAILBOX_NAME + 8], subend[MAX_MAILBOX_NAME + 8];
	char del[MAX_MAILBOX_NAME + 80], delend[MAX_MAILBOX_NAME + 80];
	const char *dp, *bang;
	char *inbox;
	sqlite3_stmt *st;
	int n;

	if (userid == NULL || !userid_valid(userid)) {
		store_seterr(s, "bad userid");
		return -1;
	}
	if ((inbox = mboxname_user_inbox(userid)) == NULL) {
		store_seterr(s, "%s: no mailbox name for this userid", userid);
		return -1;
	}
	dp = conf_get(s->conf, NULL, "deletedprefix", "DELETED");
	bang = strchr(inbox, '!');
	n = snprintf(sub, sizeof(sub), "%s.", inbox);
	if (n < 0 || (size_t)n >= sizeof(sub))
		goto toolong;
	if (bang != NULL)
		n = snprintf(del, sizeof(del), "%.*s%s.%s.",
		    (int)(bang - inbox + 1), inbox, dp, bang + 1);
	else
		n = snprintf(del, sizeof(del), "%s.%s.", dp, inbox);
	if (n < 0 || (size_t)n >= sizeof(del))
		goto toolong;
	if (store_range_end(subend, sizeof(subend), sub) == -1 ||
	    store_range_end(delend, sizeof(delend), del) == -1)
		goto toolong;
	/* The user's own tree first, then the delayed-delete copies, as
	 * Cyrus walks them. */
	st = store_prepare(s, "SELECT " MB_COLS " FROM mailboxes "
	    "WHERE name = ?1 OR (name >= ?2 AND name < ?3) "
	    "OR (name >= ?4 AND name < ?5) "
	    "ORDER BY (name >= ?4 AND name < ?5), name COLLATE " STORE_COLL,
	    inbox, sub, subend, del, delend, NULL);
	free(inbox);
	return store_mb_walk(s, st, cb, arg);
toolong:
	free(inbox);
	store_seterr(s, "%s: userid too long", userid);
	return -1;
}

/*
 * Every mailbox, or those whose name starts with prefix, in Cyrus's
 * name order.
 */
int
store_mailbox_foreach(struct store *s, const char *prefix,
    store_mailbox_cb cb, void *arg)
{
	char end[MAX_MAILBOX_NAME + 8];

	if (prefix == NULL || *prefix == '\0')
		return store_mb_walk(s, store_prepare(s, "SELECT " MB_COLS
		    " FROM mailboxes ORDER BY name COLLATE " STORE_COLL, NULL),
		    cb, arg);
	if (store_range_end(end, sizeof(end), prefix) == -1) {
		store_seterr(s, "prefix too long");
		return -1;
	}
	return store_mb_walk(s, store_prepare(s, "SELECT " MB_COLS
	    " FROM mailboxes WHERE name >= ?1 AND name < ?2 "
	    "ORDER BY name COLLATE " STORE_COLL, prefix, end, NULL), cb, arg);
}

/* ------------------------------------------------------------ tombstones */

/*
 * The tombstone of name.  0, STORE_NOTFOUND or -1.
 */
int
store_tombstone_get(struct store *s, const char *name,
    struct store_tombstone *t)
{
	sqlite3_stmt *st;
	int rc;

	memset(t, 0, sizeof(*t));
	if (name == NULL) {
		store_seterr(s, "no name");
		return -1;
	}
	if ((st = store_q(s, Q_TOMB_GET)) == NULL)
		return -1;
	store_bind_text(st, 1, name);
	if ((rc = store_row1(s, st, "tombstone")) != 0)
		return rc;
	if (store_col_dup(s, st, 0, &t->name) == -1 ||
	    store_col_dup(s, st, 1, &t->uniqueid) == -1) {
		store_tombstone_clear(t);
		rc = -1;
	} else {
		t->modseq = (uint64_t)sqlite3_column_int64(st, 2);
		t->deleted_at = sqlite3_column_int64(st, 3);
	}
	sqlite3_reset(st);
	return rc;
}

/*
 * Forget the tombstone of name (none is not an error).
 */
int
store_tombstone_delete(struct store *s, const char *name)
{
	if (store_need_txn(s) == -1)
		return -1;
	return store_tomb_del(s, name);
}

/*
 * Free what store_tombstone_get filled.
 */
void
store_tombstone_clear(struct store_tombstone *t)
{
	if (t == NULL)
		return;
	free(t->name);
	free(t->uniqueid);
	memset(t, 0, sizeof(*t));
}

/* ----------------------------------------------------------- annotations */

/*
 * Free an annotation array.
 */
void
store_annots_free(struct store_annot *a, size_t n)
{
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(a[i].entry);
		free(a[i].userid);
		free(a[i].value);
	}
	free(a);
}

/* Read (entry, userid, modseq, value) rows into a new array. */
static int
store_annots_read(struct store *s, sqlite3_stmt *st, struct store_annot **out,
    size_t *nout)
{
	struct store_annot *a = NULL, *na;
	size_t n = 0, cap = 0;
	int rc;

	*out = NULL;
	*nout = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			if ((na = reallocarray(a, cap, sizeof(*a))) == NULL) {
				store_annots_free(a, n);
				sqlite3_reset(st);
				return store_nomem(s);
			}
			a = na;
		}
		memset(&a[n], 0, sizeof(a[n]));
		n++;
		if (store_col_dup(s, st, 0, &a[n - 1].entry) == -1 ||
		    store_col_dup(s, st, 1, &a[n - 1].userid) == -1 ||
		    store_col_blob(s, st, 3, &a[n - 1].value,
		    &a[n - 1].valuelen) == -1) {
			store_annots_free(a, n);
			sqlite3_reset(st);
			return -1;
		}
		a[n - 1].modseq = (uint64_t)sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_annots_free(a, n);
		return store_dberr(s, "annotations");
	}
	*out = a;
	*nout = n;
	return 0;
}

static int
store_annot_check(struct store *s, const struct store_annot *a)
{
	if (!store_token_valid(a->entry, STORE_MAX_ID, 0)) {
		store_seterr(s, "bad annotation entry");
		return -1;
	}
	if (a->userid == NULL ||
	    (*a->userid != '\0' && !userid_valid(a->userid))) {
		store_seterr(s, "%s: bad annotation userid", a->entry);
		return -1;
	}
	if (a->valuelen > STORE_MAX_VALUE) {
		store_seterr(s, "%s: annotation value too large", a->entry);
		return -1;
	}
	if (a->valuelen > 0 && a->value == NULL) {
		store_seterr(s, "%s: annotation value missing", a->entry);
		return -1;
	}
	return 0;
}

static int
store_mbannot_log(struct store *s, int64_t mbid)
{
	struct store_mailbox mb;
	int rc;

	if (mbid == 0)
		return store_log_add(s, "ANNOTATION", "", NULL);
	if ((rc = store_mb_get_id(s, mbid, &mb)) != 0)
		return rc == STORE_NOTFOUND ? -1 : rc;
	rc = store_log_mailbox(s, mb.name);
	store_mailbox_clear(&mb);
	return rc;
}

/*
 * Mailbox annotations of mbid (0: server), sorted by (entry, userid).
 * Free with store_annots_free().
 */
int
store_mbannot_list(struct store *s, int64_t mbid, struct store_annot **out,
    size_t *nout)
{
	sqlite3_stmt *st;

	/* Once per mailbox of a user's sync: keep the statement. */
	if ((st = store_q(s, Q_MBA_LIST)) == NULL) {
		*out = NULL;
		*nout = 0;
		return -1;
	}
	sqlite3_bind_int64(st, 1, mbid);
	return store_annots_read(s, st, out, nout);
}

static int
store_mbannot_put(struct store *s, int64_t mbid, const struct store_annot *a)
{
	sqlite3_stmt *st;

	if (a->valuelen == 0) {
		if ((st = store_q(s, Q_MBA_DEL_ONE)) == NULL)
			return -1;
		sqlite3_bind_int64(st, 1, mbid);
		store_bind_text(st, 2, a->entry);
		store_bind_text(st, 3, a->userid);
		return store_step_done(s, st, "delete annotation");
	}
	if ((st = store_q(s, Q_MBA_UPSERT)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbid);
	store_bind_annot(st, 2, a);
	return store_step_done(s, st, "set annotation");
}

static int
store_mbid_check(struct store *s, int64_t mbid)
{
	struct store_mailbox mb;
	int rc;

	if (mbid == 0)
		return 0;
	rc = store_mb_get_id(s, mbid, &mb);
	store_mailbox_clear(&mb);
	return rc == 0 ? 0 : -1;
}

/*
 * Make the mailbox annotations of mbid equal to a[0..n) (empty values
 * are left out).
 */
int
store_mbannot_replace(struct store *s, int64_t mbid,
    const struct store_annot *a, size_t n)
{
	sqlite3_stmt *st;
	size_t i;

	if (store_need_txn(s) == -1 || store_mbid_check(s, mbid) == -1)
		return -1;
	for (i = 0; i < n; i++)
		if (store_annot_check(s, &a[i]) == -1)
			return -1;
	if ((st = store_q(s, Q_MBA_DEL_ALL)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbid);
	if (store_step_done(s, st, "delete annotations") == -1)
		return -1;
	for (i = 0; i < n; i++)
		if (store_mbannot_put(s, mbid, &a[i]) == -1)
			return -1;
	return store_mbannot_log(s, mbid);
}

/*
 * Set one mailbox annotation; an empty value deletes it.
 */
int
store_mbannot_set(struct store *s, int64_t mbid, const struct store_annot *a)
{
	if (store_need_txn(s) == -1 || store_mbid_check(s, mbid) == -1 ||
	    store_annot_check(s, a) == -1)
		return -1;
	if (store_mbannot_put(s, mbid, a) == -1)
		return -1;
	return store_mbannot_log(s, mbid);
}

/* --------------------------------------------------------------- records */

static int
store_guid_valid(const char *g)
{
	size_t i;

	if (g == NULL)
		return 0;
	for (i = 0; i < 40; i++)
		if (!isxdigit((unsigned char)g[i]))
			return 0;
	return g[40] == '\0';
}

static void
store_guid_lower(char out[41], const char *g)
{
	size_t i;

	for (i = 0; i < 40; i++)
		out[i] = (char)tolower((unsigned char)g[i]);
	out[40] = '\0';
}

/*
 * Free what a record get filled and zero it.
 */
void
store_record_clear(struct store_record *r)
{
	if (r == NULL)
		return;
	free(r->keywords);
	store_annots_free(r->annots, r->nannots);
	memset(r, 0, sizeof(*r));
}

static int
store_rec_from_row(struct store *s, sqlite3_stmt *st, struct store_record *r)
{
	memset(r, 0, sizeof(*r));
	r->uid = (uint32_t)sqlite3_column_int64(st, 0);
	r->modseq = (uint64_t)sqlite3_column_int64(st, 1);
	r->last_updated = sqlite3_column_int64(st, 2);
	r->internaldate = sqlite3_column_int64(st, 3);
	r->size = (uint32_t)sqlite3_column_int64(st, 4);
	store_col_copy(st, 5, r->guid, sizeof(r->guid));
	r->sysflags = (unsigned)sqlite3_column_int64(st, 6);
	if (store_col_dup(s, st, 7, &r->keywords) == -1)
		return -1;
	r->cid = (uint64_t)sqlite3_column_int64(st, 8);
	r->savedate = sqlite3_column_int64(st, 9);
	r->createdmodseq = (uint64_t)sqlite3_column_int64(st, 10);
	return 0;
}

static int
store_rec_annots(struct store *s, int64_t mbid, struct store_record *r)
{
	sqlite3_stmt *st;

	if ((st = store_q(s, Q_REC_ANNOT_LIST)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbid);
	sqlite3_bind_int64(st, 2, r->uid);
	return store_annots_read(s, st, &r->annots, &r->nannots);
}

/*
 * One record with its annotations.  0, STORE_NOTFOUND or -1; free with
 * store_record_clear().
 */
int
store_record_get(struct store *s, int64_t mbid, uint32_t uid,
    struct store_record *r)
{
	sqlite3_stmt *st;
	int rc;

	memset(r, 0, sizeof(*r));
	if ((st = store_q(s, Q_REC_GET)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbid);
	sqlite3_bind_int64(st, 2, uid);
	if ((rc = store_row1(s, st, "record lookup")) != 0)
		return rc;
	rc = store_rec_from_row(s, st, r);
	sqlite3_reset(st);
	if (rc == 0)
		rc = store_rec_annots(s, mbid, r);
	if (rc != 0)
		store_record_clear(r);
	return rc;
}

/*
 * Records of mbid with modseq > sincemodseq in UID order, with their
 * annotations.  A non-zero return from cb stops the walk.
 */
struct store_recwalk {
	int64_t		 mbid;
	store_record_cb	 cb;
	void		*arg;
};

static int
store_rec_row(struct store *s, sqlite3_stmt *st, void *arg)
{
	struct store_recwalk *w = arg;
	struct store_record r;
	int rc = -1;

	if (store_rec_from_row(s, st, &r) == 0 &&
	    store_rec_annots(s, w->mbid, &r) == 0)
		rc = w->cb(&r, w->arg);
	store_record_clear(&r);
	return rc;
}

int
store_record_foreach(struct store *s, int64_t mbid, uint64_t sincemodseq,
    store_record_cb cb, void *arg)
{
	struct store_recwalk w = { mbid, cb, arg };
	sqlite3_stmt *st;

	if ((st = store_prepare(s, "SELECT " REC_COLS " FROM records "
	    "WHERE mbid = ?1 AND modseq > ?2 ORDER BY uid", NULL)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbid);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)sincemodseq);
	return store_rows(s, st, "record list", store_rec_row, &w);
}

static int
store_rec_check(struct store *s, const struct store_record *r)
{
	size_t i;

	if (r->uid == 0) {
		store_seterr(s, "record with UID 0");
		return -1;
	}
	if (!store_guid_valid(r->guid)) {
		store_seterr(s, "UID %" PRIu32 ": bad GUID", r->uid);
		return -1;
	}
	if (r->keywords != NULL && strlen(r->keywords) > STORE_MAX_STRING) {
		store_seterr(s, "UID %" PRIu32 ": keywords too long", r->uid);
		return -1;
	}
	if (r->nannots > 0 && r->annots == NULL) {
		store_seterr(s, "UID %" PRIu32 ": annotations missing", r->uid);
		return -1;
	}
	for (i = 0; i < r->nannots; i++)
		if (store_annot_check(s, &r->annots[i]) == -1)
			return -1;
	return 0;
}

/* Name, partition and CRCs of a mailbox (the record_put hot path). */
struct store_mbhead {
	char		name[MAX_MAILBOX_NAME + 1];
	char		partition[128];
	int		has_partition;
	uint32_t	crc, crc_annot;
};

static int
store_mb_head(struct store *s, int64_t mbid, struct store_mbhead *h)
{
	sqlite3_stmt *st;
	int rc;

	if ((st = store_q(s, Q_MB_HEAD)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbid);
	if ((rc = store_row1(s, st, "mailbox lookup")) != 0) {
		if (rc == STORE_NOTFOUND)
			store_seterr(s, "no mailbox with id %" PRId64, mbid);
		return -1;
	}
	store_col_copy(st, 0, h->name, sizeof(h->name));
	h->has_partition = sqlite3_column_type(st, 1) != SQLITE_NULL;
	store_col_copy(st, 1, h->partition, sizeof(h->partition));
	h->crc = (uint32_t)sqlite3_column_int64(st, 2);
	h->crc_annot = (uint32_t)sqlite3_column_int64(st, 3);
	sqlite3_reset(st);
	return 0;
}

/*
 * Insert or replace a record, its annotations and the mailbox CRCs; see
 * store.h.
 */
int
store_record_put(struct store *s, int64_t mbid, const struct store_record *r)
{
	struct store_mbhead h;
	struct store_record old;
	char guid[41];
	sqlite3_stmt *st;
	uint32_t crc, crca;
	size_t i;
	int rc, isnew;

	if (store_need_txn(s) == -1 || store_rec_check(s, r) == -1)
		return -1;
	if (store_mb_head(s, mbid, &h) == -1)
		return -1;
	store_guid_lower(guid, r->guid);
	if (!(r->sysflags & SF_EXPUNGED)) {
		if (!h.has_partition) {
			store_seterr(s, "%s: mailbox has no partition", h.name);
			return -1;
		}
		rc = store_body_exists(s, h.partition, guid);
		if (rc == -1)
			return -1;
		if (rc == 0) {
			store_seterr(s, "%s UID %" PRIu32 ": body %s not in "
			    "partition %s", h.name, r->uid, guid, h.partition);
			return -1;
		}
	}
	crc = h.crc;
	crca = h.crc_annot;
	rc = store_record_get(s, mbid, r->uid, &old);
	if (rc == -1)
		return -1;
	isnew = rc == STORE_NOTFOUND;
	if (!isnew) {
		crc ^= synccrc_record_basic(&old);
		crca ^= synccrc_record_annot(&old);
		store_record_clear(&old);
	}
	crc ^= synccrc_record_basic(r);
	crca ^= synccrc_record_annot(r);

	if ((st = store_q(s, Q_REC_UPSERT)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbid);
	sqlite3_bind_int64(st, 2, r->uid);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)r->modseq);
	sqlite3_bind_int64(st, 4, r->last_updated);
	sqlite3_bind_int64(st, 5, r->internaldate);
	sqlite3_bind_int64(st, 6, r->size);
	store_bind_text(st, 7, guid);
	sqlite3_bind_int64(st, 8, r->sysflags);
	store_bind_text(st, 9, r->keywords ? r->keywords : "");
	sqlite3_bind_int64(st, 10, (sqlite3_int64)r->cid);
	sqlite3_bind_int64(st, 11, r->savedate);
	sqlite3_bind_int64(st, 12, (sqlite3_int64)r->createdmodseq);
	if (store_step_done(s, st, "write record") == -1)
		return -1;
	if (!isnew) {
		if ((st = store_q(s, Q_REC_ANNOT_DEL)) == NULL)
			return -1;
		sqlite3_bind_int64(st, 1, mbid);
		sqlite3_bind_int64(st, 2, r->uid);
		if (store_step_done(s, st, "delete annotations") == -1)
			return -1;
	}
	for (i = 0; i < r->nannots; i++) {
		const struct store_annot *a = &r->annots[i];

		if (a->valuelen == 0)
			continue;	/* an empty value is no annotation */
		if ((st = store_q(s, Q_REC_ANNOT_INS)) == NULL)
			return -1;
		sqlite3_bind_int64(st, 1, mbid);
		sqlite3_bind_int64(st, 2, r->uid);
		store_bind_annot(st, 3, a);
		if (store_step_done(s, st, "write annotation") == -1)
			return -1;
	}
	if (crc != h.crc || crca != h.crc_annot) {
		if ((st = store_q(s, Q_MB_SET_CRC)) == NULL)
			return -1;
		sqlite3_bind_int64(st, 1, crc);
		sqlite3_bind_int64(st, 2, crca);
		sqlite3_bind_int64(st, 3, mbid);
		if (store_step_done(s, st, "update CRCs") == -1)
			return -1;
	}
	return store_log_add(s, isnew ? "APPEND" : "MAILBOX", h.name, NULL);
}

struct store_crcacc {
	uint32_t	crc, crca;
};

static int
store_crc_cb(const struct store_record *r, void *arg)
{
	struct store_crcacc *acc = arg;

	acc->crc ^= synccrc_record_basic(r);
	acc->crca ^= synccrc_record_annot(r);
	return 0;
}

/*
 * Both CRCs of a mailbox computed afresh from its records.
 */
int
store_mailbox_crc_recalc(struct store *s, int64_t id, uint32_t *crc,
    uint32_t *crc_annot)
{
	struct store_crcacc acc = { 0, SYNCCRC_ANNOT_INIT };
	struct store_mbhead h;

	if (store_mb_head(s, id, &h) == -1)
		return -1;
	if (store_record_foreach(s, id, 0, store_crc_cb, &acc) != 0)
		return -1;
	*crc = acc.crc;
	*crc_annot = acc.crca;
	return 0;
}

/* ---------------------------------------------------------------- bodies */

/*
 * The directory of a configured, well-named partition, or NULL.  The last
 * answer is kept: one partition is the common case, and the lookup
 * formats a key on every call.
 */
static const char *
store_partdir(struct store *s, const char *partition)
{
	const char *dir;

	if (s->partdir != NULL && partition != NULL &&
	    strcmp(partition, s->partname) == 0)
		return s->partdir;
	if (partition == NULL || !partition_name_valid(partition)) {
		store_seterr(s, "bad partition name");
		return NULL;
	}
	if ((dir = conf_partition_path(s->conf, partition)) == NULL ||
	    *dir == '\0') {
		store_seterr(s, "partition %s is not configured", partition);
		return NULL;
	}
	if (strlcpy(s->partname, partition, sizeof(s->partname)) <
	    sizeof(s->partname)) {
		if (s->partdir != dir)
			memset(s->fanout, 0, sizeof(s->fanout));
		s->partdir = dir;
	} else
		s->partdir = NULL;
	return dir;
}

static const char store_hexdig[] = "0123456789abcdef";

/* 20 bytes as 40 lower-case hex digits and a NUL. */
static void
store_hex20(char out[41], const unsigned char *md)
{
	int i;

	for (i = 0; i < 20; i++) {
		out[2 * i] = store_hexdig[md[i] >> 4];
		out[2 * i + 1] = store_hexdig[md[i] & 0x0f];
	}
	out[40] = '\0';
}

/* Value of one hex digit (already checked). */
static unsigned
store_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return (unsigned)(c - '0');
	return (unsigned)((c | 0x20) - 'a' + 10);
}

/* Index of a GUID's fan-out directory bodies/ab/cd: 0xabcd. */
static unsigned
store_fanout_idx(const char *g)
{
	return store_hexval(g[0]) << 12 | store_hexval(g[1]) << 8 |
	    store_hexval(g[2]) << 4 | store_hexval(g[3]);
}

static int
store_fmt(struct store *s, char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
store_fmt(struct store *s, char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size) {
		store_seterr(s, "path too long");
		return -1;
	}
	return 0;
}

/*
 * Path of a body in a configured partition; fails for an unknown
 * partition or a GUID that is not 40 hex digits.
 */
int
store_body_path(struct store *s, const char *partition, const char *guid,
    char *buf, size_t size)
{
	const char *dir;
	char g[41];

	if ((dir = store_partdir(s, partition)) == NULL)
		return -1;
	if (!store_guid_valid(guid)) {
		store_seterr(s, "bad GUID");
		return -1;
	}
	store_guid_lower(g, guid);
	return store_fmt(s, buf, size, "%s/bodies/%.2s/%.2s/%s", dir, g,
	    g + 2, g);
}

/*
 * 1 if the body is in the partition (its size in *size), 0 if not, -1 on
 * error.
 */
int
store_body_size(struct store *s, const char *partition, const char *guid,
    uint64_t *size)
{
	char path[4096];
	struct stat sb;

	if (store_body_path(s, partition, guid, path, sizeof(path)) == -1)
		return -1;
	if (stat(path, &sb) == 0) {
		if (!S_ISREG(sb.st_mode))
			return 0;
		if (size != NULL)
			*size = (uint64_t)sb.st_size;
		return 1;
	}
	if (errno == ENOENT || errno == ENOTDIR)
		return 0;
	store_seterr(s, "%s: %s", path, strerror(errno));
	return -1;
}

/*
 * 1 if the body is in the partition, 0 if not, -1 on error.
 */
int
store_body_exists(struct store *s, const char *partition, const char *guid)
{
	return store_body_size(s, partition, guid, NULL);
}

enum { ING_OPEN, ING_CLOSED, ING_FAILED, ING_DONE };

struct store_ingest_file {
	char		 partition[128];
	char		 guid[41];
	uint64_t	 size, written;
	EVP_MD_CTX	*md;
	size_t		 idx;		/* position in the batch */
	size_t		 tmpsize;
	int		 fd;
	int		 state;
	char		 tmp[];		/* the staging file; "" once placed */
};

struct store_ingest {
	struct store			 *s;
	struct store_ingest_file	**files;
	size_t				  n, cap;
	uint32_t			 *hash;	/* closed files: index + 1 */
	size_t				  hcap, nhashed;
	const char			 *stagedir;	/* partition dir whose
							   stage/ exists */
	unsigned			  seq;		/* temp file names */
	long				  pid;
};

/*
 * Start an empty batch of bodies.  NULL if out of memory.
 */
struct store_ingest *
store_ingest_begin(struct store *s)
{
	struct store_ingest *ig;

	if ((ig = calloc(1, sizeof(*ig))) == NULL) {
		store_nomem(s);
		return NULL;
	}
	ig->s = s;
	ig->pid = (long)getpid();
	return ig;
}

static int
store_mkdir(struct store *s, const char *path)
{
	if (mkdir(path, 0750) == -1 && errno != EEXIST) {
		store_seterr(s, "%s: mkdir: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static void
store_ingest_drop(struct store_ingest_file *f)
{
	if (f->fd != -1) {
		close(f->fd);
		f->fd = -1;
	}
	if (f->md != NULL) {
		EVP_MD_CTX_free(f->md);
		f->md = NULL;
	}
	if (f->state != ING_DONE && f->tmp[0] != '\0')
		unlink(f->tmp);
	f->tmp[0] = '\0';
}

/*
 * Start one body of the batch in the partition's staging directory; NULL
 * (store_error) for an unknown partition, a bad GUID or a disk error.
 */
void *
store_ingest_open(struct store_ingest *ig, const char *partition,
    const char *guid, uint64_t size)
{
	struct store *s = ig->s;
	struct store_ingest_file *f;
	char stage[4096];
	const char *dir;
	size_t tmpsize;
	int tries;

	if ((dir = store_partdir(s, partition)) == NULL)
		return NULL;
	if (!store_guid_valid(guid)) {
		store_seterr(s, "bad GUID");
		return NULL;
	}
	if (store_fmt(s, stage, sizeof(stage), "%s/stage", dir) == -1)
		return NULL;
	if (ig->stagedir != dir) {
		if (store_mkdir(s, stage) == -1)
			return NULL;
		ig->stagedir = dir;
	}
	if (ig->n == ig->cap) {
		size_t ncap = ig->cap ? ig->cap * 2 : 64;
		struct store_ingest_file **nf;

		nf = reallocarray(ig->files, ncap, sizeof(*nf));
		if (nf == NULL) {
			store_nomem(s);
			return NULL;
		}
		ig->files = nf;
		ig->cap = ncap;
	}
	/*
	 * Sized for the staging name only: a batch holds thousands of
	 * these, and their memory is touched on every allocation.
	 */
	tmpsize = strlen(stage) + 1 + 40 + 2 * (1 + 20) + 1;
	if ((f = calloc(1, sizeof(*f) + tmpsize)) == NULL) {
		store_nomem(s);
		return NULL;
	}
	f->tmpsize = tmpsize;
	f->fd = -1;
	f->size = size;
	f->state = ING_FAILED;
	strlcpy(f->partition, partition, sizeof(f->partition));
	store_guid_lower(f->guid, guid);
	/*
	 * A name no other live writer uses (pid and a counter), created
	 * exclusively; a leftover of a dead process with the same pid is
	 * stepped over.  The mode is set at creation unless the umask
	 * would narrow it.
	 */
	for (tries = 0; tries < 100; tries++) {
		if (store_fmt(s, f->tmp, f->tmpsize, "%s/%s.%ld.%u",
		    stage, f->guid, ig->pid, ig->seq++) == -1) {
			free(f);
			return NULL;
		}
		f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0640);
		if (f->fd != -1 || errno != EEXIST)
			break;
	}
	if (f->fd == -1) {
		store_seterr(s, "%s: %s", f->tmp, strerror(errno));
		free(f);
		return NULL;
	}
	if ((0640 & ~s->umask) != 0640)
		fchmod(f->fd, 0640);
	if ((f->md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(f->md, EVP_sha1(), NULL) != 1) {
		store_seterr(s, "SHA-1 unavailable");
		store_ingest_drop(f);
		free(f);
		return NULL;
	}
	f->state = ING_OPEN;
	f->idx = ig->n;
	ig->files[ig->n++] = f;
	return f;
}

/*
 * Append bytes to an open body, hashing them.  -1 (and the body is
 * failed) on a write error or more bytes than announced.
 */
int
store_ingest_write(struct store_ingest *ig, void *h, const void *buf,
    size_t len)
{
	struct store_ingest_file *f = h;
	const char *p = buf;
	ssize_t n;

	if (f == NULL || f->state != ING_OPEN) {
		store_seterr(ig->s, "body not open");
		return -1;
	}
	if (len > f->size - f->written) {
		store_seterr(ig->s, "%s: more bytes than announced", f->guid);
		goto fail;
	}
	if (EVP_DigestUpdate(f->md, buf, len) != 1) {
		store_seterr(ig->s, "SHA-1 failed");
		goto fail;
	}
	f->written += len;
	while (len > 0) {
		n = write(f->fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			store_seterr(ig->s, "%s: %s", f->tmp, strerror(errno));
			goto fail;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
fail:
	f->state = ING_FAILED;
	store_ingest_drop(f);
	return -1;
}

static void
store_ingest_index(struct store_ingest *ig, size_t idx)
{
	const struct store_ingest_file *f = ig->files[idx];
	uint32_t h;
	size_t j;

	h = (uint32_t)strtoul(f->guid + 32, NULL, 16);
	j = h & (ig->hcap - 1);
	while (ig->hash[j] != 0)
		j = (j + 1) & (ig->hcap - 1);
	ig->hash[j] = (uint32_t)(idx + 1);
}

static int
store_ingest_remember(struct store_ingest *ig, size_t idx)
{
	size_t i;

	if ((ig->nhashed + 1) * 2 > ig->hcap) {
		size_t ncap = ig->hcap ? ig->hcap * 2 : 128;
		uint32_t *nh;

		if ((nh = calloc(ncap, sizeof(*nh))) == NULL)
			return store_nomem(ig->s);
		free(ig->hash);
		ig->hash = nh;
		ig->hcap = ncap;
		for (i = 0; i < ig->n; i++)
			if (i != idx && (ig->files[i]->state == ING_CLOSED ||
			    ig->files[i]->state == ING_DONE))
				store_ingest_index(ig, i);
	}
	store_ingest_index(ig, idx);
	ig->nhashed++;
	return 0;
}

/*
 * Finish one body: ok = 0 drops it; otherwise its size and SHA-1 must
 * match what was announced (else -1 and the file is removed).
 */
int
store_ingest_close(struct store_ingest *ig, void *h, int ok)
{
	struct store_ingest_file *f = h;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[41];

	if (f == NULL) {
		store_seterr(ig->s, "no body");
		return -1;
	}
	if (f->state != ING_OPEN) {
		store_seterr(ig->s, "%s: body not open", f->guid);
		return -1;
	}
	f->state = ING_FAILED;
	if (!ok) {
		store_seterr(ig->s, "%s: body incomplete", f->guid);
		goto fail;
	}
	if (f->written != f->size) {
		store_seterr(ig->s, "%s: %" PRIu64 " bytes, expected %" PRIu64,
		    f->guid, f->written, f->size);
		goto fail;
	}
	if (EVP_DigestFinal_ex(f->md, md, &mdlen) != 1 || mdlen != 20) {
		store_seterr(ig->s, "SHA-1 failed");
		goto fail;
	}
	store_hex20(hex, md);
	if (memcmp(hex, f->guid, 41) != 0) {
		store_seterr(ig->s, "body does not match GUID %s (SHA-1 %s)",
		    f->guid, hex);
		goto fail;
	}
	/* Durability is the commit's job, once for the whole batch. */
	if (close(f->fd) == -1) {
		f->fd = -1;
		store_seterr(ig->s, "%s: %s", f->tmp, strerror(errno));
		goto fail;
	}
	f->fd = -1;
	EVP_MD_CTX_free(f->md);
	f->md = NULL;
	f->state = ING_CLOSED;
	if (store_ingest_remember(ig, f->idx) == -1)
		goto fail;
	return 0;
fail:
	f->state = ING_FAILED;
	store_ingest_drop(f);
	return -1;
}

static int
store_syncfs_dir(struct store *s, const char *dir)
{
	int fd, rc = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		store_seterr(s, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (syncfs(fd) == -1) {
		store_seterr(s, "%s: syncfs: %s", dir, strerror(errno));
		rc = -1;
	}
	close(fd);
	return rc;
}

/* One flush per distinct partition of the batch's files in state. */
static int
store_ingest_flush(struct store_ingest *ig, int state)
{
	const char *seen[64];
	size_t nseen = 0, i, j;

	for (i = 0; i < ig->n; i++) {
		struct store_ingest_file *f = ig->files[i];

		if (f->state != state)
			continue;
		for (j = 0; j < nseen; j++)
			if (strcmp(seen[j], f->partition) == 0)
				break;
		if (j < nseen)
			continue;
		if (store_syncfs_dir(ig->s, conf_partition_path(ig->s->conf,
		    f->partition)) == -1)
			return -1;
		if (nseen < sizeof(seen) / sizeof(seen[0]))
			seen[nseen++] = f->partition;
	}
	return 0;
}

/* bodies/ab/cd of a GUID in dir, the leaf first: its parents usually
 * exist already. */
static int
store_fanout_make(struct store *s, const char *dir, const char *g)
{
	char d[4096];

	if (store_fmt(s, d, sizeof(d), "%s/bodies/%.2s/%.2s", dir, g,
	    g + 2) == -1)
		return -1;
	if (mkdir(d, 0750) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT) {
		store_seterr(s, "%s: mkdir: %s", d, strerror(errno));
		return -1;
	}
	if (store_fmt(s, d, sizeof(d), "%s/bodies", dir) == -1 ||
	    store_mkdir(s, d) == -1 ||
	    store_fmt(s, d, sizeof(d), "%s/bodies/%.2s", dir, g) == -1 ||
	    store_mkdir(s, d) == -1 ||
	    store_fmt(s, d, sizeof(d), "%s/bodies/%.2s/%.2s", dir, g,
	    g + 2) == -1)
		return -1;
	return store_mkdir(s, d);
}

static int
store_ingest_place(struct store_ingest *ig, struct store_ingest_file *f)
{
	struct store *s = ig->s;
	const char *dir;
	char path[4096];
	unsigned fo;
	int known, rc = -1;

	if ((dir = store_partdir(s, f->partition)) == NULL)
		return -1;
	if (store_fmt(s, path, sizeof(path), "%s/bodies/%.2s/%.2s/%s", dir,
	    f->guid, f->guid + 2, f->guid) == -1)
		return -1;
	/*
	 * A fan-out directory seen to exist in this process is trusted (a
	 * failed rename still creates it); any other is made first, which
	 * in a young store saves a rename bound to fail.  A body already in
	 * place has the same bytes (same GUID), so replacing it is
	 * harmless.
	 */
	fo = store_fanout_idx(f->guid);
	known = (s->fanout[fo >> 3] & (1u << (fo & 7))) != 0;
	if (known && (rc = rename(f->tmp, path)) == -1 && errno == ENOENT)
		known = 0;
	if (!known) {
		if (store_fanout_make(s, dir, f->guid) == -1)
			return -1;
		rc = rename(f->tmp, path);
	}
	if (rc == -1) {
		store_seterr(s, "%s: rename: %s", path, strerror(errno));
		return -1;
	}
	s->fanout[fo >> 3] |= (unsigned char)(1u << (fo & 7));
	f->tmp[0] = '\0';
	f->state = ING_DONE;
	return 0;
}

/*
 * Make every closed body of the batch durable and move it into place:
 * one flush for the data, the renames, one flush for the directories.
 */
int
store_ingest_commit(struct store_ingest *ig)
{
	size_t i;
	int any = 0;

	for (i = 0; i < ig->n; i++)
		if (ig->files[i]->state == ING_CLOSED)
			any = 1;
	if (!any)
		return 0;
	if (store_ingest_flush(ig, ING_CLOSED) == -1)
		return -1;
	for (i = 0; i < ig->n; i++)
		if (ig->files[i]->state == ING_CLOSED &&
		    store_ingest_place(ig, ig->files[i]) == -1)
			return -1;
	/* And the directory entries the renames made. */
	return store_ingest_flush(ig, ING_DONE);
}

/*
 * Drop every body of the batch that is not yet in place.
 */
void
store_ingest_abort(struct store_ingest *ig)
{
	size_t i;

	if (ig == NULL)
		return;
	for (i = 0; i < ig->n; i++) {
		if (ig->files[i]->state != ING_DONE)
			ig->files[i]->state = ING_FAILED;
		store_ingest_drop(ig->files[i]);
	}
	ig->nhashed = 0;
	if (ig->hcap == 0)
		return;
	memset(ig->hash, 0, ig->hcap * sizeof(*ig->hash));
	for (i = 0; i < ig->n; i++)
		if (ig->files[i]->state == ING_DONE) {
			store_ingest_index(ig, i);
			ig->nhashed++;
		}
}

/*
 * 1 if a body of this batch with that partition and GUID closed cleanly
 * (committed or not), else 0.
 */
int
store_ingest_has(struct store_ingest *ig, const char *partition,
    const char *guid)
{
	const struct store_ingest_file *f;
	char g[41];
	uint32_t h;
	size_t j;

	if (ig == NULL || ig->hcap == 0 || partition == NULL ||
	    !store_guid_valid(guid))
		return 0;
	store_guid_lower(g, guid);
	h = (uint32_t)strtoul(g + 32, NULL, 16);
	for (j = h & (ig->hcap - 1); ig->hash[j] != 0;
	    j = (j + 1) & (ig->hcap - 1)) {
		f = ig->files[ig->hash[j] - 1];
		if ((f->state == ING_CLOSED || f->state == ING_DONE) &&
		    strcmp(f->guid, g) == 0 &&
		    strcmp(f->partition, partition) == 0)
			return 1;
	}
	return 0;
}

/*
 * Free the batch; bodies not committed are removed.
 */
void
store_ingest_free(struct store_ingest *ig)
{
	size_t i;

	if (ig == NULL)
		return;
	store_ingest_abort(ig);
	for (i = 0; i < ig->n; i++)
		free(ig->files[i]);
	free(ig->files);
	free(ig->hash);
	free(ig);
}

/*
 * Store one body from memory durably; its GUID goes to guid.
 */
int
store_body_add(struct store *s, const char *partition, const void *buf,
    size_t len, char guid[41])
{
	unsigned char md[20];
	struct store_ingest *ig;
	void *h;
	int rc;

	if (SHA1(buf, len, md) == NULL) {
		store_seterr(s, "SHA-1 failed");
		return -1;
	}
	store_hex20(guid, md);
	rc = store_body_exists(s, partition, guid);
	if (rc != 0)
		return rc == 1 ? 0 : -1;
	if ((ig = store_ingest_begin(s)) == NULL)
		return -1;
	rc = -1;
	if ((h = store_ingest_open(ig, partition, guid, len)) != NULL &&
	    store_ingest_write(ig, h, buf, len) == 0 &&
	    store_ingest_close(ig, h, 1) == 0)
		rc = store_ingest_commit(ig);
	store_ingest_free(ig);
	return rc;
}

/* ------------------------------------------------------------ seen, subs */

static int
store_check_userid(struct store *s, const char *userid)
{
	if (userid == NULL || !userid_valid(userid)) {
		store_seterr(s, "bad userid");
		return -1;
	}
	return 0;
}

/*
 * Set userid's seen state for one mailbox (by uniqueid).
 */
int
store_seen_set(struct store *s, const char *userid,
    const struct store_seen *sn)
{
	sqlite3_stmt *st;

	if (store_need_txn(s) == -1 || store_check_userid(s, userid) == -1)
		return -1;
	if (!store_token_valid(sn->uniqueid, STORE_MAX_ID, 0)) {
		store_seterr(s, "bad uniqueid");
		return -1;
	}
	if (sn->seenuids != NULL && strlen(sn->seenuids) > STORE_MAX_STRING) {
		store_seterr(s, "seen set too long");
		return -1;
	}
	if ((st = store_q(s, Q_SEEN_PUT)) == NULL)
		return -1;
	store_bind_text(st, 1, userid);
	store_bind_text(st, 2, sn->uniqueid);
	sqlite3_bind_int64(st, 3, sn->lastread);
	sqlite3_bind_int64(st, 4, sn->lastuid);
	sqlite3_bind_int64(st, 5, sn->lastchange);
	store_bind_text(st, 6, sn->seenuids ? sn->seenuids : "");
	if (store_step_done(s, st, "seen") == -1)
		return -1;
	return store_log_add(s, "SEEN", userid, sn->uniqueid);
}

/* A callback of a per-user walk and its argument. */
struct store_cbwalk {
	void	(*cb)(void);
	void	 *arg;
};

/* Walk the rows sql selects for userid (bound as ?1). */
static int
store_user_walk(struct store *s, const char *userid, const char *sql,
    const char *what, store_row_fn fn, void (*cb)(void), void *arg)
{
	struct store_cbwalk w = { cb, arg };

	if (store_check_userid(s, userid) == -1)
		return -1;
	return store_rows(s, store_prepare(s, sql, userid, NULL), what, fn,
	    &w);
}

static int
store_seen_row(struct store *s, sqlite3_stmt *st, void *arg)
{
	struct store_cbwalk *w = arg;
	struct store_seen sn;
	int rc = -1;

	memset(&sn, 0, sizeof(sn));
	sn.lastread = sqlite3_column_int64(st, 1);
	sn.lastuid = (uint32_t)sqlite3_column_int64(st, 2);
	sn.lastchange = sqlite3_column_int64(st, 3);
	if (store_col_dup(s, st, 0, &sn.uniqueid) == 0 &&
	    store_col_dup(s, st, 4, &sn.seenuids) == 0)
		rc = ((store_seen_cb)w->cb)(&sn, w->arg);
	free(sn.uniqueid);
	free(sn.seenuids);
	return rc;
}

/*
 * userid's seen entries in uniqueid order.
 */
int
store_seen_foreach(struct store *s, const char *userid, store_seen_cb cb,
    void *arg)
{
	return store_user_walk(s, userid, "SELECT uniqueid, lastread, "
	    "lastuid, lastchange, seenuids FROM seen WHERE userid = ?1 "
	    "ORDER BY uniqueid", "seen list", store_seen_row,
	    (void (*)(void))cb, arg);
}

/*
 * Subscribe (add) or unsubscribe userid to mboxname.
 */
int
store_sub_set(struct store *s, const char *userid, const char *mboxname,
    int add)
{
	sqlite3_stmt *st;

	if (store_need_txn(s) == -1 || store_check_userid(s, userid) == -1)
		return -1;
	if (mboxname == NULL || !mboxname_valid(mboxname)) {
		store_seterr(s, "bad mailbox name");
		return -1;
	}
	if ((st = store_q(s, add ? Q_SUB_ADD : Q_SUB_DEL)) == NULL)
		return -1;
	store_bind_text(st, 1, userid);
	store_bind_text(st, 2, mboxname);
	if (store_step_done(s, st, "subscription") == -1)
		return -1;
	return store_log_add(s, "SUB", userid, mboxname);
}

static int
store_name_row(struct store *s, sqlite3_stmt *st, void *arg)
{
	struct store_cbwalk *w = arg;
	char *name;
	int rc;

	if (store_col_dup(s, st, 0, &name) == -1)
		return -1;
	rc = name != NULL ? ((store_name_cb)w->cb)(name, w->arg) : 0;
	free(name);
	return rc;
}

/*
 * userid's subscriptions in name order.
 */
int
store_sub_foreach(struct store *s, const char *userid, store_name_cb cb,
    void *arg)
{
	return store_user_walk(s, userid, "SELECT mboxname FROM subs "
	    "WHERE userid = ?1 ORDER BY mboxname", "subscriptions",
	    store_name_row, (void (*)(void))cb, arg);
}

/* ----------------------------------------------------------------- quota */

/* A row of (root, storage, message, annotstorage, numfolders, modseq). */
static int
store_quota_from_row(struct store *s, sqlite3_stmt *st, struct store_quota *q)
{
	int i;

	memset(q, 0, sizeof(*q));
	for (i = 0; i < QUOTA_NUMRESOURCES; i++)
		q->limits[i] = sqlite3_column_int64(st, 1 + i);
	q->modseq = (uint64_t)sqlite3_column_int64(st, 5);
	return store_col_dup(s, st, 0, &q->root);
}

/*
 * A quota root.  0, STORE_NOTFOUND or -1; free with store_quota_clear().
 */
int
store_quota_get(struct store *s, const char *root, struct store_quota *q)
{
	sqlite3_stmt *st;
	int rc;

	memset(q, 0, sizeof(*q));
	if (root == NULL) {
		store_seterr(s, "no quota root");
		return -1;
	}
	if ((st = store_q(s, Q_QUOTA_GET)) == NULL)
		return -1;
	store_bind_text(st, 1, root);
	if ((rc = store_row1(s, st, "quota")) != 0)
		return rc;
	rc = store_quota_from_row(s, st, q);
	sqlite3_reset(st);
	return rc;
}

/*
 * Create or replace a quota root.
 */
int
store_quota_set(struct store *s, const struct store_quota *q)
{
	sqlite3_stmt *st;
	int i;

	if (store_need_txn(s) == -1)
		return -1;
	if (q->root == NULL || !mboxname_valid(q->root)) {
		store_seterr(s, "bad quota root");
		return -1;
	}
	if ((st = store_q(s, Q_QUOTA_PUT)) == NULL)
		return -1;
	store_bind_text(st, 1, q->root);
	for (i = 0; i < QUOTA_NUMRESOURCES; i++)
		sqlite3_bind_int64(st, 2 + i, q->limits[i] < 0 ?
		    QUOTA_UNLIMITED : q->limits[i]);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)q->modseq);
	if (store_step_done(s, st, "quota") == -1)
		return -1;
	return store_log_add(s, "QUOTA", q->root, NULL);
}

/*
 * Remove a quota root; STORE_NOTFOUND if there is none.
 */
int
store_quota_delete(struct store *s, const char *root)
{
	sqlite3_stmt *st;

	if (store_need_txn(s) == -1)
		return -1;
	if (root == NULL || !mboxname_valid(root)) {
		store_seterr(s, "bad quota root");
		return -1;
	}
	if ((st = store_q(s, Q_QUOTA_DEL)) == NULL)
		return -1;
	store_bind_text(st, 1, root);
	if (store_step_done(s, st, "quota") == -1)
		return -1;
	if (sqlite3_changes(s->db) == 0) {
		store_seterr(s, "%s: no such quota root", root);
		return STORE_NOTFOUND;
	}
	return store_log_add(s, "QUOTA", root, NULL);
}

struct store_quotawalk {
	store_quota_cb	 cb;
	void		*arg;
};

static int
store_quota_row(struct store *s, sqlite3_stmt *st, void *arg)
{
	struct store_quotawalk *w = arg;
	struct store_quota q;
	int rc = -1;

	if (store_quota_from_row(s, st, &q) == 0)
		rc = w->cb(&q, w->arg);
	store_quota_clear(&q);
	return rc;
}

/*
 * Every quota root in mailbox name order.
 */
int
store_quota_foreach(struct store *s, store_quota_cb cb, void *arg)
{
	struct store_quotawalk w = { cb, arg };

	return store_rows(s, store_prepare(s, "SELECT root, storage, "
	    "message, annotstorage, numfolders, modseq FROM quotas "
	    "ORDER BY root COLLATE " STORE_COLL, NULL), "quota list",
	    store_quota_row, &w);
}

/*
 * Free what store_quota_get filled.
 */
void
store_quota_clear(struct store_quota *q)
{
	if (q == NULL)
		return;
	free(q->root);
	memset(q, 0, sizeof(*q));
}

/*
 * Bytes and count of the live messages in root and the mailboxes below.
 */
int
store_quota_usage(struct store *s, const char *root, uint64_t *bytes,
    uint64_t *messages)
{
	char sub[MAX_MAILBOX_NAME + 8], subend[MAX_MAILBOX_NAME + 8];
	sqlite3_stmt *st;
	int rc;

	*bytes = *messages = 0;
	if (root == NULL || !mboxname_valid(root)) {
		store_seterr(s, "bad quota root");
		return -1;
	}
	if (store_fmt(s, sub, sizeof(sub), "%s.", root) == -1 ||
	    store_range_end(subend, sizeof(subend), sub) == -1)
		return -1;
	if (sqlite3_prepare_v2(s->db, "SELECT coalesce(sum(r.size), 0), "
	    "count(r.uid) FROM mailboxes m JOIN records r ON r.mbid = m.id "
	    "WHERE (m.name = ?1 OR (m.name >= ?2 AND m.name < ?3)) "
	    "AND (r.sysflags & ?4) = 0", -1, &st, NULL) != SQLITE_OK)
		return store_dberr(s, "prepare");
	sqlite3_bind_text(st, 1, root, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, sub, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, subend, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 4, SF_EXPUNGED);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*bytes = (uint64_t)sqlite3_column_int64(st, 0);
		*messages = (uint64_t)sqlite3_column_int64(st, 1);
		rc = 0;
	} else
		rc = store_dberr(s, "quota usage");
	sqlite3_finalize(st);
	return rc;
}

/* ----------------------------------------------------------------- sieve */

static int
store_check_sieve(struct store *s, const char *userid, const char *name)
{
	if (store_check_userid(s, userid) == -1)
		return -1;
	if (name == NULL || !sievename_valid(name)) {
		store_seterr(s, "bad sieve script name");
		return -1;
	}
	return 0;
}

static int
store_sieve_row(struct store *s, sqlite3_stmt *st, void *arg)
{
	struct store_cbwalk *w = arg;
	struct store_sieve sv;
	int rc;

	memset(&sv, 0, sizeof(sv));
	if (store_col_dup(s, st, 0, &sv.name) == -1)
		return -1;
	sv.last_update = sqlite3_column_int64(st, 1);
	store_col_copy(st, 2, sv.guid, sizeof(sv.guid));
	sv.active = sqlite3_column_int(st, 3);
	rc = ((store_sieve_cb)w->cb)(&sv, w->arg);
	free(sv.name);
	return rc;
}

/*
 * userid's scripts in name order.
 */
int
store_sieve_foreach(struct store *s, const char *userid, store_sieve_cb cb,
    void *arg)
{
	return store_user_walk(s, userid, "SELECT name, last_update, guid, "
	    "active FROM sieve WHERE userid = ?1 ORDER BY name", "sieve list",
	    store_sieve_row, (void (*)(void))cb, arg);
}

/*
 * Create or replace a script (its active state is kept).
 */
int
store_sieve_put(struct store *s, const char *userid, const char *name,
    const char *content, size_t len, int64_t last_update)
{
	unsigned char md[20];
	char guid[41];
	sqlite3_stmt *st;
	int i;

	if (store_need_txn(s) == -1 ||
	    store_check_sieve(s, userid, name) == -1)
		return -1;
	if (len > STORE_MAX_VALUE || (len > 0 && content == NULL)) {
		store_seterr(s, "%s: bad or oversized sieve script", name);
		return -1;
	}
	if (SHA1((const unsigned char *)(content ? content : ""), len,
	    md) == NULL) {
		store_seterr(s, "SHA-1 failed");
		return -1;
	}
	for (i = 0; i < 20; i++)
		snprintf(guid + 2 * i, 3, "%02x", md[i]);
	if ((st = store_q(s, Q_SIEVE_PUT)) == NULL)
		return -1;
	store_bind_text(st, 1, userid);
	store_bind_text(st, 2, name);
	sqlite3_bind_blob(st, 3, content ? content : "", (int)len,
	    SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, last_update);
	store_bind_text(st, 5, guid);
	if (store_step_done(s, st, "sieve") == -1)
		return -1;
	return store_log_add(s, "META", userid, NULL);
}

/*
 * A script's content (malloc'd, NUL terminated).  0, STORE_NOTFOUND, -1.
 */
int
store_sieve_get(struct store *s, const char *userid, const char *name,
    char **content, size_t *len)
{
	sqlite3_stmt *st;
	int rc;

	*content = NULL;
	*len = 0;
	if (store_check_sieve(s, userid, name) == -1)
		return -1;
	if ((st = store_q(s, Q_SIEVE_GET)) == NULL)
		return -1;
	store_bind_text(st, 1, userid);
	store_bind_text(st, 2, name);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = store_col_blob(s, st, 0, content, len);
	else if (rc == SQLITE_DONE)
		rc = STORE_NOTFOUND;
	else
		rc = store_dberr(s, "sieve");
	sqlite3_reset(st);
	return rc;
}

/*
 * Remove a script (none is not an error).
 */
int
store_sieve_delete(struct store *s, const char *userid, const char *name)
{
	sqlite3_stmt *st;

	if (store_need_txn(s) == -1 ||
	    store_check_sieve(s, userid, name) == -1)
		return -1;
	if ((st = store_q(s, Q_SIEVE_DEL)) == NULL)
		return -1;
	store_bind_text(st, 1, userid);
	store_bind_text(st, 2, name);
	if (store_step_done(s, st, "sieve") == -1)
		return -1;
	return store_log_add(s, "META", userid, NULL);
}

/*
 * Make name the one active script (NULL: none).  STORE_NOTFOUND if
 * there is no such script.
 */
int
store_sieve_activate(struct store *s, const char *userid, const char *name)
{
	sqlite3_stmt *st;
	int rc;

	if (store_need_txn(s) == -1)
		return -1;
	if (name != NULL) {
		if (store_check_sieve(s, userid, name) == -1)
			return -1;
		if ((st = store_q(s, Q_SIEVE_EXISTS)) == NULL)
			return -1;
		store_bind_text(st, 1, userid);
		store_bind_text(st, 2, name);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc == SQLITE_DONE) {
			store_seterr(s, "%s: no such sieve script", name);
			return STORE_NOTFOUND;
		}
		if (rc != SQLITE_ROW)
			return store_dberr(s, "sieve");
	} else if (store_check_userid(s, userid) == -1)
		return -1;
	if ((st = store_q(s, Q_SIEVE_ACT)) == NULL)
		return -1;
	store_bind_text(st, 1, userid);
	store_bind_text(st, 2, name);
	if (store_step_done(s, st, "sieve") == -1)
		return -1;
	return store_log_add(s, "META", userid, NULL);
}

/* ----------------------------------------------------------------- users */

struct store_idlist {
	int64_t	*ids;
	size_t	 n, cap;
};

static int
store_collect_id(const struct store_mailbox *mb, void *arg)
{
	struct store_idlist *l = arg;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		int64_t *ni = reallocarray(l->ids, ncap, sizeof(*ni));

		if (ni == NULL)
			return -1;
		l->ids = ni;
		l->cap = ncap;
	}
	l->ids[l->n++] = mb->id;
	return 0;
}

/* The same, but leaving out delayed-delete copies (DELETED.*). */
static int
store_collect_live_id(const struct store_mailbox *mb, void *arg)
{
	if (mboxname_isdeleted(mb->name))
		return 0;
	return store_collect_id(mb, arg);
}

static int
store_user_exec(struct store *s, const char *sql, const char *a1,
    const char *a2, const char *a3)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return store_dberr(s, "prepare");
	sqlite3_bind_text(st, 1, a1, -1, SQLITE_TRANSIENT);
	if (a2 != NULL)
		sqlite3_bind_text(st, 2, a2, -1, SQLITE_TRANSIENT);
	if (a3 != NULL)
		sqlite3_bind_text(st, 3, a3, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return store_dberr(s, "delete user");
	return 0;
}

/* A growing list of strings. */
struct store_strv {
	char	**v;
	size_t	  n, cap;
};

static int
store_strv_add(struct store *s, struct store_strv *sv, char *str)
{
	char **nv;

	if (str == NULL)
		return store_nomem(s);
	if (sv->n == sv->cap) {
		size_t ncap = sv->cap ? sv->cap * 2 : 32;

		if ((nv = reallocarray(sv->v, ncap, sizeof(*nv))) == NULL) {
			free(str);
			return store_nomem(s);
		}
		sv->v = nv;
		sv->cap = ncap;
	}
	sv->v[sv->n++] = str;
	return 0;
}

static void
store_strv_free(struct store_strv *sv)
{
	size_t i;

	for (i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
}

static int
store_strv_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The owner of the mailbox named in column 0 (shared ones have none). */
static int
store_owner_row(struct store *s, sqlite3_stmt *st, void *arg)
{
	const unsigned char *t = sqlite3_column_text(st, 0);
	char *u;

	if (t == NULL || (u = mboxname_to_userid((const char *)t)) == NULL)
		return 0;
	return store_strv_add(s, arg, u);
}

static int
store_userid_row(struct store *s, sqlite3_stmt *st, void *arg)
{
	char *u;

	if (store_col_dup(s, st, 0, &u) == -1)
		return -1;
	return u != NULL ? store_strv_add(s, arg, u) : 0;
}

/*
 * Every userid with state in the store, sorted, each once; see store.h.
 * The list is taken before the first callback, so cb may change the
 * store.
 */
int
store_user_foreach(struct store *s, store_name_cb cb, void *arg)
{
	struct store_strv sv = { NULL, 0, 0 };
	size_t i;
	int rc;

	rc = store_rows(s, store_prepare(s, "SELECT name FROM mailboxes",
	    NULL), "user list", store_owner_row, &sv);
	if (rc == 0)
		rc = store_rows(s, store_prepare(s, "SELECT userid FROM seen "
		    "UNION SELECT userid FROM subs UNION SELECT userid FROM sieve",
		    NULL), "user list", store_userid_row, &sv);
	if (rc == 0 && sv.n > 1)
		qsort(sv.v, sv.n, sizeof(*sv.v), store_strv_cmp);
	for (i = 0; rc == 0 && i < sv.n; i++)
		if (i == 0 || strcmp(sv.v[i], sv.v[i - 1]) != 0)
			rc = cb(sv.v[i], arg);
	store_strv_free(&sv);
	return rc;
}

/*
 * Remove everything of a user: mailboxes (leaving tombstones), seen,
 * subscriptions, sieve scripts, quota roots at or under the INBOX and
 * the modseq counter.  Logged as Cyrus logs it: each mailbox's deletion
 * (UNMAILBOX and MAILBOX), then UNUSER.
 */
int
store_user_delete(struct store *s, const char *userid)
{
	struct store_idlist l = { NULL, 0, 0 };
	char sub[MAX_MAILBOX_NAME + 8], subend[MAX_MAILBOX_NAME + 8];
	char *inbox = NULL;
	size_t i;
	int rc = -1;

	if (store_need_txn(s) == -1 || store_check_userid(s, userid) == -1)
		return -1;
	if ((inbox = mboxname_user_inbox(userid)) == NULL) {
		store_seterr(s, "%s: no mailbox name for this userid", userid);
		return -1;
	}
	if (store_fmt(s, sub, sizeof(sub), "%s.", inbox) == -1 ||
	    store_range_end(subend, sizeof(subend), sub) == -1)
		goto out;
	/*
	 * The user's delayed-delete copies (DELETED.user.U.*) stay, as
	 * Cyrus keeps them: they are what an administrator restores from.
	 */
	if (store_mailbox_foreach_user(s, userid, store_collect_live_id,
	    &l) != 0) {
		if (l.n == l.cap)
			store_nomem(s);
		goto out;
	}
	for (i = 0; i < l.n; i++)
		if (store_mailbox_delete(s, l.ids[i], 1) == -1)
			goto out;
	if (store_user_exec(s, "DELETE FROM seen WHERE userid = ?1", userid,
	    NULL, NULL) == -1 ||
	    store_user_exec(s, "DELETE FROM subs WHERE userid = ?1", userid,
	    NULL, NULL) == -1 ||
	    store_user_exec(s, "DELETE FROM sieve WHERE userid = ?1", userid,
	    NULL, NULL) == -1 ||
	    store_user_exec(s, "DELETE FROM modseq WHERE userid = ?1", userid,
	    NULL, NULL) == -1 ||
	    store_user_exec(s, "DELETE FROM quotas WHERE root = ?1 OR "
	    "(root >= ?2 AND root < ?3)", inbox, sub, subend) == -1)
		goto out;
	rc = store_log_add(s, "UNUSER", userid, NULL);
out:
	free(l.ids);
	free(inbox);
	return rc;
}
