/*
 * fuzz_synclog: the sync_log line parser and the coalescer.  Every line
 * of the input is parsed; what parses is formatted again and must parse
 * back to the same record; the set is emitted, and emitting the
 * re-parsed output again must give the same text (coalescing is
 * idempotent).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "synclog_read.h"

struct text {
	char	*buf;
	size_t	 len, size;
};

static int
append(const char *line, size_t len, void *arg)
{
	struct text *t = arg;
	char *nb;

	if (t->len + len + 1 > t->size) {
		t->size = (t->len + len + 1) * 2;
		if ((nb = realloc(t->buf, t->size)) == NULL)
			abort();
		t->buf = nb;
	}
	memcpy(t->buf + t->len, line, len);
	t->len += len;
	t->buf[t->len] = '\0';
	return 0;
}

static struct synclog_rec rec, back;

/* Parse each line of data into a new set. */
static struct synclog_set *
load(const char *data, size_t size, int check)
{
	struct synclog_set *set = synclog_set_new();
	char err[256], line[2 * SYNCLOG_READ_MAX + 64];
	const char *p = data, *end = data + size, *nl;
	int n;

	if (set == NULL)
		abort();
	while (p < end) {
		nl = memchr(p, '\n', end - p);
		if (nl == NULL)
			nl = end;
		if (synclog_parse(p, nl - p, &rec, err, sizeof(err)) == 1) {
			if (synclog_set_add(set, &rec, err, sizeof(err)) == -1)
				abort();
			if (check) {
				n = synclog_rec_format(&rec, line,
				    sizeof(line));
				if (n <= 0 || line[n - 1] != '\n')
					abort();
				if (synclog_parse(line, n - 1, &back, err,
				    sizeof(err)) != 1 ||
				    back.kind != rec.kind ||
				    strcmp(back.arg1, rec.arg1) != 0 ||
				    (rec.arg2 == NULL) != (back.arg2 == NULL) ||
				    (rec.arg2 != NULL &&
				    strcmp(back.arg2, rec.arg2) != 0))
					abort();
			}
		}
		p = nl + 1;
	}
	return set;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct synclog_set *s1, *s2;
	struct text t1 = { 0 }, t2 = { 0 };

	s1 = load((const char *)data, size, 1);
	if (synclog_set_emit(s1, append, &t1) != 0)
		abort();
	s2 = load(t1.buf != NULL ? t1.buf : "", t1.len, 0);
	if (synclog_set_emit(s2, append, &t2) != 0)
		abort();
	if (t1.len != t2.len || (t1.len > 0 && memcmp(t1.buf, t2.buf,
	    t1.len) != 0))
		abort();
	synclog_set_free(s1);
	synclog_set_free(s2);
	free(t1.buf);
	free(t2.buf);
	return 0;
}
