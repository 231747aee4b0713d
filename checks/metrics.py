"""Check results as Prometheus metrics: a textfile for node_exporter and a Collector for serve.

Labels are entity, check, column and severity: names from the config and the logical model,
never a value from a row. Metric names come from kpis.names.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from checks.results import CheckResult
from kpis import names

LABELS = ("entity", "check", "column", "severity")


class CheckResultsCollector(Collector):
    """Holds the latest results of a run and exposes them; collect() never runs a check."""

    def __init__(self, results: Iterable[CheckResult] = (), finished_at: float | None = None,
                 duration_seconds: float | None = None) -> None:
        self._lock = threading.Lock()
        self._results: tuple[CheckResult, ...] = ()
        self._finished_at: float | None = None
        self._duration: float | None = None
        self.update(results, finished_at, duration_seconds)

    def update(self, results: Iterable[CheckResult], finished_at: float | None = None,
               duration_seconds: float | None = None) -> None:
        """Replace the results (a scheduled ``run_suites`` calls this when it finishes)."""
        with self._lock:
            self._results = tuple(results)
            self._finished_at = finished_at
            self._duration = duration_seconds

    def last_run(self) -> tuple[float | None, float | None]:
        """(finished at, duration) of the latest completed run."""
        with self._lock:
            return self._finished_at, self._duration

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            results, finished, duration = self._results, self._finished_at, self._duration
        families = self._families()
        passed, evaluated, ratio, unexpected, elements, last_run, run_duration = families
        for r in results:
            labels = [r.entity, r.check, r.column, r.severity]
            evaluated.add_metric(labels, 0.0 if r.error is not None else 1.0)
            if r.error is not None:
                continue  # not evaluated is not failed: no passed sample, no counts
            passed.add_metric(labels, 1.0 if r.passed else 0.0)
            if r.unit == "ratio" and r.observed is not None:
                ratio.add_metric(labels, r.observed)
            if r.unexpected is not None:
                unexpected.add_metric(labels, float(r.unexpected))
            if r.elements is not None:
                elements.add_metric(labels, float(r.elements))
        if finished is not None:
            last_run.add_metric([], finished)
        if duration is not None:
            run_duration.add_metric([], duration)
        yield from families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(names.CHECK_PASSED, "1 if the data-quality check passed in the "
                              "latest run, else 0 (absent when it was not evaluated)",
                              labels=LABELS),
            GaugeMetricFamily(names.CHECK_EVALUATED, "1 if the data-quality check could be "
                              "evaluated in the latest run, else 0 (the run's report and log "
                              "say why)", labels=LABELS),
            GaugeMetricFamily(names.CHECK_OBSERVED_RATIO, "Share of checked records that "
                              "passed the check in the latest run (0-1)", labels=LABELS),
            GaugeMetricFamily(names.CHECK_UNEXPECTED, "Records failing the check in the "
                              "latest run", labels=LABELS),
            GaugeMetricFamily(names.CHECK_ELEMENTS, "Records in the latest run's batch, "
                              "those without the checked value included (the observed ratio "
                              "is over the records that have it)", labels=LABELS),
            GaugeMetricFamily(names.CHECK_LAST_RUN, "Unix time the latest check run finished"),
            GaugeMetricFamily(names.CHECK_DURATION, "Duration of the latest check run"),
        ]


def exposition(results: Iterable[CheckResult], finished_at: float,
               duration_seconds: float) -> bytes:
    registry = CollectorRegistry()
    registry.register(CheckResultsCollector(results, finished_at, duration_seconds))
    return generate_latest(registry)


def write_textfile(path: str | Path, results: Iterable[CheckResult], finished_at: float,
                   duration_seconds: float) -> None:
    """Atomically (temp file in the same directory, then rename), as node_exporter expects."""
    path = Path(path)
    data = exposition(results, finished_at, duration_seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
