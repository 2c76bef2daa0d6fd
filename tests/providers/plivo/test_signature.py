from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plivo.utils import validate_signature, validate_v3_signature
from plivo.utils.signature_v3 import construct_get_url, construct_post_url, get_signature_v3

from providers.base import WebhookRequest
from providers.plivo.signature import (
    replay_key_v2,
    replay_key_v3,
    v2_signature,
    v3_base_string,
    v3_signature,
    verify,
)

from .fakes import AUTH_TOKEN, signed_callback

URL = "https://voice.example.com/voice/webhook?provider=plivo&flow=answer&callId=c-1"


def _grouped(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in items:
        out.setdefault(key, []).append(value)
    return out


# -- the base string, rule by rule ---------------------------------------------------------------
def test_base_string_without_query_or_params_is_the_bare_url() -> None:
    assert v3_base_string("POST", "https://h.example/x", []) == "https://h.example/x"


def test_query_is_resorted_and_decoded() -> None:
    url = "https://h.example/x?b=2&a=z&a=y&c=%41+b"
    assert v3_base_string("GET", url) == "https://h.example/x?a=y&a=z&b=2&c=A b"


def test_post_params_without_query_follow_a_question_mark() -> None:
    assert (
        v3_base_string("POST", "https://h.example/x", [("B", "2"), ("A", "1")]) == "https://h.example/x?A1B2"
    )


def test_query_and_post_params_are_joined_by_a_dot() -> None:
    base = v3_base_string("POST", "https://h.example/x?q=1", [("K", "v"), ("K", "a")])
    assert base == "https://h.example/x?q=1.KaKv"


def test_known_answer_vector() -> None:
    nonce = "05429567804466091622"
    params = [("CallUUID", "abc"), ("Digits", "12")]
    base = "https://h.example/x?callId=1.CallUUIDabcDigits12"
    expected = base64.b64encode(
        hmac.new(b"token", f"{base}.{nonce}".encode(), hashlib.sha256).digest()
    ).decode()
    assert v3_signature("token", "POST", "https://h.example/x?callId=1", nonce, params) == expected
    assert validate_v3_signature(
        "POST", "https://h.example/x?callId=1", nonce, "token", expected, _grouped(params)
    )


# -- differential against the SDK ----------------------------------------------------------------
_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.~ :/", max_size=12)
_key = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=8)
_segment = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=8)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], str]:
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(st.sampled_from(["voice.example.com", "127.0.0.1", "a.b.example"]))
    port = draw(st.sampled_from(["", ":8443", ":80"]))
    path = "/" + "/".join(draw(st.lists(_segment, max_size=3)))
    keys = draw(st.lists(_key, max_size=3))
    query = draw(st.lists(st.tuples(st.sampled_from(keys) if keys else _key, _text), max_size=5))
    url = f"{scheme}://{host}{port}{path}"
    if query:
        url += "?" + "&".join(f"{k}={v.replace(' ', '+')}" for k, v in query)
    method = draw(st.sampled_from(["GET", "POST"]))
    value = st.text(max_size=16).filter(lambda s: "\x00" not in s)
    params = draw(st.lists(st.tuples(st.sampled_from(keys) if keys else _key, value), max_size=6))
    nonce = draw(st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=24))
    return method, url, params if method == "POST" else [], nonce


@settings(max_examples=300, deadline=None)
@given(requests())
def test_our_signature_is_the_sdks(req: tuple[str, str, list[tuple[str, str]], str]) -> None:
    method, url, params, nonce = req
    ours = v3_signature(AUTH_TOKEN, method, url, nonce, params)
    assert validate_v3_signature(method, url, nonce, AUTH_TOKEN, ours, _grouped(params))
    sdk_base = (
        construct_get_url(url, {}) if method == "GET" else construct_post_url(url, _grouped(params))
    ).decode()
    assert sdk_base == v3_base_string(method, url, params)
    theirs = get_signature_v3(AUTH_TOKEN.encode(), sdk_base, nonce.encode()).decode()
    assert theirs == ours


@settings(max_examples=200, deadline=None)
@given(requests(), st.sampled_from(["token", "url", "nonce", "param"]))
def test_verify_agrees_with_the_sdk_on_tampered_requests(
    req: tuple[str, str, list[tuple[str, str]], str], tamper: str
) -> None:
    method, url, params, nonce = req
    signed = signed_callback(url, params, nonce=nonce, method=method, v2=False)
    assert verify(signed, AUTH_TOKEN).ok
    token, check_url, check_nonce, check_params = AUTH_TOKEN, signed.url, nonce, list(params)
    if tamper == "token":
        token = AUTH_TOKEN + "x"
    elif tamper == "url":
        check_url = signed.url.replace("://", "://x", 1)
    elif tamper == "nonce":
        check_nonce = nonce + "0"
    else:
        check_params.append(("Injected", "1"))
    tampered = WebhookRequest(
        method=method,
        url=check_url,
        path=signed.path,
        query=signed.query,
        headers={**signed.headers, "x-plivo-signature-v3-nonce": check_nonce},
        body=signed.body
        if tamper != "param" or method == "GET"
        else signed.body + (b"&" if signed.body else b"") + b"Injected=1",
    )
    ours = verify(tampered, token).ok
    sdk_params = _grouped(check_params) if method == "POST" else {}
    theirs = validate_v3_signature(
        method, check_url, check_nonce, token, signed.headers["x-plivo-signature-v3"], sdk_params
    )
    assert ours == theirs
    if not (tamper == "param" and method == "GET"):
        assert not ours


@settings(max_examples=100, deadline=None)
@given(requests())
def test_v2_matches_the_sdk(req: tuple[str, str, list[tuple[str, str]], str]) -> None:
    _, url, _, nonce = req
    assert validate_signature(url, nonce, v2_signature(AUTH_TOKEN, url, nonce), AUTH_TOKEN)


# -- verification --------------------------------------------------------------------------------
def test_valid_v3_callback_has_a_replay_key_of_url_and_nonce() -> None:
    req = signed_callback(URL, {"CallUUID": "u-1", "CallStatus": "in-progress"}, nonce="n-1")
    result = verify(req, AUTH_TOKEN)
    assert result.ok
    assert result.replay_key == replay_key_v3(URL, "n-1")
    assert result.replay_key.startswith("plivo:v3:")
    again = verify(
        signed_callback(URL, {"CallUUID": "u-1", "CallStatus": "in-progress"}, nonce="n-1"), AUTH_TOKEN
    )
    assert again.replay_key == result.replay_key
    other = verify(signed_callback(URL, {"CallUUID": "u-1"}, nonce="n-2"), AUTH_TOKEN)
    assert other.replay_key != result.replay_key


def test_any_of_several_signatures_may_match_in_any_base64_form() -> None:
    req = signed_callback(URL, {"CallUUID": "u-1"}, v2=False)
    good = req.headers["x-plivo-signature-v3"]
    bogus = base64.b64encode(b"x" * 32).decode()
    for header in (f"{bogus},{good}", f"{bogus}, {good.rstrip('=')}", f" {good} "):
        headers = {**req.headers, "x-plivo-signature-v3": header}
        assert verify(_with(req, headers=headers), AUTH_TOKEN).ok, header
    headers = {**req.headers, "x-plivo-signature-v3": f"{bogus},not base64!"}
    assert not verify(_with(req, headers=headers), AUTH_TOKEN).ok


def test_wrong_token_fails_and_names_the_url() -> None:
    req = signed_callback(URL, {"CallUUID": "u-1"})
    result = verify(req, "another-token")
    assert not result.ok
    assert result.reason == f"Invalid Plivo V3 signature for URL: {URL}"
    assert result.checked_url == URL
    assert result.replay_key is None


def test_missing_headers_and_nonce_have_reasons() -> None:
    req = signed_callback(URL, {"CallUUID": "u-1"})
    assert verify(_with(req, headers={}), AUTH_TOKEN).reason == "Missing Plivo signature headers (V3 or V2)"
    no_nonce = {k: v for k, v in req.headers.items() if k != "x-plivo-signature-v3-nonce"}
    assert (
        verify(_with(req, headers=no_nonce), AUTH_TOKEN).reason == "Missing X-Plivo-Signature-V3-Nonce header"
    )


def test_v2_is_the_fallback_only_without_v3() -> None:
    req = signed_callback(URL, {"CallUUID": "u-1"})
    v2_only = {k: v for k, v in req.headers.items() if "v3" not in k}
    result = verify(_with(req, headers=v2_only), AUTH_TOKEN)
    assert result.ok
    assert result.replay_key == replay_key_v2(URL, req.headers["x-plivo-signature-v2-nonce"])
    broken_v3 = {**req.headers, "x-plivo-signature-v3": base64.b64encode(b"y" * 32).decode()}
    assert not verify(_with(req, headers=broken_v3), AUTH_TOKEN).ok


def test_port_variant_is_tried_and_reported() -> None:
    signed_url = "https://voice.example.com:8443/voice/webhook?flow=answer"
    req = signed_callback(signed_url, {"CallUUID": "u-1"})
    seen = _with(req, url="https://voice.example.com/voice/webhook?flow=answer", variants=(signed_url,))
    result = verify(seen, AUTH_TOKEN)
    assert result.ok
    assert result.checked_url == signed_url


def test_body_that_is_not_utf8_fails_cleanly() -> None:
    req = signed_callback(URL, {"CallUUID": "u-1"})
    result = verify(_with(req, body=b"\xff\xfe=1"), AUTH_TOKEN)
    assert not result.ok
    assert "UTF-8" in result.reason


def test_skip_mode_passes_with_a_body_derived_replay_key() -> None:
    req = _with(signed_callback(URL, {"CallUUID": "u-1"}), headers={})
    first = verify(req, AUTH_TOKEN, skip=True)
    assert first.ok
    assert first.replay_key is not None
    assert first.replay_key.startswith("plivo:skip:")
    assert verify(req, AUTH_TOKEN, skip=True).replay_key == first.replay_key
    assert verify(_with(req, body=b"CallUUID=u-2"), AUTH_TOKEN, skip=True).replay_key != first.replay_key


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_v3_covers_only_get_and_post(method: str) -> None:
    req = _with(signed_callback(URL, {"CallUUID": "u-1"}), method=method)
    assert not verify(req, AUTH_TOKEN).ok


def _with(
    req: WebhookRequest,
    *,
    headers: dict[str, str] | None = None,
    url: str | None = None,
    variants: tuple[str, ...] = (),
    body: bytes | None = None,
    method: str | None = None,
) -> WebhookRequest:
    return WebhookRequest(
        method=method or req.method,
        url=url or req.url,
        path=req.path,
        query=req.query,
        headers=req.headers if headers is None else headers,
        body=req.body if body is None else body,
        url_variants=variants,
        query_items=req.query_items,
    )


def test_an_unparseable_url_is_refused_not_raised() -> None:
    # Found by coverage-guided fuzzing (bench/fuzz.py): urlsplit raises on an unclosed IPv6 bracket.
    good = signed_callback(URL, {"CallUUID": "u-1"})
    broken = dataclasses.replace(good, url="https://[voice.example.com/voice/webhook")
    result = verify(broken, AUTH_TOKEN)
    assert not result.ok
    assert result.reason == "Unparseable webhook URL: https://[voice.example.com/voice/webhook"


def test_an_unparseable_url_variant_is_skipped() -> None:
    # Signed for URL, received as another form of it: the verifier walks the variants past the
    # broken one to the signed one.
    good = signed_callback(URL, {"CallUUID": "u-1"})
    received = URL.replace("voice.example.com", "voice.example.com:443")
    variants = ("https://[voice.example.com/voice/webhook", URL)
    result = verify(dataclasses.replace(good, url=received, url_variants=variants), AUTH_TOKEN)
    assert result.ok and result.checked_url == URL
