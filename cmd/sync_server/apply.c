/*
 * APPLY and RESTORE: changing the replica (protocol doc 3.3 and 3.4).
 *
 * Every command that changes the store runs in one store transaction:
 * a refused command changes nothing, and a crash leaves the old or the
 * new state, never a mix.  Everything from the wire is checked before it
 * is used; names that the name rules refuse are never looked up.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>


#include "conf.h"
#include "dlist.h"
#include "mbdl.h"
#include "names.h"
#include "prot.h"
#include "server.h"
#include "store.h"

#define VANNOT_THRID		"/vendor/cmu/cyrus-imapd/thrid"
#define VANNOT_SAVEDATE		"/vendor/cmu/cyrus-imapd/savedate"
#define VANNOT_CREATEDMODSEQ	"/vendor/cmu/cyrus-imapd/createdmodseq"

#define QUOTA_WIRE_UNLIMITED	4294967295u
#define MAX_USER_FLAGS		128	/* keywords on one record */
#define MAX_KEYWORD		256
#define MAX_ENTRY		1024	/* annotation entry name */
#define MAX_UNIQUEID		128
#define MAX_SEQSET		(1u << 20)

/* What the real pass does with one RECORD item. */
enum apply_action { ACT_SKIP, ACT_UPDATE, ACT_APPEND };

struct apply_rec {
	struct store_record	 r;
	enum apply_action	 act;
};

static enum sv_result
apply_store_failed(struct sv *sv, const char *what)
{
	sv_log(LOG_ERR, "APPLY %s: %s", what, store_error(sv->store));
	return SV_UNKNOWN;
}

/* Optional keys: absent leaves *v alone; present must convert. */
static int
apply_opt_num64(const struct dlist *kl, const char *key, uint64_t *v)
{
	if (dlist_child(kl, key) == NULL)
		return 0;
	return dlist_getnum64(kl, key, v);
}

static int
apply_opt_num32(const struct dlist *kl, const char *key, uint32_t *v)
{
	if (dlist_child(kl, key) == NULL)
		return 0;
	return dlist_getnum32(kl, key, v);
}

static int
apply_opt_date(const struct dlist *kl, const char *key, int64_t *v)
{
	if (dlist_child(kl, key) == NULL)
		return 0;
	return dlist_getdate(kl, key, v);
}

/* Printable 7-bit ASCII without SP, at most max bytes, not empty. */
static int
apply_token_valid(const char *s, size_t max)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
			return 0;
	return n > 0 && n <= max;
}

static int
apply_uniqueid_valid(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '-' && s[n] != '_')
			return 0;
	return n > 0 && n <= MAX_UNIQUEID;
}

/* A USERID of an annotation: "" (shared) or a userid. */
static int
apply_annot_userid_valid(const char *s)
{
	return s[0] == '\0' || userid_valid(s);
}

/*
 * The canonical type string: base letter then flag letters in a fixed
 * order, without the legacy-directories flag; "" for plain email.  An
 * unknown letter is refused here rather than stored.
 */
static int
apply_mbtype(const char *in, char *out, size_t size)
{
	static const char bases[] = "enbcaspf", flagset[] = "dmrzi";
	char base = 'e';
	int flags[sizeof(flagset)] = { 0 }, any = 0;
	const char *p;
	size_t i, n = 0;

	if (strlen(in) > 16)
		return -1;
	for (i = 0; in[i] != '\0'; i++) {
		if (i == 0 && strchr(bases, in[i]) != NULL) {
			base = in[i];
			continue;
		}
		if (in[i] == 'l')
			continue;
		if ((p = strchr(flagset, in[i])) == NULL)
			return -1;
		flags[p - flagset] = 1;
		any = 1;
	}
	if (size < sizeof(flagset) + 2)
		return -1;
	if (base == 'e' && !any) {
		out[0] = '\0';
		return 0;
	}
	out[n++] = base;
	for (i = 0; i < sizeof(flagset) - 1; i++)
		if (flags[i])
			out[n++] = flagset[i];
	out[n] = '\0';
	return 0;
}

static int
apply_mbtype_eq(const char *a, const char *b)
{
	if (a == NULL || strcmp(a, "e") == 0)
		a = "";
	if (b == NULL || strcmp(b, "e") == 0)
		b = "";
	return strcmp(a, b) == 0;
}

static int
apply_entry_only(const char *mbtype)
{
	return mbtype != NULL && (strchr(mbtype, 'i') != NULL ||
	    strchr(mbtype, 'd') != NULL);
}

/* Only the syncable option letters, in their wire order. */
static void
apply_options(const char *in, char out[5])
{
	static const char order[] = "PSDA";
	size_t i, n = 0;

	for (i = 0; i < sizeof(order) - 1; i++)
		if (strchr(in, order[i]) != NULL)
			out[n++] = order[i];
	out[n] = '\0';
}

static int
apply_annot_cmp(const void *va, const void *vb)
{
	const struct store_annot *a = va, *b = vb;
	int c;

	if ((c = strcmp(a->entry, b->entry)) != 0)
		return c;
	return strcmp(a->userid, b->userid);
}

/*
 * Decode an ANNOTATIONS list.  Every item needs all four keys.  With rec,
 * the three virtual entries fill the record's fields instead of becoming
 * annotations.  Empty values mean "deleted" and are dropped; a repeated
 * (entry, userid) keeps the last value.  The result is sorted.
 */
static int
apply_parse_annots(const struct dlist *list, struct store_annot **out,
    size_t *nout, struct store_record *rec)
{
	struct store_annot *a = NULL, *na;
	const struct dlist *it;
	const char *entry, *userid, *value;
	size_t n = 0, vlen, i;
	uint64_t modseq, v;

	*out = NULL;
	*nout = 0;
	if (list == NULL)
		return 0;
	if (list->kind != DL_LIST)
		return -1;
	for (it = list->head; it != NULL; it = it->next) {
		if (it->kind != DL_KVLIST ||
		    dlist_getatom(it, "ENTRY", &entry) == -1 ||
		    dlist_getatom(it, "USERID", &userid) == -1 ||
		    dlist_getnum64(it, "MODSEQ", &modseq) == -1 ||
		    dlist_getmap(it, "VALUE", &value, &vlen) == -1)
			goto bad;
		if (!apply_token_valid(entry, MAX_ENTRY) ||
		    !apply_annot_userid_valid(userid))
			goto bad;
		if (rec != NULL && strcmp(entry, VANNOT_THRID) == 0) {
			if (dlist_gethex64(it, "VALUE", &rec->cid) == -1)
				goto bad;
			continue;
		}
		if (rec != NULL && strcmp(entry, VANNOT_SAVEDATE) == 0) {
			if (dlist_getnum64(it, "VALUE", &v) == -1)
				goto bad;
			rec->savedate = (int64_t)v;
			continue;
		}
		if (rec != NULL && strcmp(entry, VANNOT_CREATEDMODSEQ) == 0) {
			if (dlist_getnum64(it, "VALUE",
			    &rec->createdmodseq) == -1)
				goto bad;
			continue;
		}
		for (i = 0; i < n; i++)
			if (strcmp(a[i].entry, entry) == 0 &&
			    strcmp(a[i].userid, userid) == 0)
				break;
		if (i < n) {
			/* A repeat replaces the earlier value. */
			free(a[i].value);
			a[i].value = NULL;
		} else {
			if ((na = reallocarray(a, n + 1, sizeof(*a))) == NULL)
				goto bad;
			a = na;
			memset(&a[n], 0, sizeof(a[n]));
			if ((a[n].entry = strdup(entry)) == NULL ||
			    (a[n].userid = strdup(userid)) == NULL) {
				n++;
				goto bad;
			}
			n++;
		}
		if ((a[i].value = malloc(vlen + 1)) == NULL)
			goto bad;
		memcpy(a[i].value, value, vlen);
		a[i].value[vlen] = '\0';
		a[i].valuelen = vlen;
		a[i].modseq = modseq;
	}
	/* Drop deleted (empty) values. */
	for (i = 0; i < n; ) {
		if (a[i].valuelen == 0) {
			free(a[i].entry);
			free(a[i].userid);
			free(a[i].value);
			memmove(&a[i], &a[i + 1], (n - i - 1) * sizeof(*a));
			n--;
		} else
			i++;
	}
	if (n > 1)
		qsort(a, n, sizeof(*a), apply_annot_cmp);
	*out = a;
	*nout = n;
	return 0;
bad:
	store_annots_free(a, n);
	return -1;
}

/* A keyword must survive being written back raw as an IMAP atom. */
static int
apply_keyword_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > MAX_KEYWORD || strcasecmp(s, "NIL") == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return 0;
	}
	return 1;
}

/*
 * FLAGS through the codec, then what the store needs on top: no NUL in
 * any flag, keywords that survive being written back raw as atoms, one
 * spelling per keyword (matched case-insensitively, the first stays) and
 * at most MAX_USER_FLAGS of them.
 */
static int
apply_parse_flags(const struct dlist *list, struct store_record *r)
{
	const struct dlist *it;
	char err[128], word[MAX_KEYWORD + 1], *kw, *p, *o, *q;
	size_t len, n = 0, ql;
	int dup;

	if (list == NULL || list->kind != DL_LIST)
		return -1;
	for (it = list->head; it != NULL; it = it->next)
		if (memchr(it->s, '\0', it->len) != NULL)
			return -1;
	if (mbdl_parse_flags(list, &r->sysflags, &kw, err, sizeof(err)) == -1)
		return -1;
	for (p = o = kw; p != NULL && *p != '\0'; p += len + (p[len] == ' ')) {
		len = strcspn(p, " ");
		if (len >= sizeof(word))
			goto bad;
		memcpy(word, p, len);
		word[len] = '\0';
		if (!apply_keyword_valid(word, len))
			goto bad;
		for (dup = 0, q = kw; q < o && !dup; q += ql + 1) {
			ql = strcspn(q, " ");
			dup = ql == len && strncasecmp(q, word, len) == 0;
		}
		if (dup)
			continue;
		if (++n > MAX_USER_FLAGS)
			goto bad;
		if (o > kw)
			*o++ = ' ';
		memmove(o, word, len);
		o += len;
	}
	if (o != NULL)
		*o = '\0';
	r->keywords = kw;
	return 0;
bad:
	free(kw);
	return -1;
}

/* One RECORD item; -1 for anything malformed. */
static int
apply_parse_record(const struct dlist *kl, struct store_record *r)
{
	uint64_t v;

	memset(r, 0, sizeof(*r));
	if (kl->kind != DL_KVLIST ||
	    dlist_getnum32(kl, "UID", &r->uid) == -1 ||
	    dlist_getnum64(kl, "MODSEQ", &r->modseq) == -1 ||
	    dlist_getdate(kl, "LAST_UPDATED", &r->last_updated) == -1 ||
	    dlist_getdate(kl, "INTERNALDATE", &r->internaldate) == -1 ||
	    dlist_getnum64(kl, "SIZE", &v) == -1 ||
	    dlist_getguid(kl, "GUID", r->guid) == -1)
		return -1;
	r->size = (uint32_t)v;
	if (r->uid == 0)
		return -1;
	if (apply_parse_flags(dlist_child(kl, "FLAGS"), r) == -1)
		return -1;
	if (apply_parse_annots(dlist_child(kl, "ANNOTATIONS"), &r->annots,
	    &r->nannots, r) == -1) {
		store_record_clear(r);
		return -1;
	}
	return 0;
}

static void
apply_recs_free(struct apply_rec *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		store_record_clear(&v[i].r);
	free(v);
}

/* Parse every RECORD item, requiring strictly ascending UIDs. */
static int
apply_parse_records(const struct dlist *list, struct apply_rec **out,
    size_t *nout)
{
	struct apply_rec *v = NULL;
	const struct dlist *it;
	size_t n = 0;

	*out = NULL;
	*nout = 0;
	if (list == NULL || list->kind != DL_LIST)
		return -1;
	if (list->nchild > 0 &&
	    (v = reallocarray(NULL, list->nchild, sizeof(*v))) == NULL)
		return -1;
	for (it = list->head; it != NULL; it = it->next) {
		if (n >= list->nchild)
			goto bad;
		if (apply_parse_record(it, &v[n].r) == -1)
			goto bad;
		v[n].act = ACT_SKIP;
		n++;
		if (n > 1 && v[n - 1].r.uid <= v[n - 2].r.uid)
			goto bad;
	}
	*out = v;
	*nout = n;
	return 0;
bad:
	apply_recs_free(v, n);
	return -1;
}

static char *
apply_user_of(const char *mboxname)
{
	char *u = mboxname_to_userid(mboxname);

	return u != NULL ? u : strdup("");
}

static int
apply_bump_modseq(struct sv *sv, const char *mboxname, uint64_t modseq)
{
	char *u = apply_user_of(mboxname);
	int r;

	if (u == NULL)
		return -1;
	r = store_bump_modseq(sv->store, u, modseq);
	free(u);
	return r;
}

/*
 * Write mb with its quota root recomputed from the roots that exist now
 * (delayed-delete copies have none).  mb's strings stay the caller's.
 */
static int
apply_mailbox_write(struct sv *sv, const struct store_mailbox *mb)
{
	struct store_mailbox upd = *mb;
	char root[MAX_MAILBOX_NAME + 1];
	int r = 0;

	if (!mboxname_isdeleted(mb->name))
		r = sv_quotaroot(sv->store, mb->name, root, sizeof(root));
	if (r == -1)
		return -1;
	upd.quotaroot = r == 1 ? root : NULL;
	return store_mailbox_update(sv->store, &upd);
}

static int
apply_mailbox_create(struct sv *sv, struct store_mailbox *mb)
{
	char root[MAX_MAILBOX_NAME + 1];
	char *saved = mb->quotaroot;
	int r = 0;

	if (!mboxname_isdeleted(mb->name))
		r = sv_quotaroot(sv->store, mb->name, root, sizeof(root));
	if (r == -1)
		return -1;
	mb->quotaroot = r == 1 ? root : NULL;
	r = store_mailbox_create(sv->store, mb);
	mb->quotaroot = saved;
	return r;
}

/*
 * Intermediate and tombstone entries: only the mailbox-list entry
 * (name, type, uniqueid, modseqs) is kept.  A real mailbox of that name
 * is replaced only where a real one would be (empty, or force mode).
 */
static enum sv_result
apply_mailbox_entry(struct sv *sv, const struct dlist *kl, const char *name,
    const char *uniqueid, const char *mbtype, uint64_t hms)
{
	struct store_mailbox mb, other, nw;
	const char *part = NULL, *acl = NULL;
	uint64_t createdmodseq = 0;
	uint32_t uidvalidity = 0;
	int r, exists;

	if (apply_opt_num64(kl, "CREATEDMODSEQ", &createdmodseq) == -1 ||
	    apply_opt_num32(kl, "UIDVALIDITY", &uidvalidity) == -1)
		return SV_BAD_PARAMETERS;
	if (dlist_child(kl, "PARTITION") != NULL &&
	    dlist_child(kl, "PARTITION")->kind == DL_STRING) {
		if (dlist_getatom(kl, "PARTITION", &part) == -1 ||
		    !partition_name_valid(part))
			return SV_BAD_PARAMETERS;
	}
	if (dlist_child(kl, "ACL") != NULL &&
	    dlist_child(kl, "ACL")->kind == DL_STRING &&
	    dlist_getatom(kl, "ACL", &acl) == -1)
		return SV_BAD_PARAMETERS;

	memset(&mb, 0, sizeof(mb));
	if ((r = store_mailbox_get(sv->store, name, &mb)) == -1)
		return apply_store_failed(sv, "MAILBOX");
	exists = r == 0;
	if (exists && !apply_entry_only(mb.mbtype)) {
		if (mb.last_uid != 0 && !sv->force) {
			store_mailbox_clear(&mb);
			return SV_MAILBOX_MOVED;
		}
		if (store_mailbox_delete(sv->store, mb.id, 0) == -1) {
			store_mailbox_clear(&mb);
			return apply_store_failed(sv, "MAILBOX");
		}
		store_mailbox_clear(&mb);
		exists = 0;
	}
	memset(&other, 0, sizeof(other));
	r = store_mailbox_get_uniqueid(sv->store, uniqueid, &other);
	if (r == -1) {
		if (exists)
			store_mailbox_clear(&mb);
		return apply_store_failed(sv, "MAILBOX");
	}
	if (r == 0) {
		int clash = !exists || other.id != mb.id;

		store_mailbox_clear(&other);
		if (clash) {
			if (exists)
				store_mailbox_clear(&mb);
			return SV_MAILBOX_MOVED;
		}
	}
	if (exists) {
		nw = mb;
		nw.uniqueid = (char *)uniqueid;
		nw.mbtype = (char *)mbtype;
		nw.foldermodseq = hms;
		nw.createdmodseq = createdmodseq;
		if (part != NULL)
			nw.partition = (char *)part;
		if (acl != NULL)
			nw.acl = (char *)acl;
		if (uidvalidity != 0)
			nw.uidvalidity = uidvalidity;
		nw.quotaroot = NULL;
		r = store_mailbox_update(sv->store, &nw);
		store_mailbox_clear(&mb);
	} else {
		memset(&nw, 0, sizeof(nw));
		nw.uniqueid = (char *)uniqueid;
		nw.name = (char *)name;
		nw.mbtype = (char *)mbtype;
		nw.partition = (char *)part;
		nw.acl = (char *)acl;
		nw.options = "";
		nw.uidvalidity = uidvalidity;
		nw.foldermodseq = hms;
		nw.createdmodseq = createdmodseq;
		r = store_mailbox_create(sv->store, &nw);
		if (r == STORE_EXISTS)
			return SV_MAILBOX_MOVED;
	}
	if (r != 0 || apply_bump_modseq(sv, name, hms) == -1)
		return apply_store_failed(sv, "MAILBOX");
	return SV_OK;
}

static int
apply_crc_differs(uint32_t a, uint32_t b)
{
	/* Zero on either side means "not checked". */
	return a != 0 && b != 0 && a != b;
}

/* The size of a stored body, or -1 if it is not in the partition. */
static int64_t
apply_body_size(struct sv *sv, const char *part, const char *guid)
{
	uint64_t size;

	if (store_body_size(sv->store, part, guid, &size) != 1 ||
	    size > INT64_MAX)
		return -1;
	return (int64_t)size;
}

/*
 * APPLY MAILBOX: the server algorithm of protocol doc 3.3.3, inside one
 * transaction.  Unlike the peer, which dies when a new record's body is
 * missing, we find that in the dry run and refuse before changing
 * anything.  *keep asks the caller to commit despite a failure result.
 */
/* MBOXTYPE (optional) in its canonical form; -1 if malformed. */
static int
apply_parse_mbtype(const struct dlist *kl, char *mbtype, size_t size)
{
	const char *type_in = "";

	if (dlist_child(kl, "MBOXTYPE") != NULL &&
	    dlist_getatom(kl, "MBOXTYPE", &type_in) == -1)
		return -1;
	return apply_mbtype(type_in, mbtype, size);
}

/* RECORD and ANNOTATIONS of a MAILBOX; -1 (nothing to free) if bad. */
static int
apply_parse_contents(const struct dlist *kl, struct apply_rec **recs,
    size_t *nrecs, struct store_annot **annots, size_t *nannots)
{
	*annots = NULL;
	*nannots = 0;
	if (apply_parse_records(dlist_child(kl, "RECORD"), recs, nrecs) == -1)
		return -1;
	if (apply_parse_annots(dlist_child(kl, "ANNOTATIONS"), annots,
	    nannots, NULL) == -1) {
		apply_recs_free(*recs, *nrecs);
		*recs = NULL;
		*nrecs = 0;
		return -1;
	}
	return 0;
}

/*
 * Create the mailbox nw describes and read it back into mb.  An
 * unconfigured partition, a taken name or uniqueid are refused.
 */
static enum sv_result
apply_create_get(struct sv *sv, struct store_mailbox *nw,
    struct store_mailbox *mb, const char *what)
{
	int r;

	memset(mb, 0, sizeof(*mb));
	if (conf_partition_path(sv->conf, nw->partition) == NULL) {
		sv_log(LOG_ERR, "APPLY %s %s: partition %s is not configured",
		    what, nw->name, nw->partition);
		return SV_UNKNOWN;
	}
	r = apply_mailbox_create(sv, nw);
	if (r == STORE_EXISTS)
		return SV_MAILBOX_MOVED;
	if (r != 0 || store_mailbox_get(sv->store, nw->name, mb) != 0) {
		store_mailbox_clear(mb);
		return apply_store_failed(sv, what);
	}
	return SV_OK;
}

/*
 * A new record's size is its body's; -1 if a live record's body is not
 * on the partition.
 */
static int
apply_new_body(struct sv *sv, const struct store_mailbox *mb,
    struct store_record *nr)
{
	int64_t size = apply_body_size(sv, mb->partition, nr->guid);

	if (size >= 0)
		nr->size = (uint32_t)size;
	else if (!(nr->sysflags & SF_EXPUNGED)) {
		sv_log(LOG_ERR, "APPLY %s: uid %" PRIu32 ": body %s not on "
		    "partition %s", mb->name, nr->uid, nr->guid,
		    mb->partition);
		return -1;
	}
	return 0;
}

static enum sv_result
apply_mailbox(struct sv *sv, const struct dlist *kl, int *keep)
{
	const char *uniqueid, *name, *part, *acl, *opts;
	char mbtype[16], options[5];
	uint64_t hms, createdmodseq = 0, foldermodseq = 0, xconvmodseq = 0;
	uint64_t raclmodseq = 0, since_modseq = 0;
	uint32_t last_uid, recentuid, uidvalidity, sync_crc = 0;
	uint32_t sync_crc_annot = 0, since_crc = 0, since_crc_annot = 0;
	uint32_t crc, crc_annot;
	int64_t recenttime, last_appenddate, pop3_last_login;
	int64_t pop3_show_after = 0;
	struct apply_rec *recs = NULL;
	struct store_annot *annots = NULL;
	struct store_mailbox mb, other, nw;
	struct store_record old;
	size_t nrecs = 0, nannots = 0, i;
	enum sv_result res = SV_OK;
	int have_mb = 0, r, created = 0;

	if (kl->kind != DL_KVLIST ||
	    dlist_getatom(kl, "UNIQUEID", &uniqueid) == -1 ||
	    dlist_getatom(kl, "MBOXNAME", &name) == -1 ||
	    dlist_getnum64(kl, "HIGHESTMODSEQ", &hms) == -1)
		return SV_BAD_PARAMETERS;
	if (!apply_uniqueid_valid(uniqueid) || !mboxname_valid(name))
		return SV_BAD_PARAMETERS;
	if (apply_parse_mbtype(kl, mbtype, sizeof(mbtype)) == -1)
		return SV_BAD_PARAMETERS;
	if (mbtype[0] == 'f' && !sv->sieve_mailbox)
		return SV_BAD_PARAMETERS;
	if (apply_entry_only(mbtype))
		return apply_mailbox_entry(sv, kl, name, uniqueid, mbtype, hms);

	if (dlist_getatom(kl, "PARTITION", &part) == -1 ||
	    dlist_getnum32(kl, "LAST_UID", &last_uid) == -1 ||
	    dlist_getnum32(kl, "RECENTUID", &recentuid) == -1 ||
	    dlist_getdate(kl, "RECENTTIME", &recenttime) == -1 ||
	    dlist_getdate(kl, "LAST_APPENDDATE", &last_appenddate) == -1 ||
	    dlist_getdate(kl, "POP3_LAST_LOGIN", &pop3_last_login) == -1 ||
	    dlist_getnum32(kl, "UIDVALIDITY", &uidvalidity) == -1 ||
	    dlist_getatom(kl, "ACL", &acl) == -1 ||
	    dlist_getatom(kl, "OPTIONS", &opts) == -1 ||
	    dlist_child(kl, "RECORD") == NULL ||
	    apply_opt_date(kl, "POP3_SHOW_AFTER", &pop3_show_after) == -1 ||
	    apply_opt_num64(kl, "CREATEDMODSEQ", &createdmodseq) == -1 ||
	    apply_opt_num64(kl, "FOLDERMODSEQ", &foldermodseq) == -1 ||
	    apply_opt_num64(kl, "XCONVMODSEQ", &xconvmodseq) == -1 ||
	    apply_opt_num64(kl, "RACLMODSEQ", &raclmodseq) == -1 ||
	    apply_opt_num32(kl, "SYNC_CRC", &sync_crc) == -1 ||
	    apply_opt_num32(kl, "SYNC_CRC_ANNOT", &sync_crc_annot) == -1 ||
	    apply_opt_num64(kl, "SINCE_MODSEQ", &since_modseq) == -1 ||
	    apply_opt_num32(kl, "SINCE_CRC", &since_crc) == -1 ||
	    apply_opt_num32(kl, "SINCE_CRC_ANNOT", &since_crc_annot) == -1)
		return SV_BAD_PARAMETERS;
	if (!partition_name_valid(part) || strchr(acl, '\n') != NULL ||
	    strchr(acl, '\r') != NULL)
		return SV_BAD_PARAMETERS;
	apply_options(opts, options);
	if (apply_parse_contents(kl, &recs, &nrecs, &annots, &nannots) == -1)
		return SV_PROTOCOL_ERROR;
	if (nrecs > 0 && recs[nrecs - 1].r.uid > last_uid && !sv->force) {
		/* The peer asserts on this; we refuse it. */
		res = SV_PROTOCOL_ERROR;
		goto out;
	}

	/* Steps 4-6: find or create the mailbox, by name and uniqueid. */
	memset(&mb, 0, sizeof(mb));
	if ((r = store_mailbox_get(sv->store, name, &mb)) == -1) {
		res = apply_store_failed(sv, "MAILBOX");
		goto out;
	}
	have_mb = r == 0;
	if (have_mb && (strcmp(mb.uniqueid, uniqueid) != 0 ||
	    apply_entry_only(mb.mbtype))) {
		if (!apply_entry_only(mb.mbtype) && !sv->force &&
		    mb.last_uid != 0) {
			res = SV_MAILBOX_MOVED;
			goto out;
		}
		if (store_mailbox_delete(sv->store, mb.id, 0) == -1) {
			res = apply_store_failed(sv, "MAILBOX");
			goto out;
		}
		store_mailbox_clear(&mb);
		have_mb = 0;
	}
	if (!have_mb) {
		memset(&other, 0, sizeof(other));
		r = store_mailbox_get_uniqueid(sv->store, uniqueid, &other);
		if (r == -1) {
			res = apply_store_failed(sv, "MAILBOX");
			goto out;
		}
		if (r == 0) {
			store_mailbox_clear(&other);
			res = SV_MAILBOX_MOVED;
			goto out;
		}
		memset(&nw, 0, sizeof(nw));
		nw.uniqueid = (char *)uniqueid;
		nw.name = (char *)name;
		nw.mbtype = mbtype;
		nw.partition = (char *)part;
		nw.acl = (char *)acl;
		nw.options = options;
		nw.uidvalidity = uidvalidity;
		nw.createdmodseq = createdmodseq;
		nw.foldermodseq = foldermodseq;
		if ((res = apply_create_get(sv, &nw, &mb, "MAILBOX")) != SV_OK)
			goto out;
		have_mb = 1;
		created = 1;
		/* A new mailbox starts from nothing: every record is new. */
		mb.highestmodseq = 0;
		mb.last_uid = 0;
	}

	/* Step 7: the state the client computed against must be ours. */
	if (since_modseq != 0 && (since_modseq != mb.highestmodseq ||
	    apply_crc_differs(since_crc, mb.sync_crc) ||
	    apply_crc_differs(since_crc_annot, mb.sync_crc_annot))) {
		res = SV_SYNC_CHANGED;
		goto out;
	}
	/* Step 8 */
	if (!apply_mbtype_eq(mb.mbtype, mbtype)) {
		sv_log(LOG_ERR, "APPLY MAILBOX %s: type %s differs from %s",
		    name, mbtype, mb.mbtype ? mb.mbtype : "");
		res = SV_UNKNOWN;
		goto out;
	}
	/* Step 9: a replica ahead of its master means split brain. */
	if (!sv->force && (hms < mb.highestmodseq ||
	    uidvalidity < mb.uidvalidity || last_uid < mb.last_uid)) {
		res = SV_SYNC_CHECKSUM;
		goto out;
	}
	/* Step 10: dry run, nothing written yet. */
	for (i = 0; i < nrecs; i++) {
		struct store_record *nr = &recs[i].r;
		int nexp = (nr->sysflags & SF_EXPUNGED) != 0;

		memset(&old, 0, sizeof(old));
		r = created ? STORE_NOTFOUND :
		    store_record_get(sv->store, mb.id, nr->uid, &old);
		if (r == -1) {
			res = apply_store_failed(sv, "MAILBOX");
			goto out;
		}
		if (r == 0) {
			int oexp = (old.sysflags & SF_EXPUNGED) != 0;

			if (oexp && nexp)
				recs[i].act = ACT_SKIP;
			else if (strcmp(old.guid, nr->guid) != 0 ||
			    (old.modseq > nr->modseq && !sv->force) ||
			    (oexp && !nexp))
				res = SV_SYNC_CHECKSUM;
			else {
				recs[i].act = ACT_UPDATE;
				nr->size = old.size;
			}
			store_record_clear(&old);
			if (res != SV_OK)
				goto out;
		} else if (nr->uid <= mb.last_uid) {
			if (!nexp) {
				res = SV_SYNC_CHECKSUM;
				goto out;
			}
			recs[i].act = ACT_SKIP;	/* already purged here */
		} else {
			recs[i].act = ACT_APPEND;
			if (apply_new_body(sv, &mb, nr) == -1) {
				res = SV_UNKNOWN;
				goto out;
			}
		}
	}
	/* Steps 11-13: the real pass. */
	if (store_mbannot_replace(sv->store, mb.id, annots, nannots) == -1) {
		res = apply_store_failed(sv, "MAILBOX");
		goto out;
	}
	for (i = 0; i < nrecs; i++) {
		if (recs[i].act == ACT_SKIP)
			continue;
		if (store_record_put(sv->store, mb.id, &recs[i].r) == -1) {
			res = apply_store_failed(sv, "MAILBOX");
			goto out;
		}
	}
	nw = mb;
	nw.acl = (char *)acl;
	nw.options = options;
	nw.last_uid = last_uid;
	if (nrecs > 0 && recs[nrecs - 1].r.uid > nw.last_uid)
		nw.last_uid = recs[nrecs - 1].r.uid;  /* only in force mode */
	nw.recentuid = recentuid;
	nw.highestmodseq = hms;
	nw.recenttime = recenttime;
	nw.last_appenddate = last_appenddate;
	nw.pop3_last_login = pop3_last_login;
	nw.pop3_show_after = pop3_show_after;
	nw.uidvalidity = uidvalidity;
	/* Optional modseqs: an absent (zero) one keeps what we have. */
	if (createdmodseq != 0)
		nw.createdmodseq = createdmodseq;
	if (xconvmodseq != 0)
		nw.xconvmodseq = xconvmodseq;
	if (raclmodseq != 0)
		nw.raclmodseq = raclmodseq;
	nw.foldermodseq = foldermodseq != 0 ? foldermodseq : hms;
	if (apply_mailbox_write(sv, &nw) == -1 ||
	    apply_bump_modseq(sv, name, hms) == -1) {
		res = apply_store_failed(sv, "MAILBOX");
		goto out;
	}
	/*
	 * Step 14.  The peer has already committed its changes when it
	 * finds a CRC mismatch and answers IMAP_SYNC_CHECKSUM with them in
	 * place; we do the same (*keep) so that the client's retry and full
	 * update see the state they expect.
	 */
	store_mailbox_clear(&mb);
	memset(&mb, 0, sizeof(mb));
	if (store_mailbox_get(sv->store, name, &mb) != 0) {
		have_mb = 0;
		res = apply_store_failed(sv, "MAILBOX");
		goto out;
	}
	crc = mb.sync_crc;
	crc_annot = mb.sync_crc_annot;
	if (apply_crc_differs(sync_crc, crc) ||
	    apply_crc_differs(sync_crc_annot, crc_annot)) {
		if (store_mailbox_crc_recalc(sv->store, mb.id, &crc,
		    &crc_annot) == -1) {
			res = apply_store_failed(sv, "MAILBOX");
			goto out;
		}
		if (apply_crc_differs(sync_crc, crc) ||
		    apply_crc_differs(sync_crc_annot, crc_annot)) {
			sv_log(LOG_NOTICE, "APPLY MAILBOX %s: checksum "
			    "mismatch: sent %" PRIu32 "/%" PRIu32 ", have %"
			    PRIu32 "/%" PRIu32, name, sync_crc,
			    sync_crc_annot, crc, crc_annot);
			*keep = 1;
			res = SV_SYNC_CHECKSUM;
		}
	}
out:
	if (have_mb)
		store_mailbox_clear(&mb);
	apply_recs_free(recs, nrecs);
	store_annots_free(annots, nannots);
	return res;
}

static enum sv_result
apply_reserve(struct sv *sv, const struct dlist *kl)
{
	const struct dlist *names, *guids, *it;
	struct dlist *missing;
	const char *part;
	char guid[41];
	int r;

	if (kl->kind != DL_KVLIST ||
	    dlist_getatom(kl, "PARTITION", &part) == -1 ||
	    (names = dlist_child(kl, "MBOXNAME")) == NULL ||
	    (guids = dlist_child(kl, "GUID")) == NULL ||
	    guids->kind != DL_LIST)
		return SV_BAD_PARAMETERS;
	for (it = guids->head; it != NULL; it = it->next)
		if (dlist_toguid(it, guid) == -1)
			return SV_BAD_PARAMETERS;
	if (!partition_name_valid(part) ||
	    conf_partition_path(sv->conf, part) == NULL) {
		sv_log(LOG_ERR, "APPLY RESERVE: partition %s is not "
		    "configured", part);
		return SV_UNKNOWN;
	}
	/*
	 * Bodies are shared by GUID across the partition, so whether one is
	 * here does not depend on which mailboxes the client names.
	 */
	missing = dlist_newlist(NULL, "MISSING");
	for (it = guids->head; it != NULL; it = it->next) {
		dlist_toguid(it, guid);
		r = store_body_exists(sv->store, part, guid);
		if (r == -1) {
			dlist_free(missing);
			return apply_store_failed(sv, "RESERVE");
		}
		if (r == 1 || (sv->ingest != NULL &&
		    store_ingest_has(sv->ingest, part, guid) == 1))
			continue;
		dlist_setatom(missing, NULL, guid);
	}
	if (missing->nchild == 0) {
		dlist_free(missing);
		return SV_OK;
	}
	r = 0;
	if (prot_puts(sv->p, "* ") == -1 ||
	    dlist_print(missing, 1, sv->p, 0) == -1 ||
	    prot_puts(sv->p, "\r\n") == -1)
		r = -1;
	dlist_free(missing);
	return r == -1 ? SV_UNKNOWN : SV_OK;
}

/*
 * APPLY MESSAGE: the bodies were hashed and staged while the command was
 * parsed; make them durable in one batch before any record can refer to
 * them.  A body whose bytes do not hash to its GUID was refused by the
 * ingest: the client broke its own framing, so the answer is
 * IMAP_PROTOCOL_ERROR (an unconfigured partition is "Unknown error").
 * The good bodies of the batch are kept either way.
 */
static enum sv_result
apply_message(struct sv *sv, const struct dlist *list)
{
	const struct dlist *it;
	const struct dlist_file *f;
	enum sv_result res = SV_OK;

	if (list->kind != DL_LIST)
		return SV_OK;	/* non-file items are ignored */
	for (it = list->head; it != NULL; it = it->next) {
		if (it->kind != DL_FILE || it->file->file_ok)
			continue;
		f = it->file;
		if (f->part == NULL || !partition_name_valid(f->part) ||
		    conf_partition_path(sv->conf, f->part) == NULL) {
			sv_log(LOG_ERR, "APPLY MESSAGE: %s: partition %s is "
			    "not configured", f->guid,
			    f->part ? f->part : "");
			if (res == SV_OK)
				res = SV_UNKNOWN;
		} else {
			sv_log(LOG_ERR, "APPLY MESSAGE: body %s refused "
			    "(size or SHA-1 mismatch)", f->guid);
			res = SV_PROTOCOL_ERROR;
		}
	}
	if (sv->ingest != NULL && store_ingest_commit(sv->ingest) == -1)
		return apply_store_failed(sv, "MESSAGE");
	return res;
}

static enum sv_result
apply_expunge(struct sv *sv, const struct dlist *kl)
{
	const struct dlist *uids, *it;
	const char *name, *uniqueid;
	struct store_mailbox mb;
	struct store_record rec;
	enum sv_result res = SV_OK;
	uint32_t uid;
	int r;

	if (kl->kind != DL_KVLIST ||
	    dlist_getatom(kl, "MBOXNAME", &name) == -1 ||
	    dlist_getatom(kl, "UNIQUEID", &uniqueid) == -1 ||
	    (uids = dlist_child(kl, "UID")) == NULL || uids->kind != DL_LIST)
		return SV_BAD_PARAMETERS;
	if (!mboxname_valid(name))
		return SV_BAD_PARAMETERS;
	for (it = uids->head; it != NULL; it = it->next)
		if (dlist_tonum32(it, &uid) == -1)
			return SV_BAD_PARAMETERS;
	memset(&mb, 0, sizeof(mb));
	r = store_mailbox_get(sv->store, name, &mb);
	if (r == STORE_NOTFOUND)
		return SV_MAILBOX_NONEXISTENT;
	if (r == -1)
		return apply_store_failed(sv, "EXPUNGE");
	if (strcmp(mb.uniqueid, uniqueid) != 0) {
		store_mailbox_clear(&mb);
		return SV_MAILBOX_MOVED;
	}
	for (it = uids->head; it != NULL && res == SV_OK; it = it->next) {
		dlist_tonum32(it, &uid);
		memset(&rec, 0, sizeof(rec));
		r = store_record_get(sv->store, mb.id, uid, &rec);
		if (r == STORE_NOTFOUND)
			continue;
		if (r == -1) {
			res = apply_store_failed(sv, "EXPUNGE");
			break;
		}
		/* Silently: modseq and last_updated stay as they are. */
		if (!(rec.sysflags & SF_EXPUNGED)) {
			rec.sysflags |= SF_EXPUNGED;
			if (store_record_put(sv->store, mb.id, &rec) == -1)
				res = apply_store_failed(sv, "EXPUNGE");
		}
		store_record_clear(&rec);
	}
	store_mailbox_clear(&mb);
	return res;
}

static enum sv_result
apply_rename(struct sv *sv, const struct dlist *kl)
{
	const char *oldname, *newname, *part;
	struct store_mailbox mb, dst, nw;
	uint32_t uidvalidity = 0;
	enum sv_result res = SV_OK;
	int r;

	if (kl->kind != DL_KVLIST ||
	    dlist_getatom(kl, "OLDMBOXNAME", &oldname) == -1 ||
	    dlist_getatom(kl, "NEWMBOXNAME", &newname) == -1 ||
	    dlist_getatom(kl, "PARTITION", &part) == -1 ||
	    apply_opt_num32(kl, "UIDVALIDITY", &uidvalidity) == -1)
		return SV_BAD_PARAMETERS;
	if (!mboxname_valid(oldname) || !mboxname_valid(newname) ||
	    !partition_name_valid(part))
		return SV_BAD_PARAMETERS;
	memset(&mb, 0, sizeof(mb));
	r = store_mailbox_get(sv->store, oldname, &mb);
	if (r == STORE_NOTFOUND)
		return SV_MAILBOX_NONEXISTENT;
	if (r == -1)
		return apply_store_failed(sv, "RENAME");
	if (strcmp(oldname, newname) == 0 && mb.partition != NULL &&
	    strcmp(mb.partition, part) == 0)
		goto out;	/* nothing to move */
	if (conf_partition_path(sv->conf, part) == NULL) {
		sv_log(LOG_ERR, "APPLY RENAME %s: partition %s is not "
		    "configured", oldname, part);
		res = SV_UNKNOWN;
		goto out;
	}
	if (strcmp(oldname, newname) != 0) {
		memset(&dst, 0, sizeof(dst));
		r = store_mailbox_get(sv->store, newname, &dst);
		if (r == -1) {
			res = apply_store_failed(sv, "RENAME");
			goto out;
		}
		if (r == 0) {
			/* A placeholder gives way; a real mailbox does not. */
			int placeholder = apply_entry_only(dst.mbtype);

			if (placeholder && store_mailbox_delete(sv->store,
			    dst.id, 0) == -1)
				res = apply_store_failed(sv, "RENAME");
			else if (!placeholder) {
				sv_log(LOG_ERR, "APPLY RENAME %s: %s exists",
				    oldname, newname);
				res = SV_UNKNOWN;
			}
			store_mailbox_clear(&dst);
			if (res != SV_OK)
				goto out;
		}
	}
	/* A move to another partition takes the bodies along. */
	if (store_mailbox_rename(sv->store, mb.id, newname,
	    mb.partition != NULL && strcmp(mb.partition, part) == 0 ?
	    NULL : part) != 0) {
		res = apply_store_failed(sv, "RENAME");
		goto out;
	}
	store_mailbox_clear(&mb);
	memset(&mb, 0, sizeof(mb));
	if (store_mailbox_get(sv->store, newname, &mb) != 0)
		return apply_store_failed(sv, "RENAME");
	/* As the peer does: the folder modseq moves up to the mailbox's. */
	nw = mb;
	if (uidvalidity != 0)
		nw.uidvalidity = uidvalidity;
	if (nw.foldermodseq < nw.highestmodseq)
		nw.foldermodseq = nw.highestmodseq;
	if (apply_mailbox_write(sv, &nw) == -1)
		res = apply_store_failed(sv, "RENAME");
out:
	store_mailbox_clear(&mb);
	return res;
}

static enum sv_result
apply_unmailbox(struct sv *sv, const struct dlist *arg)
{
	struct store_mailbox mb;
	int r;

	if (arg->kind != DL_STRING || memchr(arg->s, '\0', arg->len) != NULL ||
	    !mboxname_valid(arg->s))
		return SV_BAD_PARAMETERS;
	memset(&mb, 0, sizeof(mb));
	r = store_mailbox_get(sv->store, arg->s, &mb);
	if (r == STORE_NOTFOUND)
		return SV_MAILBOX_NONEXISTENT;
	if (r == -1)
		return apply_store_failed(sv, "UNMAILBOX");
	r = store_mailbox_delete(sv->store, mb.id,
	    !apply_entry_only(mb.mbtype));
	store_mailbox_clear(&mb);
	return r == -1 ? apply_store_failed(sv, "UNMAILBOX") : SV_OK;
}

static enum sv_result
apply_unuser(struct sv *sv, const struct dlist *arg)
{
	if (arg->kind == DL_NIL || (arg->kind == DL_STRING && arg->len == 0))
		return SV_OK;
	if (arg->kind != DL_STRING || memchr(arg->s, '\0', arg->len) != NULL ||
	    !userid_valid(arg->s))
		return SV_BAD_PARAMETERS;
	if (store_user_delete(sv->store, arg->s) == -1)
		return apply_store_failed(sv, "UNUSER");
	return SV_OK;
}

struct apply_names {
	char	**v;
	size_t	  n;
};

static int
apply_names_cb(const struct store_mailbox *mb, void *arg)
{
	struct apply_names *an = arg;
	char **nv;

	if ((nv = reallocarray(an->v, an->n + 1, sizeof(*nv))) == NULL)
		return -1;
	an->v = nv;
	if ((an->v[an->n] = strdup(mb->name)) == NULL)
		return -1;
	an->n++;
	return 0;
}

/* Recompute the quota root of root and every mailbox below it. */
static int
apply_requota(struct sv *sv, const char *root)
{
	struct apply_names an = { NULL, 0 };
	struct store_mailbox mb;
	size_t i, rl = strlen(root);
	int r = 0;

	if (store_mailbox_foreach(sv->store, root, apply_names_cb, &an) != 0)
		r = -1;
	for (i = 0; i < an.n && r == 0; i++) {
		if (strcmp(an.v[i], root) != 0 &&
		    (strncmp(an.v[i], root, rl) != 0 || an.v[i][rl] != '.'))
			continue;
		memset(&mb, 0, sizeof(mb));
		if (store_mailbox_get(sv->store, an.v[i], &mb) != 0)
			continue;
		if (apply_mailbox_write(sv, &mb) == -1)
			r = -1;
		store_mailbox_clear(&mb);
	}
	for (i = 0; i < an.n; i++)
		free(an.v[i]);
	free(an.v);
	return r;
}

static enum sv_result
apply_quota(struct sv *sv, const struct dlist *kl)
{
	static const char *const keys[QUOTA_NUMRESOURCES] = {
		"STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS"
	};
	struct store_quota q, old;
	const char *root;
	uint32_t v;
	uint64_t modseq = 0;
	int i, r;

	if (kl->kind != DL_KVLIST || dlist_getatom(kl, "ROOT", &root) == -1 ||
	    apply_opt_num64(kl, "MODSEQ", &modseq) == -1)
		return SV_BAD_PARAMETERS;
	if (!mboxname_valid(root))
		return SV_BAD_PARAMETERS;
	memset(&q, 0, sizeof(q));
	q.root = (char *)root;
	for (i = 0; i < QUOTA_NUMRESOURCES; i++)
		q.limits[i] = QUOTA_UNLIMITED;
	if (dlist_child(kl, "LIMIT") != NULL) {
		if (dlist_getnum32(kl, "LIMIT", &v) == -1)
			return SV_BAD_PARAMETERS;
		q.limits[QUOTA_STORAGE] = v == QUOTA_WIRE_UNLIMITED ?
		    QUOTA_UNLIMITED : (int64_t)v;
	}
	for (i = 0; i < QUOTA_NUMRESOURCES; i++) {
		if (dlist_child(kl, keys[i]) == NULL)
			continue;
		if (dlist_getnum32(kl, keys[i], &v) == -1)
			return SV_BAD_PARAMETERS;
		q.limits[i] = v == QUOTA_WIRE_UNLIMITED ? QUOTA_UNLIMITED :
		    (int64_t)v;
	}
	memset(&old, 0, sizeof(old));
	r = store_quota_get(sv->store, root, &old);
	if (r == -1)
		return apply_store_failed(sv, "QUOTA");
	/* Without a modseq from the master the change gets a new one. */
	q.modseq = modseq != 0 ? modseq : (r == 0 ? old.modseq + 1 : 1);
	if (r == 0)
		store_quota_clear(&old);
	if (store_quota_set(sv->store, &q) == -1 ||
	    apply_requota(sv, root) == -1)
		return apply_store_failed(sv, "QUOTA");
	return SV_OK;
}

static enum sv_result
apply_unquota(struct sv *sv, const struct dlist *arg)
{
	int r;

	if (arg->kind != DL_STRING || memchr(arg->s, '\0', arg->len) != NULL ||
	    !mboxname_valid(arg->s))
		return SV_BAD_PARAMETERS;
	r = store_quota_delete(sv->store, arg->s);
	if (r == STORE_NOTFOUND)
		return SV_OK;
	if (r != 0 || apply_requota(sv, arg->s) == -1)
		return apply_store_failed(sv, "UNQUOTA");
	return SV_OK;
}

static int
apply_seqset_valid(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (!isdigit((unsigned char)s[n]) && s[n] != ':' &&
		    s[n] != ',' && s[n] != '*')
			return 0;
	return n <= MAX_SEQSET;
}

static enum sv_result
apply_seen(struct sv *sv, const struct dlist *kl)
{
	struct store_seen s;
	const char *userid, *uniqueid, *seenuids;

	memset(&s, 0, sizeof(s));
	if (kl->kind != DL_KVLIST ||
	    dlist_getatom(kl, "USERID", &userid) == -1 ||
	    dlist_getatom(kl, "UNIQUEID", &uniqueid) == -1 ||
	    dlist_getdate(kl, "LASTREAD", &s.lastread) == -1 ||
	    dlist_getnum32(kl, "LASTUID", &s.lastuid) == -1 ||
	    dlist_getdate(kl, "LASTCHANGE", &s.lastchange) == -1 ||
	    dlist_getatom(kl, "SEENUIDS", &seenuids) == -1)
		return SV_BAD_PARAMETERS;
	if (!userid_valid(userid) || !apply_uniqueid_valid(uniqueid) ||
	    !apply_seqset_valid(seenuids))
		return SV_BAD_PARAMETERS;
	s.uniqueid = (char *)uniqueid;
	s.seenuids = (char *)seenuids;
	if (store_seen_set(sv->store, userid, &s) == -1)
		return apply_store_failed(sv, "SEEN");
	return SV_OK;
}

static enum sv_result
apply_sub(struct sv *sv, const struct dlist *kl, int add)
{
	const char *userid, *name;

	if (kl->kind != DL_KVLIST ||
	    dlist_getatom(kl, "USERID", &userid) == -1 ||
	    dlist_getatom(kl, "MBOXNAME", &name) == -1)
		return SV_BAD_PARAMETERS;
	if (!userid_valid(userid) || !mboxname_valid(name))
		return SV_BAD_PARAMETERS;
	if (store_sub_set(sv->store, userid, name, add) == -1)
		return apply_store_failed(sv, add ? "SUB" : "UNSUB");
	return SV_OK;
}

static enum sv_result
apply_annotation(struct sv *sv, const struct dlist *kl, int set)
{
	struct store_annot a;
	struct store_mailbox mb;
	const char *name, *entry, *userid, *value = "";
	size_t vlen = 0;
	uint64_t modseq = 0;
	int64_t mbid = 0;
	int r;

	if (kl->kind != DL_KVLIST ||
	    dlist_getatom(kl, "MBOXNAME", &name) == -1 ||
	    dlist_getatom(kl, "ENTRY", &entry) == -1 ||
	    dlist_getatom(kl, "USERID", &userid) == -1 ||
	    (set && dlist_getmap(kl, "VALUE", &value, &vlen) == -1) ||
	    apply_opt_num64(kl, "MODSEQ", &modseq) == -1)
		return SV_BAD_PARAMETERS;
	if (!apply_token_valid(entry, MAX_ENTRY) ||
	    !apply_annot_userid_valid(userid) ||
	    (name[0] != '\0' && !mboxname_valid(name)))
		return SV_BAD_PARAMETERS;
	if (name[0] != '\0') {
		memset(&mb, 0, sizeof(mb));
		r = store_mailbox_get(sv->store, name, &mb);
		if (r == STORE_NOTFOUND)
			return SV_MAILBOX_NONEXISTENT;
		if (r == -1)
			return apply_store_failed(sv, "ANNOTATION");
		mbid = mb.id;
		store_mailbox_clear(&mb);
	}
	memset(&a, 0, sizeof(a));
	a.entry = (char *)entry;
	a.userid = (char *)userid;
	a.modseq = modseq;
	a.value = (char *)value;
	a.valuelen = vlen;
	if (store_mbannot_set(sv->store, mbid, &a) == -1)
		return apply_store_failed(sv, "ANNOTATION");
	return SV_OK;
}

/*
 * The script name of a FILENAME: "<name><suffix>" -> name.  NULL when
 * the suffix is absent or the name is not acceptable.
 */
static const char *
apply_sieve_name(const char *fname, const char *suffix, char *buf,
    size_t size)
{
	size_t fl = strlen(fname), sl = strlen(suffix);

	if (fl <= sl || strcmp(fname + fl - sl, suffix) != 0 ||
	    fl - sl >= size)
		return NULL;
	memcpy(buf, fname, fl - sl);
	buf[fl - sl] = '\0';
	return sievename_valid(buf) ? buf : NULL;
}

static enum sv_result
apply_sieve(struct sv *sv, const struct dlist *kl, const char *cmd)
{
	const char *userid, *fname = NULL, *content, *name;
	char buf[256];
	size_t clen;
	int64_t last_update;
	int r;

	if (kl->kind != DL_KVLIST ||
	    dlist_getatom(kl, "USERID", &userid) == -1)
		return SV_BAD_PARAMETERS;
	if (!userid_valid(userid))
		return SV_BAD_PARAMETERS;
	if (strcmp(cmd, "UNACTIVATE_SIEVE") == 0) {
		if (store_sieve_activate(sv->store, userid, NULL) == -1)
			return apply_store_failed(sv, cmd);
		return SV_OK;
	}
	if (dlist_getatom(kl, "FILENAME", &fname) == -1)
		return SV_BAD_PARAMETERS;
	/*
	 * A file name is a name in the user's sieve directory: one with a
	 * '/' or a leading '.' ("..", "../x", ".x.script") could reach
	 * outside it or hide there, whatever its suffix.  Cyrus would
	 * write such a file; we refuse it even when we would only ignore
	 * the file.
	 */
	if (fname[0] == '.' || strchr(fname, '/') != NULL)
		return SV_BAD_PARAMETERS;
	if (strcmp(cmd, "ACTIVATE_SIEVE") == 0) {
		/* The client names the bytecode file of the script. */
		if ((name = apply_sieve_name(fname, ".bc", buf,
		    sizeof(buf))) == NULL &&
		    (name = apply_sieve_name(fname, ".script", buf,
		    sizeof(buf))) == NULL)
			return SV_BAD_PARAMETERS;
		r = store_sieve_activate(sv->store, userid, name);
		if (r == STORE_NOTFOUND)
			return SV_MAILBOX_NONEXISTENT;
		return r == 0 ? SV_OK : apply_store_failed(sv, cmd);
	}
	if (strcmp(cmd, "UNSIEVE") == 0) {
		if (apply_sieve_name(fname, ".script", buf, sizeof(buf)) ==
		    NULL)
			return SV_OK;	/* only scripts are stored */
		r = store_sieve_delete(sv->store, userid, buf);
		if (r == STORE_NOTFOUND)
			return SV_OK;
		return r == 0 ? SV_OK : apply_store_failed(sv, cmd);
	}
	if (dlist_getdate(kl, "LAST_UPDATE", &last_update) == -1 ||
	    dlist_getmap(kl, "CONTENT", &content, &clen) == -1)
		return SV_BAD_PARAMETERS;
	if (apply_sieve_name(fname, ".script", buf, sizeof(buf)) == NULL) {
		size_t fl = strlen(fname);

		/* Other files are accepted and ignored, as the peer does. */
		if (fl > 7 && strcmp(fname + fl - 7, ".script") == 0)
			return SV_BAD_PARAMETERS;
		return SV_OK;
	}
	if (store_sieve_put(sv->store, userid, buf, content, clen,
	    last_update) == -1)
		return apply_store_failed(sv, cmd);
	return SV_OK;
}

static enum sv_result
apply_capabilities(struct sv *sv, const struct dlist *arg)
{
	const struct dlist *it;
	struct dlist *en;
	int r = 0;

	en = dlist_newlist(NULL, "ENABLED");
	if (arg->kind == DL_LIST) {
		for (it = arg->head; it != NULL; it = it->next) {
			if (it->kind == DL_STRING &&
			    strcasecmp(it->s, "SIEVE-MAILBOX") == 0 &&
			    !sv->sieve_mailbox) {
				sv->sieve_mailbox = 1;
				dlist_setatom(en, NULL, "SIEVE-MAILBOX");
			}
		}
	}
	if (prot_puts(sv->p, "* ") == -1 ||
	    dlist_print(en, 1, sv->p, 0) == -1 ||
	    prot_puts(sv->p, "\r\n") == -1)
		r = -1;
	dlist_free(en);
	return r == -1 ? SV_UNKNOWN : SV_OK;
}

/*
 * File literals inside a command other than MESSAGE (a RESTORE carrying
 * its bodies) are made durable before the records that use them.
 */
static int
apply_commit_files(struct sv *sv)
{
	if (sv->ingest == NULL)
		return 0;
	return store_ingest_commit(sv->ingest);
}

/* Run one changing handler in a transaction. */
static enum sv_result
apply_in_txn(struct sv *sv, const char *cmd, const struct dlist *arg)
{
	enum sv_result res;
	int keep = 0;

	if (store_begin(sv->store) == -1)
		return apply_store_failed(sv, cmd);
	if (strcmp(cmd, "MAILBOX") == 0)
		res = apply_mailbox(sv, arg, &keep);
	else if (strcmp(cmd, "EXPUNGE") == 0)
		res = apply_expunge(sv, arg);
	else if (strcmp(cmd, "RENAME") == 0)
		res = apply_rename(sv, arg);
	else if (strcmp(cmd, "UNMAILBOX") == 0)
		res = apply_unmailbox(sv, arg);
	else if (strcmp(cmd, "UNUSER") == 0)
		res = apply_unuser(sv, arg);
	else if (strcmp(cmd, "QUOTA") == 0)
		res = apply_quota(sv, arg);
	else if (strcmp(cmd, "UNQUOTA") == 0)
		res = apply_unquota(sv, arg);
	else if (strcmp(cmd, "SEEN") == 0)
		res = apply_seen(sv, arg);
	else if (strcmp(cmd, "SUB") == 0)
		res = apply_sub(sv, arg, 1);
	else if (strcmp(cmd, "UNSUB") == 0)
		res = apply_sub(sv, arg, 0);
	else if (strcmp(cmd, "ANNOTATION") == 0)
		res = apply_annotation(sv, arg, 1);
	else if (strcmp(cmd, "UNANNOTATION") == 0)
		res = apply_annotation(sv, arg, 0);
	else
		res = apply_sieve(sv, arg, cmd);
	if (res == SV_OK || keep) {
		if (store_commit(sv->store) == -1) {
			/*
			 * The commit's own error (a full disk fails here, when
			 * the log is written) is the one to report; the
			 * rollback after it only makes sure nothing is left
			 * open, and fails when the commit already ended it.
			 */
			res = apply_store_failed(sv, cmd);
			(void)store_rollback(sv->store);
			return res;
		}
	} else
		store_rollback(sv->store);
	return res;
}

/*
 * APPLY <sub-command> <value>.  LOCAL_ variants act the same (they only
 * matter to a murder).  With sync_log_chain the store logs what is
 * committed, so a replica can feed a further replica.
 */
enum sv_result
sv_apply(struct sv *sv, struct dlist *arg)
{
	static const char *const txn_cmds[] = {
		"MAILBOX", "EXPUNGE", "RENAME", "UNMAILBOX", "UNUSER", "QUOTA",
		"UNQUOTA", "SEEN", "SUB", "UNSUB", "ANNOTATION", "UNANNOTATION",
		"SIEVE", "UNSIEVE", "ACTIVATE_SIEVE", "UNACTIVATE_SIEVE", NULL
	};
	const char *cmd = arg->key != NULL ? arg->key : "";
	enum sv_result res;
	size_t i;

	if (strncmp(cmd, "LOCAL_", 6) == 0 &&
	    (strcmp(cmd + 6, "MAILBOX") == 0 ||
	    strcmp(cmd + 6, "RENAME") == 0 ||
	    strcmp(cmd + 6, "UNMAILBOX") == 0 ||
	    strcmp(cmd + 6, "UNUSER") == 0))
		cmd += 6;
	if (strcmp(cmd, "RESERVE") == 0)
		return apply_reserve(sv, arg);
	if (strcmp(cmd, "MESSAGE") == 0)
		return apply_message(sv, arg);
	if (strcmp(cmd, "CAPABILITIES") == 0)
		return apply_capabilities(sv, arg);
	if (strcmp(cmd, "FORCE") == 0) {
		sv->force = 1;
		return SV_OK;
	}
	for (i = 0; txn_cmds[i] != NULL; i++)
		if (strcmp(cmd, txn_cmds[i]) == 0)
			break;
	if (txn_cmds[i] == NULL)
		return SV_PROTOCOL_ERROR;
	if (apply_commit_files(sv) == -1)
		return apply_store_failed(sv, cmd);
	store_set_synclog(sv->store, sv->synclog_chain);
	res = apply_in_txn(sv, cmd, arg);
	store_set_synclog(sv->store, 0);
	return res;
}

/* A fresh lower-case UUID, the form the peer gives new mailboxes. */
static void
apply_make_uuid(char out[37])
{
	unsigned char b[16];

	arc4random_buf(b, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/*
 * RESTORE MAILBOX: records are added to the mailbox, never replacing
 * anything.  An existing mailbox gets every record appended under a new
 * UID and modseq and keeps its own annotations where both have one; a
 * new mailbox keeps the sent identity and UIDs when UNIQUEID,
 * HIGHESTMODSEQ and UIDVALIDITY are all given.
 */
static enum sv_result
apply_restore_mailbox(struct sv *sv, const struct dlist *kl)
{
	const char *name, *uniqueid = NULL, *part = NULL, *acl = "";
	const char *opts = "";
	char mbtype[16], options[5], uuid[37];
	struct apply_rec *recs = NULL;
	struct store_annot *annots = NULL, *have = NULL;
	struct store_mailbox mb, nw;
	size_t nrecs = 0, nannots = 0, nhave = 0, i, j;
	uint64_t hms = 0, modseq;
	uint32_t uidvalidity = 0;
	enum sv_result res = SV_OK;
	char *user = NULL;
	int r, exists, preserve;

	if (kl->kind != DL_KVLIST ||
	    dlist_getatom(kl, "MBOXNAME", &name) == -1 ||
	    !mboxname_valid(name))
		return SV_BAD_PARAMETERS;
	if (apply_parse_mbtype(kl, mbtype, sizeof(mbtype)) == -1 ||
	    apply_entry_only(mbtype))
		return SV_BAD_PARAMETERS;
	if (mbtype[0] == 'f' && !sv->sieve_mailbox)
		return SV_OK;	/* sieve scripts travel otherwise then */
	if ((dlist_child(kl, "UNIQUEID") != NULL &&
	    (dlist_getatom(kl, "UNIQUEID", &uniqueid) == -1 ||
	    !apply_uniqueid_valid(uniqueid))) ||
	    apply_opt_num64(kl, "HIGHESTMODSEQ", &hms) == -1 ||
	    apply_opt_num32(kl, "UIDVALIDITY", &uidvalidity) == -1 ||
	    (dlist_child(kl, "PARTITION") != NULL &&
	    dlist_getatom(kl, "PARTITION", &part) == -1) ||
	    (dlist_child(kl, "ACL") != NULL &&
	    dlist_getatom(kl, "ACL", &acl) == -1) ||
	    (dlist_child(kl, "OPTIONS") != NULL &&
	    dlist_getatom(kl, "OPTIONS", &opts) == -1))
		return SV_BAD_PARAMETERS;
	if (part == NULL || part[0] == '\0')
		part = conf_get(sv->conf, NULL, "defaultpartition", "default");
	if (!partition_name_valid(part))
		return SV_BAD_PARAMETERS;
	apply_options(opts, options);
	if (apply_parse_contents(kl, &recs, &nrecs, &annots, &nannots) == -1)
		return SV_PROTOCOL_ERROR;
	if ((user = apply_user_of(name)) == NULL) {
		res = SV_UNKNOWN;
		goto out;
	}
	memset(&mb, 0, sizeof(mb));
	r = store_mailbox_get(sv->store, name, &mb);
	if (r == -1) {
		res = apply_store_failed(sv, "RESTORE");
		goto out;
	}
	exists = r == 0;
	if (exists && (apply_entry_only(mb.mbtype) ||
	    !apply_mbtype_eq(mb.mbtype, mbtype))) {
		store_mailbox_clear(&mb);
		res = SV_UNKNOWN;
		goto out;
	}
	preserve = !exists && uniqueid != NULL && hms != 0 && uidvalidity != 0;
	if (!exists) {
		if (!preserve) {
			apply_make_uuid(uuid);
			uniqueid = uuid;
			uidvalidity = (uint32_t)time(NULL);
		}
		memset(&nw, 0, sizeof(nw));
		nw.uniqueid = (char *)uniqueid;
		nw.name = (char *)name;
		nw.mbtype = mbtype;
		nw.partition = (char *)part;
		nw.acl = (char *)acl;
		nw.options = options;
		nw.uidvalidity = uidvalidity;
		if ((res = apply_create_get(sv, &nw, &mb, "RESTORE")) != SV_OK)
			goto out;
	}
	/* Every body must be here before anything is written. */
	for (i = 0; i < nrecs; i++)
		if (apply_new_body(sv, &mb, &recs[i].r) == -1) {
			res = SV_UNKNOWN;
			break;
		}
	nw = mb;
	for (i = 0; i < nrecs && res == SV_OK; i++) {
		struct store_record *rr = &recs[i].r;

		if (!preserve || rr->uid <= nw.last_uid) {
			if (store_next_modseq(sv->store, user, &modseq) == -1) {
				res = apply_store_failed(sv, "RESTORE");
				break;
			}
			rr->uid = nw.last_uid + 1;
			rr->modseq = modseq;
		}
		if (store_record_put(sv->store, mb.id, rr) == -1) {
			res = apply_store_failed(sv, "RESTORE");
			break;
		}
		if (rr->uid > nw.last_uid)
			nw.last_uid = rr->uid;
		if (rr->modseq > nw.highestmodseq)
			nw.highestmodseq = rr->modseq;
	}
	if (res == SV_OK && preserve && hms > nw.highestmodseq)
		nw.highestmodseq = hms;
	/* Mailbox annotations: existing values win over restored ones. */
	if (res == SV_OK && nannots > 0) {
		if (store_mbannot_list(sv->store, mb.id, &have, &nhave) == -1)
			res = apply_store_failed(sv, "RESTORE");
		for (i = 0; i < nannots && res == SV_OK; i++) {
			for (j = 0; j < nhave; j++) {
				const struct store_annot *h = &have[j];

				if (strcmp(h->entry, annots[i].entry) == 0 &&
				    strcmp(h->userid, annots[i].userid) == 0)
					break;
			}
			if (j < nhave && exists)
				continue;
			if (store_mbannot_set(sv->store, mb.id,
			    &annots[i]) == -1)
				res = apply_store_failed(sv, "RESTORE");
		}
		store_annots_free(have, nhave);
	}
	if (res == SV_OK && (apply_mailbox_write(sv, &nw) == -1 ||
	    store_bump_modseq(sv->store, user, nw.highestmodseq) == -1))
		res = apply_store_failed(sv, "RESTORE");
	store_mailbox_clear(&mb);
out:
	free(user);
	apply_recs_free(recs, nrecs);
	store_annots_free(annots, nannots);
	return res;
}

/*
 * RESTORE MAILBOX / LOCAL_MAILBOX, in one transaction like APPLY.
 */
enum sv_result
sv_restore(struct sv *sv, struct dlist *arg)
{
	const char *cmd = arg->key != NULL ? arg->key : "";
	enum sv_result res;

	if (strcmp(cmd, "MAILBOX") != 0 && strcmp(cmd, "LOCAL_MAILBOX") != 0)
		return SV_PROTOCOL_ERROR;
	if (apply_commit_files(sv) == -1 || store_begin(sv->store) == -1)
		return apply_store_failed(sv, "RESTORE");
	store_set_synclog(sv->store, sv->synclog_chain);
	res = apply_restore_mailbox(sv, arg);
	if (res == SV_OK) {
		if (store_commit(sv->store) == -1) {
			/* Its error first: see apply_in_txn(). */
			res = apply_store_failed(sv, "RESTORE");
			(void)store_rollback(sv->store);
		}
	} else
		store_rollback(sv->store);
	store_set_synclog(sv->store, 0);
	return res;
}
