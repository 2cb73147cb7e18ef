#!/usr/bin/env bats
# Split brain: a replica (our sync_server) that changed on its own.  Each
# row of the table below makes the two stores diverge after a first full
# sync, then replicates the user again with sync-plan | sync-send, and
# checks the outcome: by default what only the replica had is copied back
# into the master (nothing the master had is lost) and both sides end
# equal; with -O the master is left as it was and the replica is made
# equal to it.

load helpers

setup() {
	ROOT=$(sp_project_root)
	T=$(sp_tmpdir)
	mkdir -p "$T/m" "$T/r"
	sp_conf "$T/m/imapd.conf"
	sp_conf "$T/r/imapd.conf"
	M=$T/m/imapd.conf
	R=$T/r/imapd.conf
	STORE=$ROOT/cmd/sync-store/sync-store
	PLAN=$ROOT/cmd/sync-plan/sync-plan
	SEND=$ROOT/cmd/sync-send/sync-send
	REPLICA="$ROOT/cmd/sync_server/sync_server -C $R"
	"$STORE" -C "$M" create user.alice
	"$STORE" -C "$M" create user.alice.Sent
	for i in 1 2 3; do
		msg "master $i" | "$STORE" -C "$M" deliver user.alice \
		    --flags '\Seen' >/dev/null
	done
	msg "sent 1" | "$STORE" -C "$M" deliver user.alice.Sent >/dev/null
	"$PLAN" -C "$M" -e "$REPLICA" -u alice >"$T/plan0"
	"$SEND" -C "$M" -e "$REPLICA" <"$T/plan0" >/dev/null
	diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
}

teardown() {
	sp_rmtmp "$T"
}

msg() {
	printf 'From: a@example.com\r\nSubject: %s\r\n\r\n%s\r\n' "$1" "$1"
}

# The table: name | changes (side verb args; ...) | sync-plan options |
# what else to check.  side is m (master) or r (replica); verbs are
# deliver MAILBOX SUBJECT, flag MAILBOX UID FLAG, expunge MAILBOX UID.
CASES='
extra     | r deliver user.alice r4; r deliver user.alice r5      |    | exact
extra-sub | r deliver user.alice.Sent rs2                         |    | exact
both      | m deliver user.alice m4; r deliver user.alice r4; r deliver user.alice r5 | | renumbered
flags     | r flag user.alice 2 \Flagged                          |    | flag user.alice 2 \Flagged
expunge   | r expunge user.alice 1                                |    | expunged user.alice 1
extra-O   | r deliver user.alice r4; r deliver user.alice r5      | -O | exact
both-O    | m deliver user.alice m4; r deliver user.alice r4      | -O | exact
flags-O   | r flag user.alice 2 \Flagged                          | -O | exact
'

row() {
	local line
	line=$(printf '%s\n' "$CASES" | grep "^$1 ") || {
		echo "no row $1" >&2
		return 1
	}
	IFS='|' read -r _ CHANGES OPTS CHECK <<<"$line"
	OPTS=$(echo $OPTS)
	CHECK=$(echo $CHECK)
}

change() {
	local side=$1 verb=$2 conf
	shift 2
	[ "$side" = m ] && conf=$M || conf=$R
	case $verb in
	deliver) msg "$2" | "$STORE" -C "$conf" deliver "$1" >/dev/null ;;
	flag) "$STORE" -C "$conf" flag "$@" >/dev/null ;;
	expunge) "$STORE" -C "$conf" expunge "$@" >/dev/null ;;
	*) echo "bad verb $verb" >&2; return 1 ;;
	esac
}

# "mailbox guid" of every record that is not expunged.
live() {
	"$STORE" -C "$1" dump alice | awk '$1 == "record" && !/\\Expunged/ {
	    for (i = 1; i <= NF; i++) if ($i == "guid") print $2, $(i + 1) }' |
	    sort -u
}

# The UID of the live master record of user.alice holding message SUBJECT.
uid_of() {
	local g
	g=$(msg "$1" | sha1sum | cut -c1-40)
	"$STORE" -C "$M" dump alice | grep -v '\\Expunged' |
	    awk -v g="$g" '$1 == "record" && $2 == "user.alice" &&
	    $0 ~ ("guid " g) { print $3 }'
}

# The dump without expunged records (which keep each side's GUID where
# both sides used one UID for different messages, as in Cyrus).
dump_live() {
	"$STORE" -C "$1" dump alice | grep -v '^record .*\\Expunged'
}

run_case() {
	local c
	row "$1"
	IFS=';' read -ra cs <<<"$CHANGES"
	for c in "${cs[@]}"; do
		change $c
	done
	"$STORE" -C "$M" dump >"$T/master-before"
	live "$M" >"$T/m-live-before"
	live "$R" >"$T/r-live-before"
	"$PLAN" $OPTS -C "$M" -e "$REPLICA" -u alice >"$T/plan"
	if [ -z "$OPTS" ]; then
		grep -q '^MASTER COPYBACK %(UNIQUEID' "$T/plan"
	else
		[ "$(grep -c '^MASTER' "$T/plan")" = 0 ]
	fi
	run "$SEND" -v -C "$M" -e "$REPLICA" <"$T/plan"
	echo "$output"
	[ "$status" -eq 0 ]
	# A refusal is allowed only when it is planned again.
	[ "$(grep '^NO ' <<<"$output" | grep -vc 're-planning')" = 0 ]
	live "$M" >"$T/m-live"
	if [ -z "$OPTS" ]; then
		# Nothing either side had is lost on the master.
		[ -z "$(comm -23 "$T/r-live-before" "$T/m-live")" ]
		[ -z "$(comm -23 "$T/m-live-before" "$T/m-live")" ] ||
		    [ "$CHECK" = "expunged user.alice 1" ]
		diff <(dump_live "$M") <(dump_live "$R")
	else
		# -O: the master as it was, the replica equal to it.
		diff "$T/master-before" <("$STORE" -C "$M" dump)
	fi
	if [ "$CHECK" = exact ]; then
		diff <("$STORE" -C "$M" dump alice) <("$STORE" -C "$R" dump alice)
	fi
	check $CHECK
	"$STORE" -C "$M" verify
	"$STORE" -C "$R" verify
	# Nothing left to do, even comparing every record.
	"$PLAN" -C "$M" -e "$REPLICA" -u alice --full >"$T/plan2"
	run grep -c '^APPLY\|^MASTER' "$T/plan2"
	[ "$output" = 0 ]
}

check() {
	local what=$1
	shift
	case $what in
	exact|"") ;;
	renumbered)
		# The master's own message and the replica's shared UID 4:
		# both live on under new UIDs, 4 is expunged on both sides.
		"$STORE" -C "$M" dump alice |
		    grep -q '^record user.alice 4 .*(\\Expunged)$'
		"$STORE" -C "$R" dump alice |
		    grep -q '^record user.alice 4 .*(\\Expunged)$'
		[ "$(live "$M" | grep -c '^user.alice ')" -eq 6 ]
		# As Cyrus numbers them: the replica's r5 keeps UID 5, its
		# r4 comes next, the master's m4 last.
		[ "$(uid_of r5)" = 5 ]
		[ "$(uid_of r4)" = 6 ]
		[ "$(uid_of m4)" = 7 ]
		;;
	flag)
		"$STORE" -C "$M" dump alice |
		    grep "^record $1 $2 " | grep -qF "$3"
		;;
	expunged)
		"$STORE" -C "$M" dump alice |
		    grep "^record $1 $2 " | grep -qF '\Expunged'
		;;
	*) echo "bad check $what" >&2; return 1 ;;
	esac
}

@test "copy-back: messages only the replica has go to the master" {
	run_case extra
	[ "$(live "$M" | grep -c '^user.alice ')" -eq 5 ]
}

@test "copy-back: in a second mailbox of the user" {
	run_case extra-sub
	[ "$(live "$M" | grep -c '^user.alice.Sent ')" -eq 2 ]
}

@test "copy-back: both sides appended under the same UID" {
	run_case both
}

@test "copy-back: newer flags on the replica win" {
	run_case flags
}

@test "copy-back: an expunge on the replica is taken" {
	run_case expunge
}

@test "-O: extra replica messages are dropped, the master is unchanged" {
	run_case extra-O
	[ "$(live "$R" | grep -c '^user.alice ')" -eq 3 ]
}

@test "-O: both sides appended: the replica becomes the master" {
	run_case both-O
}

@test "-O: replica flags are overwritten" {
	run_case flags-O
	[ "$("$STORE" -C "$R" dump alice | grep '^record user.alice 2 ' |
	    grep -cF '\Flagged')" = 0 ]
}

@test "copy-back against a master that changed since the plan is re-planned" {
	change r deliver user.alice r4
	"$PLAN" -C "$M" -e "$REPLICA" -u alice >"$T/plan"
	grep -q '^MASTER COPYBACK' "$T/plan"
	change m deliver user.alice m4
	run "$SEND" -v -C "$M" -e "$REPLICA" <"$T/plan"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^NO MASTER COPYBACK user.alice: changed on the master' \
	    <<<"$output"
	grep -q '^OK MASTER COPYBACK user.alice: 1 records' <<<"$output"
	[ "$(live "$M" | grep -c '^user.alice ')" -eq 5 ]
	diff <(dump_live "$M") <(dump_live "$R")
}

@test "a plain update the replica refuses is compared in full and copied back" {
	# The replica changes after the plan was made: its refusal
	# (IMAP_SYNC_CHANGED) makes sync-send plan again with --full.
	change m deliver user.alice m4
	"$PLAN" -C "$M" -e "$REPLICA" -u alice >"$T/plan"
	[ "$(grep -c '^MASTER' "$T/plan")" = 0 ]
	change r deliver user.alice r4
	run "$SEND" -v -C "$M" -e "$REPLICA" <"$T/plan"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q 'IMAP_SYNC_CHANGED.*re-planning user alice' <<<"$output"
	grep -q '^OK MASTER COPYBACK user.alice' <<<"$output"
	live "$M" | grep -q "$(live "$R" | tail -1)"
	[ "$(live "$M" | grep -c '^user.alice ')" -eq 5 ]
	diff <(dump_live "$M") <(dump_live "$R")
}

@test "sync-send without a local store refuses a copy-back" {
	change r deliver user.alice r4
	"$PLAN" -C "$M" -e "$REPLICA" -u alice >"$T/plan"
	"$STORE" -C "$R" dump alice >"$T/r-before"
	run "$SEND" -v -C "$M" -M /nonexistent/socket -e "$REPLICA" <"$T/plan"
	echo "$output"
	[ "$status" -eq 1 ]
	grep -q '^NO MASTER COPYBACK user.alice: the master is a csync source' \
	    <<<"$output"
	diff "$T/r-before" <("$STORE" -C "$R" dump alice)
}
