"""The state machine rules of reference section 2.3, table-driven."""

from __future__ import annotations

import pytest

from voicecall_server.domain import CallState, can_transition

S = CallState
NON_TERMINAL = [S.INITIATED, S.RINGING, S.ANSWERED, S.ACTIVE, S.SPEAKING, S.LISTENING]
TERMINAL = [s for s in CallState if s.terminal]


def test_terminal_set_matches_end_reasons() -> None:
    assert {s.value for s in TERMINAL} == {
        "completed", "hangup-user", "hangup-bot", "timeout", "error", "failed", "no-answer", "busy", "voicemail",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (S.INITIATED, S.RINGING, True),
        (S.INITIATED, S.ANSWERED, True),
        (S.RINGING, S.ANSWERED, True),
        (S.ANSWERED, S.ACTIVE, True),
        (S.ACTIVE, S.SPEAKING, True),
        (S.SPEAKING, S.LISTENING, True),
        (S.LISTENING, S.SPEAKING, True),
        (S.RINGING, S.INITIATED, False),
        (S.ANSWERED, S.RINGING, False),
        (S.LISTENING, S.ANSWERED, False),
        (S.SPEAKING, S.ACTIVE, False),
        (S.RINGING, S.RINGING, False),
        (S.LISTENING, S.LISTENING, False),
    ],
)
def test_forward_only_and_conversation_alternates(
    current: CallState, target: CallState, allowed: bool
) -> None:
    assert can_transition(current, target) is allowed


@pytest.mark.parametrize("current", NON_TERMINAL)
@pytest.mark.parametrize("target", TERMINAL)
def test_any_terminal_reachable_from_any_live_state(current: CallState, target: CallState) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize("current", TERMINAL)
@pytest.mark.parametrize("target", list(CallState))
def test_terminal_states_absorb(current: CallState, target: CallState) -> None:
    assert not can_transition(current, target)
