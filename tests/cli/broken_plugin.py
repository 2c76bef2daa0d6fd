"""A CLI plugin module that fails on import, like a package with a missing dependency."""

from __future__ import annotations

raise RuntimeError("this plugin is broken\non purpose")
