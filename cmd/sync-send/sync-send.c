/*
 * sync-send: apply a replication plan to a csync replica.
 *
 * The plan (sync-plan's output) is read from stdin or -f; each command is
 * sent as it is, except that message bodies, which the plan references
 * by %{partition guid size}, are read from the local store and sent only
 * when the replica's answer to the preceding RESERVE says it lacks them.
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
#include "prot.h"
#include "store.h"

#define PLAN_VERSION	1
#define WINDOW		64	/* commands in flight before reading replies */
#define DESC_MAX	600

#define EXIT_OK		0
#define EXIT_FAILED	1
#define EXIT_UNREACHABLE EX_UNAVAILABLE	/* 69 */
#define EXIT_IOERR	EX_IOERR	/* 74 */
#define EXIT_TEMP	EX_TEMPFAIL	/* 75 */
#define EXIT_PROTOCOL	EX_PROTOCOL	/* 76 */
#define EXIT_CONFIG	EX_CONFIG	/* 78 */

struct opts {
	const char	*conf_path;
	const char	*target;
	const char	*command;
	const char	*planfile;
	const char	*channel;
	int		 compress;
	int		 verbose;
	int		 timeout;
};

struct guidset {
	char		(*v)[41];
	size_t		 n;
};

struct sender {
	struct opts	*o;
	struct conf	*conf;
	struct store	*store;
	struct csync	*cs;
	char		**parts;	/* configured partitions */
	size_t		 nparts;
	/* Commands sent whose replies are still to come. */
	char		(*inflight)[DESC_MAX];
	size_t		 ninflight;
	struct guidset	 reserved;	/* GUIDs asked about in RESERVE */
	struct guidset	 missing;	/* ... that the replica lacks */
	int		 batch_failed;
	unsigned long	 ok, failed, bodies;
	uint64_t	 bytes;
	int		 fatal;
};

static void
usage(void)
{
	fprintf(stderr, "usage: sync-send [-vz] [-C config] [-e command] "
	    "[-f plan] [-n channel] [-S host[:port] | -S /path] "
	    "[-t timeout]\n");
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

static int
gs_has(const struct guidset *s, const char *g)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->v[i], g) == 0)
			return 1;
	return 0;
}

static void
gs_add(struct guidset *s, const char *g)
{
	char (*nv)[41] = reallocarray(s->v, s->n + 1, sizeof(*nv));

	if (nv == NULL) {
		warnx_("out of memory");
		exit(EX_OSERR);
	}
	s->v = nv;
	strlcpy(s->v[s->n++], g, 41);
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

static void
result(struct sender *sd, const char *desc, const struct csync_reply *r)
{
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
	sd->failed++;
	sd->batch_failed = 1;
	printf("%s %s: %s\n", r->status, desc, r->text ? r->text : "");
	if (strcmp(r->status, "BYE") == 0)
		sd->fatal = EXIT_TEMP;
}

/* Read the replies of every command in flight. */
static int
drain(struct sender *sd)
{
	struct csync_reply r;
	size_t i;

	for (i = 0; i < sd->ninflight; i++) {
		if (csync_read_reply(sd->cs, &r, NULL) == -1) {
			warnx_("%s: %s", sd->inflight[i], sd->cs->err);
			sd->fatal = sd->cs->errclass == CSYNC_PROTOCOL ?
			    EXIT_PROTOCOL : EXIT_UNREACHABLE;
			csync_reply_clear(&r);
			sd->ninflight = 0;
			return -1;
		}
		result(sd, sd->inflight[i], &r);
		csync_reply_clear(&r);
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
		warnx_("sending: %s", sd->cs->err[0] ? sd->cs->err :
		    "write failed");
		sd->fatal = EXIT_UNREACHABLE;
		return -1;
	}
	ni = reallocarray(sd->inflight, sd->ninflight + 1, sizeof(*ni));
	if (ni == NULL) {
		sd->fatal = EX_OSERR;
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
	size_t i;

	if (drain(sd) == -1)
		return -1;
	if (csync_call(sd->cs, "APPLY", d, &r, NULL) == -1 &&
	    r.status[0] == '\0') {
		warnx_("RESERVE: %s", sd->cs->err);
		sd->fatal = EXIT_UNREACHABLE;
		csync_reply_clear(&r);
		return -1;
	}
	for (g = gl ? gl->head : NULL; g != NULL; g = g->next)
		if (g->kind == DL_STRING && !gs_has(&sd->reserved, g->s))
			gs_add(&sd->reserved, g->s);
	for (i = 0; i < r.nitems; i++) {
		const struct dlist *m = r.items[i];

		if (strcmp(m->key, "MISSING") != 0)
			continue;
		for (g = m->head; g != NULL; g = g->next)
			if (g->kind == DL_STRING)
				gs_add(&sd->missing, g->s);
	}
	if (strcmp(r.status, "OK") != 0) {
		char desc[DESC_MAX];

		describe("APPLY", d, desc, sizeof(desc));
		result(sd, desc, &r);
	} else
		sd->ok++;
	csync_reply_clear(&r);
	return 0;
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

/*
 * "APPLY MESSAGE (%{part guid size} ...)": the plan has headers only.
 * Send the bodies the replica lacks, reading them from the store.
 */
static int
do_message(struct sender *sd, const char *line)
{
	struct dlist *list = dlist_newlist(NULL, "MESSAGE");
	const char *p = line;
	int rc = 0;

	if (*p++ != '(') {
		warnx_("bad APPLY MESSAGE line in the plan");
		sd->fatal = EX_DATAERR;
		dlist_free(list);
		return -1;
	}
	for (;;) {
		char part[128], guid[41], path[4096];
		unsigned long long size;
		int n = 0;

		while (*p == ' ')
			p++;
		if (*p == ')')
			break;
		if (sscanf(p, "%%{%127[A-Za-z0-9_-] %40[0-9a-fA-F] %llu}%n",
		    part, guid, &size, &n) != 3 || n == 0 ||
		    !guid_valid(guid, strlen(guid))) {
			warnx_("bad APPLY MESSAGE line in the plan");
			sd->fatal = EX_DATAERR;
			rc = -1;
			goto done;
		}
		p += n;
		guid_normalise(guid, guid);
		if (gs_has(&sd->reserved, guid) && !gs_has(&sd->missing, guid))
			continue;	/* the replica has it */
		if (body_path(sd, part, guid, path, sizeof(path)) == -1) {
			printf("NO APPLY MESSAGE %s: body not in the local "
			    "store\n", guid);
			sd->failed++;
			sd->batch_failed = 1;
			continue;
		}
		dlist_setfile(list, NULL, part, guid, size, path);
		sd->bodies++;
		sd->bytes += size;
	}
	if (list->nchild > 0)
		rc = send_cmd(sd, "APPLY", list);
done:
	dlist_free(list);
	return rc;
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

/* synclog-tail, next to this program (installed or in the build tree)
 * or on PATH. */
static void
find_tail(char *buf, size_t size)
{
	static const char *rel[] = { "synclog-tail", "../synclog-tail/synclog-tail",
	    "../bin/synclog-tail", NULL };
	char self[PATH_MAX], *dir;
	ssize_t n;
	int i;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		dir = dirname(self);
		for (i = 0; rel[i] != NULL; i++) {
			snprintf(buf, size, "%s/%s", dir, rel[i]);
			if (access(buf, X_OK) == 0)
				return;
		}
	}
	strlcpy(buf, "synclog-tail", size);
}

/*
 * "%commit FILE ID": every command derived from the claimed log file FILE
 * precedes this line.  Once all of them succeeded the file is removed by
 * "synclog-tail --commit", which checks that FILE is a claimed file of a
 * configured channel and still the one claimed (ID).
 */
static void
do_commit(struct sender *sd, const char *args)
{
	char path[PATH_MAX], id[128], tail[PATH_MAX];
	const char *argv[12];
	int argc = 0, status;
	pid_t pid;

	if (drain(sd) == -1)
		return;
	if (ctl_arg(&args, path, sizeof(path)) == -1) {
		warnx_("bad %%commit line in the plan");
		sd->fatal = EX_DATAERR;
		return;
	}
	if (ctl_arg(&args, id, sizeof(id)) == -1)
		id[0] = '\0';
	if (sd->batch_failed) {
		printf("%%kept %s\n", path);
		fflush(stdout);
		return;
	}
	find_tail(tail, sizeof(tail));
	argv[argc++] = tail;
	argv[argc++] = "-C";
	argv[argc++] = sd->o->conf_path;
	if (sd->o->channel != NULL) {
		argv[argc++] = "-n";
		argv[argc++] = sd->o->channel;
	}
	argv[argc++] = "--commit";
	argv[argc++] = path;
	if (id[0] != '\0')
		argv[argc++] = id;
	argv[argc] = NULL;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execvp(tail, (char **)argv);
		_exit(127);
	}
	if (pid == -1 || waitpid(pid, &status, 0) == -1 ||
	    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
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
	static char line[131072];
	char word[64], key[64], err[256];
	struct dlist *d;
	int c;
	size_t n;

	while (!sd->fatal && (c = prot_peek(in)) != -1) {
		if (c == '\n' || c == '\r') {
			prot_getc(in);
			continue;
		}
		if (c == '#' || c == '%') {
			if (prot_readline(in, line, sizeof(line)) < 0)
				break;
			if (strncmp(line, "%syncpipe-plan ", 15) == 0 &&
			    atoi(line + 15) != PLAN_VERSION) {
				warnx_("plan version %s not supported",
				    line + 15);
				sd->fatal = EX_DATAERR;
			} else if (strncmp(line, "%commit ", 8) == 0)
				do_commit(sd, line + 8);
			else if (strncmp(line, "%end", 4) == 0) {
				drain(sd);
				sd->reserved.n = 0;
				sd->missing.n = 0;
				sd->batch_failed = 0;
			}
			continue;
		}
		/* The command word. */
		for (n = 0; n < sizeof(word) - 1; n++) {
			c = prot_getc(in);
			if (c == ' ' || c == '\n' || c == -1)
				break;
			word[n] = (char)c;
		}
		word[n] = '\0';
		if (c != ' ') {
			warnx_("bad plan line starting '%s'", word);
			sd->fatal = EX_DATAERR;
			break;
		}
		/* The sub-command name, then its value. */
		for (n = 0; n < sizeof(key) - 1; n++) {
			c = prot_getc(in);
			if (c == ' ' || c == '\n' || c == -1)
				break;
			key[n] = (char)toupper(c);
		}
		key[n] = '\0';
		if (c != ' ') {
			warnx_("bad plan line '%s %s'", word, key);
			sd->fatal = EX_DATAERR;
			break;
		}
		if (strcmp(word, "APPLY") == 0 && strcmp(key, "MESSAGE") == 0) {
			/* Bodies by reference: %{part guid size} headers. */
			if (prot_readline(in, line, sizeof(line)) < 0) {
				warnx_("plan: APPLY MESSAGE line too long");
				sd->fatal = EX_DATAERR;
				break;
			}
			do_message(sd, line);
			continue;
		}
		if (dlist_parse(in, 0, NULL, &d, err, sizeof(err)) == -1 ||
		    dlist_parse_eol(in) == -1) {
			warnx_("plan: cannot parse %s %s: %s", word, key, err);
			if (d != NULL)
				dlist_free(d);
			sd->fatal = EX_DATAERR;
			break;
		}
		free(d->key);
		d->key = strdup(key);
		if (strcmp(word, "APPLY") == 0 && strcasecmp(d->key,
		    "RESERVE") == 0)
			do_reserve(sd, d);
		else
			send_cmd(sd, word, d);
		dlist_free(d);
	}
	if (!sd->fatal)
		drain(sd);
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

	memset(&o, 0, sizeof(o));
	o.conf_path = getenv("SYNCPIPE_CONF") ? getenv("SYNCPIPE_CONF") :
	    CONF_DEFAULT_PATH;
	o.timeout = 1800;
	while ((ch = getopt(argc, argv, "C:e:f:n:S:t:vz")) != -1) {
		switch (ch) {
		case 'C': o.conf_path = optarg; break;
		case 'e': o.command = optarg; break;
		case 'f': o.planfile = optarg; break;
		case 'n': o.channel = optarg; break;
		case 'S': o.target = optarg; break;
		case 't': o.timeout = atoi(optarg); break;
		case 'v': o.verbose++; break;
		case 'z': o.compress = 1; break;
		default: usage();
		}
	}
	if (optind != argc || (o.target && o.command) || o.timeout < 0)
		usage();

	memset(&sd, 0, sizeof(sd));
	sd.o = &o;
	sd.conf = conf_load(o.conf_path, err, sizeof(err));
	if (sd.conf == NULL) {
		warnx_("%s", err);
		return EXIT_CONFIG;
	}
	conf_foreach(sd.conf, add_partition, &sd);
	sd.store = store_open(sd.conf, err, sizeof(err));
	if (sd.store == NULL) {
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
		return cls == CSYNC_AUTH ? EXIT_CONFIG : cls == CSYNC_PROTOCOL ?
		    EXIT_PROTOCOL : EXIT_UNREACHABLE;
	}
	in = prot_new(fd, -1);
	apply_plan(&sd, in);
	prot_free(in);
	csync_close(sd.cs);
	if (o.verbose)
		fprintf(stderr, "sync-send: %lu applied, %lu failed, %lu bodies "
		    "(%" PRIu64 " bytes)\n", sd.ok, sd.failed, sd.bodies,
		    sd.bytes);
	store_close(sd.store);
	conf_free(sd.conf);
	for (i = 0; i < sd.nparts; i++)
		free(sd.parts[i]);
	free(sd.parts);
	free(sd.inflight);
	free(sd.reserved.v);
	free(sd.missing.v);
	if (sd.fatal)
		return sd.fatal;
	return sd.failed ? EXIT_FAILED : EXIT_OK;
}
