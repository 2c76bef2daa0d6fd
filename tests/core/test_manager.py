"""The call manager on the mock provider: flows, turns, timers, limits, inbound policy, dedupe."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from providers.base import (
    CallMode,
    DialRequest,
    DialResult,
    Direction,
    EndReason,
    EventType,
    ProviderError,
    ProviderErrorKind,
    ProviderEvent,
)
from providers.mock import MockProvider as MockProviderBase
from providers.mock import MockSettings
from voicecall_server.bus import EventBus
from voicecall_server.domain import CallRecord, CallState, EventKind, Speaker
from voicecall_server.errors import CallError, Reason
from voicecall_server.inbound import InboundPolicy
from voicecall_server.manager import CallManager
from voicecall_server.store import Store

from .conftest import FAST, HarnessFactory


async def wait_for_state(
    h_manager: object, call_id: str, *states: CallState, timeout: float = 3.0
) -> CallRecord:
    manager = h_manager
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rec = manager.get(call_id)  # type: ignore[attr-defined]
        if rec.state in states:
            return rec  # type: ignore[no-any-return]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"call {call_id} stuck in {rec.state}, wanted {states}")
        await asyncio.sleep(0.01)


async def test_notify_call_speaks_once_then_hangs_up(harness: HarnessFactory) -> None:
    h = harness()
    await h.start()
    rec = await h.manager.initiate(
        to_number="+15551230001", message="Your build failed", mode=CallMode.NOTIFY
    )
    assert rec.state is CallState.INITIATED and rec.provider_call_id == f"mock-{rec.call_id}"
    done = await wait_for_state(h.manager, rec.call_id, CallState.HANGUP_BOT)
    assert done.end_reason is EndReason.HANGUP_BOT
    assert h.provider.spoken == [(rec.call_id, "Your build failed")]
    assert [(e.speaker, e.text) for e in done.transcript] == [(Speaker.BOT, "Your build failed")]
    assert done.initial_message == ""
    states = [
        e.data["state"]
        for e in h.store.events_after(0, call_id=rec.call_id)
        if e.kind is EventKind.STATE_CHANGED
    ]
    assert states == ["initiated", "ringing", "answered", "speaking", "hangup-bot"]


async def test_conversation_turns_get_caller_replies_and_latency(harness: HarnessFactory) -> None:
    h = harness(caller_replies=("yes", "tomorrow at nine"))
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    await wait_for_state(h.manager, rec.call_id, CallState.SPEAKING, CallState.LISTENING)
    first, _ = await h.manager.continue_turn(rec.call_id, "Can we talk?")
    second, after = await h.manager.continue_turn(rec.call_id, "When?")
    assert (first, second) == ("yes", "tomorrow at nine")
    assert [t.turn for t in after.turn_latencies] == [1, 2]
    assert all(t.total_ms >= t.listen_wait_ms >= 0 for t in after.turn_latencies)
    texts = [(e.speaker, e.text) for e in after.transcript]
    assert texts == [
        (Speaker.BOT, "Hi"),
        (Speaker.BOT, "Can we talk?"),
        (Speaker.CALLER, "yes"),
        (Speaker.BOT, "When?"),
        (Speaker.CALLER, "tomorrow at nine"),
    ]
    assert len({tok for _, tok in h.provider.listens}) == 2  # a fresh turn token per turn


async def test_continue_times_out_with_transcript_timeout(harness: HarnessFactory) -> None:
    h = harness()
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    await wait_for_state(h.manager, rec.call_id, CallState.SPEAKING, CallState.LISTENING)
    with pytest.raises(CallError) as err:
        await h.manager.continue_turn(rec.call_id, "Anyone there?", timeout_s=0.05)
    assert err.value.reason is Reason.TRANSCRIPT_TIMEOUT


async def test_one_turn_at_a_time(harness: HarnessFactory) -> None:
    h = harness(caller_replies=("ok",), reply_after_ms=200)
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    await wait_for_state(h.manager, rec.call_id, CallState.SPEAKING, CallState.LISTENING)
    first = asyncio.create_task(h.manager.continue_turn(rec.call_id, "one"))
    await asyncio.sleep(0.05)
    with pytest.raises(CallError) as err:
        await h.manager.continue_turn(rec.call_id, "two")
    assert err.value.reason is Reason.TURN_IN_PROGRESS
    assert (await first)[0] == "ok"


async def test_stale_turn_token_is_ignored(harness: HarnessFactory) -> None:
    h = harness()
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    await wait_for_state(h.manager, rec.call_id, CallState.SPEAKING, CallState.LISTENING)
    turn = asyncio.create_task(h.manager.continue_turn(rec.call_id, "Question?", timeout_s=1))
    await asyncio.sleep(0.05)
    pid = rec.provider_call_id
    stale = ProviderEvent(EventType.SPEECH, pid, rec.call_id, dedupe_key="s1", turn_token="old", text="stale")
    await h.manager.handle_events([stale])
    assert not turn.done()
    token = h.provider.listens[-1][1]
    fresh = ProviderEvent(EventType.SPEECH, pid, rec.call_id, dedupe_key="s2", turn_token=token, text="fresh")
    await h.manager.handle_events([fresh])
    assert (await turn)[0] == "fresh"


async def test_max_concurrent_counts_only_live_calls(harness: HarnessFactory) -> None:
    h = harness(replace(FAST, max_concurrent_calls=1))
    await h.start()
    first = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    with pytest.raises(CallError) as err:
        await h.manager.initiate(to_number="+15551230002", message="Hi", mode=CallMode.CONVERSATION)
    assert err.value.reason is Reason.MAX_CONCURRENT_CALLS
    await h.manager.end(first.call_id)
    second = await h.manager.initiate(to_number="+15551230002", message="Hi", mode=CallMode.CONVERSATION)
    assert second.call_id != first.call_id


async def test_max_duration_ends_with_timeout_not_hangup_bot(harness: HarnessFactory) -> None:
    h = harness(replace(FAST, max_duration_s=0.1))
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    done = await wait_for_state(h.manager, rec.call_id, CallState.TIMEOUT)
    assert done.end_reason is EndReason.TIMEOUT
    assert h.provider.hangups == [rec.provider_call_id]


@pytest.mark.parametrize(
    ("outcome", "state"),
    [("busy", CallState.BUSY), ("no-answer", CallState.NO_ANSWER), ("failed", CallState.FAILED),
     ("voicemail", CallState.VOICEMAIL)],
)  # fmt: skip
async def test_mock_outcomes(harness: HarnessFactory, outcome: str, state: CallState) -> None:
    h = harness(outcome=outcome)
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.NOTIFY)
    assert (await wait_for_state(h.manager, rec.call_id, state)).end_reason is EndReason(state.value)


async def test_caller_hangup(harness: HarnessFactory) -> None:
    h = harness(hangup_after_ms=30)
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    assert (
        await wait_for_state(h.manager, rec.call_id, CallState.HANGUP_USER)
    ).end_reason is EndReason.HANGUP_USER


async def test_stale_reaper_ends_only_unanswered_calls(harness: HarnessFactory) -> None:
    h = harness(answer_after_ms=60_000)
    await h.start()
    waiting = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    answered = await h.manager.initiate(to_number="+15551230002", message="Hi", mode=CallMode.CONVERSATION)
    await h.manager.handle_events(
        [ProviderEvent(EventType.ANSWERED, answered.provider_call_id, answered.call_id)]
    )
    await asyncio.sleep(0.02)
    assert h.manager.reap_stale(0.01) == 1
    assert (
        await wait_for_state(h.manager, waiting.call_id, CallState.NO_ANSWER)
    ).end_reason is EndReason.NO_ANSWER
    assert not h.manager.get(answered.call_id).terminal


async def test_end_is_idempotent_and_unknown_is_not_found(harness: HarnessFactory) -> None:
    h = harness()
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    first = await h.manager.end(rec.call_id)
    again = await h.manager.end(rec.call_id)
    assert first.state is again.state is CallState.HANGUP_BOT
    assert h.provider.hangups == [rec.provider_call_id]
    with pytest.raises(CallError) as err:
        await h.manager.end("nope")
    assert err.value.reason is Reason.CALL_NOT_FOUND


async def test_speak_before_answer_is_not_active(harness: HarnessFactory) -> None:
    h = harness(answer_after_ms=60_000)
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    with pytest.raises(CallError) as err:
        await h.manager.speak(rec.call_id, "hello?")
    assert err.value.reason is Reason.CALL_NOT_ACTIVE


@pytest.mark.parametrize("bad", ["5551234", "+0123", "+1 555 123", "abc", "+1234567890123456"])
async def test_bad_numbers_are_invalid_phone_number(harness: HarnessFactory, bad: str) -> None:
    h = harness()
    await h.start()
    with pytest.raises(CallError) as err:
        await h.manager.initiate(to_number=bad, message="Hi", mode=CallMode.NOTIFY)
    assert err.value.reason is Reason.INVALID_PHONE_NUMBER


async def test_notify_needs_a_message(harness: HarnessFactory) -> None:
    h = harness()
    await h.start()
    with pytest.raises(CallError) as err:
        await h.manager.initiate(to_number="+15551230001", message="  ", mode=CallMode.NOTIFY)
    assert err.value.reason is Reason.INVALID_FIELD


def inbound(pid: str, caller: str, key: str) -> ProviderEvent:
    return ProviderEvent(
        EventType.RINGING,
        pid,
        direction=Direction.INBOUND,
        from_number=caller,
        to_number="+15550000000",
        dedupe_key=key,
    )


async def test_inbound_allowlist_accepts_and_rejects_once(harness: HarnessFactory) -> None:
    policy = InboundPolicy("allowlist", ("+15557654321",), "Hello there")
    h = harness(replace(FAST, inbound=policy))
    await h.start()
    ok = await h.manager.handle_events([inbound("in-1", "15557654321", "k1")])
    view = ok.calls["in-1"]
    assert not view.rejected and view.direction is Direction.INBOUND
    rec = h.manager.get("in-1")
    assert rec.initial_message == "Hello there" and rec.mode is CallMode.CONVERSATION
    for key in ("k2", "k3"):
        bad = await h.manager.handle_events([inbound("in-2", "+15550009999", key)])
        assert bad.calls["in-2"].rejected
    await asyncio.sleep(0.05)
    assert h.provider.hangups == ["in-2"]
    assert h.manager.find("in-2") is None


async def test_duplicate_events_apply_once_even_after_restart(harness: HarnessFactory) -> None:
    h = harness(answer_after_ms=60_000)
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    dtmf = ProviderEvent(EventType.DTMF, rec.provider_call_id, rec.call_id, dedupe_key="dtmf-1", digits="7")
    await h.manager.handle_events([dtmf])
    await h.manager.handle_events([dtmf])
    await h.stop()
    again = harness(answer_after_ms=60_000)
    await again.start()
    await again.manager.handle_events([dtmf])
    digits = [e for e in again.store.events_after(0, call_id=rec.call_id) if e.kind is EventKind.DTMF]
    assert len(digits) == 1


class ReplySpeakingProvider(MockProviderBase):
    speaks_pending_in_reply = True


async def test_inbound_greeting_rides_in_the_reply_when_the_provider_speaks_there(tmp_path: object) -> None:
    from voicecall_server.bus import EventBus
    from voicecall_server.manager import CallManager
    from voicecall_server.store import Store

    store = Store(tmp_path / "s")  # type: ignore[operator]
    provider = ReplySpeakingProvider()
    policy = InboundPolicy("open", (), "Welcome to voicecall")
    manager = CallManager(replace(FAST, inbound=policy), store, EventBus(), provider)
    await provider.start(manager.handle_events, "http://x/voice/webhook")
    try:
        events = [
            ProviderEvent(
                EventType.RINGING,
                "CA1",
                direction=Direction.INBOUND,
                from_number="+15557654321",
                dedupe_key="r",
            ),
            ProviderEvent(EventType.ANSWERED, "CA1", direction=Direction.INBOUND, dedupe_key="r"),
            ProviderEvent(EventType.ACTIVE, "CA1", dedupe_key="r"),
        ]
        outcome = await manager.handle_events(events)
        assert outcome.calls["CA1"].pending_message == "Welcome to voicecall"
        rec = manager.get("CA1")
        assert [(e.speaker, e.text) for e in rec.transcript] == [(Speaker.BOT, "Welcome to voicecall")]
        assert rec.initial_message == ""
        await asyncio.sleep(0.05)
        assert provider.spoken == []  # not spoken a second time by a live update
        again = await manager.handle_events([ProviderEvent(EventType.ACTIVE, "CA1", dedupe_key="r2")])
        assert again.calls["CA1"].pending_message == ""
    finally:
        await manager.aclose()
        await provider.aclose()
        store.close()


async def test_end_keeps_its_reason_when_the_provider_reports_completed_first(
    harness: HarnessFactory,
) -> None:
    h = harness()
    await h.start()
    rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
    await wait_for_state(h.manager, rec.call_id, CallState.SPEAKING, CallState.LISTENING)
    original = h.provider.hangup

    async def hangup_with_early_callback(ref: object) -> None:
        # The provider's status callback lands while our hang-up request is still in flight.
        done = ProviderEvent(
            EventType.ENDED, rec.provider_call_id, rec.call_id, end_reason=EndReason.COMPLETED
        )
        await h.manager.handle_events([done])
        await original(ref)  # type: ignore[arg-type]

    h.provider.hangup = hangup_with_early_callback  # type: ignore[method-assign]
    ended = await h.manager.end(rec.call_id)
    assert ended.state is CallState.HANGUP_BOT
    assert ended.end_reason is EndReason.HANGUP_BOT


class TimingOutDialProvider(MockProviderBase):
    """The create request times out here, yet the provider placed the call (the worst case)."""

    async def dial(self, request: DialRequest) -> DialResult:
        raise ProviderError(ProviderErrorKind.UNAVAILABLE, "the provider did not answer in time")


async def test_a_call_the_provider_reports_live_after_it_failed_here_is_hung_up_once(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s")
    provider = TimingOutDialProvider(MockSettings())
    manager = CallManager(FAST, store, EventBus(), provider)
    await provider.start(manager.handle_events, "http://127.0.0.1/voice/webhook")
    await manager.start()
    try:
        with pytest.raises(CallError):
            await manager.initiate(to_number="+15551230001", message="Build failed", mode=CallMode.NOTIFY)
        (rec,) = store.list_calls(live_only=False, limit=10, before=None)
        assert rec.state is CallState.FAILED
        # Its status callbacks name the call (callId), so they find the failed record.
        for event in (EventType.RINGING, EventType.ANSWERED):
            await manager.handle_events([ProviderEvent(event, "CA-orphan", rec.call_id)])
        await asyncio.sleep(0.05)
        assert provider.hangups == ["CA-orphan"]
        after = manager.get(rec.call_id)
        assert after.state is CallState.FAILED and after.provider_call_id == "CA-orphan"
        errors = [
            e.data["message"] for e in store.events_after(0, call_id=rec.call_id) if e.kind is EventKind.ERROR
        ]
        assert any("hung it up" in m for m in errors)
        # The provider's own end of the call changes nothing and hangs up nothing more.
        await manager.handle_events(
            [ProviderEvent(EventType.ENDED, "CA-orphan", rec.call_id, end_reason=EndReason.COMPLETED)]
        )
        assert provider.hangups == ["CA-orphan"] and manager.get(rec.call_id).state is CallState.FAILED
    finally:
        await manager.aclose()
        await provider.aclose()
        store.close()
