"""Telnyx played end to end: the colleague's Call Control fake, extended with what Telnyx does afterwards.

``TelnyxCarrier`` keeps ``FakeTelnyx``'s recording and scripted failures, gives every dialled or
incoming call its own ``call_control_id``, and, like Telnyx, POSTs Ed25519-signed webhooks
(``telnyx-signature-ed25519`` over ``timestamp|body``, ``telnyx-timestamp``) to the call's
``webhook_url`` (the dial command's, else the connection's ``voice_url``), echoing the
``client_state`` the last dial or answer command set. The key pair is generated per carrier; the
sidecar is configured with ``public_key_b64``.

Commands have their Telnyx consequences: ``answer`` is followed by ``call.answered``; ``hangup``
ends the call at once while its ``call.hangup`` waits for ``flush`` (so a test decides the order);
``transcription_start`` is counted so a test can wait for a listen turn. Everything else a caller
does (ring, pick up, speak, press keys, machine verdicts, hang up) is a method.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from providers.telnyx.webhook import decode_client_state

from ..providers.telnyx.fakes import CONNECTION_ID, FakeTelnyx, Recorded, call_json

WAIT_S = 5.0


@dataclass
class Posted:
    url: str
    body: bytes
    headers: dict[str, str]
    status: int
    text: str


@dataclass
class TelnyxCall:
    ccid: str
    to: str
    from_: str
    direction: str = "outgoing"
    webhook_url: str = ""
    client_state: str | None = None
    answered: bool = False
    ended: bool = False
    stream_url: str = ""
    amd: str = ""
    commands: list[Recorded] = field(default_factory=list)

    @property
    def call_id(self) -> str | None:
        return decode_client_state(self.client_state)


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte public key, base64 (one of the forms Telnyx's portal shows)."""
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def signed_headers(key: Ed25519PrivateKey, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    sig = base64.b64encode(key.sign(ts.encode() + b"|" + body)).decode()
    return {
        "telnyx-signature-ed25519": sig,
        "telnyx-timestamp": ts,
        "Content-Type": "application/json",
    }


class TelnyxCarrier(FakeTelnyx):
    def __init__(self) -> None:
        super().__init__()
        self.key = Ed25519PrivateKey.generate()
        self.calls: dict[str, TelnyxCall] = {}
        self.posted: list[Posted] = []
        self.held: list[str] = []
        self.voice_url = ""
        """The connection's webhook URL (inbound calls): the sidecar's public webhook URL."""
        self.changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)

    # -- lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        self._session = aiohttp.ClientSession()

    async def shut(self) -> None:
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

    # -- the Call Control API --------------------------------------------------------------------
    def _dial_scripted(self) -> bool:
        return any(m == "POST" and "/v2/calls".endswith(s) and q for (m, s), q in self.scripts.items())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            if request.method == "POST" and request.path == "/v2/calls" and not self._dial_scripted():
                return await self._dial(request)
            response = await super().handle(request)
            last = self.requests[-1]
            if response.status < 300 and "/actions/" in last.path:
                self._command(last)
            return response
        finally:
            await self._notify()

    async def _dial(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        auth = request.headers.get("Authorization", "")
        self.requests.append(Recorded(request.method, request.path, body, auth.removeprefix("Bearer ")))
        ccid = "v3:" + uuid.uuid4().hex
        self.calls[ccid] = TelnyxCall(
            ccid,
            to=str(body.get("to", "")),
            from_=str(body.get("from", "")),
            webhook_url=str(body.get("webhook_url", "")),
            client_state=body.get("client_state"),
            amd=str(body.get("answering_machine_detection", "")),
        )
        return web.json_response(call_json(ccid))

    def _command(self, cmd: Recorded) -> None:
        # /v2/calls/{call_control_id}/actions/{action}
        ccid, action = cmd.path.removeprefix("/v2/calls/").split("/actions/", 1)
        call = self.calls.get(ccid)
        if call is None:
            return
        call.commands.append(cmd)
        if action == "answer" and not call.answered and not call.ended:
            call.answered = True
            call.client_state = cmd.body.get("client_state", call.client_state)
            call.webhook_url = str(cmd.body.get("webhook_url") or call.webhook_url)
            call.stream_url = str(cmd.body.get("stream_url", ""))
            self._spawn(self.event(ccid, "call.answered"))
        elif action == "hangup" and not call.ended:
            # Telnyx ends the call now; its call.hangup follows later (flush releases it).
            call.ended = True
            self.held.append(ccid)

    def sent(self, ccid: str, action: str) -> list[dict[str, Any]]:
        """The bodies of the ``action`` commands sent for this call, in order."""
        return [c.body for c in self.calls[ccid].commands if c.path.endswith(f"/actions/{action}")]

    # -- what Telnyx sends ------------------------------------------------------------------------
    def envelope(self, ccid: str, event_type: str, **payload: Any) -> bytes:
        call = self.calls[ccid]
        body: dict[str, Any] = {
            "call_control_id": ccid,
            "call_leg_id": "leg-" + ccid[3:15],
            "call_session_id": "session-" + ccid[3:15],
            "connection_id": CONNECTION_ID,
            "client_state": call.client_state,
            "from": call.from_,
            "to": call.to,
        }
        body.update(payload)
        return json.dumps(
            {
                "data": {
                    "id": str(uuid.uuid4()),
                    "event_type": event_type,
                    "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "record_type": "event",
                    "payload": body,
                },
                "meta": {"attempt": 1, "delivered_to": call.webhook_url or self.voice_url},
            }
        ).encode()

    async def post(
        self,
        url: str,
        body: bytes,
        *,
        key: Ed25519PrivateKey | None = None,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Posted:
        assert self._session is not None, "open() the carrier first"
        sent = headers if headers is not None else signed_headers(key or self.key, body, timestamp)
        async with self._session.post(url, data=body, headers=sent) as resp:
            posted = Posted(url, body, sent, resp.status, await resp.text())
        self.posted.append(posted)
        await self._notify()
        return posted

    async def event(self, ccid: str, event_type: str, **payload: Any) -> Posted:
        call = self.calls[ccid]
        return await self.post(call.webhook_url or self.voice_url, self.envelope(ccid, event_type, **payload))

    async def resend(self, posted: Posted) -> Posted:
        """The very same signed delivery again (Telnyx retries a webhook it thinks failed)."""
        return await self.post(posted.url, posted.body, headers=posted.headers)

    async def ring(self, ccid: str) -> None:
        await self.event(ccid, "call.initiated", direction="outgoing", state="bridging")
        await self.event(ccid, "call.ringing", direction="outgoing")

    async def answer(self, ccid: str) -> Posted:
        """The callee picks up an outbound call."""
        self.calls[ccid].answered = True
        return await self.event(ccid, "call.answered", state="answered")

    async def machine(self, ccid: str, result: str, *, premium: bool = False) -> Posted:
        kind = "call.machine.premium.detection.ended" if premium else "call.machine.detection.ended"
        return await self.event(ccid, kind, result=result)

    async def say(self, ccid: str, text: str, *, final: bool = True, confidence: float = 0.91) -> Posted:
        data = {"transcript": text, "confidence": confidence, "is_final": final}
        return await self.event(ccid, "call.transcription", transcription_data=data)

    async def dtmf(self, ccid: str, digit: str) -> Posted:
        return await self.event(ccid, "call.dtmf.received", digit=digit)

    async def end(self, ccid: str, cause: str, source: str = "callee") -> Posted | None:
        """The call ends on Telnyx's side (nothing if it already ended)."""
        call = self.calls[ccid]
        if call.ended:
            return None
        call.ended = True
        return await self.event(ccid, "call.hangup", hangup_cause=cause, hangup_source=source)

    async def flush(self) -> None:
        """Send the call.hangup webhooks of calls our hang-up commands ended."""
        await self.settle()
        held, self.held = self.held, []
        for ccid in held:
            await self.event(ccid, "call.hangup", hangup_cause="normal_clearing", hangup_source="caller")

    async def wait_commands(self, ccid: str, action: str, count: int) -> dict[str, Any]:
        await self.wait_for(lambda: ccid in self.calls and len(self.sent(ccid, action)) >= count)
        return self.sent(ccid, action)[count - 1]

    async def inbound(
        self, from_: str, to: str, *, key: Ed25519PrivateKey | None = None
    ) -> tuple[str, Posted]:
        """A caller dials our Telnyx number: Telnyx reports call.initiated (incoming) and waits."""
        ccid = "v3:" + uuid.uuid4().hex
        self.calls[ccid] = TelnyxCall(ccid, to=to, from_=from_, direction="incoming")
        body = self.envelope(ccid, "call.initiated", direction="incoming", state="parked")
        return ccid, await self.post(self.voice_url, body, key=key)

    def hangups(self, ccid: str) -> int:
        return len(self.sent(ccid, "hangup"))


@asynccontextmanager
async def telnyx_carrier() -> AsyncIterator[TelnyxCarrier]:
    carrier = TelnyxCarrier()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", carrier.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    carrier.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v2"
    await carrier.open()
    try:
        yield carrier
    finally:
        await carrier.shut()
        carrier.release()
        await runner.cleanup()
