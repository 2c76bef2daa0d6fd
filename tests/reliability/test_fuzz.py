"""Property-based fuzzing of every parser that reads outside input: only the documented errors."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.base import Verification, WebhookRequest
from providers.mock import parse_mock_event
from providers.plivo import media as plivo_media
from providers.plivo import signature as plivo_sig
from providers.plivo import webhook as plivo_webhook
from providers.telnyx import media as telnyx_media
from providers.telnyx import signature as telnyx_sig
from providers.telnyx import webhook as telnyx_webhook
from providers.twilio import media as twilio_media
from providers.twilio import signature as twilio_sig
from providers.twilio import webhook as twilio_webhook
from voicecall_server.config import ConfigError, config_from_mapping

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
URL = "https://voice.example.test/voice/webhook"
OK = Verification(ok=True, replay_key="k")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
TWILIO_KEYS = [
    "CallSid",
    "CallStatus",
    "Direction",
    "From",
    "To",
    "SpeechResult",
    "Confidence",
    "Digits",
    "AnsweredBy",
    "Timestamp",
    "SequenceNumber",
    "CallDuration",
    "AccountSid",
]
PLIVO_KEYS = [
    "CallUUID",
    "RequestUUID",
    "CallStatus",
    "Direction",
    "From",
    "To",
    "Event",
    "Digits",
    "Speech",
    "Confidence",
    "HangupCause",
    "Machine",
    "callId",
]
form_fields = st.lists(
    st.tuples(st.sampled_from(TWILIO_KEYS + PLIVO_KEYS) | st.text(max_size=8), st.text(max_size=24)),
    max_size=10,
)


def request(
    body: bytes, query: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> WebhookRequest:
    q = query or {}
    return WebhookRequest(
        method="POST",
        url=URL + (("?" + urlencode(q)) if q else ""),
        path="/voice/webhook",
        query=q,
        headers={"content-type": "application/x-www-form-urlencoded", **(headers or {})},
        body=body,
        query_items=tuple(q.items()),
    )


@FUZZ
@given(
    fields=form_fields,
    raw=st.binary(max_size=64),
    use_raw=st.booleans(),
    query=st.dictionaries(st.sampled_from(["callId", "flow", "turnToken", "type"]), st.text(max_size=10)),
)
def test_twilio_and_plivo_webhooks(
    fields: list[tuple[str, str]], raw: bytes, use_raw: bool, query: dict[str, str]
) -> None:
    body = raw if use_raw else urlencode(fields).encode()
    for parse in (twilio_webhook.parse_webhook, lambda r, v: plivo_webhook.parse(r, v)):
        try:
            events = parse(request(body, query), OK)
        except ValueError:
            continue
        assert isinstance(events, list)


@FUZZ
@given(body=json_values, raw=st.binary(max_size=64), use_raw=st.booleans())
def test_telnyx_webhook(body: Any, raw: bytes, use_raw: bool) -> None:
    data = raw if use_raw else json.dumps(body).encode()
    try:
        events = telnyx_webhook.parse_webhook(request(data, headers={"content-type": "application/json"}), OK)
    except ValueError:
        return
    assert isinstance(events, list)


@FUZZ
@given(
    item=json_values
    | st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "call.initiated",
                    "call.ringing",
                    "call.answered",
                    "call.ended",
                    "call.speech",
                    "call.dtmf",
                    "call.error",
                    "bogus",
                ]
            )
        },
        optional={
            "callId": json_values,
            "providerCallId": json_values,
            "reason": json_values,
            "timestamp": json_values,
            "direction": json_values,
            "confidence": json_values,
            "isFinal": json_values,
            "digits": json_values,
            "id": json_values,
        },
    )
)
def test_mock_events(item: Any) -> None:
    with contextlib.suppress(ValueError):
        parse_mock_event(item, 0)


def _frames() -> st.SearchStrategy[str | bytes]:
    events = st.sampled_from(
        [
            "connected",
            "start",
            "media",
            "mark",
            "stop",
            "dtmf",
            "playedStream",
            "clearedAudio",
            "error",
            "other",
        ]
    )
    shaped = st.builds(
        lambda ev, extra: json.dumps({"event": ev, **extra}),
        events,
        st.dictionaries(
            st.sampled_from(
                [
                    "start",
                    "media",
                    "mark",
                    "stop",
                    "dtmf",
                    "streamSid",
                    "stream_id",
                    "sequenceNumber",
                    "extra_headers",
                    "payload",
                    "customParameters",
                    "streamId",
                    "callId",
                ]
            ),
            json_values,
            max_size=5,
        ),
    )
    return shaped | st.text(max_size=40) | st.binary(max_size=40)


@FUZZ
@given(frame=_frames())
def test_media_frames(frame: str | bytes) -> None:
    for mod in (twilio_media, plivo_media, telnyx_media):
        with contextlib.suppress(mod.MediaFrameError):
            mod.parse_frame(frame)


KEY = Ed25519PrivateKey.generate()


@FUZZ
@given(
    fields=form_fields,
    sig=st.text(max_size=40),
    url=st.text(max_size=40),
    body=st.binary(max_size=64),
    headers=st.dictionaries(
        st.sampled_from([*telnyx_sig.HEADERS, *plivo_sig.HEADERS]),
        st.text(max_size=30),
    ),
)
def test_signature_verifiers_reject_and_never_raise(
    fields: list[tuple[str, str]], sig: str, url: str, body: bytes, headers: dict[str, str]
) -> None:
    v = twilio_sig.verify("token", url or URL, (), fields, sig, body)
    assert not v.ok
    v = telnyx_sig.verify(KEY.public_key(), headers, body)
    assert not v.ok
    v = plivo_sig.verify(request(urlencode(fields).encode(), headers=headers), "token")
    assert not v.ok


config_keys = st.sampled_from(
    [
        "provider",
        "fromNumber",
        "toNumber",
        "inboundPolicy",
        "allowFrom",
        "outbound",
        "maxConcurrentCalls",
        "serve",
        "streaming",
        "publicUrl",
        "twilio",
        "telnyx",
        "plivo",
        "tts",
        "grpc",
        "mock",
        "store",
        "metrics",
        "logging",
        "plugins",
        "messages",
        "unknownKey",
        "responseModel",
        "retention",
        "webhookSecurity",
    ]
)


@FUZZ
@given(
    raw=st.dictionaries(config_keys, json_values, max_size=6),
    env=st.dictionaries(
        st.sampled_from(
            ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "OPENAI_API_KEY", "TELNYX_API_KEY", "PLIVO_AUTH_ID"]
        ),
        st.text(max_size=10),
    ),
)
def test_config_loader(raw: dict[str, Any], env: dict[str, str]) -> None:
    with contextlib.suppress(ConfigError):
        config_from_mapping(raw, env)
