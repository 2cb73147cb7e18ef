#!/usr/bin/env bats
# sync_server's session layer: transports, banner, AUTHENTICATE, STARTTLS,
# COMPRESS, the command loop's replies, shutdown, and the set-up of a
# session with a real Cyrus 3.6 sync_client.

load helpers

setup_file() {
	D=$(sp_tmpdir)
	export D
	echo "$D" >"$BATS_FILE_TMPDIR/dir"
	export BIN
	BIN=$(sp_sync_server_bin)
	mkdir -p "$D/s"
	sp_conf "$D/s/imapd.conf" sv-test
	sp_sasluser "$D/s/conf/sasldb2" sv-test repluser replpass
	sp_sasluser "$D/s/conf/sasldb2" sv-test bob bobpass
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=sv-test \
	    -keyout "$D/key.pem" -out "$D/cert.pem" >/dev/null 2>&1
	write_client "$D/client.py"
}

teardown_file() {
	[[ -n ${D:-} ]] || D=$(cat "$BATS_FILE_TMPDIR/dir" 2>/dev/null) || true
	[[ -n ${D:-} ]] || return 0
	for c in "$D"/*/imapd.conf; do
		sp_server_stop "$c"
	done
	if [[ -f $D/pair/ports.env ]]; then
		cyrus_pair down "$D/pair" >/dev/null 2>&1 || true
	fi
	sp_rmtmp "$D"
}

teardown() {
	for c in "$D"/*/imapd.conf; do
		sp_server_stop "$c"
	done
}

# A csync client that speaks what the session offers: every line read
# from stdin is one command; the reply is printed up to its status line
# (or a "+ " continuation, answered by the next stdin line); the two
# characters \r\n in a line stand for CRLF, to send literals.  After
# "OK Begin TLS" it starts TLS and prints the new banner; after
# "OK DEFLATE active" both directions are compressed.
write_client() {
	cat >"$1" <<-'EOF'
	import socket, ssl, sys, zlib
	s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15)
	st = {"s": s, "z": None, "buf": b""}
	def readline():
	    while b"\n" not in st["buf"]:
	        d = st["s"].recv(65536)
	        if not d:
	            return None
	        if st["z"]:
	            d = st["z"][1].decompress(d)
	        st["buf"] += d
	    l, st["buf"] = st["buf"].split(b"\n", 1)
	    return l.rstrip(b"\r").decode(errors="replace")
	def send(line):
	    data = line.encode() + b"\r\n"
	    if st["z"]:
	        data = st["z"][0].compress(data) + st["z"][0].flush(zlib.Z_SYNC_FLUSH)
	    st["s"].sendall(data)
	def banner():
	    while True:
	        l = readline()
	        if l is None:
	            print("EOF"); sys.exit(0)
	        print(l)
	        if l.startswith("* OK"):
	            return
	banner()
	for cmd in iter(sys.stdin.readline, ""):
	    # A literal "\r\n" in a command stands for CRLF (literals).
	    cmd = cmd.rstrip("\n").replace("\\r\\n", "\r\n")
	    send(cmd)
	    while True:
	        l = readline()
	        if l is None:
	            print("EOF"); sys.exit(0)
	        print(l)
	        if l.startswith("* "):
	            continue
	        if cmd.upper() == "STARTTLS" and l.startswith("OK"):
	            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
	            ctx.check_hostname = False
	            ctx.verify_mode = ssl.CERT_NONE
	            st["s"] = ctx.wrap_socket(st["s"])
	            print("[tls]")
	            banner()
	        if cmd.upper().startswith("COMPRESS") and l.startswith("OK"):
	            st["z"] = (zlib.compressobj(6, zlib.DEFLATED, -15),
	                zlib.decompressobj(-15))
	        break
	# Whatever the server says before closing (e.g. after EXIT); our
	# end of the input tells it we are done.
	try:
	    st["s"].shutdown(socket.SHUT_WR)
	except OSError:
	    pass
	while True:
	    l = readline()
	    if l is None:
	        print("EOF"); break
	    print(l)
	EOF
}

# client PORT: run the client above with commands on stdin.
client() {
	timeout 20 python3 "$D/client.py" "$1"
}

plain() {
	printf '\0%s\0%s' "$1" "$2" | base64 -w0
}

# start NAME [extra config lines...]: a server with its own config
# (sharing the sasldb) on a free port; sets PORT and CONF.
start() {
	local name=$1
	shift
	mkdir -p "$D/$name"
	CONF=$D/$name/imapd.conf
	sp_conf "$CONF" sv-test
	sed -i "s|^sasl_sasldb_path:.*|sasl_sasldb_path: $D/s/conf/sasldb2|" \
	    "$CONF"
	for l in "$@"; do
		if [[ $l == -* ]]; then
			sed -i "/^${l#-}:/d" "$CONF"
		else
			printf '%s\n' "$l" >>"$CONF"
		fi
	done
	PORT=$(sp_freeport)
	sp_server_start "$CONF" "$PORT"
}

@test "usage: bad option gives the synopsis and 64" {
	run "$BIN" -Z
	[ "$status" -eq 64 ]
	[ "${lines[-1]}" = "usage: sync_server [-Df] [-C config] [-p ssf] [--listen host:port]" ]
	# The man page shows the same synopsis.
	man=$(mandoc -Tascii "$(sp_project_root)/man/sync_server.8" |
	    col -b | sed -n '/^SYNOPSIS/{n;p;}' | sed 's/^ *//')
	[ "usage: $man" = "${lines[-1]}" ]
}

@test "unreadable config exits 78" {
	run "$BIN" -C "$D/nonexistent.conf" </dev/null
	[ "$status" -eq 78 ]
}

@test "stdio: pre-authenticated, only the OK banner line; basic replies" {
	run bash -c "printf 'NOOP\r\n\r\nfrobnicate x y\r\nnoop extra\r\nRESTART\r\nexit\r\nNOOP\r\n' |
	    '$BIN' -C '$D/s/imapd.conf' 2>/dev/null | tr -d '\\r'"
	[ "$status" -eq 0 ]
	[[ ${lines[0]} == "* OK sv-test syncpipe sync server "* ]]
	[ "${lines[1]}" = "OK Noop completed" ]
	[ "${lines[2]}" = "BAD Null command" ]
	[ "${lines[3]}" = "BAD IMAP_PROTOCOL_ERROR Unrecognized command" ]
	[ "${lines[4]}" = "BAD Unexpected extra arguments to Noop" ]
	[ "${lines[5]}" = "OK Restarting" ]
	[ "${lines[6]}" = "OK Finished" ]
	# Nothing after EXIT: the NOOP behind it is never read.
	[ "${#lines[@]}" -eq 7 ]
}

@test "stdio: replies end in CRLF; EOF ends the session with 0" {
	printf 'NOOP\r\n' | "$BIN" -C "$D/s/imapd.conf" >"$D/out" 2>/dev/null
	od -c "$D/out" | grep -q '\\r  \\n'
	[ "$(tail -c 19 "$D/out")" = "$(printf 'OK Noop completed\r\n')" ]
}

@test "stdio: unparsable GET/APPLY/RESTORE get BAD and the loop goes on" {
	run bash -c "printf 'APPLY %%junk\r\nGET \"open\r\nRESTORE\r\nAPPLY\r\nNOOP\r\n' |
	    '$BIN' -C '$D/s/imapd.conf' 2>/dev/null | tr -d '\\r'"
	[ "$status" -eq 0 ]
	[ "${lines[1]}" = "BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line" ]
	[ "${lines[2]}" = "BAD IMAP_PROTOCOL_ERROR Failed to parse GET line" ]
	[ "${lines[3]}" = "BAD Missing required argument to Restore" ]
	[ "${lines[4]}" = "BAD Missing required argument to Apply" ]
	[ "${lines[5]}" = "OK Noop completed" ]
}

@test "stdio: a literal in a refused line is skipped, not run" {
	# The literal's bytes look like a command; they must not be one.
	run bash -c "printf 'FOO {6+}\r\nEXIT\r\n\r\nNOOP\r\n' |
	    '$BIN' -C '$D/s/imapd.conf' 2>/dev/null | tr -d '\\r'"
	[ "${lines[1]}" = "BAD IMAP_PROTOCOL_ERROR Unrecognized command" ]
	[ "${lines[2]}" = "OK Noop completed" ]
}

@test "stdio: file literals go to the store; maxmessagesize refuses" {
	mkdir -p "$D/m"
	sp_conf "$D/m/imapd.conf" sv-test
	g1=$(printf 'hello\r\n' | sha1sum | cut -c1-40)
	g2=$(printf 'hellx\r\n' | sha1sum | cut -c1-40)
	run bash -c "printf 'APPLY MESSAGE (%%{default $g1 7}\r\nhello\r\n)\r\n' |
	    '$BIN' -C '$D/m/imapd.conf' 2>/dev/null | tr -d '\\r'"
	[ "${lines[1]}" = "OK success" ]
	[ -n "$(find "$D/m/spool" -type f -name "$g1")" ]
	echo "maxmessagesize: 5" >>"$D/m/imapd.conf"
	run bash -c "printf 'APPLY MESSAGE (%%{default $g2 7}\r\nhellx\r\n)\r\nNOOP\r\n' |
	    '$BIN' -C '$D/m/imapd.conf' 2>/dev/null | tr -d '\\r'"
	[ "${lines[1]}" = "NO IMAP_PROTOCOL_ERROR Protocol error" ]
	[ "${lines[2]}" = "OK Noop completed" ]
	[ -z "$(find "$D/m/spool" -type f -name "$g2")" ]
}

@test "tcp: banner, and nothing but session commands before auth" {
	start t1
	run client "$PORT" <<-EOF
	GET USER alice
	APPLY RESERVE %(PARTITION default GUID ())
	RESTORE MAILBOX %(MBOXNAME user.x)
	NOOP
	EXIT
	EOF
	[ "${lines[0]}" = "* SASL PLAIN LOGIN" ]
	[ "${lines[1]}" = "* COMPRESS DEFLATE" ]
	[ "${lines[2]}" = "* SIEVE-MAILBOX" ]
	[[ ${lines[3]} == "* OK sv-test syncpipe sync server "* ]]
	[ "${lines[4]}" = "NO Please authenticate first" ]
	[ "${lines[5]}" = "NO Please authenticate first" ]
	[ "${lines[6]}" = "NO Please authenticate first" ]
	[ "${lines[7]}" = "OK Noop completed" ]
	[ "${lines[8]}" = "OK Finished" ]
	[ "${lines[9]}" = "EOF" ]
}

@test "tcp: junk with literals before auth is skipped whole" {
	start t13
	run client "$PORT" <<-'EOF'
	C01 {6+}\r\nLOGOUT
	FOO BAR {4+}\r\nEXIT
	NOOP
	EOF
	[ "${lines[4]}" = "BAD IMAP_PROTOCOL_ERROR Unrecognized command" ]
	[ "${lines[5]}" = "BAD IMAP_PROTOCOL_ERROR Unrecognized command" ]
	[ "${lines[6]}" = "OK Noop completed" ]
}

@test "tcp: AUTHENTICATE PLAIN, bad then good password" {
	start t2
	run client "$PORT" <<-EOF
	AUTHENTICATE PLAIN $(plain repluser wrong)
	AUTHENTICATE PLAIN $(plain repluser replpass)
	AUTHENTICATE PLAIN $(plain repluser replpass)
	NOOP
	EOF
	[[ ${lines[4]} == "NO "* ]]
	[ "${lines[5]}" = "OK Success (no protection)" ]
	[ "${lines[6]}" = "BAD Already authenticated" ]
	[ "${lines[7]}" = "OK Noop completed" ]
	grep -q 'login: .* repluser PLAIN' "$D/t2/sync_server.log"
}

@test "tcp: AUTHENTICATE with continuations (LOGIN) and cancel" {
	start t3
	run client "$PORT" <<-EOF
	AUTHENTICATE PLAIN
	*
	AUTHENTICATE LOGIN
	$(printf repluser | base64)
	$(printf replpass | base64)
	GET %junk
	EOF
	[ "${lines[4]}" = "+ " ]
	[ "${lines[5]}" = "BAD Client canceled authentication" ]
	[[ ${lines[6]} == "+ "* ]]
	[[ ${lines[7]} == "+ "* ]]
	[ "${lines[8]}" = "OK Success (no protection)" ]
	[ "${lines[9]}" = "BAD IMAP_PROTOCOL_ERROR Failed to parse GET line" ]
}

@test "tcp: failedloginpause delays a failed login" {
	start t4 -failedloginpause "failedloginpause: 2"
	t0=$(date +%s%N)
	run client "$PORT" <<-EOF
	AUTHENTICATE PLAIN $(plain repluser wrong)
	EOF
	t1=$(date +%s%N)
	[[ ${lines[4]} == "NO "* ]]
	(( (t1 - t0) / 1000000 >= 1900 ))
}

@test "tcp: a non-admin gets NO Permission denied for everything" {
	start t5
	run client "$PORT" <<-EOF
	AUTHENTICATE PLAIN $(plain bob bobpass)
	NOOP
	GET USER bob
	EXIT
	EOF
	[ "${lines[4]}" = "OK Success (no protection)" ]
	[ "${lines[5]}" = "NO Permission denied" ]
	[ "${lines[6]}" = "NO Permission denied" ]
	[ "${lines[7]}" = "NO Permission denied" ]
}

@test "tcp: COMPRESS DEFLATE, then the session goes on compressed" {
	start t6
	run client "$PORT" <<-EOF
	COMPRESS GZIP
	AUTHENTICATE PLAIN $(plain repluser replpass)
	COMPRESS deflate
	NOOP
	COMPRESS DEFLATE
	RESTORE %zz
	EXIT
	EOF
	[ "${lines[4]}" = "NO Unknown compression algorithm: GZIP" ]
	[ "${lines[5]}" = "OK Success (no protection)" ]
	[ "${lines[6]}" = "OK DEFLATE active" ]
	[ "${lines[7]}" = "OK Noop completed" ]
	[ "${lines[8]}" = "NO Compression already active: DEFLATE" ]
	[ "${lines[9]}" = "BAD IMAP_PROTOCOL_ERROR Failed to parse RESTORE line" ]
	[ "${lines[10]}" = "OK Finished" ]
}

@test "tcp: STARTTLS, banner again, PLAIN only under TLS" {
	start t7 -allowplaintext "allowplaintext: no" \
	    "tls_server_cert: $D/cert.pem" "tls_server_key: $D/key.pem"
	run client "$PORT" <<-EOF
	STARTTLS
	STARTTLS
	AUTHENTICATE PLAIN $(plain repluser replpass)
	STARTTLS
	NOOP
	EOF
	# Before TLS: no plaintext mechanism, so no SASL line at all.
	[ "${lines[0]}" = "* STARTTLS" ]
	[ "${lines[1]}" = "* COMPRESS DEFLATE" ]
	[ "${lines[2]}" = "* SIEVE-MAILBOX" ]
	[[ ${lines[3]} == "* OK sv-test "* ]]
	[ "${lines[4]}" = "OK Begin TLS negotiation now" ]
	[ "${lines[5]}" = "[tls]" ]
	# After TLS: mechanisms, no STARTTLS, no COMPRESS.
	[ "${lines[6]}" = "* SASL PLAIN LOGIN" ]
	[ "${lines[7]}" = "* SIEVE-MAILBOX" ]
	[[ ${lines[8]} == "* OK sv-test "* ]]
	[ "${lines[9]}" = "BAD Already did a successful Starttls" ]
	[ "${lines[10]}" = "OK Success (tls protection)" ]
	[ "${lines[11]}" = "BAD Can't Starttls after authentication" ]
	[ "${lines[12]}" = "OK Noop completed" ]
}

@test "tcp: service-prefixed TLS keys; broken key file gives NO" {
	start t8 "syncserver_tls_server_cert: $D/cert.pem" \
	    "syncserver_tls_server_key: $D/cert.pem"
	run client "$PORT" <<-EOF
	STARTTLS
	NOOP
	EOF
	[ "${lines[1]}" = "* STARTTLS" ]
	[ "${lines[5]}" = "NO Error initializing TLS" ]
	[ "${lines[6]}" = "OK Noop completed" ]
}

@test "tcp: without TLS configured STARTTLS is unknown" {
	start t9
	run client "$PORT" <<-EOF
	STARTTLS
	EOF
	[ "${lines[4]}" = "BAD IMAP_PROTOCOL_ERROR Unrecognized command" ]
}

@test "tcp: the sync_try_imap probe gets a fast IMAP answer" {
	start t10
	run client "$PORT" <<-EOF
	C01 CAPABILITY
	A1 NOOP
	Q01 LOGOUT
	EOF
	[ "${lines[4]}" = "* CAPABILITY IMAP4rev1" ]
	[ "${lines[5]}" = "C01 OK Completed" ]
	[ "${lines[6]}" = "BAD IMAP_PROTOCOL_ERROR Unrecognized command" ]
	[ "${lines[7]}" = "* BYE LOGOUT received" ]
	[ "${lines[8]}" = "Q01 OK Completed" ]
	[ "${lines[9]}" = "EOF" ]
}

@test "tcp: sync_timeout drops an idle connection" {
	start t11 "sync_timeout: 3"
	# Seconds from connecting until the server closes an idle session.
	run timeout 20 python3 -c '
import socket, sys, time
t = time.time()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
while s.recv(4096):
    pass
print(int(time.time() - t))' "$PORT"
	[ "$status" -eq 0 ]
	(( output >= 3 && output <= 8 ))
	grep -q 'connection error: timeout' "$D/t11/sync_server.log"
}

@test "listen: SIGTERM says BYE to idle connections (plain and compressed) and exits 0" {
	start t12
	# Keeps a client's input open until the test is done with it.
	hold() {
		for ((j = 0; j < 150; j++)); do
			[[ -e $D/t12/done ]] && break
			sleep 0.1
		done
	}
	# Two sessions wait idle: one plain, one compressed.
	{ printf 'AUTHENTICATE PLAIN %s\n' "$(plain repluser replpass)"; hold; } 3>&- 2>/dev/null |
	    client "$PORT" >"$D/t12/c1" 3>&- &
	c1=$!
	{ printf 'AUTHENTICATE PLAIN %s\nCOMPRESS DEFLATE\nNOOP\n' \
	    "$(plain repluser replpass)"; hold; } 3>&- 2>/dev/null |
	    client "$PORT" >"$D/t12/c2" 3>&- &
	c2=$!
	for ((i = 0; i < 150; i++)); do
		grep -q '^OK Success' "$D/t12/c1" 2>/dev/null &&
		    grep -q '^OK Noop completed' "$D/t12/c2" 2>/dev/null && break
		sleep 0.1
	done
	pid=$(<"$D/t12/sync_server.pid")
	kill -TERM "$pid"
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	run kill -0 "$pid"
	[ "$status" -ne 0 ]
	wait "$pid" || { echo "exit $?"; false; }
	rm -f "$D/t12/sync_server.pid"
	# The clients read what is left once their input ends.
	touch "$D/t12/done"
	for ((i = 0; i < 50; i++)); do
		grep -q '^EOF' "$D/t12/c1" && grep -q '^EOF' "$D/t12/c2" && break
		sleep 0.1
	done
	kill "$c1" "$c2" 2>/dev/null || true
	cat "$D/t12/c1" "$D/t12/c2"
	grep -qx 'BYE shutting down' "$D/t12/c1"
	grep -qx 'BYE shutting down' "$D/t12/c2"
	run sp_port_open "$PORT"
	[ "$status" -ne 0 ]
}

@test "Cyrus sync_client (sync_try_imap on): probe, AUTHENTICATE, COMPRESS, CAPABILITIES" {
	[[ $EUID -eq 0 ]] || skip "the Cyrus peer needs root"
	[[ -x $(sp_cyrus_pair_path) ]] || skip "no cyrus-pair harness"
	start cy
	cyrus_pair up "$D/pair" --only master --try-imap \
	    --sync-target "127.0.0.1:$PORT" >"$D/up.log" 2>&1 ||
	    { cat "$D/up.log"; false; }
	cyrus_pair populate "$D/pair" alice 5 >/dev/null 2>&1
	run cyrus_pair sync "$D/pair" --record "$D/rec.txt" -v -u alice
	echo "$output"
	cat "$D/rec.txt" | cut -c1-200 | head -40
	# The probe was answered at once: no 10 s wait for a tagged reply.
	grep -qx 'S: C01 OK Completed' "$D/rec.txt"
	# Without the answer the client sits out its 10 s timeout, which
	# the recording shows as a pause; allow short ones (a loaded host).
	run grep -oE '[0-9.]+ s pause\]' "$D/rec.txt"
	for p in "${lines[@]}"; do
		(( ${p%%[. ]*} < 5 ))
	done
	# The csync session was set up as with a Cyrus replica.
	grep -qx 'S: OK Success (no protection)' "$D/rec.txt"
	grep -qx 'S: OK DEFLATE active' "$D/rec.txt"
	grep -qx 'C: APPLY CAPABILITIES (SIEVE-MAILBOX)' "$D/rec.txt"
	grep -qx 'S: \* ENABLED (SIEVE-MAILBOX)' "$D/rec.txt"
	grep -q '^C: GET USER alice' "$D/rec.txt"
	grep -qx 'C: EXIT' "$D/rec.txt"
	grep -qx 'S: OK Finished' "$D/rec.txt"
}
