"""Unit tests for tuoyu_shared.validation."""

from __future__ import annotations

import datetime as dt
import pickle
from decimal import Decimal

import pytest

from tuoyu_shared.validation import (
    CREDIT_CODE_CHARSET,
    CREDIT_CODE_WEIGHTS,
    RESIDENT_ID_WEIGHTS,
    FieldError,
    ValidationFailed,
    Validator,
    birth_date_from_resident_id,
    credit_code_check_character,
    credit_code_nature,
    fen_to_yuan_str,
    mask_name,
    mask_phone,
    mask_resident_id,
    resident_id_check_character,
    validate_credit_code,
    validate_date,
    validate_money_fen,
    validate_phone,
    validate_resident_id,
    yuan_to_fen,
)

# ---------------------------------------------------------------------------
# Known-good literals, verified by hand
# ---------------------------------------------------------------------------

# Credit code 91350100M000100Y43 (widely used example).
# Charset values: digits 0-9 -> 0-9, M -> 21, Y -> 30.
#   pos:    1  2  3  4  5  6  7  8  9  10 11 12 13 14 15 16 17
#   char:   9  1  3  5  0  1  0  0  M  0  0  0  1  0  0  Y  4
#   value:  9  1  3  5  0  1  0  0  21 0  0  0  1  0  0  30 4
#   weight: 1  3  9  27 19 26 16 17 20 29 25 13 8  24 10 30 28
#   product 9  3  27 135 0 26 0  0  420 0 0  0  8  0  0  900 112
#   sum = 9+3+27+135+26+420+8+900+112 = 1640; 1640 mod 31 = 1640 - 52*31 = 28
#   check = (31 - 28) mod 31 = 3 -> charset[3] = '3'   => code ends in '3'. Valid.
KNOWN_CREDIT_CODE = "91350100M000100Y43"

# Credit code 91110000100000000R, computed by hand:
#   non-zero products: pos1 9*1=9, pos2 1*3=3, pos3 1*9=9, pos4 1*27=27, pos9 1*20=20
#   sum = 68; 68 mod 31 = 6; check = 31 - 6 = 25 -> charset[25] = 'R'
#   (charset indices: A10 B11 C12 D13 E14 F15 G16 H17 J18 K19 L20 M21 N22 P23 Q24 R25)
HAND_CREDIT_CODE = "91110000100000000R"

# Resident ID 11010519491231002X (the example printed in GB 11643-1999).
#   digits:  1 1 0 1 0 5 1 9 4 9 1 2 3 1 0 0 2
#   weights: 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
#   products 7 9 0 5 0 20 2 9 24 27 7 18 30 5 0 0 4 -> sum = 167
#   167 mod 11 = 2 -> "10X98765432"[2] = 'X'   => ends in 'X'. Valid; born 1949-12-31.
KNOWN_RESIDENT_ID = "11010519491231002X"

# Resident ID 440524188001010014 (the other example in GB 11643-1999).
#   digits:  4 4 0 5 2 4 1 8 8 0 0 1 0 1 0 0 1
#   products 28 36 0 25 16 16 2 8 48 0 0 9 0 5 0 0 2 -> sum = 195
#   195 mod 11 = 8 -> "10X98765432"[8] = '4'   => check character correct,
#   but the birth date 1880-01-01 is before 1900-01-01, so our rules refuse it.
OLD_RESIDENT_ID = "440524188001010014"

FIXED_TODAY = dt.date(2024, 6, 1)


def make_credit_code(first17: str) -> str:
    return first17 + credit_code_check_character(first17)


def make_resident_id(area: str, birth: str, sequence: str) -> str:
    first17 = area + birth + sequence
    return first17 + resident_id_check_character(first17)


def wrong_characters(correct: str, alphabet: str) -> list[str]:
    return [c for c in alphabet if c != correct]


# ---------------------------------------------------------------------------
# FieldError / ValidationFailed
# ---------------------------------------------------------------------------


def test_field_error_attributes_str_and_dict():
    error = FieldError("phone", "mobile number must have 11 digits, got 10", "invalid_format")
    assert error.field == "phone"
    assert error.reason == "mobile number must have 11 digits, got 10"
    assert error.code == "invalid_format"
    assert str(error) == "phone: mobile number must have 11 digits, got 10"
    assert error.to_dict() == {
        "field": "phone",
        "code": "invalid_format",
        "reason": "mobile number must have 11 digits, got 10",
    }
    assert isinstance(error, Exception)


def test_field_error_survives_pickling():
    error = pickle.loads(pickle.dumps(FieldError("a.b", "is required", "required")))
    assert (error.field, error.reason, error.code) == ("a.b", "is required", "required")
    assert str(error) == "a.b: is required"


def test_validation_failed_to_dict_shape():
    failed = ValidationFailed(
        [
            FieldError("name", "is required", "required"),
            FieldError("credit_code", "check character is 'X' but should be '3'",
                       "invalid_check_character"),
        ]
    )
    assert failed.to_dict() == {
        "error": "validation_failed",
        "errors": [
            {"field": "name", "code": "required", "reason": "is required"},
            {
                "field": "credit_code",
                "code": "invalid_check_character",
                "reason": "check character is 'X' but should be '3'",
            },
        ],
    }
    assert len(failed.errors) == 2


def test_validation_failed_str_lists_every_field_and_reason():
    failed = ValidationFailed(
        [FieldError("name", "is required", "required"),
         FieldError("phone", "mobile number second digit must be 3-9, got '2'",
                    "invalid_format")]
    )
    text = str(failed)
    assert "name: is required" in text
    assert "phone: mobile number second digit must be 3-9, got '2'" in text
    assert text.index("name:") < text.index("phone:")


def test_validation_failed_survives_pickling():
    failed = pickle.loads(pickle.dumps(ValidationFailed([FieldError("x", "bad", "invalid")])))
    assert failed.to_dict()["errors"] == [{"field": "x", "code": "invalid", "reason": "bad"}]


# ---------------------------------------------------------------------------
# Credit code
# ---------------------------------------------------------------------------


def test_credit_code_weights_are_powers_of_three_mod_31():
    assert tuple(3**i % 31 for i in range(17)) == CREDIT_CODE_WEIGHTS
    assert CREDIT_CODE_CHARSET == "0123456789ABCDEFGHJKLMNPQRTUWXY"
    assert len(CREDIT_CODE_CHARSET) == 31


def test_known_credit_code_is_valid():
    assert credit_code_check_character(KNOWN_CREDIT_CODE[:17]) == "3"
    assert validate_credit_code(KNOWN_CREDIT_CODE) == KNOWN_CREDIT_CODE


def test_hand_computed_credit_code_is_valid():
    assert credit_code_check_character(HAND_CREDIT_CODE[:17]) == "R"
    assert validate_credit_code(HAND_CREDIT_CODE) == HAND_CREDIT_CODE


@pytest.mark.parametrize(
    ("first17", "expected"),
    [
        # sum = 3*1 + 1*28 = 31 -> 31 mod 31 = 0 -> (31 - 0) mod 31 = 0 -> '0'
        ("30000000000000001", "0"),
        # sum = 1 -> (31 - 1) mod 31 = 30 -> 'Y' (the last charset character)
        ("10000000000000000", "Y"),
        # sum = 2 -> 29 -> 'X'
        ("20000000000000000", "X"),
    ],
)
def test_credit_code_check_character_edge_values(first17, expected):
    assert credit_code_check_character(first17) == expected


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        # Hand-computed: only position 17 (weight 28) is non-zero, value v.
        # check = (31 - 28v mod 31) mod 31 = 3v mod 31 (because -28 = 3 mod 31).
        ("1", "3"),  # 3
        ("A", "Y"),  # v=10 -> 30 -> 'Y'
        ("B", "2"),  # v=11 -> 33 mod 31 = 2
        ("M", "1"),  # v=21 -> 63 mod 31 = 1
        ("Y", "W"),  # v=30 -> 90 mod 31 = 28 -> 'W' (charset ... R25 T26 U27 W28 X29 Y30)
    ],
)
def test_credit_code_check_character_hand_computed(last, expected):
    assert credit_code_check_character("0" * 16 + last) == expected


def test_credit_code_is_uppercased_and_stripped():
    assert validate_credit_code("  91350100m000100y43 ") == KNOWN_CREDIT_CODE
    assert credit_code_check_character("91350100m000100y4") == "3"


@pytest.mark.parametrize(
    "first17",
    ["91110108MA01ABCDE", "52310000MJ5000000", "12100000400012345", "Y1440300WXYTUR123"],
)
def test_generated_credit_codes_are_valid(first17):
    code = make_credit_code(first17)
    assert validate_credit_code(code) == code


@pytest.mark.parametrize("wrong", wrong_characters("3", CREDIT_CODE_CHARSET))
def test_credit_code_every_wrong_check_character_is_refused(wrong):
    with pytest.raises(FieldError) as info:
        validate_credit_code(KNOWN_CREDIT_CODE[:17] + wrong)
    assert info.value.code == "invalid_check_character"
    assert info.value.reason == f"check character is '{wrong}' but should be '3'"
    assert info.value.field == "credit_code"


def test_credit_code_error_uses_given_field_name():
    with pytest.raises(FieldError) as info:
        validate_credit_code(KNOWN_CREDIT_CODE[:17] + "X", field="operator.credit_code")
    assert info.value.field == "operator.credit_code"
    assert str(info.value) == "operator.credit_code: check character is 'X' but should be '3'"


@pytest.mark.parametrize("value", [KNOWN_CREDIT_CODE[:17], KNOWN_CREDIT_CODE + "0", "9135"])
def test_credit_code_wrong_length(value):
    with pytest.raises(FieldError) as info:
        validate_credit_code(value)
    assert info.value.code == "invalid_length"
    assert info.value.reason == f"credit code must be 18 characters, got {len(value)}"


@pytest.mark.parametrize("letter", list("IOZSV"))
def test_credit_code_excluded_letters_are_named_with_position(letter):
    value = KNOWN_CREDIT_CODE[:8] + letter + KNOWN_CREDIT_CODE[9:]
    with pytest.raises(FieldError) as info:
        validate_credit_code(value)
    assert info.value.code == "invalid_character"
    assert f"character '{letter}' at position 9 is not allowed" in info.value.reason
    assert "I, O, Z, S and V" in info.value.reason


def test_credit_code_lowercase_excluded_letter_is_reported_uppercased():
    value = "o" + KNOWN_CREDIT_CODE[1:]
    with pytest.raises(FieldError) as info:
        validate_credit_code(value)
    assert "character 'O' at position 1 is not allowed" in info.value.reason


@pytest.mark.parametrize(("char", "position"), [("-", 5), ("*", 18), ("中", 2)])
def test_credit_code_other_bad_characters(char, position):
    value = KNOWN_CREDIT_CODE[: position - 1] + char + KNOWN_CREDIT_CODE[position:]
    assert len(value) == 18
    with pytest.raises(FieldError) as info:
        validate_credit_code(value)
    assert info.value.code == "invalid_character"
    assert f"character '{char}' at position {position} is not allowed" in info.value.reason


@pytest.mark.parametrize("value", [None, "", "   "])
def test_credit_code_missing_is_required(value):
    with pytest.raises(FieldError) as info:
        validate_credit_code(value)
    assert info.value.code == "required"


def test_credit_code_non_string_is_invalid_type():
    with pytest.raises(FieldError) as info:
        validate_credit_code(913501001)
    assert info.value.code == "invalid_type"
    assert "int" in info.value.reason


def test_credit_code_check_character_rejects_bad_input():
    with pytest.raises(ValueError, match="17"):
        credit_code_check_character("9135")
    with pytest.raises(ValueError, match="'I' at position 9"):
        credit_code_check_character("91350100I000100Y4")
    with pytest.raises(TypeError):
        credit_code_check_character(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("first17", "nature"),
    [
        ("91350100M000100Y4", "enterprise"),  # 91 企业
        ("92350100M000100Y4", "enterprise"),  # 92 个体工商户
        ("12100000400012345", "public_institution"),  # 12 事业单位
        ("11100000400012345", "public_institution"),  # 11 机关
        ("52310000MJ5000000", "social_organisation"),  # 52 民办非企业单位
        ("51310000MJ5000000", "social_organisation"),  # 51 社会团体
        ("31110000MJ5000000", "other"),  # 3 司法行政
        ("Y1110000MJ5000000", "other"),  # Y 其他
        ("N2110000MJ5000000", "other"),  # N 农业
    ],
)
def test_credit_code_nature(first17, nature):
    assert credit_code_nature(make_credit_code(first17)) == nature


def test_credit_code_nature_validates_first():
    with pytest.raises(FieldError) as info:
        credit_code_nature(KNOWN_CREDIT_CODE[:17] + "0")
    assert info.value.code == "invalid_check_character"


# ---------------------------------------------------------------------------
# Resident ID
# ---------------------------------------------------------------------------


def test_resident_id_weights():
    assert tuple(2 ** (17 - i) % 11 for i in range(17)) == RESIDENT_ID_WEIGHTS


def test_known_resident_id_is_valid():
    assert resident_id_check_character(KNOWN_RESIDENT_ID[:17]) == "X"
    assert validate_resident_id(KNOWN_RESIDENT_ID) == KNOWN_RESIDENT_ID
    assert birth_date_from_resident_id(KNOWN_RESIDENT_ID) == dt.date(1949, 12, 31)


def test_standard_example_born_1880_has_right_check_but_is_too_old():
    assert resident_id_check_character(OLD_RESIDENT_ID[:17]) == "4"
    with pytest.raises(FieldError) as info:
        validate_resident_id(OLD_RESIDENT_ID)
    assert info.value.code == "out_of_range"
    assert info.value.reason == "birth date 1880-01-01 (positions 7-14) is before 1900-01-01"


def test_resident_id_lowercase_x_is_accepted_and_normalised():
    assert validate_resident_id(KNOWN_RESIDENT_ID.lower()) == KNOWN_RESIDENT_ID
    assert validate_resident_id(f" {KNOWN_RESIDENT_ID[:17]}x ") == KNOWN_RESIDENT_ID


@pytest.mark.parametrize(
    ("area", "birth", "sequence"),
    [
        ("110105", "20200229", "123"),  # leap day
        ("440305", "19900101", "004"),
        ("310101", "19000101", "001"),  # earliest allowed date
        ("510107", "20231231", "998"),
    ],
)
def test_generated_resident_ids_are_valid(area, birth, sequence):
    number = make_resident_id(area, birth, sequence)
    assert validate_resident_id(number, today=FIXED_TODAY) == number
    expected = dt.date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    assert birth_date_from_resident_id(number, today=FIXED_TODAY) == expected


@pytest.mark.parametrize(
    ("first17", "expected"),
    [
        # Hand-computed, one non-zero digit each, covering all 11 residues.
        # Last position has weight 2, so sum = 2*d; "10X98765432"[sum mod 11]:
        ("00000000000000000", "1"),  # 0 -> r0
        ("00000000000000001", "X"),  # 2 -> r2
        ("00000000000000002", "8"),  # 4 -> r4
        ("00000000000000003", "6"),  # 6 -> r6
        ("00000000000000004", "4"),  # 8 -> r8
        ("00000000000000005", "2"),  # 10 -> r10
        ("00000000000000006", "0"),  # 12 -> r1
        ("00000000000000007", "9"),  # 14 -> r3
        ("00000000000000008", "7"),  # 16 -> r5
        ("00000000000000009", "5"),  # 18 -> r7
        ("10000000000000000", "5"),  # weight 7 -> r7
        ("01000000000000000", "3"),  # weight 9 -> r9
    ],
)
def test_resident_id_check_character_hand_computed(first17, expected):
    assert resident_id_check_character(first17) == expected


def test_resident_id_check_characters_cover_x_and_digits():
    # Over enough sequence numbers every check character occurs, including 'X'.
    seen = {
        resident_id_check_character(f"11010519800101{n:03d}")[-1] for n in range(200)
    }
    assert seen == set("0123456789X")


@pytest.mark.parametrize("wrong", wrong_characters("X", "0123456789"))
def test_resident_id_every_wrong_check_character_is_refused(wrong):
    with pytest.raises(FieldError) as info:
        validate_resident_id(KNOWN_RESIDENT_ID[:17] + wrong)
    assert info.value.code == "invalid_check_character"
    assert info.value.reason == f"check character is '{wrong}' but should be 'X'"
    assert info.value.field == "id_number"


def test_resident_id_x_where_digit_expected_is_refused():
    number = make_resident_id("440305", "19900101", "004")
    assert number[-1] != "X"
    with pytest.raises(FieldError) as info:
        validate_resident_id(number[:17] + "X")
    assert info.value.reason == f"check character is 'X' but should be '{number[-1]}'"


@pytest.mark.parametrize(
    "value",
    ["110105491231002", KNOWN_RESIDENT_ID[:17], KNOWN_RESIDENT_ID + "1", "1"],
)
def test_resident_id_wrong_length(value):
    with pytest.raises(FieldError) as info:
        validate_resident_id(value)
    assert info.value.code == "invalid_length"
    assert info.value.reason == f"resident ID number must be 18 characters, got {len(value)}"


def test_resident_id_non_digit_in_first_17():
    value = KNOWN_RESIDENT_ID[:4] + "A" + KNOWN_RESIDENT_ID[5:]
    with pytest.raises(FieldError) as info:
        validate_resident_id(value)
    assert info.value.code == "invalid_character"
    assert "character 'A' at position 5 is not allowed" in info.value.reason


def test_resident_id_x_inside_first_17_is_refused():
    value = "X" + KNOWN_RESIDENT_ID[1:]
    with pytest.raises(FieldError) as info:
        validate_resident_id(value)
    assert "character 'X' at position 1 is not allowed" in info.value.reason


def test_resident_id_bad_last_character():
    with pytest.raises(FieldError) as info:
        validate_resident_id(KNOWN_RESIDENT_ID[:17] + "Y")
    assert info.value.code == "invalid_character"
    assert "position 18" in info.value.reason
    assert "digit or X" in info.value.reason


@pytest.mark.parametrize("birth", ["19990230", "19991301", "19990001", "19990100", "19000229"])
def test_resident_id_impossible_birth_date(birth):
    number = make_resident_id("110105", birth, "123")  # check character is correct
    with pytest.raises(FieldError) as info:
        validate_resident_id(number)
    assert info.value.code == "not_a_date"
    assert info.value.reason == f"birth date {birth} (positions 7-14) is not a real calendar date"


def test_resident_id_birth_date_in_the_future_relative_to_today():
    tomorrow = FIXED_TODAY + dt.timedelta(days=1)
    number = make_resident_id("110105", tomorrow.strftime("%Y%m%d"), "123")
    with pytest.raises(FieldError) as info:
        validate_resident_id(number, today=FIXED_TODAY)
    assert info.value.code == "out_of_range"
    assert info.value.reason == "birth date 2024-06-02 (positions 7-14) is in the future"
    # born today is fine
    today_number = make_resident_id("110105", FIXED_TODAY.strftime("%Y%m%d"), "123")
    assert validate_resident_id(today_number, today=FIXED_TODAY) == today_number


def test_resident_id_future_date_uses_real_today_by_default():
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    number = make_resident_id("110105", tomorrow.strftime("%Y%m%d"), "123")
    with pytest.raises(FieldError) as info:
        validate_resident_id(number)
    assert "is in the future" in info.value.reason


def test_resident_id_before_1900():
    number = make_resident_id("110105", "18991231", "123")
    with pytest.raises(FieldError) as info:
        validate_resident_id(number)
    assert info.value.code == "out_of_range"
    assert "before 1900-01-01" in info.value.reason


@pytest.mark.parametrize("value", [None, "", "  "])
def test_resident_id_missing_is_required(value):
    with pytest.raises(FieldError) as info:
        validate_resident_id(value, field="child.id_number")
    assert info.value.code == "required"
    assert info.value.field == "child.id_number"


def test_resident_id_non_string():
    with pytest.raises(FieldError) as info:
        validate_resident_id(110105194912310020)
    assert info.value.code == "invalid_type"


def test_resident_id_check_character_rejects_bad_input():
    with pytest.raises(ValueError, match="expected 17 digits"):
        resident_id_check_character("1101051949123100")  # 16 digits
    with pytest.raises(ValueError, match="expected 17 digits"):
        resident_id_check_character("1101051949123100X")
    with pytest.raises(TypeError):
        resident_id_check_character(11010519491231002)  # type: ignore[arg-type]


def test_birth_date_from_invalid_resident_id_raises():
    with pytest.raises(FieldError) as info:
        birth_date_from_resident_id(KNOWN_RESIDENT_ID[:17] + "0")
    assert info.value.code == "invalid_check_character"


# ---------------------------------------------------------------------------
# Phone
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("13812345678", "13812345678"),
        ("138 1234 5678", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("+8613812345678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("+86-138-1234-5678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("86 13812345678", "13812345678"),
        (" 19912345678 ", "19912345678"),
        ("010-12345678", "010-12345678"),
        ("01012345678", "010-12345678"),
        ("010 12345678", "010-12345678"),
        ("021-1234567", "021-1234567"),
        ("0755-12345678", "0755-12345678"),
        ("075512345678", "0755-12345678"),
        ("0755 1234 5678", "0755-12345678"),
        ("0931-1234567", "0931-1234567"),
        ("09311234567", "0931-1234567"),
    ],
)
def test_valid_phone_numbers_are_normalised(value, expected):
    assert validate_phone(value) == expected


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        ("12812345678", "second digit must be 3-9, got '2'"),
        ("11812345678", "second digit must be 3-9, got '1'"),
        ("1381234567", "mobile number must have 11 digits, got 10"),
        ("138123456789", "mobile number must have 11 digits, got 12"),
        ("+86 1381234567", "mobile number must have 11 digits, got 10"),
        ("1381234567a", "contains 'a'"),
        ("138.1234.5678", "contains '.'"),
        ("(010)12345678", "contains '('"),
        ("+1 415 555 0100", "contains '+'"),
        ("+86 010 12345678", "after the +86 country code a mobile number"),
        ("+86", "has no digits"),
        ("010-123456", "must have 7 or 8 digits, got 6"),
        ("0755-123456789", "must have 7 or 8 digits, got 9"),
        ("010-12345678-123", "must have 7 or 8 digits, got 11"),
        ("075-12345678", "area code '075' is not valid"),
        ("0100-1234567", "area code '0100' is not valid"),
        ("55512345", "neither a mobile number"),
        ("23812345678", "neither a mobile number"),
    ],
)
def test_invalid_phone_numbers(value, reason_part):
    with pytest.raises(FieldError) as info:
        validate_phone(value, field="contact.phone")
    assert info.value.code == "invalid_format"
    assert info.value.field == "contact.phone"
    assert reason_part in info.value.reason


@pytest.mark.parametrize("value", [None, "", "   "])
def test_phone_missing_is_required(value):
    with pytest.raises(FieldError) as info:
        validate_phone(value)
    assert info.value.code == "required"


def test_phone_as_int_is_invalid_type():
    with pytest.raises(FieldError) as info:
        validate_phone(13812345678)
    assert info.value.code == "invalid_type"


# ---------------------------------------------------------------------------
# Money
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 3_000_000, 10**15])
def test_money_fen_accepts_non_negative_int(value):
    assert validate_money_fen(value) == value


def test_money_fen_refuses_float_with_exact_reason():
    for value in (1.0, 0.5, 300.0):
        with pytest.raises(FieldError) as info:
            validate_money_fen(value)
        assert info.value.reason == "money must be integer fen, not a float"
        assert info.value.code == "invalid_type"
        assert info.value.field == "amount_fen"


@pytest.mark.parametrize(
    ("value", "code", "reason_part"),
    [
        (True, "invalid_type", "not a boolean"),
        (False, "invalid_type", "not a boolean"),
        ("100", "invalid_type", "not str"),
        (Decimal(100), "invalid_type", "not Decimal"),
        (-1, "out_of_range", "must not be negative, got -1 fen"),
        (None, "required", "is required"),
    ],
)
def test_money_fen_refusals(value, code, reason_part):
    with pytest.raises(FieldError) as info:
        validate_money_fen(value, field="fee_fen")
    assert info.value.code == code
    assert reason_part in info.value.reason
    assert info.value.field == "fee_fen"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30000", 3_000_000),
        ("300.50", 30_050),
        ("300.5", 30_050),
        ("0.01", 1),
        ("0", 0),
        (" 12.34 ", 1_234),
        ("300.500", 30_050),  # trailing zero: still exactly 300.50
        (Decimal("300.50"), 30_050),
        (Decimal("1E+3"), 100_000),
        (Decimal("-0"), 0),
        (25, 2_500),
        # more digits than the default Decimal context precision (28): still exact
        ("1234567890123456789012345678.99", 123456789012345678901234567899),
    ],
)
def test_yuan_to_fen_valid(value, expected):
    result = yuan_to_fen(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("value", "code", "reason_part"),
    [
        ("300.505", "invalid_format", "more than 2 decimal places"),
        ("0.001", "invalid_format", "more than 2 decimal places"),
        (Decimal("300.505"), "invalid_format", "more than 2 decimal places"),
        (Decimal("1E-3"), "invalid_format", "more than 2 decimal places"),
        ("-1", "out_of_range", "must not be negative"),
        ("-0.50", "out_of_range", "must not be negative"),
        (Decimal("-0.01"), "out_of_range", "must not be negative"),
        (-5, "out_of_range", "must not be negative"),
        (300.5, "invalid_type", "not a float"),
        (True, "invalid_type", "not a boolean"),
        ("1e3", "invalid_format", "not a plain decimal number"),
        ("1,000", "invalid_format", "not a plain decimal number"),
        ("+5", "invalid_format", "not a plain decimal number"),
        (".5", "invalid_format", "not a plain decimal number"),
        ("¥300", "invalid_format", "not a plain decimal number"),
        ("\uff13\uff10\uff10", "invalid_format", "not a plain decimal number"),  # fullwidth
        ("", "invalid_format", "not a plain decimal number"),
        (Decimal("NaN"), "invalid_format", "not a finite number"),
        (Decimal("Infinity"), "invalid_format", "not a finite number"),
        ([300], "invalid_type", "not list"),
        (None, "required", "is required"),
    ],
)
def test_yuan_to_fen_refusals(value, code, reason_part):
    with pytest.raises(FieldError) as info:
        yuan_to_fen(value)
    assert info.value.code == code
    assert reason_part in info.value.reason


@pytest.mark.parametrize(
    ("fen", "text"),
    [(3_000_000, "30000.00"), (30_050, "300.50"), (5, "0.05"), (0, "0.00"), (100, "1.00"),
     (-150, "-1.50")],
)
def test_fen_to_yuan_str(fen, text):
    assert fen_to_yuan_str(fen) == text


def test_fen_to_yuan_round_trip():
    for fen in [*range(1_000), 123_456_789]:
        assert yuan_to_fen(fen_to_yuan_str(fen)) == fen


@pytest.mark.parametrize("value", [1.5, True, "100", Decimal(1)])
def test_fen_to_yuan_str_refuses_non_int(value):
    with pytest.raises(TypeError):
        fen_to_yuan_str(value)


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------


def test_validate_date_accepts_iso_string_and_date():
    assert validate_date("2024-02-29") == dt.date(2024, 2, 29)
    assert validate_date(dt.date(2024, 1, 2)) == dt.date(2024, 1, 2)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("2023-02-29", "not_a_date"),
        ("2024-13-01", "not_a_date"),
        ("2024/01/01", "invalid_format"),
        ("20240101", "invalid_format"),
        ("2024-1-1", "invalid_format"),
        ("2024-01-01T00:00:00", "invalid_format"),
        (dt.datetime(2024, 1, 1, 8, 0), "invalid_type"),
        (20240101, "invalid_type"),
        (None, "required"),
        ("", "required"),
    ],
)
def test_validate_date_refusals(value, code):
    with pytest.raises(FieldError) as info:
        validate_date(value, field="opened_on")
    assert info.value.code == code
    assert info.value.field == "opened_on"


# ---------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------


def test_mask_resident_id():
    masked = mask_resident_id(KNOWN_RESIDENT_ID)
    assert masked == "110105********002X"
    assert len(masked) == 18


def test_mask_phone():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("010-12345678") == "010*****5678"


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三丰", "张**"), ("张三", "张*"), ("张", "*"), ("欧阳娜娜", "欧***"),
     ("阿依古丽·买买提", "阿*******"), ("", "")],
)
def test_mask_name(name, masked):
    assert mask_name(name) == masked


def test_masks_hide_short_values_completely():
    assert mask_resident_id("1234567890") == "**********"
    assert mask_phone("1234567") == "*******"
    assert mask_phone("") == ""


# ---------------------------------------------------------------------------
# Validator
# ---------------------------------------------------------------------------


def good_payload() -> dict:
    return {
        "name": "  阳光托育中心 ",
        "kind": "private",
        "credit_code": KNOWN_CREDIT_CODE.lower(),
        "phone": "+86 138-1234-5678",
        "registered_capital_fen": 3_000_000,
        "opened_on": "2023-09-01",
        "legal_representative": {
            "name": "张三",
            "id_number": KNOWN_RESIDENT_ID.lower(),
        },
        "classes": [
            {"name": "乳儿班", "places": 10},
            {"name": "托小班", "places": 15},
        ],
    }


def test_validator_returns_cleaned_values_for_good_payload():
    v = Validator(good_payload())
    assert v.text("name", max_length=50) == "阳光托育中心"
    assert v.choice("kind", ["public", "private", "community"]) == "private"
    assert v.credit_code("credit_code") == KNOWN_CREDIT_CODE
    assert v.phone("phone") == "13812345678"
    assert v.money_fen("registered_capital_fen") == 3_000_000
    assert v.date("opened_on") == dt.date(2023, 9, 1)
    assert v.text("legal_representative.name") == "张三"
    assert v.resident_id("legal_representative.id_number") == KNOWN_RESIDENT_ID
    assert v.integer("classes[1].places", min_value=1) == 15
    places = [item.integer("places", min_value=1) for item in v.items("classes", min_items=1)]
    assert places == [10, 15]
    assert v.ok
    assert v.errors == []
    v.check()  # does not raise


def test_validator_collects_multiple_errors_with_dotted_field_names():
    payload = good_payload()
    payload.update(
        name="   ",
        kind="franchise",
        credit_code=KNOWN_CREDIT_CODE[:17] + "X",
        phone="12812345678",
        registered_capital_fen=30000.0,
        opened_on="2023-02-30",
    )
    payload["legal_representative"] = {"name": "张" * 51, "id_number": "110105199902300000"}
    payload["classes"][1]["places"] = "15"

    v = Validator(payload)
    assert v.text("name") is None
    assert v.choice("kind", ["public", "private"]) is None
    assert v.credit_code("credit_code") is None
    assert v.phone("phone") is None
    assert v.money_fen("registered_capital_fen") is None
    assert v.date("opened_on") is None
    assert v.text("legal_representative.name", max_length=50) is None
    assert v.resident_id("legal_representative.id_number") is None
    for item in v.items("classes"):
        item.integer("places", min_value=1)
    assert v.text("missing_field") is None

    with pytest.raises(ValidationFailed) as info:
        v.check()
    got = [(e.field, e.code) for e in info.value.errors]
    assert got == [
        ("name", "required"),
        ("kind", "invalid_choice"),
        ("credit_code", "invalid_check_character"),
        ("phone", "invalid_format"),
        ("registered_capital_fen", "invalid_type"),
        ("opened_on", "not_a_date"),
        ("legal_representative.name", "too_long"),
        ("legal_representative.id_number", "not_a_date"),
        ("classes[1].places", "invalid_type"),
        ("missing_field", "required"),
    ]
    reasons = {e.field: e.reason for e in info.value.errors}
    assert reasons["kind"] == "must be one of 'public', 'private', got 'franchise'"
    assert reasons["credit_code"] == "check character is 'X' but should be '3'"
    assert reasons["registered_capital_fen"] == "money must be integer fen, not a float"
    assert reasons["legal_representative.name"] == "must be at most 50 characters, got 51"
    assert reasons["classes[1].places"] == "must be an integer, not a string"
    as_dict = info.value.to_dict()
    assert as_dict["error"] == "validation_failed"
    assert len(as_dict["errors"]) == 10
    assert as_dict["errors"][2] == {
        "field": "credit_code",
        "code": "invalid_check_character",
        "reason": "check character is 'X' but should be '3'",
    }


def test_validator_optional_fields_absent_are_none_without_errors():
    v = Validator({"note": "  ", "phone": None})
    assert v.text("note", required=False) is None
    assert v.phone("phone", required=False) is None
    assert v.integer("count", required=False) is None
    assert v.money_fen("fee_fen", required=False) is None
    assert v.date("closed_on", required=False) is None
    assert v.choice("kind", ["a"], required=False) is None
    assert v.credit_code("credit_code", required=False) is None
    assert v.resident_id("id_number", required=False) is None
    assert v.text("contact.name", required=False) is None
    assert v.ok
    v.check()


def test_validator_optional_but_present_invalid_is_still_an_error():
    v = Validator({"phone": "123"})
    assert v.phone("phone", required=False) is None
    assert [e.code for e in v.errors] == ["invalid_format"]


def test_validator_required_returns_raw_value():
    v = Validator({"a": [1, 2], "b": 0, "c": "", "d": None})
    assert v.required("a") == [1, 2]
    assert v.required("b") == 0
    assert v.required("c") is None
    assert v.required("d") is None
    assert v.required("e") is None
    assert [(e.field, e.code, e.reason) for e in v.errors] == [
        ("c", "required", "is required"),
        ("d", "required", "is required"),
        ("e", "required", "is required"),
    ]


@pytest.mark.parametrize(
    ("value", "kwargs", "expected", "error"),
    [
        (5, {}, 5, None),
        (0, {"min_value": 0, "max_value": 0}, 0, None),
        (True, {}, None, ("invalid_type", "must be an integer, not a boolean")),
        ("5", {}, None, ("invalid_type", "must be an integer, not a string")),
        (5.0, {}, None, ("invalid_type", "must be an integer, not a float")),
        (0, {"min_value": 1}, None, ("out_of_range", "must be at least 1, got 0")),
        (101, {"max_value": 100}, None, ("out_of_range", "must be at most 100, got 101")),
    ],
)
def test_validator_integer(value, kwargs, expected, error):
    v = Validator({"n": value})
    assert v.integer("n", **kwargs) == expected
    assert [(e.code, e.reason) for e in v.errors] == ([] if error is None else [error])


def test_validator_text_type_and_length():
    v = Validator({"a": 12, "b": "x" * 200, "c": "x" * 201})
    assert v.text("a") is None
    assert v.text("b") == "x" * 200
    assert v.text("c") is None
    assert [(e.field, e.code) for e in v.errors] == [("a", "invalid_type"), ("c", "too_long")]


def test_validator_choice_refuses_non_string_and_accepts_generator():
    v = Validator({"a": 1, "b": "y"})
    assert v.choice("a", ["1"]) is None
    assert v.choice("b", (c for c in "xyz")) == "y"
    assert [(e.field, e.code) for e in v.errors] == [("a", "invalid_type")]


def test_validator_boolean():
    v = Validator({"a": True, "b": 1, "c": "true"})
    assert v.boolean("a") is True
    assert v.boolean("b") is None
    assert v.boolean("c") is None
    assert v.boolean("d", required=False) is None
    assert [(e.field, e.code) for e in v.errors] == [("b", "invalid_type"), ("c", "invalid_type")]


def test_validator_path_through_non_object_reports_type_error_once():
    v = Validator({"legal_representative": "张三"})
    assert v.text("legal_representative.name") is None
    assert len(v.errors) == 1
    error = v.errors[0]
    assert error.field == "legal_representative.name"
    assert error.code == "invalid_type"
    assert error.reason == "legal_representative must be an object, got str"


def test_validator_path_index_into_non_list():
    v = Validator({"classes": {"0": {"places": 1}}})
    assert v.integer("classes[0].places") is None
    assert [(e.field, e.code) for e in v.errors] == [("classes[0].places", "invalid_type")]
    assert v.errors[0].reason == "classes must be a list, got dict"


def test_validator_index_out_of_range_is_required():
    v = Validator({"classes": [{"places": 1}]})
    assert v.integer("classes[0].places") == 1
    assert v.integer("classes[3].places") is None
    assert [(e.field, e.code) for e in v.errors] == [("classes[3].places", "required")]


def test_validator_nested_shares_errors_and_prefixes_fields():
    v = Validator({"address": {"city": "", "district_code": "abc"}})
    address = v.nested("address")
    assert address.text("city") is None
    assert address.integer("district_code") is None
    address.add_error("street", "street is required when city is given", "required")
    assert [e.field for e in v.errors] == ["address.city", "address.district_code",
                                          "address.street"]
    with pytest.raises(ValidationFailed) as info:
        v.check()
    assert len(info.value.errors) == 3


def test_validator_nested_missing_or_wrong_type():
    v = Validator({"b": [1], "c": None})
    missing = v.nested("a")
    assert missing.text("x") is None  # detached: no extra error
    wrong = v.nested("b")
    assert wrong.text("x") is None
    optional = v.nested("c", required=False)
    assert optional.text("x") is None
    assert [(e.field, e.code) for e in v.errors] == [("a", "required"), ("b", "invalid_type")]


def test_validator_nested_list_item_by_index():
    v = Validator({"classes": [{"places": 1}, {"places": 0}]})
    second = v.nested("classes[1]")
    assert second.integer("places", min_value=1) is None
    assert second.path("places") == "classes[1].places"
    assert [e.field for e in v.errors] == ["classes[1].places"]


def test_validator_nested_of_nested_paths():
    v = Validator({"a": {"b": [{"c": {"d": "x"}}]}})
    inner = v.nested("a").nested("b[0]").nested("c")
    assert inner.integer("d") is None
    assert v.errors[0].field == "a.b[0].c.d"


def test_validator_items_errors():
    v = Validator({"empty": [], "text": "abc", "many": [{}, {}, {}], "holes": [{}, None, 3]})
    assert v.items("empty", min_items=1) == []
    assert v.items("text") == []
    assert v.items("many", max_items=2) == []
    assert v.items("absent") == []
    assert v.items("absent_optional", required=False) == []
    assert len(v.items("holes")) == 3
    assert [(e.field, e.code) for e in v.errors] == [
        ("empty", "out_of_range"),
        ("text", "invalid_type"),
        ("many", "out_of_range"),
        ("absent", "required"),
        ("holes[1]", "required"),
        ("holes[2]", "invalid_type"),
    ]
    assert v.errors[0].reason == "must have at least 1 item(s), got 0"


def test_validator_items_give_indexed_paths():
    v = Validator({"children": [{"id_number": KNOWN_RESIDENT_ID}, {"id_number": "123"}]})
    results = [item.resident_id("id_number") for item in v.items("children")]
    assert results == [KNOWN_RESIDENT_ID, None]
    assert [(e.field, e.code) for e in v.errors] == [("children[1].id_number", "invalid_length")]


def test_validator_errors_property_is_a_copy():
    v = Validator({})
    v.text("a")
    v.errors.clear()
    assert len(v.errors) == 1
    assert not v.ok


def test_validator_check_raises_once_per_call_with_all_errors():
    v = Validator({})
    v.text("a")
    v.text("b")
    with pytest.raises(ValidationFailed) as info:
        v.check()
    assert [e.field for e in info.value.errors] == ["a", "b"]


@pytest.mark.parametrize("path", ["", "a..b", "a.", "[x]", "a[", "a b", "1a"])
def test_validator_invalid_field_path_is_a_programming_error(path):
    with pytest.raises(ValueError, match="invalid field path"):
        Validator({}).text(path)


def test_validator_requires_a_mapping():
    with pytest.raises(TypeError):
        Validator([1, 2])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Hostile input: control characters, lone surrogates, huge numbers, deep nesting
# ---------------------------------------------------------------------------

BIGINT_MAX = 2**63 - 1
BIGINT_MIN = -(2**63)


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\x80", "\x85", "\x9f"])
def test_validator_text_refuses_control_characters(char):
    v = Validator({"street": f"中山{char}路"})
    assert v.text("street") is None
    [error] = v.errors
    assert (error.field, error.code) == ("street", "invalid_character")
    assert f"U+{ord(char):04X}" in error.reason and "position 3" in error.reason


def test_validator_text_refuses_lone_surrogates():
    for value in ("\ud800", "a\udfffb", "\ud83d"):
        v = Validator({"name": value})
        assert v.text("name") is None
        [error] = v.errors
        assert (error.field, error.code) == ("name", "invalid_character")
        assert "surrogate" in error.reason


def test_validator_text_single_line_refuses_tab_and_newline_inside_but_trims_them():
    v = Validator({"a": "one\ntwo", "b": "one\ttwo", "c": "\t one two \r\n"})
    assert v.text("a") is None
    assert v.text("b") is None
    assert v.text("c") == "one two"
    assert [(e.field, e.code) for e in v.errors] == [("a", "invalid_character"),
                                                    ("b", "invalid_character")]


def test_validator_text_multiline_allows_newline_and_tab_and_normalises_line_ends():
    v = Validator({"notes": " line 1\r\n\tline 2\rline 3\n", "bad": "x\x00\ny"})
    assert v.text("notes", multiline=True) == "line 1\n\tline 2\nline 3"
    assert v.text("bad", multiline=True) is None
    assert [(e.field, e.code) for e in v.errors] == [("bad", "invalid_character")]


def test_validator_text_is_nfc_normalised_before_the_length_check():
    decomposed = "Cafe\u0301"  # e + combining acute accent: 5 code points, 4 in NFC
    v = Validator({"a": decomposed, "b": "e\u0301" * 3})
    assert v.text("a") == "Caf\u00e9"
    assert v.text("b", max_length=3) == "\u00e9" * 3
    assert v.ok


def test_validator_text_with_only_a_nul_is_present_and_refused():
    v = Validator({"a": "\x00"})
    assert v.text("a", required=False) is None
    assert [(e.field, e.code) for e in v.errors] == [("a", "invalid_character")]


@pytest.mark.parametrize(
    ("value", "expected", "code"),
    [
        (BIGINT_MAX, BIGINT_MAX, None),
        (BIGINT_MIN, BIGINT_MIN, None),
        (BIGINT_MAX + 1, None, "out_of_range"),
        (BIGINT_MIN - 1, None, "out_of_range"),
        (99999999999999999999, None, "out_of_range"),
        (10**5000, None, "out_of_range"),  # str() of it would raise: never formatted
    ],
    ids=["max", "min", "max+1", "min-1", "20 digits", "5001 digits"],
)
def test_validator_integer_defaults_to_bigint_bounds(value, expected, code):
    v = Validator({"n": value})
    assert v.integer("n") == expected
    assert [e.code for e in v.errors] == ([] if code is None else [code])
    if code:
        assert len(v.errors[0].reason) < 200


def test_validator_integer_bigint_bound_applies_to_the_side_not_given():
    v = Validator({"a": BIGINT_MAX + 1, "b": BIGINT_MIN - 1})
    assert v.integer("a", min_value=0) is None
    assert v.integer("b", max_value=10) is None
    assert [(e.field, e.code) for e in v.errors] == [("a", "out_of_range"),
                                                    ("b", "out_of_range")]


def test_validator_items_have_a_default_maximum():
    v = Validator({"ok": [{}] * 1000, "many": [{}] * 1001})
    assert len(v.items("ok")) == 1000
    assert v.items("many") == []
    assert [(e.field, e.code) for e in v.errors] == [("many", "out_of_range")]
    assert v.errors[0].reason == "must have at most 1000 item(s), got 1001"


def test_validator_choice_does_not_echo_a_huge_value():
    v = Validator({"kind": "x" * 100_000})
    assert v.choice("kind", ["a", "b"]) is None
    assert len(v.errors[0].reason) < 300


def test_check_json_value_accepts_plain_json():
    from tuoyu_shared.validation import check_json_value

    value = {"a": [1, -2, BIGINT_MAX, 1.5, True, None, "text\twith\nbreaks\r"],
             "b": {"c": "中文", "d": []}}
    assert check_json_value(value) == []


@pytest.mark.parametrize(
    ("value", "field", "code"),
    [
        ({"a": {"b": ["ok", "bad\x00"]}}, "a.b[1]", "invalid_character"),
        ({"a": "\x1f"}, "a", "invalid_character"),
        ({"a": "\u0085"}, "a", "invalid_character"),
        ({"a": ["\ud800"]}, "a[0]", "invalid_character"),
        ({"k\x00ey": 1}, '["k\\u0000ey"]', "invalid_character"),
        ({"a": {"\udc00": 1}}, 'a["\\udc00"]', "invalid_character"),
        ({"a": [BIGINT_MAX + 1]}, "a[0]", "out_of_range"),
        ({"a": BIGINT_MIN - 1}, "a", "out_of_range"),
        ({"a": float("nan")}, "a", "invalid_format"),
        ({"a": float("inf")}, "a", "invalid_format"),
        ({"名称": "x\x00"}, '["名称"]', "invalid_character"),
        ({"a": "x" * 100_001}, "a", "too_long"),
        ({"a": [0] * 10_001}, "a", "too_long"),
    ],
)
def test_check_json_value_reports_the_path_of_each_problem(value, field, code):
    from tuoyu_shared.validation import check_json_value

    [error] = check_json_value(value)
    assert (error.field, error.code) == (field, code)
    assert "\x00" not in error.reason and "\ud800" not in error.reason


def test_check_json_value_refuses_deep_nesting_without_recursing_into_it():
    from tuoyu_shared.validation import check_json_value

    def lists(depth: int) -> object:
        value: object = "x"
        for _ in range(depth):
            value = [value]
        return value

    assert check_json_value({"a": lists(63)}) == []  # 64 containers, the object included
    [error] = check_json_value({"a": lists(64)})
    assert (error.field, error.code) == ("a" + "[0]" * 63, "too_deep")
    deep: object = "x"
    for _ in range(100_000):  # far beyond Python's recursion limit
        deep = {"d": deep}
    [error] = check_json_value({"a": deep})
    assert error.code == "too_deep" and error.field.startswith("a.d.d")
    assert "nested more than" in error.reason


def test_check_json_value_prefix_and_limits_are_parameters():
    from tuoyu_shared.validation import check_json_value

    errors = check_json_value([[1]], field="body", max_depth=1)
    assert [(e.field, e.code) for e in errors] == [("body[0]", "too_deep")]


def test_validator_checks_the_whole_payload_when_created():
    v = Validator({"name": "ok", "findings": ["fine", "bad\x00"], "n": {"m": 2**64}})
    assert [(e.field, e.code) for e in v.errors] == [("findings[1]", "invalid_character"),
                                                    ("n.m", "out_of_range")]
    with pytest.raises(ValidationFailed):
        v.check()


def test_validator_reports_a_field_once_when_the_deep_check_and_a_field_check_agree():
    v = Validator({"street": "中山\x00路", "place": {"street": "\x00"}})
    assert v.text("street") is None
    assert v.nested("place").text("street") is None
    assert [(e.field, e.code) for e in v.errors] == [("street", "invalid_character"),
                                                    ("place.street", "invalid_character")]


def test_validator_deep_check_runs_once_not_again_in_nested_validators():
    v = Validator({"a": [{"b": "\x00"}, {"b": "\x00"}]})
    for item in v.items("a"):
        item.text("b")
    assert [e.field for e in v.errors] == ["a[0].b", "a[1].b"]


def test_clean_text_standalone():
    from tuoyu_shared.validation import clean_text

    assert clean_text(" Cafe\u0301 ", "name", max_length=10) == "Caf\u00e9"
    with pytest.raises(FieldError) as info:
        clean_text("a\x00", "name", max_length=10)
    assert (info.value.field, info.value.code) == ("name", "invalid_character")
    with pytest.raises(FieldError) as info:
        clean_text("abc", "name", max_length=2)
    assert info.value.code == "too_long"


def test_validator_texts_checks_a_list_of_strings_item_by_item():
    v = Validator({"certs": [" a ", "b"], "bad": ["ok", "x\x00", 3, ""], "one": "x",
                   "many": ["c"] * 11, "kinds": ["full_day", "nightly"], "empty": []})
    assert v.texts("certs", max_length=10) == ["a", "b"]
    assert v.texts("bad") is None
    assert v.texts("one") is None
    assert v.texts("many", max_items=10) is None
    assert v.texts("kinds", choices=["full_day", "hourly"]) is None
    assert v.texts("empty", min_items=1) is None
    assert v.texts("absent", required=False) is None
    assert [(e.field, e.code) for e in v.errors] == [
        ("bad[1]", "invalid_character"), ("bad[2]", "invalid_type"), ("bad[3]", "required"),
        ("one", "invalid_type"), ("many", "out_of_range"), ("kinds[1]", "invalid_choice"),
        ("empty", "out_of_range")]


def test_validator_texts_multiline_items_and_default_maximum():
    v = Validator({"findings": ["line 1\nline 2"], "long": ["x"] * 1001})
    assert v.texts("findings", multiline=True) == ["line 1\nline 2"]
    assert v.texts("long") is None
    assert [(e.field, e.code) for e in v.errors] == [("long", "out_of_range")]
