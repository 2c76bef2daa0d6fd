from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.client.fake_server import FakeVoiceCall, serve
from voicecall_client import VoiceCallClient


@pytest.fixture
def fake() -> FakeVoiceCall:
    return FakeVoiceCall()


@pytest.fixture
def target(fake: FakeVoiceCall) -> Iterator[str]:
    with serve(fake) as address:
        yield address


@pytest.fixture
async def client(target: str) -> AsyncIterator[VoiceCallClient]:
    async with VoiceCallClient(target, retry_backoff=0.01) as c:
        yield c
