#!/usr/bin/env bats
# Crash points: the rolling path (synclog-tail -1 | sync-plan | sync-send)
# replicating a populated master to our sync_server, with one of the four
# processes killed by SIGKILL at a chosen moment while a writer keeps
# changing the master.  A rerun must then converge: replica dump equal to
# the master's, both stores verify clean, the sync log drained and no
# claimed log-run left.  The harness is test/torture/crashlib.bash;
# scripts/torture (make torture) runs it at 100+ points per tool.

load helpers

setup_file() {
	D=$(sp_tmpdir)
	export D
	echo "$D" >"$BATS_FILE_TMPDIR/dir"
	source "$BATS_TEST_DIRNAME/torture/crashlib.bash"
	# smaller than the torture template: 2 users x 3 folders x 8 messages
	crash_init "$D" 2 8
}

teardown_file() {
	[[ -n ${D:-} ]] || D=$(cat "$BATS_FILE_TMPDIR/dir" 2>/dev/null) || true
	[[ -n ${D:-} ]] && sp_rmtmp "$D"
}

setup() {
	source "$BATS_TEST_DIRNAME/torture/crashlib.bash"
}

point() {
	local tool=$1 delay=$2
	if ! crash_point "$D" "$tool" "$delay"; then
		cat "$D/p/killed" "$D/p/why"
		head -n 40 "$D/p/dump.diff" 2>/dev/null
		tail -n 5 "$D/p"/*.err
		return 1
	fi
	cat "$D/p/killed" >&3
}

@test "control: without a kill the pipeline converges, and a planted difference is caught" {
	point none 0
	crash_bins
	# a change the sync log never saw: the checker must notice it
	"$C_STORE" -C "$D/p/m/imapd.conf" flag user.u1 5 '\Deleted' >/dev/null
	rm -f "$D/p/m/conf/sync/log"
	: >"$D/p/why"
	run crash_check "$D/p"
	[ "$status" -ne 0 ]
	grep -q 'replica differs' "$D/p/why"
}

@test "synclog-tail killed at once (claim in progress)" { point synclog-tail 0.0$((RANDOM % 3)); }
@test "synclog-tail killed mid-run" { point synclog-tail 0.2; }
@test "sync-plan killed early" { point sync-plan 0.1; }
@test "sync-plan killed mid-plan" { point sync-plan 0.4; }
@test "sync-send killed early" { point sync-send 0.2; }
@test "sync-send killed mid-upload" { point sync-send 0.5; }
@test "sync_server killed while applying" { point sync_server 0.3; }
@test "sync_server killed late" { point sync_server 0.7; }
