"""Typed errors for the voicecall client, built from gRPC status + google.rpc.ErrorInfo."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "voicecall.v1"

_DETAILS_KEY = "grpc-status-details-bin"


class VoiceCallError(Exception):
    """A failed voicecall RPC: the gRPC code, the server's ErrorInfo reason ("" if none) and message."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code: grpc.StatusCode = code if code is not None else self.grpc_code
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def code_name(self) -> str:
        return self.code.name

    def __str__(self) -> str:
        head = f"{self.code.name} {self.reason}" if self.reason else self.code.name
        return f"{head}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, message={self.message!r})"
        )


class Cancelled(VoiceCallError):
    grpc_code = grpc.StatusCode.CANCELLED


class Unknown(VoiceCallError):
    grpc_code = grpc.StatusCode.UNKNOWN


class InvalidArgument(VoiceCallError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(VoiceCallError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(VoiceCallError):
    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(VoiceCallError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(VoiceCallError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(VoiceCallError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(VoiceCallError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(VoiceCallError):
    grpc_code = grpc.StatusCode.ABORTED


class OutOfRange(VoiceCallError):
    grpc_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(VoiceCallError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(VoiceCallError):
    grpc_code = grpc.StatusCode.INTERNAL


class Unavailable(VoiceCallError):
    grpc_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(VoiceCallError):
    grpc_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(VoiceCallError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


ERROR_CLASSES: dict[grpc.StatusCode, type[VoiceCallError]] = {
    cls.grpc_code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def error_for(
    code: grpc.StatusCode, message: str, *, reason: str = "", metadata: dict[str, str] | None = None
) -> VoiceCallError:
    """The VoiceCallError subclass for ``code`` (OK is not an error, so it maps to Unknown)."""
    cls = ERROR_CLASSES.get(code, Unknown)
    return cls(
        message,
        code=code if code in ERROR_CLASSES else grpc.StatusCode.UNKNOWN,
        reason=reason,
        metadata=metadata,
    )


def from_rpc_error(err: grpc.aio.AioRpcError | grpc.RpcError) -> VoiceCallError:
    """Turn a raw gRPC error (sync or aio) into the matching VoiceCallError subclass."""
    code = _call(err, "code")
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = _call(err, "details")
    message = details if isinstance(details, str) else ""
    reason = ""
    metadata: dict[str, str] = {}
    status = _rich_status(_call(err, "trailing_metadata"))
    if status is not None:
        message = status.message or message
        info = _error_info(status)
        if info is not None:
            reason = info.reason
            metadata = dict(info.metadata)
    return error_for(code, message or code.name.lower().replace("_", " "), reason=reason, metadata=metadata)


def _call(err: object, name: str) -> Any:
    # Plain grpc.RpcError need not be a grpc.Call; missing accessors just mean "no information".
    fn = getattr(err, name, None)
    if not callable(fn):
        return None
    try:
        return fn()
    except Exception:
        return None


def _rich_status(trailing: object) -> status_pb2.Status | None:
    if trailing is None or not isinstance(trailing, Iterable):
        return None
    for item in trailing:
        try:
            key, value = item
        except (TypeError, ValueError):
            continue
        if key != _DETAILS_KEY or not isinstance(value, bytes | bytearray):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(bytes(value))
        except DecodeError:
            return None
        return status
    return None


def _error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    # Prefer our own domain; an ErrorInfo from another domain (a proxy, say) still beats none.
    fallback: error_details_pb2.ErrorInfo | None = None
    for detail in status.details:
        if not detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            continue
        info = error_details_pb2.ErrorInfo()
        if not detail.Unpack(info):
            continue
        if info.domain == ERROR_DOMAIN:
            return info
        if fallback is None:
            fallback = info
    return fallback
