"""An outbound Telnyx conversation call with streaming on is greeted on a media stream, as on Twilio."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import aiohttp

from voicecall_client.v1 import voicecall_service_pb2 as pb

from ..e2e.harness import start
from .conftest import self_public_config
from .fakes_streams import TelnyxStream
from .fakes_telnyx import telnyx_carrier
from .test_streams import GREETING_FRAMES, Voice, streaming, voice
from .test_telnyx import TO, telnyx_overrides

__all__ = ["voice"]


async def test_outbound_conversation_streams_and_greets(tmp_path: Path, voice: Voice) -> None:
    async with AsyncExitStack() as stack:
        carrier = await stack.enter_async_context(telnyx_carrier())
        cfg, public = self_public_config(tmp_path / "s", **telnyx_overrides(carrier, **streaming(voice)))
        running = await start(cfg)
        stack.push_async_callback(running.close)
        carrier.voice_url = public
        call = (
            await running.stub.Initiate(
                pb.InitiateRequest(to_number=TO, message="Hi, build bot here", mode=pb.CALL_MODE_CONVERSATION)
            )
        ).call
        ccid = call.provider_call_id
        await carrier.ring(ccid)
        await carrier.answer(ccid)
        # Telnyx must be told where to stream, with the call's token (on dial or by streaming_start).
        (dial,) = [r.body for r in carrier.requests if r.path == "/v2/calls"]
        started = dial if "stream_url" in dial else await carrier.wait_commands(ccid, "streaming_start", 1)
        url = started["stream_url"]
        rec = running.sidecar.manager.get(call.call_id)
        assert dict(parse_qsl(urlsplit(url).query)) == {"token": rec.stream_token}
        assert started["stream_bidirectional_mode"] == "rtp"
        async with aiohttp.ClientSession() as http:
            client = TelnyxStream(http, url, ccid)
            await client.connect()
            try:
                await client.wait_for(lambda: client.index("mark") == GREETING_FRAMES)
            finally:
                await client.close()
