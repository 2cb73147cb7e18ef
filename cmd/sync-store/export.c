/*
 * sync-store: export a user's mailboxes as a Maildir++ tree that mail
 * readers (mutt, Dovecot, Courier) can open.
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "names.h"
#include "store.h"
#include "sync-store.h"

#define PATHLEN	4096

struct export {
	struct ss	*ss;
	const char	*dir;		/* the user's Maildir */
	char		 folder[PATHLEN];
	const struct store_mailbox *mb;
	unsigned long	 nfolders, nmessages;
	int		 rc;
};

/* mkdir -p, for the target directory and the folder tree. */
static int
mkdirs(const char *path)
{
	char buf[PATHLEN], *p;

	if (strlcpy(buf, path, sizeof(buf)) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0700) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

static int
make_maildir(const char *dir, int subfolder)
{
	static const char *subs[] = { "cur", "new", "tmp" };
	char path[PATHLEN];
	size_t i;
	int fd;

	for (i = 0; i < 3; i++) {
		if (ss_pathf(path, sizeof(path), "%s/%s", dir, subs[i]) == -1 ||
		    mkdirs(path) == -1)
			return -1;
	}
	if (subfolder) {
		/* Maildir++ marks a folder (not a root) with this file. */
		if (ss_pathf(path, sizeof(path), "%s/maildirfolder",
		    dir) == -1)
			return -1;
		if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC,
		    0600)) == -1)
			return -1;
		close(fd);
	}
	return 0;
}

/* The Maildir info flags, in ASCII order as the specification asks. */
static void
info_flags(unsigned sf, char *buf)
{
	char *p = buf;

	if (sf & SF_DRAFT)
		*p++ = 'D';
	if (sf & SF_FLAGGED)
		*p++ = 'F';
	if (sf & SF_ANSWERED)
		*p++ = 'R';
	if (sf & SF_SEEN)
		*p++ = 'S';
	if (sf & SF_DELETED)
		*p++ = 'T';
	*p = '\0';
}

static int
copy_fd(int in, int out)
{
	char buf[65536];
	ssize_t n, w, off;

	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (off = 0; off < n; off += w) {
			w = write(out, buf + off, (size_t)(n - off));
			if (w == -1)
				return -1;
		}
	}
	return 0;
}

/*
 * One message: written in tmp/, then renamed into cur/ with its flags;
 * its mtime is the internaldate, which readers show as the arrival time.
 */
static int
export_record(const struct store_record *r, void *arg)
{
	struct export *ex = arg;
	char src[PATHLEN], tmp[PATHLEN], dst[PATHLEN], base[128], fl[8];
	struct timeval tv[2];
	int in, out, ok;

	if ((r->sysflags & SF_EXPUNGED) != 0)
		return 0;
	if (store_body_path(ex->ss->store, ex->mb->partition, r->guid, src,
	    sizeof(src)) != 0) {
		ss_err(ex->ss, ex->mb->name, "%s", store_error(ex->ss->store));
		ex->rc = SS_FAIL;
		return 1;
	}
	snprintf(base, sizeof(base), "%" PRId64 ".U%" PRIu32 "V%" PRIu32
	    ".syncpipe", r->internaldate, r->uid, ex->mb->uidvalidity);
	info_flags(r->sysflags, fl);
	if (ss_pathf(tmp, sizeof(tmp), "%s/tmp/%s", ex->folder, base) == -1 ||
	    ss_pathf(dst, sizeof(dst), "%s/cur/%s:2,%s", ex->folder, base,
	    fl) == -1) {
		ss_err(ex->ss, ex->folder, "%s", strerror(errno));
		ex->rc = SS_FAIL;
		return 1;
	}
	if ((in = open(src, O_RDONLY | O_CLOEXEC)) == -1) {
		ss_err(ex->ss, src, "%s", strerror(errno));
		ex->rc = SS_FAIL;
		return 1;
	}
	if ((out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1) {
		ss_err(ex->ss, tmp, "%s", strerror(errno));
		close(in);
		ex->rc = SS_FAIL;
		return 1;
	}
	ok = copy_fd(in, out) == 0;
	memset(tv, 0, sizeof(tv));
	tv[0].tv_sec = tv[1].tv_sec = (time_t)r->internaldate;
	if (ok)
		futimes(out, tv);
	if (close(out) == -1)
		ok = 0;
	close(in);
	if (!ok || rename(tmp, dst) == -1) {
		ss_err(ex->ss, dst, "%s", strerror(errno));
		unlink(tmp);
		ex->rc = SS_FAIL;
		return 1;
	}
	ex->nmessages++;
	return 0;
}

static int
export_mailbox(const struct store_mailbox *mb, void *arg)
{
	struct export *ex = arg;
	char *inbox, *user;
	const char *rest;
	size_t ilen;

	if (mboxname_isdeleted(mb->name) ||
	    (mb->mbtype[0] != '\0' && mb->mbtype[0] != 'e'))
		return 0;
	if ((user = mboxname_to_userid(mb->name)) == NULL)
		return 0;
	inbox = mboxname_user_inbox(user);
	free(user);
	if (inbox == NULL)
		return 0;
	ilen = strlen(inbox);
	rest = strncmp(mb->name, inbox, ilen) == 0 ? mb->name + ilen : NULL;
	free(inbox);
	if (rest == NULL || (*rest != '\0' && *rest != '.'))
		return 0;
	/* Sub.Folder becomes .Sub.Folder: the Maildir++ separator is '.'
	 * as in the internal name, which never holds a '/'. */
	if (ss_pathf(ex->folder, sizeof(ex->folder), "%s%s%s", ex->dir,
	    *rest != '\0' ? "/" : "", rest) == -1 ||
	    make_maildir(ex->folder, *rest != '\0') == -1) {
		ss_err(ex->ss, ex->folder, "%s", strerror(errno));
		ex->rc = SS_FAIL;
		return 1;
	}
	ex->nfolders++;
	if (mb->partition == NULL || (mb->mbtype[0] != '\0' &&
	    strchr(mb->mbtype, 'i') != NULL))
		return 0;
	ex->mb = mb;
	if (store_record_foreach(ex->ss->store, mb->id, 0, export_record,
	    ex) != 0 && ex->rc == SS_OK)
		ex->rc = ss_storefail(ex->ss, mb->name);
	return ex->rc != SS_OK;
}

static int
export_user(struct ss *ss, const char *user, const char *dir,
    unsigned long *nf, unsigned long *nm)
{
	struct export ex;

	memset(&ex, 0, sizeof(ex));
	ex.ss = ss;
	ex.dir = dir;
	ex.rc = SS_OK;
	if (make_maildir(dir, 0) == -1) {
		ss_err(ss, dir, "%s", strerror(errno));
		return SS_FAIL;
	}
	if (store_mailbox_foreach_user(ss->store, user, export_mailbox,
	    &ex) != 0 && ex.rc == SS_OK)
		ex.rc = ss_storefail(ss, user);
	*nf += ex.nfolders;
	*nm += ex.nmessages;
	return ex.rc;
}

struct users {
	char	**v;
	size_t	  n;
};

static int
user_cb(const struct store_mailbox *mb, void *arg)
{
	struct users *u = arg;
	char *id, **nv;

	if (mboxname_isdeleted(mb->name) ||
	    (id = mboxname_to_userid(mb->name)) == NULL)
		return 0;
	if (u->n > 0 && strcmp(u->v[u->n - 1], id) == 0) {
		free(id);
		return 0;
	}
	if ((nv = reallocarray(u->v, u->n + 1, sizeof(*nv))) == NULL) {
		free(id);
		return 1;
	}
	u->v = nv;
	u->v[u->n++] = id;
	return 0;
}

int
verb_export(struct ss *ss)
{
	struct users u;
	char dir[PATHLEN];
	unsigned long nf = 0, nm = 0;
	size_t i, j;
	int rc = SS_OK;

	if (ss->nargs == 1) {
		if (!userid_valid(ss->args[0])) {
			ss_err(ss, ss->args[0], "not a valid userid");
			return SS_USAGE;
		}
		rc = export_user(ss, ss->args[0], ss->maildir, &nf, &nm);
	} else {
		/* Every user in a Maildir of their own, DIR/<userid>. */
		memset(&u, 0, sizeof(u));
		if (store_mailbox_foreach(ss->store, NULL, user_cb, &u) != 0)
			rc = ss_storefail(ss, "mailboxes");
		for (i = 0; i < u.n && rc == SS_OK; i++) {
			for (j = 0; j < i; j++)
				if (strcmp(u.v[j], u.v[i]) == 0)
					break;
			if (j < i)
				continue;
			if (ss_pathf(dir, sizeof(dir), "%s/%s", ss->maildir,
			    u.v[i]) == -1) {
				ss_err(ss, u.v[i], "%s", strerror(errno));
				rc = SS_FAIL;
				break;
			}
			rc = export_user(ss, u.v[i], dir, &nf, &nm);
		}
		for (i = 0; i < u.n; i++)
			free(u.v[i]);
		free(u.v);
	}
	if (rc == SS_OK)
		printf("export: %lu folders, %lu messages\n", nf, nm);
	return rc;
}
