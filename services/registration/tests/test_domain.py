"""Unit tests of the Institution aggregate's rules: plain Python, no database."""

from __future__ import annotations

import pytest

from tuoyu_registration.domain import (
    Institution,
    Nature,
    ProviderKind,
    check_credit_code_matches_nature,
    institution_id_for,
)
from tuoyu_registration.samples import sample_credit_code
from tuoyu_shared.validation import FieldError

PERSON = {"ref": "r", "name": {"ref": "r", "sealed": "x", "masked": "王**"}}


def file(**overrides) -> Institution:
    args = dict(name="小星星托育园", credit_code=sample_credit_code(1), nature=Nature.FOR_PROFIT,
                kind=ProviderKind.CHILDCARE_INSTITUTION, district="徐汇区", street="天平路街道",
                address="天平路 1 号", places=40, person_in_charge=PERSON)
    args.update(overrides)
    return Institution.file(**args)


def test_filing_records_the_facts_and_derives_the_id_from_the_credit_code():
    institution = file()
    assert institution.id == institution_id_for(sample_credit_code(1))
    assert institution.status == "filed"
    [event] = institution.collect_events()
    assert type(event).__qualname__ == "Institution.Filed"
    assert event.places == 40 and event.kind == "childcare_institution"


@pytest.mark.parametrize("prefix, nature, ok", [
    ("913101", Nature.FOR_PROFIT, True),           # enterprise code, for-profit
    ("523101", Nature.NON_PROFIT, True),           # civil affairs (民办非企业), non-profit
    ("123101", Nature.NON_PROFIT, True),           # staffing office, non-profit
    ("123101", Nature.PUBLIC_INSTITUTION, True),   # 事业单位
    ("523101", Nature.FOR_PROFIT, False),          # a civil-affairs code cannot be for-profit
    ("913101", Nature.PUBLIC_INSTITUTION, False),  # an enterprise is no public institution
    ("913101", Nature.NON_PROFIT, False),
])
def test_credit_code_must_agree_with_the_declared_nature(prefix, nature, ok):
    code = sample_credit_code(5, prefix=prefix)
    if ok:
        check_credit_code_matches_nature(code, nature)
        file(credit_code=code, nature=nature)
    else:
        with pytest.raises(FieldError) as e:
            file(credit_code=code, nature=nature)
        assert e.value.field == "credit_code" and e.value.code == "inconsistent_with_nature"


def test_family_childcare_point_takes_at_most_five_children():
    file(kind=ProviderKind.FAMILY_POINT, places=5)
    with pytest.raises(FieldError) as e:
        file(kind=ProviderKind.FAMILY_POINT, places=6)
    assert e.value.field == "places" and "at most 5" in e.value.reason
