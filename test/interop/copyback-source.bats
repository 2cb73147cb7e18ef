#!/usr/bin/env bats
# Split brain between two real Cyrus 3.6 instances, with our client in
# place of Cyrus's own: sync-plan reads the Cyrus master through its
# csync service, sync-send writes to the Cyrus replica.  When the replica
# has changed on its own, what only it holds is copied back into the
# master over the same csync service (GET FETCH from the replica, APPLY
# RESERVE / MESSAGE / MAILBOX to the master), then the replica is brought
# to the master's state.  With -O the master is left alone and the
# replica's copy replaced.  The master's csync service chains its log
# (sync_log_chain), so a copy-back also lands in the master's sync log.
# The tests run in order and share the pair.

load ../helpers
load interop

setup_file() {
	ia_workdir
	echo "sync_log_chain: 1" >"$D/master-extra.conf"
	ia_up "$D" --master-conf "$D/master-extra.conf"
	ia_populate cyrus_pair populate "$D" alice 12
	ia_source_conf
}

teardown_file() {
	ia_teardown
}

setup() {
	ia_tools
}

sync_alice() {
	"$PLAN" "$@" -C "$M" -u alice >"$D/plan" || return 1
	run "$SEND" -v -C "$M" <"$D/plan"
	echo "$output"
	[ "$status" -eq 0 ]
}

# Master and replica agree, and a plan comparing every record finds
# nothing left to do.
in_sync() {
	run cyrus_pair compare "$D" alice
	echo "$output" | head -n 60
	[ "$status" -eq 0 ]
	! grep -q '^[-+@]' <<<"$output"
	"$PLAN" -C "$M" -u alice --full >"$D/plan2"
	if grep -q '^MASTER\|^APPLY [A-Z_]*MAILBOX\|^APPLY MESSAGE' \
	    "$D/plan2"; then
		cut -c1-300 "$D/plan2"
		return 1
	fi
}

# "uid sha1" of the messages of SIDE's INBOX.
inbox() {
	cyrus_pair dump "$D" "$1" alice | awk '
	    /^mailbox / { inbox = ($2 == "INBOX") }
	    inbox && $1 == "msg" {
		u = $2; sub(/uid=/, "", u)
		s = $0; sub(/.*sha1=/, "", s); sub(/ .*/, "", s)
		print u, s }' | sort -n
}

@test "first full sync from the Cyrus master" {
	sync_alice
	in_sync
}

@test "a message appended on the Cyrus replica is copied back into the Cyrus master" {
	inbox master >"$D/m-before"
	cyrus_pair act "$D" replica alice append INBOX 1 >/dev/null
	cyrus_pair act "$D" replica alice flag INBOX 1 '$Split' >/dev/null
	inbox replica >"$D/r-before"
	[ "$(wc -l <"$D/r-before")" -eq "$(($(wc -l <"$D/m-before") + 1))" ]
	new=$(comm -13 <(cut -d' ' -f2 "$D/m-before" | sort) \
	    <(cut -d' ' -f2 "$D/r-before" | sort))
	[ -n "$new" ]
	rm -f "$D/master/conf/sync/log"
	sync_alice
	grep -q '^MASTER COPYBACK %(UNIQUEID' "$D/plan"
	grep -q '^OK MASTER COPYBACK user.alice: 1 records' <<<"$output"
	# The replica's message is on both sides, under the UID it had.
	inbox master | grep -qx "$(grep " $new\$" "$D/r-before")"
	inbox replica | grep -qx "$(grep " $new\$" "$D/r-before")"
	# ... and the replica's newer flags on a record both have.
	cyrus_pair dump "$D" master alice | awk '/^mailbox / {
	    inbox = ($2 == "INBOX") } inbox && $1 == "msg" && $2 == "uid=1"' |
	    grep -qF '$Split'
	# The master's csync service logged the change for a rolling pass.
	grep -q 'user.alice' "$D/master/conf/sync/log"
	in_sync
	# A second run sends nothing.
	sync_alice
	! grep -q '^MASTER\|^APPLY [A-Z_]*MAILBOX' "$D/plan"
}

@test "both sides appended under the same UID: both messages survive on both" {
	cyrus_pair act "$D" master alice append INBOX 1 >/dev/null
	cyrus_pair act "$D" replica alice append INBOX 1 >/dev/null
	sort -u <(inbox master | cut -d' ' -f2) <(inbox replica | cut -d' ' -f2) \
	    >"$D/both"
	sync_alice
	grep -q '^OK MASTER COPYBACK user.alice' <<<"$output"
	[ -z "$(inbox master | cut -d' ' -f2 | sort | comm -23 "$D/both" -)" ]
	[ "$(inbox master | wc -l)" -eq "$(wc -l <"$D/both")" ]
	in_sync
}

@test "a master that changed after the plan gets no stale copy-back" {
	cyrus_pair act "$D" replica alice append INBOX 1 >/dev/null
	"$PLAN" -C "$M" -u alice >"$D/plan"
	grep -q '^MASTER COPYBACK' "$D/plan"
	cyrus_pair act "$D" master alice append INBOX 1 >/dev/null
	sort -u <(inbox master | cut -d' ' -f2) <(inbox replica | cut -d' ' -f2) \
	    >"$D/both"
	run "$SEND" -v -C "$M" <"$D/plan"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^NO MASTER COPYBACK user.alice: changed on the master since planned (re-planning user alice)' \
	    <<<"$output"
	grep -q '^OK MASTER COPYBACK user.alice' <<<"$output"
	[ -z "$(inbox master | cut -d' ' -f2 | sort | comm -23 "$D/both" -)" ]
	[ "$(inbox master | wc -l)" -eq "$(wc -l <"$D/both")" ]
	in_sync
}

@test "-O: the master is unchanged and the replica takes the master's state" {
	cyrus_pair dump "$D" master alice >"$D/master-before"
	cyrus_pair act "$D" replica alice append INBOX 2 >/dev/null
	sync_alice -O
	grep -qx 'APPLY FORCE %()' "$D/plan"
	[ "$(grep -c '^MASTER' "$D/plan")" -eq 0 ]
	diff "$D/master-before" <(cyrus_pair dump "$D" master alice)
	in_sync
}
