"""`voicecall`: the command line for a running voicecall sidecar.

Subcommands live in a table (``COMMANDS``); later ones (expose, setup, smoke, dtmf, doctor) append
their own :class:`~voicecall_client.cli_base.Command` entries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import grpc

from voicecall_client import cli_commands
from voicecall_client.cli_base import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    CommandContext,
)
from voicecall_client.client import DEFAULT_TARGET
from voicecall_client.errors import VoiceCallError

COMMANDS: list[Command] = [*cli_commands.COMMANDS]

_GLOBAL_EPILOG = """\
examples:
  voicecall call --to +15551234567 --message "Hello from the agent" --mode conversation
  voicecall --server unix:/run/voicecall.sock status --call-id 3f2a9c1e-...
  VOICECALL_TOKEN=... voicecall tail --json
"""


def _add_globals(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The subcommand copies default to SUPPRESS so a global given before the subcommand survives.
    def d(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    g = p.add_argument_group("connection")
    g.add_argument(
        "--server",
        metavar="ADDRESS",
        default=d(os.environ.get("VOICECALL_SERVER") or DEFAULT_TARGET),
        help=f"host:port or unix:/path of the sidecar (env VOICECALL_SERVER, default {DEFAULT_TARGET})",
    )
    g.add_argument(
        "--token",
        metavar="TOKEN",
        default=d(os.environ.get("VOICECALL_TOKEN") or None),
        help="bearer token for grpc.authToken (env VOICECALL_TOKEN, which keeps it out of `ps`)",
    )
    g.add_argument(
        "--tls-ca", default=d(None), metavar="FILE", help="CA bundle to verify the server (enables TLS)"
    )
    g.add_argument("--tls-cert", default=d(None), metavar="FILE", help="client certificate (enables TLS)")
    g.add_argument("--tls-key", default=d(None), metavar="FILE", help="client private key (enables TLS)")
    g.add_argument(
        "--tls-server-name", default=d(None), metavar="NAME", help="expected name in the server cert"
    )
    g.add_argument(
        "--timeout",
        dest="rpc_timeout",
        type=float,
        default=d(30.0),
        metavar="SECONDS",
        help="deadline for each request (default 30)",
    )


def build_parser(commands: list[Command] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicecall",
        description="Place, hold and watch phone calls through a running voicecall sidecar.",
        epilog=_GLOBAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_globals(parser, suppress=False)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in commands if commands is not None else COMMANDS:
        sub = subs.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            epilog=f"example:\n  {cmd.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            # A subcommand's own option (continue --timeout) wins over the global of the same name.
            conflict_handler="resolve",
        )
        _add_globals(sub, suppress=True)
        cmd.add_arguments(sub)
        sub.set_defaults(_command=cmd)
    return parser


def _error_line(err: VoiceCallError, server: str) -> str:
    if err.code == grpc.StatusCode.UNAVAILABLE and not err.reason:
        # No ErrorInfo: the request never reached a voicecall server.
        why = "connection refused" if "connection refused" in err.message.lower() else err.message
        return (
            f"UNAVAILABLE: cannot reach the voicecall server at {server} ({why}); "
            "is it running? Point --server (or VOICECALL_SERVER) at it"
        )
    line = str(err)
    if err.code == grpc.StatusCode.DEADLINE_EXCEEDED and not err.reason:
        line += " (no answer in time; raise --timeout)"
    if err.code == grpc.StatusCode.UNAUTHENTICATED:
        line += " (set --token or VOICECALL_TOKEN to the server's grpc.authToken)"
    return line


async def _run(cmd: Command, ctx: CommandContext) -> int:
    try:
        return await cmd.run(ctx)
    finally:
        await ctx.aclose()


def _silence_stdout() -> None:
    # After a closed pipe (voicecall tail | head), keep the interpreter's final flush quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    cmd: Command = args._command
    ctx = CommandContext(args)
    try:
        return asyncio.run(_run(cmd, ctx))
    except KeyboardInterrupt:
        return cmd.interrupt_exit
    except VoiceCallError as err:
        ctx.err(_error_line(err, ctx.server))
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except (OSError, ValueError) as err:  # unreadable TLS files, bad option combinations
        ctx.err(str(err))
    except Exception as err:
        if os.environ.get("VOICECALL_DEBUG"):
            raise
        ctx.err(f"unexpected {type(err).__name__}: {err} (set VOICECALL_DEBUG=1 for a traceback)")
    return EXIT_FAILURE


__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
