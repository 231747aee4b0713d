"""The prometheus_client Collector: turns the latest snapshot into metric families.

``collect()`` reads the in-memory store only; it never touches a database. The families are
cached per snapshot version, and a KPI's families per its results, so concurrent scrapes
between two refreshes cost one dictionary lookup each. ``CachedExposition`` keeps the
encoded bodies, so a scrape costs no encoding either.

The KPIs' families (and the excluded-records and suspect families made from them) are
``LazyFamily`` objects: their samples are made from the store's results each time they are
read, when a body is encoded, and dropped after. The numbers are kept once, in the store's
cells, and once as text, in the body; a second copy as prometheus_client samples (a tuple and
a label dict per sample: 14 MB of 20,000 series) would only wait for the next encoding.
The price: the excluded-records and suspect families, which span every KPI and are encoded
anew for each snapshot anyway, also make their samples anew (48 ms at 10M appointments,
7,726 samples, in the thread that renews the body, never in a scrape).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from collectors.data_flags import exclusion_samples, suspect_samples
from collectors.load import load_families
from collectors.store import Store
from kpis import __version__, catalog, effective, names
from kpis.catalog import Kpi
from kpis.durations import format_seconds
from kpis.sharding import Shard
from kpis.snapshot import EXCLUDED, Cell, KpiResult, with_empty_windows

log = logging.getLogger("carekpi.exposition")


class CareKpiCollector(Collector):
    def __init__(self, store: Store, only: frozenset[str] | None = None) -> None:
        self.store = store
        self.only = only  # KPI keys whose targets to export (collect --kpi); None: all
        self._lock = threading.Lock()
        self._cached: tuple[int, list[Metric]] | None = None
        # A KPI whose results did not change keeps its family objects (which CachedExposition
        # does not re-render).
        self._per_kpi: dict[str, _KpiFamilies] = {}

    def describe(self) -> Iterable[Metric]:
        """Static family names, so registering never triggers a collection."""
        return [GaugeMetricFamily(names.SOURCE_UP, "Source reachable (1) or not (0).")]

    def collect(self) -> Iterator[Metric]:
        version = self.store.version
        with self._lock:
            if self._cached is None or self._cached[0] != version:
                self._cached = (version, list(self._families()))
            families = self._cached[1]
        yield from families

    def _families(self) -> Iterator[Metric]:
        results = self.store.results()
        by_kpi: dict[str, list[KpiResult]] = {}
        for result in results:
            by_kpi.setdefault(result.kpi.key, []).append(result)
        per_kpi = {}
        variant = GaugeMetricFamily(names.KPI_VARIANT, "1: the variant of the KPI the mapping "
                                    "allowed (all_abandons: no abandon time, so short abandons "
                                    "could not be left out).", labels=[names.KPI, names.SOURCE,
                                                                       "variant"])
        for kpi in catalog.load():
            fresh = [r for r in by_kpi.get(kpi.key, []) if self.store.servable(r)]
            if fresh:
                ids = tuple(map(id, fresh))
                kept = self._per_kpi.get(kpi.key)
                if kept is None or kept.ids != ids:
                    filled = with_empty_windows(fresh)
                    kept = _KpiFamilies(ids, kpi, fresh, filled, list(kpi_families(kpi, filled)))
                per_kpi[kpi.key] = kept
                yield from kept.families
                # One series per source, whatever its window groups (each has a result).
                for source, name in sorted({(r.source, r.variant) for r in fresh
                                            if r.variant is not None}):
                    variant.add_metric([kpi.key, source, name], 1.0)
        self._per_kpi = per_kpi
        kept_now = list(per_kpi.values())
        yield _across_kpis(kept_now, names.EXCLUDED_RECORDS, "Records left out of the KPI for "
                           "a data defect, by reason (unmapped_status, unmapped_outcome, "
                           "negative_duration, implausible_duration, response_before_receipt, "
                           "unknown_cancellation_time, score_out_of_range, ...), per clinic, "
                           "the KPI's other dimensions and window.",
                           lambda k: exclusion_samples(k.kpi, k.filled))
        yield _across_kpis(kept_now, names.KPI_SUSPECT, "1 where the data makes the KPI's value "
                           "doubtful, by reason: most_excluded (exclusions removed most of its "
                           "records), identical_durations (every duration is the same value, "
                           "e.g. all waits 0 s).", lambda k: suspect_samples(k.kpi, k.fresh))
        yield variant
        yield from self._targets(results)
        yield from self._health(results)

    def _targets(self, results: list[KpiResult]) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            names.KPI_TARGET, "The KPI's target in the unit of its statistic (ratio 0-1, "
            "seconds, NPS points, count); with clinic: the effective per-clinic target.",
            labels=[names.KPI, names.CLINIC])
        plain = GaugeMetricFamily(names.KPI_TARGET, "", labels=[names.KPI])
        config = self.store.config
        # A shard exports the targets of its own KPIs only, so shards never repeat a series.
        mine = None if config.shard is None or config.shard.whole else {
            r.kpi.key for r in results}
        for kpi in catalog.load():
            goal = effective.target(kpi, config)
            if goal is None or not effective.enabled(kpi, config) or (
                    self.only is not None and kpi.key not in self.only):
                continue
            if mine is not None and kpi.key not in mine:
                continue
            plain.add_metric([kpi.key], goal.value)
            clinics = sorted({c.label(names.CLINIC) or "" for r in results
                              if r.kpi.key == kpi.key for c in r.cells} - {""})
            for clinic in clinics:
                per_clinic = effective.target(kpi, config, clinic)
                assert per_clinic is not None
                family.add_metric([kpi.key, clinic], per_clinic.value)
        family.samples.extend(plain.samples)
        yield family

    def _health(self, results: list[KpiResult]) -> Iterator[Metric]:
        store = self.store
        up = GaugeMetricFamily(names.SOURCE_UP, "Source reachable (1) or not (0) at its last "
                               "health check.", labels=[names.SOURCE])
        for source, ok in sorted(store.exported_source_up().items()):
            up.add_metric([source], 1.0 if ok else 0.0)
        yield up
        labels = [names.KPI, names.SOURCE]
        per_window = [*labels, names.WINDOW]
        kpi_up = GaugeMetricFamily(names.KPI_UP, "Last refresh of every window of the KPI "
                                   "succeeded.", labels=labels)
        last = GaugeMetricFamily(names.KPI_LAST_SUCCESS, "Unix time of the last successful "
                                 "refresh of the KPI's window.", labels=per_window)
        took = GaugeMetricFamily(names.KPI_REFRESH_DURATION, "Seconds the last refresh of the "
                                 "KPI's window took (its merged query).", labels=per_window)
        every = GaugeMetricFamily(names.KPI_REFRESH_INTERVAL, "Configured refresh interval of "
                                  "the KPI's window.", labels=per_window)
        errors = CounterMetricFamily(names.KPI_REFRESH_ERRORS, "Failed refreshes of the KPI.",
                                     labels=labels)
        rows = CounterMetricFamily(names.KPI_ROWS_READ, "Result rows read for the KPI.",
                                   labels=labels)
        available = GaugeMetricFamily(names.KPI_AVAILABLE, "The mapping provides the KPI (1); "
                                      "0 with the reason.", labels=[names.KPI, "reason"])
        groups: dict[tuple[str, str], list[KpiResult]] = {}
        for result in results:
            if result.unavailable is not None:
                available.add_metric([result.kpi.key, result.unavailable], 0.0)
            else:
                groups.setdefault((result.kpi.key, result.source), []).append(result)
        all_windows = tuple(format_seconds(w.seconds) for w in store.config.kpis.windows)
        for (kpi, source), group in groups.items():
            combined = store.stats(kpi, source)
            available.add_metric([kpi, ""], 1.0)
            kpi_up.add_metric([kpi, source], float(all(r.error is None for r in group)))
            errors.add_metric([kpi, source], combined.errors)
            rows.add_metric([kpi, source], combined.rows)
            for result in group:
                stats = store.stats(kpi, source, result.windows)
                windowed = result.kpi.windowed
                for window in result.windows or (all_windows if windowed else ("",)):
                    if stats.last_success is not None:
                        last.add_metric([kpi, source, window], stats.last_success)
                    took.add_metric([kpi, source, window], result.duration_seconds)
                    every.add_metric([kpi, source, window], stats.interval)
        yield from (kpi_up, last, took, every, errors, rows, available)
        yield from load_families(store.load)
        folded = CounterMetricFamily(names.LABEL_VALUES_FOLDED, "Label values folded into "
                                     "'other' (past the label's cap, or shaped like personal "
                                     "data or free text), counted at each refresh of each KPI "
                                     "result that met them: it grows while such values exist.",
                                     labels=["label"])
        for label, count in sorted(store.caps.folded.items()):
            folded.add_metric([label], count)
        yield folded
        info = InfoMetricFamily(names.BUILD_INFO, "CareKPI build information.")
        info.add_metric([], {"version": __version__,
                             "shard": str(store.config.shard or Shard())})
        yield info


class LazyFamily(Metric):
    """A metric family that makes its samples each time they are read, by ``fill`` on a copy
    of ``header`` (the empty family: name, help, type, label names), and keeps none of them.
    ``fill`` must read data that does not change (the store's results of one refresh), so
    every read gives the same samples."""

    def __init__(self, header: Metric, fill: Callable[[Metric], None]) -> None:
        self.name, self.documentation = header.name, header.documentation
        self.unit, self.type = header.unit, header.type
        self._header, self._fill = header, fill

    @property
    def samples(self) -> list[Sample]:
        family = copy.copy(self._header)
        family.samples = []
        self._fill(family)
        return family.samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        raise AttributeError("a LazyFamily makes its samples; it is not given them")


def _across_kpis(kept: list[_KpiFamilies], name: str, documentation: str,
                 samples_of: Callable[[_KpiFamilies], list[Sample]]) -> LazyFamily:
    """One gauge family of every KPI's samples (excluded records, suspect cells), made when
    read."""
    return LazyFamily(GaugeMetricFamily(name, documentation), lambda family: family.samples.extend(
        sample for k in kept for sample in samples_of(k)))


def kpi_families(kpi: Kpi, results: list[KpiResult]) -> Iterator[Metric]:
    """The KPI's own series: counts, histograms, backlog or freshness timestamps."""
    first = next((c for r in results for c in r.cells), None)
    if first is None:
        return
    label_names = [names.SOURCE, *(k for k, _ in first.labels)]
    help_text = f"{kpi.id} {kpi.name}: {kpi.definition}"

    def cells_of() -> Iterator[tuple[list[str], Cell]]:
        for result in results:
            for cell in result.cells:
                yield [result.source, *(v for _, v in cell.labels)], cell

    if kpi.kind == "duration":
        def histograms(family: Metric) -> None:
            assert isinstance(family, HistogramMetricFamily)
            for labels, cell in cells_of():
                h = cell.histogram
                assert h is not None
                buckets: list[tuple[str, Any]] = [(_le(b), c) for b, c in
                                                  zip(h.bounds, h.cumulative, strict=True)]
                buckets.append(("+Inf", h.count))
                family.add_metric(labels, buckets, h.sum)

        yield LazyFamily(HistogramMetricFamily(names.histogram(kpi), help_text,
                                               labels=label_names), histograms)
        return
    parts = (["timestamp"] if kpi.kind == "freshness" else
             [p for p in first.counts if not p.startswith(EXCLUDED)])
    for part in parts:
        if kpi.kind == "freshness":
            header = GaugeMetricFamily(names.NEWEST_RECORD, "D5 Freshness: Unix time of the "
                                       "newest record per entity (age = time() - value).",
                                       labels=label_names)
        else:
            name = names.backlog(kpi) if kpi.kind == "backlog" else names.count_metric(kpi, part)
            header = GaugeMetricFamily(name, f"{help_text} ({part})", labels=label_names)

        def gauges(family: Metric, part: str = part) -> None:
            assert isinstance(family, GaugeMetricFamily)
            for labels, cell in cells_of():
                family.add_metric(labels, cell.counts[part])

        yield LazyFamily(header, gauges)


@dataclass(frozen=True)
class _KpiFamilies:
    ids: tuple[int, ...]  # of the results, which ``fresh`` keeps alive
    kpi: Kpi
    fresh: list[KpiResult]
    filled: list[KpiResult]  # ``fresh`` with the zero cells of windows without data
    families: list[Metric]  # lazy, reading ``filled``


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)
