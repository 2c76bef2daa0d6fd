"""TelnyxProvider's webhook surface: signed requests end to end, skip mode, missing key, attributes."""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from providers.base import Direction, EventType, WebhookOutcome, WebhookRequest
from providers.telnyx import TelnyxProvider, TelnyxSettings

from .fakes import API_KEY, CONNECTION_ID

BODY = json.dumps(
    {
        "data": {
            "id": "ev-9",
            "event_type": "call.initiated",
            "payload": {"call_control_id": "v3:x", "direction": "incoming", "from": "+1555", "to": "+1666"},
        }
    }
).encode()


def _request(headers: dict[str, str], body: bytes = BODY) -> WebhookRequest:
    return WebhookRequest("POST", "https://example.test/wh", "/wh", {}, headers, body)


async def _provider(public_key: str | None, *, skip: bool = False) -> TelnyxProvider:
    return TelnyxProvider(
        TelnyxSettings(
            api_key=API_KEY,
            connection_id=CONNECTION_ID,
            public_key=public_key,
            skip_signature_verification=skip,
        )
    )


async def test_signed_inbound_webhook_end_to_end() -> None:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    p = await _provider(base64.b64encode(raw).decode())
    try:
        assert (p.name, p.speaks_pending_in_reply, p.signature_headers) == (
            "telnyx",
            False,
            ("telnyx-signature-ed25519",),
        )
        ts = str(int(time.time()))
        sig = base64.b64encode(private.sign(f"{ts}|".encode() + BODY)).decode()
        request = _request({"telnyx-signature-ed25519": sig, "telnyx-timestamp": ts})
        verification = p.verify_webhook(request)
        assert verification.ok, verification.reason
        (event,) = p.parse_webhook(request, verification)
        assert event.type is EventType.INITIATED and event.direction is Direction.INBOUND
        assert event.dedupe_key == verification.replay_key
        reply = p.webhook_reply(request, WebhookOutcome(replay=False))
        assert (reply.status, reply.body) == (200, b"OK")
        assert not p.verify_webhook(
            _request({"telnyx-signature-ed25519": sig, "telnyx-timestamp": ts}, BODY + b" ")
        ).ok
    finally:
        await p.aclose()


async def test_missing_key_fails_and_skip_passes() -> None:
    strict = await _provider(None)
    lax = await _provider(None, skip=True)
    try:
        assert not strict.verify_webhook(_request({})).ok
        result = lax.verify_webhook(_request({}))
        assert result.ok and result.replay_key is not None
        assert lax.verify_webhook(_request({})).replay_key == result.replay_key
    finally:
        await strict.aclose()
        await lax.aclose()
