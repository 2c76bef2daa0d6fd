"""TLS to a real grpc.aio server with a throwaway certificate for a name that is not the address."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.client.fake_server import FakeVoiceCall, make_call, serve
from voicecall_client import TlsOptions, Unavailable, VoiceCallClient
from voicecall_client.cli import main

SERVER_NAME = "voicecall.test"


def _self_signed(tmp: Path) -> tuple[Path, bytes, bytes]:
    # Names only SERVER_NAME, never 127.0.0.1, so dialing the address needs the name override.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca = tmp / "ca.pem"
    ca.write_bytes(cert_pem)
    return ca, cert_pem, key_pem


@pytest.fixture
def tls_target(fake: FakeVoiceCall, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca, cert_pem, key_pem = _self_signed(tmp_path)
    creds = grpc.ssl_server_credentials([(key_pem, cert_pem)])
    fake.calls["c1"] = make_call("c1")
    with serve(fake, credentials=creds) as address:
        yield address, ca


async def test_tls_with_server_name_override(tls_target: tuple[str, Path], fake: FakeVoiceCall) -> None:
    address, ca = tls_target
    tls = TlsOptions(ca_file=str(ca), server_name=SERVER_NAME)
    async with VoiceCallClient(address, tls=tls, token="tls-token") as client:
        assert (await client.status("c1")).call_id == "c1"
    assert fake.of("Status")[0].metadata["authorization"] == "Bearer tls-token"


async def test_tls_without_the_name_fails_verification(
    tls_target: tuple[str, Path], fake: FakeVoiceCall
) -> None:
    address, ca = tls_target
    async with VoiceCallClient(address, tls=TlsOptions(ca_file=str(ca)), retry_backoff=0.01) as client:
        with pytest.raises(Unavailable):
            await client.status("c1")
    assert fake.of("Status") == []


def test_cli_tls_flags(tls_target: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    address, ca = tls_target
    rc = main(
        ["--server", address, "--tls-ca", str(ca), "--tls-server-name", SERVER_NAME, "status", "-c", "c1"]
    )
    out, err = capsys.readouterr()
    assert (rc, err) == (0, "")
    assert json.loads(out)["callId"] == "c1"
