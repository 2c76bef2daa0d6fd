"""Twilio webhook signatures: documented vectors, the SDK's validator, JSON bodies, ports, replay keys."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from providers.twilio.signature import (
    MISSING_HEADER,
    compute_signature,
    replay_key,
    skip_key,
    url_candidates,
    verify,
)

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
]
DOCUMENTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


class MultiDict:
    """What the SDK's validator accepts for repeated fields (Flask/Werkzeug style)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([k for k, _ in self.items])

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.items if k == name]


def test_documented_vector() -> None:
    assert compute_signature(TOKEN, URL, PARAMS) == DOCUMENTED
    assert compute_signature(TOKEN, URL, list(reversed(PARAMS))) == DOCUMENTED
    ok = verify(TOKEN, URL, (), PARAMS, DOCUMENTED)
    assert ok.ok
    assert ok.checked_url == URL


def test_tampering_fails_and_names_the_url() -> None:
    tampered = [(k, "9999" if k == "Digits" else v) for k, v in PARAMS]
    bad = verify(TOKEN, URL, (), tampered, DOCUMENTED)
    assert not bad.ok
    assert bad.reason == f"Invalid signature for URL: {URL}"
    assert bad.replay_key is None
    assert not verify("54321", URL, (), PARAMS, DOCUMENTED).ok
    assert not verify(TOKEN, URL + "&x=1", (), PARAMS, DOCUMENTED).ok
    assert not verify(TOKEN, URL, (), PARAMS, "invalid 王").ok


def test_an_unparseable_url_is_refused_not_raised() -> None:
    # Found by coverage-guided fuzzing (bench/fuzz.py): urlsplit raises on an unclosed IPv6 bracket.
    bad = verify(TOKEN, "https://[mycompany.com/myapp.php", ("https://[other/",), PARAMS, DOCUMENTED)
    assert not bad.ok
    assert bad.reason == "Unparseable webhook URL: https://[mycompany.com/myapp.php"


def test_missing_header() -> None:
    result = verify(TOKEN, URL, (), PARAMS, "")
    assert not result.ok
    assert result.reason == MISSING_HEADER


def test_ngrok_hint() -> None:
    url = "https://abc123.ngrok-free.app/voice/webhook"
    result = verify(TOKEN, url, (), PARAMS, DOCUMENTED)
    assert not result.ok
    assert url in result.reason
    assert "ngrok" in result.reason.split(url, 1)[1]


def test_repeated_fields_form_order_and_sdk_order() -> None:
    repeated = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    # Twilio's helper libraries (sorted, de-duplicated values): a published vector.
    sdk = "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert RequestValidator(TOKEN).compute_signature(URL, MultiDict(repeated)) == sdk
    assert verify(TOKEN, URL, (), repeated, sdk).ok
    # Form order kept for the repeated field (stable sort by name).
    form_order = compute_signature(TOKEN, URL, repeated)
    assert form_order != sdk
    assert form_order == compute_signature(TOKEN, URL + "", sorted(repeated, key=lambda kv: kv[0]))
    assert verify(TOKEN, URL, (), repeated, form_order).ok


def test_json_body_sha256() -> None:
    body = b'{"property": "value", "boolean": true}'
    digest = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    assert hashlib.sha256(body).hexdigest() == digest
    url = f"https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={digest}"
    sig = RequestValidator(TOKEN).compute_signature(url, {})
    assert RequestValidator(TOKEN).validate(url, body.decode(), sig)
    ok = verify(TOKEN, url, (), (), sig, body, "application/json")
    assert ok.ok
    assert ok.replay_key is not None
    wrong_body = verify(TOKEN, url, (), (), sig, body + b" ", "application/json")
    assert not wrong_body.ok
    assert "bodySHA256" in wrong_body.reason
    no_hash = verify(
        TOKEN, URL, (), (), RequestValidator(TOKEN).compute_signature(URL, {}), body, "application/json"
    )
    assert not no_hash.ok


def test_port_variants() -> None:
    with_port = "https://voice.example.com:443/hook?callId=1"
    without = "https://voice.example.com/hook?callId=1"
    assert url_candidates(without) == [without, with_port]
    assert url_candidates(with_port) == [with_port, without]
    assert url_candidates("http://h.example:8080/x", ["http://h.example/x"]) == [
        "http://h.example:8080/x",
        "http://h.example/x",
        "http://h.example:80/x",
    ]
    # Twilio signed the URL with the explicit port; we reconstructed it without.
    sig = compute_signature(TOKEN, with_port, PARAMS)
    result = verify(TOKEN, without, (), PARAMS, sig)
    assert result.ok
    assert result.checked_url == with_port
    # A caller-supplied variant (e.g. the public URL's own port) is tried too.
    odd = "https://voice.example.com:8443/hook?callId=1"
    assert verify(TOKEN, without, (odd,), PARAMS, compute_signature(TOKEN, odd, PARAMS)).ok
    assert not verify(TOKEN, without, (), PARAMS, compute_signature(TOKEN, odd, PARAMS)).ok


def test_replay_key_stable_and_distinct() -> None:
    a = verify(TOKEN, URL, (), PARAMS, DOCUMENTED)
    b = verify(TOKEN, URL, (), list(reversed(PARAMS)), DOCUMENTED)
    assert a.replay_key == b.replay_key
    assert a.replay_key is not None
    assert a.replay_key.startswith("twilio:req:")
    expected = hashlib.sha256(
        f"{URL}\n{'&'.join(f'{k}={v}' for k, v in PARAMS)}\n{DOCUMENTED}".encode()
    ).hexdigest()
    assert a.replay_key == "twilio:req:" + expected
    other = [(k, v) for k, v in PARAMS if k != "Digits"]
    assert replay_key(URL, other, compute_signature(TOKEN, URL, other)) != a.replay_key
    assert skip_key("POST", URL, b"a=1") == skip_key("post", URL, b"a=1")
    assert skip_key("POST", URL, b"a=1") != skip_key("POST", URL, b"a=2")
    assert skip_key("POST", URL, b"").startswith("twilio:skip:")


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    token=_text.filter(bool),
    path=st.text("abcxyz/-_", max_size=10),
    params=st.dictionaries(_names, _text, max_size=8),
)
def test_matches_sdk_validator(token: str, path: str, params: dict[str, str]) -> None:
    url = f"https://example.com/{path}?" + urlencode({"callId": path})
    validator = RequestValidator(token)
    sdk = validator.compute_signature(url, params)
    assert compute_signature(token, url, list(params.items())) == sdk
    assert verify(token, url, (), list(params.items()), sdk).ok
    assert validator.validate(url, params, sdk)


@settings(max_examples=100, deadline=None)
@given(
    token=_text.filter(bool),
    items=st.lists(st.tuples(st.sampled_from(["A", "B", "Digits", "a"]), _text), max_size=8),
)
def test_repeated_fields_match_sdk(token: str, items: list[tuple[str, str]]) -> None:
    sdk = RequestValidator(token).compute_signature(URL, MultiDict(items))
    assert verify(token, URL, (), items, sdk).ok
