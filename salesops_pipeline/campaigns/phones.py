"""Phone numbers: one canonical form (E.164) for the many ways campaigns write them."""

import re
from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "FR"

# Separators people and exports put in numbers; they never change which number it is.
_SEPARATORS = re.compile(r"[\s.\-()/]")


def normalize_phone(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """`raw` as E.164 (`+33612345678`), or None when it is not a valid number.

    Numbers without a country code are read as numbers of `region`; `0033…` and `+33 …` are
    understood. Invalid numbers give None rather than an error: a campaign keeps them.
    """
    if not raw:
        return None
    return _normalize_compact(_SEPARATORS.sub("", raw), region)


@lru_cache(maxsize=1 << 18)
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
