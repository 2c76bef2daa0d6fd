"""TelnyxProvider: the Provider protocol over Telnyx Call Control v2 (reference 3.2, fixed).

Stateless across restarts: our call id travels in ``client_state`` (base64) on dial and answer,
and Telnyx echoes it on every later webhook of the call. Every command carries a fresh
``command_id`` so Telnyx drops duplicates of one command.

Inbound calls: Telnyx reports ``call.initiated`` with direction ``incoming`` and waits; the manager
applies the inbound policy and then calls ``answer`` (the classic plugin never answered, so inbound
calls rang out). ``answer`` can attach a bidirectional media stream (PCMU, RTP mode) at once.

Speech: ``speak`` uses Telnyx's own TTS; ``start_listening`` starts Telnyx transcription, whose
results arrive as ``call.transcription`` webhooks (Telnyx does not echo a turn token).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..base import (
    CallRef,
    DialRequest,
    DialResult,
    EventSink,
    ProviderError,
    ProviderErrorKind,
    ProviderEvent,
    RemoteStatus,
    Verification,
    WebhookOutcome,
    WebhookReply,
    WebhookRequest,
)
from . import signature
from .api import ALREADY_ENDED_CODES, TelnyxRest
from .settings import TelnyxSettings
from .webhook import encode_client_state, parse_webhook, webhook_reply

MACHINE_DETECTION = {"detect": "detect", "leave-message": "detect_beep"}
"""``detect_beep`` also reports when the greeting's beep ends, so a message can follow it."""


def _command_id() -> str:
    return str(uuid.uuid4())


def stream_url_with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    parts = urlsplit(url)
    query = f"{parts.query}&token={token}" if parts.query else f"token={token}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _already_ended(err: ProviderError) -> bool:
    return err.kind is ProviderErrorKind.NOT_FOUND or err.provider_code in ALREADY_ENDED_CODES


class TelnyxProvider:
    name = "telnyx"
    speaks_pending_in_reply = False
    signature_headers: tuple[str, ...] = (signature.SIGNATURE_HEADER,)

    def __init__(self, settings: TelnyxSettings) -> None:
        self.settings = settings
        self.rest = TelnyxRest(settings)
        self._webhook_url = ""

    def __repr__(self) -> str:
        return f"TelnyxProvider({self.settings!r})"

    async def start(self, sink: EventSink, webhook_url: str) -> None:
        # Telnyx reports everything by webhook; the sink is not needed.
        self._webhook_url = webhook_url

    async def aclose(self) -> None:
        await self.rest.aclose()

    # -- REST -------------------------------------------------------------------------------------
    def _actions(self) -> Any:
        return self.rest.client.calls.actions

    @staticmethod
    def _ccid(ref: CallRef, action: str) -> str:
        if not ref.provider_call_id:
            raise ProviderError(
                ProviderErrorKind.REJECTED, f"cannot {action}: the call has no Telnyx call_control_id yet"
            )
        return ref.provider_call_id

    async def dial(self, request: DialRequest) -> DialResult:
        params: dict[str, Any] = {
            "connection_id": self.settings.connection_id,
            "to": request.to_number,
            "from_": request.from_number,
            "webhook_url": request.webhook_url or self._webhook_url,
            "webhook_url_method": "POST",
            "client_state": encode_client_state(request.call_id),
            "timeout_secs": int(request.ring_timeout_s),
            "command_id": _command_id(),
        }
        amd = MACHINE_DETECTION.get(request.machine_detection)
        if amd is not None:
            params["answering_machine_detection"] = amd
        calls = self.rest.client.calls
        response = await self.rest.run("place the call", lambda: calls.dial(**params))
        ccid = getattr(getattr(response, "data", None), "call_control_id", None)
        if not isinstance(ccid, str) or not ccid:
            raise ProviderError(
                ProviderErrorKind.UNAVAILABLE, "Telnyx accepted the call but returned no call_control_id"
            )
        return DialResult(ccid, "initiated")

    async def answer(self, ref: CallRef) -> None:
        """Answer an inbound call, tagging it with our call id and, if given, opening a media stream."""
        ccid = self._ccid(ref, "answer the call")
        params: dict[str, Any] = {
            "client_state": encode_client_state(ref.call_id),
            "command_id": _command_id(),
        }
        if self._webhook_url:
            params["webhook_url"] = self._webhook_url
            params["webhook_url_method"] = "POST"
        if ref.stream_url:
            params["stream_url"] = stream_url_with_token(ref.stream_url, ref.stream_token)
            params["stream_track"] = "inbound_track"
            params["stream_bidirectional_mode"] = "rtp"
            params["stream_bidirectional_codec"] = "PCMU"
        actions = self._actions()
        await self.rest.run("answer the call", lambda: actions.answer(ccid, **params))

    async def start_stream(self, ref: CallRef) -> None:
        """Open a bidirectional media stream on an answered call: an outbound dial carries none."""
        if not ref.stream_url:
            return
        ccid = self._ccid(ref, "stream the call")
        params: dict[str, Any] = {
            "stream_url": stream_url_with_token(ref.stream_url, ref.stream_token),
            "stream_track": "inbound_track",
            "stream_bidirectional_mode": "rtp",
            "stream_bidirectional_codec": "PCMU",
            "command_id": _command_id(),
        }
        actions = self._actions()
        await self.rest.run("stream the call", lambda: actions.start_streaming(ccid, **params))

    async def hangup(self, ref: CallRef) -> None:
        if not ref.provider_call_id:
            return
        ccid = ref.provider_call_id
        actions = self._actions()
        try:
            await self.rest.run("hang up the call", lambda: actions.hangup(ccid, command_id=_command_id()))
        except ProviderError as err:
            if _already_ended(err):
                return
            raise

    async def speak(self, ref: CallRef, text: str, *, voice: str | None = None) -> None:
        ccid = self._ccid(ref, "speak on the call")
        params: dict[str, Any] = {
            "payload": text,
            "voice": voice or self.settings.voice,
            "language": self.settings.language,
            "command_id": _command_id(),
        }
        actions = self._actions()
        await self.rest.run("speak on the call", lambda: actions.speak(ccid, **params))

    async def start_listening(self, ref: CallRef, turn_token: str) -> None:
        ccid = self._ccid(ref, "listen on the call")
        language = self.settings.language.split("-", 1)[0].lower() or "en"
        params: dict[str, Any] = {
            "command_id": _command_id(),
            "transcription_engine": "Telnyx",
            "transcription_engine_config": {"transcription_engine": "Telnyx", "language": language},
        }
        actions = self._actions()
        await self.rest.run("listen on the call", lambda: actions.start_transcription(ccid, **params))

    async def stop_listening(self, ref: CallRef) -> None:
        if not ref.provider_call_id:
            return
        ccid = ref.provider_call_id
        actions = self._actions()
        try:
            await self.rest.run(
                "stop listening on the call",
                lambda: actions.stop_transcription(ccid, command_id=_command_id()),
            )
        except ProviderError as err:
            if _already_ended(err):
                return
            raise

    async def send_dtmf(self, ref: CallRef, digits: str) -> None:
        ccid = self._ccid(ref, "send DTMF")
        actions = self._actions()
        await self.rest.run(
            "send DTMF", lambda: actions.send_dtmf(ccid, digits=digits, command_id=_command_id())
        )

    async def fetch_status(self, provider_call_id: str) -> RemoteStatus:
        calls = self.rest.client.calls
        try:
            response = await self.rest.run(
                "fetch the call status", lambda: calls.retrieve_status(provider_call_id)
            )
        except ProviderError as err:
            if err.kind is ProviderErrorKind.NOT_FOUND:
                return RemoteStatus("not-found", is_terminal=True)
            return RemoteStatus("unknown", is_terminal=False, is_unknown=True)
        except Exception:
            return RemoteStatus("unknown", is_terminal=False, is_unknown=True)
        data = getattr(response, "data", None)
        alive = getattr(data, "is_alive", None)
        if not isinstance(alive, bool):
            return RemoteStatus("unknown", is_terminal=False, is_unknown=True)
        state = getattr(data, "state", None)
        status = (
            state.strip().lower()
            if isinstance(state, str) and state.strip()
            else ("alive" if alive else "ended")
        )
        return RemoteStatus(
            status, is_terminal=not alive, answered=status in ("answered", "active", "bridged")
        )

    # -- webhooks ---------------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return signature.verify(
            self.settings.public_key,
            request.headers,
            request.body,
            skip=self.settings.skip_signature_verification,
        )

    def parse_webhook(self, request: WebhookRequest, verification: Verification) -> list[ProviderEvent]:
        return parse_webhook(request, verification)

    def webhook_reply(self, request: WebhookRequest, outcome: WebhookOutcome) -> WebhookReply:
        return webhook_reply(request, outcome)
