"""Faults: a database that goes away and comes back, a query that hangs, a demo that cannot
start. Each proven against real servers: the outage tests start their own PostgreSQL and
MariaDB (tests/db_instances.py) so they can stop them without disturbing the shared ones.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collectors import web, web_front
from collectors.service import Exporter
from kpis import config as config_module
from kpis import names
from kpis.db import deadlines
from tests import known_data
from tests.conftest import in_ci
from tests.db_instances import Instance, MariaDBInstance, PostgresInstance, Unavailable

CARE = [sys.executable, "-m", "kpis"]
REFRESH = 1.0  # seconds: the refresh interval of the outage tests
OUTAGES = 10
SLACK = 0.5  # seconds allowed on top of one interval for the check itself and the scrape poll

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def series(got: Samples, name: str, **labels: str) -> dict[str, float]:
    """{kpi or source: value} of the samples of `name` that carry `labels`."""
    out = {}
    for (sample, label_set), value in got.items():
        found = dict(label_set)
        if sample == name and all(found.get(k) == v for k, v in labels.items()):
            out[found.get("kpi", found.get("source", ""))] = value
    return out


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def live_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


def settled_objects() -> int:
    """The fewest live objects of three samples 0.3 s apart: a refresh in flight holds its
    rows and plans for a moment; what stays alive between refreshes is what a leak grows."""
    counts = []
    for _ in range(3):
        counts.append(live_objects())
        time.sleep(0.3)
    return min(counts)


def driver_connections() -> int:
    """DBAPI connection objects alive in this process (closed ones are garbage)."""
    gc.collect()
    kinds = ("psycopg.Connection", "pymysql.connections.Connection")
    return sum(1 for o in gc.get_objects() if any(
        f"{c.__module__}.{c.__qualname__}" in kinds for c in type(o).__mro__)
        and not getattr(o, "closed", False) and getattr(o, "open", True))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


WATCHED = (names.SOURCE_UP, names.KPI_UP, names.KPI_ROWS_READ + "_total",
           names.KPI_REFRESH_ERRORS + "_total")


def parse_watched(text: str) -> Samples:
    """The health series only: cheap enough to run on every scrape of a busy test (the full
    parser, in this process, would compete with the exporter's threads for the GIL)."""
    lines = [line for line in text.splitlines() if line.startswith(WATCHED)]
    return parse("\n".join(lines) + "\n")


@dataclass
class Scraper:
    """Scrapes /metrics every `pause` seconds from its own thread; keeps every status and the
    latest health series, so the test watches the exporter as Prometheus would."""

    url: str
    pause: float = 0.05
    statuses: dict[int | str, int] = field(default_factory=dict)
    latest: Samples = field(default_factory=dict)
    count: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> Scraper:
        self._thread = threading.Thread(target=self._loop, name="test-scraper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def _loop(self) -> None:
        while not self._stop.is_set():
            status: int | str
            got: Samples | None = None
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    status = response.status
                    got = parse_watched(response.read().decode())
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError as exc:
                status = type(exc).__name__
            with self._lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.count += 1
                if got is not None:
                    self.latest = got
            self._stop.wait(self.pause)

    def now(self) -> Samples:
        """The health series of a scrape that started after this call."""
        with self._lock:
            target = self.count + 1
        wait_for(lambda: self.count > target, 10, "a fresh scrape", step=0.005)
        with self._lock:
            return self.latest

    def source_up(self, source: str = "main") -> float | None:
        return self.now().get((names.SOURCE_UP, frozenset({("source", source)})))


# ---------------------------------------------------------------- instances

INSTANCES: dict[str, tuple[type[Instance], int]] = {
    "postgresql": (PostgresInstance, 15433),
    "mysql": (MariaDBInstance, 13307),
}


def own_instance(dialect: str, second: bool = False) -> Iterator[Instance]:
    kind, port = INSTANCES[dialect]
    instance = kind(port + 1 if second else port)
    try:
        instance.create()
    except Unavailable as exc:
        instance.destroy()
        if in_ci():
            pytest.fail(f"CI=true and the {dialect} test instance cannot start: {exc}")
        pytest.skip(f"cannot start a {dialect} test instance: {exc}")
    try:
        yield instance
    finally:
        instance.destroy()


@pytest.fixture(params=[pytest.param("postgresql", marks=[pytest.mark.postgresql,
                                                          pytest.mark.slow]),
                        pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.slow])])
def instance(request: pytest.FixtureRequest) -> Iterator[Instance]:
    yield from own_instance(request.param)


def server_connections(instance: Instance) -> int:
    """Connections the exporter holds on the server (the test's own probe excluded)."""
    engine = sa.create_engine(instance.admin_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                query = ("SELECT count(*) FROM pg_stat_activity "
                         "WHERE application_name = 'carekpi-main'")
            else:
                query = ("SELECT count(*) FROM information_schema.processlist "
                         f"WHERE db = '{instance.database}' AND id <> connection_id()")
            return int(conn.execute(sa.text(query)).scalar_one())
    finally:
        engine.dispose()


def outage_config(url: str, **source: Any) -> config_module.Config:
    data = known_data.config(url)
    # Every window on the refresh interval: these tests time stalls and recoveries against
    # it, not the longer windows' cadences (kpis/cadence.py).
    windows = data.get("kpis", {}).get("windows", ["1h", "1d", "7d", "30d"])
    data["sources"]["main"].update({"refresh_interval": f"{REFRESH:g}s",
                                    "window_intervals": dict.fromkeys(windows, f"{REFRESH:g}s"),
                                    "connect_timeout": "1s", "query_timeout": "5s", **source})
    return config_module.parse(data, "faults.yaml")


def carekpi_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("carekpi"))


@dataclass
class Outage:
    down_detected: float  # seconds from the server gone to carekpi_source_up 0
    up_detected: float  # seconds from the server back to carekpi_source_up 1
    resumed: float  # seconds from the server back to every KPI refreshed successfully


def one_outage(instance: Instance, scraper: Scraper, kpis: list[str]) -> Outage:
    instance.stop()
    gone = time.monotonic()
    wait_for(lambda: scraper.source_up() == 0.0, REFRESH + SLACK + 5, "source_up 0")
    down = time.monotonic() - gone
    # Stay down long enough for the KPI refreshes to fail too, then come back.
    wait_for(lambda: set(series(scraper.now(), names.KPI_UP).values()) == {0.0},
             REFRESH * 2 + 5, "every kpi_up 0 during the outage")
    before = series(scraper.now(), names.KPI_ROWS_READ + "_total")
    instance.start()
    back = time.monotonic()
    wait_for(lambda: scraper.source_up() == 1.0, REFRESH + SLACK + 5, "source_up 1")
    up = time.monotonic() - back

    def resumed() -> bool:
        got = scraper.now()
        kpi_up = series(got, names.KPI_UP)
        rows = series(got, names.KPI_ROWS_READ + "_total")
        return (kpi_up == dict.fromkeys(kpis, 1.0)
                and all(rows.get(k, 0) > before.get(k, 0) for k in kpis if before.get(k)))

    wait_for(resumed, REFRESH * 2 + 5, "every KPI refreshed after the outage")
    return Outage(down, up, time.monotonic() - back)


def test_database_outages_are_detected_and_survived(instance: Instance) -> None:
    known_data.load(instance.url)
    config = outage_config(instance.url)
    exporter = Exporter(config, registry=CollectorRegistry(), clock=lambda: known_data.AS_OF)
    server = exporter.start("127.0.0.1", 0)
    scraper = Scraper(f"{server.url}/metrics").start()
    engine = exporter.engines["main"]
    began = time.monotonic()
    try:
        kpis = sorted(k.key for unit in exporter.scheduler.units for k in unit.kpis)
        assert len(kpis) > 20

        def all_up() -> bool:
            got = scraper.now()
            return (series(got, names.KPI_UP) == dict.fromkeys(kpis, 1.0)
                    and series(got, names.SOURCE_UP) == {"main": 1.0})

        wait_for(all_up, 30, "every KPI up")
        one_outage(instance, scraper, kpis)  # warm-up: lazy imports, pools, dialect caches
        objects_before = settled_objects()
        threads_before, names_before = threading.active_count(), carekpi_threads()
        conns_before, checked_out_before = server_connections(instance), engine.pool.checkedout()
        rss_before = rss_bytes()
        outages, objects = [], []
        for _ in range(OUTAGES):
            outages.append(one_outage(instance, scraper, kpis))
            objects.append(live_objects())
        time.sleep(REFRESH)  # one more quiet interval: every pooled connection re-established
        objects_after, rss_after = settled_objects(), rss_bytes()
        drivers = driver_connections()
        threads_after, names_after = threading.active_count(), carekpi_threads()
        conns_after, checked_out_after = server_connections(instance), engine.pool.checkedout()
        final = parse(scrape(f"{server.url}/metrics"))
    finally:
        scraper.stop()
        exporter.stop()
    report = {
        "dialect": instance.url.split(":")[0],
        "down_detected_max_s": round(max(o.down_detected for o in outages), 3),
        "up_detected_max_s": round(max(o.up_detected for o in outages), 3),
        "resumed_max_s": round(max(o.resumed for o in outages), 3),
        "threads": (threads_before, threads_after), "server_conns": (conns_before, conns_after),
        "pool_checked_out": (checked_out_before, checked_out_after),
        "gc_objects": (objects_before, objects_after), "driver_connections": drivers,
        "rss_growth_kib": round((rss_after - rss_before) / 1024, 1),
        "scrapes": dict(scraper.statuses), "seconds": round(time.monotonic() - began, 1),
    }
    print(f"\nOUTAGES {report}")
    assert set(scraper.statuses) == {200}, report
    assert all(o.down_detected <= REFRESH + SLACK for o in outages), report
    assert all(o.up_detected <= REFRESH + SLACK for o in outages), report
    assert all(o.resumed <= 2 * REFRESH + SLACK for o in outages), report
    # Bounded, not growing: the scheduler, one health checker, at most pool_size refresh
    # workers (started lazily), the web server, the exposition renewal (at most one at a
    # time per body); plus this thread and the scraper.
    port = server.url.rsplit(":", 1)[1]
    # The HTTP front: its event loop's thread and its bounded worker pool; the deadlines'
    # watchdog (kpis.db.deadlines).
    allowed = {"carekpi-scheduler", "carekpi-health_0", f"carekpi-web-{port}", "carekpi-web-0",
               "carekpi-exposition", "carekpi-deadlines",
               *(f"carekpi-web_{i}" for i in range(web.WORKERS)),
               *(f"carekpi-web-0.{i}" for i in range(1, web_front.LOOPS)),
               *(f"carekpi-refresh-main_{i}" for i in range(config.sources["main"].pool_size))}
    assert set(names_before) <= set(names_after) <= allowed, (names_after, report)
    assert threads_after <= len(allowed) + 2, report
    assert conns_after <= config.sources["main"].pool_size, report
    assert checked_out_after <= config.sources["main"].pool_size, report
    # A leak grows with every outage; the noise (refreshes in flight) does not.
    early, late = sorted(objects[:3])[1], sorted(objects[-3:])[1]
    assert late - early < 5000 and objects_after - objects_before < 10000, (objects, report)
    assert drivers <= config.sources["main"].pool_size + 1, report  # + the health check's
    assert rss_after - rss_before < 16 * 1024 * 1024, report
    assert set(series(final, names.KPI_UP).values()) == {1.0}
    north_day = frozenset({("source", "main"), ("clinic", "north"), ("window", "1d")})
    assert final[(names.numerator(_kpi("no_show")), north_day)] == 1
    assert final[(names.denominator(_kpi("no_show")), north_day)] == 3
    # The deadlines' watchdog is shared by the process: it ends by itself 1 s after its last
    # armed connection, which a refresh still finishing at stop() may have taken out.
    deadline = time.monotonic() + deadlines.overdue_after(5) + 2
    while carekpi_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert carekpi_threads() == [], "exporter threads still running after stop()"


def _kpi(key: str) -> Any:
    from kpis import catalog

    return catalog.get(key)


# ---------------------------------------------------------------- the demo's disk and port


def read_only_folder(folder: Path) -> Iterator[Path]:
    """A folder nobody may write to. Root ignores permission bits, so as root the folder is
    made immutable (chattr +i) instead."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot make a read-only folder as root: chattr: {done.stderr.strip()}"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    yield from read_only_folder(tmp_path / "read-only")


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run([*CARE, "demo", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)


def assert_one_line_error(run: subprocess.CompletedProcess[str], *needles: str) -> None:
    errors = [line for line in run.stderr.splitlines() if line.startswith("carekpi: ")]
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert len(errors) == 1 and run.stderr.rstrip().endswith(errors[0]), run.stderr
    assert all(n in errors[0] for n in needles), errors[0]


def test_demo_db_in_a_read_only_folder(tmp_path: Path, read_only: Path) -> None:
    run = run_demo(tmp_path, "--db", f"sqlite:///{read_only}/demo.db", "--seed-only")
    assert_one_line_error(run, f"{read_only}/demo.db", "unable to open database file")
    run = run_demo(tmp_path, "--db", f"sqlite:///{read_only}/sub/demo.db", "--seed-only")
    assert_one_line_error(run, f"{read_only}/sub", "cannot create the demo folder")


def test_demo_config_out_in_a_read_only_folder(tmp_path: Path, read_only: Path) -> None:
    run = run_demo(tmp_path, "--db", f"sqlite:///{tmp_path}/demo.db", "--seed-only",
                   "--config-out", f"{read_only}/carekpi.yaml")
    assert_one_line_error(run, f"{read_only}/carekpi.yaml: cannot write")


def test_demo_db_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    run = run_demo(tmp_path, "--db", f"sqlite:///{tmp_path}/a-file/sub/demo.db", "--seed-only")
    assert_one_line_error(run, f"{tmp_path}/a-file/sub", "cannot create the demo folder",
                          "Not a directory")


def test_demo_db_that_is_not_sqlite(tmp_path: Path) -> None:
    garbage = tmp_path / "demo.db"
    garbage.write_bytes(bytes(range(256)) * 20)
    run = run_demo(tmp_path, "--db", f"sqlite:///{garbage}", "--seed-only")
    assert_one_line_error(run, f"sqlite:///{garbage}", "cannot seed demo database")
    assert garbage.read_bytes() == bytes(range(256)) * 20  # never overwritten


def test_demo_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_demo(tmp_path, "--db", f"sqlite:///{tmp_path}/demo.db", "--port", str(port))
    assert_one_line_error(run, f"port {port} on 127.0.0.1 is already in use")


# ---------------------------------------------------------------- a query that hangs

LOCKED = "survey_invite"  # the table of survey_response (a unit of its own) and of freshness
HUNG_KPI = "survey_response"
TIMEOUT = 2.0  # the source's query_timeout: longer than the refresh interval on purpose
HOLD = 7.5  # seconds the lock is held: at least two whole timeouts after up to a refresh
# interval before the hung unit next starts (6 s left a second timeout a few ms late on a loaded
# CI machine)


def carekpi_queries(admin: sa.Connection, database: str) -> list[tuple[str, float]]:
    """(statement, seconds running) of every statement the exporter runs on the table now."""
    if admin.dialect.name == "postgresql":
        rows = admin.execute(sa.text(
            "SELECT query, extract(epoch FROM clock_timestamp() - query_start) "
            "FROM pg_stat_activity WHERE application_name = 'carekpi-main' "
            "AND state = 'active' AND query LIKE :table"), {"table": f"%{LOCKED}%"})
    else:
        rows = admin.execute(sa.text(
            "SELECT info, time_ms / 1000 FROM information_schema.processlist "
            "WHERE db = :db AND command = 'Query' AND id <> connection_id() "
            "AND info LIKE :table"), {"db": database, "table": f"%{LOCKED}%"})
    return [(str(q), float(t)) for q, t in rows]


def lock_table(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"LOCK TABLE {LOCKED} IN ACCESS EXCLUSIVE MODE"))
    else:
        conn.execute(sa.text(f"LOCK TABLES {LOCKED} WRITE"))


def unlock_table(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.rollback()
    else:
        conn.execute(sa.text("UNLOCK TABLES"))


@pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgresql),
                                     pytest.param("mysql", marks=pytest.mark.mysql)])
def test_a_hung_query_is_cancelled_on_the_server_and_stalls_nothing_else(
        fresh_database: Callable[[str], str], dialect: str) -> None:
    url = fresh_database(dialect)
    known_data.load(url)
    # pool_size 3: the locked table holds two workers (its unit and the freshness unit).
    config = outage_config(url, query_timeout=f"{TIMEOUT:g}s", pool_size=3)
    exporter = Exporter(config, registry=CollectorRegistry())  # wall clock: real timestamps
    server = exporter.start("127.0.0.1", 0)
    scraper = Scraper(f"{server.url}/metrics").start()
    kpis = sorted(k.key for unit in exporter.scheduler.units for k in unit.kpis)
    others = [k for k in kpis if k not in (HUNG_KPI, "freshness")]
    observer = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    holder = sa.create_engine(url, poolclass=sa.pool.NullPool)
    database = sa.make_url(url).database or ""
    try:
        wait_for(lambda: series(scraper.now(), names.KPI_UP) == dict.fromkeys(kpis, 1.0), 30,
                 "every KPI up")
        errors_before = series(scraper.now(), names.KPI_REFRESH_ERRORS + "_total")[HUNG_KPI]
        skipped_before = exporter.scheduler.skipped
        oldest, most_alike, stalest = 0.0, 0, 0.0
        with holder.connect() as lock, observer.connect() as admin:
            lock_table(lock)
            began = time.monotonic()
            while time.monotonic() - began < HOLD:
                running = carekpi_queries(admin, database)
                oldest = max([oldest, *(t for _, t in running)])
                statements = [q for q, _ in running]
                most_alike = max([most_alike, *(statements.count(q) for q in statements)])
                now = time.time()
                stalest = max(stalest, *(now - exporter.store.stats(k, "main").last_success
                                         for k in others))  # type: ignore[operator]
                time.sleep(0.05)
            during = scraper.now()
            unlock_table(lock)
        hung_up = series(during, names.KPI_UP)[HUNG_KPI]
        hung_errors = series(during, names.KPI_REFRESH_ERRORS + "_total")[HUNG_KPI]
        skipped = exporter.scheduler.skipped - skipped_before
        wait_for(lambda: series(scraper.now(), names.KPI_UP) == dict.fromkeys(kpis, 1.0), 10,
                 "every KPI up after the lock is released")
        with observer.connect() as admin:
            left = carekpi_queries(admin, database)
    finally:
        scraper.stop()
        exporter.stop()
        observer.dispose()
        holder.dispose()
    report = {"dialect": dialect, "oldest_query_s": round(oldest, 2),
              "same_statement_at_once": most_alike, "stalest_other_kpi_s": round(stalest, 2),
              "skipped": skipped, "errors": (errors_before, hung_errors)}
    print(f"\nHUNG {report}")
    # Cancelled by the server at query_timeout (the sampling adds at most a poll).
    assert TIMEOUT - 0.5 <= oldest <= TIMEOUT + 0.5, report
    assert left == [], left
    assert hung_up == 0.0 and hung_errors >= errors_before + 2, report
    assert most_alike == 1, report  # never a second query of the same unit
    assert skipped >= 2, report  # slots of the hung unit skipped while it ran
    assert stalest <= 2 * REFRESH + 0.5, report  # the others kept their interval
