from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

BIN = Path(__file__).parent / "bin"

Calls = Callable[[], list[dict[str, object]]]


@pytest.fixture
def fake_bin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Calls:
    """Put the stand-in ngrok/tailscale first on PATH; returns a reader of what they recorded."""
    for name in ("ngrok", "tailscale"):
        assert os.access(BIN / name, os.X_OK), f"{name} stand-in must be executable"
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_ARGV_LOG", str(log))
    for var in ("NGROK_AUTHTOKEN", "FAKE_NGROK_MODE", "FAKE_TS_STATE", "FAKE_TS_HANG", "FAKE_TS_FUNNEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("FAKE_TS_FAIL_PATH", raising=False)
    monkeypatch.delenv("FAKE_TS_NO_YES", raising=False)

    def calls() -> list[dict[str, object]]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    return calls
