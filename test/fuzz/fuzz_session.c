/*
 * fuzz_session: sync_server's session as it runs for a client: the banner,
 * the command loop (command words, null and overlong commands, literals
 * skipped), the checks made before authentication, AUTHENTICATE through
 * libsasl, the IMAP capability probe, COMPRESS, STARTTLS (not configured:
 * an unrecognized command), and GET, APPLY and RESTORE on a real store.
 * sync_server.c is compiled in with SYNCPIPE_FUZZ, which gives it the
 * entry points sv_fuzz_setup() and sv_fuzz_session() and keeps it off the
 * system log.
 *
 * The first byte of an input chooses the peer, the rest is what the
 * client sends:
 *
 *	even	a pre-authenticated peer: the session reads a memfd, as it
 *		reads a pipe from ssh;
 *	odd	a TCP peer, who must AUTHENTICATE: the session reads one end
 *		of a loopback TCP connection.  The bytes are written into the
 *		other end and the connection half-closed before the session
 *		starts (the socket buffers are large enough for the usual
 *		input); only what does not fit is written by a thread while
 *		the session reads.
 *
 * Seeds use 'P' (0x50) and 'A' (0x41).  What the server writes goes to
 * /dev/null.  The sanitizers are the only check.
 *
 * SASL: the sasldb of the temporary directory has repluser (password
 * replpass, in admins) and bob (bobpass, not an admin) in the realm
 * "fuzz", made with saslpasswd2 at start-up; without saslpasswd2 every
 * AUTHENTICATE fails.  failedloginpause is 0, and SCRAM derives its keys
 * with one iteration, not 4096.
 *
 * The store: every session starts on an empty one, so a finding
 * reproduces from its input alone.  Opening a store costs more than a
 * short session, so the target keeps one open and lends it to each
 * session (sv_fuzz_session()).  A transaction the session left open is
 * rolled back, as store_close() would.  If the session changed nothing
 * (the database file as it was written, an empty write-ahead log, no
 * other file) the store is kept for the next input; if it did, the store
 * is closed, its directories emptied, the saved empty database written
 * back, and the store opened again.
 * FUZZ_SESSION_LOG=1 prints the session's log.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "store.h"
#include "server.h"

/* Socket buffers of a TCP session: an input up to about this size is in
 * the connection before the session starts. */
#define FZ_SOCKBUF	(1024 * 1024)

static char		 fz_dir[256];
static struct conf	*fz_conf;
static struct store	*fz_store;		/* lent to every session */
static int		 fz_null = -1;		/* the session's output */
static int		 fz_memfd = -1;		/* input of a trusted session */
static int		 fz_listen = -1;	/* loopback, for TCP sessions */
static struct sockaddr_in fz_addr;
static char		*fz_db;			/* an empty store's database */
static char		*fz_dbcmp;		/* fz_dblen + 1 bytes */
static size_t		 fz_dblen;

const char	*__asan_default_options(void);
const char	*__lsan_default_suppressions(void);
static void	 fz_die(const char *) __attribute__((noreturn));

/* Stores are opened and closed many times: see fuzz_server.c. */
const char *
__asan_default_options(void)
{
	return "quarantine_size_mb=8";
}

/*
 * Two mechanism plugins of libsasl2 2.1.28 leak on inputs a client can
 * send: LOGIN a few bytes when an empty user name is followed by a
 * password, DIGEST-MD5 when a response repeats cnonce and nc (seeds
 * auth-login-plugin-leak and auth-digest-plugin-leak).  The memory is
 * the plugins' own, allocated in their step functions; a connection
 * the session failed to dispose of would still be reported, through
 * libsasl2's sasl_server_new().
 */
const char *
__lsan_default_suppressions(void)
{
	return "leak:liblogin.so\nleak:libdigestmd5.so\n";
}

static void
fz_die(const char *what)
{
	fprintf(stderr, "fuzz_session: %s: %s\n", what, strerror(errno));
	abort();
}

static int
fz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level > 0 && remove(path) == -1)
		return -1;
	return 0;
}

/* fz_dir/sub in path, or abort. */
static void
fz_path(char *path, size_t size, const char *sub)
{
	int n;

	n = snprintf(path, size, "%s/%s", fz_dir, sub);
	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		fz_die(sub);
	}
}

/* Close the store, empty its directories, write back the empty database. */
static void
fz_store_reset(void)
{
	static const char *const dirs[] = {
		"store/conf", "store/spool", "store/spool2"
	};
	char path[300];
	FILE *f;
	size_t i;

	store_close(fz_store);
	fz_store = NULL;
	fz_path(path, sizeof(path), "store");
	if (nftw(path, fz_rm, 16, FTW_DEPTH | FTW_PHYS) == -1)
		fz_die("cannot empty the store");
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		fz_path(path, sizeof(path), dirs[i]);
		if (mkdir(path, 0700) == -1)
			fz_die(path);
	}
	if (fz_db == NULL)
		return;
	fz_path(path, sizeof(path), "store/conf/syncpipe.db");
	if ((f = fopen(path, "w")) == NULL ||
	    fwrite(fz_db, 1, fz_dblen, f) != fz_dblen || fclose(f) != 0)
		fz_die(path);
}

/* The store as fz_store_reset() leaves it, and open. */
static void
fz_store_fresh(void)
{
	char err[256];

	fz_store_reset();
	if ((fz_store = store_open(fz_conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_session: store_open: %s\n", err);
		abort();
	}
}

/*
 * Whether directory sub holds exactly the names given: 1 or 0.  Read
 * with getdents64(), not readdir(): no buffer to allocate per call.
 */
static int
fz_dir_holds(const char *sub, const char *const *names, size_t nnames)
{
	char path[300];
	union {
		struct dirent64	de;
		char		buf[4096];
	} u;
	struct dirent64 *de;
	ssize_t n, off;
	size_t i, seen;
	int fd, ok;

	fz_path(path, sizeof(path), sub);
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return 0;
	ok = 1;
	seen = 0;
	while (ok && (n = getdents64(fd, u.buf, sizeof(u.buf))) > 0)
		for (off = 0; ok && off < n; off += de->d_reclen) {
			de = (struct dirent64 *)(void *)(u.buf + off);
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			for (i = 0; i < nnames; i++)
				if (strcmp(de->d_name, names[i]) == 0)
					break;
			if (i == nnames)
				ok = 0;
			else
				seen++;
		}
	if (n == -1)
		ok = 0;
	close(fd);
	return ok && seen == nnames;
}

/* Whether file sub has exactly len bytes, those of buf: 1 or 0. */
static int
fz_file_is(const char *sub, const char *buf, size_t len)
{
	char path[300];
	size_t off;
	ssize_t n;
	int fd;

	fz_path(path, sizeof(path), sub);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	/* Asking for one byte more shows a longer file. */
	for (off = 0; off <= len; off += (size_t)n)
		if ((n = read(fd, fz_dbcmp + off, len + 1 - off)) <= 0)
			break;
	close(fd);
	return off == len && (len == 0 || memcmp(fz_dbcmp, buf, len) == 0);
}

/*
 * Whether the session left the store as it found it: nothing written to
 * the database or its log, no other file.  A transaction left open is
 * rolled back first, as store_close() would.
 */
static int
fz_store_unchanged(void)
{
	static const char *const top[] = { "conf", "spool", "spool2" };
	static const char *const conf[] = {
		"syncpipe.db", "syncpipe.db-wal", "syncpipe.db-shm"
	};

	(void)store_rollback(fz_store);	/* -1 when none is open */
	return fz_dir_holds("store", top, 3) &&
	    fz_dir_holds("store/conf", conf, 3) &&
	    fz_dir_holds("store/spool", NULL, 0) &&
	    fz_dir_holds("store/spool2", NULL, 0) &&
	    fz_file_is("store/conf/syncpipe.db-wal", NULL, 0) &&
	    fz_file_is("store/conf/syncpipe.db", fz_db, fz_dblen);
}

/* Create a store once and keep its database file. */
static void
fz_store_template(void)
{
	char path[300];
	FILE *f;
	long n;

	fz_store_fresh();
	store_close(fz_store);
	fz_store = NULL;
	fz_path(path, sizeof(path), "store/conf/syncpipe.db");
	if ((f = fopen(path, "r")) == NULL || fseek(f, 0, SEEK_END) == -1 ||
	    (n = ftell(f)) <= 0 || (fz_db = malloc((size_t)n)) == NULL ||
	    (fz_dbcmp = malloc((size_t)n + 1)) == NULL ||
	    fseek(f, 0, SEEK_SET) == -1 ||
	    fread(fz_db, 1, (size_t)n, f) != (size_t)n)
		fz_die(path);
	fclose(f);
	fz_dblen = (size_t)n;
}

/* Add a sasldb user with saslpasswd2, if there is one.  0 or -1. */
static int
fz_sasluser(const char *user, const char *pass)
{
	char cmd[1024];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "PATH=\"$PATH:/usr/sbin:/sbin\" "
	    "saslpasswd2 -c -p -f '%s/sasldb2' -u fuzz %s 2>/dev/null",
	    fz_dir, user);
	if ((f = popen(cmd, "w")) == NULL)
		return -1;
	fputs(pass, f);
	return pclose(f) == 0 ? 0 : -1;
}

static void
fz_cleanup(void)
{
	store_close(fz_store);
	fz_store = NULL;
	if (fz_dir[0] != '\0') {
		(void)nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
		(void)rmdir(fz_dir);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256], text[2048], path[300];
	const char *base;
	socklen_t len;
	int n, buf;

	(void)argc;
	(void)argv;
	base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
	    (getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	snprintf(fz_dir, sizeof(fz_dir), "%s/fuzz_session.XXXXXX", base);
	if (mkdtemp(fz_dir) == NULL)
		fz_die(fz_dir);
	atexit(fz_cleanup);
	fz_path(path, sizeof(path), "store");
	if (mkdir(path, 0700) == -1)
		fz_die(path);
	if (fz_sasluser("repluser", "replpass") == -1 ||
	    fz_sasluser("bob", "bobpass") == -1)
		fprintf(stderr, "fuzz_session: saslpasswd2 failed: every "
		    "AUTHENTICATE will fail\n");

	n = snprintf(text, sizeof(text),
	    "servername: fuzz\n"
	    "configdirectory: %s/store/conf\n"
	    "partition-default: %s/store/spool\n"
	    "partition-other: %s/store/spool2\n"
	    "admins: repluser\n"
	    "allowplaintext: yes\n"
	    "failedloginpause: 0\n"
	    "sasl_pwcheck_method: auxprop\n"
	    "sasl_auxprop_plugin: sasldb\n"
	    "sasl_sasldb_path: %s/sasldb2\n"
	    "sasl_mech_list: PLAIN LOGIN CRAM-MD5 DIGEST-MD5 SCRAM-SHA-1 "
	    "SCRAM-SHA-256\n"
	    "sasl_scram_iteration_counter: 1\n",
	    fz_dir, fz_dir, fz_dir, fz_dir);
	if (n < 0 || (size_t)n >= sizeof(text) ||
	    (fz_conf = conf_parse(text, (size_t)n, "fuzz", err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_session: conf: %s\n",
		    n < 0 || (size_t)n >= sizeof(text) ? "too long" : err);
		abort();
	}
	fz_store_template();
	fz_store_fresh();
	if (sv_fuzz_setup(fz_conf, getenv("FUZZ_SESSION_LOG") != NULL) == -1)
		abort();

	if ((fz_null = open("/dev/null", O_WRONLY | O_CLOEXEC)) == -1)
		fz_die("/dev/null");
	if ((fz_memfd = memfd_create("fuzz_session", MFD_CLOEXEC)) == -1)
		fz_die("memfd_create");
	memset(&fz_addr, 0, sizeof(fz_addr));
	fz_addr.sin_family = AF_INET;
	fz_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	len = sizeof(fz_addr);
	/* Accepted connections take the listener's receive buffer. */
	buf = FZ_SOCKBUF;
	if ((fz_listen = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC,
	    0)) == -1 ||
	    setsockopt(fz_listen, SOL_SOCKET, SO_RCVBUF, &buf,
	    sizeof(buf)) == -1 ||
	    bind(fz_listen, (struct sockaddr *)&fz_addr, sizeof(fz_addr)) ==
	    -1 || listen(fz_listen, 4) == -1 ||
	    getsockname(fz_listen, (struct sockaddr *)&fz_addr, &len) == -1)
		fz_die("loopback TCP listener");
	return 0;
}

struct fz_writer {
	int		 fd;
	const uint8_t	*data;
	size_t		 size;
};

/* The client: the rest of the input, then end of file. */
static void *
fz_write(void *arg)
{
	struct fz_writer *w = arg;
	size_t off;
	ssize_t n;

	off = 0;
	while (off < w->size) {
		n = send(w->fd, w->data + off, w->size - off, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	(void)shutdown(w->fd, SHUT_WR);
	return NULL;
}

/* Close without TIME_WAIT: many connections a second. */
static void
fz_close_rst(int fd)
{
	struct linger l = { 1, 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static void
fz_tcp_session(const uint8_t *data, size_t size)
{
	struct fz_writer w;
	pthread_t t;
	size_t off;
	ssize_t n;
	int c, s, buf;

	buf = FZ_SOCKBUF;
	if ((c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf)) == -1 ||
	    connect(c, (struct sockaddr *)&fz_addr, sizeof(fz_addr)) == -1 ||
	    (s = accept4(fz_listen, NULL, NULL, SOCK_CLOEXEC)) == -1)
		fz_die("loopback TCP connection");
	/* As much as the buffers take, without blocking. */
	off = 0;
	while (off < size) {
		n = send(c, data + off, size - off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			fz_die("loopback TCP send");
		off += (size_t)n;
	}
	if (off == size) {
		(void)shutdown(c, SHUT_WR);
		(void)sv_fuzz_session(fz_conf, fz_store, s, fz_null);
		fz_close_rst(s);
		fz_close_rst(c);
		return;
	}
	w.fd = c;
	w.data = data + off;
	w.size = size - off;
	if ((errno = pthread_create(&t, NULL, fz_write, &w)) != 0)
		fz_die("pthread_create");
	(void)sv_fuzz_session(fz_conf, fz_store, s, fz_null);
	/* A writer still blocked on a full window gets a reset. */
	fz_close_rst(s);
	if ((errno = pthread_join(t, NULL)) != 0)
		fz_die("pthread_join");
	fz_close_rst(c);
}

static void
fz_pipe_session(const uint8_t *data, size_t size)
{
	size_t off;
	ssize_t n;

	if (ftruncate(fz_memfd, 0) == -1 || lseek(fz_memfd, 0, SEEK_SET) == -1)
		fz_die("memfd");
	for (off = 0; off < size; off += (size_t)n)
		if ((n = write(fz_memfd, data + off, size - off)) <= 0)
			fz_die("memfd write");
	if (lseek(fz_memfd, 0, SEEK_SET) == -1)
		fz_die("memfd");
	(void)sv_fuzz_session(fz_conf, fz_store, fz_memfd, fz_null);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGPIPE };
	struct sigaction saved[sizeof(sigs) / sizeof(sigs[0])];
	size_t i;

	if (size == 0)
		return 0;
	/* The session sets its own handlers: give the fuzzer its back. */
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		(void)sigaction(sigs[i], NULL, &saved[i]);
	if (data[0] & 1)
		fz_tcp_session(data + 1, size - 1);
	else
		fz_pipe_session(data + 1, size - 1);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		(void)sigaction(sigs[i], &saved[i], NULL);
	if (!fz_store_unchanged())
		fz_store_fresh();
	return 0;
}
