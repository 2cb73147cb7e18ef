/*
 * fuzz_reply: the client's reading of a server's replies.  The input is
 * what a replica sends after a command: csync_read_reply() reads replies
 * from it until it fails or the input ends.  Every data line that parses
 * goes through mbdl_parse_mailbox (strict and lax) and mbdl_parse_record,
 * and so does every item of a RECORD list in it.  What mbdl accepts is
 * built again with mbdl_mailbox / mbdl_record, printed, parsed back, and
 * must give the same values.
 *
 * csync_read_reply() flushes first, which a prot_new_mem stream refuses,
 * so the input is served from a memory-backed file through an ordinary
 * read-only fd stream.
 */
#include <sys/mman.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csync.h"
#include "dlist.h"
#include "mbdl.h"
#include "prot.h"
#include "store.h"

static int	fz_fd = -1;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if ((fz_fd = memfd_create("fuzz_reply", 0)) == -1) {
		perror("fuzz_reply: memfd_create");
		abort();
	}
	return 0;
}

/* A sink that takes every file literal and drops its bytes. */
static int fz_handle;

static void *
fz_open(void *arg, const char *part, const char *guid, uint64_t size)
{
	(void)arg;
	(void)part;
	(void)guid;
	return size % 3 == 2 ? NULL : &fz_handle;
}

static int
fz_write(void *arg, void *h, const void *buf, size_t n)
{
	(void)arg;
	(void)buf;
	if (h != &fz_handle)
		abort();
	return n > 4096 ? -1 : 0;
}

static int
fz_close(void *arg, void *h, int ok, char **pathp)
{
	(void)arg;
	(void)pathp;
	if (h != &fz_handle)
		abort();
	return ok ? 0 : -1;
}

static const struct dlist_sink fz_sink = { fz_open, fz_write, fz_close,
	NULL };

/* Print d and parse it back. */
static struct dlist *
fz_reparse(const struct dlist *d)
{
	struct dlist *back = NULL;
	struct prot *m;
	const char *s;
	char err[256];
	size_t len;

	if ((m = prot_new_membuf()) == NULL || dlist_print(d, 1, m, 0) == -1 ||
	    prot_puts(m, "\r\n") == -1)
		abort();
	s = prot_membuf(m, &len);
	if (dlist_parse_buf(s, len, 1, &back, err, sizeof(err)) == -1) {
		fprintf(stderr, "fuzz_reply: built value does not parse: "
		    "%s\n%.*s\n", err, (int)len, s);
		abort();
	}
	prot_free(m);
	return back;
}

static int
fz_streq(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static void
fz_record(const struct dlist *item)
{
	struct store_record r, r2;
	struct dlist *list, *back;
	char err[256];

	if (mbdl_parse_record(item, &r, err, sizeof(err)) == -1)
		return;
	list = dlist_newlist(NULL, "RECORD");
	mbdl_record(list, &r);
	back = fz_reparse(list);
	if (back->head == NULL ||
	    mbdl_parse_record(back->head, &r2, err, sizeof(err)) == -1) {
		fprintf(stderr, "fuzz_reply: rebuilt record refused: %s\n",
		    err);
		abort();
	}
	if (r.uid != r2.uid || r.modseq != r2.modseq ||
	    r.last_updated != r2.last_updated ||
	    r.internaldate != r2.internaldate || r.size != r2.size ||
	    strcmp(r.guid, r2.guid) != 0 || r.sysflags != r2.sysflags ||
	    !fz_streq(r.keywords, r2.keywords) || r.cid != r2.cid ||
	    r.savedate != r2.savedate ||
	    r.createdmodseq != r2.createdmodseq || r.nannots != r2.nannots) {
		fprintf(stderr, "fuzz_reply: record changed in a round trip "
		    "(uid %u/%u flags %#x/%#x keywords '%s'/'%s')\n", r.uid,
		    r2.uid, r.sysflags, r2.sysflags,
		    r.keywords ? r.keywords : "",
		    r2.keywords ? r2.keywords : "");
		abort();
	}
	store_record_clear(&r);
	store_record_clear(&r2);
	dlist_free(list);
	dlist_free(back);
}

static void
fz_mailbox(const struct dlist *item, int strict)
{
	struct store_mailbox mb, mb2;
	struct store_annot *an, *an2;
	struct dlist *built, *back;
	size_t nan, nan2;
	char err[256];

	if (mbdl_parse_mailbox(item, &mb, &an, &nan, strict, err,
	    sizeof(err)) == -1)
		return;
	built = mbdl_mailbox(NULL, "MAILBOX", &mb, an, nan);
	back = fz_reparse(built);
	if (mbdl_parse_mailbox(back, &mb2, &an2, &nan2, 0, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "fuzz_reply: rebuilt mailbox refused: %s\n",
		    err);
		abort();
	}
	if (!fz_streq(mb.name, mb2.name) ||
	    !fz_streq(mb.uniqueid, mb2.uniqueid) ||
	    mb.uidvalidity != mb2.uidvalidity ||
	    mb.last_uid != mb2.last_uid ||
	    mb.highestmodseq != mb2.highestmodseq ||
	    mb.recentuid != mb2.recentuid ||
	    mb.sync_crc != mb2.sync_crc ||
	    mb.sync_crc_annot != mb2.sync_crc_annot ||
	    mbdl_annots_cmp(an, nan, an2, nan2) != 0) {
		fprintf(stderr, "fuzz_reply: mailbox %s changed in a round "
		    "trip\n", mb.name);
		abort();
	}
	store_mailbox_clear(&mb);
	store_mailbox_clear(&mb2);
	store_annots_free(an, nan);
	store_annots_free(an2, nan2);
	dlist_free(built);
	dlist_free(back);
}

static void
fz_item(const struct dlist *item)
{
	const struct dlist *c;
	struct dlist *records;

	fz_mailbox(item, 1);
	fz_mailbox(item, 0);
	fz_record(item);
	if (dlist_getlist(item, "RECORD", &records) == 0)
		for (c = records->head; c != NULL; c = c->next)
			fz_record(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct csync c;
	struct csync_reply r;
	size_t i;

	if (ftruncate(fz_fd, 0) == -1 ||
	    pwrite(fz_fd, data, size, 0) != (ssize_t)size ||
	    lseek(fz_fd, 0, SEEK_SET) == -1)
		abort();
	memset(&c, 0, sizeof(c));
	c.child = -1;
	c.fd = -1;
	if ((c.p = prot_new(fz_fd, -1)) == NULL)
		abort();
	while (csync_read_reply(&c, &r, size & 1 ? &fz_sink : NULL) == 0) {
		if (r.status[0] == '\0' || r.text == NULL)
			abort();
		for (i = 0; i < r.nitems; i++) {
			if (r.items[i] == NULL || r.items[i]->key == NULL)
				abort();
			fz_item(r.items[i]);
		}
		csync_reply_clear(&r);
	}
	csync_reply_clear(&r);
	prot_free(c.p);
	return 0;
}
