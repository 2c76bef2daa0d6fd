"""Domain objects to proto messages and back; the only place the two meet."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from providers.base import CallMode, Direction, EndReason
from voicecall_client.v1 import voicecall_service_pb2 as pb

from .domain import CallEvent, CallRecord, CallState, EventKind, Speaker

_STATE = {s: getattr(pb, "CALL_STATE_" + s.name) for s in CallState}
_END = {r: getattr(pb, "END_REASON_" + r.name) for r in EndReason}
_MODE = {CallMode.NOTIFY: pb.CALL_MODE_NOTIFY, CallMode.CONVERSATION: pb.CALL_MODE_CONVERSATION}
_MODE_FROM_PB = {v: k for k, v in _MODE.items()}
_DIRECTION = {Direction.INBOUND: pb.CALL_DIRECTION_INBOUND, Direction.OUTBOUND: pb.CALL_DIRECTION_OUTBOUND}
_SPEAKER = {Speaker.BOT: pb.SPEAKER_BOT, Speaker.CALLER: pb.SPEAKER_CALLER}


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def mode_from_pb(value: int) -> CallMode | None:
    """None for CALL_MODE_UNSPECIFIED; raises ValueError for a value this server does not know."""
    if value == pb.CALL_MODE_UNSPECIFIED:
        return None
    try:
        return _MODE_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"mode {value} is not a known CallMode") from None


def call_to_pb(rec: CallRecord) -> pb.Call:
    call = pb.Call(
        call_id=rec.call_id,
        provider=rec.provider,
        provider_call_id=rec.provider_call_id or "",
        direction=_DIRECTION[rec.direction],
        state=_STATE[rec.state],
        end_reason=_END[rec.end_reason] if rec.end_reason else pb.END_REASON_UNSPECIFIED,
        from_number=rec.from_number,
        to_number=rec.to_number,
        mode=_MODE[rec.mode],
        session_key=rec.session_key,
        create_time=timestamp(rec.created_at),
        answered_by=rec.answered_by,
    )
    if rec.answered_at:
        call.answer_time.CopyFrom(timestamp(rec.answered_at))
    if rec.ended_at:
        call.end_time.CopyFrom(timestamp(rec.ended_at))
    for entry in rec.transcript:
        call.transcript.add(
            time=timestamp(entry.time),
            speaker=_SPEAKER[entry.speaker],
            text=entry.text,
            is_final=entry.is_final,
        )
    for lat in rec.turn_latencies:
        turn = call.turn_latencies.add(
            turn=lat.turn, total=_duration(lat.total_ms), listen_wait=_duration(lat.listen_wait_ms)
        )
        for stage, ms in lat.stages.items():
            turn.stages[stage].CopyFrom(_duration(ms))
    return call


def _duration(ms: float) -> Duration:
    # Kept to the microsecond: whole milliseconds would turn a 0.8 ms stage into zero.
    out = Duration()
    out.FromMicroseconds(round(ms * 1000))
    return out


def event_to_pb(ev: CallEvent) -> pb.CallEvent:
    out = pb.CallEvent(sequence=ev.sequence, call_id=ev.call_id, event_time=timestamp(ev.time))
    d = ev.data
    if ev.kind is EventKind.STATE_CHANGED:
        reason = d.get("end_reason")
        out.state_changed.state = _STATE[CallState(d["state"])]
        out.state_changed.end_reason = _END[EndReason(reason)] if reason else pb.END_REASON_UNSPECIFIED
    elif ev.kind is EventKind.CALLER_SPEECH:
        out.caller_speech.transcript = d.get("transcript", "")
        out.caller_speech.is_final = bool(d.get("is_final", True))
        out.caller_speech.confidence = float(d.get("confidence") or 0.0)
    elif ev.kind is EventKind.BOT_SPEECH:
        out.bot_speech.text = d.get("text", "")
    elif ev.kind is EventKind.DTMF:
        out.dtmf.digits = d.get("digits", "")
    elif ev.kind is EventKind.ERROR:
        out.error.message = d.get("message", "")
    return out
