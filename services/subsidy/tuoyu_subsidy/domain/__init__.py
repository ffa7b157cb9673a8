"""The subsidy domain: plain Python, no I/O. Dates and amounts (integer fen) are passed in."""

from .application import ApplicationState, SubsidyApplication
from .batch import RESULTS, PaymentBatch
from .budget import Budget, InsufficientBudget, budget_id_for
from .claims import ChildMonthClaim, OneTimeGrant, child_month_id_for, one_time_grant_id_for
from .common import DomainRuleViolated, check_month, month_start, months_of_age, split_fen
from .eligibility import assess, institution_refusals, refusal
from .program import GRADES, LEVELS, ProgramKind, SubsidyProgram, check_terms, program_id_for
from .standing import InstitutionStanding, standing_id_for

__all__ = [
    "GRADES", "LEVELS", "RESULTS", "ApplicationState", "Budget", "ChildMonthClaim",
    "DomainRuleViolated", "InstitutionStanding", "InsufficientBudget", "OneTimeGrant",
    "PaymentBatch", "ProgramKind", "SubsidyApplication", "SubsidyProgram", "assess",
    "budget_id_for", "check_month", "check_terms", "child_month_id_for",
    "institution_refusals", "month_start", "months_of_age", "one_time_grant_id_for",
    "program_id_for", "refusal", "split_fen", "standing_id_for",
]
