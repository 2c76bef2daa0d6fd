"""`voicecall`: the command line for a running voicecall sidecar.

Subcommands live in a table (``COMMANDS``). Other installed packages add theirs through the entry-point
group ``voicecall.cli_commands``: each entry point names a :class:`~voicecall_client.cli_base.Command`
or a list of them. That is how the server package contributes ``setup``, ``expose`` and ``doctor``
without this package importing it: they are there when the server is installed and absent otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import sys
from collections.abc import Callable, Iterable, Sequence

import grpc

from voicecall_client import cli_commands, cli_extra
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

COMMANDS: list[Command] = [*cli_commands.COMMANDS, *cli_extra.COMMANDS]
ENTRY_POINT_GROUP = "voicecall.cli_commands"

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


def _as_commands(obj: object) -> list[Command]:
    if isinstance(obj, Command):
        return [obj]
    if isinstance(obj, list | tuple) and obj and all(isinstance(c, Command) for c in obj):
        return list(obj)
    raise TypeError(
        f"expected a voicecall_client.cli_base.Command or a list of them, got {type(obj).__name__}"
    )


def plugin_commands(
    builtin: Iterable[Command] = (), warn: Callable[[str], None] | None = None
) -> list[Command]:
    """The commands registered under ``voicecall.cli_commands``, sorted by name.

    A plugin that fails to load, names something that is not a Command, or reuses a taken name is
    left out and reported through ``warn`` in one line: one broken package must not take the whole
    CLI down with it.
    """
    taken = {c.name for c in builtin}
    seen: set[tuple[str, str]] = set()
    found: list[Command] = []
    for ep in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)
    ):
        # The same distribution visible twice on sys.path lists its entry points twice.
        if (ep.name, ep.value) in seen:
            continue
        seen.add((ep.name, ep.value))
        try:
            loaded = _as_commands(ep.load())
        except Exception as err:
            if warn is not None:
                why = " ".join(str(err).split()) or "no details"
                warn(f"warning: ignoring CLI plugin {ep.name} ({ep.value}): {type(err).__name__}: {why}")
            continue
        for cmd in loaded:
            if cmd.name in taken:
                if warn is not None:
                    warn(
                        f"warning: ignoring CLI plugin {ep.name} ({ep.value}): command {cmd.name!r} already exists"
                    )
                continue
            taken.add(cmd.name)
            found.append(cmd)
    return sorted(found, key=lambda c: c.name)


def all_commands(warn: Callable[[str], None] | None = None) -> list[Command]:
    """The built-in commands followed by every plugin command that loads."""
    return [*COMMANDS, *plugin_commands(COMMANDS, warn)]


def build_parser(commands: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicecall",
        description="Place, hold and watch phone calls through a running voicecall sidecar.",
        epilog=_GLOBAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_globals(parser, suppress=False)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in commands if commands is not None else all_commands():
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


def _warn(line: str) -> None:
    print(f"voicecall: {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(all_commands(warn=_warn))
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


__all__ = [
    "COMMANDS",
    "ENTRY_POINT_GROUP",
    "EXIT_INTERRUPTED",
    "all_commands",
    "build_parser",
    "main",
    "plugin_commands",
]

if __name__ == "__main__":
    sys.exit(main())
