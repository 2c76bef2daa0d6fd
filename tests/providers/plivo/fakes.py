"""A loopback fake of Plivo's Voice API, and Plivo's side of the callbacks (signed like Plivo signs).

``FakePlivo`` answers the Voice API endpoints this adapter uses in Plivo's JSON shapes, checks Basic
auth, records every request, and can be told to fail (any status), to stall, or to delay.
``signed_callback`` builds the WebhookRequest our listener would hand the provider for a callback
Plivo POSTs to one of our URLs, V3-signed (and checked against the SDK's own validator).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web
from plivo.utils import validate_signature, validate_v3_signature

from providers.base import WebhookRequest
from providers.plivo.signature import v2_signature, v3_signature

AUTH_ID = "MAZDQ1ZJIYMDZKMTZIYT"
AUTH_TOKEN = "fake-plivo-token-0123456789abcdef"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    auth: tuple[str, str] | None


@dataclass
class Failure:
    status: int
    error: str = "injected failure"
    count: int = 1
    path_contains: str = ""


@dataclass
class FakePlivo:
    auth_id: str = AUTH_ID
    auth_token: str = AUTH_TOKEN
    requests: list[Recorded] = field(default_factory=list)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Live calls by CallUUID (GET ?status=live, DELETE /Call/)."""
    queued: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Requests not yet answered, by RequestUUID (GET ?status=queued, DELETE /Request/)."""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Call detail records of ended calls, by CallUUID."""
    failures: list[Failure] = field(default_factory=list)
    delay_s: float = 0.0
    stall: bool = False
    request_uuids: list[str] = field(default_factory=list)
    request_uuid_list: bool = False
    """Answer the create-call request with ``request_uuid`` as a list (as for bulk dialing)."""
    gate: asyncio.Event | None = None
    """When set, every request waits for it after being recorded."""
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _arrivals: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(
        self, status: int, *, count: int = 1, path_contains: str = "", error: str = "injected failure"
    ) -> None:
        self.failures.append(Failure(status, error, count, path_contains))

    async def wait_for_requests(self, count: int) -> None:
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: len(self.requests) >= count)

    def paths(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    # -- the API -------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: dict[str, Any] = json.loads(raw) if raw else {}
        auth = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            auth = (user, password)
        self.requests.append(Recorded(request.method, request.path, dict(request.query), body, auth))
        async with self._arrivals:
            self._arrivals.notify_all()
        if self.gate is not None:
            await self.gate.wait()
        if self.stall:
            await self._release.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        for failure in self.failures:
            if failure.count > 0 and failure.path_contains in request.path:
                failure.count -= 1
                return _json(failure.status, {"api_id": _id(), "error": failure.error})
        prefix = f"/v1/Account/{self.auth_id}/"
        if auth != (self.auth_id, self.auth_token) or not request.path.startswith(prefix):
            return _json(401, {"error": "Authentication credentials invalid"})
        if not request.path.endswith("/"):
            return _json(404, {"error": "not found"})
        parts = request.path[len(prefix) : -1].split("/")
        return self._route(request.method, parts, dict(request.query), body)

    def _route(
        self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any]
    ) -> web.Response:
        match method, parts:
            case "POST", ["Call"]:
                request_uuid = str(uuid.uuid4())
                self.request_uuids.append(request_uuid)
                self.queued[request_uuid] = {"request_uuid": request_uuid, "to": body.get("to")}
                uuids: str | list[str] = [request_uuid] if self.request_uuid_list else request_uuid
                return _json(201, {"api_id": _id(), "message": "call fired", "request_uuid": uuids})
            case "POST", ["Call", call_uuid]:
                if call_uuid not in self.live:
                    return _json(404, {"api_id": _id(), "error": "call not found"})
                return _json(202, {"api_id": _id(), "message": "call transferred"})
            case "POST", ["Call", call_uuid, "DTMF"]:
                if call_uuid not in self.live:
                    return _json(404, {"api_id": _id(), "error": "call not found"})
                return _json(202, {"api_id": _id(), "message": "digits sent"})
            case "DELETE", ["Call", call_uuid]:
                if self.live.pop(call_uuid, None) is None:
                    return _json(404, {"api_id": _id(), "error": "not found"})
                return web.Response(status=204)
            case "DELETE", ["Request", request_uuid]:
                if self.queued.pop(request_uuid, None) is None:
                    return _json(404, {"api_id": _id(), "error": "not found"})
                return web.Response(status=204)
            case "GET", ["Call", call_uuid]:
                table = {"live": self.live, "queued": self.queued}.get(query.get("status", ""), self.records)
                if call_uuid not in table:
                    return _json(404, {"api_id": _id(), "error": "call not found"})
                return _json(200, {"api_id": _id(), **table[call_uuid]})
        return _json(405, {"error": "unexpected request"})

    def answer(self, request_uuid: str, call_uuid: str | None = None) -> str:
        """Plivo connected the queued request: it is now a live call with a CallUUID."""
        call_uuid = call_uuid or str(uuid.uuid4())
        self.queued.pop(request_uuid, None)
        self.live[call_uuid] = {
            "call_uuid": call_uuid,
            "call_status": "in-progress",
            "request_uuid": request_uuid,
        }
        return call_uuid


def _id() -> str:
    return str(uuid.uuid4())


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.json_response(payload, status=status)


# -- Plivo's callbacks ------------------------------------------------------------------------------
def signed_callback(
    url: str,
    params: dict[str, str] | list[tuple[str, str]],
    *,
    nonce: str | None = None,
    token: str = AUTH_TOKEN,
    method: str = "POST",
    v2: bool = True,
    extra_headers: dict[str, str] | None = None,
) -> WebhookRequest:
    """A callback as Plivo sends it to ``url``: form-encoded, V3-signed (and V2-signed), and
    cross-checked against the SDK's validators so the fake cannot drift from Plivo's scheme."""
    nonce = nonce or uuid.uuid4().hex[:20]
    items = list(params.items()) if isinstance(params, dict) else list(params)
    if method == "GET":
        url = url + ("&" if "?" in url else "?") + urlencode(items)
        items = []
    signature = v3_signature(token, method, url, nonce, items)
    grouped: dict[str, list[str]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    assert validate_v3_signature(method, url, nonce, token, signature, grouped), "fake disagrees with the SDK"
    headers = {"x-plivo-signature-v3": signature, "x-plivo-signature-v3-nonce": nonce}
    if v2:
        v2_nonce = uuid.uuid4().hex[:20]
        headers["x-plivo-signature-v2"] = v2_signature(token, url, v2_nonce)
        headers["x-plivo-signature-v2-nonce"] = v2_nonce
        assert validate_signature(url, v2_nonce, headers["x-plivo-signature-v2"], token)
    headers.update(extra_headers or {})
    parts = urlsplit(url)
    query_items = tuple(parse_qsl(parts.query, keep_blank_values=True))
    return WebhookRequest(
        method=method,
        url=url,
        path=parts.path,
        query=dict(query_items),
        headers=headers,
        body=urlencode(items).encode() if items else b"",
        remote="127.0.0.1",
        query_items=query_items,
    )
