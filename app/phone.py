"""Phone numbers in the one form the service compares and logs them in: E.164.

Digits are ASCII only (`[0-9]`, never `\\d`): Python's `\\d` also matches Arabic-Indic,
Devanagari and full-width digits, which no telephone network dials."""

import re

# E.164: +, a country code not starting with 0, at most 15 digits in all.
E164 = re.compile(r"^\+[1-9][0-9]{1,14}\Z")
_SEPARATORS = re.compile(r"[\s\-().]")
_DIGITS = re.compile(r"^\+?[0-9]{6,15}\Z")


def is_ascii_digits(text: str) -> bool:
    """Whether `text` is one or more of 0-9 (`str.isdigit` accepts any script's digits)."""
    return text.isascii() and text.isdigit()


def to_e164(number: str) -> str:
    """`number` in E.164 form when it is a phone number written with or without `+`, spaces,
    dashes, dots or brackets (Plivo omits the `+`); anything else (a SIP URI, `anonymous`)
    comes back unchanged."""
    compact = _SEPARATORS.sub("", number.strip())
    if not _DIGITS.match(compact) or compact.lstrip("+").startswith("0"):
        return number.strip()
    return compact if compact.startswith("+") else "+" + compact


def written_e164(number: str) -> str:
    """A number someone wrote down for us to dial or route (settings, routes file, outbound
    requests) in E.164 form; spaces, dashes and brackets are allowed, the + and the country
    code are required: without them the country would be guessed, and a US number read as
    +41... rings in Switzerland. `ValueError` otherwise."""
    normalised = to_e164(number)
    if not number.strip().startswith("+") or not E164.match(normalised):
        raise ValueError(
            f"{number!r} is not a phone number in E.164 form (+, country code, number, "
            "such as +15005550100)"
        )
    return normalised
