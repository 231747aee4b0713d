"""The self-describing reports: the HTML page as a browser renders it (headless Chromium),
the JSON header and summary, and JUnit cases timed one by one."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from checks.commands import checks_group
from kpis import __version__
from tests import test_checks_data as data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (Debian package chromium)")
        pytest.skip("chromium is not installed")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{tmp / 'clinic.db'}"
    data.build(url, data.now())
    path = data.write_config(tmp / "carekpi.yaml", url)
    result = CliRunner().invoke(checks_group, ["run", "--config", path, "--since", "30d",
                                               "--report-dir", str(tmp / "out")])
    assert result.exit_code == 1, result.output
    return tmp / "out"


def _text(dom: str) -> str:
    dom = re.sub(r"<style>.*?</style>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def test_html_report_names_the_run_and_lists_failures_first(report_dir, tmp_path):
    page = report_dir / "checks.html"
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    text = _text(dom)
    config = str(report_dir.parent / "carekpi.yaml")
    assert f"Config {config}" in text
    assert "Sources clinicdb (sqlite)" in text
    assert "Window last 30d" in text
    assert f"CareKPI {__version__}" in text
    assert "Great Expectations 1." in text
    assert "Run at 20" in text and " UTC" in text
    assert "31 checks: 22 passed, 8 failed, 1 warnings, 0 not evaluated; exit code 1" in text
    rows = text.split("result entity check column expectation", 1)[1]
    statuses = re.findall(r'<tr class="(\w+)">', dom)
    assert statuses == ["failed"] * 8 + ["warning"] + ["passed"] * 22
    first = rows.split(" failed ")[1]  # the first row, as a person reads it
    assert first.startswith("appointments completeness clinic "
                            "expect_column_values_to_not_be_null Every appointment has a clinic "
                            "(not empty, not blank), for at least 98.00% of checked records.")
    assert ("expect_column_pair_values_a_to_be_greater_than_b No appointment has its start "
            "time before its created time.") in text
    assert "The newest appointment created time is at most 2h old." in text
    assert "Custom check on appointments: column values match regex (department)" in text
    for marker in data.MARKERS:
        assert marker not in text
    shot = tmp_path / "checks.png"
    _chromium("--hide-scrollbars", "--window-size=1400,900", f"--screenshot={shot}",
              page.as_uri())
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    keep = os.environ.get("CAREKPI_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_json_header_and_summary_keys(report_dir):
    report = json.loads((report_dir / "checks.json").read_text())
    assert report["carekpi_version"] == __version__
    assert report["great_expectations_version"].startswith("1.")
    assert report["window"] == {"mode": "since", "since_seconds": 30 * 86400,
                                "text": report["window"]["text"]}
    assert report["run_at"].startswith("20") and report["duration_seconds"] > 0
    assert report["summary"] == {"checks_run": 31, "checks_passed": 22, "checks_failed": 8,
                                 "checks_warned": 1, "checks_not_evaluated": 0}
    severities = {r["severity"] for r in report["results"]}
    assert not severities & set(report["summary"])
    described = {(r["check"], r["column"]): r["description"] for r in report["results"]}
    assert described[("conformance", "status")] == (
        "The status of every appointment is one of the codes mapped in the config, for at "
        "least 99.00% of checked records.")


def test_junit_cases_carry_their_own_time(report_dir):
    root = ET.parse(report_dir / "checks.junit.xml").getroot()
    suite = root.find("testsuite[@name='appointments']")
    assert suite is not None and suite.get("timestamp", "").startswith("20")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["carekpi_version"] == __version__
    assert properties["window"].startswith("last 30d")
    times = {c.get("name"): float(c.get("time", "-1")) for c in suite.iter("testcase")}
    assert all(t >= 0 for t in times.values())
    # The custom check is timed by its GX validation; the built-ins share one statement.
    assert times["department_code[department]"] != times["completeness[clinic]"]
    assert float(suite.get("time", "0")) == pytest.approx(sum(times.values()), abs=0.01)


def test_report_files_are_all_written(report_dir: Path):
    assert sorted(p.name for p in report_dir.iterdir()) == [
        "checks-history.sqlite", "checks.html", "checks.json", "checks.junit.xml"]


def test_history_charts_each_checks_unexpected_ratio_over_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    data.build(url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", url, custom=[])
    out = tmp_path / "out"
    engine = sa.create_engine(url)
    bad_status = []
    for run in range(3):  # the share of unknown status codes grows: 2, 4, 6 of 50
        if run:
            ids = range(20 + 2 * run, 22 + 2 * run)
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE appt SET status_cd = 'ZZ' WHERE appt_id IN "
                                     f"({', '.join(map(str, ids))})"))
        result = CliRunner().invoke(checks_group, ["run", "--config", path, "--full",
                                                   "--report-dir", str(out)])
        assert result.exit_code == 1, result.output
        bad_status.append(2 + 2 * run)
    engine.dispose()
    with sqlite3.connect(out / "checks-history.sqlite") as conn:
        runs = conn.execute("SELECT checks_run, checks_failed FROM runs ORDER BY id").fetchall()
        stored = [u for (u,) in conn.execute(
            "SELECT unexpected FROM results WHERE entity = 'appointments' AND "
            "check_name = 'conformance' ORDER BY run_id")]
    assert len(runs) == 3 and stored == bad_status
    page = (out / "checks.html").read_text()
    row = next(r for r in page.split("<tr ") if ">conformance<" in r and ">status<" in r)
    assert "unexpected ratio over the last 3 runs; latest 12.00%" in row
    points = re.search(r'<polyline points="([^"]+)"', row)
    assert points is not None
    heights = [float(p.split(",")[1]) for p in points.group(1).split()]
    assert len(heights) == 3 and heights[0] > heights[1] > heights[2]  # rising (SVG y down)
    steady = next(r for r in page.split("<tr ") if ">completeness<" in r and ">id<" in r)
    assert "over the last 3 runs; latest 0.00%" in steady


def test_a_damaged_history_costs_the_trends_not_the_reports(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    data.build(url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", url, custom=[])
    out = tmp_path / "out"
    out.mkdir()
    (out / "checks-history.sqlite").write_text("not a database\n")
    with caplog.at_level("WARNING"):
        result = CliRunner().invoke(checks_group, ["run", "--config", path, "--full",
                                                   "--report-dir", str(out)])
    assert result.exit_code == 1, result.output  # the planted defects, as without a history
    assert {"checks.json", "checks.junit.xml", "checks.html"} <= {p.name for p in out.iterdir()}
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"the history {out / 'checks-history.sqlite'} could not be used (DatabaseError: file "
        "is not a database); the reports are written without trends"]
