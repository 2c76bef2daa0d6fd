"""Provider media streams: the WebSocket endpoint, admission control, and per-call sessions."""
