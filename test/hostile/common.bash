# common.bash: setup and helpers shared by test/hostile.bats and
# test/torture/hostile-big.bats (the big inputs, run by make torture).

# shellcheck source=../helpers.bash
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/helpers.bash"


HDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RSS_MB=${HOSTILE_RSS_MB:-200}
G1=aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d	# sha1("hello")
NULLG=0000000000000000000000000000000000000000

setup_file() {
	D=$(sp_tmpdir)
	export D
	echo "$D" >"$BATS_FILE_TMPDIR/dir"
	ROOT=$(sp_project_root)
	export ROOT
	STORE=$ROOT/cmd/sync-store/sync-store
	# A populated store: alice with INBOX (3 messages, flags, an
	# annotation), Sent, a subscription, seen state and a quota.
	mkdir -p "$D/base"
	sp_conf "$D/base/imapd.conf" hostile-test
	sp_sasluser "$D/base/conf/sasldb2" hostile-test repluser replpass
	sp_sasluser "$D/base/conf/sasldb2" hostile-test bob bobpass
	local B=$D/base/imapd.conf
	"$STORE" -C "$B" create user.alice
	"$STORE" -C "$B" create user.alice.Sent
	for i in 1 2 3; do
		printf 'From: a@example.com\r\nSubject: %s\r\n\r\nbody %s\r\n' \
		    "$i" "$i" | "$STORE" -C "$B" deliver user.alice \
		    --flags '\Seen,$Label1' >/dev/null
	done
	"$STORE" -C "$B" annotate user.alice /comment "alice's inbox"
	"$STORE" -C "$B" sub alice user.alice.Sent
	"$STORE" -C "$B" seen alice user.alice 1:2
	"$STORE" -C "$B" quota user.alice 1000
	"$STORE" -C "$B" dump >"$D/base.dump"
	[ "$(grep -c '^record ' "$D/base.dump")" -eq 3 ]
}

teardown_file() {
	[[ -n ${D:-} ]] || D=$(cat "$BATS_FILE_TMPDIR/dir" 2>/dev/null) || true
	[[ -n ${D:-} ]] && sp_rmtmp "$D"
	rm -rf /tmp/evil-hostile
}

setup() {
	shopt -s lastpipe
	ROOT=$(sp_project_root)
	STORE=$ROOT/cmd/sync-store/sync-store
	PLAIN=$ROOT/cmd/sync_server/sync_server
	if [[ -x $ROOT/build/asan/bin/sync_server ]]; then
		SRV=$ROOT/build/asan/bin/sync_server
	else
		SRV=$PLAIN
	fi
	T=$D/t$BATS_TEST_NUMBER
	rm -rf "$T"
	mkdir -p "$T"
	cp -a "$D/base/conf" "$D/base/spool" "$D/base/sieve" "$T/"
	sp_conf "$T/imapd.conf" hostile-test
	rm -rf /tmp/evil-hostile
	touch "$T/.marker"
}

teardown() {
	sp_server_stop "$T/imapd.conf" 2>/dev/null || true
}

# srv [--eof] [--plain] [--time N]: run the server on $T with stdin as
# the client's bytes.  Unless --eof, "NOOP" and "EXIT" follow them.
# $output: the replies without the banner, CR removed.  $T/rc, $T/rss:
# exit status and peak RSS in KB.
srv() {
	local tail=1 bin=$SRV limit=60
	while (($#)); do
		case $1 in
		--eof) tail=0 ;;
		--plain) bin=$PLAIN ;;
		--time) limit=$2; shift ;;
		esac
		shift
	done
	{
		cat
		((tail)) && printf 'NOOP\r\nEXIT\r\n'
	} | python3 "$HDIR/hrun.py" "$limit" "$T/out" "$T/err" "$T/status" \
	    -- "$bin" -C "$T/imapd.conf"
	read -r st <"$T/status"
	[[ $st =~ rc=([0-9]+)\ maxrss_kb=([0-9]+)\ timedout=([01]) ]]
	echo "${BASH_REMATCH[1]}" >"$T/rc"
	echo "${BASH_REMATCH[2]}" >"$T/rss"
	echo "# $(basename "$bin"): $st" >&3
	output=$(tr -d '\r' <"$T/out" | sed 1d)
	[ "${BASH_REMATCH[3]}" = 0 ] || { echo "server hung: $st"; return 1; }
}

# big: the case feeds hundreds of megabytes and takes long; it runs only
# with HOSTILE_BIG=1 (scripts/torture), keeping make check fast.
big() {
	[[ ${HOSTILE_BIG:-} == 1 ]] || skip "set HOSTILE_BIG=1 for the big inputs"
}

# The Nth status line (OK/NO/BAD/BYE) of the replies.
status_n() {
	printf '%s\n' "$output" | grep -a -E '^(OK|NO|BAD|BYE)( |$)' |
	    sed -n "${1}p"
}

# sane [STATUS...]: the server exited with one of STATUS (default 0),
# printed no sanitizer report and stayed under the memory bound.
sane() {
	local ok=${*:-0} rc rss
	rc=$(<"$T/rc") rss=$(<"$T/rss")
	if grep -a -E 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "$T/err"; then
		echo "sanitizer report (above)"
		return 1
	fi
	if [[ " $ok " != *" $rc "* ]]; then
		echo "exit status $rc, expected one of: $ok"
		tail -n 5 "$T/err"
		return 1
	fi
	if ((rss > RSS_MB * 1024)); then
		echo "peak RSS ${rss} KB is over ${RSS_MB} MB"
		return 1
	fi
}

# The stream is still in sync: the NOOP after the bad input is answered.
insync() {
	local last
	last=$(printf '%s\n' "$output" | tail -n 2 | tr '\n' '|')
	if [ "$last" != "OK Noop completed|OK Finished|" ]; then
		echo "stream out of sync; last replies: $last"
		return 1
	fi
}

# Nothing stored changed and nothing appeared outside the database.
unchanged() {
	"$STORE" -C "$T/imapd.conf" dump >"$T/after.dump"
	diff -u "$D/base.dump" "$T/after.dump"
	"$STORE" -C "$T/imapd.conf" verify >"$T/verify.out" 2>&1 ||
	    { cat "$T/verify.out"; return 1; }
	grep -q ': 0 faults' "$T/verify.out" || { cat "$T/verify.out"; return 1; }
	run find "$T" -newer "$T/.marker" -not -path "$T/conf" \
	    -not -path "$T/conf/syncpipe.db*" -not -path "$T" \
	    -not -name out -not -name err -not -name status -not -name rc \
	    -not -name rss -not -name after.dump -not -name verify.out \
	    -not -name imapd.conf -not -name sync_server.log \
	    -not -name sync_server.pid -not -name in -not -path "$T/spool" \
	    -not -path "$T/spool/bodies" -not -path "$T/spool/stage"
	[ "$output" = "" ] || { echo "new files: $output"; return 1; }
	# a staging area left behind is a leak too
	run find "$T/spool" -type f -not -path "$T/spool/bodies/*"
	[ "$output" = "" ] || { echo "stray files: $output"; return 1; }
	[ ! -e /tmp/evil-hostile ] && [ ! -e "$T/evil-hostile" ] &&
	    [ ! -e "$D/evil-hostile" ]
}

# The whole check for a case that must be refused with REPLY.
refused() {
	local want=$1
	[ "$(status_n 1)" = "$want" ] || { echo "first reply: '$(status_n 1)', expected '$want'"; return 1; }
	sane
	insync
	unchanged
}

# A syntactically valid APPLY MAILBOX of a new mailbox, with one record
# whose body is "hello" ($G1); KEY=VALUE arguments replace fields.
mbox() {
	local -A f=([UNIQUEID]=hostile0001 [MBOXNAME]=user.alice.New
	    [MBOXTYPE]= [LAST_UID]=1 [HIGHESTMODSEQ]=2 [UIDVALIDITY]=7
	    [PARTITION]=default [RECORD]="%(UID 1 MODSEQ 2 LAST_UPDATED 1700000000 FLAGS () INTERNALDATE 1700000000 SIZE 5 GUID $G1)")
	local kv
	for kv in "$@"; do
		f[${kv%%=*}]=${kv#*=}
	done
	printf 'APPLY MAILBOX %%(UNIQUEID %s MBOXNAME %s %sSYNC_CRC 0 SYNC_CRC_ANNOT 0 LAST_UID %s HIGHESTMODSEQ %s RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY %s PARTITION %s ACL "" OPTIONS P RECORD (%s))\r\n' \
	    "${f[UNIQUEID]}" "${f[MBOXNAME]}" \
	    "${f[MBOXTYPE]:+MBOXTYPE ${f[MBOXTYPE]} }" "${f[LAST_UID]}" \
	    "${f[HIGHESTMODSEQ]}" "${f[UIDVALIDITY]}" "${f[PARTITION]}" \
	    "${f[RECORD]}"
}

# The body "hello" uploaded.
hello() {
	printf 'APPLY MESSAGE (%%{default %s 5}\r\nhello)\r\n' "$G1"
}

rec() {	# rec UID [GUID] [FLAGS]: one record kvlist
	printf '%%(UID %s MODSEQ %s LAST_UPDATED 1700000000 FLAGS (%s) INTERNALDATE 1700000000 SIZE 5 GUID %s)' \
	    "$1" "$(( ${1//[^0-9]/} + 1 ))" "${3:-}" "${2:-$G1}"
}

# ---------------------------------------------------------------------
# The control: the templates above are valid, and a change shows.

# ---------------------------------------------------------------------
# Over TCP, before and around authentication.

tcp_start() {
	P=$(sp_freeport)
	SYNC_SERVER=$SRV sp_server_start "$T/imapd.conf" "$P"
}

# tcp: send stdin's bytes on a new connection; $output: all lines after
# the banner.
tcp() {
	output=$(timeout 30 python3 "$HDIR/rawclient.py" "$P" | sed '1,/^\* OK/d')
}

tcp_sane() {
	sp_server_stop "$T/imapd.conf"
	if grep -a -E 'ERROR: AddressSanitizer|runtime error:' "$T/sync_server.log"; then
		return 1
	fi
}

plain() { printf '\0%s\0%s' "$1" "$2" | base64 -w0; }
plainz() { printf '%s\0%s\0%s' "$1" "$2" "$3" | base64 -w0; }
