"""What a check run was: the header every report carries (config, sources, time, window,
versions), so a report read weeks later still says what it checked and with what."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any

from kpis import __version__
from kpis.config import Config
from kpis.durations import format_seconds


def gx_version() -> str | None:
    """Great Expectations' installed version, read from its metadata (GX is not imported)."""
    try:
        return metadata.version("great_expectations")
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class RunInfo:
    config_path: str
    started_at: datetime  # UTC
    duration_seconds: float
    since_seconds: float | None  # None: every record
    sources: tuple[str, ...] = ()  # "name (dialect)": never a URL, a host or a credential
    carekpi_version: str = __version__
    great_expectations_version: str | None = field(default_factory=gx_version)

    @classmethod
    def of(cls, config: Config, entities: list[str] | None, started_at: datetime,
           duration_seconds: float, since_seconds: float | None) -> RunInfo:
        names = sorted(config.entities) if entities is None else entities
        used = sorted({config.entities[n].source for n in names if n in config.entities})
        sources = tuple(f"{s} ({_dialect(config.sources[s].url)})" for s in used)
        return cls(str(config.path), started_at, duration_seconds, since_seconds, sources)

    @property
    def window(self) -> str:
        if self.since_seconds is None:
            return "full (every record)"
        return f"last {format_seconds(self.since_seconds)} (records whose main timestamp is " \
               "in the window)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config_path,
            "sources": list(self.sources),
            "run_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "window": {"mode": "full" if self.since_seconds is None else "since",
                       "since_seconds": self.since_seconds, "text": self.window},
            "carekpi_version": self.carekpi_version,
            "great_expectations_version": self.great_expectations_version,
        }


def _dialect(url: str) -> str:
    scheme = url.split(":", 1)[0]
    return scheme.split("+", 1)[0] or "unknown"
