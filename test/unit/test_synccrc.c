/*
 * test_synccrc: the sync CRCs against the worked example of the protocol
 * document (section 5.7) and against values a real Cyrus 3.6.1 master
 * sent (transcripts/full-user-sync-new-user.txt).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "synccrc.h"
#include "tap.h"

struct trec {
	uint32_t	 uid;
	uint64_t	 modseq;
	int64_t		 last_updated, internaldate;
	const char	*flags;		/* as on the wire */
	const char	*guid;
	int64_t		 savedate;
	uint64_t	 createdmodseq;
};

/* Wire flags to sysflags + keywords, as a receiver does. */
static void
mkrec(struct store_record *r, const struct trec *t, char *kwbuf, size_t kwlen)
{
	char buf[256], *p, *tok;

	memset(r, 0, sizeof(*r));
	r->uid = t->uid;
	r->modseq = t->modseq;
	r->last_updated = t->last_updated;
	r->internaldate = t->internaldate;
	strlcpy(r->guid, t->guid, sizeof(r->guid));
	r->savedate = t->savedate;
	r->createdmodseq = t->createdmodseq;
	kwbuf[0] = '\0';
	strlcpy(buf, t->flags, sizeof(buf));
	for (p = buf; (tok = strsep(&p, " ")) != NULL;) {
		if (*tok == '\0')
			continue;
		if (strcasecmp(tok, "\\Seen") == 0)
			r->sysflags |= SF_SEEN;
		else if (strcasecmp(tok, "\\Deleted") == 0)
			r->sysflags |= SF_DELETED;
		else if (strcasecmp(tok, "\\Flagged") == 0)
			r->sysflags |= SF_FLAGGED;
		else if (strcasecmp(tok, "\\Answered") == 0)
			r->sysflags |= SF_ANSWERED;
		else if (strcasecmp(tok, "\\Draft") == 0)
			r->sysflags |= SF_DRAFT;
		else if (strcasecmp(tok, "\\Expunged") == 0)
			r->sysflags |= SF_EXPUNGED;
		else {
			if (kwbuf[0] != '\0')
				strlcat(kwbuf, " ", kwlen);
			strlcat(kwbuf, tok, kwlen);
		}
	}
	r->keywords = kwbuf;
}

static void
mailbox_crcs(const struct trec *t, size_t n, uint32_t *crc, uint32_t *crca)
{
	struct store_record r;
	char kw[256];
	size_t i;

	*crc = 0;
	*crca = SYNCCRC_ANNOT_INIT;
	for (i = 0; i < n; i++) {
		mkrec(&r, &t[i], kw, sizeof(kw));
		*crc ^= synccrc_record_basic(&r);
		*crca ^= synccrc_record_annot(&r);
	}
}

/* Protocol doc 5.7. */
static const struct trec ex[] = {
	{ 1, 3, 1676282460, 1676282400, "\\Seen",
	    "306f3706516e79913e70b4c9ef5549d464561446", 1676282400, 2 },
	{ 2, 5, 1676288000, 1676287800, "\\Flagged $Label1",
	    "1f0f77fdc9b425faa2bd26a409228a1943820a64", 1676287800, 4 },
	{ 3, 6, 1676290000, 1676290000, "",
	    "6ee2433e47dd14cf6c3b2cf98c636226d78b6f72", 1676290000, 6 },
};

/* user.tuser (INBOX) as sent in APPLY MAILBOX by Cyrus 3.6.1. */
static const struct trec inbox[] = {
	{ 1, 2, 1795460141, 1700000037, "\\Seen", "19965c19491fc33c56f91cbeb1e20acf12d82d19", 1795460141, 2 },
	{ 2, 21, 1795460141, 1700000074, "\\Deleted \\Expunged \\Seen", "c65bd377f4f471507c75dcc180bd99b30effa3f9", 1795460141, 3 },
	{ 3, 4, 1795460141, 1700000111, "", "d9c36fa14eef9c4e598c6fc0d1582f6598cb4fef", 1795460141, 4 },
	{ 4, 5, 1795460141, 1700000148, "\\Seen", "b6816c65e3bc165e914bf660368ba54c8b01a22c", 1795460141, 5 },
	{ 5, 6, 1795460141, 1700000185, "\\Seen $Label1", "d661de86c52bd86dd267136fd0d8c59f901f283b", 1795460141, 6 },
	{ 6, 7, 1795460141, 1700000222, "", "8157c635233c4d0ddcb30ec9170a6e3be603a25f", 1795460141, 7 },
	{ 7, 8, 1795460141, 1700000259, "\\Flagged \\Seen", "95560aeed317d133327374b72a9a17e448b4006b", 1795460141, 8 },
	{ 8, 9, 1795460141, 1700000296, "\\Seen", "053d3e0c71f51d5eca1ee81a5850a91712634c5e", 1795460141, 9 },
	{ 9, 10, 1795460141, 1700000333, "", "8eab5cb8226aee0d6323d93afb5d3bb4f9e15d88", 1795460141, 10 },
	{ 10, 11, 1795460141, 1700000370, "\\Seen $Label1", "1fa80c74e55008160395cd34805f8485cf6659d7", 1795460141, 11 },
	{ 11, 12, 1795460141, 1700000407, "\\Answered \\Seen", "d9f42993bf94d5eb89cc999727aa1131f6214ea4", 1795460141, 12 },
	{ 12, 13, 1795460141, 1700000444, "", "f5319b79879359fe39365fc2bc6edc058c244e6a", 1795460141, 13 },
	{ 13, 14, 1795460141, 1700000481, "\\Seen $Forwarded", "dd926fac3dca2f56dc558f1dc22b14e27c11e31a", 1795460141, 14 },
	{ 14, 15, 1795460141, 1700000518, "\\Flagged \\Seen", "0f7656a2dbfc8c6e6d582b3a56b15dbf4ed68e01", 1795460141, 15 },
	{ 15, 16, 1795460141, 1700000555, "$Label1", "6ed4da0f93ec37665b1e3e96d91cb4299a03413c", 1795460141, 16 },
	{ 16, 17, 1795460141, 1700000592, "\\Seen", "3dae95ead4ab588442684723f84f32ade43d70dc", 1795460141, 17 },
	{ 17, 18, 1795460141, 1700000629, "\\Seen custom_kw", "d9c2a8b49473ccbe8ab5da9fd3971a832f69ad4a", 1795460141, 18 },
	{ 18, 22, 1795460141, 1700000666, "\\Deleted", "d016f5c700cc1bbc04ed95780a06eb01946a380d", 1795460141, 19 },
};

static const struct trec sieve[] = {
	{ 1, 3, 1795460141, 1795460141, "\\Flagged",
	    "3069e7baaa0aea5129f12a69f2226569fb5a5428", 1795460141, 2 },
};
static const struct trec archive2023[] = {
	{ 1, 2, 1795460141, 1700000740, "\\Seen $Label1",
	    "159a89c586cd8db4139dbbf240de85d63d3a3d65", 1795460141, 2 },
};
static const struct trec sent[] = {
	{ 1, 3, 1795460141, 1700000703, "\\Seen",
	    "bc93c1b97bd122d73621adf24beed854b6a44d74", 1795460141, 3 },
};

int
main(void)
{
	struct store_record r1, r2, r3;
	struct store_annot an;
	char kw1[64], kw2[64], kw3[64];
	uint32_t crc, crca;

	is_int(synccrc_cstring("123456789"), 0xCBF43926u, "crc32 check value");
	is_int(synccrc_cstring("\\seen"), 3201761491u, "crc32(\\seen)");
	is_int(synccrc_cstring("\\flagged"), 3986028895u, "crc32(\\flagged)");
	is_int(synccrc_cstring("$label1"), 979321343u, "crc32($label1)");

	mkrec(&r1, &ex[0], kw1, sizeof(kw1));
	mkrec(&r2, &ex[1], kw2, sizeof(kw2));
	mkrec(&r3, &ex[2], kw3, sizeof(kw3));
	is_int(synccrc_record_basic(&r1), 3852782491u, "5.7 R1 basic");
	is_int(synccrc_record_basic(&r2), 719023269u,
	    "5.7 R2 basic (keyword lower-cased)");
	crc = synccrc_record_basic(&r1) ^ synccrc_record_basic(&r2);
	is_int(crc, 3481249598u, "5.7 SYNC_CRC");
	is_int(synccrc_record_annot(&r1),
	    73231921u ^ 365805277u, "5.7 R1 annot (savedate, createdmodseq)");
	crca = SYNCCRC_ANNOT_INIT ^ synccrc_record_annot(&r1) ^
	    synccrc_record_annot(&r2);
	is_int(crca, 1870326507u, "5.7 SYNC_CRC_ANNOT");

	/* A shared /comment on UID 2. */
	an.entry = "/comment";
	an.userid = "";
	an.modseq = 7;
	an.value = "call Carol";
	an.valuelen = strlen(an.value);
	r2.annots = &an;
	r2.nannots = 1;
	is_int(synccrc_record_annot(&r2) ^ 3133393874u ^ 3298136219u,
	    3698353566u, "5.7 /comment contribution");
	/* The modseq of an annotation is not part of the CRC. */
	an.modseq = 99;
	is_int(synccrc_record_annot(&r2) ^ 3133393874u ^ 3298136219u,
	    3698353566u, "annotation modseq ignored");
	/* An empty value contributes nothing. */
	an.valuelen = 0;
	is_int(synccrc_record_annot(&r2), 3133393874u ^ 3298136219u,
	    "empty annotation value ignored");
	/* A private value: "<uid> <entry> <userid> <value>". */
	an.userid = "alice";
	an.value = "private note";
	an.valuelen = strlen(an.value);
	r1.annots = &an;
	r1.nannots = 1;
	is_int(synccrc_record_annot(&r1) ^ 73231921u ^ 365805277u,
	    synccrc_cstring("1 /comment alice private note"),
	    "private annotation string");
	r1.annots = NULL;
	r1.nannots = 0;
	r2.annots = NULL;
	r2.nannots = 0;

	/* Thread id hashed as %llx. */
	r1.cid = 0x0000123456789ABCull;
	is_int(synccrc_record_annot(&r1) ^ 73231921u ^ 365805277u,
	    3565736399u, "5.7 thrid contribution");
	r1.cid = 0;

	/* Third message. */
	is_int(synccrc_record_basic(&r3), 2649581998u, "5.7 R3 basic");
	is_int(crc ^ synccrc_record_basic(&r3), 1385352848u,
	    "5.7 SYNC_CRC after append");
	is_int(crca ^ synccrc_record_annot(&r3), 2406911810u,
	    "5.7 SYNC_CRC_ANNOT after append");

	/* Expunging R1 removes all its contributions. */
	r1.sysflags |= SF_EXPUNGED;
	is_int(synccrc_record_basic(&r1), 0, "expunged: no basic CRC");
	is_int(synccrc_record_annot(&r1), 0, "expunged: no annot CRC");
	is_int(synccrc_record_basic(&r2) ^ synccrc_record_basic(&r3),
	    719023269u ^ 2649581998u, "SYNC_CRC without R1");

	/* Upper-case GUIDs hash as lower case. */
	strlcpy(r2.guid, "1F0F77FDC9B425FAA2BD26A409228A1943820A64",
	    sizeof(r2.guid));
	is_int(synccrc_record_basic(&r2), 719023269u, "GUID case ignored");

	/* Virtual entries in the annotation list are not counted twice. */
	an.entry = "/vendor/cmu/cyrus-imapd/savedate";
	an.userid = "";
	an.value = "1676287800";
	an.valuelen = strlen(an.value);
	r2.annots = &an;
	r2.nannots = 1;
	is_int(synccrc_record_annot(&r2), 3133393874u ^ 3298136219u,
	    "virtual entry in the list ignored");

	/* Real Cyrus 3.6.1 values. */
	mailbox_crcs(inbox, sizeof(inbox) / sizeof(inbox[0]), &crc, &crca);
	is_int(crc, 2800991547u, "user.tuser SYNC_CRC (18 records)");
	is_int(crca, 34575404u, "user.tuser SYNC_CRC_ANNOT");
	mailbox_crcs(sieve, 1, &crc, &crca);
	is_int(crc, 1862547095u, "user.tuser.#sieve SYNC_CRC");
	is_int(crca, 4109701056u, "user.tuser.#sieve SYNC_CRC_ANNOT");
	mailbox_crcs(archive2023, 1, &crc, &crca);
	is_int(crc, 1452350050u, "user.tuser.Archive.2023 SYNC_CRC");
	is_int(crca, 4109701056u, "user.tuser.Archive.2023 SYNC_CRC_ANNOT");
	mailbox_crcs(sent, 1, &crc, &crca);
	is_int(crc, 2486918162u, "user.tuser.Sent SYNC_CRC");
	is_int(crca, 2213691222u, "user.tuser.Sent SYNC_CRC_ANNOT");
	mailbox_crcs(NULL, 0, &crc, &crca);
	is_int(crc, 0, "empty mailbox SYNC_CRC");
	is_int(crca, 12345678u, "empty mailbox SYNC_CRC_ANNOT");

	return tap_done();
}
