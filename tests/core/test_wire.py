"""The domain record as the contract's messages."""

from __future__ import annotations

from datetime import timedelta

from providers.base import CallMode, Direction
from voicecall_server.domain import CallRecord, CallState, TurnLatency, utcnow
from voicecall_server.wire import call_to_pb


def test_turn_latencies_keep_sub_millisecond_precision() -> None:
    rec = CallRecord(
        "c1", "mock", Direction.OUTBOUND, CallState.LISTENING, "+1", "+2", CallMode.CONVERSATION, utcnow()
    )
    rec.turn_latencies.append(
        TurnLatency(turn=1, total_ms=0.8, listen_wait_ms=0.35, stages={"model": 12.3456, "stt_final": 1500.0})
    )
    (turn,) = call_to_pb(rec).turn_latencies
    assert turn.turn == 1
    assert turn.total.ToTimedelta() == timedelta(microseconds=800)
    assert turn.listen_wait.ToTimedelta() == timedelta(microseconds=350)
    assert turn.stages["model"].ToTimedelta() == timedelta(microseconds=12346)
    assert turn.stages["stt_final"].ToTimedelta() == timedelta(seconds=1.5)
