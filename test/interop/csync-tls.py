#!/usr/bin/env python3
"""csync-tls.py: csync.py, with STARTTLS first when the server offers it.

Same options and output as csync.py.  When the banner lists "* STARTTLS",
sends STARTTLS, expects "OK ...", starts TLS (the certificate is not
verified: the tests use self-signed ones) and hands the new banner to
csync.py's usual logic (SASL PLAIN, APPLY CAPABILITIES, commands).
Without STARTTLS in the banner it behaves exactly like csync.py.
"""

import importlib.util
import os
import ssl
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "csync", os.path.join(_here, "csync.py"))
csync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(csync)


class TLSConn(csync.Conn):
    """A Conn that has done STARTTLS (if offered) before main() reads the
    banner: it replays the banner's lines, or the post-TLS banner."""

    def __init__(self, host, port, timeout):
        super().__init__(host, port, timeout)
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if line[:4].upper() == b"* OK" or not line.startswith(b"* "):
                break
        if any(l.upper() == b"* STARTTLS" for l in lines):
            self.send(b"STARTTLS")
            reply = self.readline()
            if not reply.upper().startswith(b"OK"):
                raise csync.ProtocolError("STARTTLS: %r" % reply)
            if self.buf:
                raise csync.ProtocolError("data after STARTTLS's OK")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock)
            self.tls = True
        else:
            # Give the banner back to main().
            self.buf = b"".join(l + b"\r\n" for l in lines) + self.buf
            self.tls = False


csync.Conn = TLSConn

if __name__ == "__main__":
    sys.exit(csync.main())
