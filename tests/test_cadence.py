"""Each window refreshes on its own interval, scanning only its own range; the load of every
refresh unit is measured and exported."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from collectors import evaluate
from collectors.labels import LabelCaps
from collectors.service import Exporter
from collectors.sqlfuncs import bucket_index
from kpis import config as config_module
from kpis.db.engines import create_all as create_engines
from kpis.errors import ConfigError
from kpis.snapshot import with_empty_windows
from tests import known_data
from tests.test_exporter import samples, scrape, wait_for

HOUR, DAY = 3600.0, 86400.0


def parse(url: str = "sqlite://", **changes: object) -> config_module.Config:
    data = known_data.config(url)
    for dotted, value in changes.items():
        node = data
        *path, last = dotted.split("__")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return config_module.parse(data, "known.yaml")


def cadences(config: config_module.Config, kpi: str) -> dict[float | None, float]:
    """For one KPI: windows (seconds, or None for all) -> refresh interval of its unit."""
    out = {}
    for unit in evaluate.units(config):
        if kpi in {k.key for k in unit.kpis}:
            for window in unit.windows or (None,):
                out[window] = unit.interval
    return out


def test_default_cadence_short_windows_every_refresh_long_ones_every_5_and_15_minutes(
) -> None:
    assert cadences(parse(), "no_show") == {HOUR: 60, DAY: 60, 7 * DAY: 300, 30 * DAY: 900}
    slow = parse(sources__main__refresh_interval="10m")
    assert cadences(slow, "no_show") == {HOUR: 600, DAY: 600, 7 * DAY: 600, 30 * DAY: 900}
    # A backlog is a "now" value: one unit, every refresh_interval.
    assert cadences(parse(), "sla_breach_backlog") == {None: 60}


def test_window_intervals_per_source_then_per_kpi() -> None:
    config = parse(sources__main__window_intervals={"7d": "10m", "1d": "2m"},
                   kpis__no_show={"window_intervals": {"30d": "1h"}})
    assert cadences(config, "no_show") == {HOUR: 60, DAY: 120, 7 * DAY: 600, 30 * DAY: 3600}
    assert cadences(config, "late_cancellation") == {HOUR: 60, DAY: 120, 7 * DAY: 600,
                                                     30 * DAY: 900}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"sources__main__window_intervals": {"14d": "5m"}},
     "known.yaml: sources.main.window_intervals.14d: not a configured window; one of 1h, 1d, "
     "7d, 30d"),
    ({"kpis__no_show": {"window_intervals": {"1h": "10m"}}},
     "known.yaml: kpis.no_show.window_intervals.1h: 10m is longer than 1/12 of the 1h window "
     "(at most 5m)"),
    ({"sources__main__window_intervals": {"7d": "soon"}},
     "known.yaml: sources.main.window_intervals: 7d: expected a duration"),
])
def test_a_bad_window_interval_is_one_line_naming_the_key(changes: dict[str, object],
                                                           expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(**changes)
    assert str(error.value).startswith(expected)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def loaded(module_db_url: str) -> str:
    known_data.load(module_db_url)
    return module_db_url


def test_each_window_group_gives_the_cells_of_the_full_evaluation(loaded: str) -> None:
    """Splitting by cadence changes which rows each query scans, never a number."""
    config = parse(loaded)
    engines = create_engines(config)
    try:
        full = {(r.kpi.key, c.labels): (dict(c.counts), c.histogram) for r in
                evaluate.evaluate(config, engines, known_data.AS_OF) if r.ok for c in r.cells}
        split = {}
        units = evaluate.units(config)
        assert len(units) > len(evaluate.units(config, cadences=False))
        results = [r for unit in units for r in evaluate.run_unit(
            engines[unit.source], config, unit, known_data.AS_OF, LabelCaps(config.labels))]
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        by_unit = {(k.key, u.window_labels) for u in units for k in u.kpis}
        assert {(r.kpi.key, r.windows) for r in results} == by_unit
        for key in {r.kpi.key for r in results}:
            for r in with_empty_windows([x for x in results if x.kpi.key == key]):
                for c in r.cells:
                    assert not r.windows or c.label("window") in r.windows
                    split[(r.kpi.key, c.labels)] = (dict(c.counts), c.histogram)
    finally:
        for engine in engines.values():
            engine.dispose()
    assert split == full


def test_short_windows_scan_only_their_range(loaded: str) -> None:
    config = parse(loaded)
    (short,) = [u for u in evaluate.units(config)
                if u.entity == "appointments" and u.windows == (HOUR, DAY)
                and "no_show" in {k.key for k in u.kpis}]
    engine = create_engines(config)["main"]
    bounds: list[str] = []

    def record(conn, cursor, statement, params, *rest):  # type: ignore[no-untyped-def]
        values = params.values() if isinstance(params, dict) else params
        bounds.extend(str(v)[:19] for v in values if re.match(r"2026-\d\d-\d\d", str(v)))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        evaluate.run_unit(engine, config, short, known_data.AS_OF, LabelCaps(config.labels))
    finally:
        engine.dispose()
    # The earliest bound is a day before the evaluation time, not 30 days.
    assert min(bounds) == "2026-03-01 12:00:00"


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=(
    pytest.mark.postgresql)), pytest.param("mysql", marks=pytest.mark.mysql)])
def test_bucket_index_is_the_first_bound_at_or_above_the_value(fresh_database,
                                                               dialect: str) -> None:
    bounds = (0.0, 60.0, 86400.0, 172800.5)
    values = [0.0, 0.001, 59.999, 60.0, 60.001, 86400.0, 86400.5, 172800.5, 172801.0, 1e9]
    engine = sa.create_engine(fresh_database(dialect))
    table = sa.Table("v", sa.MetaData(), sa.Column("x", sa.Double))
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"x": v} for v in values])
            got = conn.execute(sa.select(table.c.x, bucket_index(table.c.x, bounds))).all()
    finally:
        engine.dispose()
    assert {float(x): int(i) for x, i in got} == {v: bisect_left(bounds, v) for v in values}


def test_a_30d_series_is_not_requeried_before_its_interval_while_the_1h_series_is(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/known.db"
    known_data.load(url)
    config = parse(url, sources__main__refresh_interval="1s")
    exporter = Exporter(config, registry=CollectorRegistry(), clock=lambda: known_data.AS_OF)
    runs: Counter[tuple[float, ...] | None] = Counter()
    original = evaluate.run_unit

    def counting(engine, config, unit, *args, **kwargs):  # type: ignore[no-untyped-def]
        if unit.entity == "appointments" and "no_show" in {k.key for k in unit.kpis}:
            runs[unit.windows] += 1
        return original(engine, config, unit, *args, **kwargs)

    evaluate.run_unit = counting  # type: ignore[assignment]
    server = exporter.start("127.0.0.1", 0)
    try:
        wait_for(lambda: runs[(HOUR, DAY)] >= 4, 30, "four refreshes of the 1h/1d windows")
        text = scrape(f"{server.url}/metrics")
    finally:
        evaluate.run_unit = original  # type: ignore[assignment]
        exporter.stop()
    assert runs[(30 * DAY,)] == 1  # at start only: its interval is 15 minutes
    assert runs[(7 * DAY,)] == 1
    got = samples(text)

    def series(name: str, **labels: str) -> float:
        return got[(name, frozenset({"source": "main", **labels}.items()))]

    for window, interval in (("1h", 1), ("1d", 1), ("7d", 300), ("30d", 900)):
        assert series("carekpi_kpi_refresh_interval_seconds", kpi="no_show",
                      window=window) == interval
        assert series("carekpi_kpi_last_success_timestamp_seconds", kpi="no_show",
                      window=window) == known_data.AS_OF.timestamp()
    units = {dict(labels)["unit"]: value for (name, labels), value in got.items()
             if name == "carekpi_source_queries_total"}
    short = [u for u in units if u.startswith("appointments/no_show+") and u.endswith("@1h,1d")]
    month = [u for u in units if u.startswith("appointments/no_show+") and u.endswith("@30d")]
    assert len(short) == len(month) == 1
    assert units[short[0]] >= 3 and units[month[0]] == 1  # the 4th may still be running
    seconds = {dict(labels)["unit"]: value for (name, labels), value in got.items()
               if name == "carekpi_source_query_seconds_total"}
    assert set(seconds) == set(units) and all(v > 0 for v in seconds.values())
    assert "carekpi_source_rows_read_total" in text
