#!/usr/bin/env bats
# The big hostile inputs (hundreds of megabytes, minutes of CPU): run by
# scripts/torture (make torture), not by make check.  Same checks as
# test/hostile.bats, whose setup and helpers they share.

load ../hostile/common

@test "annotation value of 20 MB: refused, memory bounded, nothing stored" {
	big
	python3 "$HDIR/gen.py" annot 20971520 | srv --plain
	[[ $(status_n 1) == NO* || $(status_n 1) == BAD* ]]
	sane; insync; unchanged
	python3 "$HDIR/gen.py" annot 20971520 | srv
	sane; insync; unchanged
}

@test "a list of 2 million items: answered, memory bounded (plain build)" {
	big
	python3 "$HDIR/gen.py" list 2000000 | srv --plain --time 120
	# 128 MB measured (64 bytes a node with its string), bound 1.3x.
	RSS_MB=170
	[ "$(status_n 1)" = "OK success" ]
	sane; insync; unchanged
}

# ASan (redzones, quarantine) makes the small allocations cost about
# five times as much: 606 MB measured, bound 1.3x.
@test "a list of 2 million items under ASan: answered, no sanitizer report" {
	big
	python3 "$HDIR/gen.py" list 2000000 | srv --time 240
	RSS_MB=800
	[ "$(status_n 1)" = "OK success" ]
	sane; insync; unchanged
}

@test "an APPLY MAILBOX with 150,000 records (a real big mailbox) is accepted" {
	big
	python3 "$HDIR/gen.py" records 150000 | srv --plain --time 120
	# 120 MB measured, bound 1.3x.
	RSS_MB=160
	[ "$(status_n 1)" = "OK success" ]
	sane; insync
	[ "$("$STORE" -C "$T/imapd.conf" dump | grep -c '^record user.alice.Big ')" -eq 150000 ]
}
