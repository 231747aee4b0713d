"""The encoded exposition bodies: one per content type in use, renewed as the snapshot changes.

A scrape gets the body of the latest snapshot already encoded (and gzip-compressed when asked),
so it never waits for the encoding of tens of thousands of series.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric

log = logging.getLogger("carekpi.exposition")


class _OneFamily:
    """A registry of one family, so the library's encoders render a family on its own."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return (self.family,)


_EOF = b"# EOF\n"
IDLE_BODY_SECONDS = 600.0
WATCH_SECONDS = 0.1  # how often the watcher compares the snapshot's version with the bodies'


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

    The first scrape of a content type encodes; later ones get the last body at once. A
    watcher thread renews the body of every content type in use as soon as the snapshot moves
    on (a unit refreshed, a source went down or came back), whether or not anyone scrapes, so
    a scrape is at most one render behind the latest refresh, also after a quiet period: it
    never gets a body that was already stale when the snapshot changed. A scrape never waits
    for the encoding of tens of thousands of series. Each family's text
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
        self._encoders: dict[str, Callable[[Any], bytes]] = {}  # the formats in use
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None

    def close(self) -> None:
        """Stop renewing (the exporter is stopping)."""
        self._closed.set()

    def _renew_stale(self) -> None:
        """Renew, each in turn, the bodies of the formats in use that the snapshot left behind."""
        version = self._version()
        with self._lock:
            stale = [(content_type, self._encoders[content_type])
                     for content_type, bodies in self._bodies.items()
                     if bodies.version != version and content_type not in self._renewing
                     and content_type in self._encoders]
            self._renewing.update(content_type for content_type, _ in stale)
        for content_type, encoder in stale:
            self._renew(encoder, content_type)

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
            self._encoders[content_type] = encoder
            if self._watcher is None:
                self._watcher = threading.Thread(target=_watch, args=(weakref.ref(self),),
                                                 daemon=True, name="carekpi-exposition")
                self._watcher.start()
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
                self._encoders.pop(content_type, None)
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


def _watch(cache: weakref.ref[CachedExposition]) -> None:
    """The watcher: renews while its cache is open and still held by someone. It keeps only a
    weak reference, so a cache dropped without ``close()`` ends its watcher too."""
    while True:
        held = cache()
        if held is None:
            return
        closed = held._closed
        del held
        if closed.wait(WATCH_SECONDS):
            return
        held = cache()
        if held is None:
            return
        held._renew_stale()
        del held


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

