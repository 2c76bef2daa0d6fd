"""Plivo played end to end: the colleague's Voice API fake, extended with what Plivo does afterwards.

``PlivoCarrier`` keeps ``FakePlivo``'s routes, auth check and injected failures, and, like Plivo,
POSTs V3-signed requests (built by the colleague's ``signed_callback``, itself cross-checked with
the SDK's validator) back to the sidecar: ``ring_url``, ``answer_url`` (then runs the XML it gets),
the ``aleg_url`` of a transfer, ``<Redirect>`` targets, ``<GetInput>`` actions with ``Speech`` and
``hangup_url``. A DELETE of a live call ends it at once; its hangup callback waits for ``flush``.
"""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from ..providers.plivo.fakes import FakePlivo, signed_callback

WAIT_S = 5.0


@dataclass
class Posted:
    url: str
    params: dict[str, str]
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class PlivoCall:
    request_uuid: str
    to: str
    from_: str
    answer_url: str = ""
    hangup_url: str = ""
    ring_url: str = ""
    call_uuid: str = ""
    direction: str = "outbound"
    ended: bool = False
    actions: list[str] = field(default_factory=list)
    transfers: list[str] = field(default_factory=list)
    deletes: int = 0


def verbs(doc: str) -> list[str]:
    return [child.tag for child in ET.fromstring(doc)] if doc.strip() else []  # noqa: S314 - our own XML


class PlivoCarrier(FakePlivo):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, PlivoCall] = {}
        """By RequestUUID and, once answered, by CallUUID too."""
        self.posted: list[Posted] = []
        self.held: list[str] = []
        self.voice_url = ""
        self.changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession()

    async def shut(self) -> None:
        await self.settle()
        if self._session is not None:
            await self._session.close()
        await self.close()

    async def settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async def run() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        await asyncio.wait_for(run(), WAIT_S)

    # -- the Voice API -------------------------------------------------------------------------
    def _route(
        self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any]
    ) -> web.Response:
        response = super()._route(method, parts, query, body)
        ok = response.status < 300
        match method, parts:
            case "POST", ["Call"] if ok:
                request_uuid = self.request_uuids[-1]
                self.calls[request_uuid] = PlivoCall(
                    request_uuid,
                    to=str(body.get("to", "")),
                    from_=str(body.get("from", "")),
                    answer_url=str(body.get("answer_url", "")),
                    hangup_url=str(body.get("hangup_url", "")),
                    ring_url=str(body.get("ring_url", "")),
                )
            case "POST", ["Call", call_uuid] if ok:
                call = self.calls[call_uuid]
                url = str(body.get("aleg_url", ""))
                call.transfers.append(url)
                self._spawn(self._fetch_and_run(call, url))
            case "DELETE", ["Call", call_uuid]:
                if (gone := self.calls.get(call_uuid)) is not None:
                    gone.deletes += 1
                    if ok and not gone.ended:
                        gone.ended = True
                        self.held.append(call_uuid)
        self._spawn(self._notify())
        return response

    # -- what Plivo sends ------------------------------------------------------------------------
    def params(self, call: PlivoCall, **extra: str) -> dict[str, str]:
        out = {
            "CallUUID": call.call_uuid,
            "RequestUUID": call.request_uuid,
            "Direction": call.direction,
            "From": call.from_.lstrip("+"),
            "To": call.to.lstrip("+"),
            "CallStatus": "in-progress",
        }
        out.update(extra)
        return {k: v for k, v in out.items() if v}

    async def post(self, url: str, params: dict[str, str], *, token: str | None = None) -> Posted:
        assert self._session is not None, "open() the carrier first"
        signed = signed_callback(url, params) if token is None else signed_callback(url, params, token=token)
        headers = {**signed.headers, "Content-Type": "application/x-www-form-urlencoded"}
        async with self._session.post(url, data=signed.body, headers=headers) as resp:
            posted = Posted(url, params, resp.status, await resp.text(), headers)
        self.posted.append(posted)
        await self._notify()
        return posted

    async def resend(self, posted: Posted) -> Posted:
        """The very same signed request again (Plivo retries a callback)."""
        assert self._session is not None
        async with self._session.post(
            posted.url, data=signed_body(posted.params), headers=posted.headers
        ) as resp:
            again = Posted(posted.url, posted.params, resp.status, await resp.text(), posted.headers)
        self.posted.append(again)
        return again

    async def _run(self, call: PlivoCall, doc: str, depth: int = 0) -> None:
        if call.ended or depth > 5:
            return
        root = ET.fromstring(doc)  # noqa: S314 - our own XML
        names = [child.tag for child in root]
        if (node := root.find("GetInput")) is not None:
            call.actions.append(node.get("action", ""))
            await self._notify()
        if names[-1:] == ["Hangup"]:
            await self.end(call.call_uuid or call.request_uuid, "completed")
            return
        redirect = root.find("Redirect")
        if redirect is not None and "Wait" not in names and redirect.text:
            # Speech done: Plivo follows the redirect at once (a keep-alive Wait would hold it).
            await self._fetch_and_run(call, redirect.text, depth + 1)

    async def _fetch_and_run(self, call: PlivoCall, url: str, depth: int = 0) -> None:
        fetched = await self.post(url, self.params(call))
        if fetched.status == 200:
            await self._run(call, fetched.body, depth)

    async def ring(self, request_uuid: str) -> None:
        call = self.calls[request_uuid]
        await self.post(call.ring_url, self.params(call, CallStatus="ringing", Event="Ring"))

    async def pick_up(self, request_uuid: str) -> Posted:
        """The callee answers: Plivo fetches the answer URL and runs the XML."""
        call = self.calls[request_uuid]
        call.call_uuid = self.answer(request_uuid)
        self.calls[call.call_uuid] = call
        fetched = await self.post(call.answer_url, self.params(call, Event="StartApp"))
        if fetched.status == 200:
            await self._run(call, fetched.body)
        return fetched

    async def end(self, key: str, status: str, cause: str = "NORMAL_CLEARING") -> Posted | None:
        call = self.calls[key]
        if call.ended and status != "completed-held":
            return None
        call.ended = True
        self.live.pop(call.call_uuid, None)
        self.queued.pop(call.request_uuid, None)
        status = "completed" if status == "completed-held" else status
        return await self.post(
            call.hangup_url or self.voice_url,
            self.params(call, CallStatus=status, Event="Hangup", HangupCause=cause, Duration="7"),
        )

    async def flush(self) -> None:
        await self.settle()
        held, self.held = self.held, []
        for key in held:
            await self.end(key, "completed-held")

    async def say(self, key: str, text: str, *, action: str | None = None) -> Posted:
        call = self.calls[key]
        target = action or call.actions[-1]
        return await self.post(
            target, self.params(call, InputType="speech", Speech=text, SpeechConfidenceScore="0.91")
        )

    async def wait_actions(self, key: str, count: int) -> str:
        await self.wait_for(lambda: len(self.calls[key].actions) >= count)
        return self.calls[key].actions[count - 1]

    async def inbound(self, from_: str, to: str, *, token: str | None = None) -> tuple[str, Posted]:
        """A caller dials our Plivo number: Plivo fetches the application's answer URL."""
        call_uuid = str(uuid.uuid4())
        call = PlivoCall("", to=to, from_=from_, call_uuid=call_uuid, direction="inbound")
        self.calls[call_uuid] = call
        self.live[call_uuid] = {"call_uuid": call_uuid, "call_status": "in-progress"}
        posted = await self.post(
            self.voice_url, self.params(call, CallStatus="ringing", Event="StartApp"), token=token
        )
        if posted.status == 200:
            await self._run(call, posted.body)
        return call_uuid, posted


def signed_body(params: dict[str, str]) -> bytes:
    return urlencode(list(params.items())).encode()


@asynccontextmanager
async def plivo_carrier() -> AsyncIterator[PlivoCarrier]:
    carrier = PlivoCarrier()
    await carrier.start()
    await carrier.open()
    try:
        yield carrier
    finally:
        carrier.stall = False
        await carrier.shut()
