"""Write docs/configuration.md from the config schema, so the reference can never drift.

Usage: python scripts/config_reference.py [--check]   (--check: exit 1 if the file is stale)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from voicecall_server.config_check import camel
from voicecall_server.config_schema import Config

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "configuration.md"

ENV = {
    "twilio.accountSid": "TWILIO_ACCOUNT_SID (provider twilio)",
    "twilio.authToken": "TWILIO_AUTH_TOKEN (provider twilio)",
    "fromNumber": "TWILIO_FROM_NUMBER (provider twilio)",
    "telnyx.apiKey": "TELNYX_API_KEY (provider telnyx)",
    "telnyx.connectionId": "TELNYX_CONNECTION_ID (provider telnyx)",
    "telnyx.publicKey": "TELNYX_PUBLIC_KEY (provider telnyx)",
    "plivo.authId": "PLIVO_AUTH_ID (provider plivo)",
    "plivo.authToken": "PLIVO_AUTH_TOKEN (provider plivo)",
    "tunnel.ngrokAuthToken": "NGROK_AUTHTOKEN",
    "tunnel.ngrokDomain": "NGROK_DOMAIN",
    "openai.apiKey": "OPENAI_API_KEY",
    "openai.baseUrl": "OPENAI_BASE_URL",
    "streaming.openaiApiKey": "falls back to openai.apiKey",
    "tts.openai.apiKey": "falls back to openai.apiKey",
    "store": "VOICECALL_STORE, else $XDG_DATA_HOME/voicecall, else ~/.local/share/voicecall",
}

HEADER = """# Configuration reference

Generated from the schema by `scripts/config_reference.py` (`make docs`); a test fails when it is
stale. The file is JSON5: either a whole OpenClaw-style config (the plugin object at
`plugins.entries.voice-call.config`, core TTS at `messages.tts`) or the bare plugin object. Keys are
strict: an unknown or mistyped key is an error naming its full path, and every error is reported
at once. `voicecall-server --check-config --config FILE` prints the effective config with secrets
redacted. With no file at all the sidecar runs the mock provider on loopback.

Provider credentials fall back to their environment variables only for the selected provider. An
empty variable counts as unset. `VOICECALL_UNSAFE_ALLOW_SKIP_SIGNATURE_VERIFICATION=1` permits
`skipSignatureVerification` outside a loopback-only setup (unsafe: anyone who can reach the
webhook can forge calls). Secrets (marked below) never appear in logs, errors or `--check-config`.

| key | default | notes |
| --- | --- | --- |
"""


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if value is None:
        return "—"
    if isinstance(value, Path):
        return str(value)
    return "`" + json.dumps(list(value) if isinstance(value, tuple) else value) + "`"


def _type(hint: Any) -> str:
    if hint is None:
        return ""
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    return (
        text.replace("typing.", "").replace("pathlib.", "").replace(" | ", " or ").replace("NoneType", "None")
    )


def rows(cls: type[Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        key = prefix + str(f.metadata.get("key") or camel(f.name))
        nested = f.metadata.get("nested")
        if nested is not None:
            if f.metadata.get("optional"):
                out.append(f"| `{key}` | — | optional object |")
            out.extend(rows(nested, key + "."))
            continue
        notes = [_type(hints.get(f.name))]
        if f.metadata.get("secret"):
            notes.append("**secret**")
        if key in ENV:
            notes.append("env: " + ENV[key])
        out.append(f"| `{key}` | {_default(f)} | {'; '.join(n for n in notes if n)} |")
    return out


def render() -> str:
    return HEADER + "\n".join(rows(Config)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit("docs/configuration.md is stale: run `make docs`")
        return
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
