from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from tests.client.fake_server import Failure, FakeVoiceCall, TailLeg, make_call
from voicecall_client import VoiceCallClient
from voicecall_client.cli import COMMANDS, main
from voicecall_client.v1 import voicecall_service_pb2 as pb


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- one-shot commands --------------------------------------------------------------------------------


def test_call_prints_call_id_and_leaves_mode_and_to_to_the_server(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    rc, out, err = run(capsys, "--server", target, "call", "--message", "Your order is ready")
    assert (rc, err) == (0, "")
    assert out == '{\n  "callId": "call-1"\n}\n'
    req = fake.of("Initiate")[0].request
    assert (req.to_number, req.message, req.mode) == ("", "Your order is ready", pb.CALL_MODE_UNSPECIFIED)
    assert req.request_id


@pytest.mark.parametrize(
    ("flag", "mode"), [("notify", pb.CALL_MODE_NOTIFY), ("conversation", pb.CALL_MODE_CONVERSATION)]
)
def test_call_mode_to_and_session_key(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall, flag: str, mode: int
) -> None:
    argv = [
        "--server",
        target,
        "call",
        "-t",
        "+15551234567",
        "-m",
        "hi",
        "--mode",
        flag,
        "--session-key",
        "s1",
    ]
    rc, out, _ = run(capsys, *argv)
    assert rc == 0
    assert json.loads(out) == {"callId": "call-1"}
    req = fake.of("Initiate")[0].request
    assert (req.to_number, req.mode, req.session_key) == ("+15551234567", mode, "s1")


def test_continue_prints_transcript_and_passes_turn_timeout(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    rc, out, _ = run(
        capsys,
        "--server",
        target,
        "continue",
        "--call-id",
        "c1",
        "--message",
        "Anything else?",
        "--timeout",
        "12",
    )
    assert rc == 0
    assert json.loads(out) == {"success": True, "transcript": "yes please"}
    req = fake.of("Continue")[0].request
    assert (req.call_id, req.message, req.timeout.seconds) == ("c1", "Anything else?", 12)


def test_continue_without_timeout_leaves_it_unset(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    rc, _, _ = run(capsys, "--server", target, "continue", "-c", "c1", "-m", "ok?")
    assert rc == 0
    assert not fake.of("Continue")[0].request.HasField("timeout")


@pytest.mark.parametrize(
    ("argv", "method"),
    [(["speak", "--call-id", "c1", "--message", "one moment"], "Speak"), (["end", "--call-id", "c1"], "End")],
)
def test_speak_and_end_print_success(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall, argv: list[str], method: str
) -> None:
    rc, out, _ = run(capsys, "--server", target, *argv)
    assert rc == 0
    assert out == '{\n  "success": true\n}\n'
    assert fake.of(method)[0].request.call_id == "c1"


def test_status_prints_the_call_record_in_camel_case(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    call = make_call("c1", session_key="s1")
    call.create_time.FromJsonString("2026-11-22T05:01:02.345Z")
    fake.calls["c1"] = call
    rc, out, _ = run(capsys, "--server", target, "status", "--call-id", "c1")
    assert rc == 0
    data = json.loads(out)
    assert data == MessageToDict(call)
    assert data["callId"] == "c1"
    assert data["providerCallId"] == "mock-c1"
    assert data["state"] == "CALL_STATE_ACTIVE"
    assert data["createTime"] == "2026-11-22T05:01:02.345Z"


def test_status_unknown_prints_found_false_and_exits_1(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    rc, out, err = run(capsys, "--server", target, "status", "--call-id", "nope")
    assert (rc, err) == (1, "")
    assert json.loads(out) == {"found": False}


def test_list_pages_up_to_the_limit_and_filters_live(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    fake.listing = [make_call(f"c{i}") for i in range(5)]
    fake.max_page = 2
    rc, out, _ = run(capsys, "--server", target, "list", "--live", "--limit", "3")
    assert rc == 0
    assert [c["callId"] for c in json.loads(out)] == ["c0", "c1", "c2"]
    reqs = [r.request for r in fake.of("ListCalls")]
    assert all(r.live_only for r in reqs)
    assert [r.page_token for r in reqs] == ["", "2"]


def test_list_default_is_all_calls(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    fake.listing = [make_call("c0", end_reason=pb.END_REASON_COMPLETED, state=pb.CALL_STATE_COMPLETED)]
    rc, out, _ = run(capsys, "--server", target, "list")
    assert rc == 0
    assert [c["callId"] for c in json.loads(out)] == ["c0"]
    assert not fake.of("ListCalls")[0].request.live_only


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
    assert fake.of("Tail")[0].request == pb.TailRequest(call_id="", after_sequence=0)


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
    assert fake.of("Tail")[0].request == pb.TailRequest(call_id=cid, after_sequence=16)


def test_tail_reports_reconnects_on_stderr(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicecall_client import client as client_module

    monkeypatch.setattr(client_module, "TAIL_BACKOFF_INITIAL", 0.001)
    fake.events = _tail_events()
    fake.tail_legs = [
        TailLeg(count=2, fail=Failure(grpc.StatusCode.UNAVAILABLE, message="dropped")),
        TailLeg(),
    ]
    rc, out, err = run(capsys, "--server", target, "tail")
    assert rc == 0
    assert [line.split()[0] for line in out.splitlines()] == [f"#{i}" for i in range(12, 19)]
    assert err == "voicecall: tail: UNAVAILABLE: dropped; reconnecting in 0.0 s\n"


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


# --- globals, errors and usage ------------------------------------------------------------------------


def test_error_line_and_exit_code(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    fake.failures["Speak"] = [
        Failure(grpc.StatusCode.FAILED_PRECONDITION, "CALL_NOT_ACTIVE", "call c1 has ended")
    ]
    rc, out, err = run(capsys, "--server", target, "speak", "--call-id", "c1", "--message", "hi")
    assert (rc, out) == (1, "")
    assert err == "voicecall: FAILED_PRECONDITION CALL_NOT_ACTIVE: call c1 has ended\n"


def test_unauthenticated_hints_at_the_token(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    fake.failures["End"] = [
        Failure(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", "missing bearer token")
    ]
    rc, _, err = run(capsys, "--server", target, "end", "--call-id", "c1")
    assert rc == 1
    assert err.startswith("voicecall: UNAUTHENTICATED UNAUTHENTICATED: missing bearer token (")
    assert "VOICECALL_TOKEN" in err


def test_client_deadline_is_reported_with_a_hint(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    fake.stall.add("End")
    rc, out, err = run(capsys, "--server", target, "--timeout", "0.2", "end", "-c", "c1")
    assert (rc, out) == (1, "")
    assert err == "voicecall: DEADLINE_EXCEEDED: Deadline Exceeded (no answer in time; raise --timeout)\n"
    assert len(fake.of("End")) == 1  # a deadline is not retried


def test_connection_refused_names_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{_free_port()}"
    rc, out, err = run(capsys, "--server", address, "status", "--call-id", "c1")
    assert (rc, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith("voicecall: UNAVAILABLE: ")
    assert address in err
    assert "connection refused" in err
    assert "--server" in err


def test_env_server_and_token(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICECALL_SERVER", target)
    monkeypatch.setenv("VOICECALL_TOKEN", "env-token")
    rc, _, _ = run(capsys, "end", "--call-id", "c1")
    assert rc == 0
    assert fake.of("End")[0].metadata["authorization"] == "Bearer env-token"


def test_globals_may_follow_the_subcommand(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    rc, _, _ = run(capsys, "end", "--call-id", "c1", "--server", target, "--token", "t2", "--timeout", "5")
    assert rc == 0
    (rec,) = fake.of("End")
    assert rec.metadata["authorization"] == "Bearer t2"
    assert rec.time_remaining is not None
    assert rec.time_remaining <= 6.5


def test_global_timeout_sets_the_request_deadline(
    capsys: pytest.CaptureFixture[str], target: str, fake: FakeVoiceCall
) -> None:
    rc, _, _ = run(
        capsys, "--server", target, "--timeout", "4", "continue", "-c", "c1", "-m", "x", "--timeout", "20"
    )
    assert rc == 0
    (rec,) = fake.of("Continue")
    assert rec.request.timeout.seconds == 20  # the subcommand's own --timeout is the turn wait
    run(capsys, "--server", target, "--timeout", "4", "end", "-c", "c1")
    (end,) = fake.of("End")
    assert end.time_remaining is not None
    assert end.time_remaining <= 5.5


def test_unreadable_tls_file_is_one_line(capsys: pytest.CaptureFixture[str], target: str) -> None:
    rc, out, err = run(
        capsys, "--server", target, "--tls-ca", "/nonexistent/ca.pem", "end", "--call-id", "c1"
    )
    assert (rc, out) == (1, "")
    assert err.startswith("voicecall: ")
    assert "/nonexistent/ca.pem" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["call", "--to", "+15551234567"],
        ["call", "--message", "x", "--mode", "shout"],
        ["continue", "-c", "c1", "-m", "x", "--timeout", "0"],
        ["list", "--limit", "0"],
        ["tail", "--since", "-1"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert out == ""
    assert "error:" in err


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_command_help_has_an_example(capsys: pytest.CaptureFixture[str], name: str) -> None:
    rc, out, _ = run(capsys, name, "--help")
    assert rc == 0
    assert "example:" in out
    assert f"voicecall {name}" in out


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for cmd in COMMANDS:
        assert cmd.name in out
    assert "VOICECALL_SERVER" in out


def test_context_repr_hides_the_token() -> None:
    from voicecall_client.cli import build_parser
    from voicecall_client.cli_base import CommandContext

    args = build_parser().parse_args(["--token", "very-secret", "end", "-c", "c1"])
    ctx = CommandContext(args)
    assert "very-secret" not in repr(ctx)
    assert "very-secret" not in repr(ctx.client())
