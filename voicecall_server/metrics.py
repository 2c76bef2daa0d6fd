"""Prometheus metrics on the listener (``/metrics``).

(Extension point: filled in by the observability work; until then nothing is exported.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from aiohttp import web

if TYPE_CHECKING:
    from .app import Sidecar


def install_metrics(app: web.Application, sidecar: Sidecar) -> list[grpc.aio.ServerInterceptor]:
    """Add the /metrics route to ``app``; return gRPC interceptors that time RPCs."""
    return []
