"""A provider call's record id is the UUID version 5 of its provider and call id, the same on
every replica and across versions of the service (records already stored keep their ids)."""

import random
import uuid

import pytest

from app.records.changes import _RECORD_NAMESPACE, record_id_for


def test_record_ids_are_uuid5_of_provider_and_call_id() -> None:
    rng = random.Random(20261202)
    alphabet = "abcXYZ019:-_ éü€v3"
    for _ in range(5000):
        call_id = "".join(rng.choices(alphabet, k=rng.randrange(0, 40)))
        provider = rng.choice(["twilio", "telnyx", "plivo", "vonage", "exotel", ""])
        expected = str(uuid.uuid5(_RECORD_NAMESPACE, f"{provider}:{call_id}"))
        assert record_id_for(provider, call_id) == expected


def test_a_known_record_id_is_unchanged() -> None:
    # The id the service has always given this call (uuid.uuid5, before the rewrite).
    assert record_id_for("twilio", "CA" + "0" * 32) == "5e07e47f-2aec-5f81-b443-4363b0b41e14"


def test_a_call_id_utf8_cannot_hold_is_refused_as_uuid5_refuses_it() -> None:
    with pytest.raises(UnicodeEncodeError):
        record_id_for("twilio", "CA\udc80")
