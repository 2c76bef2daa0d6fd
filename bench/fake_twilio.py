"""A loopback fake of Twilio's Calls REST API (its JSON call resource), with injectable faults.

Serves ``POST /2010-04-01/Accounts/{sid}/Calls.json`` (create), ``POST .../Calls/{sid}.json``
(update: hang up, new TwiML) and ``GET .../Calls/{sid}.json`` (fetch). ``faults`` maps a fault to
the share of requests that get it: ``"500"``, ``"429"``, ``"timeout"`` (answer after
``slow_s``), ``"reset"`` (close the connection without an answer).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"  # noqa: S105 - loopback fake


@dataclass
class FakeTwilio:
    faults: dict[str, float] = field(default_factory=dict)
    seed: int = 1
    slow_s: float = 1.0
    url: str = ""
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    _runner: web.AppRunner | None = None
    _next: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def start(self) -> FakeTwilio:
        app = web.Application()
        base = "/2010-04-01/Accounts/{account}/Calls"
        app.router.add_post(base + ".json", self._create)
        app.router.add_post(base + "/{sid}.json", self._update)
        app.router.add_get(base + "/{sid}.json", self._fetch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:
        roll = self._rng.random()
        for name, rate in self.faults.items():
            if roll < rate:
                self.outcomes[name] += 1
                if name == "timeout":
                    await asyncio.sleep(self.slow_s)
                    return None  # answered, but after the client gave up
                if name == "reset":
                    if request.transport is not None:
                        request.transport.abort()
                    return web.Response(status=500)
                code = int(name)
                body = {"code": 20429 if code == 429 else 20500, "message": "injected fault", "status": code}
                return web.json_response(body, status=code)
            roll -= rate
        self.outcomes["ok"] += 1
        return None

    def _resource(self, sid: str, status: str, form: dict[str, str]) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        return {
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "status": status,
            "direction": "outbound-api",
            "to": form.get("To", "+15551230001"),
            "from": form.get("From", "+15550000000"),
            "date_created": now,
            "date_updated": now,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json",
        }

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self.requests["create"] += 1
        form = {k: str(v) for k, v in (await request.post()).items()}
        if (faulted := await self._fault(request)) is not None:
            return faulted
        self._next += 1
        sid = f"CA{self._next:032x}"
        call = self._resource(sid, "queued", form)
        self.created[sid] = call
        return web.json_response(call, status=201)

    async def _update(self, request: web.Request) -> web.StreamResponse:
        self.requests["update"] += 1
        form = {k: str(v) for k, v in (await request.post()).items()}
        if (faulted := await self._fault(request)) is not None:
            return faulted
        sid = request.match_info["sid"]
        call = self.created.get(sid)
        if call is None:
            return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)
        if form.get("Status") == "completed":
            call["status"] = "completed"
        return web.json_response(call)

    async def _fetch(self, request: web.Request) -> web.StreamResponse:
        self.requests["fetch"] += 1
        if (faulted := await self._fault(request)) is not None:
            return faulted
        call = self.created.get(request.match_info["sid"])
        if call is None:
            return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)
        return web.json_response(call)
