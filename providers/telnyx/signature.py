"""Telnyx webhook signatures (Ed25519), pure functions.

Telnyx signs ``f"{timestamp}|".encode() + raw_body`` with its account Ed25519 key; the signature
arrives in ``telnyx-signature-ed25519`` (base64, some senders base64url) and the Unix-seconds
timestamp in ``telnyx-timestamp``. The signature is checked first, then the freshness window, so a
forged request never learns whether its timestamp would have passed. The replay key hashes the
decoded signature bytes, so both spellings of one signature dedupe together (reference 3.5).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from ..base import Verification

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
HEADERS = (SIGNATURE_HEADER, TIMESTAMP_HEADER)
"""Every request header this verifier reads."""
MAX_SKEW_S = 300
MISSING_HEADERS = "Missing telnyx-signature-ed25519 or telnyx-timestamp header"
MISSING_KEY = "Missing Telnyx public key (telnyx.publicKey)"


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not; ValueError when it is neither."""
    cleaned = "".join(text.split())
    if not cleaned:
        raise ValueError("empty base64")
    alphabet = cleaned.replace("-", "+").replace("_", "/").rstrip("=")
    padded = alphabet + "=" * (-len(alphabet) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


def load_public_key(key: str | bytes) -> Ed25519PublicKey:
    """A Telnyx public key as PEM text, base64 of the raw 32-byte key, or base64 of DER SPKI."""
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    text = text.strip()
    if not text:
        raise ValueError("the Telnyx public key is empty")
    try:
        if text.startswith("-----BEGIN"):
            loaded = load_pem_public_key(text.encode("ascii"))
        else:
            raw = _b64decode(text)
            if len(raw) == 32:
                return Ed25519PublicKey.from_public_bytes(raw)
            loaded = load_der_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("the Telnyx public key is not a PEM, raw base64 or DER SPKI Ed25519 key") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("the Telnyx public key is not an Ed25519 key")
    return loaded


def replay_key(timestamp: str, signature: bytes, body: bytes) -> str:
    digest = hashlib.sha256(timestamp.encode("ascii") + b"\n" + signature + b"\n" + body).hexdigest()
    return "telnyx:" + digest


def skip_key(headers: Mapping[str, str], body: bytes) -> str:
    """A replay key for unverified requests: the headers' values (if any) and the body."""
    sig = headers.get(SIGNATURE_HEADER, "").strip()
    ts = headers.get(TIMESTAMP_HEADER, "").strip()
    try:
        sig_bytes = _b64decode(sig) if sig else b""
    except ValueError:
        sig_bytes = sig.encode("utf-8", "replace")
    digest = hashlib.sha256(ts.encode("utf-8", "replace") + b"\n" + sig_bytes + b"\n" + body).hexdigest()
    return "telnyx:skip:" + digest


def verify(
    public_key: str | bytes | Ed25519PublicKey | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    skip: bool = False,
) -> Verification:
    """Check a Telnyx webhook. ``headers`` have lower-case names; ``now`` is Unix seconds."""
    if skip:
        return Verification(ok=True, replay_key=skip_key(headers, body))
    if public_key is None or (not isinstance(public_key, Ed25519PublicKey) and not public_key):
        return Verification(ok=False, reason=MISSING_KEY)
    sig_text = headers.get(SIGNATURE_HEADER, "").strip()
    ts_text = headers.get(TIMESTAMP_HEADER, "").strip()
    if not sig_text or not ts_text:
        return Verification(ok=False, reason=MISSING_HEADERS)
    if not ts_text.isascii() or not ts_text.isdigit():
        return Verification(
            ok=False, reason="Invalid telnyx-timestamp header (expected integer Unix seconds)"
        )
    try:
        signature = _b64decode(sig_text)
    except ValueError:
        return Verification(ok=False, reason="Invalid telnyx-signature-ed25519 header (not base64)")
    if len(signature) != 64:
        return Verification(ok=False, reason="Invalid signature")
    try:
        key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    except ValueError as err:
        return Verification(ok=False, reason=str(err))
    try:
        key.verify(signature, ts_text.encode("ascii") + b"|" + body)
    except InvalidSignature:
        return Verification(ok=False, reason="Invalid signature")
    current = time.time() if now is None else now
    if abs(current - int(ts_text)) > MAX_SKEW_S:
        return Verification(ok=False, reason="Timestamp too old")
    return Verification(ok=True, replay_key=replay_key(ts_text, signature, body))
