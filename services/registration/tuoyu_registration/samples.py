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


def sample_registration(n: int, **overrides) -> dict:
    """Registration facts (登记) of sample institution n."""
    data = {
        "name": f"示范托育园 {n}",
        "credit_code": sample_credit_code(n),
        "nature": "for_profit",
        "kind": "childcare_institution",
        "district": "徐汇区",
        "street": "天平路街道",
        "address": f"天平路 {n} 号",
        "person_in_charge": {"name": "王晓梅", "id_number": sample_resident_id(n),
                             "phone": "13812345678"},
    }
    data.update(overrides)
    return data


def sample_filing_submission(**overrides) -> dict:
    """A filing (备案) with one class of each age group: 45 places."""
    data = {
        "service_types": ["full_day", "hourly"],
        "classes": [{"class_type": "infant", "places": 10, "carers": 4},
                    {"class_type": "toddler", "places": 15, "carers": 3},
                    {"class_type": "older", "places": 20, "carers": 3}],
        "floor_area": {"indoor_m2": 480, "outdoor_m2": 200},
        "staff": {"carer": 10, "health": 1, "cook": 2, "security": 1, "manager": 2},
        "meals_served": True,
        "hygiene_evaluation_passed": True,
        "fire_safety_passed": True,
    }
    data.update(overrides)
    return data


def sample_enrolment(month: str, **overrides) -> dict:
    data = {
        "month": month,
        "classes": [
            {"class_type": "infant", "children": 8, "carers": 3, "age_bands": {"m6_12": 8}},
            {"class_type": "toddler", "children": 14, "carers": 3,
             "age_bands": {"m12_18": 6, "m18_24": 8}},
            {"class_type": "older", "children": 18, "carers": 3, "age_bands": {"m24_36": 18}},
        ],
        "second_children": 9,
        "third_children": 2,
        "health_managed_children": 36,
    }
    data.update(overrides)
    return data


def file_sample_institution(app, n: int = 1) -> str:
    """Register sample institution n and file it (submission and receipt) through the
    application's commands; its id."""
    institution_id = str(app.register_institution(sample_registration(n)))
    app.submit_filing(institution_id, sample_filing_submission())
    app.issue_filing_receipt(institution_id, {"receipt_number": f"BA-{n}"})
    return institution_id


def request_sample_hire(app, institution_id: str, n: int) -> str:
    """Ask to hire sample practitioner n as a carer; the hire id."""
    return app.request_hire(institution_id, {
        "practitioner": {"name": "李四", "id_number": sample_resident_id(n)}, "role": "carer",
        "certificates": []})


def sample_csv(count: int, start: int = 1) -> str:
    """A provincial filing export (Chinese headers) of ``count`` valid rows."""
    from tuoyu_registration.importer import COLUMNS

    header = ",".join(COLUMNS.values())
    lines = [header]
    for n in range(start, start + count):
        row = {
            "credit_code": sample_credit_code(n), "name": f"托育园{n}", "nature": "营利性",
            "kind": "托育机构", "district": "徐汇区", "street": f"街道{n % 13}",
            "address": f"路{n}号", "person_in_charge_name": "李四",
            "person_in_charge_id_number": sample_resident_id(n),
            "person_in_charge_phone": "13912345678", "service_types": "full_day;hourly",
            "classes": "toddler:15:3;older:20:3", "indoor_m2": "300", "outdoor_m2": "80",
            "staff_carer": "6", "staff_health": "1", "staff_cook": "1", "staff_security": "1",
            "staff_manager": "1", "meals_served": "是", "hygiene_evaluation_passed": "是",
            "fire_safety_passed": "是", "receipt_number": f"BA{n:08d}",
            "filed_on": "2025-06-30",
        }
        lines.append(",".join(row[k] for k in COLUMNS))
    return "\n".join(lines) + "\n"
