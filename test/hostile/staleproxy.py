#!/usr/bin/env python3
"""staleproxy: a csync relay that makes every APPLY MAILBOX of one
mailbox look stale, so that the replica refuses it each time.

usage: staleproxy.py MAILBOX CMD...

Runs CMD (a csync server on stdin/stdout) and relays bytes both ways.
In each APPLY MAILBOX command line naming MAILBOX, the SINCE_MODSEQ
condition is rewritten to 1, which the replica answers with
IMAP_SYNC_CHANGED however often the client plans again.  Literals pass
untouched.
"""
import re
import subprocess
import sys
import threading

LIT = re.compile(rb"(?:\{(\d+)\+?\}|%\{[^ ]+ [^ ]+ (\d+)\})\r?\n$")


def main():
    if len(sys.argv) < 3:
        sys.stderr.write("usage: staleproxy.py MAILBOX CMD...\n")
        return 2
    name = b" MBOXNAME " + sys.argv[1].encode() + b" "
    p = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)

    def back():
        while True:
            d = p.stdout.read1(65536)
            if not d:
                break
            sys.stdout.buffer.write(d)
            sys.stdout.buffer.flush()

    t = threading.Thread(target=back, daemon=True)
    t.start()
    rd = sys.stdin.buffer
    first = True        # the line starts a command, not a continuation
    while True:
        line = rd.readline()
        if not line:
            break
        if first and line.startswith(b"APPLY MAILBOX ") and name in line:
            line = re.sub(rb"SINCE_MODSEQ \d+", b"SINCE_MODSEQ 1", line)
        p.stdin.write(line)
        m = LIT.search(line)
        if m:
            n = int(m.group(1) or m.group(2))
            while n > 0:
                d = rd.read(min(n, 65536))
                if not d:
                    break
                p.stdin.write(d)
                n -= len(d)
            first = False
        else:
            first = True
        p.stdin.flush()
    p.stdin.close()
    t.join()
    return p.wait()


if __name__ == "__main__":
    sys.exit(main())
