"""RabbitMQ users of their own: one per service, and a read-only one for subscribers.

:func:`create_broker_users` makes, in one virtual host, a user ``tuoyu-<service>`` for each
service and ``tuoyu-subscriber`` for external subscribers, each with a random password, and
takes the guest user's access away (in that vhost, or the guest user altogether). It returns
the AMQP URI of each (service → URI, and ``"subscriber"``); a service is given its own as
``TUOYU_<SERVICE>_AMQP_URI`` (:mod:`tuoyu_shared.config`). ``make run`` and the process-group
tests (:func:`tuoyu_shared.testing.group_environment`) use it.

What each process does on the broker, and so what its user may do, is read from the code:

- **its exchange**: the relay (:mod:`tuoyu_shared.relay`) declares the topic exchange
  ``<service>.events`` (``Settings.events_exchange``) and publishes to it; only a service whose
  worker has an application (an event log) publishes.
- **its consumers' queues**: each tracked consumer (:mod:`tuoyu_shared.consumer`) declares
  ``<consumer>.<upstream>.events`` (``TrackedConsumer.queue()``), declares the upstream's
  exchange (kombu declares a binding's exchange, and not passively), binds the queue to it and
  consumes. Which consumers a service runs comes from its worker's declaration
  (``tuoyu_<service>.worker.WORKER``: its ``reactions`` and ``read_models``), built here as
  the worker builds them, without connecting (:func:`consumed_queues`).
- **RPC served**: nameko declares the topic exchange ``nameko-rpc`` and the queue
  ``rpc-<service>`` bound with ``<service>.*``, consumes it, and publishes each reply to
  ``nameko-rpc`` with the caller's reply key (a service whose :mod:`tuoyu_shared.devrun` spec
  names a nameko class).
- **RPC called** (every process: the consumers fill gaps over RPC, the gateway only calls):
  :class:`tuoyu_shared.rpc.RpcClient` declares ``nameko-rpc``, an exclusive auto-delete reply
  queue ``rpc.reply-tuoyu-<uuid4>`` bound to it with its own name as the key, consumes it and
  publishes calls to ``nameko-rpc``. (No service uses nameko's own RPC proxies, whose reply
  queues are ``rpc.reply-<service>-<uuid>``: one that does needs that pattern added.)

RabbitMQ checks *configure* on exchange.declare (even of an existing exchange, unless
passive), queue.declare and deletes; *write* on basic.publish (the exchange) and queue.bind
(the queue); *read* on queue.bind (the exchange), basic.consume, basic.get and queue.purge (the
queue). One regex covers exchanges and queues alike. So a service ``S`` gets, each an
alternation of exact names, anchored (``^(…)$``, dots escaped):

========= =========================================================================
configure ``S.events`` · ``S.checkpoints`` · ``nameko-rpc`` · ``rpc-S`` ·
          ``rpc.reply-tuoyu-<uuid>`` · its queues ``<consumer>.<U>.events`` · its upstreams'
          exchanges ``U.events``
write     ``S.events`` · ``S.checkpoints`` · ``nameko-rpc`` · ``rpc-S`` ·
          ``rpc.reply-tuoyu-<uuid>`` · its queues
read      ``nameko-rpc`` · ``rpc-S`` · ``rpc.reply-tuoyu-<uuid>`` · its queues ·
          its upstreams' exchanges ``U.events``
========= =========================================================================

(``S.events`` and ``S.checkpoints``, where its worker publishes the log's signed
checkpoints, only for a service that publishes, ``rpc-S`` only for one that serves RPC;
``<uuid>`` is ``[0-9a-f]{8}-…-[0-9a-f]{12}``.) For the registration service, for example::

    configure ^(registration\\.events|registration\\.checkpoints|nameko-rpc|rpc-registration|
               rpc\\.reply-tuoyu-<uuid>|registration\\.credit\\.events|credit\\.events)$
    write     ^(registration\\.events|registration\\.checkpoints|nameko-rpc|rpc-registration|
               rpc\\.reply-tuoyu-<uuid>|registration\\.credit\\.events)$
    read      ^(nameko-rpc|rpc-registration|rpc\\.reply-tuoyu-<uuid>|
               registration\\.credit\\.events|credit\\.events)$

What that leaves open, and why:

- *configure* on an upstream's exchange: the consumers declare it (so they may start before
  its relay), and RabbitMQ asks configure for that, which also allows deleting it. A
  consumer that declared it passively would need read only. Deleting one loses nothing: the
  relay declares it again when it reconnects, and the consumers catch up from the log over RPC
  while idle, and bind again when they reconnect.
- ``nameko-rpc`` is one exchange for every service's calls and replies: every user may publish
  any call to it (who may call what is the services' own check of the caller's token), and
  may bind to it. So that a user cannot bind a queue of its own to another service's calls
  (and read their tokens), each has *topic permissions* on ``nameko-rpc``: bindings only with
  ``S.*`` (its own RPC queue) and ``rpc.reply-tuoyu-<uuid>`` (its reply queues); publishing
  any routing key.
- the reply queues' pattern is the same for every user (:class:`~tuoyu_shared.rpc.RpcClient`
  names them so), but each is exclusive to the connection that declared it: no other
  connection can consume, bind or delete it.

The subscriber user ``tuoyu-subscriber`` may declare, bind and consume queues of its own
(``subscriber.<anything>``) and bind them to any ``<name>.events`` exchange (and, for a
witness, any ``<name>.checkpoints``); it cannot touch a
service's queue (their names have two dots), the RPC exchange, or publish to any service's
exchange:

========= ===========================================
configure ``^subscriber\\..+$``
write     ``^subscriber\\..+$``  (queue.bind writes the queue)
read      ``^(subscriber\\..+|[^.]+\\.(events|checkpoints))$``
========= ===========================================

(It could declare an exchange named ``subscriber.…`` and publish to it: that reaches its own
queues only, since binding any other queue needs write on it.)

The users are made with one ``rabbitmqctl import_definitions`` (password hashes, not
passwords, on its input; users are node-wide, so the same passwords serve every vhost:
:func:`password_store` keeps them in a file of mode 0600).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import pwd
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlsplit

from tuoyu_shared.rpc import RPC_EXCHANGE

#: A rabbitmqctl runner: ``ctl(*args, check=True)`` (``LocalRabbitMQ.ctl``).
Ctl = Callable[..., subprocess.CompletedProcess]

USER_PREFIX = "tuoyu-"
SUBSCRIBER = "subscriber"
#: nameko's RPC queue of a service (nameko.rpc.RPC_QUEUE_TEMPLATE), bound with ``<service>.*``.
NAMEKO_RPC_QUEUE = "rpc-{}"
#: The reply queues of :class:`tuoyu_shared.rpc.RpcClient`, ``rpc.reply-tuoyu-<uuid4>``.
CLIENT_REPLY_PREFIX = "rpc.reply-tuoyu-"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
REPLY_QUEUES = CLIENT_REPLY_PREFIX.replace(".", r"\.") + UUID
#: Queues of a subscriber, and the exchanges it may bind them to.
SUBSCRIBER_QUEUES = r"subscriber\..+"
EVENTS_EXCHANGES = r"[^.]+\.(events|checkpoints)"

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _literal(name: str) -> str:
    """A name as a regex that matches it alone (names of letters, digits, ``_.-``)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"unexpected broker name {name!r}")
    return name.replace(".", r"\.")


def _alternation(parts: Iterable[str]) -> str:
    unique = list(dict.fromkeys(parts))
    return f"^({'|'.join(unique)})$" if unique else "^$"


@dataclass(frozen=True)
class ServiceAccess:
    """What one service's processes do on the broker (see the module's docstring)."""

    service: str
    publishes: str | None  # its events exchange, when it relays a log
    serves_rpc: bool
    #: (queue, exchange) of each of its tracked consumers
    consumes: tuple[tuple[str, str], ...] = ()

    @property
    def checkpoints(self) -> str:
        """Its checkpoints exchange (``<service>.checkpoints``), beside its events'."""
        return f"{self.service}.checkpoints"

    @property
    def user(self) -> str:
        return USER_PREFIX + self.service

    def _rpc(self) -> list[str]:
        """``nameko-rpc``, its RPC queue (if it serves), its reply queues."""
        names = [_literal(RPC_EXCHANGE)]
        if self.serves_rpc:
            names.append(_literal(NAMEKO_RPC_QUEUE.format(self.service)))
        return [*names, REPLY_QUEUES]

    def permissions(self) -> tuple[str, str, str]:
        """``(configure, write, read)`` regexes."""
        own = [_literal(self.publishes), _literal(self.checkpoints)] if self.publishes else []
        queues = [_literal(queue) for queue, _ in self.consumes]
        upstreams = [_literal(exchange) for _, exchange in self.consumes]
        configure = _alternation([*own, *self._rpc(), *queues, *upstreams])
        write = _alternation([*own, *self._rpc(), *queues])
        read = _alternation([*self._rpc(), *queues, *upstreams])
        return configure, write, read

    def rpc_topic_permissions(self) -> tuple[str, str]:
        """``(write, read)`` routing-key regexes on ``nameko-rpc``: publish any call or reply,
        bind only its own RPC queue's key and its reply queues' keys."""
        keys = [_literal(self.service) + r"\.\*"] if self.serves_rpc else []
        return ".*", _alternation([*keys, REPLY_QUEUES])


SUBSCRIBER_PERMISSIONS = (f"^{SUBSCRIBER_QUEUES}$", f"^{SUBSCRIBER_QUEUES}$",
                          f"^({SUBSCRIBER_QUEUES}|{EVENTS_EXCHANGES})$")


def _spec(service: str) -> Any:
    from tuoyu_shared.devrun import SERVICES

    for spec in SERVICES:
        if spec.name == service:
            return spec
    raise KeyError(f"no service {service!r} in tuoyu_shared.devrun.SERVICES")


def _worker(spec: Any) -> Any:
    if not spec.worker_module:
        return None
    return importlib.import_module(spec.worker_module).WORKER


def consumed_queues(service: str) -> tuple[tuple[str, str], ...]:
    """``(queue, exchange)`` of each tracked consumer that the service's worker runs, built
    from the worker's declaration as :meth:`tuoyu_shared.worker.Worker.main` builds them (the
    reactions are given a stand-in application with the service's settings: building a
    consumer connects to nothing)."""
    from tuoyu_shared.config import Settings

    worker = _worker(_spec(service))
    if worker is None:
        return ()
    settings = Settings(service=service, database_url="postgresql://unused/unused",
                        amqp_uri="amqp://unused//")
    app = SimpleNamespace(settings=settings) if worker.application is not None else None
    consumers = [*worker.reactions(app).values(),
                 *(view.consumer(settings) for view in worker.read_models)]
    return tuple(dict.fromkeys((consumer.queue().name, consumer.exchange_name)
                               for consumer in consumers))


def access_of(service: str) -> ServiceAccess:
    """What a service of :mod:`tuoyu_shared.devrun` does on the broker, from its code."""
    from tuoyu_shared.config import Settings

    spec = _spec(service)
    worker = _worker(spec)
    publishes = None
    if worker is not None and worker.application is not None:
        publishes = Settings(service=service, database_url="", amqp_uri="").events_exchange
    return ServiceAccess(service, publishes, spec.nameko_class is not None,
                         consumed_queues(service))


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password)),
    with a 4-byte random salt."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def password_store(path: Path, users: Iterable[str]) -> dict[str, str]:
    """The users' passwords, kept in ``path`` (JSON, mode 0600): the ones stored are kept,
    missing ones made (random). Users are node-wide, so a second vhost on the same node (a
    parallel test group) must not change the password of the first's running processes;
    concurrent callers are serialised by a lock file beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            stored = json.loads(path.read_text())
        wanted = {user: stored.get(user) or secrets.token_urlsafe(24) for user in users}
        if any(stored.get(user) != password for user, password in wanted.items()):
            stored.update(wanted)
            _write_private(path, json.dumps(stored, indent=2) + "\n")
        return wanted
    finally:
        os.close(lock)  # releases the lock


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only: made with mode 0600, then renamed over."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def amqp_uri(base_uri: str, user: str, password: str, vhost: str) -> str:
    """``base_uri``'s host and port with another user and vhost."""
    url = urlsplit(base_uri)
    host = url.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if url.port:
        netloc += f":{url.port}"
    path = "//" if vhost == "/" else "/" + quote(vhost, safe="")
    return f"{url.scheme or 'amqp'}://{netloc}{path}"


def definitions(vhost: str, accesses: Iterable[ServiceAccess], passwords: Mapping[str, str],
                admin: str | None = None) -> dict[str, Any]:
    """The users, permissions and topic permissions, as ``rabbitmqctl import_definitions``
    takes them."""
    users: list[dict[str, Any]] = []
    permissions: list[dict[str, str]] = []
    topics: list[dict[str, str]] = []

    def user(name: str, configure: str, write: str, read: str) -> None:
        users.append({"name": name, "password_hash": password_hash(passwords[name]),
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
        permissions.append({"user": name, "vhost": vhost, "configure": configure,
                            "write": write, "read": read})

    for access in accesses:
        user(access.user, *access.permissions())
        write, read = access.rpc_topic_permissions()
        topics.append({"user": access.user, "vhost": vhost, "exchange": RPC_EXCHANGE,
                       "write": write, "read": read})
    user(USER_PREFIX + SUBSCRIBER, *SUBSCRIBER_PERMISSIONS)
    if admin is not None:
        user(admin, ".*", ".*", ".*")
    return {"users": users, "permissions": permissions, "topic_permissions": topics}


def _readable_by_the_cli(fd: int) -> None:
    """Run by root, Debian's rabbitmqctl wrapper drops to the ``rabbitmq`` user, which must
    read the definitions file: it is handed to that user (still mode 0600)."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("rabbitmq")
    except KeyError:
        return
    os.fchown(fd, entry.pw_uid, entry.pw_gid)


def create_broker_users(broker: Any, vhost: str = "/", services: Iterable[str] | None = None,
                        *, base_uri: str | None = None,
                        passwords: Mapping[str, str] | None = None,
                        delete_guest: bool = False,
                        admin: str | None = None) -> dict[str, str]:
    """Make (or update) the users of ``services`` (default: every service of
    :mod:`tuoyu_shared.devrun`) and the subscriber in ``vhost``, and take guest's access away.

    ``broker`` is a :class:`~tuoyu_shared.localservers.LocalRabbitMQ` or a rabbitmqctl
    runner (``ctl(*args, check=True)``, then ``base_uri`` gives the host and port). Passwords
    come from ``passwords`` (user → password; see :func:`password_store`), random otherwise.
    ``delete_guest`` deletes the guest user itself (a node of its own, ``make run``); otherwise
    guest only loses its permissions in ``vhost``. ``admin``, when given, names a user with
    every permission in the vhost (the tests' own connections), returned as ``"admin"``.

    Returns the AMQP URI of each: service → URI, ``"subscriber"`` → URI (and ``"admin"``).
    """
    from tuoyu_shared.devrun import SERVICES

    ctl: Ctl = broker.ctl if hasattr(broker, "ctl") else broker
    base_uri = base_uri or getattr(broker, "uri", None)
    if base_uri is None:
        raise ValueError("base_uri is needed with a rabbitmqctl runner")
    names = list(services) if services is not None else [spec.name for spec in SERVICES]
    accesses = [access_of(name) for name in names]
    users = users_of(names, admin)
    given = dict(passwords or {})
    chosen = {user: given.get(user) or secrets.token_urlsafe(24) for user in users}
    fd, path = tempfile.mkstemp(prefix="tuoyu-broker-users-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        _readable_by_the_cli(fd)
        with os.fdopen(fd, "w") as out:
            json.dump(definitions(vhost, accesses, chosen, admin), out)
        done = ctl("import_definitions", path, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl import_definitions failed: "
                               f"{done.stdout}{done.stderr}")
    finally:
        os.unlink(path)
    if delete_guest:
        ctl("delete_user", "guest", check=False)  # gone already on a later run
    else:
        ctl("clear_permissions", "-p", vhost, "guest", check=False)
    uris = {access.service: amqp_uri(base_uri, access.user, chosen[access.user], vhost)
            for access in accesses}
    uris[SUBSCRIBER] = amqp_uri(base_uri, USER_PREFIX + SUBSCRIBER,
                                chosen[USER_PREFIX + SUBSCRIBER], vhost)
    if admin is not None:
        uris["admin"] = amqp_uri(base_uri, admin, chosen[admin], vhost)
    return uris


def users_of(services: Iterable[str], admin: str | None = None) -> list[str]:
    """The broker user names :func:`create_broker_users` makes for ``services``."""
    return ([USER_PREFIX + name for name in services] + [USER_PREFIX + SUBSCRIBER]
            + ([admin] if admin else []))


def describe(services: Iterable[str] | None = None) -> str:
    """Each user's permissions, one block each (``python -m tuoyu_shared.broker_users``)."""
    from tuoyu_shared.devrun import SERVICES

    names = list(services) if services is not None else [spec.name for spec in SERVICES]
    blocks = []
    for name in names:
        access = access_of(name)
        configure, write, read = access.permissions()
        topic_write, topic_read = access.rpc_topic_permissions()
        blocks.append(f"{access.user}\n  configure {configure}\n  write     {write}\n"
                      f"  read      {read}\n  {RPC_EXCHANGE} topics: write {topic_write}  "
                      f"read {topic_read}")
    configure, write, read = SUBSCRIBER_PERMISSIONS
    blocks.append(f"{USER_PREFIX}{SUBSCRIBER}\n  configure {configure}\n  write     {write}\n"
                  f"  read      {read}")
    return "\n".join(blocks)


def passwords_from_env(users: Iterable[str], env: Mapping[str, str] | None = None,
                       ) -> dict[str, str]:
    """Each user's password from ``TUOYU_BROKER_PASSWORD_<NAME>`` (``tuoyu-credit`` ->
    ``TUOYU_BROKER_PASSWORD_CREDIT``); a missing one is an error naming its variable (the
    services must be given the same passwords, so none is made up here)."""
    env = os.environ if env is None else env
    found, missing = {}, []
    for user in users:
        var = "TUOYU_BROKER_PASSWORD_" + user.removeprefix(USER_PREFIX).upper().replace("-", "_")
        if env.get(var):
            found[user] = env[var]
        else:
            missing.append(var)
    if missing:
        raise SystemExit(f"set {', '.join(missing)}")
    return found


def main(argv: list[str] | None = None) -> int:
    """``python -m tuoyu_shared.broker_users`` prints each user's permissions;
    ``… definitions [--vhost /] [-o FILE]`` writes the users, their permissions and the vhost
    as RabbitMQ definitions (``load_definitions`` in rabbitmq.conf, or ``rabbitmqctl
    import_definitions``), passwords hashed, from ``TUOYU_BROKER_PASSWORD_<NAME>``: how a
    broker outside ``make run`` (compose, Kubernetes) gets the same users."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tuoyu_shared.broker_users")
    sub = parser.add_subparsers(dest="command")
    made = sub.add_parser("definitions", help="the users as RabbitMQ definitions (JSON)")
    made.add_argument("--vhost", default="/")
    made.add_argument("-o", "--output", help="the file to write (default: standard output)")
    args = parser.parse_args(argv)
    if args.command != "definitions":
        print(describe())
        return 0
    from tuoyu_shared.devrun import SERVICES

    accesses = [access_of(spec.name) for spec in SERVICES]
    passwords = passwords_from_env(users_of(spec.name for spec in SERVICES))
    document = {"vhosts": [{"name": args.vhost}],
                **definitions(args.vhost, accesses, passwords)}
    text = json.dumps(document, indent=2)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
