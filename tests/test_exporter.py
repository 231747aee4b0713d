"""The exporter: scrapes served from memory, failures isolated, the demo accepted by promtool."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collectors.service import Exporter
from kpis import catalog
from kpis import config as config_module
from tests import known_data
from tests.conftest import free_port, in_ci

CARE = [sys.executable, "-m", "kpis"]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def scrape_when(url: str, *needles: str, timeout: float = 60.0) -> str:
    """The first scrape that contains every needle."""

    def ready() -> str | None:
        text = scrape(url)
        return text if all(n in text for n in needles) else None

    return wait_for(ready, timeout, what=f"{', '.join(needles)} at {url}")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture
def sqlite_known(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/known.db"
    known_data.load(url)
    return url


def test_scrapes_are_served_from_memory_and_never_query(sqlite_known: str) -> None:
    config = config_module.parse(known_data.config(sqlite_known), "known.yaml")
    exporter = Exporter(config, registry=CollectorRegistry(), clock=lambda: known_data.AS_OF)
    queries: list[str] = []
    server = exporter.start("127.0.0.1", 0)
    try:
        url = f"{server.url}/metrics"
        wait_for(lambda: {(r.kpi.key, r.windows) for r in exporter.store.results()} >= {
            (k.key, u.window_labels) for u in exporter.scheduler.units for k in u.kpis},
                 what="every KPI's first refresh of every window")
        for engine in exporter.engines.values():
            sa.event.listen(engine, "before_cursor_execute",
                            lambda *args: queries.append("q"))
        time.sleep(0.5)
        queries.clear()
        for _ in range(20):
            text = scrape(url)
        assert queries == []
        got = samples(text)
        assert got[("carekpi_source_up", frozenset({("source", "main")}))] == 1.0
        assert got[("carekpi_kpi_target", frozenset({("kpi", "no_show")}))] == 0.10
        assert got[("carekpi_kpi_up", frozenset({("kpi", "no_show"), ("source", "main")}))] == 1
    finally:
        exporter.stop()


def test_a_failing_kpi_never_stops_the_others(sqlite_known: str) -> None:
    data = known_data.config(sqlite_known)
    data["entities"]["appointments"]["fields"]["departed"] = {"sql": "no_such_column + 1"}
    config = config_module.parse(data, "known.yaml")
    exporter = Exporter(config, registry=CollectorRegistry(), clock=lambda: known_data.AS_OF)
    server = exporter.start("127.0.0.1", 0)
    try:
        url = f"{server.url}/metrics"
        text = scrape_when(url, 'kpi_up{kpi="visit_cycle_time"',
                           "carekpi_wait_to_be_seen_seconds_bucket",
                           'carekpi_no_show_numerator{clinic="north",source="main",window="1d"}')
        got = samples(text)
        assert got[("carekpi_kpi_up", frozenset({("kpi", "visit_cycle_time"),
                                                  ("source", "main")}))] == 0
        assert got[("carekpi_kpi_up", frozenset({("kpi", "wait_to_be_seen"),
                                                  ("source", "main")}))] == 1
        assert got[("carekpi_no_show_numerator", frozenset({
            ("source", "main"), ("clinic", "north"), ("window", "1d")}))] == 1
        assert "carekpi_visit_cycle_time_seconds_bucket" not in text
    finally:
        exporter.stop()


def test_collect_is_the_same_for_the_same_as_of(sqlite_known: str, tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    import yaml

    path.write_text(yaml.safe_dump(known_data.config(sqlite_known)))
    args = [*CARE, "collect", "--config", str(path), "--as-of", "2026-03-02T12:00:00Z"]
    first = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert first == second
    # --once, once required, is still accepted and changes nothing
    old = subprocess.run([*args, "--once"], capture_output=True, text=True, check=True).stdout
    assert old == first
    import json

    report = {k["kpi"]: k for k in json.loads(first)["kpis"]}
    north_day = next(r for r in report["no_show"]["results"]
                     if r["clinic"] == "north" and r["window"] == "1d")
    assert (north_day["numerator"], north_day["denominator"]) == (1, 3)
    assert north_day["value"] == pytest.approx(1 / 3)
    assert (north_day["target"], north_day["status"]) == (0.1, "breach")
    assert report["first_contact_resolution"]["status"] == "ok"
    text = subprocess.run([*args[:-4], "--format", "prometheus", *args[-4:]],
                          capture_output=True, text=True, check=True).stdout
    assert 'carekpi_no_show_numerator{clinic="north",source="main",window="1d"} 1.0' in text


@pytest.mark.parametrize(("content", "expected"), [
    ("version: 1\nsources: {main: {url: 'sqlite:///x.db', pool: 3}}\n",
     "sources.main.pool: unknown key"),
    ("version: 1\nsources: {main: {url: '${env:CAREKPI_NOPE}'}}\n",
     "sources.main.url: environment variable CAREKPI_NOPE is not set"),
    ("version: 1\nsources: [\n", "line 3, column 1: YAML syntax error"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    run = subprocess.run([*CARE, "config", "validate", "--config", str(path)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith(f"carekpi: {path}: {expected}"), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr


def test_config_validate_checks_columns_and_lists_unmapped_codes(sqlite_known: str,
                                                                 tmp_path: Path) -> None:
    import yaml

    data = known_data.config(sqlite_known)
    del data["entities"]["appointments"]["codes"]["status"]["pending"]
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump(data))
    run = subprocess.run([*CARE, "config", "validate", "--config", str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "warning: entities.appointments.codes.status: 1 local code(s)" in run.stdout
    assert "'PEND'" in run.stdout
    data["entities"]["calls"]["fields"]["answered"] = "answerd_at"
    path.write_text(yaml.safe_dump(data))
    run = subprocess.run([*CARE, "config", "validate", "--config", str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert ("entities.calls.fields.answered: column 'answerd_at' not found in table "
            "'acd_calls'") in run.stderr


@pytest.mark.prometheus
def test_demo_serves_metrics_that_promtool_accepts(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if in_ci():
            pytest.fail("promtool missing in CI (Debian package prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    port = free_port()
    demo = subprocess.Popen([*CARE, "demo", "--no-checks", "--db", f"sqlite:///{tmp_path}/demo.db",
                             "--port", str(port)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        text = scrape_when(url, "carekpi_nps_promoters", "carekpi_follow_up_numerator",
                           timeout=120)
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                               text=True)
        assert check.returncode == 0 and check.stdout == "" and check.stderr == "", (
            check.stdout + check.stderr)
        got = samples(text)
        assert got[("carekpi_source_up", frozenset({("source", "demo")}))] == 1
    finally:
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err[-2000:]
    assert "metrics on http://127.0.0.1" in err and "stopped" in err
    assert "Traceback" not in err


PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


@pytest.mark.parametrize("accept", ["", PROMETHEUS_ACCEPT], ids=["text", "openmetrics"])
def test_cached_exposition_is_byte_identical_to_prometheus_client(sqlite_known: str,
                                                                  accept: str) -> None:
    from datetime import UTC, datetime

    from prometheus_client.exposition import choose_encoder

    from collectors import evaluate
    from collectors.body_cache import CachedExposition
    from collectors.exposition import CareKpiCollector
    from collectors.store import Store
    from kpis.db.engines import create_all as create_engines
    from kpis.snapshot import Cell, KpiResult

    config = config_module.parse(known_data.config(sqlite_known), "known.yaml")
    store = Store(config)
    store.put(evaluate.evaluate(config, create_engines(config), known_data.AS_OF), 60)
    odd = Cell((("clinic", 'a"b\\c\nd'), ("window", "1d")), {"numerator": 1, "denominator": 3})
    store.put([KpiResult(catalog.get("no_show"), "main", datetime.now(UTC), (odd,))], 60)
    registry = CollectorRegistry()
    registry.register(CareKpiCollector(store))
    front = CachedExposition(registry, [store])

    def render(zipped: bool = False) -> bytes:
        # Prometheus' Accept header gets a new encoder object from prometheus_client on every
        # request: the cache must still hit.
        encoder, content_type = choose_encoder(accept)
        return front.render(encoder, content_type, zipped)

    def expected() -> bytes:
        return choose_encoder(accept)[0](registry)  # type: ignore[no-any-return]

    first = render()
    assert first == expected()
    assert render() is first  # same snapshot: served from the cache
    zipped = render(zipped=True)
    assert gzip.decompress(zipped) == first
    assert render(zipped=True) is zipped
    # A new snapshot where one KPI changed: the previous body at once, the new one as soon as
    # it is encoded, byte for byte what prometheus_client writes for the whole registry.
    store.put([KpiResult(catalog.get("no_show"), "main", datetime.now(UTC), (odd, Cell(
        (("clinic", "C9"), ("window", "7d")), {"numerator": 2, "denominator": 5})))], 60)
    assert render() is first
    renewed = wait_for(lambda: (body := render()) is not first and body,
                       timeout=10, what="the renewed exposition")
    assert renewed == expected()
    assert b'clinic="C9"' in renewed
    rezipped = wait_for(lambda: (body := render(zipped=True)) is not zipped and body,
                        timeout=10, what="the renewed gzip exposition")
    assert gzip.decompress(rezipped) == renewed


def test_a_format_nobody_scrapes_any_more_is_dropped_from_the_cache(sqlite_known: str) -> None:
    from prometheus_client.exposition import choose_encoder

    from collectors import evaluate
    from collectors.body_cache import CachedExposition
    from collectors.exposition import CareKpiCollector
    from collectors.store import Store
    from kpis.db.engines import create_all as create_engines

    config = config_module.parse(known_data.config(sqlite_known), "known.yaml")
    store = Store(config)
    store.put(evaluate.evaluate(config, create_engines(config), known_data.AS_OF), 60)
    registry = CollectorRegistry()
    registry.register(CareKpiCollector(store))
    front = CachedExposition(registry, [store], idle_seconds=0.2)
    text = front.render(*choose_encoder(""))
    openmetrics = front.render(*choose_encoder(PROMETHEUS_ACCEPT), True)
    assert front.render(*choose_encoder("")) is text
    time.sleep(0.3)
    assert front.render(*choose_encoder(PROMETHEUS_ACCEPT), True) is openmetrics  # kept
    again = front.render(*choose_encoder(""))  # idle past 0.2 s: encoded anew
    assert again == text and again is not text


def test_a_kpi_whose_results_did_not_change_keeps_its_families(sqlite_known: str) -> None:
    """What lets a renewal re-render only the refreshed unit's series."""
    from datetime import UTC, datetime

    from collectors import evaluate
    from collectors.exposition import CareKpiCollector
    from collectors.store import Store
    from kpis.db.engines import create_all as create_engines
    from kpis.snapshot import Cell, KpiResult

    config = config_module.parse(known_data.config(sqlite_known), "known.yaml")
    store = Store(config)
    store.put(evaluate.evaluate(config, create_engines(config), known_data.AS_OF), 60)
    collector = CareKpiCollector(store)
    before = {f.name: f for f in collector.collect()}
    store.put([KpiResult(catalog.get("no_show"), "main", datetime.now(UTC), (Cell(
        (("clinic", "C9"), ("window", "7d")), {"numerator": 2, "denominator": 5}),))], 60)
    after = {f.name: f for f in collector.collect()}
    assert after["carekpi_no_show_numerator"] is not before["carekpi_no_show_numerator"]
    assert after["carekpi_wait_to_be_seen_seconds"] is before["carekpi_wait_to_be_seen_seconds"]
    assert after["carekpi_kpi_up"] is not before["carekpi_kpi_up"]


def test_the_kpis_numbers_are_kept_once_not_as_samples_between_encodings(
        sqlite_known: str) -> None:
    """Memory (issue 16): a KPI's numbers live in the store's cells and, encoded, in the body.
    Its families make their samples when an encoder reads them, and none stays alive after:
    a second copy as samples (a tuple and a label dict each) took 14 MB at 20,000 series."""
    import gc

    from prometheus_client.exposition import generate_latest
    from prometheus_client.samples import Sample

    from collectors import evaluate
    from collectors.exposition import CareKpiCollector, LazyFamily
    from collectors.store import Store
    from kpis.db.engines import create_all as create_engines

    config = config_module.parse(known_data.config(sqlite_known), "known.yaml")
    store = Store(config)
    store.put(evaluate.evaluate(config, create_engines(config), known_data.AS_OF), 60)
    registry = CollectorRegistry()
    registry.register(collector := CareKpiCollector(store))
    made = {f.name for f in collector.collect() if isinstance(f, LazyFamily)}
    assert {"carekpi_wait_to_be_seen_seconds", "carekpi_no_show_numerator",
            "carekpi_kpi_excluded_records", "carekpi_kpi_suspect"} <= made
    body = generate_latest(registry).decode()
    assert "carekpi_wait_to_be_seen_seconds_bucket{" in body
    assert "carekpi_no_show_numerator{" in body
    gc.collect()
    kept = {o.name for o in gc.get_objects() if isinstance(o, Sample)}
    assert not {name for name in kept if any(name.startswith(f) for f in made)}
    assert "carekpi_kpi_up" in kept  # the health families, built per snapshot, keep theirs


@pytest.mark.parametrize("pool_size", [1, 2])
def test_start_order_is_cheapest_first_with_the_heaviest_beside_them(sqlite_known: str,
                                                                      pool_size: int) -> None:
    from collectors import evaluate
    from collectors.evaluate import start_order

    config = config_module.parse(known_data.config(sqlite_known), "known.yaml")
    units = evaluate.units(config)
    costs = [units[i].cost for i in start_order(units, {"main": pool_size})]
    assert len(costs) == len(units) > 3
    if pool_size == 1:  # one worker: the heaviest first would only delay the others
        assert costs == sorted(costs)
    else:
        assert costs[0] == max(costs) and costs[1:] == sorted(costs[1:])


def test_a_full_refresh_runs_on_the_pool_and_gives_the_same_results_in_order(
        sqlite_known: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """collect runs each source's units on its pool_size connections (as serve does),
    heaviest first; its results are those of one connection, in the units' order."""
    import threading

    from collectors import evaluate
    from kpis.db.engines import create_all as create_engines

    data = known_data.config(sqlite_known)
    answers = {}
    threads: dict[int, set[str]] = {}
    real = evaluate.run_unit
    for pool_size in (1, 2):
        data["sources"]["main"]["pool_size"] = pool_size
        config = config_module.parse(data, "known.yaml")
        seen = threads.setdefault(pool_size, set())

        def counted(*args, seen=seen, **kwargs):
            seen.add(threading.current_thread().name)
            return real(*args, **kwargs)

        monkeypatch.setattr(evaluate, "run_unit", counted)
        results = evaluate.evaluate(config, create_engines(config), known_data.AS_OF)
        answers[pool_size] = [(r.kpi.key, r.cells, r.error) for r in results]
    assert answers[2] == answers[1] and len(answers[1]) > 10
    assert len(threads[1]) == 1 and len(threads[2]) == 2
