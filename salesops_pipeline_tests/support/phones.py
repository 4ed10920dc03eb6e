"""phonenumbers' own answer for a number, with no shortcut: what the fast paths of
`campaigns.phones` and `campaigns.contacts` are checked against, and what the duplicates
benchmark compares them with."""

import re

import phonenumbers

# The separators `read_phone` strips; the reference strips the same before parsing.
_SEPARATORS = re.compile(r"[\s.\-()/]")


def read_phone_slow(raw: str | None, region: str = "FR") -> tuple[str | None, bool | None]:
    """(E.164, valid) through phonenumbers alone: every possible number has an E.164 form;
    (None, None) for what cannot be a number."""
    if not raw or not raw.strip():
        return None, None
    try:
        number = phonenumbers.parse(_SEPARATORS.sub("", raw), region)
    except phonenumbers.NumberParseException:
        return None, None
    if not phonenumbers.is_possible_number(number):
        return None, None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.is_valid_number(number)


def normalize_phone_slow(raw: str | None, region: str = "FR") -> str | None:
    """`raw` as E.164 through phonenumbers alone, or None when it cannot be a number."""
    return read_phone_slow(raw, region)[0]
