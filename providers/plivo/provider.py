"""The Plivo adapter: Voice API calls, XML transfers for speech and GetInput, signed callbacks.

Speaking and listening without a media stream work by storing the XML for a call and transferring
the call's A leg to a URL of ours that returns it (reference section 3.3). A transfer interrupts
the XML that is running, so a turn's GetInput does not transfer while the turn's speech is still
playing: the speech XML ends in a ``<Redirect>`` to ``flow=xml-next``, which hands Plivo the
GetInput once the speech is done. Idle calls get a keep-alive ``<Wait>`` that redirects to the same
URL instead of running out of XML (which would hang up the call).
"""

from __future__ import annotations

import re

from ..base import (
    CallRef,
    DialRequest,
    DialResult,
    EventSink,
    EventType,
    ProviderError,
    ProviderErrorKind,
    ProviderEvent,
    RemoteStatus,
    Verification,
    WebhookOutcome,
    WebhookReply,
    WebhookRequest,
)
from . import signature, xmldoc
from .api import PlivoRest, field_of, is_not_found
from .replies import reply_for
from .settings import PlivoSettings
from .state import CallTable
from .status import remote_status
from .webhook import form, parse, provider_ids

DTMF_DIGITS = re.compile(r"^[0-9A-Da-d*#wW]{1,64}$")
AMD_MODES = {"detect": "true", "leave-message": "true"}
"""Plivo's asynchronous detection reports a machine on ``flow=amd`` and leaves the call up, for the
manager to end (``detect``) or to let the message play to the voicemail (``leave-message``).
Plivo's ``hangup`` mode would drop the call before any message could be left."""


def dial_number(number: str) -> str:
    """Digits and ``+`` for phone numbers; SIP URIs as they are."""
    number = number.strip()
    if number[:4].lower() == "sip:":
        if "<" in number:
            raise ProviderError(ProviderErrorKind.REJECTED, "a SIP destination cannot contain '<'")
        return number
    cleaned = re.sub(r"[^\d+]", "", number)
    if not cleaned.strip("+"):
        raise ProviderError(ProviderErrorKind.REJECTED, f"{number!r} is not a phone number Plivo can call")
    return cleaned


def _voice(settings: PlivoSettings, voice: str | None) -> str:
    if voice and (voice in ("WOMAN", "MAN") or voice.startswith("Polly.")):
        return voice
    return settings.voice


class PlivoProvider:
    name = "plivo"
    speaks_pending_in_reply = True
    signature_headers: tuple[str, ...] = (signature.V3_HEADER, signature.V2_HEADER)

    def __init__(self, settings: PlivoSettings, *, rest: PlivoRest | None = None) -> None:
        self.settings = settings
        self.rest = rest or PlivoRest(settings)
        self.calls = CallTable()
        self.webhook_url = ""
        self._sink: EventSink | None = None

    def __repr__(self) -> str:
        return f"PlivoProvider(auth_id={self.settings.auth_id!r}, base_url={self.settings.base_url!r})"

    async def start(self, sink: EventSink, webhook_url: str) -> None:
        self._sink = sink
        self.webhook_url = webhook_url

    async def aclose(self) -> None:
        await self.rest.aclose()

    def _url(self, flow: str, call_id: str = "", *, base: str | None = None, **extra: str) -> str:
        webhook = base or self.webhook_url
        if not webhook:
            raise ProviderError(
                ProviderErrorKind.REJECTED, "no public webhook URL is known, so Plivo cannot fetch our XML"
            )
        return xmldoc.flow_url(webhook, flow, call_id, **extra)

    def _next_url(self, call_id: str) -> str | None:
        return (
            xmldoc.flow_url(self.webhook_url, "xml-next", call_id) if self.webhook_url and call_id else None
        )

    # -- REST -------------------------------------------------------------------------------------
    async def dial(self, request: DialRequest) -> DialResult:
        base = request.webhook_url or self.webhook_url
        ring = max(1, int(request.ring_timeout_s))
        params: dict[str, object] = {
            "from_": dial_number(request.from_number),
            "to_": dial_number(request.to_number),
            "answer_url": self._url("answer", request.call_id, base=base),
            "answer_method": "POST",
            "hangup_url": self._url("hangup", request.call_id, base=base),
            "hangup_method": "POST",
            "ring_url": self._url("ring", request.call_id, base=base),
            "ring_method": "POST",
            "ring_timeout": ring,
            "hangup_on_ring": ring,
        }
        if (amd := AMD_MODES.get(request.machine_detection)) is not None:
            params["machine_detection"] = amd
            params["machine_detection_url"] = self._url("amd", request.call_id, base=base)
            params["machine_detection_method"] = "POST"
        response = await self.rest.create_call(params)
        request_uuid = field_of(response, "request_uuid")
        if isinstance(request_uuid, list):
            request_uuid = request_uuid[0] if request_uuid else None
        if not isinstance(request_uuid, str) or not request_uuid:
            raise ProviderError(
                ProviderErrorKind.UNAVAILABLE, "Plivo accepted the call but returned no request_uuid"
            )
        message = str(field_of(response, "message") or "").lower()
        return DialResult(request_uuid, "queued" if "queued" in message else "initiated")

    def _call_uuid(self, ref: CallRef) -> str:
        pid = ref.provider_call_id
        if not pid:
            raise ProviderError(ProviderErrorKind.REJECTED, f"call {ref.call_id} has no Plivo call id yet")
        return self.calls.call_uuid(pid) or pid

    async def hangup(self, ref: CallRef) -> None:
        pid = ref.provider_call_id
        if not pid:
            return
        self.calls.forget(ref.call_id or None)
        known = self.calls.call_uuid(pid)
        try:
            await self.rest.hangup_call(known or pid)
            return
        except ProviderError as err:
            if not is_not_found(err):
                raise
        if known is not None:
            return  # a known live call that is gone has already ended
        # Not (or no longer) a call: perhaps a request still ringing. Cancel it.
        try:
            await self.rest.cancel_request(pid)
        except ProviderError as err:
            if not is_not_found(err):
                raise

    async def _transfer(self, ref: CallRef, flow: str) -> None:
        await self.rest.transfer(self._call_uuid(ref), self._url(flow, ref.call_id))

    async def speak(self, ref: CallRef, text: str, *, voice: str | None = None) -> None:
        chained = not (ref.stream_url and ref.stream_token)
        xml = xmldoc.speak(
            text,
            _voice(self.settings, voice),
            self.settings.language,
            next_url=self._next_url(ref.call_id),
            stream_url=ref.stream_url,
            token=ref.stream_token,
        )
        self.calls.set_speak(ref.call_id, xml, chained=chained, text_length=len(text))
        try:
            await self._transfer(ref, "xml-speak")
        except ProviderError:
            self.calls.speak_failed(ref.call_id)
            raise

    async def start_listening(self, ref: CallRef, turn_token: str) -> None:
        action = self._url("getinput", ref.call_id, turnToken=turn_token)
        xml = xmldoc.listen(action, self.settings.language, self._next_url(ref.call_id))
        if self.calls.set_listen(ref.call_id, xml):
            await self._transfer(ref, "xml-listen")

    async def stop_listening(self, ref: CallRef) -> None:
        return None  # GetInput ends by itself

    async def send_dtmf(self, ref: CallRef, digits: str) -> None:
        if not DTMF_DIGITS.match(digits):
            raise ProviderError(
                ProviderErrorKind.REJECTED, "DTMF digits must be 1-64 of 0-9, A-D, *, # and w/W (pauses)"
            )
        await self.rest.send_digits(self._call_uuid(ref), digits)

    async def fetch_status(self, provider_call_id: str) -> RemoteStatus:
        uuid = self.calls.call_uuid(provider_call_id) or provider_call_id
        return await remote_status(self.rest, uuid, provider_call_id)

    # -- webhooks ---------------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return signature.verify(
            request, self.settings.auth_token, skip=self.settings.skip_signature_verification
        )

    def parse_webhook(self, request: WebhookRequest, verification: Verification) -> list[ProviderEvent]:
        params = form(request)
        events = parse(request, verification, params)
        call_uuid, request_uuid = provider_ids(params)
        self.calls.learn(call_uuid, request_uuid)
        for event in events:
            if event.type is EventType.ENDED:
                self.calls.forget(event.call_id, call_uuid, request_uuid)
        return events

    def webhook_reply(self, request: WebhookRequest, outcome: WebhookOutcome) -> WebhookReply:
        body = reply_for(self.settings, self.calls, self.webhook_url, request, outcome)
        return WebhookReply(200, body.encode(), "text/xml")
