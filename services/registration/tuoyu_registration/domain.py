"""The Institution aggregate and its rules. Plain Python: no I/O, no nameko.

Personal data arrives already sealed (see :mod:`tuoyu_shared.personal_data`); the domain
only carries it.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate, event

from tuoyu_shared.validation import FieldError, credit_code_nature

_INSTITUTION_NAMESPACE = uuid.UUID("0b3c9a52-7f0e-4e7e-9d65-2a8f1c3e4b71")


class DomainRuleViolated(Exception):
    """A command that the current state or a rule of the regulations does not allow."""

    def __init__(self, message: str, state: str | None = None):
        super().__init__(message)
        self.state = state


class ProviderKind(StrEnum):
    """Kinds of childcare provider."""

    CHILDCARE_INSTITUTION = "childcare_institution"  # 托育机构
    KINDERGARTEN_CLASS = "kindergarten_childcare_class"  # 幼儿园托班 (托幼一体)
    COMMUNITY_POINT = "community_childcare_point"  # 社区托育点
    FAMILY_POINT = "family_childcare_point"  # 家庭托育点
    EMPLOYER_RUN = "employer_run"  # 用人单位办托


class Nature(StrEnum):
    """Legal nature of the provider, which its credit code must agree with."""

    FOR_PROFIT = "for_profit"  # 营利性: registered with market regulation (code starts 9)
    NON_PROFIT = "non_profit"  # 非营利性: civil affairs (5) or staffing office (1)
    PUBLIC_INSTITUTION = "public_institution"  # 事业单位: staffing office (1)


_CODE_ORIGINS_BY_NATURE = {
    Nature.FOR_PROFIT: {"enterprise"},
    Nature.NON_PROFIT: {"social_organisation", "public_institution"},
    Nature.PUBLIC_INSTITUTION: {"public_institution"},
}

FAMILY_POINT_MAX_CHILDREN = 5


def institution_id_for(credit_code: str) -> uuid.UUID:
    """One institution per unified social credit code: the id is derived from it, so a second
    filing of the same code collides with the first in the event store."""
    return uuid.uuid5(_INSTITUTION_NAMESPACE, credit_code)


def check_credit_code_matches_nature(credit_code: str, nature: Nature) -> None:
    origin = credit_code_nature(credit_code)
    if origin not in _CODE_ORIGINS_BY_NATURE[nature]:
        raise FieldError(
            "credit_code",
            f"a {nature.value} provider cannot hold a code issued to a {origin} "
            f"(first character {credit_code[0]!r})",
            "inconsistent_with_nature",
        )


def check_places(kind: ProviderKind, places: int) -> None:
    if kind is ProviderKind.FAMILY_POINT and places > FAMILY_POINT_MAX_CHILDREN:
        raise FieldError("places", f"a family childcare point takes at most "
                         f"{FAMILY_POINT_MAX_CHILDREN} children, not {places}", "out_of_range")


class Institution(Aggregate):
    """A childcare provider (托育服务机构) as the registration service knows it."""

    class Filed(Aggregate.Created):
        """The provider entered the register (登记备案)."""

        name: str
        credit_code: str
        nature: str
        kind: str
        district: str
        street: str
        address: str
        places: int
        person_in_charge: dict[str, Any]

    @staticmethod
    def create_id(credit_code: str, **_: Any) -> uuid.UUID:
        return institution_id_for(credit_code)

    @event(Filed)
    def __init__(self, name: str, credit_code: str, nature: str, kind: str, district: str,
                 street: str, address: str, places: int, person_in_charge: dict[str, Any]):
        self.name = name
        self.credit_code = credit_code
        self.nature = nature
        self.kind = kind
        self.district = district
        self.street = street
        self.address = address
        self.places = places
        self.person_in_charge = person_in_charge
        self.status = "filed"

    @classmethod
    def file(cls, *, name: str, credit_code: str, nature: Nature, kind: ProviderKind,
             district: str, street: str, address: str, places: int,
             person_in_charge: dict[str, Any]) -> Institution:
        check_credit_code_matches_nature(credit_code, nature)
        check_places(kind, places)
        return cls(
            name=name, credit_code=credit_code, nature=nature.value, kind=kind.value,
            district=district, street=street, address=address, places=places,
            person_in_charge=person_in_charge,
        )
