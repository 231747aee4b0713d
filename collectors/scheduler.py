"""Background refresh: every unit on its own interval, on a bounded worker pool per source.

A scrape never waits for this. At most one refresh of a unit is in flight; a unit still
running when it is due again is skipped until its next slot. Each source is health-checked on
its refresh interval, and at once when a refresh of it fails. While it is down its units do
not connect (they are recorded as failed); the check alone probes it, backing off from 1 s up
to the interval, and when it comes back every unit of the source is refreshed at once.

A refresh that has not finished ``query_timeout`` plus a grace after it was dispatched is
overdue: its KPIs are reported down at once (``carekpi_kpi_up 0``, the last success ageing,
the cells dropped after the store's stale limit), whatever the database does; the client-side
deadlines (kpis.db.deadlines) then end the call itself.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import sqlalchemy as sa

from collectors import evaluate
from collectors.evaluate import Unit
from collectors.store import Store
from kpis.db import deadlines
from kpis.db.errors import ping
from kpis.snapshot import KpiResult

log = logging.getLogger("carekpi.scheduler")
SIBLING_RETRY_SECONDS = 0.25


def _same_query(a: Unit, b: Unit) -> bool:
    """Units that differ only in their windows: the same KPIs on the same table."""
    return a is not b and (a.source, a.entity, a.kpis) == (b.source, b.entity, b.kpis)


class Scheduler:
    def __init__(self, store: Store, engines: dict[str, sa.Engine],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """clock: the evaluation time of each refresh (tests pin it)."""
        self.store, self.engines, self.clock = store, engines, clock
        config = store.config
        self.units = evaluate.units(config)
        self._pools = {
            name: ThreadPoolExecutor(max_workers=source.pool_size,
                                     thread_name_prefix=f"carekpi-refresh-{name}")
            for name, source in config.sources.items() if name in engines
        }
        self._health = ThreadPoolExecutor(max_workers=1, thread_name_prefix="carekpi-health")
        self._queue: list[tuple[float, int, str, int]] = []  # (due, seq, kind, index)
        self._seq = 0
        self._in_flight: dict[int, int] = {}  # unit index -> seq of its dispatch
        self._backoff: dict[str, float] = {}
        self._health_entry: dict[int, int] = {}  # source index -> seq of its live check
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="carekpi-scheduler", daemon=True)
        self.skipped = 0

    def start(self) -> None:
        self.store.put(evaluate.unavailable(self.store.config, self.clock()), 0.0)
        now = time.monotonic()
        with self._lock:
            pool_sizes = {n: s.pool_size for n, s in self.store.config.sources.items()}
            for i in evaluate.start_order(self.units, pool_sizes):
                self._push(now, "unit", i)
            for i, source in enumerate(sorted(self._pools)):
                self._health_entry[i] = self._push(now, "health", i)
                self._backoff[source] = 1.0
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout)
        for pool in [*self._pools.values(), self._health]:
            pool.shutdown(wait=False, cancel_futures=True)
        for engine in self.engines.values():
            deadlines.abort_in_flight(engine)  # a hung database must not hold the exit
            engine.dispose()

    def _push(self, due: float, kind: str, index: int) -> int:
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, kind, index))
        self._wake.notify_all()
        return self._seq

    def _loop(self) -> None:
        with self._wake:
            while not self._stopping:
                if not self._queue:
                    self._wake.wait()
                    continue
                due, seq, kind, index = self._queue[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._queue)
                if kind == "unit":
                    self._dispatch(index, due)
                elif kind == "deadline":
                    self._overdue(index, seq)
                elif self._health_entry.get(index) == seq:  # else superseded by an earlier one
                    self._health.submit(self._check, sorted(self._pools)[index], index)

    def _dispatch(self, index: int, due: float) -> None:
        unit = self.units[index]
        if index not in self._in_flight and any(
                _same_query(unit, self.units[i]) for i in self._in_flight):
            # One window group of a query at a time: a table that hangs (a lock, a stopped
            # disk) holds one worker, as before the windows had cadences, not one per window
            # group. Tried again shortly; its next slot counts from when it runs.
            self._push(time.monotonic() + SIBLING_RETRY_SECONDS, "unit", index)
            return
        self._push(max(due + unit.interval, time.monotonic()), "unit", index)
        if index in self._in_flight:
            self.skipped += 1
            log.info("refresh of %s still running; skipping this slot", unit.name)
            return
        if self.store.source_up().get(unit.source) is False:
            # No connection attempt per unit while down: the health check probes with backoff.
            as_of = self.clock()
            self.store.put([KpiResult(kpi, unit.source, as_of, error="source down",
                                      windows=unit.window_labels) for kpi in unit.kpis],
                           unit.interval)
            return
        give_up = deadlines.overdue_after(
            self.store.config.sources[unit.source].query_timeout.seconds)
        self._in_flight[index] = self._push(time.monotonic() + give_up, "deadline", index)
        self._pools[unit.source].submit(self._refresh, index, unit)

    def _overdue(self, index: int, seq: int) -> None:
        """The refresh dispatched with ``seq`` is still running past its deadline."""
        if self._in_flight.get(index) != seq:
            return  # finished in time, or a later refresh
        unit = self.units[index]
        timeout = self.store.config.sources[unit.source].query_timeout.seconds
        message = (f"refresh overdue: no answer within {deadlines.overdue_after(timeout):g} s "
                   "(query_timeout plus grace)")
        log.warning("refresh of %s on source %s is overdue; reporting it down",
                    unit.name, unit.source)
        as_of = self.clock()
        self.store.put([KpiResult(kpi, unit.source, as_of, error=message,
                                  windows=unit.window_labels) for kpi in unit.kpis],
                       unit.interval)
        if self.store.source_up().get(unit.source) is not False:
            self._health_entry[self._source_index(unit.source)] = self._push(
                time.monotonic(), "health", self._source_index(unit.source))

    def _refresh(self, index: int, unit: Unit) -> None:
        try:
            results = evaluate.run_unit(self.engines[unit.source], self.store.config, unit,
                                        self.clock(), self.store.caps, self.store.load)
            self.store.put(results, unit.interval)
            if any(r.error is not None for r in results):
                self._check_soon(unit.source)
        except Exception:  # pragma: no cover - run_unit turns failures into results
            log.exception("refresh of %s crashed", unit.name)
        finally:
            with self._lock:
                self._in_flight.pop(index, None)

    def _check(self, source: str, index: int) -> None:
        interval = self.store.config.sources[source].refresh_interval.seconds
        try:
            ping(self.engines[source])
            up = True
        except Exception as exc:
            up = False
            log.warning("source %s is down: %s", source, type(exc).__name__)
        was_up = self.store.source_up().get(source)
        self.store.set_source_up(source, up)
        with self._wake:
            if up:
                self._backoff[source] = 1.0
                delay = interval
                if was_up is False:
                    self._refresh_source_now(source)
            else:
                delay = self._backoff[source]
                self._backoff[source] = min(delay * 2, interval)
            self._health_entry[index] = self._push(time.monotonic() + delay, "health", index)

    def _check_soon(self, source: str) -> None:
        """A failed refresh may mean a lost source: check it now rather than at its slot."""
        with self._wake:
            if self.store.source_up().get(source) is not False:
                index = self._source_index(source)
                self._health_entry[index] = self._push(time.monotonic(), "health", index)

    def _source_index(self, source: str) -> int:
        return sorted(self._pools).index(source)

    def _refresh_source_now(self, source: str) -> None:
        now = time.monotonic()
        for i, unit in enumerate(self.units):
            if unit.source == source:
                self._push(now, "unit", i)
