"""The exporter: engines, the refresh scheduler, the snapshot store and the HTTP server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from collectors import engines as engine_factory
from collectors.exposition import CachedExposition, CareKpiCollector
from collectors.scheduler import Scheduler
from collectors.store import Store
from collectors.web import WebConfig, WebServer, start_server
from kpis.config import Config

log = logging.getLogger("carekpi.exporter")


def create_engines(config: Config) -> dict[str, sa.Engine]:
    return {name: engine_factory.create(name, source) for name, source in config.sources.items()}


@dataclass
class Exporter:
    config: Config
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    extra_collectors: list[Any] = field(default_factory=list)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.store = Store(self.config)
        self.engines = create_engines(self.config)
        self.scheduler = Scheduler(self.store, self.engines, self.clock)
        self.registry.register(CareKpiCollector(self.store))
        for collector in self.extra_collectors:
            self.registry.register(collector)
        self.server: WebServer | None = None

    def start(self, bind: str, port: int, web_config: WebConfig | None = None) -> WebServer:
        versioned = [self.store, *(c for c in self.extra_collectors if hasattr(c, "version"))]
        front: Any = self.registry
        if len(versioned) == 1 + len(self.extra_collectors):
            front = CachedExposition(self.registry, versioned)
        self.server = start_server(front, bind, port, web_config)
        self.scheduler.start()
        log.info("serving %d refresh units from %d sources on %s/metrics",
                 len(self.scheduler.units), len(self.engines), self.server.url)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        self.scheduler.stop()
        for collector in self.extra_collectors:
            if hasattr(collector, "stop"):
                collector.stop()
