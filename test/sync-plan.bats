#!/usr/bin/env bats
# sync-plan and sync-send: table-driven plans (a change on the master ->
# the commands planned), each plan applied to our sync_server over a pipe,
# the two stores compared, and a second plan that is empty.

load helpers

setup() {
	ROOT=$(sp_project_root)
	T=$(sp_tmpdir)
	mkdir -p "$T/m" "$T/r"
	sp_conf "$T/m/imapd.conf"
	sp_conf "$T/r/imapd.conf"
	echo "sync_log: 1" >>"$T/m/imapd.conf"
	M=$T/m/imapd.conf
	R=$T/r/imapd.conf
	STORE=$ROOT/cmd/sync-store/sync-store
	PLAN=$ROOT/cmd/sync-plan/sync-plan
	SEND=$ROOT/cmd/sync-send/sync-send
	TAIL=$ROOT/cmd/synclog-tail/synclog-tail
	REPLICA="$ROOT/cmd/sync_server/sync_server -C $R"
	# A user with two folders, three messages, a subscription, a quota.
	"$STORE" -C "$M" create user.alice
	"$STORE" -C "$M" create user.alice.Sent
	for i in 1 2 3; do
		printf 'From: a@example.com\r\nSubject: %s\r\n\r\nbody %s\r\n' \
		    "$i" "$i" | "$STORE" -C "$M" deliver user.alice \
		    --flags '\Seen,$Label1' >/dev/null
	done
	"$STORE" -C "$M" sub alice user.alice.Sent
	"$STORE" -C "$M" quota user.alice 1000
}

teardown() {
	sp_rmtmp "$T"
}

plan() {
	"$PLAN" -C "$M" -e "$REPLICA" "$@"
}

# The commands of a plan, one "KIND name" line each.
summary() {
	sed -n -e 's/^APPLY \([A-Z_]*\) %(UNIQUEID [^ ]* MBOXNAME \([^ ]*\).*/\1 \2/p' \
	    -e 's/^APPLY \(RENAME\) %(OLDMBOXNAME \([^ ]*\) NEWMBOXNAME \([^ ]*\).*/\1 \2 \3/p' \
	    -e 's/^APPLY \(RESERVE\) .*/\1/p' \
	    -e 's/^APPLY \(MESSAGE\) (\(.*\))$/\1/p' \
	    -e 's/^APPLY \([A-Z_]*\) %(\(ROOT\|USERID\) \([^ ]*\).*MBOXNAME \([^ )]*\).*/\1 \3 \4/p' \
	    -e 's/^APPLY \([A-Z_]*\) %(\(ROOT\|USERID\) \([^ )]*\).*/\1 \3/p' \
	    -e 's/^APPLY \([A-Z_]*\) \([^%(][^ ]*\)$/\1 \2/p'
}

# Apply a plan and check the replica now equals the master and a second
# plan has nothing to do.
apply_and_compare() {
	run "$SEND" -C "$M" -e "$REPLICA" <"$T/plan"
	echo "$output"
	[ "$status" -eq 0 ]
	diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
	plan -u alice >"$T/plan2"
	run grep -c '^APPLY' "$T/plan2"
	[ "$output" = 0 ]
}

initial() {
	plan -u alice >"$T/plan"
	"$SEND" -C "$M" -e "$REPLICA" <"$T/plan" >/dev/null
}

@test "a new user: bodies, both mailboxes, quota, subscription" {
	plan -u alice >"$T/plan"
	run summary <"$T/plan"
	[ "${lines[0]}" = "MESSAGE" ]
	[ "${lines[1]}" = "MAILBOX user.alice" ]
	[ "${lines[2]}" = "MAILBOX user.alice.Sent" ]
	[ "${lines[3]}" = "QUOTA user.alice" ]
	[ "${lines[4]}" = "SUB alice user.alice.Sent" ]
	[ "${#lines[@]}" -eq 5 ]
	head -1 "$T/plan" | grep -qx '%syncpipe-plan 1'
	apply_and_compare
}

@test "an unchanged user plans nothing and does no GET beyond USER" {
	initial
	plan -u alice >"$T/plan"
	run grep -c '^APPLY' "$T/plan"
	[ "$output" = 0 ]
}

@test "a flag change sends one conditional MAILBOX with only that record" {
	initial
	"$STORE" -C "$M" flag user.alice 2 '\Flagged' >/dev/null
	plan -u alice >"$T/plan"
	run summary <"$T/plan"
	[ "$output" = "MAILBOX user.alice" ]
	grep -q 'SINCE_MODSEQ [0-9]' "$T/plan"
	run grep -o '%(UID [0-9]*' "$T/plan"
	[ "$output" = "%(UID 2" ]
	apply_and_compare
}

@test "an append reserves, uploads and updates" {
	initial
	printf 'Subject: new\r\n\r\nnew\r\n' |
	    "$STORE" -C "$M" deliver user.alice.Sent >/dev/null
	plan -u alice >"$T/plan"
	run summary <"$T/plan"
	[ "${lines[0]}" = "RESERVE" ]
	[ "${lines[1]}" = "MESSAGE" ]
	[ "${lines[2]}" = "MAILBOX user.alice.Sent" ]
	apply_and_compare
}

@test "a body the replica already holds is not uploaded again" {
	initial
	printf 'From: a@example.com\r\nSubject: 1\r\n\r\nbody 1\r\n' |
	    "$STORE" -C "$M" deliver user.alice.Sent >/dev/null
	plan -u alice >"$T/plan"
	run "$SEND" -v -C "$M" -e "$REPLICA" <"$T/plan"
	[ "$status" -eq 0 ]
	[[ $output != *"OK APPLY MESSAGE"* ]]
	diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
}

@test "a rename is planned before the update, matched by uniqueid" {
	initial
	"$STORE" -C "$M" rename user.alice.Sent user.alice.Archive
	plan -u alice >"$T/plan"
	run summary <"$T/plan"
	[ "${lines[0]}" = "RENAME user.alice.Sent user.alice.Archive" ]
	apply_and_compare
}

@test "a swap of two names goes through a temporary name" {
	initial
	"$STORE" -C "$M" create user.alice.B
	plan -u alice >"$T/plan"
	"$SEND" -C "$M" -e "$REPLICA" <"$T/plan" >/dev/null
	"$STORE" -C "$M" rename user.alice.Sent user.alice.tmp
	"$STORE" -C "$M" rename user.alice.B user.alice.Sent
	"$STORE" -C "$M" rename user.alice.tmp user.alice.B
	plan -u alice >"$T/plan"
	grep -c '^APPLY RENAME' "$T/plan" | grep -qx 3
	apply_and_compare
}

@test "a deleted mailbox with a tombstone is removed on the replica" {
	initial
	"$STORE" -C "$M" delete user.alice.Sent
	"$STORE" -C "$M" unsub alice user.alice.Sent
	plan -u alice >"$T/plan"
	run summary <"$T/plan"
	[[ $output == *"UNMAILBOX user.alice.Sent"* ]]
	[[ $output == *"UNSUB alice user.alice.Sent"* ]]
	apply_and_compare
}

@test "a removed quota becomes UNQUOTA" {
	initial
	"$STORE" -C "$M" quota user.alice none
	plan -u alice >"$T/plan"
	run summary <"$T/plan"
	[ "$output" = "UNQUOTA user.alice" ]
	apply_and_compare
}

@test "another user's seen state travels as APPLY SEEN" {
	initial
	uid=$("$STORE" -C "$M" show user.alice | sed -n 's/^uniqueid: //p')
	[ -n "$uid" ]
	"$STORE" -C "$M" seen alice "$uid" 1:2
	plan -u alice >"$T/plan"
	run summary <"$T/plan"
	[ "$output" = "SEEN alice" ]
	apply_and_compare
}

@test "legacy sieve scripts travel as SIEVE and ACTIVATE_SIEVE" {
	initial
	printf 'keep;\r\n' | "$STORE" -C "$M" sieve put alice main
	"$STORE" -C "$M" sieve activate alice main
	plan -u alice >"$T/plan"
	grep -q '^APPLY SIEVE %(USERID alice FILENAME main.script' "$T/plan"
	grep -q '^APPLY ACTIVATE_SIEVE %(USERID alice FILENAME main.bc)' "$T/plan"
	apply_and_compare
}

@test "a plan made against a state the replica left is refused, then re-planned" {
	initial
	"$STORE" -C "$M" flag user.alice 1 '\Flagged' >/dev/null
	plan -u alice >"$T/stale"
	# The replica moves on meanwhile (another run brings it forward),
	# and the master changes once more.
	"$STORE" -C "$M" flag user.alice 3 '\Answered' >/dev/null
	plan -u alice >"$T/fresh"
	"$SEND" -C "$M" -e "$REPLICA" <"$T/fresh" >/dev/null
	"$STORE" -C "$M" flag user.alice 2 '\Draft' >/dev/null
	run "$SEND" -C "$M" -e "$REPLICA" <"$T/stale"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"IMAP_SYNC_CHANGED"*"re-planning user alice"* ]]
	[[ $output == *"%replan user alice (attempt 1 of 2)"* ]]
	diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
}

@test "a mailbox still refused after two re-plans is a failure" {
	initial
	"$STORE" -C "$M" flag user.alice 1 '\Flagged' >/dev/null
	# Every APPLY MAILBOX of user.alice reaches the replica with a stale
	# SINCE_MODSEQ, so the first send and both re-plans are refused.
	STALE="python3 $ROOT/test/hostile/staleproxy.py user.alice $REPLICA"
	plan -u alice >"$T/plan"
	run "$SEND" -C "$M" -e "$STALE" <"$T/plan"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ $output == *"%replan user alice (attempt 2 of 2)"* ]]
	[[ $output == *"NO re-plan alice: still refused after 2 attempts"* ]]
	# Nothing of the refused update reached the replica.
	! "$STORE" -C "$R" dump alice | grep -q Flagged
}

@test "a split brain with the master read over csync is copied back into it" {
	initial
	"$STORE" -C "$M" flag user.alice 1 '\Flagged' >/dev/null
	# The replica changed on its own; the master is our sync_server on
	# its store, read and written over csync.
	"$STORE" -C "$R" flag user.alice 3 '\Answered' >/dev/null
	"$STORE" -C "$R" flag user.alice 3 '\Draft' >/dev/null
	SRC="$ROOT/cmd/sync_server/sync_server -C $M"
	plan --source-command "$SRC" -u alice >"$T/plan"
	run "$SEND" -C "$M" -e "$REPLICA" --source-command "$SRC" <"$T/plan"
	echo "$output"
	[ "$status" -eq 0 ]
	"$STORE" -C "$M" dump alice | grep -q Draft
	diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
}

@test "-O puts APPLY FORCE at the head of the plan" {
	plan -O -u alice >"$T/plan"
	grep -qx 'APPLY FORCE %()' "$T/plan"
}

@test "the rolling path: log -> actions -> plan -> replica, then the claimed log is removed" {
	initial
	rm -f "$T/m/conf/sync/log"
	"$STORE" -C "$M" flag user.alice 1 '\Answered' >/dev/null
	"$STORE" -C "$M" create user.alice.Drafts
	run bash -c "'$TAIL' -C '$M' -1 | '$PLAN' -C '$M' -e '$REPLICA' | '$SEND' -v -C '$M' -e '$REPLICA'"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"%committed"* ]]
	[ ! -e "$T/m/conf/sync/log-run" ]
	diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
}

@test "a failed batch keeps its claimed log file" {
	initial
	rm -f "$T/m/conf/sync/log"
	printf 'Subject: x\r\n\r\nx\r\n' | "$STORE" -C "$M" deliver user.alice >/dev/null
	# Lose the body on the master: the upload cannot be made.
	g=$(printf 'Subject: x\r\n\r\nx\r\n' | sha1sum | cut -c1-40)
	rm "$T/m/spool/bodies/${g:0:2}/${g:2:2}/$g"
	run bash -c "'$TAIL' -C '$M' -1 | '$PLAN' -C '$M' -e '$REPLICA' | '$SEND' -C '$M' -e '$REPLICA'"
	[ "$status" -ne 0 ]
	[[ $output == *"%kept"* ]]
	[ -e "$T/m/conf/sync/log-run" ]
}

@test "a batch that cannot be planned says %kept at once, without %commit" {
	initial
	rm -f "$T/m/conf/sync/log"
	printf 'Subject: y\r\n\r\ny\r\n' | "$STORE" -C "$M" deliver user.alice >/dev/null
	fake="python3 $ROOT/test/hostile/fakecsync.py mailbox-missing-keys"
	run bash -c "set -o pipefail; '$TAIL' -C '$M' -1 | '$PLAN' -C '$M' -e '$fake' | '$SEND' -C '$M' -e '$REPLICA'"
	[ "$status" -ne 0 ]
	[[ $output == *"%kept $T/m/conf/sync/log-run"* ]]
	[[ $output != *"%committed"* ]]
	[ -e "$T/m/conf/sync/log-run" ]
}

@test "an action stream of another version is refused: 74, nothing planned" {
	run bash -c "printf '%%syncpipe-actions 2\nMAILBOX user.alice\n' | '$PLAN' -C '$M' -e '$REPLICA'"
	echo "$output"
	[ "$status" -eq 74 ]
	[[ $output == *"action stream version 2 not supported"* ]]
	[[ $output != *APPLY* ]]
	[ -z "$("$STORE" -C "$R" list)" ]
}

@test "a malformed action is reported with its line number and dropped; the rest is planned and committed" {
	run bash -c "printf '%%syncpipe-actions 1\n%%batch 1 -\nNOSUCH user.alice\nMAILBOX user.alice\n%%commit /x/log-run 1:2:3:4.5\n%%end 1\n' | '$PLAN' -C '$M' -e '$REPLICA'"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ $output == *"stdin:3: unknown type 'NOSUCH'"* ]]
	[[ $output == *"APPLY MAILBOX %(UNIQUEID"*"MBOXNAME user.alice "* ]]
	[[ $output == *"%commit /x/log-run 1:2:3:4.5"* ]]
}

@test "action control lines: a CR inside one is reported and dropped, a CRLF line end is not part of it" {
	run bash -c "printf '%%syncpipe-actions 1\r\n%%batch 1 -\r\nMAILBOX user.alice\r\n%%commit /x/log\rrun 1:2:3:4.5\n%%commit /x/log-run 1:2:3:4.5\r\n%%end 1\r\n' | '$PLAN' -C '$M' -e '$REPLICA'"
	echo "$output"
	[[ $output == *"stdin:4: NUL or CR in a control line"* ]]
	[[ $output == *"APPLY MAILBOX %(UNIQUEID"* ]]
	grep -qx '%commit /x/log-run 1:2:3:4.5' <<<"$output"
	grep -qx '%end 1' <<<"$output"
	! grep -q $'\r' <<<"$output"
}

@test "--lock-fd: the sync lock is waited for, taken before the replica is asked, and kept by the caller's descriptor" {
	lock=$T/lockfile
	: >"$lock"
	# Another run holds the lock for 2 seconds.
	flock "$lock" sleep 2 3>&- &
	holder=$!
	for _ in $(seq 50); do
		flock -n "$lock" true || break
		sleep 0.1
	done
	! flock -n "$lock" true
	# sync-plan waits for it (saying so with -v), then plans.
	run bash -c 'exec 9>>"$1"; shift; "$@" --lock-fd 9 -v -u alice &&
	    ! flock -n "$0" true' "$lock" "$lock" "$PLAN" -C "$M" -e "$REPLICA"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"waiting for the sync lock"* ]]
	[[ $output == *"APPLY MAILBOX %(UNIQUEID"* ]]
	wait "$holder"
	# The caller's descriptor closed, the lock is free.
	flock -n "$lock" true
}

@test "--lock-fd: a descriptor that is not open is an error (75) and nothing is planned" {
	run "$PLAN" -C "$M" -e "$REPLICA" --lock-fd 9 -u alice 9>&-
	[ "$status" -eq 75 ]
	[[ $output == *"sync lock (descriptor 9)"* ]]
	[[ $output != *APPLY* ]]
	run "$PLAN" -C "$M" -e "$REPLICA" --lock-fd x -u alice
	[ "$status" -eq 64 ]
	[[ $output == *"--lock-fd: not a descriptor: x"* ]]
}
