"""WebSocket frames (RFC 6455) for the media-stream socket, read straight off the connection.

A provider sends each call's audio as 50 small text messages a second, one TCP segment each. A
general-purpose WebSocket server hands every message to its handler through a queue, a future and
a task wake-up; here ``FrameParser.feed`` runs inside the protocol's ``data_received`` and calls
back synchronously with each complete message. Only what a media stream needs is supported: no
extensions (the handshake negotiates none), masked client frames, fragmentation, ping/pong and
the closing handshake.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
# RFC 6455 7.4: codes an endpoint may put in a close frame (1005, 1006 and 1015 never go on the wire).
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(ValueError):
    """The request is not a WebSocket upgrade this server accepts (answer 400 with the message)."""


class ProtocolError(Exception):
    """The peer broke the framing rules; close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(headers: Mapping[str, str]) -> str:
    """The Sec-WebSocket-Accept for an upgrade request, after checking it is one (RFC 6455 4.2.1)."""
    if headers.get("Upgrade", "").strip().lower() != "websocket":
        raise HandshakeError("expected 'Upgrade: websocket'")
    if "upgrade" not in {t.strip().lower() for t in headers.get("Connection", "").split(",")}:
        raise HandshakeError("expected 'Connection: Upgrade'")
    if headers.get("Sec-WebSocket-Version", "").strip() != "13":
        raise HandshakeError("unsupported Sec-WebSocket-Version (13 is required)")
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid = False
    if not valid:
        raise HandshakeError("Sec-WebSocket-Key must be 16 bytes in base64")
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324 - RFC 6455


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame, as a server sends it."""
    n = len(payload)
    head = 0x80 | opcode
    if n < 126:
        return bytes((head, n)) + payload
    if n < 65536:
        return bytes((head, 126)) + n.to_bytes(2, "big") + payload
    return bytes((head, 127)) + n.to_bytes(8, "big") + payload


def close_frame(code: int, reason: str = "") -> bytes:
    if code not in _SENDABLE:
        code = CLOSE_NORMAL
    return frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    key = (mask * ((n + 3) // 4))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class FrameParser:
    """Client frames in, whole messages out. ``feed`` raises ProtocolError on a framing violation;
    after that, or after a close frame, it ignores everything."""

    __slots__ = (
        "_buf",
        "_fragment_op",
        "_fragment_size",
        "_fragments",
        "done",
        "max_message",
        "on_close",
        "on_message",
        "on_ping",
    )

    def __init__(
        self,
        *,
        max_message: int,
        on_message: Callable[[int, str | bytes], None],
        on_ping: Callable[[bytes], None],
        on_close: Callable[[int | None, str], None],
    ) -> None:
        self.max_message = max_message
        self.on_message = on_message  # (OP_TEXT, str) or (OP_BINARY, bytes)
        self.on_ping = on_ping
        self.on_close = on_close  # (code or None when the frame had none, reason)
        self.done = False
        self._buf = b""
        self._fragments: list[bytes] = []
        self._fragment_op = 0
        self._fragment_size = 0

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        buf = self._buf + data if self._buf else data
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 2 and not self.done:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                n = b1 & 0x7F
                head = 2
                if n == 126:
                    head = 4
                    if end - pos < head:
                        break
                    n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                elif n == 127:
                    head = 10
                    if end - pos < head:
                        break
                    n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                self._check(b0, b1, n)
                total = head + 4 + n
                if end - pos < total:
                    break
                mask = buf[pos + head : pos + head + 4]
                payload = _unmask(buf[pos + head + 4 : pos + total], mask)
                pos += total
                self._frame(b0 & 0x80, b0 & 0x0F, payload)
        except ProtocolError:
            self.done = True
            self._buf = b""
            raise
        self._buf = buf[pos:] if pos < end and not self.done else b""

    def _check(self, b0: int, b1: int, n: int) -> None:
        if b0 & 0x70:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
        if not b1 & 0x80:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        opcode = b0 & 0x0F
        if opcode >= OP_CLOSE:
            if not b0 & 0x80 or n > 125:
                raise ProtocolError(
                    CLOSE_PROTOCOL_ERROR, "control frames must be final and at most 125 bytes"
                )
        elif n + self._fragment_size > self.max_message:
            raise ProtocolError(CLOSE_TOO_BIG, f"message larger than {self.max_message} bytes")

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            if self._fragment_op:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message before the previous one ended")
            if fin:
                self._deliver(opcode, payload)
            else:
                self._fragment_op = opcode
                self._fragments.append(payload)
                self._fragment_size = len(payload)
        elif opcode == OP_CONTINUATION:
            if not self._fragment_op:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message")
            self._fragments.append(payload)
            self._fragment_size += len(payload)
            if fin:
                op, parts = self._fragment_op, self._fragments
                self._fragment_op, self._fragments, self._fragment_size = 0, [], 0
                self._deliver(op, b"".join(parts))
        elif opcode == OP_PING:
            self.on_ping(payload)
        elif opcode == OP_PONG:
            return
        elif opcode == OP_CLOSE:
            self.done = True
            self._close(payload)
        else:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")

    def _deliver(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
            self.on_message(opcode, text)
        else:
            self.on_message(opcode, payload)

    def _close(self, payload: bytes) -> None:
        if len(payload) == 1:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with a one-byte body")
        if not payload:
            self.on_close(None, "")
            return
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
        self.on_close(int.from_bytes(payload[:2], "big"), reason)
