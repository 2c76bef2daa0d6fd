"""The webhook pipeline: path -> method -> pre-auth limits -> signature -> replay -> events -> reply.

Nothing reaches the call manager before the provider's signature checks out, and a validly signed
replay gets the first reply again with no side effect (it can never mint a new stream token).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import web

from providers.base import Provider, WebhookReply, WebhookRequest

from ..manager import CallManager
from .inflight import InflightLimiter
from .public_url import ForwardingPolicy, reconstruct
from .replay import ReplayCache, ResponseCache

log = logging.getLogger("voicecall.webhook")


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    path: str = "/voice/webhook"
    public_url: str | None = None
    policy: ForwardingPolicy = field(default_factory=ForwardingPolicy)
    max_preauth_body: int = 64 * 1024
    preauth_read_timeout_s: float = 5.0
    max_inflight_per_ip: int = 8


class _TooLarge(Exception):
    pass


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


class WebhookListener:
    def __init__(self, settings: ListenerSettings, provider: Provider, manager: CallManager) -> None:
        self.settings = settings
        self.provider = provider
        self.manager = manager
        self.inflight = InflightLimiter(settings.max_inflight_per_ip)
        self.replays = ReplayCache()
        self.replies: ResponseCache[WebhookReply] = ResponseCache()
        self.counts: dict[str, int] = {}

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def add_routes(self, app: web.Application) -> None:
        path = self.settings.path.rstrip("/") or "/"
        app.router.add_route("*", path, self.handle)
        if path != "/":
            app.router.add_route("*", path + "/", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            self._count("method")
            return web.Response(status=405, text="Method Not Allowed\n", headers={"Allow": "POST"})
        required = self.provider.signature_headers
        if required and not any(h in request.headers for h in required):
            self._count("unsigned")
            log.warning("webhook without %s rejected before reading its body", " or ".join(required))
            return _text(401, "Unauthorized: missing provider signature header")
        ip = request.remote or ""
        if not self.inflight.try_acquire(ip):
            self._count("limit")
            return _text(429, "Too Many Requests")
        try:
            body = await asyncio.wait_for(
                _read_limited(request, self.settings.max_preauth_body), self.settings.preauth_read_timeout_s
            )
        except _TooLarge:
            self._count("limit")
            return _text(413, "Payload Too Large")
        except TimeoutError:
            self._count("limit")
            return _text(408, "Request Timeout")
        finally:
            self.inflight.release(ip)
        return await self._authenticated(request, body)

    def build_request(self, request: web.Request, body: bytes) -> WebhookRequest:
        headers = {k.lower(): v for k, v in request.headers.items()}
        recon = reconstruct(
            policy=self.settings.policy,
            public_url=self.settings.public_url,
            scheme=request.scheme,
            host_header=request.headers.get("Host"),
            headers=headers,
            remote_ip=request.remote or "",
            path_qs=request.path_qs,
            local_host=request.host,
        )
        return WebhookRequest(
            method=request.method,
            url=recon.url,
            path=request.path,
            query={k: v for k, v in request.query.items()},
            headers=headers,
            body=body,
            remote=request.remote or "",
            url_variants=recon.variants,
            query_items=tuple(request.query.items()),
        )

    async def _authenticated(self, request: web.Request, body: bytes) -> web.StreamResponse:
        wreq = self.build_request(request, body)
        verification = self.provider.verify_webhook(wreq)
        if not verification.ok:
            self._count("bad_signature")
            log.warning(
                "webhook signature rejected (%s); URL checked: %s",
                verification.reason,
                verification.checked_url or wreq.url,
            )
            return _text(401, "Unauthorized")
        key = verification.replay_key
        replay = bool(key) and self.replays.seen_or_add(key or "")
        if replay and key and (cached := self.replies.get(key)) is not None:
            self._count("replay")
            return self._response(cached)
        try:
            events = self.provider.parse_webhook(wreq, verification)
        except ValueError as err:
            self._count("malformed")
            return _text(400, f"Bad Request: {err}")
        outcome = await self.manager.handle_events(events, replay=replay)
        await self.manager.store.flush()  # durable before the provider hears "OK"
        reply = self.provider.webhook_reply(wreq, outcome)
        if key and not replay:
            self.replies.remember(key, reply)
        self._count("replay" if replay else "accepted")
        return self._response(reply)

    @staticmethod
    def _response(reply: WebhookReply) -> web.Response:
        return web.Response(
            status=reply.status, body=reply.body, content_type=reply.content_type, headers=dict(reply.headers)
        )
