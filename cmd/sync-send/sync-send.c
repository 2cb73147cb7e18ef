/*
 * sync-send: apply a replication plan to a csync replica.
 *
 * The plan (sync-plan's output) is read from stdin or -f; each command is
 * sent as it is, except that message bodies, which the plan references
 * by %{partition guid size}, are sent only when the replica's answer to
 * the preceding RESERVE says it lacks them.  They are read from the local
 * store, or, when a csync source of master state is configured, fetched
 * from it (GET FETCH, with the source locator the plan gives after each
 * body) into a spool directory and streamed on from there.
 * Commands are pipelined: replies are read when the window is full, when
 * a reply is needed to go on (RESERVE), and at the end of a batch.
 * Results go to stdout, one line per command; "%commit FILE" lines of the
 * plan remove the claimed log file once every command before them
 * succeeded.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "csync.h"
#include "dlist.h"
#include "mbdl.h"
#include "names.h"
#include "plan.h"
#include "prot.h"
#include "store.h"
#include "synccrc.h"
#include "synclog.h"

#define PLAN_VERSION	1
#define WINDOW		64	/* commands in flight before reading replies */
#define DESC_MAX	600
#define REPLAN_MAX	2	/* re-plans of one user before giving up */
#define FETCH_WINDOW	32	/* GET FETCH requests in flight */
#define REPLY_MAX	65536	/* data bytes in a reply, plus 41 a GUID
				   for RESERVE */

/* Exit statuses (see EXIT STATUS in the man page). */
#define EXIT_OK			CSYNC_EXIT_OK
#define EXIT_FAILED		CSYNC_EXIT_FAILED
#define EXIT_IOERR		CSYNC_EXIT_IOERR
#define EXIT_TEMP		CSYNC_EXIT_TEMP
#define EXIT_PROTOCOL		CSYNC_EXIT_PROTOCOL
#define EXIT_CONFIG		CSYNC_EXIT_CONFIG

struct opts {
	const char	*conf_path;
	const char	*target;
	const char	*command;
	const char	*source;	/* -M: csync source of bodies */
	const char	*source_command;
	const char	*planfile;
	const char	*channel;
	int		 compress;
	int		 verbose;
	int		 timeout;
};

/*
 * A set of GUIDs (40 hex digits): open addressing with linear probing,
 * an empty string marks a free slot.  A full sync asks about every body
 * of a user, so lookups must not grow with the set.
 */
struct guidset {
	char		(*v)[41];
	size_t		 size;		/* slots: 0 or a power of two */
	size_t		 n;
};

struct sender {
	struct opts	*o;
	struct conf	*conf;
	struct store	*store;		/* NULL with a csync source */
	struct csync	*cs;
	struct csync_opts srcopts;	/* the source, if configured */
	struct csync	*src;		/* connected when first needed */
	char		 spooldir[PATH_MAX];	/* fetched bodies, or "" */
	char		**parts;	/* configured partitions */
	size_t		 nparts;
	/* Commands sent whose replies are still to come. */
	char		(*inflight)[DESC_MAX];
	size_t		 ninflight;
	struct guidset	 reserved;	/* GUIDs asked about in RESERVE */
	struct guidset	 missing;	/* ... that the replica lacks */
	int		 batch_failed;
	int		 depth;		/* 1 while applying a re-plan */
	/* Mailboxes refused as stale (IMAP_SYNC_CHANGED/CHECKSUM): their
	 * users (or the names of shared mailboxes) are re-planned. */
	char		**stale;
	size_t		 nstale;
	unsigned long	 ok, failed, bodies, replans;
	uint64_t	 bytes;
	int		 progress;	/* stderr is a terminal */
	struct timespec	 start, shown;
	int		 fatal;
	int		 forced;	/* APPLY FORCE was sent */
	char		 cberr[512];	/* why a copy-back failed */
};

/* The first fatal error decides the exit status: what follows it (a
 * closed connection after BYE) is only its consequence. */
static void
set_fatal(struct sender *sd, int status)
{
	if (sd->fatal == 0)
		sd->fatal = status;
}

static void
usage(void)
{
	fprintf(stderr, "usage: sync-send [-vz] [-C config] [-e command] "
	    "[-f plan] [-M host[:port] | -M /path] [-n channel] "
	    "[-S host[:port] | -S /path] [-t timeout] "
	    "[--source-command command]\n");
	exit(EX_USAGE);
}

static void
warnx_(const char *fmt, ...)
{
	va_list ap;

	fputs("sync-send: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static size_t
gs_slot(const struct guidset *s, const char *g)
{
	const unsigned char *p;
	size_t h = 2166136261u, i;

	for (p = (const unsigned char *)g; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	for (i = h & (s->size - 1); s->v[i][0] != '\0' &&
	    strcmp(s->v[i], g) != 0; i = (i + 1) & (s->size - 1))
		;
	return i;
}

static int
gs_has(const struct guidset *s, const char *g)
{
	return s->size != 0 && s->v[gs_slot(s, g)][0] != '\0';
}

static void
gs_add(struct guidset *s, const char *g)
{
	size_t i;

	if (strlen(g) > 40)
		return;
	if (2 * (s->n + 1) > s->size) {
		struct guidset ns;

		ns.size = s->size == 0 ? 256 : s->size * 2;
		ns.n = 0;
		if ((ns.v = calloc(ns.size, sizeof(*ns.v))) == NULL) {
			warnx_("out of memory");
			exit(EXIT_IOERR);
		}
		for (i = 0; i < s->size; i++)
			if (s->v[i][0] != '\0')
				gs_add(&ns, s->v[i]);
		free(s->v);
		*s = ns;
	}
	i = gs_slot(s, g);
	if (s->v[i][0] == '\0') {
		strlcpy(s->v[i], g, sizeof(s->v[i]));
		s->n++;
	}
}

/* Removal closes the gap so that later probes still find their keys. */
static void
gs_del(struct guidset *s, const char *g)
{
	size_t i, j, home;

	if (s->size == 0 || s->v[i = gs_slot(s, g)][0] == '\0')
		return;
	s->v[i][0] = '\0';
	s->n--;
	for (j = (i + 1) & (s->size - 1); s->v[j][0] != '\0';
	    j = (j + 1) & (s->size - 1)) {
		char key[41];

		strlcpy(key, s->v[j], sizeof(key));
		s->v[j][0] = '\0';
		home = gs_slot(s, key);
		strlcpy(s->v[home], key, sizeof(s->v[home]));
	}
}

static void
gs_clear(struct guidset *s)
{
	if (s->size != 0)
		memset(s->v, 0, s->size * sizeof(*s->v));
	s->n = 0;
}

static void
trace(void *arg, char dir, const char *line, size_t len)
{
	(void)arg;
	fprintf(stderr, "%c %.*s\n", dir == '>' ? 'C' : 'S',
	    (int)(len > 400 ? 400 : len), line);
}

/* The object a command is about, for the result line. */
static void
describe(const char *verb, const struct dlist *d, char *buf, size_t size)
{
	const char *name = NULL;
	const struct dlist *c;

	if (d->kind == DL_STRING)
		name = d->s;
	else if (d->kind == DL_KVLIST) {
		static const char *keys[] = { "MBOXNAME", "OLDMBOXNAME",
		    "ROOT", "USERID", "PARTITION", NULL };
		int i;

		for (i = 0; keys[i] != NULL && name == NULL; i++)
			if ((c = dlist_child(d, keys[i])) != NULL &&
			    c->kind == DL_STRING)
				name = c->s;
	}
	snprintf(buf, size, "%s %s%s%s", verb, d->key, name ? " " : "",
	    name ? name : "");
}

static void	apply_plan(struct sender *, struct prot *);
static void	stale_add(struct sender *, const char *);

/* What to re-plan for a mailbox refused as stale: "-u user" or
 * "-m name" for a shared mailbox.  Returns 0, or -1 if not a mailbox
 * update. */
static int
stale_target(const char *desc, char *buf, size_t size)
{
	const char *name;
	char *u;

	if (strncmp(desc, "APPLY MAILBOX ", 14) == 0)
		name = desc + 14;
	else if (strncmp(desc, "APPLY LOCAL_MAILBOX ", 20) == 0)
		name = desc + 20;
	else
		return -1;
	if ((u = mboxname_to_userid(name)) != NULL) {
		snprintf(buf, size, "-u%s", u);
		free(u);
	} else
		snprintf(buf, size, "-m%s", name);
	return 0;
}

static double
elapsed(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) +
	    (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* The progress line on a terminal: commands, messages, bytes, rate;
 * at most a few times a second, and once more at the end (last). */
static void
progress(struct sender *sd, int last)
{
	struct timespec now;
	double t;

	if (!sd->progress)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!last && elapsed(&sd->shown, &now) < 0.25)
		return;
	sd->shown = now;
	t = elapsed(&sd->start, &now);
	fprintf(stderr, "\rsync-send: %lu commands (%lu failed), %lu "
	    "messages, %.1f MB, %.1f MB/s, %.0f s   %s",
	    sd->ok + sd->failed, sd->failed, sd->bodies,
	    (double)sd->bytes / 1e6, t > 0 ? (double)sd->bytes / 1e6 / t : 0,
	    t, last ? "\n" : "");
}

static void
result(struct sender *sd, const char *desc, const struct csync_reply *r)
{
	char what[DESC_MAX];

	if (sd->o->verbose > 1)
		fprintf(stderr, "S %s %s\n", r->status, r->text ? r->text :
		    "");
	progress(sd, 0);
	if (strcmp(r->status, "OK") == 0) {
		sd->ok++;
		if (sd->o->verbose)
			printf("OK %s\n", desc);
		return;
	}
	if (strcmp(r->code, "IMAP_MAILBOX_NONEXISTENT") == 0 &&
	    (strstr(desc, "UNMAILBOX") != NULL ||
	    strstr(desc, "UNUSER") != NULL)) {
		/* Already gone: what we wanted. */
		sd->ok++;
		if (sd->o->verbose)
			printf("OK %s (already absent)\n", desc);
		return;
	}
	if ((strcmp(r->code, "IMAP_SYNC_CHANGED") == 0 ||
	    strcmp(r->code, "IMAP_SYNC_CHECKSUM") == 0) &&
	    stale_target(desc, what, sizeof(what)) == 0) {
		/* The plan was made against a state the replica has left:
		 * re-planned from fresh replica state at the batch end. */
		printf("%s %s: %s (re-planning %s %s)\n", r->status, desc,
		    r->text ? r->text : "", what[1] == 'u' ? "user" :
		    "mailbox", what + 2);
		stale_add(sd, what);
		return;
	}
	sd->failed++;
	sd->batch_failed = 1;
	printf("%s %s: %s\n", r->status, desc, r->text ? r->text : "");
	/* BYE: the replica is going away, try again later.  BAD: it did
	 * not understand us (IMAP_PROTOCOL_ERROR to Cyrus's client); what
	 * else is in flight cannot be trusted either. */
	if (strcmp(r->status, "BYE") == 0) {
		warnx_("%s: the replica said BYE: %s", desc,
		    r->text ? r->text : "");
		set_fatal(sd, EXIT_TEMP);
	} else if (strcmp(r->status, "BAD") == 0) {
		warnx_("%s: protocol error: BAD %s", desc,
		    r->text ? r->text : "");
		set_fatal(sd, EXIT_PROTOCOL);
	}
}

/* Read the replies of every command in flight. */
static int
drain(struct sender *sd)
{
	struct csync_reply r;
	size_t i;

	/* Replies to APPLY commands other than RESERVE carry no data. */
	sd->cs->reply_max = REPLY_MAX;
	for (i = 0; i < sd->ninflight; i++) {
		if (csync_read_reply(sd->cs, &r, NULL) == -1) {
			warnx_("%s: %s", sd->inflight[i], sd->cs->err);
			set_fatal(sd, csync_exit_status(sd->cs->errclass));
			csync_reply_clear(&r);
			sd->ninflight = 0;
			return -1;
		}
		result(sd, sd->inflight[i], &r);
		csync_reply_clear(&r);
		if (sd->fatal) {
			/* After BYE or BAD the rest are not read. */
			sd->ninflight = 0;
			fflush(stdout);
			return -1;
		}
	}
	sd->ninflight = 0;
	fflush(stdout);
	return 0;
}

static int
send_cmd(struct sender *sd, const char *verb, const struct dlist *d)
{
	char (*ni)[DESC_MAX];

	if (sd->ninflight >= WINDOW && drain(sd) == -1)
		return -1;
	if (sd->o->verbose > 1) {
		char *s = dlist_tostring(d, 1, 1, NULL);

		fprintf(stderr, "C %s %.400s\n", verb, s ? s : "");
		free(s);
	}
	if (csync_send(sd->cs, verb, d) == -1) {
		/* A replica that stopped reading is a timeout (75). */
		warnx_("sending: %s", sd->cs->err);
		set_fatal(sd, csync_exit_status(sd->cs->errclass));
		return -1;
	}
	ni = reallocarray(sd->inflight, sd->ninflight + 1, sizeof(*ni));
	if (ni == NULL) {
		set_fatal(sd, EXIT_IOERR);
		return -1;
	}
	sd->inflight = ni;
	describe(verb, d, sd->inflight[sd->ninflight++], DESC_MAX);
	return 0;
}

/* RESERVE needs its answer before the bodies can be chosen. */
static int
do_reserve(struct sender *sd, const struct dlist *d)
{
	struct csync_reply r;
	const struct dlist *gl = dlist_child(d, "GUID"), *g;
	size_t i, nguids = gl ? gl->nchild : 0;

	if (drain(sd) == -1)
		return -1;
	/* The MISSING lines name at most the GUIDs asked about. */
	sd->cs->reply_max = REPLY_MAX + (uint64_t)nguids * 41;
	if (sd->o->verbose > 1) {
		const struct dlist *ml = dlist_child(d, "MBOXNAME");

		fprintf(stderr, "C APPLY RESERVE (%zu mailboxes, %zu GUIDs)\n",
		    ml ? (size_t)ml->nchild : 0, nguids);
	}
	if (csync_call(sd->cs, "APPLY", d, &r, NULL) == -1 &&
	    r.status[0] == '\0') {
		warnx_("RESERVE: %s", sd->cs->err);
		set_fatal(sd, csync_exit_status(sd->cs->errclass));
		csync_reply_clear(&r);
		return -1;
	}
	/*
	 * A MISSING list is a list of GUIDs and nothing else: anything
	 * other than 40 hex digits means the replica is not speaking the
	 * protocol, and nothing it says can choose what is sent.
	 */
	for (i = 0; i < r.nitems; i++) {
		const struct dlist *m = r.items[i];

		if (strcmp(m->key, "MISSING") != 0)
			continue;
		if (m->kind != DL_LIST)
			goto bad;
		for (g = m->head; g != NULL; g = g->next)
			if (g->kind != DL_STRING || !guid_valid(g->s, g->len))
				goto bad;
	}
	for (g = gl ? gl->head : NULL; g != NULL; g = g->next)
		if (g->kind == DL_STRING && !gs_has(&sd->reserved, g->s))
			gs_add(&sd->reserved, g->s);
	for (i = 0; i < r.nitems; i++) {
		const struct dlist *m = r.items[i];
		char guid[41];

		if (strcmp(m->key, "MISSING") != 0)
			continue;
		if (sd->o->verbose > 1)
			fprintf(stderr, "S * MISSING (%zu GUIDs)\n",
			    (size_t)m->nchild);
		for (g = m->head; g != NULL; g = g->next) {
			guid_normalise(g->s, guid);
			gs_add(&sd->missing, guid);
		}
	}
	if (sd->o->verbose > 1)
		fprintf(stderr, "S %s %s\n", r.status, r.text ? r.text : "");
	if (strcmp(r.status, "OK") != 0) {
		char desc[DESC_MAX];

		describe("APPLY", d, desc, sizeof(desc));
		result(sd, desc, &r);
	} else
		sd->ok++;
	csync_reply_clear(&r);
	return 0;
bad:
	warnx_("RESERVE: a MISSING list of something other than GUIDs");
	sd->failed++;
	sd->batch_failed = 1;
	set_fatal(sd, EXIT_PROTOCOL);
	csync_reply_clear(&r);
	return -1;
}

/* Where the local store keeps a body: the plan's partition first. */
static int
body_path(struct sender *sd, const char *part, const char *guid, char *buf,
    size_t size)
{
	size_t i;

	if (store_body_exists(sd->store, part, guid) == 1)
		return store_body_path(sd->store, part, guid, buf, size);
	for (i = 0; i < sd->nparts; i++)
		if (store_body_exists(sd->store, sd->parts[i], guid) == 1)
			return store_body_path(sd->store, sd->parts[i], guid,
			    buf, size);
	return -1;
}

/* A fetched body on its way to the spool directory. */
struct spool {
	int	 fd;
	char	 path[PATH_MAX + 64];
};

static void *
spool_open(void *arg, const char *part, const char *guid, uint64_t size)
{
	struct sender *sd = arg;
	struct spool *h;

	(void)part; (void)size;
	if ((h = malloc(sizeof(*h))) == NULL)
		return NULL;
	snprintf(h->path, sizeof(h->path), "%s/%s", sd->spooldir, guid);
	h->fd = open(h->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (h->fd == -1) {
		free(h);
		return NULL;
	}
	return h;
}

static int
spool_write(void *arg, void *vh, const void *buf, size_t n)
{
	struct spool *h = vh;
	const char *p = buf;
	ssize_t w;

	(void)arg;
	while (n > 0) {
		if ((w = write(h->fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
spool_close(void *arg, void *vh, int ok, char **pathp)
{
	struct spool *h = vh;

	(void)arg;
	if (close(h->fd) == -1)
		ok = 0;
	if (!ok || pathp == NULL || (*pathp = strdup(h->path)) == NULL) {
		unlink(h->path);
		free(h);
		return -1;
	}
	free(h);
	return 0;
}

/* Connect to the source and make the spool directory, once. */
static int
source_ready(struct sender *sd)
{
	char err[512];
	const char *tmp;
	enum csync_err cls;

	if (sd->src != NULL)
		return 0;
	if (sd->spooldir[0] == '\0') {
		tmp = getenv("TMPDIR");
		snprintf(sd->spooldir, sizeof(sd->spooldir),
		    "%s/sync-send.XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (mkdtemp(sd->spooldir) == NULL) {
			warnx_("spool directory: %s", strerror(errno));
			sd->spooldir[0] = '\0';
			sd->fatal = EXIT_IOERR;
			return -1;
		}
	}
	sd->src = csync_open(&sd->srcopts, err, sizeof(err), &cls);
	if (sd->src == NULL) {
		warnx_("source: %s", err);
		sd->fatal = csync_exit_status(cls);
		return -1;
	}
	/* A body is one file literal of up to 4 GB, spooled to disk. */
	sd->src->reply_max = 0;
	return 0;
}

/* A body the plan lists: target partition, GUID, size, and where the
 * source keeps it (a kvlist, or NULL). */
struct msgref {
	char		 part[128];
	char		 guid[41];
	uint64_t	 size;
	struct dlist	*loc;
	char		*path;		/* fetched into the spool */
};

/*
 * Fetch refs[0..n) from the source, FETCH_WINDOW requests at a time,
 * each reply's file literal streamed into the spool directory.  A body
 * that cannot be fetched is reported and left without a path.
 */
static void
fetch_bodies(struct sender *sd, struct msgref *refs, size_t n)
{
	struct dlist_sink sink = { spool_open, spool_write, spool_close, sd };
	struct csync_reply r;
	size_t i, j, k;

	if (source_ready(sd) == -1)
		return;
	for (i = 0; i < n; i += FETCH_WINDOW) {
		size_t end = i + FETCH_WINDOW < n ? i + FETCH_WINDOW : n;

		for (j = i; j < end; j++) {
			struct dlist *kv = dlist_newkvlist(NULL, "FETCH");
			const char *v;

			dlist_setatom(kv, "MBOXNAME", dlist_getatom(refs[j].loc,
			    "MBOXNAME", &v) == 0 ? v : "");
			dlist_setatom(kv, "PARTITION", dlist_getatom(
			    refs[j].loc, "PARTITION", &v) == 0 ? v : "");
			dlist_setatom(kv, "UNIQUEID", dlist_getatom(refs[j].loc,
			    "UNIQUEID", &v) == 0 ? v : "");
			dlist_setguid(kv, "GUID", refs[j].guid);
			dlist_setatom(kv, "UID", dlist_getatom(refs[j].loc,
			    "UID", &v) == 0 ? v : "0");
			if (csync_send(sd->src, "GET", kv) == -1) {
				dlist_free(kv);
				warnx_("source: %s", sd->src->err);
				sd->fatal = csync_exit_status(
				    sd->src->errclass);
				return;
			}
			dlist_free(kv);
		}
		for (j = i; j < end; j++) {
			const struct dlist *f = NULL;

			if (csync_read_reply(sd->src, &r, &sink) == -1) {
				warnx_("source: %s", sd->src->err);
				sd->fatal = csync_exit_status(sd->src->errclass);
				csync_reply_clear(&r);
				return;
			}
			for (k = 0; k < r.nitems; k++)
				if (strcmp(r.items[k]->key, "MESSAGE") == 0)
					f = r.items[k];
			if (strcmp(r.status, "OK") == 0 && f != NULL &&
			    f->kind == DL_FILE && f->file->file_ok &&
			    f->file->path != NULL &&
			    strcmp(f->file->guid, refs[j].guid) == 0 &&
			    f->file->size == refs[j].size)
				refs[j].path = strdup(f->file->path);
			else {
				if (f != NULL && f->kind == DL_FILE &&
				    f->file->path != NULL)
					unlink(f->file->path);
				printf("NO APPLY MESSAGE %s: not fetched from "
				    "the source: %s %s\n", refs[j].guid,
				    r.status, r.text ? r.text : "");
				sd->failed++;
				sd->batch_failed = 1;
			}
			csync_reply_clear(&r);
		}
	}
}

/*
 * "APPLY MESSAGE (%{part guid size} [%(source)] ...)", line being what
 * follows the '(': the plan has headers only.  Send the bodies the replica lacks, read from the store
 * or fetched from the source.
 */
static int
do_message(struct sender *sd, const char *line)
{
	struct dlist *list = dlist_newlist(NULL, "MESSAGE");
	struct msgref *refs = NULL, *nr;
	size_t nrefs = 0, i, nfetch = 0;
	const char *p = line;
	char path[4096], err[256];
	int rc = 0;

	for (;;) {
		struct plan_ref r;
		struct msgref m;
		int n;

		if ((n = plan_ref_next(&p, &r, err, sizeof(err))) == -1) {
			warnx_("%s", err);
			sd->fatal = EXIT_PROTOCOL;
			rc = -1;
			goto done;
		}
		if (n == 0)
			break;
		memset(&m, 0, sizeof(m));
		memcpy(m.part, r.part, sizeof(m.part));
		memcpy(m.guid, r.guid, sizeof(m.guid));
		m.size = r.size;
		m.loc = r.loc;
		if (gs_has(&sd->reserved, m.guid) &&
		    !gs_has(&sd->missing, m.guid)) {
			dlist_free(m.loc);
			continue;	/* the replica has it */
		}
		/* Sent once, however many mailboxes list it. */
		if (!gs_has(&sd->reserved, m.guid))
			gs_add(&sd->reserved, m.guid);
		gs_del(&sd->missing, m.guid);
		if ((nr = reallocarray(refs, nrefs + 1, sizeof(*nr))) == NULL) {
			dlist_free(m.loc);
			sd->fatal = EXIT_IOERR;
			rc = -1;
			goto done;
		}
		refs = nr;
		refs[nrefs++] = m;
	}
	if (sd->srcopts.target != NULL || sd->srcopts.command != NULL) {
		/* Every body comes from the source, in one pipelined run. */
		struct msgref *f = calloc(nrefs ? nrefs : 1, sizeof(*f));

		if (f == NULL) {
			sd->fatal = EXIT_IOERR;
			rc = -1;
			goto done;
		}
		for (i = 0; i < nrefs; i++)
			if (refs[i].loc != NULL)
				f[nfetch++] = refs[i];
			else {
				printf("NO APPLY MESSAGE %s: the plan does not "
				    "say where the source keeps it\n",
				    refs[i].guid);
				sd->failed++;
				sd->batch_failed = 1;
			}
		if (nfetch > 0)
			fetch_bodies(sd, f, nfetch);
		for (i = 0; i < nfetch; i++) {
			if (f[i].path == NULL)
				continue;
			dlist_setfile(list, NULL, f[i].part, f[i].guid,
			    f[i].size, f[i].path);
			sd->bodies++;
			sd->bytes += f[i].size;
		}
		if (!sd->fatal && list->nchild > 0)
			rc = send_cmd(sd, "APPLY", list);
		/* The bytes are in the connection's buffer or sent. */
		for (i = 0; i < nfetch; i++)
			if (f[i].path != NULL) {
				unlink(f[i].path);
				free(f[i].path);
			}
		free(f);
		goto done;
	}
	for (i = 0; i < nrefs; i++) {
		if (body_path(sd, refs[i].part, refs[i].guid, path,
		    sizeof(path)) == -1) {
			printf("NO APPLY MESSAGE %s: body not in the local "
			    "store\n", refs[i].guid);
			sd->failed++;
			sd->batch_failed = 1;
			continue;
		}
		dlist_setfile(list, NULL, refs[i].part, refs[i].guid,
		    refs[i].size, path);
		sd->bodies++;
		sd->bytes += refs[i].size;
	}
	if (list->nchild > 0)
		rc = send_cmd(sd, "APPLY", list);
done:
	for (i = 0; i < nrefs; i++)
		dlist_free(refs[i].loc);
	free(refs);
	dlist_free(list);
	return rc;
}

/* Queue a re-plan of what ("-uUSER" or "-mMAILBOX") for the end of the
 * batch. */
static void
stale_add(struct sender *sd, const char *what)
{
	size_t i;

	for (i = 0; i < sd->nstale; i++)
		if (strcmp(sd->stale[i], what) == 0)
			return;
	if ((sd->stale = reallocarray(sd->stale, sd->nstale + 1,
	    sizeof(*sd->stale))) == NULL ||
	    (sd->stale[sd->nstale] = strdup(what)) == NULL) {
		warnx_("out of memory");
		exit(EXIT_IOERR);
	}
	sd->nstale++;
}

/* What to re-plan for the mailbox name: its user, or itself. */
static void
replan_target(const char *name, char *buf, size_t size)
{
	char *u;

	if ((u = mboxname_to_userid(name)) != NULL) {
		snprintf(buf, size, "-u%s", u);
		free(u);
	} else
		snprintf(buf, size, "-m%s", name);
}

/* Fetched bodies go straight into the master's partition. */
struct cbsink {
	struct store_ingest	*ig;
	const char		*part;
};

static void *
cbsink_open(void *arg, const char *part, const char *guid, uint64_t size)
{
	struct cbsink *c = arg;

	(void)part;
	return store_ingest_open(c->ig, c->part, guid, size);
}

static int
cbsink_write(void *arg, void *h, const void *buf, size_t n)
{
	struct cbsink *c = arg;

	return store_ingest_write(c->ig, h, buf, n);
}

static int
cbsink_close(void *arg, void *h, int ok, char **pathp)
{
	struct cbsink *c = arg;

	(void)pathp;
	return store_ingest_close(c->ig, h, ok);
}

/* A copy-back as the plan gives it (see syncpipe-plan(5)). */
struct copyback {
	const char		*name, *uniqueid;
	const char		*rname, *rpart, *runiqueid;
	uint64_t		 since, rhms;
	uint32_t		 rlast_uid, ruidvalidity;
	struct store_record	*recs;		/* RECORD */
	size_t			 nrecs;
	struct store_record	*flags;		/* FLAGS */
	size_t			 nflags;
	const struct dlist	*renumber, *bump, *expunge;
};

static void
copyback_clear(struct copyback *cb)
{
	size_t i;

	for (i = 0; i < cb->nrecs; i++)
		store_record_clear(&cb->recs[i]);
	free(cb->recs);
	for (i = 0; i < cb->nflags; i++)
		store_record_clear(&cb->flags[i]);
	free(cb->flags);
}

static int
parse_reclist(const struct dlist *l, struct store_record **v, size_t *n,
    char *err, size_t errlen)
{
	const struct dlist *d;

	*v = NULL;
	*n = 0;
	if (l == NULL)
		return 0;
	if (l->kind != DL_LIST)
		return -1;
	if (l->nchild > 0 &&
	    (*v = calloc(l->nchild, sizeof(**v))) == NULL)
		return -1;
	for (d = l->head; d != NULL; d = d->next) {
		if (mbdl_parse_record(d, &(*v)[*n], err, errlen) == -1)
			return -1;
		(*n)++;
	}
	return 0;
}

static int
uid_list_ok(const struct dlist *l)
{
	const struct dlist *d;
	uint32_t uid;

	if (l == NULL)
		return 1;
	if (l->kind != DL_LIST)
		return 0;
	for (d = l->head; d != NULL; d = d->next)
		if (dlist_tonum32(d, &uid) == -1 || uid == 0)
			return 0;
	return 1;
}

static int
copyback_parse(const struct dlist *d, struct copyback *cb, char *err,
    size_t errlen)
{
	const struct dlist *rk = dlist_child(d, "REPLICA");

	memset(cb, 0, sizeof(*cb));
	snprintf(err, errlen, "missing or bad keys");
	if (d->kind != DL_KVLIST || rk == NULL || rk->kind != DL_KVLIST ||
	    dlist_getatom(d, "MBOXNAME", &cb->name) == -1 ||
	    dlist_getatom(d, "UNIQUEID", &cb->uniqueid) == -1 ||
	    dlist_getnum64(d, "SINCE_MODSEQ", &cb->since) == -1 ||
	    dlist_getnum32(d, "LAST_UID", &cb->rlast_uid) == -1 ||
	    dlist_getnum64(d, "HIGHESTMODSEQ", &cb->rhms) == -1 ||
	    dlist_getnum32(d, "UIDVALIDITY", &cb->ruidvalidity) == -1 ||
	    dlist_getatom(rk, "MBOXNAME", &cb->rname) == -1 ||
	    dlist_getatom(rk, "PARTITION", &cb->rpart) == -1 ||
	    dlist_getatom(rk, "UNIQUEID", &cb->runiqueid) == -1 ||
	    !mboxname_valid(cb->name) || !mboxname_valid(cb->rname) ||
	    !partition_name_valid(cb->rpart))
		return -1;
	cb->renumber = dlist_child(d, "RENUMBER");
	cb->bump = dlist_child(d, "BUMP");
	cb->expunge = dlist_child(d, "EXPUNGE");
	if (!uid_list_ok(cb->renumber) || !uid_list_ok(cb->bump) ||
	    !uid_list_ok(cb->expunge))
		return -1;
	if (parse_reclist(dlist_child(d, "RECORD"), &cb->recs, &cb->nrecs,
	    err, errlen) == -1 ||
	    parse_reclist(dlist_child(d, "FLAGS"), &cb->flags, &cb->nflags,
	    err, errlen) == -1)
		return -1;
	return 0;
}

/*
 * Fetch from the replica (GET FETCH) every body of cb->recs the master's
 * partition lacks, straight into the store, and make them durable.
 */
static int
copyback_fetch(struct sender *sd, const struct copyback *cb, const char *part)
{
	struct cbsink c;
	struct dlist_sink sink = { cbsink_open, cbsink_write, cbsink_close,
	    &c };
	struct csync_reply r;
	struct guidset seen;
	char guid[41];
	size_t i, j, k, *want, nwant = 0;
	int rc = 0;

	if ((want = calloc(cb->nrecs + 1, sizeof(*want))) == NULL)
		return -1;
	memset(&seen, 0, sizeof(seen));
	for (i = 0; i < cb->nrecs; i++) {
		if ((cb->recs[i].sysflags & SF_EXPUNGED) ||
		    store_body_exists(sd->store, part, cb->recs[i].guid) == 1)
			continue;
		/* One fetch per body, however many records share it. */
		guid_normalise(cb->recs[i].guid, guid);
		if (gs_has(&seen, guid))
			continue;
		gs_add(&seen, guid);
		want[nwant++] = i;
	}
	free(seen.v);
	if (nwant == 0) {
		free(want);
		return 0;
	}
	if ((c.ig = store_ingest_begin(sd->store)) == NULL) {
		free(want);
		return -1;
	}
	c.part = part;
	for (i = 0; i < nwant && rc == 0; i += FETCH_WINDOW) {
		size_t end = i + FETCH_WINDOW < nwant ? i + FETCH_WINDOW :
		    nwant;

		for (j = i; j < end; j++) {
			const struct store_record *rec = &cb->recs[want[j]];
			struct dlist *kv = dlist_newkvlist(NULL, "FETCH");

			dlist_setatom(kv, "MBOXNAME", cb->rname);
			dlist_setatom(kv, "PARTITION", cb->rpart);
			dlist_setatom(kv, "UNIQUEID", cb->runiqueid);
			dlist_setguid(kv, "GUID", rec->guid);
			dlist_setnum32(kv, "UID", rec->uid);
			if (csync_send(sd->cs, "GET", kv) == -1) {
				dlist_free(kv);
				warnx_("GET FETCH: %s", sd->cs->err);
				set_fatal(sd, csync_exit_status(
				    sd->cs->errclass));
				rc = -1;
				goto out;
			}
			dlist_free(kv);
		}
		/* A body is one file literal, bounded by the dlist limit. */
		sd->cs->reply_max = 0;
		for (j = i; j < end; j++) {
			const struct store_record *rec = &cb->recs[want[j]];
			const struct dlist *f = NULL;

			if (csync_read_reply(sd->cs, &r, &sink) == -1) {
				warnx_("GET FETCH: %s", sd->cs->err);
				set_fatal(sd, csync_exit_status(
				    sd->cs->errclass));
				csync_reply_clear(&r);
				rc = -1;
				goto out;
			}
			for (k = 0; k < r.nitems; k++)
				if (strcmp(r.items[k]->key, "MESSAGE") == 0)
					f = r.items[k];
			if (strcmp(r.status, "OK") != 0 || f == NULL ||
			    f->kind != DL_FILE || !f->file->file_ok ||
			    strcasecmp(f->file->guid, rec->guid) != 0 ||
			    store_ingest_has(c.ig, part, rec->guid) != 1) {
				printf("NO MASTER COPYBACK %s: body %s of UID "
				    "%" PRIu32 " not fetched from the replica: "
				    "%s %s\n", cb->name, rec->guid, rec->uid,
				    r.status, r.text ? r.text : "");
				rc = -1;
			}
			csync_reply_clear(&r);
		}
	}
	if (rc == 0 && store_ingest_commit(c.ig) == -1) {
		printf("NO MASTER COPYBACK %s: storing bodies: %s\n", cb->name,
		    store_error(sd->store));
		rc = -1;
	}
out:
	if (rc != 0)
		store_ingest_abort(c.ig);
	store_ingest_free(c.ig);
	free(want);
	sd->cs->reply_max = REPLY_MAX;
	return rc;
}

/* A new modseq for a change to the master's mailbox. */
static int
cb_modseq(struct sender *sd, const char *owner, uint64_t *ms)
{
	return store_next_modseq(sd->store, owner, ms);
}

/*
 * The master's side of a copy-back, in one transaction: the replica's
 * records are added (under their own UIDs when above the master's
 * last_uid, else under new ones), master records the replica used the
 * UID of move up, newer replica flags are taken, and the records to be
 * sent again get new modseqs.  Returns 0, 1 when the master's mailbox
 * is not the state the plan was made from, -1 on error (printed).
 */
static int
copyback_apply(struct sender *sd, const struct copyback *cb, size_t *nnew)
{
	struct store_mailbox mb;
	struct store_record rec, old;
	const struct dlist *d;
	char *owner = NULL;
	uint32_t last_uid, first_last_uid, uid;
	uint64_t ms = 0;
	time_t now = time(NULL);
	size_t i;
	int r;

	*nnew = 0;
	memset(&mb, 0, sizeof(mb));
	if (store_begin(sd->store) == -1)
		goto fail;
	r = store_mailbox_get_uniqueid(sd->store, cb->uniqueid, &mb);
	if (r == -1)
		goto fail;
	if (r == STORE_NOTFOUND || strcmp(mb.name, cb->name) != 0 ||
	    mb.highestmodseq != cb->since) {
		store_rollback(sd->store);
		store_mailbox_clear(&mb);
		return 1;
	}
	if ((owner = mboxname_to_userid(mb.name)) == NULL &&
	    (owner = strdup("")) == NULL)
		goto fail;
	if (store_bump_modseq(sd->store, owner, mb.highestmodseq > cb->rhms ?
	    mb.highestmodseq : cb->rhms) == -1)
		goto fail;
	first_last_uid = mb.last_uid;
	last_uid = mb.last_uid > cb->rlast_uid ? mb.last_uid : cb->rlast_uid;
	for (i = 0; i < cb->nrecs; i++)
		if (cb->recs[i].uid > last_uid)
			last_uid = cb->recs[i].uid;
	/* Records that keep their UID first: the new UIDs go above all. */
	for (i = 0; i < cb->nrecs; i++) {
		rec = cb->recs[i];
		if (rec.uid <= first_last_uid)
			continue;
		memset(&old, 0, sizeof(old));
		if ((r = store_record_get(sd->store, mb.id, rec.uid,
		    &old)) == -1)
			goto fail;
		if (r == 0) {
			store_record_clear(&old);
			snprintf(sd->cberr, sizeof(sd->cberr), "UID %" PRIu32
			    " is taken on the master", rec.uid);
			goto fail_msg;
		}
		if (cb_modseq(sd, owner, &ms) == -1)
			goto fail;
		rec.modseq = ms;
		if (store_record_put(sd->store, mb.id, &rec) == -1)
			goto fail;
		(*nnew)++;
	}
	for (i = 0; i < cb->nrecs; i++) {
		rec = cb->recs[i];
		if (rec.uid > first_last_uid)
			continue;
		if (last_uid == UINT32_MAX)
			goto full;
		rec.uid = ++last_uid;
		if (cb_modseq(sd, owner, &ms) == -1)
			goto fail;
		rec.modseq = ms;
		if (store_record_put(sd->store, mb.id, &rec) == -1)
			goto fail;
		(*nnew)++;
	}
	for (d = cb->renumber ? cb->renumber->head : NULL; d != NULL;
	    d = d->next) {
		dlist_tonum32(d, &uid);
		if ((r = store_record_get(sd->store, mb.id, uid, &old)) == -1)
			goto fail;
		if (r == STORE_NOTFOUND)
			continue;
		r = 0;
		if (!(old.sysflags & SF_EXPUNGED)) {
			/* The copy under a new UID, then the old one
			 * expunged. */
			rec = old;
			if (last_uid == UINT32_MAX)
				r = -2;
			else if ((r = cb_modseq(sd, owner, &ms)) == 0) {
				rec.uid = ++last_uid;
				rec.modseq = ms;
				r = store_record_put(sd->store, mb.id, &rec);
			}
			if (r == 0 && (r = cb_modseq(sd, owner, &ms)) == 0) {
				old.sysflags |= SF_EXPUNGED;
				old.last_updated = now;
				old.modseq = ms;
				r = store_record_put(sd->store, mb.id, &old);
			}
		}
		store_record_clear(&old);
		if (r == -2)
			goto full;
		if (r != 0)
			goto fail;
	}
	for (i = 0; i < cb->nflags; i++) {
		const struct store_record *fr = &cb->flags[i];
		char *kw;

		if ((r = store_record_get(sd->store, mb.id, fr->uid,
		    &old)) == -1)
			goto fail;
		if (r == STORE_NOTFOUND)
			continue;
		if (strcasecmp(old.guid, fr->guid) != 0 ||
		    (r = cb_modseq(sd, owner, &ms)) != 0) {
			store_record_clear(&old);
			if (r != 0)
				goto fail;
			continue;
		}
		/* An expunge on the replica is taken alone; otherwise
		 * the replica's newer flags replace ours. */
		kw = old.keywords;
		if (fr->sysflags & SF_EXPUNGED)
			old.sysflags |= SF_EXPUNGED;
		else {
			old.sysflags = fr->sysflags;
			old.keywords = fr->keywords;
			old.cid = fr->cid;
		}
		old.modseq = ms;
		old.last_updated = now;
		r = store_record_put(sd->store, mb.id, &old);
		old.keywords = kw;
		store_record_clear(&old);
		if (r == -1)
			goto fail;
	}
	for (d = cb->bump ? cb->bump->head : NULL; d != NULL; d = d->next) {
		dlist_tonum32(d, &uid);
		if ((r = store_record_get(sd->store, mb.id, uid, &old)) == -1)
			goto fail;
		if (r == STORE_NOTFOUND)
			continue;
		if (cb_modseq(sd, owner, &ms) == -1) {
			store_record_clear(&old);
			goto fail;
		}
		old.modseq = ms;
		r = store_record_put(sd->store, mb.id, &old);
		store_record_clear(&old);
		if (r == -1)
			goto fail;
	}
	/* The master's state is now ahead of the replica's on every
	 * count the replica checks. */
	if (ms == 0 && (cb_modseq(sd, owner, &ms) == -1))
		goto fail;
	mb.last_uid = last_uid;
	mb.highestmodseq = ms;
	if (cb->ruidvalidity > mb.uidvalidity)
		mb.uidvalidity = cb->ruidvalidity;
	if (*nnew > 0)
		mb.last_appenddate = now;
	if (store_mailbox_update(sd->store, &mb) == -1 ||
	    store_commit(sd->store) == -1)
		goto fail;
	store_mailbox_clear(&mb);
	free(owner);
	return 0;
full:
	snprintf(sd->cberr, sizeof(sd->cberr), "no UIDs left");
	goto fail_msg;
fail:
	snprintf(sd->cberr, sizeof(sd->cberr), "%s", store_error(sd->store));
fail_msg:
	store_rollback(sd->store);
	store_mailbox_clear(&mb);
	free(owner);
	return -1;
}

/* The source's records after a copy-back are shallow copies: their
 * strings belong to the records they were taken from. */
static int
outrec_cmp(const void *a, const void *b)
{
	const struct store_record *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/*
 * The merged records by UID: an open-addressed table of indexes into
 * the vector (1 + index; 0 is a free slot), at most half full.
 */
struct outrec_ix {
	struct store_record	*v;
	size_t			*slot;
	size_t			 mask;
};

static int
outrec_ix_init(struct outrec_ix *ix, struct store_record *v, size_t cap)
{
	size_t size = 16;

	while (size < cap * 2)
		size *= 2;
	ix->v = v;
	ix->mask = size - 1;
	return (ix->slot = calloc(size, sizeof(*ix->slot))) == NULL ? -1 : 0;
}

static size_t
outrec_ix_pos(const struct outrec_ix *ix, uint32_t uid)
{
	size_t i;

	for (i = (uid * 2654435761u) & ix->mask; ix->slot[i] != 0 &&
	    ix->v[ix->slot[i] - 1].uid != uid; i = (i + 1) & ix->mask)
		;
	return i;
}

/* v[k] is in the vector under its UID (the first one found wins). */
static void
outrec_ix_add(struct outrec_ix *ix, size_t k)
{
	size_t i = outrec_ix_pos(ix, ix->v[k].uid);

	if (ix->slot[i] == 0)
		ix->slot[i] = k + 1;
}

static struct store_record *
outrec_find(const struct outrec_ix *ix, uint32_t uid)
{
	size_t i = outrec_ix_pos(ix, uid);

	return ix->slot[i] == 0 ? NULL : &ix->v[ix->slot[i] - 1];
}

static void
crc_sums(const struct store_record *v, size_t n, uint32_t *basic,
    uint32_t *annot)
{
	size_t i;

	*basic = 0;
	*annot = SYNCCRC_ANNOT_INIT;
	for (i = 0; i < n; i++) {
		*basic ^= synccrc_record_basic(&v[i]);
		*annot ^= synccrc_record_annot(&v[i]);
	}
}

/*
 * The source's records after the copy-back, by the rules copyback_apply
 * follows for the store: *out gets shallow copies (of src[0..nsrc) and
 * of cb's records), sorted by UID, and mb its new LAST_UID,
 * HIGHESTMODSEQ and UIDVALIDITY.  Returns 0, or -1 with sd->cberr.
 */
static int
copyback_merge(struct sender *sd, const struct copyback *cb,
    struct store_mailbox *mb, const struct store_record *src, size_t nsrc,
    struct store_record **out, size_t *nout, size_t *nnew)
{
	struct store_record *v, *o;
	struct outrec_ix ix;
	const struct dlist *d;
	size_t n = 0, cap, i;
	uint32_t last_uid, first_last_uid, uid;
	uint64_t ms;
	int64_t now = (int64_t)time(NULL);

	*nnew = 0;
	cap = nsrc + cb->nrecs + (cb->renumber ? cb->renumber->nchild : 0) +
	    1;
	if ((v = calloc(cap, sizeof(*v))) == NULL) {
		snprintf(sd->cberr, sizeof(sd->cberr), "out of memory");
		return -1;
	}
	if (outrec_ix_init(&ix, v, cap) == -1) {
		free(v);
		snprintf(sd->cberr, sizeof(sd->cberr), "out of memory");
		return -1;
	}
	for (i = 0; i < nsrc; i++) {
		v[n] = src[i];
		outrec_ix_add(&ix, n++);
	}
	ms = mb->highestmodseq > cb->rhms ? mb->highestmodseq : cb->rhms;
	first_last_uid = mb->last_uid;
	last_uid = mb->last_uid > cb->rlast_uid ? mb->last_uid : cb->rlast_uid;
	for (i = 0; i < cb->nrecs; i++)
		if (cb->recs[i].uid > last_uid)
			last_uid = cb->recs[i].uid;
	for (i = 0; i < cb->nrecs; i++) {
		if (cb->recs[i].uid <= first_last_uid)
			continue;
		if (outrec_find(&ix, cb->recs[i].uid) != NULL) {
			snprintf(sd->cberr, sizeof(sd->cberr), "UID %" PRIu32
			    " is taken on the master", cb->recs[i].uid);
			goto fail;
		}
		v[n] = cb->recs[i];
		v[n].modseq = ++ms;
		outrec_ix_add(&ix, n++);
		(*nnew)++;
	}
	for (i = 0; i < cb->nrecs; i++) {
		if (cb->recs[i].uid > first_last_uid)
			continue;
		if (last_uid == UINT32_MAX)
			goto full;
		v[n] = cb->recs[i];
		v[n].uid = ++last_uid;
		v[n].modseq = ++ms;
		outrec_ix_add(&ix, n++);
		(*nnew)++;
	}
	for (d = cb->renumber ? cb->renumber->head : NULL; d != NULL;
	    d = d->next) {
		dlist_tonum32(d, &uid);
		if ((o = outrec_find(&ix, uid)) == NULL ||
		    (o->sysflags & SF_EXPUNGED))
			continue;
		if (last_uid == UINT32_MAX)
			goto full;
		/* The copy under a new UID, then the old one expunged. */
		v[n] = *o;
		v[n].uid = ++last_uid;
		v[n].modseq = ++ms;
		outrec_ix_add(&ix, n++);
		o->sysflags |= SF_EXPUNGED;
		o->last_updated = now;
		o->modseq = ++ms;
	}
	for (i = 0; i < cb->nflags; i++) {
		const struct store_record *fr = &cb->flags[i];

		if ((o = outrec_find(&ix, fr->uid)) == NULL ||
		    strcasecmp(o->guid, fr->guid) != 0)
			continue;
		if (fr->sysflags & SF_EXPUNGED)
			o->sysflags |= SF_EXPUNGED;
		else {
			o->sysflags = fr->sysflags;
			o->keywords = fr->keywords;
			o->cid = fr->cid;
		}
		o->modseq = ++ms;
		o->last_updated = now;
	}
	for (d = cb->bump ? cb->bump->head : NULL; d != NULL; d = d->next) {
		dlist_tonum32(d, &uid);
		if ((o = outrec_find(&ix, uid)) != NULL)
			o->modseq = ++ms;
	}
	/* Ahead of the replica on every count the replica checks. */
	if (ms == mb->highestmodseq || ms == cb->rhms)
		ms++;
	mb->last_uid = last_uid;
	mb->highestmodseq = ms;
	if (cb->ruidvalidity > mb->uidvalidity)
		mb->uidvalidity = cb->ruidvalidity;
	if (*nnew > 0)
		mb->last_appenddate = now;
	free(ix.slot);
	if (n > 1)
		qsort(v, n, sizeof(*v), outrec_cmp);
	*out = v;
	*nout = n;
	return 0;
full:
	snprintf(sd->cberr, sizeof(sd->cberr), "no UIDs left");
fail:
	free(ix.slot);
	free(v);
	return -1;
}

/*
 * Make the bodies of recs[0..n) (live records only) available to the
 * source's next APPLY MAILBOX: APPLY RESERVE finds those it holds in the
 * mailbox, the others are fetched from the replica (GET FETCH, spooled)
 * and uploaded (APPLY MESSAGE).  Returns 0, or -1 (printed).
 */
static int
copyback_upload(struct sender *sd, const struct copyback *cb,
    const char *part, const char *srcname, const struct store_record *recs,
    size_t n)
{
	struct dlist_sink sink = { spool_open, spool_write, spool_close, sd };
	struct dlist *kv, *gl, *msg = NULL;
	struct csync_reply r;
	struct guidset want;
	const struct dlist *g;
	const struct store_record **fetch = NULL;
	char guid[41];
	size_t i, j, k, nfetch = 0;
	int rc = -1, bad = 0;

	memset(&want, 0, sizeof(want));
	kv = dlist_newkvlist(NULL, "RESERVE");
	dlist_setatom(kv, "PARTITION", part);
	dlist_setatom(dlist_newlist(kv, "MBOXNAME"), NULL, srcname);
	gl = dlist_newlist(kv, "GUID");
	for (i = 0; i < n; i++) {
		if (recs[i].sysflags & SF_EXPUNGED)
			continue;
		guid_normalise(recs[i].guid, guid);
		if (gs_has(&want, guid))
			continue;
		gs_add(&want, guid);
		dlist_setguid(gl, NULL, guid);
	}
	if (gl->nchild == 0) {
		rc = 0;
		goto out;
	}
	gs_clear(&want);
	sd->src->reply_max = REPLY_MAX + (uint64_t)gl->nchild * 41;
	if (csync_call(sd->src, "APPLY", kv, &r, NULL) == -1 &&
	    r.status[0] == '\0') {
		warnx_("source: APPLY RESERVE: %s", sd->src->err);
		set_fatal(sd, csync_exit_status(sd->src->errclass));
		goto out;
	}
	for (i = 0; i < r.nitems; i++) {
		if (strcmp(r.items[i]->key, "MISSING") != 0 ||
		    r.items[i]->kind != DL_LIST)
			continue;
		for (g = r.items[i]->head; g != NULL; g = g->next)
			if (g->kind == DL_STRING &&
			    guid_valid(g->s, g->len)) {
				guid_normalise(g->s, guid);
				gs_add(&want, guid);
			}
	}
	if (strcmp(r.status, "OK") != 0) {
		printf("NO MASTER COPYBACK %s: APPLY RESERVE on the source: "
		    "%s %s\n", cb->name, r.status, r.text ? r.text : "");
		csync_reply_clear(&r);
		goto out;
	}
	csync_reply_clear(&r);
	if (want.n == 0) {
		rc = 0;
		goto out;
	}
	/* What the source lacks comes from the replica's copies. */
	if ((fetch = calloc(want.n, sizeof(*fetch))) == NULL)
		goto out;
	for (i = 0; i < cb->nrecs && nfetch < want.n; i++) {
		guid_normalise(cb->recs[i].guid, guid);
		if (!(cb->recs[i].sysflags & SF_EXPUNGED) &&
		    gs_has(&want, guid)) {
			fetch[nfetch++] = &cb->recs[i];
			gs_del(&want, guid);
		}
	}
	if (want.n > 0) {
		printf("NO MASTER COPYBACK %s: the source lacks a body of "
		    "its own mailbox\n", cb->name);
		goto out;
	}
	msg = dlist_newlist(NULL, "MESSAGE");
	sd->cs->reply_max = 0;
	for (i = 0; i < nfetch; i += FETCH_WINDOW) {
		size_t end = i + FETCH_WINDOW < nfetch ? i + FETCH_WINDOW :
		    nfetch;

		for (j = i; j < end; j++) {
			struct dlist *f = dlist_newkvlist(NULL, "FETCH");

			dlist_setatom(f, "MBOXNAME", cb->rname);
			dlist_setatom(f, "PARTITION", cb->rpart);
			dlist_setatom(f, "UNIQUEID", cb->runiqueid);
			dlist_setguid(f, "GUID", fetch[j]->guid);
			dlist_setnum32(f, "UID", fetch[j]->uid);
			if (csync_send(sd->cs, "GET", f) == -1) {
				dlist_free(f);
				warnx_("GET FETCH: %s", sd->cs->err);
				set_fatal(sd, csync_exit_status(
				    sd->cs->errclass));
				goto out;
			}
			dlist_free(f);
		}
		for (j = i; j < end; j++) {
			const struct dlist *f = NULL;

			if (csync_read_reply(sd->cs, &r, &sink) == -1) {
				warnx_("GET FETCH: %s", sd->cs->err);
				set_fatal(sd, csync_exit_status(
				    sd->cs->errclass));
				csync_reply_clear(&r);
				goto out;
			}
			for (k = 0; k < r.nitems; k++)
				if (strcmp(r.items[k]->key, "MESSAGE") == 0)
					f = r.items[k];
			if (strcmp(r.status, "OK") == 0 && f != NULL &&
			    f->kind == DL_FILE && f->file->file_ok &&
			    f->file->path != NULL &&
			    strcasecmp(f->file->guid, fetch[j]->guid) == 0) {
				guid_normalise(fetch[j]->guid, guid);
				dlist_setfile(msg, NULL, part, guid,
				    f->file->size, f->file->path);
				sd->bodies++;
				sd->bytes += f->file->size;
			} else {
				if (f != NULL && f->kind == DL_FILE &&
				    f->file->path != NULL)
					unlink(f->file->path);
				printf("NO MASTER COPYBACK %s: body %s of UID "
				    "%" PRIu32 " not fetched from the replica: "
				    "%s %s\n", cb->name, fetch[j]->guid,
				    fetch[j]->uid, r.status,
				    r.text ? r.text : "");
				/* The window's other replies are still read. */
				bad = 1;
			}
			csync_reply_clear(&r);
		}
		if (bad)
			goto out;
	}
	sd->cs->reply_max = REPLY_MAX;
	sd->src->reply_max = REPLY_MAX;
	if (csync_call(sd->src, "APPLY", msg, &r, NULL) == -1 &&
	    r.status[0] == '\0') {
		warnx_("source: APPLY MESSAGE: %s", sd->src->err);
		set_fatal(sd, csync_exit_status(sd->src->errclass));
		goto out;
	}
	if (strcmp(r.status, "OK") != 0)
		printf("NO MASTER COPYBACK %s: APPLY MESSAGE on the source: "
		    "%s %s\n", cb->name, r.status, r.text ? r.text : "");
	else
		rc = 0;
	csync_reply_clear(&r);
out:
	if (msg != NULL) {
		const struct dlist *f;

		for (f = msg->head; f != NULL; f = f->next)
			if (f->kind == DL_FILE && f->file->path != NULL)
				unlink(f->file->path);
		dlist_free(msg);
	}
	sd->cs->reply_max = REPLY_MAX;
	if (sd->src != NULL)
		sd->src->reply_max = 0;
	free(fetch);
	free(want.v);
	dlist_free(kv);
	return rc;
}

/*
 * The master's side of a copy-back into a csync source: the source's
 * mailbox as it is now (GET FULLMAILBOX), checked against the state
 * the plan was made from, the bodies it lacks uploaded, then one
 * APPLY MAILBOX carrying its records with the copy-back merged in,
 * conditional on the state read (SINCE_MODSEQ, SINCE_CRC,
 * SINCE_CRC_ANNOT): a source that changed meanwhile refuses it.
 * Returns 0, 1 when the source is not at the planned state (or
 * refused as changed), -1 on failure with the reason in sd->cberr, -2
 * on failure already reported.
 */
static int
copyback_source(struct sender *sd, const struct copyback *cb, size_t *nnew)
{
	struct dlist *arg, *kv = NULL, *rl;
	const struct dlist *mk = NULL, *recs, *d;
	struct csync_reply r;
	struct store_mailbox mb;
	struct store_annot *annots = NULL;
	struct store_record *src = NULL, *out = NULL;
	size_t nannots = 0, nsrc = 0, nout = 0, i;
	uint64_t since;
	uint32_t since_crc, since_crc_annot, ob, oa, nb, na;
	char err[256];
	int rc = -1;

	*nnew = 0;
	memset(&mb, 0, sizeof(mb));
	sd->cberr[0] = '\0';
	if (sd->src == NULL) {
		/* Unreachable: this mailbox fails, nothing is expunged on
		 * the replica, and the batch is kept for a later run. */
		int fatal = sd->fatal;

		if (source_ready(sd) == -1) {
			sd->fatal = fatal;
			snprintf(sd->cberr, sizeof(sd->cberr), "the master is "
			    "a csync source that cannot be reached");
			return -1;
		}
	}
	arg = dlist_setatom(NULL, "FULLMAILBOX", cb->name);
	if (csync_call(sd->src, "GET", arg, &r, NULL) == -1 &&
	    r.status[0] == '\0') {
		dlist_free(arg);
		warnx_("source: GET FULLMAILBOX %s: %s", cb->name,
		    sd->src->err);
		set_fatal(sd, csync_exit_status(sd->src->errclass));
		csync_reply_clear(&r);
		return -2;
	}
	dlist_free(arg);
	if (strcmp(r.status, "OK") != 0) {
		rc = 1;		/* gone from the source: plan again */
		goto out;
	}
	for (i = 0; i < r.nitems; i++)
		if (strcmp(r.items[i]->key, "MAILBOX") == 0)
			mk = r.items[i];
	if (mk == NULL || mbdl_parse_mailbox(mk, &mb, &annots, &nannots, 0,
	    err, sizeof(err)) == -1) {
		snprintf(sd->cberr, sizeof(sd->cberr), "GET FULLMAILBOX on "
		    "the source: %s", mk == NULL ? "no MAILBOX" : err);
		goto out;
	}
	if (mb.uniqueid == NULL || strcmp(mb.uniqueid, cb->uniqueid) != 0 ||
	    strcmp(mb.name, cb->name) != 0 || mb.highestmodseq != cb->since) {
		rc = 1;
		goto out;
	}
	recs = dlist_child(mk, "RECORD");
	if (recs != NULL && recs->nchild > 0 &&
	    (src = calloc(recs->nchild, sizeof(*src))) == NULL) {
		snprintf(sd->cberr, sizeof(sd->cberr), "out of memory");
		goto out;
	}
	for (d = recs ? recs->head : NULL; d != NULL; d = d->next) {
		if (mbdl_parse_record(d, &src[nsrc], err, sizeof(err)) == -1) {
			snprintf(sd->cberr, sizeof(sd->cberr), "GET "
			    "FULLMAILBOX on the source: %s", err);
			goto out;
		}
		nsrc++;
	}
	since = mb.highestmodseq;
	since_crc = mb.sync_crc;
	since_crc_annot = mb.sync_crc_annot;
	crc_sums(src, nsrc, &ob, &oa);
	if (copyback_merge(sd, cb, &mb, src, nsrc, &out, &nout, nnew) == -1)
		goto out;
	/* Records the merge left alone cancel out of the sums. */
	crc_sums(out, nout, &nb, &na);
	mb.sync_crc = since_crc ^ ob ^ nb;
	mb.sync_crc_annot = since_crc_annot ^ oa ^ na;
	if (copyback_upload(sd, cb, mb.partition ? mb.partition : "default",
	    mb.name, out, nout) == -1) {
		rc = -2;
		goto out;
	}
	kv = mbdl_mailbox(NULL, "MAILBOX", &mb, annots, nannots);
	dlist_setnum64(kv, "SINCE_MODSEQ", since);
	dlist_setnum32(kv, "SINCE_CRC", since_crc);
	dlist_setnum32(kv, "SINCE_CRC_ANNOT", since_crc_annot);
	rl = dlist_newlist(kv, "RECORD");
	for (i = 0; i < nout; i++)
		mbdl_record(rl, &out[i]);
	csync_reply_clear(&r);
	sd->src->reply_max = REPLY_MAX;
	if (csync_call(sd->src, "APPLY", kv, &r, NULL) == -1 &&
	    r.status[0] == '\0') {
		warnx_("source: APPLY MAILBOX %s: %s", cb->name,
		    sd->src->err);
		set_fatal(sd, csync_exit_status(sd->src->errclass));
		goto out;
	}
	if (strcmp(r.code, "IMAP_SYNC_CHANGED") == 0)
		rc = 1;
	else if (strcmp(r.status, "OK") != 0)
		snprintf(sd->cberr, sizeof(sd->cberr), "APPLY MAILBOX on the "
		    "source: %s %s", r.status, r.text ? r.text : "");
	else
		rc = 0;
out:
	if (sd->src != NULL)
		sd->src->reply_max = 0;
	csync_reply_clear(&r);
	dlist_free(kv);
	free(out);
	for (i = 0; i < nsrc; i++)
		store_record_clear(&src[i]);
	free(src);
	store_mailbox_clear(&mb);
	store_annots_free(annots, nannots);
	return rc;
}

/*
 * "MASTER COPYBACK %(...)": take back into the master's store what only
 * the replica holds, then expunge on the replica the UIDs the master
 * gave new numbers, and plan the mailbox's owner again: the new plan
 * carries the master's state, which is now ahead, to the replica.
 */
static void
do_copyback(struct sender *sd, const struct dlist *d)
{
	struct copyback cb;
	struct store_mailbox mb;
	struct dlist *kv, *ul;
	const struct dlist *u;
	char err[256], what[DESC_MAX];
	size_t nnew;
	int r;

	if (copyback_parse(d, &cb, err, sizeof(err)) == -1) {
		warnx_("plan: bad MASTER COPYBACK: %s", err);
		copyback_clear(&cb);
		set_fatal(sd, EXIT_PROTOCOL);
		return;
	}
	if (drain(sd) == -1)
		goto out;
	replan_target(cb.name, what, sizeof(what));
	if (sd->store == NULL) {
		r = copyback_source(sd, &cb, &nnew);
		if (sd->fatal)
			goto out;
		if (r == -2)
			goto failed;
		goto applied;
	}
	memset(&mb, 0, sizeof(mb));
	r = store_mailbox_get_uniqueid(sd->store, cb.uniqueid, &mb);
	if (r == -1) {
		printf("NO MASTER COPYBACK %s: %s\n", cb.name,
		    store_error(sd->store));
		goto failed;
	}
	if (r == 0 && mb.partition != NULL &&
	    copyback_fetch(sd, &cb, mb.partition) == -1) {
		store_mailbox_clear(&mb);
		if (sd->fatal)
			goto out;
		goto failed;
	}
	store_mailbox_clear(&mb);
	store_set_synclog(sd->store, 1);
	r = r == STORE_NOTFOUND ? 1 : copyback_apply(sd, &cb, &nnew);
	store_set_synclog(sd->store, 0);
applied:
	if (r == 1) {
		/* The master moved on since the plan: plan it again. */
		printf("NO MASTER COPYBACK %s: changed on the master since "
		    "planned (re-planning %s %s)\n", cb.name,
		    what[1] == 'u' ? "user" : "mailbox", what + 2);
		stale_add(sd, what);
		goto out;
	}
	if (r == -1) {
		printf("NO MASTER COPYBACK %s: %s\n", cb.name, sd->cberr);
		goto failed;
	}
	sd->ok++;
	printf("OK MASTER COPYBACK %s: %zu records copied back to the master "
	    "(re-planning %s %s)\n", cb.name, nnew,
	    what[1] == 'u' ? "user" : "mailbox", what + 2);
	if (cb.expunge != NULL && cb.expunge->head != NULL) {
		kv = dlist_newkvlist(NULL, "EXPUNGE");
		dlist_setatom(kv, "MBOXNAME", cb.rname);
		dlist_setatom(kv, "UNIQUEID", cb.runiqueid);
		ul = dlist_newlist(kv, "UID");
		for (u = cb.expunge->head; u != NULL; u = u->next) {
			uint32_t uid;

			dlist_tonum32(u, &uid);
			dlist_setnum32(ul, NULL, uid);
		}
		send_cmd(sd, "APPLY", kv);
		dlist_free(kv);
	}
	stale_add(sd, what);
	goto out;
failed:
	sd->failed++;
	sd->batch_failed = 1;
out:
	fflush(stdout);
	copyback_clear(&cb);
}

/* One argument of a control line, quoted as sync_log arguments are;
 * advances *pp.  Returns 0, or -1 when malformed. */
static int
ctl_arg(const char **pp, char *buf, size_t size)
{
	const char *p = *pp;
	size_t n = 0;

	while (*p == ' ')
		p++;
	if (*p == '\0')
		return -1;
	if (*p == '"') {
		for (p++; *p != '"'; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			if (*p == '\0' || n + 1 >= size)
				return -1;
			buf[n++] = *p;
		}
		p++;
	} else
		while (*p != '\0' && *p != ' ') {
			if (n + 1 >= size)
				return -1;
			buf[n++] = *p++;
		}
	buf[n] = '\0';
	*pp = p;
	return 0;
}

/* A sibling tool (synclog-tail, sync-plan): next to this program
 * (installed or in the build tree), or on PATH. */
static void
find_tool(const char *tool, char *buf, size_t size)
{
	char self[PATH_MAX], *dir;
	ssize_t n;
	int i;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		dir = dirname(self);
		for (i = 0; i < 3; i++) {
			if (i == 0)
				snprintf(buf, size, "%s/%s", dir, tool);
			else if (i == 1)
				snprintf(buf, size, "%s/../%s/%s", dir, tool,
				    tool);
			else
				snprintf(buf, size, "%s/../bin/%s", dir, tool);
			if (access(buf, X_OK) == 0)
				return;
		}
	}
	strlcpy(buf, tool, size);
}

/*
 * Re-plan what the replica refused as stale and apply the new plan on
 * this connection: sync-plan reads the replica's state afresh.  Each
 * user (or shared mailbox) gets at most REPLAN_MAX new plans; one still
 * refused after that is a failure of the batch.
 */
static void
recover(struct sender *sd)
{
	char tool[PATH_MAX], what[DESC_MAX];
	const char *argv[20];
	int attempt, argc, pfd[2], status;
	char **todo;
	size_t ntodo, t;
	struct prot *in;
	pid_t pid;

	if (sd->depth > 0 || sd->nstale == 0)
		return;
	/* A re-plan's own stale refusals land in sd->stale. */
	todo = sd->stale;
	ntodo = sd->nstale;
	sd->stale = NULL;
	sd->nstale = 0;
	for (t = 0; t < ntodo && !sd->fatal; t++) {
		strlcpy(what, todo[t], sizeof(what));
		for (attempt = 1; attempt <= REPLAN_MAX; attempt++) {
			unsigned long failed = sd->failed;

			find_tool("sync-plan", tool, sizeof(tool));
			argc = 0;
			argv[argc++] = tool;
			argv[argc++] = "-C";
			argv[argc++] = sd->o->conf_path;
			if (sd->o->channel != NULL) {
				argv[argc++] = "-n";
				argv[argc++] = sd->o->channel;
			}
			if (sd->o->target != NULL) {
				argv[argc++] = "-S";
				argv[argc++] = sd->o->target;
			} else if (sd->o->command != NULL) {
				argv[argc++] = "-e";
				argv[argc++] = sd->o->command;
			}
			if (sd->o->source != NULL) {
				argv[argc++] = "-M";
				argv[argc++] = sd->o->source;
			} else if (sd->o->source_command != NULL) {
				argv[argc++] = "--source-command";
				argv[argc++] = sd->o->source_command;
			}
			/* Every record compared, as Cyrus's client does
			 * after a refusal: a split brain is copied back
			 * (or, after APPLY FORCE, overwritten). */
			argv[argc++] = "--full";
			if (sd->forced)
				argv[argc++] = "-O";
			argv[argc++] = what;
			argv[argc] = NULL;
			printf("%%replan %s %s (attempt %d of %d)\n",
			    what[1] == 'u' ? "user" : "mailbox", what + 2,
			    attempt, REPLAN_MAX);
			fflush(stdout);
			sd->replans++;
			if (pipe(pfd) == -1) {
				sd->fatal = EXIT_IOERR;
				break;
			}
			pid = fork();
			if (pid == 0) {
				close(pfd[0]);
				if (dup2(pfd[1], 1) == -1)
					_exit(127);
				close(pfd[1]);
				execvp(tool, (char **)argv);
				_exit(127);
			}
			close(pfd[1]);
			if (pid == -1) {
				close(pfd[0]);
				sd->fatal = EXIT_IOERR;
				break;
			}
			in = prot_new(pfd[0], -1);
			sd->depth = 1;
			apply_plan(sd, in);
			sd->depth = 0;
			prot_free(in);
			close(pfd[0]);
			status = 0;
			if (waitpid(pid, &status, 0) == -1 ||
			    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				warnx_("re-plan of %s failed (sync-plan exit "
				    "%d)", what + 2, WIFEXITED(status) ?
				    WEXITSTATUS(status) : -1);
				if (sd->failed == failed) {
					sd->failed++;
					sd->batch_failed = 1;
				}
				break;
			}
			if (sd->nstale == 0)
				break;	/* applied without a stale refusal */
			/* Refused again: drop the new entry, try again. */
			while (sd->nstale > 0)
				free(sd->stale[--sd->nstale]);
			if (attempt == REPLAN_MAX) {
				printf("NO re-plan %s: still refused after %d "
				    "attempts\n", what + 2, REPLAN_MAX);
				sd->failed++;
				sd->batch_failed = 1;
			}
		}
		fflush(stdout);
	}
	for (t = 0; t < ntodo; t++)
		free(todo[t]);
	free(todo);
	while (sd->nstale > 0)
		free(sd->stale[--sd->nstale]);
	free(sd->stale);
	sd->stale = NULL;
}

/*
 * "%commit FILE ID": every command derived from the claimed log file FILE
 * precedes this line.  Once all of them succeeded the file is removed
 * (synclog_commit(), as "synclog-tail --commit" does it), if FILE is a
 * claimed file of a configured channel and still the one claimed (ID).
 */
static void
do_commit(struct sender *sd, const char *args)
{
	char path[PATH_MAX], id[128], err[PATH_MAX + 256];

	if (drain(sd) == -1)
		return;
	recover(sd);
	if (ctl_arg(&args, path, sizeof(path)) == -1) {
		warnx_("bad %%commit line in the plan");
		sd->fatal = EXIT_PROTOCOL;
		return;
	}
	if (ctl_arg(&args, id, sizeof(id)) == -1)
		id[0] = '\0';
	if (sd->batch_failed) {
		printf("%%kept %s\n", path);
		fflush(stdout);
		return;
	}
	if (synclog_commit(sd->conf, sd->o->channel, NULL, path,
	    id[0] != '\0' ? id : NULL, err, sizeof(err)) !=
	    SYNCLOG_COMMIT_OK) {
		warnx_("%s", err);
		warnx_("commit of %s failed", path);
		printf("%%kept %s\n", path);
		sd->failed++;
	} else
		printf("%%committed %s\n", path);
	fflush(stdout);
}

static void
apply_plan(struct sender *sd, struct prot *in)
{
	static char line[PLAN_LINE_MAX + 1];
	struct plan_line l;
	struct dlist *d;
	char err[512];

	while (!sd->fatal) {
		if (plan_next(in, &l, line, sizeof(line), err,
		    sizeof(err)) == -1) {
			warnx_("%s", err);
			sd->fatal = EXIT_PROTOCOL;
			break;
		}
		if (l.kind == PLAN_EOF)
			break;
		if (l.kind == PLAN_CONTROL) {
			if (strncmp(line, "%syncpipe-plan ", 15) == 0 &&
			    atoi(line + 15) != PLAN_VERSION) {
				warnx_("plan version %s not supported",
				    line + 15);
				sd->fatal = EXIT_PROTOCOL;
			} else if (strncmp(line, "%commit ", 8) == 0)
				do_commit(sd, line + 8);
			else if (strncmp(line, "%kept ", 6) == 0) {
				/* Planning failed: passed on for the loop. */
				printf("%s\n", line);
				fflush(stdout);
			}
			else if (strncmp(line, "%end", 4) == 0) {
				if (drain(sd) == 0)
					recover(sd);
				gs_clear(&sd->reserved);
				gs_clear(&sd->missing);
				if (sd->depth == 0)
					sd->batch_failed = 0;
			}
			continue;
		}
		if (l.kind == PLAN_MESSAGE) {
			do_message(sd, l.text);
			continue;
		}
		d = l.value;
		if (strcmp(l.word, "MASTER") == 0) {
			/* A change to the master's own store, never sent. */
			if (strcmp(l.key, "COPYBACK") == 0)
				do_copyback(sd, d);
			else {
				warnx_("plan: unknown MASTER %s", l.key);
				sd->fatal = EXIT_PROTOCOL;
			}
		} else if (strcmp(l.word, "APPLY") == 0 && strcasecmp(d->key,
		    "RESERVE") == 0)
			do_reserve(sd, d);
		else {
			if (strcmp(l.word, "APPLY") == 0 &&
			    strcmp(l.key, "FORCE") == 0)
				sd->forced = 1;
			send_cmd(sd, l.word, d);
		}
		dlist_free(d);
	}
	if (!sd->fatal && drain(sd) == 0)
		recover(sd);
}

static void
add_partition(const char *key, const char *value, const char *file, int line,
    void *arg)
{
	struct sender *sd = arg;
	char **nv;

	(void)value; (void)file; (void)line;
	if (strncmp(key, "partition-", 10) != 0)
		return;
	nv = reallocarray(sd->parts, sd->nparts + 1, sizeof(*nv));
	if (nv == NULL)
		return;
	sd->parts = nv;
	sd->parts[sd->nparts++] = strdup(key + 10);
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct sender sd;
	struct csync_opts co;
	struct prot *in;
	char err[512], tbuf[512];
	enum csync_err cls;
	int ch, fd = 0;
	size_t i;
	static char sbuf[512];
	static const struct option lopts[] = {
		{ "source-command", required_argument, NULL, 1 },
		{ NULL, 0, NULL, 0 }
	};

	memset(&o, 0, sizeof(o));
	o.conf_path = getenv("SYNCPIPE_CONF") ? getenv("SYNCPIPE_CONF") :
	    CONF_DEFAULT_PATH;
	o.timeout = 1800;
	while ((ch = getopt_long(argc, argv, "C:e:f:M:n:S:t:vz", lopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'C': o.conf_path = optarg; break;
		case 'e': o.command = optarg; break;
		case 'M': o.source = optarg; break;
		case 1: o.source_command = optarg; break;
		case 'f': o.planfile = optarg; break;
		case 'n': o.channel = optarg; break;
		case 'S': o.target = optarg; break;
		case 't': o.timeout = atoi(optarg); break;
		case 'v': o.verbose++; break;
		case 'z': o.compress = 1; break;
		default: usage();
		}
	}
	if (optind != argc || (o.target && o.command) || o.timeout < 0 ||
	    (o.source && o.source_command))
		usage();

	memset(&sd, 0, sizeof(sd));
	sd.o = &o;
	sd.conf = conf_load(o.conf_path, err, sizeof(err));
	if (sd.conf == NULL) {
		warnx_("%s", err);
		return EXIT_CONFIG;
	}
	conf_foreach(sd.conf, add_partition, &sd);
	csync_source_opts_from_conf(&sd.srcopts, sd.conf, o.channel, o.source,
	    sbuf, sizeof(sbuf));
	if (o.source_command != NULL)
		sd.srcopts.target = NULL;
	sd.srcopts.command = o.source_command;
	sd.srcopts.timeout = o.timeout;
	/* With a source, bodies come from it: the store is not opened. */
	if (sd.srcopts.target == NULL && sd.srcopts.command == NULL &&
	    (sd.store = store_open(sd.conf, err, sizeof(err))) == NULL) {
		warnx_("%s", err);
		return EXIT_CONFIG;
	}
	if (o.planfile != NULL && (fd = open(o.planfile, O_RDONLY)) == -1) {
		warnx_("%s: %s", o.planfile, strerror(errno));
		return EXIT_IOERR;
	}
	memset(&co, 0, sizeof(co));
	csync_opts_from_conf(&co, sd.conf, o.channel, o.target, tbuf,
	    sizeof(tbuf));
	if (o.command != NULL)
		co.target = NULL;
	co.command = o.command;
	if (co.command == NULL && co.target == NULL) {
		warnx_("no replica: give -S, -e or sync_host");
		return EXIT_CONFIG;
	}
	co.compress = o.compress;
	co.sieve_mailbox = 0;	/* the plan says so when it wants it */
	co.timeout = o.timeout;
	if (o.verbose > 1)
		co.trace = trace;
	sd.cs = csync_open(&co, err, sizeof(err), &cls);
	if (sd.cs == NULL) {
		warnx_("%s", err);
		return csync_exit_status(cls);
	}
	in = prot_new(fd, -1);
	sd.progress = isatty(2) && o.verbose < 2;
	clock_gettime(CLOCK_MONOTONIC, &sd.start);
	apply_plan(&sd, in);
	progress(&sd, 1);
	prot_free(in);
	csync_close(sd.cs);
	if (sd.src != NULL)
		csync_close(sd.src);
	if (sd.spooldir[0] != '\0' && rmdir(sd.spooldir) == -1)
		warnx_("%s: %s", sd.spooldir, strerror(errno));
	if (o.verbose)
		fprintf(stderr, "sync-send: %lu applied, %lu failed, %lu bodies "
		    "(%" PRIu64 " bytes), %lu re-plans\n", sd.ok, sd.failed,
		    sd.bodies, sd.bytes, sd.replans);
	if (sd.store != NULL)
		store_close(sd.store);
	conf_free(sd.conf);
	for (i = 0; i < sd.nparts; i++)
		free(sd.parts[i]);
	free(sd.parts);
	free(sd.inflight);
	free(sd.reserved.v);
	free(sd.missing.v);
	for (i = 0; i < sd.nstale; i++)
		free(sd.stale[i]);
	free(sd.stale);
	if (sd.fatal)
		return sd.fatal;
	return sd.failed ? EXIT_FAILED : EXIT_OK;
}
