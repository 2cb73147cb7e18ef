/*
 * test_prot: the stream layer: a compressed round trip over a socketpair,
 * the DEFLATE wire format, timeouts, EINTR, line reading bounds and the
 * memory streams.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <zlib.h>

#include "prot.h"
#include "tap.h"

#define BLOB	(1024 * 1024)
#define NLINES	100

static void
fill_blob(unsigned char *b, size_t n)
{
	uint32_t x = 12345;
	size_t i;

	for (i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		/* Half noise, half runs: both deflate paths get exercised. */
		b[i] = (i / 4096) % 2 ? (unsigned char)(x >> 16) :
		    (unsigned char)(i / 100);
	}
}

/* The far end: switch to DEFLATE, swallow everything, send it back. */
static int
echo_child(int fd)
{
	struct prot *p;
	char line[256], lines[NLINES][32];
	unsigned char *blob;
	int i;

	p = prot_new(fd, fd);
	prot_settimeout(p, 20);
	if (prot_readline(p, line, sizeof(line)) < 0 ||
	    strcmp(line, "COMPRESS DEFLATE") != 0)
		return 1;
	prot_puts(p, "OK DEFLATE active\r\n");
	prot_flush(p);
	if (prot_compress(p, Z_DEFAULT_COMPRESSION) < 0)
		return 2;
	/* Compressed bytes right behind the OK, likely in the same read. */
	prot_puts(p, "* hello compressed\r\n");
	prot_flush(p);
	for (i = 0; i < NLINES; i++)
		if (prot_readline(p, lines[i], sizeof(lines[i])) < 0)
			return 3;
	if (prot_readline(p, line, sizeof(line)) < 0 ||
	    strcmp(line, "BLOB 1048576") != 0)
		return 4;
	blob = malloc(BLOB);
	if (prot_read_full(p, blob, BLOB) < 0)
		return 5;
	for (i = 0; i < NLINES; i++)
		prot_printf(p, "%s\r\n", lines[i]);
	prot_write(p, blob, BLOB);
	prot_puts(p, "END\r\n");
	if (prot_flush(p) < 0)
		return 6;
	free(blob);
	prot_free(p);
	return 0;
}

static void
test_compressed_roundtrip(void)
{
	struct prot *p;
	unsigned char *blob, *back;
	char line[256], want[32];
	int sv[2], i, good, status;
	pid_t pid;

	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		_exit(echo_child(sv[1]));
	}
	close(sv[1]);
	p = prot_new(sv[0], sv[0]);
	prot_settimeout(p, 20);
	prot_puts(p, "COMPRESS DEFLATE\r\n");
	ok(prot_flush(p) == 0, "request sent");
	usleep(200000);	/* let the OK and the compressed line arrive together */
	ok(prot_readline(p, line, sizeof(line)) == 17 &&
	    strcmp(line, "OK DEFLATE active") == 0, "plain OK read");
	ok(prot_compress(p, Z_DEFAULT_COMPRESSION) == 0 &&
	    prot_compress_active(p), "compression on");
	ok(prot_readline(p, line, sizeof(line)) > 0 &&
	    strcmp(line, "* hello compressed") == 0,
	    "read-ahead bytes inflated after the switch");

	blob = malloc(BLOB);
	back = malloc(BLOB);
	fill_blob(blob, BLOB);
	for (i = 0; i < NLINES; i++)
		prot_printf(p, "line %d of the test\r\n", i);
	prot_printf(p, "BLOB %d\r\n", BLOB);
	prot_write(p, blob, BLOB);
	ok(prot_flush(p) == 0, "lines and 1 MB blob sent compressed");

	good = 1;
	for (i = 0; i < NLINES; i++) {
		snprintf(want, sizeof(want), "line %d of the test", i);
		if (prot_readline(p, line, sizeof(line)) < 0 ||
		    strcmp(line, want) != 0)
			good = 0;
	}
	ok(good, "%d lines came back identical", NLINES);
	ok(prot_read_full(p, back, BLOB) == 0 &&
	    memcmp(blob, back, BLOB) == 0, "1 MB blob came back identical");
	ok(prot_readline(p, line, sizeof(line)) == 3 &&
	    strcmp(line, "END") == 0, "trailer line");
	ok(prot_getc(p) == -1 && prot_eof(p), "EOF after the peer closed");
	ok(prot_bytes_out(p) > BLOB && prot_bytes_in(p) > BLOB,
	    "application byte counters");
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "echo side succeeded (status %d)", WEXITSTATUS(status));
	free(blob);
	free(back);
	prot_free(p);
	close(sv[0]);
}

/* What goes on the wire is raw DEFLATE ending in a sync flush. */
static void
test_deflate_format(void)
{
	struct prot *p;
	unsigned char wire[4096], out[4096];
	z_stream z;
	ssize_t n;
	int fds[2], zr;

	ok(pipe(fds) == 0, "pipe");
	p = prot_new(-1, fds[1]);
	ok(prot_compress(p, Z_DEFAULT_COMPRESSION) == 0, "compress on pipe");
	prot_puts(p, "APPLY RESERVE %(PARTITION default)\r\n");
	ok(prot_flush(p) == 0, "flush");
	n = read(fds[0], wire, sizeof(wire));
	ok(n > 4 && memcmp(wire + n - 4, "\0\0\xff\xff", 4) == 0,
	    "flush ends with the 00 00 FF FF sync marker");
	memset(&z, 0, sizeof(z));
	inflateInit2(&z, -15);
	z.next_in = wire;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = sizeof(out);
	zr = inflate(&z, Z_SYNC_FLUSH);
	ok(zr == Z_OK && sizeof(out) - z.avail_out == 36 &&
	    memcmp(out, "APPLY RESERVE %(PARTITION default)\r\n", 36) == 0,
	    "raw inflate (windowBits -15) gives the text back");
	inflateEnd(&z);
	ok(prot_flush(p) == 0, "empty flush is harmless");
	prot_free(p);

	/* Corrupt compressed input is an error, not a crash. */
	{
		static const unsigned char junk[] = "\xff\xfe\xfd\xfc junk";

		p = prot_new(fds[0], -1);
		prot_compress(p, 6);
		(void)!write(fds[1], junk, sizeof(junk));
		close(fds[1]);
		ok(prot_getc(p) == -1 && !prot_eof(p) &&
		    strncmp(prot_error(p), "inflate", 7) == 0,
		    "corrupt DEFLATE input: %s", prot_error(p));
		prot_free(p);
	}
	close(fds[0]);

	/* Highly compressible data: inflate output outruns its input. */
	{
		struct prot *w, *r;
		unsigned char *zeros, *got;
		char line[16];
		int zf[2];

		zeros = calloc(1, BLOB);
		got = malloc(BLOB);
		ok(pipe(zf) == 0, "pipe");
		w = prot_new(-1, zf[1]);
		prot_compress(w, 9);
		prot_write(w, zeros, BLOB);
		prot_puts(w, "END\r\n");
		ok(prot_flush(w) == 0, "1 MB of zeros sent");
		close(zf[1]);
		r = prot_new(zf[0], -1);
		prot_compress(r, 6);
		memset(got, 1, BLOB);
		ok(prot_read_full(r, got, BLOB) == 0 &&
		    memcmp(got, zeros, BLOB) == 0 &&
		    prot_readline(r, line, sizeof(line)) == 3,
		    "1 MB of zeros inflated whole");
		prot_free(w);
		prot_free(r);
		close(zf[0]);
		free(zeros);
		free(got);
	}
}

static void
test_timeout(void)
{
	struct prot *p;
	struct timespec t0, t1;
	double el;
	int fds[2];

	ok(pipe(fds) == 0, "pipe");
	p = prot_new(fds[0], -1);
	prot_settimeout(p, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ok(prot_getc(p) == -1, "read with no data fails");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	el = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	is_str(prot_error(p), "timeout", "error is \"timeout\"");
	ok(!prot_eof(p), "a timeout is not EOF");
	ok(el > 0.9 && el < 3.0, "timed out after %.2f s", el);
	prot_free(p);
	close(fds[0]);
	close(fds[1]);
}

static void
on_alarm(int sig)
{
	(void)sig;
}

/* A signal during a blocked read is retried, not reported. */
static void
test_eintr(void)
{
	struct sigaction sa;
	struct itimerval it;
	struct prot *p;
	char line[64];
	int fds[2];
	pid_t pid;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;	/* no SA_RESTART: read/poll get EINTR */
	sigaction(SIGALRM, &sa, NULL);
	ok(pipe(fds) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		usleep(600000);
		(void)!write(fds[1], "late line\r\n", 11);
		_exit(0);
	}
	close(fds[1]);
	memset(&it, 0, sizeof(it));
	it.it_value.tv_usec = 100000;
	it.it_interval.tv_usec = 100000;
	setitimer(ITIMER_REAL, &it, NULL);
	p = prot_new(fds[0], -1);
	prot_settimeout(p, 5);
	ok(prot_readline(p, line, sizeof(line)) == 9 &&
	    strcmp(line, "late line") == 0, "read survives EINTR (timeout)");
	prot_free(p);
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	waitpid(pid, NULL, 0);
	close(fds[0]);
}

static void
test_readline(void)
{
	static const char in[] =
	    "short\r\n"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"
	    "fifteen-bytes-x\r\n"
	    "sixteen-bytes-xx\r\n"
	    "bare\n"
	    "cr\rinside\n"
	    "\r\n"
	    "last";
	struct prot *p;
	char buf[16];

	p = prot_new_mem(in, sizeof(in) - 1);
	ok(prot_readline(p, buf, sizeof(buf)) == 5 &&
	    strcmp(buf, "short") == 0, "CRLF stripped");
	ok(prot_readline(p, buf, sizeof(buf)) == -2 && strlen(buf) == 15,
	    "overflow: -2, buffer full and terminated");
	ok(prot_readline(p, buf, sizeof(buf)) == 15 &&
	    strcmp(buf, "fifteen-bytes-x") == 0,
	    "rest of the long line dropped; 15 bytes + CRLF fits 16");
	ok(prot_readline(p, buf, sizeof(buf)) == -2, "16 bytes do not fit");
	ok(prot_readline(p, buf, sizeof(buf)) == 4 &&
	    strcmp(buf, "bare") == 0, "bare LF");
	ok(prot_readline(p, buf, sizeof(buf)) == 9 &&
	    memcmp(buf, "cr\rinside", 10) == 0, "lone CR kept");
	ok(prot_readline(p, buf, sizeof(buf)) == 0 && buf[0] == '\0',
	    "empty line");
	ok(prot_readline(p, buf, sizeof(buf)) == 4 &&
	    strcmp(buf, "last") == 0, "last line without line end");
	ok(prot_readline(p, buf, sizeof(buf)) == -1 && prot_eof(p),
	    "then EOF");
	prot_free(p);
}

static void
test_mem(void)
{
	struct prot *p;
	char buf[8], big[2000];
	const char *s;
	size_t len;
	int i;

	p = prot_new_mem("abcdef", 6);
	ok(prot_getc(p) == 'a' && prot_peek(p) == 'b' && prot_getc(p) == 'b',
	    "getc/peek");
	prot_ungetc(p, 'b');
	ok(prot_pending(p) == 5, "pending after ungetc");
	ok(prot_read(p, buf, 3) == 3 && memcmp(buf, "bcd", 3) == 0, "read");
	ok(prot_bytes_in(p) == 4, "bytes_in counts consumed bytes");
	ok(prot_read_full(p, buf, 3) == -1, "read_full past EOF fails");
	ok(prot_read(p, buf, 3) == 0 && prot_eof(p), "read at EOF is 0");
	ok(prot_write(p, "x", 1) == -1, "mem stream is read-only");
	prot_free(p);

	p = prot_new_membuf();
	ok(prot_puts(p, "hello ") == 0, "membuf puts");
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ok(prot_printf(p, "%d %s", 42, big) == 0, "membuf long printf");
	ok(prot_write(p, "\0end", 4) == 0, "membuf binary write");
	for (i = 0; i < 1000; i++)
		prot_write(p, "0123456789", 10);
	s = prot_membuf(p, &len);
	ok(len == 6 + 3 + 1999 + 4 + 10000 &&
	    memcmp(s, "hello 42 zz", 11) == 0 &&
	    memcmp(s + 6 + 3 + 1999, "\0end0123", 8) == 0 &&
	    memcmp(s + len - 10, "0123456789", 10) == 0,
	    "membuf holds every byte (%zu)", len);
	ok(prot_flush(p) == 0 && prot_bytes_out(p) == len, "membuf flush");
	prot_free(p);
}

/* Writing to a closed peer is an error, not a SIGPIPE. */
static void
test_epipe(void)
{
	struct prot *p;
	int sv[2];

	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	close(sv[1]);
	p = prot_new(-1, sv[0]);
	prot_puts(p, "anyone there?\r\n");
	ok(prot_flush(p) == -1 && strstr(prot_error(p), "write") != NULL,
	    "write to closed socket: %s", prot_error(p));
	prot_free(p);
	close(sv[0]);
}

/*
 * STARTTLS with junk pipelined behind it (the server must drop it), then
 * DEFLATE inside TLS.  The certificate comes from the openssl tool.
 */
static void
test_tls(void)
{
	static const char *crt = "/tmp/test_prot_tls.crt";
	static const char *key = "/tmp/test_prot_tls.key";
	char cmd[512], line[128];
	SSL_CTX *sctx, *cctx;
	struct prot *p;
	int sv[2], status;
	pid_t pid;

	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey rsa:2048 "
	    "-nodes -subj /CN=localhost -days 1 -keyout %s -out %s "
	    ">/dev/null 2>&1", key, crt);
	ok(system(cmd) == 0, "test certificate made");
	sctx = SSL_CTX_new(TLS_server_method());
	ok(sctx != NULL &&
	    SSL_CTX_use_certificate_file(sctx, crt, SSL_FILETYPE_PEM) == 1 &&
	    SSL_CTX_use_PrivateKey_file(sctx, key, SSL_FILETYPE_PEM) == 1,
	    "server context");
	cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		p = prot_new(sv[1], sv[1]);
		prot_settimeout(p, 20);
		usleep(100000);	/* let the junk arrive with STARTTLS */
		if (prot_readline(p, line, sizeof(line)) < 0 ||
		    strcmp(line, "STARTTLS") != 0)
			_exit(1);
		if (prot_pending(p) == 0)
			_exit(2);	/* the junk was meant to be buffered */
		prot_puts(p, "OK Begin TLS negotiation now\r\n");
		if (prot_starttls_server(p, sctx) < 0)
			_exit(3);
		if (prot_readline(p, line, sizeof(line)) < 0 ||
		    strcmp(line, "COMPRESS DEFLATE") != 0)
			_exit(4);
		prot_puts(p, "OK DEFLATE active\r\n");
		if (prot_flush(p) < 0 || prot_compress(p, 6) < 0)
			_exit(5);
		if (prot_readline(p, line, sizeof(line)) < 0)
			_exit(6);
		prot_printf(p, "echo %s\r\n", line);
		if (prot_flush(p) < 0)
			_exit(7);
		prot_free(p);
		_exit(0);
	}
	close(sv[1]);
	p = prot_new(sv[0], sv[0]);
	prot_settimeout(p, 20);
	prot_puts(p, "STARTTLS\r\nJUNK pipelined\r\n");
	prot_flush(p);
	ok(prot_readline(p, line, sizeof(line)) > 0 &&
	    strcmp(line, "OK Begin TLS negotiation now") == 0, "OK for TLS");
	ok(prot_starttls_client(p, cctx, "localhost") == 0 &&
	    prot_tls_active(p), "client handshake (%s)", prot_error(p));
	prot_puts(p, "COMPRESS DEFLATE\r\n");
	prot_flush(p);
	ok(prot_readline(p, line, sizeof(line)) > 0 &&
	    strcmp(line, "OK DEFLATE active") == 0,
	    "server read the line after the handshake, not the junk");
	ok(prot_compress(p, 6) == 0, "DEFLATE inside TLS");
	prot_puts(p, "ping over tls+deflate\r\n");
	prot_flush(p);
	ok(prot_readline(p, line, sizeof(line)) > 0 &&
	    strcmp(line, "echo ping over tls+deflate") == 0, "echo came back");
	ok(prot_getc(p) == -1 && prot_eof(p), "EOF when the server is done");
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "TLS server side succeeded (status %d)", WEXITSTATUS(status));
	prot_free(p);
	close(sv[0]);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	unlink(crt);
	unlink(key);
}

int
main(void)
{
	test_compressed_roundtrip();
	test_deflate_format();
	test_timeout();
	test_eintr();
	test_readline();
	test_mem();
	test_epipe();
	test_tls();
	return tap_done();
}
