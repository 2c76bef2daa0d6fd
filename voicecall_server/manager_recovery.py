"""Restart recovery (reference section 6, fixed), the unanswered-call reaper and retention."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from providers.base import EndReason, Provider, ProviderError

from .changes import Changes
from .domain import CallRecord, EventKind, utcnow
from .manager_types import ManagerSettings
from .store import Store

log = logging.getLogger("voicecall.manager")


class Recovery:
    """Mixin of CallManager: restore on start, reap stale calls, prune old ones."""

    # Shared state and collaborators, defined by CallManager.
    settings: ManagerSettings
    store: Store
    provider: Provider
    _live: dict[str, CallRecord]
    _by_provider_id: dict[str, str]

    if TYPE_CHECKING:

        def _commit(self, ch: Changes) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
        def _arm_max_duration(self, rec: CallRecord, seconds: float) -> None: ...
        async def _end_quietly(self, call_id: str, reason: EndReason) -> None: ...

    async def _restore(self) -> None:
        candidates = self.store.live_calls()
        if not candidates:
            return
        log.info("restoring %d live call(s)", len(candidates))
        results = await asyncio.gather(
            *(self._restore_one(rec) for rec in candidates), return_exceptions=True
        )
        for rec, result in zip(candidates, results, strict=True):
            if isinstance(result, BaseException):
                log.error("restoring call %s failed: %r", rec.call_id, result)

    async def _restore_one(self, rec: CallRecord) -> None:
        ch = Changes(rec)
        if not rec.provider_call_id:
            ch.event(
                EventKind.ERROR, {"message": "the sidecar stopped before the provider confirmed the dial"}
            )
            ch.finish(EndReason.FAILED)
            self._commit(ch)
            return
        try:
            status = await asyncio.wait_for(
                self.provider.fetch_status(rec.provider_call_id), self.settings.restore_timeout_s
            )
        except (TimeoutError, ProviderError):
            status = None
        if status is not None and status.is_terminal:
            ch.finish(status.end_reason or EndReason.COMPLETED)
            self._commit(ch)
            return
        self._live[rec.call_id] = rec
        self._by_provider_id[rec.provider_call_id] = rec.call_id
        if rec.answered_at is not None:
            remaining = self.settings.max_duration_s - (utcnow() - rec.answered_at).total_seconds()
            if remaining <= 0:
                self._spawn(self._end_quietly(rec.call_id, EndReason.TIMEOUT))
            else:
                self._arm_max_duration(rec, remaining)

    async def _reaper(self) -> None:
        threshold = self.settings.stale_call_reaper_s
        interval = min(30.0, max(0.05, threshold / 4))
        while True:
            await asyncio.sleep(interval)
            self.reap_stale(threshold)
            self.prune()

    def reap_stale(self, threshold_s: float) -> int:
        """End calls that were never answered within the threshold (answered calls are never reaped)."""
        cutoff = utcnow() - timedelta(seconds=threshold_s)
        stale = [r for r in self._live.values() if r.answered_at is None and r.created_at < cutoff]
        for rec in stale:
            log.info("reaping call %s: not answered after %g s", rec.call_id, threshold_s)
            self._spawn(self._end_quietly(rec.call_id, EndReason.NO_ANSWER))
        return len(stale)

    def prune(self) -> int:
        days = self.settings.retention_days
        ended_before = utcnow() - timedelta(days=days) if days > 0 else None
        return self.store.prune(
            ended_before=ended_before, requests_before=time.time() - self.settings.idempotency_ttl_s
        )
