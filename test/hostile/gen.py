#!/usr/bin/env python3
"""gen: write one hostile csync input to stdout (binary, CRLF lines).

usage: gen.py CASE [ARGS]
  bigword N          a command word of N bytes, CRLF
  list N             GET MAILBOXES with a list of N names
  deep N             GET MAILBOXES with N nested lists
  junk N SEED        N pseudo-random bytes (fixed SEED), then CRLF
  blank N            N empty lines
  keywords N         APPLY MAILBOX of a new mailbox whose expunged records
                     (no bodies needed) carry N distinct keywords in all
  records N          the same with N expunged records and no keyword
  quoted N           GET USER with a quoted string of N bytes
  annot N            APPLY ANNOTATION whose VALUE is an N-byte literal
"""
import random
import sys

out = sys.stdout.buffer


def mailbox(records, uniqueid="hostilekw0001", name="user.alice.Kw"):
    last = max((r[0] for r in records), default=0)
    recs = " ".join(
        "%%(UID %d MODSEQ %d LAST_UPDATED 1700000000 FLAGS (%s) "
        "INTERNALDATE 1700000000 SIZE 10 "
        "GUID 1111111111111111111111111111111111111111)"
        % (uid, uid + 1, " ".join(["\\Expunged"] + flags))
        for uid, flags in records)
    return ("APPLY MAILBOX %%(UNIQUEID %s MBOXNAME %s SYNC_CRC 0 "
            "SYNC_CRC_ANNOT 0 LAST_UID %d HIGHESTMODSEQ %d RECENTUID 0 "
            "RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 "
            "POP3_SHOW_AFTER 0 UIDVALIDITY 7 PARTITION default ACL \"\" "
            "OPTIONS P RECORD (%s))\r\n"
            % (uniqueid, name, last, last + 1, recs)).encode()


def main():
    case, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    if case == "bigword":
        out.write(b"A" * args[0] + b"\r\n")
    elif case == "list":
        out.write(b"GET MAILBOXES (")
        n, step = args[0], 100000
        for i in range(0, n, step):
            out.write(b" ".join(b"user.x%d" % j
                                for j in range(i, min(n, i + step))))
            out.write(b" ")
        out.write(b")\r\n")
    elif case == "deep":
        out.write(b"GET MAILBOXES " + b"(" * args[0] + b")" * args[0] + b"\r\n")
    elif case == "junk":
        r = random.Random(args[1])
        out.write(bytes(r.getrandbits(8) for _ in range(args[0])) + b"\r\n")
    elif case == "blank":
        out.write(b"\r\n" * args[0])
    elif case == "keywords":
        n = args[0]
        # 8 keywords per record, all distinct across the mailbox
        recs, kw, uid = [], ["$kw%d" % i for i in range(n)], 0
        while kw:
            uid += 1
            recs.append((uid, kw[:8]))
            kw = kw[8:]
        out.write(mailbox(recs))
    elif case == "records":
        out.write(mailbox([(u, []) for u in range(1, args[0] + 1)],
                          "hostilerec001", "user.alice.Big"))
    elif case == "quoted":
        out.write(b'GET USER "' + b"a" * args[0] + b'"\r\n')
    elif case == "annot":
        out.write(b'APPLY ANNOTATION %%(MBOXNAME user.alice ENTRY /comment '
                  b'USERID "" VALUE {%d+}\r\n' % args[0])
        out.write(b"x" * args[0] + b")\r\n")
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
