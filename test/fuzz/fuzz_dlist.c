/*
 * fuzz_dlist: any bytes through the dlist reader; whatever parses must
 * print, re-parse and print again to the same bytes.  After a parse
 * error the rest goes through dlist_eatline, as the server does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dlist.h"
#include "prot.h"

static char *
fz_print(const struct dlist *d, int litplus, size_t *lenp)
{
	struct prot *m;
	const char *s;
	char *res;

	m = prot_new_membuf();
	if (m == NULL || dlist_print(d, 1, m, litplus) < 0)
		abort();
	s = prot_membuf(m, lenp);
	if ((res = malloc(*lenp + 1)) == NULL)
		abort();
	memcpy(res, s, *lenp + 1);
	prot_free(m);
	return res;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct prot *p, *q;
	struct dlist *d = NULL, *d2 = NULL;
	char err[256], *a, *b;
	size_t alen, blen;
	int litplus = size & 1;

	if ((p = prot_new_mem(data, size)) == NULL)
		return 0;
	if (dlist_parse(p, 1, NULL, &d, err, sizeof(err)) < 0) {
		if (d != NULL || memchr(err, '\n', strlen(err)) != NULL)
			abort();
		while (dlist_eatline(p) == 0)
			;
		prot_free(p);
		return 0;
	}
	(void)dlist_parse_eol(p);
	prot_free(p);

	a = fz_print(d, litplus, &alen);
	if ((q = prot_new_mem(a, alen)) == NULL)
		abort();
	if (dlist_parse(q, 1, NULL, &d2, err, sizeof(err)) < 0)
		abort();	/* the printer wrote something we cannot read */
	if (prot_getc(q) != -1)
		abort();	/* ... or the reader stopped early */
	prot_free(q);
	b = fz_print(d2, litplus, &blen);
	if (alen != blen || memcmp(a, b, alen) != 0)
		abort();
	free(a);
	free(b);
	dlist_free(d);
	dlist_free(d2);
	return 0;
}
