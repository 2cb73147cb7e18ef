/*
 * mbdl: mailboxes, records and annotations as csync values, both ways.
 *
 * Building follows the key order and the omissions of Cyrus 3.6 (protocol
 * doc 3.2.1, 4.7, 4.8), so a GET reply or an APPLY MAILBOX we write is the
 * same text Cyrus would write for the same state.  Parsing accepts what a
 * Cyrus peer sends and checks every field it converts.
 */
#ifndef SYNCPIPE_MBDL_H
#define SYNCPIPE_MBDL_H

#include <stddef.h>

struct dlist;
struct store_mailbox;
struct store_record;
struct store_annot;

/* A "MAILBOX"-style kvlist (key given) for mb with its mailbox-level
 * annotations, without RECORD.  Appended to parent when not NULL. */
struct dlist	*mbdl_mailbox(struct dlist *parent, const char *key,
		    const struct store_mailbox *mb,
		    const struct store_annot *annots, size_t nannots);
/* Append one record kvlist (with its real and virtual annotations, in
 * Cyrus's order) to the list "RECORD". */
void		 mbdl_record(struct dlist *list, const struct store_record *);
/* Append an ANNOTATIONS list (omitted when n == 0). */
void		 mbdl_annots(struct dlist *kv, const char *key,
		    const struct store_annot *, size_t n);

/*
 * Parse a MAILBOX kvlist into mb (strings malloc'd; release with
 * store_mailbox_clear) and its annotations (release with
 * store_annots_free).  strict: require every key a Cyrus client requires
 * of a GET reply.  Returns 0, or -1 with err.
 */
int		 mbdl_parse_mailbox(const struct dlist *, struct store_mailbox *mb,
		    struct store_annot **annots, size_t *nannots, int strict,
		    char *err, size_t errlen);
/* Parse one RECORD item (UID, MODSEQ, LAST_UPDATED, FLAGS, INTERNALDATE,
 * SIZE, GUID required; ANNOTATIONS optional, virtual entries moved to
 * their fields).  Release with store_record_clear. */
int		 mbdl_parse_record(const struct dlist *, struct store_record *,
		    char *err, size_t errlen);
/* Parse an annotation list (each item needs ENTRY USERID MODSEQ VALUE),
 * sorted by (entry, userid). */
int		 mbdl_parse_annots(const struct dlist *list,
		    struct store_annot **, size_t *, char *err, size_t errlen);

/* Flags: parse a FLAGS list into system flags and a keyword string
 * (malloc'd, space separated, or NULL); build the list in Cyrus's order. */
int		 mbdl_parse_flags(const struct dlist *list, unsigned *sysflags,
		    char **keywords, char *err, size_t errlen);
void		 mbdl_flags(struct dlist *kv, unsigned sysflags,
		    const char *keywords);

/* Compare two annotation sets (entry, userid, value). 0 = equal. */
int		 mbdl_annots_cmp(const struct store_annot *, size_t,
		    const struct store_annot *, size_t);

#endif
