/*
 * fuzz_actions: any bytes read as an action stream (syncpipe-actions(5))
 * the way sync-plan reads one: through the bounded line reader of
 * synclog_read over a file descriptor, with synclog_action_next.
 * Checked: a control line starts with '%' and holds no NUL, CR or LF
 * and at most SYNCLOG_READ_MAX bytes; a record formats into a log line
 * that parses back to the same record; a dropped line says why on one
 * line; line numbers never go back.
 */
#include <sys/mman.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "synclog_read.h"

static struct synclog_action act;
static struct synclog_rec back;
static int fd = -1;

static void
fz_same(const struct synclog_rec *a, const struct synclog_rec *b)
{
	if (a->kind != b->kind || strcmp(a->arg1, b->arg1) != 0 ||
	    (a->arg2 == NULL) != (b->arg2 == NULL) ||
	    (a->arg2 != NULL && strcmp(a->arg2, b->arg2) != 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct synclog_reader *r;
	char err[256], line[2 * SYNCLOG_READ_MAX + 64];
	unsigned long last = 0;
	size_t len;
	int n, rc;

	if (fd == -1 && (fd = memfd_create("fuzz_actions", 0)) == -1)
		abort();
	if (ftruncate(fd, 0) == -1 ||
	    (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size) ||
	    lseek(fd, 0, SEEK_SET) == -1)
		abort();
	if ((r = synclog_reader_new(fd)) == NULL)
		return 0;
	while ((rc = synclog_action_next(r, &act, err, sizeof(err))) == 1) {
		if (act.lineno < last)
			abort();
		last = act.lineno;
		switch (act.kind) {
		case SYNCLOG_ACTION_CONTROL:
			len = strlen(act.ctl);
			if (act.ctl[0] != '%' || len > SYNCLOG_READ_MAX ||
			    strpbrk(act.ctl, "\r\n") != NULL)
				abort();
			break;
		case SYNCLOG_ACTION_RECORD:
			n = synclog_rec_format(&act.rec, line, sizeof(line));
			if (n <= 0 || line[n - 1] != '\n')
				abort();
			if (n - 1 <= SYNCLOG_READ_MAX) {
				if (synclog_parse(line, (size_t)n - 1, &back,
				    err, sizeof(err)) != 1)
					abort();
				fz_same(&act.rec, &back);
			}
			break;
		case SYNCLOG_ACTION_LONG:
		case SYNCLOG_ACTION_BAD:
			if (act.why[0] == '\0' ||
			    strchr(act.why, '\n') != NULL)
				abort();
			break;
		default:
			abort();
		}
	}
	if (rc == -1 && (err[0] == '\0' || strchr(err, '\n') != NULL))
		abort();
	synclog_reader_free(r);
	return 0;
}
