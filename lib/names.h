/*
 * names: Cyrus internal mailbox names, userids, partition and sieve
 * script names as they arrive from the wire, checked before use.
 *
 * Internal names use '.' as hierarchy separator, '^' for a literal dot,
 * modified UTF-7 components, an optional "domain!" prefix and the
 * "DELETED." prefix for delayed-delete copies (protocol doc 4.1).
 */
#ifndef SYNCPIPE_NAMES_H
#define SYNCPIPE_NAMES_H

#include <stddef.h>

/* 1 if name is an acceptable internal mailbox name: 1..490 bytes, no
 * control bytes (< 0x20, 0x7f), no 8-bit bytes, no '/', no empty
 * component, not starting or ending with '.'. */
int		 mboxname_valid(const char *name);
/* 1 if userid is acceptable: 1..255 bytes of printable 7-bit ASCII
 * without '/', SP or control bytes, not "." or "..". */
int		 userid_valid(const char *userid);
/* 1 for [A-Za-z0-9_-]{1,64}. */
int		 partition_name_valid(const char *name);
/* 1 for a sieve script name: 1..255 bytes, printable, no '/', not
 * starting with '.'. */
int		 sievename_valid(const char *name);

/* The userid owning an internal name ("user.john^doe.Sent" -> "john.doe",
 * "dom.org!user.x" -> "x@dom.org", "DELETED.user.x.A.5F00" -> "x"), or
 * NULL for a shared mailbox.  Returns malloc'd memory. */
char		*mboxname_to_userid(const char *name);
/* The INBOX name of userid ("john.doe" -> "user.john^doe",
 * "x@dom.org" -> "dom.org!user.x").  malloc'd. */
char		*mboxname_user_inbox(const char *userid);
/* 1 if name is a delayed-delete copy (DELETED. prefix after any domain). */
int		 mboxname_isdeleted(const char *name);

#endif
