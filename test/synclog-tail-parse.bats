#!/usr/bin/env bats
# synclog-tail(1) on one file (-f FILE): what it makes of each sync_log(5)
# line, how it coalesces a file, and what it does with malformed lines.
# Table-driven; every table drives the built binary, not the library.
#
#   parse table      one line of each record type Cyrus 3.6 writes (and
#                    of SIEVE and UNSUB, which it no longer writes but
#                    synclog-tail reads) and every quoting case: spaces,
#                    tabs, double quotes, backslashes, braces,
#                    parentheses, UTF-8 bytes, modified UTF-7, empty
#                    strings, needless quotes, type case, blanks and
#                    CRLF.  Each line alone must come out as exactly the
#                    expected record, with nothing on stderr and no
#                    rejects file, and that record read back must come
#                    out unchanged.
#   skipped lines    blank lines and %-lines give no record and no reject.
#   Cyrus's quoting  Cyrus 3.6's own writer (cyr_synclog) writes the
#                    parse table's quoted names byte for byte as the
#                    table has them, and synclog-tail reads each of its
#                    lines back as the same record (root and Cyrus
#                    needed).
#   coalescing       input lines -> expected stream, one case per rule of
#                    synclog-tail(1) "Coalescing" and its example:
#                    duplicates, APPEND/SIEVE/UNSUB folding, USER, UNUSER
#                    and META superseding, the order of kinds, the
#                    grouping by owner, RENAME ahead of its group's
#                    MAILBOX lines.  Each expected stream coalesced
#                    again must come out unchanged.
#   malformed lines  each bad line is reported on stderr as FILE:LINE:
#                    REASON and appended verbatim to FILE-rejects; the
#                    good lines around them are all emitted, exit 0.
#                    From standard input the lines are only reported.

TOOL="$BATS_TEST_DIRNAME/../cmd/synclog-tail/synclog-tail"

setup() {
	D=$(mktemp -d)
	chmod 755 "$D"
	cp "$TOOL" "$D/synclog-tail"
	T="$D/synclog-tail"
}

teardown() {
	rm -rf "$D"
}

# The record lines of a stream (control lines dropped).
records() {
	grep -v '^%' "$@" || true
}

# emit FILE: synclog-tail -f FILE's records (control lines dropped) in
# FILE.got, its stderr in FILE.err; returns its exit status.  Written to
# fork once, as the tables run it a few hundred times.
emit() {
	local rc=0 l
	local -a all
	"$T" -f "$1" > "$1.out" 2> "$1.err" || rc=$?
	mapfile -t all < "$1.out"
	for l in "${all[@]}"; do
		[[ $l == %* ]] || printf '%s\n' "$l"
	done > "$1.got"
	return "$rc"
}

# same FILE1 FILE2: the two files hold the same lines (no fork).
same() {
	local IFS=$'\n'
	local -a a b
	mapfile -t a < "$1"
	mapfile -t b < "$2"
	[[ ${#a[@]} -eq ${#b[@]} && "${a[*]}" == "${b[*]}" ]]
}

# The parse table: pairs of (log line, the record synclog-tail emits).
# Single quotes keep every backslash as written in the log; $'...' is
# used only for tabs, CR and 8-bit bytes.
PARSE=(
	# Every record type.
	'USER alice'					'USER alice'
	'UNUSER alice'					'UNUSER alice'
	'META alice'					'META alice'
	'SIEVE alice'					'META alice'
	'APPEND user.alice'				'MAILBOX user.alice'
	'MAILBOX user.alice.Sent'			'MAILBOX user.alice.Sent'
	'DOUBLEMAILBOX user.alice.a user.bob.b'		'DOUBLEMAILBOX user.alice.a user.bob.b'
	'UNMAILBOX user.alice.Old'			'UNMAILBOX user.alice.Old'
	'RENAME user.alice.a user.alice.b'		'RENAME user.alice.a user.alice.b'
	'QUOTA user.alice'				'QUOTA user.alice'
	'ANNOTATION ""'					'ANNOTATION ""'
	'ANNOTATION user.alice.Sent'			'ANNOTATION user.alice.Sent'
	'SEEN alice 7f3c9a42-1d2e-4c57-9f30-0a1b2c3d4e5f' 'SEEN alice 7f3c9a42-1d2e-4c57-9f30-0a1b2c3d4e5f'
	'SUB alice user.bob.x'				'SUB alice user.bob.x'
	'UNSUB alice user.bob.x'			'SUB alice user.bob.x'
	# Names with spaces, quotes, backslashes, braces, parentheses, tabs.
	'MAILBOX "user.alice.My Folder"'		'MAILBOX "user.alice.My Folder"'
	'MAILBOX "user.alice.q\"uote\""'		'MAILBOX "user.alice.q\"uote\""'
	'MAILBOX "user.alice.back\\slash"'		'MAILBOX "user.alice.back\\slash"'
	'MAILBOX "user.alice.\\"'			'MAILBOX "user.alice.\\"'
	'MAILBOX "user.alice.\{br\}"'			'MAILBOX "user.alice.\{br\}"'
	'MAILBOX "user.alice.(p)"'			'MAILBOX "user.alice.(p)"'
	'MAILBOX "user.alice.a)b"'			'MAILBOX "user.alice.a)b"'
	$'MAILBOX "user.alice.tab\there"'		$'MAILBOX "user.alice.tab\there"'
	'MAILBOX "user.alice. \" \\ \{ \} ( ) "'	'MAILBOX "user.alice. \" \\ \{ \} ( ) "'
	'USER "first last"'				'USER "first last"'
	'USER "a\"b\\c"'				'USER "a\"b\\c"'
	# 8-bit UTF-8 and modified UTF-7 are written as they are.
	$'MAILBOX user.alice.\xc3\xa9t\xc3\xa9'		$'MAILBOX user.alice.\xc3\xa9t\xc3\xa9'
	$'MAILBOX "user.alice.\xe6\x97\xa5 \xe6\x9c\xac"' $'MAILBOX "user.alice.\xe6\x97\xa5 \xe6\x9c\xac"'
	'MAILBOX user.alice.&AMk-t&AOk-'		'MAILBOX user.alice.&AMk-t&AOk-'
	'MAILBOX "user.alice.&AMk-t&AOk- 2024"'		'MAILBOX "user.alice.&AMk-t&AOk- 2024"'
	'SUB alice user.bob.&ZeVnLIqe-'			'SUB alice user.bob.&ZeVnLIqe-'
	# Other bytes that need no quotes.
	'MAILBOX example.com!user.bob.x'		'MAILBOX example.com!user.bob.x'
	"MAILBOX user.o'brien.50%"			"MAILBOX user.o'brien.50%"
	'MAILBOX user.alice.a&b'			'MAILBOX user.alice.a&b'
	# Empty strings.
	'MAILBOX ""'					'MAILBOX ""'
	'SUB "" ""'					'SUB "" ""'
	'SEEN alice ""'					'SEEN alice ""'
	# Two arguments, each quoted or not.
	'SEEN "al ice" "id 1"'				'SEEN "al ice" "id 1"'
	'SUB "first last" "user.first last.&AOQ- \\ \""' 'SUB "first last" "user.first last.&AOQ- \\ \""'
	'RENAME "user.alice.a b" "user.alice.c\"d"'	'RENAME "user.alice.a b" "user.alice.c\"d"'
	'RENAME user.alice.x "user.alice.x y"'		'RENAME user.alice.x "user.alice.x y"'
	'DOUBLEMAILBOX "user.a.x y" user.b.z'		'DOUBLEMAILBOX "user.a.x y" user.b.z'
	# Quotes where none are needed are dropped; a backslash in quotes
	# takes the next byte literally.
	'MAILBOX "user.alice"'				'MAILBOX user.alice'
	'SUB "alice" "user.bob"'			'SUB alice user.bob'
	'MAILBOX "user.alice.\x"'			'MAILBOX user.alice.x'
	# The type in any case; blanks and tabs between fields; CRLF.
	'mailbox user.alice'				'MAILBOX user.alice'
	'Seen alice x'					'SEEN alice x'
	$'SEEN\talice \t x  '				'SEEN alice x'
	$'USER alice\r'					'USER alice'
	$'MAILBOX "user.alice.My Folder"\r'		'MAILBOX "user.alice.My Folder"'
)

@test "parse table: each record type and quoting case comes out as the expected record" {
	local i in want bad=0 n=0
	local -a got
	for ((i = 0; i < ${#PARSE[@]}; i += 2)); do
		in=${PARSE[i]} want=${PARSE[i + 1]}
		n=$((n + 1))
		printf '%s\n' "$in" > "$D/in"
		emit "$D/in" || { echo "exit status $? for: $in"; bad=1; }
		mapfile -t got < "$D/in.got"
		if [[ ${#got[@]} -ne 1 || ${got[0]} != "$want" ]]; then
			printf 'line:  %q\nwant:  %q\ngot:   %q\n' "$in" "$want" \
			    "${got[*]}"
			bad=1
		fi
		if [[ -s $D/in.err || -e $D/in-rejects ]]; then
			echo "stderr or rejects for $in: $(< "$D/in.err")"
			bad=1
		fi
		# The emitted record reads back unchanged.
		printf '%s\n' "$want" > "$D/again"
		emit "$D/again" || true
		mapfile -t got < "$D/again.got"
		if [[ ${#got[@]} -ne 1 || ${got[0]} != "$want" ]]; then
			printf 'read back: %q\ngot:       %q\n' "$want" "${got[*]}"
			bad=1
		fi
	done
	echo "$n lines"
	((bad == 0))
}

@test "blank lines, blank-only lines, CR-only lines and %-lines give no record and no reject" {
	printf '%s\n' '' '   ' $'\t' $'\r' $' \t\r' '%syncpipe-actions 1' \
	    '%batch 1 /x/log-run' '%commit /x/log-run 1:2:3:4.5' '%end 1' \
	    '%anything at all' > "$D/in"
	emit "$D/in"
	[ ! -s "$D/in.got" ]
	[ ! -s "$D/in.err" ]
	[ ! -e "$D/in-rejects" ]
	[ "$(cat "$D/in.out")" = "%syncpipe-actions 1
%batch 1 $D/in
%end 1" ]
}

# Cyrus's writer, given the names of the parse table, writes its lines.
# Pairs of (cyr_synclog arguments, separated by '|'; the line expected).
CYRUS_WRITES=(
	'-m|user.alice.My Folder'		'MAILBOX "user.alice.My Folder"'
	'-m|user.alice.q"uote"'			'MAILBOX "user.alice.q\"uote\""'
	'-m|user.alice.back\slash'		'MAILBOX "user.alice.back\\slash"'
	'-m|user.alice.{br}'			'MAILBOX "user.alice.\{br\}"'
	'-m|user.alice.a)b'			'MAILBOX "user.alice.a)b"'
	$'-m|user.alice.tab\there'		$'MAILBOX "user.alice.tab\there"'
	$'-m|user.alice.\xc3\xa9t\xc3\xa9'	$'MAILBOX user.alice.\xc3\xa9t\xc3\xa9'
	'-m|user.alice.&AMk-t&AOk-'		'MAILBOX user.alice.&AMk-t&AOk-'
	"-m|user.o'brien.50%"			"MAILBOX user.o'brien.50%"
	'-u|first last'				'USER "first last"'
	'-U|alice'				'UNUSER alice'
	'-v|alice'				'META alice'
	'-M|user.alice.Old'			'UNMAILBOX user.alice.Old'
	'-q|user.alice'				'QUOTA user.alice'
	'-s|alice|7f3c9a42-1d2e-4c57-9f30-0a1b2c3d4e5f' 'SEEN alice 7f3c9a42-1d2e-4c57-9f30-0a1b2c3d4e5f'
	'-b|first last|user.first last.&AOQ- \ "' 'SUB "first last" "user.first last.&AOQ- \\ \""'
)

@test "Cyrus's cyr_synclog writes the table's quoting byte for byte, and it reads back as the same records" {
	local cyr i line
	local -a args
	cyr=/usr/lib/cyrus/bin/cyr_synclog
	[[ -x $cyr ]] || cyr=$(dpkg -L cyrus-replication 2>/dev/null |
	    grep '/cyr_synclog$' || true)
	if [[ -z $cyr || ! -x $cyr ]]; then
		echo "Cyrus's cyr_synclog is not installed (make deps)" >&2
		return 1
	fi
	((EUID == 0)) || skip "needs privilege: cyr_synclog runs as the cyrus user"
	mkdir -p "$D/conf/sync"
	printf 'configdirectory: %s/conf\nsync_log: 1\n' "$D" > "$D/imapd.conf"
	chown -R cyrus "$D/conf"
	for ((i = 0; i < ${#CYRUS_WRITES[@]}; i += 2)); do
		IFS='|' read -r -a args <<<"${CYRUS_WRITES[i]}"
		"$cyr" -C "$D/imapd.conf" "${args[@]}"
		printf '%s\n' "${CYRUS_WRITES[i + 1]}"
	done > "$D/want"
	diff "$D/want" "$D/conf/sync/log"
	# One line at a time (together, USER and META would supersede
	# SEEN and SUB).
	while IFS= read -r line; do
		printf '%s\n' "$line" > "$D/in"
		emit "$D/in"
		[[ $(< "$D/in.got") == "$line" ]] ||
		    { echo "read back: $line"; return 1; }
		[[ ! -s $D/in.err && ! -e $D/in-rejects ]]
	done < "$D/conf/sync/log"
}

# The coalescing table: "### name", the input lines, "---", the expected
# records.  From synclog-tail(1) "Coalescing" and test/unit/test_synclog.c.
coalesce_table() {
	cat <<'TABLE'
### duplicates are removed; the first occurrence keeps its place
USER a
MAILBOX user.b.x
USER a
SEEN c x
MAILBOX user.b.x
SEEN c x
SEEN c y
---
MAILBOX user.b.x
SEEN c x
SEEN c y
USER a
### a quoted and a bare spelling of one record are one record
MAILBOX user.a
MAILBOX "user.a"
SUB "a" user.b
SUB a "user.b"
---
MAILBOX user.a
SUB a user.b
### APPEND folds into MAILBOX, before or after it
APPEND user.a
MAILBOX user.a
APPEND user.a.x
MAILBOX user.a.y
APPEND user.a.y
---
MAILBOX user.a
MAILBOX user.a.x
MAILBOX user.a.y
### SIEVE is META and UNSUB is SUB
SIEVE u
META u
SUB v m
UNSUB v m
UNSUB v n
---
SUB v m
SUB v n
META u
### USER supersedes META, SEEN and SUB of that user only, before or after it
META u
SEEN u x
SUB u user.v
SEEN v y
SUB v user.u
USER u
SUB u user.w
SEEN u z
META u
SIEVE u
---
SEEN v y
SUB v user.u
USER u
### UNUSER supersedes USER, META, SEEN and SUB of that user, before or after it
USER u
META u
SEEN u x
SUB u m
UNUSER u
USER u
SIEVE u
UNSUB u n
USER w
---
USER w
UNUSER u
### META supersedes SEEN and SUB of that user
SEEN u x
SUB u m
META u
SEEN u y
SEEN w x
---
SEEN w x
META u
### mailbox records are not removed by user records, not even by UNUSER
MAILBOX user.u
ANNOTATION user.u
QUOTA user.u
UNMAILBOX user.u.x
RENAME user.u.a user.u.b
DOUBLEMAILBOX user.u.c user.v
USER u
UNUSER u
---
RENAME user.u.a user.u.b
DOUBLEMAILBOX user.u.c user.v
MAILBOX user.u
QUOTA user.u
ANNOTATION user.u
UNMAILBOX user.u.x
UNUSER u
### the order of kinds as processed: mailboxes, QUOTA, ANNOTATION, SEEN, SUB, UNMAILBOX, META, USER, UNUSER
UNUSER z
USER y
META x
UNMAILBOX user.q.r
SUB s m
SEEN t u
ANNOTATION ""
QUOTA user.q
MAILBOX user.q
---
MAILBOX user.q
QUOTA user.q
ANNOTATION ""
SEEN t u
SUB s m
UNMAILBOX user.q.r
META x
USER y
UNUSER z
### a MAILBOX and an UNMAILBOX of one mailbox are both kept, in the order of kinds
UNMAILBOX user.a.x
MAILBOX user.a.x
UNMAILBOX user.a.x
---
MAILBOX user.a.x
UNMAILBOX user.a.x
### mailbox records grouped by owner, groups in order of first appearance; shared mailboxes are one group
MAILBOX user.b.1
MAILBOX shared.x
MAILBOX user.a
MAILBOX user.b.2
MAILBOX other
MAILBOX example.com!user.b.3
MAILBOX example.com!user.b
---
MAILBOX user.b.1
MAILBOX user.b.2
MAILBOX shared.x
MAILBOX other
MAILBOX user.a
MAILBOX example.com!user.b.3
MAILBOX example.com!user.b
### a deleted mailbox belongs to its user's group
MAILBOX user.c
MAILBOX user.d
MAILBOX DELETED.user.c.x.5F00AA
---
MAILBOX user.c
MAILBOX DELETED.user.c.x.5F00AA
MAILBOX user.d
### within a group: RENAME, then DOUBLEMAILBOX, then MAILBOX
MAILBOX user.a
DOUBLEMAILBOX user.a.x user.a.y
RENAME user.a.p user.a.q
MAILBOX user.a.p
MAILBOX user.a.q
---
RENAME user.a.p user.a.q
DOUBLEMAILBOX user.a.x user.a.y
MAILBOX user.a
MAILBOX user.a.p
MAILBOX user.a.q
### a RENAME goes ahead of its MAILBOX lines, even when they came first
MAILBOX user.a.x
MAILBOX user.a.y
MAILBOX user.b
RENAME user.a.x user.a.y
---
RENAME user.a.x user.a.y
MAILBOX user.a.x
MAILBOX user.a.y
MAILBOX user.b
### a RENAME and its MAILBOX lines stay together among other users' records
MAILBOX user.b
RENAME user.a.x user.a.y
MAILBOX user.c
MAILBOX user.a.x
MAILBOX user.b.z
MAILBOX user.a.y
---
MAILBOX user.b
MAILBOX user.b.z
RENAME user.a.x user.a.y
MAILBOX user.a.x
MAILBOX user.a.y
MAILBOX user.c
### chained renames keep their order
RENAME user.a.x user.a.y
RENAME user.a.y user.a.z
MAILBOX user.a.x
MAILBOX user.a.y
MAILBOX user.a.z
RENAME user.a.x user.a.y
---
RENAME user.a.x user.a.y
RENAME user.a.y user.a.z
MAILBOX user.a.x
MAILBOX user.a.y
MAILBOX user.a.z
### a cross-user RENAME is in the old name's group; the new name's MAILBOX in the new owner's
MAILBOX user.b
RENAME user.a.x user.b.x
MAILBOX user.a.x
MAILBOX user.b.x
---
MAILBOX user.b
MAILBOX user.b.x
RENAME user.a.x user.b.x
MAILBOX user.a.x
### a DOUBLEMAILBOX is in the first name's group
DOUBLEMAILBOX user.a.x user.b.y
MAILBOX user.b
MAILBOX user.a
DOUBLEMAILBOX user.a.x user.b.y
---
DOUBLEMAILBOX user.a.x user.b.y
MAILBOX user.a
MAILBOX user.b
### quoting is kept on output
MAILBOX "user.a.My Folder"
SUB a "x\"y"
APPEND "user.a.My Folder"
---
MAILBOX "user.a.My Folder"
SUB a "x\"y"
### the example of synclog-tail(1)
APPEND user.alice
SEEN bob 4f1e-77
MAILBOX user.alice
META bob
USER carol
SUB carol user.x
UNUSER dave
USER dave
QUOTA user.alice
RENAME user.alice.a user.alice.b
MAILBOX user.alice.a
MAILBOX user.alice.b
---
RENAME user.alice.a user.alice.b
MAILBOX user.alice
MAILBOX user.alice.a
MAILBOX user.alice.b
QUOTA user.alice
META bob
USER carol
UNUSER dave
TABLE
}

@test "coalescing table: input lines -> expected stream, and a coalesced stream coalesces to itself" {
	local line n=0 part= bad=0 i name
	local -a names
	while IFS= read -r line; do
		if [[ $line == '### '* ]]; then
			n=$((n + 1))
			names[n]=${line#'### '}
			part=in
			: > "$D/c$n.in"
			: > "$D/c$n.want"
		elif [[ $line == --- ]]; then
			part=want
		else
			printf '%s\n' "$line" >> "$D/c$n.$part"
		fi
	done < <(coalesce_table)
	for ((i = 1; i <= n; i++)); do
		name=${names[i]}
		if ! emit "$D/c$i.in"; then
			echo "exit status for: $name"
			bad=1
		fi
		if ! same "$D/c$i.want" "$D/c$i.in.got"; then
			echo "--- $name (want, got):"
			diff "$D/c$i.want" "$D/c$i.in.got"
			bad=1
		fi
		if [[ -s $D/c$i.in.err || -e $D/c$i.in-rejects ]]; then
			echo "stderr or rejects for: $name"
			cat "$D/c$i.in.err"
			bad=1
		fi
		# Idempotent: the expected stream is its own coalescing.
		emit "$D/c$i.want" || true
		if ! same "$D/c$i.want" "$D/c$i.want.got"; then
			echo "--- $name, coalesced again (want, got):"
			diff "$D/c$i.want" "$D/c$i.want.got"
			bad=1
		fi
	done
	echo "$n cases"
	((n >= 20))
	((bad == 0))
}

# The malformed-line table: pairs of (line, the reason on stderr).  @NUL
# and @LONG stand for lines a shell string can not hold or should not:
# one with a NUL byte, one of 8193 bytes.
MALFORMED=(
	'FOO bar'				"unknown type 'FOO'"
	'USERS a'				"unknown type 'USERS'"
	'DOUBLEMAILBOXX a b'			"unknown type 'DOUBLEMAILBOXX'"
	'USER'					'USER takes 1 argument'
	'USER a b'				'USER takes 1 argument'
	'MAILBOX "a b" c'			'MAILBOX takes 1 argument'
	'SEEN alice'				'SEEN takes 2 arguments'
	'SUB a b c'				'SUB takes 2 arguments'
	'RENAME a b c'				'RENAME takes 2 arguments'
	'DOUBLEMAILBOX a'			'DOUBLEMAILBOX takes 2 arguments'
	'MAILBOX "unterminated'			'unterminated quoted string'
	'MAILBOX "x"y'				'garbage after quoted string'
	'MAILBOX "x\'				'backslash at end of line'
	'MAILBOX {3}'				'literal not allowed'
	'MAILBOX a"b'				"unquoted '\"' in argument"
	'MAILBOX a\b'				"unquoted '\\' in argument"
	'MAILBOX a{b'				"unquoted '{' in argument"
	'MAILBOX a}b'				"unquoted '}' in argument"
	'MAILBOX a(b'				"unquoted '(' in argument"
	'MAILBOX a)b'				"unquoted ')' in argument"
	$'MAILBOX a\rb'				"unquoted '\\r' in argument"
	' USER a'				'blank space before type'
	'@NUL'					'NUL byte in line'
	'@LONG'					'line longer than 8192 bytes'
)

# putline WORD: write one table line (with its LF) to stdout.
putline() {
	case $1 in
	@NUL)	printf 'USER a\0b\n' ;;
	@LONG)	printf 'MAILBOX %08185d\n' 7 ;;
	*)	printf '%s\n' "$1" ;;
	esac
}

@test "malformed-line table: each bad line to the rejects file and stderr with file and line, the rest emitted" {
	local i n=0 bad=0 lineno
	# Good line k before bad line k, and one more good line at the end.
	for ((i = 0; i < ${#MALFORMED[@]}; i += 2)); do
		n=$((n + 1))
		echo "MAILBOX user.ok.$n"
		putline "${MALFORMED[i]}"
	done > "$D/in"
	echo "MAILBOX user.ok.end" >> "$D/in"
	for ((i = 0; i < ${#MALFORMED[@]}; i += 2)); do
		putline "${MALFORMED[i]}"
	done > "$D/want-rejects"
	# 8192 bytes of line is still accepted.
	printf 'MAILBOX %08184d\n' 8 >> "$D/in"

	emit "$D/in"
	output=$(< "$D/in.got")
	for ((i = 0; i < ${#MALFORMED[@]}; i += 2)); do
		lineno=$((i + 2))
		if ! grep -qxF -- "synclog-tail: $D/in:$lineno: ${MALFORMED[i + 1]}" \
		    "$D/in.err"; then
			printf 'line %d %q: no "%s"\n' "$lineno" \
			    "${MALFORMED[i]:0:40}" "${MALFORMED[i + 1]}"
			bad=1
		fi
	done
	cat "$D/in.err"
	((bad == 0))
	# Nothing else on stderr.
	[ "$(wc -l < "$D/in.err")" -eq $((${#MALFORMED[@]} / 2)) ]
	# Verbatim, in order.
	cmp "$D/want-rejects" "$D/in-rejects"
	# Every good line emitted.
	for ((i = 1; i <= n; i++)); do
		grep -qx "MAILBOX user.ok.$i" <<<"$output"
	done
	grep -qx "MAILBOX user.ok.end" <<<"$output"
	grep -qx "MAILBOX 0*8" <<<"$output"
	[ "$(wc -l <<<"$output")" -eq $((n + 2)) ]
}

@test "malformed lines from standard input are reported, not written anywhere" {
	printf 'USER a\nFOO bar\nUSER b\n' > "$D/in"
	run "$T" -f - < "$D/in"
	[ "$status" -eq 0 ]
	[[ $output == *"-:2: unknown type 'FOO'"* ]]
	[ "$(records <<<"$output" | grep -v 'unknown type')" = "USER a
USER b" ]
	[ "$(ls "$D")" = "in
synclog-tail" ]
}
