"""The installed CLI as a real process: Ctrl-C during `tail` exits 0 without a traceback."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading

from tests.client.fake_server import FakeVoiceCall, TailLeg
from voicecall_client.v1 import voicecall_service_pb2 as pb

SAFETY_TIMEOUT = 60.0  # only guards against a hang; nothing is asserted about time


def _read_lines(proc: subprocess.Popen[str], n: int) -> list[str]:
    # A reader thread, not select(): several lines can arrive in one chunk and sit in the
    # TextIO buffer, where select() on the pipe would never see them.
    stdout = proc.stdout
    assert stdout is not None
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            found.put(line.rstrip("\n"))
            if found.qsize() >= n:
                return
        found.put("")  # EOF

    threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    while len(lines) < n:
        try:
            line = found.get(timeout=SAFETY_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no output from voicecall tail; got {lines!r}") from None
        if not line:
            raise AssertionError(f"voicecall tail exited early; got {lines!r}")
        lines.append(line)
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
