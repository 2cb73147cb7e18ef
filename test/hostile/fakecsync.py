#!/usr/bin/env python3
"""fakecsync: a csync server on stdin/stdout that misbehaves on purpose,
for testing the client tools (sync-send, sync-plan) with -e.

usage: fakecsync.py MODE

Commands are read whole (literals and file literals included) and, when
FAKE_LOG is set, appended to that file.  MODE says how to answer:

  banner-endless        "* SASL PLAIN" lines forever, never "* OK"
  banner-stall          "* OK" without a line end, then silence
  reply-stall           banner; first reply is "* MISSING (" then silence
  reply-endless         banner; first reply is endless "* MISSING" lines
  literal-1g            banner; first reply announces a 1 GB literal,
                        sends 10 bytes of it and closes
  bad-missing           banner; RESERVE gets a MISSING list of non-GUIDs
                        (paths, junk); everything else OK
  bye-mid               banner; first command OK, second gets BYE, close
  bye-first             banner; first command gets BYE, close
  eof-mid               banner; first command OK, then close
  bad-reply             banner; first command gets "BAD junk"
  mailbox-missing-keys  banner; GET gets "* MAILBOX %(UNIQUEID x MBOXNAME
                        user.alice)" then OK; everything else OK
"""
import os
import re
import select
import sys
import time

rd = sys.stdin.buffer
wr = sys.stdout.buffer
log = open(os.environ["FAKE_LOG"], "ab") if os.environ.get("FAKE_LOG") else None
LIT = re.compile(rb"(?:\{(\d+)\+?\}|%\{[^ ]+ [^ ]+ (\d+)\})\r?\n$")


def say(b):
    try:
        wr.write(b)
        wr.flush()
    except (BrokenPipeError, OSError):
        sys.exit(0)


def command():
    """One whole command, or None at EOF."""
    out = b""
    while True:
        try:
            line = rd.readline()
        except OSError:
            return None
        if not line:
            return None
        out += line
        m = LIT.search(line)
        if not m:
            break
        n = int(m.group(1) or m.group(2))
        try:
            out += rd.read(n)
        except OSError:
            return None
    if log:
        log.write(out)
        log.flush()
    return out


def silence():
    # Say nothing, but go away when the client does (or after 600 s),
    # so that no fake outlives its test.
    deadline = time.time() + 600
    while time.time() < deadline:
        ready, _, _ = select.select([sys.stdin.buffer], [], [], 1.0)
        if ready and not os.read(sys.stdin.fileno(), 65536):
            break
    sys.exit(0)


def main():
    mode = sys.argv[1]
    if mode == "banner-endless":
        while True:
            say(b"* SASL PLAIN\r\n" * 1000)
    if mode == "banner-stall":
        say(b"* OK fake")
        silence()
    say(b"* OK fake csync server\r\n")
    n = 0
    while True:
        c = command()
        if c is None:
            return 0
        n += 1
        word = c.split(b" ", 2)
        sub = word[1].upper() if len(word) > 1 else b""
        if mode == "reply-stall":
            say(b"* MISSING (")
            silence()
        elif mode == "reply-endless":
            line = b"* MISSING (" + b" ".join([b"a" * 40] * 100) + b")\r\n"
            while True:
                say(line * 100)
        elif mode == "literal-1g":
            say(b"* MAILBOX {1073741824+}\r\n0123456789")
            return 0
        elif mode == "bad-missing":
            if sub == b"RESERVE":
                say(b"* MISSING (../../../../../../etc/passwd zz /etc/shadow "
                    b"%{x y 5} " + b"f" * 39 + b")\r\n")
            say(b"OK success\r\n")
        elif mode == "bye-mid":
            if n >= 2:
                say(b"BYE shutting down\r\n")
                return 0
            say(b"OK success\r\n")
        elif mode == "bye-first":
            say(b"BYE shutting down\r\n")
            return 0
        elif mode == "eof-mid":
            if n >= 2:
                return 0
            say(b"OK success\r\n")
        elif mode == "bad-reply":
            say(b"BAD junk\r\n")
        elif mode == "mailbox-missing-keys":
            if word[0].upper() == b"GET":
                say(b"* MAILBOX %(UNIQUEID x MBOXNAME user.alice)\r\n")
            say(b"OK success\r\n")
        else:
            sys.stderr.write(__doc__)
            return 2


if __name__ == "__main__":
    sys.exit(main())
