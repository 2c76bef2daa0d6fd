"""Auto-responses: answer the caller with an OpenAI-compatible chat model.

Also holds the turn rules the call manager applies to those answers (``TurnGate``) and the
cleaning that turns a model's reply into something fit to be spoken.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # The SDK loads with the first Responder, so a sidecar without auto-responses never pays for it.
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

log = logging.getLogger(__name__)

END_CALL_MARKER = "[END_CALL]"
_END_CALL_RE = re.compile(r"\[\s*END[_ ]CALL\s*\]", re.IGNORECASE)
# Long calls keep only the most recent entries so prompts (and latency) stay bounded.
_MAX_HISTORY = 60
_FENCE_RE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)```", re.DOTALL)
_THINK_RE = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_META_RE = re.compile(
    r"^\s*(?:(?:thinking|analysis|reasoning|plan)\s*:|the user\b.*\bI\s+(?:should|will|need|must)\b)",
    re.IGNORECASE | re.DOTALL,
)
_SPOKEN_FIELD_RE = re.compile(r'"spoken"\s*:\s*"((?:[^"\\]|\\.)*)"', re.DOTALL)
_INVALID_ESCAPE_RE = re.compile(r'\\([^"\\/bfnrtu])')
_MARKDOWN_LINE_RE = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+•]\s+|\d+[.)]\s+)", re.MULTILINE)
_LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS_RE = re.compile(r"(\*\*|__|\*|`+)(\S(?:.*?\S)?)\1")
_EMOJI_RE = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f\u200d]")
_SENTENCE_END_RE = re.compile(r"[.!?…](?=\s|$)")


@dataclass(frozen=True)
class Reply:
    """What to say next; ``end_call`` when the model marked the conversation as over."""

    text: str
    end_call: bool


class ResponderError(Exception):
    """A reply could not be produced; the message is safe to log and to show."""


def parse_response_model(value: str) -> tuple[str, str]:
    """Split ``responseModel`` ("openai/gpt-4o-mini") on its first "/"; no slash means openai."""
    text = value.strip()
    provider, slash, model = text.partition("/")
    if not slash:
        provider, model = "openai", text
    if not provider or not model:
        raise ValueError(f"responseModel must look like 'provider/model', got {value!r}")
    return provider, model


def default_system_prompt(caller_number: str) -> str:
    return (
        "You are a helpful voice assistant on a phone call. "
        "Your words are spoken aloud to the caller, so answer in one or two short, "
        "conversational sentences, natural and friendly. "
        "Use plain spoken language only: no markdown, lists, code, emojis or stage directions. "
        f"The caller's phone number is {caller_number or 'unknown'}. "
        "When the conversation is over (the caller says goodbye or needs nothing more), say a "
        f"brief goodbye and put {END_CALL_MARKER} at the very end of your reply; "
        f"never write {END_CALL_MARKER} otherwise."
    )


def build_messages(
    system_prompt: str, transcript: Sequence[tuple[str, str]]
) -> list[ChatCompletionMessageParam]:
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": system_prompt}]
    for speaker, text in list(transcript)[-_MAX_HISTORY:]:
        text = text.strip()
        if not text:
            continue
        if speaker == "bot":
            messages.append({"role": "assistant", "content": text})
        else:
            messages.append({"role": "user", "content": text})
    return messages


def _lenient_unescape(body: str) -> str:
    # Models emit invalid escapes (\' or \x); keep the character rather than failing.
    fixed = _INVALID_ESCAPE_RE.sub(r"\1", body)
    fixed = "".join(ch if ch >= " " else " " for ch in fixed)
    value = json.loads(f'"{fixed}"')
    assert isinstance(value, str)
    return value


def _spoken_from_json(text: str) -> tuple[str, bool] | None:
    """The ``{"spoken": ...}`` contract, read defensively; None when the reply is not that."""
    candidates = [text]
    candidates += [m.group(1) for m in _FENCE_RE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate.strip())
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("spoken"), str):
            return data["spoken"], data.get("end_call") is True
    fields = _SPOKEN_FIELD_RE.findall(text)
    if not fields:
        return None
    parts: list[str] = []
    for body in fields:
        try:
            parts.append(_lenient_unescape(body))
        except ValueError:
            return None  # one undecodable block: trust none of them
    return " ".join(parts), False


def _strip_markdown(text: str) -> str:
    text = _FENCE_RE.sub(lambda m: m.group(1), text)
    text = text.replace("```", "")
    text = _LINK_RE.sub(r"\1", text)
    text = _MARKDOWN_LINE_RE.sub("", text)
    for _ in range(2):  # nested emphasis such as ***x***
        text = _EMPHASIS_RE.sub(r"\2", text)
    return _EMOJI_RE.sub("", text)


def _drop_meta_paragraphs(text: str) -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    while len(paragraphs) > 1 and _META_RE.match(paragraphs[0]):
        paragraphs.pop(0)
    return "\n\n".join(paragraphs)


def clean_reply(raw: str, *, truncated: bool = False) -> Reply:
    """Turn a model's raw reply into speakable text plus the end-of-call flag."""
    text = _THINK_RE.sub(" ", raw)
    end_call = bool(_END_CALL_RE.search(text))
    text = _END_CALL_RE.sub(" ", text)
    structured = _spoken_from_json(text)
    if structured is not None:
        text, json_end = structured
        end_call = end_call or json_end or bool(_END_CALL_RE.search(text))
        text = _END_CALL_RE.sub(" ", text)
    else:
        text = _drop_meta_paragraphs(text)
    text = " ".join(_strip_markdown(text).split())
    if truncated:
        # Cut a reply stopped by max_tokens back to its last whole sentence, if it has one.
        ends = list(_SENTENCE_END_RE.finditer(text))
        if ends:
            text = text[: ends[-1].end()]
    return Reply(text=text, end_call=end_call)


class Responder:
    """Produces the bot's next line from the conversation so far."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        model: str = "gpt-4o-mini",
        system_prompt: str | None = None,
        timeout_s: float = 30.0,
        max_tokens: int = 200,
    ) -> None:
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise ResponderError("no API key for the response model (set OPENAI_API_KEY)")
            key = "unused"  # local OpenAI-compatible servers often need no key
        from openai import AsyncOpenAI

        # No SDK retries: on a live call a late answer is worse than a quick, logged failure.
        self._client = AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout_s, max_retries=0)
        self._model = model
        self._system_prompt = system_prompt
        self._timeout_s = timeout_s
        self._max_tokens = max_tokens
        self._use_completion_tokens = False

    def __repr__(self) -> str:
        return f"<Responder model={self._model!r}>"

    async def reply(
        self, *, transcript: Sequence[tuple[str, str]], caller_number: str, call_id: str
    ) -> Reply:
        """Ask the model for the next line. Raises ResponderError on timeout or API failure."""
        import openai

        prompt = self._system_prompt or default_system_prompt(caller_number)
        messages = build_messages(prompt, transcript)
        try:
            async with asyncio.timeout(self._timeout_s):
                completion = await self._create(messages)
        except (TimeoutError, openai.APITimeoutError):
            log.warning("call %s: response timed out after %gs", call_id, self._timeout_s)
            raise ResponderError(f"response timed out after {self._timeout_s:g} s") from None
        except openai.OpenAIError as exc:
            message = _safe_error(exc)
            log.warning("call %s: %s", call_id, message)
            raise ResponderError(message) from None
        if not completion.choices:
            return Reply("", False)
        choice = completion.choices[0]
        raw = choice.message.content or ""
        result = clean_reply(raw, truncated=choice.finish_reason == "length")
        log.debug("call %s: reply of %d chars, end_call=%s", call_id, len(result.text), result.end_call)
        return result

    async def _create(self, messages: list[ChatCompletionMessageParam]) -> ChatCompletion:
        import openai

        if not self._use_completion_tokens:
            try:
                return await self._client.chat.completions.create(
                    model=self._model, messages=messages, max_tokens=self._max_tokens
                )
            except openai.BadRequestError as exc:
                # Newer OpenAI models refuse max_tokens; remember and use their name for it.
                unsupported = exc.param == "max_tokens" and exc.code == "unsupported_parameter"
                if not unsupported and "max_completion_tokens" not in exc.message:
                    raise
                self._use_completion_tokens = True
        return await self._client.chat.completions.create(
            model=self._model, messages=messages, max_completion_tokens=self._max_tokens
        )

    async def aclose(self) -> None:
        await self._client.close()


def _safe_error(exc: openai.OpenAIError) -> str:
    import openai

    # Provider bodies can echo request data; only the status reaches messages.
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return f"response model rejected the credentials (HTTP {exc.status_code})"
    if isinstance(exc, openai.NotFoundError):
        return "response model not found (HTTP 404)"
    if isinstance(exc, openai.RateLimitError):
        return "response model rate limited (HTTP 429)"
    if isinstance(exc, openai.APIStatusError):
        return f"response model failed (HTTP {exc.status_code})"
    if isinstance(exc, openai.APIConnectionError):
        return "response model unreachable"
    return "response generation failed"


def _speech_key(text: str) -> str:
    return " ".join(text.casefold().split())


class TurnGate:
    """Turn rules for one call: stale replies are never spoken, nor the same text twice a turn."""

    def __init__(self) -> None:
        self._generation = 0
        self._spoken: set[str] = set()

    @property
    def current(self) -> int:
        return self._generation

    def begin(self) -> int:
        """Start a turn (the caller spoke); every earlier turn is superseded."""
        self._generation += 1
        self._spoken.clear()
        return self._generation

    def is_current(self, gen: int) -> bool:
        return gen == self._generation

    def should_speak(self, gen: int, text: str) -> bool:
        """True once per distinct text in the current turn; False for stale turns or blanks."""
        if gen != self._generation:
            return False
        key = _speech_key(text)
        if not key or key in self._spoken:
            return False
        self._spoken.add(key)
        return True
