"""The latest completed snapshot per KPI, source and group of windows (windows refreshed
together, on their own interval: kpis/cadence.py), with refresh statistics and the load
the refreshes put on each source.

Written by the refresh workers, read by scrapes; every access is under one lock and every
read returns immutable values.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from collectors.labels import LabelCaps
from collectors.load import LoadMeter
from kpis.config import Config
from kpis.series import STALE_REFRESHES
from kpis.snapshot import KpiResult


@dataclass(frozen=True)
class Stats:
    interval: float = 0.0
    last_success: float | None = None  # Unix time
    errors: int = 0
    rows: int = 0


Key = tuple[str, str, tuple[str, ...]]  # kpi, source, windows refreshed together


def _key(result: KpiResult) -> Key:
    return result.kpi.key, result.source, result.windows


def _combined(parts: list[Stats]) -> Stats:
    """A KPI's statistics over its window groups: the stalest success, every error and row."""
    if not parts:
        return Stats()
    successes = [s.last_success for s in parts]
    return Stats(min(s.interval for s in parts),
                 None if None in successes else min(s for s in successes if s is not None),
                 sum(s.errors for s in parts), sum(s.rows for s in parts))


class Store:
    def __init__(self, config: Config, stale_after_intervals: float = STALE_REFRESHES,
                 own_sources: set[str] | None = None) -> None:
        """own_sources: the sources whose own series this process exports (a shard's; None:
        all of them)."""
        self.config = config
        self.own_sources = own_sources
        self.caps = LabelCaps(config.labels)
        self.stale_after = stale_after_intervals
        self._lock = threading.Lock()
        self._results: dict[Key, KpiResult] = {}
        self._good: dict[Key, KpiResult] = {}
        self._stats: dict[Key, Stats] = {}
        self.load = LoadMeter()
        self._source_up: dict[str, bool] = {}
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    def put(self, results: list[KpiResult], interval: float) -> None:
        with self._lock:
            for result in results:
                key = _key(result)
                stats = self._stats.get(key, Stats(interval))
                if result.ok:
                    self._good[key] = result
                    stats = replace(stats, interval=interval, rows=stats.rows + result.rows_read,
                                    last_success=result.evaluated_at.timestamp())
                elif result.error is not None:
                    stats = replace(stats, interval=interval, errors=stats.errors + 1)
                self._stats[key] = stats
                self._results[key] = result
            self._version += 1

    def set_source_up(self, source: str, up: bool) -> None:
        with self._lock:
            if self._source_up.get(source) != up:
                self._source_up[source] = up
                self._version += 1

    def results(self) -> list[KpiResult]:
        """The latest result per KPI, source and window group; a failed refresh shows the last
        good cells (its error stays visible through carekpi_kpi_up) until they go stale."""
        with self._lock:
            out = []
            for key, result in self._results.items():
                good = self._good.get(key)
                if result.error is not None and good is not None:
                    result = replace(good, error=result.error,
                                     duration_seconds=result.duration_seconds)
                out.append(result)
            return out

    def servable(self, result: KpiResult) -> bool:
        """Cells older than a few refresh intervals are dropped rather than served stale."""
        stats = self.stats(result.kpi.key, result.source, result.windows)
        if result.error is None:
            return True
        if stats.last_success is None:
            return False
        return time.time() - stats.last_success <= self.stale_after * max(stats.interval, 1.0)

    def stats(self, kpi: str, source: str, windows: tuple[str, ...] | None = None) -> Stats:
        """One window group's statistics; without ``windows``, all groups' combined."""
        with self._lock:
            if windows is not None:
                return self._stats.get((kpi, source, windows), Stats())
            return _combined([s for (k, src, _), s in self._stats.items()
                              if (k, src) == (kpi, source)])

    def source_up(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._source_up)

    def exported_source_up(self) -> dict[str, bool]:
        """``source_up`` of the sources this process exports (each shard exports its own)."""
        own = self.own_sources
        return {s: up for s, up in self.source_up().items() if own is None or s in own}
