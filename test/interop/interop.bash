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

# ia_compare_user USER [EXTRA_MBOX...]: GET USER, GET META, GET QUOTA
# of the user's quota root (user.USER), and GET FULLMAILBOX of every
# mailbox the master lists for USER plus the EXTRA_MBOXes (internal
# names, e.g. DELETED.user.alice.X.5F00...), master vs ours, field by
# field (data items sorted per command).  One connection per side for
# all of it.  Output under $D/cmp/ (mboxes.USER, USER.master,
# USER.ours); returns 1 on any difference.
ia_compare_user() {
	local user=$1 out=$D/cmp
	local -a cmds
	shift
	mkdir -p "$out"
	{
		ia_master --mboxnames "GET USER $user" || true
		printf '%s\n' "$@"
	} | sed '/^$/d' | sort -u >"$out/mboxes.$user"
	cmds=("GET USER $user" "GET META $user" "GET QUOTA user.${user//./^}")
	mapfile -t -O 3 cmds < <(sed 's/^/GET FULLMAILBOX /' "$out/mboxes.$user")
	ia_master --sort "${cmds[@]}" | ia_norm >"$out/$user.master" || true
	ia_ours --sort "${cmds[@]}" | ia_norm >"$out/$user.ours" || true
	grep -q '^= ' "$out/$user.master" || {
		echo "no answer from the master"
		return 1
	}
	ia_diff "GET USER/META/FULLMAILBOX $user" "$out/$user.master" \
	    "$out/$user.ours"
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
