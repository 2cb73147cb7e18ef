/*
 * sync_server internals: the session (sync_server.c: transports, banner,
 * AUTHENTICATE, STARTTLS, COMPRESS, the command loop) and the command
 * handlers (get.c, apply.c: GET, APPLY and RESTORE on the store).
 */
#ifndef SYNC_SERVER_H
#define SYNC_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct conf;
struct store;
struct store_ingest;
struct prot;
struct dlist;

/* Results of a handler, mapped to Cyrus's exact status lines by
 * sv_status_line(). */
enum sv_result {
	SV_OK = 0,
	SV_INVALID_USER,
	SV_MAILBOX_NONEXISTENT,
	SV_MAILBOX_LOCKED,
	SV_MAILBOX_MOVED,
	SV_MAILBOX_NOTSUPPORTED,
	SV_SYNC_CHECKSUM,
	SV_SYNC_CHANGED,
	SV_SYNC_BADSIEVE,
	SV_PROTOCOL_ERROR,
	SV_BAD_PARAMETERS,
	SV_UNKNOWN		/* "NO Unknown error"; the reason goes to the log */
};

struct sv {
	const struct conf	*conf;
	struct store		*store;
	struct prot		*p;		/* the connection, both directions */
	const char		*peer;		/* for log lines */
	char			*userid;	/* authenticated identity, or NULL */
	int			 authenticated;
	int			 admin;
	int			 sieve_mailbox;	/* APPLY CAPABILITIES (SIEVE-MAILBOX) seen */
	int			 force;		/* APPLY FORCE seen */
	int			 local_only;	/* the current command is a LOCAL_ one */
	int			 synclog_chain;	/* sync_log_chain: log what we apply */
	/* Bodies arriving in the current command's file literals; the
	 * session creates it before parsing APPLY/RESTORE and frees it
	 * after the handler returns (aborting what was not committed). */
	struct store_ingest	*ingest;
	uint64_t		 maxmessagesize;	/* 0 = unlimited */
};

/* Handlers.  arg is the parsed argument of the command (key = sub-command
 * name, already upper-cased by the session).  Data lines ("* ...") are
 * written to sv->p by the handler; the session writes the status line. */
enum sv_result	 sv_get(struct sv *, struct dlist *arg);
enum sv_result	 sv_apply(struct sv *, struct dlist *arg);
enum sv_result	 sv_restore(struct sv *, struct dlist *arg);

/* The quota root governing a mailbox name (the longest existing root that
 * is the name or an ancestor): 1 with the root in buf, 0 if none, -1 on a
 * store error.  Shared by get.c and apply.c. */
int		 sv_quotaroot(struct store *, const char *mboxname, char *buf,
		    size_t size);

/* The exact status line for a result, without CRLF:
 * "OK success", "NO IMAP_SYNC_CHECKSUM Checksum Failure", ... */
const char	*sv_status_line(enum sv_result);

/* Log a line (syslog when running as a daemon, stderr otherwise). */
void		 sv_log(int priority, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));

#ifdef SYNCPIPE_FUZZ
/* sync_server.c in the session fuzz target: main()'s set-up (settings,
 * SASL; logging to stderr when set), then one session on rfd/wfd,
 * returning its exit status.  With a store, the session works on it
 * instead of opening one, and leaves it open. */
int		 sv_fuzz_setup(const struct conf *, int logging);
int		 sv_fuzz_session(const struct conf *, struct store *, int rfd,
		    int wfd);
#endif

#endif
