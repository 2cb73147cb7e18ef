/*
 * fuzz_conf: arbitrary bytes as an imapd.conf, then every getter on the
 * result.  Includes are not followed: they would read whatever the
 * fuzzer names on this machine.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "names.h"

struct fuzz_ctx {
	const struct conf	*c;
	unsigned		 n;
};

static void
fuzz_each(const char *key, const char *value, const char *file, int line,
    void *arg)
{
	struct fuzz_ctx *ctx = arg;
	char err[128];
	int64_t v;
	char *s;

	ctx->n++;
	(void)conf_known_key(key);
	(void)conf_get(ctx->c, "repl", key, NULL);
	(void)conf_getswitch(ctx->c, NULL, key, 0, err, sizeof(err));
	(void)conf_getint(ctx->c, NULL, key, 0, &v, err, sizeof(err));
	(void)conf_getduration(ctx->c, "x", key, "30m", 's', &v, err,
	    sizeof(err));
	(void)conf_getduration(ctx->c, NULL, key, NULL, 'm', &v, err,
	    sizeof(err));
	if (strncmp(key, "partition-", 10) == 0)
		(void)conf_partition_path(ctx->c, key + 10);
	(void)mboxname_valid(value);
	(void)userid_valid(value);
	(void)sievename_valid(value);
	(void)mboxname_isdeleted(value);
	free(mboxname_to_userid(value));
	if ((s = mboxname_user_inbox(value)) != NULL) {
		char *u = mboxname_to_userid(s);

		/* A userid that maps to a name must map back to itself. */
		if (u == NULL || strcmp(u, value) != 0)
			abort();
		free(u);
		free(s);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_ctx ctx;
	struct conf *c;
	char err[256];

	if (memmem(data, size, "@", 1) != NULL)
		return 0;
	c = conf_parse((const char *)data, size, "fuzz.conf", err,
	    sizeof(err));
	if (c == NULL) {
		/* Every failure must say what went wrong. */
		if (err[0] == '\0')
			abort();
		return 0;
	}
	ctx.c = c;
	ctx.n = 0;
	conf_foreach(c, fuzz_each, &ctx);
	(void)conf_configdir(c);
	(void)conf_partition_path(c, "default");
	conf_set(c, "sync_host", "replaced");
	if (strcmp(conf_get(c, NULL, "sync_host", ""), "replaced") != 0)
		abort();
	conf_free(c);
	return 0;
}
