from __future__ import annotations

import json

import pytest

from tests.client.cli_run import run
from tests.client.fake_server import FakeVoiceCall, make_call
from voicecall_client.v1 import voicecall_service_pb2 as pb

# --- latency ------------------------------------------------------------------------------------------


def _turn(total_ms: int, listen_ms: int | None) -> pb.TurnLatency:
    t = pb.TurnLatency()
    t.total.FromMilliseconds(total_ms)
    if listen_ms is not None:
        t.listen_wait.FromMilliseconds(listen_ms)
    return t


def test_latency_over_the_most_recent_turns(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    newest = make_call("a", turn_latencies=[_turn(100, 50), _turn(200, 60), _turn(300, 70)])
    older = make_call("b", turn_latencies=[_turn(9999, 9999), _turn(1000, 500)])
    oldest = make_call("c", turn_latencies=[_turn(7, 7)])
    fake.listing = [newest, older, oldest]
    fake.max_page = 1
    rc, out, _ = run(capsys, "--server", target, "latency", "--last", "4")
    assert rc == 0
    assert json.loads(out) == {
        "callsScanned": 2,
        "turnLatency": {"count": 4, "minMs": 100, "maxMs": 1000, "avgMs": 400.0, "p50Ms": 200, "p95Ms": 1000},
        "listenWait": {"count": 4, "minMs": 50, "maxMs": 500, "avgMs": 170.0, "p50Ms": 60, "p95Ms": 500},
        "stages": {},
    }
    assert len(fake.of("ListCalls")) == 2  # stopped paging once it had enough turns


def test_latency_skips_missing_listen_wait_and_scans_everything_when_short(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    fake.listing = [make_call("a", turn_latencies=[_turn(120, None), _turn(80, 40)]), make_call("b")]
    rc, out, _ = run(capsys, "--server", target, "latency")
    assert rc == 0
    data = json.loads(out)
    assert data["callsScanned"] == 2
    assert data["turnLatency"] == {
        "count": 2,
        "minMs": 80,
        "maxMs": 120,
        "avgMs": 100.0,
        "p50Ms": 80,
        "p95Ms": 120,
    }
    assert data["listenWait"]["count"] == 1


def test_latency_with_no_calls(capsys: pytest.CaptureFixture[str], target: str) -> None:
    rc, out, _ = run(capsys, "--server", target, "latency", "--last", "10")
    empty = {"count": 0, "minMs": None, "maxMs": None, "avgMs": None, "p50Ms": None, "p95Ms": None}
    assert rc == 0
    assert json.loads(out) == {"callsScanned": 0, "turnLatency": empty, "listenWait": empty, "stages": {}}


def _auto_turn(**stages_ms: int) -> pb.TurnLatency:
    """An auto-responded turn as the server sends it: total = first_audio (or spoken), no listen."""
    t = pb.TurnLatency()
    t.total.FromMilliseconds(stages_ms.get("first_audio", stages_ms.get("spoken", 0)))
    t.listen_wait.FromMilliseconds(0)
    for stage, ms in stages_ms.items():
        t.stages[stage].FromMilliseconds(ms)
    return t


def test_latency_summarises_each_stage_in_pipeline_order(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    streamed = [
        _auto_turn(
            stt_final=100 + i, model=400 + 10 * i, tts_first_byte=600 + 10 * i, first_audio=650 + 10 * i
        )
        for i in range(10)
    ]
    # A reply the provider's own voice spoke: no audio stages; a stage this CLI does not know.
    no_stream = _auto_turn(model=300, spoken=2000, warmup=5)
    fake.listing = [
        make_call("a", turn_latencies=streamed[:6]),
        make_call("b", turn_latencies=[*streamed[6:], no_stream, _turn(900, 800)]),
    ]
    rc, out, _ = run(capsys, "--server", target, "latency")
    assert rc == 0
    data = json.loads(out)
    assert list(data["stages"]) == ["stt_final", "model", "tts_first_byte", "first_audio", "spoken", "warmup"]
    assert data["stages"] == {
        "stt_final": {"count": 10, "p50Ms": 104, "p95Ms": 109},
        "model": {"count": 11, "p50Ms": 440, "p95Ms": 490},
        "tts_first_byte": {"count": 10, "p50Ms": 640, "p95Ms": 690},
        "first_audio": {"count": 10, "p50Ms": 690, "p95Ms": 740},
        "spoken": {"count": 1, "p50Ms": 2000, "p95Ms": 2000},
        "warmup": {"count": 1, "p50Ms": 5, "p95Ms": 5},
    }
    assert data["turnLatency"]["count"] == 12
    assert data["turnLatency"]["maxMs"] == 2000
    # Only the Continue turn listened; auto-responded turns' zero waits are not samples.
    assert data["listenWait"] == {
        "count": 1,
        "minMs": 800,
        "maxMs": 800,
        "avgMs": 800.0,
        "p50Ms": 800,
        "p95Ms": 800,
    }
