/*
 * master: the master's state from our store or from a csync source.
 */
#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csync.h"
#include "dlist.h"
#include "master.h"
#include "mbdl.h"
#include "store.h"

struct master {
	struct store		*st;
	struct csync		*cs;
	/* csync: the last loaded reply. */
	struct master_mbox	*mbs;
	size_t			 nmbs;
	struct dlist		*items;		/* SEEN, LSUB, SIEVE, QUOTA */
	char			 err[512];
};

static void
m_err(struct master *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->err, sizeof(m->err), fmt, ap);
	va_end(ap);
}

struct master *
master_from_store(struct store *st)
{
	struct master *m = calloc(1, sizeof(*m));

	if (m != NULL)
		m->st = st;
	return m;
}

struct master *
master_from_csync(struct csync *cs)
{
	struct master *m = calloc(1, sizeof(*m));

	if (m != NULL)
		m->cs = cs;
	return m;
}

void
master_mbox_clear(struct master_mbox *x)
{
	store_mailbox_clear(&x->mb);
	store_annots_free(x->annots, x->nannots);
	memset(x, 0, sizeof(*x));
}

static void
cache_clear(struct master *m)
{
	size_t i;

	for (i = 0; i < m->nmbs; i++)
		master_mbox_clear(&m->mbs[i]);
	free(m->mbs);
	m->mbs = NULL;
	m->nmbs = 0;
	dlist_free(m->items);
	m->items = NULL;
}

void
master_forget(struct master *m)
{
	cache_clear(m);
}

void
master_free(struct master *m)
{
	if (m == NULL)
		return;
	cache_clear(m);
	free(m);
}

const char *
master_error(const struct master *m)
{
	if (m->st != NULL && m->err[0] == '\0')
		return store_error(m->st);
	return m->err;
}

int
master_remote(const struct master *m)
{
	return m->cs != NULL;
}

/* One GET to the source; the reply's items go to *r.  Returns 0, -1. */
static int
src_get(struct master *m, struct dlist *arg, struct csync_reply *r,
    int nonexistent_ok)
{
	m->err[0] = '\0';
	memset(r, 0, sizeof(*r));
	if (csync_call(m->cs, "GET", arg, r, NULL) == -1 &&
	    r->status[0] == '\0') {
		m_err(m, "source: GET %s: %s", arg->key, m->cs->err);
		return -1;
	}
	if (strcmp(r->status, "OK") != 0 && !(nonexistent_ok &&
	    strcmp(r->code, "IMAP_MAILBOX_NONEXISTENT") == 0)) {
		m_err(m, "source: GET %s: %s %s", arg->key, r->status,
		    r->text ? r->text : "");
		return -1;
	}
	return 0;
}

/* GET something and cache its MAILBOX lines and other items. */
static int
src_load(struct master *m, struct dlist *arg)
{
	struct csync_reply r;
	char err[256];
	size_t i;
	int rc = 0;

	cache_clear(m);
	m->items = dlist_newkvlist(NULL, "ITEMS");
	if (src_get(m, arg, &r, 0) == -1) {
		csync_reply_clear(&r);
		return -1;
	}
	for (i = 0; i < r.nitems; i++) {
		struct dlist *d = r.items[i];

		if (strcmp(d->key, "MAILBOX") == 0) {
			struct master_mbox *n = reallocarray(m->mbs,
			    m->nmbs + 1, sizeof(*n));

			if (n == NULL) {
				m_err(m, "out of memory");
				rc = -1;
				break;
			}
			m->mbs = n;
			memset(&n[m->nmbs], 0, sizeof(*n));
			if (mbdl_parse_mailbox(d, &n[m->nmbs].mb,
			    &n[m->nmbs].annots, &n[m->nmbs].nannots, 1, err,
			    sizeof(err)) == -1) {
				m_err(m, "source: bad MAILBOX: %s", err);
				rc = -1;
				break;
			}
			m->nmbs++;
			continue;
		}
		dlist_stitch(m->items, d);
		r.items[i] = NULL;
	}
	csync_reply_clear(&r);
	return rc;
}

int
master_load_user(struct master *m, const char *userid, int meta_only)
{
	struct dlist *arg;
	int rc;

	if (m->cs == NULL)
		return 0;
	arg = dlist_setatom(NULL, meta_only ? "META" : "USER", userid);
	rc = src_load(m, arg);
	dlist_free(arg);
	return rc;
}

int
master_user_mailboxes(struct master *m, const char *userid,
    store_mailbox_cb cb, void *arg)
{
	size_t i;
	int r;

	if (m->cs == NULL)
		return store_mailbox_foreach_user(m->st, userid, cb, arg);
	for (i = 0; i < m->nmbs; i++)
		if ((r = cb(&m->mbs[i].mb, arg)) != 0)
			return r;
	return 0;
}

int
master_load_mailboxes(struct master *m, char **names, size_t n)
{
	struct dlist *arg;
	size_t i;
	int rc;

	if (m->cs == NULL)
		return 0;
	arg = dlist_newlist(NULL, "MAILBOXES");
	for (i = 0; i < n; i++)
		dlist_setatom(arg, NULL, names[i]);
	rc = src_load(m, arg);
	dlist_free(arg);
	return rc;
}

static struct master_mbox *
cache_find(struct master *m, const char *name, const char *uniqueid)
{
	size_t i;

	for (i = 0; i < m->nmbs; i++)
		if ((name != NULL && strcmp(m->mbs[i].mb.name, name) == 0) ||
		    (uniqueid != NULL &&
		    strcmp(m->mbs[i].mb.uniqueid, uniqueid) == 0))
			return &m->mbs[i];
	return NULL;
}

static char *
dup0(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static void
mailbox_copy(struct store_mailbox *to, const struct store_mailbox *from)
{
	*to = *from;
	to->uniqueid = dup0(from->uniqueid);
	to->name = dup0(from->name);
	to->mbtype = dup0(from->mbtype);
	to->partition = dup0(from->partition);
	to->acl = dup0(from->acl);
	to->options = dup0(from->options);
	to->quotaroot = dup0(from->quotaroot);
}

int
master_mailbox_get(struct master *m, const char *name,
    struct store_mailbox *mb)
{
	struct master_mbox *x;

	if (m->cs == NULL)
		return store_mailbox_get(m->st, name, mb);
	if ((x = cache_find(m, name, NULL)) == NULL) {
		memset(mb, 0, sizeof(*mb));
		return STORE_NOTFOUND;
	}
	mailbox_copy(mb, &x->mb);
	return 0;
}

static int
annots_copy(const struct store_annot *a, size_t n, struct store_annot **out,
    size_t *nout)
{
	size_t i;

	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	if ((*out = calloc(n, sizeof(**out))) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		struct store_annot *o = &(*out)[i];

		*o = a[i];
		o->entry = strdup(a[i].entry);
		o->userid = strdup(a[i].userid ? a[i].userid : "");
		o->value = malloc(a[i].valuelen + 1);
		if (o->entry == NULL || o->userid == NULL || o->value == NULL) {
			/* The copies made so far, this one's included. */
			store_annots_free(*out, i + 1);
			*out = NULL;
			return -1;
		}
		if (a[i].valuelen > 0)
			memcpy(o->value, a[i].value, a[i].valuelen);
		o->value[a[i].valuelen] = '\0';
	}
	*nout = n;
	return 0;
}

int
master_mbannots(struct master *m, const struct store_mailbox *mb,
    struct store_annot **a, size_t *n)
{
	struct master_mbox *x;

	if (m->cs == NULL)
		return store_mbannot_list(m->st, mb->id, a, n);
	x = cache_find(m, NULL, mb->uniqueid);
	if (x == NULL) {
		*a = NULL;
		*n = 0;
		return 0;
	}
	if (annots_copy(x->annots, x->nannots, a, n) == -1) {
		m_err(m, "out of memory");
		return -1;
	}
	return 0;
}

int
master_records(struct master *m, const struct store_mailbox *mb,
    uint64_t since, store_record_cb cb, void *arg, struct master_mbox *fresh)
{
	struct csync_reply r;
	struct dlist *a, *kv = NULL, *recs, *d;
	struct store_record rec;
	char err[256];
	size_t i;
	int rc = 0;

	memset(fresh, 0, sizeof(*fresh));
	if (m->cs == NULL) {
		rc = store_record_foreach(m->st, mb->id, since, cb, arg);
		return rc > 0 ? -1 : rc;
	}
	a = dlist_setatom(NULL, "FULLMAILBOX", mb->name);
	rc = src_get(m, a, &r, 1);
	dlist_free(a);
	if (rc == -1)
		goto done;
	if (strcmp(r.status, "OK") != 0) {
		rc = STORE_NOTFOUND;
		goto done;
	}
	for (i = 0; i < r.nitems; i++)
		if (strcmp(r.items[i]->key, "MAILBOX") == 0)
			kv = r.items[i];
	if (kv == NULL) {
		rc = STORE_NOTFOUND;
		goto done;
	}
	if (mbdl_parse_mailbox(kv, &fresh->mb, &fresh->annots,
	    &fresh->nannots, 0, err, sizeof(err)) == -1) {
		m_err(m, "source: GET FULLMAILBOX %s: %s", mb->name, err);
		rc = -1;
		goto done;
	}
	recs = dlist_child(kv, "RECORD");
	for (d = recs ? recs->head : NULL; d != NULL; d = d->next) {
		if (mbdl_parse_record(d, &rec, err, sizeof(err)) == -1) {
			m_err(m, "source: GET FULLMAILBOX %s: %s", mb->name,
			    err);
			rc = -1;
			break;
		}
		if (rec.modseq > since && cb(&rec, arg) != 0) {
			m_err(m, "out of memory");
			rc = -1;
		}
		store_record_clear(&rec);
		if (rc != 0)
			break;
	}
	if (rc != 0)
		master_mbox_clear(fresh);
done:
	csync_reply_clear(&r);
	return rc;
}

int
master_body_exists(struct master *m, const char *partition, const char *guid)
{
	if (m->cs != NULL)
		return 0;
	return store_body_exists(m->st, partition, guid);
}

int
master_deleted(struct master *m, const char *name, int logged)
{
	struct store_tombstone t;

	if (m->cs != NULL)
		return logged && cache_find(m, name, NULL) == NULL;
	if (store_tombstone_get(m->st, name, &t) != 0)
		return 0;
	store_tombstone_clear(&t);
	return 1;
}

/* A QUOTA kvlist into q (protocol doc 3.2.2). */
static int
quota_parse(const struct dlist *d, struct store_quota *q)
{
	static const char *keys[QUOTA_NUMRESOURCES] = {
		"STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS"
	};
	const char *root;
	uint32_t v;
	int i;

	memset(q, 0, sizeof(*q));
	if (dlist_getatom(d, "ROOT", &root) == -1)
		return -1;
	for (i = 0; i < QUOTA_NUMRESOURCES; i++)
		q->limits[i] = QUOTA_UNLIMITED;
	if (dlist_getnum32(d, "LIMIT", &v) == 0 && v != 4294967295u)
		q->limits[QUOTA_STORAGE] = v;
	for (i = 0; i < QUOTA_NUMRESOURCES; i++)
		if (dlist_getnum32(d, keys[i], &v) == 0)
			q->limits[i] = v;
	(void)dlist_getnum64(d, "MODSEQ", &q->modseq);
	q->root = strdup(root);
	return 0;
}

static const struct dlist *
item_quota(const struct dlist *items, const char *root)
{
	const struct dlist *d;
	const char *r;

	for (d = items ? items->head : NULL; d != NULL; d = d->next)
		if (strcmp(d->key, "QUOTA") == 0 &&
		    dlist_getatom(d, "ROOT", &r) == 0 && strcmp(r, root) == 0)
			return d;
	return NULL;
}

int
master_quota_get(struct master *m, const char *root, struct store_quota *q)
{
	struct csync_reply r;
	const struct dlist *d;
	struct dlist *a;
	size_t i;
	int rc = STORE_NOTFOUND;

	if (m->cs == NULL)
		return store_quota_get(m->st, root, q);
	memset(q, 0, sizeof(*q));
	if ((d = item_quota(m->items, root)) != NULL)
		return quota_parse(d, q) == 0 ? 0 : STORE_NOTFOUND;
	a = dlist_setatom(NULL, "QUOTA", root);
	if (src_get(m, a, &r, 1) == -1)
		rc = -1;
	else
		for (i = 0; i < r.nitems && rc == STORE_NOTFOUND; i++)
			if (strcmp(r.items[i]->key, "QUOTA") == 0 &&
			    quota_parse(r.items[i], q) == 0)
				rc = 0;
	dlist_free(a);
	csync_reply_clear(&r);
	return rc;
}

int
master_seen_foreach(struct master *m, const char *userid, store_seen_cb cb,
    void *arg)
{
	const struct dlist *d;
	struct store_seen s;
	const char *u, *set;
	int r;

	if (m->cs == NULL)
		return store_seen_foreach(m->st, userid, cb, arg);
	for (d = m->items ? m->items->head : NULL; d != NULL; d = d->next) {
		if (strcmp(d->key, "SEEN") != 0)
			continue;
		memset(&s, 0, sizeof(s));
		if (dlist_getatom(d, "UNIQUEID", &u) == -1 ||
		    dlist_getdate(d, "LASTREAD", &s.lastread) == -1 ||
		    dlist_getnum32(d, "LASTUID", &s.lastuid) == -1 ||
		    dlist_getdate(d, "LASTCHANGE", &s.lastchange) == -1 ||
		    dlist_getatom(d, "SEENUIDS", &set) == -1) {
			m_err(m, "source: bad SEEN of %s", userid);
			return -1;
		}
		s.uniqueid = (char *)u;
		s.seenuids = (char *)set;
		if ((r = cb(&s, arg)) != 0)
			return r;
	}
	return 0;
}

int
master_sub_foreach(struct master *m, const char *userid, store_name_cb cb,
    void *arg)
{
	const struct dlist *d, *e;
	int r;

	if (m->cs == NULL)
		return store_sub_foreach(m->st, userid, cb, arg);
	for (d = m->items ? m->items->head : NULL; d != NULL; d = d->next) {
		if (strcmp(d->key, "LSUB") != 0)
			continue;
		for (e = d->head; e != NULL; e = e->next)
			if (e->kind == DL_STRING && (r = cb(e->s, arg)) != 0)
				return r;
	}
	return 0;
}

/* The listing form (protocol doc 3.2.5): "name.script" entries, and a
 * "name.bc" entry with ISACTIVE 1 for the active one. */
int
master_sieve_foreach(struct master *m, const char *userid,
    store_sieve_cb cb, void *arg)
{
	const struct dlist *d, *e;
	struct store_sieve s;
	const char *fn, *fn2, *g;
	char name[256];
	size_t len;
	uint32_t act;
	int r;

	if (m->cs == NULL)
		return store_sieve_foreach(m->st, userid, cb, arg);
	for (d = m->items ? m->items->head : NULL; d != NULL; d = d->next) {
		if (strcmp(d->key, "SIEVE") != 0 ||
		    dlist_getatom(d, "FILENAME", &fn) == -1)
			continue;
		len = strlen(fn);
		if (len <= 7 || strcmp(fn + len - 7, ".script") != 0 ||
		    len - 7 >= sizeof(name))
			continue;
		memcpy(name, fn, len - 7);
		name[len - 7] = '\0';
		memset(&s, 0, sizeof(s));
		s.name = name;
		(void)dlist_getdate(d, "LAST_UPDATE", &s.last_update);
		if (dlist_getatom(d, "GUID", &g) == 0 && strlen(g) == 40)
			memcpy(s.guid, g, 41);
		for (e = m->items->head; e != NULL; e = e->next)
			if (strcmp(e->key, "SIEVE") == 0 &&
			    dlist_getatom(e, "FILENAME", &fn2) == 0 &&
			    strncmp(fn2, name, len - 7) == 0 &&
			    strcmp(fn2 + len - 7, ".bc") == 0 &&
			    dlist_getnum32(e, "ISACTIVE", &act) == 0 && act)
				s.active = 1;
		if ((r = cb(&s, arg)) != 0)
			return r;
	}
	return 0;
}

int
master_sieve_get(struct master *m, const char *userid, const char *name,
    char **content, size_t *len)
{
	struct csync_reply r;
	struct dlist *a;
	const char *c;
	char fname[300];
	size_t i, n;
	int rc = STORE_NOTFOUND;

	if (m->cs == NULL)
		return store_sieve_get(m->st, userid, name, content, len);
	snprintf(fname, sizeof(fname), "%s.script", name);
	a = dlist_newkvlist(NULL, "FETCH_SIEVE");
	dlist_setatom(a, "USERID", userid);
	dlist_setatom(a, "FILENAME", fname);
	if (src_get(m, a, &r, 1) == -1)
		rc = -1;
	else
		for (i = 0; i < r.nitems && rc == STORE_NOTFOUND; i++)
			if (strcmp(r.items[i]->key, "SIEVE") == 0 &&
			    dlist_getmap(r.items[i], "CONTENT", &c, &n) == 0 &&
			    (*content = malloc(n + 1)) != NULL) {
				memcpy(*content, c, n);
				(*content)[n] = '\0';
				*len = n;
				rc = 0;
			}
	dlist_free(a);
	csync_reply_clear(&r);
	return rc;
}

int
master_mailbox_foreach(struct master *m, store_mailbox_cb cb, void *arg)
{
	if (m->cs == NULL)
		return store_mailbox_foreach(m->st, NULL, cb, arg);
	m_err(m, "a csync source cannot list its users: name them (-u)");
	return -1;
}

static int
sieve_type_cb(const struct store_mailbox *mb, void *arg)
{
	(void)arg;
	return mb->mbtype != NULL && mb->mbtype[0] == 'f' ? 1 : 0;
}

int
master_sieve_mailbox(struct master *m)
{
	if (m->cs != NULL)
		return m->cs->sieve_mailbox;
	return store_mailbox_foreach(m->st, NULL, sieve_type_cb, NULL) == 1;
}
