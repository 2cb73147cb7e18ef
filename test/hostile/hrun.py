#!/usr/bin/env python3
"""hrun: run one command with this process's stdin, under a time limit,
and report how it ended and how much memory it used at most.

usage: hrun.py TIMEOUT OUT ERR STATUSFILE -- CMD ARGS...

STATUSFILE gets one line: "rc=N maxrss_kb=N timedout=0|1".  rc is the
exit status, or 128+signal when the command was killed by a signal.
The maximum resident set size comes from the kernel's accounting of the
reaped child (getrusage RUSAGE_CHILDREN), so it is the peak (VmHWM) of
the command itself; the command is exec'd directly, without a shell.
"""
import os
import resource
import signal
import subprocess
import sys


def main():
    if len(sys.argv) < 7 or sys.argv[5] != "--":
        sys.stderr.write(__doc__)
        return 2
    limit = float(sys.argv[1])
    out, err, statf = sys.argv[2], sys.argv[3], sys.argv[4]
    cmd = sys.argv[6:]
    timedout = 0
    with open(out, "wb") as o, open(err, "wb") as e:
        p = subprocess.Popen(cmd, stdin=sys.stdin, stdout=o, stderr=e,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timedout = 1
            os.killpg(p.pid, signal.SIGKILL)
            rc = p.wait()
    if rc < 0:
        rc = 128 - rc
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(statf, "w") as s:
        s.write("rc=%d maxrss_kb=%d timedout=%d\n" % (rc, rss, timedout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
