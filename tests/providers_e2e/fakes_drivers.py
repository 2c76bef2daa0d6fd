"""One driver per provider: how its fake picks up, how its caller speaks, how its API fails.

The provider-agnostic suite talks to a driver only, so adding a provider (Telnyx) means adding one
class here and one entry in ``DRIVERS``.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from providers.base import CallRef, DialRequest, DialResult, ProviderError, ProviderErrorKind
from providers.mock import MockProvider, MockSettings
from voicecall_client.v1 import voicecall_service_pb2 as pb

from ..e2e.harness import Running, start
from ..providers.plivo.fakes import AUTH_ID as PLIVO_ID
from ..providers.plivo.fakes import AUTH_TOKEN as PLIVO_TOKEN
from ..providers.telnyx.fakes import API_KEY as TELNYX_KEY
from ..providers.telnyx.fakes import CONNECTION_ID as TELNYX_CONNECTION
from ..providers.telnyx.fakes import error_json as telnyx_error
from ..providers.twilio.fakes import ACCOUNT_SID, AUTH_TOKEN, error_json
from .conftest import self_public_config
from .fakes_plivo import PlivoCarrier, plivo_carrier
from .fakes_telnyx import TelnyxCarrier, telnyx_carrier
from .fakes_twilio import TwilioCarrier, twilio_carrier

FROM = "+15005550006"
_KIND_FOR_STATUS = {
    401: ProviderErrorKind.AUTH,
    429: ProviderErrorKind.RATE_LIMITED,
    500: ProviderErrorKind.UNAVAILABLE,
}


class Driver(Protocol):
    name: str

    async def start(self, tmp_path: Path, stack: AsyncExitStack) -> Running: ...
    async def ring(self, call: pb.Call) -> None: ...
    async def answer(self, call: pb.Call) -> None: ...
    async def wait_listening(self, call: pb.Call, turn: int) -> None:
        """Until the provider has been told to listen for the ``turn``-th time."""

    async def caller_says(self, call: pb.Call, text: str) -> None: ...
    def fail_next_dial(self, status: int) -> None:
        """The provider's REST API answers the next create-call request with HTTP ``status``."""

    async def settle(self) -> None:
        """Deliver whatever the provider still owes the sidecar (hang-up callbacks)."""


# -- mock -------------------------------------------------------------------------------------------
class FailingMock(MockProvider):
    """The mock provider whose "API" can fail like a REST API does."""

    def __init__(self, settings: MockSettings) -> None:
        super().__init__(settings)
        self.failures: list[int] = []
        self.listening = asyncio.Condition()

    async def start_listening(self, ref: CallRef, turn_token: str) -> None:
        await super().start_listening(ref, turn_token)
        async with self.listening:
            self.listening.notify_all()

    async def dial(self, request: DialRequest) -> DialResult:
        if self.failures:
            status = self.failures.pop(0)
            raise ProviderError(_KIND_FOR_STATUS[status], f"mock API answered HTTP {status}")
        return await super().dial(request)


class MockDriver:
    name = "mock"

    def __init__(self) -> None:
        # Never answers by itself: the driver picks up, as with the real providers' fakes.
        self.provider = FailingMock(MockSettings(answer_after_ms=10**9))
        self.session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self, tmp_path: Path, stack: AsyncExitStack) -> Running:
        self.session = await stack.enter_async_context(aiohttp.ClientSession())
        cfg, self.url = self_public_config(tmp_path / "s", fromNumber=FROM)
        running = await start(cfg, provider=self.provider)
        stack.push_async_callback(running.close)
        return running

    async def _inject(self, call: pb.Call, **event: Any) -> None:
        assert self.session is not None
        body = {"events": [{"callId": call.call_id, **event}]}
        async with self.session.post(self.url, json=body) as resp:
            assert resp.status == 200, await resp.text()

    async def ring(self, call: pb.Call) -> None:
        await self._inject(call, type="ringing")

    async def answer(self, call: pb.Call) -> None:
        await self._inject(call, type="answered", answeredBy="human")

    async def wait_listening(self, call: pb.Call, turn: int) -> None:
        listens = self.provider.listens
        async with self.provider.listening:
            await self.provider.listening.wait_for(
                lambda: sum(1 for cid, _ in listens if cid == call.call_id) >= turn
            )

    async def caller_says(self, call: pb.Call, text: str) -> None:
        await self._inject(call, type="speech", text=text)

    def fail_next_dial(self, status: int) -> None:
        self.provider.failures.append(status)

    async def settle(self) -> None:
        return None


# -- Twilio -----------------------------------------------------------------------------------------
class TwilioDriver:
    name = "twilio"
    carrier: TwilioCarrier

    async def start(self, tmp_path: Path, stack: AsyncExitStack) -> Running:
        self.carrier = await stack.enter_async_context(twilio_carrier())
        cfg, public = self_public_config(
            tmp_path / "s",
            provider="twilio",
            fromNumber=FROM,
            twilio={"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "baseUrl": self.carrier.base_url},
        )
        self.carrier.voice_url = public
        running = await start(cfg)
        stack.push_async_callback(running.close)
        return running

    async def ring(self, call: pb.Call) -> None:
        await self.carrier.ring(call.provider_call_id)

    async def answer(self, call: pb.Call) -> None:
        await self.carrier.answer(call.provider_call_id)

    async def wait_listening(self, call: pb.Call, turn: int) -> None:
        await self.carrier.wait_gathers(call.provider_call_id, turn)

    async def caller_says(self, call: pb.Call, text: str) -> None:
        posted = await self.carrier.say(call.provider_call_id, text)
        assert posted.status == 200

    def fail_next_dial(self, status: int) -> None:
        code = {401: 20003, 429: 20429, 500: 20500}[status]
        self.carrier.script("POST", "/Calls.json", status, error_json(status, code, "injected"))

    async def settle(self) -> None:
        await self.carrier.flush()


# -- Plivo ------------------------------------------------------------------------------------------
class PlivoDriver:
    name = "plivo"
    carrier: PlivoCarrier

    async def start(self, tmp_path: Path, stack: AsyncExitStack) -> Running:
        self.carrier = await stack.enter_async_context(plivo_carrier())
        cfg, public = self_public_config(
            tmp_path / "s",
            provider="plivo",
            fromNumber=FROM,
            plivo={"authId": PLIVO_ID, "authToken": PLIVO_TOKEN, "baseUrl": self.carrier.base_url},
        )
        self.carrier.voice_url = public
        running = await start(cfg)
        stack.push_async_callback(running.close)
        return running

    def _key(self, call: pb.Call) -> str:
        return call.provider_call_id

    async def ring(self, call: pb.Call) -> None:
        await self.carrier.ring(self._key(call))

    async def answer(self, call: pb.Call) -> None:
        posted = await self.carrier.pick_up(self._key(call))
        assert posted.status == 200

    async def wait_listening(self, call: pb.Call, turn: int) -> None:
        await self.carrier.wait_actions(self._key(call), turn)

    async def caller_says(self, call: pb.Call, text: str) -> None:
        posted = await self.carrier.say(self._key(call), text)
        assert posted.status == 200

    def fail_next_dial(self, status: int) -> None:
        self.carrier.fail(status, path_contains="/Call/")

    async def settle(self) -> None:
        await self.carrier.flush()


# -- Telnyx -----------------------------------------------------------------------------------------
class TelnyxDriver:
    name = "telnyx"
    carrier: TelnyxCarrier

    async def start(self, tmp_path: Path, stack: AsyncExitStack) -> Running:
        self.carrier = await stack.enter_async_context(telnyx_carrier())
        cfg, public = self_public_config(
            tmp_path / "s",
            provider="telnyx",
            fromNumber=FROM,
            telnyx={
                "apiKey": TELNYX_KEY,
                "connectionId": TELNYX_CONNECTION,
                "publicKey": self.carrier.public_key,
                "baseUrl": self.carrier.base_url,
            },
        )
        self.carrier.voice_url = public
        running = await start(cfg)
        stack.push_async_callback(running.close)
        return running

    async def ring(self, call: pb.Call) -> None:
        await self.carrier.ring(call.provider_call_id)

    async def answer(self, call: pb.Call) -> None:
        posted = await self.carrier.answer(call.provider_call_id)
        assert posted.status == 200, posted.text

    async def wait_listening(self, call: pb.Call, turn: int) -> None:
        await self.carrier.wait_commands(call.provider_call_id, "transcription_start", turn)

    async def caller_says(self, call: pb.Call, text: str) -> None:
        posted = await self.carrier.say(call.provider_call_id, text)
        assert posted.status == 200, posted.text

    def fail_next_dial(self, status: int) -> None:
        code = {401: "10009", 429: "10011", 500: "10007"}[status]
        self.carrier.script("POST", "/v2/calls", status, telnyx_error(code, "injected"))

    async def settle(self) -> None:
        await self.carrier.flush()


DRIVERS: dict[str, type[MockDriver] | type[TwilioDriver] | type[PlivoDriver] | type[TelnyxDriver]] = {
    "mock": MockDriver,
    "twilio": TwilioDriver,
    "plivo": PlivoDriver,
    "telnyx": TelnyxDriver,
}
