"""An ngrok agent child process exposing the webhook listener (reference section 8.2).

The auth token reaches the agent through the ``NGROK_AUTHTOKEN`` environment variable, which the
ngrok v3 agent reads natively (ngrok's own Docker instructions run the agent with
``-e NGROK_AUTHTOKEN=...``). The reference ran ``ngrok config add-authtoken <token>`` instead, which
puts the token on a command line any local user can read with ``ps`` and writes it into the
user's ngrok config file; neither happens here.

The agent is started with ``--log stdout --log-format json``; ngrok v3 then prints one JSON object
per line, and the line ``{"msg": "started tunnel", "url": "https://..."}`` carries the public URL.
Failures show as ``{"lvl": "crit", "msg": "command failed", "err": "... ERR_NGROK_4018 ..."}`` or as
plain ``ERROR:`` text on stderr, followed by exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
from typing import Any

from voicecall_server.exposure.base import ExposureError, child_env, scrub, stop_process

log = logging.getLogger(__name__)

_ERR_CODE = re.compile(r"ERR_NGROK_[0-9]+")
_AUTH_CODES = frozenset({"ERR_NGROK_105", "ERR_NGROK_107", "ERR_NGROK_4018"})


class NgrokTunnel:
    def __init__(
        self,
        port: int,
        *,
        auth_token: str | None = None,
        domain: str | None = None,
        executable: str = "ngrok",
        start_timeout_s: float = 30.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        self.port = port
        self.domain = domain
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self._auth_token = auth_token
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._errors: collections.deque[str] = collections.deque(maxlen=5)
        self.public_url: str | None = None

    def __repr__(self) -> str:
        return f"NgrokTunnel(port={self.port}, domain={self.domain!r}, public_url={self.public_url!r})"

    @property
    def running(self) -> bool:
        """False once the agent has exited (the tunnel, and so the public URL, is gone)."""
        return self._proc is not None and self._proc.returncode is None

    def argv(self) -> list[str]:
        argv = [self.executable, "http", str(self.port), "--log", "stdout", "--log-format", "json"]
        if self.domain:
            argv += ["--domain", self.domain]
        return argv

    async def start(self) -> str:
        if self.public_url is not None:
            return self.public_url
        env = child_env({"NGROK_AUTHTOKEN": self._auth_token}) if self._auth_token else None
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except (FileNotFoundError, PermissionError):
            raise ExposureError(
                f"cannot run ngrok ({self.executable!r} not found or not executable)",
                hint="install the ngrok agent v3, or set publicUrl / another tunnel.provider",
            ) from None
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self._proc.stdout, ready, json_lines=True)),
            asyncio.create_task(self._read(self._proc.stderr, ready, json_lines=False)),
        ]
        try:
            async with asyncio.timeout(self.start_timeout_s):
                url = await ready
        except TimeoutError:
            await self.aclose()
            raise ExposureError(
                f"ngrok did not report a tunnel URL within {self.start_timeout_s:g} s",
                hint=self._last_error() or "check that this machine can reach ngrok's service",
            ) from None
        except BaseException:
            await self.aclose()
            raise
        self.public_url = url.rstrip("/")
        log.info("ngrok tunnel started: %s -> 127.0.0.1:%d", self.public_url, self.port)
        return self.public_url

    def _last_error(self) -> str:
        return self._errors[-1] if self._errors else ""

    def _fail(self, ready: asyncio.Future[str], detail: str) -> None:
        if ready.done():
            log.warning("ngrok: %s", detail)
            return
        code = _ERR_CODE.search(detail)
        hint = "see https://ngrok.com/docs/errors/"
        if code is not None and code.group(0) in _AUTH_CODES:
            hint = "check tunnel.ngrokAuthToken or the NGROK_AUTHTOKEN environment variable"
        ready.set_exception(ExposureError(f"ngrok failed to start: {detail}", hint=hint))

    async def _read(
        self, stream: asyncio.StreamReader, ready: asyncio.Future[str], *, json_lines: bool
    ) -> None:
        # Keeps draining after the URL arrives: a full pipe would block the agent.
        while True:
            raw = await stream.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").strip()
            if self._auth_token:
                line = line.replace(self._auth_token, "***")
            if not line:
                continue
            entry = _parse_json(line) if json_lines else None
            if entry is None:
                if "ERR_NGROK" in line or line.startswith("ERROR:"):
                    self._errors.append(scrub(line, [self._auth_token]))
                    if "ERR_NGROK" in line:
                        self._fail(ready, " ".join(self._errors))
                continue
            self._handle(entry, line, ready)
        if not json_lines:
            return
        proc = self._proc
        code = await proc.wait() if proc is not None else None
        detail = self._last_error() or "no error reported"
        self._fail(ready, f"ngrok exited with code {code}: {detail}")

    def _handle(self, entry: dict[str, Any], line: str, ready: asyncio.Future[str]) -> None:
        msg = str(entry.get("msg", ""))
        url = entry.get("url")
        if msg == "started tunnel" and isinstance(url, str) and url.startswith(("https://", "http://")):
            if not ready.done():
                ready.set_result(url)
            return
        level = str(entry.get("lvl", "")).lower()
        err = scrub(str(entry.get("err", "")), [self._auth_token])
        if level in ("crit", "eror", "error") or "ERR_NGROK" in line:
            detail = err if err and err != "<nil>" else msg
            self._errors.append(detail)
            if level == "crit" or "ERR_NGROK" in line:
                self._fail(ready, detail)
        else:
            log.debug("ngrok: %s", msg)

    async def aclose(self) -> None:
        proc, self._proc = self._proc, None
        readers, self._readers = self._readers, []
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(BaseException):
                await task
        if proc is not None:
            await stop_process(proc, grace_s=self.stop_grace_s)
        self.public_url = None


def _parse_json(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
