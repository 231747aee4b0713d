"""Scheduled checks run in a child process: the exporter never loads Great Expectations, still
exports carekpi_check_* after a run, and survives a run that hangs or bloats (killed, reported
as not evaluated)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
import yaml
from prometheus_client import CollectorRegistry

from checks.scheduled import ScheduledChecks
from collectors.service import Exporter
from kpis import config as kpi_config
from tests import test_checks_data as data
from tests.conftest import free_port

# Runs the real `carekpi serve` in a process of its own; a watcher thread in that process
# scrapes it until the scheduled checks have been exported, then records which heavy modules
# the exporter's process holds and stops it.
SERVE = """
import json, os, signal, sys, threading, time, urllib.request
port, out, config = sys.argv[1:4]
def watch():
    until = time.time() + 300
    while time.time() < until:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        except Exception as exc:  # an HTTP error too: retried, and told if it ends the wait
            print(f"watcher: {exc!r}", file=sys.stderr, flush=True)
            body = b""
        if b"carekpi_check_passed{" in body:
            loaded = sorted(m for m in ("great_expectations", "pandas", "numpy")
                            if m in sys.modules)
            with open(out, "w") as f:
                json.dump({"loaded": loaded, "body": body.decode()}, f)
            break
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
from kpis.cli import main
main(["serve", "--config", config, "--port", port, "--bind", "127.0.0.1"], prog_name="carekpi")
"""


def _config(tmp_path, **checks):
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    data.build(url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", url, schedule="1h", **checks)
    return path, kpi_config.parse(yaml.safe_load(open(path)), path)


@pytest.mark.slow
def test_serve_runs_scheduled_checks_without_loading_great_expectations(tmp_path):
    path, _ = _config(tmp_path)  # with the custom regex check: the child does load GX
    port, out = free_port(), tmp_path / "seen.json"
    proc = subprocess.run([sys.executable, "-c", SERVE, str(port), str(out), path],
                          capture_output=True, text=True, timeout=360)
    assert out.exists(), (f"serve exited with {proc.returncode} before exporting the checks:"
                          f"\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")
    seen = json.loads(out.read_text())
    assert seen["loaded"] == []
    body = seen["body"]
    assert ('carekpi_check_unexpected_elements{check="conformance",column="status",'
            'entity="appointments",severity="error"} 2.0') in body
    assert ('carekpi_check_unexpected_elements{check="department_code",column="department",'
            'entity="appointments",severity="warning"} 2.0') in body
    assert ('carekpi_check_passed{check="completeness",column="id",entity="appointments",'
            'severity="error"} 1.0') in body
    assert "\ncarekpi_check_last_run_timestamp_seconds " in body
    for marker in data.MARKERS:
        assert marker not in body and marker not in proc.stderr


def _scrape(port: int, wanted: str) -> str:
    """The exposition once it holds ``wanted`` (a changed body is renewed in the background,
    so the first scrape after a run may still get the previous one)."""
    until = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert resp.status == 200
            body = resp.read().decode()
        if wanted in body or time.monotonic() > until:
            return body
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("work, limit, reason", [
    ("import os, time; open(PID, 'w').write(str(os.getpid())); time.sleep(600)", 1 << 30,
     "the check run exceeded its deadline of 3s and was killed"),
    ("import os; open(PID, 'w').write(str(os.getpid())); hog = bytearray(2 << 30)", 512 << 20,
     "the check run exceeded its memory limit of 512 MB"),
], ids=["hangs", "bloats"])
def test_a_run_that_hangs_or_bloats_is_killed_and_not_evaluated(tmp_path, work, limit, reason):
    _, config = _config(tmp_path)
    pid_file = tmp_path / "child.pid"
    checks = ScheduledChecks(config, start=False, deadline=3, memory_limit=limit,
                             work=f"PID = {str(pid_file)!r}; " + work)
    exporter = Exporter(config, registry=CollectorRegistry(), extra_collectors=[checks])
    port = free_port()
    exporter.start("127.0.0.1", port)
    try:
        started = time.monotonic()
        checks.run_once()
        assert time.monotonic() - started < 30
        assert checks.last is not None and not checks.last.completed
        assert checks.last.reason == reason
        assert not _alive(int(pid_file.read_text()))
        results = checks.last.results
        assert results and all(r.error == reason and r.status == "error" for r in results)
        body = _scrape(port, "carekpi_check_evaluated{")  # the exporter kept serving
        assert "carekpi_source_up" in body
        assert ('carekpi_check_evaluated{check="conformance",column="status",'
                'entity="appointments",severity="error"} 0.0') in body
        # Not evaluated is not failed: no passed sample for CareKPICheckFailed to page on.
        assert "carekpi_check_passed{" not in body
        assert "carekpi_check_unexpected_elements{" not in body  # nothing was counted
        assert "\ncarekpi_check_last_run_timestamp_seconds " not in body  # no run completed
    finally:
        exporter.stop()


def test_a_config_built_in_memory_reaches_the_child(tmp_path):
    """The demo's config has no file: the child gets a private copy, removed afterwards."""
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    data.build(url, data.now())
    config = kpi_config.parse(data.config(url, schedule="1h", custom=[]), "demo carekpi.yaml")
    before = set(os.listdir(tempfile.gettempdir()))
    checks = ScheduledChecks(config, start=False)
    checks.run_once()
    assert checks.last is not None and checks.last.completed, checks.last
    found = {(r.entity, r.check, r.column): r.unexpected for r in checks.last.results}
    assert found[("appointments", "conformance", "status")] == 2
    assert found[("appointments", "completeness", "clinic")] == 3
    assert found[("surveys", "score_range", "score")] == 2
    leftover = set(os.listdir(tempfile.gettempdir())) - before
    assert not [name for name in leftover if name.startswith("carekpi-checks-")]
