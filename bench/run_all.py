"""``make bench``: every target of the measurement issue, with peers, in one run (~6-8 minutes).

The sidecar (and each peer) runs pinned to CPU 0, this driver to CPU 1. Prints a table, writes
bench/results/bench-<time>.json (+ latest.json) and a PNG chart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from voicecall_client.client import TAIL_BATCH
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc
from voicecall_server.main import loop_factory

from .grpc_load import initiate_throughput, status_at_rate, tail_fanout
from .media_load import MediaRun
from .peers import PeerTarget, ensure_peer_venv
from .proc import SidecarProcess
from .report import plot, print_report
from .state_load import memory_per_live_call, restart_time, speech_latency
from .stats import median_trial
from .voicecall_target import VoicecallTarget
from .webhook_load import webhook_rate

RESULTS = Path(__file__).resolve().parent / "results"
SERVER_CPU, DRIVER_CPU = "0", "1"


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


async def media_level(kind: str, n: int, tmp: Path, window: float, max_calls: int) -> dict[str, Any]:
    work = tmp / f"{kind}-{n}"
    if kind == "voicecall":
        vc = VoicecallTarget(work, SERVER_CPU, tts_seconds=n / 100 + window + 10)
        await vc.start(max_calls=max_calls)
        try:
            assert vc.sidecar is not None
            res = await MediaRun(vc.open_stream, n, window_s=window, sidecar_pid=vc.sidecar.pid).run()
            res["stt_audio_appends"] = vc.voice.stt_appends
        finally:
            await vc.aclose()
    else:
        peer = PeerTarget(kind, work, SERVER_CPU)
        peer.start()
        try:
            res = await MediaRun(peer.open_stream, n, window_s=window, sidecar_pid=peer.pid).run()
        finally:
            peer.stop()
    res["limited_by"] = _limiter(res)
    print(
        f"  {kind:9} N={n:4}: cpu {res['server_cpu_pct_core']:5.1f}% ({res['cpu_pct_per_stream']:.3f}%/stream)"
        f"  p99 {res['interval_ms']['p99']} ms  loss {res['loss_pct']}%  {res['kb_per_stream']} KB/stream"
        f"  held={res['held']}  [{res['limited_by']}]  foreign CPU0/1 {res['foreign_cpu_pct']}%",
        flush=True,
    )
    return res


async def media_levels(
    plan: dict[str, list[int]], tmp: Path, window: float
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Every server at each load, the servers taking turns at each level: the machine's speed
    drifts over minutes on a shared host, and a ratio is only fair between runs minutes apart.
    A server stops after missing the pacing bound twice (200, a target's reference load, is
    always measured). Returns the levels per server and why a server (a peer) could not go on."""
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in plan}
    failed: dict[str, str] = {}
    misses = dict.fromkeys(plan, 0)
    for n in sorted({n for levels in plan.values() for n in levels}):
        for kind, levels in plan.items():
            if n not in levels or kind in failed or (misses[kind] >= 2 and n > 200):
                continue
            try:
                res = await media_level(kind, n, tmp, window, max(levels) + 10)
            except Exception as exc:
                if kind == "voicecall":
                    raise
                failed[kind] = f"{kind} peer failed: {type(exc).__name__}: {exc}"
                continue
            runs[kind].append(res)
            misses[kind] += 0 if res["held"] else 1
    return runs, failed


def _limiter(res: dict[str, Any]) -> str:
    if max(res.get("foreign_cpu_pct", [0, 0])) >= 15:
        return "other processes on the machine"
    if res["driver_cpu_pct_core"] >= 90 or res["driver_late_ticks"] > 5 * res["window_s"]:
        return "driver"
    if res["server_cpu_pct_core"] >= 90:
        return "server CPU"
    return "server pacing" if not res["held"] else "none"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, {int(DRIVER_CPU)})
    result: dict[str, Any] = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    tmp = Path(tempfile.mkdtemp(prefix="voicecall-bench-"))
    began = time.monotonic()
    if "media" in args.sections:
        await media_section(args, result, tmp)
    if "webhooks" in args.sections:
        await webhook_section(args, result, tmp)
    if "grpc" in args.sections:
        await grpc_section(result, tmp, args.trials)
    if "state" in args.sections:
        print("restart and memory", flush=True)
        result["restart"] = restart_time(tmp / "restart", 10000, SERVER_CPU)
        print(f"  restart: {result['restart']}", flush=True)
        result["memory"] = await memory_per_live_call(tmp / "memory", 2000, SERVER_CPU)
        print(f"  memory: {result['memory']}", flush=True)
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


async def media_section(args: argparse.Namespace, result: dict[str, Any], tmp: Path) -> None:
    print("media plane (Twilio Media Streams, full pipeline: STT fake + paced TTS + marks)", flush=True)
    why = ensure_peer_venv(tmp / "peer-install.log") if not args.no_pipecat else "skipped (--no-pipecat)"
    plan = {"voicecall": args.levels, "floor": args.levels}
    if why is None:
        plan["pipecat"] = args.pipecat_levels
    runs, failed = await media_levels(plan, tmp, args.window)
    result["media"] = {kind: levels for kind, levels in runs.items() if levels}
    why = why or failed.get("pipecat")
    if why:
        print(f"  PIPECAT PEER NOT MEASURED: {why}", flush=True)
        result["media"]["pipecat_error"] = why


async def webhook_section(args: argparse.Namespace, result: dict[str, Any], tmp: Path) -> None:

    print("speech start latency", flush=True)
    vc = VoicecallTarget(tmp / "speech", SERVER_CPU, tts_seconds=2)
    await vc.start()
    try:
        result["speech"] = await speech_latency(vc, 15)
        print(f"  {result['speech']}", flush=True)
        print("webhooks", flush=True)
        call_sids: list[str] = []
        async with aiohttp.ClientSession() as session:
            for i in range(20):  # live inbound calls that the status callbacks then refer to
                await vc.open_stream(session, 500000 + i)
                call_sids.append(f"CA{500000 + i + 1:032x}")
        assert vc.sidecar is not None
        # The speech trials' streams have closed: let their reconnect grace expire and the status
        # checks it triggers finish, so that work is not counted against the webhooks.
        await asyncio.sleep(4)
        hooks = []
        seq = 0
        for rate in args.webhook_rates:
            # Status callbacks arrive on the statusCallback URL the provider registers (`type=status`).
            status_url = f"{vc.webhook_url}?type=status"
            trials = []
            for _ in range(args.trials):
                trials.append(await webhook_rate(status_url, call_sids, rate, 5.0, vc.sidecar.pid, seq))
                seq += int(rate * 5.0)  # every trial signs new callbacks: no replays
            hook = median_trial(trials, _p99, "p99_trials")
            hook["achieved_trials"] = [t["achieved_per_s"] for t in trials]
            hooks.append(hook)
            print(f"  {rate}/s: {hook}", flush=True)
        result["webhooks"] = hooks
    finally:
        await vc.aclose()


def _p99(trial: dict[str, Any]) -> float:
    return float(trial["latency_ms"]["p99"])


def _initiates(trial: dict[str, Any]) -> float:
    return float(trial["initiates_per_s"])


async def grpc_section(result: dict[str, Any], tmp: Path, trials: int) -> None:
    print("gRPC on mock", flush=True)
    raw = {
        "provider": "mock",
        "maxConcurrentCalls": 100000,
        "staleCallReaperSeconds": 0,
        "outbound": {"notifyHangupDelaySec": 0},
        "mock": {"answerAfterMs": 50},
    }
    sc = SidecarProcess(tmp / "grpc", raw, cpu=SERVER_CPU)
    sc.start()
    try:
        initiates = [await initiate_throughput(sc.grpc_target, 5.0, 64, sc.pid) for _ in range(trials)]
        result["grpc_initiate"] = median_trial(initiates, _initiates, "initiates_trials")
        print(f"  initiate: {result['grpc_initiate']}", flush=True)
        # The Initiates' calls end within a second on mock: let that finish before timing Status.
        await asyncio.sleep(2.0)
        async with grpc.aio.insecure_channel(sc.grpc_target) as ch:
            stub = pb_grpc.VoiceCallServiceStub(ch)
            call_id = (await stub.Initiate(pb.InitiateRequest(to_number="+15551239876", message="x"))).call_id
        statuses = [await status_at_rate(sc.grpc_target, call_id, 1000, 4.0, sc.pid) for _ in range(trials)]
        result["grpc_status"] = median_trial(statuses, _p99, "p99_trials")
        print(f"  status: {result['grpc_status']}", flush=True)
    finally:
        sc.stop()
    # The client library asks for batches (TAIL_BATCH); max_batch 0 is one message per event.
    # Each run gets a fresh sidecar: the driver counts every event in the log as one it produced.
    for key, max_batch, runs in (("grpc_tail", TAIL_BATCH, trials), ("grpc_tail_unbatched", 0, 1)):
        tails = []
        for k in range(runs):
            sc = SidecarProcess(tmp / f"{key}-{k}", raw, cpu=SERVER_CPU)
            sc.start()
            try:
                tails.append(await tail_fanout(sc.grpc_target, 1000, 10, sc.pid, max_batch=max_batch))
            finally:
                sc.stop()
        result[key] = median_trial(tails, _p99, "p99_trials")
        print(f"  tail (max_batch {max_batch}): {result[key]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="voicecall benchmarks")
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[20, 50, 100, 200, 400]
    )
    parser.add_argument(
        "--pipecat-levels", type=lambda s: [int(x) for x in s.split(",")], default=[10, 20, 40]
    )
    parser.add_argument(
        "--webhook-rates", type=lambda s: [int(x) for x in s.split(",")], default=[500, 1000, 1500, 2000]
    )
    parser.add_argument("--window", type=float, default=6.0, help="measured seconds per media level")
    parser.add_argument("--no-pipecat", action="store_true")
    parser.add_argument(
        "--trials",
        type=int,
        default=3,
        help="windows per webhook rate and gRPC figure; the median is reported",
    )
    parser.add_argument(
        "--sections", type=lambda s: s.split(","), default=["media", "webhooks", "grpc", "state"]
    )
    args = parser.parse_args()
    # The driver runs on the loop the sidecar uses by default (uvloop where installed): the
    # figures are the server's, not the driver's event loop overhead.
    new_loop, loop_name = loop_factory()
    with asyncio.Runner(loop_factory=new_loop) as runner:
        result = runner.run(run(args))
    result.setdefault("machine", {})["driver_loop"] = loop_name
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}.json"
    text = json.dumps(result, indent=1)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print_report(result)
    print(f"\nJSON: {path}")
    print(plot(result, RESULTS / f"bench-{stamp}.png"))


if __name__ == "__main__":
    main()
