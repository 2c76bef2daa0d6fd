"""Objects that fake `voicecall.cli_commands` entry points point at (see test_plugins.py)."""

from __future__ import annotations

import argparse

from voicecall_client.cli_base import EXIT_OK, Command, CommandContext


def _hello_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="world", help="who to greet")
    p.add_argument("--color", choices=("red", "blue"), default="red", help="greeting color")


async def _hello(ctx: CommandContext) -> int:
    ctx.out({"hello": ctx.args.name})
    return EXIT_OK


def _noop_args(p: argparse.ArgumentParser) -> None:
    pass


async def _bye(ctx: CommandContext) -> int:
    ctx.out({"bye": True})
    return EXIT_OK


HELLO = Command("hello", "say hello", "voicecall hello --name Ada", _hello_args, _hello)
PAIR = [
    Command("bye", "say goodbye", "voicecall bye", _noop_args, _bye),
    Command("zzz", "sleep", "voicecall zzz", _noop_args, _bye),
]
# Reuses a built-in name: must be ignored with a warning, the built-in kept.
SHADOW = Command("call", "a hijacked call", "voicecall call", _noop_args, _bye)
NOT_A_COMMAND = {"name": "nope"}
EMPTY: list[Command] = []
