"""Log lines about a call carry its id (JSON logs), from RPCs and from provider events alike."""

from __future__ import annotations

import io
import json
import logging

from providers.base import CallMode, EventType, ProviderEvent
from voicecall_server.logs import configure_logging

from .conftest import HarnessFactory


async def test_event_and_rpc_log_lines_name_their_call(harness: HarnessFactory) -> None:
    h = harness(answer_after_ms=60_000)
    await h.start()
    buf = io.StringIO()
    root_level = logging.getLogger().level
    handler = configure_logging("info", "json", stream=buf)
    try:
        rec = await h.manager.initiate(to_number="+15551230001", message="Hi", mode=CallMode.CONVERSATION)
        dtmf = ProviderEvent(EventType.DTMF, rec.provider_call_id, None, dedupe_key="d1", digits="5")
        await h.manager.handle_events([dtmf])
        await h.manager.handle_events([dtmf])  # the duplicate is logged, under the call's id
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(root_level)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    duplicate = [line for line in lines if "duplicate provider event" in line["message"]]
    assert duplicate
    assert duplicate[0]["call_id"] == rec.call_id
