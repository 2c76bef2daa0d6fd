"""The real sidecar against a Twilio REST fake that fails at set rates: mapped codes, sane states."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from bench.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from providers.twilio import TwilioProvider, TwilioSettings
from tests.e2e.harness import Running, error_reason, make_config, start
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_server.domain import CallState

EXPECTED = {
    ("UNAVAILABLE", "PROVIDER_UNAVAILABLE"),
    ("RESOURCE_EXHAUSTED", "PROVIDER_RATE_LIMITED"),
}
LIVE_WITHOUT_DIAL = {CallState.INITIATED}


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[tuple[Running, FakeTwilio]]:
    fake = await FakeTwilio(
        faults={"500": 0.15, "429": 0.15, "timeout": 0.1, "reset": 0.1}, seed=3, slow_s=0.6
    ).start()
    cfg = make_config(
        tmp_path / "store",
        provider="twilio",
        fromNumber="+15550000000",
        maxConcurrentCalls=1000,
        twilio={"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "baseUrl": fake.url},
        publicUrl="https://voice.example.test/voice/webhook",
        staleCallReaperSeconds=0,
    )
    provider = TwilioProvider(
        TwilioSettings(ACCOUNT_SID, AUTH_TOKEN, base_url=fake.url, request_timeout_s=0.25)
    )
    running = await start(cfg, provider=provider)
    yield running, fake
    await running.close()
    await fake.aclose()


async def test_faults_map_to_codes_and_leave_no_impossible_state(faulty: tuple[Running, FakeTwilio]) -> None:
    server, fake = faulty
    results: Counter[tuple[str, str]] = Counter()
    ok_calls: list[str] = []
    details: list[str] = []

    async def one(i: int) -> None:
        req = pb.InitiateRequest(
            to_number=f"+1555123{i:04d}", message="Hello", mode=pb.CALL_MODE_NOTIFY, request_id=f"f-{i}"
        )
        failure: grpc.aio.AioRpcError | None = None
        try:
            resp = await server.stub.Initiate(req)
        except grpc.aio.AioRpcError as err:
            failure = err
        if failure is not None:
            results[(failure.code().name, error_reason(failure))] += 1
            details.append(failure.details() or "")
            return
        results[("OK", "")] += 1
        ok_calls.append(resp.call_id)

    await asyncio.gather(*(one(i) for i in range(60)))
    errors = {k for k in results if k[0] != "OK"}
    assert errors <= EXPECTED, results
    assert results[("OK", "")] > 0
    assert not [d for d in details if "injected" in d or AUTH_TOKEN in d]  # no raw bodies, no secrets
    assert {"500", "429", "timeout", "reset"} <= set(fake.outcomes)
    # Bounded retries: at most one create request per Initiate (a dial is never repeated blindly).
    assert fake.requests["create"] <= 60

    store = server.sidecar.store
    calls = store.list_calls(live_only=False, limit=1000, before=None)
    by_pid = Counter(c.provider_call_id for c in calls if c.provider_call_id)
    assert all(n == 1 for n in by_pid.values())
    for call in calls:
        if call.call_id in ok_calls:
            assert call.provider_call_id in fake.created
            assert not call.terminal or call.end_reason is not None
        else:
            # A failed Initiate leaves no live call behind: either none, or one that ended with a reason.
            assert call.terminal, (call.call_id, call.state)
            assert call.end_reason is not None
    # Hang-ups under the same faults: mapped codes, and a failed hang-up leaves the call as it was.
    for call_id in ok_calls:
        ended: pb.EndResponse | None = None
        code = ("OK", "")
        try:
            ended = await server.stub.End(pb.EndRequest(call_id=call_id))
        except grpc.aio.AioRpcError as err:
            code = (err.code().name, error_reason(err))
        if ended is None:
            assert code in EXPECTED
            rec = store.get_call(call_id)
            assert rec is not None and not rec.terminal
        else:
            assert ended.call.state == pb.CALL_STATE_HANGUP_BOT
    for call in store.live_calls():
        assert call.state not in LIVE_WITHOUT_DIAL or call.provider_call_id


async def test_timed_out_dial_is_not_retried(faulty: tuple[Running, FakeTwilio]) -> None:
    server, fake = faulty
    fake.faults = {"timeout": 1.0}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.stub.Initiate(
            pb.InitiateRequest(to_number="+15551239999", message="Hi", request_id="t-1")
        )
    assert (info.value.code().name, error_reason(info.value)) in EXPECTED
    await asyncio.sleep(0.7)  # let the fake finish answering the abandoned request
    assert fake.requests["create"] == 1
    calls = server.sidecar.store.list_calls(live_only=False, limit=10, before=None)
    assert len(calls) <= 1 and all(c.terminal for c in calls)
    # The abandoned request still created a call at the provider: the sidecar cannot know its id.
    # (Reported as a finding; Twilio has no idempotency key on call creation.)
    assert len(fake.created) == 1
