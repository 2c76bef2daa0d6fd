"""voicecall-server: --log-format json on a real process, the loop choice, the lazy OpenAI import."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import os
import signal
import socket
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from voicecall_server.app import tune_garbage_collector
from voicecall_server.main import loop_factory, main

SERVER = Path(sys.executable).with_name("voicecall-server")
READ_TIMEOUT_S = 30.0  # only stops a broken start from hanging the test


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VOICECALL_UVLOOP", "VOICECALL_CONFIG", "OPENAI_API_KEY") and not k.startswith("TWILIO_")
    }
    env.update(extra)
    return env


async def read_json_until(stream: asyncio.StreamReader, needle: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        line = await asyncio.wait_for(stream.readline(), READ_TIMEOUT_S)
        if not line:
            raise AssertionError(f"process ended before logging {needle!r}; got {got}")
        got.append(json.loads(line))  # every line must be one JSON object
        if needle in got[-1]["message"]:
            return got


async def test_server_logs_json_lines_and_stops_on_sigterm(tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    config = tmp_path / "voicecall.json5"
    config.write_text(
        json.dumps(
            {
                "provider": "mock",
                "store": str(tmp_path / "store"),
                "serve": {"port": http_port},
                "grpc": {"port": grpc_port},
            }
        )
    )
    proc = await asyncio.create_subprocess_exec(
        str(SERVER),
        "--config",
        str(config),
        "--log-format",
        "json",
        "--log-level",
        "debug",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    assert proc.stderr is not None
    try:
        started = await read_json_until(proc.stderr, "voicecall serving")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), READ_TIMEOUT_S)
        code = await proc.wait()
    first = started[0]
    assert set(first) >= {"ts", "level", "logger", "message"}
    assert first["ts"].endswith("Z")
    assert {"level": "debug", "logger": "voicecall"}.items() <= first.items()
    # uvloop is a dependency wherever it exists, and then it is the loop that runs.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert first["message"].startswith(f"event loop: {loop}")
    serving = started[-1]
    assert serving["level"] == "info"
    assert f"gRPC 127.0.0.1:{grpc_port}" in serving["message"]
    after = [json.loads(line) for line in rest.decode().splitlines()]
    assert "shutting down" in [e["message"] for e in after]
    assert code == 0


def _fake_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("uvloop")
    fake.new_event_loop = asyncio.new_event_loop  # type: ignore[attr-defined]
    fake.__version__ = "0.21.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvloop", fake)


def test_uvloop_runs_by_default_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_uvloop(monkeypatch)
    assert loop_factory({}) == (asyncio.new_event_loop, "uvloop 0.21.0")
    assert loop_factory({"VOICECALL_UVLOOP": "auto"}) == (asyncio.new_event_loop, "uvloop 0.21.0")
    assert loop_factory({"VOICECALL_UVLOOP": "1"}) == (asyncio.new_event_loop, "uvloop 0.21.0")


def test_uvloop_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_uvloop(monkeypatch)
    assert loop_factory({"VOICECALL_UVLOOP": "0"}) == (None, "asyncio")
    assert loop_factory({"VOICECALL_UVLOOP": "off"}) == (None, "asyncio")


def test_missing_uvloop_falls_back_quietly_unless_it_was_required(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # None in sys.modules: the import fails
    assert loop_factory({}) == (None, "asyncio")
    assert "uvloop" not in caplog.text
    assert loop_factory({"VOICECALL_UVLOOP": "1"}) == (None, "asyncio")
    assert "pip install uvloop" in caplog.text


_START_SIDECAR = """
import asyncio, dataclasses, sys
from voicecall_server.app import Sidecar
from voicecall_server.config import config_from_mapping

async def main():
    cfg = config_from_mapping({"provider": "mock", "store": sys.argv[1]}, {})
    cfg = dataclasses.replace(
        cfg, serve=dataclasses.replace(cfg.serve, port=0), grpc=dataclasses.replace(cfg.grpc, port=0)
    )
    sidecar = Sidecar(cfg)
    await sidecar.start()
    await sidecar.stop()

asyncio.run(main())
print(sorted({m.split(".")[0] for m in sys.modules if m == "openai" or m.startswith("openai.")}))
"""


async def run_python(code: str, *args: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), READ_TIMEOUT_S)
    assert proc.returncode == 0, err.decode()
    return out.decode().strip().splitlines()[-1]


async def test_openai_is_not_loaded_without_a_responder(tmp_path: Path) -> None:
    imported = "import sys, voicecall_server.app; print('openai' in sys.modules)"
    assert await run_python(imported, env=clean_env()) == "False"
    assert await run_python(_START_SIDECAR, str(tmp_path / "a"), env=clean_env()) == "[]"


async def test_openai_is_loaded_once_a_responder_is_configured(tmp_path: Path) -> None:
    env = clean_env(OPENAI_API_KEY="sk-test-0123456789abcdef")
    assert await run_python(_START_SIDECAR, str(tmp_path / "b"), env=env) == "['openai']"


def test_the_collector_is_tuned_once_the_sidecar_serves() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == (2_000, 20, 100)
        assert gc.get_freeze_count() > 0  # what startup built is out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_an_empty_voicecall_config_means_no_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VOICECALL_CONFIG", "")
    assert main(["--check-config"]) == 0
    assert json.loads(capsys.readouterr().out)["provider"] == "mock"
