"""An inbound Twilio call through the real sidecar, end to end over a simulated Media Stream.

Caller audio is real speech (espeak-ng) sent as Twilio media frames -> OpenAI Realtime
transcription fake -> the auto-responder (chat-completions fake) -> OpenAI speech fake -> paced
frames and marks back on the stream. The caller hears the greeting, is answered, interrupts a
long answer (barge-in: ``clear``), says goodbye and the model hangs up; the call record's
transcript holds exactly what both sides said and heard.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from providers.twilio.signature import compute_signature
from tests.e2e.harness import Running, make_config, start
from tests.providers.twilio.fakes import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, fake_twilio
from tests.voice.fakes_chat import FakeChatServer, Scripted
from tests.voice.fakes_openai_realtime import FakeRealtimeConnection, FakeRealtimeServer, eventually
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_server.config import Config
from voicecall_server.voice.playback import _cut_at_word

from .twilio_stream import FakeSpeech, TwilioStreamClient, speech_ulaw, tts_frames

KEY = "sk-test"
PUBLIC_URL = "https://voice.example.com/voice/webhook"
CALLER = "+15557654321"
OUR_NUMBER = "+15550001111"
CALL_SID = "CA" + "a1b2c3d4e5f60718" * 2
GREETING = "Hello from voicecall"
QUESTION = "What are your opening hours?"
ANSWER = "We are open from nine to five every weekday."
BOOKING = "Can I book a table for two tonight?"
LONG_ANSWER = (
    "Certainly, I can book a table for two tonight. We have tables at six, seven and eight, "
    "and the terrace is open if the weather stays fine. Which time would you like?"
)
NEVER_MIND = "Actually never mind, goodbye."
GOODBYE = "Goodbye, have a nice evening!"
# Frames of the long answer the caller hears before interrupting it.
HEARD_BEFORE_BARGE_IN = 40


class Fakes:
    def __init__(self, twilio: FakeTwilio) -> None:
        self.twilio = twilio
        self.realtime = FakeRealtimeServer()
        self.chat = FakeChatServer()
        self.speech = FakeSpeech(KEY)

    async def start(self) -> None:
        await self.realtime.start()
        await self.chat.start()
        await self.speech.start()

    async def close(self) -> None:
        await self.speech.close()
        await self.chat.close()
        await self.realtime.close()


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with fake_twilio() as twilio:
        f = Fakes(twilio)
        await f.start()
        try:
            yield f
        finally:
            await f.close()


def sidecar_config(tmp_path: Path, fakes: Fakes, tts: dict[str, Any]) -> Config:
    return make_config(
        tmp_path / "s",
        provider="twilio",
        fromNumber=OUR_NUMBER,
        twilio={"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "baseUrl": fakes.twilio.base_url},
        publicUrl=PUBLIC_URL,
        streaming={"enabled": True, "openaiApiKey": KEY, "openaiBaseUrl": fakes.realtime.base_url},
        tts=tts,
        openai={"apiKey": KEY, "baseUrl": fakes.chat.base_url},
        inboundPolicy="allowlist",
        allowFrom=[CALLER],
        inboundGreeting=GREETING,
    )


@pytest.fixture
async def sidecar(tmp_path: Path, fakes: Fakes) -> AsyncIterator[Running]:
    tts = {"provider": "openai", "openai": {"apiKey": KEY, "baseUrl": fakes.speech.url}}
    running = await start(sidecar_config(tmp_path, fakes, tts))
    try:
        yield running
    finally:
        await running.close()


async def call_when(running: Running, call_id: str, predicate: Callable[[pb.Call], bool]) -> pb.Call:
    async with asyncio.timeout(20):
        while True:
            call = (await running.stub.Status(pb.StatusRequest(call_id=call_id))).call
            if predicate(call):
                return call
            await asyncio.sleep(0.01)


def said(call: pb.Call) -> list[tuple[str, str]]:
    return [(pb.Speaker.Name(t.speaker), t.text) for t in call.transcript]


async def inbound_webhook(http: aiohttp.ClientSession, running: Running) -> ET.Element:
    """Twilio's first request for an inbound call, signed over the public URL."""
    form = [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", CALL_SID),
        ("CallStatus", "ringing"),
        ("Called", OUR_NUMBER),
        ("Caller", CALLER),
        ("Direction", "inbound"),
        ("From", CALLER),
        ("To", OUR_NUMBER),
    ]
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": compute_signature(AUTH_TOKEN, PUBLIC_URL, form),
    }
    async with http.post(running.webhook_url, data=urlencode(form), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type in ("text/xml", "application/xml")
        return ET.fromstring(await resp.read())  # noqa: S314 - our own server's TwiML


async def caller_says(
    client: TwilioStreamClient,
    stt: FakeRealtimeConnection,
    audio: bytes,
    item: str,
    transcript: str,
    *,
    stopped: bool = True,
) -> None:
    """The caller speaks: audio on the stream; once the STT service has it all, VAD and transcript.

    ``stopped=False`` leaves out VAD's speech_stopped: latency then counts from the final transcript.
    """
    before = len(stt.audio)
    await client.send_audio(audio)
    await eventually(lambda: len(stt.audio) >= before + len(audio))
    assert audio in bytes(stt.audio[before:]), "the caller's audio reached STT unchanged"
    await stt.speech_started(item, audio_start_ms=before // 8)
    await stt.delta(item, transcript.split()[0])
    if stopped:
        await stt.speech_stopped(item, audio_end_ms=(before + len(audio)) // 8)
    await stt.completed(item, transcript)


STAGES = ["stt_final", "model", "tts_first_byte", "first_audio", "spoken"]


def stage_ms(turn: pb.TurnLatency) -> dict[str, int]:
    return {name: d.ToMilliseconds() for name, d in turn.stages.items()}


def assert_turn_stages(turn: pb.TurnLatency) -> None:
    """Every stage of a streamed auto-responded turn, in pipeline order; total is the first frame."""
    stages = stage_ms(turn)
    assert sorted(stages) == sorted(STAGES), stages
    ordered = [stages[name] for name in STAGES]
    assert ordered == sorted(ordered), stages
    assert turn.total.ToMilliseconds() == stages["first_audio"] > 0


async def test_inbound_conversation_with_greeting_answer_barge_in_and_hang_up(
    sidecar: Running, fakes: Fakes, tmp_path: Path
) -> None:
    fakes.chat.then(Scripted(ANSWER), Scripted(LONG_ANSWER), Scripted(f"{GOODBYE} [END_CALL]"))
    question = speech_ulaw(QUESTION, tmp_path)
    booking = speech_ulaw(BOOKING, tmp_path)
    never_mind = speech_ulaw(NEVER_MIND, tmp_path)

    async with aiohttp.ClientSession() as http:
        # 1. The inbound call is accepted and told to open a stream carrying the one-time token.
        twiml = await inbound_webhook(http, sidecar)
        assert twiml.tag == "Response"
        assert [el.tag for el in twiml] == ["Connect"], "the greeting is spoken on the stream, not <Say>"
        (stream,) = list(twiml[0])
        assert stream.tag == "Stream"
        assert stream.get("url") == "wss://voice.example.com/voice/stream"
        params = {p.get("name"): p.get("value") for p in stream if p.tag == "Parameter"}
        token = params["token"]
        assert token
        call_id = sidecar.sidecar.manager.find(CALL_SID).call_id  # type: ignore[union-attr]

        # 2. Twilio connects the stream (to the sidecar's port, as a tunnel would forward it).
        url = f"ws://127.0.0.1:{sidecar.sidecar.ports.http}/voice/stream"
        client = TwilioStreamClient(http, url, CALL_SID, token)
        await client.connect()
        try:
            await run_conversation(sidecar, fakes, client, call_id, question, booking, never_mind)
        finally:
            await client.close()


async def run_conversation(
    sidecar: Running,
    fakes: Fakes,
    client: TwilioStreamClient,
    call_id: str,
    question: bytes,
    booking: bytes,
    never_mind: bytes,
) -> None:
    await eventually(lambda: bool(fakes.realtime.connections))
    stt = fakes.realtime.connections[0]
    await eventually(lambda: bool(stt.session_updates))
    session: dict[str, Any] = stt.session_updates[0]["session"]
    assert session["type"] == "transcription"
    assert stt.authorization == f"Bearer {KEY}"

    # 3. The greeting is heard first: its frames, then a mark; echoing the mark completes it.
    await client.wait_for(lambda: client.index_of("mark") is not None)
    greeting_mark = client.index_of("mark")
    assert greeting_mark is not None
    assert set(client.kinds()[:greeting_mark]) == {"media"}
    assert len(client.frames(0, greeting_mark)) == tts_frames(GREETING)
    assert all(len(f) == 160 for f in client.frames(0, greeting_mark))
    assert fakes.speech.inputs == [GREETING]
    call = await call_when(sidecar, call_id, lambda c: len(c.transcript) == 1)
    assert said(call) == [("SPEAKER_BOT", GREETING)]
    assert call.direction == pb.CALL_DIRECTION_INBOUND and call.from_number == CALLER

    # 4. The caller asks; the model's answer is spoken on the stream.
    mark_count = len(client.received)
    await caller_says(client, stt, question, "item_1", QUESTION)
    await client.wait_for(lambda: client.index_of("mark", mark_count) is not None)
    answer_mark = client.index_of("mark", mark_count)
    assert answer_mark is not None
    assert "clear" not in client.kinds(mark_count), "nothing was playing: no barge-in"
    assert len(client.frames(mark_count, answer_mark)) == tts_frames(ANSWER)
    assert fakes.speech.inputs == [GREETING, ANSWER]
    request = fakes.chat.requests[0]
    assert request["model"] == "gpt-4o-mini"
    assert fakes.chat.authorizations[0] == f"Bearer {KEY}"
    assert request["messages"][0]["role"] == "system" and CALLER in request["messages"][0]["content"]
    assert request["messages"][1:] == [
        {"role": "assistant", "content": GREETING},
        {"role": "user", "content": QUESTION},
    ]
    call = await call_when(sidecar, call_id, lambda c: len(c.transcript) == 3)
    assert said(call)[1:] == [("SPEAKER_CALLER", QUESTION), ("SPEAKER_BOT", ANSWER)]

    # 5. A long answer starts; the caller talks over it: speech start -> `clear` on the stream.
    start = len(client.received)
    await caller_says(client, stt, booking, "item_2", BOOKING, stopped=False)
    await client.wait_for(lambda: len(client.frames(start)) >= HEARD_BEFORE_BARGE_IN)
    await client.send_audio(never_mind)
    await eventually(lambda: never_mind in bytes(stt.audio))
    await stt.speech_started("item_3", audio_start_ms=len(stt.audio) // 8)
    await client.wait_for(lambda: client.index_of("clear", start) is not None)
    clear_at = client.index_of("clear", start)
    assert clear_at is not None
    heard_frames = len(client.frames(start, clear_at))
    assert "mark" not in client.kinds(start), "the interrupted answer never reached its mark"
    total_frames = tts_frames(LONG_ANSWER)
    assert HEARD_BEFORE_BARGE_IN <= heard_frames < total_frames
    # The transcript keeps only what was played: the answer cut where the caller stopped hearing it.
    call = await call_when(sidecar, call_id, lambda c: len(c.transcript) == 5)
    speaker, partial = said(call)[4]
    assert speaker == "SPEAKER_BOT"
    assert partial and partial != LONG_ANSWER and LONG_ANSWER.startswith(partial)
    # Frames queued for the socket when the clear came were dropped unsent, so the server may
    # count a few more frames than the client received; never fewer.
    possible = {
        _cut_at_word(LONG_ANSWER, round(len(LONG_ANSWER) * sent / total_frames))
        for sent in range(heard_frames, heard_frames + 6)
    }
    assert partial in possible, (partial, heard_frames)

    # 6. The caller says goodbye; the model says goodbye too and hangs up.
    await stt.speech_stopped("item_3", audio_end_ms=len(stt.audio) // 8)
    await stt.completed("item_3", NEVER_MIND)
    call = await call_when(sidecar, call_id, lambda c: c.state == pb.CALL_STATE_HANGUP_BOT)
    assert call.end_reason == pb.END_REASON_HANGUP_BOT
    assert fakes.speech.inputs == [GREETING, ANSWER, LONG_ANSWER, GOODBYE]
    assert fakes.chat.requests[2]["messages"][-2:] == [
        {"role": "assistant", "content": partial},
        {"role": "user", "content": NEVER_MIND},
    ]
    hangups = [r for r in fakes.twilio.requests if ("Status", "completed") in r.form]
    assert [r.path for r in hangups] == [f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json"]

    # 7. Exactly what both sides said and heard.
    assert said(call) == [
        ("SPEAKER_BOT", GREETING),
        ("SPEAKER_CALLER", QUESTION),
        ("SPEAKER_BOT", ANSWER),
        ("SPEAKER_CALLER", BOOKING),
        ("SPEAKER_BOT", partial),
        ("SPEAKER_CALLER", NEVER_MIND),
        ("SPEAKER_BOT", GOODBYE),
    ]
    # 8. Each answer's latency, from the end of the caller's speech to its first frame, by stage.
    assert [t.turn for t in call.turn_latencies] == [1, 2, 3]
    for turn in call.turn_latencies:
        assert_turn_stages(turn)
    # The booking came without VAD's speech_stopped: it counts from its final transcript.
    assert stage_ms(call.turn_latencies[1])["stt_final"] == 0
    await client.stop()


async def test_edge_tts_is_never_used_for_calls_the_provider_speaks_instead(
    tmp_path: Path, fakes: Fakes
) -> None:
    config = sidecar_config(tmp_path, fakes, {"provider": "edge", "openai": {"baseUrl": fakes.speech.url}})
    assert "edge TTS cannot produce telephony audio; calls use the provider's own voice" in config.warnings
    running = await start(config)
    try:
        async with aiohttp.ClientSession() as http:
            twiml = await inbound_webhook(http, running)
            (stream,) = list(twiml[0])
            token = {p.get("name"): p.get("value") for p in stream}["token"]
            assert token
            call_id = running.sidecar.manager.find(CALL_SID).call_id  # type: ignore[union-attr]
            url = f"ws://127.0.0.1:{running.sidecar.ports.http}/voice/stream"
            client = TwilioStreamClient(http, url, CALL_SID, token)
            await client.connect()
            try:
                call = await call_when(running, call_id, lambda c: len(c.transcript) == 1)
                assert said(call) == [("SPEAKER_BOT", GREETING)]
                # Twilio's own voice speaks it, and the live update hands the stream back.
                (update,) = [dict(r.form)["Twiml"] for r in fakes.twilio.requests if "Twiml" in dict(r.form)]
                root = ET.fromstring(update)  # noqa: S314 - our own server's TwiML
                assert [el.tag for el in root] == ["Say", "Connect"]
                assert root[0].text == GREETING
                assert root[1][0].get("url") == "wss://voice.example.com/voice/stream"
                assert fakes.speech.inputs == []
                assert "media" not in client.kinds()
                await client.stop()
            finally:
                await client.close()
    finally:
        await running.close()
