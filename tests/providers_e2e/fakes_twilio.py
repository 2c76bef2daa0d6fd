"""Twilio played end to end: the colleague's REST fake, extended with what Twilio does afterwards.

``TwilioCarrier`` records Calls.json creates and updates like ``FakeTwilio`` (and honours its
scripted failures), gives every call its own CallSid, and, like Twilio, POSTs correctly signed
requests back to the sidecar: status callbacks to ``StatusCallback``, the ``Url`` fetch on answer,
``AsyncAmdStatusCallback`` verdicts, Gather ``SpeechResult`` posts to the action URL of the latest
``<Gather>``, and inbound voice requests. Signatures come from the SDK's own ``RequestValidator``,
so the fake cannot agree with a wrong signer in the product.

Twilio runs the TwiML it receives: a document ending in ``<Hangup/>`` ends the call (``completed``
callback); an update with ``Status=completed`` does too. Callbacks an update causes are sent after
the REST answer, from tracked tasks (``settle`` waits for them).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from ..providers.twilio.fakes import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, Recorded, call_json

WAIT_S = 5.0
TERMINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


@dataclass
class Posted:
    url: str
    params: dict[str, str]
    status: int
    body: str


@dataclass
class TwilioCall:
    sid: str
    to: str
    from_: str
    direction: str = "outbound-api"
    status_callback: str = ""
    status_events: tuple[str, ...] = ()
    url: str = ""
    twiml: str = ""
    amd_callback: str = ""
    gather_actions: list[str] = field(default_factory=list)
    updates: list[dict[str, str]] = field(default_factory=list)
    status: str = "queued"


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def verbs(doc: str) -> list[str]:
    if not doc.strip():
        return []
    return [child.tag for child in ET.fromstring(doc)]  # noqa: S314 - TwiML from our own sidecar


def gather_action(doc: str) -> str | None:
    if not doc.strip():
        return None
    node = ET.fromstring(doc).find("Gather")  # noqa: S314 - TwiML from our own sidecar
    return None if node is None else node.get("action")


class TwilioCarrier(FakeTwilio):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, TwilioCall] = {}
        self.posted: list[Posted] = []
        self.changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.held: list[str] = []
        self.voice_url = ""
        """The number's voice URL (inbound calls): the sidecar's public webhook URL."""

    # -- lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.settle()
        if self._session is not None:
            await self._session.close()

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

    # -- the REST side --------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        form = parse_qsl(body, keep_blank_values=True)
        self.requests.append(Recorded(request.method, request.path, form, _user(request)))
        try:
            scripted = self._scripted(request.method, request.path)
            if scripted is not None:
                return web.json_response(scripted.body, status=scripted.status)
            if request.method == "POST" and request.path.endswith("/Calls.json"):
                return web.json_response(self._create(form), status=201)
            sid = request.path.rsplit("/", 1)[-1].removesuffix(".json")
            call = self.calls.get(sid)
            if call is None:
                call = self.calls[sid] = TwilioCall(sid, "", "", direction="inbound")
            if request.method == "POST":
                self._update(call, dict(form))
            return web.json_response(call_json(sid, call.status))
        finally:
            await self._notify()

    def _create(self, form: list[tuple[str, str]]) -> dict[str, Any]:
        fields = dict(form)
        sid = "CA" + uuid.uuid4().hex
        self.calls[sid] = TwilioCall(
            sid,
            to=fields.get("To", ""),
            from_=fields.get("From", ""),
            status_callback=fields.get("StatusCallback", ""),
            status_events=tuple(v for k, v in form if k == "StatusCallbackEvent"),
            url=fields.get("Url", ""),
            twiml=fields.get("Twiml", ""),
            amd_callback=fields.get("AsyncAmdStatusCallback", ""),
        )
        out = call_json(sid, "queued")
        out.update({"to": fields.get("To"), "from": fields.get("From")})
        return out

    def _update(self, call: TwilioCall, fields: dict[str, str]) -> None:
        call.updates.append(fields)
        if fields.get("Status") == "completed":
            if call.status not in TERMINAL:
                # Twilio ends the call at once; its completed callback follows some time later,
                # which the test releases with flush() (the order is what makes a test deterministic).
                call.status = "completed"
                self.held.append(call.sid)
            return
        if doc := fields.get("Twiml"):
            self._spawn(self._run_twiml(call, doc))

    async def flush(self) -> None:
        """Send the completed callbacks of calls our REST hang-ups ended."""
        await self.settle()
        held, self.held = self.held, []
        for sid in held:
            call = self.calls[sid]
            await self._status(call, "completed", "completed", CallDuration="7")

    async def _run_twiml(self, call: TwilioCall, doc: str) -> None:
        if call.status in TERMINAL:
            return
        if action := gather_action(doc):
            call.gather_actions.append(action)
            await self._notify()
        if verbs(doc)[-1:] == ["Hangup"]:
            await self.end(call.sid, "completed")

    # -- what Twilio sends ------------------------------------------------------------------------
    def params(self, call: TwilioCall, **extra: str) -> dict[str, str]:
        out = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Direction": call.direction,
            "From": call.from_,
            "To": call.to,
            "Called": call.to,
            "Caller": call.from_,
        }
        out.update(extra)
        return out

    async def post(self, url: str, params: dict[str, str], *, signature: str | None = None) -> Posted:
        assert self._session is not None, "open() the carrier first"
        headers = {"X-Twilio-Signature": sign(url, params) if signature is None else signature}
        async with self._session.post(url, data=params, headers=headers) as resp:
            posted = Posted(url, params, resp.status, await resp.text())
        self.posted.append(posted)
        await self._notify()
        return posted

    async def _status(self, call: TwilioCall, status: str, event: str, **extra: str) -> Posted | None:
        call.status = status
        if not call.status_callback or (call.status_events and event not in call.status_events):
            return None
        return await self.post(
            call.status_callback, self.params(call, CallbackSource="call-progress-events", **extra)
        )

    async def ring(self, sid: str) -> None:
        call = self.calls[sid]
        await self._status(call, "initiated", "initiated")
        await self._status(call, "ringing", "ringing")

    async def answer(self, sid: str, *, answered_by: str = "") -> Posted | None:
        """The callee picks up: the answered callback, the AMD verdict, then the call's TwiML."""
        call = self.calls[sid]
        await self._status(call, "in-progress", "answered")
        if answered_by and call.amd_callback:
            await self.post(call.amd_callback, self.params(call, AnsweredBy=answered_by))
        if call.twiml:
            await self._run_twiml(call, call.twiml)
            return None
        if call.url:
            extra = {"AnsweredBy": answered_by} if answered_by else {}
            fetched = await self.post(call.url, self.params(call, **extra))
            await self._run_twiml(call, fetched.body)
            return fetched
        return None

    async def end(self, sid: str, status: str, **extra: str) -> Posted | None:
        """The call ends on Twilio's side with ``status`` (nothing if it already ended)."""
        call = self.calls[sid]
        if call.status in TERMINAL:
            return None
        return await self._status(call, status, "completed", CallDuration="7", **extra)

    async def say(self, sid: str, text: str, *, action: str | None = None) -> Posted:
        """The caller speaks into the latest ``<Gather>`` (or into ``action``)."""
        call = self.calls[sid]
        target = action or call.gather_actions[-1]
        return await self.post(target, self.params(call, SpeechResult=text, Confidence="0.93"))

    async def wait_gathers(self, sid: str, count: int) -> str:
        await self.wait_for(lambda: len(self.calls[sid].gather_actions) >= count)
        return self.calls[sid].gather_actions[count - 1]

    async def inbound(self, from_: str, to: str, *, signature: str | None = None) -> tuple[str, Posted]:
        """A caller dials our number: Twilio fetches the number's voice URL."""
        sid = "CA" + uuid.uuid4().hex
        call = self.calls[sid] = TwilioCall(sid, to=to, from_=from_, direction="inbound", status="ringing")
        posted = await self.post(self.voice_url, self.params(call), signature=signature)
        if posted.status == 200:
            await self._run_twiml(call, posted.body)
        return sid, posted

    def hangups(self, sid: str) -> int:
        return sum(1 for u in self.calls[sid].updates if u.get("Status") == "completed")


def _user(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    return base64.b64decode(auth[6:]).decode().split(":", 1)[0] if auth.startswith("Basic ") else ""


@asynccontextmanager
async def twilio_carrier() -> AsyncIterator[TwilioCarrier]:
    carrier = TwilioCarrier()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", carrier.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    carrier.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    await carrier.open()
    try:
        yield carrier
    finally:
        await carrier.close()
        carrier.release()
        await runner.cleanup()
