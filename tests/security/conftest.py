"""Stand-in ngrok/tailscale executables (tests/exposure/bin) first on PATH."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

BIN = Path(__file__).resolve().parent.parent / "exposure" / "bin"

Calls = Callable[[], list[dict[str, object]]]


@pytest.fixture
def fake_bin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Calls:
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_ARGV_LOG", str(log))
    for var in (
        "NGROK_AUTHTOKEN",
        "FAKE_NGROK_MODE",
        "FAKE_TS_STATE",
        "FAKE_TS_HANG",
        "FAKE_TS_FUNNEL",
        "FAKE_TS_FAIL_PATH",
        "FAKE_TS_NO_YES",
    ):
        monkeypatch.delenv(var, raising=False)

    def calls() -> list[dict[str, object]]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    return calls
