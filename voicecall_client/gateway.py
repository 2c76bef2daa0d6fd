"""The gateway RPC adapter: the reference's ``voicecall.*`` methods over a VoiceCallClient.

Each method takes a params object (strings are trimmed; non-strings count as absent) and answers
``(ok, payload)``. Failures are ``(False, {"error": message})``: the reference's validation
strings ("message required", "to required", "callId and message required", "callId required",
"callId and digits required"), otherwise the sidecar's own message. Errors that came from the
sidecar also carry ``reason`` (the ErrorInfo reason, e.g. ``TRANSCRIPT_TIMEOUT``; for a transport
failure the gRPC code name, e.g. ``UNAVAILABLE``) so a program can decide whether to retry.

| method | params | success payload |
| --- | --- | --- |
| voicecall.initiate | message, to?, mode?, sessionKey?, dtmfSequence?, requestId? | {callId, initiated: true} |
| voicecall.start (legacy) | to, message?, mode?, sessionKey?, dtmfSequence?, requestId? | {callId, initiated: true} |
| voicecall.continue | callId, message, requestId? | {success: true, transcript} |
| voicecall.speak | callId, message, requestId? | {success: true} |
| voicecall.end | callId | {success: true} |
| voicecall.status | callId (or sid) | {found: true, call} or {found: false} |
| voicecall.status | (no callId) | {calls: [...]}: the live calls, newest first |
| voicecall.dtmf | callId, digits | {success: true} |
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from google.protobuf.json_format import MessageToDict

from voicecall_client.client import VoiceCallClient
from voicecall_client.errors import VoiceCallError
from voicecall_client.tool import ParamError, get_status, initiate, is_missing_to, mode_param, text_param

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Handler = Callable[[VoiceCallClient, Mapping[str, Any]], Awaitable[Payload]]


def _request_id(params: Mapping[str, Any]) -> str | None:
    return text_param(params, "requestId") or None


async def _initiate(client: VoiceCallClient, params: Mapping[str, Any]) -> Payload:
    message = text_param(params, "message")
    if not message:
        raise ParamError("message required")
    return await _place(client, params, message)


async def _start(client: VoiceCallClient, params: Mapping[str, Any]) -> Payload:
    if not text_param(params, "to"):
        raise ParamError("to required")
    return await _place(client, params, text_param(params, "message"))


async def _place(client: VoiceCallClient, params: Mapping[str, Any], message: str) -> Payload:
    return await initiate(
        client,
        to=text_param(params, "to"),
        message=message,
        mode=mode_param(params),
        session_key=text_param(params, "sessionKey"),
        dtmf_sequence=text_param(params, "dtmfSequence"),
        request_id=_request_id(params),
    )


def _call_and_message(params: Mapping[str, Any]) -> tuple[str, str]:
    call_id, message = text_param(params, "callId"), text_param(params, "message")
    if not call_id or not message:
        raise ParamError("callId and message required")
    return call_id, message


def _call_id(params: Mapping[str, Any]) -> str:
    call_id = text_param(params, "callId")
    if not call_id:
        raise ParamError("callId required")
    return call_id


async def _continue(client: VoiceCallClient, params: Mapping[str, Any]) -> Payload:
    call_id, message = _call_and_message(params)
    turn = await client.continue_call(call_id, message, request_id=_request_id(params))
    return {"success": True, "transcript": turn.transcript}


async def _speak(client: VoiceCallClient, params: Mapping[str, Any]) -> Payload:
    call_id, message = _call_and_message(params)
    await client.speak(call_id, message, request_id=_request_id(params))
    return {"success": True}


async def _end(client: VoiceCallClient, params: Mapping[str, Any]) -> Payload:
    await client.end_call(_call_id(params))
    return {"success": True}


async def _status(client: VoiceCallClient, params: Mapping[str, Any]) -> Payload:
    call_id = text_param(params, "callId") or text_param(params, "sid")
    if call_id:
        return await get_status(client, call_id)
    calls = [MessageToDict(call) async for call in client.iter_calls(live_only=True)]
    return {"calls": calls}


async def _dtmf(client: VoiceCallClient, params: Mapping[str, Any]) -> Payload:
    call_id, digits = text_param(params, "callId"), text_param(params, "digits")
    if not call_id or not digits:
        raise ParamError("callId and digits required")
    await client.send_dtmf(call_id, digits)
    return {"success": True}


METHODS: dict[str, Handler] = {
    "voicecall.initiate": _initiate,
    "voicecall.start": _start,
    "voicecall.continue": _continue,
    "voicecall.speak": _speak,
    "voicecall.end": _end,
    "voicecall.status": _status,
    "voicecall.dtmf": _dtmf,
}


def error_payload(err: VoiceCallError) -> Payload:
    """``{error, reason}`` for a failed RPC, with the reference's "to required" where it applies."""
    message = "to required" if is_missing_to(err) else err.message
    return {"error": message, "reason": err.reason or err.code.name}


class GatewayAdapter:
    """Serves the ``voicecall.*`` gateway methods over one VoiceCallClient (which the caller owns)."""

    def __init__(self, client: VoiceCallClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"GatewayAdapter({self.client!r})"

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(METHODS)

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> tuple[bool, Payload]:
        """Run one method; never raises for a bad request or a failed RPC."""
        handler = METHODS.get(method) if isinstance(method, str) else None
        if handler is None:
            return False, {"error": f"unknown method {method!r}; known: {', '.join(METHODS)}"}
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            return False, {"error": "params must be an object"}
        try:
            return True, await handler(self.client, params)
        except ParamError as err:
            return False, {"error": str(err)}
        except VoiceCallError as err:
            return False, error_payload(err)
        except Exception:
            log.exception("gateway method %s failed unexpectedly", method)
            return False, {"error": f"{method} failed: internal error in the gateway adapter"}
