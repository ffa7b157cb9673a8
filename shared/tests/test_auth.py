"""KeyRing.verify keeps the tokens it verified (a client sends the same token with every
request; the signature check was the gateway's largest single cost), and still refuses a kept
token once it expires, is revoked or its key is no longer trusted."""

from __future__ import annotations

import pytest

from tuoyu_shared.auth import KeyRing, TokenInvalid, generate_key_pem


def _ring() -> KeyRing:
    private, _ = generate_key_pem()
    return KeyRing.from_env({"TUOYU_AUTH_SIGNING_KEY": private, "TUOYU_AUTH_SIGNING_KID": "k1"})


def test_a_kept_token_is_not_checked_again_and_gives_the_same_principal(monkeypatch):
    ring = _ring()
    token = ring.issue("officer-1", "health_officer", "310104")
    first = ring.verify(token)
    import jwt

    def refuse(*args, **kwargs):
        raise AssertionError("the signature was checked again")

    monkeypatch.setattr(jwt, "decode", refuse)
    assert ring.verify(token) == first
    assert first.subject == "officer-1" and first.district == "310104"


def test_a_kept_token_is_refused_once_revoked_or_expired(monkeypatch):
    ring = _ring()
    token = ring.issue("officer-1", "health_officer", "310104", ttl_seconds=60)
    principal = ring.verify(token)
    with pytest.raises(TokenInvalid) as revoked:
        ring.verify(token, revoked={principal.token_id})
    assert revoked.value.code == "token_revoked"
    import time

    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(TokenInvalid) as expired:
        ring.verify(token)
    assert expired.value.code == "token_expired"


def test_a_kept_token_is_refused_once_its_key_is_no_longer_trusted():
    ring = _ring()
    token = ring.issue("officer-1", "health_officer", "310104")
    ring.verify(token)
    del ring.public["k1"]
    with pytest.raises(TokenInvalid) as unknown:
        ring.verify(token)
    assert unknown.value.code == "token_unknown_key"
    _, other_public = generate_key_pem()
    from cryptography.hazmat.primitives import serialization

    ring.public["k1"] = serialization.load_pem_public_key(other_public.encode())
    with pytest.raises(TokenInvalid):  # the same kid, another key: verified again, refused
        ring.verify(token)


def test_a_tampered_token_is_refused_though_its_original_was_kept():
    ring = _ring()
    token = ring.issue("officer-1", "health_officer", "310104")
    ring.verify(token)
    head, body, signature = token.split(".")
    flipped = "B" if signature[10] == "A" else "A"
    tampered = f"{head}.{body}.{signature[:10]}{flipped}{signature[11:]}"
    with pytest.raises(TokenInvalid):
        ring.verify(tampered)
