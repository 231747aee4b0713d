"""A fresh exposition: the body is renewed when the snapshot changes, not when a scrape finds it
stale, so a scrape after a quiet period gets the current state (issue 13: with no scrape for
12 s across a database restart, the first scrape after recovery still said source_up 0)."""

from __future__ import annotations

import gzip
import time

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from collectors.body_cache import WATCH_SECONDS, CachedExposition
from collectors.exposition import CareKpiCollector
from collectors.store import Store
from kpis import config as config_module
from tests import known_data

PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def _source_up(body: bytes) -> str:
    line = next(x for x in body.decode().splitlines() if x.startswith("carekpi_source_up{"))
    return line.rsplit(" ", 1)[1]


def test_a_scrape_after_a_quiet_period_across_an_outage_gets_the_current_state():
    config = config_module.parse(known_data.config("sqlite:///unused.db"), "carekpi.yaml")
    store = Store(config)
    registry = CollectorRegistry()
    registry.register(CareKpiCollector(store))
    front = CachedExposition(registry, [store])
    try:
        def scrape(accept: str = PROMETHEUS_ACCEPT, zipped: bool = False) -> bytes:
            encoder, content_type = choose_encoder(accept)
            body = front.render(encoder, content_type, zipped)
            return gzip.decompress(body) if zipped else body

        store.set_source_up("main", True)
        assert _source_up(scrape()) == "1.0"
        assert _source_up(scrape("text/plain", zipped=True)) == "1.0"
        store.set_source_up("main", False)  # the outage, seen by scrapes of both formats
        deadline = time.monotonic() + 5
        while _source_up(scrape()) != "0.0" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _source_up(scrape()) == "0.0"
        store.set_source_up("main", True)  # recovery, then nobody scrapes for a while
        time.sleep(WATCH_SECONDS * 5)
        # The very first scrape of each format after the quiet period has the current state.
        assert _source_up(scrape()) == "1.0"
        assert _source_up(scrape("text/plain", zipped=True)) == "1.0"
    finally:
        front.close()


def test_a_cache_dropped_without_close_ends_its_watcher():
    """The watcher holds the cache weakly: a front nobody holds any more (a test, an exporter
    rebuilt) does not leave a thread renewing bodies for good."""
    import gc
    import threading

    config = config_module.parse(known_data.config("sqlite:///unused.db"), "carekpi.yaml")
    store = Store(config)
    registry = CollectorRegistry()
    registry.register(CareKpiCollector(store))
    front = CachedExposition(registry, [store])
    front.render(*choose_encoder(PROMETHEUS_ACCEPT))
    watcher = front._watcher
    assert watcher is not None and watcher.is_alive()
    del front
    gc.collect()
    watcher.join(timeout=10 * WATCH_SECONDS + 1)
    assert not watcher.is_alive()
    assert watcher not in threading.enumerate()
