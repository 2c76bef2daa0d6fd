from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from tests.client.fake_server import Failure, FakeVoiceCall
from voicecall_client import VoiceCallClient, errors
from voicecall_client.errors import ERROR_CLASSES, ERROR_DOMAIN, VoiceCallError, from_rpc_error
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc

ERROR_CODES = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]

EXPECTED_CLASS_NAMES = {
    grpc.StatusCode.CANCELLED: "Cancelled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}


def test_every_error_code_has_its_named_class() -> None:
    assert set(EXPECTED_CLASS_NAMES) == set(ERROR_CODES)
    for code, name in EXPECTED_CLASS_NAMES.items():
        cls = getattr(errors, name)
        assert ERROR_CLASSES[code] is cls
        assert issubclass(cls, VoiceCallError)


@pytest.mark.parametrize("code", ERROR_CODES, ids=lambda c: c.name)
async def test_every_code_maps_with_reason_and_metadata(
    target: str, fake: FakeVoiceCall, code: grpc.StatusCode
) -> None:
    fake.failures["Status"] = [Failure(code, "SOME_REASON", "it went wrong", {"callId": "c9"})]
    async with VoiceCallClient(target) as client:
        with pytest.raises(VoiceCallError) as info:
            await client.status("c9")
    err = info.value
    assert type(err) is ERROR_CLASSES[code]
    assert err.code is code
    assert (err.reason, err.message, err.metadata) == ("SOME_REASON", "it went wrong", {"callId": "c9"})
    assert str(err) == f"{code.name} SOME_REASON: it went wrong"
    assert err.__cause__ is not None  # the raw gRPC error stays reachable for debugging


async def test_bare_status_has_empty_reason(client: VoiceCallClient, fake: FakeVoiceCall) -> None:
    fake.failures["Status"] = [Failure(grpc.StatusCode.PERMISSION_DENIED, None, "nope")]
    with pytest.raises(errors.PermissionDenied) as info:
        await client.status("c1")
    assert info.value.reason == ""
    assert info.value.metadata == {}
    assert str(info.value) == "PERMISSION_DENIED: nope"


def _sync_status_error(target: str) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.VoiceCallServiceStub(channel)
        try:
            stub.Status(pb.StatusRequest(call_id="c1"), timeout=10)
        except grpc.RpcError as exc:
            return exc
    raise AssertionError("expected an error")


def test_sync_rpc_error_is_mapped(target: str, fake: FakeVoiceCall) -> None:
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.seconds = 3
    fake.failures["Status"] = [
        Failure(
            grpc.StatusCode.FAILED_PRECONDITION,
            "CALL_NOT_ACTIVE",
            "call has ended",
            {"state": "completed"},
            extra_details=[retry],
        )
    ]
    err = from_rpc_error(_sync_status_error(target))
    assert isinstance(err, errors.FailedPrecondition)
    assert (err.reason, err.message, err.metadata) == (
        "CALL_NOT_ACTIVE",
        "call has ended",
        {"state": "completed"},
    )


def test_own_domain_wins_over_a_foreign_error_info(target: str, fake: FakeVoiceCall) -> None:
    foreign = error_details_pb2.ErrorInfo(reason="PROXY_SAYS_NO", domain="proxy.example")
    fake.failures["Status"] = [
        Failure(grpc.StatusCode.ABORTED, "TURN_IN_PROGRESS", "busy", extra_details=[foreign])
    ]
    err = from_rpc_error(_sync_status_error(target))
    assert err.reason == "TURN_IN_PROGRESS"
    fake.failures["Status"] = [
        Failure(grpc.StatusCode.ABORTED, "PROXY_SAYS_NO", "busy", domain="proxy.example")
    ]
    assert from_rpc_error(_sync_status_error(target)).reason == "PROXY_SAYS_NO"


def test_aio_error_without_trailers_or_with_garbage_details() -> None:
    bare = grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), "boom")
    err = from_rpc_error(bare)
    assert isinstance(err, errors.Internal)
    assert (err.reason, err.message) == ("", "boom")
    garbage = grpc.aio.AioRpcError(
        grpc.StatusCode.ABORTED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(("grpc-status-details-bin", b"\xff\xff\xff")),
        "busy",
    )
    err = from_rpc_error(garbage)
    assert isinstance(err, errors.Aborted)
    assert (err.reason, err.message) == ("", "busy")


def test_plain_rpc_error_without_call_accessors_is_unknown() -> None:
    err = from_rpc_error(grpc.RpcError())
    assert isinstance(err, errors.Unknown)
    assert err.code is grpc.StatusCode.UNKNOWN
    assert err.message


def test_error_domain_constant() -> None:
    assert ERROR_DOMAIN == "voicecall.v1"
