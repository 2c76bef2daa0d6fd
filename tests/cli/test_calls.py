"""`voicecall dtmf` and `voicecall smoke` against the real sidecar (mock provider) on loopback.

The CLI's main() runs its own event loop, so it runs in a thread while the sidecar serves on ours.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from providers.mock import MockProvider
from tests.client.cli_run import free_port
from tests.e2e.harness import Running, make_config, start
from voicecall_client.cli import main
from voicecall_client.v1 import voicecall_service_pb2 as pb


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def mock() -> dict[str, Any]:
    return {}


@pytest.fixture
async def running(tmp_path: Path, mock: dict[str, Any]) -> AsyncIterator[Running]:
    r = await start(make_config(tmp_path / "s", mock=mock))
    try:
        yield r
    finally:
        await r.close()


def target(r: Running) -> str:
    return f"127.0.0.1:{r.sidecar.ports.grpc}"


def provider(r: Running) -> MockProvider:
    assert isinstance(r.sidecar.provider, MockProvider)
    return r.sidecar.provider


async def live_call(r: Running) -> str:
    resp = await r.stub.Initiate(
        pb.InitiateRequest(
            to_number="+15551234567", message="hi", mode=pb.CALL_MODE_CONVERSATION, request_id="r1"
        )
    )
    await r.wait_state(resp.call_id, pb.CALL_STATE_SPEAKING, pb.CALL_STATE_LISTENING)
    return resp.call_id


# --- dtmf -------------------------------------------------------------------------------------------


async def test_dtmf_presses_keys_on_a_live_call(capsys: pytest.CaptureFixture[str], running: Running) -> None:
    call_id = await live_call(running)
    rc, out, err = await cli(
        capsys, "--server", target(running), "dtmf", "--call-id", call_id, "--digits", "ww123#"
    )
    assert (rc, err) == (0, "")
    assert json.loads(out) == {"success": True}
    assert provider(running).dtmf_sent == [(call_id, "ww123#")]


async def test_dtmf_on_an_unknown_call_fails_with_the_server_error(
    capsys: pytest.CaptureFixture[str], running: Running
) -> None:
    rc, out, err = await cli(capsys, "--server", target(running), "dtmf", "-c", "nope", "-d", "1")
    assert (rc, out) == (1, "")
    assert err.startswith("voicecall: NOT_FOUND")


async def test_dtmf_on_an_ended_call_fails(capsys: pytest.CaptureFixture[str], running: Running) -> None:
    call_id = await live_call(running)
    await running.stub.End(pb.EndRequest(call_id=call_id))
    rc, _, err = await cli(capsys, "--server", target(running), "dtmf", "-c", call_id, "-d", "1")
    assert rc == 1
    assert "FAILED_PRECONDITION" in err
    assert provider(running).dtmf_sent == []


@pytest.mark.parametrize("digits", ["12x", "", "1" * 65, "W"])
async def test_dtmf_rejects_bad_digits_before_calling(
    capsys: pytest.CaptureFixture[str], digits: str
) -> None:
    rc, out, err = await cli(capsys, "dtmf", "--call-id", "c1", "--digits", digits)
    assert (rc, out) == (2, "")
    assert "expected 1-64 of 0-9 * # A-D and w" in err


# --- smoke ------------------------------------------------------------------------------------------


async def test_smoke_without_yes_is_a_dry_run_that_checks_the_server(
    capsys: pytest.CaptureFixture[str], running: Running
) -> None:
    rc, out, err = await cli(capsys, "--server", target(running), "smoke", "--to", "+15551234567")
    assert (rc, err) == (0, "")
    data = json.loads(out)
    assert data["dryRun"] is True and data["serverReachable"] is True and data["liveCalls"] == 0
    assert data["wouldCall"] == {
        "to": "+15551234567",
        "mode": "notify",
        "message": "This is a voicecall smoke test. Everything works. Goodbye.",
    }
    assert "--yes" in data["next"]
    assert not (await running.stub.ListCalls(pb.ListCallsRequest())).calls
    assert provider(running).spoken == []


async def test_smoke_dry_run_fails_when_the_server_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    server = f"127.0.0.1:{free_port()}"
    rc, out, err = await cli(capsys, "--server", server, "--timeout", "2", "smoke", "--to", "+15551234567")
    assert (rc, out) == (1, "")
    assert f"cannot reach the voicecall server at {server}" in err


async def test_smoke_with_yes_places_a_notify_call_and_follows_it_to_the_end(
    capsys: pytest.CaptureFixture[str], running: Running
) -> None:
    rc, out, err = await cli(
        capsys, "--server", target(running), "smoke", "--to", "+15551234567", "-m", "Smoke!", "--yes"
    )
    summary = json.loads(out)
    assert rc == 0, (out, err)
    assert summary["completed"] is True and summary["answered"] is True
    assert summary["state"] == "CALL_STATE_HANGUP_BOT"
    assert summary["to"] == "+15551234567" and summary["provider"] == "mock"
    assert summary["botSaid"] == ["Smoke!"]
    call = (await running.stub.Status(pb.StatusRequest(call_id=summary["callId"]))).call
    assert call.mode == pb.CALL_MODE_NOTIFY
    # Progress goes to stderr, one line per event, ending with the terminal state.
    lines = err.splitlines()
    assert (
        lines[0]
        == f"voicecall: smoke: placed call {summary['callId']} to +15551234567; following it (Ctrl-C hangs up)"
    )
    assert lines[-1].endswith(" state hangup-bot (end: hangup-bot)")
    assert summary["events"] == len(lines) - 1


@pytest.mark.parametrize("mock", [{"outcome": "busy"}])
async def test_smoke_exits_1_when_the_call_does_not_complete(
    capsys: pytest.CaptureFixture[str], running: Running
) -> None:
    rc, out, _ = await cli(capsys, "--server", target(running), "smoke", "--to", "+15551234567", "--yes")
    summary = json.loads(out)
    assert rc == 1
    assert (summary["completed"], summary["answered"], summary["state"]) == (False, False, "CALL_STATE_BUSY")


@pytest.mark.parametrize("mock", [{"answerAfterMs": 600_000}])
async def test_smoke_hangs_up_a_call_that_outlives_max_wait(
    capsys: pytest.CaptureFixture[str], running: Running
) -> None:
    rc, out, err = await cli(
        capsys, "--server", target(running), "smoke", "--to", "+15551234567", "--yes", "--max-wait", "0.3"
    )
    summary = json.loads(out)
    assert rc == 1
    assert summary["completed"] is False
    assert "did not end within 0.3 s; hanging up" in err
    # Hung up, not left ringing.
    assert summary["state"] in ("CALL_STATE_HANGUP_BOT", "CALL_STATE_COMPLETED")
    call = (await running.stub.Status(pb.StatusRequest(call_id=summary["callId"]))).call
    assert provider(running).hangups == [call.provider_call_id]


SAFETY_TIMEOUT = 60.0  # only guards against a hang; nothing is asserted about time


@pytest.mark.parametrize("mock", [{"answerAfterMs": 600_000}])
async def test_ctrl_c_during_smoke_hangs_up_the_call(running: Running) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicecall_client.cli",
        "--server",
        target(running),
        "smoke",
        "--to",
        "+15551234567",
        "--yes",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None and proc.stdout is not None
    seen: list[str] = []

    async def until_following() -> None:
        assert proc.stderr is not None
        while not seen or not seen[-1].endswith(" state initiated"):
            line = (await proc.stderr.readline()).decode()
            assert line, f"smoke exited early: {seen!r}"
            seen.append(line.rstrip("\n"))

    await asyncio.wait_for(until_following(), SAFETY_TIMEOUT)
    call_id = seen[0].split("placed call ")[1].split()[0]
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), SAFETY_TIMEOUT)
    assert proc.returncode == 130
    assert out == b""
    assert b"Traceback" not in err
    call = (await running.stub.Status(pb.StatusRequest(call_id=call_id))).call
    assert call.state == pb.CALL_STATE_HANGUP_BOT
    assert provider(running).hangups == [call.provider_call_id]
