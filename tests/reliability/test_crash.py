"""SIGKILL the sidecar under Initiate load, restart, and check durability and idempotency (CI scale)."""

from __future__ import annotations

from pathlib import Path

from bench.crash import CrashRun


async def test_kill_restart_cycles_keep_every_acknowledged_call_once(tmp_path: Path) -> None:
    report = await CrashRun(tmp_path, seed=7, kill_after=(0.05, 0.3)).run(10)
    assert report.violations == []
    assert report.cycles == 10
    assert report.acknowledged > 50  # real load went through before the kills
    assert report.retried > 0  # some requests were cut off by a kill and resent
    assert report.calls == report.acknowledged
    assert report.events > report.calls  # every call logged more than its creation
    assert report.tail_checks == 3
