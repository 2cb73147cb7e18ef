# common.bash: helpers for scripts/bench (sourced, not run).
#
# Everything lives under the run's work directory $W.  Our servers are
# started and stopped by pid files in their store directory; Cyrus
# instances by cyrus-pair up/down.  Nothing else is ever signalled.

# bench_log MESSAGE...: progress on stderr.
bench_log() {
	printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

die() {
	bench_log "FATAL: $*"
	exit 1
}

# now: seconds since the epoch, microsecond resolution.
now() {
	printf '%s\n' "$EPOCHREALTIME"
}

# elapsed T0 T1: T1 - T0, 3 decimals.
elapsed() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'
}

# A TCP port free on 127.0.0.1 right now.
freeport() {
	"$PYTHON" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cp_run() {
	"$CP" "$@" 3>&-
}

# The interpreter python3 names, resolved once (a version manager's
# wrapper costs a shell or two at every start), for the harness too.
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
export PYTHON

# settle: write back what earlier steps left dirty (a copied store, a
# replica just set up) before a timed run, so that a replica's flushes
# do not wait on another run's data.  Not part of any measured time.
settle() {
	sync
}

# phase NAME: close the phase open so far (its wall time to
# $W/phases.tsv) and open NAME; "phase -" only closes.  A phase whose name
# holds "timed" or "lag" measures: the trash is not emptied meanwhile.
PHASE= PHASE_T0=
phase() {
	local t
	t=$(now)
	if [[ -n $PHASE ]]; then
		printf '%s\t%s\n' "$PHASE" "$(elapsed "$PHASE_T0" "$t")" >>"$W/phases.tsv"
	fi
	PHASE=$1 PHASE_T0=$t
	[[ $1 == - ]] && PHASE=
	case $PHASE in
	*timed*|*lag*) trash_pause ;;
	*) trash_resume ;;
	esac
	[[ -z $PHASE ]] || bench_log "phase: $PHASE"
}

# The trash: removing a store or a Cyrus instance (tens of thousands of
# files) takes a minute or more here, so what is done with is moved
# under $W/trash at once and removed by one process in its own session,
# stopped (SIGSTOP to its process group) while a phase measures and
# continued otherwise.  trash_empty: wait until it is empty.
TRASH_PID= TRASH_N=0
trash_start() {
	mkdir -p "$W/trash"
	setsid bash -c 'while [[ -d $1 ]]; do
		for d in "$1"/*; do [[ -e $d ]] && rm -rf "$d"; done
		sleep 0.5
	done' trash "$W/trash" </dev/null >/dev/null 2>&1 &
	TRASH_PID=$!
}
trash() {
	local d
	for d in "$@"; do
		[[ -e $d ]] || continue
		TRASH_N=$((TRASH_N + 1))
		mv "$d" "$W/trash/$TRASH_N.${d##*/}" 2>/dev/null || rm -rf "$d"
	done
}
trash_pause() {
	[[ -n $TRASH_PID ]] && kill -STOP -- "-$TRASH_PID" 2>/dev/null
	true
}
trash_resume() {
	[[ -n $TRASH_PID ]] && kill -CONT -- "-$TRASH_PID" 2>/dev/null
	true
}
trash_empty() {
	trash_resume
	while [[ -n $(ls -A "$W/trash" 2>/dev/null) ]]; do sleep 0.5; done
}
trash_stop() {
	[[ -n $TRASH_PID ]] || return 0
	kill -CONT -- "-$TRASH_PID" 2>/dev/null
	kill -TERM -- "-$TRASH_PID" 2>/dev/null
	wait "$TRASH_PID" 2>/dev/null || true
	TRASH_PID=
	true
}

# --- our store and server -------------------------------------------------

# store_new DIR: an empty store of ours in DIR (config DIR/imapd.conf) with
# the replication user in its sasldb.  Durability settings are left at their
# defaults (on).
store_new() {
	local dir=$1
	mkdir -p "$dir/conf" "$dir/spool" "$dir/sieve"
	cat >"$dir/imapd.conf" <<-EOF
	configdirectory: $dir/conf
	partition-default: $dir/spool
	sievedir: $dir/sieve
	servername: syncpipe-bench
	admins: repluser
	allowplaintext: yes
	sasl_pwcheck_method: auxprop
	sasl_auxprop_plugin: sasldb
	sasl_sasldb_path: $dir/conf/sasldb2
	sasl_mech_list: PLAIN LOGIN
	failedloginpause: 0
	EOF
	printf '%s' replpass |
	    saslpasswd2 -c -p -f "$dir/conf/sasldb2" -u syncpipe-bench repluser
}

# server_start DIR: start our sync_server on DIR's store on a free port;
# the port goes to DIR/port, the pid to DIR/sync_server.pid.
server_start() {
	local dir=$1 port pid i
	port=$(freeport)
	"$ROOT/cmd/sync_server/sync_server" -C "$dir/imapd.conf" \
	    --listen "127.0.0.1:$port" >>"$dir/sync_server.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/sync_server.pid"
	echo "$port" >"$dir/port"
	for ((i = 0; i < 100; i++)); do
		port_open "$port" && return 0
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir/sync_server.log" >&2; die "our sync_server did not start"; }
		sleep 0.1
	done
	die "our sync_server on port $port is not answering"
}

# server_stop DIR: stop the server server_start started there.
server_stop() {
	local dir=$1 pid i
	[[ -s $dir/sync_server.pid ]] || return 0
	pid=$(<"$dir/sync_server.pid")
	rm -f "$dir/sync_server.pid"
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
}

# store_as_master SRC DST: copy the (stopped) store SRC to DST and make it
# a master: sync_log on, credentials for the replica.
store_as_master() {
	local src=$1 dst=$2
	mkdir -p "$dst"
	cp -a "$src/conf" "$src/spool" "$src/sieve" "$dst/"
	sed "s#$src/#$dst/#g" "$src/imapd.conf" >"$dst/imapd.conf"
	cat >>"$dst/imapd.conf" <<-EOF
	sync_log: 1
	sync_authname: repluser
	sync_password: replpass
	EOF
	rm -rf "$dst/conf/sync"
}

# store_make_master DIR: turn the (stopped) store DIR into a master in
# place: sync_log on from now, credentials for the replica.
store_make_master() {
	cat >>"$1/imapd.conf" <<-EOF
	sync_log: 1
	sync_authname: repluser
	sync_password: replpass
	EOF
	rm -rf "$1/conf/sync"
}

# store_fill DIR MBOX MSGDIR FIRST COUNT: create MBOX and deliver
# MSGDIR/FIRST .. MSGDIR/FIRST+COUNT-1 into it, durable batches of up to
# 4,000 files (one deliver takes at most 4,095).
store_fill() {
	local dir=$1 mbox=$2 msgs=$3 first=$4 count=$5
	"$ROOT/cmd/sync-store/sync-store" -C "$dir/imapd.conf" create "$mbox" >/dev/null ||
	    return 1
	(cd "$msgs" && seq "$first" $((first + count - 1)) | xargs -n 4000 \
	    "$ROOT/cmd/sync-store/sync-store" -C "$dir/imapd.conf" deliver "$mbox" >/dev/null)
}

# store_count DIR USER: message records of USER in our store.
store_count() {
	"$ROOT/cmd/sync-store/sync-store" -C "$1/imapd.conf" dump "$2" |
	    grep -c '^record' || true
}

# store_check DIR USER WANT: our store holds WANT records and verifies.
store_check() {
	local n
	n=$(store_count "$1" "$2")
	[[ $n == "$3" ]] || { bench_log "our store $1: $n records, want $3"; return 1; }
	"$ROOT/cmd/sync-store/sync-store" -C "$1/imapd.conf" verify >"$1/verify.out" 2>&1 ||
	    { bench_log "sync-store verify failed in $1"; cat "$1/verify.out" >&2; return 1; }
}

# --- Cyrus ------------------------------------------------------------------

# The harness compiles its syslog shim into every new instance directory;
# the first one built is kept in $W/shim and put in place beforehand for
# the others (cy_shim DIR: keep or place it).
cy_shim() {
	local so=lib/cyrus-pair-syslog.so
	if [[ -f $W/shim/$so ]]; then
		[[ -f $1/$so ]] && return 0
		mkdir -p "$1/lib"; chmod 755 "$1" "$1/lib"
		cp -p "$W/shim/$so" "$1/$so"
	elif [[ -f $1/$so ]]; then
		mkdir -p "$W/shim/lib"
		cp -p "$1/$so" "$W/shim/$so"
	fi
}

# cy_up DIR ARGS...: cyrus-pair up DIR ARGS, its output in DIR.up.log.
cy_up() {
	local d=$1
	shift
	cy_shim "$d"
	cp_run up "$d" "$@" >"$d.up.log" 2>&1 || { cat "$d.up.log" >&2; return 1; }
	cy_shim "$d"
}

# cy_start DIR ARGS...: cy_up in the background (its pid added to
# CY_PIDS); returns once DIR's ports are taken (ports.env written), so that
# the next instance started picks its own.  cy_wait: wait for all of them.
# Only ever between timed runs.
CY_PIDS=()
cy_start() {
	local d=$1 p
	cy_up "$@" & p=$!
	CY_PIDS+=("$p")
	while [[ ! -s $d/ports.env ]] && kill -0 "$p" 2>/dev/null; do
		sleep 0.05
	done
}
cy_wait() {
	local p bad=
	for p in "${CY_PIDS[@]}"; do wait "$p" || bad=1; done
	CY_PIDS=()
	[[ -z $bad ]] || die "cyrus-pair up of an instance failed"
}

# cy_port DIR: the csync port of DIR's replica.
cy_port() {
	(. "$1/ports.env" && echo "$REPLICA_CSYNC_PORT")
}

cy_down() {
	[[ -d $1 ]] && cp_run down "$1" >/dev/null 2>&1
	trash "$1"
	rm -f "$1.up.log" "$1.dump"
}

# cy_downs_bg DIR...: cy_down of each in the background; the next cy_wait
# (before any timed run) waits for them too.
cy_downs_bg() {
	local d
	for d in "$@"; do cy_down "$d" & CY_PIDS+=($!); done
}

# cy_checks MASTERDUMP USER DIR...: cy_check of each replica, side by side;
# fails if one does.
cy_checks() {
	local dump=$1 user=$2 d p pids=() bad=
	shift 2
	for d in "$@"; do
		cy_check "$d" "$user" "$dump" & pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || bad=1; done
	[[ -z $bad ]]
}

# dump_matches DUMP MSGDIR N: the Cyrus dump DUMP holds N messages whose
# bodies are exactly the files MSGDIR/0 .. N-1 (by SHA-1 with bodies in the
# dump, else by EMAILID, which is "M" and the first 24 hex digits of it).
dump_matches() {
	local dump=$1 msgs=$2 n=$3 got
	got=$(grep -c '^  msg ' "$dump" || true)
	[[ $got == "$n" ]] || { bench_log "$dump: $got messages, want $n"; return 1; }
	if grep -q '^  msg .* sha1=' "$dump"; then
		cmp -s <(awk '/^  msg /{ for (i = 1; i <= NF; i++) if ($i ~ /^sha1=/) print substr($i, 6) }' "$dump" | sort) \
		    <(cd "$msgs" && seq 0 $((n - 1)) | xargs sha1sum | awk '{ print $1 }' | sort)
	else
		cmp -s <(awk '/^  msg /{ for (i = 1; i <= NF; i++) if ($i ~ /^emailid=/) print substr($i, 9) }' "$dump" | sort) \
		    <(cd "$msgs" && seq 0 $((n - 1)) | xargs sha1sum | awk '{ print "M" substr($1, 1, 24) }' | sort)
	fi || { bench_log "$dump: the bodies are not those delivered from $msgs"; return 1; }
}

# cy_count DIR SIDE USER: messages of USER over IMAP.
cy_count() {
	cp_run dump "$1" "$2" "$3" --no-bodies | grep -c '^  msg' || true
}

# cy_check DIR USER MASTERDUMP: the replica's dump (bodies included) equals
# the master's.
cy_check() {
	cp_run dump "$1" replica "$2" >"$1.dump" 2>&1 || { bench_log "dump of $1 failed"; return 1; }
	if ! cmp -s <(sed 1d "$3") <(sed 1d "$1.dump"); then
		bench_log "Cyrus replica $1 differs from the master:"
		diff -u <(sed 1d "$3") <(sed 1d "$1.dump") | head -n 20 >&2
		return 1
	fi
}

# cy_sync DIR TIMINGFILE ARGS...: Cyrus's sync_client; prints its wall time.
cy_sync() {
	local d=$1 t=$2
	shift 2
	: >"$t"
	settle
	CYRUS_PAIR_TIMING=$t cp_run sync "$d" --log "$t.log" "$@" ||
	    { tail -n 20 "$t.log" >&2; die "Cyrus sync_client $* failed"; }
	awk 'NR == 1 { print $1 }' "$t"
}

# cy_mboxdir DIR USER: the spool directory of USER's INBOX on the master.
cy_mboxdir() {
	local uid
	uid=$(cp_run dump "$1" master "$2" --no-bodies |
	    awk '/metadata \/shared\/vendor\/cmu\/cyrus-imapd\/uniqueid=/ { sub(/.*uniqueid=/, ""); print; exit }')
	find "$1/master/spool" -type d -name "$uid" | head -n 1
}

# --- our client ---------------------------------------------------------------

# our_sync MASTERDIR PORT ARGS...: our sync_client; prints its wall time.
our_sync() {
	local m=$1 port=$2 t0 t1
	shift 2
	settle
	t0=$(now)
	"$ROOT/cmd/sync_client/sync_client" -C "$m/imapd.conf" \
	    -S "127.0.0.1:$port" "$@" >>"$m/client.log" 2>&1 ||
	    { tail -n 20 "$m/client.log" >&2; die "our sync_client $* failed"; }
	t1=$(now)
	elapsed "$t0" "$t1"
}

# --- results ------------------------------------------------------------------

# result WORKLOAD PATH RUN SECONDS MSGS BYTES: one raw line.
result() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"
	bench_log "w$1 $2 run $3: $4 s ($5 msgs, $6 bytes)"
}
