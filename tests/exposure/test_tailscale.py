from __future__ import annotations

import pytest

from tests.exposure.conftest import Calls
from voicecall_server.exposure import ExposureError, TailscaleExposure, expose_command

DNS = "voicebox.tail1234.ts.net"
ENABLE = "https://login.tailscale.com/f/funnel?node=nTESTCNTRL"


def argvs(calls: Calls) -> list[list[str]]:
    return [list(map(str, c["argv"])) for c in calls() if c["prog"] == "tailscale"]  # type: ignore[call-overload]


async def test_serve_mounts_webhook_and_stream_then_cleans_up(fake_bin: Calls) -> None:
    exposure = TailscaleExposure("serve", 3334, ["/voice/webhook", "/voice/stream"])
    assert await exposure.start() == f"https://{DNS}"
    assert (exposure.dns_name, exposure.node_id) == (DNS, "nTESTCNTRL")
    await exposure.aclose()
    await exposure.aclose()
    assert argvs(fake_bin) == [
        ["status", "--json"],
        ["serve", "--bg", "--yes", "--set-path", "/voice/webhook", "http://127.0.0.1:3334/voice/webhook"],
        ["serve", "--bg", "--yes", "--set-path", "/voice/stream", "http://127.0.0.1:3334/voice/stream"],
        ["serve", "--set-path", "/voice/stream", "off"],
        ["serve", "--set-path", "/voice/webhook", "off"],
    ]


async def test_public_and_local_paths_may_differ(fake_bin: Calls) -> None:
    exposure = TailscaleExposure("funnel", 4000, [("/hook", "/voice/webhook"), "/hook"])
    await exposure.start()
    await exposure.aclose()
    assert argvs(fake_bin)[1] == [
        "funnel",
        "--bg",
        "--yes",
        "--set-path",
        "/hook",
        "http://127.0.0.1:4000/voice/webhook",
    ]
    assert len(argvs(fake_bin)) == 3


async def test_funnel_not_enabled_gives_enable_url(fake_bin: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TS_FUNNEL", "disabled")
    exposure = TailscaleExposure("funnel", 3334, ["/voice/webhook", "/voice/stream"])
    with pytest.raises(ExposureError) as info:
        await exposure.start()
    assert info.value.enable_url == ENABLE
    assert ENABLE in str(info.value)
    # Nothing was mounted, so nothing is unmounted.
    assert [a[0] for a in argvs(fake_bin)] == ["status", "funnel"]


async def test_failed_second_mount_rolls_back_the_first(
    fake_bin: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TS_FAIL_PATH", "/voice/stream")
    exposure = TailscaleExposure("serve", 3334, ["/voice/webhook", "/voice/stream"])
    with pytest.raises(ExposureError, match="/voice/stream"):
        await exposure.start()
    assert argvs(fake_bin)[-1] == ["serve", "--set-path", "/voice/webhook", "off"]


@pytest.mark.parametrize(("state", "message"), [("down", "status --json"), ("Stopped", "not running")])
async def test_tailscale_not_running(
    fake_bin: Calls, monkeypatch: pytest.MonkeyPatch, state: str, message: str
) -> None:
    monkeypatch.setenv("FAKE_TS_STATE", state)
    with pytest.raises(ExposureError, match=message) as info:
        await TailscaleExposure("serve", 3334, ["/voice/webhook"]).start()
    assert "tailscale up" in (info.value.hint or "")
    assert len(argvs(fake_bin)) == 1


async def test_command_timeout(fake_bin: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TS_HANG", "serve")
    exposure = TailscaleExposure("serve", 3334, ["/voice/webhook"], command_timeout_s=0.5)
    with pytest.raises(ExposureError, match=r"did not finish within 0\.5 s"):
        await exposure.start()


async def test_older_client_without_yes_flag(fake_bin: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TS_NO_YES", "1")
    exposure = TailscaleExposure("serve", 3334, ["/voice/webhook"])
    await exposure.start()
    await exposure.aclose()
    assert argvs(fake_bin)[2] == [
        "serve",
        "--bg",
        "--set-path",
        "/voice/webhook",
        "http://127.0.0.1:3334/voice/webhook",
    ]


def test_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="serve or funnel"):
        TailscaleExposure("off", 3334, ["/x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="absolute"):
        TailscaleExposure("serve", 3334, ["voice"])
    with pytest.raises(ValueError, match="at least one"):
        TailscaleExposure("serve", 3334, [])


async def test_expose_command_serve(fake_bin: Calls) -> None:
    out = await expose_command("serve", path="/voice/webhook", port=3334, stream_path="/voice/stream")
    assert out == {
        "ok": True,
        "mode": "serve",
        "path": "/voice/webhook",
        "localUrl": "http://127.0.0.1:3334/voice/webhook",
        "publicUrl": f"https://{DNS}/voice/webhook",
    }
    # The mapping outlives the command: nothing is turned off.
    assert not any(a[-1] == "off" for a in argvs(fake_bin))
    assert len(argvs(fake_bin)) == 3


async def test_expose_command_unknown_mode_means_funnel(fake_bin: Calls) -> None:
    out = await expose_command("bogus", path="/voice/webhook", port=3334, stream_path=None)
    assert out["mode"] == "funnel"
    assert out["ok"] is True
    assert argvs(fake_bin)[1][0] == "funnel"


async def test_expose_command_funnel_failure_hint(fake_bin: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TS_FUNNEL", "disabled")
    out = await expose_command("funnel", path="/voice/webhook", port=3334, stream_path="/voice/stream")
    assert out["ok"] is False
    assert out["publicUrl"] is None
    assert out["localUrl"] == "http://127.0.0.1:3334/voice/webhook"
    assert out["hint"]["enableUrl"] == ENABLE
    assert "funnel" in out["hint"]["note"]


async def test_expose_command_off_removes_serve_and_funnel(fake_bin: Calls) -> None:
    out = await expose_command("off", path="/voice/webhook", port=3334, stream_path="/voice/stream")
    assert out == {"ok": True, "mode": "off", "path": "/voice/webhook"}
    assert argvs(fake_bin) == [
        ["serve", "--set-path", "/voice/webhook", "off"],
        ["serve", "--set-path", "/voice/stream", "off"],
        ["funnel", "--set-path", "/voice/webhook", "off"],
        ["funnel", "--set-path", "/voice/stream", "off"],
    ]


async def test_expose_command_without_tailscale(fake_bin: Calls) -> None:
    out = await expose_command(
        "serve", path="/voice/webhook", port=3334, stream_path=None, executable="tailscale-missing"
    )
    assert out["ok"] is False
    assert "cannot run tailscale" in out["hint"]["note"]
    assert "enableUrl" not in out["hint"]
    off = await expose_command(
        "off", path="/voice/webhook", port=3334, stream_path=None, executable="tailscale-missing"
    )
    assert off["ok"] is False
