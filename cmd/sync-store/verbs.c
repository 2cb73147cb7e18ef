/*
 * sync-store: the verbs that change the store.  Each runs in one store
 * transaction; on any error it is rolled back and nothing has changed.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "names.h"
#include <openssl/evp.h>

#include "store.h"
#include "sync-store.h"

#define OWNER_RIGHTS	"lrswipkxtecdan"
#define ALL_RIGHTS	"lrswipkxtecdan0123456789"
#define MAX_SIEVE_SIZE	(1024 * 1024)
#define MAX_KEYWORDS	128

/* Flag changes: flag, unflag, expunge. */
enum flagop { FLAG_ADD, FLAG_REMOVE };

struct flagset {
	unsigned	 sf;
	char		*kw[MAX_KEYWORDS];
	size_t		 nkw;
};

/* The owner of a mailbox name, "" for a shared mailbox.  malloc'd. */
static char *
owner_of(const char *name)
{
	char *u = mboxname_to_userid(name);

	return u != NULL ? u : strdup("");
}

/*
 * A fresh lower-case UUID (version 4) as the mailbox uniqueid, the form
 * Cyrus 3.6 gives new mailboxes.
 */
static void
make_uniqueid(char *buf, size_t size)
{
	unsigned char b[16];

	arc4random_buf(b, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(buf, size,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x",
	    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
	    b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Fetch a mailbox, reporting a missing one. */
static int
get_mailbox(struct ss *ss, const char *name, struct store_mailbox *mb)
{
	int r;

	memset(mb, 0, sizeof(*mb));
	r = store_mailbox_get(ss->store, name, mb);
	if (r == STORE_NOTFOUND) {
		ss_err(ss, name, "no such mailbox");
		return SS_FAIL;
	}
	if (r != 0)
		return ss_storefail(ss, name);
	return SS_OK;
}

/*
 * The next modseq for a change to mb: from its owner's counter, and
 * above the mailbox's highestmodseq even if the counter lags behind it.
 */
static int
mailbox_modseq(struct ss *ss, const struct store_mailbox *mb, uint64_t *ms)
{
	char *owner = owner_of(mb->name);
	int r;

	if (owner == NULL) {
		ss_err(ss, mb->name, "%s", strerror(errno));
		return SS_FAIL;
	}
	r = store_bump_modseq(ss->store, owner, mb->highestmodseq);
	if (r == 0)
		r = store_next_modseq(ss->store, owner, ms);
	free(owner);
	if (r != 0)
		return ss_storefail(ss, "modseq");
	return SS_OK;
}

/* Raise the counter of name's owner to at least ms. */
static int
bump_owner_modseq(struct ss *ss, const char *name, uint64_t ms)
{
	char *owner = owner_of(name);
	int r;

	if (owner == NULL) {
		ss_err(ss, name, "%s", strerror(errno));
		return SS_FAIL;
	}
	r = store_bump_modseq(ss->store, owner, ms);
	free(owner);
	return r != 0 ? ss_storefail(ss, "modseq") : SS_OK;
}

/* The nearest quota root at or above name, or NULL. */
static int
find_quotaroot(struct ss *ss, const char *name, char **root)
{
	struct store_quota q;
	char *cand, *dot;
	int r;

	*root = NULL;
	if ((cand = strdup(name)) == NULL)
		return -1;
	for (;;) {
		memset(&q, 0, sizeof(q));
		r = store_quota_get(ss->store, cand, &q);
		if (r == 0) {
			store_quota_clear(&q);
			*root = cand;
			return 0;
		}
		if (r != STORE_NOTFOUND) {
			free(cand);
			return -1;
		}
		if ((dot = strrchr(cand, '.')) == NULL)
			break;
		*dot = '\0';
	}
	free(cand);
	return 0;
}

static int
partition_ok(struct ss *ss, const char *part)
{
	if (!partition_name_valid(part) ||
	    conf_partition_path(ss->conf, part) == NULL) {
		ss_err(ss, part, "partition not configured");
		return SS_CONFIG;
	}
	return SS_OK;
}

static int
keyword_valid(const char *k)
{
	const unsigned char *p;

	if (*k == '\0' || strlen(k) > 100 || strcasecmp(k, "NIL") == 0)
		return 0;
	for (p = (const unsigned char *)k; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p))
			return 0;
	return 1;
}

/*
 * Flags given as one or more arguments, each a comma or space separated
 * list: the system flags by name (any case) and keywords (IMAP atoms).
 */
static int
parse_flags(struct ss *ss, char **args, int n, struct flagset *fs)
{
	static const struct {
		const char	*name;
		unsigned	 bit;
	} sys[] = {
		{ "\\Seen", SF_SEEN }, { "\\Flagged", SF_FLAGGED },
		{ "\\Answered", SF_ANSWERED }, { "\\Deleted", SF_DELETED },
		{ "\\Draft", SF_DRAFT },
	};
#define NSYS	(sizeof(sys) / sizeof(sys[0]))
	char *copy, *p, *tok;
	size_t i;
	int a;

	memset(fs, 0, sizeof(*fs));
	for (a = 0; a < n; a++) {
		if ((copy = strdup(args[a])) == NULL)
			return SS_FAIL;
		for (p = copy; (tok = strsep(&p, ", ")) != NULL;) {
			if (*tok == '\0')
				continue;
			if (*tok == '\\') {
				for (i = 0; i < NSYS; i++)
					if (strcasecmp(tok, sys[i].name) == 0)
						break;
				if (i == NSYS) {
					ss_err(ss, tok, "not a settable flag");
					free(copy);
					return SS_USAGE;
				}
				fs->sf |= sys[i].bit;
				continue;
			}
			if (!keyword_valid(tok)) {
				ss_err(ss, tok, "not a valid keyword");
				free(copy);
				return SS_USAGE;
			}
			for (i = 0; i < fs->nkw; i++)
				if (strcasecmp(fs->kw[i], tok) == 0)
					break;
			if (i < fs->nkw)
				continue;
			if (fs->nkw == MAX_KEYWORDS) {
				ss_err(ss, tok, "too many keywords");
				free(copy);
				return SS_USAGE;
			}
			if ((fs->kw[fs->nkw] = strdup(tok)) == NULL) {
				free(copy);
				return SS_FAIL;
			}
			fs->nkw++;
		}
		free(copy);
	}
	return SS_OK;
}

static void
flagset_free(struct flagset *fs)
{
	size_t i;

	for (i = 0; i < fs->nkw; i++)
		free(fs->kw[i]);
	fs->nkw = 0;
}

/*
 * A record's keywords after adding or removing some; keywords keep their
 * order and spelling, new ones go last.  Returns malloc'd text, "" for
 * none.
 */
static char *
keywords_apply(const char *old, const struct flagset *fs, enum flagop op)
{
	char *copy, *p, *tok, *out;
	size_t i, cap, nold = 0;
	int drop;

	cap = (old != NULL ? strlen(old) : 0) + 2;
	for (i = 0; i < fs->nkw; i++)
		cap += strlen(fs->kw[i]) + 1;
	if ((out = calloc(1, cap)) == NULL)
		return NULL;
	if ((copy = strdup(old != NULL ? old : "")) == NULL) {
		free(out);
		return NULL;
	}
	for (p = copy; (tok = strsep(&p, " ")) != NULL;) {
		if (*tok == '\0')
			continue;
		drop = 0;
		for (i = 0; i < fs->nkw && op == FLAG_REMOVE; i++)
			if (strcasecmp(fs->kw[i], tok) == 0)
				drop = 1;
		if (drop)
			continue;
		if (out[0] != '\0')
			strlcat(out, " ", cap);
		strlcat(out, tok, cap);
		nold++;
	}
	for (i = 0; i < fs->nkw && op == FLAG_ADD; i++) {
		char *hay, *q, *t;
		int found = 0;

		if ((hay = strdup(out)) == NULL)
			break;
		for (q = hay; (t = strsep(&q, " ")) != NULL;)
			if (*t != '\0' && strcasecmp(t, fs->kw[i]) == 0)
				found = 1;
		free(hay);
		if (found || nold >= MAX_KEYWORDS)
			continue;
		if (out[0] != '\0')
			strlcat(out, " ", cap);
		strlcat(out, fs->kw[i], cap);
		nold++;
	}
	free(copy);
	return out;
}

static int
create_run(struct ss *ss, const char *name, const char *part, uint64_t *msp)
{
	struct store_mailbox mb;
	struct store_annot an;
	char uniqueid[40], acl[300], *owner, *qroot = NULL;
	const char *defacl;
	uint64_t ms;
	int r, rc = SS_FAIL;

	if ((owner = owner_of(name)) == NULL)
		return SS_FAIL;
	memset(&mb, 0, sizeof(mb));
	r = store_mailbox_get(ss->store, name, &mb);
	store_mailbox_clear(&mb);
	if (r == 0) {
		ss_err(ss, name, "mailbox exists");
		goto out;
	}
	if (r != STORE_NOTFOUND) {
		rc = ss_storefail(ss, name);
		goto out;
	}
	/* A new mailbox of an old name replaces the old one's tombstone. */
	if (store_tombstone_delete(ss->store, name) == -1 ||
	    store_next_modseq(ss->store, owner, &ms) != 0 ||
	    find_quotaroot(ss, name, &qroot) == -1) {
		rc = ss_storefail(ss, name);
		goto out;
	}
	if (*owner != '\0')
		snprintf(acl, sizeof(acl), "%s\t%s\t", owner, OWNER_RIGHTS);
	else {
		/* defaultacl is "ident rights ..." separated by spaces. */
		char *d, *p, *id, *rt;

		acl[0] = '\0';
		defacl = conf_get(ss->conf, NULL, "defaultacl", "anyone lrs");
		if ((d = strdup(defacl)) == NULL)
			goto out;
		p = d;
		while ((id = strsep(&p, " \t")) != NULL) {
			if (*id == '\0')
				continue;
			while ((rt = strsep(&p, " \t")) != NULL && *rt == '\0')
				;
			if (rt == NULL)
				break;
			strlcat(acl, id, sizeof(acl));
			strlcat(acl, "\t", sizeof(acl));
			strlcat(acl, rt, sizeof(acl));
			strlcat(acl, "\t", sizeof(acl));
		}
		free(d);
	}
	make_uniqueid(uniqueid, sizeof(uniqueid));

	memset(&mb, 0, sizeof(mb));
	mb.uniqueid = uniqueid;
	mb.name = (char *)name;
	mb.mbtype = "";
	mb.partition = (char *)part;
	mb.acl = acl;
	mb.options = "P";
	mb.quotaroot = qroot;
	mb.uidvalidity = (uint32_t)time(NULL);
	mb.highestmodseq = mb.createdmodseq = mb.foldermodseq = ms;
	r = store_mailbox_create(ss->store, &mb);
	if (r == STORE_EXISTS) {
		ss_err(ss, name, "mailbox exists");
		goto out;
	}
	if (r != 0) {
		rc = ss_storefail(ss, name);
		goto out;
	}
	if (ss->specialuse != NULL) {
		memset(&an, 0, sizeof(an));
		an.entry = "/specialuse";
		an.userid = owner;
		an.modseq = ms;
		an.value = (char *)ss->specialuse;
		an.valuelen = strlen(ss->specialuse);
		if (store_mbannot_set(ss->store, mb.id, &an) != 0) {
			rc = ss_storefail(ss, name);
			goto out;
		}
	}
	*msp = ms;
	rc = SS_OK;
out:
	free(qroot);
	free(owner);
	return rc;
}

int
verb_create(struct ss *ss)
{
	const char *name = ss->args[0], *part;
	uint64_t ms;
	int rc;

	if (!mboxname_valid(name)) {
		ss_err(ss, name, "not a valid mailbox name");
		return SS_USAGE;
	}
	if (ss->specialuse != NULL && (ss->specialuse[0] != '\\' ||
	    !keyword_valid(ss->specialuse + 1))) {
		ss_err(ss, ss->specialuse, "not a special-use flag");
		return SS_USAGE;
	}
	part = ss->partition != NULL ? ss->partition :
	    conf_get(ss->conf, NULL, "defaultpartition", "default");
	if ((rc = partition_ok(ss, part)) != SS_OK)
		return rc;
	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	if ((rc = create_run(ss, name, part, &ms)) != SS_OK) {
		ss_rollback(ss);
		return rc;
	}
	return ss_commit(ss, name);
}

/* What deliver's options ask for. */
struct delivery {
	unsigned	 sf;
	char		*keywords;
	int64_t		 idate;		/* -1: now */
};

/* One message to deliver: its bytes' GUID and size. */
struct body {
	char		 guid[41];
	size_t		 len;
};

/*
 * One delivery attempt of n messages, in one transaction.  The bodies
 * were made durable before it; they are checked again inside it because
 * gc may have removed an old copy of the same body in between (then
 * *retry is set).
 */
static int
deliver_once(struct ss *ss, const char *name, const char *part,
    const struct body *b, size_t n, const struct delivery *dv,
    uint32_t *uids, int *retry)
{
	struct store_mailbox mb;
	struct store_record rec;
	uint64_t ms;
	time_t now = time(NULL);
	size_t i;
	int r = 0, rc;

	*retry = 0;
	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	if ((rc = get_mailbox(ss, name, &mb)) != SS_OK) {
		ss_rollback(ss);
		return rc;
	}
	for (i = 0; i < n; i++) {
		if (mb.partition == NULL || strcmp(mb.partition, part) != 0 ||
		    (r = store_body_exists(ss->store, part, b[i].guid)) == 0) {
			*retry = 1;
			rc = SS_FAIL;
			goto fail;
		}
		if (r == -1) {
			rc = ss_storefail(ss, b[i].guid);
			goto fail;
		}
		if (mb.last_uid >= UINT32_MAX - 1) {
			ss_err(ss, name, "no UIDs left");
			rc = SS_FAIL;
			goto fail;
		}
		/*
		 * One modseq each, taken from the owner's counter once: the
		 * transaction holds the store, so the next ones are ours
		 * too, and the counter is raised past them at the end.
		 */
		if (i == 0) {
			if ((rc = mailbox_modseq(ss, &mb, &ms)) != SS_OK)
				goto fail;
		} else
			ms++;
		memset(&rec, 0, sizeof(rec));
		rec.uid = mb.last_uid + 1;
		rec.modseq = ms;
		rec.last_updated = now;
		rec.internaldate = dv->idate != -1 ? dv->idate : now;
		rec.size = (uint32_t)b[i].len;
		strlcpy(rec.guid, b[i].guid, sizeof(rec.guid));
		rec.sysflags = dv->sf;
		rec.keywords = dv->keywords;
		rec.savedate = now;
		rec.createdmodseq = ms;
		if (store_record_put(ss->store, mb.id, &rec) != 0) {
			rc = ss_storefail(ss, name);
			goto fail;
		}
		mb.last_uid = rec.uid;
		mb.highestmodseq = ms;
		mb.last_appenddate = now;
		uids[i] = rec.uid;
	}
	if (n > 1 && (rc = bump_owner_modseq(ss, mb.name, ms)) != SS_OK)
		goto fail;
	if (store_mailbox_update(ss->store, &mb) != 0) {
		rc = ss_storefail(ss, name);
		goto fail;
	}
	store_mailbox_clear(&mb);
	return ss_commit(ss, name);
fail:
	store_mailbox_clear(&mb);
	ss_rollback(ss);
	return rc;
}

/* SHA-1 of a buffer as 40 lower-case hex digits. */
static int
body_guid(const char *buf, size_t len, char guid[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	if (EVP_Digest(buf, len, md, &mdlen, EVP_sha1(), NULL) != 1 ||
	    mdlen != 20)
		return -1;
	for (i = 0; i < 20; i++)
		snprintf(guid + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/*
 * Where deliver's messages come from: standard input, read once and
 * kept (it cannot be read again), or files, read one at a time into one
 * buffer that is reused, so that a batch of thousands of files costs the
 * memory of its largest message only.
 */
struct source {
	char	**files;	/* NULL: standard input */
	char	 *stdinbuf;
	size_t	  stdinlen;
	char	 *buf;
	size_t	  cap;
};

/*
 * Read fd to its end into src's reusable buffer (sized by fstat when it
 * can be), refusing more than UINT32_MAX bytes.
 */
static int
source_read(struct source *src, int fd, size_t *lenp)
{
	const size_t max = UINT32_MAX;
	struct stat sb;
	size_t len = 0, want;
	char *nb;
	ssize_t n;

	want = 65536;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= 0 &&
	    (uint64_t)sb.st_size <= max)
		want = (size_t)sb.st_size + 1;
	for (;;) {
		if (len + 1 >= want || src->cap < want) {
			if (len + 1 >= want)
				want = want > max / 2 ? max + 1 : want * 2;
			if (src->cap < want) {
				if ((nb = realloc(src->buf, want)) == NULL)
					return -1;
				src->buf = nb;
				src->cap = want;
			}
		}
		n = read(fd, src->buf + len, src->cap - len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			errno = EFBIG;
			return -1;
		}
	}
	*lenp = len;
	return 0;
}

/* The bytes of message i: a pointer valid until the next call. */
static const char *
source_get(struct ss *ss, struct source *src, size_t i, size_t *lenp)
{
	int fd;

	if (src->files == NULL) {
		*lenp = src->stdinlen;
		return src->stdinbuf;
	}
	if ((fd = open(src->files[i], O_RDONLY | O_CLOEXEC)) == -1 ||
	    source_read(src, fd, lenp) == -1) {
		ss_err(ss, src->files[i], "%s", strerror(errno));
		if (fd != -1)
			close(fd);
		return NULL;
	}
	close(fd);
	return src->buf;
}

/*
 * Bring the messages' bodies into the partition as one batch: one flush
 * for all of them, however many there are.  Each message is read, hashed
 * and written before the next is read.
 */
static int
ingest_bodies(struct ss *ss, const char *part, struct source *src,
    struct body *b, size_t n)
{
	struct store_ingest *ig = store_ingest_begin(ss->store);
	const char *buf;
	size_t i;
	int rc = SS_OK;

	if (ig == NULL)
		return ss_storefail(ss, "body");
	for (i = 0; i < n && rc == SS_OK; i++) {
		void *h;

		if ((buf = source_get(ss, src, i, &b[i].len)) == NULL) {
			rc = SS_FAIL;
			break;
		}
		if (body_guid(buf, b[i].len, b[i].guid) == -1) {
			ss_err(ss, "body", "cannot hash");
			rc = SS_FAIL;
			break;
		}
		h = store_ingest_open(ig, part, b[i].guid, b[i].len);
		if (h == NULL ||
		    store_ingest_write(ig, h, buf, b[i].len) == -1 ||
		    store_ingest_close(ig, h, 1) == -1)
			rc = ss_storefail(ss, "body");
	}
	if (rc == SS_OK && store_ingest_commit(ig) == -1)
		rc = ss_storefail(ss, "body");
	if (rc != SS_OK)
		store_ingest_abort(ig);
	store_ingest_free(ig);
	return rc;
}

int
verb_deliver(struct ss *ss)
{
	struct store_mailbox mb;
	struct flagset fs;
	const char *name = ss->args[0];
	struct delivery dv;
	struct source src;
	struct body *b = NULL;
	char *part = NULL;
	uint32_t *uids = NULL;
	size_t n, i;
	int rc = SS_OK, retry = 0, attempt;

	memset(&dv, 0, sizeof(dv));
	memset(&src, 0, sizeof(src));
	dv.idate = -1;
	if (ss->date != NULL && (ss_parse_i64(ss->date, &dv.idate) == -1 ||
	    dv.idate < 0)) {
		ss_err(ss, ss->date, "not a date in seconds since the epoch");
		return SS_USAGE;
	}
	rc = parse_flags(ss, (char **)&ss->flags, ss->flags != NULL, &fs);
	if (rc != SS_OK)
		return rc;
	dv.sf = fs.sf;
	dv.keywords = keywords_apply(NULL, &fs, FLAG_ADD);
	flagset_free(&fs);
	if (dv.keywords == NULL)
		return SS_FAIL;
	/* Standard input, or each file named after the mailbox. */
	n = ss->nargs > 1 ? (size_t)ss->nargs - 1 : 1;
	b = calloc(n, sizeof(*b));
	uids = calloc(n, sizeof(*uids));
	if (b == NULL || uids == NULL) {
		ss_err(ss, name, "%s", strerror(errno));
		rc = SS_FAIL;
		goto done;
	}
	if (ss->nargs > 1)
		src.files = &ss->args[1];
	else if (ss_read_fd(STDIN_FILENO, UINT32_MAX, &src.stdinbuf,
	    &src.stdinlen) == -1) {
		ss_err(ss, "stdin", "%s", strerror(errno));
		rc = SS_FAIL;
		goto done;
	}
	for (attempt = 0; attempt < 3; attempt++) {
		if ((rc = get_mailbox(ss, name, &mb)) != SS_OK)
			break;
		free(part);
		part = mb.partition != NULL ? strdup(mb.partition) : NULL;
		store_mailbox_clear(&mb);
		if (part == NULL) {
			ss_err(ss, name, "mailbox has no partition");
			rc = SS_FAIL;
			break;
		}
		if ((rc = ingest_bodies(ss, part, &src, b, n)) != SS_OK)
			break;
		rc = deliver_once(ss, name, part, b, n, &dv, uids, &retry);
		if (!retry)
			break;
	}
	if (rc == SS_FAIL && retry)
		ss_err(ss, name, "mailbox or body changed during delivery");
	if (rc == SS_OK)
		for (i = 0; i < n; i++)
			printf("%u\n", uids[i]);
done:
	free(src.stdinbuf);
	free(src.buf);
	free(b);
	free(uids);
	free(part);
	free(dv.keywords);
	return rc;
}

struct uidlist {
	const struct uidset *set;
	uint32_t	 last;
	uint32_t	*uids;
	size_t		 n;
	int		 oom;
};

static int
collect_uid(const struct store_record *r, void *arg)
{
	struct uidlist *ul = arg;
	uint32_t *nu;

	if ((r->sysflags & SF_EXPUNGED) != 0 ||
	    !ss_uidset_has(ul->set, r->uid, ul->last))
		return 0;
	if ((nu = reallocarray(ul->uids, ul->n + 1, sizeof(*nu))) == NULL) {
		ul->oom = 1;
		return 1;
	}
	ul->uids = nu;
	ul->uids[ul->n++] = r->uid;
	return 0;
}

/*
 * Change flags on the non-expunged records of a UID set.  All records
 * changed by one call share one new modseq, as one IMAP STORE does.
 */
static int
change_flags(struct ss *ss, const char *name, const char *uidspec,
    const struct flagset *fs, enum flagop op)
{
	struct store_mailbox mb;
	struct store_record rec;
	struct uidset set;
	struct uidlist ul;
	uint64_t ms = 0;
	unsigned nsf;
	char *nkw, *okw;
	size_t i;
	int rc = SS_OK, changed;

	if (ss_uidset_parse(uidspec, 1, &set) == -1) {
		ss_err(ss, uidspec, "not a UID set");
		return SS_USAGE;
	}
	if ((rc = ss_begin(ss)) != SS_OK) {
		ss_uidset_free(&set);
		return rc;
	}
	if ((rc = get_mailbox(ss, name, &mb)) != SS_OK) {
		ss_rollback(ss);
		ss_uidset_free(&set);
		return rc;
	}
	memset(&ul, 0, sizeof(ul));
	ul.set = &set;
	ul.last = mb.last_uid;
	if (store_record_foreach(ss->store, mb.id, 0, collect_uid, &ul) != 0 ||
	    ul.oom) {
		rc = ul.oom ? SS_FAIL : ss_storefail(ss, name);
		goto out;
	}
	for (i = 0; i < ul.n; i++) {
		memset(&rec, 0, sizeof(rec));
		if (store_record_get(ss->store, mb.id, ul.uids[i], &rec) != 0) {
			rc = ss_storefail(ss, name);
			goto out;
		}
		nsf = op == FLAG_ADD ? rec.sysflags | fs->sf :
		    rec.sysflags & ~fs->sf;
		if ((nkw = keywords_apply(rec.keywords, fs, op)) == NULL) {
			store_record_clear(&rec);
			rc = SS_FAIL;
			goto out;
		}
		changed = nsf != rec.sysflags ||
		    strcmp(nkw, rec.keywords != NULL ? rec.keywords : "") != 0;
		if (changed && ms == 0 &&
		    (rc = mailbox_modseq(ss, &mb, &ms)) != SS_OK) {
			free(nkw);
			store_record_clear(&rec);
			goto out;
		}
		okw = rec.keywords;
		rec.keywords = nkw;
		rec.sysflags = nsf;
		rec.modseq = ms;
		rec.last_updated = time(NULL);
		if (changed && store_record_put(ss->store, mb.id, &rec) != 0)
			rc = ss_storefail(ss, name);
		rec.keywords = okw;
		free(nkw);
		store_record_clear(&rec);
		if (rc != SS_OK)
			goto out;
	}
	if (ms != 0) {
		mb.highestmodseq = ms;
		if (store_mailbox_update(ss->store, &mb) != 0) {
			rc = ss_storefail(ss, name);
			goto out;
		}
	}
out:
	free(ul.uids);
	store_mailbox_clear(&mb);
	ss_uidset_free(&set);
	if (rc != SS_OK) {
		ss_rollback(ss);
		return rc;
	}
	return ss_commit(ss, name);
}

static int
flag_common(struct ss *ss, enum flagop op)
{
	struct flagset fs;
	int rc;

	if ((rc = parse_flags(ss, ss->args + 2, ss->nargs - 2, &fs)) != SS_OK)
		return rc;
	if (fs.sf == 0 && fs.nkw == 0)
		return ss_usage(ss);
	rc = change_flags(ss, ss->args[0], ss->args[1], &fs, op);
	flagset_free(&fs);
	return rc;
}

int
verb_flag(struct ss *ss)
{
	return flag_common(ss, FLAG_ADD);
}

int
verb_unflag(struct ss *ss)
{
	return flag_common(ss, FLAG_REMOVE);
}

int
verb_expunge(struct ss *ss)
{
	struct flagset fs;

	memset(&fs, 0, sizeof(fs));
	fs.sf = SF_EXPUNGED;
	return change_flags(ss, ss->args[0], ss->args[1], &fs, FLAG_ADD);
}

struct namelist {
	char	**names;
	size_t	  n;
	int	  oom;
};

static int
collect_name(const struct store_mailbox *mb, void *arg)
{
	struct namelist *nl = arg;
	char **nn;

	if ((nn = reallocarray(nl->names, nl->n + 1, sizeof(*nn))) == NULL ||
	    (nn[nl->n] = strdup(mb->name)) == NULL) {
		if (nn != NULL)
			nl->names = nn;
		nl->oom = 1;
		return 1;
	}
	nl->names = nn;
	nl->n++;
	return 0;
}

static void
namelist_free(struct namelist *nl)
{
	size_t i;

	for (i = 0; i < nl->n; i++)
		free(nl->names[i]);
	free(nl->names);
	memset(nl, 0, sizeof(*nl));
}

/*
 * Rename one mailbox and record the change as Cyrus does: a new modseq
 * (of the new owner) in highestmodseq and foldermodseq, and the quota
 * root of the new place.
 */
static int
rename_one(struct ss *ss, const char *from, const char *to)
{
	struct store_mailbox mb;
	uint64_t ms;
	char *qroot = NULL;
	int rc;

	if ((rc = get_mailbox(ss, from, &mb)) != SS_OK)
		return rc;
	/* A new partition: the store moves the bodies along. */
	if (store_mailbox_rename(ss->store, mb.id, to, ss->partition) != 0) {
		store_mailbox_clear(&mb);
		return ss_storefail(ss, from);
	}
	store_mailbox_clear(&mb);
	if ((rc = get_mailbox(ss, to, &mb)) != SS_OK)
		return rc;
	if ((rc = mailbox_modseq(ss, &mb, &ms)) != SS_OK)
		goto out;
	if (find_quotaroot(ss, to, &qroot) == -1) {
		rc = ss_storefail(ss, to);
		goto out;
	}
	free(mb.quotaroot);
	mb.quotaroot = qroot;
	mb.highestmodseq = mb.foldermodseq = ms;
	if (store_mailbox_update(ss->store, &mb) != 0)
		rc = ss_storefail(ss, to);
out:
	store_mailbox_clear(&mb);
	return rc;
}

int
verb_rename(struct ss *ss)
{
	struct store_mailbox mb;
	struct namelist nl;
	const char *from = ss->args[0], *to = ss->args[1];
	char prefix[MAX_MAILBOX_NAME + 2], newname[2 * MAX_MAILBOX_NAME + 2];
	size_t i, flen = strlen(from);
	int rc, r;

	if (!mboxname_valid(from) || !mboxname_valid(to)) {
		ss_err(ss, !mboxname_valid(from) ? from : to,
		    "not a valid mailbox name");
		return SS_USAGE;
	}
	if (strcmp(from, to) == 0 || (strncmp(to, from, flen) == 0 &&
	    to[flen] == '.')) {
		ss_err(ss, to, "cannot rename a mailbox into itself");
		return SS_FAIL;
	}
	if (ss->partition != NULL && (rc = partition_ok(ss, ss->partition)))
		return rc;
	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	if ((rc = get_mailbox(ss, from, &mb)) != SS_OK) {
		ss_rollback(ss);
		return rc;
	}
	store_mailbox_clear(&mb);
	/* The mailbox and its children move together, as with IMAP RENAME. */
	memset(&nl, 0, sizeof(nl));
	snprintf(prefix, sizeof(prefix), "%s.", from);
	if (collect_name(&(struct store_mailbox){ .name = (char *)from },
	    &nl) != 0 || store_mailbox_foreach(ss->store, prefix, collect_name,
	    &nl) != 0 || nl.oom) {
		rc = nl.oom ? SS_FAIL : ss_storefail(ss, from);
		goto out;
	}
	for (i = 0; i < nl.n; i++) {
		snprintf(newname, sizeof(newname), "%s%s", to,
		    nl.names[i] + flen);
		if (!mboxname_valid(newname)) {
			ss_err(ss, newname, "not a valid mailbox name");
			rc = SS_FAIL;
			goto out;
		}
		memset(&mb, 0, sizeof(mb));
		r = store_mailbox_get(ss->store, newname, &mb);
		store_mailbox_clear(&mb);
		if (r == 0) {
			ss_err(ss, newname, "mailbox exists");
			rc = SS_FAIL;
			goto out;
		}
		if (r != STORE_NOTFOUND) {
			rc = ss_storefail(ss, newname);
			goto out;
		}
	}
	for (i = 0; i < nl.n; i++) {
		snprintf(newname, sizeof(newname), "%s%s", to,
		    nl.names[i] + flen);
		if ((rc = rename_one(ss, nl.names[i], newname)) != SS_OK)
			goto out;
	}
out:
	namelist_free(&nl);
	if (rc != SS_OK) {
		ss_rollback(ss);
		return rc;
	}
	return ss_commit(ss, from);
}

int
verb_delete(struct ss *ss)
{
	struct store_mailbox mb;
	int rc;

	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	if ((rc = get_mailbox(ss, ss->args[0], &mb)) != SS_OK) {
		ss_rollback(ss);
		return rc;
	}
	if (store_mailbox_delete(ss->store, mb.id, 1) != 0) {
		rc = ss_storefail(ss, ss->args[0]);
		store_mailbox_clear(&mb);
		ss_rollback(ss);
		return rc;
	}
	store_mailbox_clear(&mb);
	return ss_commit(ss, ss->args[0]);
}

static int
check_user(struct ss *ss, const char *user)
{
	if (!userid_valid(user)) {
		ss_err(ss, user, "not a valid userid");
		return SS_USAGE;
	}
	return SS_OK;
}

int
verb_seen(struct ss *ss)
{
	struct store_mailbox mb;
	struct store_seen seen;
	struct uidset set;
	const char *user = ss->args[0], *which = ss->args[1];
	const char *uids = ss->args[2];
	int rc, r;

	if ((rc = check_user(ss, user)) != SS_OK)
		return rc;
	if (*uids != '\0') {
		if (ss_uidset_parse(uids, 0, &set) == -1) {
			ss_err(ss, uids, "not a UID set");
			return SS_USAGE;
		}
		ss_uidset_free(&set);
	}
	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	memset(&mb, 0, sizeof(mb));
	r = store_mailbox_get(ss->store, which, &mb);
	if (r == STORE_NOTFOUND)
		r = store_mailbox_get_uniqueid(ss->store, which, &mb);
	if (r != 0) {
		if (r == STORE_NOTFOUND) {
			ss_err(ss, which, "no such mailbox");
			rc = SS_FAIL;
		} else
			rc = ss_storefail(ss, which);
		ss_rollback(ss);
		return rc;
	}
	memset(&seen, 0, sizeof(seen));
	seen.uniqueid = mb.uniqueid;
	seen.lastread = seen.lastchange = time(NULL);
	seen.lastuid = mb.last_uid;
	seen.seenuids = (char *)uids;
	r = store_seen_set(ss->store, user, &seen);
	store_mailbox_clear(&mb);
	if (r != 0) {
		rc = ss_storefail(ss, which);
		ss_rollback(ss);
		return rc;
	}
	return ss_commit(ss, which);
}

static int
sub_common(struct ss *ss, int add)
{
	int rc;

	if ((rc = check_user(ss, ss->args[0])) != SS_OK)
		return rc;
	if (!mboxname_valid(ss->args[1])) {
		ss_err(ss, ss->args[1], "not a valid mailbox name");
		return SS_USAGE;
	}
	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	if (store_sub_set(ss->store, ss->args[0], ss->args[1], add) != 0) {
		rc = ss_storefail(ss, ss->args[1]);
		ss_rollback(ss);
		return rc;
	}
	return ss_commit(ss, ss->args[1]);
}

int
verb_sub(struct ss *ss)
{
	return sub_common(ss, 1);
}

int
verb_unsub(struct ss *ss)
{
	return sub_common(ss, 0);
}

/*
 * Point the mailboxes at or under root to their nearest quota root;
 * with newroot (root itself, about to be created) as if it existed.
 */
static int
quota_reroot(struct ss *ss, const char *root, int newroot)
{
	struct namelist nl;
	struct store_mailbox mb;
	char prefix[MAX_MAILBOX_NAME + 2], *qroot;
	size_t i;
	int rc = SS_OK, r;

	memset(&nl, 0, sizeof(nl));
	snprintf(prefix, sizeof(prefix), "%s.", root);
	memset(&mb, 0, sizeof(mb));
	r = store_mailbox_get(ss->store, root, &mb);
	if (r == 0)
		collect_name(&mb, &nl);
	store_mailbox_clear(&mb);
	if ((r != 0 && r != STORE_NOTFOUND) || store_mailbox_foreach(ss->store,
	    prefix, collect_name, &nl) != 0 || nl.oom) {
		rc = nl.oom ? SS_FAIL : ss_storefail(ss, root);
		goto out;
	}
	for (i = 0; i < nl.n; i++) {
		if ((rc = get_mailbox(ss, nl.names[i], &mb)) != SS_OK)
			goto out;
		if (find_quotaroot(ss, mb.name, &qroot) == -1) {
			store_mailbox_clear(&mb);
			rc = ss_storefail(ss, root);
			goto out;
		}
		if (newroot && (qroot == NULL || strlen(qroot) < strlen(root))) {
			free(qroot);
			if ((qroot = strdup(root)) == NULL) {
				store_mailbox_clear(&mb);
				ss_err(ss, root, "%s", strerror(errno));
				rc = SS_FAIL;
				goto out;
			}
		}
		if ((qroot == NULL) != (mb.quotaroot == NULL) ||
		    (qroot != NULL && strcmp(qroot, mb.quotaroot) != 0)) {
			free(mb.quotaroot);
			mb.quotaroot = qroot;
			qroot = NULL;
			if (store_mailbox_update(ss->store, &mb) != 0)
				rc = ss_storefail(ss, mb.name);
		}
		free(qroot);
		store_mailbox_clear(&mb);
		if (rc != SS_OK)
			goto out;
	}
out:
	namelist_free(&nl);
	return rc;
}

int
verb_quota(struct ss *ss)
{
	struct store_quota q;
	const char *root = ss->args[0];
	uint64_t storage, messages, ms;
	char *owner;
	int i, r, rc, del = strcmp(ss->args[1], "none") == 0;

	if (!mboxname_valid(root)) {
		ss_err(ss, root, "not a valid quota root");
		return SS_USAGE;
	}
	memset(&q, 0, sizeof(q));
	for (i = 0; i < QUOTA_NUMRESOURCES; i++)
		q.limits[i] = QUOTA_UNLIMITED;
	if (del) {
		if (ss->nargs != 2)
			return ss_usage(ss);
	} else {
		if (ss_parse_u64(ss->args[1], INT64_MAX, &storage) == -1 ||
		    (ss->nargs == 3 &&
		    ss_parse_u64(ss->args[2], INT64_MAX, &messages) == -1))
			return ss_usage(ss);
		q.limits[QUOTA_STORAGE] = (int64_t)storage;
		if (ss->nargs == 3)
			q.limits[QUOTA_MESSAGE] = (int64_t)messages;
	}
	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	/*
	 * A new root is logged as Cyrus logs it: the mailboxes it now
	 * covers first (MAILBOX each), then QUOTA.
	 */
	if (!del && (rc = quota_reroot(ss, root, 1)) != SS_OK) {
		ss_rollback(ss);
		return rc;
	}
	if (del) {
		r = store_quota_delete(ss->store, root);
		if (r == STORE_NOTFOUND) {
			ss_err(ss, root, "no such quota root");
			ss_rollback(ss);
			return SS_FAIL;
		}
	} else {
		if ((owner = owner_of(root)) == NULL) {
			ss_rollback(ss);
			return SS_FAIL;
		}
		r = store_next_modseq(ss->store, owner, &ms);
		free(owner);
		q.root = (char *)root;
		q.modseq = ms;
		if (r == 0)
			r = store_quota_set(ss->store, &q);
	}
	if (r != 0) {
		rc = ss_storefail(ss, root);
		ss_rollback(ss);
		return rc;
	}
	if (del && (rc = quota_reroot(ss, root, 0)) != SS_OK) {
		ss_rollback(ss);
		return rc;
	}
	return ss_commit(ss, root);
}

int
verb_annotate(struct ss *ss)
{
	struct store_mailbox mb;
	struct store_annot an;
	const char *name = ss->args[0], *entry = ss->args[1];
	const char *value = ss->nargs == 3 ? ss->args[2] : "";
	const unsigned char *p;
	int64_t mbid = 0;
	uint64_t ms;
	int rc;

	if (entry[0] != '/' || strlen(entry) > 1024) {
		ss_err(ss, entry, "not an annotation entry");
		return SS_USAGE;
	}
	for (p = (const unsigned char *)entry; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f) {
			ss_err(ss, entry, "not an annotation entry");
			return SS_USAGE;
		}
	if (ss->user != NULL && (rc = check_user(ss, ss->user)) != SS_OK)
		return rc;
	if (*name != '\0' && !mboxname_valid(name)) {
		ss_err(ss, name, "not a valid mailbox name");
		return SS_USAGE;
	}
	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	memset(&mb, 0, sizeof(mb));
	if (*name == '\0') {
		if (store_next_modseq(ss->store, "", &ms) != 0) {
			rc = ss_storefail(ss, "server");
			goto fail;
		}
	} else {
		if ((rc = get_mailbox(ss, name, &mb)) != SS_OK ||
		    (rc = mailbox_modseq(ss, &mb, &ms)) != SS_OK)
			goto fail;
		mbid = mb.id;
		/* An annotation is a change of the folder itself. */
		mb.highestmodseq = mb.foldermodseq = ms;
		if (store_mailbox_update(ss->store, &mb) != 0) {
			rc = ss_storefail(ss, name);
			goto fail;
		}
	}
	memset(&an, 0, sizeof(an));
	an.entry = (char *)entry;
	an.userid = ss->user != NULL ? (char *)ss->user : "";
	an.modseq = ms;
	an.value = (char *)value;
	an.valuelen = strlen(value);
	if (store_mbannot_set(ss->store, mbid, &an) != 0) {
		rc = ss_storefail(ss, entry);
		goto fail;
	}
	store_mailbox_clear(&mb);
	return ss_commit(ss, entry);
fail:
	store_mailbox_clear(&mb);
	ss_rollback(ss);
	return rc;
}

int
verb_sieve(struct ss *ss)
{
	const char *op = ss->args[0], *user = ss->args[1];
	const char *name = ss->nargs == 3 ? ss->args[2] : NULL;
	char *buf = NULL;
	size_t len = 0;
	int rc, r;

	if (strcmp(op, "deactivate") == 0 ? name != NULL :
	    (strcmp(op, "put") != 0 && strcmp(op, "activate") != 0 &&
	    strcmp(op, "delete") != 0) || name == NULL)
		return ss_usage(ss);
	if ((rc = check_user(ss, user)) != SS_OK)
		return rc;
	if (name != NULL && !sievename_valid(name)) {
		ss_err(ss, name, "not a valid script name");
		return SS_USAGE;
	}
	if (strcmp(op, "put") == 0 &&
	    ss_read_fd(STDIN_FILENO, MAX_SIEVE_SIZE, &buf, &len) == -1) {
		ss_err(ss, "stdin", "%s", strerror(errno));
		return SS_FAIL;
	}
	if ((rc = ss_begin(ss)) != SS_OK) {
		free(buf);
		return rc;
	}
	if (strcmp(op, "put") == 0)
		r = store_sieve_put(ss->store, user, name, buf, len,
		    time(NULL));
	else if (strcmp(op, "activate") == 0)
		r = store_sieve_activate(ss->store, user, name);
	else if (strcmp(op, "deactivate") == 0)
		r = store_sieve_activate(ss->store, user, NULL);
	else
		r = store_sieve_delete(ss->store, user, name);
	free(buf);
	if (r != 0) {
		if (r == STORE_NOTFOUND) {
			ss_err(ss, name != NULL ? name : user,
			    "no such script");
			rc = SS_FAIL;
		} else
			rc = ss_storefail(ss, name != NULL ? name : user);
		ss_rollback(ss);
		return rc;
	}
	return ss_commit(ss, user);
}

/*
 * Set (or with no rights remove) one identifier's entry of a raw
 * TAB-separated ACL, keeping the order of the others.  Returns malloc'd
 * text.
 */
static char *
acl_edit(const char *acl, const char *ident, const char *rights)
{
	char *copy, *p, *id, *rt, *out;
	size_t cap;
	int done = 0;

	cap = (acl != NULL ? strlen(acl) : 0) + strlen(ident) +
	    strlen(rights) + 3;
	if ((out = calloc(1, cap)) == NULL)
		return NULL;
	if ((copy = strdup(acl != NULL ? acl : "")) == NULL) {
		free(out);
		return NULL;
	}
	p = copy;
	while ((id = strsep(&p, "\t")) != NULL && *id != '\0') {
		if ((rt = strsep(&p, "\t")) == NULL)
			break;
		if (strcmp(id, ident) == 0) {
			if (done || *rights == '\0')
				continue;
			rt = (char *)rights;
			done = 1;
		}
		strlcat(out, id, cap);
		strlcat(out, "\t", cap);
		strlcat(out, rt, cap);
		strlcat(out, "\t", cap);
	}
	if (!done && *rights != '\0') {
		strlcat(out, ident, cap);
		strlcat(out, "\t", cap);
		strlcat(out, rights, cap);
		strlcat(out, "\t", cap);
	}
	free(copy);
	return out;
}

int
verb_acl(struct ss *ss)
{
	struct store_mailbox mb;
	const char *name = ss->args[0], *ident = ss->args[1];
	const char *given = ss->args[2], *c;
	const unsigned char *p;
	char rights[sizeof(ALL_RIGHTS)], *nacl;
	size_t n = 0;
	uint64_t ms;
	int rc;

	if (*ident == '\0' || strlen(ident) > 255)
		goto badident;
	for (p = (const unsigned char *)ident; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			goto badident;
	if (strcmp(given, "none") == 0)
		given = "";
	for (c = given; *c != '\0'; c++)
		if (strchr(ALL_RIGHTS, *c) == NULL) {
			ss_err(ss, given, "not a rights string");
			return SS_USAGE;
		}
	/* Rights in the canonical order, each once. */
	for (c = ALL_RIGHTS; *c != '\0'; c++)
		if (strchr(given, *c) != NULL)
			rights[n++] = *c;
	rights[n] = '\0';
	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	if ((rc = get_mailbox(ss, name, &mb)) != SS_OK) {
		ss_rollback(ss);
		return rc;
	}
	if ((nacl = acl_edit(mb.acl, ident, rights)) == NULL) {
		rc = SS_FAIL;
		goto fail;
	}
	free(mb.acl);
	mb.acl = nacl;
	if ((rc = mailbox_modseq(ss, &mb, &ms)) != SS_OK)
		goto fail;
	mb.highestmodseq = mb.foldermodseq = ms;
	if (store_mailbox_update(ss->store, &mb) != 0) {
		rc = ss_storefail(ss, name);
		goto fail;
	}
	store_mailbox_clear(&mb);
	return ss_commit(ss, name);
fail:
	store_mailbox_clear(&mb);
	ss_rollback(ss);
	return rc;
badident:
	ss_err(ss, ident, "not an ACL identifier");
	return SS_USAGE;
}

int
verb_deluser(struct ss *ss)
{
	const char *user = ss->args[0];
	int rc, r;

	if ((rc = check_user(ss, user)) != SS_OK)
		return rc;
	if ((rc = ss_begin(ss)) != SS_OK)
		return rc;
	if ((r = store_user_delete(ss->store, user)) != 0) {
		if (r == STORE_NOTFOUND) {
			ss_err(ss, user, "no such user");
			rc = SS_FAIL;
		} else
			rc = ss_storefail(ss, user);
		ss_rollback(ss);
		return rc;
	}
	return ss_commit(ss, user);
}
