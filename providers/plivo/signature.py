"""Plivo webhook signatures: V3 (preferred) and V2, HMAC-SHA256 (reference section 3.5). Pure functions.

V3 signs ``<base string>.<nonce>``. The base string is the URL without its query; then, when the
URL has a query or the request has POST parameters, ``?`` and the query re-sorted (keys sorted,
values sorted within a key, percent-decoded, ``k=v`` joined by ``&``); when both exist, a ``.``;
then for POST every parameter as ``key`` immediately followed by ``value`` (same sort). This is
exactly what Plivo's SDK helper ``plivo.utils.validate_v3_signature`` computes (the tests compare
the two on generated requests). V2 signs the URL without its query followed by the nonce.

When the V3 headers are present they decide: V2 is only the fallback for requests without them,
because V2 covers neither the query nor the body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlparse, urlunparse

from ..base import Verification, WebhookRequest

V3_HEADER = "x-plivo-signature-v3"
V3_NONCE = "x-plivo-signature-v3-nonce"
V2_HEADER = "x-plivo-signature-v2"
V2_NONCE = "x-plivo-signature-v2-nonce"
HEADERS = (V3_HEADER, V3_NONCE, V2_HEADER, V2_NONCE)
"""Every request header this verifier reads."""
MAX_SIGNATURES = 8
"""Plivo lists one signature per active token during a rotation; more than this is not Plivo."""

Params = Sequence[tuple[str, str]]


def _bare_url(url: str) -> str:
    # urlparse/urlunparse, like the SDK: the query, fragment and ;params are not part of the base.
    parts = urlparse(url)
    return urlunparse((parts.scheme, parts.netloc, parts.path, "", "", ""))


def _grouped(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    return grouped


def _sorted_query(items: Iterable[tuple[str, str]]) -> str:
    grouped = _grouped(items)
    return "&".join(f"{key}={value}" for key in sorted(grouped) for value in sorted(grouped[key]))


def _sorted_post(items: Iterable[tuple[str, str]]) -> str:
    grouped = _grouped(items)
    return "".join(f"{key}{value}" for key in sorted(grouped) for value in sorted(grouped[key]))


def v3_base_string(method: str, url: str, post_params: Params = ()) -> str:
    """The string V3 signs (before ``.<nonce>``). GET requests carry their parameters in the URL."""
    query = _sorted_query(parse_qsl(urlparse(url).query, keep_blank_values=True))
    base = _bare_url(url)
    params = post_params if method.upper() == "POST" else ()
    if params:
        return f"{base}?{query}{'.' if query else ''}{_sorted_post(params)}"
    return f"{base}?{query}" if query else base


def _hmac(auth_token: str, message: str) -> bytes:
    return hmac.new(auth_token.encode(), message.encode(), hashlib.sha256).digest()


def v3_signature(auth_token: str, method: str, url: str, nonce: str, post_params: Params = ()) -> str:
    """The V3 signature Plivo sends for this request (also what test fakes sign with)."""
    digest = _hmac(auth_token, f"{v3_base_string(method, url, post_params)}.{nonce}")
    return base64.b64encode(digest).decode()


def v2_signature(auth_token: str, url: str, nonce: str) -> str:
    return base64.b64encode(_hmac(auth_token, _bare_url(url) + nonce)).decode()


def _decoded(header: str) -> list[bytes]:
    """Each comma-separated signature, base64-decoded (so encodings that differ only in form match)."""
    out: list[bytes] = []
    for part in header.split(",")[:MAX_SIGNATURES]:
        part = part.strip()
        if not part:
            continue
        try:
            out.append(base64.b64decode(part + "=" * (-len(part) % 4), validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def _matches(candidates: Sequence[bytes], expected: bytes) -> bool:
    ok = False
    for candidate in candidates:
        ok |= hmac.compare_digest(candidate, expected)
    return ok


def _key(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def replay_key_v3(url: str, nonce: str) -> str:
    return _key("plivo:v3:", url, nonce)


def replay_key_v2(url: str, nonce: str) -> str:
    return _key("plivo:v2:", url, nonce)


def skip_key(method: str, url: str, body: bytes) -> str:
    return "plivo:skip:" + hashlib.sha256(f"{method}\n{url}\n".encode() + body).hexdigest()


def post_params(request: WebhookRequest) -> list[tuple[str, str]]:
    """The form parameters of a POST, in order; raises ValueError for a body that is not a form."""
    if request.method.upper() != "POST" or not request.body:
        return []
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8 form data") from None
    return parse_qsl(text, keep_blank_values=True)


def _parses(url: str) -> bool:
    # urlparse refuses some hosts (an unclosed "[" reads as a broken IPv6 literal).
    try:
        urlparse(url)
    except ValueError:
        return False
    return True


def _urls(request: WebhookRequest) -> list[str]:
    """The URLs a signature may cover: the request's own (checked parseable by ``verify``) and the
    parseable variants the listener reconstructed."""
    urls = [request.url]
    urls.extend(u for u in request.url_variants if u not in urls and _parses(u))
    return urls


def verify(request: WebhookRequest, auth_token: str, *, skip: bool = False) -> Verification:
    """Check a Plivo webhook; on success the replay key identifies the signed request (URL + nonce)."""
    if skip:
        return Verification(
            True,
            reason="signature verification skipped",
            replay_key=skip_key(request.method, request.url, request.body),
            checked_url=request.url,
        )
    headers = request.headers
    if not headers.get(V3_HEADER) and not headers.get(V2_HEADER):
        return Verification(
            False, reason="Missing Plivo signature headers (V3 or V2)", checked_url=request.url
        )
    if not _parses(request.url):
        # A URL we cannot even parse cannot be the one Plivo signed.
        return Verification(False, reason=f"Unparseable webhook URL: {request.url}", checked_url=request.url)
    if headers.get(V3_HEADER):
        return _verify_v3(request, auth_token)
    return _verify_v2(request, auth_token)


def _verify_v3(request: WebhookRequest, auth_token: str) -> Verification:
    nonce = request.headers.get(V3_NONCE, "")
    if not nonce:
        return Verification(
            False, reason="Missing X-Plivo-Signature-V3-Nonce header", checked_url=request.url
        )
    method = request.method.upper()
    if method not in ("GET", "POST"):
        return Verification(
            False,
            reason=f"Plivo V3 signatures cover GET and POST only, not {method}",
            checked_url=request.url,
        )
    try:
        params = post_params(request)
    except ValueError as err:
        return Verification(False, reason=f"Plivo V3 signature not checked: {err}", checked_url=request.url)
    candidates = _decoded(request.headers[V3_HEADER])
    for url in _urls(request):
        expected = _hmac(auth_token, f"{v3_base_string(method, url, params)}.{nonce}")
        if _matches(candidates, expected):
            return Verification(True, replay_key=replay_key_v3(url, nonce), checked_url=url)
    return Verification(
        False, reason=f"Invalid Plivo V3 signature for URL: {request.url}", checked_url=request.url
    )


def _verify_v2(request: WebhookRequest, auth_token: str) -> Verification:
    nonce = request.headers.get(V2_NONCE, "")
    if not nonce:
        return Verification(
            False, reason="Missing X-Plivo-Signature-V2-Nonce header", checked_url=request.url
        )
    candidates = _decoded(request.headers[V2_HEADER])
    for url in _urls(request):
        if _matches(candidates, _hmac(auth_token, _bare_url(url) + nonce)):
            return Verification(True, replay_key=replay_key_v2(url, nonce), checked_url=url)
    return Verification(
        False, reason=f"Invalid Plivo V2 signature for URL: {request.url}", checked_url=request.url
    )
