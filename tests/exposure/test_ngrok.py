from __future__ import annotations

import os

import pytest

from tests.exposure.conftest import Calls
from voicecall_server.exposure import ExposureError, NgrokTunnel

TOKEN = "2liRFztF0ZxXci2fR6wtyy95UT6_6oDvvoQNrYhSVs3ttnQam"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_start_reads_url_from_json_log_and_stops_with_sigterm(fake_bin: Calls) -> None:
    tunnel = NgrokTunnel(3334, auth_token=TOKEN, domain="voice.ngrok.app")
    try:
        url = await tunnel.start()
        assert url == "https://ab12-203-0-113-7.ngrok-free.app"
        assert tunnel.running
        assert await tunnel.start() == url
    finally:
        await tunnel.aclose()
    calls = fake_bin()
    assert calls[0]["argv"] == [
        "http",
        "3334",
        "--log",
        "stdout",
        "--log-format",
        "json",
        "--domain",
        "voice.ngrok.app",
    ]
    # The token reaches the agent through its environment, never through argv.
    assert calls[0]["token"] == TOKEN
    assert all(TOKEN not in str(c.get("argv")) for c in calls)
    assert len([c for c in calls if "argv" in c]) == 1
    assert calls[-1]["event"] == "terminated"
    assert not _pid_alive(int(str(calls[0]["pid"])))
    assert tunnel.public_url is None
    assert not tunnel.running
    assert TOKEN not in repr(tunnel)


async def test_without_token_or_domain(fake_bin: Calls) -> None:
    tunnel = NgrokTunnel(8080)
    try:
        assert (await tunnel.start()).startswith("https://")
    finally:
        await tunnel.aclose()
        await tunnel.aclose()
    first = fake_bin()[0]
    assert first["argv"] == ["http", "8080", "--log", "stdout", "--log-format", "json"]
    assert first["token"] is None


async def test_keeps_draining_log_after_start(fake_bin: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NGROK_MODE", "chatty")
    tunnel = NgrokTunnel(3334)
    try:
        await tunnel.start()
        for _ in range(5):
            # A blocked pipe would stop the agent; the reader tasks must still be running.
            assert all(not t.done() for t in tunnel._readers)
    finally:
        await tunnel.aclose()
    assert fake_bin()[-1]["event"] == "terminated"


async def test_err_ngrok_failure_never_shows_the_token(
    fake_bin: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NGROK_MODE", "err_auth")
    tunnel = NgrokTunnel(3334, auth_token=TOKEN)
    with pytest.raises(ExposureError) as info:
        await tunnel.start()
    err = info.value
    assert "ERR_NGROK_105" in str(err)
    assert "NGROK_AUTHTOKEN" in (err.hint or "")
    for text in (str(err), repr(err), err.message, err.hint or "", repr(err.args)):
        assert TOKEN not in text
    assert tunnel.public_url is None


async def test_err_ngrok_on_stderr_stops_the_agent(fake_bin: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NGROK_MODE", "err_stderr")
    tunnel = NgrokTunnel(3334, auth_token=TOKEN)
    with pytest.raises(ExposureError, match="ERR_NGROK_108"):
        await tunnel.start()
    calls = fake_bin()
    assert calls[-1]["event"] == "terminated"
    assert not _pid_alive(int(str(calls[0]["pid"])))


async def test_early_exit(fake_bin: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NGROK_MODE", "exit")
    with pytest.raises(ExposureError, match="exited with code 3"):
        await NgrokTunnel(3334).start()


async def test_timeout_without_started_tunnel(fake_bin: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NGROK_MODE", "hang")
    tunnel = NgrokTunnel(3334, auth_token=TOKEN, start_timeout_s=0.5)
    with pytest.raises(ExposureError, match=r"did not report a tunnel URL within 0\.5 s") as info:
        await tunnel.start()
    assert TOKEN not in str(info.value)
    calls = fake_bin()
    assert calls[-1]["event"] == "terminated"
    assert not _pid_alive(int(str(calls[0]["pid"])))


async def test_sigkill_when_sigterm_is_ignored(fake_bin: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NGROK_MODE", "stubborn")
    tunnel = NgrokTunnel(3334, stop_grace_s=0.3)
    await tunnel.start()
    await tunnel.aclose()
    calls = fake_bin()
    assert not any(c.get("event") == "terminated" for c in calls)
    assert not _pid_alive(int(str(calls[0]["pid"])))


async def test_missing_executable(fake_bin: Calls) -> None:
    with pytest.raises(ExposureError, match="cannot run ngrok"):
        await NgrokTunnel(3334, executable="ngrok-does-not-exist", auth_token=TOKEN).start()
