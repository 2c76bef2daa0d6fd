"""The voice ``<Say>`` uses: OpenAI voice names mapped to Amazon Polly, as the reference does."""

from __future__ import annotations

DEFAULT_VOICE = "Polly.Joanna"

_OPENAI_TO_POLLY = {
    "alloy": "Polly.Joanna",
    "echo": "Polly.Matthew",
    "fable": "Polly.Amy",
    "onyx": "Polly.Brian",
    "nova": "Polly.Salli",
    "shimmer": "Polly.Kimberly",
}


def say_voice(name: str | None) -> str:
    """Twilio's voice for ``name``: Polly.*/Google.* pass through, OpenAI names map, else the default."""
    if not name:
        return DEFAULT_VOICE
    name = name.strip()
    if name.startswith(("Polly.", "Google.")):
        return name
    return _OPENAI_TO_POLLY.get(name.lower(), DEFAULT_VOICE)
