#!/usr/bin/env bats
# Our client (sync-plan | sync-send) replicates a user of our store into a
# real Cyrus 3.6 sync_server.  After every run a second sync-plan must
# plan nothing: Cyrus reports back exactly the state (CRCs included) we
# computed.  Then facts read from our store are checked against what the
# Cyrus replica shows over IMAP (cyrus-pair dump).  The tests run in
# order and share the replica.

load ../helpers
load interop

setup_file() {
	ia_workdir
	ia_cyrus_replica
	ia_populate populate
}

teardown_file() {
	ia_teardown
}

setup() {
	ia_tools
}

# alice: INBOX with 80 messages of varied sizes and flags, Sent, an empty
# Archive and Archive/2023, two expunged messages and a \Deleted one;
# annotations private and shared, an ACL for bob, a quota, subscriptions,
# alice's seen state on bob's INBOX, an active legacy sieve script.
populate() {
	local store i f
	store=$(sp_project_root)/cmd/sync-store/sync-store
	set -e
	"$store" -C "$M" create user.alice
	"$store" -C "$M" create user.alice.Sent --specialuse '\Sent'
	"$store" -C "$M" create user.alice.Archive
	"$store" -C "$M" create user.alice.Archive.2023
	"$store" -C "$M" create user.bob
	for ((i = 1; i <= 80; i++)); do
		case $((i % 4)) in
		0) f='\Seen' ;;
		1) f='\Seen,$Label1' ;;
		2) f='\Flagged,custom_kw' ;;
		3) f='\Answered' ;;
		esac
		{
			printf 'From: a%d@example.com\r\nTo: alice@example.com\r\n' "$i"
			printf 'Subject: message %d\r\nMessage-ID: <m%d@example.com>\r\n\r\n' "$i" "$i"
			head -c $((100 + i * 97)) /dev/zero | tr '\0' 'x'
			printf '\r\n'
		} | "$store" -C "$M" deliver user.alice --flags "$f" >/dev/null
	done
	for i in 1 2 3 4 5; do
		printf 'Subject: sent %d\r\n\r\nsent %d\r\n' "$i" "$i" |
		    "$store" -C "$M" deliver user.alice.Sent --flags '\Seen' >/dev/null
	done
	printf 'Subject: old\r\n\r\nold\r\n' |
	    "$store" -C "$M" deliver user.alice.Archive.2023 >/dev/null
	printf 'Subject: bob\r\n\r\nbob\r\n' |
	    "$store" -C "$M" deliver user.bob >/dev/null
	"$store" -C "$M" expunge user.alice 2,22
	"$store" -C "$M" flag user.alice 5 '\Deleted'
	"$store" -C "$M" sub alice user.alice
	"$store" -C "$M" sub alice user.alice.Sent
	"$store" -C "$M" sub alice user.alice.Archive.2023
	"$store" -C "$M" annotate user.alice /comment --user alice 'private note'
	"$store" -C "$M" annotate user.alice.Sent /comment 'sent mail'
	"$store" -C "$M" acl user.alice.Archive.2023 bob lrs
	"$store" -C "$M" quota user.alice 100000
	"$store" -C "$M" seen alice user.bob 1
	printf 'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "Archive"; }\r\n' |
	    "$store" -C "$M" sieve put alice main
	"$store" -C "$M" sieve activate alice main
	set +e
}

# Plan and send alice; both must succeed; the plan is kept in $D/plan.
sync_alice() {
	"$PLAN" -C "$M" -S "$TARGET" -u alice >"$D/plan" || return 1
	run "$SEND" -v -C "$M" -S "$TARGET" <"$D/plan"
	echo "$output"
	[ "$status" -eq 0 ]
}

# A second plan made now has no command in it.
nothing_left() {
	"$PLAN" -C "$M" -S "$TARGET" -u alice >"$D/plan2"
	if grep -q '^APPLY' "$D/plan2"; then
		echo "--- a second plan still has commands:"
		cut -c1-300 "$D/plan2"
		echo "--- replica syslog (tail):"
		tail -n 20 "$D/replica/log/syslog"
		return 1
	fi
}

# The replica as Cyrus shows it over IMAP.
replica_dump() {
	cyrus_pair dump "$D" replica alice --no-bodies >"$D/dump"
}

# The IMAP name of one of alice's internal names.
extname() {
	local n=${1#user.alice}
	n=${n#.}
	[[ -z $n ]] && n=INBOX
	echo "${n//./\/}"
}

# Messages (not expunged) per mailbox in our store vs "exists" on the
# replica, for every mailbox of alice.
counts_match() {
	local mb ours theirs
	for mb in $("$STORE" -C "$M" list alice | grep -v '^DELETED\.'); do
		ours=$("$STORE" -C "$M" dump alice | grep "^record $mb " |
		    grep -vc '\\Expunged' || true)
		theirs=$(awk -v m="mailbox $(extname "$mb")" \
		    '$0 == m { f = 1; next } /^mailbox / { f = 0 }
		     f && $1 == "exists" { print $2 }' "$D/dump")
		echo "$mb: ours $ours, replica ${theirs:-none}"
		[ "$ours" = "$theirs" ] || return 1
	done
}

# Flags of one message, sorted, from our store and from the replica.
flags_match() {
	local mb=$1 uid=$2 ours theirs
	ours=$("$STORE" -C "$M" dump alice |
	    sed -n "s/^record $mb $uid .* flags (\(.*\))\$/\1/p" |
	    tr ' ' '\n' | grep -v '^$' | sort | tr '\n' ' ')
	theirs=$(awk -v m="mailbox $(extname "$mb")" -v u="uid=$uid" \
	    '$0 == m { f = 1; next } /^mailbox / { f = 0 }
	     f && $1 == "msg" && $2 == u { print }' "$D/dump" |
	    sed 's/.*flags=(\([^)]*\)).*/\1/' | tr ' ' '\n' | grep -v '^$' |
	    sort | tr '\n' ' ')
	echo "$mb $uid: ours '$ours', replica '$theirs'"
	[ "$ours" = "$theirs" ]
}

@test "a full user sync into Cyrus succeeds, and a second plan is empty" {
	sync_alice
	[[ $output == *"OK APPLY MAILBOX user.alice"* ]]
	[[ $output == *"OK APPLY SIEVE alice"* ]]
	nothing_left
}

@test "the Cyrus replica holds what our store holds" {
	replica_dump
	counts_match
	for uid in 1 3 4 5 6; do
		flags_match user.alice "$uid"
	done
	flags_match user.alice.Sent 1
	grep -qx 'subscribed INBOX' "$D/dump"
	grep -qx 'subscribed Sent' "$D/dump"
	grep -qx 'subscribed Archive/2023' "$D/dump"
	grep -q '^quota INBOX (STORAGE [0-9]* 100000)$' "$D/dump"
	grep -qx '  metadata /private/comment=private note' "$D/dump"
	grep -qx '  metadata /shared/comment=sent mail' "$D/dump"
	grep -q '^  acl alice=lrswipkxtecdan bob=lrs$' "$D/dump"
	grep -q '^sieve main active ' "$D/dump"
	# An expunged message is gone on the replica too.
	! grep -q '^  msg uid=2 ' <(sed -n '/^mailbox INBOX$/,/^mailbox /p' "$D/dump")
}

@test "append" {
	for i in 1 2 3; do
		printf 'Subject: new %d\r\n\r\nnew %d\r\n' "$i" "$i" |
		    "$STORE" -C "$M" deliver user.alice >/dev/null
	done
	sync_alice
	grep -q '^APPLY RESERVE' "$D/plan"
	nothing_left
	replica_dump
	counts_match
}

@test "flags and keywords" {
	"$STORE" -C "$M" flag user.alice 3,7 '\Flagged' '$Work' >/dev/null
	"$STORE" -C "$M" unflag user.alice 4 '\Seen' >/dev/null
	sync_alice
	nothing_left
	replica_dump
	for uid in 3 4 7; do
		flags_match user.alice "$uid"
	done
}

@test "expunge" {
	"$STORE" -C "$M" expunge user.alice 10:12 >/dev/null
	sync_alice
	nothing_left
	replica_dump
	counts_match
}

@test "rename" {
	"$STORE" -C "$M" rename user.alice.Archive user.alice.Old
	sync_alice
	grep -q '^APPLY RENAME %(OLDMBOXNAME user.alice.Archive NEWMBOXNAME user.alice.Old' "$D/plan"
	nothing_left
	replica_dump
	grep -qx 'mailbox Old' "$D/dump"
	! grep -qx 'mailbox Archive' "$D/dump"
}

@test "delete: the tombstone becomes UNMAILBOX" {
	"$STORE" -C "$M" create user.alice.Trash
	sync_alice
	nothing_left
	"$STORE" -C "$M" delete user.alice.Trash
	sync_alice
	grep -qx 'APPLY UNMAILBOX user.alice.Trash' "$D/plan"
	nothing_left
	replica_dump
	! grep -qx 'mailbox Trash' "$D/dump"
}

@test "subscription" {
	"$STORE" -C "$M" unsub alice user.alice.Sent
	"$STORE" -C "$M" sub alice user.alice.Old
	sync_alice
	nothing_left
	replica_dump
	grep -qx 'subscribed Old' "$D/dump"
	! grep -qx 'subscribed Sent' "$D/dump"
}

@test "quota" {
	"$STORE" -C "$M" quota user.alice 200000 5000
	sync_alice
	nothing_left
	replica_dump
	grep -qx 'quota INBOX (STORAGE [0-9]* 200000 MESSAGE [0-9]* 5000)' "$D/dump" ||
	    grep '^quota' "$D/dump"
	grep -q '^quota INBOX .*200000' "$D/dump"
	grep -q '^quota INBOX .*5000' "$D/dump"
}

@test "annotation" {
	"$STORE" -C "$M" annotate user.alice.Sent /comment 'changed'
	"$STORE" -C "$M" annotate user.alice /comment --user alice
	sync_alice
	nothing_left
	replica_dump
	grep -qx '  metadata /shared/comment=changed' "$D/dump"
	! grep -q '/private/comment' "$D/dump"
}

@test "seen state of another user's mailbox" {
	"$STORE" -C "$M" seen alice user.bob 1:2
	sync_alice
	grep -q '^APPLY SEEN %(USERID alice ' "$D/plan"
	nothing_left
}

@test "sieve: a changed script, then another one activated" {
	printf 'keep;\r\n' | "$STORE" -C "$M" sieve put alice main
	printf 'discard;\r\n' | "$STORE" -C "$M" sieve put alice other
	"$STORE" -C "$M" sieve activate alice other
	sync_alice
	nothing_left
	replica_dump
	grep -q '^sieve other active ' "$D/dump"
	grep -q '^sieve main ' "$D/dump"
	! grep -q '^sieve main active' "$D/dump"
}

@test "-z: COMPRESS DEFLATE with Cyrus" {
	printf 'Subject: z\r\n\r\nzzz\r\n' |
	    "$STORE" -C "$M" deliver user.alice.Sent >/dev/null
	"$PLAN" -C "$M" -S "$TARGET" -u alice >"$D/plan"
	run "$SEND" -z -v -v -C "$M" -S "$TARGET" <"$D/plan"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"C COMPRESS DEFLATE"*"OK APPLY MAILBOX user.alice.Sent"* ]]
	nothing_left
}

@test "a stale plan refused by Cyrus (IMAP_SYNC_CHANGED) is re-planned" {
	"$STORE" -C "$M" flag user.alice 1 '\Flagged' >/dev/null
	"$PLAN" -C "$M" -S "$TARGET" -u alice >"$D/stale"
	"$STORE" -C "$M" flag user.alice 3 '\Draft' >/dev/null
	sync_alice
	"$STORE" -C "$M" flag user.alice 4 '\Flagged' >/dev/null
	run "$SEND" -C "$M" -S "$TARGET" <"$D/stale"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"IMAP_SYNC_CHANGED"*"%replan user alice (attempt 1 of 2)"* ]]
	nothing_left
	replica_dump
	flags_match user.alice 4
}

@test "the replica's syslog shows no error from our commands" {
	run grep -i 'IOERROR\|protocol error\|fatal' "$D/replica/log/syslog"
	echo "$output"
	[ "$status" -ne 0 ]
}
