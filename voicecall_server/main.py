"""``voicecall-server``: run the sidecar, or validate a config with --check-config.

Logs go to stderr as text or, with ``--log-format json`` / ``logging.format: "json"``, one JSON
object per line (see ``logs.py``). The event loop is uvloop wherever it is installed (a dependency
on Linux and macOS; it cuts the media plane's CPU per stream by about a quarter), else asyncio's;
``VOICECALL_UVLOOP=0`` forces asyncio's. The loop in use is logged at debug level.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping

from .app import StartupError, serve
from .config import ConfigError, load_config, redacted
from .logs import configure_logging

log = logging.getLogger("voicecall")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voicecall-server",
        description="The voicecall sidecar: gRPC call control plus provider webhooks and media streams.",
        epilog="With no config file it runs the mock provider on loopback with the default store.",
    )
    p.add_argument(
        "--config",
        default=os.environ.get("VOICECALL_CONFIG") or None,  # set but empty: no file
        help="JSON5 config file (env VOICECALL_CONFIG)",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config, print it with secrets redacted, exit",
    )
    p.add_argument("--log-level", default=None, help="debug, info, warning or error (default: logging.level)")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="text, or json for one object per line with the call id (default: logging.format)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"voicecall-server: invalid config:\n{err}", file=sys.stderr)
        return 2
    if args.check_config:
        print(json.dumps(redacted(config), indent=2, default=str))
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    try:
        configure_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    except ValueError as err:
        print(f"voicecall-server: {err}", file=sys.stderr)
        return 2
    for warning in config.warnings:
        log.warning("%s", warning)
    factory, loop_name = loop_factory()
    log.debug("event loop: %s", loop_name)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_run(config))
    except StartupError as err:
        print(f"voicecall-server: {err}", file=sys.stderr)
        return 1
    return 0


def loop_factory(
    env: Mapping[str, str] | None = None,
) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The loop factory to run with (None = asyncio's default) and a name for the log.

    ``VOICECALL_UVLOOP`` unset or ``auto``: uvloop when importable; ``0``/``false``/``off``:
    asyncio's loop; ``1``/``true``/``on``: uvloop, with a warning when it is missing.
    """
    env = os.environ if env is None else env
    choice = env.get("VOICECALL_UVLOOP", "").strip().lower()
    if choice in ("0", "false", "no", "off"):
        return None, "asyncio"
    required = choice in ("1", "true", "yes", "on")
    try:
        # Imported by name: there is no uvloop on Windows, and type checks pass without it.
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if required:
            log.warning("VOICECALL_UVLOOP=1 but uvloop is not installed (pip install uvloop); using asyncio")
        return None, "asyncio"
    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_loop, f"uvloop {getattr(uvloop, '__version__', '')}".rstrip()


async def _run(config: object) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
