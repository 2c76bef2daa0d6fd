"""request_id handling: a retry with the same payload gets the first outcome, never a second effect.

Outcomes (results and errors) are stored durably for at least ``ttl`` (24 h by default); a request
still in flight is joined, not repeated.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import CallError, Reason
from .store import Store


def fingerprint(method: str, payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([method, payload], sort_keys=True).encode()).hexdigest()


class Idempotency:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._inflight: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}

    def _check(self, request_id: str, stored_fp: str, fp: str) -> None:
        if stored_fp != fp:
            raise CallError(
                Reason.REQUEST_ID_REUSED,
                f"request_id {request_id!r} was already used with a different request; use a new request_id",
            )

    def lookup(self, request_id: str, method: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The stored outcome of an earlier request with this id, if any (raises on a mismatch)."""
        fp = fingerprint(method, payload)
        stored = self._store.get_request(request_id)
        if stored is None:
            return None
        self._check(request_id, stored.fingerprint, fp)
        return stored.result or {}

    async def run(
        self,
        request_id: str,
        method: str,
        payload: dict[str, Any],
        op: Callable[[str], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """Run ``op(fingerprint)`` once per request_id; ``op`` must store its outcome under that id."""
        fp = fingerprint(method, payload)
        if request_id in self._inflight:
            running_fp, running = self._inflight[request_id]
            self._check(request_id, running_fp, fp)
            return await asyncio.shield(running)
        earlier = self.lookup(request_id, method, payload)
        if earlier is not None:
            return earlier
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[request_id] = (fp, fut)
        try:
            result = await op(fp)
        except CallError as err:
            fut.set_result({"error": err.to_dict()})
            raise
        except BaseException as err:
            fut.set_exception(err)
            fut.exception()  # joined waiters re-raise it; mark it retrieved for the first caller
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            del self._inflight[request_id]

    @staticmethod
    def raise_if_error(outcome: dict[str, Any]) -> dict[str, Any]:
        if "error" in outcome:
            raise CallError.from_dict(outcome["error"])
        return outcome
