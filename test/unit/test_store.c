/*
 * test_store: the store on a temporary directory: mailboxes, records and
 * their CRCs, bodies and ingest, per-user state, transactions and the
 * sync_log lines they produce.
 */
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "conf.h"
#include "store.h"
#include "synccrc.h"
#include "synclog.h"
#include "tap.h"

static char base[256], logpath[512], partdir[512];

static const char msg1[] =
    "From: Bob <bob@example.com>\r\n"
    "To: Alice <alice@example.com>\r\n"
    "Subject: hello\r\n"
    "Date: Mon, 13 Feb 2023 10:00:00 +0000\r\n"
    "Message-ID: <m1@example.com>\r\n"
    "\r\n"
    "Hi Alice\r\n";
static const char msg2[] =
    "From: Carol <carol@example.com>\r\n"
    "To: Alice <alice@example.com>\r\n"
    "Subject: lunch?\r\n"
    "Date: Mon, 13 Feb 2023 11:30:00 +0000\r\n"
    "Message-ID: <m2@example.com>\r\n"
    "\r\n"
    "Lunch at noon?\r\n";
#define GUID1 "306f3706516e79913e70b4c9ef5549d464561446"
#define GUID2 "1f0f77fdc9b425faa2bd26a409228a1943820a64"
#define NOGUID "0123456789abcdef0123456789abcdef01234567"

static int64_t
mkmb(struct store *s, const char *name, const char *uniqueid)
{
	struct store_mailbox mb;

	memset(&mb, 0, sizeof(mb));
	mb.name = (char *)name;
	mb.uniqueid = (char *)uniqueid;
	mb.partition = "default";
	mb.acl = "alice\tlrswipkxtecdan\t";
	mb.options = "P";
	mb.uidvalidity = 1676280000;
	if (store_mailbox_create(s, &mb) != 0) {
		printf("# create %s: %s\n", name, store_error(s));
		return -1;
	}
	return mb.id;
}

static void
mkrec(struct store_record *r, uint32_t uid, uint64_t modseq, int64_t lu,
    int64_t idate, unsigned flags, const char *kw, const char *guid,
    int64_t savedate, uint64_t cms)
{
	memset(r, 0, sizeof(*r));
	r->uid = uid;
	r->modseq = modseq;
	r->last_updated = lu;
	r->internaldate = idate;
	r->size = 100;
	strlcpy(r->guid, guid, sizeof(r->guid));
	r->sysflags = flags;
	r->keywords = (char *)kw;
	r->savedate = savedate;
	r->createdmodseq = cms;
}

static int
crcs(struct store *s, const char *name, uint32_t *crc, uint32_t *crca)
{
	struct store_mailbox mb;
	uint32_t rc1, rc2;
	int same;

	if (store_mailbox_get(s, name, &mb) != 0)
		return -1;
	*crc = mb.sync_crc;
	*crca = mb.sync_crc_annot;
	if (store_mailbox_crc_recalc(s, mb.id, &rc1, &rc2) != 0) {
		store_mailbox_clear(&mb);
		return -1;
	}
	same = rc1 == mb.sync_crc && rc2 == mb.sync_crc_annot;
	store_mailbox_clear(&mb);
	return same ? 0 : 1;
}

struct names {
	char	buf[4096];
	int	n;
};

static int
collect_mb(const struct store_mailbox *mb, void *arg)
{
	struct names *l = arg;

	if (l->n++)
		strlcat(l->buf, " ", sizeof(l->buf));
	strlcat(l->buf, mb->name, sizeof(l->buf));
	return 0;
}

static int
collect_name(const char *name, void *arg)
{
	return collect_mb(&(struct store_mailbox){ .name = (char *)name }, arg);
}

static int
collect_rec(const struct store_record *r, void *arg)
{
	char u[16];

	snprintf(u, sizeof(u), "%u", r->uid);
	return collect_name(u, arg);
}

static int
collect_seen(const struct store_seen *sn, void *arg)
{
	return collect_name(sn->uniqueid, arg);
}

static int
collect_sieve(const struct store_sieve *sv, void *arg)
{
	char b[300];

	snprintf(b, sizeof(b), "%s%s", sv->name, sv->active ? "*" : "");
	return collect_name(b, arg);
}

static char *
slurp(const char *path)
{
	static char buf[65536];
	ssize_t n;
	int fd;

	buf[0] = '\0';
	if ((fd = open(path, O_RDONLY)) == -1)
		return buf;
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	return buf;
}

static int
count_dir(const char *path)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
test_synclog_format(void)
{
	char b[128];

	synclog_format(b, sizeof(b), "MAILBOX", "user.alice.Sent", NULL);
	is_str(b, "MAILBOX user.alice.Sent\n", "log line: bare name");
	synclog_format(b, sizeof(b), "MAILBOX", "user.alice.My Folder", NULL);
	is_str(b, "MAILBOX \"user.alice.My Folder\"\n", "log line: quoted");
	synclog_format(b, sizeof(b), "ANNOTATION", "", NULL);
	is_str(b, "ANNOTATION \"\"\n", "log line: empty argument");
	synclog_format(b, sizeof(b), "SEEN", "a{b", "x\"y\\z");
	is_str(b, "SEEN \"a\\{b\" \"x\\\"y\\\\z\"\n", "log line: escapes");
	ok(synclog_format(b, sizeof(b), "MAILBOX", "a\nb", NULL) == -1,
	    "log line: LF refused");
	ok(synclog_format(b, 10, "MAILBOX", "user.alice", NULL) == -1,
	    "log line: short buffer refused");
}

static void
hexsha(const void *buf, size_t len, char out[41])
{
	unsigned char d[20];
	int k;

	SHA1(buf, len, d);
	for (k = 0; k < 20; k++)
		snprintf(out + 2 * k, 3, "%02x", d[k]);
}

/* Many bodies in one batch, two open at a time and closed out of order. */
static void
test_ingest_batch(struct store *s)
{
	struct store_ingest *ig = store_ingest_begin(s);
	struct timeval t0, t1;
	char (*g)[41], m[64];
	size_t len;
	int i, nbad = 0, nhave = 0, nplaced = 0, N = 2000;
	void *ha, *hb;

	g = calloc((size_t)N, sizeof(*g));
	gettimeofday(&t0, NULL);
	for (i = 0; i < N; i += 2) {
		char ma[64], mb[64];
		size_t la, lb;

		la = (size_t)snprintf(ma, sizeof(ma), "Subject: batch %d\r\n", i);
		lb = (size_t)snprintf(mb, sizeof(mb), "Subject: batch %d\r\n",
		    i + 1);
		hexsha(ma, la, g[i]);
		hexsha(mb, lb, g[i + 1]);
		ha = store_ingest_open(ig, "default", g[i], la);
		hb = store_ingest_open(ig, "default", g[i + 1], lb);
		if (ha == NULL || hb == NULL ||
		    store_ingest_write(ig, hb, mb, lb) != 0 ||
		    store_ingest_close(ig, hb, 1) != 0 ||
		    store_ingest_write(ig, ha, ma, la) != 0 ||
		    store_ingest_close(ig, ha, 1) != 0)
			nbad++;
	}
	for (i = 0; i < N; i++)
		nhave += store_ingest_has(ig, "default", g[i]);
	ok(nbad == 0 && nhave == N, "batch: %d bodies closed and had", N);
	ok(store_ingest_commit(ig) == 0, "batch committed");
	gettimeofday(&t1, NULL);
	printf("# ingest of %d small bodies in one batch: %.3f s\n", N,
	    (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_usec - t0.tv_usec) / 1e6);
	for (i = 0; i < N; i++)
		nplaced += store_body_exists(s, "default", g[i]) == 1;
	is_int(nplaced, N, "batch: every body in place");
	len = (size_t)snprintf(m, sizeof(m), "Subject: batch 7\r\n");
	hexsha(m, len, g[0]);
	is_int(store_ingest_has(ig, "default", g[0]), 1, "batch: has by content");
	is_int(store_ingest_has(ig, "other", g[0]), 0,
	    "batch: has is per partition");
	store_ingest_free(ig);
	free(g);
}

static void
test_synclog_channels(struct conf *conf)
{
	char err[256], p1[600], p2[600], moved[700];

	snprintf(p1, sizeof(p1), "%s/conf/sync/log", base);
	snprintf(p2, sizeof(p2), "%s/conf/sync/squat/log", base);
	unlink(p1);
	conf_set(conf, "sync_log_channels", "\"\" squat");
	ok(synclog_append(conf, "USER x\n", 7, err, sizeof(err)) == 0,
	    "append to two channels");
	is_str(slurp(p1), "USER x\n", "default channel written");
	is_str(slurp(p2), "USER x\n", "named channel written");
	/* A reader takes the file away; the next event starts a new one. */
	snprintf(moved, sizeof(moved), "%s-run", p2);
	rename(p2, moved);
	ok(synclog_append_channel(conf, "squat", "USER y\n", 7, err,
	    sizeof(err)) == 0, "append after the reader's rename");
	is_str(slurp(p2), "USER y\n", "new log file");
	is_str(slurp(moved), "USER x\n", "claimed file untouched");
	ok(synclog_append_channel(conf, "../x", "USER y\n", 7, err,
	    sizeof(err)) == -1, "bad channel name refused");
	conf_set(conf, "sync_log", "off");
	unlink(p1);
	ok(synclog_append(conf, "USER z\n", 7, err, sizeof(err)) == 0 &&
	    access(p1, F_OK) == -1, "sync_log off writes nothing");
	conf_set(conf, "sync_log", "on");
	conf_set(conf, "sync_log_channels", "\"\"");
}

static int
collect_quota(const struct store_quota *q, void *arg)
{
	return collect_name(q->root, arg);
}

/* Cyrus's order: '.' before any other byte; DELETED.* after the tree. */
static void
test_order(struct store *s)
{
	struct names l;

	ok(store_begin(s) == 0 && mkmb(s, "user.zz", "uid-zz") > 0 &&
	    mkmb(s, "user.zz.a.b-c", "uid-zz-1") > 0 &&
	    mkmb(s, "user.zz.a.b", "uid-zz-2") > 0 &&
	    mkmb(s, "user.zz.a.b.d", "uid-zz-3") > 0 &&
	    mkmb(s, "user.zz.a", "uid-zz-4") > 0 &&
	    mkmb(s, "user.zz-y", "uid-zz-5") > 0 &&
	    mkmb(s, "DELETED.user.zz.a.63EA1F60", "uid-zz-6") > 0 &&
	    store_commit(s) == 0, "order: mailboxes created");
	memset(&l, 0, sizeof(l));
	store_mailbox_foreach_user(s, "zz", collect_mb, &l);
	is_str(l.buf, "user.zz user.zz.a user.zz.a.b user.zz.a.b.d "
	    "user.zz.a.b-c DELETED.user.zz.a.63EA1F60",
	    "order: foreach_user sorts '.' first, DELETED.* last");
	memset(&l, 0, sizeof(l));
	store_mailbox_foreach(s, "user.zz", collect_mb, &l);
	is_str(l.buf, "user.zz user.zz.a user.zz.a.b user.zz.a.b.d "
	    "user.zz.a.b-c user.zz-y", "order: foreach with a prefix");
	memset(&l, 0, sizeof(l));
	store_mailbox_foreach(s, "", collect_mb, &l);
	ok(strstr(l.buf, "user.zz user.zz.a user.zz.a.b user.zz.a.b.d "
	    "user.zz.a.b-c user.zz-y") != NULL, "order: foreach of all");
}

static void
test_quota_api(struct store *s)
{
	struct store_quota q;
	struct names l;
	int i;

	memset(&q, 0, sizeof(q));
	for (i = 0; i < QUOTA_NUMRESOURCES; i++)
		q.limits[i] = QUOTA_UNLIMITED;
	ok(store_begin(s) == 0, "quota api: begin");
	q.root = "user.qq.a-b";
	ok(store_quota_set(s, &q) == 0, "quota api: set 1");
	q.root = "user.qq.a.b";
	q.limits[QUOTA_STORAGE] = 42;
	ok(store_quota_set(s, &q) == 0, "quota api: set 2");
	q.root = "user.qq";
	ok(store_quota_set(s, &q) == 0, "quota api: set 3");
	memset(&l, 0, sizeof(l));
	is_int(store_quota_foreach(s, collect_quota, &l), 0,
	    "quota_foreach walks");
	ok(strstr(l.buf, "user.qq user.qq.a.b user.qq.a-b") != NULL,
	    "quota_foreach: every root, in mailbox name order");
	is_int(store_quota_delete(s, "user.qq.nosuch"), STORE_NOTFOUND,
	    "quota_delete: STORE_NOTFOUND for an unknown root");
	is_int(store_quota_delete(s, "user.qq.a-b"), 0, "quota_delete");
	is_int(store_quota_delete(s, "user.qq.a-b"), STORE_NOTFOUND,
	    "quota_delete: a second time STORE_NOTFOUND");
	is_int(store_quota_delete(s, "user.qq.a.b"), 0, "quota_delete 2");
	is_int(store_quota_delete(s, "user.qq"), 0, "quota_delete 3");
	ok(store_commit(s) == 0, "quota api: commit");
	memset(&l, 0, sizeof(l));
	store_quota_foreach(s, collect_quota, &l);
	ok(strstr(l.buf, "user.qq") == NULL, "quota_foreach: deleted gone");
}

static int
stop_at_two(const char *name, void *arg)
{
	(void)name;
	return ++*(int *)arg == 2 ? 7 : 0;
}

static void
test_user_foreach(struct store *s)
{
	struct store_seen sn;
	struct names l;
	int n = 0;

	memset(&sn, 0, sizeof(sn));
	sn.uniqueid = "uid-zz";
	sn.seenuids = "1:3";
	ok(store_begin(s) == 0 &&
	    store_seen_set(s, "seenonly", &sn) == 0 &&
	    store_sub_set(s, "subonly", "user.zz", 1) == 0 &&
	    store_sieve_put(s, "sieveonly", "s", "keep;", 5, 1) == 0 &&
	    store_sub_set(s, "zz", "user.zz", 1) == 0 &&
	    mkmb(s, "shared.folder", "uid-shared") > 0 &&
	    store_commit(s) == 0, "user_foreach: state set");
	memset(&l, 0, sizeof(l));
	is_int(store_user_foreach(s, collect_name, &l), 0, "user_foreach");
	/* ab still owns its DELETED.* copy; zz has mailboxes and a
	 * subscription, and appears once. */
	is_str(l.buf, "ab ab_c abc axb seenonly sieveonly subonly x@dom.org "
	    "xy@dom.org zz zz-y", "user_foreach: every owner, sorted, once");
	ok(strstr(l.buf, "shared") == NULL, "user_foreach: no shared owner");
	is_int(store_user_foreach(s, stop_at_two, &n), 7,
	    "user_foreach: a callback's non-zero stops the walk");
}

static void
test_rename_partition(struct store *s)
{
	struct store_record r, x;
	struct store_mailbox mb;
	char g[41];
	int64_t id = -1;

	ok(store_begin(s) == 0 && (id = mkmb(s, "user.mv", "uid-mv")) > 0,
	    "rename partition: mailbox");
	mkrec(&r, 1, 1, 1, 1, 0, NULL, GUID1, 0, 0);
	mkrec(&x, 2, 2, 1, 1, SF_EXPUNGED, NULL, NOGUID, 0, 0);
	ok(store_record_put(s, id, &r) == 0 &&
	    store_record_put(s, id, &x) == 0 && store_commit(s) == 0,
	    "rename partition: a live and an expunged record");
	is_int(store_body_exists(s, "second", GUID1), 0,
	    "rename partition: body not yet in the target");
	ok(store_begin(s) == 0, "rename partition: begin");
	is_int(store_mailbox_rename(s, id, "user.mv2", "nosuch"), -1,
	    "rename to an unconfigured partition refused");
	ok(store_rollback(s) == 0 && store_begin(s) == 0,
	    "rename partition: rollback");
	ok(store_mailbox_rename(s, id, "user.mv2", "second") == 0,
	    "rename to another partition");
	ok(store_commit(s) == 0, "rename partition: commit");
	is_int(store_body_exists(s, "second", GUID1), 1,
	    "rename moved the live record's body");
	is_int(store_body_exists(s, "default", GUID1), 1,
	    "the old copy stays for gc");
	ok(store_mailbox_get(s, "user.mv2", &mb) == 0 &&
	    strcmp(mb.partition, "second") == 0, "metadata moved");
	store_mailbox_clear(&mb);
	mkrec(&r, 3, 3, 1, 1, 0, NULL, GUID1, 0, 0);
	ok(store_begin(s) == 0 && store_record_put(s, id, &r) == 0 &&
	    store_commit(s) == 0, "records can refer to the moved body");
	ok(store_body_add(s, "second", msg2, strlen(msg2), g) == 0 &&
	    store_begin(s) == 0 &&
	    store_mailbox_rename(s, id, "user.mv2", "default") == 0 &&
	    store_commit(s) == 0, "move back: present bodies not copied");
}

/*
 * Several processes opening a store that does not exist yet, all at
 * once (a replica's first connections): every one must succeed.
 */
#define RACE_ROUNDS	40
#define RACE_OPENERS	8

static void
test_concurrent_open(void)
{
	char dir[512], cfg[1280], err[256], db[600];
	struct conf *conf;
	struct store *s;
	int go[2], round, i, st, failed = 0;
	pid_t pid;

	snprintf(dir, sizeof(dir), "%s/race", base);
	mkdir(dir, 0700);
	snprintf(cfg, sizeof(cfg), "configdirectory: %s\n"
	    "partition-default: %s\n", dir, partdir);
	conf = conf_parse(cfg, strlen(cfg), "race", err, sizeof(err));
	if (conf == NULL) {
		ok(0, "race config: %s", err);
		return;
	}
	for (round = 0; round < RACE_ROUNDS; round++) {
		snprintf(db, sizeof(db), "%s/syncpipe.db", dir);
		unlink(db);
		snprintf(db, sizeof(db), "%s/syncpipe.db-wal", dir);
		unlink(db);
		snprintf(db, sizeof(db), "%s/syncpipe.db-shm", dir);
		unlink(db);
		if (pipe(go) == -1)
			break;
		for (i = 0; i < RACE_OPENERS; i++) {
			if ((pid = fork()) == -1)
				break;
			if (pid == 0) {
				char c;

				close(go[1]);
				(void)read(go[0], &c, 1);
				s = store_open(conf, err, sizeof(err));
				if (s == NULL) {
					printf("# round %d: %s\n", round, err);
					fflush(stdout);
					_exit(1);
				}
				store_close(s);
				_exit(0);
			}
		}
		close(go[0]);
		close(go[1]);	/* all of them start now */
		while (wait(&st) > 0)
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				failed++;
	}
	is_int(failed, 0, "%d rounds of %d processes opening a new store at "
	    "once: all opened", RACE_ROUNDS, RACE_OPENERS);
	conf_free(conf);
}

int
main(void)
{
	struct store_mailbox mb;
	struct store_record r1, r2, r, got;
	struct store_annot an[2], *al;
	struct store_tombstone t;
	struct store_quota q;
	struct store_seen sn;
	struct store_ingest *ig;
	struct names l;
	struct timeval t0, t1;
	struct conf *conf;
	struct store *s;
	char cfg[2048], err[512], g1[41], g2[41], path[1024], *content;
	uint32_t crc, crca, c0, ca0;
	uint64_t bytes, msgs, ms;
	size_t n, len;
	int64_t inbox, sent, abc, del, id;
	void *h;
	int rc, i;

	test_synclog_format();

	strlcpy(base, "/tmp/test_store.XXXXXX", sizeof(base));
	if (mkdtemp(base) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/conf", base);
	mkdir(path, 0700);
	snprintf(partdir, sizeof(partdir), "%s/part", base);
	mkdir(partdir, 0700);
	snprintf(logpath, sizeof(logpath), "%s/conf/sync/log", base);
	snprintf(path, sizeof(path), "%s/part2", base);
	mkdir(path, 0700);
	snprintf(cfg, sizeof(cfg), "configdirectory: %s/conf\n"
	    "partition-default: %s\npartition-second: %s/part2\n"
	    "sync_log: yes\n", base, partdir, base);
	conf = conf_parse(cfg, strlen(cfg), "test", err, sizeof(err));
	ok(conf != NULL, "config parsed");
	if (conf == NULL) {
		printf("# %s\n", err);
		return tap_done();
	}
	s = store_open(conf, err, sizeof(err));
	ok(s != NULL, "store opened");
	if (s == NULL) {
		printf("# %s\n", err);
		return tap_done();
	}
	store_set_synclog(s, 1);
	fflush(stdout);
	test_concurrent_open();

	/* Bodies. */
	ok(store_body_add(s, "default", msg1, strlen(msg1), g1) == 0 &&
	    strcmp(g1, GUID1) == 0, "body 1 added with its GUID");
	ok(store_body_add(s, "default", msg2, strlen(msg2), g2) == 0 &&
	    strcmp(g2, GUID2) == 0, "body 2 added with its GUID");
	is_int(store_body_exists(s, "default", GUID1), 1, "body 1 exists");
	snprintf(cfg, sizeof(cfg), "%s/bodies/30/6f/%s", partdir, GUID1);
	ok(access(cfg, R_OK) == 0, "body at bodies/30/6f/<guid>");
	is_int(store_body_exists(s, "default", NOGUID), 0, "other GUID absent");
	is_int(store_body_exists(s, "nosuch", GUID1), -1,
	    "unknown partition refused");
	is_int(store_body_path(s, "../x", GUID1, path, sizeof(path)), -1,
	    "bad partition name refused");
	is_int(store_body_path(s, "default", "../../etc/passwd", path,
	    sizeof(path)), -1, "bad GUID refused");
	is_int(store_body_path(s, "default", GUID1 "0", path, sizeof(path)),
	    -1, "41-digit GUID refused");
	ok(store_body_add(s, "nosuch", msg1, strlen(msg1), g1) == -1,
	    "body_add to an unknown partition refused");

	/* Changes need a transaction. */
	memset(&mb, 0, sizeof(mb));
	mb.name = "user.zz";
	mb.uniqueid = "zz1";
	is_int(store_mailbox_create(s, &mb), -1, "create outside a transaction");

	ok(store_begin(s) == 0, "begin");
	is_int(store_begin(s), -1, "nested begin refused");
	inbox = mkmb(s, "user.ab", "uid-ab");
	sent = mkmb(s, "user.ab.Sent", "uid-ab-sent");
	abc = mkmb(s, "user.abc", "uid-abc");
	del = mkmb(s, "DELETED.user.ab.Old.63EA1F60", "uid-ab-old");
	ok(inbox > 0 && sent > 0 && abc > 0 && del > 0, "mailboxes created");
	ok(mkmb(s, "user.abc.X", "uid-abc-x") > 0 &&
	    mkmb(s, "user.axb.Y", "uid-axb-y") > 0 &&
	    mkmb(s, "user.ab_c", "uid-ab_c") > 0 &&
	    mkmb(s, "dom.org!user.x", "uid-dx") > 0 &&
	    mkmb(s, "dom.org!user.x.Z", "uid-dxz") > 0 &&
	    mkmb(s, "dom.org!DELETED.user.x.Q.63EA1F60", "uid-dxq") > 0 &&
	    mkmb(s, "dom.org!user.xy", "uid-dxy") > 0,
	    "more mailboxes created");
	memset(&mb, 0, sizeof(mb));
	mb.name = "user.ab";
	mb.uniqueid = "fresh";
	is_int(store_mailbox_create(s, &mb), STORE_EXISTS, "name taken");
	mb.name = "user.ab.New";
	mb.uniqueid = "uid-ab";
	is_int(store_mailbox_create(s, &mb), STORE_EXISTS, "uniqueid taken");
	mb.name = "user..bad";
	mb.uniqueid = "u-bad";
	is_int(store_mailbox_create(s, &mb), -1, "bad name refused");

	ok(store_mailbox_get(s, "user.ab", &mb) == 0 && mb.sync_crc == 0 &&
	    mb.sync_crc_annot == SYNCCRC_ANNOT_INIT &&
	    strcmp(mb.acl, "alice\tlrswipkxtecdan\t") == 0 &&
	    mb.uidvalidity == 1676280000, "new mailbox: fields and CRCs");
	store_mailbox_clear(&mb);
	ok(store_mailbox_get_uniqueid(s, "uid-ab-sent", &mb) == 0 &&
	    strcmp(mb.name, "user.ab.Sent") == 0, "get by uniqueid");
	store_mailbox_clear(&mb);
	is_int(store_mailbox_get(s, "user.none", &mb), STORE_NOTFOUND,
	    "missing mailbox");

	/* Records: the worked example of the protocol doc. */
	mkrec(&r1, 1, 3, 1676282460, 1676282400, SF_SEEN, NULL, GUID1,
	    1676282400, 2);
	mkrec(&r2, 2, 5, 1676288000, 1676287800, SF_FLAGGED, "$Label1",
	    GUID2, 1676287800, 4);
	ok(store_record_put(s, inbox, &r1) == 0 &&
	    store_record_put(s, inbox, &r2) == 0, "records put");
	is_int(crcs(s, "user.ab", &crc, &crca), 0, "incremental == recalc");
	is_int(crc, 3481249598u, "SYNC_CRC as in 5.7");
	is_int(crca, 1870326507u, "SYNC_CRC_ANNOT as in 5.7");

	mkrec(&r, 3, 6, 1, 1, 0, NULL, NOGUID, 0, 0);
	is_int(store_record_put(s, inbox, &r), -1, "record without body refused");
	strlcpy(r.guid, "xyz", sizeof(r.guid));
	r.sysflags = SF_EXPUNGED;
	is_int(store_record_put(s, inbox, &r), -1, "record with bad GUID refused");
	strlcpy(r.guid, NOGUID, sizeof(r.guid));
	is_int(store_record_put(s, inbox, &r), 0,
	    "expunged record without body accepted");
	is_int(crcs(s, "user.ab", &crc, &crca), 0, "CRCs still consistent");
	is_int(crc, 3481249598u, "expunged record adds nothing");
	is_int(store_record_put(s, 9999, &r1), -1, "unknown mailbox refused");

	/* Flag change. */
	c0 = crc;
	ca0 = crca;
	r2.sysflags = SF_ANSWERED | SF_SEEN;
	r2.keywords = "$Forwarded Junk";
	r2.modseq = 7;
	ok(store_record_put(s, inbox, &r2) == 0, "flags updated");
	is_int(crcs(s, "user.ab", &crc, &crca), 0,
	    "incremental == recalc after a flag change");
	ok(crc != c0, "SYNC_CRC changed");
	is_int(crca, ca0, "SYNC_CRC_ANNOT unchanged");
	ok(store_record_get(s, inbox, 2, &got) == 0 && got.modseq == 7 &&
	    got.sysflags == (SF_ANSWERED | SF_SEEN) &&
	    strcmp(got.keywords, "$Forwarded Junk") == 0 &&
	    strcmp(got.guid, GUID2) == 0 && got.savedate == 1676287800,
	    "record read back");
	store_record_clear(&got);

	/* Per-message annotations replace. */
	r2.sysflags = SF_FLAGGED;
	r2.keywords = "$Label1";
	r2.modseq = 5;
	an[0].entry = "/comment";
	an[0].userid = "";
	an[0].modseq = 5;
	an[0].value = "call Carol";
	an[0].valuelen = strlen(an[0].value);
	an[1].entry = "/comment";
	an[1].userid = "alice";
	an[1].modseq = 5;
	an[1].value = "x\0y";
	an[1].valuelen = 3;
	r2.annots = an;
	r2.nannots = 2;
	ok(store_record_put(s, inbox, &r2) == 0, "record with annotations");
	is_int(crcs(s, "user.ab", &crc, &crca), 0, "consistent with annotations");
	is_int(crc, 3481249598u, "flags restored: SYNC_CRC as in 5.7");
	{
		struct store_record tmp = r2;
		uint32_t priv;

		tmp.annots = &an[1];
		tmp.nannots = 1;
		priv = synccrc_record_annot(&tmp) ^ 3133393874u ^ 3298136219u;
		is_int(crca, 1870326507u ^ 3698353566u ^ priv,
		    "SYNC_CRC_ANNOT includes both annotations");
	}
	ok(store_record_get(s, inbox, 2, &got) == 0 && got.nannots == 2 &&
	    strcmp(got.annots[0].userid, "") == 0 &&
	    strcmp(got.annots[1].userid, "alice") == 0 &&
	    got.annots[1].valuelen == 3 &&
	    memcmp(got.annots[1].value, "x\0y", 3) == 0,
	    "annotations read back, sorted, binary-safe");
	store_record_clear(&got);
	r2.nannots = 0;
	r2.annots = NULL;
	ok(store_record_put(s, inbox, &r2) == 0, "annotations removed");
	ok(store_record_get(s, inbox, 2, &got) == 0 && got.nannots == 0,
	    "record has no annotations");
	store_record_clear(&got);
	is_int(crcs(s, "user.ab", &crc, &crca), 0, "consistent");
	is_int(crca, 1870326507u, "SYNC_CRC_ANNOT back to 5.7");

	/* Expunge R1. */
	r1.sysflags |= SF_EXPUNGED;
	r1.modseq = 8;
	ok(store_record_put(s, inbox, &r1) == 0, "R1 expunged");
	is_int(crcs(s, "user.ab", &crc, &crca), 0, "consistent after expunge");
	is_int(crc, 719023269u, "SYNC_CRC is R2's alone");
	is_int(crca, 12345678u ^ 3133393874u ^ 3298136219u,
	    "SYNC_CRC_ANNOT is R2's alone");

	memset(&l, 0, sizeof(l));
	store_record_foreach(s, inbox, 0, collect_rec, &l);
	is_str(l.buf, "1 2 3", "all records in UID order");
	memset(&l, 0, sizeof(l));
	store_record_foreach(s, inbox, 5, collect_rec, &l);
	is_str(l.buf, "1 3", "records since modseq 5");

	/* Scoping of a user's mailboxes. */
	memset(&l, 0, sizeof(l));
	store_mailbox_foreach_user(s, "ab", collect_mb, &l);
	is_str(l.buf, "user.ab user.ab.Sent DELETED.user.ab.Old.63EA1F60",
	    "foreach_user ab: own tree, then DELETED.*");
	memset(&l, 0, sizeof(l));
	store_mailbox_foreach_user(s, "a_b", collect_mb, &l);
	is_str(l.buf, "", "foreach_user a_b matches nothing");
	memset(&l, 0, sizeof(l));
	store_mailbox_foreach_user(s, "x@dom.org", collect_mb, &l);
	is_str(l.buf, "dom.org!user.x dom.org!user.x.Z "
	    "dom.org!DELETED.user.x.Q.63EA1F60", "foreach_user with a domain");
	memset(&l, 0, sizeof(l));
	store_mailbox_foreach(s, "user.ab", collect_mb, &l);
	is_str(l.buf, "user.ab user.ab.Sent user.ab_c user.abc user.abc.X",
	    "foreach with a prefix");
	is_int(store_mailbox_foreach_user(s, "a/b", collect_mb, &l), -1,
	    "bad userid refused");

	/* Rename. */
	is_int(store_mailbox_rename(s, sent, "user.abc", NULL), STORE_EXISTS,
	    "rename onto an existing name");
	ok(store_mailbox_rename(s, sent, "user.ab.Sent Items", NULL) == 0,
	    "renamed");
	is_int(store_mailbox_get(s, "user.ab.Sent", &mb), STORE_NOTFOUND,
	    "old name gone");
	ok(store_mailbox_get(s, "user.ab.Sent Items", &mb) == 0 &&
	    strcmp(mb.uniqueid, "uid-ab-sent") == 0 && mb.id == sent &&
	    strcmp(mb.partition, "default") == 0, "new name, same mailbox");
	store_mailbox_clear(&mb);

	/* Update. */
	ok(store_mailbox_get(s, "user.ab", &mb) == 0, "get for update");
	mb.last_uid = 3;
	mb.highestmodseq = 8;
	mb.sync_crc = 42;
	ok(store_mailbox_update(s, &mb) == 0, "updated");
	store_mailbox_clear(&mb);
	ok(store_mailbox_get(s, "user.ab", &mb) == 0 && mb.last_uid == 3 &&
	    mb.highestmodseq == 8 && mb.sync_crc == 719023269u,
	    "update kept the CRC");
	store_mailbox_clear(&mb);

	/* Mailbox annotations. */
	an[0].value = "sent mail";
	an[0].valuelen = strlen(an[0].value);
	ok(store_mbannot_replace(s, sent, an, 2) == 0, "mbannots replaced");
	ok(store_mbannot_list(s, sent, &al, &n) == 0 && n == 2 &&
	    strcmp(al[0].value, "sent mail") == 0, "mbannots listed");
	store_annots_free(al, n);
	ok(store_mbannot_replace(s, sent, &an[1], 1) == 0, "replaced by one");
	ok(store_mbannot_list(s, sent, &al, &n) == 0 && n == 1 &&
	    strcmp(al[0].userid, "alice") == 0, "only that one left");
	store_annots_free(al, n);
	an[1].valuelen = 0;
	ok(store_mbannot_set(s, sent, &an[1]) == 0 &&
	    store_mbannot_list(s, sent, &al, &n) == 0 && n == 0,
	    "empty value deletes");
	store_annots_free(al, n);
	an[0].value = "server";
	an[0].valuelen = 6;
	ok(store_mbannot_set(s, 0, &an[0]) == 0 &&
	    store_mbannot_list(s, 0, &al, &n) == 0 && n == 1,
	    "server annotation");
	store_annots_free(al, n);

	/* Seen, subscriptions, quota, sieve. */
	memset(&sn, 0, sizeof(sn));
	sn.uniqueid = "uid-abc";
	sn.lastread = 10;
	sn.lastuid = 5;
	sn.lastchange = 11;
	sn.seenuids = "1:5";
	ok(store_seen_set(s, "ab", &sn) == 0, "seen set");
	sn.uniqueid = "uid-axb-y";
	ok(store_seen_set(s, "ab", &sn) == 0, "seen set 2");
	sn.lastuid = 6;
	ok(store_seen_set(s, "ab", &sn) == 0, "seen replaced");
	memset(&l, 0, sizeof(l));
	store_seen_foreach(s, "ab", collect_seen, &l);
	is_str(l.buf, "uid-abc uid-axb-y", "seen listed");
	ok(store_sub_set(s, "ab", "user.abc", 1) == 0 &&
	    store_sub_set(s, "ab", "user.ab", 1) == 0 &&
	    store_sub_set(s, "ab", "user.ab", 1) == 0 &&
	    store_sub_set(s, "ab", "user.axb.Y", 1) == 0 &&
	    store_sub_set(s, "ab", "user.axb.Y", 0) == 0, "subs changed");
	memset(&l, 0, sizeof(l));
	store_sub_foreach(s, "ab", collect_name, &l);
	is_str(l.buf, "user.ab user.abc", "subs listed");
	memset(&q, 0, sizeof(q));
	q.root = "user.ab";
	q.limits[QUOTA_STORAGE] = 1024;
	q.limits[QUOTA_MESSAGE] = QUOTA_UNLIMITED;
	q.limits[QUOTA_ANNOTSTORAGE] = QUOTA_UNLIMITED;
	q.limits[QUOTA_NUMFOLDERS] = 7;
	q.modseq = 9;
	ok(store_quota_set(s, &q) == 0, "quota set");
	q.root = "user.abc";
	ok(store_quota_set(s, &q) == 0, "quota set 2");
	ok(store_quota_get(s, "user.ab", &q) == 0 &&
	    q.limits[QUOTA_STORAGE] == 1024 &&
	    q.limits[QUOTA_MESSAGE] == QUOTA_UNLIMITED &&
	    q.limits[QUOTA_NUMFOLDERS] == 7 && q.modseq == 9, "quota read");
	store_quota_clear(&q);
	ok(store_quota_usage(s, "user.ab", &bytes, &msgs) == 0 &&
	    bytes == 100 && msgs == 1, "usage counts live messages only");
	ok(store_sieve_put(s, "ab", "main", "keep;", 5, 100) == 0 &&
	    store_sieve_put(s, "ab", "other", "stop;", 5, 101) == 0,
	    "sieve put");
	is_int(store_sieve_put(s, "ab", ".hidden", "x", 1, 1), -1,
	    "bad sieve name refused");
	is_int(store_sieve_activate(s, "ab", "nosuch"), STORE_NOTFOUND,
	    "activating a missing script");
	ok(store_sieve_activate(s, "ab", "main") == 0, "activated");
	ok(store_sieve_put(s, "ab", "main", "discard;", 8, 102) == 0,
	    "sieve replaced");
	memset(&l, 0, sizeof(l));
	store_sieve_foreach(s, "ab", collect_sieve, &l);
	is_str(l.buf, "main* other", "active flag kept on replace");
	ok(store_sieve_get(s, "ab", "main", &content, &len) == 0 &&
	    len == 8 && strcmp(content, "discard;") == 0, "sieve content");
	free(content);
	ok(store_sieve_delete(s, "ab", "other") == 0 &&
	    store_sieve_get(s, "ab", "other", &content, &len) ==
	    STORE_NOTFOUND, "sieve deleted");

	/* Delete with tombstone; create removes it. */
	ok(store_mailbox_delete(s, abc, 1) == 0, "user.abc deleted");
	ok(store_tombstone_get(s, "user.abc", &t) == 0 &&
	    strcmp(t.uniqueid, "uid-abc") == 0 && t.modseq > 0 &&
	    t.deleted_at > 0, "tombstone kept");
	store_tombstone_clear(&t);
	is_int(store_mailbox_get(s, "user.abc", &mb), STORE_NOTFOUND,
	    "mailbox gone");
	ok(store_next_modseq(s, "abc", &ms) == 0, "next modseq");
	ok(mkmb(s, "user.abc", "uid-abc2") > 0 &&
	    store_tombstone_get(s, "user.abc", &t) == STORE_NOTFOUND,
	    "create removes the tombstone");

	ok(store_commit(s) == 0, "commit");
	is_int(store_commit(s), -1, "commit without transaction");
	{
		const char *log = slurp(logpath);

		ok(strstr(log, "APPEND user.ab\n") != NULL, "log: APPEND");
		ok(strstr(log, "MAILBOX user.ab\n") != NULL, "log: MAILBOX");
		ok(strstr(log, "RENAME user.ab.Sent \"user.ab.Sent Items\"\n")
		    != NULL, "log: RENAME");
		ok(strstr(log, "MAILBOX \"user.ab.Sent Items\"\n") != NULL,
		    "log: MAILBOX for the new name");
		ok(strstr(log, "UNMAILBOX user.abc\n") != NULL,
		    "log: UNMAILBOX");
		ok(strstr(log, "SEEN ab uid-abc\n") != NULL, "log: SEEN");
		ok(strstr(log, "SUB ab user.axb.Y\n") != NULL, "log: SUB");
		ok(strstr(log, "QUOTA user.ab\n") != NULL, "log: QUOTA");
		ok(strstr(log, "META ab\n") != NULL, "log: META");
		ok(strstr(log, "ANNOTATION \"\"\n") != NULL,
		    "log: ANNOTATION");
		ok(strstr(strstr(log, "APPEND user.ab\n") + 1,
		    "APPEND user.ab\n") == NULL, "log: no duplicates");
	}

	/* Rollback leaves nothing. */
	len = strlen(slurp(logpath));
	ok(store_begin(s) == 0, "begin 2");
	id = mkmb(s, "user.rb", "uid-rb");
	mkrec(&r, 1, 1, 1, 1, 0, NULL, GUID1, 0, 0);
	ok(id > 0 && store_record_put(s, id, &r) == 0, "changes made");
	ok(store_rollback(s) == 0, "rollback");
	is_int(store_mailbox_get(s, "user.rb", &mb), STORE_NOTFOUND,
	    "rolled back mailbox is absent");
	is_int(store_record_get(s, id, 1, &got), STORE_NOTFOUND,
	    "rolled back record is absent");
	is_int(strlen(slurp(logpath)), len, "rollback wrote no log");

	/* Ingest. */
	ig = store_ingest_begin(s);
	h = store_ingest_open(ig, "default", GUID2, strlen(msg1));
	ok(h != NULL && store_ingest_write(ig, h, msg1, strlen(msg1)) == 0,
	    "ingest: wrong bytes written");
	is_int(store_ingest_close(ig, h, 1), -1, "ingest: wrong SHA-1 refused");
	h = store_ingest_open(ig, "default", GUID1, strlen(msg1) + 1);
	ok(h != NULL && store_ingest_write(ig, h, msg1, strlen(msg1)) == 0,
	    "ingest: short body written");
	is_int(store_ingest_close(ig, h, 1), -1, "ingest: short body refused");
	h = store_ingest_open(ig, "default", GUID1, 3);
	is_int(h ? store_ingest_write(ig, h, msg1, strlen(msg1)) : 0, -1,
	    "ingest: too many bytes refused");
	store_ingest_close(ig, h, 0);
	ok(store_ingest_open(ig, "default", "abc", 3) == NULL,
	    "ingest: bad GUID refused");
	ok(store_ingest_open(ig, "nosuch", GUID1, 3) == NULL,
	    "ingest: unknown partition refused");
	snprintf(path, sizeof(path), "%s/stage", partdir);
	is_int(count_dir(path), 0, "ingest: failed temp files removed");
	{
		static const char m3[] = "Subject: three\r\n\r\nbody\r\n";
		char g3[41];
		unsigned char d[20];
		int k;

		SHA1((const unsigned char *)m3, strlen(m3), d);
		for (k = 0; k < 20; k++)
			snprintf(g3 + 2 * k, 3, "%02x", d[k]);
		h = store_ingest_open(ig, "default", g3, strlen(m3));
		ok(h != NULL && store_ingest_write(ig, h, m3, 5) == 0 &&
		    store_ingest_write(ig, h, m3 + 5, strlen(m3) - 5) == 0 &&
		    store_ingest_close(ig, h, 1) == 0, "ingest: good body");
		h = store_ingest_open(ig, "default", GUID1, strlen(msg1));
		ok(h != NULL && store_ingest_write(ig, h, msg1,
		    strlen(msg1)) == 0 && store_ingest_close(ig, h, 1) == 0,
		    "ingest: body already present");
		is_int(store_ingest_has(ig, "default", g3), 1,
		    "ingest_has before commit");
		is_int(store_ingest_has(ig, "default", GUID2), 0,
		    "ingest_has: failed body not had");
		is_int(store_body_exists(s, "default", g3), 0,
		    "not in place before commit");
		ok(store_ingest_commit(ig) == 0, "ingest committed");
		is_int(store_body_exists(s, "default", g3), 1,
		    "in place after commit");
		is_int(store_ingest_has(ig, "default", g3), 1,
		    "ingest_has after commit");
		is_int(count_dir(path), 0, "stage empty after commit");
	}
	store_ingest_free(ig);

	test_ingest_batch(s);

	/* User delete. */
	ok(store_begin(s) == 0, "begin 3");
	ok(store_user_delete(s, "ab") == 0, "user ab deleted");
	ok(store_commit(s) == 0, "commit 3");
	memset(&l, 0, sizeof(l));
	store_mailbox_foreach_user(s, "ab", collect_mb, &l);
	/* Only the delayed-delete copy stays, as Cyrus keeps it. */
	is_str(l.buf, "DELETED.user.ab.Old.63EA1F60",
	    "no mailboxes left but the DELETED.* copy");
	memset(&l, 0, sizeof(l));
	store_mailbox_foreach(s, "user.ab", collect_mb, &l);
	is_str(l.buf, "user.ab_c user.abc user.abc.X", "others' mailboxes stay");
	memset(&l, 0, sizeof(l));
	store_seen_foreach(s, "ab", collect_seen, &l);
	store_sub_foreach(s, "ab", collect_name, &l);
	store_sieve_foreach(s, "ab", collect_sieve, &l);
	is_str(l.buf, "", "seen, subs, sieve gone");
	is_int(store_quota_get(s, "user.ab", &q), STORE_NOTFOUND, "quota gone");
	ok(store_quota_get(s, "user.abc", &q) == 0, "user.abc quota stays");
	store_quota_clear(&q);
	ok(strstr(slurp(logpath), "UNUSER ab\n") != NULL, "log: UNUSER");
	/* As Cyrus logs a user's deletion: each mailbox's, then UNUSER. */
	ok(strstr(slurp(logpath), "UNMAILBOX user.ab\nMAILBOX user.ab\n") !=
	    NULL, "log: UNMAILBOX and MAILBOX per mailbox");

	test_synclog_channels(conf);
	test_order(s);
	test_quota_api(s);
	test_user_foreach(s);
	test_rename_partition(s);

	/* 10,000 records in one transaction. */
	ok(store_begin(s) == 0, "begin 4");
	id = mkmb(s, "user.big", "uid-big");
	gettimeofday(&t0, NULL);
	rc = 0;
	for (i = 1; i <= 10000 && rc == 0; i++) {
		mkrec(&r, (uint32_t)i, (uint64_t)i, 1676282460 + i, 1676282400,
		    i % 3 ? SF_SEEN : 0, i % 5 ? NULL : "$Label1",
		    i % 2 ? GUID1 : GUID2, 1676282400, (uint64_t)i);
		rc = store_record_put(s, id, &r);
	}
	gettimeofday(&t1, NULL);
	ok(rc == 0 && store_commit(s) == 0, "10,000 records put");
	printf("# 10000 record_put in one transaction: %.3f s\n",
	    (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_usec - t0.tv_usec) / 1e6);
	is_int(crcs(s, "user.big", &crc, &crca), 0,
	    "10,000 records: incremental == recalc");

	store_close(s);
	s = store_open(conf, err, sizeof(err));
	ok(s != NULL && store_mailbox_get(s, "user.big", &mb) == 0 &&
	    mb.sync_crc == crc, "reopened store has the data");
	store_mailbox_clear(&mb);
	store_close(s);
	conf_free(conf);
	snprintf(cfg, sizeof(cfg), "rm -rf '%s'", base);
	if (system(cfg) != 0)
		printf("# could not remove %s\n", base);
	return tap_done();
}
