from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from providers.mock import MockProvider, MockSettings
from voicecall_server.bus import EventBus
from voicecall_server.manager import CallManager, ManagerSettings
from voicecall_server.store import Store

FAST = ManagerSettings(
    max_concurrent_calls=5,
    notify_hangup_delay_s=0.05,
    transcript_timeout_s=2.0,
    stale_call_reaper_s=0,
)


class Harness:
    def __init__(self, path: Path, settings: ManagerSettings, mock: MockSettings) -> None:
        self.path = path
        self.store = Store(path)
        self.bus = EventBus()
        self.provider = MockProvider(mock)
        self.manager = CallManager(settings, self.store, self.bus, self.provider)
        self.stopped = False

    async def start(self) -> None:
        await self.provider.start(self.manager.handle_events, "http://127.0.0.1/voice/webhook")
        await self.manager.start()

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self.manager.aclose()
        await self.provider.aclose()
        self.store.close()


HarnessFactory = Callable[..., Harness]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    made: list[Harness] = []

    def make(settings: ManagerSettings = FAST, **mock: object) -> Harness:
        mock.setdefault("answer_after_ms", 10)
        mock.setdefault("reply_after_ms", 10)
        h = Harness(tmp_path / "store", settings, MockSettings(**mock))  # type: ignore[arg-type]
        made.append(h)
        return h

    yield make
    for h in made:
        await h.stop()
