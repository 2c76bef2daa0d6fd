from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from voicecall_server.webhook.public_url import (
    ForwardingPolicy,
    clean_host,
    is_public_host,
    parse_forwarded,
    reconstruct,
)

PATH = "/voice/webhook?callId=abc&type=status"
TRUST = ForwardingPolicy(trust_forwarding_headers=True)
ALLOW = ForwardingPolicy(allowed_hosts=("voice.example.com",))
PROXY_ONLY = ForwardingPolicy(trust_forwarding_headers=True, trusted_proxy_ips=("10.0.0.5",))
CIDR = ForwardingPolicy(trust_forwarding_headers=True, trusted_proxy_ips=("10.1.0.0/16", "fd00::/8"))
NGROK = ForwardingPolicy.from_settings(
    allow_ngrok_free_tier_loopback_bypass=True, tunnel_provider="ngrok", serve_bind="127.0.0.1"
)
NONE = ForwardingPolicy()


@dataclass
class Case:
    name: str
    policy: ForwardingPolicy
    headers: dict[str, str]
    expected: str
    host: str | None = "127.0.0.1:3334"
    remote: str = "127.0.0.1"
    public_url: str | None = None
    source: str | None = None
    variants: tuple[str, ...] = field(default=())


CASES = [
    Case(
        "nginx x-forwarded",
        TRUST,
        {"x-forwarded-proto": "https", "x-forwarded-host": "voice.example.com", "x-forwarded-for": "1.2.3.4"},
        f"https://voice.example.com{PATH}",
        source="x-forwarded-host",
        variants=(f"https://voice.example.com:3334{PATH}",),
    ),
    Case(
        "x-forwarded-host with port and list",
        TRUST,
        {"x-forwarded-host": "Voice.Example.COM:8443, proxy.internal"},
        f"https://voice.example.com{PATH}",
    ),
    Case(
        "plain http proto honoured when trusted",
        TRUST,
        {"x-forwarded-proto": "http", "x-forwarded-host": "voice.example.com"},
        f"http://voice.example.com{PATH}",
    ),
    Case(
        "bad proto javascript ignored",
        TRUST,
        {"x-forwarded-proto": "javascript", "x-forwarded-host": "voice.example.com"},
        f"https://voice.example.com{PATH}",
    ),
    Case(
        "ngrok free tier from loopback",
        NGROK,
        {"ngrok-forwarded-host": "ab12-203-0-113-7.ngrok-free.app"},
        f"https://ab12-203-0-113-7.ngrok-free.app{PATH}",
        host="ab12-203-0-113-7.ngrok-free.app",
        source="ngrok-forwarded-host",
    ),
    Case(
        "ngrok bypass does not trust a non-loopback peer",
        NGROK,
        {"ngrok-forwarded-host": "evil.example.net"},
        f"https://127.0.0.1{PATH}",
        remote="203.0.113.9",
        source="host",
        variants=(f"https://127.0.0.1:3334{PATH}",),
    ),
    Case(
        "ngrok bypass accepts ipv4-mapped loopback",
        NGROK,
        {"ngrok-forwarded-host": "x.ngrok-free.app"},
        f"https://x.ngrok-free.app{PATH}",
        remote="::ffff:127.0.0.1",
    ),
    Case(
        "tailscale funnel (host header is the node name)",
        NONE,
        {"x-forwarded-for": "198.51.100.7"},
        f"https://node.tail1234.ts.net{PATH}",
        host="node.tail1234.ts.net",
        source="host",
    ),
    Case(
        "rfc 7239 forwarded",
        TRUST,
        {"forwarded": 'for=192.0.2.60;proto=http;host="voice.example.com", for=10.0.0.1;host=other.test'},
        f"http://voice.example.com{PATH}",
        source="forwarded",
    ),
    Case(
        "rfc 7239 quoted ipv6 host",
        TRUST,
        {"forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https;host="[2001:DB8::1]:8443"'},
        f"https://[2001:db8::1]{PATH}",
        source="forwarded",
    ),
    Case(
        "ipv6 literal in x-forwarded-host",
        TRUST,
        {"x-forwarded-host": "[2001:db8::5]:443"},
        f"https://[2001:db8::5]{PATH}",
    ),
    Case(
        "ipv6 host header",
        NONE,
        {},
        f"https://[::1]{PATH}",
        host="[::1]:3334",
        remote="::1",
        variants=(f"https://[::1]:3334{PATH}",),
    ),
    Case(
        "spoofed host without trust",
        NONE,
        {"x-forwarded-host": "evil.example.net", "x-forwarded-proto": "http"},
        f"https://voice.example.com{PATH}",
        host="voice.example.com",
        source="host",
    ),
    Case(
        "untrusted peer with trust configured",
        PROXY_ONLY,
        {"x-forwarded-host": "evil.example.net"},
        f"https://voice.example.com{PATH}",
        host="voice.example.com",
        remote="203.0.113.50",
        source="host",
    ),
    Case(
        "trusted single proxy ip",
        PROXY_ONLY,
        {"x-forwarded-host": "voice.example.com"},
        f"https://voice.example.com{PATH}",
        remote="10.0.0.5",
    ),
    Case(
        "cidr trusted proxy ipv4",
        CIDR,
        {"x-forwarded-host": "voice.example.com"},
        f"https://voice.example.com{PATH}",
        remote="10.1.200.3",
    ),
    Case(
        "cidr trusted proxy ipv6",
        CIDR,
        {"x-forwarded-host": "voice.example.com"},
        f"https://voice.example.com{PATH}",
        remote="fd12::3",
    ),
    Case(
        "peer outside cidr",
        CIDR,
        {"x-forwarded-host": "evil.example.net"},
        f"https://127.0.0.1{PATH}",
        remote="10.2.0.1",
        source="host",
    ),
    Case(
        "userinfo injection rejected, next header used",
        TRUST,
        {"x-forwarded-host": "voice.example.com@evil.example.net", "x-original-host": "voice.example.com"},
        f"https://voice.example.com{PATH}",
        source="x-original-host",
    ),
    Case(
        "userinfo in host header falls back to local",
        NONE,
        {},
        f"http://127.0.0.1:3334{PATH}",
        host="user@evil.example.net",
        source="local",
        variants=(f"http://127.0.0.1{PATH}",),
    ),
    Case(
        "allow list rejects unknown forwarded host",
        ALLOW,
        {"x-forwarded-host": "evil.example.net", "x-original-host": "voice.example.com"},
        f"https://voice.example.com{PATH}",
        source="x-original-host",
    ),
    Case(
        "allow list also guards the host header",
        ALLOW,
        {"x-forwarded-host": "evil.example.net"},
        f"http://127.0.0.1:3334{PATH}",
        host="evil.example.net",
        source="local",
    ),
    Case(
        "invalid hostname characters",
        TRUST,
        {"x-forwarded-host": "bad_host!.example.com", "ngrok-forwarded-host": "ok.ngrok.app"},
        f"https://ok.ngrok.app{PATH}",
        source="ngrok-forwarded-host",
    ),
    Case(
        "hostname over 253 characters",
        TRUST,
        {"x-forwarded-host": ".".join(["a" * 60] * 5)},
        f"https://127.0.0.1{PATH}",
        source="host",
    ),
    Case(
        "publicUrl override keeps request path",
        TRUST,
        {"x-forwarded-host": "evil.example.net"},
        f"https://voice.example.com:8443{PATH}",
        public_url="https://voice.example.com:8443/some/other/path?x=1",
        source="publicUrl",
        variants=(f"https://voice.example.com{PATH}", f"https://voice.example.com:3334{PATH}"),
    ),
    Case(
        "publicUrl without port",
        NONE,
        {},
        f"https://voice.example.com{PATH}",
        host="voice.example.com",
        public_url="https://voice.example.com/voice/webhook",
        source="publicUrl",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reconstruct(case: Case) -> None:
    result = reconstruct(
        policy=case.policy,
        public_url=case.public_url,
        scheme="http",
        host_header=case.host,
        headers=case.headers,
        remote_ip=case.remote,
        path_qs=PATH,
        local_host="127.0.0.1:3334",
    )
    assert result.url == case.expected
    assert result.url not in result.variants
    if case.source is not None:
        assert result.source == case.source
    if case.variants:
        assert result.variants == case.variants


def test_trusted_flag_reports_header_trust() -> None:
    def trusted(policy: ForwardingPolicy) -> bool:
        return reconstruct(
            policy=policy,
            public_url=None,
            scheme="http",
            host_header="h.example.com",
            headers={},
            remote_ip="1.2.3.4",
            path_qs="/",
        ).trusted_forwarding

    assert trusted(TRUST) is True
    assert trusted(NONE) is False
    assert trusted(PROXY_ONLY) is False


def test_path_without_leading_slash_cannot_change_authority() -> None:
    result = reconstruct(
        policy=NONE,
        public_url=None,
        scheme="http",
        host_header="voice.example.com",
        headers={},
        remote_ip="1.2.3.4",
        path_qs="@evil.example.net/x",
    )
    assert result.url == "https://voice.example.com/@evil.example.net/x"


def test_bad_trusted_proxy_entry_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="trustedProxyIPs"):
        ForwardingPolicy(trusted_proxy_ips=("not-an-ip",))


@pytest.mark.parametrize(
    ("bind", "provider", "flag", "expected"),
    [
        ("127.0.0.1", "ngrok", True, True),
        ("::1", "ngrok", True, True),
        ("localhost", "ngrok", True, True),
        ("0.0.0.0", "ngrok", True, False),
        ("127.0.0.1", "tailscale-funnel", True, False),
        ("127.0.0.1", "ngrok", False, False),
    ],
)
def test_ngrok_bypass_is_gated(bind: str, provider: str, flag: bool, expected: bool) -> None:
    policy = ForwardingPolicy.from_settings(
        allow_ngrok_free_tier_loopback_bypass=flag, tunnel_provider=provider, serve_bind=bind
    )
    assert policy.ngrok_loopback_bypass is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Example.COM", ("example.com", None)),
        ("example.com.:80", ("example.com", "80")),
        ("[2001:db8::1]:443", ("[2001:db8::1]", "443")),
        ("a@b.com", None),
        ("example.com:99999", None),
        ("example.com:", None),
        ("2001:db8::1", None),
        ("-bad.example.com", None),
        ("", None),
        ("[::1", None),
        ("[::1]x", None),
    ],
)
def test_clean_host(value: str, expected: tuple[str, str | None] | None) -> None:
    assert clean_host(value) == expected


def test_parse_forwarded_first_element_and_quotes() -> None:
    parsed = parse_forwarded('For="[2001:db8::1]";Host="a\\"b, c";proto=https, host=second')
    assert parsed == {"for": "[2001:db8::1]", "host": 'a"b, c', "proto": "https"}


@pytest.mark.parametrize(
    ("host", "public"),
    [
        ("voice.example.com", True),
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("[2606:4700::1111]", True),
        ("localhost", False),
        ("api.localhost", False),
        ("printer.local", False),
        ("127.0.0.1", False),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("172.20.0.1", False),
        ("192.168.1.1", False),
        ("169.254.10.1", False),
        ("100.64.0.1", False),
        ("100.127.255.254", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:192.168.0.1", False),
        ("intranet", False),
        ("", False),
    ],
)
def test_is_public_host(host: str, public: bool) -> None:
    assert is_public_host(host) is public
