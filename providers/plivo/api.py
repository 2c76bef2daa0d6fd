"""Plivo's Voice API through the official SDK: one client, one bounded thread pool, one error mapping.

The SDK is synchronous (requests), so every call runs in this adapter's own worker threads and the
event loop never blocks. Each request has the settings' timeout (connect and each read); the await
around it has an overall bound too, for servers that answer a byte at a time.

The SDK has no option for its API host: ``Client.create_request`` joins a module constant
(``https://api.plivo.com/v1/Account``) with the auth id and the resource path. ``_RoutedClient``
overrides that one method for its own instance, so the SDK's paths, parameters and validation stay
as they are. It also turns off the SDK's "voice fallback": on a 5xx the SDK re-sends a voice request
up to twice to fallback hosts that are the same host, which would place a call twice when the
first attempt did reach Plivo, and keeps its retry counter on the shared client across threads.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import requests
from plivo import RestClient
from plivo import exceptions as plivo_errors

from ..base import ProviderError, ProviderErrorKind
from .settings import PlivoSettings

log = logging.getLogger("voicecall.providers.plivo")

T = TypeVar("T")
MAX_WORKERS = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class _RoutedClient(RestClient):  # type: ignore[misc]
    """The SDK client, with its account URLs rooted at ``origin`` and one attempt per request."""

    def __init__(self, settings: PlivoSettings) -> None:
        super().__init__(settings.auth_id, settings.auth_token, timeout=settings.request_timeout_s)
        self._account_root = f"{settings.api_origin}/v1/Account"

    def create_request(self, method: str, path: Any = None, data: Any = None, **kwargs: Any) -> Any:
        if kwargs:  # Call Insights and Lookup use other hosts; this adapter calls neither
            return super().create_request(method, path, data, **kwargs)
        parts = [self._account_root, self.session.auth[0], *(str(p) for p in path or ())]
        req = requests.Request(
            method, "/".join(parts) + "/", **({"params": data} if method == "GET" else {"json": data})
        )
        return self.session.prepare_request(req)

    def request(self, method: str, path: Any = None, data: Any = None, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("is_voice_request", None)
        return super().request(method, path, data, *args, **kwargs)

    def process_response(self, method: str, response: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().process_response(method, response, *args, **kwargs)
        except plivo_errors.PlivoRestError as err:
            # The SDK's exceptions do not say which status they came from (429 is a bare
            # PlivoRestError, a failed DELETE never names its status): keep it for map_error.
            err.http_status = response.status_code
            err.plivo_error = _plivo_message(response)
            raise

    def close(self) -> None:
        self.session.close()
        self.multipart_session.close()


def _plivo_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else ""


def _safe(text: str, secret: str) -> str:
    text = _CONTROL.sub(" ", text).strip()
    if secret:
        text = text.replace(secret, "***")
    return text[:160]


def map_error(exc: BaseException, action: str, *, secret: str = "", timeout_s: float = 0.0) -> ProviderError:
    """The one place Plivo SDK and HTTP failures become ProviderErrors with safe messages."""
    if isinstance(exc, plivo_errors.PlivoRestError):
        status = int(getattr(exc, "http_status", 0) or 0)
        if not status:
            # Raised by the SDK's own argument validation, before any request.
            if isinstance(exc, plivo_errors.AuthenticationError):
                return ProviderError(ProviderErrorKind.AUTH, f"Plivo credentials are not usable to {action}")
            detail = _safe(str(exc), secret)
            return ProviderError(
                ProviderErrorKind.REJECTED, f"invalid request to Plivo to {action}: {detail}"
            )
        where = f"HTTP {status}"
        if status in (401, 403):
            return ProviderError(
                ProviderErrorKind.AUTH,
                f"Plivo refused our credentials while trying to {action} ({where}); check the Auth ID and"
                " Auth Token",
                provider_code=str(status),
            )
        if status == 429:
            return ProviderError(
                ProviderErrorKind.RATE_LIMITED,
                f"Plivo rate-limited the request to {action} ({where})",
                provider_code=str(status),
            )
        if status >= 500:
            return ProviderError(
                ProviderErrorKind.UNAVAILABLE,
                f"Plivo failed to {action} ({where}); try again",
                provider_code=str(status),
            )
        detail = _safe(getattr(exc, "plivo_error", "") or "", secret)
        kind = ProviderErrorKind.NOT_FOUND if status == 404 else ProviderErrorKind.REJECTED
        return ProviderError(
            kind,
            f"Plivo rejected the request to {action} ({where})" + (f": {detail}" if detail else ""),
            provider_code=str(status),
        )
    if isinstance(exc, requests.Timeout | TimeoutError):
        after = f" within {timeout_s:g} s" if timeout_s else ""
        return ProviderError(
            ProviderErrorKind.UNAVAILABLE, f"Plivo did not answer the request to {action}{after}"
        )
    if isinstance(exc, requests.ConnectionError):
        return ProviderError(ProviderErrorKind.UNAVAILABLE, f"could not connect to Plivo to {action}")
    if isinstance(exc, requests.RequestException | ValueError):
        return ProviderError(
            ProviderErrorKind.UNAVAILABLE, f"Plivo gave an unreadable answer to the request to {action}"
        )
    return ProviderError(
        ProviderErrorKind.UNAVAILABLE, f"the request to Plivo to {action} failed unexpectedly"
    )


def is_not_found(err: ProviderError) -> bool:
    return err.kind is ProviderErrorKind.NOT_FOUND


def field_of(obj: Any, name: str) -> Any:
    """A field of an SDK response object (attributes of a ResponseObject), or None."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


class PlivoRest:
    """The SDK client and the threads it runs in; ``run`` maps every failure with ``map_error``."""

    def __init__(self, settings: PlivoSettings, *, max_workers: int = MAX_WORKERS) -> None:
        self._settings = settings
        try:
            self.client = _RoutedClient(settings)
        except plivo_errors.PlivoRestError:
            raise ValueError("the Plivo SDK refused the configured Auth ID") from None
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="plivo-rest")
        self._closed = False

    def __repr__(self) -> str:
        return f"PlivoRest(auth_id={self._settings.auth_id!r}, base_url={self._settings.base_url!r})"

    async def run(self, action: str, fn: Callable[[], T]) -> T:
        if self._closed:
            raise ProviderError(
                ProviderErrorKind.UNAVAILABLE, f"the Plivo adapter is closed; cannot {action}"
            )
        loop = asyncio.get_running_loop()
        timeout = self._settings.request_timeout_s
        try:
            # Connect and read timeouts apply per step; this bounds the whole exchange.
            return await asyncio.wait_for(loop.run_in_executor(self._executor, fn), timeout * 2 + 1)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = map_error(exc, action, secret=self._settings.auth_token, timeout_s=timeout)
            if not isinstance(exc, plivo_errors.PlivoRestError | requests.RequestException | TimeoutError):
                log.warning("Plivo request to %s failed with %s", action, type(exc).__name__)
            raise error from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self.client.close()

    # -- the Voice API calls this adapter makes -------------------------------------------------
    async def create_call(self, params: dict[str, Any]) -> Any:
        return await self.run("place the call", lambda: self.client.calls.create(**params))

    async def transfer(self, call_uuid: str, aleg_url: str) -> None:
        await self.run(
            "transfer the call to new XML",
            lambda: self.client.calls.update(call_uuid, legs="aleg", aleg_url=aleg_url, aleg_method="POST"),
        )

    async def hangup_call(self, call_uuid: str) -> None:
        await self.run("hang up the call", lambda: self.client.calls.delete(call_uuid))

    async def cancel_request(self, request_uuid: str) -> None:
        await self.run("cancel the call request", lambda: self.client.calls.cancel(request_uuid))

    async def send_digits(self, call_uuid: str, digits: str) -> None:
        await self.run(
            "send DTMF digits", lambda: self.client.calls.send_digits(call_uuid, digits, leg="aleg")
        )

    async def live_call(self, call_uuid: str) -> Any:
        return await self.run("look up the live call", lambda: self.client.live_calls.get(call_uuid))

    async def queued_call(self, request_uuid: str) -> Any:
        return await self.run("look up the queued call", lambda: self.client.queued_calls.get(request_uuid))

    async def call_record(self, call_uuid: str) -> Any:
        return await self.run("look up the call record", lambda: self.client.calls.get(call_uuid))
