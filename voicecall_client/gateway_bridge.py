"""Serve the gateway methods to a gateway that does not speak gRPC: JSON over stdio, or over HTTP.

    python -m voicecall_client.gateway_bridge --stdio [--server HOST:PORT]
    python -m voicecall_client.gateway_bridge --http 127.0.0.1:8765 [--server HOST:PORT]

Both take a request ``{"id": any, "method": "voicecall.initiate", "params": {...}}`` and answer
``{"id": same, "ok": bool, "payload": {...}}`` (see voicecall_client.gateway for the methods).

stdio: one JSON request per line on stdin, one response per line on stdout. Requests run
concurrently (a ``voicecall.continue`` may wait minutes for the caller), so responses can come
back out of order: match them by ``id``. At end of input the bridge finishes what is in flight,
then exits.

HTTP: ``POST /rpc`` with the same JSON; the answer is HTTP 200 with the response object whenever
the request was understood (``ok`` says whether the method succeeded), 400 for a body that is not
a JSON request, 401 without the bearer token when one is set (``--http-token`` or env
VOICECALL_BRIDGE_TOKEN). It binds loopback by default and refuses a non-loopback address
without a token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

from aiohttp import web

from voicecall_client.cli_base import tls_options
from voicecall_client.client import DEFAULT_TARGET, VoiceCallClient
from voicecall_client.gateway import GatewayAdapter

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1 << 20
DEFAULT_HTTP = "127.0.0.1:8765"


def _response(request_id: Any, ok: bool, payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "ok": ok, "payload": dict(payload)}


async def handle_request(adapter: GatewayAdapter, request: Any) -> dict[str, Any]:
    """One decoded request object to one response object."""
    if not isinstance(request, dict):
        return _response(None, False, {"error": "a request must be a JSON object {id, method, params}"})
    request_id = request.get("id")
    method = request.get("method")
    if not isinstance(method, str) or not method:
        return _response(request_id, False, {"error": "method required"})
    ok, payload = await adapter.call(method, request.get("params"))
    return _response(request_id, ok, payload)


async def handle_line(adapter: GatewayAdapter, line: bytes | str) -> dict[str, Any] | None:
    """One line of the stdio protocol; blank lines are ignored (None)."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if not text.strip():
        return None
    try:
        request = json.loads(text)
    except json.JSONDecodeError as err:
        return _response(None, False, {"error": f"invalid JSON: {err.msg} at column {err.colno}"})
    return await handle_request(adapter, request)


# -- stdio ------------------------------------------------------------------------------------------
async def _line_source(stream: IO[bytes]) -> Callable[[], Any]:
    """An awaitable readline for stdin: non-blocking for pipes, a worker thread for regular files."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_REQUEST_BYTES, loop=loop)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), stream)
    except ValueError:
        # A regular file (stdin redirected from a file) cannot be a pipe transport; it never blocks long.
        return lambda: asyncio.to_thread(stream.readline)
    return reader.readline


async def serve_stdio(adapter: GatewayAdapter, stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Answer newline-delimited JSON requests until end of input, then drain the in-flight ones."""
    readline = await _line_source(stdin)
    write_lock = asyncio.Lock()
    in_flight: set[asyncio.Task[None]] = set()

    async def write(response: dict[str, Any]) -> None:
        data = (json.dumps(response, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        async with write_lock:
            await asyncio.to_thread(_write_flush, stdout, data)

    async def answer(line: bytes) -> None:
        response = await handle_line(adapter, line)
        if response is not None:
            await write(response)

    while True:
        try:
            line = await readline()
        except ValueError:
            # Longer than MAX_REQUEST_BYTES: the reader has discarded it.
            await write(_response(None, False, {"error": f"request longer than {MAX_REQUEST_BYTES} bytes"}))
            continue
        if not line:
            break
        task = asyncio.create_task(answer(line))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)


def _write_flush(stream: IO[bytes], data: bytes) -> None:
    stream.write(data)
    stream.flush()


# -- HTTP -------------------------------------------------------------------------------------------
ADAPTER_KEY = web.AppKey("adapter", GatewayAdapter)


def make_http_app(adapter: GatewayAdapter, *, token: str | None = None) -> web.Application:
    """The aiohttp app serving ``POST /rpc``; with ``token``, requests need ``Authorization: Bearer``."""
    expected = f"Bearer {token}".encode() if token else None

    async def rpc(request: web.Request) -> web.Response:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response(
                    _response(None, False, {"error": "unauthorized: send Authorization: Bearer <token>"}),
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return web.json_response(_response(None, False, {"error": f"invalid JSON: {err}"}), status=400)
        response = await handle_request(request.app[ADAPTER_KEY], body)
        status = 400 if not isinstance(body, dict) else 200
        return web.json_response(response, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[ADAPTER_KEY] = adapter
    app.router.add_post("/rpc", rpc)
    return app


def parse_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve_http(
    adapter: GatewayAdapter, host: str, port: int, *, token: str | None, stop: asyncio.Event
) -> None:
    runner = web.AppRunner(make_http_app(adapter, token=token), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for address in runner.addresses:
            print(
                f"voicecall-bridge: listening on http://{host}:{address[1]}/rpc", file=sys.stderr, flush=True
            )
        await stop.wait()
    finally:
        await runner.cleanup()


# -- command line -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m voicecall_client.gateway_bridge",
        description="Serve the voicecall.* gateway methods as JSON over stdio or HTTP.",
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--stdio", action="store_true", help="newline-delimited JSON on stdin/stdout")
    how.add_argument(
        "--http", metavar="HOST:PORT", type=parse_hostport, help=f"serve POST /rpc (e.g. {DEFAULT_HTTP})"
    )
    p.add_argument(
        "--http-token",
        default=os.environ.get("VOICECALL_BRIDGE_TOKEN") or None,
        help="bearer token HTTP callers must send (env VOICECALL_BRIDGE_TOKEN keeps it out of `ps`)",
    )
    p.add_argument(
        "--server",
        default=os.environ.get("VOICECALL_SERVER") or DEFAULT_TARGET,
        help=f"the sidecar's gRPC address (env VOICECALL_SERVER, default {DEFAULT_TARGET})",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("VOICECALL_TOKEN") or None,
        help="the sidecar's grpc.authToken (env VOICECALL_TOKEN)",
    )
    p.add_argument("--tls-ca", metavar="FILE", help="CA bundle to verify the sidecar (enables TLS)")
    p.add_argument("--tls-cert", metavar="FILE", help="client certificate (enables TLS)")
    p.add_argument("--tls-key", metavar="FILE", help="client private key (enables TLS)")
    p.add_argument("--tls-server-name", metavar="NAME", help="expected name in the sidecar's certificate")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline per request in seconds (default 30)")
    return p


async def run(args: argparse.Namespace) -> int:
    client = VoiceCallClient(
        args.server, token=args.token, tls=tls_options(args), default_timeout=args.timeout
    )
    adapter = GatewayAdapter(client)
    try:
        if args.stdio:
            await serve_stdio(adapter, sys.stdin.buffer, sys.stdout.buffer)
            return 0
        host, port = args.http
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_http(adapter, host, port, token=args.http_token, stop=stop)
        return 0
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.http is not None and not args.http_token and not is_loopback(args.http[0]):
        parser.error("a non-loopback --http address needs --http-token (or VOICECALL_BRIDGE_TOKEN)")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
