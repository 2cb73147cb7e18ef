/*
 * mbdl.c: mailboxes, records and annotations as csync values.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dlist.h"
#include "mbdl.h"
#include "store.h"

#define VA_PREFIX	"/vendor/cmu/cyrus-imapd/"
#define VA_THRID	VA_PREFIX "thrid"
#define VA_SAVEDATE	VA_PREFIX "savedate"
#define VA_CREATEDMODSEQ VA_PREFIX "createdmodseq"

static const struct {
	const char	*name;
	unsigned	 bit;
} sysflags[] = {
	/* The order Cyrus writes them in. */
	{ "\\Deleted", SF_DELETED },
	{ "\\Answered", SF_ANSWERED },
	{ "\\Flagged", SF_FLAGGED },
	{ "\\Draft", SF_DRAFT },
	{ "\\Expunged", SF_EXPUNGED },
	{ "\\Seen", SF_SEEN },
};

void
mbdl_annots(struct dlist *kv, const char *key, const struct store_annot *a,
    size_t n)
{
	struct dlist *list, *item;
	size_t i;

	if (n == 0)
		return;
	list = dlist_newlist(kv, key);
	for (i = 0; i < n; i++) {
		item = dlist_newkvlist(list, NULL);
		dlist_setatom(item, "ENTRY", a[i].entry);
		dlist_setatom(item, "USERID", a[i].userid ? a[i].userid : "");
		dlist_setnum64(item, "MODSEQ", a[i].modseq);
		dlist_setmap(item, "VALUE", a[i].value ? a[i].value : "",
		    a[i].valuelen);
	}
}

struct dlist *
mbdl_mailbox(struct dlist *parent, const char *key,
    const struct store_mailbox *mb, const struct store_annot *annots,
    size_t nannots)
{
	struct dlist *kv = dlist_newkvlist(parent, key);

	dlist_setatom(kv, "UNIQUEID", mb->uniqueid);
	dlist_setatom(kv, "MBOXNAME", mb->name);
	if (mb->mbtype != NULL && mb->mbtype[0] != '\0')
		dlist_setatom(kv, "MBOXTYPE", mb->mbtype);
	dlist_setnum32(kv, "SYNC_CRC", mb->sync_crc);
	dlist_setnum32(kv, "SYNC_CRC_ANNOT", mb->sync_crc_annot);
	dlist_setnum32(kv, "LAST_UID", mb->last_uid);
	dlist_setnum64(kv, "HIGHESTMODSEQ", mb->highestmodseq);
	dlist_setnum32(kv, "RECENTUID", mb->recentuid);
	dlist_setdate(kv, "RECENTTIME", mb->recenttime);
	dlist_setdate(kv, "LAST_APPENDDATE", mb->last_appenddate);
	dlist_setdate(kv, "POP3_LAST_LOGIN", mb->pop3_last_login);
	dlist_setdate(kv, "POP3_SHOW_AFTER", mb->pop3_show_after);
	if (mb->xconvmodseq != 0)
		dlist_setnum64(kv, "XCONVMODSEQ", mb->xconvmodseq);
	if (mb->raclmodseq != 0)
		dlist_setnum64(kv, "RACLMODSEQ", mb->raclmodseq);
	dlist_setnum32(kv, "UIDVALIDITY", mb->uidvalidity);
	if (mb->partition != NULL)
		dlist_setatom(kv, "PARTITION", mb->partition);
	else
		dlist_setnil(kv, "PARTITION");
	if (mb->acl != NULL)
		dlist_setatom(kv, "ACL", mb->acl);
	else
		dlist_setnil(kv, "ACL");
	dlist_setatom(kv, "OPTIONS", mb->options ? mb->options : "");
	if (mb->quotaroot != NULL && mb->quotaroot[0] != '\0')
		dlist_setatom(kv, "QUOTAROOT", mb->quotaroot);
	if (mb->createdmodseq != 0)
		dlist_setnum64(kv, "CREATEDMODSEQ", mb->createdmodseq);
	if (mb->foldermodseq != 0)
		dlist_setnum64(kv, "FOLDERMODSEQ", mb->foldermodseq);
	mbdl_annots(kv, "ANNOTATIONS", annots, nannots);
	return kv;
}

void
mbdl_flags(struct dlist *kv, unsigned flags, const char *keywords)
{
	struct dlist *list = dlist_newlist(kv, "FLAGS");
	const char *p, *e;
	char buf[256];
	size_t i;

	for (i = 0; i < sizeof(sysflags) / sizeof(sysflags[0]); i++)
		if (flags & sysflags[i].bit)
			dlist_setflag(list, NULL, sysflags[i].name);
	for (p = keywords; p != NULL && *p != '\0'; p = e) {
		while (*p == ' ')
			p++;
		e = p + strcspn(p, " ");
		if (e > p && (size_t)(e - p) < sizeof(buf)) {
			memcpy(buf, p, e - p);
			buf[e - p] = '\0';
			dlist_setflag(list, NULL, buf);
		}
	}
}

static void
va_add(struct dlist *list, const char *entry, const char *value)
{
	struct dlist *item = dlist_newkvlist(list, NULL);

	dlist_setatom(item, "ENTRY", entry);
	dlist_setatom(item, "USERID", "");
	dlist_setnum64(item, "MODSEQ", 0);
	dlist_setatom(item, "VALUE", value);
}

void
mbdl_record(struct dlist *list, const struct store_record *r)
{
	struct dlist *kv = dlist_newkvlist(list, NULL), *al;
	char buf[32];

	dlist_setnum32(kv, "UID", r->uid);
	dlist_setnum64(kv, "MODSEQ", r->modseq);
	dlist_setdate(kv, "LAST_UPDATED", r->last_updated);
	mbdl_flags(kv, r->sysflags, r->keywords);
	dlist_setdate(kv, "INTERNALDATE", r->internaldate);
	dlist_setnum32(kv, "SIZE", r->size);
	dlist_setguid(kv, "GUID", r->guid);
	if (r->nannots == 0 && r->cid == 0 && r->savedate == 0 &&
	    r->createdmodseq == 0)
		return;
	mbdl_annots(kv, "ANNOTATIONS", r->annots, r->nannots);
	al = dlist_child(kv, "ANNOTATIONS");
	if (al == NULL)
		al = dlist_newlist(kv, "ANNOTATIONS");
	/* Virtual annotations follow the real ones, as Cyrus sends them. */
	if (r->cid != 0) {
		snprintf(buf, sizeof(buf), "%016" PRIx64, r->cid);
		va_add(al, VA_THRID, buf);
	}
	if (r->savedate != 0) {
		snprintf(buf, sizeof(buf), "%" PRIu64, (uint64_t)r->savedate);
		va_add(al, VA_SAVEDATE, buf);
	}
	if (r->createdmodseq != 0) {
		snprintf(buf, sizeof(buf), "%" PRIu64, r->createdmodseq);
		va_add(al, VA_CREATEDMODSEQ, buf);
	}
}

static int
annot_cmp(const void *a, const void *b)
{
	const struct store_annot *x = a, *y = b;
	int c = strcmp(x->entry, y->entry);

	return c != 0 ? c : strcmp(x->userid, y->userid);
}

int
mbdl_parse_annots(const struct dlist *list, struct store_annot **out,
    size_t *nout, char *err, size_t errlen)
{
	struct store_annot *a = NULL;
	const struct dlist *item;
	size_t n = 0;

	*out = NULL;
	*nout = 0;
	if (list == NULL || list->kind == DL_NIL)
		return 0;
	if (list->kind != DL_LIST) {
		snprintf(err, errlen, "ANNOTATIONS is not a list");
		return -1;
	}
	if (list->nchild > 0) {
		a = calloc(list->nchild, sizeof(*a));
		if (a == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	for (item = list->head; item != NULL; item = item->next) {
		const char *entry, *userid, *value;
		size_t vlen;
		uint64_t modseq;

		if (dlist_getatom(item, "ENTRY", &entry) == -1 ||
		    dlist_getatom(item, "USERID", &userid) == -1 ||
		    dlist_getnum64(item, "MODSEQ", &modseq) == -1 ||
		    dlist_getmap(item, "VALUE", &value, &vlen) == -1) {
			snprintf(err, errlen, "bad annotation item");
			store_annots_free(a, n);
			return -1;
		}
		a[n].entry = strdup(entry);
		a[n].userid = strdup(userid);
		a[n].modseq = modseq;
		a[n].value = malloc(vlen + 1);
		if (a[n].entry == NULL || a[n].userid == NULL ||
		    a[n].value == NULL) {
			n++;
			store_annots_free(a, n);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memcpy(a[n].value, value, vlen);
		a[n].value[vlen] = '\0';
		a[n].valuelen = vlen;
		n++;
	}
	if (n > 1)
		qsort(a, n, sizeof(*a), annot_cmp);
	*out = a;
	*nout = n;
	return 0;
}

int
mbdl_parse_flags(const struct dlist *list, unsigned *flagsp, char **kwp,
    char *err, size_t errlen)
{
	const struct dlist *f;
	char *kw = NULL;
	size_t kwlen = 0, i;
	unsigned flags = 0;

	*flagsp = 0;
	*kwp = NULL;
	if (list == NULL || (list->kind != DL_LIST && list->kind != DL_NIL)) {
		snprintf(err, errlen, "FLAGS is not a list");
		return -1;
	}
	for (f = list->head; f != NULL; f = f->next) {
		const char *s = f->s;

		if (f->kind != DL_FLAG && f->kind != DL_STRING) {
			snprintf(err, errlen, "bad flag");
			free(kw);
			return -1;
		}
		if (s[0] == '\\') {
			for (i = 0; i < sizeof(sysflags) / sizeof(sysflags[0]);
			    i++)
				if (strcasecmp(s, sysflags[i].name) == 0)
					flags |= sysflags[i].bit;
			/* \Recent and unknown system flags are ignored. */
			continue;
		}
		if (f->len == 0 || f->len > 255 || strpbrk(s, " \t\r\n()") ||
		    strlen(s) != f->len) {
			snprintf(err, errlen, "bad keyword");
			free(kw);
			return -1;
		}
		{
			char *nk = realloc(kw, kwlen + f->len + 2);

			if (nk == NULL) {
				free(kw);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			kw = nk;
			if (kwlen > 0)
				kw[kwlen++] = ' ';
			memcpy(kw + kwlen, s, f->len);
			kwlen += f->len;
			kw[kwlen] = '\0';
		}
	}
	*flagsp = flags;
	*kwp = kw;
	return 0;
}

int
mbdl_parse_record(const struct dlist *kv, struct store_record *r, char *err,
    size_t errlen)
{
	struct dlist *flags, *annots;
	struct store_annot *a = NULL;
	size_t n = 0, i, keep = 0;

	memset(r, 0, sizeof(*r));
	if (kv == NULL || kv->kind != DL_KVLIST) {
		snprintf(err, errlen, "RECORD item is not a kvlist");
		return -1;
	}
	if (dlist_getnum32(kv, "UID", &r->uid) == -1 ||
	    dlist_getnum64(kv, "MODSEQ", &r->modseq) == -1 ||
	    dlist_getdate(kv, "LAST_UPDATED", &r->last_updated) == -1 ||
	    dlist_getdate(kv, "INTERNALDATE", &r->internaldate) == -1 ||
	    dlist_getnum32(kv, "SIZE", &r->size) == -1 ||
	    dlist_getguid(kv, "GUID", r->guid) == -1 ||
	    dlist_getlist(kv, "FLAGS", &flags) == -1) {
		snprintf(err, errlen, "record lacks a required key or a key "
		    "has a bad value");
		return -1;
	}
	if (r->uid == 0) {
		snprintf(err, errlen, "record with UID 0");
		return -1;
	}
	if (mbdl_parse_flags(flags, &r->sysflags, &r->keywords, err,
	    errlen) == -1)
		return -1;
	annots = dlist_child(kv, "ANNOTATIONS");
	if (annots != NULL && mbdl_parse_annots(annots, &a, &n, err,
	    errlen) == -1) {
		store_record_clear(r);
		return -1;
	}
	/* Move the virtual annotations into their record fields. */
	for (i = 0; i < n; i++) {
		int virt = 0;

		if (a[i].userid[0] == '\0') {
			char *end;

			if (strcmp(a[i].entry, VA_THRID) == 0) {
				r->cid = strtoull(a[i].value, &end, 16);
				virt = 1;
			} else if (strcmp(a[i].entry, VA_SAVEDATE) == 0) {
				r->savedate = (int64_t)strtoull(a[i].value,
				    &end, 10);
				virt = 1;
			} else if (strcmp(a[i].entry, VA_CREATEDMODSEQ) == 0) {
				r->createdmodseq = strtoull(a[i].value, &end,
				    10);
				virt = 1;
			}
		}
		if (virt) {
			free(a[i].entry);
			free(a[i].userid);
			free(a[i].value);
		} else
			a[keep++] = a[i];
	}
	if (keep == 0) {
		free(a);
		a = NULL;
	}
	r->annots = a;
	r->nannots = keep;
	return 0;
}

static char *
xstrdup_or_null(const struct dlist *kv, const char *key)
{
	struct dlist *d = dlist_child(kv, key);

	if (d == NULL || d->kind == DL_NIL)
		return NULL;
	if (d->kind != DL_STRING || strlen(d->s) != d->len)
		return NULL;
	return strdup(d->s);
}

int
mbdl_parse_mailbox(const struct dlist *kv, struct store_mailbox *mb,
    struct store_annot **annots, size_t *nannots, int strict, char *err,
    size_t errlen)
{
	static const char *required[] = {
		"UNIQUEID", "MBOXNAME", "PARTITION", "ACL", "OPTIONS",
		"HIGHESTMODSEQ", "UIDVALIDITY", "LAST_UID", "RECENTUID",
		"RECENTTIME", "POP3_LAST_LOGIN", NULL
	};
	size_t i;

	memset(mb, 0, sizeof(*mb));
	*annots = NULL;
	*nannots = 0;
	if (kv == NULL || kv->kind != DL_KVLIST) {
		snprintf(err, errlen, "MAILBOX is not a kvlist");
		return -1;
	}
	if (strict)
		for (i = 0; required[i] != NULL; i++)
			if (dlist_child(kv, required[i]) == NULL) {
				snprintf(err, errlen, "MAILBOX lacks %s",
				    required[i]);
				return -1;
			}
	mb->uniqueid = xstrdup_or_null(kv, "UNIQUEID");
	mb->name = xstrdup_or_null(kv, "MBOXNAME");
	if (mb->uniqueid == NULL || mb->name == NULL) {
		snprintf(err, errlen, "MAILBOX lacks UNIQUEID or MBOXNAME");
		store_mailbox_clear(mb);
		return -1;
	}
	mb->mbtype = xstrdup_or_null(kv, "MBOXTYPE");
	if (mb->mbtype == NULL)
		mb->mbtype = strdup("");
	mb->partition = xstrdup_or_null(kv, "PARTITION");
	mb->acl = xstrdup_or_null(kv, "ACL");
	mb->options = xstrdup_or_null(kv, "OPTIONS");
	if (mb->options == NULL)
		mb->options = strdup("");
	mb->quotaroot = xstrdup_or_null(kv, "QUOTAROOT");
	/* Optional numbers stay 0 when absent; present ones must convert. */
#define NUM(key, fn, field)						\
	if (dlist_child(kv, key) != NULL && fn(kv, key, &mb->field) == -1) { \
		snprintf(err, errlen, "MAILBOX has a bad %s", key);	\
		store_mailbox_clear(mb);				\
		return -1;						\
	}
	NUM("SYNC_CRC", dlist_getnum32, sync_crc);
	NUM("SYNC_CRC_ANNOT", dlist_getnum32, sync_crc_annot);
	NUM("LAST_UID", dlist_getnum32, last_uid);
	NUM("HIGHESTMODSEQ", dlist_getnum64, highestmodseq);
	NUM("RECENTUID", dlist_getnum32, recentuid);
	NUM("RECENTTIME", dlist_getdate, recenttime);
	NUM("LAST_APPENDDATE", dlist_getdate, last_appenddate);
	NUM("POP3_LAST_LOGIN", dlist_getdate, pop3_last_login);
	NUM("POP3_SHOW_AFTER", dlist_getdate, pop3_show_after);
	NUM("XCONVMODSEQ", dlist_getnum64, xconvmodseq);
	NUM("RACLMODSEQ", dlist_getnum64, raclmodseq);
	NUM("UIDVALIDITY", dlist_getnum32, uidvalidity);
	NUM("CREATEDMODSEQ", dlist_getnum64, createdmodseq);
	NUM("FOLDERMODSEQ", dlist_getnum64, foldermodseq);
#undef NUM
	if (mbdl_parse_annots(dlist_child(kv, "ANNOTATIONS"), annots, nannots,
	    err, errlen) == -1) {
		store_mailbox_clear(mb);
		return -1;
	}
	return 0;
}

int
mbdl_annots_cmp(const struct store_annot *a, size_t na,
    const struct store_annot *b, size_t nb)
{
	size_t i;

	if (na != nb)
		return 1;
	for (i = 0; i < na; i++) {
		if (strcmp(a[i].entry, b[i].entry) != 0 ||
		    strcmp(a[i].userid, b[i].userid) != 0 ||
		    a[i].valuelen != b[i].valuelen ||
		    memcmp(a[i].value, b[i].value, a[i].valuelen) != 0)
			return 1;
	}
	return 0;
}
