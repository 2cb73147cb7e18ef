/*
 * sync-plan: turn actions into a replication plan.
 *
 * The master's state comes from the local store, or from a csync source
 * (a live Cyrus master) read with GET requests (master.h); the replica's
 * from GET requests over a connection of our own.  The plan is the list of csync
 * commands that bring the replica to the master's state, in the
 * protocol's own text, with comment lines saying why.  Nothing is sent:
 * run alone this is the dry run; sync-send applies a plan.
 */
#include <sys/types.h>
#include <sys/file.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf.h"
#include "csync.h"
#include "dlist.h"
#include "master.h"
#include "mbdl.h"
#include "names.h"
#include "prot.h"
#include "store.h"
#include "synclog_read.h"

#define PLAN_VERSION		1
#define RESERVE_MAX		8192	/* GUIDs per APPLY RESERVE */
#define MESSAGE_MAX		1024	/* files per APPLY MESSAGE */
#define MESSAGE_MAX_SRC		128	/* ... when each carries its source */

/* Exit statuses (see EXIT STATUS in the man page). */
#define EXIT_OK			CSYNC_EXIT_OK
#define EXIT_FAILED		CSYNC_EXIT_FAILED
#define EXIT_UNREACHABLE	CSYNC_EXIT_UNREACHABLE
#define EXIT_IOERR		CSYNC_EXIT_IOERR
#define EXIT_TEMP		CSYNC_EXIT_TEMP
#define EXIT_PROTOCOL		CSYNC_EXIT_PROTOCOL
#define EXIT_CONFIG		CSYNC_EXIT_CONFIG

struct opts {
	const char	*conf_path;
	const char	*target;
	const char	*command;
	const char	*source;	/* -M: csync source of master state */
	const char	*source_command;
	const char	*partition;
	int		 all;
	int		 local;
	int		 verbose;
	int		 legacy_sieve;
	int		 force;		/* -O: APPLY FORCE, the master wins */
	int		 full;		/* --full: compare every record */
	int		 lock_fd;	/* --lock-fd: flock it first, or -1 */
	const char	*channel;
	char		**users;
	size_t		 nusers;
	char		**mboxes;
	size_t		 nmboxes;
	char		**metas;
	size_t		 nmetas;
};

/* A mailbox as the replica reported it. */
struct rmb {
	struct store_mailbox	 mb;
	struct store_annot	*annots;
	size_t			 nannots;
	int			 seen;		/* matched to a master mailbox */
};

struct rstate {
	struct rmb	*mbs;
	size_t		 nmbs;
	struct dlist	*items;		/* kvlist of the other data lines */
};

struct plan {
	struct opts	*o;
	struct conf	*conf;
	struct store	*store;		/* NULL with a csync source */
	struct master	*m;
	struct csync	*cs;		/* the replica */
	struct csync	*src;		/* the csync source, or NULL */
	struct prot	*out;
	int		 failed;	/* objects we could not plan */
	int		 fatal;		/* exit status of a fatal error */
};

static void
usage(void)
{
	fprintf(stderr, "usage: sync-plan [-ALOv] [-C config] [-e command] "
	    "[-M host[:port] | -M /path] [-m mailbox] [-n channel] "
	    "[-p partition] [-S host[:port]] [-s user] [-u user] [--full] "
	    "[--legacy-sieve] [--lock-fd fd] [--source-command command]\n");
	exit(EX_USAGE);
}

static void
warnx_(const char *fmt, ...)
{
	va_list ap;

	fputs("sync-plan: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
push(char ***v, size_t *n, const char *s)
{
	char **nv = reallocarray(*v, *n + 1, sizeof(**v));

	if (nv == NULL) {
		warnx_("out of memory");
		exit(EXIT_IOERR);
	}
	*v = nv;
	if (((*v)[*n] = strdup(s)) == NULL) {
		warnx_("out of memory");
		exit(EXIT_IOERR);
	}
	(*n)++;
}

static void
strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void
comment(struct plan *pl, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	prot_printf(pl->out, "# %s\n", buf);
}

/* One command line of the plan.  Literals come out as {N+}CRLF bytes, so
 * a line may span lines of text; the reader is dlist_parse. */
static void
emit(struct plan *pl, const char *verb, const struct dlist *d)
{
	prot_puts(pl->out, verb);
	prot_puts(pl->out, " ");
	dlist_print(d, 1, pl->out, 1);
	prot_puts(pl->out, "\n");
}

static void
rstate_clear(struct rstate *rs)
{
	size_t i;

	for (i = 0; i < rs->nmbs; i++) {
		store_mailbox_clear(&rs->mbs[i].mb);
		store_annots_free(rs->mbs[i].annots, rs->mbs[i].nannots);
	}
	free(rs->mbs);
	dlist_free(rs->items);
	memset(rs, 0, sizeof(*rs));
}

/* Ask the replica; keep MAILBOX lines parsed and the rest as items. */
static int
rstate_get(struct plan *pl, const char *what, struct dlist *arg,
    struct rstate *rs)
{
	struct csync_reply r;
	char err[256];
	size_t i;

	memset(rs, 0, sizeof(*rs));
	rs->items = dlist_newkvlist(NULL, "ITEMS");
	if (csync_call(pl->cs, "GET", arg, &r, NULL) == -1 &&
	    r.status[0] == '\0') {
		warnx_("GET %s: %s", what, pl->cs->err);
		pl->fatal = csync_exit_status(pl->cs->errclass);
		csync_reply_clear(&r);
		rstate_clear(rs);
		return -1;
	}
	if (strcmp(r.status, "OK") != 0 &&
	    strcmp(r.code, "IMAP_MAILBOX_NONEXISTENT") != 0) {
		warnx_("GET %s: replica answered %s %s", what, r.status,
		    r.text);
		/* A replica shutting down is gone for this run: try
		 * again later.  BAD: it does not understand us. */
		if (strcmp(r.status, "BYE") == 0)
			pl->fatal = EXIT_TEMP;
		else if (strcmp(r.status, "BAD") == 0)
			pl->fatal = EXIT_PROTOCOL;
		csync_reply_clear(&r);
		rstate_clear(rs);
		pl->failed++;
		return -1;
	}
	for (i = 0; i < r.nitems; i++) {
		struct dlist *d = r.items[i];

		if (strcmp(d->key, "MAILBOX") == 0) {
			struct rmb *n = reallocarray(rs->mbs, rs->nmbs + 1,
			    sizeof(*n));

			if (n == NULL) {
				warnx_("GET %s: out of memory", what);
				pl->fatal = EXIT_IOERR;
				goto fail;
			}
			rs->mbs = n;
			memset(&n[rs->nmbs], 0, sizeof(*n));
			if (mbdl_parse_mailbox(d, &n[rs->nmbs].mb,
			    &n[rs->nmbs].annots, &n[rs->nmbs].nannots, 1, err,
			    sizeof(err)) == -1) {
				/* Planning without it would treat the
				 * mailbox as absent on the replica. */
				warnx_("GET %s: bad MAILBOX from replica: %s",
				    what, err);
				pl->fatal = EXIT_PROTOCOL;
				goto fail;
			}
			rs->nmbs++;
			dlist_free(d);
		} else
			dlist_stitch(rs->items, d);
		r.items[i] = NULL;
	}
	r.nitems = 0;
	csync_reply_clear(&r);
	return 0;
fail:
	/* Items already moved out of r are NULL there. */
	csync_reply_clear(&r);
	rstate_clear(rs);
	pl->failed++;
	return -1;
}

static struct rmb *
rstate_by_uniqueid(struct rstate *rs, const char *uniqueid)
{
	size_t i;

	for (i = 0; i < rs->nmbs; i++)
		if (strcmp(rs->mbs[i].mb.uniqueid, uniqueid) == 0)
			return &rs->mbs[i];
	return NULL;
}

static struct rmb *
rstate_by_name(struct rstate *rs, const char *name)
{
	size_t i;

	for (i = 0; i < rs->nmbs; i++)
		if (strcmp(rs->mbs[i].mb.name, name) == 0)
			return &rs->mbs[i];
	return NULL;
}

static int
streq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/*
 * Is the replica's copy the same as ours?  The comparison a Cyrus
 * client makes (protocol doc 4.11), CRCs last with 0 as a wildcard.
 */
static int
unchanged(const struct store_mailbox *m, const struct store_annot *ma,
    size_t nma, const struct rmb *r)
{
	const struct store_mailbox *x = &r->mb;

	if (!streq(m->mbtype, x->mbtype) || m->last_uid != x->last_uid ||
	    m->highestmodseq != x->highestmodseq ||
	    m->uidvalidity != x->uidvalidity ||
	    m->recentuid != x->recentuid || m->recenttime != x->recenttime ||
	    m->pop3_last_login != x->pop3_last_login ||
	    m->pop3_show_after != x->pop3_show_after ||
	    !streq(m->options, x->options) || !streq(m->acl, x->acl) ||
	    !streq(m->name, x->name) || !streq(m->partition, x->partition))
		return 0;
	if (x->foldermodseq != 0 && m->foldermodseq != x->foldermodseq)
		return 0;
	if (mbdl_annots_cmp(ma, nma, r->annots, r->nannots) != 0)
		return 0;
	if (m->sync_crc != 0 && x->sync_crc != 0 && m->sync_crc != x->sync_crc)
		return 0;
	if (m->sync_crc_annot != 0 && x->sync_crc_annot != 0 &&
	    m->sync_crc_annot != x->sync_crc_annot)
		return 0;
	return 1;
}

/* A set of UIDs, kept in ascending order by its users. */
struct uidlist {
	uint32_t	*v;
	size_t		 n;
};

static int
uidlist_add(struct uidlist *l, uint32_t uid)
{
	uint32_t *nv = reallocarray(l->v, l->n + 1, sizeof(*nv));

	if (nv == NULL)
		return -1;
	l->v = nv;
	l->v[l->n++] = uid;
	return 0;
}

static int
uidlist_has(const struct uidlist *l, uint32_t uid)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->v[mid] == uid)
			return 1;
		if (l->v[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static int
uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Records held in memory: one side of a full comparison. */
struct recvec {
	struct store_record	*v;
	size_t			 n;
	size_t			 cap;
};

static void
recvec_clear(struct recvec *rv)
{
	size_t i;

	for (i = 0; i < rv->n; i++)
		store_record_clear(&rv->v[i]);
	free(rv->v);
	rv->v = NULL;
	rv->n = 0;
	rv->cap = 0;
}

static char *
dupmem(const char *s, size_t len)
{
	char *d = malloc(len + 1);

	if (d != NULL) {
		if (len > 0)
			memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

/* A deep copy of a record the store lends to a callback. */
static int
collect_copy(const struct store_record *rec, void *arg)
{
	struct recvec *rv = arg;
	struct store_record *nv, *c;
	size_t i;

	if (rv->n == rv->cap) {
		nv = reallocarray(rv->v, rv->cap == 0 ? 64 : rv->cap * 2,
		    sizeof(*nv));
		if (nv == NULL)
			return -1;
		rv->v = nv;
		rv->cap = rv->cap == 0 ? 64 : rv->cap * 2;
	}
	c = &rv->v[rv->n];
	*c = *rec;
	c->keywords = NULL;
	c->annots = NULL;
	c->nannots = 0;
	rv->n++;
	if (rec->keywords != NULL &&
	    (c->keywords = strdup(rec->keywords)) == NULL)
		return -1;
	if (rec->nannots == 0)
		return 0;
	if ((c->annots = calloc(rec->nannots, sizeof(*c->annots))) == NULL)
		return -1;
	c->nannots = rec->nannots;
	for (i = 0; i < rec->nannots; i++) {
		const struct store_annot *a = &rec->annots[i];

		c->annots[i].modseq = a->modseq;
		c->annots[i].valuelen = a->valuelen;
		if ((c->annots[i].entry = strdup(a->entry)) == NULL ||
		    (c->annots[i].userid = strdup(a->userid ? a->userid :
		    "")) == NULL ||
		    (c->annots[i].value = dupmem(a->value ? a->value : "",
		    a->value ? a->valuelen : 0)) == NULL)
			return -1;
	}
	return 0;
}

static int
rec_cmp(const void *a, const void *b)
{
	const struct store_record *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

struct reccollect {
	struct master	*m;
	const char	*partition;	/* where the bodies are looked up */
	struct dlist	*records;
	uint32_t	 replica_last_uid;
	int		 replica_has;
	uint64_t	 since;		/* records above this modseq, */
	const struct uidlist *also;	/* ... and these UIDs */
	char		(*guids)[41];
	uint32_t	*sizes;
	uint32_t	*uids;
	size_t		 nguids;
	size_t		 nrecords;
};

static int
collect_record(const struct store_record *rec, void *arg)
{
	struct reccollect *rc = arg;

	if (rc->also != NULL && rec->modseq <= rc->since &&
	    !uidlist_has(rc->also, rec->uid))
		return 0;
	mbdl_record(rc->records, rec);
	rc->nrecords++;
	/*
	 * New records need their bodies on the replica.  An expunged one
	 * does not, but as Cyrus does we send its body while we still have
	 * it: a Cyrus replica otherwise logs an I/O error for every
	 * expunged record it cannot find a file for.
	 */
	if ((!rc->replica_has || rec->uid > rc->replica_last_uid) &&
	    ((rec->sysflags & SF_EXPUNGED) == 0 || (rc->partition != NULL &&
	    master_body_exists(rc->m, rc->partition, rec->guid) == 1))) {
		char (*ng)[41] = reallocarray(rc->guids, rc->nguids + 1,
		    sizeof(*ng));
		uint32_t *ns, *nu;

		if (ng == NULL)
			return -1;
		rc->guids = ng;
		if ((ns = reallocarray(rc->sizes, rc->nguids + 1,
		    sizeof(*ns))) == NULL)
			return -1;
		rc->sizes = ns;
		if ((nu = reallocarray(rc->uids, rc->nguids + 1,
		    sizeof(*nu))) == NULL)
			return -1;
		rc->uids = nu;
		rc->uids[rc->nguids] = rec->uid;
		memcpy(rc->guids[rc->nguids], rec->guid, 41);
		rc->sizes[rc->nguids++] = rec->size;
	}
	return 0;
}

/* RESERVE what the replica may already hold, then list the bodies to
 * upload; sync-send sends only those the RESERVE reported missing.  With
 * a csync source (srcmb not NULL) each body is followed by where
 * sync-send fetches it: %(MBOXNAME PARTITION UNIQUEID UID). */
static void
plan_bodies(struct plan *pl, const char *partition, struct rstate *rs,
    struct reccollect *rc, const struct store_mailbox *srcmb)
{
	size_t i, j, max = srcmb != NULL ? MESSAGE_MAX_SRC : MESSAGE_MAX;

	if (rc->nguids == 0)
		return;
	if (rs->nmbs > 0) {
		for (i = 0; i < rc->nguids; i += RESERVE_MAX) {
			struct dlist *kv = dlist_newkvlist(NULL, "RESERVE");
			struct dlist *names, *gl;

			dlist_setatom(kv, "PARTITION", partition);
			names = dlist_newlist(kv, "MBOXNAME");
			for (j = 0; j < rs->nmbs; j++)
				dlist_setatom(names, NULL, rs->mbs[j].mb.name);
			gl = dlist_newlist(kv, "GUID");
			for (j = i; j < rc->nguids && j < i + RESERVE_MAX; j++)
				dlist_setguid(gl, NULL, rc->guids[j]);
			emit(pl, "APPLY", kv);
			dlist_free(kv);
		}
	}
	for (i = 0; i < rc->nguids; i += max) {
		prot_puts(pl->out, "APPLY MESSAGE (");
		for (j = i; j < rc->nguids && j < i + max; j++) {
			prot_printf(pl->out, "%s%%{%s %s %" PRIu32 "}",
			    j > i ? " " : "", partition, rc->guids[j],
			    rc->sizes[j]);
			if (srcmb != NULL) {
				struct dlist *kv = dlist_newkvlist(NULL, NULL);

				dlist_setatom(kv, "MBOXNAME", srcmb->name);
				dlist_setatom(kv, "PARTITION",
				    srcmb->partition);
				dlist_setatom(kv, "UNIQUEID", srcmb->uniqueid);
				dlist_setnum32(kv, "UID", rc->uids[j]);
				prot_puts(pl->out, " ");
				dlist_print(kv, 0, pl->out, 1);
				dlist_free(kv);
			}
		}
		prot_puts(pl->out, ")\n");
	}
}

/*
 * Split brain: the replica holds what the master lacks (records, a
 * higher last_uid or modseq, newer flags).  As Cyrus's client does, both
 * sides are compared record by record (GET FULLMAILBOX), and the plan
 * says what the master takes back from the replica before the replica
 * is made equal to it.
 */
struct split {
	struct dlist	*copy;		/* replica records to copy back */
	struct dlist	*flags;		/* replica records, flags win */
	size_t		 ncopy, nflags;
	struct uidlist	 renumber;	/* master UIDs that move up */
	struct uidlist	 bump;		/* master UIDs to send again */
	struct uidlist	 expunge;	/* replica UIDs to expunge */
	int		 conflict;	/* the replica has what we lack */
};

static void
split_clear(struct split *sp)
{
	dlist_free(sp->copy);
	dlist_free(sp->flags);
	free(sp->renumber.v);
	free(sp->bump.v);
	free(sp->expunge.v);
	memset(sp, 0, sizeof(*sp));
}

/* Every record of the replica's copy of r, ascending UID. */
static int
replica_records(struct plan *pl, const struct rmb *r, struct recvec *rv)
{
	struct dlist *arg = dlist_setatom(NULL, "FULLMAILBOX", r->mb.name);
	const struct dlist *kv = NULL, *recs, *d;
	struct csync_reply rep;
	struct store_record rec;
	const char *u;
	char err[256];
	size_t i;
	int rc = -1;

	memset(rv, 0, sizeof(*rv));
	if (csync_call(pl->cs, "GET", arg, &rep, NULL) == -1 &&
	    rep.status[0] == '\0') {
		warnx_("GET FULLMAILBOX %s: %s", r->mb.name, pl->cs->err);
		pl->fatal = csync_exit_status(pl->cs->errclass);
		goto out;
	}
	if (strcmp(rep.status, "OK") != 0) {
		warnx_("GET FULLMAILBOX %s: replica answered %s %s",
		    r->mb.name, rep.status, rep.text ? rep.text : "");
		goto out;
	}
	for (i = 0; i < rep.nitems; i++)
		if (strcmp(rep.items[i]->key, "MAILBOX") == 0)
			kv = rep.items[i];
	if (kv == NULL || dlist_getatom(kv, "UNIQUEID", &u) == -1 ||
	    strcmp(u, r->mb.uniqueid) != 0) {
		warnx_("GET FULLMAILBOX %s: not the mailbox the replica "
		    "listed", r->mb.name);
		goto out;
	}
	recs = dlist_child(kv, "RECORD");
	for (d = recs ? recs->head : NULL; d != NULL; d = d->next) {
		if (mbdl_parse_record(d, &rec, err, sizeof(err)) == -1) {
			warnx_("GET FULLMAILBOX %s: %s", r->mb.name, err);
			pl->fatal = EXIT_PROTOCOL;
			goto out;
		}
		if (collect_copy(&rec, rv) == -1) {
			store_record_clear(&rec);
			warnx_("GET FULLMAILBOX %s: out of memory", r->mb.name);
			pl->fatal = EXIT_IOERR;
			goto out;
		}
		store_record_clear(&rec);
	}
	if (rv->n > 1)
		qsort(rv->v, rv->n, sizeof(*rv->v), rec_cmp);
	rc = 0;
out:
	csync_reply_clear(&rep);
	dlist_free(arg);
	if (rc == -1) {
		recvec_clear(rv);
		pl->failed++;
	}
	return rc;
}

static int
recvec_sorted(const struct recvec *rv)
{
	size_t i;

	for (i = 1; i < rv->n; i++)
		if (rv->v[i - 1].uid > rv->v[i].uid)
			return 0;
	return 1;
}

static int
rec_same(const struct store_record *a, const struct store_record *b)
{
	return a->modseq == b->modseq && a->last_updated == b->last_updated &&
	    a->internaldate == b->internaldate && a->sysflags == b->sysflags &&
	    streq(a->keywords, b->keywords) && a->cid == b->cid &&
	    a->savedate == b->savedate &&
	    a->createdmodseq == b->createdmodseq &&
	    mbdl_annots_cmp(a->annots, a->nannots, b->annots,
	    b->nannots) == 0;
}

/* A replica record the master lacks: it is copied back, under its own
 * UID when that is above the master's last_uid, else under a new one
 * (and then expunged on the replica). */
static int
split_copy(struct split *sp, const struct store_record *rp,
    const struct store_mailbox *m)
{
	mbdl_record(sp->copy, rp);
	sp->ncopy++;
	sp->conflict = 1;
	if (rp->uid <= m->last_uid)
		return uidlist_add(&sp->expunge, rp->uid);
	return 0;
}

/* Walk both record lists by UID and decide, record by record, what the
 * master takes from the replica (Cyrus 3.6's rules). */
static int
split_compare(const struct recvec *mv, const struct recvec *rv,
    const struct store_mailbox *m, const struct store_mailbox *rm,
    struct split *sp)
{
	size_t i = 0, j = 0;
	int rc = 0;

	sp->copy = dlist_newlist(NULL, "RECORD");
	sp->flags = dlist_newlist(NULL, "FLAGS");
	while (rc == 0 && (i < mv->n || j < rv->n)) {
		const struct store_record *mp = i < mv->n ? &mv->v[i] : NULL;
		const struct store_record *rp = j < rv->n ? &rv->v[j] : NULL;
		int mexp = mp != NULL && (mp->sysflags & SF_EXPUNGED);
		int rexp = rp != NULL && (rp->sysflags & SF_EXPUNGED);

		if (mp != NULL && rp != NULL && mp->uid == rp->uid) {
			i++;
			j++;
			if (mexp && rexp)
				continue;
			if (strcasecmp(mp->guid, rp->guid) != 0) {
				/* Two messages under one UID: both move. */
				if (!rexp)
					rc = split_copy(sp, rp, m);
				if (!mexp && rc == 0) {
					rc = uidlist_add(&sp->renumber,
					    mp->uid);
					sp->conflict = 1;
				}
				continue;
			}
			if (rec_same(mp, rp))
				continue;
			if (!mexp && (rexp || (rp->modseq > mp->modseq &&
			    rp->last_updated >= mp->last_updated))) {
				mbdl_record(sp->flags, rp);
				sp->nflags++;
			} else if (mp->modseq <= rm->highestmodseq)
				/* Ours wins, but an update would not
				 * carry it. */
				rc = uidlist_add(&sp->bump, mp->uid);
		} else if (mp != NULL && (rp == NULL || mp->uid < rp->uid)) {
			i++;
			if (mp->uid <= rm->last_uid) {
				/* The replica used this UID for something
				 * else, or lost it: ours moves up. */
				if (!mexp) {
					rc = uidlist_add(&sp->renumber,
					    mp->uid);
					sp->conflict = 1;
				}
			} else if (mp->modseq <= rm->highestmodseq)
				rc = uidlist_add(&sp->bump, mp->uid);
		} else {
			j++;
			if (!rexp)
				rc = split_copy(sp, rp, m);
		}
	}
	return rc;
}

static void
emit_uids(struct dlist *kv, const char *key, const struct uidlist *l)
{
	struct dlist *d = dlist_newlist(kv, key);
	size_t i;

	for (i = 0; i < l->n; i++)
		dlist_setnum32(d, NULL, l->v[i]);
}

static void	plan_mailbox(struct plan *, const struct store_mailbox *,
		    struct rstate *, struct rmb *);

/*
 * The replica is ahead of the master's mailbox m, or --full asked for a
 * record by record comparison.  Returns 1 when the mailbox is planned
 * here (a copy-back, or with -O a replacement), 0 when it is to be
 * planned as usual (*also then holds master UIDs to send whatever their
 * modseq), -1 on failure.
 */
static int
plan_split(struct plan *pl, const struct store_mailbox *m, struct rstate *rs,
    struct rmb *r, struct uidlist *also)
{
	struct recvec mv, rv;
	struct master_mbox fresh;
	struct split sp;
	struct dlist *kv, *rk, *d;
	int ret = -1, ahead;

	memset(&mv, 0, sizeof(mv));
	memset(&sp, 0, sizeof(sp));
	memset(&fresh, 0, sizeof(fresh));
	if (replica_records(pl, r, &rv) == -1)
		return -1;
	if (master_records(pl->m, m, 0, collect_copy, &mv, &fresh) != 0) {
		warnx_("%s: reading records: %s", m->name,
		    master_error(pl->m));
		pl->failed++;
		goto out;
	}
	/* A csync source sent its header with the records: the two agree. */
	if (fresh.mb.name != NULL)
		m = &fresh.mb;
	/* The walk below goes by UID; a source owes no order. */
	if (mv.n > 1 && !recvec_sorted(&mv))
		qsort(mv.v, mv.n, sizeof(*mv.v), rec_cmp);
	if (split_compare(&mv, &rv, m, &r->mb, &sp) == -1) {
		warnx_("%s: out of memory", m->name);
		pl->fatal = EXIT_IOERR;
		goto out;
	}
	ahead = r->mb.last_uid > m->last_uid ||
	    r->mb.highestmodseq > m->highestmodseq;
	if (pl->o->force) {
		size_t i;

		if (sp.conflict || r->mb.last_uid > m->last_uid) {
			/* Records the master never had cannot be taken
			 * out of a mailbox: the replica's copy goes. */
			comment(pl, "%s: the replica holds %zu records the "
			    "master lacks (last_uid %" PRIu32 ", master %"
			    PRIu32 "); -O: its copy is replaced by the "
			    "master's", m->name, sp.ncopy, r->mb.last_uid,
			    m->last_uid);
			kv = dlist_setatom(NULL, pl->o->local ?
			    "LOCAL_UNMAILBOX" : "UNMAILBOX", r->mb.name);
			emit(pl, "APPLY", kv);
			dlist_free(kv);
			plan_mailbox(pl, m, rs, NULL);
			ret = 1;
			goto out;
		}
		/* Only state differs: the master's records are sent
		 * again and the replica takes them (APPLY FORCE). */
		for (i = 0; i < sp.bump.n; i++)
			if (uidlist_add(also, sp.bump.v[i]) == -1)
				goto oom;
		for (d = sp.flags->head; d != NULL; d = d->next) {
			uint32_t uid;

			if (dlist_getnum32(d, "UID", &uid) == 0 &&
			    uidlist_add(also, uid) == -1)
				goto oom;
		}
		if (also->n > 1)
			qsort(also->v, also->n, sizeof(*also->v), uid_cmp);
		if (also->n > 0 || ahead)
			comment(pl, "%s: the replica is ahead or differs in "
			    "%zu records; -O: the master's state is sent",
			    m->name, also->n);
		ret = 0;
		goto out;
	}
	if (sp.ncopy == 0 && sp.nflags == 0 && sp.renumber.n == 0 &&
	    sp.bump.n == 0 && !ahead &&
	    r->mb.uidvalidity <= m->uidvalidity) {
		ret = 0;	/* nothing to take back */
		goto out;
	}
	comment(pl, "%s: split brain: replica at modseq %" PRIu64 " last_uid %"
	    PRIu32 ", master at %" PRIu64 " / %" PRIu32 "; copy-back: %zu "
	    "records to the master, %zu of them under new UIDs, %zu master "
	    "records renumbered, %zu flag changes taken, %zu records to "
	    "send again", m->name, r->mb.highestmodseq, r->mb.last_uid,
	    m->highestmodseq, m->last_uid, sp.ncopy, sp.expunge.n,
	    sp.renumber.n, sp.nflags, sp.bump.n);
	kv = dlist_newkvlist(NULL, "COPYBACK");
	dlist_setatom(kv, "UNIQUEID", m->uniqueid);
	dlist_setatom(kv, "MBOXNAME", m->name);
	dlist_setnum64(kv, "SINCE_MODSEQ", m->highestmodseq);
	dlist_setnum32(kv, "LAST_UID", r->mb.last_uid);
	dlist_setnum64(kv, "HIGHESTMODSEQ", r->mb.highestmodseq);
	dlist_setnum32(kv, "UIDVALIDITY", r->mb.uidvalidity);
	rk = dlist_newkvlist(kv, "REPLICA");
	dlist_setatom(rk, "MBOXNAME", r->mb.name);
	dlist_setatom(rk, "PARTITION", r->mb.partition ? r->mb.partition :
	    "default");
	dlist_setatom(rk, "UNIQUEID", r->mb.uniqueid);
	dlist_stitch(kv, sp.copy);
	sp.copy = NULL;
	emit_uids(kv, "RENUMBER", &sp.renumber);
	dlist_stitch(kv, sp.flags);
	sp.flags = NULL;
	emit_uids(kv, "BUMP", &sp.bump);
	emit_uids(kv, "EXPUNGE", &sp.expunge);
	emit(pl, "MASTER", kv);
	dlist_free(kv);
	comment(pl, "%s: updated on the replica by a new plan after the "
	    "copy-back", m->name);
	ret = 1;
	goto out;
oom:
	warnx_("%s: out of memory", m->name);
	pl->fatal = EXIT_IOERR;
	ret = -1;
out:
	recvec_clear(&mv);
	recvec_clear(&rv);
	master_mbox_clear(&fresh);
	split_clear(&sp);
	return ret;
}

static void
plan_mailbox(struct plan *pl, const struct store_mailbox *m,
    struct rstate *rs, struct rmb *r)
{
	struct uidlist also = { NULL, 0 };
	struct store_annot *annots = NULL;
	size_t nannots = 0;
	struct reccollect rc;
	struct master_mbox fresh;
	struct dlist *kv;
	struct store_mailbox send = *m;
	int ret;

	memset(&fresh, 0, sizeof(fresh));
	memset(&rc, 0, sizeof(rc));
	if (master_mbannots(pl->m, m, &annots, &nannots) == -1) {
		warnx_("%s: %s", m->name, master_error(pl->m));
		pl->failed++;
		return;
	}
	if (pl->o->partition != NULL)
		send.partition = (char *)pl->o->partition;
	else if (r != NULL && r->mb.partition != NULL)
		send.partition = r->mb.partition;
	/* Decided from the MAILBOX lines alone: records are read only for
	 * a mailbox that differs. */
	if (r != NULL && unchanged(&send, annots, nannots, r)) {
		if (pl->o->verbose)
			comment(pl, "%s: unchanged (modseq %" PRIu64 ")",
			    m->name, m->highestmodseq);
		store_annots_free(annots, nannots);
		return;
	}

	/* An intermediate of a csync source has no records to compare. */
	if (r != NULL && !(master_remote(pl->m) && m->mbtype != NULL &&
	    strchr(m->mbtype, 'i') != NULL) && (pl->o->full ||
	    r->mb.last_uid > m->last_uid ||
	    r->mb.highestmodseq > m->highestmodseq)) {
		ret = plan_split(pl, m, rs, r, &also);
		if (ret != 0) {
			store_annots_free(annots, nannots);
			free(also.v);
			return;
		}
	}
	rc.m = pl->m;
	rc.partition = m->partition;
	rc.records = dlist_newlist(NULL, "RECORD");
	rc.replica_has = r != NULL;
	rc.replica_last_uid = r ? r->mb.last_uid : 0;
	rc.since = r ? r->mb.highestmodseq : 0;
	if (also.n > 0)
		rc.also = &also;
	if (master_remote(pl->m) && m->mbtype != NULL &&
	    strchr(m->mbtype, 'i') != NULL)
		ret = 0;	/* an intermediate has no records */
	else
		ret = master_records(pl->m, m, rc.also != NULL ? 0 :
		    rc.since, collect_record, &rc, &fresh);
	if (ret == STORE_NOTFOUND) {
		comment(pl, "%s: gone from the master while planning",
		    m->name);
		goto done;
	}
	if (ret != 0) {
		warnx_("%s: reading records: %s", m->name,
		    master_error(pl->m));
		pl->failed++;
		if (pl->src != NULL && pl->src->errclass != CSYNC_OK &&
		    pl->src->errclass != CSYNC_PROTOCOL)
			pl->fatal = EXIT_UNREACHABLE;
		goto done;
	}
	if (fresh.mb.name != NULL) {
		/* The header of the reply the records came with. */
		m = &fresh.mb;
		send = fresh.mb;
		store_annots_free(annots, nannots);
		annots = fresh.annots;
		nannots = fresh.nannots;
		fresh.annots = NULL;
		fresh.nannots = 0;
		if (pl->o->partition != NULL)
			send.partition = (char *)pl->o->partition;
		else if (r != NULL && r->mb.partition != NULL)
			send.partition = r->mb.partition;
	}
	if (r == NULL)
		comment(pl, "%s: not on the replica: create (last_uid %" PRIu32
		    ", modseq %" PRIu64 ")", m->name, m->last_uid,
		    m->highestmodseq);
	else
		comment(pl, "%s: replica at modseq %" PRIu64 " last_uid %"
		    PRIu32 ", master at %" PRIu64 " / %" PRIu32, m->name,
		    r->mb.highestmodseq, r->mb.last_uid, m->highestmodseq,
		    m->last_uid);
	if (r != NULL && r->mb.uidvalidity > send.uidvalidity)
		send.uidvalidity = r->mb.uidvalidity;

	if (send.partition != NULL)
		plan_bodies(pl, send.partition, rs, &rc,
		    master_remote(pl->m) ? m : NULL);
	kv = mbdl_mailbox(NULL, pl->o->local ? "LOCAL_MAILBOX" : "MAILBOX",
	    &send, annots, nannots);
	if (r != NULL) {
		/* The state this plan was made against: a replica that has
		 * moved on refuses it (IMAP_SYNC_CHANGED). */
		dlist_setnum64(kv, "SINCE_MODSEQ", r->mb.highestmodseq);
		dlist_setnum32(kv, "SINCE_CRC", r->mb.sync_crc);
		dlist_setnum32(kv, "SINCE_CRC_ANNOT", r->mb.sync_crc_annot);
	}
	dlist_stitch(kv, rc.records);
	rc.records = NULL;
	emit(pl, "APPLY", kv);
	dlist_free(kv);
done:
	free(also.v);
	dlist_free(rc.records);
	free(rc.guids);
	free(rc.sizes);
	free(rc.uids);
	store_annots_free(annots, nannots);
	master_mbox_clear(&fresh);
}

struct mblist {
	struct store_mailbox	*v;
	size_t			 n;
};

static int
collect_mailbox(const struct store_mailbox *mb, void *arg)
{
	struct mblist *l = arg;
	struct store_mailbox *nv = reallocarray(l->v, l->n + 1, sizeof(*nv));

	if (nv == NULL)
		return -1;
	l->v = nv;
	memset(&nv[l->n], 0, sizeof(*nv));
	nv[l->n] = *mb;
#define DUP(f) nv[l->n].f = mb->f ? strdup(mb->f) : NULL
	DUP(uniqueid); DUP(name); DUP(mbtype); DUP(partition); DUP(acl);
	DUP(options); DUP(quotaroot);
#undef DUP
	l->n++;
	return 0;
}

static void
mblist_clear(struct mblist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		store_mailbox_clear(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Renames first (matched by uniqueid), so that updates find their
 * mailbox under its new name.  A swap or chain whose target name is
 * still taken is broken with a temporary name. */
static void
plan_renames(struct plan *pl, struct mblist *ml, struct rstate *rs)
{
	size_t i, pending, round;

	for (round = 0; round < 3; round++) {
		pending = 0;
		for (i = 0; i < ml->n; i++) {
			struct store_mailbox *m = &ml->v[i];
			struct rmb *r = rstate_by_uniqueid(rs, m->uniqueid);
			struct rmb *occ;
			struct dlist *kv;

			if (r == NULL || strcmp(r->mb.name, m->name) == 0)
				continue;
			occ = rstate_by_name(rs, m->name);
			if (occ != NULL && round < 2) {
				pending++;
				continue;
			}
			if (occ != NULL) {
				/* Move the occupant aside. */
				char tmp[MAX_MAILBOX_NAME + 64];

				snprintf(tmp, sizeof(tmp), "%s.syncpipe-%s",
				    occ->mb.name, occ->mb.uniqueid);
				kv = dlist_newkvlist(NULL, pl->o->local ?
				    "LOCAL_RENAME" : "RENAME");
				dlist_setatom(kv, "OLDMBOXNAME", occ->mb.name);
				dlist_setatom(kv, "NEWMBOXNAME", tmp);
				dlist_setatom(kv, "PARTITION",
				    occ->mb.partition ? occ->mb.partition :
				    "default");
				comment(pl, "%s: name wanted by another "
				    "mailbox: moved aside", occ->mb.name);
				emit(pl, "APPLY", kv);
				dlist_free(kv);
				free(occ->mb.name);
				occ->mb.name = strdup(tmp);
			}
			kv = dlist_newkvlist(NULL, pl->o->local ?
			    "LOCAL_RENAME" : "RENAME");
			dlist_setatom(kv, "OLDMBOXNAME", r->mb.name);
			dlist_setatom(kv, "NEWMBOXNAME", m->name);
			dlist_setatom(kv, "PARTITION", pl->o->partition ?
			    pl->o->partition : m->partition ? m->partition :
			    "default");
			dlist_setnum32(kv, "UIDVALIDITY", m->uidvalidity);
			comment(pl, "%s: renamed on the master from %s",
			    m->name, r->mb.name);
			emit(pl, "APPLY", kv);
			dlist_free(kv);
			free(r->mb.name);
			r->mb.name = strdup(m->name);
		}
		if (pending == 0)
			break;
	}
}

static void
plan_quota(struct plan *pl, const char *root, struct dlist *rq)
{
	struct store_quota q;
	struct dlist *kv;
	static const char *keys[QUOTA_NUMRESOURCES] = {
		"STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS"
	};
	int r, i, same = 1;

	r = master_quota_get(pl->m, root, &q);
	if (r == -1) {
		warnx_("quota %s: %s", root, master_error(pl->m));
		pl->failed++;
		return;
	}
	if (r == STORE_NOTFOUND) {
		if (rq != NULL) {
			comment(pl, "quota %s: removed on the master", root);
			kv = dlist_setatom(NULL, "UNQUOTA", root);
			emit(pl, "APPLY", kv);
			dlist_free(kv);
		}
		return;
	}
	kv = dlist_newkvlist(NULL, "QUOTA");
	dlist_setatom(kv, "ROOT", root);
	dlist_setnum32(kv, "LIMIT", q.limits[QUOTA_STORAGE] < 0 ?
	    4294967295u : (uint32_t)q.limits[QUOTA_STORAGE]);
	for (i = 0; i < QUOTA_NUMRESOURCES; i++)
		if (q.limits[i] >= 0)
			dlist_setnum32(kv, keys[i], (uint32_t)q.limits[i]);
	dlist_setnum64(kv, "MODSEQ", q.modseq);
	if (rq == NULL)
		same = 0;
	else
		for (i = 0; i < QUOTA_NUMRESOURCES; i++) {
			uint32_t v;
			int has = dlist_getnum32(rq, keys[i], &v) == 0;

			if (has != (q.limits[i] >= 0) ||
			    (has && v != (uint32_t)q.limits[i]))
				same = 0;
		}
	if (!same) {
		comment(pl, "quota %s: differs on the replica", root);
		emit(pl, "APPLY", kv);
	}
	dlist_free(kv);
	store_quota_clear(&q);
}

struct seenctx {
	struct plan	*pl;
	const char	*userid;
	struct dlist	*items;
};

static int
seen_cb(const struct store_seen *s, void *arg)
{
	struct seenctx *sc = arg;
	struct dlist *d, *kv;

	for (d = sc->items->head; d != NULL; d = d->next) {
		const char *u, *set;
		int64_t lr, lc;
		uint32_t lu;

		if (strcmp(d->key, "SEEN") != 0 ||
		    dlist_getatom(d, "UNIQUEID", &u) == -1 ||
		    strcmp(u, s->uniqueid) != 0)
			continue;
		if (dlist_getdate(d, "LASTREAD", &lr) == 0 &&
		    dlist_getnum32(d, "LASTUID", &lu) == 0 &&
		    dlist_getdate(d, "LASTCHANGE", &lc) == 0 &&
		    dlist_getatom(d, "SEENUIDS", &set) == 0 &&
		    lr == s->lastread && lu == s->lastuid &&
		    lc == s->lastchange && streq(set, s->seenuids))
			return 0;
		break;
	}
	kv = dlist_newkvlist(NULL, "SEEN");
	dlist_setatom(kv, "USERID", sc->userid);
	dlist_setatom(kv, "UNIQUEID", s->uniqueid);
	dlist_setdate(kv, "LASTREAD", s->lastread);
	dlist_setnum32(kv, "LASTUID", s->lastuid);
	dlist_setdate(kv, "LASTCHANGE", s->lastchange);
	dlist_setatom(kv, "SEENUIDS", s->seenuids ? s->seenuids : "");
	comment(sc->pl, "seen of %s on %s differs", sc->userid, s->uniqueid);
	emit(sc->pl, "APPLY", kv);
	dlist_free(kv);
	return 0;
}

struct subctx {
	char	**v;
	size_t	  n;
};

static int
sub_cb(const char *name, void *arg)
{
	struct subctx *sc = arg;

	push(&sc->v, &sc->n, name);
	return 0;
}

static int
in_list(const struct dlist *l, const char *s)
{
	const struct dlist *d;

	for (d = l ? l->head : NULL; d != NULL; d = d->next)
		if (d->kind == DL_STRING && strcmp(d->s, s) == 0)
			return 1;
	return 0;
}

static void
plan_subs(struct plan *pl, const char *userid, struct dlist *items)
{
	struct dlist *lsub = NULL, *d, *kv;
	struct subctx sc = { NULL, 0 };
	size_t i;

	for (d = items->head; d != NULL; d = d->next)
		if (strcmp(d->key, "LSUB") == 0)
			lsub = d;
	if (master_sub_foreach(pl->m, userid, sub_cb, &sc) == -1) {
		warnx_("subscriptions of %s: %s", userid,
		    master_error(pl->m));
		pl->failed++;
		return;
	}
	for (i = 0; i < sc.n; i++) {
		if (in_list(lsub, sc.v[i]))
			continue;
		kv = dlist_newkvlist(NULL, "SUB");
		dlist_setatom(kv, "USERID", userid);
		dlist_setatom(kv, "MBOXNAME", sc.v[i]);
		emit(pl, "APPLY", kv);
		dlist_free(kv);
	}
	for (d = lsub ? lsub->head : NULL; d != NULL; d = d->next) {
		int found = 0;

		for (i = 0; i < sc.n && !found; i++)
			found = strcmp(sc.v[i], d->s) == 0;
		if (found)
			continue;
		kv = dlist_newkvlist(NULL, "UNSUB");
		dlist_setatom(kv, "USERID", userid);
		dlist_setatom(kv, "MBOXNAME", d->s);
		emit(pl, "APPLY", kv);
		dlist_free(kv);
	}
	for (i = 0; i < sc.n; i++)
		free(sc.v[i]);
	free(sc.v);
}

struct sievectx {
	struct plan	*pl;
	const char	*userid;
	struct dlist	*items;
	int		 active_done;
};

static int
sieve_cb(const struct store_sieve *s, void *arg)
{
	struct sievectx *sc = arg;
	struct dlist *d, *kv;
	char fname[300];
	int have = 0, isactive = 0;

	snprintf(fname, sizeof(fname), "%s.script", s->name);
	for (d = sc->items->head; d != NULL; d = d->next) {
		const char *fn, *g;
		uint32_t act;

		if (strcmp(d->key, "SIEVE") != 0 ||
		    dlist_getatom(d, "FILENAME", &fn) == -1)
			continue;
		if (strcmp(fn, fname) == 0 && dlist_getatom(d, "GUID",
		    &g) == 0 && strcasecmp(g, s->guid) == 0)
			have = 1;
		if (dlist_getnum32(d, "ISACTIVE", &act) == 0 && act &&
		    strncmp(fn, s->name, strlen(s->name)) == 0 &&
		    strcmp(fn + strlen(s->name), ".bc") == 0)
			isactive = 1;
	}
	if (!have) {
		char *content;
		size_t len;

		if (master_sieve_get(sc->pl->m, sc->userid, s->name,
		    &content, &len) != 0) {
			sc->pl->failed++;
			return 0;
		}
		kv = dlist_newkvlist(NULL, "SIEVE");
		dlist_setatom(kv, "USERID", sc->userid);
		dlist_setatom(kv, "FILENAME", fname);
		dlist_setdate(kv, "LAST_UPDATE", s->last_update);
		dlist_setmap(kv, "CONTENT", content, len);
		emit(sc->pl, "APPLY", kv);
		dlist_free(kv);
		free(content);
	}
	if (s->active && !isactive) {
		snprintf(fname, sizeof(fname), "%s.bc", s->name);
		kv = dlist_newkvlist(NULL, "ACTIVATE_SIEVE");
		dlist_setatom(kv, "USERID", sc->userid);
		dlist_setatom(kv, "FILENAME", fname);
		emit(sc->pl, "APPLY", kv);
		dlist_free(kv);
	}
	return 0;
}

static void
plan_sieve(struct plan *pl, const char *userid, struct dlist *items)
{
	struct sievectx sc = { pl, userid, items, 0 };

	if (pl->cs->sieve_mailbox && master_sieve_mailbox(pl->m))
		return;		/* scripts travel in the #sieve mailbox */
	if (master_sieve_foreach(pl->m, userid, sieve_cb, &sc) == -1) {
		warnx_("sieve of %s: %s", userid, master_error(pl->m));
		pl->failed++;
	}
}

static int
is_sieve_type(const char *mbtype)
{
	return mbtype != NULL && mbtype[0] == 'f';
}

/*
 * Which sieve representation to replicate.  Scripts kept in the store's
 * script table (sync-store sieve) only travel as legacy SIEVE commands,
 * which a Cyrus 3.6 replica turns into its own #sieve mailbox; #sieve
 * mailboxes (received from a Cyrus master, or read from one as the
 * source) travel as mailboxes, which needs SIEVE-MAILBOX.  So a store
 * asks for SIEVE-MAILBOX only when it holds at least one #sieve mailbox;
 * a csync source is asked in the mode the replica agreed to.
 */
/* The whole state of one user (protocol doc 6.3). */
static void
plan_user(struct plan *pl, const char *userid, int meta_only)
{
	struct rstate rs;
	struct mblist ml = { NULL, 0 };
	struct dlist *arg, *d;
	char **roots = NULL;
	size_t nroots = 0, i, j;
	struct seenctx sc;

	if (!userid_valid(userid)) {
		warnx_("invalid userid '%s'", userid);
		pl->failed++;
		return;
	}
	arg = dlist_setatom(NULL, meta_only ? "META" : "USER", userid);
	if (rstate_get(pl, userid, arg, &rs) == -1) {
		dlist_free(arg);
		return;
	}
	dlist_free(arg);
	if (master_load_user(pl->m, userid, meta_only) == -1 ||
	    master_user_mailboxes(pl->m, userid, collect_mailbox, &ml) != 0) {
		warnx_("user %s: %s", userid, master_error(pl->m));
		pl->failed++;
		if (pl->src != NULL && pl->src->errclass != CSYNC_OK &&
		    pl->src->errclass != CSYNC_PROTOCOL)
			pl->fatal = EXIT_UNREACHABLE;
		goto done;
	}
	comment(pl, "user %s: %zu mailboxes on the master, %zu on the "
	    "replica", userid, ml.n, rs.nmbs);
	if (!meta_only && ml.n == 0 && master_remote(pl->m)) {
		/* As Cyrus: a user the master lacks is left alone here
		 * (deleting takes an UNUSER). */
		comment(pl, "user %s: not on the master: nothing to do",
		    userid);
		goto done;
	}
	if (!meta_only) {
		/* Without SIEVE-MAILBOX the #sieve mailbox is not replicated. */
		if (!pl->cs->sieve_mailbox)
			for (i = 0; i < ml.n; i++)
				if (is_sieve_type(ml.v[i].mbtype))
					ml.v[i].name[0] = '\0';
		plan_renames(pl, &ml, &rs);
		for (i = 0; i < ml.n; i++) {
			struct rmb *r;

			if (ml.v[i].name[0] == '\0')
				continue;
			r = rstate_by_uniqueid(&rs, ml.v[i].uniqueid);
			if (r != NULL)
				r->seen = 1;
			plan_mailbox(pl, &ml.v[i], &rs, r);
			if (ml.v[i].quotaroot != NULL) {
				for (j = 0; j < nroots; j++)
					if (strcmp(roots[j],
					    ml.v[i].quotaroot) == 0)
						break;
				if (j == nroots)
					push(&roots, &nroots,
					    ml.v[i].quotaroot);
			}
		}
		for (i = 0; i < rs.nmbs; i++) {
			struct dlist *kv;

			if (rs.mbs[i].seen)
				continue;
			if (!master_deleted(pl->m, rs.mbs[i].mb.name, 0)) {
				comment(pl, "%s: only on the replica and no "
				    "tombstone on the master: left alone",
				    rs.mbs[i].mb.name);
				continue;
			}
			comment(pl, "%s: deleted on the master",
			    rs.mbs[i].mb.name);
			kv = dlist_setatom(NULL, pl->o->local ?
			    "LOCAL_UNMAILBOX" : "UNMAILBOX", rs.mbs[i].mb.name);
			emit(pl, "APPLY", kv);
			dlist_free(kv);
		}
		/* Quota roots: ours, and any the replica reported. */
		for (d = rs.items->head; d != NULL; d = d->next) {
			const char *root;

			if (strcmp(d->key, "QUOTA") == 0 &&
			    dlist_getatom(d, "ROOT", &root) == 0) {
				for (j = 0; j < nroots; j++)
					if (strcmp(roots[j], root) == 0)
						break;
				if (j == nroots)
					push(&roots, &nroots, root);
			}
		}
		for (j = 0; j < nroots; j++) {
			struct dlist *rq = NULL;

			for (d = rs.items->head; d != NULL; d = d->next) {
				const char *root;

				if (strcmp(d->key, "QUOTA") == 0 &&
				    dlist_getatom(d, "ROOT", &root) == 0 &&
				    strcmp(root, roots[j]) == 0)
					rq = d;
			}
			plan_quota(pl, roots[j], rq);
			free(roots[j]);
		}
		free(roots);
	}
	sc.pl = pl;
	sc.userid = userid;
	sc.items = rs.items;
	if (master_seen_foreach(pl->m, userid, seen_cb, &sc) == -1) {
		warnx_("seen of %s: %s", userid, master_error(pl->m));
		pl->failed++;
	}
	plan_subs(pl, userid, rs.items);
	plan_sieve(pl, userid, rs.items);
done:
	mblist_clear(&ml);
	rstate_clear(&rs);
	master_forget(pl->m);
	prot_flush(pl->out);
}

/* Mailboxes by name (-m, and non-user mailboxes from the log); logged:
 * the sync log said they were deleted. */
static void
plan_mailboxes(struct plan *pl, char **names, size_t n, int logged)
{
	struct dlist *arg = dlist_newlist(NULL, "MAILBOXES");
	struct rstate rs;
	size_t i;

	for (i = 0; i < n; i++)
		dlist_setatom(arg, NULL, names[i]);
	if (rstate_get(pl, "MAILBOXES", arg, &rs) == -1) {
		dlist_free(arg);
		return;
	}
	dlist_free(arg);
	if (master_load_mailboxes(pl->m, names, n) == -1) {
		warnx_("%s", master_error(pl->m));
		pl->failed++;
		rstate_clear(&rs);
		return;
	}
	for (i = 0; i < n; i++) {
		struct store_mailbox m;
		int r = master_mailbox_get(pl->m, names[i], &m);

		if (r == STORE_NOTFOUND) {
			struct rmb *rm = rstate_by_name(&rs, names[i]);

			if (rm != NULL && master_deleted(pl->m, names[i],
			    logged)) {
				struct dlist *kv = dlist_setatom(NULL,
				    pl->o->local ? "LOCAL_UNMAILBOX" :
				    "UNMAILBOX", names[i]);

				comment(pl, "%s: deleted on the master",
				    names[i]);
				emit(pl, "APPLY", kv);
				dlist_free(kv);
			} else
				comment(pl, "%s: not on the master", names[i]);
			continue;
		}
		if (r != 0) {
			warnx_("%s: %s", names[i], master_error(pl->m));
			pl->failed++;
			continue;
		}
		{
			struct rmb *rm = rstate_by_uniqueid(&rs, m.uniqueid);

			if (rm != NULL && strcmp(rm->mb.name, m.name) != 0) {
				struct mblist one = { &m, 1 };

				plan_renames(pl, &one, &rs);
			}
			plan_mailbox(pl, &m, &rs, rm);
		}
		store_mailbox_clear(&m);
	}
	rstate_clear(&rs);
	master_forget(pl->m);
}

static void
plan_unuser(struct plan *pl, const char *userid)
{
	struct store_mailbox m;
	char *inbox = mboxname_user_inbox(userid);
	struct dlist *kv;
	int r;

	if (inbox == NULL) {
		pl->failed++;
		return;
	}
	if (master_load_mailboxes(pl->m, &inbox, 1) == -1) {
		warnx_("%s", master_error(pl->m));
		free(inbox);
		pl->failed++;
		return;
	}
	r = master_mailbox_get(pl->m, inbox, &m);
	free(inbox);
	master_forget(pl->m);
	if (r == -1) {
		pl->failed++;
		return;
	}
	if (r == 0) {
		store_mailbox_clear(&m);
		comment(pl, "user %s still exists on the master", userid);
		plan_user(pl, userid, 0);
		return;
	}
	comment(pl, "user %s: deleted on the master", userid);
	kv = dlist_setatom(NULL, "UNUSER", userid);
	emit(pl, "APPLY", kv);
	dlist_free(kv);
}

static int
all_users_cb(const struct store_mailbox *mb, void *arg)
{
	struct subctx *sc = arg;
	char *u;
	size_t i;

	if (mboxname_isdeleted(mb->name))
		return 0;
	u = mboxname_to_userid(mb->name);
	if (u == NULL)
		return 0;
	for (i = 0; i < sc->n; i++)
		if (strcmp(sc->v[i], u) == 0)
			break;
	if (i == sc->n)
		push(&sc->v, &sc->n, u);
	free(u);
	return 0;
}

/* The plan's first lines: its version, and the session set-up the
 * replica state was read with. */
static void
plan_header(struct plan *pl)
{
	prot_printf(pl->out, "%%syncpipe-plan %d\n", PLAN_VERSION);
	if (pl->cs->sieve_mailbox)
		prot_puts(pl->out, "APPLY CAPABILITIES (SIEVE-MAILBOX)\n");
	if (pl->o->force)
		prot_puts(pl->out, "APPLY FORCE %()\n");
}

/* An action stream on stdin: batches of sync_log records with '%'
 * control lines between them, which pass through to the plan. */
struct batch {
	char	**users, **metas, **unusers, **shared, **unmailboxes, **roots;
	size_t	  nusers, nmetas, nunusers, nshared, nunmailboxes, nroots;
	char	**controls;
	size_t	  ncontrols;
};

static void
addu(char ***v, size_t *n, const char *s)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp((*v)[i], s) == 0)
			return;
	push(v, n, s);
}

static void
batch_run(struct plan *pl, struct batch *b)
{
	int failed_before = pl->failed;
	size_t i, j;

	if (b->nshared > 0)
		plan_mailboxes(pl, b->shared, b->nshared, 0);
	for (i = 0; i < b->nroots; i++) {
		struct dlist *arg = dlist_setatom(NULL, "QUOTA", b->roots[i]);
		struct rstate rs;

		if (rstate_get(pl, b->roots[i], arg, &rs) == 0) {
			struct dlist *d, *rq = NULL;

			for (d = rs.items->head; d != NULL; d = d->next)
				if (strcmp(d->key, "QUOTA") == 0)
					rq = d;
			plan_quota(pl, b->roots[i], rq);
			rstate_clear(&rs);
		}
		dlist_free(arg);
	}
	for (i = 0; i < b->nunmailboxes; i++)
		plan_mailboxes(pl, &b->unmailboxes[i], 1, 1);
	for (i = 0; i < b->nmetas; i++) {
		for (j = 0; j < b->nusers; j++)
			if (strcmp(b->users[j], b->metas[i]) == 0)
				break;
		if (j == b->nusers)
			plan_user(pl, b->metas[i], 1);
	}
	for (i = 0; i < b->nusers; i++)
		plan_user(pl, b->users[i], 0);
	for (i = 0; i < b->nunusers; i++)
		plan_unuser(pl, b->unusers[i]);
	/*
	 * A claimed log file may only be removed when everything it asked
	 * for was planned: after a failure (or a replica gone away) its
	 * %commit is withheld, so the file stays and is processed again.
	 */
	for (i = 0; i < b->ncontrols; i++) {
		const char *f;

		if ((pl->failed != failed_before || pl->fatal) &&
		    strncmp(b->controls[i], "%commit", 7) == 0) {
			comment(pl, "not committing: planning failed; the "
			    "claimed log stays for a later run");
			/*
			 * "%kept FILE" tells a rolling loop now, not at its
			 * retry (see sync_client(8)).
			 */
			f = b->controls[i] + 7;
			f += strspn(f, " ");
			prot_printf(pl->out, "%%kept %.*s\n",
			    (int)strcspn(f, " "), f);
			continue;
		}
		prot_printf(pl->out, "%s\n", b->controls[i]);
	}
	prot_flush(pl->out);
#define FREEV(v, n) do { for (i = 0; i < b->n; i++) free(b->v[i]); \
	free(b->v); b->v = NULL; b->n = 0; } while (0)
	FREEV(users, nusers); FREEV(metas, nmetas); FREEV(unusers, nunusers);
	FREEV(shared, nshared); FREEV(unmailboxes, nunmailboxes);
	FREEV(roots, nroots); FREEV(controls, ncontrols);
#undef FREEV
}

static void
batch_add(struct plan *pl, struct batch *b, const struct synclog_rec *rec)
{
	char owner[512];

	switch (rec->kind) {
	case SYNCLOG_USER:
		addu(&b->users, &b->nusers, rec->arg1);
		break;
	case SYNCLOG_UNUSER:
		addu(&b->unusers, &b->nunusers, rec->arg1);
		break;
	case SYNCLOG_META:
	case SYNCLOG_SIEVE:
	case SYNCLOG_SEEN:
	case SYNCLOG_SUB:
	case SYNCLOG_UNSUB:
		addu(&b->metas, &b->nmetas, rec->arg1);
		break;
	case SYNCLOG_QUOTA:
		addu(&b->roots, &b->nroots, rec->arg1);
		break;
	case SYNCLOG_UNMAILBOX:
		addu(&b->unmailboxes, &b->nunmailboxes, rec->arg1);
		break;
	case SYNCLOG_APPEND:
	case SYNCLOG_MAILBOX:
	case SYNCLOG_ANNOTATION:
	case SYNCLOG_DOUBLEMAILBOX:
	case SYNCLOG_RENAME:
		if (rec->kind == SYNCLOG_ANNOTATION && rec->arg1[0] == '\0')
			break;	/* server annotations: not replicated yet */
		synclog_mailbox_owner(rec->arg1, owner, sizeof(owner));
		if (owner[0] != '\0')
			addu(&b->users, &b->nusers, owner);
		else
			addu(&b->shared, &b->nshared, rec->arg1);
		if (rec->arg2 != NULL) {
			synclog_mailbox_owner(rec->arg2, owner, sizeof(owner));
			if (owner[0] != '\0')
				addu(&b->users, &b->nusers, owner);
			else
				addu(&b->shared, &b->nshared, rec->arg2);
		}
		break;
	default:
		break;
	}
	(void)pl;
}

static void
read_actions(struct plan *pl)
{
	static struct synclog_action act;
	struct synclog_reader *rd = synclog_reader_new(0);
	struct batch b;
	char err[256];
	int r;

	memset(&b, 0, sizeof(b));
	if (rd == NULL) {
		pl->fatal = EXIT_IOERR;
		return;
	}
	plan_header(pl);
	while ((r = synclog_action_next(rd, &act, err, sizeof(err))) == 1) {
		switch (act.kind) {
		case SYNCLOG_ACTION_LONG:
			warnx_("stdin:%lu: %s", act.lineno, act.why);
			break;
		case SYNCLOG_ACTION_BAD:
			warnx_("stdin:%lu: %s", act.lineno, act.why);
			pl->failed++;
			break;
		case SYNCLOG_ACTION_RECORD:
			batch_add(pl, &b, &act.rec);
			break;
		case SYNCLOG_ACTION_CONTROL:
			/* A batch ends at its commit or end marker. */
			if (strncmp(act.ctl, "%batch", 6) == 0)
				break;
			push(&b.controls, &b.ncontrols, act.ctl);
			if (strncmp(act.ctl, "%end", 4) == 0 ||
			    strncmp(act.ctl, "%commit", 7) == 0)
				batch_run(pl, &b);
			break;
		}
		if (pl->fatal)
			break;
	}
	if (r == -1) {
		warnx_("stdin: %s", err);
		pl->fatal = EXIT_IOERR;
	}
	if (!pl->fatal)
		batch_run(pl, &b);
	synclog_reader_free(rd);
}

/* --lock-fd FD: a descriptor number, 0 to 1023. */
static int
lock_fd_arg(const char *s)
{
	char *end;
	long fd;

	errno = 0;
	fd = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || fd < 0 || fd > 1023) {
		warnx_("--lock-fd: not a descriptor: %s", s);
		usage();
	}
	return (int)fd;
}

/*
 * The sync lock of sync_client(8): an exclusive flock(2) on the open file
 * behind FD, taken before anything is read and waited for as long as
 * another run holds it.  The lock belongs to the open file, so it outlives
 * this process in the caller that opened it (which drops it by closing
 * its descriptor); a process this one starts does not inherit it.
 */
static int
take_lock(int fd, int verbose)
{
	int flags;

	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK) {
			warnx_("sync lock (descriptor %d): %s", fd,
			    strerror(errno));
			return -1;
		}
		if (verbose)
			warnx_("waiting for the sync lock, held by another "
			    "run");
		while (flock(fd, LOCK_EX) == -1) {
			if (errno == EINTR)
				continue;
			warnx_("sync lock (descriptor %d): %s", fd,
			    strerror(errno));
			return -1;
		}
	}
	flags = fcntl(fd, F_GETFD);
	if (flags != -1)
		(void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
	return 0;
}

static void
parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "legacy-sieve", no_argument, NULL, 1 },
		{ "source-command", required_argument, NULL, 2 },
		{ "full", no_argument, NULL, 3 },
		{ "lock-fd", required_argument, NULL, 4 },
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "AC:Le:M:m:n:Op:S:s:u:v", lopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'A': o->all = 1; break;
		case 'C': o->conf_path = optarg; break;
		case 'L': o->local = 1; break;
		case 'n': o->channel = optarg; break;
		case 'O': o->force = 1; break;
		case 'e': o->command = optarg; break;
		case 'M': o->source = optarg; break;
		case 'm': push(&o->mboxes, &o->nmboxes, optarg); break;
		case 'p': o->partition = optarg; break;
		case 'S': o->target = optarg; break;
		case 's': push(&o->metas, &o->nmetas, optarg); break;
		case 'u': push(&o->users, &o->nusers, optarg); break;
		case 'v': o->verbose++; break;
		case 1: o->legacy_sieve = 1; break;
		case 2: o->source_command = optarg; break;
		case 3: o->full = 1; break;
		case 4: o->lock_fd = lock_fd_arg(optarg); break;
		default: usage();
		}
	}
	/* Operands belong to the last of -u/-m/-s given, as in Cyrus. */
	for (; optind < argc; optind++) {
		if (o->nmboxes > 0 && o->nusers == 0)
			push(&o->mboxes, &o->nmboxes, argv[optind]);
		else if (o->nmetas > 0 && o->nusers == 0)
			push(&o->metas, &o->nmetas, argv[optind]);
		else
			push(&o->users, &o->nusers, argv[optind]);
	}
	if (o->partition != NULL && !partition_name_valid(o->partition))
		usage();
	if (o->target != NULL && o->command != NULL)
		usage();
	if (o->source != NULL && o->source_command != NULL)
		usage();
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct plan pl;
	struct csync_opts co, so;
	char err[512];
	enum csync_err cls;
	char tbuf[512], sbuf[512];
	size_t i;

	memset(&o, 0, sizeof(o));
	o.conf_path = getenv("SYNCPIPE_CONF") ? getenv("SYNCPIPE_CONF") :
	    CONF_DEFAULT_PATH;
	o.lock_fd = -1;
	parse_opts(argc, argv, &o);
	if (o.lock_fd != -1 && take_lock(o.lock_fd, o.verbose) == -1)
		return EXIT_TEMP;

	memset(&pl, 0, sizeof(pl));
	pl.o = &o;
	pl.conf = conf_load(o.conf_path, err, sizeof(err));
	if (pl.conf == NULL) {
		warnx_("%s", err);
		return EXIT_CONFIG;
	}
	memset(&so, 0, sizeof(so));
	csync_source_opts_from_conf(&so, pl.conf, o.channel, o.source, sbuf,
	    sizeof(sbuf));
	if (o.source_command != NULL)
		so.target = NULL;
	so.command = o.source_command;
	if (so.target == NULL && so.command == NULL) {
		pl.store = store_open(pl.conf, err, sizeof(err));
		if (pl.store == NULL) {
			warnx_("%s", err);
			return EXIT_CONFIG;
		}
		pl.m = master_from_store(pl.store);
	}
	memset(&co, 0, sizeof(co));
	csync_opts_from_conf(&co, pl.conf, o.channel, o.target, tbuf,
	    sizeof(tbuf));
	if (o.command != NULL)
		co.target = NULL;
	co.command = o.command;
	if (co.command == NULL && co.target == NULL) {
		warnx_("no replica: give -S, -e or sync_host");
		return EXIT_CONFIG;
	}
	co.sieve_mailbox = !o.legacy_sieve && (pl.store == NULL ||
	    master_sieve_mailbox(pl.m));
	co.timeout = 60;
	pl.cs = csync_open(&co, err, sizeof(err), &cls);
	if (pl.cs == NULL) {
		warnx_("%s", err);
		return csync_exit_status(cls);
	}
	if (pl.store == NULL) {
		/* The source is read in the sieve mode the replica agreed
		 * to: #sieve mailboxes only when both speak SIEVE-MAILBOX. */
		so.sieve_mailbox = pl.cs->sieve_mailbox;
		so.timeout = 60;
		pl.src = csync_open(&so, err, sizeof(err), &cls);
		if (pl.src == NULL) {
			warnx_("source: %s", err);
			csync_close(pl.cs);
			return csync_exit_status(cls);
		}
		pl.m = master_from_csync(pl.src);
	}
	if (pl.m == NULL) {
		warnx_("out of memory");
		return EXIT_IOERR;
	}
	pl.out = prot_new(-1, 1);

	if (o.nusers == 0 && o.nmboxes == 0 && o.nmetas == 0 && !o.all)
		read_actions(&pl);
	else {
		plan_header(&pl);
		if (o.all) {
			struct subctx all = { NULL, 0 };

			if (master_mailbox_foreach(pl.m, all_users_cb,
			    &all) == -1) {
				warnx_("-A: %s", master_error(pl.m));
				pl.failed++;
			}
			for (i = 0; i < all.n; i++) {
				plan_user(&pl, all.v[i], 0);
				free(all.v[i]);
			}
			free(all.v);
		}
		for (i = 0; i < o.nusers && !pl.fatal; i++)
			plan_user(&pl, o.users[i], 0);
		for (i = 0; i < o.nmetas && !pl.fatal; i++)
			plan_user(&pl, o.metas[i], 1);
		if (o.nmboxes > 0 && !pl.fatal)
			plan_mailboxes(&pl, o.mboxes, o.nmboxes, 0);
		prot_puts(pl.out, "%end\n");
	}
	if (prot_flush(pl.out) == -1) {
		warnx_("writing the plan: %s", prot_error(pl.out));
		pl.fatal = EXIT_IOERR;
	}
	prot_free(pl.out);
	csync_close(pl.cs);
	if (pl.src != NULL)
		csync_close(pl.src);
	master_free(pl.m);
	if (pl.store != NULL)
		store_close(pl.store);
	conf_free(pl.conf);
	strv_free(o.users, o.nusers);
	strv_free(o.metas, o.nmetas);
	strv_free(o.mboxes, o.nmboxes);
	if (pl.fatal)
		return pl.fatal;
	return pl.failed ? EXIT_FAILED : EXIT_OK;
}
