"""A simulator of an S3-compatible object store (MinIO, …), the store
:class:`tuoyu_shared.blobs.S3BlobStore` keeps evidence files in; objects are kept in memory.

Run it for ``make run`` (the credential from ``TUOYU_S3_SIMULATOR_ACCESS_KEY`` and
``TUOYU_S3_SIMULATOR_SECRET_KEY``, not the command line, which others can read)::

    python -m tuoyu_shared.simulators.s3 --port 8091 --bucket tuoyu-evidence

or in-process from tests::

    with start_simulator("access", "secret", buckets=["evidence"]) as sim:
        store = S3BlobStore(sim.url, "evidence", "access", "secret")
        sim.set_down(True)                         # 503 to everything
        sim.put_object("evidence", key, b"…")      # behind the client's back (e.g. damage)
        sim.object("evidence", key)                # what is stored (None: nothing)
        sim.requests                               # [(method, path, status), …]
        sim.stop()                                 # the port closed: connection refused

What it speaks
--------------

Path-style URLs, ``/<bucket>/<key>``: ``PUT`` (stores the body, answers ``200`` with an
``ETag``), ``GET`` (``200`` with the object, ``404 NoSuchKey``), ``HEAD`` (``200`` with the
object's ``Content-Length`` and ``ETag``, ``404`` without a body) and ``DELETE`` (``204``). An
unknown bucket is ``404 NoSuchBucket``. Errors have S3's XML body,
``<Error><Code>…</Code><Message>…</Message>…</Error>``.

Every request must be signed with AWS Signature Version 4 in the ``Authorization`` header, and
the signature is verified as S3 does: the canonical request rebuilt from what was received
(method, path, query, the headers named in ``SignedHeaders``, which must include ``host``,
``x-amz-date`` and ``x-amz-content-sha256``), the scope's date, region (the simulator's) and
service ``s3``, and ``x-amz-date`` within 15 minutes of the simulator's clock. Refusals:
``403 InvalidAccessKeyId``, ``403 SignatureDoesNotMatch``, ``403 RequestTimeTooSkewed``,
``403 AccessDenied`` (no or another kind of authorization), ``400
AuthorizationHeaderMalformed`` (a header that does not parse, another region). The payload must
be signed: ``x-amz-content-sha256`` is the hex SHA-256 of the body (``UNSIGNED-PAYLOAD`` and
streaming uploads are refused, ``400 InvalidRequest``), and a body that does not match it is
``400 XAmzContentSHA256Mismatch``. The verification is written here on its own, not with the
client's signer, so a test of the client against the simulator checks the client.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import secrets
import signal
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from tuoyu_shared.logs import configure_logging, get_logger

__all__ = ["ACCESS_KEY_VAR", "DEFAULT_PORT", "SECRET_KEY_VAR", "S3Simulator", "main",
           "start_simulator", "verify_signature"]

log = get_logger("tuoyu.simulators.s3")

DEFAULT_PORT = 8091
ACCESS_KEY_VAR = "TUOYU_S3_SIMULATOR_ACCESS_KEY"
SECRET_KEY_VAR = "TUOYU_S3_SIMULATOR_SECRET_KEY"
#: The largest body accepted (larger than any blob: the client's limit is tested, not this).
MAX_BODY_BYTES = 64 * 1024 * 1024
#: How far a request's x-amz-date may be from the simulator's clock (S3's 15 minutes).
MAX_SKEW = timedelta(minutes=15)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class S3Error(Exception):
    """An answer other than 2xx, with S3's error code."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def _encode(text: str, safe: str) -> str:
    return urllib.parse.quote(text, safe=safe)


def _canonical_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{_encode(k, '~')}={_encode(v, '~')}" for k, v in sorted(pairs))


def verify_signature(method: str, raw_path: str, headers: Mapping[str, str], *,
                     access_key: str, secret_key: str, region: str,
                     now: datetime | None = None) -> None:
    """Check the SigV4 ``Authorization`` of a request as S3 does; raises :class:`S3Error`.

    ``raw_path`` is the request target as received (path and query), ``headers`` the
    request's headers (any case). The payload hash is checked against the body by the caller.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    authorization = lowered.get("authorization", "")
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise S3Error(403, "AccessDenied", "requests must be signed with AWS Signature "
                                           "Version 4 (AWS4-HMAC-SHA256) in Authorization")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value
    credential = fields.get("Credential", "").split("/")
    signed = fields.get("SignedHeaders", "")
    signature = fields.get("Signature", "")
    if len(credential) != 5 or not signed or not _HEX64.fullmatch(signature):
        raise S3Error(400, "AuthorizationHeaderMalformed",
                      "Authorization must give Credential=key/date/region/s3/aws4_request, "
                      "SignedHeaders and Signature")
    key, date, scope_region, service, terminator = credential
    if not hmac.compare_digest(key.encode(), access_key.encode()):
        raise S3Error(403, "InvalidAccessKeyId",
                      "the access key does not exist in the records")
    if scope_region != region or service != "s3" or terminator != "aws4_request":
        raise S3Error(400, "AuthorizationHeaderMalformed",
                      f"the credential's scope must be <date>/{region}/s3/aws4_request")
    amz_date = lowered.get("x-amz-date", "")
    try:
        sent_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise S3Error(403, "AccessDenied", "x-amz-date must be YYYYMMDDTHHMMSSZ") from None
    if date != amz_date[:8]:
        raise S3Error(400, "AuthorizationHeaderMalformed",
                      "the credential's date is not the day of x-amz-date")
    if abs((now or datetime.now(UTC)) - sent_at) > MAX_SKEW:
        raise S3Error(403, "RequestTimeTooSkewed", "the difference between the request time "
                                                   "and the server's time is too large")
    names = signed.split(";")
    missing = {"host", "x-amz-date", "x-amz-content-sha256"} - set(names)
    if missing or names != sorted(names) or any(n not in lowered for n in names):
        raise S3Error(403, "AccessDenied", "SignedHeaders must list, sorted, headers sent "
                                           "with the request, host, x-amz-date and "
                                           "x-amz-content-sha256 among them")
    path, _, query = raw_path.partition("?")
    canonical_request = "\n".join([
        method,
        _encode(urllib.parse.unquote(path), "/~"),
        _canonical_query(query),
        "".join(f"{n}:{' '.join(lowered[n].split())}\n" for n in names),
        signed,
        lowered["x-amz-content-sha256"]])
    scope = f"{date}/{region}/s3/aws4_request"
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    signing_key = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise S3Error(403, "SignatureDoesNotMatch",
                      "the request signature we calculated does not match the signature you "
                      "provided; check your key and signing method")


class S3Simulator:
    """The simulated store: its buckets and objects (in memory), the requests it was sent and
    the faults it is told to play. Serve it with :func:`start_simulator` (or :meth:`start`).
    """

    def __init__(self, access_key: str, secret_key: str, *, region: str = "us-east-1",
                 buckets: Iterable[str] = ()) -> None:
        if not access_key or not secret_key:
            raise ValueError("the simulator needs an access key and a secret key")
        self.access_key = access_key
        self._secret_key = secret_key
        self.region = region
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, bytes]] = {b: {} for b in buckets}
        self._requests: list[tuple[str, str, int]] = []
        self._down = False
        self._server: ThreadingHTTPServer | None = None

    # The store, behind the client's back

    def create_bucket(self, bucket: str) -> None:
        with self._lock:
            self._buckets.setdefault(bucket, {})

    def put_object(self, bucket: str, key: str, data: bytes) -> None:
        """Store (or replace) an object without a request: e.g. damage one."""
        with self._lock:
            self._buckets[bucket][key] = bytes(data)

    def object(self, bucket: str, key: str) -> bytes | None:
        with self._lock:
            return self._buckets.get(bucket, {}).get(key)

    def keys(self, bucket: str) -> list[str]:
        with self._lock:
            return sorted(self._buckets.get(bucket, {}))

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """The requests answered so far: (method, path, status)."""
        with self._lock:
            return list(self._requests)

    def set_down(self, down: bool = True) -> None:
        """Answer every request 503 (``ServiceUnavailable``) while ``down``."""
        self._down = bool(down)

    # Serving

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not serving")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> S3Simulator:
        """Bind and serve in a daemon thread; raises OSError when the port is taken."""
        if self._server is not None:
            raise RuntimeError("the simulator is serving already")
        server = ThreadingHTTPServer((host, port), _handler(self))
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="s3-simulator", daemon=True).start()
        log.info("s3_simulator.serving", url=self.url, buckets=sorted(self._buckets))
        return self

    def stop(self) -> None:
        """Close the port (connections are then refused). The objects are kept."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> S3Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # The store

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request: (status, headers, body); raises :class:`S3Error`."""
        if self._down:
            raise S3Error(503, "ServiceUnavailable", "the store is down (simulated)",
                          {"Retry-After": "1"})
        verify_signature(method, raw_path, headers, access_key=self.access_key,
                         secret_key=self._secret_key, region=self.region)
        lowered = {name.lower(): value for name, value in headers.items()}
        payload = lowered["x-amz-content-sha256"]
        if not _HEX64.fullmatch(payload):
            raise S3Error(400, "InvalidRequest", "x-amz-content-sha256 must be the hex "
                                                 "SHA-256 of the body (a signed payload)")
        if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), payload):
            raise S3Error(400, "XAmzContentSHA256Mismatch", "the provided "
                          "x-amz-content-sha256 does not match what was computed")
        path = urllib.parse.unquote(raw_path.partition("?")[0])
        bucket, _, key = path.lstrip("/").partition("/")
        with self._lock:
            objects = self._buckets.get(bucket)
            if objects is None:
                raise S3Error(404, "NoSuchBucket", "the specified bucket does not exist")
            if not key:
                raise S3Error(405, "MethodNotAllowed", "only object calls are simulated")
            if method == "PUT":
                objects[key] = body
                return 200, {"ETag": _etag(body)}, b""
            if method == "DELETE":
                objects.pop(key, None)
                return 204, {}, b""
            found = objects.get(key)
        if method not in ("GET", "HEAD"):
            raise S3Error(405, "MethodNotAllowed", f"{method} is not simulated")
        if found is None:
            raise S3Error(404, "NoSuchKey", "the specified key does not exist")
        return 200, {"ETag": _etag(found), "Content-Type": "application/octet-stream"}, found

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append((method, path, status))


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def _error_body(error: S3Error, resource: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(error.code)}</Code><Message>{escape(error.message)}"
            f"</Message><Resource>{escape(resource)}</Resource>"
            f"<RequestId>{secrets.token_hex(8)}</RequestId></Error>").encode()


def _handler(sim: S3Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "s3-simulator"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._serve("GET")

        def do_HEAD(self) -> None:  # noqa: N802
            self._serve("HEAD")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def _serve(self, method: str) -> None:
            path = self.path.partition("?")[0]
            try:
                # Read before answering: a socket closed with unread data is reset.
                body = self._read_body(method)
                status, headers, data = sim.handle(method, self.path, dict(self.headers),
                                                   body)
            except S3Error as error:
                log.info("s3_simulator.request", method=method, path=path,
                         http_status=error.status, outcome=error.code)
                sim._record(method, path, error.status)
                data = b"" if method == "HEAD" else _error_body(error, path)
                self._send(error.status, {"Content-Type": "application/xml", **error.headers},
                           data, len(data))
                return
            log.info("s3_simulator.request", method=method, path=path, http_status=status,
                     outcome="ok")
            sim._record(method, path, status)
            self._send(status, headers, b"" if method == "HEAD" else data, len(data))

        def _read_body(self, method: str) -> bytes:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise S3Error(501, "NotImplemented", "send the body with a Content-Length")
            length = self.headers.get("Content-Length")
            if length is None:
                if method == "PUT":
                    raise S3Error(411, "MissingContentLength",
                                  "you must provide the Content-Length HTTP header")
                return b""
            if not length.isascii() or not length.isdigit():
                self.close_connection = True
                raise S3Error(400, "InvalidArgument", "Content-Length must be a number")
            if int(length) > MAX_BODY_BYTES:
                self.close_connection = True
                raise S3Error(400, "EntityTooLarge", f"the body must be at most "
                                                     f"{MAX_BODY_BYTES} bytes")
            return self.rfile.read(int(length))

        def _send(self, status: int, headers: Mapping[str, str], data: bytes,
                  length: int) -> None:
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if status != 204:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                if data:
                    self.wfile.write(data)
            except OSError:
                pass  # the client went away

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one structlog line per request instead (above)

    return Handler


def start_simulator(access_key: str, secret_key: str, *, region: str = "us-east-1",
                    buckets: Iterable[str] = (), host: str = "127.0.0.1",
                    port: int = 0) -> S3Simulator:
    """A simulator serving on ``host:port`` (port 0: any free one; see ``.url``), in a daemon
    thread of this process. Stop it with ``.stop()`` or use it as a context manager."""
    return S3Simulator(access_key, secret_key, region=region, buckets=buckets).start(host, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuoyu_shared.simulators.s3",
        description="Simulate an S3-compatible object store (objects in memory, SigV4 "
                    f"verified). The credential comes from {ACCESS_KEY_VAR} and "
                    f"{SECRET_KEY_VAR} (not the command line, which others can read).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--bucket", action="append", default=[],
                        help="a bucket to create (may be given more than once)")
    args = parser.parse_args(argv)
    configure_logging("s3-simulator", os.environ.get("TUOYU_LOG_LEVEL") or "info")
    access_key = os.environ.get(ACCESS_KEY_VAR) or ""
    secret_key = os.environ.get(SECRET_KEY_VAR) or ""
    if not access_key or not secret_key:
        parser.error(f"{ACCESS_KEY_VAR} and {SECRET_KEY_VAR} must be set")
    sim = S3Simulator(access_key, secret_key, region=args.region, buckets=args.bucket)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    sim.start(args.host, args.port)
    done.wait()
    sim.stop()
    log.info("s3_simulator.stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
