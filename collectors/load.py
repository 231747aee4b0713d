"""What CareKPI costs each source: query seconds, queries and result rows, per refresh unit.

The seconds are the source's: measured by the client from each statement's send to its
results received (the driver's execute, and the fetches of a result read as it streams), not
the time CareKPI takes to build and compile the SQL before sending it (measured at 10M
appointments: 0.48 s a minute of PostgreSQL's own active time at the default cadences, 0.43 s
so measured, 0.62 s from connect to the end of the transaction).

Exported as counters (``carekpi_source_query_seconds_total{source, unit}`` and friends), so a
DBA reads the exporter's footprint as ``rate(...) * 60``: database seconds per minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, Metric

from kpis import names


@dataclass(frozen=True)
class UnitLoad:
    seconds: float = 0.0
    queries: int = 0
    rows: int = 0


_timing = threading.local()  # ``spent``: the seconds of the unit timed in this thread
_SENT = "carekpi.sent"


def _add(seconds: float) -> None:
    spent: list[float] | None = getattr(_timing, "spent", None)
    if spent is not None:
        spent[0] += seconds


@sa.event.listens_for(sa.Engine, "before_cursor_execute")
def _sent(conn: sa.Connection, *_: object) -> None:
    conn.info[_SENT] = time.perf_counter()


@sa.event.listens_for(sa.Engine, "after_cursor_execute")
def _answered(conn: sa.Connection, *_: object) -> None:
    sent = conn.info.pop(_SENT, None)
    if sent is not None:
        _add(time.perf_counter() - sent)


@sa.event.listens_for(sa.Engine, "handle_error")
def _failed(context: sa.engine.ExceptionContext) -> None:
    """A statement that failed (a timeout, a lost connection) kept the source busy too."""
    if context.connection is not None:
        _answered(context.connection)


@contextmanager
def fetching() -> Iterator[None]:
    """Reading a result's rows: the source's time too (SQLite steps through a query as its
    rows are fetched; a streamed result fetches from the server)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _add(time.perf_counter() - started)


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
        """The source's time in a block of queries (see the module's docstring); the caller
        appends each query's result row count and reads results inside :func:`fetching`."""
        rows: list[int] = []
        outer = getattr(_timing, "spent", None)
        _timing.spent = spent = [0.0]
        try:
            yield rows
        finally:
            _timing.spent = outer
            self.add(source, unit, spent[0], max(len(rows), 1), sum(rows))

    def totals(self) -> dict[tuple[str, str], UnitLoad]:
        with self._lock:
            return dict(self._totals)


def load_families(meter: LoadMeter) -> Iterator[Metric]:
    """What the refreshes cost each source, per unit (client-measured)."""
    labels = [names.SOURCE, names.UNIT]
    seconds = CounterMetricFamily(names.SOURCE_QUERY_SECONDS, "Seconds the source spent on "
                                  "CareKPI's queries (measured by CareKPI, from each statement "
                                  "sent to its rows received) per refresh unit; rate(...) * 60 "
                                  "is database seconds per minute.", labels=labels)
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
