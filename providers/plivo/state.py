"""What the Plivo adapter remembers between REST calls and callbacks, in memory only.

- RequestUUID -> CallUUID, learned from callbacks that carry both (the create-call response only
  has the request id; transfers and hang-ups need the call id). CallUUIDs seen on their own are
  kept too, so a hang-up knows it can go straight to ``DELETE /Call/{uuid}/``.
- The XML waiting to be fetched per call: the speech of ``speak`` (``xml-speak``) and the GetInput
  of ``start_listening`` (``xml-listen``, or ``xml-next`` when speech is still playing).

None of it needs to survive a restart: the call manager persists the provider call id (the
CallUUID once a callback has carried it), pending XML belongs to a turn that a restart ends anyway,
and the mappings are learned again from the next callbacks. Every table is bounded.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_ENTRIES = 10_000
SPEECH_GRACE_S = 10.0
SPEECH_S_PER_CHAR = 0.1
"""Generous: TTS speaks about 15 characters a second."""


class _Bounded(OrderedDict[str, str]):
    def put(self, key: str, value: str) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > MAX_ENTRIES:
            self.popitem(last=False)


@dataclass
class _Pending:
    speak: str | None = None
    listen: str | None = None
    speaking_until: float = 0.0
    """While speech XML that ends in a redirect to ``xml-next`` is playing (monotonic deadline)."""


class CallTable:
    def __init__(self) -> None:
        self._uuids = _Bounded()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()

    # -- provider ids -----------------------------------------------------------------------------
    def learn(self, call_uuid: str, request_uuid: str) -> None:
        if call_uuid:
            self._uuids.put(call_uuid, call_uuid)
            if request_uuid:
                self._uuids.put(request_uuid, call_uuid)

    def call_uuid(self, provider_call_id: str) -> str | None:
        """The CallUUID for a provider call id (a CallUUID or a RequestUUID), if a callback told us."""
        return self._uuids.get(provider_call_id)

    # -- pending XML ------------------------------------------------------------------------------
    def _slot(self, call_id: str) -> _Pending:
        slot = self._pending.get(call_id)
        if slot is None:
            slot = self._pending[call_id] = _Pending()
            while len(self._pending) > MAX_ENTRIES:
                self._pending.popitem(last=False)
        return slot

    def set_speak(self, call_id: str, xml: str, *, chained: bool, text_length: int) -> None:
        slot = self._slot(call_id)
        slot.speak = xml
        slot.listen = None  # a new utterance supersedes a turn that never started listening
        slot.speaking_until = (
            time.monotonic() + SPEECH_GRACE_S + SPEECH_S_PER_CHAR * text_length if chained else 0.0
        )

    def speak_failed(self, call_id: str) -> None:
        if (slot := self._pending.get(call_id)) is not None:
            slot.speak = None
            slot.speaking_until = 0.0

    def set_listen(self, call_id: str, xml: str) -> bool:
        """Store the GetInput; True when the caller must transfer the call to fetch it now (no speech
        is playing that will redirect to it when done)."""
        slot = self._slot(call_id)
        slot.listen = xml
        return slot.speaking_until <= time.monotonic()

    def take(self, call_id: str, flow: str) -> str | None:
        """The XML for a fetch of ``flow`` (consumed), or None for the keep-alive."""
        slot = self._pending.get(call_id)
        if slot is None:
            return None
        if flow == "xml-speak":
            xml, slot.speak = slot.speak, None
            return xml
        if flow == "xml-next":
            slot.speaking_until = 0.0
        xml, slot.listen = slot.listen, None
        return xml

    def forget(self, call_id: str | None, *provider_ids: str | None) -> None:
        if call_id:
            self._pending.pop(call_id, None)
        for pid in provider_ids:
            if pid:
                self._uuids.pop(pid, None)

    def __len__(self) -> int:
        return len(self._pending)
