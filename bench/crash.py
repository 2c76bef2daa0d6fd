"""Crash consistency: Initiates under load, SIGKILL at random moments, restart, check the invariants.

After every kill the durable state must show: each acknowledged Initiate exists exactly once (a retry
with the same request_id returns the same call and never creates a second one), the event log's
sequences run 1, 2, 3, ... with no gap, and Tail from any sequence returns exactly the rest.

``python -m bench.crash --cycles 50`` runs the full version; tests/reliability runs 10 cycles.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc
from voicecall_server.store import Store

from .proc import SidecarProcess


def crash_config() -> dict[str, Any]:
    return {
        "provider": "mock",
        "fromNumber": "+15550000000",
        "maxConcurrentCalls": 100000,
        "outbound": {"defaultMode": "notify", "notifyHangupDelaySec": 0},
        "mock": {"answerAfterMs": 15},
        "staleCallReaperSeconds": 0,
    }


def request_for(i: int) -> pb.InitiateRequest:
    return pb.InitiateRequest(
        to_number=f"+1555{i:07d}", message=f"hello {i}", mode=pb.CALL_MODE_NOTIFY, request_id=f"req-{i:06d}"
    )


@dataclass
class CrashReport:
    cycles: int = 0
    sent: int = 0
    acknowledged: int = 0
    retried: int = 0
    calls: int = 0
    events: int = 0
    tail_checks: int = 0
    never_dialed: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CrashRun:
    workdir: Path
    seed: int = 1
    workers: int = 8
    kill_after: tuple[float, float] = (0.05, 0.5)
    report: CrashReport = field(default_factory=CrashReport)
    acked: dict[str, str] = field(default_factory=dict)  # request_id -> call_id
    unsure: set[int] = field(default_factory=set)  # sent, no answer before the kill
    next_index: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.sidecar = SidecarProcess(self.workdir, crash_config())

    @property
    def store_dir(self) -> Path:
        return self.workdir / "store"

    async def _worker(self, stub: pb_grpc.VoiceCallServiceAsyncStub) -> None:
        while True:
            i = self.next_index
            self.next_index += 1
            self.unsure.add(i)
            self.report.sent += 1
            try:
                resp = await stub.Initiate(request_for(i), timeout=5)
            except grpc.aio.AioRpcError as err:
                if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    await asyncio.sleep(0.01)
                    continue  # stays unsure: retried after the restart
                self.report.violations.append(f"req-{i}: unexpected {err.code().name}: {err.details()}")
                self.unsure.discard(i)
                continue
            self._ack(i, resp.call_id, "first attempt")

    def _ack(self, i: int, call_id: str, how: str) -> None:
        rid = request_for(i).request_id
        previous = self.acked.get(rid)
        if previous is not None and previous != call_id:
            self.report.violations.append(f"{rid}: {how} returned {call_id}, first acknowledged {previous}")
        self.acked[rid] = call_id
        self.unsure.discard(i)

    async def _load_then_kill(self) -> None:
        async with grpc.aio.insecure_channel(self.sidecar.grpc_target) as channel:
            stub = pb_grpc.VoiceCallServiceStub(channel)
            await self._retry(stub)
            tasks = [asyncio.create_task(self._worker(stub)) for _ in range(self.workers)]
            await asyncio.sleep(self.rng.uniform(*self.kill_after))
            self.sidecar.kill()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _retry(self, stub: pb_grpc.VoiceCallServiceAsyncStub) -> None:
        """Resend every unanswered request and a sample of answered ones, with the same request_id."""
        sample = self.rng.sample(sorted(self.acked), min(5, len(self.acked)))
        for i in sorted(self.unsure):
            resp = await stub.Initiate(request_for(i), timeout=5)
            self.report.retried += 1
            self._ack(i, resp.call_id, "retry")
        for rid in sample:
            resp = await stub.Initiate(request_for(int(rid.split("-")[1])), timeout=5)
            self.report.retried += 1
            if resp.call_id != self.acked[rid]:
                self.report.violations.append(f"{rid}: retry returned another call {resp.call_id}")

    def check_store(self) -> None:
        store = Store(self.store_dir)
        try:
            seqs: list[int] = []
            after = 0
            while batch := store.events_after(after, limit=5000):
                seqs.extend(e.sequence for e in batch)
                after = batch[-1].sequence
            if seqs != list(range(1, len(seqs) + 1)):
                gaps = [b for a, b in itertools.pairwise(seqs) if b != a + 1][:5]
                self.report.violations.append(f"event log not gap-free from 1 (first breaks at {gaps})")
            self.report.events = len(seqs)
            for rid, call_id in self.acked.items():
                rec = store.get_call(call_id)
                if rec is None:
                    self.report.violations.append(
                        f"{rid}: acknowledged call {call_id} missing from the store"
                    )
            self.report.calls = store.count_calls()
        finally:
            store.close()

    def check_counts(self) -> None:
        """With every request answered, one call per request_id: nothing was created twice."""
        if self.unsure:
            self.report.violations.append(f"{len(self.unsure)} requests never answered")
        if len(set(self.acked.values())) != len(self.acked):
            self.report.violations.append("two request_ids share a call")
        if self.report.calls != len(self.acked):
            self.report.violations.append(
                f"{self.report.calls} calls stored for {len(self.acked)} request_ids (a duplicate dial)"
            )
        store = Store(self.store_dir)
        try:
            calls = store.list_calls(live_only=False, limit=10**7, before=None)
        finally:
            store.close()
        pids = [c.provider_call_id for c in calls]
        # Killed between the commit and the dial: the restart must end it, never dial it late.
        stuck = [c.call_id for c in calls if not c.provider_call_id and not c.terminal]
        if stuck:
            self.report.violations.append(f"{len(stuck)} undialed calls left live after restart: {stuck[:3]}")
        dialed = [p for p in pids if p]
        self.report.never_dialed = len(pids) - len(dialed)
        if len(set(dialed)) != len(dialed):
            self.report.violations.append("a provider call id appears twice (dialed twice)")

    async def check_tail(self, samples: int = 3) -> None:
        store = Store(self.store_dir)
        try:
            all_events = []
            after = 0
            while batch := store.events_after(after, limit=5000):
                all_events.extend(batch)
                after = batch[-1].sequence
        finally:
            store.close()
        if not all_events:
            return
        async with grpc.aio.insecure_channel(self.sidecar.grpc_target) as channel:
            stub = pb_grpc.VoiceCallServiceStub(channel)
            for _ in range(samples):
                start = self.rng.randrange(0, len(all_events))
                want = [(e.sequence, e.call_id) for e in all_events[start:]]
                stream = stub.Tail(
                    pb.TailRequest(after_sequence=all_events[start].sequence - 1 if start else 0)
                )
                got: list[tuple[int, str]] = []
                try:
                    async with asyncio.timeout(15):
                        async for item in stream:
                            got.append((item.event.sequence, item.event.call_id))
                            if len(got) >= len(want):
                                break
                finally:
                    stream.cancel()
                self.report.tail_checks += 1
                if got[: len(want)] != want:
                    self.report.violations.append(f"Tail from {start} did not return exactly the rest")

    async def run(self, cycles: int) -> CrashReport:
        began = time.monotonic()
        for _ in range(cycles):
            self.sidecar.start()
            await self._load_then_kill()
            self.report.cycles += 1
            self.check_store()
        self.sidecar.start()
        try:
            async with grpc.aio.insecure_channel(self.sidecar.grpc_target) as channel:
                await self._retry(pb_grpc.VoiceCallServiceStub(channel))
            self.check_store()
            self.check_counts()
            await self.check_tail()
        finally:
            self.sidecar.stop()
        self.report.acknowledged = len(self.acked)
        self.report.seconds = round(time.monotonic() - began, 2)
        return self.report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="voicecall-crash-") as tmp:
        report = asyncio.run(CrashRun(Path(tmp), seed=args.seed).run(args.cycles))
    print(json.dumps(report.as_dict(), indent=1))
    raise SystemExit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
