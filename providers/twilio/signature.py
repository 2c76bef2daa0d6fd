"""Twilio webhook signatures (X-Twilio-Signature, HMAC-SHA1), pure functions.

The string to sign is the full URL Twilio requested (with its query) followed by each POST form
field, sorted by name, written as name then value with no separators; the HMAC-SHA1 of it keyed by
the auth token, base64-encoded. A JSON body is not in the string: Twilio adds ``bodySHA256`` (hex
SHA-256 of the body) to the URL's query and signs the URL alone. Twilio signs the URL as it saw it,
which behind proxies may differ from ours by an explicit default port, hence the port variants.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..base import Verification

_DEFAULT_PORT = {"https": 443, "http": 80, "wss": 443, "ws": 80}
_NGROK_FREE_SUFFIXES = (".ngrok-free.app", ".ngrok-free.dev", ".ngrok.io", ".ngrok.app")
SIGNATURE_HEADER = "x-twilio-signature"
HEADERS = (SIGNATURE_HEADER,)
"""Every request header this verifier reads."""
MISSING_HEADER = "Missing X-Twilio-Signature header"


def compute_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's signature of ``url`` and form ``params`` (in form order; the sort here is stable,
    so values of a repeated field keep the order in which the form carried them)."""
    data = url + "".join(name + value for name, value in sorted(params, key=_name))
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _name(item: tuple[str, str]) -> str:
    return item[0]


def _sdk_form(params: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The parameter list as Twilio's own helper libraries canonicalise repeated fields (their
    values sorted and de-duplicated), accepted as an alternative when a field repeats."""
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    return [(name, value) for name in sorted(grouped) for value in sorted(grouped[name])]


def canonical_params(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{name}={value}" for name, value in sorted(params, key=_name))


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _with_port(url: str, port: int | None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + host + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_candidates(url: str, variants: Iterable[str] = ()) -> list[str]:
    """``url``, the caller's variants, then each with its port stripped or the scheme's default
    port added; in that order, without repeats."""
    out: list[str] = []
    bases = [url, *variants]
    for candidate in bases:
        if candidate not in out:
            out.append(candidate)
    for candidate in bases:
        try:
            parts = urlsplit(candidate)
            port = parts.port
        except ValueError:
            continue
        default = _DEFAULT_PORT.get(parts.scheme)
        extra = _with_port(candidate, None) if port is not None else _with_port(candidate, default)
        if extra not in out:
            out.append(extra)
    return out


def replay_key(url: str, params: Sequence[tuple[str, str]], signature: str) -> str:
    digest = hashlib.sha256(f"{url}\n{canonical_params(params)}\n{signature}".encode()).hexdigest()
    return "twilio:req:" + digest


def skip_key(method: str, url: str, body: bytes) -> str:
    digest = hashlib.sha256(method.upper().encode() + b"\n" + url.encode() + b"\n" + body).hexdigest()
    return "twilio:skip:" + digest


def _failure(url: str, why: str) -> Verification:
    host = (urlsplit(url).hostname or "").lower()
    hint = ""
    if host.endswith(_NGROK_FREE_SUFFIXES):
        hint = (
            " (ngrok host: Twilio signs the URL it called; make sure publicUrl is exactly the ngrok URL"
            " configured in Twilio, including the path)"
        )
    return Verification(ok=False, reason=f"{why} for URL: {url}{hint}", checked_url=url)


def verify(
    auth_token: str,
    url: str,
    variants: Sequence[str],
    params: Sequence[tuple[str, str]],
    signature: str,
    body: bytes = b"",
    content_type: str = "",
) -> Verification:
    """Check ``signature`` for a webhook whose public URL is ``url`` (``variants``: other forms the
    caller reconstructed). ``params`` are the form fields in form order (empty for JSON bodies)."""
    if not signature:
        return Verification(ok=False, reason=MISSING_HEADER, checked_url=url)
    try:
        parts = urlsplit(url)
    except ValueError:
        # urlsplit refuses some hosts (an unclosed "[" reads as a broken IPv6 literal): a URL we
        # cannot even parse cannot be the one Twilio signed. (url_candidates skips such variants.)
        return Verification(ok=False, reason=f"Unparseable webhook URL: {url}", checked_url=url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signed_params: Sequence[tuple[str, str]] = params
    if "bodySHA256" in query or content_type.split(";")[0].strip().lower() == "application/json":
        expected = query.get("bodySHA256", "")
        if not expected or not hmac.compare_digest(body_sha256(body), expected.lower()):
            return _failure(url, "Body hash does not match bodySHA256")
        signed_params = ()
    forms = [list(signed_params)]
    if len({name for name, _ in signed_params}) != len(signed_params):
        forms.append(_sdk_form(signed_params))
    given = signature.strip().encode("ascii", "replace")
    for candidate in url_candidates(url, variants):
        for form in forms:
            expected_sig = compute_signature(auth_token, candidate, form).encode("ascii")
            if hmac.compare_digest(expected_sig, given):
                return Verification(
                    ok=True, replay_key=replay_key(candidate, form, signature.strip()), checked_url=candidate
                )
    return _failure(url, "Invalid signature")
