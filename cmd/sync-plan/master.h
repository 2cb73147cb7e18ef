/*
 * master: where sync-plan reads the master's state.
 *
 * The planner asks the same questions of either source: our own store,
 * or a csync server (a live Cyrus master, or our sync_server) read with
 * GET requests.  A store answers each question from its database; a csync
 * source answers from the last GET USER / GET META / GET MAILBOXES reply
 * it loaded, and fetches records (GET FULLMAILBOX) only for mailboxes the
 * planner found to differ.
 *
 * Functions return 0, STORE_NOTFOUND where documented, or -1 with the
 * reason in master_error().
 */
#ifndef SYNCPLAN_MASTER_H
#define SYNCPLAN_MASTER_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct csync;
struct master;

/* A mailbox with its mailbox-level annotations. */
struct master_mbox {
	struct store_mailbox	 mb;
	struct store_annot	*annots;
	size_t			 nannots;
};

struct master	*master_from_store(struct store *);
struct master	*master_from_csync(struct csync *);
void		 master_free(struct master *);
/* Drop what was loaded (csync), so nothing stale answers a question. */
void		 master_forget(struct master *);
const char	*master_error(const struct master *);
/* 1 for a csync source: bodies are fetched from it, not read locally. */
int		 master_remote(const struct master *);

/* Load what the following calls about userid answer from (csync: GET
 * USER, or GET META when meta_only; store: nothing to do). */
int		 master_load_user(struct master *, const char *userid,
		    int meta_only);
/* The user's mailboxes, as GET USER lists them. */
int		 master_user_mailboxes(struct master *, const char *userid,
		    store_mailbox_cb, void *);
/* Load a set of mailboxes by name (csync: one GET MAILBOXES). */
int		 master_load_mailboxes(struct master *, char **names, size_t n);
/* One mailbox (loaded before for a csync source): 0, STORE_NOTFOUND,
 * -1.  Release with store_mailbox_clear. */
int		 master_mailbox_get(struct master *, const char *name,
		    struct store_mailbox *);
/* Mailbox-level annotations of mb; release with store_annots_free. */
int		 master_mbannots(struct master *, const struct store_mailbox *,
		    struct store_annot **, size_t *);
/*
 * Records of mb with modseq > since, ascending UID.  A csync source
 * reads the whole mailbox (GET FULLMAILBOX) and fills fresh with the
 * header of that same reply, so header and records agree (fresh->mb.name
 * stays NULL for a store).  STORE_NOTFOUND if the mailbox has gone.
 */
int		 master_records(struct master *, const struct store_mailbox *mb,
		    uint64_t since, store_record_cb, void *,
		    struct master_mbox *fresh);
void		 master_mbox_clear(struct master_mbox *);
/* 1 if the master still holds this body (store only; a csync source
 * answers 0). */
int		 master_body_exists(struct master *, const char *partition,
		    const char *guid);
/* Whether name was deleted on the master.  A store looks for a
 * tombstone; a csync source cannot see tombstones and answers logged
 * (the sync log said UNMAILBOX) when the mailbox is absent. */
int		 master_deleted(struct master *, const char *name, int logged);
/* Quota root: 0, STORE_NOTFOUND, -1; release with store_quota_clear. */
int		 master_quota_get(struct master *, const char *root,
		    struct store_quota *);
int		 master_seen_foreach(struct master *, const char *userid,
		    store_seen_cb, void *);
int		 master_sub_foreach(struct master *, const char *userid,
		    store_name_cb, void *);
int		 master_sieve_foreach(struct master *, const char *userid,
		    store_sieve_cb, void *);
int		 master_sieve_get(struct master *, const char *userid,
		    const char *name, char **content, size_t *len);
/* Every mailbox (for -A); a csync source cannot list users (-1). */
int		 master_mailbox_foreach(struct master *, store_mailbox_cb,
		    void *);
/* Whether #sieve mailboxes are to be replicated as mailboxes. */
int		 master_sieve_mailbox(struct master *);

#endif
