"""The Plivo XML documents this adapter answers with, built with the SDK's ``plivoxml`` elements.

The SDK serialises through lxml, which escapes text and attribute values (``& < > "``); lxml refuses
characters XML 1.0 cannot carry (NUL and most C0 controls), so text is cleaned of those first.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from plivo import plivoxml

from .media import MULAW, SAMPLE_RATE, stream_extra_headers

KEEP_ALIVE_S = 300
LISTEN_TIMEOUT_S = 60
"""GetInput executionTimeout: Plivo's maximum (5-60 s)."""
SPEECH_END_S = 2
"""GetInput speechEndTimeout: the shortest pause (2-10 s) Plivo allows before it sends the speech."""
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def flow_url(webhook_url: str, flow: str, call_id: str = "", **extra: str) -> str:
    """``webhook_url`` with ``provider=plivo``, ``flow`` and, when known, ``callId`` (plus ``extra``)."""
    params = [("provider", "plivo"), ("flow", flow)]
    if call_id:
        params.append(("callId", call_id))
    params.extend(extra.items())
    return webhook_url + ("&" if "?" in webhook_url else "?") + urlencode(params)


def render(response: object) -> str:
    return str(response.to_string(pretty=False))  # type: ignore[attr-defined]


def empty() -> str:
    return render(plivoxml.ResponseElement())


def hangup() -> str:
    return render(plivoxml.ResponseElement().add(plivoxml.HangupElement()))


def _keep_alive(response: object, next_url: str | None) -> None:
    response.add(plivoxml.WaitElement(length=KEEP_ALIVE_S))  # type: ignore[attr-defined]
    if next_url:
        # After the wait, ask again rather than letting the XML (and so the call) run out.
        response.add(plivoxml.RedirectElement(clean(next_url), method="POST"))  # type: ignore[attr-defined]


def keep_alive(next_url: str | None = None) -> str:
    response = plivoxml.ResponseElement()
    _keep_alive(response, next_url)
    return render(response)


def _speak(text: str, voice: str, language: str) -> object:
    return plivoxml.SpeakElement(clean(text), voice=voice or None, language=language or None)


def stream_element(stream_url: str, token: str) -> object:
    return plivoxml.StreamElement(
        clean(stream_url),
        bidirectional=True,
        audioTrack="inbound",
        contentType=f"{MULAW};rate={SAMPLE_RATE}",
        extraHeaders=stream_extra_headers(token),
        keepCallAlive=True,
    )


def stream_xml(stream_url: str, token: str) -> str:
    """The ``<Stream>`` element alone: bidirectional μ-law with the token in ``extraHeaders``.

    Plivo passes ``extraHeaders`` to the WebSocket server in every stream message; a token in the
    ``wss://`` query string would also be logged by every proxy on the way, so it is not used.
    """
    return str(stream_element(stream_url, token).to_string(pretty=False))  # type: ignore[attr-defined]


def stream(stream_url: str, token: str, next_url: str | None) -> str:
    """Connect the media stream; if it ever ends with the call still up, keep the call alive."""
    response = plivoxml.ResponseElement().add(stream_element(stream_url, token))
    _keep_alive(response, next_url)
    return render(response)


def notify(message: str, voice: str, language: str) -> str:
    response = plivoxml.ResponseElement().add(_speak(message, voice, language))
    return render(response.add(plivoxml.HangupElement()))


def speak(
    text: str, voice: str, language: str, *, next_url: str | None, stream_url: str | None, token: str | None
) -> str:
    """Speak, then reconnect the media stream (when the call has one) or fetch what comes next."""
    response = plivoxml.ResponseElement().add(_speak(text, voice, language))
    if stream_url and token:
        response.add(stream_element(stream_url, token))
        _keep_alive(response, next_url)
    elif next_url:
        response.add(plivoxml.RedirectElement(clean(next_url), method="POST"))
    else:
        _keep_alive(response, None)
    return render(response)


def listen(action_url: str, language: str, next_url: str | None) -> str:
    """Speech recognition for one turn; ``action_url`` carries the call id and the turn token."""
    get_input = plivoxml.GetInputElement(
        action=clean(action_url),
        method="POST",
        input_type="speech",
        execution_timeout=LISTEN_TIMEOUT_S,
        speech_end_timeout=SPEECH_END_S,
        language=language or None,
        redirect=False,
    )
    response = plivoxml.ResponseElement().add(get_input)
    _keep_alive(response, next_url)
    return render(response)
