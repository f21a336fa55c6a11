#!/usr/bin/env python3
"""A local SMTP sink for gitvault-ops' alert tests (aiosmtpd).

Listens on 127.0.0.1 on a port of its own choosing and prints that port on the first line of
stdout. Every AUTH attempt is written to DIR/auth-<n>.json ({"user", "tls", "ok"}) and every
message received to DIR/msg-<n>.json ({"mail_from", "rcpt_tos", "data", "tls", "auth_user"}), so
a test can check what arrived and whether it travelled encrypted.

--cert/--key: offer STARTTLS (and require it before AUTH and MAIL). Without them the server
offers no STARTTLS at all (to test that a client requiring it refuses to send).
--implicit-tls (with --cert/--key): speak TLS from the first byte instead (SMTPS, port 465).
--user/--password: require AUTH with these credentials.
"""

import argparse
import asyncio
import json
import socket
import ssl
import sys
import warnings
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--user")
    ap.add_argument("--password")
    args = ap.parse_args()
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    counter = {"n": 0}

    def write(prefix: str, record: dict) -> None:
        counter["n"] += 1
        tmp = out / f".{prefix}-{counter['n']}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.rename(out / f"{prefix}-{counter['n']}.json")

    def encrypted(server, session) -> bool:
        # session.ssl is set by STARTTLS; with implicit TLS the transport itself is TLS.
        return session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        user = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None
        write("auth", {"user": user, "tls": encrypted(server, session), "ok": ok})
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            auth = session.auth_data
            write(
                "msg",
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf-8", "replace"),
                    "tls": encrypted(server, session),
                    "auth_user": auth.login.decode() if isinstance(auth, LoginPassword) else None,
                },
            )
            return "250 OK"

    # aiosmtpd warns that AUTH is allowed without STARTTLS under implicit TLS, where it is fine.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    tls_context = None
    if args.cert:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(args.cert, args.key)

    def factory():
        kwargs = {"hostname": "localhost"}
        if tls_context is not None and not args.implicit_tls:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if args.user:
            kwargs.update(
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=tls_context is not None and not args.implicit_tls,
            )
        return SMTP(Handler(), **kwargs)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    print(sock.getsockname()[1], flush=True)

    async def serve() -> None:
        ssl_context = tls_context if args.implicit_tls else None
        server = await asyncio.get_running_loop().create_server(factory, sock=sock, ssl=ssl_context)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
