"""``voicecall-server``: run the sidecar, or validate a config with --check-config."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from .app import StartupError, serve
from .config import ConfigError, load_config, redacted


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voicecall-server",
        description="The voicecall sidecar: gRPC call control plus provider webhooks and media streams.",
        epilog="With no config file it runs the mock provider on loopback with the default store.",
    )
    p.add_argument(
        "--config",
        default=os.environ.get("VOICECALL_CONFIG"),
        help="JSON5 config file (env VOICECALL_CONFIG)",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config, print it with secrets redacted, exit",
    )
    p.add_argument("--log-level", default=None, help="debug, info, warning or error (default: logging.level)")
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
    logging.basicConfig(
        level=(args.log_level or config.logging.level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for warning in config.warnings:
        logging.getLogger("voicecall").warning("%s", warning)
    try:
        asyncio.run(_run(config))
    except StartupError as err:
        print(f"voicecall-server: {err}", file=sys.stderr)
        return 1
    return 0


async def _run(config: object) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
