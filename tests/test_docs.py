"""The configuration reference is generated from the schema and must match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_reference_lists_every_top_level_key() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for key in (
        "provider",
        "twilio.authToken",
        "streaming.streamPath",
        "grpc.authToken",
        "mock.callerReplies",
    ):
        assert f"| `{key}` |" in text
