"""Transcribers share one SDK client per process: closing a call's transcriber leaves it open."""

from __future__ import annotations

from voicecall_server.voice.stt import RealtimeTranscriber, realtime_client


def _transcriber(**kwargs: object) -> RealtimeTranscriber:
    return RealtimeTranscriber(
        api_key="sk-test",
        base_url="ws://127.0.0.1:9/v1",
        on_partial=lambda text: None,
        on_final=lambda text, conf: None,
        on_speech_started=lambda: None,
        on_error=lambda message: None,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_shared_client_outlives_the_calls_that_use_it() -> None:
    shared = realtime_client("sk-test", "ws://127.0.0.1:9/v1")
    first, second = _transcriber(client=shared), _transcriber(client=shared)
    await first.aclose()
    await second.aclose()
    assert not shared.is_closed()
    await shared.close()
    assert shared.is_closed()


async def test_an_owned_client_is_closed_with_its_transcriber() -> None:
    own = _transcriber()
    client = own._client
    await own.aclose()
    assert client.is_closed()
