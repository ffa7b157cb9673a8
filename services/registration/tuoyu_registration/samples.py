"""Valid sample filings, generated: for demo data, tests and benchmarks.

Credit codes and resident ID numbers are computed with their real check characters, so they
pass validation without being anyone's real number.
"""

from __future__ import annotations

from tuoyu_shared.validation import credit_code_check_character, resident_id_check_character


def sample_credit_code(n: int, prefix: str = "913101") -> str:
    first17 = f"{prefix}{n:011d}"[:17]
    return first17 + credit_code_check_character(first17)


def sample_resident_id(n: int) -> str:
    first17 = f"310104198803{(n % 28) + 1:02d}{n % 1000:03d}"
    return first17 + resident_id_check_character(first17)


def sample_filing(n: int, **overrides) -> dict:
    data = {
        "name": f"示范托育园 {n}",
        "credit_code": sample_credit_code(n),
        "nature": "for_profit",
        "kind": "childcare_institution",
        "district": "徐汇区",
        "street": "天平路街道",
        "address": f"天平路 {n} 号",
        "places": 40,
        "person_in_charge": {"name": "王晓梅", "id_number": sample_resident_id(n),
                             "phone": "13812345678"},
    }
    data.update(overrides)
    return data
