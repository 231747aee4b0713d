"""The CONVENTIONS.md dashboard rules, checked on every panel of every generated dashboard,
and every query parsed by promtool (real PromQL parser)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards import build, inventory, targets
from dashboards.kpi_panels import goal_kpi
from kpis import catalog, names

DASHBOARDS = build.dashboards()
PANELS = [(d["uid"], p) for d in DASHBOARDS for p in inventory.panels(d)]
QUERIES = [(d["uid"], p, t) for d in DASHBOARDS for p, t in inventory.queries(d)]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ALERTS_FILE = Path(__file__).parents[1] / "alerts" / "generated" / "alerts.yaml"
SAMPLE_VALUES = {"clinic": ".*", "window": "7d", "datasource": "carekpi-prometheus"}


def _ids(items):
    return [f"{uid}:{p.get('id')}:{p.get('title')}" for uid, p, *_ in items]


def emitted_metrics() -> set[str]:
    """Every series name the exporter exposes, from kpis.names (the one naming module)."""
    found = {m for kpi in catalog.load() for m in names.kpi_metrics(kpi)}
    found |= {names.SOURCE_UP, names.KPI_UP, names.KPI_AVAILABLE, names.KPI_LAST_SUCCESS,
              names.KPI_REFRESH_DURATION, names.KPI_REFRESH_INTERVAL, names.KPI_TARGET,
              names.KPI_EVALUATION_TIME, names.NEWEST_RECORD, names.EXCLUDED_RECORDS,
              names.KPI_SUSPECT, names.KPI_VARIANT,
              f"{names.KPI_REFRESH_ERRORS}_total", f"{names.KPI_ROWS_READ}_total",
              f"{names.LABEL_VALUES_FOLDED}_total", f"{names.BUILD_INFO}_info",
              f"{names.SOURCE_QUERY_SECONDS}_total", f"{names.SOURCE_QUERIES}_total",
              f"{names.SOURCE_ROWS_READ}_total",
              names.CHECK_PASSED, names.CHECK_OBSERVED_RATIO, names.CHECK_UNEXPECTED,
              names.CHECK_ELEMENTS, names.CHECK_LAST_RUN, names.CHECK_DURATION}
    return found


# Counts that only mean something summed (numerators, denominators, histogram samples, NPS).
SUMMED_SERIES = {m for k in catalog.load() if k.kind in ("proportion", "duration", "score")
                 for m in names.kpi_metrics(k)}


def test_seven_dashboards_with_unique_uids_and_titles():
    assert len(DASHBOARDS) == 7
    assert len({d["uid"] for d in DASHBOARDS}) == 7
    assert len({d["title"] for d in DASHBOARDS}) == 7
    assert all(len(d["uid"]) <= 40 for d in DASHBOARDS)


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=[d["uid"] for d in DASHBOARDS])
def test_variables(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    used = set()
    for _, target in inventory.queries(dashboard):
        used |= inventory.variables_used(target["expr"])
    assert used - set(inventory.BUILTINS) <= set(variables), "every variable used is defined"
    if "clinic" in used:
        clinic = variables["clinic"]
        assert clinic["type"] == "query" and clinic["datasource"] == DATASOURCE
        if dashboard["uid"] != "carekpi-clinic":
            assert clinic["multi"] and clinic["includeAll"] and clinic["allValue"] == ".*"
        else:
            assert not clinic["multi"] and not clinic["includeAll"]


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=_ids(PANELS))
def test_panel_basics(uid, panel):
    assert panel["title"].strip()
    assert len(panel["description"]) > 40
    assert panel["fieldConfig"]["defaults"]["unit"]
    assert panel["datasource"] == DATASOURCE
    assert panel["targets"], "no panel without targets"
    assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    for target in panel["targets"]:
        assert target["datasource"] == DATASOURCE
        assert target["expr"].strip()


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=_ids(PANELS))
def test_thresholds_come_from_the_catalog_targets(uid, panel):
    thresholds = panel["fieldConfig"]["defaults"]["thresholds"]
    steps = [(s["value"], s["color"]) for s in thresholds["steps"]]
    assert steps[0][0] is None
    match = re.match(r"^([A-Z]\d+) ", panel["description"])
    if match is None:
        return
    kpi = catalog.get(match.group(1))
    if "Target:" in panel["description"]:
        goal = targets.goal(goal_kpi(kpi))
        assert goal is not None
        assert steps == targets.steps(goal)
        value = targets.format_value(goal.value, goal_kpi(kpi).unit)
        assert value in panel["description"]
    else:
        assert steps == targets.steps(None)


def colour(steps: list[dict], value: float) -> str:
    """Grafana's rule, written out here: the colour of the last step whose value the value
    reaches (the first step, value null, from minus infinity)."""
    found = steps[0]["color"]
    for step in steps[1:]:
        if value >= step["value"]:
            found = step["color"]
    return found


TARGETED = [(uid, p) for uid, p in PANELS
            if re.match(r"^[A-Z]\d+ ", p.get("description", "")) and "Target:" in p["description"]]


@pytest.mark.parametrize(("uid", "panel"), TARGETED, ids=_ids(TARGETED))
def test_colours_just_inside_and_just_outside_the_target(uid, panel):
    """At most T: T and a hair below are green, a hair above is red; at least T: T and a hair
    above are green, a hair below is red; a count of 0 against an at-most target is green."""
    kpi = goal_kpi(catalog.get(panel["description"].split(" ")[0]))
    assert kpi.target is not None
    goal = targets.goal(kpi)
    assert goal is not None
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    hair = 1e-6 * max(1.0, abs(goal.value))
    inside, outside = ((goal.value - hair, goal.value + hair) if goal.op == "<="
                       else (goal.value + hair, goal.value - hair))
    assert (colour(steps, goal.value), colour(steps, inside), colour(steps, outside)) == (
        "green", "green", "red")
    if goal.op == "<=":
        assert colour(steps, 0) == "green"  # zero backlog, zero no-shows, zero wait


def test_a_healthy_zero_backlog_is_green():
    backlog = [p for _, p in TARGETED if p["description"].startswith(
        catalog.get("sla_breach_backlog").id + " ")]
    assert backlog
    for panel in backlog:
        assert colour(panel["fieldConfig"]["defaults"]["thresholds"]["steps"], 0) == "green"
        assert colour(panel["fieldConfig"]["defaults"]["thresholds"]["steps"], 1) == "red"


@pytest.mark.parametrize(("uid", "panel", "target"), QUERIES, ids=_ids(QUERIES))
def test_query_rules(uid, panel, target):
    expr = target["expr"]
    for call in re.finditer(r"\b(rate|irate|increase)\(([^()]*)\)", expr):
        assert call.group(2).endswith("[$__rate_interval]"), "rate() uses $__rate_interval"
    for counter in re.finditer(r"carekpi_\w+_total", expr):
        before = expr[:counter.start()]
        assert re.search(r"sum by \([^)]*\) \(rate\($", before), "counters: rate, then aggregate"
    assert "avg" not in expr, "never an average of ratios"
    for part in re.finditer(r"\b(carekpi_\w+)\{", expr):
        if part.group(1) in SUMMED_SERIES:
            assert re.search(r"sum(?: by \([^)]*\))? \($", expr[:part.start()]), \
                f"{part.group(1)} is summed before any arithmetic"
    assert inventory.metrics(expr) <= emitted_metrics()


def test_overview_has_one_tile_per_kpi_with_a_target():
    overview = next(d for d in DASHBOARDS if d["uid"] == "carekpi-overview")
    tiles = [p for p in inventory.panels(overview) if p["type"] == "stat"]
    ids = [p["description"].split(" ", 1)[0] for p in tiles]
    assert ids == [k.id for k in catalog.load() if k.target is not None]
    tables = [p for p in inventory.panels(overview) if p["type"] == "table"]
    assert [p["title"] for p in tables] == ["Clinics ranked by KPIs in breach", "Suspect results"]
    ranking = tables[:1]
    expr = ranking[0]["targets"][0]["expr"]
    for kpi in catalog.load():
        assert (f'"{kpi.key}"' in expr) == (kpi.target is not None and kpi.kind != "freshness")


def test_every_kpi_has_panels_on_the_clinic_drill_down():
    clinic = next(d for d in DASHBOARDS if d["uid"] == "carekpi-clinic")
    shown = {p["description"].split(" ", 1)[0] for p in inventory.panels(clinic)}
    assert shown == {k.id for k in catalog.load() if k.kind != "freshness"}


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=[d["uid"] for d in DASHBOARDS])
def test_layout_fits_the_grid_without_overlaps(dashboard):
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells
    assert [p["id"] for p in dashboard["panels"]] == list(range(1, len(dashboard["panels"]) + 1))


def test_kpi_panels_link_to_their_alerts_runbook_anchor():
    for _, panel in PANELS:
        match = re.match(r"^([A-Z]\d+) ", panel["description"])
        if match and "Target:" in panel["description"]:
            kpi = goal_kpi(catalog.get(match.group(1)))
            anchors = {link["url"].split("#", 1)[1] for link in panel["links"]}
            if kpi.kind == "freshness":
                expected = {names.ALERT_STALE_FEED}
            elif kpi.kind == "backlog":
                expected = {names.alert_name(kpi, "")}
            else:
                expected = {names.alert_name(kpi)}
                if kpi.burn_rate:
                    expected |= {names.alert_name(kpi, s) for s in ("FastBurn", "SlowBurn")}
            assert {a.lower() for a in expected} == anchors, panel["title"]


@pytest.mark.skipif(not ALERTS_FILE.exists(), reason="alerts/generated/alerts.yaml not built yet")
def test_every_runbook_link_names_a_generated_alert():
    rules = yaml.safe_load(ALERTS_FILE.read_text())
    alerts = {r["alert"].lower() for g in rules["groups"] for r in g["rules"] if "alert" in r}
    linked = {link["url"].split("#", 1)[1] for _, p in PANELS for link in p.get("links") or []}
    assert linked, "panels link to runbook anchors"
    assert linked <= alerts, sorted(linked - alerts)


def test_stale_threshold_matches_the_alert():
    from kpis.series import STALE_REFRESHES

    rules = yaml.safe_load(ALERTS_FILE.read_text())
    stale = next(r for g in rules["groups"] for r in g["rules"]
                 if r.get("alert") == names.ALERT_REFRESH_STALE)
    assert f"> {STALE_REFRESHES} * " in stale["expr"]
    panel = next(p for _, p in PANELS if p.get("title") == "Refresh age in intervals")
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == STALE_REFRESHES


def promtool_or_skip() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        reason = "promtool not installed (Debian package prometheus)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return tool


@pytest.mark.prometheus
def test_every_query_is_valid_promql(tmp_path):
    """promtool parses every expression (variables substituted) as a recording rule."""
    rules = [
        {"record": f"dashboard_query:q{i}", "expr": inventory.substitute(t["expr"], SAMPLE_VALUES)}
        for i, (_, _, t) in enumerate(QUERIES)
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool_or_skip(), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


@pytest.mark.prometheus
def test_promtool_rejects_a_broken_query(tmp_path):
    """The check above can fail: a malformed expression is reported."""
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": "sum by (clinic) (rate(carekpi_x_total[1m])"}]}]}))
    result = subprocess.run([promtool_or_skip(), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_overview_shows_suspect_results():
    overview = next(d for d in DASHBOARDS if d["uid"] == "carekpi-overview")
    panel = next(p for p in inventory.panels(overview) if p["title"] == "Suspect results")
    assert panel["targets"][0]["expr"] == f"count by (kpi, reason, clinic) ({names.KPI_SUSPECT})"
