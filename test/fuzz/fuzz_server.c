/*
 * fuzz_server: sync_server's command dispatch on a real store.  The input
 * is a client's side of a pre-authenticated session: command lines read
 * as the session reads them (a word, then for GET, APPLY and RESTORE one
 * "key value" with file literals streamed into the store's ingest), each
 * handed to sv_get, sv_apply or sv_restore.
 *
 * Checked after every command: each data line the handler wrote parses
 * back as a "* KEY value" line.  Checked after every input: the stored
 * SYNC_CRC and SYNC_CRC_ANNOT of every mailbox equal a recomputation
 * from its records.  A failed check aborts.
 *
 * The store lives in a temporary directory (under /dev/shm when there is
 * one: the store syncs every commit) made once; it is emptied and reopened
 * before every input so that a finding reproduces from its input alone.
 * A store is opened per input, and ASan's default 256 MB quarantine of
 * freed memory makes that ten times slower; a smaller one is the default
 * here (ASAN_OPTIONS overrides it).
 * FUZZ_SERVER_KEEP=N keeps the state for N inputs instead (more reach,
 * less reproducible); FUZZ_SERVER_LOG=1 prints the handlers' log lines.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "dlist.h"
#include "prot.h"
#include "store.h"
#include "server.h"

#define FZ_MAXWORD	64	/* longer than any command name */

static char		 fz_dir[256];
static struct conf	*fz_conf;
static struct store	*fz_store;
static int		 fz_keep = 1, fz_runs, fz_log;

const char	*__asan_default_options(void);

const char *
__asan_default_options(void)
{
	return "quarantine_size_mb=8";
}

/* What sync_server.c provides to the handlers. */
void
sv_log(int priority, const char *fmt, ...)
{
	va_list ap;

	(void)priority;
	if (!fz_log)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

const char *
sv_status_line(enum sv_result r)
{
	return r == SV_OK ? "OK success" : "NO failure";
}

static int
fz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level > 0 && remove(path) == -1)
		return -1;
	return 0;
}

/*
 * Empty the directory and open a new store in it.  The database of a new
 * store is kept after the first creation and written back, which is much
 * cheaper than creating the schema again.
 */
static void
fz_store_reset(void)
{
	static char *tmpl;
	static size_t tmpllen;
	char err[256], path[300];
	FILE *f;
	long n;

	if (fz_store != NULL)
		store_close(fz_store);
	fz_store = NULL;
	if (nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS) == -1) {
		fprintf(stderr, "fuzz_server: cannot empty %s\n", fz_dir);
		abort();
	}
	snprintf(path, sizeof(path), "%s/conf", fz_dir);
	(void)mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/spool", fz_dir);
	(void)mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/spool2", fz_dir);
	(void)mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/conf/syncpipe.db", fz_dir);
	if (tmpl != NULL) {
		if ((f = fopen(path, "w")) == NULL ||
		    fwrite(tmpl, 1, tmpllen, f) != tmpllen || fclose(f) != 0)
			abort();
	}
	if ((fz_store = store_open(fz_conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_server: store_open: %s\n", err);
		abort();
	}
	if (tmpl == NULL) {
		/* Closing checkpoints the new database into its file. */
		store_close(fz_store);
		if ((f = fopen(path, "r")) == NULL ||
		    fseek(f, 0, SEEK_END) == -1 || (n = ftell(f)) <= 0 ||
		    (tmpl = malloc((size_t)n)) == NULL ||
		    fseek(f, 0, SEEK_SET) == -1 ||
		    fread(tmpl, 1, (size_t)n, f) != (size_t)n)
			abort();
		fclose(f);
		tmpllen = (size_t)n;
		if ((fz_store = store_open(fz_conf, err,
		    sizeof(err))) == NULL) {
			fprintf(stderr, "fuzz_server: store_open: %s\n", err);
			abort();
		}
	}
}

static void
fz_cleanup(void)
{
	if (fz_store != NULL)
		store_close(fz_store);
	fz_store = NULL;
	if (fz_dir[0] != '\0') {
		(void)nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
		(void)rmdir(fz_dir);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256], text[1024];
	const char *base, *e;
	int n;

	(void)argc;
	(void)argv;
	if ((e = getenv("FUZZ_SERVER_KEEP")) != NULL && atoi(e) > 0)
		fz_keep = atoi(e);
	fz_log = getenv("FUZZ_SERVER_LOG") != NULL;
	base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
	    (getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	snprintf(fz_dir, sizeof(fz_dir), "%s/fuzz_server.XXXXXX", base);
	if (mkdtemp(fz_dir) == NULL) {
		fprintf(stderr, "fuzz_server: mkdtemp %s: %s\n", fz_dir,
		    strerror(errno));
		abort();
	}
	atexit(fz_cleanup);
	n = snprintf(text, sizeof(text),
	    "configdirectory: %s/conf\n"
	    "partition-default: %s/spool\n"
	    "partition-other: %s/spool2\n", fz_dir, fz_dir, fz_dir);
	if ((fz_conf = conf_parse(text, (size_t)n, "fuzz", err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_server: conf: %s\n", err);
		abort();
	}
	fz_store_reset();
	return 0;
}

/* The session's read_word: up to SP, CR, LF or EOF (not consumed). */
static int
fz_word(struct prot *p, char *buf, size_t size)
{
	size_t n = 0;
	int c, toolong = 0;

	for (;;) {
		if ((c = prot_getc(p)) == -1) {
			if (n == 0 && !toolong)
				return -1;
			break;
		}
		if (c == ' ' || c == '\r' || c == '\n') {
			prot_ungetc(p, c);
			break;
		}
		if (n + 1 < size)
			buf[n++] = (char)c;
		else
			toolong = 1;
	}
	buf[n] = '\0';
	return toolong ? -2 : (int)n;
}

/* The session's sink: file literals go into the command's ingest. */
static void *
fz_sink_open(void *arg, const char *part, const char *guid, uint64_t size)
{
	struct sv *sv = arg;

	if (sv->maxmessagesize != 0 && size > sv->maxmessagesize)
		return NULL;
	return store_ingest_open(sv->ingest, part, guid, size);
}

static int
fz_sink_write(void *arg, void *h, const void *buf, size_t n)
{
	struct sv *sv = arg;

	return store_ingest_write(sv->ingest, h, buf, n);
}

static int
fz_sink_close(void *arg, void *h, int ok, char **pathp)
{
	struct sv *sv = arg;

	(void)pathp;
	return store_ingest_close(sv->ingest, h, ok);
}

/* Every byte a handler wrote must be "* KEY value" lines. */
static void
fz_check_output(struct prot *out)
{
	struct dlist *d;
	struct prot *in;
	const char *buf;
	char err[256];
	size_t len;

	buf = prot_membuf(out, &len);
	if ((in = prot_new_mem(buf, len)) == NULL)
		abort();
	while (prot_peek(in) != -1) {
		d = NULL;
		if (prot_getc(in) != '*' || prot_getc(in) != ' ' ||
		    dlist_parse(in, 1, NULL, &d, err, sizeof(err)) == -1 ||
		    dlist_parse_eol(in) == -1) {
			fprintf(stderr, "fuzz_server: handler wrote a data "
			    "line that does not parse: %s\n%.*s\n", err,
			    (int)(len > 4096 ? 4096 : len), buf);
			abort();
		}
		dlist_free(d);
	}
	prot_free(in);
}

/* The session's cmd_dlist, with the handler writing to a memory buffer. */
static void
fz_dlist(struct sv *sv, struct prot *in,
    enum sv_result (*handler)(struct sv *, struct dlist *), int files)
{
	struct dlist_sink sink;
	struct dlist *arg = NULL;
	enum sv_result r;
	char err[256], *k;
	int rc;

	if (prot_peek(in) != ' ') {
		(void)dlist_eatline(in);
		return;
	}
	(void)prot_getc(in);
	sv->ingest = files ? store_ingest_begin(sv->store) : NULL;
	sink.open = fz_sink_open;
	sink.write = fz_sink_write;
	sink.close = fz_sink_close;
	sink.arg = sv;
	rc = dlist_parse(in, 1, sv->ingest != NULL ? &sink : NULL, &arg, err,
	    sizeof(err));
	if (rc == 0 && dlist_parse_eol(in) == -1)
		rc = -1;
	if (rc == -1 || arg == NULL || arg->key == NULL) {
		dlist_free(arg);
		if (rc == -1)
			(void)dlist_eatline(in);
	} else {
		for (k = arg->key; *k != '\0'; k++)
			*k = (char)toupper((unsigned char)*k);
		sv->local_only = strncmp(arg->key, "LOCAL_", 6) == 0;
		if ((sv->p = prot_new_membuf()) == NULL)
			abort();
		r = handler(sv, arg);
		if (fz_log)
			fprintf(stderr, "fuzz_server: %s: result %d\n",
			    arg->key, (int)r);
		fz_check_output(sv->p);
		prot_free(sv->p);
		sv->p = NULL;
		sv->local_only = 0;
		dlist_free(arg);
	}
	if (sv->ingest != NULL) {
		store_ingest_abort(sv->ingest);
		store_ingest_free(sv->ingest);
		sv->ingest = NULL;
	}
}

static int
fz_crc_cb(const struct store_mailbox *mb, void *arg)
{
	uint32_t crc, crca;

	(void)arg;
	if (store_mailbox_crc_recalc(fz_store, mb->id, &crc, &crca) == -1) {
		fprintf(stderr, "fuzz_server: crc_recalc %s: %s\n", mb->name,
		    store_error(fz_store));
		abort();
	}
	if (crc != mb->sync_crc || crca != mb->sync_crc_annot) {
		fprintf(stderr, "fuzz_server: %s: stored SYNC_CRC %u "
		    "SYNC_CRC_ANNOT %u, recomputed %u %u\n", mb->name,
		    mb->sync_crc, mb->sync_crc_annot, crc, crca);
		abort();
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sv sv;
	struct prot *in;
	char word[FZ_MAXWORD], user[] = "cyrus";
	int n, c;

	if (fz_runs++ % fz_keep == 0 && fz_runs > 1)
		fz_store_reset();
	if ((in = prot_new_mem(data, size)) == NULL)
		abort();
	memset(&sv, 0, sizeof(sv));
	sv.conf = fz_conf;
	sv.store = fz_store;
	sv.peer = "fuzz";
	sv.userid = user;
	sv.authenticated = 1;
	sv.admin = 1;

	while ((n = fz_word(in, word, sizeof(word))) != -1) {
		if (n <= 0) {
			/* Null or overlong command: the line is dropped. */
			if (n == 0 && (c = prot_getc(in)) == '\n')
				continue;
			if (n == 0 && c == '\r' && prot_peek(in) == '\n') {
				(void)prot_getc(in);
				continue;
			}
			if (dlist_eatline(in) == -1)
				break;
			continue;
		}
		if (strcasecmp(word, "GET") == 0)
			fz_dlist(&sv, in, sv_get, 0);
		else if (strcasecmp(word, "APPLY") == 0)
			fz_dlist(&sv, in, sv_apply, 1);
		else if (strcasecmp(word, "RESTORE") == 0)
			fz_dlist(&sv, in, sv_restore, 1);
		else if (strcasecmp(word, "EXIT") == 0)
			break;
		else if (dlist_eatline(in) == -1)
			break;
	}
	prot_free(in);

	if (store_mailbox_foreach(fz_store, NULL, fz_crc_cb, NULL) != 0) {
		fprintf(stderr, "fuzz_server: mailbox walk: %s\n",
		    store_error(fz_store));
		abort();
	}
	return 0;
}
