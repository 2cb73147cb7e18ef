# helpers.bash: shared helpers for the bats tests.  Load with
#   load helpers            (from test/*.bats)
#   load ../helpers         (from test/interop/*.bats)
#
# Environment:
#   CYRUS_PAIR    path of the cyrus-pair harness
#                 (default: ../shared/peer/cyrus-pair beside the project)
#   SYNC_SERVER   the sync_server binary (default: cmd/sync_server/sync_server)
#   SP_KEEP=1     keep temp dirs made by sp_tmpdir (sp_rmtmp does nothing)
#   SANITIZE=1    the tools are ASan + UBSan builds (make all SANITIZE=1);
#                 when bats runs alone (not under scripts/run-tests, which
#                 sends reports to files it checks), a report aborts the
#                 tool that made it, on stderr.  Leaks count for
#                 sync_server, and for every tool with SANITIZE_LEAKS=all
#                 (as in scripts/run-tests)

SP_HELPERS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ ${SANITIZE:-0} == 1 && ${ASAN_OPTIONS:-} != *log_path=* ]]; then
	SP_LSAN_SUPP=${BATS_RUN_TMPDIR:-${BATS_TMPDIR:-/tmp}}/syncpipe-lsan.supp
	if [[ ${SANITIZE_LEAKS:-server} == all ]]; then
		: >"$SP_LSAN_SUPP"
	else
		printf 'leak:/cmd/%s/%s\n' synclog-tail synclog-tail \
		    sync-plan sync-plan sync-send sync-send \
		    sync-store sync-store >"$SP_LSAN_SUPP"
	fi
	export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:print_stacktrace=1
	export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
	export LSAN_OPTIONS=suppressions=$SP_LSAN_SUPP:print_suppressions=0
fi

# The project root (the directory holding the Makefile).
sp_project_root() {
	(cd "$SP_HELPERS_DIR/.." && pwd)
}

# A fresh temp dir, mode 0755 so the cyrus user can enter it; prints it.
sp_tmpdir() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/syncpipe-test.XXXXXX") || return 1
	chmod 755 "$d"
	echo "$d"
}

# Remove a dir made by sp_tmpdir, unless SP_KEEP=1.
sp_rmtmp() {
	[[ -n ${1:-} && -d $1 ]] || return 0
	if [[ ${SP_KEEP:-0} == 1 ]]; then
		echo "# kept: $1" >&3
		return 0
	fi
	case $1 in
	"${TMPDIR:-/tmp}"/syncpipe-test.*) rm -rf "$1" ;;
	*) echo "sp_rmtmp: refusing to remove $1" >&2; return 1 ;;
	esac
}

# A TCP port free on 127.0.0.1 right now; prints it.
sp_freeport() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# sp_conf FILE [SERVERNAME]: write an imapd.conf-format config for our
# tools; everything it names lives in FILE's directory (conf/, spool/,
# sieve/), which is created.  The SASL realm of sasldb users is SERVERNAME
# (default syncpipe-test).
sp_conf() {
	local file=$1 name=${2:-syncpipe-test} dir
	dir=$(cd "$(dirname "$file")" && pwd) || return 1
	mkdir -p "$dir/conf" "$dir/spool" "$dir/sieve"
	cat >"$file" <<-EOF
	configdirectory: $dir/conf
	partition-default: $dir/spool
	sievedir: $dir/sieve
	servername: $name
	admins: repluser
	allowplaintext: yes
	sasl_pwcheck_method: auxprop
	sasl_auxprop_plugin: sasldb
	sasl_sasldb_path: $dir/conf/sasldb2
	sasl_mech_list: PLAIN LOGIN
	failedloginpause: 0
	EOF
}

# sp_sasluser SASLDB REALM USER PASS: add (or replace) a sasldb user.
sp_sasluser() {
	local db=$1 realm=$2 user=$3 pass=$4
	printf '%s' "$pass" | saslpasswd2 -c -p -f "$db" -u "$realm" "$user"
}

sp_sync_server_bin() {
	echo "${SYNC_SERVER:-$(sp_project_root)/cmd/sync_server/sync_server}"
}

# sp_port_open PORT: true when something accepts on 127.0.0.1:PORT.
sp_port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# sp_server_start CONF PORT: start our sync_server listening on
# 127.0.0.1:PORT in the background and wait (SP_START_TIMEOUT, 10 s) until
# the port answers.  Its pid goes to CONF's directory (sync_server.pid),
# its output to sync_server.log there.
sp_server_start() {
	local conf=$1 port=$2 bin dir pid i limit
	bin=$(sp_sync_server_bin)
	dir=$(cd "$(dirname "$conf")" && pwd) || return 1
	if [[ ! -x $bin ]]; then
		echo "sp_server_start: $bin is not built" >&2
		return 1
	fi
	# fd 3 closed: bats waits for every holder of its output pipe.
	"$bin" -C "$conf" --listen "127.0.0.1:$port" \
	    >"$dir/sync_server.log" 2>&1 3>&- &
	pid=$!
	echo "$pid" >"$dir/sync_server.pid"
	limit=$(( ${SP_START_TIMEOUT:-10} * 10 ))
	for ((i = 0; i < limit; i++)); do
		if sp_port_open "$port"; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "sp_server_start: sync_server exited; its log:" >&2
			tail -n 30 "$dir/sync_server.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "sp_server_start: 127.0.0.1:$port not answering after ${SP_START_TIMEOUT:-10}s" >&2
	tail -n 30 "$dir/sync_server.log" >&2
	return 1
}

# sp_server_stop CONF: stop the sync_server sp_server_start started for
# CONF (SIGTERM, then SIGKILL after 10 s).
sp_server_stop() {
	local dir pidf pid i
	dir=$(cd "$(dirname "$1")" 2>/dev/null && pwd) || return 0
	pidf=$dir/sync_server.pid
	[[ -s $pidf ]] || return 0
	pid=$(<"$pidf")
	rm -f "$pidf"
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "sp_server_stop: pid $pid ignored SIGTERM; killing it" >&2
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null || true
}

# Path of the cyrus-pair harness.
sp_cyrus_pair_path() {
	echo "${CYRUS_PAIR:-$(sp_project_root)/../shared/peer/cyrus-pair}"
}

# cyrus_pair ARGS...: run the harness (see ../shared/peer/README.md).
cyrus_pair() {
	local p
	p=$(sp_cyrus_pair_path)
	if [[ ! -x $p ]]; then
		echo "cyrus_pair: harness not found at $p (set CYRUS_PAIR)" >&2
		return 127
	fi
	"$p" "$@" 3>&-
}

# csync ARGS...: the test csync client (test/interop/csync.py).
csync() {
	python3 "$SP_HELPERS_DIR/interop/csync.py" "$@"
}
