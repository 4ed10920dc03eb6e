"""phonenumbers' own answer for a number, with no shortcut: what the fast paths of
`campaigns.phones` and `campaigns.contacts` are checked against, and what the duplicates
benchmark compares them with."""

import re

import phonenumbers

# The separators `normalize_phone` strips; the reference strips the same before parsing.
_SEPARATORS = re.compile(r"[\s.\-()/]")


def normalize_phone_slow(raw: str | None, region: str = "FR") -> str | None:
    """`raw` as E.164 through phonenumbers alone, or None when it is not a valid number."""
    if not raw:
        return None
    try:
        number = phonenumbers.parse(_SEPARATORS.sub("", raw), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
