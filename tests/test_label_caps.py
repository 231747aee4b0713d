"""Label cardinality: 10,000 distinct clinics fold into ``other`` past the cap, the fold is
counted, numerator and denominator sums are preserved exactly, and the exposition stays small.
That many values (over WIDE x the cap) are folded in the database: memory follows the cap.

Data by construction (evaluation at AS_OF, every appointment starts 2 hours earlier, so it is
in the 1d, 7d and 30d windows and not in the 1h one):
- clinics c00000..c00048 (49, the busiest): 3 appointments each, one a no-show;
- clinics c00049..c09999 (9,951): one appointment each, a no-show when the number is even;
- one clinic whose value is free text longer than 64 characters (unsafe: always folded) with
  one fulfilled appointment.
"""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from collectors import evaluate
from collectors.labels import KEEP, WIDE, LabelCaps
from collectors.service import Exporter
from kpis import catalog
from kpis import config as config_module
from kpis.db.engines import create_all as create_engines
from tests import known_data
from tests.test_exporter import samples, scrape_when

AS_OF = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CAP = 50
BUSY, QUIET = 49, 9951
FREE_TEXT = "Patient called about the bill and was very upset, see note 2026-03-01 " * 2
CLINICS = BUSY + QUIET + 1
NOSHOWS = BUSY + sum(1 for i in range(BUSY, BUSY + QUIET) if i % 2 == 0)
TOTAL = 3 * BUSY + QUIET + 1

appt = sa.Table("appt", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("site", sa.String(200)), sa.Column("start_at", sa.DateTime),
                sa.Column("booked_at", sa.DateTime), sa.Column("st", sa.String(4)))


def load(url: str) -> None:
    start = (AS_OF - timedelta(hours=2)).replace(tzinfo=None)
    rows = []
    for i in range(BUSY + QUIET):
        statuses = ["NS", "OK", "OK"] if i < BUSY else ["NS" if i % 2 == 0 else "OK"]
        rows.extend({"site": f"c{i:05d}", "st": st} for st in statuses)
    rows.append({"site": FREE_TEXT, "st": "OK"})
    for n, row in enumerate(rows):
        row.update(id=n + 1, start_at=start, booked_at=start - timedelta(days=3))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        appt.create(conn)
        conn.execute(appt.insert(), rows)
    engine.dispose()


def config(url: str, labels: dict) -> config_module.Config:
    off = {key: {"enabled": False} for key in catalog.by_key() if key != "no_show"}
    return config_module.parse({
        "version": 1,
        "sources": {"main": {"url": url, "refresh_interval": "1h"}},
        "entities": {"appointments": {
            "source": "main", "table": "appt",
            "fields": {"id": "id", "clinic": "site", "start": "start_at",
                       "created": "booked_at", "status": "st"},
            "codes": {"status": {"noshow": ["NS"], "fulfilled": ["OK"]}}}},
        "kpis": {**off, "no_show": {"min_volume": 0}},
        "labels": labels,
    }, "caps.yaml")


@pytest.mark.parametrize("dialect", ["sqlite",
                                     pytest.param("postgresql", marks=pytest.mark.postgresql),
                                     pytest.param("mysql", marks=pytest.mark.mysql)])
@pytest.mark.parametrize("labels", [{"max_values": CAP},
                                    {"max_values": 1000, "limits": {"clinic": CAP}}],
                         ids=["max_values", "limits.clinic"])
def test_ten_thousand_clinics_fold_into_other(dialect: str, labels: dict,
                                              fresh_database) -> None:
    url = fresh_database(dialect)
    load(url)
    exporter = Exporter(config(url, labels), registry=CollectorRegistry(), clock=lambda: AS_OF)
    server = exporter.start("127.0.0.1", 0)
    try:
        text = scrape_when(f"{server.url}/metrics", "carekpi_no_show_numerator{",
                           "carekpi_label_values_folded_total", timeout=120)
        folded_in_database = [exporter.store.caps.in_database(u.name)
                              for u in evaluate.units(exporter.config)]
    finally:
        exporter.stop()
    assert {0: KEEP * CAP} in folded_in_database  # the clinic label, by the database
    got = samples(text)
    folded = got[("carekpi_label_values_folded_total", frozenset({("label", "clinic")}))]
    assert folded == CLINICS - (CAP - 1)  # 49 kept, the free-text value and 9,951 folded

    for window in ("1d", "7d", "30d"):
        series = {part: {dict(labels)["clinic"]: value
                         for (name, labels), value in got.items()
                         if name == f"carekpi_no_show_{part}" and ("window", window) in labels}
                  for part in ("numerator", "denominator")}
        clinics = set(series["denominator"])
        assert clinics == {f"c{i:05d}" for i in range(BUSY)} | {"other"}, window
        assert FREE_TEXT not in text
        assert sum(series["numerator"].values()) == NOSHOWS, window
        assert sum(series["denominator"].values()) == TOTAL, window
        assert series["denominator"]["other"] == QUIET + 1
        assert series["numerator"]["other"] == NOSHOWS - BUSY
        assert all(series["denominator"][f"c{i:05d}"] == 3 for i in range(BUSY))

    no_show_series = [k for k in got if k[0].startswith("carekpi_no_show_")]
    assert len(no_show_series) <= 2 * 4 * CAP  # numerator + denominator, 4 windows, 50 clinics
    assert len(text) < 100_000, len(text)


def test_memory_follows_the_cap_not_the_number_of_distinct_values(fresh_database) -> None:
    """100,000 clinics of one appointment each, cap 50: the query is read while the clinic
    label has at most WIDE x 50 values, then folded in the database; Python never holds the
    100,000. Measured with tracemalloc (the old path held every clinic's cells: about 300 MB
    for this data)."""
    url = fresh_database("sqlite")
    start = (AS_OF - timedelta(hours=2)).replace(tzinfo=None)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        appt.create(conn)
        conn.execute(appt.insert(), [
            {"id": i + 1, "site": f"p{i:06d}", "st": "NS" if i % 3 == 0 else "OK",
             "start_at": start, "booked_at": start - timedelta(days=3)}
            for i in range(100_000)])
    engine.dispose()
    cfg = config(url, {"max_values": CAP})
    engines = create_engines(cfg)
    caps = LabelCaps(cfg.labels)
    tracemalloc.start()
    try:
        results = evaluate.evaluate(cfg, engines, AS_OF, caps=caps)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        for e in engines.values():
            e.dispose()
    (no_show,) = [r for r in results if r.kpi.key == "no_show"]
    day = [c for c in no_show.cells if c.label("window") == "1d"]
    assert len(day) == CAP  # 49 clinics and other
    assert sum(c.counts["denominator"] for c in day) == 100_000
    assert sum(c.counts["numerator"] for c in day) == len(range(0, 100_000, 3))
    assert caps.folded["clinic"] == 100_000 - (CAP - 1)
    assert peak < 60 * 2**20, f"{peak / 2**20:.0f} MiB"
    assert WIDE * CAP < 100_000


def test_rows_past_the_probe_are_streamed_with_the_same_numbers(db_url: str, monkeypatch) -> None:
    """A refresh reads a plain query cut at PROBE_ROWS; past it, the rows are streamed
    (server-side cursor on PostgreSQL, unbuffered on MariaDB). Both ways give the same cells."""
    known_data.load(db_url)
    cfg = config_module.parse(known_data.config(db_url), "known.yaml")
    engines = create_engines(cfg)
    try:
        def cells() -> dict:
            return {(r.kpi.key, c.labels): (dict(c.counts), c.histogram)
                    for r in evaluate.evaluate(cfg, engines, known_data.AS_OF) if r.ok
                    for c in r.cells}
        plain = cells()
        monkeypatch.setattr(evaluate, "PROBE_ROWS", 2)
        streamed = cells()
    finally:
        for e in engines.values():
            e.dispose()
    assert len(plain) > 100 and streamed == plain
