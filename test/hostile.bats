#!/usr/bin/env bats
# Hostile input: malformed or malicious csync sent to our sync_server
# (over a pipe, pre-authenticated, and over TCP before authentication),
# and malformed replies sent by a fake csync server to sync-send and
# sync-plan.
#
# Every server case checks:
#   - the reply is the error the protocol defines (NO/BAD text);
#   - the process ends sanely (exit 0, or 74 when the input ended inside
#     a command), with no sanitizer report on stderr (the ASan + UBSan
#     build, build/asan/bin/sync_server, is used when it exists);
#   - its peak memory (VmHWM of the reaped process) stays under
#     HOSTILE_RSS_MB (200) -- measured on the plain build for the cases
#     that feed it hundreds of megabytes of input;
#   - the stream stays in sync: a NOOP sent after the bad command still
#     gets "OK Noop completed";
#   - nothing stored changed: "sync-store dump" is identical to the dump
#     taken before, "sync-store verify" reports no fault, no file appeared
#     in the store or the test dir outside the database, and nothing
#     appeared where an escaping name would have pointed (/tmp/evil...).
#
# The helpers and generators live in test/hostile/.

load hostile/common

@test "control: the valid template is applied and the checks see the change" {
	{ hello; mbox; } | srv
	[ "$(status_n 1)" = "OK success" ]
	[ "$(status_n 2)" = "OK success" ]
	sane
	insync
	run unchanged
	[ "$status" -ne 0 ]
	"$STORE" -C "$T/imapd.conf" dump | grep -q "^record user.alice.New 1 .* guid $G1 "
}

# ---------------------------------------------------------------------
# Literals

@test "literal of 99999999999 bytes: BAD, no allocation, stream in sync" {
	printf 'APPLY ANNOTATION %%(MBOXNAME user.alice ENTRY /comment USERID "" VALUE {99999999999+}\r\n' | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "literal of -1 bytes: BAD" {
	printf 'APPLY ANNOTATION %%(MBOXNAME user.alice ENTRY /comment USERID "" VALUE {-1}\r\n' | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "literal of 2^64 bytes (wraps to 0 if parsed carelessly): BAD" {
	printf 'APPLY ANNOTATION %%(MBOXNAME user.alice ENTRY /comment USERID "" VALUE {18446744073709551616+}\r\n)\r\n' | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "literal announced without CRLF after the brace: BAD" {
	printf 'APPLY ANNOTATION %%(MBOXNAME user.alice ENTRY /comment USERID "" VALUE {5+}hello)\r\n' | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "literal shorter than announced, then EOF: nothing applied, clean exit" {
	printf 'APPLY ANNOTATION %%(MBOXNAME user.alice ENTRY /comment USERID "" VALUE {100+}\r\nabc' | srv --eof
	sane 0 74
	unchanged
}

@test "literal longer than announced: the rest is junk in the line, BAD" {
	printf 'APPLY ANNOTATION %%(MBOXNAME user.alice ENTRY /comment USERID "" VALUE {3+}\r\nabcdef)\r\n' | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "file literal shorter than announced, then EOF: no body stored, no staging file left" {
	printf 'APPLY MESSAGE (%%{default %s 100}\r\nhello' "$G1" | srv --eof
	sane 0 74
	unchanged
}

@test "file literal of 2^32 bytes (over the 32-bit size): BAD" {
	printf 'APPLY MESSAGE (%%{default %s 4294967296}\r\nhello)\r\n' "$G1" | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "file literal with a negative size: BAD" {
	printf 'APPLY MESSAGE (%%{default %s -5}\r\nhello)\r\n' "$G1" | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "a command cut off by EOF without its line end is not applied" {
	printf 'APPLY UNMAILBOX user.alice.Sent' | srv --eof
	sane 0 74
	unchanged
}

@test "EOF in the middle of an APPLY MAILBOX: nothing applied" {
	{ hello; mbox | head -c 200; } | srv --eof
	sane 0 74
	"$STORE" -C "$T/imapd.conf" dump >"$T/d"
	! grep -q 'user.alice.New' "$T/d"
	run diff <(grep -v '^syncpipe-dump' "$D/base.dump") <(grep -v '^syncpipe-dump' "$T/d")
	[ "$status" -eq 0 ]
}

# ---------------------------------------------------------------------
# GUIDs.  A file literal whose header is refused must still have its
# bytes drained: they carry a command that must never run.

smuggle_body() {	# a body that is itself a destructive command
	printf 'APPLY UNMAILBOX user.alice.Sent\r\n'
}

@test "file literal with a 39-digit GUID: BAD, the body is drained, not executed" {
	b=$(smuggle_body)
	printf 'APPLY MESSAGE (%%{default %s %d}\r\n%s)\r\n' "${G1:0:39}" $((${#b} + 0)) "$b" | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "file literal with a 41-digit GUID: BAD, the body is drained, not executed" {
	b=$(smuggle_body)
	printf 'APPLY MESSAGE (%%{default %s0 %d}\r\n%s)\r\n' "$G1" "${#b}" "$b" | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "file literal with a non-hex GUID: BAD, the body is drained, not executed" {
	b=$(smuggle_body)
	printf 'APPLY MESSAGE (%%{default %s %d}\r\n%s)\r\n' "zzf4c61ddcc5e8a2dabede0f3b482cd9aea9434d" "${#b}" "$b" | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line"
}

@test "file literal of an unknown partition: NO, body drained, server alive" {
	b=$(smuggle_body)
	printf 'APPLY MESSAGE (%%{nosuch %s %d}\r\n%s)\r\n' "$(printf '%s' "$b" | sha1sum | cut -c1-40)" "${#b}" "$b" | srv
	[[ $(status_n 1) == NO* || $(status_n 1) == BAD* ]]
	sane
	insync
	unchanged
}

@test "file literal whose partition climbs out of the store: refused, nothing written" {
	printf 'APPLY MESSAGE (%%{../../../../../../tmp/evil-hostile %s 5}\r\nhello)\r\n' "$G1" | srv
	[[ $(status_n 1) == NO* || $(status_n 1) == BAD* ]]
	sane
	insync
	unchanged
}

@test "body that does not hash to its GUID: NO IMAP_PROTOCOL_ERROR, not stored" {
	printf 'APPLY MESSAGE (%%{default %s 5}\r\nHELLO)\r\n' "$G1" | srv
	refused "NO IMAP_PROTOCOL_ERROR Protocol error"
}

@test "RESERVE with 39-digit and non-hex GUIDs: NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	printf 'APPLY RESERVE %%(PARTITION default MBOXNAME (user.alice) GUID (%s))\r\n' "${G1:0:39}" | srv
	refused "NO IMAP_PROTOCOL_BAD_PARAMETERS"
	printf 'APPLY RESERVE %%(PARTITION default MBOXNAME (user.alice) GUID (%s))\r\n' "g${G1:1}" | srv
	refused "NO IMAP_PROTOCOL_BAD_PARAMETERS"
}

@test "null GUID: never reported present, and a live record with it is refused" {
	{
		printf 'APPLY RESERVE %%(PARTITION default MBOXNAME (user.alice) GUID (%s))\r\n' "$NULLG"
		mbox "RECORD=$(rec 1 $NULLG)"
	} | srv
	# Either refused, or reported MISSING: never "we have it".
	first=$(printf '%s\n' "$output" | sed -n 1p)
	[[ $first == "* MISSING ($NULLG)" || $first == NO* ]]
	[[ $(printf '%s\n' "$output" | grep -E '^(NO|BAD)' | tail -n 1) == NO* ]]
	sane
	insync
	unchanged
}

@test "record GUID of 41 digits: NO IMAP_PROTOCOL_ERROR" {
	{ hello; mbox "RECORD=$(rec 1 "${G1}0")"; } | srv
	[ "$(status_n 2)" = "NO IMAP_PROTOCOL_ERROR Protocol error" ]
	sane
	insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
}

# ---------------------------------------------------------------------
# Names

@test "mailbox name with a slash and .. components: NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	mbox 'MBOXNAME=user.alice/../../../../../../tmp/evil-hostile' | srv
	refused "NO IMAP_PROTOCOL_BAD_PARAMETERS"
}

@test "mailbox name .. and ../x: NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	{ mbox 'MBOXNAME=..'; mbox 'MBOXNAME=../evil-hostile'; mbox 'MBOXNAME=user..alice'; } | srv
	[ "$(status_n 1)" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
	[ "$(status_n 2)" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
	[ "$(status_n 3)" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
	sane; insync; unchanged
}

@test "mailbox name with a NUL byte (literal): refused" {
	printf 'APPLY MAILBOX %%(UNIQUEID hostile0001 MBOXNAME {15+}\r\nuser.alice.N\0ew SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION default ACL "" OPTIONS P RECORD ())\r\n' | srv
	[[ $(status_n 1) == "NO IMAP_PROTOCOL_BAD_PARAMETERS" || $(status_n 1) == "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line" ]]
	sane; insync; unchanged
}

@test "mailbox name with CR LF inside (literal): NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	# 19 bytes: both CR LFs are inside the literal.  (With {17+} the last
	# LF fell outside it: a line end inside the kvlist, BAD as in Cyrus.)
	printf 'APPLY MAILBOX %%(UNIQUEID hostile0001 MBOXNAME {19+}\r\nuser.alice.N\r\new\r\n SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION default ACL "" OPTIONS P RECORD ())\r\n' | srv
	refused "NO IMAP_PROTOCOL_BAD_PARAMETERS"
}

@test "mailbox name of 491 bytes (over 490): NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	name=user.alice.$(head -c 480 /dev/zero | tr '\0' a)
	[ "${#name}" -eq 491 ]
	mbox "MBOXNAME=$name" "RECORD=" | srv
	refused "NO IMAP_PROTOCOL_BAD_PARAMETERS"
}

@test "mailbox name of 490 bytes is still accepted (the bound is not too tight)" {
	name=user.alice.$(head -c 479 /dev/zero | tr '\0' a)
	[ "${#name}" -eq 490 ]
	mbox "MBOXNAME=$name" "RECORD=" | srv
	[ "$(status_n 1)" = "OK success" ]
	sane; insync
}

@test "partition unknown in APPLY MAILBOX: NO Unknown error" {
	{ hello; mbox 'PARTITION=nosuch'; } | srv
	[ "$(status_n 2)" = "NO Unknown error" ]
	sane; insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
}

@test "partition climbing out of the store in APPLY MAILBOX: refused, nothing written" {
	{ hello; mbox 'PARTITION=../../../../../../tmp/evil-hostile'; } | srv
	[[ $(status_n 2) == NO* ]]
	sane; insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
	[ ! -e /tmp/evil-hostile ]
}

@test "RENAME to a name with a slash: NO IMAP_PROTOCOL_BAD_PARAMETERS, old name kept" {
	printf 'APPLY RENAME %%(OLDMBOXNAME user.alice.Sent NEWMBOXNAME user.alice/../../evil-hostile PARTITION default)\r\n' | srv
	refused "NO IMAP_PROTOCOL_BAD_PARAMETERS"
}

@test "SIEVE script named ../../evil-hostile: refused, no file" {
	# A '/' or a leading '.' is refused whatever the suffix (a file
	# that is not a .script would otherwise be accepted and ignored).
	printf '%s\r\n' \
	    'APPLY SIEVE %(USERID alice FILENAME ../../evil-hostile LAST_UPDATE 1 CONTENT keep;)' \
	    'APPLY SIEVE %(USERID alice FILENAME ../../evil-hostile.script LAST_UPDATE 0 CONTENT x)' \
	    'APPLY SIEVE %(USERID alice FILENAME .evil-hostile.script LAST_UPDATE 0 CONTENT x)' \
	    'APPLY ACTIVATE_SIEVE %(USERID alice FILENAME ../evil-hostile.bc)' \
	    'APPLY UNSIEVE %(USERID alice FILENAME a/evil-hostile.script)' | srv
	for i in 1 2 3 4 5; do
		[ "$(status_n $i)" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
	done
	sane; insync; unchanged
}

@test "SEEN, SUB and UNUSER for a userid with .. and /: refused, alice untouched" {
	printf '%s\r\n' 'APPLY SEEN %(USERID ../alice UNIQUEID x LASTREAD 1 LASTUID 1 LASTCHANGE 1 SEENUIDS 1)' \
	    'APPLY SUB %(USERID a/b MBOXNAME user.alice)' 'APPLY UNUSER ../alice' 'APPLY UNUSER ""' | srv
	printf '%s\n' "$output"
	for i in 1 2 3; do [[ $(status_n $i) == NO* ]]; done
	# An empty userid is ignored with OK, as Cyrus 3.6.1 does
	# (protocol doc 3.3.7); unchanged below shows nothing was removed.
	[ "$(status_n 4)" = "OK success" ]
	sane; insync; unchanged
}

@test "UNMAILBOX of an empty or wildcard name: refused, nothing deleted" {
	printf '%s\r\n' 'APPLY UNMAILBOX ""' 'APPLY UNMAILBOX *' 'APPLY UNMAILBOX user.alice.%' 'APPLY UNMAILBOX NIL' | srv
	for i in 1 2 3 4; do [[ $(status_n $i) == NO* ]]; done
	sane; insync; unchanged
}

# ---------------------------------------------------------------------
# Numbers

@test "LAST_UID 99999999999999999999 (over 64 bits): NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	{ hello; mbox 'LAST_UID=99999999999999999999'; } | srv
	[ "$(status_n 2)" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
	sane; insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
}

@test "HIGHESTMODSEQ 18446744073709551616 (2^64): NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	mbox 'HIGHESTMODSEQ=18446744073709551616' | srv
	refused "NO IMAP_PROTOCOL_BAD_PARAMETERS"
}

@test "negative LAST_UID and HIGHESTMODSEQ: NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	{ mbox 'LAST_UID=-1'; mbox 'HIGHESTMODSEQ=-2'; mbox 'UIDVALIDITY=+7'; } | srv
	for i in 1 2 3; do [ "$(status_n $i)" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]; done
	sane; insync; unchanged
}

@test "record with a negative MODSEQ or a UID of 2^64: NO IMAP_PROTOCOL_ERROR" {
	{
		hello
		mbox "RECORD=%(UID 1 MODSEQ -2 LAST_UPDATED 1 FLAGS () INTERNALDATE 1 SIZE 5 GUID $G1)"
		mbox "RECORD=%(UID 18446744073709551616 MODSEQ 2 LAST_UPDATED 1 FLAGS () INTERNALDATE 1 SIZE 5 GUID $G1)"
	} | srv
	[ "$(status_n 2)" = "NO IMAP_PROTOCOL_ERROR Protocol error" ]
	[ "$(status_n 3)" = "NO IMAP_PROTOCOL_ERROR Protocol error" ]
	sane; insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
}

@test "EXPUNGE with a UID over 64 bits: NO, records untouched" {
	printf 'APPLY EXPUNGE %%(MBOXNAME user.alice UNIQUEID %s UID (1 99999999999999999999))\r\n' \
	    "$(sed -n 's/^mailbox user.alice uniqueid //p' "$D/base.dump")" | srv
	[[ $(status_n 1) == NO* ]]
	sane; insync; unchanged
}

@test "QUOTA with a negative limit: NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	printf 'APPLY QUOTA %%(ROOT user.alice LIMIT -5 STORAGE -5 MODSEQ 9)\r\n' | srv
	refused "NO IMAP_PROTOCOL_BAD_PARAMETERS"
}

# ---------------------------------------------------------------------
# Mailbox contents

@test "unknown MBOXTYPE letter: refused, nothing created" {
	{ hello; mbox 'MBOXTYPE=eQ'; mbox 'MBOXTYPE=e%'; } | srv
	[[ $(status_n 2) == NO* ]]
	[[ $(status_n 3) == NO* ]]
	sane; insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
}

@test "RECORD with UID > LAST_UID: NO, nothing created" {
	{ hello; mbox "LAST_UID=1" "RECORD=$(rec 2)"; } | srv
	[[ $(status_n 2) == NO* ]]
	sane; insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
}

@test "records not ascending, or a UID twice: NO, nothing created" {
	{
		hello
		mbox "LAST_UID=3" "HIGHESTMODSEQ=9" "RECORD=$(rec 3) $(rec 2)"
		mbox "LAST_UID=3" "HIGHESTMODSEQ=9" "RECORD=$(rec 2) $(rec 2)"
	} | srv
	[[ $(status_n 2) == NO* ]]
	[[ $(status_n 3) == NO* ]]
	sane; insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
}

@test "UID 0 record: NO" {
	{ hello; mbox "RECORD=$(rec 0)"; } | srv
	[[ $(status_n 2) == NO* ]]
	sane; insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
}

@test "a new live record whose body is missing: NO Unknown error, nothing created" {
	mbox | srv
	refused "NO Unknown error"
}

@test "new record on an existing mailbox whose body is missing: existing mailbox untouched" {
	uid=$(sed -n 's/^mailbox user.alice uniqueid //p' "$D/base.dump")
	v=$(sed -n 's/^mailbox user.alice uidvalidity //p' "$D/base.dump")
	mbox "UNIQUEID=$uid" "MBOXNAME=user.alice" "UIDVALIDITY=$v" \
	    "LAST_UID=4" "HIGHESTMODSEQ=99" "RECORD=$(rec 4 1111111111111111111111111111111111111111)" | srv
	[[ $(status_n 1) == NO* ]]
	sane; insync; unchanged
}

@test "keywords: 128 distinct in a mailbox are accepted" {
	python3 "$HDIR/gen.py" keywords 128 | srv
	[ "$(status_n 1)" = "OK success" ]
	sane; insync
}

@test "keywords: 129 distinct in a mailbox (at most 8 a record) are accepted" {
	# Cyrus refuses this (its per-mailbox user-flag table holds 128);
	# the store has no such table and only the per-record limit (next
	# test) applies.  A Cyrus master can never send it; the difference
	# is documented in sync_server(8).
	python3 "$HDIR/gen.py" keywords 129 | srv
	[ "$(status_n 1)" = "OK success" ]
	sane; insync
	[ "$("$STORE" -C "$T/imapd.conf" dump | grep -c '^record user.alice.Kw ')" -eq 17 ]
}

@test "keywords: 129 on one record: NO IMAP_PROTOCOL_ERROR" {
	kws=$(for i in $(seq 0 128); do printf '$k%d ' "$i"; done)
	{ hello; mbox "RECORD=$(rec 1 "$G1" "${kws% }")"; } | srv
	[ "$(status_n 2)" = "NO IMAP_PROTOCOL_ERROR Protocol error" ]
	sane; insync
	! "$STORE" -C "$T/imapd.conf" dump | grep -q user.alice.New
}

@test "lower-case keys are unknown keys: NO IMAP_PROTOCOL_BAD_PARAMETERS" {
	mbox | sed 's/UNIQUEID/uniqueid/; s/MBOXNAME/mboxname/' | srv
	refused "NO IMAP_PROTOCOL_BAD_PARAMETERS"
}

@test "a list where a kvlist is required, and a kvlist for a string: refused" {
	printf '%s\r\n' 'APPLY MAILBOX (a b c)' 'APPLY UNMAILBOX %(A b)' 'APPLY RESERVE user.alice' 'GET USER (alice)' | srv
	for i in 1 2 3 4; do [[ $(status_n $i) == NO* ]]; done
	sane; insync; unchanged
}

# ---------------------------------------------------------------------
# Size and shape of the input

@test "10,000-deep nesting: BAD, no stack overflow" {
	python3 "$HDIR/gen.py" deep 10000 | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse GET line"
}

# 2 million items are under DLIST_MAX_ITEMS (16 M), so the GET is
# answered (none of the names exists).  The bound: a parsed item costs an
# 80-byte node and a 32-byte string chunk, 2 M x 112 B = 224 MB, plus the
# input buffer and the names GET looks up; 400 MB leaves room for malloc
# and SQLite, and was about 320 MB when measured.
@test "a command word of 1 MB: BAD, stream in sync" {
	python3 "$HDIR/gen.py" bigword 1048576 | srv
	[[ $(status_n 1) == BAD* ]]
	[ "$(printf '%s\n' "$output" | grep -c '^BAD')" -eq 1 ]
	sane; insync; unchanged
}

@test "a quoted string of 200 KB (over maxquoted): BAD" {
	python3 "$HDIR/gen.py" quoted 204800 | srv
	refused "BAD IMAP_PROTOCOL_ERROR Failed to parse GET line"
}

@test "a quoted string broken by CRLF: BAD, the next line is a new command" {
	printf 'GET USER "ali\r\nNOOP\r\n' | srv
	[ "$(status_n 1)" = "BAD IMAP_PROTOCOL_ERROR Failed to parse GET line" ]
	[ "$(status_n 2)" = "OK Noop completed" ]
	sane; insync; unchanged
}

@test "1000 empty lines: one BAD Null command each" {
	python3 "$HDIR/gen.py" blank 1000 | srv
	[ "$(printf '%s\n' "$output" | grep -c '^BAD Null command$')" -eq 1000 ]
	sane; insync; unchanged
}

@test "64 KB of binary junk: only BAD replies, store untouched" {
	python3 "$HDIR/gen.py" junk 65536 7 | srv
	[ "$(printf '%s\n' "$output" | grep -E -c '^(OK success|\* )')" -eq 0 ]
	sane; insync; unchanged
}

@test "junk after a valid command: BAD, the command is not applied" {
	printf 'APPLY UNMAILBOX user.alice.Sent \001\377\376junk\r\nNOOP \377\r\n' | srv
	[ "$(status_n 1)" = "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line" ]
	[[ $(status_n 2) == BAD* ]]
	sane; insync; unchanged
}

@test "% followed by neither ( nor {: BAD" {
	printf 'APPLY MAILBOX %%x\r\nAPPLY MAILBOX %%\r\n' | srv
	[ "$(status_n 1)" = "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line" ]
	[ "$(status_n 2)" = "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line" ]
	sane; insync; unchanged
}

@test "unbalanced parentheses and a lone NUL byte: BAD" {
	# Every command line gets exactly one status line: a list left open
	# at a line end does not swallow the next line.
	printf 'APPLY SIEVE %%(USERID alice FILENAME ../../evil-hostile.script LAST_UPDATE 0 CONTENT x)\r\nGET MAILBOXES ((user.alice)\r\nGET MAILBOXES user.alice))\r\nGET USER \0\r\nAPPLY UNUSER ""\r\n' | srv
	[ "$(printf '%s\n' "$output" | grep -a -c -E '^(OK|NO|BAD|BYE)( |$)')" -eq 7 ]
	[ "$(status_n 1)" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
	for i in 2 3; do [[ $(status_n $i) == BAD* ]]; done
	# a NUL userid may be refused or be nobody, never somebody
	[[ $(status_n 4) == BAD* || $(status_n 4) == NO* || $(status_n 4) == "OK success" ]]
	[ "$(status_n 5)" = "OK success" ]
	[[ $output != *"* MAILBOX"* ]]
	sane; insync; unchanged
}

@test "missing argument, extra arguments, unknown sub-command" {
	printf 'GET\r\nNOOP extra\r\nAPPLY FROBNICATE user.alice\r\nGET FROBNICATE alice\r\n' | srv
	[ "$(status_n 1)" = "BAD Missing required argument to Get" ]
	[ "$(status_n 2)" = "BAD Unexpected extra arguments to Noop" ]
	[ "$(status_n 3)" = "NO IMAP_PROTOCOL_ERROR Protocol error" ]
	[ "$(status_n 4)" = "NO IMAP_PROTOCOL_ERROR Protocol error" ]
	sane; insync; unchanged
}

# ---------------------------------------------------------------------
# Limits that must not be too tight: a legitimate big mailbox.

# The bound: the parsed value is about 1.35 M nodes of 80 bytes and 2 M
# strings of 32, some 170 MB, plus the decoded records and SQLite's work;
# about 300 MB when measured, bound 400 MB.
@test "TCP: GET, APPLY, RESTORE before AUTHENTICATE: NO Please authenticate first" {
	tcp_start
	printf '%s\r\n' 'GET USER alice' 'APPLY UNMAILBOX user.alice.Sent' \
	    'RESTORE MAILBOX %(MBOXNAME user.alice)' 'APPLY UNUSER alice' NOOP | tcp
	for i in 1 2 3 4; do [ "$(status_n $i)" = "NO Please authenticate first" ]; done
	[ "$(status_n 5)" = "OK Noop completed" ]
	[[ $output != *"* MAILBOX"* ]]
	tcp_sane; unchanged
}

@test "TCP: a file literal before AUTHENTICATE is drained, never stored" {
	tcp_start
	{ printf 'APPLY MESSAGE (%%{default %s 5}\r\nhello)\r\n' "$G1"; printf 'NOOP\r\n'; } | tcp
	[ "$(status_n 1)" = "NO Please authenticate first" ]
	[ "$(status_n 2)" = "OK Noop completed" ]
	tcp_sane; unchanged
}

@test "TCP: a literal of 99999999999 bytes before AUTHENTICATE: BYE, connection closed" {
	# Too large to drain (over the 32-bit size of any literal), so the
	# stream cannot be brought back in step: the server says why and
	# closes; the NOOP behind it is never read.
	tcp_start
	printf 'APPLY ANNOTATION {99999999999+}\r\nNOOP\r\n' | tcp
	printf '%s\n' "$output"
	[ "$(status_n 1)" = "BYE literal too large" ]
	[ "$(printf '%s\n' "$output" | grep -a -c -E '^(OK|NO|BAD|BYE)( |$)')" -eq 1 ]
	[[ $output != *TIMEOUT* ]]
	tcp_sane; unchanged
}

@test "TCP: 1 MB of junk before AUTHENTICATE: refused or dropped, store untouched" {
	tcp_start
	{ python3 "$HDIR/gen.py" junk 1048576 3; printf 'NOOP\r\n'; } | tcp
	[[ $output != *"OK success"* ]]
	tcp_sane; unchanged
}

@test "TCP: a non-admin user gets NO Permission denied for everything" {
	tcp_start
	printf 'AUTHENTICATE PLAIN %s\r\n' "$(plain bob bobpass)" >"$T/in"
	printf '%s\r\n' 'APPLY UNMAILBOX user.alice.Sent' 'GET USER alice' 'APPLY UNUSER alice' >>"$T/in"
	tcp <"$T/in"
	[[ $(status_n 1) == OK* ]]
	for i in 2 3 4; do [ "$(status_n $i)" = "NO Permission denied" ]; done
	[[ $output != *"* MAILBOX"* ]]
	tcp_sane; unchanged
}

@test "TCP: a non-admin user cannot act as an admin through an authorization id" {
	tcp_start
	printf 'AUTHENTICATE PLAIN %s\r\nAPPLY UNMAILBOX user.alice.Sent\r\n' \
	    "$(plainz repluser bob bobpass)" | tcp
	[[ $(status_n 1) == NO* ]]
	[[ $(status_n 2) == NO* ]]
	tcp_sane; unchanged
}

@test "TCP: a wrong password is refused and the session stays unauthenticated" {
	tcp_start
	printf 'AUTHENTICATE PLAIN %s\r\nAPPLY UNMAILBOX user.alice.Sent\r\nNOOP\r\n' \
	    "$(plain repluser wrongpass)" | tcp
	[[ $(status_n 1) == NO* ]]
	[ "$(status_n 2)" = "NO Please authenticate first" ]
	[ "$(status_n 3)" = "OK Noop completed" ]
	tcp_sane; unchanged
}

@test "TCP: malformed AUTHENTICATE (bad base64, unknown mechanism, 1 MB response)" {
	tcp_start
	{
		printf 'AUTHENTICATE PLAIN !!!notbase64!!!\r\n'
		printf 'AUTHENTICATE X-NOSUCH\r\n'
		printf 'AUTHENTICATE PLAIN '; head -c 1048576 /dev/zero | tr '\0' A; printf '\r\n'
		printf 'APPLY UNMAILBOX user.alice.Sent\r\nNOOP\r\n'
	} | tcp
	for i in 1 2 3; do [[ $(status_n $i) == NO* || $(status_n $i) == BAD* ]]; done
	[[ $output == *"NO Please authenticate first"* ]]
	tcp_sane; unchanged
}

# ---------------------------------------------------------------------
# The client direction: a fake csync server (test/hostile/fakecsync.py)
# answers sync-send and sync-plan with malformed replies.  The tools must
# end, with a message and status 69, 75 or 76, and leave the master
# store and its claimed log alone.

client_setup() {
	M=$T/imapd.conf
	echo "sync_log: 1" >>"$M"
	PLAN=$ROOT/cmd/sync-plan/sync-plan
	SEND=$ROOT/cmd/sync-send/sync-send
	TAIL=$ROOT/cmd/synclog-tail/synclog-tail
	mkdir -p "$T/r"
	sp_conf "$T/r/imapd.conf"
	# A change logged, claimed and planned against a real (empty) replica.
	"$STORE" -C "$M" create user.alice.Drafts
	"$TAIL" -C "$M" -1 | "$PLAN" -C "$M" -e "$ROOT/cmd/sync_server/sync_server -C $T/r/imapd.conf" >"$T/plan"
	grep -q '^%commit ' "$T/plan"
	grep -q '^APPLY MESSAGE' "$T/plan"
	"$STORE" -C "$M" dump >"$T/master.before"
	[ -e "$T/conf/sync/log-run" ]
}

fake() { echo "python3 $HDIR/fakecsync.py $1"; }

# client_ok: exit status one of 69 75 76, a message on stderr, master
# and claimed log untouched.
client_ok() {
	echo "status $status; output: $output"
	[[ " 69 75 76 " == *" $status "* ]]
	[ -s "$T/cerr" ]
	"$STORE" -C "$M" dump | diff -u "$T/master.before" -
	[ -e "$T/conf/sync/log-run" ]
}

_send() {
	FAKE_LOG=$T/fake.log timeout 60 "$SEND" -C "$M" -t 10 -e "$(fake "$1")" <"$T/plan" 2>"$T/cerr"
}

_plan() {
	timeout 90 "$PLAN" -C "$M" -u alice -e "$(fake "$1")" 2>"$T/cerr"
}

send_fake() {
	run _send "$1"
	cat "$T/cerr"
	[ "$status" -ne 124 ] || { echo "sync-send hung"; return 1; }
}

plan_fake() {
	run _plan "$1"
	cat "$T/cerr"
	[ "$status" -ne 124 ] || { echo "sync-plan hung"; return 1; }
}

@test "client: a banner that never ends (endless * lines): sync-send gives up" {
	client_setup
	send_fake banner-endless
	client_ok
}

@test "client: a banner line that never ends (no line end, then silence): timeout" {
	client_setup
	send_fake banner-stall
	client_ok
}

@test "client: a reply that never ends (silence after a data line): sync-send -t gives up" {
	client_setup
	send_fake reply-stall
	client_ok
}

@test "client: endless data lines in a reply: sync-send gives up, memory bounded" {
	client_setup
	send_fake reply-endless
	client_ok
}

@test "client: a 1 GB literal announced, then the server closes: no hang, no 1 GB buffer" {
	client_setup
	run python3 "$HDIR/hrun.py" 60 "$T/cout" "$T/cerr" "$T/cstat" -- \
	    "$SEND" -C "$M" -t 10 -e "$(fake literal-1g)" <"$T/plan"
	read -r st <"$T/cstat"
	echo "$st"
	[[ $st =~ rc=([0-9]+)\ maxrss_kb=([0-9]+)\ timedout=0 ]]
	status=${BASH_REMATCH[1]}
	((BASH_REMATCH[2] < 200 * 1024))
	client_ok
}

@test "client: a MISSING list of non-GUIDs: a protocol error, nothing read outside the store" {
	client_setup
	# The plan was made against an empty replica, so it has no RESERVE:
	# put one before the upload, as a plan against a populated replica
	# has, so that the fake's answer to it is what sync-send reads.
	g=$(sed -n 's/^APPLY MESSAGE (%{default \([0-9a-f]\{40\}\) .*/\1/p' "$T/plan" | head -1)
	[ -n "$g" ]
	sed -i "0,/^APPLY MESSAGE/s//APPLY RESERVE %(PARTITION default MBOXNAME (user.alice) GUID ($g))\n&/" "$T/plan"
	grep -q '^APPLY RESERVE' "$T/plan"
	send_fake bad-missing
	client_ok
	[ "$status" -eq 76 ]
	# no local file outside the store was sent as a body
	[ -s "$T/fake.log" ]
	! grep -a -q 'root:' "$T/fake.log"
}

@test "client: BYE in the middle of the run: 75, claimed log kept" {
	client_setup
	send_fake bye-mid
	client_ok
	[ "$status" -eq 75 ]
}

@test "client: the replica goes away mid-run (EOF): 69 or 75, claimed log kept" {
	client_setup
	send_fake eof-mid
	client_ok
}

@test "client: BAD as a reply is a protocol error for sync-send: 76" {
	client_setup
	send_fake bad-reply
	client_ok
	[ "$status" -eq 76 ]
}

@test "client: sync-plan gets a * MAILBOX without its required keys: 76, nothing planned" {
	client_setup
	plan_fake mailbox-missing-keys
	client_ok
	[[ $output != *"APPLY MAILBOX"* ]]
}

@test "client: sync-plan gets a 1 GB literal announced then EOF: no hang" {
	client_setup
	plan_fake literal-1g
	client_ok
}

@test "client: sync-plan gets BYE mid-stream: 75" {
	client_setup
	plan_fake bye-first
	client_ok
	[ "$status" -eq 75 ]
}

# ---------------------------------------------------------------------
# Malformed plans to sync-send (a hand-edited or damaged plan file).
# Each bad line comes right after the header: sync-send must stop with
# 76 and a message naming the line, before sending anything, so the
# replica stays empty and the claimed log stays.

_send_plan() {
	timeout 60 "$SEND" -C "$M" -t 10 \
	    -e "$ROOT/cmd/sync_server/sync_server -C $T/r/imapd.conf" \
	    <"$T/bad" 2>"$T/cerr"
}

# bad_plan: run sync-send on the header then the bytes of printf "$@",
# against our sync_server on $T/r.
bad_plan() {
	[[ -s $T/plan ]] || client_setup
	{ echo '%syncpipe-plan 1'; printf "$@"; cat "$T/plan"; } >"$T/bad"
	run _send_plan
	cat "$T/cerr"
	client_ok
	[ "$status" -eq 76 ]
	[ -z "$("$STORE" -C "$T/r/imapd.conf" list)" ]
	run "$STORE" -C "$T/r/imapd.conf" verify
	[ "$status" -eq 0 ]
}

@test "plan: a verb behind NUL bytes: 76, nothing sent" {
	bad_plan '\0\0APPLY UNUSER bob\n'
	grep -q "bad plan line starting '??APPLY'" "$T/cerr"
}

@test "plan: an unknown verb: 76, nothing sent" {
	bad_plan 'DELETE MAILBOX user.alice\n'
	grep -q "bad plan line starting 'DELETE'" "$T/cerr"
}

@test "plan: a sub-command of other characters than A-Z 0-9 _: 76, nothing sent" {
	bad_plan 'APPLY UN/USER bob\n'
	grep -q "bad plan line 'APPLY UN/USER'" "$T/cerr"
}

@test "plan: a control line of 200 KB: 76, not the end of the plan" {
	bad_plan '%%commit %0204800d\n' 0
	grep -q "control line too long" "$T/cerr"
}

@test "plan: a body size that is negative or overflows 64 bits: 76, nothing sent" {
	bad_plan 'APPLY MESSAGE (%%{default %s -5})\n' "$(printf 'a%.0s' {1..40})"
	grep -q "bad APPLY MESSAGE line" "$T/cerr"
	bad_plan 'APPLY MESSAGE (%%{default %s 18446744073709551616})\n' "$(printf 'b%.0s' {1..40})"
	grep -q "bad APPLY MESSAGE line" "$T/cerr"
}

@test "plan: a body GUID of 41 digits, a partition of ../x: 76, nothing read" {
	bad_plan 'APPLY MESSAGE (%%{default %s 43})\n' "$(printf 'c%.0s' {1..41})"
	grep -q "bad APPLY MESSAGE line" "$T/cerr"
	bad_plan 'APPLY MESSAGE (%%{../x %s 43})\n' "$(printf 'd%.0s' {1..40})"
	grep -q "bad APPLY MESSAGE line" "$T/cerr"
}

@test "plan: a body source that does not parse or never closes: 76, nothing sent" {
	bad_plan 'APPLY MESSAGE (%%{default %s 43} %%(MBOXNAME "a b))\n' "$(printf 'e%.0s' {1..40})"
	grep -q "APPLY MESSAGE: bad source\|bad APPLY MESSAGE line" "$T/cerr"
	bad_plan 'APPLY MESSAGE (%%{default %s 43} %%(MBOXNAME (((x)\n' "$(printf 'f%.0s' {1..40})"
	grep -q "bad APPLY MESSAGE line" "$T/cerr"
}

@test "plan: a command value that does not parse: 76, nothing sent" {
	bad_plan 'APPLY MAILBOX %%(UNIQUEID u MBOXNAME user.alice.X LAST_UID {99999999999}\n'
	grep -q "plan: cannot parse APPLY MAILBOX" "$T/cerr"
}

@test "plan: %commit of a file that is not the claimed log, or no longer the one claimed, removes nothing" {
	client_setup
	echo precious >"$T/victim"
	echo 'APPEND user.alice' >"$T/conf/sync/log"
	ln -s "$T/victim" "$T/conf/sync/link-run"
	{
		echo '%syncpipe-plan 1'
		echo "%commit $T/victim"
		echo "%commit $T/conf/sync/log"
		echo "%commit $T/conf/sync/link-run"
		echo "%commit $T/conf/sync/../sync/log-run 1:2:3:4.5"
		echo '%end'
	} >"$T/bad"
	run _send_plan
	cat "$T/cerr"
	[ "$status" -eq 1 ]
	[ "$(cat "$T/victim")" = precious ]
	[ -L "$T/conf/sync/link-run" ]
	grep -qx 'APPEND user.alice' "$T/conf/sync/log"
	[ -e "$T/conf/sync/log-run" ]
	[ "$(grep -c 'not a claimed log file of a configured channel' "$T/cerr")" -eq 3 ]
	grep -q "log-run: is [0-9:.]*, not 1:2:3:4.5: not committing a file claimed later" "$T/cerr"
	[ "$(grep -c '^%kept ' <<<"$output")" -eq 4 ]
	! grep -q '^%committed' <<<"$output"
	# The plan's own %commit, with the claimed file's identity, removes it.
	{ echo '%syncpipe-plan 1'; grep '^%commit ' "$T/plan"; echo '%end'; } >"$T/bad"
	run _send_plan
	cat "$T/cerr"
	[ "$status" -eq 0 ]
	[ ! -e "$T/conf/sync/log-run" ]
	grep -q '^%committed ' <<<"$output"
}
