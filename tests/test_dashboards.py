"""Building the dashboards: determinism, the committed files, config overrides, provisioning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dashboards import board, build, inventory, promql, targets
from dashboards.commands import dashboards_group
from kpis import catalog, config
from kpis.durations import format_seconds
from kpis.errors import CareKPIError

PROVISIONING = Path(build.__file__).parent / "provisioning"


def _config(tmp_path: Path, kpis: str = "{}") -> config.Config:
    path = tmp_path / "carekpi.yaml"
    path.write_text(f"version: 1\nsources: {{db: {{url: 'sqlite:///x.db'}}}}\nkpis: {kpis}\n")
    return config.load(path)


def _panel(data: dict, title: str) -> dict:
    return next(p for p in inventory.panels(data) if p["title"] == title)


def _by_uid(boards: list[dict], uid: str) -> dict:
    return next(d for d in boards if d["uid"] == uid)


def test_committed_files_are_current():
    """Fails when dashboards/generated/ is stale: run `carekpi generate` (or dashboards build)."""
    expected = build.build_files()
    committed = {p.name: p.read_text(encoding="utf-8") for p in build.GENERATED_DIR.glob("*.json")}
    assert sorted(committed) == sorted(expected)
    stale = [name for name, text in expected.items() if committed[name] != text]
    assert not stale, f"stale generated dashboards: {stale}"


def test_builds_are_byte_identical_and_sorted():
    first, second = build.build_files(), build.build_files()
    assert first == second
    for text in first.values():
        data = json.loads(text)
        assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        assert "version" not in data and "id" not in data  # Grafana assigns these


def test_write_creates_the_directory_and_every_file(tmp_path):
    out = tmp_path / "nested" / "out"
    written = build.write(None, out)
    assert sorted(p.name for p in written) == sorted(build.build_files())
    assert (out / "carekpi-overview.json").read_text() == \
        build.build_files()["carekpi-overview.json"]


def test_write_to_an_unwritable_place_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CareKPIError, match="cannot write dashboards"):
        build.write(None, blocker / "out")


def test_config_target_overrides_recolour_panels(tmp_path):
    boards = build.dashboards(_config(tmp_path, "{no_show: {target: 0.07, min_volume: 50}}"))
    tile = _panel(_by_uid(boards, "carekpi-overview"), "No-show rate")
    steps = tile["fieldConfig"]["defaults"]["thresholds"]["steps"]
    # at most 7 %: 7 % itself is green, red from a hair above it
    assert steps == [{"color": "green", "value": None},
                     {"color": "red", "value": pytest.approx(0.07, abs=1e-8)}]
    assert steps[1]["value"] > 0.07
    assert "at most 7 %" in tile["description"] and "fewer than 50 cases" in tile["description"]
    ranking = _panel(_by_uid(boards, "carekpi-overview"), "Clinics ranked by KPIs in breach")
    assert "carekpi_no_show_denominator" in ranking["targets"][0]["expr"]
    assert ">= bool 50" in ranking["targets"][0]["expr"]
    default = _panel(_by_uid(build.dashboards(), "carekpi-overview"), "No-show rate")
    assert default["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == \
        pytest.approx(0.10, abs=1e-8)


def test_higher_is_better_targets_turn_green_above_the_target():
    goal = targets.goal(catalog.get("M2"))
    assert targets.steps(goal) == [(None, "red"), (0.90, "green")]
    assert targets.steps(targets.goal(catalog.get("A1"))) == [(None, "green"),
                                                               (0.10 + 1e-9, "red")]
    assert targets.steps(None) == [(None, "blue")]


def test_disabled_kpis_have_no_panels(tmp_path):
    boards = build.dashboards(_config(tmp_path, "{telehealth: {enabled: false}, "
                                                "nps: {enabled: false}}"))
    text = json.dumps(boards)
    assert "carekpi_telehealth_" not in text and "carekpi_nps_" not in text
    assert "carekpi_csat_" in text


def test_window_variable_follows_the_configured_windows(tmp_path):
    boards = build.dashboards(_config(tmp_path, "{windows: [1h, 30d]}"))
    window = next(v for v in boards[0]["templating"]["list"] if v["name"] == "window")
    assert window["query"] == "1h,30d"
    assert window["current"]["value"] == "30d"  # no week window: the longest one
    default = next(v for v in build.dashboards()[0]["templating"]["list"] if v["name"] == "window")
    week = format_seconds(7 * 86400)  # the exporter's own label value for the 7-day window
    assert default["query"] == f"1h,1d,{week},30d" and default["current"]["value"] == week


def test_runbook_base_url_is_applied_to_every_link():
    boards = build.dashboards(runbook_base="https://wiki.example.org/RUNBOOK.md")
    urls = [link["url"] for d in boards for p in inventory.panels(d) for link in p["links"]]
    assert urls and all(u.startswith("https://wiki.example.org/RUNBOOK.md#carekpi") for u in urls)


def test_ratios_sum_numerator_and_denominator_per_group():
    kpi = catalog.get("A1")
    assert promql.ratio(kpi, ("clinic",)) == (
        'sum by (clinic) (carekpi_no_show_numerator{clinic=~"$clinic", window="$window"}) / '
        '(sum by (clinic) (carekpi_no_show_denominator{clinic=~"$clinic", window="$window"}) > 0)'
    )
    assert promql.quantile(catalog.get("A4"), "p90") == (
        'histogram_quantile(0.9, sum by (le) '
        '(carekpi_wait_to_be_seen_seconds_bucket{clinic=~"$clinic", window="$window"}))'
    )
    backlog = promql.backlog(catalog.get("M3"))
    assert backlog == 'sum (carekpi_sla_breach_backlog{clinic=~"$clinic"})'


def test_provisioning_datasource_matches_the_dashboards_default():
    data = yaml.safe_load((PROVISIONING / "datasources" / "carekpi.yaml").read_text())
    (source,) = data["datasources"]
    assert (source["uid"], source["name"], source["type"]) == \
        (board.DATASOURCE_UID, board.DATASOURCE_NAME, "prometheus")
    variable = build.dashboards()[0]["templating"]["list"][0]
    assert variable["current"]["value"] == board.DATASOURCE_UID


def test_provisioning_dashboard_provider():
    data = yaml.safe_load((PROVISIONING / "dashboards" / "carekpi.yaml").read_text())
    (provider,) = data["providers"]
    assert data["apiVersion"] == 1 and provider["type"] == "file"
    assert provider["folderUid"] == "carekpi" and provider["options"]["path"]


def test_cli_build_writes_the_files(tmp_path):
    result = CliRunner().invoke(dashboards_group, [
        "build", "--out", str(tmp_path / "d"), "--runbook-url", "https://wiki.example.org/RB.md"])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == len(build.BUILDERS)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(build.build_files())
    overview = (tmp_path / "d" / "carekpi-overview.json").read_text()
    assert "https://wiki.example.org/RB.md#" in overview


def test_cli_build_warns_that_relative_runbook_links_break_in_grafana(tmp_path):
    result = CliRunner().invoke(dashboards_group, ["build", "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warning) == 1 and "not an absolute URL" in warning[0]


def test_cli_build_with_a_bad_config_exits_2_with_one_line(tmp_path):
    path = tmp_path / "carekpi.yaml"
    path.write_text("version: 1\nsources: {}\nkpis: {no_such_kpi: {}}\n")
    result = CliRunner().invoke(dashboards_group,
                                ["build", "--config", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "kpis.no_such_kpi" in result.output


def test_files_import_through_grafanas_ui_as_grafana_11():
    """Grafana 11.6 schema (grafana-foundation-sdk's 11.6 build), with the __inputs and
    __requires of Grafana's "Export for sharing externally"."""
    for name, text in build.build_files().items():
        data = json.loads(text)
        assert data["schemaVersion"] >= 39, name  # Grafana 11.x
        assert [i["pluginId"] for i in data["__inputs"]] == ["prometheus"], name
        required = {(r["type"], r["id"]): r["version"] for r in data["__requires"]}
        assert required[("grafana", "grafana")] == "11.6.0"
        assert ("datasource", "prometheus") in required
        used = {p["type"] for p in data["panels"] if p["type"] != "row"}
        assert {i for t, i in required if t == "panel"} == used, name
