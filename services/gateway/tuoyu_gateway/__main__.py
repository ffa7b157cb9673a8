"""The gateway's entry points.

    python -m tuoyu_gateway serve [--host 127.0.0.1] [--port 8000]
    python -m tuoyu_gateway migrate                  # nothing to migrate (no database)
    python -m tuoyu_gateway keys new [--kid k2] [--out DIR]  # a new Ed25519 key pair
    python -m tuoyu_gateway token issue SUBJECT ROLE DISTRICT [--institution ID] [--hours 8]
    python -m tuoyu_gateway token revoke JTI [--reason TEXT]   # appended to the revoked file

Keys and the revoked file come from the environment (:mod:`tuoyu_shared.auth`,
``TUOYU_AUTH_REVOKED_FILE``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from tuoyu_shared.auth import ROLES, KeyRing, generate_key_pem
from tuoyu_shared.logs import configure_logging


def listening_socket(host: str, port: int) -> socket.socket:
    """The gateway's listening socket. SO_REUSEPORT: several gateway processes may share the
    port (the kernel spreads connections), as the services' processes do. IPPROTO_TCP named,
    or asyncio leaves Nagle's algorithm on for the accepted connections (it sets TCP_NODELAY
    only on sockets whose proto says TCP), and every answer waited 40 ms for a delayed ACK."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuoyu_gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve HTTP (uvicorn)")
    serve.add_argument("--host", default=os.environ.get("TUOYU_GATEWAY_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("TUOYU_GATEWAY_PORT")
                                                       or 8000))
    sub.add_parser("migrate", help="nothing to do: the gateway keeps no database")
    keys = sub.add_parser("keys", help="key pairs").add_subparsers(dest="keys", required=True)
    new = keys.add_parser("new", help="a new Ed25519 key pair as JSON")
    new.add_argument("--kid", default="k1")
    new.add_argument("--out", type=Path, help="write auth-signing-key.pem (mode 0600) and "
                     "auth-public-keys.json into this folder instead (compose's secrets)")
    token = sub.add_parser("token", help="tokens").add_subparsers(dest="token", required=True)
    issue = token.add_parser("issue", help="issue a token (printed)")
    issue.add_argument("subject")
    issue.add_argument("role", choices=sorted(ROLES))
    issue.add_argument("district", help="a district, or * for the whole city")
    issue.add_argument("--institution", help="an operator's institution id")
    issue.add_argument("--hours", type=float, default=8.0)
    revoke = token.add_parser("revoke", help="revoke a token by its id (jti)")
    revoke.add_argument("jti")
    revoke.add_argument("--reason", default="")
    args = parser.parse_args(argv)

    if args.command == "serve":
        import uvicorn

        from tuoyu_gateway.app import create_app

        configure_logging("gateway", os.environ.get("TUOYU_LOG_LEVEL", "info"))
        from tuoyu_shared import tracing

        tracing.configure("gateway")
        sock = listening_socket(args.host, args.port)
        config = uvicorn.Config(create_app(), log_config=None, access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
        return 0
    if args.command == "migrate":
        print("gateway: no database to migrate")
        return 0
    if args.command == "keys":
        private, public = generate_key_pem()
        if args.out is None:
            print(json.dumps({"kid": args.kid, "private": private, "public": public}))
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        key = args.out / "auth-signing-key.pem"
        if key.exists():
            print(f"error: {key} exists: keep it, or rotate (docs/operations.md)",
                  file=sys.stderr)
            return 2
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private)
        (args.out / "auth-public-keys.json").write_text(json.dumps({args.kid: public}) + "\n")
        print(f"wrote {key} and {args.out / 'auth-public-keys.json'} (kid {args.kid})")
        return 0
    if args.token == "issue":
        ring = KeyRing.from_env()
        try:
            print(ring.issue(args.subject, args.role, args.district,
                             ttl_seconds=int(args.hours * 3600),
                             institution_id=args.institution))
        except (RuntimeError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    revoked = os.environ.get("TUOYU_AUTH_REVOKED_FILE")
    if not revoked:
        print("error: TUOYU_AUTH_REVOKED_FILE is not set", file=sys.stderr)
        return 2
    with Path(revoked).open("a", encoding="utf-8") as f:
        reason = args.reason.replace("\n", " ")
        f.write(f"{args.jti}  # revoked {datetime.now(UTC).isoformat()} {reason}\n")
    print(f"revoked {args.jti}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
