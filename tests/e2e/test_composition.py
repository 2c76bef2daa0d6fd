"""The sidecar composes and serves with every provider (credentials from config, no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.plivo import PlivoProvider
from providers.telnyx import TelnyxProvider
from providers.twilio import TwilioProvider
from voicecall_client.v1 import voicecall_service_pb2 as pb

from .harness import make_config, start

PROVIDERS: dict[str, tuple[dict[str, Any], type]] = {
    "twilio": ({"twilio": {"accountSid": "AC" + "1" * 32, "authToken": "tok"}}, TwilioProvider),
    "plivo": ({"plivo": {"authId": "MA" + "A" * 18, "authToken": "tok"}}, PlivoProvider),
    "telnyx": (
        {"telnyx": {"apiKey": "KEY", "connectionId": "conn", "skipSignatureVerification": None}},
        TelnyxProvider,
    ),
}


@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_sidecar_serves_with_each_provider(tmp_path: Path, name: str) -> None:
    extra, provider_type = PROVIDERS[name]
    extra = {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in extra.items()}
    if name == "telnyx":
        # A throwaway Ed25519 public key (raw 32 bytes, base64): Telnyx webhooks must be verifiable.
        extra["telnyx"]["publicKey"] = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    config = make_config(
        tmp_path / "s",
        provider=name,
        fromNumber="+15550001111",
        publicUrl="https://voice.example.com/voice/webhook",
        streaming={"enabled": True, "openaiApiKey": "sk-test"},
        **extra,
    )
    running = await start(config)
    try:
        sidecar = running.sidecar
        assert isinstance(sidecar.provider, provider_type)
        assert sidecar.media is not None
        assert sidecar.media.codec.provider == name
        assert sidecar.manager.settings.stream_url == "wss://voice.example.com/voice/stream"
        listed = await running.stub.ListCalls(pb.ListCallsRequest())
        assert list(listed.calls) == []
    finally:
        await running.close()
