"""Plivo audio-stream messages, in the shapes of Plivo's Stream Event Protocol documentation."""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.plivo.media import (
    Cleared,
    Dtmf,
    Media,
    MediaFrameError,
    Played,
    Start,
    Stop,
    StreamEncoder,
    decode_token,
    parse_extra_headers,
    parse_frame,
    stream_extra_headers,
)
from providers.plivo.xmldoc import stream_xml

STREAM = "87654321-4321-4321-4321-cba987654321"
CALL = "12345678-1234-1234-1234-123456789abc"


def start_message(extra_headers: object = "userId=12345;sessionId=abcxyz") -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": 1,
            "start": {
                "callId": CALL,
                "streamId": STREAM,
                "accountId": "MAXXXXXXXXXXXXXXXXXX",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
            "extra_headers": extra_headers,
        }
    )


def test_start() -> None:
    frame = parse_frame(start_message())
    assert isinstance(frame, Start)
    assert (frame.stream_id, frame.call_id, frame.account_id) == (STREAM, CALL, "MAXXXXXXXXXXXXXXXXXX")
    assert frame.tracks == ("inbound",)
    assert (frame.encoding, frame.sample_rate) == ("audio/x-mulaw", 8000)
    assert frame.extra_headers == {"userid": "12345", "sessionid": "abcxyz"}
    assert frame.token == ""


def test_the_token_goes_from_the_stream_xml_to_the_start_message() -> None:
    token = "Zk9-_x0aQ1"
    attr = re.search(r'extraHeaders="([^"]*)"', stream_xml("wss://h/s", token))
    assert attr is not None
    assert attr.group(1) == stream_extra_headers(token)
    assert re.fullmatch(r"[A-Za-z0-9]+=[A-Za-z0-9]+", attr.group(1))  # Plivo's allowed characters
    for echoed in (attr.group(1), f"a=1;{attr.group(1)}", f"X-PH-{attr.group(1)},b=2"):
        frame = parse_frame(start_message(echoed))
        assert isinstance(frame, Start)
        assert frame.token == token
        assert token not in repr(frame)
    assert parse_frame(start_message({"vctoken": stream_extra_headers(token).split("=")[1]})).token == token  # type: ignore[union-attr]


def test_a_malformed_token_is_empty() -> None:
    assert decode_token("zz") == ""
    assert decode_token("ff") == ""  # not UTF-8
    assert parse_extra_headers(17) == {}


def test_media() -> None:
    audio = bytes(range(160))
    msg = {
        "event": "media",
        "sequenceNumber": 42,
        "streamId": STREAM,
        "media": {
            "track": "inbound",
            "timestamp": "1705312200000",
            "chunk": 41,
            "payload": base64.b64encode(audio).decode(),
        },
        "extra_headers": "vctoken=00",
    }
    frame = parse_frame(json.dumps(msg))
    assert frame == Media(STREAM, audio, "inbound", 1705312200000, 41)
    assert parse_frame(json.dumps(msg).encode()) == frame


def test_dtmf_played_cleared_and_stop() -> None:
    dtmf = {"event": "dtmf", "sequenceNumber": 7, "streamId": STREAM,
            "dtmf": {"track": "inbound", "digit": "5", "timestamp": "1705312200000"}}  # fmt: skip
    assert parse_frame(json.dumps(dtmf)) == Dtmf(STREAM, "5", "inbound")
    played = {"event": "playedStream", "sequenceNumber": 9, "streamId": STREAM, "name": "utterance-3"}
    assert parse_frame(json.dumps(played)) == Played(STREAM, "utterance-3")
    cleared = {"event": "clearedAudio", "sequenceNumber": 10, "streamId": STREAM}
    assert parse_frame(json.dumps(cleared)) == Cleared(STREAM)
    assert parse_frame(json.dumps({"event": "stop", "streamId": STREAM})) == Stop(STREAM)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"event": "wat", "streamId": "s"}',
        '{"event": "media", "streamId": "s"}',
        '{"event": "media", "streamId": "s", "media": {"payload": "@@@"}}',
        '{"event": "media", "streamId": "s", "media": {"payload": 5}}',
        '{"event": "media", "media": {"payload": ""}}',
        '{"event": "media", "streamId": "s", "media": {"payload": "", "timestamp": "soon"}}',
        '{"event": "media", "streamId": "s", "media": {"payload": "", "chunk": true}}',
        '{"event": "start", "start": {"streamId": "s"}}',
        '{"event": "start", "start": {"callId": "c", "streamId": "s", "tracks": "inbound"}}',
        '{"event": "start", "start": {"callId": "c", "streamId": "s", "mediaFormat": []}}',
        '{"event": "dtmf", "streamId": "s", "dtmf": {"digit": ""}}',
        '{"event": "clearedAudio"}',
        b"\xff\xfe",
    ],
)
def test_malformed_frames_raise_one_error(text: str | bytes) -> None:
    with pytest.raises(MediaFrameError):
        parse_frame(text)


def test_outbound_messages_are_plivos_shapes() -> None:
    enc = StreamEncoder(STREAM)
    audio = b"\xff" * 160
    assert json.loads(enc.media(audio)) == {
        "event": "playAudio",
        "media": {
            "contentType": "audio/x-mulaw",
            "sampleRate": 8000,
            "payload": base64.b64encode(audio).decode(),
        },
    }
    assert json.loads(enc.mark("utterance-1")) == {
        "event": "checkpoint",
        "streamId": STREAM,
        "name": "utterance-1",
    }
    assert json.loads(enc.clear()) == {"event": "clearAudio", "streamId": STREAM}


@given(st.binary(max_size=400), st.text(max_size=20), st.text(max_size=20))
def test_outbound_round_trip(audio: bytes, stream_id: str, name: str) -> None:
    enc = StreamEncoder(stream_id)
    media = json.loads(enc.media(audio))
    assert base64.b64decode(media["media"]["payload"]) == audio
    checkpoint = json.loads(enc.mark(name))
    assert (checkpoint["streamId"], checkpoint["name"]) == (stream_id, name)
    # What Plivo sends back for that checkpoint parses to the same name.
    if stream_id:
        echo = {"event": "playedStream", "sequenceNumber": 3, "streamId": stream_id, "name": name}
        assert parse_frame(json.dumps(echo)) == Played(stream_id, name)
    assert json.loads(enc.clear())["streamId"] == stream_id


@given(st.binary(max_size=400), st.integers(min_value=0, max_value=2**40))
def test_inbound_media_round_trip(audio: bytes, chunk: int) -> None:
    msg = {"event": "media", "sequenceNumber": chunk + 1, "streamId": STREAM,
           "media": {"track": "inbound", "timestamp": str(chunk * 20), "chunk": chunk,
                     "payload": base64.b64encode(audio).decode()}}  # fmt: skip
    assert parse_frame(json.dumps(msg)) == Media(STREAM, audio, "inbound", chunk * 20, chunk)
