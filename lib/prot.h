/*
 * prot: a buffered, bidirectional byte stream over a pair of file
 * descriptors (a socket, or stdin/stdout), with optional TLS (OpenSSL)
 * and optional raw DEFLATE (zlib, RFC 4978 framing as Cyrus uses it).
 *
 * Layering on the wire: application bytes -> DEFLATE -> TLS -> fd.
 *
 * A prot can also read from a memory buffer (prot_new_mem), which is what
 * the parsers' unit tests and fuzz targets use, and write into a growing
 * memory buffer (prot_new_membuf), which is how values are rendered to text.
 *
 * Errors: functions return -1 and leave a message in prot_error().  Library
 * code never prints and never exits.
 */
#ifndef SYNCPIPE_PROT_H
#define SYNCPIPE_PROT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROT_BUFSIZE	65536

struct prot;
typedef struct ssl_ctx_st SSL_CTX;

/* Streams over fds; rfd or wfd may be -1 for a one-way stream.  The fds
 * are not closed by prot_free(). */
struct prot	*prot_new(int rfd, int wfd);
/* Read-only stream over a copy-free view of buf (buf must outlive it). */
struct prot	*prot_new_mem(const void *buf, size_t len);
/* Write-only stream that collects everything written in memory. */
struct prot	*prot_new_membuf(void);
void		 prot_free(struct prot *);

/* For prot_new_membuf streams: the bytes written so far (not NUL
 * terminated unless a NUL was written; *lenp gets the length). */
const char	*prot_membuf(struct prot *, size_t *lenp);

/* Timeout in seconds for the fd stream (0 = none): a read that waits
 * that long for a byte, or a write that waits that long for room (a peer
 * that stopped reading), fails with the error "timeout" and
 * prot_timedout() true.  On a socket this also sets SO_SNDTIMEO. */
void		 prot_settimeout(struct prot *, int seconds);

/* Start TLS on the stream.  Any bytes already buffered for reading are
 * discarded (as Cyrus does after STARTTLS).  Returns 0 or -1. */
int		 prot_starttls_server(struct prot *, SSL_CTX *);
int		 prot_starttls_client(struct prot *, SSL_CTX *,
		    const char *servername);
int		 prot_tls_active(const struct prot *);

/* Start raw DEFLATE in both directions (windowBits -15, Z_SYNC_FLUSH at
 * every flush).  level: zlib level (Cyrus uses Z_DEFAULT_COMPRESSION).
 * Input bytes already buffered past this point are treated as compressed.
 * Returns 0 or -1. */
int		 prot_compress(struct prot *, int level);
int		 prot_compress_active(const struct prot *);

/* Reading.  prot_getc returns a byte 0..255 or -1 (EOF or error; tell them
 * apart with prot_eof()). */
int		 prot_getc(struct prot *);
void		 prot_ungetc(struct prot *, int c);	/* one byte of pushback */
int		 prot_peek(struct prot *);		/* next byte without consuming, or -1 */
/* Read up to n bytes; returns the count (0 at EOF) or -1. */
ssize_t		 prot_read(struct prot *, void *buf, size_t n);
/* Read exactly n bytes, or fail. */
int		 prot_read_full(struct prot *, void *buf, size_t n);
/*
 * Read one line into buf (size bytes), strip the CRLF or LF.  Returns the
 * length, or -1 on EOF/error, or -2 when the line did not fit (the rest of
 * that line is consumed and dropped).  buf is always NUL terminated.
 */
ssize_t		 prot_readline(struct prot *, char *buf, size_t size);
int		 prot_eof(const struct prot *);
/* Bytes available in the input buffer without a read(2). */
size_t		 prot_pending(const struct prot *);

/* Writing: buffered; a full buffer is flushed.  Return 0 or -1. */
int		 prot_write(struct prot *, const void *, size_t);
int		 prot_puts(struct prot *, const char *);
int		 prot_printf(struct prot *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
int		 prot_flush(struct prot *);

/* Counters of application bytes (before compression). */
uint64_t	 prot_bytes_in(const struct prot *);
uint64_t	 prot_bytes_out(const struct prot *);

/* The last error, as text ("" if none). */
const char	*prot_error(const struct prot *);
/* True when the last error is a timeout (reading or writing), so a
 * caller can tell a stalled peer from one that went away. */
int		 prot_timedout(const struct prot *);

#endif
