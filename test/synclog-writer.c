/*
 * synclog-writer: append sync_log lines with the store's own writer
 * (synclog_append(), the path lib/store.c logs through), for the
 * concurrency tests of synclog-tail(1).
 *
 * usage: synclog-writer config prefix count
 *
 * Appends count events "MAILBOX user.<prefix>.m<k>", k = 0 .. count-1,
 * one synclog_append() call each, to every channel of the config's
 * sync_log_channels (sync_log must be on).
 */
#include <err.h>
#include <stdio.h>
#include <stdlib.h>

#include "conf.h"
#include "synclog.h"

static void
usage(void)
{
	fprintf(stderr, "usage: synclog-writer config prefix count\n");
	exit(64);
}

int
main(int argc, char *argv[])
{
	struct conf *conf;
	char errbuf[512], name[256], line[SYNCLOG_MAX_LINE];
	const char *errstr;
	long long count, k;
	int len, on;

	if (argc != 4)
		usage();
	count = strtonum(argv[3], 0, 100000000, &errstr);
	if (errstr != NULL)
		errx(64, "count %s: %s", argv[3], errstr);
	if ((conf = conf_load(argv[1], errbuf, sizeof(errbuf))) == NULL)
		errx(78, "%s", errbuf);
	if ((on = synclog_enabled(conf, errbuf, sizeof(errbuf))) != 1)
		errx(78, "%s: %s", argv[1],
		    on == 0 ? "sync_log is off" : errbuf);
	for (k = 0; k < count; k++) {
		snprintf(name, sizeof(name), "user.%s.m%lld", argv[2], k);
		len = synclog_format(line, sizeof(line), "MAILBOX", name, NULL);
		if (len < 0)
			errx(1, "%s: can not format", name);
		if (synclog_append(conf, line, len, errbuf,
		    sizeof(errbuf)) == -1)
			errx(75, "line %lld: %s", k, errbuf);
	}
	conf_free(conf);
	return 0;
}
