"""Twilio Media Streams codec: Twilio's message shapes in and out, malformed frames."""

from __future__ import annotations

import base64
import json

import pytest

from providers.twilio.media import (
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    MediaFrameError,
    Start,
    Stop,
    StreamEncoder,
    parse_frame,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA" + "fedcba9876543210" * 2
AUDIO = bytes(range(256))[:160]

# Frames as Twilio documents them (Media Streams "WebSocket messages").
CONNECTED = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
START = json.dumps(
    {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC" + "0" * 32,
            "streamSid": SID,
            "callSid": CALL,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "s3cret-token"},
        },
        "streamSid": SID,
    }
)
MEDIA = json.dumps(
    {
        "event": "media",
        "sequenceNumber": "3",
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "5",
            "payload": base64.b64encode(AUDIO).decode(),
        },
        "streamSid": SID,
    }
)
MARK = json.dumps({"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "tts-1"}})
STOP = json.dumps(
    {
        "event": "stop",
        "sequenceNumber": "5",
        "streamSid": SID,
        "stop": {"accountSid": "AC" + "0" * 32, "callSid": CALL},
    }
)
DTMF = json.dumps(
    {
        "event": "dtmf",
        "streamSid": SID,
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": "1"},
    }
)


def test_parse_each_message() -> None:
    assert parse_frame(CONNECTED) == Connected("Call", "1.0.0")
    start = parse_frame(START)
    assert isinstance(start, Start)
    assert (start.stream_sid, start.call_sid, start.tracks) == (SID, CALL, ("inbound",))
    assert start.custom_parameters == {"token": "s3cret-token"}
    assert start.media_format == MediaFormat("audio/x-mulaw", 8000, 1)
    assert "s3cret-token" not in repr(start)
    assert parse_frame(MEDIA) == Media(SID, AUDIO, "inbound", 5, 1)
    assert parse_frame(MEDIA.encode()) == Media(SID, AUDIO, "inbound", 5, 1)
    assert parse_frame(MARK) == Mark(SID, "tts-1")
    assert parse_frame(STOP) == Stop(SID, CALL)
    assert parse_frame(DTMF) == Dtmf(SID, "1", "inbound_track")


def test_outbound_messages_round_trip() -> None:
    enc = StreamEncoder(SID)
    media = enc.media(AUDIO)
    assert json.loads(media) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": base64.b64encode(AUDIO).decode()},
    }
    assert parse_frame(media) == Media(SID, AUDIO, "inbound", 0, 0)
    assert json.loads(enc.media(b"")) == {"event": "media", "streamSid": SID, "media": {"payload": ""}}
    mark = enc.mark('tts-"quoted"-1')
    assert json.loads(mark) == {"event": "mark", "streamSid": SID, "mark": {"name": 'tts-"quoted"-1'}}
    assert parse_frame(mark) == Mark(SID, 'tts-"quoted"-1')
    assert json.loads(enc.clear()) == {"event": "clear", "streamSid": SID}
    odd = StreamEncoder('MZ"\\odd')
    assert json.loads(odd.media(b"\x00"))["streamSid"] == 'MZ"\\odd'


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "not json",
        "[1, 2]",
        '"media"',
        "{}",
        '{"event": "nope", "streamSid": "MZ1"}',
        '{"event": "media", "streamSid": "MZ1"}',
        '{"event": "media", "streamSid": "MZ1", "media": {"payload": "***"}}',
        '{"event": "media", "streamSid": "MZ1", "media": {"payload": 5}}',
        '{"event": "media", "media": {"payload": ""}}',
        '{"event": "media", "streamSid": "MZ1", "media": {"payload": "", "timestamp": "soon"}}',
        '{"event": "media", "streamSid": "MZ1", "media": {"payload": "", "chunk": true}}',
        '{"event": "start", "streamSid": "MZ1", "start": {"streamSid": "MZ1"}}',
        '{"event": "start", "streamSid": "MZ1"}',
        '{"event": "start", "streamSid": "MZ1", "start": {"callSid": "CA1", "customParameters": {"t": 1}}}',
        '{"event": "start", "streamSid": "MZ1", "start": {"callSid": "CA1", "tracks": "inbound"}}',
        '{"event": "start", "streamSid": "MZ1", "start": {"callSid": "CA1", "mediaFormat": []}}',
        '{"event": "mark", "streamSid": "MZ1"}',
        '{"event": "dtmf", "streamSid": "MZ1", "dtmf": {}}',
        '{"event": "stop"}',
        b"\xff\xfe",
    ],
)
def test_malformed_frames_raise_one_error(frame: str | bytes) -> None:
    with pytest.raises(MediaFrameError):
        parse_frame(frame)
