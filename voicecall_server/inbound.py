"""Inbound policy (reference 4.3): disabled, allowlist/pairing by caller-ID digits, or open.

Caller ID is screening, not identity: anyone can spoof a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NON_DIGITS = re.compile(r"\D")


@dataclass(frozen=True, slots=True)
class InboundDecision:
    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    mode: str = "disabled"
    allow_from: tuple[str, ...] = ()
    greeting: str = ""

    def decide(self, caller: str) -> InboundDecision:
        if self.mode == "open":
            return InboundDecision(True)
        if self.mode in ("allowlist", "pairing"):
            digits = _NON_DIGITS.sub("", caller)
            if not digits:
                return InboundDecision(False, "missing caller ID")
            if any(_NON_DIGITS.sub("", allowed) == digits for allowed in self.allow_from):
                return InboundDecision(True)
            return InboundDecision(False, "caller not in allowFrom")
        return InboundDecision(False, "inbound calls are disabled (inboundPolicy)")
