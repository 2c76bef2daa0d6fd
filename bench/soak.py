"""``make soak MINUTES=N``: cycle streamed calls and watch the sidecar for leaks.

Each cycle places ``--calls`` signed inbound Twilio calls, streams to each for a few seconds
(Twilio's exact messages; TTS greeting paced back, caller audio to the STT fake), ends them with
signed ``completed`` status callbacks and closes the streams. After every cycle it samples RSS, open
file descriptors and asyncio tasks (the last two from /metrics); growth across cycles is a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from providers.twilio.signature import compute_signature

from .fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from .media_load import MediaRun
from .proc import open_fds, rss_bytes
from .voicecall_target import CALLEE, VoicecallTarget

RESULTS = Path(__file__).resolve().parent / "results"


async def _end_calls(target: VoicecallTarget, http: aiohttp.ClientSession, first: int, count: int) -> None:
    for i in range(first, first + count):
        params = [
            ("AccountSid", ACCOUNT_SID),
            ("CallSid", f"CA{i + 1:032x}"),
            ("CallStatus", "completed"),
            ("Direction", "inbound"),
            ("From", f"+1555{i:07d}"),
            ("To", CALLEE),
        ]
        sig = compute_signature(AUTH_TOKEN, target.webhook_url, params)
        async with http.post(target.webhook_url, data=params, headers={"X-Twilio-Signature": sig}) as resp:
            await resp.read()


async def _scrape(target: VoicecallTarget, http: aiohttp.ClientSession) -> dict[str, float]:
    assert target.sidecar is not None
    async with http.get(target.sidecar.base_http + "/metrics") as resp:
        text = await resp.text()
    out = {}
    for name in ("voicecall_asyncio_tasks", "voicecall_media_streams", "process_open_fds"):
        m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else float("nan")
    return out


async def soak(minutes: float, calls: int, hold_s: float) -> dict[str, Any]:
    target = VoicecallTarget(Path(tempfile.mkdtemp(prefix="voicecall-soak-")), "0", tts_seconds=hold_s + 5)
    await target.start(max_calls=calls * 2)
    assert target.sidecar is not None
    pid = target.sidecar.pid
    samples: list[dict[str, Any]] = []
    began = time.monotonic()
    cycle = 0
    try:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - began < minutes * 60:
                first = cycle * calls

                async def opener(h: aiohttp.ClientSession, i: int, first: int = first) -> Any:
                    return await target.open_stream(h, first + i)

                run = MediaRun(opener, calls, warmup_s=0.5, window_s=hold_s, sidecar_pid=pid)
                res = await run.run()
                await _end_calls(target, http, first, calls)
                await asyncio.sleep(1.0)
                m = await _scrape(target, http)
                sample = {
                    "cycle": cycle,
                    "t_s": round(time.monotonic() - began, 1),
                    "rss_mb": round(rss_bytes(pid) / 2**20, 2),
                    "fds": open_fds(pid),
                    "tasks": m["voicecall_asyncio_tasks"],
                    "open_streams": m["voicecall_media_streams"],
                    "held": res["held"],
                    "p99_ms": res["interval_ms"]["p99"],
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                cycle += 1
    finally:
        await target.aclose()
    half = samples[len(samples) // 2 :] if len(samples) > 2 else samples
    growth = {k: round(half[-1][k] - half[0][k], 2) for k in ("rss_mb", "fds", "tasks")} if half else {}
    return {
        "minutes": minutes,
        "calls_per_cycle": calls,
        "cycles": cycle,
        "samples": samples,
        "second_half_growth": growth,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--hold", type=float, default=3.0)
    args = parser.parse_args()
    report = asyncio.run(soak(args.minutes, args.calls, args.hold))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak-latest.json").write_text(json.dumps(report, indent=1))
    print(f"growth over the second half: {report['second_half_growth']} (RSS MB, fds, tasks)")


if __name__ == "__main__":
    main()
