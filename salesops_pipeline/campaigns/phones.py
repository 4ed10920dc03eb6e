"""Phone numbers: one canonical form (E.164) for the many ways campaigns write them."""

import re
from functools import lru_cache

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

DEFAULT_REGION = "FR"

# Separators people and exports put in numbers; they never change which number it is.
_SEPARATORS = re.compile(r"[\s.\-()/]")

# The shapes nearly every French number in a campaign takes: +33…, 0033…, 0… with a 9-digit
# national number. They are read here directly; anything else goes through phonenumbers.
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


def normalize_phone(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """`raw` as E.164 (`+33612345678`), or None when it is not a valid number.

    Numbers without a country code are read as numbers of `region`; `0033…` and `+33 …` are
    understood. Invalid numbers give None rather than an error: a campaign keeps them.
    """
    if not raw:
        return None
    compact = _SEPARATORS.sub("", raw)
    if region == "FR":
        french = _FRENCH_SHAPE.fullmatch(compact)
        if french:
            national = french.group(1)
            return f"+33{national}" if _valid_national_number("FR").fullmatch(national) else None
    return _normalize_compact(compact, region)


@lru_cache(maxsize=1 << 16)
def _normalize_compact(compact: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(phone: str | None) -> str:
    """A number safe to log: its country code and last two digits only (`+33*******78`)."""
    if not phone:
        return "<none>"
    digits = re.sub(r"\D", "", phone)
    if len(digits) <= 4:
        return "*" * len(digits)
    head = "+" + digits[:2] if phone.strip().startswith("+") else digits[:2]
    return head + "*" * (len(digits) - 4) + digits[-2:]
