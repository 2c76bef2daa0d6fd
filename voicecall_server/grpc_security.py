"""gRPC access control: loopback by default; bearer token and/or TLS when exposed.

(Extension point: filled in by the security work; until then no interceptors and plaintext.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from .config import Config


def build_grpc_security(
    config: Config,
) -> tuple[list[grpc.aio.ServerInterceptor], grpc.ServerCredentials | None]:
    """Interceptors to install and server credentials (None = plaintext) for the gRPC port."""
    return [], None


__all__ = ["Any", "build_grpc_security"]
