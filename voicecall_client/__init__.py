"""voicecall client: the typed async client, its errors and the `voicecall` CLI."""

from __future__ import annotations

from voicecall_client.client import TlsOptions, VoiceCallClient, parse_mode
from voicecall_client.errors import (
    ERROR_DOMAIN,
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    VoiceCallError,
    from_rpc_error,
)

__all__ = [
    "ERROR_DOMAIN",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "TlsOptions",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "VoiceCallClient",
    "VoiceCallError",
    "from_rpc_error",
    "parse_mode",
]
