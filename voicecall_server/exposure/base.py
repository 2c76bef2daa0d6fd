"""What every exposure offers, and the subprocess handling they share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class Exposure(Protocol):
    """Makes the local listener reachable from the internet (or the tailnet)."""

    async def start(self) -> str:
        """Set up the exposure and return the public base URL (scheme and host, no path)."""

    async def aclose(self) -> None:
        """Undo what ``start`` did; safe to call more than once and after a failed start."""


class ExposureError(Exception):
    """Setting up an exposure failed. ``message`` and ``hint`` are safe to show (no secrets)."""

    def __init__(self, message: str, *, hint: str | None = None, enable_url: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message} ({hint})")
        self.message = message
        self.hint = hint
        self.enable_url = enable_url


def scrub(text: str, secrets: Iterable[str | None], *, limit: int = 400) -> str:
    """``text`` with every secret masked, trimmed to ``limit`` characters for error messages."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


async def run_command(
    argv: Sequence[str], *, timeout_s: float, env: Mapping[str, str] | None = None
) -> CommandResult:
    """Run a short command to completion; the child is killed if it outlives ``timeout_s``.

    Raises ``FileNotFoundError`` when the executable is missing and ``TimeoutError`` on timeout.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=None if env is None else dict(env),
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except BaseException:
        await stop_process(proc, grace_s=0.0)
        raise
    return CommandResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


async def stop_process(proc: asyncio.subprocess.Process, *, grace_s: float) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; always reaps the child."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        try:
            async with asyncio.timeout(grace_s if grace_s > 0 else None):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    # Drain and close the pipes so their transports do not outlive the process.
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            # Bounded: a grandchild that inherited the pipe could keep it open forever.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await stream.read()


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
