#!/usr/bin/env python3
"""synclog-interchange-writer.py PEER_DIR PORTS_ENV USER PREFIX N

As USER on the Cyrus master, in one IMAP session: for i in 1..N, CREATE
PREFIXi and APPEND one small message to it.  Each step makes the imapd
append a line to the master's sync log (MAILBOX user.USER.PREFIXi, then
APPEND user.USER.PREFIXi).  Prints each created name."""

import sys
import time

sys.path.insert(0, sys.argv[1])
import cyrus_pair as cp  # noqa: E402


def main():
    env = cp.read_env(sys.argv[2])
    user, prefix, n = sys.argv[3], sys.argv[4], int(sys.argv[5])
    im = cp.user_conn(cp.Side(env, "master"), user)
    msg = b"From: w@example.org\r\nSubject: %s\r\n\r\nbody\r\n"
    for i in range(1, n + 1):
        name = "%s%d" % (prefix, i)
        im.cmd("CREATE " + cp.quote(name))
        im.cmd("APPEND %s () {LIT}" % cp.quote(name), msg % name.encode())
        print(name, flush=True)
    im.close()


if __name__ == "__main__":
    main()
