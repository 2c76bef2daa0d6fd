"""gRPC access control: loopback by default; bearer token and/or TLS when exposed.

Rules (ARCHITECTURE.md section 4, issue "webhook security"):

- ``grpc.bind`` on loopback (127.0.0.0/8, ::1, localhost) or ``grpc.unixSocket`` set: nothing is
  required; the socket's reach (or the file's permissions) is the access control.
- Anywhere else: ``grpc.authToken`` or ``grpc.tls`` must be set, else :func:`build_grpc_security`
  raises ``ValueError`` with a one-line message, because anyone who can reach the port could
  place phone calls on the operator's account.
- ``grpc.authToken``: every RPC of ``voicecall.v1`` needs metadata ``authorization: Bearer <token>``
  (compared in constant time); otherwise UNAUTHENTICATED with ``google.rpc.ErrorInfo`` reason
  UNAUTHENTICATED. The gRPC health and reflection services stay open so load balancers and
  ``grpcurl list`` work without the token; they reveal the API's shape and the serving state only.
- ``grpc.tls``: server certificate and key; with ``clientCaFile`` client certificates signed by
  that CA are required (mutual TLS).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .errors import ERROR_DOMAIN

if TYPE_CHECKING:
    from .config import Config

UNAUTHENTICATED_REASON = "UNAUTHENTICATED"
# Services that answer without the token: probes and tooling, no call data.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback_bind(bind: str) -> bool:
    host = bind.strip().strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unauthenticated_status(message: str) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=UNAUTHENTICATED_REASON, domain=ERROR_DOMAIN)
    status = status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=message)
    status.details.add().Pack(info)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every RPC outside :data:`OPEN_SERVICES` without ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("grpc.authToken must not be empty")
        self._expected = f"Bearer {token}".encode()

    def __repr__(self) -> str:
        return "BearerTokenInterceptor(token=<redacted>)"

    def authorized(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> bool:
        sent = b""
        for key, value in metadata or ():
            if key.lower() == "authorization":
                sent = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
                break
        return hmac.compare_digest(sent, self._expected)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        if self.authorized(handler_call_details.invocation_metadata):
            return handler
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape that answers UNAUTHENTICATED without running the servicer."""
    status = _unauthenticated_status("missing or invalid bearer token (set authorization: Bearer <token>)")

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort_with_status(status)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await context.abort_with_status(status)
        yield None  # pragma: no cover - abort raises; this makes the function a generator

    deserializer = handler.request_deserializer
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary, deserializer, serializer)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming, deserializer, serializer)
    if handler.stream_unary is not None:

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort_with_status(status)

        return grpc.stream_unary_rpc_method_handler(stream_unary, deserializer, serializer)

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await context.abort_with_status(status)
        yield None  # pragma: no cover

    return grpc.stream_stream_rpc_method_handler(stream_stream, deserializer, serializer)


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"grpc.tls.{what}: cannot read {path}: {err.strerror or err}") from None


def server_credentials(
    cert_file: Path, key_file: Path, client_ca_file: Path | None
) -> grpc.ServerCredentials:
    cert = _read(cert_file, "certFile")
    key = _read(key_file, "keyFile")
    ca = _read(client_ca_file, "clientCaFile") if client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def build_grpc_security(
    config: Config,
) -> tuple[list[grpc.aio.ServerInterceptor], grpc.ServerCredentials | None]:
    """Interceptors to install and server credentials (None = plaintext) for the gRPC port.

    Raises ``ValueError`` (one line, no secrets) when the port would be reachable from other
    machines with neither a token nor TLS, or when a TLS file cannot be read.
    """
    cfg = config.grpc
    exposed = not cfg.unix_socket and not is_loopback_bind(cfg.bind)
    if exposed and not cfg.auth_token and cfg.tls is None:
        raise ValueError(
            f"grpc.bind is {cfg.bind!r}, which is not loopback, and neither grpc.authToken nor grpc.tls is "
            "set: anyone who can reach the port could place calls. Set grpc.authToken and/or grpc.tls, "
            "bind to 127.0.0.1, or use grpc.unixSocket"
        )
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if cfg.auth_token:
        interceptors.append(BearerTokenInterceptor(cfg.auth_token))
    credentials = None
    if cfg.tls is not None:
        credentials = server_credentials(cfg.tls.cert_file, cfg.tls.key_file, cfg.tls.client_ca_file)
    return interceptors, credentials


__all__ = [
    "OPEN_SERVICES",
    "UNAUTHENTICATED_REASON",
    "BearerTokenInterceptor",
    "build_grpc_security",
    "is_loopback_bind",
    "server_credentials",
]
