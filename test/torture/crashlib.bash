# crashlib.bash: crash-point harness for the rolling replication path
#   synclog-tail -1 | sync-plan -e REPLICA | sync-send -e REPLICA
# Sourced by test/crash.bats and scripts/torture.
#
#   crash_init DIR            build a populated master (sync_log on) and
#                             an empty replica template under DIR/tmpl
#   crash_point DIR TOOL DELAY
#                             copy the template to DIR/p, run the
#                             pipeline, SIGKILL TOOL (synclog-tail,
#                             sync-plan, sync-send, sync_server) DELAY
#                             seconds after the start while a writer
#                             keeps changing the master, then rerun the
#                             pipeline until the log is drained and check
#                             convergence.  Returns 0 when converged; the
#                             reason for a failure is in DIR/p/why.
#                             DELAY: seconds (sync_server: from the moment
#                             it is up); cmd:N (not synclog-tail): after
#                             the Nth csync command (killproxy.py);
#                             sys:SYSCALL:N (synclog-tail): at the entry
#                             of its Nth SYSCALL, by strace's fault
#                             injection (the syscall is not executed).
#                             DIR/p/killed says "killed ..." only when the
#                             victim really died by SIGKILL, else "... not
#                             running ..." or "... not killed ...".
#   crash_tail_points DIR     the sys:SYSCALL:N points of one synclog-tail
#                             run on a copy of the template, one a line
#
# Binaries: CRASH_BIN (default: the project's cmd/ tree); CRASH_ASAN=1
# uses build/asan/bin.

CRASH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

crash_bins() {
	local b
	if [[ ${CRASH_ASAN:-0} == 1 ]]; then
		b=$CRASH_ROOT/build/asan/bin
		C_TAIL=$b/synclog-tail C_PLAN=$b/sync-plan C_SEND=$b/sync-send
		C_SRV=$b/sync_server C_STORE=$b/sync-store
	else
		b=$CRASH_ROOT/cmd
		C_TAIL=$b/synclog-tail/synclog-tail C_PLAN=$b/sync-plan/sync-plan
		C_SEND=$b/sync-send/sync-send C_SRV=$b/sync_server/sync_server
		C_STORE=$b/sync-store/sync-store
	fi
}

crash_conf() {	# crash_conf DIR [sync_log]
	mkdir -p "$1/conf" "$1/spool"
	printf 'configdirectory: %s/conf\npartition-default: %s/spool\nsievedir: %s/sieve\nservername: crash\n' \
	    "$1" "$1" "$1" >"$1/imapd.conf"
	[[ -n ${2:-} ]] && echo "sync_log: 1" >>"$1/imapd.conf"
	return 0
}

# crash_init DIR [USERS] [MSGS_PER_FOLDER]
crash_init() {
	local d=$1/tmpl users=${2:-3} per=${3:-34} u f i
	crash_bins
	rm -rf "$d"
	mkdir -p "$d/m" "$d/r"
	crash_conf "$d/m" log
	crash_conf "$d/r"
	for ((u = 1; u <= users; u++)); do
		"$C_STORE" -C "$d/m/imapd.conf" create "user.u$u" || return 1
		for f in Sent Archive; do
			"$C_STORE" -C "$d/m/imapd.conf" create "user.u$u.$f" || return 1
		done
		"$C_STORE" -C "$d/m/imapd.conf" sub "u$u" "user.u$u.Sent"
		"$C_STORE" -C "$d/m/imapd.conf" quota "user.u$u" 100000
		for f in "" .Sent .Archive; do
			for ((i = 1; i <= per; i++)); do
				printf 'From: u%d@example.com\r\nSubject: %s %d\r\nMessage-Id: <%d.%s.%d@x>\r\n\r\n%s\r\n' \
				    "$u" "$f" "$i" "$u" "$f" "$i" \
				    "$(head -c $((200 + (i * 37) % 3000)) /dev/zero | tr '\0' x)" |
				    "$C_STORE" -C "$d/m/imapd.conf" deliver "user.u$u$f" \
				    --flags "$( ((i % 3)) && echo '\Seen' || echo '$Label1')" \
				    >/dev/null || return 1
			done
		done
		"$C_STORE" -C "$d/m/imapd.conf" expunge "user.u$u" 1:3 >/dev/null
		"$C_STORE" -C "$d/m/imapd.conf" annotate "user.u$u" /comment "c$u"
	done
	"$C_STORE" -C "$d/m/imapd.conf" rename user.u1.Archive user.u1.Old >/dev/null
	[[ -s $d/m/conf/sync/log ]]
}

# Every descendant pid of $1.
crash_desc() {
	local c
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
		echo "$c"
		crash_desc "$c"
	done
}

# The pipeline, once, in the background: sets C_PIDS (tail plan send).
crash_pipe_bg() {
	local p=$1
	rm -f "$p/f1" "$p/f2"
	mkfifo "$p/f1" "$p/f2"
	local rep="$C_SRV -C $p/r/imapd.conf"
	local kp="python3 $CRASH_ROOT/test/torture/killproxy.py"
	local prep=$rep srep=$rep
	# crash after N commands: CRASH_AT="N server|client plan|send"
	if [[ -n ${CRASH_AT:-} ]]; then
		set -- $CRASH_AT
		if [[ $3 == plan ]]; then
			prep="$kp $1 $2 $rep"
		elif [[ $2 == server ]]; then
			# a copy of what the client wrote (to the file before
			# killproxy gets it), to tell whether the Nth command came;
			# the copier dies with killproxy, so that the replica's end
			# of the connection closes when it is gone
			rm -f "$p/c2s" "$p/f3"
			mkfifo "$p/f3"
			srep="exec 3<&0; setpriv --pdeathsig KILL tee $p/c2s $p/f3 <&3 >/dev/null 3<&- & echo \$! >$p/tee.pid; exec $kp $1 $2 $rep <$p/f3 3<&-"
		else
			srep="$kp $1 $2 $rep"
		fi
	fi
	# kill synclog-tail at a syscall: CRASH_TAIL_INJECT="SYSCALL:N"
	if [[ -n ${CRASH_TAIL_INJECT:-} ]]; then
		{
			strace -f -o /dev/null \
			    -e inject="${CRASH_TAIL_INJECT%%:*}:signal=KILL:when=${CRASH_TAIL_INJECT#*:}" \
			    "$C_TAIL" -C "$p/m/imapd.conf" -1
			echo $? >"$p/tail.rc"
		} >"$p/f1" 2>>"$p/tail.err" &
	else
		"$C_TAIL" -C "$p/m/imapd.conf" -1 >"$p/f1" 2>>"$p/tail.err" &
	fi
	local t=$!
	KILLPROXY_LOG=$p/killed "$C_PLAN" -C "$p/m/imapd.conf" -e "$prep" <"$p/f1" >"$p/f2" 2>>"$p/plan.err" &
	local pl=$!
	KILLPROXY_LOG=$p/killed "$C_SEND" -C "$p/m/imapd.conf" -t 30 -e "$srep 2>>$p/server.err" <"$p/f2" >>"$p/send.out" 2>>"$p/send.err" &
	local s=$!
	C_PIDS="$t $pl $s"
}

# Wait for pids, at most $2 seconds; then SIGKILL what is left.  The
# exit statuses are left in C_RC[pid].
declare -gA C_RC=()
crash_wait() {
	local pids=$1 limit=$2 i p alive
	for ((i = 0; i < limit * 10; i++)); do
		alive=0
		for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for p in $pids; do
		if kill -0 "$p" 2>/dev/null; then
			echo "pid $p still running after ${limit}s: killed" >>"$C_P/why.hang"
			kill -KILL "$p" 2>/dev/null
		fi
		wait "$p" 2>/dev/null
		C_RC[$p]=$?
	done
}

# Is $1 a live process (not gone, not a zombie)?
crash_alive() {
	local st
	st=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
	st=${st##*) }
	[[ ${st%% *} != [ZX] ]]
}

# Count the csync commands in what a client wrote, as killproxy.py does.
crash_ncmds() {
	[[ -e $1 ]] || { echo 0; return; }
	{ echo; cat "$1"; } | grep -a -c -E '^(APPLY|GET|RESTORE) '
}

# crash_tail_points DIR: run synclog-tail -1 under strace on a copy of the
# template, print the places it can be killed at: SYSCALL:N for the Nth
# write, rename, fsync, unlink, openat, fcntl, readlink, read, close and
# exit_group after the dynamic loader is done.
crash_tail_points() {
	local q=$1/tp
	crash_bins
	rm -rf "$q"
	cp -a "$1/tmpl" "$q"
	crash_conf "$q/m" log
	strace -f -o "$q/trace" -e trace=write,rename,renameat,renameat2,fsync,fdatasync,unlink,unlinkat,openat,fcntl,readlink,read,close,exit_group \
	    "$C_TAIL" -C "$q/m/imapd.conf" -1 2>/dev/null | cat >/dev/null
	awk '{ sub(/^[0-9]+ +/, ""); n = $0; sub(/\(.*/, "", n) }
	    n !~ /^[a-z_0-9]+$/ { next }
	    { c[n]++ }
	    !go && n == "openat" && $0 ~ /imapd\.conf/ { go = 1 }
	    go { print n ":" c[n] }' "$q/trace"
	rm -rf "$q"
}

# A writer changing the master while the pipeline runs.
crash_writer() {
	local m=$1 n=$2 i
	for ((i = 1; i <= n; i++)); do
		printf 'Subject: live %d\r\n\r\nlive %d\r\n' "$i" "$i" |
		    "$C_STORE" -C "$m" deliver user.u2 >/dev/null 2>&1
		"$C_STORE" -C "$m" flag user.u3 "$i" '\Flagged' >/dev/null 2>&1
		sleep 0.0$((RANDOM % 5))
	done
}

# crash_point DIR TOOL DELAY
crash_point() {
	local dir=$1 tool=$2 delay=$3
	local p=$dir/p
	local t pl s victim pids k
	C_P=$p
	crash_bins
	rm -rf "$p"
	cp -a "$dir/tmpl" "$p"
	: >"$p/killed"
	# the template's paths are rewritten for the copy
	crash_conf "$p/m" log
	crash_conf "$p/r"
	: >"$p/why"
	crash_writer "$p/m/imapd.conf" 5 &
	local w=$!
	local CRASH_AT= CRASH_TAIL_INJECT=
	if [[ $delay == sys:* ]]; then
		if [[ $tool != synclog-tail ]]; then
			echo "sys: points are for synclog-tail only" >"$p/why"
			wait "$w"
			return 1
		fi
		CRASH_TAIL_INJECT=${delay#sys:}
		crash_pipe_bg "$p"
		CRASH_TAIL_INJECT=
		crash_wait "$C_PIDS" 60
		if [[ $(cat "$p/tail.rc" 2>/dev/null) == 137 ]]; then
			echo "killed synclog-tail at ${delay#sys:}" >>"$p/killed"
		else
			echo "synclog-tail not killed at ${delay#sys:} (exit $(cat "$p/tail.rc" 2>/dev/null))" >>"$p/killed"
		fi
		wait "$w"
		crash_rerun "$p"
		return
	fi
	if [[ $delay == cmd:* ]]; then
		case $tool in
		sync_server) CRASH_AT="${delay#cmd:} server send" ;;
		sync-send) CRASH_AT="${delay#cmd:} client send" ;;
		sync-plan) CRASH_AT="${delay#cmd:} client plan" ;;
		esac
	fi
	crash_pipe_bg "$p"
	if [[ -n $CRASH_AT ]]; then
		CRASH_AT=
		crash_wait "$C_PIDS" 60
		if [[ $tool == sync_server ]]; then
			# tee ends when sync-send closes its end
			for k in $(seq 200); do
				crash_alive "$(cat "$p/tee.pid" 2>/dev/null || echo 0)" || break
				sleep 0.05
			done
			k=$(crash_ncmds "$p/c2s")
			if ((k >= ${delay#cmd:})); then
				echo "killed sync_server after ${delay#cmd:} commands" >>"$p/killed"
			else
				echo "sync_server not running after ${delay#cmd:} commands (the client sent $k)" >>"$p/killed"
			fi
		elif ! grep -q '^killed' "$p/killed"; then
			echo "$tool not running after ${delay#cmd:} commands" >>"$p/killed"
		fi
		wait "$w"
		crash_rerun "$p"
		return
	fi
	read -r t pl s <<<"$C_PIDS"
	if [[ $tool == sync_server ]]; then
		# time from the moment sync-send's replica is up
		for k in $(seq 500); do
			crash_desc "$s" | while read -r x; do cat /proc/"$x"/comm; done 2>/dev/null |
			    grep -qx sync_server && break
			sleep 0.01
		done
	fi
	sleep "$delay"
	case $tool in
	synclog-tail) victim=$t ;;
	sync-plan) victim=$pl ;;
	sync-send) victim=$s ;;
	sync_server)
		victim=
		for k in $(crash_desc "$s"); do
			[[ $(cat /proc/"$k"/comm 2>/dev/null) == sync_server ]] && victim=$k
		done ;;
	none) victim= ;;
	*) echo "unknown tool $tool" >"$p/why"; victim= ;;
	esac
	if [[ -n $victim ]] && crash_alive "$victim" && kill -KILL "$victim" 2>/dev/null; then
		k="killed $tool ($victim) at ${delay}s"
	else
		k="$tool not running at ${delay}s"
		victim=
	fi
	crash_wait "$C_PIDS" 60
	# our own children: the kill counts only if it is what ended them
	if [[ -n $victim && $tool != sync_server && ${C_RC[$victim]:-} != 137 ]]; then
		k="$tool not running at ${delay}s (exit ${C_RC[$victim]:-?})"
	fi
	echo "$k" >>"$p/killed"
	wait "$w"
	crash_rerun "$p"
}

crash_rerun() {
	local p=$1 k
	# Rerun until nothing is left to replicate (at most 6 rounds).
	for k in 1 2 3 4 5 6; do
		crash_pipe_bg "$p"
		crash_wait "$C_PIDS" 120
		[[ ! -e $p/m/conf/sync/log && ! -e $p/m/conf/sync/log-run ]] && break
	done
	crash_check "$p"
}

crash_check() {
	local p=$1
	local why=$p/why
	if [[ -s $p/why.hang ]]; then
		cat "$p/why.hang" >>"$why"
	fi
	if [[ -e $p/m/conf/sync/log-run ]]; then
		echo "claimed log-run left behind" >>"$why"
	fi
	if [[ -e $p/m/conf/sync/log ]]; then
		echo "sync log not drained after the reruns" >>"$why"
	fi
	"$C_STORE" -C "$p/m/imapd.conf" dump >"$p/m.dump" 2>>"$why" ||
	    echo "master dump failed" >>"$why"
	"$C_STORE" -C "$p/r/imapd.conf" dump >"$p/r.dump" 2>>"$why" ||
	    echo "replica dump failed" >>"$why"
	if ! diff -u "$p/m.dump" "$p/r.dump" >"$p/dump.diff"; then
		echo "replica differs from master: $(grep -c '^[-+][^-+]' "$p/dump.diff") lines (dump.diff)" >>"$why"
	fi
	local s
	for s in m r; do
		if ! "$C_STORE" -C "$p/$s/imapd.conf" verify >"$p/$s.verify" 2>&1 ||
		    ! grep -q ': 0 faults' "$p/$s.verify"; then
			echo "verify of $s: $(tail -n 1 "$p/$s.verify")" >>"$why"
		fi
	done
	if grep -a -E 'ERROR: AddressSanitizer|runtime error:' "$p"/*.err >/dev/null 2>&1; then
		echo "sanitizer report in $(grep -l -a -E 'ERROR: AddressSanitizer|runtime error:' "$p"/*.err)" >>"$why"
	fi
	[[ ! -s $why ]]
}
