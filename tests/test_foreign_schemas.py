"""Field truth: on schemas unlike the demo (tests/foreign_schemas.py), every KPI is exactly what
plain Python computes from the inserted rows, or openly marked suspect with the reason; on
SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collectors import evaluate
from collectors.exposition import CareKpiCollector
from collectors.store import Store
from kpis import config as config_module
from kpis.db.engines import create_all as create_engines
from kpis.errors import CareKPIError
from kpis.report import as_data
from kpis.snapshot import KpiResult
from tests import foreign_schemas as fs
from tests.test_bad_data import live_findings

WINDOWS = {"1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
Row = dict[str, Any]
Key = tuple[str, ...]


@pytest.fixture(scope="module")
def url(module_db_url: str) -> str:
    fs.load(module_db_url)
    return module_db_url


def run(data: dict[str, Any]) -> tuple[dict[str, KpiResult], config_module.Config]:
    config = config_module.parse(data, "foreign.yaml")
    engines = create_engines(config)
    try:
        results = evaluate.evaluate(config, engines, fs.AS_OF)
    finally:
        for engine in engines.values():
            engine.dispose()
    errors = {r.kpi.key: r.error for r in results if r.error}
    assert errors == {}
    return {r.kpi.key: r for r in results if r.unavailable is None}, config


def in_window(moment: datetime | None, window: str) -> bool:
    return moment is not None and fs.NOW - timedelta(seconds=WINDOWS[window]) <= moment < fs.NOW


def by_cell(rows: Iterable[Row], key: Callable[[Row], Key]) -> dict[Key, list[Row]]:
    out: dict[Key, list[Row]] = defaultdict(list)
    for row in rows:
        out[key(row)].append(row)
    return out


def cells(result: KpiResult, names: tuple[str, ...], window: str) -> dict[Key, Any]:
    out = {}
    for cell in result.cells:
        if cell.label("window") == window:
            key = tuple(cell.label(n) or "" for n in names)
            assert key not in out
            out[key] = cell
    return out


def ratios(result: KpiResult, names: tuple[str, ...], window: str) -> dict[Key, tuple[int, int]]:
    return {k: (int(c.counts["numerator"]), int(c.counts["denominator"]))
            for k, c in cells(result, names, window).items()}


def report_entry(results: dict[str, KpiResult], config: config_module.Config,
                 key: str) -> dict[str, Any]:
    data = as_data(list(results.values()), config, fs.AS_OF)
    return next(k for k in data["kpis"] if k["kpi"] == key)


# ------------------------------------------------------------ a contact-center export

CC = ("clinic", "queue")


@pytest.fixture(scope="module")
def contact_center(url: str) -> dict[str, KpiResult]:
    return run(fs.contact_center_config(url))[0]


def cc_rows(window: str) -> dict[Key, list[Row]]:
    rows = [r for r in fs.contact_center_rows() if in_window(r["data_hora"], window)]
    return by_cell(rows, lambda r: (r["unidade"], r["fila"]))


@pytest.mark.parametrize("window", ["7d", "30d"])
def test_flag_only_abandonment_counts_every_abandon(contact_center: dict[str, KpiResult],
                                                    window: str) -> None:
    expected = {k: (sum(r["atendida"] == "N" for r in rows), len(rows))
                for k, rows in cc_rows(window).items()}
    assert ratios(contact_center["call_abandonment"], CC, window) == expected
    assert contact_center["call_abandonment"].variant == "all_abandons"
    assert all(n > 0 for n, _ in expected.values())  # the bug reported 0 % here


@pytest.mark.parametrize("window", ["7d", "30d"])
def test_a_call_whose_outcome_no_code_maps_is_left_out_and_counted(url: str, window: str
                                                                  ) -> None:
    """config validate warns that such records are left out: the abandonment rate must not
    count them as offered and not abandoned (every fifth call's outcome is an unknown X)."""
    data = fs.contact_center_config(url)
    data["entities"]["calls"]["fields"]["outcome"] = {
        "sql": "CASE WHEN id % 5 = 0 THEN 'X' ELSE atendida END"}
    results = run(data)[0]
    rows = cc_rows(window)
    known = {k: [r for r in group if r["id"] % 5 != 0] for k, group in rows.items()}
    assert ratios(results["call_abandonment"], CC, window) == {
        k: (sum(r["atendida"] == "N" for r in group), len(group)) for k, group in known.items()}
    for key in ("call_abandonment", "service_level", "call_answer_wait"):
        left_out = {k: int(c.counts.get("excluded:unmapped_outcome", 0))
                    for k, c in cells(results[key], CC, window).items()}
        assert left_out == {k: sum(r["id"] % 5 == 0 for r in group)
                            for k, group in rows.items()}, key
    assert all(len(known[k]) < len(group) for k, group in rows.items())


@pytest.mark.parametrize("window", ["7d", "30d"])
def test_a_recorded_wait_gives_speed_of_answer_and_service_level(
        contact_center: dict[str, KpiResult], window: str) -> None:
    asa, level = {}, {}
    for key, rows in cc_rows(window).items():
        waits = [r["espera_seg"] for r in rows if r["atendida"] == "S"]
        asa[key] = (len(waits), float(sum(waits)))
        level[key] = (sum(w <= 30 for w in waits), len(rows))  # every abandon counts
    got = cells(contact_center["call_answer_wait"], CC, window)
    assert {k: (c.histogram.count, c.histogram.sum) for k, c in got.items()} == asa
    assert ratios(contact_center["service_level"], CC, window) == level


def test_resolved_yes_no_flag_drives_first_contact_resolution(
        contact_center: dict[str, KpiResult]) -> None:
    rows = fs.contact_center_rows()
    since = fs.NOW - timedelta(days=30)

    def repeated(call: Row) -> bool:
        return any(o["cliente"] == call["cliente"] and o["assunto"] == call["assunto"]
                   and call["data_hora"] < o["data_hora"] < fs.NOW
                   and o["data_hora"] - call["data_hora"] <= timedelta(days=7) for o in rows)

    due = [r for r in rows if r["atendida"] == "S"
           and since <= r["data_hora"] + timedelta(days=7) < fs.NOW]
    expected = {k: (sum(r["resolvida"] == "S" and not repeated(r) for r in group), len(group))
                for k, group in by_cell(due, lambda r: (r["unidade"],)).items()}
    assert ratios(contact_center["first_contact_resolution"], ("clinic",), "30d") == expected


def test_satisfaction_score_on_the_same_table_gives_csat(contact_center: dict[str, KpiResult]
                                                         ) -> None:
    rated = [r for r in fs.contact_center_rows() if r["satisfacao"] is not None
             and in_window(r["data_hora"], "30d")]
    expected = {k: (sum(r["satisfacao"] >= 4 for r in group), len(group))
                for k, group in by_cell(rated, lambda r: (r["unidade"],)).items()}
    assert ratios(contact_center["csat"], ("clinic",), "30d") == expected


def test_abandon_time_mapped_to_the_ring_time_is_suspect_not_ok(url: str) -> None:
    """The issue's case: abandon time = ring time makes every abandon a 0 s short abandon."""
    data = fs.contact_center_config(url)
    fields = data["entities"]["calls"]["fields"]
    del fields["outcome"]
    fields["abandoned"] = {"sql": "CASE WHEN atendida = 'N' THEN data_hora END"}
    results, config = run(data)
    c2 = results["call_abandonment"]
    centro = cells(c2, CC, "30d")[("centro", "geral")]
    abandons = sum(r["atendida"] == "N" for r in cc_rows("30d")[("centro", "geral")])
    assert (centro.counts["numerator"], centro.counts["excluded:short_abandon"]) == (0, abandons)
    entry = report_entry(results, config, "call_abandonment")
    assert (entry["status"], entry["suspect"]) == ("suspect", ["identical_durations"])
    row = next(r for r in entry["results"] if r["clinic"] == "centro" and r["window"] == "30d")
    assert row["status"] == "suspect"
    assert row["suspect"][0]["detail"] == f"all {abandons} durations are exactly 0 s"
    store = Store(config)
    store.put(list(results.values()), 60.0)
    registry = CollectorRegistry()
    registry.register(CareKpiCollector(store))
    suspect = [s.labels for f in text_string_to_metric_families(generate_latest(registry)
                                                                  .decode())
               for s in f.samples if s.name == "carekpi_kpi_suspect"]
    assert {"kpi": "call_abandonment", "source": "main", "reason": "identical_durations",
            "clinic": "centro", "queue": "geral", "window": "30d"} in suspect


# ------------------------------------------------------------ an ACD log with clock skew

ACD = ("clinic", "queue")


@pytest.fixture(scope="module")
def acd(url: str) -> dict[str, KpiResult]:
    return run(fs.acd_config(url))[0]


def acd_cells(window: str = "7d") -> dict[Key, list[Row]]:
    rows = [r for r in fs.acd_rows() if in_window(r["entrada"], window)]
    return by_cell(rows, lambda r: (r["sede"], r["cola"]))


def counted(row: Row) -> bool:
    """Not a test call (code) and not an internal call (condition)."""
    return row["disposicion"] != "PRUEBA" and row["origen"] != "interno"


def answer_wait(row: Row, skew: float = 5.0) -> float | None:
    """The wait with the skew rule: down to -skew counts as 0; below, None (left out)."""
    wait = (row["atendida"] - row["entrada"]).total_seconds()
    if wait < 0:
        return 0.0 if wait >= -skew else None
    return wait


def abandon_wait(row: Row) -> float:
    return (row["abandono"] - row["entrada"]).total_seconds()


def test_skew_within_tolerance_counts_as_zero_and_beyond_it_is_left_out(
        acd: dict[str, KpiResult]) -> None:
    expected, negative = {}, {}
    for key, rows in acd_cells().items():
        answered = [r for r in rows if counted(r) and r["atendida"] is not None]
        waits = [w for w in map(answer_wait, answered) if w is not None]
        expected[key] = (len(waits), sum(waits))
        negative[key] = len(answered) - len(waits)
    got = cells(acd["call_answer_wait"], ACD, "7d")
    assert {k: (c.histogram.count, c.histogram.sum) for k, c in got.items()} == expected
    assert {k: c.counts["excluded:negative_duration"] for k, c in got.items()} == negative
    assert sum(negative.values()) == 1  # call 47 only


def test_service_level_and_speed_of_answer_agree_on_the_answered_calls(
        acd: dict[str, KpiResult]) -> None:
    expected, late_abandons = {}, {}
    for key, rows in acd_cells().items():
        waits = [w for r in rows if counted(r) and r["atendida"] is not None
                 for w in [answer_wait(r)] if w is not None]
        late = [r for r in rows if counted(r) and r["abandono"] is not None
                and abandon_wait(r) > 30]
        expected[key] = (sum(w <= 30 for w in waits), len(waits) + len(late))
        late_abandons[key] = len(late)
    assert ratios(acd["service_level"], ACD, "7d") == expected
    c1 = cells(acd["call_answer_wait"], ACD, "7d")
    c3 = cells(acd["service_level"], ACD, "7d")
    for key, cell in c3.items():  # C1's answered population is C3's
        assert cell.counts["denominator"] - late_abandons[key] == c1[key].histogram.count


def test_short_abandons_ivr_and_test_calls_are_left_out_and_counted(
        acd: dict[str, KpiResult]) -> None:
    expected, excluded = {}, {}
    for key, rows in acd_cells().items():
        offered = [r for r in rows if counted(r) and r["disposicion"] != "IVR"]
        short = [r for r in offered if r["abandono"] is not None and abandon_wait(r) <= 5]
        abandons = [r for r in offered if r["abandono"] is not None and abandon_wait(r) > 5]
        expected[key] = (len(abandons), len(offered) - len(short))
        excluded[key] = (len(short), sum(r["disposicion"] == "PRUEBA" for r in rows),
                         sum(r["origen"] == "interno" for r in rows))
    c2 = acd["call_abandonment"]
    assert ratios(c2, ACD, "7d") == expected
    got = {k: (c.counts["excluded:short_abandon"], c.counts["excluded:excluded_code"],
               c.counts["excluded:excluded_by_rule"]) for k, c in cells(c2, ACD, "7d").items()}
    assert got == excluded
    assert c2.variant == "short_abandons_excluded"
    assert "Ñuñoa" in {k[0] for k in got}


def test_no_clock_skew_tolerance_leaves_most_answers_out_and_says_so(url: str) -> None:
    results, config = run(fs.acd_config(url, clock_skew="0s"))
    entry = report_entry(results, config, "call_answer_wait")
    assert (entry["status"], entry["suspect"]) == ("suspect", ["most_excluded"])
    for row in (r for r in entry["results"] if r["window"] == "7d"):
        rows = acd_cells()[(row["clinic"], row["queue"])]
        negative = sum(counted(r) and r["atendida"] is not None
                       and answer_wait(r, skew=0) is None for r in rows)
        assert row["excluded"]["negative_duration"] == negative
        assert row["status"] == "suspect"
        assert row["suspect"][0]["reason"] == "most_excluded"


# ------------------------------------------------------------ a scheduling extract

SEEN = ("REALIZADA", "FALTOU")


@pytest.fixture(scope="module")
def scheduling(url: str) -> dict[str, KpiResult]:
    return run(fs.scheduling_config(url))[0]


def sched_rows(window: str = "7d") -> list[Row]:
    return [r for r in fs.scheduling_rows() if in_window(r["inicio"], window)]


def lead_bucket(row: Row) -> str:
    days = (row["inicio"].date() - row["criado_em"].date()).days
    for limit, label in ((0, "0d"), (2, "1-2d"), (7, "3-7d"), (30, "8-30d")):
        if days <= limit:
            return label
    return "over-30d"


def test_local_status_codes_and_a_test_code(scheduling: dict[str, KpiResult]) -> None:
    groups = by_cell(sched_rows(), lambda r: (r["unidade"],))
    expected = {k: (sum(r["situacao"] == "FALTOU" for r in rows),
                    sum(r["situacao"] in SEEN for r in rows)) for k, rows in groups.items()}
    a1 = scheduling["no_show"]
    assert ratios(a1, ("clinic",), "7d") == expected
    tests = {k: sum(r["situacao"] == "TESTE" for r in rows) for k, rows in groups.items()}
    assert {k: c.counts["excluded:excluded_code"] for k, c in
            cells(a1, ("clinic",), "7d").items()} == tests
    assert set(expected) == {(c,) for c in fs.CLINICS}  # real names, not folded


def test_a_reminder_flag_splits_the_no_show_rate(scheduling: dict[str, KpiResult]) -> None:
    seen = [r for r in sched_rows() if r["situacao"] in SEEN]
    groups = by_cell(seen, lambda r: (r["unidade"], "sent" if r["lembrete"] == "S" else "none",
                                      lead_bucket(r)))
    expected = {k: (sum(r["situacao"] == "FALTOU" for r in rows), len(rows))
                for k, rows in groups.items()}
    got = ratios(scheduling["no_show_by_reminder"], ("clinic", "reminder", "lead_time"), "7d")
    assert {k: v for k, v in got.items() if v[1]} == expected


def test_a_true_false_flag_for_telehealth(scheduling: dict[str, KpiResult]) -> None:
    kept = [r for r in sched_rows() if r["situacao"] in SEEN]
    expected = {k: (sum(r["teleconsulta"] == "T" for r in rows), len(rows))
                for k, rows in by_cell(kept, lambda r: (r["unidade"],)).items()}
    assert ratios(scheduling["telehealth"], ("clinic",), "7d") == expected


def test_config_validate_checks_a_flag_code_map_against_the_data(url: str) -> None:
    data = fs.scheduling_config(url)
    data["entities"]["appointments"]["codes"]["reminded"] = {"true": ["S"]}
    findings = live_findings(data)
    assert findings == ["warning: entities.appointments.codes.reminded: 1 local code(s) in the "
                        "data are not mapped (their records are read as none of the mapped "
                        "codes): 'N'"]


def test_an_exclude_condition_goes_through_the_sql_guard(tmp_path) -> None:
    data = fs.acd_config(f"sqlite:///{tmp_path}/x.db")
    data["entities"]["calls"]["exclude"] = "pg_terminate_backend(1) = 1"
    with pytest.raises(CareKPIError, match=r"entities\.calls\.exclude: .*pg_terminate_backend"):
        config_module.parse(data, "foreign.yaml")
