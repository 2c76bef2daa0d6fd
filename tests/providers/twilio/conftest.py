"""A Stoplight Prism mock of Twilio's OpenAPI spec (REST API v2010), once per test session."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PRISM = ROOT / "node_modules" / ".bin" / "prism"
SPEC = ROOT.parent / "shared" / "conformance" / "twilio_api_v2010.prism.json"
START_LIMIT_S = 120.0


@dataclass
class Prism:
    base_url: str
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prism]:
    if not PRISM.exists():
        pytest.fail(f"Stoplight Prism is not installed at {PRISM}: run `npm install` in {ROOT}")
    if not SPEC.exists():
        pytest.fail(f"Twilio's OpenAPI spec is missing: expected {SPEC}")
    port = _free_port()
    log = tmp_path_factory.mktemp("prism") / "prism.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(SPEC)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + START_LIMIT_S
            while "Prism is listening" not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    pytest.fail(
                        f"Prism exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail("Prism did not start listening")
                time.sleep(0.1)
            yield Prism(f"http://127.0.0.1:{port}", log)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
