"""Telnyx Ed25519 webhook signatures: a key pair made here, cross-checked with PyNaCl."""

from __future__ import annotations

import base64

import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from providers.telnyx.signature import (
    MISSING_HEADERS,
    MISSING_KEY,
    load_public_key,
    skip_key,
    verify,
)

BODY = b'{"data":{"id":"ev-1","event_type":"call.answered","payload":{"call_control_id":"v3:abc"}}}'
NOW = 1_760_000_000


def _keys() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, base64.b64encode(raw).decode()


def _sign(private: Ed25519PrivateKey, ts: int | str, body: bytes = BODY) -> str:
    return base64.b64encode(private.sign(f"{ts}|".encode() + body)).decode()


def _headers(sig: str, ts: int | str) -> dict[str, str]:
    return {"telnyx-signature-ed25519": sig, "telnyx-timestamp": str(ts)}


def test_good_signature_verifies_with_a_replay_key() -> None:
    private, public = _keys()
    result = verify(public, _headers(_sign(private, NOW), NOW), BODY, now=NOW + 10)
    assert result.ok, result.reason
    assert result.replay_key is not None and result.replay_key.startswith("telnyx:")
    assert not result.replay_key.startswith("telnyx:skip:")


def test_tampered_body_and_bad_signature_fail() -> None:
    private, public = _keys()
    sig = _sign(private, NOW)
    tampered = verify(public, _headers(sig, NOW), BODY + b" ", now=NOW)
    assert not tampered.ok and tampered.reason == "Invalid signature" and tampered.replay_key is None
    other_ts = verify(public, _headers(sig, NOW + 1), BODY, now=NOW)
    assert not other_ts.ok and other_ts.reason == "Invalid signature"
    garbage = verify(public, _headers(base64.b64encode(b"x" * 64).decode(), NOW), BODY, now=NOW)
    assert not garbage.ok and garbage.reason == "Invalid signature"
    short = verify(public, _headers(base64.b64encode(b"x" * 10).decode(), NOW), BODY, now=NOW)
    assert not short.ok
    not_b64 = verify(public, _headers("!!!not base64!!!", NOW), BODY, now=NOW)
    assert not not_b64.ok and "not base64" in not_b64.reason


def test_wrong_key_fails() -> None:
    private, _ = _keys()
    _, other_public = _keys()
    result = verify(other_public, _headers(_sign(private, NOW), NOW), BODY, now=NOW)
    assert not result.ok and result.reason == "Invalid signature"


@pytest.mark.parametrize("skew", [301, -301, 3600])
def test_stale_or_future_timestamp_is_rejected_after_the_signature(skew: int) -> None:
    private, public = _keys()
    result = verify(public, _headers(_sign(private, NOW), NOW), BODY, now=NOW + skew)
    assert not result.ok and result.reason == "Timestamp too old"


@pytest.mark.parametrize("skew", [300, -300, 0])
def test_window_edges_pass(skew: int) -> None:
    private, public = _keys()
    assert verify(public, _headers(_sign(private, NOW), NOW), BODY, now=NOW + skew).ok


def test_forged_stale_request_reports_the_signature_not_the_time() -> None:
    _, public = _keys()
    forged = base64.b64encode(b"\x01" * 64).decode()
    result = verify(public, _headers(forged, NOW), BODY, now=NOW + 10_000)
    assert result.reason == "Invalid signature"


def test_base64_and_base64url_spellings_verify_to_one_replay_key() -> None:
    private, public = _keys()
    # Sign until the signature contains a character where the two alphabets differ.
    ts = NOW
    raw = private.sign(f"{ts}|".encode() + BODY)
    while b"+" not in base64.b64encode(raw) and b"/" not in base64.b64encode(raw):
        ts += 1
        raw = private.sign(f"{ts}|".encode() + BODY)
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert std != url
    a = verify(public, _headers(std, ts), BODY, now=ts)
    b = verify(public, _headers(url, ts), BODY, now=ts)
    assert a.ok and b.ok
    assert a.replay_key == b.replay_key
    c = verify(public, _headers(_sign(private, ts, BODY + b"\n"), ts), BODY + b"\n", now=ts)
    assert c.replay_key != a.replay_key


def test_three_public_key_formats() -> None:
    private = Ed25519PrivateKey.generate()
    pub = private.public_key()
    raw_b64 = base64.b64encode(pub.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    pem = pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    der_b64 = base64.b64encode(pub.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()
    headers = _headers(_sign(private, NOW), NOW)
    for key in (raw_b64, pem, der_b64, pem.encode(), pub):
        result = verify(key, headers, BODY, now=NOW)
        assert result.ok, (key, result.reason)
    expected = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
    for key in (raw_b64, pem, der_b64):
        assert load_public_key(key).public_bytes(Encoding.Raw, PublicFormat.Raw) == expected


def test_unusable_public_key_fails_cleanly() -> None:
    private, _ = _keys()
    headers = _headers(_sign(private, NOW), NOW)
    for key in ("not-a-key!!", base64.b64encode(b"\x00" * 40).decode()):
        result = verify(key, headers, BODY, now=NOW)
        assert not result.ok and "public key" in result.reason
    with pytest.raises(ValueError, match="empty"):
        load_public_key("")


@pytest.mark.parametrize("ts", ["17.5", "abc", "-5", "1e9", " ", "\uff11\uff12\uff13"])
def test_non_integer_timestamp_is_rejected(ts: str) -> None:
    private, public = _keys()
    result = verify(public, _headers(_sign(private, ts), ts), BODY, now=NOW)
    assert not result.ok
    assert result.reason in (
        "Invalid telnyx-timestamp header (expected integer Unix seconds)",
        MISSING_HEADERS,
    )


@pytest.mark.parametrize("drop", ["telnyx-signature-ed25519", "telnyx-timestamp"])
def test_missing_headers(drop: str) -> None:
    private, public = _keys()
    headers = _headers(_sign(private, NOW), NOW)
    del headers[drop]
    result = verify(public, headers, BODY, now=NOW)
    assert not result.ok and result.reason == MISSING_HEADERS


def test_missing_key_fails_unless_skipped() -> None:
    private, _ = _keys()
    headers = _headers(_sign(private, NOW), NOW)
    for key in (None, ""):
        result = verify(key, headers, BODY, now=NOW)
        assert not result.ok and result.reason == MISSING_KEY
    skipped = verify(None, {}, BODY, skip=True)
    assert skipped.ok and skipped.replay_key == skip_key({}, BODY)
    assert skipped.replay_key is not None and skipped.replay_key.startswith("telnyx:skip:")
    assert skip_key({}, BODY + b"x") != skipped.replay_key


def test_pynacl_signatures_verify_and_ours_verify_in_pynacl() -> None:
    signing = nacl.signing.SigningKey.generate()
    public = base64.b64encode(bytes(signing.verify_key)).decode()
    message = f"{NOW}|".encode() + BODY
    nacl_sig = base64.b64encode(signing.sign(message).signature).decode()
    assert verify(public, _headers(nacl_sig, NOW), BODY, now=NOW).ok
    # And the other way round: a cryptography key, PyNaCl's verifier.
    private, ours_public = _keys()
    sig = base64.b64decode(_sign(private, NOW))
    nacl.signing.VerifyKey(base64.b64decode(ours_public)).verify(message, sig)
    assert verify(ours_public, _headers(base64.b64encode(sig).decode(), NOW), BODY, now=NOW).ok
