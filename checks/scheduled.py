"""Checks on a schedule beside ``carekpi serve`` (off unless ``checks.schedule`` is set).

A daemon thread starts ``carekpi checks run`` in a child process (:mod:`checks.child`) every
``checks.schedule`` over the ``checks.since`` window, with a deadline (the schedule, at most
``MAX_DEADLINE``) and a memory limit, and hands the results to a
:class:`CheckResultsCollector`; a scrape reads the latest results and never waits for a check.
The exporter's process never imports Great Expectations. A killed or failed run reports every
check as not evaluated and leaves ``carekpi_check_last_run_timestamp_seconds`` where it was.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from checks import child
from checks.metrics import CheckResultsCollector
from kpis.config import Config

log = logging.getLogger(__name__)


MAX_DEADLINE = 3600.0  # seconds a scheduled run may take, at most
MEMORY_LIMIT = 1 << 30  # bytes of address space for the child (GX, pandas and the drivers)


class ScheduledChecks(Collector):
    def __init__(self, config: Config, start: bool = True, *, deadline: float | None = None,
                 memory_limit: int = MEMORY_LIMIT, work: str = child.CHECKS_RUN) -> None:
        self.config = config
        self.settings = config.checks
        self.interval = self.settings.schedule.seconds if self.settings.schedule else 3600.0
        self.since = self.settings.since.seconds if self.settings.since else None
        self.deadline = deadline or min(self.interval, MAX_DEADLINE)
        self.memory_limit = memory_limit
        self.work = work  # what the child runs (tests replace it to hang or to bloat)
        self.last: child.ChildRun | None = None
        self.results = CheckResultsCollector()
        self.version = 0  # bumped when results change (the exporter caches its exposition)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="carekpi-checks", daemon=True)
        if start:
            self._thread.start()

    def run_once(self) -> None:
        started = time.time()
        outcome = child.run(self.config, self.settings, self.since, self.deadline,
                            self.memory_limit, datetime.now(UTC), self.work)
        finished = time.time()
        if outcome.completed:
            self.results.update(outcome.results, finished, finished - started)
        else:
            self.results.update(outcome.results, *self.results.last_run())
        self.last = outcome
        self.version += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()

    def describe(self) -> Iterator[Metric]:
        return self.results.describe()

    def collect(self) -> Iterator[Metric]:
        return self.results.collect()
