from __future__ import annotations

from contextlib import aclosing

import grpc
import pytest

from tests.client.fake_server import Failure, FakeVoiceCall, TailLeg
from voicecall_client import Unauthenticated, Unavailable, VoiceCallClient, VoiceCallError
from voicecall_client import client as client_module
from voicecall_client.v1 import voicecall_service_pb2 as pb


def _events(n: int, call_id: str = "call-a") -> list[pb.CallEvent]:
    return [
        pb.CallEvent(sequence=i, call_id=call_id, bot_speech=pb.BotSpeech(text=f"e{i}"))
        for i in range(1, n + 1)
    ]


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "TAIL_BACKOFF_INITIAL", 0.001)
    monkeypatch.setattr(client_module, "TAIL_BACKOFF_MAX", 0.004)


async def test_tail_resumes_across_two_drops_without_gaps_or_duplicates(
    client: VoiceCallClient, fake: FakeVoiceCall
) -> None:
    fake.events = _events(10)
    fake.tail_legs = [
        TailLeg(count=3, fail=Failure(grpc.StatusCode.UNAVAILABLE)),  # transport drop
        # The server replays from 2 (an overlap) and then cuts us off as a slow consumer.
        TailLeg(
            resend_from=2, count=6, fail=Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "SUBSCRIBER_TOO_SLOW")
        ),
        TailLeg(),
    ]
    retries: list[tuple[grpc.StatusCode, float]] = []
    got = [
        ev.sequence
        async for ev in client.tail(
            "call-a", after_sequence=0, on_retry=lambda e, d: retries.append((e.code, d))
        )
    ]
    assert got == list(range(1, 11))
    assert [(r.request.call_id, r.request.after_sequence) for r in fake.of("Tail")] == [
        ("call-a", 0),
        ("call-a", 3),
        ("call-a", 7),
    ]
    assert [code for code, _ in retries] == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]


async def test_tail_starts_after_the_given_sequence(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    fake.events = _events(6)
    got = [ev.sequence async for ev in client.tail(after_sequence=4)]
    assert got == [5, 6]
    assert fake.of("Tail")[0].request == pb.TailRequest(
        call_id="", after_sequence=4, max_batch=client_module.TAIL_BATCH
    )


async def test_tail_unpacks_batches_and_resumes_after_the_last_event_yielded(
    client: VoiceCallClient, fake: FakeVoiceCall
) -> None:
    fake.events = _events(10)
    fake.tail_legs = [
        # Two messages of three, then the stream drops in the middle of the burst.
        TailLeg(count=6, batch=3, fail=Failure(grpc.StatusCode.UNAVAILABLE)),
        # The server replays an overlap inside one batch: 5 and 6 are dropped, 7 on are new.
        TailLeg(resend_from=5, batch=4),
    ]
    got = [ev.sequence async for ev in client.tail(after_sequence=0)]
    assert got == list(range(1, 11))
    assert [r.request.after_sequence for r in fake.of("Tail")] == [0, 6]


async def test_tail_drops_events_at_or_below_the_resume_point(
    client: VoiceCallClient, fake: FakeVoiceCall
) -> None:
    fake.events = _events(5)
    fake.tail_legs = [TailLeg(resend_from=1)]  # a server that ignores after_sequence
    assert [ev.sequence async for ev in client.tail(after_sequence=3)] == [4, 5]


async def test_tail_backoff_doubles_to_the_cap_and_resets_after_an_event(
    client: VoiceCallClient, fake: FakeVoiceCall
) -> None:
    drop = Failure(grpc.StatusCode.UNAVAILABLE)
    fake.events = _events(2)
    fake.tail_legs = [
        TailLeg(count=0, fail=drop),
        TailLeg(count=0, fail=drop),
        TailLeg(count=0, fail=drop),
        TailLeg(count=0, fail=drop),
        TailLeg(count=1, fail=drop),  # one event resets the backoff
        TailLeg(count=0, fail=drop),
        TailLeg(),
    ]
    delays: list[float] = []
    got = [ev.sequence async for ev in client.tail(on_retry=lambda e, d: delays.append(d))]
    assert got == [1, 2]
    assert delays == [0.001, 0.002, 0.004, 0.004, 0.001, 0.002]


async def test_tail_without_reconnect_raises(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    fake.events = _events(5)
    fake.tail_legs = [TailLeg(count=2, fail=Failure(grpc.StatusCode.UNAVAILABLE, message="dropped"))]
    got: list[int] = []

    async def consume() -> None:
        async for ev in client.tail(reconnect=False):
            got.append(ev.sequence)

    with pytest.raises(Unavailable, match="dropped"):
        await consume()
    assert got == [1, 2]


async def test_tail_raises_errors_it_cannot_resume(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    fake.failures["Tail"] = [Failure(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", "bad token")]
    with pytest.raises(Unauthenticated) as info:
        async for _ in client.tail():
            pass
    assert info.value.reason == "UNAUTHENTICATED"
    assert len(fake.of("Tail")) == 1


async def test_tail_can_be_closed_early_while_the_stream_is_open(
    client: VoiceCallClient, fake: FakeVoiceCall
) -> None:
    fake.events = _events(3)
    fake.tail_legs = [TailLeg(hold=True)]
    async with aclosing(client.tail()) as events:
        async for ev in events:
            if ev.sequence == 3:
                break
    # The client (and its channel) still works after the stream was cancelled.
    with pytest.raises(VoiceCallError):
        await client.status("unknown")
