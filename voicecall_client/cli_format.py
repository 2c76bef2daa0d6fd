"""Human-readable event lines and latency statistics for the `voicecall` CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from voicecall_client.v1 import voicecall_service_pb2 as pb

SHORT_ID = 8


def enum_word(name: str, prefix: str) -> str:
    """CALL_STATE_HANGUP_BOT -> hangup-bot."""
    return name.removeprefix(prefix).lower().replace("_", "-")


def format_time(ts: Timestamp) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. 2026-11-22T05:01:02.345Z."""
    dt = ts.ToDatetime(tzinfo=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def describe_event(event: pb.CallEvent) -> str:
    kind = event.WhichOneof("kind")
    if kind == "state_changed":
        sc = event.state_changed
        line = "state " + enum_word(pb.CallState.Name(sc.state), "CALL_STATE_")
        if sc.end_reason != pb.END_REASON_UNSPECIFIED:
            line += f" (end: {enum_word(pb.EndReason.Name(sc.end_reason), 'END_REASON_')})"
        return line
    if kind == "caller_speech":
        cs = event.caller_speech
        notes = ["final" if cs.is_final else "partial"]
        if cs.confidence:
            notes.append(f"{cs.confidence:.2f}")
        return f"caller {_quote(cs.transcript)} ({', '.join(notes)})"
    if kind == "bot_speech":
        return f"bot {_quote(event.bot_speech.text)}"
    if kind == "dtmf":
        return f"dtmf {event.dtmf.digits}"
    if kind == "error":
        return f"error {_quote(event.error.message)}"
    return "unknown"


def format_event(event: pb.CallEvent) -> str:
    """`#12 2026-11-22T05:01:02.345Z 3f2a9c1e state ringing`: one line per event."""
    when = format_time(event.event_time) if event.HasField("event_time") else "-"
    return f"#{event.sequence} {when} {event.call_id[:SHORT_ID] or '-'} {describe_event(event)}"


def duration_ms(d: Duration) -> int:
    return round(d.ToNanoseconds() / 1e6)


def nearest_rank(sorted_values: Sequence[int], percentile: float) -> int:
    """Nearest-rank percentile: the smallest value with at least p % of the samples at or below it."""
    rank = max(1, math.ceil(percentile / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(samples_ms: Iterable[int]) -> dict[str, Any]:
    values = sorted(samples_ms)
    if not values:
        return {"count": 0, "minMs": None, "maxMs": None, "avgMs": None, "p50Ms": None, "p95Ms": None}
    return {
        "count": len(values),
        "minMs": values[0],
        "maxMs": values[-1],
        "avgMs": round(sum(values) / len(values), 1),
        "p50Ms": nearest_rank(values, 50),
        "p95Ms": nearest_rank(values, 95),
    }


# An auto-responded turn's stages in pipeline order, each from the end of the caller's speech.
STAGE_ORDER = ("stt_final", "model", "tts_first_byte", "first_audio", "spoken")


def stage_summaries(turns: Iterable[pb.TurnLatency]) -> dict[str, dict[str, Any]]:
    """Per stage: how many turns reported it, and its p50 and p95 (ms); pipeline order first."""
    samples: dict[str, list[int]] = {}
    for turn in turns:
        for stage, duration in turn.stages.items():
            samples.setdefault(stage, []).append(duration_ms(duration))
    known = [s for s in STAGE_ORDER if s in samples]
    names = known + sorted(s for s in samples if s not in STAGE_ORDER)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        values = sorted(samples[name])
        out[name] = {
            "count": len(values),
            "p50Ms": nearest_rank(values, 50),
            "p95Ms": nearest_rank(values, 95),
        }
    return out


def latency_report(calls_scanned: int, turns: Sequence[pb.TurnLatency]) -> dict[str, Any]:
    return {
        "callsScanned": calls_scanned,
        "turnLatency": summarize(duration_ms(t.total) for t in turns if t.HasField("total")),
        # An auto-responded turn (one with stages) never listened: its zero wait is no sample.
        "listenWait": summarize(
            duration_ms(t.listen_wait) for t in turns if t.HasField("listen_wait") and not t.stages
        ),
        "stages": stage_summaries(turns),
    }
