"""Domain errors and their one mapping to gRPC status codes (ARCHITECTURE.md section 3)."""

from __future__ import annotations

import enum

import grpc

from providers.base import ProviderError, ProviderErrorKind

ERROR_DOMAIN = "voicecall.v1"


class Reason(enum.StrEnum):
    INVALID_PHONE_NUMBER = "INVALID_PHONE_NUMBER"
    INVALID_FIELD = "INVALID_FIELD"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    CALL_NOT_FOUND = "CALL_NOT_FOUND"
    CALL_NOT_ACTIVE = "CALL_NOT_ACTIVE"
    TURN_IN_PROGRESS = "TURN_IN_PROGRESS"
    PROVIDER_REJECTED = "PROVIDER_REJECTED"
    PROVIDER_AUTH_FAILED = "PROVIDER_AUTH_FAILED"
    OUTBOUND_NOT_ALLOWED = "OUTBOUND_NOT_ALLOWED"
    OUTSIDE_CALLING_HOURS = "OUTSIDE_CALLING_HOURS"
    MAX_CONCURRENT_CALLS = "MAX_CONCURRENT_CALLS"
    PROVIDER_RATE_LIMITED = "PROVIDER_RATE_LIMITED"
    CALL_RATE_LIMITED = "CALL_RATE_LIMITED"
    TRANSCRIPT_TIMEOUT = "TRANSCRIPT_TIMEOUT"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    SUBSCRIBER_TOO_SLOW = "SUBSCRIBER_TOO_SLOW"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL = "INTERNAL"


STATUS_FOR_REASON: dict[Reason, grpc.StatusCode] = {
    Reason.INVALID_PHONE_NUMBER: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.INVALID_FIELD: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.REQUEST_ID_REUSED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.CALL_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.CALL_NOT_ACTIVE: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.TURN_IN_PROGRESS: grpc.StatusCode.ABORTED,
    Reason.PROVIDER_REJECTED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PROVIDER_AUTH_FAILED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.OUTBOUND_NOT_ALLOWED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.OUTSIDE_CALLING_HOURS: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.MAX_CONCURRENT_CALLS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.PROVIDER_RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.CALL_RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.TRANSCRIPT_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    Reason.PROVIDER_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.SHUTTING_DOWN: grpc.StatusCode.UNAVAILABLE,
    Reason.SUBSCRIBER_TOO_SLOW: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Reason.INTERNAL: grpc.StatusCode.INTERNAL,
}

_REASON_FOR_PROVIDER_KIND = {
    ProviderErrorKind.AUTH: Reason.PROVIDER_AUTH_FAILED,
    ProviderErrorKind.REJECTED: Reason.PROVIDER_REJECTED,
    ProviderErrorKind.RATE_LIMITED: Reason.PROVIDER_RATE_LIMITED,
    ProviderErrorKind.UNAVAILABLE: Reason.PROVIDER_UNAVAILABLE,
    ProviderErrorKind.NOT_FOUND: Reason.PROVIDER_REJECTED,
}


class CallError(Exception):
    """An expected failure of a call operation; ``message`` is short, actionable and secret-free."""

    def __init__(self, reason: Reason, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata

    @property
    def status(self) -> grpc.StatusCode:
        return STATUS_FOR_REASON[self.reason]

    def __repr__(self) -> str:
        return f"CallError({self.reason.value}, {self.message!r})"

    def to_dict(self) -> dict[str, object]:
        return {"reason": self.reason.value, "message": self.message, "metadata": dict(self.metadata)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CallError:
        meta = data.get("metadata") or {}
        assert isinstance(meta, dict)
        return cls(
            Reason(str(data["reason"])), str(data["message"]), **{str(k): str(v) for k, v in meta.items()}
        )


def from_provider_error(err: ProviderError, provider: str) -> CallError:
    reason = _REASON_FOR_PROVIDER_KIND[err.kind]
    meta = {"provider": provider}
    if err.provider_code:
        meta["provider_code"] = err.provider_code
    return CallError(reason, f"{provider}: {err.message}", **meta)
