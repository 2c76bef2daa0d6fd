"""A call's status as Plivo sees it, for reconciling restored calls after a restart.

``GET /Call/{uuid}/`` alone is Plivo's call detail record, which exists only once a call has ended
(a live call answers 404 there). So the live call is asked for first (``?status=live``), then the
queued request (``?status=queued``), then the record; only when all three say 404 is the call
unknown to Plivo, which counts as ended. Transient failures report ``is_unknown`` and never raise.
"""

from __future__ import annotations

from typing import Any

from ..base import EndReason, ProviderError, RemoteStatus
from .api import PlivoRest, field_of, is_not_found
from .webhook import END_REASONS

_CDR_STATES = {
    "answer": "completed",
    "busy": "busy",
    "no answer": "no-answer",
    "noanswer": "no-answer",
    "cancel": "cancel",
    "failed": "failed",
    "timeout": "timeout",
    "machine": "machine",
}


def _norm(value: Any) -> str:
    return str(value).strip().lower() if value else ""


def _unknown() -> RemoteStatus:
    return RemoteStatus("unknown", is_terminal=False, is_unknown=True)


def _ended(status: str, answered: bool) -> RemoteStatus:
    return RemoteStatus(
        status, is_terminal=True, end_reason=END_REASONS.get(status, EndReason.COMPLETED), answered=answered
    )


def _from_record(record: Any) -> RemoteStatus:
    status = _norm(field_of(record, "call_status"))
    if not status:
        status = _CDR_STATES.get(_norm(field_of(record, "call_state")), "completed")
    return _ended(status, answered=bool(field_of(record, "answer_time")))


async def remote_status(rest: PlivoRest, call_uuid: str, provider_call_id: str) -> RemoteStatus:
    try:
        live = await rest.live_call(call_uuid)
    except ProviderError as err:
        if not is_not_found(err):
            return _unknown()
    else:
        status = _norm(field_of(live, "call_status")) or "in-progress"
        if status in END_REASONS:
            return _ended(status, answered=status == "completed")
        return RemoteStatus(status, is_terminal=False, answered=status == "in-progress")
    try:
        await rest.queued_call(provider_call_id)
    except ProviderError as err:
        if not is_not_found(err):
            return _unknown()
    else:
        return RemoteStatus("queued", is_terminal=False)
    try:
        record = await rest.call_record(call_uuid)
    except ProviderError as err:
        if is_not_found(err):
            return RemoteStatus("not-found", is_terminal=True, end_reason=EndReason.COMPLETED)
        return _unknown()
    return _from_record(record)
