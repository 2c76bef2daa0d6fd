"""What every `voicecall` subcommand is made of: its table entry and the context it runs in."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from voicecall_client.client import TlsOptions, VoiceCallClient

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    """One subcommand. ``example`` is shown in its --help; ``interrupt_exit`` is the exit code on Ctrl-C."""

    name: str
    help: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[CommandContext], Awaitable[int]]
    description: str = ""
    interrupt_exit: int = EXIT_INTERRUPTED


@dataclass
class CommandContext:
    """Parsed arguments plus a client made on first use (some commands never talk to the server)."""

    args: argparse.Namespace = field(repr=False)  # holds the token
    _client: VoiceCallClient | None = field(default=None, repr=False)

    @property
    def server(self) -> str:
        return str(self.args.server)

    def client(self) -> VoiceCallClient:
        if self._client is None:
            self._client = VoiceCallClient(
                self.server,
                token=self.args.token or None,
                tls=tls_options(self.args),
                default_timeout=self.args.rpc_timeout,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def out(self, value: Any) -> None:
        """Pretty JSON on stdout, the output of every one-shot command."""
        print(json.dumps(value, indent=2, ensure_ascii=False), flush=True)

    def err(self, line: str) -> None:
        print(f"voicecall: {line}", file=sys.stderr, flush=True)


def tls_options(args: argparse.Namespace) -> TlsOptions | None:
    if not (args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    return TlsOptions(
        ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key, server_name=args.tls_server_name
    )


def message_to_json(message: Message) -> dict[str, Any]:
    """proto3 JSON mapping: lowerCamelCase names, enum names, Timestamps as RFC 3339."""
    return MessageToDict(message)
