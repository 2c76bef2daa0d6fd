"""gRPC access control against the real sidecar: bearer token, TLS, mutual TLS, Unix socket."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.e2e.harness import Running, collect, error_reason, make_config, start
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_client.v1 import voicecall_service_pb2_grpc as pb_grpc
from voicecall_server.app import Sidecar, StartupError
from voicecall_server.grpc_security import BearerTokenInterceptor, build_grpc_security, is_loopback_bind

from .certs import SERVER_NAME, ca_with_leaves, self_signed_server

TOKEN = "s3cr3t-grpc-token-for-tests"
TO = "+15551230001"
NAME_OVERRIDE = (("grpc.ssl_target_name_override", SERVER_NAME),)


@pytest.fixture
async def token_server(tmp_path: Path) -> AsyncIterator[Running]:
    running = await start(make_config(tmp_path / "s", grpc={"authToken": TOKEN}))
    yield running
    await running.close()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def expect_unauthenticated(coro: object) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro  # type: ignore[misc]
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
    assert error_reason(info.value) == "UNAUTHENTICATED"
    assert TOKEN not in (info.value.details() or "")


@pytest.mark.parametrize(
    "metadata", [None, bearer("wrong"), (("authorization", TOKEN),), bearer(TOKEN + "x")]
)
async def test_unary_without_the_right_token_is_unauthenticated(
    token_server: Running, metadata: tuple[tuple[str, str], ...] | None
) -> None:
    stub = token_server.stub
    await expect_unauthenticated(stub.Status(pb.StatusRequest(call_id="nope"), metadata=metadata))
    await expect_unauthenticated(
        stub.Initiate(pb.InitiateRequest(to_number=TO, message="hi"), metadata=metadata)
    )
    # Nothing was dialled by the refused Initiate.
    assert token_server.sidecar.manager.live_count == 0


async def test_right_token_reaches_the_servicer(token_server: Running) -> None:
    stub = token_server.stub
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Status(pb.StatusRequest(call_id="nope"), metadata=bearer(TOKEN))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    resp = await stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="hi", mode=pb.CALL_MODE_NOTIFY), metadata=bearer(TOKEN)
    )
    assert resp.call_id


async def test_tail_needs_the_token(token_server: Running) -> None:
    stub = token_server.stub
    refused = stub.Tail(pb.TailRequest(), timeout=10)
    await expect_unauthenticated(refused.read())
    wrong = stub.Tail(pb.TailRequest(), metadata=bearer("nope"), timeout=10)
    await expect_unauthenticated(wrong.read())
    resp = await stub.Initiate(
        pb.InitiateRequest(to_number=TO, message="hi", mode=pb.CALL_MODE_NOTIFY), metadata=bearer(TOKEN)
    )
    stream = stub.Tail(pb.TailRequest(call_id=resp.call_id), metadata=bearer(TOKEN))
    events = await collect(aiter(stream), 1)
    stream.cancel()
    assert events[0].call_id == resp.call_id


async def test_health_and_reflection_stay_open(token_server: Running) -> None:
    health = health_pb2_grpc.HealthStub(token_server.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="voicecall.v1.VoiceCallService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(token_server.channel)
    call = reflection.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    answer = await call.read()
    await call.done_writing()
    names = {s.name for s in answer.list_services_response.service}
    assert "voicecall.v1.VoiceCallService" in names


async def _status_code(channel: grpc.aio.Channel) -> grpc.StatusCode:
    stub = pb_grpc.VoiceCallServiceStub(channel)
    try:
        await stub.Status(pb.StatusRequest(call_id="nope"), timeout=5)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    pem = self_signed_server(tmp_path)
    cfg = make_config(tmp_path / "s", grpc={"tls": {"certFile": str(pem.cert), "keyFile": str(pem.key)}})
    running = await start(cfg)
    target = f"127.0.0.1:{running.sidecar.ports.grpc}"
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=pem.cert.read_bytes())
        async with grpc.aio.secure_channel(target, creds, options=NAME_OVERRIDE) as channel:
            assert await _status_code(channel) == grpc.StatusCode.NOT_FOUND
        # A plaintext client cannot talk to the TLS port.
        async with grpc.aio.insecure_channel(target) as channel:
            assert await _status_code(channel) == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.close()


async def test_tls_and_token_together(tmp_path: Path) -> None:
    pem = self_signed_server(tmp_path)
    tls = {"certFile": str(pem.cert), "keyFile": str(pem.key)}
    running = await start(make_config(tmp_path / "s", grpc={"tls": tls, "authToken": TOKEN}))
    target = f"127.0.0.1:{running.sidecar.ports.grpc}"
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=pem.cert.read_bytes())
        async with grpc.aio.secure_channel(target, creds, options=NAME_OVERRIDE) as channel:
            stub = pb_grpc.VoiceCallServiceStub(channel)
            await expect_unauthenticated(stub.Status(pb.StatusRequest(call_id="x")))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Status(pb.StatusRequest(call_id="x"), metadata=bearer(TOKEN))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await running.close()


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path: Path) -> None:
    pki = ca_with_leaves(tmp_path)
    other = ca_with_leaves(tmp_path, "other")
    tls = {"certFile": str(pki.server.cert), "keyFile": str(pki.server.key), "clientCaFile": str(pki.ca.cert)}
    running = await start(make_config(tmp_path / "s", grpc={"tls": tls}))
    target = f"127.0.0.1:{running.sidecar.ports.grpc}"
    root = pki.ca.cert.read_bytes()
    try:
        client_cert, client_key = pki.client.read()
        good = grpc.ssl_channel_credentials(root, private_key=client_key, certificate_chain=client_cert)
        async with grpc.aio.secure_channel(target, good, options=NAME_OVERRIDE) as channel:
            assert await _status_code(channel) == grpc.StatusCode.NOT_FOUND
        no_cert = grpc.ssl_channel_credentials(root)
        async with grpc.aio.secure_channel(target, no_cert, options=NAME_OVERRIDE) as channel:
            assert await _status_code(channel) == grpc.StatusCode.UNAVAILABLE
        foreign_cert, foreign_key = other.client.read()
        foreign = grpc.ssl_channel_credentials(root, private_key=foreign_key, certificate_chain=foreign_cert)
        async with grpc.aio.secure_channel(target, foreign, options=NAME_OVERRIDE) as channel:
            assert await _status_code(channel) == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.close()


async def test_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "vc.sock"
    running = await start(make_config(tmp_path / "s", grpc={"unixSocket": str(sock)}))
    try:
        assert sock.exists()
        async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
            stub = pb_grpc.VoiceCallServiceStub(channel)
            resp = await stub.Initiate(
                pb.InitiateRequest(to_number=TO, message="hi", mode=pb.CALL_MODE_NOTIFY)
            )
            status = await stub.Status(pb.StatusRequest(call_id=resp.call_id))
            assert status.call.call_id == resp.call_id
    finally:
        await running.close()


async def test_non_loopback_bind_without_token_or_tls_is_refused(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "s", grpc={"bind": "0.0.0.0"})
    sidecar = Sidecar(cfg)
    try:
        with pytest.raises(StartupError, match=r"grpc\.bind is '0\.0\.0\.0'.*grpc\.authToken.*grpc\.tls"):
            await sidecar.start()
        assert sidecar.grpc_server is None
        assert sidecar.runner is None  # refused before anything listens
    finally:
        await sidecar.stop()


def test_non_loopback_bind_is_accepted_with_a_token_or_tls(tmp_path: Path) -> None:
    base = make_config(tmp_path / "s")
    exposed = dataclasses.replace(base.grpc, bind="0.0.0.0")
    with_token = dataclasses.replace(base, grpc=dataclasses.replace(exposed, auth_token=TOKEN))
    interceptors, creds = build_grpc_security(with_token)
    assert len(interceptors) == 1 and isinstance(interceptors[0], BearerTokenInterceptor)
    assert creds is None
    assert TOKEN not in repr(interceptors[0])
    pem = self_signed_server(tmp_path)
    tls_cfg = make_config(
        tmp_path / "s", grpc={"bind": "10.1.2.3", "tls": {"certFile": str(pem.cert), "keyFile": str(pem.key)}}
    )
    interceptors, creds = build_grpc_security(tls_cfg)
    assert interceptors == [] and creds is not None
    unix = dataclasses.replace(base, grpc=dataclasses.replace(exposed, unix_socket=str(tmp_path / "x.sock")))
    assert build_grpc_security(unix) == ([], None)


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback_binds(bind: str, loopback: bool) -> None:
    assert is_loopback_bind(bind) is loopback
