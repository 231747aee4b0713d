"""What one evaluation of a KPI produces: counts and distributions per label set and window.

Collectors fill these; the exporter, ``carekpi collect`` and the tests read them. Values are
plain numbers: no row of the database and no identifier ever reaches a snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from kpis.catalog import Kpi

Labels = tuple[tuple[str, str], ...]
EXCLUDED = "excluded:"  # prefix of the counts of records left out for a data defect


@dataclass(frozen=True)
class Histogram:
    """A distribution in seconds: cumulative counts per upper bound (``le``), like Prometheus."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    sum: float

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket, as ``histogram_quantile`` does."""
        if self.count == 0:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0
        for bound, cumulative in zip(self.bounds, self.cumulative, strict=True):
            if cumulative >= rank:
                if cumulative == lower_count:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                    cumulative - lower_count
                )
            lower_bound, lower_count = bound, cumulative
        return self.bounds[-1] if self.bounds else math.nan

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def merged(self, other: Histogram) -> Histogram:
        return Histogram(
            self.bounds,
            tuple(a + b for a, b in zip(self.cumulative, other.cumulative, strict=True)),
            self.count + other.count,
            self.sum + other.sum,
        )


@dataclass(frozen=True)
class Spread:
    """How many values a KPI rests on and their extremes (seconds): the plausibility guard
    tells "every wait is exactly 0 s" from a real distribution."""

    count: int
    low: float | None
    high: float | None

    def merged(self, other: Spread) -> Spread:
        lows = [v for v in (self.low, other.low) if v is not None]
        highs = [v for v in (self.high, other.high) if v is not None]
        return Spread(self.count + other.count, min(lows) if lows else None,
                      max(highs) if highs else None)

    @property
    def identical(self) -> bool:
        return self.low is not None and self.low == self.high


@dataclass(frozen=True)
class Cell:
    """One label set (clinic, window and the KPI's other dimensions) and its numbers.

    counts: ``numerator``/``denominator`` (proportion), ``promoters``/``detractors``/
    ``responses`` (score), ``value`` (backlog), ``timestamp`` (freshness, Unix seconds).
    """

    labels: Labels
    counts: Mapping[str, float] = field(default_factory=dict)
    histogram: Histogram | None = None
    spread: Spread | None = None

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)

    def plus(self, other: Cell, labels: Labels | None = None) -> Cell:
        """The two cells added up (counts summed, histograms and spreads merged), under
        ``labels`` (default: this cell's)."""
        counts = {k: self.counts.get(k, 0) + other.counts.get(k, 0)
                  for k in {*self.counts, *other.counts}}
        histogram = self.histogram
        if self.histogram is not None and other.histogram is not None:
            histogram = self.histogram.merged(other.histogram)
        spread = (self.spread.merged(other.spread) if self.spread and other.spread
                  else self.spread or other.spread)
        return Cell(self.labels if labels is None else labels, counts, histogram, spread)


@dataclass(frozen=True)
class KpiResult:
    kpi: Kpi
    source: str
    evaluated_at: datetime
    cells: tuple[Cell, ...] = ()
    unavailable: str | None = None  # why the KPI cannot be computed from this mapping
    error: str | None = None  # why the last refresh failed (one line, no data values)
    duration_seconds: float = 0.0
    rows_read: int = 0
    windows: tuple[str, ...] = ()  # the windows refreshed together; () every one (or none)
    variant: str | None = None  # which pinned variant was computed, when the data chose it

    @property
    def ok(self) -> bool:
        return self.unavailable is None and self.error is None


def value(kpi: Kpi, cell: Cell) -> float | None:
    """The KPI's headline value for one cell, in the unit of its target (None when empty)."""
    c = cell.counts
    if kpi.kind == "proportion":
        return c["numerator"] / c["denominator"] if c.get("denominator") else None
    if kpi.kind == "score":
        r = c.get("responses", 0)
        return 100.0 * (c["promoters"] - c["detractors"]) / r if r else None
    if kpi.kind == "backlog":
        return c.get("value")
    if kpi.kind == "duration" and cell.histogram is not None:
        stat = kpi.target.stat if kpi.target else "p50"
        if stat == "mean":
            return cell.histogram.mean
        return cell.histogram.quantile(0.9 if stat == "p90" else 0.5)
    if kpi.kind == "freshness":
        return c.get("timestamp")
    return None


def volume(kpi: Kpi, cell: Cell) -> float:
    """How many records the cell's value rests on (for minimum-volume guards)."""
    if kpi.kind == "proportion":
        return cell.counts.get("denominator", 0)
    if kpi.kind == "score":
        return cell.counts.get("responses", 0)
    if cell.histogram is not None:
        return cell.histogram.count
    return 0


def with_empty_windows(results: list[KpiResult]) -> list[KpiResult]:
    """One KPI's results of its window groups, each completed with zero cells for the label
    sets only another group saw (a clinic with data in the 30d window but none in the last
    hour still has its 1h series, at 0), as one evaluation of every window gives them."""
    groups = [r for r in results if r.windows]
    if len(groups) < 2:
        return results
    templates: dict[Labels, Cell] = {}
    for result in groups:
        for cell in result.cells:
            templates.setdefault(_without_window(cell.labels), cell)
    out = []
    for result in results:
        if not result.windows or (not result.cells and result.error is not None):
            out.append(result)
            continue
        seen = {c.labels for c in result.cells}
        extra = tuple(_zero(template, labels, window) for labels, template in templates.items()
                      for window in result.windows
                      if (*labels, ("window", window)) not in seen)
        out.append(replace(result, cells=result.cells + extra) if extra else result)
    return out


def _without_window(labels: Labels) -> Labels:
    return tuple((k, v) for k, v in labels if k != "window")


def _zero(template: Cell, labels: Labels, window: str) -> Cell:
    h = template.histogram
    empty = None if h is None else Histogram(h.bounds, (0,) * len(h.bounds), 0, 0.0)
    return Cell((*labels, ("window", window)), dict.fromkeys(template.counts, 0.0), empty)
