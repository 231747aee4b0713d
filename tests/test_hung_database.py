"""A hung database (SIGSTOP: a hung host, a network black hole) is not healthy.

The kernel keeps accepting connections and acknowledging data for a stopped server, so the
server-side statement timeout never fires and a driver would wait forever. The exporter's
client-side deadlines (kpis.db.deadlines) and its overdue refreshes (collectors.scheduler)
must report every KPI down within query_timeout plus the grace, drop its cells after the
documented stale limit, exit within 5 s of SIGTERM, and recover when the server resumes.
Each case runs ``carekpi serve`` against a private PostgreSQL / MariaDB that the test stops.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from collectors import evaluate
from kpis import catalog, names
from kpis import config as config_module
from kpis.db.deadlines import GRACE
from tests import known_data
from tests.conftest import free_port, in_ci
from tests.db_instances import Instance, MariaDBInstance, PostgresInstance, Unavailable
from tests.test_faults import parse, scrape, series, wait_for

CARE = [sys.executable, "-m", "kpis"]
REFRESH = 1.0
QUERY_TIMEOUT = 2.0
STALE_INTERVALS = 3  # collectors.store.Store: cells older than 3 intervals are dropped
SLACK = 1.0  # one scrape poll and the scheduler's wake-up
KINDS: dict[str, type[Instance]] = {"postgresql": PostgresInstance, "mysql": MariaDBInstance}


@pytest.fixture(params=[pytest.param("postgresql", marks=[pytest.mark.postgresql,
                                                          pytest.mark.slow]),
                        pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.slow])])
def instance(request: pytest.FixtureRequest) -> Iterator[Instance]:
    server = KINDS[request.param](free_port(15500, 15600))
    try:
        server.create()
    except Unavailable as exc:
        server.destroy()
        if in_ci():
            pytest.fail(f"CI=true and the {request.param} test instance cannot start: {exc}")
        pytest.skip(f"cannot start a {request.param} test instance: {exc}")
    try:
        yield server
    finally:
        server.destroy()


def serve(instance: Instance, tmp_path: Path
          ) -> tuple[subprocess.Popen[bytes], str, set[str]]:
    """``carekpi serve`` on the instance's known data; its URL and the KPIs it refreshes."""
    known_data.load(instance.url)
    data = known_data.config(instance.url)
    data["sources"]["main"].update({"refresh_interval": f"{REFRESH:g}s",
                                    "connect_timeout": "1s",
                                    "query_timeout": f"{QUERY_TIMEOUT:g}s"})
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump(data))
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([*CARE, "serve", "--config", str(path), "--bind", "127.0.0.1",
                                "--port", str(port)], stdout=log, stderr=log)
    log.close()
    config = config_module.parse(data, str(path))
    kpis = {kpi.key for unit in evaluate.units(config) for kpi in unit.kpis}
    return process, f"http://127.0.0.1:{port}/metrics", kpis


def kpi_up(url: str) -> dict[str, float]:
    try:
        return series(parse(scrape(url)), names.KPI_UP)
    except OSError:
        return {}


def every_kpi_up(url: str, kpis: set[str]) -> None:
    wait_for(lambda: kpi_up(url) == dict.fromkeys(kpis, 1.0), 60, "every KPI up")


def test_a_stopped_database_is_reported_down_dropped_recovered_and_sigterm_still_exits(
        instance: Instance, tmp_path: Path) -> None:
    process, url, kpis = serve(instance, tmp_path)
    no_show = names.numerator(catalog.get("no_show"))
    last_success = names.KPI_LAST_SUCCESS
    code: int | None = None
    try:
        every_kpi_up(url, kpis)
        instance.pause()
        stopped = time.monotonic()
        wait_for(lambda: set(kpi_up(url).values()) == {0.0},
                 QUERY_TIMEOUT + GRACE + REFRESH + SLACK + 5, "every kpi_up 0")
        down_after = time.monotonic() - stopped
        first = parse(scrape(url))
        time.sleep(REFRESH * 1.5)
        second = parse(scrape(url))
        wait_for(lambda: no_show not in {name for name, _ in parse(scrape(url))},
                 STALE_INTERVALS * REFRESH + QUERY_TIMEOUT + GRACE + SLACK + 5,
                 f"{no_show} dropped")
        dropped_after = time.monotonic() - stopped
        wait_for(lambda: series(parse(scrape(url)), names.SOURCE_UP) == {"main": 0.0}, 10,
                 "source_up 0")
        instance.resume()
        resumed = time.monotonic()
        every_kpi_up(url, kpis)
        recovered_after = time.monotonic() - resumed
        # Stopped again, with refreshes and the health check waiting on it: SIGTERM.
        instance.pause()
        time.sleep(REFRESH * 2)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = process.wait(15)
        exit_after = time.monotonic() - began
    finally:
        instance.resume()
        process.kill()
        process.wait(10)
    output = (tmp_path / "serve.log").read_text()
    print(f"\nHUNG-DB {instance.url.split(':')[0]}: down after {down_after:.1f} s, cells "
          f"dropped after {dropped_after:.1f} s, recovered {recovered_after:.1f} s after "
          f"resume, SIGTERM exit {code} after {exit_after:.2f} s")
    assert down_after <= QUERY_TIMEOUT + GRACE + REFRESH + SLACK
    assert set(series(first, last_success)) == kpis
    assert series(first, last_success) == series(second, last_success)  # the age grows
    assert dropped_after <= STALE_INTERVALS * REFRESH + QUERY_TIMEOUT + GRACE + SLACK
    assert code == 0 and exit_after <= 5.0, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
