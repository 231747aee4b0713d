"""Checks on a schedule inside ``carekpi serve`` (off unless ``checks.schedule`` is set).

A daemon thread runs :func:`checks.runner.run_suites` every ``checks.schedule`` over the
``checks.since`` window and hands the results to a :class:`CheckResultsCollector`; a scrape
reads the latest results and never waits for a check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from checks.metrics import CheckResultsCollector
from kpis.config import Config
from kpis.errors import CareKPIError

log = logging.getLogger(__name__)


class ScheduledChecks(Collector):
    def __init__(self, config: Config, start: bool = True) -> None:
        self.config = config
        settings = config.checks
        self.interval = settings.schedule.seconds if settings.schedule else 3600.0
        self.since = timedelta(seconds=settings.since.seconds) if settings.since else None
        self.results = CheckResultsCollector()
        self.version = 0  # bumped when results change (the exporter caches its exposition)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="carekpi-checks", daemon=True)
        if start:
            self._thread.start()

    def run_once(self) -> None:
        from checks.runner import run_suites

        started = time.time()
        try:
            results = run_suites(self.config, since=self.since)
        except CareKPIError as exc:
            log.warning("scheduled checks could not run: %s", exc)
            return
        except Exception as exc:  # the message may quote values: the type only
            log.warning("scheduled checks failed: %s", type(exc).__name__)
            return
        finished = time.time()
        self.results.update(results, finished, finished - started)
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
