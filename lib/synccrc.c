/*
 * synccrc: the per-mailbox sync CRCs, computed exactly as Cyrus 3.6 does
 * so that both ends of a replication agree (protocol doc section 5).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "store.h"
#include "synccrc.h"

#define VANNOT_THRID		"/vendor/cmu/cyrus-imapd/thrid"
#define VANNOT_SAVEDATE		"/vendor/cmu/cyrus-imapd/savedate"
#define VANNOT_CREATEDMODSEQ	"/vendor/cmu/cyrus-imapd/createdmodseq"

/*
 * Numbers in decimal (or hex) at p, which has room for 21 bytes; returns
 * the end.  snprintf is most of the cost of a record's CRC otherwise.
 */
static char *
synccrc_putu(char *p, uint64_t v, unsigned base)
{
	static const char dig[] = "0123456789abcdef";
	char tmp[24];
	size_t n = 0;

	do {
		tmp[n++] = dig[v % base];
		v /= base;
	} while (v != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

static char *
synccrc_puti(char *p, int64_t v)
{
	if (v < 0) {
		*p++ = '-';
		return synccrc_putu(p, (uint64_t)0 - (uint64_t)v, 10);
	}
	return synccrc_putu(p, (uint64_t)v, 10);
}

/*
 * crc32 of a NUL-terminated string.
 */
uint32_t
synccrc_cstring(const char *s)
{
	return (uint32_t)crc32(0L, (const Bytef *)s, (uInt)strlen(s));
}

/* crc32 of len bytes of p, lower-cased (ASCII), any length. */
static uint32_t
synccrc_lower(const char *p, size_t len)
{
	unsigned char buf[256];
	uLong c = crc32(0L, Z_NULL, 0);
	size_t i, n;

	while (len > 0) {
		n = len < sizeof(buf) ? len : sizeof(buf);
		for (i = 0; i < n; i++)
			buf[i] = (unsigned char)tolower((unsigned char)p[i]);
		c = crc32(c, buf, (uInt)n);
		p += n;
		len -= n;
	}
	return (uint32_t)c;
}

static uint32_t
synccrc_keywords(const char *kw)
{
	uint32_t crc = 0;
	size_t n;

	if (kw == NULL)
		return 0;
	while (*kw != '\0') {
		while (*kw == ' ')
			kw++;
		n = strcspn(kw, " ");
		if (n > 0)
			crc ^= synccrc_lower(kw, n);
		kw += n;
	}
	return crc;
}

static uint32_t
synccrc_flags(const struct store_record *r)
{
	/* Per-record hot path: the five system flag names hash once. */
	static const struct {
		unsigned	 bit;
		const char	*name;
	} sys[] = {
		{ SF_DELETED, "\\deleted" },
		{ SF_ANSWERED, "\\answered" },
		{ SF_FLAGGED, "\\flagged" },
		{ SF_DRAFT, "\\draft" },
		{ SF_SEEN, "\\seen" },
	};
	static uint32_t syscrc[5];
	static int ready;
	uint32_t crc = 0;
	size_t i;

	if (!ready) {
		for (i = 0; i < 5; i++)
			syscrc[i] = synccrc_cstring(sys[i].name);
		ready = 1;
	}
	for (i = 0; i < 5; i++)
		if (r->sysflags & sys[i].bit)
			crc ^= syscrc[i];
	return crc ^ synccrc_keywords(r->keywords);
}

/*
 * Contribution of one record to SYNC_CRC; 0 for an expunged record.
 */
uint32_t
synccrc_record_basic(const struct store_record *r)
{
	/* "uid modseq last_updated (flagcrc) internaldate guid" */
	char buf[5 * 21 + 8 + 41], *p = buf;
	size_t i;

	if (r->sysflags & SF_EXPUNGED)
		return 0;
	p = synccrc_putu(p, r->uid, 10);
	*p++ = ' ';
	p = synccrc_putu(p, r->modseq, 10);
	*p++ = ' ';
	p = synccrc_puti(p, r->last_updated);
	*p++ = ' ';
	*p++ = '(';
	p = synccrc_putu(p, synccrc_flags(r), 10);
	*p++ = ')';
	*p++ = ' ';
	p = synccrc_puti(p, r->internaldate);
	*p++ = ' ';
	/* Cyrus hashes the lower-case form whatever case was sent. */
	for (i = 0; i < 40 && r->guid[i] != '\0'; i++)
		*p++ = (char)tolower((unsigned char)r->guid[i]);
	return (uint32_t)crc32(0L, (const Bytef *)buf, (uInt)(p - buf));
}

static uint32_t
synccrc_one_annot(uint32_t uid, const char *entry, const char *userid,
    const char *value, size_t valuelen)
{
	char head[32], *p;
	uLong c;

	if (valuelen == 0)
		return 0;
	p = synccrc_putu(head, uid, 10);
	*p++ = ' ';
	c = crc32(0L, (const Bytef *)head, (uInt)(p - head));
	c = crc32(c, (const Bytef *)entry, (uInt)strlen(entry));
	c = crc32(c, (const Bytef *)" ", 1);
	c = crc32(c, (const Bytef *)userid, (uInt)strlen(userid));
	c = crc32(c, (const Bytef *)" ", 1);
	/* Values can exceed uInt in theory; feed them in slices. */
	while (valuelen > 0) {
		size_t chunk = valuelen > (1u << 30) ? (1u << 30) : valuelen;

		c = crc32(c, (const Bytef *)value, (uInt)chunk);
		value += chunk;
		valuelen -= chunk;
	}
	return (uint32_t)c;
}

static int
synccrc_is_virtual(const char *entry)
{
	return strcmp(entry, VANNOT_THRID) == 0 ||
	    strcmp(entry, VANNOT_SAVEDATE) == 0 ||
	    strcmp(entry, VANNOT_CREATEDMODSEQ) == 0;
}

/*
 * Contribution of one record to SYNC_CRC_ANNOT (without the initial
 * value); 0 for an expunged record.  The virtual entries are taken from
 * the record's fields, never from its annotation list.
 */
uint32_t
synccrc_record_annot(const struct store_record *r)
{
	uint32_t crc = 0;
	char v[32];
	size_t i, n;

	if (r->sysflags & SF_EXPUNGED)
		return 0;
	for (i = 0; i < r->nannots; i++) {
		const struct store_annot *a = &r->annots[i];

		if (a->entry == NULL || synccrc_is_virtual(a->entry))
			continue;
		crc ^= synccrc_one_annot(r->uid, a->entry,
		    a->userid ? a->userid : "", a->value ? a->value : "",
		    a->value ? a->valuelen : 0);
	}
	if (r->cid != 0) {
		n = (size_t)(synccrc_putu(v, r->cid, 16) - v);
		crc ^= synccrc_one_annot(r->uid, VANNOT_THRID, "", v, n);
	}
	if (r->savedate != 0) {
		n = (size_t)(synccrc_puti(v, r->savedate) - v);
		crc ^= synccrc_one_annot(r->uid, VANNOT_SAVEDATE, "", v, n);
	}
	if (r->createdmodseq != 0) {
		n = (size_t)(synccrc_putu(v, r->createdmodseq, 10) - v);
		crc ^= synccrc_one_annot(r->uid, VANNOT_CREATEDMODSEQ, "", v,
		    n);
	}
	return crc;
}
