"""Coverage-guided fuzzing (bench/fuzz.py, atheris) at CI scale, and proof the harness can fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris has wheels for Linux x86_64 only (a dev dependency there)")

ROOT = Path(__file__).resolve().parents[2]
RUNS = 20_000


def fuzz(tmp_path: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["-c", code] if code else ["-m", "bench.fuzz"]
    return subprocess.run(
        [sys.executable, *command, f"-artifact_prefix={tmp_path}/", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_parser_survives_coverage_guided_inputs(tmp_path: Path) -> None:
    done = fuzz(tmp_path, f"-runs={RUNS}", "-seed=1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Done {RUNS} runs" in done.stderr
    assert not list(tmp_path.glob("crash-*"))


# A parser that breaks its contract once the input is a real webhook (it needs "CallSid=" from
# the dictionary to get there): the same harness must find it, save the input and fail.
_BROKEN = """
import sys
import bench.fuzz as f

def broken(data: bytes) -> None:
    f.twilio_webhook_target(data)
    if b"CallSid=" in data:
        raise TypeError("contract broken")

f.TARGETS = (broken,)
f.main([sys.argv[0], *sys.argv[1:]])
"""


def test_the_harness_reports_a_contract_violation(tmp_path: Path) -> None:
    done = fuzz(tmp_path, "-runs=2000000", "-seed=1", code=_BROKEN)
    assert done.returncode != 0
    assert "TypeError: contract broken" in done.stdout + done.stderr
    (crash,) = tmp_path.glob("crash-*")
    assert b"CallSid=" in crash.read_bytes()
