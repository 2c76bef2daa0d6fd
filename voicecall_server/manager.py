"""The call manager: call records, the state machine, turns, timers, restore, and provider events."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from providers.base import (
    CallMode,
    CallRef,
    DialRequest,
    Direction,
    EndReason,
    Provider,
    ProviderError,
    ProviderErrorKind,
)

from .bus import EventBus
from .changes import Changes
from .domain import CallRecord, CallState, EventKind, Speaker, TurnLatency, utcnow
from .errors import CallError, Reason, from_provider_error
from .idempotency import Idempotency
from .logs import set_call_id
from .manager_events import ProviderEvents
from .manager_recovery import Recovery
from .manager_types import (
    CallerTurnHook,
    ManagerSettings,
    MediaBridge,
    OutboundGuard,
    Turn,
    check_dtmf,
    check_e164,
)
from .store import Store

log = logging.getLogger("voicecall.manager")


class CallManager(ProviderEvents, Recovery):
    def __init__(
        self,
        settings: ManagerSettings,
        store: Store,
        bus: EventBus,
        provider: Provider,
        *,
        guard: OutboundGuard | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.provider = provider
        self.guard = guard
        self.media: MediaBridge | None = None
        self.webhook_url = ""
        self.on_caller_turn: CallerTurnHook | None = None
        self.idempotency = Idempotency(store)
        self._live: dict[str, CallRecord] = {}
        self._by_provider_id: dict[str, str] = {}
        self._turns: dict[str, Turn] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unwanted: dict[str, float] = {}
        self._delivering: set[str] = set()
        self._ending: dict[str, EndReason] = {}
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._restore()
        self.prune()
        if self.settings.stale_call_reaper_s > 0:
            self._spawn(self._reaper())

    def stop_accepting(self) -> None:
        """Refuse new calls (SHUTTING_DOWN) while in-flight RPCs drain during shutdown."""
        self._closing = True

    async def aclose(self) -> None:
        self._closing = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for turn in self._turns.values():
            if not turn.future.done():
                turn.future.set_exception(CallError(Reason.SHUTTING_DOWN, "the sidecar is shutting down"))
                turn.future.exception()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed: %r", exc, exc_info=exc)

    def _commit(self, ch: Changes) -> None:
        ch.commit(self.store, self.bus)
        rec = ch.record
        if rec.terminal:
            self._forget(rec)
        else:
            self._live[rec.call_id] = rec
            if rec.provider_call_id:
                self._by_provider_id[rec.provider_call_id] = rec.call_id

    def _forget(self, rec: CallRecord) -> None:
        self._live.pop(rec.call_id, None)
        if rec.provider_call_id and self._by_provider_id.get(rec.provider_call_id) == rec.call_id:
            del self._by_provider_id[rec.provider_call_id]
        if (handle := self._timers.pop(rec.call_id, None)) is not None:
            handle.cancel()
        turn = self._turns.get(rec.call_id)
        if turn and not turn.future.done():
            reason = rec.end_reason.value if rec.end_reason else "ended"
            turn.future.set_exception(CallError(Reason.CALL_NOT_ACTIVE, f"the call ended ({reason})"))
            turn.future.exception()

    # -- lookups --------------------------------------------------------------------------------
    def find(self, call_id: str) -> CallRecord | None:
        """By call id or provider call id: live calls first, then the store."""
        if not call_id:
            return None
        if rec := self._live.get(call_id):
            return rec
        if (cid := self._by_provider_id.get(call_id)) and (rec := self._live.get(cid)):
            return rec
        return self.store.get_call(call_id) or self.store.find_by_provider_call_id(call_id)

    def get(self, call_id: str) -> CallRecord:
        if not call_id.strip():
            raise CallError(Reason.INVALID_FIELD, "call_id is required", field="call_id")
        rec = self.find(call_id.strip())
        if rec is None:
            raise CallError(Reason.CALL_NOT_FOUND, f"no call with id {call_id!r}")
        return rec

    def _connected(self, call_id: str) -> CallRecord:
        rec = self.get(call_id)
        if rec.terminal:
            raise CallError(Reason.CALL_NOT_ACTIVE, f"call {rec.call_id} has ended ({rec.state.value})")
        if rec.answered_at is None or not rec.provider_call_id:
            raise CallError(
                Reason.CALL_NOT_ACTIVE, f"call {rec.call_id} is not connected yet ({rec.state.value})"
            )
        return rec

    @property
    def live_count(self) -> int:
        return len(self._live)

    def ref(self, rec: CallRecord, *, with_stream: bool = False) -> CallRef:
        stream_url = self._stream_url(rec) if with_stream else None
        return CallRef(
            rec.call_id, rec.provider_call_id, stream_url, rec.stream_token if stream_url else None
        )

    def _stream_url(self, rec: CallRecord) -> str | None:
        if not self.settings.stream_url or not rec.stream_token or rec.mode is CallMode.NOTIFY:
            return None
        return self.settings.stream_url

    def _streamed(self, rec: CallRecord) -> bool:
        return self.media is not None and self.media.has_stream(rec.call_id)

    # -- Initiate -------------------------------------------------------------------------------
    async def initiate(
        self,
        *,
        to_number: str,
        message: str,
        mode: CallMode | None,
        session_key: str = "",
        request_id: str = "",
        dtmf_sequence: str = "",
    ) -> CallRecord:
        dtmf_sequence = check_dtmf(dtmf_sequence, "dtmf_sequence") if dtmf_sequence.strip() else ""
        to = to_number.strip() or (self.settings.to_number or "")
        if not to:
            raise CallError(
                Reason.INVALID_FIELD, "to_number is required (no toNumber is configured)", field="to_number"
            )
        to = check_e164(to, "to_number")
        mode = mode or self.settings.default_mode
        message = message.strip()
        if mode is CallMode.NOTIFY and not message:
            raise CallError(Reason.INVALID_FIELD, "message is required for a notify call", field="message")
        payload = {
            "to": to,
            "message": message,
            "mode": mode.value,
            "session_key": session_key,
            "dtmf": dtmf_sequence,
        }
        if not request_id:
            return await self._dial(to, message, mode, session_key, None, dtmf_sequence)
        outcome = await self.idempotency.run(
            request_id,
            "Initiate",
            payload,
            lambda fp: self._dial_outcome(to, message, mode, session_key, (request_id, fp), dtmf_sequence),
        )
        Idempotency.raise_if_error(outcome)
        return self.get(outcome["call_id"])

    async def _dial_outcome(
        self, to: str, message: str, mode: CallMode, session_key: str, request: tuple[str, str], dtmf: str
    ) -> dict[str, Any]:
        rec = await self._dial(to, message, mode, session_key, request, dtmf)
        return {"call_id": rec.call_id}

    async def _dial(
        self,
        to: str,
        message: str,
        mode: CallMode,
        session_key: str,
        request: tuple[str, str] | None,
        dtmf: str = "",
    ) -> CallRecord:
        if self._closing:
            raise CallError(
                Reason.SHUTTING_DOWN, "the sidecar is shutting down; retry against the new instance"
            )
        if self.guard is not None and (refusal := self.guard.check(to)) is not None:
            raise refusal
        if len(self._live) >= self.settings.max_concurrent_calls:
            raise CallError(
                Reason.MAX_CONCURRENT_CALLS,
                f"maximum concurrent calls ({self.settings.max_concurrent_calls}) reached; end a call or raise"
                " maxConcurrentCalls",
            )
        rec = CallRecord(
            call_id=str(uuid.uuid4()),
            provider=self.settings.provider_name,
            direction=Direction.OUTBOUND,
            state=CallState.INITIATED,
            from_number=self.settings.from_number,
            to_number=to,
            mode=mode,
            created_at=utcnow(),
            session_key=session_key,
            initial_message=message,
            stream_token=secrets.token_urlsafe(16),
        )
        set_call_id(rec.call_id)  # log lines of this RPC and the tasks it starts name the call
        if dtmf:
            rec.metadata["dtmf_sequence"] = dtmf
        ch = Changes(rec)
        ch.event(EventKind.STATE_CHANGED, {"state": rec.state.value})
        if request:
            ch.request = (request[0], "Initiate", request[1], {"call_id": rec.call_id, "pending": True})
        # Durable before dialing: a crash after the dial can never lead a retry to dial again.
        self._commit(ch)
        await self.store.flush()
        dial = DialRequest(
            call_id=rec.call_id,
            from_number=rec.from_number,
            to_number=to,
            webhook_url=self.webhook_url,
            mode=mode,
            message=message,
            voice=self.settings.voice,
            ring_timeout_s=self.settings.ring_timeout_s,
            machine_detection=self.settings.machine_detection,
        )
        try:
            result = await self.provider.dial(dial)
        except ProviderError as err:
            error = from_provider_error(err, self.settings.provider_name)
            ch.event(EventKind.ERROR, {"message": error.message})
            ch.finish(EndReason.FAILED)
            if request:
                ch.request = (
                    request[0],
                    "Initiate",
                    request[1],
                    {"call_id": rec.call_id, "error": error.to_dict()},
                )
            self._commit(ch)
            raise error from None
        if self.guard is not None:
            self.guard.record()
        rec.provider_call_id = result.provider_call_id
        if result.message_delivered_inline:
            rec.metadata["inline_message"] = True
        if request:
            ch.request = (request[0], "Initiate", request[1], {"call_id": rec.call_id})
        self._commit(ch)
        return rec

    # -- Speak / Continue / End -----------------------------------------------------------------
    async def speak(self, call_id: str, message: str, *, request_id: str = "") -> CallRecord:
        message = message.strip()
        if not message:
            raise CallError(Reason.INVALID_FIELD, "message is required", field="message")
        rec = self._connected(call_id)
        if not request_id:
            await self._say(rec, message)
            return rec
        outcome = await self.idempotency.run(
            request_id,
            "Speak",
            {"call_id": rec.call_id, "message": message},
            lambda fp: self._speak_outcome(rec, message, (request_id, fp)),
        )
        Idempotency.raise_if_error(outcome)
        return self.get(rec.call_id)

    async def _speak_outcome(self, rec: CallRecord, message: str, request: tuple[str, str]) -> dict[str, Any]:
        try:
            await self._say(rec, message)
        except CallError as err:
            self.store.put_request(request[0], "Speak", request[1], {"error": err.to_dict()})
            raise
        self.store.put_request(request[0], "Speak", request[1], {"call_id": rec.call_id})
        return {"call_id": rec.call_id}

    async def _say(self, rec: CallRecord, text: str) -> None:
        ch = Changes(rec)
        ch.move(CallState.SPEAKING)
        self._commit(ch)
        heard: str | None = None
        if self.media is not None and self.media.has_stream(rec.call_id):
            heard = await self.media.say(rec.call_id, text)
        if heard is None:
            try:
                await self.provider.speak(self.ref(rec, with_stream=True), text, voice=self.settings.voice)
            except ProviderError as err:
                error = self._gone_or(err, rec)
                ch.event(EventKind.ERROR, {"message": f"speak failed: {error.message}"})
                self._commit(ch)
                raise error from None
            heard = text
        if rec.terminal:
            return
        if heard:
            ch.say(Speaker.BOT, heard)
        self._commit(ch)

    async def continue_turn(
        self, call_id: str, message: str, *, timeout_s: float | None = None, request_id: str = ""
    ) -> tuple[str, CallRecord]:
        message = message.strip()
        if not message:
            raise CallError(Reason.INVALID_FIELD, "message is required", field="message")
        if timeout_s is not None and timeout_s <= 0:
            raise CallError(Reason.INVALID_FIELD, "timeout must be positive", field="timeout")
        rec = self._connected(call_id)
        if not request_id:
            transcript = await self._turn(rec, message, timeout_s)
            return transcript, rec
        payload = {"call_id": rec.call_id, "message": message, "timeout": timeout_s}
        outcome = await self.idempotency.run(
            request_id,
            "Continue",
            payload,
            lambda fp: self._turn_outcome(rec, message, timeout_s, (request_id, fp)),
        )
        Idempotency.raise_if_error(outcome)
        return str(outcome["transcript"]), self.get(rec.call_id)

    async def _turn_outcome(
        self, rec: CallRecord, message: str, timeout_s: float | None, request: tuple[str, str]
    ) -> dict[str, Any]:
        try:
            transcript = await self._turn(rec, message, timeout_s)
        except CallError as err:
            if err.reason is not Reason.TURN_IN_PROGRESS:
                self.store.put_request(request[0], "Continue", request[1], {"error": err.to_dict()})
            raise
        self.store.put_request(request[0], "Continue", request[1], {"transcript": transcript})
        return {"transcript": transcript}

    async def _turn(self, rec: CallRecord, message: str, timeout_s: float | None) -> str:
        if rec.call_id in self._turns:
            raise CallError(
                Reason.TURN_IN_PROGRESS, f"a turn is already running on call {rec.call_id}; wait for it"
            )
        timeout = timeout_s if timeout_s is not None else self.settings.transcript_timeout_s
        started = time.monotonic()
        turn = Turn(uuid.uuid4().hex, asyncio.get_running_loop().create_future(), started)
        self._turns[rec.call_id] = turn
        listening = False
        try:
            await self._say(rec, message)
            self._check_live(rec)
            ch = Changes(rec)
            ch.move(CallState.LISTENING)
            self._commit(ch)
            listen_start = time.monotonic()
            if not self._streamed(rec):
                try:
                    await self.provider.start_listening(self.ref(rec), turn.token)
                    listening = True
                except ProviderError as err:
                    raise self._gone_or(err, rec) from None
            try:
                transcript = await asyncio.wait_for(asyncio.shield(turn.future), timeout)
            except TimeoutError:
                raise CallError(
                    Reason.TRANSCRIPT_TIMEOUT, f"the caller said nothing within {timeout:g} s"
                ) from None
            done = time.monotonic()
            rec.turn_latencies.append(
                TurnLatency(
                    turn=len(rec.turn_latencies) + 1,
                    total_ms=round((done - started) * 1000, 1),
                    listen_wait_ms=round((done - listen_start) * 1000, 1),
                )
            )
            self._commit(Changes(rec))
            return transcript
        finally:
            if self._turns.get(rec.call_id) is turn:
                del self._turns[rec.call_id]
            if not turn.future.done():
                turn.future.cancel()
            if listening and not rec.terminal:
                try:
                    await self.provider.stop_listening(self.ref(rec))
                except ProviderError as err:
                    log.warning("stop listening failed on call %s: %s", rec.call_id, err.message)

    def _gone_or(self, err: ProviderError, rec: CallRecord) -> CallError:
        """A provider that no longer knows a live call means the caller hung up while our request
        was in flight: that is the call ending, not the provider rejecting us."""
        if err.kind is ProviderErrorKind.NOT_FOUND or rec.terminal:
            return CallError(Reason.CALL_NOT_ACTIVE, f"call {rec.call_id} has ended")
        return from_provider_error(err, rec.provider)

    def _check_live(self, rec: CallRecord) -> None:
        if rec.terminal:
            raise CallError(Reason.CALL_NOT_ACTIVE, f"the call ended ({rec.state.value})")

    async def end(self, call_id: str, reason: EndReason = EndReason.HANGUP_BOT) -> CallRecord:
        rec = self.get(call_id)
        if rec.terminal:
            return rec
        if rec.provider_call_id:
            # The provider's own "completed" may arrive before the hang-up request returns: it
            # must still record why we ended the call (see ProviderEvents._apply_type).
            self._ending[rec.call_id] = reason
            try:
                await self.provider.hangup(self.ref(rec))
            except ProviderError as err:
                error = from_provider_error(err, rec.provider)
                ch = Changes(rec)
                ch.event(EventKind.ERROR, {"message": f"hang-up failed: {error.message}"})
                self._commit(ch)
                raise error from None
            finally:
                self._ending.pop(rec.call_id, None)
        ch = Changes(rec)
        ch.finish(reason)
        self._commit(ch)
        return rec

    def list_calls(self, *, live_only: bool, page_size: int, page_token: str) -> tuple[list[CallRecord], str]:
        size = 50 if page_size <= 0 else min(page_size, 1000)
        before = None
        if page_token:
            try:
                created, _, cid = base64.urlsafe_b64decode(page_token.encode()).decode().partition("|")
            except (ValueError, UnicodeDecodeError):
                raise CallError(Reason.INVALID_FIELD, "page_token is not one this server issued") from None
            before = (created, cid)
        calls = self.store.list_calls(live_only=live_only, limit=size + 1, before=before)
        token = ""
        if len(calls) > size:
            calls = calls[:size]
            last = calls[-1]
            token = base64.urlsafe_b64encode(
                f"{last.created_at.isoformat()}|{last.call_id}".encode()
            ).decode()
        return calls, token

    async def send_dtmf(self, call_id: str, digits: str) -> CallRecord:
        digits = check_dtmf(digits, "digits")
        rec = self._connected(call_id)
        send = getattr(self.provider, "send_dtmf", None)
        if send is None:
            raise CallError(Reason.PROVIDER_REJECTED, f"provider {rec.provider} cannot send DTMF")
        try:
            await send(self.ref(rec), digits)
        except ProviderError as err:
            raise from_provider_error(err, rec.provider) from None
        return rec

    async def _play_dtmf_sequence(self, call_id: str) -> None:
        rec = self._live.get(call_id)
        if rec is None:
            return
        digits = rec.metadata.pop("dtmf_sequence", "")
        self._commit(Changes(rec))
        try:
            await self.send_dtmf(call_id, digits)
        except CallError as err:
            ch = Changes(rec)
            ch.event(EventKind.ERROR, {"message": f"sending the DTMF sequence failed: {err.message}"})
            self._commit(ch)

    # -- timers and initial message -------------------------------------------------------------
    def _arm_max_duration(self, rec: CallRecord, seconds: float) -> None:
        if (old := self._timers.pop(rec.call_id, None)) is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[rec.call_id] = loop.call_later(
            max(0.0, seconds), lambda: self._spawn(self._end_quietly(rec.call_id, EndReason.TIMEOUT))
        )

    async def _end_quietly(self, call_id: str, reason: EndReason) -> None:
        try:
            await self.end(call_id, reason)
        except CallError as err:
            log.warning("ending call %s (%s) failed: %s", call_id, reason.value, err.message)

    async def deliver_initial_message(self, call_id: str) -> None:
        """Speak the greeting or notify message once the call can hear it; keep it until it played."""
        rec = self._live.get(call_id)
        if rec is None or not rec.initial_message or call_id in self._delivering:
            return
        self._delivering.add(call_id)
        try:
            message = rec.initial_message
            try:
                await self._say(rec, message)
            except CallError as err:
                log.warning("initial message on call %s not delivered: %s", call_id, err.message)
                return
            rec.initial_message = ""
            self._commit(Changes(rec))
            if rec.mode is CallMode.NOTIFY and not rec.terminal:
                await asyncio.sleep(self.settings.notify_hangup_delay_s)
                await self._end_quietly(call_id, EndReason.HANGUP_BOT)
        finally:
            self._delivering.discard(call_id)


__all__ = [
    "CallManager",
    "CallerTurnHook",
    "ManagerSettings",
    "MediaBridge",
    "OutboundGuard",
    "check_dtmf",
    "check_e164",
]
