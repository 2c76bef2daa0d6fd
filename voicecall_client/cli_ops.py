"""`voicecall expose` and `voicecall doctor`: operations on this machine, not RPCs.

Both need the sidecar package (``voicecall_server``), imported only when the command runs so a
gateway that installed the client alone still gets the other commands and a clear message here.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Any

from voicecall_client.cli_base import EXIT_FAILURE, EXIT_OK, Command, CommandContext

_NO_SERVER = (
    "`voicecall {name}` needs the voicecall sidecar package (voicecall_server), which is not installed "
    "here; run it on the machine that runs voicecall-server"
)


def _server_module(ctx: CommandContext, name: str, module: str) -> ModuleType | None:
    import importlib

    try:
        return importlib.import_module(f"voicecall_server.{module}")
    except ImportError as err:
        if err.name is not None and not err.name.startswith("voicecall_server"):
            raise
        ctx.err(_NO_SERVER.format(name=name))
        return None


# -- doctor ---------------------------------------------------------------------------------------
def _doctor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="the sidecar's config file (default $VOICECALL_CONFIG)")
    p.add_argument(
        "--request",
        metavar="FILE",
        help="a captured failing webhook as JSON {method, url, headers, body, remote}: replay its signature check",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


async def _doctor(ctx: CommandContext) -> int:
    doctor = _server_module(ctx, "doctor", "doctor")
    if doctor is None:
        return EXIT_FAILURE
    report = await doctor.run_doctor(ctx.args.config, ctx.args.request)
    if ctx.args.json:
        ctx.out(report.to_json())
    else:
        print(report.render(), flush=True)
    return EXIT_OK if report.ok else EXIT_FAILURE


# -- expose ---------------------------------------------------------------------------------------
def _expose_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode",
        default="funnel",
        metavar="funnel|serve|off",
        help="funnel (public internet, the default), serve (tailnet only) or off (remove both)",
    )
    p.add_argument("--path", help="public path of the webhook (default serve.path from the config)")
    p.add_argument("--port", type=int, help="local webhook port (default serve.port from the config)")
    p.add_argument("--serve-path", help="local path behind --path (default serve.path)")
    p.add_argument("--config", metavar="FILE", help="the sidecar's config file (default $VOICECALL_CONFIG)")


async def _expose(ctx: CommandContext) -> int:
    config_mod = _server_module(ctx, "expose", "config")
    exposure = _server_module(ctx, "expose", "exposure")
    if config_mod is None or exposure is None:
        return EXIT_FAILURE
    try:
        config = config_mod.load_config(ctx.args.config)
    except config_mod.ConfigError as err:
        for line in err.errors:
            ctx.err(line)
        return EXIT_FAILURE
    args = ctx.args
    path = args.path or config.serve.path
    result: dict[str, Any] = await exposure.expose_command(
        args.mode,
        path=path,
        port=args.port or config.serve.port,
        stream_path=config.streaming.stream_path,
        serve_path=args.serve_path or config.serve.path,
    )
    if result.get("ok") and path != config.serve.path and config.public_url is None:
        result["note"] = (
            f"the public path {path} differs from serve.path {config.serve.path}: webhook signatures are "
            "checked against the path the listener receives"
        )
    ctx.out(result)
    return EXIT_OK if result.get("ok") else EXIT_FAILURE


COMMANDS: list[Command] = [
    Command(
        name="expose",
        help="expose the webhook and media-stream paths with Tailscale funnel/serve (or remove them)",
        example="voicecall expose --mode funnel",
        add_arguments=_expose_args,
        run=_expose,
        description=(
            "Mount the webhook path and the media-stream path with `tailscale funnel` (public) or "
            "`tailscale serve` (tailnet), or remove both with --mode off. Prints "
            "{ok, mode, path, localUrl, publicUrl, hint}. The mappings stay after the command exits."
        ),
    ),
    Command(
        name="doctor",
        help="check the config for what stops a provider reaching the sidecar; explain a failed signature",
        example="voicecall doctor --config voicecall.json5 --request failed-webhook.json",
        add_arguments=_doctor_args,
        run=_doctor,
        description=(
            "Checks credentials, the public URL, the media-stream path, signature and gRPC settings, "
            "without network access. With --request, replays a captured webhook's signature check and "
            "names the header or setting that made it fail. Exit 1 when something is wrong."
        ),
    ),
]


def add_parsers(subparsers: Any) -> None:
    """Register ``expose`` and ``doctor`` on an argparse sub-parser action (``_command`` default set)."""
    for cmd in COMMANDS:
        sub = subparsers.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help)
        cmd.add_arguments(sub)
        sub.set_defaults(_command=cmd)


def main(argv: list[str] | None = None) -> int:
    """Run one of these commands without the global CLI (used by tests and scripts)."""
    import asyncio

    parser = argparse.ArgumentParser(prog="voicecall")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    ctx = CommandContext(args)
    try:
        code: int = asyncio.run(args._command.run(ctx))
    except (OSError, ValueError) as err:
        ctx.err(str(err))
        return EXIT_FAILURE
    return code


__all__ = ["COMMANDS", "add_parsers", "main"]

if __name__ == "__main__":
    sys.exit(main())
