from __future__ import annotations

import pytest

from voicecall_client.cli_format import enum_word, format_event, nearest_rank, summarize
from voicecall_client.v1 import voicecall_service_pb2 as pb


@pytest.mark.parametrize(
    ("percentile", "expected"), [(5, 15), (30, 20), (40, 20), (50, 35), (95, 50), (100, 50)]
)
def test_nearest_rank(percentile: float, expected: int) -> None:
    assert nearest_rank([15, 20, 35, 40, 50], percentile) == expected


def test_summarize_single_and_empty() -> None:
    assert summarize([42]) == {"count": 1, "minMs": 42, "maxMs": 42, "avgMs": 42.0, "p50Ms": 42, "p95Ms": 42}
    assert summarize([])["count"] == 0
    assert summarize([])["p95Ms"] is None


def test_summarize_unsorted_input_and_average_rounding() -> None:
    got = summarize([3, 1, 2, 2])
    assert got == {"count": 4, "minMs": 1, "maxMs": 3, "avgMs": 2.0, "p50Ms": 2, "p95Ms": 3}
    assert summarize([1, 2, 2])["avgMs"] == 1.7


def test_enum_word() -> None:
    assert enum_word("CALL_STATE_NO_ANSWER", "CALL_STATE_") == "no-answer"
    assert enum_word("END_REASON_HANGUP_USER", "END_REASON_") == "hangup-user"


def test_event_without_time_or_kind() -> None:
    assert format_event(pb.CallEvent(sequence=3, call_id="0123456789")) == "#3 - 01234567 unknown"


def test_caller_text_keeps_unicode_and_escapes_quotes() -> None:
    ev = pb.CallEvent(
        sequence=1, call_id="c", caller_speech=pb.CallerSpeech(transcript='oui "ça" va', is_final=True)
    )
    assert format_event(ev) == '#1 - c caller "oui \\"ça\\" va" (final)'
