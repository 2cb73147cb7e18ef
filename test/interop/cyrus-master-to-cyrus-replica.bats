#!/usr/bin/env bats
# Our client replicates a live Cyrus master into a Cyrus replica, in
# place of Cyrus's own sync_client: sync-plan reads the master's state
# through the master's csync service (sync_source_*), sync-send fetches
# the bodies the replica lacks from it (GET FETCH).  Nothing of the
# master's files is read but its sync log.  After every run the two
# Cyrus instances must show the same state over IMAP (cyrus-pair
# compare) and a new plan must hold no APPLY.  The tests run in order.

load ../helpers

setup_file() {
	if ((EUID != 0)); then
		echo "the Cyrus peer needs root (cyrus-pair up)" >&2
		return 1
	fi
	D=$(sp_tmpdir)
	export D
	echo "$D" >"$BATS_FILE_TMPDIR/dir"
	cyrus_pair up "$D" >"$D/up.log" 2>&1 ||
	    { cat "$D/up.log" >&2; return 1; }
	cyrus_pair populate "$D" alice 50 >"$D/populate.log" 2>&1 ||
	    { cat "$D/populate.log" >&2; return 1; }
	rm -f "$D/master/conf/sync/log"
	# shellcheck disable=SC1091
	. "$D/ports.env"
	# The master's own imapd.conf (sync_host, sync_authname, the log)
	# plus where our tools read the master's state.
	export M=$D/master-syncpipe.conf
	cat >"$M" <<-EOF
	@include: $D/master/imapd.conf
	sync_source_host: 127.0.0.1:$MASTER_CSYNC_PORT
	sync_source_authname: $REPL_USER
	sync_source_password: $REPL_PASS
	EOF
}

teardown_file() {
	[[ -n ${D:-} ]] || D=$(cat "$BATS_FILE_TMPDIR/dir" 2>/dev/null) || true
	[[ -n ${D:-} ]] || return 0
	cyrus_pair down "$D" >/dev/null 2>&1 || true
	sp_rmtmp "$D"
}

setup() {
	ROOT=$(sp_project_root)
	TAIL=$ROOT/cmd/synclog-tail/synclog-tail
	PLAN=$ROOT/cmd/sync-plan/sync-plan
	SEND=$ROOT/cmd/sync-send/sync-send
}

# The replica agrees with the master, and a fresh plan changes nothing.
in_sync() {
	run cyrus_pair compare "$D" alice
	echo "$output" | head -n 60
	[ "$status" -eq 0 ]
	run "$PLAN" -C "$M" -u alice
	[ "$status" -eq 0 ]
	echo "$output" | grep -v '^#'
	! echo "$output" | grep -v '^APPLY CAPABILITIES' | grep -q '^APPLY'
}

# One pass over the master's real sync log.
roll() {
	"$TAIL" -C "$M" -1 >"$D/actions.$1" &&
	    "$PLAN" -C "$M" <"$D/actions.$1" >"$D/plan.$1" &&
	    "$SEND" -C "$M" -v -f "$D/plan.$1" >"$D/send.$1" 2>&1
	local rc=$?
	cat "$D/send.$1"
	return $rc
}

@test "full user sync from the Cyrus master: replica identical, second plan empty" {
	run "$PLAN" -C "$M" -u alice
	[ "$status" -eq 0 ]
	echo "$output" >"$D/plan.full"
	# Bodies carry where the source keeps them.
	grep -q '^APPLY MESSAGE (%{default [0-9a-f]\{40\} [0-9]*} %(MBOXNAME user.alice PARTITION default UNIQUEID [^ ]* UID [0-9]*)' "$D/plan.full"
	grep -q '^APPLY CAPABILITIES (SIEVE-MAILBOX)' "$D/plan.full"
	grep -q 'user.alice.#sieve' "$D/plan.full"
	run "$SEND" -C "$M" -v -f "$D/plan.full"
	echo "$output" | tail -n 20
	[ "$status" -eq 0 ]
	echo "$output" | grep -q 'bodies'
	in_sync
	# Our tools left the Cyrus master's files alone.
	[ ! -e "$D/master/conf/syncpipe.db" ]
}

@test "no-op: unchanged mailboxes are not read in full" {
	run "$PLAN" -C "$M" -v -u alice
	[ "$status" -eq 0 ]
	echo "$output" | grep -q 'user.alice: unchanged'
	! echo "$output" | grep -q 'RECORD'
}

@test "rolling: append and flags, only the new bodies fetched" {
	cyrus_pair act "$D" master alice append INBOX 3 >/dev/null
	cyrus_pair act "$D" master alice flag INBOX 1:5 '\Flagged,$Work' >/dev/null
	run roll append
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q ' 3 bodies'
	echo "$output" | grep -q '^%committed'
	in_sync
}

@test "rolling: expunge" {
	cyrus_pair act "$D" master alice expunge INBOX 3:4 >/dev/null
	run roll expunge
	echo "$output"
	[ "$status" -eq 0 ]
	in_sync
}

@test "rolling: create and rename" {
	cyrus_pair act "$D" master alice create Projects >/dev/null
	cyrus_pair act "$D" master alice append Projects 2 >/dev/null
	cyrus_pair act "$D" master alice rename Archive/2023 Archive/Old >/dev/null
	run roll rename
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q 'APPLY RENAME' "$D/plan.rename"
	in_sync
}

@test "rolling: subscription and quota" {
	cyrus_pair act "$D" master alice subscribe Projects >/dev/null
	cyrus_pair act "$D" master alice unsubscribe Sent >/dev/null
	cyrus_pair act "$D" master alice quota 200000 5000 >/dev/null
	run roll subquota
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q 'APPLY SUB' "$D/plan.subquota"
	grep -q 'APPLY UNSUB' "$D/plan.subquota"
	grep -q 'APPLY QUOTA' "$D/plan.subquota"
	in_sync
}

@test "rolling: a new sieve script travels in the #sieve mailbox" {
	printf 'require "fileinto";\nif header :contains "subject" "x" { fileinto "Projects"; }\n' >"$D/s2.sieve"
	cyrus_pair act "$D" master alice sieve second "$D/s2.sieve" >/dev/null
	cyrus_pair act "$D" master alice sieve-activate second >/dev/null
	run roll sieve
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q 'user.alice.#sieve' "$D/plan.sieve"
	in_sync
}

@test "a source that cannot list users refuses -A" {
	run "$PLAN" -C "$M" -A
	[ "$status" -eq 1 ]
	echo "$output" | grep -q 'cannot list'
}
