"""Tailscale serve (tailnet only) or funnel (public internet) in front of the listener.

Uses the Tailscale CLI (1.52+ syntax): ``tailscale status --json`` for the node's DNS name and id,
``tailscale <serve|funnel> --bg --yes --set-path <path> <target>`` to mount each path in the
background, and ``tailscale <serve|funnel> --set-path <path> off`` to remove it. Both the webhook
path and the media-stream path are mounted, or Twilio's WebSocket would never reach the listener.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

from voicecall_server.exposure.base import CommandResult, ExposureError, run_command, scrub

log = logging.getLogger(__name__)

Mode = Literal["serve", "funnel"]
PathSpec = str | tuple[str, str]
"""A path mounted as-is, or ``(public_path, local_path)``."""

_ENABLE_URL = re.compile(r"https://login\.tailscale\.com/\S+")
_NO_YES_FLAG = "flag provided but not defined: -yes"


def enable_url(mode: str, node_id: str) -> str:
    return f"https://login.tailscale.com/f/{mode}?node={node_id}"


def _normalise(spec: PathSpec) -> tuple[str, str]:
    public, local = (spec, spec) if isinstance(spec, str) else spec
    for p in (public, local):
        if not p.startswith("/") or any(c.isspace() for c in p):
            raise ValueError(f"{p!r} is not an absolute URL path")
    return public, local


class TailscaleExposure:
    def __init__(
        self,
        mode: Mode,
        port: int,
        paths: Sequence[PathSpec],
        *,
        executable: str = "tailscale",
        command_timeout_s: float = 10.0,
    ) -> None:
        if mode not in ("serve", "funnel"):
            raise ValueError(f"tailscale mode must be serve or funnel, not {mode!r}")
        self.mode: Mode = mode
        self.port = port
        self.executable = executable
        self.command_timeout_s = command_timeout_s
        specs: list[tuple[str, str]] = []
        for spec in paths:
            pair = _normalise(spec)
            if pair[0] not in (s[0] for s in specs):
                specs.append(pair)
        if not specs:
            raise ValueError("at least one path must be exposed")
        self.paths = tuple(specs)
        self.dns_name: str | None = None
        self.node_id: str | None = None
        self._mounted: list[str] = []

    def __repr__(self) -> str:
        return f"TailscaleExposure(mode={self.mode!r}, port={self.port}, paths={self.paths!r})"

    def local_url(self, local_path: str) -> str:
        return f"http://127.0.0.1:{self.port}{local_path}"

    async def _run(self, *args: str) -> CommandResult:
        argv = [self.executable, *args]
        try:
            return await run_command(argv, timeout_s=self.command_timeout_s)
        except (FileNotFoundError, PermissionError):
            raise ExposureError(
                f"cannot run tailscale ({self.executable!r} not found or not executable)",
                hint="install Tailscale and run `tailscale up`",
            ) from None
        except TimeoutError:
            raise ExposureError(
                f"`tailscale {' '.join(args[:2])}` did not finish within {self.command_timeout_s:g} s",
                hint="is tailscaled running and responsive?",
            ) from None

    async def status(self) -> tuple[str, str]:
        """``(dns_name, node_id)`` of this node from ``tailscale status --json``."""
        result = await self._run("status", "--json")
        data: Any = None
        if result.returncode == 0:
            try:
                data = json.loads(result.stdout)
            except ValueError:
                data = None
        if not isinstance(data, dict):
            raise ExposureError(
                f"`tailscale status --json` failed: {scrub(result.stderr or result.stdout, [])}",
                hint="is tailscaled running? try `tailscale up`",
            )
        backend = data.get("BackendState")
        this_raw = data.get("Self")
        this: dict[str, Any] = this_raw if isinstance(this_raw, dict) else {}
        dns_name = str(this.get("DNSName") or "").rstrip(".")
        node_id = str(this.get("ID") or "")
        if backend not in (None, "Running"):
            raise ExposureError(f"Tailscale is not running (state {backend})", hint="run `tailscale up`")
        if not dns_name:
            raise ExposureError(
                "this node has no Tailscale DNS name",
                hint="enable MagicDNS and HTTPS certificates for the tailnet",
            )
        self.dns_name, self.node_id = dns_name, node_id
        return dns_name, node_id

    async def _mount(self, public: str, local: str) -> None:
        args = [self.mode, "--bg", "--yes", "--set-path", public, self.local_url(local)]
        result = await self._run(*args)
        if result.returncode != 0 and _NO_YES_FLAG in result.stderr:
            # Clients before --yes existed never prompt in --bg mode anyway.
            result = await self._run(*[a for a in args if a != "--yes"])
        if result.returncode == 0:
            return
        output = f"{result.stderr}\n{result.stdout}"
        found = _ENABLE_URL.search(output)
        url = found.group(0) if found else (enable_url(self.mode, self.node_id) if self.node_id else None)
        hint = f"enable {self.mode} for this node: {url}" if url else f"check that {self.mode} is allowed"
        raise ExposureError(
            f"`tailscale {self.mode}` failed for {public}: {scrub(output, [])}",
            hint=hint,
            enable_url=url,
        )

    async def start(self) -> str:
        dns_name, _ = await self.status()
        try:
            for public, local in self.paths:
                if public in self._mounted:
                    continue
                await self._mount(public, local)
                self._mounted.append(public)
        except BaseException:
            await self.aclose()
            raise
        log.info("tailscale %s: https://%s -> 127.0.0.1:%d", self.mode, dns_name, self.port)
        return f"https://{dns_name}"

    async def aclose(self) -> None:
        mounted, self._mounted = self._mounted, []
        for public in reversed(mounted):
            try:
                result = await self._run(self.mode, "--set-path", public, "off")
            except ExposureError as exc:
                log.warning("tailscale %s cleanup of %s failed: %s", self.mode, public, exc)
                continue
            if result.returncode != 0:
                log.warning(
                    "tailscale %s cleanup of %s failed: %s", self.mode, public, scrub(result.stderr, [])
                )


async def expose_command(
    mode: str,
    *,
    path: str,
    port: int,
    stream_path: str | None,
    serve_path: str | None = None,
    executable: str = "tailscale",
) -> dict[str, Any]:
    """``voicecall expose``: mount (or, for ``off``, unmount) the webhook and stream paths.

    Any mode other than off/serve leaves funnel, as in the reference CLI. ``localUrl`` includes the
    path, matching what the runtime mounts. Mappings stay in place after the command exits.
    """
    local_path = serve_path or path
    specs: list[PathSpec] = [(path, local_path)]
    if stream_path:
        specs.append(stream_path)
    if mode == "off":
        return await _expose_off(specs, port=port, path=path, executable=executable)
    chosen: Mode = "serve" if mode == "serve" else "funnel"
    local_url = f"http://127.0.0.1:{port}{local_path}"
    exposure = TailscaleExposure(chosen, port, specs, executable=executable)
    try:
        base = await exposure.start()
    except ExposureError as exc:
        hint: dict[str, str] = {"note": exc.message if exc.hint is None else f"{exc.message}; {exc.hint}"}
        url = exc.enable_url or (enable_url(chosen, exposure.node_id) if exposure.node_id else None)
        if url:
            hint["enableUrl"] = url
        return {
            "ok": False,
            "mode": chosen,
            "path": path,
            "localUrl": local_url,
            "publicUrl": None,
            "hint": hint,
        }
    return {"ok": True, "mode": chosen, "path": path, "localUrl": local_url, "publicUrl": f"{base}{path}"}


async def _expose_off(specs: Sequence[PathSpec], *, port: int, path: str, executable: str) -> dict[str, Any]:
    errors: list[str] = []
    for mode in ("serve", "funnel"):
        exposure = TailscaleExposure(mode, port, specs, executable=executable)
        for public, _ in exposure.paths:
            try:
                await exposure._run(mode, "--set-path", public, "off")
            except ExposureError as exc:
                errors.append(str(exc))
    if errors:
        # A missing or hung tailscale is worth reporting; a path that was not mounted is not.
        return {"ok": False, "mode": "off", "path": path, "hint": {"note": errors[0]}}
    return {"ok": True, "mode": "off", "path": path}
