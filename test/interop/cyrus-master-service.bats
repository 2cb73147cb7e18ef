#!/usr/bin/env bats
# Our sync_server as an entry of the SERVICES section of cyrus.conf,
# started by Cyrus's own master(8) (the Debian package's), and a real
# Cyrus 3.6 sync_client replicating into it.
#
# master(8) hands a SERVICES program its status pipe (descriptor 3) and
# the service's listening socket (descriptor 4); sync_server accepts one
# connection there, tells master it is busy, serves it and exits.  The
# peer is a TCP client: it must AUTHENTICATE (PLAIN as repluser).

load ../helpers
load interop

MASTER_BIN=/usr/lib/cyrus/bin/master

setup_file() {
	local i
	export CYRUS_PAIR_SYNC_TIMEOUT=${CYRUS_PAIR_SYNC_TIMEOUT:-120}
	if [[ ! -x $MASTER_BIN ]]; then
		echo "$MASTER_BIN is missing (cyrus-pair install)" >&2
		return 1
	fi
	ia_workdir
	chmod 755 "$D"
	mkdir -p "$D/rec" "$D/ours" "$D/svc/conf" "$D/svc/spool"

	ia_our_conf

	# master(8)'s own configuration: only our service.
	cat >"$D/svc/imapd.conf" <<-EOF
	configdirectory: $D/svc/conf
	partition-default: $D/svc/spool
	EOF
	cat >"$D/svc/cyrus.conf" <<-EOF
	SERVICES {
	  csync cmd="$(sp_sync_server_bin) -C $OURS/imapd.conf" listen="127.0.0.1:$PORT" prefork=0 maxchild=10
	}
	EOF
	# master runs its services as the cyrus user.
	chown -R cyrus:mail "$D/svc" "$OURS"
	setsid "$MASTER_BIN" -C "$D/svc/imapd.conf" -M "$D/svc/cyrus.conf" \
	    -p "$D/svc/master.pid" -L "$D/svc/master.log" \
	    </dev/null >>"$D/svc/master.log" 2>&1 &
	echo $! >"$D/svc/launch.pid"
	for ((i = 0; i < 100; i++)); do
		sp_port_open "$PORT" && break
		sleep 0.1
	done
	sp_port_open "$PORT" || {
		echo "master(8) is not listening on $PORT:" >&2
		cat "$D/svc/master.log" >&2
		return 1
	}

	ia_up "$D" --only master --sync-target "127.0.0.1:$PORT"
	ia_populate cyrus_pair populate "$D" alice 50 --seed 7
}

teardown_file() {
	local pid i
	ia_dir || return 0
	if [[ -s $D/svc/launch.pid ]]; then
		pid=$(<"$D/svc/launch.pid")
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		# setsid made master a process group leader: take what is left.
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	ia_teardown
}

# our_processes: our sync_server processes serving this store.
our_processes() {
	pgrep -f -- "-C $OURS/imapd.conf" | grep -vx "$$" || true
}

@test "master(8) SERVICES: the banner comes from our sync_server, which asks for AUTHENTICATE" {
	run banner_then_get "$PORT"
	echo "$output"
	[[ $status -eq 0 ]]
	grep -Eq '^\* SASL .*PLAIN' <<<"$output"
	grep -q '^\* OK .*syncpipe sync server' <<<"$output"
	[[ ${lines[-2]} == 'NO Please authenticate first' ]]
	[[ ${lines[-1]} == OK* ]]
}

@test "master(8) SERVICES: Cyrus sync_client -u alice authenticates and succeeds" {
	run cyrus_pair sync "$D" --record "$D/rec/full.txt" -u alice
	echo "$output" | tail -n 10
	[[ $status -eq 0 ]] || {
		tail -n 20 "$D/svc/master.log"
		ia_master_syslog
		false
	}
	grep -q '^C: AUTHENTICATE PLAIN ' "$D/rec/full.txt"
	grep -q '^C: APPLY MESSAGE ' "$D/rec/full.txt"
}

@test "master(8) SERVICES: our store describes alice as the Cyrus master does" {
	run ia_compare_user alice
	echo "$output"
	[[ $status -eq 0 ]]
	run ia_bodies $(cat "$D/cmp/mboxes.alice")
	echo "$output"
	[[ $status -eq 0 ]]
}

@test "master(8) SERVICES: a second sync_client -u alice sends nothing; no process is left behind" {
	run cyrus_pair sync "$D" --record "$D/rec/again.txt" -u alice
	[[ $status -eq 0 ]]
	run ia_nothing_sent "$D/rec/again.txt"
	echo "$output"
	[[ $status -eq 0 ]]
	# One process a connection, each gone once its client left (master
	# keeps none waiting: prefork=0).
	for ((i = 0; i < 50; i++)); do
		[[ -z $(our_processes) ]] && break
		sleep 0.1
	done
	[[ -z $(our_processes) ]]
	# master(8) was told of each connection: no complaint in its log
	# about a child it did not expect to exit.
	! grep -Eqi 'unknown state|not in a ready state' "$D/svc/master.log"
}
