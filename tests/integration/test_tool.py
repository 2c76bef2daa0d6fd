"""The voice_call tool: its schema, and every action and error through a real client and sidecar."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from pathlib import Path
from typing import Any

import grpc
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from providers.base import DialRequest, DialResult, ProviderError, ProviderErrorKind
from providers.mock import MockProvider, MockSettings
from voicecall_client import VoiceCallClient, errors
from voicecall_client.tool import (
    ACTIONS,
    PARAMETERS_SCHEMA,
    VOICE_CALL_TOOL,
    anthropic_tool,
    describe_error,
    execute_tool,
    openai_tool,
)

from .conftest import CONNECTED, TO, StartSidecar, address, wait_for_state

VALIDATOR = Draft202012Validator(PARAMETERS_SCHEMA)
SKILL = Path(__file__).resolve().parents[2] / "skills" / "voice-call" / "SKILL.md"


# -- the schema -------------------------------------------------------------------------------------
def test_schema_is_valid_2020_12_and_fits_both_function_calling_dialects() -> None:
    Draft202012Validator.check_schema(PARAMETERS_SCHEMA)
    assert PARAMETERS_SCHEMA["type"] == "object"
    # Anthropic and OpenAI reject these at the top level of a tool's parameters.
    assert not {"allOf", "anyOf", "oneOf", "not", "enum", "const"} & set(PARAMETERS_SCHEMA)
    assert PARAMETERS_SCHEMA["properties"]["action"]["enum"] == list(ACTIONS)
    assert set(PARAMETERS_SCHEMA["properties"]) == {
        "action",
        "message",
        "to",
        "mode",
        "callId",
        "digits",
        "dtmfSequence",
    }
    assert VOICE_CALL_TOOL["name"] == "voice_call" and "notify" in VOICE_CALL_TOOL["description"]
    json.dumps(VOICE_CALL_TOOL)  # plain JSON, usable as-is


def test_provider_envelopes() -> None:
    oa = openai_tool()
    assert oa["type"] == "function"
    assert oa["function"] == VOICE_CALL_TOOL
    an = anthropic_tool()
    assert an == {
        "name": "voice_call",
        "description": VOICE_CALL_TOOL["description"],
        "input_schema": PARAMETERS_SCHEMA,
    }
    # Fresh copies: a caller mutating its envelope cannot change the shared definition.
    an["input_schema"]["properties"].clear()
    oa["function"]["parameters"]["required"].append("x")
    assert "action" in PARAMETERS_SCHEMA["properties"] and PARAMETERS_SCHEMA["required"] == ["action"]


@pytest.mark.parametrize(
    "params",
    [
        {"action": "initiate_call", "message": "Your build failed", "mode": "notify"},
        {
            "action": "initiate_call",
            "message": "Hi",
            "to": "+15551234567",
            "mode": "conversation",
            "dtmfSequence": "ww1#",
        },
        {"action": "continue_call", "callId": "c1", "message": "Deploy now?"},
        {"action": "speak_to_user", "callId": "c1", "message": "One moment"},
        {"action": "end_call", "callId": "c1"},
        {"action": "get_status", "callId": "c1"},
        {"action": "send_dtmf", "callId": "c1", "digits": "1w2#"},
    ],
)
def test_valid_examples(params: dict[str, Any]) -> None:
    VALIDATOR.validate(params)


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"action": "initiate_call"}, "'message' is a required property"),
        ({"action": "initiate_call", "message": "Hi", "to": "555-1234"}, "does not match"),
        ({"action": "initiate_call", "message": "Hi", "mode": "call"}, "is not one of"),
        ({"action": "continue_call", "callId": "c1"}, "'message' is a required property"),
        ({"action": "speak_to_user", "message": "x"}, "'callId' is a required property"),
        ({"action": "end_call"}, "'callId' is a required property"),
        ({"action": "get_status"}, "'callId' is a required property"),
        ({"action": "send_dtmf", "callId": "c1"}, "'digits' is a required property"),
        ({"action": "send_dtmf", "callId": "c1", "digits": "12x"}, "does not match"),
        ({"action": "hang_up", "callId": "c1"}, "is not one of"),
        ({"message": "Hi"}, "'action' is a required property"),
        ({"action": "end_call", "callId": "c1", "sid": "x"}, "Additional properties"),
    ],
)
def test_invalid_examples(params: dict[str, Any], why: str) -> None:
    messages = [e.message for e in VALIDATOR.iter_errors(params)]
    assert any(why in m for m in messages), messages


def test_skill_doc_tool_calls_validate() -> None:
    blocks = re.findall(r"```json\n(.*?)```", SKILL.read_text(), re.S)
    calls = [json.loads(b) for b in blocks if '"action"' in b and '"error"' not in b]
    calls = [c for c in calls if "action" in c]
    assert len(calls) >= 6
    for params in calls:
        VALIDATOR.validate(params)
    assert {c["action"] for c in calls} == set(ACTIONS)


# -- every action, end to end -----------------------------------------------------------------------
async def test_notify_call(client: VoiceCallClient) -> None:
    result = await execute_tool(
        client, {"action": "initiate_call", "to": TO, "message": "Build failed", "mode": "notify"}
    )
    assert set(result) == {"callId", "initiated"} and result["initiated"] is True
    call = await wait_for_state(client, result["callId"], "CALL_STATE_HANGUP_BOT")
    assert (
        call["callId"] == result["callId"] and call["toNumber"] == TO and call["mode"] == "CALL_MODE_NOTIFY"
    )
    assert [(t["speaker"], t["text"]) for t in call["transcript"]] == [("SPEAKER_BOT", "Build failed")]
    by_provider = await execute_tool(client, {"action": "get_status", "callId": call["providerCallId"]})
    assert by_provider["found"] is True and by_provider["call"]["callId"] == result["callId"]


async def test_conversation_every_action(sidecar_factory: StartSidecar) -> None:
    running = await sidecar_factory(mock={"callerReplies": ["yes please"]})
    provider = running.sidecar.provider
    assert isinstance(provider, MockProvider)
    async with VoiceCallClient(address(running)) as client:
        started = await execute_tool(
            client,
            {"action": "initiate_call", "to": f"  {TO} ", "message": " Hi ", "mode": "conversation"},
            session_key="agent:main:42",
        )
        call_id = started["callId"]
        await wait_for_state(client, call_id, *CONNECTED)
        turn = await execute_tool(
            client, {"action": "continue_call", "callId": call_id, "message": "Deploy?"}
        )
        assert turn == {"success": True, "transcript": "yes please"}
        spoke = await execute_tool(
            client, {"action": "speak_to_user", "callId": call_id, "message": "Deploying"}
        )
        assert spoke == {"success": True}
        dtmf = await execute_tool(client, {"action": "send_dtmf", "callId": call_id, "digits": "1w#"})
        assert dtmf == {"success": True}
        assert provider.dtmf_sent == [(call_id, "1w#")]
        status = await execute_tool(client, {"action": "get_status", "callId": call_id})
        assert status["found"] is True
        call = status["call"]
        assert call["sessionKey"] == "agent:main:42" and call["mode"] == "CALL_MODE_CONVERSATION"
        assert [t["text"] for t in call["transcript"]] == ["Hi", "Deploy?", "yes please", "Deploying"]
        assert await execute_tool(client, {"action": "end_call", "callId": call_id}) == {"success": True}
        assert await execute_tool(client, {"action": "end_call", "callId": call_id}) == {"success": True}
        after = await execute_tool(
            client, {"action": "speak_to_user", "callId": call_id, "message": "hello?"}
        )
        assert after == {
            "error": "the call has ended (hangup-bot); place a new call with initiate_call if you still need to"
        }


async def test_dtmf_sequence_is_sent_once_answered(sidecar_factory: StartSidecar) -> None:
    running = await sidecar_factory()
    provider = running.sidecar.provider
    assert isinstance(provider, MockProvider)
    async with VoiceCallClient(address(running)) as client:
        result = await execute_tool(
            client,
            {
                "action": "initiate_call",
                "to": TO,
                "message": "Hi",
                "mode": "conversation",
                "dtmfSequence": "ww123#",
            },
        )
        await wait_for_state(client, result["callId"], *CONNECTED)
        for _ in range(500):
            if provider.dtmf_sent:
                break
            await asyncio.sleep(0.01)
        assert provider.dtmf_sent == [(result["callId"], "ww123#")]


async def test_to_falls_back_to_the_configured_number(sidecar_factory: StartSidecar) -> None:
    running = await sidecar_factory(toNumber="+15557770000")
    async with VoiceCallClient(address(running)) as client:
        result = await execute_tool(client, {"action": "initiate_call", "message": "Hi"})
        status = await execute_tool(client, {"action": "get_status", "callId": result["callId"]})
        assert status["call"]["toNumber"] == "+15557770000"


async def test_status_of_unknown_call(client: VoiceCallClient) -> None:
    assert await execute_tool(client, {"action": "get_status", "callId": "nope"}) == {"found": False}


async def test_legacy_shape(client: VoiceCallClient) -> None:
    placed = await execute_tool(client, {"mode": "call", "to": TO, "message": "Legacy hello"})
    assert placed["initiated"] is True
    status = await execute_tool(client, {"mode": "status", "sid": placed["callId"]})
    assert status["found"] is True and status["call"]["mode"] == "CALL_MODE_NOTIFY"  # the default mode
    assert await execute_tool(client, {"mode": "status"}) == {"error": "sid required for status"}
    # No message on a notify call: the sidecar's own message comes back.
    assert await execute_tool(client, {"to": TO}) == {"error": "message is required for a notify call"}
    bad = await execute_tool(client, {"mode": "dance"})
    assert bad["error"].startswith("unknown mode")


# -- parameter errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"action": "initiate_call"}, "message required"),
        ({"action": "initiate_call", "message": "   "}, "message required"),
        (
            {"action": "initiate_call", "message": "Hi", "mode": "shout"},
            "mode must be notify or conversation",
        ),
        ({"action": "continue_call", "callId": "c1"}, "callId and message required"),
        ({"action": "continue_call", "message": "x"}, "callId and message required"),
        ({"action": "speak_to_user", "callId": " ", "message": "x"}, "callId and message required"),
        ({"action": "end_call"}, "callId required"),
        ({"action": "get_status", "callId": 42}, "callId required"),
        ({"action": "send_dtmf", "digits": "1"}, "callId required"),
        ({"action": "send_dtmf", "callId": "c1"}, "digits required"),
    ],
)
async def test_parameter_errors(client: VoiceCallClient, params: dict[str, Any], error: str) -> None:
    assert await execute_tool(client, params) == {"error": error}


async def test_unknown_action_and_non_object(client: VoiceCallClient) -> None:
    result = await execute_tool(client, {"action": "hang_up"})
    assert result["error"].startswith("unknown action 'hang_up'; use one of: initiate_call")
    assert await execute_tool(client, ["initiate_call"]) == {"error": "parameters must be a JSON object"}  # type: ignore[arg-type]


# -- server errors, end to end ----------------------------------------------------------------------
async def test_to_required_without_a_configured_number(client: VoiceCallClient) -> None:
    assert await execute_tool(client, {"action": "initiate_call", "message": "Hi"}) == {
        "error": "to required"
    }


async def test_invalid_phone_number_and_digits(client: VoiceCallClient) -> None:
    bad = await execute_tool(client, {"action": "initiate_call", "message": "Hi", "to": "555"})
    assert bad["error"].startswith("invalid phone number: to must be an E.164 number")
    started = await execute_tool(
        client, {"action": "initiate_call", "to": TO, "message": "Hi", "mode": "conversation"}
    )
    await wait_for_state(client, started["callId"], *CONNECTED)
    digits = await execute_tool(client, {"action": "send_dtmf", "callId": started["callId"], "digits": "12x"})
    assert digits["error"].startswith("digits must be 1-64 of 0-9 * # A-D and w")


async def test_call_not_found(client: VoiceCallClient) -> None:
    result = await execute_tool(client, {"action": "speak_to_user", "callId": "nope", "message": "x"})
    assert result == {"error": "no call with that callId; use the callId that initiate_call returned"}


async def test_call_not_connected_yet(sidecar_factory: StartSidecar) -> None:
    running = await sidecar_factory(mock={"answerAfterMs": 60_000})
    async with VoiceCallClient(address(running)) as client:
        started = await execute_tool(
            client, {"action": "initiate_call", "to": TO, "message": "Hi", "mode": "conversation"}
        )
        result = await execute_tool(
            client, {"action": "continue_call", "callId": started["callId"], "message": "x"}
        )
        assert result["error"].startswith("the call is not connected yet")


async def test_transcript_timeout_and_turn_in_progress(sidecar_factory: StartSidecar) -> None:
    running = await sidecar_factory(transcriptTimeoutMs=1500)  # no scripted replies: the caller stays silent
    async with VoiceCallClient(address(running)) as client:
        started = await execute_tool(
            client, {"action": "initiate_call", "to": TO, "message": "Hi", "mode": "conversation"}
        )
        call_id = started["callId"]
        await wait_for_state(client, call_id, *CONNECTED)
        first = asyncio.create_task(
            execute_tool(client, {"action": "continue_call", "callId": call_id, "message": "One?"})
        )
        await wait_for_state(client, call_id, "CALL_STATE_LISTENING")
        second = await execute_tool(client, {"action": "continue_call", "callId": call_id, "message": "Two?"})
        assert second == {"error": "a turn is already running on this call; wait for its result"}
        assert await first == {
            "error": "the caller said nothing within the timeout; try continue_call again or end_call"
        }


async def test_max_concurrent_calls(sidecar_factory: StartSidecar) -> None:
    running = await sidecar_factory(maxConcurrentCalls=1)
    async with VoiceCallClient(address(running)) as client:
        params = {"action": "initiate_call", "to": TO, "message": "Hi", "mode": "conversation"}
        assert (await execute_tool(client, params))["initiated"] is True
        result = await execute_tool(client, params)
        assert result["error"].startswith("too many calls are in progress (maxConcurrentCalls reached)")


class FailingProvider(MockProvider):
    def __init__(self, error: BaseException) -> None:
        super().__init__(MockSettings())
        self.error = error

    async def dial(self, request: DialRequest) -> DialResult:
        raise self.error


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (
            ProviderErrorKind.REJECTED,
            "the phone provider refused the request (mock: number blocked); do not retry it unchanged",
        ),
        (ProviderErrorKind.AUTH, "the phone provider rejected the voice service's credentials"),
        (ProviderErrorKind.RATE_LIMITED, "the phone provider is rate limiting requests"),
        (ProviderErrorKind.UNAVAILABLE, "the phone provider is unreachable right now"),
    ],
)
async def test_provider_errors(sidecar_factory: StartSidecar, kind: ProviderErrorKind, error: str) -> None:
    running = await sidecar_factory(FailingProvider(ProviderError(kind, "number blocked")))
    async with VoiceCallClient(address(running), retry_attempts=1) as client:
        result = await execute_tool(client, {"action": "initiate_call", "to": TO, "message": "Hi"})
        assert result["error"].startswith(error)


async def test_internal_error(sidecar_factory: StartSidecar) -> None:
    running = await sidecar_factory(FailingProvider(RuntimeError("boom")))
    async with VoiceCallClient(address(running)) as client:
        result = await execute_tool(client, {"action": "initiate_call", "to": TO, "message": "Hi"})
        assert result == {
            "error": "the voice call service hit an internal error; try once more, and report it if it repeats"
        }


async def test_unreachable_sidecar() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    async with VoiceCallClient(f"127.0.0.1:{port}", retry_attempts=1, default_timeout=5) as client:
        result = await execute_tool(client, {"action": "end_call", "callId": "c1"})
    assert result == {"error": "the voice call service is not reachable; try again shortly"}


class ExplodingClient(VoiceCallClient):
    async def status(self, call_id: str) -> Any:
        raise RuntimeError("a bug")


async def test_unexpected_exception_is_returned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="voicecall_client.tool")
    async with ExplodingClient("127.0.0.1:1") as client:
        result = await execute_tool(client, {"action": "get_status", "callId": "c1"})
    assert result == {"error": "get_status failed: unexpected error in the voice_call tool"}
    assert "a bug" in caplog.text


# -- the rest of the error table, from constructed errors ------------------------------------------
@pytest.mark.parametrize(
    ("err", "text"),
    [
        (errors.Unavailable("going", reason="SHUTTING_DOWN"), "the voice call service is restarting"),
        (
            errors.Unauthenticated("bad token", reason="UNAUTHENTICATED"),
            "the voice call service rejected this gateway's credentials",
        ),
        (
            errors.FailedPrecondition("+1555 is on the deny list", reason="OUTBOUND_NOT_ALLOWED"),
            "calling this number is not allowed (+1555 is on the deny list); do not retry",
        ),
        (
            errors.FailedPrecondition("outside calling hours (09:00-18:00)", reason="OUTSIDE_CALLING_HOURS"),
            "outside calling hours (09:00-18:00); try again during calling hours",
        ),
        (
            errors.ResourceExhausted("10 calls per minute reached", reason="CALL_RATE_LIMITED"),
            "10 calls per minute reached; wait before placing another call",
        ),
        (
            errors.InvalidArgument("request_id was used with another payload", reason="REQUEST_ID_REUSED"),
            "request_id was used with another payload",
        ),
        (
            errors.InvalidArgument("dtmf_sequence must be 1-64 of ...", reason="INVALID_FIELD"),
            "dtmfSequence must be 1-64 of ...",
        ),
        (
            errors.DeadlineExceeded("Deadline Exceeded"),
            "the voice call service did not answer in time; check get_status before retrying",
        ),
        (
            errors.Unimplemented("Method not found!"),
            "this voice call service does not support send_dtmf; it needs a newer sidecar",
        ),
        (errors.Unknown("odd"), "send_dtmf failed: odd"),
    ],
)
def test_describe_error(err: errors.VoiceCallError, text: str) -> None:
    assert describe_error(err, "send_dtmf").startswith(text)


def test_describe_error_codes_are_grpc_codes() -> None:
    err = errors.InvalidArgument(
        "to_number is required (no toNumber is configured)",
        reason="INVALID_FIELD",
        metadata={"field": "to_number"},
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert describe_error(err) == "to required"
