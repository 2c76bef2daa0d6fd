"""How provider events change calls (reference 2.5): dedupe, inbound policy, state, speech, replies."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
import uuid
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from providers.base import (
    CallMode,
    CallRef,
    CallView,
    Direction,
    EndReason,
    EventType,
    Provider,
    ProviderError,
    ProviderEvent,
    WebhookOutcome,
)

from .changes import Changes
from .domain import CallRecord, CallState, EventKind, Speaker, utcnow
from .logs import bind_call, set_call_id
from .manager_types import MACHINE_ANSWERS, CallerTurnHook, ManagerSettings, MediaBridge, Turn
from .store import Store

log = logging.getLogger("voicecall.manager")
# Events that say the call is up at the provider (not merely that something happened to it).
_LIVE = frozenset({EventType.INITIATED, EventType.RINGING, EventType.ANSWERED, EventType.ACTIVE})


class ProviderEvents:
    """Mixin of CallManager: applies normalised provider events to call records."""

    # Shared state and collaborators, defined by CallManager.
    settings: ManagerSettings
    store: Store
    provider: Provider
    media: MediaBridge | None
    on_caller_turn: CallerTurnHook | None
    _live: dict[str, CallRecord]
    _by_provider_id: dict[str, str]
    _turns: dict[str, Turn]
    _unwanted: dict[str, float]
    """Provider call ids hung up because nothing here wants them (rejected inbound, orphaned)."""
    _ending: dict[str, EndReason]

    if TYPE_CHECKING:

        def find(self, call_id: str) -> CallRecord | None: ...
        def ref(self, rec: CallRecord, *, with_stream: bool = False) -> CallRef: ...
        def _commit(self, ch: Changes) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
        def _stream_url(self, rec: CallRecord) -> str | None: ...
        def _arm_max_duration(self, rec: CallRecord, seconds: float) -> None: ...
        async def _end_quietly(self, call_id: str, reason: EndReason) -> None: ...
        async def _play_dtmf_sequence(self, call_id: str) -> None: ...
        async def deliver_initial_message(self, call_id: str) -> None: ...

    async def handle_events(self, events: Sequence[ProviderEvent], *, replay: bool = False) -> WebhookOutcome:
        views: dict[str, CallView] = {}
        for index, ev in enumerate(events):
            known = self._resolve(ev)
            with bind_call(known.call_id if known else ev.call_id):
                view = None if replay else self._apply(ev, index)
            if view is None:
                rec = self._resolve(ev)
                view = self._view(rec) if rec else None
            if view is not None and (ev.provider_call_id or view.provider_call_id):
                key = ev.provider_call_id or view.provider_call_id or ""
                earlier = views.get(key)
                if earlier is not None and earlier.pending_message and not view.pending_message:
                    # Delivered by this request's reply: a later event must not drop it.
                    view = dataclasses.replace(view, pending_message=earlier.pending_message)
                views[key] = view
        return WebhookOutcome(replay=replay, calls=views)

    def _view(self, rec: CallRecord, *, rejected: bool = False) -> CallView:
        stream_url = self._stream_url(rec) if not rec.terminal else None
        return CallView(
            call_id=rec.call_id,
            provider_call_id=rec.provider_call_id,
            direction=rec.direction,
            mode=rec.mode,
            terminal=rec.terminal,
            rejected=rejected,
            pending_message=rec.initial_message if self._reply_speaks(rec) else "",
            stream_url=stream_url,
            stream_token=rec.stream_token if stream_url else None,
        )

    def _reply_speaks(self, rec: CallRecord) -> bool:
        """Whether the provider's webhook reply, not a later live update, carries the first message:
        a notify message, or an inbound greeting when no media stream will speak it."""
        if rec.terminal or not rec.initial_message or rec.answered_at is None:
            return False
        if not self.provider.speaks_pending_in_reply:
            return False
        return rec.mode is CallMode.NOTIFY or (
            rec.direction is Direction.INBOUND and self._stream_url(rec) is None
        )

    def _resolve(self, ev: ProviderEvent) -> CallRecord | None:
        for key in (ev.call_id, ev.provider_call_id):
            if key and (rec := self.find(key)) is not None:
                return rec
        return None

    def _apply(self, ev: ProviderEvent, index: int) -> CallView | None:
        key = f"{ev.dedupe_key}#{index}" if ev.dedupe_key else None
        if key and self.store.has_dedupe_key(key):
            log.info("duplicate provider event %s dropped", ev.type.value)
            return None
        rec = self._resolve(ev)
        if rec is None:
            if not ev.provider_call_id or ev.direction is None:
                log.warning("event %s for an unknown call dropped", ev.type.value)
                return None
            if ev.direction is Direction.INBOUND:
                decision = self.settings.inbound.decide(ev.from_number or "")
                if not decision.accepted:
                    return self._reject(ev, decision.reason)
            rec = self._adopt(ev)
            set_call_id(rec.call_id)
        ch = Changes(rec)
        if key:
            ch.dedupe_keys.append(key)
        if rec.terminal and ev.type in _LIVE and ev.provider_call_id:
            self._orphaned(rec, ch, ev)
        if ev.provider_call_id and ev.provider_call_id != rec.provider_call_id:
            old = rec.provider_call_id
            rec.provider_call_id = ev.provider_call_id
            if old and self._by_provider_id.get(old) == rec.call_id:
                del self._by_provider_id[old]
        self._apply_type(rec, ch, ev)
        view = self._view(rec)
        if view.pending_message:
            self._delivered_in_reply(rec, ch)
        self._commit(ch)
        return view

    def _delivered_in_reply(self, rec: CallRecord, ch: Changes) -> None:
        ch.say(Speaker.BOT, rec.initial_message)
        rec.initial_message = ""

    def _reject(self, ev: ProviderEvent, reason: str) -> CallView:
        pid = ev.provider_call_id or ""
        log.info("inbound call rejected by policy: %s", reason)
        view = CallView(
            call_id="",
            provider_call_id=pid,
            direction=Direction.INBOUND,
            mode=CallMode.CONVERSATION,
            terminal=True,
            rejected=True,
        )
        self._hang_up_unwanted(pid, "a rejected inbound call")
        return view

    def _hang_up_unwanted(self, provider_call_id: str, what: str) -> bool:
        """Hang up a provider call nothing here wants, once; False if that was already done."""
        if provider_call_id in self._unwanted:
            return False
        if len(self._unwanted) > 10_000:
            self._unwanted.clear()
        self._unwanted[provider_call_id] = time.monotonic()
        self._spawn(self._hangup_unwanted(provider_call_id, what))
        return True

    async def _hangup_unwanted(self, provider_call_id: str, what: str) -> None:
        try:
            await self.provider.hangup(CallRef("", provider_call_id))
        except ProviderError as err:
            log.warning("hanging up %s failed: %s", what, err.message)

    def _orphaned(self, rec: CallRecord, ch: Changes, ev: ProviderEvent) -> None:
        """The provider reports live a call that already ended here: most often a dial whose
        answer never came back (a timeout), so the call was reported FAILED while the provider
        went on to ring it. Left alone it would ring, speak a notify message nobody was told
        about, or sit open; it is hung up and the call's log says so."""
        pid = ev.provider_call_id or ""
        if not self._hang_up_unwanted(pid, f"call {rec.call_id} after it ended here"):
            return
        log.warning(
            "the provider reports call %s live (%s) after it ended here (%s); hanging it up",
            rec.call_id,
            ev.type.value,
            rec.end_reason.value if rec.end_reason else "ended",
        )
        ch.event(
            EventKind.ERROR,
            {"message": f"the provider reported this call live ({ev.type.value}) after it ended; hung it up"},
        )

    def _adopt(self, ev: ProviderEvent) -> CallRecord:
        inbound = ev.direction is Direction.INBOUND
        rec = CallRecord(
            call_id=str(uuid.uuid4()),
            provider=self.settings.provider_name,
            direction=ev.direction or Direction.INBOUND,
            state=CallState.RINGING,
            from_number=ev.from_number or "",
            to_number=ev.to_number or self.settings.from_number,
            mode=CallMode.CONVERSATION if inbound else self.settings.default_mode,
            created_at=ev.timestamp or utcnow(),
            provider_call_id=ev.provider_call_id,
            initial_message=self.settings.inbound.greeting if inbound else "",
            stream_token=secrets.token_urlsafe(16),
        )
        ch = Changes(rec)
        ch.event(EventKind.STATE_CHANGED, {"state": rec.state.value})
        self._commit(ch)
        if inbound:
            self._spawn(self._answer_inbound(rec))
        return rec

    async def _answer_inbound(self, rec: CallRecord) -> None:
        answer = getattr(self.provider, "answer", None)
        if answer is None:
            return
        try:
            await answer(self.ref(rec, with_stream=True))
        except ProviderError as err:
            ch = Changes(rec)
            ch.event(EventKind.ERROR, {"message": f"answering the inbound call failed: {err.message}"})
            self._commit(ch)

    def _apply_type(self, rec: CallRecord, ch: Changes, ev: ProviderEvent) -> None:
        t = ev.type
        if t in (EventType.INITIATED, EventType.RINGING, EventType.ACTIVE, EventType.SPEAKING):
            ch.move(_STATE_FOR[t])
        elif t is EventType.ANSWERED:
            self._answered(rec, ch, ev)
        elif t is EventType.SPEECH:
            self._speech(rec, ch, ev)
        elif t is EventType.DTMF and ev.digits:
            ch.event(EventKind.DTMF, {"digits": ev.digits})
        elif t is EventType.ENDED:
            reason = self._ending.get(rec.call_id) or ev.end_reason or EndReason.COMPLETED
            ch.finish(reason, ev.timestamp)
        elif t is EventType.ERROR:
            ch.event(EventKind.ERROR, {"message": ev.error or "provider reported an error"})
            if not ev.retryable:
                ch.finish(EndReason.ERROR)

    def _answered(self, rec: CallRecord, ch: Changes, ev: ProviderEvent) -> None:
        first = rec.answered_at is None
        if first:
            rec.answered_at = ev.timestamp or utcnow()
            ch.move(CallState.ANSWERED)
            self._arm_max_duration(rec, self.settings.max_duration_s)
        if ev.answered_by and ev.answered_by != rec.answered_by:
            rec.answered_by = ev.answered_by
            if ev.answered_by.startswith(MACHINE_ANSWERS) and self.settings.machine_detection == "detect":
                self._spawn(self._end_quietly(rec.call_id, EndReason.VOICEMAIL))
                return
        if not first:
            return
        if rec.metadata.get("dtmf_sequence"):
            self._spawn(self._play_dtmf_sequence(rec.call_id))
        if rec.metadata.pop("inline_message", False) and rec.initial_message:
            ch.say(Speaker.BOT, rec.initial_message)
            rec.initial_message = ""
            return
        if not rec.initial_message:
            return
        if self._reply_speaks(rec):
            return  # the webhook reply carries it (see _view)
        if self._stream_url(rec) is not None:
            if rec.direction is Direction.OUTBOUND and hasattr(self.provider, "start_stream"):
                # Providers that dial without a stream (Telnyx) are asked for one once answered.
                self._spawn(self._start_stream(rec))
            return  # spoken once the media stream is up (the media bridge calls deliver_initial_message)
        self._spawn(self.deliver_initial_message(rec.call_id))

    async def _start_stream(self, rec: CallRecord) -> None:
        try:
            await self.provider.start_stream(self.ref(rec, with_stream=True))  # type: ignore[attr-defined]
        except ProviderError as err:
            log.warning("starting the media stream of call %s failed: %s", rec.call_id, err.message)
            await self.deliver_initial_message(rec.call_id)  # the provider's own voice, then

    def _speech(self, rec: CallRecord, ch: Changes, ev: ProviderEvent) -> None:
        text = ev.text.strip()
        if not text:
            return
        turn = self._turns.get(rec.call_id)
        if ev.is_final and turn and ev.turn_token and ev.turn_token != turn.token:
            log.warning("speech for a stale turn on call %s ignored", rec.call_id)
            return
        ch.say(Speaker.CALLER, text, is_final=ev.is_final, confidence=ev.confidence)
        ch.move(CallState.LISTENING)
        if not ev.is_final:
            return
        if turn is not None:
            if not turn.future.done():
                turn.future.set_result(text)
        elif self.on_caller_turn is not None and (
            rec.direction is Direction.INBOUND or rec.mode is CallMode.CONVERSATION
        ):
            self._spawn(self.on_caller_turn(rec, text))


_STATE_FOR = {
    EventType.INITIATED: CallState.INITIATED,
    EventType.RINGING: CallState.RINGING,
    EventType.ACTIVE: CallState.ACTIVE,
    EventType.SPEAKING: CallState.SPEAKING,
}
