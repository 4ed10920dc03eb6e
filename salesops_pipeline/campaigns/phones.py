"""Phone numbers: one canonical form (E.164) for the many ways campaigns write them."""

import re
from functools import lru_cache
from typing import NamedTuple

import phonenumbers
from phonenumbers import ValidationResult
from phonenumbers.phonemetadata import PhoneMetadata

DEFAULT_REGION = "FR"

# Separators people and exports put in numbers; they never change which number it is.
_SEPARATORS = re.compile(r"[\s.\-()/]")

# The shapes nearly every French number in a campaign takes: +33…, 0033…, 0… with a 9-digit
# national number (France's only possible length). They are read here directly; anything else
# goes through phonenumbers.
FRENCH_SHAPE = r"(?:\+33|0033|0)([1-9][0-9]{8})"
_FRENCH_SHAPE = re.compile(FRENCH_SHAPE)

_NUMBER_TYPES = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)


@lru_cache(maxsize=8)
def valid_national_number_pattern(region: str) -> str:
    """phonenumbers' own validity rule for `region`: the national number matches one of the
    region's number-type patterns. Built from its metadata, so both always agree."""
    metadata = PhoneMetadata.metadata_for_region(region)
    patterns = [
        getattr(metadata, name).national_number_pattern
        for name in _NUMBER_TYPES
        if getattr(metadata, name) is not None and getattr(metadata, name).national_number_pattern
    ]
    return "|".join(f"(?:{pattern})" for pattern in patterns)


@lru_cache(maxsize=8)
def _valid_national_number(region: str) -> re.Pattern:
    return re.compile(valid_national_number_pattern(region))


class PhoneReading(NamedTuple):
    """What a number, as a campaign wrote it, is: its E.164 form when phonenumbers can read it
    as a possible number, whether that number is valid today, and otherwise why not."""

    e164: str | None
    valid: bool | None = None  # None when unreadable
    problem: str | None = None  # None when readable


# phonenumbers' reasons, in words an operator reads in a report.
_PARSE_PROBLEMS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}
_LENGTH_PROBLEMS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "impossible length",
}
NO_NUMBER = "no number"


def read_phone(raw: str | None, region: str = DEFAULT_REGION) -> PhoneReading:
    """`raw` read as phonenumbers reads it, numbers without a country code as numbers of
    `region` (`0033…` and `+33 …` are understood).

    Every *possible* number gets its E.164 form, valid or not: ranges that phonenumbers'
    metadata calls unassigned (07 0x…) are still dialled by campaigns, and two campaigns
    calling one of them must be told. Only what cannot be a number has no E.164 form.
    """
    if raw is None or not raw.strip():
        return PhoneReading(None, problem=NO_NUMBER)
    compact = _SEPARATORS.sub("", raw)
    if region == "FR":
        french = _FRENCH_SHAPE.fullmatch(compact)
        if french:
            national = french.group(1)
            valid = _valid_national_number("FR").fullmatch(national) is not None
            return PhoneReading(f"+33{national}", valid)
    return _read_compact(compact, region)


def normalize_phone(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """`raw` as E.164 (`+33612345678`), or None when it cannot be a phone number."""
    return read_phone(raw, region).e164


@lru_cache(maxsize=1 << 16)
def _read_compact(compact: str, region: str) -> PhoneReading:
    try:
        number = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException as error:
        return PhoneReading(None, problem=_PARSE_PROBLEMS.get(error.error_type, "unreadable"))
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        return PhoneReading(None, problem=_LENGTH_PROBLEMS.get(possible, "impossible number"))
    return PhoneReading(
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        phonenumbers.is_valid_number(number),
    )


def mask_phone(phone: str | None) -> str:
    """A number safe to log: its country code and last two digits only (`+33*******78`)."""
    if not phone:
        return "<none>"
    digits = re.sub(r"\D", "", phone)
    if len(digits) <= 4:
        return "*" * len(digits)
    head = "+" + digits[:2] if phone.strip().startswith("+") else digits[:2]
    return head + "*" * (len(digits) - 4) + digits[-2:]
