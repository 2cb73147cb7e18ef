/*
 * GET: the replica's answers to a client's questions about its state
 * (protocol doc 3.1 and 3.2).  Every data line is a "* NAME value" dlist
 * built here and printed with the codec, so the bytes match Cyrus's for
 * the same state; the session writes the status line.
 */
#include <sys/stat.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>


#include "dlist.h"
#include "mbdl.h"
#include "names.h"
#include "prot.h"
#include "server.h"
#include "store.h"

#define VANNOT_THRID		"/vendor/cmu/cyrus-imapd/thrid"
#define VANNOT_SAVEDATE		"/vendor/cmu/cyrus-imapd/savedate"
#define VANNOT_CREATEDMODSEQ	"/vendor/cmu/cyrus-imapd/createdmodseq"

#define NULL_GUID	"0000000000000000000000000000000000000000"

/* Quota limits travel as num32; this value means "no limit". */
#define QUOTA_WIRE_UNLIMITED	4294967295u

struct get_names {
	char		**v;
	size_t		 n, cap;
};

static int
get_names_add(struct get_names *gn, const char *s)
{
	char **nv;
	size_t i;

	for (i = 0; i < gn->n; i++)
		if (strcmp(gn->v[i], s) == 0)
			return 0;
	if (gn->n == gn->cap) {
		size_t cap = gn->cap ? gn->cap * 2 : 16;

		if ((nv = reallocarray(gn->v, cap, sizeof(*nv))) == NULL)
			return -1;
		gn->v = nv;
		gn->cap = cap;
	}
	if ((gn->v[gn->n] = strdup(s)) == NULL)
		return -1;
	gn->n++;
	return 0;
}

static void
get_names_free(struct get_names *gn)
{
	size_t i;

	for (i = 0; i < gn->n; i++)
		free(gn->v[i]);
	free(gn->v);
	gn->v = NULL;
	gn->n = gn->cap = 0;
}

/* Write "* " dl CRLF and free dl. */
static int
get_emit(struct sv *sv, struct dlist *dl)
{
	int r = 0;

	if (prot_puts(sv->p, "* ") == -1 ||
	    dlist_print(dl, 1, sv->p, 0) == -1 ||
	    prot_puts(sv->p, "\r\n") == -1)
		r = -1;
	dlist_free(dl);
	return r;
}

static int
get_store_failed(struct sv *sv, const char *what)
{
	sv_log(LOG_ERR, "GET %s: %s", what, store_error(sv->store));
	return SV_UNKNOWN;
}

/*
 * Find the quota root governing a mailbox: the longest configured root
 * that is the name itself or one of its ancestors.  A domain's "dom!"
 * prefix is never cut, so one domain's roots never cover another's.
 * Returns 1 (root in buf), 0 (none) or -1.
 */
int
sv_quotaroot(struct store *st, const char *name, char *buf, size_t size)
{
	struct store_quota q;
	char cand[MAX_MAILBOX_NAME + 1];
	const char *bang, *body;
	char *dot;
	int r;

	if (strlcpy(cand, name, sizeof(cand)) >= sizeof(cand))
		return 0;
	bang = strchr(cand, '!');
	body = bang != NULL ? bang + 1 : cand;
	for (;;) {
		memset(&q, 0, sizeof(q));
		r = store_quota_get(st, cand, &q);
		if (r == -1)
			return -1;
		if (r == 0) {
			store_quota_clear(&q);
			if (strlcpy(buf, cand, size) >= size)
				return 0;
			return 1;
		}
		if ((dot = strrchr(cand, '.')) == NULL || dot < body)
			return 0;
		*dot = '\0';
	}
}

static void
get_virtannot(struct dlist **listp, struct dlist *parent, const char *entry,
    struct dlist *(*set)(struct dlist *, const char *, uint64_t), uint64_t v)
{
	struct dlist *kl;

	if (*listp == NULL)
		*listp = dlist_newlist(parent, "ANNOTATIONS");
	kl = dlist_newkvlist(*listp, NULL);
	dlist_setatom(kl, "ENTRY", entry);
	dlist_setatom(kl, "USERID", "");
	dlist_setnum64(kl, "MODSEQ", 0);
	set(kl, "VALUE", v);
}

static struct dlist *
get_set_hex64(struct dlist *p, const char *k, uint64_t v)
{
	return dlist_sethex64(p, k, v);
}

static struct dlist *
get_set_num32(struct dlist *p, const char *k, uint64_t v)
{
	/* savedate travels as num32, as the peer writes it. */
	return dlist_setnum32(p, k, (uint32_t)v);
}

static struct dlist *
get_set_num64(struct dlist *p, const char *k, uint64_t v)
{
	return dlist_setnum64(p, k, v);
}

/*
 * One index record as a RECORD item.  Real annotations come first (the
 * store keeps them sorted by entry and userid), then the virtual ones in
 * the order the peer writes them: thrid, savedate, createdmodseq.
 * Not mbdl_record(): that drops keywords of 256 bytes or more and writes
 * a savedate past 2^32 in full, where the peer writes 32 bits.
 */
static int
get_record_cb(const struct store_record *r, void *arg)
{
	struct dlist *list = arg, *kl, *flags, *annots = NULL;
	const char *k, *e;
	char word[1024];

	kl = dlist_newkvlist(list, NULL);
	dlist_setnum32(kl, "UID", r->uid);
	dlist_setnum64(kl, "MODSEQ", r->modseq);
	dlist_setdate(kl, "LAST_UPDATED", r->last_updated);
	flags = dlist_newlist(kl, "FLAGS");
	if (r->sysflags & SF_DELETED)
		dlist_setflag(flags, NULL, "\\Deleted");
	if (r->sysflags & SF_ANSWERED)
		dlist_setflag(flags, NULL, "\\Answered");
	if (r->sysflags & SF_FLAGGED)
		dlist_setflag(flags, NULL, "\\Flagged");
	if (r->sysflags & SF_DRAFT)
		dlist_setflag(flags, NULL, "\\Draft");
	if (r->sysflags & SF_EXPUNGED)
		dlist_setflag(flags, NULL, "\\Expunged");
	if (r->sysflags & SF_SEEN)
		dlist_setflag(flags, NULL, "\\Seen");
	for (k = r->keywords; k != NULL && *k != '\0'; k = e) {
		while (*k == ' ')
			k++;
		for (e = k; *e != '\0' && *e != ' '; e++)
			;
		if (e == k)
			continue;
		if ((size_t)(e - k) >= sizeof(word))
			continue;	/* apply never stores one this long */
		memcpy(word, k, e - k);
		word[e - k] = '\0';
		dlist_setflag(flags, NULL, word);
	}
	dlist_setdate(kl, "INTERNALDATE", r->internaldate);
	dlist_setnum32(kl, "SIZE", r->size);
	dlist_setguid(kl, "GUID", r->guid);
	mbdl_annots(kl, "ANNOTATIONS", r->annots, r->nannots);
	annots = dlist_child(kl, "ANNOTATIONS");
	if (r->cid != 0)
		get_virtannot(&annots, kl, VANNOT_THRID, get_set_hex64, r->cid);
	if (r->savedate != 0)
		get_virtannot(&annots, kl, VANNOT_SAVEDATE, get_set_num32,
		    (uint64_t)r->savedate);
	if (r->createdmodseq != 0)
		get_virtannot(&annots, kl, VANNOT_CREATEDMODSEQ, get_set_num64,
		    r->createdmodseq);
	return 0;
}

static int
get_is_entry_only(const struct store_mailbox *mb)
{
	return mb->mbtype != NULL && (strchr(mb->mbtype, 'i') != NULL ||
	    strchr(mb->mbtype, 'd') != NULL);
}

static int
get_is_tombstone(const struct store_mailbox *mb)
{
	return mb->mbtype != NULL && strchr(mb->mbtype, 'd') != NULL;
}

static int
get_is_sieve(const struct store_mailbox *mb)
{
	return mb->mbtype != NULL && mb->mbtype[0] == 'f';
}

/*
 * The MAILBOX kvlist of one mailbox, keys in the peer's order.  With
 * records, every index record is added as RECORD (GET FULLMAILBOX).
 * *rootp gets the mailbox's quota root ("" if none).  NULL on a store
 * error.
 */
static struct dlist *
get_mailbox_dlist(struct sv *sv, const struct store_mailbox *mb,
    int records, char *root, size_t rootsize)
{
	struct store_mailbox wire;
	struct dlist *kl, *list;
	struct store_annot *a = NULL;
	size_t na = 0;
	int r;

	root[0] = '\0';
	if (get_is_entry_only(mb)) {
		/* Placeholders carry zeros where a real mailbox has state. */
		kl = dlist_newkvlist(NULL, "MAILBOX");
		dlist_setatom(kl, "UNIQUEID", mb->uniqueid);
		dlist_setatom(kl, "MBOXNAME", mb->name);
		dlist_setatom(kl, "MBOXTYPE", mb->mbtype);
		dlist_setnum32(kl, "SYNC_CRC", 0);
		dlist_setnum32(kl, "LAST_UID", 0);
		dlist_setnum64(kl, "HIGHESTMODSEQ", 0);
		dlist_setnum32(kl, "RECENTUID", 0);
		dlist_setdate(kl, "RECENTTIME", 0);
		dlist_setdate(kl, "LAST_APPENDDATE", 0);
		dlist_setdate(kl, "POP3_LAST_LOGIN", 0);
		dlist_setdate(kl, "POP3_SHOW_AFTER", 0);
		dlist_setnum32(kl, "UIDVALIDITY", mb->uidvalidity);
		if (mb->partition != NULL)
			dlist_setatom(kl, "PARTITION", mb->partition);
		else
			dlist_setnil(kl, "PARTITION");
		if (mb->acl != NULL)
			dlist_setatom(kl, "ACL", mb->acl);
		else
			dlist_setnil(kl, "ACL");
		dlist_setatom(kl, "OPTIONS", "");
		dlist_setnum64(kl, "CREATEDMODSEQ", mb->createdmodseq);
		dlist_setnum64(kl, "FOLDERMODSEQ", mb->foldermodseq);
		return kl;
	}
	/* A real mailbox: the peer's layout with an ACL atom even when
	 * there is none, the quota root it computes (none for DELETED.*)
	 * and no type for plain email. */
	if (!mboxname_isdeleted(mb->name)) {
		r = sv_quotaroot(sv->store, mb->name, root, rootsize);
		if (r == -1)
			return NULL;
		if (r == 0)
			root[0] = '\0';
	}
	if (store_mbannot_list(sv->store, mb->id, &a, &na) == -1)
		return NULL;
	wire = *mb;
	if (wire.mbtype != NULL && strcmp(wire.mbtype, "e") == 0)
		wire.mbtype = NULL;
	if (wire.acl == NULL)
		wire.acl = "";
	wire.quotaroot = root;
	kl = mbdl_mailbox(NULL, "MAILBOX", &wire, a, na);
	store_annots_free(a, na);
	if (records) {
		list = dlist_newlist(kl, "RECORD");
		if (store_record_foreach(sv->store, mb->id, 0, get_record_cb,
		    list) == -1)
			goto fail;
	}
	return kl;
fail:
	dlist_free(kl);
	return NULL;
}

static int
get_collect_cb(const struct store_mailbox *mb, void *arg)
{
	return get_names_add(arg, mb->name) == -1 ? -1 : 0;
}

static int
get_emit_quota(struct sv *sv, const struct store_quota *q)
{
	static const char *const keys[QUOTA_NUMRESOURCES] = {
		"STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS"
	};
	struct dlist *kl;
	uint32_t v[QUOTA_NUMRESOURCES];
	int i;

	for (i = 0; i < QUOTA_NUMRESOURCES; i++) {
		if (q->limits[i] < 0)
			v[i] = QUOTA_WIRE_UNLIMITED;
		else if (q->limits[i] >= (int64_t)QUOTA_WIRE_UNLIMITED)
			v[i] = QUOTA_WIRE_UNLIMITED - 1;  /* only 32 bits */
		else
			v[i] = (uint32_t)q->limits[i];
	}
	kl = dlist_newkvlist(NULL, "QUOTA");
	dlist_setatom(kl, "ROOT", q->root);
	dlist_setnum32(kl, "LIMIT", v[QUOTA_STORAGE]);
	for (i = 0; i < QUOTA_NUMRESOURCES; i++)
		if (q->limits[i] >= 0)
			dlist_setnum32(kl, keys[i], v[i]);
	dlist_setnum64(kl, "MODSEQ", q->modseq);
	return get_emit(sv, kl);
}

static int
get_seen_cb(const struct store_seen *s, void *arg)
{
	struct sv *sv = arg;
	struct dlist *kl;

	kl = dlist_newkvlist(NULL, "SEEN");
	dlist_setatom(kl, "UNIQUEID", s->uniqueid);
	dlist_setdate(kl, "LASTREAD", s->lastread);
	dlist_setnum32(kl, "LASTUID", s->lastuid);
	dlist_setdate(kl, "LASTCHANGE", s->lastchange);
	dlist_setatom(kl, "SEENUIDS", s->seenuids ? s->seenuids : "");
	return get_emit(sv, kl) == -1 ? -1 : 0;
}

static int
get_sub_cb(const char *name, void *arg)
{
	dlist_setatom(arg, NULL, name);
	return 0;
}

struct get_sieve_ctx {
	struct sv	*sv;
	char		 active[256];
	int		 failed;
};

static int
get_sieve_cb(const struct store_sieve *s, void *arg)
{
	struct get_sieve_ctx *ctx = arg;
	struct dlist *kl;
	char fname[300];

	snprintf(fname, sizeof(fname), "%s.script", s->name);
	kl = dlist_newkvlist(NULL, "SIEVE");
	dlist_setatom(kl, "FILENAME", fname);
	dlist_setdate(kl, "LAST_UPDATE", s->last_update);
	dlist_setguid(kl, "GUID", s->guid);
	dlist_setnum32(kl, "ISACTIVE", 0);
	if (s->active)
		strlcpy(ctx->active, s->name, sizeof(ctx->active));
	if (get_emit(ctx->sv, kl) == -1) {
		ctx->failed = 1;
		return -1;
	}
	return 0;
}

/* SEEN, LSUB and (legacy sieve mode only) SIEVE lines of a user. */
static enum sv_result
get_meta(struct sv *sv, const char *userid)
{
	struct get_sieve_ctx ctx;
	struct dlist *lsub;
	char fname[300];
	int r;

	if (store_seen_foreach(sv->store, userid, get_seen_cb, sv) == -1)
		return get_store_failed(sv, "seen");
	lsub = dlist_newlist(NULL, "LSUB");
	if (store_sub_foreach(sv->store, userid, get_sub_cb, lsub) == -1) {
		dlist_free(lsub);
		return get_store_failed(sv, "subscriptions");
	}
	if (lsub->nchild > 0) {
		if (get_emit(sv, lsub) == -1)
			return SV_UNKNOWN;
	} else
		dlist_free(lsub);
	if (sv->sieve_mailbox)
		return SV_OK;
	memset(&ctx, 0, sizeof(ctx));
	ctx.sv = sv;
	r = store_sieve_foreach(sv->store, userid, get_sieve_cb, &ctx);
	if (ctx.failed)
		return SV_UNKNOWN;
	if (r == -1)
		return get_store_failed(sv, "sieve");
	if (ctx.active[0] != '\0') {
		/* The active script shows as its bytecode entry. */
		struct dlist *kl = dlist_newkvlist(NULL, "SIEVE");

		snprintf(fname, sizeof(fname), "%s.bc", ctx.active);
		dlist_setatom(kl, "FILENAME", fname);
		dlist_setdate(kl, "LAST_UPDATE", 0);
		dlist_setguid(kl, "GUID", NULL_GUID);
		dlist_setnum32(kl, "ISACTIVE", 1);
		if (get_emit(sv, kl) == -1)
			return SV_UNKNOWN;
	}
	return SV_OK;
}

/* A userid argument: a plain string the name rules accept. */
static const char *
get_userid_arg(const struct dlist *arg)
{
	const char *u;

	if (arg->kind != DL_STRING || memchr(arg->s, '\0', arg->len) != NULL)
		return NULL;
	u = arg->s;
	return userid_valid(u) ? u : NULL;
}

static enum sv_result
get_user(struct sv *sv, const struct dlist *arg)
{
	struct get_names names = { 0 }, roots = { 0 };
	struct store_mailbox mb;
	struct store_quota q;
	struct dlist *kl;
	const char *userid;
	char root[MAX_MAILBOX_NAME + 1];
	enum sv_result res = SV_OK;
	int real = 0, r;
	size_t i;

	if ((userid = get_userid_arg(arg)) == NULL)
		return SV_BAD_PARAMETERS;
	/* The store lists the user's tree, then DELETED.*, as the peer. */
	if (store_mailbox_foreach_user(sv->store, userid, get_collect_cb,
	    &names) != 0) {
		res = get_store_failed(sv, "USER");
		goto out;
	}
	for (i = 0; i < names.n; i++) {
		memset(&mb, 0, sizeof(mb));
		r = store_mailbox_get(sv->store, names.v[i], &mb);
		if (r == STORE_NOTFOUND)
			continue;	/* went away meanwhile */
		if (r == -1) {
			res = get_store_failed(sv, "USER");
			goto out;
		}
		if (get_is_tombstone(&mb) ||
		    (get_is_sieve(&mb) && !sv->sieve_mailbox)) {
			store_mailbox_clear(&mb);
			continue;
		}
		if (!get_is_entry_only(&mb))
			real = 1;
		kl = get_mailbox_dlist(sv, &mb, 0, root, sizeof(root));
		store_mailbox_clear(&mb);
		if (kl == NULL) {
			res = get_store_failed(sv, "USER");
			goto out;
		}
		if (get_emit(sv, kl) == -1) {
			res = SV_UNKNOWN;
			goto out;
		}
		if (root[0] != '\0' && get_names_add(&roots, root) == -1) {
			res = SV_UNKNOWN;
			goto out;
		}
	}
	for (i = 0; i < roots.n; i++) {
		memset(&q, 0, sizeof(q));
		r = store_quota_get(sv->store, roots.v[i], &q);
		if (r == STORE_NOTFOUND)
			continue;
		if (r == -1) {
			res = get_store_failed(sv, "USER quota");
			goto out;
		}
		r = get_emit_quota(sv, &q);
		store_quota_clear(&q);
		if (r == -1) {
			res = SV_UNKNOWN;
			goto out;
		}
	}
	if (real)
		res = get_meta(sv, userid);
out:
	get_names_free(&names);
	get_names_free(&roots);
	return res;
}

/* Emit one mailbox found by name or uniqueid; absent ones are skipped. */
static enum sv_result
get_one_mailbox(struct sv *sv, struct store_mailbox *mb, int r)
{
	struct dlist *kl;
	char root[MAX_MAILBOX_NAME + 1];

	if (r == STORE_NOTFOUND)
		return SV_OK;
	if (r == -1)
		return get_store_failed(sv, "MAILBOXES");
	if (get_is_tombstone(mb)) {
		store_mailbox_clear(mb);
		return SV_OK;
	}
	kl = get_mailbox_dlist(sv, mb, 0, root, sizeof(root));
	store_mailbox_clear(mb);
	if (kl == NULL)
		return get_store_failed(sv, "MAILBOXES");
	return get_emit(sv, kl) == -1 ? SV_UNKNOWN : SV_OK;
}

static enum sv_result
get_mailboxes(struct sv *sv, const struct dlist *arg, int byuniqueid)
{
	struct store_mailbox mb;
	const struct dlist *it;
	enum sv_result res;
	int r;

	if (arg->kind != DL_LIST)
		return SV_BAD_PARAMETERS;
	for (it = arg->head; it != NULL; it = it->next) {
		if (it->kind != DL_STRING || memchr(it->s, '\0', it->len))
			continue;
		memset(&mb, 0, sizeof(mb));
		if (byuniqueid)
			r = store_mailbox_get_uniqueid(sv->store, it->s, &mb);
		else {
			if (!mboxname_valid(it->s))
				continue;
			r = store_mailbox_get(sv->store, it->s, &mb);
		}
		if ((res = get_one_mailbox(sv, &mb, r)) != SV_OK)
			return res;
	}
	return SV_OK;
}

static enum sv_result
get_fullmailbox(struct sv *sv, const struct dlist *arg)
{
	struct store_mailbox mb;
	struct dlist *kl;
	char root[MAX_MAILBOX_NAME + 1];
	int r;

	if (arg->kind != DL_STRING || !mboxname_valid(arg->s))
		return SV_MAILBOX_NONEXISTENT;
	memset(&mb, 0, sizeof(mb));
	r = store_mailbox_get(sv->store, arg->s, &mb);
	if (r == STORE_NOTFOUND)
		return SV_MAILBOX_NONEXISTENT;
	if (r == -1)
		return get_store_failed(sv, "FULLMAILBOX");
	if (get_is_entry_only(&mb)) {
		store_mailbox_clear(&mb);
		return SV_MAILBOX_NONEXISTENT;
	}
	kl = get_mailbox_dlist(sv, &mb, 1, root, sizeof(root));
	store_mailbox_clear(&mb);
	if (kl == NULL)
		return get_store_failed(sv, "FULLMAILBOX");
	return get_emit(sv, kl) == -1 ? SV_UNKNOWN : SV_OK;
}

static enum sv_result
get_quota(struct sv *sv, const struct dlist *arg)
{
	struct store_quota q;
	int r;

	if (arg->kind != DL_STRING || !mboxname_valid(arg->s))
		return SV_OK;
	memset(&q, 0, sizeof(q));
	r = store_quota_get(sv->store, arg->s, &q);
	if (r == STORE_NOTFOUND)
		return SV_OK;
	if (r == -1)
		return get_store_failed(sv, "QUOTA");
	r = get_emit_quota(sv, &q);
	store_quota_clear(&q);
	return r == -1 ? SV_UNKNOWN : SV_OK;
}

static enum sv_result
get_annotation(struct sv *sv, const struct dlist *arg)
{
	struct store_mailbox mb;
	struct store_annot *a = NULL;
	struct dlist *kl;
	size_t na = 0, i;
	int64_t mbid = 0;
	int r;

	if (arg->kind != DL_STRING && arg->kind != DL_NIL)
		return SV_BAD_PARAMETERS;
	if (arg->kind == DL_STRING && arg->len > 0) {
		if (!mboxname_valid(arg->s))
			return SV_OK;
		memset(&mb, 0, sizeof(mb));
		r = store_mailbox_get(sv->store, arg->s, &mb);
		if (r == STORE_NOTFOUND)
			return SV_OK;
		if (r == -1)
			return get_store_failed(sv, "ANNOTATION");
		mbid = mb.id;
		store_mailbox_clear(&mb);
	}
	if (store_mbannot_list(sv->store, mbid, &a, &na) == -1)
		return get_store_failed(sv, "ANNOTATION");
	for (i = 0; i < na; i++) {
		kl = dlist_newkvlist(NULL, "ANNOTATION");
		dlist_setatom(kl, "MBOXNAME", mbid ? arg->s : "");
		dlist_setatom(kl, "ENTRY", a[i].entry);
		dlist_setatom(kl, "USERID", a[i].userid ? a[i].userid : "");
		dlist_setmap(kl, "VALUE", a[i].value ? a[i].value : "",
		    a[i].value ? a[i].valuelen : 0);
		if (get_emit(sv, kl) == -1) {
			store_annots_free(a, na);
			return SV_UNKNOWN;
		}
	}
	store_annots_free(a, na);
	return SV_OK;
}

static enum sv_result
get_fetch(struct sv *sv, const struct dlist *arg)
{
	const char *name, *part, *uniqueid;
	char guid[41], path[4096];
	struct dlist *dl;
	struct stat stb;
	uint32_t uid;
	int r;

	if (arg->kind != DL_KVLIST ||
	    dlist_getatom(arg, "MBOXNAME", &name) == -1 ||
	    dlist_getatom(arg, "PARTITION", &part) == -1 ||
	    dlist_getatom(arg, "UNIQUEID", &uniqueid) == -1 ||
	    dlist_getguid(arg, "GUID", guid) == -1 ||
	    dlist_getnum32(arg, "UID", &uid) == -1)
		return SV_BAD_PARAMETERS;
	/*
	 * Bodies are stored once per partition by GUID, so the GUID and
	 * the partition locate the file whatever mailbox holds it.
	 */
	if (!partition_name_valid(part))
		return SV_MAILBOX_NONEXISTENT;
	r = store_body_exists(sv->store, part, guid);
	if (r != 1 || store_body_path(sv->store, part, guid, path,
	    sizeof(path)) == -1 || stat(path, &stb) == -1 ||
	    !S_ISREG(stb.st_mode) || (uint64_t)stb.st_size > DLIST_MAX_FILE)
		return SV_MAILBOX_NONEXISTENT;
	dl = dlist_setfile(NULL, "MESSAGE", part, guid,
	    (uint64_t)stb.st_size, path);
	return get_emit(sv, dl) == -1 ? SV_UNKNOWN : SV_OK;
}

static enum sv_result
get_fetch_sieve(struct sv *sv, const struct dlist *arg)
{
	const char *userid, *fname;
	char name[256];
	char *content = NULL;
	size_t len = 0, fl;
	struct dlist *kl;
	int r;

	if (arg->kind != DL_KVLIST ||
	    dlist_getatom(arg, "USERID", &userid) == -1 ||
	    dlist_getatom(arg, "FILENAME", &fname) == -1)
		return SV_BAD_PARAMETERS;
	if (!userid_valid(userid))
		return SV_BAD_PARAMETERS;
	fl = strlen(fname);
	if (fl > 7 && strcmp(fname + fl - 7, ".script") == 0)
		fl -= 7;
	if (fl == 0 || fl >= sizeof(name))
		return SV_MAILBOX_NONEXISTENT;
	memcpy(name, fname, fl);
	name[fl] = '\0';
	if (!sievename_valid(name))
		return SV_MAILBOX_NONEXISTENT;
	r = store_sieve_get(sv->store, userid, name, &content, &len);
	if (r == STORE_NOTFOUND)
		return SV_MAILBOX_NONEXISTENT;
	if (r == -1)
		return get_store_failed(sv, "FETCH_SIEVE");
	kl = dlist_newkvlist(NULL, "SIEVE");
	dlist_setatom(kl, "USERID", userid);
	dlist_setatom(kl, "FILENAME", fname);
	dlist_setmap(kl, "CONTENT", content, len);
	free(content);
	return get_emit(sv, kl) == -1 ? SV_UNKNOWN : SV_OK;
}

/*
 * GET <sub-command> <value>: answer from the store.  Data lines are
 * written to sv->p; the result becomes the status line.  Never changes
 * the store.
 */
enum sv_result
sv_get(struct sv *sv, struct dlist *arg)
{
	const char *cmd = arg->key != NULL ? arg->key : "";
	const char *userid;

	if (strcmp(cmd, "USER") == 0)
		return get_user(sv, arg);
	if (strcmp(cmd, "META") == 0) {
		if ((userid = get_userid_arg(arg)) == NULL)
			return SV_BAD_PARAMETERS;
		return get_meta(sv, userid);
	}
	if (strcmp(cmd, "MAILBOXES") == 0)
		return get_mailboxes(sv, arg, 0);
	if (strcmp(cmd, "UNIQUEIDS") == 0)
		return get_mailboxes(sv, arg, 1);
	if (strcmp(cmd, "FULLMAILBOX") == 0)
		return get_fullmailbox(sv, arg);
	if (strcmp(cmd, "QUOTA") == 0)
		return get_quota(sv, arg);
	if (strcmp(cmd, "ANNOTATION") == 0)
		return get_annotation(sv, arg);
	if (strcmp(cmd, "FETCH") == 0)
		return get_fetch(sv, arg);
	if (strcmp(cmd, "FETCH_SIEVE") == 0)
		return get_fetch_sieve(sv, arg);
	return SV_PROTOCOL_ERROR;
}
