"""The public URL a provider signed, rebuilt from config or from trusted proxy headers.

Reference section 3.6. Signature checks hash the exact URL the provider called, so behind a tunnel
or reverse proxy the listener must know the public scheme and host. Forwarded headers are
attacker-controlled unless a trusted proxy set them, so they are used only under an explicit
policy and every host value is validated before it reaches a URL.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_LOOPBACK_BINDS = frozenset({"127.0.0.1", "::1", "localhost"})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_ULA = ipaddress.ip_network("fc00::/7")
# Header names in the order they are consulted for the host; the first valid value wins.
_HOST_HEADERS = ("x-forwarded-host", "forwarded", "x-original-host", "ngrok-forwarded-host")


@dataclass(frozen=True)
class ForwardingPolicy:
    """When forwarded headers may decide the public host (``webhookSecurity`` + ngrok bypass)."""

    allowed_hosts: tuple[str, ...] = ()
    trust_forwarding_headers: bool = False
    trusted_proxy_ips: tuple[str, ...] = ()
    """Single addresses or CIDR ranges, IPv4 or IPv6."""
    ngrok_loopback_bypass: bool = False
    """Already gated: true only when tunnel.provider is ngrok and serve.bind is loopback."""
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)
    _allowed: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks: list[IPNetwork] = []
        for entry in self.trusted_proxy_ips:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"webhookSecurity.trustedProxyIPs: {entry!r} is not an IP address or CIDR range"
                ) from None
        object.__setattr__(self, "_networks", tuple(networks))
        allowed = frozenset(
            h.strip().lower().strip("[]").rstrip(".") for h in self.allowed_hosts if h.strip()
        )
        object.__setattr__(self, "_allowed", allowed)

    @classmethod
    def from_settings(
        cls,
        *,
        allowed_hosts: Sequence[str] = (),
        trust_forwarding_headers: bool = False,
        trusted_proxy_ips: Sequence[str] = (),
        allow_ngrok_free_tier_loopback_bypass: bool = False,
        tunnel_provider: str = "none",
        serve_bind: str = "127.0.0.1",
    ) -> ForwardingPolicy:
        """Build from ``webhookSecurity.*``, ``tunnel.*`` and ``serve.bind`` (reference 1.2)."""
        bypass = (
            allow_ngrok_free_tier_loopback_bypass
            and tunnel_provider == "ngrok"
            and serve_bind.strip().lower() in _LOOPBACK_BINDS
        )
        return cls(
            allowed_hosts=tuple(allowed_hosts),
            trust_forwarding_headers=trust_forwarding_headers,
            trusted_proxy_ips=tuple(trusted_proxy_ips),
            ngrok_loopback_bypass=bypass,
        )

    def peer_is_trusted_proxy(self, remote_ip: str) -> bool:
        if not self._networks:
            return True
        addr = parse_ip(remote_ip)
        return addr is not None and any(addr in net for net in self._networks if addr.version == net.version)

    def trusts(self, remote_ip: str) -> bool:
        """Whether forwarded headers from this peer may decide the public URL."""
        enabled = bool(self._allowed) or self.trust_forwarding_headers
        if not enabled and self.ngrok_loopback_bypass:
            addr = parse_ip(remote_ip)
            enabled = addr is not None and addr.is_loopback
        return enabled and self.peer_is_trusted_proxy(remote_ip)

    def host_allowed(self, host: str) -> bool:
        return not self._allowed or host.strip("[]") in self._allowed


@dataclass(frozen=True, slots=True)
class ReconstructedUrl:
    url: str
    variants: tuple[str, ...]
    """Other spellings a verifier may try (port stripped or added), never including ``url``."""
    trusted_forwarding: bool
    source: str
    """What decided the scheme/host: publicUrl, a header name, host, or local (for ``doctor``)."""


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a peer string; IPv4-mapped IPv6 (``::ffff:127.0.0.1``) becomes IPv4."""
    text = value.strip().strip("[]").split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def clean_host(value: str) -> tuple[str, str | None] | None:
    """Validate one Host-style value: ``(host, port)`` with host lower-cased, IPv6 in brackets.

    Rejects userinfo (``@``), anything that is not an RFC 1123 name or IP literal, and names over
    253 characters. Only the first comma-separated element is considered.
    """
    text = value.split(",", 1)[0].strip()
    if not text or "@" in text or len(text) > 300:
        return None
    port: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        rest = text[end + 1 :]
        if rest:
            if not rest.startswith(":") or not _valid_port(rest[1:]):
                return None
            port = rest[1:]
        try:
            literal = ipaddress.IPv6Address(text[1:end])
        except ValueError:
            return None
        return f"[{literal.compressed}]", port
    if text.count(":") == 1:
        text, port = text.split(":", 1)
        if not _valid_port(port):
            return None
    elif ":" in text:
        return None
    host = text.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        return None
    return host, port


def _valid_port(text: str) -> bool:
    return bool(_PORT.match(text)) and 0 < int(text) <= 65535


def parse_forwarded(value: str) -> dict[str, str]:
    """The first element of an RFC 7239 ``Forwarded`` header as lower-case keys (quotes removed)."""
    out: dict[str, str] = {}
    element = _split_unquoted(value, ",")[0] if value else ""
    for pair in _split_unquoted(element, ";"):
        key, sep, raw = pair.partition("=")
        if not sep:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        out.setdefault(key.strip().lower(), raw)
    return out


def _split_unquoted(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _forwarded_proto(headers: Mapping[str, str]) -> tuple[str, str] | None:
    xfp = headers.get("x-forwarded-proto")
    if xfp is not None:
        proto = xfp.split(",", 1)[0].strip().lower()
        if proto in ("http", "https"):
            return proto, "x-forwarded-proto"
    fwd = headers.get("forwarded")
    if fwd is not None:
        proto = parse_forwarded(fwd).get("proto", "").strip().lower()
        if proto in ("http", "https"):
            return proto, "forwarded"
    return None


def _forwarded_host(policy: ForwardingPolicy, headers: Mapping[str, str]) -> tuple[str, str] | None:
    for name in _HOST_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        if name == "forwarded":
            raw = parse_forwarded(raw).get("host", "")
        cleaned = clean_host(raw)
        if cleaned is not None and policy.host_allowed(cleaned[0]):
            return cleaned[0], name
    return None


def _path(path_qs: str) -> str:
    # A request target that is not origin-form would otherwise splice into the authority.
    return path_qs if path_qs.startswith("/") else "/" + path_qs


def _with_port(scheme: str, host: str, port: str | None, path: str) -> str:
    return f"{scheme}://{host}{':' + port if port else ''}{path}"


def _dedupe(main: str, candidates: Sequence[str]) -> tuple[str, ...]:
    seen = {main}
    out: list[str] = []
    for c in candidates:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return tuple(out)


def _public_base(public_url: str) -> tuple[str, str, str | None] | None:
    try:
        parts = urlsplit(public_url.strip())
        scheme = parts.scheme.lower()
        hostport = parts.netloc.rpartition("@")[2]
    except ValueError:
        return None
    if scheme not in ("http", "https"):
        return None
    cleaned = clean_host(hostport)
    if cleaned is None:
        return None
    return scheme, cleaned[0], cleaned[1]


def reconstruct(
    *,
    policy: ForwardingPolicy,
    public_url: str | None,
    scheme: str,
    host_header: str | None,
    headers: Mapping[str, str],
    remote_ip: str,
    path_qs: str,
    local_host: str = "localhost",
) -> ReconstructedUrl:
    """The URL the provider most likely signed, plus port variants (reference 3.5 step 3, 3.6).

    ``headers`` uses lower-case names. ``local_host`` (``host[:port]`` of the listener) is the last
    resort when there is no usable Host header.
    """
    path = _path(path_qs)
    host_port = None
    if host_header is not None:
        parsed_host = clean_host(host_header)
        host_port = parsed_host[1] if parsed_host else None
    if public_url:
        base = _public_base(public_url)
        if base is not None:
            pscheme, phost, pport = base
            url = _with_port(pscheme, phost, pport, path)
            variants = [_with_port(pscheme, phost, None, path)]
            if host_port:
                variants.append(_with_port(pscheme, phost, host_port, path))
            return ReconstructedUrl(url, _dedupe(url, variants), False, "publicUrl")

    trusted = policy.trusts(remote_ip)
    proto = "https"
    host: str | None = None
    source = ""
    if trusted:
        found_proto = _forwarded_proto(headers)
        if found_proto is not None:
            proto = found_proto[0]
        found_host = _forwarded_host(policy, headers)
        if found_host is not None:
            host, source = found_host
    if host is None and host_header is not None:
        cleaned = clean_host(host_header)
        if cleaned is not None and policy.host_allowed(cleaned[0]):
            host, source = cleaned[0], "host"
    if host is None:
        local = clean_host(local_host) or ("localhost", None)
        local_scheme = scheme.lower() if scheme.lower() in ("http", "https") else "http"
        url = _with_port(local_scheme, local[0], local[1], path)
        variants = [_with_port(local_scheme, local[0], None, path)]
        return ReconstructedUrl(url, _dedupe(url, variants), trusted, "local")

    url = _with_port(proto, host, None, path)
    variants = [_with_port(proto, host, host_port, path)] if host_port else []
    return ReconstructedUrl(url, _dedupe(url, variants), trusted, source)


def is_public_host(host: str) -> bool:
    """False for names and addresses a provider on the internet cannot reach (``setup``/``doctor``)."""
    addr = parse_ip(host)
    name = host.strip().lower()
    if addr is None:
        cleaned = clean_host(host)
        if cleaned is None:
            return False
        name = cleaned[0]
        addr = parse_ip(name)
    if addr is None:
        return not (name == "localhost" or name.endswith((".localhost", ".local")) or "." not in name)
    if isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr in _ULA:
        return False
    return not (
        addr.is_loopback
        or addr.is_private
        or addr.is_link_local
        or addr.is_unspecified
        or addr.is_multicast
        or addr.is_reserved
    )
