/*
 * prot: buffered byte streams over fds or memory, with optional TLS and
 * raw DEFLATE.  See prot.h for the contract.
 *
 * Reading: application bytes live in ibuf[ipos..ilen).  Without
 * compression ibuf is filled straight from the transport (fd or TLS);
 * with compression the transport fills zibuf and inflate() fills ibuf.
 * Writing: obuf collects application bytes; a full buffer or prot_flush()
 * sends them, through deflate() when compression is on.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <zlib.h>

#include "prot.h"

enum prot_kind {
	PROT_FD,
	PROT_MEM,
	PROT_MEMBUF
};

struct prot {
	enum prot_kind	 kind;
	int		 rfd, wfd;
	int		 timeout;
	int		 nosignal;	/* 1: send(MSG_NOSIGNAL), 0: write() */
	int		 wfifo;		/* wfd is a pipe: bounded writes of PIPE_BUF */

	/* input */
	unsigned char	*ibuf;		/* owned unless kind == PROT_MEM */
	size_t		 ipos, ilen;
	int		 pushback;	/* -1 when empty */
	int		 eof, failed;

	/* output */
	unsigned char	*obuf;
	size_t		 olen, ocap;
	int		 wfailed;

	SSL		*ssl;

	int		 zon;
	int		 zfull;		/* last inflate filled ibuf: may have more */
	z_stream	 zin, zout;
	unsigned char	*zibuf;		/* compressed input not yet inflated */
	unsigned char	*zobuf;		/* deflate output */

	uint64_t	 nin, nout;
	char		 err[256];
	int		 timedout;	/* err is a timeout */
};

static void
prot_seterr(struct prot *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
prot_seterr(struct prot *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
	p->timedout = 0;
}

static void
prot_setsslerr(struct prot *p, const char *what)
{
	unsigned long e;
	char buf[200];

	e = ERR_get_error();
	if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		prot_seterr(p, "%s: %s", what, buf);
	} else if (errno != 0)
		prot_seterr(p, "%s: %s", what, strerror(errno));
	else
		prot_seterr(p, "%s failed", what);
	ERR_clear_error();
}

static struct prot *
prot_alloc(enum prot_kind kind)
{
	struct prot *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->kind = kind;
	p->rfd = p->wfd = -1;
	p->pushback = -1;
	p->nosignal = 1;
	return p;
}

/*
 * A stream over rfd (reading) and wfd (writing); either may be -1.
 * Returns NULL on memory exhaustion.
 */
struct prot *
prot_new(int rfd, int wfd)
{
	struct prot *p;

	if ((p = prot_alloc(PROT_FD)) == NULL)
		return NULL;
	p->rfd = rfd;
	p->wfd = wfd;
	p->ibuf = malloc(PROT_BUFSIZE);
	p->obuf = malloc(PROT_BUFSIZE);
	p->ocap = PROT_BUFSIZE;
	if (p->ibuf == NULL || p->obuf == NULL) {
		prot_free(p);
		return NULL;
	}
	return p;
}

/*
 * A read-only stream over buf[0..len), which is not copied and must
 * outlive the stream.  Returns NULL on memory exhaustion.
 */
struct prot *
prot_new_mem(const void *buf, size_t len)
{
	struct prot *p;

	if ((p = prot_alloc(PROT_MEM)) == NULL)
		return NULL;
	/* Never written through: the cast only lets ibuf serve both kinds. */
	p->ibuf = (unsigned char *)(uintptr_t)buf;
	p->ilen = len;
	return p;
}

/*
 * A write-only stream collecting its output in memory; read it with
 * prot_membuf().  Returns NULL on memory exhaustion.
 */
struct prot *
prot_new_membuf(void)
{
	struct prot *p;

	if ((p = prot_alloc(PROT_MEMBUF)) == NULL)
		return NULL;
	p->ocap = 256;
	if ((p->obuf = malloc(p->ocap)) == NULL) {
		free(p);
		return NULL;
	}
	p->obuf[0] = '\0';
	return p;
}

/*
 * Release the stream: TLS and zlib state and buffers.  Unflushed output
 * is discarded; the fds stay open.
 */
void
prot_free(struct prot *p)
{
	if (p == NULL)
		return;
	if (p->ssl != NULL)
		SSL_free(p->ssl);
	if (p->zon) {
		inflateEnd(&p->zin);
		deflateEnd(&p->zout);
	}
	free(p->zibuf);
	free(p->zobuf);
	if (p->kind != PROT_MEM)
		free(p->ibuf);
	free(p->obuf);
	free(p);
}

/*
 * The bytes written to a membuf stream so far; *lenp (if not NULL) gets
 * their count.  The buffer is owned by the stream and is followed by a
 * NUL byte for convenience.  NULL for other kinds of stream.
 */
const char *
prot_membuf(struct prot *p, size_t *lenp)
{
	if (p->kind != PROT_MEMBUF) {
		if (lenp != NULL)
			*lenp = 0;
		return NULL;
	}
	if (lenp != NULL)
		*lenp = p->olen;
	return (const char *)p->obuf;
}

/*
 * Timeout in seconds for each wait of the fd stream, reading or writing;
 * 0 waits forever.  On a socket the kernel's send timeout is set too, so
 * that a write inside TLS, which cannot be split at will, is bounded as
 * well.
 */
void
prot_settimeout(struct prot *p, int seconds)
{
	struct timeval tv;
	struct stat sb;

	if (seconds > INT_MAX / 1000)
		seconds = INT_MAX / 1000;
	p->timeout = seconds > 0 ? seconds : 0;
	if (p->kind != PROT_FD || p->wfd < 0 || fstat(p->wfd, &sb) == -1)
		return;
	p->wfifo = S_ISFIFO(sb.st_mode);
	if (S_ISSOCK(sb.st_mode)) {
		tv.tv_sec = p->timeout;
		tv.tv_usec = 0;
		/* Best effort: the poll before each write is the bound. */
		(void)setsockopt(p->wfd, SOL_SOCKET, SO_SNDTIMEO, &tv,
		    sizeof(tv));
	}
}

/*
 * Wait until fd is ready for events (POLLIN or POLLOUT): at most the
 * stream's timeout, or for ever with forever set and no timeout.  A
 * signal does not restart the wait: what is left of the timeout is
 * waited for.  Returns 1 when ready (at once without a timeout unless
 * forever), -1 on timeout ("timeout", prot_timedout() true) or error
 * (message set).
 */
static int
prot_poll(struct prot *p, int fd, short events, int forever)
{
	struct pollfd pfd;
	struct timespec now, deadline;
	long long left;
	int r, ms;

	if (p->timeout > 0) {
		if (clock_gettime(CLOCK_MONOTONIC, &deadline) == -1) {
			prot_seterr(p, "clock_gettime: %s", strerror(errno));
			return -1;
		}
		deadline.tv_sec += p->timeout;
		ms = p->timeout * 1000;
	} else if (forever)
		ms = -1;
	else
		return 1;
	pfd.fd = fd;
	pfd.events = events;
	for (;;) {
		pfd.revents = 0;
		r = poll(&pfd, 1, ms);
		if (r > 0)
			return 1;
		if (r == 0)
			break;
		if (errno != EINTR) {
			prot_seterr(p, "poll: %s", strerror(errno));
			return -1;
		}
		if (ms < 0)
			continue;
		if (clock_gettime(CLOCK_MONOTONIC, &now) == -1) {
			prot_seterr(p, "clock_gettime: %s", strerror(errno));
			return -1;
		}
		left = (long long)(deadline.tv_sec - now.tv_sec) *
		    1000000000LL + (deadline.tv_nsec - now.tv_nsec);
		if (left <= 0)
			break;
		/* Rounded up: the wait must not end early. */
		ms = (int)((left + 999999) / 1000000);
	}
	prot_seterr(p, "timeout");
	p->timedout = 1;
	return -1;
}

/*
 * Wait until rfd is readable.  Returns 1 when readable, -1 on timeout or
 * error (message set).
 */
static int
prot_wait(struct prot *p)
{
	if (p->timeout <= 0)
		return 1;
	if (p->ssl != NULL && SSL_pending(p->ssl) > 0)
		return 1;
	return prot_poll(p, p->rfd, POLLIN, 0);
}

/*
 * One read from the transport (fd or TLS).  Returns the count, 0 at EOF,
 * -1 on error (message set).
 */
static ssize_t
prot_rawread(struct prot *p, void *buf, size_t n)
{
	ssize_t r;
	int e, len;

	if (p->rfd < 0) {
		prot_seterr(p, "stream is not open for reading");
		return -1;
	}
	if (prot_wait(p) < 0)
		return -1;
	if (p->ssl != NULL) {
		len = n > INT32_MAX ? INT32_MAX : (int)n;
		for (;;) {
			ERR_clear_error();
			errno = 0;
			r = SSL_read(p->ssl, buf, len);
			if (r > 0)
				return r;
			e = SSL_get_error(p->ssl, (int)r);
			if (e == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (e == SSL_ERROR_WANT_READ ||
			    e == SSL_ERROR_WANT_WRITE)
				continue;
			if (e == SSL_ERROR_SYSCALL && errno == EINTR)
				continue;
			/* A peer that closed without close_notify: EOF. */
			if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 &&
			    errno == 0)
				return 0;
			prot_setsslerr(p, "TLS read");
			return -1;
		}
	}
	for (;;) {
		r = read(p->rfd, buf, n);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		prot_seterr(p, "read: %s", strerror(errno));
		return -1;
	}
}

/*
 * Write all of buf to the transport.  Returns 0 or -1 (message set).
 *
 * With a timeout, every wait for room is bounded: the fd must poll
 * writable within the timeout, and no write may then block.  A socket
 * takes MSG_DONTWAIT; a pipe, which has no such flag, takes at most
 * PIPE_BUF bytes at a time, which a writable pipe always has room for.
 * TLS writes whole records and relies on the socket's send timeout (see
 * prot_settimeout()).  An fd that would block (non-blocking, or the send
 * timeout ran out) is waited for: within the timeout, or for ever
 * without one.
 */
static int
prot_rawwrite(struct prot *p, const void *buf, size_t n)
{
	const unsigned char *b = buf;
	size_t k;
	ssize_t r;
	int e, len, flags;

	if (p->wfd < 0) {
		prot_seterr(p, "stream is not open for writing");
		return -1;
	}
	while (n > 0) {
		if (prot_poll(p, p->wfd, POLLOUT, 0) < 0)
			return -1;
		if (p->ssl != NULL) {
			len = n > INT32_MAX ? INT32_MAX : (int)n;
			ERR_clear_error();
			errno = 0;
			r = SSL_write(p->ssl, b, len);
			if (r <= 0) {
				e = SSL_get_error(p->ssl, (int)r);
				if (e == SSL_ERROR_SYSCALL && errno == EINTR)
					continue;
				/* The socket's send timeout ran out. */
				if (e == SSL_ERROR_SYSCALL &&
				    (errno == EAGAIN || errno == EWOULDBLOCK))
					e = SSL_ERROR_WANT_WRITE;
				if (e == SSL_ERROR_WANT_WRITE ||
				    e == SSL_ERROR_WANT_READ) {
					/* The same call is retried once the
					 * socket is ready. */
					if (prot_poll(p, e == SSL_ERROR_WANT_READ ?
					    p->rfd : p->wfd,
					    e == SSL_ERROR_WANT_READ ? POLLIN :
					    POLLOUT, 1) < 0)
						return -1;
					continue;
				}
				prot_setsslerr(p, "TLS write");
				return -1;
			}
		} else {
			/*
			 * send() with MSG_NOSIGNAL so a vanished peer is an
			 * error and not a SIGPIPE; pipes and files take
			 * write().
			 */
			k = n;
			if (p->nosignal) {
				flags = MSG_NOSIGNAL;
				if (p->timeout > 0)
					flags |= MSG_DONTWAIT;
				r = send(p->wfd, b, k, flags);
			} else {
				if (p->timeout > 0 && p->wfifo && k > PIPE_BUF)
					k = PIPE_BUF;
				r = write(p->wfd, b, k);
			}
			if (r < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					if (prot_poll(p, p->wfd, POLLOUT, 1) < 0)
						return -1;
					continue;
				}
				if (p->nosignal && errno == ENOTSOCK) {
					p->nosignal = 0;
					continue;
				}
				prot_seterr(p, "write: %s", strerror(errno));
				return -1;
			}
		}
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/*
 * Refill ibuf.  Returns 1 when bytes are available, 0 at EOF, -1 on
 * error.
 */
static int
prot_fill(struct prot *p)
{
	ssize_t r;
	int zr;

	if (p->ipos < p->ilen)
		return 1;
	if (p->eof)
		return 0;
	if (p->failed)
		return -1;
	if (p->kind != PROT_FD) {
		p->eof = 1;
		return 0;
	}
	p->ipos = p->ilen = 0;
	if (!p->zon) {
		r = prot_rawread(p, p->ibuf, PROT_BUFSIZE);
		if (r < 0) {
			p->failed = 1;
			return -1;
		}
		if (r == 0) {
			p->eof = 1;
			return 0;
		}
		p->ilen = (size_t)r;
		return 1;
	}
	for (;;) {
		if (p->zin.avail_in == 0 && !p->zfull) {
			r = prot_rawread(p, p->zibuf, PROT_BUFSIZE);
			if (r < 0) {
				p->failed = 1;
				return -1;
			}
			if (r == 0) {
				p->eof = 1;
				return 0;
			}
			p->zin.next_in = p->zibuf;
			p->zin.avail_in = (uInt)r;
		}
		p->zin.next_out = p->ibuf;
		p->zin.avail_out = PROT_BUFSIZE;
		zr = inflate(&p->zin, Z_SYNC_FLUSH);
		if (zr != Z_OK && zr != Z_BUF_ERROR && zr != Z_STREAM_END) {
			prot_seterr(p, "inflate: %s", p->zin.msg != NULL ?
			    p->zin.msg : "stream error");
			p->failed = 1;
			return -1;
		}
		p->ilen = PROT_BUFSIZE - p->zin.avail_out;
		/* Output may be pending inside zlib with no input left. */
		p->zfull = p->zin.avail_out == 0;
		if (p->ilen > 0)
			return 1;
		if (zr == Z_STREAM_END) {
			p->eof = 1;
			return 0;
		}
	}
}

/* Next byte 0..255, or -1 at EOF or on error. */
int
prot_getc(struct prot *p)
{
	int c;

	if (p->pushback >= 0) {
		c = p->pushback;
		p->pushback = -1;
		p->nin++;
		return c;
	}
	if (p->ipos >= p->ilen && prot_fill(p) <= 0)
		return -1;
	p->nin++;
	return p->ibuf[p->ipos++];
}

/* Push back one byte (the one just read); a second push replaces it. */
void
prot_ungetc(struct prot *p, int c)
{
	if (c < 0)
		return;
	/* Prefer stepping back in the buffer: it keeps pushback free. */
	if (p->pushback < 0 && p->ipos > 0 && p->ibuf[p->ipos - 1] == c)
		p->ipos--;
	else
		p->pushback = c & 0xff;
	if (p->nin > 0)
		p->nin--;
}

/* The next byte without consuming it, or -1. */
int
prot_peek(struct prot *p)
{
	int c;

	c = prot_getc(p);
	if (c >= 0)
		prot_ungetc(p, c);
	return c;
}

/*
 * Up to n bytes into buf: what is buffered, else one transport read.
 * Returns the count, 0 at EOF, -1 on error.
 */
ssize_t
prot_read(struct prot *p, void *buf, size_t n)
{
	unsigned char *b = buf;
	size_t got = 0, k;
	int r;

	if (n == 0)
		return 0;
	if (p->pushback >= 0) {
		b[got++] = (unsigned char)p->pushback;
		p->pushback = -1;
		if (got == n || p->ipos >= p->ilen) {
			p->nin += got;
			return (ssize_t)got;
		}
	}
	if (p->ipos >= p->ilen) {
		r = prot_fill(p);
		if (r <= 0) {
			p->nin += got;
			return got > 0 ? (ssize_t)got : r;
		}
	}
	k = p->ilen - p->ipos;
	if (k > n - got)
		k = n - got;
	memcpy(b + got, p->ibuf + p->ipos, k);
	p->ipos += k;
	got += k;
	p->nin += got;
	return (ssize_t)got;
}

/* Exactly n bytes into buf.  Returns 0, or -1 on EOF (message set) or
 * error. */
int
prot_read_full(struct prot *p, void *buf, size_t n)
{
	unsigned char *b = buf;
	ssize_t r;

	while (n > 0) {
		r = prot_read(p, b, n);
		if (r < 0)
			return -1;
		if (r == 0) {
			prot_seterr(p, "unexpected end of stream");
			return -1;
		}
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/*
 * One line into buf (size >= 1), without its CRLF or LF.  Returns the
 * length; -1 at EOF (when nothing was read) or on error; -2 when the line
 * did not fit, after consuming the rest of it.  A last line without a
 * line end is returned as is.
 */
ssize_t
prot_readline(struct prot *p, char *buf, size_t size)
{
	size_t len = 0;
	int c, over = 0, any = 0;

	if (size == 0)
		return -2;
	for (;;) {
		c = prot_getc(p);
		if (c < 0) {
			if (!p->eof || !any) {
				buf[len] = '\0';
				return -1;
			}
			break;
		}
		any = 1;
		if (c == '\n')
			break;
		if (c == '\r' && prot_peek(p) == '\n') {
			(void)prot_getc(p);
			break;
		}
		if (len + 1 >= size)
			over = 1;
		else
			buf[len++] = (char)c;
	}
	buf[len] = '\0';
	return over ? -2 : (ssize_t)len;
}

/* True once the input has ended (not after an error). */
int
prot_eof(const struct prot *p)
{
	return p->eof && p->pushback < 0 && p->ipos >= p->ilen;
}

/* Application bytes readable without a read(2). */
size_t
prot_pending(const struct prot *p)
{
	return (p->pushback >= 0 ? 1 : 0) + (p->ilen - p->ipos);
}

/*
 * Send n bytes down the stack: through deflate (with the given flush
 * mode) when compression is on.  Returns 0 or -1.
 */
static int
prot_emit(struct prot *p, const unsigned char *buf, size_t n, int flush)
{
	size_t have;
	int zr;

	if (!p->zon)
		return n > 0 ? prot_rawwrite(p, buf, n) : 0;
	p->zout.next_in = (unsigned char *)(uintptr_t)buf;
	p->zout.avail_in = (uInt)n;
	do {
		p->zout.next_out = p->zobuf;
		p->zout.avail_out = PROT_BUFSIZE;
		zr = deflate(&p->zout, flush);
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			prot_seterr(p, "deflate: %s", p->zout.msg != NULL ?
			    p->zout.msg : "stream error");
			return -1;
		}
		have = PROT_BUFSIZE - p->zout.avail_out;
		if (have > 0 && prot_rawwrite(p, p->zobuf, have) < 0)
			return -1;
	} while (p->zout.avail_out == 0 || p->zout.avail_in > 0);
	return 0;
}

/* Grow a membuf's buffer to hold need more bytes (plus a NUL). */
static int
prot_membuf_grow(struct prot *p, size_t need)
{
	unsigned char *nb;
	size_t cap;

	if (need > SIZE_MAX - p->olen - 1) {
		prot_seterr(p, "out of memory");
		return -1;
	}
	if (p->olen + need + 1 <= p->ocap)
		return 0;
	cap = p->ocap;
	while (cap < p->olen + need + 1)
		cap = cap > SIZE_MAX / 2 ? p->olen + need + 1 : cap * 2;
	if ((nb = realloc(p->obuf, cap)) == NULL) {
		prot_seterr(p, "out of memory");
		return -1;
	}
	p->obuf = nb;
	p->ocap = cap;
	return 0;
}

/* Buffer n bytes for output; a full buffer is sent.  Returns 0 or -1. */
int
prot_write(struct prot *p, const void *buf, size_t n)
{
	const unsigned char *b = buf;
	size_t k;

	if (p->wfailed)
		return -1;
	if (p->kind == PROT_MEM) {
		prot_seterr(p, "stream is not open for writing");
		return -1;
	}
	if (p->kind == PROT_MEMBUF) {
		if (prot_membuf_grow(p, n) < 0)
			return -1;
		if (n > 0)
			memcpy(p->obuf + p->olen, b, n);
		p->olen += n;
		p->obuf[p->olen] = '\0';
		p->nout += n;
		return 0;
	}
	while (n > 0) {
		k = p->ocap - p->olen;
		if (k > n)
			k = n;
		memcpy(p->obuf + p->olen, b, k);
		p->olen += k;
		b += k;
		n -= k;
		p->nout += k;
		if (p->olen == p->ocap) {
			if (prot_emit(p, p->obuf, p->olen, Z_NO_FLUSH) < 0) {
				p->wfailed = 1;
				return -1;
			}
			p->olen = 0;
		}
	}
	return 0;
}

/* Write a C string. */
int
prot_puts(struct prot *p, const char *s)
{
	return prot_write(p, s, strlen(s));
}

/* Formatted output; the text may be of any length. */
int
prot_printf(struct prot *p, const char *fmt, ...)
{
	char small[512], *big;
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		prot_seterr(p, "bad format");
		return -1;
	}
	if ((size_t)n < sizeof(small))
		return prot_write(p, small, (size_t)n);
	if ((big = malloc((size_t)n + 1)) == NULL) {
		prot_seterr(p, "out of memory");
		return -1;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	r = prot_write(p, big, (size_t)n);
	free(big);
	return r;
}

/*
 * Send everything buffered.  With compression this ends on a sync flush
 * so the peer can inflate all of it now.  Returns 0 or -1.
 */
int
prot_flush(struct prot *p)
{
	if (p->kind != PROT_FD)
		return p->kind == PROT_MEMBUF && !p->wfailed ? 0 : -1;
	if (p->wfailed)
		return -1;
	if (p->olen == 0)
		return 0;
	if (prot_emit(p, p->obuf, p->olen, Z_SYNC_FLUSH) < 0) {
		p->wfailed = 1;
		return -1;
	}
	p->olen = 0;
	return 0;
}

/* Common part of both TLS roles. */
static int
prot_starttls(struct prot *p, SSL_CTX *ctx, int server, const char *name)
{
	int r;

	if (p->kind != PROT_FD || p->rfd < 0 || p->wfd < 0) {
		prot_seterr(p, "TLS needs a two-way fd stream");
		return -1;
	}
	if (p->ssl != NULL) {
		prot_seterr(p, "TLS already active");
		return -1;
	}
	if (p->zon) {
		prot_seterr(p, "TLS cannot start under compression");
		return -1;
	}
	if (prot_flush(p) < 0)
		return -1;
	/* Whatever arrived before the handshake is not to be trusted. */
	p->ipos = p->ilen = 0;
	p->pushback = -1;
	ERR_clear_error();
	if ((p->ssl = SSL_new(ctx)) == NULL) {
		prot_setsslerr(p, "SSL_new");
		return -1;
	}
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* A peer vanishing without close_notify reads as EOF, as in plain. */
	SSL_set_options(p->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	if (!SSL_set_rfd(p->ssl, p->rfd) || !SSL_set_wfd(p->ssl, p->wfd)) {
		prot_setsslerr(p, "SSL_set_fd");
		goto fail;
	}
	if (!server && name != NULL && *name != '\0')
		SSL_set_tlsext_host_name(p->ssl, name);
	for (;;) {
		errno = 0;
		r = server ? SSL_accept(p->ssl) : SSL_connect(p->ssl);
		if (r == 1)
			return 0;
		if (SSL_get_error(p->ssl, r) == SSL_ERROR_SYSCALL &&
		    errno == EINTR)
			continue;
		prot_setsslerr(p, "TLS handshake");
		goto fail;
	}
fail:
	SSL_free(p->ssl);
	p->ssl = NULL;
	return -1;
}

/*
 * Server side of STARTTLS: pending output (the OK) is sent, buffered
 * input dropped, then the handshake runs.  Returns 0 or -1.
 */
int
prot_starttls_server(struct prot *p, SSL_CTX *ctx)
{
	return prot_starttls(p, ctx, 1, NULL);
}

/* Client side of STARTTLS; servername (may be NULL) is sent as SNI. */
int
prot_starttls_client(struct prot *p, SSL_CTX *ctx, const char *servername)
{
	return prot_starttls(p, ctx, 0, servername);
}

int
prot_tls_active(const struct prot *p)
{
	return p->ssl != NULL;
}

/*
 * Switch both directions to raw DEFLATE.  Pending output goes out
 * uncompressed first (it precedes the switch on the wire); buffered input
 * is taken as compressed.
 */
int
prot_compress(struct prot *p, int level)
{
	size_t n;

	if (p->kind != PROT_FD) {
		prot_seterr(p, "compression needs an fd stream");
		return -1;
	}
	if (p->zon) {
		prot_seterr(p, "compression already active");
		return -1;
	}
	if (p->wfd >= 0 && prot_flush(p) < 0)
		return -1;
	/* One spare byte: the pushback joins a full read-ahead buffer. */
	p->zibuf = malloc(PROT_BUFSIZE + 1);
	p->zobuf = malloc(PROT_BUFSIZE);
	if (p->zibuf == NULL || p->zobuf == NULL) {
		prot_seterr(p, "out of memory");
		goto fail;
	}
	memset(&p->zin, 0, sizeof(p->zin));
	memset(&p->zout, 0, sizeof(p->zout));
	if (inflateInit2(&p->zin, -15) != Z_OK) {
		prot_seterr(p, "inflateInit2 failed");
		goto fail;
	}
	if (deflateInit2(&p->zout, level, Z_DEFLATED, -15, 9,
	    Z_DEFAULT_STRATEGY) != Z_OK) {
		inflateEnd(&p->zin);
		prot_seterr(p, "deflateInit2 failed");
		goto fail;
	}
	/* Bytes read ahead of the switch were compressed by the peer. */
	n = 0;
	if (p->pushback >= 0) {
		p->zibuf[n++] = (unsigned char)p->pushback;
		p->pushback = -1;
	}
	if (p->ilen > p->ipos) {
		memcpy(p->zibuf + n, p->ibuf + p->ipos, p->ilen - p->ipos);
		n += p->ilen - p->ipos;
	}
	p->ipos = p->ilen = 0;
	p->zin.next_in = p->zibuf;
	p->zin.avail_in = (uInt)n;
	p->zon = 1;
	return 0;
fail:
	free(p->zibuf);
	free(p->zobuf);
	p->zibuf = p->zobuf = NULL;
	return -1;
}

int
prot_compress_active(const struct prot *p)
{
	return p->zon;
}

uint64_t
prot_bytes_in(const struct prot *p)
{
	return p->nin;
}

uint64_t
prot_bytes_out(const struct prot *p)
{
	return p->nout;
}

const char *
prot_error(const struct prot *p)
{
	return p->err;
}

int
prot_timedout(const struct prot *p)
{
	return p->timedout;
}
