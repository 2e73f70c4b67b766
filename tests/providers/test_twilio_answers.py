"""The stream answer is written as a string (app/providers/twilio/answers.py): it must be the
bytes the twilio SDK would build, for any join URL Ultravox could hand out."""

import random

import pytest
from twilio.twiml.voice_response import Connect, VoiceResponse

from app.providers.twilio.adapter import _twiml
from app.providers.twilio.answers import stream_twiml


def sdk_stream_twiml(join_url: str) -> str:
    connect = Connect()
    connect.stream(url=join_url)
    response = VoiceResponse()
    response.append(connect)
    return str(response.to_xml())


@pytest.mark.parametrize(
    "join_url",
    [
        "wss://voice.ultravox.ai/calls/6a7b/join?token=abc",
        "wss://x.invalid/a?b=1&c=2",
        'wss://x.invalid/"quoted"',
        "wss://x.invalid/<tag>&amp;",
        "wss://x.invalid/tab\there\nnew\rline",
        "wss://x.invalid/apostrophe'é中文",
        "",
    ],
)
def test_the_stream_answer_is_the_sdk_s(join_url: str) -> None:
    assert stream_twiml(join_url) == sdk_stream_twiml(join_url)


def test_the_stream_answer_is_the_sdk_s_for_random_urls() -> None:
    rng = random.Random(20261202)
    alphabet = "ab:/?=&%#;'\"<>\t\n\r \\é€😀-_.~+"
    for _ in range(3000):
        join_url = "wss://" + "".join(rng.choices(alphabet, k=rng.randint(0, 40)))
        assert stream_twiml(join_url) == sdk_stream_twiml(join_url), join_url


@pytest.mark.parametrize("join_url", ["wss://x.invalid/\ud800a", "wss://x.invalid/\udfff?t=1&u=2"])
def test_a_character_utf_8_cannot_hold_is_a_character_reference_as_from_the_sdk(
    join_url: str,
) -> None:
    """A lone surrogate (from a broken answer of Ultravox's) must not fail the webhook after
    its Ultravox call was created: the answer's bytes are the SDK's."""
    answer = _twiml(stream_twiml(join_url))
    assert answer.body == sdk_stream_twiml(join_url).encode()
