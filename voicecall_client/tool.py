"""The ``voice_call`` agent tool: its JSON Schema definition and an executor over VoiceCallClient.

``VOICE_CALL_TOOL`` is ``{name, description, parameters}``; ``openai_tool()`` and
``anthropic_tool()`` wrap it in those APIs' envelopes. ``execute_tool`` runs one tool call and
always returns a JSON-ready dict: the reference's result shapes, or ``{"error": "..."}`` phrased
so an agent knows what to do next. It never raises for a bad call or a failed RPC.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from voicecall_client.client import VoiceCallClient
from voicecall_client.errors import VoiceCallError

log = logging.getLogger(__name__)

TOOL_NAME = "voice_call"
TOOL_LABEL = "Voice Call"
ACTIONS = ("initiate_call", "continue_call", "speak_to_user", "end_call", "get_status", "send_dtmf")
MODES = ("notify", "conversation")
# The same rules the sidecar enforces; the schema shows them to the model up front.
E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
DTMF_PATTERN = r"^[0-9*#A-Dw]{1,64}$"

_DESCRIPTION = (
    "Make phone calls and hold voice conversations with people. "
    "initiate_call places a call and returns its callId at once (the phone is still ringing). "
    "Use mode 'notify' to deliver a one-way message: the message is spoken when the person answers "
    "and the call hangs up by itself (reminders, alerts). Use mode 'conversation' when you need "
    "answers: the message is the greeting, the call stays open, and you drive it turn by turn. "
    "continue_call says your message and then waits until the person replies (or a timeout) and "
    "returns what they said; speak_to_user says something without waiting; end_call hangs up "
    "(always end conversation calls when done); get_status returns the call's state and transcript; "
    "send_dtmf presses phone keys, for automated phone menus."
)

_PROPERTIES: dict[str, Any] = {
    "action": {"type": "string", "enum": list(ACTIONS), "description": "What to do."},
    "message": {
        "type": "string",
        "minLength": 1,
        "description": "What to say: the opening message for initiate_call, the next line for "
        "continue_call and speak_to_user. Short spoken sentences.",
    },
    "to": {
        "type": "string",
        "pattern": E164_PATTERN,
        "description": "initiate_call: the number to call in E.164 (+15551234567). "
        "Omit to call the configured default number.",
    },
    "mode": {
        "type": "string",
        "enum": list(MODES),
        "description": "initiate_call: notify (say the message, then hang up) or conversation "
        "(keep the call open for continue_call). Omit for the configured default.",
    },
    "callId": {
        "type": "string",
        "minLength": 1,
        "description": "The callId returned by initiate_call (get_status also takes the provider's id).",
    },
    "digits": {
        "type": "string",
        "pattern": DTMF_PATTERN,
        "description": "send_dtmf: keys to press: 0-9 * # A-D, and w for a half-second pause.",
    },
    "dtmfSequence": {
        "type": "string",
        "pattern": DTMF_PATTERN,
        "description": "initiate_call: keys to press as soon as the call is answered, before the "
        "message (e.g. an extension: 'ww123#').",
    },
}

# Which fields each action needs. Anthropic and OpenAI both reject allOf/anyOf/oneOf at the top
# level of a tool's schema, so the per-action rules are one if/then/else chain instead.
_REQUIRED_BY_ACTION: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("initiate_call",), ("message",)),
    (("continue_call", "speak_to_user"), ("callId", "message")),
    (("end_call", "get_status"), ("callId",)),
    (("send_dtmf",), ("callId", "digits")),
)


def _rules(index: int = 0) -> dict[str, Any]:
    actions, fields = _REQUIRED_BY_ACTION[index]
    rule: dict[str, Any] = {
        "if": {"properties": {"action": {"enum": list(actions)}}, "required": ["action"]},
        "then": {"required": list(fields)},
    }
    if index + 1 < len(_REQUIRED_BY_ACTION):
        rule["else"] = _rules(index + 1)
    return rule


PARAMETERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": _PROPERTIES,
    "required": ["action"],
    "additionalProperties": False,
    **_rules(),
}

VOICE_CALL_TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": _DESCRIPTION,
    "parameters": PARAMETERS_SCHEMA,
}


def openai_tool() -> dict[str, Any]:
    """The tool in OpenAI Chat Completions' ``tools`` shape (a fresh copy)."""
    return {"type": "function", "function": copy.deepcopy(VOICE_CALL_TOOL)}


def anthropic_tool() -> dict[str, Any]:
    """The tool in Anthropic Messages' ``tools`` shape (a fresh copy)."""
    return {
        "name": TOOL_NAME,
        "description": _DESCRIPTION,
        "input_schema": copy.deepcopy(PARAMETERS_SCHEMA),
    }


class ParamError(ValueError):
    """A tool call with missing or malformed parameters; the message is returned as the error."""


def text_param(params: Mapping[str, Any], key: str) -> str:
    """A trimmed string parameter; absent or non-string values count as empty (as in the reference)."""
    value = params.get(key)
    return value.strip() if isinstance(value, str) else ""


def mode_param(params: Mapping[str, Any]) -> str | None:
    mode = text_param(params, "mode").lower()
    if not mode:
        return None
    if mode not in MODES:
        raise ParamError("mode must be notify or conversation")
    return mode


async def execute_tool(
    client: VoiceCallClient, params: Mapping[str, Any], *, session_key: str = ""
) -> dict[str, Any]:
    """Run one ``voice_call`` tool call; ``session_key`` (the agent's session) is stored on new calls.

    Also accepts the legacy shape without ``action``: ``{mode?: "call"|"status", to?, sid?, message?}``.
    """
    if not isinstance(params, Mapping):
        return {"error": "parameters must be a JSON object"}
    action = params.get("action")
    label = action if isinstance(action, str) and action else "voice_call"
    try:
        if action is None:
            return await _legacy(client, params, session_key)
        if not isinstance(action, str) or action not in ACTIONS:
            raise ParamError(f"unknown action {action!r}; use one of: {', '.join(ACTIONS)}")
        return await _run(client, action, params, session_key)
    except ParamError as err:
        return {"error": str(err)}
    except VoiceCallError as err:
        return {"error": describe_error(err, label)}
    except Exception:
        # Never raise into the agent loop; the traceback is for the operator's log only.
        log.exception("voice_call %s failed unexpectedly", label)
        return {"error": f"{label} failed: unexpected error in the voice_call tool"}


async def _run(
    client: VoiceCallClient, action: str, params: Mapping[str, Any], session_key: str
) -> dict[str, Any]:
    call_id = text_param(params, "callId")
    message = text_param(params, "message")
    if action == "initiate_call":
        if not message:
            raise ParamError("message required")
        return await initiate(
            client,
            to=text_param(params, "to"),
            message=message,
            mode=mode_param(params),
            session_key=session_key,
            dtmf_sequence=text_param(params, "dtmfSequence"),
        )
    if action in ("continue_call", "speak_to_user"):
        if not call_id or not message:
            raise ParamError("callId and message required")
        if action == "continue_call":
            turn = await client.continue_call(call_id, message)
            return {"success": True, "transcript": turn.transcript}
        await client.speak(call_id, message)
        return {"success": True}
    if not call_id:
        raise ParamError("callId required")
    if action == "end_call":
        await client.end_call(call_id)
        return {"success": True}
    if action == "get_status":
        return await get_status(client, call_id)
    digits = text_param(params, "digits")
    if not digits:
        raise ParamError("digits required")
    await client.send_dtmf(call_id, digits)
    return {"success": True}


async def _legacy(client: VoiceCallClient, params: Mapping[str, Any], session_key: str) -> dict[str, Any]:
    mode = text_param(params, "mode").lower() or "call"
    if mode == "status":
        sid = text_param(params, "sid") or text_param(params, "callId")
        if not sid:
            raise ParamError("sid required for status")
        return await get_status(client, sid)
    if mode not in ("call", *MODES):
        raise ParamError("unknown mode; use action initiate_call, continue_call, ... (see the tool schema)")
    return await initiate(
        client,
        to=text_param(params, "to"),
        message=text_param(params, "message"),
        mode=None if mode == "call" else mode,
        session_key=session_key,
        dtmf_sequence=text_param(params, "dtmfSequence"),
    )


async def initiate(
    client: VoiceCallClient,
    *,
    to: str,
    message: str,
    mode: str | None,
    session_key: str = "",
    dtmf_sequence: str = "",
    request_id: str | None = None,
) -> dict[str, Any]:
    """Place a call; empty ``to`` lets the sidecar use its configured toNumber."""
    resp = await client.initiate_call(
        to,
        message,
        mode=mode,
        session_key=session_key,
        request_id=request_id,
        dtmf_sequence=dtmf_sequence,
    )
    return {"callId": resp.call_id, "initiated": True}


async def get_status(client: VoiceCallClient, call_id: str) -> dict[str, Any]:
    """``{found: true, call}`` (proto JSON: lowerCamelCase, enum names) or ``{found: false}``."""
    try:
        call = await client.status(call_id)
    except VoiceCallError as err:
        if err.code == grpc.StatusCode.NOT_FOUND:
            return {"found": False}
        raise
    return {"found": True, "call": MessageToDict(call)}


def is_missing_to(err: VoiceCallError) -> bool:
    """The sidecar refused an initiate because no number was given and no toNumber is configured."""
    return (
        err.code == grpc.StatusCode.INVALID_ARGUMENT
        and err.metadata.get("field") == "to_number"
        and "required" in err.message
    )


# The sidecar speaks proto field names; the tool's caller knows the tool's names.
_FIELD_NAMES = {"to_number": "to", "dtmf_sequence": "dtmfSequence", "call_id": "callId"}
_FIELD_RE = re.compile(r"\b(" + "|".join(_FIELD_NAMES) + r")\b")
_ENDED_STATE_RE = re.compile(r"\(([a-z-]+)\)\s*$")

_HINTS = {
    "TRANSCRIPT_TIMEOUT": "the caller said nothing within the timeout; try continue_call again or end_call",
    "TURN_IN_PROGRESS": "a turn is already running on this call; wait for its result",
    "CALL_NOT_FOUND": "no call with that callId; use the callId that initiate_call returned",
    "MAX_CONCURRENT_CALLS": "too many calls are in progress (maxConcurrentCalls reached); end a call "
    "with end_call or wait for one to finish, then try again",
    "PROVIDER_RATE_LIMITED": "the phone provider is rate limiting requests; wait a minute, then try again",
    "PROVIDER_AUTH_FAILED": "the phone provider rejected the voice service's credentials; an operator "
    "must fix its configuration, retrying will not help",
    "PROVIDER_UNAVAILABLE": "the phone provider is unreachable right now; try again in a minute",
    "SHUTTING_DOWN": "the voice call service is restarting; try again in a few seconds",
    "UNAUTHENTICATED": "the voice call service rejected this gateway's credentials; an operator must "
    "fix the configuration, retrying will not help",
    "INTERNAL": "the voice call service hit an internal error; try once more, and report it if it repeats",
}


def describe_error(err: VoiceCallError, action: str = "voice_call") -> str:
    """An error message an agent can act on: what happened, then what to do about it."""
    reason = err.reason
    detail = _FIELD_RE.sub(lambda m: _FIELD_NAMES[m.group(1)], err.message)
    if reason in _HINTS:
        return _HINTS[reason]
    if reason == "CALL_NOT_ACTIVE":
        if "not connected" in err.message:
            return (
                "the call is not connected yet (still ringing or being set up); wait a few seconds, "
                "check get_status, then try again"
            )
        ended = _ENDED_STATE_RE.search(err.message)
        state = f" ({ended.group(1)})" if ended else ""
        return f"the call has ended{state}; place a new call with initiate_call if you still need to"
    if is_missing_to(err):
        return "to required"
    if reason == "INVALID_PHONE_NUMBER":
        return f"invalid phone number: {detail}"
    if reason == "PROVIDER_REJECTED":
        return f"the phone provider refused the request ({detail}); do not retry it unchanged"
    if reason == "OUTBOUND_NOT_ALLOWED":
        return f"calling this number is not allowed ({detail}); do not retry"
    if reason == "OUTSIDE_CALLING_HOURS":
        return f"{detail}; try again during calling hours"
    if reason == "CALL_RATE_LIMITED":
        return f"{detail}; wait before placing another call"
    if reason:
        return detail
    # No ErrorInfo: the request never reached a voicecall server, or that server is older.
    if err.code == grpc.StatusCode.UNAVAILABLE:
        return "the voice call service is not reachable; try again shortly"
    if err.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the voice call service did not answer in time; check get_status before retrying"
    if err.code == grpc.StatusCode.UNIMPLEMENTED:
        return f"this voice call service does not support {action}; it needs a newer sidecar"
    return f"{action} failed: {detail}"
