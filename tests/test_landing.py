"""The landing page (``/``) in headless Chromium: each KPI's latest value per clinic against
its target, coloured as on the dashboards, behind the same basic auth as ``/metrics``.

Known data (tests/known_data.py) at its AS_OF, no-show rate over its 7-day alert window:
north has appointments 1 (fulfilled), 2 (no-show) and 3 (fulfilled): 1 of 3; south has
appointment 6 (arrived): 0 of 1 (7 is in the future, 8 entered in error). Target <= 10 %.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry

from collectors import landing
from collectors.service import Exporter
from collectors.web import load_web_config
from kpis import catalog, effective, plausibility
from kpis import config as config_module
from kpis.snapshot import EXCLUDED, Cell, KpiResult
from tests import known_data
from tests.conftest import in_ci
from tests.test_exporter import wait_for

PASSWORD = "landing-page-pw"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
# Independently from the rows above: (numerator, denominator) per clinic.
NO_SHOW = {"north": (1, 3), "south": (0, 1)}
TARGET = 0.10


def chromium(*args: str) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        if in_ci():
            pytest.fail("chromium missing in CI (Debian package chromium)")
        pytest.skip("chromium not installed")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def cell(dom: str, kpi_title: str, clinic: str) -> tuple[str, str]:
    """(state class, shown value) of the clinic's row in the KPI's table."""
    section = dom.split(f"<h2>{kpi_title}</h2>", 1)[1].split("<h2>", 1)[0]
    found = re.search(rf'<td>{clinic}</td><td class="v (\w+)">([^<]*)</td>', section)
    assert found, section[:2000]
    return found.group(1), found.group(2)


def test_landing_page_shows_values_against_targets_in_a_browser(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/known.db"
    known_data.load(url)
    data = known_data.config(url)
    data["kpis"]["no_show"] = {"min_volume": 1}  # judged from one appointment on (default 20)
    config = config_module.parse(data, "known.yaml")
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  coordinator: '{HASH}'\n")
    exporter = Exporter(config, registry=CollectorRegistry(), clock=lambda: known_data.AS_OF)
    server = exporter.start("127.0.0.1", 0, load_web_config(web_config))
    try:
        # Window groups refresh one by one: wait for the alert window (7d) of A1 too.
        wait_for(lambda: all(r.ok for r in exporter.store.results() if r.unavailable is None)
                 and any(c.label("window") == "7d" for r in exporter.store.results()
                         if r.kpi.key == "no_show" for c in r.cells), 120,
                 "every KPI refreshed")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 401  # the same auth as /metrics
        conn.close()
        page = f"http://coordinator:{PASSWORD}@127.0.0.1:{server.port}/"
        dom = chromium("--dump-dom", page)
        screenshot = tmp_path / "landing.png"
        chromium("--window-size=1000,1400", f"--screenshot={screenshot}", page)
    finally:
        exporter.stop()
    assert "<script" not in dom.lower()
    for clinic, (numerator, denominator) in NO_SHOW.items():
        rate = numerator / denominator
        state, shown = cell(dom, "A1 No-show rate", clinic)
        assert shown == f"{rate * 100:.1f} %"
        assert state == ("met" if rate <= TARGET else "missed"), (clinic, state)
    assert "target &lt;= 10.0 %; window 7d" in dom
    # Below its minimum volume (default), a value is shown but not judged: grey.
    assert cell(dom, "A2 Late-cancellation rate", "south")[0] == "unknown"
    assert screenshot.stat().st_size > 10_000
    # No record ever reaches the page: only clinic codes and aggregates.
    assert "appt" not in dom and "PHONE" not in dom


class _Latest:
    """The two things the page reads of a store: its config and its latest results."""

    def __init__(self, config: config_module.Config, results: list) -> None:
        self.config, self._results = config, results

    def results(self) -> list:
        return self._results


def test_a_doubtful_value_is_amber_with_its_reason_never_green() -> None:
    config = config_module.parse(known_data.config("sqlite:///unused.db"), "known.yaml")
    kpi = catalog.get("A1")
    labels = (("clinic", "north"), ("window", "7d"))
    # north: 0 no-shows of 40 kept records would be green (target <= 10 %), but 50 more
    # records were left out by an exclusion rule: 50 of 90 is more than half.
    doubtful = Cell(labels, {"numerator": 0, "denominator": 40, f"{EXCLUDED}excluded_code": 50})
    plain = Cell((("clinic", "south"), ("window", "7d")), {"numerator": 0, "denominator": 40})
    assert effective.min_volume(kpi, config) <= 40  # enough records to be judged
    assert plausibility.doubts(kpi, doubtful) and not plausibility.doubts(kpi, plain)
    result = KpiResult(kpi, "main", datetime(2026, 3, 2, tzinfo=UTC), (doubtful, plain))
    dom = landing.page(_Latest(config, [result]), ["/metrics"])  # type: ignore[arg-type]
    north = re.search(r'<td>north</td><td class="v (\w+)" title="([^"]*)">([^<]*)</td>', dom)
    assert north, dom
    assert north.groups() == ("suspect", "50 of 90 records left out (excluded_code 50)",
                              "0.0 % ?")
    assert cell(dom, f"{kpi.id} {kpi.name}", "south") == ("met", "0.0 %")


def test_a_backlog_is_shown_as_of_now_not_hidden_by_a_window() -> None:
    """M3 cells have no window: one breach past its SLA in north is red, not 'no data'."""
    config = config_module.parse(known_data.config("sqlite:///unused.db"), "known.yaml")
    kpi = catalog.get("M3")
    backlog = Cell((("clinic", "north"), ("channel", "portal")), {"value": 1})
    result = KpiResult(kpi, "main", datetime(2026, 3, 2, tzinfo=UTC), (backlog,))
    dom = landing.page(_Latest(config, [result]), ["/metrics"])  # type: ignore[arg-type]
    assert cell(dom, f"{kpi.id} {kpi.name}", "north") == ("missed", "1")
    assert "window now" in dom.split(f"<h2>{kpi.id} {kpi.name}</h2>", 1)[1].split("<h2>")[0]
