"""The credit domain: plain Python, no I/O. Dates are passed in; the domain reads no clock."""

from .common import DomainRuleViolated
from .institution_credit import (
    Decision,
    InstitutionCredit,
    ListingState,
    ListName,
    institution_credit_id_for,
)
from .practitioner import (
    LIFETIME,
    BanSource,
    CheckOutcome,
    CheckReason,
    Practitioner,
    practitioner_id_for,
)
from .rules import GRADES, CauseType, ListingRules, ScoringRules, Severity

__all__ = [
    "GRADES",
    "LIFETIME",
    "BanSource",
    "CauseType",
    "CheckOutcome",
    "CheckReason",
    "Decision",
    "DomainRuleViolated",
    "InstitutionCredit",
    "ListName",
    "ListingRules",
    "ListingState",
    "Practitioner",
    "ScoringRules",
    "Severity",
    "institution_credit_id_for",
    "practitioner_id_for",
]
