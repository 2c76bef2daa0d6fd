"""Subcommands from the `voicecall.cli_commands` entry-point group: found, run, and a broken one contained."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from tests.cli.conftest import FakePlugins
from tests.client.cli_run import run
from voicecall_client.cli import COMMANDS, ENTRY_POINT_GROUP, all_commands, build_parser, plugin_commands

BUILTIN = [c.name for c in COMMANDS]


def test_a_plugin_command_is_listed_and_runs(
    capsys: pytest.CaptureFixture[str], fake_plugins: FakePlugins
) -> None:
    fake_plugins(hello="tests.cli.plugin_fixtures:HELLO")
    rc, out, err = run(capsys, "hello", "--name", "Ada")
    assert (rc, err) == (0, "")
    assert json.loads(out) == {"hello": "Ada"}
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    assert "hello" in out and "say hello" in out


def test_an_entry_point_may_name_a_list_and_plugins_come_after_the_builtins_sorted(
    fake_plugins: FakePlugins,
) -> None:
    fake_plugins(pair="tests.cli.plugin_fixtures:PAIR", hello="tests.cli.plugin_fixtures:HELLO")
    assert [c.name for c in all_commands()] == [*BUILTIN, "bye", "hello", "zzz"]


def test_plugin_help_carries_its_example(
    capsys: pytest.CaptureFixture[str], fake_plugins: FakePlugins
) -> None:
    fake_plugins(hello="tests.cli.plugin_fixtures:HELLO")
    rc, out, _ = run(capsys, "hello", "--help")
    assert rc == 0
    assert "example:\n  voicecall hello --name Ada" in out


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("tests.cli.broken_plugin:COMMAND", "RuntimeError: this plugin is broken on purpose"),
        (
            "tests.cli.no_such_module:COMMAND",
            "ModuleNotFoundError: No module named 'tests.cli.no_such_module'",
        ),
        ("tests.cli.plugin_fixtures:MISSING", "AttributeError"),
        (
            "tests.cli.plugin_fixtures:NOT_A_COMMAND",
            "TypeError: expected a voicecall_client.cli_base.Command",
        ),
        ("tests.cli.plugin_fixtures:EMPTY", "TypeError: expected a voicecall_client.cli_base.Command"),
    ],
)
def test_a_broken_plugin_warns_in_one_line_and_the_rest_still_works(
    capsys: pytest.CaptureFixture[str], fake_plugins: FakePlugins, target: str, why: str
) -> None:
    fake_plugins(broken=target, hello="tests.cli.plugin_fixtures:HELLO")
    rc, out, err = run(capsys, "hello")
    assert rc == 0
    assert json.loads(out) == {"hello": "world"}
    assert err.count("\n") == 1
    assert err.startswith(f"voicecall: warning: ignoring CLI plugin broken ({target}): ")
    assert why in err
    # Built-ins too, and the broken one is simply absent.
    rc, out, err = run(capsys, "completion", "bash")
    assert rc == 0 and "hello" in out and "broken" not in out
    rc, _, err = run(capsys, "broken")
    assert rc == 2 and "invalid choice: 'broken'" in err


def test_a_plugin_cannot_replace_a_builtin_command(
    capsys: pytest.CaptureFixture[str], fake_plugins: FakePlugins
) -> None:
    warnings: list[str] = []
    fake_plugins(shadow="tests.cli.plugin_fixtures:SHADOW")
    assert plugin_commands(COMMANDS, warnings.append) == []
    assert warnings == [
        "warning: ignoring CLI plugin shadow (tests.cli.plugin_fixtures:SHADOW): command 'call' already exists"
    ]
    rc, _, err = run(capsys, "call", "--help")
    assert rc == 0
    assert "already exists" in err


def test_the_same_entry_point_seen_twice_is_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # One distribution visible through two sys.path entries lists its entry points twice.
    ep = importlib.metadata.EntryPoint("hello", "tests.cli.plugin_fixtures:HELLO", ENTRY_POINT_GROUP)
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda **p: importlib.metadata.EntryPoints([ep, ep])
    )
    warnings: list[str] = []
    assert [c.name for c in plugin_commands(COMMANDS, warnings.append)] == ["hello"]
    assert warnings == []


def test_no_plugins_means_exactly_the_builtins(fake_plugins: FakePlugins) -> None:
    fake_plugins()
    assert [c.name for c in all_commands()] == BUILTIN
    assert "setup" not in BUILTIN  # the server's commands come only through the entry points


# --- the entry points this project registers ----------------------------------------------------------


def test_the_server_registers_setup() -> None:
    from voicecall_server.cli_setup import COMMAND

    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    assert "voicecall_server.cli_setup:COMMAND" in [ep.value for ep in eps]
    warnings: list[str] = []
    found = plugin_commands(COMMANDS, warnings.append)
    assert warnings == []
    assert COMMAND in found


def test_every_command_has_an_example_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    names = [c.name for c in all_commands()]
    assert {"dtmf", "smoke", "completion", "setup"} <= set(names)
    for cmd in all_commands():
        rc, out, err = run(capsys, cmd.name, "--help")
        assert (rc, err) == (0, ""), cmd.name
        assert f"example:\n  {cmd.example}\n" in out, cmd.name
        assert cmd.example.startswith(f"voicecall {cmd.name}") or cmd.name == "completion", cmd.name
    assert "examples:\n  voicecall call" in str(build_parser().epilog)


def test_expose_and_doctor_register_through_the_same_group(
    capsys: pytest.CaptureFixture[str], fake_plugins: FakePlugins
) -> None:
    # The entry points the project's pyproject declares for them (see the report to the lead).
    fake_plugins(ops="voicecall_client.cli_ops:COMMANDS", setup="voicecall_server.cli_setup:COMMAND")
    assert [c.name for c in all_commands()][len(BUILTIN) :] == ["doctor", "expose", "setup"]
    for name in ("doctor", "expose"):
        rc, out, err = run(capsys, name, "--help")
        assert (rc, err) == (0, "")
        assert f"example:\n  voicecall {name}" in out
