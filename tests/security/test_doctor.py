"""`voicecall doctor`: config checks, and a captured failing Twilio webhook explained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from providers.twilio.signature import compute_signature
from voicecall_client import cli, cli_ops
from voicecall_server.doctor import DoctorReport, run_doctor

TOKEN = "twilio-auth-token-for-doctor"
PUBLIC = "https://voice.example.com/voice/webhook"
TWILIO: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "+15550001111",
    "twilio": {"accountSid": "AC" + "1" * 32, "authToken": TOKEN},
}
PARAMS = [
    ("CallSid", "CA" + "2" * 32),
    ("CallStatus", "ringing"),
    ("From", "+15550002222"),
    ("To", "+15550001111"),
]


def write(tmp: Path, name: str, data: dict[str, Any]) -> str:
    path = tmp / name
    path.write_text(json.dumps(data))
    return str(path)


async def doctor(tmp: Path, config: dict[str, Any], request: dict[str, Any] | None = None) -> DoctorReport:
    cfg = write(tmp, "voicecall.json", {"store": str(tmp / "store"), **config})
    req = write(tmp, "request.json", request) if request is not None else None
    return await run_doctor(cfg, req, env={})


def levels(report: DoctorReport, check: str) -> list[str]:
    return [f.level for f in report.findings if f.check == check]


def messages(report: DoctorReport) -> str:
    return "\n".join(f"{f.level} {f.check}: {f.message} | {f.fix}" for f in report.findings)


def captured(
    *,
    signed_url: str = PUBLIC + "?callId=c1",
    token: str = TOKEN,
    headers: dict[str, str] | None = None,
    remote: str = "10.0.0.5",
) -> dict[str, Any]:
    """A Twilio callback signed for ``signed_url`` that reached the listener through a proxy."""
    base = {
        "Host": "127.0.0.1:3334",
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "voice.example.com",
        "X-Twilio-Signature": compute_signature(token, signed_url, PARAMS),
    }
    return {
        "method": "POST",
        "url": "http://127.0.0.1:3334/voice/webhook?callId=c1",
        "headers": {**base, **(headers or {})},
        "body": urlencode(PARAMS),
        "remote": remote,
    }


async def test_good_twilio_config_is_ok(tmp_path: Path) -> None:
    report = await doctor(tmp_path, {**TWILIO, "publicUrl": PUBLIC})
    assert report.ok, messages(report)
    assert levels(report, "credentials") == ["ok"] and levels(report, "publicUrl") == ["ok"]
    assert "ok" in levels(report, "signatures") and levels(report, "grpc") == ["ok"]
    assert TOKEN not in json.dumps(report.to_json()) and TOKEN not in report.render()


async def test_default_config_is_ok_for_the_mock_provider(tmp_path: Path) -> None:
    report = await doctor(tmp_path, {})
    assert report.ok, messages(report)
    assert levels(report, "publicUrl") == ["info"]


@pytest.mark.parametrize(
    ("config", "check", "needle"),
    [
        ({**TWILIO}, "publicUrl", "no public URL"),
        ({**TWILIO, "publicUrl": "http://127.0.0.1:3334/voice/webhook"}, "publicUrl", "loopback, private"),
        ({**TWILIO, "publicUrl": "https://192.168.1.20/voice/webhook"}, "publicUrl", "loopback, private"),
        (
            {**TWILIO, "publicUrl": "https://voicebox.local/voice/webhook"},
            "publicUrl",
            "not a public DNS name",
        ),
        ({**TWILIO, "publicUrl": PUBLIC, "grpc": {"bind": "0.0.0.0"}}, "grpc", "neither grpc.authToken"),
        (
            {**TWILIO, "publicUrl": PUBLIC, "streaming": {"enabled": True, "openaiApiKey": "sk-x"}},
            "streamPath",
            "WebSocket",
        ),
        (
            {**TWILIO, "streaming": {"enabled": True, "openaiApiKey": "sk-x"}},
            "streamPath",
            "is not exposed",
        ),
        ({"provider": "twilio", "fromNumber": "+15550001111"}, "config", "twilio.accountSid is required"),
    ],
)
async def test_problems_are_found(tmp_path: Path, config: dict[str, Any], check: str, needle: str) -> None:
    report = await doctor(tmp_path, config)
    found = [f for f in report.findings if f.check == check and needle in f.message + (f.fix or "")]
    assert found, messages(report)
    if found[0].level == "error":
        assert not report.ok


async def test_warnings_do_not_fail(tmp_path: Path) -> None:
    report = await doctor(
        tmp_path,
        {
            **TWILIO,
            "publicUrl": "http://voice.example.com/voice/webhook",
            "skipSignatureVerification": False,
        },
    )
    assert report.ok, messages(report)
    assert "warning" in levels(report, "publicUrl")
    skip = await doctor(tmp_path, {"skipSignatureVerification": True})
    assert skip.ok and levels(skip, "signatures") == ["warning"]
    trust = await doctor(
        tmp_path,
        {
            **TWILIO,
            "tunnel": {"provider": "tailscale-funnel"},
            "webhookSecurity": {"trustForwardingHeaders": True},
        },
    )
    assert trust.ok and levels(trust, "forwarding") == ["warning"]


async def test_untrusted_proxy_headers_are_named(tmp_path: Path) -> None:
    report = await doctor(tmp_path, {**TWILIO, "tunnel": {"provider": "tailscale-funnel"}}, captured())
    assert not report.ok
    r = report.request
    assert r is not None and not r.verified
    assert r.url == "https://127.0.0.1/voice/webhook?callId=c1" and r.source == "host"
    assert r.variants == ["https://127.0.0.1:3334/voice/webhook?callId=c1"]
    assert r.signed_url == PUBLIC + "?callId=c1"
    assert any(
        "X-Forwarded-Proto, X-Forwarded-Host ignored: webhookSecurity.trustForwardingHeaders is false" in c
        for c in r.causes
    ), r.causes
    text = report.render()
    assert "reconstructed URL: https://127.0.0.1/voice/webhook?callId=c1 (from host)" in text
    assert "also tried: https://127.0.0.1:3334/voice/webhook?callId=c1" in text
    assert "trustForwardingHeaders is false" in text


async def test_trusted_proxy_makes_it_verify(tmp_path: Path) -> None:
    security = {"trustForwardingHeaders": True, "trustedProxyIPs": ["10.0.0.0/8"]}
    report = await doctor(
        tmp_path, {**TWILIO, "webhookSecurity": security, "tunnel": {"provider": "ngrok"}}, captured()
    )
    assert report.request is not None and report.request.verified, report.request
    assert report.request.checked_url == PUBLIC + "?callId=c1"
    assert report.request.source == "x-forwarded-host"
    assert levels(report, "request") == ["ok"]


async def test_peer_outside_trusted_proxy_ips_is_named(tmp_path: Path) -> None:
    security = {"trustForwardingHeaders": True, "trustedProxyIPs": ["192.168.0.1"]}
    report = await doctor(tmp_path, {**TWILIO, "webhookSecurity": security}, captured())
    r = report.request
    assert r is not None and not r.verified
    assert any("peer 10.0.0.5 is not in webhookSecurity.trustedProxyIPs" in c for c in r.causes), r.causes


async def test_host_outside_allowed_hosts_is_named(tmp_path: Path) -> None:
    report = await doctor(
        tmp_path, {**TWILIO, "webhookSecurity": {"allowedHosts": ["other.example.com"]}}, captured()
    )
    r = report.request
    assert r is not None and not r.verified
    assert any("voice.example.com is not in webhookSecurity.allowedHosts" in c for c in r.causes), r.causes


async def test_wrong_public_url_is_named(tmp_path: Path) -> None:
    config = {**TWILIO, "publicUrl": "https://old.example.com/voice/webhook"}
    report = await doctor(tmp_path, config, captured())
    r = report.request
    assert r is not None and not r.verified
    assert r.url == "https://old.example.com/voice/webhook?callId=c1" and r.source == "publicUrl"
    assert r.fix == f"set publicUrl to {PUBLIC}"


async def test_wrong_token_matches_no_url(tmp_path: Path) -> None:
    report = await doctor(tmp_path, {**TWILIO, "publicUrl": PUBLIC}, captured(token="another-token"))
    r = report.request
    assert r is not None and not r.verified and r.signed_url is None
    assert any("matches none of the URLs tried" in c for c in r.causes)
    assert r.fix is not None and "credentials" in r.fix


async def test_missing_signature_header(tmp_path: Path) -> None:
    request = captured()
    del request["headers"]["X-Twilio-Signature"]
    report = await doctor(tmp_path, {**TWILIO, "publicUrl": PUBLIC}, request)
    r = report.request
    assert r is not None and "x-twilio-signature" in r.causes[0]


async def test_unreadable_request_file(tmp_path: Path) -> None:
    report = await run_doctor(write(tmp_path, "c.json", {}), str(tmp_path / "missing.json"), env={})
    assert not report.ok and "cannot read the request file" in messages(report)


# -- through the CLI --------------------------------------------------------------------------------
@pytest.fixture
def voicecall(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real `voicecall` parser with these commands registered as the lead will register them."""
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, *cli_ops.COMMANDS])
    monkeypatch.delenv("VOICECALL_CONFIG", raising=False)
    return cli.main


def test_cli_doctor_json_and_exit_code(
    tmp_path: Path, voicecall: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, "v.json", {**TWILIO, "store": str(tmp_path / "st"), "publicUrl": PUBLIC})
    assert voicecall(["doctor", "--config", cfg, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["request"] is None
    req = write(tmp_path, "r.json", captured(token="wrong"))
    assert voicecall(["doctor", "--config", cfg, "--request", req, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["request"]["verified"] is False
    assert out["request"]["url"] == PUBLIC + "?callId=c1"
    assert voicecall(["doctor", "--config", cfg, "--request", req]) == 1
    text = capsys.readouterr().out
    assert "signature: INVALID" in text and "result: problems found" in text


def test_cli_without_the_server_package(
    voicecall: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "voicecall_server.doctor", None)
    assert voicecall(["doctor"]) == 1
    assert "needs the voicecall sidecar package" in capsys.readouterr().err
