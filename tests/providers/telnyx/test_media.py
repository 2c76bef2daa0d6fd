"""Telnyx media-streaming frames: parsing of Telnyx-shaped frames and the outbound envelopes."""

from __future__ import annotations

import base64
import json

import pytest

from providers.telnyx.media import (
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    MediaFrameError,
    Start,
    Stop,
    StreamEncoder,
    StreamError,
    parse_frame,
)

SID = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
CCID = "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"


def _f(obj: object) -> str:
    return json.dumps(obj)


def test_connected_and_start() -> None:
    assert parse_frame(_f({"event": "connected", "version": "1.0.0"})) == Connected("1.0.0")
    start = parse_frame(
        _f(
            {
                "event": "start",
                "sequence_number": "1",
                "stream_id": SID,
                "start": {
                    "user_id": "u",
                    "call_control_id": CCID,
                    "client_state": "Y2FsbC0x",
                    "from": "+13122010094",
                    "to": "+13122123456",
                    "custom_parameters": {"token": "secret-token"},
                    "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
                },
            }
        )
    )
    assert isinstance(start, Start)
    assert (start.stream_id, start.call_control_id, start.client_state) == (SID, CCID, "Y2FsbC0x")
    assert (start.from_number, start.to_number) == ("+13122010094", "+13122123456")
    assert start.media_format == MediaFormat("PCMU", 8000, 1)
    assert start.custom_parameters == {"token": "secret-token"}
    assert "secret-token" not in repr(start)
    minimal = parse_frame(_f({"event": "start", "stream_id": SID, "start": {"call_control_id": CCID}}))
    assert isinstance(minimal, Start) and minimal.media_format == MediaFormat()


def test_media_dtmf_mark_stop_error() -> None:
    audio = bytes(range(160))
    frame = {
        "event": "media",
        "sequence_number": "4",
        "stream_id": SID,
        "media": {
            "track": "inbound",
            "chunk": "2",
            "timestamp": "40",
            "payload": base64.b64encode(audio).decode(),
        },
    }
    assert parse_frame(_f(frame)) == Media(SID, audio, "inbound", 40, 2)
    assert parse_frame(_f(frame).encode()) == Media(SID, audio, "inbound", 40, 2)
    assert parse_frame(_f({"event": "dtmf", "stream_id": SID, "dtmf": {"digit": "5"}})) == Dtmf(SID, "5")
    assert parse_frame(_f({"event": "mark", "stream_id": SID, "mark": {"name": "m1"}})) == Mark(SID, "m1")
    stop = {"event": "stop", "stream_id": SID, "stop": {"user_id": "u", "call_control_id": CCID}}
    assert parse_frame(_f(stop)) == Stop(SID, CCID)
    err = {"event": "error", "stream_id": SID, "payload": {"code": 100002, "title": "Unknown error"}}
    assert parse_frame(_f(err)) == StreamError(SID, "100002", "Unknown error")


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        b"\xff",
        "[]",
        _f({"event": "nope"}),
        _f({"event": "media", "stream_id": SID}),
        _f({"event": "media", "stream_id": SID, "media": {"payload": "!!"}}),
        _f({"event": "media", "stream_id": SID, "media": {"payload": 3}}),
        _f({"event": "media", "stream_id": SID, "media": {"payload": "", "chunk": "x"}}),
        _f({"event": "start", "start": {"call_control_id": CCID}}),
        _f({"event": "start", "stream_id": SID, "start": {}}),
        _f({"event": "start", "stream_id": SID, "start": {"call_control_id": CCID, "media_format": []}}),
        _f(
            {
                "event": "start",
                "stream_id": SID,
                "start": {"call_control_id": CCID, "custom_parameters": {"a": 1}},
            }
        ),
        _f({"event": "dtmf", "stream_id": SID, "dtmf": {}}),
        _f({"event": "mark", "stream_id": SID}),
    ],
)
def test_malformed_frames_raise_one_error(data: str | bytes) -> None:
    with pytest.raises(MediaFrameError):
        parse_frame(data)


def test_encoder_envelopes() -> None:
    enc = StreamEncoder(SID)
    audio = b"\x7f" * 160
    assert json.loads(enc.media(audio)) == {
        "event": "media",
        "media": {"payload": base64.b64encode(audio).decode()},
    }
    assert json.loads(enc.mark('a "quoted" name')) == {"event": "mark", "mark": {"name": 'a "quoted" name'}}
    assert json.loads(enc.clear()) == {"event": "clear"}
    assert enc.stream_id == SID
