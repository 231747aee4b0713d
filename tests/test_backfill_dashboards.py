"""End to end over history: backfill two days of the demo at 1 h with the recording rules
(`carekpi backfill --tsdb --rules`), start a real Prometheus on the blocks alone (no scrape),
and run every query of the KPI dashboards over the backfilled range at the backfill's step:
each returns a point at every step.

The exporter-health and data-quality dashboards describe the running exporter and its check
runs, which a backfill does not write; they are left out. Variables as Grafana sets them:
every clinic (a single clinic's panel rightly has no point where its window holds no record,
such as a week without complaints at a small clinic), the 7-day window.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dashboards import build, inventory
from tests.conftest import free_port
from tests.test_dashboards_e2e import EXCEPTION_LISTS, WEEK, _binary, _stop

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

STEP = 3600
HISTORY_ONLY = {"carekpi-exporter", "carekpi-data-quality"}
QUERIES = [(d["uid"], p, t) for d in build.dashboards() if d["uid"] not in HISTORY_ONLY
           for p, t in inventory.queries(d) if p["title"] not in EXCEPTION_LISTS]


def carekpi(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "kpis", *args], capture_output=True,
                          text=True, timeout=900, cwd=cwd,
                          env={"XDG_CACHE_HOME": str(cwd), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Iterator[tuple[str, int, int]]:
    """(Prometheus URL, first and last backfilled instant)."""
    prometheus = _binary("prometheus")
    work = tmp_path_factory.mktemp("history")
    carekpi("demo", "--seed-only", "--days", "14", "--db", f"sqlite:///{work}/demo.db",
            "--config-out", str(work / "carekpi.yaml"), cwd=work)
    blocks = work / "blocks"
    carekpi("backfill", "--config", str(work / "carekpi.yaml"), "--start", "2d", "--step", "1h",
            "--tsdb", str(blocks), "--rules", cwd=work)
    grid = json.loads(next(work.glob(".*.carekpi-backfill/grid.json")).read_text())
    first, last = (int(datetime.fromisoformat(grid[k]).timestamp()) for k in ("start", "end"))
    port = free_port(19300, 19400)
    (work / "prometheus.yml").write_text("global: {}\n")
    process = subprocess.Popen(
        [prometheus, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={blocks}", "--storage.tsdb.retention.time=90d",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("Prometheus did not start on the blocks: "
                        + (work / "prometheus.log").read_text()[-2000:])
        yield url, first, last
    finally:
        _stop(process)
        shutil.rmtree(work, ignore_errors=True)


def _range(url: str, expr: str, first: int, last: int) -> list[dict]:
    query = urllib.parse.urlencode({"query": expr, "start": first, "end": last, "step": STEP})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


@pytest.mark.parametrize(("uid", "panel", "target"), QUERIES,
                         ids=[f"{u}:{p['id']}:{t['refId']}:{p['title']}" for u, p, t in QUERIES])
def test_every_kpi_panel_has_a_point_at_every_step_of_the_history(history, uid, panel, target):
    url, first, last = history
    steps = set(range(first, last + 1, STEP))
    expr = inventory.substitute(target["expr"], {"clinic": ".*", "window": WEEK})
    found = {int(float(t)) for series in _range(url, expr, first, last)
             for t, _ in series["values"]}
    missing = sorted(steps - found)
    assert not missing, (f"{len(missing)} of {len(steps)} steps empty, first "
                         f"{datetime.fromtimestamp(missing[0], UTC)}: {expr}")
