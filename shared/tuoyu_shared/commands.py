"""Command payloads declared once, as pydantic v2 models.

A service declares each command's payload as a :class:`Command` subclass whose fields use the
field types below. From that one declaration come

* validation with field-level errors (:func:`parse`): every problem of a payload at once, each
  a :class:`~tuoyu_shared.validation.FieldError` with the field's full path
  (``classes[0].places``), a machine code and an English reason, raised together as one
  :class:`~tuoyu_shared.validation.ValidationFailed` (HTTP 400);
* a JSON Schema per command (:meth:`Command.json_schema`), which the gateway publishes as
  OpenAPI and the catalogue test checks.

The field types delegate to the checks of :mod:`tuoyu_shared.validation` (GB 32100 unified
social credit codes, GB 11643 resident ID numbers, phone numbers, money in integer fen, dates,
text without control characters), so a payload is held to the same rules over HTTP, RPC and
CSV import. Types are strict: ``"3"`` is not an integer, ``1`` is not ``true``, ``1.5`` is not
an amount of fen. A missing, ``null`` or blank value of a required field is ``required``; of
an optional one, absent. Unknown keys are refused (``unknown_field``): a misspelt optional
field would otherwise be dropped without a word.

Rules that involve several fields go in :meth:`Command.rules`, which yields further
``FieldError``s once every field is valid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Annotated, Any, ClassVar, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from tuoyu_shared.validation import (
    BIGINT_MAX,
    BIGINT_MIN,
    MAX_ITEMS,
    FieldError,
    ValidationFailed,
    check_json_value,
    clean_text,
    validate_credit_code,
    validate_date,
    validate_money_fen,
    validate_phone,
    validate_resident_id,
)

__all__ = [
    "Bool",
    "Choice",
    "Choices",
    "Command",
    "CreditCode",
    "Date",
    "InstitutionId",
    "Int",
    "Items",
    "MoneyFen",
    "Phone",
    "ResidentId",
    "Text",
    "Texts",
    "parse",
]

C = TypeVar("C", bound="Command")


class Command(BaseModel):
    """The payload of one command (or the parameters of one query)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True,
                              use_attribute_docstrings=True)

    #: The command's name as the services expose it (``register_institution``); set on
    #: commands that are published in a service's catalogue (:func:`catalogue_of`).
    command_name: ClassVar[str] = ""

    def rules(self) -> Iterable[FieldError]:
        """Rules involving several fields, checked once every field is valid."""
        return ()

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema (2020-12) of the payload."""
        return cls.model_json_schema()

    def data(self) -> dict[str, Any]:
        """The cleaned payload as plain Python values (nested commands as dicts)."""
        return self.model_dump()


# ---------------------------------------------------------------------------
# Field types
# ---------------------------------------------------------------------------


def _absent(value: Any, blank_is_absent: bool) -> bool:
    return value is None or (blank_is_absent and isinstance(value, str) and not value.strip())


def _refuse(error: FieldError) -> PydanticCustomError:
    return PydanticCustomError(error.code, error.reason)


def field_type(check: Callable[[Any], Any], schema: dict[str, Any], optional: bool,
           blank_is_absent: bool = True) -> Any:
    """An annotated type: ``check`` turns a present value into the clean one (raising
    :class:`FieldError` with any field name: the path comes from where it is used)."""

    def validate(value: Any) -> Any:
        if _absent(value, blank_is_absent):
            if optional:
                return None
            raise PydanticCustomError("required", "is required")
        try:
            return check(value)
        except FieldError as error:
            raise _refuse(error) from None

    shown = {"anyOf": [schema, {"type": "null"}]} if optional else schema
    return Annotated[Any, PlainValidator(validate, json_schema_input_type=Any),
                     WithJsonSchema(shown)]


def _type_name(value: object) -> str:
    return type(value).__name__


def Text(max_length: int = 200, *, multiline: bool = False, optional: bool = False) -> Any:
    """A string, NFC-normalised and trimmed, at most ``max_length`` characters, without control
    characters (``multiline`` allows tab and line breaks)."""

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError("", f"must be a string, got {_type_name(value)}", "invalid_type")
        return clean_text(value, "", max_length, multiline)

    return field_type(check, {"type": "string", "minLength": 1, "maxLength": max_length}, optional)


def Choice(choices: Iterable[str], *, optional: bool = False) -> Any:
    """One of ``choices``, compared exactly."""
    allowed = list(choices)

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError("", f"must be a string, got {_type_name(value)}", "invalid_type")
        if value not in allowed:
            listed = ", ".join(repr(str(c)) for c in allowed)
            shown = repr(value) if len(value) <= 60 else repr(value[:60] + "…")
            raise FieldError("", f"must be one of {listed}, got {shown}", "invalid_choice")
        return value

    return field_type(check, {"type": "string", "enum": allowed}, optional)


def Int(min_value: int | None = None, max_value: int | None = None, *,
        optional: bool = False) -> Any:
    """An integer (not a boolean, float or string of digits) within bounds; a bound not given
    is PostgreSQL bigint's."""
    low = BIGINT_MIN if min_value is None else min_value
    high = BIGINT_MAX if max_value is None else max_value

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            kind = "a boolean" if isinstance(value, bool) else f"a {_type_name(value)}"
            if isinstance(value, str):
                kind = "a string"
            raise FieldError("", f"must be an integer, not {kind}", "invalid_type")
        if value < low:
            raise FieldError("", f"must be at least {low}, got {_shown_int(value)}",
                             "out_of_range")
        if value > high:
            raise FieldError("", f"must be at most {high}, got {_shown_int(value)}",
                             "out_of_range")
        return value

    return field_type(check, {"type": "integer", "minimum": low, "maximum": high}, optional,
                  blank_is_absent=False)


def _shown_int(value: int) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}…({len(text)} digits)"


def Bool(*, optional: bool = False) -> Any:
    """``true`` or ``false`` (``0``, ``1`` and ``"true"`` are refused)."""

    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise FieldError("", f"must be true or false, got {_type_name(value)}",
                             "invalid_type")
        return value

    return field_type(check, {"type": "boolean"}, optional, blank_is_absent=False)


def _delegate(func: Callable[[Any, str], Any]) -> Callable[[Any], Any]:
    return lambda value: func(value, "")


def CreditCode(*, optional: bool = False) -> Any:
    """A unified social credit code (统一社会信用代码, GB 32100-2015), check character verified."""
    return field_type(_delegate(validate_credit_code),
                  {"type": "string", "pattern": "^[0-9A-HJ-NP-RT-UW-Y]{18}$",
                   "description": "统一社会信用代码 (GB 32100-2015), 18 characters"}, optional)


def ResidentId(*, optional: bool = False) -> Any:
    """A resident ID number (公民身份号码, GB 11643-1999), check character verified."""
    return field_type(_delegate(validate_resident_id),
                  {"type": "string", "pattern": "^[0-9]{17}[0-9Xx]$",
                   "description": "公民身份号码 (GB 11643-1999), 18 characters"}, optional)


def Phone(*, optional: bool = False) -> Any:
    """A mainland mobile or landline number."""
    return field_type(_delegate(validate_phone), {"type": "string", "maxLength": 30}, optional)


def MoneyFen(*, optional: bool = False) -> Any:
    """An amount of money in integer fen (分; 100 fen = 1 yuan), not negative."""
    return field_type(_delegate(validate_money_fen),
                  {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX,
                   "description": "integer fen (分)"}, optional, blank_is_absent=False)


def Date(*, optional: bool = False) -> Any:
    """A calendar date, ``YYYY-MM-DD``."""
    return field_type(_delegate(validate_date), {"type": "string", "format": "date"}, optional)


def Texts(max_length: int = 200, *, min_items: int = 0, max_items: int = MAX_ITEMS,
          multiline: bool = False) -> Any:
    """A list of non-blank strings, each like :func:`Text`."""
    return Annotated[list[Text(max_length, multiline=multiline)],
                     Field(min_length=min_items, max_length=max_items)]


def Choices(choices: Iterable[str], *, min_items: int = 0, max_items: int = MAX_ITEMS) -> Any:
    """A list of values, each one of ``choices``."""
    return Annotated[list[Choice(choices)], Field(min_length=min_items, max_length=max_items)]


def Items(model: type[Command], *, min_items: int = 0, max_items: int = MAX_ITEMS) -> Any:
    """A list of objects, each a ``model``."""
    return Annotated[list[model], Field(min_length=min_items, max_length=max_items)]


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def _path(loc: tuple[Any, ...]) -> str:
    path = ""
    for step in loc:
        if isinstance(step, int):
            path += f"[{step}]"
        else:
            path = f"{path}.{step}" if path else str(step)
    return path


def _fields_of(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model at ``loc`` (for naming the fields of an object with an unknown key)."""
    current: Any = model
    for step in loc:
        if isinstance(step, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(step)
        if info is None:
            return None
        current = _model_in(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_error(model: type[BaseModel], error: Mapping[str, Any]) -> FieldError:
    loc = tuple(error["loc"])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    field = _path(loc) or "body"
    if kind == "missing":
        return FieldError(field, "is required", "required")
    if kind == "extra_forbidden":
        owner = _walk(model, loc[:-1])
        known = f" (one of {_fields_of(owner)})" if owner is not None else ""
        return FieldError(field, f"is not a field of this command{known}", "unknown_field")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return FieldError(field, f"must be an object, got {_type_name(value)}", "invalid_type")
    if kind == "list_type":
        return FieldError(field, f"must be a list, got {_type_name(value)}", "invalid_type")
    # (a FieldError's own code may be "too_long" as well: pydantic's length errors carry
    # the lengths in their context)
    if kind == "too_short" and "actual_length" in ctx:
        return FieldError(field, f"must have at least {ctx.get('min_length')} item(s), got "
                                 f"{ctx.get('actual_length')}", "out_of_range")
    if kind == "too_long" and "actual_length" in ctx:
        return FieldError(field, f"must have at most {ctx.get('max_length')} item(s), got "
                                 f"{ctx.get('actual_length')}", "out_of_range")
    return FieldError(field, str(error["msg"]), str(kind))


def field_errors(model: type[BaseModel], error: ValidationError) -> list[FieldError]:
    """pydantic's errors as :class:`FieldError`, one per field (the first found)."""
    found: list[FieldError] = []
    for item in error.errors(include_url=False):
        converted = _field_error(model, item)
        if not any(e.field == converted.field for e in found):
            found.append(converted)
    return found


def parse(model: type[C], data: Any) -> C:
    """The command ``model`` read from ``data``, or :class:`ValidationFailed` naming every
    field that is wrong (nothing else happens: a refused command changes nothing)."""
    if not isinstance(data, Mapping):
        raise ValidationFailed([FieldError("body", f"must be an object, got "
                                                   f"{_type_name(data)}", "invalid_type")])
    errors = check_json_value(data)  # depth, characters of every key and value, bigint
    if errors:
        raise ValidationFailed(errors)
    try:
        command = model.model_validate(dict(data))
    except ValidationError as error:
        raise ValidationFailed(field_errors(model, error)) from None
    rule_errors = list(command.rules())
    if rule_errors:
        raise ValidationFailed(rule_errors)
    return command


def catalogue_of(*models: type[Command]) -> dict[str, type[Command]]:
    """A service's commands by name (``command_name``), for its adapters and the gateway."""
    found: dict[str, type[Command]] = {}
    for model in models:
        assert model.command_name, f"{model.__name__} has no command_name"
        assert model.command_name not in found, f"two commands named {model.command_name}"
        found[model.command_name] = model
    return found


def schemas(catalogue: Mapping[str, type[Command]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(command name, JSON Schema)`` of each command in a catalogue."""
    for name, model in sorted(catalogue.items()):
        yield name, model.json_schema()


# ---- free text and people --------------------------------------------------------------------
TEXT_MAX = 4000
#: Free text that may be this long or longer (a legal basis, a reason, a statement) may span
#: lines; names, references and purposes may not.
MULTILINE_FROM = 2000
PERSON_REF = re.compile(r"[0-9a-f]{32}")
_ID_NUMBER_LIKE = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")


def contains_resident_id(text: str) -> bool:
    """Whether a free text holds a valid resident ID number (which must never be stored)."""
    for match in _ID_NUMBER_LIKE.finditer(text):
        try:
            validate_resident_id(match.group(0))
            return True
        except FieldError:
            continue
    return False


# ---- checks and field types used by several commands ------------------------------------------
def _free_text(max_length: int) -> Callable[[Any], str]:
    multiline = max_length >= MULTILINE_FROM

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError("", f"must be a string, got {type(value).__name__}",
                             "invalid_type")
        text = clean_text(value, "", max_length, multiline)
        if contains_resident_id(text):
            raise FieldError("", "must not contain a resident ID number", "personal_data")
        return text

    return check


def FreeText(max_length: int = TEXT_MAX, *, optional: bool = False) -> Any:
    """Free text like :func:`~tuoyu_shared.commands.Text`, never holding a resident ID number
    in clear (``personal_data``); multiline from :data:`MULTILINE_FROM` characters on."""
    return field_type(_free_text(max_length),
                      {"type": "string", "minLength": 1, "maxLength": max_length,
                       "description": "free text, without a resident ID number"}, optional)


def check_person_ref(value: Any) -> str:
    """A person ref: the random pseudonym of a person (32 lowercase hex characters)."""
    if not isinstance(value, str) or not PERSON_REF.fullmatch(value):
        raise FieldError("", "must be a person ref (32 lowercase hex characters)",
                         "invalid_format")
    return value


def PersonRef(*, optional: bool = False) -> Any:
    """A person by ref (:func:`check_person_ref`)."""
    return field_type(check_person_ref, {"type": "string", "pattern": "^[0-9a-f]{32}$",
                                         "description": "person ref (random pseudonym)"},
                      optional)


def check_institution_id(value: Any) -> str:
    """An institution id (a UUID), in its canonical form."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str) and len(value) <= 100:
        try:
            return str(UUID(value))
        except ValueError:
            pass
    shown = repr(value)[:60] if isinstance(value, str) else type(value).__name__
    raise FieldError("", f"must be an institution id (a UUID), got {shown}", "invalid_format")


def InstitutionId(*, optional: bool = False) -> Any:
    """An institution id (:func:`check_institution_id`); a blank one is refused, not absent."""
    return field_type(check_institution_id, {"type": "string", "format": "uuid"}, optional,
                      blank_is_absent=False)
