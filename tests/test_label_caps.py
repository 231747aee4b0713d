"""Label cardinality: 10,000 distinct clinics fold into ``other`` past the cap, the fold is
counted, numerator and denominator sums are preserved exactly, and the exposition stays small.

Data by construction (evaluation at AS_OF, every appointment starts 2 hours earlier, so it is
in the 1d, 7d and 30d windows and not in the 1h one):
- clinics c00000..c00048 (49, the busiest): 3 appointments each, one a no-show;
- clinics c00049..c09999 (9,951): one appointment each, a no-show when the number is even;
- one clinic whose value is free text longer than 64 characters (unsafe: always folded) with
  one fulfilled appointment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from collectors.service import Exporter
from kpis import catalog
from kpis import config as config_module
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


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.postgresql)])
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
    finally:
        exporter.stop()
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
