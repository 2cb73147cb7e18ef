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

point() {	# point TOOL DELAY|cmd:N [any: the kill may miss]
	local tool=$1 delay=$2
	if ! crash_point "$D" "$tool" "$delay"; then
		cat "$D/p/killed" "$D/p/why"
		head -n 40 "$D/p/dump.diff" 2>/dev/null
		tail -n 5 "$D/p"/*.err
		return 1
	fi
	cat "$D/p/killed" >&3
	# the point is only a point if the process was really killed
	[[ $tool == none || ${3:-} == any ]] || grep -q '^killed' "$D/p/killed"
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

@test "synclog-tail killed at once (claim in progress)" { point synclog-tail 0 any; }
@test "synclog-tail killed a few ms in" { point synclog-tail 0.004 any; }
@test "sync-plan killed after its 1st GET" { point sync-plan cmd:1; }
@test "sync-plan killed after its 3rd GET" { point sync-plan cmd:3; }
@test "sync-send killed after 2 commands sent (bodies in flight)" { point sync-send cmd:2; }
@test "sync-send killed after 8 commands sent" { point sync-send cmd:8; }
@test "sync_server killed after the 1st command it read" { point sync_server cmd:1; }
@test "sync_server killed after 6 commands" { point sync_server cmd:6; }
