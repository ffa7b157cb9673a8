"""A witness of the services' checkpoints: ``python -m tuoyu_shared.witness``.

It consumes ``<service>.checkpoints`` (its own durable queue ``subscriber.witness.<name>.
<service>``, which the subscriber user may declare), offers each checkpoint to a
:class:`~tuoyu_shared.merkle.Witness` (a trusted key's signature, and a consistency proof from
the last one it accepted, asked of the service through the gateway with an auditor's token),
and keeps what it accepted and refused in its folder. Run by whoever must not depend on the
services' database: an audit office, another department.

    python -m tuoyu_shared.witness --service registration --amqp amqp://… \\
        --gateway http://127.0.0.1:8000 --token "$AUDITOR" --keys keys.json --folder var/witness
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from tuoyu_shared import merkle
from tuoyu_shared.logs import configure_logging, get_logger

log = get_logger("tuoyu.witness")


def run(service: str, amqp_uri: str, witness: merkle.Witness, stop: threading.Event,
        name: str = "default", on_offer: Any = None) -> None:
    """Consume the service's checkpoints until ``stop``; reconnects when the broker goes."""
    from kombu import Connection, Exchange, Queue

    exchange = Exchange(f"{service}.checkpoints", "topic", durable=True)
    from tuoyu_shared.config import queue_arguments

    queue = Queue(f"subscriber.witness.{name}.{service}", exchange, routing_key="checkpoint",
                  durable=True, queue_arguments=queue_arguments() or None)

    def handle(body: Any, message: Any) -> None:
        try:
            checkpoint = json.loads(body) if isinstance(body, (str, bytes)) else body
            accepted, why = witness.offer(checkpoint)
        except Exception as e:  # an unreadable message is refused, never stops the witness
            accepted, why, checkpoint = False, f"unreadable: {e!r}", {}
        (log.info if accepted else log.error)(
            "witness.checkpoint", service=service, accepted=accepted, reason=why,
            tree_size=checkpoint.get("tree_size") if isinstance(checkpoint, dict) else None)
        if on_offer is not None:
            on_offer(checkpoint, accepted, why)
        message.ack()

    while not stop.is_set():
        try:
            with Connection(amqp_uri, connect_timeout=5) as conn, \
                    conn.Consumer([queue], callbacks=[handle], accept=["json"]):
                while not stop.is_set():
                    try:
                        conn.drain_events(timeout=0.5)
                    except TimeoutError:
                        conn.heartbeat_check()
        except Exception as e:
            log.warning("witness.broker_unavailable", error=repr(e))
            stop.wait(2.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuoyu_shared.witness")
    parser.add_argument("--service", required=True)
    parser.add_argument("--amqp", required=True, help="the broker (the subscriber user)")
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--token", required=True, help="an auditor's token")
    parser.add_argument("--keys", required=True, help="the service's public keys (JSON)")
    parser.add_argument("--folder", required=True, help="where the witness keeps its state")
    parser.add_argument("--name", default="default", help="this witness's name (its queue)")
    args = parser.parse_args(argv)
    configure_logging("witness", "info")
    with open(args.keys, encoding="utf-8") as f:
        keys = merkle.load_keys(json.load(f))
    gateway = merkle.Gateway(args.gateway, args.token, args.service)
    witness = merkle.Witness(args.folder, keys, lambda first, second: gateway.get(
        "proofs/consistency", first=first, second=second)["proof"])
    stop = threading.Event()
    try:
        run(args.service, args.amqp, witness, stop, args.name)
    except KeyboardInterrupt:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
