"""The prometheus_client Collector: turns the latest snapshot into metric families.

``collect()`` reads the in-memory store only; it never touches a database. The families are
cached per snapshot version, and a KPI's families per its results, so concurrent scrapes
between two refreshes cost one dictionary lookup each. ``CachedExposition`` keeps the
encoded bodies, so a scrape costs no encoding either.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
import weakref
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
from kpis.snapshot import EXCLUDED, KpiResult, with_empty_windows

log = logging.getLogger("carekpi.exposition")


class CareKpiCollector(Collector):
    def __init__(self, store: Store, only: frozenset[str] | None = None) -> None:
        self.store = store
        self.only = only  # KPI keys whose targets to export (collect --kpi); None: all
        self._lock = threading.Lock()
        self._cached: tuple[int, list[Metric]] | None = None
        # A KPI whose results did not change keeps its family objects (which CachedExposition
        # does not re-render) and its excluded-records samples.
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
        excluded = GaugeMetricFamily(
            names.EXCLUDED_RECORDS, "Records left out of the KPI for a data defect, by reason "
            "(unmapped_status, negative_duration, implausible_duration, response_before_receipt,"
            " score_out_of_range, ...), per clinic, the KPI's other dimensions and window.")
        suspect = GaugeMetricFamily(
            names.KPI_SUSPECT, "1 where the data makes the KPI's value doubtful, by reason: "
            "most_excluded (exclusions removed most of its records), identical_durations "
            "(every duration is the same value, e.g. all waits 0 s).")
        variant = GaugeMetricFamily(names.KPI_VARIANT, "1: the variant of the KPI the mapping "
                                    "allowed (all_abandons: no abandon time, so short abandons "
                                    "could not be left out).", labels=[names.KPI, names.SOURCE,
                                                                       "variant"])
        per_kpi = {}
        for kpi in catalog.load():
            fresh = [r for r in by_kpi.get(kpi.key, []) if self.store.servable(r)]
            if fresh:
                ids = tuple(map(id, fresh))
                kept = self._per_kpi.get(kpi.key)
                if kept is None or kept.ids != ids:
                    filled = with_empty_windows(fresh)
                    kept = _KpiFamilies(ids, fresh, list(kpi_families(kpi, filled)),
                                        exclusion_samples(kpi, filled),
                                        suspect_samples(kpi, fresh))
                per_kpi[kpi.key] = kept
                yield from kept.families
                excluded.samples.extend(kept.excluded)
                suspect.samples.extend(kept.suspect)
                # One series per source, whatever its window groups (each has a result).
                for source, name in sorted({(r.source, r.variant) for r in fresh
                                            if r.variant is not None}):
                    variant.add_metric([kpi.key, source, name], 1.0)
        self._per_kpi = per_kpi
        yield excluded
        yield suspect
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
        for kpi in catalog.load():
            goal = effective.target(kpi, config)
            if goal is None or not effective.enabled(kpi, config) or (
                    self.only is not None and kpi.key not in self.only):
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
        for source, ok in sorted(store.source_up().items()):
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
                windowed = result.kpi.kind not in ("backlog", "freshness")
                for window in result.windows or (all_windows if windowed else ("",)):
                    if stats.last_success is not None:
                        last.add_metric([kpi, source, window], stats.last_success)
                    took.add_metric([kpi, source, window], result.duration_seconds)
                    every.add_metric([kpi, source, window], stats.interval)
        yield from (kpi_up, last, took, every, errors, rows, available)
        yield from load_families(store.load)
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


@dataclass(frozen=True)
class _KpiFamilies:
    ids: tuple[int, ...]  # of the results, which ``results`` keeps alive
    results: list[KpiResult]
    families: list[Metric]
    excluded: list[Sample]
    suspect: list[Sample]


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


class _OneFamily:
    """A registry of one family, so the library's encoders render a family on its own."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return (self.family,)


_EOF = b"# EOF\n"
IDLE_BODY_SECONDS = 600.0


@dataclass(frozen=True)
class _Bodies:
    """One content type's encoding of one snapshot version."""

    version: tuple[int, ...]
    plain: bytes | None  # kept only while someone scrapes this format uncompressed
    gzipped: bytes | None  # made only once someone scraped it gzip-compressed
    # id(family) -> (the family, weakly: a replaced family is freed at once; start and end
    # of its text in ``plain``)
    chunks: dict[int, tuple[weakref.ref[Metric], int, int]]


class CachedExposition:
    """A registry front that encodes once per snapshot version and content type, off the
    scrape path, re-rendering only the families that changed.

    The first scrape of a content type encodes; later ones get the last body at once. When
    the snapshot has moved on (a unit refreshed), one background thread encodes the new
    version while scrapes keep receiving the previous body, at most one refresh behind: a
    scrape never waits for the encoding of tens of thousands of series. Each family's text
    is rendered by prometheus_client's own encoder and kept while the collector hands out the
    same family object (CareKpiCollector does so for every KPI whose results did not change),
    so a renewal after one unit's refresh costs that unit's series, not all of them (a
    collector must therefore never change a family after handing it out). The cache is keyed
    by the response's content type: the encoder functions prometheus_client chooses per
    request are new objects every time.
    """

    def __init__(self, registry: Any, versions: list[Any],
                 idle_seconds: float = IDLE_BODY_SECONDS) -> None:
        self.registry = registry
        self._versions = versions  # objects with a ``version`` attribute
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._bodies: dict[str, _Bodies] = {}
        self._used: dict[str, float] = {}  # content type -> monotonic time of its last scrape
        # content types some scraper wanted gzip-compressed, and uncompressed
        self._zipped: set[str] = set()
        self._unzipped: set[str] = set()
        self._renewing: set[str] = set()
        self._first = threading.Lock()  # concurrent first scrapes share one encoding

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()  # type: ignore[no-any-return]

    def restricted_registry(self, names: Iterable[str]) -> Any:
        return self.registry.restricted_registry(names)

    def _version(self) -> tuple[int, ...]:
        return tuple(v.version for v in self._versions)

    def render(self, encoder: Callable[[Any], bytes], content_type: str,
               zipped: bool = False) -> bytes:
        """The body ``encoder`` gives for the latest snapshot, gzip-compressed when asked."""
        with self._lock:
            (self._zipped if zipped else self._unzipped).add(content_type)
            self._used[content_type] = now = time.monotonic()
            if len(self._used) > 1:
                self._forget_idle(now)
            cached = self._bodies.get(content_type)
            if (cached is not None and cached.version != self._version()
                    and content_type not in self._renewing):
                self._renewing.add(content_type)
                threading.Thread(target=self._renew, args=(encoder, content_type), daemon=True,
                                 name="carekpi-exposition").start()
        body = _pick(cached, zipped)
        if body is not None:
            return body
        with self._first:
            body = _pick(self._bodies.get(content_type), zipped)
            if body is None:  # _encode makes every form asked for so far
                body = _pick(self._encode(encoder, content_type), zipped)
            assert body is not None
            return body

    def ready(self, content_type: str, zipped: bool = False) -> bool:
        """Whether ``render`` answers at once (a body of this form exists, maybe one refresh
        behind) rather than encoding first."""
        with self._lock:
            return _pick(self._bodies.get(content_type), zipped) is not None

    def _forget_idle(self, now: float) -> None:
        """Drop the bodies of a format nobody scraped for a while (a one-off curl, a
        Prometheus that moved to another format): they would pin megabytes for good."""
        for content_type, used in list(self._used.items()):
            if now - used > self._idle_seconds:
                del self._used[content_type]
                self._bodies.pop(content_type, None)
                self._zipped.discard(content_type)
                self._unzipped.discard(content_type)

    def _renew(self, encoder: Callable[[Any], bytes], content_type: str) -> None:
        try:
            self._encode(encoder, content_type)
        except Exception:  # the scrapes keep the previous body; the next one tries again
            log.exception("encoding the exposition failed")
        finally:
            with self._lock:
                self._renewing.discard(content_type)

    def _encode(self, encoder: Callable[[Any], bytes], content_type: str) -> _Bodies:
        version = self._version()
        with self._lock:
            previous = self._bodies.get(content_type)
            zipped, unzipped = content_type in self._zipped, content_type in self._unzipped
        if previous is not None and previous.version == version:  # only another form is new
            plain, chunks = _plain_of(previous), previous.chunks
        else:
            plain, chunks = self._plain(encoder, content_type, previous)
        bodies = _Bodies(version, plain if unzipped else None,
                         gzip.compress(plain, compresslevel=6) if zipped else None, chunks)
        with self._lock:
            current = self._bodies.get(content_type)
            # Newer wins; at the same version, the one with more of the forms asked for.
            if current is None or (current.version, _forms(current)) <= (version,
                                                                            _forms(bodies)):
                self._bodies[content_type] = bodies
        return bodies

    def _plain(self, encoder: Callable[[Any], bytes], content_type: str,
               previous: _Bodies | None
               ) -> tuple[bytes, dict[int, tuple[weakref.ref[Metric], int, int]]]:
        """The whole body, with the previous body's text of every family still there."""
        reuse = previous.chunks if previous is not None else {}
        before = memoryview(_plain_of(previous) if previous is not None else b"")
        openmetrics = content_type.startswith("application/openmetrics-text")
        chunks: dict[int, tuple[weakref.ref[Metric], int, int]] = {}
        parts: list[bytes | memoryview] = []
        size = 0
        for family in self.registry.collect():
            hit = reuse.get(id(family))
            if hit is not None and hit[0]() is family:
                part: bytes | memoryview = before[hit[1]:hit[2]]
            else:
                text = encoder(_OneFamily(family))
                part = text.removesuffix(_EOF) if openmetrics else text
            chunks[id(family)] = (weakref.ref(family), size, size + len(part))
            size += len(part)
            parts.append(part)
        if openmetrics:
            parts.append(_EOF)
        return b"".join(parts), chunks


def _plain_of(bodies: _Bodies) -> bytes:
    """The uncompressed body (a Prometheus-only format keeps just the gzip one: 5 % of it)."""
    if bodies.plain is not None:
        return bodies.plain
    assert bodies.gzipped is not None
    return gzip.decompress(bodies.gzipped)


def _forms(bodies: _Bodies) -> int:
    return (bodies.plain is not None) + (bodies.gzipped is not None)


def _pick(bodies: _Bodies | None, zipped: bool) -> bytes | None:
    if bodies is None:
        return None
    return bodies.gzipped if zipped else bodies.plain

