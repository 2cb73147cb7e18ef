#!/usr/bin/env python3
"""rawclient: send raw bytes to a csync server over TCP and print what
comes back.

usage: rawclient.py PORT < bytes

Reads the banner (up to "* OK"), sends standard input as it is, closes
the sending side, then prints every line the server writes (CR removed)
until it closes the connection or 20 seconds pass (then "TIMEOUT").
"""
import socket
import sys

s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
data = sys.stdin.buffer.read()
buf = b""
try:
    while b"* OK" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
except socket.timeout:
    buf += b"\nTIMEOUT\n"
except (BrokenPipeError, ConnectionResetError):
    buf += b"\nRESET\n"
sys.stdout.write(buf.replace(b"\r", b"").decode("latin-1"))
