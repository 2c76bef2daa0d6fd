"""The XML answer to each Plivo callback, once the call manager has applied its events.

- ``xml-speak`` / ``xml-listen`` / ``xml-next``: the XML stored for the call (consumed), else the
  keep-alive. A replay never consumes anything.
- a replay: the keep-alive (answer, getinput) or an empty ``<Response/>``; never a new stream.
- a rejected inbound call: ``<Hangup/>``; an answer for a call that has already ended too.
- the answer of a notify call: ``<Speak>message</Speak><Hangup/>``.
- the answer of a call that streams: ``<Stream>`` with its token.
- otherwise the keep-alive for answer and getinput, ``<Response/>`` for the rest.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..base import CallMode, CallView, WebhookOutcome, WebhookRequest
from . import xmldoc
from .settings import PlivoSettings
from .state import CallTable
from .webhook import XML_FLOWS, flow_of, form, provider_ids

KEEP_ALIVE_FLOWS = frozenset({"answer", "getinput"})


def _view(request: WebhookRequest, params: Mapping[str, str], outcome: WebhookOutcome) -> CallView | None:
    call_uuid, request_uuid = provider_ids(params)
    for pid in (call_uuid, request_uuid):
        if pid and (view := outcome.calls.get(pid)) is not None:
            return view
    call_id = request.query.get("callId", "")
    for view in outcome.calls.values():
        if call_id and view.call_id == call_id:
            return view
    if len(outcome.calls) == 1:
        return next(iter(outcome.calls.values()))
    return None


def reply_for(
    settings: PlivoSettings,
    calls: CallTable,
    webhook_url: str,
    request: WebhookRequest,
    outcome: WebhookOutcome,
) -> str:
    try:
        params = form(request)
    except ValueError:
        params = {}
    flow = flow_of(request, params)
    call_id = request.query.get("callId", "")

    def next_url(cid: str) -> str | None:
        return xmldoc.flow_url(webhook_url, "xml-next", cid) if webhook_url and cid else None

    if flow in XML_FLOWS:
        pending = calls.take(call_id, flow) if call_id and not outcome.replay else None
        return pending or xmldoc.keep_alive(next_url(call_id))
    keep = flow in KEEP_ALIVE_FLOWS
    if outcome.replay:
        return xmldoc.keep_alive(next_url(call_id)) if keep else xmldoc.empty()
    view = _view(request, params, outcome)
    if view is not None and view.rejected:
        return xmldoc.hangup()
    if flow != "answer" or view is None:
        return xmldoc.keep_alive(next_url(call_id)) if keep else xmldoc.empty()
    if view.pending_message:
        if view.mode is CallMode.NOTIFY:
            return xmldoc.notify(view.pending_message, settings.voice, settings.language)
        # An inbound greeting: speak it, then keep the call up for the conversation.
        return xmldoc.speak(
            view.pending_message,
            settings.voice,
            settings.language,
            next_url=next_url(view.call_id),
            stream_url=None,
            token=None,
        )
    if view.terminal:
        return xmldoc.hangup()
    if view.stream_url and view.stream_token:
        return xmldoc.stream(view.stream_url, view.stream_token, next_url(view.call_id))
    return xmldoc.keep_alive(next_url(view.call_id))
