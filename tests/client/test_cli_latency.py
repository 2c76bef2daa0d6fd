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
    assert json.loads(out) == {"callsScanned": 0, "turnLatency": empty, "listenWait": empty}
