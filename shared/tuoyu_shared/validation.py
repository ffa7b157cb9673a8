"""Input validation for Chinese identifiers, phone numbers, money and command payloads.

Pure Python, standard library only (and :mod:`tuoyu_shared.errors`, which is too), no I/O.

Two styles are offered:

* standalone ``validate_*`` functions that return the normalised value or raise a
  :class:`FieldError` with a specific, human-readable English reason;
* :class:`Validator`, a collector used by application commands that records every
  :class:`FieldError` for a payload and raises one :class:`ValidationFailed` at the end
  (``v.check()``), so that a client sees all problems at once.

Error codes (``FieldError.code``) are short machine strings:

``required``                 the value is missing, ``None`` or blank
``invalid_type``             wrong Python type (e.g. a float where integer fen are expected)
``invalid_length``           wrong number of characters
``invalid_character``        a character that is not allowed at that position
``invalid_check_character``  the final check character does not match
``invalid_format``           the shape of the value is wrong
``not_a_date``               looks like a date but is not a real calendar date
``out_of_range``             a number, date or count outside the allowed range
``too_long``                 text longer than allowed (or a list longer than allowed)
``too_deep``                 lists and objects nested deeper than allowed
``invalid_choice``           not one of the allowed values

Text is Unicode NFC-normalised and trimmed, and refused when it holds a control character
(C0, DEL, C1; tab and line breaks only in multi-line text) or a lone surrogate, which JSON can
carry but UTF-8 and PostgreSQL cannot. Integers must fit PostgreSQL's bigint unless tighter
bounds are given. :class:`Validator` checks a whole payload (:func:`check_json_value`: depth,
characters of every string and key, integer range) as soon as it is created, so RPC callers,
which never pass the HTTP checks, are held to the same rules.

Money is always handled as integer fen (分, 1 yuan 元 = 100 fen); floats are refused.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from tuoyu_shared.errors import TuoyuError

__all__ = [
    "CREDIT_CODE_CHARSET",
    "CREDIT_CODE_WEIGHTS",
    "RESIDENT_ID_WEIGHTS",
    "FieldError",
    "ValidationFailed",
    "Validator",
    "BIGINT_MAX",
    "BIGINT_MIN",
    "MAX_DEPTH",
    "birth_date_from_resident_id",
    "check_json_value",
    "check_text_characters",
    "clean_text",
    "credit_code_check_character",
    "credit_code_nature",
    "fen_to_yuan_str",
    "mask_name",
    "mask_phone",
    "mask_resident_id",
    "resident_id_check_character",
    "validate_credit_code",
    "validate_date",
    "validate_money_fen",
    "validate_phone",
    "validate_resident_id",
    "yuan_to_fen",
]


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class FieldError(Exception):
    """One problem with one input field.

    ``field`` is the (possibly dotted) path of the field, e.g. ``"legal_representative.name"``
    or ``"classes[0].places"``; ``reason`` is an English sentence fragment saying what is
    wrong; ``code`` is a short machine code (see the module docstring).
    """

    def __init__(self, field: str, reason: str, code: str) -> None:
        super().__init__(field, reason, code)
        self.field = field
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"

    def __repr__(self) -> str:
        return f"FieldError({self.field!r}, {self.reason!r}, {self.code!r})"

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "reason": self.reason}


class ValidationFailed(TuoyuError):
    """One or more :class:`FieldError` found while validating a payload (HTTP 400, code
    ``validation_failed``; see :mod:`tuoyu_shared.errors`)."""

    code = "validation_failed"
    http_status = 400

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        if not self.errors:
            return "validation failed"
        listed = "; ".join(str(e) for e in self.errors)
        return f"validation failed ({len(self.errors)} error(s)): {listed}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.errors!r})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": "validation_failed",
            "errors": [e.to_dict() for e in self.errors],
        }


def refusing_field_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """For application commands: a :class:`FieldError` raised by a domain rule becomes a
    :class:`ValidationFailed`, exactly like the input checks' errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FieldError as e:
            raise ValidationFailed([e]) from None

    return wrapper


def _type_name(value: object) -> str:
    return type(value).__name__


def _require_str(value: object, field: str, what: str) -> str:
    """Return ``value`` stripped; raise ``required`` / ``invalid_type`` FieldErrors."""
    if value is None:
        raise FieldError(field, "is required", "required")
    if not isinstance(value, str):
        raise FieldError(
            field, f"{what} must be a string, got {_type_name(value)}", "invalid_type"
        )
    stripped = value.strip()
    if not stripped:
        raise FieldError(field, "is required", "required")
    return stripped


# ---------------------------------------------------------------------------
# Text, integers and whole JSON values
# ---------------------------------------------------------------------------

#: What PostgreSQL's bigint holds: the default bounds of every integer.
BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
#: Lists and objects nested at most this deep in a payload (the payload itself is level 1).
MAX_DEPTH = 64
#: Limits of :func:`check_json_value` for values no field check looks at.
MAX_STRING_LENGTH = 100_000
MAX_LIST_LENGTH = 10_000
#: Default maximum of :meth:`Validator.items`.
MAX_ITEMS = 1000

# C0 controls, DEL and C1 controls; tab, LF and CR are allowed in multi-line text only.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_SINGLE_LINE = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _escaped(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error report: control characters and surrogates as ``\\uXXXX``,
    long text cut."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    shown = _SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", shown)
    shown = _CONTROL_SINGLE_LINE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", shown)
    return f'"{shown}"'


def _bad_character(value: str, pattern: re.Pattern[str]) -> str | None:
    """Why ``value`` is refused for its characters, or ``None``."""
    match = _SURROGATE.search(value)
    if match is not None:
        return (f"must not contain a lone surrogate (U+{ord(match.group(0)):04X} at position "
                f"{match.start() + 1}); it cannot be stored as UTF-8")
    match = pattern.search(value)
    if match is not None:
        return (f"must not contain control characters (U+{ord(match.group(0)):04X} at "
                f"position {match.start() + 1})")
    return None


def check_text_characters(value: str, field: str, multiline: bool = False) -> None:
    """Raise ``invalid_character`` if ``value`` holds a control character (C0, DEL, C1; tab,
    LF and CR are allowed when ``multiline``) or a lone surrogate."""
    reason = _bad_character(value, _CONTROL if multiline else _CONTROL_SINGLE_LINE)
    if reason is not None:
        raise FieldError(field, reason, "invalid_character")


def clean_text(value: str, field: str, max_length: int = 200, multiline: bool = False) -> str:
    """``value`` NFC-normalised and trimmed (line ends as ``\\n`` when ``multiline``), checked
    for its characters and its length. Raises :class:`FieldError`."""
    if _SURROGATE.search(value) is None and not unicodedata.is_normalized("NFC", value):
        value = unicodedata.normalize("NFC", value)
    value = value.strip()
    if multiline and "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    check_text_characters(value, field, multiline)
    if len(value) > max_length:
        raise FieldError(field, f"must be at most {max_length} characters, got {len(value)}",
                         "too_long")
    return value


def _shown_int(value: int) -> str:
    """An integer for an error report, even one too long for ``str()``."""
    if value.bit_length() > 200:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    return str(value)


def _key_path(prefix: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return _join(prefix, key)
    return f"{prefix}[{_escaped(key, limit=60)}]"


def check_json_value(value: Any, field: str = "", *, max_depth: int = MAX_DEPTH,
                     max_string_length: int = MAX_STRING_LENGTH,
                     max_list_length: int = MAX_LIST_LENGTH) -> list[FieldError]:
    """Every problem of a JSON-like value that no store can take, with its path.

    Walks dicts, lists and tuples without recursion: nesting deeper than ``max_depth`` (the
    value itself is level 1) is ``too_deep`` (and not walked further); a string or a string
    key with a control character other than tab, LF and CR or with a lone surrogate is
    ``invalid_character``; an ``int`` outside bigint ``out_of_range``; a float that is NaN or
    infinite ``invalid_format``; a string or list longer than the limits ``too_long``. Other
    values (dates, Decimals, ...) are left to the field checks.
    """
    errors: list[FieldError] = []
    stack: list[tuple[str, Any, int]] = [(field, value, 1)]
    while stack:
        path, current, depth = stack.pop()
        if isinstance(current, str):
            if len(current) > max_string_length:
                errors.append(FieldError(
                    path or "value", f"must be at most {max_string_length} characters, got "
                    f"{len(current)}", "too_long"))
                continue
            reason = _bad_character(current, _CONTROL)
            if reason is not None:
                errors.append(FieldError(path or "value", reason, "invalid_character"))
        elif isinstance(current, bool) or current is None:
            continue
        elif isinstance(current, int):
            if not BIGINT_MIN <= current <= BIGINT_MAX:
                errors.append(FieldError(
                    path or "value", f"must be from {BIGINT_MIN} to {BIGINT_MAX}, got "
                    f"{_shown_int(current)}", "out_of_range"))
        elif isinstance(current, float):
            if not math.isfinite(current):
                errors.append(FieldError(path or "value",
                                         f"must be a finite number, got {current}",
                                         "invalid_format"))
        elif isinstance(current, (Mapping, list, tuple)):
            if depth > max_depth:
                errors.append(FieldError(
                    path or "value", f"is nested more than {max_depth} levels deep",
                    "too_deep"))
                continue
            children: list[tuple[str, Any, int]] = []
            if isinstance(current, Mapping):
                for key, child in current.items():
                    if isinstance(key, str):
                        key_path = _key_path(path, key)
                        reason = _bad_character(key, _CONTROL_SINGLE_LINE)
                        if reason is not None:
                            errors.append(FieldError(key_path, f"(a key) {reason}",
                                                     "invalid_character"))
                            continue
                    else:
                        key_path = f"{path}[{key!r}]"
                    children.append((key_path, child, depth + 1))
            else:
                if len(current) > max_list_length:
                    errors.append(FieldError(
                        path or "value", f"must have at most {max_list_length} items, got "
                        f"{len(current)}", "too_long"))
                    continue
                children = [(f"{path}[{i}]", child, depth + 1)
                            for i, child in enumerate(current)]
            stack.extend(reversed(children))  # reported in document order
    return errors


# ---------------------------------------------------------------------------
# Unified social credit code (统一社会信用代码), GB 32100-2015
# ---------------------------------------------------------------------------

#: The 31 characters allowed in a unified social credit code; a character's index in
#: this string is its numeric value. The letters I, O, Z, S and V are never used.
CREDIT_CODE_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

#: Weights for positions 1..17: 3^(i-1) mod 31.
CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

_CREDIT_CODE_EXCLUDED_LETTERS = "IOZSV"


def credit_code_check_character(first17: str) -> str:
    """Return the 18th (check) character for the first 17 characters of a credit code.

    ``check = (31 - sum(value_i * weight_i) mod 31) mod 31`` and the check character is
    ``CREDIT_CODE_CHARSET[check]``. Input is uppercased. Raises ``ValueError`` if
    ``first17`` is not 17 characters from :data:`CREDIT_CODE_CHARSET` (``TypeError`` if it
    is not a string).
    """
    if not isinstance(first17, str):
        raise TypeError(f"first17 must be a string, got {_type_name(first17)}")
    first17 = first17.upper()
    if len(first17) != 17:
        raise ValueError(f"expected 17 characters, got {len(first17)}")
    try:
        total = sum(map(_credit_code_product, first17, CREDIT_CODE_WEIGHTS))
    except KeyError:
        position, char = next((i, c) for i, c in enumerate(first17, start=1)
                              if c not in _CREDIT_CODE_VALUE)
        raise ValueError(f"character {char!r} at position {position} is not allowed") from None
    return CREDIT_CODE_CHARSET[(31 - total % 31) % 31]


_CREDIT_CODE_VALUE = {c: i for i, c in enumerate(CREDIT_CODE_CHARSET)}


def _credit_code_product(char: str, weight: int) -> int:
    return _CREDIT_CODE_VALUE[char] * weight


def validate_credit_code(value: object, field: str = "credit_code") -> str:
    """Validate a unified social credit code (统一社会信用代码, GB 32100-2015).

    Structure of the 18 characters:

    * 1: registration authority code (登记管理部门码), e.g. 1 机构编制 (establishment
      administration), 5 民政 (civil affairs), 9 工商 / 市场监管 (market regulation);
    * 2: organisation type code (机构类别码);
    * 3-8: administrative division code (登记管理机关行政区划码);
    * 9-17: organisation code (主体标识码, 组织机构代码);
    * 18: check character (校验码).

    The input is stripped and uppercased; the normalised 18-character code is returned.
    Only the charset and the check character are verified, not the individual segments.
    """
    code = _require_str(value, field, "credit code").upper()
    if len(code) != 18:
        raise FieldError(
            field,
            f"credit code must be 18 characters, got {len(code)}",
            "invalid_length",
        )
    for position, char in enumerate(code, start=1):
        if char in CREDIT_CODE_CHARSET:
            continue
        if char in _CREDIT_CODE_EXCLUDED_LETTERS:
            reason = (
                f"character {char!r} at position {position} is not allowed "
                "(the letters I, O, Z, S and V are never used in credit codes)"
            )
        else:
            reason = (
                f"character {char!r} at position {position} is not allowed "
                "(only digits and the letters A-Y except I, O, S, V are used)"
            )
        raise FieldError(field, reason, "invalid_character")
    expected = credit_code_check_character(code[:17])
    if code[17] != expected:
        raise FieldError(
            field,
            f"check character is {code[17]!r} but should be {expected!r}",
            "invalid_check_character",
        )
    return code


def credit_code_nature(code: str, field: str = "credit_code") -> str:
    """Classify the organisation behind a credit code by its first character.

    The code is validated first (raises :class:`FieldError` if invalid).

    The first character is the registration authority code (登记管理部门码) and the second
    the organisation type code (机构类别码):

    * ``"enterprise"`` — first char ``9``, 工商 (registered by market regulation):
      ``91`` 企业 (enterprise), ``92`` 个体工商户 (individual business),
      ``93`` 农民专业合作社 (farmers' cooperative);
    * ``"public_institution"`` — first char ``1``, 机构编制 (establishment administration):
      ``11`` 机关 (government organ), ``12`` 事业单位 (public institution),
      ``13`` 中央编办直接管理机构编制的群众团体 (mass organisation), ``19`` 其他;
    * ``"social_organisation"`` — first char ``5``, 民政 (civil affairs):
      ``51`` 社会团体 (social group), ``52`` 民办非企业单位 / 社会服务机构 (private
      non-enterprise unit), ``53`` 基金会 (foundation), ``59`` 其他;
    * ``"other"`` — any other registration authority (外交, 司法行政, 文化, 宗教, 工会, ...).

    Only the first character decides the result; the second is documented above for
    readers but all type codes of one authority map to the same nature.
    """
    normalised = validate_credit_code(code, field)
    return {
        "9": "enterprise",
        "1": "public_institution",
        "5": "social_organisation",
    }.get(normalised[0], "other")


# ---------------------------------------------------------------------------
# Resident identity card number (公民身份号码), GB 11643-1999
# ---------------------------------------------------------------------------

#: Weights for positions 1..17: 2^(18-i) mod 11.
RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_ID_CHECK = "10X98765432"
_EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)


def resident_id_check_character(first17: str) -> str:
    """Return the check character (``0``-``9`` or ``X``) for the first 17 digits.

    ``check = "10X98765432"[sum(digit_i * weight_i) mod 11]``. Raises ``ValueError`` if
    ``first17`` is not exactly 17 ASCII digits (``TypeError`` if it is not a string).
    """
    if not isinstance(first17, str):
        raise TypeError(f"first17 must be a string, got {_type_name(first17)}")
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"expected 17 digits, got {first17!r}")
    total = sum(map(int.__mul__, map(int, first17), RESIDENT_ID_WEIGHTS))
    return _RESIDENT_ID_CHECK[total % 11]


def validate_resident_id(
    value: object, field: str = "id_number", *, today: dt.date | None = None
) -> str:
    """Validate an 18-character resident identity number (公民身份号码, GB 11643-1999).

    Structure: positions 1-6 address code (地址码), 7-14 birth date YYYYMMDD (出生日期码),
    15-17 sequence code (顺序码, the 17th is odd for men and even for women), 18 check
    character (校验码, a digit or ``X``). A lowercase ``x`` is accepted and normalised
    to ``X``. The birth date must be a real calendar date, not after ``today`` (defaults
    to ``datetime.date.today()``) and not before 1900-01-01. Old 15-digit numbers are
    refused.
    """
    number = _require_str(value, field, "ID number").upper()
    if len(number) != 18:
        raise FieldError(
            field,
            f"resident ID number must be 18 characters, got {len(number)}",
            "invalid_length",
        )
    for position, char in enumerate(number[:17], start=1):
        if char not in "0123456789":
            raise FieldError(
                field,
                f"character {char!r} at position {position} is not allowed "
                "(positions 1-17 must be digits)",
                "invalid_character",
            )
    if number[17] not in "0123456789X":
        raise FieldError(
            field,
            f"character {number[17]!r} at position 18 is not allowed "
            "(the last character must be a digit or X)",
            "invalid_character",
        )
    _birth_date(number, field, today)
    expected = resident_id_check_character(number[:17])
    if number[17] != expected:
        raise FieldError(
            field,
            f"check character is {number[17]!r} but should be {expected!r}",
            "invalid_check_character",
        )
    return number


def _birth_date(number: str, field: str, today: dt.date | None) -> dt.date:
    raw = number[6:14]
    try:
        born = dt.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        raise FieldError(
            field,
            f"birth date {raw} (positions 7-14) is not a real calendar date",
            "not_a_date",
        ) from None
    if today is None:
        today = dt.date.today()
    if born > today:
        raise FieldError(
            field,
            f"birth date {born.isoformat()} (positions 7-14) is in the future",
            "out_of_range",
        )
    if born < _EARLIEST_BIRTH_DATE:
        raise FieldError(
            field,
            f"birth date {born.isoformat()} (positions 7-14) is before 1900-01-01",
            "out_of_range",
        )
    return born


def birth_date_from_resident_id(
    value: str, field: str = "id_number", *, today: dt.date | None = None
) -> dt.date:
    """Validate ``value`` as a resident ID number and return the birth date it encodes."""
    number = validate_resident_id(value, field, today=today)
    return _birth_date(number, field, today)


# ---------------------------------------------------------------------------
# Phone numbers
# ---------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-]+")


def validate_phone(value: object, field: str = "phone") -> str:
    """Validate a mainland China phone number and return it normalised.

    * Mobile (手机): 11 digits, first ``1``, second ``3``-``9``. An optional ``+86`` or
      ``86`` country prefix and spaces / hyphens are accepted; the result is the bare 11
      digits, e.g. ``"+86 138-1234-5678"`` -> ``"13812345678"``.
    * Landline (固定电话): area code (区号) ``0`` + 2-3 digits, optional hyphen or space,
      then a 7-8 digit local number; the result is ``"0xx-xxxxxxxx"``. The 3-digit area
      codes are ``010`` (Beijing) and ``02x``; all other area codes have 4 digits, which
      is how ``"075512345678"`` is split as ``"0755-12345678"``. With the ``+86``
      prefix only mobile numbers are accepted. Extensions are refused.
    """
    raw = _require_str(value, field, "phone number")
    compact = _SEPARATORS.sub("", raw)
    country_prefix = False
    if compact.startswith("+86"):
        compact, country_prefix = compact[3:], True
    elif compact.startswith("86") and len(compact) == 13:
        compact, country_prefix = compact[2:], True
    if not compact:
        raise FieldError(field, f"phone number {raw!r} has no digits", "invalid_format")
    if not compact.isascii() or not compact.isdigit():
        bad = next((c for c in compact if not ("0" <= c <= "9")), compact[:1])
        raise FieldError(
            field,
            f"phone number {raw!r} contains {bad!r}; only digits, spaces, hyphens "
            "and a leading +86 are allowed",
            "invalid_format",
        )
    if compact.startswith("1"):
        if len(compact) != 11:
            raise FieldError(
                field,
                f"mobile number must have 11 digits, got {len(compact)}",
                "invalid_format",
            )
        if compact[1] not in "3456789":
            raise FieldError(
                field,
                f"mobile number second digit must be 3-9, got {compact[1]!r}",
                "invalid_format",
            )
        return compact
    if compact.startswith("0") and not country_prefix:
        area_length = 3 if compact.startswith(("010", "02")) else 4
        area, local = compact[:area_length], compact[area_length:]
        groups = _SEPARATORS.split(raw)
        if len(groups) > 1 and groups[0] != area:
            raise FieldError(
                field,
                f"area code {groups[0]!r} is not valid: only 010 and 02x have 3 digits, "
                "all other area codes have 4 digits (0 + 3 digits)",
                "invalid_format",
            )
        if not 7 <= len(local) <= 8:
            raise FieldError(
                field,
                f"landline local number after area code {area} must have 7 or 8 digits, "
                f"got {len(local)}",
                "invalid_format",
            )
        return f"{area}-{local}"
    if country_prefix:
        reason = "after the +86 country code a mobile number starting with 1 is expected"
    else:
        reason = (
            f"phone number {raw!r} is neither a mobile number (11 digits starting with 1) "
            "nor a landline (area code starting with 0)"
        )
    raise FieldError(field, reason, "invalid_format")


# ---------------------------------------------------------------------------
# Money (integer fen 分)
# ---------------------------------------------------------------------------

_DECIMAL_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")


def validate_money_fen(value: object, field: str = "amount_fen") -> int:
    """Validate an amount of money given as integer fen (分) >= 0 and return it."""
    if value is None:
        raise FieldError(field, "is required", "required")
    if isinstance(value, bool):
        raise FieldError(field, "money must be integer fen, not a boolean", "invalid_type")
    if isinstance(value, float):
        raise FieldError(field, "money must be integer fen, not a float", "invalid_type")
    if not isinstance(value, int):
        raise FieldError(
            field, f"money must be integer fen, not {_type_name(value)}", "invalid_type"
        )
    if value < 0:
        raise FieldError(
            field, f"money must not be negative, got {value} fen", "out_of_range"
        )
    return value


def yuan_to_fen(value: str | Decimal | int, field: str = "amount_yuan") -> int:
    """Convert an amount in yuan (元) to integer fen (分) without any rounding.

    Accepts an ``int`` >= 0, a ``Decimal`` or a plain decimal string such as ``"30000"``
    or ``"300.50"``. Amounts that cannot be expressed exactly in fen (more than 2
    significant decimal places, e.g. ``"300.505"``), negative amounts, floats, and
    strings with signs, separators or exponents are refused with a :class:`FieldError`.
    Trailing zeros are harmless: ``"300.500"`` is 30050 fen.
    """
    if value is None:
        raise FieldError(field, "is required", "required")
    if isinstance(value, bool):
        raise FieldError(field, "amount must be a number of yuan, not a boolean", "invalid_type")
    if isinstance(value, float):
        raise FieldError(
            field,
            "amount must be a decimal string or Decimal, not a float",
            "invalid_type",
        )
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-") and _DECIMAL_TEXT.fullmatch(text[1:]):
            raise FieldError(field, f"amount must not be negative, got {text}", "out_of_range")
        if not _DECIMAL_TEXT.fullmatch(text):
            raise FieldError(
                field,
                f"amount {value!r} is not a plain decimal number of yuan like '300.50'",
                "invalid_format",
            )
        try:
            amount = Decimal(text)
        except InvalidOperation:  # pragma: no cover - excluded by the regex
            raise FieldError(field, f"amount {value!r} is not a number", "invalid_format") from None
    else:
        raise FieldError(
            field,
            f"amount must be a decimal string, Decimal or int, not {_type_name(value)}",
            "invalid_type",
        )
    if not amount.is_finite():
        raise FieldError(field, f"amount {value!r} is not a finite number", "invalid_format")
    if amount < 0:
        raise FieldError(field, f"amount must not be negative, got {amount}", "out_of_range")
    # Exact integer arithmetic: Decimal multiplication would round to the context precision.
    _sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    coefficient = int("".join(map(str, digits)) or "0")
    if exponent >= -2:
        return coefficient * 10 ** (exponent + 2)
    scale = 10 ** (-exponent - 2)
    if coefficient % scale:
        raise FieldError(
            field,
            f"amount {str(value)!r} has more than 2 decimal places; "
            "the smallest unit is 0.01 yuan (1 fen)",
            "invalid_format",
        )
    return coefficient // scale


def fen_to_yuan_str(fen: int) -> str:
    """Format integer fen as yuan with exactly two decimals: 3000000 -> ``"30000.00"``.

    Negative amounts are formatted with a leading ``-``. Raises ``TypeError`` for
    anything but an ``int`` (``bool`` and ``float`` included).
    """
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"fen must be an int, got {_type_name(fen)}")
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan}.{cents:02d}"


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def validate_date(value: object, field: str = "date") -> dt.date:
    """Accept a ``datetime.date`` or an ISO ``yyyy-mm-dd`` string and return a date.

    ``datetime.datetime`` values are refused (they carry a time of day).
    """
    if value is None:
        raise FieldError(field, "is required", "required")
    if isinstance(value, dt.datetime):
        raise FieldError(field, "must be a date, not a datetime", "invalid_type")
    if isinstance(value, dt.date):
        return value
    text = _require_str(value, field, "date")
    if not _ISO_DATE.fullmatch(text):
        raise FieldError(
            field, f"must be an ISO date yyyy-mm-dd, got {text!r}", "invalid_format"
        )
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise FieldError(field, f"{text!r} is not a real calendar date", "not_a_date") from None


# ---------------------------------------------------------------------------
# Masking for logs and read models
# ---------------------------------------------------------------------------


def _mask(value: str, keep_start: int, keep_end: int) -> str:
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[-keep_end:]


def mask_resident_id(value: str) -> str:
    """Keep the first 6 and last 4 characters: ``"110105********002X"``.

    Values of 10 characters or fewer are masked completely.
    """
    return _mask(value.strip(), 6, 4)


def mask_phone(value: str) -> str:
    """Keep the first 3 and last 4 characters: ``"138****5678"``.

    Values of 7 characters or fewer are masked completely.
    """
    return _mask(value.strip(), 3, 4)


def mask_name(value: str) -> str:
    """Keep the first character of a name: ``"张三丰"`` -> ``"张**"``, ``"张"`` -> ``"*"``."""
    name = value.strip()
    if len(name) <= 1:
        return "*" * len(name)
    return name[0] + "*" * (len(name) - 1)


# ---------------------------------------------------------------------------
# Validator (collects errors for a command payload)
# ---------------------------------------------------------------------------

_MISSING: Any = object()
_PATH_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)?((?:\[[0-9]+\])*)")
_INDEX = re.compile(r"\[([0-9]+)\]")


@functools.lru_cache(maxsize=4096)
def _parse_path(path: str) -> tuple[str | int, ...]:
    """``"classes[0].places"`` -> ``("classes", 0, "places")``; ``"[2]"`` -> ``(2,)``."""
    steps: list[str | int] = []
    for segment in path.split("."):
        match = _PATH_SEGMENT.fullmatch(segment)
        if not segment or match is None or (match.group(1) is None and not match.group(2)):
            raise ValueError(f"invalid field path {path!r}")
        if match.group(1) is not None:
            steps.append(match.group(1))
        steps.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return tuple(steps)


def _join(prefix: str, field: str) -> str:
    if not prefix:
        return field
    if field.startswith("["):
        return prefix + field
    return f"{prefix}.{field}"


class Validator:
    """Collect :class:`FieldError` for a command payload instead of raising at once.

    Every method returns the cleaned value, or ``None`` when the value is invalid or
    (for ``required=False``) absent, and records an error in the first case::

        v = Validator(payload)
        name = v.text("name", max_length=100)
        code = v.credit_code("credit_code")
        rep = v.text("legal_representative.name")       # data["legal_representative"]["name"]
        for item in v.items("classes", min_items=1):     # item fields: "classes[0].places"
            item.integer("places", min_value=1)
        v.check()                                        # raises ValidationFailed

    Field names are paths: ``"a.b"`` reads ``data["a"]["b"]`` and ``"a[0].b"`` reads
    ``data["a"][0]["b"]``; errors are reported under the full path. A missing value,
    ``None`` and (for text-like fields) a blank string count as absent.
    """

    def __init__(self, data: Mapping[str, Any], *, _prefix: str = "",
                 _errors: list[FieldError] | None = None) -> None:
        if not isinstance(data, Mapping):
            raise TypeError(f"Validator needs a mapping, got {_type_name(data)}")
        self.data = data
        self._prefix = _prefix
        self._errors: list[FieldError] = [] if _errors is None else _errors
        if not _prefix:
            # The whole payload, once: what no field check reads (raw values, unknown keys)
            # must not carry what the store cannot hold either.
            self._errors.extend(check_json_value(data))

    # -- bookkeeping ------------------------------------------------------

    @property
    def errors(self) -> list[FieldError]:
        """The errors recorded so far (shared with nested validators)."""
        return list(self._errors)

    @property
    def ok(self) -> bool:
        return not self._errors

    def path(self, field: str) -> str:
        """The full path of ``field`` as used in error reports."""
        return _join(self._prefix, field)

    def add_error(self, field: str, reason: str, code: str) -> None:
        """Record a custom error, e.g. for a rule involving several fields."""
        self._errors.append(FieldError(self.path(field), reason, code))

    def check(self) -> None:
        """Raise :class:`ValidationFailed` with every recorded error, if there are any."""
        if self._errors:
            raise ValidationFailed(self._errors)

    def _get(self, field: str) -> Any:
        """Return the value at ``field``; ``_MISSING`` if absent (records type errors)."""
        current: Any = self.data
        walked = self._prefix
        for step in _parse_path(field):
            if isinstance(step, int):
                if not isinstance(current, Sequence) or isinstance(current, (str, bytes)):
                    self._record(field, f"{walked or 'value'} must be a list, got "
                                        f"{_type_name(current)}", "invalid_type")
                    return _MISSING
                if step >= len(current):
                    return _MISSING
                current = current[step]
                walked = f"{walked}[{step}]"
            else:
                if not isinstance(current, Mapping):
                    self._record(field, f"{walked or 'value'} must be an object, got "
                                        f"{_type_name(current)}", "invalid_type")
                    return _MISSING
                if step not in current:
                    return _MISSING
                current = current[step]
                walked = _join(walked, step)
            if current is None:
                return _MISSING
        return current

    def _record(self, field: str, reason: str, code: str) -> None:
        self._append(FieldError(self.path(field), reason, code))

    def _append(self, error: FieldError) -> None:
        """Record ``error`` unless its field has one already (e.g. from the payload check)."""
        if not any(e.field == error.field for e in self._errors):
            self._errors.append(error)

    def _present(self, field: str, required: bool, *, blank_is_absent: bool = True) -> Any:
        """Value at ``field`` or ``_MISSING``; records ``required`` if needed."""
        before = len(self._errors)
        value = self._get(field)
        if blank_is_absent and isinstance(value, str) and not value.strip():
            value = _MISSING
        if value is _MISSING and required and len(self._errors) == before:
            self._record(field, "is required", "required")
        return value

    def _delegate(self, field: str, required: bool, func: Any, *args: Any) -> Any:
        value = self._present(field, required)
        if value is _MISSING:
            return None
        try:
            return func(value, self.path(field), *args)
        except FieldError as error:
            self._append(error)
            return None

    # -- field types ------------------------------------------------------

    def required(self, field: str) -> Any:
        """Return the raw value, recording ``required`` if it is missing, None or blank."""
        value = self._present(field, True)
        return None if value is _MISSING else value

    def text(self, field: str, max_length: int = 200, required: bool = True,
             multiline: bool = False) -> str | None:
        """A string, NFC-normalised and stripped of surrounding whitespace, at most
        ``max_length`` characters, without control characters or lone surrogates (see
        :func:`clean_text`). ``multiline`` allows tab and line breaks (as ``\\n``)."""
        value = self._present(field, required)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self._record(field, f"must be a string, got {_type_name(value)}", "invalid_type")
            return None
        try:
            return clean_text(value, self.path(field), max_length, multiline)
        except FieldError as error:
            self._append(error)
            return None

    def texts(self, field: str, min_items: int = 0, max_items: int = MAX_ITEMS,
              max_length: int = 200, multiline: bool = False, required: bool = True,
              choices: Iterable[str] | None = None) -> list[str] | None:
        """A list of non-blank strings, each checked like :meth:`text` (or, given
        ``choices``, like :meth:`choice`) under its own path (``field[0]``...); ``None`` if
        the list or any item is refused."""
        value = self._present(field, required, blank_is_absent=False)
        if value is _MISSING:
            return None
        if not isinstance(value, (list, tuple)):
            self._record(field, f"must be a list, got {_type_name(value)}", "invalid_type")
            return None
        if len(value) < min_items:
            self._record(field, f"must have at least {min_items} item(s), got {len(value)}",
                         "out_of_range")
            return None
        if len(value) > max_items:
            self._record(field, f"must have at most {max_items} item(s), got {len(value)}",
                         "out_of_range")
            return None
        allowed = None if choices is None else list(choices)
        items = [self.text(f"{field}[{i}]", max_length, multiline=multiline)
                 if allowed is None else self.choice(f"{field}[{i}]", allowed)
                 for i in range(len(value))]
        return None if any(item is None for item in items) else items  # type: ignore[misc]

    def choice(self, field: str, choices: Iterable[str], required: bool = True) -> str | None:
        """One of ``choices`` (compared exactly, no stripping or case folding)."""
        allowed = list(choices)
        value = self._present(field, required)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self._record(field, f"must be a string, got {_type_name(value)}", "invalid_type")
            return None
        if value not in allowed:
            listed = ", ".join(repr(str(c)) for c in allowed)
            shown = repr(value) if len(value) <= 60 else repr(value[:60] + "…")
            self._record(field, f"must be one of {listed}, got {shown}", "invalid_choice")
            return None
        return value

    def integer(
        self,
        field: str,
        min_value: int | None = None,
        max_value: int | None = None,
        required: bool = True,
    ) -> int | None:
        """An ``int`` (not ``bool``, not a float, not a string of digits) within bounds; a bound
        not given is bigint's (:data:`BIGINT_MIN`, :data:`BIGINT_MAX`)."""
        value = self._present(field, required, blank_is_absent=False)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            kind = "a boolean" if isinstance(value, bool) else f"a {_type_name(value)}"
            if isinstance(value, str):
                kind = "a string"
            self._record(field, f"must be an integer, not {kind}", "invalid_type")
            return None
        low = BIGINT_MIN if min_value is None else min_value
        high = BIGINT_MAX if max_value is None else max_value
        if value < low:
            self._record(field, f"must be at least {low}, got {_shown_int(value)}",
                         "out_of_range")
            return None
        if value > high:
            self._record(field, f"must be at most {high}, got {_shown_int(value)}",
                         "out_of_range")
            return None
        return value

    def boolean(self, field: str, required: bool = True) -> bool | None:
        """A real ``bool`` (``0``/``1`` and ``"true"`` are refused)."""
        value = self._present(field, required, blank_is_absent=False)
        if value is _MISSING:
            return None
        if not isinstance(value, bool):
            self._record(field, f"must be true or false, got {_type_name(value)}",
                         "invalid_type")
            return None
        return value

    def credit_code(self, field: str, required: bool = True) -> str | None:
        """See :func:`validate_credit_code`."""
        return self._delegate(field, required, validate_credit_code)

    def resident_id(self, field: str, required: bool = True) -> str | None:
        """See :func:`validate_resident_id`."""
        return self._delegate(field, required, validate_resident_id)

    def phone(self, field: str, required: bool = True) -> str | None:
        """See :func:`validate_phone`."""
        return self._delegate(field, required, validate_phone)

    def money_fen(self, field: str, required: bool = True) -> int | None:
        """See :func:`validate_money_fen`."""
        value = self._present(field, required, blank_is_absent=False)
        if value is _MISSING:
            return None
        try:
            return validate_money_fen(value, self.path(field))
        except FieldError as error:
            self._append(error)
            return None

    def date(self, field: str, required: bool = True) -> dt.date | None:
        """See :func:`validate_date`."""
        return self._delegate(field, required, validate_date)

    # -- structure --------------------------------------------------------

    def nested(self, field: str, required: bool = True) -> Validator:
        """A validator for the object at ``field`` (e.g. ``"address"`` or ``"classes[0]"``).

        It shares this validator's error list, so its errors are reported (under the full
        path) by this validator's :meth:`check`. If the object is absent or not an object,
        one error is recorded here (unless absent and ``required=False``) and a detached
        validator over ``{}`` is returned whose own errors are discarded.
        """
        value = self._present(field, required, blank_is_absent=False)
        if value is _MISSING:
            return Validator({}, _prefix=self.path(field), _errors=[])
        if not isinstance(value, Mapping):
            self._record(field, f"must be an object, got {_type_name(value)}", "invalid_type")
            return Validator({}, _prefix=self.path(field), _errors=[])
        return Validator(value, _prefix=self.path(field), _errors=self._errors)

    def items(
        self,
        field: str,
        min_items: int = 0,
        max_items: int | None = MAX_ITEMS,
        required: bool = True,
    ) -> list[Validator]:
        """Validators for each object in the list at ``field`` (``field[0]``, ``field[1]``...).

        Records an error and returns ``[]`` if the list is absent (and required), not a
        list, or has fewer than ``min_items`` / more than ``max_items`` (by default
        :data:`MAX_ITEMS`) entries.
        """
        value = self._present(field, required, blank_is_absent=False)
        if value is _MISSING:
            return []
        if not isinstance(value, (list, tuple)):
            self._record(field, f"must be a list, got {_type_name(value)}", "invalid_type")
            return []
        if len(value) < min_items:
            self._record(field, f"must have at least {min_items} item(s), got {len(value)}",
                         "out_of_range")
            return []
        if max_items is not None and len(value) > max_items:
            self._record(field, f"must have at most {max_items} item(s), got {len(value)}",
                         "out_of_range")
            return []
        return [self.nested(f"{field}[{i}]") for i in range(len(value))]
