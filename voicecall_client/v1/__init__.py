"""Generated gRPC stubs for voicecall.v1 (see scripts/genproto.py)."""
