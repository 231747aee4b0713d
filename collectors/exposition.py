"""The prometheus_client Collector: turns the latest snapshot into metric families.

``collect()`` reads the in-memory store only; it never touches a database. The rendered
families are cached per snapshot version, so concurrent scrapes between two refreshes cost
one dictionary lookup each.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_go_float

from collectors.store import Store
from kpis import __version__, catalog, names, targets
from kpis.catalog import Kpi
from kpis.snapshot import EXCLUDED, KpiResult


class CareKpiCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cached: tuple[int, list[Metric]] | None = None

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
        excluded = GaugeMetricFamily(
            names.EXCLUDED_RECORDS, "Records left out of the KPI for a data defect, by reason "
            "(unmapped_status, negative_duration, implausible_duration, response_before_receipt,"
            " score_out_of_range), per clinic and window.",
            labels=[names.KPI, names.SOURCE, "reason", names.CLINIC, names.WINDOW])
        for kpi in catalog.load():
            fresh = [r for r in by_kpi.get(kpi.key, []) if self.store.servable(r)]
            if fresh:
                yield from kpi_families(kpi, fresh)
                _add_exclusions(excluded, kpi, fresh)
        yield excluded
        yield from self._targets(results)
        yield from self._health(results)

    def _targets(self, results: list[KpiResult]) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            names.KPI_TARGET, "The KPI's target in the unit of its statistic (ratio 0-1, "
            "seconds, NPS points, count); with clinic: the effective per-clinic target.",
            labels=[names.KPI, names.CLINIC])
        plain = GaugeMetricFamily(names.KPI_TARGET, "", labels=[names.KPI])
        config = self.store.config
        for kpi in catalog.load():
            goal = targets.target(kpi, config)
            if goal is None or not targets.enabled(kpi, config):
                continue
            plain.add_metric([kpi.key], goal.value)
            clinics = sorted({c.label(names.CLINIC) or "" for r in results
                              if r.kpi.key == kpi.key for c in r.cells} - {""})
            for clinic in clinics:
                per_clinic = targets.target(kpi, config, clinic)
                assert per_clinic is not None
                family.add_metric([kpi.key, clinic], per_clinic.value)
        family.samples.extend(plain.samples)
        yield family

    def _health(self, results: list[KpiResult]) -> Iterator[Metric]:
        store = self.store
        up = GaugeMetricFamily(names.SOURCE_UP, "Source reachable (1) or not (0) at its last "
                               "health check.", labels=[names.SOURCE])
        for source, ok in sorted(store.source_up().items()):
            up.add_metric([source], 1.0 if ok else 0.0)
        yield up
        labels = [names.KPI, names.SOURCE]
        kpi_up = GaugeMetricFamily(names.KPI_UP, "Last refresh of the KPI succeeded.",
                                   labels=labels)
        last = GaugeMetricFamily(names.KPI_LAST_SUCCESS, "Unix time of the KPI's last "
                                 "successful refresh.", labels=labels)
        took = GaugeMetricFamily(names.KPI_REFRESH_DURATION, "Seconds the KPI's last refresh "
                                 "took (its merged query).", labels=labels)
        every = GaugeMetricFamily(names.KPI_REFRESH_INTERVAL, "Configured refresh interval.",
                                  labels=labels)
        errors = CounterMetricFamily(names.KPI_REFRESH_ERRORS, "Failed refreshes of the KPI.",
                                     labels=labels)
        rows = CounterMetricFamily(names.KPI_ROWS_READ, "Result rows read for the KPI.",
                                   labels=labels)
        available = GaugeMetricFamily(names.KPI_AVAILABLE, "The mapping provides the KPI (1); "
                                      "0 with the reason.", labels=[names.KPI, "reason"])
        for result in results:
            key = [result.kpi.key, result.source]
            if result.unavailable is not None:
                available.add_metric([result.kpi.key, result.unavailable], 0.0)
                continue
            stats = store.stats(result.kpi.key, result.source)
            available.add_metric([result.kpi.key, ""], 1.0)
            kpi_up.add_metric(key, 1.0 if result.error is None else 0.0)
            if stats.last_success is not None:
                last.add_metric(key, stats.last_success)
            took.add_metric(key, result.duration_seconds)
            every.add_metric(key, stats.interval)
            errors.add_metric(key, stats.errors)
            rows.add_metric(key, stats.rows)
        yield from (kpi_up, last, took, every, errors, rows, available)
        folded = CounterMetricFamily(names.LABEL_VALUES_FOLDED, "Label values folded into "
                                     "'other' past the label's cap.", labels=["label"])
        for label, count in sorted(store.caps.folded.items()):
            folded.add_metric([label], count)
        yield folded
        info = InfoMetricFamily(names.BUILD_INFO, "CareKPI build information.")
        info.add_metric([], {"version": __version__})
        yield info


def kpi_families(kpi: Kpi, results: list[KpiResult]) -> Iterator[Metric]:
    """The KPI's own series: counts, histograms, backlog or freshness timestamps."""
    cells = [(r.source, c) for r in results for c in r.cells]
    if not cells:
        return
    label_names = [names.SOURCE, *(k for k, _ in cells[0][1].labels)]
    help_text = f"{kpi.id} {kpi.name}: {kpi.definition}"
    if kpi.kind == "duration":
        family = HistogramMetricFamily(names.histogram(kpi), help_text, labels=label_names)
        for source, cell in cells:
            h = cell.histogram
            assert h is not None
            buckets: list[tuple[str, Any]] = [(_le(b), c) for b, c in
                                              zip(h.bounds, h.cumulative, strict=True)]
            buckets.append(("+Inf", h.count))
            family.add_metric([source, *(v for _, v in cell.labels)], buckets, h.sum)
        yield family
        return
    if kpi.kind == "freshness":
        family_f = GaugeMetricFamily(names.NEWEST_RECORD, "D5 Freshness: Unix time of the "
                                     "newest record per entity (age = time() - value).",
                                     labels=label_names)
        for source, cell in cells:
            family_f.add_metric([source, *(v for _, v in cell.labels)], cell.counts["timestamp"])
        yield family_f
        return
    parts = [p for p in cells[0][1].counts if not p.startswith(EXCLUDED)]
    for part in parts:
        name = names.backlog(kpi) if kpi.kind == "backlog" else names.count_metric(kpi, part)
        family_g = GaugeMetricFamily(name, f"{help_text} ({part})", labels=label_names)
        for source, cell in cells:
            family_g.add_metric([source, *(v for _, v in cell.labels)], cell.counts[part])
        yield family_g


def _add_exclusions(family: GaugeMetricFamily, kpi: Kpi, results: list[KpiResult]) -> None:
    for result in results:
        for cell in result.cells:
            window = cell.label(names.WINDOW)
            if window is None:
                continue
            for part, count in cell.counts.items():
                if part.startswith(EXCLUDED):
                    family.add_metric([kpi.key, result.source, part.removeprefix(EXCLUDED),
                                       cell.label(names.CLINIC) or "", window], count)


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


class CachedExposition:
    """A registry front that encodes once per snapshot version, off the scrape path.

    The first scrape encodes; later ones get the last body at once. When the snapshot has
    moved on (a unit refreshed), one background thread encodes the new version while scrapes
    keep receiving the previous body, at most one refresh behind: a scrape never waits for
    the encoding of tens of thousands of series.
    """

    def __init__(self, registry: Any, versions: list[Any]) -> None:
        self.registry = registry
        self._versions = versions  # objects with a ``version`` attribute
        self._lock = threading.Lock()
        self._cache: dict[Any, tuple[tuple[int, ...], bytes]] = {}
        self._renewing: set[Any] = set()
        self._first = threading.Lock()  # concurrent first scrapes share one encoding

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()  # type: ignore[no-any-return]

    def restricted_registry(self, names: Iterable[str]) -> Any:
        return self.registry.restricted_registry(names)

    def _version(self) -> tuple[int, ...]:
        return tuple(v.version for v in self._versions)

    def render(self, encoder: Any, zipped: bool = False) -> bytes:
        """The body for this encoder, gzip-compressed when asked."""
        key = (encoder, zipped)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] != self._version() and key not in self._renewing:
                self._renewing.add(key)
                threading.Thread(target=self._renew, args=(key,), daemon=True,
                                 name="carekpi-exposition").start()
        if cached is not None:
            return cached[1]
        with self._first:
            with self._lock:
                cached = self._cache.get(key)
            return cached[1] if cached is not None else self._encode(key)

    def _renew(self, key: Any) -> None:
        try:
            self._encode(key)
        finally:
            with self._lock:
                self._renewing.discard(key)

    def _encode(self, key: Any) -> bytes:
        encoder, zipped = key
        version = self._version()
        body = text_format(self.registry) if encoder is generate_latest else encoder(
            self.registry)
        if zipped:
            body = gzip.compress(body, compresslevel=6)
        with self._lock:
            current = self._cache.get(key)
            if current is None or current[0] <= version:
                self._cache[key] = (version, body)
        return body


_go_float = cast(Callable[[float], str], _untyped_go_float)
_TYPES = {"counter": ("_total", "counter"), "info": ("_info", "gauge"),
          "stateset": ("", "gauge"), "gaugehistogram": ("", "histogram"),
          "unknown": ("", "untyped")}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def text_format(registry: Any) -> bytes:
    """The Prometheus text format (0.0.4), byte for byte what prometheus_client's
    ``generate_latest`` writes for these families, without its per-label validation, which
    costs more than everything else together on a few thousand series."""
    out: list[str] = []
    for family in registry.collect():
        suffix, kind = _TYPES.get(family.type, ("", family.type))
        name = family.name + suffix
        doc = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        for s in family.samples:
            if s.name in (f"{family.name}_created", f"{family.name}_gsum",
                          f"{family.name}_gcount"):
                raise ValueError("text_format does not render OpenMetrics-only samples")
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
            stamp = f" {int(float(s.timestamp) * 1000)}" if s.timestamp is not None else ""
            out.append(f"{s.name}{{{labels}}} {_go_float(s.value)}{stamp}\n" if labels
                       else f"{s.name} {_go_float(s.value)}{stamp}\n")
    return "".join(out).encode("utf-8")
