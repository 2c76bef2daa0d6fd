"""Coverage-guided fuzzing (atheris, i.e. libFuzzer) of every parser that reads outside input.

    python -m bench.fuzz -runs=20000 -seed=1                    # what tests/reliability runs in CI
    python -m bench.fuzz --all-modules -max_total_time=300      # make fuzz FUZZ_SECONDS=300

The first byte of each input picks a target, the rest is its input; ``bench/fuzz.dict`` gives
libFuzzer the field names the parsers look up by key (coverage cannot see a dict lookup succeed). A target may raise only its
documented error (ValueError for a webhook body, MediaFrameError for a stream frame, ConfigError
for a config); signature verifiers must refuse and never raise. Anything else is a crash:
libFuzzer prints the input, writes it to ``crash-<sha1>`` and exits non-zero. The property-based
suite (tests/reliability/test_fuzz.py) covers the same parsers with shaped inputs; this one is
steered by coverage instead.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import atheris
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Only voicecall's own modules are instrumented (all of them, as they load): instrumenting every
# loaded function, the SDKs' included, costs more than a minute before the first input.
with atheris.instrument_imports(include=["providers", "voicecall_server"]):
    from providers.base import Verification, WebhookRequest
    from providers.mock import parse_mock_event
    from providers.plivo import media as plivo_media
    from providers.plivo import signature as plivo_sig
    from providers.plivo import webhook as plivo_webhook
    from providers.telnyx import media as telnyx_media
    from providers.telnyx import signature as telnyx_sig
    from providers.telnyx import webhook as telnyx_webhook
    from providers.twilio import media as twilio_media
    from providers.twilio import signature as twilio_sig
    from providers.twilio import webhook as twilio_webhook
    from voicecall_server.config import ConfigError, config_from_mapping

URL = "https://voice.example.test/voice/webhook"
OK = Verification(ok=True, replay_key="k")
KEY = Ed25519PrivateKey.generate().public_key()
SIGNATURE_HEADERS = (*twilio_sig.HEADERS, *telnyx_sig.HEADERS, *plivo_sig.HEADERS)


def _request(
    body: bytes, content_type: str, query: dict[str, str], headers: dict[str, str], url: str = URL
) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url=url + (("?" + urlencode(query)) if query else ""),
        path="/voice/webhook",
        query=query,
        headers={"content-type": content_type, **headers},
        body=body,
        query_items=tuple(query.items()),
    )


def _query(fdp: atheris.FuzzedDataProvider) -> dict[str, str]:
    keys = ("callId", "flow", "turnToken", "type")
    return {k: fdp.ConsumeUnicodeNoSurrogates(12) for k in keys if fdp.ConsumeBool()}


def _form_webhook(parse: Callable[[WebhookRequest, Verification], object], data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    query = _query(fdp)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    with contextlib.suppress(ValueError):
        events = parse(_request(body, "application/x-www-form-urlencoded", query, {}), OK)
        assert isinstance(events, list)


def twilio_webhook_target(data: bytes) -> None:
    _form_webhook(twilio_webhook.parse_webhook, data)


def plivo_webhook_target(data: bytes) -> None:
    _form_webhook(plivo_webhook.parse, data)


def telnyx_webhook_target(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        events = telnyx_webhook.parse_webhook(_request(data, "application/json", {}, {}), OK)
        assert isinstance(events, list)


def mock_event_target(data: bytes) -> None:
    with contextlib.suppress(ValueError):  # json's errors are ValueErrors too
        parse_mock_event(json.loads(data), 0)


def media_frame_target(data: bytes) -> None:
    # Bytes and text both reach the parsers (aiohttp hands over text frames as str).
    frames: list[str | bytes] = [data, data.decode("utf-8", "replace")]
    for mod in (twilio_media, telnyx_media, plivo_media):
        for frame in frames:
            with contextlib.suppress(mod.MediaFrameError):
                mod.parse_frame(frame)


def signature_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    headers = {h: fdp.ConsumeUnicodeNoSurrogates(48) for h in SIGNATURE_HEADERS if fdp.ConsumeBool()}
    url = fdp.ConsumeUnicodeNoSurrogates(48) or URL
    fields = [
        (fdp.ConsumeUnicodeNoSurrogates(10), fdp.ConsumeUnicodeNoSurrogates(24))
        for _ in range(fdp.ConsumeIntInRange(0, 6))
    ]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    signature = headers.get(twilio_sig.SIGNATURE_HEADER, "")
    assert not twilio_sig.verify("token", url, (), fields, signature, body).ok
    assert not telnyx_sig.verify(KEY, headers, body).ok
    # The URL is whatever the listener reconstructed from the request's own headers.
    plivo_request = _request(body, "application/x-www-form-urlencoded", {}, headers, url)
    assert not plivo_sig.verify(plivo_request, "token").ok


def config_target(data: bytes) -> None:
    try:
        raw: Any = json.loads(data)
    except ValueError:
        return
    if isinstance(raw, dict):
        with contextlib.suppress(ConfigError):
            config_from_mapping(raw, {})


TARGETS: tuple[Callable[[bytes], None], ...] = (
    twilio_webhook_target,
    plivo_webhook_target,
    telnyx_webhook_target,
    mock_event_target,
    media_frame_target,
    signature_target,
    config_target,
)


def one_input(data: bytes) -> None:
    if not data:
        return
    TARGETS[data[0] % len(TARGETS)](data[1:])


DICTIONARY = Path(__file__).with_name("fuzz.dict")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv if argv is None else argv)
    if "--all-modules" in args:
        # Deeper, and a minute slower to start: the standard library's parsers (json,
        # urllib.parse) and the SDKs guide the fuzzer too. This is how an unparseable webhook URL
        # that made the Twilio verifier raise (urlsplit on "https://[host") was found.
        args.remove("--all-modules")
        atheris.instrument_all()
    if not any(a.startswith("-dict=") for a in args):
        args.append(f"-dict={DICTIONARY}")
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
