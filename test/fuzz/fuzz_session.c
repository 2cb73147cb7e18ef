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
 *		of a loopback TCP connection, the bytes written into the
 *		other end by a thread, then the connection half-closed.
 *
 * Seeds use 'P' (0x50) and 'A' (0x41).  What the server writes goes to
 * /dev/null.  The sanitizers are the only check.
 *
 * SASL: the sasldb of the temporary directory has repluser (password
 * replpass, in admins) and bob (bobpass, not an admin) in the realm
 * "fuzz", made with saslpasswd2 at start-up; without saslpasswd2 every
 * AUTHENTICATE fails.  failedloginpause is 0.
 *
 * The store is emptied before every input (a saved empty database
 * written back) and the session opens it, so a finding reproduces from
 * its input alone.  FUZZ_SESSION_LOG=1 prints the session's log.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

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

static char		 fz_dir[256];
static struct conf	*fz_conf;
static int		 fz_null = -1;		/* the session's output */
static int		 fz_memfd = -1;		/* input of a trusted session */
static int		 fz_listen = -1;	/* loopback, for TCP sessions */
static struct sockaddr_in fz_addr;
static char		*fz_db;			/* an empty store's database */
static size_t		 fz_dblen;

const char	*__asan_default_options(void);
static void	 fz_die(const char *) __attribute__((noreturn));

/* Sessions open a store each: see fuzz_server.c. */
const char *
__asan_default_options(void)
{
	return "quarantine_size_mb=8";
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

/* Empty the store's directories and write back the empty database. */
static void
fz_store_reset(void)
{
	static const char *const dirs[] = { "conf", "spool", "spool2" };
	char path[300];
	FILE *f;
	size_t i;

	snprintf(path, sizeof(path), "%s/store", fz_dir);
	if (nftw(path, fz_rm, 16, FTW_DEPTH | FTW_PHYS) == -1)
		fz_die("cannot empty the store");
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/store/%s", fz_dir, dirs[i]);
		if (mkdir(path, 0700) == -1)
			fz_die(path);
	}
	if (fz_db == NULL)
		return;
	snprintf(path, sizeof(path), "%s/store/conf/syncpipe.db", fz_dir);
	if ((f = fopen(path, "w")) == NULL ||
	    fwrite(fz_db, 1, fz_dblen, f) != fz_dblen || fclose(f) != 0)
		fz_die(path);
}

/* Create a store once and keep its database file. */
static void
fz_store_template(void)
{
	struct store *st;
	char err[256], path[300];
	FILE *f;
	long n;

	fz_store_reset();
	if ((st = store_open(fz_conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_session: store_open: %s\n", err);
		abort();
	}
	store_close(st);
	snprintf(path, sizeof(path), "%s/store/conf/syncpipe.db", fz_dir);
	if ((f = fopen(path, "r")) == NULL || fseek(f, 0, SEEK_END) == -1 ||
	    (n = ftell(f)) <= 0 || (fz_db = malloc((size_t)n)) == NULL ||
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
	int n;

	(void)argc;
	(void)argv;
	base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
	    (getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	snprintf(fz_dir, sizeof(fz_dir), "%s/fuzz_session.XXXXXX", base);
	if (mkdtemp(fz_dir) == NULL)
		fz_die(fz_dir);
	atexit(fz_cleanup);
	snprintf(path, sizeof(path), "%s/store", fz_dir);
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
	    "SCRAM-SHA-256\n", fz_dir, fz_dir, fz_dir, fz_dir);
	if ((fz_conf = conf_parse(text, (size_t)n, "fuzz", err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_session: conf: %s\n", err);
		abort();
	}
	fz_store_template();
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
	if ((fz_listen = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC,
	    0)) == -1 ||
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

/* The client: all of the input, then end of file. */
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
	int c, s;

	if ((c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(c, (struct sockaddr *)&fz_addr, sizeof(fz_addr)) == -1 ||
	    (s = accept4(fz_listen, NULL, NULL, SOCK_CLOEXEC)) == -1)
		fz_die("loopback TCP connection");
	w.fd = c;
	w.data = data;
	w.size = size;
	if ((errno = pthread_create(&t, NULL, fz_write, &w)) != 0)
		fz_die("pthread_create");
	(void)sv_fuzz_session(fz_conf, s, fz_null);
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
	(void)sv_fuzz_session(fz_conf, fz_memfd, fz_null);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGPIPE };
	struct sigaction saved[sizeof(sigs) / sizeof(sigs[0])];
	size_t i;

	if (size == 0)
		return 0;
	fz_store_reset();
	/* The session sets its own handlers: give the fuzzer its back. */
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		(void)sigaction(sigs[i], NULL, &saved[i]);
	if (data[0] & 1)
		fz_tcp_session(data + 1, size - 1);
	else
		fz_pipe_session(data + 1, size - 1);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		(void)sigaction(sigs[i], &saved[i], NULL);
	return 0;
}
