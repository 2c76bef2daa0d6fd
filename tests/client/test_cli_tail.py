from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from tests.client.cli_run import run
from tests.client.fake_server import Failure, FakeVoiceCall, TailLeg
from voicecall_client import VoiceCallClient
from voicecall_client.client import TAIL_BATCH
from voicecall_client.v1 import voicecall_service_pb2 as pb

# --- tail ---------------------------------------------------------------------------------------------


def _tail_events() -> list[pb.CallEvent]:
    cid = "3f2a9c1e-0000-4000-8000-000000000001"
    evs = [
        pb.CallEvent(sequence=12, call_id=cid, state_changed=pb.StateChanged(state=pb.CALL_STATE_RINGING)),
        pb.CallEvent(
            sequence=13,
            call_id=cid,
            caller_speech=pb.CallerSpeech(transcript="yes please", is_final=True, confidence=0.92),
        ),
        pb.CallEvent(
            sequence=14, call_id=cid, caller_speech=pb.CallerSpeech(transcript="ye", is_final=False)
        ),
        pb.CallEvent(sequence=15, call_id=cid, bot_speech=pb.BotSpeech(text='Hello "there"')),
        pb.CallEvent(sequence=16, call_id=cid, dtmf=pb.Dtmf(digits="12#")),
        pb.CallEvent(sequence=17, call_id=cid, error=pb.CallError(message="tts failed")),
        pb.CallEvent(
            sequence=18,
            call_id=cid,
            state_changed=pb.StateChanged(state=pb.CALL_STATE_COMPLETED, end_reason=pb.END_REASON_HANGUP_BOT),
        ),
    ]
    for i, ev in enumerate(evs):
        ev.event_time.FromJsonString(f"2026-11-22T05:01:0{i}.345Z")
    return evs


def test_tail_human_format(capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall) -> None:
    fake.events = _tail_events()
    rc, out, err = run(capsys, "--server", target, "tail")
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        "#12 2026-11-22T05:01:00.345Z 3f2a9c1e state ringing",
        '#13 2026-11-22T05:01:01.345Z 3f2a9c1e caller "yes please" (final, 0.92)',
        '#14 2026-11-22T05:01:02.345Z 3f2a9c1e caller "ye" (partial)',
        '#15 2026-11-22T05:01:03.345Z 3f2a9c1e bot "Hello \\"there\\""',
        "#16 2026-11-22T05:01:04.345Z 3f2a9c1e dtmf 12#",
        '#17 2026-11-22T05:01:05.345Z 3f2a9c1e error "tts failed"',
        "#18 2026-11-22T05:01:06.345Z 3f2a9c1e state completed (end: hangup-bot)",
    ]
    assert fake.of("Tail")[0].request == pb.TailRequest(call_id="", after_sequence=0, max_batch=TAIL_BATCH)


def test_tail_json_since_and_call_id(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    events = _tail_events()
    fake.events = events
    cid = events[0].call_id
    rc, out, _ = run(capsys, "--server", target, "tail", "--call-id", cid, "--since", "16", "--json")
    assert rc == 0
    lines = out.splitlines()
    assert [json.loads(line) for line in lines] == [MessageToDict(e) for e in events[-2:]]
    assert all(", " not in line and ": " not in line for line in lines)  # compact
    assert fake.of("Tail")[0].request == pb.TailRequest(call_id=cid, after_sequence=16, max_batch=TAIL_BATCH)


def test_tail_reports_reconnects_on_stderr(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicecall_client import client as client_module

    monkeypatch.setattr(client_module, "TAIL_BACKOFF_INITIAL", 0.001)
    fake.events = _tail_events()
    drop = Failure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", "the sidecar is shutting down")
    refused = Failure(grpc.StatusCode.UNAVAILABLE, message="failed to connect: Connection refused")
    fake.tail_legs = [
        TailLeg(count=2, fail=drop),
        TailLeg(count=0, fail=refused),
        TailLeg(count=0, fail=refused),  # a repeat of the same failure is not reported again
        TailLeg(count=1, fail=drop),
        TailLeg(),
    ]
    rc, out, err = run(capsys, "--server", target, "tail")
    assert rc == 0
    assert [line.split()[0] for line in out.splitlines()] == [f"#{i}" for i in range(12, 19)]
    assert err.splitlines() == [
        "voicecall: tail: UNAVAILABLE SHUTTING_DOWN: the sidecar is shutting down; reconnecting in 0.0 s",
        f"voicecall: tail: UNAVAILABLE: cannot reach {target} (connection refused); reconnecting in 0.0 s",
        "voicecall: tail: UNAVAILABLE SHUTTING_DOWN: the sidecar is shutting down; reconnecting in 0.0 s",
    ]


def test_interrupt_exits_0_for_tail_and_130_elsewhere(
    capsys: pytest.CaptureFixture[str], target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def interrupted(self: VoiceCallClient, *a: Any, **kw: Any) -> AsyncIterator[pb.CallEvent]:
        raise KeyboardInterrupt
        yield pb.CallEvent()

    async def interrupted_status(self: VoiceCallClient, call_id: str) -> pb.Call:
        raise KeyboardInterrupt

    monkeypatch.setattr(VoiceCallClient, "tail", interrupted)
    monkeypatch.setattr(VoiceCallClient, "status", interrupted_status)
    assert run(capsys, "--server", target, "tail") == (0, "", "")
    assert run(capsys, "--server", target, "status", "--call-id", "c1") == (130, "", "")
