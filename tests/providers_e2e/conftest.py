"""Shared helpers: a sidecar whose publicUrl is its own loopback listener, and a signed poster."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

from voicecall_server.config import Config

from ..e2e.harness import make_config

WEBHOOK_PATH = "/voice/webhook"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_public_config(store: Path, **overrides: Any) -> tuple[Config, str]:
    """A config whose ``publicUrl`` is the sidecar's own webhook listener, so providers sign over
    exactly the URL the listener reconstructs. The port is picked before start (the URL must be
    known to the config), then pinned on ``serve.port``."""
    port = free_port()
    public = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    cfg = make_config(store, publicUrl=public, **overrides)
    return dataclasses.replace(cfg, serve=dataclasses.replace(cfg.serve, port=port)), public
