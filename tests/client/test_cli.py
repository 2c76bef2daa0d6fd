from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from tests.client.cli_run import free_port, run
from tests.client.fake_server import Failure, FakeVoiceCall, make_call
from voicecall_client.cli import COMMANDS
from voicecall_client.v1 import voicecall_service_pb2 as pb

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
    address = f"127.0.0.1:{free_port()}"
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
