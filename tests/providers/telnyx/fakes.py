"""A loopback fake of Telnyx Call Control v2 speaking Telnyx's JSON shapes.

Records every request (method, path, JSON body, bearer token). Answers are scripted per
(method, path suffix) with ``script``; unscripted requests get Telnyx-shaped successes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "KEY0123456789abcdef_fake-telnyx-api-key"
CONNECTION_ID = "1234567890"
CCID = "v3:fake-call-control-id-0001"


def call_json(ccid: str = CCID, *, is_alive: bool = False) -> dict[str, Any]:
    return {
        "data": {
            "call_control_id": ccid,
            "call_leg_id": "leg-1",
            "call_session_id": "session-1",
            "is_alive": is_alive,
            "record_type": "call",
        }
    }


def error_json(code: str, title: str, detail: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"code": code, "title": title}
    if detail:
        entry["detail"] = detail
    return {"errors": [entry]}


@dataclass
class Recorded:
    method: str
    path: str
    body: dict[str, Any]
    token: str


@dataclass
class Scripted:
    status: int
    body: Any
    delay_s: float = 0.0


@dataclass
class FakeTelnyx:
    requests: list[Recorded] = field(default_factory=list)
    scripts: dict[tuple[str, str], list[Scripted]] = field(default_factory=dict)
    base_url: str = ""
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def script(self, method: str, suffix: str, status: int, body: Any, *, delay_s: float = 0.0) -> None:
        """Answer the next ``method`` request whose path ends with ``suffix`` like this."""
        self.scripts.setdefault((method, suffix), []).append(Scripted(status, body, delay_s))

    def _scripted(self, method: str, path: str) -> Scripted | None:
        for (m, suffix), queue in self.scripts.items():
            if m == method and path.endswith(suffix) and queue:
                return queue.pop(0)
        return None

    def commands(self, action: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(f"/actions/{action}")]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        auth = request.headers.get("Authorization", "")
        self.requests.append(Recorded(request.method, request.path, body, auth.removeprefix("Bearer ")))
        scripted = self._scripted(request.method, request.path)
        if scripted is not None:
            if scripted.delay_s:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._release.wait(), scripted.delay_s)
            text = scripted.body if isinstance(scripted.body, str) else json.dumps(scripted.body)
            return web.Response(status=scripted.status, text=text, content_type="application/json")
        if request.method == "POST" and request.path == "/v2/calls":
            return web.json_response(call_json())
        if request.method == "POST" and "/actions/" in request.path:
            return web.json_response({"data": {"result": "ok"}})
        if request.method == "GET" and request.path.startswith("/v2/calls/"):
            return web.json_response(call_json(request.path.rsplit("/", 1)[-1], is_alive=True))
        return web.json_response(error_json("10005", "Resource not found"), status=404)

    def release(self) -> None:
        """Let delayed answers finish (so teardown does not wait for them)."""
        self._release.set()


@asynccontextmanager
async def fake_telnyx() -> AsyncIterator[FakeTelnyx]:
    fake = FakeTelnyx()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}/v2"
    try:
        yield fake
    finally:
        fake.release()
        await runner.cleanup()
