"""Failed sign-ins per address: the burst, the refill, the Retry-After, the memory bound."""

import pytest

from app.client_address import client_key
from app.console import attempts
from app.console.attempts import SignInAttempts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ten_failures_lock_out_until_one_refills() -> None:
    clock = Clock()
    tries = SignInAttempts(clock)
    for _ in range(10):
        assert tries.retry_after("198.51.100.7") == 0
        tries.failed("198.51.100.7")
    assert tries.retry_after("198.51.100.7") == 60
    assert tries.retry_after("198.51.100.8") == 0
    clock.now += 45
    assert tries.retry_after("198.51.100.7") == 15
    clock.now += 15
    assert tries.retry_after("198.51.100.7") == 0
    tries.failed("198.51.100.7")
    assert tries.retry_after("198.51.100.7") == 60


def test_memory_is_bounded_forgetting_refilled_buckets_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(attempts, "MAX_CLIENTS", 100)
    clock = Clock()
    tries = SignInAttempts(clock)
    for number in range(50):
        tries.failed(f"early-{number}")
    clock.now += 60  # the early ones have refilled: nothing to remember about them
    for number in range(50):
        tries.failed(f"recent-{number}")
    tries.failed("one-more")
    assert sorted(tries._buckets) == sorted([f"recent-{n}" for n in range(50)] + ["one-more"])

    for number in range(200):  # none refilled: the least recent tenth goes
        tries.failed(f"flood-{number}")
    assert len(tries._buckets) < 100
    assert "flood-199" in tries._buckets and "recent-0" not in tries._buckets


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_a_client_is_its_address_or_its_ipv6_64(address: str | None, key: str) -> None:
    assert client_key(address) == key
