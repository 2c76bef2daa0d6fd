"""Exposure at start-up through the real sidecar, with stand-in ngrok/tailscale executables on PATH."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.harness import make_config, start
from voicecall_server.exposure.runtime import exposure_kind, start_exposure

from .conftest import Calls

NGROK_URL = "https://ab12-203-0-113-7.ngrok-free.app"
TS_BASE = "https://voicebox.tail1234.ts.net"
NGROK_TOKEN = "2abcNGROKsecretTOKEN_xyz"


async def test_ngrok_tunnel_gives_the_public_webhook_url(tmp_path: Path, fake_bin: Calls) -> None:
    cfg = make_config(
        tmp_path / "s",
        tunnel={"provider": "ngrok", "ngrokAuthToken": NGROK_TOKEN, "ngrokDomain": "vc.example.com"},
    )
    running = await start(cfg)
    try:
        expected = f"{NGROK_URL}/voice/webhook"
        assert running.sidecar.manager.webhook_url == expected
        assert running.sidecar.listener is not None
        assert running.sidecar.listener.settings.public_url == expected
        first = fake_bin()[0]
        assert first["argv"] == [
            "http",
            str(running.sidecar.ports.http),
            "--log",
            "stdout",
            "--log-format",
            "json",
            "--domain",
            "vc.example.com",
        ]
        # The token reaches the agent by environment, never on its command line.
        assert first["token"] == NGROK_TOKEN
        assert NGROK_TOKEN not in json.dumps(first["argv"])
    finally:
        await running.close()
    assert any(c.get("event") == "terminated" for c in fake_bin())


async def test_ngrok_failure_falls_back_to_the_local_url_with_a_warning(
    tmp_path: Path, fake_bin: Calls, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAKE_NGROK_MODE", "err_auth")
    caplog.set_level(logging.WARNING)
    cfg = make_config(tmp_path / "s", tunnel={"provider": "ngrok", "ngrokAuthToken": NGROK_TOKEN})
    running = await start(cfg)
    try:
        assert running.sidecar.manager.webhook_url == running.webhook_url
        warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
        assert "ngrok exposure failed" in warning and "ngrokAuthToken" in warning
        assert NGROK_TOKEN not in caplog.text
        # The sidecar is healthy on its local URL.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{running.sidecar.ports.http}/healthz") as resp:
                assert resp.status == 200
    finally:
        await running.close()


@pytest.mark.parametrize(
    ("overrides", "mode"),
    [
        ({"tunnel": {"provider": "tailscale-funnel"}}, "funnel"),
        ({"tunnel": {"provider": "tailscale-serve"}}, "serve"),
        ({"tailscale": {"mode": "funnel"}}, "funnel"),
        ({"tailscale": {"mode": "serve"}}, "serve"),
    ],
)
async def test_tailscale_mounts_webhook_and_stream_paths(
    tmp_path: Path, fake_bin: Calls, overrides: dict[str, dict[str, str]], mode: str
) -> None:
    running = await start(make_config(tmp_path / "s", **overrides))
    port = running.sidecar.ports.http
    try:
        assert running.sidecar.manager.webhook_url == f"{TS_BASE}/voice/webhook"
        mounts = [c["argv"] for c in fake_bin() if c["prog"] == "tailscale"]
        assert mounts == [
            ["status", "--json"],
            [mode, "--bg", "--yes", "--set-path", "/voice/webhook", f"http://127.0.0.1:{port}/voice/webhook"],
            [mode, "--bg", "--yes", "--set-path", "/voice/stream", f"http://127.0.0.1:{port}/voice/stream"],
        ]
    finally:
        await running.close()
    offs = [c["argv"] for c in fake_bin()][3:]
    assert offs == [
        [mode, "--set-path", "/voice/stream", "off"],
        [mode, "--set-path", "/voice/webhook", "off"],
    ]


async def test_tailscale_failure_is_not_fatal(
    tmp_path: Path, fake_bin: Calls, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAKE_TS_FUNNEL", "disabled")
    caplog.set_level(logging.WARNING)
    running = await start(make_config(tmp_path / "s", tunnel={"provider": "tailscale-funnel"}))
    try:
        assert running.sidecar.manager.webhook_url == running.webhook_url
        assert "https://login.tailscale.com/f/funnel?node=nTESTCNTRL" in caplog.text
    finally:
        await running.close()


async def test_tailscale_down_is_not_fatal(
    tmp_path: Path, fake_bin: Calls, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAKE_TS_STATE", "down")
    caplog.set_level(logging.WARNING)
    cfg = make_config(tmp_path / "s", tailscale={"mode": "serve"})
    exposed = await start_exposure(cfg, 4321)
    await exposed.close()
    assert exposed.public_webhook_url is None
    assert "tailscale up" in caplog.text


async def test_public_url_wins_and_starts_nothing(tmp_path: Path, fake_bin: Calls) -> None:
    cfg = make_config(
        tmp_path / "s", publicUrl="https://hooks.example.com/voice/webhook", tunnel={"provider": "ngrok"}
    )
    exposed = await start_exposure(cfg, 4321)
    await exposed.close()
    assert exposed.public_webhook_url == "https://hooks.example.com/voice/webhook"
    assert fake_bin() == []
    assert exposure_kind(cfg) == "publicUrl"


async def test_nothing_configured_exposes_nothing(tmp_path: Path, fake_bin: Calls) -> None:
    cfg = make_config(tmp_path / "s")
    exposed = await start_exposure(cfg, 4321)
    await exposed.close()
    assert exposed.public_webhook_url is None and fake_bin() == []
    assert exposure_kind(cfg) == "none"
