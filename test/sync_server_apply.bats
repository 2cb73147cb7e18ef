#!/usr/bin/env bats
# sync_server's GET / APPLY / RESTORE handlers, driven over stdio (a pipe
# is pre-authenticated).  The base state is the client side of a real
# Cyrus 3.6.1 initial user sync (fixtures/server/full-user-sync.csync,
# from the transcript full-user-sync-new-user.txt); the replica we build
# from it must answer GET USER exactly as the real replica did
# (fixtures/server/get-user-tuser.expected, from user-sync-no-change.txt).

load helpers

FIX=$BATS_TEST_DIRNAME/fixtures/server

setup_file() {
	D=$(sp_tmpdir)
	export D
	echo "$D" >"$BATS_FILE_TMPDIR/dir"
	BIN=$(sp_sync_server_bin)
	export BIN
	mkdir -p "$D/base"
	mkconf "$D/base"
	# The replay: every reply must be a plain OK.
	{
		printf 'APPLY CAPABILITIES (SIEVE-MAILBOX)\r\n'
		cat "$FIX/full-user-sync.csync"
		printf 'EXIT\r\n'
	} | "$BIN" -C "$D/base/imapd.conf" >"$D/base/replay.out" 2>"$D/base/replay.err"
}

teardown_file() {
	[[ -n ${D:-} ]] || D=$(cat "$BATS_FILE_TMPDIR/dir" 2>/dev/null) || true
	[[ -n ${D:-} ]] && sp_rmtmp "$D"
}

# mkconf DIR: a config whose store lives in DIR.
mkconf() {
	mkdir -p "$1/conf" "$1/spool"
	printf 'configdirectory: %s/conf\npartition-default: %s/spool\n' \
	    "$1" "$1" >"$1/imapd.conf"
}

# A private copy of the replayed replica for one test, in $T.
setup() {
	# "printf ... | sv" must set $output in the test's own shell.
	shopt -s lastpipe
	T=$D/t$BATS_TEST_NUMBER
	mkdir -p "$T"
	cp -a "$D/base/conf" "$D/base/spool" "$T/"
	mkconf "$T"
}

# sv [ARGS]: run our server on $T with stdin (csync commands, CRLF) and
# the SIEVE-MAILBOX capability enabled first; $output is its reply with
# CR removed, minus the banner and the capability exchange.
sv() {
	{
		printf 'APPLY CAPABILITIES (SIEVE-MAILBOX)\r\n'
		cat
		printf 'EXIT\r\n'
	} | "$BIN" -C "$T/imapd.conf" "$@" 2>"$T/err" | tr -d '\r' |
	    sed '1,3d' >"$T/out"
	output=$(cat "$T/out")
}

# The one status line of a single command's reply.
status_of() {
	printf '%s\n' "$output" | grep -E '^(OK|NO|BAD)' | head -n 1
}

@test "replaying a real initial user sync: every command answered OK success" {
	# banner, ENABLED, OK for the capability, then one OK per command.
	ncmd=$(grep -a -c -E '^(GET|APPLY) ' "$FIX/full-user-sync.csync")
	[ "$ncmd" -ge 15 ]
	nok=$(tr -d '\r' <"$D/base/replay.out" | grep -c '^OK success$')
	[ "$nok" -eq $((ncmd + 1)) ]
	run grep -E '^(NO|BAD)' "$D/base/replay.out"
	[ "$status" -ne 0 ]
}

@test "GET USER after the replay is byte for byte the real replica's reply" {
	printf 'GET USER tuser\r\n' | sv
	head -c -1 "$T/out" >/dev/null
	tr -d '\r' <"$FIX/get-user-tuser.expected" >"$T/expected"
	printf 'OK success\nOK Finished\n' >>"$T/expected"
	diff -u "$T/expected" "$T/out"
}

@test "a second sync of the same state changes nothing (SINCE_* accepted)" {
	line=$(grep -a '^APPLY MAILBOX .*MBOXNAME user.tuser.Archive ' \
	    "$FIX/full-user-sync.csync" | tr -d '\r')
	[ -n "$line" ]
	again=${line% RECORD ()*}" SINCE_MODSEQ 1 SINCE_CRC 0 SINCE_CRC_ANNOT 12345678 RECORD ())"
	printf '%s\r\nGET USER tuser\r\n' "$again" | sv
	[ "$(status_of)" = "OK success" ]
	tr -d '\r' <"$FIX/get-user-tuser.expected" >"$T/expected"
	printf '%s\n' "$output" | sed -n '2,$p' | grep -v '^OK' >"$T/got"
	diff -u "$T/expected" "$T/got"
}

@test "APPLY MAILBOX with a stale SINCE_MODSEQ: NO IMAP_SYNC_CHANGED, nothing applied" {
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID f4soi6k2p8zpq3azh5dd1xtp MBOXNAME user.tuser.Archive SYNC_CRC 0 SYNC_CRC_ANNOT 12345678 LAST_UID 0 HIGHESTMODSEQ 9 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 1795460142 PARTITION default ACL "x	lrs	" OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 9 SINCE_MODSEQ 7 SINCE_CRC 0 SINCE_CRC_ANNOT 12345678 RECORD ())' \
	    'GET MAILBOXES (user.tuser.Archive)' | sv
	[ "$(status_of)" = "NO IMAP_SYNC_CHANGED Changed since last sync" ]
	[[ $output == *"HIGHESTMODSEQ 1 "* ]]
	[[ $output != *"HIGHESTMODSEQ 9"* ]]
	[[ $output == *'ACL "tuser	lrswipkxtecdan	"'* ]]
}

@test "APPLY MAILBOX whose SYNC_CRC does not match: NO IMAP_SYNC_CHECKSUM (changes kept, as Cyrus does)" {
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID d9eeg43nwz24lsyfyfwkgo6t MBOXNAME user.tuser.Sent SYNC_CRC 12345 SYNC_CRC_ANNOT 2213691222 LAST_UID 1 HIGHESTMODSEQ 5 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 1795460141 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 1795460142 PARTITION default ACL "tuser	lrswipkxtecdan	" OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 4 RECORD ())' \
	    'GET MAILBOXES (user.tuser.Sent)' | sv
	[ "$(status_of)" = "NO IMAP_SYNC_CHECKSUM Checksum Failure" ]
	[[ $output == *"SYNC_CRC 2486918162 SYNC_CRC_ANNOT 2213691222 LAST_UID 1 HIGHESTMODSEQ 5 "* ]]
}

@test "APPLY MAILBOX with a wrong SYNC_CRC_ANNOT: NO IMAP_SYNC_CHECKSUM" {
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID d9eeg43nwz24lsyfyfwkgo6t MBOXNAME user.tuser.Sent SYNC_CRC 2486918162 SYNC_CRC_ANNOT 77 LAST_UID 1 HIGHESTMODSEQ 4 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 1795460141 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 1795460142 PARTITION default ACL "tuser	lrswipkxtecdan	" OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 4 RECORD ())' | sv
	[ "$(status_of)" = "NO IMAP_SYNC_CHECKSUM Checksum Failure" ]
}

@test "a new record whose body was never uploaded is refused and nothing changes" {
	printf 'GET MAILBOXES (user.tuser.Sent)\r\n' | sv
	before=$output
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID d9eeg43nwz24lsyfyfwkgo6t MBOXNAME user.tuser.Sent SYNC_CRC 0 SYNC_CRC_ANNOT 0 LAST_UID 2 HIGHESTMODSEQ 6 RECENTUID 2 RECENTTIME 0 LAST_APPENDDATE 1795460141 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 1795460142 PARTITION default ACL "tuser	lrswipkxtecdan	" OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 4 RECORD (%(UID 2 MODSEQ 6 LAST_UPDATED 1795460141 FLAGS () INTERNALDATE 1795460141 SIZE 10 GUID 1111111111111111111111111111111111111111)))' \
	    'APPLY MAILBOX %(UNIQUEID newnewnewnewnew MBOXNAME user.tuser.New SYNC_CRC 0 SYNC_CRC_ANNOT 0 LAST_UID 1 HIGHESTMODSEQ 2 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 1795460142 PARTITION default ACL "" OPTIONS P RECORD (%(UID 1 MODSEQ 2 LAST_UPDATED 1795460141 FLAGS () INTERNALDATE 1795460141 SIZE 10 GUID 1111111111111111111111111111111111111111)))' \
	    'GET MAILBOXES (user.tuser.Sent user.tuser.New)' | sv
	[ "$(printf '%s\n' "$output" | sed -n 1p)" = "NO Unknown error" ]
	[ "$(printf '%s\n' "$output" | sed -n 2p)" = "NO Unknown error" ]
	after=$(printf '%s\n' "$output" | sed -n '3,$p')
	[ "$after" = "$before" ]
	[[ $after != *user.tuser.New* ]]
}

@test "an expunged new record without a body is accepted" {
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID d9eeg43nwz24lsyfyfwkgo6t MBOXNAME user.tuser.Sent SYNC_CRC 2486918162 SYNC_CRC_ANNOT 2213691222 LAST_UID 2 HIGHESTMODSEQ 6 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 1795460141 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 1795460142 PARTITION default ACL "tuser	lrswipkxtecdan	" OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 4 RECORD (%(UID 2 MODSEQ 6 LAST_UPDATED 1795460141 FLAGS (\Expunged) INTERNALDATE 1795460141 SIZE 10 GUID 1111111111111111111111111111111111111111)))' \
	    'GET FULLMAILBOX user.tuser.Sent' | sv
	[ "$(status_of)" = "OK success" ]
	[[ $output == *"%(UID 2 MODSEQ 6 LAST_UPDATED 1795460141 FLAGS (\\Expunged) INTERNALDATE 1795460141 SIZE 10 GUID 1111111111111111111111111111111111111111)"* ]]
	[[ $output == *"SYNC_CRC 2486918162 SYNC_CRC_ANNOT 2213691222 LAST_UID 2 HIGHESTMODSEQ 6 "* ]]
}

@test "GET FULLMAILBOX returns the records exactly as the master sent them" {
	printf 'GET FULLMAILBOX user.tuser\r\nGET FULLMAILBOX user.tuser.Archive.2023\r\n' | sv
	[ "$(printf '%s\n' "$output" | grep -c '^OK success$')" -eq 2 ]
	for m in 'user.tuser' 'user.tuser.Archive.2023'; do
		sent=$(grep -a "^APPLY MAILBOX %(UNIQUEID [a-z0-9]* MBOXNAME $m " \
		    "$FIX/full-user-sync.csync" | tr -d '\r' | sed 's/.* RECORD (/RECORD (/')
		[ -n "$sent" ]
		got=$(printf '%s\n' "$output" | grep "MBOXNAME $m " | sed 's/.* RECORD (/RECORD (/')
		[ "$got" = "$sent" ]
	done
}

@test "GET FETCH streams the stored body; unknown GUID is NONEXISTENT" {
	printf '%s\r\n' 'GET FETCH %(MBOXNAME user.tuser.Sent PARTITION default UNIQUEID d9eeg43nwz24lsyfyfwkgo6t GUID bc93c1b97bd122d73621adf24beed854b6a44d74 UID 1)' \
	    'GET FETCH %(MBOXNAME user.tuser.Sent PARTITION default UNIQUEID d9eeg43nwz24lsyfyfwkgo6t GUID 1111111111111111111111111111111111111111 UID 1)' \
	    'GET FETCH %(MBOXNAME user.tuser.Sent PARTITION default GUID bc93c1b97bd122d73621adf24beed854b6a44d74 UID 1)' | sv
	{
		printf 'APPLY CAPABILITIES (SIEVE-MAILBOX)\r\n'
		printf '%s\r\n' 'GET FETCH %(MBOXNAME user.tuser.Sent PARTITION default UNIQUEID d9eeg43nwz24lsyfyfwkgo6t GUID bc93c1b97bd122d73621adf24beed854b6a44d74 UID 1)'
	} | "$BIN" -C "$T/imapd.conf" 2>/dev/null >"$T/raw"
	python3 - "$T/raw" <<-'EOF'
	import hashlib, re, sys
	d = open(sys.argv[1], "rb").read()
	m = re.search(rb"\* MESSAGE %\{default ([0-9a-f]{40}) (\d+)\}\r\n", d)
	assert m, d[:200]
	body = d[m.end():m.end() + int(m.group(2))]
	assert int(m.group(2)) == 950
	assert hashlib.sha1(body).hexdigest() == m.group(1).decode()
	assert d[m.end() + 950:].startswith(b"\r\nOK success\r\n")
	EOF
	[ "$(printf '%s\n' "$output" | grep -E '^(OK|NO)' | sed -n 2p)" = "NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox" ]
	[ "$(printf '%s\n' "$output" | grep -E '^(OK|NO)' | sed -n 3p)" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
}

@test "APPLY RESERVE lists only the GUIDs we do not have" {
	printf '%s\r\n' 'APPLY RESERVE %(PARTITION default MBOXNAME (user.tuser) GUID (bc93c1b97bd122d73621adf24beed854b6a44d74 1111111111111111111111111111111111111111))' \
	    'APPLY RESERVE %(PARTITION default MBOXNAME (user.tuser) GUID (bc93c1b97bd122d73621adf24beed854b6a44d74))' \
	    'APPLY RESERVE %(PARTITION default MBOXNAME (user.tuser) GUID (xyz))' \
	    'APPLY RESERVE %(PARTITION nosuch MBOXNAME (user.tuser) GUID (bc93c1b97bd122d73621adf24beed854b6a44d74))' | sv
	[ "$(printf '%s\n' "$output" | sed -n 1p)" = "* MISSING (1111111111111111111111111111111111111111)" ]
	[ "$(printf '%s\n' "$output" | sed -n 2,3p | tr '\n' '|')" = "OK success|OK success|" ]
	[ "$(printf '%s\n' "$output" | sed -n 4p)" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
	[ "$(printf '%s\n' "$output" | sed -n 5p)" = "NO Unknown error" ]
}

@test "APPLY MESSAGE with a body that does not hash to its GUID: NO, body not stored" {
	printf 'APPLY MESSAGE (%%{default 2222222222222222222222222222222222222222 5}\r\nhello)\r\n' >"$T/in"
	printf 'APPLY MESSAGE (%%{default aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d 5}\r\nhello)\r\n' >>"$T/in"
	printf '%s\r\n' 'APPLY RESERVE %(PARTITION default MBOXNAME (user.tuser) GUID (2222222222222222222222222222222222222222 aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d))' >>"$T/in"
	# a body we already hold may come again
	printf 'APPLY MESSAGE (%%{default aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d 5}\r\nhello)\r\n' >>"$T/in"
	sv <"$T/in"
	[ "$(printf '%s\n' "$output" | sed -n 1p)" = "NO IMAP_PROTOCOL_ERROR Protocol error" ]
	[ "$(printf '%s\n' "$output" | sed -n 2p)" = "OK success" ]
	[ "$(printf '%s\n' "$output" | sed -n 3p)" = "* MISSING (2222222222222222222222222222222222222222)" ]
	[ "$(printf '%s\n' "$output" | sed -n 4,5p | tr '\n' '|')" = "OK success|OK success|" ]
	run grep -r -l -a '^hello$' "$T/spool"
	[ "${#lines[@]}" -le 1 ]
}

@test "APPLY UNMAILBOX: missing mailbox is NONEXISTENT, existing one is gone" {
	printf 'APPLY UNMAILBOX user.tuser.Nope\r\nAPPLY LOCAL_UNMAILBOX user.tuser.Drafts\r\nGET MAILBOXES (user.tuser.Drafts user.tuser.Sent)\r\n' | sv
	[ "$(printf '%s\n' "$output" | sed -n 1p)" = "NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox" ]
	[ "$(printf '%s\n' "$output" | sed -n 2p)" = "OK success" ]
	[[ $output != *"MBOXNAME user.tuser.Drafts"* ]]
	[[ $output == *"MBOXNAME user.tuser.Sent"* ]]
	# the name can be used again, by a new mailbox
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID drafts2drafts2 MBOXNAME user.tuser.Drafts SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 3 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 7 PARTITION default ACL "" OPTIONS P RECORD ())' \
	    'GET MAILBOXES (user.tuser.Drafts)' | sv
	[ "$(status_of)" = "OK success" ]
	[[ $output == *"UNIQUEID drafts2drafts2 MBOXNAME user.tuser.Drafts "* ]]
}

@test "bad mailbox names are refused and nothing appears outside the store" {
	touch "$T/marker"
	sleep 1
	{
		printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID abcabcabc MBOXNAME user.a/../../etc SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION default ACL "" OPTIONS P RECORD ())'
		printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID abcabcabd MBOXNAME .. SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION default ACL "" OPTIONS P RECORD ())'
		printf 'APPLY MAILBOX %%(UNIQUEID abcabcabe MBOXNAME {8+}\r\nuser.a\001b SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION default ACL "" OPTIONS P RECORD ())\r\n'
		printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID abcabcabf MBOXNAME user.tuser.X SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION ../../etc ACL "" OPTIONS P RECORD ())'
		printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID abcabcabg MBOXNAME user.tuser.Y SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION other ACL "" OPTIONS P RECORD ())'
		printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID a/b MBOXNAME user.tuser.Z SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION default ACL "" OPTIONS P RECORD ())'
		printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID abcabcabh MBOXNAME user.tuser.W MBOXTYPE eq SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION default ACL "" OPTIONS P RECORD ())'
		printf '%s\r\n' 'APPLY RENAME %(OLDMBOXNAME user.tuser.Sent NEWMBOXNAME ../x PARTITION default)'
		printf '%s\r\n' 'APPLY SUB %(USERID ../.. MBOXNAME user.tuser)'
		printf '%s\r\n' 'GET USER ../tuser'
		printf '%s\r\n' 'GET USER tuser'
	} | sv
	statuses=$(printf '%s\n' "$output" | grep -E '^(OK|NO|BAD)' | head -n 10 | tr '\n' '|')
	[ "$statuses" = "NO IMAP_PROTOCOL_BAD_PARAMETERS|NO IMAP_PROTOCOL_BAD_PARAMETERS|NO IMAP_PROTOCOL_BAD_PARAMETERS|NO IMAP_PROTOCOL_BAD_PARAMETERS|NO Unknown error|NO IMAP_PROTOCOL_BAD_PARAMETERS|NO IMAP_PROTOCOL_BAD_PARAMETERS|NO IMAP_PROTOCOL_BAD_PARAMETERS|NO IMAP_PROTOCOL_BAD_PARAMETERS|NO IMAP_PROTOCOL_BAD_PARAMETERS|" ]
	[ "$(printf '%s\n' "$output" | grep -c '^\* MAILBOX')" -eq 6 ]
	# only the store's database and our own capture files changed
	run find "$D" -newer "$T/marker" -not -path "$T/conf/*" \
	    -not -path "$T/conf" -not -path "$T" -not -name out -not -name err
	[ "$output" = "" ]
	[ ! -e "$T/etc" ] && [ ! -e "$D/etc" ] && [ ! -e "$T/x" ]
}

@test "APPLY RENAME keeps the uniqueid; a missing old name is NONEXISTENT" {
	printf '%s\r\n' 'APPLY RENAME %(OLDMBOXNAME user.tuser.Archive.2023 NEWMBOXNAME user.tuser.Archive.Y2023 PARTITION default UIDVALIDITY 1795460142)' \
	    'APPLY RENAME %(OLDMBOXNAME user.tuser.Nope NEWMBOXNAME user.tuser.Nope2 PARTITION default)' \
	    'APPLY RENAME %(OLDMBOXNAME user.tuser.Sent NEWMBOXNAME DELETED.user.tuser.Sent.6B048C6F PARTITION default)' \
	    'GET MAILBOXES (user.tuser.Archive.2023 user.tuser.Archive.Y2023 DELETED.user.tuser.Sent.6B048C6F)' | sv
	[ "$(printf '%s\n' "$output" | sed -n 1,3p | tr '\n' '|')" = "OK success|NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox|OK success|" ]
	[[ $output == *"%(UNIQUEID 865se9qkuspiruoulnsq15se MBOXNAME user.tuser.Archive.Y2023 SYNC_CRC 1452350050 "*"QUOTAROOT user.tuser CREATEDMODSEQ 1 FOLDERMODSEQ 3)"* ]]
	# a delayed-delete copy has no quota root; its folder modseq moves up
	[[ $output == *'MBOXNAME DELETED.user.tuser.Sent.6B048C6F '*'OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 4 ANNOTATIONS'* ]]
	[[ $output != *"MBOXNAME user.tuser.Archive.2023 "* ]]
	# GET USER lists the delayed-delete copies after the user's tree
	printf 'GET USER tuser\r\n' | sv
	last=$(printf '%s\n' "$output" | grep '^\* MAILBOX' | tail -n 1)
	[[ $last == *"MBOXNAME DELETED.user.tuser.Sent.6B048C6F "* ]]
	[ "$(printf '%s\n' "$output" | grep -c '^\* MAILBOX')" -eq 6 ]
}

@test "APPLY EXPUNGE marks records expunged silently" {
	printf '%s\r\n' 'APPLY EXPUNGE %(MBOXNAME user.tuser.Sent UNIQUEID d9eeg43nwz24lsyfyfwkgo6t UID (1 99))' \
	    'APPLY EXPUNGE %(MBOXNAME user.tuser.Sent UNIQUEID wrong UID (1))' \
	    'GET FULLMAILBOX user.tuser.Sent' | sv
	[ "$(printf '%s\n' "$output" | sed -n 1,2p | tr '\n' '|')" = "OK success|NO IMAP_MAILBOX_MOVED Mailbox exists with another name or uniqueid|" ]
	[[ $output == *"SYNC_CRC 0 SYNC_CRC_ANNOT 12345678 LAST_UID 1 HIGHESTMODSEQ 4 "* ]]
	[[ $output == *"%(UID 1 MODSEQ 3 LAST_UPDATED 1795460141 FLAGS (\\Expunged \\Seen) "* ]]
}

@test "QUOTA, SEEN, SUB/UNSUB and META round trip" {
	printf '%s\r\n' 'APPLY QUOTA %(ROOT user.tuser LIMIT 50000 STORAGE 50000 MESSAGE 1000 MODSEQ 21)' \
	    'APPLY SEEN %(USERID tuser UNIQUEID e15be410ol7qp7cgzr6qutq1 LASTREAD 1795460182 LASTUID 20 LASTCHANGE 1795460161 SEENUIDS 1:5,7)' \
	    'APPLY SEEN %(USERID tuser UNIQUEID e15be410ol7qp7cgzr6qutq1 LASTREAD 1795460182 LASTUID 20 LASTCHANGE 1795460161)' \
	    'APPLY UNSUB %(USERID tuser MBOXNAME user.tuser.Sent)' \
	    'APPLY SUB %(USERID tuser MBOXNAME user.other.shared)' \
	    'GET META tuser' \
	    'GET QUOTA user.tuser' | sv
	[ "$(printf '%s\n' "$output" | sed -n 1,5p | tr '\n' '|')" = "OK success|OK success|NO IMAP_PROTOCOL_BAD_PARAMETERS|OK success|OK success|" ]
	[ "$(printf '%s\n' "$output" | sed -n 6,8p | tr '\n' '|')" = "* SEEN %(UNIQUEID e15be410ol7qp7cgzr6qutq1 LASTREAD 1795460182 LASTUID 20 LASTCHANGE 1795460161 SEENUIDS 1:5,7)|* LSUB (user.other.shared user.tuser user.tuser.Archive.2023)|OK success|" ]
	[ "$(printf '%s\n' "$output" | sed -n 9p)" = "* QUOTA %(ROOT user.tuser LIMIT 50000 STORAGE 50000 MESSAGE 1000 MODSEQ 21)" ]
	printf 'APPLY UNQUOTA user.tuser\r\nGET USER tuser\r\n' | sv
	[ "$(status_of)" = "OK success" ]
	[[ $output != *QUOTA* ]]
}

@test "server and mailbox annotations: APPLY ANNOTATION / UNANNOTATION / GET ANNOTATION" {
	printf 'APPLY ANNOTATION %%(MBOXNAME "" ENTRY /motd USERID "" VALUE {12+}\r\nhello\r\nworld)\r\n' >"$T/in"
	printf '%s\r\n' 'APPLY ANNOTATION %(MBOXNAME user.tuser.Archive ENTRY /comment USERID "" VALUE "archive folder")' \
	    'GET ANNOTATION ""' 'GET ANNOTATION user.tuser.Archive' \
	    'APPLY UNANNOTATION %(MBOXNAME "" ENTRY /motd USERID "")' \
	    'APPLY ANNOTATION %(MBOXNAME user.tuser.Nope ENTRY /comment USERID "" VALUE x)' \
	    'GET ANNOTATION ""' >>"$T/in"
	sv <"$T/in"
	expected=$(printf '%s\n' 'OK success' 'OK success' '* ANNOTATION %(MBOXNAME "" ENTRY /motd USERID "" VALUE {12}' 'hello' 'world)' 'OK success' \
	    '* ANNOTATION %(MBOXNAME user.tuser.Archive ENTRY /comment USERID "" VALUE "archive folder")' 'OK success' \
	    'OK success' 'NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox' 'OK success' 'OK Finished')
	[ "$output" = "$expected" ]
}

@test "legacy sieve: SIEVE, ACTIVATE_SIEVE, GET META listing, FETCH_SIEVE, UNSIEVE" {
	printf 'APPLY SIEVE %%(USERID tuser FILENAME vac.script LAST_UPDATE 1676280000 CONTENT {6+}\r\nkeep;\n)\r\n' >"$T/in"
	printf '%s\r\n' 'APPLY ACTIVATE_SIEVE %(USERID tuser FILENAME vac.bc)' \
	    'APPLY ACTIVATE_SIEVE %(USERID tuser FILENAME nope.bc)' \
	    'APPLY SIEVE %(USERID tuser FILENAME ../x.script LAST_UPDATE 1 CONTENT x)' \
	    'GET META tuser' \
	    'GET FETCH_SIEVE %(USERID tuser FILENAME vac.script)' \
	    'APPLY UNACTIVATE_SIEVE %(USERID tuser)' \
	    'APPLY UNSIEVE %(USERID tuser FILENAME vac.script)' \
	    'GET META tuser' >>"$T/in"
	# legacy mode: no APPLY CAPABILITIES
	{ cat "$T/in"; printf 'EXIT\r\n'; } | "$BIN" -C "$T/imapd.conf" 2>/dev/null | tr -d '\r' | sed 1d >"$T/out"
	run cat "$T/out"
	[ "${lines[0]}" = "OK success" ]
	[ "${lines[1]}" = "OK success" ]
	[ "${lines[2]}" = "NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox" ]
	[ "${lines[3]}" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
	[ "${lines[4]}" = "* LSUB (user.tuser user.tuser.Archive.2023 user.tuser.Sent)" ]
	[ "${lines[5]}" = "* SIEVE %(FILENAME vac.script LAST_UPDATE 1676280000 GUID $(printf 'keep;\n' | sha1sum | cut -c1-40) ISACTIVE 0)" ]
	[ "${lines[6]}" = "* SIEVE %(FILENAME vac.bc LAST_UPDATE 0 GUID 0000000000000000000000000000000000000000 ISACTIVE 1)" ]
	[ "${lines[7]}" = "OK success" ]
	[ "${lines[8]}" = "* SIEVE %(USERID tuser FILENAME vac.script CONTENT {6}" ]
	[ "${lines[9]}" = "keep;" ]
	[ "${lines[11]}" = "OK success" ]
	[ "${lines[12]}" = "OK success" ]
	[ "${lines[13]}" = "OK success" ]
	[ "${lines[14]}" = "* LSUB (user.tuser user.tuser.Archive.2023 user.tuser.Sent)" ]
	[ "${lines[15]}" = "OK success" ]
}

@test "intermediates are listed with zeros; a #sieve mailbox only in SIEVE-MAILBOX mode" {
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID interinterinter MBOXNAME user.tuser.Projects MBOXTYPE ei HIGHESTMODSEQ 7 CREATEDMODSEQ 5 FOLDERMODSEQ 7)' \
	    'GET MAILBOXES (user.tuser.Projects)' | sv
	[ "$(status_of)" = "OK success" ]
	[ "$(printf '%s\n' "$output" | sed -n 2p)" = "* MAILBOX %(UNIQUEID interinterinter MBOXNAME user.tuser.Projects MBOXTYPE ei SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 0 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 0 PARTITION NIL ACL NIL OPTIONS \"\" CREATEDMODSEQ 5 FOLDERMODSEQ 7)" ]
	{ printf 'GET USER tuser\r\nEXIT\r\n'; } | "$BIN" -C "$T/imapd.conf" 2>/dev/null | tr -d '\r' >"$T/legacy"
	! grep -q 'MBOXNAME user.tuser.#sieve' "$T/legacy"
	grep -q 'MBOXNAME user.tuser.Projects MBOXTYPE ei' "$T/legacy"
	# a sieve mailbox cannot be applied in legacy mode
	printf '%s\r\nEXIT\r\n' 'APPLY MAILBOX %(UNIQUEID sievesieve MBOXNAME user.x.#sieve MBOXTYPE f SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION default ACL "" OPTIONS P RECORD ())' |
	    "$BIN" -C "$T/imapd.conf" 2>/dev/null | tr -d '\r' | sed -n 2p >"$T/s"
	[ "$(cat "$T/s")" = "NO IMAP_PROTOCOL_BAD_PARAMETERS" ]
}

@test "uniqueid conflicts: MOVED unless the replica mailbox is empty" {
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID otherotherother MBOXNAME user.tuser.Sent SYNC_CRC 0 LAST_UID 1 HIGHESTMODSEQ 9 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1795460142 PARTITION default ACL "" OPTIONS P RECORD ())' \
	    'APPLY MAILBOX %(UNIQUEID d9eeg43nwz24lsyfyfwkgo6t MBOXNAME user.tuser.Sent2 SYNC_CRC 0 LAST_UID 1 HIGHESTMODSEQ 9 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1795460142 PARTITION default ACL "" OPTIONS P RECORD ())' \
	    'APPLY MAILBOX %(UNIQUEID otherotherother MBOXNAME user.tuser.Archive SYNC_CRC 0 LAST_UID 0 HIGHESTMODSEQ 9 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1795460142 PARTITION default ACL "" OPTIONS P RECORD ())' \
	    'GET MAILBOXES (user.tuser.Archive)' | sv
	[ "$(printf '%s\n' "$output" | sed -n 1,3p | tr '\n' '|')" = "NO IMAP_MAILBOX_MOVED Mailbox exists with another name or uniqueid|NO IMAP_MAILBOX_MOVED Mailbox exists with another name or uniqueid|OK success|" ]
	[[ $output == *"UNIQUEID otherotherother MBOXNAME user.tuser.Archive "* ]]
}

@test "malformed RECORD is a protocol error; missing keys are bad parameters; unknown sub-commands too" {
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID abcabc MBOXNAME user.tuser.Q SYNC_CRC 0 LAST_UID 1 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1 PARTITION default ACL "" OPTIONS P RECORD (%(UID 1 MODSEQ 1)))' \
	    'APPLY MAILBOX %(UNIQUEID abcabc MBOXNAME user.tuser.Q HIGHESTMODSEQ 1)' \
	    'APPLY FROB %()' 'GET FROB x' 'APPLY UNUSER ""' \
	    'GET MAILBOXES (user.tuser.Q)' | sv
	[ "$output" = "$(printf '%s\n' 'NO IMAP_PROTOCOL_ERROR Protocol error' 'NO IMAP_PROTOCOL_BAD_PARAMETERS' 'NO IMAP_PROTOCOL_ERROR Protocol error' 'NO IMAP_PROTOCOL_ERROR Protocol error' 'OK success' 'OK success' 'OK Finished')" ]
}

@test "APPLY UNUSER removes everything of the user" {
	printf 'APPLY UNUSER tuser\r\nGET USER tuser\r\nGET META tuser\r\n' | sv
	[ "$output" = "$(printf '%s\n' 'OK success' 'OK success' 'OK success' 'OK Finished')" ]
}

@test "APPLY CAPABILITIES answers ENABLED (); FORCE allows a replica ahead" {
	{ printf 'APPLY CAPABILITIES (FOO)\r\nAPPLY FORCE %%()\r\n'
	  printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID d9eeg43nwz24lsyfyfwkgo6t MBOXNAME user.tuser.Sent SYNC_CRC 0 LAST_UID 1 HIGHESTMODSEQ 2 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1795460142 PARTITION default ACL "" OPTIONS P RECORD ())'
	  printf 'EXIT\r\n'; } | "$BIN" -C "$T/imapd.conf" 2>/dev/null | tr -d '\r' | sed 1d >"$T/out"
	[ "$(cat "$T/out")" = "$(printf '%s\n' '* ENABLED ()' 'OK success' 'OK success' 'OK success' 'OK Finished')" ]
	printf '%s\r\n' 'APPLY MAILBOX %(UNIQUEID d9eeg43nwz24lsyfyfwkgo6t MBOXNAME user.tuser.Sent SYNC_CRC 0 LAST_UID 1 HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1795460142 PARTITION default ACL "" OPTIONS P RECORD ())' | sv
	[ "$(status_of)" = "NO IMAP_SYNC_CHECKSUM Checksum Failure" ]
}

@test "RESTORE MAILBOX appends records under new UIDs" {
	printf '%s\r\n' 'RESTORE MAILBOX %(MBOXNAME user.tuser.Sent RECORD (%(UID 1 MODSEQ 2 LAST_UPDATED 1795460141 FLAGS (\Seen) INTERNALDATE 1700000037 SIZE 837 GUID 19965c19491fc33c56f91cbeb1e20acf12d82d19)))' \
	    'RESTORE MAILBOX %(MBOXNAME user.tuser.Sent RECORD (%(UID 1 MODSEQ 2 LAST_UPDATED 1 FLAGS () INTERNALDATE 1 SIZE 1 GUID 1111111111111111111111111111111111111111)))' \
	    'GET FULLMAILBOX user.tuser.Sent' | sv
	[ "$(printf '%s\n' "$output" | sed -n 1,2p | tr '\n' '|')" = "OK success|NO Unknown error|" ]
	[[ $output == *"LAST_UID 2 "* ]]
	[[ $output == *"%(UID 2 MODSEQ "*"GUID 19965c19491fc33c56f91cbeb1e20acf12d82d19)"* ]]
}

@test "APPLY RENAME to another partition takes the bodies along" {
	mkdir -p "$T/spool2"
	printf 'partition-other: %s/spool2\n' "$T" >>"$T/imapd.conf"
	printf '%s\r\n' 'APPLY RENAME %(OLDMBOXNAME user.tuser.Sent NEWMBOXNAME user.tuser.Sent PARTITION other)' \
	    'APPLY RESERVE %(PARTITION other MBOXNAME (user.tuser.Sent) GUID (bc93c1b97bd122d73621adf24beed854b6a44d74 19965c19491fc33c56f91cbeb1e20acf12d82d19))' \
	    'GET MAILBOXES (user.tuser.Sent)' | sv
	[ "$(printf '%s\n' "$output" | sed -n 1p)" = "OK success" ]
	# only the INBOX message (not in Sent) is missing on the new partition
	[ "$(printf '%s\n' "$output" | sed -n 2p)" = "* MISSING (19965c19491fc33c56f91cbeb1e20acf12d82d19)" ]
	[[ $output == *"LAST_UID 1 HIGHESTMODSEQ 4 "*"PARTITION other "* ]]
	[ -f "$T/spool2/bodies/bc/93/bc93c1b97bd122d73621adf24beed854b6a44d74" ]
}

@test "RESTORE MAILBOX of a new mailbox keeps the given identity and UIDs" {
	printf '%s\r\n' 'RESTORE MAILBOX %(MBOXNAME user.tuser.R UNIQUEID rrrrrrrrrr HIGHESTMODSEQ 50 UIDVALIDITY 99 PARTITION default ACL "" OPTIONS P RECORD (%(UID 7 MODSEQ 40 LAST_UPDATED 1 FLAGS (\Seen) INTERNALDATE 1 SIZE 1 GUID 19965c19491fc33c56f91cbeb1e20acf12d82d19)))' \
	    'GET FULLMAILBOX user.tuser.R' | sv
	[ "$(status_of)" = "OK success" ]
	[[ $output == *"UNIQUEID rrrrrrrrrr MBOXNAME user.tuser.R "*"LAST_UID 7 HIGHESTMODSEQ 50 "*"UIDVALIDITY 99 "* ]]
	# the size is the stored body's, not the one sent
	[[ $output == *"RECORD (%(UID 7 MODSEQ 40 LAST_UPDATED 1 FLAGS (\\Seen) INTERNALDATE 1 SIZE 837 GUID 19965c19491fc33c56f91cbeb1e20acf12d82d19))"* ]]
}

@test "APPLY QUOTA decodes every resource; 4294967295 means unlimited" {
	printf '%s\r\n' 'APPLY QUOTA %(ROOT user.tuser MESSAGE 10 X-NUM-FOLDERS 5 X-ANNOTATION-STORAGE 4294967295 MODSEQ 30)' \
	    'GET QUOTA user.tuser' 'APPLY QUOTA %(ROOT user.tuser LIMIT 4294967295 STORAGE 7)' 'GET QUOTA user.tuser' | sv
	[ "$output" = "$(printf '%s\n' 'OK success' '* QUOTA %(ROOT user.tuser LIMIT 4294967295 MESSAGE 10 X-NUM-FOLDERS 5 MODSEQ 30)' 'OK success' \
	    'OK success' '* QUOTA %(ROOT user.tuser LIMIT 7 STORAGE 7 MODSEQ 31)' 'OK success' 'OK Finished')" ]
}
