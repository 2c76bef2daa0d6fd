"""A loopback fake of OpenAI's ``POST /v1/chat/completions`` (non-streaming JSON)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

_ids = itertools.count(1)


@dataclass(frozen=True)
class Scripted:
    """One scripted answer: a completion, or an error status with OpenAI's error body."""

    content: str | None = "OK."
    finish_reason: str = "stop"
    delay_s: float = 0.0
    status: int = 200
    error_message: str = ""
    error_type: str = "invalid_request_error"
    error_code: str | None = None
    error_param: str | None = None


class FakeChatServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.script: list[Scripted] = []
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        self._released.set()  # let delayed handlers finish so cleanup does not wait on them
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def then(self, *answers: Scripted) -> None:
        self.script.extend(answers)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append(request.headers.get("Authorization", ""))
        answer = self.script.pop(0) if self.script else Scripted()
        if answer.delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), answer.delay_s)
        if answer.status != 200:
            error = {
                "message": answer.error_message,
                "type": answer.error_type,
                "param": answer.error_param,
                "code": answer.error_code,
            }
            return web.json_response({"error": error}, status=answer.status)
        return web.json_response(_completion(body, answer))


def _completion(body: dict[str, Any], answer: Scripted) -> dict[str, Any]:
    content = answer.content or ""
    return {
        "id": f"chatcmpl-fake{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": answer.content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": 42,
            "completion_tokens": len(content.split()),
            "total_tokens": 42 + len(content.split()),
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }
