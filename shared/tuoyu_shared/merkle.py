#!/usr/bin/env python3
"""Tamper evidence for a service's event log: a Merkle tree over its stored records, signed
checkpoints, inclusion, consistency and range proofs, and the auditor's verifier.

This one file is also the stand-alone verifier an auditor runs (``tools/tuoyu_verify.py`` is
this file): it needs only Python's standard library and ``cryptography``, and none of Tuoyu.

    python tools/tuoyu_verify.py export BUNDLE.zip --keys KEYS.json
    python tools/tuoyu_verify.py live --gateway URL --service registration --token T \\
        --keys KEYS.json [--checkpoints KEPT.jsonl]

The tree is RFC 9162's (Certificate Transparency v2, §2.1): SHA-256, a leaf hashed as
``H(0x00 || leaf)``, a node as ``H(0x01 || left || right)``, the left subtree of ``n`` leaves
the largest power of two below ``n``. Leaves are the service's stored records in notification
order, each exactly as written (:func:`leaf_bytes`: notification id, aggregate id and version,
topic, and the state bytes, personal data's ciphertext included), so erasing a person (their
key destroyed) changes no hash. A checkpoint is the tree's size and root signed with the
service's Ed25519 key (:func:`checkpoint_body`); each checkpoint must extend the one before
(a consistency proof), so history can grow but never be rewritten unseen.

Exit status of the command line: 0 verified, 1 a check failed (it names the first notification
id or file affected), 2 the input could not be read.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import struct
import sys
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
CHECKPOINT_FORMAT = "tuoyu-checkpoint/1"
MANIFEST_FORMAT = "tuoyu-audit-export/1"


# ---- hashing -------------------------------------------------------------------------------
_FIXED = struct.Struct(">Q16sQI")
_LENGTH = struct.Struct(">I")


def leaf_bytes(notification_id: int, originator_id: Any, originator_version: int,
               topic: str, state: bytes) -> bytes:
    """A stored record, as the tree's leaf: every column, each length-prefixed where its
    length varies, so no two records share the bytes."""
    topic_bytes = (topic or "").encode()
    oid = originator_id.bytes if isinstance(originator_id, uuid.UUID) else uuid.UUID(
        str(originator_id)).bytes
    state = state if isinstance(state, bytes) else bytes(state or b"")
    return b"".join((_FIXED.pack(int(notification_id), oid, int(originator_version),
                                 len(topic_bytes)), topic_bytes,
                     _LENGTH.pack(len(state)), state))


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def record_leaf_hash(record: dict[str, Any]) -> bytes:
    """The leaf hash of a record as exported (``state`` base64) or read (``state`` bytes)."""
    state = record["state"]
    if isinstance(state, str):
        state = base64.b64decode(state)
    return leaf_hash(leaf_bytes(record["notification_id"], record["originator_id"],
                                record["originator_version"], record["topic"], state))


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): the left subtree's size."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The roots of the perfect subtrees a growing tree's leaves make (a binary counter of
    subtrees): append a leaf in O(log n) amortised, the root of the tree so far in O(log n).
    The verifier's one pass over a log checks every checkpoint it meets on the way."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), heights decreasing

    def append(self, leaf: bytes) -> None:
        stack = self._stack
        height, value = 0, leaf
        while stack and stack[-1][0] == height:
            value = node_hash(stack.pop()[1], value)
            height += 1
        stack.append((height, value))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1, for leaf hashes already computed."""
    tree = CompactRange()
    for leaf in leaves:
        tree.append(leaf)
    return tree.root()


# ---- proofs (RFC 9162 §2.1.3, §2.1.4) ------------------------------------------------------
def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf ``index`` in the tree of ``leaves``."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    siblings: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo = lo + k
    for a, b in reversed(siblings):
        path.append(root_of(leaves[a:b]))
    return path


def verify_inclusion(index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes],
                     root: bytes) -> bool:
    if not 0 <= index < tree_size:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): that the tree of the first ``first`` leaves is a prefix of this one."""
    n = len(leaves)
    if not 0 < first <= n:
        raise ValueError(f"no consistency proof from {first} to {n} leaves")
    if first == n:
        return []

    def sub(m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        if m == hi - lo:
            return [] if whole else [root_of(leaves[lo:hi])]
        k = _split(hi - lo)
        if m <= k:
            return sub(m, lo, lo + k, whole) + [root_of(leaves[lo + k:hi])]
        return sub(m - k, lo + k, hi, False) + [root_of(leaves[lo:lo + k])]

    return sub(first, 0, n, True)


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second:
        return False
    path = list(proof)
    if not path:
        return False
    if first & (first - 1) == 0:  # a power of two: the old tree is a subtree of the new
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def range_proof(lo: int, hi: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The hashes that, with the leaves ``lo`` to ``hi - 1``, give the root of the whole
    tree: the maximal subtrees outside the range, left to right (an export of a period
    carries these, not the whole log)."""
    n = len(leaves)
    if not 0 <= lo < hi <= n:
        raise ValueError(f"no range {lo}..{hi} in a tree of {n}")
    out: list[bytes] = []

    def walk(start: int, size: int) -> None:
        if start + size <= lo or start >= hi:
            out.append(root_of(leaves[start:start + size]))
        elif size > 1:
            k = _split(size)
            walk(start, k)
            walk(start + k, size - k)

    walk(0, n)
    return out


def root_from_range(tree_size: int, lo: int, range_leaves: Sequence[bytes],
                    proof: Sequence[bytes]) -> bytes:
    """The root that leaves ``lo …`` and their :func:`range_proof` make (ValueError when
    the proof has too few or too many hashes for the tree's shape)."""
    hi = lo + len(range_leaves)
    if not 0 <= lo < hi <= tree_size:
        raise ValueError(f"no range {lo}..{hi} in a tree of {tree_size}")
    hashes, leaves = iter(proof), iter(range_leaves)

    def walk(start: int, size: int) -> bytes:
        if start + size <= lo or start >= hi:
            value = next(hashes, None)
            if value is None:
                raise ValueError("the range proof is short")
            return value
        if size == 1:
            return next(leaves)
        k = _split(size)
        left = walk(start, k)
        return node_hash(left, walk(start + k, size - k))

    root = walk(0, tree_size)
    if next(hashes, None) is not None:
        raise ValueError("the range proof has hashes left over")
    return root


# ---- checkpoints ---------------------------------------------------------------------------
def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checkpoint_body(origin: str, tree_size: int, root: bytes, last_notification_id: int,
                    issued_at: str, key_id: str) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "origin": origin, "tree_size": tree_size,
            "root_hash": root.hex(), "last_notification_id": last_notification_id,
            "issued_at": issued_at, "key_id": key_id}


def _unsigned(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in checkpoint.items() if k != "signature"}


def sign(private_key: Any, data: bytes) -> str:
    return base64.b64encode(private_key.sign(data)).decode()


def sign_checkpoint(private_key: Any, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "signature": sign(private_key, canonical(body))}


def public_key_of(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def load_keys(data: Any) -> dict[str, Any]:
    """``{"keys": [{"key_id", "public_key" (base64)}, …]}`` (what ``/api/audit/<service>/keys``
    answers and ops hand auditors) → key id → public key."""
    entries = data.get("keys", []) if isinstance(data, dict) else data
    return {entry["key_id"]: public_key_of(base64.b64decode(entry["public_key"]))
            for entry in entries}


def signature_valid(keys: dict[str, Any], key_id: str, data: bytes, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature

    key = keys.get(key_id)
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(signature), data)
        return True
    except (InvalidSignature, ValueError):
        return False


def checkpoint_problem(checkpoint: dict[str, Any], keys: dict[str, Any]) -> str | None:
    """Why a checkpoint cannot be trusted (None: it can)."""
    needed = ("format", "origin", "tree_size", "root_hash", "key_id", "signature")
    missing = [name for name in needed if name not in checkpoint]
    if missing:
        return f"the checkpoint lacks {', '.join(missing)}"
    if checkpoint["format"] != CHECKPOINT_FORMAT:
        return f"unknown checkpoint format {checkpoint['format']!r}"
    if checkpoint["key_id"] not in keys:
        return f"the checkpoint is signed with key {checkpoint['key_id']!r}, not a trusted one"
    if not signature_valid(keys, checkpoint["key_id"], canonical(_unsigned(checkpoint)),
                           checkpoint["signature"]):
        return (f"the signature of the checkpoint of {checkpoint['tree_size']} events "
                "does not verify")
    return None


# ---- a witness -------------------------------------------------------------------------------
class Witness:
    """Keeps the last checkpoint it accepted of each log (one JSON file per origin in
    ``folder``) and accepts a new one only when a trusted key signed it and it extends the
    last (``consistency(first, second)`` gives the proof, from the service). A checkpoint
    that does not (an older or smaller tree, a fork: the same size with another root, a
    rewrite the proof does not bridge) is refused and the last one kept. Every accepted
    checkpoint is appended to ``<origin>.witnessed.jsonl`` and every refusal, with its
    reason, to ``<origin>.refused.jsonl``: the auditor's copies outside the database."""

    def __init__(self, folder: str, keys: dict[str, Any],
                 consistency: Any):
        import os

        self.folder, self.keys, self.consistency = folder, keys, consistency
        os.makedirs(folder, exist_ok=True)

    def _path(self, origin: str, suffix: str) -> str:
        import os

        return os.path.join(self.folder, origin.replace("/", "_") + suffix)

    def last(self, origin: str) -> dict[str, Any] | None:
        try:
            with open(self._path(origin, ".last.json"), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def _append(self, origin: str, suffix: str, data: dict[str, Any]) -> None:
        with open(self._path(origin, suffix), "a", encoding="utf-8") as f:
            f.write(json.dumps(data, sort_keys=True) + "\n")

    def offer(self, checkpoint: dict[str, Any]) -> tuple[bool, str]:
        """``(accepted, why)``."""
        import os

        origin = str(checkpoint.get("origin", "?"))
        reason = self._refusal(checkpoint, origin)
        if reason is not None:
            self._append(origin, ".refused.jsonl", {"checkpoint": checkpoint,
                                                    "reason": reason})
            return False, reason
        last = self.last(origin)
        if last is not None and last["tree_size"] == checkpoint["tree_size"]:
            return True, "already witnessed"
        path = self._path(origin, ".last.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(checkpoint, f, sort_keys=True)
        os.replace(path + ".tmp", path)
        self._append(origin, ".witnessed.jsonl", checkpoint)
        return True, "extends the last checkpoint" if last else "the first checkpoint"

    def _refusal(self, checkpoint: dict[str, Any], origin: str) -> str | None:
        problem = checkpoint_problem(checkpoint, self.keys)
        if problem:
            return problem
        last = self.last(origin)
        if last is None:
            return None
        old, new = int(last["tree_size"]), int(checkpoint["tree_size"])
        if new < old:
            return f"a tree of {new} events after one of {old}: history was cut"
        if new == old:
            return (None if checkpoint["root_hash"] == last["root_hash"] else
                    f"another root for the same {new} events: history was forked")
        try:
            proof = [bytes.fromhex(h) for h in self.consistency(old, new)]
        except Exception as e:  # the service could not be asked: refuse now, not trust
            return f"no consistency proof from {old} to {new}: {e}"
        if not verify_consistency(old, new, bytes.fromhex(last["root_hash"]),
                                  bytes.fromhex(checkpoint["root_hash"]), proof):
            return f"the tree of {new} events does not extend the one of {old}: rewritten"
        return None


# ---- verifying ------------------------------------------------------------------------------
@dataclass
class Report:
    """What a verification found: ``ok``, the checks made, the first failure."""

    ok: bool = True
    checked: list[str] = field(default_factory=list)
    failure: str | None = None
    first_notification_id: int | None = None
    kind: str | None = None  # changed, deleted, inserted, root, signature, file, …
    events: int = 0

    def fail(self, kind: str, message: str, notification_id: int | None = None) -> Report:
        if self.ok:
            self.ok, self.kind, self.failure = False, kind, message
            self.first_notification_id = notification_id
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "checked": self.checked,
                "failure": self.failure, "kind": self.kind,
                "first_notification_id": self.first_notification_id}


def hashed(records: Iterable[dict[str, Any]]) -> Iterator[tuple[int, bytes]]:
    """``(notification id, leaf hash)`` of each record (exported or read as a dict)."""
    for record in records:
        yield int(record["notification_id"]), record_leaf_hash(record)


def compare_leaves(records: Iterable[tuple[int, bytes]],
                   kept: Iterable[tuple[int, bytes]], report: Report,
                   checkpoints: Sequence[dict[str, Any]] = ()) -> CompactRange:
    """Walk the records' leaf hashes (``(notification_id, leaf hash)`` in notification
    order, :func:`hashed`) beside the leaves recorded when they were checkpointed (the same,
    in position order), and check each checkpoint's root on the way. The first difference
    names its notification id and what was done: a record *changed* (or two swapped: the
    first of them), *deleted* (a leaf with no record), *inserted* (a record where no leaf
    is). Records past the leaves are new."""
    tree = CompactRange()
    by_size = {int(cp["tree_size"]): cp for cp in checkpoints}
    kept_iter = iter(kept)
    pending = next(kept_iter, None)
    append = tree.append
    for nid, value in records:
        if pending is not None:
            if pending[0] != nid or pending[1] != value:
                if pending[0] < nid:
                    report.fail("deleted", f"notification {pending[0]} was checkpointed and "
                                "its record is gone", pending[0])
                elif pending[0] > nid:
                    report.fail("inserted", f"notification {nid} is a record where no event "
                                "was checkpointed", nid)
                else:
                    report.fail("changed", f"the record of notification {nid} is not the one "
                                "checkpointed", nid)
                report.events = tree.size
                return tree
            pending = next(kept_iter, None)
        append(value)
        if tree.size in by_size:
            cp = by_size[tree.size]
            if tree.root().hex() != cp["root_hash"]:
                report.fail("root", f"the first {tree.size} records do not make the root of "
                            f"the checkpoint of {tree.size} (up to notification {nid})", nid)
                report.events = tree.size
                return tree
    report.events = tree.size
    if pending is not None:
        report.fail("deleted", f"notification {pending[0]} was checkpointed and its record "
                    "is gone", pending[0])
    return tree


def verify_export(source: str, keys: dict[str, Any]) -> Report:
    """Check an export (a zip or a folder): the manifest's signature, every file's SHA-256
    and line count, the checkpoint's signature, and that the exported records, with the
    bundle's proof, make the checkpoint's root."""
    report = Report()
    files = _bundle(source)
    if "manifest.json" not in files or "manifest.json.sig" not in files:
        return report.fail("file", "the bundle has no manifest.json and manifest.json.sig")
    manifest_bytes = files["manifest.json"]
    manifest = json.loads(manifest_bytes)
    if manifest.get("format") != MANIFEST_FORMAT:
        return report.fail("file", f"unknown manifest format {manifest.get('format')!r}")
    if not signature_valid(keys, manifest.get("key_id", ""), manifest_bytes,
                           files["manifest.json.sig"].decode().strip()):
        return report.fail("signature", "the manifest's signature does not verify with a "
                           "trusted key")
    report.checked.append("manifest signature")
    for name, facts in manifest["files"].items():
        if name not in files:
            return report.fail("file", f"{name} is listed in the manifest and missing")
        if hashlib.sha256(files[name]).hexdigest() != facts["sha256"]:
            return report.fail("file", f"{name} is not the file the manifest lists "
                               "(its SHA-256 differs)")
        if "lines" in facts and _lines(files[name]) != facts["lines"]:
            return report.fail("file", f"{name} has {_lines(files[name])} lines, "
                               f"the manifest says {facts['lines']}")
    report.checked.append(f"{len(manifest['files'])} files' SHA-256")
    checkpoint = manifest["checkpoint"]
    problem = checkpoint_problem(checkpoint, keys)
    if problem:
        return report.fail("signature", problem)
    report.checked.append(f"checkpoint of {checkpoint['tree_size']} events signed by "
                          f"{checkpoint['key_id']}")
    records = [json.loads(line) for line in files["records.jsonl"].splitlines() if line]
    proof = json.loads(files["proof.json"])
    size, root = int(checkpoint["tree_size"]), bytes.fromhex(checkpoint["root_hash"])
    report.events = len(records)
    if proof["kind"] == "range":
        if not records:
            report.checked.append("no records in the period")
            return report
        positions = [r["position"] for r in records]
        lo = positions[0]
        if positions != list(range(lo, lo + len(records))):
            gap = next(p for i, p in enumerate(positions) if p != lo + i)
            return report.fail("deleted", f"the records are not consecutive: position {gap}",
                               records[positions.index(gap)]["notification_id"])
        leaves = [record_leaf_hash(r) for r in records]
        try:
            got = root_from_range(size, lo, leaves, [bytes.fromhex(h) for h in proof["hashes"]])
        except ValueError as e:
            return report.fail("root", f"the range proof does not fit the tree: {e}")
        if got != root:
            return report.fail("root", "the exported records do not make the checkpoint's "
                               "root: one was changed, added or left out",
                               records[0]["notification_id"])
        report.checked.append(f"records {records[0]['notification_id']}.."
                              f"{records[-1]['notification_id']} make the checkpoint's root")
    else:
        paths = {p["position"]: p["path"] for p in proof["proofs"]}
        for record in records:
            path = [bytes.fromhex(h) for h in paths.get(record["position"], [])]
            if not verify_inclusion(record["position"], size, record_leaf_hash(record), path,
                                    root):
                return report.fail("changed", f"notification {record['notification_id']} "
                                   "is not included in the checkpoint as exported",
                                   record["notification_id"])
        report.checked.append(f"{len(records)} inclusion proofs against the checkpoint")
    events = [json.loads(line) for line in files["events.jsonl"].splitlines() if line]
    if [e["notification_id"] for e in events] != [r["notification_id"] for r in records]:
        return report.fail("file", "events.jsonl does not list the exported records")
    for event, record in zip(events, records, strict=True):
        if (event["aggregate_id"], event["version"]) != (
                record["originator_id"], record["originator_version"]):
            return report.fail("file", f"events.jsonl's notification "
                               f"{event['notification_id']} is not its record's event",
                               event["notification_id"])
    report.checked.append("events.jsonl matches the records")
    if "events.csv" in files:
        rows = list(csv.DictReader(io.StringIO(files["events.csv"].decode("utf-8-sig"))))
        if [int(r["notification_id"]) for r in rows] != [e["notification_id"] for e in events]:
            return report.fail("file", "events.csv does not list the exported records")
        report.checked.append("events.csv matches the records")
    return report


def _lines(data: bytes) -> int:
    return data.count(b"\n")


def _bundle(source: str) -> dict[str, bytes]:
    import os

    if os.path.isdir(source):
        return {name: open(os.path.join(source, name), "rb").read()
                for name in os.listdir(source)}
    with zipfile.ZipFile(source) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


# ---- a live service, through the gateway ---------------------------------------------------
class Gateway:
    def __init__(self, url: str, token: str, service: str):
        self.url, self.token, self.service = url.rstrip("/"), token, service

    def get(self, path: str, **query: Any) -> Any:
        query = {k: v for k, v in query.items() if v is not None}
        address = f"{self.url}/api/audit/{self.service}/{path}"
        if query:
            address += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(address, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def records(self, page: int = 1000) -> Iterator[dict[str, Any]]:
        after = 0
        while True:
            rows = self.get("records", after=after, limit=page)["records"]
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1]["notification_id"]


def verify_live(gateway: Gateway, keys: dict[str, Any],
                kept: Sequence[dict[str, Any]] = ()) -> Report:
    """Recompute the tree from the service's records (read through the gateway) and check
    the latest checkpoint, every checkpoint the auditor kept (``kept``) and that the latest
    extends each of them (a consistency proof)."""
    report = Report()
    latest = gateway.get("checkpoints/latest")["checkpoint"]
    if latest is None:
        return report.fail("root", "the service has made no checkpoint yet")
    for cp in [*kept, latest]:
        problem = checkpoint_problem(cp, keys)
        if problem:
            return report.fail("signature", problem)
    report.checked.append(f"{len(kept) + 1} checkpoints' signatures")
    size = int(latest["tree_size"])
    for cp in kept:
        if int(cp["tree_size"]) > size:
            return report.fail("root", f"the service's latest checkpoint ({size}) is older "
                               f"than one kept ({cp['tree_size']}): history was cut")
        proof = gateway.get("proofs/consistency", first=cp["tree_size"], second=size)
        if not verify_consistency(int(cp["tree_size"]), size, bytes.fromhex(cp["root_hash"]),
                                  bytes.fromhex(latest["root_hash"]),
                                  [bytes.fromhex(h) for h in proof["proof"]]):
            return report.fail("root", f"the latest checkpoint does not extend the kept one "
                               f"of {cp['tree_size']} events: history was rewritten")
    if kept:
        report.checked.append(f"the latest checkpoint extends the {len(kept)} kept")
    records = (r for _, r in zip(range(size), gateway.records(), strict=False))
    tree = compare_leaves(hashed(records), (), report, [*kept, latest])
    if report.ok and tree.size < size:
        report.fail("deleted", f"the service has {tree.size} records, its checkpoint "
                    f"{size}")
    if not report.ok and report.kind == "root":
        _locate(gateway, report)
    if report.ok:
        report.checked.append(f"{tree.size} records make the root of the checkpoint")
    return report


def _locate(gateway: Gateway, report: Report) -> None:
    """A root that does not match: name the first record that differs from the leaves the
    service recorded when it checkpointed (a second opinion: the service's own verify)."""
    found = gateway.get("verify")
    if not found.get("ok") and found.get("first_notification_id") is not None:
        report.kind = found["kind"]
        report.first_notification_id = found["first_notification_id"]
        report.failure = f"{report.failure}; the service finds: {found['failure']}"


def _read_kept(path: str | None) -> list[dict[str, Any]]:
    if not path:
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a Tuoyu audit export or a live "
                                     "service's event log against its signed checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="verify an export bundle (zip or folder)")
    export.add_argument("bundle")
    export.add_argument("--keys", required=True, help="the service's public keys (JSON)")
    live = sub.add_parser("live", help="verify a running service through the gateway")
    live.add_argument("--gateway", required=True)
    live.add_argument("--service", required=True)
    live.add_argument("--token", required=True, help="an auditor's token")
    live.add_argument("--keys", required=True, help="the service's public keys (JSON)")
    live.add_argument("--checkpoints", help="checkpoints you kept (JSON lines)")
    args = parser.parse_args(argv)
    try:
        with open(args.keys, encoding="utf-8") as f:
            keys = load_keys(json.load(f))
        if args.command == "export":
            report = verify_export(args.bundle, keys)
        else:
            report = verify_live(Gateway(args.gateway, args.token, args.service), keys,
                                 _read_kept(args.checkpoints))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        print(json.dumps({"ok": False, "failure": f"could not read the input: {e}"}))
        return 2
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
