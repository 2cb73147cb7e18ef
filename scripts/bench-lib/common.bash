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
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cp_run() {
	"$CP" "$@" 3>&-
}

# settle: write back what earlier steps left dirty (a copied store, a
# replica just set up) before a timed run, so that a replica's flushes
# do not wait on another run's data.  Not part of any measured time.
settle() {
	sync
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

# cy_replica_new DIR: a fresh Cyrus replica; prints its csync port.
cy_replica_new() {
	cp_run up "$1" --only replica >"$1.up.log" 2>&1 || { cat "$1.up.log" >&2; die "cyrus-pair up $1"; }
	(. "$1/ports.env" && echo "$REPLICA_CSYNC_PORT")
}

cy_down() {
	[[ -d $1 ]] && cp_run down "$1" >/dev/null 2>&1
	rm -rf "$1" "$1.up.log"
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
