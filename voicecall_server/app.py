"""The composition root: one process, one event loop, the gRPC server next to the aiohttp listener.

Shutdown order (ARCHITECTURE.md section 6): health NOT_SERVING -> gRPC stop(grace) -> aiohttp
cleanup (media sockets closed GOING_AWAY) -> manager timers -> provider closed -> store closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from providers.base import CallMode, Provider
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc

from .bus import EventBus
from .config import Config
from .exposure.runtime import Exposed, start_exposure
from .grpc_security import build_grpc_security
from .guard_adapter import ManagerGuard
from .guardrails import CallingHours, OutboundGuard
from .inbound import InboundPolicy
from .logs import CallIdInterceptor
from .manager import CallManager, ManagerSettings
from .media.codecs import codec_for
from .media.server import MediaServer, MediaSettings
from .metrics import install_metrics
from .providers_factory import build_provider
from .servicer import VoiceCallServicer
from .store import Store
from .voice.autorespond import install_responder
from .webhook.listener import ListenerSettings, WebhookListener
from .webhook.public_url import ForwardingPolicy

log = logging.getLogger("voicecall")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VoiceCallService"].full_name
GRPC_GRACE_S = 5.0


class StartupError(Exception):
    """A start-up failure worth one clear line (port in use, unreadable store)."""


def manager_settings(config: Config, stream_url: str | None) -> ManagerSettings:
    return ManagerSettings(
        provider_name=config.provider,
        from_number=config.from_number or "+15550000000",
        to_number=config.to_number,
        default_mode=CallMode(config.outbound.default_mode),
        notify_hangup_delay_s=float(config.outbound.notify_hangup_delay_sec),
        max_duration_s=float(config.max_duration_seconds),
        stale_call_reaper_s=float(config.stale_call_reaper_seconds),
        transcript_timeout_s=config.transcript_timeout_ms / 1000,
        ring_timeout_s=max(1, config.ring_timeout_ms // 1000),
        max_concurrent_calls=config.max_concurrent_calls,
        inbound=InboundPolicy(
            mode=config.inbound_policy,
            allow_from=tuple(config.allow_from),
            greeting=config.inbound_greeting or "Hello! How can I help you today?",
        ),
        machine_detection=config.outbound.machine_detection,
        voice=config.tts.openai.voice if config.tts.openai else None,
        stream_url=stream_url,
        retention_days=config.retention.ended_call_days,
    )


@dataclass
class Ports:
    grpc: int
    http: int


class Sidecar:
    def __init__(self, config: Config, *, provider: Provider | None = None) -> None:
        self.config = config
        self.store = Store(Path(config.store))
        self.bus = EventBus()
        self.provider = provider or build_provider(config)
        self.public_url = config.public_url
        self.manager = CallManager(
            manager_settings(config, None), self.store, self.bus, self.provider, guard=build_guard(config)
        )
        self.servicer = VoiceCallServicer(self.manager, self.store, self.bus)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.grpc_server: grpc.aio.Server | None = None
        self.runner: web.AppRunner | None = None
        self.ports = Ports(0, 0)
        self.listener: WebhookListener | None = None
        self.media: MediaServer | None = None
        self.bridge: Any = None
        self.pacer: Any = None
        self.exposed: Exposed | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._interceptors: list[grpc.aio.ServerInterceptor] = []
        self._security: tuple[list[grpc.aio.ServerInterceptor], grpc.ServerCredentials | None] = ([], None)

    # -- start ----------------------------------------------------------------------------------
    async def start(self) -> Ports:
        cfg = self.config
        try:
            # Refuse an unprotected non-loopback gRPC bind before anything starts.
            self._security = build_grpc_security(cfg)
        except ValueError as err:
            raise StartupError(str(err)) from None
        app = web.Application(client_max_size=1024 * 1024)
        policy = ForwardingPolicy.from_settings(
            allowed_hosts=cfg.webhook_security.allowed_hosts,
            trust_forwarding_headers=cfg.webhook_security.trust_forwarding_headers,
            trusted_proxy_ips=cfg.webhook_security.trusted_proxy_ips,
            allow_ngrok_free_tier_loopback_bypass=cfg.tunnel.allow_ngrok_free_tier_loopback_bypass,
            tunnel_provider=cfg.tunnel.provider,
            serve_bind=cfg.serve.bind,
        )
        self.listener = WebhookListener(
            ListenerSettings(path=cfg.serve.path, public_url=cfg.public_url, policy=policy),
            self.provider,
            self.manager,
        )
        self.listener.add_routes(app)
        codec = codec_for(cfg.provider)
        if cfg.streaming.enabled and codec is not None:
            st = cfg.streaming
            self.media = MediaServer(
                MediaSettings(
                    path=st.stream_path,
                    max_connections=st.max_connections,
                    max_pending=st.max_pending_connections,
                    max_pending_per_ip=st.max_pending_connections_per_ip,
                    pre_start_timeout_s=st.pre_start_timeout_ms / 1000,
                    max_frame_bytes=st.max_frame_bytes,
                    max_buffered_bytes=st.max_buffered_bytes,
                ),
                codec,
                self.manager,
            )
            self.media.add_routes(app)
            # The voice stack (openai, numpy) loads only when streaming is on.
            from .media.bridge import VoiceBridge
            from .media.voice import StreamVoice, tts_engine_from_config
            from .voice.pacer import Pacer

            # One pacing clock for every stream of the process.
            self.pacer = Pacer()
            self.pacer.start()
            voice = StreamVoice(self.manager, cfg, tts_engine_from_config(cfg), self.pacer)
            self.bridge = VoiceBridge(self.manager, self.media, voice=voice)
        elif cfg.streaming.enabled:
            log.warning(
                "streaming.enabled is set but provider %s has no media streams here yet", cfg.provider
            )
        app.router.add_get("/healthz", self._healthz)
        self._interceptors = install_metrics(app, self)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        http_port = await self._start_http(cfg.serve.bind, cfg.serve.port)
        self.exposed = await start_exposure(cfg, http_port)
        self._closers.append(self.exposed.close)
        webhook_url = self.exposed.public_webhook_url or self._webhook_url(http_port)
        if self.listener is not None and self.exposed.public_webhook_url:
            self.listener.settings = dataclasses.replace(self.listener.settings, public_url=webhook_url)
        self.manager.webhook_url = webhook_url
        if self.media is not None:
            self.manager.settings = dataclasses.replace(
                self.manager.settings, stream_url=self._stream_url(webhook_url)
            )
        await self.provider.start(self.manager.handle_events, webhook_url)
        responder_close = install_responder(self.manager, cfg)
        if responder_close is not None:
            self._closers.append(responder_close)
        await self.manager.start()
        grpc_port = await self._start_grpc()
        self.ports = Ports(grpc_port, http_port)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "voicecall serving: gRPC %s:%d, webhooks %s (provider %s, store %s)",
            cfg.grpc.bind,
            grpc_port,
            webhook_url,
            cfg.provider,
            self.store.path,
        )
        return self.ports

    def _webhook_url(self, http_port: int) -> str:
        if self.config.public_url:
            return self.config.public_url
        host = self.config.serve.bind
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{http_port}{self.config.serve.path}"

    def _stream_url(self, webhook_url: str) -> str:
        parts = urlsplit(webhook_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{self.config.streaming.stream_path}"

    async def _start_http(self, bind: str, port: int) -> int:
        assert self.runner is not None
        site = web.TCPSite(self.runner, bind, port, reuse_address=True)
        try:
            await site.start()
        except OSError as err:
            raise StartupError(
                f"cannot listen for webhooks on {bind}:{port}: {err.strerror or err}; "
                "is another voicecall-server running? Change serve.port or stop the other process"
            ) from None
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def _start_grpc(self) -> int:
        cfg = self.config.grpc
        security_interceptors, credentials = self._security
        server = grpc.aio.server(
            interceptors=[CallIdInterceptor(), *self._interceptors, *security_interceptors],
            options=[("grpc.so_reuseport", 0)],
        )
        pb_grpc.add_VoiceCallServiceServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME), server
        )
        if cfg.unix_socket:
            address = f"unix:{cfg.unix_socket}"
        else:
            host = f"[{cfg.bind}]" if ":" in cfg.bind else cfg.bind
            address = f"{host}:{cfg.port}"
        if not cfg.unix_socket and cfg.port and _port_in_use(cfg.bind, cfg.port):
            raise StartupError(
                f"cannot listen for gRPC on {address}: address already in use; "
                "is another voicecall-server running? Change grpc.port or stop the other process"
            )
        try:
            if credentials is not None:
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as err:
            raise StartupError(f"cannot listen for gRPC on {address}: {err}") from None
        await server.start()
        self.grpc_server = server
        return port

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "liveCalls": self.manager.live_count})

    # -- stop -----------------------------------------------------------------------------------
    async def stop(self) -> None:
        self.manager.stop_accepting()
        await self.health.enter_graceful_shutdown()
        self.servicer.shutting_down.set()
        if self.grpc_server is not None:
            self.bus.close_all()
            await self.grpc_server.stop(GRPC_GRACE_S)
        if self.media is not None:
            await self.media.aclose()
        if self.bridge is not None:
            await self.bridge.aclose()
        if self.pacer is not None:
            await self.pacer.aclose()
        for close in reversed(self._closers):
            await close()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.manager.aclose()
        await self.provider.aclose()
        self.store.close()


def build_guard(config: Config) -> ManagerGuard | None:
    out = config.outbound
    hours = None
    if out.calling_hours is not None:
        windows = [{"days": list(w.days), "start": w.start, "end": w.end} for w in out.calling_hours.windows]
        hours = CallingHours.from_config(out.calling_hours.time_zone, windows)
    if not (out.allow_to or out.deny_to or hours or out.max_calls_per_minute):
        return None
    return ManagerGuard(OutboundGuard(out.allow_to, out.deny_to, hours, out.max_calls_per_minute))


def _port_in_use(bind: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the real listeners do: a port in TIME_WAIT after a clean shutdown is free to take.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError:
            return True
    return False


def tune_garbage_collector() -> None:
    """Keep the cyclic collector from stalling the event loop (the process's entry point calls it).

    What exists once the sidecar serves (modules, SDK clients, config, recovered calls) lives as
    long as the process: frozen, a full collection no longer walks the hundreds of thousands of
    objects the SDKs import. Full collections are kept rare (every 100 middle ones): at the
    default thresholds they ran often enough under load to put 30-60 ms pauses into the webhook
    p99. Young collections stay frequent and small: grpc.aio leaves five objects in a reference
    cycle per RPC, and a young threshold of 50,000 let them pile up into single collections of
    20-60 ms (the Status p99 at 1,000/s); at 2,000 the longest measured 2.5 ms (bench/README.md).
    """
    gc.freeze()
    gc.set_threshold(2_000, 20, 100)


async def serve(config: Config, stop: asyncio.Event) -> None:
    sidecar = Sidecar(config)
    try:
        await sidecar.start()
        tune_garbage_collector()
        await stop.wait()
        log.info("shutting down")
    finally:
        await sidecar.stop()
