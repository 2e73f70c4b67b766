"""Phone numbers in the one form the service compares and logs them in: E.164."""

import re

_SEPARATORS = re.compile(r"[\s\-().]")
_DIGITS = re.compile(r"^\+?\d{6,15}$")


def to_e164(number: str) -> str:
    """`number` in E.164 form when it is a phone number written with or without `+`, spaces,
    dashes, dots or brackets (Plivo omits the `+`); anything else (a SIP URI, `anonymous`)
    comes back unchanged."""
    compact = _SEPARATORS.sub("", number.strip())
    if not _DIGITS.match(compact) or compact.lstrip("+").startswith("0"):
        return number.strip()
    return compact if compact.startswith("+") else "+" + compact
