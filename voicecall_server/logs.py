"""Process logging: text (the default) or one JSON object per line, each carrying its call id.

The call id comes from ``extra={"call_id": ...}`` when a log call passes it, else from the
``current_call_id`` context variable. The variable is task-local: bind it where a call becomes
known (``bind_call``, ``set_call_id``) and every line logged by that task, and by tasks it
spawns afterwards, names the call. ``CallIdInterceptor`` binds it for a gRPC request's
``call_id`` field for the duration of the RPC.

Secrets are kept out of log calls by design; ``RedactingFilter`` is the defence in depth: it
masks Bearer/Basic credentials, ``sk-``/``sk_`` API keys, Telnyx ``KEY...`` keys, URL
passwords and token-like query parameters in messages, and secret-named or secret-shaped values
passed through ``extra``.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import grpc

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "[REDACTED]"

current_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "voicecall_call_id", default=None
)


def set_call_id(call_id: str | None) -> contextvars.Token[str | None]:
    """Bind ``call_id`` for the rest of the current task (and the tasks it creates from now on)."""
    return current_call_id.set(call_id or None)


@contextlib.contextmanager
def bind_call(call_id: str | None) -> Iterator[None]:
    """Bind ``call_id`` to log lines for the duration of the block; an empty id binds nothing new."""
    if not call_id:
        yield
        return
    token = current_call_id.set(call_id)
    try:
        yield
    finally:
        _reset(token)


def _reset(token: contextvars.Token[str | None]) -> None:
    # An async generator finalised from another context (aclose by the loop) raises ValueError:
    # that context never saw the value, so there is nothing to undo there.
    with contextlib.suppress(ValueError):
        current_call_id.reset(token)


# -- filters ------------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came through ``extra``.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "call_id",
    "taskName",
}

_MESSAGE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE), rf"\1 {MASK}"),
    (re.compile(r"\bsk[-_][A-Za-z0-9_-]{12,}"), MASK),
    (re.compile(r"\bKEY[0-9A-Za-z_]{20,}"), MASK),
    (re.compile(r"(://[^/\s:@]+:)[^/\s@]+@"), rf"\1{MASK}@"),
    (
        re.compile(
            r"((?:^|[?&\s,;{(])[\"']?(?:auth_?token|api_?key|access_?token|stream_?token|token|secret|"
            r"password|authorization)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;)}]+",
            re.IGNORECASE,
        ),
        rf"\1{MASK}",
    ),
)
_SECRET_KEY_RE = re.compile(r"token|secret|password|api_?key|authorization|credential", re.IGNORECASE)
# A Twilio auth token (and an API secret) is 32 hex digits; call ids are dashed UUIDs and Twilio
# SIDs carry a two-letter prefix, so neither matches.
_HEX32_RE = re.compile(r"\A[0-9a-fA-F]{32}\Z")


def redact(text: str) -> str:
    """``text`` with every secret-shaped substring masked."""
    for pattern, replacement in _MESSAGE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_extra(key: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if _SECRET_KEY_RE.search(key):
        return MASK
    if isinstance(value, str):
        return MASK if _HEX32_RE.match(value) else redact(value)
    return value


class CallIdFilter(logging.Filter):
    """Sets ``record.call_id``: the ``extra`` value when given, else the bound call, else None."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "call_id", None):
            record.call_id = current_call_id.get()
        return True


class RedactingFilter(logging.Filter):
    """Masks secret shapes in the message and in ``extra`` values before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as it always does
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, _redact_extra(key, value))
        return True


# -- formatters ---------------------------------------------------------------------------------


class RedactingFormatter(logging.Formatter):
    """The text format, with exception and stack text redacted as well."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, call_id, exception, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        call_id = getattr(record, "call_id", None)
        if call_id:
            entry["call_id"] = str(call_id)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = _redact_extra(key, value)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    level: str, fmt: LogFormat = "text", *, stream: TextIO | None = None
) -> logging.Handler:
    """Install the process's log handler on the root logger (replacing one installed earlier).

    ``level`` is debug/info/warning/error (any case); ``fmt`` "text" keeps the classic
    ``time LEVEL logger: message`` lines, "json" writes one object per line. Returns the handler.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_voicecall", False):
            root.removeHandler(old)
            old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._voicecall = True  # type: ignore[attr-defined]
    handler.addFilter(CallIdFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


# -- gRPC ---------------------------------------------------------------------------------------


class CallIdInterceptor(grpc.aio.ServerInterceptor):
    """Binds a request's non-empty ``call_id`` field to log lines for the duration of the RPC."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _bound_unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _bound_stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _request_call_id(request: Any) -> str | None:
    value = getattr(request, "call_id", None)
    return value if isinstance(value, str) and value else None


def _bound_unary(behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def bound(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        with bind_call(_request_call_id(request)):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result

    return bound


def _bound_stream(behavior: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
    async def bound(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        with bind_call(_request_call_id(request)):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                await result  # a handler that writes through context.write() and returns None
                return
            async for item in result:
                yield item

    return bound
