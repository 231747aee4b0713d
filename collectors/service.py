"""The exporter: engines, the refresh scheduler, the snapshot store and the HTTP server."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from collectors import evaluate, landing, shards
from collectors.body_cache import CachedExposition
from collectors.exposition import CareKpiCollector
from collectors.opening_hours import OpeningHoursCollector
from collectors.scheduler import Scheduler
from collectors.store import Store
from collectors.web import WebConfig, WebServer, start_server
from kpis.config import Config
from kpis.db.engines import create_all

log = logging.getLogger("carekpi.exporter")


# glibc mallopt() parameters
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_process() -> None:
    """Settings for a long-running exporter process (``carekpi serve`` and ``demo``), each
    measured with tests/benchmarks/run.py (1M and 10M appointments, 30,942 series):

    - The GIL is handed over every 0.5 ms instead of 5 ms: a refresh's Python work (decoding
      rows, encoding the exposition) otherwise holds it in 5 ms slices while each of 50
      concurrent scrapes needs it several times (scrape p99 during refreshes about 200 ms ->
      30-85 ms).
    - Everything alive at start (modules, the config) leaves the cyclic garbage collector's
      view (``gc.freeze``): a full collection then scans only the snapshot's objects, and
      its pause, which stalls every scrape in flight, falls from up to 70 ms to 15-45 ms
      (scrape p99 of the first 20 s of bursts 89 ms -> 14 ms).
    - On glibc, allocations of 128 KiB and more (exposition bodies, result sets) are mapped
      and unmapped rather than left in the heap, in at most two arenas: resident memory
      after many refreshes about 120 MB -> 105 MB. Elsewhere nothing changes.
    """
    sys.setswitchinterval(0.0005)
    gc.collect()
    gc.freeze()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is not None and sys.platform.startswith("linux"):
        mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
        mallopt(_M_ARENA_MAX, 2)


def exit_process(code: int) -> NoReturn:
    """End a stopped exporter's process at once. ``Exporter.stop`` has cut every database
    call in flight, but a refresh worker may still be inside a driver's connect (bounded by
    ``connect_timeout`` only), and the interpreter's exit would wait for it: SIGTERM must end
    the process within seconds whatever the database does."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass
class Exporter:
    config: Config
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    extra_collectors: list[Any] = field(default_factory=list)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.store = Store(self.config, own_sources=shards.owned_sources(
            evaluate.all_units(self.config), self.config.shard))
        self.engines: dict[str, sa.Engine] = create_all(self.config)
        self.scheduler = Scheduler(self.store, self.engines, self.clock)
        self.registry.register(CareKpiCollector(self.store))
        if self.config.kpis.calendar is not None:
            self.extra_collectors = [*self.extra_collectors, OpeningHoursCollector(
                self.config.kpis.calendar, self.clock)]
        for collector in self.extra_collectors:
            self.registry.register(collector)
        self.server: WebServer | None = None
        self.bodies: CachedExposition | None = None

    def start(self, bind: str, port: int, web_config: WebConfig | None = None) -> WebServer:
        versioned = [self.store, *(c for c in self.extra_collectors if hasattr(c, "version"))]
        front: Any = self.registry
        if len(versioned) == 1 + len(self.extra_collectors):
            front = self.bodies = CachedExposition(self.registry, versioned)
        self.server = start_server(front, bind, port, web_config,
                                   landing=lambda links: landing.page(self.store, links))
        self.scheduler.start()
        log.info("serving %d refresh units from %d sources on %s/metrics",
                 len(self.scheduler.units), len(self.engines), self.server.url)
        return self.server

    def stop(self) -> None:
        if self.bodies is not None:
            self.bodies.close()
        if self.server is not None:
            self.server.shutdown()
        self.scheduler.stop()
        for collector in self.extra_collectors:
            if hasattr(collector, "stop"):
                collector.stop()
