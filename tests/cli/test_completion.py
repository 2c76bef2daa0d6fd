"""`voicecall completion bash|zsh`: generated from the argparse tree, plugins included; bash run for real."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import FakePlugins
from tests.client.cli_run import run
from voicecall_client.cli import all_commands

BASH = shutil.which("bash") or "/bin/bash"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_script_mentions_every_subcommand(capsys: pytest.CaptureFixture[str], shell: str) -> None:
    rc, out, err = run(capsys, "completion", shell)
    assert (rc, err) == (0, "")
    assert out.strip()
    names = [c.name for c in all_commands()]
    assert "setup" in names  # the server's plugin command is installed in this venv
    for name in names:
        assert f"        {name})" in out or f"'{name}:" in out, name
    if shell == "bash":
        assert out.rstrip().endswith("complete -F _voicecall voicecall")
    else:
        assert out.startswith("#compdef voicecall\n")
        assert "compdef _voicecall voicecall" in out


def test_plugin_commands_and_their_options_are_completed(
    capsys: pytest.CaptureFixture[str], fake_plugins: FakePlugins
) -> None:
    fake_plugins(hello="tests.cli.plugin_fixtures:HELLO")
    _, bash, _ = run(capsys, "completion", "bash")
    _, zsh, _ = run(capsys, "completion", "zsh")
    assert "        hello)" in bash and "--color) COMPREPLY=($(compgen -W 'red blue'" in bash
    assert "'hello:say hello'" in zsh and "'--color[greeting color]:color:(red blue)'" in zsh


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the command line ``words`` (the last one being completed)."""
    probe = (
        f'source "{script}"; COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); '
        'COMPREPLY=(); _voicecall; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", probe, "bash", *words],
        capture_output=True,
        text=True,
        check=True,
        cwd=script.parent,
    )
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completes_commands_options_and_choices(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, out, _ = run(capsys, "completion", "bash")
    script = tmp_path / "voicecall.bash"
    script.write_text(out)
    names = [c.name for c in all_commands()]
    assert complete(script, "voicecall", "") == names
    assert complete(script, "voicecall", "s") == [n for n in names if n.startswith("s")]
    # A global option's value is skipped when finding the subcommand.
    assert complete(script, "voicecall", "--server", "h:1", "dt") == ["dtmf"]
    assert complete(script, "voicecall", "call", "--mode", "") == ["notify", "conversation"]
    assert complete(script, "voicecall", "call", "--m") == ["--message", "--mode"]
    assert complete(script, "voicecall", "dtmf", "--digits", "") == []
    assert complete(script, "voicecall", "completion", "") == ["bash", "zsh"]
    assert "--yes" in complete(script, "voicecall", "smoke", "--")
    assert "--json" in complete(script, "voicecall", "setup", "--")
    (tmp_path / "cfg.json5").write_text("{}")
    assert complete(script, "voicecall", "setup", "--config", "cf") == ["cfg.json5"]
