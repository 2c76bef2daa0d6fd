"""TwiML documents the adapter sends (live call updates, dial) and answers webhooks with.

Built with the SDK's ``VoiceResponse`` so text and attributes are XML-escaped. Shapes:

- keep-alive: ``<Pause length=N/><Redirect method="POST">webhook?callId=..&ka=..</Redirect>``. A
  document that runs out of verbs hangs the call up, so every reply or update that must leave the
  call open ends with this loop; each turn of it is a fresh signed webhook whose reply reflects the
  call's current state (a call that has ended gets an empty reply and hangs up). ``ka`` makes each
  turn a distinct request, so it is never mistaken for a replay. ``<Pause>`` as the very first verb
  delays pick-up of a ringing inbound call, hence the short first pause for those.
- stream: ``<Connect><Stream url><Parameter name="token" value/></Stream></Connect>``; Twilio strips
  query strings from stream URLs, so the one-time token travels as a ``<Parameter>``.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from twilio.twiml.voice_response import VoiceResponse

KEEPALIVE_PAUSE_S = 60
"""How long each turn of the keep-alive loop waits before asking the webhook again."""
RINGING_PAUSE_S = 1
TWIML_MAX_CHARS = 4000
"""Twilio's limit on the ``Twiml`` parameter of the Calls API."""


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to its query (the webhook URL is given without one)."""
    if not params:
        return url
    sep = "&" if "?" in url else "?"
    return url + sep + urlencode(params)


def keepalive_url(webhook_url: str, call_id: str) -> str:
    params = [("callId", call_id)] if call_id else []
    return with_query(webhook_url, [*params, ("ka", str(time.time_ns() // 1_000_000))])


def render(response: VoiceResponse, *, declaration: bool = False) -> str:
    return str(response.to_xml(xml_declaration=declaration))


def empty() -> VoiceResponse:
    return VoiceResponse()


def reject() -> VoiceResponse:
    response = VoiceResponse()
    response.reject()
    return response


def say(response: VoiceResponse, text: str, voice: str, language: str) -> VoiceResponse:
    response.say(text, voice=voice, language=language)
    return response


def hangup(response: VoiceResponse) -> VoiceResponse:
    response.hangup()
    return response


def stream(response: VoiceResponse, url: str, token: str) -> VoiceResponse:
    connect = response.connect()
    st = connect.stream(url=url)
    st.parameter(name="token", value=token)
    return response


def keep_alive(response: VoiceResponse, redirect_url: str | None, *, first_pause_s: int) -> VoiceResponse:
    """Append the keep-alive loop; without a webhook URL a single long pause is the best available."""
    if redirect_url is None:
        response.pause(length=max(first_pause_s, KEEPALIVE_PAUSE_S))
        return response
    response.pause(length=first_pause_s)
    response.redirect(redirect_url, method="POST")
    return response


def gather(response: VoiceResponse, action_url: str, language: str) -> VoiceResponse:
    response.gather(
        input="speech", speech_timeout="auto", language=language, action=action_url, method="POST"
    )
    return response
