/*
 * synclog-tail: claim a channel's sync_log files the way Cyrus 3.6's
 * rolling sync_client does, coalesce them and write the action stream
 * (syncpipe-actions(5)).  See synclog-tail(1).
 */
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "synclog.h"
#include "synclog_read.h"

enum result {
	RES_OK,
	RES_FAIL,
	RES_USAGE,
	RES_TEMP,
	RES_CONFIG
};

enum mode {
	MODE_TAIL,
	MODE_COMMIT,
	MODE_STATUS
};

struct opts {
	enum mode	 mode;
	int		 once;
	int		 follow;
	const char	*config;
	const char	*channel;
	const char	*file;
	const char	*shutdown;
	double		 delay;		/* < 0: from the config */
	long		 retry;
	const char	*commit;
	const char	*commit_id;
	const char	*lockdir;	/* --skip-locked */
	int		 prom;
};

/* Identity of a claimed file, so that a stale commit cannot remove a
 * newer file that reuses the name. */
struct fileid {
	int		 set;
	dev_t		 dev;
	ino_t		 ino;
	off_t		 size;
	struct timespec	 mtime;
};

/*
 * --skip-locked: the lock decision of each owner met in one batch, in a
 * small open-addressing table.
 */
struct lockcache {
	char		**keys;
	signed char	 *locked;
	size_t		  size;		/* slots, a power of two */
	size_t		  used;
};

struct tail {
	const struct opts *o;
	const struct conf *conf;
	char		 log[PATH_MAX];
	char		 run[PATH_MAX];
	char		 rejects[PATH_MAX];
	char		 dir[PATH_MAX];
	const char	*logname;	/* basenames inside dir */
	const char	*runname;
	const char	*shutdown;
	double		 delay;
	unsigned long	 batch;
	int		 inofd;
	int		 watching;
	int		 skipped;	/* the last claim left lines behind */
	struct fileid	 handed_id;	/* the claimed file whose ... */
	struct lockcache handed;	/* ... lines these are back in the log */
	sigset_t	 waitmask;	/* mask while waiting */
};

static volatile sig_atomic_t stopping;
static volatile sig_atomic_t kept;	/* SIGUSR1: a batch was not committed */

#define RETRY_DEFAULT	60
#define SHUTDOWN_POLL	0.25	/* seconds between shutdown-file checks */
#define KEPT_BACKOFF	1.0	/* first re-emission after a kept batch */
#define SKIP_HOLDOFF	1.0	/* least time between claims that skip */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: synclog-tail [-1r] [-C config] [-n channel] [-f file] "
	    "[-F shutdown-file]\n"
	    "                    [-d delay] [--retry seconds] "
	    "[--skip-locked lockdir]\n"
	    "       synclog-tail [-C config] [-n channel] [-f file] "
	    "--commit path [id]\n"
	    "       synclog-tail --status [-C config] [-n channel] "
	    "[--format text|prom]\n");
}

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		kept = 1;
	else
		stopping = 1;
}

static double
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
fileid_of(const struct stat *st, struct fileid *id)
{
	id->set = 1;
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = st->st_size;
	id->mtime = st->st_mtim;
}

static int
fileid_eq(const struct fileid *a, const struct fileid *b)
{
	return a->set && b->set && a->dev == b->dev && a->ino == b->ino &&
	    a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void
fileid_format(const struct fileid *id, char *buf, size_t size)
{
	synclog_file_id(id->dev, id->ino, id->size, &id->mtime, buf, size);
}

/*
 * Output.  Everything goes through stdio; a batch is flushed at its end
 * so that a consumer sees whole batches promptly.
 */
static int
out_line(const char *line, size_t len, void *arg)
{
	(void)arg;
	if (fwrite(line, 1, len, stdout) != len)
		return -1;
	return 0;
}

static int
out_control(const char *word, const char *a1, const char *a2)
{
	char line[2 * PATH_MAX + 128];
	int n;

	/* Control lines quote their arguments as the log does. */
	if ((n = synclog_format(line, sizeof(line), word, a1, a2)) < 0)
		return -1;
	return out_line(line, (size_t)n, NULL);
}

static enum result
out_error(void)
{
	warn("stdout");
	return RES_FAIL;
}

/*
 * Rejected lines: reported with file:line on stderr and appended,
 * verbatim, to the rejects file, which is fsynced before the batch is
 * emitted (so a commit never removes the only copy).
 */
struct rejects {
	const char	*path;		/* NULL: stderr only */
	int		 fd;
	int		 failed;
	unsigned long	 count;
};

static void
rejects_write(struct rejects *rj, const char *p, size_t len)
{
	ssize_t n;

	if (rj->path == NULL || rj->failed)
		return;
	if (rj->fd == -1 && (rj->fd = open(rj->path,
	    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) == -1) {
		warn("%s", rj->path);
		rj->failed = 1;
		return;
	}
	while (len > 0) {
		n = write(rj->fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			warn("%s", rj->path);
			rj->failed = 1;
			return;
		}
		p += n;
		len -= (size_t)n;
	}
}

static int
rejects_close(struct rejects *rj)
{
	int r = rj->failed ? -1 : 0;

	if (rj->fd != -1) {
		if (fsync(rj->fd) == -1) {
			warn("fsync %s", rj->path);
			r = -1;
		}
		if (close(rj->fd) == -1)
			r = -1;
		rj->fd = -1;
	}
	return r;
}

/*
 * --skip-locked.  An owner is locked when another process holds its
 * sync lock file, {lockdir}/S-<user> ('/' as '^'; S-*shared* for shared
 * mailboxes), as sync_client(8) takes it.  The lock is only tested (a
 * shared, non-blocking flock(2) released at once), never held.
 */
struct skip {
	const char	*dir;
	struct lockcache cache;
	char		*buf;		/* records left for a later pass */
	size_t		 len;
	size_t		 cap;
};

static size_t
skip_hash(const char *s)
{
	size_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static int
skip_grow(struct lockcache *lc)
{
	struct lockcache n;
	size_t i, j;

	n.size = lc->size == 0 ? 64 : lc->size * 2;
	n.used = lc->used;
	if ((n.keys = calloc(n.size, sizeof(*n.keys))) == NULL)
		return -1;
	if ((n.locked = calloc(n.size, sizeof(*n.locked))) == NULL) {
		free(n.keys);
		return -1;
	}
	for (i = 0; i < lc->size; i++) {
		if (lc->keys[i] == NULL)
			continue;
		for (j = skip_hash(lc->keys[i]) & (n.size - 1);
		    n.keys[j] != NULL; j = (j + 1) & (n.size - 1))
			;
		n.keys[j] = lc->keys[i];
		n.locked[j] = lc->locked[i];
	}
	free(lc->keys);
	free(lc->locked);
	*lc = n;
	return 0;
}

static void
skip_free(struct skip *sk)
{
	size_t i;

	for (i = 0; i < sk->cache.size; i++)
		free(sk->cache.keys[i]);
	free(sk->cache.keys);
	free(sk->cache.locked);
	free(sk->buf);
}

/* 1 if owner ("" for shared mailboxes) is locked, 0 if not, -1 when out
 * of memory.  Each owner is tested once per batch. */
static int
skip_locked(struct skip *sk, const char *owner)
{
	struct lockcache *lc = &sk->cache;
	char path[PATH_MAX], *p;
	size_t i, mask;
	int fd, n, locked = 0;

	if (lc->used * 2 >= lc->size && skip_grow(lc) == -1)
		return -1;
	mask = lc->size - 1;
	for (i = skip_hash(owner) & mask; lc->keys[i] != NULL;
	    i = (i + 1) & mask)
		if (strcmp(lc->keys[i], owner) == 0)
			return lc->locked[i];
	n = snprintf(path, sizeof(path), "%s/S-%s", sk->dir,
	    *owner != '\0' ? owner : "*shared*");
	if (n > 0 && n < (int)sizeof(path)) {
		for (p = path + strlen(sk->dir) + 3; *p != '\0'; p++)
			if (*p == '/')
				*p = '^';
		if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) !=
		    -1) {
			if (flock(fd, LOCK_SH | LOCK_NB) == -1 &&
			    errno == EWOULDBLOCK)
				locked = 1;
			close(fd);
		}
	}
	if ((lc->keys[i] = strdup(owner)) == NULL)
		return -1;
	lc->locked[i] = (signed char)locked;
	lc->used++;
	if (locked)
		warnx("%s: locked by another run: left in the log",
		    *owner != '\0' ? owner : "shared mailboxes");
	return locked;
}

/*
 * The lines of one claimed file already handed back to the log, so that
 * emitting that file again (after a kept batch) does not append them a
 * second time.  The keys of a lockcache serve as a set of strings.
 */
static int
handed_has(const struct lockcache *lc, const char *line)
{
	size_t i;

	if (lc->size == 0)
		return 0;
	for (i = skip_hash(line) & (lc->size - 1); lc->keys[i] != NULL;
	    i = (i + 1) & (lc->size - 1))
		if (strcmp(lc->keys[i], line) == 0)
			return 1;
	return 0;
}

static int
handed_add(struct lockcache *lc, const char *line)
{
	size_t i;

	if (handed_has(lc, line))
		return 0;
	if (lc->used * 2 >= lc->size && skip_grow(lc) == -1)
		return -1;
	for (i = skip_hash(line) & (lc->size - 1); lc->keys[i] != NULL;
	    i = (i + 1) & (lc->size - 1))
		;
	if ((lc->keys[i] = strdup(line)) == NULL)
		return -1;
	lc->used++;
	return 0;
}

static void
handed_clear(struct lockcache *lc)
{
	size_t i;

	for (i = 0; i < lc->size; i++)
		free(lc->keys[i]);
	free(lc->keys);
	free(lc->locked);
	memset(lc, 0, sizeof(*lc));
}

/*
 * Append to the log the lines (each ending in a newline) set aside from
 * the claimed file id, but not those already appended from it.  buf is
 * rewritten.
 */
static enum result
hand_back(struct tail *t, const struct fileid *id, char *buf, size_t len)
{
	char err[512], *p, *e, *end = buf + len;
	size_t n = 0, ll;
	int has;

	if (!fileid_eq(id, &t->handed_id)) {
		handed_clear(&t->handed);
		t->handed_id = *id;
	}
	for (p = buf; p < end; p = e + 1) {
		if ((e = memchr(p, '\n', end - p)) == NULL)
			e = end - 1;
		ll = e - p + 1;
		*e = '\0';
		has = handed_has(&t->handed, p);
		*e = '\n';
		if (!has) {
			memmove(buf + n, p, ll);
			n += ll;
		}
	}
	if (n == 0)
		return RES_OK;
	if (synclog_append_channel(t->conf, t->o->channel, buf, n, err,
	    sizeof(err)) == -1) {
		warnx("%s", err);
		return RES_TEMP;
	}
	for (p = buf, end = buf + n; p < end; p = e + 1) {
		/* Formatted records end in a newline; a last one without
		 * is simply not remembered. */
		if ((e = memchr(p, '\n', end - p)) == NULL)
			break;
		*e = '\0';
		if (handed_add(&t->handed, p) == -1) {
			/* Forgetting only costs a duplicate line later. */
			handed_clear(&t->handed);
			t->handed_id.set = 0;
			break;
		}
	}
	return RES_OK;
}

/*
 * The userid owning a mailbox, as the lock file names it: the internal
 * name's '^' is the userid's '.' (user.first^last belongs to first.last).
 */
static void
skip_owner(const char *mbox, char *owner, size_t size)
{
	char *p;

	synclog_mailbox_owner(mbox, owner, size);
	for (p = owner; *p != '\0'; p++)
		if (*p == '^')
			*p = '.';
}

/*
 * 1 if rec belongs to a locked owner and was set aside for the log,
 * 0 if it is to be emitted, -1 when out of memory.
 */
static int
skip_record(struct skip *sk, const struct synclog_rec *rec)
{
	char owner[SYNCLOG_READ_MAX + 2], line[2 * SYNCLOG_READ_MAX + 64];
	const char *args[2] = { rec->arg1, rec->arg2 };
	size_t need;
	char *nb;
	int i, n, r, locked = 0;

	for (i = 0; i < 2 && args[i] != NULL && !locked; i++) {
		switch (rec->kind) {
		case SYNCLOG_USER:
		case SYNCLOG_UNUSER:
		case SYNCLOG_META:
		case SYNCLOG_SIEVE:
		case SYNCLOG_SEEN:
		case SYNCLOG_SUB:
		case SYNCLOG_UNSUB:
			if (i > 0)
				continue;
			strlcpy(owner, args[i], sizeof(owner));
			break;
		case SYNCLOG_RENAME:
		case SYNCLOG_DOUBLEMAILBOX:
			skip_owner(args[i], owner, sizeof(owner));
			break;
		default:
			if (i > 0)
				continue;
			skip_owner(args[i], owner, sizeof(owner));
			break;
		}
		if ((r = skip_locked(sk, owner)) == -1)
			return -1;
		locked = r;
	}
	if (!locked)
		return 0;
	if ((n = synclog_rec_format(rec, line, sizeof(line))) < 0)
		return 0;	/* cannot happen for a parsed record */
	need = sk->len + (size_t)n;
	if (need > sk->cap) {
		if ((nb = realloc(sk->buf, need * 2)) == NULL)
			return -1;
		sk->buf = nb;
		sk->cap = need * 2;
	}
	memcpy(sk->buf + sk->len, line, (size_t)n);
	sk->len = need;
	return 1;
}

/*
 * Read one file into a set; with sk, the records of locked owners go to
 * sk instead.  Returns RES_OK, or RES_TEMP when a read or the rejects
 * file failed (nothing may then be committed).
 */
static enum result
read_file(int fd, const char *name, const char *rejpath,
    struct synclog_set *set, struct skip *sk)
{
	struct synclog_reader *rd;
	struct synclog_rec *rec;
	struct rejects rj = { rejpath, -1, 0, 0 };
	const char *line;
	char err[256];
	size_t len;
	unsigned long lineno;
	int flags, r, sr;
	enum result res = RES_OK;

	if ((rd = synclog_reader_new(fd)) == NULL ||
	    (rec = malloc(sizeof(*rec))) == NULL) {
		synclog_reader_free(rd);
		warnx("out of memory");
		return RES_TEMP;
	}
	while ((r = synclog_reader_next(rd, &line, &len, &flags, &lineno,
	    err, sizeof(err))) == 1) {
		if (flags & SYNCLOG_LINE_LONG) {
			rejects_write(&rj, line, len);
			if (flags & SYNCLOG_LINE_MORE)
				continue;
			rejects_write(&rj, "\n", 1);
			warnx("%s:%lu: line longer than %d bytes", name,
			    lineno, SYNCLOG_READ_MAX);
			rj.count++;
			continue;
		}
		switch (synclog_parse(line, len, rec, err, sizeof(err))) {
		case 1:
			if (sk != NULL && (sr = skip_record(sk, rec)) != 0) {
				if (sr == -1) {
					warnx("out of memory");
					res = RES_TEMP;
				}
			} else if (synclog_set_add(set, rec, err,
			    sizeof(err)) == -1) {
				warnx("%s", err);
				res = RES_TEMP;
			}
			break;
		case 0:
			break;
		default:
			warnx("%s:%lu: %s", name, lineno, err);
			rejects_write(&rj, line, len);
			rejects_write(&rj, "\n", 1);
			rj.count++;
			break;
		}
		if (res != RES_OK)
			break;
	}
	if (r == -1) {
		warnx("%s: %s", name, err);
		res = RES_TEMP;
	}
	if (rejects_close(&rj) == -1)
		res = RES_TEMP;
	free(rec);
	synclog_reader_free(rd);
	return res;
}

/*
 * Read path and write it as one batch.  A claimed file is first locked
 * and unlocked, so that a writer that opened it before the rename has
 * finished its append; its batch ends with %commit and its identity.
 */
static enum result
emit_file(struct tail *t, const char *path, int claimed,
    struct fileid *idout)
{
	struct synclog_set *set;
	struct skip sk, *skp = NULL;
	struct flock fl;
	struct stat st;
	struct fileid id;
	char abs[PATH_MAX], num[32], idbuf[128];
	const char *rejpath;
	enum result res;
	int fd, rdonly = 0;

	if (strcmp(path, "-") == 0) {
		fd = STDIN_FILENO;
		strlcpy(abs, "-", sizeof(abs));
		rejpath = NULL;
	} else {
		if (synclog_abspath(path, abs, sizeof(abs)) == -1) {
			warn("%s", path);
			return RES_FAIL;
		}
		fd = open(path, (claimed ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (fd == -1 && claimed && errno == EACCES) {
			rdonly = 1;
			fd = open(path, O_RDONLY | O_CLOEXEC);
		}
		if (fd == -1) {
			warn("%s", path);
			return errno == ENOENT ? RES_FAIL : RES_TEMP;
		}
		rejpath = claimed ? t->rejects : NULL;
		if (!claimed && snprintf(t->rejects, sizeof(t->rejects),
		    "%s-rejects", abs) < (int)sizeof(t->rejects))
			rejpath = t->rejects;
	}
	if (claimed) {
		/* A read lock waits for a writer's lock just as well. */
		memset(&fl, 0, sizeof(fl));
		fl.l_type = rdonly ? F_RDLCK : F_WRLCK;
		fl.l_whence = SEEK_SET;
		while (fcntl(fd, F_SETLKW, &fl) == -1) {
			if (errno != EINTR) {
				warn("lock %s", path);
				close(fd);
				return RES_TEMP;
			}
		}
		fl.l_type = F_UNLCK;
		(void)fcntl(fd, F_SETLK, &fl);
		if (fstat(fd, &st) == -1) {
			warn("%s", path);
			close(fd);
			return RES_TEMP;
		}
		fileid_of(&st, &id);
		if (idout != NULL)
			*idout = id;
	}

	if ((set = synclog_set_new()) == NULL) {
		warnx("out of memory");
		if (fd != STDIN_FILENO)
			close(fd);
		return RES_TEMP;
	}
	if (claimed && t->o->lockdir != NULL) {
		memset(&sk, 0, sizeof(sk));
		sk.dir = t->o->lockdir;
		skp = &sk;
	}
	res = read_file(fd, abs, rejpath, set, skp);
	if (fd != STDIN_FILENO)
		close(fd);
	/*
	 * The records of locked owners are back in the log (fsynced)
	 * before the batch that lets the claimed file be removed.
	 */
	if (skp != NULL) {
		t->skipped = sk.len > 0;
		if (res == RES_OK && sk.len > 0)
			res = hand_back(t, &id, sk.buf, sk.len);
		skip_free(&sk);
	}
	if (res != RES_OK) {
		synclog_set_free(set);
		return res;
	}

	snprintf(num, sizeof(num), "%lu", ++t->batch);
	if (out_control("%batch", num, abs) == -1 ||
	    synclog_set_emit(set, out_line, NULL) != 0)
		goto fail;
	if (claimed) {
		fileid_format(&id, idbuf, sizeof(idbuf));
		if (out_control("%commit", abs, idbuf) == -1)
			goto fail;
	}
	if (out_control("%end", num, NULL) == -1 || fflush(stdout) == EOF)
		goto fail;
	synclog_set_free(set);
	return RES_OK;
fail:
	synclog_set_free(set);
	return out_error();
}

/* Watch the log's directory, if it exists yet. */
static void
watch_dir(struct tail *t)
{
	if (t->watching || t->inofd == -1)
		return;
	if (inotify_add_watch(t->inofd, t->dir, IN_CREATE | IN_MODIFY |
	    IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE |
	    IN_DELETE_SELF | IN_MOVE_SELF) != -1)
		t->watching = 1;
}

/*
 * Wait until the deadline (monotonic seconds), a signal, or (name not
 * NULL) an event on that name in the log directory.  Wakes up at least
 * every SHUTDOWN_POLL seconds so that the caller checks the shutdown
 * file.  Signals are only delivered here.
 */
static void
wait_for(struct tail *t, double deadline, const char *name)
{
	struct pollfd pfd;
	struct timespec ts;
	char buf[4096]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	double left, until;
	ssize_t n;
	char *p;
	int hit = 0;

	until = now_mono() + SHUTDOWN_POLL;
	if (deadline < until)
		until = deadline;
	while (!hit) {
		watch_dir(t);
		left = until - now_mono();
		if (!t->watching && name != NULL && left > 0.05)
			left = 0.05;
		if (left <= 0)
			return;
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - ts.tv_sec) * 1e9);
		pfd.fd = t->watching ? t->inofd : -1;
		pfd.events = POLLIN;
		if (ppoll(&pfd, 1, &ts, &t->waitmask) <= 0)
			return;
		/* Only events on the name waited for end the wait. */
		while ((n = read(t->inofd, buf, sizeof(buf))) > 0) {
			for (p = buf; p < buf + n;
			    p += sizeof(*ev) + ev->len) {
				ev = (const struct inotify_event *)p;
				if (ev->mask & IN_IGNORED)
					t->watching = 0;
				if (ev->mask & (IN_IGNORED | IN_DELETE_SELF |
				    IN_MOVE_SELF))
					hit = 1;
				if (name != NULL && ev->len > 0 &&
				    strcmp(ev->name, name) == 0)
					hit = 1;
			}
		}
	}
}

static int
exists(const char *path, struct stat *st)
{
	struct stat sb;

	return stat(path, st != NULL ? st : &sb) == 0;
}

/*
 * The claim loop (synclog-tail(1), DESCRIPTION).
 */
static enum result
run_tail(struct tail *t)
{
	const struct opts *o = t->o;
	struct fileid emitted = { 0 }, cur;
	struct stat st;
	double emitted_at = 0, last_claim = -1e18, now, due, delay;
	double kept_due = 0, backoff = KEPT_BACKOFF;
	enum result res;
	int have, kept_pending = 0;

	if (fputs("%syncpipe-actions 1\n", stdout) == EOF ||
	    fflush(stdout) == EOF)
		return out_error();
	if (o->file != NULL)
		return emit_file(t, o->file, 0, NULL);

	for (;;) {
		if (stopping)
			break;
		if (t->shutdown != NULL && exists(t->shutdown, NULL)) {
			if (unlink(t->shutdown) == -1 && errno != ENOENT)
				warn("%s", t->shutdown);
			break;
		}
		now = now_mono();
		if (stat(t->run, &st) == 0) {
			fileid_of(&st, &cur);
			/*
			 * SIGUSR1: the pipeline has finished the batch
			 * without committing it (sync_client(8) sends it on
			 * sync-send's "%kept").  It is emitted again soon,
			 * later after each further failure, instead of
			 * after --retry.
			 */
			if (kept) {
				kept = 0;
				if (emitted.set) {
					kept_pending = 1;
					kept_due = now + backoff;
					backoff *= 2;
					if (backoff > o->retry)
						backoff = o->retry;
				}
			}
			due = emitted_at + o->retry;
			if (kept_pending && kept_due < due)
				due = kept_due;
			if (!fileid_eq(&cur, &emitted) || now >= due) {
				res = emit_file(t, t->run, 1, &emitted);
				if (res != RES_OK)
					return res;
				emitted_at = now_mono();
				kept_pending = 0;
				if (o->once)
					break;
				continue;
			}
			/* Wait for the commit step to remove it. */
			wait_for(t, due, t->runname);
			continue;
		}
		if (errno != ENOENT) {
			warn("%s", t->run);
			return RES_TEMP;
		}
		emitted.set = 0;
		kept = kept_pending = 0;
		backoff = KEPT_BACKOFF;
		/*
		 * An empty log is left alone: a writer that has just created
		 * it will append under its lock, and claiming it now would
		 * only send that writer round its retry loop.
		 */
		if (stat(t->log, &st) == 0)
			have = st.st_size > 0;
		else if (errno == ENOENT)
			have = 0;
		else {
			warn("%s", t->log);
			return RES_TEMP;
		}
		if (have) {
			/* Lines just left for a locked owner are not taken
			 * back at once. */
			delay = t->delay;
			if (t->skipped && delay < SKIP_HOLDOFF)
				delay = SKIP_HOLDOFF;
			if (now < last_claim + delay) {
				wait_for(t, last_claim + delay, NULL);
				continue;
			}
			if (rename(t->log, t->run) == -1) {
				if (errno == ENOENT)
					continue;
				warn("rename %s", t->log);
				return RES_TEMP;
			}
			last_claim = now;
			continue;
		}
		if (o->once)
			break;
		wait_for(t, now + 3600, t->logname);
	}
	return RES_OK;
}

/* Call fn for each channel of sync_log_channels ("" = default), or for
 * the channel only alone. */
struct chan_call {
	enum result	(*fn)(const struct conf *, const char *, void *);
	void		*arg;
};

static int
chan_call(const struct conf *conf, const char *channel, void *arg)
{
	struct chan_call *cc = arg;

	return (int)cc->fn(conf, channel, cc->arg);
}

static enum result
foreach_channel(const struct conf *conf, const char *only,
    enum result (*fn)(const struct conf *, const char *, void *), void *arg)
{
	struct chan_call cc = { fn, arg };
	char err[256];
	int r;

	if (only != NULL)
		return fn(conf, only, arg);
	r = synclog_foreach_channel(conf, chan_call, &cc, err, sizeof(err));
	if (r == -1) {
		warnx("%s", err);
		return RES_CONFIG;
	}
	return (enum result)r;
}

static int
channel_log(const struct conf *conf, const char *channel, char *buf,
    size_t size)
{
	char err[256];

	if (synclog_path(conf, channel, buf, size, err, sizeof(err)) == -1) {
		warnx("%s", err);
		return -1;
	}
	return 0;
}

/*
 * --commit: synclog_commit() does it (sync-send(1) calls it too).
 */
static enum result
run_commit(const struct opts *o, const struct conf *conf)
{
	char err[PATH_MAX + 256];

	switch (synclog_commit(conf, o->channel, o->file, o->commit,
	    o->commit_id, err, sizeof(err))) {
	case SYNCLOG_COMMIT_OK:
		return RES_OK;
	case SYNCLOG_COMMIT_TEMP:
		warnx("%s", err);
		return RES_TEMP;
	case SYNCLOG_COMMIT_CONFIG:
		warnx("%s", err);
		return RES_CONFIG;
	default:
		warnx("%s", err);
		return RES_FAIL;
	}
}

/*
 * --status.
 */
struct fstatus {
	int		 exists;
	unsigned long	 lines;
	double		 born;		/* creation (or mtime), epoch s */
	int		 has_btime;
};

static int
count_lines(const char *path, struct fstatus *fs)
{
	struct statx stx;
	char buf[65536];
	ssize_t n;
	int fd, last = '\n';

	memset(fs, 0, sizeof(*fs));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return errno == ENOENT ? 0 : -1;
	fs->exists = 1;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_BTIME | STATX_MTIME, &stx) ==
	    0) {
		if (stx.stx_mask & STATX_BTIME) {
			fs->born = stx.stx_btime.tv_sec +
			    stx.stx_btime.tv_nsec / 1e9;
			fs->has_btime = 1;
		} else
			fs->born = stx.stx_mtime.tv_sec +
			    stx.stx_mtime.tv_nsec / 1e9;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] == '\n')
				fs->lines++;
		last = buf[n - 1];
	}
	close(fd);
	if (n == -1)
		return -1;
	if (last != '\n')
		fs->lines++;
	return 0;
}

static void
prom_label(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			printf("\\%c", *s);
		else if (*s == '\n')
			printf("\\n");
		else
			putchar(*s);
	}
}

static void
prom_metric(const char *name, const char *channel, double v)
{
	printf("%s{channel=\"", name);
	prom_label(channel);
	printf("\"} %.0f\n", v);
}

static enum result
status_channel(const struct conf *conf, const char *channel, void *arg)
{
	const struct opts *o = arg;
	struct fstatus logs, runs, rejs, *oldest;
	char log[PATH_MAX], run[PATH_MAX], rej[PATH_MAX];
	double age = 0;

	if (channel_log(conf, channel, log, sizeof(log)) == -1)
		return RES_CONFIG;
	if (snprintf(run, sizeof(run), "%s-run", log) >= (int)sizeof(run) ||
	    snprintf(rej, sizeof(rej), "%s-rejects", log) >=
	    (int)sizeof(rej)) {
		warnx("%s: path too long", log);
		return RES_CONFIG;
	}
	if (count_lines(log, &logs) == -1 || count_lines(run, &runs) == -1 ||
	    count_lines(rej, &rejs) == -1) {
		warn("%s", log);
		return RES_TEMP;
	}
	/* The oldest unprocessed line is in log-run if there is one. */
	oldest = runs.exists ? &runs : logs.exists ? &logs : NULL;
	if (oldest != NULL && oldest->lines > 0) {
		age = (double)time(NULL) - oldest->born;
		if (age < 0)
			age = 0;
	}
	if (o->prom) {
		prom_metric("syncpipe_synclog_pending_lines", channel,
		    logs.lines);
		prom_metric("syncpipe_synclog_claimed", channel,
		    runs.exists);
		prom_metric("syncpipe_synclog_claimed_lines", channel,
		    runs.lines);
		prom_metric("syncpipe_synclog_oldest_age_seconds", channel,
		    age);
		prom_metric("syncpipe_synclog_rejected_lines", channel,
		    rejs.lines);
	} else {
		printf("channel \"%s\" %s\n", channel, log);
		printf("\tpending lines: %lu\n", logs.lines);
		if (runs.exists)
			printf("\tclaimed: yes, %lu lines\n", runs.lines);
		else
			printf("\tclaimed: no\n");
		printf("\toldest age: %.0f s%s\n", age,
		    oldest != NULL && oldest->lines > 0 && !oldest->has_btime ?
		    " (at least; from mtime)" : "");
		printf("\trejected lines: %lu\n", rejs.lines);
	}
	return RES_OK;
}

static enum result
run_status(const struct opts *o, const struct conf *conf)
{
	enum result res;

	if (o->prom) {
		printf("# HELP syncpipe_synclog_pending_lines Lines in the "
		    "channel log not yet claimed.\n"
		    "# TYPE syncpipe_synclog_pending_lines gauge\n"
		    "# HELP syncpipe_synclog_claimed 1 if a log-run file is "
		    "claimed and not yet committed.\n"
		    "# TYPE syncpipe_synclog_claimed gauge\n"
		    "# HELP syncpipe_synclog_claimed_lines Lines in the "
		    "claimed log-run file.\n"
		    "# TYPE syncpipe_synclog_claimed_lines gauge\n"
		    "# HELP syncpipe_synclog_oldest_age_seconds Age of the "
		    "oldest unprocessed line.\n"
		    "# TYPE syncpipe_synclog_oldest_age_seconds gauge\n"
		    "# HELP syncpipe_synclog_rejected_lines Lines in the "
		    "rejects file.\n"
		    "# TYPE syncpipe_synclog_rejected_lines gauge\n");
	}
	res = foreach_channel(conf, o->channel, status_channel, (void *)o);
	if (fflush(stdout) == EOF)
		return out_error();
	return res;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "commit",	required_argument,	NULL, 'c' },
		{ "status",	no_argument,		NULL, 's' },
		{ "format",	required_argument,	NULL, 'o' },
		{ "retry",	required_argument,	NULL, 'R' },
		{ "skip-locked", required_argument,	NULL, 'N' },
		{ NULL,		0,			NULL, 0 }
	};
	const char *format = NULL;
	char *end;
	int ch, tailopt = 0;

	memset(o, 0, sizeof(*o));
	o->delay = -1;
	o->retry = RETRY_DEFAULT;
	while ((ch = getopt_long(argc, argv, "1rC:n:f:F:d:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case '1':
			o->once = 1;
			tailopt = 1;
			break;
		case 'r':
			o->follow = 1;
			tailopt = 1;
			break;
		case 'C':
			o->config = optarg;
			break;
		case 'n':
			o->channel = optarg;
			break;
		case 'f':
			o->file = optarg;
			break;
		case 'F':
			o->shutdown = optarg;
			tailopt = 1;
			break;
		case 'd':
			errno = 0;
			o->delay = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    !(o->delay >= 0 && o->delay <= 86400))
				return -1;
			tailopt = 1;
			break;
		case 'R':
			errno = 0;
			o->retry = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    o->retry < 1)
				return -1;
			tailopt = 1;
			break;
		case 'N':
			o->lockdir = optarg;
			tailopt = 1;
			break;
		case 'c':
			o->commit = optarg;
			o->mode = MODE_COMMIT;
			break;
		case 's':
			o->mode = MODE_STATUS;
			break;
		case 'o':
			format = optarg;
			break;
		default:
			return -1;
		}
	}
	argc -= optind;
	argv += optind;
	if (o->commit != NULL && (o->mode != MODE_COMMIT))
		return -1;
	switch (o->mode) {
	case MODE_TAIL:
		if (argc != 0 || format != NULL)
			return -1;
		if (o->file != NULL && (o->follow || o->shutdown != NULL ||
		    o->lockdir != NULL))
			return -1;
		/* Without -r: one file, as with -1. */
		if (!o->follow)
			o->once = 1;
		break;
	case MODE_COMMIT:
		if (tailopt || format != NULL || argc > 1)
			return -1;
		if (argc == 1)
			o->commit_id = argv[0];
		break;
	case MODE_STATUS:
		if (tailopt || o->file != NULL || argc != 0)
			return -1;
		if (format == NULL || strcmp(format, "text") == 0)
			o->prom = 0;
		else if (strcmp(format, "prom") == 0)
			o->prom = 1;
		else
			return -1;
		break;
	}
	return 0;
}

static enum result
setup_tail(struct tail *t, const struct opts *o, const struct conf *conf)
{
	char err[256], abs[PATH_MAX];
	const char *sd;
	int64_t iv;
	char *slash;

	memset(t, 0, sizeof(*t));
	t->o = o;
	t->conf = conf;
	t->inofd = -1;
	t->delay = o->delay;
	if (o->file != NULL)
		return RES_OK;
	if (channel_log(conf, o->channel, t->log, sizeof(t->log)) == -1)
		return RES_CONFIG;
	if (synclog_abspath(t->log, abs, sizeof(abs)) == 0)
		strlcpy(t->log, abs, sizeof(t->log));
	if (snprintf(t->run, sizeof(t->run), "%s-run", t->log) >=
	    (int)sizeof(t->run) ||
	    snprintf(t->rejects, sizeof(t->rejects), "%s-rejects", t->log) >=
	    (int)sizeof(t->rejects)) {
		warnx("%s: path too long", t->log);
		return RES_CONFIG;
	}
	strlcpy(t->dir, t->log, sizeof(t->dir));
	if ((slash = strrchr(t->dir, '/')) != NULL && slash != t->dir) {
		*slash = '\0';
		t->logname = t->log + (slash - t->dir) + 1;
	} else {
		strlcpy(t->dir, ".", sizeof(t->dir));
		t->logname = t->log;
	}
	t->runname = t->run + (t->logname - t->log);

	if (t->delay < 0) {
		if (conf_getduration(conf, o->channel, "sync_repeat_interval",
		    "1s", 's', &iv, err, sizeof(err)) == -1) {
			warnx("%s", err);
			return RES_CONFIG;
		}
		t->delay = (double)iv;
	}
	sd = o->shutdown;
	if (sd == NULL)
		sd = conf_get(conf, o->channel, "sync_shutdown_file", NULL);
	t->shutdown = sd != NULL && *sd != '\0' ? sd : NULL;
	return RES_OK;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct conf *conf = NULL;
	struct tail t;
	struct sigaction sa;
	sigset_t block;
	char err[512];
	enum result res;

	if (parse_opts(argc, argv, &o) == -1) {
		usage();
		return 64;
	}

	/* A plain -f needs no config; everything else does. */
	if (o.config != NULL || o.file == NULL || o.mode == MODE_STATUS) {
		conf = conf_load(o.config != NULL ? o.config :
		    CONF_DEFAULT_PATH, err, sizeof(err));
		if (conf == NULL) {
			warnx("%s", err);
			return 78;
		}
	}

	signal(SIGPIPE, SIG_IGN);
	switch (o.mode) {
	case MODE_COMMIT:
		res = run_commit(&o, conf);
		break;
	case MODE_STATUS:
		res = run_status(&o, conf);
		break;
	default:
		if ((res = setup_tail(&t, &o, conf)) != RES_OK)
			break;
		/* Signals only interrupt the waits, never a batch. */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGUSR1, &sa, NULL);
		sigemptyset(&block);
		sigaddset(&block, SIGTERM);
		sigaddset(&block, SIGINT);
		sigaddset(&block, SIGUSR1);
		sigprocmask(SIG_BLOCK, &block, &t.waitmask);
		sigdelset(&t.waitmask, SIGTERM);
		sigdelset(&t.waitmask, SIGINT);
		sigdelset(&t.waitmask, SIGUSR1);
		if (o.follow && !o.once && o.file == NULL)
			t.inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		res = run_tail(&t);
		if (t.inofd != -1)
			close(t.inofd);
		handed_clear(&t.handed);
		break;
	}
	conf_free(conf);

	switch (res) {
	case RES_OK:
		return 0;
	case RES_USAGE:
		return 64;
	case RES_TEMP:
		return 75;
	case RES_CONFIG:
		return 78;
	case RES_FAIL:
	default:
		return 1;
	}
}
