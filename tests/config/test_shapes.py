"""File shapes (whole OpenClaw file vs bare plugin config), JSON5 syntax and unreadable files."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicecall_server.config import ConfigError, config_from_mapping, load_config

ENV = {"HOME": "/home/tester"}
P = "plugins.entries.voice-call.config"


def whole(plugin: dict[str, object], **top: object) -> dict[str, object]:
    return {"plugins": {"entries": {"voice-call": {"config": plugin}}}, **top}


def errors_of(raw: dict[str, object], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw, env if env is not None else ENV)
    return info.value.errors


def test_whole_file_reads_the_plugin_entry_and_ignores_other_top_level_keys() -> None:
    raw = whole(
        {"provider": "mock", "serve": {"port": 4100}},
        agents={"defaults": {"anything": 1}},
        gateway={"port": 1},
    )
    raw["plugins"]["entries"]["other-plugin"] = {"config": {"whatever": True}}  # type: ignore[index]
    config = config_from_mapping(raw, ENV)
    assert config.serve.port == 4100


def test_bare_plugin_config_is_read_directly() -> None:
    assert config_from_mapping({"serve": {"port": 4200}}, ENV).serve.port == 4200


def test_whole_file_error_names_the_full_path() -> None:
    assert errors_of(whole({"serve": {"port": "abc"}})) == [
        f"{P}.serve.port: expected a port number 0..65535 (0 = any free port), got 'abc'"
    ]


def test_bare_file_error_names_the_short_path() -> None:
    assert errors_of({"serve": {"port": "abc"}}) == [
        "serve.port: expected a port number 0..65535 (0 = any free port), got 'abc'"
    ]


def test_whole_file_entry_without_config_is_all_defaults() -> None:
    raw = {"plugins": {"entries": {"voice-call": {"enabled": True}}}}
    assert config_from_mapping(raw, ENV).provider == "mock"


def test_whole_file_without_voice_call_entry_is_an_error() -> None:
    errors = errors_of({"plugins": {"entries": {"other": {}}}})
    assert errors == [
        "plugins.entries.voice-call is required (this file has a 'plugins' section, "
        "so it is read as a whole OpenClaw config)"
    ]


def test_whole_file_plugin_config_must_be_an_object() -> None:
    assert errors_of(whole([1, 2])) == [f"{P}: expected an object, got a list"]  # type: ignore[arg-type]


def test_json5_comments_trailing_commas_and_unquoted_keys(tmp_path: Path) -> None:
    file = tmp_path / "voicecall.json5"
    file.write_text(
        """
        // the sidecar's config
        {
          provider: 'mock',          /* single quotes */
          serve: { port: 4300, },    // trailing comma
          allowFrom: ['+15551234567',],
          maxDurationSeconds: 0x3C,  // hex
        }
        """
    )
    config = load_config(file, ENV)
    assert (config.serve.port, config.allow_from, config.max_duration_seconds) == (
        4300,
        ("+15551234567",),
        60,
    )


def test_load_config_accepts_a_whole_openclaw_file(tmp_path: Path) -> None:
    file = tmp_path / "openclaw.json5"
    file.write_text(
        "{plugins: {entries: {'voice-call': {enabled: true, config: {serve: {port: 'x'}}}}}, messages: {}}"
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(file), ENV)
    assert info.value.errors[0].startswith(f"{P}.serve.port:")


def test_parse_error_names_the_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "broken.json5"
    file.write_text("{\n  provider: 'mock',\n  serve: { port: , },\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, ENV)
    (message,) = info.value.errors
    assert message.startswith(f"{file}:3: invalid JSON5:")


def test_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json5"
    with pytest.raises(ConfigError) as info:
        load_config(missing, ENV)
    assert str(info.value).startswith(f"{missing}: cannot read the config file")


def test_non_object_file_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "list.json5"
    file.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must be a JSON5 object"):
        load_config(file, ENV)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "latin1.json5"
    file.write_bytes(b"{inboundGreeting: '\xe9t\xe9'}")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(file, ENV)


def test_config_error_str_has_one_error_per_line() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"serve": {"port": -1}, "maxConcurrentCalls": 0}, ENV)
    assert str(info.value).split("\n") == info.value.errors
    assert len(info.value.errors) == 2
