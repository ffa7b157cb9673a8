"""A simulator of the public-security records inquiry (公安机关违法犯罪记录查询), the external
system the practitioner background check of 未成年人保护法 第62条 asks; and the HTTP contract
:class:`tuoyu_shared.public_security.HttpPublicSecurityInquiry` is written against.

Run it for ``make run``::

    python -m tuoyu_shared.simulators.public_security --port 8090 --records FILE

or in-process from tests::

    with start_simulator(records={"11010519491231002X": ["abuse"]}) as sim:
        inquiry = HttpPublicSecurityInquiry(sim.url)
        sim.set_down(True)      # 503 to everything
        sim.set_delay(2.0)      # every answer 2 s late
        sim.set_deferred(True)  # new inquiries "pending" first, answered at the next status
        sim.set_malformed(True) # 200 with a body that is not JSON
        sim.stop()              # the port closed: connection refused

The contract
------------

JSON over HTTP, UTF-8. When the system is configured with a credential, every request carries
``Authorization: Basic base64(client_id:client_secret)``; a missing or wrong one is answered
``401`` (``WWW-Authenticate: Basic``).

``POST /inquiries`` asks about one person::

    {"request_id": "hire-7f3c…",          # the asker's id of the inquiry, 1-100 of [A-Za-z0-9._:-]
     "id_number": "11010519491231002X",   # 18-character resident ID (GB 11643-1999)
     "name": "张三",
     "purpose": "hire" | "yearly",        # 入职查询, or the regular 定期查询
     "requested_by": "institution:…"}     # who asks

and ``GET /inquiries/{request_id}`` asks for the state of one sent before. Both answer ``200``::

    {"request_id": "hire-7f3c…", "reference": "GA-2026-000123", "status": "pending"}
    {"request_id": "hire-7f3c…", "reference": "GA-2026-000123", "status": "answered",
     "result": "no_record" | "record_found",
     "categories": [] | ["sexual_offence", "abuse", "violence", "trafficking"] (a subset),
     "answered_at": "2026-03-02T08:15:00+00:00"}

The reference (查询编号) is given when the inquiry is accepted and never changes. An inquiry is
kept by its ``request_id``: the same request sent again answers the same reference and
result (idempotent); the same ``request_id`` with another ID number, name or purpose is
refused with ``409``.

Refusals carry ``{"error", "code", "field"?, "reason"}``: ``400`` a request that is not valid
(not JSON, a field missing, an ID number whose length, characters, birth date or ISO 7064
MOD 11-2 check character is wrong: ``field`` and ``code`` say which), ``401`` the
credential, ``404`` an unknown request id or path, ``405`` another method, ``409`` a request id
reused, ``413`` a body over 16 KiB, ``503`` the system down (``Retry-After``). The asker
treats every 5xx, a timeout, a closed port and any answer off this contract as "no answer
yet", never as "no record".

The simulated records
---------------------

``--records FILE`` (or ``records=`` in-process, a path or a mapping): a JSON object mapping a
resident ID number to the list of categories on that person's record; keys starting with
``_`` are notes and are ignored. Any other valid ID number has no record. The simulator keeps
no ID number or name: an inquiry is kept by its request id, with a keyed hash of what was
asked (to tell a retry from a reused id), and its logs carry the request id, the answer's
status and the outcome only.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import signal
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tuoyu_shared.logs import configure_logging, get_logger
from tuoyu_shared.public_security import (
    CATEGORIES,
    CLIENT_ID_VAR,
    CLIENT_SECRET_VAR,
    PURPOSES,
    REQUEST_ID_PATTERN,
)
from tuoyu_shared.validation import FieldError, clean_text, validate_resident_id

__all__ = ["DEFAULT_PORT", "PublicSecuritySimulator", "load_records", "main",
           "start_simulator"]

log = get_logger("tuoyu.simulators.public_security")

DEFAULT_PORT = 8090
MAX_BODY_BYTES = 16 * 1024
#: The year in a reference is Beijing time's.
_BEIJING = timezone(timedelta(hours=8))


class _Refusal(Exception):
    """An answer other than 200, with its JSON body."""

    def __init__(self, status: int, error: str, code: str, reason: str,
                 field: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.body: dict[str, str] = {"error": error, "code": code, "reason": reason}
        if field:
            self.body["field"] = field
        self.headers = dict(headers or {})


@dataclass
class _Inquiry:
    fingerprint: bytes
    reference: str
    result: str
    categories: tuple[str, ...]
    polls_left: int
    answered_at: datetime | None = None

    def to_json(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {"request_id": request_id, "reference": self.reference}
        if self.answered_at is None:
            body["status"] = "pending"
            return body
        body.update(status="answered", result=self.result, categories=list(self.categories),
                    answered_at=self.answered_at.isoformat(timespec="seconds"))
        return body


def load_records(records: str | os.PathLike[str] | Mapping[str, Iterable[str]] | None
                 ) -> dict[str, tuple[str, ...]]:
    """The simulated records: ID number -> categories, from a JSON file or a mapping.

    Raises ``ValueError`` for an ID number that is not valid or a category that is not one of
    :data:`~tuoyu_shared.public_security.CATEGORIES` (a record nobody could ever match, or one
    the adapter would refuse, is a mistake in the file).
    """
    if records is None:
        return {}
    if not isinstance(records, Mapping):
        with open(records, encoding="utf-8") as f:
            records = json.load(f)
        if not isinstance(records, Mapping):
            raise ValueError("the records file must hold a JSON object: ID number -> categories")
    loaded: dict[str, tuple[str, ...]] = {}
    for number, categories in records.items():
        if isinstance(number, str) and number.startswith("_"):
            continue
        try:
            number = validate_resident_id(number, "records")
        except FieldError as e:
            raise ValueError(f"a records key is not a valid resident ID number: {e.reason}"
                             ) from None
        if isinstance(categories, str) or not isinstance(categories, Iterable):
            raise ValueError("each record must be a list of categories")
        found = tuple(categories)
        unknown = [c for c in found if c not in CATEGORIES]
        if not found or unknown:
            raise ValueError(f"each record lists one or more of {', '.join(CATEGORIES)}; got "
                             f"{list(found)!r}")
        loaded[number] = tuple(sorted(set(found), key=CATEGORIES.index))
    return loaded


class PublicSecuritySimulator:
    """The simulated system: its records, the inquiries it was sent, and the faults it is
    told to play. Serve it with :func:`start_simulator` (or :meth:`start`)."""

    def __init__(self, records: Mapping[str, Iterable[str]] | str | os.PathLike[str] | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self._records = load_records(records)
        self._credentials = credentials
        self._key = secrets.token_bytes(32)  # of the fingerprints: never the values themselves
        self._lock = threading.Lock()
        self._inquiries: dict[str, _Inquiry] = {}
        self._sequence = 0
        self._down = False
        self._delay = 0.0
        self._deferred_polls = 0
        self._malformed = False
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # Faults

    def set_down(self, down: bool = True) -> None:
        """Answer every request 503 (the system down for maintenance) while ``down``."""
        self._down = bool(down)

    def set_delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each request (0: at once)."""
        if seconds < 0:
            raise ValueError("the delay cannot be negative")
        self._delay = float(seconds)

    def set_deferred(self, deferred: bool = True, polls: int = 1) -> None:
        """New inquiries are answered "pending" and get their result at the ``polls``-th
        status call after (``GET /inquiries/{id}``), as the real system answers when its
        records need a person to look."""
        if polls < 1:
            raise ValueError("polls must be at least 1")
        self._deferred_polls = polls if deferred else 0

    def set_malformed(self, malformed: bool = True) -> None:
        """Answer 200 with a body that is not JSON while ``malformed``."""
        self._malformed = bool(malformed)

    @property
    def inquiry_count(self) -> int:
        """How many distinct inquiries were accepted."""
        with self._lock:
            return len(self._inquiries)

    # Serving

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not serving")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not serving")
        return self._server.server_address[1]

    def start(self, host: str = "127.0.0.1", port: int = 0) -> PublicSecuritySimulator:
        """Bind and serve in a daemon thread; raises OSError when the port is taken."""
        if self._server is not None:
            raise RuntimeError("the simulator is serving already")
        server = ThreadingHTTPServer((host, port), _handler(self))
        server.daemon_threads = True
        self._stopping.clear()
        self._server = server
        # A short poll: stop() waits for the loop to notice, and tests stop it often.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="public-security-simulator", daemon=True).start()
        log.info("public_security_simulator.serving", url=self.url,
                 records=len(self._records), credential=self._credentials is not None)
        return self

    def stop(self) -> None:
        """Close the port (connections are then refused); requests waiting out a delay are
        dropped unanswered. The inquiries are kept: :meth:`start` serves them again."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> PublicSecuritySimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # The system

    def _authorised(self, header: str | None) -> bool:
        if self._credentials is None:
            return True
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, sep, secret = decoded.partition(":")
        want_id, want_secret = self._credentials
        # Both compared, whatever the first gives: the time says nothing of which was wrong.
        same_id = hmac.compare_digest(client_id.encode(), want_id.encode())
        same_secret = hmac.compare_digest(secret.encode(), want_secret.encode())
        return bool(sep) and same_id and same_secret

    def _fingerprint(self, id_number: str, name: str, purpose: str) -> bytes:
        message = json.dumps([id_number, name, purpose], ensure_ascii=False).encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def inquire(self, body: Any) -> tuple[str, dict[str, Any]]:
        """``POST /inquiries``: (request id, answer); raises :class:`_Refusal`."""
        if not isinstance(body, dict):
            raise _Refusal(400, "invalid_request", "invalid_format",
                           "the body must be a JSON object")
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.fullmatch(request_id):
            raise _Refusal(400, "invalid_request", "invalid_format",
                           "request_id must be 1-100 letters, digits or ._:-", "request_id")
        try:
            id_number = validate_resident_id(body.get("id_number"), "id_number")
        except FieldError as e:
            raise _Refusal(400, "invalid_request", e.code, e.reason, "id_number") from None
        name = _text(body, "name", 50)
        purpose = body.get("purpose")
        if purpose not in PURPOSES:
            raise _Refusal(400, "invalid_request", "invalid_choice",
                           f"purpose must be one of {', '.join(PURPOSES)}", "purpose")
        _text(body, "requested_by", 200)
        fingerprint = self._fingerprint(id_number, name, purpose)
        with self._lock:
            inquiry = self._inquiries.get(request_id)
            if inquiry is not None:
                if not hmac.compare_digest(inquiry.fingerprint, fingerprint):
                    raise _Refusal(409, "conflict", "request_id_reused",
                                   "this request_id was used for another inquiry",
                                   "request_id")
                return request_id, inquiry.to_json(request_id)
            self._sequence += 1
            reference = f"GA-{datetime.now(_BEIJING).year}-{self._sequence:06d}"
            categories = self._records.get(id_number, ())
            inquiry = _Inquiry(fingerprint=fingerprint, reference=reference,
                               result="record_found" if categories else "no_record",
                               categories=categories, polls_left=self._deferred_polls)
            if not inquiry.polls_left:
                inquiry.answered_at = datetime.now(UTC)
            self._inquiries[request_id] = inquiry
            return request_id, inquiry.to_json(request_id)

    def status(self, request_id: str) -> dict[str, Any]:
        """``GET /inquiries/{request_id}``; raises :class:`_Refusal`."""
        with self._lock:
            inquiry = self._inquiries.get(request_id)
            if inquiry is None:
                raise _Refusal(404, "not_found", "unknown_request_id",
                               "no inquiry has this request_id")
            if inquiry.answered_at is None:
                inquiry.polls_left -= 1
                if inquiry.polls_left <= 0:
                    inquiry.answered_at = datetime.now(UTC)
            return inquiry.to_json(request_id)


def _text(body: Mapping[str, Any], field: str, max_length: int) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise _Refusal(400, "invalid_request", "required", f"{field} is required", field)
    try:
        return clean_text(value, field, max_length)
    except FieldError as e:
        raise _Refusal(400, "invalid_request", e.code, e.reason, field) from None


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Refusal(400, "invalid_request", "invalid_json",
                       "the body is not UTF-8 JSON") from None


def _handler(sim: PublicSecuritySimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "public-security-simulator"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self._serve("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            if sim._delay and sim._stopping.wait(sim._delay):
                self.close_connection = True
                return  # stopped while waiting: dropped unanswered
            path = self.path.split("?", 1)[0]
            request_id: str | None = None
            # The body is read before anything is answered: a socket closed with unread data
            # is reset, and the client would see a broken connection instead of the answer.
            raw, unread = self._read_body()
            try:
                if sim._down:
                    raise _Refusal(503, "unavailable", "down",
                                   "the inquiry system is down for maintenance (simulated)",
                                   headers={"Retry-After": "60"})
                if not sim._authorised(self.headers.get("Authorization")):
                    raise _Refusal(401, "unauthorized", "bad_credential",
                                   "missing or wrong credential",
                                   headers={"WWW-Authenticate": 'Basic realm="inquiry"'})
                if path == "/inquiries":
                    if method != "POST":
                        raise _Refusal(405, "method_not_allowed", "method_not_allowed",
                                       "use POST", headers={"Allow": "POST"})
                    if unread is not None:
                        raise unread
                    sent = _parsed(raw)
                    if isinstance(sent, dict) and isinstance(sent.get("request_id"), str) \
                            and REQUEST_ID_PATTERN.fullmatch(sent["request_id"]):
                        request_id = sent["request_id"]  # for the log line of a refusal
                    request_id, body = sim.inquire(sent)
                elif path.startswith("/inquiries/") and path.count("/") == 2:
                    if method != "GET":
                        raise _Refusal(405, "method_not_allowed", "method_not_allowed",
                                       "use GET", headers={"Allow": "GET"})
                    request_id = path.rsplit("/", 1)[1]
                    body = sim.status(request_id)
                else:
                    raise _Refusal(404, "not_found", "no_such_path", "no such path")
            except _Refusal as refusal:
                log.info("public_security_simulator.request", method=method,
                         request_id=request_id, http_status=refusal.status,
                         outcome=refusal.body["code"], field=refusal.body.get("field"))
                self._send(refusal.status, json.dumps(refusal.body).encode(), refusal.headers)
                return
            log.info("public_security_simulator.request", method=method,
                     request_id=request_id, http_status=200, outcome=body["status"])
            if sim._malformed:
                self._send(200, b'{"request_id": "' + request_id.encode() + b'", "stat')
                return
            self._send(200, json.dumps(body, ensure_ascii=False).encode("utf-8"))

        def _read_body(self) -> tuple[bytes, _Refusal | None]:
            """The body, or why it was not read (no length, or too long to read)."""
            length = self.headers.get("Content-Length")
            if length is None or not length.isascii() or not length.isdigit():
                refusal = _Refusal(411, "invalid_request", "length_required",
                                   "Content-Length is required")
                return b"", refusal if self.command == "POST" else None
            if int(length) > MAX_BODY_BYTES:
                self.close_connection = True
                return b"", _Refusal(413, "invalid_request", "too_large",
                                     f"the body must be at most {MAX_BODY_BYTES} bytes")
            return self.rfile.read(int(length)), None

        def _send(self, status: int, data: bytes,
                  headers: Mapping[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client went away (e.g. it timed out first)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one structlog line per request instead (above), without the request line

    return Handler


def start_simulator(port: int = 0, records: Mapping[str, Iterable[str]] | str
                    | os.PathLike[str] | None = None, *, host: str = "127.0.0.1",
                    credentials: tuple[str, str] | None = None) -> PublicSecuritySimulator:
    """A simulator serving on ``host:port`` (port 0: any free one; see ``.url``), in a
    daemon thread of this process. Stop it with ``.stop()`` or use it as a context manager."""
    return PublicSecuritySimulator(records, credentials).start(host, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuoyu_shared.simulators.public_security",
        description="Simulate the public-security records inquiry (未成年人保护法 第62条). "
                    f"The credential, if any, comes from {CLIENT_ID_VAR} and "
                    f"{CLIENT_SECRET_VAR} (not the command line, which others can read).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--records", type=Path,
                        help="JSON object: resident ID number -> list of categories")
    parser.add_argument("--deferred", action="store_true",
                        help="answer new inquiries 'pending' first, the result at the next "
                             "status call")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds to wait before each answer")
    args = parser.parse_args(argv)
    configure_logging("public-security-simulator",
                      os.environ.get("TUOYU_LOG_LEVEL") or "info")
    client_id = os.environ.get(CLIENT_ID_VAR) or None
    client_secret = os.environ.get(CLIENT_SECRET_VAR) or None
    if bool(client_id) != bool(client_secret):
        parser.error(f"{CLIENT_ID_VAR} and {CLIENT_SECRET_VAR} go together")
    try:
        sim = PublicSecuritySimulator(
            args.records, (client_id, client_secret) if client_id and client_secret else None)
    except (OSError, ValueError) as e:
        parser.error(f"--records: {e}")
    sim.set_deferred(args.deferred)
    sim.set_delay(args.delay)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    sim.start(args.host, args.port)
    done.wait()
    sim.stop()
    log.info("public_security_simulator.stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
