#!/usr/bin/env bats
# Split brain against a real Cyrus 3.6 replica: our store is the master,
# sync-plan | sync-send the client.  The Cyrus replica is changed on its
# own (cyrus-pair act replica ...); the next run copies what only the
# replica has back into our store (GET FULLMAILBOX, GET FETCH) and then
# brings the replica to the master's state; with -O the replica's copy is
# replaced and our store is left alone.  The tests run in order and share
# the replica.

load ../helpers
load interop

setup_file() {
	ia_workdir
	ia_cyrus_replica
	local store i
	store=$(sp_project_root)/cmd/sync-store/sync-store
	"$store" -C "$M" create user.alice >/dev/null || return 1
	"$store" -C "$M" create user.alice.Sent >/dev/null || return 1
	for i in 1 2 3 4 5; do
		printf 'From: a@example.com\r\nSubject: m%d\r\n\r\nmaster %d\r\n' \
		    "$i" "$i" |
		    "$store" -C "$M" deliver user.alice --flags '\Seen' \
		    >/dev/null || return 1
	done
	printf 'Subject: s1\r\n\r\nsent 1\r\n' |
	    "$store" -C "$M" deliver user.alice.Sent >/dev/null || return 1
}

teardown_file() {
	ia_teardown
}

setup() {
	ia_tools
}

sync_alice() {
	"$PLAN" "$@" -C "$M" -S "$TARGET" -u alice >"$D/plan" || return 1
	run "$SEND" -v -C "$M" -S "$TARGET" <"$D/plan"
	echo "$output"
	[ "$status" -eq 0 ]
}

# A plan comparing every record finds nothing left to do.
nothing_left() {
	"$PLAN" -C "$M" -S "$TARGET" -u alice --full >"$D/plan2"
	if grep -q '^APPLY\|^MASTER' "$D/plan2"; then
		cut -c1-300 "$D/plan2"
		return 1
	fi
}

# "uid sha1 flags" of the live messages of INBOX, ours and Cyrus's.
ours() {
	"$STORE" -C "$M" dump alice | awk '$1 == "record" &&
	    $2 == "user.alice" && !/\\Expunged/ {
		for (i = 1; i <= NF; i++) if ($i == "guid") g = $(i + 1)
		f = $0; sub(/.* flags /, "", f)
		print $3, g, f }' | sort -n
}

theirs() {
	cyrus_pair dump "$D" replica alice | awk '
	    /^mailbox / { inbox = ($2 == "INBOX") }
	    inbox && $1 == "msg" {
		u = $2; sub(/uid=/, "", u)
		f = $0; sub(/.*flags=/, "", f); sub(/\) .*/, ")", f)
		s = $0; sub(/.*sha1=/, "", s); sub(/ .*/, "", s)
		print u, s, f }' | sort -n
}

@test "first full sync" {
	sync_alice
	nothing_left
	diff <(ours) <(theirs)
	[ "$(ours | wc -l)" -eq 5 ]
}

@test "messages appended and a flag set on the Cyrus replica are copied back" {
	cyrus_pair act "$D" replica alice append INBOX 2
	cyrus_pair act "$D" replica alice flag INBOX 2 '\Flagged'
	theirs >"$D/replica-before"
	[ "$(wc -l <"$D/replica-before")" -eq 7 ]
	sync_alice
	grep -q '^MASTER COPYBACK %(UNIQUEID' "$D/plan"
	grep -q '^OK MASTER COPYBACK user.alice: 2 records' <<<"$output"
	# Every message of the replica is now in our store, flags included.
	diff <(cut -d' ' -f1,2 "$D/replica-before") <(ours | cut -d' ' -f1,2)
	ours | grep '^2 ' | grep -qF '\Flagged'
	nothing_left
	diff <(ours) <(theirs)
	"$STORE" -C "$M" verify
}

@test "both sides appended under the same UID: both messages survive" {
	printf 'Subject: m8\r\n\r\nmaster 8\r\n' |
	    "$STORE" -C "$M" deliver user.alice >/dev/null
	ours | cut -d' ' -f2 >"$D/m-before"
	cyrus_pair act "$D" replica alice append INBOX 1
	theirs | cut -d' ' -f2 >"$D/r-before"
	sync_alice
	grep -q '^OK MASTER COPYBACK user.alice' <<<"$output"
	ours | cut -d' ' -f2 | sort >"$D/m-after"
	[ -z "$(sort "$D/m-before" "$D/r-before" -u | comm -23 - "$D/m-after")" ]
	[ "$(wc -l <"$D/m-after")" -eq 9 ]
	nothing_left
	diff <(ours) <(theirs)
}

@test "-O: the replica's extra messages are dropped, our store is unchanged" {
	"$STORE" -C "$M" dump >"$D/master-before"
	cyrus_pair act "$D" replica alice append INBOX 2
	[ "$(theirs | wc -l)" -eq 11 ]
	sync_alice -O
	grep -qx 'APPLY FORCE %()' "$D/plan"
	[ "$(grep -c '^MASTER' "$D/plan")" -eq 0 ]
	diff "$D/master-before" <("$STORE" -C "$M" dump)
	nothing_left
	diff <(ours) <(theirs)
	[ "$(theirs | wc -l)" -eq 9 ]
}
