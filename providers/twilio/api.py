"""Twilio REST through the official SDK: one client, one bounded thread pool, one error mapping.

The SDK is synchronous (requests), so every call runs in this adapter's own worker threads and the
event loop never blocks. Each request has the settings' timeout (connect and each read); the await
around it has an overall bound too, for servers that answer a byte at a time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ..base import ProviderError, ProviderErrorKind
from .settings import TwilioSettings

T = TypeVar("T")
MAX_WORKERS = 8
ALREADY_ENDED_CODES = frozenset({20404, 21220})
"""Not found, and "Call is not in-progress": both mean there is nothing left to hang up."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class _RoutedHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The SDK's HTTP client, sending every request to ``base_url`` when one is configured.

    The SDK builds absolute URLs per product domain (``https://api.twilio.com/2010-04-01/...``,
    rewritten for region/edge); only the origin is replaced here, so paths stay exactly the SDK's.
    """

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        self._origin = urlsplit(base_url) if base_url else None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self._origin is not None:
            parts = urlsplit(url)
            prefix = self._origin.path.rstrip("/")
            url = urlunsplit(
                (self._origin.scheme, self._origin.netloc, prefix + parts.path, parts.query, parts.fragment)
            )
        return super().request(method, url, *args, **kwargs)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def _twilio_detail(exc: TwilioRestException | TwilioServiceException, secret: str) -> str:
    if isinstance(exc, TwilioServiceException):
        text = str(exc.detail or exc.title or "")
    else:
        text = str(exc.msg or "")
        # The SDK prefixes Twilio's message with its own ("Unable to create record: ...").
        if text.startswith("Unable to ") and ": " in text:
            text = text.split(": ", 1)[1]
        elif text.startswith("Unable to "):
            text = ""
    text = _CONTROL.sub(" ", text).strip()
    if secret:
        text = text.replace(secret, "***")
    return text[:200]


def map_error(exc: BaseException, action: str, *, secret: str = "", timeout_s: float = 0.0) -> ProviderError:
    """The one place Twilio SDK and HTTP failures become ProviderErrors with safe messages."""
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        status = int(exc.status or 0)
        code = str(exc.code) if exc.code is not None else None
        where = f"HTTP {status}" + (f", Twilio error {code}" if code and code != str(status) else "")
        detail = _twilio_detail(exc, secret)
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            return ProviderError(
                ProviderErrorKind.AUTH,
                f"Twilio refused our credentials while trying to {action} ({where}); check the account SID"
                " and auth token",
                provider_code=code,
            )
        if status == 429:
            return ProviderError(
                ProviderErrorKind.RATE_LIMITED,
                f"Twilio rate-limited the request to {action} ({where})",
                provider_code=code,
            )
        if status >= 500 or status == 0:
            return ProviderError(
                ProviderErrorKind.UNAVAILABLE,
                f"Twilio failed to {action} ({where}); try again",
                provider_code=code,
            )
        kind = ProviderErrorKind.NOT_FOUND if status == 404 else ProviderErrorKind.REJECTED
        return ProviderError(
            kind, f"Twilio rejected the request to {action} ({where}){suffix}", provider_code=code
        )
    if isinstance(exc, requests.Timeout | TimeoutError):
        after = f" within {timeout_s:g} s" if timeout_s else ""
        return ProviderError(
            ProviderErrorKind.UNAVAILABLE, f"Twilio did not answer the request to {action}{after}"
        )
    if isinstance(exc, requests.ConnectionError):
        return ProviderError(ProviderErrorKind.UNAVAILABLE, f"could not connect to Twilio to {action}")
    if isinstance(exc, requests.RequestException | ValueError | TwilioException):
        return ProviderError(
            ProviderErrorKind.UNAVAILABLE, f"Twilio gave an unreadable answer to the request to {action}"
        )
    return ProviderError(
        ProviderErrorKind.UNAVAILABLE, f"the request to Twilio to {action} failed unexpectedly"
    )


class TwilioRest:
    """The SDK client and the threads it runs in; ``run`` maps every failure with ``map_error``."""

    def __init__(self, settings: TwilioSettings, *, max_workers: int = MAX_WORKERS) -> None:
        self._settings = settings
        self._http = _RoutedHttpClient(settings.base_url, settings.request_timeout_s)
        routed = settings.base_url is not None
        self.client = Client(
            username=settings.account_sid,
            password=settings.auth_token,
            account_sid=settings.account_sid,
            region=None if routed else settings.region,
            edge=None if routed else settings.edge,
            http_client=self._http,
        )
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="twilio-rest")
        self._closed = False

    def __repr__(self) -> str:
        return f"TwilioRest(account_sid={self._settings.account_sid!r}, base_url={self._settings.base_url!r})"

    async def run(self, action: str, fn: Callable[[], T]) -> T:
        if self._closed:
            raise ProviderError(
                ProviderErrorKind.UNAVAILABLE, f"the Twilio adapter is closed; cannot {action}"
            )
        loop = asyncio.get_running_loop()
        timeout = self._settings.request_timeout_s
        try:
            # Connect and read timeouts apply per step; this bounds the whole exchange.
            return await asyncio.wait_for(loop.run_in_executor(self._executor, fn), timeout * 2 + 1)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise map_error(exc, action, secret=self._settings.auth_token, timeout_s=timeout) from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._http.close()
