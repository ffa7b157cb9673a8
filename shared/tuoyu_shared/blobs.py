"""Content-addressed storage of files (evidence of inspection visits: photos, PDFs), behind one
interface, on a local directory or on an S3-compatible object store (MinIO, …).

Content addressing
------------------

A blob is named by the SHA-256 of its bytes (64 lowercase hex digits). Events name the hash,
never a file name or a URL, so a record can never point at content that changed since, and the
same content stored twice is stored once: :meth:`BlobStore.put` of content already stored is a
no-op that answers the same hash. The uploader states the hash it computed
(``expected_sha256``); content whose hash differs is refused (:class:`BlobHashMismatch`, a
400 naming the field ``sha256``) and nothing is stored. Empty content, and content over
:data:`MAX_BLOB_BYTES` (8 MiB), are refused too (a 400 naming ``content``).

Verification on read
--------------------

:meth:`BlobStore.get` hashes what it read and answers it only if the hash is the blob's name:
bytes damaged on disk, or by a store, are never served as evidence. They raise
:class:`BlobCorrupted` (503, ``blob_corrupted``: for the operators to restore it, e.g. from a
backup or by putting the original again, which repairs a damaged local file).
:meth:`~BlobStore.exists` and :meth:`~BlobStore.size` do not read the content and so do not
verify it.

The stores
----------

- :class:`LocalBlobStore`: files under a directory, ``<root>/ab/cd/<sha256>`` (the first two
  pairs of hex digits as directories, made when needed). A blob is written to a temporary file
  in its own directory (``.<hash prefix>.<random>.tmp``), flushed to disk (``fsync``) and
  renamed into place (``os.replace``), then the directory is flushed too: a reader never sees
  half a file, and concurrent puts of one content, from threads or processes, each write their
  own temporary file and end with one whole file. A temporary file left by a crash is never
  taken for a blob (its name is not a hash); it may be deleted. Files are created readable by
  the service's user only (``0600``).
- :class:`S3BlobStore`: objects ``<prefix><sha256>`` in a bucket of an S3-compatible store,
  with path-style URLs (``<endpoint>/<bucket>/<key>``) and three calls: ``PUT`` (after a
  ``HEAD`` that skips the upload of content already stored), ``GET`` and ``HEAD``. Requests are
  signed with AWS Signature Version 4 (:func:`sigv4_authorization`), the payload's SHA-256
  included (never ``UNSIGNED-PAYLOAD``: the store checks the bytes it received against it). It
  is written on the standard library's :mod:`http.client` (one connection per call; the
  object is safe to share between threads), so the kit needs no S3 SDK. A store that cannot
  be reached or answers off the contract raises :class:`BlobStoreUnavailable` (503), one that
  refuses the credential :class:`BlobStoreUnauthorized` (503, naming S3's error code, e.g.
  ``SignatureDoesNotMatch``). :mod:`tuoyu_shared.simulators.s3` simulates such a store.

Configuration
-------------

:func:`blob_store_from_env` (``SERVICE`` is the service's name upper-cased):

- ``TUOYU_<SERVICE>_BLOB_S3_ENDPOINT`` set: an :class:`S3BlobStore` at that URL (``http`` or
  ``https``), with ``TUOYU_<SERVICE>_BLOB_S3_BUCKET``, ``…_BLOB_S3_ACCESS_KEY`` and
  ``…_BLOB_S3_SECRET_KEY`` (required), ``…_BLOB_S3_REGION`` (default ``us-east-1``) and
  ``…_BLOB_S3_PREFIX`` (default none, e.g. ``evidence/``);
- otherwise a :class:`LocalBlobStore` at ``TUOYU_<SERVICE>_BLOB_DIR``, by default
  ``.local/blobs/<service>`` under the working directory.

A value missing or not valid raises :class:`BlobStoreMisconfigured` (a ``ValueError`` and a
:class:`~tuoyu_shared.config.ConfigurationError`), naming the variable.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import http.client
import os
import re
import tempfile
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuoyu_shared.config import ConfigurationError
from tuoyu_shared.errors import NotFound, Unavailable
from tuoyu_shared.validation import FieldError, ValidationFailed

__all__ = [
    "EMPTY_SHA256",
    "MAX_BLOB_BYTES",
    "SHA256_PATTERN",
    "BlobCorrupted",
    "BlobHashMismatch",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreMisconfigured",
    "BlobStoreUnauthorized",
    "BlobStoreUnavailable",
    "LocalBlobStore",
    "S3BlobStore",
    "blob_store_from_env",
    "check_sha256",
    "sigv4_authorization",
]

#: The largest blob accepted by default (8 MiB).
MAX_BLOB_BYTES = 8 * 1024 * 1024
#: The name of a blob: a SHA-256 in lowercase hex.
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
#: The SHA-256 of no bytes (the payload hash of a GET or a HEAD).
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class BlobHashMismatch(ValidationFailed):
    """The content's SHA-256 is not the one the uploader stated (400, field ``sha256``, code
    ``hash_mismatch``); nothing was stored."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__([FieldError(
            "sha256", f"does not match the content, whose SHA-256 is {actual}",
            "hash_mismatch")])


class BlobNotFound(NotFound):
    """No blob of this hash is stored (404)."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"no blob {sha256} is stored", details={"sha256": sha256})


class BlobCorrupted(Unavailable):
    """The stored bytes no longer hash to their name (damaged storage): never served (503, for
    the operators to restore the blob)."""

    code = "blob_corrupted"

    def __init__(self, sha256: str, where: str) -> None:
        super().__init__(f"the blob {sha256} stored in {where} is corrupted: its content no "
                         "longer matches its SHA-256", details={"sha256": sha256})


class BlobStoreUnavailable(Unavailable):
    """The store could not be read or written this time (a disk error, an S3 store that does
    not answer, or answers off the contract): 503, try again later."""

    code = "blob_store_unavailable"


class BlobStoreUnauthorized(BlobStoreUnavailable):
    """The S3 store refused the credential or the signature (403): a configuration problem
    for the operators (``TUOYU_<SERVICE>_BLOB_S3_ACCESS_KEY`` / ``_SECRET_KEY``, the clock)."""

    code = "blob_store_unauthorized"


class BlobStoreMisconfigured(ConfigurationError, ValueError):
    """The environment does not configure the blob store well enough; names the variable."""


# ---------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------


def check_sha256(value: object, field: str = "sha256") -> str:
    """``value`` if it is a SHA-256 in lowercase hex; :class:`ValidationFailed` on ``field``
    otherwise."""
    if not isinstance(value, str) or not SHA256_PATTERN.fullmatch(value):
        raise ValidationFailed([_bad_sha256(field)])
    return value


def _bad_sha256(field: str) -> FieldError:
    return FieldError(field, "must be a SHA-256 in lowercase hex (64 characters 0-9, a-f)",
                      "invalid_format")


class BlobStore(abc.ABC):
    """Content-addressed storage: see the module's docstring.

    The checks (size, hash, verification on read) are made here, once; a store implements
    :meth:`_write`, :meth:`_read` and :meth:`_size` for names already checked.
    """

    #: The largest content :meth:`put` accepts.
    max_bytes: int = MAX_BLOB_BYTES

    def put(self, data: bytes, *, expected_sha256: str | None = None) -> str:
        """Store ``data``; its SHA-256 (lowercase hex). Content already stored is not written
        again. :class:`BlobHashMismatch` when ``expected_sha256`` is given and is not the
        content's; :class:`ValidationFailed` for empty content, content over
        :attr:`max_bytes` (field ``content``) or an ``expected_sha256`` that is not a SHA-256
        (field ``sha256``). Nothing is stored when it raises."""
        errors: list[FieldError] = []
        content = b""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            errors.append(FieldError("content", f"must be bytes, not {type(data).__name__}",
                                     "invalid_type"))
        else:
            content = bytes(data)
            if not content:
                errors.append(FieldError("content", "is empty", "required"))
            elif len(content) > self.max_bytes:
                errors.append(FieldError(
                    "content", f"must be at most {self.max_bytes} bytes, got {len(content)}",
                    "too_long"))
        if expected_sha256 is not None and (not isinstance(expected_sha256, str)
                                            or not SHA256_PATTERN.fullmatch(expected_sha256)):
            errors.append(_bad_sha256("sha256"))
        if errors:
            raise ValidationFailed(errors)
        sha = hashlib.sha256(content).hexdigest()
        if expected_sha256 is not None and not hmac.compare_digest(sha, expected_sha256):
            raise BlobHashMismatch(expected_sha256, sha)
        self._write(sha, content)
        return sha

    def get(self, sha256: str) -> bytes:
        """The content of the blob ``sha256``, verified against it. :class:`BlobNotFound` when
        absent, :class:`BlobCorrupted` when the stored bytes do not match,
        :class:`ValidationFailed` (field ``sha256``) for a name that is not a SHA-256."""
        sha = check_sha256(sha256)
        data = self._read(sha)
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), sha):
            raise BlobCorrupted(sha, self._where())
        return data

    def exists(self, sha256: str) -> bool:
        """Whether a blob ``sha256`` is stored (its content is not read, nor verified)."""
        return self._size(check_sha256(sha256)) is not None

    def size(self, sha256: str) -> int:
        """The size in bytes of the blob ``sha256`` (not verified); :class:`BlobNotFound` when
        absent."""
        sha = check_sha256(sha256)
        size = self._size(sha)
        if size is None:
            raise BlobNotFound(sha)
        return size

    @abc.abstractmethod
    def _write(self, sha256: str, data: bytes) -> None:
        """Store ``data`` (whose hash is ``sha256``), unless it is stored already, whole."""

    @abc.abstractmethod
    def _read(self, sha256: str) -> bytes:
        """The stored bytes (not verified); raises :class:`BlobNotFound`."""

    @abc.abstractmethod
    def _size(self, sha256: str) -> int | None:
        """The stored size, None when absent."""

    @abc.abstractmethod
    def _where(self) -> str:
        """Where the blobs are, for messages (no secret)."""


# ---------------------------------------------------------------------------
# A local directory
# ---------------------------------------------------------------------------


class LocalBlobStore(BlobStore):
    """Blobs as files ``<root>/ab/cd/<sha256>`` (see the module's docstring)."""

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int = MAX_BLOB_BYTES
                 ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes!r}")
        self.root = Path(root)
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_of(self, sha256: str) -> Path:
        """Where the blob ``sha256`` is (or would be) stored."""
        sha = check_sha256(sha256)
        return self.root / sha[:2] / sha[2:4] / sha

    def _where(self) -> str:
        return str(self.root)

    def _write(self, sha256: str, data: bytes) -> None:
        path = self.path_of(sha256)
        try:
            if self._intact(path, sha256, len(data)):
                return
            made = [d for d in (path.parent.parent, path.parent) if not d.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{sha256[:8]}.",
                                             suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            # The rename, and the directories made for it, are durable once their
            # directories are flushed.
            for directory in {path.parent, *(d.parent for d in made)}:
                _fsync_directory(directory)
        except OSError as e:
            raise BlobStoreUnavailable(
                f"cannot write the blob {sha256} under {self.root}: {e.strerror or e}") from e

    @staticmethod
    def _intact(path: Path, sha256: str, size: int) -> bool:
        """Whether ``path`` holds the blob already, whole and undamaged (a damaged file is
        written again: putting the original repairs it)."""
        try:
            if path.stat().st_size != size:
                return False
            return hmac.compare_digest(hashlib.sha256(path.read_bytes()).hexdigest(), sha256)
        except FileNotFoundError:
            return False

    def _read(self, sha256: str) -> bytes:
        try:
            return self.path_of(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None
        except OSError as e:
            raise BlobStoreUnavailable(
                f"cannot read the blob {sha256} under {self.root}: {e.strerror or e}") from e

    def _size(self, sha256: str) -> int | None:
        try:
            return self.path_of(sha256).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as e:
            raise BlobStoreUnavailable(
                f"cannot read the blob {sha256} under {self.root}: {e.strerror or e}") from e


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # a platform whose directories cannot be opened (Windows): nothing to flush
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not flush directories; the rename itself is atomic
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# An S3-compatible store
# ---------------------------------------------------------------------------

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PREFIX = re.compile(r"[0-9A-Za-z!_.*'()/-]*")  # S3's "safe characters" of a key
_S3_ERROR_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_S3_ERROR_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")


def _uri_encode(path: str) -> str:
    """A key (or path) encoded as SigV4 and S3 want it: every byte but the unreserved
    characters (``A-Z a-z 0-9 - . _ ~``) and ``/`` as ``%XY``, once."""
    return urllib.parse.quote(path, safe="/~")


def sigv4_authorization(method: str, canonical_uri: str, canonical_query: str,
                        headers: Mapping[str, str], payload_sha256: str, *, access_key: str,
                        secret_key: str, region: str, amz_date: str,
                        service: str = "s3") -> str:
    """The ``Authorization`` header of AWS Signature Version 4 for a request.

    ``canonical_uri`` is the path as sent (already URI-encoded, :func:`_uri_encode`),
    ``canonical_query`` the canonical query string (``""`` for none), ``headers`` every header
    to sign (``host``, ``x-amz-date``, ``x-amz-content-sha256`` among them, with the values
    sent), ``payload_sha256`` the hex SHA-256 of the body and ``amz_date`` the request's
    ``x-amz-date`` (``YYYYMMDDTHHMMSSZ``, UTC).
    """
    canonical = {name.strip().lower(): " ".join(str(value).split())
                 for name, value in headers.items()}
    signed_headers = ";".join(sorted(canonical))
    canonical_request = "\n".join([
        method.upper(), canonical_uri, canonical_query,
        "".join(f"{name}:{canonical[name]}\n" for name in sorted(canonical)),
        signed_headers, payload_sha256])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}")


def _endpoint(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit((url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http or https URL, got {url!r}")
    if parts.username is not None or parts.password is not None or parts.query \
            or parts.fragment:
        raise ValueError("must be a plain http(s)://host[:port][/path] URL, without a user, "
                         "a query or a fragment")
    try:
        _ = parts.port  # a port that is not a number raises
    except ValueError:
        raise ValueError(f"has a port that is not a number: {url!r}") from None
    return parts


def _check_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"must be an S3 bucket name (3-63 characters a-z, 0-9, '.', '-', "
                         f"starting and ending with a letter or digit), got {bucket!r}")
    return bucket


def _check_region(region: str) -> str:
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise ValueError(f"must be a region name such as us-east-1, got {region!r}")
    return region


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or len(prefix) > 500:
        raise ValueError("may hold only letters, digits and !_.*'()/- (at most 500), got "
                         f"{prefix!r}")
    if prefix and any(part in ("", ".", "..") for part in (prefix + "x").split("/")):
        raise ValueError(f"must not start with '/' nor hold an empty, '.' or '..' part, got "
                         f"{prefix!r}")
    return prefix


class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix><sha256>`` of ``bucket`` in an S3-compatible store at
    ``endpoint_url`` (path-style; see the module's docstring). ``timeout`` is in seconds, per
    call."""

    def __init__(self, endpoint_url: str, bucket: str, access_key: str, secret_key: str,
                 region: str = "us-east-1", prefix: str = "", *, timeout: float = 10.0,
                 max_bytes: int = MAX_BLOB_BYTES) -> None:
        try:
            endpoint = _endpoint(endpoint_url)
        except ValueError as e:
            raise ValueError(f"endpoint_url {e}") from None
        for name, check, given in (("bucket", _check_bucket, bucket),
                                   ("region", _check_region, region),
                                   ("prefix", _check_prefix, prefix)):
            try:
                check(given)
            except ValueError as e:
                raise ValueError(f"{name} {e}") from None
        if not access_key or not secret_key:
            raise ValueError("access_key and secret_key are required")
        if not timeout > 0:
            raise ValueError(f"timeout must be more than 0 seconds, got {timeout!r}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes!r}")
        self.endpoint_url = urllib.parse.urlunsplit(
            (endpoint.scheme, endpoint.netloc, endpoint.path.rstrip("/"), "", ""))
        self.bucket = bucket
        self.region = region
        self.prefix = prefix
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._access_key = access_key
        self._secret_key = secret_key
        self._https = endpoint.scheme == "https"
        self._hostname = endpoint.hostname or ""
        self._port = endpoint.port
        self._host = endpoint.netloc  # the Host header, as signed
        self._base_path = _uri_encode(urllib.parse.unquote(endpoint.path.rstrip("/")))

    def __repr__(self) -> str:
        return (f"S3BlobStore({self.endpoint_url!r}, bucket={self.bucket!r}, "
                f"prefix={self.prefix!r}, region={self.region!r})")

    def key_of(self, sha256: str) -> str:
        """The object key of the blob ``sha256``."""
        return self.prefix + check_sha256(sha256)

    def _where(self) -> str:
        return f"{self.endpoint_url}/{self.bucket}/{self.prefix}"

    def _write(self, sha256: str, data: bytes) -> None:
        if self._size(sha256) == len(data):
            return  # stored already (S3 checked its bytes against the signed hash then)
        status, _, body = self._call("PUT", sha256, data, sha256)
        if status != 200:
            raise self._refusal("PUT", sha256, status, body)

    def _read(self, sha256: str) -> bytes:
        status, _, body = self._call("GET", sha256)
        if status == 200:
            return body
        code, _ = _s3_error(body)
        if status == 404 and code in (None, "NoSuchKey"):
            raise BlobNotFound(sha256)
        raise self._refusal("GET", sha256, status, body)

    def _size(self, sha256: str) -> int | None:
        status, headers, body = self._call("HEAD", sha256)
        if status == 404:
            return None
        if status != 200:
            raise self._refusal("HEAD", sha256, status, body)
        length = headers.get("content-length", "")
        if not length.isascii() or not length.isdigit():
            raise BlobStoreUnavailable(
                f"the S3 store at {self.endpoint_url} answered HEAD {self.bucket}/"
                f"{self.prefix}{sha256} without a Content-Length")
        return int(length)

    def _call(self, method: str, sha256: str, body: bytes = b"",
              payload_sha256: str = EMPTY_SHA256) -> tuple[int, dict[str, str], bytes]:
        """One signed request for the object of ``sha256``: (status, headers, body)."""
        path = f"{self._base_path}/{self.bucket}/{_uri_encode(self.prefix + sha256)}"
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"host": self._host, "x-amz-content-sha256": payload_sha256,
                   "x-amz-date": amz_date}
        if method == "PUT":
            headers["content-type"] = "application/octet-stream"
        headers["authorization"] = sigv4_authorization(
            method, path, "", headers, payload_sha256, access_key=self._access_key,
            secret_key=self._secret_key, region=self.region, amz_date=amz_date)
        connection_class = (http.client.HTTPSConnection if self._https
                            else http.client.HTTPConnection)
        connection = connection_class(self._hostname, self._port, timeout=self.timeout)
        try:
            connection.request(method, path, body=body if method == "PUT" else None,
                               headers=headers)
            response = connection.getresponse()
            data = response.read()
            return (response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        except (OSError, http.client.HTTPException) as e:
            raise BlobStoreUnavailable(
                f"the S3 store at {self.endpoint_url} did not answer {method} {self.bucket}/"
                f"{self.prefix}{sha256}: {e!r}") from e
        finally:
            connection.close()

    def _refusal(self, method: str, sha256: str, status: int,
                 body: bytes) -> BlobStoreUnavailable:
        code, message = _s3_error(body)
        said = f"{status} {code or 'no error code'}" + (f" ({message})" if message else "")
        what = f"{method} {self.bucket}/{self.prefix}{sha256}"
        if status == 403:
            return BlobStoreUnauthorized(
                f"the S3 store at {self.endpoint_url} refused {what}: {said}; check the "
                "access key, the secret key, the store's permissions and the clock")
        return BlobStoreUnavailable(f"the S3 store at {self.endpoint_url} answered {what} "
                                    f"with {said}")


def _s3_error(body: bytes) -> tuple[str | None, str | None]:
    """S3's error code and message, from an XML error body (None when there is none)."""
    text = body[:4096].decode("utf-8", "replace")
    code = _S3_ERROR_CODE.search(text)
    message = _S3_ERROR_MESSAGE.search(text)
    return (code.group(1).strip() if code else None,
            message.group(1).strip() if message else None)


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def blob_store_from_env(service: str, env: Mapping[str, str] | None = None) -> BlobStore:
    """The blob store of ``service`` the environment configures (``os.environ`` by default):
    see the module's docstring. Raises :class:`BlobStoreMisconfigured`, naming the
    variable."""
    env = os.environ if env is None else env
    base = f"TUOYU_{service.upper()}_BLOB"

    def value(suffix: str) -> str:
        return (env.get(f"{base}{suffix}") or "").strip()

    def checked(suffix: str, check: Any, given: str) -> str:
        try:
            return check(given)
        except ValueError as e:
            raise BlobStoreMisconfigured(f"{base}{suffix} {e}") from None

    endpoint = value("_S3_ENDPOINT")
    if not endpoint:
        folder = value("_DIR")
        return LocalBlobStore(Path(folder) if folder
                              else Path.cwd() / ".local" / "blobs" / service)
    checked("_S3_ENDPOINT", _endpoint, endpoint)
    required = {}
    for suffix in ("_S3_BUCKET", "_S3_ACCESS_KEY", "_S3_SECRET_KEY"):
        required[suffix] = value(suffix)
        if not required[suffix]:
            raise BlobStoreMisconfigured(f"{base}{suffix} must be set when {base}_S3_ENDPOINT "
                                         "is (the S3 store of the blobs)")
    bucket = checked("_S3_BUCKET", _check_bucket, required["_S3_BUCKET"])
    region = checked("_S3_REGION", _check_region, value("_S3_REGION") or "us-east-1")
    # The prefix is taken as given (not stripped): it is part of every key.
    prefix = checked("_S3_PREFIX", _check_prefix, env.get(f"{base}_S3_PREFIX") or "")
    return S3BlobStore(endpoint, bucket, required["_S3_ACCESS_KEY"],
                       required["_S3_SECRET_KEY"], region=region, prefix=prefix)
