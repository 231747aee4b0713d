"""What CareKPI costs each source: query seconds (measured by the client, from connect to the
end of the transaction), queries and result rows, per refresh unit.

Exported as counters (``carekpi_source_query_seconds_total{source, unit}`` and friends), so a
DBA reads the exporter's footprint as ``rate(...) * 60``: database seconds per minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, Metric

from kpis import names


@dataclass(frozen=True)
class UnitLoad:
    seconds: float = 0.0
    queries: int = 0
    rows: int = 0


class LoadMeter:
    """Thread-safe totals per (source, unit) since the process started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str], UnitLoad] = {}

    def add(self, source: str, unit: str, seconds: float, queries: int = 1,
            rows: int = 0) -> None:
        with self._lock:
            now = self._totals.get((source, unit), UnitLoad())
            self._totals[(source, unit)] = UnitLoad(now.seconds + seconds,
                                                    now.queries + queries, now.rows + rows)

    @contextmanager
    def timed(self, source: str, unit: str) -> Iterator[list[int]]:
        """Time a block of queries; the caller appends each query's result row count."""
        rows: list[int] = []
        started = time.perf_counter()
        try:
            yield rows
        finally:
            self.add(source, unit, time.perf_counter() - started, max(len(rows), 1), sum(rows))

    def totals(self) -> dict[tuple[str, str], UnitLoad]:
        with self._lock:
            return dict(self._totals)


def load_families(meter: LoadMeter) -> Iterator[Metric]:
    """What the refreshes cost each source, per unit (client-measured)."""
    labels = [names.SOURCE, names.UNIT]
    seconds = CounterMetricFamily(names.SOURCE_QUERY_SECONDS, "Seconds spent in the source's "
                                  "queries (measured by CareKPI, connect to end of transaction)"
                                  " per refresh unit; rate(...) * 60 is database seconds per "
                                  "minute.", labels=labels)
    queries = CounterMetricFamily(names.SOURCE_QUERIES, "Queries run on the source per refresh "
                                  "unit.", labels=labels)
    rows = CounterMetricFamily(names.SOURCE_ROWS_READ, "Result rows the source returned per "
                               "refresh unit (aggregates, not the rows it scanned).",
                               labels=labels)
    for (source, unit), load in sorted(meter.totals().items()):
        seconds.add_metric([source, unit], load.seconds)
        queries.add_metric([source, unit], load.queries)
        rows.add_metric([source, unit], load.rows)
    yield from (seconds, queries, rows)
