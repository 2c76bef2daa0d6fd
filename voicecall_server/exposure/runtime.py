"""Public exposure at start-up: publicUrl, an ngrok tunnel, or Tailscale serve/funnel.

(Extension point: filled in by the security work; until then only publicUrl is honoured.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config


@dataclass
class Exposed:
    public_webhook_url: str | None
    """The full public webhook URL (with serve.path), or None when nothing is exposed."""
    close: Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


async def start_exposure(config: Config, http_port: int) -> Exposed:
    return Exposed(config.public_url, _nothing)
