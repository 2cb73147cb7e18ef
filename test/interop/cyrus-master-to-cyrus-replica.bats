#!/usr/bin/env bats
# Our client replicates a live Cyrus master into a Cyrus replica, in
# place of Cyrus's own sync_client: sync-plan reads the master's state
# through the master's csync service (sync_source_*), sync-send fetches
# the bodies the replica lacks from it (GET FETCH).  Nothing of the
# master's files is read but its sync log.  After every run the two
# Cyrus instances must show the same state over IMAP (cyrus-pair
# compare) and a new plan must hold no APPLY.  One rolling pass per kind
# of change, made on the master as a client would (IMAP, ManageSieve);
# bob, who may read alice's INBOX, has a seen state of his own there.
# The tests run in order.

load ../helpers
load interop

setup_file() {
	ia_workdir
	ia_up "$D"
	ia_populate populate
	# The master's own imapd.conf (sync_host, sync_authname, the log)
	# plus where our tools read the master's state.
	ia_source_conf
}

# populate: alice, and bob, a second user, who can read alice's INBOX.
populate() {
	cyrus_pair populate "$D" alice 50 &&
	cyrus_pair populate "$D" bob 5 --plain --seed 8 &&
	cyrus_pair act "$D" master alice setacl INBOX bob lrs
}

teardown_file() {
	ia_teardown
}

setup() {
	ia_tools
}

act() {
	cyrus_pair act "$D" master "$@" >>"$D/act.log" 2>&1 ||
	    { tail -n 5 "$D/act.log"; return 1; }
}

# msg_annot SIDE USER MBOX UID ENTRY [VALUE]: set (or, without VALUE,
# print) a message annotation of USER's MBOX over IMAP (ANNOTATE), as USER
# by the admin's proxy authorization; the private and the shared value.
msg_annot() {
	local port
	port=$(. "$D/ports.env" && if [[ $1 == master ]]; then
		echo "$MASTER_IMAP_PORT"; else echo "$REPLICA_IMAP_PORT"; fi)
	python3 - "$port" "$2" "$3" "$4" "$5" "${6-}" "$#" <<-'EOF'
	import imaplib, sys
	port, user, mbox, uid, entry, value, argc = sys.argv[1:8]
	m = imaplib.IMAP4("127.0.0.1", int(port))
	m.authenticate("PLAIN",
	    lambda _: ("%s\0admin\0adminpass" % user).encode())
	typ, _ = m.select('"%s"' % mbox)
	assert typ == "OK", mbox
	if int(argc) == 6:
	    v = '"%s"' % value
	    typ, r = m.uid("STORE", uid, "ANNOTATION",
	        "(%s (value.priv %s value.shared %s))" % (entry, v, v))
	    assert typ == "OK", r
	else:
	    typ, r = m.uid("FETCH", uid,
	        "(ANNOTATION (%s (value.priv value.shared)))" % entry)
	    assert typ == "OK", r
	    print(b" ".join(x if isinstance(x, bytes) else x[1]
	        for x in r if x is not None).decode())
	m.logout()
	EOF
}

# compare_user USER [compare options]: master and replica agree on USER.
compare_user() {
	run cyrus_pair compare "$D" "$@"
	echo "$output" | head -n 60
	[ "$status" -eq 0 ]
}

# The replica agrees with the master, and a fresh plan changes nothing.
in_sync() {
	compare_user alice
	run "$PLAN" -C "$M" -u alice
	[ "$status" -eq 0 ]
	echo "$output" | grep -v '^#'
	! echo "$output" | grep -v '^APPLY CAPABILITIES' | grep -q '^APPLY'
}

# One pass over the master's real sync log (kept in $D/synclog.NAME).
roll() {
	cat "$D/master/conf/sync/log" >"$D/synclog.$1" 2>/dev/null || true
	"$TAIL" -C "$M" -1 >"$D/actions.$1" &&
	    "$PLAN" -C "$M" <"$D/actions.$1" >"$D/plan.$1" &&
	    "$SEND" -C "$M" -v -f "$D/plan.$1" >"$D/send.$1" 2>&1
	local rc=$?
	cat "$D/send.$1"
	return $rc
}

@test "full user sync from the Cyrus master: replica identical, second plan empty" {
	run "$PLAN" -C "$M" -u alice
	[ "$status" -eq 0 ]
	echo "$output" >"$D/plan.full"
	# Bodies carry where the source keeps them.
	grep -q '^APPLY MESSAGE (%{default [0-9a-f]\{40\} [0-9]*} %(MBOXNAME user.alice PARTITION default UNIQUEID [^ ]* UID [0-9]*)' "$D/plan.full"
	grep -q '^APPLY CAPABILITIES (SIEVE-MAILBOX)' "$D/plan.full"
	grep -q 'user.alice.#sieve' "$D/plan.full"
	run "$SEND" -C "$M" -v -f "$D/plan.full"
	echo "$output" | tail -n 20
	[ "$status" -eq 0 ]
	echo "$output" | grep -q 'bodies'
	in_sync
	# Our tools left the Cyrus master's files alone.
	[ ! -e "$D/master/conf/syncpipe.db" ]
}

@test "full user sync of a second user, bob" {
	run "$PLAN" -C "$M" -u bob
	[ "$status" -eq 0 ]
	echo "$output" >"$D/plan.bob"
	run "$SEND" -C "$M" -v -f "$D/plan.bob"
	echo "$output" | tail -n 20
	[ "$status" -eq 0 ]
	compare_user bob --all-namespaces
}

@test "no-op: unchanged mailboxes are not read in full" {
	run "$PLAN" -C "$M" -v -u alice
	[ "$status" -eq 0 ]
	echo "$output" | grep -q 'user.alice: unchanged'
	! echo "$output" | grep -q 'RECORD'
}

@test "rolling: append and flags, only the new bodies fetched" {
	cyrus_pair act "$D" master alice append INBOX 3 >/dev/null
	cyrus_pair act "$D" master alice flag INBOX 1:5 '\Flagged,$Work' >/dev/null
	run roll append
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q ' 3 bodies'
	echo "$output" | grep -q '^%committed'
	in_sync
}

@test "rolling: expunge" {
	cyrus_pair act "$D" master alice expunge INBOX 3:4 >/dev/null
	run roll expunge
	echo "$output"
	[ "$status" -eq 0 ]
	in_sync
}

@test "rolling: create and rename" {
	cyrus_pair act "$D" master alice create Projects >/dev/null
	cyrus_pair act "$D" master alice append Projects 2 >/dev/null
	cyrus_pair act "$D" master alice rename Archive/2023 Archive/Old >/dev/null
	run roll rename
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q 'APPLY RENAME' "$D/plan.rename"
	in_sync
}

@test "rolling: subscription and quota" {
	cyrus_pair act "$D" master alice subscribe Projects >/dev/null
	cyrus_pair act "$D" master alice unsubscribe Sent >/dev/null
	cyrus_pair act "$D" master alice quota 200000 5000 >/dev/null
	run roll subquota
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q 'APPLY SUB' "$D/plan.subquota"
	grep -q 'APPLY UNSUB' "$D/plan.subquota"
	grep -q 'APPLY QUOTA' "$D/plan.subquota"
	in_sync
}

@test "rolling: a new sieve script travels in the #sieve mailbox" {
	printf 'require "fileinto";\nif header :contains "subject" "x" { fileinto "Projects"; }\n' >"$D/s2.sieve"
	cyrus_pair act "$D" master alice sieve second "$D/s2.sieve" >/dev/null
	cyrus_pair act "$D" master alice sieve-activate second >/dev/null
	run roll sieve
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q 'user.alice.#sieve' "$D/plan.sieve"
	in_sync
}

@test "rolling: seen by the owner" {
	act alice seen INBOX '1:*'
	act alice unseen Sent 1
	run roll seen-own
	echo "$output"
	[ "$status" -eq 0 ]
	in_sync
}

@test "rolling: seen by another user (APPLY SEEN)" {
	act bob seen 'Other Users/alice' 1:7
	grep -q '^SEEN bob ' "$D/master/conf/sync/log"
	run roll seen-other
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^APPLY SEEN' "$D/plan.seen-other"
	in_sync
	compare_user bob --all-namespaces
}

@test "rolling: ACL change" {
	act alice setacl Sent bob lrs
	act alice setacl Drafts bob lrswi
	run roll acl
	echo "$output"
	[ "$status" -eq 0 ]
	in_sync
	grep -q '^  acl alice=[a-z]* bob=lrs$' "$D/dumps/alice.replica.txt"
}

@test "rolling: mailbox annotations, private and shared" {
	act alice annotate INBOX /private/comment 'changed comment'
	act alice annotate Archive /shared/comment 'archive folder'
	act alice annotate Sent /shared/comment
	run roll annot
	echo "$output"
	[ "$status" -eq 0 ]
	in_sync
	grep -qx '  metadata /shared/comment=archive folder' \
	    "$D/dumps/alice.replica.txt"
	grep -qx '  metadata /private/comment=changed comment' \
	    "$D/dumps/alice.replica.txt"
}

@test "rolling: message annotation" {
	msg_annot master alice INBOX 6 /comment 'note on six'
	run roll msgannot
	echo "$output"
	[ "$status" -eq 0 ]
	in_sync
	run msg_annot replica alice INBOX 6 /comment
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *'value.priv "note on six"'* ]]
	[[ $output == *'value.shared "note on six"'* ]]
}

@test "rolling: delete of a folder with messages" {
	act alice delete Projects
	run roll delete
	echo "$output"
	[ "$status" -eq 0 ]
	in_sync
	! grep -qx 'mailbox Projects' "$D/dumps/alice.replica.txt"
	grep -qx 'mailbox INBOX' "$D/dumps/alice.replica.txt"
}

@test "rolling: user delete" {
	act alice deluser
	run roll deluser
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^APPLY UNUSER alice' "$D/plan.deluser"
	# Neither Cyrus lists a live mailbox of alice any more.
	. "$D/ports.env"
	for port in "$MASTER_CSYNC_PORT" "$REPLICA_CSYNC_PORT"; do
		run csync --user "$REPL_USER" --password "$REPL_PASS" \
		    127.0.0.1 "$port" 'GET USER alice'
		echo "$output"
		[[ $output == *'= OK'* ]]
		[[ $output != *'"MBOXNAME": "user.alice'* ]]
	done
	compare_user alice
	compare_user bob --all-namespaces
}

@test "a source that cannot list users refuses -A" {
	run "$PLAN" -C "$M" -A
	[ "$status" -eq 1 ]
	echo "$output" | grep -q 'cannot list'
}
