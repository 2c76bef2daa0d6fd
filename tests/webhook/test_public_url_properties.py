from __future__ import annotations

from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from voicecall_server.webhook.public_url import ForwardingPolicy, clean_host, reconstruct

HEADER_NAMES = (
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-original-host",
    "ngrok-forwarded-host",
    "forwarded",
)
# Header values as an HTTP parser hands them over: printable text plus the odd separator.
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF), max_size=80)
header_like = st.one_of(
    header_text,
    st.sampled_from(["[", "]", "@", ":", ",", ";", '"', "host=", "proto=https", "[::1]:80", "a.b:0"]).flatmap(
        lambda s: st.lists(st.sampled_from([s, "x", "1", ".", "-", "["]), max_size=8).map("".join)
    ),
)
policies = st.builds(
    ForwardingPolicy,
    allowed_hosts=st.lists(st.sampled_from(["voice.example.com", "x.ngrok.app"]), max_size=2).map(tuple),
    trust_forwarding_headers=st.booleans(),
    trusted_proxy_ips=st.lists(st.sampled_from(["127.0.0.1", "10.0.0.0/8", "::1"]), max_size=2).map(tuple),
    ngrok_loopback_bypass=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(
    policy=policies,
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_like, max_size=5),
    host=st.one_of(st.none(), header_like),
    remote=st.one_of(st.sampled_from(["127.0.0.1", "::1", "::ffff:127.0.0.2", "10.0.0.1"]), header_text),
    path=st.text(max_size=60),
    public_url=st.one_of(st.none(), header_like, st.just("https://voice.example.com:8443/hook")),
    scheme=st.sampled_from(["http", "https", "ws", ""]),
)
def test_never_raises_and_always_http_url(
    policy: ForwardingPolicy,
    headers: dict[str, str],
    host: str | None,
    remote: str,
    path: str,
    public_url: str | None,
    scheme: str,
) -> None:
    result = reconstruct(
        policy=policy,
        public_url=public_url,
        scheme=scheme,
        host_header=host,
        headers=headers,
        remote_ip=remote,
        path_qs=path,
    )
    for url in (result.url, *result.variants):
        assert url.startswith(("http://", "https://"))
        authority = url.split("://", 1)[1].split("/", 1)[0]
        assert "@" not in authority
        assert clean_host(authority) is not None
    assert result.url not in result.variants
    assert len(set(result.variants)) == len(result.variants)


@settings(max_examples=200, deadline=None)
@given(value=header_like)
def test_untrusted_headers_never_change_the_host(value: str) -> None:
    result = reconstruct(
        policy=ForwardingPolicy(),
        public_url=None,
        scheme="http",
        host_header="voice.example.com",
        headers={name: value for name in HEADER_NAMES},
        remote_ip="203.0.113.1",
        path_qs="/voice/webhook",
    )
    assert urlsplit(result.url).hostname == "voice.example.com"
    assert result.url == "https://voice.example.com/voice/webhook"
