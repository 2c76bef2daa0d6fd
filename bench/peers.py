"""The peers as media-stream targets: the naive aiohttp floor and Pipecat's Twilio transport."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from .proc import ROOT, free_port

PEER_VENV = ROOT / "bench" / ".venv-peer"


def ensure_peer_venv(log: Path) -> str | None:
    """Create bench/.venv-peer with pipecat-ai; return None when ready, else why it is not."""
    py = PEER_VENV / "bin" / "python"
    probe = [str(py), "-c", "import pipecat, fastapi, uvicorn"]
    if py.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return None
    with log.open("ab") as out:
        steps = [
            [sys.executable, "-m", "venv", str(PEER_VENV)],
            [str(py), "-m", "pip", "install", "-q", "pipecat-ai[websocket]", "fastapi", "uvicorn[standard]"],
        ]
        for cmd in steps:
            if subprocess.run(cmd, stdout=out, stderr=out, check=False).returncode != 0:
                return f"could not install pipecat-ai into {PEER_VENV} (see {log})"
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return f"pipecat-ai installed but does not import (see {log})"
    return None


class PeerTarget:
    def __init__(self, kind: str, workdir: Path, cpu: str | None) -> None:
        self.kind = kind
        self.workdir = workdir
        self.cpu = cpu
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        if self.kind == "floor":
            cmd = [sys.executable, "-m", "bench.floor", "--port", str(self.port)]
        else:
            cmd = [
                str(PEER_VENV / "bin" / "python"),
                str(ROOT / "bench" / "pipecat_peer.py"),
                "--port",
                str(self.port),
            ]
        if self.cpu is not None:
            cmd = ["taskset", "-c", self.cpu, *cmd]
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"{self.kind}.log").open("ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT)
        finally:
            log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} peer exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind} peer did not listen within 60 s") from None
                time.sleep(0.05)

    async def open_stream(self, http: aiohttp.ClientSession, i: int) -> tuple[str, dict[str, str], str]:
        return f"ws://127.0.0.1:{self.port}/stream", {}, f"CA{i + 1:032x}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
