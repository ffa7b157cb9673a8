"""Who is calling: signed tokens, roles by department and district.

Tokens are JWTs signed with Ed25519 (``EdDSA``), each naming its key in the ``kid`` header, so
keys rotate: every key in :class:`KeyRing` verifies, one signs. The gateway verifies a token
on every request and forwards it with the RPC call; the service verifies it again and takes
the actor, role, department and district that its events record from the token alone
(:class:`~tuoyu_shared.nameko_support.CommandContextProvider`), never from a header.

Claims: ``sub`` (the person or system), ``role`` (:data:`ROLES`), ``dept`` (the department the
role belongs to), ``district`` (a district name, or ``*`` for the whole city), ``inst`` (an
institution operator's own institution id), ``jti`` (for revocation), ``iat``, ``exp``.

Configuration:

- ``TUOYU_AUTH_PUBLIC_KEYS``: JSON ``{kid: PEM}`` of the keys that verify (or ``@path`` to a
  file of that JSON);
- ``TUOYU_AUTH_SIGNING_KEY`` / ``TUOYU_AUTH_SIGNING_KID``: the private key (PEM, or ``@path``)
  that signs, for the token command line (``python -m tuoyu_gateway token issue``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ALGORITHM = "EdDSA"
ISSUER = "tuoyu"
#: Every district: a city-level officer, an auditor, a subscribing system.
ALL_DISTRICTS = "*"

#: Role → (department, what the role is for). Departments are the seeds' 卫生健康, 市场监管,
#: 消防救援, 教育, 财政 and the credit office; leaders, auditors, operators and subscribers
#: belong to none of them.
ROLES: dict[str, tuple[str, str]] = {
    "health_officer": ("health", "卫生健康部门: files and supervises institutions"),
    "market_officer": ("market_regulation", "市场监管部门: registration, food safety"),
    "fire_officer": ("fire_rescue", "消防救援部门: fire safety"),
    "education_officer": ("education", "教育部门"),
    "finance_officer": ("finance", "财政部门: subsidy payments"),
    "credit_officer": ("credit", "信用管理: practitioner bans, credit lists"),
    "district_leader": ("leadership", "区领导: reads the dashboards, changes nothing"),
    "auditor": ("audit", "审计: reads everything, changes nothing; every read recorded"),
    "operator": ("institution", "托育机构举办者: only their own institution"),
    "subscriber": ("system", "订阅系统: reads the event contract only"),
}
OFFICER_ROLES = ("health_officer", "market_officer", "fire_officer", "education_officer",
                 "finance_officer", "credit_officer")


class TokenInvalid(Exception):
    """The request's token is missing, malformed, unsigned by a known key, expired or
    revoked (HTTP 401); ``reason`` says which."""

    def __init__(self, reason: str, code: str = "token_invalid"):
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    subject: str
    role: str
    department: str
    district: str
    institution_id: str | None = None
    token_id: str | None = None
    expires_at: int | None = None

    @property
    def city_wide(self) -> bool:
        return self.district == ALL_DISTRICTS

    def may_see_district(self, district: str | None) -> bool:
        return self.city_wide or (district is not None and district == self.district)


def _read(value: str) -> str:
    if value.startswith("@"):
        return Path(value[1:]).read_text(encoding="utf-8")
    return value


@dataclass
class KeyRing:
    """The keys that verify (by ``kid``) and, where this process issues tokens, the one that
    signs."""

    public: dict[str, Any] = field(default_factory=dict)
    signing_kid: str | None = None
    signing_key: Any = None
    #: Tokens whose signature verified: ``{token: (kid, the key that verified it,
    #: principal)}``.
    #: A client sends the same token with every request, and its signature check was the
    #: largest single cost of the gateway's request; expiry, revocation and the key being
    #: still trusted are checked on every use all the same.
    _verified: dict[str, tuple[str, Any, Principal]] = field(default_factory=dict, repr=False,
                                                         compare=False)
    VERIFIED_KEPT = 4096

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> KeyRing:
        env = os.environ if env is None else env
        ring = cls()
        raw = env.get("TUOYU_AUTH_PUBLIC_KEYS")
        if raw:
            for kid, pem in json.loads(_read(raw)).items():
                ring.public[kid] = serialization.load_pem_public_key(pem.encode())
        private = env.get("TUOYU_AUTH_SIGNING_KEY")
        if private:
            ring.signing_key = serialization.load_pem_private_key(_read(private).encode(),
                                                                  password=None)
            ring.signing_kid = env.get("TUOYU_AUTH_SIGNING_KID") or "k1"
            ring.public.setdefault(ring.signing_kid, ring.signing_key.public_key())
        return ring

    def issue(self, subject: str, role: str, district: str, *, ttl_seconds: int = 8 * 3600,
              institution_id: str | None = None, department: str | None = None,
              now: float | None = None) -> str:
        if self.signing_key is None:
            raise RuntimeError("no signing key configured (TUOYU_AUTH_SIGNING_KEY)")
        if role not in ROLES:
            raise ValueError(f"no role {role!r}; roles: {', '.join(ROLES)}")
        if role == "operator" and not institution_id:
            raise ValueError("an operator's token names their institution")
        issued = int(now if now is not None else time.time())
        claims = {"iss": ISSUER, "sub": subject, "role": role,
                  "dept": department or ROLES[role][0], "district": district,
                  "jti": str(uuid.uuid4()), "iat": issued, "exp": issued + ttl_seconds}
        if institution_id:
            claims["inst"] = institution_id
        return jwt.encode(claims, self.signing_key, algorithm=ALGORITHM,
                          headers={"kid": self.signing_kid})

    def verify(self, token: str, revoked: frozenset[str] | set[str] = frozenset()) -> Principal:
        kept = self._verified.get(token)
        if kept is not None:
            kid, key, principal = kept
            if self.public.get(kid) is key:
                if principal.expires_at <= time.time():
                    raise TokenInvalid("the token has expired", "token_expired")
                if principal.token_id in revoked:
                    raise TokenInvalid("the token has been revoked", "token_revoked")
                return principal
        kid, principal = self._verify_signed(token, revoked)
        if len(self._verified) >= self.VERIFIED_KEPT:
            self._verified.clear()
        self._verified[token] = (kid, self.public[kid], principal)
        return principal

    def _verify_signed(self, token: str, revoked: frozenset[str] | set[str]
                       ) -> tuple[str, Principal]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenInvalid(f"not a signed token: {e}", "token_malformed") from None
        key = self.public.get(header.get("kid") or "")
        if key is None:
            raise TokenInvalid(f"signed with an unknown key {header.get('kid')!r}",
                               "token_unknown_key")
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["sub", "exp", "iat", "jti"]})
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("the token has expired", "token_expired") from None
        except jwt.PyJWTError as e:
            raise TokenInvalid(f"the token does not verify: {e}") from None
        if claims["jti"] in revoked:
            raise TokenInvalid("the token has been revoked", "token_revoked")
        role = claims.get("role")
        if role not in ROLES:
            raise TokenInvalid(f"the token names no known role ({role!r})", "token_bad_role")
        district = claims.get("district")
        if not isinstance(district, str) or not district:
            raise TokenInvalid("the token names no district", "token_bad_district")
        principal = Principal(subject=str(claims["sub"]), role=role,
                              department=str(claims.get("dept") or ROLES[role][0]),
                              district=district, institution_id=claims.get("inst"),
                              token_id=claims["jti"], expires_at=claims["exp"])
        return header.get("kid") or "", principal


def generate_key_pem() -> tuple[str, str]:
    """A new Ed25519 key pair: (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo
                                           ).decode()
    return private, public
