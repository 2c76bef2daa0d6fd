from __future__ import annotations

import uuid

import grpc
import pytest

from tests.client.fake_server import Failure, FakeVoiceCall, make_call, serve
from voicecall_client import InvalidArgument, NotFound, TlsOptions, Unavailable, VoiceCallClient
from voicecall_client.client import CONTINUE_DEADLINE_MARGIN, SERVER_DEFAULT_TURN_WAIT
from voicecall_client.v1 import voicecall_service_pb2 as pb

# grpc-timeout travels with a coarse unit, so the server may see up to a second more than was asked.
WIRE_ROUNDING = 1.5


def _is_uuid4(text: str) -> bool:
    return uuid.UUID(text).version == 4


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (None, pb.CALL_MODE_UNSPECIFIED),
        ("notify", pb.CALL_MODE_NOTIFY),
        ("conversation", pb.CALL_MODE_CONVERSATION),
        (" Conversation ", pb.CALL_MODE_CONVERSATION),
        ("CALL_MODE_NOTIFY", pb.CALL_MODE_NOTIFY),
        (pb.CALL_MODE_CONVERSATION, pb.CALL_MODE_CONVERSATION),
        (pb.CALL_MODE_UNSPECIFIED, pb.CALL_MODE_UNSPECIFIED),
    ],
)
async def test_initiate_maps_fields_and_mode(
    client: VoiceCallClient, fake: FakeVoiceCall, mode: str | int | None, expected: int
) -> None:
    resp = await client.initiate_call("+15551234567", "hello", mode=mode, session_key="sess-1")
    assert resp.call_id == "call-1"
    (rec,) = fake.of("Initiate")
    req = rec.request
    assert (req.to_number, req.message, req.mode, req.session_key) == (
        "+15551234567",
        "hello",
        expected,
        "sess-1",
    )
    assert _is_uuid4(req.request_id)


async def test_initiate_defaults_leave_to_and_mode_to_the_server(
    client: VoiceCallClient, fake: FakeVoiceCall
) -> None:
    await client.initiate_call(message="hi")
    await client.initiate_call(message="hi")
    first, second = (r.request for r in fake.of("Initiate"))
    assert first.to_number == ""
    assert first.mode == pb.CALL_MODE_UNSPECIFIED
    assert first.request_id != second.request_id  # a fresh id per logical request


async def test_initiate_passes_caller_request_id(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    await client.initiate_call("+15551234567", "hi", request_id="req-42")
    assert fake.of("Initiate")[0].request.request_id == "req-42"


@pytest.mark.parametrize("mode", ["shout", "", 7, True])
async def test_bad_mode_is_invalid_argument_without_a_request(
    client: VoiceCallClient, fake: FakeVoiceCall, mode: str | int
) -> None:
    if mode == "":
        # An empty string means unspecified, like None.
        await client.initiate_call(message="x", mode=mode)
        assert fake.of("Initiate")[0].request.mode == pb.CALL_MODE_UNSPECIFIED
        return
    with pytest.raises(InvalidArgument) as info:
        await client.initiate_call(message="x", mode=mode)
    assert info.value.reason == "INVALID_FIELD"
    assert fake.requests == []


@pytest.mark.parametrize("method", ["Initiate", "Continue", "Speak"])
async def test_transport_failure_is_retried_with_the_same_request_id(
    client: VoiceCallClient, fake: FakeVoiceCall, method: str
) -> None:
    fake.failures[method] = [
        Failure(grpc.StatusCode.UNAVAILABLE),
        Failure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN"),
    ]
    if method == "Initiate":
        await client.initiate_call("+15551234567", "hi")
    elif method == "Continue":
        assert (await client.continue_call("call-1", "hi")).transcript == "yes please"
    else:
        await client.speak("call-1", "hi")
    ids = [r.request.request_id for r in fake.of(method)]
    assert len(ids) == 3
    assert len(set(ids)) == 1
    assert _is_uuid4(ids[0])


async def test_retries_are_bounded(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    fake.failures["End"] = [Failure(grpc.StatusCode.UNAVAILABLE, message="gone")] * 5
    with pytest.raises(Unavailable) as info:
        await client.end_call("call-1")
    assert len(fake.of("End")) == client.retry_attempts == 3
    assert info.value.reason == ""
    assert info.value.message == "gone"


async def test_server_verdict_unavailable_is_not_retried(
    client: VoiceCallClient, fake: FakeVoiceCall
) -> None:
    fake.failures["Initiate"] = [Failure(grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE", "twilio: 503")]
    with pytest.raises(Unavailable) as info:
        await client.initiate_call("+15551234567", "hi")
    assert info.value.reason == "PROVIDER_UNAVAILABLE"
    assert len(fake.of("Initiate")) == 1


async def test_continue_maps_timeout_and_sets_a_covering_deadline(
    client: VoiceCallClient, fake: FakeVoiceCall
) -> None:
    resp = await client.continue_call("call-7", "anything else?", timeout=12.5, request_id="r1")
    assert resp.transcript == "yes please"
    await client.continue_call("call-7", "and?")
    with_timeout, without = fake.of("Continue")
    req = with_timeout.request
    assert (req.call_id, req.message, req.request_id) == ("call-7", "anything else?", "r1")
    assert (req.timeout.seconds, req.timeout.nanos) == (12, 500_000_000)
    assert with_timeout.time_remaining is not None
    assert 12.5 < with_timeout.time_remaining <= 12.5 + CONTINUE_DEADLINE_MARGIN + WIRE_ROUNDING
    assert not without.request.HasField("timeout")
    assert without.time_remaining is not None
    assert (
        SERVER_DEFAULT_TURN_WAIT
        < without.time_remaining
        <= SERVER_DEFAULT_TURN_WAIT + CONTINUE_DEADLINE_MARGIN + WIRE_ROUNDING
    )


async def test_continue_rejects_non_positive_timeout(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    with pytest.raises(InvalidArgument):
        await client.continue_call("call-7", "x", timeout=0)
    assert fake.requests == []


async def test_unary_calls_carry_the_default_deadline(target: str, fake: FakeVoiceCall) -> None:
    fake.calls["c1"] = make_call("c1")
    async with VoiceCallClient(target, default_timeout=7.0) as c:
        await c.status("c1")
    (rec,) = fake.of("Status")
    assert rec.time_remaining is not None
    assert 0 < rec.time_remaining <= 7.0 + WIRE_ROUNDING


async def test_speak_end_status_list_mapping(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    fake.calls["c1"] = make_call("c1", session_key="s")
    fake.listing = [make_call(f"c{i}") for i in range(3)]
    speak = await client.speak("c1", "one moment", request_id="sp-1")
    end = await client.end_call("c1")
    call = await client.status("c1")
    page = await client.list_calls(live_only=True, page_size=2, page_token="1")
    assert speak.call.call_id == "c1"
    assert end.call.state == pb.CALL_STATE_HANGUP_BOT
    assert isinstance(call, pb.Call)
    assert call.session_key == "s"
    assert [c.call_id for c in page.calls] == ["c1", "c2"]
    assert fake.of("Speak")[0].request == pb.SpeakRequest(
        call_id="c1", message="one moment", request_id="sp-1"
    )
    assert fake.of("End")[0].request == pb.EndRequest(call_id="c1")
    assert fake.of("Status")[0].request == pb.StatusRequest(call_id="c1")
    assert fake.of("ListCalls")[0].request == pb.ListCallsRequest(live_only=True, page_size=2, page_token="1")


async def test_iter_calls_follows_page_tokens(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    fake.listing = [make_call(f"c{i}") for i in range(5)]
    fake.max_page = 2
    ids = [c.call_id async for c in client.iter_calls(page_size=10)]
    assert ids == [f"c{i}" for i in range(5)]
    assert [r.request.page_token for r in fake.of("ListCalls")] == ["", "2", "4"]


async def test_status_unknown_is_not_found(client: VoiceCallClient) -> None:
    with pytest.raises(NotFound) as info:
        await client.status("nope")
    assert info.value.reason == "CALL_NOT_FOUND"
    assert str(info.value) == "NOT_FOUND CALL_NOT_FOUND: call nope not found"


async def test_token_goes_in_metadata_and_never_in_repr(target: str, fake: FakeVoiceCall) -> None:
    fake.calls["c1"] = make_call("c1")
    async with VoiceCallClient(target, token="s3cret-token") as c:
        await c.status("c1")
        assert "s3cret" not in repr(c)
    async with VoiceCallClient(target) as c:
        await c.status("c1")
    with_token, without = fake.of("Status")
    assert with_token.metadata["authorization"] == "Bearer s3cret-token"
    assert "authorization" not in without.metadata


async def test_unix_socket_target(fake: FakeVoiceCall, tmp_path_factory: pytest.TempPathFactory) -> None:
    sock = tmp_path_factory.mktemp("vc") / "s.sock"
    fake.calls["c1"] = make_call("c1")
    with serve(fake, f"unix:{sock}") as address:
        async with VoiceCallClient(address) as c:
            assert (await c.status("c1")).call_id == "c1"


async def test_close_is_idempotent_and_client_reopens(target: str, fake: FakeVoiceCall) -> None:
    fake.calls["c1"] = make_call("c1")
    c = VoiceCallClient(target)
    await c.close()  # never opened
    await c.status("c1")
    await c.close()
    await c.close()
    await c.status("c1")  # a closed client dials again on the next call
    await c.close()
    assert len(fake.of("Status")) == 2


def test_tls_options_need_cert_and_key_together() -> None:
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        TlsOptions(cert_file="/x.pem").credentials()


def test_tls_options_missing_file_fails_at_construction(tmp_path: object) -> None:
    with pytest.raises(FileNotFoundError):
        VoiceCallClient(tls=TlsOptions(ca_file="/nonexistent/ca.pem"))


async def test_initiate_passes_dtmf_sequence(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    await client.initiate_call("+15551234567", "hi", dtmf_sequence="ww123#")
    assert fake.of("Initiate")[0].request.dtmf_sequence == "ww123#"


async def test_send_dtmf_maps_and_is_never_retried(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    resp = await client.send_dtmf("c1", "1w2#")
    assert resp.call.call_id == "c1"
    assert fake.of("SendDtmf")[0].request == pb.SendDtmfRequest(call_id="c1", digits="1w2#")
    fake.failures["SendDtmf"] = [Failure(grpc.StatusCode.UNAVAILABLE)]
    with pytest.raises(Unavailable):
        await client.send_dtmf("c1", "9")
    assert len(fake.of("SendDtmf")) == 2
