"""The naive floor: aiohttp, one task per stream, json.loads/json.dumps per frame, asyncio.sleep pacing.

Run as ``python -m bench.floor --port P``; serves Twilio Media Streams at ``/stream`` and sends
20 ms of μ-law back per 20 ms (paced on a per-stream monotonic schedule), as the anchors describe.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import time

from aiohttp import WSMsgType, web

AUDIO = bytes(range(256)) * 2000


async def stream(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sid: list[str] = []

    async def pace() -> None:
        start = time.monotonic()
        k = 0
        while not ws.closed:
            k += 1
            off = (k * 160) % (len(AUDIO) - 160)
            payload = base64.b64encode(AUDIO[off : off + 160]).decode()
            await ws.send_str(
                json.dumps({"event": "media", "streamSid": sid[0], "media": {"payload": payload}})
            )
            await asyncio.sleep(max(0.0, start + k * 0.02 - time.monotonic()))

    sender: asyncio.Task[None] | None = None
    inbound = 0
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            break
        data = json.loads(msg.data)
        event = data.get("event")
        if event == "start":
            sid.append(data["start"]["streamSid"])
            sender = asyncio.create_task(pace())
        elif event == "media":
            inbound += len(base64.b64decode(data["media"]["payload"]))
        elif event == "stop":
            break
    if sender is not None:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
    await ws.close()
    return ws


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/stream", stream)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
