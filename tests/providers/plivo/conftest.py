from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from providers.base import ProviderEvent
from providers.plivo import PlivoProvider, PlivoSettings

from .fakes import AUTH_ID, AUTH_TOKEN, FakePlivo

WEBHOOK = "https://voice.example.com/voice/webhook"


@pytest.fixture
async def fake() -> AsyncIterator[FakePlivo]:
    server = FakePlivo()
    await server.start()
    yield server
    server.stall = False
    await server.close()


def make_provider(base_url: str, *, timeout: float = 5.0, skip: bool = False) -> PlivoProvider:
    return PlivoProvider(
        PlivoSettings(
            AUTH_ID,
            AUTH_TOKEN,
            base_url=base_url,
            request_timeout_s=timeout,
            skip_signature_verification=skip,
        )
    )


@pytest.fixture
async def provider(fake: FakePlivo) -> AsyncIterator[PlivoProvider]:
    adapter = make_provider(fake.base_url)
    sunk: list[ProviderEvent] = []

    async def sink(events: Sequence[ProviderEvent]) -> None:
        sunk.extend(events)

    await adapter.start(sink, WEBHOOK)
    yield adapter
    await adapter.aclose()
