from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

import pytest

from voicecall_client.cli import ENTRY_POINT_GROUP

FakePlugins = Callable[..., None]


@pytest.fixture
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> FakePlugins:
    """Replace the installed `voicecall.cli_commands` entry points with ``name=module:attr`` pairs."""
    real = importlib.metadata.entry_points

    def install(**targets: str) -> None:
        eps = [importlib.metadata.EntryPoint(n, v, ENTRY_POINT_GROUP) for n, v in targets.items()]

        def fake(**params: str) -> object:
            if params.get("group") == ENTRY_POINT_GROUP:
                return importlib.metadata.EntryPoints(eps)
            return real(**params)

        monkeypatch.setattr(importlib.metadata, "entry_points", fake)

    return install
