"""Auto-responses: the caller's turn answered by an OpenAI-compatible chat model.

(Extension point: filled in by the voice work; until then no auto-responder is installed.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config
    from ..manager import CallManager


def install_responder(manager: CallManager, config: Config) -> Callable[[], Awaitable[None]] | None:
    """Set ``manager.on_caller_turn`` when a response model is usable; return its closer."""
    return None
