"""A loopback fake of Twilio's REST API (2010-04-01 Calls) speaking Twilio's JSON shapes.

Records every request (method, path, form fields in order, Basic-auth user). Answers are scripted
per (method, path suffix) with ``script``; unscripted requests get Twilio-shaped successes.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"
CALL_SID = "CA" + "fedcba9876543210" * 2


def call_json(sid: str = CALL_SID, status: str = "queued") -> dict[str, Any]:
    return {
        "account_sid": ACCOUNT_SID,
        "answered_by": None,
        "api_version": "2010-04-01",
        "direction": "outbound-api",
        "from": "+15005550006",
        "to": "+15551230000",
        "sid": sid,
        "status": status,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json",
    }


def error_json(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@dataclass
class Recorded:
    method: str
    path: str
    form: list[tuple[str, str]]
    user: str


@dataclass
class Scripted:
    status: int
    body: Any
    delay_s: float = 0.0


@dataclass
class FakeTwilio:
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

    def forms(self, method: str = "POST") -> Iterator[list[tuple[str, str]]]:
        return (r.form for r in self.requests if r.method == method)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        auth = request.headers.get("Authorization", "")
        user = ""
        if auth.startswith("Basic "):
            user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        self.requests.append(
            Recorded(request.method, request.path, parse_qsl(body, keep_blank_values=True), user)
        )
        scripted = self._scripted(request.method, request.path)
        if scripted is not None:
            if scripted.delay_s:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._release.wait(), scripted.delay_s)
            text = scripted.body if isinstance(scripted.body, str) else json.dumps(scripted.body)
            return web.Response(status=scripted.status, text=text, content_type="application/json")
        if request.method == "POST" and request.path.endswith("/Calls.json"):
            return web.json_response(call_json(), status=201)
        sid = request.path.rsplit("/", 1)[-1].removesuffix(".json")
        status = "completed" if ("Status", "completed") in self.requests[-1].form else "in-progress"
        return web.json_response(call_json(sid, status))

    def release(self) -> None:
        """Let delayed answers finish (so teardown does not wait for them)."""
        self._release.set()


@asynccontextmanager
async def fake_twilio() -> Any:
    fake = FakeTwilio()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        fake.release()
        await runner.cleanup()
