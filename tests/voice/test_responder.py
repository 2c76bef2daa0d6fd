"""Responder through the real openai SDK against a loopback chat-completions fake."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.voice.fakes_chat import FakeChatServer, Scripted
from voicecall_server.voice.responder import (
    Reply,
    Responder,
    ResponderError,
    TurnGate,
    clean_reply,
    parse_response_model,
)

API_KEY = "sk-test-CHATSECRET0123456789"
CALL = {"caller_number": "+15551234567", "call_id": "call-1"}


@pytest.fixture
async def chat() -> AsyncIterator[FakeChatServer]:
    server = FakeChatServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def make(chat: FakeChatServer) -> AsyncIterator[Callable[..., Responder]]:
    made: list[Responder] = []

    def factory(**overrides: Any) -> Responder:
        kwargs: dict[str, Any] = {"api_key": API_KEY, "base_url": chat.base_url}
        kwargs.update(overrides)
        responder = Responder(**kwargs)
        made.append(responder)
        return responder

    yield factory
    for responder in made:
        await responder.aclose()


async def test_prompt_has_system_prompt_caller_number_and_conversation(
    chat: FakeChatServer, make: Callable[..., Responder]
) -> None:
    chat.then(Scripted(content="Sure, I can help with that."))
    responder = make(model="gpt-4o-mini", max_tokens=120)
    transcript = [("bot", "Hello, how can I help?"), ("caller", "I need a table"), ("caller", "for two")]
    reply = await responder.reply(transcript=transcript, **CALL)
    assert reply == Reply("Sure, I can help with that.", False)
    (request,) = chat.requests
    assert chat.authorizations == [f"Bearer {API_KEY}"]
    assert request["model"] == "gpt-4o-mini"
    assert request["max_tokens"] == 120
    assert "stream" not in request or request["stream"] is False
    system, *rest = request["messages"]
    assert system["role"] == "system"
    assert "voice assistant on a phone call" in system["content"]
    assert "+15551234567" in system["content"]
    assert "[END_CALL]" in system["content"]
    assert "one or two short" in system["content"]
    assert "markdown" in system["content"]
    assert rest == [
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "I need a table"},
        {"role": "user", "content": "for two"},
    ]


async def test_custom_system_prompt_replaces_the_default(
    chat: FakeChatServer, make: Callable[..., Responder]
) -> None:
    responder = make(system_prompt="You are Ava from the bakery.")
    await responder.reply(transcript=[("caller", "hi")], **CALL)
    assert chat.requests[0]["messages"] == [
        {"role": "system", "content": "You are Ava from the bakery."},
        {"role": "user", "content": "hi"},
    ]


async def test_end_call_marker_is_stripped_and_flags_the_end(
    chat: FakeChatServer, make: Callable[..., Responder]
) -> None:
    chat.then(Scripted(content="Thanks for calling, goodbye! [END_CALL]"), Scripted(content="Anything else?"))
    responder = make()
    assert await responder.reply(transcript=[("caller", "bye")], **CALL) == Reply(
        "Thanks for calling, goodbye!", True
    )
    assert await responder.reply(transcript=[("caller", "wait")], **CALL) == Reply("Anything else?", False)


async def test_json_spoken_reply_is_extracted(chat: FakeChatServer, make: Callable[..., Responder]) -> None:
    chat.then(
        Scripted(content='```json\n{"spoken": "Your table is booked for seven."}\n```'),
        Scripted(content='{"spoken": ""}'),
    )
    responder = make()
    assert await responder.reply(transcript=[("caller", "book it")], **CALL) == Reply(
        "Your table is booked for seven.", False
    )
    assert await responder.reply(transcript=[("caller", "ok")], **CALL) == Reply("", False)


async def test_markdown_reply_is_cleaned(chat: FakeChatServer, make: Callable[..., Responder]) -> None:
    chat.then(
        Scripted(content="## Options\n\n- **Pasta** at 7pm\n- *Pizza* at 8pm 🍕\n\nSee [menu](http://x.y).")
    )
    responder = make()
    reply = await responder.reply(transcript=[("caller", "what's on")], **CALL)
    assert reply == Reply("Options Pasta at 7pm Pizza at 8pm See menu.", False)


async def test_empty_reply_is_silence(chat: FakeChatServer, make: Callable[..., Responder]) -> None:
    chat.then(Scripted(content=None), Scripted(content="  [END_CALL] "))
    responder = make()
    assert await responder.reply(transcript=[], **CALL) == Reply("", False)
    assert await responder.reply(transcript=[], **CALL) == Reply("", True)


async def test_truncated_reply_is_cut_to_the_last_sentence(
    chat: FakeChatServer, make: Callable[..., Responder]
) -> None:
    chat.then(Scripted(content="We open at nine. We close at five and on Sund", finish_reason="length"))
    reply = await make().reply(transcript=[("caller", "hours?")], **CALL)
    assert reply == Reply("We open at nine.", False)


async def test_timeout_raises_responder_error(chat: FakeChatServer, make: Callable[..., Responder]) -> None:
    chat.then(Scripted(content="too late", delay_s=30))
    responder = make(timeout_s=0.2)
    with pytest.raises(ResponderError, match=r"^response timed out after 0.2 s$"):
        await responder.reply(transcript=[("caller", "hello")], **CALL)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "response model rejected the credentials (HTTP 401)"),
        (404, "response model not found (HTTP 404)"),
        (429, "response model rate limited (HTTP 429)"),
        (500, "response model failed (HTTP 500)"),
    ],
)
async def test_api_errors_become_safe_responder_errors(
    chat: FakeChatServer,
    make: Callable[..., Responder],
    caplog: pytest.LogCaptureFixture,
    status: int,
    expected: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    chat.then(Scripted(status=status, error_message=f"Incorrect API key provided: {API_KEY}"))
    responder = make()
    with pytest.raises(ResponderError) as info:
        await responder.reply(transcript=[("caller", "hello")], **CALL)
    assert str(info.value) == expected
    assert info.value.__cause__ is None
    assert "CHATSECRET" not in caplog.text
    assert "CHATSECRET" not in repr(responder)
    assert len(chat.requests) == 1  # no retries on a live call


async def test_unreachable_model_is_a_responder_error(make: Callable[..., Responder]) -> None:
    responder = make(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ResponderError, match=r"^response model unreachable$"):
        await responder.reply(transcript=[("caller", "hello")], **CALL)


async def test_models_refusing_max_tokens_get_max_completion_tokens(
    chat: FakeChatServer, make: Callable[..., Responder]
) -> None:
    chat.then(
        Scripted(
            status=400,
            error_message="Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            error_code="unsupported_parameter",
            error_param="max_tokens",
        ),
        Scripted(content="First."),
        Scripted(content="Second."),
    )
    responder = make(max_tokens=90)
    assert (await responder.reply(transcript=[], **CALL)).text == "First."
    assert (await responder.reply(transcript=[], **CALL)).text == "Second."
    assert [r.get("max_tokens") for r in chat.requests] == [90, None, None]
    assert [r.get("max_completion_tokens") for r in chat.requests] == [None, 90, 90]


async def test_other_bad_requests_are_not_retried(
    chat: FakeChatServer, make: Callable[..., Responder]
) -> None:
    chat.then(Scripted(status=400, error_message="messages too long", error_code="context_length_exceeded"))
    with pytest.raises(ResponderError, match=r"^response model failed \(HTTP 400\)$"):
        await make().reply(transcript=[], **CALL)
    assert len(chat.requests) == 1


def test_no_key_without_base_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ResponderError, match="no API key"):
        Responder(api_key=None, base_url=None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("openai/gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("openrouter/meta-llama/llama-3.1-8b", ("openrouter", "meta-llama/llama-3.1-8b")),
        (" openai/gpt-4.1 ", ("openai", "gpt-4.1")),
    ],
)
def test_parse_response_model(value: str, expected: tuple[str, str]) -> None:
    assert parse_response_model(value) == expected


@pytest.mark.parametrize("value", ["", "openai/", "/gpt-4o"])
def test_parse_response_model_rejects_empty_parts(value: str) -> None:
    with pytest.raises(ValueError, match="provider/model"):
        parse_response_model(value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('Sure. {"spoken": "It is ten o\'clock."}', Reply("It is ten o'clock.", False)),
        ('"spoken": "Hello \\q there", then "spoken": "friend"', Reply("Hello q there friend", False)),
        ('{"spoken": "Bye now.", "end_call": true}', Reply("Bye now.", True)),
        ('{"spoken": "See you! [END_CALL]"}', Reply("See you!", True)),
        ("<think>They want hours.</think>We open at nine.", Reply("We open at nine.", False)),
        (
            "Thinking: the caller wants the time.\n\nIt is noon.",
            Reply("It is noon.", False),
        ),
        (
            "The user asked for the time, so I should answer briefly.\n\nIt is noon.",
            Reply("It is noon.", False),
        ),
        ("```\nJust this line.\n```", Reply("Just this line.", False)),
        ("1. First\n2. Second", Reply("First Second", False)),
        ("It costs 5 * 3 dollars", Reply("It costs 5 * 3 dollars", False)),
        ("Goodbye [end_call]", Reply("Goodbye", True)),
    ],
)
def test_clean_reply(raw: str, expected: Reply) -> None:
    assert clean_reply(raw) == expected


def test_turn_gate_never_speaks_a_superseded_turn() -> None:
    gate = TurnGate()
    first = gate.begin()
    assert gate.is_current(first)
    second = gate.begin()
    assert second > first
    assert not gate.is_current(first)
    assert not gate.should_speak(first, "Late answer.")
    assert gate.should_speak(second, "Fresh answer.")


def test_turn_gate_speaks_the_same_text_once_per_turn() -> None:
    gate = TurnGate()
    gen = gate.begin()
    assert gate.should_speak(gen, "Hello there.")
    assert not gate.should_speak(gen, "hello   THERE.")
    assert gate.should_speak(gen, "Something else.")
    assert not gate.should_speak(gen, "   ")
    gen2 = gate.begin()
    assert gate.should_speak(gen2, "Hello there.")
    assert gate.current == gen2
