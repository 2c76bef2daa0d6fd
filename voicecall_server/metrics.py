"""Prometheus metrics on the listener (``GET /metrics``), one ``CollectorRegistry`` per Sidecar.

Most series are read on scrape from counters the components keep anyway (webhook outcomes, media
rejections, the pacer), so hot paths pay nothing; call counters and turn latencies follow the event
bus; RPC latency comes from a gRPC server interceptor. Access: loopback peers only, unless
``metrics.authToken`` is set (then ``Authorization: Bearer``); ``metrics.enabled: false`` = no route.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .bus import SubscriberOverflow, Subscription
from .domain import CallEvent, CallRecord, EventKind

if TYPE_CHECKING:
    from .app import Sidecar


RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TURN_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
METRICS_PATH = "/metrics"


class SidecarCollector(Collector):
    """Scrape-time view of the counters the listener, media server and pacer already keep."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    def collect(self) -> Iterable[Metric]:
        sc = self.sidecar
        provider = sc.config.provider
        live = GaugeMetricFamily(
            "voicecall_live_calls",
            "Calls not yet ended, by state.",
            labels=["provider", "direction", "state"],
        )
        by_key: dict[tuple[str, str, str], int] = {}
        for rec in _live_records(sc):
            key = (rec.provider, rec.direction.value, rec.state.value)
            by_key[key] = by_key.get(key, 0) + 1
        for key, n in sorted(by_key.items()):
            live.add_metric(list(key), n)
        yield live
        hooks = CounterMetricFamily(
            "voicecall_webhooks",
            "Webhook requests by outcome (accepted, replay, bad_signature, unsigned, limit, malformed, method).",
            labels=["provider", "outcome"],
        )
        if sc.listener is not None:
            for outcome, n in sorted(sc.listener.counts.items()):
                hooks.add_metric([provider, outcome], n)
        yield hooks
        yield from self._media(provider)
        stt = CounterMetricFamily(
            "voicecall_stt_reconnects", "Speech recognition reconnect attempts.", labels=["provider"]
        )
        stt.add_metric([provider], stt_reconnects(sc))
        yield stt
        yield from self._store()
        subs = GaugeMetricFamily("voicecall_tail_subscribers", "Live Tail subscribers on the event bus.")
        subs.add_metric([], sc.bus.subscriber_count)
        yield subs
        tasks = GaugeMetricFamily(
            "voicecall_asyncio_tasks", "Tasks alive on the event loop (a leak grows it)."
        )
        tasks.add_metric([], len(asyncio.all_tasks()))
        yield tasks

    def _store(self) -> Iterable[Metric]:
        store = self.sidecar.store
        wal = GaugeMetricFamily(
            "voicecall_store_wal_bytes",
            "SQLite WAL in use since it last restarted; checkpoints keep it near 4 MB (growth: they cannot keep up).",
        )
        wal.add_metric([], store.wal_bytes())
        yield wal
        unsynced = GaugeMetricFamily(
            "voicecall_store_unsynced_commits",
            "Commits not yet synced to disk (acknowledgements wait for them).",
        )
        unsynced.add_metric([], store.unsynced)
        yield unsynced
        checkpoints = CounterMetricFamily(
            "voicecall_store_checkpoints", "WAL checkpoints run by the sync rounds, by mode.", labels=["mode"]
        )
        for mode, n in sorted(store.checkpoints.items()):
            checkpoints.add_metric([mode], n)
        yield checkpoints

    def _media(self, provider: str) -> Iterable[Metric]:
        sc = self.sidecar
        rejected = CounterMetricFamily(
            "voicecall_media_stream_rejections",
            "Media WebSockets refused before or at start, by reason.",
            labels=["provider", "reason"],
        )
        streams = GaugeMetricFamily("voicecall_media_streams", "Open media streams.", labels=["provider"])
        if sc.media is not None:
            for why, n in sorted(sc.media.rejected.items()):
                rejected.add_metric([provider, why], n)
            streams.add_metric([provider], sum(1 for s in sc.media.sessions.values() if not s.closed))
        yield rejected
        yield streams
        pacer = sc.pacer
        if pacer is None:
            return
        for name, doc, value in (
            ("voicecall_media_frames_sent", "20 ms audio frames sent to media streams.", pacer.frames_sent),
            ("voicecall_media_pacer_ticks", "Ticks of the shared 20 ms pacing clock.", pacer.ticks),
            (
                "voicecall_media_pacer_late_ticks",
                "Pacer wake-ups with several ticks due (frames late).",
                pacer.late_ticks,
            ),
            (
                "voicecall_media_pacer_dropped_ticks",
                "Ticks skipped after a long stall (audio delayed).",
                pacer.dropped_ticks,
            ),
            (
                "voicecall_media_channel_errors",
                "Media channels dropped after a pacing error.",
                pacer.channel_errors,
            ),
        ):
            fam = CounterMetricFamily(name, doc)
            fam.add_metric([], value)
            yield fam
        for name, doc, level in (
            (
                "voicecall_media_pacer_max_lag_seconds",
                "Largest pacer wake-up lag seen.",
                pacer.max_lag_ms / 1000,
            ),
            ("voicecall_media_channels", "Media channels registered with the pacer.", pacer.channels),
            ("voicecall_media_active_channels", "Media channels with audio queued.", pacer.active_channels),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], level)
            yield g


def stt_reconnects(sidecar: Sidecar) -> int:
    """The transcribers' reconnect attempts: the voice stack's ended calls (it keeps their total,
    so the sum never falls when a call ends) plus its live ones. 0 without a voice stack."""
    voice = getattr(sidecar.bridge, "voice", None)
    if voice is None:
        return 0
    retired = getattr(voice, "stt_reconnects_retired", 0)
    live: list[object] = list(getattr(voice, "_stt", {}).values())
    return (retired if isinstance(retired, int) else 0) + sum(_reconnects(t) for t in live)


def _reconnects(transcriber: object) -> int:
    value = getattr(transcriber, "reconnects", 0)
    return value if isinstance(value, int) else 0


def _live_records(sidecar: Sidecar) -> list[CallRecord]:
    # The manager's live map is the authority for non-terminal calls; reading it avoids a store query.
    live: dict[str, CallRecord] = getattr(sidecar.manager, "_live", {})
    return list(live.values())


class CallEvents:
    """Follows the event bus: call starts, state changes, ends and completed conversation turns."""

    def __init__(self, sidecar: Sidecar, registry: CollectorRegistry) -> None:
        self.sidecar = sidecar
        self.started = Counter(
            "voicecall_calls_started", "Calls created.", ["provider", "direction"], registry=registry
        )
        self.transitions = Counter(
            "voicecall_call_state_changes",
            "Call state changes.",
            ["provider", "direction", "state"],
            registry=registry,
        )
        self.ended = Counter(
            "voicecall_calls_ended",
            "Calls ended, by end reason.",
            ["provider", "direction", "end_reason"],
            registry=registry,
        )
        self.events = Counter(
            "voicecall_call_events", "Call events committed, by kind.", ["kind"], registry=registry
        )
        self.overflows = Counter(
            "voicecall_metrics_bus_overflows",
            "Times the metrics follower fell behind the bus.",
            registry=registry,
        )
        self.turns = Histogram(
            "voicecall_turn_latency_seconds",
            "Conversation turn latency by stage (total = speak start to final caller transcript; "
            "listen_wait = listening start to final transcript).",
            ["stage"],
            buckets=TURN_BUCKETS,
            registry=registry,
        )
        self._tracked: dict[str, tuple[CallRecord, int]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="voicecall-metrics")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _follow(self) -> None:
        while True:
            with self.sidecar.bus.subscribe() as sub:
                try:
                    await self._drain(sub)
                    return
                except SubscriberOverflow:
                    self.overflows.inc()

    async def _drain(self, sub: Subscription) -> None:
        while True:
            try:
                event = await sub.get()
            except asyncio.CancelledError:
                if self._task is None or self._task.cancelling():
                    raise
                return  # the bus was closed: the sidecar is stopping
            self.observe(event)

    def observe(self, event: CallEvent) -> None:
        self.events.labels(event.kind.value).inc()
        tracked = self._tracked.get(event.call_id)
        if tracked is None:
            rec = self.sidecar.manager.find(event.call_id)
            if rec is None:
                return
            tracked = (rec, 0)
            self._tracked[event.call_id] = tracked
            self.started.labels(rec.provider, rec.direction.value).inc()
        rec = tracked[0]
        if event.kind is EventKind.STATE_CHANGED:
            state = str(event.data.get("state", ""))
            self.transitions.labels(rec.provider, rec.direction.value, state).inc()
            if reason := event.data.get("end_reason"):
                self.ended.labels(rec.provider, rec.direction.value, str(reason)).inc()
                self._observe_turns(event.call_id)
                self._tracked.pop(event.call_id, None)
                return
        self._observe_turns(event.call_id)

    def _observe_turns(self, call_id: str) -> None:
        rec, seen = self._tracked[call_id]
        for lat in rec.turn_latencies[seen:]:
            self.turns.labels("total").observe(lat.total_ms / 1000)
            self.turns.labels("listen_wait").observe(lat.listen_wait_ms / 1000)
            for stage, ms in lat.stages.items():
                self.turns.labels(stage).observe(ms / 1000)
        self._tracked[call_id] = (rec, len(rec.turn_latencies))

    def refresh(self) -> None:
        """On scrape: pick up turns that completed since the call's last event."""
        for call_id in list(self._tracked):
            self._observe_turns(call_id)


class RpcMetrics(grpc.aio.ServerInterceptor):
    """Times unary RPCs by method and status code; counts streaming RPCs by how they ended."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "voicecall_rpc_duration_seconds",
            "Unary RPC latency by method and status code.",
            ["method", "code"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.streams = Counter(
            "voicecall_rpc_streams",
            "Server-streaming RPCs finished, by method and code.",
            ["method", "code"],
            registry=registry,
        )
        self.active = Counter(
            "voicecall_rpc_streams_started",
            "Server-streaming RPCs started, by method.",
            ["method"],
            registry=registry,
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        latency = self.latency

        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                result = behavior(request, context)
                if asyncio.iscoroutine(result):
                    result = await result
                code = _code_name(context, "OK")
                return result
            except grpc.aio.AbortError:
                code = _code_name(context, "UNKNOWN")
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception:
                code = "UNKNOWN"
                raise
            finally:
                latency.labels(method, code).observe(time.perf_counter() - start)

        return timed

    def _stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        streams = self.streams
        started = self.active

        async def counted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started.labels(method).inc()
            code = "OK"
            try:
                async for item in behavior(request, context):
                    yield item
                code = _code_name(context, "OK")
            except grpc.aio.AbortError:
                code = _code_name(context, "UNKNOWN")
                raise
            except (asyncio.CancelledError, GeneratorExit):
                code = "CANCELLED"
                raise
            except Exception:
                code = "UNKNOWN"
                raise
            finally:
                streams.labels(method, code).inc()

        return counted


def _code_name(context: grpc.aio.ServicerContext[Any, Any], default: str) -> str:
    try:
        code = context.code()
    except Exception:  # older grpc.aio contexts have no code(); the default is then the best we know
        return default
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    return default


def _is_loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def install_metrics(app: web.Application, sidecar: Sidecar) -> list[grpc.aio.ServerInterceptor]:
    """Add the /metrics route to ``app``; return gRPC interceptors that time RPCs."""
    settings = sidecar.config.metrics
    if not settings.enabled:
        return []
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(sidecar))
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, process_open_fds, CPU seconds
    calls = CallEvents(sidecar, registry)
    rpc = RpcMetrics(registry)
    token = settings.auth_token

    async def scrape(request: web.Request) -> web.Response:
        if token:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return web.Response(status=401, text="Unauthorized\n", headers={"WWW-Authenticate": "Bearer"})
        elif not _is_loopback(request.remote):
            return web.Response(status=403, text="Forbidden: /metrics is served to loopback peers only\n")
        calls.refresh()
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def on_startup_follow(_: web.Application) -> None:
        calls.start()

    async def on_cleanup(_: web.Application) -> None:
        await calls.aclose()

    app.router.add_get(METRICS_PATH, scrape)
    app.on_startup.append(on_startup_follow)
    app.on_cleanup.append(on_cleanup)
    return [rpc]
