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
	RSS_MB=400
	[ "$(status_n 1)" = "OK success" ]
	sane; insync; unchanged
}

# ASan's redzones and quarantine about triple each small allocation:
# about 960 MB when measured, bound 1280 MB.
@test "a list of 2 million items under ASan: answered, no sanitizer report" {
	big
	python3 "$HDIR/gen.py" list 2000000 | srv --time 240
	RSS_MB=1280
	[ "$(status_n 1)" = "OK success" ]
	sane; insync; unchanged
}

@test "an APPLY MAILBOX with 150,000 records (a real big mailbox) is accepted" {
	big
	python3 "$HDIR/gen.py" records 150000 | srv --plain --time 120
	RSS_MB=400
	[ "$(status_n 1)" = "OK success" ]
	sane; insync
	[ "$("$STORE" -C "$T/imapd.conf" dump | grep -c '^record user.alice.Big ')" -eq 150000 ]
}
