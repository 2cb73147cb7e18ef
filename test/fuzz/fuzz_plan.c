/*
 * fuzz_plan: any bytes read as a plan (syncpipe-plan(5)) the way
 * sync-send reads one: plan_next line by line until the end or the first
 * error, and every APPLY MESSAGE line through plan_ref_next.  Checked:
 * an error leaves no value behind and its message is one line; a
 * command has its verb, upper-case key and a value carrying that key; a
 * body reference has a non-empty partition name of [A-Za-z0-9_-], a GUID
 * of 40 lower-case hex digits, and its source (if any) is a %(...) list.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dlist.h"
#include "plan.h"
#include "prot.h"

static char line[PLAN_LINE_MAX + 1];

static void
fz_oneline(const char *err)
{
	if (err[0] == '\0' || strchr(err, '\n') != NULL)
		abort();
}

static void
fz_refs(const char *p)
{
	struct plan_ref r;
	char err[256];
	size_t i;
	int n;

	while ((n = plan_ref_next(&p, &r, err, sizeof(err))) == 1) {
		if (r.part[0] == '\0')
			abort();
		for (i = 0; r.part[i] != '\0'; i++)
			if (!isalnum((unsigned char)r.part[i]) &&
			    r.part[i] != '_' && r.part[i] != '-')
				abort();
		if (strlen(r.guid) != 40)
			abort();
		for (i = 0; i < 40; i++)
			if (!isxdigit((unsigned char)r.guid[i]) ||
			    isupper((unsigned char)r.guid[i]))
				abort();
		if (r.loc != NULL && r.loc->kind != DL_KVLIST)
			abort();
		dlist_free(r.loc);
	}
	if (n == -1) {
		if (r.loc != NULL)
			abort();
		fz_oneline(err);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plan_line l;
	struct prot *in;
	char err[512];

	if ((in = prot_new_mem(data, size)) == NULL)
		return 0;
	for (;;) {
		if (plan_next(in, &l, line, sizeof(line), err,
		    sizeof(err)) == -1) {
			if (l.value != NULL)
				abort();
			fz_oneline(err);
			break;
		}
		if (l.kind == PLAN_EOF)
			break;
		if (l.kind == PLAN_MESSAGE)
			fz_refs(l.text);
		else if (l.kind == PLAN_COMMAND) {
			const char *k;

			if (l.word[0] == '\0' || l.value == NULL ||
			    l.value->key == NULL ||
			    strcmp(l.value->key, l.key) != 0)
				abort();
			for (k = l.key; *k != '\0'; k++)
				if (islower((unsigned char)*k))
					abort();
			dlist_free(l.value);
		} else if (l.kind != PLAN_CONTROL || l.text == NULL)
			abort();
	}
	prot_free(in);
	return 0;
}
