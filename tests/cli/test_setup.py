"""`voicecall setup` on good and bad configs: the checklist, the fixes, the exit code, JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.client.cli_run import run
from voicecall_server.cli_setup import run_setup

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f" * 32
ENV_KEYS = (
    "VOICECALL_CONFIG",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER",
    "TELNYX_API_KEY",
    "TELNYX_CONNECTION_ID",
    "TELNYX_PUBLIC_KEY",
    "PLIVO_AUTH_ID",
    "PLIVO_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "NGROK_AUTHTOKEN",
    "NGROK_DOMAIN",
    "VOICECALL_UNSAFE_ALLOW_SKIP_SIGNATURE_VERIFICATION",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VOICECALL_STORE", str(tmp_path / "store"))


def twilio(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": "+15551230000",
        "twilio": {"accountSid": SID, "authToken": TOKEN},
        "publicUrl": "https://voice.example.com/voice/webhook",
    }
    raw.update(overrides)
    return raw


def write(tmp_path: Path, raw: dict[str, Any]) -> str:
    path = tmp_path / "voicecall.json5"
    path.write_text(json.dumps(raw))
    return str(path)


def checks(tmp_path: Path, raw: dict[str, Any]) -> dict[str, tuple[bool, str, str]]:
    report = run_setup(write(tmp_path, raw))
    return {c.name: (c.ok, c.detail, c.fix) for c in report.checks}


def failed(tmp_path: Path, raw: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {name: (d, f) for name, (ok, d, f) in checks(tmp_path, raw).items() if not ok}


# --- through the CLI --------------------------------------------------------------------------------


def test_a_mock_config_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, {"provider": "mock"})
    rc, out, err = run(capsys, "setup", "--config", path)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"voicecall setup: {path} (provider mock)"
    assert lines[-1] == "ready for calls"
    marks = lines[1:-1]
    assert len(marks) == 8
    assert all(line.startswith("✓ ") for line in marks)


def test_no_config_at_all_is_the_mock_defaults_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "setup")
    assert rc == 0
    assert out.startswith("voicecall setup: (no config file: built-in defaults) (provider mock)\n")


def test_twilio_with_a_loopback_public_url_fails_with_the_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, twilio(publicUrl="http://127.0.0.1:3334/voice/webhook"))
    rc, out, err = run(capsys, "setup", "--config", path)
    assert (rc, err) == (1, "")
    assert (
        "✗ public URL: publicUrl http://127.0.0.1:3334/voice/webhook points at '127.0.0.1', a loopback, "
        "private or local address Twilio cannot reach\n"
        "    fix: set publicUrl to the public https URL of your webhook (a proxy or tunnel forwarding to "
        "http://127.0.0.1:3334/voice/webhook), or let the sidecar expose itself with tunnel.provider "
        '"ngrok" or "tailscale-funnel"\n'
    ) in out
    assert "✓ provider credentials: twilio.accountSid and twilio.authToken set" in out
    assert out.endswith("1 check(s) failed\n")
    assert TOKEN not in out


def test_json_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, twilio(publicUrl="https://10.1.2.3/voice/webhook"))
    rc, out, _ = run(capsys, "setup", "--config", path, "--json")
    assert rc == 1
    data = json.loads(out)
    assert (data["ok"], data["loaded"], data["provider"], data["config"]) == (False, True, "twilio", path)
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["public URL"]["ok"] is False
    assert by_name["public URL"]["fix"].startswith("set publicUrl to the public https URL")
    assert by_name["fromNumber"] == {
        "name": "fromNumber",
        "ok": True,
        "detail": "+15551230000 (it must be a number you own at Twilio)",
        "fix": "",
    }


def test_missing_credentials_name_the_key_and_the_env_var(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, twilio(twilio={"accountSid": SID}, fromNumber=None))
    rc, out, _ = run(capsys, "setup", "--config", path)
    assert rc == 1
    assert (
        "✗ provider credentials: twilio.authToken is required (or set TWILIO_AUTH_TOKEN)\n"
        f"    fix: add twilio.authToken to {path} or export TWILIO_AUTH_TOKEN (copy it from your provider's console)\n"
    ) in out
    assert "✗ fromNumber: fromNumber is required (or set TWILIO_FROM_NUMBER)\n" in out
    assert f"    fix: set fromNumber in {path} to a number you rent from your provider" in out
    assert "the config does not load; the other checks run once these are fixed" in out


def test_whole_openclaw_file_paths_and_a_bad_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    raw = {"plugins": {"entries": {"voice-call": {"config": {"provider": "plivo", "serve": {"port": "x"}}}}}}
    rc, out, _ = run(capsys, "setup", "--config", write(tmp_path, raw), "--json")
    assert rc == 1
    data = json.loads(out)
    assert data["loaded"] is False
    names = {c["name"] for c in data["checks"]}
    assert names == {"provider credentials", "fromNumber", "config file"}
    details = " ".join(c["detail"] for c in data["checks"])
    assert "plugins.entries.voice-call.config.plivo.authId is required (or set PLIVO_AUTH_ID)" in details
    assert "plugins.entries.voice-call.config.serve.port" in details


def test_an_unreadable_config_file_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run(capsys, "setup", "--config", str(tmp_path / "nope.json5"))
    assert rc == 1
    assert "✗ config file: " in out and "cannot read the config file" in out


# --- each check -------------------------------------------------------------------------------------


def test_a_complete_twilio_config_with_streaming_passes(tmp_path: Path) -> None:
    raw = twilio(streaming={"enabled": True}, openai={"apiKey": "sk-test"})
    result = checks(tmp_path, raw)
    assert all(ok for ok, _, _ in result.values()), result
    assert result["streaming"][1].startswith("on: /voice/stream with OpenAI Realtime transcription")
    assert result["TTS voice"][1] == "openai on media streams, key set"
    assert result["audio mode"][1] == "one mode on: media streaming (our STT and TTS)"
    assert result["webhook signatures"][1] == "verified: HMAC-SHA1 with twilio.authToken"


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        (
            {"publicUrl": None},
            "nothing exposes the webhook: Twilio cannot reach http://127.0.0.1:3334/voice/webhook",
        ),
        ({"publicUrl": "https://localhost/voice/webhook"}, "points at 'localhost'"),
        ({"publicUrl": "https://[::1]/voice/webhook"}, "points at '::1'"),
        ({"publicUrl": "https://100.64.1.2/voice/webhook"}, "points at '100.64.1.2'"),
        ({"publicUrl": "https://voice.example.com"}, "has no path, so Twilio would post to / and get 404"),
        (
            {"publicUrl": None, "tunnel": {"provider": "tailscale-serve"}},
            "Tailscale serve is reachable only inside your tailnet",
        ),
    ],
)
def test_public_url_failures(tmp_path: Path, overrides: dict[str, Any], detail: str) -> None:
    bad = failed(tmp_path, twilio(**overrides))
    assert list(bad) == ["public URL"]
    assert detail in bad["public URL"][0]
    assert bad["public URL"][1]


def test_a_tunnel_needs_its_agent_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = twilio(publicUrl=None, tunnel={"provider": "ngrok"})
    monkeypatch.setenv("PATH", str(tmp_path))
    bad = failed(tmp_path, raw)
    assert bad["public URL"][0] == "ngrok is configured but `ngrok` is not on PATH"
    assert bad["public URL"][1].startswith("install it (https://ngrok.com/download)")
    agent = tmp_path / "ngrok"
    agent.write_text("#!/bin/sh\n")
    agent.chmod(0o755)
    assert checks(tmp_path, raw)["public URL"] == (
        True,
        "from ngrok, started with the sidecar (`ngrok` found)",
        "",
    )


def test_streaming_without_an_openai_key_fails(tmp_path: Path) -> None:
    bad = failed(tmp_path, twilio(streaming={"enabled": True}))
    assert list(bad) == ["streaming"]
    assert "OPENAI_API_KEY" in bad["streaming"][1]


def test_edge_tts_fails(tmp_path: Path) -> None:
    bad = failed(tmp_path, twilio(tts={"provider": "edge"}))
    assert list(bad) == ["TTS voice"]
    assert bad["TTS voice"][0] == "tts.provider is edge, which cannot produce telephony audio"
    assert 'set tts.provider to "openai"' in bad["TTS voice"][1]


def test_elevenlabs_on_streams_needs_its_key(tmp_path: Path) -> None:
    raw = twilio(streaming={"enabled": True, "openaiApiKey": "sk-stt"}, tts={"provider": "elevenlabs"})
    bad = failed(tmp_path, raw)
    assert list(bad) == ["TTS voice"]
    assert bad["TTS voice"][1] == "set tts.elevenlabs.apiKey"


def test_an_api_key_sid_is_not_an_account_sid(tmp_path: Path) -> None:
    bad = failed(tmp_path, twilio(twilio={"accountSid": "SK" + "0" * 32, "authToken": TOKEN}))
    assert bad == {
        "provider credentials": (
            "twilio.accountSid is an API key SID (SK...)",
            "use the Account SID (AC followed by 32 hex digits) and its auth token from the Twilio console",
        )
    }


def test_skip_signature_verification_is_a_failure_for_a_real_provider(tmp_path: Path) -> None:
    # Loads only on a loopback-only setup, so the public URL fails too.
    bad = failed(tmp_path, twilio(publicUrl=None, skipSignatureVerification=True))
    assert set(bad) == {"public URL", "webhook signatures"}
    assert (
        bad["webhook signatures"][1] == "remove skipSignatureVerification (it is for local development only)"
    )


def test_skip_signature_verification_refused_by_the_loader_is_reported(tmp_path: Path) -> None:
    report = run_setup(write(tmp_path, twilio(skipSignatureVerification=True)))
    assert not report.ok and not report.loaded
    (check,) = report.checks
    assert check.name == "webhook signatures"
    assert check.fix.startswith("remove skipSignatureVerification")


def test_telnyx_and_plivo_signatures(tmp_path: Path) -> None:
    telnyx = {
        "provider": "telnyx",
        "fromNumber": "+15551230000",
        "telnyx": {"apiKey": "KEYabc", "connectionId": "123", "publicKey": "cHVibGlj"},
        "publicUrl": "https://voice.example.com/voice/webhook",
    }
    result = checks(tmp_path, telnyx)
    assert all(ok for ok, _, _ in result.values()), result
    assert result["webhook signatures"][1] == "verified: Ed25519 with telnyx.publicKey"
    plivo = {**telnyx, "provider": "plivo", "plivo": {"authId": "MA123", "authToken": "tok"}}
    del plivo["telnyx"]
    assert checks(tmp_path, plivo)["provider credentials"] == (
        True,
        "plivo.authId and plivo.authToken set",
        "",
    )


def test_disabled_fails(tmp_path: Path) -> None:
    bad = failed(tmp_path, {"provider": "mock", "enabled": False})
    assert bad == {
        "enabled": ("enabled is false: the sidecar will not place or take calls", "set enabled: true")
    }


def test_config_warnings_are_shown(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run(capsys, "setup", "--config", write(tmp_path, {"provider": "log"}))
    assert rc == 0
    assert "warning: provider: 'log' is deprecated; use 'mock'\n" in out
