/*
 * synccrc: Cyrus 3.6's per-mailbox sync CRCs (protocol doc section 5).
 *
 * SYNC_CRC is the XOR over the non-expunged records of crc32 of
 * "uid modseq last_updated (flagcrc) internaldate guid"; SYNC_CRC_ANNOT
 * starts at 12345678 and XORs in one crc32 per per-message annotation
 * (real ones and the virtual thrid/savedate/createdmodseq).  Both are
 * XOR sums, so a store keeps them current by XORing a record's
 * contribution out and in.
 */
#ifndef SYNCPIPE_SYNCCRC_H
#define SYNCPIPE_SYNCCRC_H

#include <stdint.h>

struct store_record;

#define SYNCCRC_ANNOT_INIT	12345678u

/* crc32 (zlib's) of a NUL-terminated string. */
uint32_t	 synccrc_cstring(const char *);
/* Contribution of one record to SYNC_CRC (0 for an expunged record). */
uint32_t	 synccrc_record_basic(const struct store_record *);
/* Contribution of one record to SYNC_CRC_ANNOT (0 for an expunged record);
 * XOR it into a value started at SYNCCRC_ANNOT_INIT. */
uint32_t	 synccrc_record_annot(const struct store_record *);

#endif
