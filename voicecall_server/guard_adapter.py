"""Adapts the outbound guardrails (allow/deny lists, calling hours, rate) to the call manager."""

from __future__ import annotations

from .errors import CallError, Reason
from .guardrails import OutboundGuard

_REASONS = {
    "DENIED_NUMBER": Reason.OUTBOUND_NOT_ALLOWED,
    "OUTSIDE_CALLING_HOURS": Reason.OUTSIDE_CALLING_HOURS,
    "RATE_LIMITED": Reason.CALL_RATE_LIMITED,
}


class ManagerGuard:
    def __init__(self, guard: OutboundGuard) -> None:
        self.guard = guard

    def check(self, to_number: str) -> CallError | None:
        decision = self.guard.check(to_number)
        if decision.ok:
            return None
        return CallError(_REASONS.get(decision.code or "", Reason.OUTBOUND_NOT_ALLOWED), decision.reason)

    def record(self) -> None:
        self.guard.record()
