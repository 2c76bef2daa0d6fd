"""The media socket's own WebSocket framing (RFC 6455), checked against frames built by the
``websockets`` library's independent implementation, fed in every possible split."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from voicecall_server.media import wsframes


def client_bytes(opcode: Opcode, data: bytes, *, fin: bool = True) -> bytes:
    """A masked client frame, as websockets serialises it."""
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


def raw(first_byte: int, data: bytes) -> bytes:
    """A masked frame built by hand, for what websockets refuses to serialise (invalid frames)."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert len(data) < 65536
    length = (
        bytes([0x80 | len(data)]) if len(data) < 126 else bytes([0x80 | 126]) + len(data).to_bytes(2, "big")
    )
    return bytes([first_byte]) + length + mask + masked


class Recorder:
    def __init__(self, max_message: int = 64 * 1024) -> None:
        self.messages: list[tuple[int, str | bytes]] = []
        self.pings: list[bytes] = []
        self.closes: list[tuple[int | None, str]] = []
        self.parser = wsframes.FrameParser(
            max_message=max_message,
            on_message=lambda op, data: self.messages.append((op, data)),
            on_ping=self.pings.append,
            on_close=lambda code, reason: self.closes.append((code, reason)),
        )


TWILIO_MEDIA = (
    '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1",'
    f'"timestamp":"5","payload":"{base64.b64encode(bytes(range(160))).decode()}"}},'
    '"streamSid":"MZ00000000000000000000000000000001"}'
)


def test_messages_arrive_whole_in_any_split() -> None:
    stream = (
        client_bytes(Opcode.TEXT, TWILIO_MEDIA.encode())
        + client_bytes(Opcode.PING, b"hb")
        + client_bytes(Opcode.TEXT, "ünïcode".encode())
        + client_bytes(Opcode.BINARY, os.urandom(300))
        + client_bytes(Opcode.TEXT, b"x" * 70_000)  # a 64-bit length
    )
    whole = Recorder(max_message=100_000)
    whole.parser.feed(stream)
    assert [op for op, _ in whole.messages] == [1, 1, 2, 1]
    assert whole.messages[0][1] == TWILIO_MEDIA and whole.messages[1][1] == "ünïcode"
    assert whole.pings == [b"hb"]
    for step in (1, 2, 3, 7, 126, 1000):
        split = Recorder(max_message=100_000)
        for i in range(0, len(stream), step):
            split.parser.feed(stream[i : i + step])
        assert split.messages == whole.messages and split.pings == whole.pings


def test_a_fragmented_message_is_reassembled_around_a_control_frame() -> None:
    rec = Recorder()
    rec.parser.feed(
        client_bytes(Opcode.TEXT, b'{"event":', fin=False)
        + client_bytes(Opcode.PING, b"")
        + client_bytes(Opcode.CONT, b'"stop"', fin=False)
        + client_bytes(Opcode.CONT, b"}")
    )
    assert rec.messages == [(1, '{"event":"stop"}')]
    assert rec.pings == [b""]


def test_the_close_frame_reports_its_code_and_ends_parsing() -> None:
    rec = Recorder()
    close = Frame(Opcode.CLOSE, (1000).to_bytes(2, "big") + b"bye").serialize(mask=True, extensions=[])
    rec.parser.feed(close + client_bytes(Opcode.TEXT, b"after"))
    assert rec.closes == [(1000, "bye")]
    assert rec.messages == []  # nothing after a close frame is data
    empty = Recorder()
    empty.parser.feed(client_bytes(Opcode.CLOSE, b""))
    assert empty.closes == [(None, "")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (Frame(Opcode.TEXT, b"hi").serialize(mask=False, extensions=[]), 1002),  # unmasked
        (bytes([0x81 | 0x40, 0x80]) + b"\x00" * 4, 1002),  # RSV1 without an extension
        (bytes([0x83, 0x80]) + b"\x00" * 4, 1002),  # reserved opcode 3
        (client_bytes(Opcode.CONT, b"x"), 1002),  # continuation with nothing to continue
        (raw(0x89, b"x" * 126), 1002),  # control frame over 125 bytes
        (raw(0x09, b"x"), 1002),  # fragmented control frame
        (client_bytes(Opcode.TEXT, b"a", fin=False) + client_bytes(Opcode.TEXT, b"b"), 1002),
        (client_bytes(Opcode.TEXT, b"\xff\xfe"), 1007),  # text that is not UTF-8
        (client_bytes(Opcode.TEXT, b"x" * 2000), 1009),  # over max_message in one frame
        (client_bytes(Opcode.TEXT, b"x" * 800, fin=False) + client_bytes(Opcode.CONT, b"x" * 800), 1009),
        (raw(0x88, b"\x03"), 1002),  # a one-byte close body
    ],
)
def test_violations_raise_the_close_code_to_send_and_stop_the_parser(data: bytes, code: int) -> None:
    rec = Recorder(max_message=1024)
    with pytest.raises(wsframes.ProtocolError) as info:
        rec.parser.feed(data)
    assert info.value.code == code
    rec.parser.feed(client_bytes(Opcode.TEXT, b"later"))
    assert rec.messages == []


def test_server_frames_parse_back_with_websockets() -> None:
    for payload in (b"", b"x" * 125, b"y" * 126, b"z" * 65_536):
        reader = StreamReader()
        reader.feed_data(wsframes.frame(wsframes.OP_TEXT, payload))
        parsed = reader_frame(reader)
        assert (parsed.opcode, parsed.data, parsed.fin) == (Opcode.TEXT, payload, True)
    reader = StreamReader()
    reader.feed_data(wsframes.close_frame(1013, "Back-pressure"))
    closing = reader_frame(reader)
    assert closing.opcode is Opcode.CLOSE and closing.data == (1013).to_bytes(2, "big") + b"Back-pressure"


def reader_frame(reader: StreamReader) -> Frame:
    gen = Frame.parse(reader.read_exact, mask=False)
    try:
        next(gen)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


def test_the_handshake_answers_rfc_6455s_example_and_refuses_what_is_not_an_upgrade() -> None:
    # RFC 6455 1.3's example key and accept value.
    headers = {
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    assert wsframes.accept_key(headers) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    key = headers["Sec-WebSocket-Key"]
    assert (
        wsframes.accept_key(headers)
        == base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()  # noqa: S324
        ).decode()
    )
    for broken in (
        {"Upgrade": "h2c"},
        {"Connection": "keep-alive"},
        {"Sec-WebSocket-Version": "8"},
        {"Sec-WebSocket-Key": "short"},
    ):
        with pytest.raises(wsframes.HandshakeError):
            wsframes.accept_key({**headers, **broken})
