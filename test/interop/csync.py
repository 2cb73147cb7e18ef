#!/usr/bin/env python3
"""csync.py: a tiny csync client for the tests.

Connects to a csync server over TCP, reads the banner, authenticates with
SASL PLAIN (no COMPRESS), enables SIEVE-MAILBOX when the server offers it,
sends one or more commands and prints the replies.  A HOST starting with
"/" is a UNIX-domain socket (PORT is then ignored); a server there whose
banner is a bare "* OK" line has pre-authenticated the connection, and no
AUTHENTICATE is sent.

Usage:
  csync.py [--raw | --sort | --mboxnames] [--user U] [--password P]
           HOST PORT COMMAND [COMMAND ...]
  csync.py --verify-bodies [--user U] [--password P] HOST PORT MBOXNAME ...

Each COMMAND is one protocol line without CRLF, e.g. "GET USER alice".
Output, per command:

  default   every data line ("* KEY value") parsed as a dlist and printed in
            a canonical form: "KEY" then the value as indented JSON with
            kvlist keys sorted, so that two servers that encode the same
            value differently on the wire (atom, quoted string, literal;
            key order) print the same text.  File literals print as
            {"file": [partition, guid, size, sha1-of-bytes]}.  The status
            line follows as "= OK ..." etc.
  --sort    as default, with each command's data items sorted.
  --raw     the reply bytes as received, literals inline.
  --mboxnames
            only the MBOXNAME of each MAILBOX data line, one a line.
  --verify-bodies
            for each mailbox named: GET FULLMAILBOX, then GET FETCH of every
            record not flagged \Expunged; checks that each body's SHA-1 is
            its GUID and its length its SIZE; prints one line per mailbox.

Exit status: 0 when every command got OK, 1 when one got NO/BAD/BYE,
2 on connection, authentication or parse errors.
"""

import argparse
import base64
import hashlib
import json
import socket
import sys


class ProtocolError(Exception):
    pass


class Conn:
    def __init__(self, host, port, timeout):
        if host.startswith("/"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(host)
        else:
            self.sock = socket.create_connection((host, port),
                                                 timeout=timeout)
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ProtocolError("connection closed by the server")
        self.buf += data

    def readline(self):
        """One line, CRLF (or LF) stripped."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                if line.endswith(b"\r"):
                    line = line[:-1]
                return line
            if len(self.buf) > 64 * 1024 * 1024:
                raise ProtocolError("line too long")
            self._fill()

    def readbytes(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, line):
        self.sock.sendall(line + b"\r\n")

    def read_logical(self):
        """A reply line with its literals ({n}, {n+}, %{p g n}) inlined.

        Returns (raw_bytes, [chunks]) where chunks alternate between line
        text and ('lit', bytes) entries, for the dlist parser."""
        raw = b""
        while True:
            line = self.readline()
            raw += line
            n = literal_len(line)
            if n is None:
                return raw
            data = self.readbytes(n)
            raw += b"\r\n" + data


def literal_len(line):
    """Size of the literal announced at the end of line, or None."""
    if not line.endswith(b"}"):
        return None
    i = line.rfind(b"{")
    if i < 0:
        return None
    inner = line[i + 1:-1]
    if i > 0 and line[i - 1:i] == b"%":
        parts = inner.split()
        if len(parts) == 3 and parts[2].isdigit():
            return int(parts[2])
        return None
    if inner.endswith(b"+"):
        inner = inner[:-1]
    if inner.isdigit():
        return int(inner)
    return None


class Parser:
    """dlist values, read liberally (any whitespace between items)."""

    def __init__(self, data):
        self.d = data
        self.i = 0

    def ws(self):
        while self.i < len(self.d) and self.d[self.i:self.i + 1] in b" \t\r\n\v\f":
            self.i += 1

    def peek(self):
        return self.d[self.i:self.i + 1]

    def crlf(self):
        if self.d[self.i:self.i + 2] == b"\r\n":
            self.i += 2
        elif self.d[self.i:self.i + 1] == b"\n":
            self.i += 1
        else:
            raise ProtocolError("literal without CRLF at %d" % self.i)

    def string(self):
        c = self.peek()
        if c == b'"':
            self.i += 1
            out = bytearray()
            while True:
                if self.i >= len(self.d):
                    raise ProtocolError("unterminated quoted string")
                ch = self.d[self.i]
                self.i += 1
                if ch == 0x22:
                    return bytes(out)
                if ch == 0x5C:
                    out.append(self.d[self.i])
                    self.i += 1
                elif ch in (0x0D, 0x0A):
                    raise ProtocolError("CR/LF in quoted string")
                else:
                    out.append(ch)
        if c == b"{":
            j = self.d.index(b"}", self.i)
            n = self.d[self.i + 1:j].rstrip(b"+")
            if not n.isdigit():
                raise ProtocolError("bad literal size")
            self.i = j + 1
            self.crlf()
            data = self.d[self.i:self.i + int(n)]
            if len(data) != int(n):
                raise ProtocolError("short literal")
            self.i += int(n)
            return data
        j = self.i
        while j < len(self.d) and self.d[j:j + 1] not in b" \t\r\n\v\f()\"":
            j += 1
        if j == self.i:
            raise ProtocolError("empty atom at %d" % self.i)
        tok = self.d[self.i:j]
        self.i = j
        return tok

    def value(self):
        self.ws()
        c = self.peek()
        if c == b"(":
            self.i += 1
            items = []
            while True:
                self.ws()
                if self.peek() == b")":
                    self.i += 1
                    return items
                if not self.peek():
                    raise ProtocolError("unterminated list")
                items.append(self.value())
        if c == b"%":
            nxt = self.d[self.i + 1:self.i + 2]
            if nxt == b"(":
                self.i += 2
                kv = {}
                while True:
                    self.ws()
                    if self.peek() == b")":
                        self.i += 1
                        return kv
                    if not self.peek():
                        raise ProtocolError("unterminated kvlist")
                    k = dec(self.string())
                    if k in kv:
                        raise ProtocolError("duplicate key %s" % k)
                    self.ws()
                    kv[k] = self.value()
            if nxt == b"{":
                j = self.d.index(b"}", self.i)
                part, guid, size = self.d[self.i + 2:j].split()
                self.i = j + 1
                self.crlf()
                n = int(size)
                data = self.d[self.i:self.i + n]
                self.i += n
                return {"file": [dec(part), dec(guid).lower(), n,
                                 hashlib.sha1(data).hexdigest()]}
            raise ProtocolError("% not followed by ( or {")
        s = self.string()
        return dec(s)


def dec(b):
    return b.decode("utf-8", "backslashreplace")


def canonical(raw):
    """'* KEY value' -> 'KEY <json>' with sorted kvlist keys."""
    p = Parser(raw)
    if not raw.startswith(b"* "):
        raise ProtocolError("not a data line")
    p.i = 2
    key = dec(p.string())
    val = p.value()
    p.ws()
    if p.i != len(raw):
        raise ProtocolError("trailing bytes after the value of %s" % key)
    return key + " " + json.dumps(val, sort_keys=True, indent=1,
                                  ensure_ascii=False)


def status_of(line):
    word = line.split(b" ", 1)[0].upper()
    return word if word in (b"OK", b"NO", b"BAD", b"BYE") else None


def command(conn, line):
    """Send line, return (status_line, [data lines as raw bytes])."""
    conn.send(line)
    data = []
    while True:
        raw = conn.read_logical()
        if raw.startswith(b"* "):
            data.append(raw)
            continue
        if status_of(raw):
            return raw, data
        raise ProtocolError("unexpected reply line: %r" % raw[:200])


def verify_bodies(conn, names, out):
    """GET FETCH every live record of each mailbox; 0 if all bodies match."""
    bad = 0
    for name in names:
        st, data = command(conn, b"GET FULLMAILBOX " + name.encode())
        if status_of(st) != b"OK" or len(data) != 1:
            out.write("%s: GET FULLMAILBOX: %s\n" % (name, dec(st)))
            bad += 1
            continue
        p = Parser(data[0])
        p.i = 2
        p.string()
        mb = p.value()
        n = 0
        for r in mb.get("RECORD", []):
            flags = [f.lower() for f in r.get("FLAGS", [])]
            if "\\expunged" in flags:
                continue
            req = "GET FETCH %%(MBOXNAME %s PARTITION %s UNIQUEID %s GUID %s UID %s)" % (
                name, mb["PARTITION"], mb["UNIQUEID"], r["GUID"], r["UID"])
            st2, d2 = command(conn, req.encode())
            why = None
            if status_of(st2) != b"OK" or len(d2) != 1:
                why = dec(st2)
            else:
                q = Parser(d2[0])
                q.i = 2
                q.string()
                f = q.value()
                if not isinstance(f, dict) or "file" not in f:
                    why = "no file literal"
                else:
                    part, guid, size, sha = f["file"]
                    if sha != r["GUID"].lower() or guid != r["GUID"].lower():
                        why = "SHA-1 %s, GUID %s" % (sha, r["GUID"])
                    elif str(size) != r["SIZE"]:
                        why = "size %s, SIZE %s" % (size, r["SIZE"])
            if why:
                out.write("%s uid %s: %s\n" % (name, r["UID"], why))
                bad += 1
            n += 1
        out.write("%s: %d bodies checked\n" % (name, n))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description="minimal csync client")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--raw", action="store_true")
    mode.add_argument("--sort", action="store_true")
    mode.add_argument("--mboxnames", action="store_true")
    mode.add_argument("--verify-bodies", action="store_true")
    ap.add_argument("--user", default="repluser")
    ap.add_argument("--password", default="replpass")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("commands", nargs="+")
    a = ap.parse_args()
    out = sys.stdout

    try:
        conn = Conn(a.host, a.port, a.timeout)
        caps = []
        while True:
            line = conn.readline()
            if line[:4].upper() == b"* OK":
                break
            if not line.startswith(b"* "):
                raise ProtocolError("bad banner line: %r" % line)
            caps.append(line[2:].decode("ascii", "replace"))
        mechs = []
        for c in caps:
            w = c.split()
            if w and w[0].upper() == "SASL":
                mechs = [m.upper() for m in w[1:]]
        if a.host.startswith("/") and not caps:
            pass        # UNIX socket, pre-authenticated: a bare "* OK"
        elif "PLAIN" not in mechs:
            raise ProtocolError("server offers no PLAIN: %s" % caps)
        else:
            ir = base64.b64encode(b"\0" + a.user.encode() + b"\0"
                                  + a.password.encode())
            conn.send(b"AUTHENTICATE PLAIN " + ir)
            line = conn.readline()
            if status_of(line) != b"OK":
                raise ProtocolError("AUTHENTICATE failed: %r" % line)
        if any(c.split()[0].upper() == "SIEVE-MAILBOX" for c in caps if c):
            st, _ = command(conn, b"APPLY CAPABILITIES (SIEVE-MAILBOX)")
            if status_of(st) != b"OK":
                raise ProtocolError("APPLY CAPABILITIES: %r" % st)
        rc = 0
        if a.verify_bodies:
            rc = verify_bodies(conn, a.commands, out)
            a.commands = []
        for cmd in a.commands:
            st, data = command(conn, cmd.encode())
            if a.raw:
                items = [dec(d) for d in data]
            elif a.mboxnames:
                items = []
                for d in data:
                    if d.startswith(b"* MAILBOX "):
                        p = Parser(d)
                        p.i = 10
                        items.append(p.value()["MBOXNAME"])
            else:
                items = [canonical(d) for d in data]
                if a.sort:
                    items.sort()
            for it in items:
                out.write(it + "\n")
            if not a.mboxnames:
                out.write("= " + dec(st) + "\n")
            if status_of(st) != b"OK":
                rc = 1
        try:
            conn.send(b"EXIT")
            conn.readline()
        except (OSError, ProtocolError):
            pass
        return rc
    except (OSError, ProtocolError, ValueError, KeyError) as e:
        sys.stderr.write("csync.py: %s\n" % e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
