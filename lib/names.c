/*
 * names.c: checks on mailbox, user, partition and sieve names that come
 * from the wire or a log, and the userid <-> INBOX mapping.
 *
 * Anything a name could be used to reach (a path, a SQL key, a log line)
 * is protected here first, so the checks err on the strict side.
 */
#include <stdlib.h>
#include <string.h>

#include "names.h"

#define MBOXNAME_MAX	490
#define USERID_MAX	255
#define PARTITION_MAX	64
#define SIEVENAME_MAX	255

/* Cyrus's default deletedprefix. */
#define DELETED_PREFIX	"DELETED."
#define DELETED_LEN	(sizeof(DELETED_PREFIX) - 1)

/*
 * One component of an internal name (no '.').  A component made only of
 * '^' would read back as "." or ".." once '^' turns into a dot again.
 */
static int
mboxname_component_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len && s[i] == '^'; i++)
		;
	if (i == len && len <= 2)
		return 0;
	return 1;
}

/* See names.h.  Also refuses an empty "!domain" part. */
int
mboxname_valid(const char *name)
{
	const unsigned char *p;
	const char *comp, *bang;
	size_t len;

	if (name == NULL)
		return 0;
	len = strlen(name);
	if (len == 0 || len > MBOXNAME_MAX)
		return 0;
	for (p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p < 0x20 || *p >= 0x7f || *p == '/')
			return 0;
	/* The first '!' ends the domain; both sides need components. */
	bang = strchr(name, '!');
	comp = name;
	for (;;) {
		const char *dot = strchr(comp, '.');
		size_t clen;

		if (bang != NULL && bang >= comp && (dot == NULL || bang < dot))
			dot = bang;
		clen = dot ? (size_t)(dot - comp) : strlen(comp);

		if (!mboxname_component_valid(comp, clen))
			return 0;
		if (dot == NULL)
			break;
		comp = dot + 1;
	}
	return 1;
}

/* See names.h. */
int
userid_valid(const char *userid)
{
	const unsigned char *p;
	size_t len;

	if (userid == NULL)
		return 0;
	len = strlen(userid);
	if (len == 0 || len > USERID_MAX)
		return 0;
	if (strcmp(userid, ".") == 0 || strcmp(userid, "..") == 0)
		return 0;
	for (p = (const unsigned char *)userid; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '/')
			return 0;
	return 1;
}

/* See names.h. */
int
partition_name_valid(const char *name)
{
	size_t i;

	if (name == NULL)
		return 0;
	for (i = 0; name[i] != '\0'; i++) {
		char c = name[i];

		if (i >= PARTITION_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	return i > 0;
}

/* See names.h; "printable" includes the space. */
int
sievename_valid(const char *name)
{
	const unsigned char *p;
	size_t len;

	if (name == NULL)
		return 0;
	len = strlen(name);
	if (len == 0 || len > SIEVENAME_MAX || name[0] == '.')
		return 0;
	for (p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p < 0x20 || *p >= 0x7f || *p == '/')
			return 0;
	return 1;
}

/* The part after "domain!", and the domain's length (0 if none). */
static const char *
mboxname_body(const char *name, size_t *domlen)
{
	const char *bang = strchr(name, '!');

	if (bang == NULL) {
		*domlen = 0;
		return name;
	}
	*domlen = bang - name;
	return bang + 1;
}

/* See names.h.  Only the default deletedprefix "DELETED" is known. */
int
mboxname_isdeleted(const char *name)
{
	size_t domlen;

	if (!mboxname_valid(name))
		return 0;
	return strncmp(mboxname_body(name, &domlen), DELETED_PREFIX,
	    DELETED_LEN) == 0;
}

/*
 * See names.h.  NULL also for an invalid name or one whose owner would
 * not be a valid userid.
 */
char *
mboxname_to_userid(const char *name)
{
	const char *body, *local, *end;
	size_t domlen, loclen, len, i;
	char *uid;

	if (!mboxname_valid(name))
		return NULL;
	body = mboxname_body(name, &domlen);
	if (strncmp(body, DELETED_PREFIX, DELETED_LEN) == 0)
		body += DELETED_LEN;
	if (strncmp(body, "user.", 5) != 0)
		return NULL;
	local = body + 5;
	end = strchr(local, '.');
	loclen = end ? (size_t)(end - local) : strlen(local);
	len = loclen + (domlen ? domlen + 1 : 0) + 1;
	if ((uid = malloc(len)) == NULL)
		return NULL;
	for (i = 0; i < loclen; i++)
		uid[i] = local[i] == '^' ? '.' : local[i];
	if (domlen) {
		uid[i++] = '@';
		memcpy(uid + i, name, domlen);
		i += domlen;
	}
	uid[i] = '\0';
	if (!userid_valid(uid)) {
		free(uid);
		return NULL;
	}
	return uid;
}

/*
 * See names.h.  NULL for an invalid userid, and for one that could not
 * be mapped back (a '^' or '!' in it, an empty local or domain part, more
 * than one '@').
 */
char *
mboxname_user_inbox(const char *userid)
{
	const char *at;
	size_t loclen, domlen, len, i, o;
	char *name;

	if (!userid_valid(userid))
		return NULL;
	if (strpbrk(userid, "^!") != NULL)
		return NULL;
	if ((at = strchr(userid, '@')) != NULL) {
		if (strchr(at + 1, '@') != NULL)
			return NULL;
		loclen = at - userid;
		domlen = strlen(at + 1);
		if (loclen == 0 || domlen == 0)
			return NULL;
	} else {
		loclen = strlen(userid);
		domlen = 0;
	}
	len = (domlen ? domlen + 1 : 0) + 5 + loclen + 1;
	if ((name = malloc(len)) == NULL)
		return NULL;
	o = 0;
	if (domlen) {
		memcpy(name, at + 1, domlen);
		o = domlen;
		name[o++] = '!';
	}
	memcpy(name + o, "user.", 5);
	o += 5;
	for (i = 0; i < loclen; i++)
		name[o++] = userid[i] == '.' ? '^' : userid[i];
	name[o] = '\0';
	if (!mboxname_valid(name)) {
		free(name);
		return NULL;
	}
	return name;
}
