/*
 * sync_server: the replica end of csync.  This file is the session:
 * transports (stdio, or a listening socket forking per connection), the
 * banner, AUTHENTICATE, STARTTLS, COMPRESS and the command loop.  The
 * GET/APPLY/RESTORE handlers are in get.c and apply.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* ppoll, accept4 */
#endif
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <zlib.h>

#include "conf.h"
#include "dlist.h"
#include "names.h"
#include "prot.h"
#include "store.h"
#include "server.h"

#ifndef SYNCPIPE_VERSION
#define SYNCPIPE_VERSION	"0.1"
#endif

#ifdef SYNCPIPE_FUZZ
/*
 * Built into the session fuzz target (test/fuzz/fuzz_session.c), which
 * runs many sessions in one process: the log goes to stderr at most,
 * never to the system log.  A store the target keeps open from one
 * session to the next (sv_fuzz_session()) stands in for the one
 * session_run() would open, and is left open at the end.
 */
#undef openlog
#undef syslog
#define openlog(ident, option, facility)	((void)0)
#define syslog(priority, ...)			((void)0)

static struct store	*sv_fuzz_store;
#define store_open(conf, err, errlen)					\
	(sv_fuzz_store != NULL ? sv_fuzz_store : store_open(conf, err, errlen))
#define store_close(st)							\
	((st) != sv_fuzz_store ? store_close(st) : (void)0)
#endif

#define SV_SERVICE	"syncserver"	/* config prefix: the cyrus.conf name */
#define SV_MAXWORD	64		/* command words, mechanisms, tags */
#define SV_MAXAUTH	(65536 + 1024)	/* base64 line of AUTHENTICATE */
#define SV_TLS_TIMEOUT	180		/* seconds for a TLS handshake */
#define SV_MAXCHILD	256		/* connections at once (listen mode) */
#define SV_KILL_AFTER	30		/* seconds from TERM to KILL at exit */

struct opts {
	const char	*config;
	const char	*listen;
	int		 ssf;
	int		 debug;
};

/* Session-wide settings read once from the config. */
struct settings {
	const char	*service;	/* config prefix */
	char		 servername[256];
	int		 allowplaintext;
	int		 allowanon;
	int64_t		 failpause;	/* seconds */
	int64_t		 timeout;	/* seconds */
	int		 tls_configured;
	int		 synclog_chain;
	uint64_t	 maxmessagesize;
	int		 ssf;		/* external SSF (-p) */
};

static struct settings	 set;
static const struct conf *sasl_conf;
static int		 log_stderr;
static int		 log_debug;

/* Shutdown in a connection: see on_term(). */
static volatile sig_atomic_t sv_terminate;
static volatile sig_atomic_t sv_idle;
static volatile sig_atomic_t sv_idle_fd = -1;
static volatile sig_atomic_t sv_idle_deflate;

/* Listen mode. */
static volatile sig_atomic_t lsn_terminate;
static volatile sig_atomic_t lsn_sigchld;

static void
usage(void)
{
	fprintf(stderr, "usage: sync_server [-Df] [-C config] [-p ssf] "
	    "[--listen host:port]\n");
	exit(EX_USAGE);
}

/*
 * Log one line: always to syslog, and to stderr when it is a terminal,
 * with -D, or in listen mode.  Never to stdout, which may be the
 * protocol stream.
 */
void
sv_log(int priority, const char *fmt, ...)
{
	static int opened;
	char buf[2048];
	va_list ap;

	if (priority == LOG_DEBUG && !log_debug)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (!opened) {
		openlog("sync_server", LOG_PID, LOG_MAIL);
		opened = 1;
	}
	syslog(priority, "%s", buf);
	if (log_stderr)
		fprintf(stderr, "sync_server[%ld]: %s\n", (long)getpid(), buf);
}

/*
 * The status line for a handler's result, without CRLF.  The Cyrus client
 * matches "<CODE> " after NO, so these strings are part of the protocol.
 */
const char *
sv_status_line(enum sv_result r)
{
	switch (r) {
	case SV_OK:
		return "OK success";
	case SV_INVALID_USER:
		return "NO IMAP_INVALID_USER No Such User";
	case SV_MAILBOX_NONEXISTENT:
		return "NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox";
	case SV_MAILBOX_LOCKED:
		return "NO IMAP_MAILBOX_LOCKED Mailbox locked";
	case SV_MAILBOX_MOVED:
		return "NO IMAP_MAILBOX_MOVED Mailbox exists with another name "
		    "or uniqueid";
	case SV_MAILBOX_NOTSUPPORTED:
		return "NO IMAP_MAILBOX_NOTSUPPORTED Operation is not "
		    "supported on mailbox";
	case SV_SYNC_CHECKSUM:
		return "NO IMAP_SYNC_CHECKSUM Checksum Failure";
	case SV_SYNC_CHANGED:
		return "NO IMAP_SYNC_CHANGED Changed since last sync";
	case SV_SYNC_BADSIEVE:
		return "NO IMAP_SYNC_BADSIEVE Sieve script compilation failure";
	case SV_PROTOCOL_ERROR:
		return "NO IMAP_PROTOCOL_ERROR Protocol error";
	case SV_BAD_PARAMETERS:
		return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
	case SV_UNKNOWN:
	default:
		return "NO Unknown error";
	}
}

/* ------------------------------------------------------------------ */
/* Configuration */

static int
load_settings(const struct conf *conf, const struct opts *o)
{
	char err[256];
	const char *s;
	int64_t v;
	int sw;

	memset(&set, 0, sizeof(set));
	s = getenv("CYRUS_SERVICE");
	set.service = (s != NULL && *s != '\0') ? s : SV_SERVICE;
	set.ssf = o->ssf;

	s = conf_get(conf, set.service, "servername", NULL);
	if (s != NULL && *s != '\0')
		strlcpy(set.servername, s, sizeof(set.servername));
	else if (gethostname(set.servername, sizeof(set.servername)) == -1)
		strlcpy(set.servername, "localhost", sizeof(set.servername));
	set.servername[sizeof(set.servername) - 1] = '\0';

	if ((sw = conf_getswitch(conf, set.service, "allowplaintext", 0,
	    err, sizeof(err))) == -1)
		goto bad;
	set.allowplaintext = sw;
	if ((sw = conf_getswitch(conf, set.service, "allowanonymouslogin", 0,
	    err, sizeof(err))) == -1)
		goto bad;
	set.allowanon = sw;
	if ((sw = conf_getswitch(conf, set.service, "sync_log_chain", 0,
	    err, sizeof(err))) == -1)
		goto bad;
	set.synclog_chain = sw;

	if (conf_getduration(conf, set.service, "failedloginpause", "3s", 's',
	    &v, err, sizeof(err)) == -1)
		goto bad;
	set.failpause = v < 0 ? 0 : v;
	if (conf_getduration(conf, set.service, "sync_timeout", "30m", 's',
	    &v, err, sizeof(err)) == -1)
		goto bad;
	set.timeout = v < 3 ? 3 : v;
	if (set.timeout > INT_MAX)
		set.timeout = INT_MAX;
	if (conf_getint(conf, set.service, "maxmessagesize", 0, &v,
	    err, sizeof(err)) == -1)
		goto bad;
	set.maxmessagesize = v < 0 ? 0 : (uint64_t)v;

	set.tls_configured =
	    conf_get(conf, set.service, "tls_server_cert", NULL) != NULL &&
	    conf_get(conf, set.service, "tls_server_key", NULL) != NULL;
	return 0;
bad:
	fprintf(stderr, "sync_server: %s\n", err);
	return -1;
}

struct partcheck {
	const struct conf	*conf;
	int			 bad;
};

static void
check_partition(const char *key, const char *value, const char *file,
    int line, void *arg)
{
	struct partcheck *pc = arg;
	struct stat sb;
	const char *dir;

	(void)value;
	(void)file;
	(void)line;
	if (strncmp(key, "partition-", 10) != 0 ||
	    (dir = conf_partition_path(pc->conf, key + 10)) == NULL)
		return;
	if (*dir == '\0') {
		fprintf(stderr, "sync_server: %s: no directory given\n", key);
		pc->bad = 1;
	} else if (stat(dir, &sb) == -1) {
		fprintf(stderr, "sync_server: %s: %s: %s\n", key, dir,
		    strerror(errno));
		pc->bad = 1;
	} else if (!S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "sync_server: %s: %s: not a directory\n", key,
		    dir);
		pc->bad = 1;
	}
}

/*
 * Every configured partition must be a directory.  A replica whose spool
 * is missing (a mount that did not happen, a mistyped path) refuses to
 * start rather than accept mailboxes it could never hold the bodies of.
 * Returns 0 or -1 (the reasons are on stderr).
 */
static int
check_partitions(const struct conf *conf)
{
	struct partcheck pc = { conf, 0 };

	conf_foreach(conf, check_partition, &pc);
	return pc.bad ? -1 : 0;
}

/*
 * Running as root, become the configured cyrus_user, so that the store's
 * files keep the owner the rest of the installation expects.  Without
 * that option the identity is left alone.
 */
static int
drop_privileges(const struct conf *conf)
{
	const char *user;
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	if ((user = conf_get(conf, NULL, "cyrus_user", NULL)) == NULL)
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		fprintf(stderr, "sync_server: cyrus_user %s: no such user\n",
		    user);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) == -1 ||
	    setgid(pw->pw_gid) == -1 || setuid(pw->pw_uid) == -1) {
		fprintf(stderr, "sync_server: cannot become %s: %s\n", user,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* SASL */

static int
sasl_getopt_cb(void *context, const char *plugin, const char *option,
    const char **result, unsigned *len)
{
	char key[256];
	const char *v;

	(void)context;
	v = NULL;
	if (plugin != NULL) {
		snprintf(key, sizeof(key), "sasl_%s_%s", plugin, option);
		v = conf_get(sasl_conf, set.service, key, NULL);
	}
	if (v == NULL) {
		snprintf(key, sizeof(key), "sasl_%s", option);
		v = conf_get(sasl_conf, set.service, key, NULL);
	}
	if (v == NULL)
		return SASL_FAIL;
	*result = v;
	if (len != NULL)
		*len = (unsigned)strlen(v);
	return SASL_OK;
}

static int
sasl_log_cb(void *context, int level, const char *message)
{
	int pri;

	(void)context;
	switch (level) {
	case SASL_LOG_ERR:
		pri = LOG_ERR;
		break;
	case SASL_LOG_FAIL:
	case SASL_LOG_WARN:
		pri = LOG_NOTICE;
		break;
	case SASL_LOG_NOTE:
		pri = LOG_INFO;
		break;
	default:
		pri = LOG_DEBUG;
		break;
	}
	sv_log(pri, "SASL: %s", message);
	return SASL_OK;
}

/* libsasl takes every callback as int (*)(void). */
#define SASL_FN(f)	((int (*)(void))(void (*)(void))(f))

static sasl_callback_t sasl_cbs[] = {
	{ SASL_CB_GETOPT, SASL_FN(sasl_getopt_cb), NULL },
	{ SASL_CB_LOG, SASL_FN(sasl_log_cb), NULL },
	{ SASL_CB_LIST_END, NULL, NULL }
};

static int
sasl_setup(const struct conf *conf)
{
	int r;

	sasl_conf = conf;
	if ((r = sasl_server_init(sasl_cbs, "csync")) != SASL_OK) {
		fprintf(stderr, "sync_server: SASL initialisation: %s\n",
		    sasl_errstring(r, NULL, NULL));
		return -1;
	}
	return 0;
}

/*
 * Security properties: no security layer is ever offered (max SSF 0), so
 * nothing but TLS and DEFLATE ever wraps the stream.  Plaintext mechanisms
 * need TLS unless allowplaintext is set.
 */
static int
sasl_secprops(sasl_conn_t *conn, int tls)
{
	sasl_security_properties_t sp;
	sasl_ssf_t ext;

	memset(&sp, 0, sizeof(sp));
	sp.min_ssf = 0;
	sp.max_ssf = 0;
	sp.maxbufsize = PROT_BUFSIZE;
	if (!set.allowplaintext && !tls)
		sp.security_flags |= SASL_SEC_NOPLAINTEXT;
	if (!set.allowanon)
		sp.security_flags |= SASL_SEC_NOANONYMOUS;
	if (sasl_setprop(conn, SASL_SEC_PROPS, &sp) != SASL_OK)
		return -1;
	ext = (sasl_ssf_t)set.ssf;
	if (sasl_setprop(conn, SASL_SSF_EXTERNAL, &ext) != SASL_OK)
		return -1;
	return 0;
}

/* "a.b.c.d;port" as libsasl wants addresses. */
static int
sasl_addr(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (getnameinfo((const struct sockaddr *)ss, sizeof(*ss), host,
	    sizeof(host), serv, sizeof(serv),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return -1;
	snprintf(buf, size, "%s;%s", host, serv);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The session */

struct session {
	struct sv		 sv;
	sasl_conn_t		*sasl;
	SSL_CTX			*tls;
	int			 rfd, wfd;
	int			 tcp;		/* SASL required */
	char			 peer[NI_MAXHOST + NI_MAXSERV + 8];
	char			*authbuf;	/* SV_MAXAUTH bytes */
	char			*decbuf;	/* SV_MAXAUTH bytes */
	/* Bodies of the current command lost to a local failure (disk
	 * full, I/O error) and refused for what the client sent (too big,
	 * size or SHA-1 mismatch): they decide the status of the command. */
	unsigned		 body_local;
	unsigned		 body_refused;
};

/* Result of one step of the loop. */
enum step {
	STEP_NEXT,		/* read the next command */
	STEP_EXIT,		/* the client is done: exit 0 */
	STEP_IOERR,		/* the connection is broken */
	STEP_DROP		/* the stream cannot be resynchronised: close */
};

static int
out(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Write one response line and flush it. */
static int
out(struct session *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (prot_puts(s->sv.p, buf) == -1 || prot_puts(s->sv.p, "\r\n") == -1 ||
	    prot_flush(s->sv.p) == -1)
		return -1;
	return 0;
}

static int
banner(struct session *s)
{
	const char *mechs;
	unsigned len;
	int n;
	struct prot *p = s->sv.p;

	if (!s->sv.authenticated && s->sasl != NULL &&
	    sasl_listmech(s->sasl, NULL, "* SASL ", " ", "\r\n", &mechs,
	    &len, &n) == SASL_OK && n > 0) {
		if (prot_write(p, mechs, len) == -1)
			return -1;
	}
	if (!s->sv.authenticated) {
		if (set.tls_configured && !prot_tls_active(p) &&
		    prot_puts(p, "* STARTTLS\r\n") == -1)
			return -1;
		if (!prot_compress_active(p) && !prot_tls_active(p) &&
		    prot_puts(p, "* COMPRESS DEFLATE\r\n") == -1)
			return -1;
		if (prot_puts(p, "* SIEVE-MAILBOX\r\n") == -1)
			return -1;
	}
	return out(s, "* OK %s syncpipe sync server %s", set.servername,
	    SYNCPIPE_VERSION);
}

/*
 * Read a word of at most size-1 bytes, up to SP, CR, LF or EOF (not
 * consumed).  Returns its length, -1 on EOF or error before any byte,
 * -2 when it is too long (the rest of the word is consumed).
 */
static int
read_word(struct prot *p, char *buf, size_t size)
{
	size_t n;
	int c, toolong;

	n = 0;
	toolong = 0;
	for (;;) {
		c = prot_getc(p);
		if (c == -1) {
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

/* Consume CRLF or LF.  Returns 0, or -1 when something else follows. */
static int
read_eol(struct prot *p)
{
	int c;

	c = prot_getc(p);
	if (c == '\n')
		return 0;
	if (c == '\r') {
		if ((c = prot_getc(p)) == '\n')
			return 0;
		if (c != -1)
			prot_ungetc(p, c);
	} else if (c != -1)
		prot_ungetc(p, c);
	return -1;
}

/*
 * The rest of the line is dropped, literals included.  -1 at EOF, or
 * DLIST_EAT_TOOBIG: a literal too large to drain was announced, and the
 * stream cannot be brought back in sync.
 */
static int
eatline(struct session *s)
{
	return dlist_eatline(s->sv.p);
}

/* After DLIST_EAT_TOOBIG: say why, then end the connection. */
static enum step
toobig(struct session *s)
{
	sv_log(LOG_NOTICE, "%s: literal too large to skip, closing",
	    s->peer);
	(void)out(s, "BYE literal too large");
	return STEP_DROP;
}

/* Reply after dropping the rest of the line. */
static enum step
refuse(struct session *s, const char *line)
{
	int r;

	if ((r = eatline(s)) == DLIST_EAT_TOOBIG)
		return toobig(s);
	if (r == -1 && prot_eof(s->sv.p))
		return STEP_IOERR;
	return out(s, "%s", line) == -1 ? STEP_IOERR : STEP_NEXT;
}

static enum step
cmd_noargs(struct session *s, const char *name, const char *reply,
    enum step after)
{
	char line[128];

	if (read_eol(s->sv.p) == -1) {
		snprintf(line, sizeof(line),
		    "BAD Unexpected extra arguments to %s", name);
		return refuse(s, line);
	}
	if (out(s, "%s", reply) == -1)
		return STEP_IOERR;
	return after;
}

static int
is_admin(const struct conf *conf, const char *user)
{
	const char *list, *q;
	size_t ulen, n;

	if ((list = conf_get(conf, set.service, "admins", NULL)) == NULL)
		return 0;
	ulen = strlen(user);
	for (q = list; *q != '\0'; q += n) {
		q += strspn(q, " \t,");
		n = strcspn(q, " \t,");
		if (n == ulen && n > 0 && strncmp(q, user, n) == 0)
			return 1;
	}
	return 0;
}

static enum step
auth_failed(struct session *s, const char *mech, const char *why)
{
	sv_log(LOG_NOTICE, "badlogin: %s %s %s", s->peer, mech, why);
	if (set.failpause > 0)
		sleep((unsigned)set.failpause);
	return out(s, "NO %s", why) == -1 ? STEP_IOERR : STEP_NEXT;
}

static enum step
cmd_authenticate(struct session *s)
{
	struct prot *p = s->sv.p;
	char mech[SV_MAXWORD];
	const char *ir, *sout, *user;
	char *line, *sp;
	unsigned soutlen, clen;
	ssize_t n;
	size_t mlen;
	int r;
	const void *uv;

	if (s->sv.authenticated)
		return refuse(s, "BAD Already authenticated");
	if (prot_peek(p) != ' ')
		return refuse(s, "BAD Missing required argument to "
		    "Authenticate");
	(void)prot_getc(p);
	line = s->authbuf;
	n = prot_readline(p, line, SV_MAXAUTH);
	if (n == -1)
		return STEP_IOERR;
	if (n == -2)
		return out(s, "BAD Invalid argument to Authenticate") == -1 ?
		    STEP_IOERR : STEP_NEXT;
	if ((sp = strchr(line, ' ')) != NULL)
		*sp = '\0';
	mlen = strlcpy(mech, line, sizeof(mech));
	if (mlen == 0 || mlen >= sizeof(mech))
		return out(s, "BAD Invalid argument to Authenticate") == -1 ?
		    STEP_IOERR : STEP_NEXT;
	ir = sp != NULL ? sp + 1 : NULL;
	if (s->sasl == NULL)
		return auth_failed(s, mech, "SASL not available");

	if (ir != NULL) {
		if (strcmp(ir, "=") == 0)
			clen = 0;
		else if (sasl_decode64(ir, (unsigned)strlen(ir), s->decbuf,
		    SV_MAXAUTH, &clen) != SASL_OK)
			return out(s, "BAD Invalid base64 string") == -1 ?
			    STEP_IOERR : STEP_NEXT;
		r = sasl_server_start(s->sasl, mech, s->decbuf, clen, &sout,
		    &soutlen);
	} else
		r = sasl_server_start(s->sasl, mech, NULL, 0, &sout, &soutlen);

	while (r == SASL_CONTINUE) {
		unsigned elen;

		if (sasl_encode64(sout != NULL ? sout : "", soutlen,
		    s->authbuf, SV_MAXAUTH, &elen) != SASL_OK)
			return auth_failed(s, mech, "SASL challenge too long");
		if (prot_puts(p, "+ ") == -1 ||
		    prot_write(p, s->authbuf, elen) == -1 ||
		    prot_puts(p, "\r\n") == -1 || prot_flush(p) == -1)
			return STEP_IOERR;
		n = prot_readline(p, line, SV_MAXAUTH);
		if (n == -1)
			return STEP_IOERR;
		if (n == -2)
			return auth_failed(s, mech, "Error reading client "
			    "response: line too long");
		if (strcmp(line, "*") == 0) {
			sv_log(LOG_NOTICE, "badlogin: %s %s canceled", s->peer,
			    mech);
			return out(s, "BAD Client canceled authentication") ==
			    -1 ? STEP_IOERR : STEP_NEXT;
		}
		if (sasl_decode64(line, (unsigned)n, s->decbuf, SV_MAXAUTH,
		    &clen) != SASL_OK)
			return auth_failed(s, mech, "Error reading client "
			    "response: invalid base64");
		r = sasl_server_step(s->sasl, s->decbuf, clen, &sout,
		    &soutlen);
	}
	if (r != SASL_OK)
		return auth_failed(s, mech, sasl_errstring(r, NULL, NULL));

	if (sasl_getprop(s->sasl, SASL_USERNAME, &uv) != SASL_OK ||
	    uv == NULL)
		return auth_failed(s, mech, "no identity");
	user = uv;
	free(s->sv.userid);
	if ((s->sv.userid = strdup(user)) == NULL)
		return STEP_IOERR;
	s->sv.authenticated = 1;
	s->sv.admin = is_admin(s->sv.conf, user);
	sv_log(LOG_NOTICE, "login: %s %s %s%s User logged in", s->peer, user,
	    mech, prot_tls_active(p) ? "+TLS" : "");
	if (!s->sv.admin)
		sv_log(LOG_NOTICE, "%s is not in admins: every command will "
		    "be refused", user);
	return out(s, "OK Success (%s)", prot_tls_active(p) ?
	    "tls protection" : "no protection") == -1 ? STEP_IOERR : STEP_NEXT;
}

static SSL_CTX *
tls_context(struct session *s)
{
	const struct conf *conf = s->sv.conf;
	const char *cert, *key, *ca;
	SSL_CTX *ctx;

	cert = conf_get(conf, set.service, "tls_server_cert", NULL);
	key = conf_get(conf, set.service, "tls_server_key", NULL);
	ca = conf_get(conf, set.service, "tls_client_ca_file", NULL);
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		goto bad;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto bad;
	/* Completes the chain sent with our certificate. */
	if (ca != NULL && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		goto bad;
	return ctx;
bad:
	sv_log(LOG_ERR, "TLS: cannot set up %s / %s: %s",
	    cert, key, ERR_reason_error_string(ERR_get_error()));
	SSL_CTX_free(ctx);
	return NULL;
}

static enum step
cmd_starttls(struct session *s)
{
	struct prot *p = s->sv.p;
	int r;

	if (read_eol(p) == -1)
		return refuse(s, "BAD Unexpected extra arguments to Starttls");
	if (s->sv.authenticated)
		return out(s, "BAD Can't Starttls after authentication") == -1 ?
		    STEP_IOERR : STEP_NEXT;
	if (prot_tls_active(p))
		return out(s, "BAD Already did a successful Starttls") == -1 ?
		    STEP_IOERR : STEP_NEXT;
	if (s->tls == NULL && (s->tls = tls_context(s)) == NULL)
		return out(s, "NO Error initializing TLS") == -1 ?
		    STEP_IOERR : STEP_NEXT;
	if (out(s, "OK Begin TLS negotiation now") == -1)
		return STEP_IOERR;
	prot_settimeout(p, SV_TLS_TIMEOUT);
	r = prot_starttls_server(p, s->tls);
	prot_settimeout(p, (int)set.timeout);
	if (r == -1) {
		/* The stream is in an unknown state: nothing useful can
		 * follow on it. */
		sv_log(LOG_NOTICE, "STARTTLS failed: %s: %s", s->peer,
		    prot_error(p));
		(void)out(s, "NO Starttls failed");
		return STEP_IOERR;
	}
	sv_log(LOG_INFO, "starttls: %s", s->peer);
	if (s->sasl != NULL && sasl_secprops(s->sasl, 1) == -1)
		sv_log(LOG_ERR, "SASL: cannot update security properties");
	return banner(s) == -1 ? STEP_IOERR : STEP_NEXT;
}

static enum step
cmd_compress(struct session *s)
{
	struct prot *p = s->sv.p;
	char alg[SV_MAXWORD];
	char line[SV_MAXWORD + 64];
	int n;

	if (prot_peek(p) != ' ')
		return refuse(s, "BAD Missing required argument to Compress");
	(void)prot_getc(p);
	n = read_word(p, alg, sizeof(alg));
	if (n == -1)
		return STEP_IOERR;
	if (n <= 0 || read_eol(p) == -1)
		return refuse(s, n == 0 ? "BAD Missing required argument to "
		    "Compress" : "BAD Invalid argument to Compress");
	if (prot_compress_active(p))
		return out(s, "NO Compression already active: DEFLATE") == -1 ?
		    STEP_IOERR : STEP_NEXT;
	if (strcasecmp(alg, "DEFLATE") != 0) {
		snprintf(line, sizeof(line),
		    "NO Unknown compression algorithm: %s", alg);
		return out(s, "%s", line) == -1 ? STEP_IOERR : STEP_NEXT;
	}
	if (out(s, "OK DEFLATE active") == -1)
		return STEP_IOERR;
	if (prot_compress(p, Z_DEFAULT_COMPRESSION) == -1) {
		sv_log(LOG_ERR, "COMPRESS: %s", prot_error(p));
		return STEP_IOERR;
	}
	return STEP_NEXT;
}

/*
 * Sink of file literals: bodies go straight into the store's ingest.  A
 * body it cannot take is drained by the parser either way; what is
 * counted here tells a fault of ours (the disk is full) from one of the
 * client's.
 */
static void *
sink_open(void *arg, const char *part, const char *guid, uint64_t size)
{
	struct session *s = arg;
	struct sv *sv = &s->sv;
	void *h;

	if (sv->maxmessagesize != 0 && size > sv->maxmessagesize) {
		sv_log(LOG_NOTICE, "%s: message %s of %llu bytes exceeds "
		    "maxmessagesize", sv->peer, guid,
		    (unsigned long long)size);
		s->body_refused++;
		return NULL;
	}
	if ((h = store_ingest_open(sv->ingest, part, guid, size)) == NULL) {
		sv_log(LOG_ERR, "%s: cannot store message %s/%s: %s",
		    sv->peer, part, guid, store_error(sv->store));
		/* An unconfigured partition is APPLY MESSAGE's to report. */
		if (partition_name_valid(part) &&
		    conf_partition_path(sv->conf, part) != NULL)
			s->body_local++;
	}
	return h;
}

static int
sink_write(void *arg, void *h, const void *buf, size_t n)
{
	struct session *s = arg;
	struct sv *sv = &s->sv;

	if (store_ingest_write(sv->ingest, h, buf, n) == -1) {
		sv_log(LOG_ERR, "%s: cannot store message: %s", sv->peer,
		    store_error(sv->store));
		s->body_local++;
		return -1;
	}
	return 0;
}

static int
sink_close(void *arg, void *h, int ok, char **pathp)
{
	struct session *s = arg;
	struct sv *sv = &s->sv;

	(void)pathp;
	if (store_ingest_close(sv->ingest, h, ok) == -1) {
		/* After a failed write the body is already counted; a
		 * literal cut short fails the whole command. */
		if (ok)
			s->body_refused++;
		return -1;
	}
	return 0;
}

/* GET, APPLY and RESTORE: parse the argument, run the handler. */
static enum step
cmd_dlist(struct session *s, const char *name, const char *upname,
    enum sv_result (*handler)(struct sv *, struct dlist *), int files)
{
	struct sv *sv = &s->sv;
	struct dlist_sink sink;
	struct dlist *arg;
	enum sv_result r;
	char err[256], line[128];
	char *k;
	int rc;

	if (!sv->authenticated)
		return refuse(s, "NO Please authenticate first");
	if (prot_peek(sv->p) != ' ') {
		snprintf(line, sizeof(line),
		    "BAD Missing required argument to %s", name);
		return refuse(s, line);
	}
	(void)prot_getc(sv->p);

	sv->ingest = NULL;
	if (files && (sv->ingest = store_ingest_begin(sv->store)) == NULL)
		sv_log(LOG_ERR, "%s: cannot start ingest: %s", s->peer,
		    store_error(sv->store));
	sink.open = sink_open;
	sink.write = sink_write;
	sink.close = sink_close;
	sink.arg = s;
	s->body_local = s->body_refused = 0;

	arg = NULL;
	rc = dlist_parse(sv->p, 1, sv->ingest != NULL ? &sink : NULL, &arg,
	    err, sizeof(err));
	if (rc == 0 && dlist_parse_eol(sv->p) == -1) {
		snprintf(err, sizeof(err), "junk after the value");
		rc = -1;
	}
	if (rc == -1 || arg == NULL || arg->key == NULL) {
		sv_log(LOG_NOTICE, "%s: bad %s line: %s", s->peer, name, err);
		dlist_free(arg);
		if (sv->ingest != NULL) {
			store_ingest_abort(sv->ingest);
			store_ingest_free(sv->ingest);
			sv->ingest = NULL;
		}
		snprintf(line, sizeof(line),
		    "BAD IMAP_PROTOCOL_ERROR Failed to parse %s line", upname);
		if (rc == -1 && (rc = dlist_eatline(sv->p)) ==
		    DLIST_EAT_TOOBIG)
			return toobig(s);
		if (rc == -1 && prot_eof(sv->p))
			return STEP_IOERR;
		return out(s, "%s", line) == -1 ? STEP_IOERR : STEP_NEXT;
	}
	for (k = arg->key; *k != '\0'; k++)
		*k = (char)toupper((unsigned char)*k);
	sv->local_only = strncmp(arg->key, "LOCAL_", 6) == 0;
	sv_log(LOG_DEBUG, "%s: %s %s", s->peer, name, arg->key);

	r = handler(sv, arg);
	/*
	 * APPLY MESSAGE takes a body it could not store for one the client
	 * got wrong (IMAP_PROTOCOL_ERROR).  When every such body was lost to
	 * a fault of ours (a full disk) the answer is the one Cyrus gives
	 * for an I/O error, so the client keeps its log and retries later.
	 */
	if (r == SV_PROTOCOL_ERROR && s->body_local > 0 &&
	    s->body_refused == 0)
		r = SV_UNKNOWN;

	sv->local_only = 0;
	dlist_free(arg);
	if (sv->ingest != NULL) {
		store_ingest_abort(sv->ingest);
		store_ingest_free(sv->ingest);
		sv->ingest = NULL;
	}
	return out(s, "%s", sv_status_line(r)) == -1 ? STEP_IOERR : STEP_NEXT;
}

/*
 * A Cyrus client with sync_try_imap on speaks IMAP first ("C01
 * CAPABILITY") and waits for a tagged answer.  Answer it as an IMAP
 * server without replication support would, so the client falls back to
 * csync at once.  Returns 1 when word/rest was such a probe.
 */
static int
imap_probe(struct session *s, const char *tag, enum step *st)
{
	struct prot *p = s->sv.p;
	char cmd[SV_MAXWORD];
	const char *q;
	size_t n;
	int c;

	for (q = tag; *q != '\0'; q++)
		if (!isgraph((unsigned char)*q) || strchr("(){%*\"\\+]", *q))
			return 0;
	if (prot_peek(p) != ' ')
		return 0;
	(void)prot_getc(p);
	/* Letters only, so that a literal in the line is left for
	 * dlist_eatline() to skip. */
	n = 0;
	while ((c = prot_peek(p)) != -1 && isalpha(c) && n + 1 < sizeof(cmd))
		cmd[n++] = (char)prot_getc(p);
	cmd[n] = '\0';
	if (n == 0)
		return 0;
	if (read_eol(p) == -1) {
		*st = refuse(s, "BAD IMAP_PROTOCOL_ERROR Unrecognized command");
		return 1;
	}
	if (strcasecmp(cmd, "CAPABILITY") == 0) {
		sv_log(LOG_INFO, "%s: answered an IMAP capability probe",
		    s->peer);
		*st = out(s, "* CAPABILITY IMAP4rev1\r\n%s OK Completed",
		    tag) == -1 ? STEP_IOERR : STEP_NEXT;
	} else if (strcasecmp(cmd, "LOGOUT") == 0) {
		*st = out(s, "* BYE LOGOUT received\r\n%s OK Completed",
		    tag) == -1 ? STEP_IOERR : STEP_EXIT;
	} else {
		*st = out(s, "BAD IMAP_PROTOCOL_ERROR Unrecognized command") ==
		    -1 ? STEP_IOERR : STEP_NEXT;
	}
	return 1;
}

static enum step
command(struct session *s)
{
	struct prot *p = s->sv.p;
	char word[SV_MAXWORD];
	enum step st;
	int n;

	n = read_word(p, word, sizeof(word));
	if (n == -1)
		return STEP_IOERR;
	if (n == -2)
		return refuse(s,
		    "BAD IMAP_PROTOCOL_ERROR Unrecognized command");
	if (n == 0) {
		if (read_eol(p) == 0)
			return out(s, "BAD Null command") == -1 ?
			    STEP_IOERR : STEP_NEXT;
		return refuse(s, "BAD Null command");
	}
	if (s->sv.authenticated && !s->sv.admin)
		return refuse(s, "NO Permission denied");

	if (strcasecmp(word, "AUTHENTICATE") == 0)
		return cmd_authenticate(s);
	if (strcasecmp(word, "STARTTLS") == 0 && set.tls_configured)
		return cmd_starttls(s);
	if (strcasecmp(word, "COMPRESS") == 0)
		return cmd_compress(s);
	if (strcasecmp(word, "NOOP") == 0)
		return cmd_noargs(s, "Noop", "OK Noop completed", STEP_NEXT);
	if (strcasecmp(word, "RESTART") == 0)
		return cmd_noargs(s, "Restart", "OK Restarting", STEP_NEXT);
	if (strcasecmp(word, "EXIT") == 0)
		return cmd_noargs(s, "Exit", "OK Finished", STEP_EXIT);
	if (strcasecmp(word, "GET") == 0)
		return cmd_dlist(s, "Get", "GET", sv_get, 0);
	if (strcasecmp(word, "APPLY") == 0)
		return cmd_dlist(s, "Apply", "APPLY", sv_apply, 1);
	if (strcasecmp(word, "RESTORE") == 0)
		return cmd_dlist(s, "Restore", "RESTORE", sv_restore, 1);
	if (!s->sv.authenticated && imap_probe(s, word, &st))
		return st;
	sv_log(LOG_NOTICE, "%s: unrecognized command %.32s", s->peer, word);
	return refuse(s, "BAD IMAP_PROTOCOL_ERROR Unrecognized command");
}

/*
 * SIGTERM/SIGINT in a connection.  While waiting for a command on a plain
 * (or merely compressed) stream the output is empty and aligned, so the
 * BYE can be written from here with write(2): after DEFLATE as a stored
 * block, which needs no compressor state.  Under TLS it cannot, and the
 * connection just ends.  In the middle of a command the loop says BYE
 * after it.
 */
static void
on_term(int sig)
{
	static const char bye[] = "BYE shutting down\r\n";
	unsigned char blk[5 + sizeof(bye)];
	size_t n;
	int save = errno;

	(void)sig;
	sv_terminate = 1;
	if (!sv_idle) {
		errno = save;
		return;
	}
	if (sv_idle_fd < 0)
		_exit(0);

	n = sizeof(bye) - 1;
	if (sv_idle_deflate) {
		blk[0] = 0x00;	/* not final, stored */
		blk[1] = (unsigned char)(n & 0xff);
		blk[2] = (unsigned char)(n >> 8);
		blk[3] = (unsigned char)(~n & 0xff);
		blk[4] = (unsigned char)((~n >> 8) & 0xff);
		memcpy(blk + 5, bye, n);
		(void)write(sv_idle_fd, blk, n + 5);
	} else
		(void)write(sv_idle_fd, bye, n);
	_exit(0);
}

static void
session_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

static void
describe_peer(struct session *s)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	len = sizeof(ss);
	s->tcp = 0;
	strlcpy(s->peer, "[local]", sizeof(s->peer));
	if (getsockname(s->rfd, (struct sockaddr *)&ss, &len) == -1)
		return;		/* a pipe: ssh, a test */
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
		strlcpy(s->peer, "[unix socket]", sizeof(s->peer));
		return;
	}
	s->tcp = 1;
	len = sizeof(ss);
	if (getpeername(s->rfd, (struct sockaddr *)&ss, &len) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host),
	    serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(s->peer, sizeof(s->peer), "[%s]:%s", host, serv);
}

static int
session_sasl(struct session *s)
{
	struct sockaddr_storage loc, rem;
	socklen_t len;
	char lbuf[NI_MAXHOST + NI_MAXSERV + 2], rbuf[sizeof(lbuf)];
	const char *l, *r;
	int rc;

	l = r = NULL;
	len = sizeof(loc);
	if (getsockname(s->rfd, (struct sockaddr *)&loc, &len) == 0 &&
	    sasl_addr(&loc, lbuf, sizeof(lbuf)) == 0)
		l = lbuf;
	len = sizeof(rem);
	if (getpeername(s->rfd, (struct sockaddr *)&rem, &len) == 0 &&
	    sasl_addr(&rem, rbuf, sizeof(rbuf)) == 0)
		r = rbuf;
	rc = sasl_server_new("csync", set.servername, NULL, l, r, NULL, 0,
	    &s->sasl);
	if (rc != SASL_OK) {
		sv_log(LOG_ERR, "SASL: %s", sasl_errstring(rc, NULL, NULL));
		s->sasl = NULL;
		return -1;
	}
	if (sasl_secprops(s->sasl, 0) == -1) {
		sv_log(LOG_ERR, "SASL: cannot set security properties");
		return -1;
	}
	return 0;
}

/* Pre-authenticated: whoever could start us already has our privileges. */
static void
session_trust(struct session *s)
{
	struct passwd *pw;
	const char *name;

	pw = getpwuid(geteuid());
	name = pw != NULL ? pw->pw_name : "cyrus";
	s->sv.userid = strdup(name);
	s->sv.authenticated = 1;
	s->sv.admin = 1;
}

/*
 * One connection on rfd/wfd, from banner to EXIT or EOF.  Returns an exit
 * status.
 */
static int
session_run(const struct conf *conf, int rfd, int wfd)
{
	struct session s;
	char err[256];
	enum step st;
	int one, rc;

	memset(&s, 0, sizeof(s));
	s.rfd = rfd;
	s.wfd = wfd;
	s.sv.conf = conf;
	s.sv.maxmessagesize = set.maxmessagesize;
	s.sv.synclog_chain = set.synclog_chain;
	describe_peer(&s);
	s.sv.peer = s.peer;
	session_signals();
	if (s.tcp) {
		one = 1;
		(void)setsockopt(rfd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	}

	if ((s.sv.p = prot_new(rfd, wfd)) == NULL ||
	    (s.authbuf = malloc(SV_MAXAUTH)) == NULL ||
	    (s.decbuf = malloc(SV_MAXAUTH)) == NULL) {
		sv_log(LOG_ERR, "out of memory");
		rc = EX_OSERR;
		goto done;
	}
	prot_settimeout(s.sv.p, (int)set.timeout);

	if ((s.sv.store = store_open(conf, err, sizeof(err))) == NULL) {
		sv_log(LOG_ERR, "cannot open the store: %s", err);
		(void)out(&s, "* Fatal error: cannot open the store");
		rc = EX_UNAVAILABLE;
		goto done;
	}

	if (s.tcp) {
		if (session_sasl(&s) == -1) {
			(void)out(&s, "* Fatal error: SASL unavailable");
			rc = EX_SOFTWARE;
			goto done;
		}
	} else
		session_trust(&s);
	sv_log(LOG_INFO, "accepted connection %s%s", s.peer,
	    s.tcp ? "" : " (pre-authenticated)");

	if (banner(&s) == -1) {
		st = STEP_IOERR;
	} else {
		do {
			if (sv_terminate) {
				(void)out(&s, "BYE shutting down");
				st = STEP_EXIT;
				break;
			}
			if (prot_pending(s.sv.p) == 0) {
				sv_idle_fd = prot_tls_active(s.sv.p) ? -1 : wfd;
				sv_idle_deflate = prot_compress_active(s.sv.p);
				sv_idle = 1;
				/* A SIGTERM just before sv_idle was set found
				 * the session busy: say BYE here, or wait in
				 * the read until the timeout. */
				if (sv_terminate) {
					sv_idle = 0;
					(void)out(&s, "BYE shutting down");
					st = STEP_EXIT;
					break;
				}
			}
			if (prot_peek(s.sv.p) == -1) {
				sv_idle = 0;
				st = STEP_IOERR;
				break;
			}
			sv_idle = 0;
			st = command(&s);
		} while (st == STEP_NEXT);
	}
	sv_idle = 0;

	if (st == STEP_EXIT)
		rc = EX_OK;
	else if (st == STEP_DROP)
		rc = EX_IOERR;
	else if (prot_eof(s.sv.p)) {
		sv_log(LOG_INFO, "%s: connection closed", s.peer);
		rc = EX_OK;
	} else {
		sv_log(LOG_NOTICE, "%s: connection error: %s", s.peer,
		    prot_error(s.sv.p));
		rc = EX_IOERR;
	}
done:
	if (s.sv.p != NULL)
		(void)prot_flush(s.sv.p);
	if (s.sv.store != NULL)
		store_close(s.sv.store);
	if (s.sasl != NULL)
		sasl_dispose(&s.sasl);
	if (s.tls != NULL)
		SSL_CTX_free(s.tls);
	prot_free(s.sv.p);
	free(s.sv.userid);
	free(s.authbuf);
	free(s.decbuf);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Listen mode */

static void
on_listen_signal(int sig)
{
	if (sig == SIGCHLD)
		lsn_sigchld = 1;
	else
		lsn_terminate++;
}

/* "host:port", "[v6addr]:port" or ":port"; the listening socket or -1. */
static int
listen_open(const char *spec)
{
	char host[NI_MAXHOST], *port;
	struct addrinfo hints, *res, *ai;
	int fd, one, rc;

	if (strlcpy(host, spec, sizeof(host)) >= sizeof(host) ||
	    (port = strrchr(host, ':')) == NULL) {
		fprintf(stderr, "sync_server: --listen %s: not host:port\n",
		    spec);
		return -1;
	}
	*port++ = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "sync_server: --listen %s: %s\n", spec,
		    gai_strerror(rc));
		return -1;
	}
	fd = -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1)
			continue;
		one = 1;
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 64) == 0)
			break;
		close(fd);
		fd = -1;
	}
	if (fd == -1)
		fprintf(stderr, "sync_server: --listen %s: %s\n", spec,
		    strerror(errno));
	freeaddrinfo(res);
	return fd;
}

static void
reap(pid_t *kids, int *nkids)
{
	pid_t pid;
	int i, status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < *nkids; i++)
			if (kids[i] == pid) {
				kids[i] = kids[--*nkids];
				break;
			}
		if (WIFSIGNALED(status))
			sv_log(LOG_ERR, "connection process %ld killed by "
			    "signal %d", (long)pid, WTERMSIG(status));
	}
}

/*
 * Accept connections until SIGTERM/SIGINT, one process each.  At shutdown
 * the children are asked to finish (SIGTERM: BYE when idle, else after the
 * command in progress) and killed if they do not within SV_KILL_AFTER
 * seconds or at a second signal.
 */
static int
listen_run(const struct conf *conf, int lfd)
{
	struct sigaction sa;
	sigset_t block, waitmask;
	struct pollfd pfd;
	struct timespec ts;
	pid_t kids[SV_MAXCHILD], pid;
	int nkids, fd, i, rc, killed;
	time_t deadline;

	nkids = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_listen_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	/* Signals are only delivered inside ppoll(), so no flag is missed. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGCHLD);

	sv_log(LOG_INFO, "listening (pid %ld)", (long)getpid());
	while (!lsn_terminate) {
		pfd.fd = lfd;
		pfd.events = POLLIN;
		rc = ppoll(&pfd, 1, NULL, &waitmask);
		if (lsn_sigchld) {
			lsn_sigchld = 0;
			reap(kids, &nkids);
		}
		if (rc <= 0 || lsn_terminate)
			continue;
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) == -1) {
			if (errno != EINTR && errno != EAGAIN &&
			    errno != ECONNABORTED)
				sv_log(LOG_ERR, "accept: %s", strerror(errno));
			continue;
		}
		if (nkids >= SV_MAXCHILD) {
			sv_log(LOG_ERR, "too many connections, refusing one");
			close(fd);
			continue;
		}
		if ((pid = fork()) == -1) {
			sv_log(LOG_ERR, "fork: %s", strerror(errno));
			close(fd);
			continue;
		}
		if (pid == 0) {
			close(lfd);
			sa.sa_handler = SIG_DFL;
			sigaction(SIGCHLD, &sa, NULL);
			sigaction(SIGHUP, &sa, NULL);
			sigprocmask(SIG_SETMASK, &waitmask, NULL);
			sigprocmask(SIG_UNBLOCK, &block, NULL);
			_exit(session_run(conf, fd, fd));
		}
		kids[nkids++] = pid;
		close(fd);
	}

	close(lfd);
	sv_log(LOG_INFO, "shutting down, %d connection(s) open", nkids);
	for (i = 0; i < nkids; i++)
		kill(kids[i], SIGTERM);
	killed = 0;
	deadline = time(NULL) + SV_KILL_AFTER;
	lsn_terminate = 1;
	while (nkids > 0) {
		if (!killed && (lsn_terminate > 1 || time(NULL) >= deadline)) {
			for (i = 0; i < nkids; i++)
				kill(kids[i], SIGKILL);
			killed = 1;
		}
		ts.tv_sec = 1;
		ts.tv_nsec = 0;
		(void)ppoll(NULL, 0, &ts, &waitmask);
		lsn_sigchld = 0;
		reap(kids, &nkids);
	}
	sv_log(LOG_INFO, "stopped");
	return EX_OK;
}

/*
 * Under Cyrus's master(8), as an entry of cyrus.conf's SERVICES: master
 * runs the program with its status pipe on descriptor 3 and the
 * service's listening socket on descriptor 4 (and CYRUS_SERVICE in the
 * environment).  The program accepts the connection itself and tells
 * master, with a message of an int and its pid, that it is busy with
 * one; this one serves a single connection and exits, and master starts
 * another for the next.
 */
#define SVC_STATUS_FD		3
#define SVC_LISTEN_FD		4
#define SVC_UNAVAILABLE		2
#define SVC_CONNECTION		3

static int
service_mode(void)
{
	socklen_t len;
	int on = 0;

	if (getenv("CYRUS_SERVICE") == NULL)
		return 0;
	len = sizeof(on);
	return getsockopt(SVC_LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &on,
	    &len) == 0 && on;
}

static void
service_notify(int msg)
{
	struct {
		int	msg;
		pid_t	pid;
	} m;

	memset(&m, 0, sizeof(m));
	m.msg = msg;
	m.pid = getpid();
	if (write(SVC_STATUS_FD, &m, sizeof(m)) != (ssize_t)sizeof(m))
		sv_log(LOG_WARNING, "telling master(8) %d: %s", msg,
		    strerror(errno));
}

/* The connection master's listening socket has for us, or -1. */
static int
service_accept(void)
{
	int fd, on = 1;

	while ((fd = accept(SVC_LISTEN_FD, NULL, NULL)) == -1 &&
	    errno == EINTR)
		;
	if (fd == -1) {
		sv_log(LOG_ERR, "accept: %s", strerror(errno));
		service_notify(SVC_UNAVAILABLE);
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	service_notify(SVC_UNAVAILABLE);
	service_notify(SVC_CONNECTION);
	close(SVC_LISTEN_FD);
	close(SVC_STATUS_FD);
	return fd;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 }
	};
	struct opts o;
	struct conf *conf;
	char err[512];
	const char *errstr;
	int ch, lfd, cfd, rc;

	memset(&o, 0, sizeof(o));
	while ((ch = getopt_long(argc, argv, "C:DfL:p:T:U:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'T':
		case 'U':
			/* master(8)'s reuse timeout and use count: one
			 * connection a process here. */
			break;
		case 'C':
			o.config = optarg;
			break;
		case 'D':
			o.debug = 1;
			break;
		case 'f':
			/* Accepted for compatibility; force mode comes from
			 * the client (APPLY FORCE). */
			break;
		case 'L':
			o.listen = optarg;
			break;
		case 'p':
			o.ssf = (int)strtonum(optarg, 0, 65535, &errstr);
			if (errstr != NULL) {
				fprintf(stderr, "sync_server: -p %s: %s\n",
				    optarg, errstr);
				usage();
			}
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (o.config == NULL)
		o.config = getenv("SYNCPIPE_CONF");
	if (o.config == NULL || *o.config == '\0')
		o.config = CONF_DEFAULT_PATH;
	log_debug = o.debug;
	log_stderr = o.debug || o.listen != NULL || isatty(STDERR_FILENO);

	if ((conf = conf_load(o.config, err, sizeof(err))) == NULL) {
		fprintf(stderr, "sync_server: %s\n", err);
		return EX_CONFIG;
	}
	if (load_settings(conf, &o) == -1 || check_partitions(conf) == -1) {
		conf_free(conf);
		return EX_CONFIG;
	}

	lfd = -1;
	if (o.listen != NULL && (lfd = listen_open(o.listen)) == -1) {
		conf_free(conf);
		return EX_OSERR;
	}
	if (drop_privileges(conf) == -1 || sasl_setup(conf) == -1) {
		conf_free(conf);
		return EX_CONFIG;
	}

	if (lfd != -1)
		rc = listen_run(conf, lfd);
	else if (service_mode()) {
		if ((cfd = service_accept()) == -1)
			rc = EX_OSERR;
		else {
			rc = session_run(conf, cfd, cfd);
			close(cfd);
		}
	} else
		rc = session_run(conf, STDIN_FILENO, STDOUT_FILENO);

	sasl_done();
	conf_free(conf);
	return rc;
}

#ifdef SYNCPIPE_FUZZ
/*
 * The session fuzz target's way in (main() is renamed there): the
 * settings and SASL as main() sets them up, once, then any number of
 * sessions.  Returns 0, or -1 with the reason on stderr.
 */
int
sv_fuzz_setup(const struct conf *conf, int logging)
{
	struct opts o;

	memset(&o, 0, sizeof(o));
	log_stderr = log_debug = logging;
	if (load_settings(conf, &o) == -1 || check_partitions(conf) == -1 ||
	    sasl_setup(conf) == -1)
		return -1;
	return 0;
}

int
sv_fuzz_session(const struct conf *conf, struct store *st, int rfd, int wfd)
{
	int rc;

	sv_fuzz_store = st;
	rc = session_run(conf, rfd, wfd);
	sv_fuzz_store = NULL;
	return rc;
}
#endif
