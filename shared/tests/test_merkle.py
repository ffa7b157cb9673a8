"""The tree, its proofs and its checkpoints (RFC 9162 §2.1), checked against a plain recursive
definition and against each other for every size up to 70 and random ranges."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from tuoyu_shared import merkle


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, word for word."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def leaves_of(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@pytest.mark.parametrize("n", range(0, 70))
def test_root_is_rfc_9162_mth(n):
    assert merkle.root_of(leaves_of(n)) == mth(leaves_of(n))


def test_known_vector():
    # RFC 6962/9162's tree of one empty leaf: H(0x00)
    assert merkle.root_of([merkle.leaf_hash(b"")]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 16, 17, 33])
def test_every_inclusion_proof_verifies_and_no_other(n):
    leaves = leaves_of(n)
    root = merkle.root_of(leaves)
    for i in range(n):
        proof = merkle.inclusion_proof(i, leaves)
        assert merkle.verify_inclusion(i, n, leaves[i], proof, root)
        assert not merkle.verify_inclusion(i, n, merkle.leaf_hash(b"other"), proof, root)
        if n > 1:
            assert not merkle.verify_inclusion((i + 1) % n, n, leaves[i], proof, root)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31])
def test_every_consistency_proof_verifies_and_a_rewrite_does_not(n):
    leaves = leaves_of(n)
    root = merkle.root_of(leaves)
    for m in range(1, n + 1):
        old_root = merkle.root_of(leaves[:m])
        proof = merkle.consistency_proof(m, leaves)
        assert merkle.verify_consistency(m, n, old_root, root, proof)
        rewritten = leaves_of(m)
        rewritten[m // 2] = merkle.leaf_hash(b"rewritten")
        if m < n:
            assert not merkle.verify_consistency(m, n, merkle.root_of(rewritten), root, proof)


@given(st.integers(1, 300).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n - 1)).flatmap(
        lambda t: st.tuples(st.just(t[0]), st.just(t[1]), st.integers(t[1] + 1, t[0])))))
def test_a_range_with_its_proof_makes_the_root(bounds):
    n, lo, hi = bounds
    leaves = leaves_of(n)
    proof = merkle.range_proof(lo, hi, leaves)
    assert merkle.root_from_range(n, lo, leaves[lo:hi], proof) == merkle.root_of(leaves)
    changed = list(leaves[lo:hi])
    changed[-1] = merkle.leaf_hash(b"changed")
    assert merkle.root_from_range(n, lo, changed, proof) != merkle.root_of(leaves)


def test_a_short_range_proof_is_refused():
    leaves = leaves_of(10)
    proof = merkle.range_proof(3, 5, leaves)
    with pytest.raises(ValueError, match="short"):
        merkle.root_from_range(10, 3, leaves[3:5], proof[:-1])
    with pytest.raises(ValueError, match="left over"):
        merkle.root_from_range(10, 3, leaves[3:5], [*proof, proof[0]])


def test_leaf_bytes_tell_every_column_apart():
    oid = uuid.uuid4()
    base = merkle.leaf_bytes(1, oid, 1, "a:B", b"{}")
    assert len({base, merkle.leaf_bytes(2, oid, 1, "a:B", b"{}"),
                merkle.leaf_bytes(1, uuid.uuid4(), 1, "a:B", b"{}"),
                merkle.leaf_bytes(1, oid, 2, "a:B", b"{}"),
                merkle.leaf_bytes(1, oid, 1, "a:B{", b"}"),
                merkle.leaf_bytes(1, oid, 1, "a:B", b"{ }")}) == 6


def test_a_checkpoint_verifies_only_unchanged_and_with_its_key():
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    keys = {"k1": merkle.public_key_of(raw)}
    body = merkle.checkpoint_body("tuoyu/registration", 5, merkle.root_of(leaves_of(5)), 9,
                                  "2026-12-02T00:00:00+00:00", "k1")
    cp = merkle.sign_checkpoint(key, body)
    assert merkle.checkpoint_problem(cp, keys) is None
    assert "does not verify" in merkle.checkpoint_problem({**cp, "tree_size": 6}, keys)
    assert "not a trusted one" in merkle.checkpoint_problem({**cp, "key_id": "k2"}, keys)
    assert "lacks signature" in merkle.checkpoint_problem(body, keys)


def _records(n: int) -> list[dict]:
    oid = str(uuid.uuid4())
    return [{"notification_id": i + 1, "originator_id": oid, "originator_version": i + 1,
             "topic": "t:E", "state": f'{{"n":{i}}}'.encode()} for i in range(n)]


def _kept(records):
    return [(r["notification_id"], merkle.record_leaf_hash(r)) for r in records]


def test_compare_leaves_names_the_first_changed_deleted_or_inserted_record():
    records = _records(8)
    kept = _kept(records)

    report = merkle.Report()
    merkle.compare_leaves(merkle.hashed(records), kept, report)
    assert report.ok and report.events == 8

    changed = [dict(r) for r in records]
    changed[4]["state"] = b'{"n":99}'
    report = merkle.Report()
    merkle.compare_leaves(merkle.hashed(changed), kept, report)
    assert (report.kind, report.first_notification_id) == ("changed", 5)

    report = merkle.Report()
    merkle.compare_leaves(merkle.hashed(records[:3] + records[4:]), kept, report)
    assert (report.kind, report.first_notification_id) == ("deleted", 4)

    gapped = [r for r in records if r["notification_id"] != 6]
    inserted = gapped[:5] + [records[5]] + gapped[5:]
    report = merkle.Report()
    merkle.compare_leaves(merkle.hashed(inserted), _kept(gapped), report)
    assert (report.kind, report.first_notification_id) == ("inserted", 6)

    swapped = [dict(r) for r in records]
    swapped[2]["state"], swapped[6]["state"] = swapped[6]["state"], swapped[2]["state"]
    report = merkle.Report()
    merkle.compare_leaves(merkle.hashed(swapped), kept, report)
    assert (report.kind, report.first_notification_id) == ("changed", 3)

    report = merkle.Report()
    merkle.compare_leaves(merkle.hashed(records[:-1]), kept, report)
    assert (report.kind, report.first_notification_id) == ("deleted", 8)


def test_the_witness_accepts_only_checkpoints_that_extend_the_last(tmp_path):
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    keys = {"k1": merkle.public_key_of(raw)}
    log = leaves_of(12)
    forked = leaves_of(12)
    forked[2] = merkle.leaf_hash(b"rewritten")
    served = {"leaves": log}

    def consistency(first, second):
        return [h.hex() for h in merkle.consistency_proof(first, served["leaves"][:second])]

    def cp(leaves, n):
        return merkle.sign_checkpoint(key, merkle.checkpoint_body(
            "tuoyu/x", n, merkle.root_of(leaves[:n]), n, "2026-12-02T00:00:00+00:00", "k1"))

    witness = merkle.Witness(str(tmp_path), keys, consistency)
    assert witness.offer(cp(log, 4)) == (True, "the first checkpoint")
    assert witness.offer(cp(log, 9))[0]
    assert witness.offer(cp(log, 9)) == (True, "already witnessed")
    accepted, why = witness.offer(cp(log, 5))
    assert not accepted and "cut" in why
    accepted, why = witness.offer(cp(forked, 9))
    assert not accepted and "forked" in why
    served["leaves"] = forked  # the service rewrote event 3 and serves proofs of the rewrite
    accepted, why = witness.offer(cp(forked, 12))
    assert not accepted and "does not extend" in why
    accepted, why = witness.offer({**cp(log, 12), "tree_size": 13})
    assert not accepted and "signature" in why
    assert witness.last("tuoyu/x")["tree_size"] == 9
    assert len((tmp_path / "tuoyu_x.witnessed.jsonl").read_text().splitlines()) == 2
    assert len((tmp_path / "tuoyu_x.refused.jsonl").read_text().splitlines()) == 4
