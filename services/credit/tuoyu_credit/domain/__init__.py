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
    RECORD_CATEGORIES,
    AnsweredBy,
    BanSource,
    CheckFlag,
    CheckOutcome,
    CheckReason,
    InquiryResult,
    Practitioner,
    practitioner_id_for,
)
from .rules import GRADES, CauseType, ListingRules, ScoringRules, Severity

__all__ = [
    "GRADES",
    "LIFETIME",
    "RECORD_CATEGORIES",
    "AnsweredBy",
    "BanSource",
    "CauseType",
    "CheckFlag",
    "CheckOutcome",
    "CheckReason",
    "Decision",
    "DomainRuleViolated",
    "InquiryResult",
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
