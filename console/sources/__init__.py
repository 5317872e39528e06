"""Sources: where credentials live. Each collects records; none writes the store (sync does)."""

from __future__ import annotations

from console.sources.base import CollectResult, Progress, Source, build_sources

__all__ = ["CollectResult", "Progress", "Source", "build_sources"]
