"""`voicecall expose` through the real CLI parser, with the stand-in tailscale on PATH."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voicecall_client import cli, cli_ops

from .conftest import Calls

TS = "https://voicebox.tail1234.ts.net"


@pytest.fixture
def voicecall(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, *cli_ops.COMMANDS])
    monkeypatch.delenv("VOICECALL_CONFIG", raising=False)
    monkeypatch.setenv("VOICECALL_STORE", str(tmp_path / "store"))
    return cli.main


def run(voicecall: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = voicecall(["expose", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_funnel_defaults_from_the_config(
    voicecall: Any, fake_bin: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(voicecall, capsys)
    assert code == 0
    assert out == {
        "ok": True,
        "mode": "funnel",
        "path": "/voice/webhook",
        "localUrl": "http://127.0.0.1:3334/voice/webhook",
        "publicUrl": f"{TS}/voice/webhook",
    }
    argvs = [c["argv"] for c in fake_bin()]
    assert argvs[1:] == [
        ["funnel", "--bg", "--yes", "--set-path", "/voice/webhook", "http://127.0.0.1:3334/voice/webhook"],
        ["funnel", "--bg", "--yes", "--set-path", "/voice/stream", "http://127.0.0.1:3334/voice/stream"],
    ]


def test_serve_with_path_port_and_config(
    voicecall: Any, fake_bin: Calls, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "v.json"
    cfg.write_text(
        json.dumps({"serve": {"path": "/hooks/voice"}, "streaming": {"streamPath": "/hooks/media"}})
    )
    code, out = run(voicecall, capsys, "--mode", "serve", "--port", "4000", "--config", str(cfg))
    assert code == 0
    assert out["mode"] == "serve" and out["publicUrl"] == f"{TS}/hooks/voice"
    assert out["localUrl"] == "http://127.0.0.1:4000/hooks/voice"
    argvs = [list(c["argv"]) for c in fake_bin() if isinstance(c["argv"], list)]
    mounted = [a[4] for a in argvs if a[0] == "serve"]
    assert mounted == ["/hooks/voice", "/hooks/media"]


def test_off_removes_serve_and_funnel(
    voicecall: Any, fake_bin: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(voicecall, capsys, "--mode", "off")
    assert code == 0 and out == {"ok": True, "mode": "off", "path": "/voice/webhook"}
    assert {tuple(c["argv"]) for c in fake_bin() if isinstance(c["argv"], list)} == {
        (mode, "--set-path", path, "off")
        for mode in ("serve", "funnel")
        for path in ("/voice/webhook", "/voice/stream")
    }


def test_funnel_not_enabled_gives_the_enable_url(
    voicecall: Any, fake_bin: Calls, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TS_FUNNEL", "disabled")
    code, out = run(voicecall, capsys, "--mode", "funnel")
    assert code == 1
    assert out["ok"] is False and out["publicUrl"] is None
    assert out["hint"]["enableUrl"] == "https://login.tailscale.com/f/funnel?node=nTESTCNTRL"


def test_bad_config_is_reported(
    voicecall: Any, fake_bin: Calls, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "v.json"
    cfg.write_text(json.dumps({"serve": {"nope": 1}}))
    assert voicecall(["expose", "--config", str(cfg)]) == 1
    assert "unknown key 'nope'" in capsys.readouterr().err
    assert fake_bin() == []
