"""What every command shares: the context (settings loaded once), the consoles, store helpers."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from stream.config import Settings, load

# Wide tables even when piped (CI logs, `| less`): a terminal narrower than this still wraps.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)
log = logging.getLogger("segstream")


class Ctx:
    def __init__(self, config: Path | None, overrides: dict[str, Any]) -> None:
        self.config = config
        self.overrides = overrides
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load(self.config, self.overrides)
        return self._settings


def flag_overrides(
    bootstrap: str | None,
    redis_url: str | None,
    namespace: str | None,
    group: str | None,
    suffix: str | None = None,
) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if suffix is not None:
        o.setdefault("topics", {})["suffix"] = suffix
    if bootstrap:
        o.setdefault("kafka", {})["bootstrap_servers"] = bootstrap
    if group:
        o.setdefault("kafka", {})["group_id"] = group
    if redis_url:
        o.setdefault("redis", {})["url"] = redis_url
    if namespace:
        o.setdefault("redis", {})["namespace"] = namespace
    return o


def dead_letter_text(total: int, classes: dict[str, int], noun: str = "dead letters") -> str:
    """``12 dead letters (InvalidJSON 7, LateEvent 5)``: the total and its error classes."""
    text = f"{total:,} {noun}"
    return f"{text} ({classes_text(classes)})" if classes else text


def classes_text(classes: dict[str, int]) -> str:
    """``InvalidJSON 7, LateEvent 5``: the most frequent first."""
    ordered = sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{name} {n:,}" for name, n in ordered)


def open_store(settings: Settings) -> Any:
    from stream.state import FeatureStore

    r = settings.redis
    return FeatureStore(r.url.get_secret_value(), r.namespace, cluster=r.cluster).start(
        r.connect_timeout_seconds
    )


def partitions_of(settings: Settings, store: Any) -> int:
    meta = store.meta()
    return int(meta.get("partitions", settings.topics.partitions))
