"""The voicecall sidecar: gRPC call control plus the provider webhook and media-stream listener."""
