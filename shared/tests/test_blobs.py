"""The content-addressed blob store (tuoyu_shared.blobs): the local directory, the S3 store
against the S3 simulator (tuoyu_shared.simulators.s3), and the configuration.

What matters most: a blob is only ever stored under the SHA-256 of its bytes, a refused put
stores nothing, and damaged bytes are never served. No database is needed.
"""

from __future__ import annotations

import hashlib
import http.client
import multiprocessing
import pickle
import threading
import urllib.parse
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tuoyu_shared.blobs import (
    EMPTY_SHA256,
    MAX_BLOB_BYTES,
    BlobCorrupted,
    BlobHashMismatch,
    BlobNotFound,
    BlobStore,
    BlobStoreMisconfigured,
    BlobStoreUnauthorized,
    BlobStoreUnavailable,
    LocalBlobStore,
    S3BlobStore,
    _uri_encode,
    blob_store_from_env,
    sigv4_authorization,
)
from tuoyu_shared.config import ConfigurationError
from tuoyu_shared.errors import NotFound, Unavailable
from tuoyu_shared.simulators.s3 import S3Error, start_simulator, verify_signature
from tuoyu_shared.validation import ValidationFailed

PHOTO = b"\xff\xd8\xff\xe0 a photo of the kitchen's fire extinguisher \xff\xd9"
PHOTO_SHA = hashlib.sha256(PHOTO).hexdigest()
PDF = b"%PDF-1.7\n a rectification report \n%%EOF\n"
PDF_SHA = hashlib.sha256(PDF).hexdigest()
ABSENT_SHA = hashlib.sha256(b"never stored").hexdigest()

ACCESS, SECRET, BUCKET = "tuoyu-access", "tuoyu-secret-key", "evidence"


def fields(error: ValidationFailed) -> dict[str, str]:
    return {e.field: e.code for e in error.errors}


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def local(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def sim():
    with start_simulator(ACCESS, SECRET, buckets=[BUCKET]) as simulator:
        yield simulator


@pytest.fixture
def s3(sim) -> S3BlobStore:
    return S3BlobStore(sim.url, BUCKET, ACCESS, SECRET, prefix="visits/")


# ---- the checks shared by every store -----------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    return request.getfixturevalue("s3")


def test_round_trip(store: BlobStore):
    assert store.put(PHOTO) == PHOTO_SHA
    assert store.put(PDF, expected_sha256=PDF_SHA) == PDF_SHA
    assert store.get(PHOTO_SHA) == PHOTO
    assert store.get(PDF_SHA) == PDF
    assert store.exists(PHOTO_SHA) and not store.exists(ABSENT_SHA)
    assert store.size(PDF_SHA) == len(PDF)
    assert store.put(bytearray(PHOTO)) == store.put(memoryview(PHOTO)) == PHOTO_SHA


def test_hash_mismatch_is_refused_and_nothing_stored(store: BlobStore):
    with pytest.raises(BlobHashMismatch) as refused:
        store.put(PHOTO, expected_sha256=PDF_SHA)
    error = refused.value
    assert isinstance(error, ValidationFailed) and error.http_status == 400
    assert fields(error) == {"sha256": "hash_mismatch"}
    assert PHOTO_SHA in error.errors[0].reason  # says what the content's hash is
    assert error.to_dict() == {"error": "validation_failed", "errors": [
        {"field": "sha256", "code": "hash_mismatch", "reason": error.errors[0].reason}]}
    assert (error.expected, error.actual) == (PDF_SHA, PHOTO_SHA)
    assert not store.exists(PHOTO_SHA) and not store.exists(PDF_SHA)
    copy = pickle.loads(pickle.dumps(error))  # errors cross worker processes
    assert isinstance(copy, BlobHashMismatch) and fields(copy) == {"sha256": "hash_mismatch"}


@pytest.mark.parametrize("bad", ["", "abc", PHOTO_SHA.upper(), PHOTO_SHA + "0", PHOTO_SHA[:-1]
                                 + "g", " " + PHOTO_SHA[1:], "../" + PHOTO_SHA[3:], None, 42])
def test_malformed_hash(store: BlobStore, bad):
    for call in (store.get, store.exists, store.size):
        with pytest.raises(ValidationFailed) as refused:
            call(bad)
        assert fields(refused.value) == {"sha256": "invalid_format"}
        assert refused.value.http_status == 400
    if bad is None:
        return  # put's expected_sha256=None is "not stated"
    with pytest.raises(ValidationFailed) as refused:
        store.put(PHOTO, expected_sha256=bad)
    assert fields(refused.value) == {"sha256": "invalid_format"}
    assert not store.exists(PHOTO_SHA)


def test_missing_blob(store: BlobStore):
    with pytest.raises(BlobNotFound) as missing:
        store.get(ABSENT_SHA)
    assert isinstance(missing.value, NotFound) and missing.value.http_status == 404
    assert missing.value.to_dict()["details"] == {"sha256": ABSENT_SHA}
    with pytest.raises(BlobNotFound):
        store.size(ABSENT_SHA)
    assert store.exists(ABSENT_SHA) is False


def test_size_limit_and_empty_content(store: BlobStore):
    with pytest.raises(ValidationFailed) as refused:
        store.put(b"")
    assert fields(refused.value) == {"content": "required"}
    with pytest.raises(ValidationFailed) as refused:
        store.put("text, not bytes")  # type: ignore[arg-type]
    assert fields(refused.value) == {"content": "invalid_type"}
    too_large = b"\0" * (MAX_BLOB_BYTES + 1)
    with pytest.raises(ValidationFailed) as refused:
        store.put(too_large, expected_sha256="nope")  # every problem named at once
    assert fields(refused.value) == {"content": "too_long", "sha256": "invalid_format"}
    assert not store.exists(hashlib.sha256(too_large).hexdigest())
    largest = b"\1" * MAX_BLOB_BYTES
    sha = store.put(largest)
    assert store.size(sha) == MAX_BLOB_BYTES and store.get(sha) == largest


# ---- the local directory -----------------------------------------------------------------


def test_local_layout_and_idempotent_put(local: LocalBlobStore):
    sha = local.put(PHOTO, expected_sha256=PHOTO_SHA)
    path = local.root / sha[:2] / sha[2:4] / sha
    assert local.path_of(sha) == path and path.read_bytes() == PHOTO
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.stat()
    assert local.put(PHOTO) == sha
    assert local.put(PHOTO, expected_sha256=sha) == sha
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # untouched
    assert stored_files(local.root) == [path]  # no temporary file left


def test_local_corrupted_file_is_detected_on_read_and_repaired_by_putting_again(
        local: LocalBlobStore):
    sha = local.put(PDF)
    path = local.path_of(sha)
    damaged_copy = PDF.replace(b"rectification", b"falsified....")
    assert len(damaged_copy) == len(PDF)  # the same size: only the hash tells
    path.write_bytes(damaged_copy)
    with pytest.raises(BlobCorrupted) as damaged:
        local.get(sha)
    assert isinstance(damaged.value, Unavailable) and damaged.value.http_status == 503
    assert damaged.value.code == "blob_corrupted" and sha in str(damaged.value)
    assert local.exists(sha) and local.size(sha) == len(PDF)  # neither reads the content
    assert local.put(PDF) == sha and local.get(sha) == PDF  # put again: mended
    path.write_bytes(damaged_copy)
    path.write_bytes(PDF[:10])  # truncated
    with pytest.raises(BlobCorrupted):
        local.get(sha)
    assert local.put(PDF) == sha  # the original put again mends it
    assert local.get(sha) == PDF
    assert stored_files(local.root) == [path]


def test_local_concurrent_puts_of_the_same_content_from_threads(local: LocalBlobStore):
    content = PHOTO * 10_000
    barrier = threading.Barrier(8)

    def put() -> str:
        barrier.wait()
        return local.put(content)

    with ThreadPoolExecutor(8) as pool:
        hashes = list(pool.map(lambda _: put(), range(8)))
    sha = hashlib.sha256(content).hexdigest()
    assert hashes == [sha] * 8
    assert stored_files(local.root) == [local.path_of(sha)]
    assert local.get(sha) == content


def test_local_concurrent_puts_of_the_same_content_from_processes(local: LocalBlobStore):
    content = PDF * 20_000
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        hashes = list(pool.map(local.put, [content] * 4))
    sha = hashlib.sha256(content).hexdigest()
    assert hashes == [sha] * 4
    assert stored_files(local.root) == [local.path_of(sha)]
    assert local.get(sha) == content


def test_local_disk_errors_are_an_outage(tmp_path: Path):
    (tmp_path / "a-file").write_bytes(b"not a directory")
    store = LocalBlobStore(tmp_path / "a-file")
    with pytest.raises(BlobStoreUnavailable) as outage:
        store.put(PHOTO)
    assert outage.value.http_status == 503 and "a-file" in str(outage.value)


# ---- the S3 store ------------------------------------------------------------------------


def test_sigv4_reproduces_the_aws_examples():
    """The signer against the GET and PUT examples of the S3 SigV4 documentation."""
    common = dict(access_key="AKIAIOSFODNN7EXAMPLE", region="us-east-1",
                  secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                  amz_date="20130524T000000Z")
    get = sigv4_authorization(
        "GET", "/test.txt", "",
        {"Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9",
         "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": "20130524T000000Z"},
        EMPTY_SHA256, **common)
    assert get == ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                   "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                   "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    payload = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    assert _uri_encode("/test$file.text") == "/test%24file.text"
    put = sigv4_authorization(
        "PUT", _uri_encode("/test$file.text"), "",
        {"Host": "examplebucket.s3.amazonaws.com", "Date": "Fri, 24 May 2013 00:00:00 GMT",
         "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
         "x-amz-content-sha256": payload}, payload, **common)
    assert put.endswith("SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                        "x-amz-storage-class, Signature=98ad721746da40c64f1a55b78f14c238d841"
                        "ea1380cd77a1b5971af0ece108bd")


def test_the_simulator_verifies_the_aws_example():
    """The simulator's own verifier (not the client's signer) accepts AWS's signed PUT, and
    refuses it once anything signed changes."""
    payload = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    headers = {
        "Host": "examplebucket.s3.amazonaws.com", "Date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": payload,
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
                         "s3/aws4_request,SignedHeaders=date;host;x-amz-content-sha256;"
                         "x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f"
                         "14c238d841ea1380cd77a1b5971af0ece108bd"}
    keys = dict(access_key="AKIAIOSFODNN7EXAMPLE", region="us-east-1",
                secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                now=datetime(2013, 5, 24, 0, 5, tzinfo=UTC))
    verify_signature("PUT", "/test%24file.text", headers, **keys)
    verify_signature("PUT", "/test$file.text", headers, **keys)  # sent unencoded: the same
    for changed, code in [({"x-amz-storage-class": "STANDARD"}, "SignatureDoesNotMatch"),
                          ({"x-amz-content-sha256": EMPTY_SHA256}, "SignatureDoesNotMatch")]:
        with pytest.raises(S3Error) as refused:
            verify_signature("PUT", "/test%24file.text", {**headers, **changed}, **keys)
        assert refused.value.code == code
    with pytest.raises(S3Error) as refused:
        verify_signature("PUT", "/other.text", headers, **keys)
    assert refused.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as refused:
        verify_signature("PUT", "/test%24file.text", headers,
                         **{**keys, "secret_key": "another"})
    assert refused.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as refused:
        verify_signature("PUT", "/test%24file.text", headers,
                         **{**keys, "now": datetime(2013, 5, 24, 1, tzinfo=UTC)})
    assert refused.value.code == "RequestTimeTooSkewed"


def test_s3_round_trip_keys_and_requests(sim, s3: S3BlobStore):
    assert s3.put(PHOTO, expected_sha256=PHOTO_SHA) == PHOTO_SHA
    assert sim.keys(BUCKET) == [f"visits/{PHOTO_SHA}"]
    assert sim.object(BUCKET, s3.key_of(PHOTO_SHA)) == PHOTO
    assert s3.get(PHOTO_SHA) == PHOTO
    assert s3.exists(PHOTO_SHA) and s3.size(PHOTO_SHA) == len(PHOTO)
    path = f"/{BUCKET}/visits/{PHOTO_SHA}"
    assert sim.requests == [("HEAD", path, 404), ("PUT", path, 200), ("GET", path, 200),
                            ("HEAD", path, 200), ("HEAD", path, 200)]


def test_s3_putting_stored_content_again_uploads_nothing(sim, s3: S3BlobStore):
    s3.put(PDF)
    count = len(sim.requests)
    assert s3.put(PDF, expected_sha256=PDF_SHA) == PDF_SHA
    assert [r[0] for r in sim.requests[count:]] == ["HEAD"]
    assert sim.keys(BUCKET) == [f"visits/{PDF_SHA}"]


def test_s3_missing_blob_and_missing_bucket(sim):
    store = S3BlobStore(sim.url, BUCKET, ACCESS, SECRET)
    with pytest.raises(BlobNotFound):
        store.get(ABSENT_SHA)
    assert store.exists(ABSENT_SHA) is False
    elsewhere = S3BlobStore(sim.url, "no-such-bucket", ACCESS, SECRET)
    with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
        elsewhere.get(ABSENT_SHA)  # a configuration problem, not a missing blob
    with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
        elsewhere.put(PHOTO)


def test_s3_corrupted_object_is_detected_on_read(sim, s3: S3BlobStore):
    s3.put(PHOTO)
    sim.put_object(BUCKET, s3.key_of(PHOTO_SHA), PHOTO[:-1] + b"\0")
    with pytest.raises(BlobCorrupted) as damaged:
        s3.get(PHOTO_SHA)
    assert PHOTO_SHA in str(damaged.value) and sim.url in str(damaged.value)


@pytest.mark.parametrize("access, secret, code", [
    (ACCESS, "a-wrong-secret", "SignatureDoesNotMatch"),
    ("someone-else", SECRET, "InvalidAccessKeyId"),
])
def test_s3_wrong_credential_is_a_clear_error(sim, access, secret, code):
    store = S3BlobStore(sim.url, BUCKET, access, secret)
    with pytest.raises(BlobStoreUnauthorized) as refused:
        store.get(PHOTO_SHA)
    message = str(refused.value)
    assert code in message and "secret key" in message and secret not in message
    assert refused.value.code == "blob_store_unauthorized" and refused.value.http_status == 503
    with pytest.raises(BlobStoreUnauthorized, match="403"):
        store.exists(PHOTO_SHA)  # HEAD: no body to name the code, the status is named
    with pytest.raises(BlobStoreUnauthorized):
        store.put(PHOTO)
    assert sim.keys(BUCKET) == []


def test_s3_another_region_is_refused(sim):
    store = S3BlobStore(sim.url, BUCKET, ACCESS, SECRET, region="cn-north-1")
    with pytest.raises(BlobStoreUnavailable, match="AuthorizationHeaderMalformed"):
        store.get(PHOTO_SHA)


def test_the_simulator_refuses_unsigned_and_tampered_requests(sim):
    host = urllib.parse.urlsplit(sim.url).netloc
    path = f"/{BUCKET}/{PHOTO_SHA}"

    def send(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(host, timeout=5)
        try:
            connection.request("PUT", path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    assert send({}, PHOTO)[0] == 403  # no signature at all

    def signed(payload: str) -> dict[str, str]:
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        headers["authorization"] = sigv4_authorization(
            "PUT", path, "", headers, payload, access_key=ACCESS, secret_key=SECRET,
            region="us-east-1", amz_date=amz_date)
        return headers

    status, body = send(signed("UNSIGNED-PAYLOAD"), PHOTO)
    assert (status, b"<Code>InvalidRequest</Code>" in body) == (400, True)
    status, body = send(signed(PHOTO_SHA), PHOTO[:-1] + b"!")  # the body changed on the way
    assert (status, b"<Code>XAmzContentSHA256Mismatch</Code>" in body) == (400, True)
    assert sim.keys(BUCKET) == []
    assert send(signed(PHOTO_SHA), PHOTO)[0] == 200
    assert sim.object(BUCKET, PHOTO_SHA) == PHOTO


def test_s3_prefix_and_endpoint_path_are_encoded_and_signed(sim):
    sim.create_bucket("tuoyu.evidence-2026")
    store = S3BlobStore(sim.url + "/", "tuoyu.evidence-2026", ACCESS, SECRET,
                        prefix="inspection/(2026)!/")
    assert store.put(PDF) == PDF_SHA and store.get(PDF_SHA) == PDF
    assert sim.keys("tuoyu.evidence-2026") == [f"inspection/(2026)!/{PDF_SHA}"]
    assert store.endpoint_url == sim.url


def test_s3_store_down_or_away_is_an_outage(sim, s3: S3BlobStore):
    sim.set_down(True)
    with pytest.raises(BlobStoreUnavailable, match="503 ServiceUnavailable"):
        s3.get(PHOTO_SHA)
    with pytest.raises(BlobStoreUnavailable, match="503"):
        s3.put(PHOTO)
    sim.set_down(False)
    sim.stop()
    with pytest.raises(BlobStoreUnavailable, match="did not answer") as away:
        s3.exists(PHOTO_SHA)
    assert not isinstance(away.value, BlobStoreUnauthorized)


def test_s3_repr_holds_no_secret(sim, s3: S3BlobStore):
    assert SECRET not in repr(s3) and ACCESS not in repr(s3)
    assert repr(s3) == (f"S3BlobStore({sim.url!r}, bucket='evidence', prefix='visits/', "
                        "region='us-east-1')")


@pytest.mark.parametrize("kwargs, named", [
    ({"endpoint_url": "ftp://minio:9000"}, "endpoint_url"),
    ({"endpoint_url": "http://user:pw@minio:9000"}, "endpoint_url"),
    ({"endpoint_url": "http://minio:port"}, "endpoint_url"),
    ({"bucket": "Evidence"}, "bucket"),
    ({"bucket": "ev"}, "bucket"),
    ({"prefix": "/evidence/"}, "prefix"),
    ({"prefix": "a//b/"}, "prefix"),
    ({"prefix": "../"}, "prefix"),
    ({"prefix": "证据/"}, "prefix"),
    ({"region": "US East"}, "region"),
    ({"secret_key": ""}, "secret_key"),
])
def test_s3_settings_are_checked(kwargs, named):
    settings = {"endpoint_url": "http://minio:9000", "bucket": "evidence",
                "access_key": ACCESS, "secret_key": SECRET, **kwargs}
    with pytest.raises(ValueError, match=named):
        S3BlobStore(**settings)


# ---- the configuration -------------------------------------------------------------------


def test_env_local_default_is_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = blob_store_from_env("inspection", {})
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / ".local" / "blobs" / "inspection"
    assert store.get(store.put(PHOTO)) == PHOTO


def test_env_local_directory(tmp_path, monkeypatch):
    store = blob_store_from_env("inspection", {"TUOYU_INSPECTION_BLOB_DIR": str(tmp_path)})
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path
    monkeypatch.setenv("TUOYU_CREDIT_BLOB_DIR", str(tmp_path / "credit"))
    from_os = blob_store_from_env("credit")  # os.environ when no mapping is given
    assert isinstance(from_os, LocalBlobStore) and from_os.root == tmp_path / "credit"
    assert blob_store_from_env("inspection", {"TUOYU_CREDIT_BLOB_DIR": "/x"}).root != Path("/x")


def test_env_s3(sim):
    env = {"TUOYU_INSPECTION_BLOB_DIR": "/ignored when S3 is configured",
           "TUOYU_INSPECTION_BLOB_S3_ENDPOINT": sim.url,
           "TUOYU_INSPECTION_BLOB_S3_BUCKET": BUCKET,
           "TUOYU_INSPECTION_BLOB_S3_ACCESS_KEY": ACCESS,
           "TUOYU_INSPECTION_BLOB_S3_SECRET_KEY": SECRET,
           "TUOYU_INSPECTION_BLOB_S3_PREFIX": "evidence/"}
    store = blob_store_from_env("inspection", env)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.region) == (BUCKET, "evidence/", "us-east-1")
    assert store.get(store.put(PHOTO)) == PHOTO
    assert sim.keys(BUCKET) == [f"evidence/{PHOTO_SHA}"]
    other = blob_store_from_env("inspection", {**env, "TUOYU_INSPECTION_BLOB_S3_REGION":
                                               "cn-north-1"})
    assert isinstance(other, S3BlobStore) and other.region == "cn-north-1"


@pytest.mark.parametrize("drop", ["TUOYU_INSPECTION_BLOB_S3_BUCKET",
                                  "TUOYU_INSPECTION_BLOB_S3_ACCESS_KEY",
                                  "TUOYU_INSPECTION_BLOB_S3_SECRET_KEY"])
def test_env_s3_missing_setting_is_named(drop):
    env = {"TUOYU_INSPECTION_BLOB_S3_ENDPOINT": "http://minio:9000",
           "TUOYU_INSPECTION_BLOB_S3_BUCKET": BUCKET,
           "TUOYU_INSPECTION_BLOB_S3_ACCESS_KEY": ACCESS,
           "TUOYU_INSPECTION_BLOB_S3_SECRET_KEY": SECRET}
    for missing in ({k: v for k, v in env.items() if k != drop}, {**env, drop: "  "}):
        with pytest.raises(ValueError, match=drop) as refused:
            blob_store_from_env("inspection", missing)
        assert isinstance(refused.value, BlobStoreMisconfigured)
        assert isinstance(refused.value, ConfigurationError)


@pytest.mark.parametrize("name, value", [
    ("TUOYU_INSPECTION_BLOB_S3_ENDPOINT", "minio:9000"),
    ("TUOYU_INSPECTION_BLOB_S3_BUCKET", "Not_A_Bucket"),
    ("TUOYU_INSPECTION_BLOB_S3_REGION", "us east"),
    ("TUOYU_INSPECTION_BLOB_S3_PREFIX", "/evidence"),
])
def test_env_s3_invalid_setting_is_named(name, value):
    env = {"TUOYU_INSPECTION_BLOB_S3_ENDPOINT": "http://minio:9000",
           "TUOYU_INSPECTION_BLOB_S3_BUCKET": BUCKET,
           "TUOYU_INSPECTION_BLOB_S3_ACCESS_KEY": ACCESS,
           "TUOYU_INSPECTION_BLOB_S3_SECRET_KEY": SECRET, name: value}
    with pytest.raises(BlobStoreMisconfigured, match=name):
        blob_store_from_env("inspection", env)
