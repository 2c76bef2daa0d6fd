"""TwilioProvider: the Provider protocol over Twilio Programmable Voice and Media Streams.

Stateless across restarts: everything a reply or an update needs comes from the request, the
CallRef/CallView the manager passes, and the public webhook URL given at start.

Dial: the answer URL and the status callback carry ``?callId=`` (status callbacks add
``&type=status``). A notify message travels inline in the create request (``Twiml``: ``<Say>`` then
``<Hangup/>``), so it is spoken exactly once and needs no webhook round trip; status callbacks keep
working, since ``StatusCallback`` is independent of where the TwiML comes from. A message too long
for Twilio's 4000-character ``Twiml`` limit falls back to the answer URL, whose reply carries it
(CallView.pending_message); that dial leaves ``answered`` out of the status events so the answer
can only be learned from the request that delivers the message.

Machine detection: ``detect`` -> ``MachineDetection=Enable`` with ``AsyncAmd=true`` and an
``AsyncAmdStatusCallback`` (``?callId=..&type=amd``): the call proceeds at once and the verdict
arrives as a webhook (ANSWERED with answered_by). When the answer request itself must deliver the
message (the long-notify fallback), detection stays synchronous so the verdict arrives on that
request and no other webhook can report the answer first. ``leave-message`` -> ``DetectMessageEnd``,
synchronous: Twilio holds the TwiML (the inline message, or the answer-URL fetch) until the greeting
ends, so the message lands after the beep; AsyncAmd would start the TwiML during the greeting, so it
is not used there.

Speak and listen are live call updates (``Twiml``) ending in the keep-alive loop (twiml.py) or, for
a streamed call, reconnecting the stream. start_listening posts ``<Gather>``, which replaces a
``<Connect><Stream>``: the manager must never call it on a streamed call (it waits for the stream's
transcripts instead). When a Gather hears nothing it falls through to the keep-alive, so the call
stays up until the manager's transcript wait ends.
"""

from __future__ import annotations

from ..base import (
    CallMode,
    CallRef,
    DialRequest,
    DialResult,
    EndReason,
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
from . import signature, twiml
from .api import ALREADY_ENDED_CODES, TwilioRest
from .settings import TwilioSettings
from .voices import say_voice
from .webhook import form_params, parse_webhook, webhook_reply

STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
_TERMINAL = {
    "completed": EndReason.COMPLETED,
    "failed": EndReason.FAILED,
    "busy": EndReason.BUSY,
    "no-answer": EndReason.NO_ANSWER,
    "canceled": EndReason.HANGUP_BOT,
}


class TwilioProvider:
    name = "twilio"
    speaks_pending_in_reply = True
    signature_headers: tuple[str, ...] = (signature.SIGNATURE_HEADER,)

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings
        self.rest = TwilioRest(settings)
        self._webhook_url = ""

    def __repr__(self) -> str:
        return f"TwilioProvider({self.settings!r})"

    async def start(self, sink: EventSink, webhook_url: str) -> None:
        # Twilio reports everything by webhook; the sink is not needed.
        self._webhook_url = webhook_url

    async def aclose(self) -> None:
        await self.rest.aclose()

    # -- REST -------------------------------------------------------------------------------------
    async def dial(self, request: DialRequest) -> DialResult:
        base = request.webhook_url or self._webhook_url
        events = list(STATUS_EVENTS)
        params: dict[str, object] = {
            "to": request.to_number,
            "from_": request.from_number,
            "status_callback": twiml.with_query(base, [("callId", request.call_id), ("type", "status")]),
            "status_callback_method": "POST",
            "timeout": int(request.ring_timeout_s),
        }
        inline = False
        if request.mode is CallMode.NOTIFY and request.message:
            voice = say_voice(request.voice or self.settings.tts_voice)
            doc = twiml.render(
                twiml.hangup(twiml.say(twiml.empty(), request.message, voice, self.settings.language))
            )
            inline = len(doc) <= twiml.TWIML_MAX_CHARS
            if inline:
                params["twiml"] = doc
            else:
                events.remove("answered")
        if not inline:
            params["url"] = twiml.with_query(base, [("callId", request.call_id)])
            params["method"] = "POST"
        params["status_callback_event"] = events
        if request.machine_detection == "detect" and (inline or request.mode is not CallMode.NOTIFY):
            params["machine_detection"] = "Enable"
            params["async_amd"] = "true"
            params["async_amd_status_callback"] = twiml.with_query(
                base, [("callId", request.call_id), ("type", "amd")]
            )
            params["async_amd_status_callback_method"] = "POST"
        elif request.machine_detection == "detect":
            params["machine_detection"] = "Enable"  # synchronous: the verdict rides on the answer request
        elif request.machine_detection == "leave-message":
            params["machine_detection"] = "DetectMessageEnd"
        calls = self.rest.client.api.v2010.account.calls
        call = await self.rest.run("place the call", lambda: calls.create(**params))
        status = str(call.status or "").lower()
        return DialResult(
            str(call.sid), "queued" if status == "queued" else "initiated", message_delivered_inline=inline
        )

    async def _update(self, ref: CallRef, action: str, **fields: object) -> None:
        sid = ref.provider_call_id
        if not sid:
            raise ProviderError(
                ProviderErrorKind.REJECTED, f"cannot {action}: the call has no Twilio CallSid yet"
            )
        context = self.rest.client.api.v2010.account.calls(sid)
        await self.rest.run(action, lambda: context.update(**fields))

    async def hangup(self, ref: CallRef) -> None:
        if not ref.provider_call_id:
            return
        try:
            await self._update(ref, "hang up the call", status="completed")
        except ProviderError as err:
            if err.kind is ProviderErrorKind.NOT_FOUND or (
                err.provider_code is not None
                and err.provider_code.isdigit()
                and int(err.provider_code) in ALREADY_ENDED_CODES
            ):
                return
            raise

    def _keepalive(self, call_id: str) -> str | None:
        return twiml.keepalive_url(self._webhook_url, call_id) if self._webhook_url else None

    async def speak(self, ref: CallRef, text: str, *, voice: str | None = None) -> None:
        response = twiml.say(
            twiml.empty(), text, say_voice(voice or self.settings.tts_voice), self.settings.language
        )
        if ref.stream_url and ref.stream_token:
            twiml.stream(response, ref.stream_url, ref.stream_token)
        else:
            twiml.keep_alive(response, self._keepalive(ref.call_id), first_pause_s=twiml.KEEPALIVE_PAUSE_S)
        await self._update(ref, "speak on the call", twiml=twiml.render(response))

    async def send_dtmf(self, ref: CallRef, digits: str) -> None:
        """Play touch tones (``w`` = half a second's wait) with ``<Play digits>``; a streamed call
        gets its stream back right after, so sending digits never ends the stream for good."""
        response = twiml.empty()
        response.play(digits=digits)
        if ref.stream_url and ref.stream_token:
            twiml.stream(response, ref.stream_url, ref.stream_token)
        else:
            twiml.keep_alive(response, self._keepalive(ref.call_id), first_pause_s=twiml.KEEPALIVE_PAUSE_S)
        await self._update(ref, "send DTMF on the call", twiml=twiml.render(response))

    async def start_listening(self, ref: CallRef, turn_token: str) -> None:
        """Post a speech ``<Gather>``; never for a streamed call (it would replace the stream)."""
        if not self._webhook_url:
            raise ProviderError(ProviderErrorKind.REJECTED, "cannot listen: the webhook URL is not known yet")
        action = twiml.with_query(self._webhook_url, [("callId", ref.call_id), ("turnToken", turn_token)])
        response = twiml.gather(twiml.empty(), action, self.settings.language)
        twiml.keep_alive(response, self._keepalive(ref.call_id), first_pause_s=twiml.KEEPALIVE_PAUSE_S)
        await self._update(ref, "listen on the call", twiml=twiml.render(response))

    async def stop_listening(self, ref: CallRef) -> None:
        return None  # a Gather ends by itself

    async def fetch_status(self, provider_call_id: str) -> RemoteStatus:
        context = self.rest.client.api.v2010.account.calls(provider_call_id)
        try:
            call = await self.rest.run("fetch the call status", context.fetch)
        except ProviderError as err:
            if err.kind is ProviderErrorKind.NOT_FOUND:
                return RemoteStatus("not-found", is_terminal=True)
            return RemoteStatus("unknown", is_terminal=False, is_unknown=True)
        except Exception:
            return RemoteStatus("unknown", is_terminal=False, is_unknown=True)
        status = str(call.status or "").strip().lower()
        if not status:
            return RemoteStatus("unknown", is_terminal=False, is_unknown=True)
        reason = _TERMINAL.get(status)
        return RemoteStatus(
            status,
            is_terminal=reason is not None,
            end_reason=reason,
            answered=status in ("in-progress", "completed"),
        )

    # -- webhooks ---------------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest) -> Verification:
        if self.settings.skip_signature_verification:
            return Verification(
                ok=True,
                replay_key=signature.skip_key(request.method, request.url, request.body),
                checked_url=request.url,
            )
        try:
            params = form_params(request)
        except ValueError as err:
            return Verification(ok=False, reason=str(err), checked_url=request.url)
        return signature.verify(
            self.settings.auth_token,
            request.url,
            request.url_variants,
            params,
            request.headers.get(signature.SIGNATURE_HEADER, ""),
            request.body,
            request.headers.get("content-type", ""),
        )

    def parse_webhook(self, request: WebhookRequest, verification: Verification) -> list[ProviderEvent]:
        return parse_webhook(request, verification)

    def webhook_reply(self, request: WebhookRequest, outcome: WebhookOutcome) -> WebhookReply:
        return webhook_reply(
            request,
            outcome,
            webhook_url=self._webhook_url or None,
            voice=self.settings.tts_voice,
            language=self.settings.language,
        )
