/*
 * csync: the client side of a csync connection (what sync-send and
 * sync-plan use to talk to a replica, or to read a master).
 *
 * A connection is made to "host[:port]" (TCP, default service csync,
 * port 2005), to "/path" (a UNIX socket, pre-authenticated), or to a
 * spawned command ("ssh replica sync_server") whose stdin/stdout carry the
 * protocol.  csync_open() reads the banner, does STARTTLS when asked or
 * when no usable SASL mechanism is offered before it, AUTHENTICATE through
 * libsasl2, COMPRESS DEFLATE when asked, and APPLY CAPABILITIES
 * (SIEVE-MAILBOX) when the server offers it and the caller wants it.
 */
#ifndef SYNCPIPE_CSYNC_H
#define SYNCPIPE_CSYNC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct prot;
struct dlist;

#define CSYNC_DEFAULT_PORT	"2005"
#define CSYNC_BANNER_LINES	100		/* lines before "* OK" */
#define CSYNC_BANNER_BYTES	65536		/* bytes before "* OK" */
#define CSYNC_REPLY_MAX		(1024u << 20)	/* default reply_max */
#define CSYNC_KILL_GRACE	2		/* seconds from SIGTERM to SIGKILL */

/* Failure classes, so tools can tell a retryable failure from a
 * permanent one. */
enum csync_err {
	CSYNC_OK = 0,
	CSYNC_UNREACHABLE,	/* connect/spawn failed, or the peer went away */
	CSYNC_AUTH,		/* authentication refused or impossible */
	CSYNC_PROTOCOL,		/* the peer said something we cannot parse */
	CSYNC_TIMEOUT,
	CSYNC_LOCAL		/* local resource error */
};

/*
 * Exit statuses shared by the tools that talk csync (sync-plan(1),
 * sync-send(1)): sysexits values, so a caller can tell a temporary
 * failure from a permanent one.
 */
#define CSYNC_EXIT_OK		0
#define CSYNC_EXIT_FAILED	1	/* some objects failed */
#define CSYNC_EXIT_UNREACHABLE	69	/* EX_UNAVAILABLE */
#define CSYNC_EXIT_IOERR	74	/* EX_IOERR */
#define CSYNC_EXIT_TEMP		75	/* EX_TEMPFAIL */
#define CSYNC_EXIT_PROTOCOL	76	/* EX_PROTOCOL */
#define CSYNC_EXIT_CONFIG	78	/* EX_CONFIG */

/* The exit status for a connection failure of class cls. */
int		 csync_exit_status(enum csync_err cls);

struct csync_opts {
	const char	*target;	/* host[:port] or /path; NULL if command */
	const char	*command;	/* spawned via /bin/sh -c; NULL if target */
	const char	*authname;	/* SASL authentication id (NULL: none) */
	const char	*password;
	const char	*realm;
	const char	*mechs;		/* space separated mechanisms to allow, or NULL */
	int		 starttls;	/* 1: always STARTTLS (fail if not offered) */
	const char	*tls_ca_file;	/* verify the server against this CA */
	const char	*tls_cert;	/* client certificate, optional */
	const char	*tls_key;
	int		 compress;	/* 1: COMPRESS DEFLATE (fail if refused) */
	int		 sieve_mailbox;	/* 1: enable SIEVE-MAILBOX when offered */
	int		 timeout;	/* seconds for connect and each reply (0: none) */
	/* Called with every line sent (dir '>') and received ('<') when
	 * not NULL: the -v -v protocol trace.  Literal bytes are shown as
	 * a placeholder. */
	void		(*trace)(void *arg, char dir, const char *line, size_t len);
	void		*trace_arg;
};

struct csync {
	struct prot	*p;
	pid_t		 child;		/* spawned command, or -1 */
	int		 fd;
	/* What the banner offered. */
	int		 cap_starttls;
	int		 cap_compress;
	int		 cap_sieve_mailbox;
	char		*cap_mechs;
	char		*banner;	/* the "* OK ..." line */
	/* State. */
	int		 sieve_mailbox;	/* SIEVE-MAILBOX enabled */
	int		 tls;
	int		 compressed;
	int		 authenticated;
	int		 timeout;	/* seconds, from the options (0: none) */
	/* Bytes of data lines one reply may carry before it is refused as
	 * a protocol error (0: no bound but the dlist limits); set to
	 * CSYNC_REPLY_MAX by csync_open(), callers may lower it. */
	uint64_t	 reply_max;
	char		 err[512];
	enum csync_err	 errclass;
};

/* A reply: the data lines ("* KEY value", parsed) and the status line. */
struct csync_reply {
	struct dlist	**items;	/* parsed data lines, key = NAME */
	size_t		 nitems;
	char		 status[8];	/* "OK", "NO", "BAD", "BYE" */
	char		*text;		/* rest of the status line */
	char		 code[48];	/* for NO: the IMAP_* code if present, else "" */
};

struct conf;
/*
 * Fill the connection settings a sync tool reads from the config:
 * sync_host (with sync_port appended when it has no port of its own),
 * sync_authname, sync_password, sync_realm, and for TLS
 * tls_client_ca_file, tls_client_cert, tls_client_key, each looked up
 * with the channel prefix first.  target, when not NULL, overrides sync_host;
 * buf holds the composed address.
 */
void		 csync_opts_from_conf(struct csync_opts *, const struct conf *,
		    const char *channel, const char *target, char *buf,
		    size_t size);

/*
 * The same for a csync source of master state (a Cyrus master's own csync
 * service): sync_source_host (host[:port] or /path), sync_source_port,
 * sync_source_authname, sync_source_password, sync_source_realm, channel
 * prefix first; TLS as for the replica.  target, when not NULL,
 * overrides sync_source_host.  o->target is NULL when none is set.
 */
void		 csync_source_opts_from_conf(struct csync_opts *,
		    const struct conf *, const char *channel,
		    const char *target, char *buf, size_t size);

/* Connect and set up the session.  Returns NULL with *err filled (and
 * *cls set) on failure. */
struct csync	*csync_open(const struct csync_opts *, char *err, size_t errlen,
		    enum csync_err *cls);
/*
 * Send EXIT (unless the connection failed), close, reap the child.  A
 * child that does not exit once its input is closed is sent SIGTERM
 * after the timeout (at once when the connection timed out), then
 * SIGKILL CSYNC_KILL_GRACE seconds later; with no timeout it is waited
 * for.
 */
void		 csync_close(struct csync *);

/*
 * Write one command: "VERB" or "VERB SP value" (value printed with its
 * key).  Buffered: call csync_flush() or csync_read_reply() to send.
 * Both return 0, or -1 with err and errclass set: CSYNC_TIMEOUT when a
 * write waited longer than the timeout for the peer to read,
 * CSYNC_UNREACHABLE for any other write error.
 */
int		 csync_send(struct csync *, const char *verb, const struct dlist *);
int		 csync_flush(struct csync *);
/*
 * Read one reply.  Data lines are parsed (file literals to sink, which
 * may be NULL to drop their bytes); returns 0 when a status line was
 * read (check r->status), -1 on a transport or parse error (errclass
 * CSYNC_TIMEOUT when a read, or the flush of what was sent, timed out,
 * CSYNC_UNREACHABLE when the connection closed, CSYNC_PROTOCOL for what
 * cannot be parsed or a reply longer than reply_max).
 */
struct dlist_sink;
int		 csync_read_reply(struct csync *, struct csync_reply *,
		    const struct dlist_sink *);
void		 csync_reply_clear(struct csync_reply *);
/* Send a command and read its reply; 0 if the status was OK.  *r is
 * always initialised (empty after a failed send): csync_reply_clear() it. */
int		 csync_call(struct csync *, const char *verb, const struct dlist *,
		    struct csync_reply *, const struct dlist_sink *);

#endif
