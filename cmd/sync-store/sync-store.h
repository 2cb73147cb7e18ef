/*
 * sync-store: internal interfaces between the files of the tool.
 */
#ifndef SYNC_STORE_H
#define SYNC_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct conf;
struct store;
struct store_mailbox;
struct store_record;
struct sqlite3_stmt;

/* Exit statuses (see EXIT STATUS in sync-store(1)). */
#define SS_OK		0	/* done; verify found nothing */
#define SS_FAIL		1	/* failed, or verify found faults */
#define SS_USAGE	64	/* EX_USAGE */
#define SS_TEMPFAIL	75	/* EX_TEMPFAIL: database busy, retry */
#define SS_CONFIG	78	/* EX_CONFIG */

#define SS_MAXARGS	4096

struct ss {
	const char	*verb;
	const char	*confpath;
	struct conf	*conf;
	struct store	*store;
	char		*args[SS_MAXARGS];	/* positional arguments */
	int		 nargs;
	/* Verb options; NULL when not given. */
	const char	*partition;
	const char	*specialuse;
	const char	*flags;
	const char	*date;
	const char	*user;
	const char	*grace;
	const char	*maildir;
};

/* A parsed IMAP sequence set; '*' is kept as UINT32_MAX until resolved. */
struct uidrange {
	uint32_t	 lo, hi;
};
struct uidset {
	struct uidrange	*r;
	size_t		 n;
};

/* sync-store.c: messages and shared helpers. */
void	 ss_err(const struct ss *, const char *what, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
int	 ss_storefail(const struct ss *, const char *what);
int	 ss_usage(const struct ss *);
int	 ss_begin(struct ss *);
int	 ss_commit(struct ss *, const char *what);
void	 ss_rollback(struct ss *);
int	 ss_uidset_parse(const char *, int allowstar, struct uidset *);
int	 ss_uidset_has(const struct uidset *, uint32_t uid, uint32_t last);
void	 ss_uidset_free(struct uidset *);
int	 ss_parse_u64(const char *, uint64_t max, uint64_t *);
int	 ss_parse_i64(const char *, int64_t *);
void	 ss_sha1_hex(const void *, size_t, char out[41]);
int	 ss_read_fd(int fd, size_t max, char **buf, size_t *len);
void	 ss_put_string(FILE *, const char *, size_t);
void	 ss_flags_string(unsigned sysflags, const char *keywords, int sorted,
	    char *buf, size_t size);
char	*ss_sql_path(const struct ss *);
int	 ss_pathf(char *, size_t, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
int	 ss_sql_each(const struct ss *, const char *sql,
	    int (*)(struct sqlite3_stmt *, void *), void *);
void	 ss_partitions(const struct ss *,
	    void (*)(const char *name, const char *dir, void *), void *);

/* verbs.c */
int	 verb_create(struct ss *);
int	 verb_deliver(struct ss *);
int	 verb_flag(struct ss *);
int	 verb_unflag(struct ss *);
int	 verb_expunge(struct ss *);
int	 verb_rename(struct ss *);
int	 verb_delete(struct ss *);
int	 verb_seen(struct ss *);
int	 verb_sub(struct ss *);
int	 verb_unsub(struct ss *);
int	 verb_quota(struct ss *);
int	 verb_annotate(struct ss *);
int	 verb_sieve(struct ss *);
int	 verb_acl(struct ss *);
int	 verb_deluser(struct ss *);

/* report.c */
int	 verb_list(struct ss *);
int	 verb_show(struct ss *);
int	 verb_dump(struct ss *);

/* check.c */
int	 verb_verify(struct ss *);
int	 verb_gc(struct ss *);

/* export.c */
int	 verb_export(struct ss *);

#endif
