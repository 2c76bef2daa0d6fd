"""Telnyx Call Control REST through the official SDK's async client, with one error mapping.

Telnyx error bodies are ``{"errors": [{"code": "90018", "title": ..., "detail": ...}]}``; only the
first error's code and a cleaned, bounded title/detail reach a message, never the raw body or the
API key. The SDK's own retries are off (commands carry a command_id, but the call manager owns
retry policy and a 5xx must surface promptly).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from telnyx import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncTelnyx,
    TelnyxError,
)

from ..base import ProviderError, ProviderErrorKind
from .settings import TelnyxSettings

T = TypeVar("T")
ALREADY_ENDED_CODES = frozenset({"90018"})
""""Call has already ended": nothing is left to hang up or stop."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def first_error(body: object) -> tuple[str | None, str]:
    """(code, safe detail) of the first entry of a Telnyx ``errors`` array."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, ""
    entry = errors[0]
    code = entry.get("code")
    code_text = str(code).strip() if isinstance(code, str | int) and not isinstance(code, bool) else None
    detail = entry.get("detail") or entry.get("title") or ""
    text = _CONTROL.sub(" ", detail if isinstance(detail, str) else "").strip()
    return code_text or None, text[:200]


def map_error(exc: BaseException, action: str, *, secret: str = "", timeout_s: float = 0.0) -> ProviderError:
    """The one place Telnyx SDK and HTTP failures become ProviderErrors with safe messages."""
    if isinstance(exc, APIStatusError):
        status = int(exc.status_code or 0)
        code, detail = first_error(exc.body)
        if secret and detail:
            detail = detail.replace(secret, "***")
        where = f"HTTP {status}" + (f", Telnyx error {code}" if code else "")
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            return ProviderError(
                ProviderErrorKind.AUTH,
                f"Telnyx refused our credentials while trying to {action} ({where}); check the API key",
                provider_code=code,
            )
        if status == 429:
            return ProviderError(
                ProviderErrorKind.RATE_LIMITED,
                f"Telnyx rate-limited the request to {action} ({where})",
                provider_code=code,
            )
        if status >= 500 or status == 0:
            return ProviderError(
                ProviderErrorKind.UNAVAILABLE,
                f"Telnyx failed to {action} ({where}); try again",
                provider_code=code,
            )
        kind = ProviderErrorKind.NOT_FOUND if status == 404 else ProviderErrorKind.REJECTED
        return ProviderError(
            kind, f"Telnyx rejected the request to {action} ({where}){suffix}", provider_code=code
        )
    if isinstance(exc, APITimeoutError | TimeoutError | httpx.TimeoutException):
        after = f" within {timeout_s:g} s" if timeout_s else ""
        return ProviderError(
            ProviderErrorKind.UNAVAILABLE, f"Telnyx did not answer the request to {action}{after}"
        )
    if isinstance(exc, APIConnectionError | httpx.TransportError | OSError):
        return ProviderError(ProviderErrorKind.UNAVAILABLE, f"could not connect to Telnyx to {action}")
    if isinstance(exc, APIResponseValidationError | ValueError | TelnyxError):
        return ProviderError(
            ProviderErrorKind.UNAVAILABLE, f"Telnyx gave an unreadable answer to the request to {action}"
        )
    return ProviderError(
        ProviderErrorKind.UNAVAILABLE, f"the request to Telnyx to {action} failed unexpectedly"
    )


class TelnyxRest:
    """The SDK's async client; ``run`` maps every failure with ``map_error``."""

    def __init__(self, settings: TelnyxSettings) -> None:
        self._settings = settings
        kwargs: dict[str, Any] = {}
        if settings.base_url is not None:
            kwargs["base_url"] = settings.base_url.rstrip("/")
        self.client = AsyncTelnyx(
            api_key=settings.api_key,
            timeout=httpx.Timeout(settings.request_timeout_s),
            max_retries=0,
            **kwargs,
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"TelnyxRest(connection_id={self._settings.connection_id!r}, base_url={self._settings.base_url!r})"

    async def run(self, action: str, fn: Callable[[], Awaitable[T]]) -> T:
        if self._closed:
            raise ProviderError(
                ProviderErrorKind.UNAVAILABLE, f"the Telnyx adapter is closed; cannot {action}"
            )
        timeout = self._settings.request_timeout_s
        try:
            # httpx bounds each phase; this bounds the whole exchange.
            return await asyncio.wait_for(fn(), timeout * 2 + 1)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise map_error(exc, action, secret=self._settings.api_key, timeout_s=timeout) from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.client.close()
