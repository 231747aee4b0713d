"""End to end: the demo exporter, a real Prometheus scraping it (with the generated recording
rules), and every query of every dashboard panel run through Prometheus' HTTP API.

No panel may be empty on the demo. Variables are substituted as Grafana would: clinic=.*
(All) and one demo clinic, the 7-day window, $__rate_interval=1m.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards import build, inventory
from kpis import catalog
from kpis.durations import format_seconds
from tests.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

ROOT = Path(__file__).parents[1]
RECORDING_RULES = ROOT / "alerts" / "generated" / "recording.yaml"
WEEK = format_seconds(7 * 86400)
READY_TIMEOUT = 240.0
# Long enough that the queries run between refresh rounds: while the demo refreshes, its
# scrapes can exceed the 1s scrape timeout, and a failed scrape makes every series stale.
DEMO_REFRESH = "60s"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not installed (Debian package prometheus)"
        if _in_ci():
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return path


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def _query(prometheus: str, expr: str) -> list[dict]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    answer = json.loads(_get(url))
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[str]:
    """The demo exporter and Prometheus; yields Prometheus' base URL once both answer."""
    prometheus_bin = _binary("prometheus")
    work = tmp_path_factory.mktemp("e2e")
    demo_port = free_port(19200, 19300)
    prom_port = free_port(19200, 19300, (demo_port,))
    carekpi = str(Path(sys.executable).with_name("carekpi"))
    demo = subprocess.Popen(
        [carekpi, "demo", "--port", str(demo_port), "--db", f"sqlite:///{work / 'demo.db'}",
         "--refresh-interval", DEMO_REFRESH],
        stdout=open(work / "demo.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    rules = [str(RECORDING_RULES)] if RECORDING_RULES.exists() else []
    (work / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rules,
        "scrape_configs": [{"job_name": "carekpi",
                            "static_configs": [{"targets": [f"127.0.0.1:{demo_port}"]}]}],
    }))
    prometheus = subprocess.Popen(
        [prometheus_bin, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=open(work / "prometheus.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    base = f"http://127.0.0.1:{prom_port}"
    try:
        _wait_until_ready(base, demo, prometheus, work)
        yield base
    finally:
        _stop(prometheus)
        _stop(demo)


def _wait_until_ready(base: str, demo: subprocess.Popen, prometheus: subprocess.Popen,
                      work: Path) -> None:
    """Until every KPI refreshed once and Prometheus has scraped it (and rates have 2 points)."""
    deadline = time.monotonic() + READY_TIMEOUT
    attempted = scraped = checked = windows = []
    while time.monotonic() < deadline:
        for name, process in (("demo", demo), ("prometheus", prometheus)):
            if process.poll() is not None:
                log = (work / f"{name}.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"{name} exited with {process.returncode}:\n{log}")
        try:
            # Every KPI has been attempted once (kpi_up exists for failures too) ...
            attempted = _query(base, "count(carekpi_kpi_up)")
            # ... every window of every KPI too (each window group refreshes on its own) ...
            windows = _query(base, "count(carekpi_kpi_last_success_timestamp_seconds)")
            # ... and scraped for a while, so that rate() has points.
            scraped = _query(base, "count_over_time(carekpi_build_info[1m]) and on () "
                                   "min_over_time(up[5s]) == 1")
            # ... and the demo's first data-quality run has finished.
            checked = _query(base, "count(carekpi_check_passed)")
        except OSError:
            attempted, scraped, checked, windows = [], [], [], []
        if attempted and float(attempted[0]["value"][1]) >= len(catalog.load()) and \
                windows and float(windows[0]["value"][1]) >= KPI_WINDOWS and \
                scraped and float(scraped[0]["value"][1]) >= 5 and checked:
            time.sleep(3)  # the last refreshes' samples and the recording rules land
            return
        time.sleep(1)
    log = (work / "demo.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"the demo was not ready within {READY_TIMEOUT:.0f}s (KPIs refreshed: "
                f"{attempted}, windows refreshed: {windows} of {KPI_WINDOWS}, scraped: "
                f"{scraped}, checks run: {bool(checked)}):\n{log}")


# (kpi, window) pairs with a last-success time: 4 default windows, one for "now" values.
KPI_WINDOWS = sum(1 if k.kind in ("backlog", "freshness") else 4 for k in catalog.load())
# Panels that list exceptions: a clean demo may rightly have none (whether a demo cell looks
# suspect depends on the hour it runs); tests/test_foreign_schemas.py makes suspect results.
EXCEPTION_LISTS = {"Suspect results"}
QUERIES = [(d["uid"], p, t) for d in build.dashboards() for p, t in inventory.queries(d)]


def _ids(items):
    return [f"{uid}:{p['id']}:{t['refId']}:{p['title']}" for uid, p, t in items]


@pytest.mark.parametrize(("uid", "panel", "target"), QUERIES, ids=_ids(QUERIES))
def test_every_panel_query_returns_data_on_the_demo(stack, uid, panel, target):
    expr = inventory.substitute(target["expr"], {"clinic": ".*", "window": WEEK})
    if panel["title"] in EXCEPTION_LISTS:
        _query(stack, expr)  # valid PromQL that Prometheus accepts; empty when all is well
        return
    assert _query_data(stack, expr), f"empty on the demo: {expr}"


def _query_data(base: str, expr: str, attempts: int = 3) -> list[dict]:
    """The result, asked again after a pause when empty (a scrape may just have failed)."""
    for attempt in range(attempts):
        result = _query(base, expr)
        if result or attempt == attempts - 1:
            return result
        time.sleep(2)
    return []


def test_one_clinic_is_a_subset_of_all(stack):
    """The clinic variable filters: one demo clinic gives that clinic's rows only."""
    clinics = _query(stack, 'group by (clinic) (carekpi_kpi_target{clinic!=""})')
    assert len(clinics) >= 2
    one = clinics[0]["metric"]["clinic"]
    overview = next(d for d in build.dashboards() if d["uid"] == "carekpi-overview")
    ranking = next(p for p in inventory.panels(overview) if p["type"] == "table")
    rows = _query(stack, inventory.substitute(ranking["targets"][0]["expr"],
                                              {"clinic": one, "window": WEEK}))
    assert [r["metric"]["clinic"] for r in rows] == [one]
    everyone = _query(stack, inventory.substitute(ranking["targets"][0]["expr"],
                                                  {"clinic": ".*", "window": WEEK}))
    assert {r["metric"]["clinic"] for r in everyone} == {c["metric"]["clinic"] for c in clinics}


def test_ratio_tiles_equal_the_recording_rules(stack):
    """The dashboards' raw-series ratio equals the alerts' recording rule (same definition)."""
    if not RECORDING_RULES.exists():
        pytest.skip("alerts/generated/recording.yaml not built")
    ours = _query(stack, inventory.substitute(
        'sum (carekpi_no_show_numerator{clinic=~"$clinic", window="$window"}) / '
        '(sum (carekpi_no_show_denominator{clinic=~"$clinic", window="$window"}) > 0)',
        {"clinic": ".*", "window": WEEK}))
    rule = _query(stack, f'window:carekpi_no_show:ratio{{window="{WEEK}"}}')
    assert ours and rule
    assert float(ours[0]["value"][1]) == pytest.approx(float(rule[0]["value"][1]))
