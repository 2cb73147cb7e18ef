#!/usr/bin/env python3
"""stallreader: a csync peer that stops reading, for testing the client's
timeouts on a replica or a network that stalls.

usage: stallreader.py tcp PORTFILE
       stallreader.py stdio
       stallreader.py proxy N CMD...

tcp    listens on 127.0.0.1 (a free port, written to PORTFILE), accepts
       one connection, sends a banner and answers "OK success" to every
       command until an APPLY MESSAGE line arrives; from then on it
       reads nothing more, so a client uploading bodies finds the
       connection full.  Its receive buffer is kept small so that this
       happens after a few hundred kilobytes.
stdio  the same on standard input and output (for a client's -e).
proxy  runs CMD (a csync server on stdin/stdout) and copies bytes both
       ways until the client's Nth command line has been passed on;
       then nothing more moves in either direction: a network stall in
       the middle of a run.

In every mode, once stalled it waits for the client to go away (at
most 600 s, so that no fake outlives its test), and then exits.  With
STALL_LOG set, "stalled" and "client gone" are appended to that file.
"""
import os
import re
import select
import socket
import subprocess
import sys
import time

LIT = re.compile(rb"(?:\{(\d+)\+?\}|%\{[^ ]+ [^ ]+ (\d+)\})\r?\n$")


def note(what):
    path = os.environ.get("STALL_LOG")
    if path:
        with open(path, "a") as f:
            f.write("%s %.1f\n" % (what, time.time()))


def wait_gone(fd):
    """Read nothing; return when the peer on fd hangs up (or after 600 s)."""
    note("stalled")
    p = select.poll()
    # No POLLIN: unread bytes must not wake us, only the hang-up.
    p.register(fd, select.POLLRDHUP)
    deadline = time.time() + 600
    while time.time() < deadline:
        ev = p.poll(1000)
        if ev and ev[0][1] & (select.POLLRDHUP | select.POLLHUP |
                              select.POLLERR | select.POLLNVAL):
            break
    note("client gone")


def serve(rd, wr, fd):
    """Banner, then OK to each command until APPLY MESSAGE; then stall."""
    def say(b):
        try:
            wr.write(b)
            wr.flush()
        except OSError:
            sys.exit(0)

    say(b"* OK stallreader csync server\r\n")
    while True:
        line = rd.readline()
        if not line:
            return 0
        if line.upper().startswith(b"APPLY MESSAGE"):
            wait_gone(fd)
            return 0
        # the rest of the command: literals and the lines after them
        while True:
            m = LIT.search(line)
            if not m:
                break
            rd.read(int(m.group(1) or m.group(2)))
            line = rd.readline()
            if not line:
                return 0
        say(b"OK success\r\n")


def tcp(portfile):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # inherited by the accepted socket: a full connection comes soon
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    os.rename(tmp, portfile)
    ls.settimeout(600)
    try:
        s, _ = ls.accept()
    except socket.timeout:
        return 1
    ls.close()
    rd = s.makefile("rb", buffering=4096)
    wr = s.makefile("wb")
    return serve(rd, wr, s.fileno())


def proxy(n, cmd):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    seen, tail = 0, b"\n"
    fds = [0, p.stdout.fileno()]
    try:
        while fds:
            r, _, _ = select.select(fds, [], [])
            for fd in r:
                d = os.read(fd, 65536)
                if fd == 0:
                    if not d:
                        p.stdin.close()
                        fds.remove(fd)
                        continue
                    buf = tail + d
                    for w in (b"\nAPPLY ", b"\nGET ", b"\nRESTORE "):
                        seen += buf.count(w)
                    tail = d[-8:]
                    p.stdin.write(d)
                    p.stdin.flush()
                    if seen >= n:
                        wait_gone(0)
                        return 0
                else:
                    if not d:
                        return 0
                    os.write(1, d)
    finally:
        p.kill()
        p.wait()
    return 0


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "tcp" and len(sys.argv) == 3:
        return tcp(sys.argv[2])
    if mode == "stdio":
        return serve(sys.stdin.buffer, sys.stdout.buffer, 0)
    if mode == "proxy" and len(sys.argv) > 3:
        return proxy(int(sys.argv[2]), sys.argv[3:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, ConnectionResetError):
        sys.exit(0)
