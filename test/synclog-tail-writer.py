#!/usr/bin/env python3
"""Append sync_log lines the way Cyrus's writers do (sync_log(5)).

usage: synclog-tail-writer.py LOG PREFIX COUNT

Writes COUNT lines "MAILBOX user.PREFIX.mK", one event per locked append:
open O_APPEND|O_CREAT, fcntl write lock, check the inode is still the one
at LOG (a reader may have renamed it away), write, fsync, unlock.
"""
import fcntl
import os
import sys


def append(path, data):
    for _ in range(64):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is None or st.st_ino != os.fstat(fd).st_ino:
                continue
            os.write(fd, data)
            os.fsync(fd)
            return
        finally:
            os.close(fd)
    sys.exit("gave up after 64 races with the reader")


def main():
    path, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for k in range(count):
        append(path, b"MAILBOX user.%s.m%d\n" % (prefix.encode(), k))


main()
