/*
 * sync-store: verify (every invariant of the store) and gc (bodies no
 * record refers to).
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store.h"
#include "sync-store.h"

#define STAGE_WARN_AGE	3600
#define GC_GRACE	3600
#define PATHLEN		4096

/* A body some record needs: "<partition>/<guid>" plus what to check. */
struct need {
	char		*key;
	uint32_t	 size;
	char		*where;		/* mailbox and UID of one record */
};

struct verify {
	struct ss	*ss;
	unsigned long	 faults, warnings;
	unsigned long	 nmailboxes, nrecords;
	struct need	*needs;
	size_t		 nneeds;
	const struct store_mailbox *mb;
	const char	*user;		/* of the scripts being verified */
	int		 oom;
};

static void
fault(struct verify *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fault(struct verify *v, const char *fmt, ...)
{
	va_list ap;

	printf("fault: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	v->faults++;
}

static int
guid_valid(const char *g)
{
	size_t i;

	for (i = 0; i < 40; i++)
		if (!isxdigit((unsigned char)g[i]))
			return 0;
	return g[40] == '\0';
}

/* SHA-1 of a file's bytes as 40 lower-case hex digits. */
static int
hash_file(const char *path, char out[41], uint64_t *size)
{
	unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	EVP_MD_CTX *ctx;
	ssize_t n;
	int fd, rc = -1;

	*size = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1)
		goto out;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		*size += (uint64_t)n;
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		goto out;
	for (i = 0; i < mdlen && i < 20; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[40] = '\0';
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	close(fd);
	return rc;
}

static int
verify_record(const struct store_record *r, void *arg)
{
	struct verify *v = arg;
	const struct store_mailbox *mb = v->mb;
	struct need *nn;
	char key[256];

	v->nrecords++;
	if (r->uid == 0 || r->uid > mb->last_uid)
		fault(v, "%s: record %" PRIu32 ": UID above last_uid %" PRIu32,
		    mb->name, r->uid, mb->last_uid);
	if (r->modseq > mb->highestmodseq)
		fault(v, "%s: record %" PRIu32 ": modseq %" PRIu64
		    " above highestmodseq %" PRIu64, mb->name, r->uid,
		    r->modseq, mb->highestmodseq);
	if ((r->sysflags & SF_EXPUNGED) != 0)
		return 0;
	if (!guid_valid(r->guid) ||
	    strcmp(r->guid, "0000000000000000000000000000000000000000") == 0) {
		fault(v, "%s: record %" PRIu32 ": bad GUID %s", mb->name,
		    r->uid, r->guid);
		return 0;
	}
	if (mb->partition == NULL) {
		fault(v, "%s: record %" PRIu32 ": mailbox has no partition",
		    mb->name, r->uid);
		return 0;
	}
	snprintf(key, sizeof(key), "%s/%s", mb->partition, r->guid);
	if ((nn = reallocarray(v->needs, v->nneeds + 1,
	    sizeof(*nn))) == NULL) {
		v->oom = 1;
		return 1;
	}
	v->needs = nn;
	nn = &v->needs[v->nneeds];
	nn->size = r->size;
	nn->key = strdup(key);
	if (asprintf(&nn->where, "%s: record %" PRIu32, mb->name,
	    r->uid) == -1)
		nn->where = NULL;
	if (nn->key == NULL || nn->where == NULL) {
		free(nn->key);
		free(nn->where);
		v->oom = 1;
		return 1;
	}
	v->nneeds++;
	return 0;
}

static int
verify_mailbox(const struct store_mailbox *mb, void *arg)
{
	struct verify *v = arg;
	struct ss *ss = v->ss;
	uint32_t crc, crca;

	v->nmailboxes++;
	if (store_mailbox_crc_recalc(ss->store, mb->id, &crc, &crca) != 0) {
		fault(v, "%s: cannot recompute CRCs: %s", mb->name,
		    store_error(ss->store));
		return 0;
	}
	if (crc != mb->sync_crc)
		fault(v, "%s: sync_crc %" PRIu32 " stored, %" PRIu32
		    " computed", mb->name, mb->sync_crc, crc);
	if (crca != mb->sync_crc_annot)
		fault(v, "%s: sync_crc_annot %" PRIu32 " stored, %" PRIu32
		    " computed", mb->name, mb->sync_crc_annot, crca);
	if (mb->createdmodseq > mb->highestmodseq)
		fault(v, "%s: createdmodseq %" PRIu64 " above highestmodseq %"
		    PRIu64, mb->name, mb->createdmodseq, mb->highestmodseq);
	v->mb = mb;
	if (store_record_foreach(ss->store, mb->id, 0, verify_record, v) != 0)
		return v->oom ? 1 : (fault(v, "%s: cannot read records: %s",
		    mb->name, store_error(ss->store)), 0);
	return 0;
}

static int
orphan_row(sqlite3_stmt *st, void *arg)
{
	struct verify *v = arg;
	const unsigned char *what = sqlite3_column_text(st, 0);

	fault(v, "orphan %s", what != NULL ? (const char *)what : "row");
	return 0;
}

/* Rows that point at a mailbox or record that is not there. */
static const char *orphan_sql =
	"SELECT 'record ' || mbid || '/' || uid FROM records"
	" WHERE mbid NOT IN (SELECT id FROM mailboxes)"
	" UNION ALL SELECT 'record annotation ' || mbid || '/' || uid ||"
	" ' ' || entry FROM record_annots a WHERE NOT EXISTS"
	" (SELECT 1 FROM records r WHERE r.mbid = a.mbid AND r.uid = a.uid)"
	" UNION ALL SELECT 'mailbox annotation ' || mbid || ' ' || entry"
	" FROM mbannots WHERE mbid <> 0 AND"
	" mbid NOT IN (SELECT id FROM mailboxes)"
	" UNION ALL SELECT 'quotaroot ' || quotaroot || ' of ' || name"
	" FROM mailboxes WHERE quotaroot IS NOT NULL AND"
	" quotaroot NOT IN (SELECT root FROM quotas)";

/* A script's content must hash to the GUID stored with it. */
static int
verify_sieve(const struct store_sieve *sv, void *arg)
{
	struct verify *v = arg;
	const char *u = v->user;
	char *content = NULL, hex[41];
	size_t len = 0;

	if (store_sieve_get(v->ss->store, u, sv->name, &content,
	    &len) != 0) {
		fault(v, "sieve %s/%s: %s", u, sv->name,
		    store_error(v->ss->store));
		return 0;
	}
	ss_sha1_hex(content, len, hex);
	if (strcasecmp(hex, sv->guid) != 0)
		fault(v, "sieve %s/%s: GUID %s, content hashes to %s", u,
		    sv->name, sv->guid, hex);
	free(content);
	return 0;
}

static int
verify_user(const char *user, void *arg)
{
	struct verify *v = arg;

	v->user = user;
	if (store_sieve_foreach(v->ss->store, user, verify_sieve, v) != 0)
		fault(v, "sieve of %s: %s", user, store_error(v->ss->store));
	return 0;
}

static int
need_cmp(const void *a, const void *b)
{
	return strcmp(((const struct need *)a)->key,
	    ((const struct need *)b)->key);
}

/* Each distinct body is read once, however many records hold it. */
static void
verify_bodies(struct verify *v)
{
	char path[PATHLEN], part[256], hex[41], *slash;
	const char *guid;
	struct need *n;
	uint64_t size;
	size_t i;

	if (v->nneeds > 1)
		qsort(v->needs, v->nneeds, sizeof(*v->needs), need_cmp);
	for (i = 0; i < v->nneeds; i++) {
		n = &v->needs[i];
		if (i > 0 && strcmp(n->key, v->needs[i - 1].key) == 0 &&
		    n->size == v->needs[i - 1].size)
			continue;
		strlcpy(part, n->key, sizeof(part));
		if ((slash = strchr(part, '/')) == NULL)
			continue;
		*slash = '\0';
		guid = slash + 1;
		if (store_body_path(v->ss->store, part, guid, path,
		    sizeof(path)) != 0) {
			fault(v, "%s: body %s: %s", n->where, guid,
			    store_error(v->ss->store));
			continue;
		}
		if (hash_file(path, hex, &size) == -1) {
			fault(v, "%s: body %s: %s", n->where, path,
			    strerror(errno));
			continue;
		}
		if (strcasecmp(hex, guid) != 0)
			fault(v, "%s: body %s: content hashes to %s",
			    n->where, path, hex);
		if (size != n->size)
			fault(v, "%s: body %s: %" PRIu64 " bytes, record says %"
			    PRIu32, n->where, path, size, n->size);
	}
}

static void
stage_check(const char *name, const char *dir, void *arg)
{
	struct verify *v = arg;
	char path[PATHLEN];
	struct dirent *de;
	struct stat sb;
	DIR *d;

	if (ss_pathf(path, sizeof(path), "%s/stage", dir) == -1 ||
	    (d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb,
		    AT_SYMLINK_NOFOLLOW) == -1)
			continue;
		if (sb.st_mtime < time(NULL) - STAGE_WARN_AGE) {
			printf("warning: partition %s: stale temporary file "
			    "%s/%s\n", name, path, de->d_name);
			v->warnings++;
		}
	}
	closedir(d);
}

int
verb_verify(struct ss *ss)
{
	struct verify v;
	size_t i;
	int rc;

	memset(&v, 0, sizeof(v));
	v.ss = ss;
	/* Metadata under one lock, so that a writer cannot fake faults. */
	if (store_begin(ss->store) != 0)
		return ss_storefail(ss, "begin");
	if (store_mailbox_foreach(ss->store, NULL, verify_mailbox, &v) != 0) {
		rc = v.oom ? SS_FAIL : ss_storefail(ss, "mailboxes");
		store_rollback(ss->store);
		goto out;
	}
	if ((rc = ss_sql_each(ss, orphan_sql, orphan_row, &v)) != SS_OK) {
		store_rollback(ss->store);
		goto out;
	}
	if (store_user_foreach(ss->store, verify_user, &v) != 0) {
		rc = ss_storefail(ss, "users");
		store_rollback(ss->store);
		goto out;
	}
	store_rollback(ss->store);
	verify_bodies(&v);
	ss_partitions(ss, stage_check, &v);
	printf("verify: %lu mailboxes, %lu records: %lu faults, "
	    "%lu warnings\n", v.nmailboxes, v.nrecords, v.faults,
	    v.warnings);
	rc = v.faults > 0 ? SS_FAIL : SS_OK;
out:
	for (i = 0; i < v.nneeds; i++) {
		free(v.needs[i].key);
		free(v.needs[i].where);
	}
	free(v.needs);
	return rc;
}

/* gc: candidates are old unreferenced-looking files found by a walk. */
struct gc {
	struct ss	*ss;
	time_t		 cutoff;
	char		**cand;		/* "<partition>/<guid>\0<path>" */
	size_t		 ncand;
	char		**refs;		/* "<partition>/<guid>", sorted */
	size_t		 nrefs;
	unsigned long	 nbodies, removed, young, stale;
	uint64_t	 bytes;
	int		 oom, err;
};

static int
strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
gc_add(char ***v, size_t *n, const char *a, const char *b, int *oom)
{
	char **nv, *s;
	size_t la = strlen(a), lb = b != NULL ? strlen(b) : 0;

	if ((nv = reallocarray(*v, *n + 1, sizeof(*nv))) == NULL ||
	    (s = malloc(la + lb + 2)) == NULL) {
		if (nv != NULL)
			*v = nv;
		*oom = 1;
		return;
	}
	memcpy(s, a, la + 1);
	if (b != NULL)
		memcpy(s + la + 1, b, lb + 1);
	*v = nv;
	(*v)[(*n)++] = s;
}

/* Walk bodies/xx/yy/<guid> of one partition. */
static void
gc_walk(const char *name, const char *dir, void *arg)
{
	struct gc *g = arg;
	char p1[PATHLEN], p2[PATHLEN], p3[PATHLEN], full[PATHLEN], key[256];
	struct dirent *e1, *e2, *e3;
	struct stat sb;
	DIR *d1, *d2, *d3;

	if (ss_pathf(p1, sizeof(p1), "%s/bodies", dir) == -1 ||
	    (d1 = opendir(p1)) == NULL)
		return;
	while ((e1 = readdir(d1)) != NULL) {
		if (e1->d_name[0] == '.')
			continue;
		if (ss_pathf(p2, sizeof(p2), "%s/%s", p1, e1->d_name) == -1 ||
		    (d2 = opendir(p2)) == NULL)
			continue;
		while ((e2 = readdir(d2)) != NULL) {
			if (e2->d_name[0] == '.')
				continue;
			if (ss_pathf(p3, sizeof(p3), "%s/%s", p2,
			    e2->d_name) == -1 || (d3 = opendir(p3)) == NULL)
				continue;
			while ((e3 = readdir(d3)) != NULL) {
				if (!guid_valid(e3->d_name))
					continue;
				if (fstatat(dirfd(d3), e3->d_name, &sb,
				    AT_SYMLINK_NOFOLLOW) == -1 ||
				    !S_ISREG(sb.st_mode))
					continue;
				g->nbodies++;
				if (sb.st_mtime > g->cutoff) {
					g->young++;
					continue;
				}
				if (ss_pathf(key, sizeof(key), "%s/%s", name,
				    e3->d_name) == -1 ||
				    ss_pathf(full, sizeof(full), "%s/%s", p3,
				    e3->d_name) == -1)
					continue;
				gc_add(&g->cand, &g->ncand, key, full,
				    &g->oom);
			}
			closedir(d3);
		}
		closedir(d2);
	}
	closedir(d1);
}

/* Temp files of bodies never committed (a killed writer) older than the
 * grace period. */
static void
gc_stage(const char *name, const char *dir, void *arg)
{
	struct gc *g = arg;
	char path[PATHLEN];
	struct dirent *de;
	struct stat sb;
	DIR *d;

	(void)name;
	if (ss_pathf(path, sizeof(path), "%s/stage", dir) == -1 ||
	    (d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb,
		    AT_SYMLINK_NOFOLLOW) == -1 || !S_ISREG(sb.st_mode) ||
		    sb.st_mtime > g->cutoff)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			g->stale++;
	}
	closedir(d);
}

static int
gc_ref_row(sqlite3_stmt *st, void *arg)
{
	struct gc *g = arg;
	const unsigned char *p = sqlite3_column_text(st, 0);
	const unsigned char *guid = sqlite3_column_text(st, 1);
	char key[256], *k;

	if (p == NULL || guid == NULL)
		return 0;
	/* Body files are named in lower case. */
	snprintf(key, sizeof(key), "%s/", p);
	k = key + strlen(key);
	strlcat(key, (const char *)guid, sizeof(key));
	for (; *k != '\0'; k++)
		*k = (char)tolower((unsigned char)*k);
	gc_add(&g->refs, &g->nrefs, key, NULL, &g->oom);
	return g->oom;
}

int
verb_gc(struct ss *ss)
{
	struct gc g;
	struct stat sb;
	uint64_t grace = GC_GRACE;
	const char *path;
	size_t i;
	int rc;

	if (ss->grace != NULL &&
	    ss_parse_u64(ss->grace, INT32_MAX, &grace) == -1) {
		ss_err(ss, ss->grace, "not a number of seconds");
		return SS_USAGE;
	}
	memset(&g, 0, sizeof(g));
	g.ss = ss;
	g.cutoff = time(NULL) - (time_t)grace;
	ss_partitions(ss, gc_walk, &g);
	if (g.oom) {
		ss_err(ss, "bodies", "out of memory");
		rc = SS_FAIL;
		goto out;
	}
	/*
	 * The write lock keeps any new record from referring to a body
	 * while we look and remove; a writer that found a body before we
	 * removed it checks again inside its own transaction.
	 */
	if (store_begin(ss->store) != 0) {
		rc = ss_storefail(ss, "begin");
		goto out;
	}
	rc = ss_sql_each(ss, "SELECT m.partition, r.guid FROM records r"
	    " JOIN mailboxes m ON m.id = r.mbid WHERE m.partition IS NOT NULL",
	    gc_ref_row, &g);
	if (rc != SS_OK || g.oom) {
		store_rollback(ss->store);
		rc = SS_FAIL;
		goto out;
	}
	if (g.nrefs > 1)
		qsort(g.refs, g.nrefs, sizeof(*g.refs), strp_cmp);
	for (i = 0; i < g.ncand; i++) {
		if (g.nrefs > 0 && bsearch(&g.cand[i], g.refs, g.nrefs,
		    sizeof(*g.refs), strp_cmp) != NULL)
			continue;
		path = g.cand[i] + strlen(g.cand[i]) + 1;
		if (lstat(path, &sb) == -1 || sb.st_mtime > g.cutoff)
			continue;
		if (unlink(path) == -1) {
			ss_err(ss, path, "%s", strerror(errno));
			g.err = 1;
			continue;
		}
		g.removed++;
		g.bytes += (uint64_t)sb.st_size;
	}
	store_rollback(ss->store);
	ss_partitions(ss, gc_stage, &g);
	printf("gc: %lu bodies, %lu removed (%" PRIu64 " bytes), "
	    "%lu younger than %" PRIu64 "s kept, %lu stale temporary "
	    "files removed\n", g.nbodies, g.removed, g.bytes, g.young, grace,
	    g.stale);
	rc = g.err ? SS_FAIL : SS_OK;
out:
	for (i = 0; i < g.ncand; i++)
		free(g.cand[i]);
	free(g.cand);
	for (i = 0; i < g.nrefs; i++)
		free(g.refs[i]);
	free(g.refs);
	return rc;
}
