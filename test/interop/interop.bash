# interop.bash: helpers shared by the interop tests that compare a Cyrus
# instance's csync answers with ours.  Load after ../helpers:
#
#   load ../helpers
#   load interop
#
# The comparisons go through csync.py (or csync-tls.py when our server
# only offers PLAIN after STARTTLS), which prints every data line in a
# canonical form, so two servers encoding the same value differently on
# the wire compare equal.

# Which csync client talks to our server: csync (plain) or csync_tls.
: "${OURS_CSYNC:=csync}"

# csync_tls ARGS...: csync.py's options, STARTTLS first when offered.
csync_tls() {
	python3 "$SP_HELPERS_DIR/interop/csync-tls.py" "$@"
}

# ia_master ARGS...: csync against the Cyrus master's own csync service
# (needs D with ports.env).
ia_master() {
	(
		. "$D/ports.env"
		csync --user "$REPL_USER" --password "$REPL_PASS" \
		    127.0.0.1 "$MASTER_CSYNC_PORT" "$@"
	)
}

# ia_ours ARGS...: the same against our sync_server on $PORT.
ia_ours() {
	"$OURS_CSYNC" --user repluser --password replpass 127.0.0.1 "$PORT" "$@"
}

# ia_diff LABEL FILE_A FILE_B: print a bounded diff, return 1 if they differ.
ia_diff() {
	if cmp -s "$2" "$3"; then
		return 0
	fi
	echo "--- $1 differs (master vs ours):"
	diff -u "$2" "$3" | head -n "${IA_DIFF_LINES:-80}" | cut -c1-300
	return 1
}

# ia_norm: filter csync.py output, leaving out what legitimately differs
# between a Cyrus master and any replica of it:
#   QUOTA MODSEQ: the master moves its quota root's modseq on every usage
#   change (append, expunge, annotation, sieve upload...); the replica
#   only receives it with APPLY QUOTA, when a limit changes.  A Cyrus 3.6
#   replica behind a Cyrus 3.6 master shows the same lag (checked: after
#   a rolling append, master QUOTA MODSEQ 17, Cyrus replica 16).
ia_norm() {
	awk '
		/^QUOTA \{$/ { inq = 1 }
		inq && /^ "MODSEQ": / { next }
		/^\}$/ { inq = 0 }
		{ print }
	'
}

# ia_compare_user [--no-sieve] USER [EXTRA_MBOX...]: GET USER, GET META,
# GET QUOTA of the user's quota root (user.USER), and GET FULLMAILBOX of
# every mailbox the master lists for USER plus the EXTRA_MBOXes
# (internal names, e.g. DELETED.user.alice.X.5F00...), master vs ours,
# field by field (data items sorted per command).  One connection per
# side for all of it.  Output under $D/cmp/ (mboxes.USER, USER.master,
# USER.ours); returns 1 on any difference.  --no-sieve, for a replica
# that got the sieve scripts as APPLY SIEVE and has no #sieve mailbox:
# the #sieve mailboxes are left out, and so is GET QUOTA.
ia_compare_user() {
	local user out=$D/cmp nosieve=0 keep=cat
	local -a cmds
	if [[ ${1-} == --no-sieve ]]; then
		nosieve=1 keep=ia_no_sieve_mailbox
		shift
	fi
	user=$1
	shift
	mkdir -p "$out"
	{
		ia_master --mboxnames "GET USER $user" || true
		printf '%s\n' "$@"
	} | sed '/^$/d' |
	    if ((nosieve)); then grep -v '\.#sieve'; else cat; fi |
	    sort -u >"$out/mboxes.$user"
	cmds=("GET USER $user" "GET META $user")
	((nosieve)) || cmds+=("GET QUOTA user.${user//./^}")
	mapfile -t -O "${#cmds[@]}" cmds < <(sed 's/^/GET FULLMAILBOX /' "$out/mboxes.$user")
	ia_master --sort "${cmds[@]}" | ia_norm | "$keep" >"$out/$user.master" || true
	ia_ours --sort "${cmds[@]}" | ia_norm | "$keep" >"$out/$user.ours" || true
	grep -q '^= ' "$out/$user.master" || {
		echo "no answer from the master"
		return 1
	}
	ia_diff "GET USER/META/FULLMAILBOX $user" "$out/$user.master" \
	    "$out/$user.ours"
}

# ia_no_sieve_mailbox: csync.py output without the MAILBOX items of
# #sieve mailboxes.
ia_no_sieve_mailbox() {
	awk '
		/^MAILBOX \{$/ { blk = $0 "\n"; inb = 1; skip = 0; next }
		inb { blk = blk $0 "\n" }
		inb && /"MBOXNAME": ".*\.#sieve/ { skip = 1 }
		inb && /^\}$/ { if (!skip) printf "%s", blk; inb = 0; next }
		!inb { print }
	'
}

# ia_bodies MBOX...: every live body on our server has the master's GUID
# and size, and the per-mailbox counts agree.
ia_bodies() {
	local out=$D/cmp
	mkdir -p "$out"
	ia_master --verify-bodies "$@" >"$out/bodies.master" || {
		cat "$out/bodies.master"
		return 1
	}
	ia_ours --verify-bodies "$@" >"$out/bodies.ours" || {
		cat "$out/bodies.ours"
		return 1
	}
	ia_diff "bodies" "$out/bodies.master" "$out/bodies.ours"
}

# ia_nothing_sent RECORD: the recorded conversation holds no APPLY or
# RESTORE other than APPLY CAPABILITIES (the client found nothing to do),
# and it ended with EXIT.
ia_nothing_sent() {
	local extra
	grep -q '^C: EXIT' "$1" || {
		echo "no EXIT in $1"
		tail -n 20 "$1" | cut -c1-300
		return 1
	}
	extra=$(grep -E '^C: (APPLY|RESTORE|RESERVE) ' "$1" |
	    grep -v '^C: APPLY CAPABILITIES ' || true)
	if [[ -n $extra ]]; then
		echo "unexpected commands in $1:"
		printf '%s\n' "$extra" | cut -c1-300 | head -n 30
		return 1
	fi
}

# ia_server_log [N]: the tail of our server's log (for failure output).
ia_server_log() {
	echo "--- our sync_server log (tail)"
	tail -n "${1:-30}" "$OURS/sync_server.log" 2>/dev/null
}

# ia_master_syslog [N]: the tail of the Cyrus master's syslog.
ia_master_syslog() {
	echo "--- Cyrus master syslog (tail)"
	tail -n "${1:-15}" "$D/master/log/syslog" 2>/dev/null | cut -c1-300
}

# ia_mailbox FILE MBOXNAME: the canonical MAILBOX item of MBOXNAME in a
# csync.py output FILE (empty if there is none).
ia_mailbox() {
	awk -v want="\"MBOXNAME\": \"$2\"," '
		/^MAILBOX \{$/ { blk = $0 "\n"; inb = 1; hit = 0; next }
		inb { blk = blk $0 "\n"; if (index($0, want)) hit = 1 }
		inb && /^\}$/ { if (hit) printf "%s", blk; inb = 0 }
	' "$1"
}

# banner_then_get PORT: the banner, then the replies to a GET before
# any AUTHENTICATE and to EXIT.
banner_then_get() {
	python3 - "$@" <<-'EOF'
	import socket, sys
	s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
	f = s.makefile("rb")
	while True:
	    l = f.readline().decode().rstrip("\r\n")
	    print(l)
	    if not l.startswith("* ") or l.startswith("* OK"):
	        break
	s.sendall(b"GET USER alice\r\nEXIT\r\n")
	print(f.readline().decode().rstrip("\r\n"))
	print(f.readline().decode().rstrip("\r\n"))
	EOF
}

# ia_workdir: the start of setup_file: fail unless root (cyrus-pair up
# starts Cyrus's master as root), then make the work directory, exported
# as D; its path is kept in $BATS_FILE_TMPDIR/dir for ia_dir.
ia_workdir() {
	if ((EUID != 0)); then
		echo "the Cyrus peers need root (cyrus-pair up)" >&2
		return 1
	fi
	D=$(sp_tmpdir) || return 1
	export D
	echo "$D" >"$BATS_FILE_TMPDIR/dir"
}

# ia_dir: in teardown_file, set D to the work directory of ia_workdir;
# false when there is none.
ia_dir() {
	[[ -n ${D:-} ]] || D=$(cat "$BATS_FILE_TMPDIR/dir" 2>/dev/null) || true
	[[ -n ${D:-} ]]
}

# ia_teardown [SUB...]: the end of teardown_file: take down the Cyrus
# instances of $D (if cyrus-pair up got as far as its ports.env), stop
# our sync_server of each $D/SUB/imapd.conf (sp_server_start), and
# remove $D.
ia_teardown() {
	local sub
	ia_dir || return 0
	if [[ -e $D/ports.env ]]; then
		cyrus_pair down "$D" >/dev/null 2>&1 || true
	fi
	for sub; do
		sp_server_stop "$D/$sub/imapd.conf"
	done
	sp_rmtmp "$D"
}

# ia_up DIR [OPTION...]: cyrus-pair up DIR OPTIONs, its output in
# DIR/up.log, shown on failure.
ia_up() {
	cyrus_pair up "$@" >"$1/up.log" 2>&1 ||
	    { cat "$1/up.log" >&2; return 1; }
}

# ia_populate CMD [ARG...]: the data the tests start from, made by CMD
# (e.g. cyrus_pair populate "$D" alice 30, or a function of the test
# file); its output in $D/populate.log, shown on failure.  Then the Cyrus
# master's sync log, if any, is removed: what it holds later, the tests
# did.
ia_populate() {
	"$@" >"$D/populate.log" 2>&1 ||
	    { cat "$D/populate.log" >&2; return 1; }
	rm -f "$D/master/conf/sync/log"
}

# ia_server_conf DIR [LINE...]: DIR/imapd.conf for our sync_server, as
# sp_conf writes it (servername syncpipe-test) plus each LINE, and the
# SASL user repluser (password replpass), as whom the Cyrus side logs in.
ia_server_conf() {
	local dir=$1
	shift
	mkdir -p "$dir" || return 1
	sp_conf "$dir/imapd.conf" syncpipe-test || return 1
	if (($#)); then
		printf '%s\n' "$@" >>"$dir/imapd.conf" || return 1
	fi
	sp_sasluser "$dir/conf/sasldb2" syncpipe-test repluser replpass
}

# ia_our_conf [LINE...]: our store in $D/ours, exported as OURS, with
# ia_server_conf's imapd.conf, and a free port of 127.0.0.1 for our
# sync_server, exported as PORT.
ia_our_conf() {
	PORT=$(sp_freeport) || return 1
	export PORT
	export OURS=$D/ours
	ia_server_conf "$OURS" "$@"
}

# ia_our_server [LINE...]: ia_our_conf, and our sync_server listening on
# 127.0.0.1:$PORT (ia_teardown ours stops it).
ia_our_server() {
	ia_our_conf "$@" || return 1
	sp_server_start "$OURS/imapd.conf" "$PORT"
}

# ia_source_conf: $D/master-syncpipe.conf, exported as M: the Cyrus
# master's own imapd.conf (its sync log, sync_host...) plus where our
# tools read the master's state (its csync service, as REPL_USER).
# Sources $D/ports.env.
ia_source_conf() {
	# shellcheck disable=SC1091
	. "$D/ports.env" || return 1
	export M=$D/master-syncpipe.conf
	cat >"$M" <<-EOF
	@include: $D/master/imapd.conf
	sync_source_host: 127.0.0.1:$MASTER_CSYNC_PORT
	sync_source_authname: $REPL_USER
	sync_source_password: $REPL_PASS
	EOF
}

# ia_cyrus_replica: a Cyrus replica alone in $D (cyrus-pair up --only
# replica), its csync service's address exported as TARGET, and our
# store in $D/m as its master: $D/m/imapd.conf, exported as M, logs in
# to the replica as REPL_USER.  Sources $D/ports.env.
ia_cyrus_replica() {
	ia_up "$D" --only replica || return 1
	# shellcheck disable=SC1091
	. "$D/ports.env" || return 1
	export TARGET=127.0.0.1:$REPLICA_CSYNC_PORT
	mkdir -p "$D/m" || return 1
	export M=$D/m/imapd.conf
	sp_conf "$M" syncpipe-master || return 1
	cat >>"$M" <<-EOF
	sync_authname: $REPL_USER
	sync_password: $REPL_PASS
	EOF
}

# ia_tls_cert: a self-signed certificate for 127.0.0.1 and localhost,
# $D/cert.pem (readable by the cyrus user, for tls_client_ca_file), and
# its key, $D/key.pem.
ia_tls_cert() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
	    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
	    -keyout "$D/key.pem" -out "$D/cert.pem" >/dev/null 2>&1 ||
	    return 1
	chmod 644 "$D/cert.pem"
}

# ia_tls_only CONF: our server of CONF (written by sp_conf) offers PLAIN
# only under STARTTLS, with ia_tls_cert's certificate.
ia_tls_only() {
	sed -i 's/^allowplaintext: yes$/allowplaintext: no/' "$1" || return 1
	cat >>"$1" <<-EOF
	tls_server_cert: $D/cert.pem
	tls_server_key: $D/key.pem
	EOF
}

# ia_tools: for setup(): ROOT, the project, and the paths of our tools:
# TAIL (synclog-tail), PLAN (sync-plan), SEND (sync-send), STORE
# (sync-store) and CLIENT (sync_client).
ia_tools() {
	ROOT=$(sp_project_root)
	TAIL=$ROOT/cmd/synclog-tail/synclog-tail
	PLAN=$ROOT/cmd/sync-plan/sync-plan
	SEND=$ROOT/cmd/sync-send/sync-send
	STORE=$ROOT/cmd/sync-store/sync-store
	CLIENT=$ROOT/cmd/sync_client/sync_client
}
