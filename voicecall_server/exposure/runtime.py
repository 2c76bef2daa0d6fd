"""Public exposure at start-up: publicUrl, an ngrok tunnel, or Tailscale serve/funnel.

Order of precedence: ``publicUrl`` (the operator knows best; nothing is started), then
``tunnel.provider`` (ngrok, tailscale-serve, tailscale-funnel), then ``tailscale.mode``.

A failed exposure is not fatal: the sidecar still serves locally (calls over a reverse proxy the
operator set up by hand keep working), and a warning names the fix. The webhook URL is then the
local one, which the doctor command flags for real providers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import ExposureError
from .ngrok import NgrokTunnel
from .tailscale import Mode, TailscaleExposure

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("voicecall.exposure")


@dataclass
class Exposed:
    public_webhook_url: str | None
    """The full public webhook URL (with serve.path), or None when nothing is exposed."""
    close: Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


def tailscale_mode(config: Config) -> Mode | None:
    """serve/funnel from ``tunnel.provider`` first, else from ``tailscale.mode``; None when off."""
    provider = config.tunnel.provider
    if provider == "tailscale-serve":
        return "serve"
    if provider == "tailscale-funnel":
        return "funnel"
    if provider == "none" and config.tailscale.mode in ("serve", "funnel"):
        return config.tailscale.mode
    return None


def exposure_kind(config: Config) -> str:
    """What start-up will expose: publicUrl, ngrok, tailscale-serve, tailscale-funnel or none."""
    if config.public_url:
        return "publicUrl"
    if config.tunnel.provider == "ngrok":
        return "ngrok"
    mode = tailscale_mode(config)
    return f"tailscale-{mode}" if mode else "none"


def tailscale_paths(config: Config) -> list[str]:
    """Both paths a provider must reach: the webhook and the media stream."""
    # Mounted at the listener's own path: tailscale rewrites a different public path to the local
    # one, and the listener would then check signatures against a path the provider never called.
    paths = [config.serve.path]
    if config.streaming.stream_path not in paths:
        paths.append(config.streaming.stream_path)
    return paths


async def start_exposure(config: Config, http_port: int) -> Exposed:
    kind = exposure_kind(config)
    if kind == "publicUrl":
        if config.tunnel.provider != "none" or config.tailscale.mode != "off":
            log.info("publicUrl is set: not starting tunnel.provider/tailscale.mode")
        return Exposed(config.public_url, _nothing)
    if kind == "ngrok":
        return await _start_ngrok(config, http_port)
    mode = tailscale_mode(config)
    if mode is not None:
        return await _start_tailscale(config, mode, http_port)
    return Exposed(None, _nothing)


async def _start_ngrok(config: Config, http_port: int) -> Exposed:
    tunnel = NgrokTunnel(
        http_port, auth_token=config.tunnel.ngrok_auth_token, domain=config.tunnel.ngrok_domain
    )
    try:
        base = await tunnel.start()
    except ExposureError as err:
        await tunnel.aclose()
        _warn("ngrok", err, "fix tunnel.ngrokAuthToken / tunnel.ngrokDomain, or set publicUrl")
        return Exposed(None, _nothing)
    return Exposed(base.rstrip("/") + config.serve.path, tunnel.aclose)


async def _start_tailscale(config: Config, mode: Mode, http_port: int) -> Exposed:
    if config.tailscale.path != config.serve.path and config.tailscale.path != "/voice/webhook":
        log.warning(
            "tailscale.path %s differs from serve.path %s: exposing serve.path so webhook signatures "
            "verify against the path the provider calls",
            config.tailscale.path,
            config.serve.path,
        )
    exposure = TailscaleExposure(mode, http_port, tailscale_paths(config))
    try:
        base = await exposure.start()
    except ExposureError as err:
        await exposure.aclose()
        fix = f"run `tailscale up` and allow {mode} for this node"
        if err.enable_url:
            fix = f"enable {mode} at {err.enable_url}"
        _warn(f"tailscale {mode}", err, f"{fix}, or set publicUrl")
        return Exposed(None, _nothing)
    return Exposed(base.rstrip("/") + config.serve.path, exposure.aclose)


def _warn(what: str, err: ExposureError, fix: str) -> None:
    # ExposureError messages are scrubbed of secrets by the exposure modules.
    log.warning(
        "%s exposure failed: %s; serving on the local URL only, so the provider cannot reach the webhooks. "
        "To fix: %s",
        what,
        err,
        fix,
    )


__all__ = ["Exposed", "exposure_kind", "start_exposure", "tailscale_mode", "tailscale_paths"]
