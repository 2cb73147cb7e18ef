#!/usr/bin/env bats
# Our sync_client replicates a live Cyrus master into our sync_server:
# sync-plan reads the master's state through the master's own csync
# service (sync_source_*), sync-send fetches the bodies from it, and the
# replica is our sync_server spawned with -e on a store of ours.  After a
# full user sync, one change of each kind is made on the master and
# replicated with one pass of sync_client -r -1 over the master's real
# sync log.  Then the master's csync service and our server (the same
# store, also listening) must describe the user identically (GET USER,
# GET META, GET FULLMAILBOX of every mailbox), and a new plan must hold
# no APPLY.  The tests run in file order and build on each other.
#
# A replica spawned with -e is preauthorized and, as Cyrus's sync_server
# on a UNIX socket, does not offer SIEVE-MAILBOX: the master's sieve
# scripts then travel as legacy APPLY SIEVE, and the master's #sieve
# mailbox is not replicated.  The comparison leaves #sieve mailboxes out
# and compares the scripts themselves (name, active, SHA-1 of the text:
# the master's over ManageSieve, ours from sync-store dump).

load ../helpers
load interop

setup_file() {
	ia_workdir
	mkdir -p "$D/rec"
	# Listening too, for the comparisons over csync.
	ia_our_server
	ia_up "$D" --only master --sync-target "127.0.0.1:$PORT"
	ia_populate populate
	# The master's own imapd.conf (its sync log) plus where our tools
	# read the master's state.
	ia_source_conf
}

# populate: alice, whose Archive/2023 gets a message for sure (renamed,
# then deleted), and bob, the second user, who can read alice's INBOX.
populate() {
	cyrus_pair populate "$D" alice 30 --seed 11 &&
	cyrus_pair act "$D" master alice append Archive/2023 1 &&
	cyrus_pair populate "$D" bob 5 --plain --seed 12 &&
	cyrus_pair act "$D" master alice setacl INBOX bob lrs
}

teardown_file() {
	ia_teardown ours
}

setup() {
	ia_tools
	# Our replica, spawned by the client.
	E="$(sp_sync_server_bin) -C $OURS/imapd.conf"
}

act() {
	cyrus_pair act "$D" master "$@" >>"$D/act.log" 2>&1 ||
	    { tail -n 5 "$D/act.log"; return 1; }
}

# msg_annot USER MBOX UID ENTRY VALUE: set a message annotation (private
# and shared value) on the master over IMAP (ANNOTATE), as USER by the
# admin's proxy authorization.
msg_annot() {
	python3 - "$(. "$D/ports.env" && echo "$MASTER_IMAP_PORT")" "$@" <<-'EOF'
	import imaplib, sys
	port, user, mbox, uid, entry, value = sys.argv[1:7]
	m = imaplib.IMAP4("127.0.0.1", int(port))
	m.authenticate("PLAIN",
	    lambda _: ("%s\0admin\0adminpass" % user).encode())
	typ, _ = m.select('"%s"' % mbox)
	assert typ == "OK", mbox
	v = '"%s"' % value
	typ, r = m.uid("STORE", uid, "ANNOTATION",
	    "(%s (value.priv %s value.shared %s))" % (entry, v, v))
	assert typ == "OK", r
	m.logout()
	EOF
}

# run_client NAME ARGS...: our sync_client with the master as source and
# our sync_server as target; output in $D/rec/NAME.out.
run_client() {
	local name=$1
	shift
	run "$CLIENT" -C "$M" -e "$E" -v "$@"
	echo "$output" >"$D/rec/$name.out"
	echo "$output" | tail -n 20
	if [[ $status -ne 0 ]]; then
		echo "sync_client $* exited $status"
		ia_master_syslog
		return 1
	fi
}

# roll NAME: one rolling pass of sync_client -r -1 over the master's
# sync log.  The log is kept in $D/rec/NAME.synclog, and the plan made
# from it just before the pass (a dry run: sync-plan alone) in
# $D/rec/NAME.plan.
roll() {
	cat "$D/master/conf/sync/log" >"$D/rec/$1.synclog" 2>/dev/null || true
	echo "# master's sync log:"
	sed 's/^/#   /' "$D/rec/$1.synclog" | head -n 40
	"$ROOT/cmd/synclog-tail/synclog-tail" -C "$M" -f "$D/rec/$1.synclog" |
	    "$PLAN" -C "$M" -e "$E" >"$D/rec/$1.plan" 2>&1 || true
	run_client "$1" -r -1
}

# quiet USER NAME: a new plan for USER holds no APPLY but the
# capabilities.
quiet() {
	run "$PLAN" -C "$M" -e "$E" -u "$1"
	echo "$output" >"$D/rec/$2.quiet-$1.plan"
	[[ $status -eq 0 ]] || { echo "$output"; return 1; }
	if echo "$output" | grep '^APPLY' | grep -qv '^APPLY CAPABILITIES'; then
		echo "a new plan for $1 is not empty:"
		grep -v '^#' "$D/rec/$2.quiet-$1.plan" | cut -c1-300 | head -n 30
		return 1
	fi
}

# cmp_user USER [EXTRA_MBOX...]: ia_compare_user (interop.bash) with the
# #sieve mailboxes left out.
cmp_user() {
	ia_compare_user --no-sieve "$@"
}

# cmp_sieve USER: the same sieve scripts on both sides.
cmp_sieve() {
	local out=$D/cmp
	mkdir -p "$out"
	cyrus_pair dump "$D" master "$1" --no-bodies | grep '^sieve ' |
	    sort >"$out/$1.sieve.master"
	"$STORE" -C "$OURS/imapd.conf" dump "$1" |
	    awk -v u="$1" '$1 == "sieve" && $2 == u {
		printf "sieve %s%s sha1=%s\n", $3, $5 == 1 ? " active" : "", $7
	    }' | sort >"$out/$1.sieve.ours"
	ia_diff "sieve scripts of $1" "$out/$1.sieve.master" \
	    "$out/$1.sieve.ours"
}

# check NAME [EXTRA_MBOX...]: alice identical on both sides, then a new
# plan for alice is empty.
check() {
	local name=$1
	shift
	cmp_user alice "$@" || { ia_server_log; return 1; }
	quiet alice "$name"
}

# The DELETED.* names the master's log renamed to in the last pass.
deleted_names() {
	awk '$1 == "RENAME" && $3 ~ /^DELETED\./ { print $3 }' "$D/rec/$1.synclog" |
	    sort -u
}

@test "full sync -u alice and -u bob from the Cyrus master into our server" {
	run_client full -u alice bob
	grep -q '^OK APPLY MAILBOX user.alice$' "$D/rec/full.out"
	grep -q '^OK APPLY MAILBOX user.bob$' "$D/rec/full.out"
	cmp_user alice
	cmp_user bob
	cmp_sieve alice
	grep -q '^sieve main active ' "$D/cmp/alice.sieve.ours"
	# INBOX, Archive, Archive.2023, Drafts, Sent
	[[ $(wc -l <"$D/cmp/mboxes.alice") -ge 5 ]]
	mapfile -t mb <"$D/cmp/mboxes.alice"
	ia_bodies "${mb[@]}"
	quiet alice full
	quiet bob full
	# Our tools left the Cyrus master's files alone.
	[ ! -e "$D/master/conf/syncpipe.db" ]
}

@test "rolling: append" {
	act alice append INBOX 2 900
	roll append
	grep -q '^APPLY MESSAGE' "$D/rec/append.plan"
	ia_bodies user.alice
	check append
}

@test "rolling: flag change" {
	act alice flag INBOX 1:3 '\Flagged,$Important'
	act alice unflag INBOX 4 '\Seen'
	roll flag
	check flag
}

@test "rolling: expunge" {
	act alice expunge INBOX 5
	roll expunge
	check expunge
}

@test "rolling: seen by the owner" {
	act alice seen INBOX '1:*'
	roll seen-own
	check seen-own
}

@test "rolling: seen by another user (APPLY SEEN)" {
	act bob seen 'Other Users/alice' 1:3
	roll seen-other
	grep -q '^APPLY SEEN' "$D/rec/seen-other.plan"
	check seen-other
	cmp_user bob
	quiet bob seen-other
}

@test "rolling: ACL change" {
	act alice setacl Sent bob lrs
	roll acl
	check acl
	ia_mailbox "$D/cmp/alice.ours" user.alice.Sent | grep -qF 'bob\tlrs'
}

@test "rolling: subscribe and unsubscribe" {
	act alice subscribe Archive
	act alice unsubscribe Sent
	roll sub
	grep -q '^APPLY SUB ' "$D/rec/sub.plan"
	grep -q '^APPLY UNSUB ' "$D/rec/sub.plan"
	check sub
}

@test "rolling: mailbox annotations, private and shared" {
	act alice annotate INBOX /private/comment 'changed comment'
	act alice annotate Archive /shared/comment 'archive folder'
	roll annot
	check annot
	ia_mailbox "$D/cmp/alice.ours" user.alice.Archive | grep -q 'archive folder'
}

@test "rolling: message annotation" {
	msg_annot alice INBOX 6 /comment 'note on six'
	roll msgannot
	check msgannot
	ia_mailbox "$D/cmp/alice.ours" user.alice | grep -q 'note on six'
}

@test "rolling: quota change" {
	act alice quota 50000 1000
	roll quota
	grep -q '^APPLY QUOTA ' "$D/rec/quota.plan"
	check quota
}

@test "rolling: sieve upload and activate (ManageSieve)" {
	act alice sieve vacation
	roll sieve
	grep -q '^APPLY SIEVE ' "$D/rec/sieve.plan"
	check sieve
	cmp_sieve alice
	grep -q '^sieve vacation active ' "$D/cmp/alice.sieve.ours"
}

@test "rolling: mailbox create with special-use, and a child" {
	act alice create Projects '\Archive'
	act alice create Projects/Alpha
	roll create
	check create
	grep -qx 'user.alice.Projects.Alpha' "$D/cmp/mboxes.alice"
	ia_mailbox "$D/cmp/alice.ours" user.alice.Projects | grep -q 'Archive'
}

@test "rolling: rename of a folder with a message" {
	act alice rename Archive/2023 Archive/Y2023
	roll rename
	grep -q '^APPLY RENAME ' "$D/rec/rename.plan"
	check rename
	grep -qx 'user.alice.Archive.Y2023' "$D/cmp/mboxes.alice"
	! grep -qx 'user.alice.Archive.2023' "$D/cmp/mboxes.alice"
	ia_bodies user.alice.Archive.Y2023
	grep -Eq ': [1-9][0-9]* bodies checked' "$D/cmp/bodies.ours"
}

@test "rolling: delete of a folder (delayed delete: DELETED.* rename)" {
	act alice delete Archive/Y2023
	roll delete
	mapfile -t del < <(deleted_names delete)
	echo "deleted: ${del[*]}"
	((${#del[@]} == 1))
	printf '%s\n' "${del[@]}" >>"$D/deleted"
	check delete "${del[@]}"
	! grep -qx 'user.alice.Archive.Y2023' "$D/cmp/mboxes.alice"
	run ia_ours "GET MAILBOXES (user.alice.Archive.Y2023)"
	[[ $output != *MAILBOX* ]]
	ia_bodies "${del[@]}"
}

@test "rolling: user delete (deluser)" {
	act alice deluser
	roll deluser
	mapfile -t del < <(deleted_names deluser)
	echo "deleted: ${del[*]}"
	((${#del[@]} >= 6))
	printf '%s\n' "${del[@]}" >>"$D/deleted"
	grep -q '^APPLY UNUSER alice' "$D/rec/deluser.plan"
	mapfile -t all <"$D/deleted"
	cmp_user alice "${all[@]}" || { ia_server_log; false; }
	# Her scripts went with her.
	! "$STORE" -C "$OURS/imapd.conf" dump alice | grep -q '^sieve '
	# Neither side lists a live mailbox of alice any more.
	run ia_master "GET USER alice"
	echo "$output"
	[[ $output != *'"MBOXNAME": "user.alice'* && $output == *'= OK'* ]]
	run ia_ours "GET USER alice"
	echo "$output"
	[[ $output != *'"MBOXNAME": "user.alice'* && $output == *'= OK'* ]]
	quiet alice deluser
	cmp_user bob
	quiet bob deluser
}
