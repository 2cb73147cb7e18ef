/*
 * sync-store: the reading verbs, list, show and dump.  The dump format is
 * described in syncpipe-store(5); it holds replicated state only (no row
 * ids, no tombstone times), so two stores holding the same replicated
 * state print the same bytes.
 */
#include <sys/types.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "names.h"
#include "store.h"
#include "sync-store.h"

#define DUMP_VERSION	1

struct strv {
	char	**v;
	size_t	  n;
	int	  oom;
};

static int
strv_add(struct strv *sv, const char *s)
{
	char **nv;

	if ((nv = reallocarray(sv->v, sv->n + 1, sizeof(*nv))) == NULL) {
		sv->oom = 1;
		return -1;
	}
	sv->v = nv;
	if ((sv->v[sv->n] = strdup(s)) == NULL) {
		sv->oom = 1;
		return -1;
	}
	sv->n++;
	return 0;
}

static int
strv_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort bytewise and drop duplicates. */
static void
strv_uniq(struct strv *sv)
{
	size_t i, o = 0;

	if (sv->n == 0)
		return;
	qsort(sv->v, sv->n, sizeof(*sv->v), strv_cmp);
	for (i = 0; i < sv->n; i++) {
		if (o > 0 && strcmp(sv->v[o - 1], sv->v[i]) == 0) {
			free(sv->v[i]);
			continue;
		}
		sv->v[o++] = sv->v[i];
	}
	sv->n = o;
}

static void
strv_free(struct strv *sv)
{
	size_t i;

	for (i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	memset(sv, 0, sizeof(*sv));
}

static int
name_cb(const struct store_mailbox *mb, void *arg)
{
	return strv_add(arg, mb->name) == -1;
}

/* A string field: NIL when absent. */
static void
put_opt(FILE *fp, const char *s)
{
	if (s == NULL)
		fputs("NIL", fp);
	else
		ss_put_string(fp, s, strlen(s));
}

/* A name in its dump form, malloc'd (NULL when out of memory). */
static char *
quoted(const char *name)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp;

	if ((fp = open_memstream(&buf, &len)) == NULL)
		return NULL;
	put_opt(fp, name);
	if (fclose(fp) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void
put_annot(FILE *fp, const struct store_annot *a)
{
	ss_put_string(fp, a->entry, strlen(a->entry));
	fputc(' ', fp);
	ss_put_string(fp, a->userid, strlen(a->userid));
	fprintf(fp, " %" PRIu64 " ", a->modseq);
	ss_put_string(fp, a->value, a->valuelen);
}

int
verb_list(struct ss *ss)
{
	struct strv sv;
	size_t i;
	int r;

	memset(&sv, 0, sizeof(sv));
	if (ss->nargs == 1)
		r = store_mailbox_foreach_user(ss->store, ss->args[0], name_cb,
		    &sv);
	else
		r = store_mailbox_foreach(ss->store, NULL, name_cb, &sv);
	if (r != 0) {
		strv_free(&sv);
		return sv.oom ? SS_FAIL : ss_storefail(ss, "list");
	}
	for (i = 0; i < sv.n; i++)
		printf("%s\n", sv.v[i]);
	strv_free(&sv);
	return SS_OK;
}

/*
 * The mailbox fields in one order for show and dump: each line is
 * "<prefix><key><sep><value>".
 */
static void
put_mailbox(FILE *fp, const char *prefix, const char *sep,
    const struct store_mailbox *mb)
{
#define STR(k, v) do {							\
	fprintf(fp, "%s%s%s", prefix, k, sep); put_opt(fp, v);		\
	fputc('\n', fp);						\
} while (0)
#define NUM(k, fmt, v)	fprintf(fp, "%s%s%s%" fmt "\n", prefix, k, sep, v)
	STR("uniqueid", mb->uniqueid);
	STR("mbtype", mb->mbtype);
	STR("partition", mb->partition);
	STR("acl", mb->acl);
	STR("options", mb->options);
	STR("quotaroot", mb->quotaroot);
	NUM("uidvalidity", PRIu32, mb->uidvalidity);
	NUM("last_uid", PRIu32, mb->last_uid);
	NUM("recentuid", PRIu32, mb->recentuid);
	NUM("highestmodseq", PRIu64, mb->highestmodseq);
	NUM("createdmodseq", PRIu64, mb->createdmodseq);
	NUM("foldermodseq", PRIu64, mb->foldermodseq);
	NUM("xconvmodseq", PRIu64, mb->xconvmodseq);
	NUM("raclmodseq", PRIu64, mb->raclmodseq);
	NUM("recenttime", PRId64, mb->recenttime);
	NUM("last_appenddate", PRId64, mb->last_appenddate);
	NUM("pop3_last_login", PRId64, mb->pop3_last_login);
	NUM("pop3_show_after", PRId64, mb->pop3_show_after);
	NUM("sync_crc", PRIu32, mb->sync_crc);
	NUM("sync_crc_annot", PRIu32, mb->sync_crc_annot);
#undef STR
#undef NUM
}

int
verb_show(struct ss *ss)
{
	struct store_mailbox mb;
	struct store_annot *an = NULL;
	size_t n = 0, i;
	int r;

	memset(&mb, 0, sizeof(mb));
	if ((r = store_mailbox_get(ss->store, ss->args[0], &mb)) != 0) {
		if (r == STORE_NOTFOUND) {
			ss_err(ss, ss->args[0], "no such mailbox");
			return SS_FAIL;
		}
		return ss_storefail(ss, ss->args[0]);
	}
	if (store_mbannot_list(ss->store, mb.id, &an, &n) != 0) {
		store_mailbox_clear(&mb);
		return ss_storefail(ss, ss->args[0]);
	}
	printf("name: ");
	put_opt(stdout, mb.name);
	printf("\n");
	put_mailbox(stdout, "", ": ", &mb);
	for (i = 0; i < n; i++) {
		printf("annotation: ");
		put_annot(stdout, &an[i]);
		printf("\n");
	}
	store_annots_free(an, n);
	store_mailbox_clear(&mb);
	return SS_OK;
}

struct dumprec {
	FILE		*fp;
	const char	*name;
};

static int
dump_record(const struct store_record *r, void *arg)
{
	struct dumprec *d = arg;
	char flags[8192];
	size_t i;

	ss_flags_string(r->sysflags, r->keywords, 1, flags, sizeof(flags));
	fprintf(d->fp, "record %s %" PRIu32 " modseq %" PRIu64
	    " last_updated %" PRId64 " internaldate %" PRId64
	    " size %" PRIu32 " guid %s cid %016" PRIx64 " savedate %" PRId64
	    " createdmodseq %" PRIu64 " flags (%s)\n", d->name, r->uid,
	    r->modseq, r->last_updated, r->internaldate, r->size, r->guid,
	    r->cid, r->savedate, r->createdmodseq, flags);
	for (i = 0; i < r->nannots; i++) {
		fprintf(d->fp, "record-annotation %s %" PRIu32 " ", d->name,
		    r->uid);
		put_annot(d->fp, &r->annots[i]);
		fputc('\n', d->fp);
	}
	return 0;
}

static int
dump_mailbox(struct ss *ss, const char *name)
{
	struct store_mailbox mb;
	struct store_annot *an = NULL;
	struct dumprec d;
	char prefix[4 * MAX_MAILBOX_NAME + 16], *qname;
	size_t n = 0, i;
	int r;

	memset(&mb, 0, sizeof(mb));
	if ((r = store_mailbox_get(ss->store, name, &mb)) != 0)
		return r == STORE_NOTFOUND ? SS_OK : ss_storefail(ss, name);
	if ((qname = quoted(mb.name)) == NULL) {
		store_mailbox_clear(&mb);
		ss_err(ss, name, "out of memory");
		return SS_FAIL;
	}
	snprintf(prefix, sizeof(prefix), "mailbox %s ", qname);
	put_mailbox(stdout, prefix, " ", &mb);
	if (store_mbannot_list(ss->store, mb.id, &an, &n) != 0) {
		store_mailbox_clear(&mb);
		free(qname);
		return ss_storefail(ss, name);
	}
	for (i = 0; i < n; i++) {
		printf("%sannotation ", prefix);
		put_annot(stdout, &an[i]);
		printf("\n");
	}
	store_annots_free(an, n);
	d.fp = stdout;
	d.name = qname;
	r = store_record_foreach(ss->store, mb.id, 0, dump_record, &d);
	store_mailbox_clear(&mb);
	free(qname);
	if (r != 0)
		return ss_storefail(ss, name);
	return SS_OK;
}

struct dumpuser {
	char		*user;		/* in its dump form */
};

static int
dump_seen(const struct store_seen *sn, void *arg)
{
	struct dumpuser *du = arg;

	printf("seen %s ", du->user);
	put_opt(stdout, sn->uniqueid);
	printf(" lastread %" PRId64 " lastuid %" PRIu32 " lastchange %"
	    PRId64 " seenuids ", sn->lastread, sn->lastuid, sn->lastchange);
	put_opt(stdout, sn->seenuids != NULL ? sn->seenuids : "");
	printf("\n");
	return 0;
}

static int
dump_sub(const char *name, void *arg)
{
	struct dumpuser *du = arg;

	printf("sub %s ", du->user);
	put_opt(stdout, name);
	printf("\n");
	return 0;
}

static int
dump_sieve(const struct store_sieve *sv, void *arg)
{
	struct dumpuser *du = arg;

	printf("sieve %s ", du->user);
	put_opt(stdout, sv->name);
	printf(" active %d guid %s last_update %" PRId64 "\n",
	    sv->active ? 1 : 0, sv->guid, sv->last_update);
	return 0;
}

static int
dump_user(struct ss *ss, const char *user)
{
	struct dumpuser du;

	if ((du.user = quoted(user)) == NULL)
		return SS_FAIL;
	if (store_seen_foreach(ss->store, user, dump_seen, &du) != 0 ||
	    store_sub_foreach(ss->store, user, dump_sub, &du) != 0 ||
	    store_sieve_foreach(ss->store, user, dump_sieve, &du) != 0) {
		free(du.user);
		return ss_storefail(ss, user);
	}
	free(du.user);
	return SS_OK;
}

static int
dump_quota(struct ss *ss, const char *root)
{
	struct store_quota q;
	int r;

	memset(&q, 0, sizeof(q));
	if ((r = store_quota_get(ss->store, root, &q)) != 0)
		return r == STORE_NOTFOUND ? SS_OK : ss_storefail(ss, root);
	printf("quota ");
	put_opt(stdout, root);
	printf(" modseq %" PRIu64 " storage %" PRId64 " message %"
	    PRId64 " annotstorage %" PRId64 " numfolders %" PRId64 "\n",
	    q.modseq, q.limits[QUOTA_STORAGE],
	    q.limits[QUOTA_MESSAGE], q.limits[QUOTA_ANNOTSTORAGE],
	    q.limits[QUOTA_NUMFOLDERS]);
	store_quota_clear(&q);
	return SS_OK;
}

static int
root_cb(const struct store_quota *q, void *arg)
{
	return strv_add(arg, q->root) == -1;
}

static int
user_cb(const char *user, void *arg)
{
	return strv_add(arg, user) == -1;
}

int
verb_dump(struct ss *ss)
{
	struct strv mbs, users, roots;
	struct store_annot *an = NULL;
	const char *user = ss->nargs == 1 ? ss->args[0] : NULL;
	char *inbox = NULL;
	size_t i, n = 0, ilen = 0;
	int rc;

	memset(&mbs, 0, sizeof(mbs));
	memset(&users, 0, sizeof(users));
	memset(&roots, 0, sizeof(roots));
	if (user != NULL && !userid_valid(user)) {
		ss_err(ss, user, "not a valid userid");
		return SS_USAGE;
	}
	/* One write transaction: a snapshot no writer changes under us. */
	if (store_begin(ss->store) != 0)
		return ss_storefail(ss, "begin");
	if (store_quota_foreach(ss->store, root_cb, &roots) != 0) {
		rc = roots.oom ? SS_FAIL : ss_storefail(ss, "quota roots");
		goto out;
	}
	if (user != NULL) {
		if ((inbox = mboxname_user_inbox(user)) == NULL) {
			rc = SS_FAIL;
			goto out;
		}
		ilen = strlen(inbox);
		strv_add(&users, user);
		rc = store_mailbox_foreach_user(ss->store, user, name_cb, &mbs);
	} else {
		rc = store_user_foreach(ss->store, user_cb, &users);
		if (rc == 0)
			rc = store_mailbox_foreach(ss->store, NULL, name_cb,
			    &mbs);
	}
	if (rc != 0 || mbs.oom || users.oom) {
		rc = mbs.oom || users.oom ? SS_FAIL : ss_storefail(ss, "dump");
		goto out;
	}
	strv_uniq(&mbs);
	strv_uniq(&users);
	strv_uniq(&roots);

	printf("syncpipe-dump %d\n", DUMP_VERSION);
	if (user == NULL) {
		if (store_mbannot_list(ss->store, 0, &an, &n) != 0) {
			rc = ss_storefail(ss, "server annotations");
			goto out;
		}
		for (i = 0; i < n; i++) {
			printf("server-annotation ");
			put_annot(stdout, &an[i]);
			printf("\n");
		}
		store_annots_free(an, n);
	}
	for (i = 0; i < mbs.n; i++)
		if ((rc = dump_mailbox(ss, mbs.v[i])) != SS_OK)
			goto out;
	for (i = 0; i < roots.n; i++) {
		if (user != NULL && !(strncmp(roots.v[i], inbox, ilen) == 0 &&
		    (roots.v[i][ilen] == '\0' || roots.v[i][ilen] == '.')))
			continue;
		if ((rc = dump_quota(ss, roots.v[i])) != SS_OK)
			goto out;
	}
	for (i = 0; i < users.n; i++)
		if ((rc = dump_user(ss, users.v[i])) != SS_OK)
			goto out;
	rc = SS_OK;
out:
	store_rollback(ss->store);
	free(inbox);
	strv_free(&mbs);
	strv_free(&users);
	strv_free(&roots);
	return rc;
}
