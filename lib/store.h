/*
 * store: syncpipe's mail store, for master and replica alike.
 *
 * Metadata lives in one SQLite database (WAL mode) at
 * {configdirectory}/syncpipe.db; message bodies are files named by their
 * GUID (SHA-1 of the bytes) under each partition's directory
 * ({partition-NAME}/bodies/ab/cd/<guid>), one copy however many mailboxes
 * hold them.  No name from outside ever becomes part of a path: the only
 * path components are a configured partition's directory and a GUID that
 * has been checked to be 40 hex digits.
 *
 * All functions return 0 on success, STORE_NOTFOUND / STORE_EXISTS where
 * documented, or -1 with the reason in store_error().  Library code never
 * prints and never exits.
 *
 * Transactions: every mutating call must run between store_begin() and
 * store_commit() (or store_rollback()); a crash before the commit leaves
 * the previous state.  Bodies must be durable before a record refers to
 * them: store_record_put() refuses a non-expunged record whose body file
 * is absent.
 */
#ifndef SYNCPIPE_STORE_H
#define SYNCPIPE_STORE_H

#include <stddef.h>
#include <stdint.h>

struct conf;
struct store;

#define STORE_NOTFOUND		1
#define STORE_EXISTS		2

#define MAX_MAILBOX_NAME	490

/* System flags of a record (bit values are ours, not Cyrus's). */
#define SF_DELETED	0x01
#define SF_ANSWERED	0x02
#define SF_FLAGGED	0x04
#define SF_DRAFT	0x08
#define SF_EXPUNGED	0x10
#define SF_SEEN		0x20

struct store_annot {
	char		*entry;
	char		*userid;	/* "" for a shared value */
	uint64_t	 modseq;
	char		*value;		/* may hold NUL bytes; NUL terminated */
	size_t		 valuelen;
};

struct store_mailbox {
	int64_t		 id;		/* row id, set by get/create */
	char		*uniqueid;
	char		*name;		/* Cyrus internal name, e.g. user.alice.Sent */
	char		*mbtype;	/* type letters without 'l'; "" = plain email */
	char		*partition;	/* NULL allowed for intermediates */
	char		*acl;		/* raw Cyrus ACL (TAB separated); NULL allowed */
	char		*options;	/* letters P S D A; "" if none */
	char		*quotaroot;	/* NULL if none */
	uint32_t	 uidvalidity;
	uint32_t	 last_uid;
	uint32_t	 recentuid;
	uint64_t	 highestmodseq;
	uint64_t	 createdmodseq;
	uint64_t	 foldermodseq;
	uint64_t	 xconvmodseq;
	uint64_t	 raclmodseq;
	int64_t		 recenttime;
	int64_t		 last_appenddate;
	int64_t		 pop3_last_login;
	int64_t		 pop3_show_after;
	/* Maintained by the store (record_put / record_delete); ignored by
	 * store_mailbox_update(). */
	uint32_t	 sync_crc;
	uint32_t	 sync_crc_annot;
};

struct store_record {
	uint32_t	 uid;
	uint64_t	 modseq;
	int64_t		 last_updated;
	int64_t		 internaldate;
	uint32_t	 size;
	char		 guid[41];
	unsigned	 sysflags;	/* SF_* */
	char		*keywords;	/* space separated, in order; NULL or "" = none */
	uint64_t	 cid;		/* thread id (virtual annotation thrid), 0 = none */
	int64_t		 savedate;	/* virtual annotation savedate, 0 = none */
	uint64_t	 createdmodseq;	/* virtual annotation createdmodseq, 0 = none */
	struct store_annot *annots;	/* real per-message annotations, sorted by (entry, userid) */
	size_t		 nannots;
};

struct store_seen {
	char		*uniqueid;
	int64_t		 lastread;
	uint32_t	 lastuid;
	int64_t		 lastchange;
	char		*seenuids;	/* IMAP sequence set, may be "" */
};

/* Quota resources, in the order Cyrus uses. */
enum { QUOTA_STORAGE, QUOTA_MESSAGE, QUOTA_ANNOTSTORAGE, QUOTA_NUMFOLDERS, QUOTA_NUMRESOURCES };
#define QUOTA_UNLIMITED	(-1)

struct store_quota {
	char		*root;
	int64_t		 limits[QUOTA_NUMRESOURCES];	/* QUOTA_UNLIMITED or a limit (KiB for storage) */
	uint64_t	 modseq;
};

struct store_sieve {
	char		*name;		/* script name without ".script" */
	int64_t		 last_update;
	char		 guid[41];	/* SHA-1 of the content */
	int		 active;
};

struct store_tombstone {
	char		*name;
	char		*uniqueid;
	uint64_t	 modseq;
	int64_t		 deleted_at;
};

/* Open (creating if needed) the store described by conf.  Returns NULL
 * with err set on failure. */
struct store	*store_open(const struct conf *, char *err, size_t errlen);
void		 store_close(struct store *);
const char	*store_error(const struct store *);
const struct conf *store_conf(const struct store *);

int		 store_begin(struct store *);
int		 store_commit(struct store *);
int		 store_rollback(struct store *);

/*
 * When on, every change made through this handle appends the matching
 * sync_log records (protocol doc section 7) to the configured channels
 * when the transaction commits.  Off by default.  The lines are written
 * after the database commit (a reader acting on them must see the
 * change); if that write fails store_commit() returns -1 although the
 * data is committed, and store_error() begins with "committed".
 */
void		 store_set_synclog(struct store *, int on);

/* Per-user modseq counter (the user of a mailbox name; "" for shared
 * mailboxes).  next_modseq increments and returns it; bump_modseq raises
 * it to at least v. */
int		 store_next_modseq(struct store *, const char *userid, uint64_t *);
int		 store_bump_modseq(struct store *, const char *userid, uint64_t v);

/* Mailboxes.  Structures filled by get* own their strings: release them
 * with store_mailbox_clear(). */
int		 store_mailbox_get(struct store *, const char *name,
		    struct store_mailbox *);		/* 0, STORE_NOTFOUND, -1 */
int		 store_mailbox_get_uniqueid(struct store *, const char *uniqueid,
		    struct store_mailbox *);		/* 0, STORE_NOTFOUND, -1 */
/* Insert; sets mb->id.  STORE_EXISTS if the name or uniqueid is taken. */
int		 store_mailbox_create(struct store *, struct store_mailbox *);
/* Write every field but the id and the CRCs. */
int		 store_mailbox_update(struct store *, const struct store_mailbox *);
/* Remove a mailbox with its records and annotations (bodies stay for
 * gc).  With tombstone, remember (name, uniqueid, modseq) as Cyrus does. */
int		 store_mailbox_delete(struct store *, int64_t id, int tombstone);
/* Rename and/or move partition; newpartition may be NULL (unchanged).
 * Moving copies (through an ingest, durably) every live record's body
 * the new partition lacks before the metadata changes; the old copies
 * stay for gc. */
int		 store_mailbox_rename(struct store *, int64_t id, const char *newname,
		    const char *newpartition);
void		 store_mailbox_clear(struct store_mailbox *);
typedef int	(*store_mailbox_cb)(const struct store_mailbox *, void *);
/* A user's mailboxes: user.U and user.U.* in name order, then their
 * delayed-delete copies DELETED.user.U.* in name order (domain-qualified
 * as Cyrus does for U = local@domain).  Name order is Cyrus's: the
 * separator '.' sorts before every other byte (user.U.a.b before
 * user.U.a-c).  A non-zero return from cb stops the walk and is
 * returned. */
int		 store_mailbox_foreach_user(struct store *, const char *userid,
		    store_mailbox_cb, void *);
/* Every mailbox in name order (prefix NULL or ""), or those whose name
 * starts with prefix; name order as for store_mailbox_foreach_user. */
int		 store_mailbox_foreach(struct store *, const char *prefix,
		    store_mailbox_cb, void *);
/* Recompute both CRCs from the records (verification). */
int		 store_mailbox_crc_recalc(struct store *, int64_t id,
		    uint32_t *crc, uint32_t *crc_annot);

int		 store_tombstone_get(struct store *, const char *name,
		    struct store_tombstone *);		/* 0, STORE_NOTFOUND, -1 */
int		 store_tombstone_delete(struct store *, const char *name);
void		 store_tombstone_clear(struct store_tombstone *);

/* Mailbox-level annotations (mbid 0 = server annotations), sorted by
 * (entry, userid).  replace makes the set equal to the given one;
 * set with an empty value deletes that entry. */
int		 store_mbannot_list(struct store *, int64_t mbid,
		    struct store_annot **, size_t *);
int		 store_mbannot_replace(struct store *, int64_t mbid,
		    const struct store_annot *, size_t);
int		 store_mbannot_set(struct store *, int64_t mbid,
		    const struct store_annot *);
void		 store_annots_free(struct store_annot *, size_t);

/* Records. */
int		 store_record_get(struct store *, int64_t mbid, uint32_t uid,
		    struct store_record *);		/* 0, STORE_NOTFOUND, -1 */
typedef int	(*store_record_cb)(const struct store_record *, void *);
/* Records with modseq > sincemodseq (0: all), ascending UID, with their
 * annotations.  A non-zero return from cb stops and is returned. */
int		 store_record_foreach(struct store *, int64_t mbid,
		    uint64_t sincemodseq, store_record_cb, void *);
/* Insert or replace the record with this UID, keeping the mailbox's CRCs
 * up to date incrementally.  Refuses (-1) a non-expunged record whose
 * body is not in the mailbox's partition. */
int		 store_record_put(struct store *, int64_t mbid,
		    const struct store_record *);
void		 store_record_clear(struct store_record *);

/* Bodies.  store_body_path fails for an unknown partition or a bad GUID. */
int		 store_body_path(struct store *, const char *partition,
		    const char *guid, char *buf, size_t size);
int		 store_body_exists(struct store *, const char *partition,
		    const char *guid);			/* 1, 0, -1 */
/* Like store_body_exists, and *size gets the body's size when it is
 * there (one stat for both). */
int		 store_body_size(struct store *, const char *partition,
		    const char *guid, uint64_t *size);	/* 1, 0, -1 */

/*
 * Ingest: bringing new bodies into a partition durably, in batches.
 * open starts a temp file in the partition's staging directory (NULL on
 * error: unknown partition, bad GUID, disk); write appends bytes while
 * hashing them; close checks size and SHA-1 against the GUID (-1 if
 * either differs, and the temp file is removed).  commit makes every
 * closed body of the batch durable with one flush and moves it into
 * place; a body already present is not rewritten.  abort drops the batch.
 * These match struct dlist_sink, so an ingest can be the sink of a parse.
 */
struct store_ingest;
struct store_ingest *store_ingest_begin(struct store *);
void		*store_ingest_open(struct store_ingest *, const char *partition,
		    const char *guid, uint64_t size);
int		 store_ingest_write(struct store_ingest *, void *h,
		    const void *, size_t);
int		 store_ingest_close(struct store_ingest *, void *h, int ok);
int		 store_ingest_commit(struct store_ingest *);
void		 store_ingest_abort(struct store_ingest *);
/* A body of this batch that closed cleanly (1) or not (0). */
int		 store_ingest_has(struct store_ingest *, const char *partition,
		    const char *guid);
void		 store_ingest_free(struct store_ingest *);
/* Add a body from a memory buffer or an fd (sync-store deliver): hashes
 * it, writes it durably, returns its GUID.  Convenience over ingest. */
int		 store_body_add(struct store *, const char *partition,
		    const void *buf, size_t len, char guid[41]);

/* Seen state of userid for mailboxes they do not own. */
int		 store_seen_set(struct store *, const char *userid,
		    const struct store_seen *);
typedef int	(*store_seen_cb)(const struct store_seen *, void *);
int		 store_seen_foreach(struct store *, const char *userid,
		    store_seen_cb, void *);

/* Subscriptions: mailbox names, sorted. */
int		 store_sub_set(struct store *, const char *userid,
		    const char *mboxname, int add);
typedef int	(*store_name_cb)(const char *, void *);
int		 store_sub_foreach(struct store *, const char *userid,
		    store_name_cb, void *);

/* Quota roots. */
int		 store_quota_get(struct store *, const char *root,
		    struct store_quota *);		/* 0, STORE_NOTFOUND, -1 */
int		 store_quota_set(struct store *, const struct store_quota *);
/* STORE_NOTFOUND (nothing logged) if there is no such root. */
int		 store_quota_delete(struct store *, const char *root);
typedef int	(*store_quota_cb)(const struct store_quota *, void *);
/* Every quota root in mailbox name order.  A non-zero return from cb
 * stops the walk and is returned. */
int		 store_quota_foreach(struct store *, store_quota_cb, void *);
void		 store_quota_clear(struct store_quota *);
/* Usage of a root: sum of sizes of non-expunged records and their count
 * in mailboxes under it. */
int		 store_quota_usage(struct store *, const char *root,
		    uint64_t *bytes, uint64_t *messages);

/* Sieve scripts (the legacy, non-#sieve-mailbox representation). */
typedef int	(*store_sieve_cb)(const struct store_sieve *, void *);
int		 store_sieve_foreach(struct store *, const char *userid,
		    store_sieve_cb, void *);
int		 store_sieve_put(struct store *, const char *userid, const char *name,
		    const char *content, size_t len, int64_t last_update);
int		 store_sieve_get(struct store *, const char *userid, const char *name,
		    char **content, size_t *len);	/* 0, STORE_NOTFOUND, -1 */
int		 store_sieve_delete(struct store *, const char *userid, const char *name);
/* name NULL deactivates. */
int		 store_sieve_activate(struct store *, const char *userid, const char *name);

/* Every userid that owns a mailbox (delayed-delete copies included) or
 * has seen state, subscriptions or sieve scripts, in strcmp order, each
 * once.  The list is read before the first call, so cb may change the
 * store.  A non-zero return from cb stops the walk and is returned. */
int		 store_user_foreach(struct store *, store_name_cb, void *);

/* Everything of a user: mailboxes (with tombstones), seen, subscriptions,
 * sieve, quota roots under user.U.  The user's delayed-delete copies
 * (DELETED.user.U.*) are kept, as Cyrus keeps them. */
int		 store_user_delete(struct store *, const char *userid);

#endif
