"""Bearer-style secrets shared with a client (API tokens, a PBX's token)."""

import hmac
from collections.abc import Sequence


def matches_any(presented: bytes, secrets: Sequence[bytes]) -> bool:
    """Whether `presented` is one of `secrets`. Every secret is compared, in constant time, so
    the time taken tells neither how close a guess came nor which secret matched."""
    matches = [hmac.compare_digest(presented, secret) for secret in secrets]
    return bool(presented) and any(matches)
