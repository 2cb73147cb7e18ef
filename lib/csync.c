/*
 * csync.c: the client side of a csync connection.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netdb.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#include "conf.h"
#include "csync.h"
#include "dlist.h"
#include "prot.h"

#define CSYNC_MAX_LINE	8192

/* libsasl2 takes every callback as int (*)(void). */
#define CS_CB(f)	((int (*)(void))(void (*)(void))(f))

static void	cs_seterr(struct csync *, enum csync_err, const char *, ...)
		    __attribute__((__format__(__printf__, 3, 4)));

static void
cs_seterr(struct csync *c, enum csync_err cls, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	c->errclass = cls;
}

/*
 * A failed read on the connection: what went wrong, classed.  n is
 * prot_readline()'s result (-2: the line did not fit), or -1.
 */
static void
cs_readerr(struct csync *c, const char *what, ssize_t n)
{
	const char *e = prot_error(c->p);

	if (n == -2)
		cs_seterr(c, CSYNC_PROTOCOL, "%s: line too long", what);
	else if (prot_timedout(c->p))
		cs_seterr(c, CSYNC_TIMEOUT, "%s: timeout", what);
	else
		cs_seterr(c, CSYNC_UNREACHABLE, "%s: %s", what,
		    e[0] ? e : "connection closed");
}

/*
 * A failed write on the connection, classed: a peer that stopped
 * reading for longer than the timeout is a timeout; anything else (the
 * peer went away) makes it unreachable.
 */
static void
cs_writeerr(struct csync *c)
{
	const char *e = prot_error(c->p);

	if (prot_timedout(c->p))
		cs_seterr(c, CSYNC_TIMEOUT, "write timed out after %d "
		    "seconds (the peer stopped reading)", c->timeout);
	else
		cs_seterr(c, CSYNC_UNREACHABLE, "write: %s",
		    e[0] ? e : "failed");
}

/* Split "host:port", "[v6]:port", "host" into parts. */
static int
cs_split_target(const char *target, char *host, size_t hsize, char *port,
    size_t psize)
{
	const char *colon;

	if (target[0] == '[') {
		const char *end = strchr(target, ']');

		if (end == NULL || (size_t)(end - target) >= hsize)
			return -1;
		memcpy(host, target + 1, end - target - 1);
		host[end - target - 1] = '\0';
		if (end[1] == ':')
			strlcpy(port, end + 2, psize);
		else
			port[0] = '\0';
		return 0;
	}
	colon = strrchr(target, ':');
	if (colon != NULL && strchr(target, ':') == colon) {
		if ((size_t)(colon - target) >= hsize)
			return -1;
		memcpy(host, target, colon - target);
		host[colon - target] = '\0';
		strlcpy(port, colon + 1, psize);
	} else {
		if (strlcpy(host, target, hsize) >= hsize)
			return -1;
		port[0] = '\0';
	}
	/* A "/tls" or "/noauth" suffix as Cyrus accepts is not supported. */
	return 0;
}

static int
cs_connect_tcp(struct csync *c, const char *target, int timeout)
{
	char host[256], port[64];
	struct addrinfo hints, *res, *ai;
	int fd = -1, rc, one = 1;

	if (cs_split_target(target, host, sizeof(host), port,
	    sizeof(port)) == -1) {
		cs_seterr(c, CSYNC_LOCAL, "bad target '%s'", target);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (port[0] == '\0') {
		/* The "csync" service when /etc/services knows it. */
		if (getaddrinfo(host, "csync", &hints, &res) != 0)
			rc = getaddrinfo(host, CSYNC_DEFAULT_PORT, &hints, &res);
		else
			rc = 0;
	} else
		rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		cs_seterr(c, CSYNC_UNREACHABLE, "%s: %s", target,
		    gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct pollfd pfd;
		int flags, soerr = 0;
		socklen_t slen = sizeof(soerr);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1)
			continue;
		flags = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
		rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (rc == -1 && errno == EINPROGRESS) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			rc = poll(&pfd, 1, timeout > 0 ? timeout * 1000 : -1);
			if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR,
			    &soerr, &slen) == 0 && soerr == 0)
				rc = 0;
			else {
				errno = rc == 0 ? ETIMEDOUT : soerr;
				rc = -1;
			}
		}
		if (rc == 0) {
			fcntl(fd, F_SETFL, flags);
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
			    sizeof(one));
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one,
			    sizeof(one));
			break;
		}
		cs_seterr(c, CSYNC_UNREACHABLE, "connect %s: %s", target,
		    strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int
cs_connect_unix(struct csync *c, const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		cs_seterr(c, CSYNC_LOCAL, "socket path too long: %s", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sun,
	    sizeof(sun)) == -1) {
		cs_seterr(c, CSYNC_UNREACHABLE, "connect %s: %s", path,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	return fd;
}

static int
cs_spawn(struct csync *c, const char *command)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		cs_seterr(c, CSYNC_LOCAL, "socketpair: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == -1) {
		cs_seterr(c, CSYNC_LOCAL, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		if (dup2(sv[1], 0) == -1 || dup2(sv[1], 1) == -1)
			_exit(127);
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	c->child = pid;
	return sv[0];
}

static void
cs_trace(const struct csync_opts *o, char dir, const char *line, size_t len)
{
	if (o->trace != NULL)
		o->trace(o->trace_arg, dir, line, len);
}

/* Read the banner up to the "* OK" line, noting the capabilities. */
static int
cs_banner(struct csync *c, const struct csync_opts *o)
{
	char line[CSYNC_MAX_LINE];
	ssize_t n;
	size_t nlines = 0, bytes = 0;

	free(c->cap_mechs);
	c->cap_mechs = NULL;
	c->cap_starttls = c->cap_compress = c->cap_sieve_mailbox = 0;
	for (;;) {
		n = prot_readline(c->p, line, sizeof(line));
		if (n < 0) {
			cs_readerr(c, "reading banner", n);
			return -1;
		}
		cs_trace(o, '<', line, n);
		/* A server that never says "* OK" is not waited for. */
		bytes += (size_t)n + 2;
		if (++nlines > CSYNC_BANNER_LINES ||
		    bytes > CSYNC_BANNER_BYTES) {
			cs_seterr(c, CSYNC_PROTOCOL, "banner too long (no "
			    "\"* OK\" in %zu lines)", nlines);
			return -1;
		}
		if (strncasecmp(line, "* OK", 4) == 0) {
			free(c->banner);
			c->banner = strdup(line);
			return 0;
		}
		if (strncmp(line, "* ", 2) != 0) {
			cs_seterr(c, CSYNC_PROTOCOL, "unexpected banner line: %s",
			    line);
			return -1;
		}
		if (strncasecmp(line + 2, "SASL ", 5) == 0) {
			free(c->cap_mechs);
			c->cap_mechs = strdup(line + 7);
		} else if (strcasecmp(line + 2, "STARTTLS") == 0)
			c->cap_starttls = 1;
		else if (strncasecmp(line + 2, "COMPRESS", 8) == 0 &&
		    strcasestr(line + 10, "DEFLATE") != NULL)
			c->cap_compress = 1;
		else if (strcasecmp(line + 2, "SIEVE-MAILBOX") == 0)
			c->cap_sieve_mailbox = 1;
	}
}

/* Read a single status line (for session commands). */
static int
cs_status(struct csync *c, const struct csync_opts *o, char *line, size_t size)
{
	ssize_t n;

	if (prot_flush(c->p) == -1) {
		cs_writeerr(c);
		return -1;
	}
	n = prot_readline(c->p, line, size);
	if (n < 0) {
		cs_readerr(c, "read", n);
		return -1;
	}
	cs_trace(o, '<', line, n);
	return 0;
}

static int
cs_starttls(struct csync *c, const struct csync_opts *o, const char *host)
{
	char line[CSYNC_MAX_LINE];
	SSL_CTX *ctx;

	prot_puts(c->p, "STARTTLS\r\n");
	cs_trace(o, '>', "STARTTLS", 8);
	if (cs_status(c, o, line, sizeof(line)) == -1)
		return -1;
	if (strncmp(line, "OK", 2) != 0) {
		cs_seterr(c, CSYNC_AUTH, "STARTTLS refused: %s", line);
		return -1;
	}
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		cs_seterr(c, CSYNC_LOCAL, "TLS: cannot create context");
		return -1;
	}
	if (o->tls_ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, o->tls_ca_file,
		    NULL) != 1) {
			cs_seterr(c, CSYNC_LOCAL, "TLS: cannot load %s",
			    o->tls_ca_file);
			SSL_CTX_free(ctx);
			return -1;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (o->tls_cert != NULL && (SSL_CTX_use_certificate_chain_file(ctx,
	    o->tls_cert) != 1 || SSL_CTX_use_PrivateKey_file(ctx,
	    o->tls_key ? o->tls_key : o->tls_cert, SSL_FILETYPE_PEM) != 1)) {
		cs_seterr(c, CSYNC_LOCAL, "TLS: cannot load %s", o->tls_cert);
		SSL_CTX_free(ctx);
		return -1;
	}
	if (prot_starttls_client(c->p, ctx, host) == -1) {
		cs_seterr(c, CSYNC_AUTH, "TLS handshake: %s", prot_error(c->p));
		SSL_CTX_free(ctx);
		return -1;
	}
	SSL_CTX_free(ctx);	/* the connection keeps its reference */
	c->tls = 1;
	return cs_banner(c, o);
}

static int
cs_sasl_simple(void *context, int id, const char **result, unsigned *len)
{
	const struct csync_opts *o = context;
	const char *v = NULL;

	switch (id) {
	case SASL_CB_AUTHNAME:
		v = o->authname;
		break;
	case SASL_CB_USER:
		v = "";		/* no authorization identity, as Cyrus */
		break;
	default:
		return SASL_BADPARAM;
	}
	if (v == NULL)
		return SASL_FAIL;
	*result = v;
	if (len != NULL)
		*len = strlen(v);
	return SASL_OK;
}

static int
cs_sasl_pass(sasl_conn_t *conn, void *context, int id, sasl_secret_t **psecret)
{
	const struct csync_opts *o = context;
	static sasl_secret_t *secret;
	size_t len;

	if (id != SASL_CB_PASS || o->password == NULL)
		return SASL_FAIL;
	len = strlen(o->password);
	free(secret);
	secret = malloc(sizeof(*secret) + len);
	if (secret == NULL)
		return SASL_NOMEM;
	secret->len = len;
	memcpy(secret->data, o->password, len + 1);
	*psecret = secret;
	return SASL_OK;
}

static int
cs_sasl_realm(void *context, int id, const char **avail, const char **result)
{
	const struct csync_opts *o = context;

	if (id != SASL_CB_GETREALM)
		return SASL_FAIL;
	*result = o->realm != NULL ? o->realm : (avail && avail[0] ? avail[0] : "");
	return SASL_OK;
}

static int
cs_authenticate(struct csync *c, const struct csync_opts *o, const char *host)
{
	static int inited;
	sasl_callback_t cb[] = {
		{ SASL_CB_AUTHNAME, CS_CB(cs_sasl_simple), (void *)o },
		{ SASL_CB_USER, CS_CB(cs_sasl_simple), (void *)o },
		{ SASL_CB_PASS, CS_CB(cs_sasl_pass), (void *)o },
		{ SASL_CB_GETREALM, CS_CB(cs_sasl_realm), (void *)o },
		{ SASL_CB_LIST_END, NULL, NULL }
	};
	sasl_conn_t *conn = NULL;
	sasl_security_properties_t secprops;
	const char *out = NULL, *mech = NULL;
	unsigned outlen = 0;
	char line[CSYNC_MAX_LINE], b64[CSYNC_MAX_LINE], mechlist[1024];
	unsigned b64len;
	int r, rc = -1;

	if (!inited) {
		if (sasl_client_init(NULL) != SASL_OK) {
			cs_seterr(c, CSYNC_LOCAL, "SASL: cannot initialise");
			return -1;
		}
		inited = 1;
	}
	if (sasl_client_new("csync", host, NULL, NULL, cb, 0, &conn) !=
	    SASL_OK) {
		cs_seterr(c, CSYNC_LOCAL, "SASL: cannot create a client");
		return -1;
	}
	memset(&secprops, 0, sizeof(secprops));
	secprops.maxbufsize = 65536;
	secprops.max_ssf = 0;	/* no security layer: TLS does that job */
	sasl_setprop(conn, SASL_SEC_PROPS, &secprops);
	/* Offer only what both we (o->mechs) and the server allow. */
	if (o->mechs != NULL) {
		char *tmp = strdup(c->cap_mechs), *tok, *save = NULL;

		mechlist[0] = '\0';
		for (tok = strtok_r(tmp, " ", &save); tok != NULL;
		    tok = strtok_r(NULL, " ", &save))
			if (strcasestr(o->mechs, tok) != NULL) {
				strlcat(mechlist, tok, sizeof(mechlist));
				strlcat(mechlist, " ", sizeof(mechlist));
			}
		free(tmp);
	} else
		strlcpy(mechlist, c->cap_mechs, sizeof(mechlist));
	r = sasl_client_start(conn, mechlist, NULL, &out, &outlen, &mech);
	if (r != SASL_OK && r != SASL_CONTINUE) {
		cs_seterr(c, CSYNC_AUTH, "SASL: no usable mechanism in '%s': %s",
		    mechlist, sasl_errdetail(conn));
		goto done;
	}
	prot_printf(c->p, "AUTHENTICATE %s", mech);
	if (out != NULL) {
		if (outlen == 0)
			prot_puts(c->p, " =");
		else {
			if (sasl_encode64(out, outlen, b64, sizeof(b64),
			    &b64len) != SASL_OK) {
				cs_seterr(c, CSYNC_AUTH, "SASL: response too long");
				goto done;
			}
			prot_printf(c->p, " %s", b64);
		}
	}
	prot_puts(c->p, "\r\n");
	cs_trace(o, '>', "AUTHENTICATE ...", 16);
	for (;;) {
		if (cs_status(c, o, line, sizeof(line)) == -1)
			goto done;
		if (strncmp(line, "OK", 2) == 0) {
			rc = 0;
			break;
		}
		if (strncmp(line, "+ ", 2) != 0 && strcmp(line, "+") != 0) {
			cs_seterr(c, CSYNC_AUTH, "authentication failed: %s",
			    line);
			goto done;
		}
		{
			char dec[CSYNC_MAX_LINE];
			unsigned declen = 0;
			const char *chal = line[1] ? line + 2 : "";

			if (sasl_decode64(chal, strlen(chal), dec, sizeof(dec),
			    &declen) != SASL_OK) {
				cs_seterr(c, CSYNC_PROTOCOL, "bad SASL challenge");
				goto done;
			}
			r = sasl_client_step(conn, dec, declen, NULL, &out,
			    &outlen);
			if (r != SASL_OK && r != SASL_CONTINUE) {
				prot_puts(c->p, "*\r\n");
				cs_seterr(c, CSYNC_AUTH, "SASL: %s",
				    sasl_errdetail(conn));
				goto done;
			}
			if (sasl_encode64(out ? out : "", outlen, b64,
			    sizeof(b64), &b64len) != SASL_OK) {
				cs_seterr(c, CSYNC_AUTH, "SASL: response too long");
				goto done;
			}
			prot_printf(c->p, "%s\r\n", b64);
		}
	}
	c->authenticated = 1;
done:
	sasl_dispose(&conn);
	return rc;
}

static int
cs_compress(struct csync *c, const struct csync_opts *o)
{
	char line[CSYNC_MAX_LINE];

	prot_puts(c->p, "COMPRESS DEFLATE\r\n");
	cs_trace(o, '>', "COMPRESS DEFLATE", 16);
	if (cs_status(c, o, line, sizeof(line)) == -1)
		return -1;
	if (strncmp(line, "OK", 2) != 0) {
		cs_seterr(c, CSYNC_PROTOCOL, "COMPRESS refused: %s", line);
		return -1;
	}
	if (prot_compress(c->p, 1) == -1) {
		cs_seterr(c, CSYNC_LOCAL, "COMPRESS: %s", prot_error(c->p));
		return -1;
	}
	c->compressed = 1;
	return 0;
}

struct csync *
csync_open(const struct csync_opts *o, char *err, size_t errlen,
    enum csync_err *cls)
{
	struct csync *c;
	char host[256] = "localhost", port[64];
	int preauth = 0;

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		*cls = CSYNC_LOCAL;
		return NULL;
	}
	c->child = -1;
	c->fd = -1;
	c->timeout = o->timeout > 0 ? o->timeout : 0;
	c->reply_max = CSYNC_REPLY_MAX;
	if (o->command != NULL) {
		c->fd = cs_spawn(c, o->command);
		preauth = 1;
	} else if (o->target != NULL && o->target[0] == '/') {
		c->fd = cs_connect_unix(c, o->target);
		preauth = 1;
	} else if (o->target != NULL) {
		cs_split_target(o->target, host, sizeof(host), port,
		    sizeof(port));
		c->fd = cs_connect_tcp(c, o->target, o->timeout);
	} else
		cs_seterr(c, CSYNC_LOCAL, "no replica given");
	if (c->fd == -1)
		goto fail;
	c->p = prot_new(c->fd, c->fd);
	if (c->p == NULL) {
		cs_seterr(c, CSYNC_LOCAL, "out of memory");
		goto fail;
	}
	prot_settimeout(c->p, o->timeout);
	if (cs_banner(c, o) == -1)
		goto fail;
	if (!preauth) {
		int usable = c->cap_mechs != NULL && c->cap_mechs[0];

		if (o->starttls || (!usable && c->cap_starttls)) {
			if (!c->cap_starttls) {
				cs_seterr(c, CSYNC_AUTH,
				    "server does not offer STARTTLS");
				goto fail;
			}
			if (cs_starttls(c, o, host) == -1)
				goto fail;
		}
		if (o->authname != NULL) {
			if (c->cap_mechs == NULL) {
				cs_seterr(c, CSYNC_AUTH,
				    "server offers no SASL mechanism");
				goto fail;
			}
			if (cs_authenticate(c, o, host) == -1)
				goto fail;
		}
	}
	if (o->compress) {
		if (!c->cap_compress) {
			cs_seterr(c, CSYNC_PROTOCOL,
			    "server does not offer COMPRESS DEFLATE");
			goto fail;
		}
		if (cs_compress(c, o) == -1)
			goto fail;
	}
	if (o->sieve_mailbox && c->cap_sieve_mailbox) {
		struct dlist *caps = dlist_newlist(NULL, "CAPABILITIES");
		struct csync_reply r;

		dlist_setatom(caps, NULL, "SIEVE-MAILBOX");
		memset(&r, 0, sizeof(r));
		if (csync_call(c, "APPLY", caps, &r, NULL) == 0)
			c->sieve_mailbox = 1;
		else if (r.status[0] == '\0') {
			dlist_free(caps);
			goto fail;
		}
		csync_reply_clear(&r);
		dlist_free(caps);
	}
	return c;
fail:
	snprintf(err, errlen, "%s", c->err);
	*cls = c->errclass;
	csync_close(c);
	return NULL;
}

/*
 * Wait up to secs seconds (-1: for ever) for the child to exit.
 * Returns 0 when it was reaped, -1 if it is still running.
 */
static int
cs_wait_child(pid_t pid, int secs)
{
	struct timespec step = { 0, 20 * 1000 * 1000 };
	long tries = secs < 0 ? -1 : (long)secs * 50;
	int status;
	pid_t r;

	for (;;) {
		r = waitpid(pid, &status, secs < 0 ? 0 : WNOHANG);
		if (r == pid || (r == -1 && errno != EINTR))
			return 0;
		if (r == 0) {
			if (tries-- <= 0)
				return -1;
			nanosleep(&step, NULL);
		}
	}
}

void
csync_close(struct csync *c)
{
	if (c == NULL)
		return;
	if (c->p != NULL) {
		/* After a failure the stream is in no state to say EXIT in,
		 * and a stalled peer would not read it. */
		if (c->errclass == CSYNC_OK) {
			prot_puts(c->p, "EXIT\r\n");
			prot_flush(c->p);
		}
		prot_free(c->p);
	}
	if (c->fd != -1)
		close(c->fd);
	if (c->child != -1 && cs_wait_child(c->child,
	    c->errclass == CSYNC_TIMEOUT ? 0 : c->timeout > 0 ? c->timeout :
	    -1) == -1) {
		/* A stalled command ("ssh host sync_server" stuck on the
		 * far side) is not waited for beyond the timeout. */
		kill(c->child, SIGTERM);
		if (cs_wait_child(c->child, CSYNC_KILL_GRACE) == -1) {
			kill(c->child, SIGKILL);
			cs_wait_child(c->child, -1);
		}
	}
	free(c->cap_mechs);
	free(c->banner);
	free(c);
}

int
csync_send(struct csync *c, const char *verb, const struct dlist *d)
{
	if (prot_puts(c->p, verb) == -1 || (d != NULL &&
	    (prot_puts(c->p, " ") == -1 || dlist_print(d, 1, c->p, 1) == -1)) ||
	    prot_puts(c->p, "\r\n") == -1) {
		cs_writeerr(c);
		return -1;
	}
	return 0;
}

int
csync_flush(struct csync *c)
{
	if (prot_flush(c->p) == -1) {
		cs_writeerr(c);
		return -1;
	}
	return 0;
}

void
csync_reply_clear(struct csync_reply *r)
{
	size_t i;

	for (i = 0; i < r->nitems; i++)
		dlist_free(r->items[i]);
	free(r->items);
	free(r->text);
	memset(r, 0, sizeof(*r));
}

int
csync_read_reply(struct csync *c, struct csync_reply *r,
    const struct dlist_sink *sink)
{
	char line[CSYNC_MAX_LINE], perr[256];
	struct dlist *d;
	uint64_t start;
	ssize_t n;
	int ch;

	memset(r, 0, sizeof(*r));
	if (csync_flush(c) == -1)
		return -1;
	start = prot_bytes_in(c->p);
	for (;;) {
		ch = prot_peek(c->p);
		if (ch == '*') {
			prot_getc(c->p);
			if (prot_getc(c->p) != ' ') {
				if (prot_eof(c->p) || prot_error(c->p)[0])
					cs_readerr(c, "reading reply", -1);
				else
					cs_seterr(c, CSYNC_PROTOCOL,
					    "bad data line from server");
				return -1;
			}
			perr[0] = '\0';
			d = NULL;
			if (dlist_parse(c->p, 1, sink, &d, perr,
			    sizeof(perr)) == -1 || dlist_parse_eol(c->p) == -1) {
				if (d != NULL)
					dlist_free(d);
				/* A timeout or a closed connection in the
				 * middle of a line is not a parse error. */
				if (prot_timedout(c->p) || prot_eof(c->p))
					cs_readerr(c, "reading reply", -1);
				else
					cs_seterr(c, CSYNC_PROTOCOL,
					    "cannot parse a data line: %s",
					    perr[0] ? perr : "bad line end");
				return -1;
			}
			if (c->reply_max > 0 &&
			    prot_bytes_in(c->p) - start > c->reply_max) {
				dlist_free(d);
				cs_seterr(c, CSYNC_PROTOCOL, "reply longer than "
				    "%" PRIu64 " bytes", c->reply_max);
				return -1;
			}
			{
				struct dlist **ni = reallocarray(r->items,
				    r->nitems + 1, sizeof(*ni));

				if (ni == NULL) {
					dlist_free(d);
					cs_seterr(c, CSYNC_LOCAL, "out of memory");
					return -1;
				}
				r->items = ni;
				r->items[r->nitems++] = d;
			}
			continue;
		}
		n = prot_readline(c->p, line, sizeof(line));
		if (n < 0) {
			cs_readerr(c, "reading reply", n);
			return -1;
		}
		{
			const char *sp = strchr(line, ' ');
			size_t wl = sp ? (size_t)(sp - line) : (size_t)n;

			if (wl >= sizeof(r->status)) {
				cs_seterr(c, CSYNC_PROTOCOL,
				    "unexpected reply: %.80s", line);
				return -1;
			}
			memcpy(r->status, line, wl);
			r->status[wl] = '\0';
			r->text = strdup(sp ? sp + 1 : "");
			if (strcmp(r->status, "NO") == 0 && sp != NULL &&
			    strncmp(sp + 1, "IMAP_", 5) == 0) {
				size_t cl = strcspn(sp + 1, " ");

				if (cl < sizeof(r->code)) {
					memcpy(r->code, sp + 1, cl);
					r->code[cl] = '\0';
				}
			}
		}
		if (strcmp(r->status, "OK") && strcmp(r->status, "NO") &&
		    strcmp(r->status, "BAD") && strcmp(r->status, "BYE")) {
			cs_seterr(c, CSYNC_PROTOCOL, "unexpected reply: %.80s",
			    line);
			return -1;
		}
		return 0;
	}
}

int
csync_call(struct csync *c, const char *verb, const struct dlist *d,
    struct csync_reply *r, const struct dlist_sink *sink)
{
	/* Callers clear *r whatever happened, a failed send included. */
	memset(r, 0, sizeof(*r));
	if (csync_send(c, verb, d) == -1)
		return -1;
	if (csync_read_reply(c, r, sink) == -1)
		return -1;
	return strcmp(r->status, "OK") == 0 ? 0 : -1;
}

void
csync_opts_from_conf(struct csync_opts *o, const struct conf *conf,
    const char *channel, const char *target, char *buf, size_t size)
{
	const char *host, *port;

	host = target ? target : conf_get(conf, channel, "sync_host", NULL);
	port = conf_get(conf, channel, "sync_port", NULL);
	if (host != NULL && target == NULL && port != NULL &&
	    host[0] != '/' && strchr(host, ':') == NULL) {
		snprintf(buf, size, "%s:%s", host, port);
		host = buf;
	}
	o->target = host;
	o->authname = conf_get(conf, channel, "sync_authname", NULL);
	o->password = conf_get(conf, channel, "sync_password", NULL);
	o->realm = conf_get(conf, channel, "sync_realm", NULL);
	/* The keys Cyrus's own client reads for its side of TLS. */
	o->tls_ca_file = conf_get(conf, channel, "tls_client_ca_file", NULL);
	o->tls_cert = conf_get(conf, channel, "tls_client_cert", NULL);
	o->tls_key = conf_get(conf, channel, "tls_client_key", NULL);
}

void
csync_source_opts_from_conf(struct csync_opts *o, const struct conf *conf,
    const char *channel, const char *target, char *buf, size_t size)
{
	const char *host, *port;

	host = target ? target : conf_get(conf, channel, "sync_source_host",
	    NULL);
	port = conf_get(conf, channel, "sync_source_port", NULL);
	if (host != NULL && target == NULL && port != NULL &&
	    host[0] != '/' && strchr(host, ':') == NULL) {
		snprintf(buf, size, "%s:%s", host, port);
		host = buf;
	}
	o->target = host;
	o->authname = conf_get(conf, channel, "sync_source_authname", NULL);
	o->password = conf_get(conf, channel, "sync_source_password", NULL);
	o->realm = conf_get(conf, channel, "sync_source_realm", NULL);
	o->tls_ca_file = conf_get(conf, channel, "tls_client_ca_file", NULL);
	o->tls_cert = conf_get(conf, channel, "tls_client_cert", NULL);
	o->tls_key = conf_get(conf, channel, "tls_client_key", NULL);
}

int
csync_exit_status(enum csync_err cls)
{
	switch (cls) {
	case CSYNC_AUTH:	return CSYNC_EXIT_CONFIG;
	case CSYNC_PROTOCOL:	return CSYNC_EXIT_PROTOCOL;
	case CSYNC_TIMEOUT:	return CSYNC_EXIT_TEMP;
	case CSYNC_LOCAL:	return CSYNC_EXIT_IOERR;
	default:		return CSYNC_EXIT_UNREACHABLE;
	}
}
