"""`parse_fields` reads a form body or query string exactly as `parse_qsl(text,
keep_blank_values=True)` does, which every provider adapter and signature check relied on."""

import random
from urllib.parse import parse_qsl, quote_plus

import pytest

from app.calltypes import parse_fields

# What bodies are made of: the separators, the escapes (good and broken), letters, non-ASCII.
PIECES = [
    "&",
    "=",
    "+",
    "%",
    "%2B",
    "%2b",
    "%20",
    "%C3%A9",
    "%FF",
    "%G1",
    "%2",
    "a",
    "Z",
    "0",
    "é",
    "€",
    ";",
    " ",
    "CallSid",
    "From",
    "",
]


def random_body(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 30)))


def test_random_bodies_read_as_parse_qsl_reads_them() -> None:
    rng = random.Random(20261202)
    for _ in range(20_000):
        body = random_body(rng)
        assert list(parse_fields(body)) == parse_qsl(body, keep_blank_values=True), body


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ("", ()),
        ("&&", ()),
        ("a", (("a", ""),)),
        ("a=", (("a", ""),)),
        ("=b", (("", "b"),)),
        ("a=b=c", (("a", "b=c"),)),
        ("From=%2B15005550006&To=+1", (("From", "+15005550006"), ("To", " 1"))),
        ("Caller%20Name=J%C3%A9r%C3%B4me", (("Caller Name", "Jérôme"),)),
        ("bad=%FF", (("bad", "\ufffd"),)),
        ("a=1&a=2", (("a", "1"), ("a", "2"))),
    ],
)
def test_fields_in_order_decoded_once(body: str, fields: tuple[tuple[str, str], ...]) -> None:
    assert parse_fields(body) == fields


def test_a_provider_form_round_trips() -> None:
    sent = [("CallSid", "CA" + "0" * 32), ("From", "+15005550006"), ("CallerName", "A & B=C")]
    body = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in sent)
    assert parse_fields(body) == tuple(sent)
