"""The records writer applies a batch of changes as if it applied them one by one, and a
transferred call's record stays live until the phone call ends, whatever order its reports
come in."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.records.changes import ANSWERED, CallChange, TimelineEntry, record_id_for
from app.records.database import create_engine, upgrade
from app.records.limits import MemoryLiveCalls
from app.records.models import CallRecord, Delivery
from app.records.service import CallRecords

T0 = datetime(2026, 12, 2, 10, tzinfo=UTC)
SID = "CA00000000000000000000000000000b01"
RECORD = record_id_for("twilio", SID)


@pytest.fixture
async def records(database_url: str) -> AsyncIterator[CallRecords]:
    engine = create_engine(database_url)
    await upgrade(engine)
    records = CallRecords(engine, MemoryLiveCalls(None), retention_days=0, outbox_delay=60)
    try:
        yield records
    finally:
        await engine.dispose()


def answered(ultravox_call_id: str | None) -> CallChange:
    return CallChange(
        at=T0,
        record_id=RECORD,
        ultravox_call_id=ultravox_call_id,
        provider="twilio",
        provider_call_ids=(SID,),
        create=True,
        direction="inbound",
        outcome=ANSWERED,
        fields={"route": "sales"},
    )


def transfer_started(ultravox_call_id: str | None = None) -> CallChange:
    at = T0 + timedelta(seconds=30)
    return CallChange(
        at=at,
        ultravox_call_id=ultravox_call_id,
        provider="twilio",
        provider_call_ids=(SID,),
        timeline=TimelineEntry(at, "transfer", "transfer.started", {}, key="transfer:t1:started"),
    )


def agent_ended(**keys: object) -> CallChange:
    at = T0 + timedelta(seconds=31)
    return CallChange(
        at=at,
        ends=True,
        ended_by="ultravox",
        fields={"end_reason": "hangup"},
        timeline=TimelineEntry(at, "ultravox", "call.ended", {}, key="ultravox:call.ended"),
        **keys,  # type: ignore[arg-type]
    )


def phone_ended() -> CallChange:
    at = T0 + timedelta(seconds=300)
    return CallChange(
        at=at,
        provider="twilio",
        provider_call_ids=(SID,),
        fields={"provider_status": "completed"},
        ends=True,
        ended_by="provider",
        timeline=TimelineEntry(at, "provider", "status.completed", {}, key="status:completed:"),
    )


async def stored(records: CallRecords) -> tuple[CallRecord, list[Delivery]]:
    async with records.sessions() as session:
        record = await session.get(CallRecord, RECORD)
        deliveries = (await session.execute(select(Delivery))).scalars().all()
    assert record is not None
    return record, list(deliveries)


async def test_an_agent_end_found_by_an_id_given_earlier_in_its_batch_leaves_a_transfer_live(
    records: CallRecords,
) -> None:
    """The record learns its Ultravox call id in the same batch as Ultravox's end report that
    names only that id: one by one, the end finds the transfer and leaves the record live; the
    batch must too."""
    await records._write([answered(None)])
    await records._write([transfer_started()])

    [first, second] = await records._write([answered("uv-1"), agent_ended(ultravox_call_id="uv-1")])

    record, deliveries = await stored(records)
    assert first is not None and second is not None and not second.ended_now
    assert (record.state, record.ended_by, record.end_reason, deliveries) == (
        "live",
        None,
        "hangup",
        [],
    )


@pytest.mark.parametrize("batched", [False, True], ids=["one_by_one", "one_batch"])
async def test_a_transfer_written_after_the_agent_call_ended_leaves_the_record_live(
    records: CallRecords, batched: bool
) -> None:
    """The transfer step is queued (written after up to GATHER_SECONDS) while Ultravox's
    call.ended is written at once: the end can land first. The record must come out as it does
    in the other order: live, no summary queued, ended by the provider's status callback."""
    await records._write([answered("uv-1")])
    changes = [agent_ended(ultravox_call_id="uv-1"), transfer_started("uv-1")]
    if batched:
        await records._write(changes)
    else:
        for change in changes:
            await records._write([change])

    talking, queued = await stored(records)
    assert (talking.state, talking.ended_by, talking.ended_at, talking.delivery_status) == (
        "live",
        None,
        None,
        None,
    )
    assert (talking.end_reason, queued) == ("hangup", [])

    [applied] = await records._write([phone_ended()])
    over, [delivery] = await stored(records)
    assert applied is not None and applied.ended_now
    assert (over.state, over.ended_by, over.ended_at, delivery.call_id) == (
        "ended",
        "provider",
        T0 + timedelta(seconds=300),
        RECORD,
    )


async def test_a_transfer_does_not_reopen_a_call_whose_summary_went_out(
    records: CallRecords,
) -> None:
    """Once the end summary is delivered the record's end stands: a transfer step written
    after it (a very late write) only joins the timeline."""
    await records._write([answered("uv-1"), agent_ended(ultravox_call_id="uv-1")])
    async with records.sessions.begin() as session:
        record = await session.get(CallRecord, RECORD)
        assert record is not None
        record.delivery_status = "delivered"
        (await session.execute(select(Delivery))).scalar_one().status = "delivered"

    await records._write([transfer_started("uv-1")])

    record, [delivery] = await stored(records)
    assert (record.state, record.ended_by, delivery.status) == ("ended", "ultravox", "delivered")


async def test_the_agent_leaving_a_transferred_call_gives_its_live_call_slot_back(
    database_url: str,
) -> None:
    """The slot counts the call's Ultravox call (README: given back at Ultravox's call.ended):
    once the caller is with a person the record stays live, but the slot is free, so that a
    service without status callbacks does not refuse calls for an hour after each transfer."""
    engine = create_engine(database_url)
    await upgrade(engine)
    live = MemoryLiveCalls(1)
    records = CallRecords(engine, live, retention_days=0, outbox_delay=60)
    try:
        assert await live.acquire(RECORD, "sales", None, 3600)
        await records._write([answered("uv-1")])
        await records._write([transfer_started("uv-1")])
        assert not await live.acquire("another-call", "sales", None, 3600)

        [applied] = await records._write([agent_ended(ultravox_call_id="uv-1")])
        await records._after([applied])

        record, _ = await stored(records)
        assert record.state == "live"
        assert await live.acquire("another-call", "sales", None, 3600)
    finally:
        await engine.dispose()
