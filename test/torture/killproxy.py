#!/usr/bin/env python3
"""killproxy: sit between a csync client and its replica command and
SIGKILL one of them after the client's Nth command line.

usage: killproxy.py N server|client CMD...

Bytes are copied both ways unchanged.  A command is counted at each
line end at the start of which the client wrote APPLY/GET/RESTORE
(literal bodies may hold such lines too: then the count is early, which
only moves the crash point).  "server" kills CMD; "client" kills the
nearest ancestor process named sync-send or sync-plan.  N = 0 never kills.
"""
import os
import select
import signal
import subprocess
import sys


def ancestor():
    pid = os.getppid()
    while pid > 1:
        try:
            comm = open("/proc/%d/comm" % pid).read().strip()
            stat = open("/proc/%d/stat" % pid).read()
        except OSError:
            return None
        if comm in ("sync-send", "sync-plan"):
            return pid
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return None


def main():
    n, who, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    seen, tail = 0, b"\n"
    fds = [0, p.stdout.fileno()]
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
                if n and seen >= n:
                    if who == "server":
                        p.kill()
                    else:
                        a = ancestor()
                        if a:
                            open(os.environ.get("KILLPROXY_LOG", "/dev/null"), "a").write("killed %d\n" % a)
                            os.kill(a, signal.SIGKILL)
                    n = 0
            else:
                if not d:
                    return 0
                os.write(1, d)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, OSError):
        sys.exit(0)
