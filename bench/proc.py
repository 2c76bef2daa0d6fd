"""The sidecar as a separate process: config file, free ports, readiness, kill, and /proc figures."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
SERVER_BIN = ROOT / ".venv" / "bin" / "voicecall-server"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_busy_seconds(cpu: int) -> float:
    """Busy time of one CPU (every process on it) from /proc/stat, to spot foreign load."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / CLK_TCK
    return 0.0


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class SidecarProcess:
    """One ``voicecall-server --config FILE`` child; ``raw`` is the plugin config (JSON5 is a superset)."""

    workdir: Path
    raw: dict[str, Any]
    cpu: str | None = None  # taskset -c <cpu>
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    log_level: str = "warning"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "voicecall.json5"

    @property
    def base_http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def write_config(self) -> None:
        raw = dict(self.raw)
        raw["grpc"] = {**raw.get("grpc", {}), "bind": "127.0.0.1", "port": self.grpc_port}
        raw["serve"] = {**raw.get("serve", {}), "bind": "127.0.0.1", "port": self.http_port}
        raw.setdefault("store", str(self.workdir / "store"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(raw, indent=1))

    def start(self, *, timeout: float = 20.0) -> None:
        self.write_config()
        cmd = [str(SERVER_BIN), "--config", str(self.config_path), "--log-level", self.log_level]
        if self.cpu is not None:
            cmd = ["taskset", "-c", self.cpu, *cmd]
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT)
        finally:
            log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # gRPC is the last thing the sidecar starts; wait for its port with plain connects so a
        # channel's reconnect backoff never adds a second to every start.
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.grpc_port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sidecar not ready after {timeout} s: {self.log_tail()}") from None
                time.sleep(0.01)
        with grpc.insecure_channel(self.grpc_target) as channel:
            stub = pb_grpc.VoiceCallServiceStub(channel)
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sidecar exited with {self.proc.returncode}: {self.log_tail()}")
                try:
                    stub.Status(pb.StatusRequest(call_id="readiness-probe"), timeout=0.5)
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.NOT_FOUND:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sidecar not ready after {timeout} s: {self.log_tail()}")
                time.sleep(0.02)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.workdir / "server.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


def python_exe() -> str:
    return sys.executable
