"""Webhook security primitives: public URL reconstruction, replay caches, pre-auth limits."""
