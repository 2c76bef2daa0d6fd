"""The installed CLI as a real process: Ctrl-C during `tail` exits 0 without a traceback."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys

from tests.client.fake_server import FakeVoiceCall, TailLeg
from voicecall_client.v1 import voicecall_service_pb2 as pb

SAFETY_TIMEOUT = 60.0  # only guards against a hang; nothing is asserted about time


def _read_lines(proc: subprocess.Popen[str], n: int) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while len(lines) < n:
            if not sel.select(timeout=SAFETY_TIMEOUT):
                raise AssertionError(f"no output from voicecall tail; got {lines!r}")
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"voicecall tail exited early; got {lines!r}")
            lines.append(line.rstrip("\n"))
    return lines


def test_sigint_during_tail_exits_cleanly(target: str, fake: FakeVoiceCall) -> None:
    fake.events = [
        pb.CallEvent(sequence=i, call_id="abcdef0123", dtmf=pb.Dtmf(digits=str(i))) for i in range(1, 4)
    ]
    fake.tail_legs = [TailLeg(hold=True)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicecall_client.cli", "--server", target, "tail"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = _read_lines(proc, 3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=SAFETY_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert lines == [f"#{i} - abcdef01 dtmf {i}" for i in range(1, 4)]
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert err == ""
