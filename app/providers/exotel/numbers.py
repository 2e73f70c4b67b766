"""Exotel's phone numbers: it writes them in national form with a trunk 0 (`09876543210`), the
service compares and logs them in E.164 (`+919876543210`). Digits are ASCII only, and lengths
are bounded before anything is parsed."""

import re

from app.phone import E164

# The countries Exotel serves, and a few more, by ISO code; EXOTEL_DEFAULT_COUNTRY may also be
# a calling code written `+NN` for any other country.
CALLING_CODES = {
    "AE": "971",
    "AU": "61",
    "BD": "880",
    "GB": "44",
    "ID": "62",
    "IN": "91",
    "LK": "94",
    "MY": "60",
    "NP": "977",
    "PH": "63",
    "SA": "966",
    "SG": "65",
    "TH": "66",
    "US": "1",
    "VN": "84",
}
# Longer than any number written with separators; a field past this is not a phone number.
MAX_NUMBER_CHARS = 32
_SEPARATORS = re.compile(r"[ \-().]")
_CALLING_CODE = re.compile(r"\+?([1-9][0-9]{0,2})")
_DIGITS = re.compile(r"(\+|00|0)?([0-9]{6,15})")


def calling_code(country: str) -> str:
    """The calling code (`91`) of an ISO country code (`IN`) or of one written `+91`;
    `ValueError` otherwise."""
    text = country.strip().upper()
    if text in CALLING_CODES:
        return CALLING_CODES[text]
    found = _CALLING_CODE.fullmatch(text)
    if text.startswith("+") and found:
        return found.group(1)
    raise ValueError(
        f"{country!r} is neither one of {', '.join(sorted(CALLING_CODES))} nor a calling code "
        "such as +91"
    )


def to_e164(number: str, country_code: str) -> str:
    """`number` as Exotel writes it (`09876543210`, `+919876543210`, `00919876543210`, or
    digits with the country code and no `+`) in E.164; `ValueError` when it is not a phone
    number of ASCII digits."""
    if len(number) > MAX_NUMBER_CHARS:
        raise ValueError("is too long for a phone number")
    compact = _SEPARATORS.sub("", number.strip())
    found = _DIGITS.fullmatch(compact) if compact.isascii() else None
    if found is None:
        raise ValueError("is not a phone number of ASCII digits")
    prefix, digits = found.groups()
    # The national form's trunk 0 stands for the default country; after +, 00 (the
    # international prefix) or nothing, the digits start with a country code.
    normalised = f"+{country_code}{digits}" if prefix == "0" else f"+{digits}"
    if not E164.match(normalised):
        raise ValueError("is not a phone number in any form Exotel writes")
    return normalised


def national(number: str, country_code: str) -> str:
    """An E.164 number of the default country in Exotel's national form (`0` + the national
    number), as its API is given numbers; other countries' numbers stay in E.164."""
    prefix = f"+{country_code}"
    return "0" + number.removeprefix(prefix) if number.startswith(prefix) else number
